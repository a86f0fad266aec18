/* train.c: the training run (see train.h).
 *
 * Shape of a run, on every rank:
 *   open data (agree on errors) -> build model, seed params from the job seed
 *   -> for each epoch: start the loader at (seed, epoch), step through the
 *      global batches (this rank's slice of each), reduce the epoch's sums,
 *      evaluate on the test set (sharded the same way), rank 0 reports and
 *      appends to metrics.jsonl.
 * Decisions that end the run (max steps, divergence) are computed from values
 * every rank holds identically (reduced sums, the step counter), so every
 * rank takes the same branch at the same step without extra messages. */
#include "coordinator/train.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "coordinator/metrics_log.h"
#include "coordinator/schedule.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/optim.h"
#include "worker/allreduce.h"
#include "worker/dataset.h"
#include "worker/loader.h"
#include "worker/step.h"

static double now_s(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* Every rank passes its status; all return the error of the lowest failing
 * rank (its record is broadcast), or 0 when all succeeded. */
static int agree(MPI_Comm comm, int rc, nn_error *err) {
  int rank, n;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &n);
  int mine = rc ? rank : n, first = n;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == n) return 0;
  nn_error e;
  if (rank == first) {
    e = *err;
    if (e.rank < 0) e.rank = rank;
  }
  MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, first, comm);
  *err = e;
  return e.code ? e.code : NN_EINTERNAL;
}

/* A barrier the watchdog covers: a one-float ring all-reduce with the run's
 * timeout. Placed before every plain MPI collective of the run (epoch sums,
 * evaluation, replica checks), so a stalled rank is named there too; a rank
 * that passed it is alive, and the collective right after cannot hang on it. */
static int watched_barrier(nn_ring *ctl, int64_t step, nn_error *err) {
  if (!ctl) return 0;
  float one = 1.0f;
  nn_ring_set_step(ctl, (long)step);
  return nn_ring_allreduce(ctl, &one, 1, err);
}

/* FNV-1a over the bytes of a float array. */
static uint64_t hash_floats(const float *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static void fmt_duration(double s, char *buf, size_t n) {
  if (s < 0) s = 0;
  if (s < 120) snprintf(buf, n, "%.1fs", s);
  else if (s < 7200) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* Live progress on stderr (rank 0, terminal only). */
static void progress_bar(int epoch, int epochs, int64_t step, int64_t steps, double loss,
                         double t_epoch) {
  const int W = 30;
  int fill = steps > 0 ? (int)(W * step / steps) : W;
  char bar[64];
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[W] = '\0';
  char eta[32];
  fmt_duration(step > 0 ? t_epoch / (double)step * (double)(steps - step) : 0, eta, sizeof eta);
  fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f eta %s   ", epoch, epochs, bar,
          (long long)step, (long long)steps, loss, eta);
  fflush(stderr);
}

/* Evaluate the model on the loader's data (all ranks); returns global sums. */
static int evaluate(nn_stepper *st, nn_loader *L, uint64_t seed, MPI_Comm comm, nn_ring *ctl,
                    int64_t step, nn_step_stats *out, nn_error *err) {
  nn_step_stats s = {0};
  int rc = nn_loader_start(L, 0, 0, err);
  if (rc) return rc;
  const nn_batch *b;
  while ((rc = nn_loader_next(L, &b, err)) == 0 && b) nn_step_eval(st, b, seed, &s);
  if (rc) return rc;
  if ((rc = watched_barrier(ctl, step, err)) != 0) return rc;
  double v[3] = {s.loss_sum, s.correct, s.count}, g[3];
  MPI_Allreduce(v, g, 3, MPI_DOUBLE, MPI_SUM, comm);
  out->loss_sum = g[0];
  out->correct = g[1];
  out->count = g[2];
  return 0;
}

/* Checks that need the data's description: input shape, outputs vs labels. */
static int check_model_vs_data(const nn_job *job, const nn_model *m, const nn_dataset_info *tr,
                               int loss, nn_error *err) {
  int k = (int)nn_shape_count(&m->out);
  if (tr->num_classes > 0) {
    if (loss == NN_LOSS_SOFTMAX_CE && k != tr->num_classes)
      return nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                         "the model has %d outputs but the training data has %d classes "
                         "(set the last layer's units to %d)", k, tr->num_classes,
                         tr->num_classes);
    if (loss == NN_LOSS_MSE && k != tr->num_classes)
      return nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                         "mse on class labels needs one output per class: the model has %d, "
                         "the data %d classes", k, tr->num_classes);
  } else {
    if (loss != NN_LOSS_MSE)
      return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                         "the training data is regression (targets, no classes): use "
                         "train.loss = \"mse\"");
    if (k != tr->target_dim)
      return nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                         "the model has %d outputs but the targets have %d values", k,
                         tr->target_dim);
  }
  return 0;
}

static int same_data_kind(const nn_dataset_info *a, const nn_dataset_info *b, const char *test,
                          nn_error *err) {
  char sa[64], sb[64];
  if (!nn_shape_equal(&a->sample, &b->sample) || a->num_classes != b->num_classes ||
      a->target_dim != b->target_dim)
    return nn_error_at(err, NN_EDATA, test, 0, 0,
                       "test data (sample %s, %d classes) does not match the training data "
                       "(sample %s, %d classes)",
                       nn_shape_str(&b->sample, sb, sizeof sb), b->num_classes,
                       nn_shape_str(&a->sample, sa, sizeof sa), a->num_classes);
  return 0;
}

static void set_threads(const nn_job *job, MPI_Comm comm) {
  int threads = job->run.threads;
  if (threads <= 0) {
    MPI_Comm node;
    int local = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
      MPI_Comm_size(node, &local);
      MPI_Comm_free(&node);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = (int)(cores > 0 ? cores : 1) / (local > 0 ? local : 1);
    if (threads < 1) threads = 1;
  }
  openblas_set_num_threads(threads);
}

int nn_train_run(const nn_job *job, MPI_Comm comm, const nn_train_opts *opts,
                 nn_train_result *res, nn_error *err) {
  int rank, N, rc = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &N);
  FILE *out = opts->out ? opts->out : stdout;
  const int lead = rank == 0;
  double t_start = now_s();
  memset(res, 0, sizeof *res);
  res->test_loss = res->test_acc = -1;

  nn_dataset *train_ds = NULL, *test_ds = NULL;
  nn_loader *train_L = NULL, *test_L = NULL;
  nn_model model;
  memset(&model, 0, sizeof model);
  nn_optim optim;
  memset(&optim, 0, sizeof optim);
  nn_gradsync *sync = NULL;
  nn_ring *ctl = NULL;
  nn_stepper st;
  memset(&st, 0, sizeof st);
  nn_metrics_log log;
  memset(&log, 0, sizeof log);
  int have_model = 0, have_optim = 0, have_stepper = 0;

  set_threads(job, comm);
  int loss = nn_loss_parse(job->train.loss);

  /* ---- data: every rank opens the shards; errors are agreed on ---------- */
  nn_dataset_opts dopts = {.cache = job->data.cache, .chunk_cache = 0};
  rc = nn_dataset_open(&train_ds, job->data.train, &dopts, err);
  if (!rc && job->data.test[0]) {
    rc = nn_dataset_open(&test_ds, job->data.test, &dopts, err);
    if (!rc) rc = same_data_kind(nn_dataset_get_info(train_ds), nn_dataset_get_info(test_ds),
                                 job->data.test, err);
  }
  if (!rc && loss < 0)
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "unknown loss '%s'", job->train.loss);
  const nn_dataset_info *tri = train_ds ? nn_dataset_get_info(train_ds) : NULL;
  if (!rc && job->train.batch_size % N != 0)
    rc = nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                     "train.batch_size = %d is the GLOBAL batch and must divide evenly over "
                     "the %d ranks (try %d)", job->train.batch_size, N,
                     (job->train.batch_size + N - 1) / N * N);
  if (!rc && tri->n < N)
    rc = nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                     "%lld training samples cannot be split over %d ranks",
                     (long long)tri->n, N);
  if (!rc && tri->n < job->train.batch_size && job->train.drop_last)
    rc = nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                     "train.drop_last is set and the %lld training samples are fewer than "
                     "one batch (%d)", (long long)tri->n, job->train.batch_size);
  rc = agree(comm, rc, err);
  if (rc) goto done;

  /* ---- model, optimizer, loaders ---------------------------------------- */
  nn_loader_cfg lc = {.seed = (uint64_t)job->train.seed, .rank = rank, .nranks = N,
                      .batch_size = job->train.batch_size, .drop_last = job->train.drop_last,
                      .shuffle = 1, .prefetch = job->data.prefetch > 0 ? job->data.prefetch : 2,
                      .normalize = job->data.normalize};
  rc = nn_loader_create(&train_L, train_ds, &lc, err);
  if (!rc && test_ds) {
    nn_loader_cfg tc = lc;
    tc.shuffle = 0;
    tc.drop_last = 0;
    rc = nn_loader_create(&test_L, test_ds, &tc, err);
  }
  nn_shape in = tri->sample;
  if (!rc && job->model.input_ndim > 0) {
    nn_shape want = {.ndim = job->model.input_ndim};
    for (int i = 0; i < want.ndim; i++) want.dim[i] = job->model.input_shape[i];
    if (nn_shape_count(&want) != nn_shape_count(&in)) {
      char a[64], b[64];
      rc = nn_error_at(err, NN_ESHAPE, job->source, 0, 0,
                       "model.input_shape %s does not match the data's sample shape %s",
                       nn_shape_str(&want, a, sizeof a), nn_shape_str(&in, b, sizeof b));
    }
    in = want;
  }
  if (!rc) {
    int max_batch = train_L ? nn_loader_max_slice(train_L) : 1;
    rc = nn_model_build(&model, &in, job->model.layers, job->model.nlayers, max_batch, err);
    if (!rc) have_model = 1;
  }
  if (!rc) rc = check_model_vs_data(job, &model, tri, loss, err);
  if (!rc) {
    nn_model_init_params(&model, (uint64_t)job->train.seed);
    rc = nn_optim_init(&optim, &job->optimizer, model.nparams, err);
    if (!rc) have_optim = 1;
  }
  if (!rc && N > 1) rc = nn_gradsync_create(&sync, comm, model.grads, model.nparams, 0, err);
  if (!rc && N > 1) rc = nn_ring_create(&ctl, comm, 1, 0, err);
  if (!rc && N > 1 && opts->timeout_s > 0) {
    nn_gradsync_set_timeout(sync, opts->timeout_s);
    nn_ring_set_timeout(ctl, opts->timeout_s);
  }
  if (!rc) {
    rc = nn_stepper_init(&st, &model, &optim, sync, loss, err);
    if (!rc) have_stepper = 1;
  }
  if (!rc && lead) rc = nn_metrics_open(&log, job->run.dir, err);
  rc = agree(comm, rc, err);
  if (rc) goto done;

  int show_bar = opts->progress < 0 ? (job->run.progress && isatty(2)) : opts->progress;
  show_bar = show_bar && lead;
  const int64_t steps_per_epoch = nn_loader_steps(train_L);
  const int epochs = job->train.epochs;
  if (lead) {
    char shp[64];
    if (!opts->quiet)
      fprintf(out,
              "nntrain: job '%s': %d rank%s, %lld training samples%s, input %s, %zu "
              "parameters, %d epochs of %lld steps (global batch %d)\n",
              job->name[0] ? job->name : job->source, N, N == 1 ? "" : "s",
              (long long)tri->n, test_ds ? "" : ", no test set",
              nn_shape_str(&in, shp, sizeof shp), model.nparams, epochs,
              (long long)steps_per_epoch, job->train.batch_size);
    char rec[1024];
    snprintf(rec, sizeof rec,
             "\"event\": \"start\", \"job\": \"%s\", \"ranks\": %d, \"params\": %zu, "
             "\"train_samples\": %lld, \"epochs\": %d, \"batch_size\": %d",
             job->name, N, model.nparams, (long long)tri->n, epochs, job->train.batch_size);
    rc = nn_metrics_write(&log, rec, err);
    if (rc) goto fail_local;
  }

  /* ---- epochs ------------------------------------------------------------ */
  int64_t gstep = 0;
  double train_time = 0, train_samples = 0;
  const int64_t total_steps = (int64_t)epochs * steps_per_epoch;
  double lr = job->optimizer.lr;
  int stop = 0;
  for (int epoch = 0; epoch < epochs && !stop; epoch++) {
    double t0 = now_s(), last_bar = 0;
    nn_step_stats s = {0};
    rc = nn_loader_start(train_L, epoch, 0, err);
    if (rc) goto fail_local;
    const nn_batch *b;
    for (;;) {
      rc = nn_loader_next(train_L, &b, err);
      if (rc) goto fail_local;
      if (!b) break;
      lr = nn_schedule_lr(&job->schedule, job->optimizer.lr, gstep, total_steps);
      rc = nn_step_train(&st, b, lr, (uint64_t)gstep, (uint64_t)job->train.seed, &s, err);
      if (rc) goto fail_local;
      gstep++;
      train_samples += b->global_n;
      if (opts->check_replicas && N > 1) {
        if ((rc = watched_barrier(ctl, gstep, err)) != 0) goto fail_local;
        uint64_t h = hash_floats(model.params, model.nparams), lo, hi;
        MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
        MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
        if (lo != hi) {
          rc = nn_error_set(err, NN_EINTERNAL,
                            "replicas diverged: parameters differ between ranks after step %lld",
                            (long long)gstep);
          goto fail_local;
        }
      }
      if (show_bar) {
        double t = now_s();
        if (t - last_bar > 0.1 || b->step + 1 == steps_per_epoch) {
          last_bar = t;
          progress_bar(epoch + 1, epochs, b->step + 1, steps_per_epoch,
                       s.count > 0 ? s.loss_sum / s.count : 0, t - t0);
        }
      }
      if (opts->max_steps > 0 && gstep >= opts->max_steps) {
        nn_loader_stop(train_L);
        stop = 1;
        break;
      }
    }
    double t_train = now_s() - t0;
    train_time += t_train;
    if (show_bar) fprintf(stderr, "\r%*s\r", 100, "");

    if ((rc = watched_barrier(ctl, gstep, err)) != 0) goto fail_local;
    double v[3] = {s.loss_sum, s.correct, s.count}, g[3];
    MPI_Allreduce(v, g, 3, MPI_DOUBLE, MPI_SUM, comm);
    res->train_loss = g[2] > 0 ? g[0] / g[2] : 0;
    res->train_acc = g[2] > 0 ? g[1] / g[2] : 0;
    res->epochs = epoch + 1;
    res->steps = gstep;
    if (!isfinite(res->train_loss)) {
      rc = nn_error_set(err, NN_ENUMERIC,
                        "training diverged in epoch %d (loss is %g): lower optimizer.lr or check "
                        "the data", epoch + 1, res->train_loss);
      goto done; /* every rank saw the same reduced value */
    }
    nn_step_stats ts = {0};
    if (test_L) {
      rc = evaluate(&st, test_L, (uint64_t)job->train.seed, comm, ctl, gstep, &ts, err);
      if (rc) goto fail_local;
      res->test_loss = ts.count > 0 ? ts.loss_sum / ts.count : 0;
      res->test_acc = ts.count > 0 ? ts.correct / ts.count : 0;
    }
    if (lead) {
      double elapsed = now_s() - t_start;
      double sps = t_train > 0 ? g[2] / t_train : 0;
      double per_epoch = elapsed / (epoch + 1);
      char el[32], eta[32];
      fmt_duration(elapsed, el, sizeof el);
      fmt_duration(stop ? 0 : per_epoch * (epochs - epoch - 1), eta, sizeof eta);
      if (!opts->quiet) {
        fprintf(out, "epoch %*d/%d  loss %.4f  acc %6.2f%%", epochs >= 10 ? 2 : 1, epoch + 1,
                epochs, res->train_loss, 100 * res->train_acc);
        if (test_L)
          fprintf(out, "  test_loss %.4f  test_acc %6.2f%%", res->test_loss, 100 * res->test_acc);
        fprintf(out, "  %.0f samples/s  elapsed %s  ETA %s\n", sps, el, eta);
        fflush(out);
      }
      char rec[1024];
      int k = snprintf(rec, sizeof rec,
                       "\"epoch\": %d, \"step\": %lld, \"lr\": %.9g, \"loss\": %.9g, "
                       "\"accuracy\": %.9g, \"samples_per_s\": %.1f, \"epoch_s\": %.3f, "
                       "\"elapsed_s\": %.3f",
                       epoch + 1, (long long)gstep, lr, res->train_loss, res->train_acc, sps,
                       t_train, elapsed);
      if (test_L && k > 0 && k < (int)sizeof rec)
        snprintf(rec + k, sizeof rec - (size_t)k, ", \"test_loss\": %.9g, \"test_accuracy\": %.9g",
                 res->test_loss, res->test_acc);
      rc = nn_metrics_write(&log, rec, err);
      if (rc) goto fail_local;
    }
  }
  res->seconds = now_s() - t_start;
  res->samples_per_s = train_time > 0 ? train_samples / train_time : 0;
  if (lead && !opts->quiet && test_L)
    fprintf(out, "test accuracy: %.2f%% (%lld samples), test loss %.4f\n", 100 * res->test_acc,
            (long long)nn_dataset_get_info(test_ds)->n, res->test_loss);
  if (lead && opts->dump_params) {
    FILE *f = fopen(opts->dump_params, "wb");
    if (!f || fwrite(model.params, sizeof(float), model.nparams, f) != model.nparams ||
        fclose(f) != 0) {
      rc = nn_error_at(err, NN_EIO, opts->dump_params, 0, 0, "cannot write parameters");
      goto fail_local;
    }
  }
  goto done;

fail_local:
  if (err->rank < 0) err->rank = rank;
  res->local_error = 1;
done:
  nn_metrics_close(&log);
  if (have_stepper) nn_stepper_free(&st);
  nn_gradsync_free(sync);
  nn_ring_free(ctl);
  if (have_optim) nn_optim_free(&optim);
  if (have_model) nn_model_free(&model);
  nn_loader_free(train_L);
  nn_loader_free(test_L);
  nn_dataset_close(train_ds);
  nn_dataset_close(test_ds);
  return rc;
}
