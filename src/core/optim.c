/* optim.c: SGD (momentum, Nesterov), Adam and AdamW as one loop over the
 * parameter arena (see optim.h for the update rules and the slot layout).
 *
 * Each update is a branch-free loop in float over params [n], grads [n] and
 * the slot tensors; everything that depends only on the step (bias
 * corrections, decay factors) is computed once, in double, before the loop,
 * then rounded to float. The choice of rule happens once per step, outside
 * the loop, so the compiler can vectorize each loop body. */
#include "core/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_FIELD(f) offsetof(nn_optim_cfg, f), sizeof(((nn_optim_cfg *)0)->f)

const nn_key nn_optim_keys[] = {
    {"type", NN_KEY_ENUM, CFG_FIELD(type), 0, 0, "\"adam\"", "sgd|adam|adamw", 0,
     "Update rule: sgd (optionally with momentum / Nesterov), adam, or adamw "
     "(Adam with decoupled weight decay), with PyTorch semantics.", 0},
    {"lr", NN_KEY_FLOAT, CFG_FIELD(lr), 0, INFINITY, "0.001", NULL, NN_KEY_MIN_EXCLUSIVE,
     "Base learning rate; the [schedule] scales it step by step.", 0},
    {"momentum", NN_KEY_FLOAT, CFG_FIELD(momentum), 0, 1, "0", NULL, 0,
     "SGD momentum factor in [0, 1); 0 is plain SGD.", 0},
    {"nesterov", NN_KEY_BOOL, CFG_FIELD(nesterov), 0, 1, "false", NULL, 0,
     "SGD: use Nesterov momentum (needs momentum > 0).", 0},
    {"beta1", NN_KEY_FLOAT, CFG_FIELD(beta1), 0, 1, "0.9", NULL, 0,
     "Adam/AdamW: decay rate of the first-moment average, in [0, 1).", 0},
    {"beta2", NN_KEY_FLOAT, CFG_FIELD(beta2), 0, 1, "0.999", NULL, 0,
     "Adam/AdamW: decay rate of the second-moment average, in [0, 1).", 0},
    {"eps", NN_KEY_FLOAT, CFG_FIELD(eps), 0, INFINITY, "1e-8", NULL, NN_KEY_MIN_EXCLUSIVE,
     "Adam/AdamW: added to the denominator, outside the square root.", 0},
    {"weight_decay", NN_KEY_FLOAT, CFG_FIELD(weight_decay), 0, INFINITY, "0", NULL, 0,
     "Weight decay: an L2 term added to the gradient for sgd and adam, decoupled "
     "(p *= 1 - lr * weight_decay) for adamw.", 0},
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
  static const char *const names[] = {"sgd", "adam", "adamw"};
  for (int i = 0; i < 3; i++)
    if (strncmp(cfg->type, names[i], sizeof cfg->type) == 0) return i;
  return -1;
}

int nn_optim_check(const nn_optim_cfg *cfg, nn_error *err) {
  if (parse_kind(cfg) < 0) {
    char t[sizeof cfg->type + 1];
    memcpy(t, cfg->type, sizeof cfg->type);
    t[sizeof cfg->type] = '\0';
    nn_error_set(err, NN_EINVAL, "optimizer.type = \"%s\": expected one of sgd|adam|adamw", t);
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
  if (cfg->nesterov && !(cfg->momentum > 0))
    return bad_key(err, "nesterov", 1,
                   "false unless optimizer.momentum > 0 (nesterov = true needs momentum)");
  if (!(cfg->beta1 >= 0 && cfg->beta1 < 1))
    return bad_key(err, "beta1", cfg->beta1, "a number in [0, 1)");
  if (!(cfg->beta2 >= 0 && cfg->beta2 < 1))
    return bad_key(err, "beta2", cfg->beta2, "a number in [0, 1)");
  if (!(cfg->eps > 0) || !isfinite(cfg->eps))
    return bad_key(err, "eps", cfg->eps, "a finite number > 0");
  if (!(cfg->weight_decay >= 0) || !isfinite(cfg->weight_decay))
    return bad_key(err, "weight_decay", cfg->weight_decay, "a finite number >= 0");
  return 0;
}

int nn_optim_init(nn_optim *o, const nn_optim_cfg *cfg, size_t n, nn_error *err) {
  memset(o, 0, sizeof *o);
  int rc = nn_optim_check(cfg, err);
  if (rc) return rc;
  nn_optim_kind kind = (nn_optim_kind)parse_kind(cfg);
  int nslots = kind == NN_OPTIM_SGD ? (cfg->momentum > 0 ? 1 : 0) : 2;
  float *slots = NULL;
  if (nslots > 0 && n > 0) {
    if (n > SIZE_MAX / sizeof(float) / (size_t)nslots)
      return nn_error_set(err, NN_ENOMEM, "optimizer: %zu parameters x %d slots overflow",
                          n, nslots);
    slots = calloc((size_t)nslots * n, sizeof(float));
    if (!slots)
      return nn_error_set(err, NN_ENOMEM, "optimizer: cannot allocate %d slots of %zu floats",
                          nslots, n);
  }
  o->cfg = *cfg;
  o->cfg.type[sizeof o->cfg.type - 1] = '\0';
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
  if (o->kind == NN_OPTIM_SGD) return "momentum_buffer";
  return i == 0 ? "exp_avg" : "exp_avg_sq";
}

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

void nn_optim_step(nn_optim *o, float *params, const float *grads, double lr) {
  const nn_optim_cfg *c = &o->cfg;
  size_t n = o->n;
  o->t++;
  if (n == 0) return;
  switch (o->kind) {
  case NN_OPTIM_SGD:
    if (o->nslots == 0)
      sgd_plain(params, grads, n, (float)lr, (float)c->weight_decay);
    else if (c->nesterov)
      sgd_nesterov(params, grads, o->slots, n, (float)lr, (float)c->weight_decay,
                   (float)c->momentum);
    else
      sgd_momentum(params, grads, o->slots, n, (float)lr, (float)c->weight_decay,
                   (float)c->momentum);
    break;
  case NN_OPTIM_ADAM:
  case NN_OPTIM_ADAMW: {
    double t = (double)o->t;
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2 = 1.0 - pow(c->beta2, t);
    int decoupled = o->kind == NN_OPTIM_ADAMW;
    float wd = decoupled ? 0.0f : (float)c->weight_decay;
    float keep = decoupled ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
    adam_loop(params, grads, o->slots, o->slots + n, n, wd, keep, (float)c->beta1,
              (float)(1.0 - c->beta1), (float)c->beta2, (float)(1.0 - c->beta2),
              (float)(lr / bc1), (float)(1.0 / sqrt(bc2)), (float)c->eps);
    break;
  }
  }
}
