/* gradcheck.h: finite-difference check of a model's (or one layer's)
 * backward pass.
 *
 * nn_gradcheck builds a small model from layer configs, draws an input x, an
 * upstream gradient g and perturbs the initialized parameters, all from a
 * seed, and compares the analytic gradients of the scalar
 *     f = sum(g * model(x))        (accumulated in double)
 * with respect to x and to every parameter against central differences
 * (f(v + eps) - f(v - eps)) / (2 eps). Layers compute in float, so the
 * attainable agreement is about 1e-3 relative for eps ~ 1e-2.
 *
 * The error of one element is |a - d| / max(|a|, |d|, floor): relative for
 * gradients above `floor`, absolute (scaled by 1/floor) below it, so float
 * rounding on tiny gradients does not count as a failure. Every layer type
 * registered in registry.c has a check in tests/test_core_layers.c. */
#ifndef NN_CORE_GRADCHECK_H
#define NN_CORE_GRADCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/layer.h"

#define NN_GRADCHECK_MAX_KINKS 4

typedef struct nn_gradcheck_opts {
  int n;                /* samples in the batch; 0 = 3 */
  double eps;           /* finite-difference step; 0 = 1e-2 */
  double floor;         /* denominator floor of the error; 0 = 1e-2 */
  uint64_t seed;        /* all random draws */
  float x_lo, x_hi;     /* input range; equal = [-1, 1] */
  /* Inputs are redrawn until at least `margin` away from every kink, so the
   * differences of a piecewise function do not straddle a corner. Kinks only
   * constrain the model input (use smooth layers below kinked ones in stacks). */
  int nkinks;
  double kinks[NN_GRADCHECK_MAX_KINKS];
  double margin;
  int training;         /* nn_run_ctx.training */
  const int32_t *lengths; /* nn_run_ctx.lengths: [n] valid timesteps per sample, or NULL */
  /* A fixed input: x [n, count(in)] is used as given instead of drawn (token
   * ids for an embedding; a crafted sequence). NULL: drawn as above. */
  const float *x;
  /* 1: the input has no gradient (integer ids): the input gradient is
   * neither compared nor counted (max_err_dx stays 0); only parameters are. */
  int no_dx;
} nn_gradcheck_opts;

typedef struct nn_gradcheck_result {
  double max_err_dx;     /* worst element error over the input gradient */
  double max_err_param;  /* worst over all parameters (0 if none) */
  double max_err;        /* the larger of the two */
  char worst[192];       /* where max_err occurred: "x[5]" or "dense0/weight[7]" */
  size_t nchecked;       /* elements compared */
} nn_gradcheck_result;

/* Check the model built from cfgs[ncfg] on per-sample input shape `in`.
 * opts may be NULL (all defaults). Returns 0 and fills *res, or a negative
 * code if the model does not build or memory runs out. */
int nn_gradcheck(const nn_shape *in, const nn_layer_cfg *cfgs, int ncfg,
                 const nn_gradcheck_opts *opts, nn_gradcheck_result *res, nn_error *err);

#endif
