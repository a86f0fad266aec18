/* Reductions over one row of floats (a sample's plane of one channel, a
 * bias's output plane) shared by the layers: sixteen float partial sums the
 * compiler keeps in vector registers (a single double running sum is one long
 * chain of dependent adds, several times slower), added up in double. Rows
 * are planes of at most a few thousand values, so each partial sum holds a
 * few hundred terms at most.
 *   nn_row_sum:  sum of u[j]
 *   nn_row_dev2: sum of (u[j] - mu)^2
 *   nn_row_devv: sum of (u[j] - mu) * v[j] */
#ifndef NN_LAYERS_ROWS_H
#define NN_LAYERS_ROWS_H

#include <stddef.h>

enum { NN_ROW_SUM, NN_ROW_DEV2, NN_ROW_DEVV };

static inline double nn_row_reduce(int kind, const float *restrict u, const float *restrict v,
                                   float mu, size_t len) {
  float part[16] = {0};
  size_t k = 0;
  for (; k + 16 <= len; k += 16)
    for (int q = 0; q < 16; q++) {
      float d = u[k + q] - mu;
      part[q] += kind == NN_ROW_SUM ? u[k + q] : kind == NN_ROW_DEV2 ? d * d : d * v[k + q];
    }
  double sum = 0.0;
  for (; k < len; k++) {
    double d = (double)u[k] - mu;
    sum += kind == NN_ROW_SUM ? (double)u[k] : kind == NN_ROW_DEV2 ? d * d : d * v[k];
  }
  for (int q = 0; q < 16; q++) sum += part[q];
  return sum;
}

static inline double nn_row_sum(const float *u, size_t len) {
  return nn_row_reduce(NN_ROW_SUM, u, NULL, 0.0f, len);
}
static inline double nn_row_dev2(const float *u, float mu, size_t len) {
  return nn_row_reduce(NN_ROW_DEV2, u, NULL, mu, len);
}
static inline double nn_row_devv(const float *u, float mu, const float *v, size_t len) {
  return nn_row_reduce(NN_ROW_DEVV, u, v, mu, len);
}

#endif
