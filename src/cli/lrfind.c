/* lrfind.c: `nntrain lr-find JOB.toml [--start 1e-7 --end 10 --steps 200]`.
 *
 * Smith's learning-rate range test (docs/training.md, "Finding the learning
 * rate"): the job's model trained on the job's batches, exactly as a run on
 * the same ranks would make them (coordinator/train.h: nn_lrfind), at a rate
 * growing exponentially from --start to --end over --steps steps. The loss
 * of each step's global batch is smoothed with an exponential moving average
 * (beta 0.98, bias-corrected); the sweep stops when the smoothed loss passes
 * 4x its minimum (divergence) or a step's gradient is not finite. Rank 0
 * writes RUN_DIR/lr_find.jsonl (one record per step: step, lr, loss,
 * smoothed) and prints the suggested maximum rate. Nothing is restored and
 * no checkpoint or metrics log is written. Exit codes: README.md. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/job.h"
#include "coordinator/train.h"
#include "core/mem.h"
#include "worker/agree.h"
#include "worker/fsutil.h"
#include "worker/mpi_check.h"

#define MAX_SETS 128
#define LRF_BETA 0.98
#define LRF_DIVERGE 4.0

static void lrfind_usage(FILE *f) {
  fprintf(f,
          "usage: [mpirun -np N] nntrain lr-find JOB.toml [--start LR] [--end LR] [--steps N]\n"
          "                                     [--set SECTION.KEY=VALUE ...]\n\n"
          "The learning-rate range test (Smith): train the job's model on its batches at a\n"
          "rate growing exponentially from --start to --end, one rate per step, and watch\n"
          "the loss (smoothed: moving average, beta 0.98). Stops when the smoothed loss\n"
          "passes 4x its minimum or after --steps steps. Writes RUN_DIR/lr_find.jsonl\n"
          "(step, lr, loss, smoothed) and prints the suggested maximum learning rate (the\n"
          "rate where the smoothed loss falls fastest against log lr). No checkpoint.\n\n"
          "options:\n"
          "  --start LR               the first rate (default 1e-7)\n"
          "  --end LR                 the rate after --steps steps (default 10)\n"
          "  --steps N                the sweep's length (default 200)\n"
          "  --set SECTION.KEY=VALUE  override a job key (repeatable)\n"
          "  -h, --help               this help\n\n"
          "Exit codes: 0 ok, 1 internal error, 2 usage, 3 job file invalid, 4 data missing\n"
          "or invalid or RUN_DIR not writable, 6 rank/communication failure.\n");
}

typedef struct lrf_args {
  const char *path;
  const char *sets[MAX_SETS];
  int nsets;
  double start, end;
  long long steps;
} lrf_args;

static int parse_double(const char *flag, const char *v, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (end == v || *end || errno || !isfinite(d) || d <= 0)
    return nn_cli_usage_error("lr-find", "%s '%s': expected a positive number", flag, v);
  *out = d;
  return 0;
}

static int parse_args(int argc, char **argv, lrf_args *A) {
  A->start = 1e-7;
  A->end = 10;
  A->steps = 200;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *flag = NULL;
    static const char *const flags[] = {"--start", "--end", "--steps", "--set"};
    for (size_t k = 0; k < sizeof flags / sizeof *flags; k++) {
      size_t n = strlen(flags[k]);
      if (!strncmp(a, flags[k], n) && (a[n] == '\0' || a[n] == '=')) flag = flags[k];
    }
    if (!flag) {
      if (a[0] == '-' && a[1]) return nn_cli_usage_error("lr-find", "unknown option '%s'", a);
      if (A->path)
        return nn_cli_usage_error("lr-find", "one job file at a time ('%s' and '%s')", A->path, a);
      A->path = a;
      continue;
    }
    size_t n = strlen(flag);
    const char *v = a[n] == '=' ? a + n + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v || !*v) return nn_cli_usage_error("lr-find", "%s needs a value", flag);
    int code = 0;
    if (!strcmp(flag, "--start")) {
      code = parse_double(flag, v, &A->start);
    } else if (!strcmp(flag, "--end")) {
      code = parse_double(flag, v, &A->end);
    } else if (!strcmp(flag, "--steps")) {
      char *end;
      errno = 0;
      long long s = strtoll(v, &end, 10);
      if (end == v || *end || errno || s < 2 || s > 1000000)
        return nn_cli_usage_error("lr-find", "--steps '%s': expected an integer in [2, 1000000]", v);
      A->steps = s;
    } else {
      if (A->nsets == MAX_SETS) return nn_cli_usage_error("lr-find", "too many --set options");
      A->sets[A->nsets++] = v;
    }
    if (code) return code;
  }
  if (!A->path) return nn_cli_usage_error("lr-find", "missing the job file");
  if (!(A->end > A->start))
    return nn_cli_usage_error("lr-find", "--end %g must be above --start %g", A->end, A->start);
  return 0;
}

/* The sweep's record, on every rank (the same figures everywhere). */
typedef struct lrf_state {
  int lead;
  FILE *f;                 /* rank 0: lr_find.jsonl */
  const char *path;
  double avg, best;        /* the moving average, the smoothed minimum */
  double *lr, *sm;         /* [steps]: rate and smoothed loss per step */
  int64_t n;               /* steps recorded */
  int diverged;
} lrf_state;

static int on_step(void *user, int64_t step, double lr, double loss, int *stop, nn_error *err) {
  lrf_state *S = user;
  double smoothed = INFINITY;
  if (isfinite(loss)) {
    S->avg = LRF_BETA * S->avg + (1 - LRF_BETA) * loss;
    smoothed = S->avg / (1 - pow(LRF_BETA, (double)(step + 1)));
  }
  S->lr[S->n] = lr;
  S->sm[S->n] = smoothed;
  S->n++;
  if (smoothed < S->best) S->best = smoothed;
  if (!isfinite(smoothed) || (step > 0 && smoothed > LRF_DIVERGE * S->best)) {
    S->diverged = 1;
    *stop = 1;
  }
  if (!S->lead) return 0;
  json_t *o = json_object();
  if (o && (json_object_set_new(o, "step", json_integer(step)) ||
            json_object_set_new(o, "lr", nn_cli_json_real(lr)) ||
            json_object_set_new(o, "loss", nn_cli_json_real(loss)) ||
            json_object_set_new(o, "smoothed", nn_cli_json_real(smoothed)))) {
    json_decref(o);
    o = NULL;
  }
  return nn_cli_json_line(S->f, o, S->path, err);
}

/* The suggestion: the rate where the smoothed loss falls fastest against
 * log(lr), among the steps before its minimum (the descent Smith's test is
 * read off; beyond the minimum the loss is on its way up). The slope is the
 * central difference over a window of w = max(1, n/50) steps each side, so
 * one noisy step does not win. Returns NAN when the sweep has too few steps
 * before the minimum (then the minimum's rate / 10 is printed instead). */
static double suggest(const lrf_state *S, double *min_lr) {
  int64_t imin = 0;
  for (int64_t i = 1; i < S->n; i++)
    if (S->sm[i] < S->sm[imin]) imin = i;
  *min_lr = S->lr[imin];
  int64_t w = S->n / 50 > 1 ? S->n / 50 : 1;
  double best = 0, at = NAN;
  for (int64_t i = w; i + w <= imin; i++) {
    double d = (S->sm[i + w] - S->sm[i - w]) / (log(S->lr[i + w]) - log(S->lr[i - w]));
    if (isfinite(d) && d < best) {
      best = d;
      at = S->lr[i];
    }
  }
  return at;
}

static int run_sweep(const lrf_args *A, const nn_job *job, MPI_Comm comm, int rank, nn_error *err,
                     int *local) {
  lrf_state S;
  memset(&S, 0, sizeof S);
  S.lead = rank == 0;
  S.best = INFINITY;
  char path[NN_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/lr_find.jsonl", job->run.dir);
  S.path = path;
  S.lr = nn_malloc(sizeof(double) * (size_t)A->steps);
  S.sm = nn_malloc(sizeof(double) * (size_t)A->steps);
  int rc = S.lr && S.sm ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory");
  if (!rc && S.lead && !(rc = nn_mkdirs(job->run.dir, err)) && !(S.f = fopen(path, "w")))
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot write: %s", strerror(errno));
  *local = 0;
  if ((rc = nn_agree(comm, rc, err)) == 0) {
    nn_lrfind F = {.start = A->start, .end = A->end, .steps = A->steps, .on_step = on_step,
                   .user = &S};
    nn_train_opts o;
    memset(&o, 0, sizeof o);
    o.quiet = 1;
    o.lrfind = &F;
    nn_train_result res;
    rc = nn_train_run(job, comm, &o, &res, err);
    *local = rc && res.local_error;
  }
  if (S.f && fclose(S.f) != 0 && !rc) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "write failed");
  }
  if (!rc && S.lead) {
    double min_lr, s = suggest(&S, &min_lr);
    printf("lr-find: %lld steps, lr %.3g .. %.3g%s; minimum smoothed loss %.4f at lr %.3g\n",
           (long long)S.n, S.lr[0], S.lr[S.n - 1],
           S.diverged ? " (stopped: the smoothed loss passed 4x its minimum)" : "", S.best,
           min_lr);
    /* one_cycle's max_lr: a tenth of the minimum's rate (Smith's "largest
     * rate that still trains", made safe; docs/training.md explains the
     * choice with the CNN job's figures); the steepest descent, a
     * conservative constant rate, beside it */
    printf("suggested max lr: %.3g (for one_cycle: the smoothed loss's minimum's rate / 10)\n",
           min_lr / 10);
    if (isfinite(s))
      printf("steepest descent of the smoothed loss at lr %.3g (a conservative constant rate)\n",
             s);
    printf("records: %s\n", path);
  }
  free(S.lr);
  free(S.sm);
  return rc;
}

int nn_cmd_lrfind(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    lrfind_usage(stdout);
    return NN_EXIT_OK;
  }
  lrf_args A;
  memset(&A, 0, sizeof A);
  int code = parse_args(argc, argv, &A);
  if (code) return code;
  int rank = 0, nranks = 1, rc, mpi_up;
  nn_error err;
  nn_error_clear(&err);
  nn_job *job;
  code = nn_cli_start_job(&argc, &argv, A.path, A.sets, A.nsets, &rank, &nranks, &job, &mpi_up,
                          &err);
  if (!mpi_up) return code;
  MPI_Comm comm = MPI_COMM_WORLD;
  if (code == NN_EXIT_OK) {
    int local = 0;
    rc = run_sweep(&A, job, comm, rank, &err, &local);
    if (rc && local) {
      code = nn_cli_fail(&err);
      if (nranks > 1) MPI_Abort(comm, code);
    } else if (rc) {
      code = rank == 0 ? nn_cli_fail(&err) : nn_exit_code(rc);
    }
  }
  free(job);
  if (NN_MPI_CHECK(&err, MPI_Finalize()) && code == NN_EXIT_OK) code = nn_cli_fail(&err);
  return code;
}
