/* test_core_gemm.c: nn_gemm_small against a double-precision reference over
 * every row / column tail the kernel has (m % 4, n % 64, n % 16), leading
 * dimensions wider than the matrices, and C's padding left alone. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/gemm.h"
#include "core/rng.h"
#include "test.h"

static void fill(float *v, size_t n, uint64_t seed) {
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_INIT, 0, 0, 0);
  for (size_t i = 0; i < n; i++) v[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

static void one_case(int m, int n, int k, double *worst) {
  int lda = k + 3, ldb = n + 5, ldc = n + 2;
  size_t na = (size_t)(m ? m : 1) * lda, nb = (size_t)(k ? k : 1) * ldb,
         nc = (size_t)(m ? m : 1) * ldc;
  float *a = malloc(sizeof *a * na), *b = malloc(sizeof *b * nb), *c = malloc(sizeof *c * nc),
        *c0 = malloc(sizeof *c0 * nc);
  ASSERT_TRUE(a && b && c && c0);
  fill(a, na, 1 + (uint64_t)m), fill(b, nb, 2 + (uint64_t)n), fill(c, nc, 3 + (uint64_t)k);
  for (size_t i = 0; i < nc; i++) c0[i] = c[i];
  nn_gemm_small(m, n, k, a, lda, b, ldb, c, ldc);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < ldc; j++) {
      size_t e = (size_t)i * ldc + j;
      if (j >= n) { /* the padding of C's rows is not touched */
        ASSERT_TRUE(c[e] == c0[e]);
        continue;
      }
      double want = c0[e], mag = fabs(c0[e]);
      for (int p = 0; p < k; p++) {
        double t = (double)a[(size_t)i * lda + p] * b[(size_t)p * ldb + j];
        want += t;
        mag += fabs(t);
      }
      double err = fabs(c[e] - want) / (mag + 1e-30);
      if (err > *worst) *worst = err;
      if (!(err < 1e-6)) fprintf(stderr, "  m %d n %d k %d: C[%d][%d] %g, want %g\n", m, n, k, i, j, c[e], want);
      ASSERT_TRUE(err < 1e-6);
    }
  free(a), free(b), free(c), free(c0);
}

static void test_gemm_small_shapes(void) {
  static const int ms[] = {1, 2, 3, 4, 5, 7, 8, 13, 64};
  static const int ns[] = {1, 15, 16, 17, 48, 63, 64, 65, 130, 384};
  static const int ks[] = {1, 3, 128, 257};
  double worst = 0;
  int cases = 0;
  for (size_t x = 0; x < sizeof ms / sizeof *ms; x++)
    for (size_t y = 0; y < sizeof ns / sizeof *ns; y++)
      for (size_t z = 0; z < sizeof ks / sizeof *ks; z++) {
        one_case(ms[x], ns[y], ks[z], &worst);
        if (nn__test_failed) return;
        cases++;
      }
  fprintf(stderr, "  %d shapes: worst error %.2e relative to sum |a b|\n", cases, worst);
}

static void test_gemm_small_empty(void) {
  float c[4] = {1, 2, 3, 4}, a[4] = {5, 5, 5, 5}, b[4] = {7, 7, 7, 7};
  nn_gemm_small(0, 2, 2, a, 2, b, 2, c, 2);
  nn_gemm_small(2, 0, 2, a, 2, b, 2, c, 2);
  nn_gemm_small(2, 2, 0, a, 2, b, 2, c, 2); /* k = 0: C += nothing */
  ASSERT_TRUE(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
}

TEST_MAIN(TEST(test_gemm_small_shapes), TEST(test_gemm_small_empty))
