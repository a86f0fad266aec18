/* checked.h: the one home of overflow-checked size arithmetic.
 *
 * Sizes read from files (shard sample shapes, row counts, checkpoint tensor
 * shapes) are multiplied before anything is allocated or read; every such
 * product goes through these helpers so that an enormous but self-consistent
 * file is refused with a message instead of wrapping around. Each function
 * returns 0 and stores the result, or returns -1 (overflow) and leaves *out
 * unspecified. Header-only, libc only. */
#ifndef NN_CORE_CHECKED_H
#define NN_CORE_CHECKED_H

#include <stddef.h>
#include <stdint.h>

#include "core/layer.h"

/* Most elements one sample (or one tensor) may have: every layer indexes
 * a sample with int, so a count must fit in int. */
#define NN_MAX_ELEMS ((int64_t)INT32_MAX)

static inline int nn_mul_size(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

static inline int nn_add_size(size_t a, size_t b, size_t *out) {
  return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

static inline int nn_mul_i64(int64_t a, int64_t b, int64_t *out) {
  return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

static inline int nn_add_i64(int64_t a, int64_t b, int64_t *out) {
  return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* Elements of shape s (dims must be >= 0): -1 if the product exceeds
 * NN_MAX_ELEMS, so the result also fits in int. */
static inline int nn_shape_count_checked(const nn_shape *s, size_t *out) {
  int64_t c = 1;
  for (int i = 0; i < s->ndim; i++) {
    if (s->dim[i] < 0 || nn_mul_i64(c, s->dim[i], &c) || c > NN_MAX_ELEMS) return -1;
  }
  *out = (size_t)c;
  return 0;
}

/* Bytes of n elements of elem bytes each (n floats: elem = sizeof(float)). */
static inline int nn_bytes_of(size_t n, size_t elem, size_t *out) {
  return nn_mul_size(n, elem, out);
}

/* Bytes of rows * cols elements of elem bytes each. */
static inline int nn_bytes_of2(size_t rows, size_t cols, size_t elem, size_t *out) {
  size_t k;
  return nn_mul_size(rows, cols, &k) || nn_mul_size(k, elem, out) ? -1 : 0;
}

#endif
