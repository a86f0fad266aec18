/* shard_describe.c: what one HDF5 file says about itself, for `nntrain
 * inspect` and `prepare`: its "format" attribute (nn_h5_format) and a
 * shard's own description (nn_shard_describe, not validating labels: that is
 * nn_dataset_open's job). */
#include <string.h>

#include "worker/dataset_internal.h"
#include "core/checked.h"

#define DESC_DIR_HINT "an HDF5 shard or a glob such as DIR/train-*.h5"

int nn_h5_format(const char *path, char *buf, size_t n, nn_error *err) {
  hid_t f = -1;
  int rc = nn_h5_open_read(path, NN__DS_KIND, DESC_DIR_HINT, &f, err);
  if (rc) return rc;
  nn_h5_file hf = {f, path, NN_EDATA, NN__DS_KIND};
  rc = nn_h5_attr_read_str(&hf, f, "format", buf, n, err);
  H5Fclose(f);
  return rc;
}

int nn_shard_describe(const char *path, nn_shard_desc *d, nn_error *err) {
  hid_t f = -1, ds = -1, dcpl = -1, sp = -1, t = -1;
  memset(d, 0, sizeof *d);
  d->deflate = -1;
  int rc = nn_h5_open_read(path, NN__DS_KIND, DESC_DIR_HINT, &f, err);
  if (rc) return rc;
  nn_h5_file hf = {f, path, NN_EDATA, NN__DS_KIND};
  if ((rc = nn_h5_attr_read_str(&hf, f, "format", d->format, sizeof d->format, err))) goto cleanup;
  if (strcmp(d->format, NN_SHARD_FORMAT) != 0) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "format is '%s', expected '%s' (not a data shard)",
                     d->format, NN_SHARD_FORMAT);
    goto cleanup;
  }
  if ((rc = nn_h5_attr_read_int(&hf, f, "version", &d->version, err))) goto cleanup;
  if ((rc = nn_h5_attr_read_str(&hf, f, "split", d->split, sizeof d->split, err))) goto cleanup;
  if ((rc = nn_h5_attr_read_str(&hf, f, "source", d->source, sizeof d->source, err))) goto cleanup;
  if ((rc = nn_h5_attr_read_int(&hf, f, "shard_index", &d->shard_index, err))) goto cleanup;
  if ((rc = nn_h5_attr_read_int(&hf, f, "shard_count", &d->shard_count, err))) goto cleanup;
  if ((rc = nn_h5_attr_read_num(&hf, f, "num_samples", H5T_NATIVE_INT64, &d->n, 1, 1, NULL, err)))
    goto cleanup;
  if (H5Lexists(f, "features", H5P_DEFAULT) <= 0) {
    rc = nn_error_at(err, NN_EDATA, path, 0, 0, "missing dataset /features");
    goto cleanup;
  }
  ds = H5Dopen2(f, "features", H5P_DEFAULT);
  if (ds < 0 || (dcpl = H5Dget_create_plist(ds)) < 0 || (sp = H5Dget_space(ds)) < 0 ||
      (t = H5Dget_type(ds)) < 0) {
    rc = nn_h5_fail(err, NN_EDATA, path, "/features", "cannot open the dataset");
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
  /* saturated, never wrapped: the shard reader refuses such a sample shape
   * with a message naming the attribute (dataset.c) */
  for (int i = 0; i < rank; i++)
    if (dims[i] > (hsize_t)INT64_MAX || nn_mul_i64(d->raw_bytes, (int64_t)dims[i], &d->raw_bytes)) {
      d->raw_bytes = INT64_MAX;
      break;
    }
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
