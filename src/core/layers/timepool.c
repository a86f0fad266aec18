/* timepool.c: pooling over time of a sequence, [T, C] -> [C]:
 *   global_avgpool1d: the mean over each sample's VALID timesteps (t < its
 *                     length, ctx->lengths; all T when lengths is NULL);
 *   global_maxpool1d: the maximum over the valid timesteps (the gradient goes
 *                     to the first timestep holding it).
 * Padding never reaches the output, so a conv1d classifier gives the same
 * answer for a word whatever the sequence length T it is padded to. */
#include <stddef.h>
#include <string.h>

#include "core/layer.h"

static const nn_key timepool_keys[] = {{0}};

static int timepool_build(nn_layer *l, nn_error *err) {
  char shp[64];
  if (l->in.ndim != 2)
    return nn_error_set(err, NN_ESHAPE, "%s expects a [T, channels] sequence, got %s",
                        l->cfg.type, nn_shape_str(&l->in, shp, sizeof shp));
  l->out.ndim = 1;
  l->out.dim[0] = l->in.dim[1];
  return 0;
}

/* Valid timesteps of sample i (at least 1, at most T). */
static int valid_len(const nn_run_ctx *ctx, int i, int T) {
  if (!ctx->lengths) return T;
  int k = ctx->lengths[i];
  return k < 1 ? 1 : k > T ? T : k;
}

/* x [n, T, C], y [n, C] */
static void avg_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  const int T = l->in.dim[0], C = l->in.dim[1];
  for (int i = 0; i < n; i++) {
    const float *xi = x + (size_t)i * T * C;
    float *yi = y + (size_t)i * C;
    int k = valid_len(ctx, i, T);
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int t = 0; t < k; t++) s += xi[(size_t)t * C + c];
      yi[c] = (float)(s / k);
    }
  }
}

static void avg_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                         float *dx, int n, const nn_run_ctx *ctx) {
  if (!dx) return;
  const int T = l->in.dim[0], C = l->in.dim[1];
  for (int i = 0; i < n; i++) {
    float *dxi = dx + (size_t)i * T * C;
    const float *dyi = dy + (size_t)i * C;
    int k = valid_len(ctx, i, T);
    const float inv = 1.0f / (float)k;
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++) dxi[(size_t)t * C + c] = t < k ? dyi[c] * inv : 0.0f;
  }
}

static void max_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  const int T = l->in.dim[0], C = l->in.dim[1];
  for (int i = 0; i < n; i++) {
    const float *xi = x + (size_t)i * T * C;
    float *yi = y + (size_t)i * C;
    int k = valid_len(ctx, i, T);
    for (int c = 0; c < C; c++) yi[c] = xi[c];
    for (int t = 1; t < k; t++)
      for (int c = 0; c < C; c++)
        if (xi[(size_t)t * C + c] > yi[c]) yi[c] = xi[(size_t)t * C + c];
  }
}

static void max_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                         float *dx, int n, const nn_run_ctx *ctx) {
  if (!dx) return;
  const int T = l->in.dim[0], C = l->in.dim[1];
  memset(dx, 0, sizeof(float) * (size_t)n * (size_t)T * (size_t)C);
  for (int i = 0; i < n; i++) {
    const float *xi = x + (size_t)i * T * C, *yi = y + (size_t)i * C, *dyi = dy + (size_t)i * C;
    float *dxi = dx + (size_t)i * T * C;
    int k = valid_len(ctx, i, T);
    for (int c = 0; c < C; c++)
      for (int t = 0; t < k; t++)
        if (xi[(size_t)t * C + c] == yi[c]) { /* the first timestep holding the maximum */
          dxi[(size_t)t * C + c] = dyi[c];
          break;
        }
  }
}

const nn_layer_ops nn_layer_global_avgpool1d = {
    .type = "global_avgpool1d",
    .help = "mean over the valid timesteps of a sequence ([T, C] -> [C])",
    .keys = timepool_keys,
    .build = timepool_build,
    .forward = avg_forward,
    .backward = avg_backward,
};

const nn_layer_ops nn_layer_global_maxpool1d = {
    .type = "global_maxpool1d",
    .help = "maximum over the valid timesteps of a sequence ([T, C] -> [C])",
    .keys = timepool_keys,
    .build = timepool_build,
    .forward = max_forward,
    .backward = max_backward,
};
