/* gradcheck.c: finite-difference gradient checker (see gradcheck.h).
 *
 * Cost: 2 forwards per input element and per parameter element, so keep the
 * checked models small (tens to a few hundred parameters). */
#include "core/gradcheck.h"
#include "core/mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/rng.h"

/* f = sum(g * model(x)) over [n, out], in double. */
static double objective(nn_model *m, const float *x, const float *g, int n,
                        const nn_run_ctx *ctx) {
  const float *y = nn_model_forward(m, x, n, ctx);
  size_t k = (size_t)n * nn_shape_count(&m->out);
  double f = 0.0;
  for (size_t i = 0; i < k; i++) f += (double)g[i] * y[i];
  return f;
}

/* Central difference of the objective in element *v (restored afterwards). */
static double numeric_grad(nn_model *m, float *v, double eps, const float *x, const float *g,
                           int n, const nn_run_ctx *ctx) {
  float save = *v;
  float hi = (float)(save + eps), lo = (float)(save - eps);
  *v = hi;
  double fp = objective(m, x, g, n, ctx);
  *v = lo;
  double fm = objective(m, x, g, n, ctx);
  *v = save;
  return (fp - fm) / ((double)hi - (double)lo);
}

static double elem_err(double a, double d, double floor) {
  double den = fabs(a);
  if (fabs(d) > den) den = fabs(d);
  if (floor > den) den = floor;
  return fabs(a - d) / den;
}

static int near_kink(const nn_gradcheck_opts *o, float v) {
  for (int k = 0; k < o->nkinks && k < NN_GRADCHECK_MAX_KINKS; k++)
    if (fabs((double)v - o->kinks[k]) < o->margin) return 1;
  return 0;
}

int nn_gradcheck(const nn_shape *in, const nn_layer_cfg *cfgs, int ncfg,
                 const nn_gradcheck_opts *opts, nn_gradcheck_result *res, nn_error *err) {
  nn_gradcheck_opts o;
  memset(&o, 0, sizeof o);
  if (opts) o = *opts;
  if (o.n <= 0) o.n = 3;
  if (o.eps <= 0) o.eps = 1e-2;
  if (o.floor <= 0) o.floor = 1e-2;
  if (o.x_lo == o.x_hi) {
    o.x_lo = -1.0f;
    o.x_hi = 1.0f;
  }
  memset(res, 0, sizeof *res);

  nn_model m;
  float *x = NULL, *g = NULL, *dx = NULL, *grads = NULL; /* owned here */
  int rc = nn_model_build(&m, in, cfgs, ncfg, o.n, err);
  if (rc) return rc;
  size_t nx = (size_t)o.n * nn_shape_count(&m.in);
  size_t ny = (size_t)o.n * nn_shape_count(&m.out);
  x = nn_malloc(nx * sizeof *x);
  dx = nn_malloc(nx * sizeof *dx);
  g = nn_malloc(ny * sizeof *g);
  grads = nn_malloc((m.ntrainable ? m.ntrainable : 1) * sizeof *grads);
  if (!x || !dx || !g || !grads) {
    rc = nn_error_set(err, NN_ENOMEM, "gradcheck: out of memory");
    goto done;
  }

  /* Parameters: the model's initializers, then a perturbation so zeros
   * (biases) and symmetric values are not special. */
  nn_model_init_params(&m, o.seed);
  nn_rng r;
  nn_rng_init(&r, o.seed, NN_RNG_TEST, 1, 0, 0);
  for (size_t i = 0; i < m.nparams; i++) m.params[i] += 0.2f * (nn_rng_uniform(&r) - 0.5f);
  nn_rng_init(&r, o.seed, NN_RNG_TEST, 2, 0, 0);
  for (size_t i = 0; i < nx && o.x; i++) x[i] = o.x[i];
  for (size_t i = 0; i < nx && !o.x; i++) {
    float v;
    int tries = 0;
    do v = o.x_lo + (o.x_hi - o.x_lo) * nn_rng_uniform(&r);
    while (near_kink(&o, v) && ++tries < 1000);
    x[i] = v;
  }
  nn_rng_init(&r, o.seed, NN_RNG_TEST, 3, 0, 0);
  for (size_t i = 0; i < ny; i++) g[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;

  nn_run_ctx ctx = {.training = o.training, .seed = o.seed, .step = 0, .sample0 = 0,
                    .lengths = o.lengths};
  nn_model_zero_grad(&m);
  nn_model_forward(&m, x, o.n, &ctx);
  nn_model_backward_dx(&m, x, g, dx, o.n, &ctx, NULL, NULL);
  if (m.ntrainable) memcpy(grads, m.grads, m.ntrainable * sizeof *grads);

  for (size_t i = 0; i < nx && !o.no_dx; i++) {
    double d = numeric_grad(&m, &x[i], o.eps, x, g, o.n, &ctx);
    double e = elem_err(dx[i], d, o.floor);
    res->nchecked++;
    if (e > res->max_err_dx) res->max_err_dx = e;
    if (e > res->max_err) {
      res->max_err = e;
      snprintf(res->worst, sizeof res->worst, "x[%zu]: analytic %.6g, numeric %.6g", i,
               (double)dx[i], d);
    }
  }
  for (int t = 0; t < m.ntensors; t++) {
    const nn_tensor_ref *tr = &m.tensors[t];
    if (tr->is_buffer || tr->offset >= m.ntrainable) continue; /* frozen: dx only */
    for (size_t j = 0; j < tr->count; j++) {
      size_t i = tr->offset + j;
      double d = numeric_grad(&m, &m.params[i], o.eps, x, g, o.n, &ctx);
      double e = elem_err(grads[i], d, o.floor);
      res->nchecked++;
      if (e > res->max_err_param) res->max_err_param = e;
      if (e > res->max_err) {
        res->max_err = e;
        snprintf(res->worst, sizeof res->worst, "%.47s/%.47s[%zu]: analytic %.6g, numeric %.6g",
                 tr->layer, tr->name, j, (double)grads[i], d);
      }
    }
  }

done:
  free(x);
  free(dx);
  free(g);
  free(grads);
  nn_model_free(&m);
  return rc;
}
