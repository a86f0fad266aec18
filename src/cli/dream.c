/* dream.c: `nntrain dream CKPT.h5 --layer NAME [--channel C] --steps N [--lr R]
 * [--seed S] [--from I] [--blur B] [--data GLOB] [--zoom Z] [--json] --out dream.png`,
 * and what it shares with `nntrain saliency` (dream.h).
 *
 * Gradient ascent on the input to maximise the mean activation of one layer
 * (or of one channel of it: index c of the layer's first dimension, a
 * feature map of [C, H, W] or a unit of [F]); the "Inceptionism" pictures.
 * The model runs in evaluation mode (running batchnorm statistics, no
 * dropout) and every backward is a frozen pass (ctx.frozen: input gradient
 * only) from the layer's output (nn_model_backward_from). Each step moves
 * the input by lr times the data's range along the gradient divided by its
 * mean absolute value (so lr is the mean step as a fraction of the range,
 * whatever the gradient's scale), then clips it to the data's range, and
 * with --blur B mixes B of a 3x3 box mean into the input (plain ascent grows
 * checkerboard high frequencies; this is the usual smoothing prior). The
 * start is a mid-range image with small uniform noise drawn from the
 * counter-based RNG (purpose NN_RNG_GENERATE, a = 1: `generate` uses a = 0)
 * keyed by --seed, or sample --from I of the data. The picture is the input
 * with the normalization undone, scaled from the data's range. One process. */
#include "cli/dream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/checkpoint.h"
#include "core/mem.h"
#include "core/rng.h"
#include "worker/png.h"

/* ---- shared with saliency (dream.h) --------------------------------------- */

int nn_pic_one_process(const char *cmd) {
  static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE",
                                          "SLURM_NTASKS", NULL};
  static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK",
                                          "SLURM_PROCID", NULL};
  long n = 1;
  for (int i = 0; size_vars[i] && n <= 1; i++) {
    const char *v = getenv(size_vars[i]);
    if (v) n = strtol(v, NULL, 10);
  }
  if (n <= 1) return 0;
  long rank = 0;
  for (int i = 0; rank_vars[i]; i++) {
    const char *v = getenv(rank_vars[i]);
    if (v) {
      rank = strtol(v, NULL, 10);
      break;
    }
  }
  if (rank == 0)
    fprintf(stderr, "nntrain %s: runs on one process (this is one of %ld ranks): run it "
            "without mpirun\n", cmd, n);
  return NN_EXIT_USAGE;
}

void nn_pic_layer_names(const nn_model *m, char *buf, size_t n) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < m->nlayers && at + 1 < n; i++) {
    int k = snprintf(buf + at, n - at, "%s%s", i ? ", " : "", m->layers[i].cfg.name);
    if (k < 0 || (size_t)k >= n - at) {
      if (n > 4) snprintf(buf + n - 4, 4, "...");
      return;
    }
    at += (size_t)k;
  }
}

/* The data's value range as stored: u8 features exactly [0, 255] times the
 * scale, float features the min and max of the first 4096 samples. */
static int data_range(nn_pic_model *P, nn_error *err) {
  const nn_dataset_info *di = nn_dataset_get_info(P->ds);
  if (di->ftype == NN_FEAT_U8) {
    P->raw_lo = 0;
    P->raw_hi = (float)(255.0 * di->feature_scale);
    return 0;
  }
  int n = di->n < 4096 ? (int)di->n : 4096;
  int64_t *idx = nn_malloc(sizeof *idx * (size_t)n);
  float *x = nn_malloc(sizeof *x * (size_t)n * P->feat);
  int rc = idx && x ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory");
  for (int i = 0; i < n && !rc; i++) idx[i] = i;
  if (!rc) rc = nn_dataset_read(P->ds, idx, n, x, NULL, NULL, err);
  if (!rc) nn_png_minmax(x, (size_t)n * P->feat, &P->raw_lo, &P->raw_hi);
  if (!rc && !(P->raw_hi > P->raw_lo)) P->raw_hi = P->raw_lo + 1; /* constant data */
  free(idx);
  free(x);
  return rc;
}

/* Per-element normalization as the loader applies it (worker/loader.c):
 * channel c covers a contiguous run of the sample. */
static void normalization(nn_pic_model *P) {
  const nn_dataset_info *di = nn_dataset_get_info(P->ds);
  size_t ch = di->channels > 0 ? (size_t)di->channels : 1;
  if (P->feat % ch) ch = 1;
  size_t per = P->feat / ch;
  for (size_t j = 0; j < P->feat; j++) {
    size_t c = j / per;
    double m = 0, sd = 1;
    if (P->job->data.normalize && di->channels > 0) {
      m = di->mean[c];
      sd = di->std[c];
    }
    P->mean[j] = (float)m;
    P->inv[j] = (float)(sd > 1e-12 ? 1.0 / sd : 1.0);
    P->lo[j] = (P->raw_lo - P->mean[j]) * P->inv[j];
    P->hi[j] = (P->raw_hi - P->mean[j]) * P->inv[j];
  }
}

static int read_job(nn_pic_model *P, const nn_ckpt_snapshot *s, const char *ckpt,
                    nn_error *err) {
  int rc = nn_job_unpack(P->job, s->spec, s->spec_len, err);
  if (rc && rc != NN_ENOMEM) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "its job spec does not decode: %s", why);
  }
  return rc;
}

int nn_pic_load(nn_pic_model *P, const char *ckpt, const char *data, nn_error *err) {
  memset(P, 0, sizeof *P);
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  P->job = nn_calloc(1, sizeof *P->job);
  if (!P->job) return nn_error_set(err, NN_ENOMEM, "out of memory");
  int rc = nn_ckpt_read(ckpt, &s, err);
  if (!rc) rc = read_job(P, &s, ckpt, err);
  if (!rc) {
    P->data = data ? data : P->job->data.train;
    if (!P->data[0])
      rc = nn_error_at(err, NN_EUSAGE, ckpt, 0, 0, "its job names no training data: give "
                       "--data GLOB (the data the model was trained on)");
  }
  if (!rc) rc = nn_dataset_open(&P->ds, P->data, NULL, err);
  const nn_dataset_info *di = rc ? NULL : nn_dataset_get_info(P->ds);
  if (!rc && (di->vocab_size > 0 || di->stream))
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "the model reads token sequences (%s): "
                     "pictures need a model of images [C, H, W] with 1 or 3 channels", P->data);
  const nn_task_ops *task = NULL;
  if (!rc && nn_task_for_job(P->job, &task, err) != 0)
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "%s", err->msg);
  if (!rc) {
    nn_replica_opts o = {.train = 0, .max_batch = 1, .comm = MPI_COMM_NULL};
    rc = nn_task_build(task, P->reps, P->job, di, P->data, &o, err);
    if (rc == NN_ESCHEMA) err->code = rc = NN_EDATA;
  }
  if (!rc) {
    P->ev = &P->reps[task->eval_replica];
    P->m = &P->ev->model;
    const nn_shape *in = &P->m->in;
    char sh[64];
    if (in->ndim != 3 || (in->dim[0] != 1 && in->dim[0] != 3))
      rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "the model's input is %s: pictures need "
                       "images [C, H, W] with 1 or 3 channels", nn_shape_str(in, sh, sizeof sh));
  }
  if (!rc) {
    int g = nn_ckpt_find_replica(&s, P->ev->name);
    if (g < 0) {
      rc = nn_replica_check_ckpt(P->ev, &s, ckpt, 0, err);
    } else if (nn_replica_check_ckpt(P->ev, &s, P->data, 0, err) != 0) {
      rc = nn_error_at(err, NN_ESHAPE, P->data, 0, 0, "the data's samples do not fit the "
                       "checkpoint's model (%zu parameters stored, %zu for these samples)",
                       s.rep[g].nparams, P->m->nparams);
    } else {
      nn_replica_load_ckpt(P->ev, &s, 0);
    }
  }
  if (!rc) {
    nn_model_fuse(P->m, 0);
    nn_model_layouts(P->m, 0);
    P->C = P->m->in.dim[0];
    P->H = P->m->in.dim[1];
    P->W = P->m->in.dim[2];
    P->feat = nn_shape_count(&P->m->in);
    P->mean = nn_malloc(sizeof(float) * P->feat);
    P->inv = nn_malloc(sizeof(float) * P->feat);
    P->lo = nn_malloc(sizeof(float) * P->feat);
    P->hi = nn_malloc(sizeof(float) * P->feat);
    if (!P->mean || !P->inv || !P->lo || !P->hi) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  if (!rc) rc = data_range(P, err);
  if (!rc) normalization(P);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

void nn_pic_free(nn_pic_model *P) {
  for (int i = 0; i < NN_TASK_MAX_REPLICAS; i++) nn_replica_free(&P->reps[i]);
  if (P->ds) nn_dataset_close(P->ds);
  free(P->job);
  free(P->mean);
  free(P->inv);
  free(P->lo);
  free(P->hi);
  memset(P, 0, sizeof *P);
}

int nn_pic_sample(nn_pic_model *P, int64_t index, float *x, int32_t *label, nn_error *err) {
  const nn_dataset_info *di = nn_dataset_get_info(P->ds);
  int32_t lab = -1;
  float *tg = NULL;
  if (di->num_classes == 0 && di->target_dim > 0) {
    tg = nn_malloc(sizeof *tg * (size_t)di->target_dim);
    if (!tg) return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  int rc = nn_dataset_read(P->ds, &index, 1, x, di->num_classes > 0 ? &lab : NULL, tg, err);
  free(tg);
  if (rc) return rc;
  for (size_t j = 0; j < P->feat; j++) x[j] = (x[j] - P->mean[j]) * P->inv[j];
  if (label) *label = lab;
  return 0;
}

void nn_pic_raw(const nn_pic_model *P, const float *x, float *raw) {
  for (size_t j = 0; j < P->feat; j++) raw[j] = x[j] / P->inv[j] + P->mean[j];
}

/* ---- dream --------------------------------------------------------------- */

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain dream CKPT.h5 --layer NAME [--channel C] --steps N [--lr R]\n"
          "                     [--seed S] [--from I] [--blur B] [--data GLOB] [--zoom Z]\n"
          "                     [--json] --out dream.png\n\n"
          "Gradient ascent on the input image to maximise the mean activation of layer\n"
          "NAME (or of its channel C: a feature map of [C, H, W], a unit of [F]), with the\n"
          "checkpoint's parameters frozen. Each step moves the input by R times the data's\n"
          "value range along the normalised gradient (default R = 0.01) and clips it to\n"
          "that range; --blur B (0 to 1, default 0) then mixes B of a 3x3 mean into it,\n"
          "which damps the high frequencies plain ascent grows. Starts from small noise\n"
          "drawn with --seed S (default 1), or from sample I of the data (--from). Writes\n"
          "the input (normalisation undone) as a PNG, each pixel Z x Z (default 1), and\n"
          "prints the activation before and after (--json: one JSON line). The data (for\n"
          "the image shape, the normalisation and the value range) is the job's\n"
          "data.train unless --data gives it.\n"
          "One process: not under mpirun with more than one rank.\n");
}

typedef struct dream_opts {
  const char *ckpt, *layer, *out, *data;
  long channel, steps, zoom;
  int64_t from;
  double lr, blur;
  unsigned long seed;
  int json;
} dream_opts;

static int parse_long(const char *cmd, const char *flag, const char *v, long lo, long hi,
                      long *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi)
    return nn_cli_usage_error(cmd, "%s '%s': expected a whole number from %ld to %ld", flag,
                              v ? v : "", lo, hi);
  *out = x;
  return 0;
}

static int parse(int argc, char **argv, dream_opts *o) {
  const char *cmd = "dream";
  *o = (dream_opts){.channel = -1, .steps = -1, .zoom = 1, .from = -1, .lr = 0.01, .seed = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int rc = 0;
    long t = 0;
    if (!strcmp(a, "--json")) {
      o->json = 1;
      continue;
    }
    if (!strcmp(a, "--layer") || !strcmp(a, "--out") || !strcmp(a, "--data")) {
      if (!v || !*v) return nn_cli_usage_error(cmd, "%s needs a value", a);
      *(a[2] == 'l' ? &o->layer : a[2] == 'o' ? &o->out : &o->data) = v;
    } else if (!strcmp(a, "--channel")) {
      rc = parse_long(cmd, a, v, 0, 1L << 30, &o->channel);
    } else if (!strcmp(a, "--steps")) {
      rc = parse_long(cmd, a, v, 0, 1000000, &o->steps);
    } else if (!strcmp(a, "--zoom")) {
      rc = parse_long(cmd, a, v, 1, 64, &o->zoom);
    } else if (!strcmp(a, "--from")) {
      rc = parse_long(cmd, a, v, 0, 1L << 40, &t);
      o->from = t;
    } else if (!strcmp(a, "--seed")) {
      char *end;
      errno = 0;
      o->seed = v ? strtoul(v, &end, 10) : 0;
      if (!v || !*v || *end || errno || v[0] == '-')
        return nn_cli_usage_error(cmd, "--seed '%s': expected a whole number >= 0", v ? v : "");
    } else if (!strcmp(a, "--blur")) {
      char *end;
      errno = 0;
      o->blur = v ? strtod(v, &end) : -1;
      if (!v || !*v || *end || errno || !(o->blur >= 0 && o->blur <= 1))
        return nn_cli_usage_error(cmd, "--blur '%s': expected a number from 0 to 1", v ? v : "");
    } else if (!strcmp(a, "--lr")) {
      char *end;
      errno = 0;
      o->lr = v ? strtod(v, &end) : 0;
      if (!v || !*v || *end || errno || !(o->lr > 0 && o->lr <= 1))
        return nn_cli_usage_error(cmd, "--lr '%s': expected a number in (0, 1] (the mean "
                                  "step as a fraction of the data's range)", v ? v : "");
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error(cmd, "unknown option '%s'", a);
    } else if (!o->ckpt) {
      o->ckpt = a;
      continue;
    } else {
      return nn_cli_usage_error(cmd, "unexpected argument '%s'", a);
    }
    if (rc) return rc;
    i++;
  }
  if (!o->ckpt) return nn_cli_usage_error(cmd, "expected a checkpoint CKPT.h5");
  if (!o->layer) return nn_cli_usage_error(cmd, "needs --layer NAME");
  if (o->steps < 0) return nn_cli_usage_error(cmd, "needs --steps N");
  if (!o->out) return nn_cli_usage_error(cmd, "needs --out FILE.png");
  return 0;
}

/* The dream's state: the input, its gradient, the output gradient at the layer. */
typedef struct dream {
  nn_pic_model P;
  int layer;
  size_t count, first, sel; /* the layer's outputs; the selected run [first, first + sel) */
  float *x, *dx, *g, *raw; /* raw also holds the blur's copy of x */
} dream;

/* Mean of the selected outputs of the layer for input x (a forward). */
static double activation(dream *D, const nn_run_ctx *ctx) {
  nn_model_forward(D->P.m, D->x, 1, ctx);
  const float *y = D->P.m->act + D->P.m->act_off[D->layer] + D->first;
  double s = 0;
  for (size_t i = 0; i < D->sel; i++) s += y[i];
  return s / (double)D->sel;
}

static int find_layer(dream *D, const dream_opts *o, nn_error *err) {
  const nn_model *m = D->P.m;
  D->layer = -1;
  for (int i = 0; i < m->nlayers; i++)
    if (!strcmp(m->layers[i].cfg.name, o->layer)) D->layer = i;
  if (D->layer < 0) {
    char names[400];
    nn_pic_layer_names(m, names, sizeof names);
    return nn_error_at(err, NN_EUSAGE, o->ckpt, 0, 0, "--layer '%s': the model has no such "
                       "layer; its layers: %s", o->layer, names);
  }
  const nn_shape *s = &m->layers[D->layer].out;
  D->count = nn_shape_count(s);
  D->first = 0;
  D->sel = D->count;
  if (o->channel >= 0) {
    char sh[64];
    if (o->channel >= s->dim[0])
      return nn_error_at(err, NN_EUSAGE, o->ckpt, 0, 0, "--channel %ld: layer '%s' has %d "
                         "channels (its output is %s): expected 0 to %d", o->channel, o->layer,
                         s->dim[0], nn_shape_str(s, sh, sizeof sh), s->dim[0] - 1);
    D->sel = D->count / (size_t)s->dim[0];
    D->first = (size_t)o->channel * D->sel;
  }
  return 0;
}

static int start_image(dream *D, const dream_opts *o, nn_error *err) {
  nn_pic_model *P = &D->P;
  if (o->from >= 0) {
    int64_t n = nn_dataset_get_info(P->ds)->n;
    if (o->from >= n)
      return nn_error_at(err, NN_EUSAGE, P->data, 0, 0, "--from %lld: the data has %lld "
                         "samples (0 to %lld)", (long long)o->from, (long long)n,
                         (long long)n - 1);
    return nn_pic_sample(P, o->from, D->x, NULL, err);
  }
  nn_rng r;
  nn_rng_init(&r, (uint64_t)o->seed, NN_RNG_GENERATE, 1, 0, 0);
  for (size_t j = 0; j < P->feat; j++) {
    float u = 0.45f + 0.1f * nn_rng_uniform(&r); /* mid-range, +-5% of the range */
    float raw = P->raw_lo + u * (P->raw_hi - P->raw_lo);
    D->x[j] = (raw - P->mean[j]) * P->inv[j];
  }
  return 0;
}

/* x = (1 - b) x + b (3x3 box mean of x), per channel plane, edges clamped:
 * damps the checkerboard high frequencies plain ascent grows. */
static void blur(dream *D, float b) {
  const nn_pic_model *P = &D->P;
  const int H = P->H, W = P->W;
  memcpy(D->raw, D->x, sizeof(float) * P->feat);
  for (int c = 0; c < P->C; c++) {
    const float *src = D->raw + (size_t)c * (size_t)H * (size_t)W;
    float *dst = D->x + (size_t)c * (size_t)H * (size_t)W;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        float s = 0;
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            int yy = y + dy < 0 ? 0 : y + dy >= H ? H - 1 : y + dy;
            int xx = x + dx < 0 ? 0 : x + dx >= W ? W - 1 : x + dx;
            s += src[yy * W + xx];
          }
        dst[y * W + x] = (1 - b) * src[y * W + x] + b * s / 9.0f;
      }
  }
}

/* One ascent step; 0 if the gradient vanished (nothing moves). */
static int ascend(dream *D, double lr, const nn_run_ctx *ctx, nn_error *err) {
  nn_pic_model *P = &D->P;
  activation(D, ctx);
  int rc = nn_model_backward_from(P->m, D->x, D->layer, D->g, D->dx, 1, ctx, err);
  if (rc) return rc;
  double mabs = 0, range = 0;
  for (size_t j = 0; j < P->feat; j++) {
    mabs += fabsf(D->dx[j]);
    range += P->hi[j] - P->lo[j];
  }
  mabs /= (double)P->feat;
  range /= (double)P->feat;
  if (!(mabs > 0) || !isfinite(mabs)) return 0;
  float k = (float)(lr * range / mabs);
  for (size_t j = 0; j < P->feat; j++) {
    float v = D->x[j] + k * D->dx[j];
    D->x[j] = v < P->lo[j] ? P->lo[j] : v > P->hi[j] ? P->hi[j] : v;
  }
  return 0;
}

static int report(const dream *D, const dream_opts *o, double before, double after,
                  nn_error *err) {
  if (!o->json) {
    printf("dream %s: layer '%s'", o->ckpt, o->layer);
    if (o->channel >= 0) printf(" channel %ld", o->channel);
    printf(", %ld steps: mean activation %.6g -> %.6g; wrote %s (%dx%d)\n", o->steps, before,
           after, o->out, D->P.W * (int)o->zoom, D->P.H * (int)o->zoom);
    return fflush(stdout) ? nn_error_set(err, NN_EIO, "cannot write to standard output") : 0;
  }
  json_t *j = json_object();
  if (j && (json_object_set_new(j, "layer", json_string(o->layer)) ||
            json_object_set_new(j, "channel", o->channel >= 0 ? json_integer(o->channel)
                                                              : json_null()) ||
            json_object_set_new(j, "steps", json_integer(o->steps)) ||
            json_object_set_new(j, "before", nn_cli_json_real(before)) ||
            json_object_set_new(j, "after", nn_cli_json_real(after)) ||
            json_object_set_new(j, "out", json_string(o->out)) ||
            json_object_set_new(j, "width", json_integer(D->P.W * o->zoom)) ||
            json_object_set_new(j, "height", json_integer(D->P.H * o->zoom)))) {
    json_decref(j);
    j = NULL;
  }
  return nn_cli_json_line(stdout, j, NULL, err);
}

static int run(dream *D, const dream_opts *o, nn_error *err) {
  nn_pic_model *P = &D->P;
  int rc = nn_pic_load(P, o->ckpt, o->data, err);
  if (!rc) rc = find_layer(D, o, err);
  if (!rc) {
    D->x = nn_malloc(sizeof(float) * P->feat);
    D->dx = nn_malloc(sizeof(float) * P->feat);
    D->raw = nn_malloc(sizeof(float) * P->feat);
    D->g = nn_calloc(D->count, sizeof(float));
    if (!D->x || !D->dx || !D->raw || !D->g) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  if (!rc) rc = start_image(D, o, err);
  if (rc) return rc;
  for (size_t i = 0; i < D->sel; i++) D->g[D->first + i] = (float)(1.0 / (double)D->sel);
  nn_run_ctx ctx = {.training = 0, .seed = D->P.ev->seed, .frozen = 1};
  double before = activation(D, &ctx);
  for (long s = 0; s < o->steps && !rc; s++) {
    rc = ascend(D, o->lr, &ctx, err);
    if (o->blur > 0) blur(D, (float)o->blur);
  }
  if (rc) return rc;
  double after = activation(D, &ctx);
  if (!isfinite(after))
    return nn_error_at(err, NN_ENUMERIC, o->ckpt, 0, 0, "layer '%s' gave a non-finite "
                       "activation", o->layer);
  nn_pic_raw(P, D->x, D->raw);
  nn_png_grid_opts go = {.cols = 1, .lo = P->raw_lo, .hi = P->raw_hi, .zoom = (int)o->zoom};
  rc = nn_png_grid(o->out, D->raw, 1, P->C, P->H, P->W, &go, err);
  if (!rc) rc = report(D, o, before, after, err);
  return rc;
}

int nn_cmd_dream(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    help(stdout);
    return NN_EXIT_OK;
  }
  dream_opts o;
  int code = parse(argc, argv, &o);
  if (code) return code;
  if ((code = nn_pic_one_process("dream")) != 0) return code;
  nn_error err;
  nn_error_clear(&err);
  dream D;
  memset(&D, 0, sizeof D);
  int rc = run(&D, &o, &err);
  free(D.x);
  free(D.dx);
  free(D.g);
  free(D.raw);
  nn_pic_free(&D.P);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
