/* model.h: a sequential stack of layers over three arenas.
 *
 * All parameters live in one contiguous float array (params), all their
 * gradients in another of the same length (grads), laid out in layer order;
 * layers hold views into them. An all-reduce or a checkpoint is one call over
 * the arena and the optimizer is one loop. Non-trainable state (running
 * statistics) lives in a third arena (buffers). Activations for a batch of up
 * to max_batch samples are preallocated: the step loop allocates nothing.
 * Composite layers (residual blocks) contain their own sub-stacks, so the
 * step loop never special-cases them.
 *
 * Building from configs:
 *  - a layer whose cfg.name is empty is named "<type><i>", i its position in
 *    its list ("dense0", "relu1"): the top-level list, or the body of the
 *    block that contains it, whose name and a dot then come first
 *    ("residual2.dense0"); names must be unique. Given names are used as they
 *    are (the job parser qualifies nested names itself, job.h);
 *  - a config whose type has an `activation` key (dense) with an activation
 *    other than "none"/"" becomes two layers: the layer itself and an
 *    activation layer named "<name>_<activation>" ("dense0_relu") with that
 *    type's default keys. Both carry src_index = the config's position, which
 *    error messages use: "layer 3 'dense3' (dense): units must be >= 1".
 *  - layer i in the model (after expansion) draws its initial parameters from
 *    (seed, NN_RNG_INIT, i, param slot); buffers use slots NN_MAX_PARAMS + j.
 *
 * Composite layers (residual blocks). A config whose type has a `block_len`
 * key (nn_model_is_composite_type) owns the next block_len configs as its
 * body (nested blocks counted with their own bodies). In m->layers the
 * composite comes first, then its body's layers (recursively), then its
 * shortcut projection if it has one ("<block>.shortcut": a 1x1 conv2d with
 * the stride that matches the body's output for [C, H, W] outputs, a dense
 * layer for [F] outputs; no bias). Every one of them is an ordinary nn_layer
 * with views into the model's arenas (parameters, gradients, buffers,
 * activations, scratch): there is one arena of each, whatever the nesting.
 * The composite declares no tensors of its own; its `state` points at an
 * nn_block (below) through which its forward/backward run the body.
 * m->top lists the top-level layers: the model's forward/backward iterate
 * those only and never look inside a block, so the step loop has no special
 * case. m->parent[i] is the index of the block containing layer i, or -1.
 *
 * Frozen layers (job key `trainable = false`; nn_layer.frozen, core/layer.h). The
 * parameter arena holds the trainable layers' tensors first, in layer order,
 * then the frozen layers', in layer order: params[0, ntrainable) is what is
 * trained. grads has ntrainable floats and a frozen layer's grad views are
 * NULL; its backward computes dx only (core/layer.h). A block is frozen
 * whole (a frozen layer inside a trainable block is refused), so a block's
 * range stays contiguous. With no frozen layer, ntrainable == nparams and
 * the layout is the one without the key. m->tensors follows the arena.
 *
 * Running statistics. Every float in m->buffers is a running statistic
 * (batchnorm's running_mean and running_var): an exponential average over
 * training batches, updated in forward from the rank's LOCAL slice (not
 * synchronized, like PyTorch DDP's default BatchNorm). Replicas therefore
 * drift apart; the trainer restores bit-identical replicas by averaging the
 * range nn_model_running_stats gives (today the whole buffer arena) across
 * ranks, in a fixed order, after every step (riding the step's control
 * all-reduce, src/coordinator/train.c:step_control). A future buffer that is not such an average must be placed
 * outside that range. */
#ifndef NN_CORE_MODEL_H
#define NN_CORE_MODEL_H

#include "core/layer.h"

/* One named tensor of the model (a parameter or a buffer). */
typedef struct nn_tensor_ref {
  char layer[NN_NAME_MAX]; /* layer name */
  char name[NN_NAME_MAX];  /* tensor name within the layer ("weight") */
  nn_shape shape;
  size_t offset;           /* into params (or buffers) */
  size_t count;
  int is_buffer;           /* 0: params/grads arena, 1: buffers arena */
} nn_tensor_ref;

/* The body of one composite layer, owned by the model (m->blocks) and
 * pointed to by the composite's `state`. Pointers are views into the model:
 * layers in m->layers, outputs in m->act. */
typedef struct nn_block {
  int index;                 /* the composite layer's index in m->layers */
  int last;                  /* index of its last sub-layer (== index if none) */
  int nbody;                 /* layers in the body's own list (a nested block is one) */
  nn_layer **body;           /* [nbody] in order */
  float **body_out;          /* [nbody] each one's output [max_batch * count(out)] */
  nn_layer *shortcut;        /* the projection, or NULL for the identity */
  float *shortcut_out;       /* its output [max_batch * count(out)], or NULL */
  size_t param_offset;       /* params/grads range of every sub-layer, nested ones too */
  size_t param_count;
} nn_block;

typedef struct nn_model {
  int nlayers;
  nn_layer *layers;      /* [nlayers] */
  nn_shape in, out;      /* per-sample input and output shapes */
  int max_batch;         /* largest n forward/backward accept */

  size_t nparams;        /* floats in params */
  size_t ntrainable;     /* floats of params in trainable layers: params[0, ntrainable);
                            the frozen layers' follow, [ntrainable, nparams). grads,
                            the optimizer and the gradient sync cover [0, ntrainable).
                            == nparams when no layer is frozen (today's layout) */
  float *params;
  float *grads;          /* [ntrainable] */
  size_t nbuffers;       /* floats in buffers */
  float *buffers;

  int ntensors;          /* parameters then buffers, in arena order: layer order, the
                            frozen layers' parameters after the trainable ones' */
  nn_tensor_ref *tensors;

  float *act;            /* outputs of every layer: [max_batch * out_i] each */
  size_t *act_off;       /* [nlayers] offset of layer i's output in act */
  float *dbuf[2];        /* ping-pong gradient buffers, max_batch * widest */
  float *scratch;        /* layer scratch arena */

  int ntop;              /* layers outside any block, in order */
  int *top;              /* [ntop] their indices in layers */
  int *parent;           /* [nlayers] index of the enclosing composite, or -1 */
  int nblocks;
  nn_block *blocks;      /* [nblocks] one per composite layer, in layer order */
  nn_layer **block_refs; /* storage of every block's body list */
  float **block_outs;    /* storage of every block's body_out list */
} nn_model;

/* 1 if layer type `type` is a composite (its key table has `block_len`). */
int nn_model_is_composite_type(const char *type);

/* Called by nn_model_backward after a top-level layer has produced all of
 * its parameter gradients: grads[offset, offset+count) are final for this
 * step. Layers finish from last to first, so ready ranges move toward
 * offset 0 and cover grads[0, ntrainable) once (a block reports its whole
 * range). Frozen layers and frozen passes (ctx->frozen) report nothing. */
typedef void (*nn_grad_ready_fn)(void *user, size_t offset, size_t count);

/* Build a model for input shape `in` from n layer configs (copied). Shape or
 * configuration errors fail here, naming the layer. Parameters are zero until
 * nn_model_init_params. */
int nn_model_build(nn_model *m, const nn_shape *in, const nn_layer_cfg *cfgs,
                   int n, int max_batch, nn_error *err);
void nn_model_free(nn_model *m);

/* Initialize all parameters and buffers from (seed): depends on nothing else. */
void nn_model_init_params(nn_model *m, uint64_t seed);

/* Forward n <= max_batch samples x [n, in]; returns the output [n, out]
 * (a view into the activation arena, valid until the next forward). */
const float *nn_model_forward(nn_model *m, const float *x, int n, const nn_run_ctx *ctx);

/* Backward from dout [n, out] (gradient of the loss w.r.t. the output of the
 * last forward, which must have been called with the same x and n). Adds into
 * grads. `ready` may be NULL. */
void nn_model_backward(nn_model *m, const float *x, const float *dout, int n,
                       const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user);

/* As nn_model_backward, and also writes dx [n, in], the gradient w.r.t. the
 * input x (a GAN's generator, gradient checks). dx may be NULL, which is
 * nn_model_backward. Layers below the first one that fills gradients (one
 * with parameters, not frozen; none in a frozen pass, ctx->frozen) are
 * skipped when dx is NULL. */
void nn_model_backward_dx(nn_model *m, const float *x, const float *dout, float *dx, int n,
                          const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user);

/* Zero grads[0, ntrainable). */
void nn_model_zero_grad(nn_model *m);

/* Range of layer i's parameters in the arena. For a composite layer, the
 * range of all its sub-layers (they also report their own parts). A frozen
 * layer's range lies in [ntrainable, nparams). */
void nn_model_layer_range(const nn_model *m, int i, size_t *offset, size_t *count);

/* Range of m->buffers holding running statistics that the trainer averages
 * across ranks (see "Running statistics" above): [*offset, *offset + *count). */
void nn_model_running_stats(const nn_model *m, size_t *offset, size_t *count);

/* Index into m->tensors of tensor `name` of layer `layer`, or -1. */
int nn_model_find_tensor(const nn_model *m, const char *layer, const char *name);

#endif
