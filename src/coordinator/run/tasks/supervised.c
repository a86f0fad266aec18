/* supervised.c: the supervised task: one replica ("model") learns labels or
 * targets from inputs; one optimizer step per global batch. */
#include "coordinator/run/task.h"

const nn_task_ops nn_task_supervised = {
    .name = "supervised",
    .help = "one model learns the data's labels or targets (the default)",
    .nreplicas = 1,
    .replicas = {"model"},
    .eval_replica = 0,
    .step = nn_task_step_default,
};
