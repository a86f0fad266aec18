/* h5io.c: shared HDF5 helpers (see h5io.h): quiet mode, HDF5 errors into
 * nn_error, opening a file for reading, and attribute reading and writing. */
#include "worker/h5io.h"

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

/* ---- writing attributes -------------------------------------------------- */

/* Create attribute `name` of type t and the given space on loc and write v
 * (memory type t). The failure is recorded at once, before any other HDF5
 * call: every HDF5 API call clears the error stack on entry, so a close
 * first would lose HDF5's reason. */
static int attr_put(const nn_h5_file *f, hid_t loc, const char *name, hid_t t, hid_t space,
                    const void *v, nn_error *err) {
  if (t < 0 || space < 0)
    return nn_h5_fail(err, NN_EIO, f->path, name, "cannot make the attribute's type or space");
  hid_t a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return nn_h5_fail(err, NN_EIO, f->path, name, "cannot write the attribute");
  int rc = 0;
  if (H5Awrite(a, t, v) < 0)
    rc = nn_h5_fail(err, NN_EIO, f->path, name, "cannot write the attribute");
  H5Aclose(a);
  return rc;
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
  hid_t t = H5Tcopy(H5T_C_S1), space = -1;
  const char *p = v ? v : "";
  if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
    H5Tclose(t);
    t = -1;
  }
  if (t >= 0) space = H5Screate(H5S_SCALAR);
  int rc = attr_put(f, loc, name, t, space, &p, err);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  return rc;
}

/* ---- reading attributes -------------------------------------------------- */

/* Open attribute `name` of loc into *out; f->code if it does not exist. */
static int attr_open(const nn_h5_file *f, hid_t loc, const char *name, hid_t *out,
                     nn_error *err) {
  htri_t ex = H5Aexists(loc, name);
  if (ex < 0) return nn_h5_fail(err, f->code, f->path, name, "cannot look up the attribute");
  if (ex == 0) {
    if (f->kind)
      nn_error_at(err, f->code, f->path, 0, 0,
                  "missing attribute '%s': not %s, or written incompletely", name, f->kind);
    else
      nn_error_at(err, f->code, f->path, 0, 0, "missing attribute '%s'", name);
    if (err) snprintf(err->where, sizeof err->where, "%s", name);
    return f->code;
  }
  *out = H5Aopen(loc, name, H5P_DEFAULT);
  if (*out < 0) return nn_h5_fail(err, f->code, f->path, name, "cannot open the attribute");
  return 0;
}

/* attr_open, then the attribute's file type and dataspace. On failure the
 * handles that were opened stay in *a, *ft, *space for the caller to close
 * (the others are -1). */
static int attr_open_typed(const nn_h5_file *f, hid_t loc, const char *name, hid_t *a,
                           hid_t *ft, hid_t *space, nn_error *err) {
  *a = *ft = *space = -1;
  int rc = attr_open(f, loc, name, a, err);
  if (rc) return rc;
  *ft = H5Aget_type(*a);
  *space = H5Aget_space(*a);
  if (*ft < 0 || *space < 0)
    return nn_h5_fail(err, f->code, f->path, name, "cannot read the attribute's type");
  return 0;
}

int nn_h5_attr_read_num(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype, void *v,
                        int max, int exact, int *count, nn_error *err) {
  hid_t a, space, ft;
  int rc = attr_open_typed(f, loc, name, &a, &ft, &space, err);
  if (rc) goto cleanup;
  H5T_class_t cls = H5Tget_class(ft);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    rc = nn_error_at(err, f->code, f->path, 0, 0, "attribute '%s' is not numeric", name);
    goto cleanup;
  }
  hssize_t np = H5Sget_simple_extent_npoints(space);
  if (np < 1 || np > max || (exact > 0 && np != exact)) {
    if (exact > 0)
      rc = nn_error_at(err, f->code, f->path, 0, 0, "attribute '%s' has %lld values, expected %d",
                       name, (long long)np, exact);
    else
      rc = nn_error_at(err, f->code, f->path, 0, 0,
                       "attribute '%s' has %lld values, expected 1 to %d", name, (long long)np,
                       max);
    goto cleanup;
  }
  if (H5Aread(a, mtype, v) < 0) {
    rc = nn_h5_fail(err, f->code, f->path, name, "cannot read the attribute");
    goto cleanup;
  }
  if (count) *count = (int)np;
cleanup:
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  if (a >= 0) H5Aclose(a);
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
  char *tmp = calloc(sz + 1, 1); /* + 1: room for a NUL the file need not have */
  int rc = -1;
  if (tmp && H5Tset_size(mt, sz + 1) >= 0 && H5Aread(a, mt, tmp) >= 0) {
    snprintf(buf, n, "%s", tmp);
    rc = 0;
  }
  free(tmp);
  return rc;
}

int nn_h5_attr_read_str(const nn_h5_file *f, hid_t loc, const char *name, char *buf, size_t n,
                        nn_error *err) {
  hid_t a, ft, mt = -1, space;
  buf[0] = '\0';
  int rc = attr_open_typed(f, loc, name, &a, &ft, &space, err);
  if (rc) goto cleanup;
  if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
    rc = nn_error_at(err, f->code, f->path, 0, 0, "attribute '%s' is not a single string", name);
    goto cleanup;
  }
  /* HDF5 converts no string between character sets: read in the file's. */
  mt = H5Tcopy(H5T_C_S1);
  if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0 ||
      attr_read_str_as(a, ft, mt, buf, n) != 0)
    rc = nn_h5_fail(err, f->code, f->path, name, "cannot read the attribute");
cleanup:
  if (mt >= 0) H5Tclose(mt);
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  if (a >= 0) H5Aclose(a);
  return rc;
}
