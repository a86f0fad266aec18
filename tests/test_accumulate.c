/* test_accumulate.c: gradient accumulation in the training step (worker/step.h,
 * train.accumulate):
 *   - nn_step_micro cuts a slice of n samples into k contiguous views that cover it in
 *     order, sizes within one of each other and at most nn_step_micro_max(n, k), with
 *     x, labels, targets, lengths and tlabels advanced by the view's first sample and
 *     sample0 its position in the epoch;
 *   - a step of accumulate = 4 on a model built for micro-batches of 2 gives the
 *     parameters, Adam state and figures of accumulate = 1 on a model built for the
 *     whole batch of 8 (dense, dropout, dense; three steps), also for a short slice of 7
 *     and one of 3 (an empty micro-batch), to 1e-6 relative;
 *   - carried state (an LSTM with carry = true, per-timestep labels, four windows of
 *     eight streams): accumulate 2 on a model built for four streams gives the
 *     parameters and every stream's final state of accumulate 1 built for eight, to
 *     1e-5 relative; without the stepper's per-stream state it would not (each
 *     micro-batch would go on from the other's state);
 *   - (fault-injection builds) such a step allocates nothing. */
#include "worker/step.h"

#include <math.h>
#include <stdint.h>

#include "core/loss.h"
#include "core/mem.h"
#include "core/model.h"
#include "core/optim.h"
#include "layer_cfg.h"
#include "test.h"

enum { IN = 5, HID = 6, OUT = 3, BATCH = 8 };

static void test_micro_views(void) {
  nn_model m;
  memset(&m, 0, sizeof m);
  m.in = (nn_shape){1, {IN}};
  nn_stepper s;
  memset(&s, 0, sizeof s);
  s.model = &m;
  s.outputs = 4;
  s.seq_t = 3;
  static float x[13 * IN], tg[13 * 4];
  static int32_t lab[13], len[13], tl[13 * 3];
  for (int k = 1; k <= 5; k++)
    for (int n = 0; n <= 13; n++) {
      s.accumulate = k;
      nn_batch b = {.n = n, .global_n = 40, .sample0 = 100, .x = x, .labels = lab,
                    .targets = tg, .lengths = len, .tlabels = tl};
      int at = 0, lo = n, hi = 0;
      for (int i = 0; i < k; i++) {
        nn_batch v = nn_step_micro(&s, &b, i);
        ASSERT_EQ_INT(v.global_n, 40);
        ASSERT_EQ_INT((int)v.sample0, 100 + at);
        ASSERT_TRUE(v.x == x + at * IN);
        ASSERT_TRUE(v.labels == lab + at);
        ASSERT_TRUE(v.targets == tg + at * 4);
        ASSERT_TRUE(v.lengths == len + at);
        ASSERT_TRUE(v.tlabels == tl + at * 3);
        ASSERT_TRUE(v.n <= nn_step_micro_max(n, k));
        if (v.n < lo) lo = v.n;
        if (v.n > hi) hi = v.n;
        at += v.n;
      }
      ASSERT_EQ_INT(at, n);
      ASSERT_TRUE(hi - lo <= 1);
    }
  s.accumulate = 3;
  nn_batch b = {.n = 6, .global_n = 6, .x = x}; /* NULL stays NULL */
  nn_batch v = nn_step_micro(&s, &b, 1);
  ASSERT_TRUE(!v.labels && !v.targets && !v.lengths && !v.tlabels);
  ASSERT_EQ_INT(nn_step_micro_max(22, 4), 6);
  ASSERT_EQ_INT(nn_step_micro_max(24, 4), 6);
  ASSERT_EQ_INT(nn_step_micro_max(7, 1), 7);
}

typedef struct rig {
  nn_model m;
  nn_optim o;
  nn_stepper s;
} rig;

/* dense IN -> HID relu, dropout 0.3, dense OUT; Adam; built for max_batch samples. */
static void rig_init(rig *r, int max_batch, int accumulate) {
  memset(r, 0, sizeof *r);
  nn_layer_cfg c[3] = {cfg_of("dense"), cfg_of("dropout"), cfg_of("dense")};
  cfg_set(&c[0], "units", "%d", HID);
  cfg_set(&c[0], "activation", "\"relu\"");
  cfg_set(&c[1], "rate", "0.3");
  cfg_set(&c[2], "units", "%d", OUT);
  nn_shape in = {1, {IN}};
  ASSERT_OK(nn_model_build(&r->m, &in, c, 3, max_batch, NULL));
  nn_model_init_params(&r->m, 7);
  nn_optim_cfg oc;
  memset(&oc, 0, sizeof oc);
  snprintf(oc.type, sizeof oc.type, "adam");
  oc.lr = 0.05;
  oc.beta1 = 0.9;
  oc.beta2 = 0.999;
  oc.eps = 1e-8;
  ASSERT_OK(nn_optim_init(&r->o, &oc, r->m.nparams, NULL));
  ASSERT_OK(nn_stepper_init(&r->s, &r->m, &r->o, NULL, NN_LOSS_SOFTMAX_CE, NULL));
  r->s.accumulate = accumulate;
}

static void rig_free(rig *r) {
  nn_stepper_free(&r->s);
  nn_optim_free(&r->o);
  nn_model_free(&r->m);
}

static double max_rel(const float *a, const float *b, size_t n) {
  double d = 0, top = 1e-30;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - (double)b[i]));
    top = fmax(top, fabs((double)b[i]));
  }
  return d / top;
}

/* Three steps on slices of n samples: accumulate 4 (max_batch 2) against 1 (max_batch 8). */
static void expect_same(int n) {
  rig big, acc;
  rig_init(&big, BATCH, 1);
  rig_init(&acc, nn_step_micro_max(BATCH, 4), 4);
  float x[BATCH * IN];
  int32_t lab[BATCH];
  nn_step_stats sb = {0}, sa = {0};
  for (int step = 0; step < 3; step++) {
    for (int k = 0; k < BATCH * IN; k++) x[k] = (float)sin(0.37 * k + step);
    for (int i = 0; i < BATCH; i++) lab[i] = (i * 7 + step) % OUT;
    nn_batch b = {.n = n, .global_n = n + 3, .sample0 = 40 * step + 5, .x = x, .labels = lab};
#ifdef NN_FAULT_INJECTION
    unsigned long before = nn_mem_count();
#endif
    ASSERT_OK(nn_step_train(&acc.s, &b, 0.05, (uint64_t)step, 11, &sa, NULL));
#ifdef NN_FAULT_INJECTION
    ASSERT_EQ_INT((long)nn_mem_count(), (long)before); /* nothing allocated */
#endif
    ASSERT_OK(nn_step_train(&big.s, &b, 0.05, (uint64_t)step, 11, &sb, NULL));
  }
  double dp = max_rel(acc.m.params, big.m.params, big.m.nparams);
  double ds = max_rel(acc.o.slots, big.o.slots, (size_t)big.o.nslots * big.o.n);
  printf("slices of %d: accumulate 4 vs 1: params max|diff|/max|p| %.3g, Adam slots %.3g\n", n,
         dp, ds);
  ASSERT_TRUE(dp < 1e-6);
  ASSERT_TRUE(ds < 1e-6);
  ASSERT_NEAR(sa.count, sb.count, 0);
  ASSERT_NEAR(sa.correct, sb.correct, 0);
  ASSERT_NEAR(sa.loss_sum, sb.loss_sum, 1e-6 * fabs(sb.loss_sum));
  /* the steps moved the parameters: the comparison is not of two idle models */
  rig fresh;
  rig_init(&fresh, BATCH, 1);
  ASSERT_TRUE(max_rel(fresh.m.params, big.m.params, big.m.nparams) > 1e-3);
  rig_free(&fresh);
  rig_free(&big);
  rig_free(&acc);
}

static void test_same_as_big_batch(void) {
  expect_same(BATCH);
  expect_same(7);
  expect_same(3);
}

/* LSTM (carry) -> per-timestep dense over windows of T steps of F features. */
enum { T = 4, F = 3, HS = 5, K = 3, STREAMS = 8 };

static void lm_init(rig *r, int max_batch, int accumulate) {
  memset(r, 0, sizeof *r);
  nn_layer_cfg c[2] = {cfg_of("lstm"), cfg_of("dense")};
  cfg_set(&c[0], "hidden_size", "%d", HS);
  cfg_set_bool(&c[0], "carry", 1);
  cfg_set(&c[1], "units", "%d", K);
  cfg_set_bool(&c[1], "per_timestep", 1);
  nn_shape in = {2, {T, F}};
  ASSERT_OK(nn_model_build(&r->m, &in, c, 2, max_batch, NULL));
  ASSERT_EQ_INT(r->m.carry_per_sample, 2 * HS);
  nn_model_init_params(&r->m, 9);
  nn_optim_cfg oc;
  memset(&oc, 0, sizeof oc);
  snprintf(oc.type, sizeof oc.type, "sgd");
  oc.lr = 0.5;
  ASSERT_OK(nn_optim_init(&r->o, &oc, r->m.nparams, NULL));
  ASSERT_OK(nn_stepper_init(&r->s, &r->m, &r->o, NULL, NN_LOSS_SOFTMAX_CE, NULL));
  ASSERT_OK(nn_stepper_accumulate(&r->s, accumulate, NULL));
  ASSERT_TRUE((r->s.carry != NULL) == (accumulate > 1));
  ASSERT_TRUE(nn_step_carry(&r->s) == (accumulate > 1 ? r->s.carry : r->m.carry));
}

static void test_carried_streams(void) {
  rig big, acc;
  lm_init(&big, STREAMS, 1);
  lm_init(&acc, nn_step_micro_max(STREAMS, 2), 2);
  float x[STREAMS * T * F];
  int32_t tl[STREAMS * T];
  nn_step_stats sb = {0}, sa = {0};
  for (int w = 0; w < 4; w++) { /* window w of every stream; the first from zeros */
    for (int k = 0; k < STREAMS * T * F; k++) x[k] = (float)sin(0.29 * k + 1.3 * w);
    for (int k = 0; k < STREAMS * T; k++) tl[k] = (k * 5 + w) % K;
    nn_batch b = {.n = STREAMS, .global_n = STREAMS, .sample0 = 0, .x = x, .tlabels = tl,
                  .carry_in = w > 0};
#ifdef NN_FAULT_INJECTION
    unsigned long before = nn_mem_count();
#endif
    ASSERT_OK(nn_step_train(&acc.s, &b, 0.5, (uint64_t)w, 3, &sa, NULL));
#ifdef NN_FAULT_INJECTION
    ASSERT_EQ_INT((long)nn_mem_count(), (long)before);
#endif
    ASSERT_OK(nn_step_train(&big.s, &b, 0.5, (uint64_t)w, 3, &sb, NULL));
  }
  double dp = max_rel(acc.m.params, big.m.params, big.m.nparams);
  double dc = max_rel(nn_step_carry(&acc.s), nn_step_carry(&big.s), STREAMS * 2 * HS);
  printf("carried streams: accumulate 2 vs 1: params %.3g, final states %.3g\n", dp, dc);
  ASSERT_TRUE(dp < 1e-5);
  ASSERT_TRUE(dc < 1e-5);
  ASSERT_NEAR(sa.loss_sum, sb.loss_sum, 1e-5 * fabs(sb.loss_sum));
  ASSERT_NEAR(sa.count, (double)(4 * STREAMS * T), 0);
  /* the windows moved the state: streams 0 and 4 (one in each micro-batch) differ */
  ASSERT_TRUE(max_rel(nn_step_carry(&big.s), nn_step_carry(&big.s) + 4 * 2 * HS, 2 * HS) > 1e-3);
  rig_free(&big);
  rig_free(&acc);
}

TEST_MAIN(TEST(test_micro_views), TEST(test_same_as_big_batch), TEST(test_carried_streams))
