/* conv2d_dnnl.h: conv2d's oneDNN backend (fp32 or bf16), private to conv2d.c.
 *
 * conv2d.c keeps the im2col + OpenBLAS convolution as the reference
 * implementation and the fallback; when the build has oneDNN (NN_HAVE_DNNL)
 * and NN_CONV_BACKEND picks it (core/compute.h), a layer's forward and
 * backward go through the functions here instead. Data stay in our layouts
 * at the layer's edges whatever oneDNN computes in: x, y, dx, dy NCHW
 * [n, C, H, W] (or nChw16c where the model keeps activations blocked:
 * nn__conv_dnnl_set_layouts), weight PyTorch's [F, C/groups, kh, kw], bias [F].
 *
 * Two layouts inside:
 *   plain    the primitives read and write our buffers as they are (nchw,
 *            oihw / goihw): no reorders;
 *   blocked  the primitives run in the formats oneDNN picks (format "any",
 *            e.g. nChw16c and OIhw16i16o on AVX-512); each call reorders x,
 *            dy and the weights in, y and dx out.
 *
 * Primitives depend on the slice size n (full batch, the last partial
 * batch, evaluation batches), so they are created on first use of each n
 * and kept in a small cache (NN__CONV_DNNL_CACHE entries, least recently
 * used replaced). Creating an entry allocates (oneDNN's primitives and
 * memory objects, and, when it needs more room than any entry before it, the
 * arena below); a call that finds its entry allocates nothing of ours. (One
 * exception we cannot remove: oneDNN's dnnl_primitive_execute builds a small
 * argument map on the heap on every call; docs/layers.md gives the count.)
 *
 * Memory: one arena per layer, shared by all cached entries (calls run one
 * at a time), holds the reordered tensors, the weight gradient as the
 * primitive writes it (it overwrites; our contract adds, so it is added into
 * the caller's dW by a reorder with a sum post-op), the bias gradient, and
 * every primitive's scratchpad (oneDNN's scratchpad mode "user", so oneDNN
 * allocates none while it runs).
 *
 * bf16 (train.precision, core/compute.h): the primitives read bf16 (x, the
 * weights and dy, rounded to nearest even by the reorders that bring them
 * in, so a bf16 backend always reorders them, plain or blocked) and write
 * f32 (y, dx, the weight and bias gradients); products are exact in f32 and
 * accumulated in f32. Our buffers at the edges stay f32 either way. */
#ifndef NN_CORE_LAYERS_CONV2D_DNNL_H
#define NN_CORE_LAYERS_CONV2D_DNNL_H

#include "core/err.h"

#define NN__CONV_DNNL_CACHE 4

/* The convolution, as conv2d.c's geometry says it (padding already
 * resolved to four sides; dilation 1 = none). */
typedef struct nn__conv_dims {
  int c, h, w;           /* input channels, height, width */
  int f, groups;         /* filters, channel groups */
  int kh, kw, sh, sw, dh, dw;
  int pt, pb, pl, pr;    /* zero padding top, bottom, left, right */
  int ho, wo;            /* output height, width */
  int bias;              /* 1: the layer has a bias */
} nn__conv_dims;

typedef struct nn__conv_dnnl nn__conv_dnnl;

/* A backend for d, in the blocked layout when `blocked`, else plain, in bf16
 * when `bf16` (the caller checked the CPU has it: nn_compute_bf16_support):
 * the engine and stream only (primitives come with the first call of each n).
 * 0, or NN_ENOMEM / NN_EINTERNAL with a message. */
int nn__conv_dnnl_new(const nn__conv_dims *d, int blocked, int bf16, nn__conv_dnnl **out,
                      nn_error *err);
void nn__conv_dnnl_free(nn__conv_dnnl *c);

/* y [n, F, Ho, Wo] = conv(x [n, C, H, W], w) (+ b when d->bias). 0, or a
 * negative code when oneDNN could not serve this n (then y is not written
 * and the caller computes the reference; nn__conv_dnnl_failure says why). */
int nn__conv_dnnl_forward(nn__conv_dnnl *c, const float *x, const float *w, const float *b,
                          float *y, int n);

/* dy [n, F, Ho, Wo]: dx = the input gradient (written; skipped when NULL);
 * dw += the weight gradient and db += the bias gradient (skipped when dw is
 * NULL: a frozen layer or pass). Returns as forward; on failure nothing was
 * added to dw or db. */
int nn__conv_dnnl_backward(nn__conv_dnnl *c, const float *x, const float *w, const float *dy,
                           float *dx, float *dw, float *db, int n);

/* Our side's layouts from now on: x and dx in nChw16c when in_blocked, y and
 * dy when out_blocked (core/layer.h, "Blocked activations"; C or F a
 * multiple of 16), else NCHW. Only a blocked backend takes them (a plain one
 * ignores them). A change empties the cache: the reorders the primitives
 * need depend on it; where our layout is the primitive's, there is none. */
void nn__conv_dnnl_set_layouts(nn__conv_dnnl *c, int in_blocked, int out_blocked);

/* Why the last failed creation failed, "" if none has. */
const char *nn__conv_dnnl_failure(const nn__conv_dnnl *c);

#endif
