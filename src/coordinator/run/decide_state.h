/* decide_state.h: the state of the coordinator's epoch decisions (early
 * stopping beside reduce-on-plateau, run/decide.h), one struct that lives in
 * the checkpoint's run state (coordinator/checkpoint.h) so a resumed run
 * decides exactly as the uninterrupted one. Plain data; no functions. */
#ifndef NN_COORDINATOR_RUN_DECIDE_STATE_H
#define NN_COORDINATOR_RUN_DECIDE_STATE_H

#include <stdint.h>

#include "coordinator/schedule.h"

typedef struct nn_es_state {
  double best;          /* best monitored value so far (NaN: none yet) */
  int32_t bad;          /* epochs without improvement */
  int32_t best_epoch;   /* epoch (1-based) of the best value, 0: none */
} nn_es_state;

typedef struct nn_decide_state {
  nn_plateau_state plateau; /* reduce-on-plateau (coordinator/schedule.h) */
  nn_es_state es;           /* early stopping */
} nn_decide_state;

#endif
