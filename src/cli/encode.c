/* encode.c: `nntrain encode CKPT.h5 DATA_GLOB --layer NAME --out FILE.h5`:
 * one layer's outputs (an autoencoder's codes, a classifier's features) for
 * every sample of a data set, in data order.
 *
 * The output is an nntrain shard (docs/data-format.md): /features float32
 * [N, layer output shape] in NCHW whatever layout the model kept the layer
 * in, the data's /labels or /targets copied row for row, feature_scale 1,
 * mean 0 and std 1 (the values as the layer wrote them; normalizing leaves
 * them unchanged), split "encode", source naming the checkpoint and layer.
 * So `nntrain inspect` reads it, h5py reads it, and a job can train on it.
 *
 * Under mpirun the ranks split every batch as eval does (cli/evalctx.h),
 * rank 0 gathers each global batch in data order and writes it; the file is
 * written as FILE.h5.tmp and renamed when complete. The model runs unfused
 * (core/model.h nn_model_fuse: a fused layer's own output is never written),
 * which changes results only to float rounding. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/evalctx.h"
#include "core/blocked.h"
#include "core/mem.h"
#include "worker/agree.h"
#include "worker/dataset.h"
#include "worker/loader.h"

typedef struct enc {
  int layer;                /* index of the layer in the model */
  nn_shape shape;           /* its per-sample output */
  int k;                    /* values per sample */
  int T;                    /* target values per sample (regression data), else 0 */
  int cls;                  /* 1: the data has class labels */
  float *rows;              /* [batch, k] this rank's rows, NCHW */
  float *all;               /* [batch * N, k] rank 0: the global batch's rows */
  int32_t *labs;            /* [batch * N] rank 0: their labels */
  float *tgts;              /* [batch * N, T] rank 0: their targets */
  int *counts, *displs;     /* [N] gather work space */
  nn_shard_writer *w;       /* rank 0 */
  int64_t written;
} enc;

/* Flags: CKPT DATA --layer NAME --out FILE [--batch N]. Returns the exit
 * code, or -1 to go on. */
static int parse(int argc, char **argv, const char **ckpt, const char **data, const char **layer,
                 const char **out, int *batch) {
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--out") || !strcmp(a, "--layer")) {
      if (i + 1 >= argc) return nn_cli_usage_error("encode", "%s needs a value", a);
      *(a[2] == 'o' ? out : layer) = argv[++i];
    } else if (!strcmp(a, "--batch")) {
      char *end;
      long v = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
      if (v < 1 || v > 1 << 20 || *end)
        return nn_cli_usage_error("encode", "--batch needs a size >= 1");
      *batch = (int)v;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error("encode", "unknown option '%s'", a);
    } else if (pos < 2) {
      *(pos++ ? data : ckpt) = a;
    } else {
      return nn_cli_usage_error("encode", "unexpected argument '%s'", a);
    }
  }
  if (pos < 2) return nn_cli_usage_error("encode", "needs a checkpoint and a data glob");
  if (!*layer) return nn_cli_usage_error("encode", "needs --layer NAME");
  if (!*out) return nn_cli_usage_error("encode", "needs --out FILE.h5");
  return -1;
}

/* The layer called `name`, or NN_EUSAGE listing the model's layer names. */
static int find_layer(const nn_model *m, const char *name, const char *ckpt, int *idx,
                      nn_error *err) {
  for (int i = 0; i < m->nlayers; i++)
    if (!strcmp(m->layers[i].cfg.name, name)) {
      *idx = i;
      return 0;
    }
  char list[384] = "";
  size_t k = 0;
  for (int i = 0; i < m->nlayers && k < sizeof list; i++)
    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", m->layers[i].cfg.name);
  if (k >= sizeof list) strcpy(list + sizeof list - 5, "...");
  return nn_error_set(err, NN_EUSAGE, "--layer '%s': %s's model has no such layer; its layers "
                      "are %s", name, ckpt, list);
}

/* Buffers, and rank 0's shard for the layer's outputs. */
static int enc_open(enc *P, evalctx *E, const char *ckpt, const char *lname, const char *outp,
                    int batch, nn_error *err) {
  const nn_dataset_info *di = nn_dataset_get_info(E->ds);
  const nn_model *m = &E->ev->model;
  if (di->token_labels || di->stream)
    return nn_error_at(err, NN_EDATA, nn_dataset_file(E->ds, 0), 0, 0, "encode writes one row "
                       "per sample; this data has a label per timestep or is a token stream");
  int rc = find_layer(m, lname, ckpt, &P->layer, err);
  if (rc) return rc;
  P->shape = m->layers[P->layer].out;
  P->k = (int)nn_shape_count(&P->shape);
  P->cls = di->num_classes > 0;
  P->T = P->cls ? 0 : di->target_dim;
  int ch = nn_shard_channels(&P->shape);
  char shp[64];
  if (ch > NN_SHARD_MAX_CHANNELS)
    return nn_error_set(err, NN_EUSAGE, "--layer '%s': its output %s has %d statistics "
                        "channels, more than the %d a shard holds", lname,
                        nn_shape_str(&P->shape, shp, sizeof shp), ch, NN_SHARD_MAX_CHANNELS);
  size_t gmax = (size_t)batch * (size_t)E->N, k = (size_t)P->k, T = (size_t)P->T;
  if (gmax * (k > T ? k : T) > INT_MAX) /* MPI_Gatherv counts are int */
    return nn_error_set(err, NN_EUSAGE, "--batch %d on %d ranks with %d values a sample is over "
                        "%d values a batch: use a smaller --batch", batch, E->N, P->k, INT_MAX);
  P->rows = nn_malloc(sizeof(float) * (size_t)batch * k + 1);
  P->all = nn_malloc(sizeof(float) * gmax * k + 1);
  P->labs = nn_malloc(sizeof(int32_t) * gmax + 1);
  P->tgts = nn_malloc(sizeof(float) * gmax * T + 1);
  P->counts = nn_malloc(sizeof(int) * (size_t)E->N);
  P->displs = nn_malloc(sizeof(int) * (size_t)E->N);
  double *mean = nn_calloc((size_t)ch, sizeof(double)), *sd = nn_malloc(sizeof(double) * (size_t)ch);
  if (!P->rows || !P->all || !P->labs || !P->tgts || !P->counts || !P->displs || !mean || !sd)
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  if (!rc && E->rank == 0) {
    for (int c = 0; c < ch; c++) sd[c] = 1.0;
    char source[NN_PATH_MAX + 2 * NN_NAME_MAX];
    snprintf(source, sizeof source, "nntrain encode %s --layer %s", ckpt, lname);
    nn_shard_meta meta = {.sample = P->shape, .ftype = NN_FEAT_F32,
                          .num_classes = di->num_classes, .target_dim = P->T,
                          .feature_scale = 1.0, .channels = ch, .mean = mean, .std = sd,
                          .split = "encode", .source = source, .shard_index = 0,
                          .shard_count = 1};
    rc = nn_shard_create(&P->w, outp, &meta, err);
  }
  free(mean);
  free(sd);
  return rc;
}

static void enc_free(enc *P) {
  free(P->rows);
  free(P->all);
  free(P->labs);
  free(P->tgts);
  free(P->counts);
  free(P->displs);
}

/* This rank's rows of the layer's output after a forward of n samples, in
 * NCHW: a blocked output (core/model.h nn_model_layouts) is converted. */
static void take_rows(enc *P, const nn_model *m, int n) {
  const float *src = m->act + m->act_off[P->layer];
  const nn_shape *s = &P->shape;
  if (!m->blocked[P->layer]) {
    memcpy(P->rows, src, sizeof(float) * (size_t)n * (size_t)P->k);
    return;
  }
  for (int i = 0; i < n; i++) /* blocked outputs are [C, H, W] with C % 16 == 0 */
    nn_blk_to_nchw(src + (size_t)i * P->k, P->rows + (size_t)i * P->k, s->dim[0], s->dim[1],
                   s->dim[2]);
}

/* One global batch: this rank's rows of the layer, gathered with the labels
 * (or targets) on rank 0 in data order and appended to the shard.
 * Collective; every MPI call checked. */
static int enc_batch(evalctx *E, const nn_batch *b, const float *out, void *user,
                     nn_error *err) {
  enc *P = user;
  int rc;
  if (out) take_rows(P, &E->ev->model, b->n);
  if ((rc = nn_evalctx_gather(E, P->rows, b->n, P->k, MPI_FLOAT, P->all, P->counts, P->displs,
                              err)))
    return rc;
  if (P->cls)
    rc = nn_evalctx_gather(E, b->labels, b->n, 1, MPI_INT32_T, P->labs, P->counts, P->displs,
                           err);
  else
    rc = nn_evalctx_gather(E, b->targets, b->n, P->T, MPI_FLOAT, P->tgts, P->counts, P->displs,
                           err);
  if (rc || E->rank != 0) return rc;
  P->written += b->global_n;
  return nn_shard_append(P->w, P->all, P->cls ? P->labs : NULL, P->cls ? NULL : P->tgts,
                         b->global_n, err);
}

static int usage(void) {
  printf("usage: nntrain encode CKPT.h5 DATA_GLOB --layer NAME --out FILE.h5 [--batch N]\n"
         "       mpirun -np N nntrain encode CKPT.h5 DATA_GLOB --layer NAME --out FILE.h5\n\n"
         "Write layer NAME's output (e.g. an autoencoder's code) for every sample of the\n"
         "data, in data order, as an nntrain shard: /features float32 [N, layer shape]\n"
         "(NCHW), and the data's /labels or /targets. A layer with an activation key has\n"
         "its activation as the next layer, NAME_ACTIVATION: name that one for the\n"
         "activated values. The file is written as FILE.h5.tmp and renamed when complete.\n"
         "--batch: samples per rank per batch (default 256).\n");
  return NN_EXIT_OK;
}

int nn_cmd_encode(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) return usage();
  const char *ckpt = NULL, *data = NULL, *layer = NULL, *outp = NULL;
  int batch = 256;
  int code = parse(argc, argv, &ckpt, &data, &layer, &outp, &batch);
  if (code >= 0) return code;
  evalctx E;
  memset(&E, 0, sizeof E);
  if ((code = nn_evalctx_init_mpi(&argc, &argv, &E)) != 0) {
    MPI_Finalize();
    return code;
  }
  nn_error err;
  nn_error_clear(&err);
  enc P;
  memset(&P, 0, sizeof P);
  int rc = nn_evalctx_setup(&E, ckpt, data, batch, &err);
  if (!rc) {
    nn_model_fuse(&E.ev->model, 0); /* every layer writes its own output */
    rc = enc_open(&P, &E, ckpt, layer, outp, batch, &err);
  }
  rc = nn_agree(E.comm, rc, &err);
  if (!rc) rc = nn_evalctx_walk(&E, enc_batch, &P, &err);
  rc = nn_agree(E.comm, rc, &err);
  if (E.rank == 0 && P.w) {
    if (rc) nn_shard_abort(P.w); /* a partial file never takes the final name */
    else if ((rc = nn_shard_close(P.w, &err)) == 0)
      printf("wrote %s: %lld rows of layer '%s' %s\n", outp, (long long)P.written, layer,
             nn_shape_str(&P.shape, (char[64]){0}, 64));
  }
  if (rc && E.rank == 0) code = nn_cli_fail(&err);
  else code = rc ? nn_exit_code(rc) : NN_EXIT_OK;
  enc_free(&P);
  nn_evalctx_teardown(&E);
  MPI_Finalize();
  return code;
}
