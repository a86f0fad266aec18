/* shard_write.c: the HDF5 shard writer (format in dataset.h).
 *
 * Samples are staged in a buffer of one chunk of rows and written a chunk at
 * a time, so every chunk is compressed once; the file is built as PATH.tmp,
 * synced, and renamed into place on close, so a shard under its final name
 * is always complete. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/dataset_internal.h"
#include "core/mem.h"
#include "worker/fsutil.h"

#define SW_LABEL_CHUNK 8192 /* rows per /labels, /targets chunk */
#define SW_DEFLATE 4        /* deflate level of every dataset */

struct nn_shard_writer {
  char *path;          /* final name (owned) */
  char *tmp;           /* path.tmp (owned) */
  hid_t file, feat, lab; /* lab is /labels or /targets */
  hid_t len;           /* /lengths of a sequence shard, else -1 */
  int vocab_size;      /* > 0: a sequence shard */
  int stream;          /* 1: no /labels or /targets */
  int token_labels;    /* 1: /labels [rows, T] */
  int multilabel;      /* 1: /targets [rows, K] hold 0/1 labels */
  nn_feature_type ftype;
  int num_classes, target_dim;
  int fdims;           /* rank of /features */
  hsize_t fshape[NN_MAX_DIMS + 1]; /* [rows, sample...] */
  size_t rowlen, rowbytes;
  int64_t chunk_rows;
  uint8_t *buf;        /* [chunk_rows, rowbytes] staged features */
  void *lbuf;          /* [chunk_rows] int32 labels or [chunk_rows, T] float targets */
  int32_t *nbuf;       /* [chunk_rows] lengths (sequence shards) */
  int64_t buffered;    /* rows in buf */
  int64_t written;     /* rows in the file */
};

static void writer_free(nn_shard_writer *w) {
  if (!w) return;
  if (w->lab >= 0) H5Dclose(w->lab);
  if (w->len >= 0) H5Dclose(w->len);
  if (w->feat >= 0) H5Dclose(w->feat);
  if (w->file >= 0) H5Fclose(w->file);
  free(w->buf);
  free(w->lbuf);
  free(w->nbuf);
  free(w->path);
  free(w->tmp);
  free(w);
}

/* Create a chunked, extendible, compressed dataset [0, dims...]. */
static hid_t make_dataset(hid_t file, const char *name, hid_t type, int rank,
                          const hsize_t *row_dims, hsize_t chunk_rows, int shuffle) {
  hsize_t cur[NN_MAX_DIMS + 1], max[NN_MAX_DIMS + 1], chunk[NN_MAX_DIMS + 1];
  cur[0] = 0;
  max[0] = H5S_UNLIMITED;
  chunk[0] = chunk_rows;
  for (int i = 1; i < rank; i++) cur[i] = max[i] = chunk[i] = row_dims[i];
  hid_t space = H5Screate_simple(rank, cur, max), dcpl = -1, d = -1;
  if (space < 0) goto cleanup;
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0) goto cleanup;
  if (shuffle && H5Pset_shuffle(dcpl) < 0) goto cleanup;
  if (H5Pset_deflate(dcpl, SW_DEFLATE) < 0) goto cleanup;
  d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
cleanup:
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  return d;
}

/* The metadata checks of nn_shard_create; errors name `path`. */
static int check_meta(const char *path, const nn_shard_meta *m, nn_error *err) {
  char shp[64];
  nn_shape_str(&m->sample, shp, sizeof shp);
  if (m->sample.ndim < 1 || m->sample.ndim > NN_MAX_DIMS)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "sample shape %s: expected 1 to %d dimensions",
                       shp, NN_MAX_DIMS);
  for (int i = 0; i < m->sample.ndim; i++)
    if (m->sample.dim[i] < 1)
      return nn_error_at(err, NN_EINVAL, path, 0, 0, "sample shape %s has a dimension < 1", shp);
  if (m->ftype != NN_FEAT_U8 && m->ftype != NN_FEAT_F32 && m->ftype != NN_FEAT_I32)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "unknown feature type %d", (int)m->ftype);
  if ((m->ftype == NN_FEAT_I32) != (m->vocab_size > 0) || m->vocab_size < 0 ||
      m->vocab_size == 1 || m->vocab_size > NN_SHARD_MAX_VOCAB ||
      (m->vocab_size > 0 && (m->sample.ndim != 1 || m->feature_scale != 1)))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "vocab_size %d: a sequence shard has int32 "
                       "token ids [T], 2 <= vocab_size <= %d and feature_scale 1", m->vocab_size,
                       NN_SHARD_MAX_VOCAB);
  if (m->token_labels && (m->vocab_size <= 0 || m->num_classes < 2 || m->stream))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "labels per timestep need a sequence shard "
                       "(vocab_size) with classes");
  if (m->stream && (m->vocab_size <= 0 || m->num_classes || m->target_dim))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "a stream shard is a sequence shard without "
                       "classes or targets");
  if (!m->stream &&
      (m->num_classes < 0 || (m->num_classes == 0) != (m->target_dim > 0) || m->target_dim < 0))
    return nn_error_at(err, NN_EINVAL, path, 0, 0,
                       "num_classes %d, target_dim %d: a shard has either classes (> 0) or "
                       "regression targets (target_dim > 0)",
                       m->num_classes, m->target_dim);
  if (m->multilabel && (m->multilabel != 1 || m->num_classes || m->target_dim < 1 ||
                        m->vocab_size || m->stream))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "multi-label targets need num_classes 0, "
                       "target_dim K >= 1 and no sequence (vocab_size, stream)");
  if (!(m->feature_scale > 0) || !isfinite(m->feature_scale))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "feature_scale %g must be positive and finite",
                       m->feature_scale);
  if (m->channels != nn_shard_channels(&m->sample) || !m->mean || !m->std)
    return nn_error_at(err, NN_EINVAL, path, 0, 0,
                       "statistics have %d channels, sample shape %s needs %d", m->channels, shp,
                       nn_shard_channels(&m->sample));
  if (m->shard_count < 1 || m->shard_index < 0 || m->shard_index >= m->shard_count)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "shard index %d of %d is out of range",
                       m->shard_index, m->shard_count);
  return 0;
}

/* A writer for `path` with its buffers, no file yet. */
static int writer_alloc(nn_shard_writer **out, const char *path, const nn_shard_meta *m,
                        nn_error *err) {
  nn_shard_writer *w = nn_calloc(1, sizeof *w);
  if (!w) return nn_error_set(err, NN_ENOMEM, "out of memory");
  w->file = w->feat = w->lab = w->len = -1;
  w->ftype = m->ftype;
  w->vocab_size = m->vocab_size;
  w->stream = m->stream;
  w->token_labels = m->token_labels;
  w->multilabel = m->multilabel;
  w->num_classes = m->num_classes;
  w->target_dim = m->target_dim;
  w->rowlen = nn_shape_count(&m->sample);
  w->rowbytes = w->rowlen * nn__ds_ftype_size(m->ftype);
  w->chunk_rows = nn__ds_chunk_rows(w->rowbytes);
  w->fdims = m->sample.ndim + 1;
  for (int i = 0; i < m->sample.ndim; i++) w->fshape[i + 1] = (hsize_t)m->sample.dim[i];
  size_t lsz = m->num_classes > 0 ? sizeof(int32_t) : sizeof(float) * (size_t)m->target_dim;
  if (m->token_labels) lsz = sizeof(int32_t) * w->rowlen;
  w->path = nn_strdup(path);
  w->tmp = nn_malloc(strlen(path) + 5);
  w->buf = nn_malloc((size_t)w->chunk_rows * w->rowbytes);
  w->lbuf = nn_malloc((size_t)w->chunk_rows * lsz + 1);
  if (m->vocab_size > 0) w->nbuf = nn_malloc((size_t)w->chunk_rows * sizeof *w->nbuf);
  if (!w->path || !w->tmp || !w->buf || !w->lbuf || (m->vocab_size > 0 && !w->nbuf)) {
    writer_free(w);
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  sprintf(w->tmp, "%s.tmp", path);
  *out = w;
  return 0;
}

/* The root attributes of a new shard (all but num_samples, written on close). */
static int write_root_attrs(nn_shard_writer *w, const nn_shard_meta *m, nn_error *err) {
  nn_h5_file hf = {w->file, w->tmp, NN_EIO, NULL};
  int32_t version = NN_SHARD_VERSION, ncls = m->num_classes, si = m->shard_index,
          sc = m->shard_count;
  int32_t sshape[NN_MAX_DIMS];
  for (int i = 0; i < m->sample.ndim; i++) sshape[i] = m->sample.dim[i];
  hid_t f = w->file;
  int rc;
  if ((rc = nn_h5_attr_write_str(&hf, f, "format", NN_SHARD_FORMAT, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "version", H5T_NATIVE_INT32, &version, 0, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "sample_shape", H5T_NATIVE_INT32, sshape, m->sample.ndim,
                             err)) ||
      (rc = nn_h5_attr_write(&hf, f, "num_classes", H5T_NATIVE_INT32, &ncls, 0, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "feature_scale", H5T_NATIVE_DOUBLE, &m->feature_scale, 0,
                             err)) ||
      (rc = nn_h5_attr_write(&hf, f, "mean", H5T_NATIVE_DOUBLE, m->mean, m->channels, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "std", H5T_NATIVE_DOUBLE, m->std, m->channels, err)) ||
      (rc = nn_h5_attr_write_str(&hf, f, "split", m->split, err)) ||
      (rc = nn_h5_attr_write_str(&hf, f, "source", m->source, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "shard_index", H5T_NATIVE_INT32, &si, 0, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "shard_count", H5T_NATIVE_INT32, &sc, 0, err)))
    return rc;
  if (m->vocab_size > 0) {
    int32_t v = m->vocab_size;
    if ((rc = nn_h5_attr_write(&hf, f, "vocab_size", H5T_NATIVE_INT32, &v, 0, err))) return rc;
  }
  if (m->stream) {
    int32_t one = 1;
    if ((rc = nn_h5_attr_write(&hf, f, "stream", H5T_NATIVE_INT32, &one, 0, err))) return rc;
  }
  if (m->multilabel) {
    int32_t one = 1;
    if ((rc = nn_h5_attr_write(&hf, f, "multi_label", H5T_NATIVE_INT32, &one, 0, err)))
      return rc;
  }
  return 0;
}

int nn_shard_create(nn_shard_writer **out, const char *path, const nn_shard_meta *m,
                    nn_error *err) {
  nn_shard_writer *w = NULL;
  *out = NULL;
  nn_h5_quiet();
  int rc = check_meta(path, m, err);
  if (rc || (rc = writer_alloc(&w, path, m, err))) return rc;
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (w->file < 0) {
    rc = nn_h5_fail(err, NN_EIO, w->tmp, NULL, "cannot create the file");
    goto cleanup;
  }
  hid_t ftype = m->ftype == NN_FEAT_U8    ? H5T_STD_U8LE
                : m->ftype == NN_FEAT_I32 ? H5T_STD_I32LE
                                          : H5T_IEEE_F32LE;
  w->feat = make_dataset(w->file, "features", ftype, w->fdims, w->fshape,
                         (hsize_t)w->chunk_rows, 1);
  if (w->feat < 0) {
    rc = nn_h5_fail(err, NN_EIO, w->tmp, "/features", "cannot create the dataset");
    goto cleanup;
  }
  if (m->stream) {
    /* no labels: the stream's next tokens are the targets */
  } else if (m->token_labels) {
    hsize_t ld[2] = {0, (hsize_t)w->rowlen};
    w->lab = make_dataset(w->file, "labels", H5T_STD_I32LE, 2, ld, SW_LABEL_CHUNK, 0);
  } else if (m->num_classes > 0) {
    hsize_t ld[1] = {0};
    w->lab = make_dataset(w->file, "labels", H5T_STD_I32LE, 1, ld, SW_LABEL_CHUNK, 0);
  } else {
    hsize_t td[2] = {0, (hsize_t)m->target_dim};
    w->lab = make_dataset(w->file, "targets", H5T_IEEE_F32LE, 2, td, SW_LABEL_CHUNK, 0);
  }
  if (w->lab < 0 && !m->stream) {
    rc = nn_h5_fail(err, NN_EIO, w->tmp, m->num_classes > 0 ? "/labels" : "/targets",
                    "cannot create the dataset");
    goto cleanup;
  }
  if (m->vocab_size > 0) {
    hsize_t ld[1] = {0};
    w->len = make_dataset(w->file, "lengths", H5T_STD_I32LE, 1, ld, SW_LABEL_CHUNK, 0);
    if (w->len < 0) {
      rc = nn_h5_fail(err, NN_EIO, w->tmp, "/lengths", "cannot create the dataset");
      goto cleanup;
    }
  }
  if ((rc = write_root_attrs(w, m, err))) goto cleanup;
  *out = w;
  w = NULL;
cleanup:
  if (w) {
    int made = w->file >= 0;
    char *tmp = w->tmp;
    w->tmp = NULL;
    writer_free(w);
    if (made) unlink(tmp);
    free(tmp);
  }
  return rc;
}

/* Extend dataset d (rank `rank`, rows dims[0] after extension) and write
 * `rows` rows at `at` from buf. */
static int write_rows(hid_t d, int rank, const hsize_t *row_dims, hsize_t at, hsize_t rows,
                      hid_t mtype, const void *buf) {
  hsize_t ext[NN_MAX_DIMS + 1], start[NN_MAX_DIMS + 1] = {0}, cnt[NN_MAX_DIMS + 1];
  ext[0] = at + rows;
  start[0] = at;
  cnt[0] = rows;
  for (int i = 1; i < rank; i++) ext[i] = cnt[i] = row_dims[i];
  int rc = -1;
  hid_t fs = -1, ms = -1;
  if (H5Dset_extent(d, ext) < 0) goto cleanup;
  fs = H5Dget_space(d);
  ms = H5Screate_simple(rank, cnt, NULL);
  if (fs < 0 || ms < 0) goto cleanup;
  if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0) goto cleanup;
  if (H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf) < 0) goto cleanup;
  rc = 0;
cleanup:
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  return rc;
}

static int writer_flush(nn_shard_writer *w, nn_error *err) {
  if (w->buffered == 0) return 0;
  if (write_rows(w->feat, w->fdims, w->fshape, (hsize_t)w->written, (hsize_t)w->buffered,
                 nn__ds_ftype_mem(w->ftype), w->buf))
    return nn_h5_fail(err, NN_EIO, w->tmp, "/features", "cannot write rows %lld..%lld",
                   (long long)w->written, (long long)(w->written + w->buffered - 1));
  int rc = 0;
  if (w->stream) {
    /* no labels */
  } else if (w->token_labels) {
    hsize_t ld[2] = {0, (hsize_t)w->rowlen};
    rc = write_rows(w->lab, 2, ld, (hsize_t)w->written, (hsize_t)w->buffered, H5T_NATIVE_INT32,
                    w->lbuf);
  } else if (w->num_classes > 0) {
    hsize_t ld[1] = {0};
    rc = write_rows(w->lab, 1, ld, (hsize_t)w->written, (hsize_t)w->buffered, H5T_NATIVE_INT32,
                    w->lbuf);
  } else {
    hsize_t td[2] = {0, (hsize_t)w->target_dim};
    rc = write_rows(w->lab, 2, td, (hsize_t)w->written, (hsize_t)w->buffered, H5T_NATIVE_FLOAT,
                    w->lbuf);
  }
  if (rc)
    return nn_h5_fail(err, NN_EIO, w->tmp, w->num_classes > 0 ? "/labels" : "/targets",
                   "cannot write rows %lld..%lld", (long long)w->written,
                   (long long)(w->written + w->buffered - 1));
  hsize_t nd[1] = {0};
  if (w->len >= 0 && write_rows(w->len, 1, nd, (hsize_t)w->written, (hsize_t)w->buffered,
                                H5T_NATIVE_INT32, w->nbuf))
    return nn_h5_fail(err, NN_EIO, w->tmp, "/lengths", "cannot write rows %lld..%lld",
                      (long long)w->written, (long long)(w->written + w->buffered - 1));
  w->written += w->buffered;
  w->buffered = 0;
  return 0;
}

/* nn_shard_append_seq's checks of ids [n, T] and lengths [n]. */
static int check_seq(const nn_shard_writer *w, const int32_t *ids, const int32_t *lengths,
                     const int32_t *labels, int64_t n, nn_error *err) {
  const int64_t T = (int64_t)w->rowlen, row0 = w->written + w->buffered;
  for (int64_t i = 0; i < n; i++) {
    if (lengths[i] < 1 || lengths[i] > T)
      return nn_error_at(err, NN_EDATA, w->path, 0, 0, "sample %lld: length %d is outside "
                         "[1, %lld]", (long long)(row0 + i), (int)lengths[i], (long long)T);
    for (int64_t t = 0; t < T; t++) {
      int32_t v = ids[i * T + t];
      if (v < 0 || v >= w->vocab_size || (t >= lengths[i] && v != 0))
        return nn_error_at(err, NN_EDATA, w->path, 0, 0, "sample %lld step %lld: token id %d "
                           "(ids are in [0, %d), and 0 after the sample's length %d)",
                           (long long)(row0 + i), (long long)t, (int)v, w->vocab_size,
                           (int)lengths[i]);
      int32_t c = w->token_labels && labels && t < lengths[i] ? labels[i * T + t] : 0;
      if (w->token_labels && (c < 0 || c >= w->num_classes))
        return nn_error_at(err, NN_EDATA, w->path, 0, 0, "sample %lld step %lld: label %d is "
                           "outside [0, %d)", (long long)(row0 + i), (long long)t, (int)c,
                           w->num_classes);
    }
  }
  return 0;
}

static int append_rows(nn_shard_writer *w, const void *features, const int32_t *lengths,
                       const int32_t *labels, const float *targets, int64_t n, nn_error *err);

int nn_shard_append(nn_shard_writer *w, const void *features, const int32_t *labels,
                    const float *targets, int64_t n, nn_error *err) {
  if (w->vocab_size > 0)
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: a sequence shard needs lengths");
  return append_rows(w, features, NULL, labels, targets, n, err);
}

int nn_shard_append_seq(nn_shard_writer *w, const int32_t *ids, const int32_t *lengths,
                        const int32_t *labels, const float *targets, int64_t n, nn_error *err) {
  if (w->vocab_size <= 0 || (n > 0 && (!ids || !lengths)))
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: not a sequence shard, or no "
                       "ids/lengths");
  int rc = n > 0 ? check_seq(w, ids, lengths, labels, n, err) : 0;
  return rc ? rc : append_rows(w, ids, lengths, labels, targets, n, err);
}

static int append_rows(nn_shard_writer *w, const void *features, const int32_t *lengths,
                       const int32_t *labels, const float *targets, int64_t n, nn_error *err) {
  if (n < 0 || (n > 0 && !features))
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: bad sample count or no features");
  if (!w->stream && w->num_classes > 0 && n > 0 && !labels)
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: a classification shard needs labels");
  if (!w->stream && w->num_classes == 0 && n > 0 && !targets)
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: a regression shard needs targets");
  if (labels && !w->token_labels) /* per-timestep labels: check_seq */
    for (int64_t i = 0; i < n && w->num_classes > 0; i++)
      if (labels[i] < 0 || labels[i] >= w->num_classes)
        return nn_error_at(err, NN_EDATA, w->path, 0, 0,
                           "sample %lld: label %d is outside [0, %d)",
                           (long long)(w->written + w->buffered + i), (int)labels[i],
                           w->num_classes);
  if (targets && w->multilabel)
    for (int64_t i = 0; i < n * w->target_dim; i++)
      if (targets[i] != 0 && targets[i] != 1)
        return nn_error_at(err, NN_EDATA, w->path, 0, 0,
                           "sample %lld: label %d is %g, expected 0 or 1 (multi-label)",
                           (long long)(w->written + w->buffered + i / w->target_dim),
                           (int)(i % w->target_dim), (double)targets[i]);
  const uint8_t *f = features;
  size_t lsz = w->num_classes > 0 ? sizeof(int32_t) : sizeof(float) * (size_t)w->target_dim;
  if (w->token_labels) lsz = sizeof(int32_t) * w->rowlen;
  const uint8_t *l = w->num_classes > 0 ? (const void *)labels : (const void *)targets;
  if (w->stream) lsz = 0;
  int64_t done = 0;
  while (done < n) {
    int64_t take = w->chunk_rows - w->buffered;
    if (take > n - done) take = n - done;
    memcpy(w->buf + (size_t)w->buffered * w->rowbytes, f + (size_t)done * w->rowbytes,
           (size_t)take * w->rowbytes);
    if (lsz)
      memcpy((uint8_t *)w->lbuf + (size_t)w->buffered * lsz, l + (size_t)done * lsz,
             (size_t)take * lsz);
    if (lengths)
      memcpy(w->nbuf + w->buffered, lengths + done, (size_t)take * sizeof *lengths);
    w->buffered += take;
    done += take;
    if (w->buffered == w->chunk_rows) {
      int rc = writer_flush(w, err);
      if (rc) return rc;
    }
  }
  return 0;
}

int nn_shard_close(nn_shard_writer *w, nn_error *err) {
  int rc = writer_flush(w, err);
  if (rc) goto cleanup;
  int64_t total = w->written;
  nn_h5_file hf = {w->file, w->tmp, NN_EIO, NULL};
  if ((rc = nn_h5_attr_write(&hf, w->file, "num_samples", H5T_NATIVE_INT64, &total, 0, err)))
    goto cleanup;
  if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
    rc = nn_h5_fail(err, NN_EIO, w->tmp, NULL, "cannot flush the file");
    goto cleanup;
  }
  herr_t e0 = w->len >= 0 ? H5Dclose(w->len) : 0;
  herr_t e1 = w->lab >= 0 ? H5Dclose(w->lab) : 0, e2 = H5Dclose(w->feat), e3 = H5Fclose(w->file);
  w->lab = w->feat = w->file = w->len = -1;
  if (e0 < 0 || e1 < 0 || e2 < 0 || e3 < 0) {
    rc = nn_h5_fail(err, NN_EIO, w->tmp, NULL, "cannot close the file");
    goto cleanup;
  }
  /* Make the data durable before the rename makes it visible. */
  if ((rc = nn_fsync_path(w->tmp, 0, err))) goto cleanup;
  if (rename(w->tmp, w->path) != 0) {
    rc = nn_error_at(err, NN_EIO, w->path, 0, 0, "cannot rename %s into place: %s", w->tmp,
                     strerror(errno));
    goto cleanup;
  }
cleanup:
  if (rc) unlink(w->tmp);
  writer_free(w);
  return rc;
}

void nn_shard_abort(nn_shard_writer *w) {
  if (!w) return;
  nn_h5_quiet();
  char *tmp = w->tmp;
  w->tmp = NULL;
  writer_free(w);
  H5Eclear2(H5E_DEFAULT);
  if (tmp) unlink(tmp);
  free(tmp);
}
