/* test_nonfinite.c: the non-finite flag of the training step (worker/step.h):
 * nn_floats_finite on finite, NaN, Inf and extreme values at every position;
 * a step whose loss is NaN (a label out of range) or whose input holds an Inf
 * is flagged, leaves parameters, optimizer state and the step figures as they
 * were, and the next good step is applied as usual. */
#include "worker/step.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "core/loss.h"
#include "core/model.h"
#include "core/optim.h"
#include "layer_cfg.h"
#include "test.h"

enum { IN = 3, OUT = 2, BATCH = 4, N = 37 };

static void test_floats_finite(void) {
  float x[N];
  for (int i = 0; i < N; i++) x[i] = (float)(i - 18) * 1e3f;
  ASSERT_TRUE(nn_floats_finite(x, N));
  ASSERT_TRUE(nn_floats_finite(x, 0));
  x[5] = FLT_MAX;
  x[6] = -FLT_MAX;
  x[7] = FLT_MIN / 8; /* subnormal */
  x[8] = -0.0f;
  ASSERT_TRUE(nn_floats_finite(x, N));
  const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
  for (int k = 0; k < 4; k++)
    for (int at = 0; at < N; at++) {
      float y[N];
      memcpy(y, x, sizeof y);
      y[at] = bad[k];
      ASSERT_TRUE(!nn_floats_finite(y, N));
      ASSERT_TRUE(nn_floats_finite(y, (size_t)at)); /* the prefix before it */
    }
}

typedef struct fixture {
  nn_model m;
  nn_optim o;
  nn_stepper s;
  float x[BATCH * IN];
  int32_t lab[BATCH];
  nn_batch b;
} fixture;

/* dense IN -> OUT, adam (so the step has optimizer state to keep), a batch. */
static void fixture_init(fixture *f) {
  memset(f, 0, sizeof *f);
  nn_layer_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.type, sizeof c.type, "dense");
  nn_layer_cfg_defaults(&c, NULL);
  cfg_set(&c, "units", "%d", OUT);
  nn_shape in = {1, {IN}};
  ASSERT_OK(nn_model_build(&f->m, &in, &c, 1, BATCH, NULL));
  nn_model_init_params(&f->m, 3);
  nn_optim_cfg oc;
  memset(&oc, 0, sizeof oc);
  snprintf(oc.type, sizeof oc.type, "adam");
  oc.lr = 0.1;
  oc.beta1 = 0.9;
  oc.beta2 = 0.999;
  oc.eps = 1e-8;
  ASSERT_OK(nn_optim_init(&f->o, &oc, f->m.nparams, NULL));
  ASSERT_OK(nn_stepper_init(&f->s, &f->m, &f->o, NULL, NN_LOSS_SOFTMAX_CE, NULL));
  for (int k = 0; k < BATCH * IN; k++) f->x[k] = (float)cos(0.7 * k);
  for (int i = 0; i < BATCH; i++) f->lab[i] = i % OUT;
  f->b = (nn_batch){.n = BATCH, .global_n = BATCH, .x = f->x, .labels = f->lab};
}

static void fixture_free(fixture *f) {
  nn_stepper_free(&f->s);
  nn_optim_free(&f->o);
  nn_model_free(&f->m);
}

/* One step on f's batch must be dropped: nothing changes but the count. */
static void expect_dropped(fixture *f) {
  size_t np = f->m.nparams, ns = (size_t)f->o.nslots * f->o.n;
  float p0[64], s0[128];
  ASSERT_TRUE(np <= 64 && ns <= 128);
  memcpy(p0, f->m.params, np * sizeof(float));
  memcpy(s0, f->o.slots, ns * sizeof(float));
  long t0 = (long)f->o.t;
  nn_step_stats st = {.loss_sum = 1.5, .correct = 1, .count = 2, .nonfinite = 4};
  ASSERT_OK(nn_step_train(&f->s, &f->b, 0.1, 0, 1, &st, NULL));
  ASSERT_EQ_INT(f->s.nonfinite, 1);
  ASSERT_EQ_INT(st.nonfinite, 5);
  ASSERT_NEAR(st.loss_sum, 1.5, 0);
  ASSERT_NEAR(st.count, 2, 0);
  ASSERT_NEAR(st.correct, 1, 0);
  ASSERT_TRUE(memcmp(p0, f->m.params, np * sizeof(float)) == 0);
  ASSERT_TRUE(memcmp(s0, f->o.slots, ns * sizeof(float)) == 0);
  ASSERT_EQ_INT((long)f->o.t, t0);
}

/* Then a good step is applied: the parameters move, the flag clears. */
static void expect_applied(fixture *f) {
  float p0[64];
  memcpy(p0, f->m.params, f->m.nparams * sizeof(float));
  nn_step_stats st = {0};
  ASSERT_OK(nn_step_train(&f->s, &f->b, 0.1, 1, 1, &st, NULL));
  ASSERT_EQ_INT(f->s.nonfinite, 0);
  ASSERT_EQ_INT(st.nonfinite, 0);
  ASSERT_NEAR(st.count, BATCH, 0);
  ASSERT_TRUE(memcmp(p0, f->m.params, f->m.nparams * sizeof(float)) != 0);
  ASSERT_TRUE(nn_floats_finite(f->m.params, f->m.nparams));
}

static void test_step_nan_loss(void) {
  fixture f;
  fixture_init(&f);
  f.lab[2] = OUT + 5; /* NaN loss, that row's gradient zeroed by the loss */
  expect_dropped(&f);
  f.lab[2] = 0;
  expect_applied(&f);
  fixture_free(&f);
}

static void test_step_inf_input(void) {
  fixture f;
  fixture_init(&f);
  f.x[4] = INFINITY;
  expect_dropped(&f);
  f.x[4] = 0.5f;
  expect_applied(&f);
  fixture_free(&f);
}

TEST_MAIN(TEST(test_floats_finite), TEST(test_step_nan_loss), TEST(test_step_inf_input))
