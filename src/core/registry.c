/* registry.c: the one table of layer types.
 *
 * Adding a layer type: write src/core/layers/<type>.c defining a
 * `const nn_layer_ops nn_layer_<type>`, declare it below and list it in
 * `table`. Its key table, help line and gradient check (tests/
 * test_core_layers.c) go with it. Order here is the order in docs
 * (docs/adding-a-layer.md has the whole recipe). */
#include <string.h>

#include "core/layer.h"

extern const nn_layer_ops nn_layer_dense;
extern const nn_layer_ops nn_layer_flatten;
extern const nn_layer_ops nn_layer_relu;
extern const nn_layer_ops nn_layer_leaky_relu;
extern const nn_layer_ops nn_layer_elu;
extern const nn_layer_ops nn_layer_selu;
extern const nn_layer_ops nn_layer_softplus;
extern const nn_layer_ops nn_layer_softsign;
extern const nn_layer_ops nn_layer_tanh;
extern const nn_layer_ops nn_layer_sigmoid;
extern const nn_layer_ops nn_layer_hard_sigmoid;
extern const nn_layer_ops nn_layer_softmax;
extern const nn_layer_ops nn_layer_conv2d;
extern const nn_layer_ops nn_layer_maxpool;
extern const nn_layer_ops nn_layer_avgpool;
extern const nn_layer_ops nn_layer_global_avgpool;
extern const nn_layer_ops nn_layer_dropout;
extern const nn_layer_ops nn_layer_batchnorm;
extern const nn_layer_ops nn_layer_prelu;
extern const nn_layer_ops nn_layer_residual;
extern const nn_layer_ops nn_layer_add;
extern const nn_layer_ops nn_layer_concat;
extern const nn_layer_ops nn_layer_multiply;
extern const nn_layer_ops nn_layer_rnn;
extern const nn_layer_ops nn_layer_lstm;
extern const nn_layer_ops nn_layer_gru;
extern const nn_layer_ops nn_layer_embedding;
extern const nn_layer_ops nn_layer_conv1d;
extern const nn_layer_ops nn_layer_global_avgpool1d;
extern const nn_layer_ops nn_layer_global_maxpool1d;
extern const nn_layer_ops nn_layer_conv2d_transpose;
extern const nn_layer_ops nn_layer_upsample;
extern const nn_layer_ops nn_layer_reshape;
extern const nn_layer_ops nn_layer_sample;

static const nn_layer_ops *const table[] = {
    &nn_layer_dense,
    &nn_layer_flatten,
    &nn_layer_relu,
    &nn_layer_leaky_relu,
    &nn_layer_elu,
    &nn_layer_selu,
    &nn_layer_softplus,
    &nn_layer_softsign,
    &nn_layer_tanh,
    &nn_layer_sigmoid,
    &nn_layer_hard_sigmoid,
    &nn_layer_softmax,
    &nn_layer_conv2d,
    &nn_layer_maxpool,
    &nn_layer_avgpool,
    &nn_layer_global_avgpool,
    &nn_layer_dropout,
    &nn_layer_batchnorm,
    &nn_layer_prelu,
    &nn_layer_residual,
    &nn_layer_add,
    &nn_layer_concat,
    &nn_layer_multiply,
    &nn_layer_rnn,
    &nn_layer_lstm,
    &nn_layer_gru,
    &nn_layer_embedding,
    &nn_layer_conv1d,
    &nn_layer_global_avgpool1d,
    &nn_layer_global_maxpool1d,
    &nn_layer_conv2d_transpose,
    &nn_layer_upsample,
    &nn_layer_reshape,
    &nn_layer_sample,
    NULL,
};

const nn_layer_ops *nn_layer_find(const char *type) {
  if (!type) return NULL;
  for (const nn_layer_ops *const *p = table; *p; p++)
    if (strcmp((*p)->type, type) == 0) return *p;
  return NULL;
}

const nn_layer_ops *const *nn_layer_types(void) { return table; }
