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
#include "core/mem.h"
#include "worker/png.h"

#define SAMPLE_MAX_N 1000000

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain sample CKPT.h5 --n N [--seed S] [--zoom Z] [--out FILE.png]\n"
          "                      [--score CLASSIFIER.h5 [--reference DATA_GLOB]]\n\n"
          "N images from a GAN checkpoint's generator (train.task = \"gan\"), from noise\n"
          "vectors 0..N-1 of seed S (default 1): the same S gives the same images.\n"
          "--out: a grid of them as a PNG (each pixel Z x Z, default 2).\n"
          "--score: how a classifier's checkpoint sees them: its mean confidence, the\n"
          "entropy (bits) of its predicted-class histogram and the inception score;\n"
          "--reference: the same for the first N images of DATA_GLOB.\n"
          "One process: not under mpirun with more than one rank.\n");
}

typedef struct sample_opts {
  const char *ckpt, *out, *score, *reference;
  long long n, seed, zoom;
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
    if (!strcmp(a, "--out") || !strcmp(a, "--score") || !strcmp(a, "--reference")) {
      if (!v || !*v) return nn_cli_usage_error(cmd, "%s needs a file", a);
      if (a[2] == 'o') o->out = v;
      else if (a[2] == 's') o->score = v;
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

/* The images' shape: the discriminator's input (what the data's were). */
static nn_shape image_shape(const sampler *S) { return S->reps[1].model.in; }

static int write_png(const sampler *S, const sample_opts *o, const float *x, nn_error *err) {
  nn_shape img = image_shape(S);
  int C = img.ndim == 3 ? img.dim[0] : 1, H = img.ndim == 3 ? img.dim[1] : 1;
  int W = img.ndim == 3 ? img.dim[2] : (int)nn_shape_count(&img);
  if (C != 1 && C != 3)
    return nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "the generator writes %d channels: a "
                       "picture needs 1 or 3 (write FILE.h5 instead)", C);
  nn_png_grid_opts g = {.cols = 0, .lo = 0, .hi = S->job->data.normalize ? 0 : 1,
                        .zoom = (int)o->zoom, .gap = 128};
  return nn_png_grid(o->out, x, (int)o->n, C, H, W, &g, err);
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

static int run_score(const sampler *S, const sample_opts *o, const float *x, nn_error *err) {
  if (S->job->data.normalize)
    return nn_error_at(err, NN_EUSAGE, o->ckpt, 0, 0, "--score needs a GAN trained on its data "
                       "as stored (data.normalize = false): its images are then on the data's "
                       "scale, which the classifier's normalization expects");
  nn_pic_model P;
  int rc = nn_pic_load(&P, o->score, o->reference, err);
  if (!rc && P.feat != nn_shape_count(&S->g->model.out))
    rc = nn_error_at(err, NN_ECKPT, o->score, 0, 0, "the classifier reads %zu values, the "
                     "generator writes %zu", P.feat, nn_shape_count(&S->g->model.out));
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
  sampler S;
  memset(&S, 0, sizeof S);
  int rc = load(&S, o.ckpt, &err);
  float *x = NULL, *z = NULL;
  if (!rc) {
    size_t count = nn_shape_count(&S.g->model.out), latent = (size_t)S.g->model.in.dim[0];
    x = nn_malloc((size_t)o.n * count * sizeof *x);
    z = nn_malloc((size_t)S.g->model.max_batch * latent * sizeof *z);
    if (!x || !z) rc = nn_error_set(&err, NN_ENOMEM, "out of memory for %lld images", o.n);
  }
  if (!rc) {
    nn_gan_generate(S.g, (uint64_t)o.seed, 0, (int)o.n, z, x);
    if (o.out && (rc = write_png(&S, &o, x, &err)) == 0)
      printf("sample: %lld images from %s (seed %lld) -> %s\n", o.n, o.ckpt, o.seed, o.out);
  }
  if (!rc && o.score) rc = run_score(&S, &o, x, &err);
  free(x);
  free(z);
  unload(&S);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
