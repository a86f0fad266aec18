/* train.c: the training run (see train.h).
 *
 * Shape of a run, on every rank:
 *   open data (agree on errors) -> carve validation / k-fold subsets from the
 *   job seed -> build the model, seed parameters from the job seed -> resume:
 *   rank 0 reads the checkpoint and broadcasts parameters, optimizer slots and
 *   the run state -> for each epoch: start the loader at (seed, epoch, data
 *   position), step through the global batches (this rank's slice of each),
 *   reduce the epoch's sums, validate (sharded, summed on rank 0), rank 0
 *   decides (schedule plateau, early stopping, best model) and broadcasts an
 *   EpochControl message; checkpoints at the configured steps / epochs /
 *   seconds are written by rank 0's background writer while the steps go on.
 *
 * Decisions every rank can compute from identical values (step counters,
 * reduced sums) need no message; decisions that use rank 0's clock or rank
 * 0's metrics travel as messages, so every rank takes the same branch at the
 * same step. */
#include "coordinator/train.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "coordinator/alloc.h"
#include "coordinator/checkpoint.h"
#include "coordinator/init_from.h"
#include "coordinator/metrics_log.h"
#include "coordinator/schedule.h"
#include "core/loss.h"
#include "core/metrics.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "nntrain.pb-c.h"
#include "worker/agree.h"
#include "worker/allreduce.h"
#include "worker/dataset.h"
#include "worker/loader.h"
#include "worker/signals.h"
#include "worker/step.h"

static double now_s(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}


/* A barrier the watchdog covers: a one-float ring all-reduce with the run's
 * timeout. Placed before every plain MPI collective of the run (epoch sums,
 * evaluation, replica checks, control messages), so a stalled rank is named
 * there too; a rank that passed it is alive, and the collective right after
 * cannot hang on it. */
static int watched_barrier(nn_ring *ctl, int64_t step, nn_error *err) {
  if (!ctl) return 0;
  float one = 1.0f;
  nn_ring_set_step(ctl, (long)step);
  return nn_ring_allreduce(ctl, &one, 1, err);
}

/* FNV-1a over the bytes of a float array. */
static uint64_t hash_floats(const float *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static void fmt_duration(double s, char *buf, size_t n) {
  if (s < 0) s = 0;
  if (s < 120) snprintf(buf, n, "%.1fs", s);
  else if (s < 7200) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* Live progress on stderr (rank 0, terminal only). */
static void progress_bar(int epoch, int epochs, int64_t step, int64_t steps, double loss,
                         double t_epoch) {
  const int W = 30;
  int fill = steps > 0 ? (int)(W * step / steps) : W;
  char bar[64];
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[W] = '\0';
  char eta[32];
  fmt_duration(step > 0 ? t_epoch / (double)step * (double)(steps - step) : 0, eta, sizeof eta);
  fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f eta %s   ", epoch, epochs, bar,
          (long long)step, (long long)steps, loss, eta);
  fflush(stderr);
}

/* ---- the run's state ------------------------------------------------------ */

typedef struct run {
  const nn_job *job;
  const nn_train_opts *opts;
  MPI_Comm comm;
  int rank, N, lead;
  FILE *out;
  char dir[NN_PATH_MAX];
  int loss;

  nn_dataset *train_ds, *val_ds, *test_ds; /* val_ds may be train_ds (a split) */
  int own_val_ds;
  int64_t *train_idx, *val_idx;            /* subsets of train_ds, or NULL */
  int64_t ntrain, nval;
  nn_loader *train_L, *val_L, *test_L;

  nn_model model;
  int have_model;
  nn_optim optim;
  int have_optim;
  nn_gradsync *sync;
  nn_ring *ctl;
  float *ctlbuf;                           /* [2 + nbuffers]: see step_control */
  double *rss_all;                         /* [N] on the lead: peak RSS per rank, MB */
  char *rss_list;                          /* the summary record that lists it */
  nn_stepper st;
  int have_stepper;
  nn_metrics_acc acc;
  nn_metrics_log log;
  nn_ckpt_writer *ckw;
  uint8_t *spec;                           /* the packed job, for checkpoints */
  size_t spec_len;

  nn_ckpt_state state;                     /* identical on every rank */
  nn_plateau_state plateau;
  int64_t steps_per_epoch, total_steps;
  double last_ckpt_time;
  int ckpt_count;                          /* snapshots handed to the writer */
  double ckpt_pause_sum, ckpt_pause_max;   /* seconds the step loop waited for them */
} run;

/* Both are sorted global indices of a deterministic split of n samples:
 * validation gets the positions [lo, hi) of the permutation drawn from
 * (seed, NN_RNG_SPLIT, which), training the rest. */
static int carve(int64_t n, uint64_t seed, uint32_t which, int64_t lo, int64_t hi,
                 int64_t **train, int64_t *ntrain, int64_t **val, int64_t *nval, nn_error *err) {
  int64_t *perm = malloc((size_t)n * sizeof *perm);
  char *is_val = calloc((size_t)n, 1);
  *train = malloc((size_t)(n - (hi - lo) + 1) * sizeof **train);
  *val = malloc((size_t)(hi - lo + 1) * sizeof **val);
  if (!perm || !is_val || !*train || !*val) {
    free(perm);
    free(is_val);
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  /* A permutation keyed apart from the epoch shuffles: purpose SPLIT. */
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_SPLIT, which, 0, 0);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(((uint64_t)nn_rng_u32(&r) << 32 | nn_rng_u32(&r)) % (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (int64_t i = lo; i < hi; i++) is_val[perm[i]] = 1;
  *ntrain = *nval = 0;
  for (int64_t i = 0; i < n; i++) {
    if (is_val[i]) (*val)[(*nval)++] = i;
    else (*train)[(*ntrain)++] = i;
  }
  free(perm);
  free(is_val);
  return 0;
}

/* Checks that need the data's description: outputs vs labels. */
static int check_model_vs_data(const nn_job *job, const nn_model *m, const nn_dataset_info *tr,
                               int loss, nn_error *err) {
  int k = (int)nn_shape_count(&m->out);
  if (tr->num_classes > 0) {
    if (k != tr->num_classes)
      return nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                         "the model has %d outputs but the training data has %d classes "
                         "(set the last layer's units to %d)", k, tr->num_classes,
                         tr->num_classes);
  } else {
    if (loss != NN_LOSS_MSE)
      return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                         "the training data is regression (targets, no classes): use "
                         "train.loss = \"mse\"");
    if (k != tr->target_dim)
      return nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                         "the model has %d outputs but the targets have %d values", k,
                         tr->target_dim);
  }
  return 0;
}

static int same_data_kind(const nn_dataset_info *a, const nn_dataset_info *b, const char *what,
                          const char *glob, nn_error *err) {
  char sa[64], sb[64];
  if (!nn_shape_equal(&a->sample, &b->sample) || a->num_classes != b->num_classes ||
      a->target_dim != b->target_dim)
    return nn_error_at(err, NN_EDATA, glob, 0, 0,
                       "%s data (sample %s, %d classes) does not match the training data "
                       "(sample %s, %d classes)", what,
                       nn_shape_str(&b->sample, sb, sizeof sb), b->num_classes,
                       nn_shape_str(&a->sample, sa, sizeof sa), a->num_classes);
  return 0;
}

int nn_train_blas_threads(const nn_job *job, MPI_Comm comm) {
  if (job->run.threads > 0) return job->run.threads;
  MPI_Comm node;
  int local = 1;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
  }
  nn_alloc a; /* a malformed variable keeps its "unknown" value; the CLI warns */
  (void)nn_alloc_detect(&a, NULL);
  return nn_alloc_blas_threads(&a, 0, local, sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---- evaluation ----------------------------------------------------------- */

/* Evaluate on the loader's data (all ranks); on rank 0 *res holds the
 * figures (free with nn_metrics_result_free); other ranks get count only. */
static int evaluate(run *R, nn_loader *L, nn_metrics_result *res, nn_error *err) {
  memset(res, 0, sizeof *res);
  nn_metrics_acc_reset(&R->acc);
  int rc = nn_loader_start(L, 0, 0, err);
  if (rc) return rc;
  const nn_batch *b;
  nn_run_ctx ctx = {.training = 0, .seed = (uint64_t)R->job->train.seed};
  for (;;) {
    if ((rc = nn_loader_next(L, &b, err)) != 0) return rc;
    if (!b) break;
    if (b->n == 0) continue;
    ctx.sample0 = b->sample0;
    const float *out = nn_model_forward(&R->model, b->x, b->n, &ctx);
    double l = nn_step_loss(&R->st, b, out);
    if (b->labels)
      rc = nn_metrics_add_classification(&R->acc, out, b->labels, b->n, l, err);
    else
      rc = nn_metrics_add_regression(&R->acc, out, b->targets, b->n, l, err);
    if (rc) return rc;
  }
  if ((rc = watched_barrier(R->ctl, R->state.step, err)) != 0) return rc;
  if (R->N > 1) MPI_Allreduce(MPI_IN_PLACE, R->acc.data, (int)R->acc.len, MPI_DOUBLE, MPI_SUM,
                              R->comm);
  return nn_metrics_finalize(&R->acc, res, err);
}

/* The value of an early-stopping / plateau monitor, from the epoch's figures. */
static double monitored_value(const char *name, double train_loss, double train_acc,
                              const nn_metrics_result *v, int have_val) {
  if (!strcmp(name, "loss") || !strcmp(name, "train_loss")) return train_loss;
  if (!strcmp(name, "accuracy") || !strcmp(name, "train_accuracy")) return train_acc;
  if (!have_val) return NAN;
  if (!strcmp(name, "val_loss")) return v->loss;
  if (!strcmp(name, "val_accuracy")) return v->accuracy;
  if (!strcmp(name, "val_macro_f1")) return v->macro_f1;
  if (!strcmp(name, "val_top_k_accuracy")) return v->ntopk ? v->topk_accuracy[0] : NAN;
  if (!strcmp(name, "val_auc")) return v->has_auc ? v->roc_auc : NAN;
  if (!strcmp(name, "val_mse")) return v->mse;
  if (!strcmp(name, "val_mae")) return v->mae;
  return NAN;
}

static int es_maximizes(const nn_job_early_stopping *e) {
  if (!strcmp(e->mode, "max")) return 1;
  if (!strcmp(e->mode, "min")) return 0;
  return strstr(e->monitor, "accuracy") || strstr(e->monitor, "f1") || strstr(e->monitor, "auc");
}

/* ---- checkpoints ---------------------------------------------------------- */

/* Rank 0: snapshot the run now and hand it to the writer (path "" = the
 * step's checkpoint). The step loop goes on while it is written. */
static int take_checkpoint(run *R, const char *path, double running_s, nn_error *err) {
  if (!R->lead || !R->ckw) return 0;
  double t0 = now_s();
  nn_ckpt_snapshot *s = nn_ckpt_writer_slot(R->ckw);
  memcpy(s->params, R->model.params, R->model.nparams * sizeof(float));
  if (R->model.nbuffers) memcpy(s->buffers, R->model.buffers, R->model.nbuffers * sizeof(float));
  nn_optim_slots_export(&R->optim, s->slots, R->model.nparams); /* frozen layers: zeros */
  snprintf(s->optim_type, sizeof s->optim_type, "%s", R->optim.cfg.type);
  for (int i = 0; i < R->optim.nslots && i < NN_CKPT_MAX_SLOTS; i++)
    snprintf(s->slot_names[i], sizeof s->slot_names[i], "%s", nn_optim_slot_name(&R->optim, i));
  s->state = R->state;
  s->state.elapsed_s += running_s; /* the epoch in progress */
  s->state.optim_t = R->optim.t;
  s->state.plateau_scale = R->plateau.scale;
  s->state.plateau_best = R->plateau.best;
  s->state.plateau_bad = R->plateau.bad_epochs;
  s->state.plateau_cooldown = R->plateau.cooldown_left;
  int rc = nn_ckpt_snapshot_set_spec(s, R->spec, R->spec_len, err);
  if (!rc) rc = nn_ckpt_snapshot_set_metrics(s, R->log.hist ? R->log.hist : "", R->log.hist_len,
                                             err);
  if (!rc) rc = nn_ckpt_writer_submit(R->ckw, path, err);
  R->last_ckpt_time = now_s();
  double pause = R->last_ckpt_time - t0;
  R->ckpt_count++;
  R->ckpt_pause_sum += pause;
  if (pause > R->ckpt_pause_max) R->ckpt_pause_max = pause;
  return rc;
}

/* The checkpoint must describe the job's model: same tensors, same shapes,
 * same optimizer; batch size and seed fix the data order and may not change. */
static int check_resume(const run *R, const nn_ckpt_snapshot *s, const char *path,
                        nn_error *err) {
  const nn_model *m = &R->model;
  char a[64], b[64];
  if (s->ntensors != m->ntensors || s->nparams != m->nparams || s->nbuffers != m->nbuffers)
    return nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "the checkpoint's model (%d tensors, %zu parameters) is not the job's "
                       "(%d tensors, %zu parameters): model shapes may not change on resume",
                       s->ntensors, s->nparams, m->ntensors, m->nparams);
  for (int i = 0; i < m->ntensors; i++) {
    const nn_tensor_ref *x = &s->tensors[i], *y = &m->tensors[i];
    if (strcmp(x->layer, y->layer) || strcmp(x->name, y->name) ||
        !nn_shape_equal(&x->shape, &y->shape) || x->is_buffer != y->is_buffer)
      return nn_error_at(err, NN_ECKPT, path, 0, 0,
                         "checkpoint tensor %s/%s %s does not match the job's %s/%s %s: model "
                         "shapes may not change on resume", x->layer, x->name,
                         nn_shape_str(&x->shape, a, sizeof a), y->layer, y->name,
                         nn_shape_str(&y->shape, b, sizeof b));
  }
  if (strcmp(s->optim_type, R->optim.cfg.type) || s->nslots != R->optim.nslots)
    return nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "the checkpoint was trained with optimizer '%s', the job asks for '%s': "
                       "the optimizer may not change on resume", s->optim_type, R->optim.cfg.type);
  nn_job *old = calloc(1, sizeof *old);
  if (!old) return nn_error_set(err, NN_ENOMEM, "out of memory");
  int rc = nn_job_unpack(old, s->spec, s->spec_len, err);
  if (!rc && old->train.batch_size != R->job->train.batch_size)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "train.batch_size was %d in the checkpointed run and is %d now: the "
                     "global batch may not change on resume", old->train.batch_size,
                     R->job->train.batch_size);
  if (!rc && old->train.seed != R->job->train.seed)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "train.seed was %lld in the checkpointed run and is %lld now: the seed "
                     "may not change on resume", (long long)old->train.seed,
                     (long long)R->job->train.seed);
  if (!rc && strcmp(old->data.train, R->job->data.train))
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "data.train was '%s' in the checkpointed run and is '%s' now: the "
                     "training data may not change on resume", old->data.train,
                     R->job->data.train);
  if (!rc && old->data.validation_split != R->job->data.validation_split)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "data.validation_split may not change on resume (was %g, is %g)",
                     old->data.validation_split, R->job->data.validation_split);
  free(old);
  return rc;
}

typedef struct warn_ctx {
  FILE *f;
} warn_ctx;

static void warn_skip(void *user, const nn_error *e) {
  char buf[1024];
  nn_error_format(e, buf, sizeof buf);
  fprintf(((warn_ctx *)user)->f, "nntrain: warning: skipping checkpoint: %s\n", buf);
}

/* Resume as opts say: rank 0 reads, every rank receives. Returns 0 with
 * R->state.step == 0 when starting fresh. */
static int resume(run *R, nn_error *err) {
  int mode = R->opts->resume, rc = 0, found = 0;
  if (mode == NN_RESUME_NONE) return 0;
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  char path[NN_PATH_MAX + 64] = "";
  if (R->lead) {
    if (mode == NN_RESUME_PATH) {
      snprintf(path, sizeof path, "%s", R->opts->resume_path);
      rc = nn_ckpt_read(R->opts->resume_path, &s, err);
      found = !rc;
    } else {
      warn_ctx w = {stderr};
      rc = nn_ckpt_read_latest(R->dir, &s, path, sizeof path, warn_skip, &w, err);
      if (rc == NN_ENOTFOUND && mode == NN_RESUME_AUTO) {
        rc = 0;
      } else if (rc == NN_ENOTFOUND) {
        rc = nn_error_at(err, NN_ENOTFOUND, R->dir, 0, 0,
                         "no checkpoint to resume from (looked in %s/checkpoints)", R->dir);
      }
      found = !rc && s.params;
    }
    if (found) rc = check_resume(R, &s, path, err);
    if (rc) rc = rc == NN_ENOTFOUND || rc == NN_ENOMEM ? rc : NN_ECKPT;
  }
  rc = nn_agree(R->comm, rc, err);
  MPI_Bcast(&found, 1, MPI_INT, 0, R->comm);
  if (rc || !found) goto done;
  /* Everything that makes the continuation exact. */
  if (R->lead) {
    memcpy(R->model.params, s.params, s.nparams * sizeof(float));
    if (s.nbuffers) memcpy(R->model.buffers, s.buffers, s.nbuffers * sizeof(float));
    if (s.nslots) nn_optim_slots_import(&R->optim, s.slots, s.nparams);
    R->state = s.state;
  }
  MPI_Bcast(&R->state, (int)sizeof R->state, MPI_BYTE, 0, R->comm);
  size_t chunk = (size_t)1 << 28; /* floats per broadcast: under INT_MAX */
  for (size_t o = 0; o < R->model.nparams; o += chunk) {
    size_t c = R->model.nparams - o < chunk ? R->model.nparams - o : chunk;
    MPI_Bcast(R->model.params + o, (int)c, MPI_FLOAT, 0, R->comm);
  }
  if (R->model.nbuffers)
    MPI_Bcast(R->model.buffers, (int)R->model.nbuffers, MPI_FLOAT, 0, R->comm);
  size_t nslot = (size_t)R->optim.nslots * R->optim.n;
  for (size_t o = 0; o < nslot; o += chunk) {
    size_t c = nslot - o < chunk ? nslot - o : chunk;
    MPI_Bcast(R->optim.slots + o, (int)c, MPI_FLOAT, 0, R->comm);
  }
  R->optim.t = R->state.optim_t;
  R->plateau.scale = R->state.plateau_scale;
  R->plateau.best = R->state.plateau_best;
  R->plateau.bad_epochs = R->state.plateau_bad;
  R->plateau.cooldown_left = R->state.plateau_cooldown;
  if (R->lead) {
    if (s.metrics && s.metrics_len)
      rc = nn_metrics_seed_history(&R->log, s.metrics, s.metrics_len, err);
    if (!R->opts->quiet)
      fprintf(R->out, "nntrain: resuming from %s: step %lld, epoch %d (+%lld steps)\n", path,
              (long long)R->state.step, R->state.epoch + 1, (long long)R->state.epoch_step);
    char rec[NN_PATH_MAX + 256];
    snprintf(rec, sizeof rec, "\"event\": \"resume\", \"checkpoint\": \"%s\", \"step\": %lld, "
             "\"ranks\": %d", path, (long long)R->state.step, R->N);
    if (!rc) rc = nn_metrics_write(&R->log, rec, err);
  }
  rc = nn_agree(R->comm, rc, err);
done:
  nn_ckpt_snapshot_free(&s);
  return rc;
}

/* Rank 0 read `path` (best.h5) and every rank now holds its parameters. */
static int load_params_from(run *R, const char *path, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  int rc = 0;
  if (R->lead) {
    rc = nn_ckpt_read(path, &s, err);
    if (!rc) rc = check_resume(R, &s, path, err);
    if (!rc) {
      memcpy(R->model.params, s.params, s.nparams * sizeof(float));
      if (s.nbuffers) memcpy(R->model.buffers, s.buffers, s.nbuffers * sizeof(float));
    }
  }
  nn_ckpt_snapshot_free(&s);
  rc = nn_agree(R->comm, rc, err);
  if (rc) return rc;
  MPI_Bcast(R->model.params, (int)R->model.nparams, MPI_FLOAT, 0, R->comm);
  if (R->model.nbuffers)
    MPI_Bcast(R->model.buffers, (int)R->model.nbuffers, MPI_FLOAT, 0, R->comm);
  return 0;
}

/* ---- control -------------------------------------------------------------- */

/* Rank 0's epoch decision, sent to everyone as an EpochControl message. */
static int broadcast_control(run *R, Nntrain__EpochControl *c, nn_error *err) {
  uint8_t buf[256];
  int len = 0;
  if (R->lead) len = (int)nntrain__epoch_control__pack(c, buf);
  MPI_Bcast(&len, 1, MPI_INT, 0, R->comm);
  if (len < 0 || len > (int)sizeof buf)
    return nn_error_set(err, NN_EINTERNAL, "bad control message");
  MPI_Bcast(buf, len, MPI_BYTE, 0, R->comm);
  if (!R->lead) {
    Nntrain__EpochControl *m = nntrain__epoch_control__unpack(NULL, (size_t)len, buf);
    if (!m) return nn_error_set(err, NN_EMPI, "cannot decode the coordinator's control message");
    *c = *m;
    c->base.descriptor = &nntrain__epoch_control__descriptor;
    nntrain__epoch_control__free_unpacked(m, NULL);
  }
  return 0;
}

/* Per-step control, at every step boundary: every rank learns whether rank
 * 0's clock says a timed checkpoint is due and whether any rank was asked to
 * stop (a signal), and the model's buffers (batch-norm running statistics,
 * which each rank updates from its own slice) are averaged over the ranks, so
 * replicas stay identical in everything a checkpoint holds. One all-reduce of
 * 2 + nbuffers floats through the watched ring. */
static int step_control(run *R, int *ckpt_due, int *stop, nn_error *err) {
  double every = R->job->checkpoint.every_seconds;
  float *v = R->ctlbuf;
  v[0] = R->lead && every > 0 && now_s() - R->last_ckpt_time >= every ? 1.0f : 0.0f;
  v[1] = nn_signals_pending() > 0 ? 1.0f : 0.0f;
  if (R->ctl) {
    size_t off, nb;
    nn_model_running_stats(&R->model, &off, &nb);
    float *stats = R->model.buffers + off;
    if (nb) memcpy(v + 2, stats, nb * sizeof(float));
    nn_ring_set_step(R->ctl, (long)R->state.step);
    int rc = nn_ring_allreduce(R->ctl, v, 2 + nb, err);
    if (rc) return rc;
    const float inv = 1.0f / (float)R->N;
    for (size_t i = 0; i < nb; i++) stats[i] = v[2 + i] * inv;
  }
  *ckpt_due = v[0] > 0.5f;
  *stop = v[1] > 0.5f;
  return 0;
}

/* ---- the run -------------------------------------------------------------- */

static void free_run(run *R) {
  if (R->ckw) nn_ckpt_writer_free(R->ckw);
  nn_metrics_close(&R->log);
  nn_metrics_acc_free(&R->acc);
  if (R->have_stepper) nn_stepper_free(&R->st);
  nn_gradsync_free(R->sync);
  nn_ring_free(R->ctl);
  if (R->have_optim) nn_optim_free(&R->optim);
  if (R->have_model) nn_model_free(&R->model);
  nn_loader_free(R->train_L);
  nn_loader_free(R->val_L);
  nn_loader_free(R->test_L);
  nn_dataset_close(R->train_ds);
  if (R->own_val_ds) nn_dataset_close(R->val_ds);
  nn_dataset_close(R->test_ds);
  free(R->train_idx);
  free(R->val_idx);
  free(R->spec);
  free(R->ctlbuf);
  free(R->rss_all);
  free(R->rss_list);
}

/* Open the data sets and carve the validation set; all ranks agree. */
static int open_data(run *R, nn_error *err) {
  const nn_job *job = R->job;
  nn_dataset_opts dopts = {.cache = job->data.cache, .chunk_cache = 0};
  int rc = nn_dataset_open(&R->train_ds, job->data.train, &dopts, err);
  const nn_dataset_info *tri = rc ? NULL : nn_dataset_get_info(R->train_ds);
  if (!rc && job->data.test[0]) {
    rc = nn_dataset_open(&R->test_ds, job->data.test, &dopts, err);
    if (!rc) rc = same_data_kind(tri, nn_dataset_get_info(R->test_ds), "test", job->data.test,
                                 err);
  }
  int splits = (job->data.validation[0] != 0) + (job->data.validation_split > 0) +
               (R->opts->kfold > 1);
  if (!rc && splits > 1)
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                     "use one of data.validation, data.validation_split and --kfold");
  if (!rc && job->data.validation[0]) {
    rc = nn_dataset_open(&R->val_ds, job->data.validation, &dopts, err);
    R->own_val_ds = 1;
    if (!rc) rc = same_data_kind(tri, nn_dataset_get_info(R->val_ds), "validation",
                                 job->data.validation, err);
  }
  if (!rc && (job->data.validation_split > 0 || R->opts->kfold > 1)) {
    int64_t n = tri->n, lo, hi;
    uint32_t which;
    if (R->opts->kfold > 1) {
      int K = R->opts->kfold, f = R->opts->fold;
      lo = n * f / K;
      hi = n * (f + 1) / K;
      which = 1000u + (uint32_t)R->opts->repeat;
    } else {
      lo = 0;
      hi = (int64_t)llround((double)n * job->data.validation_split);
      which = 0;
    }
    if (hi - lo < 1 || n - (hi - lo) < 1)
      rc = nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                       "%lld samples cannot be split into training and validation sets",
                       (long long)n);
    else
      rc = carve(n, (uint64_t)job->train.seed, which, lo, hi, &R->train_idx, &R->ntrain,
                 &R->val_idx, &R->nval, err);
    R->val_ds = R->train_ds;
    R->own_val_ds = 0;
  }
  int64_t ntr = R->train_idx ? R->ntrain : (tri ? tri->n : 0);
  if (!rc && job->train.batch_size % R->N != 0)
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                     "train.batch_size = %d is the GLOBAL batch and must divide evenly over "
                     "the %d ranks (try %d)", job->train.batch_size, R->N,
                     (job->train.batch_size + R->N - 1) / R->N * R->N);
  if (!rc && ntr < R->N)
    rc = nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                     "%lld training samples cannot be split over %d ranks", (long long)ntr, R->N);
  if (!rc && ntr < job->train.batch_size && job->train.drop_last)
    rc = nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                     "train.drop_last is set and the %lld training samples are fewer than "
                     "one batch (%d)", (long long)ntr, job->train.batch_size);
  return nn_agree(R->comm, rc, err);
}

/* Model, optimizer, loaders, gradient sync, metrics, writer. */
static int build(run *R, nn_error *err) {
  const nn_job *job = R->job;
  const nn_dataset_info *tri = nn_dataset_get_info(R->train_ds);
  nn_loader_cfg lc = {.seed = (uint64_t)job->train.seed, .rank = R->rank, .nranks = R->N,
                      .batch_size = job->train.batch_size, .drop_last = job->train.drop_last,
                      .shuffle = 1, .prefetch = job->data.prefetch > 0 ? job->data.prefetch : 2,
                      .normalize = job->data.normalize, .subset = R->train_idx,
                      .nsubset = R->ntrain, .augment = &job->augment};
  int rc = 0;
  if (nn_augment_check(&job->augment, &tri->sample, err) != 0) { /* a job error: name the file */
    nn_error e = *err;
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "%s", e.msg);
  }
  if (!rc) rc = nn_loader_create(&R->train_L, R->train_ds, &lc, err);
  nn_loader_cfg ec = lc;
  ec.shuffle = 0;
  ec.drop_last = 0;
  ec.subset = NULL;
  ec.nsubset = 0;
  ec.augment = NULL;
  if (!rc && R->test_ds) rc = nn_loader_create(&R->test_L, R->test_ds, &ec, err);
  if (!rc && R->val_ds) {
    ec.subset = R->val_idx;
    ec.nsubset = R->nval;
    rc = nn_loader_create(&R->val_L, R->val_ds, &ec, err);
  }
  nn_shape in = tri->sample;
  if (!rc && job->model.input_ndim > 0) {
    nn_shape want = {.ndim = job->model.input_ndim};
    for (int i = 0; i < want.ndim; i++) want.dim[i] = job->model.input_shape[i];
    if (nn_shape_count(&want) != nn_shape_count(&in)) {
      char a[64], b[64];
      rc = nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                       "model.input_shape %s does not match the data's sample shape %s",
                       nn_shape_str(&want, a, sizeof a), nn_shape_str(&in, b, sizeof b));
    }
    in = want;
  }
  if (!rc) {
    rc = nn_model_build(&R->model, &in, job->model.layers, job->model.nlayers,
                        nn_loader_max_slice(R->train_L), err);
    R->have_model = !rc;
  }
  if (!rc) rc = check_model_vs_data(job, &R->model, tri, R->loss, err);

  if (!rc) {
    nn_model_init_params(&R->model, (uint64_t)job->train.seed);
    rc = nn_optim_init(&R->optim, &job->optimizer, R->model.ntrainable, err);
    R->have_optim = !rc;
  }
  if (!rc) {
    R->steps_per_epoch = nn_loader_steps(R->train_L);
    R->total_steps = (int64_t)job->train.epochs * R->steps_per_epoch;
    rc = nn_schedule_check_run(&job->schedule, job->optimizer.lr, R->steps_per_epoch,
                               R->total_steps, err);
    if (rc) { /* name the job file: the schedule's keys are wrong for this run */
      nn_error e = *err;
      rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "%s", e.msg);
      memcpy(err->where, e.where, sizeof err->where);
    }
    nn_plateau_init(&R->plateau, &job->schedule);
  }
  if (!rc && R->N > 1)
    rc = nn_gradsync_create(&R->sync, R->comm, R->model.grads, R->model.ntrainable, 0, err);
  if (!rc) {
    R->ctlbuf = malloc((2 + R->model.nbuffers) * sizeof(float));
    if (R->lead) { /* the end-of-run summary's, before any rank can depend on it */
      R->rss_all = malloc((size_t)R->N * sizeof *R->rss_all);
      R->rss_list = malloc((size_t)R->N * 24 + 256);
    }
    if (!R->ctlbuf || (R->lead && (!R->rss_all || !R->rss_list)))
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  if (!rc && R->N > 1) rc = nn_ring_create(&R->ctl, R->comm, 2 + R->model.nbuffers, 0, err);
  if (!rc && R->N > 1 && R->opts->timeout_s > 0) {
    nn_gradsync_set_timeout(R->sync, R->opts->timeout_s);
    nn_ring_set_timeout(R->ctl, R->opts->timeout_s);
  }
  if (!rc) {
    rc = nn_stepper_init(&R->st, &R->model, &R->optim, R->sync, R->loss, err);
    R->have_stepper = !rc;
    if (!rc) { /* after the all-reduce, the same on every rank (worker/step.h) */
      R->st.clip_value = job->train.clip_value;
      R->st.clip_norm = job->train.clip_norm;
    }
  }
  if (!rc) {
    nn_metrics_config mc = {.num_classes = tri->num_classes, .target_dim = tri->target_dim,
                            .scores = NN_METRICS_LOGITS};
    if (tri->num_classes > 0 && job->validation.top_k > 1 &&
        job->validation.top_k < tri->num_classes) {
      mc.ntopk = 1;
      mc.topk[0] = job->validation.top_k;
    }
    if (tri->num_classes == 1) mc.num_classes = 1; /* rejected by init, with a message */
    rc = nn_metrics_acc_init(&R->acc, &mc, err);
  }
  if (!rc && R->lead) rc = nn_metrics_open(&R->log, R->dir, err);
  if (!rc && R->lead) rc = nn_job_pack(job, &R->spec, &R->spec_len, err);
  if (!rc && R->lead) {
    rc = nn_ckpt_writer_start(&R->ckw, R->dir, job->checkpoint.keep, err);
    if (!rc) rc = nn_ckpt_writer_init_snapshots(R->ckw, &R->model, R->optim.nslots, err);
  }
  return nn_agree(R->comm, rc, err);
}

/* Format the epoch line and the metrics record (rank 0). */
static int report_epoch(run *R, int epoch, int done_here, double t_train, double samples,
                        double lr, double train_loss, double train_acc,
                        const nn_metrics_result *val, const nn_metrics_result *test,
                        double t_start, nn_error *err) {
  const nn_job *job = R->job;
  double elapsed = now_s() - t_start;
  double sps = t_train > 0 ? samples / t_train : 0;
  double per_epoch = elapsed / (done_here > 0 ? done_here : 1);
  char el[32], eta[32];
  fmt_duration(elapsed, el, sizeof el);
  fmt_duration(per_epoch * (job->train.epochs - epoch - 1), eta, sizeof eta);
  int cls = nn_dataset_get_info(R->train_ds)->num_classes > 0;
  if (!R->opts->quiet) {
    fprintf(R->out, "epoch %*d/%d  loss %.4f", job->train.epochs >= 10 ? 2 : 1, epoch + 1,
            job->train.epochs, train_loss);
    if (cls) fprintf(R->out, "  acc %6.2f%%", 100 * train_acc);
    if (val) {
      fprintf(R->out, "  val_loss %.4f", val->loss);
      if (cls) fprintf(R->out, "  val_acc %6.2f%%", 100 * val->accuracy);
    }
    if (test) {
      fprintf(R->out, "  test_loss %.4f", test->loss);
      if (cls) fprintf(R->out, "  test_acc %6.2f%%", 100 * test->accuracy);
    }
    fprintf(R->out, "  lr %.3g  %.0f samples/s  elapsed %s  ETA %s\n", lr, sps, el, eta);
    fflush(R->out);
  }
  char rec[3500];
  int k = snprintf(rec, sizeof rec,
                   "\"epoch\": %d, \"step\": %lld, \"lr\": %.9g, \"loss\": %.9g, "
                   "\"accuracy\": %.9g, \"samples_per_s\": %.1f, \"epoch_s\": %.3f, "
                   "\"elapsed_s\": %.3f",
                   epoch + 1, (long long)R->state.step, lr, train_loss, train_acc, sps, t_train,
                   elapsed);
  const nn_metrics_result *parts[2] = {val, test};
  const char *prefixes[2] = {"val", "test"};
  for (int i = 0; i < 2; i++) {
    if (!parts[i] || k <= 0 || k >= (int)sizeof rec - 2) continue;
    rec[k++] = ',';
    rec[k++] = ' ';
    size_t len = 0;
    int rc = nn_metrics_json(parts[i], prefixes[i], rec + k, sizeof rec - (size_t)k, &len, err);
    if (rc) return rc;
    k += (int)len;
  }
  return nn_metrics_write(&R->log, rec, err);
}

int nn_train_run(const nn_job *job, MPI_Comm comm, const nn_train_opts *opts,
                 nn_train_result *res, nn_error *err) {
  run *R = calloc(1, sizeof *R);
  if (!R) return nn_error_set(err, NN_ENOMEM, "out of memory");
  int rc = 0;
  R->job = job;
  R->opts = opts;
  R->comm = comm;
  MPI_Comm_rank(comm, &R->rank);
  MPI_Comm_size(comm, &R->N);
  R->lead = R->rank == 0;
  R->out = opts->out ? opts->out : stdout;
  snprintf(R->dir, sizeof R->dir, "%s", opts->run_dir ? opts->run_dir : job->run.dir);
  const int N = R->N, lead = R->lead;
  double t_start = now_s();
  memset(res, 0, sizeof *res);
  res->test_loss = res->test_acc = res->val_loss = res->val_acc = -1;
  res->best_monitored = NAN;
  nn_metrics_result vres, tres;
  memset(&vres, 0, sizeof vres);
  memset(&tres, 0, sizeof tres);

  openblas_set_num_threads(nn_train_blas_threads(job, comm));
  R->loss = nn_loss_parse(job->train.loss);
  if (R->loss < 0) {
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "unknown loss '%s'", job->train.loss);
    goto done;
  }
  if ((rc = open_data(R, err)) != 0) goto done;
  if ((rc = build(R, err)) != 0) goto done;

  R->state.seed = (uint64_t)job->train.seed;
  R->state.nranks = N;
  R->state.es_best = NAN;
  R->last_ckpt_time = now_s();
  if ((rc = resume(R, err)) != 0) goto done;
  /* [init] from: on a fresh run only (resume is known only here, after build) */
  if (R->state.step == 0 &&
      (rc = nn_init_from(job, &R->model, R->comm, lead && !opts->quiet ? R->out : NULL, err)))
    goto done;
  R->state.nranks = N;
  res->resumed_step = (int)R->state.step;

  const nn_dataset_info *tri = nn_dataset_get_info(R->train_ds);
  int show_bar = opts->progress < 0 ? (job->run.progress && isatty(2)) : opts->progress;
  show_bar = show_bar && lead;
  const int epochs = job->train.epochs;
  if (lead) {
    char shp[64];
    if (!opts->quiet)
      fprintf(R->out,
              "nntrain: job '%s': %d rank%s, %lld training samples%s%s, input %s, %zu "
              "parameters, %d epochs of %lld steps (global batch %d)\n",
              job->name[0] ? job->name : job->source, N, N == 1 ? "" : "s",
              (long long)(R->train_idx ? R->ntrain : tri->n),
              R->val_L ? ", validation" : "", R->test_ds ? "" : ", no test set",
              nn_shape_str(&R->model.in, shp, sizeof shp), R->model.nparams, epochs,
              (long long)R->steps_per_epoch, job->train.batch_size);
    char rec[1024];
    snprintf(rec, sizeof rec,
             "\"event\": \"start\", \"job\": \"%s\", \"ranks\": %d, \"params\": %zu, "
             "\"train_samples\": %lld, \"epochs\": %d, \"batch_size\": %d, \"step\": %lld",
             job->name, N, R->model.nparams, (long long)(R->train_idx ? R->ntrain : tri->n),
             epochs, job->train.batch_size, (long long)R->state.step);
    if ((rc = nn_metrics_write(&R->log, rec, err)) != 0) goto fail_local;
  }

  /* ---- epochs ------------------------------------------------------------ */
  double train_time = 0, train_samples = 0;
  const int maximize = es_maximizes(&job->early_stopping);
  char best_path[NN_PATH_MAX + 16];
  snprintf(best_path, sizeof best_path, "%s/best.h5", R->dir);
  int stop = 0, early = 0, epochs_here = 0;
  double lr = job->optimizer.lr;
  for (int epoch = R->state.epoch; epoch < epochs && !stop; epoch++) {
    double t0 = now_s(), last_bar = 0, samples = 0;
    int pending = 0;
    nn_step_stats s = {0};
    R->state.epoch = epoch;
    if ((rc = nn_loader_start(R->train_L, epoch, R->state.epoch_step, err)) != 0) goto fail_local;
    const nn_batch *b;
    for (;;) {
      if ((rc = nn_loader_next(R->train_L, &b, err)) != 0) goto fail_local;
      if (!b) break;
      lr = nn_schedule_lr_at(&job->schedule, job->optimizer.lr, R->state.step,
                             R->steps_per_epoch, R->total_steps, &R->plateau);
      rc = nn_step_train(&R->st, b, lr, (uint64_t)R->state.step, (uint64_t)job->train.seed, &s,
                         err);
      if (rc) goto fail_local;
      R->state.step++;
      R->state.epoch_step++;
      R->state.lr = lr;
      samples += b->global_n;
      if (opts->check_replicas && N > 1) {
        if ((rc = watched_barrier(R->ctl, R->state.step, err)) != 0) goto fail_local;
        uint64_t h = hash_floats(R->model.params, R->model.nparams), lo, hi;
        MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
        MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
        if (lo != hi) {
          rc = nn_error_set(err, NN_EINTERNAL,
                            "replicas diverged: parameters differ between ranks after step %lld",
                            (long long)R->state.step);
          goto fail_local;
        }
      }
      if (show_bar) {
        double t = now_s();
        if (t - last_bar > 0.1 || b->step + 1 == R->steps_per_epoch) {
          last_bar = t;
          progress_bar(epoch + 1, epochs, b->step + 1, R->steps_per_epoch,
                       s.count > 0 ? s.loss_sum / s.count : 0, t - t0);
        }
      }
      int last_of_epoch = R->state.epoch_step == R->steps_per_epoch;
      int max_reached = opts->max_steps > 0 && R->state.step >= opts->max_steps;
      /* Checkpoints inside the epoch: by steps (every rank counts the same)
       * or by rank 0's clock (told to all). The epoch's own checkpoint is
       * written after its validation. */
      int due = job->checkpoint.every_steps > 0 &&
                R->state.step % job->checkpoint.every_steps == 0;
      int timed = 0, signalled = 0;
      if ((rc = step_control(R, &timed, &signalled, err)) != 0) goto fail_local;
      if (signalled) { /* every rank stops here, at the same step */
        if (!last_of_epoch) nn_loader_stop(R->train_L);
        else {
          R->state.epoch = epoch + 1;
          R->state.epoch_step = 0;
        }
        R->state.elapsed_s += now_s() - t0;
        if ((rc = take_checkpoint(R, "", 0, err)) != 0) goto fail_local;
        if (lead && (rc = nn_ckpt_writer_wait(R->ckw, err)) != 0) goto fail_local;
        if ((rc = watched_barrier(R->ctl, R->state.step, err)) != 0) goto fail_local;
        char path[NN_PATH_MAX + 64];
        nn_ckpt_path(R->dir, R->state.step, path, sizeof path);
        if (lead) {
          char rec[NN_PATH_MAX + 160];
          snprintf(rec, sizeof rec, "\"event\": \"stopped\", \"step\": %lld, \"checkpoint\": "
                   "\"%s\"", (long long)R->state.step, path);
          if ((rc = nn_metrics_write(&R->log, rec, err)) != 0) goto fail_local;
        }
        res->steps = R->state.step;
        rc = nn_error_set(err, NN_ESTOPPED,
                          "stopped on a signal at step %lld; checkpoint %s written; continue "
                          "with --resume (or run.resume = \"auto\")",
                          (long long)R->state.step, path);
        goto done;
      }
      if ((due || timed) && !last_of_epoch && !max_reached) {
        if ((rc = take_checkpoint(R, "", now_s() - t0, err)) != 0) goto fail_local;
      } else if (due || timed) {
        pending = 1; /* written at the epoch's end, after its validation */
      }
      if (max_reached && !last_of_epoch) {
        nn_loader_stop(R->train_L);
        stop = 1;
        break;
      }
      if (max_reached) stop = 1;
    }
    double t_train = now_s() - t0;
    train_time += t_train;
    R->state.elapsed_s += t_train;
    train_samples += samples;
    if (show_bar) fprintf(stderr, "\r%*s\r", 100, "");
    int epoch_done = R->state.epoch_step == R->steps_per_epoch;
    if (epoch_done) {
      R->state.epoch = epoch + 1;
      R->state.epoch_step = 0;
    }

    if ((rc = watched_barrier(R->ctl, R->state.step, err)) != 0) goto fail_local;
    double v[3] = {s.loss_sum, s.correct, s.count}, g[3];
    MPI_Allreduce(v, g, 3, MPI_DOUBLE, MPI_SUM, comm);
    double train_loss = g[2] > 0 ? g[0] / g[2] : 0, train_acc = g[2] > 0 ? g[1] / g[2] : 0;
    res->train_loss = train_loss;
    res->train_acc = train_acc;
    res->epochs = epoch + 1;
    res->steps = R->state.step;
    if (g[2] > 0 && !isfinite(train_loss)) {
      rc = nn_error_set(err, NN_ENUMERIC,
                        "training diverged in epoch %d (loss is %g): lower optimizer.lr or check "
                        "the data", epoch + 1, train_loss);
      goto done; /* every rank saw the same reduced value */
    }
    if (!epoch_done) { /* stopped mid-epoch (--steps): no validation, a checkpoint at the end */
      if (lead && g[2] > 0) {
        char rec[256];
        snprintf(rec, sizeof rec, "\"event\": \"stop\", \"step\": %lld, \"epoch\": %d, "
                 "\"partial_loss\": %.9g", (long long)R->state.step, epoch + 1, train_loss);
        if ((rc = nn_metrics_write(&R->log, rec, err)) != 0) goto fail_local;
      }
      break;
    }

    /* Validation and the coordinator's decisions. */
    int validate = R->val_L && ((epoch + 1) % job->validation.every_epochs == 0 ||
                                epoch + 1 == epochs || stop);
    nn_metrics_result_free(&vres);
    nn_metrics_result_free(&tres);
    if (validate && (rc = evaluate(R, R->val_L, &vres, err)) != 0) goto fail_local;
    if (R->test_L && (rc = evaluate(R, R->test_L, &tres, err)) != 0) goto fail_local;
    Nntrain__EpochControl ctl = NNTRAIN__EPOCH_CONTROL__INIT;
    if (lead) {
      double m = monitored_value(job->early_stopping.monitor, train_loss, train_acc, &vres,
                                 validate);
      ctl.monitored = m;
      double best = R->state.es_best;
      int better = isfinite(m) && (isnan(best) || (maximize ? m > best + job->early_stopping.min_delta
                                                            : m < best - job->early_stopping.min_delta));
      int measured = isfinite(m);
      if (better) {
        R->state.es_best = m;
        R->state.es_best_epoch = epoch + 1;
        R->state.es_bad = 0;
        ctl.improved = 1;
      } else if (measured) {
        R->state.es_bad++;
      }
      if (job->early_stopping.patience > 0 && measured &&
          R->state.es_bad >= job->early_stopping.patience)
        ctl.stop = 1;
      if (!strcmp(job->schedule.type, "reduce_on_plateau")) {
        double pm = monitored_value(job->schedule.monitor, train_loss, train_acc, &vres, validate);
        if (validate || strncmp(job->schedule.monitor, "val_", 4))
          nn_plateau_update(&R->plateau, &job->schedule, job->optimizer.lr, pm);
      }
      ctl.plateau_scale = R->plateau.scale;
      ctl.plateau_best = R->plateau.best;
      ctl.plateau_bad = R->plateau.bad_epochs;
      ctl.plateau_cooldown = R->plateau.cooldown_left;
      ctl.es_best = R->state.es_best;
      ctl.es_bad = R->state.es_bad;
      ctl.es_best_epoch = R->state.es_best_epoch;
    }
    if ((rc = watched_barrier(R->ctl, R->state.step, err)) != 0) goto fail_local;
    if ((rc = broadcast_control(R, &ctl, err)) != 0) goto fail_local;
    R->plateau.scale = ctl.plateau_scale;
    R->plateau.best = ctl.plateau_best;
    R->plateau.bad_epochs = ctl.plateau_bad;
    R->plateau.cooldown_left = ctl.plateau_cooldown;
    R->state.es_best = ctl.es_best;
    R->state.es_bad = ctl.es_bad;
    R->state.es_best_epoch = ctl.es_best_epoch;
    if (ctl.stop) {
      stop = 1;
      early = 1;
    }
    if (validate) {
      res->val_loss = vres.loss;
      res->val_acc = vres.accuracy;
    }
    if (R->test_L) {
      res->test_loss = tres.loss;
      res->test_acc = tres.accuracy;
    }
    if (lead) {
      rc = report_epoch(R, epoch, ++epochs_here, t_train, samples, lr, train_loss, train_acc,
                        validate ? &vres : NULL, R->test_L ? &tres : NULL, t_start, err);
      if (rc) goto fail_local;
      if (ctl.improved && (rc = take_checkpoint(R, best_path, 0, err)) != 0) goto fail_local;
      int every = job->checkpoint.every_epochs;
      int last = epoch + 1 == epochs || stop;
      int want = (every > 0 && (epoch + 1) % every == 0) || pending;
      if (want && !(last && job->checkpoint.at_end) &&
          (rc = take_checkpoint(R, "", 0, err)) != 0)
        goto fail_local;
      if (early && !opts->quiet)
        fprintf(R->out, "early stopping: %s has not improved for %d epochs (best %.6g at epoch "
                "%d)\n", job->early_stopping.monitor, R->state.es_bad, R->state.es_best,
                R->state.es_best_epoch);
    }
  }
  res->steps = R->state.step;
  res->best_monitored = R->state.es_best;
  res->best_epoch = R->state.es_best_epoch;
  res->stopped_early = early;

  /* ---- the end: checkpoint, best model, final figures --------------------- */
  if (lead && job->checkpoint.at_end && (rc = take_checkpoint(R, "", 0, err)) != 0) goto fail_local;
  if (lead && R->ckw && (rc = nn_ckpt_writer_wait(R->ckw, err)) != 0) goto fail_local;
  rc = nn_agree(comm, 0, err);
  if (rc) goto done;
  if (job->early_stopping.restore_best && R->state.es_best_epoch > 0) {
    if ((rc = load_params_from(R, best_path, err)) != 0) goto done;
    if (lead && !opts->quiet)
      fprintf(R->out, "restored the best model (epoch %d, %s %.6g) from %s\n",
              R->state.es_best_epoch, job->early_stopping.monitor, R->state.es_best, best_path);
    if (R->test_L) {
      nn_metrics_result_free(&tres);
      if ((rc = evaluate(R, R->test_L, &tres, err)) != 0) goto fail_local;
      res->test_loss = tres.loss;
      res->test_acc = tres.accuracy;
    }
  }
  res->seconds = now_s() - t_start;
  res->samples_per_s = train_time > 0 ? train_samples / train_time : 0;
  {
    /* Peak resident memory of every rank, for the report and the log. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine = (double)ru.ru_maxrss / 1024.0;
    if ((rc = watched_barrier(R->ctl, R->state.step, err)) != 0) goto fail_local;
    MPI_Gather(&mine, 1, MPI_DOUBLE, R->rss_all, 1, MPI_DOUBLE, 0, comm);
    if (lead) { /* {"event": "summary", ..., "peak_rss_mb": [r0, r1, ...]} */
      char *rec = R->rss_list;
      size_t cap = (size_t)N * 24 + 256;
      int k = snprintf(rec, cap, "\"event\": \"summary\", \"step\": %lld, \"samples_per_s\": "
                       "%.1f, \"peak_rss_mb\": [", (long long)R->state.step, res->samples_per_s);
      int list = k; /* each item takes at most 24 bytes: cap always suffices */
      for (int i = 0; i < N; i++)
        k += snprintf(rec + k, cap - (size_t)k, "%s%.1f", i ? ", " : "", R->rss_all[i]);
      if (!opts->quiet)
        fprintf(R->out, "training: %.0f samples/s over %d epochs; peak RSS per rank (MB): %s\n",
                res->samples_per_s, res->epochs, rec + list);
      snprintf(rec + k, cap - (size_t)k, "]");
      rc = nn_metrics_write(&R->log, rec, err);
    }
    if (rc) goto fail_local;
  }
  if (lead && R->ckpt_count) {
    if (!opts->quiet)
      fprintf(R->out, "checkpoints: %d written in the background; the step loop paused %.3f ms "
              "per checkpoint on average (max %.3f ms)\n", R->ckpt_count,
              1e3 * R->ckpt_pause_sum / R->ckpt_count, 1e3 * R->ckpt_pause_max);
    char rec[256];
    snprintf(rec, sizeof rec, "\"event\": \"end\", \"step\": %lld, \"checkpoints\": %d, "
             "\"checkpoint_pause_ms_mean\": %.4f, \"checkpoint_pause_ms_max\": %.4f",
             (long long)R->state.step, R->ckpt_count, 1e3 * R->ckpt_pause_sum / R->ckpt_count,
             1e3 * R->ckpt_pause_max);
    if ((rc = nn_metrics_write(&R->log, rec, err)) != 0) goto fail_local;
  }
  if (lead && !opts->quiet && R->test_L && res->epochs > 0 && res->test_loss >= 0) {
    if (nn_dataset_get_info(R->train_ds)->num_classes > 0)
      fprintf(R->out, "test accuracy: %.2f%% (%lld samples), test loss %.4f\n",
              100 * res->test_acc, (long long)nn_dataset_get_info(R->test_ds)->n, res->test_loss);
    else
      fprintf(R->out, "test loss: %.6g (%lld samples)\n", res->test_loss,
              (long long)nn_dataset_get_info(R->test_ds)->n);
  }
  if (lead && opts->dump_params) {
    FILE *f = fopen(opts->dump_params, "wb");
    int bad = !f || fwrite(R->model.params, sizeof(float), R->model.nparams, f) != R->model.nparams;
    if (f && fclose(f) != 0) bad = 1;
    if (bad) {
      rc = nn_error_at(err, NN_EIO, opts->dump_params, 0, 0, "cannot write parameters");
      goto fail_local;
    }
  }
  goto done;

fail_local:
  if (err->rank < 0) err->rank = R->rank;
  res->local_error = 1;
done:
  nn_metrics_result_free(&vres);
  nn_metrics_result_free(&tres);
  if (R->ckw && rc == 0) {
    nn_error e2;
    nn_error_clear(&e2);
    if (nn_ckpt_writer_wait(R->ckw, &e2) != 0 && !rc) {
      *err = e2;
      rc = e2.code;
      res->local_error = 1;
    }
  }
  free_run(R);
  free(R);
  return rc;
}
