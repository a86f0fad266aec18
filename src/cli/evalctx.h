/* evalctx.h: what the checkpoint commands share (eval.c): a checkpoint's
 * model rebuilt for a data set, under mpirun or on one rank.
 *
 * Rank 0 reads and verifies the checkpoint and broadcasts the job spec and
 * the parameters; every rank builds the checkpoint's task's replicas for the
 * data's samples (the kind's own build and rules, a mismatch being the
 * data's fault) and opens a loader over all of the data in its natural
 * order, each rank its contiguous slice of every global batch of batch * N
 * samples, as in training. Used by eval, predict and encode. */
#ifndef NN_CLI_EVALCTX_H
#define NN_CLI_EVALCTX_H

#include <mpi.h>

#include "coordinator/job.h"
#include "coordinator/run/task.h"

typedef struct evalctx {
  MPI_Comm comm;
  int rank, N;
  nn_job *job;
  nn_dataset *ds;
  nn_loader *L;
  const nn_task_ops *task;   /* the checkpoint's task kind */
  nn_replica reps[NN_TASK_MAX_REPLICAS]; /* the checkpoint's task's replicas, evaluation only */
  nn_replica *ev;            /* the one the task evaluates */
  const char *ckpt;          /* the checkpoint's path (messages) */
} evalctx;

/* MPI up (nn_cli_mpi_init) and E->job allocated: 0, or the exit code (rank 0
 * has printed why). The caller calls MPI_Finalize either way. */
int nn_evalctx_init_mpi(int *argc, char ***argv, evalctx *E);
/* Read the checkpoint (rank 0), share spec and parameters, open the data with
 * a loader over all of it (batch samples per rank per batch), build the
 * model for the data's samples. Collective; every rank gets the outcome. */
int nn_evalctx_setup(evalctx *E, const char *ckpt, const char *data, int batch, nn_error *err);
/* As nn_evalctx_setup with the checkpoint already read and verified: snap is
 * rank 0's (ignored elsewhere); ckpt names it in messages. */
int nn_evalctx_setup_from(evalctx *E, const nn_ckpt_snapshot *snap, const char *ckpt,
                          const char *data, int batch, nn_error *err);
/* Called on every rank for every global batch of a pass (nn_evalctx_walk):
 * b is this rank's slice (n may be 0), out the model's output for it [b->n,
 * outputs] (NULL for an empty slice; the other layers' outputs are in the
 * model's activation arena until the next batch). Collective calls go here
 * (every rank makes them). Returns 0 or a failure, which ends the pass. */
typedef int (*nn_evalctx_batch_fn)(evalctx *E, const nn_batch *b, const float *out, void *user,
                                   nn_error *err);
/* A pass over the data in order: every rank forwards its slice of each
 * global batch in evaluation mode and calls each(). The ranks stop together
 * when every rank's loader is done or one failed (that failure returned on
 * it; the caller agrees afterwards). Collective. */
int nn_evalctx_walk(evalctx *E, nn_evalctx_batch_fn each, void *user, nn_error *err);
/* Gather every rank's n rows of `width` values of `type` (send) on rank 0
 * into recv, in rank order, which is data order within a global batch.
 * counts, displs: [N] ints of work space. Collective; every call checked. */
int nn_evalctx_gather(evalctx *E, const void *send, int n, int width, MPI_Datatype type,
                      void *recv, int *counts, int *displs, nn_error *err);
/* Free what setup and init_mpi made (also after a failure). */
void nn_evalctx_teardown(evalctx *E);

#endif
