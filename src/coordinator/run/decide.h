/* decide.h: the coordinator's epoch decisions: early stopping beside the
 * reduce-on-plateau schedule, taken on rank 0 from the epoch's figures and
 * sent to every rank as one EpochControl message, so all ranks take the same
 * branch at the same step.
 *
 * Their state is one struct (nn_decide_state, run/decide_state.h), part of
 * every checkpoint's run state (nn_ckpt_state.decide), so a resumed run
 * decides exactly as the uninterrupted one. */
#ifndef NN_COORDINATOR_RUN_DECIDE_H
#define NN_COORDINATOR_RUN_DECIDE_H

#include <mpi.h>

#include "coordinator/run/decide_state.h"
#include "coordinator/job.h"
#include "coordinator/schedule.h"
#include "core/metrics.h"

/* What one epoch produced, as the decisions see it. */
typedef struct nn_epoch_figures {
  int epoch;                    /* 0-based */
  double train_loss, train_acc; /* reduced over the ranks */
  double train_fig[4];          /* the task's own training figures (task.h train_figs) */
  const nn_metrics_result *val; /* NULL: no validation this epoch */
} nn_epoch_figures;

/* What rank 0 decided, on every rank after nn_decide_share. */
typedef struct nn_decision {
  int stop;             /* early stopping ends the run */
  int improved;         /* the monitored value improved: write best.h5 */
  double monitored;     /* its value this epoch (NaN: not measured) */
} nn_decision;

void nn_decide_init(nn_decide_state *d, const nn_job *job);

/* 1 if early stopping's monitor improves upward (mode, or "auto" by name). */
int nn_es_maximizes(const nn_job_early_stopping *e);
/* The value of a monitor ("val_loss", "accuracy", ...) from the figures; NaN
 * when it is not measured this epoch. */
double nn_monitored_value(const char *name, const nn_epoch_figures *f);

/* Rank 0: update d from the epoch's figures and say what follows. */
nn_decision nn_decide_epoch(nn_decide_state *d, const nn_job *job, const nn_epoch_figures *f);

/* Send rank 0's state and decision to every rank (one EpochControl message,
 * every MPI call checked). Collective on comm. */
int nn_decide_share(nn_decide_state *d, nn_decision *dec, MPI_Comm comm, nn_error *err);

#endif
