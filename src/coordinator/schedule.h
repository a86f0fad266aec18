/* schedule.h: the learning-rate schedule, a pure function of the step.
 *
 * The coordinator's decision of the learning rate at every step is computed
 * from (the [schedule] section, the base optimizer.lr, the global step, the
 * run's total steps): every rank computes the same value from the same
 * inputs, so no message is needed, and a resumed run gets the same rates. */
#ifndef NN_COORDINATOR_SCHEDULE_H
#define NN_COORDINATOR_SCHEDULE_H

#include <stdint.h>

#include "core/keys.h"

typedef struct nn_schedule_cfg {
  char type[16];      /* "constant" | "cosine" */
  double min_lr;      /* cosine: the rate reached at the last step */
} nn_schedule_cfg;

/* Key table of the [schedule] section (offsets into nn_schedule_cfg). */
extern const nn_key nn_schedule_keys[];

/* Learning rate for the update of global step `step` (0-based) of a run of
 * `total` steps, with base rate `base`. */
double nn_schedule_lr(const nn_schedule_cfg *c, double base, int64_t step, int64_t total);

#endif
