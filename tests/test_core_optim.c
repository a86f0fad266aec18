/* test_core_optim.c: optimizers (core/optim.h) step by step against an
 * independent double-precision implementation of the PyTorch rules, against
 * literal values computed separately (python, float64), and the key table,
 * validation, slot layout and step counter. */
#include "core/optim.h"

#include <stdint.h>

#include "test.h"

enum { N = 3, STEPS = 3 };
/* Three steps of gradients on three parameters, and a changing lr as a
 * schedule would give. */
static const double G[STEPS][N] = {{0.5, -1.0, 0.0}, {0.25, 0.5, -2.0}, {-0.125, 0.75, 1.0}};
static const double P0[N] = {1.0, -2.0, 0.5};
static const double LR[STEPS] = {0.1, 0.05, 0.1};

static nn_optim_cfg cfg_of(const char *type) {
  nn_optim_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.type, sizeof c.type, "%s", type);
  c.lr = 0.001;
  c.momentum = 0;
  c.nesterov = 0;
  c.beta1 = 0.9;
  c.beta2 = 0.999;
  c.eps = 1e-8;
  c.weight_decay = 0;
  return c;
}

/* Reference: the update rules as written in the PyTorch docs, in double.
 * kind 0 sgd, 1 adam, 2 adamw. p, s0, s1: [N], updated for one step t. */
static void ref_step(int kind, const nn_optim_cfg *c, double *p, double *s0, double *s1,
                     const double *g, double lr, int t) {
  for (int i = 0; i < N; i++) {
    double gi = g[i];
    if (kind == 0) {
      gi += c->weight_decay * p[i];
      if (c->momentum > 0) {
        s0[i] = c->momentum * s0[i] + gi;
        gi = c->nesterov ? gi + c->momentum * s0[i] : s0[i];
      }
      p[i] -= lr * gi;
    } else {
      if (kind == 2) p[i] -= lr * c->weight_decay * p[i];
      else gi += c->weight_decay * p[i];
      s0[i] = c->beta1 * s0[i] + (1 - c->beta1) * gi;
      s1[i] = c->beta2 * s1[i] + (1 - c->beta2) * gi * gi;
      double mhat = s0[i] / (1 - pow(c->beta1, t));
      double vhat = s1[i] / (1 - pow(c->beta2, t));
      p[i] -= lr * mhat / (sqrt(vhat) + c->eps);
    }
  }
}

/* Runs STEPS steps of the library and the reference side by side and checks
 * params and slots after every step. Leaves the final float params in out. */
static int run_and_compare(int kind, const nn_optim_cfg *c, float out[N]) {
  nn_optim o;
  nn_error err;
  nn_error_clear(&err);
  if (nn_optim_init(&o, c, N, &err) != 0) {
    fprintf(stderr, "init failed: %s\n", err.msg);
    return 0;
  }
  float p[N], g[N];
  double rp[N], r0[N] = {0}, r1[N] = {0};
  for (int i = 0; i < N; i++) p[i] = (float)(rp[i] = P0[i]);
  int ok = 1;
  for (int s = 0; s < STEPS && ok; s++) {
    for (int i = 0; i < N; i++) g[i] = (float)G[s][i];
    nn_optim_step(&o, p, g, LR[s]);
    ref_step(kind, c, rp, r0, r1, G[s], LR[s], s + 1);
    if (o.t != (uint64_t)s + 1) ok = 0;
    for (int i = 0; i < N; i++) {
      double tol = 2e-6 * (1 + fabs(rp[i]));
      if (fabs(p[i] - rp[i]) > tol) ok = 0;
      if (o.nslots >= 1 && fabs(o.slots[i] - r0[i]) > 2e-6 * (1 + fabs(r0[i]))) ok = 0;
      if (o.nslots >= 2 && fabs(o.slots[N + i] - r1[i]) > 2e-6 * (1 + fabs(r1[i]))) ok = 0;
      if (!ok)
        fprintf(stderr, "step %d param %d: got %.9g (slot0 %.9g) want %.9g (slot0 %.9g)\n",
                s + 1, i, p[i], o.nslots ? o.slots[i] : 0.0, rp[i], r0[i]);
    }
    /* the gradient is not modified */
    for (int i = 0; i < N; i++)
      if (g[i] != (float)G[s][i]) ok = 0;
  }
  memcpy(out, p, sizeof p);
  nn_optim_free(&o);
  return ok;
}

static void test_sgd_plain(void) {
  nn_optim_cfg c = cfg_of("sgd");
  c.weight_decay = 0.01;
  float p[N];
  ASSERT_TRUE(run_and_compare(0, &c, p));
  /* python float64: 0.947589474, -1.99512895, 0.498651 */
  ASSERT_NEAR(p[0], 0.947589474, 1e-6);
  ASSERT_NEAR(p[1], -1.99512895, 1e-6);
  ASSERT_NEAR(p[2], 0.498651, 1e-6);
  /* one step by hand: 1 - 0.1 * (0.5 + 0.01 * 1) = 0.949 */
  nn_optim o;
  ASSERT_OK(nn_optim_init(&o, &c, 1, NULL));
  float q = 1.0f, gq = 0.5f;
  nn_optim_step(&o, &q, &gq, 0.1);
  nn_optim_free(&o);
  ASSERT_NEAR(q, 0.949, 1e-7);
}

static void test_sgd_momentum(void) {
  nn_optim_cfg c = cfg_of("sgd");
  c.momentum = 0.9;
  float p[N];
  ASSERT_TRUE(run_and_compare(0, &c, p));
  /* by hand, param 0: buf 0.5 -> 0.7 -> 0.505;
   * p = 1 - 0.1*0.5 - 0.05*0.7 - 0.1*0.505 = 0.8645 */
  ASSERT_NEAR(p[0], 0.8645, 1e-6);
  ASSERT_NEAR(p[1], -1.919, 1e-6);
  ASSERT_NEAR(p[2], 0.68, 1e-6);
}

static void test_sgd_nesterov(void) {
  nn_optim_cfg c = cfg_of("sgd");
  c.momentum = 0.9;
  c.nesterov = 1;
  c.weight_decay = 0.01;
  float p[N];
  ASSERT_TRUE(run_and_compare(0, &c, p));
  /* python float64 */
  ASSERT_NEAR(p[0], 0.821796654, 1e-6);
  ASSERT_NEAR(p[1], -1.91441281, 1e-6);
  ASSERT_NEAR(p[2], 0.658296763, 1e-6);
}

static void test_adam(void) {
  nn_optim_cfg c = cfg_of("adam");
  float p[N];
  ASSERT_TRUE(run_and_compare(1, &c, p));
  ASSERT_NEAR(p[0], 0.797024885, 2e-6);
  ASSERT_NEAR(p[1], -1.9052001, 2e-6);
  ASSERT_NEAR(p[2], 0.560070878, 2e-6);

  /* First Adam step moves each parameter by lr * g / (|g| + eps'): by lr
   * against the sign of the gradient, and not at all where g = 0. */
  nn_optim o;
  ASSERT_OK(nn_optim_init(&o, &c, N, NULL));
  float q[N] = {1.0f, -2.0f, 0.5f}, g[N] = {0.5f, -1.0f, 0.0f};
  nn_optim_step(&o, q, g, 0.1);
  ASSERT_NEAR(q[0], 0.9, 1e-6);
  ASSERT_NEAR(q[1], -1.9, 1e-6);
  ASSERT_NEAR(q[2], 0.5, 0);
  nn_optim_free(&o);

  c.weight_decay = 0.1; /* L2 in the gradient */
  ASSERT_TRUE(run_and_compare(1, &c, p));
  ASSERT_NEAR(p[0], 0.782878167, 2e-6);
  ASSERT_NEAR(p[1], -1.87073458, 2e-6);
  ASSERT_NEAR(p[2], 0.455902181, 2e-6);
}

static void test_adamw(void) {
  nn_optim_cfg c = cfg_of("adamw");
  c.weight_decay = 0.1;
  float p[N];
  ASSERT_TRUE(run_and_compare(2, &c, p));
  ASSERT_NEAR(p[0], 0.774185475, 2e-6);
  ASSERT_NEAR(p[1], -1.85722726, 2e-6);
  ASSERT_NEAR(p[2], 0.54729856, 2e-6);
  /* decoupled decay differs from Adam's L2 */
  nn_optim_cfg a = cfg_of("adam");
  a.weight_decay = 0.1;
  float pa[N];
  ASSERT_TRUE(run_and_compare(1, &a, pa));
  ASSERT_TRUE(fabs(pa[2] - p[2]) > 0.05);
  /* with weight_decay 0, adamw is adam */
  c.weight_decay = 0;
  a.weight_decay = 0;
  ASSERT_TRUE(run_and_compare(2, &c, p));
  ASSERT_TRUE(run_and_compare(1, &a, pa));
  for (int i = 0; i < N; i++) ASSERT_NEAR(p[i], pa[i], 0);
}

static void test_slot_layout_and_t(void) {
  nn_optim o;
  nn_optim_cfg c = cfg_of("sgd");
  ASSERT_OK(nn_optim_init(&o, &c, 5, NULL));
  ASSERT_EQ_INT(o.nslots, 0);
  ASSERT_TRUE(o.slots == NULL);
  ASSERT_TRUE(nn_optim_slot_name(&o, 0) == NULL);
  ASSERT_EQ_INT(o.kind, NN_OPTIM_SGD);
  nn_optim_free(&o);

  c.momentum = 0.5;
  ASSERT_OK(nn_optim_init(&o, &c, 5, NULL));
  ASSERT_EQ_INT(o.nslots, 1);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 0), "momentum_buffer");
  ASSERT_TRUE(nn_optim_slot_name(&o, 1) == NULL);
  nn_optim_free(&o);

  c = cfg_of("adam");
  c.beta1 = 0.5;
  c.beta2 = 0.75;
  enum { M = 4 };
  ASSERT_OK(nn_optim_init(&o, &c, M, NULL));
  ASSERT_EQ_INT(o.kind, NN_OPTIM_ADAM);
  ASSERT_EQ_INT(o.nslots, 2);
  ASSERT_EQ_INT(o.n, M);
  ASSERT_EQ_INT(o.t, 0);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 0), "exp_avg");
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 1), "exp_avg_sq");
  ASSERT_TRUE(nn_optim_slot_name(&o, -1) == NULL);
  for (int i = 0; i < 2 * M; i++) ASSERT_NEAR(o.slots[i], 0.0, 0);
  float p[M] = {0, 0, 0, 0}, g[M] = {1, 2, -4, 8};
  nn_optim_step(&o, p, g, 0.01);
  ASSERT_EQ_INT(o.t, 1);
  /* slot 0 = m = (1 - b1) g, slot 1 = v = (1 - b2) g^2, each [n] in turn */
  for (int i = 0; i < M; i++) {
    ASSERT_NEAR(o.slots[i], 0.5 * g[i], 0);
    ASSERT_NEAR(o.slots[M + i], 0.25 * g[i] * g[i], 0);
  }
  nn_optim_step(&o, p, g, 0.01);
  nn_optim_step(&o, p, g, 0.01);
  ASSERT_EQ_INT(o.t, 3);
  nn_optim_free(&o);
  nn_optim_free(&o); /* twice is safe */

  c = cfg_of("adamw");
  ASSERT_OK(nn_optim_init(&o, &c, 0, NULL)); /* no parameters: nothing to do */
  ASSERT_EQ_INT(o.kind, NN_OPTIM_ADAMW);
  nn_optim_step(&o, NULL, NULL, 0.1);
  ASSERT_EQ_INT(o.t, 1);
  nn_optim_free(&o);
}

/* Resume: a fresh optimizer given the saved slots and t continues exactly. */
static void test_resume(void) {
  nn_optim_cfg c = cfg_of("adam");
  nn_optim a, b;
  ASSERT_OK(nn_optim_init(&a, &c, N, NULL));
  ASSERT_OK(nn_optim_init(&b, &c, N, NULL));
  float pa[N], pb[N], g[N];
  for (int i = 0; i < N; i++) pa[i] = (float)P0[i];
  for (int s = 0; s < 2; s++) {
    for (int i = 0; i < N; i++) g[i] = (float)G[s][i];
    nn_optim_step(&a, pa, g, LR[s]);
  }
  memcpy(pb, pa, sizeof pa);
  memcpy(b.slots, a.slots, (size_t)a.nslots * N * sizeof(float));
  b.t = a.t;
  for (int i = 0; i < N; i++) g[i] = (float)G[2][i];
  nn_optim_step(&a, pa, g, LR[2]);
  nn_optim_step(&b, pb, g, LR[2]);
  ASSERT_TRUE(memcmp(pa, pb, sizeof pa) == 0);
  nn_optim_free(&a);
  nn_optim_free(&b);
}

static void expect_bad(const nn_optim_cfg *c, const char *where, const char *msg_part) {
  nn_error err;
  nn_error_clear(&err);
  nn_optim o;
  int rc = nn_optim_init(&o, c, 4, &err);
  ASSERT_EQ_INT(rc, NN_EINVAL);
  ASSERT_EQ_INT(err.code, NN_EINVAL);
  ASSERT_STR_EQ(err.where, where);
  ASSERT_STR_CONTAINS(err.msg, msg_part);
  ASSERT_TRUE(o.slots == NULL);
  nn_optim_free(&o);
  ASSERT_EQ_INT(nn_optim_check(c, NULL), NN_EINVAL);
}

static void test_validation(void) {
  nn_optim_cfg c = cfg_of("sgd");
  c.nesterov = 1;
  expect_bad(&c, "optimizer.nesterov", "momentum");
  c.momentum = 0.9;
  ASSERT_OK(nn_optim_check(&c, NULL));

  c = cfg_of("rmsprop");
  expect_bad(&c, "optimizer.type", "sgd|adam|adamw");
  ASSERT_STR_CONTAINS(c.type, "rmsprop");
  c = cfg_of("adam");
  c.lr = 0;
  expect_bad(&c, "optimizer.lr", "> 0");
  c.lr = NAN;
  expect_bad(&c, "optimizer.lr", "> 0");
  c = cfg_of("sgd");
  c.momentum = 1.0;
  expect_bad(&c, "optimizer.momentum", "[0, 1)");
  c = cfg_of("adam");
  c.beta1 = 1.0;
  expect_bad(&c, "optimizer.beta1", "[0, 1)");
  c = cfg_of("adam");
  c.beta2 = -0.1;
  expect_bad(&c, "optimizer.beta2", "[0, 1)");
  c = cfg_of("adam");
  c.eps = 0;
  expect_bad(&c, "optimizer.eps", "> 0");
  c = cfg_of("adamw");
  c.weight_decay = -1e-4;
  expect_bad(&c, "optimizer.weight_decay", ">= 0");
  c = cfg_of("adamw");
  ASSERT_OK(nn_optim_check(&c, NULL));
}

static const nn_key *find_key(const char *name) {
  for (const nn_key *k = nn_optim_keys; k->name; k++)
    if (strcmp(k->name, name) == 0) return k;
  return NULL;
}

static void test_key_table(void) {
  static const struct {
    const char *name;
    nn_key_type type;
    const char *def;
  } want[] = {
      {"type", NN_KEY_ENUM, "\"adam\""}, {"lr", NN_KEY_FLOAT, "0.001"},
      {"momentum", NN_KEY_FLOAT, "0"},   {"nesterov", NN_KEY_BOOL, "false"},
      {"beta1", NN_KEY_FLOAT, "0.9"},    {"beta2", NN_KEY_FLOAT, "0.999"},
      {"eps", NN_KEY_FLOAT, "1e-8"},     {"weight_decay", NN_KEY_FLOAT, "0"},
  };
  int rows = 0;
  for (const nn_key *k = nn_optim_keys; k->name; k++) {
    rows++;
    ASSERT_TRUE(k->help && k->help[0]);
  }
  ASSERT_EQ_INT(rows, (int)(sizeof want / sizeof want[0]));
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const nn_key *k = find_key(want[i].name);
    ASSERT_TRUE(k != NULL);
    ASSERT_EQ_INT(k->type, want[i].type);
    ASSERT_STR_EQ(k->def, want[i].def);
  }
  const nn_key *t = find_key("type");
  ASSERT_STR_EQ(t->choices, "sgd|adam|adamw");
  ASSERT_EQ_INT(t->offset, offsetof(nn_optim_cfg, type));
  ASSERT_EQ_INT(t->size, sizeof(((nn_optim_cfg *)0)->type));
  const nn_key *lr = find_key("lr");
  ASSERT_TRUE(lr->flags & NN_KEY_MIN_EXCLUSIVE);
  ASSERT_NEAR(lr->min, 0, 0);
  ASSERT_TRUE(find_key("eps")->flags & NN_KEY_MIN_EXCLUSIVE);
  ASSERT_TRUE(!(find_key("weight_decay")->flags & NN_KEY_MIN_EXCLUSIVE));
  ASSERT_NEAR(find_key("beta2")->max, 1, 0);

  /* offsets point at the right fields: write through the table, read by name */
  nn_optim_cfg c;
  memset(&c, 0, sizeof c);
  *(double *)((char *)&c + find_key("lr")->offset) = 0.5;
  *(double *)((char *)&c + find_key("momentum")->offset) = 0.25;
  *(int *)((char *)&c + find_key("nesterov")->offset) = 1;
  *(double *)((char *)&c + find_key("beta1")->offset) = 0.125;
  *(double *)((char *)&c + find_key("beta2")->offset) = 0.0625;
  *(double *)((char *)&c + find_key("eps")->offset) = 3.0;
  *(double *)((char *)&c + find_key("weight_decay")->offset) = 7.0;
  ASSERT_NEAR(c.lr, 0.5, 0);
  ASSERT_NEAR(c.momentum, 0.25, 0);
  ASSERT_EQ_INT(c.nesterov, 1);
  ASSERT_NEAR(c.beta1, 0.125, 0);
  ASSERT_NEAR(c.beta2, 0.0625, 0);
  ASSERT_NEAR(c.eps, 3.0, 0);
  ASSERT_NEAR(c.weight_decay, 7.0, 0);
  ASSERT_EQ_INT(find_key("momentum")->size, sizeof(double));
  ASSERT_EQ_INT(find_key("nesterov")->size, sizeof(int));
}

TEST_MAIN(TEST(test_sgd_plain), TEST(test_sgd_momentum), TEST(test_sgd_nesterov), TEST(test_adam),
          TEST(test_adamw), TEST(test_slot_layout_and_t), TEST(test_resume), TEST(test_validation),
          TEST(test_key_table))
