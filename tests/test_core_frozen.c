/* test_core_frozen.c: frozen layers (job key `trainable = false`,
 * nn_layer_cfg.frozen) and frozen passes (nn_run_ctx.frozen):
 *  - the arena puts trainable layers' parameters first; with no frozen layer
 *    the layout is the usual one; frozen layers have no gradient views;
 *  - a frozen pass through every layer type with parameters (conv2d,
 *    batchnorm, prelu, dense, a residual block and its projection) leaves
 *    every gradient bit-identical and gives the same dx as a normal pass;
 *  - gradient checks of models with frozen layers: dx is right, and the
 *    trainable layers' gradients too (the signal flows through frozen ones);
 *  - blocks freeze whole; a frozen layer in a trainable block is refused;
 *  - optimizer slots exported to / imported from a whole-arena snapshot. */
#include <stdint.h>
#include <string.h>

#include "core/layer.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "test.h"
#include "gradcheck_assert.h"

static nn_layer_cfg conv(int filters) {
  nn_layer_cfg c = cfg_of("conv2d");
  cfg_set(&c, "filters", "%d", filters);
  cfg_set(&c, "kernel_size", "[3, 3]");
  cfg_set(&c, "padding", "\"same\"");
  return c;
}

static nn_layer_cfg prelu(void) {
  nn_layer_cfg c = cfg_of("prelu");
  cfg_set_bool(&c, "per_channel", 1);
  return c;
}

/* [2, 5, 5] -> conv(3) -> batchnorm -> prelu -> residual[conv(4)] + projection
 * -> flatten -> cfg_dense(6, tanh) -> cfg_dense(3): every layer type with parameters.
 * cfgs[9]. */
static void every_kind(nn_layer_cfg *c) {
  c[0] = conv(3);
  c[1] = cfg_of("batchnorm");
  c[2] = prelu();
  c[3] = cfg_block(1, 1);
  c[4] = conv(4);
  c[5] = cfg_of("flatten");
  c[6] = cfg_dense(6, "tanh");
  c[7] = cfg_dense(3, NULL);
  c[8] = cfg_of("flatten"); /* unused slot: keeps the array size fixed */
}
#define EVERY_KIND_N 8
static const nn_shape every_in = {3, {2, 5, 5}};

static int build(nn_model *m, const nn_layer_cfg *c, int n, const nn_shape *in, int maxb) {
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, in, c, n, maxb, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  return rc;
}

static void fill(float *a, size_t n, uint64_t key) {
  nn_rng r;
  nn_rng_init(&r, 7, NN_RNG_TEST, key, 0, 0);
  for (size_t i = 0; i < n; i++) a[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

/* With no frozen layer the arena is the usual one: layer order, no gaps. */
static void test_layout_unchanged_without_frozen(void) {
  nn_layer_cfg c[9];
  every_kind(c);
  nn_model m;
  ASSERT_OK(build(&m, c, EVERY_KIND_N, &every_in, 2));
  ASSERT_EQ_INT(m.ntrainable, m.nparams);
  size_t next = 0;
  for (int i = 0; i < m.nlayers; i++) {
    ASSERT_EQ_INT(m.layers[i].frozen, 0);
    ASSERT_EQ_INT(m.layers[i].param_offset, next);
    next += m.layers[i].param_count;
    for (int p = 0; p < m.layers[i].nparams; p++)
      ASSERT_TRUE(m.layers[i].grad[p] == m.grads + (m.layers[i].param[p] - m.params));
  }
  ASSERT_EQ_INT(next, m.nparams);
  nn_model_free(&m);
}

/* Frozen layers' parameters after the trainable ones', no gradient views,
 * tensor table in arena order; the block freezes its body and projection. */
static void test_layout_with_frozen(void) {
  nn_layer_cfg c[9];
  every_kind(c);
  c[0].frozen = 1; /* conv */
  c[3].frozen = 1; /* the block: its conv and projection too */
  nn_model m;
  ASSERT_OK(build(&m, c, EVERY_KIND_N, &every_in, 2));
  size_t frozen = 0;
  for (int i = 0; i < m.nlayers; i++) {
    const nn_layer *l = &m.layers[i];
    int want = !strcmp(l->cfg.name, "conv2d0") || !strncmp(l->cfg.name, "residual3", 9);
    ASSERT_EQ_INT(l->frozen, want);
    if (l->frozen) {
      frozen += l->param_count;
      if (l->param_count) ASSERT_TRUE(l->param_offset >= m.ntrainable);
      for (int p = 0; p < l->nparams; p++) ASSERT_TRUE(l->grad[p] == NULL);
    } else if (l->param_count) {
      ASSERT_TRUE(l->param_offset + l->param_count <= m.ntrainable);
      for (int p = 0; p < l->nparams; p++) ASSERT_TRUE(l->grad[p] != NULL);
    }
  }
  ASSERT_TRUE(frozen > 0);
  ASSERT_EQ_INT(m.ntrainable + frozen, m.nparams);
  size_t next = 0; /* the table follows the arena (what checkpoints rely on) */
  for (int k = 0; k < m.ntensors && !m.tensors[k].is_buffer; k++) {
    ASSERT_EQ_INT(m.tensors[k].offset, next);
    next += m.tensors[k].count;
  }
  ASSERT_EQ_INT(next, m.nparams);
  nn_model_free(&m);
}

/* A residual block is a graph of ordinary layers (body, shortcut, add), each
 * with its own range: one layer of a trainable block may be frozen alone. */
static void test_frozen_inside_trainable_block(void) {
  nn_layer_cfg c[4] = {cfg_block(2, 0), cfg_dense(4, "tanh"), cfg_dense(4, NULL), cfg_dense(2, NULL)};
  c[2].frozen = 1;
  nn_shape in = {1, {4}};
  nn_model m;
  ASSERT_OK(build(&m, c, 4, &in, 2));
  size_t frozen = 0;
  for (int i = 0; i < m.nlayers; i++) {
    const nn_layer *l = &m.layers[i];
    ASSERT_EQ_INT(l->frozen, !strcmp(l->cfg.name, "residual0.dense1"));
    if (l->frozen) frozen += l->param_count;
  }
  ASSERT_EQ_INT(frozen, 4 * 4 + 4);
  ASSERT_EQ_INT(m.ntrainable, m.nparams - frozen);
  nn_model_free(&m);
}

typedef struct ready_log {
  int calls;
} ready_log;
static void on_ready(void *user, size_t off, size_t cnt) {
  (void)off;
  (void)cnt;
  ((ready_log *)user)->calls++;
}

/* A frozen pass: grads untouched (bit for bit), no ready call, dx the same
 * as the normal pass's; in training and evaluation mode. */
static void test_frozen_pass(void) {
  for (int training = 0; training < 2; training++) {
    nn_layer_cfg c[9];
    every_kind(c);
    nn_model m;
    const int n = 3;
    ASSERT_OK(build(&m, c, EVERY_KIND_N, &every_in, n));
    nn_model_init_params(&m, 11);
    size_t nx = (size_t)n * nn_shape_count(&m.in), ny = (size_t)n * nn_shape_count(&m.out);
    float x[3 * 50], g[3 * 3], dx0[3 * 50], dx1[3 * 50];
    ASSERT_TRUE(nx <= 150 && ny <= 9);
    fill(x, nx, 1);
    fill(g, ny, 2);
    fill(m.params, m.nparams, 3); /* break symmetry, nonzero slopes and biases */
    nn_run_ctx ctx = {.training = training, .seed = 5};
    nn_model_zero_grad(&m);
    nn_model_forward(&m, x, n, &ctx);
    nn_model_backward_dx(&m, x, g, dx0, n, &ctx, NULL, NULL);

    float *sentinel = malloc(m.ntrainable * sizeof(float));
    ASSERT_TRUE(sentinel != NULL);
    fill(m.grads, m.ntrainable, 4);
    memcpy(sentinel, m.grads, m.ntrainable * sizeof(float));
    nn_run_ctx fz = ctx;
    fz.frozen = 1;
    ready_log log = {0};
    nn_model_forward(&m, x, n, &fz);
    nn_model_backward_dx(&m, x, g, dx1, n, &fz, on_ready, &log);
    ASSERT_TRUE(memcmp(sentinel, m.grads, m.ntrainable * sizeof(float)) == 0);
    ASSERT_EQ_INT(log.calls, 0);
    ASSERT_TRUE(memcmp(dx0, dx1, nx * sizeof(float)) == 0);
    /* without dx a frozen pass has nothing to do: still untouched */
    nn_model_backward_dx(&m, x, g, NULL, n, &fz, on_ready, &log);
    ASSERT_TRUE(memcmp(sentinel, m.grads, m.ntrainable * sizeof(float)) == 0);
    ASSERT_EQ_INT(log.calls, 0);
    free(sentinel);
    nn_model_free(&m);
  }
}

/* every_kind's layers with prelu first, where the input keeps clear of its
 * kink (finite differences across a kink deeper in the stack are noise). */
static void smooth_kind(nn_layer_cfg *c) {
  every_kind(c);
  nn_layer_cfg p = c[2];
  c[2] = c[1];
  c[1] = c[0];
  c[0] = p;
}

/* Frozen layers give the right dx (finite differences), and the trainable
 * layers below them the right parameter gradients (gradcheck skips the
 * frozen tensors, which have no gradient). */
static void test_gradcheck_with_frozen(void) {
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = 3;
  o.n = 2;
  o.training = 1;
  o.nkinks = 1;
  o.kinks[0] = 0.0;
  o.margin = 0.05;
  nn_layer_cfg c[9];
  smooth_kind(c);
  c[0].frozen = 1; /* prelu */
  c[3].frozen = 1; /* block with projection */
  c[6].frozen = 1; /* dense + tanh */
  CHECK_GRADS_TOL(&every_in, c, EVERY_KIND_N, &o, 8e-3);
  smooth_kind(c); /* everything frozen (the block's conv by the block): dx only */
  for (int i = 0; i < EVERY_KIND_N; i++) c[i].frozen = i != 4;
  CHECK_GRADS_TOL(&every_in, c, EVERY_KIND_N, &o, 8e-3);
}

/* The trainable layer below a frozen one gets exactly the gradient it gets
 * when nothing is frozen (same parameters), and the frozen layer none. */
static void test_trainable_below_frozen(void) {
  nn_layer_cfg a[3] = {cfg_dense(5, "tanh"), cfg_dense(4, "tanh"), cfg_dense(2, NULL)};
  nn_layer_cfg b[3] = {cfg_dense(5, "tanh"), cfg_dense(4, "tanh"), cfg_dense(2, NULL)};
  b[1].frozen = 1;
  b[2].frozen = 1;
  nn_shape in = {1, {3}};
  nn_model ma, mb;
  ASSERT_OK(build(&ma, a, 3, &in, 2));
  ASSERT_OK(build(&mb, b, 3, &in, 2));
  ASSERT_EQ_INT(mb.ntrainable, ma.layers[0].param_count);
  nn_model_init_params(&ma, 9);
  for (int i = 0; i < ma.ntensors; i++) { /* same values, by name */
    const nn_tensor_ref *t = &ma.tensors[i];
    int j = nn_model_find_tensor(&mb, t->layer, t->name);
    ASSERT_TRUE(j >= 0);
    memcpy(mb.params + mb.tensors[j].offset, ma.params + t->offset, t->count * sizeof(float));
  }
  float x[6], g[4];
  fill(x, 6, 5);
  fill(g, 4, 6);
  nn_run_ctx ctx = {.training = 1};
  nn_model_zero_grad(&ma);
  nn_model_zero_grad(&mb);
  nn_model_forward(&ma, x, 2, &ctx);
  nn_model_backward(&ma, x, g, 2, &ctx, NULL, NULL);
  nn_model_forward(&mb, x, 2, &ctx);
  ready_log log = {0};
  nn_model_backward(&mb, x, g, 2, &ctx, on_ready, &log);
  ASSERT_EQ_INT(log.calls, 1); /* dense0 only */
  ASSERT_TRUE(memcmp(ma.grads, mb.grads, mb.ntrainable * sizeof(float)) == 0);
  nn_model_free(&ma);
  nn_model_free(&mb);
}

TEST_MAIN(TEST(test_layout_unchanged_without_frozen), TEST(test_layout_with_frozen),
          TEST(test_frozen_inside_trainable_block), TEST(test_frozen_pass),
          TEST(test_gradcheck_with_frozen), TEST(test_trainable_below_frozen))
