/* test_core_fastmath.c: core/fastmath.h's exp, sigmoid and tanh against
 * libm over their whole useful range, and at the edges (clamping, NaN). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/fastmath.h"
#include "test.h"

/* Distance in units in the last place between two finite floats. */
static double ulps(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, sizeof ia);
  memcpy(&ib, &b, sizeof ib);
  if (ia < 0) ia = INT32_MIN - ia; /* monotone integer order over the sign */
  if (ib < 0) ib = INT32_MIN - ib;
  return fabs((double)ia - (double)ib);
}

/* The float after x in a sweep: relative steps of 2e-5 (about every 160th
 * float), at least 1e-6 near zero: about two million values over exp's
 * range. */
static float next_x(float x) {
  float step = fabsf(x) * 2e-5f;
  return nextafterf(x, INFINITY) + (step > 1e-6f ? step : 1e-6f);
}

static void test_exp_within_2ulp(void) {
  double worst = 0;
  float at = 0;
  size_t count = 0;
  for (float x = -87.0f; x <= 88.0f; x = next_x(x)) {
    float want = (float)exp((double)x), got = nn_expf(x);
    double u = ulps(got, want);
    if (u > worst) worst = u, at = x;
    count++;
  }
  fprintf(stderr, "  nn_expf: worst %.0f ulp at %.9g over %zu values in [-87, 88]\n", worst, at,
          count);
  ASSERT_TRUE(count > 500000);
  ASSERT_TRUE(worst <= 2);
  ASSERT_TRUE(nn_expf(0.0f) == 1.0f);
}

static void test_exp_edges(void) {
  /* clamped: normal floats, never 0, inf or subnormal */
  ASSERT_TRUE(nn_expf(-1000.0f) > 0 && nn_expf(-1000.0f) >= FLT_MIN);
  ASSERT_TRUE(isfinite(nn_expf(1000.0f)) && nn_expf(1000.0f) > 1e38f);
  ASSERT_TRUE(nn_expf(-INFINITY) >= FLT_MIN && isfinite(nn_expf(INFINITY)));
  ASSERT_TRUE(isnan(nn_expf(NAN)));
  ASSERT_TRUE(isnan(nn_sigmoidf(NAN)) && isnan(nn_tanhf(NAN)));
}

static void test_sigmoid_tanh(void) {
  double ws = 0, wt = 0, wt_abs = 0;
  for (float x = -30.0f; x <= 30.0f; x = next_x(x)) {
    double s = 1.0 / (1.0 + exp(-(double)x)), t = tanh((double)x);
    double es = fabs(nn_sigmoidf(x) - s) / s;
    double et = t != 0 ? fabs(nn_tanhf(x) - t) / fabs(t) : fabs(nn_tanhf(x));
    if (es > ws) ws = es;
    if (et > wt) wt = et;
    if (fabs(nn_tanhf(x) - t) > wt_abs) wt_abs = fabs(nn_tanhf(x) - t);
  }
  fprintf(stderr, "  nn_sigmoidf worst relative error %.2e, nn_tanhf %.2e (absolute %.2e)\n", ws,
          wt, wt_abs);
  ASSERT_TRUE(ws < 5e-7);
  ASSERT_TRUE(wt < 5e-7);
  /* odd, saturating, tiny inputs exact to float */
  ASSERT_TRUE(nn_tanhf(-0.3f) == -nn_tanhf(0.3f));
  ASSERT_TRUE(nn_tanhf(30.0f) == 1.0f && nn_tanhf(-30.0f) == -1.0f);
  ASSERT_TRUE(nn_tanhf(1e-20f) == 1e-20f);
  ASSERT_TRUE(nn_sigmoidf(30.0f) == 1.0f && nn_sigmoidf(-200.0f) < 1e-37f);
  ASSERT_TRUE(nn_sigmoidf(0.0f) == 0.5f);
}

TEST_MAIN(TEST(test_exp_within_2ulp), TEST(test_exp_edges), TEST(test_sigmoid_tanh))
