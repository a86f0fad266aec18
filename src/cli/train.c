/* train.c: `nntrain train JOB.toml` (also `nntrain JOB.toml`).
 *
 * Rank 0 alone reads and validates the job file; it broadcasts the status and
 * then the serialized JobSpec, so a bad file fails once, with one message, and
 * every rank exits with the same code. Errors that every rank agrees on (data,
 * shapes) end the run cleanly; an error inside the step loop on one rank ends
 * the whole job with MPI_Abort, because its peers may be waiting on it. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/alloc.h"
#include "coordinator/job.h"
#include "coordinator/train.h"
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

/* K-fold cross-validation: fold f of repeat r trains on data.train less the
 * f-th K-th of a permutation drawn from (seed, r) and validates on it, in
 * RUN_DIR/kfold-r<r>-f<f>. Prints each fold and the mean and standard
 * deviation of the validation figures; writes RUN_DIR/kfold.json. */
static int run_kfold(const nn_job *job, MPI_Comm comm, const nn_train_opts *base, int K,
                     int repeats, nn_error *err, nn_train_result *last) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int n = K * repeats, rc = 0;
  double *loss = calloc((size_t)n, sizeof *loss), *acc = calloc((size_t)n, sizeof *acc);
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
  if (!rc && rank == 0) {
    double ml = 0, ma = 0, sl = 0, sa = 0;
    for (int i = 0; i < n; i++) {
      ml += loss[i] / n;
      ma += acc[i] / n;
    }
    for (int i = 0; i < n; i++) {
      sl += (loss[i] - ml) * (loss[i] - ml);
      sa += (acc[i] - ma) * (acc[i] - ma);
    }
    sl = n > 1 ? sqrt(sl / (n - 1)) : 0;
    sa = n > 1 ? sqrt(sa / (n - 1)) : 0;
    printf("k-fold (%d folds x %d repeat%s):\n", K, repeats, repeats == 1 ? "" : "s");
    for (int i = 0; i < n; i++)
      printf("  repeat %d fold %d: val_loss %.4f  val_acc %.2f%%\n", i / K + 1, i % K + 1,
             loss[i], 100 * acc[i]);
    printf("  mean val_loss %.4f (std %.4f)  mean val_acc %.2f%% (std %.2f)\n", ml, sl,
           100 * ma, 100 * sa);
    snprintf(dir, sizeof dir, "%s/kfold.json", job->run.dir);
    FILE *f = fopen(dir, "w");
    if (f) {
      fprintf(f, "{\"folds\": %d, \"repeats\": %d, \"val_loss\": [", K, repeats);
      for (int i = 0; i < n; i++) fprintf(f, "%s%.9g", i ? ", " : "", loss[i]);
      fprintf(f, "], \"val_accuracy\": [");
      for (int i = 0; i < n; i++) fprintf(f, "%s%.9g", i ? ", " : "", acc[i]);
      fprintf(f, "], \"mean_val_loss\": %.9g, \"std_val_loss\": %.9g, "
              "\"mean_val_accuracy\": %.9g, \"std_val_accuracy\": %.9g}\n", ml, sl, ma, sa);
      if (fclose(f) != 0) rc = nn_error_at(err, NN_EIO, dir, 0, 0, "cannot write");
    } else {
      rc = nn_error_at(err, NN_EIO, dir, 0, 0, "cannot write");
    }
  }
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

int nn_cmd_train(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    train_usage(stdout);
    return NN_EXIT_OK;
  }
  const char *path = NULL;
  const char *sets[MAX_SETS];
  int nsets = 0;
  nn_train_opts opts = {.progress = -1, .timeout_s = 300};
  int kfold = 0, repeats = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    double v;
    if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
      const char *val = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
      if (!val) return nn_cli_usage_error("train", "--set needs SECTION.KEY=VALUE");
      if (nsets == MAX_SETS) return nn_cli_usage_error("train", "too many --set options");
      sets[nsets++] = val;
    } else if (!strcmp(a, "--resume")) {
      opts.resume = NN_RESUME_LATEST;
      if (i + 1 < argc && argv[i + 1][0] != '-') {
        size_t l = strlen(argv[i + 1]);
        if (l > 3 && !strcmp(argv[i + 1] + l - 3, ".h5")) {
          opts.resume = NN_RESUME_PATH;
          opts.resume_path = argv[++i];
        }
      }
    } else if (!strcmp(a, "--resume-auto")) {
      opts.resume = NN_RESUME_AUTO;
    } else if (!strcmp(a, "--kfold")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v) || v < 2 || v != (int)v || v > 1000)
        return nn_cli_usage_error("train", "--kfold needs a whole number K >= 2");
      kfold = (int)v;
    } else if (!strcmp(a, "--repeats")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v) || v < 1 || v != (int)v || v > 1000)
        return nn_cli_usage_error("train", "--repeats needs a whole number >= 1");
      repeats = (int)v;
    } else if (!strcmp(a, "--steps")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v) || v < 1)
        return nn_cli_usage_error("train", "--steps needs a positive whole number");
      opts.max_steps = (int64_t)v;
    } else if (!strcmp(a, "--timeout")) {
      if (i + 1 >= argc || !parse_num(argv[++i], &v))
        return nn_cli_usage_error("train", "--timeout needs a number of seconds >= 0");
      opts.timeout_s = v;
    } else if (!strcmp(a, "--dump-params")) {
      if (i + 1 >= argc) return nn_cli_usage_error("train", "--dump-params needs a FILE");
      opts.dump_params = argv[++i];
    } else if (!strcmp(a, "--check-replicas")) {
      opts.check_replicas = 1;
    } else if (!strcmp(a, "--progress")) {
      opts.progress = 1;
    } else if (!strcmp(a, "--no-progress")) {
      opts.progress = 0;
    } else if (!strcmp(a, "--quiet")) {
      opts.quiet = 1;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error("train", "unknown option '%s'", a);
    } else if (!path) {
      path = a;
    } else {
      return nn_cli_usage_error("train", "unexpected argument '%s' (one job file only)", a);
    }
  }
  if (!path) return nn_cli_usage_error("train", "missing the job file");
  if (repeats > 1 && !kfold) return nn_cli_usage_error("train", "--repeats goes with --kfold");
  if (kfold && opts.resume)
    return nn_cli_usage_error("train", "--kfold runs cannot be resumed (run them again)");

  /* Single-copy (CMA) transfers are slower and noisier than copy-in/copy-out
   * on the VMs we measured (docs/allreduce.md); a user's own setting wins. */
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
    fprintf(stderr, "nntrain: cannot initialize MPI\n");
    return NN_EXIT_COMM;
  }
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, nranks;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);

  nn_error err;
  nn_error_clear(&err);
  nn_job *job = calloc(1, sizeof *job);
  uint8_t *buf = NULL;
  size_t len = 0;
  int code = NN_EXIT_OK, rc = 0;
  if (!job) {
    fprintf(stderr, "nntrain: out of memory\n");
    MPI_Abort(comm, NN_EXIT_FAILURE);
    return NN_EXIT_FAILURE;
  }
  if (nranks > 1 && provided < MPI_THREAD_SERIALIZED) {
    if (rank == 0)
      fprintf(stderr, "nntrain: this MPI library does not provide MPI_THREAD_SERIALIZED\n");
    code = NN_EXIT_COMM;
    goto out;
  }

  /* Rank 0 parses; everyone learns the outcome, then the spec. */
  if (rank == 0) {
    rc = nn_job_load(job, path, sets, nsets, &err);
    if (rc) {
      nn_cli_fail(&err);
      /* A missing or unreadable job file is a bad job, as in `check`. */
      code = rc == NN_ENOMEM ? NN_EXIT_FAILURE : NN_EXIT_JOB;
    } else if ((rc = nn_job_pack(job, &buf, &len, &err)) != 0) {
      code = nn_cli_fail(&err);
    }
  }
  long long hdr[2] = {code, (long long)len};
  MPI_Bcast(hdr, 2, MPI_LONG_LONG, 0, comm);
  if (hdr[0] != NN_EXIT_OK) {
    code = (int)hdr[0];
    goto out;
  }
  if (rank != 0) {
    len = (size_t)hdr[1];
    buf = malloc(len ? len : 1);
    if (!buf) {
      fprintf(stderr, "nntrain: rank %d: out of memory\n", rank);
      MPI_Abort(comm, NN_EXIT_FAILURE);
    }
  }
  MPI_Bcast(buf, (int)len, MPI_BYTE, 0, comm);
  if (rank != 0 && nn_job_unpack(job, buf, len, &err) != 0) {
    err.rank = rank;
    code = nn_cli_fail(&err);
    MPI_Abort(comm, code);
  }

  /* Stop requests: the job's signals, and SIGINT; resume = "auto". */
  int mask = nn_signals_parse(job->run.stop_signals);
  if (nn_signals_install((mask > 0 ? mask : 0) | NN_SIG_INT, &err) != 0) {
    code = nn_cli_fail(&err);
    MPI_Abort(comm, code);
  }
  if (!opts.resume && !kfold && !strcmp(job->run.resume, "auto")) opts.resume = NN_RESUME_AUTO;

  /* The batch system's allocation (coordinator/alloc.h): one line on rank 0,
   * with the BLAS thread count the run will pick. A malformed SLURM_*
   * variable is a warning: the run does not need it. */
  int threads = nn_train_blas_threads(job, comm);
  if (rank == 0) {
    nn_alloc alloc;
    nn_error aerr;
    nn_error_clear(&aerr);
    char line[512];
    if (nn_alloc_detect(&alloc, &aerr) != 0)
      fprintf(stderr, "nntrain: warning: %s\n", nn_error_format(&aerr, line, sizeof line));
    if (alloc.in_slurm && !opts.quiet) {
      printf("nntrain: %s\n", nn_alloc_describe(&alloc, threads, line, sizeof line));
      fflush(stdout);
    }
  }
  nn_train_result res;
  memset(&res, 0, sizeof res);
  if (kfold) {
    rc = run_kfold(job, comm, &opts, kfold, repeats, &err, &res);
  } else {
    rc = nn_train_run(job, comm, &opts, &res, &err);
  }
  if (rc && res.local_error) {
    /* This rank alone failed inside the run: its peers may be waiting on it. */
    code = nn_cli_fail(&err);
    if (nranks > 1) MPI_Abort(comm, code);
  } else if (rc) {
    /* Every rank holds the same record: say it once. */
    code = rank == 0 ? nn_cli_fail(&err) : nn_exit_code(rc);
  }
out:
  nn_signals_restore();
  free(buf);
  free(job);
  MPI_Finalize();
  return code;
}
