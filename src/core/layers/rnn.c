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
 * Computation: packed sequences, as PyTorch's PackedSequence. The samples
 * of a batch are ranked by length, longest first (stable), so that the
 * samples still running at step t are ranks [0, m_t), m_t non-increasing in
 * t. Everything internal is packed time-major: step t's rows are ranks
 * [0, m_t), at rows off_t .. off_t + m_t - 1 (off_t = m_0 + ... + m_{t-1}),
 * R = the sum of the lengths rows in all; padding has no row at all. One
 * sgemm projects the inputs of all R rows ([R, in] x W_ih^T); each step is
 * one [m_t, H] x W_hh^T product (core/gemm.h, for few rows; W_hh transposed
 * once per batch) and an element-wise cell update of m_t rows;
 * backward through time keeps the gate gradients of all rows, so each
 * weight gradient is one sgemm over R rows. With words of 10 bytes padded to
 * batches' longest of 20 this halves the arithmetic against running padded
 * steps. Without lengths (language models) every step has all n rows.
 *
 * Directions. Forward: the state before step t of rank r is the state after
 * step t-1 (all of [0, m_t) ran at t-1), or the initial state (zeros or the
 * carried one) at t = 0; the last valid state is the one after step
 * len_r - 1. Reverse (t from the longest length down to 0): the state
 * before step t is the state after step t+1 for ranks below m_{t+1} and
 * zeros for ranks [m_{t+1}, m_t), whose first reverse step this is; their
 * W_hh products are the bias alone. The last valid state is after t = 0.
 *
 * Scratch per sample (carve): the batch's schedule (ranks, lengths, m_t,
 * off_t: ints), the packed input, every layer's and direction's gate
 * activations, states and initial states (lstm: cells too; gru: W_hn h +
 * b_hn), inter-layer outputs and dropout masks, and backward's workspace
 * (gate gradients, two sequence gradients, the packed previous states, three
 * [n, H] rows). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "core/fastmath.h"
#include "core/gemm.h"
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

/* The batch's schedule (see the top): rank r is sample perm[r], of length
 * len[r]; m[t] ranks run step t, whose rows start at off[t]; R rows in all;
 * steps [0, Ta) have rows. m and off have T + 1 entries (m[T] = 0). */
typedef struct sched {
  int *perm, *len, *m, *off;
  int R, Ta, n;
} sched;

/* Views into the scratch for a batch of n (packed rows, see the top). */
typedef struct views {
  sched s;
  float *wt;                     /* [H][GH] the current W_hh transposed (fixed part) */
  float *xt;                     /* [R][C] the input */
  float *P[RNN_MAX_STACK][2];    /* [R][GH] gate activations (rnn: unused) */
  float *hn[RNN_MAX_STACK][2];   /* [R][H] the state after each row's step */
  float *h0[RNN_MAX_STACK][2];   /* [n][H] the initial state (forward direction) */
  float *cn[RNN_MAX_STACK][2];   /* lstm: cells after each step, [R][H] */
  float *c0[RNN_MAX_STACK][2];   /* lstm: initial cells, [n][H] */
  float *qn[RNN_MAX_STACK][2];   /* gru: W_hn h + b_hn [R][H] */
  float *seq[RNN_MAX_STACK];     /* [R][HD] layer k's output, after dropout (k < L-1) */
  float *mask[RNN_MAX_STACK];    /* [R][HD] its dropout mask (dropout > 0) */
  float *q;                      /* [n][GH] one step's W_hh h + b_hh */
  float *zero;                   /* [H] zeros: the reverse direction's initial state */
  float *dh, *dh2, *dc;          /* [n][H] backward's running gradients */
  float *dG, *dQ;                /* [R][GH] gate gradients, input / hidden side */
  float *dA, *dB;                /* [R][max(C, HD)] sequence gradients */
  float *hp;                     /* [R][H] backward: the state before each row's step */
} views;

/* Lay the views out from base (NULL: only count) for n samples; returns the
 * floats used: a fixed H*GH, then at most n times what one sample uses.
 * The schedule's ints are carved from the same floats (4 bytes each). */
static size_t carve(const geo *g, size_t n, float *base, views *v) {
  size_t off = 0, T = (size_t)g->T, H = (size_t)g->H, GH = (size_t)g->GH, HD = (size_t)g->HD;
  size_t W = (size_t)(g->C > g->HD ? g->C : g->HD);
  _Static_assert(sizeof(int) == sizeof(float), "schedule ints live in float scratch");
  memset(v, 0, sizeof *v);
#define TAKE(ptr, count) ((ptr) = base ? base + off : NULL, off += (count))
#define TAKE_INTS(ptr, count) ((ptr) = base ? (int *)(void *)(base + off) : NULL, off += (count))
  TAKE(v->wt, H * GH); /* first: the scratch_fixed part, see rnn_build */
  TAKE_INTS(v->s.perm, n);
  TAKE_INTS(v->s.len, n);
  TAKE_INTS(v->s.m, T + 1);
  TAKE_INTS(v->s.off, T + 1);
  TAKE(v->xt, T * n * (size_t)g->C);
  for (int k = 0; k < g->L; k++)
    for (int d = 0; d < g->D; d++) {
      if (g->G > 1) TAKE(v->P[k][d], T * n * GH);
      TAKE(v->hn[k][d], T * n * H);
      TAKE(v->h0[k][d], n * H);
      if (g->kind == CELL_LSTM) {
        TAKE(v->cn[k][d], T * n * H);
        TAKE(v->c0[k][d], n * H);
      }
      if (g->kind == CELL_GRU) TAKE(v->qn[k][d], T * n * H);
    }
  for (int k = 0; k + 1 < g->L; k++) {
    TAKE(v->seq[k], T * n * HD);
    if (g->drop > 0) TAKE(v->mask[k], T * n * HD);
  }
  TAKE(v->q, n * GH);
  TAKE(v->zero, H);
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
  TAKE(v->hp, T * n * H);
#undef TAKE
#undef TAKE_INTS
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
  l->scratch_fixed = (size_t)g.H * g.GH; /* views.wt */
  l->scratch_per_sample = carve(&g, 1, NULL, &v) - l->scratch_fixed;
  l->carry_per_sample = opts(l)->carry ? (size_t)g.L * g.H * (g.kind == CELL_LSTM ? 2 : 1) : 0;
  return 0;
}

/* ---- forward ------------------------------------------------------------- */

static int len_of(const nn_run_ctx *ctx, int i, int T) {
  if (!ctx->lengths) return T;
  int len = ctx->lengths[i];
  return len < 0 ? 0 : len > T ? T : len;
}

/* The schedule of a batch of n: ranks by length, longest first, ties in
 * sample order (a counting sort over lengths 0..T). */
static void plan(const geo *g, sched *s, int n, const nn_run_ctx *ctx) {
  int T = g->T;
  s->n = n;
  /* m[t] = samples longer than t, from a histogram of lengths */
  memset(s->m, 0, sizeof(int) * (size_t)(T + 1));
  for (int i = 0; i < n; i++) {
    int len = len_of(ctx, i, T);
    if (len > 0) s->m[len - 1]++;
  }
  for (int t = T - 2; t >= 0; t--) s->m[t] += s->m[t + 1];
  /* the first rank of length L (1..T) is the count of longer samples, m[L]
   * (m[T] = 0); length 0 (only without validated lengths) ranks last */
  int *first = s->off; /* reuse off[0..T] as the running first rank per length */
  for (int L = 1; L <= T; L++) first[L - 1] = s->m[L];
  first[T] = s->m[0]; /* length 0 */
  for (int i = 0; i < n; i++) {
    int len = len_of(ctx, i, T);
    int r = len > 0 ? first[len - 1]++ : first[T]++;
    s->perm[r] = i;
    s->len[r] = len;
  }
  s->m[T] = 0;
  int off = 0, Ta = 0;
  for (int t = 0; t <= T; t++) {
    s->off[t] = off;
    off += s->m[t];
    if (t < T && s->m[t] > 0) Ta = t + 1;
  }
  s->R = off;
  s->Ta = Ta;
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

/* One row's cell update: p [GH] the input projection (overwritten with the
 * gate activations), q [GH] W_hh h + b_hh, h/c the state before, h2/c2
 * after, qn [H] (gru) keeps q's n part. The loops call only fastmath.h's
 * inline functions, so they vectorize. */
static void cell_step(const geo *g, float *restrict p, const float *restrict q,
                      const float *restrict h, float *restrict h2, const float *restrict c,
                      float *restrict c2, float *restrict qn) {
  int H = g->H;
  if (g->kind == CELL_TANH) {
    for (int j = 0; j < H; j++) h2[j] = nn_tanhf(p[j] + q[j]);
  } else if (g->kind == CELL_RELU) {
    for (int j = 0; j < H; j++) {
      float a = p[j] + q[j];
      h2[j] = a > 0 ? a : 0.0f;
    }
  } else if (g->kind == CELL_LSTM) {
    float *pi = p, *pf = p + H, *pg = p + 2 * H, *po = p + 3 * H;
    const float *qi = q, *qf = q + H, *qg = q + 2 * H, *qo = q + 3 * H;
    for (int j = 0; j < H; j++) {
      float i = nn_sigmoidf(pi[j] + qi[j]), f = nn_sigmoidf(pf[j] + qf[j]);
      float gg = nn_tanhf(pg[j] + qg[j]), o = nn_sigmoidf(po[j] + qo[j]);
      pi[j] = i, pf[j] = f, pg[j] = gg, po[j] = o;
      float cc = f * c[j] + i * gg;
      c2[j] = cc;
      h2[j] = o * nn_tanhf(cc);
    }
  } else {
    float *pr = p, *pz = p + H, *pn = p + 2 * H;
    const float *qr = q, *qz = q + H, *qnn = q + 2 * H;
    for (int j = 0; j < H; j++) {
      float r = nn_sigmoidf(pr[j] + qr[j]), z = nn_sigmoidf(pz[j] + qz[j]);
      float nn = nn_tanhf(pn[j] + r * qnn[j]);
      qn[j] = qnn[j];
      pr[j] = r, pz[j] = z, pn[j] = nn;
      h2[j] = (1.0f - z) * nn + z * h[j];
    }
  }
}

/* Run direction d of layer k over the packed input in [R][inw]: P, hn, cn,
 * qn of (k, d). */
static void run_dir(nn_layer *l, const geo *g, views *v, int k, int d, const float *in, int inw,
                    const nn_run_ctx *ctx) {
  const sched *s = &v->s;
  int H = g->H, GH = g->GH, n = s->n;
  const float *wih = l->param[pidx(g, k, d, 0)], *whh = l->param[pidx(g, k, d, 1)];
  const float *bih = g->nb > 2 ? l->param[pidx(g, k, d, 2)] : NULL;
  const float *bhh = g->nb > 2 ? l->param[pidx(g, k, d, 3)] : NULL;
  float *P = g->G > 1 ? v->P[k][d] : v->dB; /* rnn: the projection is not kept */
  float *hn = v->hn[k][d], *cn = v->cn[k][d], *qn = v->qn[k][d];
  fill_bias(P, (size_t)s->R, GH, bih);
  if (s->R > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->R, GH, inw, 1.0f, in, inw, wih, inw,
                1.0f, P, GH);
  /* W_hh^T [H][GH] once, for the steps' few-row products (core/gemm.h) */
  for (int gi = 0; gi < GH; gi++)
    for (int j = 0; j < H; j++) v->wt[(size_t)j * GH + gi] = whh[(size_t)gi * H + j];
  /* the initial state of the forward direction: the carried one, or zeros */
  float *h0 = v->h0[k][d], *c0 = v->c0[k][d];
  const float *zero = v->zero;
  if (d == 0) {
    int from_carry = l->carry && ctx->carry_in;
    for (int r = 0; r < n; r++) {
      const float *cr = from_carry ? l->carry + (size_t)s->perm[r] * l->carry_stride : NULL;
      for (int j = 0; j < H; j++) {
        h0[(size_t)r * H + j] = cr ? cr[(size_t)k * H + j] : 0.0f;
        if (c0) c0[(size_t)r * H + j] = cr ? cr[(size_t)(g->L + k) * H + j] : 0.0f;
      }
    }
  }
  for (int st = 0; st < s->Ta; st++) {
    int t = d ? s->Ta - 1 - st : st, mt = s->m[t];
    /* the states before the step: ranks [0, np) from hp_blk (cp_blk), the
     * rest (reverse only) from zeros */
    const float *hp_blk, *cp_blk;
    int np;
    if (d == 0) {
      hp_blk = t ? hn + (size_t)s->off[t - 1] * H : h0;
      cp_blk = cn ? (t ? cn + (size_t)s->off[t - 1] * H : c0) : NULL;
      np = mt;
    } else {
      np = s->m[t + 1];
      hp_blk = hn + (size_t)s->off[t + 1] * H; /* unused when np = 0 */
      cp_blk = cn ? cn + (size_t)s->off[t + 1] * H : NULL;
    }
    fill_bias(v->q, (size_t)mt, GH, bhh);
    nn_gemm_small(np, GH, H, hp_blk, H, v->wt, GH, v->q, GH);
    size_t row0 = (size_t)s->off[t];
    for (int r = 0; r < mt; r++) {
      size_t row = row0 + (size_t)r;
      const float *hp = r < np ? hp_blk + (size_t)r * H : zero;
      const float *cp = cn ? (r < np ? cp_blk + (size_t)r * H : zero) : NULL;
      cell_step(g, P + row * GH, v->q + (size_t)r * GH, hp, hn + row * H, cp,
                cn ? cn + row * H : NULL, qn ? qn + row * H : NULL);
    }
  }
}

/* Dropout masks of every inter-layer output, drawn per sample from
 * (seed, NN_RNG_DROPOUT, layer, step, global sample), in (layer, t, feature)
 * order over all T steps (padding's draws are discarded): independent of
 * the batch split and of the other samples' lengths, like
 * core/layers/dropout.c. */
static void draw_masks(const nn_layer *l, const geo *g, views *v, const nn_run_ctx *ctx) {
  const sched *s = &v->s;
  float scale = 1.0f / (1.0f - g->drop);
  for (int r = 0; r < s->n; r++) {
    nn_rng rg;
    nn_rng_init(&rg, ctx->seed, NN_RNG_DROPOUT, (uint32_t)l->init_index, (uint32_t)ctx->step,
                (uint32_t)(ctx->sample0 + s->perm[r]));
    for (int k = 0; k + 1 < g->L; k++)
      for (int t = 0; t < g->T; t++) {
        float *m = t < s->len[r] ? v->mask[k] + ((size_t)s->off[t] + r) * g->HD : NULL;
        for (int j = 0; j < g->HD; j++) {
          float keep = nn_rng_uniform(&rg) < g->drop ? 0.0f : scale;
          if (m) m[j] = keep;
        }
      }
  }
}

/* Layer k's packed output rows into dst [R][HD] (directions side by side),
 * times mask [R][HD] if not NULL. */
static void gather_seq(const geo *g, const views *v, int k, float *dst, const float *mask) {
  size_t R = (size_t)v->s.R, H = (size_t)g->H, HD = (size_t)g->HD;
  for (int d = 0; d < g->D; d++) {
    const float *h = v->hn[k][d];
    for (size_t row = 0; row < R; row++) {
      float *o = dst + row * HD + (size_t)d * H;
      const float *hr = h + row * H, *mr = mask ? mask + row * HD + (size_t)d * H : NULL;
      if (mr)
        for (size_t j = 0; j < H; j++) o[j] = hr[j] * mr[j];
      else
        memcpy(o, hr, sizeof(float) * H);
    }
  }
}

/* Rank r's last valid state of (k, d): after its last step forward (the
 * initial state for an empty sample), after step 0 in reverse (zeros for an
 * empty one). cells: the lstm cell instead. */
static const float *final_state(const geo *g, const views *v, int k, int d, int r, int cells) {
  const sched *s = &v->s;
  const float *seq = cells ? v->cn[k][d] : v->hn[k][d];
  int len = s->len[r];
  if (len == 0) return d ? v->zero : (cells ? v->c0[k][d] : v->h0[k][d]) + (size_t)r * g->H;
  int t = d ? 0 : len - 1;
  return seq + ((size_t)s->off[t] + r) * g->H;
}

/* y from the top layer: [n][T][HD] (sequences, zeros past each length) or
 * [n][HD] last valid states; the carried state from every layer's. */
static void write_out(nn_layer *l, const geo *g, views *v, float *y) {
  const sched *s = &v->s;
  int T = g->T, H = g->H, HD = g->HD, top = g->L - 1;
  for (int r = 0; r < s->n; r++) {
    int i = s->perm[r], len = s->len[r];
    if (g->seq_out) {
      float *yi = y + (size_t)i * T * HD;
      for (int t = 0; t < len; t++)
        for (int d = 0; d < g->D; d++)
          memcpy(yi + (size_t)t * HD + (size_t)d * H,
                 v->hn[top][d] + ((size_t)s->off[t] + r) * H, sizeof(float) * (size_t)H);
      memset(yi + (size_t)len * HD, 0, sizeof(float) * (size_t)(T - len) * HD);
    } else {
      for (int d = 0; d < g->D; d++)
        memcpy(y + (size_t)i * HD + (size_t)d * H, final_state(g, v, top, d, r, 0),
               sizeof(float) * (size_t)H);
    }
    if (!l->carry) continue;
    float *cr = l->carry + (size_t)i * l->carry_stride;
    for (int k = 0; k < g->L; k++) {
      memcpy(cr + (size_t)k * H, final_state(g, v, k, 0, r, 0), sizeof(float) * (size_t)H);
      if (g->kind == CELL_LSTM)
        memcpy(cr + (size_t)(g->L + k) * H, final_state(g, v, k, 0, r, 1),
               sizeof(float) * (size_t)H);
    }
  }
}

/* x [n][T][C] -> y [n][T][HD] or [n][HD]. */
static void rnn_forward(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx) {
  geo g = geo_of(l);
  views v;
  carve(&g, (size_t)n, l->scratch, &v);
  plan(&g, &v.s, n, ctx);
  const sched *s = &v.s;
  memset(v.zero, 0, sizeof(float) * (size_t)g.H);
  for (int t = 0; t < s->Ta; t++)
    for (int r = 0; r < s->m[t]; r++)
      memcpy(v.xt + ((size_t)s->off[t] + r) * g.C, x + ((size_t)s->perm[r] * g.T + t) * g.C,
             sizeof(float) * (size_t)g.C);
  int drop = ctx->training && g.drop > 0 && g.L > 1;
  if (drop) draw_masks(l, &g, &v, ctx);
  const float *in = v.xt;
  int inw = g.C;
  for (int k = 0; k < g.L; k++) {
    for (int d = 0; d < g.D; d++) run_dir(l, &g, &v, k, d, in, inw, ctx);
    if (k + 1 < g.L) {
      gather_seq(&g, &v, k, v.seq[k], drop ? v.mask[k] : NULL);
      in = v.seq[k];
      inw = g.HD;
    }
  }
  write_out(l, &g, &v, y);
}

/* ---- backward ------------------------------------------------------------ */

/* One row's gradients at its step: dh [H] w.r.t. the state after it (in:
 * from above and later steps), dc [H] (lstm, in/out: w.r.t. the cell,
 * becomes w.r.t. the cell before), dhp [H] out: the direct part of the
 * gradient w.r.t. the state before (gru; zeros otherwise); dg/dq [GH]: the
 * pre-activation gradients of the input and hidden projections. a [GH] the
 * gate activations (rnn: NULL), h2 the state after, hp/cp/c2 before/after,
 * qn (gru). */
static void cell_back(const geo *g, const float *restrict a, const float *restrict h2,
                      const float *restrict hp, const float *restrict cp,
                      const float *restrict c2, const float *restrict qn,
                      const float *restrict dh, float *restrict dc, float *restrict dhp,
                      float *restrict dg, float *restrict dq) {
  int H = g->H;
  if (g->kind == CELL_TANH) {
    for (int j = 0; j < H; j++) {
      dg[j] = dh[j] * (1.0f - h2[j] * h2[j]);
      dhp[j] = 0.0f;
    }
  } else if (g->kind == CELL_RELU) {
    for (int j = 0; j < H; j++) {
      dg[j] = h2[j] > 0 ? dh[j] : 0.0f;
      dhp[j] = 0.0f;
    }
  } else if (g->kind == CELL_LSTM) {
    const float *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
    float *gi = dg, *gf = dg + H, *gg2 = dg + 2 * H, *go = dg + 3 * H;
    for (int j = 0; j < H; j++) {
      float i = ai[j], f = af[j], gg = ag[j], o = ao[j];
      float tc = nn_tanhf(c2[j]);
      float dct = dc[j] + dh[j] * o * (1.0f - tc * tc);
      gi[j] = dct * gg * i * (1.0f - i);
      gf[j] = dct * cp[j] * f * (1.0f - f);
      gg2[j] = dct * i * (1.0f - gg * gg);
      go[j] = dh[j] * tc * o * (1.0f - o);
      dc[j] = dct * f;
      dhp[j] = 0.0f;
    }
  } else {
    const float *ar = a, *az = a + H, *an = a + 2 * H;
    for (int j = 0; j < H; j++) {
      float r = ar[j], z = az[j], nn = an[j];
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

/* Gradient of direction d of layer k through time. dseq [R][HD] w.r.t. the
 * layer's packed outputs (NULL: only dlast [n][HD], w.r.t. the last valid
 * states, in sample order). Fills v->dG, v->dQ (every row). */
static void bptt_dir(nn_layer *l, const geo *g, views *v, int k, int d, const float *dseq,
                     const float *dlast) {
  const sched *s = &v->s;
  int H = g->H, GH = g->GH, n = s->n;
  const float *whh = l->param[pidx(g, k, d, 1)];
  const float *hn = v->hn[k][d], *cn = v->cn[k][d], *qn = v->qn[k][d];
  const float *h0 = v->h0[k][d], *c0 = v->c0[k][d];
  const float *P = g->G > 1 ? v->P[k][d] : NULL;
  float *dh = v->dh, *dh2 = v->dh2, *dc = v->dc;
  for (int r = 0; r < n; r++) {
    const float *dl = dlast ? dlast + (size_t)s->perm[r] * g->HD + (size_t)d * H : NULL;
    for (int j = 0; j < H; j++) {
      dh[(size_t)r * H + j] = dl ? dl[j] : 0.0f;
      dc[(size_t)r * H + j] = 0.0f;
    }
  }
  /* forward: steps Ta-1 .. 0 (ranks join as their last step comes); reverse:
   * steps 0 .. Ta-1 (ranks leave after their first reverse step) */
  for (int st = 0; st < s->Ta; st++) {
    int t = d ? st : s->Ta - 1 - st, mt = s->m[t];
    /* ranks [0, np) have a state before the step that came from a step
     * (forward: t-1; reverse: t+1); the others start from an initial state
     * whose gradient is not needed (zeros, or carried and detached) */
    int np = d ? s->m[t + 1] : (t > 0 ? mt : 0);
    const float *hp_blk, *cp_blk;
    if (d == 0) {
      hp_blk = t ? hn + (size_t)s->off[t - 1] * H : h0;
      cp_blk = cn ? (t ? cn + (size_t)s->off[t - 1] * H : c0) : NULL;
    } else {
      hp_blk = hn + (size_t)s->off[t + 1] * H;
      cp_blk = cn ? cn + (size_t)s->off[t + 1] * H : NULL;
    }
    size_t row0 = (size_t)s->off[t];
    for (int r = 0; r < mt; r++) {
      size_t row = row0 + (size_t)r, rh = (size_t)r * H;
      if (dseq) {
        const float *ds = dseq + row * g->HD + (size_t)d * H;
        for (int j = 0; j < H; j++) dh[rh + j] += ds[j];
      }
      int has_prev = d ? r < np : 1; /* forward t = 0: the initial state, still read */
      const float *hp = has_prev ? hp_blk + rh : v->zero;
      const float *cp = cn ? (has_prev ? cp_blk + rh : v->zero) : NULL;
      cell_back(g, P ? P + row * GH : NULL, hn + row * H, hp, cp, cn ? cn + row * H : NULL,
                qn ? qn + row * H : NULL, dh + rh, dc + rh, dh2 + rh, v->dG + row * GH,
                v->dQ + row * GH);
    }
    if (np == 0) continue;
    /* dh before the step = direct part + dq W_hh, for the ranks that go on */
    nn_gemm_small(np, H, GH, v->dQ + row0 * GH, GH, whh, H, dh2, H);
    memcpy(dh, dh2, sizeof(float) * (size_t)np * H);
  }
}

/* The state before each row's step of (k, d), packed [R][H] into v->hp. */
static void prev_states(const geo *g, views *v, int k, int d) {
  const sched *s = &v->s;
  size_t H = (size_t)g->H;
  const float *hn = v->hn[k][d];
  for (int t = 0; t < s->Ta; t++) {
    float *dst = v->hp + (size_t)s->off[t] * H;
    int mt = s->m[t];
    if (d == 0) {
      memcpy(dst, t ? hn + (size_t)s->off[t - 1] * H : v->h0[k][d], sizeof(float) * mt * H);
    } else {
      int np = s->m[t + 1];
      if (np) memcpy(dst, hn + (size_t)s->off[t + 1] * H, sizeof(float) * np * H);
      memset(dst + (size_t)np * H, 0, sizeof(float) * (size_t)(mt - np) * H);
    }
  }
}

/* Column sums of rows [m][w] added into b [w]. */
static void add_colsum(float *b, const float *rows, size_t m, int w) {
  for (size_t r = 0; r < m; r++)
    for (int j = 0; j < w; j++) b[j] += rows[r * (size_t)w + j];
}

/* Parameter gradients of (k, d) from v->dG / v->dQ and the layer's packed
 * input in [R][inw]; din [R][inw] = (or += when accumulate) dG W_ih. */
static void grads_dir(nn_layer *l, const geo *g, views *v, int k, int d, const float *in, int inw,
                      float *din, int accumulate, int pg) {
  int R = v->s.R, GH = g->GH, H = g->H;
  if (R == 0) return;
  if (pg) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, inw, R, 1.0f, v->dG, GH, in, inw,
                1.0f, l->grad[pidx(g, k, d, 0)], inw);
    prev_states(g, v, k, d);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, H, R, 1.0f, v->dQ, GH, v->hp, H,
                1.0f, l->grad[pidx(g, k, d, 1)], H);
    if (g->nb > 2) {
      add_colsum(l->grad[pidx(g, k, d, 2)], v->dG, (size_t)R, GH);
      add_colsum(l->grad[pidx(g, k, d, 3)], v->dQ, (size_t)R, GH);
    }
  }
  if (din)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, inw, GH, 1.0f, v->dG, GH,
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
  plan(&g, &v.s, n, ctx); /* the same schedule as forward's */
  const sched *s = &v.s;
  int T = g.T, HD = g.HD;
  float *dcur = NULL; /* [R][HD] w.r.t. the current layer's packed outputs */
  if (g.seq_out) {
    dcur = v.dA;
    for (int t = 0; t < s->Ta; t++)
      for (int r = 0; r < s->m[t]; r++)
        memcpy(dcur + ((size_t)s->off[t] + r) * HD, dy + ((size_t)s->perm[r] * T + t) * HD,
               sizeof(float) * (size_t)HD);
  }
  int drop = ctx->training && g.drop > 0 && g.L > 1;
  for (int k = g.L - 1; k >= 0; k--) {
    const float *in = k ? v.seq[k - 1] : v.xt;
    int inw = k ? HD : g.C;
    float *din = (k || dx) ? (dcur == v.dA ? v.dB : v.dA) : NULL;
    const float *dlast = (k == g.L - 1 && !g.seq_out) ? dy : NULL;
    for (int d = 0; d < g.D; d++) {
      bptt_dir(l, &g, &v, k, d, dlast ? NULL : dcur, dlast);
      grads_dir(l, &g, &v, k, d, in, inw, din, d > 0, pg);
    }
    if (k && drop) {
      size_t cnt = (size_t)s->R * HD;
      for (size_t e = 0; e < cnt; e++) din[e] *= v.mask[k - 1][e];
    }
    dcur = din;
  }
  if (!dx) return;
  for (int r = 0; r < n; r++) {
    int i = s->perm[r], len = s->len[r];
    float *dxi = dx + (size_t)i * T * g.C;
    for (int t = 0; t < len; t++)
      memcpy(dxi + (size_t)t * g.C, dcur + ((size_t)s->off[t] + r) * g.C,
             sizeof(float) * (size_t)g.C);
    memset(dxi + (size_t)len * g.C, 0, sizeof(float) * (size_t)(T - len) * g.C);
  }
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
