/* gan.c: the GAN task (docs/tasks.md#gan): two replicas, "generator" and
 * "discriminator", trained in alternation with the non-saturating loss
 * (Goodfellow et al. 2014, as DCGAN trains).
 *
 * The job's [model] lists the generator's layers, then the discriminator's;
 * train.gan_discriminator names the discriminator's first layer. The
 * generator reads noise [train.gan_latent] and writes an image with as many
 * values as the data's samples; the discriminator reads an image (the data's
 * sample shape, or model.input_shape) and writes one logit, "real".
 *
 * Each global batch is one discriminator step: on this rank's slice of real
 * images (target 1) and as many generated ones (target 0), binary
 * cross-entropy on the logit, both halves' gradients summed before its
 * gradient sync. Every train.gan_d_steps-th batch is also a generator step:
 * fresh noise, the discriminator's gradient w.r.t. the generated images
 * taken in a frozen pass (its parameter gradients untouched), the loss
 * -log D(G(z)). Each replica has its own optimizer state, gradient sync and
 * checkpoint group; both use [optimizer] and [schedule].
 *
 * The noise of sample i of the global batch at step s is drawn from
 * (seed, NN_RNG_GAN, phase, s, i): the same whatever the rank count, so a
 * GAN run is N-invariant and resumes exactly like any other.
 *
 * Figures: the training loss and accuracy are the discriminator's (its BCE
 * over real and fake, the share of both it classifies right); evaluation
 * reports the same on the test images and as many fakes drawn from noise
 * keyed by the test sample's index (phase 2: the same fakes every epoch).
 * After each epoch rank 0 writes the generator's images for 64 fixed noise
 * vectors to the run directory (samples-eNNN.png). */
#include <math.h>
#include <string.h>

#include "coordinator/run/task.h"
#include "coordinator/run/tasks/gan.h"
#include "core/loss.h"
#include "core/mem.h"
#include "core/optim.h"
#include "core/regularize.h"
#include "core/rng.h"
#include "worker/agree.h"
#include "worker/collective.h"
#include "worker/png.h"

enum { GEN = 0, DIS = 1 };
enum { PHASE_D = 0, PHASE_G = 1, PHASE_EVAL = 2, PHASE_GRID = 3, PHASE_SAMPLE = 4 };
#define GAN_GRID 64 /* images in the per-epoch picture */

/* The index of the discriminator's first layer in the job's [model] into
 * *at; 0, or NN_ESCHEMA naming the job file. */
static int split_at(const nn_job *job, int *at, nn_error *err) {
  const char *name = job->train.gan_discriminator;
  if (!name[0])
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"gan\" needs "
                        "train.gan_discriminator, the name of the discriminator's first layer "
                        "in [model] (the layers before it are the generator)");
  for (int i = 0; i < job->model.nlayers; i++)
    if (!strcmp(job->model.layers[i].name, name)) {
      if (i == 0)
        return nn_error_at(err, NN_ESCHEMA, job->source, job->model.layer_line[i], 0,
                            "train.gan_discriminator = \"%s\" is the first layer of [model]: "
                            "the generator's layers come before it", name);
      *at = i;
      return 0;
    }
  return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.gan_discriminator = \"%s\" "
                      "names no layer of [model] (give the discriminator's first layer "
                      "name = \"%s\")", name, name);
}

static int gan_build(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                     const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                     nn_error *err) {
  int k = 0, rc = split_at(job, &k, err);
  nn_shape img = {.ndim = job->model.input_ndim};
  if (!rc && di) rc = nn_replica_input_shape(job, &di->sample, where, &img, err);
  else for (int i = 0; i < img.ndim; i++) img.dim[i] = job->model.input_shape[i];
  if (!rc && di && di->stream)
    rc = nn_error_at(err, NN_ESCHEMA, where, 0, 0, "train.task = \"gan\" learns images, "
                     "not a token stream");
  if (o->train) rc = nn_agree(o->comm, rc, err);
  if (rc) return rc;
  nn_replica_opts og = *o, od = *o;
  og.lint = od.lint = 0; /* the lint rules are about train.loss, which a GAN does not use */
  og.nlayers = k;
  od.layer0 = k;
  od.warn_user = NULL;
  nn_shape noise = {1, {job->train.gan_latent}};
  char a[64], b[64];
  rc = nn_replica_build(&reps[GEN], t->replicas[GEN], GEN, job, &noise, &og, err);
  if (!rc && img.ndim > 0 &&
      nn_shape_count(&reps[GEN].model.out) != nn_shape_count(&img))
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "the generator (the layers before "
                     "'%s') writes %s, but the images are %s: it must write as many values",
                     job->train.gan_discriminator, nn_shape_str(&reps[GEN].model.out, a, sizeof a),
                     nn_shape_str(&img, b, sizeof b));
  if (o->train) rc = nn_agree(o->comm, rc, err);
  if (rc) return rc;
  if (img.ndim == 0) img = reps[GEN].model.out; /* `check` without data: what G writes */
  rc = nn_replica_build(&reps[DIS], t->replicas[DIS], DIS, job, &img, &od, err);
  if (!rc && nn_shape_count(&reps[DIS].model.out) != 1)
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "the discriminator (from '%s' on) "
                     "writes %s; it must write one logit (end with a dense layer of units = 1)",
                     job->train.gan_discriminator,
                     nn_shape_str(&reps[DIS].model.out, a, sizeof a));
  if (!rc && o->train) { /* the step's scratch: noise, and the gradients of the fakes
                           and of the logits */
    size_t mb = (size_t)o->max_batch, img_n = nn_shape_count(&reps[DIS].model.in);
    reps[GEN].aux = nn_calloc(mb * ((size_t)job->train.gan_latent + img_n), sizeof(float));
    reps[DIS].aux = nn_calloc(2 * mb, sizeof(float)); /* dl, then the targets */
    if (!reps[GEN].aux || !reps[DIS].aux)
      rc = nn_error_set(err, NN_ENOMEM, "out of memory for the GAN step's buffers");
  }
  if (o->train) rc = nn_agree(o->comm, rc, err);
  return rc;
}

/* z [n, latent] for the samples of slice b at (phase, step), from `seed`. */
static void draw_noise_seed(const nn_replica *g, uint64_t seed, const nn_batch *b, int phase,
                            uint64_t step, float *z) {
  int latent = g->model.in.dim[0];
  for (int i = 0; i < b->n; i++) {
    nn_rng r;
    nn_rng_init(&r, seed, NN_RNG_GAN, (uint32_t)phase, (uint32_t)step,
                (uint32_t)(b->sample0 + i));
    for (int j = 0; j < latent; j++) z[(size_t)i * latent + j] = nn_rng_normal(&r);
  }
}

/* The same from the generator's own seed. */
static void draw_noise(const nn_replica *g, const nn_batch *b, int phase, uint64_t step,
                       float *z) {
  draw_noise_seed(g, g->seed, b, phase, step, z);
}

void nn_gan_generate(nn_replica *g, uint64_t seed, int64_t first, int n, float *z, float *x) {
  size_t count = nn_shape_count(&g->model.out);
  int mb = g->model.max_batch;
  nn_run_ctx ctx = {.training = 0, .seed = g->seed};
  for (int i0 = 0; i0 < n; i0 += mb) { /* in slices the model takes */
    nn_batch b = {.n = n - i0 < mb ? n - i0 : mb, .sample0 = first + i0};
    draw_noise_seed(g, seed, &b, PHASE_SAMPLE, 0, z);
    const float *y = nn_model_forward(&g->model, z, b.n, &ctx);
    memcpy(x + (size_t)i0 * count, y, (size_t)b.n * count * sizeof *x);
  }
}

/* Binary cross-entropy of logits l [n] against target t (0 or 1): the sum;
 * dl = scale * d(sum)/dl when dl; tgt [n] is scratch for the targets. The
 * samples classified right (l > 0 for 1, l <= 0 for 0) into *right. */
static double bce(const float *l, int n, int t, float scale, float *dl, double *right,
                  float *tgt) {
  for (int i = 0; i < n; i++) {
    tgt[i] = (float)t;
    if (right) *right += t ? l[i] > 0 : l[i] <= 0;
  }
  return nn_loss_bce(l, tgt, n, 1, scale, dl); /* core/loss.h: from logits, stable */
}

/* The discriminator's pass over micro-batch v (the whole slice without
 * train.accumulate): real images are 1, generated ones 0, both halves'
 * gradients added; ready: the sync's callback on the step's last
 * micro-batch, else NULL. */
static void d_pass(nn_replica *G, nn_replica *D, const nn_batch *v, uint64_t step, float scale,
                   nn_grad_ready_fn ready, nn_step_stats *st) {
  const int n = v->n;
  float *z = G->aux, *dl = D->aux, *tgt = D->aux + D->model.max_batch;
  nn_run_ctx ctx = {.training = 1, .step = step, .sample0 = v->sample0, .seed = D->seed};
  const float *l = nn_model_forward(&D->model, v->x, n, &ctx);
  st->loss_sum += bce(l, n, 1, scale, dl, &st->correct, tgt);
  nn_model_backward(&D->model, v->x, dl, n, &ctx, NULL, NULL); /* half the gradient */
  draw_noise(G, v, PHASE_D, step, z);
  ctx.seed = G->seed;
  const float *fake = nn_model_forward(&G->model, z, n, &ctx);
  ctx.seed = D->seed;
  l = nn_model_forward(&D->model, fake, n, &ctx);
  st->loss_sum += bce(l, n, 0, scale, dl, &st->correct, tgt);
  nn_model_backward(&D->model, fake, dl, n, &ctx, ready, D->sync);
  st->count += 2.0 * n;
}

/* The generator's pass over micro-batch v: fresh noise, its images should
 * pass for real (non-saturating loss), the discriminator's input gradient
 * taken in a frozen pass (its parameter gradients untouched). */
static void g_pass(nn_replica *G, nn_replica *D, const nn_batch *v, uint64_t step, float scale,
                   nn_grad_ready_fn ready) {
  const int n = v->n;
  size_t latent = (size_t)G->model.in.dim[0];
  float *z = G->aux, *dfake = G->aux + (size_t)G->model.max_batch * latent, *dl = D->aux,
        *tgt = D->aux + D->model.max_batch;
  nn_run_ctx ctx = {.training = 1, .step = step, .sample0 = v->sample0, .seed = G->seed};
  draw_noise(G, v, PHASE_G, step, z);
  const float *fake = nn_model_forward(&G->model, z, n, &ctx);
  ctx.seed = D->seed;
  const float *l = nn_model_forward(&D->model, fake, n, &ctx);
  (void)bce(l, n, 1, scale, dl, NULL, tgt);
  nn_run_ctx frozen = ctx;
  frozen.frozen = 1; /* the discriminator's input gradient only */
  nn_model_backward_dx(&D->model, fake, dl, dfake, n, &frozen, NULL, NULL);
  ctx.seed = G->seed;
  nn_model_backward(&G->model, z, dfake, n, &ctx, ready, G->sync);
}

/* A discriminator step, and every train.gan_d_steps-th batch a generator
 * step, each over the stepper's micro-batches (train.accumulate: the
 * slice's samples [i*n/k, (i+1)*n/k), keyed by their place in the batch as
 * in one k-times larger batch) with one gradient sync. */
static int gan_step(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                    nn_step_stats *st, nn_error *err) {
  nn_replica *G = &reps[GEN], *D = &reps[DIS];
  const int k = D->st.accumulate > 1 ? D->st.accumulate : 1;
  const float scale = 1.0f / (float)b->global_n;
  nn_step_begin(&D->st, step);
  for (int i = 0; i < k; i++) {
    nn_batch v = nn_step_micro(&D->st, b, i);
    if (v.n > 0) d_pass(G, D, &v, step, scale, D->sync && i == k - 1 ? nn_step_on_ready : NULL, st);
  }
  int rc = nn_step_finish(&D->st, lr[DIS], st, err);
  if (rc || (step + 1) % (uint64_t)G->job->train.gan_d_steps != 0) return rc;
  nn_step_begin(&G->st, step);
  for (int i = 0; i < k; i++) {
    nn_batch v = nn_step_micro(&D->st, b, i); /* the samples' places: z is drawn per place */
    if (v.n > 0) g_pass(G, D, &v, step, scale, G->sync && i == k - 1 ? nn_step_on_ready : NULL);
  }
  return nn_step_finish(&G->st, lr[GEN], st, err);
}

/* The discriminator on the test images and as many fakes (noise keyed by
 * the test sample's index, the same every epoch): its mean BCE and the share
 * it classifies right. */
static int gan_evaluate(const nn_task_ops *t, nn_replica *reps, nn_loader *L,
                        nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl, int64_t step,
                        nn_metrics_result *res, nn_error *err) {
  (void)t, (void)acc;
  nn_replica *G = &reps[GEN], *D = &reps[DIS];
  memset(res, 0, sizeof *res);
  size_t latent = (size_t)G->model.in.dim[0];
  float *z = NULL;
  double g[3] = {0, 0, 0}; /* loss sum, right, count */
  int rc = nn_loader_start(L, 0, 0, err);
  const nn_batch *b;
  nn_run_ctx ctx = {.training = 0};
  while (!rc) {
    if ((rc = nn_loader_next(L, &b, err)) != 0 || !b) break;
    if (b->n == 0) continue;
    if (!z && !(z = nn_malloc((size_t)G->model.max_batch * latent * sizeof *z))) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory for the GAN's evaluation noise");
      break;
    }
    ctx.sample0 = b->sample0;
    ctx.seed = D->seed;
    const float *l = nn_model_forward(&D->model, b->x, b->n, &ctx);
    g[0] += bce(l, b->n, 1, 1.0f, NULL, &g[1], z);
    draw_noise(G, b, PHASE_EVAL, 0, z); /* (z also held the targets just above: read by then) */
    ctx.seed = G->seed;
    const float *fake = nn_model_forward(&G->model, z, b->n, &ctx);
    ctx.seed = D->seed;
    l = nn_model_forward(&D->model, fake, b->n, &ctx);
    g[0] += bce(l, b->n, 0, 1.0f, NULL, &g[1], z);
    g[2] += 2.0 * b->n;
  }
  free(z);
  int brc = nn_watched_barrier(ctl, step, err);
  if (brc) return brc;
  if ((rc = nn_agree(comm, rc, err)) != 0) return rc;
  if ((rc = nn_allreduce_sum_f64(comm, g, 3, err)) != 0) return rc;
  res->count = g[2];
  res->loss = g[2] > 0 ? g[0] / g[2] : NAN;
  res->accuracy = g[2] > 0 ? g[1] / g[2] : NAN;
  res->nfigs = 1; /* the loss and the discriminator's accuracy alone */
  snprintf(res->fig_name[0], sizeof res->fig_name[0], "accuracy");
  res->fig[0] = res->accuracy;
  return 0;
}

/* DIR/samples-eEEE.png: the generator's images for GAN_GRID fixed noise
 * vectors (phase 3, keyed by their index: the same every epoch, so the
 * pictures show the generator's progress), in evaluation mode, 8 by 8. */
static int gan_epoch_end(const nn_task_ops *t, nn_replica *reps, const char *dir, int epoch,
                         nn_error *err) {
  (void)t;
  nn_replica *G = &reps[GEN];
  const nn_shape *img = &reps[DIS].model.in;
  size_t latent = (size_t)G->model.in.dim[0], count = nn_shape_count(img);
  int mb = G->model.max_batch;
  float *z = nn_malloc((size_t)mb * latent * sizeof *z);
  float *x = nn_malloc((size_t)GAN_GRID * count * sizeof *x);
  int rc = z && x ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory for the GAN's sample picture");
  nn_run_ctx ctx = {.training = 0, .seed = G->seed};
  for (int i0 = 0; !rc && i0 < GAN_GRID; i0 += mb) { /* in slices the model takes */
    nn_batch b = {.n = GAN_GRID - i0 < mb ? GAN_GRID - i0 : mb, .sample0 = i0};
    draw_noise(G, &b, PHASE_GRID, 0, z);
    const float *y = nn_model_forward(&G->model, z, b.n, &ctx);
    memcpy(x + (size_t)i0 * count, y, (size_t)b.n * count * sizeof *x);
  }
  int C = img->ndim == 3 ? img->dim[0] : 1, H = img->ndim == 3 ? img->dim[1] : 1;
  int W = img->ndim == 3 ? img->dim[2] : (int)count;
  char path[NN_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/samples-e%03d.png", dir, epoch + 1);
  /* the data's [0, 1] when not normalized (a sigmoid output), else the images' own range */
  nn_png_grid_opts o = {.cols = 8, .lo = 0, .hi = G->job->data.normalize ? 0 : 1, .zoom = 2,
                        .gap = 128};
  if (!rc && (C == 1 || C == 3)) rc = nn_png_grid(path, x, GAN_GRID, C, H, W, &o, err);
  free(z);
  free(x);
  return rc;
}

const nn_task_ops nn_task_gan = {
    .name = "gan",
    .help = "a generator and a discriminator trained in alternation (train.gan_*; the "
            "figures are the discriminator's)",
    .nreplicas = 2,
    .replicas = {"generator", "discriminator"},
    .eval_replica = 1,
    .build = gan_build,
    .step = gan_step,
    .evaluate = gan_evaluate,
    .epoch_end = gan_epoch_end,
};
