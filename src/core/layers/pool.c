/* pool.c: 2-d pooling layers: maxpool, avgpool and global_avgpool.
 *
 * maxpool / avgpool: input [C, H, W] -> [C, Ho, Wo], each channel alone.
 * Keys: pool_size (required, [ph, pw] or one value for both), stride
 * (default [0]: 0 means the pool size), padding "valid" | "same" | "explicit" (+ pad).
 *   valid     no padding; windows that would run past the edge are dropped
 *             (PyTorch ceil_mode=False).
 *   explicit  pad = [ph, pw] on both sides, at most half the window (as
 *             PyTorch requires). avgpool counts the padded zeros in the
 *             divisor (PyTorch's count_include_pad=True): y = sum / (kh*kw).
 *   same      out = ceil(in / stride), the odd padding element at the
 *             bottom/right (TensorFlow's SAME); avgpool divides by the number
 *             of input elements actually in the window (TensorFlow's rule).
 * Padded positions never win a max. Every window holds at least one input
 * element under these rules.
 *
 * maxpool backward sends each window's dy to the window's first element
 * (row-major) equal to its maximum, so on ties the first maximum gets the
 * gradient. The max is a plain compare-and-select (vectorizable, like
 * vmaxps): a NaN propagates only when it comes first in the window; a
 * non-finite loss is caught above this layer anyway.
 * 2x2 windows at stride 2 without padding (the common case) have
 * branch-free loops the compiler vectorizes, and forward stores which of the
 * four won as a float code in scratch [n, C*Ho*Wo]; other windows take a
 * generic loop, whose backward finds the maximum again from x and y.
 *
 * global_avgpool: [C, H, W] -> [C], the mean of each channel.
 *
 * Blocked layout (core/layer.h, "Blocked activations"): with C % 16 == 0,
 * maxpool declares NN_BLK_SAME (x, y, dy, dx all nChw16c when
 * l->in_blocked) and global_avgpool NN_BLK_IN (x and dx nChw16c, y and dy
 * plain [C]); avgpool stays NCHW. The blocked kernels run the NCHW ones'
 * operations with the 16 channels of one position as the 16 lanes of a
 * vector, so their results are the same bits: the same compare-and-select
 * maxima in the same window order, the same 2x2 codes (kept in scratch in
 * the output's blocked order), the same first-maximum rule in backward (a
 * lane mask of the windows' maxima already found), the same double sums of
 * global_avgpool in position order. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/layer.h"
#include "core/layers/window.h"

#define POOL__MAXDIM (1 << 16)

/* maxpool's and avgpool's options (nn_layer_cfg.opts) */
typedef struct pool_opts {
  int pool_size[2], pool_size_n; /* window [h, w] */
  int stride[2], stride_n;       /* 0 or none: the pool size */
  char padding[16];              /* "valid" | "same" | "explicit" (then `pad`) */
  int pad[2], pad_n;
} pool_opts;
NN_LAYER_OPTS_FIT(pool_opts);

static const pool_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const pool_opts);
}

static const nn_key pool_keys[] = {
    {"pool_size", NN_KEY_INT_LIST, offsetof(pool_opts, pool_size), 2, 1, POOL__MAXDIM, NULL,
     NULL, NN_KEY_REQUIRED, "window [ph, pw]; one value means a square window",
     offsetof(pool_opts, pool_size_n)},
    {"stride", NN_KEY_INT_LIST, offsetof(pool_opts, stride), 2, 0, POOL__MAXDIM, "[0]", NULL,
     0, "step of the window [sh, sw]; 0 (the default) means the pool size",
     offsetof(pool_opts, stride_n)},
    {"padding", NN_KEY_ENUM, offsetof(pool_opts, padding),
     sizeof(((pool_opts *)0)->padding), 0, 0, "\"valid\"", "valid|same|explicit", 0,
     "valid: none; same: out = ceil(in/stride) (extra at bottom/right); explicit: `pad`", 0},
    {"pad", NN_KEY_INT_LIST, offsetof(pool_opts, pad), 2, 0, POOL__MAXDIM, "[0]", NULL, 0,
     "padding on both sides [ph, pw] when padding = \"explicit\" (at most half the window)",
     offsetof(pool_opts, pad_n)},
    {0},
};

static const nn_key global_avgpool_keys[] = {{0}};

/* Window geometry of a pooling layer over [C, H, W]. */
typedef struct pool_geom {
  int c, h, w;
  int kh, kw, sh, sw;
  int pt, pl;          /* padding before the first row / column */
  int ho, wo;
  int same;            /* 1: avgpool divides by the in-bounds count */
} pool_geom;

/* Fill g from l->cfg and l->in; err may be NULL once build has validated. */
static int pool_geometry(const nn_layer *l, pool_geom *g, nn_error *err) {
  const pool_opts *c = opts(l);
  char shp[64];
  memset(g, 0, sizeof *g);
  if (l->in.ndim != 3)
    return nn_error_set(err, NN_ESHAPE, "expects a [channels, height, width] input, got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  g->c = l->in.dim[0];
  g->h = l->in.dim[1];
  g->w = l->in.dim[2];
  if (nn_window_pair(c->pool_size, c->pool_size_n, &g->kh, &g->kw))
    return nn_error_set(err, NN_ESCHEMA, "pool_size must have 1 or 2 items, got %d",
                        c->pool_size_n);
  if (g->kh < 1 || g->kw < 1 || g->kh > POOL__MAXDIM || g->kw > POOL__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "pool_size must be in [1, %d], got %dx%d",
                        POOL__MAXDIM, g->kh, g->kw);
  if (c->stride_n == 0) {
    g->sh = g->sw = 0;
  } else if (nn_window_pair(c->stride, c->stride_n, &g->sh, &g->sw)) {
    return nn_error_set(err, NN_ESCHEMA, "stride must have 1 or 2 items, got %d", c->stride_n);
  }
  if (g->sh == 0) g->sh = g->kh; /* 0: the pool size */
  if (g->sw == 0) g->sw = g->kw;
  if (g->sh < 1 || g->sw < 1 || g->sh > POOL__MAXDIM || g->sw > POOL__MAXDIM)
    return nn_error_set(err, NN_ESCHEMA, "stride must be in [1, %d], got %dx%d", POOL__MAXDIM,
                        g->sh, g->sw);
  int pt = 0, pb = 0, pl = 0, pr = 0;
  if (strcmp(c->padding, "valid") == 0 || c->padding[0] == '\0') {
    /* none */
  } else if (strcmp(c->padding, "explicit") == 0) {
    int ph, pw;
    if (nn_window_pair(c->pad, c->pad_n, &ph, &pw))
      return nn_error_set(err, NN_ESCHEMA, "pad must have 1 or 2 items, got %d", c->pad_n);
    if (ph < 0 || pw < 0 || 2 * ph > g->kh || 2 * pw > g->kw)
      return nn_error_set(err, NN_ESCHEMA,
                          "pad %dx%d must be at most half the pool size %dx%d", ph, pw, g->kh,
                          g->kw);
    pt = pb = ph;
    pl = pr = pw;
  } else if (strcmp(c->padding, "same") == 0) {
    nn_window_same_pad(g->h, g->sh, g->kh, &pt, &pb);
    nn_window_same_pad(g->w, g->sw, g->kw, &pl, &pr);
    g->same = 1;
  } else {
    return nn_error_set(err, NN_ESCHEMA, "padding '%s' is not one of valid|same|explicit",
                        c->padding);
  }
  long hp = (long)g->h + pt + pb, wp = (long)g->w + pl + pr;
  if (g->kh > hp || g->kw > wp)
    return nn_error_set(err, NN_ESHAPE, "pool window %dx%d is larger than the padded input %ldx%ld",
                        g->kh, g->kw, hp, wp);
  g->pt = pt;
  g->pl = pl;
  g->ho = (int)((hp - g->kh) / g->sh + 1);
  g->wo = (int)((wp - g->kw) / g->sw + 1);
  return 0;
}

static int pool_build_common(nn_layer *l, nn_error *err) {
  pool_geom g;
  int rc = pool_geometry(l, &g, err);
  if (rc) return rc;
  size_t outc = (size_t)g.c * g.ho * g.wo;
  if (outc > ((size_t)1 << 31) || (size_t)g.c * g.h * g.w > ((size_t)1 << 31))
    return nn_error_set(err, NN_ESHAPE, "input of %dx%dx%d is too large", g.c, g.h, g.w);
  l->out.ndim = 3;
  l->out.dim[0] = g.c;
  l->out.dim[1] = g.ho;
  l->out.dim[2] = g.wo;
  return 0;
}

/* The 2x2 / stride 2 path keeps one float code per output (scratch). */
static int maxpool_build(nn_layer *l, nn_error *err) {
  int rc = pool_build_common(l, err);
  if (rc) return rc;
  l->scratch_per_sample = nn_shape_count(&l->out);
  l->blk_caps = l->in.dim[0] % 16 == 0 ? NN_BLK_SAME : 0;
  return 0;
}
static int avgpool_build(nn_layer *l, nn_error *err) { return pool_build_common(l, err); }

/* 1 for 2x2 windows at stride 2 without padding: maxpool's fast path. */
static int pool_2x2(const pool_geom *g) {
  return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->pt == 0 && g->pl == 0;
}

/* In-bounds range [a, b) of the window starting at `start` of size k in [0, n). */
static void clip(int start, int k, int n, int *a, int *b) {
  *a = start < 0 ? 0 : start;
  *b = start + k > n ? n : start + k;
}

/* The larger of m and v; m when they are equal or either is NaN. Plain
 * compare-and-select so that loops of it vectorize (vmaxps semantics). */
static inline float max2(float m, float v) { return v > m ? v : m; }

/* One channel plane, 2x2 windows at stride 2, no padding (the common case):
 * xc [H, W] -> y [Ho, Wo], and code [Ho, Wo] = which element won, as a
 * float 0..3 (top-left, top-right, bottom-left, bottom-right; the first
 * maximum in row-major order on ties). Only float compares and selects, so
 * the compiler vectorizes it. */
static void maxpool_2x2(const pool_geom *g, const float *restrict xc, float *restrict y,
                        float *restrict code) {
  const int w = g->w, ho = g->ho, wo = g->wo;
  for (int oh = 0; oh < ho; oh++, y += wo, code += wo) {
    const float *r0 = xc + (size_t)(2 * oh) * w, *r1 = r0 + w;
    for (int ow = 0; ow < wo; ow++) {
      float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
      /* maxima through max2 (one max instruction each) and the code in
       * integer arithmetic on the compare results: the scalar remainder of
       * a short row would otherwise compile to mispredicted branches */
      int tb = b > a, td = d > c;
      float top = max2(a, b), bot = max2(c, d);
      int tt = bot > top;
      y[ow] = max2(top, bot);
      code[ow] = (float)(tb + tt * (2 + td - tb));
    }
  }
}

/* A ReLU fused onto maxpool (nn_layer.relu_out): y = max(0, y) over one
 * output plane. The model moves a ReLU that feeds a maxpool to after it
 * (model.c): relu and max commute, on a quarter of the elements. */
static void relu_plane(float *restrict y, size_t len) {
  for (size_t j = 0; j < len; j++) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
}

/* ---- blocked (nChw16c) kernels -------------------------------------------
 * A sample's block of 16 channels is [H, W, 16] in, [Ho, Wo, 16] out: the
 * channels of one position are the 16 lanes of one vector, and every kernel
 * is its NCHW twin with the plane loop turned into the lanes. */
/* The helpers below pass 64-byte vectors by value between static functions
 * of this file only: GCC's note that such calls would differ from the ABI
 * of an AVX-512 build (-Wpsabi, given when the target has no AVX-512) does
 * not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float pool_v16f __attribute__((vector_size(64)));
typedef int32_t pool_v16i __attribute__((vector_size(64)));

static inline pool_v16f ld16(const float *p) {
  pool_v16f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void st16(float *p, pool_v16f v) { memcpy(p, &v, sizeof v); }
/* max2 and keep_if, lane by lane: masks are all ones (true) or zeros */
static inline pool_v16f max16(pool_v16f m, pool_v16f v) {
  pool_v16i t = v > m;
  return (pool_v16f)(((pool_v16i)v & t) | ((pool_v16i)m & ~t));
}
static inline pool_v16f keep16(pool_v16f v, pool_v16i m) { return (pool_v16f)((pool_v16i)v & m); }
static inline pool_v16f sel16(pool_v16i m, pool_v16f a, pool_v16f b) {
  return (pool_v16f)(((pool_v16i)a & m) | ((pool_v16i)b & ~m));
}

/* maxpool_2x2 on one block: xb [H, W, 16] -> yb [Ho, Wo, 16], codes [Ho,
 * Wo, 16]; relu: the fused ReLU on the way out (relu_plane). */
static void maxpool_2x2_blk(const pool_geom *g, const float *restrict xb, float *restrict yb,
                            float *restrict code, int relu) {
  const size_t w = (size_t)g->w, wo = (size_t)g->wo;
  const pool_v16f zero = {0};
  for (size_t oh = 0; oh < (size_t)g->ho; oh++) {
    const float *r0 = xb + 2 * oh * w * 16, *r1 = r0 + w * 16;
    for (size_t ow = 0; ow < wo; ow++) {
      pool_v16f a = ld16(r0 + 2 * ow * 16), b = ld16(r0 + (2 * ow + 1) * 16);
      pool_v16f c = ld16(r1 + 2 * ow * 16), d = ld16(r1 + (2 * ow + 1) * 16);
      /* compare results are -1 / 0: negated, maxpool_2x2's 1 / 0 */
      pool_v16i tb = -(b > a), td = -(d > c);
      pool_v16f top = max16(a, b), bot = max16(c, d);
      pool_v16i tt = -(bot > top);
      pool_v16f m = max16(top, bot);
      size_t o = (oh * wo + ow) * 16;
      st16(yb + o, relu ? keep16(m, m > zero) : m);
      st16(code + o, __builtin_convertvector(tb + tt * (2 + td - tb), pool_v16f));
    }
  }
}

/* maxpool_forward on x [n, C/16, H, W, 16] -> y [n, C/16, Ho, Wo, 16]. */
static void maxpool_forward_blk(nn_layer *l, const pool_geom *g, const float *x, float *y,
                                int n) {
  size_t hw = (size_t)g->h * g->w, plane = (size_t)g->ho * g->wo;
  size_t blocks = (size_t)n * (size_t)(g->c / 16);
  int fast = pool_2x2(g);
  const pool_v16f zero = {0};
  for (size_t bi = 0; bi < blocks; bi++) {
    const float *xb = x + bi * hw * 16;
    float *yb = y + bi * plane * 16;
    if (fast) {
      maxpool_2x2_blk(g, xb, yb, l->scratch + bi * plane * 16, l->relu_out);
      continue;
    }
    for (int oh = 0; oh < g->ho; oh++) {
      int h0, h1;
      clip(oh * g->sh - g->pt, g->kh, g->h, &h0, &h1);
      for (int ow = 0; ow < g->wo; ow++) {
        int w0, w1;
        clip(ow * g->sw - g->pl, g->kw, g->w, &w0, &w1);
        pool_v16f best = ld16(xb + ((size_t)h0 * g->w + w0) * 16);
        for (int ih = h0; ih < h1; ih++)
          for (int iw = w0; iw < w1; iw++)
            best = max16(best, ld16(xb + ((size_t)ih * g->w + iw) * 16));
        if (l->relu_out) best = keep16(best, best > zero);
        st16(yb + ((size_t)oh * g->wo + ow) * 16, best);
      }
    }
  }
}

/* maxpool_2x2_backward on one block: codes and dyb [Ho, Wo, 16], relu_y
 * (a fused ReLU, else NULL) the output block; dxb [H, W, 16] fully
 * written. */
static void maxpool_2x2_backward_blk(const pool_geom *g, const float *restrict code,
                                     const float *restrict dyb, const float *restrict relu_y,
                                     float *restrict dxb) {
  const size_t w = (size_t)g->w, wo = (size_t)g->wo;
  const pool_v16f zero = {0}, one = zero + 1.0f, two = zero + 2.0f, three = zero + 3.0f;
  for (size_t oh = 0; oh < (size_t)g->ho; oh++) {
    float *d0 = dxb + 2 * oh * w * 16, *d1 = d0 + w * 16;
    for (size_t ow = 0; ow < wo; ow++) {
      size_t o = (oh * wo + ow) * 16;
      pool_v16f k = ld16(code + o), gr = ld16(dyb + o);
      if (relu_y) gr = keep16(gr, ld16(relu_y + o) > zero);
      st16(d0 + 2 * ow * 16, keep16(gr, k == zero));
      st16(d0 + (2 * ow + 1) * 16, keep16(gr, k == one));
      st16(d1 + 2 * ow * 16, keep16(gr, k == two));
      st16(d1 + (2 * ow + 1) * 16, keep16(gr, k == three));
    }
    if (2 * wo < w) { /* odd width: last column uncovered */
      st16(d0 + (w - 1) * 16, zero);
      st16(d1 + (w - 1) * 16, zero);
    }
  }
  if (2 * (size_t)g->ho < (size_t)g->h)
    memset(dxb + ((size_t)g->h - 1) * w * 16, 0, sizeof(float) * w * 16);
}

/* The generic backward of one window in one block: dy g to the first
 * element (row-major) of rows [h0, h1) x columns [w0, w1) equal to the
 * window's max yv, lane by lane (find_max); to the window's first element
 * in lanes where none is (NaN). done: lanes that get nothing (a fused ReLU's
 * zero) or already had theirs. */
static void maxpool_window_blk(float *dxb, const float *xb, int w, int h0, int h1, int w0,
                               int w1, pool_v16f yv, pool_v16f g, pool_v16i done) {
  for (int ih = h0; ih < h1; ih++)
    for (int iw = w0; iw < w1; iw++) {
      size_t at = ((size_t)ih * w + iw) * 16;
      pool_v16i hit = (ld16(xb + at) == yv) & ~done;
      pool_v16f d = ld16(dxb + at);
      st16(dxb + at, sel16(hit, d + g, d));
      done |= hit;
    }
  size_t at = ((size_t)h0 * w + w0) * 16;
  pool_v16f d = ld16(dxb + at);
  st16(dxb + at, sel16(~done, d + g, d));
}

/* maxpool_backward on [n, C/16, ., ., 16] blocks. */
static void maxpool_backward_blk(nn_layer *l, const pool_geom *g, const float *x,
                                 const float *y, const float *dy, float *dx, int n) {
  size_t hw = (size_t)g->h * g->w, plane = (size_t)g->ho * g->wo;
  size_t blocks = (size_t)n * (size_t)(g->c / 16);
  int fast = pool_2x2(g);
  const pool_v16f zero = {0};
  if (!fast) memset(dx, 0, sizeof(float) * hw * 16 * blocks);
  for (size_t bi = 0; bi < blocks; bi++) {
    const float *xb = x + bi * hw * 16, *yb = y + bi * plane * 16, *dyb = dy + bi * plane * 16;
    float *dxb = dx + bi * hw * 16;
    if (fast) {
      maxpool_2x2_backward_blk(g, l->scratch + bi * plane * 16, dyb, l->relu_out ? yb : NULL,
                               dxb);
      continue;
    }
    for (int oh = 0; oh < g->ho; oh++) {
      int h0, h1;
      clip(oh * g->sh - g->pt, g->kh, g->h, &h0, &h1);
      for (int ow = 0; ow < g->wo; ow++) {
        int w0, w1;
        clip(ow * g->sw - g->pl, g->kw, g->w, &w0, &w1);
        size_t o = ((size_t)oh * g->wo + ow) * 16;
        pool_v16f yv = ld16(yb + o);
        /* fused ReLU: no gradient where y is not > 0 */
        const pool_v16i none = {0};
        pool_v16i done = l->relu_out ? ~(yv > zero) : none;
        maxpool_window_blk(dxb, xb, g->w, h0, h1, w0, w1, yv, ld16(dyb + o), done);
      }
    }
  }
}

/* global_avgpool_forward on x [n, C/16, H, W, 16] -> y [n, C] (plain): each
 * lane's double sum in position order, as the NCHW loop. */
static void global_avgpool_forward_blk(nn_layer *l, const float *x, float *y, int n) {
  typedef double v8d __attribute__((vector_size(64)));
  size_t hw = (size_t)l->in.dim[1] * l->in.dim[2];
  size_t blocks = (size_t)n * (size_t)(l->in.dim[0] / 16);
  for (size_t bi = 0; bi < blocks; bi++) {
    const float *xb = x + bi * hw * 16;
    v8d lo = {0}, hi = {0};
    for (size_t p = 0; p < hw; p++) {
      pool_v16f u = ld16(xb + p * 16);
      lo += __builtin_convertvector(__builtin_shufflevector(u, u, 0, 1, 2, 3, 4, 5, 6, 7), v8d);
      hi += __builtin_convertvector(__builtin_shufflevector(u, u, 8, 9, 10, 11, 12, 13, 14, 15),
                                    v8d);
    }
    for (int q = 0; q < 16; q++) y[bi * 16 + q] = (float)((q < 8 ? lo[q] : hi[q - 8]) / (double)hw);
  }
}

/* global_avgpool_backward: dy [n, C] (plain) -> dx [n, C/16, H, W, 16]. */
static void global_avgpool_backward_blk(nn_layer *l, const float *dy, float *dx, int n,
                                        float inv) {
  size_t hw = (size_t)l->in.dim[1] * l->in.dim[2];
  size_t blocks = (size_t)n * (size_t)(l->in.dim[0] / 16);
  for (size_t bi = 0; bi < blocks; bi++) {
    pool_v16f d = ld16(dy + bi * 16) * inv;
    float *dxb = dx + bi * hw * 16;
    for (size_t p = 0; p < hw; p++) st16(dxb + p * 16, d);
  }
}

/* x [n, C, H, W] -> y [n, C, Ho, Wo]; relu_out: relu(y). */
static void maxpool_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  pool_geom g;
  pool_geometry(l, &g, NULL);
  if (l->in_blocked) {
    maxpool_forward_blk(l, &g, x, y, n);
    return;
  }
  size_t hw = (size_t)g.h * g.w, plane = (size_t)g.ho * g.wo, planes = (size_t)n * g.c;
  int fast = pool_2x2(&g);
  for (size_t pi = 0; pi < planes; pi++) {
    const float *xc = x + pi * hw;
    float *yc = y + pi * plane;
    if (fast) {
      maxpool_2x2(&g, xc, yc, l->scratch + pi * plane);
      if (l->relu_out) relu_plane(yc, plane);
      continue;
    }
    for (int oh = 0; oh < g.ho; oh++) {
      int h0, h1;
      clip(oh * g.sh - g.pt, g.kh, g.h, &h0, &h1);
      for (int ow = 0; ow < g.wo; ow++) {
        int w0, w1;
        clip(ow * g.sw - g.pl, g.kw, g.w, &w0, &w1);
        float best = xc[(size_t)h0 * g.w + w0];
        for (int ih = h0; ih < h1; ih++)
          for (int iw = w0; iw < w1; iw++) best = max2(best, xc[(size_t)ih * g.w + iw]);
        yc[(size_t)oh * g.wo + ow] = best;
      }
    }
    if (l->relu_out) relu_plane(yc, plane);
  }
}

/* v if cond else +0.0, by masking the bits: no branch even in scalar code
 * (and exact for any v, unlike v * cond, which turns inf into NaN). */
static inline float keep_if(float v, int cond) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  u &= 0u - (uint32_t)cond;
  memcpy(&v, &u, sizeof v);
  return v;
}

/* 2x2 / stride 2 backward of one plane from the forward's codes [Ho, Wo]:
 * dxc [H, W] is fully written (rows/columns no window covers get 0);
 * relu_y (a fused ReLU, else NULL): the output plane, dy counts where > 0. The
 * loop runs over input columns (2*Wo long, not Wo) without branches, so it
 * vectorizes even for small planes. */
static void maxpool_2x2_backward(const pool_geom *g, const float *restrict code,
                                 const float *restrict dyc, const float *restrict relu_y,
                                 float *restrict dxc) {
  const int w = g->w, h = g->h, ho = g->ho, wo = g->wo;
  for (int oh = 0; oh < ho; oh++, code += wo, dyc += wo) {
    float *d0 = dxc + (size_t)(2 * oh) * w, *d1 = d0 + w;
    const float *ry = relu_y ? relu_y + (size_t)oh * wo : NULL;
    for (int iw = 0; iw < 2 * wo; iw++) {
      int k = (int)code[iw >> 1], col = iw & 1;
      float gr = ry ? keep_if(dyc[iw >> 1], ry[iw >> 1] > 0.0f) : dyc[iw >> 1];
      d0[iw] = keep_if(gr, k == col);
      d1[iw] = keep_if(gr, k == col + 2);
    }
    if (2 * wo < w) d0[w - 1] = d1[w - 1] = 0.0f; /* odd width: last column uncovered */
  }
  if (2 * ho < h) memset(dxc + (size_t)(h - 1) * w, 0, sizeof(float) * (size_t)w);
}

/* Offset in xc [H, w] of the first element of rows [h0, h1) x columns
 * [w0, w1) equal to m; the window's first element if none is (m NaN). */
static size_t find_max(const float *xc, int w, int h0, int h1, int w0, int w1, float m) {
  for (int ih = h0; ih < h1; ih++)
    for (int iw = w0; iw < w1; iw++)
      if (xc[(size_t)ih * w + iw] == m) return (size_t)ih * w + iw;
  return (size_t)h0 * w + w0;
}

/* dx [n, C, H, W]: each window's dy added to the first element (row-major)
 * of the window equal to its output y, found again from x and y (so no
 * indices are stored); to the window's first element if none is (NaN). */
static void maxpool_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  if (!dx) return;
  pool_geom g;
  pool_geometry(l, &g, NULL);
  if (l->in_blocked) {
    maxpool_backward_blk(l, &g, x, y, dy, dx, n);
    return;
  }
  size_t hw = (size_t)g.h * g.w, plane = (size_t)g.ho * g.wo, planes = (size_t)n * g.c;
  int fast = pool_2x2(&g);
  if (!fast) memset(dx, 0, sizeof(float) * hw * planes);
  for (size_t pi = 0; pi < planes; pi++) {
    const float *xc = x + pi * hw, *yc = y + pi * plane, *dyc = dy + pi * plane;
    float *dxc = dx + pi * hw;
    if (fast) {
      maxpool_2x2_backward(&g, l->scratch + pi * plane, dyc, l->relu_out ? yc : NULL, dxc);
      continue;
    }
    for (int oh = 0; oh < g.ho; oh++) {
      int h0, h1;
      clip(oh * g.sh - g.pt, g.kh, g.h, &h0, &h1);
      for (int ow = 0; ow < g.wo; ow++) {
        int w0, w1;
        clip(ow * g.sw - g.pl, g.kw, g.w, &w0, &w1);
        float yv = yc[(size_t)oh * g.wo + ow];
        if (l->relu_out && !(yv > 0.0f)) continue; /* fused ReLU: no gradient */
        size_t at = find_max(xc, g.w, h0, h1, w0, w1, yv);
        dxc[at] += dyc[(size_t)oh * g.wo + ow];
      }
    }
  }
}

/* Divisor of the window at (h0, w0) (its unclipped top-left corner). */
static float avg_div(const pool_geom *g, int hs, int ws) {
  if (!g->same) return (float)(g->kh * g->kw);
  int h0, h1, w0, w1;
  clip(hs, g->kh, g->h, &h0, &h1);
  clip(ws, g->kw, g->w, &w0, &w1);
  return (float)((h1 - h0) * (w1 - w0));
}

/* x [n, C, H, W] -> y [n, C, Ho, Wo], window means. */
static void avgpool_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  pool_geom g;
  pool_geometry(l, &g, NULL);
  size_t hw = (size_t)g.h * g.w;
  size_t o = 0;
  for (int s = 0; s < n; s++)
    for (int c = 0; c < g.c; c++) {
      const float *xc = x + ((size_t)s * g.c + c) * hw;
      for (int oh = 0; oh < g.ho; oh++) {
        int h0, h1;
        clip(oh * g.sh - g.pt, g.kh, g.h, &h0, &h1);
        for (int ow = 0; ow < g.wo; ow++, o++) {
          int w0, w1;
          clip(ow * g.sw - g.pl, g.kw, g.w, &w0, &w1);
          float sum = 0.0f;
          for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) sum += xc[(size_t)ih * g.w + iw];
          y[o] = sum / avg_div(&g, oh * g.sh - g.pt, ow * g.sw - g.pl);
        }
      }
    }
}

/* dx [n, C, H, W]: each window's elements get dy / divisor. */
static void avgpool_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  if (!dx) return;
  pool_geom g;
  pool_geometry(l, &g, NULL);
  size_t hw = (size_t)g.h * g.w;
  memset(dx, 0, sizeof(float) * hw * (size_t)g.c * (size_t)n);
  size_t o = 0;
  for (int s = 0; s < n; s++)
    for (int c = 0; c < g.c; c++) {
      float *dxc = dx + ((size_t)s * g.c + c) * hw;
      for (int oh = 0; oh < g.ho; oh++) {
        int h0, h1;
        clip(oh * g.sh - g.pt, g.kh, g.h, &h0, &h1);
        for (int ow = 0; ow < g.wo; ow++, o++) {
          int w0, w1;
          clip(ow * g.sw - g.pl, g.kw, g.w, &w0, &w1);
          float d = dy[o] / avg_div(&g, oh * g.sh - g.pt, ow * g.sw - g.pl);
          for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) dxc[(size_t)ih * g.w + iw] += d;
        }
      }
    }
}

static int global_avgpool_build(nn_layer *l, nn_error *err) {
  char shp[64];
  if (l->in.ndim != 3)
    return nn_error_set(err, NN_ESHAPE, "expects a [channels, height, width] input, got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  l->out.ndim = 1;
  l->out.dim[0] = l->in.dim[0];
  l->blk_caps = l->in.dim[0] % 16 == 0 ? NN_BLK_IN : 0;
  return 0;
}

/* x [n, C, H, W] -> y [n, C], channel means (summed in double). */
static void global_avgpool_forward(nn_layer *l, const float *x, float *y, int n,
                                   const nn_run_ctx *ctx) {
  size_t hw = (size_t)l->in.dim[1] * l->in.dim[2], rows = (size_t)n * l->in.dim[0];
  if (l->in_blocked) {
    global_avgpool_forward_blk(l, x, y, n);
    return;
  }
  for (size_t r = 0; r < rows; r++) {
    const float *xc = x + r * hw;
    double sum = 0.0;
    for (size_t i = 0; i < hw; i++) sum += xc[i];
    y[r] = (float)(sum / (double)hw);
  }
}

/* dx [n, C, H, W] = dy [n, C] / (H*W) broadcast over each channel. */
static void global_avgpool_backward(nn_layer *l, const float *x, const float *y,
                                    const float *dy, float *dx, int n, const nn_run_ctx *ctx) {
  if (!dx) return;
  size_t hw = (size_t)l->in.dim[1] * l->in.dim[2], rows = (size_t)n * l->in.dim[0];
  float inv = 1.0f / (float)hw;
  if (l->in_blocked) {
    global_avgpool_backward_blk(l, dy, dx, n, inv);
    return;
  }
  for (size_t r = 0; r < rows; r++) {
    float d = dy[r] * inv;
    float *dxc = dx + r * hw;
    for (size_t i = 0; i < hw; i++) dxc[i] = d;
  }
}

const nn_layer_ops nn_layer_maxpool = {
    .type = "maxpool",
    .help = "2-d max pooling [C, H, W] -> [C, Ho, Wo]; gradient to the window's maximum",
    .keys = pool_keys,
    .build = maxpool_build,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .fuse_relu = NN_FUSE_RELU_OUT | NN_FUSE_RELU_COMMUTES,
};

const nn_layer_ops nn_layer_avgpool = {
    .type = "avgpool",
    .help = "2-d average pooling [C, H, W] -> [C, Ho, Wo]",
    .keys = pool_keys,
    .build = avgpool_build,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

const nn_layer_ops nn_layer_global_avgpool = {
    .type = "global_avgpool",
    .help = "mean of each channel: [C, H, W] -> [C]",
    .keys = global_avgpool_keys,
    .build = global_avgpool_build,
    .forward = global_avgpool_forward,
    .backward = global_avgpool_backward,
};
