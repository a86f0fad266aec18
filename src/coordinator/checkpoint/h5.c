/* h5.c: the checkpoint's own HDF5 pieces: path formatting, the name rule,
 * the state-field type mapping, the tensor-table record type, float32
 * tensor datasets and lists of names. Generic HDF5 reading and writing (and
 * the checks before any read) is worker/h5io.c; nothing here knows the
 * checkpoint layout. */
#include <stdarg.h>
#include <stdio.h>
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

int nn__ckpt_w_floats(nn__ckpt_w *w, const char *path, const nn_shape *shape, const float *data) {
  hsize_t dims[NN_MAX_DIMS];
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  return nn_h5_dset_write(&w->h, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, shape->ndim, dims, data,
                          w->err);
}

int nn__ckpt_r_floats(nn__ckpt_r *r, const char *path, const nn_shape *shape, float *dst) {
  hsize_t dims[NN_MAX_DIMS];
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  const nn_h5_want want = {H5T_FLOAT, 4, "float32", shape->ndim, dims, "/tensors"};
  return nn_h5_dset_read(&r->h, path, &want, H5T_NATIVE_FLOAT, dst, r->err);
}

int nn__ckpt_r_names(nn__ckpt_r *r, hid_t loc, const char *name, int max, size_t len, char *out,
                     int *n) {
  char what[CKPT_DSET_MAX];
  nn_h5_attr_path(loc, name, what, sizeof what);
  int rc = nn_h5_attr_read_strs(&r->h, loc, name, max, len, out, n, r->err);
  for (int i = 0; !rc && i < *n; i++) {
    const char *s = out + (size_t)i * len;
    if (!nn__ckpt_name_ok(s, len))
      rc = NN__CKPT_RFAIL(r, what, "entry %d ('%.60s') is not a usable name (non-empty, no '/', "
                          "under %zu bytes)", i, s, len);
  }
  return rc;
}
