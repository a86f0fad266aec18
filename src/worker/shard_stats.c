/* shard_stats.c: per-channel statistics of shard features (nn_shard_stats,
 * see dataset.h): what `nntrain prepare` writes as a shard's mean and std. */
#include <math.h>

#include "worker/dataset.h"

int nn_shard_channels(const nn_shape *sample) {
  if (sample->ndim == 3) return sample->dim[0];
  return (int)nn_shape_count(sample);
}

int nn_shard_stats(const void *x, nn_feature_type ftype, int64_t n, const nn_shape *sample,
                   double scale, int *channels, double *mean, double *std, nn_error *err) {
  int C = nn_shard_channels(sample);
  if (C < 1 || C > NN_SHARD_MAX_CHANNELS)
    return nn_error_set(err, NN_EINVAL, "%d statistics channels; at most %d are supported", C,
                        NN_SHARD_MAX_CHANNELS);
  if (n < 1) return nn_error_set(err, NN_EINVAL, "no samples to compute statistics from");
  size_t rowlen = nn_shape_count(sample);
  size_t per = rowlen / (size_t)C; /* consecutive elements per channel within a sample */
  double cnt = (double)n * (double)per;
  *channels = C;
  if (ftype == NN_FEAT_U8) {
    /* Exact integer sums; var = scale^2 (S2/cnt - (S1/cnt)^2). */
    const uint8_t *p = x;
    for (int c = 0; c < C; c++) {
      uint64_t s1 = 0, s2 = 0;
      for (int64_t i = 0; i < n; i++) {
        const uint8_t *r = p + (size_t)i * rowlen + (size_t)c * per;
        for (size_t k = 0; k < per; k++) {
          s1 += r[k];
          s2 += (uint64_t)r[k] * r[k];
        }
      }
      long double m = (long double)s1 / cnt;
      long double v = (long double)s2 / cnt - m * m;
      if (v < 0) v = 0;
      mean[c] = (double)(m * scale);
      std[c] = (double)(sqrtl(v) * fabs(scale));
    }
  } else {
    const float *p = x;
    for (int c = 0; c < C; c++) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < n; i++) {
        const float *r = p + (size_t)i * rowlen + (size_t)c * per;
        for (size_t k = 0; k < per; k++) s += r[k];
      }
      double m = s / cnt;
      for (int64_t i = 0; i < n; i++) {
        const float *r = p + (size_t)i * rowlen + (size_t)c * per;
        for (size_t k = 0; k < per; k++) ss += (r[k] - m) * (r[k] - m);
      }
      mean[c] = m * scale;
      std[c] = sqrt(ss / cnt) * fabs(scale);
    }
  }
  return 0;
}
