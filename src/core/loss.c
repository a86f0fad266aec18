/* loss.c: softmax cross-entropy (per sample, and per timestep with
 * masking), binary cross-entropy from logits and mean squared error over a batch (see loss.h), plus the
 * row-wise softmax and argmax the metrics use.
 *
 * Sums over samples are accumulated in double so the loss of a large batch
 * does not lose the small per-sample terms; gradients are written in float.
 * Nothing here allocates. */
#include "core/loss.h"

#include <math.h>

#include "core/fastmath.h"
#include <string.h>

const char *const nn_loss_choices = "cross_entropy|mse|binary_cross_entropy";

int nn_loss_parse(const char *name) {
  if (!name) return -1;
  if (strcmp(name, "cross_entropy") == 0) return NN_LOSS_SOFTMAX_CE;
  if (strcmp(name, "mse") == 0) return NN_LOSS_MSE;
  if (strcmp(name, "binary_cross_entropy") == 0) return NN_LOSS_BCE;
  return -1;
}

int nn_argmax(const float *v, int k) {
  int best = 0;
  for (int j = 1; j < k; j++)
    if (v[j] > v[best]) best = j;
  return best;
}

/* Largest of k > 0 values. */
static float row_max(const float *x, int k) {
  float m = x[0];
  for (int j = 1; j < k; j++)
    if (x[j] > m) m = x[j];
  return m;
}

/* probs[i, :] = exp(x - max) / sum exp(x - max): every exponent is <= 0, so
 * nothing overflows and the largest term is exactly 1. In place is fine:
 * element j is read before it is written, and the max is taken first. */
void nn_softmax_rows(const float *logits, float *probs, int n, int k) {
  if (k <= 0) return;
  for (int i = 0; i < n; i++) {
    const float *x = logits + (size_t)i * k;
    float *p = probs + (size_t)i * k;
    float m = row_max(x, k);
    double s = 0;
    for (int j = 0; j < k; j++) {
      p[j] = nn_expf(x[j] - m);
      s += p[j];
    }
    float inv = (float)(1.0 / s);
    for (int j = 0; j < k; j++) p[j] *= inv;
  }
}

/* Per sample: loss = logsumexp(x) - x[label], computed as
 * m + log(sum exp(x - m)) - x[label] with m = max(x), so logits of any size
 * stay finite. d loss / d x = softmax(x) - onehot(label).
 * logits, dlogits: [n, k]; labels: [n]. A label outside [0, k) makes the
 * returned sum NaN (the caller checks isfinite) and zeroes that row of the
 * gradient, so one bad label cannot write out of bounds. */
#define CE__KEEP 1024 /* classes whose exponentials a row keeps (8 kB of stack) */

double nn_loss_softmax_ce(const float *logits, const int32_t *labels, int n, int k,
                          float scale, float *dlogits) {
  double total = 0;
  for (int i = 0; i < n; i++) {
    const float *x = logits + (size_t)i * k;
    int32_t y = labels[i];
    if (y < 0 || y >= k) {
      total = NAN;
      if (dlogits) memset(dlogits + (size_t)i * k, 0, (size_t)k * sizeof(float));
      continue;
    }
    /* Each exponential once, in double (the arithmetic every checkpoint so
     * far was trained with: a run resumed from an old file continues bit
     * for bit, tests/e2e_ckpt_v1.sh): kept on the stack for rows of up to
     * CE__KEEP classes, computed again for the gradient above that. */
    float m = row_max(x, k);
    double keep[CE__KEEP];
    int kept = dlogits && k <= CE__KEEP;
    double s = 0;
    for (int j = 0; j < k; j++) {
      double e = exp((double)x[j] - m);
      if (kept) keep[j] = e;
      s += e;
    }
    double lse = (double)m + log(s);
    total += lse - x[y];
    if (dlogits) {
      float *d = dlogits + (size_t)i * k;
      double inv = 1.0 / s;
      for (int j = 0; j < k; j++) {
        double e = kept ? keep[j] : exp((double)x[j] - m);
        d[j] = (float)(scale * (e * inv - (j == y ? 1.0 : 0.0)));
      }
    }
  }
  return total;
}

/* Sample i's valid rows [0, len) are a contiguous block of [len, k] logits:
 * nn_loss_softmax_ce over them (the same arithmetic as per-sample labels),
 * then the padded rows' gradient is zeroed. See loss.h. */
double nn_loss_seq_softmax_ce(const float *logits, const int32_t *targets,
                              const int32_t *lengths, int n, int t, int k, float scale,
                              float *dlogits) {
  double total = 0;
  size_t tk = (size_t)t * (size_t)k;
  for (int i = 0; i < n; i++) {
    int len = lengths ? lengths[i] : t;
    int ok = len >= 1 && len <= t;
    if (!ok) {
      total = NAN;
      len = 0;
    } else {
      total += nn_loss_softmax_ce(logits + (size_t)i * tk, targets + (size_t)i * t, len, k,
                                  scale, dlogits ? dlogits + (size_t)i * tk : NULL);
    }
    if (dlogits)
      memset(dlogits + (size_t)i * tk + (size_t)len * k, 0,
             (size_t)(t - len) * (size_t)k * sizeof(float));
  }
  return total;
}

int64_t nn_seq_valid_steps(const int32_t *lengths, int n, int t) {
  if (!lengths) return (int64_t)n * t;
  int64_t s = 0;
  for (int i = 0; i < n; i++) s += lengths[i] < 0 ? 0 : lengths[i] > t ? t : lengths[i];
  return s;
}

/* Per sample: loss = (1/k) sum_j (out_j - target_j)^2;
 * d loss / d out_j = 2 (out_j - target_j) / k. out, target, dout: [n, k]
 * (dout may alias out or target: each element is read before it is written). */
double nn_loss_mse(const float *out, const float *target, int n, int k, float scale,
                   float *dout) {
  double total = 0;
  if (k <= 0) return 0;
  double g = 2.0 * scale / k;
  for (size_t i = 0; i < (size_t)n * (size_t)k; i += (size_t)k) {
    double s = 0;
    for (int j = 0; j < k; j++) {
      double e = (double)out[i + j] - target[i + j];
      s += e * e;
      if (dout) dout[i + j] = (float)(g * e);
    }
    total += s / k;
  }
  return total;
}

double nn_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x); /* x < 0: e in (0, 1), no overflow */
  return e / (1.0 + e);
}

/* See loss.h. In double: the stable form's log1p(exp(-|x|)) keeps full
 * relative precision for |x| up to ~745 (exp underflows to 0 beyond, where
 * the term is below 1e-300 anyway). out, target, dout: [n, k]. */
double nn_loss_bce(const float *out, const float *target, int n, int k, float scale,
                   float *dout) {
  double total = 0;
  if (k <= 0) return 0;
  const double g = (double)scale / k;
  for (size_t i = 0; i < (size_t)n * (size_t)k; i += (size_t)k) {
    double s = 0;
    for (int j = 0; j < k; j++) {
      const double x = out[i + j], t = target[i + j];
      s += (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x)));
      if (dout) dout[i + j] = (float)(g * (nn_sigmoid(x) - t));
    }
    total += s / k;
  }
  return total;
}
