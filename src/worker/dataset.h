/* dataset.h: HDF5 shard files: the on-disk format, a writer, and the reader
 * the training pipeline uses.
 *
 * Shard format, version 1 (docs/data-format.md is the user-facing copy):
 *   /features   [N, d1, ..., dk]  uint8 or float32, chunked by rows, deflate
 *   /labels     [N]               int32 class ids (classification), or
 *   /targets    [N, T]            float32 regression targets (num_classes = 0)
 *   root attributes:
 *     format         "nntrain-shard"      version  int32 1
 *     sample_shape   int32[k]             num_classes  int32 (0: regression)
 *     feature_scale  float64: feature value = stored value * feature_scale
 *     mean, std      float64[C]: per-channel statistics of the (scaled)
 *                    features over the whole training split; C = d1 for
 *                    3-d samples [C, H, W], else the feature count
 *     split          "train" | "test" | ...   source  free text
 *     shard_index, shard_count   int32
 *
 * A set of shards (a glob) forms one dataset; the reader checks that all
 * shards agree on shapes, types, class count and statistics, and numbers the
 * samples globally in sorted-file order. */
#ifndef NN_WORKER_DATASET_H
#define NN_WORKER_DATASET_H

#include <stdint.h>

#include "core/err.h"
#include "core/layer.h"

#define NN_SHARD_MAX_CHANNELS 4096

typedef enum nn_feature_type { NN_FEAT_U8 = 0, NN_FEAT_F32 = 1 } nn_feature_type;

/* What describes a dataset (all shards agree on it). */
typedef struct nn_dataset_info {
  int64_t n;                 /* samples over all shards */
  nn_shape sample;           /* per-sample feature shape */
  nn_feature_type ftype;     /* stored feature type */
  int num_classes;           /* > 0: /labels; 0: /targets */
  int target_dim;            /* T for regression, 0 for classification */
  double feature_scale;
  int channels;              /* entries in mean/std */
  double mean[NN_SHARD_MAX_CHANNELS];
  double std[NN_SHARD_MAX_CHANNELS];
  int nfiles;
} nn_dataset_info;

/* ---- writing ------------------------------------------------------------ */

typedef struct nn_shard_writer nn_shard_writer;

/* Metadata for a new shard. mean/std have `channels` entries. */
typedef struct nn_shard_meta {
  nn_shape sample;
  nn_feature_type ftype;
  int num_classes;
  int target_dim;
  double feature_scale;
  int channels;
  const double *mean, *std;
  const char *split;
  const char *source;
  int shard_index, shard_count;
} nn_shard_meta;

/* Create `path` (written as path.tmp, renamed on close). */
int nn_shard_create(nn_shard_writer **w, const char *path, const nn_shard_meta *meta,
                    nn_error *err);
/* Append n samples: features n*count(sample) of ftype; labels [n] (classes)
 * or targets [n*T] (regression), the other NULL. */
int nn_shard_append(nn_shard_writer *w, const void *features, const int32_t *labels,
                    const float *targets, int64_t n, nn_error *err);
/* Flush, close, rename into place. Frees w, also on error. */
int nn_shard_close(nn_shard_writer *w, nn_error *err);
/* Drop an unfinished shard (removes the temporary file). Frees w. */
void nn_shard_abort(nn_shard_writer *w);

/* ---- reading ------------------------------------------------------------ */

typedef struct nn_dataset nn_dataset;

typedef struct nn_dataset_opts {
  int cache;            /* 1: load everything into memory at open */
  size_t chunk_cache;   /* bytes of HDF5 chunk cache per shard (0: default 32 MiB) */
} nn_dataset_opts;

/* Open every file matching `pattern` (a glob; a plain path works too).
 * Errors (NN_EDATA / NN_ENOTFOUND / NN_EIO) name the file and what is wrong:
 * no match, not HDF5, truncated, missing dataset or attribute, mismatched
 * shapes between shards. opts may be NULL. */
int nn_dataset_open(nn_dataset **ds, const char *pattern, const nn_dataset_opts *opts,
                    nn_error *err);
const nn_dataset_info *nn_dataset_get_info(const nn_dataset *ds);
/* Read samples idx[0..n) (global indices, any order, repeats allowed) into
 * x [n, count(sample)] as float (stored value * feature_scale, NOT normalized),
 * and labels [n] or targets [n, T] (either may be NULL). Not thread-safe:
 * one thread reads a dataset at a time. */
int nn_dataset_read(nn_dataset *ds, const int64_t *idx, int n, float *x, int32_t *labels,
                    float *targets, nn_error *err);
void nn_dataset_close(nn_dataset *ds);

#endif
