/* model.h: a graph of layers (a DAG run in job order) over one arena each
 * for parameters, gradients, buffers, activations and scratch.
 *
 * All parameters live in one contiguous float array (params), all their
 * gradients in another of the same length (grads), laid out in layer order;
 * layers hold views into them. An all-reduce or a checkpoint is one call over
 * the arena and the optimizer is one loop. Non-trainable state (running
 * statistics) lives in a third arena (buffers). Activations (each layer's
 * output) and their gradients for a batch of up to max_batch samples are
 * preallocated: the step loop allocates nothing.
 *
 * The graph. Each layer reads the outputs of the layers its config names in
 * `inputs` (cfg.inputs, by name; "input" is the model's input when no layer
 * has that name), or by default the previous layer of its list (the model's
 * input for the first). Inputs must name layers above it, so job order is an
 * execution order. Several layers may read one tensor (branches); merge
 * layers (add, concat, multiply: ops->forward_n) read several. The model's
 * output is the last layer's; every other layer's output must be read by
 * some layer. Naming a config whose dense `activation` was expanded (below)
 * reads the activation's output. Shapes are checked while building, each
 * error naming the layer (its config index, name and type).
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
 *  - every layer's resolved inputs are written back into its cfg.inputs
 *    (names, "input" for the model's input) and l->src[] (indices, -1).
 *
 * Residual blocks are sugar. A config whose type expands (ops->expands:
 * residual) owns the next cfg.block_len configs as its body (nested blocks
 * counted with their own bodies) and becomes: the body's layers (the first
 * reads the block's input), then the projection if `projection`
 * ("<block>.shortcut": a 1x1 conv2d with the stride that matches the body's
 * output for [C, H, W], a dense layer for [F]; no bias), then an `add` layer
 * named like the block reading [body output, shortcut or the block's input].
 *
 * Initial values. Layer i draws its initial parameters from (seed,
 * NN_RNG_INIT, l->init_index, param slot); buffers use slots NN_BUFFER_RNG_SLOT0 +
 * j. init_index numbers the layers as the model did before blocks became
 * graphs (the block first, then its body, then its shortcut), which for a
 * model without blocks is the layer's index: a job's initial parameters and
 * its arena order do not depend on the expansion.
 *
 * Backward runs the layers from last to first. A tensor read by several
 * layers gets the sum of their gradients, added in that order (last reader
 * first). Layers whose parameters and inputs need no gradient are skipped
 * unless the caller asked for the input gradient.
 *
 * Frozen layers (job key `trainable = false`; nn_layer.frozen, core/layer.h;
 * on a residual block it freezes every layer the block expands to). The
 * parameter arena holds the trainable layers' tensors first, in layer order,
 * then the frozen layers', in layer order: params[0, ntrainable) is what is
 * trained. grads has ntrainable floats and a frozen layer's grad views are
 * NULL; its backward computes dx only, as every layer's does in a frozen pass
 * (ctx->frozen). Frozen layers and frozen passes report no grad-ready range.
 * With no frozen layer, ntrainable == nparams and the layout is unchanged.
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

typedef struct nn_model {
  int nlayers;
  nn_layer *layers;      /* [nlayers] */
  nn_shape in, out;      /* per-sample input and output shapes */
  int max_batch;         /* largest n forward/backward accept */

  size_t nparams;        /* floats in params */
  size_t ntrainable;     /* floats of params in trainable layers: params[0, ntrainable);
                            the frozen layers' follow, [ntrainable, nparams). grads,
                            the optimizer and the gradient sync cover [0, ntrainable).
                            == nparams when no layer is frozen */
  float *params;
  float *grads;          /* [ntrainable] */
  size_t nbuffers;       /* floats in buffers */
  float *buffers;

  int ntensors;          /* parameters then buffers, in arena order: layer order, the
                            frozen layers' parameters after the trainable ones' */
  nn_tensor_ref *tensors;

  float *act;            /* outputs of every layer: [max_batch * out_i] each */
  size_t *act_off;       /* [nlayers] offset of layer i's output in act (and dact) */
  float *dact;           /* gradients w.r.t. those outputs, same layout */
  float *dtmp;           /* [max_batch * widest sum of one layer's inputs]: input
                            gradients that are added into an already written one */
  unsigned char *need;   /* [nlayers] 1 if backward must run it without dx */
  unsigned char *gset;   /* [nlayers] backward: its dact written this pass */
  float *scratch;        /* layer scratch arena */
  size_t carry_per_sample; /* floats of carried state per sample, over all layers
                              (0: no layer carries state) */
  int *fuse_out;         /* [nlayers] the layer whose output (act) and output gradient
                            (dact) layer i writes and reads: i, or the ReLU fused onto
                            it (nn_model_fuse) */
  int *fuse_in;          /* [nlayers] the producer layer i reads as input 0: src[0], or
                            the input of a ReLU moved after it (-1: the model input) */
  unsigned char *fused;  /* [nlayers] 1: a ReLU whose work a neighbour does; it runs
                            neither forward nor backward */
  int nfused;            /* ReLUs fused (nn_model_fuse) */
  unsigned char *blocked; /* [nlayers] 1: layer i's output (and its gradient) is in the
                            blocked layout (nn_model_layouts) */
  int nblocked;          /* outputs kept blocked */
  float *carry;          /* [max_batch * carry_per_sample], sample-major: row i holds
                            sample i's state of every carrying layer, in layer order
                            (NULL when carry_per_sample is 0) */
} nn_model;

/* 1 if layer type `type` is a block the model expands (residual). */
int nn_model_is_composite_type(const char *type);

/* Called by nn_model_backward after a layer has produced all of its
 * parameter gradients: grads[offset, offset+count) are final for this step.
 * Layers finish from last to first, so ready ranges move toward offset 0 and
 * cover the arena once. */
typedef void (*nn_grad_ready_fn)(void *user, size_t offset, size_t count);

/* Build a model for input shape `in` from n layer configs (copied). Shape or
 * configuration errors fail here, naming the layer. Parameters are zero until
 * nn_model_init_params. */
int nn_model_build(nn_model *m, const nn_shape *in, const nn_layer_cfg *cfgs,
                   int n, int max_batch, nn_error *err);
void nn_model_free(nn_model *m);

/* The fusion pass (nn_model_build runs it, on unless NN_FUSE=0: core/compute.h).
 * It changes how layers run, never the graph's names, tensors, parameters or
 * outputs: checkpoints, `nntrain check` and results (to float rounding) are
 * the same with it on or off. Two patterns, for a ReLU layer r (type "relu",
 * one input, no activity penalty on it or its neighbour, not the last layer):
 *  - p -> r, where p's type can write a ReLU of its output
 *    (ops->fuse_relu: batchnorm, add) and r is p's only reader: p writes
 *    relu(its output) into r's output and takes r's output gradient, masking
 *    it; p's own output buffer is left unwritten.
 *  - q -> r -> p, where p commutes with ReLU (maxpool) and is r's only
 *    reader: p reads q's output and writes relu(maxpool) (the same values and
 *    gradients, on a quarter of the elements).
 * on = 0 undoes it (the reference layers). Returns the number of ReLUs fused.
 * Call it between passes only (a forward and its backward see one setting). */
int nn_model_fuse(nn_model *m, int on);

/* The layout pass (nn_model_build runs it after the fusion pass, on unless
 * NN_BLOCKED=0: core/compute.h). It keeps a layer's output in the blocked
 * layout nChw16c (core/layer.h, "Blocked activations") when the layer can
 * write it (NN_BLK_OUT: a oneDNN convolution; NN_BLK_SAME with all its
 * inputs blocked: batchnorm, maxpool, elementwise layers, add) and every
 * reader can read it (NN_BLK_IN: a oneDNN convolution, global_avgpool; or
 * NN_BLK_SAME and blocked itself). Never the last layer's output, nor a
 * layer's with an activity penalty (regularize.c reads them). So a chain of
 * oneDNN convolutions, batchnorms, ReLUs, pools and residual adds runs with
 * no reorder between its convolutions. Like fusion it changes how layers
 * run, never names, tensors, checkpoints or results: the layers' blocked
 * paths compute the bits of their NCHW ones (tests/test_core_blocked.c,
 * test_core_model.c). on = 0: every tensor NCHW. Sets each layer's
 * in_blocked / out_blocked; returns the number of blocked outputs. Call it
 * between passes only. */
int nn_model_layouts(nn_model *m, int on);

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
 * nn_model_backward. Layers that neither have parameters nor read a layer
 * that needs a gradient are skipped when dx is NULL. */
void nn_model_backward_dx(nn_model *m, const float *x, const float *dout, float *dx, int n,
                          const nn_run_ctx *ctx, nn_grad_ready_fn ready, void *user);

/* Backward from the output of layer `layer` instead of the model's output:
 * dy [n, out of that layer] is the gradient of some function of layer
 * `layer`'s output in the last forward (m->act + m->act_off[layer]); layers
 * after it are skipped, as are layers no gradient reaches from it (a branch
 * read only by layers after it). Writes dx [n, in] (may be NULL) and, unless
 * ctx->frozen, adds into grads like nn_model_backward. Activity penalties
 * are not added (ctx->act_scale is ignored). For `nntrain dream`: the input
 * that excites a hidden layer. The model must run unfused and NCHW
 * (nn_model_fuse(m, 0), nn_model_layouts(m, 0) before the forward), where
 * every layer's output is its own act: NN_EUSAGE otherwise, or for a layer
 * index out of range. */
int nn_model_backward_from(nn_model *m, const float *x, int layer, const float *dy, float *dx,
                           int n, const nn_run_ctx *ctx, nn_error *err);

/* Forward from a hidden layer: y [n, out of `layer`] is taken as that
 * layer's output and only the layers after it run (a VAE's decoder from a
 * latent code, `nntrain sample`); returns the model's output as
 * nn_model_forward does. Every layer after `layer` must read only its output
 * or later ones, and the model must be unfused and NCHW (nn_model_fuse(m, 0),
 * nn_model_layouts(m, 0)): NN_EUSAGE otherwise (*out NULL). */
int nn_model_forward_from(nn_model *m, int layer, const float *y, int n, const nn_run_ctx *ctx,
                          const float **out, nn_error *err);

void nn_model_zero_grad(nn_model *m);

/* Range of layer i's parameters in the arena. */
void nn_model_layer_range(const nn_model *m, int i, size_t *offset, size_t *count);

/* Range of m->buffers holding running statistics that the trainer averages
 * across ranks (see "Running statistics" above): [*offset, *offset + *count). */
void nn_model_running_stats(const nn_model *m, size_t *offset, size_t *count);

/* Carried state (core/layer.h, nn_layer.carry): the whole arena, *ptr
 * [*count] floats, *count = max_batch * carry_per_sample, sample-major (row i:
 * the i-th sample of a slice, i.e. data stream i of this replica). It is each
 * rank's own state: a checkpoint gathers it, nothing all-reduces it. Starts
 * at zero; zeroing it (or a forward with ctx->carry_in = 0) resets the
 * streams. *ptr is NULL and *count 0 when no layer carries state. */
void nn_model_carry(nn_model *m, float **ptr, size_t *count);

/* Index into m->tensors of tensor `name` of layer `layer`, or -1. */
int nn_model_find_tensor(const nn_model *m, const char *layer, const char *name);

#endif
