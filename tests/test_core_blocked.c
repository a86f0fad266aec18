/* test_core_blocked.c: the blocked (nChw16c) kernels of batchnorm, maxpool
 * and global_avgpool (core/layer.h, "Blocked activations") against their
 * NCHW kernels, the reference.
 *
 * Each case builds the same one-layer model twice from the same parameters
 * and running statistics, runs forward and backward once in NCHW and once
 * blocked (inputs converted with core/blocked.h, l->in_blocked and
 * l->out_blocked set by hand as the model's layout pass would), converts the
 * blocked results back and compares them with memcmp: the output, dx, the
 * parameter gradients and the running statistics must be the same bits.
 * Shapes: C = 16, 32, 48; H x W = 1x1, 3x3, 7x7, 14x14, 5x9; batch 1, 3, 8;
 * training and evaluation; a fused ReLU (relu_out) on and off; a frozen
 * pass (ctx->frozen), a frozen layer and a backward without dx. Maxpool:
 * 2x2/2 valid (the fast path with its codes, odd sizes dropping an edge),
 * 3x3/2 same, 3x3/1 explicit pad 1; inputs drawn from a few values so that
 * windows tie (the first maximum gets the gradient), plus a case with NaNs
 * and signed zeros. Batchnorm also runs on data built so that its sums
 * cancel (fill_cancel): any other order of the sums than rows.h's gives
 * other bits. Also: which shapes declare blk_caps. The NCHW kernels'
 * gradients are checked against finite differences elsewhere
 * (test_core_bn, test_core_layers); bit-identity carries that over. */
#include <stdint.h>
#include <stdlib.h>

#include "core/blocked.h"
#include "core/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "layer_cfg.h"
#include "test.h"

static const int chans[] = {16, 32, 48};
static const int hws[][2] = {{1, 1}, {3, 3}, {7, 7}, {14, 14}, {5, 9}};
static const int batches[] = {1, 3, 8};

/* Input values: uniform in [-1, 1], or (ties) one of -1, -0.5, 0, 0.5, 1,
 * or (special) ties with some NaNs and negative zeros. */
enum { FILL_UNIFORM, FILL_TIES, FILL_SPECIAL, FILL_CANCEL };

static void fill(float *v, size_t cnt, uint64_t key, int kind) {
  nn_rng r;
  nn_rng_init(&r, key, NN_RNG_TEST, 11, 0, 0);
  for (size_t i = 0; i < cnt; i++) {
    float u = nn_rng_uniform(&r);
    if (kind == FILL_UNIFORM) {
      v[i] = 2.0f * u - 1.0f;
    } else {
      v[i] = 0.5f * (float)((int)(u * 5.0f) - 2);
      if (kind == FILL_SPECIAL && i % 7 == 3) v[i] = -0.0f;
      if (kind == FILL_SPECIAL && i % 23 == 5) v[i] = NAN;
    }
  }
}

/* FILL_CANCEL (batchnorm), v [n, C, S] NCHW: uniform values, and where a
 * row has a full group of 16 positions, +B at its position 0 and -B at 1
 * (B = 2^60 times a channel's factor): in rows.h's order the tail is added
 * to B in double first and lost, in any other order it survives; and at
 * position 2, +B in sample 0 and -B in sample 1, so that the rows' order
 * (sample order) shows in the channel's sum likewise. */
static void fill_cancel(float *v, int n, int C, size_t S, uint64_t key) {
  fill(v, (size_t)n * C * S, key, FILL_UNIFORM);
  if (S < 16) return;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < C; c++) {
      float *row = v + ((size_t)i * C + c) * S, big = 0x1p60f * (1.0f + (float)(c % 5) / 8.0f);
      row[0] = big;
      row[1] = -big;
      if (i < 2) row[2] = i == 0 ? big : -big;
    }
}

/* One run's results, NCHW whatever the layout it ran in. */
typedef struct result {
  float *y, *dx, *grads, *bufs;
  size_t ny, nx, ngrads, nbufs;
} result;

static void result_free(result *r) {
  free(r->y);
  free(r->dx);
  free(r->grads);
  free(r->bufs);
}

typedef struct run_opts {
  int n, training, relu, frozen_pass, frozen_layer, no_dx, fill;
} run_opts;

/* Build cfg over `in`, run forward and backward on x / dy (NCHW, [n, in]
 * and [n, out]) in NCHW (blocked = 0) or blocked, results into *r.
 * Returns 0, or the build's error code. */
static int run(const nn_layer_cfg *cfg, const nn_shape *in, const run_opts *o, int blocked,
               const float *x, const float *dy, result *r) {
  nn_layer_cfg c = *cfg;
  c.frozen = o->frozen_layer;
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(&m, in, &c, 1, o->n, &e);
  if (rc) {
    fprintf(stderr, "build: %s\n", e.msg);
    return rc;
  }
  nn_model_init_params(&m, 5);
  /* weights, biases, running statistics away from their 1 / 0 defaults */
  fill(m.params, m.nparams, 21, FILL_UNIFORM);
  for (size_t i = 0; i < m.nparams / 2; i++) m.params[i] += 1.25f; /* weights; biases ~0 */
  fill(m.buffers, m.nbuffers, 22, FILL_UNIFORM);
  for (size_t i = m.nbuffers / 2; i < m.nbuffers; i++) m.buffers[i] += 1.5f; /* variances */
  nn_layer *l = &m.layers[0];
  l->relu_out = o->relu;
  l->in_blocked = blocked;
  l->out_blocked = blocked && (l->blk_caps & NN_BLK_SAME);
  int C = in->dim[0], H = in->dim[1], W = in->dim[2];
  const nn_shape *os = &l->out;
  size_t nx = (size_t)o->n * nn_shape_count(in), ny = (size_t)o->n * nn_shape_count(os);
  float *xb = malloc(nx * sizeof *xb), *dyb = malloc(ny * sizeof *dyb);
  float *tmp = malloc((nx > ny ? nx : ny) * sizeof *tmp);
  r->y = malloc(ny * sizeof *r->y);
  r->dx = calloc(nx, sizeof *r->dx);
  memcpy(xb, x, nx * sizeof *xb);
  memcpy(dyb, dy, ny * sizeof *dyb);
  if (l->in_blocked) nn_blk_convert(xb, tmp, o->n, C, H, W, 1);
  if (l->out_blocked) nn_blk_convert(dyb, tmp, o->n, os->dim[0], os->dim[1], os->dim[2], 1);
  nn_run_ctx ctx = {.training = o->training, .seed = 3, .frozen = o->frozen_pass};
  nn_model_zero_grad(&m);
  l->ops->forward(l, xb, r->y, o->n, &ctx);
  l->ops->backward(l, xb, r->y, dyb, o->no_dx ? NULL : r->dx, o->n, &ctx);
  if (l->out_blocked) nn_blk_convert(r->y, tmp, o->n, os->dim[0], os->dim[1], os->dim[2], 0);
  if (l->in_blocked) nn_blk_convert(r->dx, tmp, o->n, C, H, W, 0);
  r->ny = ny;
  r->nx = nx;
  r->ngrads = m.ntrainable;
  r->grads = malloc((m.ntrainable + 1) * sizeof *r->grads);
  if (m.ntrainable) memcpy(r->grads, m.grads, m.ntrainable * sizeof *r->grads);
  r->nbufs = m.nbuffers;
  r->bufs = malloc((m.nbuffers + 1) * sizeof *r->bufs);
  if (m.nbuffers) memcpy(r->bufs, m.buffers, m.nbuffers * sizeof *r->bufs);
  free(xb);
  free(dyb);
  free(tmp);
  nn_model_free(&m);
  return 0;
}

/* First index where a and b differ in bits, or -1. */
static long first_diff(const float *a, const float *b, size_t cnt) {
  for (size_t i = 0; i < cnt; i++)
    if (memcmp(a + i, b + i, sizeof *a) != 0) return (long)i;
  return -1;
}

static int ncases, nfailed;

/* Run cfg over [C, H, W] both ways and compare; returns 0 when the same
 * bits, else prints the case and the first difference and returns 1. */
static int compare(const nn_layer_cfg *cfg, const char *what, int C, int H, int W,
                   const run_opts *o) {
  nn_shape in = {3, {C, H, W}};
  size_t cnt = (size_t)o->n * C * H * W;
  float *x = malloc(cnt * sizeof *x), *dy = malloc(cnt * sizeof *dy);
  uint64_t kx = 1000u + (uint64_t)(C * 7 + H * 3 + W + o->n), kd = 2000u + (uint64_t)(C + H + W * 5 + o->n);
  if (o->fill == FILL_CANCEL) {
    fill_cancel(x, o->n, C, (size_t)H * W, kx);
    fill_cancel(dy, o->n, C, (size_t)H * W, kd);
  } else {
    fill(x, cnt, kx, o->fill);
    fill(dy, cnt, kd, FILL_UNIFORM);
  }
  result a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  int bad = run(cfg, &in, o, 0, x, dy, &a) || run(cfg, &in, o, 1, x, dy, &b);
  long d[4] = {-2, -2, -2, -2};
  if (!bad) {
    bad = a.ny != b.ny || a.ngrads != b.ngrads || a.nbufs != b.nbufs;
    if (!bad) {
      d[0] = first_diff(a.y, b.y, a.ny);
      d[1] = first_diff(a.dx, b.dx, a.nx);
      d[2] = first_diff(a.grads, b.grads, a.ngrads);
      d[3] = first_diff(a.bufs, b.bufs, a.nbufs);
      bad = d[0] >= 0 || d[1] >= 0 || d[2] >= 0 || d[3] >= 0;
    }
  }
  ncases++;
  if (bad) {
    nfailed++;
    fprintf(stderr,
            "    %s [%d, %d, %d] n=%d training=%d relu=%d frozen_pass=%d frozen_layer=%d "
            "no_dx=%d: first differing y %ld, dx %ld, grad %ld, buffer %ld\n",
            what, C, H, W, o->n, o->training, o->relu, o->frozen_pass, o->frozen_layer,
            o->no_dx, d[0], d[1], d[2], d[3]);
    if (d[0] >= 0) fprintf(stderr, "      y %.9g vs %.9g\n", a.y[d[0]], b.y[d[0]]);
    if (d[1] >= 0) fprintf(stderr, "      dx %.9g vs %.9g\n", a.dx[d[1]], b.dx[d[1]]);
    if (d[2] >= 0) fprintf(stderr, "      grad %.9g vs %.9g\n", a.grads[d[2]], b.grads[d[2]]);
  }
  result_free(&a);
  result_free(&b);
  free(x);
  free(dy);
  return bad;
}

/* Every shape x batch x mode for cfg; `fills` inputs kinds to try. */
static void sweep(const nn_layer_cfg *cfg, const char *what, int min_hw, int has_params,
                  const int *fills, int nfills) {
  /* modes: {frozen_pass, frozen_layer, no_dx}; the frozen ones only matter
   * with parameters */
  static const int modes[][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  int nmodes = has_params ? 4 : 1;
  for (size_t ci = 0; ci < sizeof chans / sizeof *chans; ci++)
    for (size_t hi = 0; hi < sizeof hws / sizeof *hws; hi++) {
      if (hws[hi][0] < min_hw || hws[hi][1] < min_hw) continue;
      for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
        for (int tr = 0; tr < 2; tr++)
          for (int relu = 0; relu < 2; relu++)
            for (int md = 0; md < nmodes; md++)
              for (int f = 0; f < nfills; f++) {
                run_opts o = {.n = batches[bi],
                              .training = tr,
                              .relu = relu,
                              .frozen_pass = modes[md][0],
                              .frozen_layer = modes[md][1],
                              .no_dx = modes[md][2],
                              .fill = fills[f]};
                compare(cfg, what, chans[ci], hws[hi][0], hws[hi][1], &o);
              }
    }
}

#define SWEEP_ASSERT(cfg, what, min_hw, has_params, ...)                         \
  do {                                                                           \
    static const int fills_[] = {__VA_ARGS__};                                   \
    ncases = nfailed = 0;                                                        \
    sweep(cfg, what, min_hw, has_params, fills_, (int)(sizeof fills_ / sizeof *fills_)); \
    fprintf(stderr, "    %s: %d cases, %d not bit-identical\n", what, ncases, nfailed); \
    ASSERT_TRUE(ncases > 0);                                                     \
    ASSERT_EQ_INT(nfailed, 0);                                                   \
  } while (0)

static void test_batchnorm_blocked(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  SWEEP_ASSERT(&c, "batchnorm", 1, 1, FILL_UNIFORM, FILL_CANCEL);
}

static nn_layer_cfg maxpool(int k, int stride, const char *pad, int explicit_pad) {
  nn_layer_cfg c = cfg_of("maxpool");
  cfg_set(&c, "pool_size", "[%d, %d]", k, k);
  cfg_set(&c, "stride", "[%d, %d]", stride, stride);
  cfg_set(&c, "padding", "\"%s\"", pad);
  if (explicit_pad) cfg_set(&c, "pad", "[%d, %d]", explicit_pad, explicit_pad);
  return c;
}

/* 2x2 / 2 valid: the fast path (odd sizes drop the last row / column). */
static void test_maxpool_blocked_2x2(void) {
  nn_layer_cfg c = maxpool(2, 2, "valid", 0);
  SWEEP_ASSERT(&c, "maxpool 2x2/2 valid", 2, 0, FILL_UNIFORM, FILL_TIES, FILL_SPECIAL);
}

static void test_maxpool_blocked_3x3_same(void) {
  nn_layer_cfg c = maxpool(3, 2, "same", 0);
  SWEEP_ASSERT(&c, "maxpool 3x3/2 same", 1, 0, FILL_UNIFORM, FILL_TIES, FILL_SPECIAL);
}

static void test_maxpool_blocked_3x3_pad1(void) {
  nn_layer_cfg c = maxpool(3, 1, "explicit", 1);
  SWEEP_ASSERT(&c, "maxpool 3x3/1 pad 1", 1, 0, FILL_UNIFORM, FILL_TIES, FILL_SPECIAL);
}

static void test_global_avgpool_blocked(void) {
  nn_layer_cfg c = cfg_of("global_avgpool");
  SWEEP_ASSERT(&c, "global_avgpool", 1, 0, FILL_UNIFORM);
}

/* The comparison can fail: a blocked run with the layout flag left off
 * reads blocked data as NCHW and must differ. */
static void test_compare_detects_layout(void) {
  nn_layer_cfg c = cfg_of("batchnorm");
  nn_shape in = {3, {32, 3, 3}};
  run_opts o = {.n = 3, .training = 1, .relu = 1};
  size_t cnt = (size_t)o.n * 32 * 9;
  float *x = malloc(cnt * sizeof *x), *dy = malloc(cnt * sizeof *dy), *tmp = malloc(cnt * sizeof *tmp);
  fill(x, cnt, 1, FILL_UNIFORM);
  fill(dy, cnt, 2, FILL_UNIFORM);
  result a, b;
  ASSERT_OK(run(&c, &in, &o, 0, x, dy, &a));
  nn_blk_convert(x, tmp, o.n, 32, 3, 3, 1); /* blocked data, NCHW kernel */
  ASSERT_OK(run(&c, &in, &o, 0, x, dy, &b));
  int same = first_diff(a.bufs, b.bufs, a.nbufs) < 0;
  result_free(&a);
  result_free(&b);
  free(x);
  free(dy);
  free(tmp);
  ASSERT_TRUE(!same);
}

static int caps_of(const char *type, nn_shape in) {
  nn_layer_cfg c = type[0] == 'm' ? maxpool(2, 2, "valid", 0) : cfg_of(type);
  nn_model m;
  if (nn_model_build(&m, &in, &c, 1, 2, NULL) != 0) return -1;
  int caps = m.layers[0].blk_caps;
  nn_model_free(&m);
  return caps;
}

/* blk_caps: only [C, H, W] with C % 16 == 0; avgpool never. */
static void test_blk_caps(void) {
  ASSERT_EQ_INT(caps_of("batchnorm", (nn_shape){3, {16, 3, 3}}), NN_BLK_SAME);
  ASSERT_EQ_INT(caps_of("batchnorm", (nn_shape){3, {48, 1, 1}}), NN_BLK_SAME);
  ASSERT_EQ_INT(caps_of("batchnorm", (nn_shape){3, {15, 3, 3}}), 0);
  ASSERT_EQ_INT(caps_of("batchnorm", (nn_shape){3, {24, 3, 3}}), 0);
  ASSERT_EQ_INT(caps_of("batchnorm", (nn_shape){1, {32}}), 0);
  ASSERT_EQ_INT(caps_of("batchnorm", (nn_shape){2, {32, 5}}), 0);
  ASSERT_EQ_INT(caps_of("maxpool", (nn_shape){3, {32, 4, 4}}), NN_BLK_SAME);
  ASSERT_EQ_INT(caps_of("maxpool", (nn_shape){3, {8, 4, 4}}), 0);
  ASSERT_EQ_INT(caps_of("maxpool", (nn_shape){3, {17, 4, 4}}), 0);
  ASSERT_EQ_INT(caps_of("global_avgpool", (nn_shape){3, {64, 7, 7}}), NN_BLK_IN);
  ASSERT_EQ_INT(caps_of("global_avgpool", (nn_shape){3, {20, 7, 7}}), 0);
  nn_layer_cfg a = cfg_of("avgpool");
  cfg_set(&a, "pool_size", "[2, 2]");
  nn_shape in = {3, {16, 4, 4}};
  nn_model m;
  ASSERT_OK(nn_model_build(&m, &in, &a, 1, 2, NULL));
  ASSERT_EQ_INT(m.layers[0].blk_caps, 0);
  nn_model_free(&m);
}

TEST_MAIN(TEST(test_batchnorm_blocked), TEST(test_maxpool_blocked_2x2),
          TEST(test_maxpool_blocked_3x3_same), TEST(test_maxpool_blocked_3x3_pad1),
          TEST(test_global_avgpool_blocked), TEST(test_compare_detects_layout),
          TEST(test_blk_caps))
