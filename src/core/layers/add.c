/* add.c: element-wise sum of two or more inputs of one shape, y = x0 + x1 + ...
 * (a residual block's merge, core/model.h). No parameters, no scratch.
 * A ReLU after it may be fused into it (nn_layer.relu_out, model.c). */
#include <stddef.h>
#include <string.h>

#include "core/layers/merge.h"

static const nn_key add_keys[] = {{0}};

static int add_build(nn_layer *l, nn_error *err) {
  int rc = nn__merge_same_shapes(l, err);
  if (!rc && nn_blk_fits(&l->out)) l->blk_caps = NN_BLK_SAME; /* elementwise: any layout */
  return rc;
}

/* xs[k], y [n, count(out)]; summed in input order. relu_out (a ReLU fused
 * onto the output, model.c): y = max(0, sum), in the same pass. */
static void add_forward(nn_layer *l, const float *const *xs, float *y, int n,
                        const nn_run_ctx *ctx) {
  (void)ctx;
  size_t cnt = (size_t)n * nn_shape_count(&l->out);
  if (l->nin == 2) { /* a residual block's merge: one pass */
    const float *restrict a = xs[0], *restrict b = xs[1];
    float *restrict o = y;
    if (l->relu_out) {
      for (size_t e = 0; e < cnt; e++) {
        float v = a[e] + b[e];
        o[e] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (size_t e = 0; e < cnt; e++) o[e] = a[e] + b[e];
    }
    return;
  }
  memcpy(y, xs[0], cnt * sizeof *y);
  for (int k = 1; k < l->nin; k++)
    for (size_t e = 0; e < cnt; e++) y[e] += xs[k][e];
  if (l->relu_out)
    for (size_t e = 0; e < cnt; e++) y[e] = y[e] > 0.0f ? y[e] : 0.0f;
}

/* dxs[k] = dy for every wanted input; relu_out: dy where y > 0, else 0. */
static void add_backward(nn_layer *l, const float *const *xs, const float *y, const float *dy,
                         float *const *dxs, int n, const nn_run_ctx *ctx) {
  (void)xs, (void)ctx;
  size_t cnt = (size_t)n * nn_shape_count(&l->out);
  int first = 1;
  for (int k = 0; k < l->nin; k++) {
    if (!dxs[k]) continue;
    if (!l->relu_out) {
      memcpy(dxs[k], dy, cnt * sizeof *dy);
    } else if (first) {
      float *restrict d = dxs[k];
      for (size_t e = 0; e < cnt; e++) d[e] = y[e] > 0.0f ? dy[e] : 0.0f;
      first = 0;
    } else {
      for (int j = 0; j < k; j++) /* the masked gradient, already in an earlier dxs */
        if (dxs[j]) {
          memcpy(dxs[k], dxs[j], cnt * sizeof *dy);
          break;
        }
    }
  }
}

const nn_layer_ops nn_layer_add = {
    .type = "add",
    .help = "element-wise sum of its inputs (two or more, one shape; name them in `inputs`)",
    .keys = add_keys,
    .build = add_build,
    .forward_n = add_forward,
    .backward_n = add_backward,
    .fuse_relu = NN_FUSE_RELU_OUT,
};
