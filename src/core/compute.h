/* compute.h: which math libraries core computes with, and how many threads
 * they use.
 *
 * Core computes with OpenBLAS (every layer's reference implementation) and,
 * when built with it (CMake NN_DNNL, docs/layers.md "Convolution
 * backends"), with oneDNN for conv2d. Both are told the rank's thread count
 * here, once, by the run (run.threads).
 *
 * The convolution backend is a property of the machine and the build, not
 * of the model (results agree to float rounding), so it is not a job key
 * and never reaches a checkpoint: the environment variable NN_CONV_BACKEND
 * picks it when a conv2d layer is built:
 *   (unset) or "dnnl"   oneDNN in its default layout (reference when the
 *                       build has no oneDNN and the variable is unset)
 *   "dnnl_plain"        oneDNN on our NCHW / OIHW buffers as they are
 *   "dnnl_blocked"      oneDNN in the layouts it picks (reorders at the edges)
 *   "reference"         im2col + OpenBLAS
 * Asking for a dnnl backend in a build without oneDNN, or an unknown name,
 * fails the layer's build (NN_EUSAGE: exit 2, a bad invocation) with a message
 * naming the variable.
 *
 * Precision (docs/layers.md "bf16"): the run sets it once, before it builds
 * its models, from the job's train.precision (as it sets the thread count);
 * each conv2d layer reads it when it is built and keeps its own copy, so it
 * is a property of the layers built after the call, never of a checkpoint.
 * NN_PRECISION_BF16 makes the oneDNN convolutions with at least
 * NN_CONV_BF16_MIN_CHANNELS input channels per group compute in bf16 (bf16
 * inputs, f32 products, sums and outputs); every other layer, every
 * parameter, gradient and optimizer slot stays f32. */
#ifndef NN_CORE_COMPUTE_H
#define NN_CORE_COMPUTE_H

#include "core/err.h"
#include "core/layer.h"

typedef enum nn_conv_backend {
  NN_CONV_REFERENCE,    /* im2col + OpenBLAS (conv2d.c) */
  NN_CONV_DNNL_PLAIN,   /* oneDNN on NCHW / OIHW (goihw) buffers */
  NN_CONV_DNNL_BLOCKED, /* oneDNN in its own layouts, reorders at the layer's edges */
} nn_conv_backend;

#define NN_CONV_BACKEND_CHOICES "dnnl|dnnl_plain|dnnl_blocked|reference"

typedef enum nn_precision {
  NN_PRECISION_FP32,
  NN_PRECISION_BF16,
} nn_precision;

#define NN_PRECISION_CHOICES "fp32|bf16"

/* A convolution with fewer input channels per group than this stays f32
 * under bf16: its reorders cost more than bf16 saves (measured on the
 * classic convnet's first layer, C = 1; docs/layers.md "bf16"). */
#define NN_CONV_BF16_MIN_CHANNELS 4

/* Whether the model fuses ReLUs into their neighbours (model.h,
 * nn_model_fuse), from the environment variable NN_FUSE: unset, "" or "1"
 * on, "0" off (the unfused layers, the reference the tests compare with).
 * *on is set; 0, or NN_EUSAGE naming the variable for another value. */
int nn_fuse_choice(int *on, nn_error *err);

/* Whether the model keeps activations in the blocked layout between layers
 * that can all work in it (model.h, nn_model_layouts), from NN_BLOCKED: unset,
 * "" or "1" on, "0" off (every tensor NCHW). As nn_fuse_choice. */
int nn_blocked_choice(int *on, nn_error *err);

/* 1 if this build has the oneDNN convolution backend. */
int nn_compute_have_dnnl(void);

/* The backend NN_CONV_BACKEND asks for (see above) into *out: 0, or
 * NN_EUSAGE with a message. */
int nn_conv_backend_choice(nn_conv_backend *out, nn_error *err);

/* "reference", "dnnl_plain", "dnnl_blocked". */
const char *nn_conv_backend_name(nn_conv_backend b);

/* The backend conv2d layer l was built with. *fallbacks (may be NULL): how
 * many of its calls the reference served because oneDNN could not create
 * primitives for their slice size; *why (may be NULL): the reason, "" if
 * none. (Defined in layers/conv2d.c; tests and logs ask.) */
nn_conv_backend nn_conv2d_backend(const nn_layer *l, long *fallbacks, const char **why);

/* 1 if bf16 convolutions can run here: a build with oneDNN on a CPU with
 * bf16 instructions (oneDNN's effective ISA avx512_core_bf16 or above,
 * which honours ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA). Else 0 and *why
 * (may be NULL) says which is missing. */
int nn_compute_bf16_support(const char **why);

/* The precision of the conv2d layers built from now on (see above). bf16
 * needs nn_compute_bf16_support and a oneDNN NN_CONV_BACKEND; else NN_EINVAL
 * with a message saying which is missing (the caller names its key) and the
 * precision stays as it was. fp32 always succeeds. */
int nn_compute_set_precision(nn_precision p, nn_error *err);
nn_precision nn_compute_precision(void);

/* 1 if conv2d layer l computes in bf16 (built under NN_PRECISION_BF16 on a
 * oneDNN backend with enough input channels). (Defined in layers/conv2d.c.) */
int nn_conv2d_bf16(const nn_layer *l);

/* Threads per rank for every math library core uses: OpenBLAS, and
 * oneDNN's OpenMP threads when built with it (omp_set_num_threads, which
 * applies to the calling thread: call it from the thread that runs the
 * model). n < 1 is taken as 1. */
void nn_compute_set_threads(int n);

#endif
