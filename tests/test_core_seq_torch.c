/* test_core_seq_torch.c: the sequence layers and the masked loss against
 * PyTorch. nntrain computes each case (inputs and parameters drawn here),
 * writes inputs, parameters, the upstream gradient and its own outputs and
 * gradients as raw float32 files, and tests/tools/seq_torch_check.py redoes
 * them with torch in float64:
 *   conv1d     causal (dilation 1, 2, 4; stride 1, 2), same (dilation 1, 2;
 *              also against torch's padding='same'), valid with stride:
 *              F.conv1d on the transposed input, left-padded for causal;
 *   embedding  F.embedding with and without padding_idx (torch's padding row
 *              gets no gradient either);
 *   dense      per_timestep: F.linear on [n, T, C];
 *   loss       nn_loss_seq_softmax_ce = F.cross_entropy(reduction='sum',
 *              ignore_index on the padded steps), gradient of the mean per
 *              valid token.
 * Exits 77 (CTest: skipped) when /usr/bin/python3 cannot import torch. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/layer.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/rng.h"
#include "seq_cfg.h"
#include "test.h"
#include "test_tmp.h"

static const char *dir;
static FILE *cases;

/* DIR/<id>_<name>.bin = v[n] as float32 (this machine is little-endian, as
 * the script reads). */
static int put(const char *id, const char *name, const float *v, size_t n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s_%s.bin", dir, id, name);
  FILE *f = fopen(p, "wb");
  if (!f) return -1;
  size_t w = fwrite(v, sizeof *v, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Build c on `in` for n samples, random parameters, forward x and backward
 * dy (random) with dx; write x, the parameters (w, b), dy, y and the
 * gradients (dw, db, dx). */
static int run_case(const char *id, const nn_layer_cfg *c, nn_shape in, int n, const float *x,
                    uint64_t seed) {
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(&m, &in, c, 1, n, &e);
  if (rc) {
    fprintf(stderr, "build %s: %s\n", id, e.msg);
    return rc;
  }
  fill_uniform(m.params, m.nparams, seed, -1.0f, 1.0f);
  size_t nx = (size_t)n * nn_shape_count(&m.in), ny = (size_t)n * nn_shape_count(&m.out);
  float *dy = malloc(ny * sizeof *dy), *dx = malloc(nx * sizeof *dx);
  rc = dy && dx ? 0 : -1;
  if (!rc) {
    fill_uniform(dy, ny, seed + 1, -1.0f, 1.0f);
    nn_run_ctx ctx = {.training = 1};
    nn_model_zero_grad(&m);
    const float *y = nn_model_forward(&m, x, n, &ctx);
    rc |= put(id, "x", x, nx) | put(id, "dy", dy, ny) | put(id, "y", y, ny);
    nn_model_backward_dx(&m, x, dy, dx, n, &ctx, NULL, NULL);
    rc |= put(id, "dx", dx, nx);
    static const char *const pn[] = {"w", "b"}, *const gn[] = {"dw", "db"};
    for (int t = 0; t < m.ntensors && t < 2; t++) {
      const nn_tensor_ref *tr = &m.tensors[t];
      rc |= put(id, pn[t], m.params + tr->offset, tr->count);
      rc |= put(id, gn[t], m.grads + tr->offset, tr->count);
    }
  }
  free(dy);
  free(dx);
  nn_model_free(&m);
  return rc;
}

static int conv1d_case(const char *id, int n, int t, int c, int f, int k, int st, int dil,
                       const char *pad, int bias) {
  nn_layer_cfg cfg = conv1d_cfg(f, k, st, dil, pad, bias);
  size_t nx = (size_t)n * t * c;
  float *x = malloc(nx * sizeof *x);
  if (!x) return -1;
  fill_uniform(x, nx, 200 + (uint64_t)k * 7 + (uint64_t)dil, -1.0f, 1.0f);
  nn_shape in = {2, {t, c}};
  int rc = run_case(id, &cfg, in, n, x, 300 + (uint64_t)st);
  free(x);
  /* the output length the script checks the files against */
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  if (!rc && (rc = nn_model_build(&m, &in, &cfg, 1, 1, &e)) == 0) {
    fprintf(cases, "conv1d %s %d %d %d %d %d %d %d %s %d %d\n", id, n, t, c, f, k, st, dil, pad,
            bias, m.out.dim[0]);
    nn_model_free(&m);
  }
  return rc;
}

static int embedding_case(const char *id, int n, int t, int v, int d, int pad) {
  nn_layer_cfg cfg = emb_cfg(v, d, pad);
  float *x = malloc((size_t)n * t * sizeof *x);
  if (!x) return -1;
  nn_rng r;
  nn_rng_init(&r, 5, NN_RNG_TEST, 10, 0, 0);
  for (int i = 0; i < n * t; i++) x[i] = (float)nn_rng_below(&r, (uint32_t)v);
  if (pad >= 0) x[1] = (float)pad; /* the padding id occurs */
  int rc = run_case(id, &cfg, (nn_shape){1, {t}}, n, x, 400);
  free(x);
  if (!rc) fprintf(cases, "embedding %s %d %d %d %d %d\n", id, n, t, v, d, pad);
  return rc;
}

static int dense_case(const char *id, int n, int t, int c, int u, int bias) {
  nn_layer_cfg cfg = cfg_of("dense");
  cfg_set(&cfg, "units", "%d", u);
  cfg_set_bool(&cfg, "use_bias", bias);
  cfg_set_bool(&cfg, "per_timestep", 1);
  size_t nx = (size_t)n * t * c;
  float *x = malloc(nx * sizeof *x);
  if (!x) return -1;
  fill_uniform(x, nx, 500, -1.0f, 1.0f);
  int rc = run_case(id, &cfg, (nn_shape){2, {t, c}}, n, x, 501);
  free(x);
  if (!rc) fprintf(cases, "dense_ts %s %d %d %d %d %d\n", id, n, t, c, u, bias);
  return rc;
}

static int seq_ce_case(const char *id) {
  enum { N = 4, T = 7, K = 5 };
  static const int32_t len[N] = {7, 3, 1, 5};
  float lg[N * T * K], d[N * T * K], tgf[N * T], lenf[N];
  int32_t tg[N * T];
  fill_uniform(lg, N * T * K, 600, -4.0f, 4.0f);
  nn_rng r;
  nn_rng_init(&r, 6, NN_RNG_TEST, 11, 0, 0);
  for (int i = 0; i < N * T; i++) tgf[i] = (float)(tg[i] = (int32_t)nn_rng_below(&r, K));
  for (int i = 0; i < N; i++) lenf[i] = (float)len[i];
  for (int i = 0; i < N * T * K; i++) d[i] = NAN; /* every element must be written */
  float scale = 1.0f / (float)nn_seq_valid_steps(len, N, T);
  float loss = (float)nn_loss_seq_softmax_ce(lg, tg, len, N, T, K, scale, d);
  int rc = put(id, "logits", lg, N * T * K) | put(id, "targets", tgf, N * T) |
           put(id, "lengths", lenf, N) | put(id, "loss", &loss, 1) |
           put(id, "dlogits", d, N * T * K);
  if (!rc) fprintf(cases, "seq_ce %s %d %d %d\n", id, N, T, K);
  return rc;
}

static void test_against_torch(void) {
  char p[512];
  if (access("/usr/bin/python3", X_OK) != 0) SKIP_TEST("no /usr/bin/python3");
  dir = nn_test_tmpdir("seq_torch");
  snprintf(p, sizeof p, "%s/cases.txt", dir);
  cases = fopen(p, "w");
  ASSERT_TRUE(cases != NULL);
  int rc = 0;
  rc |= conv1d_case("c1", 3, 16, 4, 5, 3, 1, 2, "causal", 1);
  rc |= conv1d_case("c2", 2, 20, 3, 4, 2, 1, 4, "causal", 0);
  rc |= conv1d_case("c3", 3, 15, 2, 3, 3, 2, 1, "causal", 1);
  rc |= conv1d_case("c4", 2, 9, 1, 6, 4, 1, 1, "causal", 1);
  rc |= conv1d_case("c5", 3, 12, 4, 5, 3, 1, 2, "same", 1);
  rc |= conv1d_case("c6", 2, 13, 3, 2, 4, 1, 1, "same", 0);
  rc |= conv1d_case("c7", 2, 13, 3, 2, 3, 2, 1, "same", 1);
  rc |= conv1d_case("c8", 3, 17, 3, 4, 3, 2, 2, "valid", 1);
  rc |= conv1d_case("c9", 3, 10, 6, 4, 1, 1, 1, "valid", 1);
  rc |= conv1d_case("c10", 4, 100, 512, 8, 3, 1, 2, "causal", 1); /* two row chunks */
  rc |= embedding_case("e1", 3, 8, 11, 4, -1);
  rc |= embedding_case("e2", 3, 8, 11, 4, 0);
  rc |= embedding_case("e3", 2, 6, 7, 3, 5);
  rc |= dense_case("d1", 3, 5, 4, 6, 1);
  rc |= dense_case("d2", 2, 7, 3, 2, 0);
  rc |= seq_ce_case("l1");
  ASSERT_TRUE(fclose(cases) == 0);
  ASSERT_EQ_INT(rc, 0);
  const char *src = getenv("NN_SOURCE_DIR");
  char script[1024], cmd[2048];
  if (src)
    snprintf(script, sizeof script, "%s/tests/tools/seq_torch_check.py", src);
  else /* run by hand from anywhere: next to this file */
    snprintf(script, sizeof script, "%.*s/tools/seq_torch_check.py",
             (int)(strrchr(__FILE__, '/') ? strrchr(__FILE__, '/') - __FILE__ : 1),
             strrchr(__FILE__, '/') ? __FILE__ : ".");
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, dir);
  int st = system(cmd);
  ASSERT_TRUE(st != -1 && WIFEXITED(st));
  if (WEXITSTATUS(st) == 2) SKIP_TEST("/usr/bin/python3 cannot import torch");
  ASSERT_EQ_INT(WEXITSTATUS(st), 0);
}

TEST_MAIN(TEST(test_against_torch))
