/* test_core_backward_from.c: nn_model_backward_from (core/model.h), the
 * backward from a hidden layer's output gradient that `nntrain dream` uses:
 *  - from a layer inside a residual body, whose input the block's add (after
 *    it) also reads: dx and the parameter gradients equal, bit for bit, those
 *    of the truncated model (the same layers up to it, same parameters) run
 *    with nn_model_backward_dx; layers after it get no gradient;
 *  - a layer before it that feeds only layers after it does not run;
 *  - from the last layer it is nn_model_backward_dx;
 *  - dx against central differences of sum(g * layer output);
 *  - a fused model and a layer index out of range are refused (NN_EUSAGE). */
#include <stdint.h>
#include <string.h>

#include "core/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "layer_cfg.h"
#include "test.h"

static nn_layer_cfg conv(int filters) {
  nn_layer_cfg c = cfg_of("conv2d");
  cfg_set(&c, "filters", "%d", filters);
  cfg_set(&c, "kernel_size", "[3, 3]");
  cfg_set(&c, "padding", "\"same\"");
  return c;
}

static const nn_shape in_shape = {3, {2, 6, 6}};
enum { NB = 3 };

/* conv2d0 -> tanh1 -> residual2[conv2d0] (+ tanh1) -> flatten3 -> dense4:
 * layers 0 conv2d0, 1 tanh1, 2 residual2.conv2d0, 3 residual2 (add),
 * 4 flatten3, 5 dense4. tanh, not relu: smooth for the differences. */
static int build_full(nn_model *m) {
  nn_layer_cfg c[6];
  c[0] = conv(3);
  c[1] = cfg_of("tanh");
  c[2] = cfg_block(1, 0);
  c[3] = conv(3);
  c[4] = cfg_of("flatten");
  c[5] = cfg_dense(4, NULL);
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, &in_shape, c, 6, NB, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  if (!rc) {
    nn_model_init_params(m, 11);
    nn_model_fuse(m, 0);
    nn_model_layouts(m, 0);
  }
  return rc;
}

/* The same layers up to the body's conv: conv2d0 -> tanh1 -> conv2d2. */
static int build_cut(nn_model *m) {
  nn_layer_cfg c[3] = {conv(3), cfg_of("tanh"), conv(3)};
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, &in_shape, c, 3, NB, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  if (!rc) {
    nn_model_fuse(m, 0);
    nn_model_layouts(m, 0);
  }
  return rc;
}

static void fill(float *a, size_t n, uint64_t key) {
  nn_rng r;
  nn_rng_init(&r, 5, NN_RNG_TEST, key, 0, 0);
  for (size_t i = 0; i < n; i++) a[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

#define NX (NB * 2 * 6 * 6)
#define NH (NB * 3 * 6 * 6)

static void test_matches_truncated_model(void) {
  nn_model a, b;
  ASSERT_OK(build_full(&a));
  ASSERT_OK(build_cut(&b));
  ASSERT_EQ_INT(a.nlayers, 6);
  ASSERT_STR_EQ(a.layers[2].cfg.name, "residual2.conv2d0");
  ASSERT_EQ_INT(nn_shape_count(&a.layers[2].out) * NB, NH);
  /* the arena is in layer order: b's parameters are a's first ones */
  ASSERT_TRUE(b.nparams < a.nparams);
  memcpy(b.params, a.params, b.nparams * sizeof *b.params);
  static float x[NX], g[NH], dxa[NX], dxb[NX];
  fill(x, NX, 1);
  fill(g, NH, 2);
  nn_run_ctx ctx = {.training = 0, .seed = 1};
  nn_error e;
  nn_error_clear(&e);
  nn_model_forward(&a, x, NB, &ctx);
  nn_model_zero_grad(&a);
  /* stale gradients where the add and flatten would write: must not leak in */
  for (size_t i = 0; i < (size_t)NH; i++) a.dact[a.act_off[3] + i] = 1e6f;
  ASSERT_OK(nn_model_backward_from(&a, x, 2, g, dxa, NB, &ctx, &e));
  nn_model_forward(&b, x, NB, &ctx);
  nn_model_zero_grad(&b);
  nn_model_backward_dx(&b, x, g, dxb, NB, &ctx, NULL, NULL);
  ASSERT_TRUE(memcmp(dxa, dxb, sizeof dxa) == 0);
  ASSERT_TRUE(memcmp(a.grads, b.grads, b.nparams * sizeof *b.grads) == 0);
  double nz = 0;
  for (size_t i = 0; i < (size_t)NX; i++) nz += fabsf(dxa[i]);
  ASSERT_TRUE(nz > 0);
  for (size_t i = b.nparams; i < a.ntrainable; i++) ASSERT_TRUE(a.grads[i] == 0.0f);
  /* a frozen pass: the same dx, no parameter gradient */
  nn_model_zero_grad(&a);
  static float dxf[NX];
  nn_run_ctx fz = ctx;
  fz.frozen = 1;
  ASSERT_OK(nn_model_backward_from(&a, x, 2, g, dxf, NB, &fz, &e));
  ASSERT_TRUE(memcmp(dxa, dxf, sizeof dxa) == 0);
  for (size_t i = 0; i < a.ntrainable; i++) ASSERT_TRUE(a.grads[i] == 0.0f);
  nn_model_free(&a);
  nn_model_free(&b);
}

/* Two convolutions of the input, "a" then "b", added: backward from "b"
 * must not run "a" (no gradient reaches it; its output gradient is stale):
 * dx equals that of a model of "b" alone. */
static void test_skips_layers_off_the_path(void) {
  nn_layer_cfg c[5];
  c[0] = conv(3);
  snprintf(c[0].name, sizeof c[0].name, "a");
  c[1] = conv(3);
  snprintf(c[1].name, sizeof c[1].name, "b");
  snprintf(c[1].inputs[0], sizeof c[1].inputs[0], "input");
  c[1].ninputs = 1;
  c[2] = cfg_of("add");
  snprintf(c[2].inputs[0], sizeof c[2].inputs[0], "a");
  snprintf(c[2].inputs[1], sizeof c[2].inputs[1], "b");
  c[2].ninputs = 2;
  c[3] = cfg_of("flatten");
  c[4] = cfg_dense(4, NULL);
  nn_model a, b;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&a, &in_shape, c, 5, NB, &e));
  nn_layer_cfg cb = conv(3);
  ASSERT_OK(nn_model_build(&b, &in_shape, &cb, 1, NB, &e));
  nn_model_init_params(&a, 12);
  nn_model_fuse(&a, 0);
  nn_model_layouts(&a, 0);
  nn_model_fuse(&b, 0);
  nn_model_layouts(&b, 0);
  size_t off, cnt;
  nn_model_layer_range(&a, 1, &off, &cnt);
  ASSERT_EQ_INT(cnt, b.nparams);
  memcpy(b.params, a.params + off, cnt * sizeof *b.params);
  static float x[NX], g[NH], dxa[NX], dxb[NX];
  fill(x, NX, 7);
  fill(g, NH, 8);
  nn_run_ctx ctx = {.training = 0, .seed = 1};
  nn_model_forward(&a, x, NB, &ctx);
  for (size_t i = 0; i < (size_t)NH; i++) a.dact[a.act_off[0] + i] = 1e6f; /* stale */
  nn_model_zero_grad(&a);
  ASSERT_OK(nn_model_backward_from(&a, x, 1, g, dxa, NB, &ctx, &e));
  nn_model_forward(&b, x, NB, &ctx);
  nn_model_zero_grad(&b);
  nn_model_backward_dx(&b, x, g, dxb, NB, &ctx, NULL, NULL);
  int same = memcmp(dxa, dxb, sizeof dxa) == 0;
  size_t oa, ca;
  nn_model_layer_range(&a, 0, &oa, &ca);
  for (size_t i = oa; i < oa + ca; i++) same &= a.grads[i] == 0.0f; /* "a" untouched */
  nn_model_free(&a);
  nn_model_free(&b);
  ASSERT_TRUE(same);
}

static void test_last_layer_is_backward_dx(void) {
  nn_model a;
  ASSERT_OK(build_full(&a));
  static float x[NX], g[NB * 4], dx1[NX], dx2[NX];
  fill(x, NX, 3);
  fill(g, NB * 4, 4);
  nn_run_ctx ctx = {.training = 0, .seed = 1};
  nn_error e;
  nn_error_clear(&e);
  nn_model_forward(&a, x, NB, &ctx);
  nn_model_zero_grad(&a);
  ASSERT_OK(nn_model_backward_from(&a, x, a.nlayers - 1, g, dx1, NB, &ctx, &e));
  float *g1 = malloc(a.ntrainable * sizeof *g1);
  ASSERT_TRUE(g1 != NULL);
  memcpy(g1, a.grads, a.ntrainable * sizeof *g1);
  nn_model_zero_grad(&a);
  nn_model_backward_dx(&a, x, g, dx2, NB, &ctx, NULL, NULL);
  int same = memcmp(dx1, dx2, sizeof dx1) == 0 &&
             memcmp(g1, a.grads, a.ntrainable * sizeof *g1) == 0;
  free(g1);
  nn_model_free(&a);
  ASSERT_TRUE(same);
}

/* sum(g * out_layer(x)) in double */
static double objective(nn_model *m, const float *x, int layer, const float *g) {
  nn_run_ctx ctx = {.training = 0, .seed = 1};
  nn_model_forward(m, x, NB, &ctx);
  const float *y = m->act + m->act_off[layer];
  double s = 0;
  for (size_t i = 0; i < (size_t)NH; i++) s += (double)g[i] * y[i];
  return s;
}

static void test_finite_differences(void) {
  nn_model a;
  ASSERT_OK(build_full(&a));
  static float x[NX], g[NH], dx[NX];
  fill(x, NX, 5);
  fill(g, NH, 6);
  nn_run_ctx ctx = {.training = 0, .seed = 1, .frozen = 1};
  nn_error e;
  nn_error_clear(&e);
  objective(&a, x, 3, g);
  ASSERT_OK(nn_model_backward_from(&a, x, 3, g, dx, NB, &ctx, &e)); /* the add's output */
  const float h = 1e-2f;
  for (int i = 0; i < NX; i += 7) {
    float x0 = x[i];
    x[i] = x0 + h;
    double fp = objective(&a, x, 3, g);
    x[i] = x0 - h;
    double fm = objective(&a, x, 3, g);
    x[i] = x0;
    double num = (fp - fm) / (2 * h);
    ASSERT_NEAR(dx[i], num, 2e-3 + 2e-3 * fabs(num));
  }
  nn_model_free(&a);
}

static void test_refusals(void) {
  nn_model a;
  ASSERT_OK(build_full(&a));
  static float x[NX], g[NH], dx[NX];
  nn_run_ctx ctx = {.training = 0, .seed = 1};
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_backward_from(&a, x, 6, g, dx, NB, &ctx, &e), NN_EUSAGE);
  ASSERT_EQ_INT(nn_model_backward_from(&a, x, -1, g, dx, NB, &ctx, &e), NN_EUSAGE);
  nn_model_free(&a);
  /* batchnorm -> relu (not last) fuses (core/model.h): refused until unfused */
  nn_layer_cfg c[4] = {conv(16), cfg_of("batchnorm"), cfg_of("relu"), cfg_of("flatten")};
  nn_model m;
  ASSERT_OK(nn_model_build(&m, &in_shape, c, 4, NB, &e));
  if (nn_model_fuse(&m, 1) == 0) {
    nn_model_free(&m);
    SKIP_TEST("NN_FUSE=0: nothing fused to refuse");
  }
  nn_model_forward(&m, x, NB, &ctx);
  int rc = nn_model_backward_from(&m, x, 1, g, dx, NB, &ctx, &e);
  nn_model_free(&m);
  ASSERT_EQ_INT(rc, NN_EUSAGE);
  ASSERT_TRUE(strstr(e.msg, "nn_model_fuse") != NULL);
}

/* nn_model_forward_from: from flatten3's output (layer 4) only dense4 runs
 * and gives the full forward's output bit for bit; from tanh1 (layer 1) the
 * residual's add reads tanh1 itself (fine), from conv2d0's body conv (layer
 * 2) the add reads tanh1, before it: refused; so are a layer out of range
 * and a fused model. */
static void test_forward_from(void) {
  nn_model a;
  ASSERT_OK(build_full(&a));
  static float x[NX];
  fill(x, NX, 21);
  nn_run_ctx ctx = {.training = 0, .seed = 1};
  size_t no = NB * nn_shape_count(&a.out), nh = NB * nn_shape_count(&a.layers[4].out);
  float *full = malloc(no * sizeof *full), *h = malloc(nh * sizeof *h);
  ASSERT_TRUE(full && h);
  memcpy(full, nn_model_forward(&a, x, NB, &ctx), no * sizeof *full);
  memcpy(h, a.act + a.act_off[4], nh * sizeof *h);
  memset(a.act, 0, sizeof(float) * a.act_off[4]); /* the layers before are not read */
  const float *out = NULL;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_forward_from(&a, 4, h, NB, &ctx, &out, &e));
  ASSERT_TRUE(out != NULL && memcmp(out, full, no * sizeof *full) == 0);
  ASSERT_OK(nn_model_forward_from(&a, 1, a.act + a.act_off[1], NB, &ctx, &out, &e));
  ASSERT_EQ_INT(nn_model_forward_from(&a, 2, h, NB, &ctx, &out, &e), NN_EUSAGE);
  ASSERT_TRUE(out == NULL && strstr(e.msg, "which comes before it") != NULL);
  ASSERT_EQ_INT(nn_model_forward_from(&a, 6, h, NB, &ctx, &out, &e), NN_EUSAGE);
  free(full);
  free(h);
  nn_model_free(&a);
  nn_layer_cfg c[4] = {conv(16), cfg_of("batchnorm"), cfg_of("relu"), cfg_of("flatten")};
  nn_model m;
  ASSERT_OK(nn_model_build(&m, &in_shape, c, 4, NB, &e));
  int fused = nn_model_fuse(&m, 1);
  int rc = nn_model_forward_from(&m, 0, x, NB, &ctx, &out, &e);
  nn_model_free(&m);
  if (fused) ASSERT_EQ_INT(rc, NN_EUSAGE);
}

TEST_MAIN(TEST(test_matches_truncated_model), TEST(test_skips_layers_off_the_path),
          TEST(test_last_layer_is_backward_dx),
          TEST(test_finite_differences), TEST(test_refusals), TEST(test_forward_from))
