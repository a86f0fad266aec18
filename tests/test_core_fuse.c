/* test_core_fuse.c: the model's ReLU fusion pass (model.h, nn_model_fuse)
 * against the unfused layers, the reference.
 *
 * Each test builds one model, runs forward and backward (with the input
 * gradient) with the fusion on, then again from the same parameters and
 * running statistics with it off, and compares the output, the loss
 * gradient of every parameter, the input gradient and the updated running
 * statistics: the fused kernels compute the same float operations, so they
 * agree to 1e-6 relative (the measured difference is printed). Models: a
 * convnet (conv -> relu -> maxpool, twice: the 2x2 fast path and a padded
 * 3x3/2 window) and a residual net (conv -> batchnorm -> relu, blocks with
 * batchnorm -> relu inside and add -> relu after, a projection block), odd
 * shapes, in training and in evaluation. Also: which ReLUs fuse and which
 * must not (a second reader, an activity penalty, the last layer), NN_FUSE,
 * and gradient checks of the fused models against finite differences. */
#include <stdint.h>
#include <stdlib.h>

#include "core/compute.h"
#include "core/gradcheck.h"
#include "core/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "gradcheck_assert.h"
#include "test.h"

#define MAXB 5

static nn_layer_cfg conv(int filters, int k, int stride, const char *pad, int bias,
                         const char *act) {
  nn_layer_cfg c = cfg_of("conv2d");
  cfg_set(&c, "filters", "%d", filters);
  cfg_set(&c, "kernel_size", "[%d, %d]", k, k);
  cfg_set(&c, "stride", "[%d, %d]", stride, stride);
  cfg_set(&c, "padding", "\"%s\"", pad);
  cfg_set_bool(&c, "use_bias", bias);
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

/* The classic convnet in small: [2, 13, 11] -> conv3 relu -> maxpool 2 (fast
 * path, odd edge dropped) -> conv 2 relu -> maxpool 3/2 "same" (generic
 * path) -> flatten -> dense relu (not fusable) -> dense. */
static int cnn(nn_layer_cfg *c) {
  int n = 0;
  c[n++] = conv(3, 3, 1, "valid", 1, "relu");
  c[n++] = pool(2, 2, "valid");
  c[n++] = conv(4, 2, 1, "valid", 1, "relu");
  c[n++] = pool(3, 2, "same");
  c[n++] = cfg_of("flatten");
  c[n++] = cfg_dense(5, "relu");
  c[n++] = cfg_dense(3, "none");
  return n;
}

/* The ResNet job in small: [2, 9, 7] -> conv bn relu -> maxpool -> block
 * [conv bn relu conv bn] + x -> relu -> projection block (stride 2) -> relu
 * -> global_avgpool -> dense. */
static int resnet(nn_layer_cfg *c) {
  int n = 0;
  c[n++] = conv(4, 3, 1, "same", 0, "");
  c[n++] = cfg_of("batchnorm");
  c[n++] = cfg_of("relu");
  c[n++] = pool(2, 2, "valid");
  for (int b = 0; b < 2; b++) {
    c[n++] = cfg_block(5, b == 1);
    c[n++] = conv(b ? 6 : 4, 3, b ? 2 : 1, "same", 0, "");
    c[n++] = cfg_of("batchnorm");
    c[n++] = cfg_of("relu");
    c[n++] = conv(b ? 6 : 4, 3, 1, "same", 0, "");
    c[n++] = cfg_of("batchnorm");
    c[n++] = cfg_of("relu");
  }
  c[n++] = cfg_of("global_avgpool");
  c[n++] = cfg_dense(3, "none");
  return n;
}

static int build(nn_model *m, const nn_shape *in, const nn_layer_cfg *c, int n) {
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, in, c, n, MAXB, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  return rc;
}

static void fill(float *v, size_t cnt, uint64_t key) {
  nn_rng r;
  nn_rng_init(&r, key, 0, 0, 0, 0);
  for (size_t i = 0; i < cnt; i++) v[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

/* One forward and backward pass over x, g [MAXB, ...]: the output, grads,
 * dx and buffers into the four arrays. */
static void pass(nn_model *m, const float *x, const float *g, int training, float *out,
                 float *grads, float *dx, float *bufs) {
  nn_run_ctx ctx = {.training = training, .seed = 7};
  size_t no = MAXB * nn_shape_count(&m->out);
  nn_model_zero_grad(m);
  const float *y = nn_model_forward(m, x, MAXB, &ctx);
  memcpy(out, y, no * sizeof *out);
  nn_model_backward_dx(m, x, g, dx, MAXB, &ctx, NULL, NULL);
  memcpy(grads, m->grads, m->ntrainable * sizeof *grads);
  memcpy(bufs, m->buffers, m->nbuffers * sizeof *bufs);
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

/* The model of cfgs with fusion on (expecting `nfused` ReLUs fused) against
 * the same model with it off, in training and evaluation. */
static void compare_fused(const nn_shape *in, const nn_layer_cfg *c, int nc, int nfused) {
  nn_model m;
  unsetenv("NN_FUSE");
  ASSERT_OK(build(&m, in, c, nc));
  ASSERT_EQ_INT(m.nfused, nfused);
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
  double worst = 0;
  for (int training = 1; training >= 0; training--) {
    nn_model_fuse(&m, 1);
    memcpy(m.buffers, bsave, m.nbuffers * sizeof *bsave);
    pass(&m, x, g, training, out0, gr0, dx0, b0);
    ASSERT_EQ_INT(nn_model_fuse(&m, 0), 0);
    memcpy(m.buffers, bsave, m.nbuffers * sizeof *bsave);
    pass(&m, x, g, training, out1, gr1, dx1, b1);
    double d[4] = {rel_diff(out0, out1, no), rel_diff(gr0, gr1, m.ntrainable),
                   rel_diff(dx0, dx1, nx), rel_diff(b0, b1, m.nbuffers)};
    fprintf(stderr, "    %s: fused - unfused: out %.2e grads %.2e dx %.2e buffers %.2e\n",
            training ? "training" : "evaluation", d[0], d[1], d[2], d[3]);
    for (int k = 0; k < 4; k++) {
      if (d[k] > worst) worst = d[k];
      ASSERT_TRUE(d[k] <= 1e-6);
    }
    /* the gradients compared are not trivially zero */
    double gmax = 0;
    for (size_t i = 0; i < m.ntrainable; i++) gmax = fmax(gmax, fabs(gr1[i]));
    ASSERT_TRUE(gmax > 1e-3);
  }
  free(mem);
  nn_model_free(&m);
}

static void test_cnn_fused_matches_unfused(void) {
  nn_layer_cfg c[8];
  int n = cnn(c);
  nn_shape in = {3, {2, 13, 11}};
  compare_fused(&in, c, n, 2); /* both conv ReLUs, not the dense one */
}

static void test_resnet_fused_matches_unfused(void) {
  nn_layer_cfg c[24];
  int n = resnet(c);
  nn_shape in = {3, {2, 9, 7}};
  compare_fused(&in, c, n, 5); /* stem bn, two block bns, two adds */
}

/* A batchnorm read by its ReLU and by another layer, a ReLU with an activity
 * penalty, a ReLU as the last layer: none fuses. */
static void test_not_fused(void) {
  unsetenv("NN_FUSE");
  nn_shape in = {3, {2, 6, 6}};
  nn_layer_cfg c[6];
  c[0] = conv(3, 3, 1, "same", 0, "");
  c[1] = cfg_of("batchnorm");
  snprintf(c[1].name, sizeof c[1].name, "bn");
  c[2] = cfg_of("relu");
  c[3] = cfg_of("add");
  snprintf(c[3].inputs[0], sizeof c[3].inputs[0], "relu2");
  snprintf(c[3].inputs[1], sizeof c[3].inputs[1], "bn");
  c[3].ninputs = 2;
  c[4] = cfg_of("relu");
  c[4].activity_l2 = 0.01;
  c[5] = cfg_of("relu");
  nn_model m;
  ASSERT_OK(build(&m, &in, c, 6));
  ASSERT_EQ_INT(m.nfused, 0);
  nn_model_free(&m);
  /* without the penalty the add's ReLU fuses; the last ReLU still does not */
  c[4].activity_l2 = 0;
  ASSERT_OK(build(&m, &in, c, 6));
  ASSERT_EQ_INT(m.nfused, 1);
  ASSERT_EQ_INT(m.layers[3].relu_out, 1);
  nn_model_free(&m);
  compare_fused(&in, c, 6, 1);
}

static void test_nn_fuse_env(void) {
  nn_layer_cfg c[8];
  int n = cnn(c);
  nn_shape in = {3, {2, 13, 11}};
  nn_model m;
  setenv("NN_FUSE", "0", 1);
  ASSERT_OK(build(&m, &in, c, n));
  ASSERT_EQ_INT(m.nfused, 0);
  nn_model_free(&m);
  setenv("NN_FUSE", "1", 1);
  ASSERT_OK(build(&m, &in, c, n));
  ASSERT_EQ_INT(m.nfused, 2);
  nn_model_free(&m);
  setenv("NN_FUSE", "yes", 1);
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_model_build(&m, &in, c, n, MAXB, &e), NN_EUSAGE);
  ASSERT_TRUE(strstr(e.msg, "NN_FUSE='yes'") != NULL);
  unsetenv("NN_FUSE");
}

/* Small fused models against finite differences (nn_gradcheck builds with
 * the fusion on): relu -> maxpool (the ReLU moved after the pool) on the
 * model input, its kink kept away from the inputs; conv -> batchnorm ->
 * relu; a residual block [batchnorm] + x -> relu. The batchnorm models run
 * at a step of 3e-3 with a tolerance of 2e-2: float noise on gradients near
 * the floor reaches 1.7e-2 there, while a difference that crosses a ReLU's
 * kink is off by ~1 (seeds chosen so none does; the unfused models cross
 * the same kinks at the same seeds). Whole deep piecewise-linear nets cross
 * one somewhere at any step above float noise, fused or not: those are
 * compared with the unfused nets above. */
static void test_fused_gradcheck(void) {
  unsetenv("NN_FUSE");
  nn_layer_cfg c[8];
  nn_shape in = {3, {2, 7, 5}};
  nn_gradcheck_opts o = {.seed = 8, .n = 3, .training = 1, .nkinks = 1, .margin = 0.05, .eps = 1e-3};
  c[0] = cfg_of("relu");
  c[1] = pool(2, 2, "valid");
  c[2] = pool(3, 2, "same");
  for (int k = 1; k <= 2; k++) {
    nn_layer_cfg d[2] = {c[0], c[k]};
    nn_model m;
    ASSERT_OK(build(&m, &in, d, 2)); /* the ReLU does fuse */
    ASSERT_EQ_INT(m.nfused, 1);
    nn_model_free(&m);
    CHECK_GRADS_TOL(&in, d, 2, &o, 5e-3);
  }
  c[0] = conv(3, 3, 1, "same", 0, "");
  c[1] = cfg_of("batchnorm");
  c[2] = cfg_of("relu");
  c[3] = cfg_of("flatten");
  o.nkinks = 0;
  o.eps = 3e-3;
  o.seed = 9;
  for (int training = 1; training >= 0; training--) {
    o.training = training;
    CHECK_GRADS_TOL(&in, c, 4, &o, 2e-2);
  }
  c[0] = cfg_block(1, 0);
  c[1] = cfg_of("batchnorm");
  c[2] = cfg_of("relu");
  c[3] = cfg_of("flatten");
  o.training = 1;
  o.seed = 98;
  CHECK_GRADS_TOL(&in, c, 4, &o, 2e-2);
}

TEST_MAIN(TEST(test_cnn_fused_matches_unfused), TEST(test_resnet_fused_matches_unfused),
          TEST(test_not_fused), TEST(test_nn_fuse_env), TEST(test_fused_gradcheck))
