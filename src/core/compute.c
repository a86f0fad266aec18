/* compute.c: the math libraries' thread count and the convolution backend
 * choice (compute.h). */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#if defined(NN_HAVE_DNNL) && defined(NN_DNNL_OMP)
#include <omp.h>
#endif
#ifdef NN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#include "core/compute.h"

int nn_compute_have_dnnl(void) {
#ifdef NN_HAVE_DNNL
  return 1;
#else
  return 0;
#endif
}

/* The layout "dnnl" stands for: measured on the classic convnet (see
 * docs/layers.md, "Convolution backends"). */
#define NN__DNNL_DEFAULT NN_CONV_DNNL_BLOCKED

int nn_conv_backend_choice(nn_conv_backend *out, nn_error *err) {
  const char *v = getenv("NN_CONV_BACKEND");
  if (!v || !v[0]) {
    *out = nn_compute_have_dnnl() ? NN__DNNL_DEFAULT : NN_CONV_REFERENCE;
    return 0;
  }
  if (strcmp(v, "reference") == 0) {
    *out = NN_CONV_REFERENCE;
    return 0;
  }
  nn_conv_backend b;
  if (strcmp(v, "dnnl") == 0)
    b = NN__DNNL_DEFAULT;
  else if (strcmp(v, "dnnl_plain") == 0)
    b = NN_CONV_DNNL_PLAIN;
  else if (strcmp(v, "dnnl_blocked") == 0)
    b = NN_CONV_DNNL_BLOCKED;
  else
    return nn_error_set(err, NN_EUSAGE,
                        "environment variable NN_CONV_BACKEND='%s' is not one of %s", v,
                        NN_CONV_BACKEND_CHOICES);
  if (!nn_compute_have_dnnl())
    return nn_error_set(err, NN_EUSAGE,
                        "environment variable NN_CONV_BACKEND='%s': this build has no oneDNN "
                        "(install libdnnl-dev and configure with -DNN_DNNL=ON), only 'reference'",
                        v);
  *out = b;
  return 0;
}

int nn_fuse_choice(int *on, nn_error *err) {
  const char *v = getenv("NN_FUSE");
  *on = 1;
  if (!v || !v[0] || strcmp(v, "1") == 0) return 0;
  if (strcmp(v, "0") == 0) {
    *on = 0;
    return 0;
  }
  return nn_error_set(err, NN_EUSAGE, "environment variable NN_FUSE='%s' is not one of 0|1", v);
}

int nn_blocked_choice(int *on, nn_error *err) {
  const char *v = getenv("NN_BLOCKED");
  *on = 1;
  if (!v || !v[0] || strcmp(v, "1") == 0) return 0;
  if (strcmp(v, "0") == 0) {
    *on = 0;
    return 0;
  }
  return nn_error_set(err, NN_EUSAGE, "environment variable NN_BLOCKED='%s' is not one of 0|1", v);
}

const char *nn_conv_backend_name(nn_conv_backend b) {
  switch (b) {
  case NN_CONV_DNNL_PLAIN: return "dnnl_plain";
  case NN_CONV_DNNL_BLOCKED: return "dnnl_blocked";
  default: return "reference";
  }
}

int nn_compute_bf16_support(const char **why) {
  const char *w = "";
  int ok = 0;
#ifdef NN_HAVE_DNNL
  /* ISA values are nested bit sets: avx512_core_amx holds avx512_core_bf16 */
  unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
  ok = (isa & bf) == bf;
  if (!ok) w = "this CPU has no bf16 instructions (oneDNN needs AVX512-BF16 or AMX)";
#else
  w = "this build has no oneDNN (install libdnnl-dev and configure with -DNN_DNNL=ON)";
#endif
  if (why) *why = w;
  return ok;
}

/* The run's precision (compute.h): set once by the run before it builds its
 * models, like the thread count the math libraries keep. */
static nn_precision nn__precision = NN_PRECISION_FP32;

int nn_compute_set_precision(nn_precision p, nn_error *err) {
  if (p == NN_PRECISION_BF16) {
    const char *why = "";
    if (!nn_compute_bf16_support(&why)) return nn_error_set(err, NN_EINVAL, "%s", why);
    nn_conv_backend b;
    int rc = nn_conv_backend_choice(&b, err);
    if (rc) return rc;
    if (b == NN_CONV_REFERENCE)
      return nn_error_set(err, NN_EINVAL, "NN_CONV_BACKEND=reference computes in f32 only "
                                          "(bf16 needs a oneDNN backend: unset it or use dnnl)");
  }
  nn__precision = p;
  return 0;
}

nn_precision nn_compute_precision(void) { return nn__precision; }

void nn_compute_set_threads(int n) {
  if (n < 1) n = 1;
  openblas_set_num_threads(n);
#if defined(NN_HAVE_DNNL) && defined(NN_DNNL_OMP)
  omp_set_num_threads(n);
#endif
}
