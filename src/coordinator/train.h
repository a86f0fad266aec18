/* train.h: a training run: epochs of steps on every rank, evaluation, the
 * metrics log and the epoch report, driven by rank 0's decisions.
 *
 * Every rank calls nn_train_run with the same job (rank 0 parsed it and
 * broadcast it). Errors are agreed on by all ranks, so the run fails once,
 * cleanly, with the failing rank's record on every rank: in setup at once,
 * and in the middle of training (one rank's unreadable shard row, an
 * allocation, rank 0's metrics log or checkpoint) at the next step boundary
 * or phase end, before any checkpoint of that step (docs/training.md, "A rank
 * failing alone"). Only a communication failure is this rank's alone
 * (local_error): the caller must end the whole job (MPI_Abort) when more
 * than one rank runs. */
#ifndef NN_COORDINATOR_TRAIN_H
#define NN_COORDINATOR_TRAIN_H

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>

#include "coordinator/job.h"
#include "core/err.h"

/* The learning-rate range test (`nntrain lr-find`, docs/training.md): the
 * run's batches and steps at a learning rate growing exponentially from
 * start to end over `steps` steps (every replica at the same rate), with no
 * evaluation, metrics log, checkpoint or resume. After every step, on every
 * rank, on_step gets the step (0-based), its rate and the global mean loss
 * of its batch (+inf when the summed gradient was non-finite), identical on
 * every rank (reduced on rank 0, broadcast); it sets *stop to end the sweep
 * (the same decision on every rank, since it sees the same figures) and
 * returns 0 or an error (agreed on by every rank). */
typedef struct nn_lrfind {
  double start, end;
  int64_t steps;
  int (*on_step)(void *user, int64_t step, double lr, double loss, int *stop, nn_error *err);
  void *user;
} nn_lrfind;

typedef struct nn_train_opts {
  int64_t max_steps;      /* stop after this many global steps (0: the job's epochs) */
  int progress;           /* -1: auto (stderr is a terminal and run.progress), 0/1 force */
  int quiet;              /* no epoch lines */
  int check_replicas;     /* after every step, verify all ranks hold identical parameters */
  double timeout_s;       /* watchdog: a rank missing a step for this long ends the job */
  const char *dump_params;/* write the final parameter arena (raw float32) here (rank 0) */
  FILE *out;              /* epoch lines (rank 0); NULL = stdout */
  int resume;             /* NN_RESUME_* */
  const char *resume_path;/* NN_RESUME_PATH: the checkpoint to continue from */
  int kfold;              /* > 1: train on fold `fold` of a kfold split of data.train */
  int fold;               /* 0 .. kfold-1 */
  int repeat;             /* iterated k-fold: which reshuffle (0, 1, ...) */
  const char *run_dir;    /* overrides job->run.dir (k-fold runs each fold in a sub-dir) */
  const nn_lrfind *lrfind;/* not NULL: the learning-rate range test instead of training */
} nn_train_opts;

enum {
  NN_RESUME_NONE = 0,     /* start fresh */
  NN_RESUME_LATEST = 1,   /* newest valid checkpoint of the run dir; error if none */
  NN_RESUME_AUTO = 2,     /* newest valid checkpoint if there is one, else start fresh */
  NN_RESUME_PATH = 3,     /* the checkpoint at resume_path */
};

typedef struct nn_train_result {
  int epochs;             /* epochs completed */
  int64_t steps;          /* global steps taken */
  double train_loss, train_acc;
  double test_loss, test_acc;  /* -1 when there is no test set */
  double val_loss, val_acc;    /* last validation; -1 when there is none */
  double best_monitored;       /* early stopping's best value (NaN: none) */
  int best_epoch;              /* its epoch (1-based), 0: none */
  int stopped_early;           /* 1 if early stopping ended the run */
  int resumed_step;            /* step the run resumed from (0: fresh) */
  int64_t nonfinite_skipped;   /* steps dropped as non-finite (train.on_nonfinite = "skip") */
  int rollbacks;               /* checkpoint reloads (train.on_nonfinite = "rollback") */
  double samples_per_s;   /* training throughput over the whole run (global samples) */
  double seconds;         /* wall time of the run */
  int local_error;        /* on failure: 1 if only this rank failed (communication failed;
                             peers may be blocked: end the job), 0 if every rank
                             returned the same error */
} nn_train_result;

/* BLAS threads per rank a run of job uses: run.threads; else Slurm's CPUs
 * per task; else the node's cores over the ranks on it, counted with
 * MPI_Comm_split_type (coordinator/alloc.h: nn_alloc_blas_threads).
 * Collective over comm. */
int nn_train_blas_threads(const nn_job *job, MPI_Comm comm);

int nn_train_run(const nn_job *job, MPI_Comm comm, const nn_train_opts *opts,
                 nn_train_result *res, nn_error *err);

#endif
