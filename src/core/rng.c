/* rng.c: counter-based random numbers, Philox4x32-10 (see rng.h).
 *
 * Philox4x32-10 is the counter-based generator of Salmon et al., "Parallel
 * random numbers: as easy as 1, 2, 3" (SC'11): ten rounds of a 32x32->64-bit
 * multiply/xor network over a 128-bit counter under a 64-bit key. It passes
 * BigCrush, and any block can be computed without computing the ones before
 * it, which is what lets every draw in nntrain be a pure function of its
 * coordinates.
 *
 * How a stream is keyed (nn_rng_init):
 *   key[0] = low 32 bits of seed
 *   key[1] = high 32 bits of seed  XOR  (purpose * 0x9E3779B9)
 *   ctr    = { block index, a, b, c }
 * The multiplier is odd, so purpose -> purpose * 0x9E3779B9 is a bijection
 * on 32-bit words: for one seed, different purposes always get different
 * keys, and the usual seeds (below 2^32) can never collide with each other
 * whatever the purpose. Within a key, (a, b, c) select disjoint streams and
 * ctr[0] counts 128-bit blocks inside a stream (2^32 blocks = 2^34 words).
 *
 * What this file is not: a general-purpose library (no skip-ahead API, no
 * doubles with 53 bits); just what training needs. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */
#define PURPOSE_MIX 0x9E3779B9u

/* One Philox round: two 32x32->64 products, then a fixed permutation with
 * the key xored into the high halves. */
static inline void philox_round(uint32_t x[4], const uint32_t k[2]) {
  uint64_t p0 = (uint64_t)PHILOX_M0 * x[0];
  uint64_t p1 = (uint64_t)PHILOX_M1 * x[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  uint32_t y0 = hi1 ^ x[1] ^ k[0];
  uint32_t y2 = hi0 ^ x[3] ^ k[1];
  x[0] = y0;
  x[1] = lo1;
  x[2] = y2;
  x[3] = lo0;
}

void nn_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  uint32_t k[2] = {key[0], key[1]};
  for (int round = 0; round < 10; round++) {
    if (round > 0) { /* the key is bumped by the Weyl constants between rounds */
      k[0] += PHILOX_W0;
      k[1] += PHILOX_W1;
    }
    philox_round(x, k);
  }
  out[0] = x[0];
  out[1] = x[1];
  out[2] = x[2];
  out[3] = x[3];
}

void nn_rng_init(nn_rng *r, uint64_t seed, uint32_t purpose, uint32_t a,
                 uint32_t b, uint32_t c) {
  r->key[0] = (uint32_t)seed;
  r->key[1] = (uint32_t)(seed >> 32) ^ (purpose * PURPOSE_MIX);
  r->ctr[0] = 0;
  r->ctr[1] = a;
  r->ctr[2] = b;
  r->ctr[3] = c;
  r->buf[0] = r->buf[1] = r->buf[2] = r->buf[3] = 0;
  r->left = 0;
}

uint32_t nn_rng_u32(nn_rng *r) {
  if (r->left <= 0) {
    nn_philox4x32(r->ctr, r->key, r->buf);
    r->ctr[0]++;
    r->left = 4;
  }
  return r->buf[4 - r->left--];
}

float nn_rng_uniform(nn_rng *r) {
  /* top 24 bits -> k * 2^-24, exactly representable, in [0, 1) */
  return (float)(nn_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Lemire's multiply-shift with rejection ("Fast random integer generation in
 * an interval", 2019): x * n / 2^32, rejecting the low products that would
 * make some results one draw more likely than others. */
uint32_t nn_rng_below(nn_rng *r, uint32_t n) {
  if (n <= 1) return 0;
  uint64_t m = (uint64_t)nn_rng_u32(r) * n;
  uint32_t lo = (uint32_t)m;
  if (lo < n) {
    uint32_t threshold = (uint32_t)(-n) % n; /* 2^32 mod n */
    while (lo < threshold) {
      m = (uint64_t)nn_rng_u32(r) * n;
      lo = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

/* Uniform in [0, n) for n beyond 32 bits: rejection on a bit mask (at most
 * half the draws are rejected on average). n > 0. */
static uint64_t rng_below64(nn_rng *r, uint64_t n) {
  if (n <= UINT32_MAX) return nn_rng_below(r, (uint32_t)n);
  uint64_t mask = n - 1;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  for (;;) {
    uint64_t hi = nn_rng_u32(r);
    uint64_t x = ((hi << 32) | nn_rng_u32(r)) & mask;
    if (x < n) return x;
  }
}

/* Box-Muller from two uniforms; the second normal of the pair is discarded so
 * the stream keeps no state beyond its position. u1 uses all 32 bits and is
 * in (0, 1] so that log(u1) is finite; the largest |z| is
 * sqrt(-2 ln 2^-32) ~ 6.66. */
float nn_rng_normal(nn_rng *r) {
  double u1 = ((double)nn_rng_u32(r) + 1.0) * (1.0 / 4294967296.0);
  double u2 = (double)(nn_rng_u32(r) >> 8) * (1.0 / 16777216.0);
  double radius = sqrt(-2.0 * log(u1));
  return (float)(radius * cos(6.283185307179586 * u2));
}

/* Fisher-Yates (Durstenfeld) from the back: position i swaps with a uniform
 * j in [0, i]. All draws come from the one stream (seed, NN_RNG_SHUFFLE,
 * epoch, 0, 0), consumed in a fixed order, so the result depends only on
 * (seed, epoch, n). perm: [n], caller-owned. */
void nn_rng_permutation(uint64_t seed, uint32_t epoch, int64_t *perm, int64_t n) {
  if (n <= 0) return;
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_SHUFFLE, epoch, 0, 0);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)rng_below64(&r, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

uint64_t nn_rng_replica_seed(uint64_t seed, uint32_t k) {
  if (k == 0) return seed;
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_REPLICA, k, 0, 0);
  uint64_t hi = nn_rng_u32(&r);
  return hi << 32 | nn_rng_u32(&r);
}
