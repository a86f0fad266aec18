/* gemm.h: C += A B for few rows of A, the product a recurrent layer runs at
 * every timestep ([m, H] states times a [H, G*H] weight, m = the samples
 * still running: 64 down to 1 in a batch of words).
 *
 * OpenBLAS packs B into its panel layout at every call, whatever m is: for
 * one step of a GRU of 128 units that is 196 kB copied to multiply a few
 * rows, and its products of 1 to 64 rows ran at 9-114 GFLOP/s on the
 * machine where this was measured (AMD EPYC, AVX-512). This kernel reads B
 * in place, row by row, keeps a 4-row x 64-column block of C in sixteen
 * 16-float vector registers and streams k: 111-146 GFLOP/s for m >= 8 at
 * the same shapes (1.1-2.0x OpenBLAS), 2-4.8x OpenBLAS below m = 8
 * (tests/test_core_gemm.c checks it against a double-precision reference;
 * figures in docs/layers.md, rnn).
 * Written with GCC's vector extensions: without AVX-512 the compiler splits
 * the 16-float vectors into what the target has. */
#ifndef NN_CORE_GEMM_H
#define NN_CORE_GEMM_H

/* C [m, n] += A [m, k] B [k, n]; all row-major with leading dimensions
 * lda, ldb, ldc (in floats). Any m, n, k >= 0; no alignment needed. */
void nn_gemm_small(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                   float *c, int ldc);

#endif
