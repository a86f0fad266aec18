/* checkpoint.c: HDF5 checkpoints (see checkpoint.h and docs/checkpoint-format.md).
 *
 * Three parts: the snapshot (owned copies of the arenas, allocated once), the
 * file codec (write_content / read_file, with one canonical checksum computed
 * from a snapshot in memory, so the writer hashes what it writes and the
 * reader hashes what it read), and the crash-safe protocol around it
 * (NAME.tmp, close, fsync, verify, rename, fsync directory) plus the
 * background writer thread. It is not a general HDF5 layer: it reads exactly
 * the layout it writes and rejects anything else.
 *
 * HDF5 is built thread-safe on this platform, so the writer thread may run
 * while the data loader reads shards; nn_ckpt_writer_start checks it
 * (H5is_library_threadsafe) and refuses to start otherwise. */
#include "coordinator/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checkpoint checksum hashes little-endian bytes straight from memory"
#endif

#define CKPT_PATH_MAX 1280   /* longest checkpoint path, with ".tmp" */
#define CKPT_DSET_MAX 192    /* longest dataset path inside the file */

/* ---- state table ------------------------------------------------------------ */

#define SF(n, t, h) {#n, t, offsetof(nn_ckpt_state, n), h}
static const nn_ckpt_field state_fields[] = {
    SF(step, NN_CKPT_I64, "global optimizer steps completed"),
    SF(epoch, NN_CKPT_I32, "epoch of the next step (0-based)"),
    SF(epoch_step, NN_CKPT_I64, "steps of `epoch` already done: the data position"),
    SF(seed, NN_CKPT_U64, "train.seed"),
    SF(optim_t, NN_CKPT_U64, "optimizer step counter (Adam bias correction)"),
    SF(nranks, NN_CKPT_I32, "ranks of the run that wrote it (information)"),
    SF(lr, NN_CKPT_F64, "learning rate of the last step"),
    SF(elapsed_s, NN_CKPT_F64, "training wall time so far, seconds"),
    SF(plateau_scale, NN_CKPT_F64, "reduce-on-plateau factor applied to the base lr"),
    SF(plateau_best, NN_CKPT_F64, "reduce-on-plateau: best monitored value so far"),
    SF(plateau_bad, NN_CKPT_I32, "reduce-on-plateau: epochs without improvement"),
    SF(plateau_cooldown, NN_CKPT_I32, "reduce-on-plateau: epochs of cooldown left"),
    SF(es_best, NN_CKPT_F64, "early stopping: best monitored value (NaN: none yet)"),
    SF(es_bad, NN_CKPT_I32, "early stopping: epochs without improvement"),
    SF(es_best_epoch, NN_CKPT_I32, "early stopping: epoch (1-based) of the best value, 0: none"),
    {NULL, NN_CKPT_I32, 0, NULL},
};
#undef SF

const nn_ckpt_field *nn_ckpt_state_fields(void) { return state_fields; }

static size_t ftype_size(nn_ckpt_ftype t) { return t == NN_CKPT_I32 ? 4 : 8; }

static hid_t ftype_h5(nn_ckpt_ftype t) {
  switch (t) {
  case NN_CKPT_I32: return H5T_NATIVE_INT32;
  case NN_CKPT_I64: return H5T_NATIVE_INT64;
  case NN_CKPT_U64: return H5T_NATIVE_UINT64;
  default: return H5T_NATIVE_DOUBLE;
  }
}

char *nn_ckpt_field_str(const nn_ckpt_state *st, const nn_ckpt_field *f, char *buf, size_t n) {
  const char *p = (const char *)st + f->offset;
  int32_t i32;
  int64_t i64;
  uint64_t u64;
  double d;
  switch (f->type) {
  case NN_CKPT_I32: memcpy(&i32, p, 4); snprintf(buf, n, "%" PRId32, i32); break;
  case NN_CKPT_I64: memcpy(&i64, p, 8); snprintf(buf, n, "%" PRId64, i64); break;
  case NN_CKPT_U64: memcpy(&u64, p, 8); snprintf(buf, n, "%" PRIu64, u64); break;
  default: memcpy(&d, p, 8); snprintf(buf, n, "%.17g", d); break;
  }
  return buf;
}

/* ---- checksum ------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static void fnv(uint64_t *h, const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t x = *h;
  for (size_t i = 0; i < n; i++) x = (x ^ b[i]) * FNV_PRIME;
  *h = x;
}

/* One item of the canonical serialization: name (UTF-8), a 0 byte, the
 * payload length as uint64 little-endian, the payload. */
static void hash_item(uint64_t *h, const char *name, const void *data, size_t n) {
  uint64_t len = n;
  fnv(h, name, strlen(name) + 1);
  fnv(h, &len, 8);
  if (n) fnv(h, data, n);
}

static const char *tensor_group(const nn_tensor_ref *t) { return t->is_buffer ? "buffers" : "params"; }

uint64_t nn_ckpt_checksum(const nn_ckpt_snapshot *s) {
  uint64_t h = FNV_OFFSET;
  char name[CKPT_DSET_MAX + 16];
  int32_t version = NN_CKPT_VERSION;
  hash_item(&h, "format", NN_CKPT_FORMAT, strlen(NN_CKPT_FORMAT));
  hash_item(&h, "version", &version, 4);
  hash_item(&h, "spec", s->spec, s->spec_len);
  for (int i = 0; i < s->ntensors; i++) {
    const nn_tensor_ref *t = &s->tensors[i];
    int64_t dims[NN_MAX_DIMS];
    for (int d = 0; d < t->shape.ndim; d++) dims[d] = t->shape.dim[d];
    snprintf(name, sizeof name, "%s/%s/%s:shape", tensor_group(t), t->layer, t->name);
    hash_item(&h, name, dims, 8 * (size_t)t->shape.ndim);
    snprintf(name, sizeof name, "%s/%s/%s", tensor_group(t), t->layer, t->name);
    const float *base = t->is_buffer ? s->buffers : s->params;
    hash_item(&h, name, base + t->offset, 4 * t->count);
  }
  hash_item(&h, "optimizer/type", s->optim_type, strlen(s->optim_type));
  hash_item(&h, "optimizer/t", &s->state.optim_t, 8);
  for (int k = 0; k < s->nslots; k++) {
    hash_item(&h, "optimizer/slot", s->slot_names[k], strlen(s->slot_names[k]));
    for (int i = 0; i < s->ntensors; i++) {
      const nn_tensor_ref *t = &s->tensors[i];
      if (t->is_buffer) continue;
      snprintf(name, sizeof name, "optimizer/%s/%s/%s", s->slot_names[k], t->layer, t->name);
      hash_item(&h, name, s->slots + (size_t)k * s->nparams + t->offset, 4 * t->count);
    }
  }
  for (const nn_ckpt_field *f = state_fields; f->name; f++) {
    snprintf(name, sizeof name, "state/%s", f->name);
    hash_item(&h, name, (const char *)&s->state + f->offset, ftype_size(f->type));
  }
  hash_item(&h, "metrics", s->metrics ? s->metrics : "", s->metrics_len);
  return h;
}

/* ---- snapshot ------------------------------------------------------------- */

/* Allocate the arrays of an empty snapshot for the given table and sizes. */
static int snap_alloc(nn_ckpt_snapshot *s, int ntensors, size_t nparams, size_t nbuffers,
                      int nslots, nn_error *err) {
  memset(s, 0, sizeof *s);
  s->ntensors = ntensors;
  s->nparams = nparams;
  s->nbuffers = nbuffers;
  s->nslots = nslots;
  s->tensors = calloc((size_t)(ntensors > 0 ? ntensors : 1), sizeof *s->tensors);
  s->params = malloc((nparams ? nparams : 1) * sizeof(float));
  s->buffers = malloc((nbuffers ? nbuffers : 1) * sizeof(float));
  s->slots = malloc((nslots && nparams ? (size_t)nslots * nparams : 1) * sizeof(float));
  s->spec = malloc(1);
  s->spec_cap = 1;
  s->metrics = malloc(1);
  s->metrics_cap = 1;
  if (!s->tensors || !s->params || !s->buffers || !s->slots || !s->spec || !s->metrics) {
    nn_ckpt_snapshot_free(s);
    return nn_error_set(err, NN_ENOMEM, "out of memory for a checkpoint snapshot (%zu floats)",
                        nparams * (size_t)(1 + nslots) + nbuffers);
  }
  s->metrics[0] = '\0';
  /* Touch every page now: a snapshot is taken while the step loop waits, and
   * first-touch page faults there cost milliseconds on some VMs. */
  memset(s->params, 0, (nparams ? nparams : 1) * sizeof(float));
  memset(s->buffers, 0, (nbuffers ? nbuffers : 1) * sizeof(float));
  memset(s->slots, 0, (nslots && nparams ? (size_t)nslots * nparams : 1) * sizeof(float));
  return 0;
}

int nn_ckpt_snapshot_init(nn_ckpt_snapshot *s, const nn_model *m, int nslots, nn_error *err) {
  memset(s, 0, sizeof *s);
  if (nslots < 0 || nslots > NN_CKPT_MAX_SLOTS)
    return nn_error_set(err, NN_EINVAL, "checkpoint: %d optimizer slots, at most %d supported",
                        nslots, NN_CKPT_MAX_SLOTS);
  /* The file stores no offsets: each arena is its tensors back to back in
   * table order, which is how nn_model lays them out. Check it. */
  size_t next[2] = {0, 0};
  for (int i = 0; i < m->ntensors; i++) {
    const nn_tensor_ref *t = &m->tensors[i];
    int b = t->is_buffer ? 1 : 0;
    if (t->offset != next[b] || t->count != nn_shape_count(&t->shape))
      return nn_error_set(err, NN_EINTERNAL,
                          "checkpoint: tensor %s/%s is not where the arena layout puts it",
                          t->layer, t->name);
    next[b] += t->count;
  }
  if (next[0] != m->nparams || next[1] != m->nbuffers)
    return nn_error_set(err, NN_EINTERNAL,
                        "checkpoint: the tensor table covers %zu of %zu parameters and %zu of "
                        "%zu buffer values",
                        next[0], m->nparams, next[1], m->nbuffers);
  int rc = snap_alloc(s, m->ntensors, m->nparams, m->nbuffers, nslots, err);
  if (rc) return rc;
  if (m->ntensors) memcpy(s->tensors, m->tensors, (size_t)m->ntensors * sizeof *s->tensors);
  if (m->nparams) memcpy(s->params, m->params, m->nparams * sizeof(float));
  if (m->nbuffers) memcpy(s->buffers, m->buffers, m->nbuffers * sizeof(float));
  if (nslots && m->nparams) memset(s->slots, 0, (size_t)nslots * m->nparams * sizeof(float));
  return 0;
}

void nn_ckpt_snapshot_free(nn_ckpt_snapshot *s) {
  if (!s) return;
  free(s->spec);
  free(s->tensors);
  free(s->params);
  free(s->buffers);
  free(s->slots);
  free(s->metrics);
  memset(s, 0, sizeof *s);
}

/* Make room for n bytes in *buf (capacity *cap). */
static int grow(void *bufp, size_t *cap, size_t n, nn_error *err) {
  char **buf = bufp;
  if (n <= *cap && *buf) return 0;
  size_t c = *cap ? *cap : 64;
  while (c < n) c *= 2;
  char *p = realloc(*buf, c);
  if (!p) return nn_error_set(err, NN_ENOMEM, "out of memory (%zu bytes)", n);
  *buf = p;
  *cap = c;
  return 0;
}

int nn_ckpt_snapshot_set_spec(nn_ckpt_snapshot *s, const uint8_t *spec, size_t len,
                              nn_error *err) {
  int rc = grow(&s->spec, &s->spec_cap, len ? len : 1, err);
  if (rc) return rc;
  if (len) memcpy(s->spec, spec, len);
  s->spec_len = len;
  return 0;
}

int nn_ckpt_snapshot_set_metrics(nn_ckpt_snapshot *s, const char *text, size_t len,
                                 nn_error *err) {
  int rc = grow(&s->metrics, &s->metrics_cap, len + 1, err);
  if (rc) return rc;
  if (len) memcpy(s->metrics, text, len);
  s->metrics[len] = '\0';
  s->metrics_len = len;
  return 0;
}

/* ---- HDF5 helpers ----------------------------------------------------------- */

typedef struct h5_msg {
  char text[200];
} h5_msg;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_msg *m = data;
  if (n == 0 && e->desc && e->desc[0]) snprintf(m->text, sizeof m->text, "%s", e->desc);
  return 0;
}

/* Record a failure about `file` and `what` (dataset/attribute, may be NULL),
 * with HDF5's innermost message appended when there is one. */
static int ckpt_fail(nn_error *err, int code, const char *file, const char *what,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int ckpt_fail(nn_error *err, int code, const char *file, const char *what,
                     const char *fmt, ...) {
  h5_msg m = {{0}};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &m);
  H5Eclear2(H5E_DEFAULT);
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (m.text[0])
    nn_error_at(err, code, file, 0, 0, "%s%s%s (HDF5: %s)", what ? what : "", what ? ": " : "",
                msg, m.text);
  else
    nn_error_at(err, code, file, 0, 0, "%s%s%s", what ? what : "", what ? ": " : "", msg);
  if (err && what) snprintf(err->where, sizeof err->where, "%s", what);
  return code;
}

/* A name usable as one HDF5 path component: non-empty, no '/', not "." or "..". */
static int name_ok(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  if (n == 0 || n == max) return 0;
  if (strchr(s, '/')) return 0;
  return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The compound record of /tensors: the tensor table. */
typedef struct tensor_rec {
  char layer[NN_NAME_MAX];
  char name[NN_NAME_MAX];
  int32_t is_buffer;
  int32_t ndim;
  int32_t shape[NN_MAX_DIMS]; /* unused dimensions 0 */
} tensor_rec;

/* The compound type of tensor_rec (for memory and file), its strings in
 * character set cset (HDF5 converts none between sets); -1 on failure. */
static hid_t tensor_rec_type(H5T_cset_t cset) {
  hid_t str = -1, arr = -1, t = -1;
  hsize_t four = NN_MAX_DIMS;
  str = H5Tcopy(H5T_C_S1);
  if (str < 0) goto fail;
  if (H5Tset_size(str, NN_NAME_MAX) < 0 || H5Tset_strpad(str, H5T_STR_NULLTERM) < 0 ||
      H5Tset_cset(str, cset) < 0)
    goto fail;
  arr = H5Tarray_create2(H5T_NATIVE_INT32, 1, &four);
  if (arr < 0) goto fail;
  t = H5Tcreate(H5T_COMPOUND, sizeof(tensor_rec));
  if (t < 0) goto fail;
  if (H5Tinsert(t, "layer", offsetof(tensor_rec, layer), str) < 0 ||
      H5Tinsert(t, "name", offsetof(tensor_rec, name), str) < 0 ||
      H5Tinsert(t, "is_buffer", offsetof(tensor_rec, is_buffer), H5T_NATIVE_INT32) < 0 ||
      H5Tinsert(t, "ndim", offsetof(tensor_rec, ndim), H5T_NATIVE_INT32) < 0 ||
      H5Tinsert(t, "shape", offsetof(tensor_rec, shape), arr) < 0)
    goto fail;
  H5Tclose(str);
  H5Tclose(arr);
  return t;
fail:
  if (t >= 0) H5Tclose(t);
  if (arr >= 0) H5Tclose(arr);
  if (str >= 0) H5Tclose(str);
  return -1;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct wctx {
  hid_t f;            /* the open NAME.tmp */
  hid_t lcpl;         /* link creation: intermediate groups */
  const char *file;   /* name for messages */
  nn_error *err;
} wctx;

static int w_attr(wctx *w, hid_t loc, const char *locname, const char *name, hid_t type,
                  const void *v) {
  hid_t space = H5Screate(H5S_SCALAR), a = -1;
  int rc = 0;
  if (space < 0) goto fail;
  a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, type, v) < 0) goto fail;
  goto cleanup;
fail:
  rc = ckpt_fail(w->err, NN_EIO, w->file, locname, "cannot write attribute '%s'", name);
cleanup:
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  return rc;
}

static int w_attr_str(wctx *w, hid_t loc, const char *locname, const char *name,
                      const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  int rc;
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    rc = ckpt_fail(w->err, NN_EIO, w->file, locname, "cannot make a string type");
  } else {
    rc = w_attr(w, loc, locname, name, t, &v);
  }
  if (t >= 0) H5Tclose(t);
  return rc;
}

/* Dataset `path` of file type ftype holding data (memory type mtype), with
 * ndim dims (ndim 0: scalar). */
static int w_dset(wctx *w, const char *path, hid_t ftype, hid_t mtype, int ndim,
                  const hsize_t *dims, const void *data) {
  hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR), d = -1;
  int rc = 0;
  if (space < 0) goto fail;
  d = H5Dcreate2(w->f, path, ftype, space, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (d < 0) goto fail;
  if (H5Sget_simple_extent_npoints(space) > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL,
                                                          H5P_DEFAULT, data) < 0)
    goto fail;
  goto cleanup;
fail:
  rc = ckpt_fail(w->err, NN_EIO, w->file, path, "cannot write the dataset");
cleanup:
  if (d >= 0) H5Dclose(d);
  if (space >= 0) H5Sclose(space);
  return rc;
}

static int w_floats(wctx *w, const char *path, const nn_shape *shape, const float *data) {
  hsize_t dims[NN_MAX_DIMS];
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  return w_dset(w, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, shape->ndim, dims, data);
}

static void kill_at(const char *stage) {
  const char *e = getenv("NN_CKPT_KILL_AT");
  if (e && strcmp(e, stage) == 0) raise(SIGKILL);
}

/* Write every dataset and attribute of s into the open file w->f. */
static int write_content(wctx *w, const nn_ckpt_snapshot *s, uint64_t checksum) {
  char dpath[CKPT_DSET_MAX];
  tensor_rec *recs = NULL;
  hid_t rect = -1, g = -1, strt = -1;
  int rc = 0;

  /* root attributes */
  char sum[17], created[32];
  snprintf(sum, sizeof sum, "%016" PRIx64, checksum);
  time_t now = time(NULL);
  struct tm tmv;
  gmtime_r(&now, &tmv);
  strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  int32_t version = NN_CKPT_VERSION;
  if ((rc = w_attr_str(w, w->f, "/", "format", NN_CKPT_FORMAT)) ||
      (rc = w_attr(w, w->f, "/", "version", H5T_NATIVE_INT32, &version)) ||
      (rc = w_attr_str(w, w->f, "/", "checksum", sum)) ||
      (rc = w_attr_str(w, w->f, "/", "created", created)))
    goto cleanup;

  hsize_t n = s->spec_len;
  if ((rc = w_dset(w, "spec", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, s->spec))) goto cleanup;

  /* the tensor table */
  recs = calloc((size_t)(s->ntensors > 0 ? s->ntensors : 1), sizeof *recs);
  rect = tensor_rec_type(H5T_CSET_UTF8);
  if (!recs || rect < 0) {
    rc = ckpt_fail(w->err, recs ? NN_EIO : NN_ENOMEM, w->file, "tensors",
                   "cannot build the tensor table");
    goto cleanup;
  }
  for (int i = 0; i < s->ntensors; i++) {
    const nn_tensor_ref *t = &s->tensors[i];
    snprintf(recs[i].layer, sizeof recs[i].layer, "%s", t->layer);
    snprintf(recs[i].name, sizeof recs[i].name, "%s", t->name);
    recs[i].is_buffer = t->is_buffer ? 1 : 0;
    recs[i].ndim = t->shape.ndim;
    for (int d = 0; d < t->shape.ndim; d++) recs[i].shape[d] = t->shape.dim[d];
  }
  n = (hsize_t)s->ntensors;
  if ((rc = w_dset(w, "tensors", rect, rect, 1, &n, recs))) goto cleanup;

  /* parameters, then buffers */
  for (int i = 0; i < s->ntensors; i++) {
    const nn_tensor_ref *t = &s->tensors[i];
    snprintf(dpath, sizeof dpath, "%s/%s/%s", tensor_group(t), t->layer, t->name);
    const float *base = t->is_buffer ? s->buffers : s->params;
    if ((rc = w_floats(w, dpath, &t->shape, base + t->offset))) goto cleanup;
  }
  kill_at("data");

  /* optimizer: attributes, then one group per slot */
  g = H5Gcreate2(w->f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    rc = ckpt_fail(w->err, NN_EIO, w->file, "optimizer", "cannot create the group");
    goto cleanup;
  }
  if ((rc = w_attr_str(w, g, "optimizer", "type", s->optim_type)) ||
      (rc = w_attr(w, g, "optimizer", "t", H5T_NATIVE_UINT64, &s->state.optim_t)))
    goto cleanup;
  {
    const char *names[NN_CKPT_MAX_SLOTS];
    for (int k = 0; k < s->nslots; k++) names[k] = s->slot_names[k];
    hsize_t ns = (hsize_t)s->nslots;
    strt = H5Tcopy(H5T_C_S1);
    hid_t space = H5Screate_simple(1, &ns, NULL), a = -1;
    int ok = strt >= 0 && space >= 0 && H5Tset_size(strt, H5T_VARIABLE) >= 0 &&
             H5Tset_cset(strt, H5T_CSET_UTF8) >= 0 &&
             (a = H5Acreate2(g, "slots", strt, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
             (ns == 0 || H5Awrite(a, strt, names) >= 0);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    if (!ok) {
      rc = ckpt_fail(w->err, NN_EIO, w->file, "optimizer", "cannot write attribute 'slots'");
      goto cleanup;
    }
  }
  for (int k = 0; k < s->nslots; k++) {
    for (int i = 0; i < s->ntensors; i++) {
      const nn_tensor_ref *t = &s->tensors[i];
      if (t->is_buffer) continue;
      snprintf(dpath, sizeof dpath, "optimizer/%s/%s/%s", s->slot_names[k], t->layer, t->name);
      if ((rc = w_floats(w, dpath, &t->shape, s->slots + (size_t)k * s->nparams + t->offset)))
        goto cleanup;
    }
  }
  H5Gclose(g);

  /* state */
  g = H5Gcreate2(w->f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    rc = ckpt_fail(w->err, NN_EIO, w->file, "state", "cannot create the group");
    goto cleanup;
  }
  for (const nn_ckpt_field *f = state_fields; f->name; f++)
    if ((rc = w_attr(w, g, "state", f->name, ftype_h5(f->type),
                     (const char *)&s->state + f->offset)))
      goto cleanup;

  /* metrics: one variable-length UTF-8 string */
  {
    hid_t mt = H5Tcopy(H5T_C_S1);
    const char *text = s->metrics ? s->metrics : "";
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5T_CSET_UTF8) < 0)
      rc = ckpt_fail(w->err, NN_EIO, w->file, "metrics", "cannot make a string type");
    else
      rc = w_dset(w, "metrics", mt, mt, 0, NULL, &text);
    if (mt >= 0) H5Tclose(mt);
  }
cleanup:
  if (g >= 0) H5Gclose(g);
  if (strt >= 0) H5Tclose(strt);
  if (rect >= 0) H5Tclose(rect);
  free(recs);
  return rc;
}

/* Check what the file format cannot represent or a reader would refuse. */
static int check_snapshot(const nn_ckpt_snapshot *s, const char *path, nn_error *err) {
  if (s->nslots < 0 || s->nslots > NN_CKPT_MAX_SLOTS)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "%d optimizer slots, at most %d supported",
                       s->nslots, NN_CKPT_MAX_SLOTS);
  for (int k = 0; k < s->nslots; k++)
    if (!name_ok(s->slot_names[k], sizeof s->slot_names[k]))
      return nn_error_at(err, NN_EINVAL, path, 0, 0,
                         "optimizer slot %d has name '%.32s': expected a non-empty name "
                         "without '/'", k, s->slot_names[k]);
  if (strnlen(s->optim_type, sizeof s->optim_type) == sizeof s->optim_type)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "optimizer type is not terminated");
  for (int i = 0; i < s->ntensors; i++) {
    const nn_tensor_ref *t = &s->tensors[i];
    if (!name_ok(t->layer, sizeof t->layer) || !name_ok(t->name, sizeof t->name))
      return nn_error_at(err, NN_EINVAL, path, 0, 0,
                         "tensor %d is named '%.48s/%.48s': layer and tensor names must be "
                         "non-empty and contain no '/'", i, t->layer, t->name);
    if (t->shape.ndim < 0 || t->shape.ndim > NN_MAX_DIMS)
      return nn_error_at(err, NN_EINVAL, path, 0, 0, "tensor %s/%s has %d dimensions", t->layer,
                         t->name, t->shape.ndim);
  }
  /* non-finite values: refuse before anything touches the disk */
  struct {
    const float *v;
    size_t n;
    const char *what;
  } arr[2 + NN_CKPT_MAX_SLOTS];
  int na = 2;
  arr[0].v = s->params;
  arr[0].n = s->nparams;
  arr[0].what = "params";
  arr[1].v = s->buffers;
  arr[1].n = s->nbuffers;
  arr[1].what = "buffers";
  for (int k = 0; k < s->nslots; k++, na++) {
    arr[na].v = s->slots + (size_t)k * s->nparams;
    arr[na].n = s->nparams;
    arr[na].what = s->slot_names[k];
  }
  for (int a = 0; a < na; a++) {
    for (size_t j = 0; j < arr[a].n; j++) {
      if (isfinite(arr[a].v[j])) continue;
      const char *layer = "?", *tname = "?";
      size_t at = j;
      for (int i = 0; i < s->ntensors; i++) {
        const nn_tensor_ref *t = &s->tensors[i];
        if ((a == 1) != (t->is_buffer != 0)) continue;
        if (j >= t->offset && j < t->offset + t->count) {
          layer = t->layer, tname = t->name, at = j - t->offset;
          break;
        }
      }
      nn_error_at(err, NN_ENUMERIC, path, 0, 0,
                  "not written: %s value %s/%s[%zu] is %g (training diverged?)", arr[a].what,
                  layer, tname, at, (double)arr[a].v[j]);
      if (err) snprintf(err->where, sizeof err->where, "%s/%s/%s", arr[a].what, layer, tname);
      return NN_ENUMERIC;
    }
  }
  return 0;
}

/* mkdir -p of the directory part of path. */
static int make_parent(const char *path, nn_error *err) {
  char buf[CKPT_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  char *slash = strrchr(buf, '/');
  if (!slash || slash == buf) return 0;
  *slash = '\0';
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return nn_error_at(err, NN_EIO, buf, 0, 0, "cannot create the checkpoint directory: %s",
                           strerror(errno));
      *p = c;
      if (c == '\0') break;
    }
  }
  return 0;
}

static int fsync_path(const char *path, int dir, nn_error *err) {
  int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
  if (fd < 0)
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot open for fsync: %s", strerror(errno));
  int rc = 0;
  if (fsync(fd) != 0)
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "fsync failed: %s", strerror(errno));
  close(fd);
  return rc;
}

static int read_file(const char *path, nn_ckpt_snapshot *s, uint64_t *stored, nn_error *err);

int nn_ckpt_write(const nn_ckpt_snapshot *s, const char *path, nn_error *err) {
  char tmp[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
  nn_ckpt_snapshot back;
  memset(&back, 0, sizeof back);
  wctx w = {-1, -1, path, err};
  hid_t fapl = -1;
  int rc = 0, made = 0;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "checkpoint path too long");
  if ((rc = check_snapshot(s, path, err))) return rc;
  if ((rc = make_parent(path, err))) return rc;
  uint64_t sum = nn_ckpt_checksum(s);

  unlink(tmp);
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  w.lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (fapl < 0 || w.lcpl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
      H5Pset_create_intermediate_group(w.lcpl, 1) < 0) {
    rc = ckpt_fail(err, NN_EIO, path, NULL, "cannot make HDF5 property lists");
    goto cleanup;
  }
  w.f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (w.f < 0) {
    rc = ckpt_fail(err, NN_EIO, tmp, NULL, "cannot create the checkpoint file");
    goto cleanup;
  }
  made = 1;
  if ((rc = write_content(&w, s, sum))) goto cleanup;
  herr_t closed = H5Fclose(w.f);
  w.f = -1;
  if (closed < 0) {
    rc = ckpt_fail(err, NN_EIO, tmp, NULL, "cannot close (flush) the checkpoint file");
    goto cleanup;
  }
  kill_at("close");
  if ((rc = fsync_path(tmp, 0, err))) goto cleanup;
  kill_at("sync");

  /* verify: read it back as a reader would, and check it is what we meant */
  uint64_t stored = 0;
  if ((rc = read_file(tmp, &back, &stored, err))) {
    nn_error_prefix(err, "verifying the written checkpoint");
    goto cleanup;
  }
  if (stored != sum) {
    rc = nn_error_at(err, NN_ECKPT, tmp, 0, 0,
                     "verifying the written checkpoint: checksum %016" PRIx64
                     ", expected %016" PRIx64, stored, sum);
    goto cleanup;
  }
  kill_at("verify");

  if (rename(tmp, path) != 0) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot rename %s to it: %s", tmp, strerror(errno));
    goto cleanup;
  }
  made = 0;
  kill_at("rename");
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  if ((rc = fsync_path(dir, 1, err))) goto cleanup;
  kill_at("dirsync");
cleanup:
  if (w.f >= 0) H5Fclose(w.f);
  if (w.lcpl >= 0) H5Pclose(w.lcpl);
  if (fapl >= 0) H5Pclose(fapl);
  if (made) unlink(tmp);
  nn_ckpt_snapshot_free(&back);
  return rc;
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct rctx {
  hid_t f;
  const char *file;
  nn_error *err;
} rctx;

#define R_FAIL(r, what, ...) ckpt_fail((r)->err, NN_ECKPT, (r)->file, what, __VA_ARGS__)

/* Open attribute `name` of loc (whose path is locname, for messages). */
static int r_attr_open(rctx *r, hid_t loc, const char *locname, const char *name, hid_t *a) {
  char what[CKPT_DSET_MAX];
  snprintf(what, sizeof what, "%s%s%s", strcmp(locname, "/") ? locname : "",
           strcmp(locname, "/") ? "/" : "", name);
  htri_t ex = H5Aexists(loc, name);
  if (ex <= 0) return R_FAIL(r, what, "missing attribute");
  *a = H5Aopen(loc, name, H5P_DEFAULT);
  if (*a < 0) return R_FAIL(r, what, "cannot open the attribute");
  return 0;
}

/* Scalar numeric attribute of class cls and byte size `size`, read as mtype. */
static int r_attr_num(rctx *r, hid_t loc, const char *locname, const char *name,
                      H5T_class_t cls, size_t size, hid_t mtype, void *v) {
  hid_t a = -1, t = -1, sp = -1;
  int rc = r_attr_open(r, loc, locname, name, &a);
  if (rc) return rc;
  t = H5Aget_type(a);
  sp = H5Aget_space(a);
  if (t < 0 || sp < 0 || H5Tget_class(t) != cls || H5Tget_size(t) != size ||
      H5Sget_simple_extent_npoints(sp) != 1) {
    rc = R_FAIL(r, name, "attribute of %s has the wrong type or size, expected one %zu-byte %s",
                locname, size, cls == H5T_FLOAT ? "float" : "integer");
    goto cleanup;
  }
  if (H5Aread(a, mtype, v) < 0) rc = R_FAIL(r, name, "cannot read the attribute of %s", locname);
cleanup:
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return rc;
}

/* Scalar string attribute (variable or fixed length) into buf[n]. */
static int r_attr_str(rctx *r, hid_t loc, const char *locname, const char *name, char *buf,
                      size_t n) {
  hid_t a = -1, t = -1, sp = -1, mt = -1;
  int rc = r_attr_open(r, loc, locname, name, &a);
  if (rc) return rc;
  t = H5Aget_type(a);
  sp = H5Aget_space(a);
  if (t < 0 || sp < 0 || H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1) {
    rc = R_FAIL(r, name, "attribute of %s is not one string", locname);
    goto cleanup;
  }
  mt = H5Tcopy(H5T_C_S1);
  /* HDF5 converts no string between character sets: read in the file's */
  if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) goto readfail;
  if (H5Tis_variable_str(t) > 0) {
    char *p = NULL;
    if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &p) < 0) goto readfail;
    snprintf(buf, n, "%s", p ? p : "");
    H5free_memory(p);
  } else {
    size_t sz = H5Tget_size(t);
    char *tmpb = calloc(sz + 1, 1);
    if (!tmpb || H5Tset_size(mt, sz + 1) < 0 || H5Aread(a, mt, tmpb) < 0) {
      free(tmpb);
      goto readfail;
    }
    snprintf(buf, n, "%s", tmpb);
    free(tmpb);
  }
  goto cleanup;
readfail:
  rc = R_FAIL(r, name, "cannot read the string attribute of %s", locname);
cleanup:
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return rc;
}

/* Open dataset `path`; check its class/size and that its dims equal
 * dims[ndim] (ndim -1: any 1-d length, returned in *len). */
static int r_dset_open(rctx *r, const char *path, H5T_class_t cls, size_t size, int ndim,
                       const hsize_t *dims, hsize_t *len, hid_t *d) {
  hid_t t = -1, sp = -1;
  int rc = 0;
  htri_t ex = H5Lexists(r->f, path, H5P_DEFAULT);
  if (ex <= 0) return R_FAIL(r, path, "missing dataset");
  *d = H5Dopen2(r->f, path, H5P_DEFAULT);
  if (*d < 0) return R_FAIL(r, path, "cannot open the dataset");
  t = H5Dget_type(*d);
  sp = H5Dget_space(*d);
  if (t < 0 || sp < 0) {
    rc = R_FAIL(r, path, "cannot read the dataset's type");
    goto cleanup;
  }
  if (H5Tget_class(t) != cls || (size && H5Tget_size(t) != size)) {
    rc = R_FAIL(r, path, "wrong element type, expected %s%s", size == 4 ? "float32" :
                size == 1 ? "uint8" : "", cls == H5T_COMPOUND ? "the tensor table record" :
                cls == H5T_STRING ? "a string" : "");
    goto cleanup;
  }
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t got[8] = {0};
  if (nd < 0 || nd > 8 || H5Sget_simple_extent_dims(sp, got, NULL) < 0) {
    rc = R_FAIL(r, path, "cannot read the dataset's shape");
    goto cleanup;
  }
  if (ndim < 0) {
    if (nd != 1) {
      rc = R_FAIL(r, path, "has %d dimensions, expected 1", nd);
      goto cleanup;
    }
    *len = got[0];
  } else {
    int same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = got[i] == dims[i];
    if (!same) {
      char a[96], b[96];
      size_t ka = 0, kb = 0;
      a[0] = b[0] = '\0';
      for (int i = 0; i < nd && ka < sizeof a; i++)
        ka += (size_t)snprintf(a + ka, sizeof a - ka, "%s%llu", i ? ", " : "",
                               (unsigned long long)got[i]);
      for (int i = 0; i < ndim && kb < sizeof b; i++)
        kb += (size_t)snprintf(b + kb, sizeof b - kb, "%s%llu", i ? ", " : "",
                               (unsigned long long)dims[i]);
      rc = R_FAIL(r, path, "shape [%s], expected [%s] (from /tensors)", a, b);
      goto cleanup;
    }
  }
cleanup:
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (rc && *d >= 0) {
    H5Dclose(*d);
    *d = -1;
  }
  return rc;
}

static int r_floats(rctx *r, const char *path, const nn_shape *shape, float *dst) {
  hsize_t dims[NN_MAX_DIMS];
  hid_t d = -1;
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  int rc = r_dset_open(r, path, H5T_FLOAT, 4, shape->ndim, dims, NULL, &d);
  if (rc) return rc;
  if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = R_FAIL(r, path, "cannot read the data (file truncated or damaged)");
  H5Dclose(d);
  return rc;
}

/* Number of links in group `path`, or -1 (error recorded). */
static int r_group_links(rctx *r, const char *path, hsize_t *n) {
  H5G_info_t info;
  htri_t ex = H5Lexists(r->f, path, H5P_DEFAULT);
  if (ex <= 0) return R_FAIL(r, path, "missing group");
  if (H5Gget_info_by_name(r->f, path, &info, H5P_DEFAULT) < 0)
    return R_FAIL(r, path, "cannot read the group");
  *n = info.nlinks;
  return 0;
}

/* Every group under `prefix` ("params", "buffers", "optimizer/<slot>") holds
 * exactly the tensors the table lists for it: no more, no fewer. */
static int r_check_counts(rctx *r, const nn_ckpt_snapshot *s, const char *prefix, int buffers) {
  int nlayers = 0, any = 0;
  char path[CKPT_DSET_MAX];
  for (int i = 0; i < s->ntensors; i++) {
    const nn_tensor_ref *t = &s->tensors[i];
    if ((t->is_buffer != 0) != buffers) continue;
    any = 1;
    int first = 1, count = 0;
    for (int j = 0; j < s->ntensors; j++) {
      const nn_tensor_ref *u = &s->tensors[j];
      if ((u->is_buffer != 0) != buffers || strcmp(u->layer, t->layer) != 0) continue;
      if (j < i) first = 0;
      count++;
    }
    if (!first) continue;
    nlayers++;
    hsize_t n = 0;
    snprintf(path, sizeof path, "%s/%s", prefix, t->layer);
    int rc = r_group_links(r, path, &n);
    if (rc) return rc;
    if (n != (hsize_t)count)
      return R_FAIL(r, path, "holds %llu tensors, /tensors lists %d", (unsigned long long)n, count);
  }
  if (!any) return 0; /* the group may be absent when it would be empty */
  hsize_t n = 0;
  int rc = r_group_links(r, prefix, &n);
  if (rc) return rc;
  if (n != (hsize_t)nlayers)
    return R_FAIL(r, prefix, "holds %llu layers, /tensors lists %d", (unsigned long long)n,
                  nlayers);
  return 0;
}

/* Read the table /tensors and allocate s for it. */
static int r_table(rctx *r, nn_ckpt_snapshot *s, int nslots) {
  hid_t d = -1, rect = -1;
  tensor_rec *recs = NULL;
  hsize_t n = 0;
  int rc = r_dset_open(r, "tensors", H5T_COMPOUND, 0, -1, NULL, &n, &d);
  if (rc) return rc;
  if (n > 1000000) {
    rc = R_FAIL(r, "tensors", "%llu tensors: implausible", (unsigned long long)n);
    goto cleanup;
  }
  recs = calloc(n ? (size_t)n : 1, sizeof *recs);
  /* names as UTF-8 (ours) or ASCII (e.g. numpy 'S' strings from h5py) */
  H5T_cset_t cset = H5T_CSET_UTF8;
  hid_t ft = H5Dget_type(d), mt = -1;
  int mi = ft >= 0 ? H5Tget_member_index(ft, "layer") : -1;
  if (mi >= 0 && (mt = H5Tget_member_type(ft, (unsigned)mi)) >= 0 &&
      H5Tget_class(mt) == H5T_STRING)
    cset = H5Tget_cset(mt) == H5T_CSET_ASCII ? H5T_CSET_ASCII : H5T_CSET_UTF8;
  if (mt >= 0) H5Tclose(mt);
  if (ft >= 0) H5Tclose(ft);
  H5Eclear2(H5E_DEFAULT);
  rect = tensor_rec_type(cset);
  if (!recs || rect < 0) {
    rc = nn_error_set(r->err, NN_ENOMEM, "out of memory for the tensor table");
    goto cleanup;
  }
  if (n && H5Dread(d, rect, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs) < 0) {
    rc = R_FAIL(r, "tensors", "cannot read the tensor table");
    goto cleanup;
  }
  size_t next[2] = {0, 0};
  int seen_buffer = 0;
  for (hsize_t i = 0; i < n; i++) {
    tensor_rec *t = &recs[i];
    t->layer[NN_NAME_MAX - 1] = t->name[NN_NAME_MAX - 1] = '\0';
    if (!name_ok(t->layer, NN_NAME_MAX) || !name_ok(t->name, NN_NAME_MAX) ||
        (t->is_buffer != 0 && t->is_buffer != 1) || t->ndim < 0 || t->ndim > NN_MAX_DIMS) {
      rc = R_FAIL(r, "tensors", "record %llu is malformed", (unsigned long long)i);
      goto cleanup;
    }
    if (seen_buffer && !t->is_buffer) {
      rc = R_FAIL(r, "tensors", "record %llu: a parameter after the buffers", (unsigned long long)i);
      goto cleanup;
    }
    seen_buffer |= t->is_buffer;
    size_t count = 1;
    for (int k = 0; k < t->ndim; k++) {
      if (t->shape[k] < 1 || count > (SIZE_MAX / 8) / (size_t)t->shape[k] ||
          count * (size_t)t->shape[k] > ((size_t)1 << 34)) {
        rc = R_FAIL(r, "tensors", "record %llu (%s/%s): bad dimension %d", (unsigned long long)i,
                    t->layer, t->name, (int)t->shape[k]);
        goto cleanup;
      }
      count *= (size_t)t->shape[k];
    }
    for (hsize_t j = 0; j < i; j++)
      if (recs[j].is_buffer == t->is_buffer && !strcmp(recs[j].layer, t->layer) &&
          !strcmp(recs[j].name, t->name)) {
        rc = R_FAIL(r, "tensors", "%s/%s is listed twice", t->layer, t->name);
        goto cleanup;
      }
    next[t->is_buffer] += count;
  }
  if ((rc = snap_alloc(s, (int)n, next[0], next[1], nslots, r->err))) goto cleanup;
  next[0] = next[1] = 0;
  for (hsize_t i = 0; i < n; i++) {
    nn_tensor_ref *t = &s->tensors[i];
    snprintf(t->layer, sizeof t->layer, "%s", recs[i].layer);
    snprintf(t->name, sizeof t->name, "%s", recs[i].name);
    t->is_buffer = recs[i].is_buffer;
    t->shape.ndim = recs[i].ndim;
    for (int k = 0; k < t->shape.ndim; k++) t->shape.dim[k] = recs[i].shape[k];
    t->count = nn_shape_count(&t->shape);
    t->offset = next[t->is_buffer];
    next[t->is_buffer] += t->count;
  }
cleanup:
  if (rect >= 0) H5Tclose(rect);
  if (d >= 0) H5Dclose(d);
  free(recs);
  return rc;
}

static int r_content(rctx *r, nn_ckpt_snapshot *s, uint64_t *stored) {
  char buf[96], path[CKPT_DSET_MAX];
  hid_t g = -1, d = -1, a = -1, t = -1, sp = -1, mt = -1;
  char *slotv[NN_CKPT_MAX_SLOTS] = {NULL};
  char *text = NULL;
  int rc;

  if ((rc = r_attr_str(r, r->f, "/", "format", buf, sizeof buf))) return rc;
  if (strcmp(buf, NN_CKPT_FORMAT) != 0)
    return R_FAIL(r, "format", "is '%s', expected '%s'", buf, NN_CKPT_FORMAT);
  int32_t version = 0;
  if ((rc = r_attr_num(r, r->f, "/", "version", H5T_INTEGER, 4, H5T_NATIVE_INT32, &version)))
    return rc;
  if (version != NN_CKPT_VERSION)
    return R_FAIL(r, "version", "is %d, this nntrain reads version %d", (int)version,
                  NN_CKPT_VERSION);
  if ((rc = r_attr_str(r, r->f, "/", "checksum", buf, sizeof buf))) return rc;
  char *end = NULL;
  errno = 0;
  *stored = strtoull(buf, &end, 16);
  if (strlen(buf) != 16 || *end || errno)
    return R_FAIL(r, "checksum", "is '%s', expected 16 hex digits", buf);
  char created[32];
  if ((rc = r_attr_str(r, r->f, "/", "created", created, sizeof created))) return rc;

  /* optimizer group first: the slot count sizes the snapshot */
  g = H5Lexists(r->f, "optimizer", H5P_DEFAULT) > 0 ? H5Gopen2(r->f, "optimizer", H5P_DEFAULT)
                                                    : -1;
  if (g < 0) return R_FAIL(r, "optimizer", "missing group");
  if ((rc = r_attr_open(r, g, "optimizer", "slots", &a))) goto cleanup;
  t = H5Aget_type(a);
  sp = H5Aget_space(a);
  hssize_t nslots = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (t < 0 || H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) <= 0 ||
      H5Sget_simple_extent_ndims(sp) != 1 || nslots < 0 || nslots > NN_CKPT_MAX_SLOTS) {
    rc = R_FAIL(r, "optimizer/slots", "expected a list of at most %d strings", NN_CKPT_MAX_SLOTS);
    goto cleanup;
  }
  mt = H5Tcopy(H5T_C_S1);
  if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5T_CSET_UTF8) < 0 ||
      (nslots > 0 && H5Aread(a, mt, slotv) < 0)) {
    rc = R_FAIL(r, "optimizer/slots", "cannot read the attribute");
    goto cleanup;
  }
  if ((rc = r_table(r, s, (int)nslots))) goto cleanup;
  snprintf(s->created, sizeof s->created, "%s", created);
  for (int k = 0; k < (int)nslots; k++) {
    if (!slotv[k] || !name_ok(slotv[k], sizeof s->slot_names[k])) {
      rc = R_FAIL(r, "optimizer/slots", "slot %d has an unusable name", k);
      goto cleanup;
    }
    snprintf(s->slot_names[k], sizeof s->slot_names[k], "%s", slotv[k]);
  }
  if ((rc = r_attr_str(r, g, "optimizer", "type", buf, sizeof buf))) goto cleanup;
  if (strlen(buf) >= sizeof s->optim_type) {
    rc = R_FAIL(r, "optimizer/type", "'%s' is too long", buf);
    goto cleanup;
  }
  memcpy(s->optim_type, buf, strlen(buf) + 1); /* length checked above */
  uint64_t optim_t = 0;
  if ((rc = r_attr_num(r, g, "optimizer", "t", H5T_INTEGER, 8, H5T_NATIVE_UINT64, &optim_t)))
    goto cleanup;
  hsize_t ng = 0;
  if ((rc = r_group_links(r, "optimizer", &ng))) goto cleanup;
  if (ng != (hsize_t)(s->nparams ? nslots : 0)) {
    rc = R_FAIL(r, "optimizer", "holds %llu slot groups, attribute 'slots' lists %d",
                (unsigned long long)ng, (int)nslots);
    goto cleanup;
  }

  /* spec */
  hsize_t n = 0;
  if ((rc = r_dset_open(r, "spec", H5T_INTEGER, 1, -1, NULL, &n, &d))) goto cleanup;
  if (n > ((hsize_t)1 << 30) || grow(&s->spec, &s->spec_cap, n ? (size_t)n : 1, r->err)) {
    rc = R_FAIL(r, "spec", "%llu bytes: too large", (unsigned long long)n);
    goto cleanup;
  }
  if (n && H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->spec) < 0) {
    rc = R_FAIL(r, "spec", "cannot read the data");
    goto cleanup;
  }
  s->spec_len = (size_t)n;
  H5Dclose(d);
  d = -1;

  /* tensors and slots */
  if ((rc = r_check_counts(r, s, "params", 0)) || (rc = r_check_counts(r, s, "buffers", 1)))
    goto cleanup;
  for (int i = 0; i < s->ntensors; i++) {
    const nn_tensor_ref *tr = &s->tensors[i];
    snprintf(path, sizeof path, "%s/%s/%s", tensor_group(tr), tr->layer, tr->name);
    if ((rc = r_floats(r, path, &tr->shape, (tr->is_buffer ? s->buffers : s->params) + tr->offset)))
      goto cleanup;
  }
  for (int k = 0; k < s->nslots; k++) {
    snprintf(path, sizeof path, "optimizer/%s", s->slot_names[k]);
    if ((rc = r_check_counts(r, s, path, 0))) goto cleanup;
    for (int i = 0; i < s->ntensors; i++) {
      const nn_tensor_ref *tr = &s->tensors[i];
      if (tr->is_buffer) continue;
      snprintf(path, sizeof path, "optimizer/%s/%s/%s", s->slot_names[k], tr->layer, tr->name);
      if ((rc = r_floats(r, path, &tr->shape, s->slots + (size_t)k * s->nparams + tr->offset)))
        goto cleanup;
    }
  }

  /* state */
  H5Gclose(g);
  g = H5Lexists(r->f, "state", H5P_DEFAULT) > 0 ? H5Gopen2(r->f, "state", H5P_DEFAULT) : -1;
  if (g < 0) {
    rc = R_FAIL(r, "state", "missing group");
    goto cleanup;
  }
  for (const nn_ckpt_field *f = state_fields; f->name; f++)
    if ((rc = r_attr_num(r, g, "state", f->name, f->type == NN_CKPT_F64 ? H5T_FLOAT : H5T_INTEGER,
                         ftype_size(f->type), ftype_h5(f->type), (char *)&s->state + f->offset)))
      goto cleanup;
  if (s->state.optim_t != optim_t) {
    rc = R_FAIL(r, "optimizer/t", "is %" PRIu64 " but state/optim_t is %" PRIu64, optim_t,
                s->state.optim_t);
    goto cleanup;
  }

  /* metrics */
  if ((rc = r_dset_open(r, "metrics", H5T_STRING, 0, 0, NULL, NULL, &d))) goto cleanup;
  if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0) {
    rc = R_FAIL(r, "metrics", "cannot read the text");
    goto cleanup;
  }
  if ((rc = nn_ckpt_snapshot_set_metrics(s, text ? text : "", text ? strlen(text) : 0, r->err)))
    goto cleanup;

  uint64_t sum = nn_ckpt_checksum(s);
  if (sum != *stored) {
    rc = R_FAIL(r, "checksum", "content hashes to %016" PRIx64 ", the file says %016" PRIx64
                " (damaged or modified)", sum, *stored);
    goto cleanup;
  }
cleanup:
  if (text) H5free_memory(text);
  for (int k = 0; k < NN_CKPT_MAX_SLOTS; k++)
    if (slotv[k]) H5free_memory(slotv[k]);
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  if (d >= 0) H5Dclose(d);
  if (g >= 0) H5Gclose(g);
  return rc;
}

/* Read and verify `path` into s (allocated on success, empty on failure);
 * *stored gets the checksum the file states. */
static int read_file(const char *path, nn_ckpt_snapshot *s, uint64_t *stored, nn_error *err) {
  struct stat st;
  hid_t fapl = -1;
  rctx r = {-1, path, err};
  int rc = 0;
  memset(s, 0, sizeof *s);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (stat(path, &st) != 0) {
    if (errno == ENOENT) return nn_error_at(err, NN_ENOTFOUND, path, 0, 0, "no such checkpoint");
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot read: %s", strerror(errno));
  }
  htri_t is = H5Fis_hdf5(path);
  H5Eclear2(H5E_DEFAULT);
  if (is <= 0)
    return nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "not an HDF5 file (%lld bytes): not a checkpoint, or damaged",
                       (long long)st.st_size);
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    rc = ckpt_fail(err, NN_EIO, path, NULL, "cannot make a property list");
    goto cleanup;
  }
  r.f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (r.f < 0) {
    rc = ckpt_fail(err, NN_ECKPT, path, NULL, "cannot open: the HDF5 file is truncated or damaged");
    goto cleanup;
  }
  rc = r_content(&r, s, stored);
cleanup:
  if (r.f >= 0) H5Fclose(r.f);
  if (fapl >= 0) H5Pclose(fapl);
  H5Eclear2(H5E_DEFAULT);
  if (rc) nn_ckpt_snapshot_free(s);
  return rc;
}

int nn_ckpt_read(const char *path, nn_ckpt_snapshot *s, nn_error *err) {
  uint64_t stored;
  return read_file(path, s, &stored, err);
}

/* ---- the run directory ---------------------------------------------------- */

void nn_ckpt_path(const char *dir, int64_t step, char *buf, size_t n) {
  snprintf(buf, n, "%s/checkpoints/step-%012" PRId64 ".h5", dir, step);
}

/* Step of a checkpoint file name "step-<12+ digits>.h5", or -1. */
static int64_t name_step(const char *name) {
  if (strncmp(name, "step-", 5) != 0) return -1;
  const char *p = name + 5;
  size_t nd = strspn(p, "0123456789");
  if (nd < 12 || nd > 18 || strcmp(p + nd, ".h5") != 0) return -1;
  return strtoll(p, NULL, 10);
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of the checkpoints in DIR/checkpoints, newest first (*steps malloc'ed).
 * With tmp_unlink, also removes every *.tmp there. A missing directory gives 0. */
static int list_ckpts(const char *dir, int64_t **steps, int *n, int tmp_unlink, nn_error *err) {
  char cdir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 300];
  snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
  *steps = NULL;
  *n = 0;
  DIR *dp = opendir(cdir);
  if (!dp) {
    if (errno == ENOENT) return 0;
    return nn_error_at(err, NN_EIO, cdir, 0, 0, "cannot list the checkpoint directory: %s",
                       strerror(errno));
  }
  int cap = 0, rc = 0;
  struct dirent *de;
  while ((de = readdir(dp))) {
    size_t len = strlen(de->d_name);
    if (tmp_unlink && len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
      snprintf(p, sizeof p, "%s/%s", cdir, de->d_name);
      if (unlink(p) != 0 && errno != ENOENT) {
        rc = nn_error_at(err, NN_EIO, p, 0, 0, "cannot remove a stale temporary file: %s",
                         strerror(errno));
        goto cleanup;
      }
      continue;
    }
    int64_t st = name_step(de->d_name);
    if (st < 0) continue;
    if (*n == cap) {
      int nc = cap ? 2 * cap : 16;
      int64_t *q = realloc(*steps, (size_t)nc * sizeof *q);
      if (!q) {
        rc = nn_error_set(err, NN_ENOMEM, "out of memory listing %s", cdir);
        goto cleanup;
      }
      *steps = q;
      cap = nc;
    }
    (*steps)[(*n)++] = st;
  }
  if (*n > 1) qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);
cleanup:
  closedir(dp);
  if (rc) {
    free(*steps);
    *steps = NULL;
    *n = 0;
  }
  return rc;
}

int nn_ckpt_read_latest(const char *dir, nn_ckpt_snapshot *s, char *path, size_t n,
                        nn_ckpt_warn_fn warn, void *user, nn_error *err) {
  int64_t *steps = NULL;
  int count = 0, bad = 0;
  char p[CKPT_PATH_MAX];
  memset(s, 0, sizeof *s);
  int rc = list_ckpts(dir, &steps, &count, 0, err);
  if (rc) return rc;
  rc = NN_ENOTFOUND;
  for (int i = 0; i < count; i++) {
    nn_ckpt_path(dir, steps[i], p, sizeof p);
    nn_error e;
    nn_error_clear(&e);
    if (nn_ckpt_read(p, s, &e) == 0) {
      if (path && n) snprintf(path, n, "%s", p);
      rc = 0;
      break;
    }
    bad++;
    if (warn) warn(user, &e);
  }
  if (rc && bad)
    nn_error_at(err, NN_ENOTFOUND, dir, 0, 0,
                "no valid checkpoint in checkpoints/: all %d are damaged", bad);
  else if (rc)
    nn_error_at(err, NN_ENOTFOUND, dir, 0, 0, "no checkpoint in checkpoints/");
  free(steps);
  return rc;
}

int nn_ckpt_prune(const char *dir, int keep, nn_error *err) {
  int64_t *steps = NULL;
  int count = 0, removed = 0;
  char p[CKPT_PATH_MAX];
  int rc = list_ckpts(dir, &steps, &count, 1, err);
  if (rc) return rc;
  for (int i = keep > 0 ? keep : count; i < count; i++) {
    nn_ckpt_path(dir, steps[i], p, sizeof p);
    if (unlink(p) != 0 && errno != ENOENT) {
      rc = nn_error_at(err, NN_EIO, p, 0, 0, "cannot remove an old checkpoint: %s",
                       strerror(errno));
      break;
    }
    if (!removed++) kill_at("prune");
  }
  if (!removed) kill_at("prune");
  free(steps);
  return rc;
}

/* ---- background writer ------------------------------------------------------ */

enum { SLOT_FREE, SLOT_FILLING, SLOT_QUEUED, SLOT_WRITING };

struct nn_ckpt_writer {
  char dir[CKPT_PATH_MAX - 64];  /* run directory (room left for the file name) */
  int keep;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;             /* every state change; waiters re-check */
  nn_ckpt_snapshot snap[2];      /* owned by the caller while FILLING, by the
                                    thread while QUEUED/WRITING */
  int state[2];
  uint64_t seq[2];               /* submission number of a QUEUED slot */
  char path[2][CKPT_PATH_MAX];   /* where a QUEUED slot goes */
  int cur;                       /* slot handed out and not yet submitted, -1 */
  int next;                      /* slot the next nn_ckpt_writer_slot hands out */
  uint64_t nsubmitted;
  int stop;
  int fail_rc;                   /* first failure since the last wait */
  nn_error fail_err;
};

static void *writer_main(void *arg) {
  /* Below the step loop's priority: on a node whose cores all run ranks the
   * writer uses idle time instead of preempting the training thread. Linux
   * applies a thread's nice value to that thread alone. */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0) { /* best effort */ }
  nn_ckpt_writer *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    int pick = -1;
    for (int i = 0; i < 2; i++)
      if (w->state[i] == SLOT_QUEUED && (pick < 0 || w->seq[i] < w->seq[pick])) pick = i;
    if (pick < 0) {
      if (w->stop) break;
      pthread_cond_wait(&w->cv, &w->mu);
      continue;
    }
    w->state[pick] = SLOT_WRITING;
    pthread_mutex_unlock(&w->mu);
    nn_error e;
    nn_error_clear(&e);
    int rc = nn_ckpt_write(&w->snap[pick], w->path[pick], &e);
    if (!rc) rc = nn_ckpt_prune(w->dir, w->keep, &e);
    pthread_mutex_lock(&w->mu);
    if (rc && !w->fail_rc) {
      w->fail_rc = rc;
      w->fail_err = e;
    }
    w->state[pick] = SLOT_FREE;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int nn_ckpt_writer_start(nn_ckpt_writer **wp, const char *dir, int keep, nn_error *err) {
  *wp = NULL;
  hbool_t safe = 0;
  if (H5is_library_threadsafe(&safe) < 0 || !safe)
    return nn_error_set(err, NN_EINTERNAL,
                        "this HDF5 is not built thread-safe: a background checkpoint writer "
                        "would race the data loader (write synchronously instead)");
  nn_ckpt_writer *w = calloc(1, sizeof *w);
  if (!w) return nn_error_set(err, NN_ENOMEM, "out of memory for the checkpoint writer");
  if (snprintf(w->dir, sizeof w->dir, "%s", dir) >= (int)sizeof w->dir) {
    free(w);
    return nn_error_at(err, NN_EINVAL, dir, 0, 0, "run directory path too long");
  }
  w->keep = keep;
  w->cur = -1;
  if (pthread_mutex_init(&w->mu, NULL) != 0) {
    free(w);
    return nn_error_set(err, NN_EINTERNAL, "cannot create a mutex");
  }
  if (pthread_cond_init(&w->cv, NULL) != 0) {
    pthread_mutex_destroy(&w->mu);
    free(w);
    return nn_error_set(err, NN_EINTERNAL, "cannot create a condition variable");
  }
  int e = pthread_create(&w->thread, NULL, writer_main, w);
  if (e != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return nn_error_set(err, NN_EINTERNAL, "cannot start the checkpoint writer thread: %s",
                        strerror(e));
  }
  *wp = w;
  return 0;
}

nn_ckpt_snapshot *nn_ckpt_writer_slot(nn_ckpt_writer *w) {
  pthread_mutex_lock(&w->mu);
  if (w->cur < 0) {
    while (w->state[w->next] != SLOT_FREE) pthread_cond_wait(&w->cv, &w->mu);
    w->state[w->next] = SLOT_FILLING;
    w->cur = w->next;
    w->next ^= 1;
  }
  nn_ckpt_snapshot *s = &w->snap[w->cur];
  pthread_mutex_unlock(&w->mu);
  return s;
}

int nn_ckpt_writer_submit(nn_ckpt_writer *w, const char *path, nn_error *err) {
  int rc = 0;
  pthread_mutex_lock(&w->mu);
  int c = w->cur;
  if (c < 0) {
    rc = nn_error_set(err, NN_EINVAL, "checkpoint submit without a slot (nn_ckpt_writer_slot)");
  } else {
    char p[CKPT_PATH_MAX];
    if (path && path[0])
      snprintf(p, sizeof p, "%s", path);
    else
      nn_ckpt_path(w->dir, w->snap[c].state.step, p, sizeof p);
    memcpy(w->path[c], p, sizeof p);
    w->state[c] = SLOT_QUEUED;
    w->seq[c] = w->nsubmitted++;
    w->cur = -1;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

/* With w->mu held: wait until neither snapshot is queued or being written. */
static void wait_idle_locked(nn_ckpt_writer *w) {
  for (;;) {
    int busy = 0;
    for (int i = 0; i < 2; i++)
      busy |= w->state[i] == SLOT_QUEUED || w->state[i] == SLOT_WRITING;
    if (!busy) return;
    pthread_cond_wait(&w->cv, &w->mu);
  }
}

int nn_ckpt_writer_wait(nn_ckpt_writer *w, nn_error *err) {
  pthread_mutex_lock(&w->mu);
  wait_idle_locked(w);
  int rc = w->fail_rc;
  if (rc && err) *err = w->fail_err;
  w->fail_rc = 0;
  nn_error_clear(&w->fail_err);
  pthread_mutex_unlock(&w->mu);
  return rc;
}

int nn_ckpt_writer_init_snapshots(nn_ckpt_writer *w, const nn_model *m, int nslots,
                                  nn_error *err) {
  int rc = 0;
  pthread_mutex_lock(&w->mu);
  wait_idle_locked(w); /* a failure recorded so far stays for the next wait */
  for (int i = 0; i < 2 && !rc; i++) {
    nn_ckpt_snapshot_free(&w->snap[i]);
    rc = nn_ckpt_snapshot_init(&w->snap[i], m, nslots, err);
  }
  w->cur = -1;
  w->state[0] = w->state[1] = SLOT_FREE;
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void nn_ckpt_writer_free(nn_ckpt_writer *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  for (int i = 0; i < 2; i++) nn_ckpt_snapshot_free(&w->snap[i]);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
