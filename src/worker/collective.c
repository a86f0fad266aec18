/* collective.c: checked MPI helpers (see collective.h). */
#include "worker/collective.h"

#include <stdio.h>

int nn_watched_barrier(nn_ring *ctl, int64_t step, nn_error *err) {
  if (!ctl) return 0;
  float one = 1.0f;
  nn_ring_set_step(ctl, (long)step);
  return nn_ring_allreduce(ctl, &one, 1, err);
}

#define CHUNK ((size_t)1 << 28) /* elements per call: under INT_MAX */

int nn_bcast_floats(MPI_Comm comm, float *buf, size_t n, int root, nn_error *err) {
  for (size_t o = 0; o < n; o += CHUNK) {
    size_t c = n - o < CHUNK ? n - o : CHUNK;
    NN_MPI_RETURN(err, MPI_Bcast(buf + o, (int)c, MPI_FLOAT, root, comm));
  }
  return 0;
}

int nn_bcast_bytes(MPI_Comm comm, void *buf, size_t n, int root, nn_error *err) {
  unsigned char *p = buf;
  for (size_t o = 0; o < n; o += CHUNK) {
    size_t c = n - o < CHUNK ? n - o : CHUNK;
    NN_MPI_RETURN(err, MPI_Bcast(p + o, (int)c, MPI_BYTE, root, comm));
  }
  return 0;
}

int nn_allreduce_sum_f64(MPI_Comm comm, double *buf, size_t n, nn_error *err) {
  for (size_t o = 0; o < n; o += CHUNK) {
    size_t c = n - o < CHUNK ? n - o : CHUNK;
    NN_MPI_RETURN(err, MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)c, MPI_DOUBLE, MPI_SUM, comm));
  }
  return 0;
}
