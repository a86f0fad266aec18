/* h5.c: the checkpoint code's HDF5 helpers (one home): errors carrying
 * HDF5's own message, scalar and list attributes, float datasets, the
 * tensor-table record, and reads that check class, size and shape before
 * touching the data. Nothing here knows the checkpoint layout. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/checkpoint/internal.h"
#include "worker/h5io.h"

int nn__ckpt_pathf(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return k;
}

size_t nn__ckpt_ftype_size(nn_ckpt_ftype t) { return t == NN_CKPT_I32 ? 4 : 8; }

hid_t nn__ckpt_ftype_h5(nn_ckpt_ftype t) {
  switch (t) {
  case NN_CKPT_I32: return H5T_NATIVE_INT32;
  case NN_CKPT_I64: return H5T_NATIVE_INT64;
  case NN_CKPT_U64: return H5T_NATIVE_UINT64;
  default: return H5T_NATIVE_DOUBLE;
  }
}

/* A name usable as one HDF5 path component: non-empty, no '/', not "." or "..". */
int nn__ckpt_name_ok(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  if (n == 0 || n == max) return 0;
  if (strchr(s, '/')) return 0;
  return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The compound type of tensor_rec (for memory and file), its strings in
 * character set cset (HDF5 converts none between sets); -1 on failure. */
hid_t nn__ckpt_tensor_rec_type(H5T_cset_t cset) {
  hid_t str = -1, arr = -1, t = -1;
  hsize_t four = NN_MAX_DIMS;
  str = H5Tcopy(H5T_C_S1);
  if (str < 0) goto fail;
  if (H5Tset_size(str, NN_NAME_MAX) < 0 || H5Tset_strpad(str, H5T_STR_NULLTERM) < 0 ||
      H5Tset_cset(str, cset) < 0)
    goto fail;
  arr = H5Tarray_create2(H5T_NATIVE_INT32, 1, &four);
  if (arr < 0) goto fail;
  t = H5Tcreate(H5T_COMPOUND, sizeof(nn__ckpt_tensor_rec));
  if (t < 0) goto fail;
  if (H5Tinsert(t, "layer", offsetof(nn__ckpt_tensor_rec, layer), str) < 0 ||
      H5Tinsert(t, "name", offsetof(nn__ckpt_tensor_rec, name), str) < 0 ||
      H5Tinsert(t, "is_buffer", offsetof(nn__ckpt_tensor_rec, is_buffer), H5T_NATIVE_INT32) < 0 ||
      H5Tinsert(t, "ndim", offsetof(nn__ckpt_tensor_rec, ndim), H5T_NATIVE_INT32) < 0 ||
      H5Tinsert(t, "shape", offsetof(nn__ckpt_tensor_rec, shape), arr) < 0)
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

int nn__ckpt_w_attr(nn__ckpt_w *w, hid_t loc, const char *locname, const char *name, hid_t type,
                  const void *v) {
  hid_t space = H5Screate(H5S_SCALAR), a = -1;
  int rc = 0;
  if (space < 0) goto fail;
  a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, type, v) < 0) goto fail;
  goto cleanup;
fail:
  rc = nn__ckpt_fail(w->err, NN_EIO, w->file, locname, "cannot write attribute '%s'", name);
cleanup:
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  return rc;
}

int nn__ckpt_w_attr_str(nn__ckpt_w *w, hid_t loc, const char *locname, const char *name,
                      const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  int rc;
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    rc = nn__ckpt_fail(w->err, NN_EIO, w->file, locname, "cannot make a string type");
  } else {
    rc = nn__ckpt_w_attr(w, loc, locname, name, t, &v);
  }
  if (t >= 0) H5Tclose(t);
  return rc;
}

int nn__ckpt_w_dset(nn__ckpt_w *w, const char *path, hid_t ftype, hid_t mtype, int ndim,
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
  rc = nn__ckpt_fail(w->err, NN_EIO, w->file, path, "cannot write the dataset");
cleanup:
  if (d >= 0) H5Dclose(d);
  if (space >= 0) H5Sclose(space);
  return rc;
}

int nn__ckpt_w_floats(nn__ckpt_w *w, const char *path, const nn_shape *shape, const float *data) {
  hsize_t dims[NN_MAX_DIMS];
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  return nn__ckpt_w_dset(w, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, shape->ndim, dims, data);
}

/* Open attribute `name` of loc (whose path is locname, for messages). */
static int r_attr_open(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name, hid_t *a) {
  char what[CKPT_DSET_MAX];
  snprintf(what, sizeof what, "%s%s%s", strcmp(locname, "/") ? locname : "",
           strcmp(locname, "/") ? "/" : "", name);
  htri_t ex = H5Aexists(loc, name);
  if (ex <= 0) return NN__CKPT_RFAIL(r, what, "missing attribute");
  *a = H5Aopen(loc, name, H5P_DEFAULT);
  if (*a < 0) return NN__CKPT_RFAIL(r, what, "cannot open the attribute");
  return 0;
}

/* Scalar numeric attribute of class cls and byte size `size`, read as mtype. */
int nn__ckpt_r_attr_num(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name,
                      H5T_class_t cls, size_t size, hid_t mtype, void *v) {
  hid_t a = -1, t = -1, sp = -1;
  int rc = r_attr_open(r, loc, locname, name, &a);
  if (rc) return rc;
  t = H5Aget_type(a);
  sp = H5Aget_space(a);
  if (t < 0 || sp < 0 || H5Tget_class(t) != cls || H5Tget_size(t) != size ||
      H5Sget_simple_extent_npoints(sp) != 1) {
    rc = NN__CKPT_RFAIL(r, name,
                        "attribute of %s has the wrong type or size, expected one %zu-byte %s",
                locname, size, cls == H5T_FLOAT ? "float" : "integer");
    goto cleanup;
  }
  if (H5Aread(a, mtype, v) < 0)
    rc = NN__CKPT_RFAIL(r, name, "cannot read the attribute of %s", locname);
cleanup:
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return rc;
}

/* Scalar string attribute (variable or fixed length) into buf[n]. */
int nn__ckpt_r_attr_str(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name, char *buf,
                      size_t n) {
  hid_t a = -1, t = -1, sp = -1, mt = -1;
  int rc = r_attr_open(r, loc, locname, name, &a);
  if (rc) return rc;
  t = H5Aget_type(a);
  sp = H5Aget_space(a);
  if (t < 0 || sp < 0 || H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1) {
    rc = NN__CKPT_RFAIL(r, name, "attribute of %s is not one string", locname);
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
  rc = NN__CKPT_RFAIL(r, name, "cannot read the string attribute of %s", locname);
cleanup:
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return rc;
}

/* Open dataset `path`; check its class/size and that its dims equal
 * dims[ndim] (ndim -1: any 1-d length, returned in *len). */
int nn__ckpt_r_dset_open(nn__ckpt_r *r, const char *path, H5T_class_t cls, size_t size, int ndim,
                       const hsize_t *dims, hsize_t *len, hid_t *d) {
  hid_t t = -1, sp = -1;
  int rc = 0;
  htri_t ex = H5Lexists(r->f, path, H5P_DEFAULT);
  if (ex <= 0) return NN__CKPT_RFAIL(r, path, "missing dataset");
  *d = H5Dopen2(r->f, path, H5P_DEFAULT);
  if (*d < 0) return NN__CKPT_RFAIL(r, path, "cannot open the dataset");
  t = H5Dget_type(*d);
  sp = H5Dget_space(*d);
  if (t < 0 || sp < 0) {
    rc = NN__CKPT_RFAIL(r, path, "cannot read the dataset's type");
    goto cleanup;
  }
  if (H5Tget_class(t) != cls || (size && H5Tget_size(t) != size)) {
    rc = NN__CKPT_RFAIL(r, path, "wrong element type, expected %s%s", size == 4 ? "float32" :
                size == 1 ? "uint8" : "", cls == H5T_COMPOUND ? "the tensor table record" :
                cls == H5T_STRING ? "a string" : "");
    goto cleanup;
  }
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t got[8] = {0};
  if (nd < 0 || nd > 8 || H5Sget_simple_extent_dims(sp, got, NULL) < 0) {
    rc = NN__CKPT_RFAIL(r, path, "cannot read the dataset's shape");
    goto cleanup;
  }
  if (ndim < 0) {
    if (nd != 1) {
      rc = NN__CKPT_RFAIL(r, path, "has %d dimensions, expected 1", nd);
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
      rc = NN__CKPT_RFAIL(r, path, "shape [%s], expected [%s] (from /tensors)", a, b);
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

int nn__ckpt_r_floats(nn__ckpt_r *r, const char *path, const nn_shape *shape, float *dst) {
  hsize_t dims[NN_MAX_DIMS];
  hid_t d = -1;
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  int rc = nn__ckpt_r_dset_open(r, path, H5T_FLOAT, 4, shape->ndim, dims, NULL, &d);
  if (rc) return rc;
  if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = NN__CKPT_RFAIL(r, path, "cannot read the data (file truncated or damaged)");
  H5Dclose(d);
  return rc;
}

/* Number of links in group `path`, or -1 (error recorded). */
int nn__ckpt_r_group_links(nn__ckpt_r *r, const char *path, hsize_t *n) {
  H5G_info_t info;
  htri_t ex = H5Lexists(r->f, path, H5P_DEFAULT);
  if (ex <= 0) return NN__CKPT_RFAIL(r, path, "missing group");
  if (H5Gget_info_by_name(r->f, path, &info, H5P_DEFAULT) < 0)
    return NN__CKPT_RFAIL(r, path, "cannot read the group");
  *n = info.nlinks;
  return 0;
}

int nn__ckpt_w_attr_strs(nn__ckpt_w *w, hid_t loc, const char *locname, const char *name,
                         const char *const *v, int n) {
  hsize_t ns = (hsize_t)n;
  hid_t t = H5Tcopy(H5T_C_S1), space = H5Screate_simple(1, &ns, NULL), a = -1;
  int ok = t >= 0 && space >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
           H5Tset_cset(t, H5T_CSET_UTF8) >= 0 &&
           (a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
           (n == 0 || H5Awrite(a, t, v) >= 0);
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  if (!ok) return nn__ckpt_fail(w->err, NN_EIO, w->file, locname, "cannot write attribute '%s'",
                                name);
  return 0;
}

int nn__ckpt_r_attr_names(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name,
                          int max, size_t len, char *out, int *n) {
  char what[CKPT_DSET_MAX], *v[16] = {NULL};
  hid_t a = -1, t = -1, sp = -1, mt = -1;
  snprintf(what, sizeof what, "%s%s%s", strcmp(locname, "/") ? locname : "",
           strcmp(locname, "/") ? "/" : "", name);
  int rc = r_attr_open(r, loc, locname, name, &a);
  if (rc) return rc;
  t = H5Aget_type(a);
  sp = H5Aget_space(a);
  hssize_t k = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (t < 0 || H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) <= 0 ||
      H5Sget_simple_extent_ndims(sp) != 1 || k < 0 || k > max || max > 16) {
    rc = NN__CKPT_RFAIL(r, what, "expected a list of at most %d strings", max);
    goto cleanup;
  }
  mt = H5Tcopy(H5T_C_S1);
  if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5T_CSET_UTF8) < 0 ||
      (k > 0 && H5Aread(a, mt, v) < 0)) {
    rc = NN__CKPT_RFAIL(r, what, "cannot read the attribute");
    goto cleanup;
  }
  for (int i = 0; i < (int)k; i++) {
    if (!v[i] || !nn__ckpt_name_ok(v[i], len)) {
      rc = NN__CKPT_RFAIL(r, what, "entry %d ('%.60s') is not a usable name (non-empty, no '/', "
                          "under %zu bytes)", i, v[i] ? v[i] : "", len);
      goto cleanup;
    }
    snprintf(out + (size_t)i * len, len, "%s", v[i]);
  }
  *n = (int)k;
cleanup:
  for (int i = 0; i < 16; i++)
    if (v[i]) H5free_memory(v[i]);
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return rc;
}
