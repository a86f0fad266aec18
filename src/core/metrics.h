/* metrics.h: evaluation metrics that can be computed over a sharded data set.
 *
 * Every metric here is a function of SUMS and COUNTS, kept in one contiguous
 * array of doubles (the accumulator's `data`). Each rank adds its batches
 * into its own accumulator, the caller sums the arrays element-wise over the
 * ranks (one all-reduce of `len` doubles, in place on `data`), and rank 0
 * calls nn_metrics_finalize on the summed array. Counts are integers held
 * exactly in a double (up to 2^53), so the counting metrics (accuracy,
 * top-k, precision/recall/F1, confusion matrix, ROC AUC) are bit-identical
 * on any number of ranks; the loss and error sums depend on summation order
 * only to float rounding.
 *
 * What this is not: no MPI, no files of its own. nn_metrics_report writes to
 * a FILE* the caller opened. Definitions of every figure: docs/metrics.md.
 *
 * Layout of data[len] (offsets are fields of nn_metrics_acc; k classes,
 * T regression outputs or multi-label labels, B histogram bins, m top-k
 * values, S = auc_sets score histograms: 1 binary, k multi-class
 * (one-vs-rest), T multi-label):
 *   [off_loss]          loss sum (as passed by the caller)
 *   [off_count]         samples
 *   [off_conf]  [k, k]  confusion counts, row = true class, column = argmax
 *   [off_topk]  [m]     samples whose true class ranks within the top topk[i]
 *   [off_auc]   [S, 2, B] per set s: histogram of the score of the positive
 *                       class (binary: class 1; one-vs-rest: class s;
 *                       multi-label: label s), a probability in [0, 1], bin
 *                       b = [b/B, (b+1)/B), of the samples that are positive
 *                       (row 0) and negative (row 1) for it
 *   [off_ml]    [T, 3]  multi-label: per label tp, fp, fn at threshold 0.5
 *   [off_exact]         multi-label: samples with every label right at 0.5
 *   [off_sse]   [T]     regression: sum of (out - target)^2 per output
 *   [off_sae]   [T]     regression: sum of |out - target| per output
 *   [off_sy]    [T]     regression: sum of target per output
 *   [off_syy]   [T]     regression: sum of target^2 per output
 * Sections that do not apply have length 0. */
#ifndef NN_CORE_METRICS_H
#define NN_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

#define NN_METRICS_MAX_TOPK 8       /* most top-k values one accumulator tracks */
#define NN_METRICS_AUC_BINS 4096    /* default histogram bins for ROC AUC */
#define NN_METRICS_AUC_MAX_BINS (1 << 20)
#define NN_METRICS_AUC_MAX_SUMS (1 << 21) /* one-vs-rest and multi-label: B is cut
                                             so that S * 2 * B stays below this
                                             (16 MiB of sums to all-reduce) */
#define NN_METRICS_REPORT_MAX_CM 32 /* nn_metrics_report prints the confusion
                                       matrix only up to this many classes */

/* How to read classification scores [n, k] given to add_classification. */
typedef enum nn_metrics_scores {
  NN_METRICS_LOGITS = 0, /* raw model outputs; softmax gives probabilities */
  NN_METRICS_PROBS = 1,  /* already probabilities (rows sum to 1) */
} nn_metrics_scores;

/* What to accumulate. Zero-initialise, then set the fields that apply. */
typedef struct nn_metrics_config {
  int num_classes;  /* k >= 2: classification; 0: regression or multi-label */
  int target_dim;   /* regression: T >= 1 outputs per sample; multi-label: T >= 1
                       labels; 0 for classification */
  int multilabel;   /* 1: T 0/1 labels per sample, scores [n, T] logits (sigmoid)
                       or probabilities; num_classes 0 */
  int ntopk;        /* entries used in topk (0..NN_METRICS_MAX_TOPK) */
  int topk[NN_METRICS_MAX_TOPK]; /* classification: each 1 <= topk[i] <= k */
  int auc_bins;     /* classification and multi-label: B >= 2 histogram bins for
                       ROC AUC and average precision; 0 = NN_METRICS_AUC_BINS
                       (one-vs-rest and multi-label: at most
                       NN_METRICS_AUC_MAX_SUMS / (2 S)). Ignored for regression. */
  int scores;       /* nn_metrics_scores: how to turn scores into P(class 1) */
} nn_metrics_config;

/* A rank's running sums. Owns data (malloc); free with nn_metrics_acc_free.
 * Read the layout fields, never write them. */
typedef struct nn_metrics_acc {
  nn_metrics_config cfg; /* copy of the config (auc_bins resolved) */
  int auc_bins;          /* B when classification or multi-label, 0 otherwise */
  int auc_sets;          /* S: score histograms (1 binary, k, or T multi-label) */
  size_t off_loss, off_count, off_conf, off_topk, off_auc, off_ml, off_exact;
  size_t off_sse, off_sae, off_sy, off_syy;
  size_t len;            /* doubles in data */
  double *data;          /* [len] sums, see the layout above; owned */
} nn_metrics_acc;

/* Validate cfg, allocate and zero the sums. On failure acc is left empty
 * (data NULL) and nn_metrics_acc_free on it is harmless. */
int nn_metrics_acc_init(nn_metrics_acc *acc, const nn_metrics_config *cfg, nn_error *err);
void nn_metrics_acc_free(nn_metrics_acc *acc);
/* Zero the sums (start a new evaluation pass); layout is unchanged. */
void nn_metrics_acc_reset(nn_metrics_acc *acc);

/* Classification batch: scores [n, k] (logits or probabilities, as
 * cfg.scores says), labels [n] in [0, k), loss_sum = sum over the n samples
 * of the per-sample loss. The predicted class is the argmax of the row, the
 * first on ties (as nn_argmax). A sample is in the top-t when fewer than t
 * classes rank above its true class, where class j ranks above y if
 * score[j] > score[y], or score[j] == score[y] and j < y (the same
 * first-wins tie rule, so top-1 accuracy always equals accuracy).
 * Checks the whole batch first: a label out of range (NN_EDATA) or a
 * non-finite score (NN_ENUMERIC) is reported with its sample index and
 * nothing is added. */
int nn_metrics_add_classification(nn_metrics_acc *acc, const float *scores,
                                  const int32_t *labels, int n, double loss_sum,
                                  nn_error *err);

/* Multi-label batch: scores [n, T] (logits: P = sigmoid, or probabilities,
 * as cfg.scores says), targets [n, T] of 0/1, loss_sum as above. Label j of
 * a sample is predicted when P >= 0.5. A target other than 0/1 (NN_EDATA)
 * or a non-finite score (NN_ENUMERIC) is reported, nothing added. */
int nn_metrics_add_multilabel(nn_metrics_acc *acc, const float *scores, const float *targets,
                              int n, double loss_sum, nn_error *err);

/* Regression batch: out, target [n, T], loss_sum as above. A non-finite
 * value is reported (NN_ENUMERIC) with its sample and output, nothing added. */
int nn_metrics_add_regression(nn_metrics_acc *acc, const float *out, const float *target,
                              int n, double loss_sum, nn_error *err);

/* data += other->data, element-wise (both from the same config): the
 * single-process form of the all-reduce. NN_ESHAPE if the layouts differ. */
int nn_metrics_acc_merge(nn_metrics_acc *acc, const nn_metrics_acc *other, nn_error *err);

/* Per-class flags: which figures were undefined and reported as 0, as
 * scikit-learn's zero_division=0. */
enum {
  NN_METRICS_NO_PRED = 1,   /* no sample predicted as this class: precision := 0 */
  NN_METRICS_NO_TRUE = 2,   /* no sample of this class: recall := 0 */
  NN_METRICS_ABSENT = 4,    /* neither: F1 := 0, class left out of macro averages */
};

/* Final figures. Figures that cannot be computed are NaN (e.g. everything
 * when count == 0, roc_auc unless binary with both classes present). */
#define NN_METRICS_MAX_FIGS 4

typedef struct nn_metrics_result {
  int per_token;              /* 1: a language model's figures (run/tasks/lm.c): count
                                 is tokens, loss and accuracy are per token; the
                                 class/regression fields are unset */
  int num_classes;            /* k, 0 for regression and multi-label */
  int target_dim;             /* T, 0 for classification */
  int multilabel;             /* 1: T labels; the classification fields below are per
                                 label ("class" c = label c; k = T in their sizes),
                                 accuracy is the exact-match ratio (every label right),
                                 confusion is NULL */
  double count;               /* samples */
  double loss;                /* loss sum / count */
  /* classification */
  double accuracy;            /* trace(confusion) / count */
  int ntopk;
  int topk[NN_METRICS_MAX_TOPK];
  double topk_accuracy[NN_METRICS_MAX_TOPK]; /* [ntopk], same order as topk */
  double *precision;          /* [k] tp / (tp + fp); owned by the result */
  double *recall;             /* [k] tp / (tp + fn); owned */
  double *f1;                 /* [k] 2 tp / (2 tp + fp + fn); owned */
  double *support;            /* [k] samples of each true class; owned */
  int *flags;                 /* [k] NN_METRICS_NO_PRED | NO_TRUE | ABSENT; owned */
  int macro_classes;          /* classes averaged: those not ABSENT */
  double macro_precision;     /* mean over those classes */
  double macro_recall;
  double macro_f1;
  double micro_precision;     /* multi-label: sum tp / sum (tp + fp) over labels */
  double micro_recall;        /* multi-label: sum tp / sum (tp + fn) */
  double micro_f1;            /* multi-label: 2 sum tp / sum (2 tp + fp + fn) */
  double *auc;                /* [k] ROC AUC of each class (one-vs-rest) or label; NaN
                                 where it has no positive or no negative; owned
                                 (binary: both are roc_auc; class 0's one-vs-rest
                                 AUC is class 1's) */
  double *ap;                 /* [k] multi-label: average precision of each label
                                 (NaN without positives); NULL otherwise; owned */
  double map;                 /* multi-label: mean of ap over labels with positives */
  const double *confusion;    /* [k, k] row = true, col = predicted; BORROWED:
                                 points into acc->data, valid while the
                                 accumulator lives and is not changed */
  int has_auc;                /* 1 for classification and multi-label */
  double roc_auc;             /* binary: P(score of a positive > score of a
                                 negative), ties (same bin) count half; NaN with
                                 only one class present. k > 2 and multi-label:
                                 the macro average of auc[] over the classes
                                 (labels) where it is defined */
  int auc_classes;            /* classes (labels) in that average */
  int auc_bins;               /* B: score resolution 1/B */
  /* regression (over all n * T values) */
  double mse;
  double mae;
  double r2;                  /* mean over outputs of 1 - SSE/SST (see docs) */
  /* A task's own figures (a GAN's discriminator accuracy, a VAE's ELBO): with
   * nfigs > 0 the result is loss plus these alone, written as <prefix>_<name>
   * (run/tasks/; per_token, classes and targets unset) */
  int nfigs;
  char fig_name[NN_METRICS_MAX_FIGS][24];
  double fig[NN_METRICS_MAX_FIGS];
} nn_metrics_result;

/* Compute the figures from acc->data (after the all-reduce). res must be
 * freed with nn_metrics_result_free, also after a failure. */
int nn_metrics_finalize(const nn_metrics_acc *acc, nn_metrics_result *res, nn_error *err);
void nn_metrics_result_free(nn_metrics_result *res);


/* Human-readable report into out (opened by the caller): summary figures,
 * then for classification a per-class table (precision, recall, F1,
 * support, with '*' on figures set to 0 because undefined) and, up to
 * NN_METRICS_REPORT_MAX_CM classes, the confusion matrix. class_names [k]
 * may be NULL (classes are then numbered). NN_EIO if writing fails. */
int nn_metrics_report(FILE *out, const nn_metrics_result *res,
                      const char *const *class_names, nn_error *err);

#endif
