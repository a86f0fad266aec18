/* metrics.c: evaluation metrics from summable counts (see metrics.h and
 * docs/metrics.md).
 *
 * Adding a batch only increments sums in acc->data; every division, average
 * and the ROC AUC sweep happen once, in nn_metrics_finalize, on the array
 * the ranks have summed. Nothing here knows about ranks or files, except
 * nn_metrics_report, which writes to the FILE* it is given. */
#include "core/metrics.h"
#include "core/loss.h"
#include "core/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- layout ----------------------------------------------------------- */

int nn_metrics_acc_init(nn_metrics_acc *acc, const nn_metrics_config *cfg, nn_error *err) {
  memset(acc, 0, sizeof *acc);
  if (!cfg) return nn_error_set(err, NN_EINVAL, "metrics: no configuration given");
  const int k = cfg->num_classes, t = cfg->target_dim, ml = cfg->multilabel;
  if (ml && (ml != 1 || k != 0 || t < 1))
    return nn_error_set(err, NN_EINVAL, "metrics: multi-label needs num_classes 0 and "
                        "target_dim >= 1 labels, got %d and %d", k, t);
  if (k == 1 || k < 0)
    return nn_error_set(err, NN_EINVAL,
                        "metrics: num_classes is %d, expected 0 (regression) or >= 2", k);
  if (k == 0 && t < 1)
    return nn_error_set(err, NN_EINVAL,
                        "metrics: regression needs target_dim >= 1, got %d", t);
  if (k > 0 && t != 0)
    return nn_error_set(err, NN_EINVAL,
                        "metrics: target_dim is %d for a %d-class task, expected 0", t, k);
  if (cfg->ntopk < 0 || cfg->ntopk > NN_METRICS_MAX_TOPK)
    return nn_error_set(err, NN_EINVAL, "metrics: %d top-k values, expected 0..%d",
                        cfg->ntopk, NN_METRICS_MAX_TOPK);
  if (k == 0 && cfg->ntopk > 0)
    return nn_error_set(err, NN_EINVAL, "metrics: top-k accuracy needs a classification task");
  for (int i = 0; i < cfg->ntopk; i++)
    if (cfg->topk[i] < 1 || cfg->topk[i] > k)
      return nn_error_set(err, NN_EINVAL,
                          "metrics: top-k value %d is outside 1..%d (the number of classes)",
                          cfg->topk[i], k);
  if (cfg->scores != NN_METRICS_LOGITS && cfg->scores != NN_METRICS_PROBS)
    return nn_error_set(err, NN_EINVAL, "metrics: unknown score kind %d", cfg->scores);
  int bins = 0, sets = k == 2 ? 1 : k > 2 ? k : ml ? t : 0;
  if (sets) {
    bins = cfg->auc_bins ? cfg->auc_bins : NN_METRICS_AUC_BINS;
    if (bins < 2 || bins > NN_METRICS_AUC_MAX_BINS)
      return nn_error_set(err, NN_EINVAL, "metrics: auc_bins is %d, expected 2..%d", bins,
                          NN_METRICS_AUC_MAX_BINS);
    if (sets > 1 && (size_t)bins * 2 * (size_t)sets > NN_METRICS_AUC_MAX_SUMS)
      bins = NN_METRICS_AUC_MAX_SUMS / (2 * sets); /* coarser, bounded memory */
    if (bins < 2) bins = 2;
  }

  size_t off = 0;
  acc->off_loss = off++;
  acc->off_count = off++;
  acc->off_conf = off;
  off += (size_t)k * (size_t)k;
  acc->off_topk = off;
  off += (size_t)cfg->ntopk;
  acc->off_auc = off;
  off += (size_t)sets * 2 * (size_t)bins;
  acc->off_ml = off;
  off += ml ? 3 * (size_t)t : 0;
  acc->off_exact = off;
  off += ml ? 1 : 0;
  acc->off_sse = off;
  off += (size_t)t;
  acc->off_sae = off;
  off += (size_t)t;
  acc->off_sy = off;
  off += (size_t)t;
  acc->off_syy = off;
  off += (size_t)t;

  double *data = nn_calloc(off, sizeof *data);
  if (!data)
    return nn_error_set(err, NN_ENOMEM, "metrics: cannot allocate %zu sums", off);
  acc->cfg = *cfg;
  acc->cfg.auc_bins = bins;
  for (int i = cfg->ntopk; i < NN_METRICS_MAX_TOPK; i++) acc->cfg.topk[i] = 0;
  acc->auc_bins = bins;
  acc->auc_sets = sets;
  acc->len = off;
  acc->data = data;
  return 0;
}

void nn_metrics_acc_free(nn_metrics_acc *acc) {
  if (!acc) return;
  free(acc->data);
  memset(acc, 0, sizeof *acc);
}

void nn_metrics_acc_reset(nn_metrics_acc *acc) {
  if (acc && acc->data) memset(acc->data, 0, acc->len * sizeof *acc->data);
}

int nn_metrics_acc_merge(nn_metrics_acc *acc, const nn_metrics_acc *other, nn_error *err) {
  if (!acc->data || !other->data || acc->len != other->len ||
      acc->cfg.num_classes != other->cfg.num_classes ||
      acc->cfg.target_dim != other->cfg.target_dim || acc->cfg.ntopk != other->cfg.ntopk ||
      acc->cfg.multilabel != other->cfg.multilabel || acc->auc_sets != other->auc_sets ||
      acc->auc_bins != other->auc_bins ||
      memcmp(acc->cfg.topk, other->cfg.topk, (size_t)acc->cfg.ntopk * sizeof(int)) != 0)
    return nn_error_set(err, NN_ESHAPE,
                        "metrics: cannot merge accumulators of different layouts "
                        "(%zu vs %zu sums)", acc->len, other->len);
  for (size_t i = 0; i < acc->len; i++) acc->data[i] += other->data[i];
  return 0;
}

/* ---- accumulation ------------------------------------------------------- */

/* P(class 1) of one binary row s[2], in [0, 1]. Logits: softmax over two
 * classes is the logistic function of the margin s1 - s0. */
static double positive_prob(const float *s, int scores) {
  if (scores == NN_METRICS_PROBS) {
    double p = s[1];
    return p < 0 ? 0 : p > 1 ? 1 : p;
  }
  return 1.0 / (1.0 + exp((double)s[0] - (double)s[1]));
}

/* Histogram bin of probability p in [0, 1]: floor(p * B), with p == 1 in
 * the last bin. */
static int auc_bin(double p, int bins) {
  int b = (int)(p * bins);
  return b >= bins ? bins - 1 : b < 0 ? 0 : b;
}

/* One-vs-rest histograms (k > 2) of one row: class c's probability goes
 * into set c, as a positive when y == c. Logits: softmax in double, the
 * max subtracted first (no overflow). */
static void add_ovr(nn_metrics_acc *acc, const float *row, int y) {
  const int k = acc->cfg.num_classes, B = acc->auc_bins;
  double m = row[0], s = 1;
  if (acc->cfg.scores == NN_METRICS_LOGITS) {
    for (int j = 1; j < k; j++)
      if (row[j] > m) m = row[j];
    s = 0;
    for (int j = 0; j < k; j++) s += exp((double)row[j] - m);
  }
  for (int c = 0; c < k; c++) {
    double p = acc->cfg.scores == NN_METRICS_LOGITS ? exp((double)row[c] - m) / s : row[c];
    int b = auc_bin(p < 0 ? 0 : p > 1 ? 1 : p, B);
    acc->data[acc->off_auc + (size_t)c * 2 * (size_t)B + (size_t)(c == y ? 0 : B) + (size_t)b] +=
        1;
  }
}

int nn_metrics_add_classification(nn_metrics_acc *acc, const float *scores,
                                  const int32_t *labels, int n, double loss_sum,
                                  nn_error *err) {
  const int k = acc->cfg.num_classes;
  if (!acc->data || k < 2)
    return nn_error_set(err, NN_EINVAL, "metrics: accumulator is not set up for classification");
  if (n < 0) return nn_error_set(err, NN_EINVAL, "metrics: negative batch size %d", n);
  if (n > 0 && (!scores || !labels))
    return nn_error_set(err, NN_EINVAL, "metrics: batch of %d samples without data", n);

  /* Check everything first so a bad batch adds nothing. */
  for (int i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= k)
      return nn_error_set(err, NN_EDATA,
                          "metrics: label %d of sample %d is outside 0..%d", (int)labels[i], i,
                          k - 1);
    const float *row = scores + (size_t)i * (size_t)k;
    for (int j = 0; j < k; j++)
      if (!isfinite(row[j]))
        return nn_error_set(err, NN_ENUMERIC,
                            "metrics: score of class %d for sample %d is %g, expected a "
                            "finite value", j, i, (double)row[j]);
  }

  double *d = acc->data;
  double *conf = d + acc->off_conf;
  double *topk = d + acc->off_topk;
  const int ntopk = acc->cfg.ntopk;
  for (int i = 0; i < n; i++) {
    const float *row = scores + (size_t)i * (size_t)k;
    const int y = labels[i];
    /* argmax (first on ties) and the rank of the true class under the same
     * rule: classes strictly above it, plus equal ones with a lower index. */
    int pred = 0, rank = 0;
    for (int j = 0; j < k; j++) {
      if (row[j] > row[pred]) pred = j;
      if (row[j] > row[y] || (row[j] == row[y] && j < y)) rank++;
    }
    conf[(size_t)y * (size_t)k + (size_t)pred] += 1;
    for (int t = 0; t < ntopk; t++)
      if (rank < acc->cfg.topk[t]) topk[t] += 1;
    if (k == 2) {
      int b = auc_bin(positive_prob(row, acc->cfg.scores), acc->auc_bins);
      /* row 0: positives (label 1), row 1: negatives (label 0) */
      d[acc->off_auc + (size_t)(y == 1 ? 0 : acc->auc_bins) + (size_t)b] += 1;
    } else {
      add_ovr(acc, row, y);
    }
  }
  d[acc->off_loss] += loss_sum;
  d[acc->off_count] += n;
  return 0;
}

/* P(label) of a multi-label score: the logistic function of a logit
 * (core/loss.h, as the loss computes it), or a probability clamped to [0, 1]. */
static double label_prob(float x, int scores) {
  if (scores == NN_METRICS_PROBS) return x < 0 ? 0 : x > 1 ? 1 : x;
  return nn_sigmoid(x);
}

int nn_metrics_add_multilabel(nn_metrics_acc *acc, const float *scores, const float *targets,
                              int n, double loss_sum, nn_error *err) {
  const int T = acc->cfg.target_dim, B = acc->auc_bins;
  if (!acc->data || !acc->cfg.multilabel)
    return nn_error_set(err, NN_EINVAL, "metrics: accumulator is not set up for multi-label");
  if (n < 0) return nn_error_set(err, NN_EINVAL, "metrics: negative batch size %d", n);
  if (n > 0 && (!scores || !targets))
    return nn_error_set(err, NN_EINVAL, "metrics: batch of %d samples without data", n);
  const size_t m = (size_t)n * (size_t)T;
  for (size_t i = 0; i < m; i++) {
    if (targets[i] != 0 && targets[i] != 1)
      return nn_error_set(err, NN_EDATA, "metrics: label %d of sample %zu is %g, expected 0 or 1",
                          (int)(i % (size_t)T), i / (size_t)T, (double)targets[i]);
    if (!isfinite(scores[i]))
      return nn_error_set(err, NN_ENUMERIC, "metrics: score of label %d for sample %zu is %g, "
                          "expected a finite value", (int)(i % (size_t)T), i / (size_t)T,
                          (double)scores[i]);
  }
  double *d = acc->data;
  for (size_t i = 0; i < (size_t)n; i++) {
    int all_right = 1;
    for (int j = 0; j < T; j++) {
      const double p = label_prob(scores[i * (size_t)T + (size_t)j], acc->cfg.scores);
      const int pos = targets[i * (size_t)T + (size_t)j] == 1, pred = p >= 0.5;
      double *ml = d + acc->off_ml + 3 * (size_t)j; /* tp, fp, fn */
      if (pred && pos) ml[0] += 1;
      if (pred && !pos) ml[1] += 1;
      if (!pred && pos) ml[2] += 1;
      if (pred != pos) all_right = 0;
      d[acc->off_auc + (size_t)j * 2 * (size_t)B + (size_t)(pos ? 0 : B) +
        (size_t)auc_bin(p, B)] += 1;
    }
    d[acc->off_exact] += all_right;
  }
  d[acc->off_loss] += loss_sum;
  d[acc->off_count] += n;
  return 0;
}

int nn_metrics_add_regression(nn_metrics_acc *acc, const float *out, const float *target,
                              int n, double loss_sum, nn_error *err) {
  const int T = acc->cfg.target_dim;
  if (!acc->data || acc->cfg.num_classes != 0 || T < 1)
    return nn_error_set(err, NN_EINVAL, "metrics: accumulator is not set up for regression");
  if (n < 0) return nn_error_set(err, NN_EINVAL, "metrics: negative batch size %d", n);
  if (n > 0 && (!out || !target))
    return nn_error_set(err, NN_EINVAL, "metrics: batch of %d samples without data", n);
  const size_t m = (size_t)n * (size_t)T;
  for (size_t i = 0; i < m; i++) {
    if (!isfinite(out[i]))
      return nn_error_set(err, NN_ENUMERIC,
                          "metrics: output %d of sample %zu is %g, expected a finite value",
                          (int)(i % (size_t)T), i / (size_t)T, (double)out[i]);
    if (!isfinite(target[i]))
      return nn_error_set(err, NN_ENUMERIC,
                          "metrics: target %d of sample %zu is %g, expected a finite value",
                          (int)(i % (size_t)T), i / (size_t)T, (double)target[i]);
  }
  double *d = acc->data;
  for (size_t i = 0; i < m; i++) {
    const size_t j = i % (size_t)T;
    const double y = target[i], e = (double)out[i] - y;
    d[acc->off_sse + j] += e * e;
    d[acc->off_sae + j] += fabs(e);
    d[acc->off_sy + j] += y;
    d[acc->off_syy + j] += y * y;
  }
  d[acc->off_loss] += loss_sum;
  d[acc->off_count] += n;
  return 0;
}

/* ---- final figures ------------------------------------------------------ */

void nn_metrics_result_free(nn_metrics_result *res) {
  if (!res) return;
  free(res->precision); /* one block: precision, recall, f1, support, auc, ap */
  free(res->flags);
  memset(res, 0, sizeof *res);
}

/* ROC AUC from the two score histograms pos[B], neg[B] (Mann-Whitney U):
 * for each bin, the positives in it outrank every negative in a lower bin
 * and tie (count half) with the negatives in the same bin. NaN when either
 * class is empty. */
static double auc_from_hist(const double *pos, const double *neg, int bins) {
  double np = 0, nneg = 0, u = 0;
  for (int b = 0; b < bins; b++) {
    u += pos[b] * (nneg + 0.5 * neg[b]); /* nneg = negatives in bins below b */
    np += pos[b];
    nneg += neg[b];
  }
  if (np == 0 || nneg == 0) return NAN;
  return u / (np * nneg);
}

/* Average precision from the two score histograms, as scikit-learn's
 * average_precision_score with one threshold per bin: sweeping the bins
 * from the highest score down, AP = sum over bins with positives of
 * (positives in the bin / all positives) * precision at that bin's
 * threshold (everything in it and above predicted positive). NaN without
 * positives. */
static double ap_from_hist(const double *pos, const double *neg, int bins) {
  double np = 0, tp = 0, fp = 0, ap = 0;
  for (int b = 0; b < bins; b++) np += pos[b];
  if (np == 0) return NAN;
  for (int b = bins - 1; b >= 0; b--) {
    tp += pos[b];
    fp += neg[b];
    if (pos[b] > 0) ap += pos[b] / np * (tp / (tp + fp));
  }
  return ap;
}

/* Class (label) c's precision, recall, F1, support and flags from its
 * counts, zero_division = 0; adds them to the macro sums s[3] unless
 * the class is absent (no sample of it, none predicted). */
static void prf_one(nn_metrics_result *r, int c, double tp, double fp, double fn, double *s,
                    int *used) {
  const double col = tp + fp, row = tp + fn;
  int fl = 0;
  if (col == 0) fl |= NN_METRICS_NO_PRED;
  if (row == 0) fl |= NN_METRICS_NO_TRUE;
  if (row == 0 && col == 0) fl |= NN_METRICS_ABSENT;
  r->precision[c] = col > 0 ? tp / col : 0;
  r->recall[c] = row > 0 ? tp / row : 0;
  r->f1[c] = (2 * tp + fp + fn) > 0 ? 2 * tp / (2 * tp + fp + fn) : 0;
  r->support[c] = row;
  r->flags[c] = fl;
  if (!(fl & NN_METRICS_ABSENT)) {
    s[0] += r->precision[c];
    s[1] += r->recall[c];
    s[2] += r->f1[c];
    (*used)++;
  }
}

static void macro_set(nn_metrics_result *r, const double *s, int used) {
  r->macro_classes = used;
  r->macro_precision = used ? s[0] / used : NAN;
  r->macro_recall = used ? s[1] / used : NAN;
  r->macro_f1 = used ? s[2] / used : NAN;
}

/* auc[c] for each of the acc->auc_sets histograms and their macro mean
 * into roc_auc (binary: the one histogram is both classes' AUC). */
static void finalize_auc(const nn_metrics_acc *acc, nn_metrics_result *r, int k) {
  const int B = acc->auc_bins;
  const double *h = acc->data + acc->off_auc;
  r->auc_bins = B;
  r->has_auc = B > 0;
  if (!B) return;
  if (acc->auc_sets == 1) { /* binary */
    r->roc_auc = auc_from_hist(h, h + B, B);
    r->auc[0] = r->auc[1] = r->roc_auc;
    r->auc_classes = isnan(r->roc_auc) ? 0 : 2;
    return;
  }
  double sum = 0;
  int used = 0;
  for (int c = 0; c < k; c++) {
    const double *pos = h + (size_t)c * 2 * (size_t)B;
    r->auc[c] = auc_from_hist(pos, pos + B, B);
    if (r->ap) r->ap[c] = ap_from_hist(pos, pos + B, B);
    if (!isnan(r->auc[c])) {
      sum += r->auc[c];
      used++;
    }
  }
  r->auc_classes = used;
  r->roc_auc = used ? sum / used : NAN;
}

/* Multi-label: per-label figures at 0.5, micro and macro averages, the
 * exact-match ratio as accuracy, per-label AUC and AP, mAP. */
static void finalize_multilabel(const nn_metrics_acc *acc, nn_metrics_result *r) {
  const int T = acc->cfg.target_dim;
  const double *ml = acc->data + acc->off_ml;
  double s[3] = {0, 0, 0}, tp = 0, fp = 0, fn = 0;
  int used = 0;
  for (int j = 0; j < T; j++) {
    prf_one(r, j, ml[3 * j], ml[3 * j + 1], ml[3 * j + 2], s, &used);
    tp += ml[3 * j];
    fp += ml[3 * j + 1];
    fn += ml[3 * j + 2];
  }
  macro_set(r, s, used);
  r->micro_precision = tp + fp > 0 ? tp / (tp + fp) : 0;
  r->micro_recall = tp + fn > 0 ? tp / (tp + fn) : 0;
  r->micro_f1 = 2 * tp + fp + fn > 0 ? 2 * tp / (2 * tp + fp + fn) : 0;
  r->accuracy = r->count > 0 ? acc->data[acc->off_exact] / r->count : NAN;
  finalize_auc(acc, r, T);
  double sum = 0;
  int with_pos = 0;
  for (int j = 0; j < T; j++)
    if (!isnan(r->ap[j])) {
      sum += r->ap[j];
      with_pos++;
    }
  r->map = with_pos ? sum / with_pos : NAN;
}

static void finalize_classification(const nn_metrics_acc *acc, nn_metrics_result *r) {
  const int k = acc->cfg.num_classes;
  const double *d = acc->data, *conf = d + acc->off_conf;
  const double n = r->count;
  double trace = 0;
  for (int c = 0; c < k; c++) trace += conf[(size_t)c * (size_t)k + (size_t)c];
  r->accuracy = n > 0 ? trace / n : NAN;
  r->ntopk = acc->cfg.ntopk;
  for (int t = 0; t < r->ntopk; t++) {
    r->topk[t] = acc->cfg.topk[t];
    r->topk_accuracy[t] = n > 0 ? d[acc->off_topk + (size_t)t] / n : NAN;
  }

  double s[3] = {0, 0, 0};
  int used = 0;
  for (int c = 0; c < k; c++) {
    double tp = conf[(size_t)c * (size_t)k + (size_t)c], row = 0, col = 0;
    for (int j = 0; j < k; j++) {
      row += conf[(size_t)c * (size_t)k + (size_t)j]; /* samples of class c */
      col += conf[(size_t)j * (size_t)k + (size_t)c]; /* samples predicted c */
    }
    prf_one(r, c, tp, col - tp, row - tp, s, &used);
  }
  macro_set(r, s, used);
  r->confusion = conf;
  finalize_auc(acc, r, k);
}

/* R^2 of one output: 1 - SSE / SST with SST = sum y^2 - (sum y)^2 / n.
 * A constant target (SST ~ 0, up to cancellation in the sums) gives 1 when
 * the fit is exact and 0 otherwise, as scikit-learn's force_finite. */
static double r2_one(double sse, double sy, double syy, double n) {
  const double sst = syy - sy * sy / n;
  if (!(sst > 1e-12 * syy)) return sse == 0 ? 1.0 : 0.0;
  return 1.0 - sse / sst;
}

static void finalize_regression(const nn_metrics_acc *acc, nn_metrics_result *r) {
  const int T = acc->cfg.target_dim;
  const double *d = acc->data, n = r->count;
  double sse = 0, sae = 0, r2 = 0;
  for (int j = 0; j < T; j++) {
    sse += d[acc->off_sse + (size_t)j];
    sae += d[acc->off_sae + (size_t)j];
    if (n > 0)
      r2 += r2_one(d[acc->off_sse + (size_t)j], d[acc->off_sy + (size_t)j],
                   d[acc->off_syy + (size_t)j], n);
  }
  r->mse = n > 0 ? sse / (n * T) : NAN;
  r->mae = n > 0 ? sae / (n * T) : NAN;
  r->r2 = n > 0 ? r2 / T : NAN;
}

int nn_metrics_finalize(const nn_metrics_acc *acc, nn_metrics_result *res, nn_error *err) {
  memset(res, 0, sizeof *res);
  if (!acc || !acc->data) return nn_error_set(err, NN_EINVAL, "metrics: empty accumulator");
  const int ml = acc->cfg.multilabel;
  const int k = ml ? acc->cfg.target_dim : acc->cfg.num_classes;
  res->num_classes = acc->cfg.num_classes;
  res->target_dim = acc->cfg.target_dim;
  res->multilabel = ml;
  res->count = acc->data[acc->off_count];
  res->loss = res->count > 0 ? acc->data[acc->off_loss] / res->count : NAN;
  res->accuracy = res->roc_auc = NAN;
  res->macro_precision = res->macro_recall = res->macro_f1 = NAN;
  res->micro_precision = res->micro_recall = res->micro_f1 = res->map = NAN;
  res->mse = res->mae = res->r2 = NAN;
  if (k == 0) { /* regression */
    finalize_regression(acc, res);
    return 0;
  }
  /* precision, recall, f1, support, auc, ap: one block of 6k doubles */
  res->precision = nn_malloc(6 * (size_t)k * sizeof(double));
  res->flags = nn_malloc((size_t)k * sizeof(int));
  if (!res->precision || !res->flags) {
    nn_metrics_result_free(res);
    return nn_error_set(err, NN_ENOMEM, "metrics: cannot allocate per-class figures for %d "
                        "classes", k);
  }
  res->recall = res->precision + k;
  res->f1 = res->precision + 2 * (size_t)k;
  res->support = res->precision + 3 * (size_t)k;
  res->auc = res->precision + 4 * (size_t)k;
  for (int c = 0; c < k; c++) res->auc[c] = NAN;
  if (ml) {
    res->ap = res->precision + 5 * (size_t)k;
    for (int c = 0; c < k; c++) res->ap[c] = NAN;
    finalize_multilabel(acc, res);
  } else {
    finalize_classification(acc, res);
  }
  return 0;
}

/* ---- output ------------------------------------------------------------- */

/* "0.8125" or "nan"; figures set to 0 because undefined get a '*'. */
static void put_fig(FILE *out, double v, int undefined) {
  if (isnan(v))
    fprintf(out, " %9s ", "nan");
  else
    fprintf(out, " %9.4f%c", v, undefined ? '*' : ' ');
}

/* Multi-label: summary, then one row per label. */
static void report_multilabel(FILE *out, const nn_metrics_result *r) {
  const int T = r->target_dim;
  fprintf(out, "exact match: %.4f\nmicro precision %.4f  recall %.4f  f1 %.4f\n"
          "macro precision %.4f  recall %.4f  f1 %.4f (over %d labels)\n"
          "ROC AUC: %.4f (macro over %d labels; score resolution 1/%d)\nmAP: %.4f\n",
          r->accuracy, r->micro_precision, r->micro_recall, r->micro_f1, r->macro_precision,
          r->macro_recall, r->macro_f1, r->macro_classes, r->roc_auc, r->auc_classes,
          r->auc_bins, r->map);
  fprintf(out, "\n%-9s  %9s  %9s  %9s  %9s  %9s  %9s\n", "label", "precision", "recall", "f1",
          "support", "roc_auc", "ap");
  for (int j = 0; j < T; j++) {
    const int fl = r->flags[j];
    fprintf(out, "%-9d ", j);
    put_fig(out, r->precision[j], fl & NN_METRICS_NO_PRED);
    put_fig(out, r->recall[j], fl & NN_METRICS_NO_TRUE);
    put_fig(out, r->f1[j], fl & NN_METRICS_ABSENT);
    fprintf(out, " %9.0f ", r->support[j]);
    put_fig(out, r->auc[j], 0);
    put_fig(out, r->ap[j], 0);
    fputc('\n', out);
  }
  fprintf(out, "(threshold 0.5; support: samples with the label; * undefined, reported as 0)\n");
}

int nn_metrics_report(FILE *out, const nn_metrics_result *res,
                      const char *const *class_names, nn_error *err) {
  if (!out || !res) return nn_error_set(err, NN_EINVAL, "metrics: report needs a stream and a result");
  fprintf(out, "samples: %.0f\nloss:    %.6g\n", res->count, res->loss);
  if (res->nfigs > 0) { /* a task's own figures */
    for (int i = 0; i < res->nfigs; i++) fprintf(out, "%s: %.6g\n", res->fig_name[i], res->fig[i]);
  } else if (res->per_token) { /* loss and accuracy only (language models) */
    fprintf(out, "accuracy: %.4f\n", res->accuracy);
  } else if (res->multilabel) {
    report_multilabel(out, res);
  } else if (res->num_classes == 0) {
    fprintf(out, "mse:     %.6g\nmae:     %.6g\nr2:      %.6g\n", res->mse, res->mae, res->r2);
  } else {
    const int k = res->num_classes;
    fprintf(out, "accuracy: %.4f\n", res->accuracy);
    for (int t = 0; t < res->ntopk; t++)
      fprintf(out, "top-%d accuracy: %.4f\n", res->topk[t], res->topk_accuracy[t]);
    if (res->has_auc && k == 2)
      fprintf(out, "ROC AUC: %.4f (score resolution 1/%d)\n", res->roc_auc, res->auc_bins);
    else if (res->has_auc)
      fprintf(out, "ROC AUC: %.4f (one-vs-rest, macro over %d classes; score resolution "
              "1/%d)\n", res->roc_auc, res->auc_classes, res->auc_bins);

    /* name column as wide as the longest name, at least "class" / "macro avg" */
    int w = 9;
    for (int c = 0; c < k; c++) {
      int l = class_names && class_names[c] ? (int)strlen(class_names[c])
                                            : snprintf(NULL, 0, "%d", c);
      if (l > w) w = l;
    }
    if (w > 40) w = 40;
    fprintf(out, "\n%-*s  %9s  %9s  %9s  %9s\n", w, "class", "precision", "recall", "f1",
            "support");
    int any_undef = 0;
    for (int c = 0; c < k; c++) {
      if (class_names && class_names[c])
        fprintf(out, "%-*.*s ", w, w, class_names[c]);
      else
        fprintf(out, "%-*d ", w, c);
      const int fl = res->flags[c];
      put_fig(out, res->precision[c], fl & NN_METRICS_NO_PRED);
      put_fig(out, res->recall[c], fl & NN_METRICS_NO_TRUE);
      put_fig(out, res->f1[c], fl & NN_METRICS_ABSENT);
      fprintf(out, " %9.0f\n", res->support[c]);
      if (fl) any_undef = 1;
    }
    fprintf(out, "%-*s ", w, "macro avg");
    put_fig(out, res->macro_precision, 0);
    put_fig(out, res->macro_recall, 0);
    put_fig(out, res->macro_f1, 0);
    fprintf(out, " %9.0f\n", res->count);
    if (any_undef)
      fprintf(out, "* undefined (no predictions or no samples of the class), reported as 0\n");
    if (res->macro_classes < k)
      fprintf(out, "macro averages over the %d classes seen in labels or predictions\n",
              res->macro_classes);

    if (k <= NN_METRICS_REPORT_MAX_CM && res->confusion) {
      /* cells as wide as the largest count */
      double mx = 0;
      for (size_t i = 0; i < (size_t)k * (size_t)k; i++)
        if (res->confusion[i] > mx) mx = res->confusion[i];
      int cw = snprintf(NULL, 0, "%.0f", mx);
      int hw = snprintf(NULL, 0, "%d", k - 1);
      if (cw < hw) cw = hw;
      fprintf(out, "\nconfusion matrix (rows: true class, columns: predicted class; classes numbered in table order)\n%*s",
              hw + 1, "");
      for (int c = 0; c < k; c++) fprintf(out, " %*d", cw, c);
      fputc('\n', out);
      for (int t = 0; t < k; t++) {
        fprintf(out, "%*d:", hw, t);
        for (int c = 0; c < k; c++)
          fprintf(out, " %*.0f", cw, res->confusion[(size_t)t * (size_t)k + (size_t)c]);
        fputc('\n', out);
      }
    } else if (res->confusion) {
      fprintf(out, "\n(confusion matrix of %d classes not shown; the limit is %d)\n", k,
              NN_METRICS_REPORT_MAX_CM);
    }
  }
  if (ferror(out)) return nn_error_set(err, NN_EIO, "metrics: cannot write the report");
  return 0;
}
