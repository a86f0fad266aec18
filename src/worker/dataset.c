/* dataset.c: HDF5 shard writer and reader (format in dataset.h, user docs in
 * docs/data-format.md).
 *
 * Writer: samples are staged in a buffer of one chunk of rows and written a
 * chunk at a time, so every chunk is compressed once; the file is built as
 * PATH.tmp and renamed into place on close.
 *
 * Reader: every shard's /features stays open; the labels (or targets) of all
 * shards are loaded and range-checked at open. A read sorts the requested
 * global indices and splits them by shard. When /features is chunked by whole
 * rows with only shuffle/deflate (what our writer makes), chunks are fetched
 * raw with H5Dread_chunk, inflated and unshuffled here, and kept in a per-shard
 * LRU cache of decoded chunks; a sample is then a copy out of its chunk. (An
 * H5Dread of a hyperslab union was measured at ~10k samples/s: HDF5 1.10 maps
 * irregular selections to chunks element by element.) Other layouts (e.g.
 * contiguous, written by h5py) use one H5Dread per run of consecutive rows.
 * Rows are converted to float (u8 through a 256-entry table) and scattered to
 * the order asked for. With cache=1 all stored features are decoded at open
 * and a read is a table lookup per element.
 *
 * All HDF5 failures become NN_EDATA / NN_EIO records naming the file and the
 * dataset or attribute, with HDF5's innermost message appended; HDF5's own
 * error printing is switched off. Not here: normalization (the pipeline
 * applies mean/std), augmentation, prefetching. */
#include "worker/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <zlib.h>

#define DS_CHUNK_BYTES ((size_t)1 << 20) /* target uncompressed chunk size */
#define DS_CHUNK_ROWS 1024               /* most rows per /features chunk */
#define DS_LABEL_CHUNK 8192              /* rows per /labels, /targets chunk */
#define DS_DEFLATE 4
#define DS_DEFAULT_CACHE ((size_t)64 << 20)
/* HDF5's own chunk cache per shard (used only by the fallback read path for
 * layouts our writer does not make): small, so memory stays bounded by
 * DS_DEFAULT_CACHE-ish whatever the number of shards. */
#define DS_H5_CACHE ((size_t)2 << 20)

/* ---- small helpers ------------------------------------------------------ */

/* Elements in a sample shape (1 for a 0-d shape). */
static size_t shape_count(const nn_shape *s) {
  size_t c = 1;
  for (int i = 0; i < s->ndim; i++) c *= (size_t)s->dim[i];
  return c;
}

static int shape_same(const nn_shape *a, const nn_shape *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

static void shape_fmt(const nn_shape *s, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = '\0';
  k += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", s->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

static const char *ftype_name(nn_feature_type t) { return t == NN_FEAT_U8 ? "uint8" : "float32"; }

static size_t ftype_size(nn_feature_type t) { return t == NN_FEAT_U8 ? 1 : 4; }

static hid_t ftype_mem(nn_feature_type t) {
  return t == NN_FEAT_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
}

/* Switch off HDF5's automatic error printing (a library setting, not ours:
 * done on every entry point so no message ever reaches stderr). */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct h5_msg {
  char text[200];
} h5_msg;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_msg *m = data;
  if (n == 0 && e->desc && e->desc[0]) snprintf(m->text, sizeof m->text, "%s", e->desc);
  return 0;
}

/* Record an HDF5 failure about `file` (and `what`: dataset or attribute, may
 * be NULL) with HDF5's innermost message appended; clears HDF5's stack. */
static int h5_fail(nn_error *err, int code, const char *file, const char *what, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static int h5_fail(nn_error *err, int code, const char *file, const char *what, const char *fmt,
                   ...) {
  h5_msg m = {{0}};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &m);
  H5Eclear2(H5E_DEFAULT);
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int rc;
  if (m.text[0])
    rc = nn_error_at(err, code, file, 0, 0, "%s%s%s (HDF5: %s)", what ? what : "", what ? ": " : "",
                     msg, m.text);
  else
    rc = nn_error_at(err, code, file, 0, 0, "%s%s%s", what ? what : "", what ? ": " : "", msg);
  if (err && what) snprintf(err->where, sizeof err->where, "%s", what);
  return rc;
}

/* ---- attributes ----------------------------------------------------------- */

/* Write attribute `name`: a scalar if n == 0, else a 1-d array of n values. */
static int attr_write(hid_t loc, const char *name, hid_t mtype, const void *v, int n) {
  hid_t space = -1, a = -1;
  int rc = -1;
  if (n == 0) {
    space = H5Screate(H5S_SCALAR);
  } else {
    hsize_t d = (hsize_t)n;
    space = H5Screate_simple(1, &d, NULL);
  }
  if (space < 0) goto cleanup;
  a = H5Acreate2(loc, name, mtype, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) goto cleanup;
  if (H5Awrite(a, mtype, v) < 0) goto cleanup;
  rc = 0;
cleanup:
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  return rc;
}

static int attr_write_str(hid_t loc, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1), space = -1, a = -1;
  int rc = -1;
  if (t < 0) return -1;
  if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) goto cleanup;
  space = H5Screate(H5S_SCALAR);
  if (space < 0) goto cleanup;
  a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) goto cleanup;
  const char *p = v ? v : "";
  if (H5Awrite(a, t, &p) < 0) goto cleanup;
  rc = 0;
cleanup:
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  H5Tclose(t);
  return rc;
}

/* Open root attribute `name` of `path`'s file `loc`; NN_EDATA if missing. */
static int attr_open(hid_t loc, const char *path, const char *name, hid_t *out, nn_error *err) {
  htri_t ex = H5Aexists(loc, name);
  if (ex < 0) return h5_fail(err, NN_EDATA, path, name, "cannot look up the attribute");
  if (ex == 0) {
    nn_error_at(err, NN_EDATA, path, 0, 0,
                "missing attribute '%s': not an nntrain shard, or written incompletely", name);
    if (err) snprintf(err->where, sizeof err->where, "%s", name);
    return NN_EDATA;
  }
  *out = H5Aopen(loc, name, H5P_DEFAULT);
  if (*out < 0) return h5_fail(err, NN_EDATA, path, name, "cannot open the attribute");
  return 0;
}

/* Read a numeric attribute of up to `max` elements into v (as mtype).
 * *count gets the element count; if exact > 0 the count must equal it. */
static int attr_read_num(hid_t loc, const char *path, const char *name, hid_t mtype, void *v,
                         int max, int exact, int *count, nn_error *err) {
  hid_t a = -1, space = -1, ft = -1;
  int rc = attr_open(loc, path, name, &a, err);
  if (rc) return rc;
  ft = H5Aget_type(a);
  space = H5Aget_space(a);
  if (ft < 0 || space < 0) {
    rc = h5_fail(err, NN_EDATA, path, name, "cannot read the attribute's type");
    goto cleanup;
  }
  H5T_class_t cls = H5Tget_class(ft);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "attribute '%s' is not numeric", name);
    goto cleanup;
  }
  hssize_t np = H5Sget_simple_extent_npoints(space);
  if (np < 1 || np > max || (exact > 0 && np != exact)) {
    if (exact > 0)
      rc = nn_error_at(err, NN_EDATA, path, 0, 0, "attribute '%s' has %lld values, expected %d",
                       name, (long long)np, exact);
    else
      rc = nn_error_at(err, NN_EDATA, path, 0, 0, "attribute '%s' has %lld values, expected 1 to %d",
                       name, (long long)np, max);
    goto cleanup;
  }
  if (H5Aread(a, mtype, v) < 0) {
    rc = h5_fail(err, NN_EDATA, path, name, "cannot read the attribute");
    goto cleanup;
  }
  if (count) *count = (int)np;
cleanup:
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  if (a >= 0) H5Aclose(a);
  return rc;
}

static int attr_read_int(hid_t loc, const char *path, const char *name, int *v, nn_error *err) {
  int32_t x = 0;
  int rc = attr_read_num(loc, path, name, H5T_NATIVE_INT32, &x, 1, 1, NULL, err);
  if (!rc) *v = x;
  return rc;
}

/* Read a string attribute (fixed or variable length) into buf[n]. */
static int attr_read_str(hid_t loc, const char *path, const char *name, char *buf, size_t n,
                         nn_error *err) {
  hid_t a = -1, ft = -1, mt = -1, space = -1;
  char *tmp = NULL;
  int rc = attr_open(loc, path, name, &a, err);
  if (rc) return rc;
  buf[0] = '\0';
  ft = H5Aget_type(a);
  space = H5Aget_space(a);
  if (ft < 0 || space < 0) {
    rc = h5_fail(err, NN_EDATA, path, name, "cannot read the attribute's type");
    goto cleanup;
  }
  if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "attribute '%s' is not a single string", name);
    goto cleanup;
  }
  mt = H5Tcopy(H5T_C_S1);
  if (mt < 0) {
    rc = h5_fail(err, NN_EDATA, path, name, "cannot make a string type");
    goto cleanup;
  }
  if (H5Tis_variable_str(ft) > 0) {
    char *p = NULL;
    if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0 ||
        H5Aread(a, mt, &p) < 0) {
      rc = h5_fail(err, NN_EDATA, path, name, "cannot read the attribute");
      goto cleanup;
    }
    snprintf(buf, n, "%s", p ? p : "");
    if (p) H5free_memory(p);
  } else {
    size_t sz = H5Tget_size(ft);
    tmp = calloc(sz + 1, 1);
    if (!tmp) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    if (H5Tset_size(mt, sz) < 0 || H5Aread(a, mt, tmp) < 0) {
      rc = h5_fail(err, NN_EDATA, path, name, "cannot read the attribute");
      goto cleanup;
    }
    snprintf(buf, n, "%s", tmp);
  }
cleanup:
  free(tmp);
  if (mt >= 0) H5Tclose(mt);
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  if (a >= 0) H5Aclose(a);
  return rc;
}

/* Open `path` read-only after checking it exists and is HDF5. */
static int h5_open_file(const char *path, hid_t *file, nn_error *err) {
  struct stat st;
  h5_quiet();
  if (stat(path, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return nn_error_at(err, NN_ENOTFOUND, path, 0, 0, "no such file");
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot access: %s", strerror(errno));
  }
  if (S_ISDIR(st.st_mode))
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "is a directory; expected an HDF5 shard or a glob such as DIR/train-*.h5");
  if (access(path, R_OK) != 0)
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot read: %s", strerror(errno));
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return nn_error_at(err, NN_EDATA, path, 0, 0, "not an HDF5 file (expected an nntrain shard)");
  }
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) return h5_fail(err, NN_EIO, path, NULL, "cannot make a property list");
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  int rc = 0;
  if (*file < 0) /* before any other HDF5 call, which would clear the error stack */
    rc = h5_fail(err, NN_EDATA, path, NULL, "cannot open: the HDF5 file is truncated or damaged");
  H5Pclose(fapl);
  return rc;
}

int nn_h5_format(const char *path, char *buf, size_t n, nn_error *err) {
  hid_t f = -1;
  int rc = h5_open_file(path, &f, err);
  if (rc) return rc;
  rc = attr_read_str(f, path, "format", buf, n, err);
  H5Fclose(f);
  return rc;
}

/* ---- statistics ----------------------------------------------------------- */

int nn_shard_channels(const nn_shape *sample) {
  if (sample->ndim == 3) return sample->dim[0];
  return (int)shape_count(sample);
}

int nn_shard_stats(const void *x, nn_feature_type ftype, int64_t n, const nn_shape *sample,
                   double scale, int *channels, double *mean, double *std, nn_error *err) {
  int C = nn_shard_channels(sample);
  if (C < 1 || C > NN_SHARD_MAX_CHANNELS)
    return nn_error_set(err, NN_EINVAL, "%d statistics channels; at most %d are supported", C,
                        NN_SHARD_MAX_CHANNELS);
  if (n < 1) return nn_error_set(err, NN_EINVAL, "no samples to compute statistics from");
  size_t rowlen = shape_count(sample);
  size_t per = rowlen / (size_t)C; /* consecutive elements per channel within a sample */
  double cnt = (double)n * (double)per;
  *channels = C;
  if (ftype == NN_FEAT_U8) {
    /* Exact integer sums; var = scale^2 (S2/cnt - (S1/cnt)^2). */
    const uint8_t *p = x;
    for (int c = 0; c < C; c++) {
      uint64_t s1 = 0, s2 = 0;
      for (int64_t i = 0; i < n; i++) {
        const uint8_t *r = p + (size_t)i * rowlen + (size_t)c * per;
        for (size_t k = 0; k < per; k++) {
          s1 += r[k];
          s2 += (uint64_t)r[k] * r[k];
        }
      }
      long double m = (long double)s1 / cnt;
      long double v = (long double)s2 / cnt - m * m;
      if (v < 0) v = 0;
      mean[c] = (double)(m * scale);
      std[c] = (double)(sqrtl(v) * fabs(scale));
    }
  } else {
    const float *p = x;
    for (int c = 0; c < C; c++) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < n; i++) {
        const float *r = p + (size_t)i * rowlen + (size_t)c * per;
        for (size_t k = 0; k < per; k++) s += r[k];
      }
      double m = s / cnt;
      for (int64_t i = 0; i < n; i++) {
        const float *r = p + (size_t)i * rowlen + (size_t)c * per;
        for (size_t k = 0; k < per; k++) ss += (r[k] - m) * (r[k] - m);
      }
      mean[c] = m * scale;
      std[c] = sqrt(ss / cnt) * fabs(scale);
    }
  }
  return 0;
}

/* ---- writer --------------------------------------------------------------- */

struct nn_shard_writer {
  char *path;          /* final name (owned) */
  char *tmp;           /* path.tmp (owned) */
  hid_t file, feat, lab; /* lab is /labels or /targets */
  nn_feature_type ftype;
  int num_classes, target_dim;
  int fdims;           /* rank of /features */
  hsize_t fshape[NN_MAX_DIMS + 1]; /* [rows, sample...] */
  size_t rowlen, rowbytes;
  int64_t chunk_rows;
  uint8_t *buf;        /* [chunk_rows, rowbytes] staged features */
  void *lbuf;          /* [chunk_rows] int32 labels or [chunk_rows, T] float targets */
  int64_t buffered;    /* rows in buf */
  int64_t written;     /* rows in the file */
};

static void writer_free(nn_shard_writer *w) {
  if (!w) return;
  if (w->lab >= 0) H5Dclose(w->lab);
  if (w->feat >= 0) H5Dclose(w->feat);
  if (w->file >= 0) H5Fclose(w->file);
  free(w->buf);
  free(w->lbuf);
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
  if (H5Pset_deflate(dcpl, DS_DEFLATE) < 0) goto cleanup;
  d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
cleanup:
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  return d;
}

int nn_shard_create(nn_shard_writer **out, const char *path, const nn_shard_meta *m,
                    nn_error *err) {
  int rc = 0;
  nn_shard_writer *w = NULL;
  *out = NULL;
  h5_quiet();
  char shp[64];
  shape_fmt(&m->sample, shp, sizeof shp);
  if (m->sample.ndim < 1 || m->sample.ndim > NN_MAX_DIMS)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "sample shape %s: expected 1 to %d dimensions",
                       shp, NN_MAX_DIMS);
  for (int i = 0; i < m->sample.ndim; i++)
    if (m->sample.dim[i] < 1)
      return nn_error_at(err, NN_EINVAL, path, 0, 0, "sample shape %s has a dimension < 1", shp);
  if (m->ftype != NN_FEAT_U8 && m->ftype != NN_FEAT_F32)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "unknown feature type %d", (int)m->ftype);
  if (m->num_classes < 0 || (m->num_classes == 0) != (m->target_dim > 0) || m->target_dim < 0)
    return nn_error_at(err, NN_EINVAL, path, 0, 0,
                       "num_classes %d, target_dim %d: a shard has either classes (> 0) or "
                       "regression targets (target_dim > 0)",
                       m->num_classes, m->target_dim);
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

  w = calloc(1, sizeof *w);
  if (!w) return nn_error_set(err, NN_ENOMEM, "out of memory");
  w->file = w->feat = w->lab = -1;
  w->ftype = m->ftype;
  w->num_classes = m->num_classes;
  w->target_dim = m->target_dim;
  w->rowlen = shape_count(&m->sample);
  w->rowbytes = w->rowlen * ftype_size(m->ftype);
  w->chunk_rows = (int64_t)(DS_CHUNK_BYTES / w->rowbytes);
  if (w->chunk_rows > DS_CHUNK_ROWS) w->chunk_rows = DS_CHUNK_ROWS;
  if (w->chunk_rows < 1) w->chunk_rows = 1;
  w->fdims = m->sample.ndim + 1;
  for (int i = 0; i < m->sample.ndim; i++) w->fshape[i + 1] = (hsize_t)m->sample.dim[i];
  size_t lsz = m->num_classes > 0 ? sizeof(int32_t) : sizeof(float) * (size_t)m->target_dim;
  w->path = strdup(path);
  w->tmp = malloc(strlen(path) + 5);
  w->buf = malloc((size_t)w->chunk_rows * w->rowbytes);
  w->lbuf = malloc((size_t)w->chunk_rows * lsz);
  if (!w->path || !w->tmp || !w->buf || !w->lbuf) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto cleanup;
  }
  sprintf(w->tmp, "%s.tmp", path);

  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (w->file < 0) {
    rc = h5_fail(err, NN_EIO, w->tmp, NULL, "cannot create the file");
    goto cleanup;
  }
  hid_t ftype = m->ftype == NN_FEAT_U8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
  w->feat = make_dataset(w->file, "features", ftype, w->fdims, w->fshape,
                         (hsize_t)w->chunk_rows, 1);
  if (w->feat < 0) {
    rc = h5_fail(err, NN_EIO, w->tmp, "/features", "cannot create the dataset");
    goto cleanup;
  }
  if (m->num_classes > 0) {
    hsize_t ld[1] = {0};
    w->lab = make_dataset(w->file, "labels", H5T_STD_I32LE, 1, ld, DS_LABEL_CHUNK, 0);
  } else {
    hsize_t td[2] = {0, (hsize_t)m->target_dim};
    w->lab = make_dataset(w->file, "targets", H5T_IEEE_F32LE, 2, td, DS_LABEL_CHUNK, 0);
  }
  if (w->lab < 0) {
    rc = h5_fail(err, NN_EIO, w->tmp, m->num_classes > 0 ? "/labels" : "/targets",
                 "cannot create the dataset");
    goto cleanup;
  }
  int32_t version = NN_SHARD_VERSION, ncls = m->num_classes, si = m->shard_index,
          sc = m->shard_count;
  int32_t sshape[NN_MAX_DIMS];
  for (int i = 0; i < m->sample.ndim; i++) sshape[i] = m->sample.dim[i];
  if (attr_write_str(w->file, "format", NN_SHARD_FORMAT) ||
      attr_write(w->file, "version", H5T_NATIVE_INT32, &version, 0) ||
      attr_write(w->file, "sample_shape", H5T_NATIVE_INT32, sshape, m->sample.ndim) ||
      attr_write(w->file, "num_classes", H5T_NATIVE_INT32, &ncls, 0) ||
      attr_write(w->file, "feature_scale", H5T_NATIVE_DOUBLE, &m->feature_scale, 0) ||
      attr_write(w->file, "mean", H5T_NATIVE_DOUBLE, m->mean, m->channels) ||
      attr_write(w->file, "std", H5T_NATIVE_DOUBLE, m->std, m->channels) ||
      attr_write_str(w->file, "split", m->split ? m->split : "") ||
      attr_write_str(w->file, "source", m->source ? m->source : "") ||
      attr_write(w->file, "shard_index", H5T_NATIVE_INT32, &si, 0) ||
      attr_write(w->file, "shard_count", H5T_NATIVE_INT32, &sc, 0)) {
    rc = h5_fail(err, NN_EIO, w->tmp, NULL, "cannot write the root attributes");
    goto cleanup;
  }
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
                 ftype_mem(w->ftype), w->buf))
    return h5_fail(err, NN_EIO, w->tmp, "/features", "cannot write rows %lld..%lld",
                   (long long)w->written, (long long)(w->written + w->buffered - 1));
  int rc;
  if (w->num_classes > 0) {
    hsize_t ld[1] = {0};
    rc = write_rows(w->lab, 1, ld, (hsize_t)w->written, (hsize_t)w->buffered, H5T_NATIVE_INT32,
                    w->lbuf);
  } else {
    hsize_t td[2] = {0, (hsize_t)w->target_dim};
    rc = write_rows(w->lab, 2, td, (hsize_t)w->written, (hsize_t)w->buffered, H5T_NATIVE_FLOAT,
                    w->lbuf);
  }
  if (rc)
    return h5_fail(err, NN_EIO, w->tmp, w->num_classes > 0 ? "/labels" : "/targets",
                   "cannot write rows %lld..%lld", (long long)w->written,
                   (long long)(w->written + w->buffered - 1));
  w->written += w->buffered;
  w->buffered = 0;
  return 0;
}

int nn_shard_append(nn_shard_writer *w, const void *features, const int32_t *labels,
                    const float *targets, int64_t n, nn_error *err) {
  if (n < 0 || (n > 0 && !features))
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: bad sample count or no features");
  if (w->num_classes > 0 && n > 0 && !labels)
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: a classification shard needs labels");
  if (w->num_classes == 0 && n > 0 && !targets)
    return nn_error_at(err, NN_EINVAL, w->path, 0, 0, "append: a regression shard needs targets");
  if (labels)
    for (int64_t i = 0; i < n && w->num_classes > 0; i++)
      if (labels[i] < 0 || labels[i] >= w->num_classes)
        return nn_error_at(err, NN_EDATA, w->path, 0, 0,
                           "sample %lld: label %d is outside [0, %d)",
                           (long long)(w->written + w->buffered + i), (int)labels[i],
                           w->num_classes);
  const uint8_t *f = features;
  size_t lsz = w->num_classes > 0 ? sizeof(int32_t) : sizeof(float) * (size_t)w->target_dim;
  const uint8_t *l = w->num_classes > 0 ? (const void *)labels : (const void *)targets;
  int64_t done = 0;
  while (done < n) {
    int64_t take = w->chunk_rows - w->buffered;
    if (take > n - done) take = n - done;
    memcpy(w->buf + (size_t)w->buffered * w->rowbytes, f + (size_t)done * w->rowbytes,
           (size_t)take * w->rowbytes);
    memcpy((uint8_t *)w->lbuf + (size_t)w->buffered * lsz, l + (size_t)done * lsz,
           (size_t)take * lsz);
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
  if (attr_write(w->file, "num_samples", H5T_NATIVE_INT64, &total, 0) < 0) {
    rc = h5_fail(err, NN_EIO, w->tmp, "num_samples", "cannot write the attribute");
    goto cleanup;
  }
  if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
    rc = h5_fail(err, NN_EIO, w->tmp, NULL, "cannot flush the file");
    goto cleanup;
  }
  herr_t e1 = H5Dclose(w->lab), e2 = H5Dclose(w->feat), e3 = H5Fclose(w->file);
  w->lab = w->feat = w->file = -1;
  if (e1 < 0 || e2 < 0 || e3 < 0) {
    rc = h5_fail(err, NN_EIO, w->tmp, NULL, "cannot close the file");
    goto cleanup;
  }
  /* Make the data durable before the rename makes it visible. */
  int fd = open(w->tmp, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    rc = nn_error_at(err, NN_EIO, w->tmp, 0, 0, "cannot sync: %s", strerror(errno));
    if (fd >= 0) close(fd);
    goto cleanup;
  }
  close(fd);
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
  h5_quiet();
  char *tmp = w->tmp;
  w->tmp = NULL;
  writer_free(w);
  H5Eclear2(H5E_DEFAULT);
  if (tmp) unlink(tmp);
  free(tmp);
}

/* ---- reader --------------------------------------------------------------- */

/* Filters we can undo ourselves, in pipeline (write) order. */
enum { DS_MAX_FILTERS = 4 };

typedef struct ds_shard {
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
  H5Z_filter_t filter[DS_MAX_FILTERS];  /* pipeline order */
  uint8_t **chunk;          /* [nchunks] decoded chunk [chunk_rows, rowbytes], or NULL */
  uint64_t *used;           /* [nchunks] tick of last use */
  size_t cached_bytes;      /* decoded bytes held in chunk[] */
} ds_shard;

typedef struct ds_ref {
  int64_t g;  /* global sample index */
  int pos;    /* position in the caller's request */
} ds_ref;

struct nn_dataset {
  nn_dataset_info info;
  int nfiles;
  ds_shard *shards;   /* [nfiles] */
  int32_t *labels;    /* [n] or NULL (regression) */
  float *targets;     /* [n, T] or NULL (classification) */
  uint8_t *cache;     /* [n, rowbytes] stored features when opts.cache, else NULL */
  size_t rowlen;      /* floats per sample */
  size_t rowbytes;    /* stored bytes per sample */
  float lut[256];     /* u8 value v -> (float)(v * feature_scale) */
  ds_ref *order;      /* scratch [order_cap] */
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

/* Read one shard's description into info (n = its rows) and s. Opens s->file
 * and s->feat with a chunk cache of cache_bytes. */
static int shard_open(ds_shard *s, size_t cache_bytes, nn_dataset_info *info, nn_error *err) {
  const char *p = s->path;
  char fmt[64];
  int rc = h5_open_file(p, &s->file, err);
  if (rc) return rc;
  rc = attr_read_str(s->file, p, "format", fmt, sizeof fmt, err);
  if (rc) return rc;
  if (strcmp(fmt, NN_SHARD_FORMAT) != 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "format is '%s', expected '%s' (not a data shard)",
                       fmt, NN_SHARD_FORMAT);
  int version = 0;
  rc = attr_read_int(s->file, p, "version", &version, err);
  if (rc) return rc;
  if (version != NN_SHARD_VERSION)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "shard format version %d; this build of nntrain reads version %d", version,
                       NN_SHARD_VERSION);
  int32_t sshape[NN_MAX_DIMS];
  int nd = 0;
  rc = attr_read_num(s->file, p, "sample_shape", H5T_NATIVE_INT32, sshape, NN_MAX_DIMS, 0, &nd,
                     err);
  if (rc) return rc;
  info->sample.ndim = nd;
  for (int i = 0; i < nd; i++) {
    if (sshape[i] < 1)
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'sample_shape' has a dimension < 1");
    info->sample.dim[i] = sshape[i];
  }
  if ((rc = attr_read_int(s->file, p, "num_classes", &info->num_classes, err))) return rc;
  if (info->num_classes < 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'num_classes' is %d, expected >= 0",
                       info->num_classes);
  if ((rc = attr_read_num(s->file, p, "feature_scale", H5T_NATIVE_DOUBLE, &info->feature_scale, 1,
                          1, NULL, err)))
    return rc;
  if (!(info->feature_scale > 0) || !isfinite(info->feature_scale))
    return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'feature_scale' is %g, expected > 0",
                       info->feature_scale);
  int cm = 0, cs = 0;
  if ((rc = attr_read_num(s->file, p, "mean", H5T_NATIVE_DOUBLE, info->mean, NN_SHARD_MAX_CHANNELS,
                          0, &cm, err)))
    return rc;
  if ((rc = attr_read_num(s->file, p, "std", H5T_NATIVE_DOUBLE, info->std, NN_SHARD_MAX_CHANNELS,
                          cm, &cs, err)))
    return rc;
  info->channels = cm;
  if (cm != nn_shard_channels(&info->sample))
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attributes 'mean'/'std' have %d values, the sample shape needs %d", cm,
                       nn_shard_channels(&info->sample));
  if ((rc = attr_read_int(s->file, p, "shard_index", &s->shard_index, err))) return rc;
  if ((rc = attr_read_int(s->file, p, "shard_count", &s->shard_count, err))) return rc;
  int64_t nsamp = 0;
  if ((rc = attr_read_num(s->file, p, "num_samples", H5T_NATIVE_INT64, &nsamp, 1, 1, NULL, err)))
    return rc;

  /* /features: rank, dims, type. */
  htri_t ex = H5Lexists(s->file, "features", H5P_DEFAULT);
  if (ex <= 0) return nn_error_at(err, NN_EDATA, p, 0, 0, "missing dataset /features");
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0) return h5_fail(err, NN_EIO, p, "/features", "cannot make a property list");
  /* Hash slots: ~10 per chunk that fits, for the smallest chunk our writer
   * makes for this sample size (uint8 rows); a slot costs one pointer. */
  size_t row_u8 = shape_count(&info->sample);
  size_t crows = DS_CHUNK_BYTES / row_u8;
  crows = crows > DS_CHUNK_ROWS ? DS_CHUNK_ROWS : crows < 1 ? 1 : crows;
  size_t slots = 10 * (cache_bytes / (crows * row_u8)) + 1;
  if (slots < 521) slots = 521;
  if (slots > ((size_t)1 << 20)) slots = ((size_t)1 << 20) + 7;
  H5Pset_chunk_cache(dapl, slots, cache_bytes < DS_H5_CACHE ? cache_bytes : DS_H5_CACHE, 0.0);
  s->feat = H5Dopen2(s->file, "features", dapl);
  if (s->feat < 0) {
    int rc2 = h5_fail(err, NN_EDATA, p, "/features", "cannot open the dataset");
    H5Pclose(dapl);
    return rc2;
  }
  H5Pclose(dapl);
  s->fspace = H5Dget_space(s->feat);
  hid_t t = H5Dget_type(s->feat);
  if (s->fspace < 0 || t < 0) {
    if (t >= 0) H5Tclose(t);
    return h5_fail(err, NN_EDATA, p, "/features", "cannot read the shape and type");
  }
  H5T_class_t cls = H5Tget_class(t);
  size_t tsz = H5Tget_size(t);
  H5T_sign_t sg = cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
  H5Tclose(t);
  if (cls == H5T_INTEGER && tsz == 1 && sg == H5T_SGN_NONE)
    info->ftype = NN_FEAT_U8;
  else if (cls == H5T_FLOAT && tsz == 4)
    info->ftype = NN_FEAT_F32;
  else
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/features has an element type other than uint8 or float32");
  hsize_t dims[NN_MAX_DIMS + 2];
  int rank = H5Sget_simple_extent_ndims(s->fspace);
  char shp[64];
  shape_fmt(&info->sample, shp, sizeof shp);
  if (rank != nd + 1)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "/features has %d dimensions, expected %d ([N] + sample_shape %s)", rank,
                       nd + 1, shp);
  H5Sget_simple_extent_dims(s->fspace, dims, NULL);
  for (int i = 0; i < nd; i++)
    if (dims[i + 1] != (hsize_t)info->sample.dim[i])
      return nn_error_at(err, NN_EDATA, p, 0, 0,
                         "/features dimension %d is %llu, but sample_shape %s says %d", i + 1,
                         (unsigned long long)dims[i + 1], shp, info->sample.dim[i]);
  if ((int64_t)dims[0] != nsamp)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/features has %llu rows, num_samples says %lld",
                       (unsigned long long)dims[0], (long long)nsamp);
  s->n = nsamp;
  info->n = nsamp;

  /* Labels or targets: present as the class count says. */
  const char *lname = info->num_classes > 0 ? "labels" : "targets";
  if (H5Lexists(s->file, lname, H5P_DEFAULT) <= 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "missing dataset /%s (num_classes is %d)", lname,
                       info->num_classes);
  hid_t d = H5Dopen2(s->file, lname, H5P_DEFAULT);
  if (d < 0) return h5_fail(err, NN_EDATA, p, lname, "cannot open the dataset");
  hid_t sp = H5Dget_space(d);
  int lr = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  hsize_t ldims[2] = {0, 0};
  if (lr >= 1 && lr <= 2) H5Sget_simple_extent_dims(sp, ldims, NULL);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  if (info->num_classes > 0 && (lr != 1 || (int64_t)ldims[0] != nsamp))
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/labels must be [%lld], found %d-d with %llu rows",
                       (long long)nsamp, lr, (unsigned long long)ldims[0]);
  if (info->num_classes == 0) {
    if (lr != 2 || (int64_t)ldims[0] != nsamp || ldims[1] < 1)
      return nn_error_at(err, NN_EDATA, p, 0, 0, "/targets must be [%lld, T], found %d-d with %llu rows",
                         (long long)nsamp, lr, (unsigned long long)ldims[0]);
    info->target_dim = (int)ldims[1];
  } else {
    info->target_dim = 0;
  }
  return 0;
}

/* Read all labels / targets of shard s into dst (rows s->n); check labels. */
static int shard_load_labels(ds_shard *s, const nn_dataset_info *info, void *dst, nn_error *err) {
  const char *lname = info->num_classes > 0 ? "labels" : "targets";
  hid_t d = H5Dopen2(s->file, lname, H5P_DEFAULT);
  if (d < 0) return h5_fail(err, NN_EDATA, s->path, lname, "cannot open the dataset");
  herr_t e = H5Dread(d, info->num_classes > 0 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, H5S_ALL,
                     H5S_ALL, H5P_DEFAULT, dst);
  if (e < 0) {
    int rc = h5_fail(err, NN_EDATA, s->path, info->num_classes > 0 ? "/labels" : "/targets",
                     "cannot read (damaged file?)");
    H5Dclose(d);
    return rc;
  }
  H5Dclose(d);
  if (info->num_classes > 0) {
    const int32_t *l = dst;
    for (int64_t i = 0; i < s->n; i++)
      if (l[i] < 0 || l[i] >= info->num_classes) {
        nn_error_at(err, NN_EDATA, s->path, 0, 0,
                    "/labels row %lld: label %d is outside [0, %d) (num_classes %d)", (long long)i,
                    (int)l[i], info->num_classes, info->num_classes);
        if (err) snprintf(err->where, sizeof err->where, "/labels");
        return NN_EDATA;
      }
  } else {
    const float *t = dst;
    for (int64_t i = 0; i < s->n * info->target_dim; i++)
      if (!isfinite(t[i]))
        return nn_error_at(err, NN_EDATA, s->path, 0, 0, "/targets row %lld: value is not finite",
                           (long long)(i / info->target_dim));
  }
  return 0;
}

/* Compare shard b's description with the dataset's a (from file `first`). */
static int shard_agree(const nn_dataset_info *a, const char *first, const nn_dataset_info *b,
                       const char *path, nn_error *err) {
  char s1[64], s2[64];
  if (!shape_same(&a->sample, &b->sample)) {
    shape_fmt(&a->sample, s1, sizeof s1);
    shape_fmt(&b->sample, s2, sizeof s2);
    return nn_error_at(err, NN_EDATA, path, 0, 0, "sample shape %s differs from %s in %s", s2, s1,
                       first);
  }
  if (a->ftype != b->ftype)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "features are %s, but %s in %s",
                       ftype_name(b->ftype), ftype_name(a->ftype), first);
  if (a->num_classes != b->num_classes)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "num_classes %d differs from %d in %s",
                       b->num_classes, a->num_classes, first);
  if (a->target_dim != b->target_dim)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "target dimension %d differs from %d in %s",
                       b->target_dim, a->target_dim, first);
  if (a->feature_scale != b->feature_scale)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "feature_scale %.9g differs from %.9g in %s",
                       b->feature_scale, a->feature_scale, first);
  for (int c = 0; c < a->channels; c++)
    if (a->mean[c] != b->mean[c] || a->std[c] != b->std[c])
      return nn_error_at(err, NN_EDATA, path, 0, 0,
                         "statistics differ from %s (channel %d: mean %.9g vs %.9g, std %.9g vs "
                         "%.9g); shards of one dataset must share the training statistics",
                         first, c, b->mean[c], a->mean[c], b->std[c], a->std[c]);
  return 0;
}

/* Decide whether shard s can use the direct chunk path, and set it up:
 * /features chunked as [r, whole sample] with only shuffle and deflate. */
static int shard_setup_chunks(nn_dataset *ds, ds_shard *s, nn_error *err) {
  hid_t dcpl = H5Dget_create_plist(s->feat);
  if (dcpl < 0) return h5_fail(err, NN_EDATA, s->path, "/features", "cannot read the layout");
  int rank = ds->info.sample.ndim + 1, ok = 0;
  hsize_t ch[NN_MAX_DIMS + 1];
  if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, rank, ch) == rank) {
    ok = 1;
    for (int i = 1; i < rank; i++)
      if (ch[i] != (hsize_t)ds->info.sample.dim[i - 1]) ok = 0;
    int nf = H5Pget_nfilters(dcpl);
    if (nf < 0 || nf > DS_MAX_FILTERS) ok = 0;
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
  s->chunk = calloc((size_t)s->nchunks, sizeof *s->chunk);
  s->used = calloc((size_t)s->nchunks, sizeof *s->used);
  if (!s->chunk || !s->used) return nn_error_set(err, NN_ENOMEM, "out of memory");
  s->fast = 1;
  return 0;
}

static int chunk_load(nn_dataset *ds, ds_shard *s, int64_t c, nn_error *err);

static int has_glob_magic(const char *p) { return strpbrk(p, "*?[") != NULL; }

int nn_dataset_open(nn_dataset **out, const char *pattern, const nn_dataset_opts *opts,
                    nn_error *err) {
  int rc = 0;
  nn_dataset *ds = NULL;
  nn_dataset_info *tmp = NULL;
  glob_t g;
  int globbed = 0;
  *out = NULL;
  h5_quiet();
  nn_dataset_opts o = {0, 0};
  if (opts) o = *opts;
  size_t cache_bytes = o.chunk_cache ? o.chunk_cache : DS_DEFAULT_CACHE;

  /* An existing path is taken as named, even if it has glob characters. */
  memset(&g, 0, sizeof g);
  struct stat st;
  char *one[1] = {(char *)pattern};
  char **paths = one;
  size_t npaths = 1;
  int gr = 0;
  if (stat(pattern, &st) != 0) {
    gr = glob(pattern, 0, NULL, &g);
    globbed = 1;
    paths = g.gl_pathv;
    npaths = gr == 0 ? g.gl_pathc : 0;
  }
  if (gr == GLOB_NOMATCH || (gr == 0 && npaths == 0)) {
    if (!has_glob_magic(pattern))
      rc = nn_error_at(err, NN_ENOTFOUND, pattern, 0, 0, "no such file");
    else
      rc = nn_error_at(err, NN_ENOTFOUND, pattern, 0, 0, "no files match this pattern");
    goto cleanup;
  }
  if (gr != 0) {
    rc = nn_error_at(err, gr == GLOB_NOSPACE ? NN_ENOMEM : NN_EIO, pattern, 0, 0,
                     "cannot expand the pattern");
    goto cleanup;
  }
  ds = calloc(1, sizeof *ds);
  tmp = calloc(1, sizeof *tmp);
  if (!ds || !tmp || !(ds->shards = calloc(npaths, sizeof *ds->shards))) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < npaths; i++) {
    ds_shard *s = &ds->shards[ds->nfiles++];
    s->file = s->feat = s->fspace = -1;
    if (!(s->path = strdup(paths[i]))) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    nn_dataset_info *dst = i == 0 ? &ds->info : tmp;
    if ((rc = shard_open(s, cache_bytes, dst, err))) goto cleanup;
    if (i > 0) {
      if ((rc = shard_agree(&ds->info, ds->shards[0].path, tmp, s->path, err))) goto cleanup;
      for (size_t j = 0; j < i; j++) {
        const ds_shard *q = &ds->shards[j];
        if (q->shard_count != s->shard_count) {
          rc = nn_error_at(err, NN_EDATA, s->path, 0, 0,
                           "is shard %d of %d, but %s is shard %d of %d: shards from different "
                           "preparations are mixed",
                           s->shard_index + 1, s->shard_count, q->path, q->shard_index + 1,
                           q->shard_count);
          goto cleanup;
        }
        if (q->shard_index == s->shard_index) {
          rc = nn_error_at(err, NN_EDATA, s->path, 0, 0,
                           "has the same shard_index %d as %s (a copy of one shard?)",
                           s->shard_index, q->path);
          goto cleanup;
        }
      }
    }
    s->first = i == 0 ? 0 : ds->shards[i - 1].first + ds->shards[i - 1].n;
  }
  ds->info.n = ds->shards[ds->nfiles - 1].first + ds->shards[ds->nfiles - 1].n;
  ds->info.nfiles = ds->nfiles;
  ds->rowlen = shape_count(&ds->info.sample);
  ds->rowbytes = ds->rowlen * ftype_size(ds->info.ftype);
  for (int v = 0; v < 256; v++) ds->lut[v] = (float)((double)v * ds->info.feature_scale);
  ds->cache_budget = cache_bytes;
  for (int i = 0; i < ds->nfiles; i++)
    if ((rc = shard_setup_chunks(ds, &ds->shards[i], err))) goto cleanup;

  /* Labels / targets of every shard, checked. */
  int64_t N = ds->info.n;
  if (ds->info.num_classes > 0)
    ds->labels = malloc((size_t)(N ? N : 1) * sizeof *ds->labels);
  else
    ds->targets = malloc((size_t)(N ? N : 1) * (size_t)ds->info.target_dim * sizeof(float));
  if (!ds->labels && !ds->targets) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for %lld labels", (long long)N);
    goto cleanup;
  }
  for (int i = 0; i < ds->nfiles; i++) {
    ds_shard *s = &ds->shards[i];
    if (s->n == 0) continue;
    void *dst = ds->labels ? (void *)(ds->labels + s->first)
                           : (void *)(ds->targets + (size_t)s->first * (size_t)ds->info.target_dim);
    if ((rc = shard_load_labels(s, &ds->info, dst, err))) goto cleanup;
  }

  if (o.cache) {
    ds->cache = malloc((size_t)(N ? N : 1) * ds->rowbytes);
    if (!ds->cache) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory caching %lld samples (%.1f MB)",
                        (long long)N, (double)N * (double)ds->rowbytes / 1e6);
      goto cleanup;
    }
    for (int i = 0; i < ds->nfiles; i++) {
      ds_shard *s = &ds->shards[i];
      if (s->n == 0) continue;
      if (s->fast) {
        /* Decode each chunk once, straight into the cache. */
        for (int64_t c = 0; c < s->nchunks; c++) {
          if ((rc = chunk_load(ds, s, c, err))) goto cleanup;
          int64_t r0 = c * s->chunk_rows, rows = s->n - r0;
          if (rows > s->chunk_rows) rows = s->chunk_rows;
          memcpy(ds->cache + (size_t)(s->first + r0) * ds->rowbytes, s->chunk[c],
                 (size_t)rows * ds->rowbytes);
          free(s->chunk[c]);
          s->chunk[c] = NULL;
          ds->cached_total -= s->cached_bytes;
          s->cached_bytes = 0;
        }
        continue;
      }
      if (H5Dread(s->feat, ftype_mem(ds->info.ftype), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                  ds->cache + (size_t)s->first * ds->rowbytes) < 0) {
        rc = h5_fail(err, NN_EDATA, s->path, "/features", "cannot read (damaged file?)");
        goto cleanup;
      }
    }
  }
  *out = ds;
  ds = NULL;
cleanup:
  if (globbed) globfree(&g);
  free(tmp);
  nn_dataset_close(ds);
  return rc;
}

const nn_dataset_info *nn_dataset_get_info(const nn_dataset *ds) { return &ds->info; }
size_t nn_dataset_cached_bytes(const nn_dataset *ds) { return ds->cached_total; }

const int32_t *nn_dataset_labels(const nn_dataset *ds) { return ds->labels; }
const float *nn_dataset_targets(const nn_dataset *ds) { return ds->targets; }

void nn_dataset_close(nn_dataset *ds) {
  if (!ds) return;
  for (int i = 0; i < ds->nfiles; i++) {
    ds_shard *s = &ds->shards[i];
    if (s->fspace >= 0) H5Sclose(s->fspace);
    if (s->feat >= 0) H5Dclose(s->feat);
    if (s->file >= 0) H5Fclose(s->file);
    for (int64_t c = 0; s->chunk && c < s->nchunks; c++) free(s->chunk[c]);
    free(s->chunk);
    free(s->used);
    free(s->path);
  }
  H5Eclear2(H5E_DEFAULT);
  free(ds->shards);
  free(ds->labels);
  free(ds->targets);
  free(ds->cache);
  free(ds->order);
  free(ds->stage);
  free(ds->zbuf);
  free(ds->ubuf);
  free(ds);
}

/* Stored row `src` -> floats dst[rowlen]. */
static void convert_row(const nn_dataset *ds, const uint8_t *src, float *dst) {
  size_t n = ds->rowlen;
  if (ds->info.ftype == NN_FEAT_U8) {
    for (size_t k = 0; k < n; k++) dst[k] = ds->lut[src[k]];
  } else {
    const float *f = (const float *)(const void *)src;
    double sc = ds->info.feature_scale;
    if (sc == 1.0) {
      memcpy(dst, f, n * sizeof *dst);
    } else {
      for (size_t k = 0; k < n; k++) dst[k] = (float)((double)f[k] * sc);
    }
  }
}

static int ref_cmp(const void *a, const void *b) {
  const ds_ref *x = a, *y = b;
  if (x->g != y->g) return x->g < y->g ? -1 : 1;
  return x->pos - y->pos;
}

/* Undo HDF5's shuffle filter: src holds all bytes 0 of n elements of size
 * esz, then all bytes 1, ...; dst gets the elements. */
static void unshuffle(const uint8_t *src, uint8_t *dst, size_t n, size_t esz) {
  for (size_t b = 0; b < esz; b++) {
    const uint8_t *p = src + b * n;
    for (size_t i = 0; i < n; i++) dst[i * esz + b] = p[i];
  }
}

/* Make chunk c of shard s resident (decoded), evicting least recently used
 * chunks beyond the cache budget. */
static int chunk_load(nn_dataset *ds, ds_shard *s, int64_t c, nn_error *err) {
  s->used[c] = ++ds->tick;
  if (s->chunk[c]) return 0;
  size_t raw = (size_t)s->chunk_rows * ds->rowbytes;
  /* One budget for the whole data set, so memory does not grow with the
   * number of shards: evict the least recently used chunk of any shard. */
  while (ds->cached_total + raw > ds->cache_budget && ds->cached_total > 0) {
    ds_shard *vs = NULL;
    int64_t victim = -1;
    for (int f = 0; f < ds->nfiles; f++) {
      ds_shard *t = &ds->shards[f];
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
  uint8_t *out = malloc(raw);
  if (!out) return nn_error_set(err, NN_ENOMEM, "out of memory for a %zu-byte chunk", raw);
  hsize_t off[NN_MAX_DIMS + 1] = {0};
  off[0] = (hsize_t)(c * s->chunk_rows);
  hsize_t stored = 0;
  int rc = 0;
  if (H5Dget_chunk_storage_size(s->feat, off, &stored) < 0) {
    rc = h5_fail(err, NN_EDATA, s->path, "/features", "cannot locate chunk %lld", (long long)c);
    goto cleanup;
  }
  if (stored == 0) { /* never written: the fill value */
    memset(out, 0, raw);
    goto cleanup;
  }
  if (stored > ds->zcap) {
    uint8_t *nz = realloc(ds->zbuf, (size_t)stored);
    if (!nz) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    ds->zbuf = nz;
    ds->zcap = (size_t)stored;
  }
  if (raw > ds->ucap) {
    uint8_t *nu = realloc(ds->ubuf, raw);
    if (!nu) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    ds->ubuf = nu;
    ds->ucap = raw;
  }
  uint32_t mask = 0;
  if (H5Dread_chunk(s->feat, H5P_DEFAULT, off, &mask, ds->zbuf) < 0) {
    rc = h5_fail(err, NN_EDATA, s->path, "/features", "cannot read chunk %lld (damaged file?)",
                 (long long)c);
    goto cleanup;
  }
  /* Undo the filters in reverse pipeline order; cur/len is the data so far. */
  const uint8_t *cur = ds->zbuf;
  size_t len = (size_t)stored;
  for (int i = s->nfilters - 1; i >= 0; i--) {
    if (mask & (1u << i)) continue; /* filter skipped for this chunk */
    size_t esz = ftype_size(ds->info.ftype);
    if (s->filter[i] == H5Z_FILTER_SHUFFLE && esz == 1) continue; /* identity */
    uint8_t *dst = (cur == out) ? ds->ubuf : out;
    if (s->filter[i] == H5Z_FILTER_DEFLATE) {
      uLongf got = (uLongf)raw;
      int zr = uncompress(dst, &got, cur, (uLong)len);
      if (zr != Z_OK || got != raw) {
        rc = nn_error_at(err, NN_EDATA, s->path, 0, 0,
                         "/features chunk %lld: deflate data is damaged (%s)", (long long)c,
                         zr == Z_OK ? "wrong size" : zError(zr));
        goto cleanup;
      }
      len = raw;
    } else {
      if (len != raw) {
        rc = nn_error_at(err, NN_EDATA, s->path, 0, 0, "/features chunk %lld has %zu bytes, expected %zu",
                         (long long)c, len, raw);
        goto cleanup;
      }
      unshuffle(cur, dst, raw / esz, esz);
    }
    cur = dst;
  }
  if (len != raw) {
    rc = nn_error_at(err, NN_EDATA, s->path, 0, 0, "/features chunk %lld has %zu bytes, expected %zu",
                     (long long)c, len, raw);
    goto cleanup;
  }
  if (cur != out) memcpy(out, cur, raw);
cleanup:
  if (rc) {
    free(out);
    return rc;
  }
  s->chunk[c] = out;
  s->cached_bytes += raw;
  ds->cached_total += raw;
  return 0;
}

/* Read the sorted refs r[0..m) (all in shard s) into x. Direct chunk path:
 * copy rows out of decoded chunks. Otherwise: one H5Dread per run of
 * consecutive rows (a single-block selection, which HDF5 handles without
 * per-element work) into the staging buffer, then scatter. */
static int read_shard_group(nn_dataset *ds, ds_shard *s, const ds_ref *r, int m, float *x,
                            nn_error *err) {
  int rc = 0;
  if (s->fast) {
    for (int i = 0; i < m; i++) {
      int64_t row = r[i].g - s->first, c = row / s->chunk_rows;
      if (!s->chunk[c] || s->used[c] != ds->tick) {
        if ((rc = chunk_load(ds, s, c, err))) return rc;
      }
      convert_row(ds, s->chunk[c] + (size_t)(row - c * s->chunk_rows) * ds->rowbytes,
                  x + (size_t)r[i].pos * ds->rowlen);
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
      uint8_t *ns = realloc(ds->stage, rows * ds->rowbytes);
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
      rc = h5_fail(err, NN_EIO, s->path, "/features", "cannot select rows");
      goto cleanup;
    }
    if (H5Dread(s->feat, ftype_mem(ds->info.ftype), ms, s->fspace, H5P_DEFAULT, ds->stage) < 0) {
      rc = h5_fail(err, NN_EDATA, s->path, "/features",
                   "cannot read rows %lld..%lld (damaged file?)", (long long)(a - s->first),
                   (long long)(b - s->first));
      goto cleanup;
    }
    H5Sclose(ms);
    ms = -1;
    for (int k = i; k < j; k++)
      convert_row(ds, ds->stage + (size_t)(r[k].g - a) * ds->rowbytes,
                  x + (size_t)r[k].pos * ds->rowlen);
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
    for (int i = 0; i < n; i++) labels[i] = ds->labels[idx[i]];
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
      convert_row(ds, ds->cache + (size_t)idx[i] * ds->rowbytes, x + (size_t)i * ds->rowlen);
    return 0;
  }
  if (n > ds->order_cap) {
    ds_ref *no = realloc(ds->order, (size_t)n * sizeof *no);
    if (!no) return nn_error_set(err, NN_ENOMEM, "out of memory for a read of %d samples", n);
    ds->order = no;
    ds->order_cap = n;
  }
  ds_ref *r = ds->order;
  for (int i = 0; i < n; i++) {
    r[i].g = idx[i];
    r[i].pos = i;
  }
  qsort(r, (size_t)n, sizeof *r, ref_cmp);
  int sh = 0;
  for (int i = 0; i < n;) {
    while (r[i].g >= ds->shards[sh].first + ds->shards[sh].n) sh++;
    ds_shard *s = &ds->shards[sh];
    int j = i;
    while (j < n && r[j].g < s->first + s->n) j++;
    int rc = read_shard_group(ds, s, r + i, j - i, x, err);
    if (rc) return rc;
    i = j;
  }
  return 0;
}

/* ---- describe ------------------------------------------------------------- */

int nn_shard_describe(const char *path, nn_shard_desc *d, nn_error *err) {
  hid_t f = -1, ds = -1, dcpl = -1, sp = -1, t = -1;
  memset(d, 0, sizeof *d);
  d->deflate = -1;
  int rc = h5_open_file(path, &f, err);
  if (rc) return rc;
  if ((rc = attr_read_str(f, path, "format", d->format, sizeof d->format, err))) goto cleanup;
  if (strcmp(d->format, NN_SHARD_FORMAT) != 0) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "format is '%s', expected '%s' (not a data shard)",
                     d->format, NN_SHARD_FORMAT);
    goto cleanup;
  }
  if ((rc = attr_read_int(f, path, "version", &d->version, err))) goto cleanup;
  if ((rc = attr_read_str(f, path, "split", d->split, sizeof d->split, err))) goto cleanup;
  if ((rc = attr_read_str(f, path, "source", d->source, sizeof d->source, err))) goto cleanup;
  if ((rc = attr_read_int(f, path, "shard_index", &d->shard_index, err))) goto cleanup;
  if ((rc = attr_read_int(f, path, "shard_count", &d->shard_count, err))) goto cleanup;
  if ((rc = attr_read_num(f, path, "num_samples", H5T_NATIVE_INT64, &d->n, 1, 1, NULL, err)))
    goto cleanup;
  if (H5Lexists(f, "features", H5P_DEFAULT) <= 0) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "missing dataset /features");
    goto cleanup;
  }
  ds = H5Dopen2(f, "features", H5P_DEFAULT);
  if (ds < 0 || (dcpl = H5Dget_create_plist(ds)) < 0 || (sp = H5Dget_space(ds)) < 0 ||
      (t = H5Dget_type(ds)) < 0) {
    rc = h5_fail(err, NN_EDATA, path, "/features", "cannot open the dataset");
    goto cleanup;
  }
  hsize_t dims[NN_MAX_DIMS + 2] = {0}, ch[NN_MAX_DIMS + 2] = {0};
  int rank = H5Sget_simple_extent_ndims(sp);
  if (rank < 1 || rank > NN_MAX_DIMS + 1) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "/features has %d dimensions", rank);
    goto cleanup;
  }
  H5Sget_simple_extent_dims(sp, dims, NULL);
  d->raw_bytes = (int64_t)H5Tget_size(t);
  for (int i = 0; i < rank; i++) d->raw_bytes *= (int64_t)dims[i];
  d->stored_bytes = (int64_t)H5Dget_storage_size(ds);
  if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
    d->chunk_ndim = H5Pget_chunk(dcpl, rank, ch);
    for (int i = 0; i < d->chunk_ndim && i <= NN_MAX_DIMS; i++) d->chunk[i] = (int64_t)ch[i];
  }
  int nf = H5Pget_nfilters(dcpl);
  for (int i = 0; i < nf; i++) {
    unsigned flags = 0, cd[8] = {0}, fc = 0;
    size_t ncd = 8;
    char name[64];
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof name, name, &fc);
    if (id == H5Z_FILTER_DEFLATE) d->deflate = ncd > 0 ? (int)cd[0] : 0;
    if (id == H5Z_FILTER_SHUFFLE) d->shuffle = 1;
  }
cleanup:
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (ds >= 0) H5Dclose(ds);
  if (f >= 0) H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}
