/* supervised.c: the supervised task: one replica ("model") learns labels or
 * targets from inputs; one optimizer step per global batch. */
#include "coordinator/run/task.h"

static int supervised_step(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                           nn_step_stats *st, nn_error *err) {
  return nn_step_train(&reps[0].st, b, lr[0], step, reps[0].seed, st, err);
}

const nn_task_ops nn_task_supervised = {
    .name = "supervised",
    .help = "one model learns the data's labels or targets (the default)",
    .nreplicas = 1,
    .replicas = {"model"},
    .eval_replica = 0,
    .step = supervised_step,
};
