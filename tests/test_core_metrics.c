/* test_core_metrics.c: evaluation metrics (core/metrics.h) against figures
 * worked out by hand in the comments, brute-force references (pairwise ROC
 * AUC), and the sharded path: accumulating in parts and summing the arrays
 * must equal accumulating everything at once. */
#include <stdint.h>

#include "core/metrics.h"
#include "test.h"

/* Deterministic pseudo-random numbers for the larger cases (LCG). */
static uint32_t lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}
static float unit(uint32_t *s) { return (float)lcg(s) / (float)(1u << 24); }

/* Scores [n, k] that make `pred[i]` the argmax of row i: 2 there, 0 elsewhere. */
static void onehot_scores(float *scores, const int *pred, int n, int k) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < k; j++) scores[i * k + j] = j == pred[i] ? 2.0f : 0.0f;
}

/* The 3-class case used by several tests (n = 10):
 *   true 0: predicted 0,0,0,1   -> row 0 = [3 1 0]
 *   true 1: predicted 1,2       -> row 1 = [0 1 1]
 *   true 2: predicted 0,0,2,2   -> row 2 = [2 0 2]
 *   column sums (predicted):       [5 2 3]
 * accuracy = (3+1+2)/10 = 0.6
 * class 0: P = 3/5 = 0.6,  R = 3/4 = 0.75, F1 = 2*3/(6+2+1) = 2/3
 * class 1: P = 1/2,        R = 1/2,        F1 = 2/(2+1+1) = 1/2
 * class 2: P = 2/3,        R = 2/4 = 0.5,  F1 = 4/(4+1+2) = 4/7
 * macro P = (0.6 + 0.5 + 2/3)/3 = 0.58888..., macro R = (0.75+0.5+0.5)/3 = 0.58333...
 * macro F1 = (2/3 + 1/2 + 4/7)/3 = (28+21+24)/126 = 73/126 = 0.579365...
 * loss: the caller's sum 5.0 over 10 samples -> 0.5 */
static const int32_t c3_labels[10] = {0, 0, 0, 0, 1, 1, 2, 2, 2, 2};
static const int c3_pred[10] = {0, 0, 0, 1, 1, 2, 0, 0, 2, 2};

static int c3_acc(nn_metrics_acc *acc, nn_error *err) {
  nn_metrics_config cfg = {.num_classes = 3, .ntopk = 2, .topk = {1, 2}};
  int rc = nn_metrics_acc_init(acc, &cfg, err);
  if (rc) return rc;
  float scores[30];
  onehot_scores(scores, c3_pred, 10, 3);
  return nn_metrics_add_classification(acc, scores, c3_labels, 10, 5.0, err);
}

static void test_confusion_3class(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  ASSERT_OK(c3_acc(&acc, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  const double cm[9] = {3, 1, 0, 0, 1, 1, 2, 0, 2};
  for (int i = 0; i < 9; i++) ASSERT_NEAR(r.confusion[i], cm[i], 0);
  ASSERT_NEAR(r.count, 10, 0);
  ASSERT_NEAR(r.loss, 0.5, 1e-15);
  ASSERT_NEAR(r.accuracy, 0.6, 1e-15);
  ASSERT_NEAR(r.precision[0], 0.6, 1e-15);
  ASSERT_NEAR(r.recall[0], 0.75, 1e-15);
  ASSERT_NEAR(r.f1[0], 2.0 / 3, 1e-15);
  ASSERT_NEAR(r.precision[1], 0.5, 1e-15);
  ASSERT_NEAR(r.recall[1], 0.5, 1e-15);
  ASSERT_NEAR(r.f1[1], 0.5, 1e-15);
  ASSERT_NEAR(r.precision[2], 2.0 / 3, 1e-15);
  ASSERT_NEAR(r.recall[2], 0.5, 1e-15);
  ASSERT_NEAR(r.f1[2], 4.0 / 7, 1e-15);
  ASSERT_NEAR(r.support[0], 4, 0);
  ASSERT_NEAR(r.support[1], 2, 0);
  ASSERT_NEAR(r.support[2], 4, 0);
  for (int c = 0; c < 3; c++) ASSERT_EQ_INT(r.flags[c], 0);
  ASSERT_EQ_INT(r.macro_classes, 3);
  ASSERT_NEAR(r.macro_precision, (0.6 + 0.5 + 2.0 / 3) / 3, 1e-15);
  ASSERT_NEAR(r.macro_recall, (0.75 + 0.5 + 0.5) / 3, 1e-15);
  ASSERT_NEAR(r.macro_f1, 73.0 / 126, 1e-15);
  /* top-2 with scores 2 at the prediction, 0 elsewhere; equal scores rank
   * the lower class index first. The misses (true, predicted):
   *   (0,1): only class 1 above class 0 (class 2 ties, higher index) -> rank 1, in
   *   (1,2): class 2 above, class 0 ties with a lower index          -> rank 2, out
   *   (2,0) twice: class 0 above, class 1 ties with a lower index    -> rank 2, out
   * top-2 = (6 + 1) / 10 = 0.7 */
  ASSERT_EQ_INT(r.ntopk, 2);
  ASSERT_NEAR(r.topk_accuracy[0], 0.6, 1e-15);
  ASSERT_NEAR(r.topk_accuracy[1], 0.7, 1e-15);
  /* one-vs-rest ROC AUC on the softmax of these scores: the predicted
   * class has p_hi = e^2 / (e^2 + 2), the others p_lo (ties within a class
   * count half):
   *   class 0: positives p0 = hi,hi,hi,lo; negatives 2 hi, 4 lo
   *            -> 3 * (4 + 0.5 * 2) + 1 * (0.5 * 4) = 17 of 24
   *   class 1: positives hi, lo; negatives 1 hi, 7 lo
   *            -> (7 + 0.5) + 0.5 * 7 = 11 of 16
   *   class 2: positives lo,lo,hi,hi; negatives 1 hi, 5 lo
   *            -> 2 * (5 + 0.5) + 2 * 2.5 = 16 of 24
   * macro = (17/24 + 11/16 + 2/3) / 3 = 99/144 */
  ASSERT_EQ_INT(r.has_auc, 1);
  ASSERT_NEAR(r.auc[0], 17.0 / 24, 1e-15);
  ASSERT_NEAR(r.auc[1], 11.0 / 16, 1e-15);
  ASSERT_NEAR(r.auc[2], 16.0 / 24, 1e-15);
  ASSERT_EQ_INT(r.auc_classes, 3);
  ASSERT_NEAR(r.roc_auc, 99.0 / 144, 1e-15);
  ASSERT_TRUE(r.ap == NULL);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
}

/* One-vs-rest ROC AUC, 3 classes, probabilities worked out by hand:
 *   sample  probs            label
 *   0       .7  .2  .1       0
 *   1       .3  .4  .3       0
 *   2       .2  .6  .2       1
 *   3       .5  .3  .2       1
 *   4       .1  .2  .7       2
 *   5       .25 .35 .4       2
 * class 0: positives {.7, .3} vs negatives {.2, .5, .1, .25}: .7 beats 4,
 *          .3 beats 3 (not .5) -> 7/8
 * class 1: positives {.6, .3} vs {.2, .4, .2, .35}: 4 + 2 -> 6/8
 * class 2: positives {.7, .4} vs {.1, .3, .2, .2}: 8/8
 * macro = (0.875 + 0.75 + 1) / 3 = 0.875 (scikit-learn's roc_auc_score with
 * multi_class="ovr", average="macro"). The same from logits log(p), whose
 * softmax is p, and a class with no sample left out of the average. */
static void test_auc_ovr_3class(void) {
  static const float p[18] = {.7f, .2f, .1f, .3f, .4f, .3f, .2f, .6f, .2f,
                              .5f, .3f, .2f, .1f, .2f, .7f, .25f, .35f, .4f};
  static const int32_t y[6] = {0, 0, 1, 1, 2, 2};
  nn_error err = {0};
  for (int kind = 0; kind < 2; kind++) {
    float sc[18];
    for (int i = 0; i < 18; i++) sc[i] = kind ? logf(p[i]) : p[i];
    nn_metrics_config cfg = {.num_classes = 3,
                             .scores = kind ? NN_METRICS_LOGITS : NN_METRICS_PROBS};
    nn_metrics_acc acc;
    nn_metrics_result r = {0};
    ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
    ASSERT_EQ_INT(acc.auc_sets, 3);
    ASSERT_OK(nn_metrics_add_classification(&acc, sc, y, 6, 0, &err));
    ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
    ASSERT_NEAR(r.auc[0], 0.875, 1e-15);
    ASSERT_NEAR(r.auc[1], 0.75, 1e-15);
    ASSERT_NEAR(r.auc[2], 1.0, 1e-15);
    ASSERT_NEAR(r.roc_auc, 0.875, 1e-15);
    nn_metrics_result_free(&r);
    nn_metrics_acc_free(&acc);
  }
  /* 4 classes, class 3 never the label: its AUC is undefined (NaN) and the
   * macro average is over the other three */
  static const int32_t y4[3] = {0, 1, 2};
  float s4[12] = {3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0};
  nn_metrics_config c4 = {.num_classes = 4};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  ASSERT_OK(nn_metrics_acc_init(&acc, &c4, &err));
  ASSERT_OK(nn_metrics_add_classification(&acc, s4, y4, 3, 0, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_TRUE(isnan(r.auc[3]));
  ASSERT_EQ_INT(r.auc_classes, 3);
  ASSERT_NEAR(r.roc_auc, 1.0, 1e-15);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
  /* many classes: the bins are cut so the histograms stay bounded */
  nn_metrics_config big = {.num_classes = 1000};
  ASSERT_OK(nn_metrics_acc_init(&acc, &big, &err));
  ASSERT_TRUE((size_t)acc.auc_bins * 2 * 1000 <= NN_METRICS_AUC_MAX_SUMS);
  ASSERT_TRUE(acc.auc_bins >= 1000);
  nn_metrics_acc_free(&acc);
}

/* Multi-label, T = 3 labels, 5 samples, probabilities (threshold 0.5):
 *   label 0: targets 1 0 1 0 0, scores .9 .8 .4 .1 .1 -> predicted 1 1 0 0 0
 *            tp 1 fp 1 fn 1: P = R = F1 = 0.5
 *            AUC: .9 beats the 3 negatives, .4 beats .1 twice -> 5/6
 *            AP: ranked .9+ .8- .4+ ...: 1/2 * 1 + 1/2 * 2/3 = 5/6
 *   label 1: targets 1 1 0 0 0, scores .7 .6 .3 .2 .1 -> all right
 *            P = R = F1 = 1, AUC = 1, AP = 1
 *   label 2: targets 0 0 0 1 0, scores .6 .2 .35 .3 .1 -> predicted 1 0 0 0 0
 *            tp 0 fp 1 fn 1: P = R = F1 = 0
 *            AUC: .3 beats .2 and .1 of 4 negatives -> 1/2
 *            AP: ranked .6- .35- .3+: 1 * 1/3 = 1/3
 * micro: tp 3 fp 2 fn 2 -> P = R = F1 = 0.6; macro P = R = F1 = 0.5
 * mAP = (5/6 + 1 + 1/3) / 3 = 13/18; macro AUC = (5/6 + 1 + 1/2) / 3 = 7/9
 * exact match: only sample 4 (all 0, none predicted) -> 1/5 */
static const float ml_p[15] = {.9f, .7f, .6f, .8f, .6f, .2f,  .4f, .3f,
                               .35f, .1f, .2f, .3f, .1f, .1f, .1f};
static const float ml_t[15] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0};

static void check_ml_hand(const nn_metrics_result *r) {
  ASSERT_EQ_INT(r->multilabel, 1);
  ASSERT_NEAR(r->count, 5, 0);
  ASSERT_NEAR(r->loss, 0.4, 1e-15);
  ASSERT_NEAR(r->accuracy, 0.2, 1e-15);
  const double P[3] = {0.5, 1, 0}, AUC[3] = {5.0 / 6, 1, 0.5}, AP[3] = {5.0 / 6, 1, 1.0 / 3};
  const double sup[3] = {2, 2, 1};
  for (int j = 0; j < 3; j++) {
    ASSERT_NEAR(r->precision[j], P[j], 1e-15);
    ASSERT_NEAR(r->recall[j], P[j], 1e-15);
    ASSERT_NEAR(r->f1[j], P[j], 1e-15);
    ASSERT_NEAR(r->support[j], sup[j], 0);
    ASSERT_NEAR(r->auc[j], AUC[j], 1e-15);
    ASSERT_NEAR(r->ap[j], AP[j], 1e-15);
  }
  ASSERT_NEAR(r->micro_precision, 0.6, 1e-15);
  ASSERT_NEAR(r->micro_recall, 0.6, 1e-15);
  ASSERT_NEAR(r->micro_f1, 0.6, 1e-15);
  ASSERT_NEAR(r->macro_precision, 0.5, 1e-15);
  ASSERT_NEAR(r->macro_f1, 0.5, 1e-15);
  ASSERT_NEAR(r->map, 13.0 / 18, 1e-15);
  ASSERT_NEAR(r->roc_auc, 7.0 / 9, 1e-15);
  ASSERT_EQ_INT(r->has_auc, 1);
  ASSERT_TRUE(r->confusion == NULL);
}

static void test_multilabel_hand(void) {
  nn_error err = {0};
  for (int kind = 0; kind < 2; kind++) {
    float sc[15];
    for (int i = 0; i < 15; i++) sc[i] = kind ? logf(ml_p[i] / (1 - ml_p[i])) : ml_p[i];
    nn_metrics_config cfg = {.target_dim = 3, .multilabel = 1,
                             .scores = kind ? NN_METRICS_LOGITS : NN_METRICS_PROBS};
    nn_metrics_acc acc, part;
    nn_metrics_result r = {0};
    ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
    ASSERT_OK(nn_metrics_acc_init(&part, &cfg, &err));
    /* two "ranks": samples 0-1 and 2-4, then the sum */
    ASSERT_OK(nn_metrics_add_multilabel(&acc, sc, ml_t, 2, 0.8, &err));
    ASSERT_OK(nn_metrics_add_multilabel(&part, sc + 6, ml_t + 6, 3, 1.2, &err));
    ASSERT_OK(nn_metrics_acc_merge(&acc, &part, &err));
    ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
    check_ml_hand(&r);
    /* the report names the figures */
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ASSERT_TRUE(f != NULL);
    ASSERT_OK(nn_metrics_report(f, &r, NULL, &err));
    fclose(f);
    ASSERT_STR_CONTAINS(buf, "mAP: 0.7222");
    ASSERT_STR_CONTAINS(buf, "exact match: 0.2000");
    nn_metrics_result_free(&r);
    /* a target that is not 0/1 is refused and adds nothing */
    const double before = acc.data[acc.off_count];
    float bad_t[3] = {0, 0.5f, 1};
    ASSERT_EQ_INT(nn_metrics_add_multilabel(&acc, sc, bad_t, 1, 0, &err), NN_EDATA);
    ASSERT_STR_CONTAINS(err.msg, "label 1 of sample 0");
    float nan_s[3] = {0, NAN, 0};
    ASSERT_EQ_INT(nn_metrics_add_multilabel(&acc, nan_s, ml_t, 1, 0, &err), NN_ENUMERIC);
    ASSERT_NEAR(acc.data[acc.off_count], before, 0);
    /* a classification accumulator is not a multi-label one */
    ASSERT_EQ_INT(nn_metrics_add_classification(&acc, sc, NULL, 0, 0, &err), NN_EINVAL);
    nn_metrics_acc_free(&acc);
    nn_metrics_acc_free(&part);
  }
  nn_metrics_config bad = {.num_classes = 3, .target_dim = 3, .multilabel = 1};
  nn_metrics_acc acc;
  ASSERT_EQ_INT(nn_metrics_acc_init(&acc, &bad, &err), NN_EINVAL);
}

/* k = 4, labels [0 0 1 2], all predicted 0:
 * class 0: tp 2, predicted 4, true 2 -> P 0.5, R 1, F1 = 4/(4+2+0) = 2/3
 * class 1, 2: never predicted -> P := 0 (NO_PRED), R = 0, F1 = 0 (defined: fn = 1)
 * class 3: in neither -> everything 0, ABSENT, not averaged
 * macro F1 = (2/3 + 0 + 0)/3 = 2/9 (scikit-learn, zero_division=0, gives the same) */
static void test_undefined_precision_recall(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  nn_metrics_config cfg = {.num_classes = 4};
  ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
  const int32_t labels[4] = {0, 0, 1, 2};
  const int pred[4] = {0, 0, 0, 0};
  float scores[16];
  onehot_scores(scores, pred, 4, 4);
  ASSERT_OK(nn_metrics_add_classification(&acc, scores, labels, 4, 0.0, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_NEAR(r.precision[0], 0.5, 1e-15);
  ASSERT_NEAR(r.recall[0], 1.0, 1e-15);
  ASSERT_NEAR(r.f1[0], 2.0 / 3, 1e-15);
  ASSERT_EQ_INT(r.flags[0], 0);
  ASSERT_EQ_INT(r.flags[1], NN_METRICS_NO_PRED);
  ASSERT_EQ_INT(r.flags[2], NN_METRICS_NO_PRED);
  ASSERT_NEAR(r.precision[1], 0, 0);
  ASSERT_NEAR(r.f1[1], 0, 0);
  ASSERT_EQ_INT(r.flags[3], NN_METRICS_NO_PRED | NN_METRICS_NO_TRUE | NN_METRICS_ABSENT);
  ASSERT_EQ_INT(r.macro_classes, 3);
  ASSERT_NEAR(r.macro_f1, 2.0 / 9, 1e-15);
  ASSERT_NEAR(r.macro_precision, 0.5 / 3, 1e-15);
  ASSERT_NEAR(r.macro_recall, 1.0 / 3, 1e-15);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
}

/* Ties in top-k rank the lower class index first (as argmax does):
 * A [.5 .5 .5 .1] label 2: two equal scores with lower index -> rank 2
 * B [.5 .5 .5 .1] label 0: nothing above -> rank 0 (also the argmax: correct)
 * C [.1 .9 .3 .3] label 3: 0.9 above, 0.3 of class 2 ties lower -> rank 2
 * D [.1 .9 .3 .3] label 2: 0.9 above, class 3 ties but has a higher index -> rank 1
 * E [.2 .2 .2 .2] label 3: all three others tie with lower indices -> rank 3
 * top1 = 1/5 (B) = accuracy, top2 = 2/5 (B, D), top3 = 4/5, top4 = 5/5 */
static void test_topk_ties(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  nn_metrics_config cfg = {.num_classes = 4, .ntopk = 4, .topk = {1, 2, 3, 4}};
  ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
  const float scores[20] = {.5f, .5f, .5f, .1f, .5f, .5f, .5f, .1f, .1f, .9f,
                            .3f, .3f, .1f, .9f, .3f, .3f, .2f, .2f, .2f, .2f};
  const int32_t labels[5] = {2, 0, 3, 2, 3};
  ASSERT_OK(nn_metrics_add_classification(&acc, scores, labels, 5, 1.0, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_NEAR(r.accuracy, 0.2, 1e-15);
  ASSERT_NEAR(r.topk_accuracy[0], 0.2, 1e-15);
  ASSERT_NEAR(r.topk_accuracy[1], 0.4, 1e-15);
  ASSERT_NEAR(r.topk_accuracy[2], 0.8, 1e-15);
  ASSERT_NEAR(r.topk_accuracy[3], 1.0, 1e-15);
  /* predictions: A, B, E -> 0; C, D -> 1 */
  ASSERT_NEAR(r.confusion[3 * 4 + 0], 1, 0);
  ASSERT_NEAR(r.confusion[2 * 4 + 0], 1, 0);
  ASSERT_NEAR(r.confusion[0 * 4 + 0], 1, 0);
  ASSERT_NEAR(r.confusion[3 * 4 + 1], 1, 0);
  ASSERT_NEAR(r.confusion[2 * 4 + 1], 1, 0);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
}

/* Binary scores from probabilities p of class 1: rows [1 - p, p]. */
static int add_binary_probs(nn_metrics_acc *acc, const float *p, const int32_t *y, int n,
                            nn_error *err) {
  float s[64];
  for (int i = 0; i < n; i++) {
    s[2 * i] = 1 - p[i];
    s[2 * i + 1] = p[i];
  }
  return nn_metrics_add_classification(acc, s, y, n, 0.0, err);
}

/* 4 positives, 4 negatives, distinct scores; ascending:
 *   0.1 n, 0.2 n, 0.3 P, 0.4 n, 0.5 P, 0.6 n, 0.7 P, 0.8 P
 * negatives below each positive: 2, 3, 4, 4 -> 13 of the 16 pairs
 * AUC = 13/16 = 0.8125. With logits [0, log(p/(1-p))] the softmax gives the
 * same p, so the same AUC. */
static void test_auc_hand(void) {
  nn_error err = {0};
  const float p[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  const int32_t y[8] = {0, 0, 1, 0, 1, 0, 1, 1};
  for (int kind = 0; kind < 2; kind++) {
    nn_metrics_acc acc;
    nn_metrics_result r = {0};
    nn_metrics_config cfg = {.num_classes = 2, .scores = kind ? NN_METRICS_PROBS
                                                              : NN_METRICS_LOGITS};
    ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
    ASSERT_EQ_INT(acc.auc_bins, NN_METRICS_AUC_BINS);
    if (kind) {
      ASSERT_OK(add_binary_probs(&acc, p, y, 8, &err));
    } else {
      float s[16];
      for (int i = 0; i < 8; i++) {
        s[2 * i] = 0;
        s[2 * i + 1] = logf(p[i] / (1 - p[i]));
      }
      ASSERT_OK(nn_metrics_add_classification(&acc, s, y, 8, 0.0, &err));
    }
    ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
    ASSERT_EQ_INT(r.has_auc, 1);
    ASSERT_NEAR(r.roc_auc, 0.8125, 1e-15);
    /* threshold 0.5 on argmax: predicted 1 for p > 0.5 (0.6 n, 0.7 P, 0.8 P);
     * p = 0.5 ties [0.5, 0.5] -> class 0. accuracy = (3 neg right + 2 pos) / 8 */
    ASSERT_NEAR(r.accuracy, 5.0 / 8, 1e-15);
    nn_metrics_result_free(&r);
    nn_metrics_acc_free(&acc);
  }
}

/* Tied scores count half (Mann-Whitney): positives {0.9, 0.5}, negatives
 * {0.5, 0.1}: pairs (0.9,0.5) 1, (0.9,0.1) 1, (0.5,0.5) 1/2, (0.5,0.1) 1
 * -> 3.5/4 = 0.875 (scikit-learn's roc_auc_score agrees).
 * Resolution: with B = 4 bins, 0.30 (positive) and 0.26 (negative) share
 * bin [0.25, 0.5) and tie -> 0.5; with the default 4096 bins -> 1. */
static void test_auc_ties_and_resolution(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  nn_metrics_config cfg = {.num_classes = 2, .scores = NN_METRICS_PROBS};
  ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
  const float p[4] = {0.9f, 0.5f, 0.5f, 0.1f};
  const int32_t y[4] = {1, 1, 0, 0};
  ASSERT_OK(add_binary_probs(&acc, p, y, 4, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_NEAR(r.roc_auc, 0.875, 1e-15);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);

  const float q[2] = {0.30f, 0.26f};
  const int32_t z[2] = {1, 0};
  for (int coarse = 0; coarse < 2; coarse++) {
    cfg.auc_bins = coarse ? 4 : 0;
    ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
    ASSERT_OK(add_binary_probs(&acc, q, z, 2, &err));
    ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
    ASSERT_NEAR(r.roc_auc, coarse ? 0.5 : 1.0, 1e-15);
    ASSERT_EQ_INT(r.auc_bins, coarse ? 4 : NN_METRICS_AUC_BINS);
    nn_metrics_result_free(&r);
    nn_metrics_acc_free(&acc);
  }
}

/* Only one class present: AUC is undefined -> NaN, and JSON writes null. */
static void test_auc_one_class(void) {
  nn_error err = {0};
  for (int cls = 0; cls < 2; cls++) {
    nn_metrics_acc acc;
    nn_metrics_result r = {0};
    nn_metrics_config cfg = {.num_classes = 2, .scores = NN_METRICS_PROBS};
    ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
    const float p[3] = {0.2f, 0.7f, 0.9f};
    const int32_t y[3] = {cls, cls, cls};
    ASSERT_OK(add_binary_probs(&acc, p, y, 3, &err));
    ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
    ASSERT_EQ_INT(r.has_auc, 1);
    ASSERT_TRUE(isnan(r.roc_auc));
    nn_metrics_result_free(&r);
    nn_metrics_acc_free(&acc);
  }
}

/* Random binary case against the pairwise definition on the quantized
 * scores floor(p * B) (ties count half). */
static void test_auc_matches_pairwise(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  nn_metrics_config cfg = {.num_classes = 2, .scores = NN_METRICS_PROBS, .auc_bins = 64};
  ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
  enum { N = 300 };
  float p[N];
  int32_t y[N];
  uint32_t s = 7;
  for (int i = 0; i < N; i++) {
    y[i] = (int32_t)(lcg(&s) % 3 == 0);
    /* positives lean higher so the AUC is well away from 0.5 */
    p[i] = y[i] ? 0.3f + 0.7f * unit(&s) : 0.8f * unit(&s);
  }
  for (int i = 0; i < N; i += 32) ASSERT_OK(add_binary_probs(&acc, p + i, y + i, N - i < 32 ? N - i : 32, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  double u = 0, np = 0, nn = 0;
  for (int i = 0; i < N; i++) {
    if (!y[i]) continue;
    np++;
    int bi = (int)((double)p[i] * 64);
    for (int j = 0; j < N; j++) {
      if (y[j]) continue;
      int bj = (int)((double)p[j] * 64);
      u += bi > bj ? 1 : bi == bj ? 0.5 : 0;
    }
  }
  for (int j = 0; j < N; j++) nn += !y[j];
  ASSERT_NEAR(r.roc_auc, u / (np * nn), 1e-12);
  ASSERT_TRUE(r.roc_auc > 0.7 && r.roc_auc < 1.0);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
}

/* T = 2, n = 2: out [[1 2] [3 5]], target [[0 2] [1 1]] -> errors [[1 0] [2 4]]
 * MSE = (1 + 0 + 4 + 16)/4 = 5.25, MAE = (1 + 0 + 2 + 4)/4 = 1.75
 * R^2 output 0: targets 0, 1: SST = 0.5, SSE = 1 + 4 = 5   -> 1 - 10 = -9
 *     output 1: targets 2, 1: SST = 0.5, SSE = 0 + 16 = 16 -> 1 - 32 = -31
 *     mean -20. loss: caller's sum 10.5 / 2 samples = 5.25. */
static void test_regression(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  nn_metrics_config cfg = {.target_dim = 2};
  ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
  const float out[4] = {1, 2, 3, 5}, tgt[4] = {0, 2, 1, 1};
  ASSERT_OK(nn_metrics_add_regression(&acc, out, tgt, 2, 10.5, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_NEAR(r.mse, 5.25, 1e-15);
  ASSERT_NEAR(r.mae, 1.75, 1e-15);
  ASSERT_NEAR(r.r2, -20, 1e-12);
  ASSERT_NEAR(r.loss, 5.25, 1e-15);
  ASSERT_TRUE(isnan(r.accuracy));
  ASSERT_NEAR(r.loss, 5.25, 1e-12);
  ASSERT_NEAR(r.mse, 5.25, 1e-12);
  ASSERT_NEAR(r.mae, 1.75, 1e-12);
  ASSERT_NEAR(r.r2, -20, 1e-12);
  nn_metrics_result_free(&r);

  /* exact fit: R^2 = 1; a constant target fitted exactly: 1, missed: 0 */
  nn_metrics_acc_reset(&acc);
  const float fit[4] = {0, 3, 1, 3}, fit_t[4] = {0, 3, 1, 3};
  ASSERT_OK(nn_metrics_add_regression(&acc, fit, fit_t, 2, 0.0, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_NEAR(r.mse, 0, 0);
  ASSERT_NEAR(r.r2, 1, 0); /* output 0 exact, output 1 constant and exact */
  nn_metrics_result_free(&r);
  nn_metrics_acc_reset(&acc);
  const float miss[4] = {0, 2, 1, 3};
  ASSERT_OK(nn_metrics_add_regression(&acc, miss, fit_t, 2, 0.0, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  ASSERT_NEAR(r.r2, 0.5, 1e-15); /* (1 + 0) / 2 */
  ASSERT_NEAR(r.mae, 0.25, 1e-15);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
}

/* Split a data set into two shards at `cut`, accumulate each, sum the arrays
 * (as the all-reduce does): every count equals the one-pass accumulator
 * exactly, sums to rounding; and so do the final figures. */
static void test_sharded_equals_whole(void) {
  nn_error err = {0};
  enum { N = 100, K = 5, T = 3 };
  static float scores[N * K], bin[N * 2], out[N * T], tgt[N * T];
  static int32_t labels[N], blabels[N];
  uint32_t s = 12345;
  for (int i = 0; i < N * K; i++) scores[i] = 4 * unit(&s) - 2;
  for (int i = 0; i < N; i++) labels[i] = (int32_t)(lcg(&s) % K);
  for (int i = 0; i < N; i++) {
    blabels[i] = (int32_t)(lcg(&s) & 1);
    bin[2 * i] = unit(&s);
    bin[2 * i + 1] = unit(&s) + 0.5f * (float)blabels[i];
  }
  for (int i = 0; i < N * T; i++) {
    tgt[i] = 3 * unit(&s);
    out[i] = tgt[i] + unit(&s) - 0.5f;
  }
  const nn_metrics_config cfgs[3] = {
      {.num_classes = K, .ntopk = 3, .topk = {1, 2, 4}},
      {.num_classes = 2, .ntopk = 1, .topk = {1}, .auc_bins = 256},
      {.target_dim = T},
  };
  for (int c = 0; c < 3; c++) {
    for (int cut = 0; cut <= N; cut += 37) {
      nn_metrics_acc whole, a, b;
      ASSERT_OK(nn_metrics_acc_init(&whole, &cfgs[c], &err));
      ASSERT_OK(nn_metrics_acc_init(&a, &cfgs[c], &err));
      ASSERT_OK(nn_metrics_acc_init(&b, &cfgs[c], &err));
      /* per-sample loss 0.01 * i, so the shards' loss sums are known */
      double l_all = 0.01 * N * (N - 1) / 2, l_a = 0.01 * cut * (cut - 1) / 2;
      if (c == 0) {
        ASSERT_OK(nn_metrics_add_classification(&whole, scores, labels, N, l_all, &err));
        ASSERT_OK(nn_metrics_add_classification(&a, scores, labels, cut, l_a, &err));
        ASSERT_OK(nn_metrics_add_classification(&b, scores + cut * K, labels + cut, N - cut,
                                                l_all - l_a, &err));
      } else if (c == 1) {
        ASSERT_OK(nn_metrics_add_classification(&whole, bin, blabels, N, l_all, &err));
        ASSERT_OK(nn_metrics_add_classification(&a, bin, blabels, cut, l_a, &err));
        ASSERT_OK(nn_metrics_add_classification(&b, bin + cut * 2, blabels + cut, N - cut,
                                                l_all - l_a, &err));
      } else {
        ASSERT_OK(nn_metrics_add_regression(&whole, out, tgt, N, l_all, &err));
        ASSERT_OK(nn_metrics_add_regression(&a, out, tgt, cut, l_a, &err));
        ASSERT_OK(nn_metrics_add_regression(&b, out + cut * T, tgt + cut * T, N - cut,
                                            l_all - l_a, &err));
      }
      /* the all-reduce: element-wise sum of the plain arrays */
      ASSERT_EQ_INT(a.len, whole.len);
      ASSERT_OK(nn_metrics_acc_merge(&a, &b, &err));
      for (size_t i = 0; i < whole.len; i++) {
        if (c == 2 || i == whole.off_loss)
          ASSERT_NEAR(a.data[i], whole.data[i], 1e-9 * (1 + fabs(whole.data[i])));
        else
          ASSERT_NEAR(a.data[i], whole.data[i], 0); /* counts: exact */
      }
      nn_metrics_result ra = {0}, rw = {0};
      ASSERT_OK(nn_metrics_finalize(&a, &ra, &err));
      ASSERT_OK(nn_metrics_finalize(&whole, &rw, &err));
      ASSERT_NEAR(ra.count, N, 0);
      ASSERT_NEAR(ra.loss, rw.loss, 1e-12);
      if (c < 2) {
        ASSERT_NEAR(ra.accuracy, rw.accuracy, 0);
        ASSERT_NEAR(ra.macro_f1, rw.macro_f1, 0);
        for (int t = 0; t < ra.ntopk; t++)
          ASSERT_NEAR(ra.topk_accuracy[t], rw.topk_accuracy[t], 0);
        ASSERT_NEAR(ra.topk_accuracy[0], ra.accuracy, 0); /* top-1 is accuracy */
      }
      if (c == 1) {
        ASSERT_NEAR(ra.roc_auc, rw.roc_auc, 0);
        ASSERT_TRUE(ra.roc_auc > 0.5);
      }
      if (c == 2) {
        ASSERT_NEAR(ra.mse, rw.mse, 1e-12);
        ASSERT_NEAR(ra.mae, rw.mae, 1e-12);
        ASSERT_NEAR(ra.r2, rw.r2, 1e-12);
      }
      nn_metrics_result_free(&ra);
      nn_metrics_result_free(&rw);
      nn_metrics_acc_free(&whole);
      nn_metrics_acc_free(&a);
      nn_metrics_acc_free(&b);
    }
  }
}

static void test_report(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_result r = {0};
  nn_metrics_config cfg = {.num_classes = 3};
  ASSERT_OK(nn_metrics_acc_init(&acc, &cfg, &err));
  const int32_t labels[3] = {0, 0, 1};
  const int pred[3] = {0, 1, 1};
  float scores[9];
  onehot_scores(scores, pred, 3, 3);
  ASSERT_OK(nn_metrics_add_classification(&acc, scores, labels, 3, 0.3, &err));
  ASSERT_OK(nn_metrics_finalize(&acc, &r, &err));
  char *text = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&text, &size);
  ASSERT_TRUE(f != NULL);
  const char *const names[3] = {"cat", "dog", "bird"};
  int rc = nn_metrics_report(f, &r, names, &err);
  fclose(f);
  nn_metrics_result_free(&r);
  nn_metrics_acc_free(&acc);
  if (rc) free(text);
  ASSERT_OK(rc);
  /* cat: P 1, R 0.5; dog: P 0.5, R 1; bird absent: 0 with '*' */
  int ok = strstr(text, "accuracy: 0.6667") && strstr(text, "dog ") &&
           strstr(text, "bird") && strstr(text, "0.0000*") &&
           strstr(text, "confusion matrix") && strstr(text, "0: 1 1 0") &&
           strstr(text, "macro averages over the 2 classes");
  if (!ok || getenv("NN_TEST_SHOW")) fprintf(stderr, "%s", text);
  free(text);
  ASSERT_TRUE(ok);
}

static void test_bad_input(void) {
  nn_error err = {0};
  nn_metrics_acc acc;
  nn_metrics_config bad[] = {
      {.num_classes = 1},
      {.num_classes = 0, .target_dim = 0},
      {.num_classes = 3, .target_dim = 2},
      {.num_classes = 3, .ntopk = 1, .topk = {4}},
      {.num_classes = 3, .ntopk = 1, .topk = {0}},
      {.num_classes = 3, .ntopk = NN_METRICS_MAX_TOPK + 1},
      {.target_dim = 1, .ntopk = 1, .topk = {1}},
      {.num_classes = 2, .auc_bins = 1},
      {.num_classes = 2, .scores = 7},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ASSERT_EQ_INT(nn_metrics_acc_init(&acc, &bad[i], &err), NN_EINVAL);
    ASSERT_TRUE(acc.data == NULL);
    nn_metrics_acc_free(&acc); /* harmless on a failed init */
  }

  /* a bad label or score rejects the whole batch: nothing is added */
  ASSERT_OK(c3_acc(&acc, &err));
  static double before[3 * 2 * NN_METRICS_AUC_BINS + 64]; /* one-vs-rest histograms */
  ASSERT_TRUE(acc.len <= sizeof before / sizeof before[0]);
  memcpy(before, acc.data, acc.len * sizeof(double));
  float s[6] = {1, 0, 0, 0, 1, 0};
  int32_t y[2] = {0, 3};
  ASSERT_EQ_INT(nn_metrics_add_classification(&acc, s, y, 2, 1.0, &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "label 3 of sample 1 is outside 0..2");
  y[1] = 1;
  s[4] = NAN;
  ASSERT_EQ_INT(nn_metrics_add_classification(&acc, s, y, 2, 1.0, &err), NN_ENUMERIC);
  ASSERT_STR_CONTAINS(err.msg, "class 1 for sample 1");
  ASSERT_TRUE(memcmp(before, acc.data, acc.len * sizeof(double)) == 0);
  /* wrong kind of batch for the accumulator */
  ASSERT_EQ_INT(nn_metrics_add_regression(&acc, s, s, 1, 0.0, &err), NN_EINVAL);

  nn_metrics_acc other;
  nn_metrics_config cfg = {.num_classes = 3};
  ASSERT_OK(nn_metrics_acc_init(&other, &cfg, &err));
  ASSERT_EQ_INT(nn_metrics_acc_merge(&acc, &other, &err), NN_ESHAPE);
  nn_metrics_acc_free(&other);

  cfg = (nn_metrics_config){.target_dim = 2};
  ASSERT_OK(nn_metrics_acc_init(&other, &cfg, &err));
  const float o[4] = {0, 1, INFINITY, 1}, t[4] = {0, 1, 0, 1};
  ASSERT_EQ_INT(nn_metrics_add_regression(&other, o, t, 2, 0.0, &err), NN_ENUMERIC);
  ASSERT_STR_CONTAINS(err.msg, "output 0 of sample 1");
  ASSERT_NEAR(other.data[other.off_count], 0, 0);
  nn_metrics_acc_free(&other);
  nn_metrics_acc_free(&acc);
}

TEST_MAIN(TEST(test_auc_ovr_3class), TEST(test_multilabel_hand), TEST(test_confusion_3class), TEST(test_undefined_precision_recall),
          TEST(test_topk_ties), TEST(test_auc_hand), TEST(test_auc_ties_and_resolution),
          TEST(test_auc_one_class), TEST(test_auc_matches_pairwise), TEST(test_regression),
          TEST(test_sharded_equals_whole), TEST(test_report),
          TEST(test_bad_input))
