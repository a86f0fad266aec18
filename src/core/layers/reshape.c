/* reshape.c: give each sample another shape with the same element count
 * (PyTorch's x.view(n, *shape), Keras's Reshape).
 *
 * Key shape = [d1, ..] (1 to 4 dimensions, per sample, no batch dimension);
 * one item may be -1: it is inferred so the counts match. The default [-1]
 * flattens. The layout is sample-major, so no value moves: forward and
 * backward are copies into the model's buffers (model.input_shape does the
 * same for the model's input, in the coordinator). No parameters. */
#include <stddef.h>
#include <string.h>

#include "core/layer.h"

typedef struct reshape_opts {
  int shape[NN_MAX_DIMS], shape_n;
} reshape_opts;
NN_LAYER_OPTS_FIT(reshape_opts);

static const reshape_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const reshape_opts);
}

static const nn_key reshape_keys[] = {
    {"shape", NN_KEY_INT_LIST, offsetof(reshape_opts, shape), NN_MAX_DIMS, -1, 1 << 30, "[-1]",
     NULL, 0, "per-sample output shape (1 to 4 dimensions, same element count as the input); "
     "one item may be -1, inferred", offsetof(reshape_opts, shape_n)},
    {0},
};

static int reshape_build(nn_layer *l, nn_error *err) {
  const reshape_opts *o = opts(l);
  char shp[64];
  size_t count = nn_shape_count(&l->in), known = 1;
  int infer = -1;
  if (o->shape_n < 1 || o->shape_n > NN_MAX_DIMS)
    return nn_error_set(err, NN_ESCHEMA, "shape must have 1 to %d items, got %d", NN_MAX_DIMS,
                        o->shape_n);
  for (int i = 0; i < o->shape_n; i++) {
    int d = o->shape[i];
    if (d == -1) {
      if (infer >= 0)
        return nn_error_set(err, NN_ESCHEMA, "shape may have one -1, items %d and %d are -1",
                            infer + 1, i + 1);
      infer = i;
    } else if (d < 1) {
      return nn_error_set(err, NN_ESCHEMA, "shape item %d must be >= 1 or -1, got %d", i + 1,
                          d);
    } else {
      known *= (size_t)d;
      if (known > ((size_t)1 << 40)) break; /* the count check below fails */
    }
  }
  l->out.ndim = o->shape_n;
  for (int i = 0; i < o->shape_n; i++) l->out.dim[i] = o->shape[i];
  if (infer >= 0) {
    if (count % known != 0 || count / known > (size_t)1 << 30)
      return nn_error_set(err, NN_ESHAPE,
                          "cannot reshape %s (%zu values) to a shape with %zu values per -1",
                          nn_shape_str(&l->in, shp, sizeof shp), count, known);
    l->out.dim[infer] = (int)(count / known);
  } else if (known != count) {
    char want[64];
    return nn_error_set(err, NN_ESHAPE, "cannot reshape %s (%zu values) to %s (%zu values)",
                        nn_shape_str(&l->in, shp, sizeof shp), count,
                        nn_shape_str(&l->out, want, sizeof want), known);
  }
  return 0;
}

static void reshape_forward(nn_layer *l, const float *x, float *y, int n,
                            const nn_run_ctx *ctx) {
  (void)ctx;
  if (x != y) memcpy(y, x, sizeof(float) * (size_t)n * nn_shape_count(&l->in));
}

static void reshape_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  (void)x;
  (void)y;
  (void)ctx;
  if (dx && dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)n * nn_shape_count(&l->in));
}

const nn_layer_ops nn_layer_reshape = {
    .type = "reshape",
    .help = "give each sample another shape with the same count, e.g. [256] -> [16, 4, 4] "
            "(one -1 is inferred)",
    .keys = reshape_keys,
    .build = reshape_build,
    .forward = reshape_forward,
    .backward = reshape_backward,
};
