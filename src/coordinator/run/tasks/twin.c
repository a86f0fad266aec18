/* twin.c: a test-only task with two replicas, "a" and "b", of the job's model,
 * trained in alternation on every global batch: a takes its optimizer step,
 * then b takes its own (each its own optimizer state, random streams and
 * gradient sync; one sync in flight at a time). It exercises what the
 * two-model kinds (GANs) need from the trainer: several named replicas,
 * alternating steps, one checkpoint group each, exact resume. */
#include "coordinator/run/task.h"

static int twin_step(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                     nn_step_stats *st, nn_error *err) {
  int rc = nn_step_train(&reps[0].st, b, lr[0], step, reps[0].seed, st, err);
  if (rc) return rc;
  nn_step_stats ignored = {0};
  rc = nn_step_train(&reps[1].st, b, lr[1], step, reps[1].seed, &ignored, err);
  st->nonfinite += ignored.nonfinite; /* either replica's verdict counts */
  return rc;
}

const nn_task_ops nn_task_twin = {
    .name = "test_twin",
    .help = "test only: two replicas of the model trained in alternation",
    .test_only = 1,
    .nreplicas = 2,
    .replicas = {"a", "b"},
    .eval_replica = 0,
    .step = twin_step,
};
