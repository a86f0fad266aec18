/* layer.h: the one interface every layer implements, and the layer registry.
 *
 * A layer type is one file in src/core/layers/ that fills an nn_layer_ops and
 * is listed once in registry.c. The model calls, in order:
 *   build(l)   read l->cfg and l->in (multi-input layers: l->nin, l->ins[]
 *              and l->cfg.inputs[] for names in messages); set l->out, declare parameters (pspec),
 *              buffers (bspec, non-trainable state such as running means) and
 *              scratch needs; reject bad configurations with a message.
 *   [the model allocates the arenas and points l->param/grad/buffer/scratch]
 *   bind(l)    optional: the views are set.
 *   forward / backward, many times.
 *   destroy(l) optional: free what build allocated in l->state.
 *
 * Data layout: a batch is n samples, each nn_shape_count(&shape) floats,
 * sample-major ("NCHW" for images: x[n][c][h][w]). Parameters use PyTorch's
 * names and shapes (dense: weight [out, in], bias [out]).
 *
 * backward ADDS parameter gradients into l->grad (the model zeroes them once
 * per step) and WRITES dx (the gradient w.r.t. the input) unless dx is NULL.
 * Neither forward nor backward allocates: all memory comes from the arenas.
 *
 * Frozen layers and frozen passes. A layer with l->frozen (job key
 * `trainable = false`, or inside a frozen block) has no gradient views
 * (l->grad[p] == NULL), and a backward with ctx->frozen set (a frozen pass:
 * a GAN's generator step through the discriminator) must not touch any
 * parameter gradient. A layer with parameters therefore asks
 * nn_layer_param_grads(l, ctx) before it adds into l->grad, and returns at
 * once when that is 0 and dx is NULL. dx is the same either way. */
#ifndef NN_CORE_LAYER_H
#define NN_CORE_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"

#define NN_MAX_DIMS 4
#define NN_MAX_PARAMS 32 /* a 2-layer bidirectional LSTM declares 16 */
#define NN_BUFFER_RNG_SLOT0 8 /* RNG slot of buffer 0 (nn_param_init): fixed, so initial
                                 values do not depend on NN_MAX_PARAMS */
#define NN_NAME_MAX 48
#define NN_MAX_INPUTS 8 /* inputs of one layer (merge layers read several) */

/* Shape of one sample (no batch dimension). */
typedef struct nn_shape {
  int ndim;
  int dim[NN_MAX_DIMS];
} nn_shape;

size_t nn_shape_count(const nn_shape *s);
int nn_shape_equal(const nn_shape *a, const nn_shape *b);
/* "[1, 28, 28]" into buf; returns buf. */
char *nn_shape_str(const nn_shape *s, char *buf, size_t n);

typedef enum nn_init_kind {
  NN_INIT_ZEROS,
  NN_INIT_ONES,
  NN_INIT_HE_NORMAL,      /* N(0, 2/fan_in) */
  NN_INIT_HE_UNIFORM,     /* U(-sqrt(6/fan_in), +) */
  NN_INIT_GLOROT_NORMAL,  /* N(0, 2/(fan_in+fan_out)) */
  NN_INIT_GLOROT_UNIFORM, /* U(-sqrt(6/(fan_in+fan_out)), +) */
  NN_INIT_CONSTANT,       /* every element = value */
  NN_INIT_UNIFORM,        /* U(-value, value): PyTorch's RNN/LSTM/GRU/embedding-style
                             bounds, e.g. 1/sqrt(hidden) */
  NN_INIT_NORMAL_STD,     /* N(0, value^2): value (nn_param_spec, set after
                             nn_layer_add_param) is the standard deviation
                             (PyTorch's nn.Embedding: N(0, 1)) */
} nn_init_kind;

/* Parse "he_normal" etc. Returns -1 if unknown. "constant" is not a job-file
 * choice (it needs a value); layers use NN_INIT_CONSTANT in their specs. */
int nn_init_parse(const char *name);
extern const char *const nn_init_choices; /* NN_INIT_CHOICES */
#define NN_INIT_CHOICES "zeros|ones|he_normal|he_uniform|glorot_normal|glorot_uniform"

/* One parameter or buffer tensor a layer declares. */
typedef struct nn_param_spec {
  char name[NN_NAME_MAX]; /* PyTorch name: "weight", "bias", "running_mean" */
  nn_shape shape;         /* PyTorch shape */
  nn_init_kind init;
  int fan_in, fan_out;    /* for the scaled initializers */
  float value;            /* NN_INIT_CONSTANT */
  int zero_row;           /* 0: none; r + 1: row r of the tensor (index r of its first
                             dimension) starts at zero whatever `init` draws, as
                             nn.Embedding's padding_idx row (set after nn_layer_add_param) */
} nn_param_spec;

/* Bytes for one layer type's own options (see nn_layer_cfg.opts). */
#define NN_LAYER_OPTS_MAX 192

/* Everything a job file can say about one layer.
 *
 * The fields here are the ones every layer has, or that the model builder
 * itself reads: type and name, the penalties, `trainable`, the graph inputs,
 * and three structural keys (a dense/conv2d `activation` becomes a layer of
 * its own; a residual block's `block_len` and `projection` shape the graph).
 * Each type's other options (dense: units, use_bias, init; conv2d: filters,
 * kernel_size, ...) live in `opts`, laid out as a struct private to the type's
 * file and described by its key table, whose offsets are into that struct
 * (keys flagged NN_KEY_CFG point into nn_layer_cfg instead). The type reads
 * them with NN_LAYER_OPTS; anyone else goes by key name (nn_layer_cfg_set,
 * nn_layer_cfg_num, ...), as the job file does. */
typedef struct nn_layer_cfg {
  char type[24];           /* registry name: "dense", "relu", ... */
  char name[NN_NAME_MAX];  /* unique name; params are saved as <name>/<param> */
  char activation[24];     /* dense, conv2d: activation layer added after it, "" = none */
  /* residual block: the next `block_len` configs (after this one, nested
   * blocks counted with their own bodies) form the block's body; its output
   * is added to the block's input (through a 1x1 convolution when
   * `projection`, needed when the body changes the shape) */
  int block_len;
  int projection;
  /* regularization, any layer */
  double l1, l2;           /* penalties on the layer's weights (not biases) */
  double activity_l1, activity_l2; /* penalties on the layer's output */
  int frozen;              /* job key `trainable = false`: no parameter gradients, optimizer
                              slots or all-reduce for this layer (a block: its whole body) */
  /* graph, any layer: the names of the layers whose outputs this one reads
   * ("input" = the model's input); none = the previous layer (model.h) */
  char inputs[NN_MAX_INPUTS][NN_NAME_MAX];
  int ninputs;
  /* the type's own options (zeroed, then its key table's defaults) */
  union {
    max_align_t align_;
    unsigned char bytes[NN_LAYER_OPTS_MAX];
  } opts;
} nn_layer_cfg;

/* The options struct T of a layer type inside cfg (a pointer to T, const if
 * cfg is). Only the type's own file knows T; NN_LAYER_OPTS_FIT(T) checks
 * there that it fits. */
#define NN_LAYER_OPTS(cfg, T) ((T *)(void *)(cfg)->opts.bytes)
#define NN_LAYER_OPTS_FIT(T)                                                    \
  _Static_assert(sizeof(T) <= NN_LAYER_OPTS_MAX && _Alignof(T) <= _Alignof(max_align_t), \
                 #T " does not fit nn_layer_cfg.opts")
_Static_assert(NN_KEY_ITEM_MAX == NN_NAME_MAX, "inputs is an NN_KEY_STRING_LIST of names");

/* Per-call context for forward/backward. */
typedef struct nn_run_ctx {
  int training;     /* 1 in training (dropout on, batch statistics), 0 in evaluation */
  uint64_t seed;    /* the job seed, for per-sample random draws */
  uint64_t step;    /* global optimizer step */
  int64_t sample0;  /* position of this slice's first sample in the global batch */
  float act_scale;  /* training: 1/global batch, the scale of activity penalties'
                       gradients (core/regularize.h); 0: no activity penalties */
  int frozen;       /* 1: a frozen pass: backward computes input gradients only and
                       touches no parameter gradient (nor calls the model's `ready`) */
  const int32_t *lengths; /* sequence data: [n] valid timesteps of each sample of this
                             slice (1..T; the rest is padding), NULL: every sample is
                             full length. Sequence layers read it (masking, the last
                             valid state); the others ignore it. */
  int carry_in;     /* 1: layers with carried state (l->carry_per_sample > 0) start
                       from it instead of zeros; 0: from zeros. Such layers always
                       write their final state back (truncated BPTT, see nn_layer.carry) */
} nn_run_ctx;

typedef struct nn_layer nn_layer;

typedef struct nn_layer_ops {
  const char *type;      /* name in job files */
  const char *help;      /* one line for docs */
  const nn_key *keys;    /* keys this type accepts besides type/name; ends with {0} */
  int penalize_weight;   /* its "weight" tensor is a linear map the l1 / l2 keys penalize */
  int (*build)(nn_layer *l, nn_error *err);
  void (*bind)(nn_layer *l);
  /* x: [n, in], y: [n, out] */
  void (*forward)(nn_layer *l, const float *x, float *y, int n, const nn_run_ctx *ctx);
  /* x, y: what forward saw and produced; dy: [n, out]; dx: [n, in] or NULL */
  void (*backward)(nn_layer *l, const float *x, const float *y, const float *dy,
                   float *dx, int n, const nn_run_ctx *ctx);
  void (*destroy)(nn_layer *l);
  /* Multi-input layers (merge: add, concat, multiply) set these instead of
   * forward/backward and read l->nin, l->ins[] in build. xs[k]: [n, ins[k]];
   * dxs[k]: [n, ins[k]] or NULL (that input's gradient is not wanted). The
   * model never passes one buffer twice in dxs. */
  void (*forward_n)(nn_layer *l, const float *const *xs, float *y, int n,
                    const nn_run_ctx *ctx);
  void (*backward_n)(nn_layer *l, const float *const *xs, const float *y, const float *dy,
                     float *const *dxs, int n, const nn_run_ctx *ctx);
  /* 1 for a block whose nested configs nn_model_build expands into a graph
   * (residual); its forward/backward are never called */
  int expands;
  /* How a ReLU next to this layer may be fused into it (model.c's fusion
   * pass, nn_model_fuse): NN_FUSE_RELU_OUT, the type honors nn_layer.relu_out
   * (forward writes relu(y); backward gets that y and the gradient w.r.t.
   * it, and masks); NN_FUSE_RELU_COMMUTES, in addition the type commutes
   * with ReLU (maxpool: max of relus = relu of max, gradients identical), so
   * a ReLU BEFORE it can move after it. 0: no fusion. */
  int fuse_relu;
} nn_layer_ops;

enum { NN_FUSE_RELU_OUT = 1, NN_FUSE_RELU_COMMUTES = 2 };

/* Blocked activations (the model's layout pass, nn_model_layouts in model.h).
 *
 * An image tensor [C, H, W] per sample with C a multiple of 16 may be kept
 * in oneDNN's nChw16c layout between layers that can all work in it, so
 * that no reorder runs between oneDNN convolutions: sample n's element
 * (c, h, w) is at
 *     n*C*H*W + ((c/16)*H*W + h*W + w)*16 + c%16
 * (the same element count as NCHW; every sample is still one contiguous run
 * of C*H*W floats). Gradients are in their tensor's layout.
 *
 * build sets l->blk_caps from its shapes and options:
 *   NN_BLK_IN    forward/backward can read a blocked input (x, and write dx
 *                in it) whatever their output's layout;
 *   NN_BLK_OUT   can write a blocked output (y, and read dy in it) whatever
 *                the input's layout;
 *   NN_BLK_SAME  can run with input(s) and output all blocked (elementwise
 *                layers, batchnorm, maxpool: the layout passes through).
 * The model then sets l->in_blocked (one flag for every input: merge layers
 * see all inputs in one layout) and l->out_blocked before any forward;
 * 0/0 is NCHW, what every layer does without asking. */
enum { NN_BLK_IN = 1, NN_BLK_OUT = 2, NN_BLK_SAME = 4 };

/* 1 if a tensor of per-sample shape s can be blocked: [C, H, W], C % 16 == 0. */
static inline int nn_blk_fits(const nn_shape *s) {
  return s->ndim == 3 && s->dim[0] > 0 && s->dim[0] % 16 == 0;
}

/* Offset of element (c, h, w) within one blocked sample of [C, H, W]. */
static inline size_t nn_blk_index(int c, int h, int w, int H, int W) {
  return (((size_t)(c >> 4) * (size_t)H + (size_t)h) * (size_t)W + (size_t)w) * 16 + (size_t)(c & 15);
}

struct nn_layer {
  const nn_layer_ops *ops;
  nn_layer_cfg cfg;
  int index;                          /* position in the model */
  nn_shape in, out;                   /* per-sample shapes (in == ins[0]) */
  int nin;                            /* inputs: 1, or more for forward_n layers */
  nn_shape ins[NN_MAX_INPUTS];        /* their per-sample shapes */
  int src[NN_MAX_INPUTS];             /* their producers in the model, -1 = model input */
  int nparams;                        /* trainable tensors */
  nn_param_spec pspec[NN_MAX_PARAMS];
  float *param[NN_MAX_PARAMS];        /* views into the parameter arena */
  float *grad[NN_MAX_PARAMS];         /* views into the gradient arena */
  int nbuffers;                       /* non-trainable state tensors */
  nn_param_spec bspec[NN_MAX_PARAMS];
  float *buffer[NN_MAX_PARAMS];       /* views into the buffer arena */
  size_t scratch_per_sample;          /* floats kept from forward to backward, per sample */
  size_t scratch_fixed;               /* floats of workspace independent of batch size */
  float *scratch;                     /* view: max_batch*scratch_per_sample + scratch_fixed */
  void *state;                        /* private, owned by the layer (destroy frees) */
  int src_index;                      /* position of the config it came from (messages) */
  int init_index;                     /* stable key: initial values, dropout (model.h) */
  size_t param_offset, param_count;   /* this layer's range in params/grads (floats) */
  size_t buffer_offset, buffer_count; /* this layer's range in buffers (floats) */
  int frozen;                         /* cfg.frozen or inside a frozen block: parameters
                                         in [ntrainable, nparams), grad[p] == NULL */
  /* Carried state (an RNN's hidden state across windows of one data stream:
   * truncated BPTT). build sets carry_per_sample (floats per sample, 0 = none);
   * the model points carry at the layer's part of sample 0's row of its carry
   * arena: sample i's state is carry + i * carry_stride. forward reads it when
   * ctx->carry_in (else starts from zeros) and always writes the final state
   * back; backward treats the initial state as a constant (detached). */
  size_t carry_per_sample;
  float *carry;                       /* view into the model's carry arena */
  size_t carry_stride;                /* floats between two samples' rows */
  int relu_out;                       /* set by the model's fusion pass (ops->fuse_relu):
                                         forward writes relu of the layer's output, and
                                         backward's y is that and dy its gradient */
  int blk_caps;                       /* NN_BLK_* this layer supports (build sets it) */
  int in_blocked, out_blocked;        /* layouts the model chose (NN_BLK_*, above) */
};

/* 1 if backward must add into l's parameter gradients: the layer is not
 * frozen and the pass is not a frozen pass. */
static inline int nn_layer_param_grads(const nn_layer *l, const nn_run_ctx *ctx) {
  return !l->frozen && !ctx->frozen;
}

/* For build(): declare a trainable tensor / a buffer. Returns 0, or
 * NN_EINTERNAL with a message when more than NN_MAX_PARAMS are declared. */
int nn_layer_add_param(nn_layer *l, const char *name, const nn_shape *shape,
                       nn_init_kind init, int fan_in, int fan_out, nn_error *err);
int nn_layer_add_buffer(nn_layer *l, const char *name, const nn_shape *shape,
                        nn_init_kind init, float value, nn_error *err);

/* Fill dst [nn_shape_count(&s->shape)] per s->init, drawing from the counter
 * based stream (seed, NN_RNG_INIT, layer, slot, 0): the values depend only on
 * these arguments. Normal initializers are plain (not truncated) normals. */
void nn_param_init(const nn_param_spec *s, float *dst, uint64_t seed,
                   uint32_t layer, uint32_t slot);

/* The activation names a dense layer's `activation` key accepts; each is
 * also a layer type. "none" (or "") means no activation. */
extern const char *const nn_activation_choices; /* NN_ACTIVATION_CHOICES */
#define NN_ACTIVATION_CHOICES                                                    \
  "none|relu|leaky_relu|elu|selu|softplus|softsign|tanh|sigmoid|hard_sigmoid|softmax"
/* 1 if `name` is one of nn_activation_choices other than "none". */
int nn_is_activation(const char *name);

/* The registry: every layer type, in one table (registry.c). */
const nn_layer_ops *nn_layer_find(const char *type);
/* NULL-terminated list of all layer types, for docs and suggestions. */
const nn_layer_ops *const *nn_layer_types(void);

/* Fill cfg with the defaults of its type's key table (type must be set).
 * Fields without a default (required keys) and cfg->name are left alone.
 * NN_ENOTFOUND for an unknown type. */
int nn_layer_cfg_defaults(nn_layer_cfg *cfg, nn_error *err);

/* Options by key name, as a job file sets them; `key` is one of the type's
 * keys (its table, type must be set). nn_layer_cfg_set parses `text` as one
 * TOML value of the key's type ("12", "0.5", "true", "\"same\"", "[3, 3]")
 * and stores it: NN_ENOTFOUND for an unknown type or key, NN_ESCHEMA for a
 * value that does not parse as the key's type. No range check (the layer's
 * build checks what it needs). */
int nn_layer_cfg_set(nn_layer_cfg *cfg, const char *key, const char *text, nn_error *err);
/* The value of an integer, float or boolean key (booleans: 0 or 1, as the
 * job file says it), NAN if cfg's type has no such key. */
double nn_layer_cfg_num(const nn_layer_cfg *cfg, const char *key);
/* The value of a string or choice key, NULL if cfg's type has no such key. */
const char *nn_layer_cfg_str(const nn_layer_cfg *cfg, const char *key);
/* An integer-list key: its items (up to max) into out; returns the count,
 * or -1 if cfg's type has no such key. */
int nn_layer_cfg_ints(const nn_layer_cfg *cfg, const char *key, int *out, int max);
/* Where key k of a layer table lives in cfg: the options area, or cfg itself
 * for NN_KEY_CFG keys. Key offsets (and count offsets) are relative to it. */
void *nn_layer_key_base(nn_layer_cfg *cfg, const nn_key *k);

/* Apply the defaults of any key table to the struct at obj: each key's `def`
 * (TOML text: 12, -3, 0.01, 1e-3, inf, true, false, "text", [1, 2]) is parsed
 * and stored at its offset. Keys with def == NULL are skipped. NN_EINTERNAL
 * names the key whose default text does not parse. */
int nn_keys_apply_defaults(const nn_key *keys, void *obj, nn_error *err);
/* Store one value given as such text into key k's field of the struct at
 * obj (strings: a TOML string; lists: of integers). 0, or -1 if text does
 * not parse as the key's type. */
int nn_key_set_text(const nn_key *k, void *obj, const char *text);

#endif
