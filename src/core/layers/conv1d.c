/* conv1d.c: 1-d convolution over time (cross-correlation, as PyTorch's
 * nn.Conv1d), with the causal padding of WaveNet-style models.
 *
 * Input [T, C] per sample, time-major (the sequence convention of
 * core/layer.h: x[n][t][c]); output [To, F], also time-major. Parameters in
 * PyTorch's layout: weight [F, C, k], bias [F]. (PyTorch's Conv1d reads
 * [N, C, T]: a checkpoint's weight loads into it as is, its input is this
 * layer's input transposed.) Keys: filters, kernel_size, stride, dilation,
 * padding, use_bias, init, activation (expanded by the model).
 *
 *   y[s][t][f] = b[f] + sum_{c, j} W[f][c][j] x[s][t*stride - pl + j*dilation][c]
 *
 * with x = 0 outside [0, T). Padding (ek = dilation*(k-1) + 1, the span):
 *   valid   pl = pr = 0, To = (T - ek) / stride + 1 (T >= ek).
 *   same    To = ceil(T / stride); the total max((To-1)*stride + ek - T, 0)
 *           is split with the odd element on the right (PyTorch's
 *           padding='same' for stride 1, TensorFlow's SAME), as conv2d.
 *   causal  pl = ek - 1, pr = 0: To = ceil(T / stride), and output t reads
 *           inputs up to t*stride only (for stride 1: To = T, output t sees
 *           inputs 0..t). PyTorch: F.conv1d(F.pad(x, (ek - 1, 0)), ...).
 *
 * Sequence lengths. The layer ignores ctx->lengths: it convolves the whole
 * [T, C] sample, padding timesteps included (whatever the data reader put
 * there; the per-timestep loss masks what lies past the length). With causal
 * padding and stride 1, output t < length depends on valid inputs only, so
 * the padding cannot leak into a valid output; "same" and "valid" outputs
 * near the end read padded steps, and a stride makes the output shorter than
 * the lengths in ctx say (the per-timestep loss then needs lengths of its
 * own; a strided conv1d suits a classifier that pools, not a tagger).
 *
 * Computation: im2col over time and one sgemm per chunk of rows. Row
 * r = s*To + t of col [rows, C*k] holds sample s's receptive field of output
 * t in weight's order (c*k + j), so W [F, C*k] multiplies it directly and
 * the product [rows, F] is the time-major output itself:
 *   forward   y[rows, F]   = col W^T (+ bias, pre-filled, beta 1)
 *   backward  dW [F, C*k] += dy^T col;  db += column sums of dy;
 *             dcol          = dy W, added back into dx (col2im).
 * Rows go in chunks of R (CONV1D__CHUNK_FLOATS floats of col, 1 MB, at
 * least CONV1D__MIN_ROWS rows) so col stays in L2 while dW's GEMM still sums
 * over hundreds of rows (measured on [64, 256] -> 256 filters, k 3, and
 * [256, 128] -> 128, k 2, batch 32: 256 KB chunks were ~10% slower in
 * backward, 4 MB no better); backward rebuilds col from x and reuses the same
 * buffer for dcol. A 1x1 convolution with stride 1 needs
 * no columns (col is x itself): one sgemm over the batch each way.
 * Scratch: fixed, R*C*k floats; nothing is allocated in forward/backward.
 *
 * Initialization: weight he_uniform (fan_in = C*k), bias zeros, as conv2d. */
#include <stddef.h>
#include <string.h>

#include <cblas.h>

#include "core/layer.h"
#include "core/layers/window.h"

#define CONV1D__MAXDIM (1 << 16)
#ifndef CONV1D__CHUNK_FLOATS
#define CONV1D__CHUNK_FLOATS (256 * 1024)
#endif
#ifndef CONV1D__MIN_ROWS
#define CONV1D__MIN_ROWS 256
#endif

/* conv1d's own options (nn_layer_cfg.opts) */
typedef struct conv1d_opts {
  int filters;      /* F: output channels */
  int kernel_size;  /* k: taps */
  int stride;
  int dilation;     /* spacing of the taps */
  char padding[16]; /* "valid" | "same" | "causal" */
  int use_bias;
  char init[24];    /* weight initializer name */
} conv1d_opts;
NN_LAYER_OPTS_FIT(conv1d_opts);

static const conv1d_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const conv1d_opts);
}

static const nn_key conv1d_keys[] = {
    {"filters", NN_KEY_INT, offsetof(conv1d_opts, filters), sizeof(int), 1, 1 << 20, NULL,
     NULL, NN_KEY_REQUIRED, "number of output channels", 0},
    {"kernel_size", NN_KEY_INT, offsetof(conv1d_opts, kernel_size), sizeof(int), 1,
     CONV1D__MAXDIM, NULL, NULL, NN_KEY_REQUIRED, "taps of the window over time", 0},
    {"stride", NN_KEY_INT, offsetof(conv1d_opts, stride), sizeof(int), 1, CONV1D__MAXDIM, "1",
     NULL, 0, "step of the window over time", 0},
    {"dilation", NN_KEY_INT, offsetof(conv1d_opts, dilation), sizeof(int), 1, CONV1D__MAXDIM,
     "1", NULL, 0, "spacing of the window's taps (WaveNet: 1, 2, 4, ...)", 0},
    {"padding", NN_KEY_ENUM, offsetof(conv1d_opts, padding),
     sizeof(((conv1d_opts *)0)->padding), 0, 0, "\"valid\"", "valid|same|causal", 0,
     "valid: none; same: out = ceil(T/stride) (extra on the right); causal: "
     "dilation*(kernel_size-1) zeros on the left only, output t sees inputs <= t", 0},
    {"use_bias", NN_KEY_BOOL, offsetof(conv1d_opts, use_bias), sizeof(int), 0, 1, "true", NULL,
     0, "add a learned bias to each output channel", 0},
    {"init", NN_KEY_ENUM, offsetof(conv1d_opts, init), sizeof(((conv1d_opts *)0)->init), 0, 0,
     "\"he_uniform\"", NN_INIT_CHOICES, 0, "weight initializer (the bias starts at zero)", 0},
    {"activation", NN_KEY_ENUM, offsetof(nn_layer_cfg, activation),
     sizeof(((nn_layer_cfg *)0)->activation), 0, 0, "\"none\"", NN_ACTIVATION_CHOICES,
     NN_KEY_CFG, "activation layer added after this one, named <name>_<activation>", 0},
    {0},
};

/* Everything forward/backward need, from cfg and the input shape. */
typedef struct conv1d_geom {
  int t, c;       /* input timesteps, channels */
  int f, k;       /* filters, taps */
  int st, dil;    /* stride, dilation */
  int pl, pr;     /* zeros before and after the input */
  int to;         /* output timesteps */
  int kc;         /* C*k: columns of col */
  int rows;       /* R: rows of col per chunk */
  int direct;     /* 1x1, stride 1: col is x itself */
} conv1d_geom;

/* Fill g from l->cfg and l->in. err may be NULL (forward/backward: build has
 * validated). Returns 0 or NN_ESCHEMA / NN_ESHAPE. */
static int conv1d_geometry(const nn_layer *l, conv1d_geom *g, nn_error *err) {
  const conv1d_opts *o = opts(l);
  char shp[64];
  memset(g, 0, sizeof *g);
  if (l->in.ndim != 2)
    return nn_error_set(err, NN_ESHAPE, "expects a [T, channels] input (time-major), got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  g->t = l->in.dim[0];
  g->c = l->in.dim[1];
  g->f = o->filters;
  g->k = o->kernel_size;
  g->st = o->stride;
  g->dil = o->dilation;
  if (g->f < 1) return nn_error_set(err, NN_ESCHEMA, "filters must be >= 1, got %d", g->f);
  if (g->k < 1 || g->k > CONV1D__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "kernel_size must be in [1, %d], got %d",
                        CONV1D__MAXDIM, g->k);
  if (g->st < 1 || g->st > CONV1D__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "stride must be in [1, %d], got %d", CONV1D__MAXDIM,
                        g->st);
  if (g->dil < 1 || g->dil > CONV1D__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "dilation must be in [1, %d], got %d", CONV1D__MAXDIM,
                        g->dil);
  long ek = (long)g->dil * (g->k - 1) + 1; /* <= 2^32 */
  if (ek > (1L << 30))
    return nn_error_set(err, NN_ESCHEMA, "dilation %d x kernel_size %d spans too many steps",
                        g->dil, g->k);
  if (strcmp(o->padding, "valid") == 0 || o->padding[0] == '\0') {
    g->pl = g->pr = 0;
  } else if (strcmp(o->padding, "same") == 0) {
    nn_window_same_pad(g->t, g->st, (int)ek, &g->pl, &g->pr);
  } else if (strcmp(o->padding, "causal") == 0) {
    g->pl = (int)(ek - 1);
    g->pr = 0;
  } else {
    return nn_error_set(err, NN_ESCHEMA, "padding '%s' is not one of valid|same|causal",
                        o->padding);
  }
  long tp = (long)g->t + g->pl + g->pr;
  if (ek > tp)
    return nn_error_set(err, NN_ESHAPE, "kernel of %d taps (spanning %ld steps) is longer than "
                        "the %s input of %ld steps", g->k, ek,
                        g->pl + g->pr ? "padded" : "unpadded", tp);
  g->to = (int)((tp - ek) / g->st + 1);
  g->kc = g->c * g->k; /* < 2^31: build checks */
  g->direct = g->k == 1 && g->st == 1 && g->pl == 0;
  long r = CONV1D__CHUNK_FLOATS / (g->kc > 0 ? g->kc : 1);
  g->rows = (int)(r < CONV1D__MIN_ROWS ? CONV1D__MIN_ROWS : r);
  return 0;
}

static int conv1d_build(nn_layer *l, nn_error *err) {
  conv1d_geom g;
  int rc = conv1d_geometry(l, &g, err);
  if (rc) return rc;
  int init = NN_INIT_HE_UNIFORM;
  if (opts(l)->init[0]) {
    init = nn_init_parse(opts(l)->init);
    if (init < 0)
      return nn_error_set(err, NN_ESCHEMA, "init '%s' is not one of %s", opts(l)->init,
                          nn_init_choices);
  }
  size_t kc = (size_t)g.c * g.k;
  if (kc * (size_t)g.rows >= ((size_t)1 << 31) || (size_t)g.t * g.c >= ((size_t)1 << 31) ||
      (size_t)g.to * g.f >= ((size_t)1 << 31))
    return nn_error_set(err, NN_ESHAPE, "convolution of [%d, %d] with %d filters of %d taps is "
                        "too large", g.t, g.c, g.f, g.k);
  l->out.ndim = 2;
  l->out.dim[0] = g.to;
  l->out.dim[1] = g.f;
  l->scratch_per_sample = 0;
  l->scratch_fixed = g.direct ? 0 : (size_t)g.rows * kc; /* col, then dcol */
  nn_shape ws = {3, {g.f, g.c, g.k}};
  rc = nn_layer_add_param(l, "weight", &ws, (nn_init_kind)init, (int)kc, g.f * g.k, err);
  if (rc) return rc;
  if (opts(l)->use_bias) {
    nn_shape bs = {1, {g.f}};
    rc = nn_layer_add_param(l, "bias", &bs, NN_INIT_ZEROS, (int)kc, g.f * g.k, err);
  }
  return rc;
}

/* x [n, T, C] -> col [r1 - r0, C*k]: row r - r0 holds output row r = s*To + t:
 *   col[r - r0][c*k + j] = x[s][t*stride - pl + j*dilation][c], 0 outside [0, T). */
static void im2col(const conv1d_geom *g, const float *x, int r0, int r1, float *col) {
  for (int r = r0; r < r1; r++) {
    int s = r / g->to, t = r % g->to;
    float *dst = col + (size_t)(r - r0) * g->kc;
    for (int j = 0; j < g->k; j++) {
      long ti = (long)t * g->st - g->pl + (long)j * g->dil;
      if (ti < 0 || ti >= g->t) {
        for (int c = 0; c < g->c; c++) dst[c * g->k + j] = 0.0f;
        continue;
      }
      const float *src = x + ((size_t)s * g->t + (size_t)ti) * g->c;
      if (g->k == 1) {
        memcpy(dst, src, sizeof(float) * (size_t)g->c);
      } else {
        for (int c = 0; c < g->c; c++) dst[c * g->k + j] = src[c];
      }
    }
  }
}

/* The adjoint of im2col: dx[s][ti][c] += dcol[r - r0][c*k + j] (dx is
 * zeroed by the caller before the first chunk). */
static void col2im(const conv1d_geom *g, const float *dcol, int r0, int r1, float *dx) {
  for (int r = r0; r < r1; r++) {
    int s = r / g->to, t = r % g->to;
    const float *src = dcol + (size_t)(r - r0) * g->kc;
    for (int j = 0; j < g->k; j++) {
      long ti = (long)t * g->st - g->pl + (long)j * g->dil;
      if (ti < 0 || ti >= g->t) continue;
      float *dst = dx + ((size_t)s * g->t + (size_t)ti) * g->c;
      for (int c = 0; c < g->c; c++) dst[c] += src[c * g->k + j];
    }
  }
}

/* x [n, T, C] -> y [n, To, F]: per chunk of rows, y = col W^T (+ b). */
static void conv1d_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  conv1d_geom g;
  conv1d_geometry(l, &g, NULL);
  const float *w = l->param[0], *b = l->nparams > 1 ? l->param[1] : NULL;
  int rows = n * g.to;
  if (b)
    for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * g.f, b, sizeof(float) * (size_t)g.f);
  if (g.direct) { /* col = x: [n*T, C] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, g.f, g.kc, 1.0f, x, g.kc, w, g.kc,
                b ? 1.0f : 0.0f, y, g.f);
    return;
  }
  for (int r0 = 0; r0 < rows; r0 += g.rows) {
    int m = rows - r0 < g.rows ? rows - r0 : g.rows;
    im2col(&g, x, r0, r0 + m, l->scratch);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, g.f, g.kc, 1.0f, l->scratch, g.kc,
                w, g.kc, b ? 1.0f : 0.0f, y + (size_t)r0 * g.f, g.f);
  }
}

/* db[f] += sum over rows of dy[r][f], dy [rows, F]: sums of thousands of
 * rows, so in double, 16 columns at a time (one pass over dy per block). */
static void bias_grad(const float *dy, int rows, int f, float *db) {
  for (int f0 = 0; f0 < f; f0 += 16) {
    int w = f - f0 < 16 ? f - f0 : 16;
    double acc[16] = {0};
    for (int r = 0; r < rows; r++) {
      const float *row = dy + (size_t)r * f + f0;
      for (int j = 0; j < w; j++) acc[j] += row[j];
    }
    for (int j = 0; j < w; j++) db[f0 + j] += (float)acc[j];
  }
}

/* dy [n, To, F]: db += column sums; per chunk dW += dy^T col (col rebuilt
 * from x), then dcol = dy W in the same buffer, added into dx (zeroed
 * first) when dx is not NULL. */
static void conv1d_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int n, const nn_run_ctx *ctx) {
  conv1d_geom g;
  int pg = nn_layer_param_grads(l, ctx);
  if (!pg && !dx) return;
  conv1d_geometry(l, &g, NULL);
  const float *w = l->param[0];
  float *dw = pg ? l->grad[0] : NULL, *db = pg && l->nparams > 1 ? l->grad[1] : NULL;
  int rows = n * g.to;
  if (db) bias_grad(dy, rows, g.f, db);
  if (g.direct) {
    if (dw)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.f, g.kc, rows, 1.0f, dy, g.f, x,
                  g.kc, 1.0f, dw, g.kc);
    if (dx)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, g.kc, g.f, 1.0f, dy, g.f, w,
                  g.kc, 0.0f, dx, g.kc);
    return;
  }
  if (dx) memset(dx, 0, sizeof(float) * (size_t)n * g.t * g.c);
  float *col = l->scratch;
  for (int r0 = 0; r0 < rows; r0 += g.rows) {
    int m = rows - r0 < g.rows ? rows - r0 : g.rows;
    const float *dyc = dy + (size_t)r0 * g.f;
    if (dw) {
      im2col(&g, x, r0, r0 + m, col);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.f, g.kc, m, 1.0f, dyc, g.f, col,
                  g.kc, 1.0f, dw, g.kc);
    }
    if (dx) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, g.kc, g.f, 1.0f, dyc, g.f, w,
                  g.kc, 0.0f, col, g.kc);
      col2im(&g, col, r0, r0 + m, dx);
    }
  }
}

const nn_layer_ops nn_layer_conv1d = {
    .type = "conv1d",
    .help = "1-d convolution over time [T, C] -> [To, filters] (time-major), weight "
            "[filters, C, kernel_size]; causal padding and dilation for WaveNet-style models",
    .keys = conv1d_keys,
    .penalize_weight = 1,
    .build = conv1d_build,
    .forward = conv1d_forward,
    .backward = conv1d_backward,
};
