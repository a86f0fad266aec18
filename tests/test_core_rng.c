/* test_core_rng.c: Philox4x32-10 known answers and the statistics and
 * determinism of the draws built on it (core/rng.h). */
#include "core/rng.h"

#include <stdint.h>

#include "test.h"

/* Known-answer vectors from Random123's kat_vectors (philox4x32 10 rounds). */
static void test_philox_kat(void) {
  static const struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
    uint32_t out[4];
    nn_philox4x32(kat[i].ctr, kat[i].key, out);
    for (int w = 0; w < 4; w++) ASSERT_EQ_INT(out[w], kat[i].out[w]);
  }
}

/* The stream is the blocks at ctr = (0, a, b, c), (1, a, b, c), ... in order,
 * under the documented key: low seed word, high seed word ^ purpose*0x9E3779B9. */
static void test_stream_layout(void) {
  uint64_t seed = 0x0123456789abcdefull;
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_DROPOUT, 7, 8, 9);
  uint32_t key[2] = {0x89abcdefu, 0x01234567u ^ (uint32_t)(NN_RNG_DROPOUT * 0x9E3779B9u)};
  for (uint32_t blk = 0; blk < 3; blk++) {
    uint32_t ctr[4] = {blk, 7, 8, 9}, out[4];
    nn_philox4x32(ctr, key, out);
    for (int w = 0; w < 4; w++) ASSERT_EQ_INT(nn_rng_u32(&r), out[w]);
  }
}

static void test_uniform_moments(void) {
  nn_rng r;
  nn_rng_init(&r, 42, NN_RNG_TEST, 0, 0, 0);
  const int n = 1000000;
  double sum = 0, sum2 = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; i++) {
    float u = nn_rng_uniform(&r);
    if (u < lo) lo = u;
    if (u > hi) hi = u;
    sum += u;
    sum2 += (double)u * u;
  }
  double mean = sum / n, var = sum2 / n - mean * mean;
  ASSERT_TRUE(lo >= 0.0f);
  ASSERT_TRUE(hi < 1.0f);
  /* standard error of the mean: sqrt(1/12/n) = 2.9e-4; allow ~5 sigma */
  ASSERT_NEAR(mean, 0.5, 1.5e-3);
  /* variance of the sample variance of U(0,1): (1/80 - 1/144)/n -> sd 7.5e-5 */
  ASSERT_NEAR(var, 1.0 / 12.0, 4e-4);
}

static void test_normal_moments(void) {
  nn_rng r;
  nn_rng_init(&r, 7, NN_RNG_TEST, 1, 0, 0);
  const int n = 200000;
  double sum = 0, sum2 = 0, sum4 = 0;
  for (int i = 0; i < n; i++) {
    double z = nn_rng_normal(&r);
    ASSERT_TRUE(isfinite(z));
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
  }
  double mean = sum / n, var = sum2 / n - mean * mean;
  ASSERT_NEAR(mean, 0.0, 0.012);    /* sd 2.2e-3 */
  ASSERT_NEAR(var, 1.0, 0.02);      /* sd sqrt(2/n) = 3.2e-3 */
  ASSERT_NEAR(sum4 / n, 3.0, 0.1);  /* kurtosis of a normal; sd sqrt(96/n) = 0.022 */
}

/* Pearson chi-square of below(n) over n bins against uniform. */
static void test_below_chisquare(void) {
  enum { BINS = 10, DRAWS = 200000 };
  /* n = 10: df = 9, the 99.9% quantile of chi2(9) is 27.9 */
  nn_rng r;
  nn_rng_init(&r, 2024, NN_RNG_TEST, 2, 0, 0);
  long hist[BINS] = {0};
  for (int i = 0; i < DRAWS; i++) {
    uint32_t x = nn_rng_below(&r, BINS);
    ASSERT_TRUE(x < BINS);
    hist[x]++;
  }
  double expect = (double)DRAWS / BINS, chi2 = 0;
  for (int b = 0; b < BINS; b++) chi2 += (hist[b] - expect) * (hist[b] - expect) / expect;
  if (!(chi2 < 27.9)) fprintf(stderr, "chi2 = %g\n", chi2);
  ASSERT_TRUE(chi2 < 27.9);

  /* A range where naive modulo would be visibly biased: n = 3 * 2^30. With
   * x % n, values below 2^30 would come up twice as often as the others
   * (probability 1/2 for the first third instead of 1/3). */
  uint32_t big = 3u << 30;
  long low = 0;
  const int m = 60000;
  for (int i = 0; i < m; i++) {
    uint32_t x = nn_rng_below(&r, big);
    ASSERT_TRUE(x < big);
    if (x < (1u << 30)) low++;
  }
  /* expected m/3 = 20000, sd sqrt(m * 1/3 * 2/3) = 115 */
  ASSERT_NEAR((double)low, m / 3.0, 600);

  ASSERT_EQ_INT(nn_rng_below(&r, 1), 0);
}

static int is_permutation(const int64_t *p, int64_t n) {
  char *seen = calloc((size_t)n, 1);
  int ok = seen != NULL;
  for (int64_t i = 0; ok && i < n; i++) {
    if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
    else seen[p[i]] = 1;
  }
  free(seen);
  return ok;
}

static void test_permutation(void) {
  enum { N = 1000 };
  int64_t a[N], b[N], c[N], d[N];
  nn_rng_permutation(5, 3, a, N);
  ASSERT_TRUE(is_permutation(a, N));
  /* same (seed, epoch, n) -> same permutation, whatever was drawn before */
  nn_rng other;
  nn_rng_init(&other, 5, NN_RNG_SHUFFLE, 3, 0, 0);
  for (int i = 0; i < 100; i++) (void)nn_rng_u32(&other);
  nn_rng_permutation(5, 3, b, N);
  ASSERT_TRUE(memcmp(a, b, sizeof a) == 0);
  /* different epoch or seed -> different permutation */
  nn_rng_permutation(5, 4, c, N);
  ASSERT_TRUE(is_permutation(c, N));
  ASSERT_TRUE(memcmp(a, c, sizeof a) != 0);
  nn_rng_permutation(6, 3, d, N);
  ASSERT_TRUE(memcmp(a, d, sizeof a) != 0);
  /* not the identity */
  int fixed = 0;
  for (int i = 0; i < N; i++) fixed += a[i] == i;
  ASSERT_TRUE(fixed < 10); /* expected 1 */

  /* tiny cases */
  int64_t one[1] = {99};
  nn_rng_permutation(5, 3, one, 1);
  ASSERT_EQ_INT(one[0], 0);
  nn_rng_permutation(5, 3, one, 0); /* n = 0 writes nothing */
  ASSERT_EQ_INT(one[0], 0);
}

/* Each of the 6 orders of 3 items is equally likely over many epochs. */
static void test_permutation_uniform(void) {
  enum { EPOCHS = 6000 };
  long count[9] = {0}; /* first element and second element -> index 3*p0+p1 */
  for (uint32_t e = 0; e < EPOCHS; e++) {
    int64_t p[3];
    nn_rng_permutation(11, e, p, 3);
    count[3 * p[0] + p[1]]++;
  }
  double expect = EPOCHS / 6.0, chi2 = 0;
  int orders = 0;
  for (int i = 0; i < 9; i++) {
    if (i / 3 == i % 3) {
      ASSERT_EQ_INT(count[i], 0);
      continue;
    }
    orders++;
    chi2 += (count[i] - expect) * (count[i] - expect) / expect;
  }
  ASSERT_EQ_INT(orders, 6);
  ASSERT_TRUE(chi2 < 20.5); /* chi2(5) 99.9% quantile */
}

static void test_purposes_differ(void) {
  enum { NP = 9 };
  uint32_t first[NP][8];
  static const uint32_t purposes[NP] = {NN_RNG_INIT,    NN_RNG_SHUFFLE, NN_RNG_DROPOUT,
                                        NN_RNG_AUGMENT, NN_RNG_SPLIT,   NN_RNG_REPLICA,
                                        NN_RNG_GENERATE, NN_RNG_VECTORS, NN_RNG_TEST};
  for (int p = 0; p < NP; p++) {
    nn_rng r;
    nn_rng_init(&r, 1234, purposes[p], 0, 0, 0);
    for (int i = 0; i < 8; i++) first[p][i] = nn_rng_u32(&r);
  }
  for (int p = 0; p < NP; p++)
    for (int q = p + 1; q < NP; q++)
      ASSERT_TRUE(memcmp(first[p], first[q], sizeof first[p]) != 0);

  /* coordinates a, b, c each select a different stream; seeds differ too */
  nn_rng base, r;
  nn_rng_init(&base, 1234, NN_RNG_DROPOUT, 1, 2, 3);
  uint32_t x0 = nn_rng_u32(&base);
  nn_rng_init(&r, 1234, NN_RNG_DROPOUT, 1, 2, 4);
  ASSERT_NE_INT(nn_rng_u32(&r), x0);
  nn_rng_init(&r, 1234, NN_RNG_DROPOUT, 1, 3, 3);
  ASSERT_NE_INT(nn_rng_u32(&r), x0);
  nn_rng_init(&r, 1234, NN_RNG_DROPOUT, 0, 2, 3);
  ASSERT_NE_INT(nn_rng_u32(&r), x0);
  nn_rng_init(&r, 1235, NN_RNG_DROPOUT, 1, 2, 3);
  ASSERT_NE_INT(nn_rng_u32(&r), x0);
  nn_rng_init(&r, 1234ull | (1ull << 40), NN_RNG_DROPOUT, 1, 2, 3);
  ASSERT_NE_INT(nn_rng_u32(&r), x0);
  /* and re-initializing reproduces the stream */
  nn_rng_init(&r, 1234, NN_RNG_DROPOUT, 1, 2, 3);
  ASSERT_EQ_INT(nn_rng_u32(&r), x0);
}

TEST_MAIN(TEST(test_philox_kat), TEST(test_stream_layout), TEST(test_uniform_moments),
          TEST(test_normal_moments), TEST(test_below_chisquare), TEST(test_permutation),
          TEST(test_permutation_uniform), TEST(test_purposes_differ))
