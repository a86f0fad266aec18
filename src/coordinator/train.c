/* train.c: the trainer: a run as a sequence of short phases (see train.h).
 *
 *   setup      open the data (agree on errors), carve validation / k-fold
 *              parts, build the task's replicas (run/replica.h), open the run
 *              log and the checkpoint writer; resume: rank 0 reads the
 *              checkpoint, every rank receives parameters, slots and state
 *   epoch      the step loop: this rank's slice of every global batch goes
 *              through the task's step; at every step boundary one control
 *              all-reduce shares stop requests, rank 0's checkpoint clock and
 *              the replicas' running statistics
 *   end        the epoch's sums reduced, validation and test (run/evaluate.h)
 *   decide     rank 0's early-stopping and plateau decisions, sent to every
 *              rank as one message (run/decide.h)
 *   report     the epoch line and record (run/runlog.h), best.h5, checkpoints
 *   finish     the last checkpoint, the best-model restore, the summary
 *
 * The trainer knows no task kind by name: the task's ops table (run/task.h)
 * says which replicas to build and how one global batch is trained.
 * Decisions every rank can compute from identical values (step counters,
 * reduced sums) need no message; decisions that use rank 0's clock or rank
 * 0's metrics travel as messages, so every rank takes the same branch at the
 * same step. Every MPI call is checked (worker/collective.h). */
#include "coordinator/train.h"
#include "core/mem.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "coordinator/alloc.h"
#include "coordinator/checkpoint.h"
#include "coordinator/init_from.h"
#include "coordinator/report.h"
#include "coordinator/run/decide.h"
#include "coordinator/run/evaluate.h"
#include "coordinator/run/replica.h"
#include "coordinator/run/runlog.h"
#include "coordinator/run/split.h"
#include "coordinator/run/task.h"
#include "coordinator/schedule.h"
#include "core/compute.h"
#include "core/hash.h"
#include "worker/agree.h"
#include "worker/collective.h"
#include "worker/hier.h"
#include "worker/mpi_check.h"
#include "worker/signals.h"

static double now_s(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* ---- the run's state ------------------------------------------------------ */

#define REPORT_MISSES 16 /* misclassified samples the run report shows */

typedef struct run {
  const nn_job *job;
  const nn_train_opts *opts;
  nn_train_result *res;
  MPI_Comm comm;
  int rank, N, lead;
  double epoch_waits[3];   /* the last epoch's data, sync and control seconds, means
                              over the ranks (reduce_epoch) */
  char dir[NN_PATH_MAX];
  const nn_task_ops *task;
  nn_run_data data;
  int nrep;
  nn_replica rep[NN_TASK_MAX_REPLICAS];
  nn_replica *ev;                          /* the replica evaluations use */
  nn_ring *ctl;                            /* control ring (N > 1) */
  float *ctlbuf;                           /* [nctl]: flags, running statistics (step_control) */
  size_t nctl;
  double *rss_all;                         /* [N] on the lead: peak RSS per rank, MB */
  nn_metrics_acc acc;
  nn_metrics_result vres, tres;            /* the last validation / test figures */
  nn_runlog log;                           /* the lead's; others leave it closed */
  nn_ckpt_writer *ckw;
  int agreed;                              /* the failure returned is every rank's */
  int fail_rc;                             /* this rank's failure, not yet shared
                                              (defer_failure); 0: none */
  nn_error fail_err;                       /* its record */
  uint8_t *spec;                           /* the packed job, for checkpoints */
  size_t spec_len;
  nn_ckpt_state state;                     /* identical on every rank (with the decisions'
                                              state, state.decide) */
  int64_t steps_per_epoch, total_steps;
  double t_start, last_ckpt_time;
  double train_time, train_samples;        /* over the epochs of this process */
  int epochs_here, show_bar;
  double last_bar;                         /* when the progress bar was last drawn */
  int ckpt_count;                          /* snapshots handed to the writer */
  int rollback_due;                        /* on_nonfinite = "rollback": leave the epoch
                                              and reload the newest checkpoint */
  /* Carried state of language models (train.bptt, recurrent layers with
   * carry): each rank holds its streams' rows; checkpoints hold all streams'
   * rows in stream order, gathered on rank 0 (gather_carry), and a resume
   * hands every rank its streams' rows (scatter_carry), on any rank count. */
  int carry_on[NN_TASK_MAX_REPLICAS];      /* the replica carries state across batches */
  float *carry_all[NN_TASK_MAX_REPLICAS];  /* rank 0: [streams, carry_per_sample] (the
                                              optimizer batch: train.accumulate x batch_size) */
  int *carry_counts, *carry_displs;        /* rank 0: [N] each, for the gather/scatter */
  int64_t carry_step;                      /* the step carry_all was gathered at, -1 */
  double ckpt_pause_sum, ckpt_pause_max;   /* seconds the step loop waited for them */
  /* step records (run.log_every_steps) and the run report (run.report) */
  double step_sums[3];                     /* this rank's last step: loss sum, correct,
                                              count; over all ranks after step_control */
  double log_t, log_samples;               /* the lead: time and samples at the last record */
  double samples_done;                     /* global samples trained by this process */
  nn_eval_misses misses;                   /* misclassified test samples (the lead keeps
                                              the merge); cap 0: none collected */
  int report_failed;                       /* the report could not be written: said once */
} run;

/* What the step loop of one epoch leaves for the end of the epoch. */
typedef struct epoch_out {
  nn_step_stats s;        /* this rank's sums */
  double t_train;         /* seconds in the step loop */
  double t_data;          /* of which waiting for the loader's next batch */
  double t_control;       /* of which after the step: control all-reduce, checkpoints */
  double samples;         /* global samples trained */
  int pending;            /* a checkpoint fell due at the epoch's last step */
  int stop;               /* --steps reached */
} epoch_out;

int nn_train_blas_threads(const nn_job *job, MPI_Comm comm) {
  if (job->run.threads > 0) return job->run.threads;
  MPI_Comm node;
  int local = 1;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    if (MPI_Comm_size(node, &local) != MPI_SUCCESS) local = 1; /* a guess for BLAS only */
    MPI_Comm_free(&node);
  }
  nn_alloc a; /* a malformed variable keeps its "unknown" value; the CLI warns */
  (void)nn_alloc_detect(&a, NULL);
  return nn_alloc_blas_threads(&a, 0, local, sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---- a rank failing alone ---------------------------------------------------- */

/* A failure of one rank alone after setup (a shard row it cannot use, an
 * allocation, rank 0's metrics log or checkpoint) may not return at once:
 * its peers would sit in the next collective, and only MPI_Abort would end
 * them. defer_failure records it (the first one is kept) and the rank goes on
 * taking part in the collectives, a failed read with an empty slice
 * (next_slice), up to the next agreement point:
 *
 *   the step boundary    the failure flag of step_control's all-reduce
 *   the epoch's sums     a flag beside them in reduce_epoch's all-reduce
 *   phase ends           agree_failure (nn_agree): after each evaluation,
 *                        at the start and the end of the run, on a stop
 *
 * There every rank returns the lowest failing rank's error record, with
 * err->rank set and R->agreed, so the CLI prints it once (rank 0) and every
 * rank exits with its code, cleanly. A rank with a failure pending takes no
 * more checkpoints (take_checkpoint), and every agreement point comes before
 * the checkpoints of its step, so nothing after a failure is ever saved.
 * A communication failure (NN_EMPI: the collectives themselves failed, or the
 * watchdog fired) cannot be agreed on and returns at once, as does any
 * failure of a run of one rank. Returns 0 when deferred, else rc. */
static int defer_failure(run *R, int rc, const nn_error *err) {
  if (!rc || rc == NN_EMPI || R->N == 1) return rc;
  if (!R->fail_rc) {
    R->fail_rc = rc;
    R->fail_err = *err;
  }
  return 0;
}

/* An agreement point (collective): this rank passes its deferred failure,
 * else rc (this phase's own outcome); every rank returns 0 or the lowest
 * failing rank's record. rc = NN_EMPI returns at once (see defer_failure). */
static int agree_failure(run *R, int rc, nn_error *err) {
  if (rc == NN_EMPI || R->N == 1) return rc;
  if (R->fail_rc) {
    rc = R->fail_rc;
    *err = R->fail_err;
  }
  rc = nn_agree(R->comm, rc, err);
  if (rc && rc != NN_EMPI) R->agreed = 1;
  return rc;
}

/* ---- checkpoints ---------------------------------------------------------- */

/* Rank 0: snapshot the run now and hand it to the writer (path "" = the
 * step's checkpoint). The step loop goes on while it is written. */
static int take_checkpoint(run *R, const char *path, double running_s, nn_error *err) {
  if (!R->lead || !R->ckw || R->fail_rc) return 0; /* nothing after a failure (defer_failure) */
  double t0 = now_s();
  nn_ckpt_snapshot *s = nn_ckpt_writer_slot(R->ckw);
  s->state = R->state;
  s->state.elapsed_s += running_s; /* the epoch in progress */
  for (int i = 0; i < R->nrep; i++) nn_replica_save_ckpt(&R->rep[i], s);
  int rc = 0;
  for (int i = 0; i < R->nrep && !rc; i++) { /* streams' state, when gathered at this step */
    size_t cols = R->rep[i].model.carry_per_sample;
    int have = R->carry_all[i] && R->carry_step == R->state.step;
    rc = nn_ckpt_replica_set_carry(&s->rep[i], have ? (size_t)nn_run_optimizer_batch(R->job) : 0,
                                   have ? cols : 0, R->carry_all[i], err);
  }
  if (!rc) rc = nn_ckpt_snapshot_set_spec(s, R->spec, R->spec_len, err);
  if (!rc) rc = nn_ckpt_snapshot_set_metrics(s, R->log.hist.p ? R->log.hist.p : "",
                                             R->log.hist.n, err);
  if (!rc) rc = nn_ckpt_writer_submit(R->ckw, path, err);
  R->last_ckpt_time = now_s();
  double pause = R->last_ckpt_time - t0;
  R->ckpt_count++;
  R->ckpt_pause_sum += pause;
  if (pause > R->ckpt_pause_max) R->ckpt_pause_max = pause;
  if (!rc && R->log.f) { /* the report's checkpoint pauses */
    json_t *rec = nn_runlog_record("checkpoint");
    nn_json_int(rec, "step", R->state.step);
    nn_json_num(rec, "pause_ms", 1e3 * pause);
    nn_json_num(rec, "elapsed_s", R->last_ckpt_time - R->t_start);
    nn_json_str(rec, "kind", path[0] ? "best" : "step");
    rc = nn_runlog_write(&R->log, rec, err);
  }
  return rc;
}

/* Streams [lo, hi) of rank r (the loader's slice of the optimizer batch:
 * train.batch_size streams, times train.accumulate). */
static void carry_slice(const run *R, int r, int *lo, int *hi) {
  int64_t B = nn_run_optimizer_batch(R->job);
  *lo = (int)(B * r / R->N);
  *hi = (int)(B * (r + 1) / R->N);
}

/* Rank 0's counts and displacements (floats) of every rank's rows of
 * carried state, cols floats per stream, for MPI_Gatherv / MPI_Scatterv. */
static void carry_counts(run *R, int cols) {
  for (int r = 0; R->lead && r < R->N; r++) {
    int a, b;
    carry_slice(R, r, &a, &b);
    R->carry_counts[r] = (b - a) * cols;
    R->carry_displs[r] = a * cols;
  }
}

/* Every replica's carried state, all streams in order, into rank 0's
 * carry_all. Collective; nothing to do for models without carry. */
static int gather_carry(run *R, nn_error *err) {
  for (int i = 0; i < R->nrep; i++) {
    const nn_model *m = &R->rep[i].model;
    if (!R->carry_on[i]) continue;
    int cols = (int)m->carry_per_sample, lo, hi;
    carry_slice(R, R->rank, &lo, &hi);
    carry_counts(R, cols);
    NN_MPI_RETURN(err, MPI_Gatherv(nn_step_carry(&R->rep[i].st), (hi - lo) * cols, MPI_FLOAT,
                                   R->carry_all[i], R->carry_counts, R->carry_displs, MPI_FLOAT,
                                   0, R->comm));
  }
  R->carry_step = R->state.step;
  return 0;
}

/* The carried state of snapshot s (rank 0's, NULL elsewhere) to every rank:
 * its streams' rows; zeros when s holds none (a checkpoint at an epoch's
 * end: the next window starts from zeros anyway). Collective. */
static int scatter_carry(run *R, const nn_ckpt_snapshot *s, nn_error *err) {
  for (int i = 0; i < R->nrep; i++) {
    nn_model *m = &R->rep[i].model;
    if (!R->carry_on[i]) continue;
    int cols = (int)m->carry_per_sample, B = (int)nn_run_optimizer_batch(R->job), lo, hi;
    size_t all = sizeof(float) * (size_t)B * (size_t)cols;
    int rc = 0;
    if (R->lead) {
      const nn_ckpt_replica *c = s ? &s->rep[i] : NULL;
      if (c && c->carry_rows && (c->carry_rows != (size_t)B || c->carry_cols != (size_t)cols))
        rc = nn_error_set(err, NN_ECKPT, "the checkpoint's carried state of replica '%s' is "
                          "%zu x %zu, this run's %d streams x %d", c->name, c->carry_rows,
                          c->carry_cols, B, cols);
      else if (c && c->carry_rows)
        memcpy(R->carry_all[i], c->carry, all);
      else
        memset(R->carry_all[i], 0, all);
    }
    if ((rc = nn_agree(R->comm, rc, err)) != 0) return rc;
    carry_slice(R, R->rank, &lo, &hi);
    carry_counts(R, cols);
    NN_MPI_RETURN(err, MPI_Scatterv(R->carry_all[i], R->carry_counts, R->carry_displs, MPI_FLOAT,
                                    nn_step_carry(&R->rep[i].st), (hi - lo) * cols, MPI_FLOAT,
                                    0, R->comm));
  }
  return 0;
}

/* Batch size, seed and data fix the data order: they may not change on resume. */
static int check_resume_job(const run *R, const nn_ckpt_snapshot *s, const char *path,
                            nn_error *err) {
  nn_job *old = nn_calloc(1, sizeof *old);
  if (!old) return nn_error_set(err, NN_ENOMEM, "out of memory");
  const nn_job *job = R->job;
  int rc = nn_job_unpack(old, s->spec, s->spec_len, err);
  if (!rc && old->train.batch_size != job->train.batch_size)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "train.batch_size was %d in the checkpointed run and is %d now: the "
                     "global batch may not change on resume", old->train.batch_size,
                     job->train.batch_size);
  if (!rc && nn_run_optimizer_batch(old) != nn_run_optimizer_batch(job))
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "train.accumulate was %d in the checkpointed run and is %d now: the "
                     "optimizer step's batch may not change on resume", old->train.accumulate,
                     job->train.accumulate);
  if (!rc && old->train.seed != job->train.seed)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "train.seed was %lld in the checkpointed run and is %lld now: the seed "
                     "may not change on resume", (long long)old->train.seed,
                     (long long)job->train.seed);
  if (!rc && strcmp(old->data.train, job->data.train))
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "data.train was '%s' in the checkpointed run and is '%s' now: the "
                     "training data may not change on resume", old->data.train,
                     job->data.train);
  if (!rc && old->data.validation_split != job->data.validation_split)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "data.validation_split may not change on resume (was %g, is %g)",
                     old->data.validation_split, job->data.validation_split);
  free(old);
  return rc;
}

/* Every replica against its checkpoint group, then the job's data order. */
static int check_resume(const run *R, const nn_ckpt_snapshot *s, const char *path,
                        nn_error *err) {
  if (s->nreplicas != R->nrep)
    return nn_error_at(err, NN_ECKPT, path, 0, 0, "the checkpoint holds %d replica%s, the job's "
                       "task '%s' trains %d", s->nreplicas, s->nreplicas == 1 ? "" : "s",
                       R->task->name, R->nrep);
  for (int i = 0; i < R->nrep; i++) {
    int rc = nn_replica_check_ckpt(&R->rep[i], s, path, 1, err);
    if (rc) return rc;
  }
  return check_resume_job(R, s, path, err);
}

static void warn_skip(void *user, const nn_error *e) {
  char buf[1024];
  nn_error_format(e, buf, sizeof buf);
  fprintf((FILE *)user, "nntrain: warning: skipping checkpoint: %s\n", buf);
}

/* Rank 0: find and read the checkpoint opts ask for. *found = 0: start fresh. */
static int read_resume_point(run *R, nn_ckpt_snapshot *s, char *path, size_t n, int *found,
                             nn_error *err) {
  int mode = R->opts->resume, rc;
  *found = 0;
  if (mode == NN_RESUME_PATH) {
    snprintf(path, n, "%s", R->opts->resume_path);
    rc = nn_ckpt_read(R->opts->resume_path, s, err);
  } else {
    rc = nn_ckpt_read_latest(R->dir, s, path, n, warn_skip, stderr, err);
    if (rc == NN_ENOTFOUND && mode == NN_RESUME_AUTO) return 0;
    if (rc == NN_ENOTFOUND)
      return nn_error_at(err, NN_ENOTFOUND, R->dir, 0, 0,
                         "no checkpoint to resume from (looked in %s/checkpoints)", R->dir);
  }
  if (!rc) rc = check_resume(R, s, path, err);
  *found = !rc;
  return rc == 0 || rc == NN_ENOTFOUND || rc == NN_ENOMEM ? rc : NN_ECKPT;
}

/* Rank 0's run state and replicas (parameters, buffers, optimizers), just
 * loaded from a checkpoint, on every rank. Collective. */
static int share_loaded(run *R, nn_error *err) {
  int rc = nn_bcast_bytes(R->comm, &R->state, sizeof R->state, 0, err);
  for (int i = 0; i < R->nrep && !rc; i++) rc = nn_replica_bcast(&R->rep[i], R->comm, 1, err);
  return rc;
}

/* Resume as opts say: rank 0 reads, every rank receives. Leaves the state at
 * step 0 when starting fresh. */
static int resume(run *R, nn_error *err) {
  if (R->opts->resume == NN_RESUME_NONE) return 0;
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  char path[NN_PATH_MAX + 64] = "";
  int found = 0, rc = 0;
  if (R->lead) {
    rc = read_resume_point(R, &s, path, sizeof path, &found, err);
    if (found) { /* everything that makes the continuation exact */
      for (int i = 0; i < R->nrep; i++) nn_replica_load_ckpt(&R->rep[i], &s, 1);
      R->state = s.state;
    }
  }
  rc = nn_agree(R->comm, rc, err);
  if (!rc) rc = nn_bcast_bytes(R->comm, &found, sizeof found, 0, err);
  if (rc || !found) goto done;
  if ((rc = share_loaded(R, err)) != 0) goto done;
  if ((rc = scatter_carry(R, R->lead ? &s : NULL, err)) != 0) goto done;
  R->res->nonfinite_skipped = R->state.nonfinite_skipped;
  R->res->rollbacks = R->state.rollbacks;
  if (R->lead) {
    if (s.metrics && s.metrics_len)
      rc = nn_runlog_seed_history(&R->log, s.metrics, s.metrics_len, err);
    nn_runlog_say(&R->log, "nntrain: resuming from %s: step %lld, epoch %d (+%lld steps)\n",
                  path, (long long)R->state.step, R->state.epoch + 1,
                  (long long)R->state.epoch_step);
    json_t *rec = nn_runlog_record("resume");
    nn_json_str(rec, "checkpoint", path);
    nn_json_int(rec, "step", R->state.step);
    nn_json_int(rec, "ranks", R->N);
    if (!rc) rc = nn_runlog_write(&R->log, rec, err);
    else json_decref(rec);
  }
  rc = nn_agree(R->comm, rc, err);
done:
  nn_ckpt_snapshot_free(&s);
  return rc;
}

/* Rank 0 reads `path` (best.h5); every rank then holds its parameters. */
static int load_params_from(run *R, const char *path, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  int rc = 0;
  if (R->lead) {
    rc = nn_ckpt_read(path, &s, err);
    if (!rc) rc = check_resume(R, &s, path, err);
    for (int i = 0; i < R->nrep && !rc; i++) nn_replica_load_ckpt(&R->rep[i], &s, 0);
  }
  nn_ckpt_snapshot_free(&s);
  rc = nn_agree(R->comm, rc, err);
  for (int i = 0; i < R->nrep && !rc; i++) rc = nn_replica_bcast(&R->rep[i], R->comm, 0, err);
  return rc;
}

/* ---- setup ---------------------------------------------------------------- */

/* Rank 0 prints the model checks' warnings (coordinator/lint.h) once. */
static void warn_model(void *user, const char *msg) {
  if (user) fprintf(stderr, "nntrain: warning: %s\n", msg);
}

/* The task's replicas, for the training data's samples (the kind's build). */
static int build_replicas(run *R, nn_error *err) {
  /* one micro-batch of the training slice (train.accumulate, worker/step.h),
   * and any evaluation slice */
  int mb = nn_step_micro_max(nn_loader_max_slice(R->data.train_L), R->job->train.accumulate);
  nn_loader *ev[2] = {R->data.val_L, R->data.test_L};
  for (int i = 0; i < 2; i++)
    if (ev[i] && nn_loader_max_slice(ev[i]) > mb) mb = nn_loader_max_slice(ev[i]);
  nn_replica_opts o = {.train = 1, .max_batch = mb,
                       .comm = R->comm, .timeout_s = R->opts->timeout_s, .lint = 1,
                       .warn = warn_model, .warn_user = R->lead ? R : NULL};
  R->nrep = R->task->nreplicas; /* every slot is freed, built or not (zeroed by calloc) */
  R->ev = &R->rep[R->task->eval_replica];
  return nn_task_build(R->task, R->rep, R->job, nn_dataset_get_info(R->data.train_ds),
                       R->job->source, &o, err);
}

/* The control buffer of step_control: the timed-checkpoint and signal flags,
 * every replica's running statistics from CTL_STATS on, and the failure flag
 * last (so the statistics keep the positions, and with them the summation
 * order of the ring, that they had before the flag was added). */
enum { CTL_TIMED = 0, CTL_SIGNAL = 1, CTL_LOSS = 2, CTL_CORRECT = 3, CTL_COUNT = 4, CTL_STATS = 5 };

/* The control ring and its buffer (CTL_*). */
static int build_control(run *R, nn_error *err) {
  R->carry_step = -1;
  int nocarry = 0, any = 0;
  for (int i = 0; i < R->nrep; i++) { /* rank 0 gathers the streams' state */
    size_t cols = R->rep[i].model.carry_per_sample, B = (size_t)nn_run_optimizer_batch(R->job);
    R->carry_on[i] = cols > 0 && R->job->train.bptt > 0;
    any |= R->carry_on[i];
    if (R->lead && R->carry_on[i] && !(R->carry_all[i] = nn_calloc(B * cols, sizeof(float))))
      nocarry = 1;
  }
  if (R->lead && any) {
    R->carry_counts = nn_malloc(sizeof(int) * (size_t)R->N);
    R->carry_displs = nn_malloc(sizeof(int) * (size_t)R->N);
    nocarry |= !R->carry_counts || !R->carry_displs;
  }
  R->nctl = CTL_STATS + 1; /* + the failure flag */
  for (int i = 0; i < R->nrep; i++) {
    size_t off, nb;
    nn_model_running_stats(&R->rep[i].model, &off, &nb);
    R->nctl += nb;
  }
  R->ctlbuf = nn_malloc(R->nctl * sizeof(float));
  if (R->lead) R->rss_all = nn_malloc((size_t)R->N * sizeof *R->rss_all);
  int rc = !R->ctlbuf || (R->lead && !R->rss_all) || nocarry
               ? nn_error_set(err, NN_ENOMEM, "out of memory") : 0;
  if ((rc = nn_agree(R->comm, rc, err)) != 0) return rc; /* the ring's creation is collective */
  rc = R->N > 1 ? nn_ring_create(&R->ctl, R->comm, R->nctl, 0, err) : 0;
  rc = nn_agree(R->comm, rc, err);
  if (!rc && R->ctl && R->opts->timeout_s > 0) nn_ring_set_timeout(R->ctl, R->opts->timeout_s);
  /* One watchdog for the job: the gradient syncs answer the control ring's
   * probes. With a watchdog per ring, a rank stalled in the control
   * all-reduce and one stalled in a gradient sync (a stopped rank can leave
   * them so) did not hear each other and each named the other too. */
  for (int i = 0; !rc && R->ctl && i < R->nrep; i++)
    if (R->rep[i].sync) nn_gradsync_set_watch(R->rep[i].sync, R->ctl);
  return rc;
}

/* Every replica's schedule against this run's length; errors name the job file. */
static int check_schedule(run *R, nn_error *err) {
  const nn_job *job = R->job;
  R->steps_per_epoch = nn_loader_steps(R->data.train_L);
  R->total_steps = (int64_t)job->train.epochs * R->steps_per_epoch;
  int rc = 0;
  for (int i = 0; i < R->nrep && !rc; i++)
    rc = nn_schedule_check_run(R->rep[i].schedule, R->rep[i].optim_cfg->lr, R->steps_per_epoch,
                               R->total_steps, err);
  if (rc) {
    nn_error e = *err;
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "%s", e.msg);
    memcpy(err->where, e.where, sizeof err->where);
  }
  return rc;
}

/* The job file as it was when the run started, for the report: copied to
 * RUN_DIR/job.toml (unless that is the job file). Best effort: a job file
 * that cannot be read or copied leaves the report without it. */
static void copy_job_file(run *R) {
  char dst[NN_PATH_MAX + 16], a[PATH_MAX], b[PATH_MAX];
  snprintf(dst, sizeof dst, "%s/job.toml", R->dir);
  if (!R->job->source[0]) return;
  if (realpath(R->job->source, a) && realpath(dst, b) && !strcmp(a, b)) return;
  FILE *in = fopen(R->job->source, "rb");
  if (!in) return;
  char tmp[NN_PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp", dst);
  FILE *out = fopen(tmp, "wb");
  int bad = !out;
  char buf[8192];
  size_t n;
  while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0) bad = fwrite(buf, 1, n, out) != n;
  bad |= ferror(in) != 0;
  fclose(in);
  if (out && fclose(out) != 0) bad = 1;
  if (bad || rename(tmp, dst) != 0) remove(tmp);
}

/* run.report: the lead rewrites RUN_DIR/report.html (coordinator/report.h)
 * from the run's records so far, the model, and the last evaluation. A
 * report that cannot be written is said once and training goes on. */
static void write_report(run *R, const char *status) {
  const nn_job *job = R->job;
  if (!R->lead || !job->run.report || R->opts->lrfind) return;
  char out[NN_PATH_MAX + 16], jobf[NN_PATH_MAX + 16];
  snprintf(out, sizeof out, "%s/report.html", R->dir);
  snprintf(jobf, sizeof jobf, "%s/job.toml", R->dir);
  const nn_shape *in = &R->ev->model.in;
  int pic = in->ndim == 3 && (in->dim[0] == 1 || in->dim[0] == 3);
  const nn_metrics_result *ev = R->data.test_L ? &R->tres : R->data.val_L ? &R->vres : NULL;
  nn_report_in ri = {.dir = R->dir, .title = job->name, .status = status,
                     .metrics = R->log.hist.p ? R->log.hist.p : "", .metrics_len = R->log.hist.n,
                     .job_path = access(jobf, R_OK) == 0 ? jobf : job->source,
                     .reps = R->rep, .nrep = R->nrep,
                     .eval = ev && ev->count > 0 ? ev : NULL,
                     .eval_set = R->data.test_L ? "test" : "validation",
                     .misses = R->misses.cap ? &R->misses : NULL,
                     .img_c = pic ? in->dim[0] : 0, .img_h = pic ? in->dim[1] : 0,
                     .img_w = pic ? in->dim[2] : 0};
  nn_error e;
  nn_error_clear(&e);
  if (nn_report_write(&ri, out, &e) != 0 && !R->report_failed) {
    R->report_failed = 1;
    if (R->show_bar) nn_runlog_progress_clear();
    fprintf(stderr, "nntrain: warning: no run report: %s%s%s; training goes on (run.report = "
            "false turns it off)\n", e.file[0] ? e.file : "", e.file[0] ? ": " : "", e.msg);
  }
}

/* Rank 0's outputs: the run log, the packed job, the checkpoint writer. */
static int open_outputs(run *R, nn_error *err) {
  if (!R->lead || R->opts->lrfind) return 0; /* lr-find writes no log and no checkpoint */
  int rc = nn_runlog_open(&R->log, R->dir, R->opts->out, R->opts->quiet, err);
  if (!rc && R->job->run.report) copy_job_file(R);
  if (!rc) rc = nn_job_pack(R->job, &R->spec, &R->spec_len, err);
  if (!rc) rc = nn_ckpt_writer_start(&R->ckw, R->dir, R->job->checkpoint.keep, err);
  const char *names[NN_TASK_MAX_REPLICAS];
  const nn_model *models[NN_TASK_MAX_REPLICAS];
  int nslots[NN_TASK_MAX_REPLICAS];
  for (int i = 0; i < R->nrep; i++) {
    names[i] = R->rep[i].name;
    models[i] = &R->rep[i].model;
    nslots[i] = R->rep[i].optim.nslots;
  }
  if (!rc) rc = nn_ckpt_writer_init_snapshots(R->ckw, R->nrep, names, models, nslots, err);
  return rc;
}

/* train.precision for the layers built from here on (core/compute.h); a
 * machine or build that cannot run bf16 is a job this machine refuses
 * (NN_ESCHEMA: exit 3, naming the key). "" (a spec from before the key): fp32. */
static int set_precision(const nn_job *job, nn_error *err) {
  int bf16 = strcmp(job->train.precision, "bf16") == 0;
  nn_error e;
  nn_error_clear(&e);
  if (nn_compute_set_precision(bf16 ? NN_PRECISION_BF16 : NN_PRECISION_FP32, &e) == 0) return 0;
  nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
              "train.precision = \"bf16\" cannot run here: %s", e.msg);
  if (err) snprintf(err->where, sizeof err->where, "train.precision");
  return NN_ESCHEMA;
}

/* Every step of setup ends with all ranks agreeing on its outcome, so a
 * failure on one rank (out of memory, an unreadable shard) returns on every
 * rank at the same point, and no rank is left in a collective. */
static int setup(run *R, nn_error *err) {
  const nn_job *job = R->job;
  nn_compute_set_threads(nn_train_blas_threads(job, R->comm)); /* OpenBLAS, oneDNN */
  int rc = set_precision(job, err);
  if (!rc) rc = nn_task_for_job(job, &R->task, err);
  if ((rc = nn_agree(R->comm, rc, err)) != 0) return rc;
  nn_split_opts so = {R->opts->kfold, R->opts->fold, R->opts->repeat};
  if ((rc = nn_run_data_open(&R->data, job, &so, R->comm, err)) != 0) return rc;
  rc = nn_run_data_loaders(&R->data, job, R->rank, R->N, err);
  if ((rc = nn_agree(R->comm, rc, err)) != 0) return rc;
  if ((rc = nn_agree(R->comm, build_replicas(R, err), err)) != 0) return rc;
  if ((rc = nn_agree(R->comm, check_schedule(R, err), err)) != 0) return rc;
  if ((rc = build_control(R, err)) != 0) return rc;
  const nn_dataset_info *tri = nn_dataset_get_info(R->data.train_ds);
  nn_metrics_config mc = nn_eval_metrics_config(tri, job->validation.top_k);
  rc = nn_metrics_acc_init(&R->acc, &mc, err);
  /* the report's misclassified pictures: from the test set's evaluation (else
   * validation's) of a classifier */
  if (!rc && job->run.report && !R->opts->lrfind && mc.num_classes > 0 && !mc.multilabel &&
      (R->data.test_L || R->data.val_L))
    rc = nn_eval_misses_init(&R->misses, REPORT_MISSES, nn_shape_count(&R->ev->model.in), R->N,
                             err);
  if (!rc) rc = open_outputs(R, err);
  if ((rc = nn_agree(R->comm, rc, err)) != 0) return rc;
  nn_decide_init(&R->state.decide, job);
  R->state.seed = (uint64_t)job->train.seed;
  R->state.nranks = R->N;
  R->last_ckpt_time = now_s();
  if ((rc = resume(R, err)) != 0) return rc;
  /* [init] from: on a fresh run only (a resumed run has its own values) */
  for (int i = 0; i < R->nrep && R->state.step == 0 && !rc; i++)
    rc = nn_init_from(job, &R->rep[i].model, R->comm, R->lead && !R->opts->quiet ? R->log.out : NULL,
                      err);
  if (rc) return rc;
  R->state.nranks = R->N;
  R->res->resumed_step = (int)R->state.step;
  return 0;
}

/* The start line and record (rank 0). */
static int announce(run *R, nn_error *err) {
  if (!R->lead) return 0;
  const nn_job *job = R->job;
  const nn_model *m = &R->ev->model;
  char shp[64], accum[64] = "";
  if (job->train.accumulate > 1)
    snprintf(accum, sizeof accum, " x %d micro-batches per step", job->train.accumulate);
  if (job->train.bptt > 0) /* a language model: its batch is streams of a token stream */
    nn_runlog_say(&R->log, "nntrain: job '%s': %d rank%s, language model: %d streams, windows of "
                  "%d tokens, %zu parameters, %d epochs of %lld windows\n",
                  job->name[0] ? job->name : job->source, R->N, R->N == 1 ? "" : "s",
                  job->train.batch_size, job->train.bptt, m->nparams, job->train.epochs,
                  (long long)R->steps_per_epoch);
  else
    nn_runlog_say(&R->log,
                  "nntrain: job '%s': %d rank%s, %lld training samples%s%s, input %s, %zu "
                  "parameters, %d epochs of %lld steps (global batch %d%s)\n",
                  job->name[0] ? job->name : job->source, R->N, R->N == 1 ? "" : "s",
                  (long long)R->data.ntrain, R->data.val_L ? ", validation" : "",
                  R->data.test_ds ? "" : ", no test set", nn_shape_str(&m->in, shp, sizeof shp),
                  m->nparams, job->train.epochs, (long long)R->steps_per_epoch,
                  job->train.batch_size, accum);
  json_t *rec = nn_runlog_record("start");
  nn_json_str(rec, "job", job->name);
  nn_json_str(rec, "task", R->task->name);
  nn_json_int(rec, "ranks", R->N);
  nn_json_int(rec, "params", (long long)m->nparams);
  nn_json_int(rec, "train_samples", R->data.ntrain);
  nn_json_int(rec, "epochs", job->train.epochs);
  nn_json_int(rec, "batch_size", job->train.batch_size);
  nn_json_int(rec, "accumulate", job->train.accumulate > 1 ? job->train.accumulate : 1);
  nn_json_int(rec, "step", R->state.step);
  int convs = 0, bf16 = 0; /* which convolution backend runs, in what (core/compute.h) */
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].ops && strcmp(m->layers[i].ops->type, "conv2d") == 0) {
      if (!convs++)
        nn_json_str(rec, "conv_backend",
                    nn_conv_backend_name(nn_conv2d_backend(&m->layers[i], NULL, NULL)));
      bf16 += nn_conv2d_bf16(&m->layers[i]);
    }
  nn_json_str(rec, "precision",
              nn_compute_precision() == NN_PRECISION_BF16 ? "bf16" : "fp32");
  if (convs) nn_json_int(rec, "conv_bf16_layers", bf16);
  if (R->rep[0].sync) {
    /* train.allreduce as decided (auto: by hosts and size; worker/hier.h) and
     * its chunk (train.allreduce_chunk_kib, 0: nn_ring_default_chunk) */
    nn_json_str(rec, "allreduce", nn_algo_name(nn_gradsync_algo(R->rep[0].sync)));
    nn_json_int(rec, "allreduce_chunk_bytes",
                (long long)(nn_gradsync_chunk(R->rep[0].sync) * sizeof(float)));
  }
  nn_json_int(rec, "fused_relus", m->nfused);
  nn_json_int(rec, "blocked_outputs", m->nblocked); /* core/model.h: nn_model_layouts */
  return nn_runlog_write(&R->log, rec, err);
}

/* ---- the step loop -------------------------------------------------------- */

/* Per-step control, at every step boundary: every rank learns whether rank
 * 0's clock says a timed checkpoint is due, whether any rank was asked to
 * stop (a signal) and whether any rank failed alone in the step
 * (defer_failure), and the replicas' running statistics (batch-norm, which
 * each rank updates from its own slice) are averaged over the ranks, so
 * replicas stay identical in everything a checkpoint holds. One all-reduce
 * through the watched ring. A failure ends the run here on every rank, with
 * the failing rank's record (agree_failure), before any checkpoint of the
 * step. */
static int step_control(run *R, int *ckpt_due, int *stop, nn_error *err) {
  double every = R->job->checkpoint.every_seconds;
  float *v = R->ctlbuf;
  const size_t failed = R->nctl - 1;
  v[CTL_TIMED] = R->lead && every > 0 && now_s() - R->last_ckpt_time >= every ? 1.0f : 0.0f;
  v[CTL_SIGNAL] = nn_signals_pending() > 0 ? 1.0f : 0.0f;
  for (int k = 0; k < 3; k++) v[CTL_LOSS + k] = (float)R->step_sums[k]; /* step records */
  v[failed] = R->fail_rc ? 1.0f : 0.0f;
  if (R->ctl) {
    size_t at = CTL_STATS, off, nb;
    for (int i = 0; i < R->nrep; i++, at += nb) {
      nn_model_running_stats(&R->rep[i].model, &off, &nb);
      if (nb) memcpy(v + at, R->rep[i].model.buffers + off, nb * sizeof(float));
    }
    nn_ring_set_step(R->ctl, (long)R->state.step);
    int rc = nn_ring_allreduce(R->ctl, v, R->nctl, err);
    if (rc) return rc;
    if (v[failed] > 0.5f) return agree_failure(R, 0, err);
    for (int k = 0; k < 3; k++) R->step_sums[k] = v[CTL_LOSS + k];
    const float inv = 1.0f / (float)R->N;
    at = CTL_STATS;
    for (int i = 0; i < R->nrep; i++, at += nb) {
      nn_model_running_stats(&R->rep[i].model, &off, &nb);
      float *stats = R->rep[i].model.buffers + off;
      for (size_t j = 0; j < nb; j++) stats[j] = v[at + j] * inv;
    }
  }
  *ckpt_due = v[CTL_TIMED] > 0.5f;
  *stop = v[CTL_SIGNAL] > 0.5f;
  return 0;
}

/* --check-replicas: every rank holds the same parameters after the step. */
static int check_replicas(run *R, nn_error *err) {
  int rc = nn_watched_barrier(R->ctl, R->state.step, err);
  if (rc) return rc;
  uint64_t h = NN_FNV1A64_INIT, lo, hi;
  for (int i = 0; i < R->nrep; i++)
    h = nn_fnv1a64(h, R->rep[i].model.params, R->rep[i].model.nparams * sizeof(float));
  NN_MPI_RETURN(err, MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, R->comm));
  NN_MPI_RETURN(err, MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, R->comm));
  if (lo != hi)
    return nn_error_set(err, NN_EINTERNAL,
                        "replicas diverged: parameters differ between ranks after step %lld",
                        (long long)R->state.step);
  return 0;
}

/* A stop signal reached every rank: checkpoint here and return NN_ESTOPPED. */
static int stop_on_signal(run *R, int last_of_epoch, int epoch, double t0, nn_error *err) {
  if (!last_of_epoch) nn_loader_stop(R->data.train_L);
  else {
    R->state.epoch = epoch + 1;
    R->state.epoch_step = 0;
  }
  R->state.elapsed_s += now_s() - t0;
  int rc = gather_carry(R, err);
  if (rc) return rc; /* a collective's failure: every rank's */
  rc = take_checkpoint(R, "", 0, err);
  if (!rc && R->lead) rc = nn_ckpt_writer_wait(R->ckw, err);
  if ((rc = agree_failure(R, rc, err)) != 0) return rc; /* rank 0's write, for everyone */
  char path[NN_PATH_MAX + 64];
  nn_ckpt_path(R->dir, R->state.step, path, sizeof path);
  if (R->lead) {
    json_t *rec = nn_runlog_record("stopped");
    nn_json_int(rec, "step", R->state.step);
    nn_json_str(rec, "checkpoint", path);
    rc = nn_runlog_write(&R->log, rec, err);
  }
  if ((rc = agree_failure(R, rc, err)) != 0) return rc; /* rank 0's log, for everyone */
  R->res->steps = R->state.step;
  return nn_error_set(err, NN_ESTOPPED,
                      "stopped on a signal at step %lld; checkpoint %s written; continue with "
                      "--resume (or run.resume = \"auto\")", (long long)R->state.step, path);
}

/* run.log_every_steps: the lead writes the step just taken (its loss and
 * accuracy over every rank's slice, from step_control's sums), the rate, and
 * the throughput since the last step record. */
static int log_step(run *R, nn_error *err) {
  int every = R->job->run.log_every_steps;
  if (!R->lead || every <= 0 || R->state.step % every != 0 || R->opts->lrfind) return 0;
  double t = now_s(), n = R->step_sums[2];
  json_t *rec = nn_runlog_record("step");
  nn_json_int(rec, "step", R->state.step); /* no "epoch": that key marks epoch records */
  nn_json_num(rec, "lr", R->state.lr);
  if (n > 0) {
    nn_json_num(rec, "loss", R->step_sums[0] / n);
    nn_json_num(rec, "accuracy", R->step_sums[1] / n);
  }
  if (R->log_t > 0 && t > R->log_t)
    nn_json_num(rec, "samples_per_s", (R->samples_done - R->log_samples) / (t - R->log_t));
  nn_json_num(rec, "elapsed_s", t - R->t_start);
  R->log_t = t;
  R->log_samples = R->samples_done;
  return nn_runlog_write(&R->log, rec, err);
}

/* After each step: control, checkpoints inside the epoch (by steps, which
 * every rank counts the same, or by rank 0's clock, told to all; a checkpoint
 * due at the epoch's last step is written after its validation), signals and
 * --steps. Sets *leave when the epoch's loop must end. A failure of this
 * rank (in the step, or rank 0's checkpoint) waits for step_control. */
static int after_step(run *R, const nn_batch *b, int epoch, double t0, epoch_out *eo,
                      int *leave, nn_error *err) {
  const nn_job *job = R->job;
  int rc;
  if (R->opts->check_replicas && R->N > 1 &&
      (rc = defer_failure(R, check_replicas(R, err), err)) != 0)
    return rc;
  if (R->show_bar) {
    double t = now_s();
    if (t - R->last_bar > 0.1 || b->step + 1 == R->steps_per_epoch) {
      R->last_bar = t;
      nn_runlog_progress(epoch + 1, job->train.epochs, b->step + 1, R->steps_per_epoch,
                         eo->s.count > 0 ? eo->s.loss_sum / eo->s.count : 0, t - t0);
    }
  }
  int last_of_epoch = R->state.epoch_step == R->steps_per_epoch;
  int max_reached = R->opts->max_steps > 0 && R->state.step >= R->opts->max_steps;
  int due = job->checkpoint.every_steps > 0 && R->state.step % job->checkpoint.every_steps == 0;
  int timed = 0, signalled = 0;
  if ((rc = step_control(R, &timed, &signalled, err)) != 0) return rc;
  if ((rc = defer_failure(R, log_step(R, err), err)) != 0) return rc;
  if (signalled) return stop_on_signal(R, last_of_epoch, epoch, t0, err);
  if ((due || timed) && !last_of_epoch && !max_reached) {
    /* not the epoch's last step: the next step's control shares a failure */
    if ((rc = gather_carry(R, err)) != 0) return rc;
    if ((rc = defer_failure(R, take_checkpoint(R, "", now_s() - t0, err), err)) != 0) return rc;
  } else if (due || timed) {
    eo->pending = 1;
  }
  if (max_reached) {
    eo->stop = 1;
    if (!last_of_epoch) {
      nn_loader_stop(R->data.train_L);
      *leave = 1;
    }
  }
  return 0;
}

/* train.on_nonfinite after a step whose summed gradient held a NaN or Inf
 * (worker/step.h: not applied, the same verdict on every rank, so every rank
 * takes the same branch here and none is left waiting). "stop" returns
 * NN_ENUMERIC (exit 7) before any checkpoint of this step is taken; "skip"
 * counts the step and stops after nonfinite_max_skips in a row; "rollback"
 * sets R->rollback_due (the epoch loop reloads the newest checkpoint) and
 * stops once nonfinite_max_rollbacks are used up. The counters are part of
 * the run state, so a resumed run counts on. */
static int on_nonfinite(run *R, int epoch, nn_error *err) {
  const nn_job *job = R->job;
  nn_ckpt_state *st = &R->state;
  long long step = (long long)st->step + 1; /* the dropped step, 1-based as printed */
  if (!strcmp(job->train.on_nonfinite, "rollback")) {
    if (st->rollbacks >= job->train.nonfinite_max_rollbacks)
      return nn_error_set(err, NN_ENUMERIC, "training diverged: non-finite loss or gradient at "
                          "step %lld (epoch %d) after %d rollback%s (train.nonfinite_max_rollbacks "
                          "= %d): training stopped", step, epoch + 1, (int)st->rollbacks,
                          st->rollbacks == 1 ? "" : "s", job->train.nonfinite_max_rollbacks);
    R->rollback_due = 1;
    return 0;
  }
  if (strcmp(job->train.on_nonfinite, "skip") != 0)
    return nn_error_set(err, NN_ENUMERIC,
                        "training diverged: non-finite loss or gradient at step %lld (epoch %d): "
                        "training stopped before applying it (train.on_nonfinite = \"stop\"); "
                        "lower optimizer.lr or check the data", step, epoch + 1);
  st->nonfinite_run++;
  st->nonfinite_skipped++;
  R->res->nonfinite_skipped = st->nonfinite_skipped;
  if (R->lead) {
    json_t *rec = nn_runlog_record("nonfinite_skip");
    nn_json_int(rec, "step", step);
    nn_json_int(rec, "epoch", epoch + 1);
    nn_json_int(rec, "in_a_row", st->nonfinite_run);
    nn_json_int(rec, "skipped", st->nonfinite_skipped);
    int rc = nn_runlog_write(&R->log, rec, err);
    if (rc) return rc;
    if (R->show_bar) nn_runlog_progress_clear();
    fprintf(stderr, "nntrain: step %lld (epoch %d): non-finite loss or gradient, step "
            "skipped (%d in a row)\n", step, epoch + 1, (int)st->nonfinite_run);
  }
  if (job->train.nonfinite_max_skips > 0 && st->nonfinite_run >= job->train.nonfinite_max_skips)
    return nn_error_set(err, NN_ENUMERIC, "%d non-finite steps in a row (the last at step %lld, "
                        "epoch %d; train.nonfinite_max_skips = %d): training stopped",
                        (int)st->nonfinite_run, step, epoch + 1,
                        job->train.nonfinite_max_skips);
  return 0;
}

/* The learning-rate factor of the rollbacks so far (1 without any). */
static double rollback_scale(const run *R) {
  double s = 1;
  for (int i = 0; i < R->state.rollbacks; i++) s *= R->job->train.nonfinite_lr_factor;
  return s;
}

/* train.on_nonfinite = "rollback": every rank continues from the newest
 * checkpoint that verifies (rank 0 waits for the writer, reads it, and sends
 * it to all, as a resume does), with one more rollback counted, so the
 * learning rate is scaled once more. The counters and the wall time are
 * this run's, not the checkpoint's. Collective. */
static int rollback(run *R, int epoch, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  char path[NN_PATH_MAX + 64] = "";
  const nn_ckpt_state now = R->state;
  int rc = 0;
  if (R->lead) {
    nn_ckpt_writer_drain(R->ckw); /* a failed write stays for the run's end */
    rc = nn_ckpt_read_latest(R->dir, &s, path, sizeof path, warn_skip, stderr, err);
    if (rc == NN_ENOTFOUND)
      rc = nn_error_set(err, NN_ENUMERIC, "training diverged: non-finite loss or gradient at "
                        "step %lld (epoch %d) and no checkpoint to roll back to yet in "
                        "%s/checkpoints (train.on_nonfinite = \"rollback\"): training stopped",
                        (long long)now.step + 1, epoch + 1, R->dir);
    else if (!rc)
      rc = check_resume(R, &s, path, err);
    if (!rc) {
      for (int i = 0; i < R->nrep; i++) nn_replica_load_ckpt(&R->rep[i], &s, 1);
      R->state = s.state;
    }
  }
  if ((rc = nn_agree(R->comm, rc, err)) != 0) {
    nn_ckpt_snapshot_free(&s);
    R->agreed = 1;
    return rc;
  }
  rc = share_loaded(R, err);
  if (!rc) rc = scatter_carry(R, R->lead ? &s : NULL, err);
  nn_ckpt_snapshot_free(&s);
  if (rc) return rc;
  R->rollback_due = 0;
  R->state.rollbacks = now.rollbacks + 1;
  R->state.nonfinite_run = 0;
  R->state.nonfinite_skipped = now.nonfinite_skipped;
  R->state.elapsed_s = now.elapsed_s;
  R->res->rollbacks = R->state.rollbacks;
  if (!R->lead) return 0;
  if (R->show_bar) nn_runlog_progress_clear();
  fprintf(stderr, "nntrain: step %lld (epoch %d): non-finite loss or gradient; rolled "
                "back to step %lld (%s), learning rate x%.4g from here (rollback %d of %d)\n",
                (long long)now.step + 1, epoch + 1, (long long)R->state.step, path,
                rollback_scale(R), (int)R->state.rollbacks, R->job->train.nonfinite_max_rollbacks);
  json_t *rec = nn_runlog_record("nonfinite_rollback");
  nn_json_int(rec, "step", now.step + 1);
  nn_json_int(rec, "epoch", epoch + 1);
  nn_json_int(rec, "to_step", R->state.step);
  nn_json_str(rec, "checkpoint", path);
  nn_json_int(rec, "rollbacks", R->state.rollbacks);
  nn_json_num(rec, "lr_scale", rollback_scale(R));
  return nn_runlog_write(&R->log, rec, err);
}

/* This rank's slice of the next global batch in *b (NULL: the epoch is
 * over). A read that fails (a shard row that is not finite, a file that
 * cannot be read, out of memory) is this rank's alone: it is deferred
 * (defer_failure), *starved is set, and from then on the rank trains an
 * empty slice (*none; worker/step.h: it takes part in the gradient sync and
 * adds nothing), so its peers are not left in the all-reduce; the failure
 * flag ends the run at the step's boundary. */
static int next_slice(run *R, int *starved, nn_batch *none, const nn_batch **b, nn_error *err) {
  *b = NULL;
  if (!*starved) {
    int rc = nn_loader_next(R->data.train_L, b, err);
    if (!rc) return 0;
    if ((rc = defer_failure(R, rc, err)) != 0) return rc;
    *starved = 1;
  }
  if (R->state.epoch_step >= R->steps_per_epoch) return 0;
  memset(none, 0, sizeof *none);
  none->step = R->state.epoch_step;
  none->global_n = (int)nn_run_optimizer_batch(R->job); /* > 0; the slice is empty */
  *b = none;
  return 0;
}

/* The step loop of one epoch (from the resumed position). A failure of this
 * rank alone waits for the step's boundary (defer_failure, step_control). */
static int run_epoch(run *R, int epoch, epoch_out *eo, nn_error *err) {
  memset(eo, 0, sizeof *eo);
  double t0 = now_s();
  R->last_bar = 0;
  R->state.epoch = epoch;
  int rc = nn_loader_start(R->data.train_L, epoch, R->state.epoch_step, err);
  int starved = rc != 0;
  rc = defer_failure(R, rc, err);
  const nn_batch *b;
  nn_batch none;
  int leave = 0;
  while (!rc && !leave) {
    double t1 = now_s();
    if ((rc = next_slice(R, &starved, &none, &b, err)) != 0 || !b) break;
    eo->t_data += now_s() - t1;
    double lr[NN_TASK_MAX_REPLICAS]; /* each replica's own schedule */
    double scale = rollback_scale(R);
    for (int i = 0; i < R->nrep; i++) {
      const nn_schedule_cfg *sc = R->rep[i].schedule;
      lr[i] = scale * nn_schedule_lr_at(sc, R->rep[i].optim_cfg->lr, R->state.step,
                                        R->steps_per_epoch, R->total_steps,
                                        &R->state.decide.plateau);
      if (nn_schedule_cycles_momentum(sc))
        nn_replica_set_momentum(&R->rep[i], nn_schedule_momentum_at(sc, R->state.step,
                                                                    R->steps_per_epoch,
                                                                    R->total_steps));
    }
    int bad = eo->s.nonfinite;
    const double s0[3] = {eo->s.loss_sum, eo->s.correct, eo->s.count};
    rc = R->task->step(R->rep, b, lr, (uint64_t)R->state.step, &eo->s, err);
    R->step_sums[0] = eo->s.loss_sum - s0[0];
    R->step_sums[1] = eo->s.correct - s0[1];
    R->step_sums[2] = eo->s.count - s0[2];
    if (rc) break; /* its gradient sync's: a communication failure (defer_failure) */
    if (eo->s.nonfinite != bad) {
      if ((rc = defer_failure(R, on_nonfinite(R, epoch, err), err)) != 0) break;
      if (R->rollback_due) { /* the rest of this epoch runs again from the checkpoint */
        nn_loader_stop(R->data.train_L);
        break;
      }
    } else {
      R->state.nonfinite_run = 0;
    }
    R->state.step++;
    R->state.epoch_step++;
    R->state.lr = lr[R->task->eval_replica];
    eo->samples += b->global_n;
    R->samples_done += b->global_n;
    t1 = now_s();
    rc = after_step(R, b, epoch, t0, eo, &leave, err);
    eo->t_control += now_s() - t1;
  }
  eo->t_train = now_s() - t0;
  return rc;
}

/* ---- the end of an epoch ---------------------------------------------------- */

/* Reduce the epoch's sums; 1 in *done when the epoch finished (else --steps
 * stopped it mid-way: no validation). A failure flag rides with the sums: a
 * failure still pending here (one the step loop had no boundary left to
 * share) ends the run on every rank (agree_failure). */
static int reduce_epoch(run *R, int epoch, const epoch_out *eo, nn_epoch_figures *f, int *done,
                        nn_error *err) {
  R->train_time += eo->t_train;
  R->state.elapsed_s += eo->t_train;
  R->train_samples += eo->samples;
  if (R->show_bar) nn_runlog_progress_clear();
  *done = R->state.epoch_step == R->steps_per_epoch;
  if (*done) {
    R->state.epoch = epoch + 1;
    R->state.epoch_step = 0;
  }
  double g[11] = {eo->s.loss_sum, eo->s.correct, eo->s.count, R->fail_rc ? 1 : 0,
                  eo->t_data, eo->s.sync_wait_s, eo->t_control, eo->s.fig_sum[0],
                  eo->s.fig_sum[1], eo->s.fig_sum[2], eo->s.fig_sum[3]};
  int rc = nn_watched_barrier(R->ctl, R->state.step, err);
  if (!rc) rc = nn_allreduce_sum_f64(R->comm, g, 11, err);
  if (rc) return rc;
  if (g[3] > 0.5) return agree_failure(R, 0, err);
  memset(f, 0, sizeof *f);
  for (int k = 0; k < 3; k++) R->epoch_waits[k] = g[4 + k] / R->N; /* means over the ranks */
  f->epoch = epoch;
  f->train_loss = g[2] > 0 ? g[0] / g[2] : 0;
  f->train_acc = g[2] > 0 ? g[1] / g[2] : 0;
  for (int k = 0; k < 4; k++) f->train_fig[k] = g[2] > 0 ? g[7 + k] / g[2] : 0;
  nn_train_result *res = R->res;
  res->train_loss = f->train_loss;
  res->train_acc = f->train_acc;
  res->epochs = epoch + 1;
  res->steps = R->state.step;
  if (g[2] > 0 && !isfinite(f->train_loss))
    return nn_error_set(err, NN_ENUMERIC, "training diverged in epoch %d (loss is %g): lower "
                        "optimizer.lr or check the data", epoch + 1, f->train_loss);
  if (!*done && R->lead && g[2] > 0) {
    json_t *rec = nn_runlog_record("stop");
    nn_json_int(rec, "step", R->state.step);
    nn_json_int(rec, "epoch", epoch + 1);
    nn_json_num(rec, "partial_loss", f->train_loss);
    rc = defer_failure(R, nn_runlog_write(&R->log, rec, err), err); /* finish shares it */
  }
  return rc;
}

/* Validation (when due) and the test set. Each evaluation agrees on its
 * outcome (run/evaluate.h agrees on its loaders' failures; a failure after
 * its reduction is one rank's), so a failure ends the run on every rank. */
static int evaluate_epoch(run *R, int epoch, int last, nn_epoch_figures *f, nn_error *err) {
  const nn_job *job = R->job;
  int validate = R->data.val_L && ((epoch + 1) % job->validation.every_epochs == 0 ||
                                   epoch + 1 == job->train.epochs || last);
  nn_metrics_result_free(&R->vres);
  nn_metrics_result_free(&R->tres);
  int rc = 0;
  nn_eval_misses *miss = R->misses.cap ? &R->misses : NULL; /* the report's pictures */
  if (validate) {
    R->ev->misses = R->data.test_L ? NULL : miss;
    rc = agree_failure(R, nn_task_evaluate(R->task, R->rep, R->data.val_L, &R->acc, R->comm,
                                           R->ctl, R->state.step, &R->vres, err), err);
  }
  if (!rc && R->data.test_L) {
    R->ev->misses = miss;
    rc = agree_failure(R, nn_task_evaluate(R->task, R->rep, R->data.test_L, &R->acc, R->comm,
                                           R->ctl, R->state.step, &R->tres, err), err);
  }
  R->ev->misses = NULL;
  f->val = validate ? &R->vres : NULL;
  if (validate) {
    R->res->val_loss = R->vres.loss;
    R->res->val_acc = R->vres.accuracy;
  }
  if (R->data.test_L) {
    R->res->test_loss = R->tres.loss;
    R->res->test_acc = R->tres.accuracy;
  }
  return rc;
}

/* The epoch line and the metrics record (rank 0). */
static int report_epoch(run *R, const nn_epoch_figures *f, double t_train, double samples,
                        nn_error *err) {
  const nn_job *job = R->job;
  int epoch = f->epoch;
  double elapsed = now_s() - R->t_start, sps = t_train > 0 ? samples / t_train : 0;
  double per_epoch = elapsed / (R->epochs_here > 0 ? R->epochs_here : 1);
  char el[32], eta[32];
  nn_fmt_duration(elapsed, el, sizeof el);
  nn_fmt_duration(per_epoch * (job->train.epochs - epoch - 1), eta, sizeof eta);
  const nn_metrics_result *test = R->data.test_L ? &R->tres : NULL;
  /* class figures when the data has classes and the task reports them (not a
   * task with figures of its own: GAN, VAE) */
  int cls = nn_dataset_get_info(R->data.train_ds)->num_classes > 0 &&
            !(f->val && f->val->nfigs) && !(test && test->nfigs) && !R->task->evaluate;
  char line[512];
  int k = snprintf(line, sizeof line, "epoch %*d/%d  loss %.4f", job->train.epochs >= 10 ? 2 : 1,
                   epoch + 1, job->train.epochs, f->train_loss);
  if (cls) k += snprintf(line + k, sizeof line - k, "  acc %6.2f%%", 100 * f->train_acc);
  for (int i = 0; i < 4 && R->task->train_figs[i]; i++)
    k += snprintf(line + k, sizeof line - k, "  %s %.4g", R->task->train_figs[i], f->train_fig[i]);
  if (f->val) {
    k += snprintf(line + k, sizeof line - k, "  val_loss %.4f", f->val->loss);
    if (f->val->per_token && !cls) /* a language model: bits per token (character) */
      k += snprintf(line + k, sizeof line - k, "  val_bpt %.3f  val_acc %6.2f%%",
                    f->val->loss / log(2.0), 100 * f->val->accuracy);
    if (cls) k += snprintf(line + k, sizeof line - k, "  val_acc %6.2f%%", 100 * f->val->accuracy);
    for (int i = 0; i < f->val->nfigs; i++)
      k += snprintf(line + k, sizeof line - k, "  val_%s %.4g", f->val->fig_name[i], f->val->fig[i]);
    if (f->val->multilabel) /* multi-label: mean average precision, macro ROC AUC */
      k += snprintf(line + k, sizeof line - k, "  val_map %.4f  val_roc_auc %.4f", f->val->map,
                    f->val->roc_auc);
  }
  if (test) {
    k += snprintf(line + k, sizeof line - k, "  test_loss %.4f", test->loss);
    for (int i = 0; i < test->nfigs; i++)
      k += snprintf(line + k, sizeof line - k, "  test_%s %.4g", test->fig_name[i], test->fig[i]);
    if (cls) k += snprintf(line + k, sizeof line - k, "  test_acc %6.2f%%", 100 * test->accuracy);
  }
  nn_runlog_say(&R->log, "%s  lr %.3g  %.0f samples/s  elapsed %s  ETA %s\n", line, R->state.lr,
                sps, el, eta);
  json_t *rec = nn_runlog_record(NULL);
  nn_json_int(rec, "epoch", epoch + 1);
  nn_json_int(rec, "step", R->state.step);
  nn_json_num(rec, "lr", R->state.lr);
  nn_json_num(rec, "loss", f->train_loss);
  nn_json_num(rec, "accuracy", f->train_acc);
  for (int i = 0; i < 4 && R->task->train_figs[i]; i++)
    nn_json_num(rec, R->task->train_figs[i], f->train_fig[i]);
  nn_json_num(rec, "samples_per_s", sps);
  nn_json_num(rec, "epoch_s", t_train);
  /* where the step loop's time went besides the steps' own compute, each
   * the mean over the ranks (docs/metrics.md) */
  nn_json_num(rec, "data_wait_s", R->epoch_waits[0]);
  nn_json_num(rec, "sync_wait_s", R->epoch_waits[1]);
  nn_json_num(rec, "control_s", R->epoch_waits[2]);
  nn_json_num(rec, "elapsed_s", elapsed);
  if (f->val) nn_json_metrics(rec, f->val, "val");
  if (test) nn_json_metrics(rec, test, "test");
  return nn_runlog_write(&R->log, rec, err);
}

/* Rank 0 decides; every rank learns it; rank 0 reports and checkpoints. */
static int decide_epoch(run *R, const nn_epoch_figures *f, const epoch_out *eo, int *stop,
                        nn_error *err) {
  const nn_job *job = R->job;
  nn_decision dec = {0};
  if (R->lead) dec = nn_decide_epoch(&R->state.decide, job, f);
  int rc = nn_watched_barrier(R->ctl, R->state.step, err);
  if (!rc && (rc = nn_decide_share(&R->state.decide, &dec, R->comm, err)) != 0 &&
      rc != NN_EMPI)
    R->agreed = 1; /* nn_decide_share agrees on a decode failure */
  if (rc) return rc;
  if (dec.stop) {
    *stop = 1;
    R->res->stopped_early = 1;
  }
  if (!R->lead) return 0;
  /* Rank 0's failures from here on are deferred: the next step's control,
   * or finish, shares them (defer_failure). */
  R->epochs_here++;
  if ((rc = report_epoch(R, f, eo->t_train, eo->samples, err)) != 0)
    return defer_failure(R, rc, err);
  if (R->task->epoch_end && (rc = R->task->epoch_end(R->task, R->rep, R->dir, f->epoch, err)) != 0)
    return defer_failure(R, rc, err);
  char status[96];
  snprintf(status, sizeof status, "running: epoch %d of %d done", f->epoch + 1, job->train.epochs);
  write_report(R, status);
  char best[NN_PATH_MAX + 16];
  snprintf(best, sizeof best, "%s/best.h5", R->dir);
  if (dec.improved && (rc = take_checkpoint(R, best, 0, err)) != 0)
    return defer_failure(R, rc, err);
  int every = job->checkpoint.every_epochs, last = f->epoch + 1 == job->train.epochs || *stop;
  int want = (every > 0 && (f->epoch + 1) % every == 0) || eo->pending;
  if (want && !(last && job->checkpoint.at_end) && (rc = take_checkpoint(R, "", 0, err)) != 0)
    return defer_failure(R, rc, err);
  if (dec.stop)
    nn_runlog_say(&R->log, "early stopping: %s has not improved for %d epochs (best %.6g at "
                  "epoch %d)\n", job->early_stopping.monitor, R->state.decide.es.bad,
                  R->state.decide.es.best, R->state.decide.es.best_epoch);
  return 0;
}

/* ---- the end of the run ------------------------------------------------------ */

/* Load best.h5 when asked and evaluate it on the test set. */
static int restore_best(run *R, nn_error *err) {
  const nn_job *job = R->job;
  if (!job->early_stopping.restore_best || R->state.decide.es.best_epoch <= 0) return 0;
  char best[NN_PATH_MAX + 16];
  snprintf(best, sizeof best, "%s/best.h5", R->dir);
  int rc = load_params_from(R, best, err);
  if (rc) return rc;
  if (R->lead)
    nn_runlog_say(&R->log, "restored the best model (epoch %d, %s %.6g) from %s\n",
                  R->state.decide.es.best_epoch, job->early_stopping.monitor, R->state.decide.es.best, best);
  if (!R->data.test_L) return 0;
  nn_metrics_result_free(&R->tres);
  rc = nn_task_evaluate(R->task, R->rep, R->data.test_L, &R->acc, R->comm, R->ctl, R->state.step,
                        &R->tres, err);
  R->res->test_loss = R->tres.loss;
  R->res->test_acc = R->tres.accuracy;
  return rc;
}

/* Peak resident memory of every rank: the summary line and record. */
static int report_memory(run *R, nn_error *err) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double mine = (double)ru.ru_maxrss / 1024.0;
  int rc = nn_watched_barrier(R->ctl, R->state.step, err);
  if (rc) return rc;
  NN_MPI_RETURN(err, MPI_Gather(&mine, 1, MPI_DOUBLE, R->rss_all, 1, MPI_DOUBLE, 0, R->comm));
  if (!R->lead) return 0;
  json_t *rec = nn_runlog_record("summary"), *list = json_array();
  nn_json_int(rec, "step", R->state.step);
  nn_json_num(rec, "samples_per_s", R->res->samples_per_s);
  char text[64 * 24] = "";
  for (int i = 0, k = 0; i < R->N; i++) {
    json_array_append_new(list, json_real(R->rss_all[i]));
    if (k < (int)sizeof text - 24)
      k += snprintf(text + k, sizeof text - (size_t)k, "%s%.1f", i ? ", " : "", R->rss_all[i]);
  }
  json_object_set_new(rec, "peak_rss_mb", list);
  nn_runlog_say(&R->log, "training: %.0f samples/s over %d epochs; peak RSS per rank (MB): %s%s\n",
                R->res->samples_per_s, R->res->epochs, text, R->N > 64 ? ", ..." : "");
  if (R->state.nonfinite_skipped > 0) { /* train.on_nonfinite = "skip" */
    nn_json_int(rec, "nonfinite_skipped", R->state.nonfinite_skipped);
    nn_runlog_say(&R->log, "non-finite steps skipped: %lld\n",
                  (long long)R->state.nonfinite_skipped);
  }
  if (R->state.rollbacks > 0) { /* train.on_nonfinite = "rollback" */
    nn_json_int(rec, "nonfinite_rollbacks", R->state.rollbacks);
    nn_runlog_say(&R->log, "non-finite rollbacks: %d (learning rate x%.4g)\n",
                  (int)R->state.rollbacks, rollback_scale(R));
  }
  return nn_runlog_write(&R->log, rec, err);
}

/* The checkpoint pause line and record, the test figure (rank 0). */
static int report_end(run *R, nn_error *err) {
  if (!R->lead) return 0;
  nn_train_result *res = R->res;
  int rc = 0;
  if (R->ckpt_count) {
    double mean = 1e3 * R->ckpt_pause_sum / R->ckpt_count, max = 1e3 * R->ckpt_pause_max;
    nn_runlog_say(&R->log, "checkpoints: %d written in the background; the step loop paused "
                  "%.3f ms per checkpoint on average (max %.3f ms)\n", R->ckpt_count, mean, max);
    json_t *rec = nn_runlog_record("end");
    nn_json_int(rec, "step", R->state.step);
    nn_json_int(rec, "checkpoints", R->ckpt_count);
    nn_json_num(rec, "checkpoint_pause_ms_mean", mean);
    nn_json_num(rec, "checkpoint_pause_ms_max", max);
    if ((rc = nn_runlog_write(&R->log, rec, err)) != 0) return rc;
  }
  if (R->data.test_L && res->epochs > 0 && res->test_loss >= 0) {
    long long n = nn_dataset_get_info(R->data.test_ds)->n;
    if (R->tres.nfigs > 0) { /* a task's own figures: GAN, VAE */
      char line[256];
      int k = 0;
      for (int i = 0; i < R->tres.nfigs; i++)
        k += snprintf(line + k, sizeof line - (size_t)k, ", test %s %.6g", R->tres.fig_name[i],
                      R->tres.fig[i]);
      nn_runlog_say(&R->log, "test loss: %.6g (%lld samples)%s\n", res->test_loss, n, line);
    } else if (nn_dataset_get_info(R->data.train_ds)->num_classes > 0 && !R->task->evaluate)
      nn_runlog_say(&R->log, "test accuracy: %.2f%% (%lld samples), test loss %.4f\n",
                    100 * res->test_acc, n, res->test_loss);
    else
      nn_runlog_say(&R->log, "test loss: %.6g (%lld samples)\n", res->test_loss, n);
  }
  return 0;
}

/* --dump-params: every replica's parameter arena, in order, raw float32. */
static int dump_params(run *R, nn_error *err) {
  const char *path = R->opts->dump_params;
  if (!R->lead || !path) return 0;
  FILE *f = fopen(path, "wb");
  int bad = !f;
  for (int i = 0; i < R->nrep && !bad; i++) {
    const nn_model *m = &R->rep[i].model;
    bad = fwrite(m->params, sizeof(float), m->nparams, f) != m->nparams;
  }
  if (f && fclose(f) != 0) bad = 1;
  return bad ? nn_error_at(err, NN_EIO, path, 0, 0, "cannot write parameters") : 0;
}

static int finish(run *R, nn_error *err) {
  nn_train_result *res = R->res;
  res->steps = R->state.step;
  res->best_monitored = R->state.decide.es.best;
  res->best_epoch = R->state.decide.es.best_epoch;
  int rc = R->job->checkpoint.at_end ? gather_carry(R, err) : 0;
  if (rc) return rc;
  if (R->lead && R->job->checkpoint.at_end) rc = take_checkpoint(R, "", 0, err);
  if (!rc && R->lead && R->ckw) rc = nn_ckpt_writer_wait(R->ckw, err);
  /* rank 0's writer result, for everyone: a refused snapshot fails the run
   * once; so does a failure still pending (defer_failure) */
  if ((rc = agree_failure(R, rc, err)) != 0) return rc;
  if ((rc = agree_failure(R, restore_best(R, err), err)) != 0) return rc;
  res->seconds = now_s() - R->t_start;
  res->samples_per_s = R->train_time > 0 ? R->train_samples / R->train_time : 0;
  rc = report_memory(R, err);
  if (!rc) rc = report_end(R, err);
  if (!rc) write_report(R, "finished");
  if (!rc) rc = dump_params(R, err);
  return agree_failure(R, rc, err); /* rank 0's summary and files, for everyone */
}

static void free_run(run *R) {
  if (R->ckw) nn_ckpt_writer_free(R->ckw);
  nn_runlog_close(&R->log);
  nn_metrics_result_free(&R->vres);
  nn_metrics_result_free(&R->tres);
  nn_metrics_acc_free(&R->acc);
  nn_eval_misses_free(&R->misses);
  for (int i = 0; i < R->nrep; i++) nn_replica_free(&R->rep[i]);
  nn_ring_free(R->ctl);
  nn_run_data_close(&R->data);
  free(R->spec);
  free(R->ctlbuf);
  free(R->rss_all);
  for (int i = 0; i < NN_TASK_MAX_REPLICAS; i++) free(R->carry_all[i]);
  free(R->carry_counts);
  free(R->carry_displs);
}

/* ---- the learning-rate range test (train.h: nn_lrfind) ---------------------- */

/* The global mean loss of this step's batch, from every rank's sums: reduced
 * on rank 0 and broadcast, so every rank holds the same value. */
static int lrfind_loss(run *R, const nn_step_stats *s, double *loss, nn_error *err) {
  double mine[2] = {s->loss_sum, s->count}, all[2] = {0, 0};
  int rc = 0;
  if (R->N > 1) {
    if ((rc = NN_MPI_CHECK(err, MPI_Reduce(mine, all, 2, MPI_DOUBLE, MPI_SUM, 0, R->comm))))
      return rc;
  } else {
    all[0] = mine[0];
    all[1] = mine[1];
  }
  *loss = s->nonfinite ? INFINITY : all[1] > 0 ? all[0] / all[1] : NAN;
  if (R->N > 1) rc = NN_MPI_CHECK(err, MPI_Bcast(loss, 1, MPI_DOUBLE, 0, R->comm));
  return rc;
}

/* The sweep: epochs of the run's batches (the trainer's loader and slices,
 * so the batches are the training run's, N-invariant) until `steps` steps or
 * on_step says stop. A failure of one rank is shared at the step's control
 * all-reduce, as in training. */
static int lrfind_sweep(run *R, nn_error *err) {
  const nn_lrfind *F = R->opts->lrfind;
  const double ratio = F->end / F->start;
  int64_t i = 0;
  int stop = 0, rc = 0;
  for (int epoch = 0; !stop && !rc; epoch++) {
    R->state.epoch = epoch;
    R->state.epoch_step = 0;
    rc = nn_loader_start(R->data.train_L, epoch, 0, err);
    int starved = rc != 0, leave = 0;
    rc = defer_failure(R, rc, err);
    nn_batch none;
    while (!rc && !stop && !leave) {
      const nn_batch *b;
      if ((rc = next_slice(R, &starved, &none, &b, err)) != 0 || !b) break;
      double t = F->steps > 1 ? (double)i / (double)(F->steps - 1) : 0.0;
      double lr[NN_TASK_MAX_REPLICAS], loss = NAN;
      for (int r = 0; r < R->nrep; r++) lr[r] = F->start * pow(ratio, t);
      nn_step_stats s;
      memset(&s, 0, sizeof s);
      if ((rc = R->task->step(R->rep, b, lr, (uint64_t)R->state.step, &s, err)) != 0) break;
      R->state.step++;
      R->state.epoch_step++;
      int timed = 0, signalled = 0;
      if ((rc = lrfind_loss(R, &s, &loss, err)) != 0) break;
      if ((rc = step_control(R, &timed, &signalled, err)) != 0) break; /* shares failures */
      rc = agree_failure(R, F->on_step(F->user, i, lr[0], loss, &stop, err), err);
      i++;
      if (signalled || i >= F->steps) stop = 1;
      if (stop && R->state.epoch_step < R->steps_per_epoch) leave = 1;
    }
    if (leave || (rc && R->data.train_L)) nn_loader_stop(R->data.train_L);
  }
  if (!rc) rc = agree_failure(R, 0, err); /* a failure still pending */
  R->res->steps = R->state.step;
  R->res->seconds = now_s() - R->t_start;
  return rc;
}

/* The epochs, from the resumed one. Returns on the first failure. */
static int train_epochs(run *R, nn_error *err) {
  int stop = 0, rc = 0;
  R->log_t = now_s(); /* the first step record's throughput counts from here */
  for (int epoch = R->state.epoch; epoch < R->job->train.epochs && !stop; epoch++) {
    epoch_out eo;
    nn_epoch_figures f;
    int done;
    if ((rc = run_epoch(R, epoch, &eo, err)) != 0) return rc;
    if (R->rollback_due) { /* the epoch's figures are dropped, its time counted */
      R->state.elapsed_s += eo.t_train;
      R->train_time += eo.t_train;
      R->train_samples += eo.samples;
      if ((rc = rollback(R, epoch, err)) != 0) return rc;
      epoch = R->state.epoch - 1; /* the loop's ++ resumes the checkpoint's epoch */
      continue;
    }
    stop = eo.stop;
    if ((rc = reduce_epoch(R, epoch, &eo, &f, &done, err)) != 0) return rc;
    if (!done) break; /* stopped mid-epoch (--steps): a checkpoint at the end */
    if ((rc = evaluate_epoch(R, epoch, stop, &f, err)) != 0) return rc;
    if ((rc = decide_epoch(R, &f, &eo, &stop, err)) != 0) return rc;
  }
  return 0;
}

int nn_train_run(const nn_job *job, MPI_Comm comm, const nn_train_opts *opts,
                 nn_train_result *res, nn_error *err) {
  memset(res, 0, sizeof *res);
  run *R = nn_calloc(1, sizeof *R);
  /* every rank learns whether one could not start (before setup's collectives) */
  int rc = nn_agree(comm, R ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory"), err);
  if (rc) {
    free(R);
    res->local_error = rc == NN_EMPI;
    return rc;
  }
  R->job = job;
  R->opts = opts;
  R->res = res;
  R->comm = comm;
  int mrc = MPI_Comm_rank(comm, &R->rank);
  if (mrc == MPI_SUCCESS) mrc = MPI_Comm_size(comm, &R->N);
  if (mrc != MPI_SUCCESS) {
    free(R);
    return nn_mpi_fail(mrc, "MPI_Comm_rank/size", __FILE__, __LINE__, err);
  }
  R->lead = R->rank == 0;
  snprintf(R->dir, sizeof R->dir, "%s", opts->run_dir ? opts->run_dir : job->run.dir);
  R->t_start = now_s();
  memset(res, 0, sizeof *res);
  res->test_loss = res->test_acc = res->val_loss = res->val_acc = -1;
  res->best_monitored = NAN;
  int show = opts->progress < 0 ? (job->run.progress && isatty(2)) : opts->progress;
  R->show_bar = show && R->lead;

  /* Setup failures are agreed on by every rank; so are later ones, at the
   * agreement points of defer_failure, except communication failures. */
  rc = setup(R, err);
  if (!rc && opts->lrfind) {
    rc = lrfind_sweep(R, err);
    if (rc && rc != NN_ESTOPPED && !R->agreed) {
      if (err->rank < 0) err->rank = R->rank;
      res->local_error = 1;
    }
  } else if (!rc) {
    rc = agree_failure(R, announce(R, err), err);
    if (!rc) rc = train_epochs(R, err);
    if (!rc) rc = finish(R, err);
    if (rc && rc != NN_ESTOPPED && rc != NN_ENUMERIC && !R->agreed) {
      if (err->rank < 0) err->rank = R->rank;
      res->local_error = 1;
    }
  }
  if (R->ckw && rc == 0) {
    nn_error e2;
    nn_error_clear(&e2);
    if (nn_ckpt_writer_wait(R->ckw, &e2) != 0) {
      *err = e2;
      rc = e2.code;
      res->local_error = 1;
    }
  }
  free_run(R);
  free(R);
  return rc;
}
