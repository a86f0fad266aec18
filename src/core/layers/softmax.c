/* softmax.c: the softmax layer, over the features of each sample.
 *
 * Input [n, k] (any per-sample shape, taken flat), output the same shape:
 * y_i = exp(x_i - max x) / sum_j exp(x_j - max x). Backward is the
 * Jacobian-vector product dx_i = y_i (dy_i - sum_j dy_j y_j), computed from y
 * alone. For classification prefer the cross_entropy loss on logits, which
 * fuses softmax and is better conditioned; this layer is for models whose
 * output must be a distribution (or for attention-like uses inside a model). */
#include <math.h>
#include <stddef.h>

#include "core/layer.h"

static const nn_key softmax_keys[] = {{0}};

static int softmax_build(nn_layer *l, nn_error *err) {
  if (nn_shape_count(&l->in) < 1) return nn_error_set(err, NN_ESHAPE, "input has no features");
  l->out = l->in;
  return 0;
}

/* x, y [n, k] */
static void softmax_forward(nn_layer *l, const float *x, float *y, int n,
                            const nn_run_ctx *ctx) {
  size_t k = nn_shape_count(&l->in);
  for (int s = 0; s < n; s++) {
    const float *xs = x + (size_t)s * k;
    float *ys = y + (size_t)s * k;
    float mx = xs[0];
    for (size_t i = 1; i < k; i++) mx = xs[i] > mx ? xs[i] : mx;
    double sum = 0.0;
    for (size_t i = 0; i < k; i++) {
      ys[i] = expf(xs[i] - mx);
      sum += ys[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < k; i++) ys[i] *= inv;
  }
}

/* y, dy, dx [n, k]: dx = y * (dy - <dy, y>) per sample. */
static void softmax_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  if (!dx) return;
  size_t k = nn_shape_count(&l->in);
  for (int s = 0; s < n; s++) {
    const float *ys = y + (size_t)s * k, *dys = dy + (size_t)s * k;
    float *dxs = dx + (size_t)s * k;
    double dot = 0.0;
    for (size_t i = 0; i < k; i++) dot += (double)dys[i] * ys[i];
    float d = (float)dot;
    for (size_t i = 0; i < k; i++) dxs[i] = ys[i] * (dys[i] - d);
  }
}

const nn_layer_ops nn_layer_softmax = {
    .type = "softmax",
    .help = "softmax over the features of each sample",
    .keys = softmax_keys,
    .build = softmax_build,
    .forward = softmax_forward,
    .backward = softmax_backward,
};
