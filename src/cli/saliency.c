/* saliency.c: `nntrain saliency CKPT.h5 DATA_GLOB --index I [--class K]
 * [--zoom Z] [--json] --out saliency.png`.
 *
 * Which pixels the model's decision on sample I is most sensitive to: the
 * input gradient of the predicted class's logit (or of class K's), from a
 * frozen pass (ctx.frozen: no parameter gradient) in evaluation mode. The
 * heat map is, per pixel, the largest absolute gradient over the channels,
 * divided by the image's largest, through a black-red-yellow-white scale.
 * The PNG (RGB) shows the input image on the left and the heat map on the
 * right, a 1-pixel white gap between them: (2W + 1) x H pixels times --zoom.
 * One process (dream.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/dream.h"
#include "core/loss.h"
#include "core/mem.h"
#include "worker/png.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain saliency CKPT.h5 DATA_GLOB --index I [--class K] [--zoom Z]\n"
          "                        [--json] --out saliency.png\n\n"
          "A saliency map of sample I of the data (0-based, in data order): the absolute\n"
          "gradient of the predicted class's logit (or class K's) with respect to the\n"
          "input, the checkpoint's parameters frozen. Writes an RGB PNG: the input image\n"
          "on the left, the heat map (black, red, yellow, white: largest) on the right,\n"
          "each pixel Z x Z (default 1). Prints the label, the prediction and the\n"
          "gradient's largest and mean absolute values (--json: one JSON line).\n"
          "One process: not under mpirun with more than one rank.\n");
}

typedef struct sal_opts {
  const char *ckpt, *data, *out;
  long long index;
  long cls, zoom;
  int json;
} sal_opts;

static int parse(int argc, char **argv, sal_opts *o) {
  const char *cmd = "saliency";
  *o = (sal_opts){.index = -1, .cls = -1, .zoom = 1};
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (!strcmp(a, "--out")) {
      if (!v || !*v) return nn_cli_usage_error(cmd, "--out needs a FILE.png");
      o->out = v;
      i++;
    } else if (!strcmp(a, "--index") || !strcmp(a, "--class") || !strcmp(a, "--zoom")) {
      char *end;
      errno = 0;
      long long x = v ? strtoll(v, &end, 10) : -1;
      long long hi = a[2] == 'z' ? 64 : a[2] == 'c' ? (1LL << 30) : (1LL << 40);
      long long lo = a[2] == 'z' ? 1 : 0;
      if (!v || !*v || *end || errno || x < lo || x > hi)
        return nn_cli_usage_error(cmd, "%s '%s': expected a whole number from %lld to %lld", a,
                                  v ? v : "", lo, hi);
      if (a[2] == 'i') o->index = x;
      else if (a[2] == 'c') o->cls = (long)x;
      else o->zoom = (long)x;
      i++;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error(cmd, "unknown option '%s'", a);
    } else if (pos == 0) {
      o->ckpt = a;
      pos++;
    } else if (pos == 1) {
      o->data = a;
      pos++;
    } else {
      return nn_cli_usage_error(cmd, "unexpected argument '%s'", a);
    }
  }
  if (pos < 2) return nn_cli_usage_error(cmd, "needs a checkpoint and a data glob");
  if (o->index < 0) return nn_cli_usage_error(cmd, "needs --index I");
  if (!o->out) return nn_cli_usage_error(cmd, "needs --out FILE.png");
  return 0;
}

/* The heat scale: 0 black, 1/3 red, 2/3 yellow, 1 white. */
static void heat(float t, uint8_t *rgb) {
  for (int c = 0; c < 3; c++) {
    float v = 3.0f * t - (float)c;
    rgb[c] = nn_png_byte(v, 0.0f, 1.0f);
  }
}

typedef struct sal {
  nn_pic_model P;
  float *x, *dx, *dout, *raw, *s;
  uint8_t *pix;
} sal;

/* Input on the left, heat map on the right, zoomed; white gap. */
static int picture(sal *S, const sal_opts *o, float smax, nn_error *err) {
  nn_pic_model *P = &S->P;
  int z = (int)o->zoom, H = P->H, W = P->W, w = (2 * W) * z + 1, h = H * z;
  S->pix = nn_malloc((size_t)w * (size_t)h * 3);
  if (!S->pix) return nn_error_set(err, NN_ENOMEM, "out of memory");
  memset(S->pix, 255, (size_t)w * (size_t)h * 3);
  size_t plane = (size_t)H * (size_t)W;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < W * z; x++) {
      size_t e = (size_t)(y / z) * (size_t)W + (size_t)(x / z);
      uint8_t *left = S->pix + ((size_t)y * (size_t)w + (size_t)x) * 3;
      uint8_t *right = S->pix + ((size_t)y * (size_t)w + (size_t)(W * z + 1 + x)) * 3;
      for (int c = 0; c < 3; c++)
        left[c] = nn_png_byte(S->raw[(P->C == 3 ? (size_t)c * plane : 0) + e], P->raw_lo,
                              P->raw_hi);
      heat(smax > 0 ? S->s[e] / smax : 0.0f, right);
    }
  return nn_png_write(o->out, S->pix, w, h, 3, err);
}

static int run(sal *S, const sal_opts *o, nn_error *err) {
  nn_pic_model *P = &S->P;
  int rc = nn_pic_load(P, o->ckpt, o->data, err);
  if (rc) return rc;
  int64_t n = nn_dataset_get_info(P->ds)->n;
  if (o->index >= n)
    return nn_error_at(err, NN_EUSAGE, o->data, 0, 0, "--index %lld: the data has %lld samples "
                       "(0 to %lld)", o->index, (long long)n, (long long)n - 1);
  const nn_shape *out = &P->m->out;
  char sh[64];
  if (out->ndim != 1)
    return nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "the model's output is %s: saliency "
                       "needs one logit per class [K]", nn_shape_str(out, sh, sizeof sh));
  int K = out->dim[0];
  if (o->cls >= K)
    return nn_error_at(err, NN_EUSAGE, o->ckpt, 0, 0, "--class %ld: the model has %d outputs "
                       "(0 to %d)", o->cls, K, K - 1);
  size_t plane = (size_t)P->H * (size_t)P->W;
  S->x = nn_malloc(sizeof(float) * P->feat);
  S->dx = nn_malloc(sizeof(float) * P->feat);
  S->raw = nn_malloc(sizeof(float) * P->feat);
  S->s = nn_calloc(plane, sizeof(float));
  S->dout = nn_calloc((size_t)K, sizeof(float));
  if (!S->x || !S->dx || !S->raw || !S->s || !S->dout)
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  int32_t label = -1;
  if ((rc = nn_pic_sample(P, o->index, S->x, &label, err)) != 0) return rc;
  nn_run_ctx ctx = {.training = 0, .seed = P->ev->seed, .frozen = 1};
  const float *y = nn_model_forward(P->m, S->x, 1, &ctx);
  int pred = nn_argmax(y, K), cls = o->cls >= 0 ? (int)o->cls : pred;
  float logit = y[cls];
  S->dout[cls] = 1.0f;
  nn_model_backward_dx(P->m, S->x, S->dout, S->dx, 1, &ctx, NULL, NULL);
  double smax = 0, ssum = 0;
  for (size_t e = 0; e < plane; e++) {
    float m = 0;
    for (int c = 0; c < P->C; c++) m = fmaxf(m, fabsf(S->dx[(size_t)c * plane + e]));
    S->s[e] = m;
    smax = fmax(smax, m);
    ssum += m;
  }
  if (!isfinite(smax))
    return nn_error_at(err, NN_ENUMERIC, o->ckpt, 0, 0, "the input gradient is not finite");
  nn_pic_raw(P, S->x, S->raw);
  if ((rc = picture(S, o, (float)smax, err)) != 0) return rc;
  int w = (2 * P->W) * (int)o->zoom + 1, h = P->H * (int)o->zoom;
  if (!o->json) {
    printf("saliency %s: sample %lld", o->data, o->index);
    if (label >= 0) printf(", label %d", label);
    printf(", predicted %d, class %d logit %.6g; |gradient| max %.6g mean %.6g; wrote %s "
           "(%dx%d)\n", pred, cls, logit, smax, ssum / (double)plane, o->out, w, h);
    return fflush(stdout) ? nn_error_set(err, NN_EIO, "cannot write to standard output") : 0;
  }
  json_t *j = json_object();
  if (j && (json_object_set_new(j, "index", json_integer(o->index)) ||
            json_object_set_new(j, "label", label >= 0 ? json_integer(label) : json_null()) ||
            json_object_set_new(j, "predicted", json_integer(pred)) ||
            json_object_set_new(j, "class", json_integer(cls)) ||
            json_object_set_new(j, "logit", nn_cli_json_real(logit)) ||
            json_object_set_new(j, "grad_max", nn_cli_json_real(smax)) ||
            json_object_set_new(j, "grad_mean", nn_cli_json_real(ssum / (double)plane)) ||
            json_object_set_new(j, "out", json_string(o->out)) ||
            json_object_set_new(j, "width", json_integer(w)) ||
            json_object_set_new(j, "height", json_integer(h)))) {
    json_decref(j);
    j = NULL;
  }
  return nn_cli_json_line(stdout, j, NULL, err);
}

int nn_cmd_saliency(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    help(stdout);
    return NN_EXIT_OK;
  }
  sal_opts o;
  int code = parse(argc, argv, &o);
  if (code) return code;
  if ((code = nn_pic_one_process("saliency")) != 0) return code;
  nn_error err;
  nn_error_clear(&err);
  sal S;
  memset(&S, 0, sizeof S);
  int rc = run(&S, &o, &err);
  free(S.x);
  free(S.dx);
  free(S.dout);
  free(S.raw);
  free(S.s);
  free(S.pix);
  nn_pic_free(&S.P);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
