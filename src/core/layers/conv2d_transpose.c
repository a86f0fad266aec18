/* conv2d_transpose.c: transposed 2-d convolution (PyTorch's nn.ConvTranspose2d).
 *
 * Input [C, H, W] per sample, output [F, Ho, Wo] with, per axis,
 *     out = (in - 1)*stride - 2*padding + kernel + output_padding.
 * Parameters in PyTorch's layout: weight [C, F, kh, kw] (input channels
 * first), bias [F]. Keys: filters, kernel_size, stride, padding ([ph, pw]
 * zeros as PyTorch's `padding`: they crop the full output), output_padding
 * (extra rows/columns at the bottom/right, < stride), use_bias, init,
 * activation (expanded by the model).
 *
 * The forward pass is the input gradient of a conv2d with the same weight
 * seen as [C filters, F channels, kh, kw] mapping [F, Ho, Wo] to [C, H, W]:
 *     col [K, P] = W^T x_s            (K = F*kh*kw, P = H*W; one GEMM)
 *     y_s = bias + col2im(col)        (every tap adds into the output pixel
 *                                      oh = ih*sh - ph + i, ow = iw*sw - pw + j;
 *                                      taps outside [0, Ho) x [0, Wo) are dropped)
 * and the backward pass is that conv2d's forward and weight gradient:
 *     col = im2col(dy_s)              (col[(f*kh + i)*kw + j][ih*W + iw] =
 *                                      dy_s[f][ih*sh - ph + i][iw*sw - pw + j], 0 outside)
 *     dx_s = W col,  dW += x_s col^T,  db += sums of dy_s.
 * One sample at a time; the scratch is one col [K, P] (fixed, declared in
 * build), so forward and backward allocate nothing. Its own im2col/col2im
 * (stride and cropping, no dilation or groups) keep conv2d.c untouched.
 *
 * Initialization: weight he_uniform with fan_in = C*kh*kw, fan_out =
 * F*kh*kw; bias zeros. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "core/layer.h"
#include "core/layers/window.h"

#define CONVT__MAXDIM (1 << 16)

typedef struct convt_opts {
  int filters;
  int kernel_size[2], kernel_size_n;
  int stride[2], stride_n;
  int padding[2], padding_n;
  int output_padding[2], output_padding_n;
  int use_bias;
  char init[24];
} convt_opts;
NN_LAYER_OPTS_FIT(convt_opts);

static const convt_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const convt_opts);
}

static const nn_key convt_keys[] = {
    {"filters", NN_KEY_INT, offsetof(convt_opts, filters), sizeof(int), 1, 1 << 20, NULL, NULL,
     NN_KEY_REQUIRED, "number of output channels", 0},
    {"kernel_size", NN_KEY_INT_LIST, offsetof(convt_opts, kernel_size), 2, 1, CONVT__MAXDIM,
     NULL, NULL, NN_KEY_REQUIRED, "window [kh, kw]; one value means a square window",
     offsetof(convt_opts, kernel_size_n)},
    {"stride", NN_KEY_INT_LIST, offsetof(convt_opts, stride), 2, 1, CONVT__MAXDIM, "[1]", NULL,
     0, "upsampling step [sh, sw]: input pixels land stride apart in the output",
     offsetof(convt_opts, stride_n)},
    {"padding", NN_KEY_INT_LIST, offsetof(convt_opts, padding), 2, 0, CONVT__MAXDIM, "[0]",
     NULL, 0, "[ph, pw] as PyTorch's padding: ph rows (pw columns) cropped from each side of "
     "the full output", offsetof(convt_opts, padding_n)},
    {"output_padding", NN_KEY_INT_LIST, offsetof(convt_opts, output_padding), 2, 0,
     CONVT__MAXDIM, "[0]", NULL, 0, "[oh, ow] extra rows/columns at the bottom/right, each "
     "smaller than its stride", offsetof(convt_opts, output_padding_n)},
    {"use_bias", NN_KEY_BOOL, offsetof(convt_opts, use_bias), sizeof(int), 0, 1, "true", NULL,
     0, "add a learned bias to each output channel", 0},
    {"init", NN_KEY_ENUM, offsetof(convt_opts, init), sizeof(((convt_opts *)0)->init), 0, 0,
     "\"he_uniform\"", NN_INIT_CHOICES, 0, "weight initializer (the bias starts at zero)", 0},
    {"activation", NN_KEY_ENUM, offsetof(nn_layer_cfg, activation),
     sizeof(((nn_layer_cfg *)0)->activation), 0, 0, "\"none\"", NN_ACTIVATION_CHOICES,
     NN_KEY_CFG, "activation layer added after this one, named <name>_<activation>", 0},
    {0},
};

typedef struct convt_geom {
  int c, h, w;        /* input channels, height, width */
  int f, ho, wo;      /* output channels, height, width */
  int kh, kw, sh, sw, ph, pw, oph, opw;
  int k;              /* f*kh*kw: rows of col */
  int p;              /* h*w: columns of col */
} convt_geom;

static int convt_geometry(const nn_layer *l, convt_geom *g, nn_error *err) {
  const convt_opts *o = opts(l);
  char shp[64];
  memset(g, 0, sizeof *g);
  if (l->in.ndim != 3)
    return nn_error_set(err, NN_ESHAPE, "expects a [channels, height, width] input, got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  g->c = l->in.dim[0];
  g->h = l->in.dim[1];
  g->w = l->in.dim[2];
  g->f = o->filters;
  if (g->f < 1) return nn_error_set(err, NN_ESCHEMA, "filters must be >= 1, got %d", g->f);
  if (nn_window_pair(o->kernel_size, o->kernel_size_n, &g->kh, &g->kw))
    return nn_error_set(err, NN_ESCHEMA, "kernel_size must have 1 or 2 items, got %d",
                        o->kernel_size_n);
  if (nn_window_pair(o->stride, o->stride_n, &g->sh, &g->sw))
    return nn_error_set(err, NN_ESCHEMA, "stride must have 1 or 2 items, got %d", o->stride_n);
  if (nn_window_pair(o->padding, o->padding_n, &g->ph, &g->pw))
    return nn_error_set(err, NN_ESCHEMA, "padding must have 1 or 2 items, got %d",
                        o->padding_n);
  if (nn_window_pair(o->output_padding, o->output_padding_n, &g->oph, &g->opw))
    return nn_error_set(err, NN_ESCHEMA, "output_padding must have 1 or 2 items, got %d",
                        o->output_padding_n);
  if (g->kh < 1 || g->kw < 1 || g->kh > CONVT__MAXDIM || g->kw > CONVT__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "kernel_size must be in [1, %d], got %dx%d",
                        CONVT__MAXDIM, g->kh, g->kw);
  if (g->sh < 1 || g->sw < 1 || g->sh > CONVT__MAXDIM || g->sw > CONVT__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "stride must be in [1, %d], got %dx%d", CONVT__MAXDIM,
                        g->sh, g->sw);
  if (g->ph < 0 || g->pw < 0 || g->ph > CONVT__MAXDIM || g->pw > CONVT__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "padding must be in [0, %d], got %dx%d",
                        CONVT__MAXDIM, g->ph, g->pw);
  if (g->oph < 0 || g->opw < 0 || g->oph >= g->sh || g->opw >= g->sw)
    return nn_error_set(err, NN_ESCHEMA,
                        "output_padding %dx%d must be >= 0 and smaller than the stride %dx%d",
                        g->oph, g->opw, g->sh, g->sw);
  long ho = ((long)g->h - 1) * g->sh - 2L * g->ph + g->kh + g->oph;
  long wo = ((long)g->w - 1) * g->sw - 2L * g->pw + g->kw + g->opw;
  if (ho < 1 || wo < 1)
    return nn_error_set(err, NN_ESHAPE,
                        "padding %dx%d leaves no output: (in - 1)*stride - 2*padding + kernel + "
                        "output_padding = %ldx%ld for input %dx%d",
                        g->ph, g->pw, ho, wo, g->h, g->w);
  if (ho > CONVT__MAXDIM * 16L || wo > CONVT__MAXDIM * 16L)
    return nn_error_set(err, NN_ESHAPE, "output %ldx%ld is too large", ho, wo);
  g->ho = (int)ho;
  g->wo = (int)wo;
  size_t k = (size_t)g->f * g->kh * g->kw, p = (size_t)g->h * g->w;
  if (k * p > ((size_t)1 << 31) || (size_t)g->f * ho * wo > ((size_t)1 << 31) ||
      (size_t)g->c * k > ((size_t)1 << 31))
    return nn_error_set(err, NN_ESHAPE,
                        "transposed convolution of %dx%dx%d with %d %dx%d filters is too large",
                        g->c, g->h, g->w, g->f, g->kh, g->kw);
  g->k = (int)k;
  g->p = (int)p;
  return 0;
}

/* The input positions a in [0, n) whose output a*s + off lies in [0, lim):
 * [*a0, *a1). */
static void valid_range(int n, int s, int off, int lim, int *a0, int *a1) {
  long lo = off >= 0 ? 0 : (-(long)off + s - 1) / s;
  long hi = (long)lim - off <= 0 ? 0 : ((long)lim - off + s - 1) / s;
  if (hi > n) hi = n;
  if (lo > hi) lo = hi;
  *a0 = (int)lo;
  *a1 = (int)hi;
}

/* col [K, P] -> y [F, Ho, Wo] += (the adjoint of im2col below). */
static void col2im_add(const convt_geom *g, const float *col, float *y) {
  for (int f = 0; f < g->f; f++)
    for (int i = 0; i < g->kh; i++) {
      int ih0, ih1;
      valid_range(g->h, g->sh, i - g->ph, g->ho, &ih0, &ih1);
      for (int j = 0; j < g->kw; j++) {
        const float *row = col + ((size_t)(f * g->kh + i) * g->kw + j) * g->p;
        int iw0, iw1, offw = j - g->pw;
        valid_range(g->w, g->sw, offw, g->wo, &iw0, &iw1);
        for (int ih = ih0; ih < ih1; ih++) {
          float *dst = y + ((size_t)f * g->ho + (size_t)(ih * g->sh + i - g->ph)) * g->wo;
          const float *src = row + (size_t)ih * g->w;
          for (int iw = iw0; iw < iw1; iw++) dst[iw * g->sw + offw] += src[iw];
        }
      }
    }
}

/* dy [F, Ho, Wo] -> col [K, P]: col[(f*kh + i)*kw + j][ih*W + iw] =
 * dy[f][ih*sh - ph + i][iw*sw - pw + j], 0 outside. */
static void im2col(const convt_geom *g, const float *dy, float *col) {
  for (int f = 0; f < g->f; f++)
    for (int i = 0; i < g->kh; i++) {
      int ih0, ih1;
      valid_range(g->h, g->sh, i - g->ph, g->ho, &ih0, &ih1);
      for (int j = 0; j < g->kw; j++) {
        float *row = col + ((size_t)(f * g->kh + i) * g->kw + j) * g->p;
        int iw0, iw1, offw = j - g->pw;
        valid_range(g->w, g->sw, offw, g->wo, &iw0, &iw1);
        memset(row, 0, sizeof(float) * (size_t)ih0 * g->w);
        for (int ih = ih0; ih < ih1; ih++) {
          const float *src = dy + ((size_t)f * g->ho + (size_t)(ih * g->sh + i - g->ph)) * g->wo;
          float *dst = row + (size_t)ih * g->w;
          for (int iw = 0; iw < iw0; iw++) dst[iw] = 0.0f;
          for (int iw = iw0; iw < iw1; iw++) dst[iw] = src[iw * g->sw + offw];
          for (int iw = iw1; iw < g->w; iw++) dst[iw] = 0.0f;
        }
        memset(row + (size_t)ih1 * g->w, 0, sizeof(float) * (size_t)(g->h - ih1) * g->w);
      }
    }
}

static int convt_build(nn_layer *l, nn_error *err) {
  convt_geom g;
  int rc = convt_geometry(l, &g, err);
  if (rc) return rc;
  int init = nn_init_parse(opts(l)->init[0] ? opts(l)->init : "he_uniform");
  if (init < 0)
    return nn_error_set(err, NN_ESCHEMA, "init '%s' is not one of %s", opts(l)->init,
                        nn_init_choices);
  l->out.ndim = 3;
  l->out.dim[0] = g.f;
  l->out.dim[1] = g.ho;
  l->out.dim[2] = g.wo;
  l->scratch_fixed = (size_t)g.k * (size_t)g.p; /* col [K, P] */
  nn_shape ws = {4, {g.c, g.f, g.kh, g.kw}};
  int fan_in = g.c * g.kh * g.kw, fan_out = g.k;
  rc = nn_layer_add_param(l, "weight", &ws, (nn_init_kind)init, fan_in, fan_out, err);
  if (!rc && opts(l)->use_bias) {
    nn_shape bs = {1, {g.f}};
    rc = nn_layer_add_param(l, "bias", &bs, NN_INIT_ZEROS, fan_in, fan_out, err);
  }
  return rc;
}

/* x [n, C, H, W] -> y [n, F, Ho, Wo]: per sample col = W^T x_s, y_s = bias + col2im(col). */
static void convt_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  (void)ctx;
  convt_geom g;
  convt_geometry(l, &g, NULL);
  const float *w = l->param[0], *b = l->nparams > 1 ? l->param[1] : NULL;
  float *col = l->scratch;
  size_t xs = (size_t)g.c * g.p, plane = (size_t)g.ho * g.wo, ys = (size_t)g.f * plane;
  for (int s = 0; s < n; s++) {
    float *yo = y + (size_t)s * ys;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.k, g.p, g.c, 1.0f, w, g.k,
                x + (size_t)s * xs, g.p, 0.0f, col, g.p);
    for (int f = 0; f < g.f; f++) {
      float bf = b ? b[f] : 0.0f;
      for (size_t q = 0; q < plane; q++) yo[(size_t)f * plane + q] = bf;
    }
    col2im_add(&g, col, yo);
  }
}

/* dW, db += (unless frozen), dx = W im2col(dy) (unless NULL). */
static void convt_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                           float *dx, int n, const nn_run_ctx *ctx) {
  (void)y;
  int pg = nn_layer_param_grads(l, ctx);
  if (!pg && !dx) return;
  convt_geom g;
  convt_geometry(l, &g, NULL);
  const float *w = l->param[0];
  float *dw = pg ? l->grad[0] : NULL, *db = pg && l->nparams > 1 ? l->grad[1] : NULL;
  float *col = l->scratch;
  size_t xs = (size_t)g.c * g.p, plane = (size_t)g.ho * g.wo, ys = (size_t)g.f * plane;
  for (int s = 0; s < n; s++) {
    const float *dys = dy + (size_t)s * ys;
    if (db)
      for (int f = 0; f < g.f; f++) {
        double sum = 0.0;
        for (size_t q = 0; q < plane; q++) sum += dys[(size_t)f * plane + q];
        db[f] += (float)sum;
      }
    im2col(&g, dys, col);
    if (dw)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.c, g.k, g.p, 1.0f,
                  x + (size_t)s * xs, g.p, col, g.p, 1.0f, dw, g.k);
    if (dx)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.c, g.p, g.k, 1.0f, w, g.k, col,
                  g.p, 0.0f, dx + (size_t)s * xs, g.p);
  }
}

const nn_layer_ops nn_layer_conv2d_transpose = {
    .type = "conv2d_transpose",
    .help = "transposed 2-d convolution [C, H, W] -> [filters, (H-1)*sh - 2*ph + kh + oph, ...], "
            "weight [C, filters, kh, kw]",
    .keys = convt_keys,
    .penalize_weight = 1,
    .build = convt_build,
    .forward = convt_forward,
    .backward = convt_backward,
};
