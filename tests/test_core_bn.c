/* test_core_bn.c: dropout, batch normalization and PReLU: gradient checks in
 * training and evaluation, running statistics against hand-computed values,
 * dropout mask determinism by (seed, step, sample) and its expectation. */
#include <stdint.h>

#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "test.h"
#include "gradcheck_assert.h"



static nn_gradcheck_opts opts_of(uint64_t seed, int n, int training) {
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = seed;
  o.n = n;
  o.training = training;
  o.x_lo = -2.0f;
  o.x_hi = 2.0f;
  o.nkinks = 1; /* prelu's corner */
  o.kinks[0] = 0.0;
  o.margin = 0.05;
  return o;
}

/* Build a one-layer model, or fail the test. */
#define BUILD1(m, cfg, inshape, maxb)                                        \
  do {                                                                       \
    nn_error be_;                                                            \
    nn_error_clear(&be_);                                                    \
    int brc_ = nn_model_build((m), (inshape), (cfg), 1, (maxb), &be_);       \
    if (brc_) fprintf(stderr, "build: %s\n", be_.msg);                       \
    ASSERT_OK(brc_);                                                         \
  } while (0)

/* ---- dropout -------------------------------------------------------------- */

static void test_dropout_grads(void) {
  nn_layer_cfg c = cfg_of("dropout");
  cfg_set(&c, "rate", "%.17g", 0.3);
  nn_shape in = {1, {6}};
  fprintf(stderr, "  training\n");
  nn_gradcheck_opts o = opts_of(1, 4, 1);
  CHECK_GRADS(&in, &c, 1, &o);
  fprintf(stderr, "  evaluation\n");
  o = opts_of(2, 4, 0);
  CHECK_GRADS(&in, &c, 1, &o);
  /* in a stack: dense -> dropout -> dense, training */
  nn_layer_cfg s[3] = {cfg_of("dense"), c, cfg_of("dense")};
  cfg_set(&s[0], "units", "%d", 5);
  cfg_set(&s[2], "units", "%d", 3);
  o = opts_of(3, 3, 1);
  CHECK_GRADS(&in, s, 3, &o);
}

/* Backward multiplies by the very mask forward drew; evaluation is the identity. */
static void test_dropout_mask_and_modes(void) {
  nn_layer_cfg c = cfg_of("dropout");
  cfg_set(&c, "rate", "%.17g", 0.5);
  nn_shape in = {3, {2, 3, 4}};
  enum { N = 3, K = 24 };
  nn_model m;
  BUILD1(&m, &c, &in, N);
  float x[N * K], dy[N * K], dx[N * K];
  for (int i = 0; i < N * K; i++) {
    x[i] = 1.0f + 0.01f * (float)i;
    dy[i] = 1.0f;
  }
  nn_run_ctx tr = {.training = 1, .seed = 42, .step = 7, .sample0 = 0};
  const float *y = nn_model_forward(&m, x, N, &tr);
  nn_model_backward_dx(&m, x, dy, dx, N, &tr, NULL, NULL);
  int zeros = 0;
  for (int i = 0; i < N * K; i++) {
    ASSERT_TRUE(dx[i] == 0.0f || dx[i] == 2.0f);
    ASSERT_NEAR(y[i], x[i] * dx[i], 1e-6); /* same mask both ways */
    zeros += dx[i] == 0.0f;
  }
  ASSERT_TRUE(zeros > 10 && zeros < N * K - 10);
  nn_run_ctx ev = {.training = 0, .seed = 42, .step = 7, .sample0 = 0};
  y = nn_model_forward(&m, x, N, &ev);
  nn_model_backward_dx(&m, x, dy, dx, N, &ev, NULL, NULL);
  for (int i = 0; i < N * K; i++) {
    ASSERT_TRUE(y[i] == x[i]);
    ASSERT_TRUE(dx[i] == 1.0f);
  }
  nn_model_free(&m);
}

/* The mask of a sample depends on (seed, step, global sample) only: a batch
 * of 4 equals two slices of 2 (two ranks), repeated calls agree (a resumed
 * run), and another step or seed draws another mask. */
static void test_dropout_determinism(void) {
  nn_layer_cfg c = cfg_of("dropout");
  cfg_set(&c, "rate", "%.17g", 0.4);
  nn_shape in = {1, {16}};
  enum { N = 4, K = 16 };
  nn_model m;
  BUILD1(&m, &c, &in, N);
  float x[N * K], full[N * K], part[N * K], again[N * K];
  for (int i = 0; i < N * K; i++) x[i] = 1.0f;
  nn_run_ctx ctx = {.training = 1, .seed = 5, .step = 3, .sample0 = 100};
  memcpy(full, nn_model_forward(&m, x, N, &ctx), sizeof full);
  nn_run_ctx a = ctx, b = ctx;
  b.sample0 = 102;
  memcpy(part, nn_model_forward(&m, x, 2, &a), 2 * K * sizeof(float));
  memcpy(part + 2 * K, nn_model_forward(&m, x + 2 * K, 2, &b), 2 * K * sizeof(float));
  for (int i = 0; i < N * K; i++) ASSERT_TRUE(full[i] == part[i]);
  memcpy(again, nn_model_forward(&m, x, N, &ctx), sizeof again);
  ASSERT_TRUE(memcmp(full, again, sizeof full) == 0);
  nn_run_ctx s2 = ctx, d2 = ctx;
  s2.step = 4;
  d2.seed = 6;
  ASSERT_TRUE(memcmp(full, nn_model_forward(&m, x, N, &s2), sizeof full) != 0);
  ASSERT_TRUE(memcmp(full, nn_model_forward(&m, x, N, &d2), sizeof full) != 0);
  /* samples differ from each other within a batch */
  ASSERT_TRUE(memcmp(full, full + K, K * sizeof(float)) != 0);
  nn_model_free(&m);
}

/* Inverted dropout keeps the expectation: the mean over many draws of
 * y = dropout(x) approaches x, and the zero fraction approaches the rate. */
static void test_dropout_expectation(void) {
  nn_layer_cfg c = cfg_of("dropout");
  cfg_set(&c, "rate", "%.17g", 0.25);
  enum { K = 4, N = 64, STEPS = 40 };
  nn_shape in = {1, {K}};
  nn_model m;
  BUILD1(&m, &c, &in, N);
  float x[N * K];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < K; j++) x[i * K + j] = (float)(j + 1);
  double sum[K] = {0}, zeros = 0;
  for (int s = 0; s < STEPS; s++) {
    nn_run_ctx ctx = {.training = 1, .seed = 9, .step = (uint64_t)s, .sample0 = 0};
    const float *y = nn_model_forward(&m, x, N, &ctx);
    for (int i = 0; i < N * K; i++) {
      sum[i % K] += y[i];
      zeros += y[i] == 0.0f;
    }
  }
  double draws = (double)N * STEPS; /* 2560 per feature: sd of the mean ~ 0.58 x / 50 */
  for (int j = 0; j < K; j++) ASSERT_NEAR(sum[j] / draws, (double)(j + 1), 0.05 * (j + 1));
  ASSERT_NEAR(zeros / (draws * K), 0.25, 0.02);
  nn_model_free(&m);
}

static void test_dropout_rate_checked(void) {
  nn_layer_cfg c = cfg_of("dropout");
  ASSERT_NEAR(cfg_num(&c, "rate"), 0.5, 0);
  cfg_set(&c, "rate", "%.17g", 1.0);
  nn_shape in = {1, {3}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_build(&m, &in, &c, 1, 2, &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "rate must be in [0, 1)");
  ASSERT_STR_CONTAINS(e.msg, "dropout0");
}

/* ---- batch normalization --------------------------------------------------- */

static void test_batchnorm_grads_1d(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  nn_shape in = {1, {4}};
  nn_gradcheck_opts o = opts_of(11, 5, 1);
  o.nkinks = 0;
  CHECK_GRADS(&in, &c, 1, &o);
  /* behind a dense layer (the usual place), with a loss that is not flat */
  nn_layer_cfg s[3] = {cfg_of("dense"), c, cfg_of("dense")};
  cfg_set(&s[0], "units", "%d", 3);
  cfg_set(&s[2], "units", "%d", 2);
  snprintf(s[2].activation, sizeof s[2].activation, "tanh");
  o = opts_of(12, 4, 1);
  o.nkinks = 0;
  CHECK_GRADS(&in, s, 3, &o);
}

static void test_batchnorm_grads_2d(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  nn_shape in = {3, {2, 2, 3}};
  nn_gradcheck_opts o = opts_of(13, 3, 1);
  o.nkinks = 0;
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_batchnorm_grads_eval(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  nn_shape in = {3, {2, 1, 3}};
  nn_gradcheck_opts o = opts_of(14, 3, 0);
  o.nkinks = 0;
  CHECK_GRADS(&in, &c, 1, &o);
  nn_shape in1 = {1, {5}};
  o = opts_of(15, 1, 0); /* one sample is fine in evaluation */
  o.nkinks = 0;
  CHECK_GRADS(&in1, &c, 1, &o);
}

/* BatchNorm1d on x = [[1, 2], [3, 4], [5, 9]]:
 *   feature 0: mean 3, biased var 8/3, unbiased 4
 *   feature 1: mean 5, biased var 26/3, unbiased 13
 * momentum 0.1 from (0, 1): running_mean = [0.3, 0.5], running_var = [1.3, 2.2];
 * a second call with momentum 0.1: mean = 0.9*0.3 + 0.1*3 = 0.57, var = 0.9*1.3 + 0.4 = 1.57. */
static void test_batchnorm_running_stats_1d(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  ASSERT_NEAR(cfg_num(&c, "momentum"), 0.1, 0);
  ASSERT_NEAR(cfg_num(&c, "eps"), 1e-5, 0);
  nn_shape in = {1, {2}};
  nn_model m;
  BUILD1(&m, &c, &in, 3);
  nn_model_init_params(&m, 1);
  int rm = nn_model_find_tensor(&m, "batchnorm0", "running_mean");
  int rv = nn_model_find_tensor(&m, "batchnorm0", "running_var");
  ASSERT_TRUE(rm >= 0 && rv >= 0);
  ASSERT_TRUE(m.tensors[rm].is_buffer && m.tensors[rv].is_buffer);
  ASSERT_EQ_INT(m.nbuffers, 4);
  ASSERT_EQ_INT(m.nparams, 4);
  const float *bm = m.buffers + m.tensors[rm].offset, *bv = m.buffers + m.tensors[rv].offset;
  ASSERT_NEAR(bm[0], 0, 0);
  ASSERT_NEAR(bv[0], 1, 0);
  /* gamma = [2, 1], beta = [0.5, 0] */
  m.layers[0].param[0][0] = 2.0f;
  m.layers[0].param[1][0] = 0.5f;
  float x[6] = {1, 2, 3, 4, 5, 9};
  nn_run_ctx tr = {.training = 1};
  const float *y = nn_model_forward(&m, x, 3, &tr);
  double s0 = sqrt(8.0 / 3.0 + 1e-5), s1 = sqrt(26.0 / 3.0 + 1e-5);
  ASSERT_NEAR(y[0], 2.0 * (1 - 3) / s0 + 0.5, 1e-5);
  ASSERT_NEAR(y[4], 2.0 * (5 - 3) / s0 + 0.5, 1e-5);
  ASSERT_NEAR(y[5], (9 - 5) / s1, 1e-5);
  ASSERT_NEAR(bm[0], 0.3, 1e-6);
  ASSERT_NEAR(bm[1], 0.5, 1e-6);
  ASSERT_NEAR(bv[0], 1.3, 1e-6);
  ASSERT_NEAR(bv[1], 2.2, 1e-6);
  nn_model_forward(&m, x, 3, &tr);
  ASSERT_NEAR(bm[0], 0.57, 1e-6);
  ASSERT_NEAR(bv[0], 1.57, 1e-6);
  /* evaluation uses the running statistics and does not change them */
  nn_run_ctx ev = {.training = 0};
  y = nn_model_forward(&m, x, 3, &ev);
  ASSERT_NEAR(y[0], 2.0 * (1 - 0.57) / sqrt(1.57 + 1e-5) + 0.5, 1e-5);
  ASSERT_NEAR(bm[0], 0.57, 1e-6);
  nn_model_free(&m);
}

/* BatchNorm2d, C = 2, [2, 1, 2], n = 2, momentum 0.5: channel 0 sees
 * {1, 2, 3, 6} (mean 3, unbiased var 14/3), channel 1 sees {0, 0, 4, 4}
 * (mean 2, unbiased 16/3). */
static void test_batchnorm_running_stats_2d(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  cfg_set(&c, "momentum", "%.17g", 0.5);
  nn_shape in = {3, {2, 1, 2}};
  nn_model m;
  BUILD1(&m, &c, &in, 2);
  nn_model_init_params(&m, 1);
  ASSERT_EQ_INT(m.tensors[nn_model_find_tensor(&m, "batchnorm0", "weight")].shape.dim[0], 2);
  float x[8] = {1, 2, 0, 0, 3, 6, 4, 4};
  nn_run_ctx tr = {.training = 1};
  const float *y = nn_model_forward(&m, x, 2, &tr);
  const float *bm = m.layers[0].buffer[0], *bv = m.layers[0].buffer[1];
  ASSERT_NEAR(bm[0], 1.5, 1e-6);
  ASSERT_NEAR(bm[1], 1.0, 1e-6);
  ASSERT_NEAR(bv[0], 0.5 + 0.5 * 14.0 / 3.0, 1e-6);
  ASSERT_NEAR(bv[1], 0.5 + 0.5 * 16.0 / 3.0, 1e-6);
  ASSERT_NEAR(y[1], (2 - 3) / sqrt(3.5 + 1e-5), 1e-5);
  ASSERT_NEAR(y[2], (0 - 2) / sqrt(4.0 + 1e-5), 1e-5);
  nn_model_free(&m);
  /* every buffer is a running statistic the trainer averages across ranks */
  size_t off, cnt;
  ASSERT_OK(nn_model_build(&m, &in, &c, 1, 2, NULL));
  nn_model_running_stats(&m, &off, &cnt);
  ASSERT_EQ_INT(off, 0);
  ASSERT_EQ_INT(cnt, m.nbuffers);
  ASSERT_EQ_INT(cnt, 4);
  nn_model_free(&m);
}

/* Planes big enough for the vectorized row reductions (14x14 = 12 blocks of 16
 * + 4), inputs far from zero (mean 1000, std 0.5: a naive sum of squares
 * would lose every digit), and the forward output and backward dx against
 * the formulas evaluated in double. */
static void test_batchnorm_large_offset(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  enum { C = 3, H = 14, W = 14, N = 5, S = H * W };
  nn_shape in = {3, {C, H, W}};
  nn_model m;
  BUILD1(&m, &c, &in, N);
  nn_model_init_params(&m, 1);
  float *gamma = m.layers[0].param[0], *beta = m.layers[0].param[1];
  for (int ch = 0; ch < C; ch++) gamma[ch] = 0.5f + ch, beta[ch] = 0.25f * ch;
  static float x[N * C * S], dy[N * C * S], dx[N * C * S];
  nn_rng g;
  nn_rng_init(&g, 7, NN_RNG_TEST, 3, 0, 0);
  for (int i = 0; i < N * C * S; i++) {
    x[i] = 1000.0f + (nn_rng_uniform(&g) - 0.5f);
    dy[i] = 2.0f * nn_rng_uniform(&g) - 1.0f;
  }
  nn_run_ctx tr = {.training = 1};
  const float *y = nn_model_forward(&m, x, N, &tr);
  nn_model_zero_grad(&m);
  nn_model_backward_dx(&m, x, dy, dx, N, &tr, NULL, NULL);
  double worst_y = 0.0, worst_dx = 0.0;
  for (int ch = 0; ch < C; ch++) {
    double mean = 0.0, var = 0.0, mdy = 0.0, mdyxh = 0.0;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < S; j++) mean += x[(i * C + ch) * S + j];
    mean /= N * S;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < S; j++) var += pow(x[(i * C + ch) * S + j] - mean, 2);
    var /= N * S;
    double inv = 1.0 / sqrt(var + cfg_num(&c, "eps"));
    for (int i = 0; i < N; i++)
      for (int j = 0; j < S; j++) {
        int k = (i * C + ch) * S + j;
        mdy += dy[k];
        mdyxh += dy[k] * (x[k] - mean) * inv;
      }
    mdy /= N * S;
    mdyxh /= N * S;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < S; j++) {
        int k = (i * C + ch) * S + j;
        double xh = (x[k] - mean) * inv;
        worst_y = fmax(worst_y, fabs(y[k] - (gamma[ch] * xh + beta[ch])));
        double ref = gamma[ch] * inv * (dy[k] - mdy - xh * mdyxh);
        worst_dx = fmax(worst_dx, fabs(dx[k] - ref) / (fabs(ref) + 1.0));
      }
  }
  fprintf(stderr, "    max |y - ref| %.2e, max relative |dx - ref| %.2e\n", worst_y, worst_dx);
  /* the batch mean is kept as a float: 3e-5 of rounding at 1000 is 1e-4 of
   * this data's standard deviation (0.29), times gamma <= 2.5 */
  ASSERT_TRUE(worst_y < 1e-3);
  ASSERT_TRUE(worst_dx < 1e-3);
  nn_model_free(&m);
}

/* ---- PReLU ---------------------------------------------------------------- */

static void test_prelu_grads(void) {
  nn_layer_cfg c = cfg_of("prelu");
  ASSERT_NEAR(cfg_num(&c, "alpha"), 0.25, 0);
  ASSERT_EQ_INT(cfg_num(&c, "per_channel"), 0);
  nn_shape in = {1, {5}};
  nn_gradcheck_opts o = opts_of(21, 4, 1);
  CHECK_GRADS(&in, &c, 1, &o);
  cfg_set_bool(&c, "per_channel", 1);
  nn_shape img = {3, {3, 2, 2}};
  o = opts_of(22, 3, 0);
  CHECK_GRADS(&img, &c, 1, &o);
  o = opts_of(23, 3, 1);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_prelu_values(void) {
  nn_layer_cfg c = cfg_of("prelu");
  cfg_set_bool(&c, "per_channel", 1);
  nn_shape in = {3, {2, 1, 2}};
  nn_model m;
  BUILD1(&m, &c, &in, 1);
  nn_model_init_params(&m, 3);
  ASSERT_EQ_INT(m.nparams, 2);
  ASSERT_NEAR(m.params[0], 0.25, 0);
  ASSERT_NEAR(m.params[1], 0.25, 0);
  m.params[1] = 0.5f;
  float x[4] = {-2, 3, -4, 1}, dy[4] = {1, 1, 1, 1}, dx[4];
  nn_run_ctx ctx = {0};
  const float *y = nn_model_forward(&m, x, 1, &ctx);
  ASSERT_NEAR(y[0], -0.5, 1e-7);
  ASSERT_NEAR(y[1], 3, 0);
  ASSERT_NEAR(y[2], -2, 1e-7);
  ASSERT_NEAR(y[3], 1, 0);
  nn_model_zero_grad(&m);
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  ASSERT_NEAR(m.grads[0], -2, 1e-7);
  ASSERT_NEAR(m.grads[1], -4, 1e-7);
  ASSERT_NEAR(dx[0], 0.25, 1e-7);
  ASSERT_NEAR(dx[1], 1, 0);
  ASSERT_NEAR(dx[2], 0.5, 1e-7);
  nn_model_free(&m);
  /* shared slope: weight [1] */
  cfg_set_bool(&c, "per_channel", 0);
  cfg_set(&c, "alpha", "%.17g", 0.1);
  BUILD1(&m, &c, &in, 1);
  nn_model_init_params(&m, 3);
  ASSERT_EQ_INT(m.nparams, 1);
  y = nn_model_forward(&m, x, 1, &ctx);
  ASSERT_NEAR(y[2], -0.4, 1e-6);
  nn_model_zero_grad(&m);
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  ASSERT_NEAR(m.grads[0], -6, 1e-6);
  nn_model_free(&m);
}

/* Each of this file's types with its defaults, as test_core_layers does for
 * every registered type. */
static void test_defaults_grads(void) {
  static const char *const types[] = {"dropout", "batchnorm", "prelu"};
  for (int t = 0; t < 3; t++)
    for (int training = 0; training < 2; training++) {
      nn_layer_cfg c = cfg_of(types[t]);
      nn_shape in = {1, {5}};
      nn_gradcheck_opts o = opts_of(30 + (uint64_t)t, 3, training);
      fprintf(stderr, "  %s training=%d\n", types[t], training);
      CHECK_GRADS(&in, &c, 1, &o);
    }
}

TEST_MAIN(TEST(test_dropout_grads), TEST(test_dropout_mask_and_modes),
          TEST(test_dropout_determinism), TEST(test_dropout_expectation),
          TEST(test_dropout_rate_checked), TEST(test_batchnorm_grads_1d),
          TEST(test_batchnorm_grads_2d), TEST(test_batchnorm_grads_eval),
          TEST(test_batchnorm_running_stats_1d), TEST(test_batchnorm_running_stats_2d),
          TEST(test_batchnorm_large_offset),
          TEST(test_prelu_grads), TEST(test_prelu_values), TEST(test_defaults_grads))
