/* evaluate.c: the evaluation loop (see evaluate.h). */
#include "coordinator/run/evaluate.h"

#include <math.h>
#include <string.h>

#include "worker/agree.h"
#include "worker/collective.h"

nn_metrics_config nn_eval_metrics_config(const nn_dataset_info *di, int top_k) {
  nn_metrics_config mc = {.num_classes = di->num_classes, .target_dim = di->target_dim,
                          .scores = NN_METRICS_LOGITS};
  mc.multilabel = di->multilabel; /* 0/1 targets, one logit per label */
  if (di->stream) mc.target_dim = 1; /* unused: language models report per token (lm.c) */
  if (di->num_classes > 0 && top_k > 1 && top_k < di->num_classes) {
    mc.ntopk = 1;
    mc.topk[0] = top_k;
  }
  return mc;
}

int nn_evaluate(nn_replica *r, nn_loader *L, nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl,
                int64_t step, nn_metrics_result *res, nn_error *err) {
  memset(res, 0, sizeof *res);
  nn_metrics_acc_reset(acc);
  int rc = nn_loader_start(L, 0, 0, err);
  const nn_batch *b;
  nn_run_ctx ctx = {.training = 0, .seed = r->seed};
  /* a class per timestep (taggers) or the next token (language models, their
   * state carried from window to window): the figures are per token */
  const int per_token = nn_loader_info(L)->token_labels || nn_loader_info(L)->stream;
  nn_step_stats st;
  memset(&st, 0, sizeof st);
  while (!rc) {
    if ((rc = nn_loader_next(L, &b, err)) != 0 || !b) break;
    if (b->n == 0) continue;
    if (per_token) {
      nn_step_eval(&r->st, b, r->seed, &st);
      continue;
    }
    ctx.sample0 = b->sample0;
    ctx.lengths = b->lengths;
    ctx.carry_in = b->carry_in;
    const float *out = nn_model_forward(&r->model, b->x, b->n, &ctx);
    double l = nn_step_loss(&r->st, b, out);
    if (b->labels)
      rc = nn_metrics_add_classification(acc, out, b->labels, b->n, l, err);
    else if (acc->cfg.multilabel)
      rc = nn_metrics_add_multilabel(acc, out, b->targets, b->n, l, err);
    else
      rc = nn_metrics_add_regression(acc, out, b->targets, b->n, l, err);
  }
  /* Every rank reaches the reduction, or all return the first failure. */
  int brc = nn_watched_barrier(ctl, step, err);
  if (brc) return brc;
  if ((rc = nn_agree(comm, rc, err)) != 0) return rc;
  if (per_token) {
    double g[3] = {st.loss_sum, st.correct, st.count};
    if ((rc = nn_allreduce_sum_f64(comm, g, 3, err)) != 0) return rc;
    res->per_token = 1;
    res->count = g[2];
    res->loss = g[2] > 0 ? g[0] / g[2] : NAN;
    res->accuracy = g[2] > 0 ? g[1] / g[2] : NAN;
    return 0;
  }
  if ((rc = nn_allreduce_sum_f64(comm, acc->data, acc->len, err)) != 0) return rc;
  return nn_metrics_finalize(acc, res, err);
}
