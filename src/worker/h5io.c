/* h5io.c: shared HDF5 helpers (see h5io.h): quiet mode, HDF5 errors into
 * nn_error, opening a file for reading, attribute reading and writing,
 * checked dataset writing, opening and reading, group member counts. Used by
 * the shard reader/writer (worker/) and the checkpoint codec
 * (coordinator/checkpoint/). */
#include "worker/h5io.h"
#include "core/mem.h"

#include "worker/fsutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nn_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---- errors -------------------------------------------------------------- */

typedef struct h5_msg {
  char text[200];
} h5_msg;

/* H5Ewalk2 callback: keep the innermost (first, walking upward) description. */
static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_msg *m = data;
  if (n == 0 && e->desc && e->desc[0]) snprintf(m->text, sizeof m->text, "%s", e->desc);
  return 0;
}

int nn_h5_fail(nn_error *err, int code, const char *path, const char *what, const char *fmt,
               ...) {
  h5_msg m = {{0}};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &m);
  H5Eclear2(H5E_DEFAULT);
  for (char *c = m.text; *c; c++) /* one line: a failed write's text holds a ctime() */
    if (*c == '\n' || *c == '\r') *c = ' ';
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *w = what ? what : "", *sep = what ? ": " : "";
  if (m.text[0])
    nn_error_at(err, code, path, 0, 0, "%s%s%s (HDF5: %s)", w, sep, msg, m.text);
  else
    nn_error_at(err, code, path, 0, 0, "%s%s%s", w, sep, msg);
  if (err && what) snprintf(err->where, sizeof err->where, "%s", what);
  return code;
}

/* ---- files --------------------------------------------------------------- */

int nn_h5_open_read(const char *path, const char *expected, const char *dir_hint, hid_t *file,
                    nn_error *err) {
  *file = -1;
  nn_h5_quiet();
  const char *want = expected ? expected : "an HDF5 file";
  int rc = nn_stat_file(path, dir_hint ? dir_hint : want, NULL, err);
  if (rc) return rc;
  if (access(path, R_OK) != 0)
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot read: %s", strerror(errno));
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return nn_error_at(err, NN_EDATA, path, 0, 0, "not an HDF5 file (expected %s)", want);
  }
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) return nn_h5_fail(err, NN_EIO, path, NULL, "cannot make a property list");
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (*file < 0) /* before any other HDF5 call, which would clear the error stack */
    rc = nn_h5_fail(err, NN_EDATA, path, NULL, "cannot open: the HDF5 file is truncated or damaged");
  H5Pclose(fapl);
  return rc;
}

/* ---- attribute paths ------------------------------------------------------ */

void nn_h5_attr_path(hid_t loc, const char *name, char *buf, size_t n) {
  char obj[512];
  ssize_t k = H5Iget_name(loc, obj, sizeof obj);
  if (k < 0) H5Eclear2(H5E_DEFAULT);
  const char *o = k > 0 && (size_t)k < sizeof obj ? obj : "";
  while (*o == '/') o++;
  if (snprintf(buf, n, "%s%s%s", o, *o ? "/" : "", name) < 0) buf[0] = '\0'; /* cut if long */
}

/* ---- writing attributes -------------------------------------------------- */

/* Create attribute `name` of type t and the given space on loc and write v
 * (memory type t). The failure is recorded at once, before any other HDF5
 * call: every HDF5 API call clears the error stack on entry, so a close
 * first would lose HDF5's reason. */
static int attr_put(const nn_h5_file *f, hid_t loc, const char *name, hid_t t, hid_t space,
                    const void *v, nn_error *err) {
  char what[512];
  nn_h5_attr_path(loc, name, what, sizeof what);
  if (t < 0 || space < 0)
    return nn_h5_fail(err, NN_EIO, f->path, what, "cannot make the attribute's type or space");
  hid_t a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return nn_h5_fail(err, NN_EIO, f->path, what, "cannot write the attribute");
  int rc = 0;
  if (H5Sget_simple_extent_npoints(space) > 0 && H5Awrite(a, t, v) < 0)
    rc = nn_h5_fail(err, NN_EIO, f->path, what, "cannot write the attribute");
  H5Aclose(a);
  return rc;
}

hid_t nn_h5_str_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
    H5Tclose(t);
    t = -1;
  }
  return t;
}

int nn_h5_attr_write(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype,
                     const void *v, int n, nn_error *err) {
  hsize_t d = (hsize_t)n;
  hid_t space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
  int rc = attr_put(f, loc, name, mtype, space, v, err);
  if (space >= 0) H5Sclose(space);
  return rc;
}

int nn_h5_attr_write_str(const nn_h5_file *f, hid_t loc, const char *name, const char *v,
                         nn_error *err) {
  hid_t t = nn_h5_str_type(), space = -1;
  const char *p = v ? v : "";
  if (t >= 0) space = H5Screate(H5S_SCALAR);
  int rc = attr_put(f, loc, name, t, space, &p, err);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  return rc;
}

int nn_h5_attr_write_strs(const nn_h5_file *f, hid_t loc, const char *name,
                          const char *const *v, int n, nn_error *err) {
  hsize_t d = (hsize_t)(n > 0 ? n : 0);
  hid_t t = nn_h5_str_type(), space = -1;
  if (t >= 0) space = H5Screate_simple(1, &d, NULL);
  int rc = attr_put(f, loc, name, t, space, v, err);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  return rc;
}

/* ---- reading attributes -------------------------------------------------- */

/* Open attribute `name` of loc (path `what`, for messages) into *out;
 * f->code if it does not exist. */
static int attr_open(const nn_h5_file *f, hid_t loc, const char *name, const char *what,
                     hid_t *out, nn_error *err) {
  htri_t ex = H5Aexists(loc, name);
  if (ex < 0) return nn_h5_fail(err, f->code, f->path, what, "cannot look up the attribute");
  if (ex == 0) {
    if (f->kind)
      nn_error_at(err, f->code, f->path, 0, 0,
                  "missing attribute '%s': not %s, or written incompletely", what, f->kind);
    else
      nn_error_at(err, f->code, f->path, 0, 0, "missing attribute '%s'", what);
    if (err && snprintf(err->where, sizeof err->where, "%s", what) < 0) err->where[0] = '\0';
    return f->code;
  }
  *out = H5Aopen(loc, name, H5P_DEFAULT);
  if (*out < 0) return nn_h5_fail(err, f->code, f->path, what, "cannot open the attribute");
  return 0;
}

/* An attribute being read: its handle, file type, dataspace and path. */
typedef struct attr_in {
  hid_t a, ft, space;
  char what[512];
} attr_in;

/* attr_open, then the attribute's file type and dataspace. On failure the
 * handles that were opened stay in *in for attr_close (the others -1). */
static int attr_open_typed(const nn_h5_file *f, hid_t loc, const char *name, attr_in *in,
                           nn_error *err) {
  in->a = in->ft = in->space = -1;
  nn_h5_attr_path(loc, name, in->what, sizeof in->what);
  int rc = attr_open(f, loc, name, in->what, &in->a, err);
  if (rc) return rc;
  in->ft = H5Aget_type(in->a);
  in->space = H5Aget_space(in->a);
  if (in->ft < 0 || in->space < 0)
    return nn_h5_fail(err, f->code, f->path, in->what, "cannot read the attribute's type");
  return 0;
}

static void attr_close(attr_in *in) {
  if (in->ft >= 0) H5Tclose(in->ft);
  if (in->space >= 0) H5Sclose(in->space);
  if (in->a >= 0) H5Aclose(in->a);
}

/* Read numeric attribute in (see nn_h5_attr_read_num); strict: the file
 * type must have mtype's class and size, and exact must be 1. */
static int attr_read_num(const nn_h5_file *f, attr_in *in, hid_t mtype, void *v, int max,
                         int exact, int *count, int strict, nn_error *err) {
  H5T_class_t cls = H5Tget_class(in->ft), want = H5Tget_class(mtype);
  hssize_t np = H5Sget_simple_extent_npoints(in->space);
  if (strict && (cls != want || H5Tget_size(in->ft) != H5Tget_size(mtype) || np != 1))
    return nn_error_at(err, f->code, f->path, 0, 0,
                       "attribute '%s' has the wrong type or size, expected one %zu-byte %s",
                       in->what, H5Tget_size(mtype), want == H5T_FLOAT ? "float" : "integer");
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    return nn_error_at(err, f->code, f->path, 0, 0, "attribute '%s' is not numeric", in->what);
  if (np < 1 || np > max || (exact > 0 && np != exact)) {
    if (exact > 0)
      return nn_error_at(err, f->code, f->path, 0, 0,
                         "attribute '%s' has %lld values, expected %d", in->what, (long long)np,
                         exact);
    return nn_error_at(err, f->code, f->path, 0, 0,
                       "attribute '%s' has %lld values, expected 1 to %d", in->what,
                       (long long)np, max);
  }
  if (H5Aread(in->a, mtype, v) < 0)
    return nn_h5_fail(err, f->code, f->path, in->what, "cannot read the attribute");
  if (count) *count = (int)np;
  return 0;
}

int nn_h5_attr_read_num(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype, void *v,
                        int max, int exact, int *count, nn_error *err) {
  attr_in in;
  int rc = attr_open_typed(f, loc, name, &in, err);
  if (!rc) rc = attr_read_num(f, &in, mtype, v, max, exact, count, 0, err);
  attr_close(&in);
  return rc;
}

int nn_h5_attr_read_exact(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype,
                          void *v, nn_error *err) {
  attr_in in;
  int rc = attr_open_typed(f, loc, name, &in, err);
  if (!rc) rc = attr_read_num(f, &in, mtype, v, 1, 1, NULL, 1, err);
  attr_close(&in);
  return rc;
}

int nn_h5_attr_read_int(const nn_h5_file *f, hid_t loc, const char *name, int *v, nn_error *err) {
  int32_t x = 0;
  int rc = nn_h5_attr_read_num(f, loc, name, H5T_NATIVE_INT32, &x, 1, 1, NULL, err);
  if (!rc) *v = x;
  return rc;
}

/* Read string attribute a (of file type ft) into buf[n] with memory type mt
 * (a copy of H5T_C_S1 in ft's character set). 0 or -1. */
static int attr_read_str_as(hid_t a, hid_t ft, hid_t mt, char *buf, size_t n) {
  if (H5Tis_variable_str(ft) > 0) {
    char *p = NULL;
    if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &p) < 0) return -1;
    snprintf(buf, n, "%s", p ? p : "");
    if (p) H5free_memory(p);
    return 0;
  }
  size_t sz = H5Tget_size(ft);
  char *tmp = nn_calloc(sz + 1, 1); /* + 1: room for a NUL the file need not have */
  int rc = -1;
  if (tmp && H5Tset_size(mt, sz + 1) >= 0 && H5Aread(a, mt, tmp) >= 0) {
    snprintf(buf, n, "%s", tmp);
    rc = 0;
  }
  free(tmp);
  return rc;
}

/* A copy of H5T_C_S1 in the character set of file type ft (HDF5 converts
 * no string between character sets: read in the file's), or -1. */
static hid_t str_mem_type(hid_t ft) {
  hid_t mt = H5Tcopy(H5T_C_S1);
  if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
    H5Tclose(mt);
    mt = -1;
  }
  return mt;
}

int nn_h5_attr_read_str(const nn_h5_file *f, hid_t loc, const char *name, char *buf, size_t n,
                        nn_error *err) {
  attr_in in;
  hid_t mt = -1;
  buf[0] = '\0';
  int rc = attr_open_typed(f, loc, name, &in, err);
  if (rc) goto cleanup;
  if (H5Tget_class(in.ft) != H5T_STRING || H5Sget_simple_extent_npoints(in.space) != 1) {
    rc = nn_error_at(err, f->code, f->path, 0, 0, "attribute '%s' is not a single string",
                     in.what);
    goto cleanup;
  }
  mt = str_mem_type(in.ft);
  if (mt < 0 || attr_read_str_as(in.a, in.ft, mt, buf, n) != 0)
    rc = nn_h5_fail(err, f->code, f->path, in.what, "cannot read the attribute");
cleanup:
  if (mt >= 0) H5Tclose(mt);
  attr_close(&in);
  return rc;
}

/* Copy the k strings v[] into out[k][len]; f->code if one is too long. */
static int copy_strs(const nn_h5_file *f, const char *what, char *const *v, int k, size_t len,
                     char *out, nn_error *err) {
  for (int i = 0; i < k; i++) {
    const char *s = v[i] ? v[i] : "";
    if (strlen(s) >= len)
      return nn_error_at(err, f->code, f->path, 0, 0,
                         "attribute '%s': entry %d ('%.60s') is %zu bytes or longer", what, i, s,
                         len);
    snprintf(out + (size_t)i * len, len, "%s", s);
  }
  return 0;
}

int nn_h5_attr_read_strs(const nn_h5_file *f, hid_t loc, const char *name, int max, size_t len,
                         char *out, int *n, nn_error *err) {
  attr_in in;
  hid_t mt = -1;
  char **v = NULL;
  hssize_t k = 0;
  int rc = attr_open_typed(f, loc, name, &in, err);
  if (rc) goto cleanup;
  k = H5Sget_simple_extent_npoints(in.space);
  if (H5Tget_class(in.ft) != H5T_STRING || H5Tis_variable_str(in.ft) <= 0 ||
      H5Sget_simple_extent_ndims(in.space) != 1 || k < 0 || k > max) {
    rc = nn_error_at(err, f->code, f->path, 0, 0,
                     "attribute '%s': expected a list of at most %d strings", in.what, max);
    goto cleanup;
  }
  v = nn_calloc((size_t)k + 1, sizeof *v);
  if (!v) {
    rc = nn_error_at(err, NN_ENOMEM, f->path, 0, 0, "attribute '%s': out of memory", in.what);
    goto cleanup;
  }
  mt = str_mem_type(in.ft);
  if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || (k > 0 && H5Aread(in.a, mt, v) < 0)) {
    rc = nn_h5_fail(err, f->code, f->path, in.what, "cannot read the attribute");
    goto cleanup;
  }
  rc = copy_strs(f, in.what, v, (int)k, len, out, err);
  if (!rc) *n = (int)k;
cleanup:
  for (int i = 0; v && i < (int)k; i++)
    if (v[i]) H5free_memory(v[i]);
  free(v);
  if (mt >= 0) H5Tclose(mt);
  attr_close(&in);
  return rc;
}

/* ---- datasets ------------------------------------------------------------ */

int nn_h5_dset_write(const nn_h5_file *f, const char *path, hid_t ftype, hid_t mtype, int ndim,
                     const hsize_t *dims, const void *data, nn_error *err) {
  hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR), d = -1;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  int rc = 0;
  if (space < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) goto fail;
  d = H5Dcreate2(f->id, path, ftype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (d < 0) goto fail;
  if (H5Sget_simple_extent_npoints(space) > 0 &&
      H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    goto fail;
  goto cleanup;
fail: /* at once: the closes below would clear HDF5's error stack */
  rc = nn_h5_fail(err, NN_EIO, f->path, path, "cannot write the dataset");
cleanup:
  if (d >= 0) H5Dclose(d);
  if (lcpl >= 0) H5Pclose(lcpl);
  if (space >= 0) H5Sclose(space);
  return rc;
}

/* "a, b, c" of dims[nd] into buf[n]. */
static void dims_text(char *buf, size_t n, const hsize_t *dims, int nd) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < nd && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
}

/* Check dataspace sp of dataset `path` against want (see nn_h5_dset_open). */
static int check_shape(const nn_h5_file *f, const char *path, hid_t sp, const nn_h5_want *want,
                       hsize_t *len, nn_error *err) {
  hsize_t got[H5S_MAX_RANK] = {0};
  int nd = H5Sget_simple_extent_ndims(sp);
  if (nd < 0 || H5Sget_simple_extent_dims(sp, got, NULL) < 0)
    return nn_h5_fail(err, f->code, f->path, path, "cannot read the dataset's shape");
  if (want->ndim < 0) {
    if (nd != 1)
      return nn_h5_fail(err, f->code, f->path, path, "has %d dimensions, expected 1", nd);
    *len = got[0];
    return 0;
  }
  int same = nd == want->ndim;
  for (int i = 0; same && i < nd; i++) same = got[i] == want->dims[i];
  if (same) return 0;
  char a[96], b[96];
  dims_text(a, sizeof a, got, nd);
  dims_text(b, sizeof b, want->dims, want->ndim);
  return nn_h5_fail(err, f->code, f->path, path, "shape [%s], expected [%s]%s%s%s", a, b,
                    want->dims_from ? " (from " : "", want->dims_from ? want->dims_from : "",
                    want->dims_from ? ")" : "");
}

int nn_h5_dset_open(const nn_h5_file *f, const char *path, const nn_h5_want *want, hsize_t *len,
                    hid_t *d, nn_error *err) {
  hid_t t = -1, sp = -1;
  int rc = 0;
  *d = -1;
  if (H5Lexists(f->id, path, H5P_DEFAULT) <= 0)
    return nn_h5_fail(err, f->code, f->path, path, "missing dataset");
  *d = H5Dopen2(f->id, path, H5P_DEFAULT);
  if (*d < 0) return nn_h5_fail(err, f->code, f->path, path, "cannot open the dataset");
  t = H5Dget_type(*d);
  sp = H5Dget_space(*d);
  if (t < 0 || sp < 0)
    rc = nn_h5_fail(err, f->code, f->path, path, "cannot read the dataset's type");
  else if (H5Tget_class(t) != want->cls || (want->size && H5Tget_size(t) != want->size))
    rc = nn_h5_fail(err, f->code, f->path, path, "wrong element type, expected %s",
                    want->type ? want->type : "another type");
  else
    rc = check_shape(f, path, sp, want, len, err);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (rc) {
    H5Dclose(*d);
    *d = -1;
  }
  return rc;
}

int nn_h5_dset_read(const nn_h5_file *f, const char *path, const nn_h5_want *want, hid_t mtype,
                    void *dst, nn_error *err) {
  hid_t d = -1;
  hsize_t len = 0;
  int rc = nn_h5_dset_open(f, path, want, &len, &d, err);
  if (rc) return rc;
  if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = nn_h5_fail(err, f->code, f->path, path, "cannot read the data (file truncated or damaged)");
  H5Dclose(d);
  return rc;
}

int nn_h5_group_links(const nn_h5_file *f, const char *path, hsize_t *n, nn_error *err) {
  H5G_info_t info;
  if (H5Lexists(f->id, path, H5P_DEFAULT) <= 0)
    return nn_h5_fail(err, f->code, f->path, path, "missing group");
  if (H5Gget_info_by_name(f->id, path, &info, H5P_DEFAULT) < 0)
    return nn_h5_fail(err, f->code, f->path, path, "cannot read the group");
  *n = info.nlinks;
  return 0;
}
