/* mpi_test.h: what the MPI tests (tests/mpi_*.c) share: starting MPI once,
 * as the CLI does (MPI_THREAD_SERIALIZED, MPI_ERRORS_RETURN on
 * MPI_COMM_WORLD, so a failed call returns a code the test can check), the
 * rank and size, and combining a per-rank verdict. */
#ifndef NN_TESTS_MPI_TEST_H
#define NN_TESTS_MPI_TEST_H

#include <mpi.h>
#include <stdlib.h>

/* Start MPI on the first call; MPI_Finalize runs at exit. */
static void mpi_up(void) {
  int init = 0;
  MPI_Initialized(&init);
  if (init) return;
  int provided = 0;
  MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  atexit((void (*)(void))MPI_Finalize);
}

static inline int rank_of(void) {
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

static inline int size_of(void) {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

/* 1 if ok on every rank (a test fails on all ranks if it fails on one). */
static inline int all_ok(int ok) {
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all;
}

#endif
