/* regularize.h: weight and activity penalties, and gradient clipping, as pure
 * math on a model's arenas. No MPI here: the step loop (worker/step.c) calls
 * these AFTER the gradients are summed over ranks, so every rank adds the
 * same penalty gradient and clips the same way, once, and the replicas stay
 * bit-identical.
 *
 * Order in a training step (docs/optimizers.md):
 *   1. backward, all-reduce: grads = gradient of the mean data loss
 *   2. weight penalties: grads += l1 sign(w) + 2 l2 w        (nn_reg_weight_apply)
 *   3. clipping by value, then by global norm                (nn_clip_by_value,
 *                                                             nn_clip_by_norm)
 *   4. the optimizer's update
 * Activity penalties act inside backward (their gradient enters each layer's
 * output gradient before that layer's backward: nn_reg_activity_backward).
 *
 * Which tensors are "weights": the tensors named "weight" of layer types
 * whose ops set penalize_weight (dense and conv2d: the linear maps). Biases are not, and neither are the
 * "weight" tensors of batchnorm (its scale) or prelu (its slopes), which
 * PyTorch also names "weight" but which Keras's kernel_regularizer does not
 * touch. A layer's l1 / l2 keys apply to its own weights; the model's
 * layer list includes layers nested in blocks, so their keys apply too.
 *
 * Loss convention (Keras's): the penalty of a layer is l1 * sum|w| + l2 *
 * sum w^2, added once per step to the mean loss of the global batch; the
 * activity penalty is activity_l1 * sum|y| + activity_l2 * sum y^2 over the
 * outputs of the whole global batch, divided by its size global_n. The
 * subgradient of |x| at 0 is taken as 0. */
#ifndef NN_CORE_REGULARIZE_H
#define NN_CORE_REGULARIZE_H

#include <stddef.h>

#include "core/model.h"

/* 1 if parameter p of layer l is a weight that its l1/l2 penalize. */
int nn_reg_is_weight(const nn_layer *l, int p);

/* 1 if some layer of m has l1 or l2 > 0 and a weight tensor. Frozen layers
 * (core/model.h) have no weight penalty: they are skipped here and below. */
int nn_reg_has_weight_penalty(const nn_model *m);

/* The weight penalty sum over layers of l1 sum|w| + l2 sum w^2, summed in
 * double in layer order, with w read from params (an arena laid out as
 * m->params, [m->nparams]). */
double nn_reg_weight_penalty(const nn_model *m, const float *params);

/* grads [m->ntrainable] += l1 sign(w) + 2 l2 w for every weight w of params
 * [m->nparams] (arenas laid out as m's). Returns the penalty value, as
 * nn_reg_weight_penalty. Deterministic: the same inputs give the same bits. */
double nn_reg_weight_apply(const nn_model *m, const float *params, float *grads);

/* 1 if some layer of m has activity_l1 or activity_l2 > 0. */
int nn_reg_has_activity(const nn_model *m);

/* a1 * sum|y| + a2 * sum y^2 over y [count], in double. */
double nn_reg_activity_sum(double a1, double a2, const float *y, size_t count);

/* dy [count] += scale * (a1 sign(y) + 2 a2 y): the gradient of
 * scale * nn_reg_activity_sum(a1, a2, y, count) with respect to y [count]. */
void nn_reg_activity_grad(double a1, double a2, const float *y, float *dy, size_t count,
                          float scale);

/* The sum of nn_reg_activity_sum over every layer of m with an activity
 * penalty, on its outputs of the last forward of n samples (m->act): this
 * rank's share of the activity penalty times global_n. */
double nn_reg_activity_model_sum(const nn_model *m, int n);

/* The hook a backward pass calls just before layer l's backward: adds to dy
 * [n, out] (the gradient w.r.t. l's output y [n, out]) the gradient of l's
 * activity penalty scaled by `scale` = 1 / global_n. Does nothing when l has
 * no activity penalty or scale is 0 (gradient checks, evaluation). */
void nn_reg_activity_backward(const nn_layer *l, const float *y, float *dy, int n,
                              float scale);

/* Clip every g [n] to [-clip, clip] (torch.nn.utils.clip_grad_value_);
 * clip > 0. NaN stays NaN. Returns how many elements were changed. */
size_t nn_clip_by_value(float *g, size_t n, double clip);

/* The L2 norm of g [n], squares summed in double in index order. */
double nn_grad_norm(const float *g, size_t n);

/* torch.nn.utils.clip_grad_norm_ over the whole arena g [n] as one vector:
 * norm = ||g||, and when max_norm / (norm + 1e-6) < 1 every element is
 * multiplied by that factor (in float). Returns the norm before clipping.
 * A non-finite norm leaves g unchanged (the caller's loss check stops the
 * run); PyTorch would scale by NaN or 0. max_norm > 0. */
double nn_clip_by_norm(float *g, size_t n, double max_norm);

#endif
