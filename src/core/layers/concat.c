/* concat.c: concatenation of two or more inputs along the channel axis, dim 0
 * of the per-sample shape: [C_k, H, W] -> [sum C_k, H, W], [F_k] -> [sum F_k]
 * (Inception modules, U-Net skips). Every other dimension must agree. Each
 * sample's output holds input 0's values, then input 1's, and so on (NCHW:
 * channel blocks). No parameters, no scratch. */
#include <stddef.h>
#include <string.h>

#include "core/layers/merge.h"

static const nn_key concat_keys[] = {{0}};

static int concat_build(nn_layer *l, nn_error *err) {
  int rc = nn__merge_two_or_more(l, err);
  if (rc) return rc;
  const nn_shape *a = &l->ins[0];
  long sum = 0;
  for (int k = 0; k < l->nin; k++) {
    const nn_shape *s = &l->ins[k];
    char sa[64], sb[64];
    const char *why = NULL;
    if (s->ndim != a->ndim)
      why = "ranks differ";
    else
      for (int d = 1; d < s->ndim && !why; d++)
        if (s->dim[d] != a->dim[d]) why = s->ndim == 3 ? "spatial sizes differ" : "sizes differ";
    if (why)
      return nn_error_set(err, NN_ESHAPE,
                          "input '%s' is %s, '%s' is %s: %s (concat joins dim 0, the channels; "
                          "the other dimensions must agree)", l->cfg.inputs[k],
                          nn_shape_str(s, sa, sizeof sa), l->cfg.inputs[0],
                          nn_shape_str(a, sb, sizeof sb), why);
    sum += s->dim[0];
  }
  if (sum > (1L << 30)) return nn_error_set(err, NN_ESHAPE, "%ld channels", sum);
  l->out = *a;
  l->out.dim[0] = (int)sum;
  return 0;
}

/* xs[k] [n, count(ins[k])]; y [n, count(out)]: per sample, the inputs' blocks in order. */
static void concat_forward(nn_layer *l, const float *const *xs, float *y, int n,
                           const nn_run_ctx *ctx) {
  (void)ctx;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < l->nin; k++) {
      size_t c = nn_shape_count(&l->ins[k]);
      memcpy(y, xs[k] + (size_t)i * c, c * sizeof *y);
      y += c;
    }
}

/* dxs[k] [n, count(ins[k])]: input k's block of dy. */
static void concat_backward(nn_layer *l, const float *const *xs, const float *y,
                            const float *dy, float *const *dxs, int n, const nn_run_ctx *ctx) {
  (void)xs, (void)y, (void)ctx;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < l->nin; k++) {
      size_t c = nn_shape_count(&l->ins[k]);
      if (dxs[k]) memcpy(dxs[k] + (size_t)i * c, dy, c * sizeof *dy);
      dy += c;
    }
}

const nn_layer_ops nn_layer_concat = {
    .type = "concat",
    .help = "concatenation of its inputs (two or more; name them in `inputs`) along the channel "
            "axis, dim 0 of [C, H, W] or [F]; the other dimensions must agree",
    .keys = concat_keys,
    .build = concat_build,
    .forward_n = concat_forward,
    .backward_n = concat_backward,
};
