/* collective.h: the checked MPI helpers the coordinator and the commands share
 * (beside the ring in allreduce.h): a failed MPI call becomes an NN_EMPI
 * error value naming the call, the source line and the rank (through
 * worker/mpi_check.h, the one check), never a skipped step; broadcasts are
 * chunked so counts stay under INT_MAX.
 *
 * Every caller sets MPI_ERRORS_RETURN on its communicator (the CLI does, at
 * start), so a failing call returns here instead of aborting. */
#ifndef NN_WORKER_COLLECTIVE_H
#define NN_WORKER_COLLECTIVE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "worker/allreduce.h"
#include "worker/mpi_check.h"

/* Run an MPI call; on failure record it (worker/mpi_check.h: the call, the
 * line, the rank, MPI's reason) and return NN_EMPI from the caller. */
#define NN_MPI_RETURN(err, call)                                            \
  do {                                                                      \
    int nn_mrc_ = (call);                                                   \
    if (nn_mrc_ != MPI_SUCCESS)                                             \
      return nn_mpi_fail(nn_mrc_, #call, __FILE__, __LINE__, (err));        \
  } while (0)

/* A barrier the watchdog covers: a one-float ring all-reduce with the run's
 * timeout (ctl NULL: one rank, nothing to do). Placed before every plain MPI
 * collective of a run, so a stalled rank is named there; a rank that passed
 * it is alive, and the collective right after cannot hang on it. */
int nn_watched_barrier(nn_ring *ctl, int64_t step, nn_error *err);

/* Broadcast n floats / n bytes from root, in chunks under INT_MAX. */
int nn_bcast_floats(MPI_Comm comm, float *buf, size_t n, int root, nn_error *err);
int nn_bcast_bytes(MPI_Comm comm, void *buf, size_t n, int root, nn_error *err);

/* Sum n doubles over the ranks, in place (MPI_Allreduce, checked). */
int nn_allreduce_sum_f64(MPI_Comm comm, double *buf, size_t n, nn_error *err);

#endif
