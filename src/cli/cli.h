/* cli.h: the nntrain command front end: subcommands and exit codes.
 *
 * The CLI is the only place that prints an nn_error and chooses an exit code.
 * Each subcommand is `int nn_cmd_NAME(int argc, char **argv)` where argv[0] is
 * the subcommand name; it returns the process exit code. */
#ifndef NN_CLI_CLI_H
#define NN_CLI_CLI_H

#include <stdio.h>

#include <jansson.h>
#include <mpi.h>

#include "core/err.h"

/* Exit codes (documented in README.md, "Exit codes"). */
enum {
  NN_EXIT_OK = 0,
  NN_EXIT_FAILURE = 1,   /* internal error, out of memory */
  NN_EXIT_USAGE = 2,     /* bad command line */
  NN_EXIT_JOB = 3,       /* job file invalid (syntax or schema) */
  NN_EXIT_DATA = 4,      /* data missing, unreadable or inconsistent */
  NN_EXIT_CKPT = 5,      /* checkpoint missing, damaged or incompatible */
  NN_EXIT_COMM = 6,      /* a rank failed or the job could not communicate */
  NN_EXIT_DIVERGED = 7,  /* training produced non-finite values */
  NN_EXIT_STOPPED = 75,  /* stopped on a signal after a checkpoint: resumable */
};

/* Exit code for a status code. */
int nn_exit_code(int status);

/* Print "nntrain: <formatted error>" on one line to stderr and return
 * nn_exit_code(e->code). */
int nn_cli_fail(const nn_error *e);

/* Print a usage error for `cmd` ("nntrain CMD: msg; see 'nntrain CMD --help'")
 * and return NN_EXIT_USAGE. */
int nn_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* 1 if argv[i] is -h or --help for any i >= 1. */
int nn_cli_wants_help(int argc, char **argv);

/* MPI start-up shared by the MPI subcommands: defaults Open MPI's single-copy
 * mechanism off (a user's setting wins), MPI_Init_thread(SERIALIZED) into
 * *provided, MPI_ERRORS_RETURN on MPI_COMM_WORLD (every later call is
 * checked: worker/mpi_check.h), *rank and *nranks in MPI_COMM_WORLD, and
 * err->rank. NN_EMPI with *rank == -1 if MPI_Init_thread itself failed (no
 * MPI to abort); NN_EMPI with *rank >= 0: MPI is up, the caller must
 * MPI_Abort. */
int nn_cli_mpi_init(int *argc, char ***argv, int *provided, int *rank, int *nranks,
                    nn_error *err);

/* JSON output (bench --json, kfold.json) goes through jansson (README.md,
 * "Dependencies"): strings are escaped correctly whatever they hold. Numbers
 * are written with NN_CLI_JSON_DIGITS significant digits. */
#define NN_CLI_JSON_DIGITS 9
/* A JSON number for v, or null when v is NaN or infinite (JSON has neither).
 * A new reference (NULL only when out of memory). */
json_t *nn_cli_json_real(double v);
/* Write obj as one compact line to f and release it (obj may be NULL: out of
 * memory while building it). NN_EIO names `path` (NULL: standard output). */
int nn_cli_json_line(FILE *f, json_t *obj, const char *path, nn_error *err);

/* The MPI commands' job (cli/train.c): rank 0 loads the job file (with its
 * --set overrides), every rank gets the spec. Returns the exit code every
 * rank agrees on (NN_EXIT_OK: *job is loaded everywhere); rank 0 printed the
 * error; a failed broadcast ends the job with MPI_Abort. */
struct nn_job;
int nn_cli_share_job(const char *path, const char *const *sets, int nsets, MPI_Comm comm,
                     int rank, struct nn_job *job, nn_error *err);

/* The start of train and lr-find: MPI up, the job allocated on every rank
 * (agreed), MPI_THREAD_SERIALIZED checked for N > 1, the job shared
 * (nn_cli_share_job). Returns the exit code every rank agrees on (NN_EXIT_OK:
 * *job loaded). *mpi_up = 0 when MPI did not start (said, aborted; return
 * the code); else the caller frees *job and calls MPI_Finalize. */
int nn_cli_start_job(int *argc, char ***argv, const char *path, const char *const *sets,
                     int nsets, int *rank, int *nranks, struct nn_job **job, int *mpi_up,
                     nn_error *err);

int nn_cmd_train(int argc, char **argv);
int nn_cmd_lrfind(int argc, char **argv);
int nn_cmd_check(int argc, char **argv);
int nn_cmd_prepare(int argc, char **argv);
int nn_cmd_inspect(int argc, char **argv);
int nn_cmd_bench(int argc, char **argv);
int nn_cmd_eval(int argc, char **argv);
int nn_cmd_generate(int argc, char **argv);
int nn_cmd_predict(int argc, char **argv);
int nn_cmd_dream(int argc, char **argv);
int nn_cmd_saliency(int argc, char **argv);
int nn_cmd_sample(int argc, char **argv);
int nn_cmd_encode(int argc, char **argv);
int nn_cmd_graph(int argc, char **argv);
/* `nntrain report RUN_DIR`: the HTML run report (report_cmd.c). */
int nn_cmd_report(int argc, char **argv);

#endif
