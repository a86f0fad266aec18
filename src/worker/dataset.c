/* dataset.c: opening a data set of HDF5 shards (format in dataset.h, user
 * docs in docs/data-format.md): expanding the glob, reading and validating
 * each shard's attributes and datasets, checking that the shards agree,
 * loading and range-checking every label (or target), and the optional
 * whole-set feature cache. Reading samples is dataset_read.c, the decoded
 * chunk cache dataset_chunk.c (see dataset_internal.h for the map).
 *
 * Every shard's /features stays open after nn_dataset_open. All HDF5
 * failures become NN_EDATA / NN_EIO records naming the file and the dataset
 * or attribute, with HDF5's innermost message appended (worker/h5io.h);
 * HDF5's own error printing is switched off. Not here: normalization (the
 * pipeline applies mean/std), augmentation, prefetching. */
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "worker/dataset_internal.h"
#include "core/checked.h"
#include "core/mem.h"

#define DS_DEFAULT_CACHE ((size_t)64 << 20)
/* HDF5's own chunk cache per shard (used only by the fallback read path for
 * layouts our writer does not make): small, so memory stays bounded by
 * DS_DEFAULT_CACHE-ish whatever the number of shards. */
#define DS_H5_CACHE ((size_t)2 << 20)

static const char *ftype_name(nn_feature_type t) {
  return t == NN_FEAT_U8 ? "uint8" : t == NN_FEAT_I32 ? "int32 token ids" : "float32";
}

/* ---- one shard ------------------------------------------------------------ */

/* The sample shape must have at most NN_MAX_ELEMS elements (layers index a
 * sample with int) and a row of it, in float, must be addressable. */
static int shard_check_sample_size(const char *p, const nn_shape *sample, nn_error *err) {
  size_t count = 0, bytes = 0;
  char shp[80];
  if (nn_shape_count_checked(sample, &count) || nn_bytes_of(count, sizeof(float), &bytes))
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attribute 'sample_shape' %s has more than %lld elements per sample",
                       nn_shape_str(sample, shp, sizeof shp), (long long)NN_MAX_ELEMS);
  return 0;
}

/* Attributes 'mean' and 'std': one finite value per channel of the sample
 * shape each, std >= 0 (0: a constant feature). Sets info->channels, mean, std. */
static int shard_read_stats(const nn_h5_file *hf, nn_dataset_info *info, nn_error *err) {
  const char *p = hf->path;
  int want = nn_shard_channels(&info->sample), cm = 0, cs = 0;
  if (want < 1 || want > NN_SHARD_MAX_CHANNELS)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attribute 'sample_shape' needs %d statistics channels; at most %d are "
                       "supported", want, NN_SHARD_MAX_CHANNELS);
  int rc = nn_h5_attr_read_num(hf, hf->id, "mean", H5T_NATIVE_DOUBLE, info->mean,
                               NN_SHARD_MAX_CHANNELS, 0, &cm, err);
  if (rc) return rc;
  if (cm != want)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attribute 'mean' has %d values, the sample shape needs %d", cm, want);
  if ((rc = nn_h5_attr_read_num(hf, hf->id, "std", H5T_NATIVE_DOUBLE, info->std,
                                NN_SHARD_MAX_CHANNELS, 0, &cs, err)))
    return rc;
  if (cs != want)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attribute 'std' has %d values, the sample shape needs %d", cs, want);
  for (int c = 0; c < want; c++) {
    if (!isfinite(info->mean[c]))
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'mean' value %d is %g, expected a "
                         "finite number", c, info->mean[c]);
    /* 0 is a constant feature (docs/data-format.md: normalized with 1) */
    if (!isfinite(info->std[c]) || !(info->std[c] >= 0))
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'std' value %d is %g, expected a "
                         "finite number >= 0", c, info->std[c]);
  }
  info->channels = want;
  return 0;
}

/* Read and check shard s's root attributes into info (all but n, ftype and
 * target_dim) and s; *nsamp gets num_samples. s->file is open. */
static int shard_read_attrs(nn__ds_shard *s, nn_dataset_info *info, int64_t *nsamp,
                            nn_error *err) {
  const char *p = s->path;
  nn_h5_file hf = {s->file, p, NN_EDATA, NN__DS_KIND};
  char fmt[64];
  int rc = nn_h5_attr_read_str(&hf, s->file, "format", fmt, sizeof fmt, err);
  if (rc) return rc;
  if (strcmp(fmt, NN_SHARD_FORMAT) != 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "format is '%s', expected '%s' (not a data shard)",
                       fmt, NN_SHARD_FORMAT);
  int version = 0;
  rc = nn_h5_attr_read_int(&hf, s->file, "version", &version, err);
  if (rc) return rc;
  if (version != NN_SHARD_VERSION)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "shard format version %d; this build of nntrain reads version %d", version,
                       NN_SHARD_VERSION);
  int32_t sshape[NN_MAX_DIMS];
  int nd = 0;
  rc = nn_h5_attr_read_num(&hf, s->file, "sample_shape", H5T_NATIVE_INT32, sshape, NN_MAX_DIMS,
                           0, &nd, err);
  if (rc) return rc;
  info->sample.ndim = nd;
  for (int i = 0; i < nd; i++) {
    if (sshape[i] < 1)
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'sample_shape' has a dimension < 1");
    info->sample.dim[i] = sshape[i];
  }
  if ((rc = shard_check_sample_size(p, &info->sample, err))) return rc;
  if ((rc = nn_h5_attr_read_int(&hf, s->file, "num_classes", &info->num_classes, err))) return rc;
  if (info->num_classes < 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'num_classes' is %d, expected >= 0",
                       info->num_classes);
  if ((rc = nn_h5_attr_read_num(&hf, s->file, "feature_scale", H5T_NATIVE_DOUBLE,
                                &info->feature_scale, 1, 1, NULL, err)))
    return rc;
  if (!(info->feature_scale > 0) || !isfinite(info->feature_scale))
    return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'feature_scale' is %g, expected > 0",
                       info->feature_scale);
  if ((rc = shard_read_stats(&hf, info, err))) return rc;
  info->vocab_size = 0;
  if (H5Aexists(s->file, "vocab_size") > 0) { /* a sequence shard */
    if ((rc = nn_h5_attr_read_int(&hf, s->file, "vocab_size", &info->vocab_size, err))) return rc;
    if (info->vocab_size < 2 || info->vocab_size > NN_SHARD_MAX_VOCAB)
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'vocab_size' is %d, expected 2 to %d",
                         info->vocab_size, NN_SHARD_MAX_VOCAB);
    if (info->sample.ndim != 1)
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'sample_shape' has %d dimensions: a "
                         "sequence shard (vocab_size) holds [T] token ids", info->sample.ndim);
    if (info->feature_scale != 1)
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'feature_scale' is %g: a sequence "
                         "shard (vocab_size) holds token ids, scale 1", info->feature_scale);
  }
  info->stream = 0;
  if (H5Aexists(s->file, "stream") > 0) {
    if ((rc = nn_h5_attr_read_int(&hf, s->file, "stream", &info->stream, err))) return rc;
    if (info->stream != 0 && (info->stream != 1 || info->vocab_size <= 0 || info->num_classes))
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'stream' is %d: expected 1 on a "
                         "sequence shard (vocab_size) with num_classes 0, or 0", info->stream);
  }
  info->multilabel = 0;
  if (H5Aexists(s->file, "multi_label") > 0) { /* /targets [N, K] of 0/1 labels */
    if ((rc = nn_h5_attr_read_int(&hf, s->file, "multi_label", &info->multilabel, err))) return rc;
    if (info->multilabel != 0 && (info->multilabel != 1 || info->num_classes || info->vocab_size))
      return nn_error_at(err, NN_EDATA, p, 0, 0, "attribute 'multi_label' is %d: expected 1 on a "
                         "shard with num_classes 0 and /targets [N, K] of 0/1 labels (not a "
                         "sequence shard), or 0", info->multilabel);
  }
  if ((rc = nn_h5_attr_read_int(&hf, s->file, "shard_index", &s->shard_index, err)) ||
      (rc = nn_h5_attr_read_int(&hf, s->file, "shard_count", &s->shard_count, err)))
    return rc;
  if (s->shard_count < 1 || s->shard_index < 0 || s->shard_index >= s->shard_count)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attributes 'shard_index' %d and 'shard_count' %d: expected 0 <= index < "
                       "count", s->shard_index, s->shard_count);
  if ((rc = nn_h5_attr_read_num(&hf, s->file, "num_samples", H5T_NATIVE_INT64, nsamp, 1, 1, NULL,
                                err)))
    return rc;
  size_t rowf = 0, total = 0;
  if (*nsamp < 0 || nn_shape_count_checked(&info->sample, &rowf) ||
      nn_bytes_of2((size_t)*nsamp, rowf, sizeof(float), &total) || total > (size_t)INT64_MAX)
    return nn_error_at(err, NN_EDATA, p, 0, 0,
                       "attribute 'num_samples' is %lld: expected >= 0 and at most %lld samples "
                       "of this size", (long long)*nsamp,
                       (long long)(INT64_MAX / (int64_t)(rowf ? rowf : 1) / 4));
  return 0;
}

/* Open s->feat (with an HDF5 chunk cache sized from cache_bytes) and
 * s->fspace; set info->ftype. */
static int shard_open_features(nn__ds_shard *s, size_t cache_bytes, nn_dataset_info *info,
                               nn_error *err) {
  const char *p = s->path;
  htri_t ex = H5Lexists(s->file, "features", H5P_DEFAULT);
  if (ex <= 0) return nn_error_at(err, NN_EDATA, p, 0, 0, "missing dataset /features");
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0) return nn_h5_fail(err, NN_EIO, p, "/features", "cannot make a property list");
  /* Hash slots: ~10 per chunk that fits, for the smallest chunk our writer
   * makes for this sample size (uint8 rows); a slot costs one pointer. */
  size_t row_u8 = nn_shape_count(&info->sample);
  size_t crows = (size_t)nn__ds_chunk_rows(row_u8);
  size_t slots = 10 * (cache_bytes / (crows * row_u8)) + 1;
  if (slots < 521) slots = 521;
  if (slots > ((size_t)1 << 20)) slots = ((size_t)1 << 20) + 7;
  H5Pset_chunk_cache(dapl, slots, cache_bytes < DS_H5_CACHE ? cache_bytes : DS_H5_CACHE, 0.0);
  s->feat = H5Dopen2(s->file, "features", dapl);
  if (s->feat < 0) {
    int rc2 = nn_h5_fail(err, NN_EDATA, p, "/features", "cannot open the dataset");
    H5Pclose(dapl);
    return rc2;
  }
  H5Pclose(dapl);
  s->fspace = H5Dget_space(s->feat);
  hid_t t = H5Dget_type(s->feat);
  if (s->fspace < 0 || t < 0) {
    if (t >= 0) H5Tclose(t);
    return nn_h5_fail(err, NN_EDATA, p, "/features", "cannot read the shape and type");
  }
  H5T_class_t cls = H5Tget_class(t);
  size_t tsz = H5Tget_size(t);
  H5T_sign_t sg = cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
  H5Tclose(t);
  if (cls == H5T_INTEGER && tsz == 1 && sg == H5T_SGN_NONE)
    info->ftype = NN_FEAT_U8;
  else if (cls == H5T_FLOAT && tsz == 4)
    info->ftype = NN_FEAT_F32;
  else if (cls == H5T_INTEGER && tsz == 4 && sg == H5T_SGN_2 && info->vocab_size > 0)
    info->ftype = NN_FEAT_I32;
  else if (info->vocab_size > 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/features of a sequence shard (attribute "
                       "vocab_size) must hold int32 token ids");
  else
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/features has an element type other than "
                       "uint8 or float32 (int32 token ids need the attribute vocab_size)");
  return 0;
}

/* Check /features' dims against sample_shape and num_samples (nsamp). */
static int shard_check_features(const nn__ds_shard *s, const nn_dataset_info *info,
                                int64_t nsamp, nn_error *err) {
  const char *p = s->path;
  int nd = info->sample.ndim;
  hsize_t dims[NN_MAX_DIMS + 2];
  int rank = H5Sget_simple_extent_ndims(s->fspace);
  char shp[64];
  nn_shape_str(&info->sample, shp, sizeof shp);
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
  return 0;
}

/* 1 if shard s has an integer /lengths [nsamp]. */
static int rc_len_ok(const nn__ds_shard *s, int64_t nsamp) {
  if (H5Lexists(s->file, "lengths", H5P_DEFAULT) <= 0) return 0;
  hid_t d = H5Dopen2(s->file, "lengths", H5P_DEFAULT);
  if (d < 0) return 0;
  hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
  hsize_t dims[1] = {0};
  int ok = sp >= 0 && t >= 0 && H5Tget_class(t) == H5T_INTEGER &&
           H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, dims, NULL) == 1 &&
           (int64_t)dims[0] == nsamp;
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  return ok;
}

/* Check that /labels [n] or /targets [n, T] is present as the class count
 * says; set info->target_dim. */
static int shard_check_labels(const nn__ds_shard *s, nn_dataset_info *info, int64_t nsamp,
                              nn_error *err) {
  const char *p = s->path;
  const char *lname = info->num_classes > 0 ? "labels" : "targets";
  if (info->stream) { /* one token stream: the targets are its next tokens */
    info->target_dim = 0;
    if (!rc_len_ok(s, nsamp))
      return nn_error_at(err, NN_EDATA, p, 0, 0, "/lengths must be int32 [%lld] in a sequence "
                         "shard (attribute vocab_size)", (long long)nsamp);
    return 0;
  }
  if (H5Lexists(s->file, lname, H5P_DEFAULT) <= 0)
    return nn_error_at(err, NN_EDATA, p, 0, 0, "missing dataset /%s (num_classes is %d)", lname,
                       info->num_classes);
  hid_t d = H5Dopen2(s->file, lname, H5P_DEFAULT);
  if (d < 0) return nn_h5_fail(err, NN_EDATA, p, lname, "cannot open the dataset");
  hid_t sp = H5Dget_space(d);
  int lr = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  hsize_t ldims[2] = {0, 0};
  if (lr >= 1 && lr <= 2) H5Sget_simple_extent_dims(sp, ldims, NULL);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  info->token_labels = info->num_classes > 0 && info->vocab_size > 0 && lr == 2;
  if (info->token_labels && ((int64_t)ldims[0] != nsamp || ldims[1] != (hsize_t)info->sample.dim[0]))
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/labels must be [%lld] or [%lld, %d] (a class "
                       "per timestep), found [%llu, %llu]", (long long)nsamp, (long long)nsamp,
                       info->sample.dim[0], (unsigned long long)ldims[0],
                       (unsigned long long)ldims[1]);
  if (info->num_classes > 0 && !info->token_labels && (lr != 1 || (int64_t)ldims[0] != nsamp))
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/labels must be [%lld], found %d-d with %llu rows",
                       (long long)nsamp, lr, (unsigned long long)ldims[0]);
  if (info->num_classes == 0) {
    if (lr != 2 || (int64_t)ldims[0] != nsamp || ldims[1] < 1)
      return nn_error_at(err, NN_EDATA, p, 0, 0,
                         "/targets must be [%lld, T], found %d-d with %llu rows", (long long)nsamp,
                         lr, (unsigned long long)ldims[0]);
    info->target_dim = (int)ldims[1];
  } else {
    info->target_dim = 0;
  }
  if (info->vocab_size > 0 && !(rc_len_ok(s, nsamp)))
    return nn_error_at(err, NN_EDATA, p, 0, 0, "/lengths must be int32 [%lld] in a sequence "
                       "shard (attribute vocab_size)", (long long)nsamp);
  return 0;
}

/* Open shard s->path and read its description into info (n = its rows) and
 * s. Opens s->file and s->feat with an HDF5 chunk cache of cache_bytes. */
static int shard_open(nn__ds_shard *s, size_t cache_bytes, nn_dataset_info *info, nn_error *err) {
  int64_t nsamp = 0;
  int rc = nn_h5_open_read(s->path, NN__DS_KIND,
                           "an HDF5 shard or a glob such as DIR/train-*.h5", &s->file, err);
  if (rc || (rc = shard_read_attrs(s, info, &nsamp, err)) ||
      (rc = shard_open_features(s, cache_bytes, info, err)) ||
      (rc = shard_check_features(s, info, nsamp, err)))
    return rc;
  s->n = nsamp;
  info->n = nsamp;
  return shard_check_labels(s, info, nsamp, err);
}

/* Read all labels / targets of shard s into dst (rows s->n); check labels
 * (per-timestep labels only before each sample's length, lengths [s->n]). */
static int shard_load_labels(nn__ds_shard *s, const nn_dataset_info *info, void *dst,
                             const int32_t *lengths, nn_error *err) {
  const char *lname = info->num_classes > 0 ? "labels" : "targets";
  hid_t d = H5Dopen2(s->file, lname, H5P_DEFAULT);
  if (d < 0) return nn_h5_fail(err, NN_EDATA, s->path, lname, "cannot open the dataset");
  herr_t e = H5Dread(d, info->num_classes > 0 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, H5S_ALL,
                     H5S_ALL, H5P_DEFAULT, dst);
  if (e < 0) {
    int rc = nn_h5_fail(err, NN_EDATA, s->path, info->num_classes > 0 ? "/labels" : "/targets",
                     "cannot read (damaged file?)");
    H5Dclose(d);
    return rc;
  }
  H5Dclose(d);
  if (info->token_labels) {
    const int32_t *l = dst;
    const int T = info->sample.dim[0];
    for (int64_t i = 0; i < s->n; i++)
      for (int t = 0; t < lengths[i]; t++)
        if (l[i * T + t] < 0 || l[i * T + t] >= info->num_classes) {
          nn_error_at(err, NN_EDATA, s->path, 0, 0, "/labels row %lld step %d: label %d is "
                      "outside [0, %d) (num_classes %d)", (long long)i, t, (int)l[i * T + t],
                      info->num_classes, info->num_classes);
          if (err) snprintf(err->where, sizeof err->where, "/labels");
          return NN_EDATA;
        }
  } else if (info->num_classes > 0) {
    const int32_t *l = dst;
    for (int64_t i = 0; i < s->n; i++)
      if (l[i] < 0 || l[i] >= info->num_classes) {
        nn_error_at(err, NN_EDATA, s->path, 0, 0,
                    "/labels row %lld: label %d is outside [0, %d) (num_classes %d)", (long long)i,
                    (int)l[i], info->num_classes, info->num_classes);
        if (err) snprintf(err->where, sizeof err->where, "/labels");
        return NN_EDATA;
      }
  } else if (info->multilabel) {
    const float *t = dst;
    const int K = info->target_dim;
    for (int64_t i = 0; i < s->n * K; i++)
      if (t[i] != 0 && t[i] != 1) {
        nn_error_at(err, NN_EDATA, s->path, 0, 0, "/targets row %lld label %d: value %g, "
                    "expected 0 or 1 (attribute multi_label = 1)", (long long)(i / K),
                    (int)(i % K), (double)t[i]);
        if (err) snprintf(err->where, sizeof err->where, "/targets");
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
  if (!nn_shape_equal(&a->sample, &b->sample)) {
    nn_shape_str(&a->sample, s1, sizeof s1);
    nn_shape_str(&b->sample, s2, sizeof s2);
    return nn_error_at(err, NN_EDATA, path, 0, 0, "sample shape %s differs from %s in %s", s2, s1,
                       first);
  }
  if (a->ftype != b->ftype)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "features are %s, but %s in %s",
                       ftype_name(b->ftype), ftype_name(a->ftype), first);
  if (a->num_classes != b->num_classes)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "num_classes %d differs from %d in %s",
                       b->num_classes, a->num_classes, first);
  if (a->stream != b->stream)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "attribute 'stream' %d differs from %d in %s",
                       b->stream, a->stream, first);
  if (a->multilabel != b->multilabel)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "attribute 'multi_label' %d differs from %d "
                       "in %s", b->multilabel, a->multilabel, first);
  if (a->token_labels != b->token_labels)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "/labels has %s, but %s in %s",
                       b->token_labels ? "a class per timestep" : "one class per sample",
                       a->token_labels ? "a class per timestep" : "one class per sample", first);
  if (a->vocab_size != b->vocab_size)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "vocab_size %d differs from %d in %s",
                       b->vocab_size, a->vocab_size, first);
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

/* ---- the set of shards ---------------------------------------------------- */

static int has_glob_magic(const char *p) { return strpbrk(p, "*?[") != NULL; }

/* Expand `pattern` into g (an existing path is taken as named, even if it
 * has glob characters: then *paths is `one`). *globbed says whether g must
 * be freed. */
static int ds_expand(const char *pattern, glob_t *g, int *globbed, char **one, char ***paths,
                     size_t *npaths, nn_error *err) {
  struct stat st;
  int gr = 0;
  memset(g, 0, sizeof *g);
  one[0] = (char *)pattern;
  *paths = one;
  *npaths = 1;
  if (stat(pattern, &st) != 0) {
    gr = glob(pattern, 0, NULL, g);
    *globbed = 1;
    *paths = g->gl_pathv;
    *npaths = gr == 0 ? g->gl_pathc : 0;
  }
  if (gr == GLOB_NOMATCH || (gr == 0 && *npaths == 0))
    return nn_error_at(err, NN_ENOTFOUND, pattern, 0, 0, "%s",
                       has_glob_magic(pattern) ? "no files match this pattern" : "no such file");
  if (gr != 0)
    return nn_error_at(err, gr == GLOB_NOSPACE ? NN_ENOMEM : NN_EIO, pattern, 0, 0,
                       "cannot expand the pattern");
  return 0;
}

/* Shard i must not be a copy of an earlier shard or from another preparation. */
static int shard_check_index(const nn_dataset *ds, size_t i, nn_error *err) {
  const nn__ds_shard *s = &ds->shards[i];
  for (size_t j = 0; j < i; j++) {
    const nn__ds_shard *q = &ds->shards[j];
    if (q->shard_count != s->shard_count)
      return nn_error_at(err, NN_EDATA, s->path, 0, 0,
                         "is shard %d of %d, but %s is shard %d of %d: shards from different "
                         "preparations are mixed",
                         s->shard_index + 1, s->shard_count, q->path, q->shard_index + 1,
                         q->shard_count);
    if (q->shard_index == s->shard_index)
      return nn_error_at(err, NN_EDATA, s->path, 0, 0,
                         "has the same shard_index %d as %s (a copy of one shard?)",
                         s->shard_index, q->path);
  }
  return 0;
}

/* Open paths[0..npaths) as ds->shards (allocated by the caller), check that
 * they agree with the first, and number their samples globally. */
static int ds_open_shards(nn_dataset *ds, char **paths, size_t npaths, size_t cache_bytes,
                          nn_error *err) {
  nn_dataset_info *tmp = nn_calloc(1, sizeof *tmp);
  int rc = 0;
  if (!tmp) return nn_error_set(err, NN_ENOMEM, "out of memory");
  for (size_t i = 0; i < npaths; i++) {
    nn__ds_shard *s = &ds->shards[ds->nfiles++];
    s->file = s->feat = s->fspace = -1;
    if (!(s->path = nn_strdup(paths[i]))) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      break;
    }
    nn_dataset_info *dst = i == 0 ? &ds->info : tmp;
    if ((rc = shard_open(s, cache_bytes, dst, err))) break;
    if (i > 0 && ((rc = shard_agree(&ds->info, ds->shards[0].path, tmp, s->path, err)) ||
                  (rc = shard_check_index(ds, i, err))))
      break;
    s->first = 0;
    if (i > 0 && nn_add_i64(ds->shards[i - 1].first, ds->shards[i - 1].n, &s->first)) {
      rc = nn_error_at(err, NN_EDATA, s->path, 0, 0, "the shards hold more than 2^63 samples");
      break;
    }
  }
  free(tmp);
  return rc;
}

/* Sequence sets: every shard's /lengths into ds->lengths, each in [1, T]. */
static int ds_load_lengths(nn_dataset *ds, nn_error *err) {
  if (ds->info.vocab_size <= 0) return 0;
  int64_t N = ds->info.n;
  size_t bytes = 0;
  if (!nn_bytes_of((size_t)(N ? N : 1), sizeof *ds->lengths, &bytes))
    ds->lengths = nn_malloc(bytes);
  if (!ds->lengths)
    return nn_error_at(err, NN_ENOMEM, ds->shards[0].path, 0, 0, "out of memory for %lld "
                       "lengths", (long long)N);
  const int T = ds->info.sample.dim[0];
  for (int i = 0; i < ds->nfiles; i++) {
    nn__ds_shard *s = &ds->shards[i];
    if (s->n == 0) continue;
    int32_t *dst = ds->lengths + s->first;
    hid_t d = H5Dopen2(s->file, "lengths", H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    if (d >= 0) H5Dclose(d);
    if (e < 0) return nn_h5_fail(err, NN_EDATA, s->path, "/lengths", "cannot read (damaged file?)");
    for (int64_t r = 0; r < s->n; r++)
      if (dst[r] < 1 || dst[r] > T) {
        nn_error_at(err, NN_EDATA, s->path, 0, 0, "/lengths row %lld is %d, expected 1 to %d "
                    "(the sample shape's T)", (long long)r, (int)dst[r], T);
        if (err) snprintf(err->where, sizeof err->where, "/lengths");
        return NN_EDATA;
      }
  }
  return 0;
}

/* Labels / targets of every shard into ds->labels or ds->targets, checked. */
static int ds_load_labels(nn_dataset *ds, nn_error *err) {
  int64_t N = ds->info.n;
  if (ds->info.stream) return 0; /* no labels */
  size_t bytes = 0;
  if (ds->info.num_classes > 0) {
    size_t per = ds->info.token_labels ? (size_t)ds->info.sample.dim[0] : 1;
    if (!nn_bytes_of2((size_t)(N ? N : 1), per, sizeof *ds->labels, &bytes))
      ds->labels = nn_malloc(bytes);
  } else if (!nn_bytes_of2((size_t)(N ? N : 1), (size_t)ds->info.target_dim, sizeof(float),
                           &bytes)) {
    ds->targets = nn_malloc(bytes);
  }
  if (!ds->labels && !ds->targets)
    return nn_error_at(err, NN_ENOMEM, ds->shards[0].path, 0, 0, "out of memory for %lld labels",
                       (long long)N);
  for (int i = 0; i < ds->nfiles; i++) {
    nn__ds_shard *s = &ds->shards[i];
    if (s->n == 0) continue;
    size_t per = ds->info.token_labels ? (size_t)ds->info.sample.dim[0] : 1;
    void *dst = ds->labels ? (void *)(ds->labels + (size_t)s->first * per)
                           : (void *)(ds->targets + (size_t)s->first * (size_t)ds->info.target_dim);
    int rc = shard_load_labels(s, &ds->info, dst, ds->lengths ? ds->lengths + s->first : NULL,
                               err);
    if (rc) return rc;
  }
  return 0;
}

/* opts.cache: every stored feature row into ds->cache [n, rowbytes]. */
static int ds_fill_cache(nn_dataset *ds, nn_error *err) {
  int64_t N = ds->info.n;
  size_t bytes = 0;
  if (!nn_mul_size((size_t)(N ? N : 1), ds->rowbytes, &bytes)) ds->cache = nn_malloc(bytes);
  if (!ds->cache)
    return nn_error_at(err, NN_ENOMEM, ds->shards[0].path, 0, 0,
                       "out of memory caching %lld samples (%.1f MB)", (long long)N,
                       (double)N * (double)ds->rowbytes / 1e6);
  for (int i = 0; i < ds->nfiles; i++) {
    nn__ds_shard *s = &ds->shards[i];
    if (s->n == 0) continue;
    if (s->fast) {
      /* Decode each chunk once, straight into the cache. */
      for (int64_t c = 0; c < s->nchunks; c++) {
        int rc = nn__ds_chunk_load(ds, s, c, err);
        if (rc) return rc;
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
    if (H5Dread(s->feat, nn__ds_ftype_mem(ds->info.ftype), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                ds->cache + (size_t)s->first * ds->rowbytes) < 0)
      return nn_h5_fail(err, NN_EDATA, s->path, "/features", "cannot read (damaged file?)");
  }
  return 0;
}

int nn_dataset_open(nn_dataset **out, const char *pattern, const nn_dataset_opts *opts,
                    nn_error *err) {
  nn_dataset *ds = NULL;
  glob_t g;
  int globbed = 0;
  char *one[1];
  char **paths = NULL;
  size_t npaths = 0;
  *out = NULL;
  nn_h5_quiet();
  nn_dataset_opts o = {0, 0};
  if (opts) o = *opts;
  size_t cache_bytes = o.chunk_cache ? o.chunk_cache : DS_DEFAULT_CACHE;
  int rc = ds_expand(pattern, &g, &globbed, one, &paths, &npaths, err);
  if (rc) goto cleanup;
  ds = nn_calloc(1, sizeof *ds);
  if (!ds || !(ds->shards = nn_calloc(npaths, sizeof *ds->shards))) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto cleanup;
  }
  if ((rc = ds_open_shards(ds, paths, npaths, cache_bytes, err))) goto cleanup;
  ds->info.n = ds->shards[ds->nfiles - 1].first + ds->shards[ds->nfiles - 1].n;
  ds->info.nfiles = ds->nfiles;
  ds->rowlen = nn_shape_count(&ds->info.sample);
  ds->rowbytes = ds->rowlen * nn__ds_ftype_size(ds->info.ftype);
  for (int v = 0; v < 256; v++) ds->lut[v] = (float)((double)v * ds->info.feature_scale);
  ds->cache_budget = cache_bytes;
  for (int i = 0; i < ds->nfiles; i++)
    if ((rc = nn__ds_setup_chunks(ds, &ds->shards[i], err))) goto cleanup;
  /* lengths first: per-timestep labels are checked up to each length */
  if ((rc = ds_load_lengths(ds, err)) || (rc = ds_load_labels(ds, err))) goto cleanup;
  if (o.cache && (rc = ds_fill_cache(ds, err))) goto cleanup;
  *out = ds;
  ds = NULL;
cleanup:
  if (globbed) globfree(&g);
  nn_dataset_close(ds);
  return rc;
}

const nn_dataset_info *nn_dataset_get_info(const nn_dataset *ds) { return &ds->info; }
size_t nn_dataset_cached_bytes(const nn_dataset *ds) { return ds->cached_total; }
const char *nn_dataset_file(const nn_dataset *ds, int i) { return ds->shards[i].path; }

const int32_t *nn_dataset_labels(const nn_dataset *ds) { return ds->labels; }
const float *nn_dataset_targets(const nn_dataset *ds) { return ds->targets; }
const int32_t *nn_dataset_lengths(const nn_dataset *ds) { return ds->lengths; }

void nn_dataset_close(nn_dataset *ds) {
  if (!ds) return;
  for (int i = 0; i < ds->nfiles; i++) {
    nn__ds_shard *s = &ds->shards[i];
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
  free(ds->lengths);
  free(ds->cache);
  free(ds->order);
  free(ds->stage);
  free(ds->zbuf);
  free(ds->ubuf);
  free(ds);
}

