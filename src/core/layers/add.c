/* add.c: element-wise sum of two or more inputs of one shape, y = x0 + x1 + ...
 * (a residual block's merge, core/model.h). No parameters, no scratch. */
#include <stddef.h>
#include <string.h>

#include "core/layers/merge.h"

static const nn_key add_keys[] = {{0}};

static int add_build(nn_layer *l, nn_error *err) { return nn__merge_same_shapes(l, err); }

/* xs[k], y [n, count(out)]; summed in input order. */
static void add_forward(nn_layer *l, const float *const *xs, float *y, int n,
                        const nn_run_ctx *ctx) {
  (void)ctx;
  size_t cnt = (size_t)n * nn_shape_count(&l->out);
  memcpy(y, xs[0], cnt * sizeof *y);
  for (int k = 1; k < l->nin; k++)
    for (size_t e = 0; e < cnt; e++) y[e] += xs[k][e];
}

/* dxs[k] = dy for every wanted input. */
static void add_backward(nn_layer *l, const float *const *xs, const float *y, const float *dy,
                         float *const *dxs, int n, const nn_run_ctx *ctx) {
  (void)xs, (void)y, (void)ctx;
  size_t cnt = (size_t)n * nn_shape_count(&l->out);
  for (int k = 0; k < l->nin; k++)
    if (dxs[k]) memcpy(dxs[k], dy, cnt * sizeof *dy);
}

const nn_layer_ops nn_layer_add = {
    .type = "add",
    .help = "element-wise sum of its inputs (two or more, one shape; name them in `inputs`)",
    .keys = add_keys,
    .build = add_build,
    .forward_n = add_forward,
    .backward_n = add_backward,
};
