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
 * first window. Validation (the default evaluation, run/evaluate.h) runs
 * the validation stream the same way and reports the loss per token (bits
 * per token = loss / ln 2) and the next-token accuracy. */
#include <math.h>
#include <string.h>

#include "coordinator/run/task.h"
#include "core/loss.h"
#include "worker/agree.h"

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

const nn_task_ops nn_task_lm = {
    .name = "language_model",
    .help = "one model learns the next token of a token stream (truncated BPTT, train.bptt)",
    .nreplicas = 1,
    .replicas = {"model"},
    .eval_replica = 0,
    .build = lm_build,
    .step = nn_task_step_default,
};
