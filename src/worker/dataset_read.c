/* dataset_read.c: reading samples of an open data set (nn_dataset_read).
 *
 * A read sorts the requested global indices and splits them by shard. On the
 * direct chunk path (dataset_chunk.c) a sample is a copy out of its decoded
 * chunk; other layouts (e.g. contiguous, written by h5py) use one H5Dread per
 * run of consecutive rows. Rows are converted to float (u8 through a
 * 256-entry table) and scattered to the order asked for. With opts.cache all
 * stored features were decoded at open and a read is a table lookup per
 * element. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/dataset_internal.h"
#include "core/mem.h"

/* Stored row `src` -> floats dst[rowlen]. Returns 1 if a float feature is
 * NaN or infinite (checked on the stored bits while converting: an OR over
 * the exponent-all-ones test, which costs about as much as the copy), else 0.
 * uint8 features cannot be non-finite. */
static int convert_row(const nn_dataset *ds, const uint8_t *src, float *dst) {
  size_t n = ds->rowlen;
  if (ds->info.ftype == NN_FEAT_U8) {
    for (size_t k = 0; k < n; k++) dst[k] = ds->lut[src[k]];
    return 0;
  }
  if (ds->info.ftype == NN_FEAT_I32) { /* token ids: exact in float below 2^24 */
    const int32_t *id = (const int32_t *)(const void *)src;
    const uint32_t vocab = (uint32_t)ds->info.vocab_size;
    uint32_t bad = 0;
    for (size_t k = 0; k < n; k++) {
      dst[k] = (float)id[k];
      bad |= (uint32_t)((uint32_t)id[k] >= vocab); /* negative ids wrap above it */
    }
    return (int)bad;
  }
  const float *f = (const float *)(const void *)src;
  double sc = ds->info.feature_scale;
  if (sc == 1.0) {
    memcpy(dst, f, n * sizeof *dst);
  } else {
    for (size_t k = 0; k < n; k++) dst[k] = (float)((double)f[k] * sc);
  }
  uint32_t bad = 0;
  for (size_t k = 0; k < n; k++) {
    uint32_t b;
    memcpy(&b, &f[k], sizeof b);
    bad |= (uint32_t)((b & 0x7f800000u) == 0x7f800000u);
  }
  return (int)bad;
}

/* The error for a non-finite float feature in global sample g: names the
 * shard, its row and the first bad element. */
static int nonfinite_row(const nn_dataset *ds, int64_t g, const float *row, nn_error *err) {
  const nn__ds_shard *s = &ds->shards[0];
  for (int i = 0; i < ds->nfiles; i++)
    if (g >= ds->shards[i].first && g < ds->shards[i].first + ds->shards[i].n) s = &ds->shards[i];
  size_t k = 0;
  if (ds->info.ftype == NN_FEAT_I32) {
    while (k + 1 < ds->rowlen && row[k] >= 0 && row[k] < (float)ds->info.vocab_size) k++;
    nn_error_at(err, NN_EDATA, s->path, 0, 0, "/features row %lld element %zu is token id %.0f, "
                "outside the vocabulary [0, %d)", (long long)(g - s->first), k, (double)row[k],
                ds->info.vocab_size);
    if (err) snprintf(err->where, sizeof err->where, "/features");
    return NN_EDATA;
  }
  while (k + 1 < ds->rowlen && isfinite(row[k])) k++;
  nn_error_at(err, NN_EDATA, s->path, 0, 0,
              "/features row %lld element %zu is %g: features must be finite numbers",
              (long long)(g - s->first), k, (double)row[k]);
  if (err) snprintf(err->where, sizeof err->where, "/features");
  return NN_EDATA;
}

/* qsort order of refs: by sample, then by request position. */
static int ref_cmp(const void *a, const void *b) {
  const nn__ds_ref *x = a, *y = b;
  if (x->g != y->g) return x->g < y->g ? -1 : 1;
  return x->pos - y->pos;
}

/* Read the sorted refs r[0..m) (all in shard s) into x. Direct chunk path:
 * copy rows out of decoded chunks. Otherwise: one H5Dread per run of
 * consecutive rows (a single-block selection, which HDF5 handles without
 * per-element work) into the staging buffer, then scatter. */
static int read_shard_group(nn_dataset *ds, nn__ds_shard *s, const nn__ds_ref *r, int m, float *x,
                            nn_error *err) {
  int rc = 0;
  if (s->fast) {
    for (int i = 0; i < m; i++) {
      int64_t row = r[i].g - s->first, c = row / s->chunk_rows;
      if (!s->chunk[c] || s->used[c] != ds->tick) {
        if ((rc = nn__ds_chunk_load(ds, s, c, err))) return rc;
      }
      float *dst = x + (size_t)r[i].pos * ds->rowlen;
      if (convert_row(ds, s->chunk[c] + (size_t)(row - c * s->chunk_rows) * ds->rowbytes, dst))
        return nonfinite_row(ds, r[i].g, dst, err);
    }
    return 0;
  }
  hid_t ms = -1;
  hsize_t start[NN_MAX_DIMS + 1] = {0}, cnt[NN_MAX_DIMS + 1];
  int rank = ds->info.sample.ndim + 1;
  for (int i = 1; i < rank; i++) cnt[i] = (hsize_t)ds->info.sample.dim[i - 1];
  for (int i = 0; i < m;) {
    /* One run: rows a..b (consecutive, repeats allowed) = refs i..j-1. */
    int64_t a = r[i].g, b = a;
    int j = i;
    while (j < m && r[j].g <= b + 1) {
      if (r[j].g == b + 1) b++;
      j++;
    }
    size_t rows = (size_t)(b - a + 1);
    if (rows > ds->stage_rows) {
      uint8_t *ns = nn_realloc(ds->stage, rows * ds->rowbytes);
      if (!ns) {
        rc = nn_error_set(err, NN_ENOMEM, "out of memory for a read of %zu samples", rows);
        goto cleanup;
      }
      ds->stage = ns;
      ds->stage_rows = rows;
    }
    start[0] = (hsize_t)(a - s->first);
    cnt[0] = (hsize_t)rows;
    ms = H5Screate_simple(rank, cnt, NULL);
    if (ms < 0 || H5Sselect_hyperslab(s->fspace, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0) {
      rc = nn_h5_fail(err, NN_EIO, s->path, "/features", "cannot select rows");
      goto cleanup;
    }
    if (H5Dread(s->feat, nn__ds_ftype_mem(ds->info.ftype), ms, s->fspace, H5P_DEFAULT, ds->stage) < 0) {
      rc = nn_h5_fail(err, NN_EDATA, s->path, "/features",
                   "cannot read rows %lld..%lld (damaged file?)", (long long)(a - s->first),
                   (long long)(b - s->first));
      goto cleanup;
    }
    H5Sclose(ms);
    ms = -1;
    for (int k = i; k < j; k++) {
      float *dst = x + (size_t)r[k].pos * ds->rowlen;
      if (convert_row(ds, ds->stage + (size_t)(r[k].g - a) * ds->rowbytes, dst)) {
        rc = nonfinite_row(ds, r[k].g, dst, err);
        goto cleanup;
      }
    }
    i = j;
  }
cleanup:
  if (ms >= 0) H5Sclose(ms);
  return rc;
}

int nn_dataset_read(nn_dataset *ds, const int64_t *idx, int n, float *x, int32_t *labels,
                    float *targets, nn_error *err) {
  if (n < 0) return nn_error_set(err, NN_EINVAL, "negative read count %d", n);
  int64_t N = ds->info.n;
  for (int i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= N)
      return nn_error_set(err, NN_EINVAL, "sample index %lld is out of range [0, %lld)",
                          (long long)idx[i], (long long)N);
  if (labels) {
    if (!ds->labels) return nn_error_set(err, NN_EINVAL, "labels asked of a regression dataset");
    size_t per = ds->info.token_labels ? (size_t)ds->info.sample.dim[0] : 1;
    for (int i = 0; i < n; i++)
      memcpy(labels + (size_t)i * per, ds->labels + (size_t)idx[i] * per, per * sizeof *labels);
  }
  if (targets) {
    if (!ds->targets)
      return nn_error_set(err, NN_EINVAL, "targets asked of a classification dataset");
    size_t T = (size_t)ds->info.target_dim;
    for (int i = 0; i < n; i++)
      memcpy(targets + (size_t)i * T, ds->targets + (size_t)idx[i] * T, T * sizeof(float));
  }
  if (!x || n == 0) return 0;
  if (ds->cache) {
    for (int i = 0; i < n; i++)
      if (convert_row(ds, ds->cache + (size_t)idx[i] * ds->rowbytes, x + (size_t)i * ds->rowlen))
        return nonfinite_row(ds, idx[i], x + (size_t)i * ds->rowlen, err);
    return 0;
  }
  if (n > ds->order_cap) {
    nn__ds_ref *no = nn_realloc(ds->order, (size_t)n * sizeof *no);
    if (!no) return nn_error_set(err, NN_ENOMEM, "out of memory for a read of %d samples", n);
    ds->order = no;
    ds->order_cap = n;
  }
  nn__ds_ref *r = ds->order;
  for (int i = 0; i < n; i++) {
    r[i].g = idx[i];
    r[i].pos = i;
  }
  qsort(r, (size_t)n, sizeof *r, ref_cmp);
  int sh = 0;
  for (int i = 0; i < n;) {
    while (r[i].g >= ds->shards[sh].first + ds->shards[sh].n) sh++;
    nn__ds_shard *s = &ds->shards[sh];
    int j = i;
    while (j < n && r[j].g < s->first + s->n) j++;
    int rc = read_shard_group(ds, s, r + i, j - i, x, err);
    if (rc) return rc;
    i = j;
  }
  return 0;
}

