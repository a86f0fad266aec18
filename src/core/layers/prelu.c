/* prelu.c: parametric ReLU (PyTorch's nn.PReLU): y = x for x > 0, a * x
 * otherwise, with learned slopes a.
 *
 * per_channel = false (default, PyTorch's num_parameters=1): one slope,
 *   weight [1], shared by every element.
 * per_channel = true: one slope per channel, weight [C], where C = dim[0]
 *   of the input: the channels of a [C, H, W] image, the features of an [F]
 *   vector (PyTorch's num_parameters=C; its channel is also dim 1 of NCHW).
 * The slopes start at `alpha` (0.25, PyTorch's default). No weight decay is
 * special-cased here: l2 applies to `weight` like any layer's weights.
 * Elements are [n, C, S] with S the product of the dims after the first. */
#include <stddef.h>
#include <string.h>

#include "core/layer.h"

/* prelu's options (nn_layer_cfg.opts) */
typedef struct prelu_opts {
  double alpha;    /* initial slope */
  int per_channel; /* one slope per channel (else one in all) */
} prelu_opts;
NN_LAYER_OPTS_FIT(prelu_opts);

static const prelu_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const prelu_opts);
}

static const nn_key prelu_keys[] = {
    {"alpha", NN_KEY_FLOAT, offsetof(prelu_opts, alpha), sizeof(double), -1e6, 1e6, "0.25",
     NULL, 0, "initial value of the slopes for negative inputs", 0},
    {"per_channel", NN_KEY_BOOL, offsetof(prelu_opts, per_channel), sizeof(int), 0, 1,
     "false", NULL, 0,
     "one slope per channel (dim 0 of the input: channels of [C, H, W], features of [F]) "
     "instead of one for all", 0},
    {0},
};

static int prelu_build(nn_layer *l, nn_error *err) {
  if (l->in.ndim < 1) return nn_error_set(err, NN_ESHAPE, "input has no dimensions");
  l->out = l->in;
  nn_shape ws = {1, {opts(l)->per_channel ? l->in.dim[0] : 1}};
  int rc = nn_layer_add_param(l, "weight", &ws, NN_INIT_CONSTANT, 0, 0, err);
  if (rc) return rc;
  l->pspec[l->nparams - 1].value = (float)opts(l)->alpha;
  return 0;
}

/* Channels and elements per channel of one sample. */
static void geometry(const nn_layer *l, size_t *c, size_t *s) {
  size_t k = nn_shape_count(&l->in);
  *c = (size_t)l->in.dim[0];
  *s = *c ? k / *c : 0;
}

/* x, y [n, C, S]: y = x > 0 ? x : a[c] * x (a[0] for all when not per channel). */
static void prelu_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  (void)ctx;
  size_t c, s;
  geometry(l, &c, &s);
  const float *a = l->param[0];
  int per = opts(l)->per_channel;
  for (int i = 0; i < n; i++)
    for (size_t ch = 0; ch < c; ch++) {
      float ac = a[per ? ch : 0];
      size_t base = ((size_t)i * c + ch) * s;
      for (size_t j = 0; j < s; j++) {
        float v = x[base + j];
        y[base + j] = v > 0.0f ? v : ac * v;
      }
    }
}

/* dx = dy * (x > 0 ? 1 : a); da[c] += sum over x <= 0 of dy * x. */
static void prelu_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                           float *dx, int n, const nn_run_ctx *ctx) {
  (void)y;
  size_t c, s;
  int pg = nn_layer_param_grads(l, ctx);
  if (!pg && !dx) return;
  geometry(l, &c, &s);
  const float *a = l->param[0];
  float *da = l->grad[0];
  int per = opts(l)->per_channel;
  for (size_t ch = 0; ch < c; ch++) {
    float ac = a[per ? ch : 0];
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * c + ch) * s;
      for (size_t j = 0; j < s; j++) {
        float v = x[base + j], g = dy[base + j];
        if (v > 0.0f) {
          if (dx) dx[base + j] = g;
        } else {
          acc += (double)g * v;
          if (dx) dx[base + j] = ac * g;
        }
      }
    }
    if (pg) da[per ? ch : 0] += (float)acc;
  }
}

const nn_layer_ops nn_layer_prelu = {
    .type = "prelu",
    .help = "parametric ReLU: y = x > 0 ? x : a x with learned slopes a, weight [1] or [C] "
            "(per_channel)",
    .keys = prelu_keys,
    .build = prelu_build,
    .forward = prelu_forward,
    .backward = prelu_backward,
};
