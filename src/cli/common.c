/* common.c: what the subcommands share: exit codes, error printing, MPI
 * start-up, and writing JSON lines through jansson. */
#include "cli/cli.h"

#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/hier.h"
#include "worker/mpi_check.h"

int nn_exit_code(int status) {
  switch (status) {
  case NN_OK: return NN_EXIT_OK;
  case NN_EUSAGE: return NN_EXIT_USAGE;
  case NN_ESYNTAX:
  case NN_ESCHEMA: return NN_EXIT_JOB;
  case NN_EDATA:
  case NN_EIO:
  case NN_ENOTFOUND:
  case NN_ESHAPE: return NN_EXIT_DATA;
  case NN_ECKPT: return NN_EXIT_CKPT;
  case NN_EMPI: return NN_EXIT_COMM;
  case NN_ENUMERIC: return NN_EXIT_DIVERGED;
  case NN_ESTOPPED: return NN_EXIT_STOPPED;
  default: return NN_EXIT_FAILURE;
  }
}

/* Every rank's host (MPI_Get_processor_name), gathered by nn_cli_mpi_init
 * so that a message about another rank can name its host. A fixed table (no
 * allocation that could fail on one rank): the first NN__CLI_HOSTS_MAX ranks
 * are named; cli_nhosts = 0 before MPI. */
#define NN__CLI_HOST_LEN 64
#define NN__CLI_HOSTS_MAX 1024
static char cli_hosts[NN__CLI_HOSTS_MAX * NN__CLI_HOST_LEN];
static int cli_nhosts;

int nn_cli_fail(const nn_error *e) {
  char buf[1024];
  nn_error_format(e, buf, sizeof buf);
  if (e->rank > 0 && e->rank < cli_nhosts)
    fprintf(stderr, "nntrain: rank %d (host %s): %s\n", e->rank,
            cli_hosts + (size_t)e->rank * NN__CLI_HOST_LEN, buf);
  else if (e->rank > 0)
    fprintf(stderr, "nntrain: rank %d: %s\n", e->rank, buf);
  else
    fprintf(stderr, "nntrain: %s\n", buf);
  return nn_exit_code(e->code);
}

int nn_cli_usage_error(const char *cmd, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "nntrain %s: %s; see 'nntrain %s --help'\n", cmd, msg, cmd);
  return NN_EXIT_USAGE;
}

int nn_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
  return 0;
}

json_t *nn_cli_json_real(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int nn_cli_json_line(FILE *f, json_t *obj, const char *path, nn_error *err) {
  if (!obj) return nn_error_set(err, NN_ENOMEM, "out of memory building JSON");
  int bad = json_dumpf(obj, f, JSON_COMPACT | JSON_REAL_PRECISION(NN_CLI_JSON_DIGITS)) != 0 ||
            fputc('\n', f) == EOF;
  json_decref(obj);
  if (bad) return nn_error_at(err, NN_EIO, path ? path : "(stdout)", 0, 0, "cannot write JSON");
  return 0;
}

/* The host table of nn_cli_fail. Collective on MPI_COMM_WORLD. Under
 * NN_SIM_HOST_RANKS=k the name is "NAME/sim<rank / k>" as in the ring's
 * watchdog messages (worker/allreduce.h). With more than NN__CLI_HOSTS_MAX
 * ranks nobody is named. */
static int cli_gather_hosts(int n, nn_error *err) {
  char me[NN__CLI_HOST_LEN];
  int wr = 0, rc;
  if (n > NN__CLI_HOSTS_MAX) return 0;
  if ((rc = NN_MPI_CHECK(err, MPI_Comm_rank(MPI_COMM_WORLD, &wr))) ||
      (rc = NN_MPI_CHECK(err, nn_host_label(me, sizeof me, wr))))
    return rc;
  if ((rc = NN_MPI_CHECK(err, MPI_Allgather(me, NN__CLI_HOST_LEN, MPI_CHAR, cli_hosts,
                                            NN__CLI_HOST_LEN, MPI_CHAR, MPI_COMM_WORLD))))
    return rc;
  cli_nhosts = n;
  return 0;
}

int nn_cli_mpi_init(int *argc, char ***argv, int *provided, int *rank, int *nranks,
                    nn_error *err) {
  /* Single-copy (CMA) transfers are slower and noisier than copy-in/copy-out
   * through shared memory on the VMs we measured (docs/allreduce.md); a
   * user's own setting wins. */
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  /* Over TCP, a message above the eager limit (64 KiB) waits for the
   * receiver's go-ahead, and that reply queues behind the data the receiver
   * is sending back on the same connection: a ring of two ranks on two hosts
   * (or the hierarchical all-reduce's ring of two hosts) ran its link at 55 %
   * each way. Our messages are at most 256 KiB (nn_ring_default_chunk), so
   * with a 512 KiB eager limit they go without it (91 %; docs/scaling.md). */
  setenv("OMPI_MCA_btl_tcp_eager_limit", "524288", 0);
  *rank = -1;
  *nranks = 0;
  int rc = NN_MPI_CHECK(err, MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, provided));
  if (rc) return rc;
  /* Failed calls return an error code (checked) instead of aborting. */
  int me = 0;
  if ((rc = NN_MPI_CHECK(err, MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN))) ||
      (rc = NN_MPI_CHECK(err, MPI_Comm_rank(MPI_COMM_WORLD, &me))) ||
      (rc = NN_MPI_CHECK(err, MPI_Comm_size(MPI_COMM_WORLD, nranks))))
    me = 0; /* MPI is up: the caller must MPI_Abort */
  if (!rc) rc = cli_gather_hosts(*nranks, err);
  *rank = me;
  if (err) err->rank = rc ? err->rank : me;
  return rc;
}
