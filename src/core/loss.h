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
} nn_loss_kind;

/* Parse a loss name; -1 if unknown. */
int nn_loss_parse(const char *name);
extern const char *const nn_loss_choices; /* "cross_entropy|mse" */

/* logits [n, k], labels [n] in [0, k). */
double nn_loss_softmax_ce(const float *logits, const int32_t *labels, int n, int k,
                          float scale, float *dlogits);
/* out, target [n, k]. */
double nn_loss_mse(const float *out, const float *target, int n, int k, float scale,
                   float *dout);

/* Row-wise softmax of logits [n, k] into probs [n, k] (may alias). */
void nn_softmax_rows(const float *logits, float *probs, int n, int k);
/* Index of the largest of k values (first on ties). */
int nn_argmax(const float *v, int k);

#endif
