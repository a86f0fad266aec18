/* report_cmd.c: `nntrain report RUN_DIR [--out FILE.html]`: the run report
 * (coordinator/report.h, docs/report.md) of a run directory, on one process.
 *
 * The records come from RUN_DIR/metrics.jsonl (the newest run in it), the
 * learning-rate range test and k-fold results from their files. The newest
 * checkpoint that verifies (or --checkpoint) gives the model (its graph) and
 * is evaluated on the job's test set (or --data; else its validation set):
 * the confusion matrix, per-class figures and the first misclassified
 * samples. The job file shown is RUN_DIR/job.toml (the run's copy), else
 * the checkpoint's job source. Under mpirun only rank 0 works. */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/evalctx.h"
#include "coordinator/checkpoint.h"
#include "coordinator/report.h"
#include "coordinator/run/evaluate.h"
#include "coordinator/run/task.h"
#include "core/mem.h"
#include "worker/agree.h"
#include "worker/dataset.h"

#define REPORT_MISSES 16

typedef struct report_args {
  const char *dir, *out, *ckpt, *data;
  int no_eval;
} report_args;

static void usage(FILE *f) {
  fprintf(f,
          "usage: nntrain report RUN_DIR [--out FILE.html] [--checkpoint CKPT.h5]\n"
          "                      [--data GLOB] [--no-eval]\n\n"
          "Write the run report: one self-contained HTML file (Chart.js inlined from\n"
          "Debian's libjs-chart.js) with the loss, accuracy and learning-rate curves per\n"
          "step and per epoch, throughput and checkpoint pauses, the learning-rate range\n"
          "test, k-fold results, the model graph, the confusion matrix and per-class\n"
          "precision/recall/F1, misclassified samples and the job file. A training run\n"
          "rewrites RUN_DIR/report.html itself after every epoch (run.report).\n\n"
          "options:\n"
          "  --out FILE.html        where to write it (default RUN_DIR/report.html)\n"
          "  --checkpoint CKPT.h5   the model to draw and evaluate (default: the newest\n"
          "                         checkpoint of RUN_DIR that verifies)\n"
          "  --data GLOB            the data to evaluate it on (default: the job's test set,\n"
          "                         else its validation set)\n"
          "  --no-eval              no evaluation: curves, graph and job file only\n"
          "  -h, --help             this help\n\n"
          "Exit codes: 0 ok, 1 internal error, 2 usage, 4 RUN_DIR not a run directory,\n"
          "data invalid, Chart.js missing or FILE not writable, 5 checkpoint invalid.\n");
}

static int parse(int argc, char **argv, report_args *A) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **dst = !strcmp(a, "--out") ? &A->out
                       : !strcmp(a, "--checkpoint") ? &A->ckpt
                       : !strcmp(a, "--data") ? &A->data : NULL;
    if (dst) {
      if (i + 1 >= argc || !argv[i + 1][0]) return nn_cli_usage_error("report", "%s needs a value", a);
      *dst = argv[++i];
    } else if (!strcmp(a, "--no-eval")) {
      A->no_eval = 1;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error("report", "unknown option '%s'", a);
    } else if (A->dir) {
      return nn_cli_usage_error("report", "one run directory at a time ('%s' and '%s')", A->dir, a);
    } else {
      A->dir = a;
    }
  }
  if (!A->dir) return nn_cli_usage_error("report", "missing the run directory");
  return -1;
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The checkpoint to use, read and verified into *s: --checkpoint, else the
 * newest that verifies (its path in buf; "" when the run has none). */
static int pick_checkpoint(const report_args *A, nn_ckpt_snapshot *s, char *buf, size_t n,
                           nn_error *err) {
  buf[0] = '\0';
  if (A->ckpt) {
    snprintf(buf, n, "%s", A->ckpt);
    return nn_ckpt_read(A->ckpt, s, err);
  }
  int rc = nn_ckpt_read_latest(A->dir, s, buf, n, NULL, NULL, err);
  if (rc == NN_ENOTFOUND) {
    buf[0] = '\0';
    nn_error_clear(err);
    return 0;
  }
  return rc;
}

/* The data the checkpoint's job evaluates on: --data, data.test, else data.val. */
static const char *eval_data(const report_args *A, const nn_job *job) {
  if (A->data) return A->data;
  if (job->data.test[0]) return job->data.test;
  return job->data.validation[0] ? job->data.validation : NULL;
}

/* The job spec of checkpoint s, to find its data. */
static int job_of(const nn_ckpt_snapshot *s, const char *ckpt, nn_job *job, nn_error *err) {
  int rc = nn_job_unpack(job, s->spec, s->spec_len, err);
  if (rc && rc != NN_ENOMEM)
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "its job spec does not decode");
  return rc;
}

/* The model for its graph alone, built (not loaded) for the data's samples,
 * as `nntrain graph` builds it. */
static int graph_only(evalctx *E, const nn_job *job, const char *data, nn_error *err) {
  int rc = nn_task_for_job(job, &E->task, err);
  if (!rc) rc = nn_dataset_open(&E->ds, data, NULL, err);
  if (rc) return rc;
  nn_replica_opts ro = {.train = 0, .max_batch = 1, .lint = 0};
  rc = nn_task_build(E->task, E->reps, job, nn_dataset_get_info(E->ds), data, &ro, err);
  if (rc == NN_ESCHEMA) err->code = rc = NN_EDATA;
  E->ev = &E->reps[E->task->eval_replica];
  return rc;
}

static int run_report(const report_args *A, nn_error *err) {
  char metrics[4200], kfold[4200], out[4200], jobf[4200], ckpt[4200];
  snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", A->dir);
  snprintf(kfold, sizeof kfold, "%s/kfold.json", A->dir);
  snprintf(jobf, sizeof jobf, "%s/job.toml", A->dir);
  snprintf(out, sizeof out, "%s", A->out ? A->out : "");
  if (!A->out) snprintf(out, sizeof out, "%s/report.html", A->dir);
  if (!is_file(metrics) && !is_file(kfold))
    return nn_error_at(err, NN_EDATA, A->dir, 0, 0, "not a run directory: no metrics.jsonl (or "
                       "kfold.json) in it");
  nn_ckpt_snapshot snap; /* the checkpoint, read once */
  memset(&snap, 0, sizeof snap);
  int rc = pick_checkpoint(A, &snap, ckpt, sizeof ckpt, err);
  if (rc) {
    nn_ckpt_snapshot_free(&snap);
    return rc;
  }
  evalctx E;
  memset(&E, 0, sizeof E);
  E.comm = MPI_COMM_SELF;
  E.N = 1;
  nn_metrics_acc acc;
  memset(&acc, 0, sizeof acc);
  nn_metrics_result res;
  memset(&res, 0, sizeof res);
  nn_eval_misses miss;
  memset(&miss, 0, sizeof miss);
  nn_job *job = nn_calloc(1, sizeof *job);
  const char *data = NULL;
  int evaluated = 0;
  if (!job) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  if (!rc && ckpt[0]) rc = job_of(&snap, ckpt, job, err);
  /* a language model's data is one token stream, evaluated per token by the
   * run itself (its validation records): here its graph only */
  const int can_eval = !A->no_eval && job && job->train.bptt == 0;
  if (!rc && ckpt[0] && (data = eval_data(A, job)) != NULL && !can_eval) {
    rc = graph_only(&E, job, data, err);
  } else if (!rc && ckpt[0] && data) {
    if (!(E.job = nn_calloc(1, sizeof *E.job))) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    if (!rc) rc = nn_evalctx_setup_from(&E, &snap, ckpt, data, 256, err);
    nn_ckpt_snapshot_free(&snap); /* loaded: not held through the evaluation */
    const nn_dataset_info *di = rc ? NULL : nn_dataset_get_info(E.ds);
    if (!rc) {
      nn_metrics_config mc = nn_eval_metrics_config(di, 5);
      rc = nn_metrics_acc_init(&acc, &mc, err);
      if (!rc && mc.num_classes > 0 && !mc.multilabel)
        rc = nn_eval_misses_init(&miss, REPORT_MISSES, nn_shape_count(&E.ev->model.in), 1, err);
      if (!rc) {
        E.ev->misses = miss.cap ? &miss : NULL;
        rc = nn_task_evaluate(E.task, E.reps, E.L, &acc, E.comm, NULL, 0, &res, err);
        E.ev->misses = NULL;
        evaluated = !rc;
      }
    }
  }
  if (!rc) {
    const nn_shape *in = E.ev ? &E.ev->model.in : NULL;
    int pic = in && in->ndim == 3 && (in->dim[0] == 1 || in->dim[0] == 3);
    char status[4400];
    if (ckpt[0])
      snprintf(status, sizeof status, "model and evaluation: %s%s%s", ckpt,
               evaluated ? " on " : "", evaluated ? data : "");
    else
      snprintf(status, sizeof status, "no checkpoint in %s/checkpoints: curves only", A->dir);
    nn_report_in ri = {.dir = A->dir, .title = job->name[0] ? job->name : A->dir,
                       .status = status,
                       .job_path = is_file(jobf) ? jobf : job->source[0] ? job->source : NULL,
                       .reps = E.task ? E.reps : NULL, .nrep = E.task ? E.task->nreplicas : 0,
                       .eval = evaluated ? &res : NULL,
                       .eval_set = data && job->data.test[0] && !strcmp(data, job->data.test)
                                       ? "test" : A->data ? "given" : "validation",
                       .misses = evaluated && miss.cap ? &miss : NULL,
                       .img_c = pic ? in->dim[0] : 0, .img_h = pic ? in->dim[1] : 0,
                       .img_w = pic ? in->dim[2] : 0};
    rc = nn_report_write(&ri, out, err);
    if (!rc) printf("report: %s\n", out);
  }
  nn_eval_misses_free(&miss);
  nn_metrics_result_free(&res);
  nn_metrics_acc_free(&acc);
  nn_evalctx_teardown(&E);
  nn_ckpt_snapshot_free(&snap);
  free(job);
  return rc;
}

int nn_cmd_report(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    usage(stdout);
    return NN_EXIT_OK;
  }
  report_args A;
  memset(&A, 0, sizeof A);
  int code = parse(argc, argv, &A);
  if (code >= 0) return code;
  nn_error err;
  nn_error_clear(&err);
  int provided, rank = 0, N = 1;
  if (nn_cli_mpi_init(&argc, &argv, &provided, &rank, &N, &err) != 0) return nn_cli_fail(&err);
  int rc = rank == 0 ? run_report(&A, &err) : 0;
  code = rc ? nn_cli_fail(&err) : NN_EXIT_OK;
  MPI_Finalize();
  return code;
}
