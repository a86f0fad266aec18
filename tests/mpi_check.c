/* mpi_check.c: tests of worker/mpi_check.h (an MPI error becomes an NN_EMPI
 * record naming the call, the source line and the rank) and of nn_agree
 * (worker/agree.c), which uses it. Runs under mpirun -np 1..4; the calls that
 * fail here fail in argument checking, on every rank alike, before any
 * communication, so no rank is left waiting. */
#include <mpi.h>
#include <stdlib.h>

#include "mpi_test.h"
#include "test.h"
#include "worker/agree.h"
#include "worker/mpi_check.h"

/* A successful call is 0 and leaves the record alone. */
static void test_success_is_zero(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  int x = rank_of(), sum = -1;
  ASSERT_EQ_INT(NN_MPI_CHECK(&err, MPI_Allreduce(&x, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD)),
                0);
  ASSERT_EQ_INT(err.code, 0);
  int n = size_of();
  ASSERT_EQ_INT(sum, n * (n - 1) / 2);
}

/* A negative count is MPI_ERR_COUNT: the record says NN_EMPI, the call's
 * text, this file and line, the rank, and MPI's own words. */
static void test_bad_count_names_the_call(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  int buf[1] = {0};
  int line = __LINE__ + 1;
  int rc = NN_MPI_CHECK(&err, MPI_Bcast(buf, -1, MPI_INT, 0, MPI_COMM_WORLD));
  ASSERT_EQ_INT(rc, NN_EMPI);
  ASSERT_EQ_INT(err.code, NN_EMPI);
  ASSERT_STR_CONTAINS(err.msg, "MPI_Bcast(buf, -1, MPI_INT, 0, MPI_COMM_WORLD) failed");
  char where[64];
  snprintf(where, sizeof where, "mpi_check.c:%d", line);
  ASSERT_STR_CONTAINS(err.msg, where);
  char rk[32];
  snprintf(rk, sizeof rk, "on rank %d", rank_of());
  ASSERT_STR_CONTAINS(err.msg, rk);
  ASSERT_STR_CONTAINS(err.msg, "MPI_ERR_COUNT");
  ASSERT_STR_EQ(err.where, "MPI_Bcast");
  ASSERT_EQ_INT(err.rank, rank_of());
}

/* NN_MPI_TRY jumps to the label with rc set; an invalid root is caught too. */
static int try_bad_root(nn_error *err) {
  int rc = 0, v = 1;
  NN_MPI_TRY(err, rc, cleanup, MPI_Bcast(&v, 1, MPI_INT, 1 << 20, MPI_COMM_WORLD));
  rc = 12345; /* not reached */
cleanup:
  return rc;
}

static void test_try_jumps_to_label(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(try_bad_root(&err), NN_EMPI);
  ASSERT_STR_CONTAINS(err.msg, "MPI_Bcast(&v, 1, MPI_INT, 1 << 20, MPI_COMM_WORLD) failed");
  ASSERT_STR_CONTAINS(err.msg, "MPI_ERR_ROOT");
}

/* An invalid communicator (MPI_COMM_NULL) is reported, not a crash. */
static void test_null_comm(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  int r = -1;
  ASSERT_EQ_INT(NN_MPI_CHECK(&err, MPI_Comm_rank(MPI_COMM_NULL, &r)), NN_EMPI);
  ASSERT_STR_CONTAINS(err.msg, "MPI_Comm_rank(MPI_COMM_NULL, &r) failed");
  ASSERT_STR_CONTAINS(err.msg, "MPI_ERR_COMM");
}

/* nn_agree: every rank returns the lowest failing rank's record. */
static void test_agree(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_agree(MPI_COMM_WORLD, 0, &err), 0);
  int n = size_of();
  int bad = n - 1; /* the last rank fails */
  nn_error_clear(&err);
  int rc = 0;
  if (rank_of() == bad) rc = nn_error_set(&err, NN_EDATA, "rank %d's data is bad", bad);
  ASSERT_EQ_INT(nn_agree(MPI_COMM_WORLD, rc, &err), NN_EDATA);
  char want[64];
  snprintf(want, sizeof want, "rank %d's data is bad", bad);
  ASSERT_STR_EQ(err.msg, want);
  /* An MPI failure inside nn_agree is an error value too. */
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_agree(MPI_COMM_NULL, 0, &err), NN_EMPI);
  ASSERT_STR_CONTAINS(err.msg, "MPI_Comm_rank(comm, &rank) failed");
}

TEST_MAIN(TEST(test_success_is_zero), TEST(test_bad_count_names_the_call),
          TEST(test_try_jumps_to_label), TEST(test_null_comm), TEST(test_agree))
