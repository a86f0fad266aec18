/* multiply.c: element-wise product of two or more inputs of one shape,
 * y = x0 * x1 * ... (gates, attention-style masks). No parameters, no
 * scratch: backward recomputes the products of the other inputs. */
#include <stddef.h>
#include <string.h>

#include "core/layers/merge.h"

static const nn_key multiply_keys[] = {{0}};

static int multiply_build(nn_layer *l, nn_error *err) {
  int rc = nn__merge_same_shapes(l, err);
  if (!rc && nn_blk_fits(&l->out)) l->blk_caps = NN_BLK_SAME; /* elementwise: any layout */
  return rc;
}

/* xs[k], y [n, count(out)]; multiplied in input order. */
static void multiply_forward(nn_layer *l, const float *const *xs, float *y, int n,
                             const nn_run_ctx *ctx) {
  (void)ctx;
  size_t cnt = (size_t)n * nn_shape_count(&l->out);
  memcpy(y, xs[0], cnt * sizeof *y);
  for (int k = 1; k < l->nin; k++)
    for (size_t e = 0; e < cnt; e++) y[e] *= xs[k][e];
}

/* dxs[k] = dy * product of the other inputs (not y / x_k: inputs may be 0). */
static void multiply_backward(nn_layer *l, const float *const *xs, const float *y,
                              const float *dy, float *const *dxs, int n,
                              const nn_run_ctx *ctx) {
  (void)y, (void)ctx;
  size_t cnt = (size_t)n * nn_shape_count(&l->out);
  for (int k = 0; k < l->nin; k++) {
    if (!dxs[k]) continue;
    float *d = dxs[k];
    memcpy(d, dy, cnt * sizeof *d);
    for (int j = 0; j < l->nin; j++)
      if (j != k)
        for (size_t e = 0; e < cnt; e++) d[e] *= xs[j][e];
  }
}

const nn_layer_ops nn_layer_multiply = {
    .type = "multiply",
    .help = "element-wise product of its inputs (two or more, one shape; name them in `inputs`)",
    .keys = multiply_keys,
    .build = multiply_build,
    .forward_n = multiply_forward,
    .backward_n = multiply_backward,
};
