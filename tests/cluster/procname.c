/* procname.c: each rank prints "RANK SIZE NAME" with NAME from
 * MPI_Get_processor_name, rank 0 first and the others in rank order (rank 0
 * gathers the lines). tests/cluster/cluster_bench.sh checks that the
 * simulated hosts of scripts/cluster.sh are what MPI reports. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int me = 0, n = 0, len = 0, rc = 1;
  char *all = NULL;
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
  if (MPI_Comm_rank(MPI_COMM_WORLD, &me) != MPI_SUCCESS ||
      MPI_Comm_size(MPI_COMM_WORLD, &n) != MPI_SUCCESS ||
      MPI_Get_processor_name(name, &len) != MPI_SUCCESS)
    goto done;
  if (me == 0 && !(all = calloc((size_t)n, MPI_MAX_PROCESSOR_NAME))) goto done;
  if (MPI_Gather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all, MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                 0, MPI_COMM_WORLD) != MPI_SUCCESS)
    goto done;
  if (me == 0)
    for (int r = 0; r < n; r++) printf("%d %d %s\n", r, n, all + (size_t)r * MPI_MAX_PROCESSOR_NAME);
  rc = 0;
done:
  free(all);
  if (rc) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Finalize();
  return rc;
}
