/* idx.c: IDX file reader (see idx.h). zlib's gzread reads both gzip and
 * plain files, so one code path serves both; the gzip magic is only checked
 * to word messages ("decompressed data" vs "file"). */
#include "worker/idx.h"
#include "core/mem.h"

#include "worker/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Largest payload we accept (bytes); a header claiming more is damaged. */
#define IDX_MAX_BYTES ((int64_t)1 << 36)
/* gzread takes an unsigned count: read in pieces no larger than this. */
#define IDX_PIECE ((size_t)1 << 26)

static const char *idx_type_name(int t) {
  switch (t) {
  case 0x08: return "unsigned byte";
  case 0x09: return "signed byte";
  case 0x0B: return "int16";
  case 0x0C: return "int32";
  case 0x0D: return "float32";
  case 0x0E: return "float64";
  default: return "unknown";
  }
}

/* "60000x28x28" into buf. */
static void dims_str(const nn_idx *a, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < a->ndim && k < n; i++) {
    int w = snprintf(buf + k, n - k, "%s%lld", i ? "x" : "", (long long)a->dim[i]);
    if (w < 0) break;
    k += (size_t)w;
  }
}

/* Read up to `want` bytes into buf; returns bytes read, or -1 on a zlib
 * error (gz error text in *msg). Short counts mean end of input. */
static int64_t gz_read_full(gzFile g, uint8_t *buf, size_t want, const char **msg) {
  size_t got = 0;
  while (got < want) {
    size_t piece = want - got < IDX_PIECE ? want - got : IDX_PIECE;
    int r = gzread(g, buf + got, (unsigned)piece);
    if (r < 0) {
      int zerr = 0;
      *msg = gzerror(g, &zerr);
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (int64_t)got;
}

/* A big-endian 32-bit IDX dimension. */
static int64_t be32(const uint8_t *p) {
  return ((int64_t)p[0] << 24) | ((int64_t)p[1] << 16) | ((int64_t)p[2] << 8) | p[3];
}

static int gz_corrupt(const char *path, const char *zmsg, nn_error *err) {
  return nn_error_at(err, NN_EDATA, path, 0, 0, "corrupt gzip data (%s)", zmsg);
}

/* Read and check the IDX header from g into a->ndim, a->dim; *total gets the
 * payload bytes and *header the header bytes. `what` words messages
 * ("file" or "decompressed data"). */
static int idx_read_header(gzFile g, const char *path, const char *what, nn_idx *a,
                           int64_t *total, int64_t *header, nn_error *err) {
  const char *zmsg = NULL;
  uint8_t head[4] = {0};
  int64_t got = gz_read_full(g, head, 4, &zmsg);
  if (got < 0) return gz_corrupt(path, zmsg, err);
  if (got < 4)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "truncated: %s has %lld bytes, an IDX header needs at least 4", what,
                       (long long)got);
  if (head[0] != 0 || head[1] != 0)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "not an IDX file: magic bytes are %02x %02x %02x %02x, expected 00 00 08 NDIM",
                       head[0], head[1], head[2], head[3]);
  if (head[2] != 0x08)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "IDX element type 0x%02X (%s) is not supported; only 0x08 (unsigned byte) is",
                       head[2], idx_type_name(head[2]));
  a->ndim = head[3];
  if (a->ndim < 1 || a->ndim > NN_IDX_MAX_DIMS)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "IDX header has %d dimensions; expected 1 to %d", a->ndim, NN_IDX_MAX_DIMS);
  uint8_t dimbuf[4 * NN_IDX_MAX_DIMS];
  size_t dimbytes = 4 * (size_t)a->ndim;
  got = gz_read_full(g, dimbuf, dimbytes, &zmsg);
  if (got < 0) return gz_corrupt(path, zmsg, err);
  if ((size_t)got < dimbytes)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "truncated: the IDX header needs %zu bytes of dimensions, %s has %lld",
                       dimbytes, what, (long long)got);
  *total = 1;
  for (int i = 0; i < a->ndim; i++) {
    a->dim[i] = be32(dimbuf + 4 * i);
    if (a->dim[i] == 0)
      return nn_error_at(err, NN_EDATA, path, 0, 0,
                         "IDX dimension %d is 0; expected a positive size", i);
    if (*total > IDX_MAX_BYTES / a->dim[i])
      return nn_error_at(err, NN_EDATA, path, 0, 0,
                         "IDX dimensions are implausibly large (more than %lld bytes); is the "
                         "header damaged?",
                         (long long)IDX_MAX_BYTES);
    *total *= a->dim[i];
  }
  *header = 4 + (int64_t)dimbytes;
  return 0;
}

/* Read the total-byte payload from g into a new *out. The buffer grows as
 * data arrives, so a damaged gzip header cannot make us allocate a huge
 * block before we find out the stream is short. Then the input must end
 * exactly there, and a gzip stream cleanly. */
static int idx_read_payload(gzFile g, const char *path, const char *what, const char *dims,
                            int64_t total, uint8_t **out, nn_error *err) {
  const char *zmsg = NULL;
  uint8_t *data = NULL;
  size_t cap = 0, have = 0;
  int rc = 0, zerr = 0;
  int64_t got;
  while ((int64_t)have < total) {
    if (have == cap) {
      size_t ncap = cap ? cap * 2 : ((size_t)1 << 20);
      if ((int64_t)ncap > total) ncap = (size_t)total;
      uint8_t *nd = nn_realloc(data, ncap);
      if (!nd) {
        rc = nn_error_at(err, NN_ENOMEM, path, 0, 0, "out of memory reading %lld bytes",
                         (long long)total);
        goto cleanup;
      }
      data = nd;
      cap = ncap;
    }
    size_t want = cap - have;
    if ((got = gz_read_full(g, data + have, want, &zmsg)) < 0) {
      rc = gz_corrupt(path, zmsg, err);
      goto cleanup;
    }
    have += (size_t)got;
    if ((size_t)got < want) break; /* end of input */
  }
  if ((int64_t)have < total) {
    const char *m = gzerror(g, &zerr);
    if (zerr == Z_DATA_ERROR)
      rc = gz_corrupt(path, m, err);
    else
      rc = nn_error_at(err, NN_EDATA, path, 0, 0,
                       "truncated: dimensions %s need %lld bytes of data after the header, "
                       "the %s holds only %zu",
                       dims, (long long)total, what, have);
    goto cleanup;
  }
  uint8_t extra;
  if ((got = gz_read_full(g, &extra, 1, &zmsg)) < 0) {
    rc = gz_corrupt(path, zmsg, err);
  } else if (got > 0) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0,
                     "trailing data: dimensions %s need %lld bytes after the header, the %s has more",
                     dims, (long long)total, what);
  } else {
    const char *m = gzerror(g, &zerr);
    if (zerr != Z_OK)
      rc = nn_error_at(err, NN_EDATA, path, 0, 0, "truncated or corrupt gzip stream (%s)", m);
  }
cleanup:
  if (rc) free(data);
  else *out = data;
  return rc;
}

int nn_idx_read(const char *path, nn_idx *a, nn_error *err) {
  int rc = 0;
  gzFile g = NULL;
  uint8_t *data = NULL;
  memset(a, 0, sizeof *a);
  int64_t fsize = 0, total = 0, header = 0;
  if ((rc = nn_stat_file(path, "an IDX file", &fsize, err))) return rc;

  /* Peek at the magic to know whether this is gzip. */
  uint8_t head[2] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
  size_t nhead = fread(head, 1, 2, f);
  fclose(f);
  int gz = nhead == 2 && head[0] == 0x1f && head[1] == 0x8b;
  const char *what = gz ? "decompressed data" : "file";

  g = gzopen(path, "rb");
  if (!g) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
  gzbuffer(g, 1u << 17);
  if ((rc = idx_read_header(g, path, what, a, &total, &header, err))) goto cleanup;
  char dims[96];
  dims_str(a, dims, sizeof dims);

  /* A plain file's size tells us up front whether the payload is complete. */
  if (!gz && fsize != header + total) {
    if (fsize < header + total)
      rc = nn_error_at(err, NN_EDATA, path, 0, 0,
                       "truncated: dimensions %s need %lld bytes of data after the %lld-byte "
                       "header, the file has %lld",
                       dims, (long long)total, (long long)header, (long long)(fsize - header));
    else
      rc = nn_error_at(err, NN_EDATA, path, 0, 0,
                       "%lld bytes of trailing data: dimensions %s need %lld bytes after the header",
                       (long long)(fsize - header - total), dims, (long long)total);
    goto cleanup;
  }
  if ((rc = idx_read_payload(g, path, what, dims, total, &data, err))) goto cleanup;
  a->data = data;
  a->size = (size_t)total;
  a->gzipped = gz;
cleanup:
  gzclose(g);
  if (rc) memset(a, 0, sizeof *a);
  return rc;
}

int nn_idx_peek(const char *path, nn_idx *a, nn_error *err) {
  int rc = 0;
  gzFile g = NULL;
  const char *zmsg = NULL;
  uint8_t head[4 + 4 * NN_IDX_MAX_DIMS];
  memset(a, 0, sizeof *a);
  if ((rc = nn_stat_file(path, "an IDX file", NULL, err))) return rc;
  g = gzopen(path, "rb");
  if (!g) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
  a->gzipped = !gzdirect(g);
  int64_t got = gz_read_full(g, head, 4, &zmsg);
  if (got < 0) {
    rc = gz_corrupt(path, zmsg, err);
    goto cleanup;
  }
  if (got < 4 || head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] < 1 ||
      head[3] > NN_IDX_MAX_DIMS) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0,
                     "not a supported IDX file: the header must start 00 00 08 NDIM (NDIM 1 to %d)",
                     NN_IDX_MAX_DIMS);
    goto cleanup;
  }
  a->ndim = head[3];
  got = gz_read_full(g, head + 4, 4 * (size_t)a->ndim, &zmsg);
  if (got != 4 * a->ndim) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "truncated IDX header");
    goto cleanup;
  }
  for (int i = 0; i < a->ndim; i++) a->dim[i] = be32(head + 4 + 4 * i);
cleanup:
  gzclose(g);
  if (rc) memset(a, 0, sizeof *a);
  return rc;
}

void nn_idx_free(nn_idx *a) {
  if (!a) return;
  free(a->data);
  memset(a, 0, sizeof *a);
}
