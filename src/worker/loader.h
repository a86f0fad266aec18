/* loader.h: the per-rank batch pipeline: global order, this rank's slice,
 * read ahead on a background thread.
 *
 * Every epoch has one global order of sample indices drawn from (seed, epoch)
 * (or the natural order when shuffle is off); it never depends on the number
 * of ranks. With a subset, the permutation is of positions in the subset. Global batch s holds order[s*B, s*B + B) (the last one may be
 * shorter unless drop_last). Rank r of N takes the contiguous slice
 * [r*b/N, (r+1)*b/N) of each global batch of b samples, so the same job on 1,
 * 2 or 4 ranks sees the same samples at the same steps. A slice may be empty
 * (a short final batch on many ranks); the rank still takes part in the step.
 *
 * Token streams (a stream shard, cfg.bptt > 0: language models, truncated
 * back-propagation through time): the whole stream of L tokens is read into
 * memory at creation and cut into batch_size STREAMS of Ls = L / batch_size
 * consecutive tokens (stream s starts at token s * Ls; the tail is dropped).
 * Global batch k is window k of every stream: inputs tokens [k*bptt,
 * (k+1)*bptt) of each stream, targets the tokens one further on (tlabels);
 * Ls - 1 tokens give (Ls - 1) / bptt windows per epoch, the same every epoch
 * (no shuffling: the order is the text's). Rank r takes streams
 * [r*B/N, (r+1)*B/N), the same streams every step, so a recurrent layer's
 * carried state (core/layer.h) stays with its stream; sample0 is the first
 * stream's index, and batch.carry_in is 0 at window 0 of an epoch and 1 after.
 *
 * A background thread reads and normalizes up to `prefetch` batches ahead of
 * the step loop. The loader owns the only handle to its dataset while an
 * epoch runs: nothing else may read that dataset until nn_loader_next has
 * returned the end of the epoch or nn_loader_stop was called. */
#ifndef NN_WORKER_LOADER_H
#define NN_WORKER_LOADER_H

#include <stdint.h>

#include "core/err.h"
#include "worker/augment.h"
#include "worker/dataset.h"

typedef struct nn_loader_cfg {
  uint64_t seed;
  int rank, nranks;
  int batch_size;     /* GLOBAL batch */
  int drop_last;      /* drop a final partial global batch */
  int shuffle;        /* 1: order from (seed, epoch); 0: natural order */
  int prefetch;       /* batches read ahead (>= 1) */
  int normalize;      /* standardize with the dataset's per-channel mean/std */
  const int64_t *subset; /* borrowed: the global indices this loader draws from (a
                            validation split or k-fold part), in a fixed order;
                            NULL: every sample of the data set */
  int64_t nsubset;
  const nn_augment_cfg *augment; /* borrowed; NULL or nothing enabled: no augmentation */
  int bptt;           /* > 0: the data is a token stream read in windows of bptt
                         tokens (see above); needs a stream shard */
} nn_loader_cfg;

/* One batch slice, valid until the next nn_loader_next call. */
typedef struct nn_batch {
  int64_t step;        /* index of the global batch within the epoch */
  int n;               /* samples in this rank's slice (may be 0) */
  int global_n;        /* samples in the global batch (all ranks) */
  int64_t sample0;     /* position of the slice's first sample in the epoch order */
  const float *x;      /* [n, sample] */
  const int32_t *labels;  /* [n] or NULL (regression) */
  const float *targets;   /* [n, T] or NULL (classification) */
  const int32_t *lengths; /* [n] valid timesteps (sequence data), or NULL */
  const int32_t *tlabels; /* token streams: [n, bptt] the next token of every input, or NULL */
  int carry_in;           /* token streams: 1 when the window continues the previous one
                             (recurrent layers start from their carried state) */
} nn_batch;

typedef struct nn_loader nn_loader;

/* The loader reads ds (borrowed: the caller closes it after nn_loader_free). */
int nn_loader_create(nn_loader **L, nn_dataset *ds, const nn_loader_cfg *cfg, nn_error *err);
void nn_loader_free(nn_loader *L);

/* The description of the loader's data set. */
const nn_dataset_info *nn_loader_info(const nn_loader *L);
/* Global batches per epoch, and the largest slice any rank gets. */
int64_t nn_loader_steps(const nn_loader *L);
int nn_loader_max_slice(const nn_loader *L);

/* Start reading epoch `epoch` from global batch `first_step` on. */
int nn_loader_start(nn_loader *L, int epoch, int64_t first_step, nn_error *err);
/* Next batch of the epoch: *b is set, or NULL after the last one. A read
 * error on the thread is returned here, with its message. */
int nn_loader_next(nn_loader *L, const nn_batch **b, nn_error *err);
/* Abandon the current epoch (waits for the thread to go idle). */
void nn_loader_stop(nn_loader *L);

#endif
