/* flatten.c: reshape each sample to one dimension, [C, H, W] -> [C*H*W].
 *
 * The data layout is sample-major, so flattening does not move any value:
 * forward and backward are plain copies into the model's buffers (which keep
 * every layer's output separately). A blocked input (core/layer.h, "Blocked
 * activations": the model keeps a convnet's features in nChw16c up to here)
 * is converted to NCHW order on the way instead of copied, so the features
 * reach the next layer (dense: PyTorch's weight layout) in the order they
 * always had; backward converts the gradient back. */
#include <stddef.h>
#include <string.h>

#include "core/blocked.h"
#include "core/layer.h"

static const nn_key flatten_keys[] = {{0}};

static int flatten_build(nn_layer *l, nn_error *err) {
  size_t c = nn_shape_count(&l->in);
  if (c < 1 || c > (size_t)1 << 30)
    return nn_error_set(err, NN_ESHAPE, "cannot flatten input of %zu features", c);
  l->out.ndim = 1;
  l->out.dim[0] = (int)c;
  if (nn_blk_fits(&l->in)) l->blk_caps = NN_BLK_IN;
  return 0;
}

/* x, y [n, count(in)] */
static void flatten_forward(nn_layer *l, const float *x, float *y, int n,
                            const nn_run_ctx *ctx) {
  size_t cnt = nn_shape_count(&l->in);
  if (l->in_blocked) {
    for (int i = 0; i < n; i++)
      nn_blk_to_nchw(x + (size_t)i * cnt, y + (size_t)i * cnt, l->in.dim[0], l->in.dim[1],
                     l->in.dim[2]);
  } else if (x != y) {
    memcpy(y, x, sizeof(float) * (size_t)n * cnt);
  }
}

/* dy, dx [n, count(in)] */
static void flatten_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_run_ctx *ctx) {
  size_t cnt = nn_shape_count(&l->in);
  if (!dx) return;
  if (l->in_blocked) {
    for (int i = 0; i < n; i++)
      nn_blk_from_nchw(dy + (size_t)i * cnt, dx + (size_t)i * cnt, l->in.dim[0], l->in.dim[1],
                       l->in.dim[2]);
  } else if (dx != dy) {
    memcpy(dx, dy, sizeof(float) * (size_t)n * cnt);
  }
}

const nn_layer_ops nn_layer_flatten = {
    .type = "flatten",
    .help = "reshape each sample to one dimension ([C, H, W] -> [C*H*W])",
    .keys = flatten_keys,
    .build = flatten_build,
    .forward = flatten_forward,
    .backward = flatten_backward,
};
