/* check.c: `nntrain check JOB.toml [--set k=v ...]` and `nntrain check --reference`.
 *
 * Validates a job file without training: the schema (coordinator/job.c), the
 * data sets it names (shard metadata only, no samples are read) and the model
 * (built for the input shape, with a batch of one). Prints a summary of the
 * layers and parameter counts. `--reference` prints docs/job-file.md.
 * Exit codes: 0 valid, 2 usage, 3 job file invalid, 4 data missing or bad. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "cli/graph.h"
#include "coordinator/job.h"
#include "coordinator/run/replica.h"
#include "coordinator/run/task.h"
#include "core/model.h"
#include "worker/dataset.h"

#define MAX_SETS 128

static void check_usage(FILE *f) {
  fprintf(f,
          "usage: nntrain check JOB.toml [--set SECTION.KEY=VALUE ...]\n"
          "       nntrain check --reference\n\n"
          "Validate a job file (see docs/job-file.md) without training: every key, the\n"
          "data sets it names (their metadata; no samples are read) and the model, whose\n"
          "layers and parameter counts are printed.\n\n"
          "options:\n"
          "  --set SECTION.KEY=VALUE  override a job key (repeatable; VALUE in TOML syntax,\n"
          "                           a bare word is a string); model.layers.N.KEY=VALUE\n"
          "                           sets a key of the N-th layer (from 0)\n"
          "  --reference              print the job file reference (docs/job-file.md)\n"
          "  -h, --help               this help\n\n"
          "Exit codes: 0 valid, 2 usage, 3 job file invalid, 4 data missing or invalid.\n");
}

/* What was found for one data set. */
typedef struct data_found {
  int ok;                 /* info is valid */
  int missing;            /* no file matched (only tolerated with model.input_shape) */
  nn_dataset_info info;
} data_found;

/* Open the shards of `pattern` for their metadata. */
static int probe_data(const char *pattern, data_found *d, nn_error *err) {
  nn_dataset *ds = NULL;
  nn_dataset_opts opts = {.cache = 0, .chunk_cache = 1 << 20};
  memset(d, 0, sizeof *d);
  int rc = nn_dataset_open(&ds, pattern, &opts, err);
  if (rc) return rc;
  d->info = *nn_dataset_get_info(ds);
  d->ok = 1;
  nn_dataset_close(ds);
  return 0;
}

static void print_data(const char *what, const char *pattern, const data_found *d) {
  char sh[64];
  if (d->missing) {
    printf("%-6s %s: no files match (not checked)\n", what, pattern);
    return;
  }
  const nn_dataset_info *in = &d->info;
  printf("%-6s %s: %lld samples in %d file%s, sample %s, ", what, pattern, (long long)in->n,
         in->nfiles, in->nfiles == 1 ? "" : "s", nn_shape_str(&in->sample, sh, sizeof sh));
  if (in->num_classes > 0)
    printf("%d classes\n", in->num_classes);
  else if (in->multilabel)
    printf("multi-label, %d labels\n", in->target_dim);
  else
    printf("regression, %d targets\n", in->target_dim);
}

/* The model checks' warnings (coordinator/lint.h). */
static void check_warn(void *user, const char *msg) {
  (void)user;
  fprintf(stderr, "nntrain: warning: %s\n", msg);
}

/* The replicas' graphs (a heading for each when the kind has several: a
 * GAN's generator and discriminator), then the training settings. */
static void print_summary(const nn_job *job, const nn_task_ops *task, const nn_replica *reps) {
  for (int i = 0; i < task->nreplicas; i++) {
    if (!reps[i].have_model) continue;
    if (task->nreplicas > 1) printf("%sreplica %s:\n", i ? "\n" : "", reps[i].name);
    nn_cli_print_graph(stdout, &reps[i].model);
  }
  char accum[48] = ""; /* train.accumulate: micro-batches per optimizer step */
  if (job->train.accumulate > 1)
    snprintf(accum, sizeof accum, " x %d micro-batches per step", job->train.accumulate);
  printf("optimizer: %s, lr %g; %d epochs, global batch %d%s, loss %s\n", job->optimizer.type,
         job->optimizer.lr, job->train.epochs, job->train.batch_size, accum, job->train.loss);
}

/* The command line: the job file and its --set overrides, or --reference.
 * Returns an exit code, or -1 to go on. */
static int parse_args(int argc, char **argv, const char **path, const char **sets, int *nsets) {
  int reference = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
      const char *val = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
      if (!val) return nn_cli_usage_error("check", "--set needs SECTION.KEY=VALUE");
      if (*nsets == MAX_SETS) return nn_cli_usage_error("check", "too many --set options");
      sets[(*nsets)++] = val;
    } else if (!strcmp(a, "--reference")) {
      reference = 1;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error("check", "unknown option '%s'", a);
    } else if (*path) {
      return nn_cli_usage_error("check", "one job file at a time ('%s' and '%s')", *path, a);
    } else {
      *path = a;
    }
  }
  if (reference) {
    if (*path || *nsets) return nn_cli_usage_error("check", "--reference takes no job file");
    nn_job_write_reference(stdout);
    return fflush(stdout) == 0 ? NN_EXIT_OK : NN_EXIT_FAILURE;
  }
  if (!*path) return nn_cli_usage_error("check", "missing the job file");
  return -1;
}

/* The data sets' metadata (printed); train->missing / test->missing when no
 * file matches but model.input_shape makes the model checkable without. */
static int check_data(const nn_job *job, data_found *train, data_found *test, nn_error *err) {
  int rc = probe_data(job->data.train, train, err);
  if (rc == NN_ENOTFOUND && job->model.input_ndim > 0) {
    train->missing = 1;
  } else if (rc) {
    nn_error_prefix(err, "data.train");
    return rc;
  }
  print_data("train", job->data.train, train);
  if (!job->data.test[0]) return 0;
  rc = probe_data(job->data.test, test, err);
  if (rc == NN_ENOTFOUND && train->missing) {
    test->missing = 1;
  } else if (rc) {
    nn_error_prefix(err, "data.test");
    return rc;
  }
  print_data("test", job->data.test, test);
  if (train->ok && test->ok &&
      (!nn_shape_equal(&train->info.sample, &test->info.sample) ||
       train->info.num_classes != test->info.num_classes ||
       train->info.target_dim != test->info.target_dim))
    return nn_error_at(err, NN_EDATA, job->source, 0, 0,
                       "data.test does not match data.train (sample shape, classes or targets)");
  return 0;
}

/* The task's replicas (its build: the model for the input shape the job
 * gives or the data has, held to the kind's rules against the training data;
 * coordinator/run/task.h), each printed. Returns the exit code. */
static int check_model(const nn_job *job, const nn_task_ops *task, const data_found *train,
                       nn_replica *reps, nn_error *err) {
  nn_replica_opts ro = {.train = 0, .max_batch = 1, .lint = 1, .warn = check_warn};
  int rc = nn_task_build(task, reps, job, train->ok ? &train->info : NULL, job->source, &ro, err);
  if (rc == NN_ESCHEMA && reps[task->eval_replica].have_model) { /* built: the data disagrees */
    printf("\n");
    print_summary(job, task, reps);
    return nn_cli_fail(err);
  }
  if (rc) {
    nn_cli_fail(err);
    return rc == NN_ENOMEM ? NN_EXIT_FAILURE : NN_EXIT_JOB;
  }
  printf("\n");
  print_summary(job, task, reps);
  return NN_EXIT_OK;
}

int nn_cmd_check(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    check_usage(stdout);
    return NN_EXIT_OK;
  }
  const char *path = NULL, *sets[MAX_SETS];
  int nsets = 0, code = parse_args(argc, argv, &path, sets, &nsets);
  if (code >= 0) return code;
  nn_error err;
  nn_error_clear(&err);
  nn_replica reps[NN_TASK_MAX_REPLICAS];
  memset(reps, 0, sizeof reps);
  data_found train, test;
  memset(&train, 0, sizeof train);
  memset(&test, 0, sizeof test);
  nn_job *job = nn_calloc(1, sizeof *job);
  int rc = job ? nn_job_load(job, path, sets, nsets, &err)
               : nn_error_set(&err, NN_ENOMEM, "out of memory");
  const nn_task_ops *task;
  if (rc) { /* an unreadable job file is a bad job, not bad data */
    nn_cli_fail(&err);
    code = rc == NN_ENOMEM ? NN_EXIT_FAILURE : NN_EXIT_JOB;
  } else if (nn_task_for_job(job, &task, &err) != 0) {
    code = nn_cli_fail(&err);
  } else {
    printf("job    %s (%s): valid\n", job->name, job->source);
    if (check_data(job, &train, &test, &err) != 0) code = nn_cli_fail(&err);
    else code = check_model(job, task, &train, reps, &err);
  }
  for (int i = 0; i < NN_TASK_MAX_REPLICAS; i++) nn_replica_free(&reps[i]);
  free(job);
  return code;
}
