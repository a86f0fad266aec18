/* test_core_seq.c: the sequence building blocks of core/ (issue 12) against
 * finite differences and double-precision references:
 *   embedding     lookup, N(0, 1) init, padding_idx (zero row, no gradient),
 *                 out-of-range ids, fixed-id gradient checks;
 *   conv1d        every padding x dilation x stride x kernel size x bias
 *                 against finite differences, forward and backward against a
 *                 direct double loop (also across row chunks and the 1x1
 *                 path), causality;
 *   dense         per_timestep = true on [T, C], and the default unchanged;
 *   loss          per-timestep softmax cross-entropy with masking;
 *   gradcheck     the fixed-input and no_dx options.
 * The PyTorch cross-check is test_core_seq_torch.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h> /* getenv: SEQ_VERBOSE=1 prints every conv1d reference case */

#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/rng.h"
#include "gradcheck_assert.h"
#include "seq_cfg.h"
#include "test.h"

/* ---- helpers ----------------------------------------------------------- */

/* Worst gradcheck error seen by CHECK_SEQ_GRADS over the whole program. */
static double worst_seen;

static double run_gradcheck(const nn_shape *in, const nn_layer_cfg *c, int nc,
                            const nn_gradcheck_opts *o, size_t *nchecked, char *worst,
                            size_t wn) {
  nn_gradcheck_result r;
  nn_error e;
  nn_error_clear(&e);
  *nchecked = 0;
  if (wn) worst[0] = '\0';
  if (nn_gradcheck(in, c, nc, o, &r, &e) != 0) {
    fprintf(stderr, "gradcheck: %s\n", e.msg);
    return INFINITY;
  }
  if (r.max_err > worst_seen) worst_seen = r.max_err;
  *nchecked = r.nchecked;
  snprintf(worst, wn, "%s", r.worst);
  return r.max_err;
}

/* A model of one layer on `in`, parameters initialised from seed 1 and then
 * (when `randomize`) replaced by U(-1, 1) values (so biases are not 0). */
static int build_one(nn_model *m, const nn_layer_cfg *c, nn_shape in, int max_batch,
                     int randomize) {
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, &in, c, 1, max_batch, &e);
  if (rc) {
    fprintf(stderr, "build: %s\n", e.msg);
    return rc;
  }
  nn_model_init_params(m, 1);
  if (randomize) fill_uniform(m->params, m->nparams, 5, -1.0f, 1.0f);
  return 0;
}

/* Expect building c on `in` to fail with code `code` and a message holding `what`. */
static int refuses(const nn_layer_cfg *c, nn_shape in, int code, const char *what) {
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(&m, &in, c, 1, 1, &e);
  if (rc == 0) {
    nn_model_free(&m);
    fprintf(stderr, "built, expected a refusal with '%s'\n", what);
    return 0;
  }
  if (rc != code || !strstr(e.msg, what)) {
    fprintf(stderr, "refused with %d '%s', expected %d '%s'\n", rc, e.msg, code, what);
    return 0;
  }
  return 1;
}

/* ---- embedding --------------------------------------------------------- */

/* Lookup: row t of the output is weight[id_t]; ids are rounded to the
 * nearest integer; ids outside the table (and NaN) give zeros. */
static void test_embedding_forward_values(void) {
  nn_layer_cfg c = emb_cfg(5, 3, -1);
  nn_model m;
  ASSERT_OK(build_one(&m, &c, (nn_shape){1, {8}}, 1, 1));
  ASSERT_EQ_INT(m.out.ndim, 2);
  ASSERT_EQ_INT(m.out.dim[0], 8);
  ASSERT_EQ_INT(m.out.dim[1], 3);
  const float x[8] = {0, 4, 2.9999998f, 1.0000001f, -1, 5, NAN, 1e30f};
  const int want[8] = {0, 4, 3, 1, -1, -1, -1, -1};
  nn_run_ctx ctx = {0};
  const float *y = nn_model_forward(&m, x, 1, &ctx);
  int bad = 0;
  for (int t = 0; t < 8; t++)
    for (int j = 0; j < 3; j++) {
      float ref = want[t] < 0 ? 0.0f : m.params[want[t] * 3 + j];
      if (y[t * 3 + j] != ref) bad++;
    }
  nn_model_free(&m);
  ASSERT_EQ_INT(bad, 0);
}

/* weight is N(0, 1) (PyTorch's nn.Embedding), the padding row exactly zero;
 * without padding_idx no row is zero. */
static void test_embedding_init(void) {
  nn_layer_cfg c = emb_cfg(2000, 16, 7);
  nn_model m;
  ASSERT_OK(build_one(&m, &c, (nn_shape){1, {4}}, 1, 0));
  double s = 0, s2 = 0;
  size_t cnt = m.nparams;
  for (size_t i = 0; i < cnt; i++) {
    s += m.params[i];
    s2 += (double)m.params[i] * m.params[i];
  }
  int pad_zero = 1;
  for (int j = 0; j < 16; j++) pad_zero &= m.params[7 * 16 + j] == 0.0f;
  nn_model_free(&m);
  double mean = s / (double)cnt, sd = sqrt(s2 / (double)cnt - mean * mean);
  fprintf(stderr, "    mean %.4f, std %.4f over %zu\n", mean, sd, cnt);
  ASSERT_TRUE(pad_zero);
  ASSERT_NEAR(mean, 0.0, 0.03);
  ASSERT_NEAR(sd, 1.0, 0.03);
  c = emb_cfg(50, 4, -1);
  ASSERT_OK(build_one(&m, &c, (nn_shape){1, {4}}, 1, 0));
  int zero_rows = 0;
  for (int r = 0; r < 50; r++) {
    int z = 1;
    for (int j = 0; j < 4; j++) z &= m.params[r * 4 + j] == 0.0f;
    zero_rows += z;
  }
  nn_model_free(&m);
  ASSERT_EQ_INT(zero_rows, 0);
}

/* Finite differences over the table, from fixed ids (no input gradient):
 * alone, with a padding_idx that does not occur (its row is unused: numeric
 * and analytic gradients both 0), and with ids repeated across samples. */
static void test_embedding_grad(void) {
  static const float ids[3 * 6] = {0, 1, 2, 3, 4, 0, 4, 4, 1, 0, 2, 2, 3, 0, 1, 1, 4, 3};
  for (int pad = -1; pad <= 5; pad += 6) {
    nn_layer_cfg c = emb_cfg(6, 3, pad); /* pad 5: never in ids */
    nn_shape in = {1, {6}};
    nn_gradcheck_opts o = {.seed = 3, .n = 3, .x = ids, .no_dx = 1};
    size_t nchk;
    char worst[192];
    double err = run_gradcheck(&in, &c, 1, &o, &nchk, worst, sizeof worst);
    fprintf(stderr, "    padding_idx %d: max error %.2e over %zu (%s)\n", pad, err, nchk, worst);
    ASSERT_TRUE(err < GC_TOL);
    ASSERT_EQ_INT(nchk, 6 * 3); /* the table only: no_dx */
  }
}

/* padding_idx: the row's value is the output (here non-zero, as loaded
 * vectors could be), it gets exactly no gradient, every other row gets the
 * scatter-add of dy (double reference), and a requested dx is zeros. */
static void test_embedding_padding_no_grad(void) {
  enum { V = 5, D = 4, T = 6, N = 2 };
  nn_layer_cfg c = emb_cfg(V, D, 2);
  nn_model m;
  ASSERT_OK(build_one(&m, &c, (nn_shape){1, {T}}, N, 1));
  for (int j = 0; j < D; j++) ASSERT_TRUE(m.params[2 * D + j] != 0.0f);
  static const float x[N * T] = {2, 0, 2, 4, 1, 2, 3, 3, 2, 9, 0, -3};
  float dy[N * T * D], dx[N * T];
  fill_uniform(dy, N * T * D, 11, -1.0f, 1.0f);
  for (int i = 0; i < N * T; i++) dx[i] = 123.0f;
  nn_run_ctx ctx = {.training = 1};
  nn_model_zero_grad(&m);
  const float *y = nn_model_forward(&m, x, N, &ctx);
  ASSERT_TRUE(y[0] == m.params[2 * D] && y[2 * D + 3] == m.params[2 * D + 3]); /* used */
  nn_model_backward_dx(&m, x, dy, dx, N, &ctx, NULL, NULL);
  double ref[V * D] = {0};
  for (int i = 0; i < N * T; i++) {
    int id = (int)x[i];
    if (id < 0 || id >= V || id == 2) continue;
    for (int j = 0; j < D; j++) ref[id * D + j] += dy[i * D + j];
  }
  double maxd = 0;
  int pad_nonzero = 0;
  for (int i = 0; i < V * D; i++) {
    double d = fabs(m.grads[i] - ref[i]);
    if (d > maxd) maxd = d;
    if (i / D == 2 && m.grads[i] != 0.0f) pad_nonzero++;
  }
  int dx_nonzero = 0;
  for (int i = 0; i < N * T; i++) dx_nonzero += dx[i] != 0.0f;
  nn_model_free(&m);
  ASSERT_EQ_INT(pad_nonzero, 0);
  ASSERT_TRUE(maxd < 1e-6);
  ASSERT_EQ_INT(dx_nonzero, 0);
}

/* A frozen table (trainable = false) gets no gradient views: backward must
 * not touch them, and the model still runs. */
static void test_embedding_frozen(void) {
  nn_layer_cfg c = emb_cfg(4, 2, -1);
  c.frozen = 1;
  nn_model m;
  ASSERT_OK(build_one(&m, &c, (nn_shape){1, {3}}, 1, 1));
  ASSERT_EQ_INT(m.ntrainable, 0);
  const float x[3] = {1, 2, 3};
  float dy[6] = {1, 1, 1, 1, 1, 1};
  nn_run_ctx ctx = {.training = 1};
  nn_model_forward(&m, x, 1, &ctx);
  nn_model_backward(&m, x, dy, 1, &ctx, NULL, NULL);
  nn_model_free(&m);
}

static void test_embedding_refusals(void) {
  nn_layer_cfg c = emb_cfg(5, 3, -1);
  ASSERT_TRUE(refuses(&c, (nn_shape){2, {4, 2}}, NN_ESHAPE, "expects a [T] input"));
  ASSERT_TRUE(refuses(&c, (nn_shape){3, {1, 4, 2}}, NN_ESHAPE, "expects a [T] input"));
  c = emb_cfg(5, 3, 5);
  ASSERT_TRUE(refuses(&c, (nn_shape){1, {4}}, NN_ESCHEMA, "padding_idx"));
  c = emb_cfg(5, 3, -2);
  ASSERT_TRUE(refuses(&c, (nn_shape){1, {4}}, NN_ESCHEMA, "padding_idx"));
}

/* ---- conv1d ------------------------------------------------------------ */

/* Output length and left padding as the layer documents them. */
static void conv1d_expect(int t, int k, int s, int d, const char *pad, int *to, int *pl) {
  int ek = d * (k - 1) + 1;
  if (strcmp(pad, "valid") == 0) {
    *pl = 0;
    *to = (t - ek) / s + 1;
  } else if (strcmp(pad, "causal") == 0) {
    *pl = ek - 1;
    *to = (t + ek - 1 - ek) / s + 1;
  } else {
    *to = (t + s - 1) / s;
    int total = (*to - 1) * s + ek - t;
    if (total < 0) total = 0;
    *pl = total / 2;
  }
}

/* The convolution in double, straight from the definition:
 * y[s][o][f] = b[f] + sum_{c,j} w[f][c][j] x[s][o*st - pl + j*d][c]. */
static void conv1d_ref(const float *x, const float *w, const float *b, int n, int t, int c,
                       int f, int k, int st, int d, int pl, int to, double *y) {
  for (int s = 0; s < n; s++)
    for (int o = 0; o < to; o++)
      for (int ff = 0; ff < f; ff++) {
        double acc = b ? b[ff] : 0.0;
        for (int cc = 0; cc < c; cc++)
          for (int j = 0; j < k; j++) {
            int ti = o * st - pl + j * d;
            if (ti < 0 || ti >= t) continue;
            acc += (double)w[(ff * c + cc) * k + j] * x[((size_t)s * t + ti) * c + cc];
          }
        y[((size_t)s * to + o) * f + ff] = acc;
      }
}

/* Its adjoints in double: dw, db, dx for upstream dy. */
static void conv1d_ref_back(const float *x, const float *w, const float *dy, int n, int t,
                            int c, int f, int k, int st, int d, int pl, int to, double *dw,
                            double *db, double *dx) {
  memset(dw, 0, sizeof(double) * (size_t)f * c * k);
  memset(db, 0, sizeof(double) * (size_t)f);
  memset(dx, 0, sizeof(double) * (size_t)n * t * c);
  for (int s = 0; s < n; s++)
    for (int o = 0; o < to; o++)
      for (int ff = 0; ff < f; ff++) {
        double g = dy[((size_t)s * to + o) * f + ff];
        db[ff] += g;
        for (int cc = 0; cc < c; cc++)
          for (int j = 0; j < k; j++) {
            int ti = o * st - pl + j * d;
            if (ti < 0 || ti >= t) continue;
            size_t xi = ((size_t)s * t + ti) * c + cc, wi = (size_t)(ff * c + cc) * k + j;
            dw[wi] += g * x[xi];
            dx[xi] += g * w[wi];
          }
      }
}

/* Largest |a - b| / max(1, |b|) over n. */
static double max_rel(const float *a, const double *b, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    double den = fabs(b[i]) > 1 ? fabs(b[i]) : 1;
    double d = fabs((double)a[i] - b[i]) / den;
    if (d > e) e = d;
  }
  return e;
}

/* Finite differences for every padding x dilation {1, 2} x stride {1, 2} x
 * kernel_size 1..4 x bias, on [T = 7, C = 2] -> 3 filters. */
static void test_conv1d_grad_all(void) {
  static const char *const pads[] = {"valid", "same", "causal"};
  double worst = 0;
  char where[256] = "";
  int cases = 0;
  for (int pi = 0; pi < 3; pi++)
    for (int d = 1; d <= 2; d++)
      for (int s = 1; s <= 2; s++)
        for (int k = 1; k <= 4; k++)
          for (int b = 0; b <= 1; b++) {
            nn_layer_cfg c = conv1d_cfg(3, k, s, d, pads[pi], b);
            nn_shape in = {2, {7, 2}};
            nn_gradcheck_opts o = {.seed = 100 + (uint64_t)cases, .n = 2};
            size_t nchk;
            char w[192];
            double e = run_gradcheck(&in, &c, 1, &o, &nchk, w, sizeof w);
            if (!(e < GC_TOL)) fprintf(stderr, "    %s d%d s%d k%d b%d: %.2e at %s\n", pads[pi], d,
                                       s, k, b, e, w);
            ASSERT_TRUE(e < GC_TOL);
            if (e > worst) {
              worst = e;
              snprintf(where, sizeof where, "%s d%d s%d k%d b%d: %s", pads[pi], d, s, k, b, w);
            }
            cases++;
          }
  fprintf(stderr, "    %d cases, worst %.2e (%s)\n", cases, worst, where);
  ASSERT_EQ_INT(cases, 96);
}

/* One configuration's forward and backward against the double loops. */
static void conv1d_check_ref(int n, int t, int c, int f, int k, int st, int d, const char *pad,
                             int bias, double *worst) {
  nn_layer_cfg cfg = conv1d_cfg(f, k, st, d, pad, bias);
  nn_model m;
  int to, pl;
  conv1d_expect(t, k, st, d, pad, &to, &pl);
  ASSERT_OK(build_one(&m, &cfg, (nn_shape){2, {t, c}}, n, 1));
  ASSERT_EQ_INT(m.out.dim[0], to);
  ASSERT_EQ_INT(m.out.dim[1], f);
  size_t nx = (size_t)n * t * c, ny = (size_t)n * to * f, nw = (size_t)f * c * k;
  float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy), *dx = malloc(nx * sizeof *dx);
  double *yr = malloc(ny * sizeof *yr), *dwr = malloc(nw * sizeof *dwr),
         *dbr = malloc((size_t)f * sizeof *dbr), *dxr = malloc(nx * sizeof *dxr);
  ASSERT_TRUE(x && dy && dx && yr && dwr && dbr && dxr);
  fill_uniform(x, nx, 21, -1.0f, 1.0f);
  fill_uniform(dy, ny, 22, -1.0f, 1.0f);
  const float *w = m.params, *b = bias ? m.params + nw : NULL;
  nn_run_ctx ctx = {.training = 1};
  nn_model_zero_grad(&m);
  const float *y = nn_model_forward(&m, x, n, &ctx);
  conv1d_ref(x, w, b, n, t, c, f, k, st, d, pl, to, yr);
  double ey = max_rel(y, yr, ny);
  nn_model_backward_dx(&m, x, dy, dx, n, &ctx, NULL, NULL);
  conv1d_ref_back(x, w, dy, n, t, c, f, k, st, d, pl, to, dwr, dbr, dxr);
  double ew = max_rel(m.grads, dwr, nw), ex = max_rel(dx, dxr, nx);
  double eb = bias ? max_rel(m.grads + nw, dbr, (size_t)f) : 0;
  double e = fmax(fmax(ey, ew), fmax(ex, eb));
  /* float sums of C*k (forward, dx) or n*To (dW) products of values in
   * [-1, 1]: rounding grows with the length of the sums */
  double tol = 1e-5 + 2e-8 * fmax((double)c * k, (double)n * to);
  if (e > *worst) *worst = e;
  if (getenv("SEQ_VERBOSE") || !(e < tol))
    fprintf(stderr, "    n%d T%d C%d F%d k%d s%d d%d %s b%d: y %.2e dw %.2e db %.2e dx %.2e\n", n,
            t, c, f, k, st, d, pad, bias, ey, ew, eb, ex);
  free(x), free(dy), free(dx), free(yr), free(dwr), free(dbr), free(dxr);
  nn_model_free(&m);
  ASSERT_TRUE(e < tol);
}

/* Forward and backward against the definition in double: small shapes of
 * every padding, and large ones whose n*To rows span several chunks of col
 * (C*k = 192: 1365 rows a chunk, 4 x 400 here; C*k = 1536: 256 rows a
 * chunk, 4 x 100 or 4 x 50 here) and the 1x1 path. */
static void test_conv1d_reference(void) {
  static const char *const pads[] = {"valid", "same", "causal"};
  double worst = 0;
  for (int pi = 0; pi < 3; pi++)
    for (int k = 1; k <= 4; k++)
      for (int st = 1; st <= 3; st++)
        for (int d = 1; d <= 3; d += 2) {
          conv1d_check_ref(3, 11, 3, 4, k, st, d, pads[pi], (k + st) % 2, &worst);
          if (nn__test_failed) return;
        }
  conv1d_check_ref(4, 400, 64, 24, 3, 1, 2, "causal", 1, &worst);
  conv1d_check_ref(4, 100, 512, 8, 3, 2, 1, "same", 0, &worst);
  conv1d_check_ref(4, 100, 512, 8, 3, 1, 3, "valid", 1, &worst);
  conv1d_check_ref(5, 90, 32, 16, 1, 1, 1, "valid", 1, &worst); /* 1x1: no columns */
  conv1d_check_ref(5, 90, 32, 16, 1, 1, 1, "causal", 0, &worst);
  conv1d_check_ref(2, 30, 1, 8, 2, 1, 8, "causal", 1, &worst);  /* one channel, WaveNet-like */
  fprintf(stderr, "    worst relative difference %.2e\n", worst);
}

/* Causal padding: an output at t never changes when inputs after t change
 * (a stack of two causal layers, dilations 1 and 2, k = 3), and its length is
 * T. Any change at or before t does change it (the test can fail). */
static void test_conv1d_causal(void) {
  enum { N = 2, T = 12, C = 2 };
  nn_layer_cfg c[2] = {conv1d_cfg(3, 3, 1, 1, "causal", 1), conv1d_cfg(2, 3, 1, 2, "causal", 1)};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  nn_shape in = {2, {T, C}};
  ASSERT_OK(nn_model_build(&m, &in, c, 2, N, &e));
  nn_model_init_params(&m, 4);
  ASSERT_EQ_INT(m.out.dim[0], T);
  float x[N * T * C], x2[N * T * C], y1[N * T * 2];
  fill_uniform(x, N * T * C, 31, -1.0f, 1.0f);
  nn_run_ctx ctx = {0};
  memcpy(y1, nn_model_forward(&m, x, N, &ctx), sizeof y1);
  int leaks = 0, blind = 0;
  for (int t0 = 0; t0 < T; t0++) {
    memcpy(x2, x, sizeof x);
    for (int s = 0; s < N; s++)
      for (int t = t0 + 1; t < T; t++)
        for (int cc = 0; cc < C; cc++) x2[(s * T + t) * C + cc] += 5.0f;
    const float *y2 = nn_model_forward(&m, x2, N, &ctx);
    for (int s = 0; s < N; s++)
      for (int t = 0; t <= t0; t++)
        for (int f = 0; f < 2; f++) leaks += y2[(s * T + t) * 2 + f] != y1[(s * T + t) * 2 + f];
    /* changing input t0 itself must change output t0 */
    memcpy(x2, x, sizeof x);
    x2[t0 * C] += 5.0f;
    y2 = nn_model_forward(&m, x2, N, &ctx);
    blind += y2[t0 * 2] == y1[t0 * 2] && y2[t0 * 2 + 1] == y1[t0 * 2 + 1];
  }
  nn_model_free(&m);
  ASSERT_EQ_INT(leaks, 0);
  ASSERT_EQ_INT(blind, 0);
}

static void test_conv1d_refusals(void) {
  nn_layer_cfg c = conv1d_cfg(2, 3, 1, 1, "valid", 1);
  ASSERT_TRUE(refuses(&c, (nn_shape){1, {8}}, NN_ESHAPE, "[T, channels]"));
  ASSERT_TRUE(refuses(&c, (nn_shape){3, {2, 4, 4}}, NN_ESHAPE, "[T, channels]"));
  ASSERT_TRUE(refuses(&c, (nn_shape){2, {2, 4}}, NN_ESHAPE, "longer than"));
  c = conv1d_cfg(2, 3, 1, 4, "valid", 1); /* spans 9 steps */
  ASSERT_TRUE(refuses(&c, (nn_shape){2, {8, 1}}, NN_ESHAPE, "spanning 9"));
  c = conv1d_cfg(2, 3, 1, 4, "causal", 1); /* any T works */
  nn_model m;
  ASSERT_OK(build_one(&m, &c, (nn_shape){2, {1, 1}}, 1, 0));
  ASSERT_EQ_INT(m.out.dim[0], 1);
  nn_model_free(&m);
  /* PyTorch's layout */
  c = conv1d_cfg(5, 3, 1, 1, "same", 1);
  ASSERT_OK(build_one(&m, &c, (nn_shape){2, {8, 4}}, 1, 0));
  ASSERT_EQ_INT(m.ntensors, 2);
  ASSERT_EQ_INT(m.tensors[0].shape.ndim, 3);
  ASSERT_EQ_INT(m.tensors[0].shape.dim[0], 5);
  ASSERT_EQ_INT(m.tensors[0].shape.dim[1], 4);
  ASSERT_EQ_INT(m.tensors[0].shape.dim[2], 3);
  ASSERT_STR_EQ(m.tensors[1].name, "bias");
  nn_model_free(&m);
}

/* ---- dense per timestep ------------------------------------------------ */

/* per_timestep = true: [T, C] -> [T, units] with weight [units, C], every
 * timestep mapped by the same weights (double reference); the default still
 * flattens ([T*C] -> [units], weight [units, T*C]). */
static void test_dense_per_timestep_values(void) {
  enum { N = 2, T = 5, C = 3, U = 4 };
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", U);
  cfg_set_bool(&c, "per_timestep", 1);
  nn_model m;
  ASSERT_OK(build_one(&m, &c, (nn_shape){2, {T, C}}, N, 1));
  ASSERT_EQ_INT(m.out.ndim, 2);
  ASSERT_EQ_INT(m.out.dim[0], T);
  ASSERT_EQ_INT(m.out.dim[1], U);
  ASSERT_EQ_INT(m.tensors[0].shape.dim[0], U);
  ASSERT_EQ_INT(m.tensors[0].shape.dim[1], C);
  float x[N * T * C];
  fill_uniform(x, N * T * C, 41, -1.0f, 1.0f);
  nn_run_ctx ctx = {0};
  const float *y = nn_model_forward(&m, x, N, &ctx);
  double e = 0;
  for (int r = 0; r < N * T; r++)
    for (int u = 0; u < U; u++) {
      double acc = m.params[U * C + u];
      for (int cc = 0; cc < C; cc++) acc += (double)m.params[u * C + cc] * x[r * C + cc];
      e = fmax(e, fabs(acc - y[r * U + u]));
    }
  nn_model_free(&m);
  ASSERT_TRUE(e < 1e-6);
  c = cfg_of("dense");
  cfg_set(&c, "units", "%d", U);
  ASSERT_OK(build_one(&m, &c, (nn_shape){2, {T, C}}, N, 1));
  ASSERT_EQ_INT(m.out.ndim, 1);
  ASSERT_EQ_INT(m.out.dim[0], U);
  ASSERT_EQ_INT(m.tensors[0].shape.dim[1], T * C);
  nn_model_free(&m);
  c = cfg_of("dense");
  cfg_set(&c, "units", "%d", U);
  cfg_set_bool(&c, "per_timestep", 1);
  ASSERT_TRUE(refuses(&c, (nn_shape){1, {6}}, NN_ESHAPE, "per_timestep expects"));
  ASSERT_TRUE(refuses(&c, (nn_shape){3, {2, 3, 3}}, NN_ESHAPE, "per_timestep expects"));
}

static void test_dense_per_timestep_grad(void) {
  for (int b = 0; b <= 1; b++) {
    nn_layer_cfg c = cfg_of("dense");
    cfg_set(&c, "units", "%d", 4);
    cfg_set_bool(&c, "use_bias", b);
    cfg_set_bool(&c, "per_timestep", 1);
    nn_shape in = {2, {5, 3}};
    nn_gradcheck_opts o = {.seed = 50 + (uint64_t)b, .n = 3};
    size_t nchk;
    char w[192];
    double e = run_gradcheck(&in, &c, 1, &o, &nchk, w, sizeof w);
    fprintf(stderr, "    bias %d: max error %.2e over %zu (%s)\n", b, e, nchk, w);
    ASSERT_TRUE(e < GC_TOL);
  }
  /* with an activation (expanded into its own layer, on [T, units]) */
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", 3);
  cfg_set_bool(&c, "per_timestep", 1);
  snprintf(c.activation, sizeof c.activation, "tanh");
  nn_shape in = {2, {4, 2}};
  nn_gradcheck_opts o = {.seed = 52, .n = 2};
  CHECK_GRADS(&in, &c, 1, &o);
}

/* ---- a sequence stack -------------------------------------------------- */

/* ids -> embedding -> causal dilated conv1d (tanh) -> conv1d -> per-timestep
 * dense: every parameter against finite differences from fixed ids, with
 * lengths in the context (these layers ignore them). */
static void test_sequence_stack_grad(void) {
  enum { N = 3, T = 6 };
  static const float ids[N * T] = {1, 2, 3, 0, 4, 4, 2, 2, 1, 0, 0, 0, 3, 1, 4, 2, 0, 1};
  static const int32_t lengths[N] = {6, 3, 5};
  nn_layer_cfg c[4];
  c[0] = emb_cfg(5, 3, 0);
  c[1] = conv1d_cfg(4, 2, 1, 2, "causal", 1);
  snprintf(c[1].activation, sizeof c[1].activation, "tanh");
  c[2] = conv1d_cfg(3, 3, 1, 1, "same", 0);
  c[3] = cfg_of("dense");
  cfg_set(&c[3], "units", "%d", 4);
  cfg_set_bool(&c[3], "per_timestep", 1);
  nn_shape in = {1, {T}};
  /* padding_idx 0 does not occur here: a padding row's output is used but
   * gets no gradient, which finite differences would contradict
   * (test_embedding_padding_no_grad checks that row directly). Step 5e-3:
   * N(0, 1) embeddings put the tanh's inputs near 2, where the default 1e-2
   * leaves an O(eps^2) truncation error of 2e-3 (5e-3 gives 7e-4, 2e-3 is
   * float noise: 1e-2). */
  float x[N * T];
  for (int i = 0; i < N * T; i++) x[i] = ids[i] == 0 ? 3 : ids[i];
  nn_gradcheck_opts o = {.seed = 60, .n = N, .x = x, .no_dx = 1, .lengths = lengths,
                         .eps = 5e-3};
  size_t nchk;
  char w[192];
  double e = run_gradcheck(&in, c, 4, &o, &nchk, w, sizeof w);
  fprintf(stderr, "    max error %.2e over %zu (%s)\n", e, nchk, w);
  ASSERT_TRUE(e < GC_TOL);
}

/* The flat path still works on sequences: ids -> embedding -> flatten ->
 * dense (the default dense, which flattens too) -> dense, a bag-of-positions
 * classifier. */
static void test_sequence_flatten_grad(void) {
  enum { N = 2, T = 4 };
  static const float ids[N * T] = {1, 2, 2, 0, 3, 1, 0, 2};
  nn_layer_cfg c[3];
  c[0] = emb_cfg(4, 3, -1);
  c[1] = cfg_of("flatten");
  c[2] = cfg_of("dense");
  cfg_set(&c[2], "units", "%d", 2);
  nn_shape in = {1, {T}};
  nn_gradcheck_opts o = {.seed = 61, .n = N, .x = ids, .no_dx = 1};
  CHECK_GRADS(&in, c, 3, &o);
  c[1] = c[2]; /* dense straight on [T, D]: flattens as before */
  CHECK_GRADS(&in, c, 2, &o);
}

/* ---- per-timestep softmax cross-entropy with masking ------------------- */

/* The masked loss in double: the sum over valid steps of lse - x[target]. */
static double seq_ce_ref(const float *lg, const int32_t *tg, const int32_t *len, int n, int t,
                         int k) {
  double s = 0;
  for (int i = 0; i < n; i++)
    for (int tt = 0; tt < len[i]; tt++) {
      const float *x = lg + ((size_t)i * t + tt) * k;
      double mx = x[0], z = 0;
      for (int j = 1; j < k; j++) mx = fmax(mx, x[j]);
      for (int j = 0; j < k; j++) z += exp((double)x[j] - mx);
      s += mx + log(z) - x[tg[i * t + tt]];
    }
  return s;
}

/* Reference value, central differences of every logit (scale 1/valid: the
 * mean per valid token), padded rows' gradient exactly 0 whatever their
 * logits and targets hold, NULL lengths = all steps. */
static void test_seq_ce_values_and_grad(void) {
  enum { N = 3, T = 5, K = 4 };
  static const int32_t len[N] = {5, 2, 1};
  int32_t tg[N * T] = {0, 1, 2, 3, 0, 3, 3, -1, 99, -7, 2, 1000, 0, 0, 0};
  float lg[N * T * K], d[N * T * K];
  fill_uniform(lg, N * T * K, 71, -3.0f, 3.0f);
  int64_t valid = nn_seq_valid_steps(len, N, T);
  ASSERT_EQ_INT(valid, 8);
  float scale = 1.0f / (float)valid;
  double got = nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, scale, d);
  double ref = seq_ce_ref(lg, tg, len, N, T, K);
  fprintf(stderr, "    sum %.9g, reference %.9g, mean per token %.6f\n", got, ref, got / valid);
  ASSERT_NEAR(got, ref, 1e-9 * fabs(ref) + 1e-12);
  ASSERT_TRUE(nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, scale, NULL) == got);
  double worst = 0;
  int padded_nonzero = 0;
  for (int i = 0; i < N; i++)
    for (int t = 0; t < T; t++)
      for (int j = 0; j < K; j++) {
        size_t q = ((size_t)i * T + t) * K + j;
        if (t >= len[i]) {
          padded_nonzero += d[q] != 0.0f;
          continue;
        }
        float save = lg[q];
        double h = 1e-2;
        lg[q] = (float)(save + h);
        double fp = seq_ce_ref(lg, tg, len, N, T, K);
        lg[q] = (float)(save - h);
        double fm = seq_ce_ref(lg, tg, len, N, T, K);
        lg[q] = save;
        double num = scale * (fp - fm) / ((double)(float)(save + h) - (double)(float)(save - h));
        double e = fabs(num - d[q]) / fmax(fmax(fabs(num), fabs((double)d[q])), 1e-2);
        worst = fmax(worst, e);
      }
  fprintf(stderr, "    finite differences: worst error %.2e\n", worst);
  if (worst > worst_seen) worst_seen = worst;
  ASSERT_EQ_INT(padded_nonzero, 0);
  ASSERT_TRUE(worst < 1e-3);
  /* the padded steps' logits do not matter */
  for (int t = 2; t < T; t++) lg[((size_t)1 * T + t) * K] += 50.0f;
  ASSERT_NEAR(nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, scale, NULL), got, 1e-12);
  /* NULL lengths: every step (the bad targets make it NaN; fix them) */
  for (int i = 0; i < N * T; i++) tg[i] = (i * 7) % K;
  static const int32_t full[N] = {T, T, T};
  double all = nn_loss_seq_softmax_ce(lg, tg, NULL, N, T, K, 1.0f, NULL);
  ASSERT_NEAR(all, seq_ce_ref(lg, tg, full, N, T, K), 1e-9 * fabs(all));
  ASSERT_EQ_INT(nn_seq_valid_steps(NULL, N, T), N * T);
  /* the same as the per-sample loss over the rows */
  ASSERT_NEAR(all, nn_loss_softmax_ce(lg, tg, N * T, K, 1.0f, NULL), 1e-9 * fabs(all));
}

/* A bad target at a valid step or a bad length: NaN, nothing out of bounds,
 * the offending row (sample) has zero gradient, the others are unchanged. */
static void test_seq_ce_bad_input(void) {
  enum { N = 2, T = 3, K = 3 };
  float lg[N * T * K], d[N * T * K];
  fill_uniform(lg, N * T * K, 81, -1.0f, 1.0f);
  int32_t tg[N * T] = {0, 1, 2, 2, 1, 0};
  int32_t len[N] = {3, 2};
  double ok = nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, 1.0f, d);
  ASSERT_TRUE(isfinite(ok));
  float d0[N * T * K];
  memcpy(d0, d, sizeof d);
  tg[4] = 3; /* valid step of sample 1 */
  ASSERT_TRUE(isnan(nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, 1.0f, d)));
  int bad = 0;
  for (int j = 0; j < K; j++) bad += d[(1 * T + 1) * K + j] != 0.0f;
  for (int q = 0; q < (1 * T + 1) * K; q++) bad += d[q] != d0[q];
  ASSERT_EQ_INT(bad, 0);
  tg[4] = 1;
  len[0] = 0;
  ASSERT_TRUE(isnan(nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, 1.0f, d)));
  for (int q = 0; q < T * K; q++) bad += d[q] != 0.0f;
  ASSERT_EQ_INT(bad, 0);
  len[0] = T + 1;
  ASSERT_TRUE(isnan(nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, 1.0f, d)));
  ASSERT_EQ_INT(nn_seq_valid_steps(len, N, T), T + 2);
}

/* ---- the gradcheck options --------------------------------------------- */

/* opts.x is used as given: a relu checked with a step (0.5) that straddles
 * its kink for the drawn inputs (the checker's own detection test) passes
 * on fixed inputs far from 0. no_dx compares parameters only. */
static void test_gradcheck_fixed_input(void) {
  nn_layer_cfg c = cfg_of("relu");
  nn_shape in = {1, {8}};
  float x[3 * 8];
  for (int i = 0; i < 24; i++) x[i] = i % 2 ? 3.0f : -3.0f;
  nn_gradcheck_opts o = {.seed = 7, .eps = 0.5, .x_lo = -0.4f, .x_hi = 0.4f};
  nn_gradcheck_result r;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_gradcheck(&in, &c, 1, &o, &r, &e));
  ASSERT_TRUE(r.max_err > 0.1); /* drawn: straddles */
  o.x = x;
  ASSERT_OK(nn_gradcheck(&in, &c, 1, &o, &r, &e));
  ASSERT_TRUE(r.max_err < 1e-6);
  ASSERT_EQ_INT(r.nchecked, 24);
  c = cfg_of("dense");
  cfg_set(&c, "units", "%d", 2);
  nn_gradcheck_opts o2 = {.seed = 8, .no_dx = 1};
  ASSERT_OK(nn_gradcheck(&in, &c, 1, &o2, &r, &e));
  ASSERT_EQ_INT(r.nchecked, 2 * 8 + 2);
  ASSERT_TRUE(r.max_err_dx == 0.0);
}

static void test_report_worst(void) {
  fprintf(stderr, "    worst gradient error over this program: %.2e\n", worst_seen);
}

/* ---- pooling over time -------------------------------------------------- */

/* global_avgpool1d / global_maxpool1d: finite differences with lengths
 * (padding gets exactly zero gradient), values by hand, padding ignored. */
static void test_timepool(void) {
  static const int32_t lens[3] = {5, 2, 1};
  for (int k = 0; k < 2; k++) {
    nn_layer_cfg c = cfg_of(k ? "global_maxpool1d" : "global_avgpool1d");
    nn_shape in = {2, {5, 3}};
    nn_gradcheck_opts o = {.seed = 70 + (uint64_t)k, .n = 3, .lengths = lens};
    size_t nchk;
    char w[192];
    double e = run_gradcheck(&in, &c, 1, &o, &nchk, w, sizeof w);
    fprintf(stderr, "    %s: max error %.2e over %zu (%s)\n", c.type, e, nchk, w);
    ASSERT_TRUE(e < GC_TOL);
    /* values: sample 1 has 2 valid steps of 5; its padding holds 100s */
    nn_model m;
    ASSERT_OK(build_one(&m, &c, in, 2, 1));
    float x[2 * 15], dy[2 * 3] = {1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 30; i++) x[i] = (float)(i % 15);
    for (int t = 2; t < 5; t++)
      for (int ch = 0; ch < 3; ch++) x[15 + t * 3 + ch] = 100.0f;
    int32_t l2[2] = {5, 2};
    nn_run_ctx ctx = {.training = 1, .lengths = l2};
    const float *y = nn_model_forward(&m, x, 2, &ctx);
    for (int ch = 0; ch < 3; ch++) {
      float want0 = k ? (float)(12 + ch) : (float)(6 + ch);  /* steps 0..4: ch, 3+ch, ... */
      float want1 = k ? (float)(3 + ch) : (float)(1.5 + ch); /* steps 0, 1 only */
      ASSERT_TRUE(fabsf(y[ch] - want0) < 1e-5f);
      ASSERT_TRUE(fabsf(y[3 + ch] - want1) < 1e-5f);
    }
    (void)dy;
    nn_model_free(&m);
    ASSERT_EQ_INT(refuses(&c, (nn_shape){1, {5}}, NN_ESHAPE, "[T, channels]"), 1);
  }
}

TEST_MAIN(TEST(test_embedding_forward_values), TEST(test_embedding_init),
          TEST(test_embedding_grad), TEST(test_embedding_padding_no_grad),
          TEST(test_embedding_frozen), TEST(test_embedding_refusals),
          TEST(test_conv1d_grad_all), TEST(test_conv1d_reference), TEST(test_conv1d_causal),
          TEST(test_conv1d_refusals), TEST(test_dense_per_timestep_values),
          TEST(test_dense_per_timestep_grad), TEST(test_sequence_stack_grad),
          TEST(test_sequence_flatten_grad),
          TEST(test_seq_ce_values_and_grad), TEST(test_seq_ce_bad_input),
          TEST(test_gradcheck_fixed_input), TEST(test_timepool), TEST(test_report_worst))
