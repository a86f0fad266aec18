/* test_core_genlayers.c: the layers of generative models (issue 14):
 * conv2d_transpose, upsample, reshape and sample.
 *
 *   conv2d_transpose  output shapes and refused configurations; finite
 *                     differences (odd shapes, strides 1-3, padding,
 *                     output_padding, with and without bias); the identity
 *                     "forward == conv2d's input gradient, backward data ==
 *                     conv2d's forward, weight gradients equal" with the same
 *                     weights (checked in C, no PyTorch needed); and parity
 *                     with torch.nn.ConvTranspose2d (and nn.Upsample) when
 *                     /usr/bin/python3 imports torch (else that test is skipped).
 *   upsample          nearest and bilinear against hand-computed values,
 *                     finite differences for both modes.
 *   reshape           shapes, -1 inference, refusals, a round trip.
 *   sample            N-invariance (the same global sample gets the same z
 *                     whatever the slicing), the draws are N(0, 1) and change
 *                     with step and seed, evaluation gives mu, the KL value
 *                     against the direct formula, its gradient (with the
 *                     reparameterisation's) against finite differences. */
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/layers/sample.h"
#include "core/model.h"
#include "core/rng.h"
#include "gradcheck_assert.h"
#include "test.h"

static nn_shape chw(int c, int h, int w) { return (nn_shape){3, {c, h, w}}; }

static void fill(float *v, size_t n, uint32_t key, float lo, float hi) {
  nn_rng r;
  nn_rng_init(&r, 5, NN_RNG_TEST, key, 0, 0);
  for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * nn_rng_uniform(&r);
}

/* ---- conv2d_transpose ----------------------------------------------------- */

typedef struct convt_case {
  int c, h, w, f, kh, kw, sh, sw, ph, pw, oph, opw, bias;
} convt_case;

/* odd shapes, strides 1-3, padding, output_padding */
static const convt_case k_convt[] = {
    {2, 3, 4, 3, 3, 3, 1, 1, 0, 0, 0, 0, 1},  {3, 4, 3, 2, 3, 2, 2, 3, 1, 0, 1, 2, 1},
    {2, 3, 3, 2, 4, 4, 3, 3, 1, 1, 2, 0, 1},  {1, 5, 4, 3, 2, 3, 3, 2, 0, 1, 0, 1, 0},
    {4, 2, 5, 1, 5, 3, 2, 1, 2, 1, 1, 0, 1},  {2, 1, 1, 3, 3, 3, 2, 2, 0, 0, 1, 1, 1},
    {3, 4, 4, 2, 4, 4, 2, 2, 1, 1, 0, 0, 0},  {1, 3, 2, 1, 1, 1, 3, 3, 0, 0, 2, 2, 1},
};
#define NCONVT ((int)(sizeof k_convt / sizeof k_convt[0]))

static nn_layer_cfg convt_cfg(const convt_case *k) {
  nn_layer_cfg c = cfg_of("conv2d_transpose");
  cfg_set(&c, "filters", "%d", k->f);
  cfg_set(&c, "kernel_size", "[%d, %d]", k->kh, k->kw);
  cfg_set(&c, "stride", "[%d, %d]", k->sh, k->sw);
  cfg_set(&c, "padding", "[%d, %d]", k->ph, k->pw);
  cfg_set(&c, "output_padding", "[%d, %d]", k->oph, k->opw);
  cfg_set_bool(&c, "use_bias", k->bias);
  return c;
}

static int convt_ho(const convt_case *k) { return (k->h - 1) * k->sh - 2 * k->ph + k->kh + k->oph; }
static int convt_wo(const convt_case *k) { return (k->w - 1) * k->sw - 2 * k->pw + k->kw + k->opw; }

static void test_convt_shapes(void) {
  for (int i = 0; i < NCONVT; i++) {
    const convt_case *k = &k_convt[i];
    nn_layer_cfg c = convt_cfg(k);
    nn_model m;
    nn_error e;
    nn_error_clear(&e);
    nn_shape in = chw(k->c, k->h, k->w);
    ASSERT_OK(nn_model_build(&m, &in, &c, 1, 2, &e));
    ASSERT_EQ_INT(m.out.ndim, 3);
    ASSERT_EQ_INT(m.out.dim[0], k->f);
    ASSERT_EQ_INT(m.out.dim[1], convt_ho(k));
    ASSERT_EQ_INT(m.out.dim[2], convt_wo(k));
    /* weight [C_in, C_out, kh, kw] (PyTorch's order), bias [C_out] */
    int t = nn_model_find_tensor(&m, m.layers[0].cfg.name, "weight");
    ASSERT_TRUE(t >= 0);
    ASSERT_EQ_INT(m.tensors[t].count, (size_t)k->c * k->f * k->kh * k->kw);
    ASSERT_EQ_INT(m.layers[0].pspec[0].shape.dim[0], k->c);
    ASSERT_EQ_INT(m.layers[0].pspec[0].shape.dim[1], k->f);
    ASSERT_EQ_INT(m.layers[0].nparams, k->bias ? 2 : 1);
    nn_model_free(&m);
  }
  /* 28x28 DCGAN-style: 7 -> 14 -> 28 with k 4, s 2, p 1 */
  convt_case g = {8, 7, 7, 4, 4, 4, 2, 2, 1, 1, 0, 0, 1};
  ASSERT_EQ_INT(convt_ho(&g), 14);
}

static int build_err(const nn_layer_cfg *c, nn_shape in, nn_error *e) {
  nn_model m;
  nn_error_clear(e);
  int rc = nn_model_build(&m, &in, c, 1, 2, e);
  if (rc == 0) nn_model_free(&m);
  return rc;
}

static void test_convt_refusals(void) {
  convt_case k = {2, 3, 3, 2, 3, 3, 2, 2, 0, 0, 0, 0, 1};
  nn_error e;
  nn_layer_cfg c = convt_cfg(&k);
  cfg_set(&c, "output_padding", "[2, 0]");
  ASSERT_TRUE(build_err(&c, chw(2, 3, 3), &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "output_padding 2x0 must be >= 0 and smaller than the stride 2x2");
  c = convt_cfg(&k);
  cfg_set(&c, "padding", "[3]"); /* (3-1)*2 - 6 + 3 = 1: still one pixel */
  ASSERT_OK(build_err(&c, chw(2, 3, 3), &e));
  cfg_set(&c, "padding", "[4]");
  ASSERT_TRUE(build_err(&c, chw(2, 3, 3), &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "leaves no output");
  c = convt_cfg(&k);
  nn_shape flat = {1, {18}};
  ASSERT_TRUE(build_err(&c, flat, &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "expects a [channels, height, width] input, got [18]");
}

static void test_convt_grads(void) {
  for (int i = 0; i < NCONVT; i++) {
    nn_layer_cfg c = convt_cfg(&k_convt[i]);
    nn_shape in = chw(k_convt[i].c, k_convt[i].h, k_convt[i].w);
    nn_gradcheck_opts o = {.seed = 300 + (uint64_t)i, .n = 3, .eps = 1.0}; /* linear: exact */
    fprintf(stderr, "  case %d\n", i);
    CHECK_GRADS(&in, &c, 1, &o);
  }
}

/* The transposed convolution is the adjoint of conv2d: with conv2d's weight
 * [filters = C, channels = F, kh, kw] equal to ours [C, F, kh, kw],
 *   convt.forward(x)           == conv2d's input gradient for output gradient x,
 *   convt's input gradient(g)  == conv2d.forward(g),
 *   convt's weight gradient    == conv2d's weight gradient (input g, output gradient x). */
static void test_convt_is_conv2d_adjoint(void) {
  enum { N = 2 };
  for (int i = 0; i < NCONVT; i++) {
    convt_case k = k_convt[i];
    k.bias = 0;
    int ho = convt_ho(&k), wo = convt_wo(&k);
    nn_layer_cfg ct = convt_cfg(&k);
    nn_layer_cfg cv = cfg_of("conv2d");
    cfg_set(&cv, "filters", "%d", k.c);
    cfg_set(&cv, "kernel_size", "[%d, %d]", k.kh, k.kw);
    cfg_set(&cv, "stride", "[%d, %d]", k.sh, k.sw);
    cfg_set(&cv, "padding", "\"explicit\"");
    cfg_set(&cv, "pad", "[%d, %d]", k.ph, k.pw);
    cfg_set_bool(&cv, "use_bias", 0);
    nn_model mt, mc;
    nn_error e;
    nn_error_clear(&e);
    nn_shape tin = chw(k.c, k.h, k.w), cin = chw(k.f, ho, wo);
    ASSERT_OK(nn_model_build(&mt, &tin, &ct, 1, N, &e));
    ASSERT_OK(nn_model_build(&mc, &cin, &cv, 1, N, &e));
    ASSERT_EQ_INT(nn_shape_count(&mc.out), nn_shape_count(&tin)); /* conv2d: [C, H, W] */
    nn_model_init_params(&mt, 40 + (uint64_t)i);
    ASSERT_EQ_INT(mt.nparams, mc.nparams);
    memcpy(mc.params, mt.params, mt.nparams * sizeof(float));
    size_t nx = (size_t)N * nn_shape_count(&tin), ny = (size_t)N * nn_shape_count(&cin);
    float *x = malloc(nx * sizeof *x), *g = malloc(ny * sizeof *g);
    float *y = malloc(ny * sizeof *y), *dxc = malloc(ny * sizeof *dxc);
    float *dxt = malloc(nx * sizeof *dxt), *yc = malloc(nx * sizeof *yc);
    ASSERT_TRUE(x && g && y && dxc && dxt && yc);
    fill(x, nx, 10 + (uint32_t)i, -1, 1);
    fill(g, ny, 20 + (uint32_t)i, -1, 1);
    nn_run_ctx ctx = {.training = 1};
    memcpy(y, nn_model_forward(&mt, x, N, &ctx), ny * sizeof *y);
    nn_model_zero_grad(&mt);
    nn_model_backward_dx(&mt, x, g, dxt, N, &ctx, NULL, NULL);
    memcpy(yc, nn_model_forward(&mc, g, N, &ctx), nx * sizeof *yc);
    nn_model_zero_grad(&mc);
    nn_model_backward_dx(&mc, g, x, dxc, N, &ctx, NULL, NULL);
    double worst = 0, scale = 1e-6;
    for (size_t j = 0; j < ny; j++) scale = fmax(scale, fabs(y[j]));
    for (size_t j = 0; j < ny; j++) worst = fmax(worst, fabs(y[j] - dxc[j]) / scale);
    for (size_t j = 0; j < nx; j++) worst = fmax(worst, fabs(dxt[j] - yc[j]) / scale);
    for (size_t j = 0; j < mt.nparams; j++)
      worst = fmax(worst, fabs(mt.grads[j] - mc.grads[j]) / scale);
    fprintf(stderr, "  case %d: worst relative difference %.2e\n", i, worst);
    free(x), free(g), free(y), free(dxc), free(dxt), free(yc);
    nn_model_free(&mt);
    nn_model_free(&mc);
    ASSERT_TRUE(worst < 1e-5);
  }
}

/* ---- PyTorch parity (conv2d_transpose, upsample) ---------------------------- */

static const char k_parity_py[] =
    "import sys\n"
    "try:\n"
    "    import torch\n"
    "except Exception:\n"
    "    sys.exit(77)\n"
    "torch.set_default_dtype(torch.float64)\n"
    "bad = 0\n"
    "for path in sys.argv[1:]:\n"
    "    cfg, t = {}, {}\n"
    "    for line in open(path):\n"
    "        w = line.split()\n"
    "        if w[0] == 'config':\n"
    "            cfg = {kv.split('=')[0]: kv.split('=')[1] for kv in w[1:]}\n"
    "        else:\n"
    "            t[w[1]] = torch.tensor([float(v) for v in w[3:]])\n"
    "    n, c, h, wd = (int(cfg[k]) for k in ('n', 'c', 'h', 'w'))\n"
    "    x = t['x'].reshape(n, c, h, wd).requires_grad_(True)\n"
    "    if cfg['type'] == 'conv2d_transpose':\n"
    "        f, kh, kw, sh, sw, ph, pw, oph, opw, bias = (int(cfg[k]) for k in\n"
    "            ('f', 'kh', 'kw', 'sh', 'sw', 'ph', 'pw', 'oph', 'opw', 'bias'))\n"
    "        m = torch.nn.ConvTranspose2d(c, f, (kh, kw), (sh, sw), (ph, pw), (oph, opw),\n"
    "                                     bias=bool(bias))\n"
    "        with torch.no_grad():\n"
    "            m.weight.copy_(t['weight'].reshape(m.weight.shape))\n"
    "            if bias: m.bias.copy_(t['bias'])\n"
    "    else:\n"
    "        bil = {'align_corners': False} if cfg['mode'] == 'bilinear' else {}\n"
    "        m = torch.nn.Upsample(scale_factor=(int(cfg['sh']), int(cfg['sw'])),\n"
    "                              mode=cfg['mode'], **bil)\n"
    "    y = m(x)\n"
    "    (y * t['g'].reshape(y.shape)).sum().backward()\n"
    "    got = [('y', y.detach(), t['y']), ('dx', x.grad, t['dx'])]\n"
    "    if cfg['type'] == 'conv2d_transpose':\n"
    "        got.append(('dweight', m.weight.grad, t['dweight']))\n"
    "        if int(cfg['bias']): got.append(('dbias', m.bias.grad, t['dbias']))\n"
    "    for name, ref, ours in got:\n"
    "        ref = ref.flatten()\n"
    "        if ref.numel() != ours.numel():\n"
    "            print(path, name, 'size', ref.numel(), ours.numel()); bad = 1; continue\n"
    "        err = ((ref - ours).abs().max() / ref.abs().max().clamp(min=1e-6)).item()\n"
    "        print('%s %s %s max relative error %.2e'\n"
    "              % (path.split('/')[-1], cfg['type'], name, err))\n"
    "        if not err < 1e-5: bad = 1\n"
    "sys.exit(bad)\n";

static void put(FILE *f, const char *name, const float *v, size_t count) {
  fprintf(f, "tensor %s %zu", name, count);
  for (size_t i = 0; i < count; i++) fprintf(f, " %.9g", (double)v[i]);
  fputc('\n', f);
}

/* Run the one-layer model c on [n, in] and write config, x, g, y, dx and the
 * parameter gradients to path. 0 or -1. */
static int write_parity_case(const nn_layer_cfg *c, nn_shape in, const char *config,
                             uint32_t key, const char *path) {
  enum { N = 3 };
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  if (nn_model_build(&m, &in, c, 1, N, &e)) {
    fprintf(stderr, "build: %s\n", e.msg);
    return -1;
  }
  nn_model_init_params(&m, 77 + key);
  /* a random bias too (it starts at zero) */
  int bt = nn_model_find_tensor(&m, m.layers[0].cfg.name, "bias");
  if (bt >= 0) fill(m.params + m.tensors[bt].offset, m.tensors[bt].count, 500 + key, -1, 1);
  size_t nx = (size_t)N * nn_shape_count(&in), ny = (size_t)N * nn_shape_count(&m.out);
  float *x = malloc(nx * sizeof *x), *g = malloc(ny * sizeof *g), *dx = malloc(nx * sizeof *dx);
  FILE *f = fopen(path, "w");
  int rc = x && g && dx && f ? 0 : -1;
  if (rc == 0) {
    fill(x, nx, 600 + key, -1, 1);
    fill(g, ny, 700 + key, -1, 1);
    nn_run_ctx ctx = {.training = 1};
    const float *y = nn_model_forward(&m, x, N, &ctx);
    fprintf(f, "config %s n=%d c=%d h=%d w=%d\n", config, N, in.dim[0], in.dim[1], in.dim[2]);
    put(f, "x", x, nx);
    put(f, "y", y, ny);
    put(f, "g", g, ny);
    nn_model_zero_grad(&m);
    nn_model_backward_dx(&m, x, g, dx, N, &ctx, NULL, NULL);
    put(f, "dx", dx, nx);
    for (int t = 0; t < m.ntensors; t++) {
      char name[NN_NAME_MAX + 8];
      const char *pname = strrchr(m.tensors[t].name, '/');
      pname = pname ? pname + 1 : m.tensors[t].name;
      snprintf(name, sizeof name, "%s", pname);
      put(f, name, m.params + m.tensors[t].offset, m.tensors[t].count);
      snprintf(name, sizeof name, "d%s", pname);
      put(f, name, m.grads + m.tensors[t].offset, m.tensors[t].count);
    }
  }
  if (f && fclose(f) != 0) rc = -1;
  free(x), free(g), free(dx);
  nn_model_free(&m);
  return rc;
}

static void test_torch_parity(void) {
  if (access("/usr/bin/python3", X_OK) != 0 ||
      system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    SKIP_TEST("/usr/bin/python3 cannot import torch");
  char dir[] = "/tmp/nn_genlayers_torch_XXXXXX", cmd[16384], path[256];
  ASSERT_TRUE(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/parity.py", dir);
  FILE *py = fopen(path, "w");
  ASSERT_TRUE(py != NULL);
  fputs(k_parity_py, py);
  ASSERT_TRUE(fclose(py) == 0);
  int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s'", path), bad = 0, ncase = 0;
  for (int i = 0; i < NCONVT; i++, ncase++) {
    const convt_case *k = &k_convt[i];
    char config[256];
    snprintf(config, sizeof config,
             "type=conv2d_transpose f=%d kh=%d kw=%d sh=%d sw=%d ph=%d pw=%d oph=%d opw=%d "
             "bias=%d", k->f, k->kh, k->kw, k->sh, k->sw, k->ph, k->pw, k->oph, k->opw, k->bias);
    snprintf(path, sizeof path, "%s/case%02d.txt", dir, ncase);
    nn_layer_cfg c = convt_cfg(k);
    if (write_parity_case(&c, chw(k->c, k->h, k->w), config, (uint32_t)ncase, path)) bad = 1;
    len += snprintf(cmd + len, sizeof cmd - (size_t)len, " '%s'", path);
  }
  static const struct { const char *mode; int c, h, w, sh, sw; } ups[] = {
      {"nearest", 2, 3, 5, 2, 3},  {"nearest", 1, 4, 2, 1, 2},  {"bilinear", 2, 3, 5, 2, 3},
      {"bilinear", 3, 4, 3, 3, 1}, {"bilinear", 1, 1, 4, 2, 2}, {"bilinear", 2, 5, 5, 4, 3},
  };
  for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++, ncase++) {
    char config[128];
    snprintf(config, sizeof config, "type=upsample mode=%s sh=%d sw=%d", ups[i].mode, ups[i].sh,
             ups[i].sw);
    nn_layer_cfg c = cfg_of("upsample");
    cfg_set(&c, "mode", "\"%s\"", ups[i].mode);
    cfg_set(&c, "scale", "[%d, %d]", ups[i].sh, ups[i].sw);
    snprintf(path, sizeof path, "%s/case%02d.txt", dir, ncase);
    if (write_parity_case(&c, chw(ups[i].c, ups[i].h, ups[i].w), config, (uint32_t)ncase, path))
      bad = 1;
    len += snprintf(cmd + len, sizeof cmd - (size_t)len, " '%s'", path);
  }
  ASSERT_TRUE(len < (int)sizeof cmd);
  int rc = bad ? -1 : system(cmd);
  if (rc != -1 && WIFEXITED(rc)) rc = WEXITSTATUS(rc);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  if (rc == NN_TEST_SKIP_CODE) SKIP_TEST("the parity script cannot import torch");
  ASSERT_EQ_INT(rc, 0);
}

/* ---- upsample --------------------------------------------------------------- */

static int run1(const nn_layer_cfg *c, nn_shape in, const float *x, int n, float *out,
                size_t nout) {
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  if (nn_model_build(&m, &in, c, 1, n, &e)) {
    fprintf(stderr, "build: %s\n", e.msg);
    return -1;
  }
  nn_run_ctx ctx = {.training = 0};
  const float *y = nn_model_forward(&m, x, n, &ctx);
  size_t ny = (size_t)n * nn_shape_count(&m.out);
  int rc = ny == nout ? 0 : -1;
  if (!rc) memcpy(out, y, ny * sizeof *out);
  nn_model_free(&m);
  return rc;
}

static void test_upsample_values(void) {
  static const float x[4] = {1, 2, 3, 4}; /* [1, 2, 2] */
  float y[24];
  nn_layer_cfg c = cfg_of("upsample");
  cfg_set(&c, "scale", "[2, 3]");
  ASSERT_OK(run1(&c, chw(1, 2, 2), x, 1, y, 24));
  static const float nearest[24] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2,
                                    3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4};
  for (int i = 0; i < 24; i++) ASSERT_NEAR(y[i], nearest[i], 0);
  /* bilinear x2 of [[1, 2], [3, 4]], align_corners = False: source positions
   * (o + 0.5)/2 - 0.5 = 0 (clamped), 0.25, 0.75, 1.25 (-> the last pixel) */
  c = cfg_of("upsample");
  cfg_set(&c, "mode", "\"bilinear\"");
  ASSERT_OK(run1(&c, chw(1, 2, 2), x, 1, y, 16));
  static const float bil[16] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                                2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  for (int i = 0; i < 16; i++) ASSERT_NEAR(y[i], bil[i], 1e-6);
  /* scale 3 along a row [0, 3]: positions -1/3 (0), 0, 1/3, 2/3, 1, 4/3 (clamped) */
  static const float row[2] = {0, 3};
  cfg_set(&c, "scale", "[1, 3]");
  ASSERT_OK(run1(&c, chw(1, 1, 2), row, 1, y, 6));
  static const float r3[6] = {0, 0, 1, 2, 3, 3};
  for (int i = 0; i < 6; i++) ASSERT_NEAR(y[i], r3[i], 1e-6);
  nn_error e;
  cfg_set(&c, "scale", "[2, 0]");
  ASSERT_TRUE(build_err(&c, chw(1, 2, 2), &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "scale must be in [1, 1024], got 2x0");
}

static void test_upsample_grads(void) {
  static const struct { const char *mode; int sh, sw; nn_shape in; } k[] = {
      {"nearest", 2, 3, {3, {2, 3, 5}}},  {"nearest", 3, 1, {3, {1, 4, 3}}},
      {"bilinear", 2, 3, {3, {2, 3, 5}}}, {"bilinear", 3, 1, {3, {1, 4, 3}}},
      {"bilinear", 1, 2, {3, {3, 1, 4}}}, {"bilinear", 4, 4, {3, {1, 2, 2}}},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    nn_layer_cfg c = cfg_of("upsample");
    cfg_set(&c, "mode", "\"%s\"", k[i].mode);
    cfg_set(&c, "scale", "[%d, %d]", k[i].sh, k[i].sw);
    nn_gradcheck_opts o = {.seed = 400 + (uint64_t)i, .n = 2, .eps = 1.0}; /* linear */
    fprintf(stderr, "  %s %dx%d\n", k[i].mode, k[i].sh, k[i].sw);
    nn_shape in = k[i].in;
    CHECK_GRADS(&in, &c, 1, &o);
  }
}

/* ---- reshape ---------------------------------------------------------------- */

static void test_reshape(void) {
  nn_error e;
  nn_model m;
  nn_layer_cfg c[3];
  c[0] = cfg_of("reshape");
  cfg_set(&c[0], "shape", "[3, -1, 2]");
  c[1] = cfg_of("reshape"); /* default [-1]: flatten */
  c[2] = cfg_of("reshape");
  cfg_set(&c[2], "shape", "[4, 6]");
  nn_shape in = {1, {24}};
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 3, 2, &e));
  ASSERT_EQ_INT(m.layers[0].out.ndim, 3);
  ASSERT_EQ_INT(m.layers[0].out.dim[1], 4); /* 24 / (3*2) */
  ASSERT_EQ_INT(m.layers[1].out.ndim, 1);
  ASSERT_EQ_INT(m.layers[1].out.dim[0], 24);
  ASSERT_EQ_INT(m.out.dim[0], 4);
  ASSERT_EQ_INT(m.out.dim[1], 6);
  /* round trip: the values come through in order, the gradient too */
  float x[48], dx[48], g[48];
  fill(x, 48, 1, -1, 1);
  fill(g, 48, 2, -1, 1);
  nn_run_ctx ctx = {.training = 1};
  const float *y = nn_model_forward(&m, x, 2, &ctx);
  ASSERT_TRUE(memcmp(x, y, sizeof x) == 0);
  nn_model_backward_dx(&m, x, g, dx, 2, &ctx, NULL, NULL);
  ASSERT_TRUE(memcmp(g, dx, sizeof g) == 0);
  nn_model_free(&m);
  nn_gradcheck_opts o = {.seed = 9, .n = 2};
  CHECK_GRADS(&in, c, 3, &o);
  /* refusals */
  cfg_set(&c[0], "shape", "[5, -1]");
  ASSERT_TRUE(build_err(&c[0], in, &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "cannot reshape [24] (24 values) to a shape with 5 values per -1");
  cfg_set(&c[0], "shape", "[5, 5]");
  ASSERT_TRUE(build_err(&c[0], in, &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "cannot reshape [24] (24 values) to [5, 5] (25 values)");
  cfg_set(&c[0], "shape", "[-1, 2, -1]");
  ASSERT_TRUE(build_err(&c[0], in, &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "shape may have one -1, items 1 and 3 are -1");
  cfg_set(&c[0], "shape", "[0, 24]");
  ASSERT_TRUE(build_err(&c[0], in, &e) != 0);
  ASSERT_STR_CONTAINS(e.msg, "shape item 1 must be >= 1 or -1, got 0");
}

/* A decoder-like stack: dense -> reshape [2, 2, 2] -> upsample bilinear ->
 * conv2d_transpose (stride 2, padding, output_padding) -> tanh. */
static void test_decoder_stack_grads(void) {
  nn_layer_cfg c[5];
  c[0] = cfg_of("dense");
  cfg_set(&c[0], "units", "8");
  c[1] = cfg_of("reshape");
  cfg_set(&c[1], "shape", "[2, 2, 2]");
  c[2] = cfg_of("upsample");
  cfg_set(&c[2], "mode", "\"bilinear\"");
  c[3] = cfg_of("conv2d_transpose");
  cfg_set(&c[3], "filters", "2");
  cfg_set(&c[3], "kernel_size", "[3]");
  cfg_set(&c[3], "stride", "[2]");
  cfg_set(&c[3], "padding", "[1]");
  cfg_set(&c[3], "output_padding", "[1]");
  c[4] = cfg_of("tanh");
  nn_shape in = {1, {3}};
  nn_gradcheck_opts o = {.seed = 11, .n = 2, .eps = 1e-2};
  CHECK_GRADS(&in, c, 5, &o);
}

/* ---- sample ----------------------------------------------------------------- */

enum { SD = 5, SN = 6 }; /* latent size, batch */

static nn_layer_cfg sample_cfg(double beta) {
  nn_layer_cfg c = cfg_of("sample");
  cfg_set(&c, "beta", "%.17g", beta);
  return c;
}

static int sample_model(nn_model *m, double beta) {
  nn_layer_cfg c = sample_cfg(beta);
  nn_shape in = {1, {2 * SD}};
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, &in, &c, 1, SN, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  return rc;
}

static void sample_input(float *x, uint32_t key) {
  fill(x, (size_t)SN * 2 * SD, key, -1.5f, 1.5f);
}

static double direct_kl(const float *x, int n) {
  double kl = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < SD; j++) {
      double mu = x[i * 2 * SD + j], lv = x[i * 2 * SD + SD + j];
      kl += 0.5 * (mu * mu + exp(lv) - 1.0 - lv);
    }
  return kl;
}

static void test_sample_shapes(void) {
  nn_model m;
  ASSERT_OK(sample_model(&m, 1.0));
  ASSERT_EQ_INT(m.out.ndim, 1);
  ASSERT_EQ_INT(m.out.dim[0], SD);
  ASSERT_EQ_INT(m.nparams, 0);
  nn_model_free(&m);
  nn_layer_cfg c = sample_cfg(1.0);
  nn_error e;
  ASSERT_OK(build_err(&c, chw(4, 3, 3), &e)); /* [2C, H, W]: the first C channels are mu */
  nn_shape odd = {1, {7}};
  ASSERT_TRUE(build_err(&c, odd, &e) != 0);
  ASSERT_STR_CONTAINS(e.msg,
                      "first dimension is even ([2*D]: D means, then D log-variances), got [7]");
  nn_layer_cfg def = cfg_of("sample");
  ASSERT_NEAR(cfg_num(&def, "beta"), 1.0, 0); /* the default */
}

/* The same global sample gets the same z whether the batch is one slice or
 * split across "ranks" (sample0 = its global offset); other steps and seeds
 * draw other noise; the noise is N(0, 1). */
static void test_sample_n_invariant(void) {
  nn_model m;
  ASSERT_OK(sample_model(&m, 1.0));
  float x[SN * 2 * SD], whole[SN * SD], part[SN * SD];
  sample_input(x, 3);
  nn_run_ctx ctx = {.training = 1, .seed = 42, .step = 17, .sample0 = 100};
  memcpy(whole, nn_model_forward(&m, x, SN, &ctx), sizeof whole);
  static const int splits[][4] = {{3, 3, 0, 0}, {2, 2, 2, 0}, {1, 4, 1, 0}, {5, 1, 0, 0}};
  for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
    int at = 0;
    for (int k = 0; k < 4 && splits[s][k]; k++) {
      nn_run_ctx c = ctx;
      c.sample0 = ctx.sample0 + at;
      memcpy(part + at * SD, nn_model_forward(&m, x + at * 2 * SD, splits[s][k], &c),
             (size_t)splits[s][k] * SD * sizeof(float));
      at += splits[s][k];
    }
    ASSERT_EQ_INT(at, SN);
    ASSERT_TRUE(memcmp(whole, part, sizeof whole) == 0);
  }
  /* noise present, and another step / seed / position draws another */
  int differs_mu = 0;
  for (int i = 0; i < SN; i++)
    for (int j = 0; j < SD; j++) differs_mu += whole[i * SD + j] != x[i * 2 * SD + j];
  ASSERT_EQ_INT(differs_mu, SN * SD);
  nn_run_ctx other[3] = {ctx, ctx, ctx};
  other[0].step = 18;
  other[1].seed = 43;
  other[2].sample0 = 101;
  for (int k = 0; k < 3; k++) {
    const float *y = nn_model_forward(&m, x, SN, &other[k]);
    ASSERT_TRUE(memcmp(y, whole, sizeof whole) != 0);
  }
  nn_model_free(&m);
  /* eps = (z - mu) / exp(logvar/2) over 4000 draws: mean ~ 0, variance ~ 1 */
  nn_layer_cfg c = sample_cfg(1.0);
  enum { BIG = 1000, NB = 4 };
  nn_shape in = {1, {2 * BIG}};
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, &c, 1, NB, &e));
  float *xb = malloc(sizeof(float) * NB * 2 * BIG);
  ASSERT_TRUE(xb != NULL);
  fill(xb, (size_t)NB * 2 * BIG, 8, -1, 1);
  const float *z = nn_model_forward(&m, xb, NB, &ctx);
  double s1 = 0, s2 = 0;
  for (int i = 0; i < NB; i++)
    for (int j = 0; j < BIG; j++) {
      double mu = xb[i * 2 * BIG + j], lv = xb[i * 2 * BIG + BIG + j];
      double eps = (z[i * BIG + j] - mu) / exp(0.5 * lv);
      s1 += eps;
      s2 += eps * eps;
    }
  double mean = s1 / (NB * BIG), var = s2 / (NB * BIG) - mean * mean;
  fprintf(stderr, "    eps: mean %.4f, variance %.4f over %d draws\n", mean, var, NB * BIG);
  free(xb);
  nn_model_free(&m);
  ASSERT_TRUE(fabs(mean) < 0.05); /* sd of the mean: 0.016 */
  ASSERT_TRUE(fabs(var - 1.0) < 0.08); /* sd of the variance: 0.022 */
}

static void test_sample_eval_and_kl(void) {
  nn_model m;
  ASSERT_OK(sample_model(&m, 0.25));
  float x[SN * 2 * SD];
  sample_input(x, 4);
  nn_run_ctx ev = {.training = 0, .seed = 42, .step = 3};
  const float *y = nn_model_forward(&m, x, SN, &ev);
  for (int i = 0; i < SN; i++)
    for (int j = 0; j < SD; j++) ASSERT_TRUE(y[i * SD + j] == x[i * 2 * SD + j]);
  double want = direct_kl(x, SN);
  fprintf(stderr, "    KL %.9g (direct %.9g)\n", nn_sample_kl(&m), want);
  ASSERT_NEAR(nn_sample_kl(&m), want, 1e-9 * want);
  ASSERT_NEAR(nn_sample_penalty(&m), 0.25 * want, 1e-9 * want);
  /* training: the KL of the slice of the last forward (4 samples here) */
  nn_run_ctx tr = {.training = 1, .seed = 42, .step = 3};
  nn_model_forward(&m, x, 4, &tr);
  ASSERT_NEAR(nn_sample_kl(&m), direct_kl(x, 4), 1e-9 * want);
  nn_model_free(&m);
  /* no sample layer: 0 */
  nn_layer_cfg d = cfg_of("relu");
  nn_shape in = {1, {4}};
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, &d, 1, 1, &e));
  ASSERT_TRUE(nn_sample_kl(&m) == 0.0);
  nn_model_free(&m);
}

/* f(x) = sum(g * z(x)) + beta * act_scale * KL(x) with eps fixed by the
 * context: its gradient from backward (act_scale != 0 adds the KL term)
 * against central differences in double. With g = 0 only the KL gradient
 * is left, and it must not vanish. */
static double sample_f(nn_model *m, const float *x, const float *g, const nn_run_ctx *ctx,
                       double w) {
  const float *z = nn_model_forward(m, x, SN, ctx);
  double f = 0;
  for (int k = 0; k < SN * SD; k++) f += (double)g[k] * z[k];
  return f + w * nn_sample_kl(m);
}

static void test_sample_kl_grad(void) {
  const double beta = 0.7;
  const float act_scale = 0.5f;
  for (int with_g = 0; with_g < 2; with_g++)
    for (int training = 0; training < 2; training++) {
      nn_model m;
      ASSERT_OK(sample_model(&m, beta));
      float x[SN * 2 * SD], g[SN * SD], dx[SN * 2 * SD], xp[SN * 2 * SD];
      sample_input(x, 5);
      fill(g, SN * SD, 6, -1, 1);
      if (!with_g) memset(g, 0, sizeof g);
      nn_run_ctx ctx = {.training = training, .seed = 1, .step = 2, .sample0 = 7,
                        .act_scale = act_scale};
      nn_model_forward(&m, x, SN, &ctx);
      nn_model_backward_dx(&m, x, g, dx, SN, &ctx, NULL, NULL);
      double w = beta * act_scale, worst = 0, h = 1e-3;
      for (int k = 0; k < SN * 2 * SD; k++) {
        memcpy(xp, x, sizeof x);
        xp[k] = x[k] + (float)h;
        double fp = sample_f(&m, xp, g, &ctx, w);
        xp[k] = x[k] - (float)h;
        double fm = sample_f(&m, xp, g, &ctx, w);
        double d = (fp - fm) / ((double)(x[k] + (float)h) - (double)(x[k] - (float)h));
        worst = fmax(worst, fabs(d - dx[k]) / fmax(fmax(fabs(d), fabs(dx[k])), 1e-2));
        if (!with_g) { /* the KL gradient alone: beta*act_scale*(mu, (exp(logvar) - 1)/2) */
          int j = k % (2 * SD);
          double want = j < SD ? w * x[k] : w * 0.5 * (exp(x[k]) - 1.0);
          ASSERT_NEAR(dx[k], want, 1e-5 * fmax(1.0, fabs(want)));
        }
      }
      fprintf(stderr, "    g %s, training %d: max error %.2e\n", with_g ? "random" : "zero",
              training, worst);
      nn_model_free(&m);
      ASSERT_TRUE(worst < 2e-3);
    }
}

/* The reparameterisation's gradient (act_scale 0: no KL term) through the
 * gradient checker, alone and in an encoder -> sample -> decoder stack. */
static void test_sample_grads(void) {
  nn_layer_cfg c = sample_cfg(1.0);
  nn_shape in = {1, {8}};
  nn_gradcheck_opts o = {.seed = 12, .n = 3, .training = 1};
  CHECK_GRADS(&in, &c, 1, &o);
  nn_shape img = {3, {4, 2, 3}};
  CHECK_GRADS(&img, &c, 1, &o);
  nn_layer_cfg s[3];
  s[0] = cfg_of("dense");
  cfg_set(&s[0], "units", "6");
  s[1] = sample_cfg(1.0);
  s[2] = cfg_of("dense");
  cfg_set(&s[2], "units", "4");
  nn_shape in5 = {1, {5}};
  CHECK_GRADS(&in5, s, 3, &o);
}

TEST_MAIN(TEST(test_convt_shapes), TEST(test_convt_refusals), TEST(test_convt_grads),
          TEST(test_convt_is_conv2d_adjoint), TEST(test_upsample_values),
          TEST(test_upsample_grads), TEST(test_reshape), TEST(test_decoder_stack_grads),
          TEST(test_sample_shapes), TEST(test_sample_n_invariant),
          TEST(test_sample_eval_and_kl), TEST(test_sample_kl_grad), TEST(test_sample_grads),
          TEST(test_torch_parity))
