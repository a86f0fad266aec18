/* optim.h: optimizers as one loop over the parameter arena.
 *
 * An optimizer keeps its slots (momentum, Adam moments) in one arena of
 * nslots * n floats, so a checkpoint saves them in one write. step() applies
 * the same arithmetic on every rank to bit-identical inputs, so replicas stay
 * bit-identical.
 *
 * The update rules follow PyTorch (torch.optim.SGD / Adam / AdamW, single
 * tensor path, dampening 0, no amsgrad), with g the gradient and lr the
 * scheduled rate of this step:
 *   sgd:   g += wd * p; if momentum: buf = momentum * buf + g,
 *          g = nesterov ? g + momentum * buf : buf;   p -= lr * g
 *   adam:  g += wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *          p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   adamw: p *= 1 - lr * wd; then adam without the L2 term.
 *
 * Slot layout in `slots` (each slot is a whole [n] tensor, PyTorch state names):
 *   sgd, momentum == 0:  none (nslots 0, slots NULL)
 *   sgd, momentum > 0:   slot 0 "momentum_buffer"
 *   adam, adamw:         slot 0 "exp_avg" (m), slot 1 "exp_avg_sq" (v)
 * Resuming from a checkpoint = nn_optim_init with the same cfg and n, then
 * copy the saved slots into `slots` and set `t`. */
#ifndef NN_CORE_OPTIM_H
#define NN_CORE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"

typedef struct nn_optim_cfg {
  char type[16];        /* "sgd" | "adam" | "adamw" */
  double lr;            /* base learning rate */
  double momentum;      /* sgd */
  int nesterov;         /* sgd */
  double beta1, beta2;  /* adam */
  double eps;           /* adam */
  double weight_decay;  /* L2 added to the gradient (sgd, adam); decoupled (adamw) */
} nn_optim_cfg;

typedef enum nn_optim_kind {
  NN_OPTIM_SGD,
  NN_OPTIM_ADAM,
  NN_OPTIM_ADAMW,
} nn_optim_kind;

/* Key table for the [optimizer] section (offsets into nn_optim_cfg). */
extern const nn_key nn_optim_keys[];

typedef struct nn_optim {
  nn_optim_cfg cfg;
  size_t n;         /* parameters */
  int nslots;       /* slot tensors per parameter */
  float *slots;     /* [nslots * n], zero at start */
  uint64_t t;       /* steps taken (Adam bias correction) */
  nn_optim_kind kind; /* parsed from cfg.type by nn_optim_init */
} nn_optim;

/* Check a configuration without allocating: known type, every value in its
 * range (the same ranges as nn_optim_keys), nesterov only with momentum > 0.
 * Returns 0 or NN_EINVAL with err->where = "optimizer.<key>" and a one-line
 * message naming the key, the value and what was expected. */
int nn_optim_check(const nn_optim_cfg *cfg, nn_error *err);

/* Validate cfg (as nn_optim_check) and allocate zeroed slots for n
 * parameters; t = 0. On failure *o is left empty (safe to nn_optim_free).
 * Returns 0, NN_EINVAL or NN_ENOMEM. */
int nn_optim_init(nn_optim *o, const nn_optim_cfg *cfg, size_t n, nn_error *err);
/* Free the slots; o may be zeroed or already freed. */
void nn_optim_free(nn_optim *o);
/* PyTorch state name of slot i ("momentum_buffer", "exp_avg", "exp_avg_sq"),
 * or NULL if i is not a slot of o. */
const char *nn_optim_slot_name(const nn_optim *o, int i);
/* One update of params [n] from grads [n] with learning rate lr (the
 * schedule's value for this step; cfg.lr is the base). Increments t first,
 * so the first step uses t = 1. grads is not modified. */
void nn_optim_step(nn_optim *o, float *params, const float *grads, double lr);

#endif
