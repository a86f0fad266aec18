/* task.h: kinds of training, each one small ops table.
 *
 * A run is one task kind and one or more named replicas (run/replica.h). The
 * trainer (coordinator/train.c) builds the replicas the task names, then for
 * every global batch calls the task's step, and evaluates, checkpoints and
 * decides the same way whatever the kind: it knows no kind by name.
 *
 * Adding a kind: one file in run/tasks/ defining an nn_task_ops, and one row
 * in the table of task.c. The job chooses it with train.task, checked
 * against the table (nn_task_for_job), so nothing else lists the kinds. */
#ifndef NN_COORDINATOR_RUN_TASK_H
#define NN_COORDINATOR_RUN_TASK_H

#include "coordinator/job.h"
#include "coordinator/run/replica.h"
#include "worker/loader.h"
#include "worker/step.h"

#define NN_TASK_MAX_REPLICAS 4

typedef struct nn_task_ops {
  const char *name;        /* train.task value */
  const char *help;        /* one line for the docs */
  int test_only;           /* 1: exercised by the tests, not documented for users */
  int nreplicas;           /* replicas the kind trains */
  const char *replicas[NN_TASK_MAX_REPLICAS]; /* their names (checkpoint groups) */
  int eval_replica;        /* the replica validation, test figures and best.h5 use */
  /* One global batch: this rank's slice b at global step `step` and learning
   * rate lr. Adds the batch's figures to *st (the eval replica's loss and
   * accuracy). Every gradient sync it starts is finished before it returns:
   * one sync in flight at a time. */
  int (*step)(nn_replica *reps, const nn_batch *b, double lr, uint64_t step, nn_step_stats *st,
              nn_error *err);
} nn_task_ops;

/* The kind called name, or NULL. */
const nn_task_ops *nn_task_find(const char *name);
/* The kind the job's train.task names; NN_ESCHEMA naming the job file and
 * listing the kinds when there is none. */
int nn_task_for_job(const nn_job *job, const nn_task_ops **ops, nn_error *err);
/* NULL-terminated list of every kind, for choices and docs. */
const nn_task_ops *const *nn_task_kinds(void);

#endif
