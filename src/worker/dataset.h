/* dataset.h: HDF5 shard files: the on-disk format, a writer, and the reader
 * the training pipeline uses.
 *
 * Shard format, version 1 (docs/data-format.md is the user-facing copy):
 *   /features   [N, d1, ..., dk]  uint8 or float32, chunked by rows, deflate
 *   /labels     [N]               int32 class ids (classification), or
 *   /targets    [N, T]            float32 regression targets (num_classes = 0)
 *   /labels     [N, T]            int32, sequence shards only: a class per timestep
 *                                 (taggers; entries past each length are ignored)
 *   /targets    [N, K]            float32 (or uint8) 0/1, multi-label shards (attribute
 *                                 multi_label = 1, num_classes 0): K labels per sample
 *   /lengths    [N]               int32, sequence shards only (attribute vocab_size):
 *                                 valid timesteps of each sample, in [1, T]
 * Sequence shards (docs/data-format.md#sequences): /features [N, T] int32 token
 *   ids in [0, vocab_size), id 0 the padding after each sample's length (every
 *   id from /lengths on must be 0); attribute vocab_size int32 in [2, 2^24]
 *   (ids are exact in float32); feature_scale 1, mean 0 and std 1 (no
 *   normalization: they are ids). Attribute stream = 1 (int32): the rows are
 *   consecutive pieces of one token stream (`nntrain prepare text`), every
 *   row full but the last, and there is no /labels or /targets (num_classes 0).
 *   root attributes:
 *     format         "nntrain-shard"      version  int32 1
 *     sample_shape   int32[k]             num_classes  int32 (0: regression)
 *     feature_scale  float64: feature value = stored value * feature_scale
 *     mean, std      float64[C]: per-channel statistics of the (scaled)
 *                    features over the whole training split; C = d1 for
 *                    3-d samples [C, H, W], else the feature count
 *     split          "train" | "test" | ...   source  free text
 *     shard_index, shard_count   int32
 *     num_samples    int64 N (written last, on close: a shard without it
 *                    was not finished)
 *   Strings are variable-length UTF-8; scalars are scalar attributes,
 *   sample_shape / mean / std 1-d arrays. /features is chunked by rows
 *   (up to 1024 rows, about 1 MiB per chunk) with shuffle + deflate level 4.
 *   std is the population standard deviation (ddof 0); a constant feature
 *   has std 0, which a normalizing reader must treat as 1.
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
#define NN_SHARD_FORMAT "nntrain-shard"
#define NN_SHARD_VERSION 1

typedef enum nn_feature_type {
  NN_FEAT_U8 = 0,
  NN_FEAT_F32 = 1,
  NN_FEAT_I32 = 2, /* token ids of a sequence shard (vocab_size > 0) */
} nn_feature_type;

#define NN_SHARD_MAX_VOCAB (1 << 24) /* token ids are exact in float32 below this */

/* What describes a dataset (all shards agree on it). */
typedef struct nn_dataset_info {
  int64_t n;                 /* samples over all shards */
  nn_shape sample;           /* per-sample feature shape */
  nn_feature_type ftype;     /* stored feature type */
  int num_classes;           /* > 0: /labels; 0: /targets */
  int target_dim;            /* T for regression, 0 for classification */
  double feature_scale;
  int vocab_size;            /* > 0: a sequence shard (int32 ids, /lengths) */
  int stream;                /* 1: one token stream in rows, no labels (attribute stream) */
  int token_labels;          /* 1: /labels is [N, T], a class per timestep (sequence
                                shards: taggers); labels past a sample's length are
                                not read */
  int multilabel;            /* 1 (attribute multi_label): /targets [N, K] are 0/1
                                labels, K = target_dim, num_classes 0 */
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
  int vocab_size;            /* > 0 with ftype NN_FEAT_I32: a sequence shard */
  int stream;                /* 1: rows are consecutive pieces of one token stream (a
                                sequence shard with no /labels or /targets: language
                                models predict the next token) */
  int token_labels;          /* 1 (a sequence shard with classes): labels [n, T], a class
                                per timestep; entries past each length are not checked */
  int multilabel;            /* 1: targets [n, K = target_dim] are 0/1 labels (attribute
                                multi_label; checked on append), num_classes 0 */
} nn_shard_meta;

/* Create `path` (written as path.tmp, renamed on close). */
int nn_shard_create(nn_shard_writer **w, const char *path, const nn_shard_meta *meta,
                    nn_error *err);
/* Append n samples: features n*count(sample) of ftype; labels [n] (classes)
 * or targets [n*T] (regression), the other NULL. */
int nn_shard_append(nn_shard_writer *w, const void *features, const int32_t *labels,
                    const float *targets, int64_t n, nn_error *err);
/* The same for a sequence shard: ids [n, T] int32 and their lengths [n]
 * (checked: lengths in [1, T], ids in [0, vocab_size), padding ids 0). */
int nn_shard_append_seq(nn_shard_writer *w, const int32_t *ids, const int32_t *lengths,
                        const int32_t *labels, const float *targets, int64_t n, nn_error *err);
/* Flush, close, rename into place. Frees w, also on error. */
int nn_shard_close(nn_shard_writer *w, nn_error *err);
/* Drop an unfinished shard (removes the temporary file). Frees w. */
void nn_shard_abort(nn_shard_writer *w);

/* ---- reading ------------------------------------------------------------ */

typedef struct nn_dataset nn_dataset;

typedef struct nn_dataset_opts {
  int cache;            /* 1: load everything into memory at open */
  size_t chunk_cache;   /* bytes of decoded /features chunks kept for the whole
                           data set, LRU over all shards (0: default 64 MiB, which
                           holds all 47 MB of Fashion-MNIST's training features);
                           memory stays bounded whatever the number of shards */
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
/* Bytes of decoded chunks the reader holds now (never above opts.chunk_cache
 * plus one chunk being decoded; 0 with opts.cache, whose copy is separate). */
/* Path of shard i (0 <= i < info.nfiles) for messages; not owned. */
const char *nn_dataset_file(const nn_dataset *ds, int i);
size_t nn_dataset_cached_bytes(const nn_dataset *ds);

/* All labels [info.n] in global order (classification; [info.n, T] with
 * token_labels), or NULL for a regression set. Owned by ds; valid until
 * nn_dataset_close. nn_dataset_read's labels are [n] or [n, T] the same way. */
const int32_t *nn_dataset_labels(const nn_dataset *ds);
/* All targets [info.n, T] (regression), or NULL. Owned by ds. */
const float *nn_dataset_targets(const nn_dataset *ds);
/* All lengths [info.n] of a sequence set (vocab_size > 0), or NULL. Owned by ds. */
const int32_t *nn_dataset_lengths(const nn_dataset *ds);

/* ---- describing one file (for `nntrain inspect` and `prepare`) ---------- */

/* The root attribute "format" of an HDF5 file, into buf (NUL-terminated).
 * This is how a reader tells a shard from other nntrain HDF5 files
 * (e.g. checkpoints). NN_ENOTFOUND: no such file; NN_EDATA: not HDF5,
 * damaged, or no "format" attribute. */
int nn_h5_format(const char *path, char *buf, size_t n, nn_error *err);

/* What one shard file says about itself beyond nn_dataset_info. */
typedef struct nn_shard_desc {
  char format[64];
  int version;
  char split[64];
  char source[256];
  int shard_index, shard_count;
  int64_t n;                     /* samples in this file */
  int chunk_ndim;                /* rank of /features */
  int64_t chunk[NN_MAX_DIMS + 1];/* chunk dims of /features */
  int deflate;                   /* deflate level, -1 if not compressed */
  int shuffle;                   /* 1 if the shuffle filter is on */
  int64_t raw_bytes;             /* /features uncompressed size */
  int64_t stored_bytes;          /* /features size on disk */
} nn_shard_desc;

/* Read the shard-level description of `path` (does not validate labels:
 * use nn_dataset_open for that). */
int nn_shard_describe(const char *path, nn_shard_desc *d, nn_error *err);

/* ---- statistics --------------------------------------------------------- */

/* Per-channel mean and population std of scaled features: x holds n samples
 * of `sample` shape, u8 (ftype NN_FEAT_U8) or float32; value = stored *
 * scale. Channels: d1 for 3-d samples [C, H, W], else the feature count.
 * Fills *channels, mean[*channels], std[*channels] (arrays of at least
 * NN_SHARD_MAX_CHANNELS). NN_EINVAL if there are too many channels or n < 1. */
int nn_shard_stats(const void *x, nn_feature_type ftype, int64_t n, const nn_shape *sample,
                   double scale, int *channels, double *mean, double *std, nn_error *err);
/* The number of mean/std channels for a sample shape (see above). */
int nn_shard_channels(const nn_shape *sample);

#endif
