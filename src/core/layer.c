/* layer.c: helpers shared by all layer types (see layer.h): shapes, the
 * initializer names and the initializers themselves, parameter declaration,
 * and key-table defaults.
 *
 * Key defaults are written in the tables as tiny TOML literals ("0.01",
 * "true", "\"relu\"", "[3, 3]"). core/ has no TOML parser, so this file reads
 * exactly those literal forms and nothing else; a default that does not parse
 * is a bug in a table and is reported as NN_EINTERNAL naming the key. */
#include "core/layer.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/keys.h"
#include "core/rng.h"

/* ---- shapes ------------------------------------------------------------ */

size_t nn_shape_count(const nn_shape *s) {
  size_t c = 1;
  for (int i = 0; i < s->ndim; i++) c *= (size_t)(s->dim[i] > 0 ? s->dim[i] : 0);
  return c;
}

int nn_shape_equal(const nn_shape *a, const nn_shape *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

char *nn_shape_str(const nn_shape *s, char *buf, size_t n) {
  if (!buf || n == 0) return buf;
  size_t k = 0;
  buf[0] = '\0';
  int w = snprintf(buf, n, "[");
  if (w > 0) k += (size_t)w;
  for (int i = 0; i < s->ndim && k < n; i++) {
    w = snprintf(buf + k, n - k, i ? ", %d" : "%d", s->dim[i]);
    if (w > 0) k += (size_t)w;
  }
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

/* ---- initializer names ---------------------------------------------------- */

/* Indexed by nn_init_kind; NULL for kinds that are not job-file choices. */
static const char *const init_names[] = {
    [NN_INIT_ZEROS] = "zeros",
    [NN_INIT_ONES] = "ones",
    [NN_INIT_HE_NORMAL] = "he_normal",
    [NN_INIT_HE_UNIFORM] = "he_uniform",
    [NN_INIT_GLOROT_NORMAL] = "glorot_normal",
    [NN_INIT_GLOROT_UNIFORM] = "glorot_uniform",
    [NN_INIT_CONSTANT] = NULL,
};

const char *const nn_init_choices = NN_INIT_CHOICES;

int nn_init_parse(const char *name) {
  if (!name) return -1;
  for (size_t i = 0; i < sizeof init_names / sizeof init_names[0]; i++)
    if (init_names[i] && strcmp(init_names[i], name) == 0) return (int)i;
  return -1;
}

const char *const nn_activation_choices = NN_ACTIVATION_CHOICES;

int nn_is_activation(const char *name) {
  if (!name || !name[0] || strcmp(name, "none") == 0) return 0;
  return nn_choice_index(nn_activation_choices, name) >= 0;
}

/* ---- parameter declaration and initialization -------------------------- */

static void spec_fill(nn_param_spec *s, const char *name, const nn_shape *shape,
                      nn_init_kind init, int fan_in, int fan_out, float value) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->shape = *shape;
  s->init = init;
  s->fan_in = fan_in;
  s->fan_out = fan_out;
  s->value = value;
}

/* A tensor of more than NN_MAX_ELEMS elements (2^31 - 1: BLAS and the
 * checkpoint's tensor table count in int) is refused with its shape, before
 * the model sizes an arena for it (a dense layer on a huge input would
 * otherwise ask for tens of GB and fail, or worse, start filling them). */
static int tensor_fits(const char *name, const nn_shape *shape, nn_error *err) {
  size_t n;
  if (nn_shape_count_checked(shape, &n) == 0) return 0;
  char buf[96];
  return nn_error_set(err, NN_ESHAPE, "tensor '%s' %s has more than %lld elements", name,
                      nn_shape_str(shape, buf, sizeof buf), (long long)NN_MAX_ELEMS);
}

int nn_layer_add_param(nn_layer *l, const char *name, const nn_shape *shape,
                       nn_init_kind init, int fan_in, int fan_out, nn_error *err) {
  int rc;
  if (l->nparams >= NN_MAX_PARAMS)
    return nn_error_set(err, NN_EINTERNAL, "more than %d parameter tensors", NN_MAX_PARAMS);
  if ((rc = tensor_fits(name, shape, err))) return rc;
  spec_fill(&l->pspec[l->nparams++], name, shape, init, fan_in, fan_out, 0.0f);
  return 0;
}

int nn_layer_add_buffer(nn_layer *l, const char *name, const nn_shape *shape,
                        nn_init_kind init, float value, nn_error *err) {
  int rc;
  if (l->nbuffers >= NN_MAX_PARAMS)
    return nn_error_set(err, NN_EINTERNAL, "more than %d buffer tensors", NN_MAX_PARAMS);
  if ((rc = tensor_fits(name, shape, err))) return rc;
  spec_fill(&l->bspec[l->nbuffers++], name, shape, init, 0, 0, value);
  return 0;
}

/* Zero row s->zero_row - 1 of dst, if the spec names one (nn_param_spec). */
static void zero_spec_row(const nn_param_spec *s, float *dst, size_t count) {
  if (s->zero_row <= 0 || s->shape.ndim < 1 || s->zero_row > s->shape.dim[0]) return;
  size_t row = count / (size_t)s->shape.dim[0];
  memset(dst + (size_t)(s->zero_row - 1) * row, 0, row * sizeof *dst);
}

void nn_param_init(const nn_param_spec *s, float *dst, uint64_t seed,
                   uint32_t layer, uint32_t slot) {
  size_t count = nn_shape_count(&s->shape);
  double fi = s->fan_in > 0 ? s->fan_in : 1;
  double fo = s->fan_out > 0 ? s->fan_out : 1;
  double scale = 0.0;
  int normal = 0;
  switch (s->init) {
  case NN_INIT_ZEROS:
  case NN_INIT_ONES:
  case NN_INIT_CONSTANT: {
    float v = s->init == NN_INIT_ZEROS ? 0.0f : s->init == NN_INIT_ONES ? 1.0f : s->value;
    for (size_t i = 0; i < count; i++) dst[i] = v;
    zero_spec_row(s, dst, count);
    return;
  }
  case NN_INIT_HE_NORMAL: scale = sqrt(2.0 / fi); normal = 1; break;
  case NN_INIT_HE_UNIFORM: scale = sqrt(6.0 / fi); break;
  case NN_INIT_GLOROT_NORMAL: scale = sqrt(2.0 / (fi + fo)); normal = 1; break;
  case NN_INIT_GLOROT_UNIFORM: scale = sqrt(6.0 / (fi + fo)); break;
  case NN_INIT_UNIFORM: scale = s->value; break;
  case NN_INIT_NORMAL_STD: scale = s->value; normal = 1; break;
  }
  nn_rng r;
  nn_rng_init(&r, seed, NN_RNG_INIT, layer, slot, 0);
  float sc = (float)scale;
  if (normal) {
    for (size_t i = 0; i < count; i++) dst[i] = sc * nn_rng_normal(&r);
  } else {
    /* U(-scale, scale): 2u - 1 lies in [-1, 1) */
    for (size_t i = 0; i < count; i++) dst[i] = sc * (2.0f * nn_rng_uniform(&r) - 1.0f);
  }
  zero_spec_row(s, dst, count);
}

/* ---- key-table defaults ------------------------------------------------ */

/* s without its '_' digit separators into buf[n] (the caller's). -1 if
 * nothing is left or it does not fit. */
static int strip_underscores(const char *s, char *buf, size_t n) {
  size_t k = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '_') continue;
    if (k + 1 >= n) return -1;
    buf[k++] = *p;
  }
  buf[k] = '\0';
  return k ? 0 : -1;
}

/* Parse a TOML integer literal (optional sign, digits, '_' separators,
 * 0x/0o/0b prefixes) covering all of s. */
static int parse_int_lit(const char *s, long long *out) {
  char buf[64];
  if (strip_underscores(s, buf, sizeof buf)) return -1;
  const char *d = buf;
  int neg = 0, base = 10;
  if (*d == '+' || *d == '-') neg = *d++ == '-';
  if (d[0] == '0' && (d[1] == 'x' || d[1] == 'o' || d[1] == 'b')) {
    base = d[1] == 'x' ? 16 : d[1] == 'o' ? 8 : 2;
    d += 2;
  }
  if (!*d) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(d, &end, base);
  if (errno || *end) return -1;
  *out = neg ? -v : v;
  return 0;
}

/* Parse a TOML float or integer literal (inf, nan, exponents) covering all of s. */
static int parse_float_lit(const char *s, double *out) {
  const char *d = s;
  int neg = 0;
  if (*d == '+' || *d == '-') neg = *d++ == '-';
  if (strcmp(d, "inf") == 0) { *out = neg ? -INFINITY : INFINITY; return 0; }
  if (strcmp(d, "nan") == 0) { *out = NAN; return 0; }
  long long iv;
  if (parse_int_lit(s, &iv) == 0) { *out = (double)iv; return 0; }
  char buf[64];
  if (strip_underscores(s, buf, sizeof buf)) return -1;
  char *end;
  errno = 0;
  double v = strtod(buf, &end);
  if (errno == ERANGE && fabs(v) > 1.0) return -1;
  if (*end) return -1;
  *out = v;
  return 0;
}

/* Parse a TOML basic ("...", with \" \\ \n \t escapes) or literal ('...')
 * string covering all of s, into dst[size]. */
static int parse_str_lit(const char *s, char *dst, size_t size) {
  size_t len = strlen(s), k = 0;
  if (len < 2 || (s[0] != '"' && s[0] != '\'') || s[len - 1] != s[0]) return -1;
  int basic = s[0] == '"';
  for (size_t i = 1; i + 1 < len; i++) {
    char c = s[i];
    if (basic && c == '\\') {
      if (i + 2 >= len) return -1;
      char e = s[++i];
      c = e == 'n' ? '\n' : e == 't' ? '\t' : e == '"' ? '"' : e == '\\' ? '\\' : 0;
      if (!c) return -1;
    }
    if (k + 1 >= size) return -1;
    dst[k++] = c;
  }
  dst[k] = '\0';
  return 0;
}

/* Parse "[1, 2, 3]" into out[max]; *count receives the number of items. */
static int parse_int_list_lit(const char *s, int *out, size_t max, int *count) {
  const char *p = s;
  while (*p == ' ') p++;
  if (*p++ != '[') return -1;
  size_t n = 0;
  for (;;) {
    while (*p == ' ') p++;
    if (*p == ']') { p++; break; }
    char item[32];
    size_t k = 0;
    while (*p && *p != ',' && *p != ']' && *p != ' ') {
      if (k + 1 >= sizeof item) return -1;
      item[k++] = *p++;
    }
    item[k] = '\0';
    long long v;
    if (parse_int_lit(item, &v) != 0 || v < INT32_MIN || v > INT32_MAX || n >= max) return -1;
    out[n++] = (int)v;
    while (*p == ' ') p++;
    if (*p == ',') p++;
    else if (*p != ']') return -1;
  }
  while (*p == ' ') p++;
  if (*p) return -1;
  *count = (int)n;
  return 0;
}

int nn_key_set_text(const nn_key *k, void *obj, const char *text) {
  char *base = obj, *field = base + k->offset;
  switch (k->type) {
  case NN_KEY_INT:
  case NN_KEY_INT64: {
    long long v;
    if (parse_int_lit(text, &v) != 0) return -1;
    if (k->type == NN_KEY_INT) {
      if (v < INT32_MIN || v > INT32_MAX) return -1;
      int iv = (int)v;
      memcpy(field, &iv, sizeof iv);
    } else {
      int64_t lv = v;
      memcpy(field, &lv, sizeof lv);
    }
    return 0;
  }
  case NN_KEY_FLOAT: {
    double v;
    if (parse_float_lit(text, &v) != 0) return -1;
    memcpy(field, &v, sizeof v);
    return 0;
  }
  case NN_KEY_BOOL: {
    int v = strcmp(text, "true") == 0 ? 1 : strcmp(text, "false") == 0 ? 0 : -1;
    if (v < 0) return -1;
    if (k->flags & NN_KEY_NEGATED) v = !v;
    memcpy(field, &v, sizeof v);
    return 0;
  }
  case NN_KEY_STRING:
  case NN_KEY_ENUM: return parse_str_lit(text, field, k->size);
  case NN_KEY_INT_LIST: {
    int cnt = 0;
    if (parse_int_list_lit(text, (int *)(void *)field, k->size, &cnt) != 0) return -1;
    memcpy(base + k->count_offset, &cnt, sizeof cnt);
    return 0;
  }
  case NN_KEY_STRING_LIST: { /* only the empty list "[]" */
    int cnt = 0;
    if (strcmp(text, "[]") != 0) return -1;
    memcpy(base + k->count_offset, &cnt, sizeof cnt);
    return 0;
  }
  }
  return -1;
}

int nn_keys_apply_defaults(const nn_key *keys, void *obj, nn_error *err) {
  for (const nn_key *k = keys; k && k->name; k++) {
    if (!k->def) continue;
    if (nn_key_set_text(k, obj, k->def) != 0)
      return nn_error_set(err, NN_EINTERNAL, "key '%s': default '%s' does not parse as its type",
                          k->name, k->def);
  }
  return 0;
}

void *nn_layer_key_base(nn_layer_cfg *cfg, const nn_key *k) {
  return (k->flags & NN_KEY_CFG) ? (void *)cfg : (void *)cfg->opts.bytes;
}

int nn_layer_cfg_defaults(nn_layer_cfg *cfg, nn_error *err) {
  const nn_layer_ops *ops = nn_layer_find(cfg->type);
  if (!ops)
    return nn_error_set(err, NN_ENOTFOUND, "unknown layer type '%s'", cfg->type);
  for (const nn_key *k = ops->keys; k && k->name; k++) {
    if (!k->def) continue;
    if (nn_key_set_text(k, nn_layer_key_base(cfg, k), k->def) != 0)
      return nn_error_set(err, NN_EINTERNAL,
                          "layer type '%s': key '%s': default '%s' does not parse as its type",
                          cfg->type, k->name, k->def);
  }
  return 0;
}

/* The key `key` of cfg's type, or NULL. */
static const nn_key *type_key(const nn_layer_cfg *cfg, const char *key) {
  const nn_layer_ops *ops = nn_layer_find(cfg->type);
  for (const nn_key *k = ops ? ops->keys : NULL; k && k->name; k++)
    if (strcmp(k->name, key) == 0) return k;
  return NULL;
}

int nn_layer_cfg_set(nn_layer_cfg *cfg, const char *key, const char *text, nn_error *err) {
  const nn_key *k = type_key(cfg, key);
  if (!k)
    return nn_error_set(err, NN_ENOTFOUND, "layer type '%s' has no key '%s'", cfg->type, key);
  if (nn_key_set_text(k, nn_layer_key_base(cfg, k), text) != 0)
    return nn_error_set(err, NN_ESCHEMA,
                        "layer type '%s': key '%s': '%s' does not parse as its type", cfg->type,
                        key, text);
  return 0;
}

/* The field of key `key` in cfg, and the key, or NULL. */
static const char *key_field(const nn_layer_cfg *cfg, const char *key, const nn_key **kp) {
  const nn_key *k = type_key(cfg, key);
  *kp = k;
  if (!k) return NULL;
  return (const char *)nn_layer_key_base((nn_layer_cfg *)cfg, k) + k->offset;
}

double nn_layer_cfg_num(const nn_layer_cfg *cfg, const char *key) {
  const nn_key *k;
  const char *f = key_field(cfg, key, &k);
  if (!f) return NAN;
  switch (k->type) {
  case NN_KEY_INT: {
    int v;
    memcpy(&v, f, sizeof v);
    return v;
  }
  case NN_KEY_BOOL: {
    int v;
    memcpy(&v, f, sizeof v);
    return (k->flags & NN_KEY_NEGATED) ? !v : v != 0;
  }
  case NN_KEY_INT64: {
    int64_t v;
    memcpy(&v, f, sizeof v);
    return (double)v;
  }
  case NN_KEY_FLOAT: {
    double v;
    memcpy(&v, f, sizeof v);
    return v;
  }
  default: return NAN;
  }
}

const char *nn_layer_cfg_str(const nn_layer_cfg *cfg, const char *key) {
  const nn_key *k;
  const char *f = key_field(cfg, key, &k);
  return f && (k->type == NN_KEY_STRING || k->type == NN_KEY_ENUM) ? f : NULL;
}

int nn_layer_cfg_ints(const nn_layer_cfg *cfg, const char *key, int *out, int max) {
  const nn_key *k;
  const char *f = key_field(cfg, key, &k);
  if (!f || k->type != NN_KEY_INT_LIST) return -1;
  int cnt;
  memcpy(&cnt, (const char *)nn_layer_key_base((nn_layer_cfg *)cfg, k) + k->count_offset,
         sizeof cnt);
  for (int i = 0; i < cnt && i < max; i++) memcpy(&out[i], f + i * sizeof(int), sizeof(int));
  return cnt;
}
