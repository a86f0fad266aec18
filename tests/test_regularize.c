/* test_regularize.c: weight and activity penalties (core/regularize.h)
 * against finite differences of their values and hand-computed numbers;
 * the activity hook inside a backward pass against finite differences of the
 * whole loss; gradient clipping against PyTorch's definitions; and the order
 * of penalties, clipping and update in worker/step.c's training step. */
#include "core/regularize.h"

#include <stdint.h>

#include "core/loss.h"
#include "core/model.h"
#include "core/optim.h"
#include "worker/step.h"
#include "layer_cfg.h"
#include "test.h"

enum { IN = 3, HID = 4, OUT = 2, BATCH = 5 };

/* cfg of type `type` with its defaults. */
static nn_layer_cfg layer(const char *type) {
  nn_layer_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.type, sizeof c.type, "%s", type);
  nn_layer_cfg_defaults(&c, NULL);
  return c;
}

/* dense(IN -> HID, l1 0.01, l2 0.05) + tanh + dense(HID -> OUT, l2 0.1),
 * parameters from seed 7. */
static int build_mlp(nn_model *m, double a1, double a2) {
  nn_layer_cfg c[3] = {layer("dense"), layer("tanh"), layer("dense")};
  cfg_set(&c[0], "units", "%d", HID);
  c[0].l1 = 0.01;
  c[0].l2 = 0.05;
  c[0].activity_l1 = a1;
  c[0].activity_l2 = a2;
  cfg_set(&c[2], "units", "%d", OUT);
  c[2].l2 = 0.1;
  nn_shape in = {1, {IN}};
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_model_build(m, &in, c, 3, BATCH, &err);
  if (rc) {
    fprintf(stderr, "build: %s\n", err.msg);
    return rc;
  }
  nn_model_init_params(m, 7);
  return 0;
}

static void test_which_tensors(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 0, 0));
  ASSERT_TRUE(m.nlayers >= 3);
  const nn_layer *d0 = &m.layers[0], *t = &m.layers[1];
  ASSERT_STR_EQ(d0->pspec[0].name, "weight");
  ASSERT_TRUE(nn_reg_is_weight(d0, 0));
  ASSERT_STR_EQ(d0->pspec[1].name, "bias");
  ASSERT_TRUE(!nn_reg_is_weight(d0, 1));
  ASSERT_TRUE(!nn_reg_is_weight(d0, 2));
  ASSERT_TRUE(!nn_reg_is_weight(t, 0));
  ASSERT_TRUE(nn_reg_has_weight_penalty(&m));
  ASSERT_TRUE(!nn_reg_has_activity(&m));
  nn_model_free(&m);

  /* batchnorm's scale is also named "weight" but is not a weight here */
  if (nn_layer_find("batchnorm")) {
    nn_layer_cfg c[2] = {layer("dense"), layer("batchnorm")};
    cfg_set(&c[0], "units", "%d", 2);
    c[1].l1 = c[1].l2 = 1.0;
    nn_shape in = {1, {3}};
    ASSERT_OK(nn_model_build(&m, &in, c, 2, 1, NULL));
    const nn_layer *bn = &m.layers[1];
    ASSERT_TRUE(bn->nparams >= 1);
    ASSERT_STR_EQ(bn->pspec[0].name, "weight");
    ASSERT_TRUE(!nn_reg_is_weight(bn, 0));
    ASSERT_TRUE(!nn_reg_has_weight_penalty(&m)); /* dense0 has none, bn is not one */
    nn_model_free(&m);
  }
}

static void test_weight_penalty_by_hand(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 0, 0));
  /* set weights to known values: dense0 weight all 0.5 except one -1 and one 0 */
  const nn_layer *d0 = &m.layers[0], *d2 = &m.layers[2];
  size_t n0 = nn_shape_count(&d0->pspec[0].shape), n2 = nn_shape_count(&d2->pspec[0].shape);
  ASSERT_EQ_INT(n0, HID * IN);
  ASSERT_EQ_INT(n2, OUT * HID);
  for (size_t k = 0; k < n0; k++) d0->param[0][k] = 0.5f;
  d0->param[0][0] = -1.0f;
  d0->param[0][1] = 0.0f;
  for (size_t k = 0; k < n2; k++) d2->param[0][k] = 2.0f;
  for (int b = 0; b < OUT; b++) d2->param[1][b] = 100.0f; /* biases: no penalty */
  /* dense0: 0.01 * (10 * 0.5 + 1) + 0.05 * (10 * 0.25 + 1) = 0.06 + 0.175;
   * dense2: 0.1 * 8 * 4 = 3.2 */
  double want = 0.06 + 0.175 + 3.2;
  ASSERT_NEAR(nn_reg_weight_penalty(&m, m.params), want, 1e-12);
  memset(m.grads, 0, m.nparams * sizeof(float));
  ASSERT_NEAR(nn_reg_weight_apply(&m, m.params, m.grads), want, 1e-12);
  /* gradients: l1 sign(w) + 2 l2 w */
  ASSERT_NEAR(d0->grad[0][0], -0.01 - 0.1, 1e-7);
  ASSERT_NEAR(d0->grad[0][1], 0.0, 0); /* sign(0) = 0 */
  ASSERT_NEAR(d0->grad[0][2], 0.01 + 0.05, 1e-7);
  ASSERT_NEAR(d2->grad[0][3], 0.4, 1e-7);
  for (int b = 0; b < HID; b++) ASSERT_NEAR(d0->grad[1][b], 0, 0);
  for (int b = 0; b < OUT; b++) ASSERT_NEAR(d2->grad[1][b], 0, 0);
  /* it adds: a second call doubles the weight gradients */
  nn_reg_weight_apply(&m, m.params, m.grads);
  ASSERT_NEAR(d2->grad[0][3], 0.8, 1e-7);
  nn_model_free(&m);
}

/* Finite differences of the penalty value match the applied gradient, for
 * every parameter (weights and biases). */
static void test_weight_penalty_fd(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 0, 0));
  /* keep weights away from 0, where |w| has a kink */
  for (size_t k = 0; k < m.nparams; k++)
    if (fabsf(m.params[k]) < 0.05f) m.params[k] = m.params[k] < 0 ? -0.1f : 0.1f;
  memset(m.grads, 0, m.nparams * sizeof(float));
  nn_reg_weight_apply(&m, m.params, m.grads);
  int nonzero = 0;
  for (size_t k = 0; k < m.nparams; k++) {
    float keep = m.params[k];
    const float h = 1e-2f;
    m.params[k] = keep + h;
    double up = nn_reg_weight_penalty(&m, m.params);
    m.params[k] = keep - h;
    double down = nn_reg_weight_penalty(&m, m.params);
    m.params[k] = keep;
    double fd = (up - down) / (2.0 * (double)h);
    ASSERT_NEAR(m.grads[k], fd, 1e-4 * (1 + fabs(fd)));
    nonzero += m.grads[k] != 0;
  }
  /* weights of both dense layers: 12 + 8 */
  ASSERT_EQ_INT(nonzero, HID * IN + OUT * HID);
  nn_model_free(&m);
}

static void test_activity_grad_fd(void) {
  const float y[6] = {0.5f, -1.25f, 2.0f, -0.3f, 0.75f, 1.5f};
  float dy[6] = {1, 2, 3, 4, 5, 6};
  const double a1 = 0.2, a2 = 0.3;
  const float scale = 0.25f;
  /* 0.2 * 6.3 + 0.3 * (0.25 + 1.5625 + 4 + 0.09 + 0.5625 + 2.25) */
  ASSERT_NEAR(nn_reg_activity_sum(a1, a2, y, 6), 0.2 * 6.3 + 0.3 * 8.715, 1e-6);
  nn_reg_activity_grad(a1, a2, y, dy, 6, scale);
  for (int k = 0; k < 6; k++) {
    float yp[6], ym[6];
    memcpy(yp, y, sizeof y);
    memcpy(ym, y, sizeof y);
    yp[k] += 1e-3f;
    ym[k] -= 1e-3f;
    double fd = scale * (nn_reg_activity_sum(a1, a2, yp, 6) - nn_reg_activity_sum(a1, a2, ym, 6)) /
                (2e-3);
    ASSERT_NEAR(dy[k] - (k + 1), fd, 1e-4);
  }
  /* by hand: y = 0.5: 0.25 * (0.2 + 0.6 * 0.5) = 0.125 */
  ASSERT_NEAR(dy[0], 1.125, 1e-6);
}

/* The hook as a model's backward would call it, in a hand-written backward
 * over the layers (the loop nn_model_backward_dx runs, plus one call before
 * each layer's backward): parameter gradients then match finite differences
 * of mean loss + activity penalty. */
static double mlp_loss(nn_model *m, const float *x, const int32_t *lab, int n) {
  nn_run_ctx ctx = {.training = 1};
  const float *out = nn_model_forward(m, x, n, &ctx);
  double l = nn_loss_softmax_ce(out, lab, n, OUT, 1.0f, NULL) / n;
  return l + nn_reg_activity_model_sum(m, n) / n;
}

static void test_activity_hook_fd(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 0.05, 0.2));
  ASSERT_TRUE(nn_reg_has_activity(&m));
  float x[BATCH * IN];
  for (int k = 0; k < BATCH * IN; k++) x[k] = (float)sin(1.7 * k + 0.3);
  const int32_t lab[BATCH] = {0, 1, 1, 0, 1};
  const int n = BATCH;
  nn_run_ctx ctx = {.training = 1};
  const float *out = nn_model_forward(&m, x, n, &ctx);
  float dout[BATCH * OUT], dy[BATCH * 8], dx[BATCH * 8];
  nn_loss_softmax_ce(out, lab, n, OUT, 1.0f / n, dout);
  nn_model_zero_grad(&m);
  memcpy(dy, dout, sizeof dout);
  for (int i = m.nlayers - 1; i >= 0; i--) {
    nn_layer *l = &m.layers[i];
    const float *xin = i ? m.act + m.act_off[i - 1] : x;
    const float *y = m.act + m.act_off[i];
    nn_reg_activity_backward(l, y, dy, n, 1.0f / n); /* the hook */
    l->ops->backward(l, xin, y, dy, i ? dx : NULL, n, &ctx);
    if (i) memcpy(dy, dx, (size_t)n * nn_shape_count(&l->in) * sizeof(float));
  }
  /* the penalty matters: without it the first layer's gradient differs */
  double base = mlp_loss(&m, x, lab, n);
  ASSERT_TRUE(nn_reg_activity_model_sum(&m, n) / n > 0.01 * base);
  for (size_t k = 0; k < m.nparams; k++) {
    float keep = m.params[k];
    const float h = 1e-3f;
    m.params[k] = keep + h;
    double up = mlp_loss(&m, x, lab, n);
    m.params[k] = keep - h;
    double down = mlp_loss(&m, x, lab, n);
    m.params[k] = keep;
    double fd = (up - down) / (2.0 * (double)h);
    ASSERT_NEAR(m.grads[k], fd, 2e-3 * (1 + fabs(fd)));
  }
  /* no-ops: scale 0, or a layer without activity penalties */
  float z[HID] = {1, 2, 3, 4}, dz[HID] = {0, 0, 0, 0};
  nn_reg_activity_backward(&m.layers[0], z, dz, 1, 0.0f);
  nn_reg_activity_backward(&m.layers[2], z, dz, 1, 1.0f);
  for (int k = 0; k < HID; k++) ASSERT_NEAR(dz[k], 0, 0);
  nn_model_free(&m);
}

static void test_clip_value(void) {
  float g[6] = {0.5f, -3.0f, 2.0f, -0.25f, NAN, 1.0f};
  ASSERT_EQ_INT(nn_clip_by_value(g, 6, 1.0), 2);
  ASSERT_NEAR(g[0], 0.5, 0);
  ASSERT_NEAR(g[1], -1.0, 0);
  ASSERT_NEAR(g[2], 1.0, 0);
  ASSERT_NEAR(g[3], -0.25, 0);
  ASSERT_TRUE(isnan(g[4]));
  ASSERT_NEAR(g[5], 1.0, 0); /* at the bound: unchanged */
  ASSERT_EQ_INT(nn_clip_by_value(g, 6, 0.1), 5);
  for (int k = 0; k < 6; k++)
    if (k != 4) ASSERT_TRUE(fabsf(g[k]) == 0.1f);
}

static void test_clip_norm(void) {
  float g[2] = {3.0f, -4.0f};
  ASSERT_NEAR(nn_grad_norm(g, 2), 5.0, 0);
  /* torch.nn.utils.clip_grad_norm_([3, -4], 1): coef 1 / (5 + 1e-6) */
  ASSERT_NEAR(nn_clip_by_norm(g, 2, 1.0), 5.0, 0);
  ASSERT_NEAR(g[0], 3.0 / (5.0 + 1e-6), 1e-7);
  ASSERT_NEAR(g[1], -4.0 / (5.0 + 1e-6), 1e-7);
  ASSERT_NEAR(nn_grad_norm(g, 2), 1.0, 1e-6);
  /* below the limit: untouched, bit for bit */
  float h[3] = {0.1f, 0.2f, -0.3f}, h0[3];
  memcpy(h0, h, sizeof h);
  double nh = nn_clip_by_norm(h, 3, 1.0);
  ASSERT_NEAR(nh, sqrt(0.01 + 0.04 + 0.09), 1e-7);
  ASSERT_TRUE(memcmp(h, h0, sizeof h) == 0);
  /* norm == max_norm: the 1e-6 makes coef < 1 by a hair, as in PyTorch */
  float e[1] = {2.0f};
  nn_clip_by_norm(e, 1, 2.0);
  ASSERT_TRUE(e[0] <= 2.0f);
  ASSERT_NEAR(e[0], 2.0, 1e-6);
  /* non-finite norm: left alone */
  float f[2] = {INFINITY, 1.0f};
  ASSERT_TRUE(isinf(nn_clip_by_norm(f, 2, 1.0)));
  ASSERT_NEAR(f[1], 1.0, 0);
  /* a large arena: the norm is summed in double */
  enum { BIG = 1 << 16 };
  static float big[BIG];
  for (int k = 0; k < BIG; k++) big[k] = 1e-3f;
  ASSERT_NEAR(nn_grad_norm(big, BIG), (double)1e-3f * 256, 1e-12);
}

/* ---- the training step's order ----------------------------------------- */

/* One dense layer IN -> OUT, l2 on its weight, and a batch. */
typedef struct fixture {
  nn_model m;
  nn_optim o;
  nn_stepper s;
  float x[BATCH * IN];
  int32_t lab[BATCH];
  nn_batch b;
} fixture;

static int fixture_init(fixture *f, double l2) {
  memset(f, 0, sizeof *f);
  nn_layer_cfg c = layer("dense");
  cfg_set(&c, "units", "%d", OUT);
  c.l2 = l2;
  nn_shape in = {1, {IN}};
  int rc = nn_model_build(&f->m, &in, &c, 1, BATCH, NULL);
  if (rc) return rc;
  nn_model_init_params(&f->m, 3);
  for (size_t k = 0; k < f->m.nparams; k++) f->m.params[k] *= 4.0f; /* a big penalty */
  nn_optim_cfg oc;
  memset(&oc, 0, sizeof oc);
  snprintf(oc.type, sizeof oc.type, "sgd");
  oc.lr = 1.0;
  rc = nn_optim_init(&f->o, &oc, f->m.nparams, NULL);
  if (!rc) rc = nn_stepper_init(&f->s, &f->m, &f->o, NULL, NN_LOSS_SOFTMAX_CE, NULL);
  for (int k = 0; k < BATCH * IN; k++) f->x[k] = (float)cos(0.9 * k);
  for (int i = 0; i < BATCH; i++) f->lab[i] = i % OUT;
  f->b = (nn_batch){.n = BATCH, .global_n = BATCH, .x = f->x, .labels = f->lab};
  return rc;
}

static void fixture_free(fixture *f) {
  nn_stepper_free(&f->s);
  nn_optim_free(&f->o);
  nn_model_free(&f->m);
}

/* The data-loss gradient of f's model at its current parameters, into g
 * [nparams]; returns the loss sum. */
static double data_grad(fixture *f, float *g) {
  nn_run_ctx ctx = {.training = 1};
  const float *out = nn_model_forward(&f->m, f->x, BATCH, &ctx);
  float dout[BATCH * OUT];
  double l = nn_loss_softmax_ce(out, f->lab, BATCH, OUT, 1.0f / BATCH, dout);
  nn_model_zero_grad(&f->m);
  nn_model_backward(&f->m, f->x, dout, BATCH, &ctx, NULL, NULL);
  memcpy(g, f->m.grads, f->m.nparams * sizeof(float));
  return l;
}

static void test_step_order(void) {
  fixture f;
  ASSERT_OK(fixture_init(&f, 0.5));
  size_t np = f.m.nparams;
  ASSERT_EQ_INT(np, OUT * IN + OUT);
  float p0[OUT * IN + OUT], g[OUT * IN + OUT], want[OUT * IN + OUT], alt[OUT * IN + OUT];
  memcpy(p0, f.m.params, sizeof p0);
  double loss = data_grad(&f, g);

  /* documented order: penalty, then clip by value; sgd lr 1: p -= g' */
  const double clip = 0.3;
  memcpy(want, g, sizeof g);
  double pen = nn_reg_weight_apply(&f.m, p0, want);
  nn_clip_by_value(want, np, clip);
  /* the other order, to show the test tells them apart */
  memcpy(alt, g, sizeof g);
  nn_clip_by_value(alt, np, clip);
  nn_reg_weight_apply(&f.m, p0, alt);

  f.s.clip_value = clip;
  nn_step_stats st = {0};
  ASSERT_OK(nn_step_train(&f.s, &f.b, 1.0, 0, 1, &st, NULL));
  int differs = 0;
  for (size_t k = 0; k < np; k++) {
    double step = (double)p0[k] - f.m.params[k];
    ASSERT_NEAR(step, want[k], 1e-6);
    ASSERT_TRUE(fabs(step) <= clip + 1e-6);
    differs += fabs(want[k] - alt[k]) > 1e-3;
  }
  ASSERT_TRUE(differs > 0);
  /* the reported loss includes the penalty, once per sample of the batch */
  ASSERT_TRUE(pen > 0.1);
  ASSERT_NEAR(st.loss_sum, loss + pen * BATCH, 1e-5 * (1 + st.loss_sum));
  ASSERT_NEAR(st.count, BATCH, 0);
  fixture_free(&f);
}

static void test_step_clip_norm(void) {
  fixture f;
  ASSERT_OK(fixture_init(&f, 0.5));
  size_t np = f.m.nparams;
  float p0[OUT * IN + OUT], g[OUT * IN + OUT];
  memcpy(p0, f.m.params, sizeof p0);
  data_grad(&f, g);
  nn_reg_weight_apply(&f.m, p0, g);
  nn_clip_by_value(g, np, 0.5);
  double norm = nn_grad_norm(g, np); /* what clip_norm sees: after penalty and clip_value */
  const double maxn = 0.25;
  ASSERT_TRUE(norm > 2 * maxn);

  f.s.clip_value = 0.5;
  f.s.clip_norm = maxn;
  nn_step_stats st = {0};
  ASSERT_OK(nn_step_train(&f.s, &f.b, 1.0, 0, 1, &st, NULL));
  ASSERT_NEAR(f.s.grad_norm, norm, 1e-6 * norm);
  double c = maxn / (norm + 1e-6), sq = 0;
  for (size_t k = 0; k < np; k++) {
    double step = (double)p0[k] - f.m.params[k];
    ASSERT_NEAR(step, g[k] * c, 1e-6);
    sq += step * step;
  }
  ASSERT_NEAR(sqrt(sq), maxn, 1e-5);
  fixture_free(&f);

  /* clipping off, no penalty: the plain data gradient */
  ASSERT_OK(fixture_init(&f, 0.0));
  ASSERT_EQ_INT(f.s.weight_penalty, 0);
  memcpy(p0, f.m.params, sizeof p0);
  double loss = data_grad(&f, g);
  st = (nn_step_stats){0};
  ASSERT_OK(nn_step_train(&f.s, &f.b, 1.0, 0, 1, &st, NULL));
  for (size_t k = 0; k < np; k++) ASSERT_NEAR((double)p0[k] - f.m.params[k], g[k], 1e-6);
  ASSERT_NEAR(st.loss_sum, loss, 1e-6 * (1 + loss));
  fixture_free(&f);
}

/* The model's own backward calls the activity hook when the context carries
 * act_scale: parameter gradients match finite differences of mean loss +
 * activity penalty, and differ from the gradients without it. */
static void test_model_backward_activity(void) {
  nn_model m;
  ASSERT_OK(build_mlp(&m, 0.05, 0.2));
  float x[BATCH * IN];
  for (int k = 0; k < BATCH * IN; k++) x[k] = (float)cos(0.9 * k + 0.1);
  const int32_t lab[BATCH] = {1, 0, 1, 1, 0};
  const int n = BATCH;
  nn_run_ctx ctx = {.training = 1, .act_scale = 1.0f / n};
  const float *out = nn_model_forward(&m, x, n, &ctx);
  float dout[BATCH * OUT];
  nn_loss_softmax_ce(out, lab, n, OUT, 1.0f / n, dout);
  nn_model_zero_grad(&m);
  nn_model_backward(&m, x, dout, n, &ctx, NULL, NULL);
  float *with = malloc(m.nparams * sizeof(float));
  memcpy(with, m.grads, m.nparams * sizeof(float));
  for (size_t k = 0; k < m.nparams; k++) {
    float keep = m.params[k];
    const float h = 1e-3f;
    m.params[k] = keep + h;
    double up = mlp_loss(&m, x, lab, n);
    m.params[k] = keep - h;
    double down = mlp_loss(&m, x, lab, n);
    m.params[k] = keep;
    double fd = (up - down) / (2.0 * (double)h);
    ASSERT_NEAR(with[k], fd, 2e-3 * (1 + fabs(fd)));
  }
  /* act_scale 0 (evaluation, gradient checks): no penalty gradient */
  ctx.act_scale = 0;
  nn_model_forward(&m, x, n, &ctx);
  nn_model_zero_grad(&m);
  nn_model_backward(&m, x, dout, n, &ctx, NULL, NULL);
  double diff = 0;
  for (size_t k = 0; k < m.nparams; k++) diff += fabs((double)with[k] - m.grads[k]);
  ASSERT_TRUE(diff > 1e-3);
  free(with);
  nn_model_free(&m);
}

TEST_MAIN(TEST(test_which_tensors), TEST(test_weight_penalty_by_hand),
          TEST(test_weight_penalty_fd), TEST(test_activity_grad_fd),
          TEST(test_activity_hook_fd), TEST(test_clip_value), TEST(test_clip_norm),
          TEST(test_step_order), TEST(test_step_clip_norm),
          TEST(test_model_backward_activity))
