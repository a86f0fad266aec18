/* step.h: one training or evaluation step of a rank's model replica.
 *
 * A step forwards this rank's slice of the global batch, computes the loss
 * scaled by 1/global_n (so the SUM over ranks of the gradients is the
 * gradient of the mean loss over the global batch), runs backward while the
 * gradient synchronizer reduces finished buckets, and applies the optimizer.
 * Every rank applies the same update to the same summed gradients, so the
 * replicas stay bit-identical. No allocation happens after nn_stepper_init. */
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
} nn_step_stats;

typedef struct nn_stepper {
  nn_model *model;     /* borrowed */
  nn_optim *optim;     /* borrowed; NULL for evaluation only */
  nn_gradsync *sync;   /* borrowed; NULL on one rank */
  int loss;            /* nn_loss_kind */
  int outputs;         /* model output features */
  float *dout;         /* [max_batch, outputs] */
  float *onehot;       /* [max_batch, outputs]: MSE on class labels */
} nn_stepper;

int nn_stepper_init(nn_stepper *s, nn_model *m, nn_optim *o, nn_gradsync *sync, int loss,
                    nn_error *err);
void nn_stepper_free(nn_stepper *s);

/* One optimizer step on batch b at learning rate lr; adds to st. */
int nn_step_train(nn_stepper *s, const nn_batch *b, double lr, uint64_t step,
                  uint64_t seed, nn_step_stats *st, nn_error *err);
/* The loss SUM over batch b of the model outputs out [b->n, outputs]
 * (no gradient): what nn_step_eval adds to loss_sum. */
double nn_step_loss(nn_stepper *s, const nn_batch *b, const float *out);
/* Forward only (evaluation mode); adds loss and accuracy to st. */
void nn_step_eval(nn_stepper *s, const nn_batch *b, uint64_t seed, nn_step_stats *st);

#endif
