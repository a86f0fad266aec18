/* test.h: a minimal test runner for nntrain's C tests.
 *
 * A test file defines functions `static void test_xxx(void)` and ends with
 *   TEST_MAIN(TEST(test_xxx), TEST(test_yyy))
 * Each ASSERT_* prints both sides and the place on failure, marks the test
 * failed and returns from the test function. main exits non-zero if any test
 * failed, and prints "N passed, M failed, K skipped" last. Run one test by
 * name with `./test_foo test_xxx`.
 *
 * A test that needs a tool the machine lacks (e.g. python3 with h5py) calls
 * SKIP_TEST("reason"): it is reported "[skip]", never "[ ok ]", and when no
 * test failed the program exits 77, which CTest (SKIP_RETURN_CODE 77, set in
 * tests/CMakeLists.txt) shows as "Not Run (Skipped)", not as passed. */
#ifndef NN_TESTS_TEST_H
#define NN_TESTS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nn_test_case {
  const char *name;
  void (*fn)(void);
} nn_test_case;

static int nn__test_failed __attribute__((unused)); /* unused in a file whose tests are compiled out */
static int nn__test_skipped __attribute__((unused));

/* Exit code CTest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt). */
#define NN_TEST_SKIP_CODE 77

#define SKIP_TEST(...)                                                     \
  do {                                                                     \
    fprintf(stderr, "SKIPPED: ");                                          \
    fprintf(stderr, __VA_ARGS__);                                          \
    fprintf(stderr, "\n");                                                 \
    nn__test_skipped = 1;                                                  \
    return;                                                                \
  } while (0)

#define NN__FAIL(...)                                                      \
  do {                                                                     \
    fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                  \
    fprintf(stderr, __VA_ARGS__);                                          \
    fprintf(stderr, "\n");                                                 \
    nn__test_failed = 1;                                                   \
    return;                                                                \
  } while (0)

#define ASSERT_TRUE(c)                                                     \
  do { if (!(c)) NN__FAIL("expected true: %s", #c); } while (0)
#define ASSERT_EQ_INT(a, b)                                                \
  do {                                                                     \
    long long a_ = (long long)(a), b_ = (long long)(b);                    \
    if (a_ != b_) NN__FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);     \
  } while (0)
#define ASSERT_NE_INT(a, b)                                                \
  do {                                                                     \
    long long a_ = (long long)(a), b_ = (long long)(b);                    \
    if (a_ == b_) NN__FAIL("%s != %s: both %lld", #a, #b, a_);            \
  } while (0)
#define ASSERT_OK(expr)                                                    \
  do {                                                                     \
    int rc_ = (expr);                                                      \
    if (rc_ != 0) NN__FAIL("%s returned %d", #expr, rc_);                 \
  } while (0)
#define ASSERT_NEAR(a, b, tol)                                             \
  do {                                                                     \
    double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);         \
    if (!(fabs(a_ - b_) <= t_))                                            \
      NN__FAIL("%s ~ %s: %.9g vs %.9g (|diff| %.3g > %.3g)", #a, #b, a_,   \
               b_, fabs(a_ - b_), t_);                                     \
  } while (0)
#define ASSERT_STR_EQ(a, b)                                                \
  do {                                                                     \
    const char *a_ = (a), *b_ = (b);                                       \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
      NN__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",  \
               b_ ? b_ : "(null)");                                        \
  } while (0)
#define ASSERT_STR_CONTAINS(hay, needle)                                   \
  do {                                                                     \
    const char *h_ = (hay), *n_ = (needle);                                \
    if (!h_ || !strstr(h_, n_))                                            \
      NN__FAIL("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);  \
  } while (0)

#define TEST(fn) { #fn, fn }
#define TEST_MAIN(...)                                                     \
  int main(int argc, char **argv) {                                        \
    static const nn_test_case cases_[] = {__VA_ARGS__};                    \
    int passed_ = 0, failed_ = 0, skipped_ = 0;                            \
    for (size_t i_ = 0; i_ < sizeof cases_ / sizeof cases_[0]; i_++) {    \
      if (argc > 1 && strcmp(argv[1], cases_[i_].name) != 0) continue;    \
      nn__test_failed = nn__test_skipped = 0;                              \
      cases_[i_].fn();                                                     \
      if (nn__test_failed) {                                               \
        failed_++;                                                         \
        fprintf(stderr, "[FAIL] %s\n", cases_[i_].name);                   \
      } else if (nn__test_skipped) {                                       \
        skipped_++;                                                        \
        fprintf(stderr, "[skip] %s\n", cases_[i_].name);                   \
      } else {                                                             \
        passed_++;                                                         \
        fprintf(stderr, "[ ok ] %s\n", cases_[i_].name);                   \
      }                                                                    \
    }                                                                      \
    printf("%d passed, %d failed, %d skipped\n", passed_, failed_,         \
           skipped_);                                                      \
    if (failed_ || (passed_ == 0 && skipped_ == 0)) return 1;              \
    return skipped_ ? NN_TEST_SKIP_CODE : 0;                               \
  }

#endif
