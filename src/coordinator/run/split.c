/* split.c: opening and splitting a run's data (see split.h). */
#include "coordinator/run/split.h"
#include "core/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "worker/agree.h"
#include "worker/collective.h"

int nn_split_carve(int64_t n, uint64_t seed, uint32_t which, int64_t lo, int64_t hi,
                   int64_t **train, int64_t *ntrain, int64_t **val, int64_t *nval,
                   nn_error *err) {
  int64_t *perm = nn_malloc((size_t)n * sizeof *perm);
  char *is_val = nn_calloc((size_t)n, 1);
  *train = nn_malloc((size_t)(n - (hi - lo) + 1) * sizeof **train);
  *val = nn_malloc((size_t)(hi - lo + 1) * sizeof **val);
  if (!perm || !is_val || !*train || !*val) {
    free(perm);
    free(is_val);
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  /* A permutation keyed apart from the epoch shuffles: purpose SPLIT. */
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_SPLIT, which, 0, 0);
  for (int64_t i = n - 1; i > 0; i--) {
    uint64_t top = nn_rng_u32(&r); /* two statements: the order of the draws is fixed */
    uint64_t low = nn_rng_u32(&r);
    int64_t j = (int64_t)((top << 32 | low) % (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (int64_t i = lo; i < hi; i++) is_val[perm[i]] = 1;
  *ntrain = *nval = 0;
  for (int64_t i = 0; i < n; i++) {
    if (is_val[i]) (*val)[(*nval)++] = i;
    else (*train)[(*ntrain)++] = i;
  }
  free(perm);
  free(is_val);
  return 0;
}

static int same_data_kind(const nn_dataset_info *a, const nn_dataset_info *b, const char *what,
                          const char *glob, nn_error *err) {
  char sa[64], sb[64];
  if (!nn_shape_equal(&a->sample, &b->sample) || a->num_classes != b->num_classes ||
      a->target_dim != b->target_dim)
    return nn_error_at(err, NN_EDATA, glob, 0, 0,
                       "%s data (sample %s, %d classes) does not match the training data "
                       "(sample %s, %d classes)", what,
                       nn_shape_str(&b->sample, sb, sizeof sb), b->num_classes,
                       nn_shape_str(&a->sample, sa, sizeof sa), a->num_classes);
  if (a->multilabel != b->multilabel)
    return nn_error_at(err, NN_EDATA, glob, 0, 0, "%s data %s multi-label (attribute "
                       "multi_label) but the training data %s", what,
                       b->multilabel ? "is" : "is not", a->multilabel ? "is" : "is not");
  return 0;
}

/* Carve the validation part of data.train (a split or a k-fold part). */
static int carve_validation(nn_run_data *d, const nn_job *job, const nn_split_opts *so,
                            nn_error *err) {
  int64_t n = nn_dataset_get_info(d->train_ds)->n, lo, hi;
  uint32_t which;
  if (so->kfold > 1) {
    lo = n * so->fold / so->kfold;
    hi = n * (so->fold + 1) / so->kfold;
    which = 1000u + (uint32_t)so->repeat;
  } else {
    lo = 0;
    hi = (int64_t)llround((double)n * job->data.validation_split);
    which = 0;
  }
  d->val_ds = d->train_ds;
  d->own_val_ds = 0;
  if (hi - lo < 1 || n - (hi - lo) < 1)
    return nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                       "%lld samples cannot be split into training and validation sets",
                       (long long)n);
  return nn_split_carve(n, (uint64_t)job->train.seed, which, lo, hi, &d->train_idx, &d->ntrain,
                        &d->val_idx, &d->nval, err);
}

/* The global batch against the ranks and the training samples. */
static int check_batch(const nn_run_data *d, const nn_job *job, int N, nn_error *err) {
  int64_t ntr = d->ntrain;
  if (job->train.batch_size % N != 0)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                       "train.batch_size = %d is the GLOBAL batch and must divide evenly over "
                       "the %d ranks (try %d)", job->train.batch_size, N,
                       (job->train.batch_size + N - 1) / N * N);
  if (ntr < N)
    return nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                       "%lld training samples cannot be split over %d ranks", (long long)ntr, N);
  if (ntr < job->train.batch_size && job->train.drop_last)
    return nn_error_at(err, NN_EDATA, job->data.train, 0, 0,
                       "train.drop_last is set and the %lld training samples are fewer than "
                       "one batch (%d)", (long long)ntr, job->train.batch_size);
  const int64_t k = job->train.accumulate, step = nn_run_optimizer_batch(job);
  if (k > 1 && step > ntr) { /* a job error, at the key (job.h nn_job_key_pos) */
    int line, col;
    nn_job_key_pos(job, "train", "accumulate", &line, &col);
    nn_error_at(err, NN_ESCHEMA, job->source, line, col,
                "train.accumulate = %lld makes optimizer steps of %lld x %d = %lld samples, "
                "more than the %lld training samples%s (at most %lld)", (long long)k,
                (long long)k, job->train.batch_size, (long long)step, (long long)ntr,
                d->train_idx ? " left after the validation part" : "",
                (long long)(ntr / job->train.batch_size > 0 ? ntr / job->train.batch_size : 1));
    snprintf(err->where, sizeof err->where, "train.accumulate");
    return NN_ESCHEMA;
  }
  return 0;
}

int64_t nn_run_optimizer_batch(const nn_job *job) {
  return (int64_t)job->train.batch_size * (job->train.accumulate > 1 ? job->train.accumulate : 1);
}

static int open_all(nn_run_data *d, const nn_job *job, const nn_split_opts *so, int N,
                    nn_error *err) {
  nn_dataset_opts dopts = {.cache = job->data.cache, .chunk_cache = 0};
  int rc = nn_dataset_open(&d->train_ds, job->data.train, &dopts, err);
  if (rc) return rc;
  const nn_dataset_info *tri = nn_dataset_get_info(d->train_ds);
  d->ntrain = tri->n;
  if (job->data.test[0]) {
    rc = nn_dataset_open(&d->test_ds, job->data.test, &dopts, err);
    if (!rc) rc = same_data_kind(tri, nn_dataset_get_info(d->test_ds), "test", job->data.test, err);
    if (rc) return rc;
  }
  int splits = (job->data.validation[0] != 0) + (job->data.validation_split > 0) + (so->kfold > 1);
  if (splits > 1)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                       "use one of data.validation, data.validation_split and --kfold");
  if (job->data.validation[0]) {
    rc = nn_dataset_open(&d->val_ds, job->data.validation, &dopts, err);
    d->own_val_ds = 1;
    if (!rc) rc = same_data_kind(tri, nn_dataset_get_info(d->val_ds), "validation",
                                 job->data.validation, err);
    if (rc) return rc;
  }
  if (job->data.validation_split > 0 || so->kfold > 1) {
    if ((rc = carve_validation(d, job, so, err)) != 0) return rc;
  }
  return check_batch(d, job, N, err);
}

int nn_run_data_open(nn_run_data *d, const nn_job *job, const nn_split_opts *so, MPI_Comm comm,
                     nn_error *err) {
  memset(d, 0, sizeof *d);
  int N = 1;
  NN_MPI_RETURN(err, MPI_Comm_size(comm, &N));
  return nn_agree(comm, open_all(d, job, so, N, err), err);
}

int nn_run_data_loaders(nn_run_data *d, const nn_job *job, int rank, int nranks, nn_error *err) {
  const nn_dataset_info *tri = nn_dataset_get_info(d->train_ds);
  if (nn_augment_check(&job->augment, &tri->sample, err) != 0) { /* a job error: name the file */
    nn_error e = *err;
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "%s", e.msg);
  }
  if (tri->stream && d->train_idx)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "a token stream (%s) cannot be cut "
                       "by data.validation_split or k-fold: `nntrain prepare text` writes a "
                       "validation split, name it in data.validation", nn_dataset_file(d->train_ds, 0));
  /* the training loader's batches are optimizer steps' (train.accumulate
   * micro-batches each, worker/step.h); evaluation reads batch_size */
  nn_loader_cfg lc = {.seed = (uint64_t)job->train.seed, .rank = rank, .nranks = nranks,
                      .batch_size = (int)nn_run_optimizer_batch(job),
                      .drop_last = job->train.drop_last, .shuffle = 1,
                      .prefetch = job->data.prefetch > 0 ? job->data.prefetch : 2,
                      .normalize = job->data.normalize, .subset = d->train_idx,
                      .nsubset = d->train_idx ? d->ntrain : 0, .augment = &job->augment,
                      .bptt = job->train.bptt};
  int rc = nn_loader_create(&d->train_L, d->train_ds, &lc, err);
  nn_loader_cfg ec = lc;
  ec.batch_size = job->train.batch_size;
  ec.shuffle = 0;
  ec.drop_last = 0;
  ec.subset = NULL;
  ec.nsubset = 0;
  ec.augment = NULL;
  if (!rc && d->test_ds) rc = nn_loader_create(&d->test_L, d->test_ds, &ec, err);
  if (!rc && d->val_ds) {
    ec.subset = d->val_idx;
    ec.nsubset = d->nval;
    rc = nn_loader_create(&d->val_L, d->val_ds, &ec, err);
  }
  return rc;
}

void nn_run_data_close(nn_run_data *d) {
  nn_loader_free(d->train_L);
  nn_loader_free(d->val_L);
  nn_loader_free(d->test_L);
  nn_dataset_close(d->train_ds);
  if (d->own_val_ds) nn_dataset_close(d->val_ds);
  nn_dataset_close(d->test_ds);
  free(d->train_idx);
  free(d->val_idx);
  memset(d, 0, sizeof *d);
}
