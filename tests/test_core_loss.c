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

/* Reference BCE of one logit, straight from the definition
 * -t log s - (1 - t) log(1 - s) with s = 1 / (1 + e^-x): only for moderate
 * |x| (it overflows to inf beyond ~700, which is what the stable form avoids). */
static double ref_bce1(double x, double t) {
  double s = 1.0 / (1.0 + exp(-x));
  return -t * log(s) - (1 - t) * log(1 - s);
}

static void test_bce_hand_values(void) {
  /* x = 0: log 2 whatever t; x = 2, t = 1: log(1 + e^-2) = 0.1269280110;
   * x = -3, t = 0: log(1 + e^-3) = 0.0485873516; x = 1, t = 0.25 (a soft
   * target, as an autoencoder's pixel): 1 - 0.25 + log(1 + e^-1) = 1.0632616875 */
  float x[4] = {0, 2, -3, 1}, t[4] = {1, 1, 0, 0.25f}, d[4];
  ASSERT_NEAR(nn_loss_bce(x, t, 1, 1, 1.0f, NULL), log(2.0), 1e-12);
  ASSERT_NEAR(nn_loss_bce(x + 1, t + 1, 1, 1, 1.0f, NULL), 0.1269280110, 1e-9);
  ASSERT_NEAR(nn_loss_bce(x + 2, t + 2, 1, 1, 1.0f, NULL), 0.0485873516, 1e-9);
  ASSERT_NEAR(nn_loss_bce(x + 3, t + 3, 1, 1, 1.0f, NULL), 1.0632616875, 1e-9);
  /* one sample of k = 4: the mean of the four; two samples of k = 2: the
   * sum of their means */
  const double l4 = (log(2.0) + 0.1269280110 + 0.0485873516 + 1.0632616875) / 4;
  ASSERT_NEAR(nn_loss_bce(x, t, 1, 4, 1.0f, d), l4, 1e-9);
  ASSERT_NEAR(nn_loss_bce(x, t, 2, 2, 1.0f, NULL),
              (log(2.0) + 0.1269280110) / 2 + (0.0485873516 + 1.0632616875) / 2, 1e-9);
  /* d = (sigmoid(x) - t) / k: sigmoid(0) = 0.5, sigmoid(2) = 0.8807970780,
   * sigmoid(-3) = 0.0474258732, sigmoid(1) = 0.7310585786 */
  ASSERT_NEAR(d[0], (0.5 - 1) / 4, 1e-7);
  ASSERT_NEAR(d[1], (0.8807970780 - 1) / 4, 1e-7);
  ASSERT_NEAR(d[2], 0.0474258732 / 4, 1e-7);
  ASSERT_NEAR(d[3], (0.7310585786 - 0.25) / 4, 1e-7);
  /* scale multiplies the gradient only; dout may alias out */
  float d2[4], xa[4];
  memcpy(xa, x, sizeof xa);
  ASSERT_NEAR(nn_loss_bce(x, t, 1, 4, 0.25f, d2), l4, 1e-9);
  for (int j = 0; j < 4; j++) ASSERT_NEAR(d2[j], 0.25 * d[j], 1e-8);
  nn_loss_bce(xa, t, 1, 4, 0.25f, xa);
  for (int j = 0; j < 4; j++) ASSERT_NEAR(xa[j], d2[j], 0);
  ASSERT_NEAR(nn_loss_bce(x, t, 0, 4, 1.0f, d), 0, 0);
}

/* Random logits (moderate) and targets (0/1 labels, then soft values in
 * [0, 1]): the loss against the double reference, the gradient against
 * central differences of the reference. */
static void test_bce_reference_and_fd(void) {
  enum { N = 4, K = 6 };
  float x[N * K], tg[N * K], g[N * K];
  nn_rng r;
  nn_rng_init(&r, 4, NN_RNG_TEST, 12, 0, 0);
  for (int soft = 0; soft < 2; soft++) {
    for (int i = 0; i < N * K; i++) {
      x[i] = 3 * nn_rng_normal(&r);
      float u = nn_rng_uniform(&r);
      tg[i] = soft ? u : (u < 0.5f ? 0.0f : 1.0f);
    }
    const float scale = 1.0f / 7;
    double l = nn_loss_bce(x, tg, N, K, scale, g), ref = 0;
    for (int i = 0; i < N; i++) {
      double s = 0;
      for (int j = 0; j < K; j++) s += ref_bce1(x[i * K + j], tg[i * K + j]);
      ref += s / K;
    }
    ASSERT_NEAR(l, ref, 1e-12 * (1 + ref));
    for (int i = 0; i < N * K; i++) {
      const double h = 1e-5, xi = x[i], t = tg[i];
      double fd = scale * (ref_bce1(xi + h, t) - ref_bce1(xi - h, t)) / (2 * h) / K;
      ASSERT_NEAR(g[i], fd, 1e-7 + 1e-5 * fabs(fd));
      /* and through nn_loss_bce itself, one float logit moved by +-2^-7 (the
       * returned sum is double, so the difference is not lost to rounding) */
      float xs[N * K];
      memcpy(xs, x, sizeof xs);
      xs[i] = x[i] + 0x1p-7f;
      const double xp = xs[i], lp = nn_loss_bce(xs, tg, N, K, 1.0f, NULL);
      xs[i] = x[i] - 0x1p-7f;
      const double xm = xs[i], lm = nn_loss_bce(xs, tg, N, K, 1.0f, NULL);
      const double fd2 = scale * (lp - lm) / (xp - xm);
      ASSERT_NEAR(g[i], fd2, 1e-6 + 1e-4 * fabs(fd2));
    }
  }
}

/* Logits far out: the stable form stays finite and exact where the
 * definition overflows (-log(sigmoid(-1000)) = -log(0) = inf in double). */
static void test_bce_extreme_logits(void) {
  float x[8] = {100, 100, -100, -100, 1000, -1000, 3e38f, -3e38f};
  float t[8] = {1, 0, 1, 0, 0, 1, 0, 1}, d[8];
  ASSERT_TRUE(isinf(ref_bce1(-1000, 1)));
  /* per logit: x = 100, t = 1: log1p(e^-100) = 3.72e-44; t = 0: 100 + that;
   * x = -100: mirror; 1000 with t = 0 and -1000 with t = 1: 1000; 3e38: 3e38 */
  const double want[8] = {3.720075976020836e-44, 100, 100, 3.720075976020836e-44, 1000, 1000,
                          (double)3e38f, (double)3e38f};
  for (int j = 0; j < 8; j++) {
    double l = nn_loss_bce(x + j, t + j, 1, 1, 1.0f, d + j);
    ASSERT_TRUE(isfinite(l));
    ASSERT_NEAR(l, want[j], 1e-12 * want[j]);
    /* sigmoid saturates: the gradient is exactly 0 (right side) or +-1 */
    ASSERT_NEAR(d[j], (x[j] > 0 ? 1.0 : 0.0) - t[j], 1e-30);
  }
  ASSERT_NEAR(nn_sigmoid(-1000), 0, 0);
  ASSERT_NEAR(nn_sigmoid(1000), 1, 0);
  ASSERT_NEAR(nn_sigmoid(-30), exp(-30) / (1 + exp(-30)), 1e-25);
}

static void test_parse(void) {
  ASSERT_EQ_INT(nn_loss_parse("cross_entropy"), NN_LOSS_SOFTMAX_CE);
  ASSERT_EQ_INT(nn_loss_parse("mse"), NN_LOSS_MSE);
  ASSERT_EQ_INT(nn_loss_parse("binary_cross_entropy"), NN_LOSS_BCE);
  ASSERT_EQ_INT(nn_loss_parse("bce"), -1);
  ASSERT_EQ_INT(nn_loss_parse("MSE"), -1);
  ASSERT_EQ_INT(nn_loss_parse("hinge"), -1);
  ASSERT_EQ_INT(nn_loss_parse(""), -1);
  ASSERT_EQ_INT(nn_loss_parse(NULL), -1);
  ASSERT_STR_EQ(nn_loss_choices, "cross_entropy|mse|binary_cross_entropy");
}

TEST_MAIN(TEST(test_ce_hand_values), TEST(test_ce_sum_and_scale), TEST(test_ce_extreme_logits),
          TEST(test_ce_bad_label), TEST(test_ce_gradcheck), TEST(test_mse_values_and_grad),
          TEST(test_softmax_rows_and_argmax), TEST(test_bce_hand_values),
          TEST(test_bce_reference_and_fd), TEST(test_bce_extreme_logits), TEST(test_parse))
