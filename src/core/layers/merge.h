/* merge.h: what the merge layers (add.c, concat.c, multiply.c) share: the
 * check that a layer reads at least two inputs, and that they have one shape
 * (add, multiply). Messages name the inputs as the job file does. */
#ifndef NN_CORE_LAYERS_MERGE_H
#define NN_CORE_LAYERS_MERGE_H

#include "core/layer.h"

/* 0, or NN_ESCHEMA when l reads fewer than two inputs. */
static inline int nn__merge_two_or_more(const nn_layer *l, nn_error *err) {
  if (l->nin >= 2) return 0;
  return nn_error_set(err, NN_ESCHEMA,
                      "a merge layer reads two or more inputs, got %d (inputs = [\"a\", \"b\"])",
                      l->nin);
}

/* 0 and l->out = the common shape, or NN_ESHAPE naming the first input whose
 * shape differs from the first's. */
static inline int nn__merge_same_shapes(nn_layer *l, nn_error *err) {
  int rc = nn__merge_two_or_more(l, err);
  if (rc) return rc;
  for (int k = 1; k < l->nin; k++)
    if (!nn_shape_equal(&l->ins[k], &l->ins[0])) {
      char a[64], b[64];
      return nn_error_set(err, NN_ESHAPE, "input '%s' is %s, '%s' is %s: shapes differ",
                          l->cfg.inputs[k], nn_shape_str(&l->ins[k], a, sizeof a),
                          l->cfg.inputs[0], nn_shape_str(&l->ins[0], b, sizeof b));
    }
  l->out = l->ins[0];
  return 0;
}

#endif
