/* test_conv_dnnl.c: conv2d's oneDNN backend against the reference (im2col +
 * OpenBLAS) backend, both picked per model build through NN_CONV_BACKEND
 * (core/compute.h). Every test is skipped (exit 77) in a build without
 * oneDNN.
 *
 * - forward, dx, dW and db of the two oneDNN layouts (plain NCHW and the
 *   blocked formats oneDNN picks) against the reference on one model each,
 *   same parameters and data, over odd shapes: batch 1, 3 and 64; 1, 3, 4,
 *   32 and 64 input channels; 1x1, 3x3, 5x5 and 3x1 kernels; strides 1, 2, 3
 *   (and 2x1); padding valid, same and explicit; dilation 2; groups 2,
 *   depthwise and depthwise x2; 7x9, 9x7 planes; no bias. Gradients start
 *   from the same non-zero values in both models, so the oneDNN path must
 *   add into them (the layer contract), not overwrite. Each case also runs a
 *   second, smaller slice (the last partial batch: another cached
 *   primitive set) and a frozen pass (dx only, gradients untouched), and
 *   checks that oneDNN served every call (no fallback to the reference);
 * - a backward without dx (the first layer of a model);
 * - more slice sizes than the primitive cache holds, twice over (entries
 *   replaced and re-created), then an empty slice (n = 0: nothing to do);
 * - a cached call allocates nothing through nn_malloc (fault-injection
 *   builds count allocations; skipped otherwise);
 * - finite-difference gradient checks on both oneDNN layouts;
 * - NN_CONV_BACKEND errors: an unknown name fails the build (NN_EUSAGE);
 * - bf16 (train.precision; skipped on a CPU without bf16): every case above
 *   on the blocked and plain layouts in bf16 against the f32 reference, to a
 *   bf16 tolerance (BF16_TOL, below), and each bf16 layer must differ from
 *   the reference by more than f32 rounding (BF16_MIN_ERR: proof the bf16
 *   path ran); layers with fewer than NN_CONV_BF16_MIN_CHANNELS input
 *   channels per group stay f32 (nn_conv2d_bf16 0, f32 tolerance); bf16
 *   refused with NN_CONV_BACKEND=reference, precision unchanged;
 * - with NN_CONV_BENCH_REPS=R set (not in CTest), a timing of the classic
 *   convnet's three convolutions at batch 64, forward + backward (no dx for
 *   the first, as in training), each backend in turn R times, alternating so
 *   a busy machine slows all alike; prints min and median ms (not asserted). */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "core/compute.h"
#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/mem.h"
#include "core/model.h"
#include "core/rng.h"
#include "gradcheck_assert.h"
#include "test.h"

#define NEED_DNNL()                                                                \
  do {                                                                             \
    if (!nn_compute_have_dnnl()) SKIP_TEST("this build has no oneDNN (NN_DNNL=OFF)"); \
  } while (0)

/* One convolution case. pad: "valid" | "same" | "explicit" (then ph, pw). */
typedef struct conv_case {
  int n, c, h, w, f, kh, kw, sh, sw;
  const char *pad;
  int ph, pw, dh, dw, groups, bias;
} conv_case;

static nn_layer_cfg case_cfg(const conv_case *k) {
  nn_layer_cfg c = cfg_of("conv2d");
  cfg_set(&c, "filters", "%d", k->f);
  cfg_set(&c, "kernel_size", "[%d, %d]", k->kh, k->kw);
  cfg_set(&c, "stride", "[%d, %d]", k->sh, k->sw);
  cfg_set(&c, "padding", "\"%s\"", k->pad);
  cfg_set(&c, "pad", "[%d, %d]", k->ph, k->pw);
  cfg_set(&c, "dilation", "[%d, %d]", k->dh, k->dw);
  cfg_set(&c, "groups", "%d", k->groups);
  cfg_set_bool(&c, "use_bias", k->bias);
  return c;
}

/* The precision models are built in (core/compute.h): bf16 while a test
 * of bf16 runs, f32 otherwise. */
static nn_precision build_precision = NN_PRECISION_FP32;

/* Build m for the case with NN_CONV_BACKEND = backend, in build_precision
 * (reset to f32 afterwards). */
static int build_with(nn_model *m, const conv_case *k, const char *backend, int max_batch) {
  nn_layer_cfg c = case_cfg(k);
  nn_shape in = {3, {k->c, k->h, k->w}};
  nn_error e;
  nn_error_clear(&e);
  setenv("NN_CONV_BACKEND", backend, 1);
  int rc = nn_compute_set_precision(build_precision, &e);
  if (!rc) rc = nn_model_build(m, &in, &c, 1, max_batch, &e);
  unsetenv("NN_CONV_BACKEND");
  nn_compute_set_precision(NN_PRECISION_FP32, NULL);
  if (rc) fprintf(stderr, "build (%s): %s\n", backend, e.msg);
  return rc;
}

static void fill(nn_rng *g, float *v, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * nn_rng_uniform(g);
}

/* max |a - b| / max(max |b|, 1e-6): the error relative to the tensor's scale. */
static double rel_err(const float *a, const float *b, size_t n) {
  double d = 0.0, s = 1e-6;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return d / s;
}

/* The worst relative error seen by compare(), for the summary line. */
static double worst_seen;

#define TOL 2e-5

/* bf16 keeps 8 significant bits: rounding x and w to bf16 errs by up to
 * 2^-9 (2e-3) relative each, so a product by up to ~4e-3; the sums run in
 * f32. Over K products of random sign the errors partly cancel, and the
 * result is compared relative to the tensor's largest element: measured
 * worst ~3e-3 (see the summary line), so 1.5e-2 leaves room and still
 * fails a wrong index or a missing term (errors of order 1). */
#define BF16_TOL 1.5e-2
/* ...and a bf16 layer's forward must differ from the f32 reference by more
 * than f32 rounding ever does (TOL): else the bf16 path did not run. */
#define BF16_MIN_ERR 1e-4

/* The tolerance compare() applies, and the least forward error it demands
 * (0: none): TOL and 0 for f32 layers, BF16_TOL and BF16_MIN_ERR for bf16. */
static double tol = TOL, min_err = 0;

/* Run both models on the same n samples and compare y, dx, dW, db (grads
 * pre-filled with the same values). dx NULL: backward without dx. frozen:
 * a frozen pass (dx only; the grads must stay as they were). */
static void compare(nn_model *r, nn_model *d, int n, uint64_t seed, int want_dx, int frozen,
                    const char *what) {
  nn_rng g;
  nn_rng_init(&g, seed, NN_RNG_TEST, 13, 0, 0);
  size_t nx = (size_t)n * nn_shape_count(&r->in), ny = (size_t)n * nn_shape_count(&r->out);
  float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
  float *dxr = calloc(nx, sizeof *dxr), *dxd = calloc(nx, sizeof *dxd);
  float *y = malloc(ny * sizeof *y), *g0 = malloc(r->nparams * sizeof *g0);
  int ok = x && dy && dxr && dxd && y && g0;
  double ey = 0, edx = 0, ew = 0, eb = 0;
  if (ok) {
    fill(&g, x, nx, -1.0f, 1.0f);
    fill(&g, dy, ny, -1.0f, 1.0f);
    fill(&g, g0, r->nparams, -0.5f, 0.5f);
    memcpy(r->grads, g0, r->nparams * sizeof *g0);
    memcpy(d->grads, g0, r->nparams * sizeof *g0);
    nn_run_ctx ctx = {.training = 1, .frozen = frozen};
    memcpy(y, nn_model_forward(r, x, n, &ctx), ny * sizeof *y);
    ey = rel_err(nn_model_forward(d, x, n, &ctx), y, ny);
    nn_model_backward_dx(r, x, dy, want_dx ? dxr : NULL, n, &ctx, NULL, NULL);
    nn_model_backward_dx(d, x, dy, want_dx ? dxd : NULL, n, &ctx, NULL, NULL);
    if (want_dx) edx = rel_err(dxd, dxr, nx);
    const nn_layer *lr = &r->layers[0], *ld = &d->layers[0];
    size_t nw = nn_shape_count(&lr->pspec[0].shape);
    ew = rel_err(ld->grad[0], lr->grad[0], nw);
    if (lr->nparams > 1) eb = rel_err(ld->grad[1], lr->grad[1], (size_t)lr->pspec[1].shape.dim[0]);
    if (frozen) /* untouched: still exactly the pre-filled values */
      ok = memcmp(d->grads, g0, r->nparams * sizeof *g0) == 0 &&
           memcmp(r->grads, g0, r->nparams * sizeof *g0) == 0;
  }
  free(x);
  free(dy);
  free(dxr);
  free(dxd);
  free(y);
  free(g0);
  ASSERT_TRUE(ok);
  double worst = fmax(fmax(ey, edx), fmax(ew, eb));
  worst_seen = fmax(worst_seen, worst);
  if (!(worst <= tol))
    fprintf(stderr, "%s n=%d: y %.2e dx %.2e dW %.2e db %.2e\n", what, n, ey, edx, ew, eb);
  ASSERT_TRUE(worst <= tol);
  if (min_err > 0 && !(ey >= min_err))
    fprintf(stderr, "%s n=%d: y %.2e: no bf16 rounding seen\n", what, n, ey);
  ASSERT_TRUE(ey >= min_err);
  long fb = 0;
  const char *why = "";
  nn_conv_backend b = nn_conv2d_backend(&d->layers[0], &fb, &why);
  if (fb) fprintf(stderr, "%s: %ld calls fell back to the reference: %s\n", what, fb, why);
  ASSERT_TRUE(b != NN_CONV_REFERENCE);
  ASSERT_EQ_INT(fb, 0);
}

static const conv_case cases[] = {
    /* n   c   h   w   f  kh kw sh sw  pad        ph pw dh dw  g  bias */
    {1, 1, 28, 28, 32, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1},   /* the CNN's first layer, n 1 */
    {64, 1, 28, 28, 32, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1},  /* ... at batch 64 */
    {64, 32, 13, 13, 64, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1}, /* its second */
    {64, 64, 5, 5, 64, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1},   /* its third */
    {3, 3, 7, 9, 8, 5, 5, 1, 1, "same", 0, 0, 1, 1, 1, 1},
    {3, 3, 7, 9, 5, 3, 1, 2, 2, "explicit", 1, 0, 1, 1, 1, 1},
    {3, 32, 7, 9, 16, 1, 1, 1, 1, "valid", 0, 0, 1, 1, 1, 1},
    {3, 3, 7, 9, 4, 3, 3, 3, 3, "same", 0, 0, 1, 1, 1, 1},
    {3, 4, 9, 7, 6, 3, 3, 1, 1, "same", 0, 0, 2, 2, 1, 1},
    {3, 4, 7, 9, 6, 3, 3, 2, 1, "explicit", 2, 1, 1, 1, 2, 0},
    {3, 32, 7, 9, 32, 3, 3, 1, 1, "same", 0, 0, 1, 1, 32, 1},    /* depthwise */
    {64, 3, 7, 9, 32, 3, 3, 2, 2, "valid", 0, 0, 1, 1, 1, 1},
    {1, 32, 9, 7, 3, 5, 5, 1, 1, "explicit", 2, 2, 2, 2, 1, 1},
    {3, 6, 8, 8, 12, 3, 3, 2, 2, "same", 0, 0, 1, 1, 6, 0},      /* depthwise x2, even plane */
    {3, 1, 7, 9, 1, 1, 1, 3, 3, "valid", 0, 0, 1, 1, 1, 1},      /* 1 -> 1 channel */
};

static void check_cases(const char *backend) {
  worst_seen = 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const conv_case *k = &cases[i];
    char what[96];
    snprintf(what, sizeof what, "%s case %zu", backend, i);
    nn_model r, d;
    int max_batch = k->n + 2;
    nn_precision p = build_precision;
    build_precision = NN_PRECISION_FP32; /* the reference is f32 */
    int rc = build_with(&r, k, "reference", max_batch);
    build_precision = p;
    ASSERT_OK(rc);
    if (build_with(&d, k, backend, max_batch)) {
      nn_model_free(&r);
      ASSERT_TRUE(0);
    }
    /* bf16 exactly where asked for and the layer has the channels for it */
    int bf16 = p == NN_PRECISION_BF16 && k->c / k->groups >= NN_CONV_BF16_MIN_CHANNELS;
    if (nn_conv2d_bf16(&d.layers[0]) != bf16) {
      fprintf(stderr, "%s: nn_conv2d_bf16 %d, expected %d\n", what, nn_conv2d_bf16(&d.layers[0]),
              bf16);
      nn_model_free(&r);
      nn_model_free(&d);
      ASSERT_TRUE(0);
    }
    tol = bf16 ? BF16_TOL : TOL;
    min_err = bf16 ? BF16_MIN_ERR : 0;
    nn_model_init_params(&r, 7 + i);
    nn_rng g;
    nn_rng_init(&g, i, NN_RNG_TEST, 14, 0, 0);
    fill(&g, r.params, r.nparams, -0.5f, 0.5f); /* a non-zero bias too */
    memcpy(d.params, r.params, r.nparams * sizeof *r.params);
    int fails = nn__test_failed;
    compare(&r, &d, k->n, 100 + i, 1, 0, what);                  /* full slice */
    if (nn__test_failed == fails)                                /* a smaller one */
      compare(&r, &d, k->n > 1 ? k->n / 2 + 1 : 2, 200 + i, 1, 0, what);
    if (nn__test_failed == fails) compare(&r, &d, k->n, 300 + i, 1, 1, what); /* frozen pass */
    if (nn__test_failed == fails) compare(&r, &d, k->n, 400 + i, 0, 0, what); /* no dx */
    nn_model_free(&r);
    nn_model_free(&d);
    tol = TOL;
    min_err = 0;
    if (nn__test_failed != fails) return;
  }
  fprintf(stderr, "    %s%s: %zu cases, worst relative error %.2e (tolerance %.1e)\n", backend,
          build_precision == NN_PRECISION_BF16 ? " bf16" : "", sizeof cases / sizeof *cases,
          worst_seen, build_precision == NN_PRECISION_BF16 ? BF16_TOL : TOL);
}

static void test_plain_vs_reference(void) {
  NEED_DNNL();
  check_cases("dnnl_plain");
}

static void test_blocked_vs_reference(void) {
  NEED_DNNL();
  check_cases("dnnl_blocked");
}

/* Slice sizes 1..2*cache+1, then again: entries are replaced, re-created and
 * still agree with the reference. */
static void test_cache_replacement(void) {
  NEED_DNNL();
  static const conv_case k = {9, 3, 7, 9, 5, 3, 3, 2, 1, "same", 0, 0, 1, 1, 1, 1};
  nn_model r, d;
  ASSERT_OK(build_with(&r, &k, "reference", k.n));
  if (build_with(&d, &k, "dnnl", k.n)) {
    nn_model_free(&r);
    ASSERT_TRUE(0);
  }
  nn_model_init_params(&r, 3);
  memcpy(d.params, r.params, r.nparams * sizeof *r.params);
  int fails = nn__test_failed;
  for (int round = 0; round < 2 && nn__test_failed == fails; round++)
    for (int n = 1; n <= k.n && nn__test_failed == fails; n++)
      compare(&r, &d, n, (uint64_t)(round * 100 + n), 1, 0, "cache");
  /* an empty slice (a rank's share of a short last batch): nothing computed,
   * nothing added, no fallback to the reference */
  float one = 0.0f, g0 = d.grads[0];
  nn_run_ctx ctx = {.training = 1};
  nn_model_forward(&d, &one, 0, &ctx);
  nn_model_backward_dx(&d, &one, &one, &one, 0, &ctx, NULL, NULL);
  long fb = -1;
  nn_conv2d_backend(&d.layers[0], &fb, NULL);
  int same = d.grads[0] == g0;
  nn_model_free(&r);
  nn_model_free(&d);
  ASSERT_EQ_INT(fb, 0);
  ASSERT_TRUE(same);
}

/* A call whose primitives are cached allocates nothing through nn_malloc
 * (our side; oneDNN's own small per-execute map is not counted here). */
static void test_cached_call_allocates_nothing(void) {
  NEED_DNNL();
#ifndef NN_FAULT_INJECTION
  SKIP_TEST("allocation counts need -DNN_FAULT_INJECTION=ON");
#else
  static const conv_case k = {8, 4, 9, 7, 8, 3, 3, 1, 1, "same", 0, 0, 1, 1, 1, 1};
  nn_model d;
  ASSERT_OK(build_with(&d, &k, "dnnl_blocked", k.n));
  nn_model_init_params(&d, 5);
  size_t nx = (size_t)k.n * nn_shape_count(&d.in), ny = (size_t)k.n * nn_shape_count(&d.out);
  float *x = calloc(nx, sizeof *x), *dy = calloc(ny, sizeof *dy), *dx = calloc(nx, sizeof *dx);
  unsigned long before = 0, after = 0;
  if (x && dy && dx) {
    nn_run_ctx ctx = {.training = 1};
    for (int i = 0; i < 4; i++) {
      if (i == 1) before = nn_mem_count(); /* the first call created the entry */
      nn_model_forward(&d, x, k.n, &ctx);
      nn_model_backward_dx(&d, x, dy, dx, k.n, &ctx, NULL, NULL);
    }
    after = nn_mem_count();
  }
  int ok = x && dy && dx;
  free(x);
  free(dy);
  free(dx);
  nn_model_free(&d);
  ASSERT_TRUE(ok);
  ASSERT_TRUE(before > 0);
  ASSERT_EQ_INT(after, before);
#endif
}

/* Finite differences on the oneDNN path. */
static void gradcheck_with(const char *backend) {
  static const conv_case ks[] = {
      {2, 2, 5, 4, 3, 3, 2, 1, 1, "valid", 0, 0, 1, 1, 1, 1},
      {2, 2, 6, 5, 2, 3, 3, 2, 2, "same", 0, 0, 1, 1, 1, 1},
      {2, 4, 7, 6, 4, 3, 3, 1, 2, "explicit", 1, 2, 2, 1, 2, 1},
      {2, 3, 5, 5, 3, 3, 1, 1, 1, "same", 0, 0, 1, 1, 3, 0},
  };
  for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
    nn_layer_cfg c = case_cfg(&ks[i]);
    nn_shape in = {3, {ks[i].c, ks[i].h, ks[i].w}};
    nn_gradcheck_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 50 + i;
    o.n = ks[i].n;
    setenv("NN_CONV_BACKEND", backend, 1);
    CHECK_GRADS(&in, &c, 1, &o);
    unsetenv("NN_CONV_BACKEND");
  }
}

static void test_gradcheck_plain(void) {
  NEED_DNNL();
  gradcheck_with("dnnl_plain");
  unsetenv("NN_CONV_BACKEND");
}

static void test_gradcheck_blocked(void) {
  NEED_DNNL();
  gradcheck_with("dnnl_blocked");
  unsetenv("NN_CONV_BACKEND");
}

static void test_backend_env_errors(void) {
  static const conv_case k = {1, 1, 5, 5, 2, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1};
  nn_layer_cfg c = case_cfg(&k);
  nn_shape in = {3, {1, 5, 5}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  setenv("NN_CONV_BACKEND", "cudnn", 1);
  int rc = nn_model_build(&m, &in, &c, 1, 1, &e);
  unsetenv("NN_CONV_BACKEND");
  ASSERT_EQ_INT(rc, NN_EUSAGE);
  ASSERT_STR_CONTAINS(e.msg, "NN_CONV_BACKEND='cudnn' is not one of " NN_CONV_BACKEND_CHOICES);
  /* "reference" always builds; "dnnl" builds exactly when oneDNN is in */
  setenv("NN_CONV_BACKEND", "reference", 1);
  rc = nn_model_build(&m, &in, &c, 1, 1, &e);
  ASSERT_OK(rc);
  ASSERT_EQ_INT(nn_conv2d_backend(&m.layers[0], NULL, NULL), NN_CONV_REFERENCE);
  nn_model_free(&m);
  setenv("NN_CONV_BACKEND", "dnnl", 1);
  rc = nn_model_build(&m, &in, &c, 1, 1, &e);
  unsetenv("NN_CONV_BACKEND");
  if (nn_compute_have_dnnl()) {
    ASSERT_OK(rc);
    ASSERT_TRUE(nn_conv2d_backend(&m.layers[0], NULL, NULL) != NN_CONV_REFERENCE);
    nn_model_free(&m);
  } else {
    ASSERT_EQ_INT(rc, NN_EUSAGE);
    ASSERT_STR_CONTAINS(e.msg, "this build has no oneDNN");
  }
}

#define NEED_BF16()                                                                 \
  do {                                                                              \
    const char *why_ = "";                                                          \
    if (!nn_compute_bf16_support(&why_)) SKIP_TEST("no bf16 here: %s", why_);       \
  } while (0)

static void test_bf16_blocked_vs_reference(void) {
  NEED_BF16();
  build_precision = NN_PRECISION_BF16;
  check_cases("dnnl_blocked");
  build_precision = NN_PRECISION_FP32;
}

static void test_bf16_plain_vs_reference(void) {
  NEED_BF16();
  build_precision = NN_PRECISION_BF16;
  check_cases("dnnl_plain");
  build_precision = NN_PRECISION_FP32;
}

/* bf16 with the reference backend, or (in a build without oneDNN or on a
 * CPU without bf16) at all: NN_EINVAL saying why, the precision unchanged. */
static void test_bf16_refused(void) {
  nn_error e;
  nn_error_clear(&e);
  setenv("NN_CONV_BACKEND", "reference", 1);
  int rc = nn_compute_set_precision(NN_PRECISION_BF16, &e);
  unsetenv("NN_CONV_BACKEND");
  ASSERT_EQ_INT(rc, NN_EINVAL);
  ASSERT_EQ_INT(nn_compute_precision(), NN_PRECISION_FP32);
  const char *why = "";
  if (nn_compute_bf16_support(&why)) {
    ASSERT_STR_CONTAINS(e.msg, "NN_CONV_BACKEND=reference");
    ASSERT_OK(nn_compute_set_precision(NN_PRECISION_BF16, &e));
    ASSERT_EQ_INT(nn_compute_precision(), NN_PRECISION_BF16);
  } else {
    ASSERT_STR_CONTAINS(e.msg, why);
  }
  ASSERT_OK(nn_compute_set_precision(NN_PRECISION_FP32, &e));
  ASSERT_EQ_INT(nn_compute_precision(), NN_PRECISION_FP32);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#define BENCH_MAX_REPS 1000

/* One layer's timing: models[b] for each backend, R alternating rounds. */
static void bench_layer(const conv_case *k, int reps, int want_dx) {
  /* the last: dnnl_blocked in bf16 (where the CPU has it: else f32 again) */
  static const char *const names[] = {"reference", "dnnl_plain", "dnnl_blocked", "dnnl_blocked"};
  enum { NB = 4 };
  nn_model m[NB];
  static double t[NB][BENCH_MAX_REPS];
  int built = 0;
  for (; built < NB; built++) {
    build_precision = built == 3 && nn_compute_bf16_support(NULL) ? NN_PRECISION_BF16
                                                                  : NN_PRECISION_FP32;
    int rc = build_with(&m[built], k, names[built], k->n);
    build_precision = NN_PRECISION_FP32;
    if (rc) break;
  }
  size_t nx = (size_t)k->n * k->c * k->h * k->w, ny = 0;
  float *x = NULL, *dy = NULL, *dx = NULL;
  if (built == NB) {
    ny = (size_t)k->n * nn_shape_count(&m[0].out);
    x = malloc(nx * sizeof *x);
    dy = malloc(ny * sizeof *dy);
    dx = malloc(nx * sizeof *dx);
  }
  if (x && dy && dx) {
    nn_rng g;
    nn_rng_init(&g, 1, NN_RNG_TEST, 15, 0, 0);
    fill(&g, x, nx, -1.0f, 1.0f);
    fill(&g, dy, ny, -1.0f, 1.0f);
    nn_run_ctx ctx = {.training = 1};
    for (int r = -2; r < reps; r++) /* two warm-up rounds */
      for (int b = 0; b < NB; b++) {
        nn_model_init_params(&m[b], 1);
        double t0 = now_ms();
        nn_model_forward(&m[b], x, k->n, &ctx);
        nn_model_backward_dx(&m[b], x, dy, want_dx ? dx : NULL, k->n, &ctx, NULL, NULL);
        if (r >= 0) t[b][r] = now_ms() - t0;
      }
    for (int b = 0; b < NB; b++) {
      qsort(t[b], (size_t)reps, sizeof(double), cmp_double);
      fprintf(stderr, "    %dx%dx%d -> %d, %dx%d, batch %d%s: %-12s %s min %7.3f ms  median %7.3f ms\n",
              k->c, k->h, k->w, k->f, k->kh, k->kw, k->n, want_dx ? "" : " (no dx)", names[b],
              nn_conv2d_bf16(&m[b].layers[0]) ? "bf16" : "f32 ", t[b][0], t[b][reps / 2]);
    }
  }
  free(x);
  free(dy);
  free(dx);
  for (int b = 0; b < built; b++) nn_model_free(&m[b]);
  ASSERT_EQ_INT(built, NB);
}

static void test_bench_cnn_layers(void) {
  NEED_DNNL();
  const char *v = getenv("NN_CONV_BENCH_REPS");
  int reps = v ? atoi(v) : 0;
  if (reps < 1) {
    fprintf(stderr, "    (timing not run: set NN_CONV_BENCH_REPS)\n");
    return;
  }
  if (reps > BENCH_MAX_REPS) reps = BENCH_MAX_REPS;
  static const conv_case ks[] = {
      {64, 1, 28, 28, 32, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1},
      {64, 32, 13, 13, 64, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1},
      {64, 64, 5, 5, 64, 3, 3, 1, 1, "valid", 0, 0, 1, 1, 1, 1},
  };
  for (int i = 0; i < 3; i++) bench_layer(&ks[i], reps, i > 0);
}

TEST_MAIN(TEST(test_plain_vs_reference), TEST(test_blocked_vs_reference),
          TEST(test_cache_replacement), TEST(test_cached_call_allocates_nothing),
          TEST(test_gradcheck_plain), TEST(test_gradcheck_blocked),
          TEST(test_backend_env_errors), TEST(test_bf16_blocked_vs_reference),
          TEST(test_bf16_plain_vs_reference), TEST(test_bf16_refused),
          TEST(test_bench_cnn_layers))
