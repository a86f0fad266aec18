/* eval.c: `nntrain eval CKPT.h5 DATA` and `nntrain predict CKPT.h5 DATA --out FILE.csv`.
 *
 * A checkpoint is self-describing: it holds the job spec, so these commands
 * need no job file. Rank 0 reads and verifies the checkpoint and broadcasts
 * the spec and the parameters; every rank builds the model and evaluates its
 * slice of the data (the same contiguous slices as training); rank 0 sums the
 * figures (eval) or gathers the predictions in data order and writes them
 * (predict). Runs on one rank or under mpirun. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/evalctx.h"
#include "core/mem.h"
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "coordinator/run/evaluate.h"
#include "coordinator/run/replica.h"
#include "coordinator/run/task.h"
#include "core/loss.h"
#include "core/metrics.h"
#include "core/model.h"
#include "worker/agree.h"
#include "worker/dataset.h"
#include "worker/loader.h"
#include "worker/collective.h"
#include "worker/step.h"

/* Rank 0 read the checkpoint; every rank gets its job spec. */
static int share_spec(evalctx *E, const nn_ckpt_snapshot *s, const char *ckpt, nn_error *err) {
  long long len = E->rank == 0 ? (long long)s->spec_len : 0;
  int rc = nn_bcast_bytes(E->comm, &len, sizeof len, 0, err);
  if (rc) return rc;
  uint8_t *spec = E->rank == 0 ? s->spec : nn_malloc((size_t)len + 1);
  /* agreed: a rank without the buffer must not skip the broadcast alone */
  if ((rc = nn_agree(E->comm, spec ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory"), err)))
    return rc;
  rc = nn_bcast_bytes(E->comm, spec, (size_t)len, 0, err);
  if (!rc && (rc = nn_job_unpack(E->job, spec, (size_t)len, err)) != 0 && rc != NN_ENOMEM) {
    char why[sizeof err->msg]; /* err->msg is rewritten below */
    snprintf(why, sizeof why, "%s", err->msg);
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "its job spec does not decode: %s", why);
  }
  if (E->rank != 0) free(spec);
  return rc;
}

/* The replicas of the checkpoint's task kind for the data's samples, built
 * and checked against the data by the kind's own build (run/task.h), the
 * rules train and check apply; a mismatch is the data's fault here. Rank 0
 * loads every replica's values from the checkpoint (a kind's evaluation may
 * use them all: a GAN's generator makes the images its discriminator sees). */
static int build_model(evalctx *E, const nn_ckpt_snapshot *s, const char *ckpt, const char *data,
                       nn_error *err) {
  if (nn_task_for_job(E->job, &E->task, err) != 0) return nn_error_at(err, NN_ECKPT, ckpt, 0, 0,
                                                                    "%s", err->msg);
  const nn_task_ops *task = E->task;
  nn_replica_opts o = {.train = 0, .max_batch = nn_loader_max_slice(E->L), .comm = E->comm};
  int rc = nn_task_build(task, E->reps, E->job, nn_dataset_get_info(E->ds), data, &o, err);
  if (rc == NN_ESCHEMA) err->code = rc = NN_EDATA;
  E->ev = &E->reps[task->eval_replica];
  if (rc || E->rank != 0) return rc;
  for (int i = 0; i < task->nreplicas; i++) {
    nn_replica *r = &E->reps[i];
    int g = nn_ckpt_find_replica(s, r->name);
    if (g < 0) return nn_replica_check_ckpt(r, s, ckpt, 0, err); /* names the gap */
    if (nn_replica_check_ckpt(r, s, data, 0, err) != 0)
      return nn_error_at(err, NN_ESHAPE, data, 0, 0,
                         "the data's samples do not fit the checkpoint's model (%zu parameters "
                         "stored, %zu for these samples)", s->rep[g].nparams, r->model.nparams);
    nn_replica_load_ckpt(r, s, 0);
  }
  return 0;
}

/* Read the checkpoint (rank 0), share spec and parameters, open the data with
 * a loader over all of it, build the model for the data's samples. */
int nn_evalctx_setup(evalctx *E, const char *ckpt, const char *data, int batch, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  int rc = E->rank == 0 ? nn_ckpt_read(ckpt, &s, err) : 0;
  if ((rc = nn_agree(E->comm, rc, err)) == 0)
    rc = nn_evalctx_setup_from(E, &s, ckpt, data, batch, err);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

int nn_evalctx_setup_from(evalctx *E, const nn_ckpt_snapshot *snap, const char *ckpt,
                          const char *data, int batch, nn_error *err) {
  nn_ckpt_snapshot empty;
  memset(&empty, 0, sizeof empty);
  const nn_ckpt_snapshot *sp = E->rank == 0 ? snap : &empty;
  E->ckpt = ckpt;
  int rc = share_spec(E, sp, ckpt, err);
  if (!rc) rc = nn_dataset_open(&E->ds, data, NULL, err);
  if (!rc) {
    nn_loader_cfg lc = {.seed = (uint64_t)E->job->train.seed, .rank = E->rank, .nranks = E->N,
                        .batch_size = batch * E->N, .shuffle = 0, .prefetch = 2,
                        .normalize = E->job->data.normalize};
    rc = nn_loader_create(&E->L, E->ds, &lc, err);
  }
  if (!rc) rc = build_model(E, sp, ckpt, data, err);
  rc = nn_agree(E->comm, rc, err);
  for (int i = 0; !rc && E->task && i < E->task->nreplicas; i++)
    rc = nn_replica_bcast(&E->reps[i], E->comm, 0, err);
  return rc;
}

void nn_evalctx_teardown(evalctx *E) {
  for (int i = 0; i < NN_TASK_MAX_REPLICAS; i++) nn_replica_free(&E->reps[i]);
  nn_loader_free(E->L);
  nn_dataset_close(E->ds);
  free(E->job);
}

/* Common: flags, MPI, setup. Returns the exit code, or -1 to go on. */
static int start(const char *cmd, int argc, char **argv, const char **ckpt, const char **data,
                 const char **out, int *batch) {
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--out") && out) {
      if (i + 1 >= argc) return nn_cli_usage_error(cmd, "--out needs a FILE");
      *out = argv[++i];
    } else if (!strcmp(a, "--batch")) {
      char *end;
      long v = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
      if (v < 1 || v > 1 << 20 || *end) return nn_cli_usage_error(cmd, "--batch needs a size >= 1");
      *batch = (int)v;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error(cmd, "unknown option '%s'", a);
    } else if (pos == 0) {
      *ckpt = a;
      pos++;
    } else if (pos == 1) {
      *data = a;
      pos++;
    } else {
      return nn_cli_usage_error(cmd, "unexpected argument '%s'", a);
    }
  }
  if (pos < 2) return nn_cli_usage_error(cmd, "needs a checkpoint and a data glob");
  if (out && !*out) return nn_cli_usage_error(cmd, "needs --out FILE.csv");
  return -1;
}

int nn_evalctx_init_mpi(int *argc, char ***argv, evalctx *E) {
  nn_error err;
  nn_error_clear(&err);
  int provided;
  E->comm = MPI_COMM_WORLD;
  if (nn_cli_mpi_init(argc, argv, &provided, &E->rank, &E->N, &err) != 0)
    return nn_cli_fail(&err);
  E->job = nn_calloc(1, sizeof *E->job);
  /* Every rank learns that one had no memory, and rank 0 says it once. */
  int rc = nn_agree(E->comm, E->job ? 0 : nn_error_set(&err, NN_ENOMEM, "out of memory"), &err);
  if (!rc) return 0;
  free(E->job);
  E->job = NULL;
  return E->rank == 0 ? nn_cli_fail(&err) : nn_exit_code(rc);
}

int nn_cmd_eval(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    printf("usage: nntrain eval CKPT.h5 DATA_GLOB [--batch N]\n"
           "       mpirun -np N nntrain eval CKPT.h5 DATA_GLOB\n\n"
           "Evaluate a checkpoint's model on HDF5 shards: loss, accuracy, top-k, per-class\n"
           "precision/recall/F1, macro F1, confusion matrix, ROC AUC (binary); MSE, MAE,\n"
           "R2 for regression. The checkpoint holds the job, so no job file is needed.\n"
           "--batch: samples per rank per batch (default 256).\n");
    return NN_EXIT_OK;
  }
  const char *ckpt = NULL, *data = NULL;
  int batch = 256;
  int code = start("eval", argc, argv, &ckpt, &data, NULL, &batch);
  if (code >= 0) return code;
  evalctx E;
  memset(&E, 0, sizeof E);
  if ((code = nn_evalctx_init_mpi(&argc, &argv, &E)) != 0) {
    MPI_Finalize();
    return code;
  }
  nn_error err;
  nn_error_clear(&err);
  nn_metrics_acc acc;
  memset(&acc, 0, sizeof acc);
  nn_metrics_result res;
  memset(&res, 0, sizeof res);
  int rc = nn_evalctx_setup(&E, ckpt, data, batch, &err);
  if (!rc) {
    nn_metrics_config mc = nn_eval_metrics_config(nn_dataset_get_info(E.ds), 5);
    rc = nn_metrics_acc_init(&acc, &mc, &err);
  }
  rc = nn_agree(E.comm, rc, &err);
  if (!rc) rc = nn_task_evaluate(E.task, E.reps, E.L, &acc, E.comm, NULL, 0, &res, &err);
  rc = nn_agree(E.comm, rc, &err);
  if (!rc && E.rank == 0) {
    printf("checkpoint %s, data %s: %.0f samples\n", ckpt, data, res.count);
    rc = nn_metrics_report(stdout, &res, NULL, &err);
  }
  if (rc && E.rank == 0) code = nn_cli_fail(&err);
  else code = rc ? nn_exit_code(rc) : NN_EXIT_OK;
  nn_metrics_result_free(&res);
  nn_metrics_acc_free(&acc);
  nn_evalctx_teardown(&E);
  MPI_Finalize();
  return code;
}

/* predict's buffers and output: probabilities (or outputs) of this rank's
 * slice, the global batch gathered on rank 0, its labels, the gather counts. */
typedef struct pred {
  float *probs;             /* [batch, k] this rank's rows */
  float *all;               /* [batch * N, k] rank 0: the global batch's rows */
  int32_t *labs;            /* [batch * N] rank 0: their labels */
  int *counts, *displs;     /* [N] gather counts and offsets */
  int k, cls;               /* outputs per sample; 1 for class labels */
  FILE *f;                  /* rank 0: FILE.csv.tmp */
  int64_t index;            /* rows written */
} pred;

static int pred_alloc(pred *P, const evalctx *E, int batch, nn_error *err) {
  const nn_dataset_info *di = nn_dataset_get_info(E->ds);
  if (strcmp(E->task->name, "supervised") != 0) /* outputs that are no per-sample prediction */
    return nn_error_at(err, NN_ECKPT, E->ckpt, 0, 0, "predict writes a supervised model's "
                       "predictions; this checkpoint's train.task is \"%s\" (%s)", E->task->name,
                       !strcmp(E->task->name, "gan") ? "nntrain sample draws its images"
                       : !strcmp(E->task->name, "autoencoder") ? "nntrain encode --layer writes "
                       "any layer's outputs, the reconstructions too" : "use nntrain eval");
  if (di->token_labels || di->stream) /* one CSV row per sample: not for per-token data */
    return nn_error_at(err, NN_EDATA, nn_dataset_file(E->ds, 0), 0, 0, "predict writes one row "
                       "per sample; this data has a label per timestep (use eval for its "
                       "figures)");
  P->k = (int)nn_shape_count(&E->ev->model.out);
  P->cls = di->num_classes > 0;
  size_t gmax = (size_t)batch * (size_t)E->N, k = (size_t)P->k;
  if (gmax * k > INT_MAX) /* MPI_Gatherv counts are int */
    return nn_error_set(err, NN_EUSAGE, "--batch %d on %d ranks with %d outputs is over %d "
                        "values a batch: use a smaller --batch", batch, E->N, P->k, INT_MAX);
  P->all = nn_malloc(sizeof(float) * gmax * k + 1);
  P->probs = nn_malloc(sizeof(float) * (size_t)batch * k + 1);
  P->labs = nn_malloc(sizeof(int32_t) * gmax + 1);
  P->counts = nn_malloc(sizeof(int) * (size_t)E->N);
  P->displs = nn_malloc(sizeof(int) * (size_t)E->N);
  if (!P->all || !P->probs || !P->labs || !P->counts || !P->displs)
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  return 0;
}

static void pred_free(pred *P) {
  free(P->all);
  free(P->probs);
  free(P->labs);
  free(P->counts);
  free(P->displs);
}

/* Rank 0: create FILE.csv.tmp and write the header row. */
static int pred_open(pred *P, const char *tmp, nn_error *err) {
  P->f = fopen(tmp, "w");
  if (!P->f) return nn_error_at(err, NN_EIO, tmp, 0, 0, "cannot create");
  fprintf(P->f, "index");
  if (P->cls) fprintf(P->f, ",label,pred");
  for (int j = 0; j < P->k; j++) fprintf(P->f, P->cls ? ",p%d" : ",out%d", j);
  fprintf(P->f, "\n");
  return 0;
}

int nn_evalctx_gather(evalctx *E, const void *send, int n, int width, MPI_Datatype type,
                      void *recv, int *counts, int *displs, nn_error *err) {
  NN_MPI_RETURN(err, MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, E->comm));
  if (E->rank == 0)
    for (int r = 0, o = 0; r < E->N; o += counts[r], r++) {
      displs[r] = o;
      counts[r] *= width;
    }
  NN_MPI_RETURN(err, MPI_Gatherv(send, n * width, type, recv, counts, displs, type, 0, E->comm));
  return 0;
}

int nn_evalctx_walk(evalctx *E, nn_evalctx_batch_fn each, void *user, nn_error *err) {
  int rc = nn_loader_start(E->L, 0, 0, err);
  nn_run_ctx ctx = {.training = 0, .seed = E->ev->seed};
  const nn_batch *b;
  while (!rc) {
    rc = nn_loader_next(E->L, &b, err);
    int more = !rc && b, all_more = 0;
    int mrc = MPI_Allreduce(&more, &all_more, 1, MPI_INT, MPI_MIN, E->comm);
    if (mrc != MPI_SUCCESS) rc = nn_mpi_fail(mrc, "MPI_Allreduce(more)", __FILE__, __LINE__, err);
    if (rc || !all_more) break;
    const float *out = NULL;
    if (b->n > 0) {
      ctx.sample0 = b->sample0;
      ctx.lengths = b->lengths;
      ctx.carry_in = b->carry_in;
      out = nn_model_forward(&E->ev->model, b->x, b->n, &ctx);
    }
    rc = each(E, b, out, user, err);
  }
  return rc;
}

/* One global batch: this rank's probabilities (softmax for classes) or
 * outputs, gathered with the labels on rank 0 in data order and written as
 * CSV rows. Collective; every MPI call checked. */
static int pred_batch(evalctx *E, const nn_batch *b, const float *out, void *user,
                      nn_error *err) {
  pred *P = user;
  int k = P->k, rc;
  if (out && P->cls) nn_softmax_rows(out, P->probs, b->n, k);
  else if (out) memcpy(P->probs, out, sizeof(float) * (size_t)b->n * (size_t)k);
  if ((rc = nn_evalctx_gather(E, P->probs, b->n, k, MPI_FLOAT, P->all, P->counts, P->displs,
                              err)))
    return rc;
  if (P->cls && (rc = nn_evalctx_gather(E, b->labels, b->n, 1, MPI_INT32_T, P->labs, P->counts,
                                        P->displs, err)))
    return rc;
  if (E->rank != 0) return 0;
  for (int i = 0; i < b->global_n; i++, P->index++) {
    const float *p = P->all + (size_t)i * k;
    fprintf(P->f, "%lld", (long long)P->index);
    if (P->cls) fprintf(P->f, ",%d,%d", P->labs[i], nn_argmax(p, k));
    for (int j = 0; j < k; j++) fprintf(P->f, ",%.9g", p[j]);
    fprintf(P->f, "\n");
  }
  return 0;
}

/* Rank 0: close FILE.csv.tmp and rename it to FILE.csv when all went well,
 * else remove it (a partial file never takes the final name). */
static int pred_close(pred *P, int rc, const char *tmp, const char *outp, nn_error *err) {
  int bad = ferror(P->f) != 0;
  if (fclose(P->f) != 0) bad = 1;
  if (!rc && bad) rc = nn_error_at(err, NN_EIO, tmp, 0, 0, "cannot write");
  if (!rc && rename(tmp, outp) != 0) rc = nn_error_at(err, NN_EIO, outp, 0, 0, "cannot rename");
  if (rc) remove(tmp);
  else printf("wrote %s: %lld rows\n", outp, (long long)P->index);
  return rc;
}

int nn_cmd_predict(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    printf("usage: nntrain predict CKPT.h5 DATA_GLOB --out FILE.csv [--batch N]\n\n"
           "Write one CSV row per sample, in data order: index, label (when the data has\n"
           "labels), predicted class, then the class probabilities p0..p{k-1} (softmax of\n"
           "the model's outputs); for regression: index, then out0..out{T-1}.\n"
           "The file is written as FILE.csv.tmp and renamed when complete.\n");
    return NN_EXIT_OK;
  }
  const char *ckpt = NULL, *data = NULL, *outp = NULL;
  int batch = 256;
  int code = start("predict", argc, argv, &ckpt, &data, &outp, &batch);
  if (code >= 0) return code;
  evalctx E;
  memset(&E, 0, sizeof E);
  if ((code = nn_evalctx_init_mpi(&argc, &argv, &E)) != 0) {
    MPI_Finalize();
    return code;
  }
  nn_error err;
  nn_error_clear(&err);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", outp);
  pred P;
  memset(&P, 0, sizeof P);
  int rc = nn_evalctx_setup(&E, ckpt, data, batch, &err);
  if (!rc) rc = pred_alloc(&P, &E, batch, &err);
  if (!rc && E.rank == 0) rc = pred_open(&P, tmp, &err);
  rc = nn_agree(E.comm, rc, &err);
  if (!rc) rc = nn_evalctx_walk(&E, pred_batch, &P, &err);
  rc = nn_agree(E.comm, rc, &err);
  if (E.rank == 0 && P.f) rc = pred_close(&P, rc, tmp, outp, &err);
  if (rc && E.rank == 0) code = nn_cli_fail(&err);
  else code = rc ? nn_exit_code(rc) : NN_EXIT_OK;
  pred_free(&P);
  nn_evalctx_teardown(&E);
  MPI_Finalize();
  return code;
}
