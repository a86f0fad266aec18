/* test_core_model.c: the model's arenas, naming and activation expansion,
 * initialization (determinism and the He/Glorot statistics), the backward
 * ready-callback contract, batching, and build-time errors. */
#include <stdint.h>

#include "core/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "test.h"
#include "gradcheck_assert.h"


static nn_layer_cfg dense(int units, int bias, const char *act) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", units);
  cfg_set_bool(&c, "use_bias", bias);
  if (act) snprintf(c.activation, sizeof c.activation, "%s", act);
  return c;
}

/* in [5] -> dense0(4, relu) -> dense1(3, no bias) -> dense2(2) */
static int build_mlp(nn_model *m, int max_batch) {
  nn_layer_cfg c[3] = {dense(4, 1, "relu"), dense(3, 0, NULL), dense(2, 1, NULL)};
  nn_shape in = {1, {5}};
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, &in, c, 3, max_batch, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  return rc;
}

static void test_arena_layout(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 4));
  ASSERT_EQ_INT(m.nlayers, 4); /* dense0, dense0_relu, dense1, dense2 */
  ASSERT_STR_EQ(m.layers[0].cfg.name, "dense0");
  ASSERT_STR_EQ(m.layers[1].cfg.name, "dense0_relu");
  ASSERT_STR_EQ(m.layers[1].cfg.type, "relu");
  ASSERT_STR_EQ(m.layers[2].cfg.name, "dense1");
  ASSERT_STR_EQ(m.layers[3].cfg.name, "dense2");
  ASSERT_EQ_INT(m.layers[1].src_index, 0);
  ASSERT_EQ_INT(m.layers[3].src_index, 2);
  ASSERT_EQ_INT(m.out.ndim, 1);
  ASSERT_EQ_INT(m.out.dim[0], 2);
  ASSERT_EQ_INT(m.nparams, 20 + 4 + 12 + 6 + 2);
  ASSERT_EQ_INT(m.ntensors, 5);

  static const struct {
    const char *layer, *name;
    int ndim, d0, d1;
    size_t off;
  } want[] = {{"dense0", "weight", 2, 4, 5, 0},
              {"dense0", "bias", 1, 4, 0, 20},
              {"dense1", "weight", 2, 3, 4, 24},
              {"dense2", "weight", 2, 2, 3, 36},
              {"dense2", "bias", 1, 2, 0, 42}};
  /* tensors table in layer order, each tensor right after the previous */
  size_t next = 0;
  for (int i = 0; i < m.ntensors; i++) {
    const nn_tensor_ref *r = &m.tensors[i];
    ASSERT_EQ_INT(r->is_buffer, 0);
    ASSERT_EQ_INT(r->offset, next);
    ASSERT_EQ_INT(r->count, nn_shape_count(&r->shape));
    next += r->count;
  }
  ASSERT_EQ_INT(next, m.nparams);
  int i0 = nn_model_find_tensor(&m, "dense0", "weight");
  ASSERT_TRUE(i0 >= 0);
  ASSERT_EQ_INT(m.tensors[i0].shape.ndim, 2);
  ASSERT_EQ_INT(m.tensors[i0].shape.dim[0], 4); /* [out, in] */
  ASSERT_EQ_INT(m.tensors[i0].shape.dim[1], 5);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    int ti = nn_model_find_tensor(&m, want[i].layer, want[i].name);
    ASSERT_TRUE(ti >= 0);
    const nn_tensor_ref *r = &m.tensors[ti];
    ASSERT_EQ_INT(r->shape.ndim, want[i].ndim);
    ASSERT_EQ_INT(r->shape.dim[0], want[i].d0);
    if (want[i].ndim == 2) ASSERT_EQ_INT(r->shape.dim[1], want[i].d1);
    ASSERT_EQ_INT(r->offset, want[i].off);
  }
  ASSERT_EQ_INT(nn_model_find_tensor(&m, "dense1", "bias"), -1);
  ASSERT_EQ_INT(nn_model_find_tensor(&m, "dense0_relu", "weight"), -1);

  /* layer views point into the arenas at the table's offsets; ranges are
   * contiguous and in layer order */
  ASSERT_TRUE(m.layers[0].param[0] == m.params + 0);
  ASSERT_TRUE(m.layers[0].param[1] == m.params + 20);
  ASSERT_TRUE(m.layers[0].grad[1] == m.grads + 20);
  ASSERT_TRUE(m.layers[2].param[0] == m.params + 24);
  ASSERT_TRUE(m.layers[3].grad[0] == m.grads + 36);
  size_t expect = 0;
  for (int i = 0; i < m.nlayers; i++) {
    size_t off, cnt;
    nn_model_layer_range(&m, i, &off, &cnt);
    ASSERT_EQ_INT(off, expect);
    if (m.layers[i].nparams) ASSERT_TRUE(m.layers[i].param[0] == m.params + off);
    expect += cnt;
  }
  ASSERT_EQ_INT(expect, m.nparams);
  size_t off1, cnt1;
  nn_model_layer_range(&m, 1, &off1, &cnt1);
  ASSERT_EQ_INT(cnt1, 0); /* the relu has no parameters */
  nn_model_free(&m);
}

static void test_explicit_names_and_activation_expansion(void) {
  nn_layer_cfg c[3] = {cfg_of("flatten"), dense(3, 1, "softmax"), dense(2, 1, "none")};
  snprintf(c[1].name, sizeof c[1].name, "head");
  nn_shape in = {3, {1, 2, 2}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 3, 2, &e));
  ASSERT_EQ_INT(m.nlayers, 4);
  ASSERT_STR_EQ(m.layers[0].cfg.name, "flatten0");
  ASSERT_STR_EQ(m.layers[1].cfg.name, "head");
  ASSERT_STR_EQ(m.layers[2].cfg.name, "head_softmax");
  ASSERT_STR_EQ(m.layers[3].cfg.name, "dense2");
  ASSERT_EQ_INT(m.layers[1].in.ndim, 1);
  ASSERT_EQ_INT(m.layers[1].in.dim[0], 4);
  ASSERT_TRUE(nn_model_find_tensor(&m, "head", "weight") >= 0);
  nn_model_free(&m);
}

static void test_init_determinism(void) {
  nn_model a, b;
  ASSERT_OK(build_mlp(&a, 2));
  ASSERT_OK(build_mlp(&b, 2));
  for (size_t i = 0; i < a.nparams; i++) ASSERT_TRUE(a.params[i] == 0.0f); /* zero until init */
  nn_model_init_params(&a, 42);
  for (size_t i = 0; i < b.nparams; i++) b.params[i] = 7.0f; /* prior state must not matter */
  nn_model_init_params(&b, 42);
  ASSERT_TRUE(memcmp(a.params, b.params, a.nparams * sizeof(float)) == 0);
  /* biases start at zero, weights do not */
  for (int i = 0; i < 4; i++) ASSERT_TRUE(a.layers[0].param[1][i] == 0.0f);
  int nonzero = 0;
  for (int i = 0; i < 20; i++) nonzero += a.layers[0].param[0][i] != 0.0f;
  ASSERT_EQ_INT(nonzero, 20);
  /* different seed: different weights */
  nn_model_init_params(&b, 43);
  int differ = 0;
  for (size_t i = 0; i < 20; i++) differ += a.params[i] != b.params[i];
  ASSERT_TRUE(differ >= 18);
  /* layers with the same shape draw different numbers (keyed by layer index) */
  nn_layer_cfg c[2] = {dense(4, 0, NULL), dense(4, 0, NULL)};
  nn_shape in = {1, {4}};
  nn_model s;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&s, &in, c, 2, 1, &e));
  nn_model_init_params(&s, 42);
  ASSERT_TRUE(memcmp(s.layers[0].param[0], s.layers[1].param[0], 16 * sizeof(float)) != 0);
  nn_model_free(&s);
  nn_model_free(&a);
  nn_model_free(&b);
}

/* Mean and variance of a large layer's weights for each scaled initializer:
 * variance within 10% of the target, |mean| small, uniform ones bounded. */
static void test_init_statistics(void) {
  static const struct {
    const char *init;
    int uniform;
    double var; /* fan_in = 600, fan_out = 400 */
  } cases[] = {{"he_normal", 0, 2.0 / 600},
               {"he_uniform", 1, 2.0 / 600},
               {"glorot_normal", 0, 2.0 / 1000},
               {"glorot_uniform", 1, 2.0 / 1000}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    nn_layer_cfg c = dense(400, 1, NULL);
    cfg_set(&c, "init", "\"%s\"", cases[k].init);
    nn_shape in = {1, {600}};
    nn_model m;
    nn_error e;
    nn_error_clear(&e);
    ASSERT_OK(nn_model_build(&m, &in, &c, 1, 1, &e));
    nn_model_init_params(&m, 1234 + k);
    const float *w = m.layers[0].param[0];
    size_t n = 400 * 600;
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
      s += w[i];
      s2 += (double)w[i] * w[i];
      if (fabs(w[i]) > mx) mx = fabs(w[i]);
    }
    double mean = s / n, var = s2 / n - mean * mean;
    fprintf(stderr, "  %s: mean %.2e var %.4e (target %.4e) max %.4f\n", cases[k].init,
            mean, var, cases[k].var, mx);
    ASSERT_NEAR(var, cases[k].var, 0.1 * cases[k].var);
    ASSERT_NEAR(mean, 0.0, 0.05 * sqrt(cases[k].var));
    double limit = sqrt(3.0 * cases[k].var);
    if (cases[k].uniform) {
      ASSERT_TRUE(mx <= limit * (1 + 1e-6));
      ASSERT_TRUE(mx > 0.99 * limit);
    } else {
      ASSERT_TRUE(mx > limit); /* a normal reaches beyond the uniform's bound */
    }
    for (int i = 0; i < 400; i++) ASSERT_TRUE(m.layers[0].param[1][i] == 0.0f);
    nn_model_free(&m);
  }
}

typedef struct ready_log {
  int calls;
  size_t off[16], cnt[16];
  float snap[16][64]; /* grads of the range as seen during the callback */
  const nn_model *m;
} ready_log;

static void on_ready(void *user, size_t offset, size_t count) {
  ready_log *r = user;
  if (r->calls < 16) {
    r->off[r->calls] = offset;
    r->cnt[r->calls] = count;
    for (size_t i = 0; i < count && i < 64; i++) r->snap[r->calls][i] = r->m->grads[offset + i];
  }
  r->calls++;
}

static void fill(float *v, size_t n, uint64_t seed) {
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_TEST, 0, 0, 0);
  for (size_t i = 0; i < n; i++) v[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

static void test_ready_callback(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 3));
  nn_model_init_params(&m, 5);
  float x[15], dout[6];
  fill(x, 15, 1);
  fill(dout, 6, 2);
  nn_run_ctx ctx = {0};
  ready_log log;
  memset(&log, 0, sizeof log);
  log.m = &m;
  nn_model_zero_grad(&m);
  nn_model_forward(&m, x, 3, &ctx);
  nn_model_backward(&m, x, dout, 3, &ctx, on_ready, &log);
  /* three layers with parameters, last to first, covering the arena once */
  ASSERT_EQ_INT(log.calls, 3);
  ASSERT_EQ_INT(log.off[0], 36);
  ASSERT_EQ_INT(log.cnt[0], 8);
  ASSERT_EQ_INT(log.off[1], 24);
  ASSERT_EQ_INT(log.cnt[1], 12);
  ASSERT_EQ_INT(log.off[2], 0);
  ASSERT_EQ_INT(log.cnt[2], 24);
  size_t end = m.nparams;
  for (int i = 0; i < log.calls; i++) {
    ASSERT_EQ_INT(log.off[i] + log.cnt[i], end);
    end = log.off[i];
  }
  ASSERT_EQ_INT(end, 0);
  /* the ranges were final when announced */
  for (int i = 0; i < log.calls; i++)
    for (size_t j = 0; j < log.cnt[i]; j++)
      ASSERT_TRUE(log.snap[i][j] == m.grads[log.off[i] + j]);
  /* gradients are non-trivial */
  int nz = 0;
  for (size_t i = 0; i < m.nparams; i++) nz += m.grads[i] != 0.0f;
  ASSERT_TRUE(nz > (int)m.nparams / 2);
  nn_model_free(&m);
}

/* backward adds into grads; zero_grad clears them. */
static void test_grad_accumulation(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 3));
  nn_model_init_params(&m, 6);
  float x[15], dout[6], once[64];
  fill(x, 15, 3);
  fill(dout, 6, 4);
  nn_run_ctx ctx = {0};
  nn_model_zero_grad(&m);
  nn_model_forward(&m, x, 3, &ctx);
  nn_model_backward(&m, x, dout, 3, &ctx, NULL, NULL);
  memcpy(once, m.grads, m.nparams * sizeof(float));
  nn_model_forward(&m, x, 3, &ctx);
  nn_model_backward(&m, x, dout, 3, &ctx, NULL, NULL);
  for (size_t i = 0; i < m.nparams; i++) ASSERT_NEAR(m.grads[i], 2.0f * once[i], 1e-6);
  nn_model_zero_grad(&m);
  for (size_t i = 0; i < m.nparams; i++) ASSERT_TRUE(m.grads[i] == 0.0f);
  nn_model_free(&m);
}

/* A batch gives the same outputs and the same summed gradients as its
 * samples one at a time (no per-sample state leaks across the batch). */
static void test_batch_equals_single(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 4));
  nn_model_init_params(&m, 9);
  float x[20], dout[8], y[8], gsum[64];
  fill(x, 20, 5);
  fill(dout, 8, 6);
  nn_run_ctx ctx = {0};
  memset(gsum, 0, sizeof gsum);
  for (int s = 0; s < 4; s++) {
    nn_model_zero_grad(&m);
    const float *ys = nn_model_forward(&m, x + 5 * s, 1, &ctx);
    memcpy(y + 2 * s, ys, 2 * sizeof(float));
    nn_model_backward(&m, x + 5 * s, dout + 2 * s, 1, &ctx, NULL, NULL);
    for (size_t i = 0; i < m.nparams; i++) gsum[i] += m.grads[i];
  }
  nn_model_zero_grad(&m);
  const float *yb = nn_model_forward(&m, x, 4, &ctx);
  for (int i = 0; i < 8; i++) ASSERT_NEAR(yb[i], y[i], 1e-5);
  nn_model_backward(&m, x, dout, 4, &ctx, NULL, NULL);
  for (size_t i = 0; i < m.nparams; i++) ASSERT_NEAR(m.grads[i], gsum[i], 1e-5);
  nn_model_free(&m);
}

/* Build must fail with `code` and a message containing `want`. */
static int expect_build_error(const nn_shape *in, const nn_layer_cfg *c, int n, int code,
                              const char *want) {
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(&m, in, c, n, 4, &e);
  if (rc != code || !strstr(e.msg, want)) {
    fprintf(stderr, "  got %d \"%s\", want %d containing \"%s\"\n", rc, e.msg, code, want);
    if (rc == 0) nn_model_free(&m);
    return 0;
  }
  /* after a failed build the model is empty and freeing it is harmless */
  if (m.nlayers != 0 || m.params != NULL) return 0;
  nn_model_free(&m);
  return 1;
}

static void test_build_errors(void) {
  nn_shape in = {1, {8}};
  nn_layer_cfg c[4] = {dense(4, 1, NULL), dense(3, 1, NULL), cfg_of("relu"), dense(0, 1, NULL)};
  ASSERT_TRUE(expect_build_error(&in, c, 4, NN_ESCHEMA,
                                 "layer 3 'dense3' (dense): units must be >= 1"));

  /* duplicate names name both positions */
  nn_layer_cfg d[3] = {dense(4, 1, NULL), cfg_of("relu"), dense(3, 1, NULL)};
  snprintf(d[0].name, sizeof d[0].name, "fc");
  snprintf(d[2].name, sizeof d[2].name, "fc");
  ASSERT_TRUE(expect_build_error(&in, d, 3, NN_ESCHEMA,
                                 "layer 2 'fc' (dense): name already used by layer 0"));
  /* an expanded activation's name collides with a user name */
  nn_layer_cfg d2[2] = {dense(4, 1, "relu"), cfg_of("relu")};
  snprintf(d2[1].name, sizeof d2[1].name, "dense0_relu");
  ASSERT_TRUE(expect_build_error(&in, d2, 2, NN_ESCHEMA, "name already used by layer 0"));

  /* unknown type lists the known ones */
  nn_layer_cfg u[2] = {dense(4, 1, NULL), cfg_of("relu")};
  snprintf(u[1].type, sizeof u[1].type, "dens");
  ASSERT_TRUE(expect_build_error(&in, u, 2, NN_ESCHEMA, "layer 1 'dens1': unknown layer type 'dens'"));
  ASSERT_TRUE(expect_build_error(&in, u, 2, NN_ESCHEMA, "dense|flatten|relu"));

  nn_layer_cfg a = dense(4, 1, "rellu");
  ASSERT_TRUE(expect_build_error(&in, &a, 1, NN_ESCHEMA, "activation 'rellu' is not one of"));
  nn_layer_cfg b = dense(4, 1, NULL);
  cfg_set(&b, "init", "\"xavier\"");
  ASSERT_TRUE(expect_build_error(&in, &b, 1, NN_ESCHEMA, "init 'xavier' is not one of"));

  nn_shape empty = {0, {0}};
  ASSERT_TRUE(expect_build_error(&empty, &c[0], 1, NN_ESHAPE, "input shape [] is empty"));
  nn_shape zero = {2, {3, 0}};
  ASSERT_TRUE(expect_build_error(&zero, &c[0], 1, NN_ESHAPE, "[3, 0]"));
  ASSERT_TRUE(expect_build_error(&in, c, 0, NN_ESCHEMA, "no layers"));

  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_build(&m, &in, c, 1, 0, &e), NN_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "max_batch");
  /* the error record names the layer */
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_build(&m, &in, c, 4, 4, &e), NN_ESCHEMA);
  ASSERT_STR_EQ(e.where, "dense3");
}

/* Skipping layers below the first parameterized one changes nothing, and
 * backward_dx gives the input gradient when asked. */
static void test_backward_dx_and_skip(void) {
  nn_layer_cfg c[3] = {cfg_of("tanh"), dense(3, 1, NULL), cfg_of("sigmoid")};
  nn_shape in = {1, {4}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 3, 2, &e));
  nn_model_init_params(&m, 11);
  float x[8], dout[6], dx[8], g1[16];
  fill(x, 8, 7);
  fill(dout, 6, 8);
  nn_run_ctx ctx = {0};
  nn_model_zero_grad(&m);
  nn_model_forward(&m, x, 2, &ctx);
  nn_model_backward(&m, x, dout, 2, &ctx, NULL, NULL);
  memcpy(g1, m.grads, m.nparams * sizeof(float));
  nn_model_zero_grad(&m);
  for (int i = 0; i < 8; i++) dx[i] = NAN;
  nn_model_backward_dx(&m, x, dout, dx, 2, &ctx, NULL, NULL);
  ASSERT_TRUE(memcmp(g1, m.grads, m.nparams * sizeof(float)) == 0);
  for (int i = 0; i < 8; i++) ASSERT_TRUE(isfinite(dx[i]));
  /* dx = W^T dz * (1 - tanh^2): check one sample by hand */
  const float *w = m.layers[1].param[0];
  const float *y2 = m.act + m.act_off[2]; /* sigmoid output */
  const float *t = m.act + m.act_off[0];  /* tanh output */
  for (int s = 0; s < 2; s++)
    for (int j = 0; j < 4; j++) {
      double acc = 0;
      for (int k = 0; k < 3; k++) {
        double dz = dout[s * 3 + k] * y2[s * 3 + k] * (1 - y2[s * 3 + k]);
        acc += dz * w[k * 4 + j];
      }
      acc *= 1 - (double)t[s * 4 + j] * t[s * 4 + j];
      ASSERT_NEAR(dx[s * 4 + j], acc, 1e-5);
    }
  nn_model_free(&m);
}

TEST_MAIN(TEST(test_arena_layout), TEST(test_explicit_names_and_activation_expansion),
          TEST(test_init_determinism), TEST(test_init_statistics), TEST(test_ready_callback),
          TEST(test_grad_accumulation), TEST(test_batch_equals_single), TEST(test_build_errors),
          TEST(test_backward_dx_and_skip))
