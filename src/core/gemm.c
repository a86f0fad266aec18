/* gemm.c: see gemm.h. Column blocks of 64 (four vectors), then of 16, then
 * the last n % 16 columns with scalar code; row blocks of 4, then the last
 * m % 4 rows one block of fewer rows. Each block of C is loaded once, all of
 * k accumulated in registers, stored once. */
#include "core/gemm.h"

#include <stddef.h>

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4))); /* unaligned access */

#define LD(p) (*(const v16u *)(const void *)(p))
#define ST(p, v) (*(v16u *)(void *)(p) = (v))

/* C [mr, 16 nv] += A [mr, k] B [k, 16 nv]; mr <= 4, nv <= 4, both constants
 * at every call site (always inlined, so the loops over them unroll and the
 * accumulators stay in registers). */
static inline __attribute__((always_inline)) void block(int mr, int nv, int k, const float *a,
                                                        int lda, const float *b, int ldb,
                                                        float *c, int ldc) {
  v16 acc[4][4];
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) acc[r][v] = LD(c + (size_t)r * ldc + 16 * v);
  for (int p = 0; p < k; p++) {
    const float *bp = b + (size_t)p * ldb;
    v16 bv[4];
    for (int v = 0; v < nv; v++) bv[v] = LD(bp + 16 * v);
    for (int r = 0; r < mr; r++) {
      float av = a[(size_t)r * lda + p];
      for (int v = 0; v < nv; v++) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) ST(c + (size_t)r * ldc + 16 * v, acc[r][v]);
}

/* Rows [0, m) of one column block of nv vectors. */
#define ROWS(nv)                                                                        \
  do {                                                                                  \
    int i = 0;                                                                          \
    for (; i + 4 <= m; i += 4)                                                          \
      block(4, nv, k, a + (size_t)i * lda, lda, b + j, ldb, c + (size_t)i * ldc + j, ldc); \
    const float *ai = a + (size_t)i * lda;                                              \
    float *ci = c + (size_t)i * ldc + j;                                                \
    switch (m - i) {                                                                    \
      case 3: block(3, nv, k, ai, lda, b + j, ldb, ci, ldc); break;                     \
      case 2: block(2, nv, k, ai, lda, b + j, ldb, ci, ldc); break;                     \
      case 1: block(1, nv, k, ai, lda, b + j, ldb, ci, ldc); break;                     \
      default: break;                                                                   \
    }                                                                                   \
  } while (0)

void nn_gemm_small(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                   float *c, int ldc) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  int j = 0;
  for (; j + 64 <= n; j += 64) ROWS(4);
  for (; j + 16 <= n; j += 16) ROWS(1);
  if (j == n) return;
  for (int i = 0; i < m; i++) /* the last n % 16 columns */
    for (int p = 0; p < k; p++) {
      float av = a[(size_t)i * lda + p];
      const float *bp = b + (size_t)p * ldb;
      float *ci = c + (size_t)i * ldc;
      for (int q = j; q < n; q++) ci[q] += av * bp[q];
    }
}
