/* test_core_rnn_torch.c: rnn, lstm and gru against PyTorch.
 *
 * For each case this writes a layer's configuration, its parameters (under
 * their PyTorch names), an input batch with lengths (some samples shorter
 * than T), an upstream gradient g, and nntrain's output y, input gradient
 * dx, parameter gradients of the loss sum(g * y) and, for one-directional
 * layers with carry = true, the carried state (h_n, c_n), to a temporary
 * directory; tests/rnn_torch_parity.py loads the same weights into
 * torch.nn.RNN / LSTM / GRU (batch_first, load_state_dict), runs the packed
 * sequences and compares everything to float tolerance. Exits 77 (CTest:
 * skipped) when /usr/bin/python3 cannot import torch. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/model.h"
#include "core/rng.h"
#include "layer_cfg.h"
#include "test.h"

typedef struct torch_case {
  const char *type, *nonlinearity;
  int layers, bidir, seq, bias;
} torch_case;

static const torch_case k_cases[] = {
    {"lstm", NULL, 2, 1, 1, 1},   {"lstm", NULL, 2, 0, 0, 1},   {"lstm", NULL, 1, 0, 1, 0},
    {"lstm", NULL, 1, 1, 0, 1},   {"gru", NULL, 2, 1, 0, 1},    {"gru", NULL, 2, 0, 1, 1},
    {"gru", NULL, 1, 0, 0, 0},    {"gru", NULL, 3, 1, 1, 1},    {"rnn", "tanh", 2, 1, 1, 1},
    {"rnn", "tanh", 2, 0, 0, 1},  {"rnn", "relu", 1, 0, 1, 1},  {"rnn", "relu", 2, 1, 0, 0},
};

enum { N = 4, T = 6, C = 3, H = 5 };
static const int32_t k_lengths[N] = {6, 3, 1, 5};

static void put(FILE *f, const char *name, const float *v, size_t count) {
  fprintf(f, "tensor %s %zu", name, count);
  for (size_t i = 0; i < count; i++) fprintf(f, " %.9g", (double)v[i]);
  fputc('\n', f);
}

/* Run case k and write it to path. 0 or -1. */
static int write_case(const torch_case *k, int idx, const char *path) {
  nn_layer_cfg c = cfg_of(k->type);
  cfg_set(&c, "hidden_size", "%d", H);
  cfg_set(&c, "num_layers", "%d", k->layers);
  cfg_set_bool(&c, "bidirectional", k->bidir);
  cfg_set_bool(&c, "return_sequences", k->seq);
  cfg_set_bool(&c, "use_bias", k->bias);
  cfg_set_bool(&c, "carry", !k->bidir);
  if (k->nonlinearity) cfg_set(&c, "nonlinearity", "\"%s\"", k->nonlinearity);
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  nn_shape in = {2, {T, C}};
  if (nn_model_build(&m, &in, &c, 1, N, &e)) {
    fprintf(stderr, "build: %s\n", e.msg);
    return -1;
  }
  nn_model_init_params(&m, 1000 + (uint64_t)idx);
  size_t ny = (size_t)N * nn_shape_count(&m.out);
  float x[N * T * C], dx[N * T * C], *g = malloc(ny * sizeof *g);
  FILE *f = fopen(path, "w");
  int rc = g && f ? 0 : -1;
  if (rc == 0) {
    nn_rng r;
    nn_rng_init(&r, 31, NN_RNG_TEST, (uint32_t)idx, 0, 0);
    for (size_t i = 0; i < N * T * C; i++) x[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
    for (size_t i = 0; i < ny; i++) g[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
    nn_run_ctx ctx = {.lengths = k_lengths};
    const float *y = nn_model_forward(&m, x, N, &ctx);
    fprintf(f, "config type=%s hidden=%d layers=%d bidir=%d seq=%d bias=%d nonlinearity=%s "
            "n=%d T=%d C=%d\nlengths", k->type, H, k->layers, k->bidir, k->seq, k->bias,
            k->nonlinearity ? k->nonlinearity : "-", N, T, C);
    for (int i = 0; i < N; i++) fprintf(f, " %d", (int)k_lengths[i]);
    fputc('\n', f);
    put(f, "x", x, N * T * C);
    put(f, "y", y, ny);
    put(f, "g", g, ny);
    nn_model_zero_grad(&m);
    nn_model_backward_dx(&m, x, g, dx, N, &ctx, NULL, NULL);
    put(f, "dx", dx, N * T * C);
    for (int t = 0; t < m.ntensors; t++) {
      char name[NN_NAME_MAX + 8];
      snprintf(name, sizeof name, "p.%s", m.tensors[t].name);
      put(f, name, m.params + m.tensors[t].offset, m.tensors[t].count);
      snprintf(name, sizeof name, "grad.%s", m.tensors[t].name);
      put(f, name, m.grads + m.tensors[t].offset, m.tensors[t].count);
    }
    float *carry;
    size_t ncarry;
    nn_model_carry(&m, &carry, &ncarry);
    if (carry) put(f, "carry", carry, ncarry);
  }
  if (f && fclose(f) != 0) rc = -1;
  free(g);
  nn_model_free(&m);
  return rc;
}

static void test_torch_parity(void) {
  if (access("/usr/bin/python3", X_OK) != 0 ||
      system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    SKIP_TEST("/usr/bin/python3 cannot import torch");
  char dir[] = "/tmp/nn_rnn_torch_XXXXXX", src[1024], cmd[8192];
  ASSERT_TRUE(mkdtemp(dir) != NULL);
  const char *env = getenv("NN_SOURCE_DIR");
  if (env) {
    snprintf(src, sizeof src, "%s/tests", env);
  } else {
    char file[1024];
    snprintf(file, sizeof file, "%s", __FILE__);
    snprintf(src, sizeof src, "%s", dirname(file)); /* tests/ of the source tree */
  }
  int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/rnn_torch_parity.py'", src);
  int ncases = (int)(sizeof k_cases / sizeof k_cases[0]), bad = 0;
  for (int i = 0; i < ncases; i++) {
    char path[256];
    snprintf(path, sizeof path, "%s/case%02d.txt", dir, i);
    if (write_case(&k_cases[i], i, path) != 0) bad = 1;
    len += snprintf(cmd + len, sizeof cmd - (size_t)len, " '%s'", path);
  }
  int rc = bad ? -1 : system(cmd);
  if (rc != -1 && WIFEXITED(rc)) rc = WEXITSTATUS(rc);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  if (rc == NN_TEST_SKIP_CODE) SKIP_TEST("the parity script cannot import torch");
  ASSERT_EQ_INT(rc, 0);
}

TEST_MAIN(TEST(test_torch_parity))
