/* test_core_layers.c: every layer type against finite differences, forward
 * reference values computed by hand, and the shared layer helpers (shapes,
 * initializer names, key-table defaults). */
#include <stdint.h>

#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/model.h"
#include "test.h"
#include "gradcheck_assert.h"

/* Tolerance on nn_gradcheck's element error (float layers, eps 1e-2; the
 * observed worst is about 4e-4). */


static nn_shape shape1(int a) { return (nn_shape){1, {a}}; }


/* Options that keep inputs 0.05 away from the corners of relu, leaky_relu,
 * elu, selu (0) and hard_sigmoid (+-2.5), over [-3.5, 3.5]. */
static nn_gradcheck_opts kink_opts(uint64_t seed) {
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = seed;
  o.n = 3;
  o.x_lo = -3.5f;
  o.x_hi = 3.5f;
  o.nkinks = 3;
  o.kinks[0] = 0.0;
  o.kinks[1] = -2.5;
  o.kinks[2] = 2.5;
  o.margin = 0.05;
  return o;
}

/* ---- gradient checks ------------------------------------------------------ */

static void test_grad_dense_bias(void) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", 4);
  nn_shape in = shape1(5);
  nn_gradcheck_opts o = kink_opts(1);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_dense_no_bias(void) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", 3);
  cfg_set_bool(&c, "use_bias", 0);
  nn_shape in = shape1(6);
  nn_gradcheck_opts o = kink_opts(2);
  CHECK_GRADS(&in, &c, 1, &o);
}

/* Dense on a [2, 3, 2] input treats it as 12 flat features. */
static void test_grad_dense_on_image_shape(void) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", 2);
  nn_shape in = {3, {2, 3, 2}};
  nn_gradcheck_opts o = kink_opts(3);
  CHECK_GRADS(&in, &c, 1, &o);
}

/* Each elementwise activation alone, away from kinks, over [-3.5, 3.5]. */
static void test_grad_each_activation(void) {
  static const char *const acts[] = {"relu", "leaky_relu", "elu", "selu", "softplus",
                                     "softsign", "tanh", "sigmoid", "hard_sigmoid"};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
    nn_layer_cfg c = cfg_of(acts[i]);
    nn_shape in = shape1(7);
    nn_gradcheck_opts o = kink_opts(10 + i);
    o.n = 4;
    fprintf(stderr, "  %s\n", acts[i]);
    CHECK_GRADS(&in, &c, 1, &o);
  }
}

static void test_grad_leaky_and_elu_alpha(void) {
  nn_layer_cfg c = cfg_of("leaky_relu");
  cfg_set(&c, "alpha", "%.17g", 0.3);
  nn_shape in = shape1(6);
  nn_gradcheck_opts o = kink_opts(20);
  CHECK_GRADS(&in, &c, 1, &o);
  c = cfg_of("elu");
  cfg_set(&c, "alpha", "%.17g", 0.5);
  o = kink_opts(21);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_softmax(void) {
  nn_layer_cfg c = cfg_of("softmax");
  nn_shape in = shape1(5);
  nn_gradcheck_opts o = kink_opts(30);
  o.x_lo = -2.0f;
  o.x_hi = 2.0f;
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_flatten(void) {
  nn_layer_cfg c = cfg_of("flatten");
  nn_shape in = {3, {2, 3, 2}};
  nn_gradcheck_opts o = kink_opts(40);
  CHECK_GRADS(&in, &c, 1, &o);
}

/* flatten -> dense(tanh) -> dense(sigmoid) -> dense -> softmax: the model's
 * ping-pong buffers, activation expansion and parameter arena together. */
static void test_grad_stack(void) {
  nn_layer_cfg c[5];
  c[0] = cfg_of("flatten");
  c[1] = cfg_of("dense");
  cfg_set(&c[1], "units", "%d", 6);
  snprintf(c[1].activation, sizeof c[1].activation, "tanh");
  c[2] = cfg_of("dense");
  cfg_set(&c[2], "units", "%d", 5);
  snprintf(c[2].activation, sizeof c[2].activation, "sigmoid");
  c[3] = cfg_of("dense");
  cfg_set(&c[3], "units", "%d", 4);
  cfg_set_bool(&c[3], "use_bias", 0);
  c[4] = cfg_of("softmax");
  nn_shape in = {3, {1, 2, 4}};
  nn_gradcheck_opts o = kink_opts(50);
  o.x_lo = -1.0f;
  o.x_hi = 1.0f;
  CHECK_GRADS(&in, c, 5, &o);
}

/* 1 if a one-layer model of c builds on input shape in. */
static int builds_on(const nn_layer_cfg *c, nn_shape in) {
  nn_model probe;
  nn_error pe;
  nn_error_clear(&pe);
  if (nn_model_build(&probe, &in, c, 1, 1, &pe) != 0) return 0;
  nn_model_free(&probe);
  return 1;
}

/* Every registered type, with its defaults (dense: units 3), so a type added
 * to the registry cannot go unchecked. */
static void test_grad_every_registered_type(void) {
  int count = 0;
  /* token ids for an embedding: 3 samples of [5] ids in [0, 4) */
  static const float ids[15] = {0, 1, 2, 3, 1, 3, 3, 0, 2, 2, 1, 0, 0, 3, 2};
  for (const nn_layer_ops *const *p = nn_layer_types(); *p; p++) {
    nn_layer_cfg c = cfg_of((*p)->type);
    if (nn_layer_cfg_num(&c, "units") == 0) cfg_set(&c, "units", "3"); /* NAN: no units */
    if ((*p)->forward_n) { /* merge layers: the input twice (both gradients add up) */
      c.ninputs = 2;
      snprintf(c.inputs[0], sizeof c.inputs[0], "input");
      snprintf(c.inputs[1], sizeof c.inputs[1], "input");
    }
    nn_gradcheck_opts o = kink_opts(60 + (uint64_t)count);
    /* Embeddings read integer ids [T]: a fixed input and no input gradient. */
    if (nn_layer_cfg_num(&c, "num_embeddings") == 0) {
      cfg_set(&c, "num_embeddings", "4");
      cfg_set(&c, "embedding_dim", "3");
      o.x = ids;
      o.no_dx = 1;
    }
    nn_shape in = shape1(5);
    /* Image layers (conv2d, pools) refuse a flat input: give them [2, 4, 4]
     * and the sizes they require; sequence layers (conv1d) a [T, C] = [6, 3]. */
    if (!builds_on(&c, in)) {
      in = (nn_shape){3, {2, 4, 4}};
      if (nn_layer_cfg_num(&c, "filters") == 0) cfg_set(&c, "filters", "2");
      if (nn_layer_cfg_ints(&c, "kernel_size", NULL, 0) == 0) cfg_set(&c, "kernel_size", "[3]");
      if (nn_layer_cfg_num(&c, "kernel_size") == 0) cfg_set(&c, "kernel_size", "3");
      if (nn_layer_cfg_ints(&c, "pool_size", NULL, 0) == 0) cfg_set(&c, "pool_size", "[2]");
      if (nn_layer_cfg_num(&c, "hidden_size") == 0) { /* rnn, lstm, gru: [T, C] sequences */
        in = (nn_shape){2, {4, 3}};
        cfg_set(&c, "hidden_size", "3");
      }
      if (!builds_on(&c, in)) in = (nn_shape){2, {6, 3}};
    }
    if (in.ndim == 2) o.x_lo = -1.0f, o.x_hi = 1.0f; /* sequences: smooth, no kinks to avoid */
    /* conv2d is linear in x and in its parameters, so central differences are
     * exact for any step, and a large one divides f's float rounding (inputs up to
     * 3.5) by much more: with the default 1e-2 that rounding alone made oneDNN's
     * blocked kernels miss by 7e-5 on a 0.0087 weight gradient (7e-3 against the
     * 1e-2 floor; the reference 1.5e-3). With 1: 4.3e-5 (reference 2.2e-5). */
    if (strcmp((*p)->type, "conv2d") == 0) o.eps = 1.0;
    fprintf(stderr, "  %s\n", (*p)->type);
    CHECK_GRADS(&in, &c, 1, &o);
    count++;
  }
  ASSERT_TRUE(count >= 12);
}

/* The checker itself must notice a wrong gradient: a relu checked straddling
 * its kink with a huge step disagrees with finite differences. */
static void test_gradcheck_detects_errors(void) {
  nn_layer_cfg c = cfg_of("relu");
  nn_shape in = shape1(8);
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = 7;
  o.eps = 0.5; /* steps across 0 for most inputs in [-0.4, 0.4] */
  o.x_lo = -0.4f;
  o.x_hi = 0.4f;
  nn_gradcheck_result r;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_gradcheck(&in, &c, 1, &o, &r, &e));
  ASSERT_TRUE(r.max_err > 0.1);
}

/* ---- forward reference values ------------------------------------------- */

/* Run one layer of `type` (cfg tweaked by caller) on x [n, k]; out [n, k']. */
static int run_forward(const nn_layer_cfg *c, int k, const float *x, int n, float *out,
                       size_t nout) {
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  nn_shape in = shape1(k);
  int rc = nn_model_build(&m, &in, c, 1, n, &e);
  if (rc) {
    fprintf(stderr, "build: %s\n", e.msg);
    return rc;
  }
  nn_model_init_params(&m, 1);
  nn_run_ctx ctx = {0};
  const float *y = nn_model_forward(&m, x, n, &ctx);
  memcpy(out, y, nout * sizeof *out);
  nn_model_free(&m);
  return 0;
}

static double act1(const char *type, double alpha, float x) {
  nn_layer_cfg c = cfg_of(type);
  if (alpha != 0) cfg_set(&c, "alpha", "%.17g", alpha);
  float y = NAN;
  if (run_forward(&c, 1, &x, 1, &y, 1) != 0) return NAN;
  return y;
}

static void test_forward_activation_values(void) {
  ASSERT_NEAR(act1("selu", 0, 1.0f), 1.0507009873554805, 1e-6);
  ASSERT_NEAR(act1("selu", 0, -1.0f), -1.1113307378125625, 1e-6);
  ASSERT_NEAR(act1("elu", 0, -1.0f), -0.6321205588285577, 1e-6);
  ASSERT_NEAR(act1("elu", 0.5, -1.0f), -0.31606027941427883, 1e-6);
  ASSERT_NEAR(act1("elu", 0, 2.0f), 2.0, 0);
  ASSERT_NEAR(act1("softplus", 0, 0.0f), 0.6931471805599453, 1e-6);
  ASSERT_NEAR(act1("softplus", 0, 1.0f), 1.3132616875182228, 1e-6);
  ASSERT_NEAR(act1("softplus", 0, 100.0f), 100.0, 1e-5);  /* no overflow */
  ASSERT_NEAR(act1("softplus", 0, -100.0f), 0.0, 1e-30);
  ASSERT_NEAR(act1("softsign", 0, 3.0f), 0.75, 1e-7);
  ASSERT_NEAR(act1("softsign", 0, -1.0f), -0.5, 1e-7);
  ASSERT_NEAR(act1("tanh", 0, 0.5f), 0.46211715726000974, 1e-6);
  ASSERT_NEAR(act1("sigmoid", 0, 0.0f), 0.5, 1e-7);
  ASSERT_NEAR(act1("sigmoid", 0, 2.0f), 0.8807970779778823, 1e-6);
  ASSERT_NEAR(act1("sigmoid", 0, -100.0f), 0.0, 1e-30);   /* no NaN */
  ASSERT_NEAR(act1("hard_sigmoid", 0, 1.0f), 0.7, 1e-7);
  ASSERT_NEAR(act1("hard_sigmoid", 0, -1.0f), 0.3, 1e-7);
  ASSERT_NEAR(act1("hard_sigmoid", 0, 3.0f), 1.0, 0);
  ASSERT_NEAR(act1("hard_sigmoid", 0, -3.0f), 0.0, 0);
  ASSERT_NEAR(act1("relu", 0, -1.0f), 0.0, 0);
  ASSERT_NEAR(act1("relu", 0, 2.5f), 2.5, 0);
  ASSERT_NEAR(act1("leaky_relu", 0, -2.0f), -0.02, 1e-8);
  ASSERT_NEAR(act1("leaky_relu", 0.2, -2.0f), -0.4, 1e-7);
  ASSERT_NEAR(act1("leaky_relu", 0, 3.0f), 3.0, 0);
}

static void test_forward_softmax_values(void) {
  nn_layer_cfg c = cfg_of("softmax");
  float x[6] = {1, 2, 3, 1000, 1000, -1000}, y[6];
  ASSERT_OK(run_forward(&c, 3, x, 2, y, 6));
  ASSERT_NEAR(y[0], 0.09003057317038046, 1e-6);
  ASSERT_NEAR(y[1], 0.24472847105479767, 1e-6);
  ASSERT_NEAR(y[2], 0.6652409557748219, 1e-6);
  ASSERT_NEAR(y[3], 0.5, 1e-6); /* large logits: no overflow */
  ASSERT_NEAR(y[4], 0.5, 1e-6);
  ASSERT_NEAR(y[5], 0.0, 1e-30);
}

/* W = [[1,2],[3,4],[5,6]], b = [0.5,-1,2]: x = [1,-1] -> [-0.5,-2,1],
 * x = [2, 0.5] -> [3.5, 7, 15]. */
static void test_forward_dense_values(void) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", 3);
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  nn_shape in = shape1(2);
  ASSERT_OK(nn_model_build(&m, &in, &c, 1, 2, &e));
  static const float w[6] = {1, 2, 3, 4, 5, 6}, b[3] = {0.5f, -1, 2};
  memcpy(m.layers[0].param[0], w, sizeof w);
  memcpy(m.layers[0].param[1], b, sizeof b);
  float x[4] = {1, -1, 2, 0.5f};
  nn_run_ctx ctx = {0};
  const float *y = nn_model_forward(&m, x, 2, &ctx);
  static const float want[6] = {-0.5f, -2, 1, 3.5f, 7, 15};
  for (int i = 0; i < 6; i++) ASSERT_NEAR(y[i], want[i], 1e-6);
  /* backward with dy = 1: db = n per unit, dW[j] = sum over samples of x */
  float dy[6] = {1, 1, 1, 1, 1, 1}, dx[4];
  nn_model_zero_grad(&m);
  nn_model_backward_dx(&m, x, dy, dx, 2, &ctx, NULL, NULL);
  for (int j = 0; j < 3; j++) {
    ASSERT_NEAR(m.layers[0].grad[0][j * 2 + 0], 3.0, 1e-6);
    ASSERT_NEAR(m.layers[0].grad[0][j * 2 + 1], -0.5, 1e-6);
    ASSERT_NEAR(m.layers[0].grad[1][j], 2.0, 1e-6);
  }
  /* dx = dy W = column sums of W = [9, 12] for each sample */
  ASSERT_NEAR(dx[0], 9, 1e-6);
  ASSERT_NEAR(dx[1], 12, 1e-6);
  ASSERT_NEAR(dx[2], 9, 1e-6);
  ASSERT_NEAR(dx[3], 12, 1e-6);
  nn_model_free(&m);
}

/* ---- helpers: shapes, init names, defaults ------------------------------ */

static void test_shapes(void) {
  nn_shape a = {3, {1, 28, 28}}, b = {3, {1, 28, 28}}, c = {2, {28, 28}};
  char buf[64];
  ASSERT_EQ_INT(nn_shape_count(&a), 784);
  ASSERT_TRUE(nn_shape_equal(&a, &b));
  ASSERT_TRUE(!nn_shape_equal(&a, &c));
  ASSERT_STR_EQ(nn_shape_str(&a, buf, sizeof buf), "[1, 28, 28]");
  nn_shape z = {0, {0}};
  ASSERT_STR_EQ(nn_shape_str(&z, buf, sizeof buf), "[]");
  ASSERT_STR_EQ(nn_shape_str(&a, buf, 5), "[1, ");
}

static void test_init_names(void) {
  ASSERT_EQ_INT(nn_init_parse("he_normal"), NN_INIT_HE_NORMAL);
  ASSERT_EQ_INT(nn_init_parse("glorot_uniform"), NN_INIT_GLOROT_UNIFORM);
  ASSERT_EQ_INT(nn_init_parse("zeros"), NN_INIT_ZEROS);
  ASSERT_EQ_INT(nn_init_parse("xavier"), -1);
  ASSERT_EQ_INT(nn_init_parse(""), -1);
  ASSERT_STR_CONTAINS(nn_init_choices, "he_uniform");
  ASSERT_TRUE(nn_is_activation("relu"));
  ASSERT_TRUE(nn_is_activation("softmax"));
  ASSERT_TRUE(!nn_is_activation("none"));
  ASSERT_TRUE(!nn_is_activation("rel"));
  ASSERT_TRUE(!nn_is_activation("dense"));
  /* every activation choice is a registered layer type */
  static const char *const acts[] = {"relu", "leaky_relu", "elu", "selu", "softplus",
                                     "softsign", "tanh", "sigmoid", "hard_sigmoid",
                                     "softmax"};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
    ASSERT_TRUE(nn_is_activation(acts[i]));
    ASSERT_TRUE(nn_layer_find(acts[i]) != NULL);
  }
}

static void test_layer_defaults(void) {
  nn_layer_cfg c = cfg_of("dense");
  ASSERT_EQ_INT(cfg_num(&c, "use_bias"), 1);
  ASSERT_EQ_INT(cfg_num(&c, "units"), 0); /* required: no default */
  ASSERT_STR_EQ(cfg_str(&c, "init"), "glorot_uniform");
  ASSERT_STR_EQ(c.activation, "none");
  nn_layer_cfg leaky = cfg_of("leaky_relu"), elu = cfg_of("elu");
  ASSERT_NEAR(cfg_num(&leaky, "alpha"), 0.01, 0);
  ASSERT_NEAR(cfg_num(&elu, "alpha"), 1.0, 0);
  nn_layer_cfg u;
  memset(&u, 0, sizeof u);
  snprintf(u.type, sizeof u.type, "dens");
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_layer_cfg_defaults(&u, &e), NN_ENOTFOUND);
  ASSERT_STR_CONTAINS(e.msg, "dens");
  /* every key of every type has a default that parses or is required */
  for (const nn_layer_ops *const *p = nn_layer_types(); *p; p++) {
    ASSERT_TRUE((*p)->keys != NULL);
    ASSERT_TRUE((*p)->help && (*p)->help[0]);
    for (const nn_key *k = (*p)->keys; k->name; k++)
      ASSERT_TRUE(k->def != NULL || (k->flags & NN_KEY_REQUIRED));
  }
}

/* A type's own options go through its key table into nn_layer_cfg.opts:
 * set and read back by name, never touching the fields every layer has;
 * structural keys (NN_KEY_CFG) land in nn_layer_cfg itself; misuse is an
 * error, not a write somewhere else. */
static void test_layer_options_by_key(void) {
  nn_error e;
  nn_error_clear(&e);
  nn_layer_cfg c = cfg_of("conv2d");
  ASSERT_OK(nn_layer_cfg_set(&c, "filters", "7", &e));
  ASSERT_OK(nn_layer_cfg_set(&c, "kernel_size", "[3, 5]", &e));
  ASSERT_OK(nn_layer_cfg_set(&c, "padding", "\"same\"", &e));
  ASSERT_OK(nn_layer_cfg_set(&c, "use_bias", "false", &e));
  ASSERT_OK(nn_layer_cfg_set(&c, "activation", "\"tanh\"", &e));
  ASSERT_NEAR(nn_layer_cfg_num(&c, "filters"), 7, 0);
  int k[4] = {0};
  ASSERT_EQ_INT(nn_layer_cfg_ints(&c, "kernel_size", k, 4), 2);
  ASSERT_EQ_INT(k[0], 3);
  ASSERT_EQ_INT(k[1], 5);
  ASSERT_STR_EQ(nn_layer_cfg_str(&c, "padding"), "same");
  ASSERT_NEAR(nn_layer_cfg_num(&c, "use_bias"), 0, 0);
  ASSERT_STR_EQ(c.activation, "tanh"); /* NN_KEY_CFG: the field itself */
  ASSERT_STR_EQ(nn_layer_cfg_str(&c, "activation"), "tanh");
  /* misuse */
  ASSERT_EQ_INT(nn_layer_cfg_set(&c, "units", "3", &e), NN_ENOTFOUND);
  ASSERT_STR_CONTAINS(e.msg, "layer type 'conv2d' has no key 'units'");
  ASSERT_EQ_INT(nn_layer_cfg_set(&c, "filters", "\"many\"", &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "key 'filters': '\"many\"' does not parse");
  ASSERT_EQ_INT(nn_layer_cfg_set(&c, "kernel_size", "[1, 2, 3]", &e), NN_ESCHEMA);
  ASSERT_NEAR(nn_layer_cfg_num(&c, "filters"), 7, 0); /* a refused value changes nothing */
  ASSERT_TRUE(isnan(nn_layer_cfg_num(&c, "units")));
  ASSERT_TRUE(nn_layer_cfg_str(&c, "filters") == NULL);
  ASSERT_EQ_INT(nn_layer_cfg_ints(&c, "filters", k, 4), -1);
  /* every type: each option set to a non-default value leaves the common
   * fields alone (its offsets are into its own options) */
  for (const nn_layer_ops *const *p = nn_layer_types(); *p; p++) {
    nn_layer_cfg a = cfg_of((*p)->type);
    snprintf(a.name, sizeof a.name, "keep");
    a.l1 = 0.5;
    a.activity_l2 = 0.25;
    a.frozen = 1;
    a.ninputs = 1;
    snprintf(a.inputs[0], sizeof a.inputs[0], "input");
    nn_layer_cfg before = a;
    for (const nn_key *key = (*p)->keys; key->name; key++) {
      if (key->flags & NN_KEY_CFG) continue;
      const char *text = key->type == NN_KEY_FLOAT                                 ? "0.125"
                         : key->type == NN_KEY_BOOL                                ? "true"
                         : key->type == NN_KEY_INT_LIST                            ? "[2, 2]"
                         : key->type == NN_KEY_STRING || key->type == NN_KEY_ENUM ? "\"x\""
                                                                                   : "2";
      ASSERT_OK(nn_layer_cfg_set(&a, key->name, text, &e));
      ASSERT_TRUE(key->offset < NN_LAYER_OPTS_MAX);
    }
    ASSERT_STR_EQ(a.type, before.type);
    ASSERT_STR_EQ(a.name, "keep");
    ASSERT_STR_EQ(a.activation, before.activation);
    ASSERT_EQ_INT(a.block_len, before.block_len);
    ASSERT_EQ_INT(a.projection, before.projection);
    ASSERT_NEAR(a.l1, 0.5, 0);
    ASSERT_NEAR(a.activity_l2, 0.25, 0);
    ASSERT_EQ_INT(a.frozen, 1);
    ASSERT_EQ_INT(a.ninputs, 1);
    ASSERT_STR_EQ(a.inputs[0], "input");
  }
}

/* A tensor over 2^31 - 1 elements is refused by shape at build, before any
 * arena is sized (a dense layer on a [1, 46340, 46340] input). */
static void test_huge_tensor_refused(void) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "2");
  nn_shape in = {3, {1, 46340, 46340}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_build(&m, &in, &c, 1, 1, &e), NN_ESHAPE);
  ASSERT_STR_CONTAINS(e.msg, "tensor 'weight' [2, 2147395600] has more than 2147483647 elements");
}

typedef struct demo_cfg {
  int i;
  int64_t big;
  double f, g, h;
  int b;
  char s[16];
  char en[8];
  int list[4];
  int nlist;
} demo_cfg;

static void test_key_default_literals(void) {
  const nn_key keys[] = {
      {"i", NN_KEY_INT, offsetof(demo_cfg, i), sizeof(int), 0, 0, "-1_000", NULL, 0, "", 0},
      {"big", NN_KEY_INT64, offsetof(demo_cfg, big), 8, 0, 0, "0x10", NULL, 0, "", 0},
      {"f", NN_KEY_FLOAT, offsetof(demo_cfg, f), 8, 0, 0, "1e-3", NULL, 0, "", 0},
      {"g", NN_KEY_FLOAT, offsetof(demo_cfg, g), 8, 0, 0, "-inf", NULL, 0, "", 0},
      {"h", NN_KEY_FLOAT, offsetof(demo_cfg, h), 8, 0, 0, "7", NULL, 0, "", 0},
      {"b", NN_KEY_BOOL, offsetof(demo_cfg, b), sizeof(int), 0, 1, "true", NULL, 0, "", 0},
      {"s", NN_KEY_STRING, offsetof(demo_cfg, s), 16, 0, 0, "\"a\\\"b\\\\c\"", NULL, 0, "", 0},
      {"en", NN_KEY_ENUM, offsetof(demo_cfg, en), 8, 0, 0, "'max'", "max|avg", 0, "", 0},
      {"list", NN_KEY_INT_LIST, offsetof(demo_cfg, list), 4, 0, 0, "[3, -2,5]", NULL, 0, "",
       offsetof(demo_cfg, nlist)},
      {0},
  };
  demo_cfg d;
  memset(&d, 0, sizeof d);
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_keys_apply_defaults(keys, &d, &e));
  ASSERT_EQ_INT(d.i, -1000);
  ASSERT_EQ_INT(d.big, 16);
  ASSERT_NEAR(d.f, 1e-3, 0);
  ASSERT_TRUE(isinf(d.g) && d.g < 0);
  ASSERT_NEAR(d.h, 7.0, 0);
  ASSERT_EQ_INT(d.b, 1);
  ASSERT_STR_EQ(d.s, "a\"b\\c");
  ASSERT_STR_EQ(d.en, "max");
  ASSERT_EQ_INT(d.nlist, 3);
  ASSERT_EQ_INT(d.list[0], 3);
  ASSERT_EQ_INT(d.list[1], -2);
  ASSERT_EQ_INT(d.list[2], 5);

  /* malformed defaults are reported, naming the key */
  const nn_key bad_int[] = {
      {"units", NN_KEY_INT, offsetof(demo_cfg, i), sizeof(int), 0, 0, "1.5", NULL, 0, "", 0},
      {0}};
  ASSERT_EQ_INT(nn_keys_apply_defaults(bad_int, &d, &e), NN_EINTERNAL);
  ASSERT_STR_CONTAINS(e.msg, "units");
  const nn_key bad_bool[] = {
      {"on", NN_KEY_BOOL, offsetof(demo_cfg, b), sizeof(int), 0, 1, "yes", NULL, 0, "", 0},
      {0}};
  ASSERT_EQ_INT(nn_keys_apply_defaults(bad_bool, &d, &e), NN_EINTERNAL);
  const nn_key long_str[] = {
      {"en", NN_KEY_ENUM, offsetof(demo_cfg, en), 8, 0, 0, "\"far too long\"", NULL, 0, "",
       0},
      {0}};
  ASSERT_EQ_INT(nn_keys_apply_defaults(long_str, &d, &e), NN_EINTERNAL);
  const nn_key long_list[] = {
      {"list", NN_KEY_INT_LIST, offsetof(demo_cfg, list), 4, 0, 0, "[1,2,3,4,5]", NULL, 0,
       "", offsetof(demo_cfg, nlist)},
      {0}};
  ASSERT_EQ_INT(nn_keys_apply_defaults(long_list, &d, &e), NN_EINTERNAL);
}

TEST_MAIN(TEST(test_grad_dense_bias), TEST(test_grad_dense_no_bias),
          TEST(test_grad_dense_on_image_shape), TEST(test_grad_each_activation),
          TEST(test_grad_leaky_and_elu_alpha), TEST(test_grad_softmax), TEST(test_grad_flatten),
          TEST(test_grad_stack), TEST(test_grad_every_registered_type),
          TEST(test_gradcheck_detects_errors), TEST(test_forward_activation_values),
          TEST(test_forward_softmax_values), TEST(test_forward_dense_values),
          TEST(test_shapes), TEST(test_init_names), TEST(test_layer_defaults),
          TEST(test_layer_options_by_key), TEST(test_huge_tensor_refused),
          TEST(test_key_default_literals))
