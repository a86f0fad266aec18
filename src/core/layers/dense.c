/* dense.c: the fully connected layer, y = x W^T + b.
 *
 * Any input shape is treated as flat: in = nn_shape_count(input), and the
 * output shape is [units]. With per_timestep = true the input must be a
 * sequence [T, C] and the layer maps each timestep by the same weights, as
 * PyTorch's nn.Linear does on the last axis (Keras: TimeDistributed(Dense)):
 * in = C, output [T, units]. The batch is then simply n*T rows of C
 * features (the layout is time-major within a sample), so both forms are the
 * same code over `rows` = n * (count(input) / in); the default (rows = n) is
 * exactly what dense always computed. Parameters use PyTorch's layout: weight
 * [out, in], bias [out]. Each of forward and backward is one or two sgemm
 * calls over the whole batch; there is no per-sample loop around BLAS.
 * ctx->lengths is ignored: steps past a sample's length are mapped too (the
 * per-timestep loss masks them).
 *
 * Initialization: weight defaults to glorot_uniform (as Keras does;
 * U(-sqrt(6/(in+out)), +)), chosen over PyTorch's kaiming_uniform(a=sqrt 5)
 * because it is one of the documented job-file choices; bias is zeros.
 * The `activation` key does not act here: nn_model_build expands a dense
 * layer with activation = "relu" into this layer followed by a relu layer. */
#include <stddef.h>
#include <string.h>

#include <cblas.h>

#include "core/layer.h"

/* dense's own options (nn_layer_cfg.opts) */
typedef struct dense_opts {
  int units;     /* output features */
  int use_bias;  /* 1 to add a bias */
  char init[24]; /* weight initializer name, "" = glorot_uniform */
  int per_timestep; /* 1: [T, C] -> [T, units], the same map at every timestep */
} dense_opts;
NN_LAYER_OPTS_FIT(dense_opts);

static const dense_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const dense_opts);
}

static const nn_key dense_keys[] = {
    {"units", NN_KEY_INT, offsetof(dense_opts, units), sizeof(int), 1, 1 << 24, NULL,
     NULL, NN_KEY_REQUIRED, "number of output features", 0},
    {"use_bias", NN_KEY_BOOL, offsetof(dense_opts, use_bias), sizeof(int), 0, 1, "true",
     NULL, 0, "add a learned bias to each output", 0},
    {"init", NN_KEY_ENUM, offsetof(dense_opts, init), sizeof(((dense_opts *)0)->init), 0,
     0, "\"glorot_uniform\"", NN_INIT_CHOICES, 0, "weight initializer (the bias starts at zero)", 0},
    {"per_timestep", NN_KEY_BOOL, offsetof(dense_opts, per_timestep), sizeof(int), 0, 1, "false",
     NULL, 0, "map each timestep of a [T, C] input by the same weights (PyTorch's nn.Linear on "
     "the last axis): output [T, units]; false: flatten the input", 0},
    {"activation", NN_KEY_ENUM, offsetof(nn_layer_cfg, activation),
     sizeof(((nn_layer_cfg *)0)->activation), 0, 0, "\"none\"", NN_ACTIVATION_CHOICES,
     NN_KEY_CFG, "activation layer added after this one, named <name>_<activation>", 0},
    {0},
};

static int dense_build(nn_layer *l, nn_error *err) {
  int in = (int)nn_shape_count(&l->in);
  int out = opts(l)->units;
  char shp[64];
  if (out < 1) return nn_error_set(err, NN_ESCHEMA, "units must be >= 1, got %d", out);
  if (in < 1) return nn_error_set(err, NN_ESHAPE, "input has no features");
  if (opts(l)->per_timestep) {
    if (l->in.ndim != 2)
      return nn_error_set(err, NN_ESHAPE, "per_timestep expects a [T, channels] input, got %s",
                          nn_shape_str(&l->in, shp, sizeof shp));
    in = l->in.dim[1];
  }
  int init = NN_INIT_GLOROT_UNIFORM;
  if (opts(l)->init[0]) {
    init = nn_init_parse(opts(l)->init);
    if (init < 0)
      return nn_error_set(err, NN_ESCHEMA, "init '%s' is not one of %s", opts(l)->init,
                          nn_init_choices);
  }
  if (opts(l)->per_timestep) {
    l->out.ndim = 2;
    l->out.dim[0] = l->in.dim[0];
    l->out.dim[1] = out;
  } else {
    l->out.ndim = 1;
    l->out.dim[0] = out;
  }
  nn_shape ws = {2, {out, in}};
  int rc = nn_layer_add_param(l, "weight", &ws, (nn_init_kind)init, in, out, err);
  if (rc) return rc;
  if (opts(l)->use_bias) {
    nn_shape bs = {1, {out}};
    rc = nn_layer_add_param(l, "bias", &bs, NN_INIT_ZEROS, in, out, err);
  }
  return rc;
}

/* Rows of `in` features in a batch of n: n, or n*T per timestep. */
static int dense_rows(const nn_layer *l, int n) {
  return n * (int)(nn_shape_count(&l->in) / (size_t)l->pspec[0].shape.dim[1]);
}

/* x [rows, in], y [rows, out]: y = x W^T (+ b broadcast over rows). */
static void dense_forward(nn_layer *l, const float *x, float *y, int n,
                          const nn_run_ctx *ctx) {
  int in = l->pspec[0].shape.dim[1], out = l->pspec[0].shape.dim[0];
  n = dense_rows(l, n);
  float beta = 0.0f;
  if (l->nparams > 1) {
    const float *b = l->param[1];
    for (int i = 0; i < n; i++) memcpy(y + (size_t)i * out, b, sizeof(float) * (size_t)out);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, l->param[0],
              in, beta, y, out);
}

/* dy [rows, out]: dW [out, in] += dy^T x; db [out] += column sums of dy;
 * dx [rows, in] = dy W (when dx is not NULL). */
static void dense_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                           float *dx, int n, const nn_run_ctx *ctx) {
  int in = l->pspec[0].shape.dim[1], out = l->pspec[0].shape.dim[0];
  n = dense_rows(l, n);
  int pg = nn_layer_param_grads(l, ctx);
  if (pg)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f,
                l->grad[0], in);
  if (pg && l->nparams > 1) {
    float *db = l->grad[1];
    for (int i = 0; i < n; i++) {
      const float *row = dy + (size_t)i * out;
      for (int j = 0; j < out; j++) db[j] += row[j];
    }
  }
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out,
                l->param[0], in, 0.0f, dx, in);
}

const nn_layer_ops nn_layer_dense = {
    .type = "dense",
    .help = "fully connected: y = x W^T + b, weight [out, in]; flattens its input, or maps "
            "each timestep of [T, C] (per_timestep)",
    .keys = dense_keys,
    .penalize_weight = 1,
    .build = dense_build,
    .forward = dense_forward,
    .backward = dense_backward,
};
