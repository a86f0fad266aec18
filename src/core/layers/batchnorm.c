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
 * read x and dy only, as the unfused batchnorm does. */
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

/* x, y [n, C, S]. Training: batch statistics into scratch (mean [C],
 * invstd [C]) and the running update; evaluation: running statistics. */
static void batchnorm_forward(nn_layer *l, const float *x, float *y, int n,
                              const nn_run_ctx *ctx) {
  size_t c, s;
  geometry(l, &c, &s);
  const float *gamma = l->param[BN_WEIGHT], *beta = l->param[BN_BIAS];
  float *rmean = l->buffer[BN_RUNNING_MEAN], *rvar = l->buffer[BN_RUNNING_VAR];
  float *smean = l->scratch, *sinv = l->scratch + c;
  double eps = opts(l)->eps, mom = opts(l)->momentum;
  size_t m = (size_t)n * s;
  if (n <= 0) return;
  for (size_t ch = 0; ch < c; ch++) {
    double mean, var;
    if (ctx->training) {
      double sum = 0.0;
      for (int i = 0; i < n; i++) sum += nn_row_sum(x + ((size_t)i * c + ch) * s, s);
      mean = sum / (double)m;
      double sq = 0.0;
      for (int i = 0; i < n; i++) sq += nn_row_dev2(x + ((size_t)i * c + ch) * s, (float)mean, s);
      var = sq / (double)m;
      double unbiased = m > 1 ? sq / (double)(m - 1) : var;
      rmean[ch] = (float)((1.0 - mom) * rmean[ch] + mom * mean);
      rvar[ch] = (float)((1.0 - mom) * rvar[ch] + mom * unbiased);
      smean[ch] = (float)mean;
      sinv[ch] = (float)(1.0 / sqrt(var + eps));
    } else {
      mean = rmean[ch];
      var = rvar[ch];
    }
    float mu = (float)mean, inv = (float)(1.0 / sqrt(var + eps));
    if (ctx->training) mu = smean[ch], inv = sinv[ch];
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
  /* GCC/Clang vector types: the compiler does not vectorize the select of a
   * masked sum written as a loop (it gives up on the 16 unrolled lanes) */
  typedef float v16f __attribute__((vector_size(64)));
  typedef int32_t v16i __attribute__((vector_size(64)));
  typedef double v8d __attribute__((vector_size(64)));
  typedef float v8f __attribute__((vector_size(32)));
  typedef int32_t v8i __attribute__((vector_size(32)));
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
static void batchnorm_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int n, const nn_run_ctx *ctx) {
  (void)y;
  size_t c, s;
  geometry(l, &c, &s);
  const float *gamma = l->param[BN_WEIGHT];
  float *dgamma = l->grad[BN_WEIGHT], *dbeta = l->grad[BN_BIAS];
  const float *rmean = l->buffer[BN_RUNNING_MEAN], *rvar = l->buffer[BN_RUNNING_VAR];
  double m = (double)n * (double)s;
  int pg = nn_layer_param_grads(l, ctx);
  if (n <= 0 || (!pg && !dx)) return;
  for (size_t ch = 0; ch < c; ch++) {
    float mu, inv;
    if (ctx->training) {
      mu = l->scratch[ch];
      inv = l->scratch[c + ch];
    } else {
      mu = rmean[ch];
      inv = (float)(1.0 / sqrt((double)rvar[ch] + opts(l)->eps));
    }
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
