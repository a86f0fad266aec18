/* train.c: `nntrain train JOB.toml` (also `nntrain JOB.toml`).
 *
 * Rank 0 alone reads and validates the job file; it broadcasts the status and
 * then the serialized JobSpec, so a bad file fails once, with one message, and
 * every rank exits with the same code. Errors are agreed on by every rank (a
 * rank failing alone, in setup or in the middle of training, is named in the
 * one message: coordinator/train.h) and end the run cleanly; only a
 * communication failure, after which ranks cannot agree, ends the whole job
 * with MPI_Abort, because its peers may be waiting on it. */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "coordinator/alloc.h"
#include "coordinator/job.h"
#include "coordinator/train.h"
#include "worker/agree.h"
#include "worker/mpi_check.h"
#include "worker/signals.h"

#define MAX_SETS 128

static void train_usage(FILE *f) {
  fprintf(f,
          "usage: nntrain [train] JOB.toml [options]\n"
          "       mpirun -np N nntrain JOB.toml [options]\n\n"
          "Train the model a job file describes (see docs/job-file.md) on every MPI rank.\n\n"
          "options:\n"
          "  --set SECTION.KEY=VALUE  override a job key (repeatable; VALUE in TOML syntax,\n"
          "                           a bare word is a string); model.layers.N.KEY=VALUE\n"
          "                           sets a key of the N-th layer (from 0)\n"
          "  --resume [CKPT.h5]       continue from the newest valid checkpoint of the run\n"
          "                           directory (or from CKPT.h5); exact: the result is the\n"
          "                           uninterrupted run's, on any number of ranks\n"
          "  --resume-auto            resume when the run directory has a checkpoint, else\n"
          "                           start fresh (one command for the first run and requeues)\n"
          "  --kfold K                k-fold cross-validation on data.train: train K models,\n"
          "                           report each fold and the mean and standard deviation\n"
          "  --repeats R              with --kfold: repeat with R different fold draws\n"
          "  --steps N                stop after N optimizer steps in total (tests, benchmarks);\n"
          "                           a checkpoint is written there and --resume continues\n"
          "  --timeout SECONDS        end the job if a rank misses a step for this long\n"
          "                           (default 300; 0 = wait forever)\n"
          "  --check-replicas         verify after every step that all ranks hold identical\n"
          "                           parameters (slow; for tests)\n"
          "  --dump-params FILE       write the final parameters as raw float32 (rank 0)\n"
          "  --progress, --no-progress  force the live progress bar on or off\n"
          "  --quiet                  no per-epoch lines\n"
          "  -h, --help               this help\n\n"
          "Writes RUN_DIR/metrics.jsonl (run.dir in the job). Exit codes: see 'nntrain --help'.\n");
}

/* Mean and sample standard deviation (0 for one value) of v[0..n). */
static void mean_std(const double *v, int n, double *mean, double *sd) {
  double m = 0, s = 0;
  for (int i = 0; i < n; i++) m += v[i] / n;
  for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
  *mean = m;
  *sd = n > 1 ? sqrt(s / (n - 1)) : 0;
}

/* v[0..n) as a JSON array (NaN/Inf as null); a new reference or NULL. */
static json_t *json_reals(const double *v, int n) {
  json_t *a = json_array();
  for (int i = 0; a && i < n; i++)
    if (json_array_append_new(a, nn_cli_json_real(v[i])) != 0) {
      json_decref(a);
      return NULL;
    }
  return a;
}

/* Rank 0, after a k-fold run: print each fold and the mean and standard
 * deviation of the validation figures, and write RUN_DIR/kfold.json. */
static int kfold_report(const nn_job *job, int K, int repeats, const double *loss,
                        const double *acc, nn_error *err) {
  int n = K * repeats;
  double ml, sl, ma, sa;
  mean_std(loss, n, &ml, &sl);
  mean_std(acc, n, &ma, &sa);
  printf("k-fold (%d folds x %d repeat%s):\n", K, repeats, repeats == 1 ? "" : "s");
  for (int i = 0; i < n; i++)
    printf("  repeat %d fold %d: val_loss %.4f  val_acc %.2f%%\n", i / K + 1, i % K + 1, loss[i],
           100 * acc[i]);
  printf("  mean val_loss %.4f (std %.4f)  mean val_acc %.2f%% (std %.2f)\n", ml, sl, 100 * ma,
         100 * sa);
  char path[NN_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/kfold.json", job->run.dir);
  json_t *o = json_pack("{s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "folds", K, "repeats",
                        repeats, "val_loss", json_reals(loss, n), "val_accuracy",
                        json_reals(acc, n), "mean_val_loss", nn_cli_json_real(ml),
                        "std_val_loss", nn_cli_json_real(sl), "mean_val_accuracy",
                        nn_cli_json_real(ma), "std_val_accuracy", nn_cli_json_real(sa));
  FILE *f = fopen(path, "w");
  if (!f) {
    json_decref(o);
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot write: %s", strerror(errno));
  }
  int rc = nn_cli_json_line(f, o, path, err);
  if (fclose(f) != 0 && !rc) rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot write");
  return rc;
}

/* K-fold cross-validation: fold f of repeat r trains on data.train less the
 * f-th K-th of a permutation drawn from (seed, r) and validates on it, in
 * RUN_DIR/kfold-r<r>-f<f>. Prints each fold and the mean and standard
 * deviation of the validation figures; writes RUN_DIR/kfold.json. */
static int run_kfold(const nn_job *job, MPI_Comm comm, const nn_train_opts *base, int K,
                     int repeats, nn_error *err, nn_train_result *last) {
  int rank, n = K * repeats;
  int rc = NN_MPI_CHECK(err, MPI_Comm_rank(comm, &rank));
  if (rc) return rc;
  double *loss = nn_calloc((size_t)n, sizeof *loss), *acc = nn_calloc((size_t)n, sizeof *acc);
  if (!loss || !acc) {
    free(loss);
    free(acc);
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  char dir[NN_PATH_MAX + 64];
  for (int r = 0; r < repeats && !rc; r++)
    for (int f = 0; f < K && !rc; f++) {
      nn_train_opts o = *base;
      o.kfold = K;
      o.fold = f;
      o.repeat = r;
      snprintf(dir, sizeof dir, "%s/kfold-r%d-f%d", job->run.dir, r, f);
      o.run_dir = dir;
      if (rank == 0 && !o.quiet)
        printf("== fold %d/%d%s%.0d (run dir %s)\n", f + 1, K, repeats > 1 ? ", repeat " : "",
               repeats > 1 ? r + 1 : 0, dir);
      rc = nn_train_run(job, comm, &o, last, err);
      loss[r * K + f] = last->val_loss;
      acc[r * K + f] = last->val_acc;
    }
  if (!rc && rank == 0) rc = kfold_report(job, K, repeats, loss, acc, err);
  free(loss);
  free(acc);
  return rc;
}

/* Parse a non-negative number argument. */
static int parse_num(const char *s, double *v) {
  char *end;
  *v = strtod(s, &end);
  return end != s && *end == '\0' && *v >= 0;
}

/* The command line of `nntrain train`. */
typedef struct train_args {
  const char *path;          /* the job file */
  const char *sets[MAX_SETS];/* --set overrides */
  int nsets;
  int kfold, repeats;        /* --kfold K (0: off), --repeats R */
  nn_train_opts opts;
} train_args;

/* Parse argv into *a: 0, or NN_EXIT_USAGE after printing the usage error. */
static int train_parse(int argc, char **argv, train_args *a) {
  memset(a, 0, sizeof *a);
  a->opts = (nn_train_opts){.progress = -1, .timeout_s = 300};
  a->repeats = 1;
  nn_train_opts *o = &a->opts;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    double v;
    if (!strcmp(s, "--set") || !strncmp(s, "--set=", 6)) {
      const char *val = s[5] == '=' ? s + 6 : (i + 1 < argc ? argv[++i] : NULL);
      if (!val) return nn_cli_usage_error("train", "--set needs SECTION.KEY=VALUE");
      if (a->nsets == MAX_SETS) return nn_cli_usage_error("train", "too many --set options");
      a->sets[a->nsets++] = val;
    } else if (!strcmp(s, "--resume")) {
      o->resume = NN_RESUME_LATEST;
      if (i + 1 < argc && argv[i + 1][0] != '-') {
        size_t l = strlen(argv[i + 1]);
        if (l > 3 && !strcmp(argv[i + 1] + l - 3, ".h5")) {
          o->resume = NN_RESUME_PATH;
          o->resume_path = argv[++i];
        }
      }
    } else if (!strcmp(s, "--resume-auto")) {
      o->resume = NN_RESUME_AUTO;
    } else if (!strcmp(s, "--kfold")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v) || v < 2 || v != (int)v || v > 1000)
        return nn_cli_usage_error("train", "--kfold needs a whole number K >= 2");
      a->kfold = (int)v;
    } else if (!strcmp(s, "--repeats")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v) || v < 1 || v != (int)v || v > 1000)
        return nn_cli_usage_error("train", "--repeats needs a whole number >= 1");
      a->repeats = (int)v;
    } else if (!strcmp(s, "--steps")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v) || v < 1)
        return nn_cli_usage_error("train", "--steps needs a positive whole number");
      o->max_steps = (int64_t)v;
    } else if (!strcmp(s, "--timeout")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v))
        return nn_cli_usage_error("train", "--timeout needs a number of seconds >= 0");
      o->timeout_s = v;
    } else if (!strcmp(s, "--dump-params")) {
      if (i + 1 >= argc) return nn_cli_usage_error("train", "--dump-params needs a FILE");
      o->dump_params = argv[++i];
    } else if (!strcmp(s, "--check-replicas")) {
      o->check_replicas = 1;
    } else if (!strcmp(s, "--progress") || !strcmp(s, "--no-progress")) {
      o->progress = !strcmp(s, "--progress");
    } else if (!strcmp(s, "--quiet")) {
      o->quiet = 1;
    } else if (s[0] == '-' && s[1]) {
      return nn_cli_usage_error("train", "unknown option '%s'", s);
    } else if (!a->path) {
      a->path = s;
    } else {
      return nn_cli_usage_error("train", "unexpected argument '%s' (one job file only)", s);
    }
  }
  if (!a->path) return nn_cli_usage_error("train", "missing the job file");
  if (a->repeats > 1 && !a->kfold)
    return nn_cli_usage_error("train", "--repeats goes with --kfold");
  if (a->kfold && o->resume)
    return nn_cli_usage_error("train", "--kfold runs cannot be resumed (run them again)");
  return 0;
}

/* Rank 0 reads the job file; every rank learns the outcome, then the spec.
 * Returns the exit code every rank agrees on (NN_EXIT_OK: *job is loaded on
 * every rank). A rank that cannot hold or decode the spec (out of memory, a
 * damaged spec) fails every rank with its record, printed once by rank 0; a
 * failed broadcast ends the job with MPI_Abort. */
int nn_cli_share_job(const char *path, const char *const *sets, int nsets, MPI_Comm comm,
                     int rank, nn_job *job, nn_error *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int code = NN_EXIT_OK, rc;
  if (rank == 0) {
    rc = nn_job_load(job, path, sets, nsets, err);
    if (rc) {
      nn_cli_fail(err);
      /* A missing or unreadable job file is a bad job, as in `check`. */
      code = rc == NN_ENOMEM ? NN_EXIT_FAILURE : NN_EXIT_JOB;
    } else if ((rc = nn_job_pack(job, &buf, &len, err)) != 0) {
      code = nn_cli_fail(err);
    }
  }
  long long hdr[2] = {code, (long long)len};
  if ((rc = NN_MPI_CHECK(err, MPI_Bcast(hdr, 2, MPI_LONG_LONG, 0, comm)))) goto abort;
  if (hdr[0] != NN_EXIT_OK) {
    free(buf);
    return (int)hdr[0];
  }
  if (rank != 0) {
    len = (size_t)hdr[1];
    buf = nn_malloc(len ? len : 1);
    if (!buf) rc = nn_error_set(err, NN_ENOMEM, "out of memory for the job spec");
  }
  /* agreed: a rank without the buffer must not skip the broadcast alone */
  if ((rc = nn_agree(comm, rc, err)) != 0) goto agreed;
  if ((rc = NN_MPI_CHECK(err, MPI_Bcast(buf, (int)len, MPI_BYTE, 0, comm)))) goto abort;
  if (rank != 0) rc = nn_job_unpack(job, buf, len, err);
  if ((rc = nn_agree(comm, rc, err)) != 0) goto agreed;
  free(buf);
  return NN_EXIT_OK;
agreed: /* every rank holds the failing rank's record */
  if (rc == NN_EMPI) goto abort;
  free(buf);
  return rank == 0 ? nn_cli_fail(err) : nn_exit_code(rc);
abort:
  free(buf);
  err->rank = rank;
  code = nn_cli_fail(err);
  MPI_Abort(comm, code);
  return code;
}

int nn_cli_start_job(int *argc, char ***argv, const char *path, const char *const *sets,
                     int nsets, int *rank, int *nranks, nn_job **job, int *mpi_up,
                     nn_error *err) {
  int provided = 0, rc;
  *job = NULL;
  *mpi_up = 0;
  if ((rc = nn_cli_mpi_init(argc, argv, &provided, rank, nranks, err))) {
    int code = nn_cli_fail(err);
    if (*rank >= 0) MPI_Abort(MPI_COMM_WORLD, code);
    return code;
  }
  *mpi_up = 1;
  *job = nn_calloc(1, sizeof **job);
  /* A rank without memory stops every rank, with one message, no abort. */
  if ((rc = nn_agree(MPI_COMM_WORLD, *job ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory"),
                     err)))
    return *rank == 0 ? nn_cli_fail(err) : nn_exit_code(rc);
  if (*nranks > 1 && provided < MPI_THREAD_SERIALIZED) {
    if (*rank == 0)
      fprintf(stderr, "nntrain: this MPI library does not provide MPI_THREAD_SERIALIZED\n");
    return NN_EXIT_COMM;
  }
  return nn_cli_share_job(path, sets, nsets, MPI_COMM_WORLD, *rank, *job, err);
}

/* rank 0: the batch system's allocation (coordinator/alloc.h), one line,
 * with the BLAS thread count the run will pick. A malformed SLURM_*
 * variable is a warning: the run does not need it. */
static void print_alloc(int threads, int quiet) {
  nn_alloc alloc;
  nn_error aerr;
  nn_error_clear(&aerr);
  char line[512];
  if (nn_alloc_detect(&alloc, &aerr) != 0)
    fprintf(stderr, "nntrain: warning: %s\n", nn_error_format(&aerr, line, sizeof line));
  if (alloc.in_slurm && !quiet) {
    printf("nntrain: %s\n", nn_alloc_describe(&alloc, threads, line, sizeof line));
    fflush(stdout);
  }
}

int nn_cmd_train(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    train_usage(stdout);
    return NN_EXIT_OK;
  }
  train_args a;
  int code = train_parse(argc, argv, &a);
  if (code) return code;
  nn_train_opts opts = a.opts;

  int rank = 0, nranks = 1, rc, mpi_up;
  nn_error err;
  nn_error_clear(&err);
  nn_job *job;
  code = nn_cli_start_job(&argc, &argv, a.path, a.sets, a.nsets, &rank, &nranks, &job, &mpi_up,
                          &err);
  if (!mpi_up) return code;
  MPI_Comm comm = MPI_COMM_WORLD;
  if (code != NN_EXIT_OK) goto out;

  /* Stop requests: the job's signals, and SIGINT; resume = "auto". */
  int mask = nn_signals_parse(job->run.stop_signals);
  rc = nn_signals_install((mask > 0 ? mask : 0) | NN_SIG_INT, &err);
  if ((rc = nn_agree(comm, rc, &err)) != 0) {
    code = rank == 0 ? nn_cli_fail(&err) : nn_exit_code(rc);
    goto out;
  }
  if (!opts.resume && !a.kfold && !strcmp(job->run.resume, "auto")) opts.resume = NN_RESUME_AUTO;
  int threads = nn_train_blas_threads(job, comm);
  if (rank == 0) print_alloc(threads, opts.quiet);
  nn_train_result res;
  memset(&res, 0, sizeof res);
  if (a.kfold)
    rc = run_kfold(job, comm, &opts, a.kfold, a.repeats, &err, &res);
  else
    rc = nn_train_run(job, comm, &opts, &res, &err);
  if (rc && res.local_error) {
    /* Communication failed on this rank (train.h): its peers may be waiting on it. */
    code = nn_cli_fail(&err);
    if (nranks > 1) MPI_Abort(comm, code);
  } else if (rc) {
    /* Every rank holds the same record: say it once. */
    code = rank == 0 ? nn_cli_fail(&err) : nn_exit_code(rc);
  }
out:
  free(job);
  /* The handlers stay until MPI is down: a stop request arriving after the run
   * ended (a scheduler's early warning racing the last epoch) is recorded and
   * ignored instead of killing the process with the signal's default action
   * (found by e2e_slurm: mpirun exited 138 after a completed run). */
  if (NN_MPI_CHECK(&err, MPI_Finalize()) && code == NN_EXIT_OK) code = nn_cli_fail(&err);
  nn_signals_restore();
  return code;
}
