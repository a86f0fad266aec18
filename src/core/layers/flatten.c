/* flatten.c: reshape each sample to one dimension, [C, H, W] -> [C*H*W].
 *
 * The data layout is sample-major, so flattening does not move any value:
 * forward and backward are plain copies into the model's buffers (which keep
 * every layer's output separately). */
#include <stddef.h>
#include <string.h>

#include "core/layer.h"

static const nn_key flatten_keys[] = {{0}};

static int flatten_build(nn_layer *l, nn_error *err) {
  size_t c = nn_shape_count(&l->in);
  if (c < 1 || c > (size_t)1 << 30)
    return nn_error_set(err, NN_ESHAPE, "cannot flatten input of %zu features", c);
  l->out.ndim = 1;
  l->out.dim[0] = (int)c;
  return 0;
}

/* x, y [n, count(in)] */
static void flatten_forward(nn_layer *l, const float *x, float *y, int n,
                            const nn_run_ctx *ctx) {
  if (x != y) memcpy(y, x, sizeof(float) * (size_t)n * nn_shape_count(&l->in));
}

/* dy, dx [n, count(in)] */
static void flatten_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  if (dx && dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)n * nn_shape_count(&l->in));
}

const nn_layer_ops nn_layer_flatten = {
    .type = "flatten",
    .help = "reshape each sample to one dimension ([C, H, W] -> [C*H*W])",
    .keys = flatten_keys,
    .build = flatten_build,
    .forward = flatten_forward,
    .backward = flatten_backward,
};
