/* graph_cmd.c: `nntrain graph JOB.toml|CKPT.h5 --out FILE.svg|.png|.dot`.
 *
 * The model as a picture, drawn in-process with Graphviz's C library (cgraph
 * builds the graph, gvc lays it out with `dot` and renders it): one node per
 * layer (name, type, output shape, parameter count) plus one for the model's
 * input, an edge for every input a layer reads (l->src: branches, merges, a
 * residual block's add), and one cluster per replica when the task kind has
 * several (a GAN's generator and discriminator). .dot is written as text by
 * cgraph (no layout); .svg and .png go through gvc.
 *
 * The model is built as `nntrain check` builds it (the data's shape or
 * model.input_shape), or from a checkpoint's job spec (as `sample` and
 * `dream` read it). Exit codes: README.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "coordinator/modelgraph.h"
#include "coordinator/run/replica.h"
#include "coordinator/run/task.h"
#include "core/mem.h"
#include "core/model.h"
#include "worker/dataset.h"

#define MAX_SETS 128

static void graph_usage(FILE *f) {
  fprintf(f,
          "usage: nntrain graph JOB.toml|CKPT.h5 --out FILE.svg|FILE.png|FILE.dot\n"
          "                     [--data GLOB] [--set SECTION.KEY=VALUE ...]\n\n"
          "Draw the model as a graph with Graphviz: a node per layer (name, type, output\n"
          "shape, parameters), an edge per input, a cluster per replica (GAN). The model\n"
          "is built for the data's sample shape (or model.input_shape), as 'check' does.\n"
          "A checkpoint (.h5) holds its job, so no job file is needed.\n\n"
          "options:\n"
          "  --out FILE               the output: .dot (Graphviz text, no layout), .svg or .png\n"
          "  --data GLOB              the data whose samples set the input shape (default:\n"
          "                           the job's data.train; unused with model.input_shape)\n"
          "  --set SECTION.KEY=VALUE  override a job key (job files only; repeatable)\n"
          "  -h, --help               this help\n\n"
          "Exit codes: 0 ok, 1 internal error, 2 usage, 3 job file invalid, 4 data missing\n"
          "or invalid or FILE not writable, 5 checkpoint invalid.\n");
}

typedef struct graph_args {
  const char *src, *out, *data, *format; /* format: "dot", "svg" or "png" */
  const char *sets[MAX_SETS];
  int nsets, ckpt;
} graph_args;

static int ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && !strcmp(s + n - k, suf);
}

static int parse_args(int argc, char **argv, graph_args *A) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **dst = NULL;
    const char *what = NULL;
    if (!strcmp(a, "--out") || !strncmp(a, "--out=", 6)) dst = &A->out, what = "--out";
    else if (!strcmp(a, "--data") || !strncmp(a, "--data=", 7)) dst = &A->data, what = "--data";
    else if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) what = "--set";
    if (what) {
      size_t k = strlen(what);
      const char *val = a[k] == '=' ? a + k + 1 : (i + 1 < argc ? argv[++i] : NULL);
      if (!val || !*val) return nn_cli_usage_error("graph", "%s needs a value", what);
      if (dst) {
        *dst = val;
      } else {
        if (A->nsets == MAX_SETS) return nn_cli_usage_error("graph", "too many --set options");
        A->sets[A->nsets++] = val;
      }
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error("graph", "unknown option '%s'", a);
    } else if (A->src) {
      return nn_cli_usage_error("graph", "one model at a time ('%s' and '%s')", A->src, a);
    } else {
      A->src = a;
    }
  }
  if (!A->src) return nn_cli_usage_error("graph", "missing the job file or checkpoint");
  if (!A->out) return nn_cli_usage_error("graph", "missing --out FILE.svg|.png|.dot");
  if (ends_with(A->out, ".dot") || ends_with(A->out, ".gv")) A->format = "dot";
  else if (ends_with(A->out, ".svg")) A->format = "svg";
  else if (ends_with(A->out, ".png")) A->format = "png";
  else
    return nn_cli_usage_error("graph", "--out '%s': unknown extension (expected .svg, .png or "
                              ".dot)", A->out);
  A->ckpt = ends_with(A->src, ".h5");
  if (A->ckpt && A->nsets)
    return nn_cli_usage_error("graph", "--set applies to job files, not to checkpoint '%s'",
                              A->src);
  return -1;
}

/* The job: from the job file (with --set), or the checkpoint's spec. */
static int load_job(const graph_args *A, nn_job *job, nn_error *err) {
  if (!A->ckpt) return nn_job_load(job, A->src, A->sets, A->nsets, err);
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  int rc = nn_ckpt_read(A->src, &s, err);
  if (!rc && (rc = nn_job_unpack(job, s.spec, s.spec_len, err)) != 0 && rc != NN_ENOMEM) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    rc = nn_error_at(err, NN_ECKPT, A->src, 0, 0, "its job spec does not decode: %s", why);
  }
  nn_ckpt_snapshot_free(&s);
  return rc;
}

/* The replicas, built for model.input_shape, else the data's samples. */
static int build(const graph_args *A, const nn_job *job, const nn_task_ops *task,
                 nn_replica *reps, nn_error *err) {
  nn_dataset_info info, *di = NULL;
  const char *where = job->source;
  if (job->model.input_ndim == 0 || A->data) {
    const char *glob = A->data ? A->data : job->data.train;
    nn_dataset *ds = NULL;
    nn_dataset_opts opts = {.cache = 0, .chunk_cache = 1 << 20};
    if (!glob[0])
      return nn_error_at(err, NN_EDATA, A->src, 0, 0, "no data.train and no model.input_shape: "
                         "give --data GLOB for the input shape");
    int rc = nn_dataset_open(&ds, glob, &opts, err);
    if (rc) {
      if (!A->data) nn_error_prefix(err, "data.train");
      return rc;
    }
    info = *nn_dataset_get_info(ds);
    nn_dataset_close(ds);
    di = &info;
    where = glob;
  }
  nn_replica_opts ro = {.train = 0, .max_batch = 1, .lint = 0};
  int rc = nn_task_build(task, reps, job, di, where, &ro, err);
  /* a model that does not build: the job's fault (as `check` says), or for a
   * checkpoint, the data's given with --data, else the checkpoint's */
  if (rc && rc != NN_ENOMEM)
    err->code = rc = !A->ckpt ? NN_ESCHEMA : A->data ? NN_EDATA : NN_ECKPT;
  return rc;
}

/* The graph of every built replica, written as A->format to A->out. */
static int write_graph(const graph_args *A, const nn_job *job, const nn_task_ops *task,
                       const nn_replica *reps, nn_error *err) {
  return nn_modelgraph_write(job->name, reps, task->nreplicas, A->format, A->out, err);
}

int nn_cmd_graph(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    graph_usage(stdout);
    return NN_EXIT_OK;
  }
  graph_args A;
  memset(&A, 0, sizeof A);
  int code = parse_args(argc, argv, &A);
  if (code >= 0) return code;
  nn_error err;
  nn_error_clear(&err);
  nn_replica reps[NN_TASK_MAX_REPLICAS];
  memset(reps, 0, sizeof reps);
  nn_job *job = nn_calloc(1, sizeof *job);
  const nn_task_ops *task = NULL;
  int rc = job ? load_job(&A, job, &err) : nn_error_set(&err, NN_ENOMEM, "out of memory");
  if (rc) {
    nn_cli_fail(&err);
    code = rc == NN_ENOMEM ? NN_EXIT_FAILURE : A.ckpt ? nn_exit_code(rc) : NN_EXIT_JOB;
  } else if (nn_task_for_job(job, &task, &err) != 0) {
    code = A.ckpt ? (err.code = NN_ECKPT, nn_cli_fail(&err)) : nn_cli_fail(&err);
  } else if ((rc = build(&A, job, task, reps, &err)) != 0) {
    nn_cli_fail(&err);
    code = rc == NN_ENOMEM ? NN_EXIT_FAILURE : nn_exit_code(rc);
  } else if ((rc = write_graph(&A, job, task, reps, &err)) != 0) {
    code = nn_cli_fail(&err);
  } else {
    int n = 0;
    for (int i = 0; i < task->nreplicas; i++) n += reps[i].have_model ? reps[i].model.nlayers : 0;
    printf("graph %s: %d layers -> %s\n", A.src, n, A.out);
    code = NN_EXIT_OK;
  }
  for (int i = 0; i < NN_TASK_MAX_REPLICAS; i++) nn_replica_free(&reps[i]);
  free(job);
  return code;
}
