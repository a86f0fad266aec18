/* dropout.c: inverted dropout (PyTorch's nn.Dropout).
 *
 * Training (ctx->training = 1): each input element is zeroed with
 * probability `rate` and the survivors are scaled by 1/(1 - rate), so the
 * expected output equals the input and evaluation needs no rescaling.
 * Evaluation: the identity.
 *
 * The mask is not drawn from a stream whose state depends on call order: the
 * elements of global sample s (s = ctx->sample0 + i) in optimizer step t come
 * from the counter-based stream (ctx->seed, NN_RNG_DROPOUT, l->init_index, t, s),
 * one uniform per element in order. The same job on 1 or 2 ranks (where a
 * sample sits in another rank's slice) and a resumed run therefore draw the
 * same masks. Steps and samples are taken modulo 2^32.
 *
 * Scratch: per sample count(in) floats, the mask of the last forward
 * (0 or 1/(1-rate)), which backward multiplies into dy. No parameters. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/layer.h"
#include "core/rng.h"

/* dropout's option (nn_layer_cfg.opts) */
typedef struct dropout_opts {
  double rate; /* probability of zeroing an input */
} dropout_opts;
NN_LAYER_OPTS_FIT(dropout_opts);

static const dropout_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const dropout_opts);
}

static const nn_key dropout_keys[] = {
    {"rate", NN_KEY_FLOAT, offsetof(dropout_opts, rate), sizeof(double), 0, 0.999, "0.5", NULL,
     0, "probability of zeroing each input element in training (survivors are scaled by "
     "1/(1-rate)); identity in evaluation", 0},
    {0},
};

static int dropout_build(nn_layer *l, nn_error *err) {
  double rate = opts(l)->rate;
  if (!(rate >= 0.0 && rate < 1.0))
    return nn_error_set(err, NN_ESCHEMA, "rate must be in [0, 1), got %g", rate);
  l->out = l->in;
  l->scratch_per_sample = nn_shape_count(&l->in);
  return 0;
}

/* x, y [n, k]. Training: y = x * mask, mask [n, k] kept in scratch. */
static void dropout_forward(nn_layer *l, const float *x, float *y, int n,
                            const nn_run_ctx *ctx) {
  size_t k = nn_shape_count(&l->in);
  if (!ctx->training || opts(l)->rate <= 0.0) {
    if (y != x) memcpy(y, x, (size_t)n * k * sizeof *y);
    return;
  }
  float p = (float)opts(l)->rate, scale = (float)(1.0 / (1.0 - opts(l)->rate));
  for (int i = 0; i < n; i++) {
    nn_rng r;
    nn_rng_init(&r, ctx->seed, NN_RNG_DROPOUT, (uint32_t)l->init_index, (uint32_t)ctx->step,
                (uint32_t)(ctx->sample0 + i));
    float *mask = l->scratch + (size_t)i * k;
    const float *xs = x + (size_t)i * k;
    float *ys = y + (size_t)i * k;
    for (size_t j = 0; j < k; j++) {
      mask[j] = nn_rng_uniform(&r) < p ? 0.0f : scale;
      ys[j] = xs[j] * mask[j];
    }
  }
}

/* dx [n, k] = dy * mask (training) or dy (evaluation). */
static void dropout_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  (void)x;
  (void)y;
  if (!dx) return;
  size_t total = (size_t)n * nn_shape_count(&l->in);
  if (!ctx->training || opts(l)->rate <= 0.0) {
    if (dx != dy) memcpy(dx, dy, total * sizeof *dx);
    return;
  }
  for (size_t j = 0; j < total; j++) dx[j] = dy[j] * l->scratch[j];
}

const nn_layer_ops nn_layer_dropout = {
    .type = "dropout",
    .help = "inverted dropout: zero each element with probability rate in training, scale the "
            "rest by 1/(1-rate); identity in evaluation",
    .keys = dropout_keys,
    .build = dropout_build,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
