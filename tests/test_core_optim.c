/* test_core_optim.c: optimizers (core/optim.h) step by step against an
 * independent double-precision implementation of the PyTorch rules, against
 * literal values computed separately (python, float64) and by hand, and the
 * key table, validation, slot layout, eps defaults and step counter. */
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
  c.eps = 0; /* the type's default */
  c.weight_decay = 0;
  c.rho = 0.9;
  c.alpha = 0.99;
  c.centered = 0;
  c.initial_accumulator_value = 0;
  c.lr_decay = 0;
  return c;
}

/* Reference: the update rules as written in the PyTorch docs, in double.
 * kind is an nn_optim_kind. p [N] and the slots r[k] [N] (in the library's
 * slot order) are updated for one step t. */
static void ref_step(int kind, const nn_optim_cfg *c, double *p, double r[3][N],
                     const double *g, double lr, int t) {
  double eps = nn_optim_eps(c);
  for (int i = 0; i < N; i++) {
    double gi = g[i];
    if (kind == NN_OPTIM_ADAMW) p[i] -= lr * c->weight_decay * p[i];
    else gi += c->weight_decay * p[i];
    switch (kind) {
    case NN_OPTIM_SGD:
      if (c->momentum > 0) {
        r[0][i] = c->momentum * r[0][i] + gi;
        gi = c->nesterov ? gi + c->momentum * r[0][i] : r[0][i];
      }
      p[i] -= lr * gi;
      break;
    case NN_OPTIM_ADAM:
    case NN_OPTIM_ADAMW: {
      r[0][i] = c->beta1 * r[0][i] + (1 - c->beta1) * gi;
      r[1][i] = c->beta2 * r[1][i] + (1 - c->beta2) * gi * gi;
      double mhat = r[0][i] / (1 - pow(c->beta1, t));
      double vhat = r[1][i] / (1 - pow(c->beta2, t));
      p[i] -= lr * mhat / (sqrt(vhat) + eps);
      break;
    }
    case NN_OPTIM_ADAGRAD: {
      double clr = lr / (1 + (t - 1) * c->lr_decay);
      r[0][i] += gi * gi;
      p[i] -= clr * gi / (sqrt(r[0][i]) + eps);
      break;
    }
    case NN_OPTIM_ADADELTA: {
      r[0][i] = c->rho * r[0][i] + (1 - c->rho) * gi * gi;
      double d = sqrt(r[1][i] + eps) / sqrt(r[0][i] + eps) * gi;
      r[1][i] = c->rho * r[1][i] + (1 - c->rho) * d * d;
      p[i] -= lr * d;
      break;
    }
    case NN_OPTIM_RMSPROP: {
      int k = 1;
      double *buf = c->momentum > 0 ? r[k++] : NULL;
      double *ga = c->centered ? r[k++] : NULL;
      r[0][i] = c->alpha * r[0][i] + (1 - c->alpha) * gi * gi;
      double den;
      if (ga) {
        ga[i] = c->alpha * ga[i] + (1 - c->alpha) * gi;
        den = sqrt(r[0][i] - ga[i] * ga[i]) + eps;
      } else {
        den = sqrt(r[0][i]) + eps;
      }
      if (buf) {
        buf[i] = c->momentum * buf[i] + gi / den;
        p[i] -= lr * buf[i];
      } else {
        p[i] -= lr * gi / den;
      }
      break;
    }
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
  if ((int)o.kind != kind) {
    fprintf(stderr, "kind %d, want %d\n", (int)o.kind, kind);
    nn_optim_free(&o);
    return 0;
  }
  float p[N], g[N];
  double rp[N], r[3][N] = {{0}};
  if (kind == NN_OPTIM_ADAGRAD)
    for (int i = 0; i < N; i++) r[0][i] = c->initial_accumulator_value;
  for (int i = 0; i < N; i++) p[i] = (float)(rp[i] = P0[i]);
  int ok = o.nslots <= 3;
  for (int s = 0; s < STEPS && ok; s++) {
    for (int i = 0; i < N; i++) g[i] = (float)G[s][i];
    nn_optim_step(&o, p, g, LR[s]);
    ref_step(kind, c, rp, r, G[s], LR[s], s + 1);
    if (o.t != (uint64_t)s + 1) ok = 0;
    for (int i = 0; i < N; i++) {
      double tol = 2e-6 * (1 + fabs(rp[i]));
      if (fabs(p[i] - rp[i]) > tol) ok = 0;
      for (int k = 0; k < o.nslots; k++)
        if (fabs(o.slots[(size_t)k * N + i] - r[k][i]) > 2e-6 * (1 + fabs(r[k][i]))) ok = 0;
      if (!ok)
        fprintf(stderr, "step %d param %d: got %.9g (slot0 %.9g) want %.9g (slot0 %.9g)\n",
                s + 1, i, p[i], o.nslots ? o.slots[i] : 0.0, rp[i], r[0][i]);
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


static void test_adagrad(void) {
  nn_optim_cfg c = cfg_of("adagrad");
  float p[N];
  ASSERT_TRUE(run_and_compare(NN_OPTIM_ADAGRAD, &c, p));
  /* by hand, param 0: sum .25 -> .3125 -> .328125;
   * p = 1 - .1*.5/.5 - .05*.25/sqrt(.3125) + .1*.125/sqrt(.328125) = 0.899461 */
  ASSERT_NEAR(p[0], 0.899461109, 2e-6);
  ASSERT_NEAR(p[1], -1.97806928, 2e-6);
  ASSERT_NEAR(p[2], 0.50527864, 2e-6); /* g = 0 first: eps 1e-10 keeps it at 0/eps = 0 */

  /* weight decay, a starting accumulator and lr decay (python float64) */
  c.weight_decay = 0.1;
  c.initial_accumulator_value = 0.5;
  c.lr_decay = 0.5;
  ASSERT_TRUE(run_and_compare(NN_OPTIM_ADAGRAD, &c, p));
  ASSERT_NEAR(p[0], 0.925370065, 2e-6);
  ASSERT_NEAR(p[1], -1.93926602, 2e-6);
  ASSERT_NEAR(p[2], 0.501662933, 2e-6);

  /* the "sum" slot starts at initial_accumulator_value */
  nn_optim o;
  ASSERT_OK(nn_optim_init(&o, &c, 4, NULL));
  ASSERT_EQ_INT(o.nslots, 1);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 0), "sum");
  for (int i = 0; i < 4; i++) ASSERT_NEAR(o.slots[i], 0.5, 0);
  ASSERT_NEAR(o.cfg.eps, 1e-10, 0);
  /* one step by hand: d = 1 + 0.1 * 2 = 1.2, sum = 0.5 + 1.44 = 1.94,
   * p = 2 - 0.3 * 1.2 / sqrt(1.94) */
  float q[4] = {2, 2, 2, 2}, g[4] = {1, 1, 1, 1};
  nn_optim_step(&o, q, g, 0.3);
  ASSERT_NEAR(o.slots[0], 1.94, 1e-6);
  ASSERT_NEAR(q[0], 2 - 0.36 / sqrt(1.94), 1e-6);
  /* step 2 uses lr / (1 + lr_decay) = 0.2: d = 1 + 0.1 q */
  double d = 1 + 0.1 * q[0], sum = 1.94 + d * d, want = q[0] - 0.2 * d / sqrt(sum);
  nn_optim_step(&o, q, g, 0.3);
  ASSERT_NEAR(q[0], want, 1e-6);
  nn_optim_free(&o);
}

static void test_adadelta(void) {
  nn_optim_cfg c = cfg_of("adadelta");
  c.weight_decay = 0.01;
  c.rho = 0.5;
  c.eps = 1e-3;
  float p[N];
  ASSERT_TRUE(run_and_compare(NN_OPTIM_ADADELTA, &c, p));
  /* python float64 */
  ASSERT_NEAR(p[0], 0.995953459, 2e-6);
  ASSERT_NEAR(p[1], -2.0022527, 2e-6);
  ASSERT_NEAR(p[2], 0.49806735, 2e-6);
  c = cfg_of("adadelta"); /* rho 0.9, eps 1e-6 */
  ASSERT_TRUE(run_and_compare(NN_OPTIM_ADADELTA, &c, p));
  ASSERT_NEAR(p[0], 0.999694829, 2e-6);
  ASSERT_NEAR(p[1], -2.00007475, 2e-6);
  ASSERT_NEAR(p[2], 0.4999496, 2e-6);

  /* one step by hand, rho 0.9, eps 1e-6, g = 2:
   * square_avg = 0.1 * 4 = 0.4; delta = sqrt(1e-6) / sqrt(0.4 + 1e-6) * 2;
   * acc_delta = 0.1 * delta^2; p = 1 - lr * delta */
  nn_optim o;
  ASSERT_OK(nn_optim_init(&o, &c, 1, NULL));
  ASSERT_EQ_INT(o.nslots, 2);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 0), "square_avg");
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 1), "acc_delta");
  ASSERT_NEAR(o.cfg.eps, 1e-6, 0);
  float q = 1, g = 2;
  nn_optim_step(&o, &q, &g, 1.0);
  double delta = 1e-3 / sqrt(0.400001) * 2;
  ASSERT_NEAR(o.slots[0], 0.4, 1e-7);
  ASSERT_NEAR(o.slots[1], 0.1 * delta * delta, 1e-10);
  ASSERT_NEAR(q, 1 - delta, 1e-7);
  nn_optim_free(&o);
}

static void test_rmsprop(void) {
  nn_optim_cfg c = cfg_of("rmsprop");
  float p[N];
  ASSERT_TRUE(run_and_compare(NN_OPTIM_RMSPROP, &c, p));
  /* first step by hand: square_avg = 0.01 g^2, so p -= lr * g / (0.1 |g|):
   * param 0 goes 1 -> 0 in one step */
  ASSERT_NEAR(p[0], -0.00440223039, 2e-6);
  ASSERT_NEAR(p[1], -1.78506733, 2e-6);
  ASSERT_NEAR(p[2], 0.55098674, 2e-6);

  c.momentum = 0.5;
  ASSERT_TRUE(run_and_compare(NN_OPTIM_RMSPROP, &c, p));
  ASSERT_NEAR(p[0], -0.728908718, 2e-6);
  ASSERT_NEAR(p[1], -1.50957398, 2e-6);
  ASSERT_NEAR(p[2], 1.05098672, 2e-6);

  c = cfg_of("rmsprop");
  c.alpha = 0.9;
  c.centered = 1;
  ASSERT_TRUE(run_and_compare(NN_OPTIM_RMSPROP, &c, p));
  ASSERT_NEAR(p[0], 0.664962021, 2e-6);
  ASSERT_NEAR(p[1], -1.92945229, 2e-6);
  ASSERT_NEAR(p[2], 0.518188198, 2e-6);

  /* everything at once: slots square_avg, momentum_buffer, grad_avg */
  c.momentum = 0.9;
  c.weight_decay = 0.01;
  ASSERT_TRUE(run_and_compare(NN_OPTIM_RMSPROP, &c, p));
  ASSERT_NEAR(p[0], 0.0940730736, 2e-6);
  ASSERT_NEAR(p[1], -1.6307909, 2e-6);
  ASSERT_NEAR(p[2], 0.0644511123, 2e-6);
  nn_optim o;
  ASSERT_OK(nn_optim_init(&o, &c, 2, NULL));
  ASSERT_EQ_INT(o.nslots, 3);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 0), "square_avg");
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 1), "momentum_buffer");
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 2), "grad_avg");
  ASSERT_TRUE(nn_optim_slot_name(&o, 3) == NULL);
  /* centered, first step by hand (wd 0.01, alpha 0.9, p = 1, g = 1):
   * d = 1.01, sq = 0.1 d^2, ga = 0.1 d, den = sqrt(0.1 d^2 - 0.01 d^2) + eps
   * = 0.3 d, buf = d / den = 1/0.3, p = 1 - 0.1 / 0.3 */
  float q[2] = {1, 1}, g[2] = {1, 1};
  nn_optim_step(&o, q, g, 0.1);
  /* slot k of parameter i is slots[k * n + i], n = 2 */
  ASSERT_NEAR(o.slots[0], 0.1 * 1.01 * 1.01, 1e-7);
  ASSERT_NEAR(o.slots[2], 1 / 0.3, 1e-5);
  ASSERT_NEAR(o.slots[4], 0.1 * 1.01, 1e-7);
  ASSERT_NEAR(q[0], 1 - 0.1 / 0.3, 1e-5);
  nn_optim_free(&o);

  /* centered with a constant gradient: square_avg - grad_avg^2 rounds near 0
   * and the update stays finite (clamped, where PyTorch could give NaN) */
  c = cfg_of("rmsprop");
  c.centered = 1;
  c.alpha = 0.5;
  ASSERT_OK(nn_optim_init(&o, &c, 1, NULL));
  float r = 0, gr = 3;
  for (int s = 0; s < 200; s++) nn_optim_step(&o, &r, &gr, 1e-3);
  ASSERT_TRUE(isfinite(r));
  nn_optim_free(&o);

  /* momentum only: slot 1 is the momentum buffer */
  c = cfg_of("rmsprop");
  c.momentum = 0.1;
  ASSERT_OK(nn_optim_init(&o, &c, 2, NULL));
  ASSERT_EQ_INT(o.nslots, 2);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 1), "momentum_buffer");
  nn_optim_free(&o);
  c = cfg_of("rmsprop");
  c.centered = 1;
  ASSERT_OK(nn_optim_init(&o, &c, 2, NULL));
  ASSERT_EQ_INT(o.nslots, 2);
  ASSERT_STR_EQ(nn_optim_slot_name(&o, 1), "grad_avg");
  nn_optim_free(&o);
}

/* eps = 0 is each type's PyTorch default; a given eps is kept. */
static void test_eps_defaults(void) {
  static const struct {
    const char *type;
    double eps;
  } want[] = {{"sgd", 0},        {"adam", 1e-8},     {"adamw", 1e-8},
              {"rmsprop", 1e-8}, {"adagrad", 1e-10}, {"adadelta", 1e-6}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    nn_optim_cfg c = cfg_of(want[i].type);
    ASSERT_NEAR(nn_optim_eps(&c), want[i].eps, 0);
    nn_optim o;
    ASSERT_OK(nn_optim_init(&o, &c, 1, NULL));
    ASSERT_NEAR(o.cfg.eps, want[i].eps, 0);
    nn_optim_free(&o);
    c.eps = 0.25;
    ASSERT_NEAR(nn_optim_eps(&c), 0.25, 0);
  }
  /* the default changes the result: adam with eps 1e-8 vs 1e-1 */
  nn_optim_cfg a = cfg_of("adam"), b = cfg_of("adam");
  b.eps = 0.1;
  float pa[N], pb[N];
  ASSERT_TRUE(run_and_compare(NN_OPTIM_ADAM, &a, pa));
  ASSERT_TRUE(run_and_compare(NN_OPTIM_ADAM, &b, pb));
  ASSERT_TRUE(fabs(pa[0] - pb[0]) > 1e-3);
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

  c = cfg_of("adam");
  c.nesterov = 1;
  c.momentum = 0.9;
  expect_bad(&c, "optimizer.nesterov", "sgd");
  c = cfg_of("lamb");
  expect_bad(&c, "optimizer.type", "sgd|adam|adamw|adagrad|adadelta|rmsprop");
  ASSERT_STR_CONTAINS(c.type, "lamb");
  c = cfg_of("adam");
  c.centered = 1;
  expect_bad(&c, "optimizer.centered", "rmsprop");
  c.type[0] = '\0';
  snprintf(c.type, sizeof c.type, "rmsprop");
  ASSERT_OK(nn_optim_check(&c, NULL));
  c = cfg_of("adadelta");
  c.rho = 1.5;
  expect_bad(&c, "optimizer.rho", "[0, 1]");
  c.rho = 1.0; /* allowed, as in PyTorch */
  ASSERT_OK(nn_optim_check(&c, NULL));
  c = cfg_of("rmsprop");
  c.alpha = 1.0;
  expect_bad(&c, "optimizer.alpha", "[0, 1)");
  c = cfg_of("adagrad");
  c.initial_accumulator_value = -1;
  expect_bad(&c, "optimizer.initial_accumulator_value", ">= 0");
  c = cfg_of("adagrad");
  c.lr_decay = INFINITY;
  expect_bad(&c, "optimizer.lr_decay", ">= 0");
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
  c.eps = -1e-9;
  expect_bad(&c, "optimizer.eps", ">= 0");
  c.eps = 0; /* the type's default */
  ASSERT_OK(nn_optim_check(&c, NULL));
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
      {"eps", NN_KEY_FLOAT, "0"},        {"weight_decay", NN_KEY_FLOAT, "0"},
      {"rho", NN_KEY_FLOAT, "0.9"},      {"alpha", NN_KEY_FLOAT, "0.99"},
      {"centered", NN_KEY_BOOL, "false"}, {"initial_accumulator_value", NN_KEY_FLOAT, "0"},
      {"lr_decay", NN_KEY_FLOAT, "0"},
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
  ASSERT_STR_EQ(t->choices, "sgd|adam|adamw|adagrad|adadelta|rmsprop");
  ASSERT_EQ_INT(t->offset, offsetof(nn_optim_cfg, type));
  ASSERT_EQ_INT(t->size, sizeof(((nn_optim_cfg *)0)->type));
  const nn_key *lr = find_key("lr");
  ASSERT_TRUE(lr->flags & NN_KEY_MIN_EXCLUSIVE);
  ASSERT_NEAR(lr->min, 0, 0);
  ASSERT_TRUE(!(find_key("eps")->flags & NN_KEY_MIN_EXCLUSIVE)); /* 0: type default */
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
  *(double *)((char *)&c + find_key("rho")->offset) = 0.75;
  *(double *)((char *)&c + find_key("alpha")->offset) = 0.875;
  *(int *)((char *)&c + find_key("centered")->offset) = 1;
  *(double *)((char *)&c + find_key("initial_accumulator_value")->offset) = 9.0;
  *(double *)((char *)&c + find_key("lr_decay")->offset) = 11.0;
  ASSERT_NEAR(c.rho, 0.75, 0);
  ASSERT_NEAR(c.alpha, 0.875, 0);
  ASSERT_EQ_INT(c.centered, 1);
  ASSERT_NEAR(c.initial_accumulator_value, 9.0, 0);
  ASSERT_NEAR(c.lr_decay, 11.0, 0);
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
          TEST(test_adamw), TEST(test_adagrad), TEST(test_adadelta), TEST(test_rmsprop),
          TEST(test_eps_defaults), TEST(test_slot_layout_and_t), TEST(test_resume), TEST(test_validation),
          TEST(test_key_table))
