/* residual.c: the residual block, y = body(x) + shortcut(x) (He et al. 2016).
 *
 * A composite layer: its `block_len` key makes nn_model_build treat the next
 * block_len configs as its body (nested blocks counted with their bodies),
 * build them as ordinary layers of the model and hand this layer an
 * nn_block (core/model.h) in l->state: the body's layers and their output
 * buffers, all views into the model's arenas. This file only runs them.
 *
 * shortcut: the identity (projection = false; the body must keep the shape),
 * or the block's projection sub-layer "<block>.shortcut" (projection = true):
 * a bias-free 1x1 conv2d with the stride that matches the body's output for
 * images, a bias-free dense layer for [F] outputs. An empty body is the
 * identity (y = 2x without a projection).
 *
 * Scratch per sample (laid out for the n of the call): two gradient buffers
 * of the widest body input [n * wide] x 2 (the body's ping-pong) and, with a
 * projection, the shortcut's input gradient [n * count(in)]. No tensors of
 * its own: parameters belong to the sub-layers. */
#include <stddef.h>
#include <string.h>

#include "core/regularize.h"

#include "core/layer.h"
#include "core/model.h"

static const nn_key residual_keys[] = {
    {"projection", NN_KEY_BOOL, offsetof(nn_layer_cfg, projection), sizeof(int), 0, 1, "false",
     NULL, 0, "shortcut through a learned projection (1x1 conv2d with stride for images, dense "
     "for vectors, no bias) instead of the identity; needed when the body changes the shape",
     0},
    {"block_len", NN_KEY_INT, offsetof(nn_layer_cfg, block_len), sizeof(int), 0, 65536, "0",
     NULL, 0, "set by the job parser, not written in job files: the number of flat layer "
     "configs after this one that form the body (the nested `layers`, counted fully)", 0},
    {0},
};

extern const nn_layer_ops nn_layer_residual;

/* Largest per-sample float count of a gradient passed between body layers:
 * every body layer's input, and the last one's output (a copy of dy when
 * that layer has an activity penalty; with a projection it may be wider
 * than anything before it). */
static size_t body_wide(const nn_block *b) {
  size_t w = b->nbody ? nn_shape_count(&b->body[b->nbody - 1]->out) : 0;
  for (int j = 0; j < b->nbody; j++) {
    size_t c = nn_shape_count(&b->body[j]->in);
    if (c > w) w = c;
  }
  return w;
}

/* 1 if backward of layer l (a body entry) adds into parameter gradients:
 * it has parameters, its own or its sub-layers', is not frozen and the pass
 * is not a frozen pass. */
static int has_params(const nn_layer *l, const nn_run_ctx *ctx) {
  if (!nn_layer_param_grads(l, ctx)) return 0;
  if (l->ops == &nn_layer_residual && l->state) return ((const nn_block *)l->state)->param_count > 0;
  return l->param_count > 0;
}

static int residual_build(nn_layer *l, nn_error *err) {
  const nn_block *b = l->state;
  char si[64], so[64];
  if (!b) return nn_error_set(err, NN_EINTERNAL, "a residual layer needs nn_model_build's block");
  nn_shape out = b->nbody ? b->body[b->nbody - 1]->out : l->in;
  if (b->shortcut && !nn_shape_equal(&b->shortcut->out, &out))
    return nn_error_set(err, NN_EINTERNAL, "the projection outputs %s, the body %s",
                        nn_shape_str(&b->shortcut->out, si, sizeof si),
                        nn_shape_str(&out, so, sizeof so));
  if (!b->shortcut && !nn_shape_equal(&out, &l->in))
    return nn_error_set(err, NN_ESHAPE,
                        "the body's output %s differs from the block's input %s; set "
                        "projection = true for a learned shortcut", nn_shape_str(&out, so, sizeof so),
                        nn_shape_str(&l->in, si, sizeof si));
  l->out = out;
  l->scratch_per_sample = 2 * body_wide(b) + (b->shortcut ? nn_shape_count(&l->in) : 0);
  return 0;
}

/* x [n, in]; y [n, out] = body(x) + shortcut(x). */
static void residual_forward(nn_layer *l, const float *x, float *y, int n,
                             const nn_run_ctx *ctx) {
  const nn_block *b = l->state;
  const float *cur = x;
  for (int j = 0; j < b->nbody; j++) {
    nn_layer *s = b->body[j];
    s->ops->forward(s, cur, b->body_out[j], n, ctx);
    cur = b->body_out[j];
  }
  const float *sc = x;
  if (b->shortcut) {
    b->shortcut->ops->forward(b->shortcut, x, b->shortcut_out, n, ctx);
    sc = b->shortcut_out;
  }
  size_t k = (size_t)n * nn_shape_count(&l->out);
  for (size_t i = 0; i < k; i++) y[i] = cur[i] + sc[i];
}

/* dy [n, out] is the gradient of both the body's output and the shortcut's.
 * dx [n, in] = body'(dy) + shortcut'(dy); body layers below the lowest one
 * with parameters are skipped when dx is NULL. */
static void residual_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, int n, const nn_run_ctx *ctx) {
  (void)y;
  const nn_block *b = l->state;
  size_t wide = (size_t)n * body_wide(b), kin = (size_t)n * nn_shape_count(&l->in);
  float *buf[2] = {l->scratch, l->scratch + wide};
  float *scdx = l->scratch + 2 * wide;
  int lowest = 0;
  if (!dx) {
    lowest = b->nbody;
    for (int j = 0; j < b->nbody; j++)
      if (has_params(b->body[j], ctx)) {
        lowest = j;
        break;
      }
  }
  const float *g = dy;
  int which = 0;
  for (int j = b->nbody - 1; j >= lowest; j--) {
    nn_layer *s = b->body[j];
    const float *xj = j ? b->body_out[j - 1] : x;
    float *dxj = j == 0 ? dx : j == lowest ? NULL : buf[which];
    if (ctx->act_scale != 0 && (s->cfg.activity_l1 > 0 || s->cfg.activity_l2 > 0)) {
      float *w = buf[which ^ 1]; /* activity penalty of a body layer */
      if (g != w) memcpy(w, g, (size_t)n * nn_shape_count(&s->out) * sizeof *w);
      nn_reg_activity_backward(s, b->body_out[j], w, n, ctx->act_scale);
      g = w;
    }
    s->ops->backward(s, xj, b->body_out[j], g, dxj, n, ctx);
    g = dxj;
    which ^= 1;
  }
  if (dx && b->nbody == 0) memcpy(dx, dy, kin * sizeof *dx);
  if (b->shortcut && (dx || has_params(b->shortcut, ctx))) {
    b->shortcut->ops->backward(b->shortcut, x, b->shortcut_out, dy, dx ? scdx : NULL, n, ctx);
    if (dx)
      for (size_t i = 0; i < kin; i++) dx[i] += scdx[i];
  } else if (dx) {
    for (size_t i = 0; i < kin; i++) dx[i] += dy[i];
  }
}

const nn_layer_ops nn_layer_residual = {
    .type = "residual",
    .help = "residual block: y = body(x) + shortcut(x); the body is the nested `layers`, the "
            "shortcut the identity or a learned projection",
    .keys = residual_keys,
    .build = residual_build,
    .forward = residual_forward,
    .backward = residual_backward,
};
