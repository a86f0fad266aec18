/* model.c: a graph of layers run in job order over contiguous arenas
 * (model.h).
 *
 * nn_model_build does all the allocation a model will ever do:
 *   params, grads [nparams]     every layer's tensors in layer order, each
 *                               layer's tensors contiguous (its "range")
 *   buffers [nbuffers]          non-trainable state, same order
 *   act, dact                   each layer's output and its gradient,
 *                               [max_batch * count(out_i)] each
 *   dtmp                        one layer's input gradients that are added to
 *                               gradients other readers wrote
 *   scratch                     per layer max_batch*scratch_per_sample + fixed
 * forward/backward then run with no allocation and no per-sample loops here.
 *
 * Configs become layers in build_list: plain configs in build_one (with the
 * activation layer a dense `activation` adds), residual blocks in
 * build_block (body, projection, add). Each layer's inputs are resolved by
 * name while it is built, so only layers above it can be named.
 *
 * Backward runs the layers from last to first; a layer's output gradient is
 * complete when it runs because every reader comes after it.
 *
 * The fusion pass (nn_model_fuse, model.h) only redirects buffers: a layer
 * with a ReLU fused onto its output writes (and takes its gradient from) the
 * ReLU's act/dact (fuse_out), a maxpool with the ReLU before it moved after
 * it reads the ReLU's input (fuse_in), and the ReLU itself is skipped
 * (fused). The graph, names and arenas stay as built. */
#include "core/model.h"
#include "core/compute.h"
#include "core/mem.h"
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

/* Set up layer l (index i in the model) from cfg, reading the outputs of
 * the layers srcs[nin] (-1: the model's input), calling the type's build. On
 * failure the message is prefixed with the layer. */
static int layer_build(nn_model *m, nn_layer *l, const nn_layer_cfg *cfg, int i, int src_index,
                       int init_index, const int *srcs, int nin, nn_error *err) {
  memset(l, 0, sizeof *l);
  l->cfg = *cfg;
  l->frozen = cfg->frozen;
  l->index = i;
  l->src_index = src_index;
  l->init_index = init_index;
  l->nin = nin;
  for (int k = 0; k < nin; k++) {
    l->src[k] = srcs[k];
    l->ins[k] = srcs[k] < 0 ? m->in : m->layers[srcs[k]].out;
  }
  l->in = l->ins[0];
  l->ops = nn_layer_find(cfg->type);
  int rc = 0;
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
  if (l->ops->expands || (nin > 1 && !l->ops->forward_n))
    rc = nn_error_set(err, NN_ESCHEMA, "takes one input, got %d (inputs = [\"%s\", \"%s\"%s])",
                      nin, cfg->inputs[0], cfg->inputs[1], nin > 2 ? ", ..." : "");
  if (rc == 0) rc = l->ops->build(l, err);
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
  const nn_layer_ops *ops = nn_layer_find(type);
  return ops && ops->expands;
}

/* State of one nn_model_build while it walks the config list. */
typedef struct build_ctx {
  nn_model *m;
  const nn_layer_cfg *cfgs; /* [ncfg] the caller's configs */
  int ncfg;
  int cap;                  /* slots in m->layers */
  int ninit;                /* next init_index (model.h: "Initial values") */
  int frozen;               /* inside a block with trainable = false: its layers are frozen */
  int *alias;               /* [cap] the layer a reference to layer i's name reads */
  nn_error *err;
} build_ctx;

/* Reserve the next slot of m->layers; -1 (and an internal error) if full. */
static int take_slot(build_ctx *b) {
  nn_model *m = b->m;
  if (m->nlayers >= b->cap) {
    nn_error_set(b->err, NN_EINTERNAL, "more layers than the %d slots counted", b->cap);
    return -1;
  }
  int i = m->nlayers++; /* an unbuilt slot has ops == NULL: nn_model_free skips it */
  b->alias[i] = i;
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

/* The name by which a layer reads producer `p` (-1: the model's input). */
static const char *producer_name(const build_ctx *b, int p) {
  return p < 0 ? "input" : b->m->layers[p].cfg.name;
}

static nn_shape producer_shape(const build_ctx *b, int p) {
  return p < 0 ? b->m->in : b->m->layers[p].out;
}

/* Resolve c->inputs (config `src`) to producers srcs[*nin]: each name is a
 * layer built so far (through its alias) or "input"; no names means `prev`.
 * The resolved names are written back into c->inputs. */
static int resolve_inputs(build_ctx *b, nn_layer_cfg *c, int src, int prev, int *srcs,
                          int *nin) {
  if (c->ninputs < 0 || c->ninputs > NN_MAX_INPUTS) {
    nn_error_set(b->err, NN_ESCHEMA, "layer %d '%s' (%s): %d inputs (at most %d)", src,
                 c->name, c->type, c->ninputs, NN_MAX_INPUTS);
    set_where(b->err, c->name);
    return NN_ESCHEMA;
  }
  if (c->ninputs == 0) {
    srcs[0] = prev;
    *nin = 1;
  } else {
    *nin = c->ninputs;
    for (int k = 0; k < c->ninputs; k++) {
      const char *want = c->inputs[k];
      int found = -2;
      for (int j = 0; j < b->m->nlayers && found == -2; j++)
        if (b->m->layers[j].ops && strcmp(b->m->layers[j].cfg.name, want) == 0)
          found = b->alias[j];
      if (found == -2 && strcmp(want, "input") == 0) found = -1;
      if (found == -2) {
        nn_error_set(b->err, NN_ESCHEMA,
                     "layer %d '%s' (%s): input '%s' is not a layer above this one (inputs "
                     "name earlier layers, or \"input\" for the model's input)", src, c->name,
                     c->type, want);
        set_where(b->err, c->name);
        return NN_ESCHEMA;
      }
      srcs[k] = found;
    }
  }
  c->ninputs = *nin;
  for (int k = 0; k < *nin; k++)
    snprintf(c->inputs[k], sizeof c->inputs[k], "%s", producer_name(b, srcs[k]));
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
    char v[64];
    snprintf(v, sizeof v, "%d", out->dim[0]);
    if ((rc = nn_layer_cfg_set(sc, "filters", v, b->err))) return rc;
    snprintf(v, sizeof v, "[%d, %d]", stride[0], stride[1]);
    if ((rc = nn_layer_cfg_set(sc, "stride", v, b->err)) ||
        (rc = nn_layer_cfg_set(sc, "kernel_size", "[1, 1]", b->err)) ||
        (rc = nn_layer_cfg_set(sc, "padding", "\"valid\"", b->err)))
      return rc;
  } else if (out->ndim == 1) {
    snprintf(sc->type, sizeof sc->type, "dense");
    int rc = nn_layer_cfg_defaults(sc, b->err);
    if (rc) return rc;
    char v[64];
    snprintf(v, sizeof v, "%d", out->dim[0]);
    if ((rc = nn_layer_cfg_set(sc, "units", v, b->err))) return rc;
  } else {
    nn_error_set(b->err, NN_ESHAPE,
                 "layer %d '%s' (%s): cannot project the input %s to the body's output %s "
                 "(a projection needs a [F] output, or [C, H, W] to [C', H', W'] with conv2d)",
                 src, blk->name, blk->type, nn_shape_str(in, si, sizeof si),
                 nn_shape_str(out, so, sizeof so));
    set_where(b->err, blk->name);
    return NN_ESHAPE;
  }
  int rc = nn_layer_cfg_set(sc, "use_bias", "false", b->err);
  if (rc) return rc;
  snprintf(sc->activation, sizeof sc->activation, "none");
  return make_name(b, sc->name, src, blk->type, "%s%s", blk->name, ".shortcut", -1);
}

static int build_list(build_ctx *b, int first, int count, const char *prefix, int prev,
                      int *out);

/* The residual block config c (config i, body configs i+1 .. i+bl), reading
 * producer `prev` unless it names inputs: its body, its projection, then an
 * `add` named like the block (model.h). *out: the add's index. */
static int build_block(build_ctx *b, nn_layer_cfg *c, int i, int prev, int *out) {
  nn_model *m = b->m;
  int rc, bin, nin, body_out, sc = -1;
  if ((rc = resolve_inputs(b, c, i, prev, &bin, &nin))) return rc;
  if (nin != 1) {
    nn_error_set(b->err, NN_ESCHEMA, "layer %d '%s' (%s): a block reads one input, got %d", i,
                 c->name, c->type, nin);
    set_where(b->err, c->name);
    return NN_ESCHEMA;
  }
  int blk_init = b->ninit++; /* the block's own number, before its body's */
  char pre[NN_NAME_MAX + 1];
  snprintf(pre, sizeof pre, "%s.", c->name);
  int outer_frozen = b->frozen;
  b->frozen |= c->frozen; /* trainable = false on a block freezes its whole body */
  rc = build_list(b, i + 1, c->block_len, pre, bin, &body_out);
  b->frozen = outer_frozen;
  if (rc) return rc;
  nn_shape in = producer_shape(b, bin), bout = producer_shape(b, body_out);
  if (c->projection) {
    nn_layer_cfg scc;
    if ((rc = shortcut_cfg(b, c, i, &in, &bout, &scc))) return rc;
    scc.frozen = b->frozen || c->frozen;
    int nsc;
    if ((rc = resolve_inputs(b, &scc, i, bin, &sc, &nsc))) return rc;
    int si = take_slot(b);
    if (si < 0) return NN_EINTERNAL;
    if ((rc = layer_build(m, &m->layers[si], &scc, si, i, b->ninit++, &bin, 1, b->err)))
      return rc;
    sc = si;
  } else if (!nn_shape_equal(&bout, &in)) {
    char si[64], so[64];
    nn_error_set(b->err, NN_ESHAPE,
                 "layer %d '%s' (%s): the body's output %s differs from the block's input %s; "
                 "set projection = true for a learned shortcut", i, c->name, c->type,
                 nn_shape_str(&bout, so, sizeof so), nn_shape_str(&in, si, sizeof si));
    set_where(b->err, c->name);
    return NN_ESHAPE;
  }
  nn_layer_cfg add;
  memset(&add, 0, sizeof add);
  snprintf(add.type, sizeof add.type, "add");
  if ((rc = nn_layer_cfg_defaults(&add, b->err))) return rc;
  memcpy(add.name, c->name, sizeof add.name);
  add.frozen = b->frozen || c->frozen;
  add.activity_l1 = c->activity_l1;
  add.activity_l2 = c->activity_l2;
  int srcs[2] = {body_out, sc >= 0 ? sc : bin};
  add.ninputs = 2;
  for (int k = 0; k < 2; k++)
    snprintf(add.inputs[k], sizeof add.inputs[k], "%s", producer_name(b, srcs[k]));
  int ai = take_slot(b);
  if (ai < 0) return NN_EINTERNAL;
  if ((rc = layer_build(m, &m->layers[ai], &add, ai, i, blk_init, srcs, 2, b->err))) return rc;
  *out = ai;
  return 0;
}

/* A plain config c (config i) reading `prev` unless it names inputs, and its
 * activation layer if it has one. *out: the index of the config's output. */
static int build_one(build_ctx *b, nn_layer_cfg *c, int i, int prev, int *out) {
  nn_model *m = b->m;
  int rc, srcs[NN_MAX_INPUTS], nin;
  if ((rc = resolve_inputs(b, c, i, prev, srcs, &nin))) return rc;
  int idx = take_slot(b);
  if (idx < 0) return NN_EINTERNAL;
  if ((rc = layer_build(m, &m->layers[idx], c, idx, i, b->ninit++, srcs, nin, b->err))) return rc;
  *out = idx;
  if (!type_has_key(m->layers[idx].ops, "activation") || !c->activation[0] ||
      !strcmp(c->activation, "none"))
    return 0;
  if (!nn_is_activation(c->activation)) {
    rc = nn_error_set(b->err, NN_ESCHEMA, "layer %d '%s' (%s): activation '%s' is not one of %s",
                      i, c->name, c->type, c->activation, nn_activation_choices);
    set_where(b->err, c->name);
    return rc;
  }
  nn_layer_cfg a;
  memset(&a, 0, sizeof a);
  snprintf(a.type, sizeof a.type, "%s", c->activation);
  if ((rc = nn_layer_cfg_defaults(&a, b->err))) return rc;
  if ((rc = make_name(b, a.name, i, c->type, "%s_%s", c->name, c->activation, -1))) return rc;
  a.frozen = c->frozen;
  a.ninputs = 1;
  memcpy(a.inputs[0], c->name, sizeof a.inputs[0]);
  int ai = take_slot(b);
  if (ai < 0) return NN_EINTERNAL;
  if ((rc = layer_build(m, &m->layers[ai], &a, ai, i, b->ninit++, &idx, 1, b->err))) return rc;
  b->alias[idx] = ai; /* naming the config reads its activation's output */
  *out = ai;
  return 0;
}

/* Build the configs [first, first + count) as one list (the top level, or a
 * block's body), the first reading producer `prev` by default, each next one
 * the one before. prefix: "" or "<block>." for default names. *out: the
 * list's output (prev for an empty list). */
static int build_list(build_ctx *b, int first, int count, const char *prefix, int prev,
                      int *out) {
  int rc = 0, cur = prev;
  for (int i = first, j = 0; i < first + count; j++) {
    nn_layer_cfg c = b->cfgs[i];
    c.type[sizeof c.type - 1] = '\0';
    c.name[sizeof c.name - 1] = '\0';
    c.activation[sizeof c.activation - 1] = '\0';
    for (int k = 0; k < NN_MAX_INPUTS; k++) c.inputs[k][NN_NAME_MAX - 1] = '\0';
    if (!c.name[0] && (rc = make_name(b, c.name, i, c.type, "%s%.30s%d", prefix, c.type, j)))
      return rc;
    c.frozen |= b->frozen;
    if (nn_model_is_composite_type(c.type)) {
      int bl = c.block_len, left = first + count - i - 1;
      if (bl < 0 || bl > left) {
        rc = nn_error_set(b->err, NN_ESCHEMA,
                          "layer %d '%s' (%s): block_len %d, but %d layer configs follow it in "
                          "its list", i, c.name, c.type, bl, left);
        set_where(b->err, c.name);
        return rc;
      }
      if ((rc = build_block(b, &c, i, cur, &cur))) return rc;
      i += 1 + bl;
      continue;
    }
    if ((rc = build_one(b, &c, i, cur, &cur))) return rc;
    i++;
  }
  *out = cur;
  return 0;
}

/* After every layer is built: unique names, and every output but the last
 * read by some layer. */
static int check_graph(nn_model *m, nn_error *err) {
  int nl = m->nlayers;
  for (int i = 0; i < nl; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(m->layers[i].cfg.name, m->layers[j].cfg.name) == 0) {
        const nn_layer *a = &m->layers[i], *z = &m->layers[j];
        nn_error_set(err, NN_ESCHEMA, "layer %d '%s' (%s): name already used by layer %d (%s)",
                     a->src_index, a->cfg.name, a->cfg.type, z->src_index, z->cfg.type);
        set_where(err, a->cfg.name);
        return NN_ESCHEMA;
      }
  for (int i = 0; i + 1 < nl; i++) {
    int used = 0;
    for (int j = i + 1; j < nl && !used; j++)
      for (int k = 0; k < m->layers[j].nin; k++) used |= m->layers[j].src[k] == i;
    if (!used) {
      const nn_layer *a = &m->layers[i];
      nn_error_set(err, NN_ESCHEMA,
                   "layer %d '%s' (%s): its output is not read by any layer (name it in a later "
                   "layer's inputs, or remove it; the model's output is the last layer's)",
                   a->src_index, a->cfg.name, a->cfg.type);
      set_where(err, a->cfg.name);
      return NN_ESCHEMA;
    }
  }
  return 0;
}

/* Offsets of every layer's tensors, output and scratch, and the sizes of the
 * arenas (SIZE_MAX on overflow); need[] for backward. */
typedef struct sizes {
  size_t np, nb, act, scratch, dtmp, carry;
  int ntensors;
} sizes;

static void layout(nn_model *m, sizes *z) {
  memset(z, 0, sizeof *z);
  size_t mb = (size_t)m->max_batch;
  /* parameters: the trainable layers' first, then the frozen layers' (model.h) */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < m->nlayers; i++) {
      nn_layer *l = &m->layers[i];
      if (l->frozen != pass) continue;
      l->param_offset = z->np;
      for (int p = 0; p < l->nparams; p++)
        z->np = add_sat(z->np, nn_shape_count(&l->pspec[p].shape));
      l->param_count = z->np - l->param_offset;
    }
    if (pass == 0) m->ntrainable = z->np;
  }
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    l->buffer_offset = z->nb;
    for (int q = 0; q < l->nbuffers; q++) z->nb = add_sat(z->nb, nn_shape_count(&l->bspec[q].shape));
    l->buffer_count = z->nb - l->buffer_offset;
    z->ntensors += l->nparams + l->nbuffers;
    m->act_off[i] = z->act;
    z->act = add_sat(z->act, mul_sat(mb, nn_shape_count(&l->out)));
    z->scratch = add_sat(z->scratch, add_sat(mul_sat(mb, l->scratch_per_sample), l->scratch_fixed));
    z->carry = add_sat(z->carry, l->carry_per_sample);
    size_t ins = 0;
    for (int k = 0; k < l->nin; k++) ins = add_sat(ins, mul_sat(mb, nn_shape_count(&l->ins[k])));
    if (ins > z->dtmp) z->dtmp = ins;
    m->need[i] = l->param_count > 0 && !l->frozen;
    for (int k = 0; k < l->nin; k++)
      if (l->src[k] >= 0 && m->need[l->src[k]]) m->need[i] = 1;
  }
}

/* Point every layer's tensors at the arenas and fill the tensor table
 * (parameters first, in arena order: the trainable layers', then the frozen
 * layers'; then buffers). A frozen layer's gradient views are NULL. */
static void bind_views(nn_model *m) {
  size_t so = 0;
  for (int k = 0; k < 2 * m->nlayers; k++) {
    nn_layer *l = &m->layers[k % m->nlayers];
    if (l->frozen != k / m->nlayers) continue;
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
  size_t co = 0;
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    l->scratch = m->scratch + so;
    so += (size_t)m->max_batch * l->scratch_per_sample + l->scratch_fixed;
    if (l->carry_per_sample) {
      l->carry = m->carry + co; /* sample-major rows: model.h */
      l->carry_stride = m->carry_per_sample;
      co += l->carry_per_sample;
    }
  }
  for (int i = 0; i < m->nlayers; i++) {
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
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].ops->bind) m->layers[i].ops->bind(&m->layers[i]);
}

int nn_model_build(nn_model *m, const nn_shape *in, const nn_layer_cfg *cfgs, int n,
                   int max_batch, nn_error *err) {
  int rc = 0, *alias = NULL;
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
   * its activation, or a block's add and its shortcut). */
  int cap = 2 * n;
  m->layers = nn_calloc((size_t)cap, sizeof *m->layers);
  alias = nn_calloc((size_t)cap, sizeof *alias);
  if (!m->layers || !alias) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for %d layers", cap);
    goto fail;
  }
  build_ctx b = {.m = m, .cfgs = cfgs, .ncfg = n, .cap = cap, .alias = alias, .err = err};
  m->in = *in;
  m->max_batch = max_batch;
  int last;
  if ((rc = build_list(&b, 0, n, "", -1, &last))) goto fail;
  if ((rc = check_graph(m, err))) goto fail;
  int nl = m->nlayers;
  m->out = m->layers[nl - 1].out;

  /* 2. Sizes and offsets. */
  m->act_off = nn_calloc((size_t)nl, sizeof *m->act_off);
  m->need = nn_calloc((size_t)nl, 1);
  m->gset = nn_calloc((size_t)nl, 1);
  m->fuse_out = nn_calloc((size_t)nl, sizeof *m->fuse_out);
  m->fuse_in = nn_calloc((size_t)nl, sizeof *m->fuse_in);
  m->fused = nn_calloc((size_t)nl, 1);
  m->blocked = nn_calloc((size_t)nl, 1);
  if (!m->act_off || !m->need || !m->gset || !m->fuse_out || !m->fuse_in || !m->fused ||
      !m->blocked) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto fail;
  }
  sizes z;
  layout(m, &z);
  if (z.np == SIZE_MAX || z.nb == SIZE_MAX || z.act == SIZE_MAX || z.scratch == SIZE_MAX ||
      z.dtmp == SIZE_MAX || z.carry == SIZE_MAX || mul_sat(z.carry, (size_t)max_batch) == SIZE_MAX) {
    rc = nn_error_set(err, NN_ENOMEM, "model arenas overflow the address space");
    goto fail;
  }

  /* 3. Arenas. */
  m->nparams = z.np;
  m->nbuffers = z.nb;
  m->params = alloc_floats(z.np);
  m->grads = alloc_floats(m->ntrainable);
  m->buffers = alloc_floats(z.nb);
  m->act = alloc_floats(z.act);
  m->dact = alloc_floats(z.act);
  m->dtmp = alloc_floats(z.dtmp);
  m->scratch = alloc_floats(z.scratch);
  m->tensors = nn_calloc(z.ntensors ? (size_t)z.ntensors : 1, sizeof *m->tensors);
  m->carry_per_sample = z.carry;
  if (z.carry) m->carry = alloc_floats(z.carry * (size_t)max_batch);
  if (!m->params || !m->grads || !m->buffers || !m->act || !m->dact || !m->dtmp ||
      !m->scratch || !m->tensors || (z.carry && !m->carry)) {
    rc = nn_error_set(err, NN_ENOMEM,
                      "out of memory for the model arenas (%zu parameters, %zu activation "
                      "floats at max_batch %d)", z.np, z.act, max_batch);
    goto fail;
  }

  /* 4. Views and the tensor table; the fusion pass. */
  bind_views(m);
  int fuse;
  if ((rc = nn_fuse_choice(&fuse, err))) goto fail;
  nn_model_fuse(m, fuse);
  int blocked;
  if ((rc = nn_blocked_choice(&blocked, err))) goto fail;
  nn_model_layouts(m, blocked);
  free(alias);
  return 0;

fail:
  free(alias);
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
  free(m->dact);
  free(m->dtmp);
  free(m->need);
  free(m->gset);
  free(m->fuse_out);
  free(m->fuse_in);
  free(m->fused);
  free(m->blocked);
  free(m->scratch);
  free(m->carry);
  memset(m, 0, sizeof *m);
}

void nn_model_init_params(nn_model *m, uint64_t seed) {
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    uint32_t key = (uint32_t)l->init_index;
    for (int p = 0; p < l->nparams; p++)
      nn_param_init(&l->pspec[p], l->param[p], seed, key, (uint32_t)p);
    for (int b = 0; b < l->nbuffers; b++)
      nn_param_init(&l->bspec[b], l->buffer[b], seed, key, (uint32_t)(NN_BUFFER_RNG_SLOT0 + b));
  }
}

/* The number of inputs of all layers that read layer i's output. */
static int readers(const nn_model *m, int i) {
  int r = 0;
  for (int j = i + 1; j < m->nlayers; j++)
    for (int k = 0; k < m->layers[j].nin; k++) r += m->layers[j].src[k] == i;
  return r;
}

static int has_activity(const nn_layer *l) {
  return l->cfg.activity_l1 > 0 || l->cfg.activity_l2 > 0;
}

/* The ReLU r fused into its producer p (p -> r), or moved after its single
 * reader (q -> r -> p); 0 if neither applies. model.h describes the rules. */
static int fuse_one(nn_model *m, int r) {
  nn_layer *lr = &m->layers[r];
  if (strcmp(lr->ops->type, "relu") != 0 || lr->nin != 1 || has_activity(lr) ||
      r == m->nlayers - 1)
    return 0;
  int p = lr->src[0];
  if (p >= 0) {
    nn_layer *lp = &m->layers[p];
    if ((lp->ops->fuse_relu & NN_FUSE_RELU_OUT) && !lp->relu_out && !m->fused[p] &&
        !has_activity(lp) && readers(m, p) == 1) {
      lp->relu_out = 1;
      m->fuse_out[p] = r;
      m->fused[r] = 1;
      return 1;
    }
  }
  if (readers(m, r) != 1) return 0;
  for (int j = r + 1; j < m->nlayers; j++) {
    nn_layer *lj = &m->layers[j];
    if (lj->nin != 1 || lj->src[0] != r) continue;
    if (!(lj->ops->fuse_relu & NN_FUSE_RELU_COMMUTES) || lj->relu_out) return 0;
    lj->relu_out = 1;
    m->fuse_in[j] = p;
    m->fused[r] = 1;
    return 1;
  }
  return 0;
}

int nn_model_fuse(nn_model *m, int on) {
  m->nfused = 0;
  for (int i = 0; i < m->nlayers; i++) {
    m->layers[i].relu_out = 0;
    m->fuse_out[i] = i;
    m->fuse_in[i] = m->layers[i].nin > 0 ? m->layers[i].src[0] : -1;
    m->fused[i] = 0;
  }
  if (on)
    for (int i = 0; i < m->nlayers; i++) m->nfused += fuse_one(m, i);
  return m->nfused;
}

/* 1 if layer j can read a blocked input given its own output's layout. */
static int reads_blocked(const nn_layer *lj, const unsigned char *blk) {
  if (lj->blk_caps & NN_BLK_IN) return 1;
  return (lj->blk_caps & NN_BLK_SAME) && blk[lj->index];
}

int nn_model_layouts(nn_model *m, int on) {
  int nl = m->nlayers;
  unsigned char *blk = m->blocked;
  for (int i = 0; i < nl; i++) {
    const nn_layer *l = &m->layers[i];
    blk[i] = on && i != nl - 1 && !has_activity(l) && nn_blk_fits(&l->out) &&
             (l->blk_caps & (NN_BLK_OUT | NN_BLK_SAME));
  }
  /* Only ever 1 -> 0, so this ends: a pass-through layer needs all its inputs
   * blocked (or it writes NCHW unless it can produce blocked itself), and a
   * blocked tensor needs every reader able to read it. */
  for (int changed = 1; changed;) {
    changed = 0;
    for (int i = 0; i < nl; i++) {
      if (!blk[i]) continue;
      const nn_layer *l = &m->layers[i];
      int ok = 1;
      if (!(l->blk_caps & NN_BLK_OUT))
        for (int k = 0; k < l->nin; k++) ok &= l->src[k] >= 0 && blk[l->src[k]];
      for (int j = i + 1; j < nl && ok; j++)
        for (int k = 0; k < m->layers[j].nin; k++)
          if (m->layers[j].src[k] == i && !reads_blocked(&m->layers[j], blk)) ok = 0;
      if (!ok) {
        blk[i] = 0;
        changed = 1;
      }
    }
  }
  int count = 0;
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    l->out_blocked = blk[i];
    l->in_blocked = l->nin > 0 && l->src[0] >= 0 && blk[l->src[0]];
    count += blk[i];
  }
  m->nblocked = count;
  return count;
}

/* The producer of layer l's input k (a ReLU moved after l is skipped). */
static int src_of(const nn_model *m, const nn_layer *l, int k) {
  return k == 0 ? m->fuse_in[l->index] : l->src[k];
}

/* Input k of layer l for a forward over x. */
static const float *input_of(const nn_model *m, const nn_layer *l, int k, const float *x) {
  int s = src_of(m, l, k);
  return s < 0 ? x : m->act + m->act_off[s];
}

const float *nn_model_forward(nn_model *m, const float *x, int n, const nn_run_ctx *ctx) {
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    if (m->fused[i]) continue;
    float *y = m->act + m->act_off[m->fuse_out[i]];
    if (l->ops->forward_n) {
      const float *xs[NN_MAX_INPUTS];
      for (int k = 0; k < l->nin; k++) xs[k] = input_of(m, l, k, x);
      l->ops->forward_n(l, xs, y, n, ctx);
    } else {
      l->ops->forward(l, input_of(m, l, 0, x), y, n, ctx);
    }
  }
  return m->act + m->act_off[m->nlayers - 1];
}

/* Run layer l's backward from dy. Each input gradient that is wanted goes
 * straight into its producer's dact (or the caller's dx) if nothing was
 * written there yet in this pass, else into m->dtmp and is then added: a
 * tensor with several readers gets the sum, the last reader's first.
 * *dx_set: whether dx was written. */
static void layer_backward(nn_model *m, nn_layer *l, const float *x, float *dx, int *dx_set,
                           const float *dy, int n, const nn_run_ctx *ctx) {
  float *target[NN_MAX_INPUTS], *dxs[NN_MAX_INPUTS];
  const float *xs[NN_MAX_INPUTS];
  size_t tmp = 0;
  for (int k = 0; k < l->nin; k++) {
    int s = src_of(m, l, k);
    xs[k] = input_of(m, l, k, x);
    target[k] = dxs[k] = s < 0 ? dx : (dx || m->need[s]) ? m->dact + m->act_off[s] : NULL;
    if (!target[k]) continue;
    if (s < 0 ? *dx_set : m->gset[s]) {
      dxs[k] = m->dtmp + tmp;
      tmp += (size_t)n * nn_shape_count(&l->ins[k]);
    } else if (s < 0) {
      *dx_set = 1;
    } else {
      m->gset[s] = 1;
    }
  }
  const float *y = m->act + m->act_off[m->fuse_out[l->index]];
  if (l->ops->backward_n)
    l->ops->backward_n(l, xs, y, dy, dxs, n, ctx);
  else
    l->ops->backward(l, xs[0], y, dy, dxs[0], n, ctx);
  for (int k = 0; k < l->nin; k++) {
    if (dxs[k] == target[k]) continue;
    size_t cnt = (size_t)n * nn_shape_count(&l->ins[k]);
    for (size_t e = 0; e < cnt; e++) target[k][e] += dxs[k][e];
  }
}

void nn_model_backward_dx(nn_model *m, const float *x, const float *dout, float *dx, int n,
                          const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user) {
  int nl = m->nlayers, dx_set = 0;
  memset(m->gset, 0, (size_t)nl);
  for (int i = nl - 1; i >= 0; i--) {
    nn_layer *l = &m->layers[i];
    if (!dx && (!m->need[i] || ctx->frozen)) continue; /* no gradient to fill below */
    if (m->fused[i]) continue; /* a neighbour does its work (nn_model_fuse) */
    /* every reader of a layer that runs has run and written its dact (a
     * layer with a ReLU fused on: the ReLU's dact, which its readers wrote) */
    float *g = m->dact + m->act_off[m->fuse_out[i]];
    const float *dy = i == nl - 1 ? dout : g;
    if (ctx->act_scale != 0 && (l->cfg.activity_l1 > 0 || l->cfg.activity_l2 > 0)) {
      /* the layer's activity penalty adds to the gradient w.r.t. its output */
      if (dy != g) memcpy(g, dy, (size_t)n * nn_shape_count(&l->out) * sizeof *g);
      nn_reg_activity_backward(l, m->act + m->act_off[i], g, n, ctx->act_scale);
      dy = g;
    }
    layer_backward(m, l, x, dx, &dx_set, dy, n, ctx);
    if (ready && l->param_count > 0 && nn_layer_param_grads(l, ctx))
      ready(user, l->param_offset, l->param_count);
  }
}

void nn_model_backward(nn_model *m, const float *x, const float *dout, int n,
                       const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user) {
  nn_model_backward_dx(m, x, dout, NULL, n, ctx, ready, user);
}

int nn_model_backward_from(nn_model *m, const float *x, int layer, const float *dy, float *dx,
                           int n, const nn_run_ctx *ctx, nn_error *err) {
  if (layer < 0 || layer >= m->nlayers)
    return nn_error_set(err, NN_EUSAGE, "backward from layer %d: the model has %d layers", layer,
                        m->nlayers);
  if (m->nfused || m->nblocked)
    return nn_error_set(err, NN_EUSAGE, "backward from layer '%s': the model runs fused or "
                        "blocked (nn_model_fuse(m, 0) and nn_model_layouts(m, 0) first)",
                        m->layers[layer].cfg.name);
  int dx_set = 0;
  memset(m->gset, 0, (size_t)m->nlayers);
  for (int i = layer; i >= 0; i--) {
    nn_layer *l = &m->layers[i];
    if (i != layer && !m->gset[i]) continue; /* no gradient reaches it from `layer` */
    if (!dx && (!m->need[i] || ctx->frozen)) continue;
    layer_backward(m, l, x, dx, &dx_set, i == layer ? dy : m->dact + m->act_off[i], n, ctx);
  }
  /* `layer` may not depend on the input at all (nothing wrote dx): its gradient is 0 */
  if (dx && !dx_set) memset(dx, 0, (size_t)n * nn_shape_count(&m->in) * sizeof *dx);
  return 0;
}

int nn_model_forward_from(nn_model *m, int layer, const float *y, int n, const nn_run_ctx *ctx,
                          const float **out, nn_error *err) {
  *out = NULL;
  if (layer < 0 || layer >= m->nlayers)
    return nn_error_set(err, NN_EUSAGE, "forward from layer %d: the model has %d layers", layer,
                        m->nlayers);
  for (int i = 0; i < m->nlayers; i++)
    if (m->fused[i] || m->blocked[i])
      return nn_error_set(err, NN_EUSAGE, "forward from layer '%s': the model must be unfused "
                          "and NCHW", m->layers[layer].cfg.name);
  for (int i = layer + 1; i < m->nlayers; i++)
    for (int k = 0; k < m->layers[i].nin; k++)
      if (m->layers[i].src[k] < layer)
        return nn_error_set(err, NN_EUSAGE, "forward from layer '%s': layer '%s' reads '%s', "
                            "which comes before it", m->layers[layer].cfg.name,
                            m->layers[i].cfg.name,
                            m->layers[i].src[k] < 0 ? "input"
                                                    : m->layers[m->layers[i].src[k]].cfg.name);
  memcpy(m->act + m->act_off[layer], y, (size_t)n * nn_shape_count(&m->layers[layer].out) *
                                            sizeof *y);
  for (int i = layer + 1; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    float *o = m->act + m->act_off[i];
    if (l->ops->forward_n) {
      const float *xs[NN_MAX_INPUTS];
      for (int k = 0; k < l->nin; k++) xs[k] = m->act + m->act_off[l->src[k]];
      l->ops->forward_n(l, xs, o, n, ctx);
    } else {
      l->ops->forward(l, m->act + m->act_off[l->src[0]], o, n, ctx);
    }
  }
  *out = m->act + m->act_off[m->nlayers - 1];
  return 0;
}

void nn_model_zero_grad(nn_model *m) {
  if (m->ntrainable) memset(m->grads, 0, m->ntrainable * sizeof *m->grads);
}

void nn_model_layer_range(const nn_model *m, int i, size_t *offset, size_t *count) {
  const nn_layer *l = &m->layers[i];
  if (offset) *offset = l->param_offset;
  if (count) *count = l->param_count;
}

void nn_model_running_stats(const nn_model *m, size_t *offset, size_t *count) {
  if (offset) *offset = 0;
  if (count) *count = m->nbuffers;
}

void nn_model_carry(nn_model *m, float **ptr, size_t *count) {
  if (ptr) *ptr = m->carry;
  if (count) *count = m->carry_per_sample * (size_t)m->max_batch;
}

int nn_model_find_tensor(const nn_model *m, const char *layer, const char *name) {
  for (int i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].layer, layer) == 0 && strcmp(m->tensors[i].name, name) == 0)
      return i;
  return -1;
}
