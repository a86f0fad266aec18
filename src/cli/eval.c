/* eval.c: `nntrain eval CKPT.h5 DATA` and `nntrain predict CKPT.h5 DATA --out FILE.csv`.
 *
 * A checkpoint is self-describing: it holds the job spec, so these commands
 * need no job file. Rank 0 reads and verifies the checkpoint and broadcasts
 * the spec and the parameters; every rank builds the model and evaluates its
 * slice of the data (the same contiguous slices as training); rank 0 sums the
 * figures (eval) or gathers the predictions in data order and writes them
 * (predict). Runs on one rank or under mpirun. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "core/loss.h"
#include "core/metrics.h"
#include "core/model.h"
#include "worker/agree.h"
#include "worker/dataset.h"
#include "worker/loader.h"
#include "worker/step.h"

typedef struct evalctx {
  MPI_Comm comm;
  int rank, N;
  nn_job *job;
  nn_dataset *ds;
  nn_loader *L;
  nn_model model;
  int have_model;
  nn_stepper st;
  int have_stepper;
} evalctx;


/* Read the checkpoint (rank 0), share spec and parameters, build the model
 * for the data's samples, open the data with a loader over all of it. */
static int setup(evalctx *E, const char *ckpt, const char *data, int batch, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  int rc = 0;
  long long len = 0;
  if (E->rank == 0) {
    rc = nn_ckpt_read(ckpt, &s, err);
    if (!rc) len = (long long)s.spec_len;
  }
  if ((rc = nn_agree(E->comm, rc, err)) != 0) goto out;
  MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, E->comm);
  uint8_t *spec = E->rank == 0 ? s.spec : malloc((size_t)len + 1);
  if (!spec) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  } else {
    MPI_Bcast(spec, (int)len, MPI_BYTE, 0, E->comm);
    rc = nn_job_unpack(E->job, spec, (size_t)len, err);
    if (rc) rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "its job spec does not decode: %s",
                             err->msg);
    if (E->rank != 0) free(spec);
  }
  if (!rc) rc = nn_dataset_open(&E->ds, data, NULL, err);
  if (!rc) {
    nn_loader_cfg lc = {.seed = (uint64_t)E->job->train.seed, .rank = E->rank, .nranks = E->N,
                        .batch_size = batch * E->N, .shuffle = 0, .prefetch = 2,
                        .normalize = E->job->data.normalize};
    rc = nn_loader_create(&E->L, E->ds, &lc, err);
  }
  if (!rc) {
    nn_shape in = nn_dataset_get_info(E->ds)->sample;
    if (E->job->model.input_ndim > 0) {
      nn_shape want = {.ndim = E->job->model.input_ndim};
      for (int i = 0; i < want.ndim; i++) want.dim[i] = E->job->model.input_shape[i];
      if (nn_shape_count(&want) != nn_shape_count(&in)) {
        char a[64], b[64];
        rc = nn_error_at(err, NN_ESHAPE, data, 0, 0,
                         "samples are %s but the checkpoint's model takes %s",
                         nn_shape_str(&in, b, sizeof b), nn_shape_str(&want, a, sizeof a));
      }
      in = want;
    }
    if (!rc) rc = nn_model_build(&E->model, &in, E->job->model.layers, E->job->model.nlayers,
                                 nn_loader_max_slice(E->L), err);
    E->have_model = !rc;
  }
  if (!rc && E->rank == 0) {
    int ri = nn_ckpt_find_replica(&s, "model");
    const nn_ckpt_replica *rp = ri >= 0 ? &s.rep[ri] : NULL;
    int ok = rp && rp->nparams == E->model.nparams && rp->nbuffers == E->model.nbuffers &&
             rp->ntensors == E->model.ntensors;
    for (int i = 0; ok && i < E->model.ntensors; i++)
      ok = nn_shape_equal(&rp->tensors[i].shape, &E->model.tensors[i].shape);
    if (!rp)
      rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "no replica called 'model' in the checkpoint");
    else if (!ok)
      rc = nn_error_at(err, NN_ESHAPE, data, 0, 0,
                       "the data's samples do not fit the checkpoint's model (%zu parameters "
                       "stored, %zu for these samples)", rp->nparams, E->model.nparams);
    else {
      memcpy(E->model.params, rp->params, rp->nparams * sizeof(float));
      if (rp->nbuffers) memcpy(E->model.buffers, rp->buffers, rp->nbuffers * sizeof(float));
    }
  }
  if (!rc) {
    const nn_dataset_info *di = nn_dataset_get_info(E->ds);
    int k = (int)nn_shape_count(&E->model.out);
    if (di->num_classes > 0 && k != di->num_classes)
      rc = nn_error_at(err, NN_EDATA, data, 0, 0, "the data has %d classes, the model %d outputs",
                       di->num_classes, k);
    if (di->num_classes == 0 && k != di->target_dim)
      rc = nn_error_at(err, NN_EDATA, data, 0, 0, "the data has %d targets, the model %d outputs",
                       di->target_dim, k);
  }
  if (!rc) {
    rc = nn_stepper_init(&E->st, &E->model, NULL, NULL, nn_loss_parse(E->job->train.loss), err);
    E->have_stepper = !rc;
  }
  rc = nn_agree(E->comm, rc, err);
  if (!rc) {
    MPI_Bcast(E->model.params, (int)E->model.nparams, MPI_FLOAT, 0, E->comm);
    if (E->model.nbuffers)
      MPI_Bcast(E->model.buffers, (int)E->model.nbuffers, MPI_FLOAT, 0, E->comm);
  }
out:
  nn_ckpt_snapshot_free(&s);
  return rc;
}

static void teardown(evalctx *E) {
  if (E->have_stepper) nn_stepper_free(&E->st);
  if (E->have_model) nn_model_free(&E->model);
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

static int init_mpi(int *argc, char ***argv, evalctx *E) {
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  int provided;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
    fprintf(stderr, "nntrain: cannot initialize MPI\n");
    return NN_EXIT_COMM;
  }
  E->comm = MPI_COMM_WORLD;
  MPI_Comm_rank(E->comm, &E->rank);
  MPI_Comm_size(E->comm, &E->N);
  E->job = calloc(1, sizeof *E->job);
  return E->job ? 0 : NN_EXIT_FAILURE;
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
  if ((code = init_mpi(&argc, &argv, &E)) != 0) {
    MPI_Finalize();
    return code;
  }
  nn_error err;
  nn_error_clear(&err);
  nn_metrics_acc acc;
  memset(&acc, 0, sizeof acc);
  nn_metrics_result res;
  memset(&res, 0, sizeof res);
  int rc = setup(&E, ckpt, data, batch, &err);
  if (!rc) {
    const nn_dataset_info *di = nn_dataset_get_info(E.ds);
    nn_metrics_config mc = {.num_classes = di->num_classes, .target_dim = di->target_dim};
    if (di->num_classes > 5) {
      mc.ntopk = 1;
      mc.topk[0] = 5;
    }
    rc = nn_metrics_acc_init(&acc, &mc, &err);
  }
  if (!rc) rc = nn_loader_start(E.L, 0, 0, &err);
  nn_run_ctx ctx = {.training = 0};
  const nn_batch *b;
  while (!rc && (rc = nn_loader_next(E.L, &b, &err)) == 0 && b) {
    if (b->n == 0) continue;
    ctx.sample0 = b->sample0;
    const float *out = nn_model_forward(&E.model, b->x, b->n, &ctx);
    double l = nn_step_loss(&E.st, b, out);
    rc = b->labels ? nn_metrics_add_classification(&acc, out, b->labels, b->n, l, &err)
                   : nn_metrics_add_regression(&acc, out, b->targets, b->n, l, &err);
  }
  rc = nn_agree(E.comm, rc, &err);
  if (!rc) {
    MPI_Allreduce(MPI_IN_PLACE, acc.data, (int)acc.len, MPI_DOUBLE, MPI_SUM, E.comm);
    if (E.rank == 0) {
      rc = nn_metrics_finalize(&acc, &res, &err);
      if (!rc) {
        printf("checkpoint %s, data %s: %.0f samples\n", ckpt, data, res.count);
        rc = nn_metrics_report(stdout, &res, NULL, &err);
      }
    }
  }
  if (rc && E.rank == 0) code = nn_cli_fail(&err);
  else code = rc ? nn_exit_code(rc) : NN_EXIT_OK;
  nn_metrics_result_free(&res);
  nn_metrics_acc_free(&acc);
  teardown(&E);
  MPI_Finalize();
  return code;
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
  if ((code = init_mpi(&argc, &argv, &E)) != 0) {
    MPI_Finalize();
    return code;
  }
  nn_error err;
  nn_error_clear(&err);
  FILE *f = NULL;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", outp);
  float *all = NULL, *probs = NULL;
  int32_t *labs = NULL;
  int *counts = NULL, *displs = NULL;
  int rc = setup(&E, ckpt, data, batch, &err);
  const nn_dataset_info *di = rc ? NULL : nn_dataset_get_info(E.ds);
  int k = rc ? 0 : (int)nn_shape_count(&E.model.out);
  int cls = di && di->num_classes > 0;
  if (!rc) {
    int gmax = batch * E.N;
    all = malloc(sizeof(float) * (size_t)gmax * (size_t)k + 1);
    probs = malloc(sizeof(float) * (size_t)batch * (size_t)k + 1);
    labs = malloc(sizeof(int32_t) * (size_t)gmax + 1);
    counts = malloc(sizeof(int) * (size_t)E.N * 2);
    displs = malloc(sizeof(int) * (size_t)E.N * 2);
    if (!all || !probs || !labs || !counts || !displs) rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
  }
  if (!rc && E.rank == 0) {
    f = fopen(tmp, "w");
    if (!f) rc = nn_error_at(&err, NN_EIO, tmp, 0, 0, "cannot create");
  }
  rc = nn_agree(E.comm, rc, &err);
  if (!rc && E.rank == 0) {
    fprintf(f, "index");
    if (cls) {
      fprintf(f, ",label,pred");
      for (int j = 0; j < k; j++) fprintf(f, ",p%d", j);
    } else {
      for (int j = 0; j < k; j++) fprintf(f, ",out%d", j);
    }
    fprintf(f, "\n");
  }
  if (!rc) rc = nn_loader_start(E.L, 0, 0, &err);
  nn_run_ctx ctx = {.training = 0};
  const nn_batch *b;
  int64_t index = 0;
  while (!rc) {
    rc = nn_loader_next(E.L, &b, &err);
    int more = !rc && b;
    int all_more = 0;
    MPI_Allreduce(&more, &all_more, 1, MPI_INT, MPI_MIN, E.comm);
    if (!all_more) break;
    const float *out = NULL;
    if (b->n > 0) {
      ctx.sample0 = b->sample0;
      out = nn_model_forward(&E.model, b->x, b->n, &ctx);
      if (cls) nn_softmax_rows(out, probs, b->n, k);
      else memcpy(probs, out, sizeof(float) * (size_t)b->n * (size_t)k);
    }
    int n = b->n;
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, E.comm);
    if (E.rank == 0) {
      for (int r = 0, o = 0; r < E.N; r++) {
        displs[E.N + r] = o;
        counts[E.N + r] = counts[r];
        o += counts[r];
        counts[r] *= k;
        displs[r] = displs[E.N + r] * k;
      }
    }
    MPI_Gatherv(probs, n * k, MPI_FLOAT, all, counts, displs, MPI_FLOAT, 0, E.comm);
    if (cls) MPI_Gatherv(b->labels, n, MPI_INT32_T, labs, counts + E.N, displs + E.N,
                         MPI_INT32_T, 0, E.comm);
    if (E.rank == 0) {
      for (int i = 0; i < b->global_n; i++, index++) {
        const float *p = all + (size_t)i * k;
        fprintf(f, "%lld", (long long)index);
        if (cls) fprintf(f, ",%d,%d", labs[i], nn_argmax(p, k));
        for (int j = 0; j < k; j++) fprintf(f, ",%.9g", p[j]);
        fprintf(f, "\n");
      }
    }
  }
  rc = nn_agree(E.comm, rc, &err);
  if (E.rank == 0 && f) {
    int bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = 1;
    if (!rc && bad) rc = nn_error_at(&err, NN_EIO, tmp, 0, 0, "cannot write");
    if (!rc && rename(tmp, outp) != 0) rc = nn_error_at(&err, NN_EIO, outp, 0, 0, "cannot rename");
    if (rc) remove(tmp);
    else printf("wrote %s: %lld rows\n", outp, (long long)index);
  }
  if (rc && E.rank == 0) code = nn_cli_fail(&err);
  else code = rc ? nn_exit_code(rc) : NN_EXIT_OK;
  free(all);
  free(probs);
  free(labs);
  free(counts);
  free(displs);
  teardown(&E);
  MPI_Finalize();
  return code;
}
