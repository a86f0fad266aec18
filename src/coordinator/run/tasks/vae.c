/* vae.c: the variational autoencoder task (docs/tasks.md#vae): one replica
 * ("model"), an encoder that writes a mean and a log-variance, a `sample`
 * layer (core/layers/sample.h: z = mu + sigma * eps, the noise from the
 * counter-based generator keyed by the global sample, so runs are
 * N-invariant), and a decoder that writes the input back.
 *
 * The loss of one image is the negative evidence lower bound of Kingma &
 * Welling (2014) with a beta weight on its KL term:
 *   reconstruction  the SUM over the image's values of binary cross-entropy
 *                   from logits (data in [0, 1]: data.normalize = false) or
 *                   of squared errors (train.loss = "mse"),
 *   + beta * KL(N(mu, sigma^2) || N(0, 1)), the sample layer's (its `beta`),
 * averaged over the global batch. Evaluation runs the sample layer in
 * evaluation mode (z = mu) and reports, per image, the reconstruction, the KL
 * and the ELBO = -(reconstruction + KL) (beta = 1, the bound itself), as
 * val_/test_ recon, kl and elbo (training: the same with the sampled codes,
 * as elbo, recon and kl in the epoch records); the loss is the objective,
 * reconstruction + beta * KL. After every epoch rank 0 writes the decoder's images for 64
 * fixed codes to the run directory (samples-eNNN.png). */
#include <math.h>
#include <string.h>

#include "coordinator/run/task.h"
#include "core/layers/sample.h"
#include "core/compute.h"
#include "core/loss.h"
#include "core/mem.h"
#include "core/rng.h"
#include "worker/agree.h"
#include "worker/collective.h"
#include "worker/png.h"


static int vae_check(const nn_job *job, const nn_model *m, const nn_dataset_info *di,
                     const char *where, nn_error *err) {
  (void)where; /* the rules are the job file's */
  char a[64], b[64];
  int loss = nn_loss_parse(job->train.loss);
  if (di && (di->vocab_size > 0 || di->stream))
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"vae\" reconstructs "
                       "images or feature vectors, not token sequences");
  if (loss != NN_LOSS_BCE && loss != NN_LOSS_MSE)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"vae\": train.loss "
                       "must be \"binary_cross_entropy\" (data in [0, 1]) or \"mse\", not \"%s\"",
                       job->train.loss);
  if (loss == NN_LOSS_BCE && job->data.normalize)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"vae\" with "
                       "binary_cross_entropy reconstructs values in [0, 1]: set "
                       "data.normalize = false");
  if (nn_sample_layer_index(m) < 0)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"vae\": the model "
                       "has no `sample` layer (the encoder writes [2 * latent] means and "
                       "log-variances, a sample layer draws z, the decoder follows)");
  if (nn_shape_count(&m->out) != nn_shape_count(&m->in))
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "train.task = \"vae\": the model's "
                       "output %s has %zu values, its input %s has %zu: the decoder must write "
                       "as many values as the input", nn_shape_str(&m->out, a, sizeof a),
                       nn_shape_count(&m->out), nn_shape_str(&m->in, b, sizeof b),
                       nn_shape_count(&m->in));
  return 0;
}

static int vae_build(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                     const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                     nn_error *err) {
  return nn_task_build_one(t, reps, job, di, where, o, vae_check, err);
}

/* The reconstruction of x by out [n, k], summed over the k values of each
 * sample and over the samples; dout = scale * its gradient when dout. */
static double recon(const nn_stepper *s, const float *out, const float *x, int n, int k,
                    float scale, float *dout) {
  /* the losses average over the k values; the sum over them is k times that */
  float sk = scale * (float)k;
  double mean = s->loss == NN_LOSS_BCE ? nn_loss_bce(out, x, n, k, sk, dout)
                                       : nn_loss_mse(out, x, n, k, sk, dout);
  return mean * k;
}

/* One micro-batch v (the whole slice without train.accumulate) of an
 * optimizer step: forward, the loss scaled by the step's global batch,
 * backward adding into the gradients (ready: the sync's callback on the
 * step's last micro-batch, else NULL). */
static void vae_pass(nn_replica *r, const nn_batch *v, uint64_t step,
                     nn_grad_ready_fn ready, nn_step_stats *st) {
  nn_model *m = &r->model;
  nn_run_ctx ctx = {.training = 1, .seed = r->seed, .step = step, .sample0 = v->sample0,
                    .act_scale = 1.0f / (float)v->global_n}; /* the KL's gradient scale */
  const float *out = nn_model_forward(m, v->x, v->n, &ctx);
  int k = (int)nn_shape_count(&m->out);
  double l = recon(&r->st, out, v->x, v->n, k, 1.0f / (float)v->global_n, r->st.dout);
  if (!isfinite(l)) r->st.dout[0] = NAN; /* every rank's verdict: non-finite (step.h) */
  double kl = nn_sample_kl(m);
  st->loss_sum += l + nn_sample_penalty(m);
  st->fig_sum[0] -= l + kl; /* the ELBO (beta 1), with the sampled codes */
  st->fig_sum[1] += l;
  st->fig_sum[2] += kl;
  st->count += v->n;
  nn_model_backward(m, v->x, r->st.dout, v->n, &ctx, ready, r->sync);
}

static int vae_step(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                    nn_step_stats *st, nn_error *err) {
  nn_replica *r = &reps[0];
  nn_step_begin(&r->st, step);
  const int k = r->st.accumulate > 1 ? r->st.accumulate : 1; /* train.accumulate */
  for (int i = 0; i < k; i++) {
    nn_batch v = nn_step_micro(&r->st, b, i);
    if (v.n > 0) vae_pass(r, &v, step, r->sync && i == k - 1 ? nn_step_on_ready : NULL, st);
  }
  return nn_step_finish(&r->st, lr[0], st, err);
}

static int vae_evaluate(const nn_task_ops *t, nn_replica *reps, nn_loader *L, nn_metrics_acc *acc,
                        MPI_Comm comm, nn_ring *ctl, int64_t step, nn_metrics_result *res,
                        nn_error *err) {
  (void)acc;
  nn_replica *r = &reps[t->eval_replica];
  nn_model *m = &r->model;
  memset(res, 0, sizeof *res);
  double g[4] = {0, 0, 0, 0}; /* reconstruction, KL, beta * KL, samples */
  int rc = nn_loader_start(L, 0, 0, err);
  nn_run_ctx ctx = {.training = 0, .seed = r->seed};
  const nn_batch *b;
  int k = (int)nn_shape_count(&m->out);
  while (!rc) {
    if ((rc = nn_loader_next(L, &b, err)) != 0 || !b) break;
    if (b->n == 0) continue;
    ctx.sample0 = b->sample0;
    const float *out = nn_model_forward(m, b->x, b->n, &ctx);
    g[0] += recon(&r->st, out, b->x, b->n, k, 1.0f, NULL);
    g[1] += nn_sample_kl(m);
    g[2] += nn_sample_penalty(m);
    g[3] += b->n;
  }
  int brc = nn_watched_barrier(ctl, step, err);
  if (brc) return brc;
  if ((rc = nn_agree(comm, rc, err)) != 0) return rc;
  if ((rc = nn_allreduce_sum_f64(comm, g, 4, err)) != 0) return rc;
  double n = g[3] > 0 ? g[3] : NAN;
  res->count = g[3];
  res->loss = (g[0] + g[2]) / n;
  res->accuracy = NAN;
  const char *names[3] = {"elbo", "recon", "kl"};
  double figs[3] = {-(g[0] + g[1]) / n, g[0] / n, g[1] / n};
  res->nfigs = 3;
  for (int i = 0; i < 3; i++) {
    snprintf(res->fig_name[i], sizeof res->fig_name[i], "%s", names[i]);
    res->fig[i] = figs[i];
  }
  return 0;
}

/* DIR/samples-eEEE.png after every epoch: the decoder's images for 64 codes
 * drawn once (the same every epoch: seed, NN_RNG_GENERATE, 4, code index),
 * through the sigmoid for a binary cross-entropy model. The decoder runs
 * from the sample layer on, which needs the model unfused and NCHW for the
 * call (core/model.h nn_model_forward_from); the run's settings come back
 * after it. */
static int vae_epoch_end(const nn_task_ops *t, nn_replica *reps, const char *dir, int epoch,
                         nn_error *err) {
  (void)t;
  nn_replica *r = &reps[0];
  nn_model *m = &r->model;
  const nn_shape *img = &m->in;
  int C = img->ndim == 3 ? img->dim[0] : 1, H = img->ndim == 3 ? img->dim[1] : 1;
  int W = img->ndim == 3 ? img->dim[2] : (int)nn_shape_count(img);
  if (C != 1 && C != 3) return 0; /* not a picture */
  int j = nn_sample_layer_index(m);
  size_t latent = nn_shape_count(&m->layers[j].out), count = nn_shape_count(img);
  enum { NPIC = 64 };
  float *z = nn_malloc(latent * (size_t)m->max_batch * sizeof *z);
  float *x = nn_malloc(count * NPIC * sizeof *x);
  int rc = z && x ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory for the VAE's sample picture");
  int fuse = 1, blocked = 1;
  if (!rc) rc = nn_fuse_choice(&fuse, err);
  if (!rc) rc = nn_blocked_choice(&blocked, err);
  if (!rc) {
    nn_model_fuse(m, 0);
    nn_model_layouts(m, 0);
  }
  nn_run_ctx ctx = {.training = 0, .seed = r->seed};
  int bce = r->st.loss == NN_LOSS_BCE;
  for (int i0 = 0; !rc && i0 < NPIC; i0 += m->max_batch) {
    int n = NPIC - i0 < m->max_batch ? NPIC - i0 : m->max_batch;
    for (int i = 0; i < n; i++) {
      nn_rng g;
      nn_rng_init(&g, r->seed, NN_RNG_GENERATE, 4, 0, (uint32_t)(i0 + i));
      for (size_t k = 0; k < latent; k++) z[(size_t)i * latent + k] = nn_rng_normal(&g);
    }
    const float *y = NULL;
    if ((rc = nn_model_forward_from(m, j, z, n, &ctx, &y, err)) != 0) break;
    for (size_t e = 0; e < (size_t)n * count; e++)
      x[(size_t)i0 * count + e] = bce ? 1.0f / (1.0f + expf(-y[e])) : y[e];
  }
  nn_model_fuse(m, fuse);
  nn_model_layouts(m, blocked);
  if (!rc) {
    char path[NN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/samples-e%03d.png", dir, epoch + 1);
    nn_png_grid_opts o = {.cols = 8, .lo = 0, .hi = bce ? 1 : 0, .zoom = 2, .gap = 128};
    rc = nn_png_grid(path, x, NPIC, C, H, W, &o, err);
  }
  free(z);
  free(x);
  return rc;
}

const nn_task_ops nn_task_vae = {
    .name = "vae",
    .help = "a variational autoencoder: reconstruction + beta * KL (a `sample` layer), the "
            "ELBO reported",
    .nreplicas = 1,
    .replicas = {"model"},
    .eval_replica = 0,
    .build = vae_build,
    .step = vae_step,
    .evaluate = vae_evaluate,
    .epoch_end = vae_epoch_end,
    .train_figs = {"elbo", "recon", "kl"},
};
