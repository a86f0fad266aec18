/* test_core_conv.c: conv2d, maxpool, avgpool and global_avgpool.
 *
 * - finite-difference gradient checks (nn_gradcheck) over strides, paddings,
 *   dilation, groups and no bias, and over each pooling layer;
 * - forward and backward against a naive direct convolution written here,
 *   on random sizes and configurations (batch smaller than max_batch);
 * - literal hand-computed values for conv2d and the pools;
 * - build-time shape and configuration errors and their messages;
 * - a micro benchmark of the classic Fashion-MNIST convnet (forward,
 *   backward, Adam) at batch 64 that prints samples/s (not asserted).
 *   NN_CONV_BENCH_STEPS sets its step count (default 20). */
#include <stdint.h>
#include <time.h>

#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "test.h"
#include "gradcheck_assert.h"


/* A conv2d config; padding NULL = default ("valid"). */
static nn_layer_cfg conv_cfg(int filters, int kh, int kw, int sh, int sw, const char *padding,
                             int ph, int pw, int dh, int dw, int groups, int bias) {
  nn_layer_cfg c = cfg_of("conv2d");
  cfg_set(&c, "filters", "%d", filters);
  cfg_set(&c, "kernel_size", "[%d, %d]", kh, kw);
  cfg_set(&c, "stride", "[%d, %d]", sh, sw);
  if (padding) cfg_set(&c, "padding", "\"%s\"", padding);
  cfg_set(&c, "pad", "[%d, %d]", ph, pw);
  cfg_set(&c, "dilation", "[%d, %d]", dh, dw);
  cfg_set(&c, "groups", "%d", groups);
  cfg_set_bool(&c, "use_bias", bias);
  return c;
}

static nn_layer_cfg pool_cfg(const char *type, int k, int s, const char *padding, int pad) {
  nn_layer_cfg c = cfg_of(type);
  cfg_set(&c, "pool_size", "[%d]", k);
  if (s > 0) {
    cfg_set(&c, "stride", "[%d]", s);
  }
  if (padding) cfg_set(&c, "padding", "\"%s\"", padding);
  cfg_set(&c, "pad", "[%d]", pad);
  return c;
}

static nn_shape chw(int c, int h, int w) { return (nn_shape){3, {c, h, w}}; }


static nn_gradcheck_opts gc_opts(uint64_t seed, int n) {
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  o.seed = seed;
  o.n = n;
  return o;
}

/* ---- gradient checks ------------------------------------------------------ */

static void test_grad_conv_valid_stride1(void) {
  nn_layer_cfg c = conv_cfg(3, 3, 2, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  nn_shape in = chw(2, 5, 4);
  nn_gradcheck_opts o = gc_opts(1, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_conv_same_stride2(void) {
  nn_layer_cfg c = conv_cfg(2, 3, 3, 2, 2, "same", 0, 0, 1, 1, 1, 1);
  nn_shape in = chw(2, 6, 5); /* odd width: padding split 1 left, 1 right; height 0/1 */
  nn_gradcheck_opts o = gc_opts(2, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_conv_same_stride1(void) {
  nn_layer_cfg c = conv_cfg(2, 4, 3, 1, 1, "same", 0, 0, 1, 1, 1, 1); /* even kernel */
  nn_shape in = chw(1, 5, 5);
  nn_gradcheck_opts o = gc_opts(3, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_conv_explicit_pad(void) {
  nn_layer_cfg c = conv_cfg(2, 3, 3, 2, 1, "explicit", 2, 1, 1, 1, 1, 1);
  nn_shape in = chw(2, 4, 4);
  nn_gradcheck_opts o = gc_opts(4, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_conv_dilation2(void) {
  nn_layer_cfg c = conv_cfg(2, 2, 3, 1, 1, "explicit", 1, 1, 2, 2, 1, 1);
  nn_shape in = chw(2, 6, 6);
  nn_gradcheck_opts o = gc_opts(5, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_conv_groups2(void) {
  nn_layer_cfg c = conv_cfg(4, 3, 3, 1, 1, "same", 0, 0, 1, 1, 2, 1);
  nn_shape in = chw(4, 4, 4);
  nn_gradcheck_opts o = gc_opts(6, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_conv_no_bias(void) {
  nn_layer_cfg c = conv_cfg(3, 2, 2, 1, 2, NULL, 0, 0, 1, 1, 1, 0);
  nn_shape in = chw(2, 4, 5);
  nn_gradcheck_opts o = gc_opts(7, 3);
  CHECK_GRADS(&in, &c, 1, &o);
}

/* conv -> tanh -> maxpool -> conv: two convolutions and a pool in one model
 * (the second conv's dx feeds the pool's backward). */
static void test_grad_conv_stack(void) {
  nn_layer_cfg c[3];
  c[0] = conv_cfg(3, 3, 3, 1, 1, "same", 0, 0, 1, 1, 1, 1);
  snprintf(c[0].activation, sizeof c[0].activation, "tanh");
  c[1] = pool_cfg("avgpool", 2, 0, NULL, 0);
  c[2] = conv_cfg(2, 2, 2, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  nn_shape in = chw(2, 6, 6);
  nn_gradcheck_opts o = gc_opts(8, 2);
  CHECK_GRADS(&in, c, 3, &o);
}

/* Max of exact copies: a tiny step keeps the argmax fixed unless two inputs
 * are within 2e-4 of each other, which the fixed seed avoids. */
static void test_grad_maxpool(void) {
  nn_layer_cfg c = pool_cfg("maxpool", 2, 0, NULL, 0);
  nn_shape in = chw(2, 4, 6);
  nn_gradcheck_opts o = gc_opts(9, 3);
  o.eps = 1e-4;
  CHECK_GRADS(&in, &c, 1, &o);
  c = pool_cfg("maxpool", 3, 2, "same", 0); /* overlapping windows, padding */
  in = chw(1, 5, 5);
  o = gc_opts(10, 2);
  o.eps = 1e-4;
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_avgpool(void) {
  nn_layer_cfg c = pool_cfg("avgpool", 2, 0, NULL, 0);
  nn_shape in = chw(2, 4, 5);
  nn_gradcheck_opts o = gc_opts(11, 2);
  CHECK_GRADS(&in, &c, 1, &o);
  c = pool_cfg("avgpool", 3, 2, "same", 0);
  in = chw(2, 5, 4);
  o = gc_opts(12, 2);
  CHECK_GRADS(&in, &c, 1, &o);
  c = pool_cfg("avgpool", 3, 1, "explicit", 1);
  in = chw(1, 4, 4);
  o = gc_opts(13, 2);
  CHECK_GRADS(&in, &c, 1, &o);
}

static void test_grad_global_avgpool(void) {
  nn_layer_cfg c = cfg_of("global_avgpool");
  nn_shape in = chw(3, 3, 4);
  nn_gradcheck_opts o = gc_opts(14, 3);
  CHECK_GRADS(&in, &c, 1, &o);
}

/* ---- naive reference convolution ---------------------------------------- */

/* Direct convolution geometry, computed from the documented rules. */
typedef struct ref_conv {
  int c, h, w, f, g, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo;
} ref_conv;

static void ref_setup(ref_conv *r, const nn_layer_cfg *cfg, const nn_shape *in) {
  r->c = in->dim[0];
  r->h = in->dim[1];
  r->w = in->dim[2];
  r->f = cfg_num(cfg, "filters");
  r->g = cfg_num(cfg, "groups");
  r->kh = cfg_int_at(cfg, "kernel_size", 0);
  r->kw = cfg_int_at(cfg, "kernel_size", 1);
  r->sh = cfg_int_at(cfg, "stride", 0);
  r->sw = cfg_int_at(cfg, "stride", 1);
  r->dh = cfg_int_at(cfg, "dilation", 0);
  r->dw = cfg_int_at(cfg, "dilation", 1);
  int ekh = r->dh * (r->kh - 1) + 1, ekw = r->dw * (r->kw - 1) + 1;
  int hp, wp;
  if (strcmp(cfg_str(cfg, "padding"), "same") == 0) {
    int oh = (r->h + r->sh - 1) / r->sh, ow = (r->w + r->sw - 1) / r->sw;
    int th = (oh - 1) * r->sh + ekh - r->h, tw = (ow - 1) * r->sw + ekw - r->w;
    if (th < 0) th = 0;
    if (tw < 0) tw = 0;
    r->pt = th / 2;
    r->pl = tw / 2;
    hp = r->h + th;
    wp = r->w + tw;
  } else if (strcmp(cfg_str(cfg, "padding"), "explicit") == 0) {
    r->pt = cfg_int_at(cfg, "pad", 0);
    r->pl = cfg_int_at(cfg, "pad", 1);
    hp = r->h + 2 * r->pt;
    wp = r->w + 2 * r->pl;
  } else {
    r->pt = r->pl = 0;
    hp = r->h;
    wp = r->w;
  }
  r->ho = (hp - ekh) / r->sh + 1;
  r->wo = (wp - ekw) / r->sw + 1;
}

/* x[s][c][ih][iw] or 0 outside; i.e. the input tap of output (oh, ow), kernel (i, j). */
static int ref_tap(const ref_conv *r, int oh, int ow, int i, int j, int *ih, int *iw) {
  *ih = oh * r->sh - r->pt + i * r->dh;
  *iw = ow * r->sw - r->pl + j * r->dw;
  return *ih >= 0 && *ih < r->h && *iw >= 0 && *iw < r->w;
}

/* y [n, F, Ho, Wo] by the definition, in double. */
static void ref_forward(const ref_conv *r, const float *x, const float *wt, const float *b,
                        int n, double *y) {
  int cg = r->c / r->g, fg = r->f / r->g;
  for (int s = 0; s < n; s++)
    for (int f = 0; f < r->f; f++)
      for (int oh = 0; oh < r->ho; oh++)
        for (int ow = 0; ow < r->wo; ow++) {
          double acc = b ? b[f] : 0.0;
          int g0 = f / fg;
          for (int cc = 0; cc < cg; cc++)
            for (int i = 0; i < r->kh; i++)
              for (int j = 0; j < r->kw; j++) {
                int ih, iw;
                if (!ref_tap(r, oh, ow, i, j, &ih, &iw)) continue;
                int c = g0 * cg + cc;
                acc += (double)wt[((f * cg + cc) * r->kh + i) * r->kw + j] *
                       x[((s * r->c + c) * r->h + ih) * r->w + iw];
              }
          y[((s * r->f + f) * r->ho + oh) * r->wo + ow] = acc;
        }
}

/* dW [F, C/g, kh, kw], db [F], dx [n, C, H, W] from dy, by the definition. */
static void ref_backward(const ref_conv *r, const float *x, const float *wt, const float *dy,
                         int n, double *dw, double *db, double *dx) {
  int cg = r->c / r->g, fg = r->f / r->g;
  for (int s = 0; s < n; s++)
    for (int f = 0; f < r->f; f++)
      for (int oh = 0; oh < r->ho; oh++)
        for (int ow = 0; ow < r->wo; ow++) {
          double d = dy[((s * r->f + f) * r->ho + oh) * r->wo + ow];
          db[f] += d;
          int g0 = f / fg;
          for (int cc = 0; cc < cg; cc++)
            for (int i = 0; i < r->kh; i++)
              for (int j = 0; j < r->kw; j++) {
                int ih, iw;
                if (!ref_tap(r, oh, ow, i, j, &ih, &iw)) continue;
                int c = g0 * cg + cc;
                size_t wi = (size_t)((f * cg + cc) * r->kh + i) * r->kw + j;
                size_t xi = (size_t)((s * r->c + c) * r->h + ih) * r->w + iw;
                dw[wi] += d * x[xi];
                dx[xi] += d * wt[wi];
              }
        }
}

static int rand_in(nn_rng *g, int lo, int hi) { return lo + (int)nn_rng_below(g, (uint32_t)(hi - lo + 1)); }

/* Random shapes and configurations: forward, dW, db and dx against the naive
 * definition. The model is built for max_batch = n + 2 and run on n. */
/* `trials` random configurations against ref_forward/ref_backward. stride1:
 * stride 1 and padding "same" or explicit, which is where the shift path
 * (a tap's col row as one shifted copy of the plane) applies whenever the
 * output is as wide as the input. *cases: how many built and matched. */
static void check_random_convs(uint64_t seed, int trials, int stride1, int *cases_out) {
  nn_rng g;
  nn_rng_init(&g, seed, NN_RNG_TEST, 77, 0, 0);
  static const char *const pads[] = {"valid", "same", "explicit"};
  int cases = 0;
  for (int t = 0; t < trials; t++) {
    int groups = rand_in(&g, 1, 3);
    int c = groups * rand_in(&g, 1, 3), f = groups * rand_in(&g, 1, 3);
    int smax = stride1 ? 1 : 3;
    nn_layer_cfg cfg = conv_cfg(f, rand_in(&g, 1, 4), rand_in(&g, 1, 4), rand_in(&g, 1, smax),
                                rand_in(&g, 1, smax), pads[rand_in(&g, stride1, 2)],
                                rand_in(&g, 0, 2), rand_in(&g, 0, 2), rand_in(&g, 1, 2),
                                rand_in(&g, 1, 2), groups, rand_in(&g, 0, 1));
    nn_shape in = chw(c, rand_in(&g, 1, 9), rand_in(&g, 1, 9));
    int n = rand_in(&g, 1, 3);
    ref_conv r;
    ref_setup(&r, &cfg, &in);
    nn_model m;
    nn_error e;
    nn_error_clear(&e);
    int ekh = r.dh * (r.kh - 1) + 1, ekw = r.dw * (r.kw - 1) + 1;
    int rc = nn_model_build(&m, &in, &cfg, 1, n + 2, &e);
    /* the reference's own rule for "kernel larger than padded input" */
    int expl = strcmp(cfg_str(&cfg, "padding"), "explicit") == 0;
    int hp = in.dim[1] + (expl ? 2 * cfg_int_at(&cfg, "pad", 0) : 0);
    int wp = in.dim[2] + (expl ? 2 * cfg_int_at(&cfg, "pad", 1) : 0);
    int fits = strcmp(cfg_str(&cfg, "padding"), "same") == 0 || (ekh <= hp && ekw <= wp);
    if (!fits) {
      ASSERT_EQ_INT(rc, NN_ESHAPE);
      ASSERT_STR_CONTAINS(e.msg, "is larger than the padded input");
      continue;
    }
    if (rc) fprintf(stderr, "build: %s\n", e.msg);
    ASSERT_OK(rc);
    ASSERT_EQ_INT(m.out.dim[0], f);
    ASSERT_EQ_INT(m.out.dim[1], r.ho);
    ASSERT_EQ_INT(m.out.dim[2], r.wo);
    nn_model_init_params(&m, (uint64_t)t);
    for (size_t i = 0; i < m.nparams; i++) m.params[i] += 0.3f * (nn_rng_uniform(&g) - 0.5f);
    size_t nx = (size_t)n * nn_shape_count(&in), ny = (size_t)n * nn_shape_count(&m.out);
    size_t nw = nn_shape_count(&m.layers[0].pspec[0].shape);
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy), *dx = malloc(nx * sizeof *dx);
    double *yr = calloc(ny, sizeof *yr), *dwr = calloc(nw, sizeof *dwr),
           *dbr = calloc((size_t)f, sizeof *dbr), *dxr = calloc(nx, sizeof *dxr);
    int ok = x && dy && dx && yr && dwr && dbr && dxr;
    double worst = 0.0;
    if (ok) {
      for (size_t i = 0; i < nx; i++) x[i] = 2.0f * nn_rng_uniform(&g) - 1.0f;
      for (size_t i = 0; i < ny; i++) dy[i] = 2.0f * nn_rng_uniform(&g) - 1.0f;
      const float *b = cfg_num(&cfg, "use_bias") ? m.layers[0].param[1] : NULL;
      ref_forward(&r, x, m.layers[0].param[0], b, n, yr);
      ref_backward(&r, x, m.layers[0].param[0], dy, n, dwr, dbr, dxr);
      nn_run_ctx ctx = {0};
      const float *y = nn_model_forward(&m, x, n, &ctx);
      nn_model_zero_grad(&m);
      nn_model_backward_dx(&m, x, dy, dx, n, &ctx, NULL, NULL);
      for (size_t i = 0; i < ny; i++) worst = fmax(worst, fabs(y[i] - yr[i]));
      for (size_t i = 0; i < nw; i++) worst = fmax(worst, fabs(m.layers[0].grad[0][i] - dwr[i]));
      if (cfg_num(&cfg, "use_bias"))
        for (int i = 0; i < f; i++) worst = fmax(worst, fabs(m.layers[0].grad[1][i] - dbr[i]));
      for (size_t i = 0; i < nx; i++) worst = fmax(worst, fabs(dx[i] - dxr[i]));
    }
    free(x);
    free(dy);
    free(dx);
    free(yr);
    free(dwr);
    free(dbr);
    free(dxr);
    nn_model_free(&m);
    ASSERT_TRUE(ok);
    if (worst > 1e-4)
      fprintf(stderr, "case %d: c%d %dx%d f%d k%dx%d s%dx%d %s pad %dx%d d%dx%d g%d n%d\n", t,
              c, in.dim[1], in.dim[2], f, r.kh, r.kw, r.sh, r.sw, cfg_str(&cfg, "padding"),
              cfg_int_at(&cfg, "pad", 0), cfg_int_at(&cfg, "pad", 1), r.dh, r.dw, groups, n);
    ASSERT_TRUE(worst <= 1e-4);
    cases++;
    *cases_out = cases;
  }
}

static void test_conv_matches_direct_convolution(void) {
  int cases = 0;
  check_random_convs(2024, 60, 0, &cases);
  fprintf(stderr, "    %d random configurations matched\n", cases);
  ASSERT_TRUE(cases >= 30);
}

static void test_conv_stride1_matches_direct_convolution(void) {
  int cases = 0;
  check_random_convs(2025, 60, 1, &cases);
  fprintf(stderr, "    %d random stride-1 configurations matched\n", cases);
  ASSERT_TRUE(cases >= 40);
}

/* ---- literal values -------------------------------------------------------- */

/* Build one layer on `in` for batch n; params filled by the caller. */
static int build1(nn_model *m, const nn_layer_cfg *c, nn_shape in, int n, nn_error *e) {
  nn_error_clear(e);
  int rc = nn_model_build(m, &in, c, 1, n, e);
  if (rc) fprintf(stderr, "build: %s\n", e->msg);
  return rc;
}

/* x = 1..9 in a 3x3 image, weight [[1, 2], [3, 4]], bias 0.5:
 *   y00 = 1*1 + 2*2 + 3*4 + 4*5 + 0.5 = 37.5, y01 = 2 + 6 + 15 + 24 + 0.5 = 47.5,
 *   y10 = 4 + 10 + 21 + 32 + 0.5 = 67.5,     y11 = 5 + 12 + 24 + 36 + 0.5 = 77.5.
 * With dy = 1 everywhere: db = 4, dW[i][j] = sum of the 2x2 block at (i, j):
 *   [[12, 16], [24, 28]]; dx = number of windows covering each pixel times
 *   the weights: dx[0][0] = 1, dx[1][1] = 1+2+3+4 = 10, dx[2][2] = 4. */
static void test_conv_literal(void) {
  nn_layer_cfg c = conv_cfg(1, 2, 2, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  nn_model m;
  nn_error e;
  ASSERT_OK(build1(&m, &c, chw(1, 3, 3), 1, &e));
  float w[4] = {1, 2, 3, 4};
  memcpy(m.layers[0].param[0], w, sizeof w);
  m.layers[0].param[1][0] = 0.5f;
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, dy[4] = {1, 1, 1, 1}, dx[9];
  nn_run_ctx ctx = {0};
  const float *y = nn_model_forward(&m, x, 1, &ctx);
  float yv[4];
  memcpy(yv, y, sizeof yv);
  nn_model_zero_grad(&m);
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  float dw[4], db = m.layers[0].grad[1][0];
  memcpy(dw, m.layers[0].grad[0], sizeof dw);
  nn_model_free(&m);
  ASSERT_NEAR(yv[0], 37.5, 1e-5);
  ASSERT_NEAR(yv[1], 47.5, 1e-5);
  ASSERT_NEAR(yv[2], 67.5, 1e-5);
  ASSERT_NEAR(yv[3], 77.5, 1e-5);
  ASSERT_NEAR(db, 4.0, 1e-6);
  ASSERT_NEAR(dw[0], 12.0, 1e-5);
  ASSERT_NEAR(dw[1], 16.0, 1e-5);
  ASSERT_NEAR(dw[2], 24.0, 1e-5);
  ASSERT_NEAR(dw[3], 28.0, 1e-5);
  ASSERT_NEAR(dx[0], 1.0, 1e-6);
  ASSERT_NEAR(dx[1], 3.0, 1e-6);
  ASSERT_NEAR(dx[4], 10.0, 1e-6);
  ASSERT_NEAR(dx[8], 4.0, 1e-6);
}

/* "same" with stride 1 keeps the size and pads like PyTorch: a 1x3 kernel
 * [1, 1, 1] on the row [1, 2, 3, 4] gives [3, 6, 9, 7]; with an even kernel
 * [1, 1] the extra zero goes to the right: [3, 5, 7, 4]. Stride 2 "same"
 * on width 5 gives ceil(5/2) = 3 outputs: total padding 2, one each side:
 * [1+2, 2+3+4, 4+5] for x = 1..5 and kernel [1, 1, 1]. */
static void test_conv_same_padding_literal(void) {
  nn_model m;
  nn_error e;
  nn_run_ctx ctx = {0};
  float x4[4] = {1, 2, 3, 4}, x5[5] = {1, 2, 3, 4, 5}, out[4];
  nn_layer_cfg c = conv_cfg(1, 1, 3, 1, 1, "same", 0, 0, 1, 1, 1, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 1, 4), 1, &e));
  for (int i = 0; i < 3; i++) m.layers[0].param[0][i] = 1.0f;
  memcpy(out, nn_model_forward(&m, x4, 1, &ctx), sizeof out);
  ASSERT_EQ_INT(m.out.dim[2], 4);
  nn_model_free(&m);
  ASSERT_NEAR(out[0], 3, 0);
  ASSERT_NEAR(out[1], 6, 0);
  ASSERT_NEAR(out[2], 9, 0);
  ASSERT_NEAR(out[3], 7, 0);
  c = conv_cfg(1, 1, 2, 1, 1, "same", 0, 0, 1, 1, 1, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 1, 4), 1, &e));
  for (int i = 0; i < 2; i++) m.layers[0].param[0][i] = 1.0f;
  memcpy(out, nn_model_forward(&m, x4, 1, &ctx), sizeof out);
  nn_model_free(&m);
  ASSERT_NEAR(out[0], 3, 0);
  ASSERT_NEAR(out[1], 5, 0);
  ASSERT_NEAR(out[2], 7, 0);
  ASSERT_NEAR(out[3], 4, 0);
  c = conv_cfg(1, 1, 3, 1, 2, "same", 0, 0, 1, 1, 1, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 1, 5), 1, &e));
  for (int i = 0; i < 3; i++) m.layers[0].param[0][i] = 1.0f;
  int wo = m.out.dim[2];
  memcpy(out, nn_model_forward(&m, x5, 1, &ctx), 3 * sizeof *out);
  nn_model_free(&m);
  ASSERT_EQ_INT(wo, 3);
  ASSERT_NEAR(out[0], 3, 0);
  ASSERT_NEAR(out[1], 9, 0);
  ASSERT_NEAR(out[2], 9, 0);
}

/* x (4x4):  1  5  2  0      maxpool 2 -> [[6, 3], [9, 8]],
 *           6 -1  3  1      argmax positions 4, 6, 12, 11;
 *           0  2  4  8      avgpool 2 -> [[2.75, 1.5], [2.75, 4]];
 *           9  0  1  3      global_avgpool -> 44/16. */
static void test_pool_literal(void) {
  static const float x[16] = {1, 5, 2, 0, 6, -1, 3, 1, 0, 2, 4, 8, 9, 0, 1, 3};
  float dy[4] = {1, 2, 3, 4}, dx[16], y[4];
  nn_model m;
  nn_error e;
  nn_run_ctx ctx = {0};
  nn_layer_cfg c = pool_cfg("maxpool", 2, 0, NULL, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 4, 4), 1, &e));
  memcpy(y, nn_model_forward(&m, x, 1, &ctx), sizeof y);
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  nn_model_free(&m);
  ASSERT_NEAR(y[0], 6, 0);
  ASSERT_NEAR(y[1], 3, 0);
  ASSERT_NEAR(y[2], 9, 0);
  ASSERT_NEAR(y[3], 8, 0);
  float want[16] = {0};
  want[4] = 1;
  want[6] = 2;
  want[12] = 3;
  want[11] = 4;
  for (int i = 0; i < 16; i++) ASSERT_NEAR(dx[i], want[i], 0);

  c = pool_cfg("avgpool", 2, 0, NULL, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 4, 4), 1, &e));
  memcpy(y, nn_model_forward(&m, x, 1, &ctx), sizeof y);
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  nn_model_free(&m);
  ASSERT_NEAR(y[0], 2.75, 1e-6);
  ASSERT_NEAR(y[1], 1.5, 1e-6);
  ASSERT_NEAR(y[2], 2.75, 1e-6);
  ASSERT_NEAR(y[3], 4.0, 1e-6);
  ASSERT_NEAR(dx[0], 0.25, 1e-7);
  ASSERT_NEAR(dx[3], 0.5, 1e-7);
  ASSERT_NEAR(dx[12], 0.75, 1e-7);
  ASSERT_NEAR(dx[15], 1.0, 1e-7);

  c = cfg_of("global_avgpool");
  ASSERT_OK(build1(&m, &c, chw(1, 4, 4), 1, &e));
  memcpy(y, nn_model_forward(&m, x, 1, &ctx), sizeof(float));
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  nn_model_free(&m);
  ASSERT_NEAR(y[0], 44.0 / 16, 1e-6);
  for (int i = 0; i < 16; i++) ASSERT_NEAR(dx[i], 1.0 / 16, 1e-7);
}

/* maxpool 2x2 on a 3x5 input (odd sizes: the last row and column belong to
 * no window and get zero gradient), with ties: the first maximum in
 * row-major order of each window gets the gradient.
 *   x:  0 0 | 1 3 | 9      windows: [0 0; 0 0] -> 0 at (0,0)
 *       0 0 | 3 2 | 9               [1 3; 3 2] -> 3 at (0,3)
 *       9 9   9 9   9      (the third row and column are dropped) */
static void test_maxpool_ties_and_edges(void) {
  static const float x[15] = {0, 0, 1, 3, 9, 0, 0, 3, 2, 9, 9, 9, 9, 9, 9};
  float y[2], dx[15], dy[2] = {5, 7};
  nn_model m;
  nn_error e;
  nn_run_ctx ctx = {0};
  nn_layer_cfg c = pool_cfg("maxpool", 2, 0, NULL, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 3, 5), 1, &e));
  int ho = m.out.dim[1], wo = m.out.dim[2];
  memcpy(y, nn_model_forward(&m, x, 1, &ctx), sizeof y);
  for (int i = 0; i < 15; i++) dx[i] = -1.0f; /* every element must be written */
  nn_model_backward_dx(&m, x, dy, dx, 1, &ctx, NULL, NULL);
  nn_model_free(&m);
  ASSERT_EQ_INT(ho, 1);
  ASSERT_EQ_INT(wo, 2);
  ASSERT_NEAR(y[0], 0, 0);
  ASSERT_NEAR(y[1], 3, 0);
  float want[15] = {0};
  want[0] = 5;
  want[3] = 7;
  for (int i = 0; i < 15; i++) ASSERT_NEAR(dx[i], want[i], 0);
  /* the generic path (3x3 windows, stride 1) follows the same tie rule */
  static const float x2[9] = {2, 1, 2, 0, 2, 0, 1, 1, 1};
  float dy2[1] = {4}, dx2[9];
  c = pool_cfg("maxpool", 3, 1, NULL, 0);
  ASSERT_OK(build1(&m, &c, chw(1, 3, 3), 1, &e));
  nn_model_forward(&m, x2, 1, &ctx);
  nn_model_backward_dx(&m, x2, dy2, dx2, 1, &ctx, NULL, NULL);
  nn_model_free(&m);
  for (int i = 0; i < 9; i++) ASSERT_NEAR(dx2[i], i == 0 ? 4.0 : 0.0, 0);
}

/* Padding rules of avgpool: explicit counts the zeros (PyTorch
 * count_include_pad=True), same divides by the in-bounds count (TF). Row
 * x = [1, 2, 3, 4], window 1x3, stride 1:
 *   explicit pad 1: [(0+1+2)/3, 6/3, 9/3, (3+4+0)/3]
 *   same:           [3/2, 6/3, 9/3, 7/2]
 * and maxpool "same" with negative inputs never picks the padding. */
static void test_pool_padding_rules(void) {
  float x[4] = {1, 2, 3, 4}, y[4];
  nn_model m;
  nn_error e;
  nn_run_ctx ctx = {0};
  nn_layer_cfg c = cfg_of("avgpool");
  cfg_set(&c, "pool_size", "[%d, %d]", 1, 3);
  cfg_set(&c, "stride", "[%d]", 1);
  cfg_set(&c, "padding", "\"explicit\"");
  cfg_set(&c, "pad", "[%d, %d]", 0, 1);
  ASSERT_OK(build1(&m, &c, chw(1, 1, 4), 1, &e));
  memcpy(y, nn_model_forward(&m, x, 1, &ctx), sizeof y);
  nn_model_free(&m);
  ASSERT_NEAR(y[0], 1.0, 1e-6);
  ASSERT_NEAR(y[1], 2.0, 1e-6);
  ASSERT_NEAR(y[2], 3.0, 1e-6);
  ASSERT_NEAR(y[3], 7.0 / 3, 1e-6);
  cfg_set(&c, "padding", "\"same\"");
  ASSERT_OK(build1(&m, &c, chw(1, 1, 4), 1, &e));
  memcpy(y, nn_model_forward(&m, x, 1, &ctx), sizeof y);
  nn_model_free(&m);
  ASSERT_NEAR(y[0], 1.5, 1e-6);
  ASSERT_NEAR(y[1], 2.0, 1e-6);
  ASSERT_NEAR(y[2], 3.0, 1e-6);
  ASSERT_NEAR(y[3], 3.5, 1e-6);
  float xn[4] = {-4, -3, -2, -1};
  nn_layer_cfg mc = c;
  snprintf(mc.type, sizeof mc.type, "maxpool");
  ASSERT_OK(build1(&m, &mc, chw(1, 1, 4), 1, &e));
  memcpy(y, nn_model_forward(&m, xn, 1, &ctx), sizeof y);
  nn_model_free(&m);
  ASSERT_NEAR(y[0], -3, 0);
  ASSERT_NEAR(y[1], -2, 0);
  ASSERT_NEAR(y[2], -1, 0);
  ASSERT_NEAR(y[3], -1, 0);
}

/* ---- configuration and shape errors ------------------------------------- */

static int build_err(const nn_layer_cfg *c, int nc, nn_shape in, nn_error *e) {
  nn_model m;
  nn_error_clear(e);
  int rc = nn_model_build(&m, &in, c, nc, 2, e);
  if (rc == 0) nn_model_free(&m);
  return rc;
}

static void test_shape_errors(void) {
  nn_error e;
  nn_layer_cfg c[3];
  c[1] = cfg_of("relu");
  c[2] = conv_cfg(4, 5, 5, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  snprintf(c[2].name, sizeof c[2].name, "conv1");
  c[0] = conv_cfg(2, 1, 1, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  ASSERT_EQ_INT(build_err(c, 3, chw(1, 4, 4), &e), NN_ESHAPE);
  ASSERT_STR_CONTAINS(e.msg, "layer 2 'conv1' (conv2d): kernel 5x5 is larger than the padded input 4x4");
  /* explicit padding makes it fit: 4 + 2*1 = 6 >= 5 */
  c[2] = conv_cfg(4, 5, 5, 1, 1, "explicit", 1, 1, 1, 1, 1, 1);
  ASSERT_OK(build_err(c, 3, chw(1, 4, 4), &e));
  /* dilation is named */
  c[2] = conv_cfg(4, 3, 3, 1, 1, NULL, 0, 0, 2, 2, 1, 1);
  ASSERT_EQ_INT(build_err(&c[2], 1, chw(1, 4, 4), &e), NN_ESHAPE);
  ASSERT_STR_CONTAINS(e.msg, "kernel 3x3 (dilated to 5x5) is larger than the padded input 4x4");
  /* a flat input */
  c[0] = conv_cfg(4, 3, 3, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  ASSERT_EQ_INT(build_err(c, 1, (nn_shape){1, {784}}, &e), NN_ESHAPE);
  ASSERT_STR_CONTAINS(e.msg, "layer 0 'conv2d0' (conv2d): expects a [channels, height, width] input, got [784]");
  /* groups */
  c[0] = conv_cfg(4, 3, 3, 1, 1, NULL, 0, 0, 1, 1, 3, 1);
  ASSERT_EQ_INT(build_err(c, 1, chw(3, 5, 5), &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "groups = 3 must divide both the input channels (3) and filters (4)");
  /* required keys missing */
  c[0] = cfg_of("conv2d");
  cfg_set(&c[0], "kernel_size", "[%d]", 3);
  ASSERT_EQ_INT(build_err(c, 1, chw(1, 5, 5), &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "filters must be >= 1");
  cfg_set(&c[0], "filters", "%d", 2);
  cfg_set(&c[0], "kernel_size", "[]");
  ASSERT_EQ_INT(build_err(c, 1, chw(1, 5, 5), &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "kernel_size must have 1 or 2 items, got 0");
  /* pools */
  c[0] = pool_cfg("maxpool", 3, 0, NULL, 0);
  ASSERT_EQ_INT(build_err(c, 1, chw(2, 2, 5), &e), NN_ESHAPE);
  ASSERT_STR_CONTAINS(e.msg, "layer 0 'maxpool0' (maxpool): pool window 3x3 is larger than the padded input 2x5");
  c[0] = pool_cfg("avgpool", 2, 0, "explicit", 2);
  ASSERT_EQ_INT(build_err(c, 1, chw(1, 5, 5), &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "pad 2x2 must be at most half the pool size 2x2");
  c[0] = cfg_of("global_avgpool");
  ASSERT_EQ_INT(build_err(c, 1, (nn_shape){2, {4, 4}}, &e), NN_ESHAPE);
  ASSERT_STR_CONTAINS(e.msg, "expects a [channels, height, width] input, got [4, 4]");
  c[0] = pool_cfg("maxpool", 2, 0, NULL, 0);
  cfg_set(&c[0], "padding", "\"full\"");
  ASSERT_EQ_INT(build_err(c, 1, chw(1, 4, 4), &e), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(e.msg, "padding 'full' is not one of valid|same|explicit");
}

/* Defaults from the key tables, output shapes, parameter shapes and the
 * activation expansion. */
static void test_defaults_and_shapes(void) {
  nn_layer_cfg c = cfg_of("conv2d");
  ASSERT_STR_EQ(cfg_str(&c, "padding"), "valid");
  ASSERT_EQ_INT(cfg_count(&c, "stride"), 1);
  ASSERT_EQ_INT(cfg_int_at(&c, "stride", 0), 1);
  ASSERT_EQ_INT(cfg_int_at(&c, "dilation", 0), 1);
  ASSERT_EQ_INT(cfg_num(&c, "groups"), 1);
  ASSERT_EQ_INT(cfg_num(&c, "use_bias"), 1);
  ASSERT_STR_EQ(cfg_str(&c, "init"), "he_uniform");
  cfg_set(&c, "filters", "%d", 8);
  cfg_set(&c, "kernel_size", "[%d]", 3);
  snprintf(c.activation, sizeof c.activation, "relu");
  nn_layer_cfg p = cfg_of("maxpool");
  ASSERT_EQ_INT(cfg_count(&p, "stride"), 1); /* [0] = the pool size */
  ASSERT_EQ_INT(cfg_int_at(&p, "stride", 0), 0);
  cfg_set(&p, "pool_size", "[%d]", 2);
  nn_layer_cfg cs[2] = {c, p};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  nn_shape in = chw(3, 28, 28);
  ASSERT_OK(nn_model_build(&m, &in, cs, 2, 4, &e));
  int nl = m.nlayers;
  nn_shape out = m.out;
  nn_shape ws = m.layers[0].pspec[0].shape;
  char act[NN_NAME_MAX];
  snprintf(act, sizeof act, "%s", m.layers[1].cfg.name);
  nn_model_free(&m);
  ASSERT_EQ_INT(nl, 3);
  ASSERT_STR_EQ(act, "conv2d0_relu");
  ASSERT_EQ_INT(ws.ndim, 4);
  ASSERT_EQ_INT(ws.dim[0], 8);
  ASSERT_EQ_INT(ws.dim[1], 3);
  ASSERT_EQ_INT(ws.dim[2], 3);
  ASSERT_EQ_INT(ws.dim[3], 3);
  ASSERT_EQ_INT(out.dim[0], 8);
  ASSERT_EQ_INT(out.dim[1], 13);
  ASSERT_EQ_INT(out.dim[2], 13);
}

/* ---- micro benchmark ------------------------------------------------------- */

static double now_s(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The classic Fashion-MNIST convnet: conv 32 3x3 relu, maxpool 2, conv 64
 * 3x3 relu, maxpool 2, conv 64 3x3 relu, flatten, dense 64 relu, dense 10;
 * softmax cross-entropy, Adam. Prints samples/s of forward + backward +
 * optimizer step at batch 64 on random data; asserts only that it learns
 * something (the loss on the fixed batch goes down). */
static void test_bench_classic_convnet(void) {
  const int batch = 64;
  int steps = 20;
  const char *env = getenv("NN_CONV_BENCH_STEPS");
  if (env && atoi(env) > 0) steps = atoi(env);
  nn_layer_cfg c[8];
  c[0] = conv_cfg(32, 3, 3, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  snprintf(c[0].activation, sizeof c[0].activation, "relu");
  c[1] = pool_cfg("maxpool", 2, 0, NULL, 0);
  c[2] = conv_cfg(64, 3, 3, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  snprintf(c[2].activation, sizeof c[2].activation, "relu");
  c[3] = pool_cfg("maxpool", 2, 0, NULL, 0);
  c[4] = conv_cfg(64, 3, 3, 1, 1, NULL, 0, 0, 1, 1, 1, 1);
  snprintf(c[4].activation, sizeof c[4].activation, "relu");
  c[5] = cfg_of("flatten");
  c[6] = cfg_of("dense");
  cfg_set(&c[6], "units", "%d", 64);
  snprintf(c[6].activation, sizeof c[6].activation, "relu");
  c[7] = cfg_of("dense");
  cfg_set(&c[7], "units", "%d", 10);
  nn_shape in = chw(1, 28, 28);
  nn_model m;
  nn_optim opt;
  memset(&opt, 0, sizeof opt);
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 8, batch, &e));
  nn_model_init_params(&m, 42);
  nn_optim_cfg oc;
  memset(&oc, 0, sizeof oc);
  nn_keys_apply_defaults(nn_optim_keys, &oc, &e);
  snprintf(oc.type, sizeof oc.type, "adam");
  int rc = nn_optim_init(&opt, &oc, m.nparams, &e);
  float *x = malloc(sizeof(float) * 784 * batch), *dout = malloc(sizeof(float) * 10 * batch);
  int32_t labels[64];
  nn_rng g;
  nn_rng_init(&g, 5, NN_RNG_TEST, 0, 0, 0);
  for (int i = 0; x && i < 784 * batch; i++) x[i] = nn_rng_uniform(&g);
  for (int i = 0; i < batch; i++) labels[i] = (int32_t)nn_rng_below(&g, 10);
  double first = 0, last = 0, t0 = 0, c0 = 0, best = 1e30;
  nn_run_ctx ctx = {.training = 1};
  for (int s = 0; rc == 0 && x && dout && s <= steps; s++) {
    if (s == 1) { /* step 0 warms caches and pages */
      t0 = now_s(CLOCK_MONOTONIC);
      c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    }
    double ts = now_s(CLOCK_PROCESS_CPUTIME_ID);
    nn_model_zero_grad(&m);
    const float *out = nn_model_forward(&m, x, batch, &ctx);
    double loss = nn_loss_softmax_ce(out, labels, batch, 10, 1.0f / batch, dout) / batch;
    nn_model_backward(&m, x, dout, batch, &ctx, NULL, NULL);
    nn_optim_step(&opt, m.params, m.grads, oc.lr);
    if (s == 0) first = loss;
    last = loss;
    double step_cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - ts;
    if (s > 0 && step_cpu < best) best = step_cpu;
  }
  double dt = now_s(CLOCK_MONOTONIC) - t0, dc = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
  free(x);
  free(dout);
  nn_optim_free(&opt);
  nn_model_free(&m);
  ASSERT_OK(rc);
  /* wall time counts other processes on a shared machine; CPU time and the
   * best step show what the code itself does */
  printf("classic convnet, batch %d, %d steps (forward+backward+adam): %.0f samples/s wall, "
         "%.0f samples/s CPU time, best step %.2f ms = %.0f samples/s; loss %.3f -> %.3f\n",
         batch, steps, steps * batch / dt, steps * batch / dc, best * 1e3, batch / best, first,
         last);
  ASSERT_TRUE(last < first);
}

TEST_MAIN(TEST(test_grad_conv_valid_stride1), TEST(test_grad_conv_same_stride2),
          TEST(test_grad_conv_same_stride1), TEST(test_grad_conv_explicit_pad),
          TEST(test_grad_conv_dilation2), TEST(test_grad_conv_groups2),
          TEST(test_grad_conv_no_bias), TEST(test_grad_conv_stack), TEST(test_grad_maxpool),
          TEST(test_grad_avgpool), TEST(test_grad_global_avgpool),
          TEST(test_conv_matches_direct_convolution),
          TEST(test_conv_stride1_matches_direct_convolution), TEST(test_conv_literal),
          TEST(test_conv_same_padding_literal), TEST(test_pool_literal), TEST(test_maxpool_ties_and_edges),
          TEST(test_pool_padding_rules), TEST(test_shape_errors), TEST(test_defaults_and_shapes),
          TEST(test_bench_classic_convnet))
