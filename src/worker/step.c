/* step.c: forward, loss, backward with overlapped gradient reduction,
 * penalties, clipping, update (see step.h for the order). */
#include "worker/step.h"
#include "core/mem.h"

#include <math.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers/sample.h"
#include "core/loss.h"
#include "core/regularize.h"

int nn_floats_finite(const float *x, size_t n) {
  /* x - x is 0 for finite x and NaN for Inf or NaN; summing the products
   * keeps the loop free of branches (it vectorizes) and any NaN sticks. */
  float acc = 0.0f;
  for (size_t i = 0; i < n; i++) acc += x[i] * 0.0f;
  return acc == 0.0f;
}

#ifdef NN_FAULT_INJECTION
/* NN_FAULT_NONFINITE_STEPS="a,b,...": global steps (0-based) whose loss is
 * made NaN on every rank (tests of train.on_nonfinite). Each entry fires
 * once per process, the first time its step runs: a step run again after a
 * rollback is clean unless it is listed again ("12,12": twice). */
static int fault_nonfinite(uint64_t step) {
  static unsigned char fired[64];
  const char *e = getenv("NN_FAULT_NONFINITE_STEPS");
  for (int i = 0; e && *e && i < 64; i++) {
    char *end;
    unsigned long long v = strtoull(e, &end, 10);
    if (end == e) return 0;
    if (v == step && !fired[i]) {
      fired[i] = 1;
      return 1;
    }
    e = *end == ',' ? end + 1 : end;
  }
  return 0;
}
#else
static int fault_nonfinite(uint64_t step) { (void)step; return 0; }
#endif

int nn_stepper_init(nn_stepper *s, nn_model *m, nn_optim *o, nn_gradsync *sync, int loss,
                    nn_error *err) {
  memset(s, 0, sizeof *s);
  /* Frozen layers (core/model.h): optimizer and sync cover grads[0, ntrainable) */
  if (o && o->n != m->ntrainable)
    return nn_error_set(err, NN_EINTERNAL, "the optimizer has %zu parameters, the model %zu "
                        "trainable ones", o->n, m->ntrainable);
  if (sync && nn_gradsync_count(sync) != m->ntrainable)
    return nn_error_set(err, NN_EINTERNAL, "the gradient sync covers %zu floats, the model has "
                        "%zu trainable ones", nn_gradsync_count(sync), m->ntrainable);
  s->model = m;
  s->optim = o;
  s->sync = sync;
  s->loss = loss;
  s->outputs = (int)nn_shape_count(&m->out);
  if (m->out.ndim == 2) { /* [T, K]: per-timestep targets, if the data has them */
    s->seq_t = m->out.dim[0];
    s->seq_k = m->out.dim[1];
  }
  s->accumulate = 1;
  s->weight_penalty = nn_reg_has_weight_penalty(m);
  s->activity_penalty = nn_reg_has_activity(m);
  size_t n = (size_t)m->max_batch * (size_t)s->outputs + 1;
  s->dout = nn_malloc(n * sizeof(float));
  s->onehot = nn_malloc(n * sizeof(float));
  if (!s->dout || !s->onehot) {
    nn_stepper_free(s);
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  return 0;
}

int nn_stepper_accumulate(nn_stepper *s, int k, nn_error *err) {
  s->accumulate = k > 1 ? k : 1;
  free(s->carry);
  s->carry = NULL;
  const size_t cols = s->model->carry_per_sample;
  if (k > 1 && cols > 0 &&
      !(s->carry = nn_calloc((size_t)k * (size_t)s->model->max_batch * cols, sizeof(float))))
    return nn_error_set(err, NN_ENOMEM, "out of memory for the streams' carried state");
  return 0;
}

float *nn_step_carry(const nn_stepper *s) { return s->carry ? s->carry : s->model->carry; }

void nn_stepper_free(nn_stepper *s) {
  free(s->dout);
  free(s->onehot);
  free(s->carry);
  s->dout = s->onehot = s->carry = NULL;
}

/* Loss over out [n, k] for batch b; writes dout scaled when d != NULL. */
static double batch_loss(nn_stepper *s, const nn_batch *b, const float *out, float scale,
                         float *d) {
  const int n = b->n, k = s->outputs;
  if (b->tlabels) /* token streams: the mean over the global batch's tokens (all windows
                     are full, so each sample has seq_t) */
    return nn_loss_seq_softmax_ce(out, b->tlabels, b->lengths, n, s->seq_t, s->seq_k,
                                  scale / (float)s->seq_t, d);
  if (s->loss == NN_LOSS_SOFTMAX_CE) return nn_loss_softmax_ce(out, b->labels, n, k, scale, d);
  const float *target = b->targets;
  if (s->loss == NN_LOSS_BCE) return nn_loss_bce(out, target, n, k, scale, d); /* multi-label */
  if (!target) { /* MSE against one-hot class labels */
    memset(s->onehot, 0, (size_t)n * (size_t)k * sizeof(float));
    for (int i = 0; i < n; i++) s->onehot[(size_t)i * k + b->labels[i]] = 1.0f;
    target = s->onehot;
  }
  return nn_loss_mse(out, target, n, k, scale, d);
}

/* Samples a batch counts for: tokens for token streams. */
static double batch_count(const nn_stepper *s, const nn_batch *b) {
  return b->tlabels ? (double)nn_seq_valid_steps(b->lengths, b->n, s->seq_t) : (double)b->n;
}

static void count_correct(nn_stepper *s, const nn_batch *b, const float *out,
                          nn_step_stats *st) {
  if (b->tlabels) {
    for (int i = 0; i < b->n; i++)
      for (int t = 0; t < (b->lengths ? b->lengths[i] : s->seq_t); t++) {
        size_t at = (size_t)i * (size_t)s->seq_t + (size_t)t;
        if (nn_argmax(out + at * (size_t)s->seq_k, s->seq_k) == b->tlabels[at]) st->correct += 1;
      }
    return;
  }
  if (s->multilabel && b->targets) {
    /* multi-label: a sample is right when every label is, at probability
     * 0.5, as the validation's accuracy counts it (core/metrics.c) */
    for (int i = 0; i < b->n; i++) {
      int right = 1;
      for (int j = 0; j < s->outputs && right; j++) {
        size_t at = (size_t)i * (size_t)s->outputs + (size_t)j;
        right = (nn_sigmoid(out[at]) >= 0.5) == (b->targets[at] == 1);
      }
      st->correct += right;
    }
    return;
  }
  if (!b->labels) return;
  for (int i = 0; i < b->n; i++)
    if (nn_argmax(out + (size_t)i * s->outputs, s->outputs) == b->labels[i]) st->correct += 1;
}

typedef struct ready_ctx {
  nn_gradsync *sync;
} ready_ctx;

static void on_ready(void *user, size_t offset, size_t count) {
  nn_gradsync_ready(((ready_ctx *)user)->sync, offset, count);
}

int nn_step_micro_max(int max_slice, int k) {
  return k > 1 ? (max_slice + k - 1) / k : max_slice;
}

nn_batch nn_step_micro(const nn_stepper *s, const nn_batch *b, int i) {
  const int k = s->accumulate > 1 ? s->accumulate : 1;
  if (k == 1) return *b;
  const int lo = (int)((int64_t)b->n * i / k), hi = (int)((int64_t)b->n * (i + 1) / k);
  const size_t in = nn_shape_count(&s->model->in), o = (size_t)lo;
  nn_batch v = *b;
  v.n = hi - lo;
  v.sample0 = b->sample0 + lo;
  v.x = b->x + o * in;
  if (b->labels) v.labels = b->labels + o;
  if (b->targets) v.targets = b->targets + o * (size_t)s->outputs;
  if (b->lengths) v.lengths = b->lengths + o;
  if (b->tlabels) v.tlabels = b->tlabels + o * (size_t)s->seq_t;
  return v;
}

/* Forward, loss and backward of micro-batch v, rows [row0, row0 + v->n) of
 * the slice, of an optimizer step whose global batch is v->global_n
 * samples; adds its figures to st. ready: the gradient sync's callback (the
 * step's last micro-batch) or NULL. */
static void micro_pass(nn_stepper *s, const nn_batch *v, int row0, nn_run_ctx *ctx, int poison,
                       nn_grad_ready_fn ready, void *rc, nn_step_stats *st) {
  nn_model *m = s->model;
  ctx->sample0 = v->sample0;
  ctx->lengths = v->lengths;
  /* the micro-batch's streams' state in and (forward writes it) out again;
   * backward does not read the arena (core/layer.h) */
  const size_t cols = m->carry_per_sample, rows = (size_t)v->n * cols;
  float *mine = s->carry ? s->carry + (size_t)row0 * cols : NULL;
  if (mine && ctx->carry_in) memcpy(m->carry, mine, rows * sizeof *mine);
  const float *out = nn_model_forward(m, v->x, v->n, ctx);
  if (mine) memcpy(mine, m->carry, rows * sizeof *mine);
  double l = batch_loss(s, v, out, 1.0f / (float)v->global_n, s->dout);
  if (poison) l = NAN;
  /* A non-finite loss poisons the output gradient, so the all-reduced
   * gradients carry it to every rank (the flag in nn_step_train). */
  if (!isfinite(l)) s->dout[0] = NAN;
  st->loss_sum += l;
  if (s->activity_penalty) st->loss_sum += nn_reg_activity_model_sum(m, v->n);
  st->loss_sum += nn_sample_penalty(m); /* sample layers' beta * KL (core/layers/sample.h) */
  st->count += batch_count(s, v);
  count_correct(s, v, out, st);
  nn_model_backward(m, v->x, s->dout, v->n, ctx, ready, rc);
}

int nn_step_train(nn_stepper *s, const nn_batch *b, double lr, uint64_t step,
                  uint64_t seed, nn_step_stats *st, nn_error *err) {
  nn_model *m = s->model;
  nn_run_ctx ctx = {.training = 1, .seed = seed, .step = step, .sample0 = b->sample0,
                    .lengths = b->lengths, .carry_in = b->carry_in,
                    .act_scale = 1.0f / (float)b->global_n};
  const nn_step_stats before = *st; /* restored if the step is dropped */
  nn_model_zero_grad(m);
  ready_ctx rc = {s->sync};
  if (s->sync) nn_gradsync_begin_step(s->sync, (long)step + 1);
  /* k micro-batches (1 without accumulation), each backward adding into the
   * gradients; only the last one reports buckets to the sync (an empty last
   * one reports none: nn_gradsync_finish reduces them all). */
  const int k = s->accumulate > 1 ? s->accumulate : 1;
  int poison = b->n > 0 && fault_nonfinite(step);
  for (int i = 0; i < k; i++) {
    nn_batch v = nn_step_micro(s, b, i);
    if (v.n == 0) continue;
    micro_pass(s, &v, (int)(v.sample0 - b->sample0), &ctx, poison,
               s->sync && i == k - 1 ? on_ready : NULL, &rc, st);
    poison = 0;
  }
  double wait = 0;
  if (s->sync) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = nn_gradsync_finish(s->sync, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wait = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    st->sync_wait_s += wait;
    if (r) return r;
  }
  /* From here on the gradients are the global sum, the same bits on every
   * rank: penalties, then clipping, then the update (step.h). */
  if (s->weight_penalty) {
    double pen = nn_reg_weight_apply(m, m->params, m->grads);
    st->loss_sum += pen * b->n; /* summed over ranks: pen * global_n */
  }
  /* The non-finite flag: the summed gradients are the same bits on every
   * rank, and a NaN or Inf in any rank's share survives the sum, so every
   * rank reaches the same verdict without another message. The update is
   * skipped: parameters and optimizer state stay as they were, and the
   * step's figures are left out of *st. */
  s->nonfinite = !nn_floats_finite(m->grads, m->ntrainable);
  if (s->nonfinite) {
    *st = before;
    st->nonfinite += 1;
    st->sync_wait_s += wait;
    return 0;
  }
  if (s->clip_value > 0) nn_clip_by_value(m->grads, m->ntrainable, s->clip_value);
  if (s->clip_norm > 0) s->grad_norm = nn_clip_by_norm(m->grads, m->ntrainable, s->clip_norm);
  nn_optim_step(s->optim, m->params, m->grads, lr);
  return 0;
}

void nn_step_begin(nn_stepper *s, uint64_t step) {
  nn_model_zero_grad(s->model);
  if (s->sync) nn_gradsync_begin_step(s->sync, (long)step + 1);
}

void nn_step_on_ready(void *sync, size_t offset, size_t count) {
  nn_gradsync_ready(sync, offset, count);
}

int nn_step_finish(nn_stepper *s, double lr, nn_step_stats *st, nn_error *err) {
  nn_model *m = s->model;
  if (s->sync) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = nn_gradsync_finish(s->sync, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    st->sync_wait_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (r) return r;
  }
  s->nonfinite = !nn_floats_finite(m->grads, m->ntrainable);
  if (s->nonfinite) {
    st->nonfinite += 1;
    return 0;
  }
  if (s->clip_value > 0) nn_clip_by_value(m->grads, m->ntrainable, s->clip_value);
  if (s->clip_norm > 0) s->grad_norm = nn_clip_by_norm(m->grads, m->ntrainable, s->clip_norm);
  nn_optim_step(s->optim, m->params, m->grads, lr);
  return 0;
}

double nn_step_loss(nn_stepper *s, const nn_batch *b, const float *out) {
  return b->n > 0 ? batch_loss(s, b, out, 1.0f, NULL) : 0.0;
}

void nn_step_eval(nn_stepper *s, const nn_batch *b, uint64_t seed, nn_step_stats *st) {
  if (b->n == 0) return;
  nn_run_ctx ctx = {.training = 0, .seed = seed, .step = 0, .sample0 = b->sample0,
                    .lengths = b->lengths, .carry_in = b->carry_in};
  const float *out = nn_model_forward(s->model, b->x, b->n, &ctx);
  st->loss_sum += batch_loss(s, b, out, 1.0f, NULL);
  st->count += batch_count(s, b);
  count_correct(s, b, out, st);
}
