/* residual.c: the residual block, y = body(x) + shortcut(x) (He et al. 2016).
 *
 * Sugar for a graph: this file only declares the block's keys. Its
 * `block_len` key makes nn_model_build treat the next block_len configs as
 * its body (nested blocks counted with their bodies) and expand the block
 * (core/model.h): the body's layers, reading the block's input; the
 * projection "<block>.shortcut" when `projection` (a bias-free 1x1 conv2d
 * with the stride that matches the body's output for images, a bias-free
 * dense layer for [F] outputs); then an `add` layer named like the block,
 * reading [body output, shortcut (or the block's input)]. An empty body is
 * the identity (y = 2x without a projection). The block itself is never a
 * layer of the model, so it has no forward or backward. */
#include <stddef.h>

#include "core/layer.h"

static const nn_key residual_keys[] = {
    {"projection", NN_KEY_BOOL, offsetof(nn_layer_cfg, projection), sizeof(int), 0, 1, "false",
     NULL, NN_KEY_CFG,
     "shortcut through a learned projection (1x1 conv2d with stride for images, dense "
     "for vectors, no bias) instead of the identity; needed when the body changes the shape",
     0},
    {"block_len", NN_KEY_INT, offsetof(nn_layer_cfg, block_len), sizeof(int), 0, 65536, "0",
     NULL, NN_KEY_CFG,
     "set by the job parser, not written in job files: the number of flat layer "
     "configs after this one that form the body (the nested `layers`, counted fully)", 0},
    {0},
};

/* Never reached through the model (it expands the block); a caller that
 * builds the layer alone gets a message. */
static int residual_build(nn_layer *l, nn_error *err) {
  (void)l;
  return nn_error_set(err, NN_EINTERNAL, "a residual block is expanded by nn_model_build");
}

const nn_layer_ops nn_layer_residual = {
    .type = "residual",
    .help = "residual block: y = body(x) + shortcut(x); the body is the nested `layers`, the "
            "shortcut the identity or a learned projection (expanded into the body's layers, "
            "`<block>.shortcut` and an `add` named like the block)",
    .keys = residual_keys,
    .build = residual_build,
    .expands = 1,
};
