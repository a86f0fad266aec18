/* optim.h: optimizers as one loop over the parameter arena.
 *
 * An optimizer keeps its slots (momentum, Adam moments, accumulators) in one
 * arena of nslots * n floats, so a checkpoint saves them in one write. step()
 * applies the same arithmetic on every rank to bit-identical inputs, so
 * replicas stay bit-identical.
 *
 * The update rules follow PyTorch (torch.optim.SGD / Adam / AdamW / Adagrad /
 * Adadelta / RMSprop, single tensor path, dampening 0, no amsgrad, no
 * maximize), with g the gradient, lr the scheduled rate of this step, t the
 * step count (1 on the first step) and wd = weight_decay:
 *   sgd:      g += wd p; if momentum: buf = momentum buf + g,
 *             g = nesterov ? g + momentum buf : buf;   p -= lr g
 *   adam:     g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *             p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   adamw:    p *= 1 - lr wd; then adam without the L2 term.
 *   adagrad:  g += wd p; sum += g^2;
 *             p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)
 *             (sum starts at initial_accumulator_value)
 *   adadelta: g += wd p; sq = rho sq + (1 - rho) g^2;
 *             d = sqrt(acc + eps) / sqrt(sq + eps) * g;
 *             acc = rho acc + (1 - rho) d^2;   p -= lr d
 *   rmsprop:  g += wd p; sq = alpha sq + (1 - alpha) g^2;
 *             centered: ga = alpha ga + (1 - alpha) g, den = sqrt(sq - ga^2) + eps
 *             (sq - ga^2 is clamped at 0, where PyTorch would give NaN);
 *             else den = sqrt(sq) + eps;
 *             momentum: buf = momentum buf + g / den, p -= lr buf; else p -= lr g / den
 *
 * eps = 0 in the configuration means the type's PyTorch default (adam, adamw,
 * rmsprop 1e-8; adagrad 1e-10; adadelta 1e-6); nn_optim_init stores the
 * value it uses in o->cfg.eps. PyTorch's Adadelta default lr is 1.0; the lr
 * key is shared (default 0.001), so an Adadelta job should set lr = 1.0.
 *
 * Slot layout in `slots` (each slot is a whole [n] tensor, PyTorch state names):
 *   sgd, momentum == 0:  none (nslots 0, slots NULL)
 *   sgd, momentum > 0:   slot 0 "momentum_buffer"
 *   adam, adamw:         slot 0 "exp_avg" (m), slot 1 "exp_avg_sq" (v)
 *   adagrad:             slot 0 "sum" (starts at initial_accumulator_value)
 *   adadelta:            slot 0 "square_avg", slot 1 "acc_delta"
 *   rmsprop:             slot 0 "square_avg", then "momentum_buffer" if
 *                        momentum > 0, then "grad_avg" if centered
 * Resuming from a checkpoint = nn_optim_init with the same cfg and n, then
 * copy the saved slots into `slots` and set `t`. */
#ifndef NN_CORE_OPTIM_H
#define NN_CORE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"

typedef struct nn_optim_cfg {
  char type[16];        /* "sgd" | "adam" | "adamw" | "adagrad" | "adadelta" | "rmsprop" */
  double lr;            /* base learning rate */
  double momentum;      /* sgd, rmsprop */
  int nesterov;         /* sgd */
  double beta1, beta2;  /* adam, adamw */
  double eps;           /* adam, adamw, adagrad, adadelta, rmsprop; 0 = the type's default */
  double weight_decay;  /* L2 added to the gradient (all but adamw); decoupled (adamw) */
  double rho;           /* adadelta: decay of the running averages */
  double alpha;         /* rmsprop: decay of the squared-gradient average */
  int centered;         /* rmsprop: normalize by the gradient's estimated variance */
  double initial_accumulator_value; /* adagrad: starting value of "sum" */
  double lr_decay;      /* adagrad: lr / (1 + (t - 1) lr_decay) */
} nn_optim_cfg;

typedef enum nn_optim_kind {
  NN_OPTIM_SGD,
  NN_OPTIM_ADAM,
  NN_OPTIM_ADAMW,
  NN_OPTIM_ADAGRAD,
  NN_OPTIM_ADADELTA,
  NN_OPTIM_RMSPROP,
} nn_optim_kind;

/* The optimizer.type choices, in nn_optim_kind order. */
#define NN_OPTIM_CHOICES "sgd|adam|adamw|adagrad|adadelta|rmsprop"

/* Key table for the [optimizer] section (offsets into nn_optim_cfg). */
extern const nn_key nn_optim_keys[];

typedef struct nn_optim {
  nn_optim_cfg cfg;
  size_t n;         /* parameters */
  int nslots;       /* slot tensors per parameter */
  float *slots;     /* [nslots * n], zero at start (adagrad: initial_accumulator_value) */
  uint64_t t;       /* steps taken (Adam bias correction) */
  nn_optim_kind kind; /* parsed from cfg.type by nn_optim_init */
} nn_optim;

/* Check a configuration without allocating: known type, every value in its
 * range (the same ranges as nn_optim_keys), nesterov only for sgd with
 * momentum > 0, centered only for rmsprop.
 * Returns 0 or NN_EINVAL with err->where = "optimizer.<key>" and a one-line
 * message naming the key, the value and what was expected. */
int nn_optim_check(const nn_optim_cfg *cfg, nn_error *err);

/* Validate cfg (as nn_optim_check) and allocate zeroed slots for n
 * parameters; t = 0. On failure *o is left empty (safe to nn_optim_free).
 * Returns 0, NN_EINVAL or NN_ENOMEM. */
int nn_optim_init(nn_optim *o, const nn_optim_cfg *cfg, size_t n, nn_error *err);
/* The eps a configuration uses: cfg->eps, or the type's default when it is 0
 * (0 as well for sgd, which has none). */
double nn_optim_eps(const nn_optim_cfg *cfg);
/* Free the slots; o may be zeroed or already freed. */
void nn_optim_free(nn_optim *o);
/* PyTorch state name of slot i ("momentum_buffer", "exp_avg", "sum", ...),
 * or NULL if i is not a slot of o. */
const char *nn_optim_slot_name(const nn_optim *o, int i);
/* One update of params [n] from grads [n] with learning rate lr (the
 * schedule's value for this step; cfg.lr is the base). Increments t first,
 * so the first step uses t = 1. grads is not modified. */
void nn_optim_step(nn_optim *o, float *params, const float *grads, double lr);

#endif
