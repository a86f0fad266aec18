/* job_pack.c: nn_job <-> JobSpec protobuf (proto/nntrain.proto).
 *
 * The codec is driven by the same key tables as the parser and by
 * protobuf-c's reflection: for each key, the field of the same name in the
 * section's message (JobSpec.<section>, or JobSpec itself for top-level
 * keys; LayerSpec for layer keys) is found through the message descriptor
 * and copied by type. A key with no field of its name travels as an Extra
 * {key, value-as-text} in the message's `extra` list, so a layer key added in
 * C round-trips before anyone adds it to the .proto.
 *
 * Unpacking trusts nothing: every value is checked against its key's type,
 * size and range, layer types must exist, and the result passes the same
 * cross-key checks as a parsed job; anything else is NN_ECKPT. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job.h"
#include "core/mem.h"
#include "coordinator/pb_alloc.h"
#include "coordinator/job_keys.h"
#include "core/loss.h"
#include "nntrain.pb-c.h"

#define JOBSPEC_VERSION 1

_Static_assert(sizeof(int) == sizeof(int32_t), "int list fields are sent as int32");

/* Allocations made while building messages to pack; freed together. */
typedef struct pk {
  void **p;
  size_t n, cap;
} pk;

/* Zeroed memory owned by a; NULL when out of memory. */
static void *pk_alloc(pk *a, size_t size) {
  if (a->n == a->cap) {
    size_t ncap = a->cap ? 2 * a->cap : 64;
    void **t = nn_realloc(a->p, ncap * sizeof *t);
    if (!t) return NULL;
    a->p = t;
    a->cap = ncap;
  }
  void *m = nn_calloc(1, size ? size : 1);
  if (m) a->p[a->n++] = m;
  return m;
}

static void pk_free(pk *a) {
  for (size_t i = 0; i < a->n; i++) free(a->p[i]);
  free(a->p);
}

static ProtobufCMessage *pk_msg(pk *a, const ProtobufCMessageDescriptor *d) {
  ProtobufCMessage *m = pk_alloc(a, d->sizeof_message);
  if (m) protobuf_c_message_init(d, m);
  return m;
}

/* 1 if key k can be stored in field f. */
static int compatible(const nn_key *k, const ProtobufCFieldDescriptor *f) {
  int repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
  switch (k->type) {
  case NN_KEY_INT:
    return !repeated && (f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_SINT32);
  case NN_KEY_INT64:
    if (repeated) return 0;
    if (f->type == PROTOBUF_C_TYPE_INT64 || f->type == PROTOBUF_C_TYPE_SINT64) return 1;
    return f->type == PROTOBUF_C_TYPE_UINT64 && k->min >= 0 && !(k->min == 0 && k->max == 0);
  case NN_KEY_FLOAT: return !repeated && f->type == PROTOBUF_C_TYPE_DOUBLE;
  case NN_KEY_BOOL: return !repeated && f->type == PROTOBUF_C_TYPE_BOOL;
  case NN_KEY_STRING:
  case NN_KEY_ENUM: return !repeated && f->type == PROTOBUF_C_TYPE_STRING;
  case NN_KEY_INT_LIST:
    return repeated && (f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_SINT32);
  case NN_KEY_STRING_LIST: return repeated && f->type == PROTOBUF_C_TYPE_STRING;
  }
  return 0;
}

/* The field of message type d holding key k; NULL if there is none (the key
 * goes to `extra`). *bad set if a field of that name exists but cannot hold
 * the key's type. */
static const ProtobufCFieldDescriptor *key_field(const ProtobufCMessageDescriptor *d,
                                                 const nn_key *k, int *bad) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, k->name);
  *bad = f && !compatible(k, f);
  return *bad ? NULL : f;
}

/* An NN_KEY_STRING_LIST key of `base` into repeated string field f of the
 * message at mb (strings copied into a). */
static int strlist_to_msg(pk *a, const nn_key *k, const void *base,
                          const ProtobufCFieldDescriptor *f, char *mb, const char *what,
                          nn_error *err) {
  const char *src = (const char *)base + k->offset;
  int count = *(const int *)((const char *)base + k->count_offset);
  if (count < 0 || (size_t)count > k->size)
    return nn_error_set(err, NN_EINVAL, "%s.%s: %d items", what, k->name, count);
  char **arr = pk_alloc(a, (count ? (size_t)count : 1) * sizeof *arr);
  if (!arr) return nn_error_set(err, NN_ENOMEM, "out of memory");
  for (int j = 0; j < count; j++) {
    const char *item = src + (size_t)j * NN_KEY_ITEM_MAX;
    size_t len = strnlen(item, NN_KEY_ITEM_MAX);
    if (!(arr[j] = pk_alloc(a, len + 1))) return nn_error_set(err, NN_ENOMEM, "out of memory");
    memcpy(arr[j], item, len);
    arr[j][len] = '\0';
  }
  *(size_t *)(mb + f->quantifier_offset) = (size_t)count;
  *(char ***)(mb + f->offset) = count ? arr : NULL;
  return 0;
}

/* The repeated string field f of the message at mb into NN_KEY_STRING_LIST
 * key k of `base`; -1 and msg for an item that is not a name. */
static int strlist_from_msg(const nn_key *k, void *base, const ProtobufCFieldDescriptor *f,
                            const char *mb, char *msg, size_t n) {
  size_t cnt = *(const size_t *)(mb + f->quantifier_offset);
  char *const *items = *(char *const *const *)(mb + f->offset);
  char *dst = (char *)base + k->offset;
  if (cnt > k->size) {
    snprintf(msg, n, "%zu items, at most %zu allowed", cnt, k->size);
    return -1;
  }
  for (size_t j = 0; j < cnt; j++) {
    const char *s = items[j] ? items[j] : "";
    if (!s[0] || strlen(s) >= NN_KEY_ITEM_MAX) {
      snprintf(msg, n, "item %zu: \"%.40s\" is not a name", j, s);
      return -1;
    }
    memset(dst + j * NN_KEY_ITEM_MAX, 0, NN_KEY_ITEM_MAX);
    memcpy(dst + j * NN_KEY_ITEM_MAX, s, strlen(s));
  }
  *(int *)((char *)base + k->count_offset) = (int)cnt;
  return 0;
}

/* Write the keys of struct `base` into message m (allocations in a). */
static int keys_to_msg(pk *a, const nn_key *keys, const void *base, ProtobufCMessage *m,
                       const char *what, nn_error *err) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  char *mb = (char *)m;
  size_t nextra = 0;
  for (size_t i = 0; keys[i].name; i++) {
    const nn_key *k = &keys[i];
    int bad;
    const ProtobufCFieldDescriptor *f = key_field(d, k, &bad);
    if (bad)
      return nn_error_set(err, NN_EINTERNAL, "%s.%s: field %s.%s has a type that cannot hold it",
                          what, k->name, d->name, k->name);
    if (!f) {
      nextra++;
      continue;
    }
    const char *src = (const char *)base + k->offset;
    void *dst = mb + f->offset;
    switch (k->type) {
    case NN_KEY_INT: *(int32_t *)dst = *(const int *)src; break;
    case NN_KEY_INT64:
      if (f->type == PROTOBUF_C_TYPE_UINT64)
        *(uint64_t *)dst = (uint64_t) * (const int64_t *)src;
      else
        *(int64_t *)dst = *(const int64_t *)src;
      break;
    case NN_KEY_FLOAT: *(double *)dst = *(const double *)src; break;
    case NN_KEY_BOOL: *(protobuf_c_boolean *)dst = *(const int *)src ? 1 : 0; break;
    case NN_KEY_STRING:
    case NN_KEY_ENUM: {
      /* the struct's buffer is used as is: pack only reads it */
      size_t len = strnlen(src, k->size);
      char *s = pk_alloc(a, len + 1);
      if (!s) return nn_error_set(err, NN_ENOMEM, "out of memory");
      memcpy(s, src, len);
      *(char **)dst = s;
      break;
    }
    case NN_KEY_INT_LIST: {
      int count = *(const int *)((const char *)base + k->count_offset);
      if (count < 0 || (size_t)count > k->size)
        return nn_error_set(err, NN_EINVAL, "%s.%s: %d items", what, k->name, count);
      *(size_t *)(mb + f->quantifier_offset) = (size_t)count;
      *(const int32_t **)dst = count ? (const int32_t *)src : NULL;
      break;
    }
    case NN_KEY_STRING_LIST: {
      int rc = strlist_to_msg(a, k, base, f, mb, what, err);
      if (rc) return rc;
      break;
    }
    }
  }
  if (!nextra) return 0;

  const ProtobufCFieldDescriptor *fx = protobuf_c_message_descriptor_get_field_by_name(d, "extra");
  if (!fx || fx->type != PROTOBUF_C_TYPE_MESSAGE || fx->label != PROTOBUF_C_LABEL_REPEATED)
    return nn_error_set(err, NN_EINTERNAL, "%s: message %s has no `extra` list for its keys "
                        "without a field", what, d->name);
  ProtobufCMessage **arr = pk_alloc(a, nextra * sizeof *arr);
  if (!arr) return nn_error_set(err, NN_ENOMEM, "out of memory");
  size_t j = 0;
  for (size_t i = 0; keys[i].name; i++) {
    int bad;
    if (key_field(d, &keys[i], &bad)) continue;
    Nntrain__Extra *x = (Nntrain__Extra *)pk_msg(a, &nntrain__extra__descriptor);
    char *text = pk_alloc(a, NN_PATH_MAX + 64);
    if (!x || !text) return nn_error_set(err, NN_ENOMEM, "out of memory");
    nn__key_format(&keys[i], base, text, NN_PATH_MAX + 64);
    x->key = (char *)keys[i].name;
    x->value = text;
    arr[j++] = &x->base;
  }
  *(size_t *)(mb + fx->quantifier_offset) = nextra;
  *(ProtobufCMessage ***)(mb + fx->offset) = arr;
  return 0;
}

/* msg_to_keys for a key k with no field of its own: its text in the
 * `extra` list (field fx) of the message at mb, parsed and checked into
 * `base`. Absent from the list: 0 and `base` untouched. -1 and msg (n bytes,
 * the caller's) for a bad value, and for a required key that is absent
 * (found by fuzz_proto: such a spec unpacked, packed again and was refused). */
static int key_from_extra(const nn_key *k, void *base, const ProtobufCFieldDescriptor *fx,
                          const char *mb, char *msg, size_t n) {
  size_t nx = *(const size_t *)(mb + fx->quantifier_offset);
  Nntrain__Extra *const *xs = *(Nntrain__Extra *const *const *)(mb + fx->offset);
  for (size_t j = 0; j < nx; j++) {
    if (!xs[j]->key || strcmp(xs[j]->key, k->name)) continue;
    return nn__key_parse_text(k, base, xs[j]->value ? xs[j]->value : "", msg, n);
  }
  if (k->flags & NN_KEY_REQUIRED) { /* no default to keep: a spec we would not write */
    snprintf(msg, n, "required key missing");
    return -1;
  }
  return 0;
}

/* msg_to_keys for a key k held in field f of the message at mb: the value
 * checked against k's limits and, if good, written into `base` (an int list
 * item by item, its count last). -1 and msg (n bytes, the caller's) for a
 * bad value. */
static int key_from_field(const nn_key *k, void *base, const ProtobufCFieldDescriptor *f,
                          const char *mb, char *msg, size_t n) {
  char *dst = (char *)base + k->offset;
  const void *src = mb + f->offset;
  int rc = 0;
  switch (k->type) {
  case NN_KEY_INT: {
    int32_t v = *(const int32_t *)src;
    if (v == 0 && (k->flags & NN_KEY_ZERO_ABSENT)) break; /* a spec from before the key */
    if (!(rc = nn__key_check_int(k, v, msg, n))) *(int *)dst = v;
    break;
  }
  case NN_KEY_INT64: {
    long long v;
    if (f->type == PROTOBUF_C_TYPE_UINT64) {
      uint64_t u = *(const uint64_t *)src;
      v = u > (uint64_t)INT64_MAX ? -1 : (long long)u;
    } else {
      v = *(const int64_t *)src;
    }
    if (!(rc = nn__key_check_int(k, v, msg, n))) *(int64_t *)dst = v;
    break;
  }
  case NN_KEY_FLOAT: {
    double v = *(const double *)src;
    if (v == 0 && (k->flags & NN_KEY_ZERO_ABSENT)) break; /* a spec from before the key */
    if (!(rc = nn__key_check_float(k, v, msg, n))) *(double *)dst = v;
    break;
  }
  case NN_KEY_BOOL: *(int *)dst = *(const protobuf_c_boolean *)src ? 1 : 0; break;
  case NN_KEY_STRING:
  case NN_KEY_ENUM: {
    const char *s = *(char *const *)src;
    if (!s) s = "";
    char def[64];
    if (k->type == NN_KEY_ENUM && !*s && k->def && k->def[0] == '"') {
      /* a spec packed before this key existed: the key's default ("" is no choice) */
      snprintf(def, sizeof def, "%s", k->def + 1);
      def[strcspn(def, "\"")] = 0;
      s = def;
    }
    if (!(rc = nn__key_check_string(k, s, msg, n))) {
      memset(dst, 0, k->size);
      memcpy(dst, s, strlen(s));
    }
    break;
  }
  case NN_KEY_INT_LIST: {
    size_t cnt = *(const size_t *)(mb + f->quantifier_offset);
    const int32_t *items = *(const int32_t *const *)src;
    nn_key one = *k;
    one.type = NN_KEY_INT;
    if (cnt > k->size) {
      snprintf(msg, n, "%zu items, at most %zu allowed", cnt, k->size);
      rc = -1;
      break;
    }
    for (size_t j = 0; j < cnt && !rc; j++) {
      rc = nn__key_check_int(&one, items[j], msg, n);
      if (!rc) ((int *)dst)[j] = items[j];
    }
    if (!rc) *(int *)((char *)base + k->count_offset) = (int)cnt;
    break;
  }
  case NN_KEY_STRING_LIST: rc = strlist_from_msg(k, base, f, mb, msg, n); break;
  }
  return rc;
}

/* Read the keys of struct `base` from message m, checking every value. Keys
 * absent from the message keep what `base` holds (the caller's defaults). */
static int msg_to_keys(const nn_key *keys, void *base, const ProtobufCMessage *m,
                       const char *what, nn_error *err) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *mb = (const char *)m;
  const ProtobufCFieldDescriptor *fx = protobuf_c_message_descriptor_get_field_by_name(d, "extra");
  char msg[400];
  for (size_t i = 0; keys[i].name; i++) {
    const nn_key *k = &keys[i];
    int bad, rc = 0;
    const ProtobufCFieldDescriptor *f = key_field(d, k, &bad);
    if (bad)
      return nn_error_set(err, NN_EINTERNAL, "%s.%s: field %s.%s has a type that cannot hold it",
                          what, k->name, d->name, k->name);
    if (!f)
      rc = fx ? key_from_extra(k, base, fx, mb, msg, sizeof msg) : 0;
    else
      rc = key_from_field(k, base, f, mb, msg, sizeof msg);
    if (rc) return nn_error_set(err, NN_ECKPT, "JobSpec: %s.%s: %s", what, k->name, msg);
  }
  return 0;
}

/* The sub-message field of JobSpec for section s (NULL for top-level keys). */
static const ProtobufCFieldDescriptor *section_field(const nn_job_section *s, nn_error *err,
                                                     int *rc) {
  *rc = 0;
  if (!s->name[0]) return NULL;
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(&nntrain__job_spec__descriptor, s->name);
  if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
    *rc = nn_error_set(err, NN_EINTERNAL, "JobSpec has no message field `%s` for [%s]", s->name,
                       s->name);
  return f;
}

/* Message m packed into *buf (malloc'ed, the caller frees it) and *len. On
 * error *buf is NULL and *len 0. */
static int pack_to_buf(const ProtobufCMessage *m, uint8_t **buf, size_t *len, nn_error *err) {
  size_t size = protobuf_c_message_get_packed_size(m);
  *buf = nn_malloc(size ? size : 1);
  if (!*buf) return nn_error_set(err, NN_ENOMEM, "out of memory (%zu bytes)", size);
  size_t packed = protobuf_c_message_pack(m, *buf);
  if (packed != size) {
    free(*buf);
    *buf = NULL;
    return nn_error_set(err, NN_EINTERNAL, "%s packed to %zu bytes, expected %zu",
                        m->descriptor->short_name, packed, size);
  }
  *len = size;
  return 0;
}

/* Every section of job into root: a sub-message per named section (owned by
 * a), the top-level keys into root itself. */
static int sections_to_msg(pk *a, const nn_job *job, Nntrain__JobSpec *root, nn_error *err) {
  int rc = 0;
  for (const nn_job_section *s = nn_job_sections(); s->name; s++) {
    const ProtobufCFieldDescriptor *f = section_field(s, err, &rc);
    if (rc) return rc;
    ProtobufCMessage *m = &root->base;
    if (f) {
      m = pk_msg(a, f->descriptor);
      if (!m) return nn_error_set(err, NN_ENOMEM, "out of memory");
      *(ProtobufCMessage **)((char *)root + f->offset) = m;
    }
    if ((rc = keys_to_msg(a, s->keys, (const char *)job + s->offset, m,
                          s->name[0] ? s->name : "job", err)))
      return rc;
  }
  return 0;
}

/* The layers of job into root->model (packed by sections_to_msg first): one
 * LayerSpec each, all owned by a. */
static int layers_to_msg(pk *a, const nn_job *job, Nntrain__JobSpec *root, nn_error *err) {
  int n = job->model.nlayers;
  if (n < 0 || n > NN_JOB_MAX_LAYERS) return nn_error_set(err, NN_EINVAL, "job has %d layers", n);
  Nntrain__LayerSpec **layers = pk_alloc(a, (size_t)(n ? n : 1) * sizeof *layers);
  if (!layers) return nn_error_set(err, NN_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    const nn_layer_cfg *cfg = &job->model.layers[i];
    const nn_layer_ops *ops = nn_layer_find(cfg->type);
    nn_key all[NN__LAYER_KEYS_MAX];
    char what[48];
    snprintf(what, sizeof what, "model.layers[%d]", i);
    if (!ops)
      return nn_error_set(err, NN_EINVAL, "%s: unknown layer type \"%.24s\"", what, cfg->type);
    if (nn__layer_all_keys(ops, all, NN__LAYER_KEYS_MAX) < 0)
      return nn_error_set(err, NN_EINTERNAL, "layer type %s has too many keys", ops->type);
    layers[i] = (Nntrain__LayerSpec *)pk_msg(a, &nntrain__layer_spec__descriptor);
    if (!layers[i]) return nn_error_set(err, NN_ENOMEM, "out of memory");
    layers[i]->line = job->model.layer_line[i];
    int rc = keys_to_msg(a, all, cfg, &layers[i]->base, what, err);
    if (rc) return rc;
  }
  root->model->n_layers = (size_t)n;
  root->model->layers = layers;
  return 0;
}

int nn_job_pack(const nn_job *job, uint8_t **buf, size_t *len, nn_error *err) {
  pk a = {0};
  int rc = 0;
  *buf = NULL;
  *len = 0;
  Nntrain__JobSpec *root = (Nntrain__JobSpec *)pk_msg(&a, &nntrain__job_spec__descriptor);
  if (!root) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto done;
  }
  root->version = JOBSPEC_VERSION;
  root->source = (char *)job->source;
  if ((rc = sections_to_msg(&a, job, root, err))) goto done;
  if ((rc = layers_to_msg(&a, job, root, err))) goto done;
  rc = pack_to_buf(&root->base, buf, len, err);
done:
  pk_free(&a);
  return rc;
}

/* Version and source path of root into job (which the caller has zeroed). */
static int header_from_msg(nn_job *job, const Nntrain__JobSpec *root, nn_error *err) {
  if (root->version != JOBSPEC_VERSION)
    return nn_error_set(err, NN_ECKPT, "JobSpec: version %u, this build reads version %d",
                        root->version, JOBSPEC_VERSION);
  const char *source = root->source ? root->source : "";
  if (strlen(source) >= sizeof job->source)
    return nn_error_set(err, NN_ECKPT, "JobSpec: source path too long");
  memcpy(job->source, source, strlen(source));
  return 0;
}

/* Every section of root into job: defaults first, then the message's values
 * (checked). A missing [init] keeps its defaults (specs older than it). */
static int sections_from_msg(nn_job *job, const Nntrain__JobSpec *root, nn_error *err) {
  int rc = 0;
  for (const nn_job_section *s = nn_job_sections(); s->name; s++) {
    const ProtobufCFieldDescriptor *f = section_field(s, err, &rc);
    if (rc) return rc;
    const ProtobufCMessage *m = &root->base;
    if (f) {
      m = *(ProtobufCMessage *const *)((const char *)root + f->offset);
      if (!m && !strcmp(s->name, "init")) { /* added later: older specs keep the defaults */
        if ((rc = nn__keys_defaults(s->keys, (char *)job + s->offset, s->name, err))) return rc;
        continue;
      }
      if (!m) return nn_error_set(err, NN_ECKPT, "JobSpec: the [%s] section is missing", s->name);
    }
    void *base = (char *)job + s->offset;
    const char *what = s->name[0] ? s->name : "job";
    if ((rc = nn__keys_defaults(s->keys, base, what, err))) return rc;
    if ((rc = msg_to_keys(s->keys, base, m, what, err))) return rc;
  }
  return 0;
}

/* The LayerSpecs of root->model into job->model: each type must exist, each
 * value fit its key. */
static int layers_from_msg(nn_job *job, const Nntrain__JobSpec *root, nn_error *err) {
  size_t n = root->model->n_layers;
  if (n < 1 || n > NN_JOB_MAX_LAYERS)
    return nn_error_set(err, NN_ECKPT, "JobSpec: %zu layers (1 to %d allowed)", n,
                        NN_JOB_MAX_LAYERS);
  job->model.nlayers = (int)n;
  for (size_t i = 0; i < n; i++) {
    const Nntrain__LayerSpec *ls = root->model->layers[i];
    nn_layer_cfg *cfg = &job->model.layers[i];
    const char *type = ls->type ? ls->type : "";
    const nn_layer_ops *ops = nn_layer_find(type);
    char what[48];
    snprintf(what, sizeof what, "model.layers[%zu]", i);
    if (!ops)
      return nn_error_set(err, NN_ECKPT, "JobSpec: %s: unknown layer type \"%.24s\"", what,
                          type);
    nn_key all[NN__LAYER_KEYS_MAX];
    if (nn__layer_all_keys(ops, all, NN__LAYER_KEYS_MAX) < 0)
      return nn_error_set(err, NN_EINTERNAL, "layer type %s has too many keys", ops->type);
    int rc = nn__keys_defaults(all, cfg, what, err);
    if (!rc) rc = msg_to_keys(all, cfg, &ls->base, what, err);
    if (rc) return rc;
    job->model.layer_line[i] = ls->line;
  }
  return 0;
}

/* The cross-key checks a parsed job passed, on an unpacked one. */
static int check_unpacked(const nn_job *job, nn_error *err) {
  char msg[300];
  int which;
  if (nn__job_check_layers(job, &which, msg, sizeof msg))
    return nn_error_set(err, NN_ECKPT, "JobSpec: %s", msg);
  if (!job->name[0] || !job->run.dir[0] || !job->data.train[0])
    return nn_error_set(err, NN_ECKPT, "JobSpec: name, run.dir or data.train is empty");
  if (nn_loss_parse(job->train.loss) < 0)
    return nn_error_set(err, NN_ECKPT, "JobSpec: unknown loss \"%s\"", job->train.loss);
  nn_error oe;
  nn_error_clear(&oe);
  if (nn_optim_check(&job->optimizer, &oe))
    return nn_error_set(err, NN_ECKPT, "JobSpec: %s", oe.msg);
  return 0;
}

int nn_job_unpack(nn_job *job, const uint8_t *buf, size_t len, nn_error *err) {
  Nntrain__JobSpec *root = NULL;
  int rc = 0;
  memset(job, 0, sizeof *job);
  if (!buf && len) {
    rc = nn_error_set(err, NN_EINVAL, "no buffer");
    goto done;
  }
  root = (Nntrain__JobSpec *)protobuf_c_message_unpack(&nntrain__job_spec__descriptor, nn_pb_allocator(),
                                                       len, buf);
  if (!root) {
    rc = nn_error_set(err, NN_ECKPT, "JobSpec: %zu bytes that are not a JobSpec message", len);
    goto done;
  }
  rc = header_from_msg(job, root, err);
  if (!rc) rc = sections_from_msg(job, root, err);
  if (!rc) rc = layers_from_msg(job, root, err);
  if (!rc) rc = check_unpacked(job, err);
done:
  if (root) protobuf_c_message_free_unpacked(&root->base, nn_pb_allocator());
  if (rc) memset(job, 0, sizeof *job);
  return rc;
}

int nn__keys_pack(const nn_key *keys, const void *base, const void *desc, uint8_t **buf,
                  size_t *len, nn_error *err) {
  pk a = {0};
  int rc = 0;
  const ProtobufCMessageDescriptor *d = desc;
  *buf = NULL;
  *len = 0;
  ProtobufCMessage *m = pk_msg(&a, d);
  if (!m) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto done;
  }
  if ((rc = keys_to_msg(&a, keys, base, m, d->short_name, err))) goto done;
  rc = pack_to_buf(m, buf, len, err);
done:
  pk_free(&a);
  return rc;
}

int nn__keys_unpack(const nn_key *keys, void *base, const void *desc, const uint8_t *buf,
                    size_t len, nn_error *err) {
  const ProtobufCMessageDescriptor *d = desc;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, nn_pb_allocator(), len, buf);
  if (!m) return nn_error_set(err, NN_ECKPT, "%zu bytes that are not a %s message", len, d->name);
  int rc = msg_to_keys(keys, base, m, d->short_name, err);
  protobuf_c_message_free_unpacked(m, nn_pb_allocator());
  return rc;
}
