/* sample.c: `nntrain sample CKPT.h5 --n N [--seed S] [--zoom Z] [--out FILE.png]
 * [--score CLASSIFIER.h5 [--reference DATA_GLOB]]`.
 *
 * Images from a generative checkpoint's generator (a GAN's, docs/tasks.md#gan):
 * noise vector i of the stream keyed by (S, i), so the same S gives the same
 * images whatever N. --out: a grid of the N images (ceil(sqrt(N)) columns, a
 * 1-pixel gap, each pixel Z x Z), on the data's [0, 1] scale when the job did
 * not normalize its data, else on the images' own range. No data is needed:
 * the checkpoint holds the job.
 *
 * --score: the images judged by a classifier's checkpoint (an "inception
 * score" with our own classifier, docs/tasks.md#gan): its mean confidence
 * (the mean of the largest softmax probability), the entropy of the
 * histogram of its predicted classes (log2 of the class count when every
 * class is predicted equally often) and the inception score proper,
 * exp(mean KL(p(y|x) || p(y))) (1 .. the class count). --reference scores the
 * first N images of DATA_GLOB the same way, the yardstick. One process, like
 * dream and saliency. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/dream.h"
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "coordinator/run/task.h"
#include "coordinator/run/tasks/gan.h"
#include "core/layers/sample.h"
#include "core/mem.h"
#include "core/model.h"
#include "core/rng.h"
#include "worker/dataset.h"
#include "worker/png.h"

#define SAMPLE_MAX_N 1000000

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain sample CKPT.h5 --n N [--seed S] [--zoom Z] [--out FILE.png]\n"
          "                      [--reconstruct] [--data GLOB]\n"
          "                      [--score CLASSIFIER.h5 [--reference DATA_GLOB]]\n\n"
          "N images from a GAN checkpoint's generator (train.task = \"gan\") or a VAE's\n"
          "decoder (train.task = \"vae\"), from noise vectors 0..N-1 of seed S (default 1):\n"
          "the same S gives the same images. --reconstruct (autoencoders and VAEs): the\n"
          "first N images of the data (--data GLOB, default the job's data.train) with\n"
          "their reconstructions, each image above its reconstruction.\n"
          "--out: a grid of them as a PNG (each pixel Z x Z, default 2).\n"
          "--score: how a classifier's checkpoint sees them: its mean confidence, the\n"
          "entropy (bits) of its predicted-class histogram and the inception score;\n"
          "--reference: the same for the first N images of DATA_GLOB.\n"
          "One process: not under mpirun with more than one rank.\n");
}

typedef struct sample_opts {
  const char *ckpt, *out, *score, *reference, *data;
  long long n, seed, zoom;
  int reconstruct;
} sample_opts;

static int ends_with(const char *s, const char *tail) {
  size_t a = strlen(s), b = strlen(tail);
  return a >= b && !strcmp(s + a - b, tail);
}

static int parse(int argc, char **argv, sample_opts *o) {
  const char *cmd = "sample";
  *o = (sample_opts){.n = -1, .seed = 1, .zoom = 2};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--reconstruct")) {
      o->reconstruct = 1;
    } else if (!strcmp(a, "--out") || !strcmp(a, "--score") || !strcmp(a, "--reference") ||
               !strcmp(a, "--data")) {
      if (!v || !*v) return nn_cli_usage_error(cmd, "%s needs a file", a);
      if (a[2] == 'o') o->out = v;
      else if (a[2] == 's') o->score = v;
      else if (a[2] == 'd') o->data = v;
      else o->reference = v;
      i++;
    } else if (!strcmp(a, "--n") || !strcmp(a, "--seed") || !strcmp(a, "--zoom")) {
      char *end;
      errno = 0;
      long long x = v ? strtoll(v, &end, 10) : -1;
      long long lo = a[2] == 's' ? 0 : 1, hi = a[2] == 'n' ? SAMPLE_MAX_N : a[2] == 'z' ? 16 : (1LL << 53);
      if (!v || errno || *end || end == v || x < lo || x > hi)
        return nn_cli_usage_error(cmd, "%s needs an integer in [%lld, %lld], got '%s'", a, lo, hi,
                                  v ? v : "");
      if (a[2] == 'n') o->n = x;
      else if (a[2] == 's') o->seed = x;
      else o->zoom = x;
      i++;
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error(cmd, "unknown option '%s'", a);
    } else if (o->ckpt) {
      return nn_cli_usage_error(cmd, "one checkpoint at a time ('%s' and '%s')", o->ckpt, a);
    } else {
      o->ckpt = a;
    }
  }
  if (!o->ckpt) return nn_cli_usage_error(cmd, "missing the checkpoint (CKPT.h5)");
  if (o->n < 0) return nn_cli_usage_error(cmd, "missing --n, the number of images");
  if (!o->out && !o->score) return nn_cli_usage_error(cmd, "nothing to do: give --out FILE.png, --score CLASSIFIER.h5 or both");
  if (o->out && !ends_with(o->out, ".png"))
    return nn_cli_usage_error(cmd, "--out '%s': the name must end in .png", o->out);
  if (o->reference && !o->score) return nn_cli_usage_error(cmd, "--reference needs --score");
  if (o->reconstruct && !o->out) return nn_cli_usage_error(cmd, "--reconstruct needs --out FILE.png");
  if (o->reconstruct && o->n > 8 && o->n % 8)
    return nn_cli_usage_error(cmd, "--reconstruct shows rows of 8: --n must be a multiple of 8 "
                              "(or at most 8), got %lld", o->n);
  return -1;
}

typedef struct sampler {
  nn_job *job;
  nn_replica reps[NN_TASK_MAX_REPLICAS];
  nn_replica *g;
} sampler;

/* The checkpoint's generator, with its values. */
static int load(sampler *S, const char *ckpt, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  S->job = nn_calloc(1, sizeof *S->job);
  if (!S->job) return nn_error_set(err, NN_ENOMEM, "out of memory");
  int rc = nn_ckpt_read(ckpt, &s, err);
  if (!rc && (rc = nn_job_unpack(S->job, s.spec, s.spec_len, err)) != 0 && rc != NN_ENOMEM) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "its job spec does not decode: %s", why);
  }
  const nn_task_ops *task = NULL;
  if (!rc && nn_task_for_job(S->job, &task, err) != 0)
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "%s", err->msg);
  if (!rc && (task->nreplicas <= NN_GAN_GENERATOR ||
              strcmp(task->replicas[NN_GAN_GENERATOR], "generator") != 0))
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "a checkpoint of train.task = \"%s\" has no "
                     "generator: `sample` needs a GAN's (train.task = \"gan\")", task->name);
  if (!rc) {
    nn_replica_opts o = {.train = 0, .max_batch = 64, .comm = MPI_COMM_NULL};
    rc = nn_task_build(task, S->reps, S->job, NULL, ckpt, &o, err);
    if (rc == NN_ESCHEMA) err->code = rc = NN_ECKPT;
  }
  if (!rc) {
    S->g = &S->reps[NN_GAN_GENERATOR];
    rc = nn_replica_check_ckpt(S->g, &s, ckpt, 0, err);
  }
  if (!rc) nn_replica_load_ckpt(S->g, &s, 0);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

static void unload(sampler *S) {
  for (int i = 0; i < NN_TASK_MAX_REPLICAS; i++) nn_replica_free(&S->reps[i]);
  free(S->job);
}

/* A batch of images [n, C, H, W], on the data's stored scale when raw (the
 * range [lo, hi] then maps to black .. white), else on the model's own
 * (normalized) scale, drawn with the batch's min and max. */
typedef struct images {
  float *x;
  int n, C, H, W;
  int raw;
  float lo, hi;
} images;

static int write_png(const images *im, const sample_opts *o, int cols, nn_error *err) {
  if (im->C != 1 && im->C != 3)
    return nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "the model writes %d channels: a picture "
                       "needs 1 or 3", im->C);
  nn_png_grid_opts g = {.cols = cols, .lo = im->raw ? im->lo : 0, .hi = im->raw ? im->hi : 0,
                        .zoom = (int)o->zoom, .gap = 128};
  return nn_png_grid(o->out, im->x, im->n, im->C, im->H, im->W, &g, err);
}

/* A GAN's: its generator's images. */
static int gan_images(const sample_opts *o, images *im, nn_error *err) {
  sampler S;
  memset(&S, 0, sizeof S);
  int rc = load(&S, o->ckpt, err);
  float *z = NULL;
  if (!rc) {
    nn_shape img = S.reps[1].model.in; /* the discriminator's input: the data's shape */
    im->C = img.ndim == 3 ? img.dim[0] : 1;
    im->H = img.ndim == 3 ? img.dim[1] : 1;
    im->W = img.ndim == 3 ? img.dim[2] : (int)nn_shape_count(&img);
    im->n = (int)o->n;
    im->raw = !S.job->data.normalize; /* trained on the stored [0, 1] (a sigmoid output) */
    im->lo = 0;
    im->hi = 1;
    size_t count = nn_shape_count(&S.g->model.out), latent = (size_t)S.g->model.in.dim[0];
    im->x = nn_malloc((size_t)o->n * count * sizeof *im->x);
    z = nn_malloc((size_t)S.g->model.max_batch * latent * sizeof *z);
    if (!im->x || !z) rc = nn_error_set(err, NN_ENOMEM, "out of memory for %lld images", o->n);
  }
  if (!rc) nn_gan_generate(S.g, (uint64_t)o->seed, 0, (int)o->n, z, im->x);
  free(z);
  unload(&S);
  return rc;
}

/* Images per row of a --reconstruct picture: 8, or n when fewer. */
static int recon_cols(long long n) { return n < 8 ? (int)n : 8; }

/* An autoencoder's or a VAE's output y [feat] on the data's stored scale:
 * through the sigmoid when it was trained with binary cross-entropy (logits),
 * else out of the model's input normalization. */
static void to_raw(const nn_pic_model *P, const float *y, float *raw) {
  if (!strcmp(P->job->train.loss, "binary_cross_entropy")) {
    for (size_t j = 0; j < P->feat; j++) raw[j] = 1.0f / (1.0f + expf(-y[j]));
  } else {
    nn_pic_raw(P, y, raw);
  }
}

/* A VAE's decoder images, or (reconstruct) an autoencoder's or a VAE's
 * reconstructions of the data's first n images, each row of 8 inputs above
 * its row of reconstructions. */
static int ae_images(const sample_opts *o, const char *task, images *im, nn_error *err) {
  nn_pic_model P;
  int rc = nn_pic_load(&P, o->ckpt, o->data, err);
  int j = rc ? -1 : nn_sample_layer_index(P.m);
  if (!rc && !o->reconstruct && j < 0)
    rc = nn_error_at(err, NN_EUSAGE, o->ckpt, 0, 0, "an autoencoder (train.task = \"%s\") has "
                     "no prior to draw codes from: use --reconstruct for its reconstructions",
                     task);
  int64_t ndata = rc ? 0 : nn_dataset_get_info(P.ds)->n;
  if (!rc && o->reconstruct && o->n > ndata)
    rc = nn_error_at(err, NN_EUSAGE, P.data, 0, 0, "--n %lld: the data has %lld images", o->n,
                     (long long)ndata);
  int total = o->reconstruct ? 2 * (int)o->n : (int)o->n;
  float *in = NULL, *z = NULL;
  if (!rc) {
    im->C = P.C, im->H = P.H, im->W = P.W, im->n = total, im->raw = 1;
    im->lo = P.raw_lo, im->hi = P.raw_hi;
    im->x = nn_malloc((size_t)total * P.feat * sizeof *im->x);
    in = nn_malloc(P.feat * sizeof *in);
    z = j >= 0 ? nn_malloc(nn_shape_count(&P.m->layers[j].out) * sizeof *z) : NULL;
    if (!im->x || !in || (j >= 0 && !z)) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  nn_run_ctx ctx = {.training = 0, .seed = P.ev ? P.ev->seed : 0};
  for (int i = 0; !rc && i < (int)o->n; i++) {
    const float *y = NULL;
    if (o->reconstruct) {
      /* each row of `cols` inputs with its row of reconstructions below */
      int cols = recon_cols(o->n), at = (i / cols) * 2 * cols + i % cols;
      if ((rc = nn_pic_sample(&P, i, in, NULL, err)) != 0) break;
      nn_pic_raw(&P, in, im->x + (size_t)at * P.feat);
      y = nn_model_forward(P.m, in, 1, &ctx);
      to_raw(&P, y, im->x + (size_t)(at + cols) * P.feat);
    } else {
      size_t latent = nn_shape_count(&P.m->layers[j].out);
      nn_rng r;
      nn_rng_init(&r, (uint64_t)o->seed, NN_RNG_GENERATE, 3, 0, (uint32_t)i);
      for (size_t k = 0; k < latent; k++) z[k] = nn_rng_normal(&r);
      if ((rc = nn_model_forward_from(P.m, j, z, 1, &ctx, &y, err)) != 0) break;
      to_raw(&P, y, im->x + (size_t)i * P.feat);
    }
  }
  free(in);
  free(z);
  nn_pic_free(&P);
  return rc;
}

/* How the classifier P sees n images x [n, feat] given in its data's raw
 * scale (normalized here as it saw its data): mean confidence, entropy of
 * the predicted-class histogram (bits), inception score. */
typedef struct score { double conf, hist_bits, is; } score;

static int classify(nn_pic_model *P, const float *x, int64_t n, int from_data, score *sc,
                    nn_error *err) {
  int k = (int)nn_shape_count(&P->m->out);
  double *p = nn_calloc((size_t)n * (size_t)k, sizeof *p), *pbar = nn_calloc((size_t)k, sizeof *pbar);
  long long *hist = nn_calloc((size_t)k, sizeof *hist);
  float *in = nn_malloc(P->feat * sizeof *in);
  int rc = p && pbar && hist && in ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory for scoring");
  nn_run_ctx ctx = {.training = 0, .seed = P->ev->seed};
  double conf = 0;
  for (int64_t i = 0; !rc && i < n; i++) {
    if (from_data) {
      rc = nn_pic_sample(P, i, in, NULL, err);
    } else {
      for (size_t j = 0; j < P->feat; j++) in[j] = (x[(size_t)i * P->feat + j] - P->mean[j]) * P->inv[j];
    }
    if (rc) break;
    const float *out = nn_model_forward(P->m, in, 1, &ctx);
    double mx = out[0], z = 0;
    int arg = 0;
    for (int c = 1; c < k; c++)
      if (out[c] > mx) mx = out[c], arg = c;
    for (int c = 0; c < k; c++) z += exp((double)out[c] - mx);
    for (int c = 0; c < k; c++) {
      double pc = exp((double)out[c] - mx) / z;
      p[(size_t)i * k + c] = pc;
      pbar[c] += pc / (double)n;
    }
    conf += 1.0 / z; /* the largest probability */
    hist[arg]++;
  }
  if (!rc) {
    double h = 0, kl = 0;
    for (int c = 0; c < k; c++)
      if (hist[c]) h -= (double)hist[c] / (double)n * log2((double)hist[c] / (double)n);
    for (int64_t i = 0; i < n; i++)
      for (int c = 0; c < k; c++) {
        double pc = p[(size_t)i * k + c];
        if (pc > 0) kl += pc * (log(pc) - log(pbar[c]));
      }
    sc->conf = conf / (double)n;
    sc->hist_bits = h;
    sc->is = exp(kl / (double)n);
  }
  free(p);
  free(pbar);
  free(hist);
  free(in);
  return rc;
}

static int run_score(const images *im, const sample_opts *o, nn_error *err) {
  if (!im->raw)
    return nn_error_at(err, NN_EUSAGE, o->ckpt, 0, 0, "--score needs a GAN trained on its data "
                       "as stored (data.normalize = false): its images are then on the data's "
                       "scale, which the classifier's normalization expects");
  const float *x = im->x;
  nn_pic_model P;
  int rc = nn_pic_load(&P, o->score, o->reference, err);
  size_t feat = (size_t)im->C * im->H * im->W;
  if (!rc && P.feat != feat)
    rc = nn_error_at(err, NN_ECKPT, o->score, 0, 0, "the classifier reads %zu values, the "
                     "images have %zu", P.feat, feat);
  score g = {0}, r = {0};
  if (!rc) rc = classify(&P, x, o->n, 0, &g, err);
  int64_t nref = 0;
  if (!rc && o->reference) {
    nref = nn_dataset_get_info(P.ds)->n < o->n ? nn_dataset_get_info(P.ds)->n : o->n;
    rc = classify(&P, NULL, nref, 1, &r, err);
  }
  if (!rc) {
    int k = (int)nn_shape_count(&P.m->out);
    printf("score by %s (%d classes; histogram entropy at most %.3f bits):\n", o->score, k,
           log2((double)k));
    printf("  generated  %lld images: mean confidence %.4f, histogram entropy %.3f bits, "
           "inception score %.3f\n", o->n, g.conf, g.hist_bits, g.is);
    if (o->reference)
      printf("  reference  %lld images of %s: mean confidence %.4f, histogram entropy %.3f "
             "bits, inception score %.3f\n", (long long)nref, o->reference, r.conf, r.hist_bits,
             r.is);
  }
  nn_pic_free(&P);
  return rc;
}

/* The checkpoint's train.task into task. */
static int task_of(const char *ckpt, char *task, size_t n, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  nn_job *job = nn_calloc(1, sizeof *job);
  int rc = job ? nn_ckpt_read(ckpt, &s, err) : nn_error_set(err, NN_ENOMEM, "out of memory");
  if (!rc && (rc = nn_job_unpack(job, s.spec, s.spec_len, err)) != 0 && rc != NN_ENOMEM) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    rc = nn_error_at(err, NN_ECKPT, ckpt, 0, 0, "its job spec does not decode: %s", why);
  }
  if (!rc) snprintf(task, n, "%s", job->train.task[0] ? job->train.task : "supervised");
  nn_ckpt_snapshot_free(&s);
  free(job);
  return rc;
}

int nn_cmd_sample(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    help(stdout);
    return NN_EXIT_OK;
  }
  sample_opts o;
  int code = parse(argc, argv, &o);
  if (code >= 0) return code;
  if ((code = nn_pic_one_process("sample")) != 0) return code;
  nn_error err;
  nn_error_clear(&err);
  char task[32] = "";
  int rc = task_of(o.ckpt, task, sizeof task, &err);
  images im;
  memset(&im, 0, sizeof im);
  if (!rc && (!strcmp(task, "vae") || !strcmp(task, "autoencoder")))
    rc = ae_images(&o, task, &im, &err);
  else if (!rc && o.reconstruct)
    rc = nn_error_at(&err, NN_ECKPT, o.ckpt, 0, 0, "--reconstruct needs an autoencoder's or a "
                     "VAE's checkpoint; this one's train.task is \"%s\"", task);
  else if (!rc)
    rc = gan_images(&o, &im, &err);
  if (!rc && o.out && (rc = write_png(&im, &o, o.reconstruct ? recon_cols(o.n) : 0, &err)) == 0)
    printf("sample: %lld %s from %s (seed %lld) -> %s\n", o.n,
           o.reconstruct ? "images and their reconstructions" : "images", o.ckpt, o.seed, o.out);
  if (!rc && o.score && o.reconstruct)
    rc = nn_error_set(&err, NN_EUSAGE, "--score judges drawn images, not reconstructions");
  if (!rc && o.score) rc = run_score(&im, &o, &err);
  free(im.x);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
