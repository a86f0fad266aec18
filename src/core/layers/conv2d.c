/* conv2d.c: 2-d convolution (cross-correlation, as PyTorch's nn.Conv2d).
 *
 * Input [C, H, W] per sample, output [F, Ho, Wo]; parameters in PyTorch's
 * layout: weight [F, C/groups, kh, kw], bias [F]. Keys: filters,
 * kernel_size, stride, padding ("valid" | "same" | "explicit" with pad),
 * dilation, groups, use_bias, init, activation (expanded by the model).
 *
 * Padding:
 *   valid     no padding.
 *   explicit  pad = [ph, pw] zeros on both sides (PyTorch's padding=(ph, pw)).
 *   same      out = ceil(in / stride) (TensorFlow's SAME); the total padding
 *             max((out-1)*stride + dilation*(k-1) + 1 - in, 0) is split with
 *             the odd element at the bottom/right. For stride 1 this is
 *             exactly PyTorch's padding='same'.
 *
 * Layout (chosen by measuring the classic Fashion-MNIST convnet, batch 64,
 * one thread; see docs/layers.md). K = C*kh*kw, P = Ho*Wo.
 *   The batch is processed in chunks of S samples (conv_chunk): S*K*P
 *   floats of columns stay in L2 (CONV__CHUNK_FLOATS) while the GEMMs keep
 *   at least CONV__MIN_COLS columns. im2col fills col [K, S*P], column
 *   s*P + p holding sample s's receptive field of output pixel p. With
 *   stride 1 and an output as wide as the input ("same"), a tap's row is
 *   the input plane shifted: one contiguous copy per sample and tap, and
 *   col2im one contiguous add (shift_of); otherwise a copy per output row.
 *   Large planes (P >= CONV__DIRECT_P): per sample and group one sgemm
 *     y_s [F, P] = W [F, K] col_s (bias pre-filled, beta 1) writes NCHW in
 *     place; backward dW += dy_s col_s^T and dcol_s = W^T dy_s read dy in
 *     place. No reorders.
 *   Small planes (3x3 outputs: 9 columns a sample): the chunk is folded
 *     into N, yt [F, S*P] = W col, then reordered to y [S, F, P] with the
 *     bias; backward reorders dy to dyt [F, S*P] and runs two chunk GEMMs.
 *   Backward computes the chunk's col again from x: a whole batch of
 *   columns (9 MB for the middle layer of that net) would come back from
 *   memory, slower than rebuilding it in L2. col2im adds dcol into dx one
 *   input plane at a time. dx is skipped when NULL (the first layer).
 * Scratch: fixed, col [K, S*P] + CONV__SLACK | yt [F, S*P] | dcol [K, S*P]
 * for the largest S; nothing is allocated in forward or backward.
 * Limits: K*P and F*P must fit an int (BLAS dimensions; checked by build).
 *
 * Backends: everything below conv_state is the reference implementation.
 * When the build has oneDNN and NN_CONV_BACKEND picks it (core/compute.h),
 * build also creates a conv2d_dnnl backend (l->state) and forward/backward
 * hand the call to it; a call it cannot serve (no primitives for that slice
 * size: out of memory) falls back here. The reference's scratch is declared
 * either way, for that fallback. A blocked oneDNN backend also reads and
 * writes the blocked activation layout (core/layer.h: blk_caps NN_BLK_IN when
 * C, NN_BLK_OUT when F is a multiple of 16; groups 1), where the model keeps
 * it; the fallback then converts those tensors to NCHW and back in place.
 *
 * Initialization: weight he_uniform, U(-sqrt(6/fan_in), +) with fan_in =
 * C/groups*kh*kw (suited to the relu that usually follows; PyTorch's own
 * default, kaiming_uniform(a=sqrt 5), is U(-1/sqrt(fan_in), +)); bias zeros. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/blocked.h"
#include "core/compute.h"
#include "core/layer.h"
#include "core/layers/conv2d_dnnl.h"
#include "core/layers/rows.h"
#include "core/layers/window.h"
#include "core/mem.h"

#define CONV__MAXDIM (1 << 16)
#define CONV__SLACK 16 /* floats after col that copy_row may spill into */

/* conv2d's own options (nn_layer_cfg.opts); 2-d lists: [h, w], one value
 * means both */
typedef struct conv_opts {
  int filters;                  /* output channels */
  int kernel_size[2], kernel_size_n;
  int stride[2], stride_n;
  char padding[16];             /* "valid" | "same" | "explicit" (then `pad`) */
  int pad[2], pad_n;            /* explicit zero padding [h, w] */
  int dilation[2], dilation_n;
  int groups;                   /* channel groups */
  int use_bias;
  char init[24];                /* weight initializer name, "" = he_uniform */
} conv_opts;
NN_LAYER_OPTS_FIT(conv_opts);

static const conv_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const conv_opts);
}

static const nn_key conv2d_keys[] = {
    {"filters", NN_KEY_INT, offsetof(conv_opts, filters), sizeof(int), 1, 1 << 20, NULL,
     NULL, NN_KEY_REQUIRED, "number of output channels", 0},
    {"kernel_size", NN_KEY_INT_LIST, offsetof(conv_opts, kernel_size), 2, 1, CONV__MAXDIM,
     NULL, NULL, NN_KEY_REQUIRED, "window [kh, kw]; one value means a square window",
     offsetof(conv_opts, kernel_size_n)},
    {"stride", NN_KEY_INT_LIST, offsetof(conv_opts, stride), 2, 1, CONV__MAXDIM, "[1]", NULL,
     0, "step of the window [sh, sw]; one value means both", offsetof(conv_opts, stride_n)},
    {"padding", NN_KEY_ENUM, offsetof(conv_opts, padding),
     sizeof(((conv_opts *)0)->padding), 0, 0, "\"valid\"", "valid|same|explicit", 0,
     "valid: none; same: out = ceil(in/stride) (extra at bottom/right); explicit: `pad`", 0},
    {"pad", NN_KEY_INT_LIST, offsetof(conv_opts, pad), 2, 0, CONV__MAXDIM, "[0]", NULL, 0,
     "zeros added on both sides [ph, pw] when padding = \"explicit\"",
     offsetof(conv_opts, pad_n)},
    {"dilation", NN_KEY_INT_LIST, offsetof(conv_opts, dilation), 2, 1, CONV__MAXDIM, "[1]",
     NULL, 0, "spacing of the window's taps [dh, dw]", offsetof(conv_opts, dilation_n)},
    {"groups", NN_KEY_INT, offsetof(conv_opts, groups), sizeof(int), 1, 1 << 20, "1", NULL, 0,
     "channel groups: input channels and filters must both be divisible by it", 0},
    {"use_bias", NN_KEY_BOOL, offsetof(conv_opts, use_bias), sizeof(int), 0, 1, "true", NULL,
     0, "add a learned bias to each output channel", 0},
    {"init", NN_KEY_ENUM, offsetof(conv_opts, init), sizeof(((conv_opts *)0)->init), 0, 0,
     "\"he_uniform\"", NN_INIT_CHOICES, 0, "weight initializer (the bias starts at zero)", 0},
    {"activation", NN_KEY_ENUM, offsetof(nn_layer_cfg, activation),
     sizeof(((nn_layer_cfg *)0)->activation), 0, 0, "\"none\"", NN_ACTIVATION_CHOICES,
     NN_KEY_CFG, "activation layer added after this one, named <name>_<activation>", 0},
    {0},
};

/* Everything forward/backward need, derived from cfg and the input shape. */
typedef struct conv_geom {
  int c, h, w;         /* input channels, height, width */
  int f, groups;       /* filters, channel groups */
  int cg, fg, kg;      /* per group: input channels, filters, rows of col (cg*kh*kw) */
  int kh, kw, sh, sw, dh, dw;
  int pt, pb, pl, pr;  /* zero padding top, bottom, left, right */
  int ho, wo;
  size_t p;            /* ho*wo */
} conv_geom;

/* Fill g from l->cfg and l->in. err may be NULL (forward/backward, where
 * build has already validated). Returns 0 or NN_ESCHEMA/NN_ESHAPE. */
static int conv_geometry(const nn_layer *l, conv_geom *g, nn_error *err) {
  const conv_opts *c = opts(l);
  char shp[64];
  memset(g, 0, sizeof *g);
  if (l->in.ndim != 3)
    return nn_error_set(err, NN_ESHAPE,
                        "expects a [channels, height, width] input, got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  g->c = l->in.dim[0];
  g->h = l->in.dim[1];
  g->w = l->in.dim[2];
  g->f = c->filters;
  g->groups = c->groups;
  if (g->f < 1) return nn_error_set(err, NN_ESCHEMA, "filters must be >= 1, got %d", g->f);
  if (nn_window_pair(c->kernel_size, c->kernel_size_n, &g->kh, &g->kw))
    return nn_error_set(err, NN_ESCHEMA, "kernel_size must have 1 or 2 items, got %d",
                        c->kernel_size_n);
  if (nn_window_pair(c->stride, c->stride_n, &g->sh, &g->sw))
    return nn_error_set(err, NN_ESCHEMA, "stride must have 1 or 2 items, got %d", c->stride_n);
  if (nn_window_pair(c->dilation, c->dilation_n, &g->dh, &g->dw))
    return nn_error_set(err, NN_ESCHEMA, "dilation must have 1 or 2 items, got %d",
                        c->dilation_n);
  if (g->kh < 1 || g->kw < 1 || g->kh > CONV__MAXDIM || g->kw > CONV__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "kernel_size must be in [1, %d], got %dx%d",
                        CONV__MAXDIM, g->kh, g->kw);
  if (g->sh < 1 || g->sw < 1 || g->sh > CONV__MAXDIM || g->sw > CONV__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "stride must be in [1, %d], got %dx%d", CONV__MAXDIM,
                        g->sh, g->sw);
  if (g->dh < 1 || g->dw < 1 || g->dh > CONV__MAXDIM || g->dw > CONV__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "dilation must be in [1, %d], got %dx%d",
                        CONV__MAXDIM, g->dh, g->dw);
  if (g->groups < 1) return nn_error_set(err, NN_ESCHEMA, "groups must be >= 1, got %d", g->groups);
  if (g->c % g->groups || g->f % g->groups)
    return nn_error_set(err, NN_ESCHEMA,
                        "groups = %d must divide both the input channels (%d) and filters (%d)",
                        g->groups, g->c, g->f);
  int ekh = g->dh * (g->kh - 1) + 1, ekw = g->dw * (g->kw - 1) + 1; /* <= 2^32: see limits */
  if (strcmp(c->padding, "valid") == 0 || c->padding[0] == '\0') {
    g->pt = g->pb = g->pl = g->pr = 0;
  } else if (strcmp(c->padding, "explicit") == 0) {
    int ph, pw;
    if (nn_window_pair(c->pad, c->pad_n, &ph, &pw))
      return nn_error_set(err, NN_ESCHEMA, "pad must have 1 or 2 items, got %d", c->pad_n);
    if (ph < 0 || pw < 0 || ph > CONV__MAXDIM || pw > CONV__MAXDIM)
      return nn_error_set(err, NN_ESCHEMA, "pad must be in [0, %d], got %dx%d", CONV__MAXDIM,
                          ph, pw);
    g->pt = g->pb = ph;
    g->pl = g->pr = pw;
  } else if (strcmp(c->padding, "same") == 0) {
    nn_window_same_pad(g->h, g->sh, ekh, &g->pt, &g->pb);
    nn_window_same_pad(g->w, g->sw, ekw, &g->pl, &g->pr);
  } else {
    return nn_error_set(err, NN_ESCHEMA, "padding '%s' is not one of valid|same|explicit",
                        c->padding);
  }
  long hp = (long)g->h + g->pt + g->pb, wp = (long)g->w + g->pl + g->pr;
  if (ekh > hp || ekw > wp) {
    char dil[48] = "";
    if (g->dh > 1 || g->dw > 1) snprintf(dil, sizeof dil, " (dilated to %dx%d)", ekh, ekw);
    return nn_error_set(err, NN_ESHAPE, "kernel %dx%d%s is larger than the padded input %ldx%ld",
                        g->kh, g->kw, dil, hp, wp);
  }
  g->ho = (int)((hp - ekh) / g->sh + 1);
  g->wo = (int)((wp - ekw) / g->sw + 1);
  g->p = (size_t)g->ho * (size_t)g->wo;
  g->cg = g->c / g->groups;
  g->fg = g->f / g->groups;
  g->kg = g->cg * g->kh * g->kw;
  return 0;
}

/* Samples per chunk (S) for a batch of n: enough that the GEMMs are wide
 * (S*P >= CONV__MIN_COLS columns), few enough that col [K, S*P] stays
 * within CONV__CHUNK_FLOATS (L2-sized) when one sample allows it. */
#ifndef CONV__CHUNK_FLOATS /* (overridable for tuning experiments) */
#define CONV__CHUNK_FLOATS (64 * 1024)
#endif
#ifndef CONV__MIN_COLS
#define CONV__MIN_COLS 256
#endif
static size_t conv_chunk(const conv_geom *g, int n) {
  size_t k = (size_t)g->c * g->kh * g->kw, per = k * g->p;
  size_t s = CONV__CHUNK_FLOATS / (per ? per : 1);
  size_t need = (CONV__MIN_COLS + g->p - 1) / g->p; /* samples for MIN_COLS columns */
  if (s < need) s = need;
  if (s < 1) s = 1;
  if (s > (size_t)n) s = (size_t)n;
  return s;
}

/* ---- backends ------------------------------------------------------------------
 * l->state: NULL for the reference backend; a conv_state when oneDNN serves
 * the layer (compute.h: NN_CONV_BACKEND). The reference's scratch is declared
 * either way: it is the fallback when oneDNN cannot serve a slice size. */
typedef struct conv_state {
  nn_conv_backend backend;
  nn__conv_dnnl *dnnl;
  long fallbacks;  /* calls the reference served for want of primitives */
  int bf16;        /* computes in bf16 (compute.h: the precision when built) */
  size_t tmp_off;  /* blk_caps set: one sample's floats at scratch + tmp_off, through
                      which a fallback converts blocked tensors in place */
} conv_state;

static int conv_backend_new(nn_layer *l, const conv_geom *g, nn_error *err) {
  nn_conv_backend b;
  int rc = nn_conv_backend_choice(&b, err);
  if (rc || b == NN_CONV_REFERENCE) return rc;
  conv_state *st = nn_calloc(1, sizeof *st);
  if (!st) return nn_error_set(err, NN_ENOMEM, "out of memory for the convolution's state");
  nn__conv_dims d = {g->c, g->h, g->w, g->f, g->groups, g->kh, g->kw, g->sh, g->sw, g->dh, g->dw,
                     g->pt, g->pb, g->pl, g->pr, g->ho, g->wo, opts(l)->use_bias};
  st->backend = b;
  st->bf16 = nn_compute_precision() == NN_PRECISION_BF16 && g->cg >= NN_CONV_BF16_MIN_CHANNELS;
  rc = nn__conv_dnnl_new(&d, b == NN_CONV_DNNL_BLOCKED, st->bf16, &st->dnnl, err);
  if (rc) {
    free(st);
    return rc;
  }
  l->state = st;
  return 0;
}

static void conv2d_destroy(nn_layer *l) {
  conv_state *st = l->state;
  if (!st) return;
  nn__conv_dnnl_free(st->dnnl);
  free(st);
  l->state = NULL;
}

nn_conv_backend nn_conv2d_backend(const nn_layer *l, long *fallbacks, const char **why) {
  const conv_state *st = l->state;
  if (fallbacks) *fallbacks = st ? st->fallbacks : 0;
  if (why) *why = st ? nn__conv_dnnl_failure(st->dnnl) : "";
  return st ? st->backend : NN_CONV_REFERENCE;
}

int nn_conv2d_bf16(const nn_layer *l) {
  const conv_state *st = l->state;
  return st ? st->bf16 : 0;
}

static int conv2d_build(nn_layer *l, nn_error *err) {
  conv_geom g;
  int rc = conv_geometry(l, &g, err);
  if (rc) return rc;
  int init = NN_INIT_HE_UNIFORM;
  if (opts(l)->init[0]) {
    init = nn_init_parse(opts(l)->init);
    if (init < 0)
      return nn_error_set(err, NN_ESCHEMA, "init '%s' is not one of %s", opts(l)->init,
                          nn_init_choices);
  }
  size_t k = (size_t)g.c * g.kh * g.kw;
  size_t outc = (size_t)g.f * g.p;
  if (k * g.p > ((size_t)1 << 31) || outc > ((size_t)1 << 31))
    return nn_error_set(err, NN_ESHAPE, "convolution of %dx%dx%d with %d %dx%d filters is too large",
                        g.c, g.h, g.w, g.f, g.kh, g.kw);
  l->out.ndim = 3;
  l->out.dim[0] = g.f;
  l->out.dim[1] = g.ho;
  l->out.dim[2] = g.wo;
  size_t chunk = conv_chunk(&g, INT32_MAX);
  l->scratch_per_sample = 0;
  /* col [K, S*P] + slack, yt [F, S*P], dcol [K, S*P] */
  l->scratch_fixed = chunk * g.p * (2 * k + (size_t)g.f) + CONV__SLACK;
  int fan_in = g.kg, fan_out = g.fg * g.kh * g.kw;
  nn_shape ws = {4, {g.f, g.cg, g.kh, g.kw}};
  rc = nn_layer_add_param(l, "weight", &ws, (nn_init_kind)init, fan_in, fan_out, err);
  if (rc) return rc;
  if (opts(l)->use_bias) {
    nn_shape bs = {1, {g.f}};
    rc = nn_layer_add_param(l, "bias", &bs, NN_INIT_ZEROS, fan_in, fan_out, err);
  }
  if (!rc) rc = conv_backend_new(l, &g, err);
  conv_state *st = l->state;
  if (!rc && st && st->backend == NN_CONV_DNNL_BLOCKED && g.groups == 1) {
    /* oneDNN reads and writes nChw16c directly (core/layer.h, "Blocked activations") */
    l->blk_caps = (nn_blk_fits(&l->in) ? NN_BLK_IN : 0) | (nn_blk_fits(&l->out) ? NN_BLK_OUT : 0);
    if (l->blk_caps) {
      size_t in = nn_shape_count(&l->in), out = nn_shape_count(&l->out);
      st->tmp_off = l->scratch_fixed;
      l->scratch_fixed += in > out ? in : out;
    }
  }
  return rc;
}

/* Columns [ow0, ow1) of an output row whose tap at offset `off` (= j*dw - pl)
 * lands inside [0, w): ow*s + off in [0, w). */
static void valid_cols(int w, int wo, int s, int off, int *ow0, int *ow1) {
  int a = off >= 0 ? 0 : (-off + s - 1) / s;
  int b = w - off <= 0 ? 0 : (w - off + s - 1) / s;
  if (a > wo) a = wo;
  if (b > wo) b = wo;
  if (b < a) b = a;
  *ow0 = a;
  *ow1 = b;
}

/* dst[0..len) = src[0..len). Rows here are short (Wo is
 * 3..26 in typical nets) and there are hundreds of thousands per batch, so
 * the per-row cost matters more than the per-float one: with AVX-512 a row
 * is one masked load and store per 16 floats; otherwise 8 floats at a time
 * through fixed-size copies the compiler turns into single vector moves. */
#if defined(__AVX512F__)
/* As described above, and it may write up to 15 floats past dst + len
 * (zeros): im2col writes each col row in ascending order, so whatever
 * spills is overwritten next, and col has CONV__SLACK floats after it. */
static inline void copy_row(float *restrict dst, const float *restrict src, int len) {
  int k = 0;
  for (; k + 16 <= len; k += 16) _mm512_storeu_ps(dst + k, _mm512_loadu_ps(src + k));
  if (k < len) { /* masked load (never reads past src + len), full store */
    __mmask16 mk = (__mmask16)((1u << (len - k)) - 1u);
    _mm512_storeu_ps(dst + k, _mm512_maskz_loadu_ps(mk, src + k));
  }
}
#else
static inline void copy_row(float *restrict dst, const float *restrict src, int len) {
  int k = 0;
  for (; k + 8 <= len; k += 8) memcpy(dst + k, src + k, 8 * sizeof(float));
  for (; k < len; k++) dst[k] = src[k];
}
#endif

/* dst[0..len) += src[0..len). */
static inline void add_row(float *restrict dst, const float *restrict src, size_t len) {
  for (size_t k = 0; k < len; k++) dst[k] += src[k];
}

/* The shift path: with stride 1 and an output as wide as the input (padding
 * "same", or explicit padding that keeps the width), output pixel q = oh*W
 * + ow of tap (i, j) reads input pixel q + off, off = di*W + dj. So a tap's
 * col row for one sample is the input plane shifted by off: one contiguous
 * copy, with the rows outside the input and the columns that wrapped around
 * a row edge zeroed. That replaces a short copy per output row (the 3x3
 * convolutions of residual networks on 7x7 to 28x28 planes spend most of
 * im2col on per-row overhead otherwise). */
typedef struct plane_shift {
  long off;      /* di*W + dj */
  int oh0, oh1;  /* output rows whose input row exists */
  size_t lo, hi; /* output pixels [lo, hi) read inside the plane; the rest are zero */
} plane_shift;

static int shift_path(const conv_geom *g) { return g->sh == 1 && g->sw == 1 && g->wo == g->w; }

static void shift_of(const conv_geom *g, int i, int offw, plane_shift *sh) {
  int di = i * g->dh - g->pt;
  long hw = (long)g->h * g->w, lo, hi;
  valid_cols(g->h, g->ho, 1, di, &sh->oh0, &sh->oh1); /* rows: the same rule */
  sh->off = (long)di * g->w + offw;
  lo = (long)sh->oh0 * g->w;
  hi = (long)sh->oh1 * g->w;
  if (lo + sh->off < 0) lo = -sh->off; /* clipped pixels are wrapped columns */
  if (hi + sh->off > hw) hi = hw - sh->off;
  if (lo > (long)sh->oh1 * g->w) lo = (long)sh->oh1 * g->w;
  if (hi < lo) hi = lo;
  sh->lo = (size_t)lo;
  sh->hi = (size_t)hi;
}

/* Zero columns [0, ow0) and [ow1, wo) of rows [oh0, oh1) of a [*, wo] plane. */
static void zero_cols(float *plane, int wo, int oh0, int oh1, int ow0, int ow1) {
  if (ow0 == 0 && ow1 == wo) return;
  for (int oh = oh0; oh < oh1; oh++) {
    float *r = plane + (size_t)oh * wo;
    for (int ow = 0; ow < ow0; ow++) r[ow] = 0.0f;
    for (int ow = ow1; ow < wo; ow++) r[ow] = 0.0f;
  }
}

/* x [n, C, H, W] -> col [K, n*P]:
 *   col[(c*kh + i)*kw + j][s*P + oh*wo + ow]
 *     = x[s][c][oh*sh - pt + i*dh][ow*sw - pl + j*dw], 0 outside the input. */
static void im2col(const conv_geom *g, const float *x, int n, float *col) {
  size_t np = (size_t)n * g->p, hw = (size_t)g->h * g->w;
  int shift = shift_path(g);
  for (int c = 0; c < g->c; c++)
    for (int i = 0; i < g->kh; i++)
      for (int j = 0; j < g->kw; j++) {
        float *row = col + ((size_t)(c * g->kh + i) * g->kw + j) * np;
        int offw = j * g->dw - g->pl, ow0, ow1;
        valid_cols(g->w, g->wo, g->sw, offw, &ow0, &ow1);
        if (shift) {
          plane_shift sh;
          shift_of(g, i, offw, &sh);
          for (int s = 0; s < n; s++) {
            const float *xc = x + ((size_t)s * g->c + c) * hw;
            float *dst = row + (size_t)s * g->p;
            memset(dst, 0, sizeof(float) * sh.lo);
            memcpy(dst + sh.lo, xc + (sh.lo + sh.off), sizeof(float) * (sh.hi - sh.lo));
            memset(dst + sh.hi, 0, sizeof(float) * (g->p - sh.hi));
            zero_cols(dst, g->wo, sh.oh0, sh.oh1, ow0, ow1);
          }
          continue;
        }
        for (int s = 0; s < n; s++) {
          const float *xc = x + ((size_t)s * g->c + c) * hw;
          float *dst = row + (size_t)s * g->p;
          for (int oh = 0; oh < g->ho; oh++, dst += g->wo) {
            int ih = oh * g->sh - g->pt + i * g->dh;
            if (ih < 0 || ih >= g->h) {
              memset(dst, 0, sizeof(float) * (size_t)g->wo);
              continue;
            }
            const float *src = xc + (size_t)ih * g->w;
            for (int ow = 0; ow < ow0; ow++) dst[ow] = 0.0f;
            if (g->sw == 1) {
              copy_row(dst + ow0, src + ow0 + offw, ow1 - ow0);
            } else {
              for (int ow = ow0; ow < ow1; ow++) dst[ow] = src[ow * g->sw + offw];
            }
            for (int ow = ow1; ow < g->wo; ow++) dst[ow] = 0.0f;
          }
        }
      }
}

/* dcol [K, n*P] -> dx [n, C, H, W]: the adjoint of im2col (dx is
 * overwritten). One input plane at a time, so the plane being summed into
 * stays in L1 while its kh*kw shifted rows of dcol are added. */
static void col2im(const conv_geom *g, float *dcol, int n, float *dx) {
  size_t np = (size_t)n * g->p, hw = (size_t)g->h * g->w;
  int shift = shift_path(g);
  for (int s = 0; s < n; s++)
    for (int c = 0; c < g->c; c++) {
      float *xc = dx + ((size_t)s * g->c + c) * hw;
      memset(xc, 0, sizeof(float) * hw);
      for (int i = 0; i < g->kh; i++)
        for (int j = 0; j < g->kw; j++) {
          float *src = dcol + ((size_t)(c * g->kh + i) * g->kw + j) * np + (size_t)s * g->p;
          int offw = j * g->dw - g->pl, ow0, ow1;
          valid_cols(g->w, g->wo, g->sw, offw, &ow0, &ow1);
          if (shift) { /* drop the taps outside the input, then one shifted add */
            plane_shift sh;
            shift_of(g, i, offw, &sh);
            zero_cols(src, g->wo, sh.oh0, sh.oh1, ow0, ow1);
            add_row(xc + (sh.lo + sh.off), src + sh.lo, sh.hi - sh.lo);
            continue;
          }
          for (int oh = 0; oh < g->ho; oh++, src += g->wo) {
            int ih = oh * g->sh - g->pt + i * g->dh;
            if (ih < 0 || ih >= g->h) continue;
            float *dst = xc + (size_t)ih * g->w;
            if (g->sw == 1) {
              add_row(dst + offw + ow0, src + ow0, (size_t)(ow1 - ow0));
            } else {
              for (int ow = ow0; ow < ow1; ow++) dst[ow * g->sw + offw] += src[ow];
            }
          }
        }
    }
}

/* Scratch regions of chunk size S (conv_chunk for max batch): col [K, S*P],
 * yt [F, S*P], dcol [K, S*P], back to back in the layer's fixed scratch. */
static void conv_scratch(const nn_layer *l, const conv_geom *g, float **col, float **yt,
                         float **dcol) {
  size_t smax = conv_chunk(g, INT32_MAX);
  size_t kp = (size_t)g->c * g->kh * g->kw * g->p * smax;
  *col = l->scratch;
  *yt = *col + kp + CONV__SLACK;
  *dcol = *yt + (size_t)g->f * g->p * smax;
}

/* Samples whose output plane has at least this many pixels get their own
 * GEMMs, reading and writing NCHW in place (no reorder); smaller planes are
 * folded together into one GEMM per chunk and reordered. */
#ifndef CONV__DIRECT_P
#define CONV__DIRECT_P 64
#endif

/* x [n, C, H, W] -> y [n, F, Ho, Wo], S samples at a time: im2col of the
 * chunk, then per group either one GEMM per sample straight into y (large
 * planes) or one GEMM over the chunk into yt and a reorder (small planes). */
static void conv2d_forward_ref(nn_layer *l, const float *x, float *y, int n) {
  conv_geom g;
  float *col, *yt, *dcol;
  conv_geometry(l, &g, NULL);
  conv_scratch(l, &g, &col, &yt, &dcol);
  const float *b = l->nparams > 1 ? l->param[1] : NULL;
  const float *w = l->param[0];
  int chunk = (int)conv_chunk(&g, n), p = (int)g.p;
  size_t xs = (size_t)g.c * g.h * g.w, ys = (size_t)g.f * g.p;
  for (int s0 = 0; s0 < n; s0 += chunk) {
    int m = n - s0 < chunk ? n - s0 : chunk;
    int np = m * p;
    im2col(&g, x + (size_t)s0 * xs, m, col);
    if (p >= CONV__DIRECT_P) {
      for (int s = 0; s < m; s++) {
        float *ys0 = y + (size_t)(s0 + s) * ys;
        if (b) /* start from the bias, GEMM with beta = 1 */
          for (int f = 0; f < g.f; f++)
            for (int q = 0; q < p; q++) ys0[(size_t)f * p + q] = b[f];
        for (int gi = 0; gi < g.groups; gi++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.fg, p, g.kg, 1.0f,
                      w + (size_t)gi * g.fg * g.kg, g.kg, col + (size_t)gi * g.kg * np + (size_t)s * p,
                      np, b ? 1.0f : 0.0f, ys0 + (size_t)gi * g.fg * p, p);
      }
      continue;
    }
    for (int gi = 0; gi < g.groups; gi++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.fg, np, g.kg, 1.0f,
                  w + (size_t)gi * g.fg * g.kg, g.kg, col + (size_t)gi * g.kg * np, np, 0.0f,
                  yt + (size_t)gi * g.fg * np, np);
    /* yt [F, m, P] -> y [m, F, P] (+ bias) */
    for (int s = 0; s < m; s++)
      for (int f = 0; f < g.f; f++) {
        const float *src = yt + (size_t)f * np + (size_t)s * p;
        float *dst = y + (size_t)(s0 + s) * ys + (size_t)f * p;
        float bf = b ? b[f] : 0.0f;
        for (int q = 0; q < p; q++) dst[q] = src[q] + bf;
      }
  }
}

/* dy [n, F, Ho, Wo], per chunk of S samples: col again from x (cheaper
 * than keeping a whole batch of columns, which would not stay in cache);
 * db += sums of dy; dW += dy col^T; dx = col2im(W^T dy) when dx is not
 * NULL. Large planes use dy in place per sample, small ones go through
 * dyt [F, S*P] and one GEMM per chunk. */
static void conv2d_backward_ref(nn_layer *l, const float *x, const float *dy, float *dx,
                                float *dw, float *db, int n) {
  conv_geom g;
  float *col, *dyt, *dcol;
  conv_geometry(l, &g, NULL);
  conv_scratch(l, &g, &col, &dyt, &dcol);
  const float *w = l->param[0];
  int chunk = (int)conv_chunk(&g, n), p = (int)g.p, direct = p >= CONV__DIRECT_P;
  size_t xs = (size_t)g.c * g.h * g.w, ys = (size_t)g.f * g.p;
  for (int s0 = 0; s0 < n; s0 += chunk) {
    int m = n - s0 < chunk ? n - s0 : chunk;
    int np = m * p;
    if (dw) im2col(&g, x + (size_t)s0 * xs, m, col); /* only dW reads the columns */
    /* bias gradient; small planes: dy [m, F, P] -> dyt [F, m, P] */
    for (int f = 0; f < g.f && (db || !direct); f++) {
      double sum = 0.0;
      for (int s = 0; s < m; s++) {
        const float *src = dy + (size_t)(s0 + s) * ys + (size_t)f * p;
        if (!direct) memcpy(dyt + (size_t)f * np + (size_t)s * p, src, sizeof(float) * (size_t)p);
        if (db) sum += nn_row_sum(src, (size_t)p);
      }
      if (db) db[f] += (float)sum;
    }
    if (direct) {
      for (int s = 0; s < m; s++) {
        const float *dys = dy + (size_t)(s0 + s) * ys;
        for (int gi = 0; gi < g.groups; gi++) {
          const float *cs = col + (size_t)gi * g.kg * np + (size_t)s * p;
          if (dw)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.fg, g.kg, p, 1.0f,
                        dys + (size_t)gi * g.fg * p, p, cs, np, 1.0f,
                        dw + (size_t)gi * g.fg * g.kg, g.kg);
          if (dx)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.kg, p, g.fg, 1.0f,
                        w + (size_t)gi * g.fg * g.kg, g.kg, dys + (size_t)gi * g.fg * p, p, 0.0f,
                        dcol + (size_t)gi * g.kg * np + (size_t)s * p, np);
        }
      }
    } else {
      for (int gi = 0; gi < g.groups; gi++) {
        if (dw)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.fg, g.kg, np, 1.0f,
                      dyt + (size_t)gi * g.fg * np, np, col + (size_t)gi * g.kg * np, np, 1.0f,
                      dw + (size_t)gi * g.fg * g.kg, g.kg);
        if (dx)
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.kg, np, g.fg, 1.0f,
                      w + (size_t)gi * g.fg * g.kg, g.kg, dyt + (size_t)gi * g.fg * np, np, 0.0f,
                      dcol + (size_t)gi * g.kg * np, np);
      }
    }
    if (dx) col2im(&g, dcol, m, dx + (size_t)s0 * xs);
  }
}

/* The reference serves a call whose tensors the model keeps blocked: they are
 * converted to NCHW in place (one sample at a time, through the scratch set
 * aside in build), and the inputs converted back afterwards. */
static void blk_tensor(const nn_layer *l, const float *t, int n, int in, int to_blocked) {
  const conv_state *st = l->state;
  const nn_shape *s = in ? &l->in : &l->out;
  nn_blk_convert((float *)(uintptr_t)t, l->scratch + st->tmp_off, n, s->dim[0], s->dim[1],
                 s->dim[2], to_blocked);
}

static void conv2d_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  conv_state *st = l->state;
  const float *b = l->nparams > 1 ? l->param[1] : NULL;
  if (st) nn__conv_dnnl_set_layouts(st->dnnl, l->in_blocked, l->out_blocked);
  if (st && nn__conv_dnnl_forward(st->dnnl, x, l->param[0], b, y, n) == 0) return;
  if (st) st->fallbacks++;
  if (l->in_blocked) blk_tensor(l, x, n, 1, 0);
  conv2d_forward_ref(l, x, y, n);
  if (l->in_blocked) blk_tensor(l, x, n, 1, 1);
  if (l->out_blocked) blk_tensor(l, y, n, 0, 1);
}

/* dW, db += (unless frozen: nn_layer_param_grads), dx = (unless NULL). */
static void conv2d_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int n, const nn_run_ctx *ctx) {
  conv_state *st = l->state;
  int pg = nn_layer_param_grads(l, ctx);
  if (!pg && !dx) return;
  float *dw = pg ? l->grad[0] : NULL; /* NULL: dx only (frozen) */
  float *db = pg && l->nparams > 1 ? l->grad[1] : NULL;
  if (st) nn__conv_dnnl_set_layouts(st->dnnl, l->in_blocked, l->out_blocked);
  if (st && nn__conv_dnnl_backward(st->dnnl, x, l->param[0], dy, dx, dw, db, n) == 0) return;
  if (st) st->fallbacks++;
  if (l->in_blocked) blk_tensor(l, x, n, 1, 0);
  if (l->out_blocked) blk_tensor(l, dy, n, 0, 0);
  conv2d_backward_ref(l, x, dy, dx, dw, db, n);
  if (l->in_blocked) blk_tensor(l, x, n, 1, 1);
  if (l->out_blocked) blk_tensor(l, dy, n, 0, 1);
  if (l->in_blocked && dx) blk_tensor(l, dx, n, 1, 1);
}

const nn_layer_ops nn_layer_conv2d = {
    .type = "conv2d",
    .help = "2-d convolution [C, H, W] -> [filters, Ho, Wo], weight [filters, C/groups, kh, kw]",
    .keys = conv2d_keys,
    .penalize_weight = 1,
    .build = conv2d_build,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
    .destroy = conv2d_destroy,
};
