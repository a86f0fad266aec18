/* schedule.h: learning-rate schedules, pure functions of the step.
 *
 * The learning rate of every optimizer step is computed from (the [schedule]
 * section, the base rate optimizer.lr, the global step, the steps per epoch,
 * the run's total steps) and, for reduce_on_plateau only, a small state
 * struct updated once per epoch from a validation metric. Every rank computes
 * the same value from the same inputs, so no message is needed, and a resumed
 * run gets the same rates (a checkpoint saves the plateau state, nothing else).
 *
 * Types, with PyTorch's semantics where PyTorch has the schedule (e = epoch,
 * s = step, counted on the schedule's own clock, see "Warmup" below):
 *   constant           lr = base
 *   step               lr = base * gamma^floor(e / step_size)        (StepLR)
 *   multistep          lr = base * gamma^#{milestones m : m <= e}    (MultiStepLR)
 *   exponential        lr = base * gamma^e                           (ExponentialLR)
 *   cosine             lr = min_lr + (base - min_lr) (1 + cos(pi s / S)) / 2 per step
 *                      over the S steps of the run              (CosineAnnealingLR);
 *                      with restart_epochs = T_0 > 0: SGDR restarts, cycle i lasting
 *                      T_0 * restart_mult^i epochs, t the fractional epoch s / spe
 *                      (CosineAnnealingWarmRestarts stepped with epoch + i / iters)
 *   one_cycle          OneCycleLR over S steps, max_lr = base, per step
 *   reduce_on_plateau  lr = base * state.scale (ReduceLROnPlateau, 'rel' threshold)
 * Epoch-based types (step, multistep, exponential) use e = floor(s / spe): the
 * rate changes at epoch boundaries, as with a per-epoch scheduler.step().
 *
 * Warmup (any type): W = warmup_steps, or warmup_epochs * steps_per_epoch.
 *   s < W:   lr = main(0) * (s + 1) / W
 *   s >= W:  lr = main(s - W), the main schedule on a run of total - W steps.
 * That is PyTorch's SequentialLR([LinearLR(start_factor=1/W, total_iters=W-1),
 * main], milestones=[W]): the main schedule's clock starts after warmup, so
 * warmup_epochs = 5 with step_size = 30 first decays at epoch 35.
 * docs/schedules.md has every formula and an example of each type. */
#ifndef NN_COORDINATOR_SCHEDULE_H
#define NN_COORDINATOR_SCHEDULE_H

#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"

#define NN_SCHEDULE_MAX_MILESTONES 64

typedef enum nn_schedule_kind {
  NN_SCHED_CONSTANT,
  NN_SCHED_STEP,
  NN_SCHED_MULTISTEP,
  NN_SCHED_EXPONENTIAL,
  NN_SCHED_COSINE,
  NN_SCHED_ONE_CYCLE,
  NN_SCHED_PLATEAU,
} nn_schedule_kind;

/* The [schedule] section. Which keys each type reads is in nn_schedule_keys'
 * help and docs/schedules.md; the others are ignored (but still checked). */
typedef struct nn_schedule_cfg {
  char type[24];            /* nn_schedule_type_name() of an nn_schedule_kind */
  int64_t warmup_steps;     /* any type: linear warmup steps, 0 = none */
  int warmup_epochs;        /* any type: warmup in epochs (not with warmup_steps) */
  double min_lr;            /* cosine: final rate (eta_min); plateau: lower bound */
  double gamma;             /* step, multistep, exponential: decay factor */
  int step_size;            /* step: epochs between decays (>= 1 for step) */
  int nmilestones;          /* multistep: count of milestones */
  int milestones[NN_SCHEDULE_MAX_MILESTONES]; /* multistep: epochs, increasing */
  int restart_epochs;       /* cosine: T_0 in epochs, 0 = no restarts */
  int restart_mult;         /* cosine: T_mult, cycle i lasts T_0 * T_mult^i epochs */
  double pct_start;         /* one_cycle: fraction of the steps spent rising */
  double div_factor;        /* one_cycle: initial lr = base / div_factor */
  double final_div_factor;  /* one_cycle: final lr = initial lr / final_div_factor */
  char anneal_strategy[8];  /* one_cycle: "cos" | "linear" */
  int three_phase;          /* one_cycle: PyTorch's three_phase */
  int cycle_momentum;       /* one_cycle: cycle momentum / beta1 too */
  double base_momentum;     /* one_cycle: momentum at the peak rate */
  double max_momentum;      /* one_cycle: momentum at the ends */
  char monitor[32];         /* plateau: a metric name, as early_stopping.monitor */
  char mode[8];             /* plateau: "auto" | "min" | "max" */
  double factor;            /* plateau: lr multiplier on a plateau, in (0, 1) */
  int patience;             /* plateau: bad epochs tolerated before reducing */
  double threshold;         /* plateau: relative improvement that counts */
  int cooldown;             /* plateau: epochs after a reduction with no counting */
} nn_schedule_cfg;

/* Key table of the [schedule] section (offsets into nn_schedule_cfg). */
extern const nn_key nn_schedule_keys[];

/* The kind named by `type`, or -1 if it names none. */
int nn_schedule_parse_kind(const char *type);
/* The name of a kind ("multistep"), or "?" for a value out of range. */
const char *nn_schedule_type_name(nn_schedule_kind k);

/* Check a configuration on its own: known type, every value in its key's
 * range, and the keys the type needs: step_size >= 1 for step; for multistep
 * 1..NN_SCHEDULE_MAX_MILESTONES milestones, each >= 1 and strictly
 * increasing; pct_start in (0, 1) (<= 0.5 with three_phase); factor in (0, 1);
 * not both warmup_steps and warmup_epochs. Returns 0, or NN_EINVAL with
 * err->where = "schedule.<key>" and a one-line message naming the key, its
 * value and what was expected. */
int nn_schedule_check(const nn_schedule_cfg *c, nn_error *err);

/* Checks that need the run: nn_schedule_check, then warmup shorter than the
 * run, min_lr <= base for cosine, and for one_cycle pct_start * (steps after
 * warmup) > 1 (PyTorch needs a first phase of at least one step). The trainer
 * calls this once it knows steps_per_epoch (>= 1) and total_steps. Same
 * return and error convention as nn_schedule_check. */
int nn_schedule_check_run(const nn_schedule_cfg *c, double base, int64_t steps_per_epoch,
                          int64_t total_steps, nn_error *err);

/* ReduceLROnPlateau's state: a plain struct so a checkpoint can save and
 * restore it field by field. best is +inf (mode min) or -inf (mode max) at
 * the start; ±inf must survive the round trip. */
typedef struct nn_plateau_state {
  double scale;       /* current lr / base lr; 1 at the start */
  double best;        /* best monitored value so far */
  int bad_epochs;     /* epochs since `best` without a significant improvement */
  int cooldown_left;  /* epochs of cooldown remaining (bad epochs are not counted) */
} nn_plateau_state;

/* 1 if the monitored value improves when it grows: mode "max", or mode
 * "auto" with an accuracy, F1 or AUC monitor; 0 otherwise. */
int nn_plateau_maximizes(const nn_schedule_cfg *c);
/* The rule behind it, shared with early stopping: 1 for mode "max", 0 for
 * "min", and for "auto" 1 if the monitor is an accuracy, F1 or AUC. */
int nn_monitor_maximizes(const char *mode, const char *monitor);

/* Start state: scale 1, best ±inf by mode, counters 0. */
void nn_plateau_init(nn_plateau_state *s, const nn_schedule_cfg *c);

/* One epoch's update with the monitored metric `value` (the value of
 * c->monitor at the end of the epoch), exactly as PyTorch's
 * ReduceLROnPlateau.step(value) with threshold_mode 'rel':
 *   better = value < best * (1 - threshold)   (min)
 *            value > best * (1 + threshold)   (max)
 *   if better: best = value, bad_epochs = 0, else bad_epochs += 1
 *   if cooldown_left > 0: cooldown_left -= 1, bad_epochs = 0
 *   if bad_epochs > patience: reduce, cooldown_left = cooldown, bad_epochs = 0
 * where reduce sets the rate to max(lr * factor, min_lr), and leaves it
 * unchanged if that lowers it by 1e-8 or less (PyTorch's eps); lr = base *
 * scale. A NaN value counts as a bad epoch. Returns 1 if the rate was
 * lowered, else 0. */
int nn_plateau_update(nn_plateau_state *s, const nn_schedule_cfg *c, double base,
                      double value);

/* The learning rate of global step `step` (0-based: the update made by the
 * step-th batch of the run) for a checked cfg.
 *   base             optimizer.lr (> 0); one_cycle's max_lr
 *   steps_per_epoch  optimizer steps in one epoch (values < 1 are taken as 1)
 *   total_steps      steps of the whole run (epochs * steps_per_epoch); cosine
 *                    and one_cycle span it; steps past the end keep the last
 *                    rate of the run (cosine: min_lr; one_cycle: its final rate)
 *   plateau          reduce_on_plateau's state after the last finished epoch,
 *                    or NULL (= the start state); ignored by the other types
 * Pure: the same arguments give the same double on every rank. The trainer
 * calls it before every optimizer step and nn_plateau_update after each
 * epoch's validation. */
double nn_schedule_lr_at(const nn_schedule_cfg *c, double base, int64_t step,
                         int64_t steps_per_epoch, int64_t total_steps,
                         const nn_plateau_state *plateau);

/* 1 if the schedule sets the optimizer's momentum each step (one_cycle with
 * cycle_momentum); the trainer then applies nn_schedule_momentum_at to the
 * optimizers that have one (docs/schedules.md#one_cycle). */
int nn_schedule_cycles_momentum(const nn_schedule_cfg *c);
/* One-cycle's momentum at global step `step` (PyTorch OneCycleLR with
 * cycle_momentum: max_momentum -> base_momentum over the rising phase, back
 * to max_momentum over the falling one; three_phase: down, up, then flat at
 * max_momentum), with the same step clock as nn_schedule_lr_at (warmup steps
 * hold the first value). Pure. */
double nn_schedule_momentum_at(const nn_schedule_cfg *c, int64_t step, int64_t steps_per_epoch,
                               int64_t total_steps);

/* Older form: nn_schedule_lr_at with steps_per_epoch = 1 (every step counts
 * as an epoch, so epoch-based keys are in steps) and no plateau state. Right
 * for constant and cosine without restarts, whose rates do not depend on
 * steps_per_epoch; new code should call nn_schedule_lr_at. */
double nn_schedule_lr(const nn_schedule_cfg *c, double base, int64_t step, int64_t total);

#endif
