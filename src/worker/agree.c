/* agree.c: agreeing on an outcome across ranks (see agree.h). */
#include "worker/agree.h"

#include "worker/mpi_check.h"

int nn_agree(MPI_Comm comm, int rc, nn_error *err) {
  int rank, n, mrc;
  if ((mrc = NN_MPI_CHECK(err, MPI_Comm_rank(comm, &rank))) ||
      (mrc = NN_MPI_CHECK(err, MPI_Comm_size(comm, &n))))
    return mrc;
  int mine = rc ? rank : n, first = n;
  if ((mrc = NN_MPI_CHECK(err, MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm))))
    return mrc;
  if (first == n) return 0;
  nn_error e;
  nn_error_clear(&e);
  if (rank == first) {
    e = *err;
    if (e.rank < 0 && n > 1) e.rank = rank;
  }
  if ((mrc = NN_MPI_CHECK(err, MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, first, comm)))) return mrc;
  *err = e;
  return e.code ? e.code : NN_EINTERNAL;
}
