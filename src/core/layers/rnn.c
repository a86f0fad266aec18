/* rnn.c: the recurrent layers rnn (Elman, tanh or relu), lstm and gru, as
 * PyTorch's nn.RNN / nn.LSTM / nn.GRU with batch_first = True.
 *
 * Input [T, C] per sample (x[n][t][c]), output [T, H*D] (return_sequences)
 * or [H*D] (the last valid state), D = 2 when bidirectional (the forward
 * direction's features first, then the reverse's, as PyTorch concatenates).
 * Layer k of a stack of num_layers reads the previous one's output
 * sequence, with dropout between layers in training (inverted, PyTorch's).
 *
 * Parameters per layer k and direction (suffix "" or "_reverse"), in
 * PyTorch's state_dict order: weight_ih_l{k} [G*H, in_k], weight_hh_l{k}
 * [G*H, H], bias_ih_l{k} [G*H], bias_hh_l{k} [G*H] (no biases when
 * use_bias = false), G = 1 (rnn), 4 (lstm: i, f, g, o), 3 (gru: r, z, n):
 *   rnn   h' = act(W_ih x + b_ih + W_hh h + b_hh)
 *   lstm  i, f, o = sigmoid(.), g = tanh(.) of W_i* x + b_i* + W_h* h + b_h*;
 *         c' = f c + i g, h' = o tanh(c')
 *   gru   r, z = sigmoid(W_i* x + b_i* + W_h* h + b_h*),
 *         n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h
 * All start U(-1/sqrt(H), 1/sqrt(H)), as PyTorch's.
 *
 * Lengths (ctx->lengths): steps t >= length leave the state alone and output
 * zeros (pad_packed_sequence's padding); the reverse direction starts at
 * t = length - 1. The last valid state is then the state after t = length - 1
 * forward and after t = 0 in reverse: PyTorch's h_n for packed sequences.
 *
 * Carried state (key `carry`, forward direction only): per sample h [L][H]
 * then, for lstm, c [L][H] (PyTorch's h_n, c_n order) in the model's carry
 * arena (core/layer.h). ctx->carry_in: start from it instead of zeros; the
 * final state is always written back; backward does not reach into it.
 *
 * Computation. Internally everything is time-major ([T][n][.]), so the
 * states of one step are one [n, H] matrix: one sgemm projects the inputs of
 * all steps ([T*n, in] x W_ih^T), then each step is one [n, H] x W_hh^T sgemm
 * and an element-wise cell update. Backward through time keeps the gate
 * gradients of all steps, so the weight gradients are one sgemm each.
 *
 * Scratch per sample (carve): the input, every layer's and direction's gate
 * activations [T][G*H] and states [T+1][H] (lstm: cells too; gru: W_hn h +
 * b_hn [T][H]), inter-layer outputs and dropout masks, and backward's
 * workspace (gate gradients, two sequence gradients, three [H] rows). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "core/layer.h"
#include "core/rng.h"

#define RNN_MAX_STACK (NN_MAX_PARAMS / 4) /* layers x directions with biases */

typedef struct rnn_opts {
  int hidden_size;      /* H */
  int num_layers;       /* L, stacked */
  int bidirectional;    /* D = 2 */
  int return_sequences; /* output [T, H*D] rather than the last valid state [H*D] */
  double dropout;       /* between stacked layers, training only */
  int use_bias;         /* bias_ih and bias_hh */
  int carry;            /* keep the final state for the next call (truncated BPTT) */
  char nonlinearity[8]; /* rnn: "tanh" | "relu" */
} rnn_opts;
NN_LAYER_OPTS_FIT(rnn_opts);

static const rnn_opts *opts(const nn_layer *l) { return NN_LAYER_OPTS(&l->cfg, const rnn_opts); }

#define RNN_COMMON_KEYS                                                                        \
  {.name = "hidden_size", .type = NN_KEY_INT, .offset = offsetof(rnn_opts, hidden_size),       \
   .size = sizeof(int), .min = 1, .max = 1 << 16, .flags = NN_KEY_REQUIRED,                    \
   .help = "features of the hidden state (H)"},                                                \
  {.name = "num_layers", .type = NN_KEY_INT, .offset = offsetof(rnn_opts, num_layers),         \
   .size = sizeof(int), .min = 1, .max = RNN_MAX_STACK, .def = "1",                            \
   .help = "stacked recurrent layers (num_layers x directions <= 8)"},                          \
  {.name = "bidirectional", .type = NN_KEY_BOOL, .offset = offsetof(rnn_opts, bidirectional),  \
   .size = sizeof(int), .min = 0, .max = 1, .def = "false",                                    \
   .help = "also run each layer from the last valid step back to the first; outputs are "     \
           "[forward, reverse] concatenated (2H features)"},                                   \
  {.name = "return_sequences", .type = NN_KEY_BOOL,                                            \
   .offset = offsetof(rnn_opts, return_sequences), .size = sizeof(int), .min = 0, .max = 1,    \
   .def = "true",                                                                              \
   .help = "true: output every step [T, H*D] (zeros past a sample's length); false: the "     \
           "last valid state [H*D] (PyTorch's h_n of the top layer)"},                         \
  {.name = "dropout", .type = NN_KEY_FLOAT, .offset = offsetof(rnn_opts, dropout),             \
   .size = sizeof(double), .min = 0, .max = 0.999, .def = "0",                                 \
   .help = "dropout on the outputs of every layer but the top one, in training (PyTorch's)"},  \
  {.name = "use_bias", .type = NN_KEY_BOOL, .offset = offsetof(rnn_opts, use_bias),            \
   .size = sizeof(int), .min = 0, .max = 1, .def = "true",                                     \
   .help = "learn bias_ih and bias_hh"},                                                       \
  {.name = "carry", .type = NN_KEY_BOOL, .offset = offsetof(rnn_opts, carry),                  \
   .size = sizeof(int), .min = 0, .max = 1, .def = "false",                                    \
   .help = "keep each sample's final state (h, and c for lstm) for the next window of its "   \
           "stream: truncated BPTT; not with bidirectional"}

static const nn_key rnn_keys[] = {
    RNN_COMMON_KEYS,
    {.name = "nonlinearity", .type = NN_KEY_ENUM, .offset = offsetof(rnn_opts, nonlinearity),
     .size = sizeof(((rnn_opts *)0)->nonlinearity), .def = "\"tanh\"", .choices = "tanh|relu",
     .help = "the activation of the cell"},
    {0},
};
static const nn_key gated_keys[] = {RNN_COMMON_KEYS, {0}};

enum { CELL_TANH, CELL_RELU, CELL_LSTM, CELL_GRU };

/* The layer's dimensions, from its options and input shape. */
typedef struct geo {
  int kind, G, T, C, H, L, D, GH, HD, seq_out, nb; /* nb: tensors per (layer, direction) */
  float drop;
} geo;

static geo geo_of(const nn_layer *l) {
  const rnn_opts *o = opts(l);
  geo g;
  memset(&g, 0, sizeof g);
  if (strcmp(l->ops->type, "lstm") == 0)
    g.kind = CELL_LSTM;
  else if (strcmp(l->ops->type, "gru") == 0)
    g.kind = CELL_GRU;
  else
    g.kind = strcmp(o->nonlinearity, "relu") == 0 ? CELL_RELU : CELL_TANH;
  g.G = g.kind == CELL_LSTM ? 4 : g.kind == CELL_GRU ? 3 : 1;
  g.T = l->in.ndim == 2 ? l->in.dim[0] : 0;
  g.C = l->in.ndim == 2 ? l->in.dim[1] : 0;
  g.H = o->hidden_size;
  g.L = o->num_layers;
  g.D = o->bidirectional ? 2 : 1;
  g.GH = g.G * g.H;
  g.HD = g.H * g.D;
  g.seq_out = o->return_sequences;
  g.nb = o->use_bias ? 4 : 2;
  g.drop = (float)o->dropout;
  return g;
}

/* Views into the scratch for a batch of n (time-major, see the top). */
typedef struct views {
  float *xt;                     /* [T][n][C] the input */
  float *P[RNN_MAX_STACK][2];    /* [T][n][GH] gate activations (rnn: unused) */
  float *hs[RNN_MAX_STACK][2];   /* [T+1][n][H] states: slot 0 (forward) / T (reverse)
                                    the initial one, see slot_prev/slot_new */
  float *cs[RNN_MAX_STACK][2];   /* lstm: cells, same layout */
  float *qn[RNN_MAX_STACK][2];   /* gru: W_hn h + b_hn [T][n][H] */
  float *seq[RNN_MAX_STACK];     /* [T][n][HD] layer k's output, after dropout (k < L-1) */
  float *mask[RNN_MAX_STACK];    /* [T][n][HD] its dropout mask (dropout > 0) */
  float *q;                      /* [n][GH] one step's W_hh h + b_hh */
  float *dh, *dh2, *dc;          /* [n][H] backward's running gradients */
  float *dG, *dQ;                /* [T][n][GH] gate gradients, input / hidden side */
  float *dA, *dB;                /* [T][n][max(C, HD)] sequence gradients */
} views;

/* Lay the views out from base (NULL: only count) for n samples; returns the
 * floats used, a multiple of n. */
static size_t carve(const geo *g, size_t n, float *base, views *v) {
  size_t off = 0, T = (size_t)g->T, H = (size_t)g->H, GH = (size_t)g->GH, HD = (size_t)g->HD;
  size_t W = (size_t)(g->C > g->HD ? g->C : g->HD);
#define TAKE(ptr, count) ((ptr) = base ? base + off : NULL, off += (count))
  memset(v, 0, sizeof *v);
  TAKE(v->xt, T * n * (size_t)g->C);
  for (int k = 0; k < g->L; k++)
    for (int d = 0; d < g->D; d++) {
      if (g->G > 1) TAKE(v->P[k][d], T * n * GH);
      TAKE(v->hs[k][d], (T + 1) * n * H);
      if (g->kind == CELL_LSTM) TAKE(v->cs[k][d], (T + 1) * n * H);
      if (g->kind == CELL_GRU) TAKE(v->qn[k][d], T * n * H);
    }
  for (int k = 0; k + 1 < g->L; k++) {
    TAKE(v->seq[k], T * n * HD);
    if (g->drop > 0) TAKE(v->mask[k], T * n * HD);
  }
  TAKE(v->q, n * GH);
  TAKE(v->dh, n * H);
  TAKE(v->dh2, n * H);
  TAKE(v->dc, n * H);
  TAKE(v->dG, T * n * GH);
  if (g->kind == CELL_GRU)
    TAKE(v->dQ, T * n * GH);
  else
    v->dQ = v->dG; /* rnn, lstm: both sides get the same gate gradients */
  TAKE(v->dA, T * n * W);
  TAKE(v->dB, T * n * W);
#undef TAKE
  return off;
}

static int rnn_build(nn_layer *l, nn_error *err) {
  char s[64];
  if (l->in.ndim != 2)
    return nn_error_set(err, NN_ESHAPE, "expects a sequence [T, C] per sample (time steps, "
                        "features), got %s", nn_shape_str(&l->in, s, sizeof s));
  geo g = geo_of(l);
  if (g.H < 1) return nn_error_set(err, NN_ESCHEMA, "hidden_size must be >= 1, got %d", g.H);
  if (g.L < 1 || g.L * g.D > RNN_MAX_STACK)
    return nn_error_set(err, NN_ESCHEMA, "num_layers x directions must be in [1, %d], got %d x %d",
                        RNN_MAX_STACK, g.L, g.D);
  if (!(g.drop >= 0 && g.drop < 1))
    return nn_error_set(err, NN_ESCHEMA, "dropout must be in [0, 1), got %g", opts(l)->dropout);
  if (opts(l)->carry && g.D == 2)
    return nn_error_set(err, NN_ESCHEMA, "carry (carried state) needs a one-directional layer: "
                        "a reverse pass cannot continue into the next window");
  if (g.kind == CELL_TANH && strcmp(opts(l)->nonlinearity, "tanh") != 0)
    return nn_error_set(err, NN_ESCHEMA, "nonlinearity '%s' is not one of tanh|relu",
                        opts(l)->nonlinearity);
  l->out = g.seq_out ? (nn_shape){2, {g.T, g.HD}} : (nn_shape){1, {g.HD}};
  static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  for (int k = 0; k < g.L; k++)
    for (int d = 0; d < g.D; d++)
      for (int p = 0; p < g.nb; p++) {
        char name[NN_NAME_MAX];
        snprintf(name, sizeof name, "%s_l%d%s", names[p], k, d ? "_reverse" : "");
        int in = k ? g.HD : g.C;
        nn_shape ps = p == 0 ? (nn_shape){2, {g.GH, in}}
                      : p == 1 ? (nn_shape){2, {g.GH, g.H}} : (nn_shape){1, {g.GH}};
        int rc = nn_layer_add_param(l, name, &ps, NN_INIT_UNIFORM, p == 1 ? g.H : in, g.GH, err);
        if (rc) return rc;
        l->pspec[l->nparams - 1].value = (float)(1.0 / sqrt((double)g.H));
      }
  views v;
  l->scratch_per_sample = carve(&g, 1, NULL, &v);
  l->carry_per_sample = opts(l)->carry ? (size_t)g.L * g.H * (g.kind == CELL_LSTM ? 2 : 1) : 0;
  return 0;
}

/* ---- forward ------------------------------------------------------------- */

static int len_of(const nn_run_ctx *ctx, int i, int T) {
  if (!ctx->lengths) return T;
  int len = ctx->lengths[i];
  return len < 0 ? 0 : len > T ? T : len;
}

/* Steps [0, active) hold a valid timestep of some sample: the longest length
 * in the batch (T without lengths). Later steps are padding for every sample:
 * the state passes through them, so their matrix products are skipped. */
static int active_steps(const nn_run_ctx *ctx, int n, int T) {
  if (!ctx->lengths) return T;
  int m = 0;
  for (int i = 0; i < n; i++) {
    int k = len_of(ctx, i, T);
    if (k > m) m = k;
  }
  return m;
}

/* State slots (views.hs): before and after step t of direction d. */
static size_t slot_prev(int d, int t) { return (size_t)(d ? t + 1 : t); }
static size_t slot_new(int d, int t) { return (size_t)(d ? t : t + 1); }

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

/* tanh from expf, which is several times faster than libm's tanhf (its
 * expm1f was a fifth of an LSTM step's time): (1 - e^-2|v|) / (1 + e^-2|v|),
 * and below |v| = 1/8, where 1 - e^-2|v| would lose relative precision, the
 * Taylor series to v^9 (error < 1e-10 relative there). Within a few float
 * ulps of tanhf elsewhere. */
static float tanh_fast(float v) {
  float a = fabsf(v);
  if (a < 0.125f) {
    float v2 = v * v;
    return v * (1.0f + v2 * (-1.0f / 3 + v2 * (2.0f / 15 + v2 * (-17.0f / 315 + v2 * (62.0f / 2835)))));
  }
  float t = expf(-2.0f * a), r = (1.0f - t) / (1.0f + t);
  return v < 0 ? -r : r;
}

/* Parameter p (0 weight_ih, 1 weight_hh, 2 bias_ih, 3 bias_hh) of (k, d). */
static int pidx(const geo *g, int k, int d, int p) { return (k * g->D + d) * g->nb + p; }

/* rows [rows][w] = b, or zeros without a bias: the sgemm then adds (beta 1). */
static void fill_bias(float *rows, size_t nrows, int w, const float *b) {
  for (size_t r = 0; r < nrows; r++) {
    if (b)
      memcpy(rows + r * (size_t)w, b, sizeof(float) * (size_t)w);
    else
      memset(rows + r * (size_t)w, 0, sizeof(float) * (size_t)w);
  }
}

/* One sample's cell update at one step: p [GH] the input projection
 * (overwritten with the gate activations), q [GH] W_hh h + b_hh, h/c the
 * state before, h2/c2 after, qn [H] (gru) keeps q's n part. */
static void cell_step(const geo *g, float *p, const float *q, const float *h, float *h2,
                      const float *c, float *c2, float *qn) {
  int H = g->H;
  if (g->kind == CELL_TANH || g->kind == CELL_RELU) {
    for (int j = 0; j < H; j++) {
      float a = p[j] + q[j];
      h2[j] = g->kind == CELL_TANH ? tanh_fast(a) : a > 0 ? a : 0.0f;
    }
  } else if (g->kind == CELL_LSTM) {
    for (int j = 0; j < H; j++) {
      float i = sigm(p[j] + q[j]), f = sigm(p[H + j] + q[H + j]);
      float gg = tanh_fast(p[2 * H + j] + q[2 * H + j]), o = sigm(p[3 * H + j] + q[3 * H + j]);
      p[j] = i, p[H + j] = f, p[2 * H + j] = gg, p[3 * H + j] = o;
      c2[j] = f * c[j] + i * gg;
      h2[j] = o * tanh_fast(c2[j]);
    }
  } else {
    for (int j = 0; j < H; j++) {
      float r = sigm(p[j] + q[j]), z = sigm(p[H + j] + q[H + j]);
      float nn = tanh_fast(p[2 * H + j] + r * q[2 * H + j]);
      qn[j] = q[2 * H + j];
      p[j] = r, p[H + j] = z, p[2 * H + j] = nn;
      h2[j] = (1.0f - z) * nn + z * h[j];
    }
  }
}

/* Run direction d of layer k over in [T][n][inw]: hs, P, cs, qn of (k, d). */
static void run_dir(nn_layer *l, const geo *g, views *v, int k, int d, const float *in, int inw,
                    int n, const nn_run_ctx *ctx) {
  int T = g->T, H = g->H, GH = g->GH;
  size_t nH = (size_t)n * H, nG = (size_t)n * GH;
  const float *wih = l->param[pidx(g, k, d, 0)], *whh = l->param[pidx(g, k, d, 1)];
  const float *bih = g->nb > 2 ? l->param[pidx(g, k, d, 2)] : NULL;
  const float *bhh = g->nb > 2 ? l->param[pidx(g, k, d, 3)] : NULL;
  float *P = g->G > 1 ? v->P[k][d] : v->dB; /* rnn: the projection is not kept */
  float *hs = v->hs[k][d], *cs = v->cs[k][d];
  const int Ta = active_steps(ctx, n, T); /* rows t*n + i: the first Ta*n */
  fill_bias(P, (size_t)Ta * n, GH, bih);
  if (Ta > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Ta * n, GH, inw, 1.0f, in, inw, wih, inw,
                1.0f, P, GH);
  /* the initial state: the carried one, or zeros */
  float *h0 = hs + slot_prev(d, d ? T - 1 : 0) * nH, *c0 = cs ? cs + slot_prev(d, d ? T - 1 : 0) * nH : NULL;
  int from_carry = l->carry && ctx->carry_in;
  for (int i = 0; i < n; i++) {
    const float *cr = from_carry ? l->carry + (size_t)i * l->carry_stride : NULL;
    for (int j = 0; j < H; j++) {
      h0[(size_t)i * H + j] = cr ? cr[(size_t)k * H + j] : 0.0f;
      if (c0) c0[(size_t)i * H + j] = cr ? cr[(size_t)(g->L + k) * H + j] : 0.0f;
    }
  }
  for (int s = 0; s < T; s++) {
    int t = d ? T - 1 - s : s;
    const float *hp = hs + slot_prev(d, t) * nH, *cp = cs ? cs + slot_prev(d, t) * nH : NULL;
    float *hn = hs + slot_new(d, t) * nH, *cn = cs ? cs + slot_new(d, t) * nH : NULL;
    if (t >= Ta) { /* padding for every sample */
      memcpy(hn, hp, sizeof(float) * nH);
      if (cn) memcpy(cn, cp, sizeof(float) * nH);
      continue;
    }
    fill_bias(v->q, (size_t)n, GH, bhh);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, GH, H, 1.0f, hp, H, whh, H, 1.0f, v->q,
                GH);
    for (int i = 0; i < n; i++) {
      size_t r = (size_t)i * H;
      if (t >= len_of(ctx, i, T)) { /* padding: the state carries through */
        memcpy(hn + r, hp + r, sizeof(float) * (size_t)H);
        if (cn) memcpy(cn + r, cp + r, sizeof(float) * (size_t)H);
        continue;
      }
      cell_step(g, P + (size_t)t * nG + (size_t)i * GH, v->q + (size_t)i * GH, hp + r, hn + r,
                cp ? cp + r : NULL, cn ? cn + r : NULL,
                g->kind == CELL_GRU ? v->qn[k][d] + (size_t)t * nH + r : NULL);
    }
  }
}

/* Dropout masks of every inter-layer output, drawn per sample from
 * (seed, NN_RNG_DROPOUT, layer, step, global sample), in (layer, t, feature)
 * order: independent of the batch split, like core/layers/dropout.c. */
static void draw_masks(const nn_layer *l, const geo *g, views *v, int n, const nn_run_ctx *ctx) {
  float scale = 1.0f / (1.0f - g->drop);
  for (int i = 0; i < n; i++) {
    nn_rng r;
    nn_rng_init(&r, ctx->seed, NN_RNG_DROPOUT, (uint32_t)l->init_index, (uint32_t)ctx->step,
                (uint32_t)(ctx->sample0 + i));
    for (int k = 0; k + 1 < g->L; k++)
      for (int t = 0; t < g->T; t++) {
        float *m = v->mask[k] + ((size_t)t * n + i) * g->HD;
        for (int j = 0; j < g->HD; j++) m[j] = nn_rng_uniform(&r) < g->drop ? 0.0f : scale;
      }
  }
}

/* Layer k's output sequence into dst [T][n][HD] (zeros past each length),
 * times mask [T][n][HD] if not NULL. */
static void gather_seq(const geo *g, const views *v, int k, float *dst, const float *mask, int n,
                       const nn_run_ctx *ctx) {
  size_t nH = (size_t)n * g->H;
  for (int t = 0; t < g->T; t++)
    for (int i = 0; i < n; i++) {
      size_t row = ((size_t)t * n + i) * g->HD;
      int valid = t < len_of(ctx, i, g->T);
      for (int d = 0; d < g->D; d++) {
        const float *h = v->hs[k][d] + slot_new(d, t) * nH + (size_t)i * g->H;
        for (int j = 0; j < g->H; j++) {
          size_t e = row + (size_t)d * g->H + j;
          dst[e] = valid ? (mask ? h[j] * mask[e] : h[j]) : 0.0f;
        }
      }
    }
}

/* y from the top layer: [n][T][HD] (sequences) or [n][HD] final states;
 * the carried state from every layer's final state. */
static void write_out(nn_layer *l, const geo *g, views *v, float *y, int n,
                      const nn_run_ctx *ctx) {
  int T = g->T, H = g->H, top = g->L - 1;
  size_t nH = (size_t)n * H;
  if (g->seq_out) {
    gather_seq(g, v, top, v->dA, NULL, n, ctx);
    for (int i = 0; i < n; i++)
      for (int t = 0; t < T; t++)
        memcpy(y + ((size_t)i * T + t) * g->HD, v->dA + ((size_t)t * n + i) * g->HD,
               sizeof(float) * (size_t)g->HD);
  } else {
    for (int d = 0; d < g->D; d++) {
      const float *hf = v->hs[top][d] + (d ? 0 : (size_t)T) * nH; /* after the last step */
      for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * g->HD + (size_t)d * H, hf + (size_t)i * H, sizeof(float) * (size_t)H);
    }
  }
  if (!l->carry) return;
  for (int k = 0; k < g->L; k++)
    for (int i = 0; i < n; i++) {
      float *cr = l->carry + (size_t)i * l->carry_stride;
      memcpy(cr + (size_t)k * H, v->hs[k][0] + (size_t)T * nH + (size_t)i * H,
             sizeof(float) * (size_t)H);
      if (g->kind == CELL_LSTM)
        memcpy(cr + (size_t)(g->L + k) * H, v->cs[k][0] + (size_t)T * nH + (size_t)i * H,
               sizeof(float) * (size_t)H);
    }
}

/* x [n][T][C] -> y [n][T][HD] or [n][HD]. */
static void rnn_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  geo g = geo_of(l);
  views v;
  carve(&g, (size_t)n, l->scratch, &v);
  for (int i = 0; i < n; i++)
    for (int t = 0; t < g.T; t++)
      memcpy(v.xt + ((size_t)t * n + i) * g.C, x + ((size_t)i * g.T + t) * g.C,
             sizeof(float) * (size_t)g.C);
  int drop = ctx->training && g.drop > 0 && g.L > 1;
  if (drop) draw_masks(l, &g, &v, n, ctx);
  const float *in = v.xt;
  int inw = g.C;
  for (int k = 0; k < g.L; k++) {
    for (int d = 0; d < g.D; d++) run_dir(l, &g, &v, k, d, in, inw, n, ctx);
    if (k + 1 < g.L) {
      gather_seq(&g, &v, k, v.seq[k], drop ? v.mask[k] : NULL, n, ctx);
      in = v.seq[k];
      inw = g.HD;
    }
  }
  write_out(l, &g, &v, y, n, ctx);
}

/* ---- backward ------------------------------------------------------------ */

/* One sample's gradients at one active step: dh [H] w.r.t. the state after
 * it (in: from above and later steps), dc [H] (lstm, in/out: w.r.t. the cell,
 * becomes w.r.t. the cell before), dhp [H] out: the direct part of the
 * gradient w.r.t. the state before (gru); dg/dq [GH]: the pre-activation
 * gradients of the input and hidden projections. a [GH] the gate activations
 * (rnn: NULL), h2 the state after, hp/cp/c2 before/after, qn (gru). */
static void cell_back(const geo *g, const float *a, const float *h2, const float *hp,
                      const float *cp, const float *c2, const float *qn, const float *dh,
                      float *dc, float *dhp, float *dg, float *dq) {
  int H = g->H;
  if (g->kind == CELL_TANH || g->kind == CELL_RELU) {
    for (int j = 0; j < H; j++) {
      dg[j] = g->kind == CELL_TANH ? dh[j] * (1.0f - h2[j] * h2[j]) : h2[j] > 0 ? dh[j] : 0.0f;
      dhp[j] = 0.0f;
    }
  } else if (g->kind == CELL_LSTM) {
    for (int j = 0; j < H; j++) {
      float i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j];
      float tc = tanh_fast(c2[j]);
      float dct = dc[j] + dh[j] * o * (1.0f - tc * tc);
      dg[j] = dct * gg * i * (1.0f - i);
      dg[H + j] = dct * cp[j] * f * (1.0f - f);
      dg[2 * H + j] = dct * i * (1.0f - gg * gg);
      dg[3 * H + j] = dh[j] * tc * o * (1.0f - o);
      dc[j] = dct * f;
      dhp[j] = 0.0f;
    }
  } else {
    for (int j = 0; j < H; j++) {
      float r = a[j], z = a[H + j], nn = a[2 * H + j];
      float dnp = dh[j] * (1.0f - z) * (1.0f - nn * nn);
      float drp = dnp * qn[j] * r * (1.0f - r);
      float dzp = dh[j] * (hp[j] - nn) * z * (1.0f - z);
      dg[j] = dq[j] = drp;
      dg[H + j] = dq[H + j] = dzp;
      dg[2 * H + j] = dnp;
      dq[2 * H + j] = dnp * r;
      dhp[j] = dh[j] * z;
    }
  }
}

/* Gradient of direction d of layer k, steps in reverse order. dseq [T][n][HD]
 * w.r.t. the layer's outputs (NULL: only dlast [n][HD], w.r.t. the final
 * states). Fills v->dG, v->dQ; leaves nothing else. */
static void bptt_dir(nn_layer *l, const geo *g, views *v, int k, int d, const float *dseq,
                     const float *dlast, int n, const nn_run_ctx *ctx) {
  int T = g->T, H = g->H, GH = g->GH;
  size_t nH = (size_t)n * H, nG = (size_t)n * GH;
  const float *whh = l->param[pidx(g, k, d, 1)];
  float *dh = v->dh, *dh2 = v->dh2;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < H; j++) {
      dh[(size_t)i * H + j] = dlast ? dlast[(size_t)i * g->HD + (size_t)d * H + j] : 0.0f;
      v->dc[(size_t)i * H + j] = 0.0f;
    }
  const int Ta = active_steps(ctx, n, T);
  for (int s = T - 1; s >= 0; s--) {
    int t = d ? T - 1 - s : s;
    if (t >= Ta) continue; /* padding for every sample: the gradient passes unchanged (and
                              grads_dir reads only the first Ta steps of dG, dQ) */
    const float *hp = v->hs[k][d] + slot_prev(d, t) * nH, *h2 = v->hs[k][d] + slot_new(d, t) * nH;
    const float *cp = v->cs[k][d] ? v->cs[k][d] + slot_prev(d, t) * nH : NULL;
    const float *c2 = v->cs[k][d] ? v->cs[k][d] + slot_new(d, t) * nH : NULL;
    float *dg = v->dG + (size_t)t * nG, *dq = v->dQ + (size_t)t * nG;
    for (int i = 0; i < n; i++) {
      size_t r = (size_t)i * H, rg = (size_t)i * GH;
      if (t >= len_of(ctx, i, T)) { /* padding: the gradient passes to the state before */
        memset(dg + rg, 0, sizeof(float) * (size_t)GH);
        if (dq != dg) memset(dq + rg, 0, sizeof(float) * (size_t)GH);
        memcpy(dh2 + r, dh + r, sizeof(float) * (size_t)H);
        continue;
      }
      if (dseq) {
        const float *ds = dseq + ((size_t)t * n + i) * g->HD + (size_t)d * H;
        for (int j = 0; j < H; j++) dh[r + j] += ds[j];
      }
      cell_back(g, g->G > 1 ? v->P[k][d] + (size_t)t * nG + rg : NULL, h2 + r, hp + r,
                cp ? cp + r : NULL, c2 ? c2 + r : NULL,
                v->qn[k][d] ? v->qn[k][d] + (size_t)t * nH + r : NULL, dh + r, v->dc + r, dh2 + r,
                dg + rg, dq + rg);
    }
    /* dh before the step = direct part + dq W_hh */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, GH, 1.0f, dq, GH, whh, H, 1.0f,
                dh2, H);
    float *tmp = dh;
    dh = dh2;
    dh2 = tmp;
  }
}

/* Column sums of rows [m][w] added into b [w]. */
static void add_colsum(float *b, const float *rows, size_t m, int w) {
  for (size_t r = 0; r < m; r++)
    for (int j = 0; j < w; j++) b[j] += rows[r * (size_t)w + j];
}

/* Parameter gradients of (k, d) from v->dG / v->dQ and the layer's input
 * in [T][n][inw]; din [T][n][inw] = (or += when accumulate) dG W_ih. */
static void grads_dir(nn_layer *l, const geo *g, views *v, int k, int d, const float *in, int inw,
                      float *din, int accumulate, int n, int pg, const nn_run_ctx *ctx) {
  int TN = active_steps(ctx, n, g->T) * n, GH = g->GH, H = g->H;
  if (din && !accumulate && TN < g->T * n) /* steps no sample reaches: no gradient */
    memset(din + (size_t)TN * inw, 0, sizeof(float) * (size_t)(g->T * n - TN) * inw);
  if (TN == 0) return;
  if (pg) {
    const float *hprev = v->hs[k][d] + (d ? (size_t)n * H : 0); /* [T][n][H]: each step's h */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, inw, TN, 1.0f, v->dG, GH, in, inw,
                1.0f, l->grad[pidx(g, k, d, 0)], inw);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, H, TN, 1.0f, v->dQ, GH, hprev, H,
                1.0f, l->grad[pidx(g, k, d, 1)], H);
    if (g->nb > 2) {
      add_colsum(l->grad[pidx(g, k, d, 2)], v->dG, (size_t)TN, GH);
      add_colsum(l->grad[pidx(g, k, d, 3)], v->dQ, (size_t)TN, GH);
    }
  }
  if (din)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, TN, inw, GH, 1.0f, v->dG, GH,
                l->param[pidx(g, k, d, 0)], inw, accumulate ? 1.0f : 0.0f, din, inw);
}

/* dy [n][T][HD] or [n][HD]; dx [n][T][C] or NULL. */
static void rnn_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         int n, const nn_run_ctx *ctx) {
  (void)x;
  (void)y;
  int pg = nn_layer_param_grads(l, ctx);
  if (!pg && !dx) return;
  geo g = geo_of(l);
  views v;
  carve(&g, (size_t)n, l->scratch, &v);
  int T = g.T;
  float *dcur = NULL; /* [T][n][HD] w.r.t. the current layer's outputs */
  if (g.seq_out) {
    dcur = v.dA;
    for (int i = 0; i < n; i++)
      for (int t = 0; t < T; t++)
        memcpy(dcur + ((size_t)t * n + i) * g.HD, dy + ((size_t)i * T + t) * g.HD,
               sizeof(float) * (size_t)g.HD);
  }
  int drop = ctx->training && g.drop > 0 && g.L > 1;
  for (int k = g.L - 1; k >= 0; k--) {
    const float *in = k ? v.seq[k - 1] : v.xt;
    int inw = k ? g.HD : g.C;
    float *din = (k || dx) ? (dcur == v.dA ? v.dB : v.dA) : NULL;
    const float *dlast = (k == g.L - 1 && !g.seq_out) ? dy : NULL;
    for (int d = 0; d < g.D; d++) {
      bptt_dir(l, &g, &v, k, d, dlast ? NULL : dcur, dlast, n, ctx);
      grads_dir(l, &g, &v, k, d, in, inw, din, d > 0, n, pg, ctx);
    }
    if (k && drop) {
      size_t cnt = (size_t)T * n * g.HD;
      for (size_t e = 0; e < cnt; e++) din[e] *= v.mask[k - 1][e];
    }
    dcur = din;
  }
  if (!dx) return;
  for (int i = 0; i < n; i++)
    for (int t = 0; t < T; t++)
      memcpy(dx + ((size_t)i * T + t) * g.C, dcur + ((size_t)t * n + i) * g.C,
             sizeof(float) * (size_t)g.C);
}

#define RNN_OPS(t, h, k)                                                                       \
  {.type = t, .help = h, .keys = k, .build = rnn_build, .forward = rnn_forward,               \
   .backward = rnn_backward}

const nn_layer_ops nn_layer_rnn = RNN_OPS(
    "rnn", "Elman recurrent layer (PyTorch's nn.RNN, batch_first): h' = tanh(W_ih x + b_ih + "
    "W_hh h + b_hh) over [T, C] sequences; weight_ih_l{k} [H, in], weight_hh_l{k} [H, H]",
    rnn_keys);
const nn_layer_ops nn_layer_lstm = RNN_OPS(
    "lstm", "LSTM (PyTorch's nn.LSTM, batch_first) over [T, C] sequences; gates i, f, g, o: "
    "weight_ih_l{k} [4H, in], weight_hh_l{k} [4H, H]", gated_keys);
const nn_layer_ops nn_layer_gru = RNN_OPS(
    "gru", "GRU (PyTorch's nn.GRU, batch_first) over [T, C] sequences; gates r, z, n: "
    "weight_ih_l{k} [3H, in], weight_hh_l{k} [3H, H]", gated_keys);
