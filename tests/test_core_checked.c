/* test_core_checked.c: core/checked.h, the overflow-checked size arithmetic
 * the shard and checkpoint readers size everything with: products and sums
 * at and past the limits, and shape counts bounded by NN_MAX_ELEMS. */
#include <stdint.h>

#include "core/checked.h"
#include "test.h"

static void test_mul_add(void) {
  size_t r = 0;
  int64_t q = 0;
  ASSERT_EQ_INT(nn_mul_size(SIZE_MAX / 2, 2, &r), 0);
  ASSERT_TRUE(r == SIZE_MAX - 1);
  ASSERT_EQ_INT(nn_mul_size(SIZE_MAX / 2 + 1, 2, &r), -1);
  ASSERT_EQ_INT(nn_add_size(SIZE_MAX - 1, 1, &r), 0);
  ASSERT_EQ_INT(nn_add_size(SIZE_MAX, 1, &r), -1);
  ASSERT_EQ_INT(nn_mul_i64(INT64_MAX / 3, 3, &q), 0);
  ASSERT_EQ_INT(nn_mul_i64((int64_t)1 << 32, (int64_t)1 << 31, &q), -1);
  ASSERT_EQ_INT(nn_add_i64(INT64_MAX, 1, &q), -1);
  ASSERT_EQ_INT(nn_bytes_of2((size_t)1 << 40, (size_t)1 << 22, 4, &r), -1);
  ASSERT_EQ_INT(nn_bytes_of2(1000, 784, sizeof(float), &r), 0);
  ASSERT_TRUE(r == 1000u * 784u * 4u);
}

static void test_shape_count(void) {
  size_t n = 0;
  nn_shape s = {.ndim = 3, .dim = {1, 28, 28}};
  ASSERT_EQ_INT(nn_shape_count_checked(&s, &n), 0);
  ASSERT_TRUE(n == 784);
  nn_shape edge = {.ndim = 1, .dim = {INT32_MAX}};
  ASSERT_EQ_INT(nn_shape_count_checked(&edge, &n), 0);
  ASSERT_TRUE(n == (size_t)INT32_MAX);
  nn_shape big = {.ndim = 3, .dim = {1, 65536, 65536}}; /* 2^32: wraps an int */
  ASSERT_EQ_INT(nn_shape_count_checked(&big, &n), -1);
  nn_shape huge = {.ndim = 4, .dim = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX}};
  ASSERT_EQ_INT(nn_shape_count_checked(&huge, &n), -1); /* wraps int64 */
  nn_shape neg = {.ndim = 2, .dim = {4, -1}};
  ASSERT_EQ_INT(nn_shape_count_checked(&neg, &n), -1);
  nn_shape scalar = {.ndim = 0};
  ASSERT_EQ_INT(nn_shape_count_checked(&scalar, &n), 0);
  ASSERT_TRUE(n == 1);
}

TEST_MAIN(TEST(test_mul_add), TEST(test_shape_count))
