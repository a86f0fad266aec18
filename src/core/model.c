/* model.c: a sequential stack of layers over contiguous arenas (model.h).
 *
 * nn_model_build does all the allocation a model will ever do:
 *   params [nparams]            the trainable layers' tensors in layer order,
 *                               then the frozen layers' (model.h), each
 *                               layer's tensors contiguous (its "range")
 *   grads [ntrainable]          the trainable prefix of params
 *   buffers [nbuffers]          non-trainable state, same order
 *   act                         each layer's output, [max_batch * count(out_i)]
 *   dbuf[0], dbuf[1]            [max_batch * widest] gradient ping-pong
 *   scratch                     per layer max_batch*scratch_per_sample + fixed
 * forward/backward then run with no allocation and no per-sample loops here.
 *
 * Composite layers (residual blocks) are built recursively by build_list:
 * the block's slot first, its body's layers after it, its shortcut last, so
 * a block's tensors are one contiguous range of each arena. Only the
 * top-level layers (m->top) are run by forward/backward here; a block runs
 * its body itself through its nn_block.
 *
 * Backward order over the top-level layers: the last reads dout and writes
 * dbuf[0], the one before reads dbuf[0] and writes dbuf[1], and so on; a
 * layer's input is the previous top-level layer's output (or the caller's x
 * for the first). Layers below the lowest one that has parameters are
 * skipped unless the caller asked for the input gradient. */
#include "core/model.h"
#include "core/regularize.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN__ALIGN 64

/* Zeroed, 64-byte aligned float array of n elements (n may be 0); NULL on
 * failure. Freed with free(). */
static float *alloc_floats(size_t n) {
  void *p = NULL;
  size_t bytes = (n ? n : 1) * sizeof(float);
  if (n > SIZE_MAX / sizeof(float)) return NULL;
  bytes = (bytes + NN__ALIGN - 1) / NN__ALIGN * NN__ALIGN;
  if (posix_memalign(&p, NN__ALIGN, bytes) != 0) return NULL;
  memset(p, 0, bytes);
  return p;
}

/* a * b, or SIZE_MAX when it overflows. */
static size_t mul_sat(size_t a, size_t b) {
  if (a && b > SIZE_MAX / a) return SIZE_MAX;
  return a * b;
}

static size_t add_sat(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

/* Record which layer an error is about (err may be NULL). */
static void set_where(nn_error *err, const char *name) {
  if (err) snprintf(err->where, sizeof err->where, "%s", name);
}

/* Set up layer l (index i in the model) from cfg and input shape, calling the
 * type's build. `state` is handed to the layer before build (a composite's
 * nn_block; NULL otherwise). On failure the message is prefixed with the
 * layer. */
static int layer_build(nn_layer *l, const nn_layer_cfg *cfg, int i, int src_index,
                       const nn_shape *in, void *state, nn_error *err) {
  memset(l, 0, sizeof *l);
  l->cfg = *cfg;
  l->index = i;
  l->src_index = src_index;
  l->in = *in;
  l->state = state;
  l->ops = nn_layer_find(cfg->type);
  if (!l->ops) {
    char types[512];
    size_t k = 0;
    types[0] = '\0';
    for (const nn_layer_ops *const *p = nn_layer_types(); *p && k < sizeof types; p++) {
      int w = snprintf(types + k, sizeof types - k, "%s%s", k ? "|" : "", (*p)->type);
      if (w > 0) k += (size_t)w;
    }
    nn_error_set(err, NN_ESCHEMA, "layer %d '%s': unknown layer type '%s' (expected one of %s)",
                 src_index, cfg->name, cfg->type, types);
    set_where(err, cfg->name);
    return NN_ESCHEMA;
  }
  int rc = l->ops->build(l, err);
  if (rc == 0) {
    for (int p = 0; p < l->nparams && rc == 0; p++)
      if (l->pspec[p].shape.ndim < 1 || nn_shape_count(&l->pspec[p].shape) == 0)
        rc = nn_error_set(err, NN_EINTERNAL, "parameter '%s' has an empty shape",
                          l->pspec[p].name);
    if (rc == 0 && (l->out.ndim < 1 || nn_shape_count(&l->out) == 0))
      rc = nn_error_set(err, NN_ESHAPE, "output shape is empty");
    if (rc && l->ops->destroy) l->ops->destroy(l);
  }
  if (rc) {
    nn_error_prefix(err, "layer %d '%s' (%s)", src_index, cfg->name, cfg->type);
    set_where(err, cfg->name);
    l->ops = NULL; /* nothing for nn_model_free to destroy */
  }
  return rc;
}

/* 1 if the type has a key named `key`. */
static int type_has_key(const nn_layer_ops *ops, const char *key) {
  for (const nn_key *k = ops ? ops->keys : NULL; k && k->name; k++)
    if (strcmp(k->name, key) == 0) return 1;
  return 0;
}

int nn_model_is_composite_type(const char *type) {
  return type_has_key(nn_layer_find(type), "block_len");
}

static int is_composite(const nn_layer *l) { return l->ops && type_has_key(l->ops, "block_len"); }

/* Set every layer's `frozen`: its config's, or its enclosing block's (a
 * block's slot comes before its body's). A block is frozen whole: a frozen
 * layer inside a trainable block is refused, so each block's parameters stay
 * one contiguous range in one part of the arena. */
static int mark_frozen(nn_model *m, nn_error *err) {
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    const nn_layer *p = m->parent[i] >= 0 ? &m->layers[m->parent[i]] : NULL;
    if (p && l->cfg.frozen && !p->frozen) {
      nn_error_set(err, NN_ESCHEMA,
                   "layer %d '%s' (%s): trainable = false inside the trainable block '%s'; a "
                   "block is frozen whole: set trainable = false on '%s'", l->src_index,
                   l->cfg.name, l->cfg.type, p->cfg.name, p->cfg.name);
      set_where(err, l->cfg.name);
      return NN_ESCHEMA;
    }
    l->frozen = l->cfg.frozen || (p && p->frozen);
  }
  return 0;
}

/* State of one nn_model_build while it walks the config list. */
typedef struct build_ctx {
  nn_model *m;
  const nn_layer_cfg *cfgs; /* [ncfg] the caller's configs */
  int ncfg;
  int cap;                  /* slots in m->layers, m->parent */
  int nrefs;                /* used entries of m->block_refs */
  nn_error *err;
} build_ctx;

/* Reserve the next slot of m->layers; -1 (and an internal error) if full. */
static int take_slot(build_ctx *b, int parent) {
  nn_model *m = b->m;
  if (m->nlayers >= b->cap) {
    nn_error_set(b->err, NN_EINTERNAL, "more layers than the %d slots counted", b->cap);
    return -1;
  }
  int i = m->nlayers++; /* an unbuilt slot has ops == NULL: nn_model_free skips it */
  m->parent[i] = parent;
  return i;
}

/* Copy "<a><b>" into dst[NN_NAME_MAX]; NN_ESCHEMA naming the layer if it
 * does not fit. */
static int make_name(build_ctx *b, char *dst, int src, const char *type, const char *fmt,
                     const char *a, const char *c, int j) {
  char buf[3 * NN_NAME_MAX];
  if (j >= 0)
    snprintf(buf, sizeof buf, fmt, a, c, j);
  else
    snprintf(buf, sizeof buf, fmt, a, c);
  if (strlen(buf) >= NN_NAME_MAX) {
    nn_error_set(b->err, NN_ESCHEMA, "layer %d (%s): name '%s' is longer than %d characters",
                 src, type, buf, NN_NAME_MAX - 1);
    set_where(b->err, buf);
    return NN_ESCHEMA;
  }
  memcpy(dst, buf, strlen(buf) + 1);
  return 0;
}

/* The projection of a residual block from input shape `in` to the body's
 * output `out`: a 1x1 conv2d with a matching stride (images, when conv2d is
 * registered) or a dense layer ([F] outputs). No bias (He et al., eq. 2). */
static int shortcut_cfg(build_ctx *b, const nn_layer_cfg *blk, int src, const nn_shape *in,
                        const nn_shape *out, nn_layer_cfg *sc) {
  char si[64], so[64];
  memset(sc, 0, sizeof *sc);
  if (in->ndim == 3 && out->ndim == 3 && nn_layer_find("conv2d")) {
    int stride[2];
    for (int d = 0; d < 2; d++) {
      int a = in->dim[1 + d], z = out->dim[1 + d];
      stride[d] = 0;
      for (int st = 1; st <= a && !stride[d]; st++)
        if ((a - 1) / st + 1 == z) stride[d] = st;
      if (!stride[d]) {
        nn_error_set(b->err, NN_ESHAPE,
                     "layer %d '%s' (%s): no 1x1 convolution with a stride maps the input %s "
                     "to the body's output %s", src, blk->name, blk->type,
                     nn_shape_str(in, si, sizeof si), nn_shape_str(out, so, sizeof so));
        set_where(b->err, blk->name);
        return NN_ESHAPE;
      }
    }
    snprintf(sc->type, sizeof sc->type, "conv2d");
    int rc = nn_layer_cfg_defaults(sc, b->err);
    if (rc) return rc;
    sc->filters = out->dim[0];
    sc->kernel_size[0] = sc->kernel_size[1] = 1;
    sc->kernel_size_n = 2;
    sc->stride[0] = stride[0];
    sc->stride[1] = stride[1];
    sc->stride_n = 2;
    snprintf(sc->padding, sizeof sc->padding, "valid");
  } else if (out->ndim == 1) {
    snprintf(sc->type, sizeof sc->type, "dense");
    int rc = nn_layer_cfg_defaults(sc, b->err);
    if (rc) return rc;
    sc->units = out->dim[0];
  } else {
    nn_error_set(b->err, NN_ESHAPE,
                 "layer %d '%s' (%s): cannot project the input %s to the body's output %s "
                 "(a projection needs a [F] output, or [C, H, W] to [C', H', W'] with conv2d)",
                 src, blk->name, blk->type, nn_shape_str(in, si, sizeof si),
                 nn_shape_str(out, so, sizeof so));
    set_where(b->err, blk->name);
    return NN_ESHAPE;
  }
  sc->use_bias = 0;
  snprintf(sc->activation, sizeof sc->activation, "none");
  return make_name(b, sc->name, src, blk->type, "%s%s", blk->name, ".shortcut", -1);
}

/* Build the configs [first, first + count) as one list (the top level, or a
 * block's body) on input shape *cur, which becomes the list's output shape.
 * prefix: "" or "<block>." for default names; parent: the enclosing
 * composite's layer index or -1. */
static int build_list(build_ctx *b, int first, int count, const char *prefix, int parent,
                      nn_shape *cur) {
  nn_model *m = b->m;
  int rc = 0;
  for (int i = first, j = 0; i < first + count; j++) {
    nn_layer_cfg c = b->cfgs[i];
    c.type[sizeof c.type - 1] = '\0';
    c.name[sizeof c.name - 1] = '\0';
    c.activation[sizeof c.activation - 1] = '\0';
    if (!c.name[0] && (rc = make_name(b, c.name, i, c.type, "%s%.30s%d", prefix, c.type, j)))
      return rc;
    const nn_layer_ops *ops = nn_layer_find(c.type);
    if (type_has_key(ops, "block_len")) {
      int bl = c.block_len, left = first + count - i - 1;
      if (bl < 0 || bl > left) {
        rc = nn_error_set(b->err, NN_ESCHEMA,
                          "layer %d '%s' (%s): block_len %d, but %d layer configs follow it in "
                          "its list", i, c.name, c.type, bl, left);
        set_where(b->err, c.name);
        return rc;
      }
      int idx = take_slot(b, parent);
      if (idx < 0) return NN_EINTERNAL;
      nn_block *blk = &m->blocks[m->nblocks++];
      memset(blk, 0, sizeof *blk);
      blk->index = idx;
      char pre[NN_NAME_MAX + 1];
      snprintf(pre, sizeof pre, "%s.", c.name);
      nn_shape body = *cur;
      if ((rc = build_list(b, i + 1, bl, pre, idx, &body))) return rc;
      /* the body's own list: direct children, in order */
      blk->body = m->block_refs + b->nrefs;
      blk->body_out = m->block_outs + b->nrefs;
      for (int k = idx + 1; k < m->nlayers; k++)
        if (m->parent[k] == idx) blk->body[blk->nbody++] = &m->layers[k];
      b->nrefs += blk->nbody;
      if (c.projection) {
        nn_layer_cfg sc;
        if ((rc = shortcut_cfg(b, &c, i, cur, &body, &sc))) return rc;
        int si = take_slot(b, idx);
        if (si < 0) return NN_EINTERNAL;
        if ((rc = layer_build(&m->layers[si], &sc, si, i, cur, NULL, b->err))) return rc;
        blk->shortcut = &m->layers[si];
      }
      blk->last = m->nlayers - 1;
      if ((rc = layer_build(&m->layers[idx], &c, idx, i, cur, blk, b->err))) return rc;
      *cur = m->layers[idx].out;
      i += 1 + bl;
      continue;
    }
    int idx = take_slot(b, parent);
    if (idx < 0) return NN_EINTERNAL;
    if ((rc = layer_build(&m->layers[idx], &c, idx, i, cur, NULL, b->err))) return rc;
    *cur = m->layers[idx].out;
    if (type_has_key(ops, "activation") && c.activation[0] && strcmp(c.activation, "none")) {
      if (!nn_is_activation(c.activation)) {
        rc = nn_error_set(b->err, NN_ESCHEMA, "layer %d '%s' (%s): activation '%s' is not one of %s",
                          i, c.name, c.type, c.activation, nn_activation_choices);
        set_where(b->err, c.name);
        return rc;
      }
      nn_layer_cfg a;
      memset(&a, 0, sizeof a);
      snprintf(a.type, sizeof a.type, "%s", c.activation);
      if ((rc = nn_layer_cfg_defaults(&a, b->err))) return rc;
      a.frozen = c.frozen;
      if ((rc = make_name(b, a.name, i, c.type, "%s_%s", c.name, c.activation, -1))) return rc;
      int ai = take_slot(b, parent);
      if (ai < 0) return NN_EINTERNAL;
      if ((rc = layer_build(&m->layers[ai], &a, ai, i, cur, NULL, b->err))) return rc;
      *cur = m->layers[ai].out;
    }
    i++;
  }
  return 0;
}

int nn_model_build(nn_model *m, const nn_shape *in, const nn_layer_cfg *cfgs, int n,
                   int max_batch, nn_error *err) {
  int rc = 0;
  memset(m, 0, sizeof *m);

  if (n < 1) return nn_error_set(err, NN_ESCHEMA, "model has no layers");
  if (max_batch < 1) return nn_error_set(err, NN_EINVAL, "max_batch must be >= 1, got %d", max_batch);
  if (!in || in->ndim < 1 || in->ndim > NN_MAX_DIMS || nn_shape_count(in) == 0) {
    char shp[64];
    return nn_error_set(err, NN_ESHAPE, "model input shape %s is empty or invalid",
                        in ? nn_shape_str(in, shp, sizeof shp) : "(null)");
  }
  if (n > (INT32_MAX - 1) / 2) return nn_error_set(err, NN_EINVAL, "%d layer configs", n);

  /* 1. Build every layer in order (each config gives at most two: itself and
   * its activation, or a block and its shortcut). */
  int cap = 2 * n;
  build_ctx b = {m, cfgs, n, cap, 0, err};
  m->layers = calloc((size_t)cap, sizeof *m->layers);
  m->parent = calloc((size_t)cap, sizeof *m->parent);
  m->top = calloc((size_t)cap, sizeof *m->top);
  m->blocks = calloc((size_t)n, sizeof *m->blocks);
  m->block_refs = calloc((size_t)cap, sizeof *m->block_refs);
  m->block_outs = calloc((size_t)cap, sizeof *m->block_outs);
  if (!m->layers || !m->parent || !m->top || !m->blocks || !m->block_refs || !m->block_outs) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for %d layers", cap);
    goto fail;
  }
  m->in = *in;
  m->max_batch = max_batch;
  nn_shape cur = *in;
  if ((rc = build_list(&b, 0, n, "", -1, &cur))) goto fail;
  m->out = cur;
  int nl = m->nlayers;
  for (int i = 0; i < nl; i++)
    if (m->parent[i] < 0) m->top[m->ntop++] = i;
  if ((rc = mark_frozen(m, err))) goto fail;
  for (int i = 0; i < nl; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(m->layers[i].cfg.name, m->layers[j].cfg.name) == 0) {
        const nn_layer *a = &m->layers[i], *z = &m->layers[j];
        rc = nn_error_set(err, NN_ESCHEMA,
                          "layer %d '%s' (%s): name already used by layer %d (%s)", a->src_index,
                          a->cfg.name, a->cfg.type, z->src_index, z->cfg.type);
        set_where(err, a->cfg.name);
        goto fail;
      }

  /* 2. Sizes and offsets. */
  size_t np = 0, nb = 0, act = 0, scratch = 0, widest = nn_shape_count(in);
  int ntensors = 0;
  m->act_off = calloc(nl > 0 ? (size_t)nl : 1, sizeof *m->act_off);
  if (!m->act_off) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto fail;
  }
  /* parameters: trainable layers first, then frozen ones (model.h) */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < nl; i++) {
      nn_layer *l = &m->layers[i];
      if (l->frozen != pass) continue;
      l->param_offset = np;
      for (int p = 0; p < l->nparams; p++) np = add_sat(np, nn_shape_count(&l->pspec[p].shape));
      l->param_count = np - l->param_offset;
    }
    if (pass == 0) m->ntrainable = np;
  }
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    l->buffer_offset = nb;
    for (int q = 0; q < l->nbuffers; q++) nb = add_sat(nb, nn_shape_count(&l->bspec[q].shape));
    l->buffer_count = nb - l->buffer_offset;
    ntensors += l->nparams + l->nbuffers;
    size_t oc = nn_shape_count(&l->out);
    if (oc > widest) widest = oc;
    m->act_off[i] = act;
    act = add_sat(act, mul_sat((size_t)max_batch, oc));
    scratch = add_sat(scratch, add_sat(mul_sat((size_t)max_batch, l->scratch_per_sample),
                                       l->scratch_fixed));
  }
  for (int k = 0; k < m->nblocks; k++) {
    nn_block *blk = &m->blocks[k];
    const nn_layer *last = &m->layers[blk->last];
    blk->param_offset = m->layers[blk->index].param_offset;
    blk->param_count = last->param_offset + last->param_count - blk->param_offset;
  }
  size_t dsz = mul_sat((size_t)max_batch, widest);
  if (np == SIZE_MAX || nb == SIZE_MAX || act == SIZE_MAX || scratch == SIZE_MAX ||
      dsz == SIZE_MAX) {
    rc = nn_error_set(err, NN_ENOMEM, "model arenas overflow the address space");
    goto fail;
  }

  /* 3. Arenas. */
  m->nparams = np;
  m->nbuffers = nb;
  m->params = alloc_floats(np);
  m->grads = alloc_floats(m->ntrainable);
  m->buffers = alloc_floats(nb);
  m->act = alloc_floats(act);
  m->dbuf[0] = alloc_floats(dsz);
  m->dbuf[1] = alloc_floats(dsz);
  m->scratch = alloc_floats(scratch);
  m->tensors = calloc(ntensors ? (size_t)ntensors : 1, sizeof *m->tensors);
  if (!m->params || !m->grads || !m->buffers || !m->act || !m->dbuf[0] || !m->dbuf[1] ||
      !m->scratch || !m->tensors) {
    rc = nn_error_set(err, NN_ENOMEM,
                      "out of memory for the model arenas (%zu parameters, %zu activation "
                      "floats at max_batch %d)", np, act, max_batch);
    goto fail;
  }

  /* 4. Views and the tensor table (parameters first, then buffers), in
   * arena order: the trainable layers' parameters, then the frozen ones'. */
  size_t so = 0;
  for (int k = 0; k < 2 * nl; k++) {
    nn_layer *l = &m->layers[k % nl];
    if (l->frozen != k / nl) continue;
    size_t off = l->param_offset;
    for (int p = 0; p < l->nparams; p++) {
      nn_tensor_ref *t = &m->tensors[m->ntensors++];
      snprintf(t->layer, sizeof t->layer, "%s", l->cfg.name);
      snprintf(t->name, sizeof t->name, "%s", l->pspec[p].name);
      t->shape = l->pspec[p].shape;
      t->offset = off;
      t->count = nn_shape_count(&t->shape);
      l->param[p] = m->params + off;
      l->grad[p] = l->frozen ? NULL : m->grads + off;
      off += t->count;
    }
  }
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    l->scratch = m->scratch + so;
    so += (size_t)max_batch * l->scratch_per_sample + l->scratch_fixed;
  }
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    size_t off = l->buffer_offset;
    for (int q = 0; q < l->nbuffers; q++) {
      nn_tensor_ref *t = &m->tensors[m->ntensors++];
      snprintf(t->layer, sizeof t->layer, "%s", l->cfg.name);
      snprintf(t->name, sizeof t->name, "%s", l->bspec[q].name);
      t->shape = l->bspec[q].shape;
      t->offset = off;
      t->count = nn_shape_count(&t->shape);
      t->is_buffer = 1;
      l->buffer[q] = m->buffers + off;
      off += t->count;
    }
  }
  for (int k = 0; k < m->nblocks; k++) {
    nn_block *blk = &m->blocks[k];
    for (int j = 0; j < blk->nbody; j++) blk->body_out[j] = m->act + m->act_off[blk->body[j]->index];
    if (blk->shortcut) blk->shortcut_out = m->act + m->act_off[blk->shortcut->index];
  }
  for (int i = 0; i < nl; i++)
    if (m->layers[i].ops->bind) m->layers[i].ops->bind(&m->layers[i]);
  return 0;

fail:
  nn_model_free(m);
  return rc;
}

void nn_model_free(nn_model *m) {
  if (!m) return;
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    if (l->ops && l->ops->destroy) l->ops->destroy(l);
  }
  free(m->layers);
  free(m->params);
  free(m->grads);
  free(m->buffers);
  free(m->tensors);
  free(m->act);
  free(m->act_off);
  free(m->dbuf[0]);
  free(m->dbuf[1]);
  free(m->scratch);
  free(m->top);
  free(m->parent);
  free(m->blocks);
  free(m->block_refs);
  free(m->block_outs);
  memset(m, 0, sizeof *m);
}

void nn_model_init_params(nn_model *m, uint64_t seed) {
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    for (int p = 0; p < l->nparams; p++)
      nn_param_init(&l->pspec[p], l->param[p], seed, (uint32_t)i, (uint32_t)p);
    for (int b = 0; b < l->nbuffers; b++)
      nn_param_init(&l->bspec[b], l->buffer[b], seed, (uint32_t)i,
                    (uint32_t)(NN_MAX_PARAMS + b));
  }
}

const float *nn_model_forward(nn_model *m, const float *x, int n, const nn_run_ctx *ctx) {
  const float *cur = x;
  for (int t = 0; t < m->ntop; t++) {
    nn_layer *l = &m->layers[m->top[t]];
    float *y = m->act + m->act_off[m->top[t]];
    l->ops->forward(l, cur, y, n, ctx);
    cur = y;
  }
  return cur;
}

/* Floats of the gradient arena that backward of layer i fills in this pass
 * (0 for a frozen layer or in a frozen pass); its offset in *offset. */
static size_t grad_range(const nn_model *m, int i, const nn_run_ctx *ctx, size_t *offset) {
  size_t cnt;
  nn_model_layer_range(m, i, offset, &cnt);
  return nn_layer_param_grads(&m->layers[i], ctx) ? cnt : 0;
}

void nn_model_backward_dx(nn_model *m, const float *x, const float *dout, float *dx, int n,
                          const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user) {
  int lowest = 0; /* position in m->top */
  if (!dx) {
    lowest = m->ntop; /* no layer fills gradients: nothing to do */
    for (int t = 0; t < m->ntop; t++) {
      size_t off;
      if (grad_range(m, m->top[t], ctx, &off) > 0) {
        lowest = t;
        break;
      }
    }
  }
  const float *dy = dout;
  int which = 0;
  for (int t = m->ntop - 1; t >= lowest; t--) {
    int i = m->top[t];
    nn_layer *l = &m->layers[i];
    const float *xin = t ? m->act + m->act_off[m->top[t - 1]] : x;
    const float *y = m->act + m->act_off[i];
    float *dxi = t == 0 ? dx : t == lowest ? NULL : m->dbuf[which];
    if (ctx->act_scale != 0 && (l->cfg.activity_l1 > 0 || l->cfg.activity_l2 > 0)) {
      /* the layer's activity penalty adds to the gradient w.r.t. its output */
      float *w = m->dbuf[which ^ 1];
      if (dy != w) memcpy(w, dy, (size_t)n * nn_shape_count(&l->out) * sizeof *w);
      nn_reg_activity_backward(l, y, w, n, ctx->act_scale);
      dy = w;
    }
    l->ops->backward(l, xin, y, dy, dxi, n, ctx);
    size_t off, cnt = grad_range(m, i, ctx, &off);
    if (ready && cnt > 0) ready(user, off, cnt);
    dy = dxi;
    which ^= 1;
  }
}

void nn_model_backward(nn_model *m, const float *x, const float *dout, int n,
                       const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user) {
  nn_model_backward_dx(m, x, dout, NULL, n, ctx, ready, user);
}

void nn_model_zero_grad(nn_model *m) {
  if (m->ntrainable) memset(m->grads, 0, m->ntrainable * sizeof *m->grads);
}

void nn_model_layer_range(const nn_model *m, int i, size_t *offset, size_t *count) {
  const nn_layer *l = &m->layers[i];
  size_t off = l->param_offset, cnt = l->param_count;
  if (is_composite(l) && l->state) {
    const nn_block *blk = l->state;
    off = blk->param_offset;
    cnt = blk->param_count;
  }
  if (offset) *offset = off;
  if (count) *count = cnt;
}

void nn_model_running_stats(const nn_model *m, size_t *offset, size_t *count) {
  if (offset) *offset = 0;
  if (count) *count = m->nbuffers;
}

int nn_model_find_tensor(const nn_model *m, const char *layer, const char *name) {
  for (int i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].layer, layer) == 0 && strcmp(m->tensors[i].name, name) == 0)
      return i;
  return -1;
}
