/* fastmath.h: exp, sigmoid and tanh for the element-wise loops of the
 * recurrent cells and the softmax losses, written so that the compiler can
 * vectorize a loop that calls them (libm's expf is a call per element:
 * 6-9% of a recurrent network's step in the profile before these).
 *
 * nn_expf: e^x = 2^n e^r with n = round(x log2 e), r = x - n ln 2 (ln 2 in
 * two parts, so r is exact to float precision), e^r from its Taylor series
 * to r^7 on |r| <= ln2/2 (truncation below 6e-9 relative), 2^n by adding n
 * to the exponent bits. The rounding is the float trick (x + 1.5*2^23) - 1.5*2^23,
 * no call. Inputs are clamped to [-87, 88]: e^-87 ~ 1.6e-38 (the smallest
 * normal float is 1.2e-38) and e^88 ~ 1.65e38 < FLT_MAX, so every result is
 * a normal float; below -87 the result is 1.6e-38 instead of a subnormal or
 * zero, above 88 it is 1.65e38 instead of +inf. NaN in gives NaN out.
 * Measured against libm's expf over [-87, 88] (tests/test_core_fastmath.c):
 * within 2 ulp.
 *
 * nn_sigmoidf(x) = 1 / (1 + e^-x), exact to a few ulp for any x (saturates
 * at 1 and at 1/(1 + 1.65e38) ~ 6e-39 instead of 0).
 * nn_tanhf(x) = sign(x) (1 - e^-2|x|) / (1 + e^-2|x|), and below |x| = 1/8,
 * where 1 - e^-2|x| would lose relative precision, the Taylor series to
 * x^9 (relative error < 1e-10 there). Both branches are computed and one is
 * selected, so the loop stays vectorizable. */
#ifndef NN_CORE_FASTMATH_H
#define NN_CORE_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float nn_expf(float x) {
  const float log2e = 1.44269504088896341f, ln2_hi = 0.693145751953125f,
              ln2_lo = 1.42860682030941723e-06f, shifter = 12582912.0f; /* 1.5 * 2^23 */
  x = x < -87.0f ? -87.0f : x; /* NaN passes both comparisons unchanged */
  x = x > 88.0f ? 88.0f : x;
  float k = (x * log2e + shifter) - shifter; /* round to nearest */
  float r = x - k * ln2_hi;
  r = r - k * ln2_lo;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  k = k == k ? k : 0.0f; /* NaN: p is NaN already; keep the conversion defined */
  int32_t n = (int32_t)k, bits;
  memcpy(&bits, &p, sizeof bits);
  bits += (int32_t)((uint32_t)n << 23);
  float out;
  memcpy(&out, &bits, sizeof out);
  return out;
}

static inline float nn_sigmoidf(float x) { return 1.0f / (1.0f + nn_expf(-x)); }

static inline float nn_tanhf(float x) {
  float a = x < 0 ? -x : x;
  float t = nn_expf(-2.0f * a), big = (1.0f - t) / (1.0f + t);
  float x2 = x * x;
  float small = a * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 +
                                                                     x2 * (62.0f / 2835)))));
  float r = a < 0.125f ? small : big;
  return x < 0 ? -r : r;
}

#endif
