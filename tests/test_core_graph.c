/* test_core_graph.c: layer graphs (core/model.h): named inputs, branches,
 * the merge layers add, concat and multiply (finite-difference checks of the
 * gradient of every input and parameter), the sum of a shared tensor's
 * gradients, and the build-time errors (unknown or later inputs, shapes,
 * unread outputs). */
#include <stdint.h>

#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/model.h"
#include "test.h"
#include "gradcheck_assert.h"

/* A config of `type` named `name` reading `ins` (NULL-terminated; NULL = the
 * previous layer). */
static nn_layer_cfg node(const char *type, const char *name, const char *const *ins) {
  nn_layer_cfg c = cfg_of(type);
  snprintf(c.name, sizeof c.name, "%s", name);
  for (int k = 0; ins && ins[k]; k++)
    snprintf(c.inputs[c.ninputs++], sizeof c.inputs[0], "%s", ins[k]);
  return c;
}

static nn_layer_cfg dense(const char *name, int units, const char *const *ins) {
  nn_layer_cfg c = node("dense", name, ins);
  cfg_set(&c, "units", "%d", units);
  return c;
}

static nn_layer_cfg conv(const char *name, int filters, int k, const char *const *ins) {
  nn_layer_cfg c = node("conv2d", name, ins);
  cfg_set(&c, "filters", "%d", filters);
  cfg_set(&c, "kernel_size", "[%d]", k);
  cfg_set(&c, "padding", "\"same\"");
  return c;
}

static nn_gradcheck_opts opts(uint64_t seed) {
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = seed;
  o.n = 3;
  return o;
}

static const char *const IN[] = {"input", NULL};
static const char *const AB[] = {"a", "b"};

/* x -> a = dense(x), b = tanh(dense(x)) -> merge(a, b) -> dense: every merge
 * type, gradients w.r.t. x (two readers), both branches' parameters. */
static void test_grad_merge_two_branches(void) {
  const char *types[] = {"add", "concat", "multiply"};
  for (int t = 0; t < 3; t++) {
    const char *ab[] = {AB[0], AB[1], NULL};
    nn_layer_cfg c[5] = {dense("a", 4, NULL), dense("b0", 4, IN), node("tanh", "b", NULL),
                         node(types[t], "m", ab), dense("out", 3, NULL)};
    nn_shape in = {1, {5}};
    nn_gradcheck_opts o = opts(10 + (uint64_t)t);
    fprintf(stderr, "  %s\n", types[t]);
    CHECK_GRADS(&in, c, 5, &o);
  }
}

/* Three inputs to each merge, one of them the model input itself, and a
 * tensor read three times (x: by a, by b, by the merge). */
static void test_grad_merge_three_inputs(void) {
  const char *types[] = {"add", "concat", "multiply"};
  for (int t = 0; t < 3; t++) {
    const char *abx[] = {"a", "b", "input", NULL};
    nn_layer_cfg c[4] = {dense("a", 4, NULL), dense("b", 4, IN), node(types[t], "m", abx),
                         dense("out", 2, NULL)};
    nn_shape in = {1, {4}};
    nn_gradcheck_opts o = opts(20 + (uint64_t)t);
    fprintf(stderr, "  %s\n", types[t]);
    CHECK_GRADS(&in, c, 4, &o);
  }
}

/* An Inception-like module on images: 1x1 | 1x1 -> 3x3 | avgpool 'same' ->
 * 1x1, concatenated along channels. */
static void test_grad_concat_images(void) {
  const char *const br[] = {"b1", "b2", "b3", NULL};
  nn_layer_cfg pool = node("avgpool", "p", IN);
  cfg_set(&pool, "pool_size", "[%d]", 3);
  cfg_set(&pool, "stride", "[%d]", 1);
  cfg_set(&pool, "padding", "\"same\"");
  nn_layer_cfg c[7] = {conv("b1", 2, 1, NULL), conv("r2", 2, 1, IN), conv("b2", 3, 3, NULL),
                       pool, conv("b3", 1, 1, NULL), node("concat", "cat", br),
                       node("global_avgpool", "gap", NULL)};
  nn_shape in = {3, {2, 4, 4}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 7, 1, &e));
  ASSERT_EQ_INT(m.layers[5].out.dim[0], 6);
  ASSERT_EQ_INT(m.layers[5].out.dim[1], 4);
  ASSERT_EQ_INT(m.layers[3].out.dim[2], 4); /* 'same' pooling keeps the size at stride 1 */
  nn_model_free(&m);
  nn_gradcheck_opts o = opts(30);
  CHECK_GRADS(&in, c, 7, &o);
}

/* Values: concat puts each sample's input blocks in order; add and multiply
 * are element-wise; a tensor read by two layers gets the sum of gradients. */
static void test_merge_values(void) {
  const char *const xx[] = {"input", "input", NULL};
  nn_shape in = {1, {2}};
  float x[4] = {1, 2, 3, 4}, dy[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dx[4];
  nn_run_ctx ctx = {0};
  nn_error e;
  nn_model m;
  nn_layer_cfg c = node("concat", "c", xx);
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, &c, 1, 2, &e));
  const float *y = nn_model_forward(&m, x, 2, &ctx);
  static const float want[8] = {1, 2, 1, 2, 3, 4, 3, 4};
  for (int i = 0; i < 8; i++) ASSERT_NEAR(y[i], want[i], 0);
  nn_model_backward_dx(&m, x, dy, dx, 2, &ctx, NULL, NULL);
  ASSERT_NEAR(dx[0], 1 + 3, 0);
  ASSERT_NEAR(dx[1], 2 + 4, 0);
  ASSERT_NEAR(dx[2], 5 + 7, 0);
  ASSERT_NEAR(dx[3], 6 + 8, 0);
  nn_model_free(&m);
  c = node("multiply", "m", xx);
  ASSERT_OK(nn_model_build(&m, &in, &c, 1, 2, &e));
  y = nn_model_forward(&m, x, 2, &ctx);
  ASSERT_NEAR(y[3], 16, 0);
  nn_model_backward_dx(&m, x, dy, dx, 2, &ctx, NULL, NULL);
  ASSERT_NEAR(dx[3], 2 * 4 * 4, 0); /* d(x^2) = 2x dy */
  nn_model_free(&m);
}

/* Without an input gradient, branches with no parameters below them are
 * skipped and the parameter gradients equal those of the full pass. */
static void test_backward_without_dx(void) {
  const char *ab[] = {"a", "b", NULL};
  nn_layer_cfg c[4] = {node("relu", "a", NULL), dense("b", 3, IN), node("concat", "m", ab),
                       dense("out", 2, NULL)};
  nn_shape in = {1, {3}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 4, 2, &e));
  ASSERT_EQ_INT(m.need[0], 0);
  ASSERT_EQ_INT(m.need[1], 1);
  nn_model_init_params(&m, 5);
  float x[6] = {0.5f, -1, 2, 1, 0.25f, -0.5f}, dy[4] = {1, -2, 0.5f, 3}, dx[6];
  nn_run_ctx ctx = {0};
  nn_model_forward(&m, x, 2, &ctx);
  nn_model_zero_grad(&m);
  nn_model_backward_dx(&m, x, dy, dx, 2, &ctx, NULL, NULL);
  float *keep = malloc(m.nparams * sizeof *keep);
  ASSERT_TRUE(keep != NULL);
  memcpy(keep, m.grads, m.nparams * sizeof *keep);
  nn_model_zero_grad(&m);
  nn_model_backward(&m, x, dy, 2, &ctx, NULL, NULL);
  ASSERT_TRUE(memcmp(keep, m.grads, m.nparams * sizeof *keep) == 0);
  free(keep);
  nn_model_free(&m);
}

/* Naming a dense config with an activation reads the activation's output. */
static void test_activation_alias(void) {
  const char *const d[] = {"d", NULL}, *const ef[] = {"e", "f", NULL};
  nn_layer_cfg c[4] = {dense("d", 3, NULL), dense("e", 3, NULL), dense("f", 3, d),
                       node("add", "g", ef)};
  snprintf(c[0].activation, sizeof c[0].activation, "relu");
  nn_shape in = {1, {3}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 4, 1, &e));
  ASSERT_EQ_INT(m.nlayers, 5);
  ASSERT_EQ_INT(m.layers[2].src[0], 1); /* e: the previous layer, d's relu */
  ASSERT_STR_EQ(m.layers[3].cfg.inputs[0], "d_relu");
  ASSERT_EQ_INT(m.layers[3].src[0], 1); /* f reads d's relu */
  ASSERT_EQ_INT(m.layers[4].src[0], 2);
  ASSERT_EQ_INT(m.layers[4].src[1], 3);
  nn_model_free(&m);
}

#define BUILD_FAILS(cfgs, ncfg, inshape, code, text)                         \
  do {                                                                      \
    nn_model m_;                                                            \
    nn_error e_;                                                            \
    nn_error_clear(&e_);                                                    \
    ASSERT_EQ_INT(nn_model_build(&m_, (inshape), (cfgs), (ncfg), 1, &e_), (code)); \
    ASSERT_STR_CONTAINS(e_.msg, text);                                      \
  } while (0)

static void test_build_errors(void) {
  nn_shape in = {1, {4}};
  const char *const later[] = {"b", NULL}, *const ab[] = {"a", "b", NULL};
  /* an input that is not above the layer (later, unknown, itself) */
  nn_layer_cfg f1[2] = {dense("a", 4, later), dense("b", 4, NULL)};
  BUILD_FAILS(f1, 2, &in, NN_ESCHEMA,
              "layer 0 'a' (dense): input 'b' is not a layer above this one");
  const char *const self[] = {"a", NULL};
  nn_layer_cfg f2[1] = {dense("a", 4, self)};
  BUILD_FAILS(f2, 1, &in, NN_ESCHEMA, "input 'a' is not a layer above");
  /* shapes: add of [4] and [3]; concat of images whose sizes differ */
  nn_layer_cfg f3[3] = {dense("a", 4, NULL), dense("b", 3, IN), node("add", "s", ab)};
  BUILD_FAILS(f3, 3, &in, NN_ESHAPE, "layer 2 's' (add): input 'b' is [3], 'a' is [4]: shapes differ");
  nn_layer_cfg pool = node("maxpool", "b", IN);
  cfg_set(&pool, "pool_size", "[%d]", 2);
  nn_shape img = {3, {1, 4, 4}};
  nn_layer_cfg f4[3] = {conv("a", 2, 3, NULL), pool, node("concat", "cat", ab)};
  BUILD_FAILS(f4, 3, &img, NN_ESHAPE,
              "layer 2 'cat' (concat): input 'b' is [1, 2, 2], 'a' is [2, 4, 4]: spatial sizes "
              "differ");
  /* a merge of one input; a single-input layer given two */
  nn_layer_cfg f5[2] = {dense("a", 4, NULL), node("add", "s", NULL)};
  BUILD_FAILS(f5, 2, &in, NN_ESCHEMA, "reads two or more inputs, got 1");
  nn_layer_cfg f6[3] = {dense("a", 4, NULL), dense("b", 4, IN), dense("c", 2, ab)};
  BUILD_FAILS(f6, 3, &in, NN_ESCHEMA, "layer 2 'c' (dense): takes one input, got 2");
  /* a branch nobody reads */
  nn_layer_cfg f7[3] = {dense("a", 4, NULL), dense("b", 4, IN), dense("c", 2, NULL)};
  BUILD_FAILS(f7, 3, &in, NN_ESCHEMA, "layer 0 'a' (dense): its output is not read by any layer");
}

TEST_MAIN(TEST(test_grad_merge_two_branches), TEST(test_grad_merge_three_inputs),
          TEST(test_grad_concat_images), TEST(test_merge_values), TEST(test_backward_without_dx),
          TEST(test_activation_alias), TEST(test_build_errors))
