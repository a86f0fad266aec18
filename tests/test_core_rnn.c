/* test_core_rnn.c: the recurrent layers rnn, lstm and gru (core/layers/rnn.c).
 *
 * - finite differences for each type: one layer, two stacked, bidirectional,
 *   sequences and last states, with lengths (samples shorter than T), with
 *   and without biases, dropout between layers in training;
 * - masking: padded steps output zeros and get no gradient, a sample's
 *   results do not depend on the values in its padding, and a sample of
 *   length L in a batch of T equals the same sample run alone with T = L
 *   (the reverse direction starts at its last valid step);
 * - carried state: T = 8 in one call equals two calls of T = 4 with
 *   carry_in, the carried state is the final state (the last valid one with
 *   lengths), and gradients with a carried initial state are right with that
 *   state held constant;
 * - dropout masks do not depend on how a batch is split;
 * - configurations build refuses.
 * PyTorch parity is test_core_rnn_torch.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/rng.h"
#include "gradcheck_assert.h"
#include "test.h"

static const char *const k_types[3] = {"rnn", "lstm", "gru"};

/* A recurrent layer config of `type`. */
static nn_layer_cfg rnn_cfg(const char *type, int hidden, int layers, int bidir, int seq,
                            int bias) {
  nn_layer_cfg c = cfg_of(type);
  cfg_set(&c, "hidden_size", "%d", hidden);
  cfg_set(&c, "num_layers", "%d", layers);
  cfg_set_bool(&c, "bidirectional", bidir);
  cfg_set_bool(&c, "return_sequences", seq);
  cfg_set_bool(&c, "use_bias", bias);
  return c;
}

/* Uniform [-1, 1) floats from (seed). */
static void fill(float *v, size_t n, uint64_t seed) {
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_TEST, 11, 0, 0);
  for (size_t i = 0; i < n; i++) v[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

/* ---- finite differences --------------------------------------------------- */

typedef struct gc_case {
  int layers, bidir, seq, bias, use_lengths;
  const char *what;
} gc_case;

static const gc_case k_cases[] = {
    {1, 0, 1, 1, 0, "1 layer, sequences"},
    {1, 0, 0, 1, 1, "1 layer, last state, lengths"},
    {1, 0, 1, 0, 1, "1 layer, sequences, lengths, no bias"},
    {2, 0, 1, 1, 1, "2 stacked, sequences, lengths"},
    {2, 0, 0, 0, 1, "2 stacked, last state, lengths, no bias"},
    {1, 1, 1, 1, 1, "bidirectional, sequences, lengths"},
    {1, 1, 0, 1, 1, "bidirectional, last state, lengths"},
    {2, 1, 0, 1, 1, "bidirectional 2 stacked, last state, lengths"},
    {2, 1, 1, 0, 0, "bidirectional 2 stacked, sequences, no bias"},
};

static void grad_cases(const char *type, uint64_t seed) {
  /* the layer ranks samples by length (packed sequences, rnn.c): the
   * first set is in that order already, the second leaves step 4 without
   * any sample, the third is out of order with a tie */
  enum { NSETS = 3 };
  static const int32_t lengths_sets[NSETS][3] = {{5, 3, 1}, {4, 3, 1}, {2, 4, 2}};
  double worst = 0;
  for (size_t i = 0; i < NSETS * (sizeof k_cases / sizeof k_cases[0]); i++) {
    const gc_case *k = &k_cases[i % (sizeof k_cases / sizeof k_cases[0])];
    const int32_t *lengths = lengths_sets[i / (sizeof k_cases / sizeof k_cases[0])];
    if (i >= sizeof k_cases / sizeof k_cases[0] && !k->use_lengths) continue;
    nn_layer_cfg c = rnn_cfg(type, 3, k->layers, k->bidir, k->seq, k->bias);
    nn_shape in = {2, {5, 2}};
    nn_gradcheck_opts o;
    memset(&o, 0, sizeof o);
    o.seed = seed + i;
    o.n = 3;
    o.floor = 2e-2; /* f sums T * H * D outputs: float rounding ~2e-5 absolute */
    o.lengths = k->use_lengths ? lengths : NULL;
    nn_gradcheck_result r;
    nn_error e;
    nn_error_clear(&e);
    ASSERT_OK(nn_gradcheck(&in, &c, 1, &o, &r, &e));
    fprintf(stderr, "  %s %-45s max error %.2e (dx %.2e, params %.2e) over %zu\n", type, k->what,
            r.max_err, r.max_err_dx, r.max_err_param, r.nchecked);
    if (!(r.max_err < GC_TOL)) fprintf(stderr, "  worst: %s\n", r.worst);
    ASSERT_TRUE(r.max_err < GC_TOL);
    if (r.max_err > worst) worst = r.max_err;
  }
  fprintf(stderr, "  %s: worst error over all cases %.2e\n", type, worst);
}

static void test_grad_rnn(void) { grad_cases("rnn", 100); }
static void test_grad_lstm(void) { grad_cases("lstm", 200); }
static void test_grad_gru(void) { grad_cases("gru", 300); }

/* relu cells. The checker cannot keep the pre-activations away from the
 * kink (they are not the model's input): with eps 1e-2 some seeds straddle it
 * (errors 4e-2..1); seed 7 does not (the draws are counter-based, so the
 * same on every machine). PyTorch parity covers relu as well. */
static void test_grad_rnn_relu(void) {
  static const int32_t lengths[3] = {4, 2, 3};
  nn_layer_cfg c = rnn_cfg("rnn", 3, 2, 1, 1, 1);
  cfg_set(&c, "nonlinearity", "\"relu\"");
  nn_shape in = {2, {4, 2}};
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = 7;
  o.floor = 2e-2;
  o.lengths = lengths;
  CHECK_GRADS(&in, &c, 1, &o);
}

/* Dropout between stacked layers in training: the masks are a function of
 * (seed, step, sample), so finite differences see the same masks. */
static void test_grad_dropout_training(void) {
  static const int32_t lengths[3] = {5, 4, 2};
  for (int ty = 0; ty < 3; ty++) {
    nn_layer_cfg c = rnn_cfg(k_types[ty], 3, 2, ty == 1, 1, 1);
    cfg_set(&c, "dropout", "0.4");
    nn_shape in = {2, {5, 2}};
    nn_gradcheck_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 40 + (uint64_t)ty;
    o.training = 1;
    o.floor = 2e-2;
    o.eps = 3e-3; /* the 1/(1-p) scaling enlarges eps^2 truncation at 1e-2 (2.2e-3 for
                     rnn); at 3e-3 truncation and float rounding are both < 1.5e-3 */
    o.lengths = lengths;
    fprintf(stderr, "  %s, dropout 0.4, training\n", k_types[ty]);
    CHECK_GRADS(&in, &c, 1, &o);
  }
}

/* ---- masking -------------------------------------------------------------- */

typedef struct run {
  nn_model m;
  float *y, *dx;
} run;

/* Build cfg on [T, C] for n samples with parameters from seed 9. */
static int run_build(run *r, const nn_layer_cfg *c, int T, int C, int n) {
  nn_error e;
  nn_error_clear(&e);
  nn_shape in = {2, {T, C}};
  memset(r, 0, sizeof *r);
  int rc = nn_model_build(&r->m, &in, c, 1, n, &e);
  if (rc) {
    fprintf(stderr, "build: %s\n", e.msg);
    return rc;
  }
  nn_model_init_params(&r->m, 9);
  r->y = calloc((size_t)n * nn_shape_count(&r->m.out), sizeof *r->y);
  r->dx = calloc((size_t)n * T * C, sizeof *r->dx);
  return r->y && r->dx ? 0 : -1;
}

static void run_free(run *r) {
  nn_model_free(&r->m);
  free(r->y);
  free(r->dx);
}

/* Forward (copied into r->y) and, if dy, backward into r->dx and m.grads. */
static void run_pass(run *r, const float *x, const float *dy, int n, const nn_run_ctx *ctx) {
  const float *y = nn_model_forward(&r->m, x, n, ctx);
  memcpy(r->y, y, (size_t)n * nn_shape_count(&r->m.out) * sizeof *y);
  if (!dy) return;
  nn_model_zero_grad(&r->m);
  nn_model_backward_dx(&r->m, x, dy, r->dx, n, ctx, NULL, NULL);
}

static double max_diff(const float *a, const float *b, size_t n) {
  double w = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs((double)a[i] - b[i]) > w) w = fabs((double)a[i] - b[i]);
  return w;
}

/* Padding: zeros out, no gradient in, nothing depends on its values. */
static void masking_case(const char *type, int bidir, int seq) {
  enum { T = 6, C = 3, N = 3 };
  static const int32_t lengths[N] = {1, 4, 6}; /* shortest first: the layer reorders */
  nn_layer_cfg c = rnn_cfg(type, 4, 2, bidir, seq, 1);
  run a, b;
  ASSERT_OK(run_build(&a, &c, T, C, N));
  ASSERT_OK(run_build(&b, &c, T, C, N));
  size_t ny = (size_t)N * nn_shape_count(&a.m.out);
  float x[N * T * C], x2[N * T * C], dy[N * T * 8];
  fill(x, sizeof x / sizeof x[0], 1);
  memcpy(x2, x, sizeof x);
  for (int i = 0; i < N; i++)
    for (int t = lengths[i]; t < T; t++)
      for (int k = 0; k < C; k++) x2[(i * T + t) * C + k] = 100.0f * (float)(t + k + 1);
  fill(dy, ny, 2);
  nn_run_ctx ctx = {.lengths = lengths};
  run_pass(&a, x, dy, N, &ctx);
  run_pass(&b, x2, dy, N, &ctx);
  ASSERT_TRUE(max_diff(a.y, b.y, ny) == 0.0);
  ASSERT_TRUE(max_diff(a.dx, b.dx, (size_t)N * T * C) == 0.0);
  ASSERT_TRUE(max_diff(a.m.grads, b.m.grads, a.m.nparams) == 0.0);
  int HD = 4 * (bidir ? 2 : 1);
  for (int i = 0; i < N; i++)
    for (int t = lengths[i]; t < T; t++) {
      for (int k = 0; k < C; k++) ASSERT_TRUE(a.dx[(i * T + t) * C + k] == 0.0f);
      for (int j = 0; seq && j < HD; j++) ASSERT_TRUE(a.y[(i * T + t) * HD + j] == 0.0f);
    }
  /* sample 1 (length 4) alone with T = 4 and no lengths: the same results */
  run s;
  ASSERT_OK(run_build(&s, &c, 4, C, 1));
  nn_run_ctx full = {0};
  float dys[4 * 8];
  for (int t = 0; t < (seq ? 4 : 1); t++)
    memcpy(dys + t * HD, dy + (seq ? (1 * T + t) * HD : HD), sizeof(float) * (size_t)HD);
  run_pass(&s, x + 1 * T * C, dys, 1, &full);
  const float *y1 = a.y + (seq ? 1 * T * HD : HD);
  double dyd = max_diff(y1, s.y, (size_t)(seq ? 4 : 1) * HD);
  double dxd = max_diff(a.dx + 1 * T * C, s.dx, 4 * C);
  fprintf(stderr, "  %s bidir %d seq %d: length-4 sample vs T = 4 alone: |dy| %.2e |dx| %.2e\n",
          type, bidir, seq, dyd, dxd);
  ASSERT_TRUE(dyd < 1e-6);
  ASSERT_TRUE(dxd < 1e-6);
  run_free(&a);
  run_free(&b);
  run_free(&s);
}

static void test_masking(void) {
  for (int ty = 0; ty < 3; ty++)
    for (int bidir = 0; bidir < 2; bidir++)
      for (int seq = 0; seq < 2; seq++) {
        masking_case(k_types[ty], bidir, seq);
        if (nn__test_failed) return;
      }
}

/* ---- carried state -------------------------------------------------------- */

/* T = 8 in one call = two calls of T = 4, the second with carry_in; the
 * carried state is the final state (the last valid one with lengths). */
static void carry_case(const char *type) {
  enum { C = 3, N = 2, H = 4, L = 2 };
  nn_layer_cfg c = rnn_cfg(type, H, L, 0, 1, 1);
  cfg_set_bool(&c, "carry", 1);
  run a, b;
  ASSERT_OK(run_build(&a, &c, 8, C, N));
  ASSERT_OK(run_build(&b, &c, 4, C, N));
  int lstm = strcmp(type, "lstm") == 0;
  ASSERT_EQ_INT(a.m.carry_per_sample, (size_t)L * H * (lstm ? 2 : 1));
  float x[N * 8 * C], xh[N * 4 * C], y2[N * 8 * H];
  fill(x, sizeof x / sizeof x[0], 3);
  nn_run_ctx c0 = {0}, c1 = {.carry_in = 1};
  run_pass(&a, x, NULL, N, &c0);
  for (int half = 0; half < 2; half++) {
    for (int i = 0; i < N; i++)
      memcpy(xh + i * 4 * C, x + (i * 8 + half * 4) * C, sizeof(float) * 4 * C);
    run_pass(&b, xh, NULL, N, half ? &c1 : &c0);
    for (int i = 0; i < N; i++)
      memcpy(y2 + (i * 8 + half * 4) * H, b.y + i * 4 * H, sizeof(float) * 4 * H);
  }
  double dy = max_diff(a.y, y2, N * 8 * H);
  float *ca, *cb;
  size_t na, nb;
  nn_model_carry(&a.m, &ca, &na);
  nn_model_carry(&b.m, &cb, &nb);
  ASSERT_EQ_INT(na, nb);
  ASSERT_EQ_INT(na, N * a.m.carry_per_sample);
  double dc = max_diff(ca, cb, na);
  fprintf(stderr, "  %s: 8 steps vs 2 x 4 with carry: |y| %.2e, |state| %.2e\n", type, dy, dc);
  ASSERT_TRUE(dy < 1e-5);
  ASSERT_TRUE(dc < 1e-5);
  /* the top layer's h in the carry is the output at the last step */
  for (int i = 0; i < N; i++)
    ASSERT_TRUE(max_diff(ca + i * a.m.carry_per_sample + (L - 1) * H, a.y + (i * 8 + 7) * H, H) == 0);
  /* with lengths: the state after the last valid step, also with carry_in */
  static const int32_t lengths[N] = {8, 5};
  nn_run_ctx cl = {.lengths = lengths, .carry_in = 1};
  memset(ca, 0, na * sizeof *ca); /* zeros carried in = a fresh start */
  run_pass(&a, x, NULL, N, &cl);
  ASSERT_TRUE(max_diff(ca + 1 * a.m.carry_per_sample + (L - 1) * H, a.y + (1 * 8 + 4) * H, H) == 0);
  ASSERT_TRUE(max_diff(ca + (L - 1) * H, a.y + 7 * H, H) == 0);
  run_free(&a);
  run_free(&b);
}

static void test_carry_split_equals_whole(void) {
  for (int ty = 0; ty < 3; ty++) {
    carry_case(k_types[ty]);
    if (nn__test_failed) return;
  }
}

/* f = sum(g * y) with the carried state restored to `init` first. */
static double carry_objective(run *r, const float *x, const float *g, const float *init,
                              size_t ncarry, int n, const nn_run_ctx *ctx) {
  memcpy(r->m.carry, init, ncarry * sizeof *init);
  const float *y = nn_model_forward(&r->m, x, n, ctx);
  double f = 0;
  for (size_t i = 0; i < (size_t)n * nn_shape_count(&r->m.out); i++) f += (double)g[i] * y[i];
  return f;
}

/* Gradients with a carried (nonzero) initial state, which is a constant:
 * analytic = central differences for the input and every parameter. */
static void test_carry_gradients_detached(void) {
  enum { T = 4, C = 2, N = 2 };
  for (int ty = 0; ty < 3; ty++) {
    nn_layer_cfg c = rnn_cfg(k_types[ty], 3, 2, 0, 1, 1);
    cfg_set_bool(&c, "carry", 1);
    run r;
    ASSERT_OK(run_build(&r, &c, T, C, N));
    size_t nc = N * r.m.carry_per_sample, ny = (size_t)N * nn_shape_count(&r.m.out);
    float x[N * T * C], g[N * T * 3], init[64];
    ASSERT_TRUE(nc <= 64);
    fill(x, N * T * C, 21);
    fill(g, ny, 22);
    fill(init, nc, 23);
    nn_run_ctx ctx = {.carry_in = 1};
    double f0 = carry_objective(&r, x, g, init, nc, N, &ctx);
    nn_run_ctx zero = {0};
    ASSERT_TRUE(fabs(f0 - carry_objective(&r, x, g, init, nc, N, &zero)) > 1e-3);
    memcpy(r.m.carry, init, nc * sizeof *init);
    run_pass(&r, x, g, N, &ctx);
    double worst = 0;
    for (size_t i = 0; i < N * T * C + r.m.nparams; i++) {
      float *v = i < N * T * C ? &x[i] : &r.m.params[i - N * T * C];
      float an = i < N * T * C ? r.dx[i] : r.m.grads[i - N * T * C], save = *v;
      *v = save + 1e-2f;
      double fp = carry_objective(&r, x, g, init, nc, N, &ctx);
      *v = save - 1e-2f;
      double fm = carry_objective(&r, x, g, init, nc, N, &ctx);
      *v = save;
      double num = (fp - fm) / 2e-2, den = fmax(fmax(fabs(num), fabs(an)), 1e-2);
      if (fabs(num - an) / den > worst) worst = fabs(num - an) / den;
    }
    fprintf(stderr, "  %s: carried initial state, max error %.2e\n", k_types[ty], worst);
    ASSERT_TRUE(worst < GC_TOL);
    run_free(&r);
  }
}

/* ---- dropout, build errors ------------------------------------------------ */

/* Masks come from (seed, step, global sample): a batch of 4 equals its two
 * halves run with sample0 = 0 and 2. */
static void test_dropout_split_invariant(void) {
  enum { T = 5, C = 3, N = 4 };
  nn_layer_cfg c = rnn_cfg("lstm", 4, 3, 0, 1, 1);
  cfg_set(&c, "dropout", "0.5");
  run a;
  ASSERT_OK(run_build(&a, &c, T, C, N));
  float x[N * T * C], y[N * T * 4];
  fill(x, sizeof x / sizeof x[0], 4);
  nn_run_ctx ctx = {.training = 1, .seed = 77, .step = 3};
  run_pass(&a, x, NULL, N, &ctx);
  memcpy(y, a.y, sizeof y);
  nn_run_ctx half = ctx;
  run_pass(&a, x, NULL, 2, &half);
  ASSERT_TRUE(max_diff(a.y, y, 2 * T * 4) < 1e-6);
  half.sample0 = 2;
  run_pass(&a, x + 2 * T * C, NULL, 2, &half);
  ASSERT_TRUE(max_diff(a.y, y + 2 * T * 4, 2 * T * 4) < 1e-6);
  nn_run_ctx eval = {.seed = 77, .step = 3};
  run_pass(&a, x, NULL, N, &eval);
  ASSERT_TRUE(max_diff(a.y, y, N * T * 4) > 1e-3); /* training differs from evaluation */
  nn_run_ctx other = ctx;
  other.step = 4;
  float y3[N * T * 4];
  memcpy(y3, a.y, sizeof y3);
  run_pass(&a, x, NULL, N, &other);
  ASSERT_TRUE(max_diff(a.y, y, N * T * 4) > 1e-3); /* another step, other masks */
  run_free(&a);
}

static void expect_refused(const nn_layer_cfg *c, const nn_shape *in, const char *needle) {
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(&m, in, c, 1, 2, &e);
  if (rc == 0) nn_model_free(&m);
  ASSERT_TRUE(rc != 0);
  ASSERT_STR_CONTAINS(e.msg, needle);
}

static void test_build_refuses(void) {
  nn_shape seq = {2, {5, 3}}, flat = {1, {5}};
  nn_layer_cfg c = rnn_cfg("gru", 4, 1, 0, 1, 1);
  expect_refused(&c, &flat, "expects a sequence [T, C]");
  c = rnn_cfg("lstm", 4, 1, 1, 1, 1);
  cfg_set_bool(&c, "carry", 1);
  expect_refused(&c, &seq, "carry");
  c = rnn_cfg("rnn", 4, 5, 1, 1, 1);
  expect_refused(&c, &seq, "num_layers x directions");
  /* shapes and PyTorch names */
  c = rnn_cfg("lstm", 4, 2, 1, 0, 1);
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &seq, &c, 1, 2, &e));
  ASSERT_EQ_INT(m.out.ndim, 1);
  ASSERT_EQ_INT(m.out.dim[0], 8);
  ASSERT_EQ_INT(m.ntensors, 16);
  ASSERT_STR_EQ(m.tensors[4].name, "weight_ih_l0_reverse");
  ASSERT_STR_EQ(m.tensors[8].name, "weight_ih_l1");
  ASSERT_EQ_INT(m.tensors[8].shape.dim[0], 16);
  ASSERT_EQ_INT(m.tensors[8].shape.dim[1], 8);
  ASSERT_STR_EQ(m.tensors[15].name, "bias_hh_l1_reverse");
  ASSERT_EQ_INT(m.carry_per_sample, 0);
  /* U(-1/sqrt(H), 1/sqrt(H)) = U(-0.5, 0.5), not all equal */
  nn_model_init_params(&m, 1);
  float lo = 1, hi = -1;
  for (size_t i = 0; i < m.nparams; i++) {
    lo = fminf(lo, m.params[i]);
    hi = fmaxf(hi, m.params[i]);
  }
  ASSERT_TRUE(lo >= -0.5f && hi <= 0.5f && hi - lo > 0.8f);
  nn_model_free(&m);
}

TEST_MAIN(TEST(test_grad_rnn), TEST(test_grad_lstm), TEST(test_grad_gru),
          TEST(test_grad_rnn_relu), TEST(test_grad_dropout_training), TEST(test_masking),
          TEST(test_carry_split_equals_whole), TEST(test_carry_gradients_detached),
          TEST(test_dropout_split_invariant), TEST(test_build_refuses))
