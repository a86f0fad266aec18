/* embedding.c: a lookup table from token ids to vectors, as PyTorch's
 * nn.Embedding.
 *
 * Input [T] per sample: floats holding integer token ids (the data layout of
 * core/layer.h has only floats). Output [T, D]: row t is weight[id_t].
 * Parameter weight [num_embeddings, embedding_dim] (PyTorch's name and
 * shape), initialised N(0, 1) as PyTorch does (NN_INIT_NORMAL_STD, std 1).
 *
 * Ids. An id is the nearest integer to the float (ids are exact integers in
 * float; rounding instead of truncating keeps an id that arithmetic nudged
 * to 2.9999998 at 3). The data reader validates ids against the vocabulary
 * (docs/data-format.md), so an id outside [0, num_embeddings) (or NaN) only
 * reaches this layer through a bug upstream; it must not read or write out
 * of bounds, so it is treated as "no token": its output row is zeros and it
 * adds no gradient. No row of the table is touched by it.
 *
 * padding_idx (default -1: none; unlike PyTorch, a negative value does not
 * count from the end). That row is initialised to zeros (nn_param_spec
 * zero_row) and receives no gradient from the lookup, as in PyTorch: its
 * output is the row's value (zeros unless something loaded other values, e.g.
 * [init] from), used like any other. An l1 / l2 penalty adds nothing to a zero
 * row; on a row loaded with non-zero values it does act (core/regularize.c).
 *
 * Backward: weight's gradient is a scatter-add of dy rows; dx does not exist
 * (ids are integers), so a requested dx is written as zeros. The layer
 * ignores ctx->lengths: timesteps past a sample's length look up whatever id
 * the padding holds and pass back whatever gradient reaches them (zero when
 * the layers above mask, as the per-timestep loss does). */
#include <stddef.h>
#include <string.h>

#include "core/layer.h"

/* embedding's own options (nn_layer_cfg.opts) */
typedef struct embedding_opts {
  int num_embeddings; /* vocabulary size: ids in [0, num_embeddings) */
  int embedding_dim;  /* D: floats per token */
  int padding_idx;    /* -1: none; else the id whose row is zeros and gets no gradient */
} embedding_opts;
NN_LAYER_OPTS_FIT(embedding_opts);

static const embedding_opts *opts(const nn_layer *l) {
  return NN_LAYER_OPTS(&l->cfg, const embedding_opts);
}

#define EMB__MAX (1 << 30)

static const nn_key embedding_keys[] = {
    {"num_embeddings", NN_KEY_INT, offsetof(embedding_opts, num_embeddings), sizeof(int), 1,
     EMB__MAX, NULL, NULL, NN_KEY_REQUIRED,
     "vocabulary size: the input holds token ids in [0, num_embeddings)", 0},
    {"embedding_dim", NN_KEY_INT, offsetof(embedding_opts, embedding_dim), sizeof(int), 1,
     1 << 24, NULL, NULL, NN_KEY_REQUIRED, "floats per token (the output is [T, embedding_dim])",
     0},
    {"padding_idx", NN_KEY_INT, offsetof(embedding_opts, padding_idx), sizeof(int), -1,
     EMB__MAX, "-1", NULL, 0,
     "id whose row starts at zero and gets no gradient (PyTorch's padding_idx); -1: none", 0},
    {0},
};

static int embedding_build(nn_layer *l, nn_error *err) {
  const embedding_opts *o = opts(l);
  char shp[64];
  if (l->in.ndim != 1)
    return nn_error_set(err, NN_ESHAPE, "expects a [T] input of token ids, got %s",
                        nn_shape_str(&l->in, shp, sizeof shp));
  if (o->num_embeddings < 1)
    return nn_error_set(err, NN_ESCHEMA, "num_embeddings must be >= 1, got %d",
                        o->num_embeddings);
  if (o->embedding_dim < 1)
    return nn_error_set(err, NN_ESCHEMA, "embedding_dim must be >= 1, got %d", o->embedding_dim);
  if (o->padding_idx < -1 || o->padding_idx >= o->num_embeddings)
    return nn_error_set(err, NN_ESCHEMA, "padding_idx must be -1 (none) or in [0, %d), got %d",
                        o->num_embeddings, o->padding_idx);
  l->out.ndim = 2;
  l->out.dim[0] = l->in.dim[0];
  l->out.dim[1] = o->embedding_dim;
  nn_shape ws = {2, {o->num_embeddings, o->embedding_dim}};
  int rc = nn_layer_add_param(l, "weight", &ws, NN_INIT_NORMAL_STD, o->embedding_dim,
                              o->embedding_dim, err);
  if (rc) return rc;
  l->pspec[0].value = 1.0f;                   /* std */
  l->pspec[0].zero_row = o->padding_idx + 1; /* 0 when none */
  return 0;
}

/* The row of id v in a table of `vocab` rows, or -1 for an id outside it. */
static inline int token_row(float v, int vocab) {
  if (!(v > -0.5f && v < (float)vocab)) return -1; /* also NaN */
  int id = (int)(v + 0.5f);
  return id < vocab ? id : -1;
}

/* x [n, T] ids -> y [n, T, D]: y[s][t] = weight[x[s][t]]. */
static void embedding_forward(nn_layer *l, const float *x, float *y, int n,
                              const nn_run_ctx *ctx) {
  int vocab = l->pspec[0].shape.dim[0], d = l->pspec[0].shape.dim[1];
  size_t tokens = (size_t)n * (size_t)l->in.dim[0];
  const float *w = l->param[0];
  for (size_t i = 0; i < tokens; i++) {
    int id = token_row(x[i], vocab);
    float *dst = y + i * (size_t)d;
    if (id < 0)
      memset(dst, 0, sizeof(float) * (size_t)d);
    else
      memcpy(dst, w + (size_t)id * d, sizeof(float) * (size_t)d);
  }
}

/* dy [n, T, D]: weight grad [id] += dy[s][t] for every token but padding_idx
 * and out-of-range ids; dx [n, T] (ids have no gradient) = 0. */
static void embedding_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int n, const nn_run_ctx *ctx) {
  int vocab = l->pspec[0].shape.dim[0], d = l->pspec[0].shape.dim[1];
  size_t tokens = (size_t)n * (size_t)l->in.dim[0];
  if (dx) memset(dx, 0, sizeof(float) * tokens);
  if (!nn_layer_param_grads(l, ctx)) return;
  int pad = opts(l)->padding_idx;
  float *g = l->grad[0];
  for (size_t i = 0; i < tokens; i++) {
    int id = token_row(x[i], vocab);
    if (id < 0 || id == pad) continue;
    float *gr = g + (size_t)id * d;
    const float *src = dy + i * (size_t)d;
    for (int j = 0; j < d; j++) gr[j] += src[j];
  }
}

const nn_layer_ops nn_layer_embedding = {
    .type = "embedding",
    .help = "token ids [T] -> vectors [T, embedding_dim], weight [num_embeddings, "
            "embedding_dim] (PyTorch's nn.Embedding)",
    .keys = embedding_keys,
    .penalize_weight = 1,
    .build = embedding_build,
    .forward = embedding_forward,
    .backward = embedding_backward,
};
