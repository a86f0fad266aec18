/* test_core_layouts.c: the model's layout pass (model.h, nn_model_layouts)
 * against NCHW everywhere, the reference.
 *
 * Each comparison builds one model, runs forward and backward (with the
 * input gradient) with activations kept blocked where the pass allows, then
 * again from the same parameters and running statistics with every tensor
 * NCHW, and compares the output, every parameter gradient, the input
 * gradient and the updated running statistics BIT FOR BIT: the blocked
 * kernels compute the same float operations in the same order, and oneDNN
 * runs the same primitives whichever layout our side has (only the reorders
 * around them go). In training and in evaluation, with the ReLU fusion on
 * and off. Models: a small ResNet (16 and 32 channels: everything blocked
 * from the stem to global_avgpool) and a convnet (blocked up to flatten,
 * which writes NCHW order for the dense layer). Also: what the pass may not block (channels
 * not a multiple of 16, the last layer, an activity penalty, a reader that
 * cannot read blocked), NN_BLOCKED, and a convolution whose oneDNN
 * primitives cannot be made (an injected allocation failure), served by the
 * reference through in-place conversions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/compute.h"
#include "core/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "layer_cfg.h"
#include "test.h"

#define MAXB 5

/* 1 when this build's default convolution backend reads and writes blocked
 * activations (oneDNN, blocked layouts): then the pass has convolutions to
 * start from; otherwise only what needs no convolution can be blocked. */
static int conv_blocks(void) {
  nn_conv_backend b;
  nn_error e;
  nn_error_clear(&e);
  return nn_compute_have_dnnl() && nn_conv_backend_choice(&b, &e) == 0 &&
         b == NN_CONV_DNNL_BLOCKED;
}

static nn_layer_cfg conv(int filters, int k, int stride, const char *act) {
  nn_layer_cfg c = cfg_of("conv2d");
  cfg_set(&c, "filters", "%d", filters);
  cfg_set(&c, "kernel_size", "[%d, %d]", k, k);
  cfg_set(&c, "stride", "[%d, %d]", stride, stride);
  cfg_set(&c, "padding", "\"same\"");
  cfg_set_bool(&c, "use_bias", 0);
  snprintf(c.activation, sizeof c.activation, "%s", act);
  return c;
}

static nn_layer_cfg pool(int k, int stride, const char *pad) {
  nn_layer_cfg c = cfg_of("maxpool");
  cfg_set(&c, "pool_size", "[%d, %d]", k, k);
  cfg_set(&c, "stride", "[%d, %d]", stride, stride);
  cfg_set(&c, "padding", "\"%s\"", pad);
  return c;
}

/* The ResNet job in small: [3, 11, 9] -> conv16 bn relu -> maxpool 3/2 same
 * -> block [conv bn relu conv bn] + x -> relu -> projection block (32,
 * stride 2) -> relu -> global_avgpool -> dense 3. */
static int resnet(nn_layer_cfg *c) {
  int n = 0;
  c[n++] = conv(16, 3, 1, "");
  c[n++] = cfg_of("batchnorm");
  c[n++] = cfg_of("relu");
  c[n++] = pool(3, 2, "same");
  for (int b = 0; b < 2; b++) {
    c[n++] = cfg_block(5, b == 1);
    c[n++] = conv(b ? 32 : 16, 3, b ? 2 : 1, "");
    c[n++] = cfg_of("batchnorm");
    c[n++] = cfg_of("relu");
    c[n++] = conv(b ? 32 : 16, 3, 1, "");
    c[n++] = cfg_of("batchnorm");
    c[n++] = cfg_of("relu");
  }
  c[n++] = cfg_of("global_avgpool");
  c[n++] = cfg_dense(3, "none");
  return n;
}

/* The classic convnet in small: [2, 12, 10] -> conv16 relu -> maxpool 2 ->
 * conv32 relu -> maxpool 2 -> flatten -> dense 4. */
static int cnn(nn_layer_cfg *c) {
  int n = 0;
  c[n++] = conv(16, 3, 1, "relu");
  c[n++] = pool(2, 2, "valid");
  c[n++] = conv(32, 3, 1, "relu");
  c[n++] = pool(2, 2, "valid");
  c[n++] = cfg_of("flatten");
  c[n++] = cfg_dense(4, "none");
  return n;
}

static int build(nn_model *m, const nn_shape *in, const nn_layer_cfg *c, int n) {
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, in, c, n, MAXB, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  return rc;
}

static int find(const nn_model *m, const char *name) {
  for (int i = 0; i < m->nlayers; i++)
    if (strcmp(m->layers[i].cfg.name, name) == 0) return i;
  fprintf(stderr, "no layer '%s'\n", name);
  return -1;
}

static void fill(float *v, size_t cnt, uint64_t key) {
  nn_rng r;
  nn_rng_init(&r, key, 0, 0, 0, 0);
  for (size_t i = 0; i < cnt; i++) v[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

static void pass(nn_model *m, const float *x, const float *g, int training, float *out,
                 float *grads, float *dx, float *bufs) {
  nn_run_ctx ctx = {.training = training, .seed = 7};
  size_t no = MAXB * nn_shape_count(&m->out);
  nn_model_zero_grad(m);
  const float *y = nn_model_forward(m, x, MAXB, &ctx);
  memcpy(out, y, no * sizeof *out);
  nn_model_backward_dx(m, x, g, dx, MAXB, &ctx, NULL, NULL);
  memcpy(grads, m->grads, m->ntrainable * sizeof *grads);
  if (bufs) memcpy(bufs, m->buffers, m->nbuffers * sizeof *bufs);
}

/* max |a - b| / max(1, max |b|) */
static double rel_diff(const float *a, const float *b, size_t cnt) {
  double d = 0, s = 1;
  for (size_t i = 0; i < cnt; i++) {
    double e = fabs((double)a[i] - b[i]);
    if (e > d || e != e) d = e;
    if (fabs(b[i]) > s) s = fabs(b[i]);
  }
  return d / s;
}

/* The model of cfgs, blocked (expecting `nblocked` blocked outputs) against
 * NCHW, in training and evaluation, fused and unfused. tol < 0: bit for bit;
 * else the largest relative difference allowed. */
static void compare_layouts(const nn_shape *in, const nn_layer_cfg *c, int nc, int nblocked,
                            double tol) {
  nn_model m;
  unsetenv("NN_BLOCKED");
  ASSERT_OK(build(&m, in, c, nc));
  ASSERT_EQ_INT(m.nblocked, nblocked);
  nn_model_init_params(&m, 3);
  size_t nx = MAXB * nn_shape_count(in), no = MAXB * nn_shape_count(&m.out);
  size_t sz = 3 * nx + 3 * no + 2 * m.ntrainable + 3 * m.nbuffers + 4;
  float *mem = calloc(sz, sizeof *mem);
  ASSERT_TRUE(mem != NULL);
  float *x = mem, *g = x + nx, *out0 = g + no, *out1 = out0 + no;
  float *gr0 = out1 + no, *gr1 = gr0 + m.ntrainable, *dx0 = gr1 + m.ntrainable;
  float *dx1 = dx0 + nx, *b0 = dx1 + nx, *b1 = b0 + m.nbuffers, *bsave = b1 + m.nbuffers;
  fill(x, nx, 11);
  fill(g, no, 12);
  memcpy(bsave, m.buffers, m.nbuffers * sizeof *bsave);
  for (int fuse = 1; fuse >= 0; fuse--)
    for (int training = 1; training >= 0; training--) {
      nn_model_fuse(&m, fuse);
      ASSERT_EQ_INT(nn_model_layouts(&m, 1), nblocked);
      memcpy(m.buffers, bsave, m.nbuffers * sizeof *bsave);
      pass(&m, x, g, training, out0, gr0, dx0, b0);
      ASSERT_EQ_INT(nn_model_layouts(&m, 0), 0);
      memcpy(m.buffers, bsave, m.nbuffers * sizeof *bsave);
      pass(&m, x, g, training, out1, gr1, dx1, b1);
      double d[4] = {rel_diff(out0, out1, no), rel_diff(gr0, gr1, m.ntrainable),
                     rel_diff(dx0, dx1, nx), rel_diff(b0, b1, m.nbuffers)};
      fprintf(stderr, "    %s, %s: blocked - NCHW: out %.2e grads %.2e dx %.2e buffers %.2e\n",
              fuse ? "fused" : "unfused", training ? "training" : "evaluation", d[0], d[1],
              d[2], d[3]);
      if (tol < 0) {
        ASSERT_TRUE(memcmp(out0, out1, no * sizeof *out0) == 0);
        ASSERT_TRUE(memcmp(gr0, gr1, m.ntrainable * sizeof *gr0) == 0);
        ASSERT_TRUE(memcmp(dx0, dx1, nx * sizeof *dx0) == 0);
        ASSERT_TRUE(memcmp(b0, b1, m.nbuffers * sizeof *b0) == 0);
      } else {
        for (int k = 0; k < 4; k++) ASSERT_TRUE(d[k] <= tol);
      }
      double gmax = 0; /* the gradients compared are not trivially zero */
      for (size_t i = 0; i < m.ntrainable; i++) gmax = fmax(gmax, fabs(gr1[i]));
      ASSERT_TRUE(gmax > 1e-3);
    }
  free(mem);
  nn_model_free(&m);
}

static void test_resnet_blocked_matches_nchw(void) {
  nn_layer_cfg c[24];
  int n = resnet(c);
  nn_shape in = {3, {3, 11, 9}};
  nn_model m;
  unsetenv("NN_BLOCKED");
  ASSERT_OK(build(&m, &in, c, n));
  int expect = 0;
  if (conv_blocks()) {
    /* everything from the stem to the last block's ReLU */
    int gap = find(&m, "global_avgpool8");
    ASSERT_TRUE(gap == m.nlayers - 2);
    for (int i = 0; i < m.nlayers; i++) {
      const nn_layer *l = &m.layers[i];
      ASSERT_EQ_INT(l->out_blocked, i < gap);
      ASSERT_EQ_INT(l->in_blocked, i > 0 && i <= gap);
    }
    expect = gap;
  }
  ASSERT_EQ_INT(m.nblocked, expect);
  nn_model_free(&m);
  compare_layouts(&in, c, n, expect, -1);
}

static void test_cnn_blocked_to_flatten(void) {
  nn_layer_cfg c[8];
  int n = cnn(c);
  nn_shape in = {3, {2, 12, 10}};
  nn_model m;
  unsetenv("NN_BLOCKED");
  ASSERT_OK(build(&m, &in, c, n));
  int expect = 0;
  if (conv_blocks()) {
    /* both stages blocked; flatten reads blocked and writes NCHW order */
    const char *blocked[] = {"conv2d0", "conv2d0_relu", "maxpool1", "conv2d2", "conv2d2_relu",
                             "maxpool3"};
    for (int i = 0; i < 6; i++) ASSERT_EQ_INT(m.layers[find(&m, blocked[i])].out_blocked, 1);
    ASSERT_EQ_INT(m.layers[find(&m, "flatten4")].in_blocked, 1);
    ASSERT_EQ_INT(m.layers[find(&m, "flatten4")].out_blocked, 0);
    expect = 6;
  }
  ASSERT_EQ_INT(m.nblocked, expect);
  nn_model_free(&m);
  compare_layouts(&in, c, n, expect, -1);
}

/* Channels that are not a multiple of 16 break the chain, and so do an
 * activity penalty and the last layer; NN_BLOCKED=0 blocks nothing and
 * another value is refused. */
static void test_what_stays_nchw(void) {
  nn_shape in = {3, {2, 8, 8}};
  nn_layer_cfg c[6];
  c[0] = conv(16, 3, 1, "");
  c[1] = conv(8, 3, 1, "");   /* reads blocked (C = 16), writes NCHW (F = 8) */
  c[2] = conv(16, 3, 1, "");
  c[3] = cfg_of("relu");
  c[4] = conv(16, 1, 1, "");  /* the last layer: NCHW */
  nn_model m;
  unsetenv("NN_BLOCKED");
  ASSERT_OK(build(&m, &in, c, 5));
  int cb = conv_blocks();
  ASSERT_EQ_INT(m.layers[0].out_blocked, cb);
  ASSERT_EQ_INT(m.layers[1].in_blocked, cb);
  ASSERT_EQ_INT(m.layers[1].out_blocked, 0);
  ASSERT_EQ_INT(m.layers[2].out_blocked, cb);
  ASSERT_EQ_INT(m.layers[3].out_blocked, cb);
  ASSERT_EQ_INT(m.layers[4].in_blocked, cb);
  ASSERT_EQ_INT(m.layers[4].out_blocked, 0);
  ASSERT_EQ_INT(m.nblocked, 3 * cb);
  nn_model_free(&m);
  compare_layouts(&in, c, 5, 3 * cb, -1);
  c[3].activity_l2 = 0.01; /* regularize.c reads the ReLU's output: NCHW, and so its input */
  ASSERT_OK(build(&m, &in, c, 5));
  ASSERT_EQ_INT(m.layers[2].out_blocked, 0);
  ASSERT_EQ_INT(m.layers[3].out_blocked, 0);
  ASSERT_EQ_INT(m.nblocked, cb);
  nn_model_free(&m);
  c[3].activity_l2 = 0;
  setenv("NN_BLOCKED", "0", 1);
  ASSERT_OK(build(&m, &in, c, 5));
  ASSERT_EQ_INT(m.nblocked, 0);
  for (int i = 0; i < m.nlayers; i++)
    ASSERT_TRUE(!m.layers[i].in_blocked && !m.layers[i].out_blocked);
  nn_model_free(&m);
  setenv("NN_BLOCKED", "yes", 1);
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_build(&m, &in, c, 5, MAXB, &e), NN_EUSAGE);
  ASSERT_TRUE(strstr(e.msg, "NN_BLOCKED='yes'") != NULL);
  unsetenv("NN_BLOCKED");
}

/* The site of the oneDNN arena's allocation ("core/layers/conv2d_dnnl.c:N",
 * as core/mem.h names sites), found in the source. */
static int arena_site(char *site, size_t len) {
  const char *dir = getenv("NN_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/src/core/layers/conv2d_dnnl.c", dir ? dir : ".");
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[512];
  int no = 0, found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    no++;
    found = strstr(line, "nn_malloc(bytes + DN__ALIGN)") != NULL;
  }
  fclose(f);
  if (!found) return -1;
  snprintf(site, len, "core/layers/conv2d_dnnl.c:%d", no);
  return 0;
}

/* The second convolution of the CNN (blocked in, NCHW out) and of a chain
 * conv16 -> conv16 (blocked in and out) cannot get their primitives: the
 * reference serves them through in-place conversions, and the model
 * computes what the NCHW model does with the reference there, to float
 * rounding (oneDNN and the reference sum in different orders). This must be
 * the first test that allocates: core/mem.h reads NN_FAIL_SITE once. */
static void test_fallback_converts(void) {
#ifndef NN_FAULT_INJECTION
  SKIP_TEST("needs a build with -DNN_FAULT_INJECTION=ON");
#else
  if (!conv_blocks()) SKIP_TEST("no blocked oneDNN convolutions in this build");
  char site[1200];
  ASSERT_OK(arena_site(site, sizeof site - 8));
  strcat(site, "#2"); /* the second arena made: the second convolution's */
  setenv("NN_FAIL_SITE", site, 1);
  nn_layer_cfg c[8];
  nn_shape in = {3, {2, 8, 8}};
  c[0] = conv(16, 3, 1, "");
  c[1] = conv(16, 3, 1, "");
  c[2] = cfg_of("relu");
  c[3] = conv(16, 3, 1, "");
  c[4] = cfg_of("flatten");
  c[5] = cfg_dense(3, "none");
  nn_model m;
  unsetenv("NN_BLOCKED");
  ASSERT_OK(build(&m, &in, c, 6));
  nn_model_init_params(&m, 3);
  size_t nx = MAXB * nn_shape_count(&in), no = MAXB * nn_shape_count(&m.out);
  size_t np = m.ntrainable;
  float *mem = calloc(3 * nx + 3 * no + 2 * np, sizeof *mem);
  float *x = mem, *g = x + nx, *out0 = g + no, *out1 = out0 + no, *gr0 = out1 + no;
  float *gr1 = gr0 + np, *dx0 = gr1 + np, *dx1 = dx0 + nx;
  if (mem) { /* before any check: the injected failure fires here, not in a later test */
    fill(x, nx, 11);
    fill(g, no, 12);
    pass(&m, x, g, 1, out0, gr0, dx0, NULL);
  }
  ASSERT_TRUE(mem != NULL);
  ASSERT_EQ_INT(m.nblocked, 4); /* conv0, conv1, relu, conv3 (flatten reads blocked) */
  long fb0 = -1, fb1 = -1;
  nn_conv2d_backend(&m.layers[0], &fb0, NULL);
  nn_conv2d_backend(&m.layers[1], &fb1, NULL);
  ASSERT_EQ_INT(fb0, 0);
  ASSERT_EQ_INT(fb1, 2); /* its forward and its backward */
  nn_model_layouts(&m, 0);
  pass(&m, x, g, 1, out1, gr1, dx1, NULL);
  double d[3] = {rel_diff(out0, out1, no), rel_diff(gr0, gr1, np), rel_diff(dx0, dx1, nx)};
  fprintf(stderr, "    fallback, blocked - NCHW: out %.2e grads %.2e dx %.2e\n", d[0], d[1], d[2]);
  for (int k = 0; k < 3; k++) ASSERT_TRUE(d[k] <= 2e-5);
  free(mem);
  nn_model_free(&m);
  unsetenv("NN_FAIL_SITE");
#endif
}

TEST_MAIN(TEST(test_fallback_converts), TEST(test_resnet_blocked_matches_nchw),
          TEST(test_cnn_blocked_to_flatten), TEST(test_what_stays_nchw))
