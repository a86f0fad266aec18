/* lint.h: checks of a built model against its job for the classic mistakes
 * that train without an error but learn badly or not at all.
 *
 *   refused (NN_ESCHEMA): a softmax feeding the model's output when the loss
 *     is cross_entropy, which applies its own softmax (softmax applied
 *     twice: the gradients shrink and training stalls). A softmax layer and
 *     a dense layer's activation = "softmax" are both caught; flatten and
 *     dropout between it and the output do not hide it.
 *   warned: a non-negative activation (relu, softplus, sigmoid,
 *     hard_sigmoid) on the output of a classifier trained with
 *     cross_entropy: its logits cannot go below zero (or are squashed), so
 *     the wrong classes cannot be pushed down. Pooling, flatten and dropout
 *     after it keep that property and are looked through.
 *
 * The model is the one nn_model_build made from job->model.layers; the
 * messages name the job file, the layer config's line and the layer. */
#ifndef NN_COORDINATOR_LINT_H
#define NN_COORDINATOR_LINT_H

#include "coordinator/job.h"
#include "core/err.h"
#include "core/model.h"

/* Check m (built from job) for training with `loss` (an nn_loss_kind,
 * core/loss.h). Returns 0, calling warn(user, msg) once per warning (warn may
 * be NULL: warnings dropped; msg is one line, "FILE:LINE: layer ...", valid
 * during the call), or NN_ESCHEMA with err naming the job file, the line of
 * the layer's config and the layer (err->where). */
int nn_lint_model(const nn_job *job, const nn_model *m, int loss,
                  void (*warn)(void *user, const char *msg), void *user, nn_error *err);

#endif
