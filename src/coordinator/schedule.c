/* schedule.c: learning-rate schedules (formulas and conventions in schedule.h
 * and docs/schedules.md).
 *
 * Everything here is a pure function of its arguments: no state, no I/O.
 * Cycle boundaries (SGDR restarts, epochs) are found with integer arithmetic
 * on steps, so a boundary never moves by a rounding error. */
#include "coordinator/schedule.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/keys.h"

#define SZ(member) sizeof(((nn_schedule_cfg *)0)->member)
#define OFF(member) offsetof(nn_schedule_cfg, member)

/* Indexed by nn_schedule_kind. */
static const char *const kind_names[] = {
  "constant", "step", "multistep", "exponential", "cosine", "one_cycle", "reduce_on_plateau",
};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

const nn_key nn_schedule_keys[] = {
  {.name = "type", .type = NN_KEY_ENUM, .offset = OFF(type), .size = SZ(type),
   .def = "\"constant\"",
   .choices = "constant|step|multistep|exponential|cosine|one_cycle|reduce_on_plateau",
   .help = "constant: optimizer.lr throughout; step: times gamma every step_size epochs; "
           "multistep: times gamma at each milestone epoch; exponential: times gamma every "
           "epoch; cosine: half a cosine from optimizer.lr to min_lr over the run (SGDR "
           "restarts with restart_epochs); one_cycle: up to optimizer.lr and down again "
           "(PyTorch OneCycleLR, per step); reduce_on_plateau: times factor when `monitor` "
           "stops improving. Formulas: docs/schedules.md."},
  {.name = "warmup_steps", .type = NN_KEY_INT64, .offset = OFF(warmup_steps),
   .size = sizeof(int64_t), .min = 0, .max = 9007199254740992.0, .def = "0",
   .help = "All types: linear warmup over this many steps, lr x (step + 1) / warmup_steps, "
           "after which the schedule starts its own clock; 0: none."},
  {.name = "warmup_epochs", .type = NN_KEY_INT, .offset = OFF(warmup_epochs),
   .size = sizeof(int), .min = 0, .max = 1000000, .def = "0",
   .help = "All types: warmup_steps given in epochs (warmup_epochs x steps per epoch); "
           "not together with warmup_steps."},
  {.name = "min_lr", .type = NN_KEY_FLOAT, .offset = OFF(min_lr), .size = sizeof(double),
   .min = 0, .max = INFINITY, .def = "0",
   .help = "cosine: the rate at the end of the run and of each restart cycle (eta_min); "
           "reduce_on_plateau: the rate is never reduced below it."},
  {.name = "gamma", .type = NN_KEY_FLOAT, .offset = OFF(gamma), .size = sizeof(double),
   .min = 0, .max = INFINITY, .flags = NN_KEY_MIN_EXCLUSIVE, .def = "0.1",
   .help = "step, multistep, exponential: the factor the rate is multiplied by at each "
           "decay."},
  {.name = "step_size", .type = NN_KEY_INT, .offset = OFF(step_size), .size = sizeof(int),
   .min = 0, .max = 1000000, .def = "0",
   .help = "step (required, >= 1): epochs between two decays by gamma."},
  {.name = "milestones", .type = NN_KEY_INT_LIST, .offset = OFF(milestones),
   .size = NN_SCHEDULE_MAX_MILESTONES, .min = 1, .max = 1000000,
   .count_offset = OFF(nmilestones),
   .help = "multistep (required): strictly increasing epochs at whose start the rate is "
           "multiplied by gamma, e.g. [30, 60, 90]."},
  {.name = "restart_epochs", .type = NN_KEY_INT, .offset = OFF(restart_epochs),
   .size = sizeof(int), .min = 0, .max = 1000000, .def = "0",
   .help = "cosine: length T_0 in epochs of the first SGDR cycle, after which the rate "
           "restarts at optimizer.lr; 0: one cosine over the whole run, no restarts."},
  {.name = "restart_mult", .type = NN_KEY_INT, .offset = OFF(restart_mult),
   .size = sizeof(int), .min = 1, .max = 1000, .def = "1",
   .help = "cosine with restart_epochs: each cycle is restart_mult times as long as the "
           "one before (T_mult)."},
  {.name = "pct_start", .type = NN_KEY_FLOAT, .offset = OFF(pct_start),
   .size = sizeof(double), .min = 0, .max = 1, .flags = NN_KEY_MIN_EXCLUSIVE, .def = "0.3",
   .help = "one_cycle: fraction of the steps spent raising the rate, in (0, 1)."},
  {.name = "div_factor", .type = NN_KEY_FLOAT, .offset = OFF(div_factor),
   .size = sizeof(double), .min = 0, .max = INFINITY, .flags = NN_KEY_MIN_EXCLUSIVE,
   .def = "25",
   .help = "one_cycle: the first rate is optimizer.lr / div_factor."},
  {.name = "final_div_factor", .type = NN_KEY_FLOAT, .offset = OFF(final_div_factor),
   .size = sizeof(double), .min = 0, .max = INFINITY, .flags = NN_KEY_MIN_EXCLUSIVE,
   .def = "10000",
   .help = "one_cycle: the last rate is the first rate / final_div_factor."},
  {.name = "anneal_strategy", .type = NN_KEY_ENUM, .offset = OFF(anneal_strategy),
   .size = SZ(anneal_strategy), .def = "\"cos\"", .choices = "cos|linear",
   .help = "one_cycle: shape of each phase, half a cosine or a straight line."},
  {.name = "three_phase", .type = NN_KEY_BOOL, .offset = OFF(three_phase),
   .size = sizeof(int), .def = "false",
   .help = "one_cycle: come back down to the first rate symmetrically, then anneal to the "
           "last rate (PyTorch three_phase; needs pct_start <= 0.5)."},
  {.name = "cycle_momentum", .type = NN_KEY_BOOL, .offset = OFF(cycle_momentum),
   .size = sizeof(int), .def = "true",
   .help = "one_cycle: also cycle the optimizer's momentum inversely to the rate, from "
           "max_momentum down to base_momentum and back (Smith 2018; PyTorch cycle_momentum): "
           "SGD and RMSprop momentum when optimizer.momentum > 0, Adam/AdamW beta1; other "
           "optimizers have none to cycle."},
  {.name = "base_momentum", .type = NN_KEY_FLOAT, .offset = OFF(base_momentum),
   .size = sizeof(double), .min = 0, .max = 1,
   .flags = NN_KEY_MIN_EXCLUSIVE | NN_KEY_ZERO_ABSENT, .def = "0.85",
   .help = "one_cycle with cycle_momentum: the momentum (or beta1) at the peak rate, in (0, 1)."},
  {.name = "max_momentum", .type = NN_KEY_FLOAT, .offset = OFF(max_momentum),
   .size = sizeof(double), .min = 0, .max = 1,
   .flags = NN_KEY_MIN_EXCLUSIVE | NN_KEY_ZERO_ABSENT, .def = "0.95",
   .help = "one_cycle with cycle_momentum: the momentum (or beta1) at the first and last "
           "steps, in (0, 1)."},
  {.name = "monitor", .type = NN_KEY_ENUM, .offset = OFF(monitor), .size = SZ(monitor),
   .def = "\"val_loss\"",
   .choices = "val_loss|val_accuracy|val_macro_f1|val_top_k_accuracy|val_roc_auc|val_map|"
              "val_mse|val_mae|loss|accuracy|val_auc",
   .help = "reduce_on_plateau: the metric watched after each validation (val_*: on the "
           "validation set; loss, accuracy: the epoch's training averages); the same names "
           "as early_stopping.monitor."},
  {.name = "mode", .type = NN_KEY_ENUM, .offset = OFF(mode), .size = SZ(mode),
   .def = "\"auto\"", .choices = "auto|min|max",
   .help = "reduce_on_plateau: min: lower is better; max: higher is better; auto: max "
           "for accuracy, F1, AUC and mAP, min otherwise."},
  {.name = "factor", .type = NN_KEY_FLOAT, .offset = OFF(factor), .size = sizeof(double),
   .min = 0, .max = 1, .flags = NN_KEY_MIN_EXCLUSIVE, .def = "0.1",
   .help = "reduce_on_plateau: the rate is multiplied by factor, in (0, 1), on a plateau."},
  {.name = "patience", .type = NN_KEY_INT, .offset = OFF(patience), .size = sizeof(int),
   .min = 0, .max = 1000000, .def = "10",
   .help = "reduce_on_plateau: epochs without improvement tolerated; the rate drops "
           "after patience + 1 of them."},
  {.name = "threshold", .type = NN_KEY_FLOAT, .offset = OFF(threshold),
   .size = sizeof(double), .min = 0, .max = INFINITY, .def = "0.0001",
   .help = "reduce_on_plateau: relative change that counts as an improvement (a loss "
           "must fall below best x (1 - threshold))."},
  {.name = "cooldown", .type = NN_KEY_INT, .offset = OFF(cooldown), .size = sizeof(int),
   .min = 0, .max = 1000000, .def = "0",
   .help = "reduce_on_plateau: epochs after a reduction during which bad epochs are not "
           "counted."},
  {0},
};

int nn_schedule_parse_kind(const char *type) {
  for (int i = 0; i < NKINDS; i++)
    if (!strcmp(type, kind_names[i])) return i;
  return -1;
}

const char *nn_schedule_type_name(nn_schedule_kind k) {
  return (int)k >= 0 && (int)k < NKINDS ? kind_names[k] : "?";
}

/* ---- validation ------------------------------------------------------------ */

/* Fill err for schedule.<key>; always returns NN_EINVAL. */
static int bad(nn_error *err, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(nn_error *err, const char *key, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nn_error_set(err, NN_EINVAL, "schedule.%s%s", key, msg);
  if (err) snprintf(err->where, sizeof err->where, "schedule.%s", key);
  return NN_EINVAL;
}

/* A char[n] field as a NUL-terminated string (the field may lack one). */
static const char *field_str(const char *f, size_t n, char *buf) {
  memcpy(buf, f, n);
  buf[n] = '\0';
  return buf;
}

/* Warmup, step and multistep keys; every value in its key's range, whatever
 * the type (the negated forms also reject NaN). */
static int check_decay_keys(const nn_schedule_cfg *c, nn_schedule_kind kind, nn_error *err) {
  if (c->warmup_steps < 0 || c->warmup_steps > (int64_t)1 << 53)
    return bad(err, "warmup_steps", " = %lld: expected an integer in [0, 2^53]",
               (long long)c->warmup_steps);
  if (c->warmup_epochs < 0 || c->warmup_epochs > 1000000)
    return bad(err, "warmup_epochs", " = %d: expected an integer in [0, 1000000]",
               c->warmup_epochs);
  if (c->warmup_steps > 0 && c->warmup_epochs > 0)
    return bad(err, "warmup_epochs",
               " = %d: expected 0 when schedule.warmup_steps (%lld) is given; set one of "
               "the two",
               c->warmup_epochs, (long long)c->warmup_steps);
  if (!(c->min_lr >= 0) || !isfinite(c->min_lr))
    return bad(err, "min_lr", " = %g: expected a finite number >= 0", c->min_lr);
  if (!(c->gamma > 0) || !isfinite(c->gamma))
    return bad(err, "gamma", " = %g: expected a finite number > 0", c->gamma);
  if (c->step_size < 0 || c->step_size > 1000000)
    return bad(err, "step_size", " = %d: expected an integer in [0, 1000000]", c->step_size);
  if (kind == NN_SCHED_STEP && c->step_size < 1)
    return bad(err, "step_size",
               " = %d: type \"step\" needs step_size >= 1 (epochs between decays)",
               c->step_size);
  if (c->nmilestones < 0 || c->nmilestones > NN_SCHEDULE_MAX_MILESTONES)
    return bad(err, "milestones", ": %d milestones: expected at most %d", c->nmilestones,
               NN_SCHEDULE_MAX_MILESTONES);
  for (int i = 0; i < c->nmilestones; i++) {
    if (c->milestones[i] < 1 || c->milestones[i] > 1000000)
      return bad(err, "milestones", "[%d] = %d: expected an epoch in [1, 1000000]", i,
                 c->milestones[i]);
    if (i > 0 && c->milestones[i] <= c->milestones[i - 1])
      return bad(err, "milestones",
                 "[%d] = %d: expected more than the milestone before it (%d); milestones "
                 "must increase",
                 i, c->milestones[i], c->milestones[i - 1]);
  }
  if (kind == NN_SCHED_MULTISTEP && c->nmilestones == 0)
    return bad(err, "milestones",
               ": type \"multistep\" needs at least one milestone, e.g. [30, 60]");
  return 0;
}

/* Warm restarts and one-cycle keys. */
static int check_cycle_keys(const nn_schedule_cfg *c, nn_schedule_kind kind, nn_error *err) {
  if (c->restart_epochs < 0 || c->restart_epochs > 1000000)
    return bad(err, "restart_epochs", " = %d: expected an integer in [0, 1000000]",
               c->restart_epochs);
  if (c->restart_mult < 1 || c->restart_mult > 1000)
    return bad(err, "restart_mult", " = %d: expected an integer in [1, 1000]",
               c->restart_mult);
  if (!(c->pct_start > 0 && c->pct_start < 1))
    return bad(err, "pct_start", " = %g: expected a number in (0, 1)", c->pct_start);
  if (kind == NN_SCHED_ONE_CYCLE && c->three_phase && !(c->pct_start <= 0.5))
    return bad(err, "pct_start",
               " = %g: expected at most 0.5 with three_phase = true (the rise and the fall "
               "each take pct_start of the run)",
               c->pct_start);
  if (kind == NN_SCHED_ONE_CYCLE && c->cycle_momentum) {
    if (!(c->base_momentum > 0 && c->base_momentum < 1))
      return bad(err, "base_momentum", " = %g: expected a number in (0, 1)", c->base_momentum);
    if (!(c->max_momentum > 0 && c->max_momentum < 1))
      return bad(err, "max_momentum", " = %g: expected a number in (0, 1)", c->max_momentum);
  }
  if (!(c->div_factor > 0) || !isfinite(c->div_factor))
    return bad(err, "div_factor", " = %g: expected a finite number > 0", c->div_factor);
  if (!(c->final_div_factor > 0) || !isfinite(c->final_div_factor))
    return bad(err, "final_div_factor", " = %g: expected a finite number > 0",
               c->final_div_factor);
  if (c->three_phase != 0 && c->three_phase != 1)
    return bad(err, "three_phase", " = %d: expected true or false", c->three_phase);
  return 0;
}

/* Reduce-on-plateau keys. */
static int check_plateau_keys(const nn_schedule_cfg *c, nn_schedule_kind kind, nn_error *err) {
  if (!(c->factor > 0 && c->factor < 1))
    return bad(err, "factor", " = %g: expected a number in (0, 1)", c->factor);
  if (c->patience < 0 || c->patience > 1000000)
    return bad(err, "patience", " = %d: expected an integer in [0, 1000000]", c->patience);
  if (!(c->threshold >= 0) || !isfinite(c->threshold))
    return bad(err, "threshold", " = %g: expected a finite number >= 0", c->threshold);
  if (kind == NN_SCHED_PLATEAU && !nn_plateau_maximizes(c) && !(c->threshold < 1))
    return bad(err, "threshold",
               " = %g: expected less than 1 in mode min (a relative improvement of 100%% "
               "or more is never reached)",
               c->threshold);
  if (c->cooldown < 0 || c->cooldown > 1000000)
    return bad(err, "cooldown", " = %d: expected an integer in [0, 1000000]", c->cooldown);
  return 0;
}

int nn_schedule_check(const nn_schedule_cfg *c, nn_error *err) {
  char buf[64]; /* > the largest char field of nn_schedule_cfg */
  /* strings, in table order */
  for (const nn_key *k = nn_schedule_keys; k->name; k++) {
    if (k->type != NN_KEY_ENUM) continue;
    const char *s = field_str((const char *)c + k->offset, k->size, buf);
    if (strlen(s) >= k->size || nn_choice_index(k->choices, s) < 0)
      return bad(err, k->name, " = \"%s\": expected one of %s", s, k->choices);
  }
  nn_schedule_kind kind = (nn_schedule_kind)nn_schedule_parse_kind(c->type);

  int rc = check_decay_keys(c, kind, err);
  if (!rc) rc = check_cycle_keys(c, kind, err);
  if (!rc) rc = check_plateau_keys(c, kind, err);
  return rc;
}

/* Steps of linear warmup for a run with spe steps per epoch. */
static int64_t warmup_len(const nn_schedule_cfg *c, int64_t spe) {
  return c->warmup_steps > 0 ? c->warmup_steps : (int64_t)c->warmup_epochs * spe;
}

int nn_schedule_check_run(const nn_schedule_cfg *c, double base, int64_t steps_per_epoch,
                          int64_t total_steps, nn_error *err) {
  int rc = nn_schedule_check(c, err);
  if (rc) return rc;
  int64_t spe = steps_per_epoch < 1 ? 1 : steps_per_epoch;
  int64_t w = warmup_len(c, spe);
  if (w > 0 && w >= total_steps)
    return bad(err, c->warmup_steps > 0 ? "warmup_steps" : "warmup_epochs",
               ": warmup of %lld steps: expected fewer than the run's %lld steps",
               (long long)w, (long long)total_steps);
  nn_schedule_kind kind = (nn_schedule_kind)nn_schedule_parse_kind(c->type);
  if (kind == NN_SCHED_COSINE && c->min_lr > base)
    return bad(err, "min_lr", " = %g: expected at most optimizer.lr (%g)", c->min_lr, base);
  if (kind == NN_SCHED_ONE_CYCLE && !(c->pct_start * (double)(total_steps - w) > 1))
    return bad(err, "pct_start",
               " = %g: expected more than 1/%lld, so that the rise of a one_cycle run of "
               "%lld steps (after warmup) lasts at least 1 step",
               c->pct_start, (long long)(total_steps - w), (long long)(total_steps - w));
  return 0;
}

/* ---- reduce_on_plateau ----------------------------------------------------- */

int nn_monitor_maximizes(const char *mode, const char *monitor) {
  if (!strcmp(mode, "max")) return 1;
  if (!strcmp(mode, "min")) return 0;
  return strstr(monitor, "accuracy") || strstr(monitor, "f1") || strstr(monitor, "auc") ||
         !strcmp(monitor, "val_map");
}

int nn_plateau_maximizes(const nn_schedule_cfg *c) {
  return nn_monitor_maximizes(c->mode, c->monitor);
}

void nn_plateau_init(nn_plateau_state *s, const nn_schedule_cfg *c) {
  s->scale = 1;
  s->best = nn_plateau_maximizes(c) ? -INFINITY : INFINITY;
  s->bad_epochs = 0;
  s->cooldown_left = 0;
}

int nn_plateau_update(nn_plateau_state *s, const nn_schedule_cfg *c, double base,
                      double value) {
  int better = nn_plateau_maximizes(c) ? value > s->best * (1 + c->threshold)
                                       : value < s->best * (1 - c->threshold);
  if (better) {
    s->best = value;
    s->bad_epochs = 0;
  } else {
    s->bad_epochs++;
  }
  if (s->cooldown_left > 0) {
    s->cooldown_left--;
    s->bad_epochs = 0;
  }
  if (s->bad_epochs <= c->patience) return 0;
  s->cooldown_left = c->cooldown;
  s->bad_epochs = 0;
  if (!(base > 0)) { /* no rate to compare with min_lr: scale alone */
    s->scale *= c->factor;
    return 1;
  }
  double old_lr = base * s->scale, new_lr = fmax(old_lr * c->factor, c->min_lr);
  if (!(old_lr - new_lr > 1e-8)) return 0;
  s->scale = new_lr / base;
  return 1;
}

/* ---- the rate -------------------------------------------------------------- */

/* Number of milestones <= epoch (milestones increase). */
static int milestones_passed(const nn_schedule_cfg *c, int64_t epoch) {
  int n = 0;
  while (n < c->nmilestones && c->milestones[n] <= epoch) n++;
  return n;
}

/* Half a cosine from `hi` at t = 0 down to `lo` at t = 1. */
static double cos_anneal(double hi, double lo, double t) {
  return lo + (hi - lo) * 0.5 * (1.0 + cos(M_PI * t));
}

/* SGDR: step s (>= 0) with spe steps per epoch, first cycle t0 epochs, each
 * next one mult times longer. Cycle bounds are in whole steps. */
static double sgdr(const nn_schedule_cfg *c, double base, int64_t s, int64_t spe) {
  int64_t start = 0, len = (int64_t)c->restart_epochs * spe;
  while (s - start >= len) {
    start += len;
    if (c->restart_mult > 1) {
      if (len > INT64_MAX / c->restart_mult) break; /* last cycle never ends */
      len *= c->restart_mult;
    }
  }
  return cos_anneal(base, c->min_lr, (double)(s - start) / (double)len);
}

/* OneCycleLR at step s (0-based) of a run of n steps: the rate (which = 0)
 * or the momentum (which = 1; PyTorch's cycle_momentum: down from
 * max_momentum to base_momentum while the rate rises, and back up). */
static double one_cycle(const nn_schedule_cfg *c, double base, int64_t s, int64_t n, int which) {
  double initial = base / c->div_factor, final = initial / c->final_div_factor;
  double lo = c->base_momentum, hi = c->max_momentum;
  double pn = c->pct_start * (double)n;
  /* phases: (end step, start rate, end rate, start momentum, end momentum),
   * as PyTorch builds them */
  double end[3], from[3], to[3], mfrom[3], mto[3];
  int nph;
  if (c->three_phase) {
    end[0] = pn - 1, from[0] = initial, to[0] = base, mfrom[0] = hi, mto[0] = lo;
    end[1] = 2 * pn - 2, from[1] = base, to[1] = initial, mfrom[1] = lo, mto[1] = hi;
    end[2] = (double)n - 1, from[2] = initial, to[2] = final, mfrom[2] = hi, mto[2] = hi;
    nph = 3;
  } else {
    end[0] = pn - 1, from[0] = initial, to[0] = base, mfrom[0] = hi, mto[0] = lo;
    end[1] = (double)n - 1, from[1] = base, to[1] = final, mfrom[1] = lo, mto[1] = hi;
    nph = 2;
  }
  double x = (double)(s > n - 1 ? n - 1 : s), start = 0;
  for (int i = 0; i < nph; i++) {
    if (x <= end[i] || i == nph - 1) {
      double t = end[i] > start ? (x - start) / (end[i] - start) : 1.0;
      double a = which ? mfrom[i] : from[i], b = which ? mto[i] : to[i];
      if (!strcmp(c->anneal_strategy, "linear")) return a + (b - a) * t;
      return cos_anneal(a, b, t);
    }
    start = end[i];
  }
  return which ? hi : final; /* not reached */
}

/* The main schedule (no warmup) at step s >= 0 of a run of n steps. */
static double main_lr(const nn_schedule_cfg *c, double base, int64_t s, int64_t spe,
                      int64_t n, const nn_plateau_state *plateau) {
  int64_t epoch = s / spe;
  switch (nn_schedule_parse_kind(c->type)) {
  case NN_SCHED_STEP:
    return c->step_size > 0 ? base * pow(c->gamma, (double)(epoch / c->step_size)) : base;
  case NN_SCHED_MULTISTEP: return base * pow(c->gamma, milestones_passed(c, epoch));
  case NN_SCHED_EXPONENTIAL: return base * pow(c->gamma, (double)epoch);
  case NN_SCHED_COSINE:
    if (c->restart_epochs > 0) return sgdr(c, base, s, spe);
    if (n <= 0) return base;
    return cos_anneal(base, c->min_lr, (double)(s > n ? n : s) / (double)n);
  case NN_SCHED_ONE_CYCLE: return n > 0 ? one_cycle(c, base, s, n, 0) : base;
  case NN_SCHED_PLATEAU: return plateau ? base * plateau->scale : base;
  default: return base;
  }
}

double nn_schedule_lr_at(const nn_schedule_cfg *c, double base, int64_t step,
                         int64_t steps_per_epoch, int64_t total_steps,
                         const nn_plateau_state *plateau) {
  int64_t spe = steps_per_epoch < 1 ? 1 : steps_per_epoch;
  int64_t w = warmup_len(c, spe), s = step < 0 ? 0 : step;
  int64_t n = total_steps - w;
  if (s < w) return main_lr(c, base, 0, spe, n, plateau) * (double)(s + 1) / (double)w;
  return main_lr(c, base, s - w, spe, n, plateau);
}

double nn_schedule_lr(const nn_schedule_cfg *c, double base, int64_t step, int64_t total) {
  return nn_schedule_lr_at(c, base, step, 1, total, NULL);
}

int nn_schedule_cycles_momentum(const nn_schedule_cfg *c) {
  return nn_schedule_parse_kind(c->type) == NN_SCHED_ONE_CYCLE && c->cycle_momentum;
}

double nn_schedule_momentum_at(const nn_schedule_cfg *c, int64_t step, int64_t steps_per_epoch,
                               int64_t total_steps) {
  int64_t spe = steps_per_epoch < 1 ? 1 : steps_per_epoch;
  int64_t w = warmup_len(c, spe), s = step < 0 ? 0 : step;
  int64_t n = total_steps - w;
  if (n <= 0) return c->max_momentum;
  return one_cycle(c, 1.0, s < w ? 0 : s - w, n, 1);
}
