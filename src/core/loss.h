/* loss.h: losses over a batch of model outputs.
 *
 * Each returns the SUM over the n samples of the per-sample loss and, when
 * dout is not NULL, writes dout = scale * d(sum)/d(out). The step loop passes
 * scale = 1/global_batch, so after the all-reduce SUM the gradient is the
 * gradient of the mean loss over the global batch, on any number of ranks. */
#ifndef NN_CORE_LOSS_H
#define NN_CORE_LOSS_H

#include <stdint.h>

typedef enum nn_loss_kind {
  NN_LOSS_SOFTMAX_CE, /* "cross_entropy": softmax + negative log likelihood on logits */
  NN_LOSS_MSE,        /* "mse": mean over the k outputs of (out - target)^2 */
  NN_LOSS_BCE,        /* "binary_cross_entropy": sigmoid + binary cross-entropy on
                         logits, mean over the k outputs (nn_loss_bce) */
} nn_loss_kind;

/* Parse a loss name; -1 if unknown. */
int nn_loss_parse(const char *name);
extern const char *const nn_loss_choices; /* "cross_entropy|mse|binary_cross_entropy" */

/* logits [n, k], labels [n] in [0, k). */
double nn_loss_softmax_ce(const float *logits, const int32_t *labels, int n, int k,
                          float scale, float *dlogits);
/* Per-timestep softmax cross-entropy with masking (taggers, language
 * models). logits [n, T, k] (time-major within a sample, as every sequence
 * tensor), targets [n, T] class ids, lengths [n] valid timesteps of each
 * sample (1..T; NULL: all T, core/layer.h nn_run_ctx.lengths).
 *
 * Normalisation. Returns the SUM over the valid timesteps (t < lengths[i])
 * of -log softmax(logits[i, t])[targets[i, t]], and writes dlogits = scale *
 * d(sum)/d(logits). The mean is the caller's to take: with scale = 1 / (the
 * valid timesteps of the GLOBAL batch; each rank's nn_seq_valid_steps,
 * summed over ranks) the all-reduced gradient is that of the mean loss per
 * valid token over the global batch, on any number of ranks, which is what a
 * language model wants (bits per token = that mean / ln 2). Every valid token
 * weighs the same whatever its sample's length.
 *
 * Masking: timesteps t >= lengths[i] add nothing, their rows of dlogits are
 * written as exact zeros, and their targets are not read (padding may hold
 * anything, e.g. -1). A target outside [0, k) at a valid timestep makes the
 * sum NaN and zeroes that row's gradient; a length outside [1, T] makes the
 * sum NaN and zeroes the sample's rows (as nn_loss_softmax_ce: the caller
 * checks isfinite; nothing is read or written out of bounds). */
double nn_loss_seq_softmax_ce(const float *logits, const int32_t *targets,
                              const int32_t *lengths, int n, int t, int k, float scale,
                              float *dlogits);
/* Valid timesteps of n samples of T: the sum of lengths, each clamped to
 * [0, T] (n*T when lengths is NULL). */
int64_t nn_seq_valid_steps(const int32_t *lengths, int n, int t);

/* out, target [n, k]. */
double nn_loss_mse(const float *out, const float *target, int n, int k, float scale,
                   float *dout);

/* Binary cross-entropy from logits: out [n, k] logits x, target [n, k]
 * values t in [0, 1] (0/1 labels of a multi-label shard, or an
 * autoencoder's input). Per sample: (1/k) sum_j l(x_j, t_j) with
 *   l(x, t) = -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))
 *           = max(x, 0) - x t + log(1 + exp(-|x|)),
 * the second form finite for every finite x (no exp overflow, no log(0)).
 * The mean over k is the convention of nn_loss_mse (and of PyTorch's
 * BCEWithLogitsLoss, whose 'mean' is this sum / n); a caller that wants the
 * sum over outputs (a VAE's reconstruction term) multiplies by k.
 * dout = scale * (sigmoid(x) - t) / k; dout may alias out or target. */
double nn_loss_bce(const float *out, const float *target, int n, int k, float scale,
                   float *dout);
/* The logistic function 1 / (1 + exp(-x)), without overflow for any x. */
double nn_sigmoid(double x);

/* Row-wise softmax of logits [n, k] into probs [n, k] (may alias). */
void nn_softmax_rows(const float *logits, float *probs, int n, int k);
/* Index of the largest of k values (first on ties). */
int nn_argmax(const float *v, int k);

#endif
