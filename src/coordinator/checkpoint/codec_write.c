/* codec_write.c: the checkpoint layout, writing side: the canonical checksum
 * (version 1 and version 2 rules, computed from a snapshot in memory so the
 * writer hashes what it writes and the reader what it read), the checks a
 * snapshot must pass before anything touches the disk, and write_content,
 * which lays out version 2 (docs/checkpoint-format.md). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "core/mem.h"
#include "coordinator/checkpoint/internal.h"

/* ---- checksum ------------------------------------------------------------- */

/* One item of the canonical serialization: name (UTF-8), a 0 byte, the
 * payload length as uint64 little-endian, the payload. */
static void hash_item(uint64_t *h, const char *name, const void *data, size_t n) {
  uint64_t len = n;
  *h = nn_fnv1a64(*h, name, strlen(name) + 1);
  *h = nn_fnv1a64(*h, &len, 8);
  if (n) *h = nn_fnv1a64(*h, data, n);
}

/* Replica r's items; names start with pre ("" in v1, "replicas/<name>/" in
 * v2). v1 names the optimizer items "optimizer/type", "optimizer/t",
 * "optimizer/slot" and takes t from /state; v2 names them optim_type,
 * optim_t, ntrainable, slot. */
static void hash_replica(uint64_t *h, const nn_ckpt_replica *r, const char *pre, int v1,
                         uint64_t v1_t) {
  char name[CKPT_DSET_MAX + 16];
  for (int i = 0; i < r->ntensors; i++) {
    const nn_tensor_ref *t = &r->tensors[i];
    int64_t dims[NN_MAX_DIMS];
    for (int d = 0; d < t->shape.ndim; d++) dims[d] = t->shape.dim[d];
    nn__ckpt_pathf(name, sizeof name, "%s%s/%s/%s:shape", pre, nn__ckpt_tensor_group(t), t->layer,
                   t->name);
    hash_item(h, name, dims, 8 * (size_t)t->shape.ndim);
    nn__ckpt_pathf(name, sizeof name, "%s%s/%s/%s", pre, nn__ckpt_tensor_group(t), t->layer,
                   t->name);
    const float *base = t->is_buffer ? r->buffers : r->params;
    hash_item(h, name, base + t->offset, 4 * t->count);
  }
  uint64_t ntr = r->ntrainable;
  nn__ckpt_pathf(name, sizeof name, "%s%s", pre, v1 ? "optimizer/type" : "optim_type");
  hash_item(h, name, r->optim_type, strlen(r->optim_type));
  nn__ckpt_pathf(name, sizeof name, "%s%s", pre, v1 ? "optimizer/t" : "optim_t");
  hash_item(h, name, v1 ? &v1_t : &r->optim_t, 8);
  if (!v1) {
    nn__ckpt_pathf(name, sizeof name, "%sntrainable", pre);
    hash_item(h, name, &ntr, 8);
  }
  for (int k = 0; k < r->nslots; k++) {
    nn__ckpt_pathf(name, sizeof name, "%s%s", pre, v1 ? "optimizer/slot" : "slot");
    hash_item(h, name, r->slot_names[k], strlen(r->slot_names[k]));
    for (int i = 0; i < r->ntensors; i++) {
      const nn_tensor_ref *t = &r->tensors[i];
      if (t->is_buffer || t->offset >= r->ntrainable) continue;
      nn__ckpt_pathf(name, sizeof name, "%soptimizer/%s/%s/%s", pre, r->slot_names[k], t->layer,
               t->name);
      hash_item(h, name, r->slots + (size_t)k * r->ntrainable + t->offset, 4 * t->count);
    }
  }
  if (!v1 && r->carry_rows) { /* only when there is one: older files verify as before */
    int64_t dims[2] = {(int64_t)r->carry_rows, (int64_t)r->carry_cols};
    nn__ckpt_pathf(name, sizeof name, "%scarry:shape", pre);
    hash_item(h, name, dims, sizeof dims);
    nn__ckpt_pathf(name, sizeof name, "%scarry", pre);
    hash_item(h, name, r->carry, 4 * r->carry_rows * r->carry_cols);
  }
}

/* 1 if field f of st holds 0 (all its bytes). */
static int state_field_zero(const nn_ckpt_state *st, const nn_ckpt_field *f) {
  const unsigned char *p = (const unsigned char *)st + f->offset;
  for (size_t i = 0; i < nn__ckpt_ftype_size(f->type); i++)
    if (p[i]) return 0;
  return 1;
}

uint64_t nn__ckpt_checksum_v(const nn_ckpt_snapshot *s, int version) {
  uint64_t h = NN_FNV1A64_INIT;
  char name[CKPT_DSET_MAX];
  int32_t v = version;
  int v1 = version == 1;
  hash_item(&h, "format", NN_CKPT_FORMAT, strlen(NN_CKPT_FORMAT));
  hash_item(&h, "version", &v, 4);
  hash_item(&h, "spec", s->spec, s->spec_len);
  for (int i = 0; i < s->nreplicas && (!v1 || i < 1); i++) {
    if (v1) {
      hash_replica(&h, &s->rep[i], "", 1, s->state.optim_t);
    } else {
      hash_item(&h, "replica", s->rep[i].name, strlen(s->rep[i].name));
      nn__ckpt_pathf(name, sizeof name, "replicas/%s/", s->rep[i].name);
      hash_replica(&h, &s->rep[i], name, 0, 0);
    }
  }
  for (const nn_ckpt_field *f = nn_ckpt_state_fields(); f->name; f++) {
    if (f->v1_only && !v1) continue;
    if (f->optional && state_field_zero(&s->state, f)) continue; /* as in older files */
    nn__ckpt_pathf(name, sizeof name, "state/%s", f->name);
    hash_item(&h, name, (const char *)&s->state + f->offset, nn__ckpt_ftype_size(f->type));
  }
  hash_item(&h, "metrics", s->metrics ? s->metrics : "", s->metrics_len);
  return h;
}

uint64_t nn_ckpt_checksum(const nn_ckpt_snapshot *s) {
  return nn__ckpt_checksum_v(s, s->version == 1 ? 1 : 2);
}

/* ---- checks before writing ----------------------------------------------------- */

/* Names, counts and dimensions of replica r that the format can hold. */
static int check_names(const nn_ckpt_replica *r, const char *path, nn_error *err) {
  if (r->nslots < 0 || r->nslots > NN_CKPT_MAX_SLOTS)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "replica '%s': %d optimizer slots, at most "
                       "%d supported", r->name, r->nslots, NN_CKPT_MAX_SLOTS);
  for (int k = 0; k < r->nslots; k++)
    if (!nn__ckpt_name_ok(r->slot_names[k], sizeof r->slot_names[k]))
      return nn_error_at(err, NN_EINVAL, path, 0, 0,
                         "optimizer slot %d has name '%.32s': expected a non-empty name "
                         "without '/'", k, r->slot_names[k]);
  if (strnlen(r->optim_type, sizeof r->optim_type) == sizeof r->optim_type)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "optimizer type is not terminated");
  for (int i = 0; i < r->ntensors; i++) {
    const nn_tensor_ref *t = &r->tensors[i];
    if (!nn__ckpt_name_ok(t->layer, sizeof t->layer) || !nn__ckpt_name_ok(t->name, sizeof t->name))
      return nn_error_at(err, NN_EINVAL, path, 0, 0,
                         "tensor %d is named '%.48s/%.48s': layer and tensor names must be "
                         "non-empty and contain no '/'", i, t->layer, t->name);
    if (t->shape.ndim < 0 || t->shape.ndim > NN_MAX_DIMS)
      return nn_error_at(err, NN_EINVAL, path, 0, 0, "tensor %s/%s has %d dimensions", t->layer,
                         t->name, t->shape.ndim);
  }
  if (r->ntrainable > r->nparams || !nn__ckpt_trainable_ok(r->tensors, r->ntensors, r->ntrainable))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "replica '%s': %zu of %zu parameters trained "
                       "does not end on a tensor", r->name, r->ntrainable, r->nparams);
  return 0;
}

/* The first non-finite value of replica r: refused before anything touches
 * the disk, naming the tensor and the index in it. */
static int check_finite(const nn_ckpt_replica *r, const char *path, nn_error *err) {
  struct {
    const float *v;
    size_t n;
    const char *what;
  } arr[3 + NN_CKPT_MAX_SLOTS] = {{r->params, r->nparams, "params"},
                                  {r->buffers, r->nbuffers, "buffers"},
                                  {r->carry, r->carry_rows * r->carry_cols, "carry"}};
  int na = 3;
  for (int k = 0; k < r->nslots; k++, na++) {
    arr[na].v = r->slots + (size_t)k * r->ntrainable;
    arr[na].n = r->ntrainable;
    arr[na].what = r->slot_names[k];
  }
  for (int a = 0; a < na; a++) {
    for (size_t j = 0; j < arr[a].n; j++) {
      if (isfinite(arr[a].v[j])) continue;
      const char *layer = "?", *tname = "?";
      size_t at = j;
      for (int i = 0; i < r->ntensors; i++) {
        const nn_tensor_ref *t = &r->tensors[i];
        if (a == 2 || (a == 1) != (t->is_buffer != 0)) continue;
        if (j >= t->offset && j < t->offset + t->count) {
          layer = t->layer, tname = t->name, at = j - t->offset;
          break;
        }
      }
      nn_error_at(err, NN_ENUMERIC, path, 0, 0,
                  "not written: %s value %s/%s[%zu] of replica '%s' is %g (training diverged?)",
                  arr[a].what, layer, tname, at, r->name, (double)arr[a].v[j]);
      if (err) nn__ckpt_pathf(err->where, sizeof err->where, "%s/%s/%s", arr[a].what, layer, tname);
      return NN_ENUMERIC;
    }
  }
  return 0;
}

int nn__ckpt_check(const nn_ckpt_snapshot *s, const char *path, nn_error *err) {
  if (s->nreplicas < 1 || s->nreplicas > NN_CKPT_MAX_REPLICAS)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "%d replicas, expected 1 to %d",
                       s->nreplicas, NN_CKPT_MAX_REPLICAS);
  for (int i = 0; i < s->nreplicas; i++) {
    const nn_ckpt_replica *r = &s->rep[i];
    if (!nn__ckpt_name_ok(r->name, sizeof r->name))
      return nn_error_at(err, NN_EINVAL, path, 0, 0, "replica %d is named '%.48s': expected a "
                         "non-empty name without '/'", i, r->name);
    for (int j = 0; j < i; j++)
      if (!strcmp(s->rep[j].name, r->name))
        return nn_error_at(err, NN_EINVAL, path, 0, 0, "two replicas are called '%s'", r->name);
    int rc = check_names(r, path, err);
    if (!rc) rc = check_finite(r, path, err);
    if (rc) return rc;
  }
  return 0;
}

/* ---- writing ---------------------------------------------------------------- */

/* The tensor table of r as dataset `path`. */
static int write_table(nn__ckpt_w *w, const nn_ckpt_replica *r, const char *path) {
  nn__ckpt_tensor_rec *recs = nn_calloc((size_t)(r->ntensors > 0 ? r->ntensors : 1), sizeof *recs);
  hid_t rect = nn__ckpt_tensor_rec_type(H5T_CSET_UTF8);
  int rc;
  if (!recs || rect < 0) {
    rc = recs ? nn_h5_fail(w->err, NN_EIO, w->h.path, path, "cannot build the tensor table")
              : nn_error_at(w->err, NN_ENOMEM, w->h.path, 0, 0, "%s: out of memory for the tensor "
                            "table", path);
  } else {
    for (int i = 0; i < r->ntensors; i++) {
      const nn_tensor_ref *t = &r->tensors[i];
      nn__ckpt_pathf(recs[i].layer, sizeof recs[i].layer, "%s", t->layer);
      nn__ckpt_pathf(recs[i].name, sizeof recs[i].name, "%s", t->name);
      recs[i].is_buffer = t->is_buffer ? 1 : 0;
      recs[i].ndim = t->shape.ndim;
      for (int d = 0; d < t->shape.ndim; d++) recs[i].shape[d] = t->shape.dim[d];
    }
    hsize_t n = (hsize_t)r->ntensors;
    rc = nn_h5_dset_write(&w->h, path, rect, rect, 1, &n, recs, w->err);
  }
  if (rect >= 0) H5Tclose(rect);
  free(recs);
  return rc;
}

/* Group replicas/<name>: attributes, tensor table, tensors, slots. */
static int write_replica(nn__ckpt_w *w, const nn_ckpt_replica *r, int first) {
  char g_path[CKPT_DSET_MAX], dpath[CKPT_DSET_MAX];
  nn__ckpt_pathf(g_path, sizeof g_path, "replicas/%s", r->name);
  hid_t g = H5Gcreate2(w->h.id, g_path, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return nn_h5_fail(w->err, NN_EIO, w->h.path, g_path, "cannot create the group");
  const char *names[NN_CKPT_MAX_SLOTS];
  for (int k = 0; k < r->nslots; k++) names[k] = r->slot_names[k];
  uint64_t ntr = r->ntrainable;
  const nn_h5_file *h = &w->h;
  int rc = nn_h5_attr_write_str(h, g, "optim_type", r->optim_type, w->err);
  if (!rc) rc = nn_h5_attr_write(h, g, "optim_t", H5T_NATIVE_UINT64, &r->optim_t, 0, w->err);
  if (!rc) rc = nn_h5_attr_write(h, g, "ntrainable", H5T_NATIVE_UINT64, &ntr, 0, w->err);
  if (!rc) rc = nn_h5_attr_write_strs(h, g, "slots", names, r->nslots, w->err);
  H5Gclose(g);
  nn__ckpt_pathf(dpath, sizeof dpath, "%s/tensors", g_path);
  if (!rc) rc = write_table(w, r, dpath);
  for (int i = 0; i < r->ntensors && !rc; i++) {
    const nn_tensor_ref *t = &r->tensors[i];
    nn__ckpt_pathf(dpath, sizeof dpath, "%s/%s/%s/%s", g_path, nn__ckpt_tensor_group(t), t->layer,
                   t->name);
    rc = nn__ckpt_w_floats(w, dpath, &t->shape,
                           (t->is_buffer ? r->buffers : r->params) + t->offset);
  }
  if (!rc && first) nn__ckpt_kill_at("data");
  for (int k = 0; k < r->nslots && !rc; k++)
    for (int i = 0; i < r->ntensors && !rc; i++) {
      const nn_tensor_ref *t = &r->tensors[i];
      if (t->is_buffer || t->offset >= r->ntrainable) continue;
      nn__ckpt_pathf(dpath, sizeof dpath, "%s/optimizer/%s/%s/%s", g_path, r->slot_names[k],
                     t->layer, t->name);
      rc = nn__ckpt_w_floats(w, dpath, &t->shape, r->slots + (size_t)k * r->ntrainable + t->offset);
    }
  if (!rc && r->carry_rows) {
    nn_shape cs = {2, {(int)r->carry_rows, (int)r->carry_cols}};
    nn__ckpt_pathf(dpath, sizeof dpath, "%s/carry", g_path);
    rc = nn__ckpt_w_floats(w, dpath, &cs, r->carry);
  }
  return rc;
}

/* Root attributes: format, version, checksum, created, replicas. */
static int write_root(nn__ckpt_w *w, const nn_ckpt_snapshot *s, uint64_t checksum) {
  char sum[17], created[32];
  nn__ckpt_pathf(sum, sizeof sum, "%016" PRIx64, checksum);
  time_t now = time(NULL);
  struct tm tmv;
  gmtime_r(&now, &tmv);
  strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  int32_t version = NN_CKPT_VERSION;
  const char *names[NN_CKPT_MAX_REPLICAS];
  for (int i = 0; i < s->nreplicas; i++) names[i] = s->rep[i].name;
  const nn_h5_file *h = &w->h;
  int rc = nn_h5_attr_write_str(h, h->id, "format", NN_CKPT_FORMAT, w->err);
  if (!rc) rc = nn_h5_attr_write(h, h->id, "version", H5T_NATIVE_INT32, &version, 0, w->err);
  if (!rc) rc = nn_h5_attr_write_str(h, h->id, "checksum", sum, w->err);
  if (!rc) rc = nn_h5_attr_write_str(h, h->id, "created", created, w->err);
  if (!rc) rc = nn_h5_attr_write_strs(h, h->id, "replicas", names, s->nreplicas, w->err);
  return rc;
}

int nn__ckpt_write_content(nn__ckpt_w *w, const nn_ckpt_snapshot *s, uint64_t checksum) {
  hsize_t n = s->spec_len;
  int rc = write_root(w, s, checksum);
  if (!rc)
    rc = nn_h5_dset_write(&w->h, "spec", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, s->spec, w->err);
  for (int i = 0; i < s->nreplicas && !rc; i++) rc = write_replica(w, &s->rep[i], i == 0);
  if (rc) return rc;

  hid_t g = H5Gcreate2(w->h.id, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return nn_h5_fail(w->err, NN_EIO, w->h.path, "state", "cannot create the group");
  for (const nn_ckpt_field *f = nn_ckpt_state_fields(); f->name && !rc; f++)
    if (!f->v1_only)
      rc = nn_h5_attr_write(&w->h, g, f->name, nn__ckpt_ftype_h5(f->type),
                            (const char *)&s->state + f->offset, 0, w->err);
  H5Gclose(g);
  if (rc) return rc;

  /* metrics: one variable-length UTF-8 string */
  hid_t mt = nn_h5_str_type();
  const char *text = s->metrics ? s->metrics : "";
  if (mt < 0)
    rc = nn_h5_fail(w->err, NN_EIO, w->h.path, "metrics", "cannot make a string type");
  else
    rc = nn_h5_dset_write(&w->h, "metrics", mt, mt, 0, NULL, &text, w->err);
  if (mt >= 0) H5Tclose(mt);
  return rc;
}
