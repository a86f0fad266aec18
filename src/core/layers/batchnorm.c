/* batchnorm.c: batch normalization (PyTorch's nn.BatchNorm1d / BatchNorm2d).
 *
 * Channels are dim 0 of the per-sample input: [C, H, W] normalizes each of
 * the C channels over the batch and all H*W positions (BatchNorm2d); [F]
 * normalizes each feature over the batch (BatchNorm1d); [C, L] is
 * BatchNorm1d on (N, C, L). Elements are laid out [n, C, S], S = H*W or 1.
 *
 *   y = weight[c] * (x - mean[c]) / sqrt(var[c] + eps) + bias[c]
 *
 * Training (ctx->training = 1): mean and var are the statistics of this
 * call's batch (var biased, divided by M = n*S), and the running statistics
 * are updated as PyTorch does:
 *   running_mean = (1 - momentum) running_mean + momentum mean
 *   running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)
 * (the unbiased variance; with M = 1 the biased one, which is 0).
 * Evaluation: mean = running_mean, var = running_var; nothing is updated.
 *
 * Data parallelism: the statistics are those of the rank's LOCAL slice of
 * the global batch (not synchronized across ranks), as with PyTorch DDP's
 * default BatchNorm. The normalization therefore depends on the rank count
 * (a global batch of 64 on 2 ranks normalizes two halves of 32), and the
 * running statistics drift apart between ranks; the trainer averages the
 * buffer arena across ranks to make replicas identical again (model.h,
 * nn_model_running_stats).
 *
 * Parameters: weight [C] (gamma, ones), bias [C] (beta, zeros).
 * Buffers: running_mean [C] (zeros), running_var [C] (ones). No
 * num_batches_tracked: momentum is always a number here.
 * Scratch (fixed): mean [C] and 1/sqrt(var + eps) [C] of the last training
 * forward, which backward uses with x to rebuild xhat.
 *
 * Passes over memory per channel: forward reads x twice for the statistics
 * (sum, then squared deviations: no cancellation) and once to write y;
 * backward reads x and dy once for both sums, once more to write dx. The
 * sums accumulate in sixteen float partials added up in double (rows.h's
 * order); y is computed in double and rounded once, training's dx in float.
 * These are the bits every earlier nntrain computed (a run resumed from an
 * old checkpoint continues bit for bit: tests/e2e_ckpt_v1.sh).
 *
 * A ReLU after it may be fused in (nn_layer.relu_out, set by the model's
 * fusion pass, model.h): forward writes max(0, y) into the ReLU's output,
 * backward gets the ReLU's output gradient and masks it (dy where y > 0, the
 * sign recomputed from x: bn_affine) inside both of its passes, which then
 * read x and dy only, as the unfused batchnorm does.
 *
 * Blocked layout (core/layer.h, "Blocked activations"): a [C, H, W] input
 * with C % 16 == 0 declares NN_BLK_SAME, and with l->in_blocked set x, y, dy
 * and dx are all nChw16c. The blocked kernels compute the same bits as the
 * NCHW ones: one position's 16 channels are one 16-lane vector, so each of
 * rows.h's sixteen float partials (by position k % 16) is a 16-lane vector,
 * the tail a pair of 8-lane double vectors, added up in rows.h's order
 * (tail, then partials q = 0..15, then the rows in sample order), and y / dx
 * are the same per-element operations (bn_affine and the rest) lane by lane.
 * One difference: with a fused ReLU, backward reads its mask from forward's
 * output y (y > 0 exactly where bn_affine(x) > 0) instead of recomputing it
 * in double. On 7x7 and 14x14 planes, where the NCHW rows are a few vectors
 * long, the blocked loops run full 16-wide vectors throughout. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/layer.h"
#include "core/layers/rows.h"

/* batchnorm's options (nn_layer_cfg.opts) */
typedef struct bn_opts {
  double momentum; /* running statistics update (PyTorch convention) */
  double eps;      /* added to the variance */
} bn_opts;
NN_LAYER_OPTS_FIT(bn_opts);

static const bn_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const bn_opts);
}

static const nn_key batchnorm_keys[] = {
    {"momentum", NN_KEY_FLOAT, offsetof(bn_opts, momentum), sizeof(double), 0, 1, "0.1",
     NULL, 0, "weight of the batch in the running statistics' update (PyTorch convention: "
     "running = (1 - momentum) running + momentum batch)", 0},
    {"eps", NN_KEY_FLOAT, offsetof(bn_opts, eps), sizeof(double), 0, 1, "1e-5", NULL,
     NN_KEY_MIN_EXCLUSIVE, "added to the variance before the square root", 0},
    {0},
};

enum { BN_WEIGHT = 0, BN_BIAS = 1 };
enum { BN_RUNNING_MEAN = 0, BN_RUNNING_VAR = 1 };

static int batchnorm_build(nn_layer *l, nn_error *err) {
  if (l->in.ndim < 1) return nn_error_set(err, NN_ESHAPE, "input has no dimensions");
  if (!(opts(l)->eps > 0.0))
    return nn_error_set(err, NN_ESCHEMA, "eps must be > 0, got %g", opts(l)->eps);
  if (!(opts(l)->momentum >= 0.0 && opts(l)->momentum <= 1.0))
    return nn_error_set(err, NN_ESCHEMA, "momentum must be in [0, 1], got %g", opts(l)->momentum);
  int c = l->in.dim[0];
  nn_shape cs = {1, {c}};
  int rc = nn_layer_add_param(l, "weight", &cs, NN_INIT_ONES, 0, 0, err);
  if (!rc) rc = nn_layer_add_param(l, "bias", &cs, NN_INIT_ZEROS, 0, 0, err);
  if (!rc) rc = nn_layer_add_buffer(l, "running_mean", &cs, NN_INIT_ZEROS, 0.0f, err);
  if (!rc) rc = nn_layer_add_buffer(l, "running_var", &cs, NN_INIT_ONES, 1.0f, err);
  if (rc) return rc;
  l->out = l->in;
  l->scratch_fixed = 2 * (size_t)c;
  l->blk_caps = l->in.ndim == 3 && c % 16 == 0 ? NN_BLK_SAME : 0;
  return 0;
}

/* Channels C and positions per channel S of one sample. */
static void geometry(const nn_layer *l, size_t *c, size_t *s) {
  *c = (size_t)l->in.dim[0];
  *s = *c ? nn_shape_count(&l->in) / *c : 0;
}

/* The normalized, scaled and shifted value of x: forward's y, and (its sign)
 * backward's ReLU mask when a ReLU is fused, recomputed from x instead of
 * read from y. One expression in one place: both compute the same float
 * operations, so the mask is exactly forward's (test_core_fuse checks the
 * fused gradients are bit-identical to the unfused layers'). */
static inline float bn_affine(float x, float mu, double g, double b) {
  return (float)(g * ((double)x - mu) + b);
}
#define BN_FLOAT_POS 0x1p-150 /* the largest double that rounds to float +0 */

/* GCC/Clang vector types: the compiler does not vectorize the select of a
 * masked sum written as a loop (it gives up on the 16 unrolled lanes) */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Training: the running update of channel ch from this batch's mean and sum
 * of squared deviations sq over m values, and mean / invstd into scratch. */
static void bn_train_stats(nn_layer *l, size_t ch, double mean, double sq, size_t m) {
  size_t c = (size_t)l->in.dim[0];
  float *rmean = l->buffer[BN_RUNNING_MEAN], *rvar = l->buffer[BN_RUNNING_VAR];
  double eps = opts(l)->eps, mom = opts(l)->momentum;
  double var = sq / (double)m;
  double unbiased = m > 1 ? sq / (double)(m - 1) : var;
  rmean[ch] = (float)((1.0 - mom) * rmean[ch] + mom * mean);
  rvar[ch] = (float)((1.0 - mom) * rvar[ch] + mom * unbiased);
  l->scratch[ch] = (float)mean;
  l->scratch[c + ch] = (float)(1.0 / sqrt(var + eps));
}

/* The mean and invstd channel ch normalizes with: training, the batch's
 * (scratch, after bn_train_stats); evaluation, the running statistics. */
static void bn_coefs(const nn_layer *l, size_t ch, int training, float *mu, float *inv) {
  size_t c = (size_t)l->in.dim[0];
  if (training) {
    *mu = l->scratch[ch];
    *inv = l->scratch[c + ch];
  } else {
    *mu = l->buffer[BN_RUNNING_MEAN][ch];
    *inv = (float)(1.0 / sqrt((double)l->buffer[BN_RUNNING_VAR][ch] + opts(l)->eps));
  }
}

static void batchnorm_forward_blk(nn_layer *l, const float *x, float *y, int n,
                                  const nn_run_ctx *ctx);

/* x, y [n, C, S] (nChw16c when l->in_blocked: batchnorm_forward_blk).
 * Training: batch statistics into scratch (mean [C], invstd [C]) and the
 * running update; evaluation: running statistics. */
static void batchnorm_forward(nn_layer *l, const float *x, float *y, int n,
                              const nn_run_ctx *ctx) {
  size_t c, s;
  geometry(l, &c, &s);
  const float *gamma = l->param[BN_WEIGHT], *beta = l->param[BN_BIAS];
  size_t m = (size_t)n * s;
  if (n <= 0) return;
  if (l->in_blocked) {
    batchnorm_forward_blk(l, x, y, n, ctx);
    return;
  }
  for (size_t ch = 0; ch < c; ch++) {
    if (ctx->training) {
      double sum = 0.0;
      for (int i = 0; i < n; i++) sum += nn_row_sum(x + ((size_t)i * c + ch) * s, s);
      double mean = sum / (double)m;
      double sq = 0.0;
      for (int i = 0; i < n; i++) sq += nn_row_dev2(x + ((size_t)i * c + ch) * s, (float)mean, s);
      bn_train_stats(l, ch, mean, sq, m);
    }
    float mu, inv;
    bn_coefs(l, ch, ctx->training, &mu, &inv);
    /* x - mu first, in double: no cancellation, one rounding (and the bits
     * every earlier nntrain computed: a run resumed from an old checkpoint
     * continues bit for bit, tests/e2e_ckpt_v1.sh); relu_out: a ReLU fused
     * onto the output (model.c), max(0, .) */
    const double a = (double)gamma[ch] * inv, b = beta[ch];
    const int relu = l->relu_out;
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * c + ch) * s;
      const float *restrict xs = x + base;
      float *restrict ys = y + base;
      if (relu) {
        for (size_t j = 0; j < s; j++) {
          float v = bn_affine(xs[j], mu, a, b);
          ys[j] = v > 0.0f ? v : 0.0f;
        }
      } else {
        for (size_t j = 0; j < s; j++) ys[j] = bn_affine(xs[j], mu, a, b);
      }
    }
  }
}

/* One row: sums of g and of (x - mu) * g into *sdy, *sdyx; g = dy, or with a
 * fused ReLU (relu = 1) g = dy where bn_affine(x, mu, ya, yb) > 0, else 0.
 * Sixteen float partials in one vector, added up in double (as rows.h
 * does). */
static inline void bn_row_sums(const float *restrict xs, const float *restrict ds, int relu,
                               float mu, double ya, double yb, size_t s, double *sdy,
                               double *sdyx) {
  const v16f zero = {0}, vmu = zero + mu;
  const v8d dzero = {0}, va = dzero + ya, vb = dzero + yb, vmud = dzero + (double)mu;
  v16f p1 = zero, p2 = zero;
  size_t k = 0;
  for (; k + 16 <= s; k += 16) {
    v16f d, xv;
    memcpy(&d, ds + k, sizeof d);
    memcpy(&xv, xs + k, sizeof xv);
    v16f dev = xv - vmu;
    if (relu) { /* bn_affine's operations, lane by lane, in double */
      v8f lo = __builtin_shufflevector(xv, xv, 0, 1, 2, 3, 4, 5, 6, 7);
      v8f hi = __builtin_shufflevector(xv, xv, 8, 9, 10, 11, 12, 13, 14, 15);
      v8d vl = va * (__builtin_convertvector(lo, v8d) - vmud) + vb;
      v8d vh = va * (__builtin_convertvector(hi, v8d) - vmud) + vb;
      /* (float)v > 0 exactly when v > 2^-150 (below, v rounds to +-0) */
      v8i ml = __builtin_convertvector(vl > BN_FLOAT_POS, v8i);
      v8i mh = __builtin_convertvector(vh > BN_FLOAT_POS, v8i);
      v16i on = __builtin_shufflevector(ml, mh, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                        14, 15);
      d = (v16f)((v16i)d & on);
    }
    p1 += d;
    p2 += dev * d;
  }
  double a = 0.0, b = 0.0;
  for (; k < s; k++) {
    double g = relu && !(bn_affine(xs[k], mu, ya, yb) > 0.0f) ? 0.0 : (double)ds[k];
    a += g;
    b += ((double)xs[k] - mu) * g;
  }
  for (int q = 0; q < 16; q++) a += p1[q], b += p2[q];
  *sdy += a;
  *sdyx += b;
}

/* Sums over channel ch (all n rows) of dy and of (x - mu) * dy, in one pass
 * over x and dy (with relu, of the masked dy: bn_row_sums). */
static void bn_sums(const float *x, const float *dy, int relu, size_t c, size_t ch, size_t s,
                    int n, float mu, double ya, double yb, double *sdy, double *sdyx) {
  *sdy = *sdyx = 0.0;
  for (int i = 0; i < n; i++) {
    size_t base = ((size_t)i * c + ch) * s;
    if (relu)
      bn_row_sums(x + base, dy + base, 1, mu, ya, yb, s, sdy, sdyx);
    else
      bn_row_sums(x + base, dy + base, 0, mu, ya, yb, s, sdy, sdyx);
  }
}

/* dy [n, C, S]; xhat = (x - mean) * inv.
 *   dweight[c] += sum dy * xhat, dbias[c] += sum dy
 *   training:   dx = weight * inv / M * (M dy - sum dy - xhat sum(dy xhat))
 *   evaluation: dx = weight * inv * dy  (the statistics are constants) */
static void batchnorm_backward_blk(nn_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int n, const nn_run_ctx *ctx);

static void batchnorm_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int n, const nn_run_ctx *ctx) {
  (void)y;
  size_t c, s;
  geometry(l, &c, &s);
  const float *gamma = l->param[BN_WEIGHT];
  float *dgamma = l->grad[BN_WEIGHT], *dbeta = l->grad[BN_BIAS];
  double m = (double)n * (double)s;
  int pg = nn_layer_param_grads(l, ctx);
  if (n <= 0 || (!pg && !dx)) return;
  if (l->in_blocked) {
    batchnorm_backward_blk(l, x, y, dy, dx, n, ctx);
    return;
  }
  for (size_t ch = 0; ch < c; ch++) {
    float mu, inv;
    bn_coefs(l, ch, ctx->training, &mu, &inv);
    /* a fused ReLU: its mask from x (bn_affine), as forward computed y */
    const int relu = l->relu_out;
    const double ya = (double)gamma[ch] * inv, yb = l->param[BN_BIAS][ch];
    double sdy, sdyx; /* sums of dy and of dy * xhat */
    bn_sums(x, dy, relu, c, ch, s, n, mu, ya, yb, &sdy, &sdyx);
    sdyx *= inv;
    if (pg) {
      dgamma[ch] += (float)sdyx;
      dbeta[ch] += (float)sdy;
    }
    if (!dx) continue;
    double k = (double)gamma[ch] * inv;
    /* evaluation: dx = k dy (in double, as always);
     * training: dx = k (dy - mean dy) - k inv mean(dy xhat) (x - mu) */
    if (!ctx->training) {
      for (int i = 0; i < n; i++) {
        size_t base = ((size_t)i * c + ch) * s;
        for (size_t j = 0; j < s; j++) {
          float g = dy[base + j];
          if (relu && !(bn_affine(x[base + j], mu, ya, yb) > 0.0f)) g = 0.0f;
          dx[base + j] = (float)(k * g);
        }
      }
      continue;
    }
    float a = (float)k, mdy = (float)(sdy / m), bx = (float)(k * inv * (sdyx / m));
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * c + ch) * s;
      const float *restrict xs = x + base, *restrict dys = dy + base;
      float *restrict dxs = dx + base;
      if (relu) {
        for (size_t j = 0; j < s; j++) {
          float xv = xs[j], g = bn_affine(xv, mu, ya, yb) > 0.0f ? dys[j] : 0.0f;
          dxs[j] = a * (g - mdy) - bx * (xv - mu);
        }
      } else {
        for (size_t j = 0; j < s; j++) dxs[j] = a * (dys[j] - mdy) - bx * (xs[j] - mu);
      }
    }
  }
}

/* ---- blocked (nChw16c) kernels -------------------------------------------
 * One sample's block of 16 channels is [S, 16]: position p's channels are
 * the 16 lanes of one vector. Each kernel below is its NCHW twin above with
 * the channel loop turned into the lanes: the same float and double
 * operations per element, the same order of every sum. */

/* The helpers below pass 64-byte vectors by value between static functions
 * of this file only: GCC's note that such calls would differ from the ABI
 * of an AVX-512 build (-Wpsabi, given when the target has no AVX-512) does
 * not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
static inline v16f bn_ld(const float *p) {
  v16f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void bn_st(float *p, v16f v) { memcpy(p, &v, sizeof v); }
static inline v8d bn_lo(v16f v) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), v8d);
}
static inline v8d bn_hi(v16f v) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15),
                                 v8d);
}
/* Both halves rounded to float, as one vector. */
static inline v16f bn_join(v8d lo, v8d hi) {
  v8f a = __builtin_convertvector(lo, v8f), b = __builtin_convertvector(hi, v8f);
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
/* v where m is all ones, +0 elsewhere (keep_if of pool.c, 16 lanes). */
static inline v16f bn_keep(v16f v, v16i m) { return (v16f)((v16i)v & m); }

/* The per-channel constants of one block of 16 channels, as lanes. */
typedef struct bn_lanes {
  v16f mu;                /* the mean the layer normalizes with */
  v8d mlo, mhi;           /* mu in double */
  v8d alo, ahi, blo, bhi; /* bn_affine's g = weight * invstd and b = bias */
  float inv[16];          /* invstd */
} bn_lanes;

static void bn_lanes_of(const nn_layer *l, size_t ch0, int training, bn_lanes *k) {
  const float *gamma = l->param[BN_WEIGHT], *beta = l->param[BN_BIAS];
  float mu[16];
  double a[16], b[16];
  for (int q = 0; q < 16; q++) {
    bn_coefs(l, ch0 + q, training, &mu[q], &k->inv[q]);
    a[q] = (double)gamma[ch0 + q] * k->inv[q];
    b[q] = beta[ch0 + q];
  }
  memcpy(&k->mu, mu, sizeof mu);
  memcpy(&k->alo, a, sizeof k->alo);
  memcpy(&k->ahi, a + 8, sizeof k->ahi);
  memcpy(&k->blo, b, sizeof k->blo);
  memcpy(&k->bhi, b + 8, sizeof k->bhi);
  k->mlo = bn_lo(k->mu);
  k->mhi = bn_hi(k->mu);
}

/* bn_affine on 16 lanes. */
static inline v16f bn_affine16(v16f x, const bn_lanes *k) {
  return bn_join(k->alo * (bn_lo(x) - k->mlo) + k->blo, k->ahi * (bn_hi(x) - k->mhi) + k->bhi);
}

/* One sample's block xb [S, 16]: each lane's nn_row_sum (dev2 = 0) or
 * nn_row_dev2 around mu (dev2 = 1), added into *lo / *hi. rows.h's order: a
 * double sum of the tail positions [S16, S) (S16 = S rounded down to 16),
 * then partial q (positions q, q + 16, ... < S16, summed in float) added for
 * q = 0..15. The sixteen partials are sixteen vector registers, one group
 * of 16 positions (1 KiB, contiguous) at a time. */
static inline void bn_blk_reduce(const float *restrict xb, size_t s, int dev2, v16f mu,
                                 v8d *lo, v8d *hi) {
  const size_t s16 = s / 16 * 16;
  const v8d mlo = bn_lo(mu), mhi = bn_hi(mu);
  v8d rlo = {0}, rhi = {0};
  for (size_t p = s16; p < s; p++) {
    v16f u = bn_ld(xb + p * 16);
    v8d ul = bn_lo(u), uh = bn_hi(u);
    if (dev2) {
      ul -= mlo;
      uh -= mhi;
      rlo += ul * ul;
      rhi += uh * uh;
    } else {
      rlo += ul;
      rhi += uh;
    }
  }
  v16f part[16];
  for (int q = 0; q < 16; q++) part[q] = (v16f){0};
  for (size_t k = 0; k < s16; k += 16) {
    const float *xk = xb + k * 16;
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++) {
      v16f u = bn_ld(xk + q * 16);
      if (dev2) {
        v16f d = u - mu;
        part[q] += d * d;
      } else {
        part[q] += u;
      }
    }
  }
  for (int q = 0; q < 16; q++) {
    rlo += bn_lo(part[q]);
    rhi += bn_hi(part[q]);
  }
  *lo += rlo;
  *hi += rhi;
}

/* Training statistics of the block of channels ch0..ch0+15 over the n
 * samples (batchnorm_forward's sums, lane by lane), then bn_train_stats. */
static void bn_blk_train_stats(nn_layer *l, const float *x, int n, size_t ch0) {
  size_t c, s;
  geometry(l, &c, &s);
  size_t m = (size_t)n * s;
  const v16f zero = {0};
  v8d slo = {0}, shi = {0}, qlo = {0}, qhi = {0};
  for (int i = 0; i < n; i++) bn_blk_reduce(x + ((size_t)i * c + ch0) * s, s, 0, zero, &slo, &shi);
  double mean[16];
  float muf[16];
  for (int q = 0; q < 16; q++) {
    mean[q] = (q < 8 ? slo[q] : shi[q - 8]) / (double)m;
    muf[q] = (float)mean[q];
  }
  v16f mu;
  memcpy(&mu, muf, sizeof mu);
  for (int i = 0; i < n; i++) bn_blk_reduce(x + ((size_t)i * c + ch0) * s, s, 1, mu, &qlo, &qhi);
  for (int q = 0; q < 16; q++) bn_train_stats(l, ch0 + (size_t)q, mean[q], q < 8 ? qlo[q] : qhi[q - 8], m);
}

/* batchnorm_forward on x, y [n, C/16, S, 16]. */
static void batchnorm_forward_blk(nn_layer *l, const float *x, float *y, int n,
                                  const nn_run_ctx *ctx) {
  size_t c, s;
  geometry(l, &c, &s);
  const v16f zero = {0};
  for (size_t ch0 = 0; ch0 < c; ch0 += 16) {
    if (ctx->training) bn_blk_train_stats(l, x, n, ch0);
    bn_lanes k;
    bn_lanes_of(l, ch0, ctx->training, &k);
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * c + ch0) * s;
      const float *restrict xb = x + base;
      float *restrict yb = y + base;
      if (l->relu_out) {
        for (size_t p = 0; p < s; p++) {
          v16f v = bn_affine16(bn_ld(xb + p * 16), &k);
          bn_st(yb + p * 16, bn_keep(v, v > zero));
        }
      } else {
        for (size_t p = 0; p < s; p++) bn_st(yb + p * 16, bn_affine16(bn_ld(xb + p * 16), &k));
      }
    }
  }
}

/* One sample's blocks xb, db [S, 16]: each lane's bn_row_sums into
 * acc[0..1] (sum of g, lo / hi lanes) and acc[2..3] (sum of (x - mu) g), in
 * its order: tail positions in double, then partials q = 0..15 (sixteen
 * registers, as in bn_blk_reduce). yb (a fused ReLU, else NULL): forward's
 * output max(0, bn_affine(x)), so yb > 0 exactly where bn_row_sums' mask
 * is on (where it recomputes bn_affine from x: here, on planes of a few
 * dozen positions, the extra read of y costs less than the double
 * arithmetic). */
static inline void bn_blk_sums(const float *restrict xb, const float *restrict db,
                               const float *restrict yb, size_t s, const bn_lanes *k,
                               v8d acc[4]) {
  const size_t s16 = s / 16 * 16;
  const v16f zero = {0};
  v8d alo = {0}, ahi = {0}, blo = {0}, bhi = {0};
  for (size_t p = s16; p < s; p++) {
    v16f u = bn_ld(xb + p * 16), d = bn_ld(db + p * 16);
    if (yb) d = bn_keep(d, bn_ld(yb + p * 16) > zero);
    v8d gl = bn_lo(d), gh = bn_hi(d);
    alo += gl;
    ahi += gh;
    blo += (bn_lo(u) - k->mlo) * gl;
    bhi += (bn_hi(u) - k->mhi) * gh;
  }
  /* the partials of q = 0..7, then of 8..15: sixteen registers each time */
  v16f p1[16], p2[16];
  for (int g0 = 0; g0 < 16; g0 += 8) {
    v16f s1[8], s2[8];
    for (int q = 0; q < 8; q++) s1[q] = s2[q] = zero;
    for (size_t j = (size_t)g0; j < s16; j += 16) {
      const float *xk = xb + j * 16, *dk = db + j * 16;
#pragma GCC unroll 8
      for (int q = 0; q < 8; q++) {
        v16f u = bn_ld(xk + q * 16), d = bn_ld(dk + q * 16);
        v16f dev = u - k->mu;
        if (yb) d = bn_keep(d, bn_ld(yb + (j + (size_t)q) * 16) > zero);
        s1[q] += d;
        s2[q] += dev * d;
      }
    }
    for (int q = 0; q < 8; q++) p1[g0 + q] = s1[q], p2[g0 + q] = s2[q];
  }
  for (int q = 0; q < 16; q++) {
    alo += bn_lo(p1[q]);
    ahi += bn_hi(p1[q]);
    blo += bn_lo(p2[q]);
    bhi += bn_hi(p2[q]);
  }
  acc[0] += alo;
  acc[1] += ahi;
  acc[2] += blo;
  acc[3] += bhi;
}

/* dx [n, C/16, S, 16] of one block from its per-lane constants (the
 * expressions of batchnorm_backward's last loops). */
static void bn_blk_dx(const float *x, const float *y, const float *dy, float *dx, int n,
                      size_t c, size_t s, size_t ch0, int training, int relu, const bn_lanes *k,
                      v16f a, v16f mdy, v16f bx) {
  const v16f zero = {0};
  for (int i = 0; i < n; i++) {
    size_t base = ((size_t)i * c + ch0) * s;
    const float *restrict xb = x + base, *restrict db = dy + base;
    float *restrict dxb = dx + base;
    for (size_t p = 0; p < s; p++) {
      v16f u = bn_ld(xb + p * 16), g = bn_ld(db + p * 16);
      if (relu) g = bn_keep(g, bn_ld(y + base + p * 16) > zero); /* as in bn_blk_sums */
      if (training)
        bn_st(dxb + p * 16, a * (g - mdy) - bx * (u - k->mu));
      else /* k = weight * invstd = bn_affine's g */
        bn_st(dxb + p * 16, bn_join(k->alo * bn_lo(g), k->ahi * bn_hi(g)));
    }
  }
}

/* batchnorm_backward on x, dy, dx [n, C/16, S, 16]. */
static void batchnorm_backward_blk(nn_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int n, const nn_run_ctx *ctx) {
  size_t c, s;
  geometry(l, &c, &s);
  const float *gamma = l->param[BN_WEIGHT];
  float *dgamma = l->grad[BN_WEIGHT], *dbeta = l->grad[BN_BIAS];
  double m = (double)n * (double)s;
  int pg = nn_layer_param_grads(l, ctx);
  const int relu = l->relu_out;
  for (size_t ch0 = 0; ch0 < c; ch0 += 16) {
    bn_lanes k;
    bn_lanes_of(l, ch0, ctx->training, &k);
    v8d acc[4] = {{0}, {0}, {0}, {0}};
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * c + ch0) * s;
      if (relu)
        bn_blk_sums(x + base, dy + base, y + base, s, &k, acc);
      else
        bn_blk_sums(x + base, dy + base, NULL, s, &k, acc);
    }
    float a[16], mdy[16], bx[16];
    for (int q = 0; q < 16; q++) {
      size_t ch = ch0 + (size_t)q;
      float inv = k.inv[q];
      double sdy = q < 8 ? acc[0][q] : acc[1][q - 8];
      double sdyx = (q < 8 ? acc[2][q] : acc[3][q - 8]) * inv;
      if (pg) {
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
      }
      double kq = (double)gamma[ch] * inv;
      a[q] = (float)kq;
      mdy[q] = (float)(sdy / m);
      bx[q] = (float)(kq * inv * (sdyx / m));
    }
    if (!dx) continue;
    v16f va, vmdy, vbx;
    memcpy(&va, a, sizeof va);
    memcpy(&vmdy, mdy, sizeof vmdy);
    memcpy(&vbx, bx, sizeof vbx);
    bn_blk_dx(x, y, dy, dx, n, c, s, ch0, ctx->training, relu, &k, va, vmdy, vbx);
  }
}

const nn_layer_ops nn_layer_batchnorm = {
    .type = "batchnorm",
    .help = "batch normalization over dim 0 (channels of [C, H, W], features of [F]); "
            "weight/bias [C], buffers running_mean/running_var [C]",
    .keys = batchnorm_keys,
    .build = batchnorm_build,
    .forward = batchnorm_forward,
    .backward = batchnorm_backward,
    .fuse_relu = NN_FUSE_RELU_OUT,
};
