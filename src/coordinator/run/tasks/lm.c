/* lm.c: the language-model task: one replica ("model") learns to predict
 * the next token of a token stream (`nntrain prepare text`) with truncated
 * back-propagation through time (docs/training.md#language-models).
 *
 * The loader cuts the stream into train.batch_size streams and hands out
 * window k of every stream as global batch k (worker/loader.h); rank r keeps
 * the same streams all run. The model reads [bptt] token ids and writes
 * [bptt, vocab] logits (embedding, recurrent layers with `carry = true`,
 * dense with per_timestep = true); the loss is the per-token softmax
 * cross-entropy averaged over the global batch's tokens, so the run is
 * N-invariant like any other. A recurrent layer with `carry` starts each
 * window from the state its stream reached at the end of the previous one
 * (detached: no gradient flows across windows) and from zeros at an epoch's
 * first window. Validation runs the validation stream the same way and
 * reports the loss per token (bits per token = loss / ln 2) and the
 * next-token accuracy. */
#include <math.h>
#include <string.h>

#include "coordinator/run/task.h"
#include "core/loss.h"
#include "worker/agree.h"
#include "worker/collective.h"

/* The model against a token stream: [bptt] ids in, [bptt, vocab] logits out,
 * cross_entropy. */
static int lm_check(const nn_job *job, const nn_model *m, const nn_dataset_info *di,
                    const char *where, nn_error *err) {
  char shp[64];
  if (!di->stream)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "train.task = \"language_model\" reads one "
                       "token stream (`nntrain prepare text`, shard attribute stream = 1); "
                       "this data is not one");
  if (nn_loss_parse(job->train.loss) != NN_LOSS_SOFTMAX_CE)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "train.task = \"language_model\" learns "
                       "the next token: train.loss must be \"cross_entropy\", not \"%s\"",
                       job->train.loss);
  if (m->out.ndim != 2 || m->out.dim[0] != job->train.bptt || m->out.dim[1] != di->vocab_size)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "the model's output is %s; a language "
                       "model writes [bptt, vocab] = [%d, %d] logits (end with a dense layer "
                       "of units = %d and per_timestep = true)",
                       nn_shape_str(&m->out, shp, sizeof shp), job->train.bptt, di->vocab_size,
                       di->vocab_size);
  return 0;
}

static int lm_build(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                    const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                    nn_error *err) {
  if (job->train.bptt < 1)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"language_model\" "
                       "needs train.bptt, the tokens per window (e.g. 64)");
  nn_shape in = {1, {job->train.bptt}}; /* a window of ids, whatever the stored rows */
  int rc = nn_replica_build(&reps[0], t->replicas[0], 0, job, &in, o, err);
  if (!rc && di) rc = lm_check(job, &reps[0].model, di, where, err);
  if (o->train) rc = nn_agree(o->comm, rc, err);
  return rc;
}

static int lm_step(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                   nn_step_stats *st, nn_error *err) {
  return nn_step_train(&reps[0].st, b, lr[0], step, reps[0].seed, st, err);
}

/* Every window of L's streams in order (carried state from window to
 * window), the per-token figures summed over the ranks. Collective. */
static int lm_evaluate(const nn_task_ops *t, nn_replica *reps, nn_loader *L,
                       nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl, int64_t step,
                       nn_metrics_result *res, nn_error *err) {
  (void)acc;
  memset(res, 0, sizeof *res);
  nn_replica *r = &reps[t->eval_replica];
  nn_step_stats st;
  memset(&st, 0, sizeof st);
  int rc = nn_loader_start(L, 0, 0, err);
  const nn_batch *b;
  while (!rc) {
    if ((rc = nn_loader_next(L, &b, err)) != 0 || !b) break;
    nn_step_eval(&r->st, b, r->seed, &st);
  }
  int brc = nn_watched_barrier(ctl, step, err);
  if (brc) return brc;
  if ((rc = nn_agree(comm, rc, err)) != 0) return rc;
  double g[3] = {st.loss_sum, st.correct, st.count};
  if ((rc = nn_allreduce_sum_f64(comm, g, 3, err)) != 0) return rc;
  res->per_token = 1;
  res->count = g[2];
  res->loss = g[2] > 0 ? g[0] / g[2] : NAN;
  res->accuracy = g[2] > 0 ? g[1] / g[2] : NAN;
  return 0;
}

const nn_task_ops nn_task_lm = {
    .name = "language_model",
    .help = "one model learns the next token of a token stream (truncated BPTT, train.bptt)",
    .nreplicas = 1,
    .replicas = {"model"},
    .eval_replica = 0,
    .build = lm_build,
    .step = lm_step,
    .evaluate = lm_evaluate,
};
