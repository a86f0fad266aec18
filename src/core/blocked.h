/* blocked.h: conversions between NCHW and the blocked nChw16c layout of
 * activations (core/layer.h, "Blocked activations"). The step loop never
 * needs them between layers that all work blocked; they serve the fallbacks
 * (a layer that must compute in NCHW for one call) and the tests. */
#ifndef NN_CORE_BLOCKED_H
#define NN_CORE_BLOCKED_H

#include <stddef.h>

/* One sample [C, H, W], C % 16 == 0: src NCHW -> dst blocked. */
static inline void nn_blk_from_nchw(const float *restrict src, float *restrict dst, int C, int H,
                                    int W) {
  size_t s = (size_t)H * W;
  for (int cb = 0; cb < C / 16; cb++)
    for (size_t p = 0; p < s; p++)
      for (int q = 0; q < 16; q++) dst[((size_t)cb * s + p) * 16 + q] = src[((size_t)cb * 16 + q) * s + p];
}

/* One sample [C, H, W], C % 16 == 0: src blocked -> dst NCHW. */
static inline void nn_blk_to_nchw(const float *restrict src, float *restrict dst, int C, int H,
                                  int W) {
  size_t s = (size_t)H * W;
  for (int cb = 0; cb < C / 16; cb++)
    for (size_t p = 0; p < s; p++)
      for (int q = 0; q < 16; q++) dst[((size_t)cb * 16 + q) * s + p] = src[((size_t)cb * s + p) * 16 + q];
}

/* n samples, in place, through tmp [C*H*W]: to_blocked 1 converts NCHW ->
 * blocked, 0 blocked -> NCHW. */
static inline void nn_blk_convert(float *x, float *tmp, int n, int C, int H, int W,
                                  int to_blocked) {
  size_t cnt = (size_t)C * H * W;
  for (int i = 0; i < n; i++) {
    float *xi = x + (size_t)i * cnt;
    for (size_t e = 0; e < cnt; e++) tmp[e] = xi[e];
    if (to_blocked)
      nn_blk_from_nchw(tmp, xi, C, H, W);
    else
      nn_blk_to_nchw(tmp, xi, C, H, W);
  }
}

#endif
