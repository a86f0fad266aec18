/* model.c: a sequential stack of layers over contiguous arenas (model.h).
 *
 * nn_model_build does all the allocation a model will ever do:
 *   params, grads [nparams]     every layer's tensors in layer order, each
 *                               layer's tensors contiguous (its "range")
 *   buffers [nbuffers]          non-trainable state, same order
 *   act                         each layer's output, [max_batch * count(out_i)]
 *   dbuf[0], dbuf[1]            [max_batch * widest] gradient ping-pong
 *   scratch                     per layer max_batch*scratch_per_sample + fixed
 * forward/backward then run with no allocation and no per-sample loops here.
 *
 * Backward order: layer L-1 reads dout and writes dbuf[0], layer L-2 reads
 * dbuf[0] and writes dbuf[1], and so on; layer i's input is act of layer i-1
 * (or the caller's x for i = 0). Layers below the lowest one that has
 * parameters are skipped unless the caller asked for the input gradient. */
#include "core/model.h"

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
 * type's build. On failure the message is prefixed with the layer. */
static int layer_build(nn_layer *l, const nn_layer_cfg *cfg, int i, int src_index,
                       const nn_shape *in, nn_error *err) {
  memset(l, 0, sizeof *l);
  l->cfg = *cfg;
  l->index = i;
  l->src_index = src_index;
  l->in = *in;
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

int nn_model_build(nn_model *m, const nn_shape *in, const nn_layer_cfg *cfgs, int n,
                   int max_batch, nn_error *err) {
  int rc = 0;
  nn_layer_cfg *expanded = NULL; /* [2n] the configs after activation expansion */
  int *src = NULL;               /* [2n] config position of each expanded layer */
  memset(m, 0, sizeof *m);

  if (n < 1) return nn_error_set(err, NN_ESCHEMA, "model has no layers");
  if (max_batch < 1) return nn_error_set(err, NN_EINVAL, "max_batch must be >= 1, got %d", max_batch);
  if (!in || in->ndim < 1 || in->ndim > NN_MAX_DIMS || nn_shape_count(in) == 0) {
    char shp[64];
    return nn_error_set(err, NN_ESHAPE, "model input shape %s is empty or invalid",
                        in ? nn_shape_str(in, shp, sizeof shp) : "(null)");
  }

  /* 1. Names and activation expansion. */
  expanded = calloc((size_t)n * 2, sizeof *expanded);
  src = calloc((size_t)n * 2, sizeof *src);
  if (!expanded || !src) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for %d layer configs", n);
    goto fail;
  }
  int nl = 0;
  for (int i = 0; i < n; i++) {
    nn_layer_cfg c = cfgs[i];
    c.type[sizeof c.type - 1] = '\0';
    c.name[sizeof c.name - 1] = '\0';
    c.activation[sizeof c.activation - 1] = '\0';
    if (!c.name[0]) snprintf(c.name, sizeof c.name, "%.30s%d", c.type, i);
    expanded[nl] = c;
    src[nl++] = i;
    if (!type_has_key(nn_layer_find(c.type), "activation")) continue;
    if (!c.activation[0] || strcmp(c.activation, "none") == 0) continue;
    if (!nn_is_activation(c.activation)) {
      rc = nn_error_set(err, NN_ESCHEMA,
                        "layer %d '%s' (%s): activation '%s' is not one of %s", i, c.name,
                        c.type, c.activation, nn_activation_choices);
      set_where(err, c.name);
      goto fail;
    }
    nn_layer_cfg a;
    memset(&a, 0, sizeof a);
    snprintf(a.type, sizeof a.type, "%s", c.activation);
    if ((rc = nn_layer_cfg_defaults(&a, err)) != 0) goto fail;
    snprintf(a.name, sizeof a.name, "%.23s_%.23s", c.name, c.activation);
    expanded[nl] = a;
    src[nl++] = i;
  }
  for (int i = 0; i < nl; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(expanded[i].name, expanded[j].name) == 0) {
        rc = nn_error_set(err, NN_ESCHEMA,
                          "layer %d '%s' (%s): name already used by layer %d (%s)", src[i],
                          expanded[i].name, expanded[i].type, src[j], expanded[j].type);
        set_where(err, expanded[i].name);
        goto fail;
      }

  /* 2. Build each layer on the previous one's output shape. */
  m->layers = calloc((size_t)nl, sizeof *m->layers);
  if (!m->layers) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for %d layers", nl);
    goto fail;
  }
  m->in = *in;
  m->max_batch = max_batch;
  nn_shape cur = *in;
  for (int i = 0; i < nl; i++) {
    rc = layer_build(&m->layers[i], &expanded[i], i, src[i], &cur, err);
    m->nlayers = i + 1; /* built layers are destroyed by nn_model_free */
    if (rc) goto fail;
    cur = m->layers[i].out;
  }
  m->out = cur;

  /* 3. Sizes and offsets. */
  size_t np = 0, nb = 0, act = 0, scratch = 0, widest = nn_shape_count(in);
  int ntensors = 0;
  m->act_off = calloc((size_t)nl, sizeof *m->act_off);
  if (!m->act_off) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    l->param_offset = np;
    for (int p = 0; p < l->nparams; p++) np = add_sat(np, nn_shape_count(&l->pspec[p].shape));
    l->param_count = np - l->param_offset;
    l->buffer_offset = nb;
    for (int b = 0; b < l->nbuffers; b++) nb = add_sat(nb, nn_shape_count(&l->bspec[b].shape));
    l->buffer_count = nb - l->buffer_offset;
    ntensors += l->nparams + l->nbuffers;
    size_t oc = nn_shape_count(&l->out);
    if (oc > widest) widest = oc;
    m->act_off[i] = act;
    act = add_sat(act, mul_sat((size_t)max_batch, oc));
    scratch = add_sat(scratch, add_sat(mul_sat((size_t)max_batch, l->scratch_per_sample),
                                       l->scratch_fixed));
  }
  size_t dsz = mul_sat((size_t)max_batch, widest);
  if (np == SIZE_MAX || nb == SIZE_MAX || act == SIZE_MAX || scratch == SIZE_MAX ||
      dsz == SIZE_MAX) {
    rc = nn_error_set(err, NN_ENOMEM, "model arenas overflow the address space");
    goto fail;
  }

  /* 4. Arenas. */
  m->nparams = np;
  m->nbuffers = nb;
  m->params = alloc_floats(np);
  m->grads = alloc_floats(np);
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

  /* 5. Views and the tensor table (parameters first, then buffers). */
  size_t so = 0;
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    size_t off = l->param_offset;
    for (int p = 0; p < l->nparams; p++) {
      nn_tensor_ref *t = &m->tensors[m->ntensors++];
      snprintf(t->layer, sizeof t->layer, "%s", l->cfg.name);
      snprintf(t->name, sizeof t->name, "%s", l->pspec[p].name);
      t->shape = l->pspec[p].shape;
      t->offset = off;
      t->count = nn_shape_count(&t->shape);
      l->param[p] = m->params + off;
      l->grad[p] = m->grads + off;
      off += t->count;
    }
    l->scratch = m->scratch + so;
    so += (size_t)max_batch * l->scratch_per_sample + l->scratch_fixed;
  }
  for (int i = 0; i < nl; i++) {
    nn_layer *l = &m->layers[i];
    size_t off = l->buffer_offset;
    for (int b = 0; b < l->nbuffers; b++) {
      nn_tensor_ref *t = &m->tensors[m->ntensors++];
      snprintf(t->layer, sizeof t->layer, "%s", l->cfg.name);
      snprintf(t->name, sizeof t->name, "%s", l->bspec[b].name);
      t->shape = l->bspec[b].shape;
      t->offset = off;
      t->count = nn_shape_count(&t->shape);
      t->is_buffer = 1;
      l->buffer[b] = m->buffers + off;
      off += t->count;
    }
  }
  for (int i = 0; i < nl; i++)
    if (m->layers[i].ops->bind) m->layers[i].ops->bind(&m->layers[i]);

  free(expanded);
  free(src);
  return 0;

fail:
  free(expanded);
  free(src);
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
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *l = &m->layers[i];
    float *y = m->act + m->act_off[i];
    l->ops->forward(l, cur, y, n, ctx);
    cur = y;
  }
  return cur;
}

void nn_model_backward_dx(nn_model *m, const float *x, const float *dout, float *dx, int n,
                          const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user) {
  int lowest = 0;
  if (!dx) {
    lowest = m->nlayers; /* no layer with parameters: nothing to do */
    for (int i = 0; i < m->nlayers; i++)
      if (m->layers[i].nparams > 0) {
        lowest = i;
        break;
      }
  }
  const float *dy = dout;
  int which = 0;
  for (int i = m->nlayers - 1; i >= lowest; i--) {
    nn_layer *l = &m->layers[i];
    const float *xin = i ? m->act + m->act_off[i - 1] : x;
    const float *y = m->act + m->act_off[i];
    float *dxi = i == 0 ? dx : i == lowest ? NULL : m->dbuf[which];
    l->ops->backward(l, xin, y, dy, dxi, n, ctx);
    if (ready && l->param_count > 0) ready(user, l->param_offset, l->param_count);
    dy = dxi;
    which ^= 1;
  }
}

void nn_model_backward(nn_model *m, const float *x, const float *dout, int n,
                       const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user) {
  nn_model_backward_dx(m, x, dout, NULL, n, ctx, ready, user);
}

void nn_model_zero_grad(nn_model *m) {
  if (m->nparams) memset(m->grads, 0, m->nparams * sizeof *m->grads);
}

void nn_model_layer_range(const nn_model *m, int i, size_t *offset, size_t *count) {
  const nn_layer *l = &m->layers[i];
  if (offset) *offset = l->param_offset;
  if (count) *count = l->param_count;
}

int nn_model_find_tensor(const nn_model *m, const char *layer, const char *name) {
  for (int i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].layer, layer) == 0 && strcmp(m->tensors[i].name, name) == 0)
      return i;
  return -1;
}
