/* mpi_check.c: an MPI error code into an nn_error record (see mpi_check.h). */
#include "worker/mpi_check.h"

#include <stdio.h>
#include <string.h>

/* Rank in MPI_COMM_WORLD, or -1 when MPI cannot be asked (not initialized,
 * finalized, or the query fails). */
static int world_rank(void) {
  int init = 0, fin = 0, r = -1;
  if (MPI_Initialized(&init) != MPI_SUCCESS || !init) return -1;
  if (MPI_Finalized(&fin) != MPI_SUCCESS || fin) return -1;
  if (MPI_Comm_rank(MPI_COMM_WORLD, &r) != MPI_SUCCESS) return -1;
  return r;
}

int nn_mpi_fail(int mrc, const char *call, const char *file, int line, nn_error *err) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(mrc, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", mrc);
  int rank = world_rank();
  const char *base = strrchr(file, '/');
  /* "src/worker/agree.c" rather than a build machine's absolute path */
  const char *src = strstr(file, "src/");
  const char *shown = src ? src : base ? base + 1 : file;
  char rk[32] = "";
  if (rank >= 0) snprintf(rk, sizeof rk, " on rank %d", rank);
  nn_error_set(err, NN_EMPI, "%.200s failed%s (%s:%d): %s", call, rk, shown, line, s);
  if (err) {
    err->rank = rank;
    size_t k = strcspn(call, "( ");
    if (k >= sizeof err->where) k = sizeof err->where - 1;
    memcpy(err->where, call, k);
    err->where[k] = '\0';
  }
  return NN_EMPI;
}
