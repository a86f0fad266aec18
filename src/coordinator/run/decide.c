/* decide.c: early stopping, plateau and the EpochControl message (see decide.h). */
#include "coordinator/run/decide.h"
#include "worker/agree.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/pb_alloc.h"
#include "nntrain.pb-c.h"
#include "worker/collective.h"

void nn_decide_init(nn_decide_state *d, const nn_job *job) {
  memset(d, 0, sizeof *d);
  nn_plateau_init(&d->plateau, &job->schedule);
  d->es.best = NAN;
}

int nn_es_maximizes(const nn_job_early_stopping *e) {
  return nn_monitor_maximizes(e->mode, e->monitor);
}

double nn_monitored_value(const char *name, const nn_epoch_figures *f) {
  if (!strcmp(name, "loss") || !strcmp(name, "train_loss")) return f->train_loss;
  if (!strcmp(name, "accuracy") || !strcmp(name, "train_accuracy")) return f->train_acc;
  const nn_metrics_result *v = f->val;
  if (!v) return NAN;
  if (!strcmp(name, "val_loss")) return v->loss;
  if (!strcmp(name, "val_accuracy")) return v->accuracy;
  if (!strcmp(name, "val_macro_f1")) return v->macro_f1;
  if (!strcmp(name, "val_top_k_accuracy")) return v->ntopk ? v->topk_accuracy[0] : NAN;
  /* the names of metrics.jsonl's val_* keys (runlog.c); val_auc: the old alias */
  if (!strcmp(name, "val_roc_auc") || !strcmp(name, "val_auc"))
    return v->has_auc ? v->roc_auc : NAN;
  if (!strcmp(name, "val_map")) return v->multilabel ? v->map : NAN;
  if (!strcmp(name, "val_mse")) return v->mse;
  if (!strcmp(name, "val_mae")) return v->mae;
  return NAN;
}

/* Early stopping: improvement by more than min_delta resets the count. */
static void es_update(nn_es_state *s, const nn_job_early_stopping *e, int epoch, double m,
                      nn_decision *dec) {
  dec->monitored = m;
  if (!isfinite(m)) return;
  int max = nn_es_maximizes(e);
  if (isnan(s->best) || (max ? m > s->best + e->min_delta : m < s->best - e->min_delta)) {
    s->best = m;
    s->best_epoch = epoch + 1;
    s->bad = 0;
    dec->improved = 1;
  } else {
    s->bad++;
  }
  if (e->patience > 0 && s->bad >= e->patience) dec->stop = 1;
}

nn_decision nn_decide_epoch(nn_decide_state *d, const nn_job *job, const nn_epoch_figures *f) {
  nn_decision dec = {0};
  es_update(&d->es, &job->early_stopping, f->epoch,
            nn_monitored_value(job->early_stopping.monitor, f), &dec);
  const nn_schedule_cfg *sc = &job->schedule;
  if (!strcmp(sc->type, "reduce_on_plateau") && (f->val || strncmp(sc->monitor, "val_", 4)))
    nn_plateau_update(&d->plateau, sc, job->optimizer.lr, nn_monitored_value(sc->monitor, f));
  return dec;
}

/* The message: rank 0 packs, every rank unpacks the same bytes. */
int nn_decide_share(nn_decide_state *d, nn_decision *dec, MPI_Comm comm, nn_error *err) {
  int rank = 0;
  NN_MPI_RETURN(err, MPI_Comm_rank(comm, &rank));
  Nntrain__EpochControl c = NNTRAIN__EPOCH_CONTROL__INIT;
  uint8_t buf[256];
  int len = 0;
  if (rank == 0) {
    c.stop = dec->stop;
    c.improved = dec->improved;
    c.monitored = dec->monitored;
    c.plateau_scale = d->plateau.scale;
    c.plateau_best = d->plateau.best;
    c.plateau_bad = d->plateau.bad_epochs;
    c.plateau_cooldown = d->plateau.cooldown_left;
    c.es_best = d->es.best;
    c.es_bad = d->es.bad;
    c.es_best_epoch = d->es.best_epoch;
    if (nntrain__epoch_control__get_packed_size(&c) > sizeof buf)
      return nn_error_set(err, NN_EINTERNAL, "control message too long");
    len = (int)nntrain__epoch_control__pack(&c, buf);
  }
  NN_MPI_RETURN(err, MPI_Bcast(&len, 1, MPI_INT, 0, comm));
  if (len < 0 || len > (int)sizeof buf) return nn_error_set(err, NN_EINTERNAL, "bad control message");
  NN_MPI_RETURN(err, MPI_Bcast(buf, len, MPI_BYTE, 0, comm));
  Nntrain__EpochControl *m = rank == 0 ? NULL
                             : nntrain__epoch_control__unpack(nn_pb_allocator(), (size_t)len, buf);
  /* protobuf-c says NULL for bad bytes and for out of memory alike; the bytes
   * are rank 0's own, so it is memory. Agreed: a rank failing here alone
   * ends every rank cleanly (no MPI_Abort). */
  int rc = rank != 0 && !m ? nn_error_set(err, NN_ENOMEM, "out of memory decoding the "
                                          "coordinator's control message") : 0;
  if ((rc = nn_agree(comm, rc, err)) != 0) {
    if (m) nntrain__epoch_control__free_unpacked(m, nn_pb_allocator());
    return rc;
  }
  if (rank == 0) return 0;
  dec->stop = m->stop;
  dec->improved = m->improved;
  dec->monitored = m->monitored;
  d->plateau.scale = m->plateau_scale;
  d->plateau.best = m->plateau_best;
  d->plateau.bad_epochs = m->plateau_bad;
  d->plateau.cooldown_left = m->plateau_cooldown;
  d->es.best = m->es_best;
  d->es.bad = m->es_bad;
  d->es.best_epoch = m->es_best_epoch;
  nntrain__epoch_control__free_unpacked(m, nn_pb_allocator());
  return 0;
}
