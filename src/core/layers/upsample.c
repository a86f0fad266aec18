/* upsample.c: integer upsampling of images (PyTorch's nn.Upsample with an
 * integer scale_factor).
 *
 * Input [C, H, W] per sample, output [C, H*sh, W*sw]. Keys: scale [sh, sw],
 * mode "nearest" | "bilinear".
 *   nearest   y[c][oh][ow] = x[c][oh / sh][ow / sw] (integer division);
 *             backward sums each sh x sw block of dy into its source pixel.
 *   bilinear  align_corners = False: output pixel o reads source position
 *             src = max((o + 0.5)/s - 0.5, 0) (computed in float with 1/s,
 *             as PyTorch does), i0 = floor(src), i1 = min(i0 + 1, in - 1),
 *             weights 1 - (src - i0) and src - i0, per axis;
 *             backward scatters dy with the same four weights.
 * No parameters, no scratch; the source indices are recomputed per pixel. */
#include <stddef.h>
#include <string.h>

#include "core/layer.h"
#include "core/layers/window.h"

typedef struct upsample_opts {
  int scale[2], scale_n;
  char mode[16];
} upsample_opts;
NN_LAYER_OPTS_FIT(upsample_opts);

static const upsample_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const upsample_opts);
}

static const nn_key upsample_keys[] = {
    {"scale", NN_KEY_INT_LIST, offsetof(upsample_opts, scale), 2, 1, 1024, "[2]", NULL, 0,
     "integer factors [sh, sw]; one value means both", offsetof(upsample_opts, scale_n)},
    {"mode", NN_KEY_ENUM, offsetof(upsample_opts, mode), sizeof(((upsample_opts *)0)->mode), 0,
     0, "\"nearest\"", "nearest|bilinear", 0,
     "nearest: repeat each pixel; bilinear: PyTorch's align_corners = False interpolation", 0},
    {0},
};

static int is_bilinear(const nn_layer *l) { return strcmp(opts(l)->mode, "bilinear") == 0; }

static void scales(const nn_layer *l, int *sh, int *sw) {
  *sh = *sw = 1;
  nn_window_pair(opts(l)->scale, opts(l)->scale_n, sh, sw); /* build checked the count */
}

static int upsample_build(nn_layer *l, nn_error *err) {
  char shp[64];
  int sh, sw;
  if (l->in.ndim != 3)
    return nn_error_set(err, NN_ESHAPE, "expects a [channels, height, width] input, got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  if (nn_window_pair(opts(l)->scale, opts(l)->scale_n, &sh, &sw))
    return nn_error_set(err, NN_ESCHEMA, "scale must have 1 or 2 items, got %d",
                        opts(l)->scale_n);
  if (sh < 1 || sw < 1 || sh > 1024 || sw > 1024)
    return nn_error_set(err, NN_ESCHEMA, "scale must be in [1, 1024], got %dx%d", sh, sw);
  if (strcmp(opts(l)->mode, "nearest") != 0 && !is_bilinear(l))
    return nn_error_set(err, NN_ESCHEMA, "mode '%s' is not one of nearest|bilinear",
                        opts(l)->mode);
  long ho = (long)l->in.dim[1] * sh, wo = (long)l->in.dim[2] * sw;
  if ((size_t)l->in.dim[0] * (size_t)ho * (size_t)wo > ((size_t)1 << 31))
    return nn_error_set(err, NN_ESHAPE, "upsampling %s by %dx%d is too large",
                        nn_shape_str(&l->in, shp, sizeof shp), sh, sw);
  l->out.ndim = 3;
  l->out.dim[0] = l->in.dim[0];
  l->out.dim[1] = (int)ho;
  l->out.dim[2] = (int)wo;
  return 0;
}

/* One axis of bilinear interpolation: output position o of an axis of `in`
 * source pixels upsampled by s reads i0 with weight w0 and i1 with 1 - w0. */
static void bilinear_src(int o, int s, int in, int *i0, int *i1, float *w0) {
  float scale = (float)(1.0 / s);
  float src = scale * ((float)o + 0.5f) - 0.5f;
  if (src < 0.0f) src = 0.0f;
  int a = (int)src;
  if (a > in - 1) a = in - 1;
  float lam = src - (float)a;
  *i0 = a;
  *i1 = a < in - 1 ? a + 1 : a;
  *w0 = 1.0f - lam;
}

static void upsample_forward(nn_layer *l, const float *x, float *y, int n,
                             const nn_run_ctx *ctx) {
  (void)ctx;
  int sh, sw, c = l->in.dim[0], h = l->in.dim[1], w = l->in.dim[2];
  scales(l, &sh, &sw);
  int ho = h * sh, wo = w * sw;
  size_t planes = (size_t)n * c;
  int bil = is_bilinear(l);
  for (size_t pl = 0; pl < planes; pl++) {
    const float *xp = x + pl * (size_t)h * w;
    float *yp = y + pl * (size_t)ho * wo;
    for (int oh = 0; oh < ho; oh++) {
      float *yr = yp + (size_t)oh * wo;
      if (!bil) {
        const float *xr = xp + (size_t)(oh / sh) * w;
        for (int ow = 0; ow < wo; ow++) yr[ow] = xr[ow / sw];
        continue;
      }
      int h0, h1, w0i, w1i;
      float a0, b0;
      bilinear_src(oh, sh, h, &h0, &h1, &a0);
      const float *r0 = xp + (size_t)h0 * w, *r1 = xp + (size_t)h1 * w;
      for (int ow = 0; ow < wo; ow++) {
        bilinear_src(ow, sw, w, &w0i, &w1i, &b0);
        yr[ow] = a0 * (b0 * r0[w0i] + (1.0f - b0) * r0[w1i]) +
                 (1.0f - a0) * (b0 * r1[w0i] + (1.0f - b0) * r1[w1i]);
      }
    }
  }
}

static void upsample_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, int n, const nn_run_ctx *ctx) {
  (void)x;
  (void)y;
  (void)ctx;
  if (!dx) return;
  int sh, sw, c = l->in.dim[0], h = l->in.dim[1], w = l->in.dim[2];
  scales(l, &sh, &sw);
  int ho = h * sh, wo = w * sw;
  size_t planes = (size_t)n * c;
  int bil = is_bilinear(l);
  memset(dx, 0, sizeof(float) * planes * (size_t)h * w);
  for (size_t pl = 0; pl < planes; pl++) {
    float *xp = dx + pl * (size_t)h * w;
    const float *yp = dy + pl * (size_t)ho * wo;
    for (int oh = 0; oh < ho; oh++) {
      const float *yr = yp + (size_t)oh * wo;
      if (!bil) {
        float *xr = xp + (size_t)(oh / sh) * w;
        for (int ow = 0; ow < wo; ow++) xr[ow / sw] += yr[ow];
        continue;
      }
      int h0, h1, w0i, w1i;
      float a0, b0;
      bilinear_src(oh, sh, h, &h0, &h1, &a0);
      float *r0 = xp + (size_t)h0 * w, *r1 = xp + (size_t)h1 * w;
      for (int ow = 0; ow < wo; ow++) {
        bilinear_src(ow, sw, w, &w0i, &w1i, &b0);
        float g0 = a0 * yr[ow], g1 = (1.0f - a0) * yr[ow];
        r0[w0i] += b0 * g0;
        r0[w1i] += (1.0f - b0) * g0;
        r1[w0i] += b0 * g1;
        r1[w1i] += (1.0f - b0) * g1;
      }
    }
  }
}

const nn_layer_ops nn_layer_upsample = {
    .type = "upsample",
    .help = "integer upsampling [C, H, W] -> [C, H*sh, W*sw], nearest or bilinear "
            "(align_corners = False)",
    .keys = upsample_keys,
    .build = upsample_build,
    .forward = upsample_forward,
    .backward = upsample_backward,
};
