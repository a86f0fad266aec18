/* autoencoder.c: the autoencoder task: one replica ("model") learns to
 * reproduce its input. The target of every sample is the sample itself, as
 * the model sees it (after data.normalize and augmentation), so a shard's
 * labels or regression targets are read by the loader but take no part in
 * training; `nntrain encode` copies them next to the codes it writes.
 *
 * Rules (build, so train and check agree): the model's output holds as many
 * values as its input (any shapes: a dense decoder may end in [784] for
 * [1, 28, 28] samples; the loss compares them flattened), and train.loss is
 * one of the reconstruction losses of the table below. Token data (sequence
 * and stream shards) is refused: ids are not values to reconstruct.
 *
 * One optimizer step per global batch (nn_step_train on a view of the batch
 * whose targets are its inputs), so the run is N-invariant and resumes
 * exactly like a supervised one. Evaluation reports the reconstruction
 * error as regression figures over every input value: loss (the training
 * loss's mean per sample), mse, mae and r2 (val_mse, test_mse ... in
 * metrics.jsonl; the monitor can use val_loss or val_mse). */
#include <string.h>

#include "coordinator/run/task.h"
#include "core/loss.h"
#include "worker/agree.h"
#include "worker/collective.h"

/* The losses an autoencoder may train with: one row each. */
static const struct {
  int kind;
  const char *name;
} recon_losses[] = {
    {NN_LOSS_MSE, "mse"},
};
#define NRECON (int)(sizeof recon_losses / sizeof recon_losses[0])

static int recon_loss_ok(const char *name) {
  int kind = nn_loss_parse(name);
  for (int i = 0; i < NRECON; i++)
    if (recon_losses[i].kind == kind) return 1;
  return 0;
}

/* Batch b with its inputs as targets and no labels: what the stepper's loss
 * compares the output with. */
static nn_batch recon_view(const nn_batch *b) {
  nn_batch v = *b;
  v.targets = b->x;
  v.labels = NULL;
  v.tlabels = NULL;
  return v;
}

/* The kind's rules, for the built model (input m->in) and the data (di may
 * be NULL: `nntrain check` without data). */
static int ae_check(const nn_job *job, const nn_model *m, const nn_dataset_info *di,
                    const char *where, nn_error *err) {
  char a[64], b[64], list[128] = "";
  if (di && (di->stream || di->vocab_size > 0))
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "train.task = \"autoencoder\" reconstructs "
                       "feature values; this data holds token ids (a sequence shard, "
                       "vocab_size %d)", di->vocab_size);
  if (!recon_loss_ok(job->train.loss)) {
    for (int i = 0, k = 0; i < NRECON && k < (int)sizeof list; i++)
      k += snprintf(list + k, sizeof list - (size_t)k, "%s\"%s\"", i ? ", " : "",
                    recon_losses[i].name);
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"autoencoder\" "
                       "reconstructs its input: train.loss must be one of %s, not \"%s\"", list,
                       job->train.loss);
  }
  if (nn_shape_count(&m->out) != nn_shape_count(&m->in))
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "train.task = \"autoencoder\": the model's "
                       "output %s has %zu values, its input %s has %zu: the output must have "
                       "as many values as the input (set the last layer's units to %zu)",
                       nn_shape_str(&m->out, a, sizeof a), nn_shape_count(&m->out),
                       nn_shape_str(&m->in, b, sizeof b), nn_shape_count(&m->in),
                       nn_shape_count(&m->in));
  return 0;
}

static int ae_build(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                    const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                    nn_error *err) {
  return nn_task_build_one(t, reps, job, di, where, o, ae_check, err);
}

static int ae_step(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                   nn_step_stats *st, nn_error *err) {
  nn_batch v = recon_view(b);
  return nn_step_train(&reps[0].st, &v, lr[0], step, reps[0].seed, st, err);
}

/* The reconstruction figures on L's data: every rank its slice (as
 * run/evaluate.c), the sums reduced over comm. The accumulator the trainer
 * passes is configured for the data's labels, so a regression one over the
 * input's values is made here for the pass. */
static int ae_evaluate(const nn_task_ops *t, nn_replica *reps, nn_loader *L, nn_metrics_acc *acc,
                       MPI_Comm comm, nn_ring *ctl, int64_t step, nn_metrics_result *res,
                       nn_error *err) {
  (void)acc;
  nn_replica *r = &reps[t->eval_replica];
  memset(res, 0, sizeof *res);
  nn_metrics_config mc = {.target_dim = (int)nn_shape_count(&r->model.in)};
  nn_metrics_acc ra;
  int rc = nn_metrics_acc_init(&ra, &mc, err);
  if (!rc) rc = nn_loader_start(L, 0, 0, err);
  nn_run_ctx ctx = {.training = 0, .seed = r->seed};
  const nn_batch *b;
  while (!rc) {
    if ((rc = nn_loader_next(L, &b, err)) != 0 || !b) break;
    if (b->n == 0) continue;
    nn_batch v = recon_view(b);
    ctx.sample0 = b->sample0;
    const float *out = nn_model_forward(&r->model, b->x, b->n, &ctx);
    rc = nn_metrics_add_regression(&ra, out, b->x, b->n, nn_step_loss(&r->st, &v, out), err);
  }
  /* Every rank reaches the reduction, or all return the first failure. */
  int brc = nn_watched_barrier(ctl, step, err);
  if (!brc && !(rc = nn_agree(comm, rc, err)) &&
      !(rc = nn_allreduce_sum_f64(comm, ra.data, ra.len, err)))
    rc = nn_metrics_finalize(&ra, res, err);
  nn_metrics_acc_free(&ra);
  return brc ? brc : rc;
}

const nn_task_ops nn_task_autoencoder = {
    .name = "autoencoder",
    .help = "one model learns to reproduce its input (target = input; labels unused)",
    .nreplicas = 1,
    .replicas = {"model"},
    .eval_replica = 0,
    .build = ae_build,
    .step = ae_step,
    .evaluate = ae_evaluate,
};
