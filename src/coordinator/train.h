/* train.h: a training run: epochs of steps on every rank, evaluation, the
 * metrics log and the epoch report, driven by rank 0's decisions.
 *
 * Every rank calls nn_train_run with the same job (rank 0 parsed it and
 * broadcast it). Data errors before the first step are agreed on by all
 * ranks, so the run fails once, cleanly; an error inside the step loop is
 * returned to the caller, which must end the whole job (MPI_Abort) when more
 * than one rank runs. */
#ifndef NN_COORDINATOR_TRAIN_H
#define NN_COORDINATOR_TRAIN_H

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>

#include "coordinator/job.h"
#include "core/err.h"

typedef struct nn_train_opts {
  int64_t max_steps;      /* stop after this many global steps (0: the job's epochs) */
  int progress;           /* -1: auto (stderr is a terminal and run.progress), 0/1 force */
  int quiet;              /* no epoch lines */
  int check_replicas;     /* after every step, verify all ranks hold identical parameters */
  double timeout_s;       /* watchdog: a rank missing a step for this long ends the job */
  const char *dump_params;/* write the final parameter arena (raw float32) here (rank 0) */
  FILE *out;              /* epoch lines (rank 0); NULL = stdout */
} nn_train_opts;

typedef struct nn_train_result {
  int epochs;             /* epochs completed */
  int64_t steps;          /* global steps taken */
  double train_loss, train_acc;
  double test_loss, test_acc;  /* -1 when there is no test set */
  double samples_per_s;   /* training throughput over the whole run (global samples) */
  double seconds;         /* wall time of the run */
  int local_error;        /* on failure: 1 if only this rank failed (peers may be blocked:
                             end the job), 0 if every rank returned the same error */
} nn_train_result;

int nn_train_run(const nn_job *job, MPI_Comm comm, const nn_train_opts *opts,
                 nn_train_result *res, nn_error *err);

#endif
