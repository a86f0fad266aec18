/* evaluate.c: the evaluation loop (see evaluate.h). */
#include "coordinator/run/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

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

int nn_eval_misses_init(nn_eval_misses *m, int cap, size_t width, int N, nn_error *err) {
  memset(m, 0, sizeof *m);
  m->cap = cap;
  m->width = width;
  m->N = N;
  size_t k = (size_t)cap * (size_t)N;
  m->index = nn_malloc(k * sizeof *m->index);
  m->pred = nn_malloc(k * sizeof *m->pred);
  m->truth = nn_malloc(k * sizeof *m->truth);
  m->x = nn_malloc(k * (width ? width : 1) * sizeof *m->x);
  m->counts = nn_malloc((size_t)N * sizeof *m->counts);
  m->displs = nn_malloc((size_t)N * sizeof *m->displs);
  if (!m->index || !m->pred || !m->truth || !m->x || !m->counts || !m->displs) {
    nn_eval_misses_free(m);
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  return 0;
}

void nn_eval_misses_free(nn_eval_misses *m) {
  free(m->index);
  free(m->pred);
  free(m->truth);
  free(m->x);
  free(m->counts);
  free(m->displs);
  memset(m, 0, sizeof *m);
}

/* Keep the slice's misclassified samples while there is room. */
static void keep_misses(nn_eval_misses *m, const nn_batch *b, const float *out, int k) {
  for (int j = 0; j < b->n && m->n < m->cap; j++) {
    const float *o = out + (size_t)j * (size_t)k;
    int best = 0;
    for (int c = 1; c < k; c++)
      if (o[c] > o[best]) best = c;
    if (best == b->labels[j]) continue;
    m->index[m->n] = b->sample0 + j;
    m->pred[m->n] = best;
    m->truth[m->n] = b->labels[j];
    memcpy(m->x + (size_t)m->n * m->width, b->x + (size_t)j * m->width, m->width * sizeof(float));
    m->n++;
  }
}

/* Rank 0 gathers every rank's kept samples and keeps the first cap of them
 * by data position. Collective. */
static int gather_misses(nn_eval_misses *m, MPI_Comm comm, nn_error *err) {
  int rank = 0, N = 1;
  NN_MPI_RETURN(err, MPI_Comm_rank(comm, &rank));
  NN_MPI_RETURN(err, MPI_Comm_size(comm, &N));
  if (N > m->N) return nn_error_set(err, NN_EINTERNAL, "misses sized for %d ranks, not %d", m->N, N);
  if (N == 1) return 0;
  int n = m->n;
  NN_MPI_RETURN(err, MPI_Gather(&n, 1, MPI_INT, m->counts, 1, MPI_INT, 0, comm));
  int total = 0;
  if (rank == 0)
    for (int i = 0; i < N; i++) m->displs[i] = total, total += m->counts[i];
  /* rank 0's own rows are already in place (displacement 0): MPI_IN_PLACE */
  int w = (int)m->width;
  if (rank == 0) {
    NN_MPI_RETURN(err, MPI_Gatherv(MPI_IN_PLACE, n, MPI_INT64_T, m->index, m->counts, m->displs,
                                   MPI_INT64_T, 0, comm));
    NN_MPI_RETURN(err, MPI_Gatherv(MPI_IN_PLACE, n, MPI_INT32_T, m->pred, m->counts, m->displs,
                                   MPI_INT32_T, 0, comm));
    NN_MPI_RETURN(err, MPI_Gatherv(MPI_IN_PLACE, n, MPI_INT32_T, m->truth, m->counts, m->displs,
                                   MPI_INT32_T, 0, comm));
    for (int i = 0; i < N; i++) m->counts[i] *= w, m->displs[i] *= w;
    NN_MPI_RETURN(err, MPI_Gatherv(MPI_IN_PLACE, n * w, MPI_FLOAT, m->x, m->counts, m->displs,
                                   MPI_FLOAT, 0, comm));
  } else {
    NN_MPI_RETURN(err, MPI_Gatherv(m->index, n, MPI_INT64_T, NULL, NULL, NULL, MPI_INT64_T, 0, comm));
    NN_MPI_RETURN(err, MPI_Gatherv(m->pred, n, MPI_INT32_T, NULL, NULL, NULL, MPI_INT32_T, 0, comm));
    NN_MPI_RETURN(err, MPI_Gatherv(m->truth, n, MPI_INT32_T, NULL, NULL, NULL, MPI_INT32_T, 0, comm));
    NN_MPI_RETURN(err, MPI_Gatherv(m->x, n * w, MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, comm));
    return 0;
  }
  /* selection of the cap lowest positions, in order (total <= cap * N, small) */
  for (int i = 0; i < total && i < m->cap; i++) {
    int lo = i;
    for (int j = i + 1; j < total; j++)
      if (m->index[j] < m->index[lo]) lo = j;
    if (lo == i) continue;
    int64_t ti = m->index[i];
    m->index[i] = m->index[lo], m->index[lo] = ti;
    int32_t tp = m->pred[i];
    m->pred[i] = m->pred[lo], m->pred[lo] = tp;
    int32_t tt = m->truth[i];
    m->truth[i] = m->truth[lo], m->truth[lo] = tt;
    for (size_t c = 0; c < m->width; c++) {
      float t = m->x[(size_t)i * m->width + c];
      m->x[(size_t)i * m->width + c] = m->x[(size_t)lo * m->width + c];
      m->x[(size_t)lo * m->width + c] = t;
    }
  }
  m->n = total < m->cap ? total : m->cap;
  return 0;
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
  nn_eval_misses *miss = r->misses;
  const int keep = miss && !per_token && acc->cfg.num_classes > 0 && miss->width > 0 &&
                   miss->width == nn_shape_count(&r->model.in);
  if (miss) miss->n = 0;
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
    if (b->labels && keep)
      keep_misses(r->misses, b, out, acc->cfg.num_classes);
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
  if (keep && (rc = gather_misses(miss, comm, err)) != 0) return rc;
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
