/* dataset_chunk.c: the reader's direct chunk path (see dataset_internal.h).
 *
 * When /features is chunked by whole rows with only shuffle/deflate (what our
 * writer makes), chunks are fetched raw with H5Dread_chunk, inflated and
 * unshuffled here, and kept in an LRU cache of decoded chunks with one byte
 * budget over all shards, so memory does not grow with the number of shards.
 * (An H5Dread of a hyperslab union was measured at ~10k samples/s: HDF5 1.10
 * maps irregular selections to chunks element by element.) */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "worker/dataset_internal.h"
#include "core/mem.h"

int nn__ds_setup_chunks(nn_dataset *ds, nn__ds_shard *s, nn_error *err) {
  hid_t dcpl = H5Dget_create_plist(s->feat);
  if (dcpl < 0) return nn_h5_fail(err, NN_EDATA, s->path, "/features", "cannot read the layout");
  int rank = ds->info.sample.ndim + 1, ok = 0;
  hsize_t ch[NN_MAX_DIMS + 1];
  if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, rank, ch) == rank) {
    ok = 1;
    for (int i = 1; i < rank; i++)
      if (ch[i] != (hsize_t)ds->info.sample.dim[i - 1]) ok = 0;
    int nf = H5Pget_nfilters(dcpl);
    if (nf < 0 || nf > NN__DS_MAX_FILTERS) ok = 0;
    for (int i = 0; ok && i < nf; i++) {
      unsigned flags = 0, cd[8];
      size_t ncd = 8;
      H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
      if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE) ok = 0;
      s->filter[i] = id;
    }
    if (ok) {
      s->nfilters = nf;
      s->chunk_rows = (int64_t)ch[0];
    }
  }
  H5Pclose(dcpl);
  H5Eclear2(H5E_DEFAULT);
  if (!ok || s->n == 0) return 0;
  s->nchunks = (s->n + s->chunk_rows - 1) / s->chunk_rows;
  s->chunk = nn_calloc((size_t)s->nchunks, sizeof *s->chunk);
  s->used = nn_calloc((size_t)s->nchunks, sizeof *s->used);
  if (!s->chunk || !s->used) return nn_error_set(err, NN_ENOMEM, "out of memory");
  s->fast = 1;
  return 0;
}

/* Undo HDF5's shuffle filter: src holds all bytes 0 of n elements of size
 * esz, then all bytes 1, ...; dst gets the elements. */
static void unshuffle(const uint8_t *src, uint8_t *dst, size_t n, size_t esz) {
  for (size_t b = 0; b < esz; b++) {
    const uint8_t *p = src + b * n;
    for (size_t i = 0; i < n; i++) dst[i * esz + b] = p[i];
  }
}

/* Free least recently used decoded chunks of any shard until `need` more
 * bytes fit in the budget (or nothing is left to free). */
static void chunk_evict(nn_dataset *ds, size_t need) {
  while (ds->cached_total + need > ds->cache_budget && ds->cached_total > 0) {
    nn__ds_shard *vs = NULL;
    int64_t victim = -1;
    for (int f = 0; f < ds->nfiles; f++) {
      nn__ds_shard *t = &ds->shards[f];
      if (!t->cached_bytes) continue;
      for (int64_t i = 0; i < t->nchunks; i++)
        if (t->chunk[i] && (victim < 0 || t->used[i] < vs->used[victim])) {
          vs = t;
          victim = i;
        }
    }
    if (!vs) break;
    size_t vraw = (size_t)vs->chunk_rows * ds->rowbytes;
    free(vs->chunk[victim]);
    vs->chunk[victim] = NULL;
    vs->cached_bytes -= vraw;
    ds->cached_total -= vraw;
  }
}

/* Grow ds->zbuf to `stored` and ds->ubuf to `raw` bytes. */
static int chunk_scratch(nn_dataset *ds, size_t stored, size_t raw, nn_error *err) {
  if (stored > ds->zcap) {
    uint8_t *nz = nn_realloc(ds->zbuf, stored);
    if (!nz) return nn_error_set(err, NN_ENOMEM, "out of memory");
    ds->zbuf = nz;
    ds->zcap = stored;
  }
  if (raw > ds->ucap) {
    uint8_t *nu = nn_realloc(ds->ubuf, raw);
    if (!nu) return nn_error_set(err, NN_ENOMEM, "out of memory");
    ds->ubuf = nu;
    ds->ucap = raw;
  }
  return 0;
}

/* Undo shard s's filters on chunk c, whose `stored` raw bytes are in
 * ds->zbuf, into out[raw] (ds->ubuf is the other buffer), in reverse
 * pipeline order; mask says which filters were skipped for this chunk. */
static int chunk_decode(nn_dataset *ds, const nn__ds_shard *s, int64_t c, uint32_t mask,
                        size_t stored, size_t raw, uint8_t *out, nn_error *err) {
  const uint8_t *cur = ds->zbuf; /* cur/len: the data so far */
  size_t len = stored;
  size_t esz = nn__ds_ftype_size(ds->info.ftype);
  for (int i = s->nfilters - 1; i >= 0; i--) {
    if (mask & (1u << i)) continue; /* filter skipped for this chunk */
    if (s->filter[i] == H5Z_FILTER_SHUFFLE && esz == 1) continue; /* identity */
    uint8_t *dst = (cur == out) ? ds->ubuf : out;
    if (s->filter[i] == H5Z_FILTER_DEFLATE) {
      uLongf got = (uLongf)raw;
      int zr = uncompress(dst, &got, cur, (uLong)len);
      if (zr != Z_OK || got != raw)
        return nn_error_at(err, NN_EDATA, s->path, 0, 0,
                           "/features chunk %lld: deflate data is damaged (%s)", (long long)c,
                           zr == Z_OK ? "wrong size" : zError(zr));
      len = raw;
    } else {
      if (len != raw) break; /* reported below */
      unshuffle(cur, dst, raw / esz, esz);
    }
    cur = dst;
  }
  if (len != raw)
    return nn_error_at(err, NN_EDATA, s->path, 0, 0,
                       "/features chunk %lld has %zu bytes, expected %zu", (long long)c, len, raw);
  if (cur != out) memcpy(out, cur, raw);
  return 0;
}

int nn__ds_chunk_load(nn_dataset *ds, nn__ds_shard *s, int64_t c, nn_error *err) {
  s->used[c] = ++ds->tick;
  if (s->chunk[c]) return 0;
  size_t raw = (size_t)s->chunk_rows * ds->rowbytes;
  chunk_evict(ds, raw);
  uint8_t *out = nn_malloc(raw);
  if (!out) return nn_error_set(err, NN_ENOMEM, "out of memory for a %zu-byte chunk", raw);
  hsize_t off[NN_MAX_DIMS + 1] = {0};
  off[0] = (hsize_t)(c * s->chunk_rows);
  hsize_t stored = 0;
  uint32_t mask = 0;
  int rc = 0;
  if (H5Dget_chunk_storage_size(s->feat, off, &stored) < 0) {
    rc = nn_h5_fail(err, NN_EDATA, s->path, "/features", "cannot locate chunk %lld", (long long)c);
  } else if (stored == 0) { /* never written: the fill value */
    memset(out, 0, raw);
  } else if (!(rc = chunk_scratch(ds, (size_t)stored, raw, err))) {
    if (H5Dread_chunk(s->feat, H5P_DEFAULT, off, &mask, ds->zbuf) < 0)
      rc = nn_h5_fail(err, NN_EDATA, s->path, "/features",
                      "cannot read chunk %lld (damaged file?)", (long long)c);
    else
      rc = chunk_decode(ds, s, c, mask, (size_t)stored, raw, out, err);
  }
  if (rc) {
    free(out);
    return rc;
  }
  s->chunk[c] = out;
  s->cached_bytes += raw;
  ds->cached_total += raw;
  return 0;
}
