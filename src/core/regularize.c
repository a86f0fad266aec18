/* regularize.c: weight and activity penalties and gradient clipping (see
 * regularize.h for the definitions, the order in a step and which tensors
 * are weights). Every sum runs in double in a fixed order, so all ranks get
 * the same bits from the same inputs. */
#include "core/regularize.h"

#include <math.h>
#include <string.h>

int nn_reg_is_weight(const nn_layer *l, int p) {
  if (p < 0 || p >= l->nparams || !l->ops) return 0;
  return l->ops->penalize_weight && strcmp(l->pspec[p].name, "weight") == 0;
}

/* 1 if layer l has a weight penalty (a frozen layer has none: its penalty
 * would be a constant with no gradient to take). */
static int has_weight_penalty(const nn_layer *l) {
  return !l->frozen && (l->cfg.l1 > 0 || l->cfg.l2 > 0);
}

int nn_reg_has_weight_penalty(const nn_model *m) {
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    if (!has_weight_penalty(l)) continue;
    for (int p = 0; p < l->nparams; p++)
      if (nn_reg_is_weight(l, p)) return 1;
  }
  return 0;
}

/* Offset of layer l's parameter p in the arenas of m. */
static size_t param_offset(const nn_model *m, const nn_layer *l, int p) {
  return (size_t)(l->param[p] - m->params);
}

/* Shared loop of nn_reg_weight_penalty / nn_reg_weight_apply: grads may be
 * NULL (value only). */
static double weight_pass(const nn_model *m, const float *params, float *grads) {
  double total = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    if (!has_weight_penalty(l)) continue;
    for (int p = 0; p < l->nparams; p++) {
      if (!nn_reg_is_weight(l, p)) continue;
      size_t off = param_offset(m, l, p), cnt = nn_shape_count(&l->pspec[p].shape);
      const float *w = params + off;
      double s1 = 0, s2 = 0;
      for (size_t k = 0; k < cnt; k++) {
        s1 += fabs((double)w[k]);
        s2 += (double)w[k] * w[k];
      }
      total += l->cfg.l1 * s1 + l->cfg.l2 * s2;
      if (!grads) continue;
      float a = (float)l->cfg.l1, b = (float)(2.0 * l->cfg.l2);
      float *g = grads + off;
      for (size_t k = 0; k < cnt; k++) {
        float sg = (float)((w[k] > 0) - (w[k] < 0));
        g[k] += a * sg + b * w[k];
      }
    }
  }
  return total;
}

double nn_reg_weight_penalty(const nn_model *m, const float *params) {
  return weight_pass(m, params, NULL);
}

double nn_reg_weight_apply(const nn_model *m, const float *params, float *grads) {
  return weight_pass(m, params, grads);
}

/* 1 if layer l has an activity penalty. */
static int has_activity(const nn_layer *l) {
  return l->cfg.activity_l1 > 0 || l->cfg.activity_l2 > 0;
}

int nn_reg_has_activity(const nn_model *m) {
  for (int i = 0; i < m->nlayers; i++)
    if (has_activity(&m->layers[i])) return 1;
  return 0;
}

double nn_reg_activity_sum(double a1, double a2, const float *y, size_t count) {
  double s1 = 0, s2 = 0;
  for (size_t k = 0; k < count; k++) {
    s1 += fabs((double)y[k]);
    s2 += (double)y[k] * y[k];
  }
  return a1 * s1 + a2 * s2;
}

void nn_reg_activity_grad(double a1, double a2, const float *y, float *dy, size_t count,
                          float scale) {
  float a = (float)a1 * scale, b = (float)(2.0 * a2) * scale;
  for (size_t k = 0; k < count; k++) {
    float sg = (float)((y[k] > 0) - (y[k] < 0));
    dy[k] += a * sg + b * y[k];
  }
}

double nn_reg_activity_model_sum(const nn_model *m, int n) {
  double total = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    if (!has_activity(l)) continue;
    size_t cnt = (size_t)n * nn_shape_count(&l->out);
    total += nn_reg_activity_sum(l->cfg.activity_l1, l->cfg.activity_l2,
                                 m->act + m->act_off[i], cnt);
  }
  return total;
}

void nn_reg_activity_backward(const nn_layer *l, const float *y, float *dy, int n,
                              float scale) {
  if (scale == 0 || !has_activity(l) || n <= 0) return;
  nn_reg_activity_grad(l->cfg.activity_l1, l->cfg.activity_l2, y, dy,
                       (size_t)n * nn_shape_count(&l->out), scale);
}

size_t nn_clip_by_value(float *g, size_t n, double clip) {
  float hi = (float)clip, lo = -hi;
  size_t changed = 0;
  for (size_t k = 0; k < n; k++) {
    float v = g[k];
    if (v > hi) {
      g[k] = hi;
      changed++;
    } else if (v < lo) {
      g[k] = lo;
      changed++;
    }
  }
  return changed;
}

double nn_grad_norm(const float *g, size_t n) {
  double s = 0;
  for (size_t k = 0; k < n; k++) s += (double)g[k] * g[k];
  return sqrt(s);
}

double nn_clip_by_norm(float *g, size_t n, double max_norm) {
  double norm = nn_grad_norm(g, n);
  if (!isfinite(norm)) return norm;
  double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    float c = (float)coef;
    for (size_t k = 0; k < n; k++) g[k] *= c;
  }
  return norm;
}
