/* sample.c: the VAE reparameterisation z = mu + exp(logvar/2) * eps, with
 * its KL term.
 *
 * Input [2D] per sample (more generally [2C, ...]: the first half of each
 * sample's values is the mean mu, the second the log-variance logvar), output
 * [D] ([C, ...]). Key: beta (the weight of the KL term, default 1).
 *
 * Training (ctx->training = 1): eps ~ N(0, 1), element j of global sample s
 * (s = ctx->sample0 + i) in optimizer step t being draw j of the counter-based
 * stream (ctx->seed, NN_RNG_SAMPLE_LAYER, l->init_index, t, s) (sample.h), so
 * a sample gets the same z whatever rank holds it and however many ranks
 * there are, and a resumed run draws the same noise. Steps and samples are
 * taken modulo 2^32. eps is kept in the scratch for backward.
 * Evaluation (ctx->training = 0): z = mu (no noise: the decoder sees the mean
 * code, deterministic reconstructions and `encode` outputs).
 *
 * The KL term. Every forward (training or evaluation) computes
 *     KL = 0.5 * sum over its samples and elements of (mu^2 + exp(logvar) - 1 - logvar)
 * = sum KL(N(mu, sigma^2) || N(0, 1)), in double, and keeps it (two floats of
 * fixed scratch) for nn_sample_kl / nn_sample_penalty (sample.h). The loss
 * the layer adds is beta * KL per sample, averaged over the global batch as
 * an activity penalty is (core/regularize.h): backward adds
 *     beta * ctx->act_scale * (mu, 0.5*(exp(logvar) - 1))
 * to dx when ctx->act_scale != 0 (training steps: 1/global batch; gradient
 * checks and evaluation pass 0), and the training step adds
 * nn_sample_penalty (beta * KL of this rank's slice) to the reported loss
 * sum. Frozen passes compute dx the same way (the layer has no parameters).
 * Scratch: D floats per sample (eps) + 2 fixed (the KL, a double). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/layer.h"
#include "core/layers/sample.h"
#include "core/rng.h"

typedef struct sample_opts {
  double beta;
} sample_opts;
NN_LAYER_OPTS_FIT(sample_opts);

static const sample_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const sample_opts);
}

static const nn_key sample_keys[] = {
    {"beta", NN_KEY_FLOAT, offsetof(sample_opts, beta), sizeof(double), 0, 1e6, "1.0", NULL, 0,
     "weight of the KL(N(mu, exp(logvar)) || N(0, 1)) term added to the loss (mean over the "
     "batch)", 0},
    {0},
};

extern const nn_layer_ops nn_layer_sample;

/* values per sample of the output (D) */
static size_t half(const nn_layer *l) { return nn_shape_count(&l->out); }

static int sample_build(nn_layer *l, nn_error *err) {
  char shp[64];
  if (l->in.ndim < 1 || l->in.dim[0] < 2 || l->in.dim[0] % 2)
    return nn_error_set(err, NN_ESHAPE,
                        "expects an input whose first dimension is even ([2*D]: D means, then D "
                        "log-variances), got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  if (!(opts(l)->beta >= 0.0))
    return nn_error_set(err, NN_ESCHEMA, "beta must be >= 0, got %g", opts(l)->beta);
  l->out = l->in;
  l->out.dim[0] = l->in.dim[0] / 2;
  l->scratch_per_sample = nn_shape_count(&l->out); /* eps */
  l->scratch_fixed = 2;                           /* the last forward's KL (a double) */
  return 0;
}

/* The layer's scratch: the KL (a double in two floats) first, then eps [n, D]. */
static float *eps_of(const nn_layer *l) { return l->scratch + 2; }

static void set_kl(const nn_layer *l, double kl) { memcpy(l->scratch, &kl, sizeof kl); }

static double get_kl(const nn_layer *l) {
  double kl;
  memcpy(&kl, l->scratch, sizeof kl);
  return kl;
}

static void sample_forward(nn_layer *l, const float *x, float *y, int n,
                           const nn_run_ctx *ctx) {
  size_t d = half(l);
  float *eps = eps_of(l);
  double kl = 0.0;
  for (int i = 0; i < n; i++) {
    const float *mu = x + (size_t)i * 2 * d, *lv = mu + d;
    float *z = y + (size_t)i * d;
    for (size_t j = 0; j < d; j++)
      kl += (double)mu[j] * mu[j] + exp((double)lv[j]) - 1.0 - (double)lv[j];
    if (!ctx->training) {
      memcpy(z, mu, d * sizeof *z);
      continue;
    }
    nn_rng r;
    nn_rng_init(&r, ctx->seed, NN_RNG_SAMPLE_LAYER, (uint32_t)l->init_index,
                (uint32_t)ctx->step, (uint32_t)(ctx->sample0 + i));
    float *e = eps + (size_t)i * d;
    for (size_t j = 0; j < d; j++) {
      e[j] = nn_rng_normal(&r);
      z[j] = mu[j] + expf(0.5f * lv[j]) * e[j];
    }
  }
  set_kl(l, 0.5 * kl);
}

static void sample_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int n, const nn_run_ctx *ctx) {
  (void)y;
  if (!dx) return;
  size_t d = half(l);
  const float *eps = eps_of(l);
  float c = (float)opts(l)->beta * ctx->act_scale; /* the KL term's weight, 0: none */
  for (int i = 0; i < n; i++) {
    const float *mu = x + (size_t)i * 2 * d, *lv = mu + d, *dz = dy + (size_t)i * d;
    const float *e = eps + (size_t)i * d;
    float *dmu = dx + (size_t)i * 2 * d, *dlv = dmu + d;
    for (size_t j = 0; j < d; j++) {
      dmu[j] = dz[j];
      dlv[j] = ctx->training ? dz[j] * 0.5f * expf(0.5f * lv[j]) * e[j] : 0.0f;
      if (c != 0.0f) {
        dmu[j] += c * mu[j];
        dlv[j] += c * 0.5f * (expf(lv[j]) - 1.0f);
      }
    }
  }
}

int nn_sample_layer_index(const nn_model *m) {
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].ops == &nn_layer_sample) return i;
  return -1;
}

double nn_sample_kl(const nn_model *m) {
  double total = 0.0;
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].ops == &nn_layer_sample) total += get_kl(&m->layers[i]);
  return total;
}

double nn_sample_penalty(const nn_model *m) {
  double total = 0.0;
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    if (l->ops == &nn_layer_sample) total += opts(l)->beta * get_kl(l);
  }
  return total;
}

const nn_layer_ops nn_layer_sample = {
    .type = "sample",
    .help = "VAE reparameterisation [2*D] (mean, log-variance) -> [D]: z = mu + exp(logvar/2) * "
            "eps in training, mu in evaluation; adds beta * KL to the loss",
    .keys = sample_keys,
    .build = sample_build,
    .forward = sample_forward,
    .backward = sample_backward,
};
