/* codec_read.c: the checkpoint layout, reading side. It reads exactly the
 * layouts nntrain writes (version 2: /replicas/<name>/...; version 1: one
 * model at the root, read as the replica "model") and trusts nothing until
 * it has checked it: every name, count, type and shape, then the checksum
 * over everything read. Every failure is one NN_ECKPT line naming the file
 * and the dataset or attribute. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/checkpoint/internal.h"
#include "core/checked.h"
#include "core/mem.h"

#define RFAIL NN__CKPT_RFAIL

/* Group `prefix` (e.g. "replicas/m/params", "optimizer/exp_avg") holds
 * exactly the tensors of rep's table with is_buffer == buffers (slots: only
 * the trained ones): one group per layer, no more, no fewer. */
static int check_counts(nn__ckpt_r *r, const nn_ckpt_replica *rep, const char *prefix,
                        int buffers, int slots) {
  int nlayers = 0, any = 0;
  char path[CKPT_DSET_MAX];
#define IN_GROUP(u) \
  ((((u)->is_buffer != 0) == buffers) && (!slots || (u)->offset < rep->ntrainable))
  for (int i = 0; i < rep->ntensors; i++) {
    const nn_tensor_ref *t = &rep->tensors[i];
    if (!IN_GROUP(t)) continue;
    any = 1;
    int first = 1, count = 0;
    for (int j = 0; j < rep->ntensors; j++) {
      const nn_tensor_ref *u = &rep->tensors[j];
      if (!IN_GROUP(u) || strcmp(u->layer, t->layer) != 0) continue;
      if (j < i) first = 0;
      count++;
    }
    if (!first) continue;
    nlayers++;
    hsize_t n = 0;
    nn__ckpt_pathf(path, sizeof path, "%s/%s", prefix, t->layer);
    int rc = nn_h5_group_links(&r->h, path, &n, r->err);
    if (rc) return rc;
    if (n != (hsize_t)count)
      return RFAIL(r, path, "holds %llu tensors, the tensor table lists %d",
                   (unsigned long long)n, count);
  }
#undef IN_GROUP
  if (!any) return 0; /* the group may be absent when it would be empty */
  hsize_t n = 0;
  int rc = nn_h5_group_links(&r->h, prefix, &n, r->err);
  if (rc) return rc;
  if (n != (hsize_t)nlayers)
    return RFAIL(r, prefix, "holds %llu layers, the tensor table lists %d", (unsigned long long)n,
                 nlayers);
  return 0;
}

/* Most floats of a checkpoint's parameters (or buffers): 64 GB. */
#define CKPT_MAX_FLOATS ((size_t)1 << 34)

/* Validate the records of a tensor table; next[2] gets the parameter and
 * buffer float counts. */
static int check_records(nn__ckpt_r *r, const char *path, nn__ckpt_tensor_rec *recs, hsize_t n,
                         size_t next[2]) {
  int seen_buffer = 0;
  next[0] = next[1] = 0;
  for (hsize_t i = 0; i < n; i++) {
    nn__ckpt_tensor_rec *t = &recs[i];
    t->layer[NN_NAME_MAX - 1] = t->name[NN_NAME_MAX - 1] = '\0';
    if (!nn__ckpt_name_ok(t->layer, NN_NAME_MAX) || !nn__ckpt_name_ok(t->name, NN_NAME_MAX) ||
        (t->is_buffer != 0 && t->is_buffer != 1) || t->ndim < 0 || t->ndim > NN_MAX_DIMS)
      return RFAIL(r, path, "record %llu is malformed", (unsigned long long)i);
    if (seen_buffer && !t->is_buffer)
      return RFAIL(r, path, "record %llu: a parameter after the buffers", (unsigned long long)i);
    seen_buffer |= t->is_buffer;
    nn_shape sh = {.ndim = t->ndim};
    for (int k = 0; k < t->ndim; k++) {
      if (t->shape[k] < 1)
        return RFAIL(r, path, "record %llu (%s/%s): bad dimension %d", (unsigned long long)i,
                     t->layer, t->name, (int)t->shape[k]);
      sh.dim[k] = t->shape[k];
    }
    size_t count = 0, sum = 0;
    char shp[80];
    if (nn_shape_count_checked(&sh, &count))
      return RFAIL(r, path, "record %llu (%s/%s): shape %s has more than %lld elements",
                   (unsigned long long)i, t->layer, t->name, nn_shape_str(&sh, shp, sizeof shp),
                   (long long)NN_MAX_ELEMS);
    if (nn_add_size(next[t->is_buffer], count, &sum) || sum > CKPT_MAX_FLOATS)
      return RFAIL(r, path, "record %llu (%s/%s): the tensors hold more than 2^34 floats",
                   (unsigned long long)i, t->layer, t->name);
    for (hsize_t j = 0; j < i; j++)
      if (recs[j].is_buffer == t->is_buffer && !strcmp(recs[j].layer, t->layer) &&
          !strcmp(recs[j].name, t->name))
        return RFAIL(r, path, "%s/%s is listed twice", t->layer, t->name);
    next[t->is_buffer] = sum;
  }
  return 0;
}

/* Read the tensor table at `path` and allocate rep for it with nslots slots
 * over ntrainable parameters (SIZE_MAX: all of them, version 1). */
static int read_table(nn__ckpt_r *r, const char *path, nn_ckpt_replica *rep, int nslots,
                      size_t ntrainable) {
  hid_t d = -1, rect = -1;
  nn__ckpt_tensor_rec *recs = NULL;
  hsize_t n = 0;
  static const nn_h5_want table = {H5T_COMPOUND, 0, "the tensor table record", -1, NULL, NULL};
  int rc = nn_h5_dset_open(&r->h, path, &table, &n, &d, r->err);
  if (rc) return rc;
  if (n > 1000000) {
    rc = RFAIL(r, path, "%llu tensors: implausible", (unsigned long long)n);
    goto cleanup;
  }
  recs = nn_calloc(n ? (size_t)n : 1, sizeof *recs);
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
  rect = nn__ckpt_tensor_rec_type(cset);
  if (!recs || rect < 0) {
    rc = nn_error_set(r->err, NN_ENOMEM, "out of memory for the tensor table");
    goto cleanup;
  }
  if (n && H5Dread(d, rect, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs) < 0) {
    rc = RFAIL(r, path, "cannot read the tensor table");
    goto cleanup;
  }
  size_t next[2];
  if ((rc = check_records(r, path, recs, n, next))) goto cleanup;
  if (ntrainable == SIZE_MAX) ntrainable = next[0];
  if (ntrainable > next[0]) {
    rc = RFAIL(r, path, "ntrainable is %zu, more than the table's %zu parameters", ntrainable,
               next[0]);
    goto cleanup;
  }
  char name[NN_NAME_MAX];
  memcpy(name, rep->name, sizeof name);
  if ((rc = nn__ckpt_replica_alloc(rep, (int)n, next[0], ntrainable, next[1], nslots, r->err)))
    goto cleanup;
  memcpy(rep->name, name, sizeof name);
  next[0] = next[1] = 0;
  for (hsize_t i = 0; i < n; i++) {
    nn_tensor_ref *t = &rep->tensors[i];
    nn__ckpt_pathf(t->layer, sizeof t->layer, "%s", recs[i].layer);
    nn__ckpt_pathf(t->name, sizeof t->name, "%s", recs[i].name);
    t->is_buffer = recs[i].is_buffer;
    t->shape.ndim = recs[i].ndim;
    for (int k = 0; k < t->shape.ndim; k++) t->shape.dim[k] = recs[i].shape[k];
    t->count = nn_shape_count(&t->shape);
    t->offset = next[t->is_buffer];
    next[t->is_buffer] += t->count;
  }
  if (!nn__ckpt_trainable_ok(rep->tensors, rep->ntensors, ntrainable))
    rc = RFAIL(r, path, "ntrainable %zu does not end on a parameter tensor (%zu parameters)",
               ntrainable, rep->nparams);
cleanup:
  if (rect >= 0) H5Tclose(rect);
  if (d >= 0) H5Dclose(d);
  free(recs);
  return rc;
}

/* Every tensor and slot of rep (table already read), under prefix pre
 * ("" or "replicas/<name>/"): group contents checked, then the data. */
static int read_tensors(nn__ckpt_r *r, nn_ckpt_replica *rep, const char *pre) {
  char path[CKPT_DSET_MAX];
  nn__ckpt_pathf(path, sizeof path, "%sparams", pre);
  int rc = check_counts(r, rep, path, 0, 0);
  nn__ckpt_pathf(path, sizeof path, "%sbuffers", pre);
  if (!rc) rc = check_counts(r, rep, path, 1, 0);
  for (int i = 0; i < rep->ntensors && !rc; i++) {
    const nn_tensor_ref *t = &rep->tensors[i];
    nn__ckpt_pathf(path, sizeof path, "%s%s/%s/%s", pre, nn__ckpt_tensor_group(t), t->layer,
                   t->name);
    rc = nn__ckpt_r_floats(r, path, &t->shape, (t->is_buffer ? rep->buffers : rep->params) +
                                                   t->offset);
  }
  for (int k = 0; k < rep->nslots && !rc; k++) {
    nn__ckpt_pathf(path, sizeof path, "%soptimizer/%s", pre, rep->slot_names[k]);
    rc = check_counts(r, rep, path, 0, 1);
    for (int i = 0; i < rep->ntensors && !rc; i++) {
      const nn_tensor_ref *t = &rep->tensors[i];
      if (t->is_buffer || t->offset >= rep->ntrainable) continue;
      nn__ckpt_pathf(path, sizeof path, "%soptimizer/%s/%s/%s", pre, rep->slot_names[k], t->layer,
               t->name);
      rc = nn__ckpt_r_floats(r, path, &t->shape, rep->slots + (size_t)k * rep->ntrainable +
                                                     t->offset);
    }
  }
  return rc;
}

/* Optimizer type into rep (checked for length). */
static int read_optim_type(nn__ckpt_r *r, hid_t g, const char *gname, const char *attr,
                           nn_ckpt_replica *rep) {
  char buf[96], what[CKPT_DSET_MAX];
  int rc = nn_h5_attr_read_str(&r->h, g, attr, buf, sizeof buf, r->err);
  if (rc) return rc;
  nn__ckpt_pathf(what, sizeof what, "%s/%s", gname, attr);
  if (strlen(buf) >= sizeof rep->optim_type) return RFAIL(r, what, "'%s' is too long", buf);
  memcpy(rep->optim_type, buf, strlen(buf) + 1);
  return 0;
}

/* Version 1: /optimizer (type, t, slots), /tensors, /params, /buffers,
 * /optimizer/<slot>: one replica called "model"; *t gets /optimizer t. */
static int read_v1_model(nn__ckpt_r *r, nn_ckpt_replica *rep, uint64_t *t) {
  char slots[NN_CKPT_MAX_SLOTS][32];
  int nslots = 0;
  hid_t g = H5Lexists(r->h.id, "optimizer", H5P_DEFAULT) > 0
                ? H5Gopen2(r->h.id, "optimizer", H5P_DEFAULT) : -1;
  if (g < 0) return RFAIL(r, "optimizer", "missing group");
  nn__ckpt_pathf(rep->name, sizeof rep->name, "%s", CKPT_MODEL_NAME);
  int rc = nn__ckpt_r_names(r, g, "slots", NN_CKPT_MAX_SLOTS, 32, &slots[0][0], &nslots);
  if (!rc) rc = read_table(r, "tensors", rep, nslots, SIZE_MAX);
  if (!rc) rc = read_optim_type(r, g, "optimizer", "type", rep);
  if (!rc) rc = nn_h5_attr_read_exact(&r->h, g, "t", H5T_NATIVE_UINT64, t, r->err);
  H5Gclose(g);
  if (rc) return rc;
  memcpy(rep->slot_names, slots, sizeof slots);
  hsize_t ng = 0;
  if ((rc = nn_h5_group_links(&r->h, "optimizer", &ng, r->err))) return rc;
  if (ng != (hsize_t)(rep->nparams ? nslots : 0))
    return RFAIL(r, "optimizer", "holds %llu slot groups, attribute 'slots' lists %d",
                 (unsigned long long)ng, nslots);
  rep->optim_t = *t;
  return read_tensors(r, rep, "");
}

/* Dataset <gp>/carry: a 2-d float32 [streams, floats per stream]. */
static int read_carry(nn__ckpt_r *r, nn_ckpt_replica *rep, const char *gp) {
  char path[CKPT_DSET_MAX];
  nn__ckpt_pathf(path, sizeof path, "%s/carry", gp);
  hid_t d = H5Dopen2(r->h.id, path, H5P_DEFAULT);
  if (d < 0) return RFAIL(r, path, "cannot open the dataset");
  hid_t sp = H5Dget_space(d);
  hsize_t dims[2] = {0, 0};
  int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2 &&
           H5Sget_simple_extent_dims(sp, dims, NULL) == 2;
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  size_t n = 0;
  if (!ok || dims[0] < 1 || dims[1] < 1 || dims[0] > INT32_MAX || dims[1] > INT32_MAX ||
      nn_mul_size((size_t)dims[0], (size_t)dims[1], &n) || n > NN_MAX_ELEMS)
    return RFAIL(r, path, "expected a 2-d float32 [streams, floats per stream] of at most %lld "
                 "floats", (long long)NN_MAX_ELEMS);
  rep->carry = nn_malloc(n * sizeof *rep->carry);
  if (!rep->carry) return nn_error_set(r->err, NN_ENOMEM, "out of memory for %s", path);
  rep->carry_cap = n;
  rep->carry_rows = (size_t)dims[0];
  rep->carry_cols = (size_t)dims[1];
  nn_shape cs = {2, {(int)dims[0], (int)dims[1]}};
  return nn__ckpt_r_floats(r, path, &cs, rep->carry);
}

/* Version 2: group replicas/<name> (name already in rep->name). */
static int read_v2_replica(nn__ckpt_r *r, nn_ckpt_replica *rep) {
  char gp[CKPT_DSET_MAX], path[CKPT_DSET_MAX], slots[NN_CKPT_MAX_SLOTS][32];
  int nslots = 0;
  uint64_t ntr = 0, optim_t = 0;
  nn__ckpt_pathf(gp, sizeof gp, "replicas/%s", rep->name);
  hid_t g = H5Lexists(r->h.id, gp, H5P_DEFAULT) > 0 ? H5Gopen2(r->h.id, gp, H5P_DEFAULT) : -1;
  if (g < 0) return RFAIL(r, gp, "missing replica group (root attribute 'replicas' lists it)");
  int rc = nn__ckpt_r_names(r, g, "slots", NN_CKPT_MAX_SLOTS, 32, &slots[0][0], &nslots);
  if (!rc) rc = nn_h5_attr_read_exact(&r->h, g, "ntrainable", H5T_NATIVE_UINT64, &ntr, r->err);
  if (!rc) rc = nn_h5_attr_read_exact(&r->h, g, "optim_t", H5T_NATIVE_UINT64, &optim_t, r->err);
  nn__ckpt_pathf(path, sizeof path, "%s/tensors", gp);
  if (!rc) rc = read_table(r, path, rep, nslots, ntr >= SIZE_MAX ? SIZE_MAX - 1 : (size_t)ntr);
  if (!rc) rc = read_optim_type(r, g, gp, "optim_type", rep);
  H5Gclose(g);
  if (rc) return rc;
  memcpy(rep->slot_names, slots, sizeof slots);
  rep->optim_t = optim_t;
  /* the group holds the table and the groups its tables imply, nothing else */
  int nbuf = 0;
  for (int i = 0; i < rep->ntensors; i++) nbuf += rep->tensors[i].is_buffer;
  hsize_t want = 1 + (rep->ntensors > nbuf) + (nbuf > 0) + (nslots && rep->ntrainable), got = 0;
  nn__ckpt_pathf(path, sizeof path, "%s/carry", gp);
  int carry = H5Lexists(r->h.id, path, H5P_DEFAULT) > 0;
  want += carry;
  if ((rc = nn_h5_group_links(&r->h, gp, &got, r->err))) return rc;
  if (got != want)
    return RFAIL(r, gp, "holds %llu members, expected %llu (tensors, params, buffers, optimizer)",
                 (unsigned long long)got, (unsigned long long)want);
  if (nslots && rep->ntrainable) {
    nn__ckpt_pathf(path, sizeof path, "%s/optimizer", gp);
    if ((rc = nn_h5_group_links(&r->h, path, &got, r->err))) return rc;
    if (got != (hsize_t)nslots)
      return RFAIL(r, path, "holds %llu slot groups, attribute 'slots' lists %d",
                   (unsigned long long)got, nslots);
  }
  if (carry && (rc = read_carry(r, rep, gp))) return rc;
  nn__ckpt_pathf(path, sizeof path, "%s/", gp);
  return read_tensors(r, rep, path);
}

/* Version 2: the root list 'replicas', the /replicas group, each replica. */
static int read_v2_replicas(nn__ckpt_r *r, nn_ckpt_snapshot *s) {
  char names[NN_CKPT_MAX_REPLICAS][NN_NAME_MAX];
  int n = 0;
  int rc = nn__ckpt_r_names(r, r->h.id, "replicas", NN_CKPT_MAX_REPLICAS, NN_NAME_MAX,
                            &names[0][0], &n);
  if (rc) return rc;
  if (n < 1) return RFAIL(r, "replicas", "lists no replica");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++)
      if (!strcmp(names[i], names[j]))
        return RFAIL(r, "replicas", "lists the replica '%s' twice", names[i]);
  hsize_t got = 0;
  if ((rc = nn_h5_group_links(&r->h, "replicas", &got, r->err))) return rc;
  if (got != (hsize_t)n)
    return RFAIL(r, "replicas", "the group holds %llu replicas, the root attribute lists %d",
                 (unsigned long long)got, n);
  for (int i = 0; i < n && !rc; i++) {
    nn__ckpt_pathf(s->rep[i].name, sizeof s->rep[i].name, "%s", names[i]);
    rc = read_v2_replica(r, &s->rep[i]);
    s->nreplicas = i + 1; /* freed on failure */
  }
  return rc;
}

/* /spec, /state (the fields of version `version`) and /metrics. */
static int read_run(nn__ckpt_r *r, nn_ckpt_snapshot *s, int version) {
  hid_t d = -1, g = -1, mt = -1;
  char *text = NULL;
  hsize_t n = 0;
  static const nn_h5_want spec = {H5T_INTEGER, 1, "uint8", -1, NULL, NULL};
  static const nn_h5_want metrics = {H5T_STRING, 0, "a string", 0, NULL, NULL};
  int rc = nn_h5_dset_open(&r->h, "spec", &spec, &n, &d, r->err);
  if (rc) return rc;
  if (n > ((hsize_t)1 << 30)) {
    rc = RFAIL(r, "spec", "%llu bytes: too large", (unsigned long long)n);
    goto cleanup;
  }
  if ((rc = nn__ckpt_grow(&s->spec, &s->spec_cap, n ? (size_t)n : 1, r->err))) goto cleanup;
  if (n && H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->spec) < 0) {
    rc = RFAIL(r, "spec", "cannot read the data");
    goto cleanup;
  }
  s->spec_len = (size_t)n;
  H5Dclose(d);
  d = -1;
  g = H5Lexists(r->h.id, "state", H5P_DEFAULT) > 0 ? H5Gopen2(r->h.id, "state", H5P_DEFAULT) : -1;
  if (g < 0) {
    rc = RFAIL(r, "state", "missing group");
    goto cleanup;
  }
  for (const nn_ckpt_field *f = nn_ckpt_state_fields(); f->name && !rc; f++) {
    char *at = (char *)&s->state + f->offset;
    if (f->optional && H5Aexists(g, f->name) <= 0) { /* a file from before the field */
      memset(at, 0, nn__ckpt_ftype_size(f->type));
      continue;
    }
    if (!f->v1_only || version == 1)
      rc = nn_h5_attr_read_exact(&r->h, g, f->name, nn__ckpt_ftype_h5(f->type), at, r->err);
  }
  if (rc) goto cleanup;
  if ((rc = nn_h5_dset_open(&r->h, "metrics", &metrics, NULL, &d, r->err))) goto cleanup;
  mt = nn_h5_str_type();
  if (mt < 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0) {
    rc = RFAIL(r, "metrics", "cannot read the text");
    goto cleanup;
  }
  rc = nn_ckpt_snapshot_set_metrics(s, text ? text : "", text ? strlen(text) : 0, r->err);
cleanup:
  if (text) H5free_memory(text);
  if (mt >= 0) H5Tclose(mt);
  if (d >= 0) H5Dclose(d);
  if (g >= 0) H5Gclose(g);
  return rc;
}

/* Root attributes: format, version (1 or 2), checksum, created. */
static int read_root(nn__ckpt_r *r, nn_ckpt_snapshot *s, uint64_t *stored) {
  char buf[96];
  int32_t version = 0;
  const nn_h5_file *h = &r->h;
  int rc = nn_h5_attr_read_str(h, h->id, "format", buf, sizeof buf, r->err);
  if (rc) return rc;
  if (strcmp(buf, NN_CKPT_FORMAT) != 0)
    return RFAIL(r, "format", "is '%s', expected '%s'", buf, NN_CKPT_FORMAT);
  if ((rc = nn_h5_attr_read_exact(h, h->id, "version", H5T_NATIVE_INT32, &version, r->err)))
    return rc;
  if (version != 1 && version != 2)
    return RFAIL(r, "version", "is %d, this nntrain reads versions 1 and 2", (int)version);
  s->version = version;
  if ((rc = nn_h5_attr_read_str(h, h->id, "checksum", buf, sizeof buf, r->err))) return rc;
  char *end = NULL;
  errno = 0;
  *stored = strtoull(buf, &end, 16);
  if (strlen(buf) != 16 || *end || errno)
    return RFAIL(r, "checksum", "is '%s', expected 16 hex digits", buf);
  return nn_h5_attr_read_str(h, h->id, "created", s->created, sizeof s->created, r->err);
}

static int read_content(nn__ckpt_r *r, nn_ckpt_snapshot *s, uint64_t *stored) {
  uint64_t v1_t = 0;
  int rc = read_root(r, s, stored);
  if (!rc) rc = nn__ckpt_snapshot_alloc_text(s, r->err);
  if (rc) return rc;
  if (s->version == 1) {
    s->nreplicas = 1;
    rc = read_v1_model(r, &s->rep[0], &v1_t);
  } else {
    rc = read_v2_replicas(r, s);
  }
  if (!rc) rc = read_run(r, s, s->version);
  if (rc) return rc;
  if (s->version == 1 && s->state.optim_t != v1_t)
    return RFAIL(r, "optimizer/t", "is %" PRIu64 " but state/optim_t is %" PRIu64, v1_t,
                 s->state.optim_t);
  uint64_t sum = nn_ckpt_checksum(s);
  if (sum != *stored)
    return RFAIL(r, "checksum", "content hashes to %016" PRIx64 ", the file says %016" PRIx64
                 " (damaged or modified)", sum, *stored);
  return 0;
}

int nn__ckpt_read_file(const char *path, nn_ckpt_snapshot *s, uint64_t *stored, nn_error *err) {
  nn__ckpt_r r = {{-1, path, NN_ECKPT, "an nntrain checkpoint"}, err};
  memset(s, 0, sizeof *s);
  int rc = nn_h5_open_read(path, "an nntrain checkpoint", NULL, &r.h.id, err);
  /* missing, unreadable, not HDF5, truncated, a directory: a missing or bad
   * checkpoint (exit 5), not a data problem */
  if (rc == NN_EDATA || rc == NN_ENOTFOUND || rc == NN_EIO) {
    rc = NN_ECKPT;
    if (err) err->code = NN_ECKPT;
  }
  if (!rc) rc = read_content(&r, s, stored);
  if (r.h.id >= 0) H5Fclose(r.h.id);
  H5Eclear2(H5E_DEFAULT);
  if (rc) nn_ckpt_snapshot_free(s);
  return rc;
}

int nn_ckpt_read(const char *path, nn_ckpt_snapshot *s, nn_error *err) {
  uint64_t stored;
  return nn__ckpt_read_file(path, s, &stored, err);
}
