/* test_core_loss.c: losses (core/loss.h) against hand-computed values, an
 * independent double-precision reference, and central finite differences. */
#include "core/loss.h"

#include <stdint.h>

#include "core/rng.h"
#include "test.h"

/* Reference: per-sample cross-entropy in double, straight from the definition
 * -log(exp(x_y) / sum_j exp(x_j)), for logits of moderate size. */
static double ref_ce(const double *x, int y, int k) {
  double s = 0;
  for (int j = 0; j < k; j++) s += exp(x[j]);
  return -log(exp(x[y]) / s);
}

static double ref_mse(const double *o, const double *t, int k) {
  double s = 0;
  for (int j = 0; j < k; j++) s += (o[j] - t[j]) * (o[j] - t[j]);
  return s / k;
}

static void test_ce_hand_values(void) {
  /* -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2) = 0.40760596444 */
  float x[3] = {1, 2, 3};
  int32_t y = 2;
  float d[3];
  double l = nn_loss_softmax_ce(x, &y, 1, 3, 1.0f, d);
  ASSERT_NEAR(l, 0.40760596, 1e-7);
  /* softmax([1,2,3]) = 0.09003057, 0.24472847, 0.66524096 */
  ASSERT_NEAR(d[0], 0.09003057, 1e-7);
  ASSERT_NEAR(d[1], 0.24472847, 1e-7);
  ASSERT_NEAR(d[2], 0.66524096 - 1.0, 1e-7);
  /* uniform logits: loss = log k for any label */
  float z[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  int32_t y1 = 0;
  ASSERT_NEAR(nn_loss_softmax_ce(z, &y1, 1, 4, 1.0f, NULL), log(4.0), 1e-7);
}

/* The batch loss is the SUM of per-sample losses; the gradient is scaled. */
static void test_ce_sum_and_scale(void) {
  float x[6] = {1, 2, 3, 0, 0, 0};
  int32_t y[2] = {2, 1};
  float d[6];
  double l = nn_loss_softmax_ce(x, y, 2, 3, 0.5f, d);
  ASSERT_NEAR(l, 0.40760596 + log(3.0), 1e-6);
  ASSERT_NEAR(d[0], 0.5 * 0.09003057, 1e-7);
  ASSERT_NEAR(d[4], 0.5 * (1.0 / 3.0 - 1.0), 1e-7);
  ASSERT_NEAR(d[5], 0.5 / 3.0, 1e-7);
  /* each row of the gradient of softmax CE sums to zero */
  ASSERT_NEAR(d[0] + d[1] + d[2], 0.0, 1e-7);
  ASSERT_NEAR(d[3] + d[4] + d[5], 0.0, 1e-7);
}

static void test_ce_extreme_logits(void) {
  float x[6] = {1e4f, 0.0f, -1e4f, 3e38f, -3e38f, 0.0f};
  int32_t y[2] = {1, 0};
  float d[6];
  double l = nn_loss_softmax_ce(x, y, 2, 3, 1.0f, d);
  ASSERT_TRUE(isfinite(l));
  /* row 0: lse = 1e4 (+ log(1 + e^-1e4 + ...)), loss = 1e4; row 1: loss ~ 0 */
  ASSERT_NEAR(l, 1e4, 1e-3);
  for (int j = 0; j < 6; j++) ASSERT_TRUE(isfinite(d[j]));
  ASSERT_NEAR(d[0], 1.0, 1e-7);
  ASSERT_NEAR(d[1], -1.0, 1e-7);
  ASSERT_NEAR(d[2], 0.0, 1e-7);
  ASSERT_NEAR(d[3], 0.0, 1e-7);
  float p[6];
  nn_softmax_rows(x, p, 2, 3);
  for (int j = 0; j < 6; j++) ASSERT_TRUE(isfinite(p[j]));
  ASSERT_NEAR(p[0], 1.0, 1e-7);
  ASSERT_NEAR(p[3], 1.0, 1e-7);
}

static void test_ce_bad_label(void) {
  float x[6] = {1, 2, 3, 1, 2, 3};
  int32_t y[2] = {0, 3};
  float d[6];
  for (int j = 0; j < 6; j++) d[j] = 7;
  double l = nn_loss_softmax_ce(x, y, 2, 3, 1.0f, d);
  ASSERT_TRUE(isnan(l));
  ASSERT_NEAR(d[3], 0.0, 0);
  ASSERT_NEAR(d[5], 0.0, 0);
  ASSERT_TRUE(d[0] != 7.0f);
  int32_t neg = -1;
  ASSERT_TRUE(isnan(nn_loss_softmax_ce(x, &neg, 1, 3, 1.0f, NULL)));
}

/* Analytic gradient vs (a) central differences of the double reference and
 * (b) central differences of the library's own loss on perturbed floats. */
static void test_ce_gradcheck(void) {
  enum { N = 4, K = 7 };
  float x[N * K], d[N * K];
  int32_t y[N];
  nn_rng r;
  nn_rng_init(&r, 3, NN_RNG_TEST, 10, 0, 0);
  for (int i = 0; i < N * K; i++) x[i] = 3.0f * nn_rng_normal(&r);
  for (int i = 0; i < N; i++) y[i] = (int32_t)nn_rng_below(&r, K);
  const float scale = 0.25f;
  double l = nn_loss_softmax_ce(x, y, N, K, scale, d);

  double ref = 0;
  for (int i = 0; i < N; i++) {
    double xd[K];
    for (int j = 0; j < K; j++) xd[j] = x[i * K + j];
    ref += ref_ce(xd, y[i], K);
  }
  ASSERT_NEAR(l, ref, 1e-9 * (1 + fabs(ref)));

  for (int i = 0; i < N; i++) {
    for (int j = 0; j < K; j++) {
      /* (a) double reference, h = 1e-5 */
      double xd[K];
      for (int q = 0; q < K; q++) xd[q] = x[i * K + q];
      const double h = 1e-5;
      xd[j] += h;
      double lp = ref_ce(xd, y[i], K);
      xd[j] -= 2 * h;
      double lm = ref_ce(xd, y[i], K);
      double fd = scale * (lp - lm) / (2 * h);
      ASSERT_NEAR(d[i * K + j], fd, 1e-6 + 1e-5 * fabs(fd));

      /* (b) the library on floats, h = 2^-7 (exact in float) */
      float xs[N * K];
      memcpy(xs, x, sizeof xs);
      const float hf = 1.0f / 128;
      xs[i * K + j] = x[i * K + j] + hf;
      double fp = nn_loss_softmax_ce(xs, y, N, K, 1.0f, NULL);
      xs[i * K + j] = x[i * K + j] - hf;
      double fm = nn_loss_softmax_ce(xs, y, N, K, 1.0f, NULL);
      double hh = ((double)(x[i * K + j] + hf) - (double)(x[i * K + j] - hf)) / 2;
      double fdf = scale * (fp - fm) / (2 * hh);
      ASSERT_NEAR(d[i * K + j], fdf, 1e-4 + 1e-2 * fabs(fdf));
    }
  }
}

static void test_mse_values_and_grad(void) {
  /* sample 0: ((1-0)^2 + (2-4)^2)/2 = 2.5; sample 1: ((0.5-0.5)^2 + (-1-1)^2)/2 = 2 */
  float o[4] = {1, 2, 0.5f, -1};
  float t[4] = {0, 4, 0.5f, 1};
  float d[4];
  double l = nn_loss_mse(o, t, 2, 2, 1.0f, d);
  ASSERT_NEAR(l, 4.5, 1e-12);
  /* d = 2 (o - t) / k */
  ASSERT_NEAR(d[0], 1.0, 1e-7);
  ASSERT_NEAR(d[1], -2.0, 1e-7);
  ASSERT_NEAR(d[2], 0.0, 0);
  ASSERT_NEAR(d[3], -2.0, 1e-7);
  nn_loss_mse(o, t, 2, 2, 0.5f, d);
  ASSERT_NEAR(d[1], -1.0, 1e-7);
  ASSERT_NEAR(nn_loss_mse(o, t, 2, 2, 1.0f, NULL), 4.5, 1e-12);

  enum { N = 3, K = 5 };
  float x[N * K], tg[N * K], g[N * K];
  nn_rng r;
  nn_rng_init(&r, 4, NN_RNG_TEST, 11, 0, 0);
  for (int i = 0; i < N * K; i++) {
    x[i] = nn_rng_normal(&r);
    tg[i] = nn_rng_normal(&r);
  }
  const float scale = 1.0f / 3;
  double lm = nn_loss_mse(x, tg, N, K, scale, g);
  double ref = 0;
  for (int i = 0; i < N; i++) {
    double od[K], td[K];
    for (int j = 0; j < K; j++) {
      od[j] = x[i * K + j];
      td[j] = tg[i * K + j];
    }
    ref += ref_mse(od, td, K);
  }
  ASSERT_NEAR(lm, ref, 1e-9 * (1 + ref));
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < K; j++) {
      double od[K], td[K];
      for (int q = 0; q < K; q++) {
        od[q] = x[i * K + q];
        td[q] = tg[i * K + q];
      }
      const double h = 1e-4;
      od[j] += h;
      double lp = ref_mse(od, td, K);
      od[j] -= 2 * h;
      double lmi = ref_mse(od, td, K);
      double fd = scale * (lp - lmi) / (2 * h);
      ASSERT_NEAR(g[i * K + j], fd, 1e-6 + 1e-5 * fabs(fd));
    }
  }
}

static void test_softmax_rows_and_argmax(void) {
  float x[6] = {1, 2, 3, -5, 10, 10};
  float p[6];
  nn_softmax_rows(x, p, 2, 3);
  ASSERT_NEAR(p[0], 0.09003057, 1e-7);
  ASSERT_NEAR(p[2], 0.66524096, 1e-7);
  ASSERT_NEAR(p[3] + p[4] + p[5], 1.0, 1e-6);
  ASSERT_NEAR(p[4], p[5], 0);
  /* in place gives the same */
  float q[6];
  memcpy(q, x, sizeof q);
  nn_softmax_rows(q, q, 2, 3);
  for (int j = 0; j < 6; j++) ASSERT_NEAR(q[j], p[j], 0);

  ASSERT_EQ_INT(nn_argmax(x, 3), 2);
  ASSERT_EQ_INT(nn_argmax(x + 3, 3), 1); /* first of the tie */
  float neg[3] = {-3, -1, -2};
  ASSERT_EQ_INT(nn_argmax(neg, 3), 1);
  ASSERT_EQ_INT(nn_argmax(neg, 1), 0);
}

static void test_parse(void) {
  ASSERT_EQ_INT(nn_loss_parse("cross_entropy"), NN_LOSS_SOFTMAX_CE);
  ASSERT_EQ_INT(nn_loss_parse("mse"), NN_LOSS_MSE);
  ASSERT_EQ_INT(nn_loss_parse("MSE"), -1);
  ASSERT_EQ_INT(nn_loss_parse("hinge"), -1);
  ASSERT_EQ_INT(nn_loss_parse(""), -1);
  ASSERT_EQ_INT(nn_loss_parse(NULL), -1);
  ASSERT_STR_EQ(nn_loss_choices, "cross_entropy|mse");
}

TEST_MAIN(TEST(test_ce_hand_values), TEST(test_ce_sum_and_scale), TEST(test_ce_extreme_logits),
          TEST(test_ce_bad_label), TEST(test_ce_gradcheck), TEST(test_mse_values_and_grad),
          TEST(test_softmax_rows_and_argmax), TEST(test_parse))
