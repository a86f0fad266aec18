/* test_schedule.c: learning-rate schedules (coordinator/schedule.c).
 *
 * Every expected value is a literal computed outside this program with
 * python3 from PyTorch's documented formulas and its recursive update code
 * (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingWarmRestarts stepped
 * with epoch + i / iters, OneCycleLR, ReduceLROnPlateau), so the C code is
 * compared with what PyTorch would print, not with itself. Also: warmup
 * composition, key validation errors, and the [schedule] section through the
 * job parser and the JobSpec protobuf. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "coordinator/job.h"
#include "coordinator/job_keys.h"
#include "coordinator/schedule.h"
#include "test.h"

#define TOL 1e-15

/* A cfg of `type` with every other key at its default from the key table. */
static nn_schedule_cfg cfg_of(const char *type) {
  nn_schedule_cfg c;
  memset(&c, 0, sizeof c);
  nn_error err;
  nn_error_clear(&err);
  if (nn__keys_defaults(nn_schedule_keys, &c, "schedule", &err)) c.type[0] = '\0';
  snprintf(c.type, sizeof c.type, "%s", type);
  return c;
}

static double lr_at(const nn_schedule_cfg *c, int64_t step, int64_t spe, int64_t total) {
  return nn_schedule_lr_at(c, 0.1, step, spe, total, NULL);
}

static void test_defaults_check(void) {
  const char *types[] = {"constant", "cosine", "exponential", "one_cycle", "reduce_on_plateau"};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    nn_schedule_cfg c = cfg_of(types[i]);
    nn_error err;
    nn_error_clear(&err);
    ASSERT_OK(nn_schedule_check(&c, &err));
    ASSERT_EQ_INT(nn_schedule_parse_kind(types[i]) >= 0, 1);
    ASSERT_STR_EQ(nn_schedule_type_name((nn_schedule_kind)nn_schedule_parse_kind(types[i])),
                  types[i]);
  }
  ASSERT_EQ_INT(nn_schedule_parse_kind("linear"), -1);
  ASSERT_STR_EQ(nn_schedule_type_name((nn_schedule_kind)99), "?");
  /* PyTorch's defaults */
  nn_schedule_cfg c = cfg_of("one_cycle");
  ASSERT_NEAR(c.pct_start, 0.3, 0);
  ASSERT_NEAR(c.div_factor, 25, 0);
  ASSERT_NEAR(c.final_div_factor, 1e4, 0);
  ASSERT_STR_EQ(c.anneal_strategy, "cos");
  ASSERT_NEAR(c.factor, 0.1, 0);
  ASSERT_EQ_INT(c.patience, 10);
  ASSERT_NEAR(c.threshold, 1e-4, 0);
  ASSERT_NEAR(c.gamma, 0.1, 0);
  ASSERT_EQ_INT(c.restart_mult, 1);
}

static void test_constant(void) {
  nn_schedule_cfg c = cfg_of("constant");
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 0, 100), 0.1, 0);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 99, 100), 0.1, 0);
  ASSERT_NEAR(lr_at(&c, 12345, 7, 100), 0.1, 0);
}

static void test_cosine(void) {
  nn_schedule_cfg c = cfg_of("cosine");
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 0, 100), 0.1, TOL);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 50, 100), 0.05, TOL);
  /* step 25 of 100: (1 + cos(pi/4)) / 2 = 0.8535533905932737 */
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 25, 100), 0.08535533905932737, TOL);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 100, 100), 0.0, TOL);
  /* per step, whatever the epoch length */
  ASSERT_NEAR(lr_at(&c, 25, 10, 100), 0.08535533905932737, TOL);
  c.min_lr = 0.01;
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 50, 100), 0.055, TOL);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 100, 100), 0.01, TOL);
  /* past the end it stays at min_lr; never increases */
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 150, 100), 0.01, TOL);
  double prev = 1;
  for (int s = 0; s <= 100; s++) {
    double lr = nn_schedule_lr(&c, 0.1, s, 100);
    ASSERT_TRUE(lr <= prev);
    prev = lr;
  }
}

static void test_step(void) {
  nn_schedule_cfg c = cfg_of("step");
  c.step_size = 3;
  c.gamma = 0.1;
  /* 10 steps per epoch; StepLR(step_size=3, gamma=0.1) per epoch:
   * [0.1, 0.1, 0.1, 0.010000000000000002, .., .., 0.0010000000000000002, ..,
   *  .., 0.00010000000000000003] */
  ASSERT_NEAR(lr_at(&c, 0, 10, 1000), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 29, 10, 1000), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 30, 10, 1000), 0.010000000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 59, 10, 1000), 0.010000000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 60, 10, 1000), 0.0010000000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 95, 10, 1000), 0.00010000000000000003, TOL);
  c.gamma = 0.5;
  ASSERT_NEAR(lr_at(&c, 31, 10, 1000), 0.05, TOL);
  ASSERT_NEAR(lr_at(&c, 61, 10, 1000), 0.025, TOL);
  ASSERT_NEAR(lr_at(&c, 99, 10, 1000), 0.0125, TOL);
}

static void test_multistep(void) {
  nn_schedule_cfg c = cfg_of("multistep");
  c.nmilestones = 2;
  c.milestones[0] = 2;
  c.milestones[1] = 5;
  /* 4 steps per epoch; MultiStepLR([2, 5], 0.1) per epoch:
   * [0.1, 0.1, 0.010000000000000002, .., .., 0.0010000000000000002, ..] */
  ASSERT_NEAR(lr_at(&c, 7, 4, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 8, 4, 100), 0.010000000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 19, 4, 100), 0.010000000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 20, 4, 100), 0.0010000000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 99, 4, 100), 0.0010000000000000002, TOL);
}

static void test_exponential(void) {
  nn_schedule_cfg c = cfg_of("exponential");
  c.gamma = 0.9;
  /* 5 steps per epoch; ExponentialLR(0.9): [0.1, 0.09000000000000001,
   * 0.08100000000000002, 0.07290000000000002, 0.06561000000000002] */
  ASSERT_NEAR(lr_at(&c, 0, 5, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 4, 5, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 5, 5, 100), 0.09000000000000001, TOL);
  ASSERT_NEAR(lr_at(&c, 17, 5, 100), 0.07290000000000002, TOL);
  ASSERT_NEAR(lr_at(&c, 24, 5, 100), 0.06561000000000002, TOL);
}

static void test_cosine_restarts(void) {
  nn_schedule_cfg c = cfg_of("cosine");
  c.restart_epochs = 2;
  c.restart_mult = 2;
  c.min_lr = 0.01;
  /* CosineAnnealingWarmRestarts(T_0=2, T_mult=2, eta_min=0.01) stepped with
   * epoch = step / 4: cycles are steps [0, 8), [8, 24), [24, 56), [56, 120) */
  const struct { int64_t step; double lr; } want[] = {
    {0, 0.1}, {4, 0.05500000000000001}, {7, 0.013425421036992097}, {8, 0.1},
    {16, 0.05500000000000001}, {23, 0.01086466238185463}, {24, 0.1},
    {40, 0.05500000000000001}, {55, 0.010216687299751143}, {56, 0.1},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    ASSERT_NEAR(lr_at(&c, want[i].step, 4, 400), want[i].lr, TOL);
  /* the last step of a cycle is the lowest, the next one is the restart */
  ASSERT_TRUE(lr_at(&c, 23, 4, 400) < lr_at(&c, 22, 4, 400));
  /* T_mult = 1: every cycle 2 epochs of 3 steps */
  c.restart_mult = 1;
  c.min_lr = 0;
  ASSERT_NEAR(lr_at(&c, 3, 3, 100), 0.05, TOL);
  ASSERT_NEAR(lr_at(&c, 6, 3, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 9, 3, 100), 0.05, TOL);
  ASSERT_NEAR(lr_at(&c, 12, 3, 100), 0.1, TOL);
  /* restarts continue past the run's end, as in PyTorch */
  ASSERT_NEAR(lr_at(&c, 600, 3, 100), 0.1, TOL);
}

static void test_one_cycle(void) {
  nn_schedule_cfg c = cfg_of("one_cycle");
  /* OneCycleLR(max_lr=0.1, total_steps=100): start max_lr / 25, peak at
   * step pct_start * 100 - 1 = 29, end 0.004 / 1e4 at step 99 */
  ASSERT_NEAR(lr_at(&c, 0, 10, 100), 0.0040000000000000036, TOL);
  ASSERT_NEAR(lr_at(&c, 10, 10, 100), 0.029516394846410082, TOL);
  ASSERT_NEAR(lr_at(&c, 29, 10, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 30, 10, 100), 0.09994965352845243, TOL);
  ASSERT_NEAR(lr_at(&c, 50, 10, 100), 0.0793893450575732, TOL);
  ASSERT_NEAR(lr_at(&c, 99, 10, 100), 4e-07, TOL);
  ASSERT_NEAR(lr_at(&c, 150, 10, 100), 4e-07, TOL); /* past the end: the last rate */
  /* steps per epoch do not matter */
  ASSERT_NEAR(lr_at(&c, 10, 1, 100), 0.029516394846410082, TOL);
  c.anneal_strategy[0] = '\0';
  snprintf(c.anneal_strategy, sizeof c.anneal_strategy, "linear");
  ASSERT_NEAR(lr_at(&c, 0, 10, 100), 0.004, TOL);
  ASSERT_NEAR(lr_at(&c, 10, 10, 100), 0.037103448275862067, TOL);
  ASSERT_NEAR(lr_at(&c, 29, 10, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 64, 10, 100), 0.0500002, TOL);
  ASSERT_NEAR(lr_at(&c, 99, 10, 100), 3.999999999976245e-07, TOL);
  snprintf(c.anneal_strategy, sizeof c.anneal_strategy, "cos");
  c.three_phase = 1;
  /* phases end at steps 29 (up), 58 (back to 0.004), 99 (down to 4e-7) */
  ASSERT_NEAR(lr_at(&c, 0, 10, 100), 0.0040000000000000036, TOL);
  ASSERT_NEAR(lr_at(&c, 29, 10, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 44, 10, 100), 0.04940133238789997, TOL);
  ASSERT_NEAR(lr_at(&c, 58, 10, 100), 0.004, TOL);
  ASSERT_NEAR(lr_at(&c, 70, 10, 100), 0.0032125295768510825, TOL);
  ASSERT_NEAR(lr_at(&c, 99, 10, 100), 4e-07, TOL);
}

/* One-cycle's momentum (PyTorch OneCycleLR cycle_momentum, base 0.85, max
 * 0.95; the values printed by torch 1.13 for SGD's momentum and Adam's
 * betas[0] over 100 steps). */
static void test_one_cycle_momentum(void) {
  nn_schedule_cfg c = cfg_of("one_cycle");
  ASSERT_EQ_INT(c.cycle_momentum, 1);
  ASSERT_NEAR(c.base_momentum, 0.85, 0);
  ASSERT_NEAR(c.max_momentum, 0.95, 0);
  ASSERT_EQ_INT(nn_schedule_cycles_momentum(&c), 1);
  const int64_t at[] = {0, 10, 29, 30, 44, 50, 58, 70, 99};
  const double cos2[] = {0.95, 0.9234204220349895, 0.85, 0.8500503466729342, 0.8609084258765984,
                         0.8706107373853763, 0.8866981577216662, 0.9133018422783337, 0.95};
  const double lin2[] = {0.95, 0.9155172413793103, 0.85, 0.8514285714285714, 0.8714285714285714,
                         0.88, 0.8914285714285713, 0.9085714285714286, 0.95};
  const double cos3[] = {0.95, 0.9234204220349895, 0.85, 0.850293102142282, 0.9027069454292709,
                         0.9323693142390913, 0.95, 0.95, 0.95};
  for (int i = 0; i < 9; i++) ASSERT_NEAR(nn_schedule_momentum_at(&c, at[i], 10, 100), cos2[i], 1e-15);
  ASSERT_NEAR(nn_schedule_momentum_at(&c, 150, 10, 100), 0.95, 1e-15); /* past the end */
  snprintf(c.anneal_strategy, sizeof c.anneal_strategy, "linear");
  for (int i = 0; i < 9; i++) ASSERT_NEAR(nn_schedule_momentum_at(&c, at[i], 10, 100), lin2[i], 1e-15);
  snprintf(c.anneal_strategy, sizeof c.anneal_strategy, "cos");
  c.three_phase = 1;
  for (int i = 0; i < 9; i++) ASSERT_NEAR(nn_schedule_momentum_at(&c, at[i], 10, 100), cos3[i], 1e-15);
  /* warmup holds the first value, then the cycle runs on its own clock */
  c.three_phase = 0;
  c.warmup_steps = 10;
  ASSERT_NEAR(nn_schedule_momentum_at(&c, 5, 10, 110), 0.95, 1e-15);
  ASSERT_NEAR(nn_schedule_momentum_at(&c, 20, 10, 110), cos2[1], 1e-15);
  c.warmup_steps = 0;
  /* off, or another type: nothing cycles */
  c.cycle_momentum = 0;
  ASSERT_EQ_INT(nn_schedule_cycles_momentum(&c), 0);
  nn_schedule_cfg k = cfg_of("cosine");
  ASSERT_EQ_INT(nn_schedule_cycles_momentum(&k), 0);
  /* the check: momenta in (0, 1) when cycling */
  c.cycle_momentum = 1;
  c.base_momentum = 1.0;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_schedule_check(&c, &err), NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "base_momentum");
  c.base_momentum = 0.85;
  c.max_momentum = 0;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_schedule_check(&c, &err), NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "max_momentum");
}

static void test_warmup(void) {
  /* cosine after 10 warmup steps: the cosine runs over the other 100 */
  nn_schedule_cfg c = cfg_of("cosine");
  c.warmup_steps = 10;
  ASSERT_NEAR(lr_at(&c, 0, 7, 110), 0.01, TOL);
  ASSERT_NEAR(lr_at(&c, 4, 7, 110), 0.05, TOL);
  ASSERT_NEAR(lr_at(&c, 9, 7, 110), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 10, 7, 110), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 35, 7, 110), 0.08535533905932738, TOL);
  ASSERT_NEAR(lr_at(&c, 60, 7, 110), 0.05, TOL);
  ASSERT_NEAR(lr_at(&c, 110, 7, 110), 0.0, TOL);
  /* step decay after 2 warmup epochs of 10 steps: its epoch 3 is epoch 5 */
  c = cfg_of("step");
  c.step_size = 3;
  c.gamma = 0.5;
  c.warmup_epochs = 2;
  ASSERT_NEAR(lr_at(&c, 0, 10, 1000), 0.005, TOL);
  ASSERT_NEAR(lr_at(&c, 19, 10, 1000), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 20, 10, 1000), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 49, 10, 1000), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 50, 10, 1000), 0.05, TOL);
  /* one_cycle after 10 warmup steps: warmup scales its first rate; the
   * cycle spans the remaining 90 steps (peak at its step 26) */
  c = cfg_of("one_cycle");
  c.warmup_steps = 10;
  ASSERT_NEAR(lr_at(&c, 0, 10, 100), 0.00040000000000000034, TOL);
  ASSERT_NEAR(lr_at(&c, 4, 10, 100), 0.0020000000000000018, TOL);
  ASSERT_NEAR(lr_at(&c, 36, 10, 100), 0.1, TOL);
  ASSERT_NEAR(lr_at(&c, 99, 10, 100), 4e-07, TOL);
  /* plateau: warmup multiplies the current scale */
  c = cfg_of("reduce_on_plateau");
  c.warmup_steps = 4;
  nn_plateau_state p = {.scale = 0.5, .best = 1, .bad_epochs = 0, .cooldown_left = 0};
  ASSERT_NEAR(nn_schedule_lr_at(&c, 0.1, 1, 10, 100, &p), 0.025, TOL);
  ASSERT_NEAR(nn_schedule_lr_at(&c, 0.1, 50, 10, 100, &p), 0.05, TOL);
  ASSERT_NEAR(nn_schedule_lr_at(&c, 0.1, 50, 10, 100, NULL), 0.1, TOL);
  /* the legacy call counts warmup_epochs in steps */
  c = cfg_of("constant");
  c.warmup_epochs = 4;
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 1, 100), 0.05, TOL);
}

/* Runs `n` epochs of metric values through a fresh plateau state, checking
 * the rate after each against want[]. */
static int plateau_run(const nn_schedule_cfg *c, double base, const double *vals,
                       const double *want, int n) {
  nn_plateau_state s;
  nn_plateau_init(&s, c);
  for (int i = 0; i < n; i++) {
    nn_plateau_update(&s, c, base, vals[i]);
    double lr = nn_schedule_lr_at(c, base, 0, 1, 100, &s);
    if (!(fabs(lr - want[i]) <= 1e-15 + 1e-12 * want[i])) {
      fprintf(stderr, "epoch %d: lr %.17g, expected %.17g\n", i, lr, want[i]);
      return -1;
    }
  }
  return 0;
}

static void test_plateau(void) {
  nn_schedule_cfg c = cfg_of("reduce_on_plateau");
  nn_plateau_state s;
  nn_plateau_init(&s, &c);
  ASSERT_NEAR(s.scale, 1, 0);
  ASSERT_TRUE(isinf(s.best) && s.best > 0);
  /* patience 2: reduced on the third bad epoch in a row */
  c.patience = 2;
  {
    const double v[] = {1.0, 0.9, 0.95, 0.92, 0.91, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9};
    const double w[] = {0.1, 0.1, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002,
                        0.010000000000000002, 0.010000000000000002, 0.0010000000000000002,
                        0.0010000000000000002, 0.0010000000000000002};
    ASSERT_OK(plateau_run(&c, 0.1, v, w, 11));
  }
  /* patience 1, cooldown 2: bad epochs during cooldown do not count */
  c.patience = 1;
  c.cooldown = 2;
  {
    const double v[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const double w[] = {0.1, 0.1, 0.010000000000000002, 0.010000000000000002,
                        0.010000000000000002, 0.010000000000000002, 0.0010000000000000002,
                        0.0010000000000000002, 0.0010000000000000002};
    ASSERT_OK(plateau_run(&c, 0.1, v, w, 9));
  }
  /* threshold 1e-4 (relative): 0.9999 is not better than 1.0 */
  c.patience = 0;
  c.cooldown = 0;
  {
    const double v[] = {1.0, 0.9999, 0.99989, 0.9998, 0.9, 0.89995};
    const double w[] = {0.1, 0.010000000000000002, 0.010000000000000002,
                        0.0010000000000000002, 0.0010000000000000002, 0.00010000000000000003};
    ASSERT_OK(plateau_run(&c, 0.1, v, w, 6));
  }
  /* min_lr bounds the rate */
  c.factor = 0.5;
  c.min_lr = 0.02;
  {
    const double v[] = {1, 1, 1, 1, 1, 1};
    const double w[] = {0.1, 0.05, 0.025, 0.02, 0.02, 0.02};
    ASSERT_OK(plateau_run(&c, 0.1, v, w, 6));
  }
  /* mode max (auto for an accuracy) */
  c.min_lr = 0;
  c.patience = 1;
  snprintf(c.monitor, sizeof c.monitor, "val_accuracy");
  ASSERT_EQ_INT(nn_plateau_maximizes(&c), 1);
  {
    const double v[] = {0.5, 0.6, 0.6, 0.59, 0.61, 0.7, 0.7};
    const double w[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05};
    ASSERT_OK(plateau_run(&c, 0.1, v, w, 7));
  }
  snprintf(c.mode, sizeof c.mode, "min");
  ASSERT_EQ_INT(nn_plateau_maximizes(&c), 0);
  /* PyTorch's eps: no reduction that lowers the rate by 1e-8 or less */
  c = cfg_of("reduce_on_plateau");
  c.patience = 0;
  {
    const double v[] = {1, 1, 1, 1, 1};
    const double w[] = {1e-06, 1e-07, 1e-08, 1e-08, 1e-08};
    ASSERT_OK(plateau_run(&c, 1e-6, v, w, 5));
  }
  /* the return value says whether the rate fell; NaN is a bad epoch */
  nn_plateau_init(&s, &c);
  ASSERT_EQ_INT(nn_plateau_update(&s, &c, 0.1, 2.0), 0);
  ASSERT_EQ_INT(nn_plateau_update(&s, &c, 0.1, NAN), 1);
  ASSERT_NEAR(s.best, 2.0, 0);
  ASSERT_EQ_INT(s.bad_epochs, 0);
  /* the state is plain data: a copy continues identically */
  nn_plateau_state copy = s;
  nn_plateau_update(&s, &c, 0.1, 3.0);
  nn_plateau_update(&copy, &c, 0.1, 3.0);
  ASSERT_TRUE(memcmp(&s, &copy, sizeof s) == 0);
  /* other types ignore the state */
  nn_schedule_cfg k = cfg_of("constant");
  ASSERT_NEAR(nn_schedule_lr_at(&k, 0.1, 5, 1, 10, &s), 0.1, 0);
}

/* 1 if cfg fails nn_schedule_check naming `where` with `text` in the message. */
static int check_fails(const nn_schedule_cfg *c, const char *where, const char *text) {
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_schedule_check(c, &err);
  if (rc != NN_EINVAL || strcmp(err.where, where) || !strstr(err.msg, text)) {
    fprintf(stderr, "rc %d where '%s' msg '%s'\n", rc, err.where, err.msg);
    return 0;
  }
  return 1;
}

static void test_check(void) {
  nn_schedule_cfg c = cfg_of("multistep");
  ASSERT_TRUE(check_fails(&c, "schedule.milestones", "needs at least one milestone"));
  c.nmilestones = 3;
  c.milestones[0] = 30;
  c.milestones[1] = 60;
  c.milestones[2] = 60;
  ASSERT_TRUE(check_fails(&c, "schedule.milestones", "milestones[2] = 60: expected more"));
  c.milestones[2] = 90;
  ASSERT_OK(nn_schedule_check(&c, NULL));
  c.milestones[0] = 0;
  ASSERT_TRUE(check_fails(&c, "schedule.milestones", "[0] = 0: expected an epoch"));

  c = cfg_of("step");
  ASSERT_TRUE(check_fails(&c, "schedule.step_size", "needs step_size >= 1"));
  c.step_size = 5;
  ASSERT_OK(nn_schedule_check(&c, NULL));
  c.gamma = 0;
  ASSERT_TRUE(check_fails(&c, "schedule.gamma", "expected a finite number > 0"));

  c = cfg_of("one_cycle");
  c.pct_start = 1;
  ASSERT_TRUE(check_fails(&c, "schedule.pct_start", "schedule.pct_start = 1: expected"));
  c.pct_start = 0.6;
  ASSERT_OK(nn_schedule_check(&c, NULL));
  c.three_phase = 1;
  ASSERT_TRUE(check_fails(&c, "schedule.pct_start", "three_phase"));
  c.pct_start = 0.3;
  c.div_factor = NAN;
  ASSERT_TRUE(check_fails(&c, "schedule.div_factor", "finite"));

  c = cfg_of("reduce_on_plateau");
  c.factor = 1;
  ASSERT_TRUE(check_fails(&c, "schedule.factor", "(0, 1)"));
  c.factor = 0.5;
  c.threshold = 1;
  ASSERT_TRUE(check_fails(&c, "schedule.threshold", "less than 1"));
  c.threshold = 1e-4;
  snprintf(c.monitor, sizeof c.monitor, "val_los");
  ASSERT_TRUE(check_fails(&c, "schedule.monitor", "\"val_los\": expected one of val_loss|"));

  c = cfg_of("cosine");
  c.warmup_steps = 100;
  c.warmup_epochs = 1;
  ASSERT_TRUE(check_fails(&c, "schedule.warmup_epochs", "set one of the two"));
  c.warmup_epochs = 0;
  c.restart_mult = 0;
  ASSERT_TRUE(check_fails(&c, "schedule.restart_mult", "[1, 1000]"));
  c = cfg_of("linear");
  ASSERT_TRUE(check_fails(&c, "schedule.type", "\"linear\": expected one of constant|"));
  /* an unterminated string field is reported, not read past */
  c = cfg_of("constant");
  memset(c.mode, 'x', sizeof c.mode);
  ASSERT_TRUE(check_fails(&c, "schedule.mode", "expected one of auto|min|max"));

  /* checks that need the run */
  nn_error err;
  nn_error_clear(&err);
  c = cfg_of("cosine");
  c.warmup_epochs = 10;
  ASSERT_EQ_INT(nn_schedule_check_run(&c, 0.1, 50, 500, &err), NN_EINVAL);
  ASSERT_STR_EQ(err.where, "schedule.warmup_epochs");
  ASSERT_STR_CONTAINS(err.msg, "warmup of 500 steps: expected fewer than the run's 500");
  c.warmup_epochs = 9;
  ASSERT_OK(nn_schedule_check_run(&c, 0.1, 50, 500, &err));
  c.min_lr = 0.2;
  ASSERT_EQ_INT(nn_schedule_check_run(&c, 0.1, 50, 500, &err), NN_EINVAL);
  ASSERT_STR_EQ(err.where, "schedule.min_lr");
  c = cfg_of("one_cycle");
  ASSERT_OK(nn_schedule_check_run(&c, 0.1, 2, 4, &err)); /* 0.3 * 4 = 1.2 > 1 */
  ASSERT_EQ_INT(nn_schedule_check_run(&c, 0.1, 3, 3, &err), NN_EINVAL);
  ASSERT_STR_EQ(err.where, "schedule.pct_start");
}

/* The section through the job parser, the key table and the protobuf. */
static void test_job_section(void) {
  static const char text[] =
      "[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
      "[schedule]\ntype = \"multistep\"\nmilestones = [3, 7, 11]\ngamma = 0.5\n"
      "warmup_steps = 20\nmonitor = \"val_accuracy\"\npatience = 4\nthree_phase = true\n"
      "anneal_strategy = \"linear\"\n";
  nn_job *a = calloc(2, sizeof *a);
  ASSERT_TRUE(a != NULL);
  nn_job *b = a + 1;
  nn_error err;
  nn_error_clear(&err);
  uint8_t *buf = NULL;
  size_t len = 0;
  int ok = nn_job_parse(a, text, sizeof text - 1, "job.toml", NULL, 0, &err) == 0;
  ok = ok && a->schedule.nmilestones == 3 && a->schedule.milestones[2] == 11;
  ok = ok && a->schedule.gamma == 0.5 && a->schedule.warmup_steps == 20;
  ok = ok && a->schedule.patience == 4 && a->schedule.three_phase == 1;
  ok = ok && !strcmp(a->schedule.monitor, "val_accuracy");
  ok = ok && a->schedule.pct_start == 0.3 && a->schedule.restart_mult == 1; /* defaults */
  ok = ok && nn_schedule_check(&a->schedule, &err) == 0;
  ok = ok && nn_job_pack(a, &buf, &len, &err) == 0;
  ok = ok && nn_job_unpack(b, buf, len, &err) == 0 && nn_job_equal(a, b);
  if (!ok) fprintf(stderr, "%s\n", err.msg);
  /* a wrong value in the file names its line and column */
  static const char bad_text[] = "[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\n"
                                 "units = 3\n[schedule]\npct_start = 1.5\n";
  int brc = nn_job_parse(b, bad_text, sizeof bad_text - 1, "job.toml", NULL, 0, &err);
  free(buf);
  free(a);
  ASSERT_TRUE(ok);
  ASSERT_EQ_INT(brc, NN_ESCHEMA);
  ASSERT_EQ_INT(err.line, 7);
  ASSERT_STR_CONTAINS(err.msg, "pct_start");
}

TEST_MAIN(TEST(test_defaults_check), TEST(test_constant), TEST(test_cosine), TEST(test_step),
          TEST(test_multistep), TEST(test_exponential), TEST(test_cosine_restarts),
          TEST(test_one_cycle), TEST(test_one_cycle_momentum), TEST(test_warmup), TEST(test_plateau), TEST(test_check),
          TEST(test_job_section))
