/* optim.c: SGD (momentum, Nesterov), Adam, AdamW, Adagrad, Adadelta and
 * RMSprop as one loop over the parameter arena (see optim.h for the update
 * rules and the slot layout).
 *
 * Each update is a branch-free loop in float over params [n], grads [n] and
 * the slot tensors; everything that depends only on the step (bias
 * corrections, decay factors) is computed once, in double, before the loop,
 * then rounded to float. The choice of rule happens once per step, outside
 * the loop, so the compiler can vectorize each loop body. */
#include "core/optim.h"
#include "core/mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_FIELD(f) offsetof(nn_optim_cfg, f), sizeof(((nn_optim_cfg *)0)->f)

const nn_key nn_optim_keys[] = {
    {"type", NN_KEY_ENUM, CFG_FIELD(type), 0, 0, "\"adam\"", NN_OPTIM_CHOICES, 0,
     "Update rule: sgd (optionally with momentum / Nesterov), adam, adamw (Adam with "
     "decoupled weight decay), adagrad, adadelta or rmsprop, with PyTorch semantics "
     "(docs/optimizers.md).", 0},
    {"lr", NN_KEY_FLOAT, CFG_FIELD(lr), 0, INFINITY, "0.001", NULL, NN_KEY_MIN_EXCLUSIVE,
     "Base learning rate; the [schedule] scales it step by step. PyTorch's Adadelta "
     "default is 1.0: set it for adadelta.", 0},
    {"momentum", NN_KEY_FLOAT, CFG_FIELD(momentum), 0, 1, "0", NULL, 0,
     "SGD and RMSprop momentum factor in [0, 1); 0 is none.", 0},
    {"nesterov", NN_KEY_BOOL, CFG_FIELD(nesterov), 0, 1, "false", NULL, 0,
     "SGD: use Nesterov momentum (needs momentum > 0).", 0},
    {"beta1", NN_KEY_FLOAT, CFG_FIELD(beta1), 0, 1, "0.9", NULL, 0,
     "Adam/AdamW: decay rate of the first-moment average, in [0, 1).", 0},
    {"beta2", NN_KEY_FLOAT, CFG_FIELD(beta2), 0, 1, "0.999", NULL, 0,
     "Adam/AdamW: decay rate of the second-moment average, in [0, 1).", 0},
    {"eps", NN_KEY_FLOAT, CFG_FIELD(eps), 0, INFINITY, "0", NULL, 0,
     "Term added for numerical stability (to the denominator; inside the square roots "
     "for adadelta); 0 means the type's PyTorch default: 1e-8 (adam, adamw, rmsprop), "
     "1e-10 (adagrad), 1e-6 (adadelta).", 0},
    {"weight_decay", NN_KEY_FLOAT, CFG_FIELD(weight_decay), 0, INFINITY, "0", NULL, 0,
     "Weight decay: an L2 term added to the gradient, except adamw, where it is "
     "decoupled (p *= 1 - lr * weight_decay).", 0},
    {"rho", NN_KEY_FLOAT, CFG_FIELD(rho), 0, 1, "0.9", NULL, 0,
     "Adadelta: decay rate of the squared-gradient and squared-update averages, in [0, 1].",
     0},
    {"alpha", NN_KEY_FLOAT, CFG_FIELD(alpha), 0, 1, "0.99", NULL, 0,
     "RMSprop: decay rate of the squared-gradient average, in [0, 1).", 0},
    {"centered", NN_KEY_BOOL, CFG_FIELD(centered), 0, 1, "false", NULL, 0,
     "RMSprop: divide by the gradient's estimated standard deviation (subtracting the "
     "squared mean gradient) instead of its root mean square.", 0},
    {"initial_accumulator_value", NN_KEY_FLOAT, CFG_FIELD(initial_accumulator_value), 0,
     INFINITY, "0", NULL, 0, "Adagrad: starting value of the sum of squared gradients.", 0},
    {"lr_decay", NN_KEY_FLOAT, CFG_FIELD(lr_decay), 0, INFINITY, "0", NULL, 0,
     "Adagrad: the rate at step t is lr / (1 + (t - 1) * lr_decay).", 0},
    {0},
};

/* Set err for a bad value of optimizer.<key>; returns NN_EINVAL. */
static int bad_key(nn_error *err, const char *key, double value, const char *expected) {
  nn_error_set(err, NN_EINVAL, "optimizer.%s = %g: expected %s", key, value, expected);
  if (err) snprintf(err->where, sizeof err->where, "optimizer.%s", key);
  return NN_EINVAL;
}

/* Parse cfg->type; -1 if unknown. The buffer may lack a terminator if a
 * caller filled it carelessly, so compare within its size only. */
static int parse_kind(const nn_optim_cfg *cfg) {
  static const char *const names[] = {"sgd", "adam", "adamw", "adagrad", "adadelta", "rmsprop"};
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (strncmp(cfg->type, names[i], sizeof cfg->type) == 0) return i;
  return -1;
}

int nn_optim_check(const nn_optim_cfg *cfg, nn_error *err) {
  if (parse_kind(cfg) < 0) {
    char t[sizeof cfg->type + 1];
    memcpy(t, cfg->type, sizeof cfg->type);
    t[sizeof cfg->type] = '\0';
    nn_error_set(err, NN_EINVAL, "optimizer.type = \"%s\": expected one of " NN_OPTIM_CHOICES, t);
    if (err) snprintf(err->where, sizeof err->where, "optimizer.type");
    return NN_EINVAL;
  }
  /* the negated forms also reject NaN */
  if (!(cfg->lr > 0) || !isfinite(cfg->lr))
    return bad_key(err, "lr", cfg->lr, "a finite number > 0");
  if (!(cfg->momentum >= 0 && cfg->momentum < 1))
    return bad_key(err, "momentum", cfg->momentum, "a number in [0, 1)");
  if (cfg->nesterov != 0 && cfg->nesterov != 1)
    return bad_key(err, "nesterov", cfg->nesterov, "true or false");
  int kind = parse_kind(cfg);
  if (cfg->nesterov && kind != NN_OPTIM_SGD)
    return bad_key(err, "nesterov", 1, "false unless optimizer.type = \"sgd\"");
  if (cfg->nesterov && !(cfg->momentum > 0))
    return bad_key(err, "nesterov", 1,
                   "false unless optimizer.momentum > 0 (nesterov = true needs momentum)");
  if (!(cfg->beta1 >= 0 && cfg->beta1 < 1))
    return bad_key(err, "beta1", cfg->beta1, "a number in [0, 1)");
  if (!(cfg->beta2 >= 0 && cfg->beta2 < 1))
    return bad_key(err, "beta2", cfg->beta2, "a number in [0, 1)");
  if (!(cfg->eps >= 0) || !isfinite(cfg->eps))
    return bad_key(err, "eps", cfg->eps, "a finite number >= 0 (0: the type's default)");
  if (!(cfg->weight_decay >= 0) || !isfinite(cfg->weight_decay))
    return bad_key(err, "weight_decay", cfg->weight_decay, "a finite number >= 0");
  if (!(cfg->rho >= 0 && cfg->rho <= 1))
    return bad_key(err, "rho", cfg->rho, "a number in [0, 1]");
  if (!(cfg->alpha >= 0 && cfg->alpha < 1))
    return bad_key(err, "alpha", cfg->alpha, "a number in [0, 1)");
  if (cfg->centered != 0 && cfg->centered != 1)
    return bad_key(err, "centered", cfg->centered, "true or false");
  if (cfg->centered && kind != NN_OPTIM_RMSPROP)
    return bad_key(err, "centered", 1, "false unless optimizer.type = \"rmsprop\"");
  if (!(cfg->initial_accumulator_value >= 0) || !isfinite(cfg->initial_accumulator_value))
    return bad_key(err, "initial_accumulator_value", cfg->initial_accumulator_value,
                   "a finite number >= 0");
  if (!(cfg->lr_decay >= 0) || !isfinite(cfg->lr_decay))
    return bad_key(err, "lr_decay", cfg->lr_decay, "a finite number >= 0");
  return 0;
}

double nn_optim_eps(const nn_optim_cfg *cfg) {
  if (cfg->eps > 0) return cfg->eps;
  switch (parse_kind(cfg)) {
  case NN_OPTIM_ADAM:
  case NN_OPTIM_ADAMW:
  case NN_OPTIM_RMSPROP: return 1e-8;
  case NN_OPTIM_ADAGRAD: return 1e-10;
  case NN_OPTIM_ADADELTA: return 1e-6;
  default: return 0;
  }
}

/* Slot tensors kind needs (see the layout in optim.h). */
static int count_slots(nn_optim_kind kind, const nn_optim_cfg *cfg) {
  switch (kind) {
  case NN_OPTIM_SGD: return cfg->momentum > 0 ? 1 : 0;
  case NN_OPTIM_ADAGRAD: return 1;
  case NN_OPTIM_RMSPROP: return 1 + (cfg->momentum > 0) + (cfg->centered != 0);
  default: return 2;
  }
}

int nn_optim_init(nn_optim *o, const nn_optim_cfg *cfg, size_t n, nn_error *err) {
  memset(o, 0, sizeof *o);
  int rc = nn_optim_check(cfg, err);
  if (rc) return rc;
  nn_optim_kind kind = (nn_optim_kind)parse_kind(cfg);
  int nslots = count_slots(kind, cfg);
  float *slots = NULL;
  if (nslots > 0 && n > 0) {
    if (n > SIZE_MAX / sizeof(float) / (size_t)nslots)
      return nn_error_set(err, NN_ENOMEM, "optimizer: %zu parameters x %d slots overflow",
                          n, nslots);
    slots = nn_calloc((size_t)nslots * n, sizeof(float));
    if (!slots)
      return nn_error_set(err, NN_ENOMEM, "optimizer: cannot allocate %d slots of %zu floats",
                          nslots, n);
  }
  if (kind == NN_OPTIM_ADAGRAD && cfg->initial_accumulator_value != 0)
    for (size_t i = 0; i < n; i++) slots[i] = (float)cfg->initial_accumulator_value;
  o->cfg = *cfg;
  o->cfg.type[sizeof o->cfg.type - 1] = '\0';
  o->cfg.eps = nn_optim_eps(cfg);
  o->n = n;
  o->nslots = nslots;
  o->slots = slots;
  o->t = 0;
  o->kind = kind;
  return 0;
}

void nn_optim_free(nn_optim *o) {
  if (!o) return;
  free(o->slots);
  o->slots = NULL;
  o->nslots = 0;
  o->n = 0;
}

const char *nn_optim_slot_name(const nn_optim *o, int i) {
  if (i < 0 || i >= o->nslots) return NULL;
  switch (o->kind) {
  case NN_OPTIM_SGD: return "momentum_buffer";
  case NN_OPTIM_ADAM:
  case NN_OPTIM_ADAMW: return i == 0 ? "exp_avg" : "exp_avg_sq";
  case NN_OPTIM_ADAGRAD: return "sum";
  case NN_OPTIM_ADADELTA: return i == 0 ? "square_avg" : "acc_delta";
  case NN_OPTIM_RMSPROP:
    if (i == 0) return "square_avg";
    if (i == 1 && o->cfg.momentum > 0) return "momentum_buffer";
    return "grad_avg";
  }
  return NULL;
}

/* Slot i of o: [n] floats. */
static float *slot(nn_optim *o, int i) { return o->slots + (size_t)i * o->n; }

/* p [n], g [n]: p -= lr * (g + wd * p). */
static void sgd_plain(float *restrict p, const float *restrict g, size_t n, float lr,
                      float wd) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    p[i] = p[i] - lr * d;
  }
}

/* p, g, buf [n]: buf = mu * buf + d; p -= lr * buf (classical momentum). */
static void sgd_momentum(float *restrict p, const float *restrict g, float *restrict buf,
                         size_t n, float lr, float wd, float mu) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float b = mu * buf[i] + d;
    buf[i] = b;
    p[i] = p[i] - lr * b;
  }
}

/* p, g, buf [n]: buf = mu * buf + d; p -= lr * (d + mu * buf) (Nesterov). */
static void sgd_nesterov(float *restrict p, const float *restrict g, float *restrict buf,
                         size_t n, float lr, float wd, float mu) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float b = mu * buf[i] + d;
    buf[i] = b;
    p[i] = p[i] - lr * (d + mu * b);
  }
}

/* p, g, m, v [n]. c1 = 1 - b1 and c2 = 1 - b2 (computed in double by the
 * caller, as PyTorch does). wd is the L2 coefficient (adam) or 0 (adamw, whose decay
 * is folded into `keep` = 1 - lr * wd; 1 for adam). step = lr / (1 - b1^t),
 * rbc2 = 1 / sqrt(1 - b2^t). PyTorch divides by sqrt(1 - b2^t); multiplying by
 * its reciprocal differs by at most one rounding and keeps the loop free of
 * a second division. */
static void adam_loop(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, float wd, float keep, float b1,
                      float c1, float b2, float c2, float step, float rbc2, float eps) {
  for (size_t i = 0; i < n; i++) {
    float pi = p[i] * keep;
    float d = g[i] + wd * pi;
    float mi = b1 * m[i] + c1 * d;
    float vi = b2 * v[i] + c2 * d * d;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) * rbc2 + eps;
    p[i] = pi - step * mi / denom;
  }
}

/* p, g, sum [n]: sum += d^2; p -= clr * d / (sqrt(sum) + eps), d = g + wd p. */
static void adagrad_loop(float *restrict p, const float *restrict g, float *restrict sum,
                         size_t n, float clr, float wd, float eps) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float s = sum[i] + d * d;
    sum[i] = s;
    p[i] = p[i] - clr * d / (sqrtf(s) + eps);
  }
}

/* p, g, sq, acc [n]; c = 1 - rho. PyTorch's order of operations: the
 * update is sqrt(acc + eps) / sqrt(sq + eps) * d, then acc is updated. */
static void adadelta_loop(float *restrict p, const float *restrict g, float *restrict sq,
                          float *restrict acc, size_t n, float lr, float wd, float rho,
                          float c, float eps) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float s = rho * sq[i] + c * d * d;
    sq[i] = s;
    float delta = sqrtf(acc[i] + eps) / sqrtf(s + eps) * d;
    acc[i] = rho * acc[i] + c * delta * delta;
    p[i] = p[i] - lr * delta;
  }
}

/* RMSprop. p, g, sq [n]; buf [n] or NULL (no momentum); ga [n] or NULL (not
 * centered); c = 1 - alpha. One loop per combination would vectorize
 * better; the NULL tests are loop-invariant and the compiler unswitches
 * them. */
static void rmsprop_loop(float *restrict p, const float *restrict g, float *restrict sq,
                         float *restrict buf, float *restrict ga, size_t n, float lr,
                         float wd, float alpha, float c, float eps, float mu) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float s = alpha * sq[i] + c * d * d;
    sq[i] = s;
    float den;
    if (ga) {
      float a = alpha * ga[i] + c * d;
      ga[i] = a;
      den = sqrtf(fmaxf(s - a * a, 0.0f)) + eps;
    } else {
      den = sqrtf(s) + eps;
    }
    if (buf) {
      float b = mu * buf[i] + d / den;
      buf[i] = b;
      p[i] = p[i] - lr * b;
    } else {
      p[i] = p[i] - lr * d / den;
    }
  }
}

void nn_optim_step(nn_optim *o, float *params, const float *grads, double lr) {
  const nn_optim_cfg *c = &o->cfg;
  size_t n = o->n;
  o->t++;
  if (n == 0) return;
  float wd = (float)c->weight_decay, eps = (float)c->eps;
  switch (o->kind) {
  case NN_OPTIM_SGD:
    if (o->nslots == 0)
      sgd_plain(params, grads, n, (float)lr, wd);
    else if (c->nesterov)
      sgd_nesterov(params, grads, o->slots, n, (float)lr, wd, (float)c->momentum);
    else
      sgd_momentum(params, grads, o->slots, n, (float)lr, wd, (float)c->momentum);
    break;
  case NN_OPTIM_ADAM:
  case NN_OPTIM_ADAMW: {
    double t = (double)o->t;
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2 = 1.0 - pow(c->beta2, t);
    int decoupled = o->kind == NN_OPTIM_ADAMW;
    float keep = decoupled ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
    adam_loop(params, grads, o->slots, o->slots + n, n, decoupled ? 0.0f : wd, keep,
              (float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2,
              (float)(1.0 - c->beta2), (float)(lr / bc1), (float)(1.0 / sqrt(bc2)), eps);
    break;
  }
  case NN_OPTIM_ADAGRAD: {
    double clr = lr / (1.0 + (double)(o->t - 1) * c->lr_decay);
    adagrad_loop(params, grads, slot(o, 0), n, (float)clr, wd, eps);
    break;
  }
  case NN_OPTIM_ADADELTA:
    adadelta_loop(params, grads, slot(o, 0), slot(o, 1), n, (float)lr, wd, (float)c->rho,
                  (float)(1.0 - c->rho), eps);
    break;
  case NN_OPTIM_RMSPROP: {
    int k = 1;
    float *buf = c->momentum > 0 ? slot(o, k++) : NULL;
    float *ga = c->centered ? slot(o, k++) : NULL;
    rmsprop_loop(params, grads, slot(o, 0), buf, ga, n, (float)lr, wd, (float)c->alpha,
                 (float)(1.0 - c->alpha), eps, (float)c->momentum);
    break;
  }
  }
}

