/* split.h: a run's data: the training, validation and test sets opened and
 * checked against each other, the validation split or k-fold part carved
 * from the job seed, and one loader for each (this rank's slices).
 *
 * Every rank opens the data itself (HDF5 metadata is small) and all ranks
 * agree on the outcome, so a data error fails once, cleanly. */
#ifndef NN_COORDINATOR_RUN_SPLIT_H
#define NN_COORDINATOR_RUN_SPLIT_H

#include <mpi.h>

#include "coordinator/job.h"
#include "worker/dataset.h"
#include "worker/loader.h"

typedef struct nn_run_data {
  nn_dataset *train_ds, *val_ds, *test_ds; /* val_ds may be train_ds (a split) */
  int own_val_ds;
  int64_t *train_idx, *val_idx;            /* subsets of train_ds, or NULL */
  int64_t ntrain, nval;                    /* training samples (after a split); validation */
  nn_loader *train_L, *val_L, *test_L;     /* val_L, test_L may be NULL */
} nn_run_data;

/* Which part of data.train is held out: none, the job's validation_split, or
 * fold `fold` of `kfold` (repeat `repeat` draws its own folds). */
typedef struct nn_split_opts {
  int kfold, fold, repeat;
} nn_split_opts;

/* Open and check every data set of the job, carve the validation part, check
 * the batch against the ranks. Collective on comm (all ranks agree). */
int nn_run_data_open(nn_run_data *d, const nn_job *job, const nn_split_opts *so, MPI_Comm comm,
                     nn_error *err);
/* Samples of one optimizer step: train.batch_size x train.accumulate (the
 * training loader's global batch; checked against the data and <= 2^24). */
int64_t nn_run_optimizer_batch(const nn_job *job);
/* The loaders: training (shuffled, augmented; batches of
 * nn_run_optimizer_batch) and evaluation ones (batches of train.batch_size). */
int nn_run_data_loaders(nn_run_data *d, const nn_job *job, int rank, int nranks, nn_error *err);
void nn_run_data_close(nn_run_data *d);

/* Positions [lo, hi) of the permutation drawn from (seed, NN_RNG_SPLIT,
 * which) of n samples are the validation part, the rest training; both
 * returned sorted (malloc'ed). */
int nn_split_carve(int64_t n, uint64_t seed, uint32_t which, int64_t lo, int64_t hi,
                   int64_t **train, int64_t *ntrain, int64_t **val, int64_t *nval,
                   nn_error *err);

#endif
