/* step.h: one training or evaluation step of a rank's model replica.
 *
 * A step forwards this rank's slice of the global batch, computes the loss
 * scaled by 1/global_n (so the SUM over ranks of the gradients is the
 * gradient of the mean loss over the global batch), runs backward while the
 * gradient synchronizer reduces finished buckets, and applies the optimizer.
 * Every rank applies the same update to the same summed gradients, so the
 * replicas stay bit-identical. No allocation happens after nn_stepper_init.
 *
 * Frozen layers (core/model.h) take no part: the optimizer (o->n), the
 * gradient sync, zero-grad, penalties and clipping all cover the trainable
 * prefix grads[0, m->ntrainable); nn_stepper_init checks the first two.
 *
 * After the all-reduce and before the optimizer, in this order, on the
 * summed gradients (identical on every rank, so every rank does the same):
 *   1. weight penalties (layers' l1 / l2): grads += l1 sign(w) + 2 l2 w, and
 *      the penalty value is added to the reported loss (core/regularize.h);
 *   2. clipping by value (clip_value > 0), then by global norm (clip_norm > 0);
 *   3. the optimizer step.
 * Before 2, the non-finite flag: if any summed gradient is NaN or Inf (a
 * rank's non-finite loss poisons its output gradient, so that counts too),
 * the step stops there: no clipping, no update, s->nonfinite = 1 and
 * st->nonfinite += 1, the same on every rank. The trainer applies
 * train.on_nonfinite. With -DNN_FAULT_INJECTION=ON, the environment variable
 * NN_FAULT_NONFINITE_STEPS="a,b" makes those global steps' loss NaN (each
 * entry once per process).
 * Activity penalties (activity_l1 / activity_l2) act inside the model's
 * backward (nn_reg_activity_backward before each such layer, scaled by the
 * run context's act_scale); their value joins the reported loss.
 * Evaluation losses never include penalties.
 *
 * Gradient accumulation (train.accumulate = k > 1, s->accumulate): the batch
 * a step receives is this rank's slice of the OPTIMIZER step's global batch
 * (k * train.batch_size samples, b->global_n of them), and the step runs it
 * as k micro-batches of that slice (nn_step_micro: micro-batch i holds the
 * slice's samples [i*n/k, (i+1)*n/k)), each forward and backward in turn,
 * every backward ADDING into the gradients; only the last micro-batch's
 * backward reports buckets to the gradient sync, so there is one all-reduce
 * per optimizer step. The loss is scaled by 1/b->global_n throughout, so the
 * summed gradient is the one of the whole optimizer batch, and the model's
 * max_batch need only hold one micro-batch (nn_step_micro_max). Dropout and
 * sampling noise keep their keys (optimizer step, position in the epoch).
 * A model with carried state (token streams, truncated BPTT) keeps every
 * stream of the slice in s->carry: micro-batch i's streams are copied into
 * the model's arena before its forward and back after it, so each stream
 * goes on from where its previous window ended, as in one k-times larger
 * batch of streams. */
#ifndef NN_WORKER_STEP_H
#define NN_WORKER_STEP_H

#include <stdint.h>

#include "core/err.h"
#include "core/model.h"
#include "core/optim.h"
#include "worker/allreduce.h"
#include "worker/loader.h"

/* Sums over a rank's samples; reduce over ranks for global figures. */
typedef struct nn_step_stats {
  double loss_sum;     /* sum of per-sample losses */
  double correct;      /* classification: samples whose argmax is the label */
  double count;        /* samples */
  int nonfinite;       /* steps whose summed gradient was non-finite (not applied) */
  double fig_sum[4];   /* a task kind's own training figures, summed over samples like
                          loss_sum (run/task.h train_figs: a VAE's ELBO, reconstruction
                          and KL); the trainer reports each sum / count */
  double sync_wait_s;  /* seconds the step waited for the gradient sync after backward:
                          the all-reduce's tail and, mostly, the slowest rank */
} nn_step_stats;

typedef struct nn_stepper {
  nn_model *model;     /* borrowed */
  nn_optim *optim;     /* borrowed; NULL for evaluation only */
  nn_gradsync *sync;   /* borrowed; NULL on one rank */
  int loss;            /* nn_loss_kind */
  int outputs;         /* model output features */
  int seq_t, seq_k;    /* a [T, K] output: per-timestep classes (token streams' tlabels) */
  float *dout;         /* [max_batch, outputs] */
  float *onehot;       /* [max_batch, outputs]: MSE on class labels */
  int weight_penalty;  /* 1 if some layer has l1/l2 on its weights */
  int activity_penalty; /* 1 if some layer has activity_l1/l2 */
  int nonfinite;       /* 1 if the last step's summed gradient held a NaN or Inf */
  double grad_norm;    /* norm before clipping of the last step with clip_norm > 0 */
  /* Gradient clipping, after the all-reduce (0 = off). nn_stepper_init sets
   * both to 0; the trainer sets them from train.clip_value / clip_norm. */
  double clip_value;   /* clip each gradient element to [-clip_value, clip_value] */
  double clip_norm;    /* scale the gradient arena to global L2 norm <= clip_norm */
  int accumulate;      /* micro-batches per optimizer step (train.accumulate); init: 1;
                          set by nn_stepper_accumulate */
  float *carry;        /* with accumulation and carried state (a language model): the
                          slice's streams' state, [accumulate * max_batch,
                          carry_per_sample], row j = the slice's stream j; NULL otherwise
                          (the model's own arena holds it: nn_step_carry) */
  int multilabel;      /* 0/1 targets, one logit each: the training accuracy counts a
                          sample right when every label is (init: 0) */
} nn_stepper;

/* 1 if every x[0, n) is finite (no NaN, no Inf). */
int nn_floats_finite(const float *x, size_t n);

int nn_stepper_init(nn_stepper *s, nn_model *m, nn_optim *o, nn_gradsync *sync, int loss,
                    nn_error *err);
/* k micro-batches per optimizer step (k >= 1); allocates s->carry when
 * k > 1 and the model carries state. 0, or NN_ENOMEM. */
int nn_stepper_accumulate(nn_stepper *s, int k, nn_error *err);
/* The carried state of this rank's streams, row j = the slice's stream j:
 * s->carry with accumulation, else the model's arena (NULL without carry). */
float *nn_step_carry(const nn_stepper *s);
void nn_stepper_free(nn_stepper *s);

/* The pieces of a step for task kinds with a loss of their own (run/tasks/:
 * GAN, VAE), in this order: nn_step_begin (zero the gradients, start the
 * sync), forward and backward passes (the last backward passes
 * nn_step_on_ready, s->sync as its user; earlier ones NULL: a second pass
 * still adds; with accumulation, one pass per micro-batch, nn_step_micro,
 * only the last micro-batch's reporting), nn_step_finish (wait for the sync,
 * timed into st; then, the same on every rank, the non-finite check,
 * clipping and the optimizer). */
void nn_step_begin(nn_stepper *s, uint64_t step);
void nn_step_on_ready(void *sync, size_t offset, size_t count);
int nn_step_finish(nn_stepper *s, double lr, nn_step_stats *st, nn_error *err);

/* The largest micro-batch of a slice of at most max_slice samples cut into
 * k micro-batches: ceil(max_slice / k), the model's max_batch. */
int nn_step_micro_max(int max_slice, int k);
/* Micro-batch i of s->accumulate of batch b (this rank's slice of an
 * optimizer step): a view into b's buffers (no copy), its n possibly 0;
 * global_n stays the optimizer step's, sample0 the micro-batch's first
 * sample (x advances by the model's input size, targets by its output size,
 * tlabels by its timesteps). */
nn_batch nn_step_micro(const nn_stepper *s, const nn_batch *b, int i);

/* One optimizer step on batch b at learning rate lr; adds to st (loss_sum
 * includes this rank's share, b->n / global_n, of the weight penalty). */
int nn_step_train(nn_stepper *s, const nn_batch *b, double lr, uint64_t step,
                  uint64_t seed, nn_step_stats *st, nn_error *err);
/* The loss SUM over batch b of the model outputs out [b->n, outputs]
 * (no gradient): what nn_step_eval adds to loss_sum. */
double nn_step_loss(nn_stepper *s, const nn_batch *b, const float *out);
/* Forward only (evaluation mode); adds loss and accuracy to st. */
void nn_step_eval(nn_stepper *s, const nn_batch *b, uint64_t seed, nn_step_stats *st);

#endif
