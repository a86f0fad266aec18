/* gradcheck_assert.h: CHECK_GRADS, the assertion every layer test uses, and
 * cfg_of, the layer config they start from (layer_cfg.h).
 *
 * CHECK_GRADS(in, cfgs, ncfg, opts) runs nn_gradcheck (core/gradcheck.h) on a
 * model of ncfg layers for input shape *in and fails the test unless every
 * analytic gradient (input and parameters) is within GC_TOL (relative) of
 * central finite differences, printing the worst element. Define GC_TOL
 * before including this header to change the tolerance (default 2e-3);
 * CHECK_GRADS_TOL(..., tol) takes it per call. */
#ifndef NN_TESTS_GRADCHECK_ASSERT_H
#define NN_TESTS_GRADCHECK_ASSERT_H

#include <stdio.h>
#include <string.h>

#include "core/gradcheck.h"
#include "core/layer.h"
#include "layer_cfg.h"
#include "test.h"

#ifndef GC_TOL
#define GC_TOL 2e-3
#endif

#define CHECK_GRADS(in, cfgs, ncfg, opts) CHECK_GRADS_TOL(in, cfgs, ncfg, opts, GC_TOL)
#define CHECK_GRADS_TOL(in, cfgs, ncfg, opts, tol)                                   \
  do {                                                                               \
    nn_gradcheck_result r_;                                                          \
    nn_error e_;                                                                     \
    nn_error_clear(&e_);                                                             \
    int gc_rc_ = nn_gradcheck((in), (cfgs), (ncfg), (opts), &r_, &e_);               \
    if (gc_rc_) fprintf(stderr, "gradcheck: %s\n", e_.msg);                          \
    ASSERT_OK(gc_rc_);                                                               \
    fprintf(stderr, "    max error %.2e over %zu elements\n", r_.max_err, r_.nchecked); \
    ASSERT_TRUE(r_.nchecked > 0);                                                    \
    if (!(r_.max_err < (tol))) fprintf(stderr, "worst: %s\n", r_.worst);            \
    ASSERT_TRUE(r_.max_err < (tol));                                                \
  } while (0)

#endif
