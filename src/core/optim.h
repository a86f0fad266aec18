/* optim.h: optimizers as one loop over the parameter arena.
 *
 * An optimizer keeps its slots (momentum, Adam moments) in one arena of
 * nslots * n floats, so a checkpoint saves them in one write. step() applies
 * the same arithmetic on every rank to bit-identical inputs, so replicas stay
 * bit-identical. */
#ifndef NN_CORE_OPTIM_H
#define NN_CORE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"

typedef struct nn_optim_cfg {
  char type[16];        /* "sgd" | "adam" */
  double lr;            /* base learning rate */
  double momentum;      /* sgd */
  int nesterov;         /* sgd */
  double beta1, beta2;  /* adam */
  double eps;           /* adam */
  double weight_decay;  /* L2 added to the gradient (sgd, adam) */
} nn_optim_cfg;

/* Key table for the [optimizer] section (offsets into nn_optim_cfg). */
extern const nn_key nn_optim_keys[];

typedef struct nn_optim {
  nn_optim_cfg cfg;
  size_t n;         /* parameters */
  int nslots;       /* slot tensors per parameter */
  float *slots;     /* [nslots * n], zero at start */
  uint64_t t;       /* steps taken (Adam bias correction) */
} nn_optim;

int nn_optim_init(nn_optim *o, const nn_optim_cfg *cfg, size_t n, nn_error *err);
void nn_optim_free(nn_optim *o);
/* One update of params [n] from grads [n] with learning rate lr (the
 * schedule's value for this step; cfg.lr is the base). */
void nn_optim_step(nn_optim *o, float *params, const float *grads, double lr);

#endif
