/* dataset_internal.h: what the files of the shard reader and writer share
 * (not a public header: include worker/dataset.h from outside).
 *
 * The reader is four files:
 *   dataset.c        opening a glob of shards, validating and agreeing them,
 *                    loading labels/targets, the optional whole-set cache
 *   dataset_chunk.c  the direct chunk path: raw chunks read with
 *                    H5Dread_chunk, inflated and unshuffled here, kept in an
 *                    LRU cache of decoded chunks with one budget for all shards
 *   dataset_read.c   nn_dataset_read: sort a request by sample, split it by
 *                    shard, copy rows out (chunk cache or H5Dread), convert
 *                    to float and scatter to the order asked for
 *   shard_describe.c one file's description (inspect, prepare)
 * and the writer shard_write.c; statistics are shard_stats.c. */
#ifndef NN_WORKER_DATASET_INTERNAL_H
#define NN_WORKER_DATASET_INTERNAL_H

#include <stdint.h>

#include <hdf5.h>

#include "worker/dataset.h"
#include "worker/h5io.h"

#define NN__DS_CHUNK_BYTES ((size_t)1 << 20) /* target uncompressed chunk size */
#define NN__DS_CHUNK_ROWS 1024               /* most rows per /features chunk */
#define NN__DS_MAX_FILTERS 4                 /* filters we can undo, pipeline order */
#define NN__DS_KIND "an nntrain shard"      /* what a shard reader expects a file to be */

/* Rows per /features chunk our writer makes for rows of rowbytes bytes. */
static inline int64_t nn__ds_chunk_rows(size_t rowbytes) {
  size_t r = NN__DS_CHUNK_BYTES / rowbytes;
  return (int64_t)(r > NN__DS_CHUNK_ROWS ? NN__DS_CHUNK_ROWS : r < 1 ? 1 : r);
}

static inline size_t nn__ds_ftype_size(nn_feature_type t) { return t == NN_FEAT_U8 ? 1 : 4; }

static inline hid_t nn__ds_ftype_mem(nn_feature_type t) {
  return t == NN_FEAT_U8 ? H5T_NATIVE_UINT8 : t == NN_FEAT_I32 ? H5T_NATIVE_INT32
                                                                : H5T_NATIVE_FLOAT;
}

/* One shard file of an open dataset. */
typedef struct nn__ds_shard {
  char *path;        /* owned */
  int64_t first, n;  /* global index of row 0; rows */
  hid_t file, feat, fspace;
  int shard_index, shard_count;
  /* Direct chunk path (fast = 1): /features is chunked by whole rows with
   * only shuffle/deflate filters, so chunks are read raw (H5Dread_chunk),
   * decoded here and kept in an LRU cache of decoded chunks. */
  int fast;
  int64_t chunk_rows;       /* rows per chunk */
  int64_t nchunks;
  int nfilters;
  H5Z_filter_t filter[NN__DS_MAX_FILTERS];  /* pipeline order */
  uint8_t **chunk;          /* [nchunks] decoded chunk [chunk_rows, rowbytes], or NULL */
  uint64_t *used;           /* [nchunks] tick of last use */
  size_t cached_bytes;      /* decoded bytes held in chunk[] */
} nn__ds_shard;

/* One requested sample while a read is sorted. */
typedef struct nn__ds_ref {
  int64_t g;  /* global sample index */
  int pos;    /* position in the caller's request */
} nn__ds_ref;

struct nn_dataset {
  nn_dataset_info info;
  int nfiles;
  nn__ds_shard *shards; /* [nfiles] */
  int32_t *labels;    /* [n] or NULL (regression) */
  float *targets;     /* [n, T] or NULL (classification) */
  int32_t *lengths;   /* [n] of a sequence set, else NULL */
  uint8_t *cache;     /* [n, rowbytes] stored features when opts.cache, else NULL */
  size_t rowlen;      /* floats per sample */
  size_t rowbytes;    /* stored bytes per sample */
  float lut[256];     /* u8 value v -> (float)(v * feature_scale) */
  nn__ds_ref *order;  /* scratch [order_cap] */
  int order_cap;
  uint8_t *stage;     /* scratch [stage_rows, rowbytes] */
  size_t stage_rows;
  uint8_t *zbuf;      /* scratch: one raw (compressed) chunk [zcap] */
  size_t zcap;
  uint8_t *ubuf;      /* scratch: one chunk between filters [chunk bytes] */
  size_t ucap;
  size_t cache_budget; /* decoded-chunk bytes kept over ALL shards */
  size_t cached_total; /* decoded-chunk bytes held now, all shards */
  uint64_t tick;      /* LRU clock */
};

/* dataset_chunk.c: decide whether shard s can use the direct chunk path
 * (/features chunked as [r, whole sample] with only shuffle and deflate) and
 * set it up. */
int nn__ds_setup_chunks(nn_dataset *ds, nn__ds_shard *s, nn_error *err);
/* dataset_chunk.c: make chunk c of shard s resident (decoded) in s->chunk[c],
 * evicting least recently used chunks of any shard beyond the budget. */
int nn__ds_chunk_load(nn_dataset *ds, nn__ds_shard *s, int64_t c, nn_error *err);

#endif
