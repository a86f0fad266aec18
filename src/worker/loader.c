/* loader.c: per-rank batch pipeline with a read-ahead thread (see loader.h).
 *
 * The thread and the step loop share prefetch+1 slots. The thread fills slot
 * (k % nslots) with batch k of the epoch while k < next_take + prefetch; the
 * step loop takes them in order and holds batch k until it asks for k+1, so
 * the slot it holds is never refilled under it. A generation counter and a
 * busy flag let nn_loader_start/stop abandon an epoch without racing with a
 * read in flight.
 *
 * Augmentation (training loaders whose cfg.augment enables a transform) runs
 * in fill() on the thread, AFTER normalization, so the 0 that geometric
 * transforms and erasing fill in means "the channel mean" and noise_std is
 * in units of the channel's standard deviation. Each sample is keyed by
 * (seed, epoch, its global index from order[]), never by batch or rank. */
#include "worker/loader.h"
#include "core/checked.h"
#include "core/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

typedef struct slot {
  nn_batch b;
  float *x;
  int32_t *labels;
  float *targets;
  int32_t *lengths;   /* [max_slice] (sequence data) */
  int32_t *tlabels;   /* [max_slice, bptt] (token streams) */
  int64_t *idx;       /* [max_slice] global indices read */
} slot;

struct nn_loader {
  nn_dataset *ds;
  nn_loader_cfg cfg;
  nn_dataset_info info;
  size_t feat;           /* floats per sample */
  int64_t n;             /* samples per epoch (the subset's size, or info.n) */
  int64_t steps;         /* global batches per epoch */
  int max_slice;
  int channels;          /* normalization channels */
  size_t per_channel;    /* floats per channel within a sample */
  float *nmean, *ninv;   /* [channels] */
  int augment;           /* 1: aug is set up and applied to every batch */
  nn_augmenter aug;      /* owns one scratch image [feat] */
  int64_t *order;        /* [info.n] global order of this epoch */
  int32_t *stream;       /* token streams: the whole stream [stream_len] */
  int64_t stream_len;    /* its tokens */
  int64_t stream_each;   /* tokens per stream (Ls) */

  int depth;             /* batches read ahead */
  int nslots;            /* depth + 1: one more for the batch the step loop holds */
  slot *slots;

  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int running;           /* thread started */
  int quit;
  uint64_t gen;          /* epoch generation; bumps on start/stop */
  int active;            /* the thread has an epoch to read */
  int busy;              /* the thread is inside fill() */
  int epoch;
  int64_t next_fill;     /* next step the thread reads */
  int64_t next_take;     /* next step the step loop takes */
  int err_code;          /* first read error of this generation */
  nn_error err;
};

int64_t nn_loader_steps(const nn_loader *L) { return L->steps; }
const nn_dataset_info *nn_loader_info(const nn_loader *L) { return &L->info; }
int nn_loader_max_slice(const nn_loader *L) { return L->max_slice; }

/* Slice [lo, hi) of a global batch of b samples for rank r of N. */
static void slice_of(int b, int r, int N, int *lo, int *hi) {
  *lo = (int)((int64_t)b * r / N);
  *hi = (int)((int64_t)b * (r + 1) / N);
}

/* Standardize x [n, feat] in place per channel. */
static void normalize(const nn_loader *L, float *x, int n) {
  for (int i = 0; i < n; i++) {
    float *s = x + (size_t)i * L->feat;
    for (int c = 0; c < L->channels; c++) {
      const float m = L->nmean[c], k = L->ninv[c];
      float *p = s + (size_t)c * L->per_channel;
      for (size_t j = 0; j < L->per_channel; j++) p[j] = (p[j] - m) * k;
    }
  }
}

/* Token streams: window `step` of this rank's streams into s. */
static void fill_window(nn_loader *L, slot *s, int64_t step) {
  const int B = L->cfg.batch_size, T = L->cfg.bptt;
  int lo, hi;
  slice_of(B, L->cfg.rank, L->cfg.nranks, &lo, &hi);
  for (int i = 0; i < hi - lo; i++) {
    const int32_t *src = L->stream + (int64_t)(lo + i) * L->stream_each + step * T;
    for (int t = 0; t < T; t++) {
      s->x[(size_t)i * (size_t)T + (size_t)t] = (float)src[t];
      s->tlabels[(size_t)i * (size_t)T + (size_t)t] = src[t + 1];
    }
    s->lengths[i] = T;
  }
  s->b.step = step;
  s->b.n = hi - lo;
  s->b.global_n = B;
  s->b.sample0 = lo;
  s->b.x = s->x;
  s->b.labels = NULL;
  s->b.targets = NULL;
  s->b.lengths = s->lengths;
  s->b.tlabels = s->tlabels;
  s->b.carry_in = step > 0;
}

/* Token streams: the whole stream of ds into L->stream, checked (ids were
 * checked by the reader; every row but the last is full). */
static int load_stream(nn_loader *L, nn_error *err) {
  const int R = L->info.sample.dim[0];
  const int64_t rows = L->info.n;
  const int32_t *len = nn_dataset_lengths(L->ds);
  L->stream_len = 0;
  for (int64_t r = 0; r < rows; r++) {
    if (r + 1 < rows && len[r] != R)
      return nn_error_at(err, NN_EDATA, nn_dataset_file(L->ds, 0), 0, 0, "/lengths row %lld is "
                         "%d: every row of a stream but the last is full (%d)", (long long)r,
                         (int)len[r], R);
    L->stream_len += len[r];
  }
  L->stream = nn_malloc(sizeof *L->stream * (size_t)(L->stream_len + 1));
  float *row = nn_malloc(sizeof *row * (size_t)R * 256);
  int64_t *idx = nn_malloc(sizeof *idx * 256);
  int rc = !L->stream || !row || !idx ? nn_error_set(err, NN_ENOMEM, "out of memory for a "
                                                     "token stream of %lld tokens",
                                                     (long long)L->stream_len) : 0;
  int64_t at = 0;
  for (int64_t r0 = 0; r0 < rows && !rc; r0 += 256) {
    int n = (int)(rows - r0 < 256 ? rows - r0 : 256);
    for (int i = 0; i < n; i++) idx[i] = r0 + i;
    if ((rc = nn_dataset_read(L->ds, idx, n, row, NULL, NULL, err))) break;
    for (int i = 0; i < n; i++)
      for (int t = 0; t < len[r0 + i]; t++) L->stream[at++] = (int32_t)row[(size_t)i * (size_t)R + (size_t)t];
  }
  free(row);
  free(idx);
  return rc;
}

/* Read batch `step` into s (called on the thread without the lock). */
static int fill(nn_loader *L, slot *s, int64_t step, nn_error *err) {
  if (L->stream) {
    fill_window(L, s, step);
    return 0;
  }
  const int64_t B = L->cfg.batch_size;
  int64_t first = step * B;
  int gn = (int)(L->n - first < B ? L->n - first : B);
  int lo, hi;
  slice_of(gn, L->cfg.rank, L->cfg.nranks, &lo, &hi);
  int n = hi - lo;
  for (int i = 0; i < n; i++) s->idx[i] = L->order[first + lo + i];
  if (n > 0) {
    int cls = L->info.num_classes > 0;
    int32_t *lab = L->info.token_labels ? s->tlabels : s->labels; /* [n, T] or [n] */
    int rc = nn_dataset_read(L->ds, s->idx, n, s->x, cls ? lab : NULL, cls ? NULL : s->targets,
                             err);
    if (rc) return rc;
    if (L->cfg.normalize) normalize(L, s->x, n);
    if (L->augment) nn_augment_batch(&L->aug, (uint32_t)L->epoch, s->idx, n, s->x);
  }
  s->b.step = step;
  s->b.n = n;
  s->b.global_n = gn;
  s->b.sample0 = first + lo;
  s->b.x = s->x;
  s->b.labels = L->info.num_classes > 0 && !L->info.token_labels ? s->labels : NULL;
  s->b.targets = L->info.num_classes > 0 ? NULL : s->targets;
  s->b.tlabels = L->info.token_labels ? s->tlabels : NULL; /* a class per timestep */
  s->b.carry_in = 0;
  const int32_t *len = nn_dataset_lengths(L->ds);
  for (int i = 0; len && i < n; i++) s->lengths[i] = len[s->idx[i]];
  s->b.lengths = len ? s->lengths : NULL;
  return 0;
}

static void *loader_main(void *arg) {
  nn_loader *L = arg;
  pthread_mutex_lock(&L->mu);
  for (;;) {
    while (!L->quit &&
           (!L->active || L->next_fill >= L->steps || L->err_code ||
            L->next_fill - L->next_take >= L->depth))
      pthread_cond_wait(&L->cv, &L->mu);
    if (L->quit) break;
    uint64_t gen = L->gen;
    int64_t step = L->next_fill;
    slot *s = &L->slots[step % L->nslots];
    L->busy = 1;
    pthread_mutex_unlock(&L->mu);
    nn_error e;
    nn_error_clear(&e);
    int rc = fill(L, s, step, &e);
    pthread_mutex_lock(&L->mu);
    L->busy = 0;
    if (gen == L->gen) { /* else the epoch was abandoned meanwhile: drop it */
      if (rc) {
        L->err_code = rc;
        L->err = e;
      } else {
        L->next_fill++;
      }
    }
    pthread_cond_broadcast(&L->cv);
  }
  pthread_mutex_unlock(&L->mu);
  return NULL;
}

int nn_loader_create(nn_loader **out, nn_dataset *ds, const nn_loader_cfg *cfg,
                     nn_error *err) {
  *out = NULL;
  int rc = 0;
  nn_loader *L = nn_calloc(1, sizeof *L);
  if (!L) return nn_error_set(err, NN_ENOMEM, "out of memory");
  L->ds = ds;
  L->cfg = *cfg;
  L->info = *nn_dataset_get_info(ds);
  L->feat = nn_shape_count(&L->info.sample);
  if (cfg->batch_size < 1 || cfg->nranks < 1 || cfg->rank < 0 || cfg->rank >= cfg->nranks) {
    rc = nn_error_set(err, NN_EINVAL, "loader: bad batch size or rank");
    goto fail;
  }
  if ((cfg->bptt > 0) != (L->info.stream != 0)) {
    rc = nn_error_at(err, NN_ESCHEMA, nn_dataset_file(ds, 0), 0, 0, cfg->bptt > 0
                     ? "a language model (train.bptt) reads one token stream (`nntrain prepare "
                       "text`, shard attribute stream = 1); this data is not one"
                     : "the data is one token stream: it needs train.bptt (a language model)");
    goto fail;
  }
  if (cfg->bptt > 0) { /* token streams: the whole stream in memory, windows */
    if (cfg->subset) {
      rc = nn_error_set(err, NN_EINVAL, "loader: a token stream has no subsets");
      goto fail;
    }
    if ((rc = load_stream(L, err))) goto fail;
    L->feat = (size_t)cfg->bptt;
    L->stream_each = L->stream_len / cfg->batch_size;
    L->n = cfg->batch_size;
    L->steps = L->stream_each > 0 ? (L->stream_each - 1) / cfg->bptt : 0;
    if (L->steps < 1) {
      rc = nn_error_at(err, NN_EDATA, nn_dataset_file(ds, 0), 0, 0, "%lld tokens make %d streams "
                       "of %lld: too short for one window of train.bptt = %d", (long long)
                       L->stream_len, cfg->batch_size, (long long)L->stream_each, cfg->bptt);
      goto fail;
    }
  }
  if (!L->stream) L->n = cfg->subset ? cfg->nsubset : L->info.n;
  if (L->n < 1) {
    rc = nn_error_set(err, NN_EDATA, "the data set has no samples");
    goto fail;
  }
  for (int64_t i = 0; cfg->subset && i < cfg->nsubset; i++)
    if (cfg->subset[i] < 0 || cfg->subset[i] >= L->info.n) {
      rc = nn_error_set(err, NN_EINVAL, "loader: subset index %lld out of range",
                        (long long)cfg->subset[i]);
      goto fail;
    }
  if (!L->stream) L->steps = L->n / cfg->batch_size;
  if (!L->stream && !cfg->drop_last && L->n % cfg->batch_size) L->steps++;
  if (L->steps < 1) {
    rc = nn_error_set(err, NN_EDATA,
                      "drop_last is set and the data set (%lld samples) is smaller than one "
                      "batch (%d)", (long long)L->n, cfg->batch_size);
    goto fail;
  }
  int lo, hi;
  slice_of(cfg->batch_size, cfg->rank, cfg->nranks, &lo, &hi);
  L->max_slice = (int)(((int64_t)cfg->batch_size + cfg->nranks - 1) / cfg->nranks);

  /* Normalization: channel c covers a contiguous run of the sample. */
  L->channels = L->info.channels > 0 ? L->info.channels : 1;
  if (L->feat % (size_t)L->channels) L->channels = 1;
  L->per_channel = L->feat / (size_t)L->channels;
  L->nmean = nn_calloc((size_t)L->channels, sizeof *L->nmean);
  L->ninv = nn_calloc((size_t)L->channels, sizeof *L->ninv);
  L->order = nn_malloc((size_t)L->n * sizeof *L->order);
  L->depth = cfg->prefetch > 0 ? cfg->prefetch : 1;
  L->nslots = L->depth + 1;
  L->slots = nn_calloc((size_t)L->nslots, sizeof *L->slots);
  if (!L->nmean || !L->ninv || !L->order || !L->slots) goto oom;
  for (int c = 0; c < L->channels; c++) {
    double m = L->info.channels > 0 ? L->info.mean[c] : 0.0;
    double sd = L->info.channels > 0 ? L->info.std[c] : 1.0;
    L->nmean[c] = (float)m;
    L->ninv[c] = (float)(sd > 1e-12 ? 1.0 / sd : 1.0);
  }
  if (!L->stream && cfg->augment && nn_augment_enabled(cfg->augment)) {
    rc = nn_augmenter_init(&L->aug, cfg->augment, cfg->seed, &L->info.sample, err);
    if (rc) goto fail;
    L->augment = 1;
  }
  size_t tdim = L->info.target_dim > 0 ? (size_t)L->info.target_dim : 1;
  size_t xbytes = 0;
  if (nn_bytes_of2((size_t)L->max_slice, L->feat, sizeof(float), &xbytes) ||
      nn_add_size(xbytes, 1, &xbytes))
    goto oom;
  for (int i = 0; i < L->nslots; i++) {
    slot *s = &L->slots[i];
    s->x = nn_malloc(xbytes);
    s->labels = nn_malloc((size_t)L->max_slice * sizeof(int32_t) + 1);
    s->targets = nn_malloc((size_t)L->max_slice * tdim * sizeof(float) + 1);
    s->idx = nn_malloc((size_t)L->max_slice * sizeof(int64_t) + 1);
    s->lengths = nn_malloc((size_t)L->max_slice * sizeof(int32_t) + 1);
    if (L->stream || L->info.token_labels)
      s->tlabels = nn_malloc((size_t)L->max_slice * L->feat * sizeof(int32_t) + 1);
    if (!s->x || !s->labels || !s->targets || !s->idx || !s->lengths ||
        ((L->stream || L->info.token_labels) && !s->tlabels))
      goto oom;
  }
  pthread_mutex_init(&L->mu, NULL);
  pthread_cond_init(&L->cv, NULL);
  if (pthread_create(&L->thread, NULL, loader_main, L) != 0) {
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    rc = nn_error_set(err, NN_EINTERNAL, "cannot start the data loader thread");
    goto fail;
  }
  L->running = 1;
  *out = L;
  return 0;
oom:
  rc = nn_error_at(err, NN_ENOMEM, nn_dataset_file(ds, 0), 0, 0,
                   "out of memory allocating %d prefetch batches of %d samples of %zu floats "
                   "(%.1f MB each)", L->depth, L->max_slice, L->feat,
                   (double)L->max_slice * (double)L->feat * 4.0 / 1e6);
fail:
  nn_loader_free(L);
  return rc;
}

void nn_loader_free(nn_loader *L) {
  if (!L) return;
  if (L->running) {
    pthread_mutex_lock(&L->mu);
    L->quit = 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(L->thread, NULL);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
  }
  for (int i = 0; L->slots && i < L->nslots; i++) {
    free(L->slots[i].x);
    free(L->slots[i].labels);
    free(L->slots[i].targets);
    free(L->slots[i].lengths);
    free(L->slots[i].tlabels);
    free(L->slots[i].idx);
  }
  free(L->slots);
  nn_augmenter_free(&L->aug);
  free(L->order);
  free(L->stream);
  free(L->nmean);
  free(L->ninv);
  free(L);
}

/* Abandon the current epoch and wait until the thread is out of fill(), so
 * order[] and the slots may be rewritten. Called with the lock held. */
static void abandon(nn_loader *L) {
  L->gen++;
  L->active = 0;
  while (L->busy) pthread_cond_wait(&L->cv, &L->mu);
}

int nn_loader_start(nn_loader *L, int epoch, int64_t first_step, nn_error *err) {
  if (first_step < 0 || first_step > L->steps)
    return nn_error_set(err, NN_EINVAL, "loader: step %lld outside the epoch",
                        (long long)first_step);
  pthread_mutex_lock(&L->mu);
  abandon(L);
  int64_t n = L->n;
  if (L->cfg.shuffle)
    nn_rng_permutation(L->cfg.seed, (uint32_t)epoch, L->order, n);
  else
    for (int64_t i = 0; i < n; i++) L->order[i] = i;
  if (L->cfg.subset)
    for (int64_t i = 0; i < n; i++) L->order[i] = L->cfg.subset[L->order[i]];
  L->epoch = epoch;
  L->next_fill = first_step;
  L->next_take = first_step;
  L->err_code = 0;
  nn_error_clear(&L->err);
  L->active = 1;
  pthread_cond_broadcast(&L->cv);
  pthread_mutex_unlock(&L->mu);
  return 0;
}

int nn_loader_next(nn_loader *L, const nn_batch **b, nn_error *err) {
  *b = NULL;
  pthread_mutex_lock(&L->mu);
  if (!L->active || L->next_take >= L->steps) {
    L->active = 0;
    pthread_mutex_unlock(&L->mu);
    return 0;
  }
  while (L->next_fill <= L->next_take && !L->err_code) pthread_cond_wait(&L->cv, &L->mu);
  if (L->next_fill <= L->next_take) {
    int rc = L->err_code;
    if (err) *err = L->err;
    L->active = 0;
    pthread_mutex_unlock(&L->mu);
    return rc;
  }
  slot *s = &L->slots[L->next_take % L->nslots];
  /* Taking step k frees the slot of step k-1 for the thread. */
  L->next_take++;
  pthread_cond_broadcast(&L->cv);
  pthread_mutex_unlock(&L->mu);
  *b = &s->b;
  return 0;
}

void nn_loader_stop(nn_loader *L) {
  pthread_mutex_lock(&L->mu);
  abandon(L);
  pthread_mutex_unlock(&L->mu);
}
