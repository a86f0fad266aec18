/* test_wire.c: the 16-bit wire formats of the compressed all-reduce
 * (worker/allreduce.c, nn_wire_round). fp16 is converted in integer
 * arithmetic (clang 14 has no _Float16 on x86-64); here it is checked bit for
 * bit against gcc's _Float16 conversion (round to nearest even) with the
 * documented saturation at +-65504: on every half value, on every midpoint
 * between neighbouring halves (ties to even) and one float ulp either side
 * of it, across the subnormal range, and on 2^24 random float bit patterns.
 * NaN stays NaN, Inf stays Inf. bf16: round to nearest even on its own bits. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "worker/allreduce.h"
#include "worker/hier.h"

static float ref_fp16(float x) {
  if (!isinf(x) && !isnan(x)) x = x > 65504.0f ? 65504.0f : x < -65504.0f ? -65504.0f : x;
  return (float)(_Float16)x;
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float of_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static long mismatches;

static void check(float x) {
  float got = nn_wire_round(NN_WIRE_FP16, x), want = ref_fp16(x);
  if (isnan(want) ? !isnan(got) : bits(got) != bits(want)) {
    if (mismatches++ < 5)
      printf("  fp16(%a): got %a, want %a\n", (double)x, (double)got, (double)want);
  }
}

static void test_fp16_every_half_and_midpoint(void) {
  mismatches = 0;
  for (uint32_t h = 0; h < 0x7c00u; h++) { /* every finite non-negative half */
    _Float16 a, b;
    uint16_t ha = (uint16_t)h, hb = (uint16_t)(h + 1);
    memcpy(&a, &ha, 2);
    memcpy(&b, &hb, 2);
    float fa = (float)a, fb = (float)b, mid = (fa + fb) / 2; /* exact in float */
    for (int s = 0; s < 2; s++) {
      float sg = s ? -1.0f : 1.0f;
      check(sg * fa);
      check(sg * mid);
      check(sg * nextafterf(mid, 0.0f));
      check(sg * nextafterf(mid, INFINITY));
    }
  }
  ASSERT_EQ_INT((int)mismatches, 0);
}

static void test_fp16_random_and_special(void) {
  mismatches = 0;
  uint32_t s = 12345u;
  for (long i = 0; i < (1L << 24); i++) {
    s = s * 1664525u + 1013904223u;
    check(of_bits(s));
  }
  const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65519.0f, 65520.0f, 1e30f,
                           -1e30f, 0x1p-24f, 0x1p-25f, 0x1.000002p-25f, 0x1p-26f, 0x1p-14f,
                           0x1.ffcp-15f, 1e-45f, -1e-45f};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) check(special[i]);
  ASSERT_EQ_INT((int)mismatches, 0);
  ASSERT_TRUE(isnan(nn_wire_round(NN_WIRE_FP16, NAN)));
  ASSERT_TRUE(nn_wire_round(NN_WIRE_FP16, 1e9f) == 65504.0f);      /* saturates */
  ASSERT_TRUE(nn_wire_round(NN_WIRE_FP16, INFINITY) == INFINITY);  /* Inf passes */
}

static void test_bf16(void) {
  ASSERT_TRUE(nn_wire_round(NN_WIRE_BF16, 1.0f) == 1.0f);
  /* 1 + 2^-8 is halfway between bf16's 1 and 1 + 2^-7: ties to even, 1 */
  ASSERT_TRUE(nn_wire_round(NN_WIRE_BF16, 1.0f + 0x1p-8f) == 1.0f);
  ASSERT_TRUE(nn_wire_round(NN_WIRE_BF16, 1.0f + 0x1.8p-8f) == 1.0f + 0x1p-7f);
  ASSERT_TRUE(isnan(nn_wire_round(NN_WIRE_BF16, NAN)));
  ASSERT_TRUE(nn_wire_round(NN_WIRE_NONE, 0.1f) == 0.1f);
}

TEST_MAIN(TEST(test_fp16_every_half_and_midpoint), TEST(test_fp16_random_and_special),
          TEST(test_bf16))
