/* activations.c: the elementwise activation layers, one registry entry each.
 *
 * Every type here keeps the input shape, has no parameters, and maps each
 * element independently; forward writes y [n, k] from x [n, k], backward
 * writes dx [n, k] = dy * f'(x) (nothing when dx is NULL). Definitions:
 *   relu          max(0, x)                       f'(0) taken as 0
 *   leaky_relu    x > 0 ? x : alpha x             alpha default 0.01
 *   elu           x > 0 ? x : alpha (e^x - 1)     alpha default 1.0
 *   selu          lambda * elu_alpha(x), lambda = 1.0507009873554805,
 *                 alpha = 1.6732632423543772 (Klambauer et al. 2017)
 *   softplus      log(1 + e^x), computed without overflow
 *   softsign      x / (1 + |x|)
 *   tanh, sigmoid the usual; sigmoid computed without overflow
 *   hard_sigmoid  clip(0.2 x + 0.5, 0, 1): the Keras 2 definition, not
 *                 PyTorch's relu6(x + 3) / 6; f' = 0.2 inside (-2.5, 2.5)
 * Derivatives use y where that is cheaper (tanh, sigmoid, elu).
 *
 * One loop per kind, selected by a switch on a compile-time constant in each
 * type's small wrapper, so the compiler can vectorize each loop. */
#include <math.h>
#include <stddef.h>

#include "core/layer.h"

typedef enum act_kind {
  ACT_RELU,
  ACT_LEAKY_RELU,
  ACT_ELU,
  ACT_SELU,
  ACT_SOFTPLUS,
  ACT_SOFTSIGN,
  ACT_TANH,
  ACT_SIGMOID,
  ACT_HARD_SIGMOID,
} act_kind;

#define SELU_LAMBDA 1.0507009873554804934193349852946
#define SELU_ALPHA 1.6732632423543772848170429916717

/* the options of leaky_relu and elu (nn_layer_cfg.opts); the other
 * activations have none, and read alpha as 0 */
typedef struct act_opts {
  double alpha; /* leaky_relu: negative slope; elu: -alpha is the limit below */
} act_opts;
NN_LAYER_OPTS_FIT(act_opts);

static const act_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const act_opts);
}

static const nn_key leaky_keys[] = {
    {"alpha", NN_KEY_FLOAT, offsetof(act_opts, alpha), sizeof(double), 0, 1e6, "0.01",
     NULL, 0, "slope for negative inputs", 0},
    {0},
};

static const nn_key elu_keys[] = {
    {"alpha", NN_KEY_FLOAT, offsetof(act_opts, alpha), sizeof(double), 0, 1e6, "1.0",
     NULL, NN_KEY_MIN_EXCLUSIVE, "value approached for large negative inputs is -alpha", 0},
    {0},
};

static const nn_key no_keys[] = {{0}};

static int act_build(nn_layer *l, nn_error *err) {
  if (!isfinite(opts(l)->alpha))
    return nn_error_set(err, NN_ESCHEMA, "alpha must be finite");
  l->out = l->in;
  if (nn_blk_fits(&l->in)) l->blk_caps = NN_BLK_SAME; /* elementwise: any layout */
  return 0;
}

static float sigmoidf(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

/* x, y [m] with m = n * features. */
static void act_forward(act_kind kind, float alpha, const float *x, float *y, size_t m) {
  switch (kind) {
  case ACT_RELU:
    for (size_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    break;
  case ACT_LEAKY_RELU:
    for (size_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
    break;
  case ACT_ELU:
    for (size_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * expm1f(x[i]);
    break;
  case ACT_SELU: {
    const float lam = (float)SELU_LAMBDA, la = (float)(SELU_LAMBDA * SELU_ALPHA);
    for (size_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? lam * x[i] : la * expm1f(x[i]);
    break;
  }
  case ACT_SOFTPLUS:
    /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|) */
    for (size_t i = 0; i < m; i++)
      y[i] = (x[i] > 0.0f ? x[i] : 0.0f) + log1pf(expf(-fabsf(x[i])));
    break;
  case ACT_SOFTSIGN:
    for (size_t i = 0; i < m; i++) y[i] = x[i] / (1.0f + fabsf(x[i]));
    break;
  case ACT_TANH:
    for (size_t i = 0; i < m; i++) y[i] = tanhf(x[i]);
    break;
  case ACT_SIGMOID:
    for (size_t i = 0; i < m; i++) y[i] = sigmoidf(x[i]);
    break;
  case ACT_HARD_SIGMOID:
    for (size_t i = 0; i < m; i++) {
      float v = 0.2f * x[i] + 0.5f;
      y[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    break;
  }
}

/* x, y, dy, dx [m]: dx = dy * f'(x). */
static void act_backward(act_kind kind, float alpha, const float *x, const float *y,
                         const float *dy, float *dx, size_t m) {
  switch (kind) {
  case ACT_RELU:
    for (size_t i = 0; i < m; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
    break;
  case ACT_LEAKY_RELU:
    for (size_t i = 0; i < m; i++) dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
    break;
  case ACT_ELU:
    /* for x <= 0: d/dx alpha (e^x - 1) = alpha e^x = y + alpha */
    for (size_t i = 0; i < m; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * (y[i] + alpha);
    break;
  case ACT_SELU: {
    const float lam = (float)SELU_LAMBDA, la = (float)(SELU_LAMBDA * SELU_ALPHA);
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * (x[i] > 0.0f ? lam : la * expf(x[i]));
    break;
  }
  case ACT_SOFTPLUS:
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * sigmoidf(x[i]);
    break;
  case ACT_SOFTSIGN:
    for (size_t i = 0; i < m; i++) {
      float d = 1.0f + fabsf(x[i]);
      dx[i] = dy[i] / (d * d);
    }
    break;
  case ACT_TANH:
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
    break;
  case ACT_SIGMOID:
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
    break;
  case ACT_HARD_SIGMOID:
    for (size_t i = 0; i < m; i++) dx[i] = (x[i] > -2.5f && x[i] < 2.5f) ? 0.2f * dy[i] : 0.0f;
    break;
  }
}

/* One registry entry per kind: wrappers that fix the kind at compile time. */
#define NN__ACT(name, KIND, keys_, help_)                                          \
  static void name##_forward(nn_layer *l, const float *x, float *y, int n,         \
                             const nn_run_ctx *ctx) {                              \
    (void)ctx;                                                                     \
    act_forward(KIND, (float)opts(l)->alpha, x, y, (size_t)n * nn_shape_count(&l->in)); \
  }                                                                                \
  static void name##_backward(nn_layer *l, const float *x, const float *y,         \
                              const float *dy, float *dx, int n,                   \
                              const nn_run_ctx *ctx) {                             \
    (void)ctx;                                                                     \
    if (dx)                                                                        \
      act_backward(KIND, (float)opts(l)->alpha, x, y, dy, dx,                        \
                   (size_t)n * nn_shape_count(&l->in));                            \
  }                                                                                \
  const nn_layer_ops nn_layer_##name = {                                           \
      .type = #name,                                                               \
      .help = help_,                                                               \
      .keys = keys_,                                                               \
      .build = act_build,                                                          \
      .forward = name##_forward,                                                   \
      .backward = name##_backward,                                                 \
  };

NN__ACT(relu, ACT_RELU, no_keys, "max(0, x), elementwise")
NN__ACT(leaky_relu, ACT_LEAKY_RELU, leaky_keys, "x > 0 ? x : alpha x, elementwise")
NN__ACT(elu, ACT_ELU, elu_keys, "x > 0 ? x : alpha (exp(x) - 1), elementwise")
NN__ACT(selu, ACT_SELU, no_keys, "scaled elu with the self-normalizing constants")
NN__ACT(softplus, ACT_SOFTPLUS, no_keys, "log(1 + exp(x)), elementwise")
NN__ACT(softsign, ACT_SOFTSIGN, no_keys, "x / (1 + |x|), elementwise")
NN__ACT(tanh, ACT_TANH, no_keys, "hyperbolic tangent, elementwise")
NN__ACT(sigmoid, ACT_SIGMOID, no_keys, "1 / (1 + exp(-x)), elementwise")
NN__ACT(hard_sigmoid, ACT_HARD_SIGMOID, no_keys,
        "clip(0.2 x + 0.5, 0, 1) (Keras 2 definition), elementwise")
