/* seq_cfg.h: what the sequence-layer tests (test_core_seq.c,
 * test_core_seq_torch.c) share: their layer configs, set by key name as a
 * job file would (layer_cfg.h), and uniform test data from a seed. */
#ifndef NN_TESTS_SEQ_CFG_H
#define NN_TESTS_SEQ_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "layer_cfg.h"

/* v[n] from U(lo, hi), drawn from (seed): the same seed, the same values. */
static inline void fill_uniform(float *v, size_t n, uint64_t seed, float lo, float hi) {
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_TEST, 7, 0, 0);
  for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * nn_rng_uniform(&r);
}

/* An embedding of `vocab` rows of `dim` floats; pad: padding_idx (-1: none). */
static inline nn_layer_cfg emb_cfg(int vocab, int dim, int pad) {
  nn_layer_cfg c = cfg_of("embedding");
  cfg_set(&c, "num_embeddings", "%d", vocab);
  cfg_set(&c, "embedding_dim", "%d", dim);
  cfg_set(&c, "padding_idx", "%d", pad);
  return c;
}

/* A conv1d of f filters, k taps; pad: "valid" | "same" | "causal". */
static inline nn_layer_cfg conv1d_cfg(int f, int k, int stride, int dil, const char *pad,
                                      int bias) {
  nn_layer_cfg c = cfg_of("conv1d");
  cfg_set(&c, "filters", "%d", f);
  cfg_set(&c, "kernel_size", "%d", k);
  cfg_set(&c, "stride", "%d", stride);
  cfg_set(&c, "dilation", "%d", dil);
  cfg_set(&c, "padding", "\"%s\"", pad);
  cfg_set_bool(&c, "use_bias", bias);
  return c;
}

#endif
