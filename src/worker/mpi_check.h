/* mpi_check.h: the one way nntrain checks an MPI call.
 *
 * Every MPI call below the CLI's MPI_Init is checked (STYLE.md 13): a
 * communicator that fails must not be skipped silently. The caller sets
 * MPI_ERRORS_RETURN on its communicators (the CLI does on MPI_COMM_WORLD,
 * the ring on its duplicates), so a failing call returns an MPI error code
 * instead of aborting, and the check turns it into an NN_EMPI record:
 *
 *   "MPI_Allreduce(&x, &y, 1, MPI_INT, MPI_MIN, comm) failed on rank 1
 *    (src/worker/agree.c:12): MPI_ERR_COMM: invalid communicator"
 *
 * with err->where = the MPI function's name ("MPI_Allreduce") and err->rank
 * the rank in MPI_COMM_WORLD (-1 if MPI is not initialized or finalized).
 * The caller decides what follows (usually: return it, agree on it, or
 * MPI_Abort: peers may be blocked in the same collective).
 *
 * Use:
 *   if ((rc = NN_MPI_CHECK(err, MPI_Bcast(buf, n, MPI_BYTE, 0, comm)))) goto cleanup;
 *   NN_MPI_TRY(err, rc, cleanup, MPI_Bcast(buf, n, MPI_BYTE, 0, comm));  (same) */
#ifndef NN_WORKER_MPI_CHECK_H
#define NN_WORKER_MPI_CHECK_H

#include <mpi.h>

#include "core/err.h"

/* Record the failure of MPI call `call` (its source text) at file:line that
 * returned mrc into *err (may be NULL). Returns NN_EMPI. */
int nn_mpi_fail(int mrc, const char *call, const char *file, int line, nn_error *err);

/* 0 if mrc is MPI_SUCCESS, else nn_mpi_fail(...). */
static inline int nn_mpi_check(int mrc, const char *call, const char *file, int line,
                               nn_error *err) {
  return mrc == MPI_SUCCESS ? 0 : nn_mpi_fail(mrc, call, file, line, err);
}

/* Run `call` (an MPI call returning an error code); evaluates to 0 or
 * NN_EMPI with *err filled, naming the call, this file:line and the rank. */
#define NN_MPI_CHECK(err, call) nn_mpi_check((call), #call, __FILE__, __LINE__, (err))

/* Run `call`; on failure set rc to NN_EMPI (err filled) and goto label.
 * (Stringizes `call` itself: through NN_MPI_CHECK the text would be the
 * macro-expanded MPI_INT, MPI_COMM_WORLD...) */
#define NN_MPI_TRY(err, rc, label, call)                                        \
  do {                                                                          \
    if (((rc) = nn_mpi_check((call), #call, __FILE__, __LINE__, (err))) != 0) \
      goto label;                                                               \
  } while (0)

#endif
