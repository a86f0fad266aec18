/* job_keys.c: generic operations on nn_key tables for the job parser, the
 * JobSpec codec and the reference writer: type and range checks, text
 * encoding of a field, comparison, defaults, "did you mean" suggestions.
 * Every function reads a key's place in its struct from the table, so no code
 * here names a particular key. */
#include "coordinator/job_keys.h"
#include "core/mem.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml/toml.h"

const nn_key nn__layer_common_keys[] = {
  {.name = "type", .type = NN_KEY_STRING, .offset = offsetof(nn_layer_cfg, type),
   .size = sizeof(((nn_layer_cfg *)0)->type), .flags = NN_KEY_REQUIRED,
   .help = "Layer type: one of the layer types listed below."},
  {.name = "name", .type = NN_KEY_STRING, .offset = offsetof(nn_layer_cfg, name),
   .size = sizeof(((nn_layer_cfg *)0)->name), .def = "\"\"",
   .help = "Unique layer name; parameters are saved as <name>/<param>. "
           "Default: <type><index>, e.g. dense0 (the model's convention)."},
  {.name = "l1", .type = NN_KEY_FLOAT, .offset = offsetof(nn_layer_cfg, l1), .size = sizeof(double),
   .min = 0, .max = 1e6, .def = "0",
   .help = "L1 penalty on this layer's weights: adds l1 * sum|w| to the loss (not biases)."},
  {.name = "l2", .type = NN_KEY_FLOAT, .offset = offsetof(nn_layer_cfg, l2), .size = sizeof(double),
   .min = 0, .max = 1e6, .def = "0",
   .help = "L2 penalty on this layer's weights: adds l2 * sum w^2 to the loss (not biases)."},
  {.name = "activity_l1", .type = NN_KEY_FLOAT, .offset = offsetof(nn_layer_cfg, activity_l1),
   .size = sizeof(double), .min = 0, .max = 1e6, .def = "0",
   .help = "L1 penalty on this layer's output: adds activity_l1 * mean over the batch of "
           "sum|y| to the loss."},
  {.name = "activity_l2", .type = NN_KEY_FLOAT, .offset = offsetof(nn_layer_cfg, activity_l2),
   .size = sizeof(double), .min = 0, .max = 1e6, .def = "0",
   .help = "L2 penalty on this layer's output: adds activity_l2 * mean over the batch of "
           "sum y^2 to the loss."},
  {.name = "trainable", .type = NN_KEY_BOOL, .offset = offsetof(nn_layer_cfg, frozen),
   .size = sizeof(int), .def = "true", .flags = NN_KEY_NEGATED,
   .help = "false: freeze the layer (on a residual block: the whole block): its parameters get "
           "no gradient, no optimizer state and no all-reduce traffic, and keep their values "
           "(see docs/finetuning.md)."},
  {.name = "inputs", .type = NN_KEY_STRING_LIST, .offset = offsetof(nn_layer_cfg, inputs),
   .size = NN_MAX_INPUTS, .def = "[]", .count_offset = offsetof(nn_layer_cfg, ninputs),
   .help = "Names of the layers whose outputs this layer reads (\"input\": the model's "
           "input); layers above this one only. Default []: the previous layer. Merge layers "
           "(add, concat, multiply) read two or more; several layers may read one. See "
           "docs/layers.md."},
  {0},
};

static const nn_key nn__no_keys[] = {{0}};

const nn_key *nn__layer_keys(const nn_layer_ops *ops) {
  return ops && ops->keys ? ops->keys : nn__no_keys;
}

int nn__layer_all_keys(const nn_layer_ops *ops, nn_key *out, size_t cap) {
  const nn_key *own = nn__layer_keys(ops);
  size_t n = 0;
  for (size_t k = 0; nn__layer_common_keys[k].name; k++) {
    if (n + 1 >= cap) return -1;
    out[n++] = nn__layer_common_keys[k];
  }
  for (size_t k = 0; own[k].name; k++) {
    if (n + 1 >= cap) return -1;
    out[n] = own[k];
    if (!(own[k].flags & NN_KEY_CFG)) { /* into the type's options: make it cfg-relative */
      out[n].offset += offsetof(nn_layer_cfg, opts);
      if (own[k].type == NN_KEY_INT_LIST || own[k].type == NN_KEY_STRING_LIST)
        out[n].count_offset += offsetof(nn_layer_cfg, opts);
    }
    n++;
  }
  memset(&out[n], 0, sizeof out[n]);
  return (int)n;
}

size_t nn__keys_count(const nn_key *keys) {
  size_t n = 0;
  while (keys && keys[n].name) n++;
  return n;
}

const nn_key *nn__keys_find(const nn_key *keys, const char *name) {
  for (size_t i = 0; keys && keys[i].name; i++)
    if (!strcmp(keys[i].name, name)) return &keys[i];
  return NULL;
}

const char *nn__key_type_name(const nn_key *k) {
  switch (k->type) {
  case NN_KEY_INT:
  case NN_KEY_INT64: return "integer";
  case NN_KEY_FLOAT: return "float";
  case NN_KEY_BOOL: return "boolean";
  case NN_KEY_STRING:
  case NN_KEY_ENUM: return "string";
  case NN_KEY_INT_LIST: return "array of integers";
  case NN_KEY_STRING_LIST: return "array of strings";
  }
  return "value";
}

const char *nn__key_type_article(const nn_key *k) {
  switch (k->type) {
  case NN_KEY_INT:
  case NN_KEY_INT64: return "an integer";
  case NN_KEY_FLOAT: return "a float";
  case NN_KEY_BOOL: return "a boolean";
  case NN_KEY_STRING:
  case NN_KEY_ENUM: return "a string";
  case NN_KEY_INT_LIST: return "an array of integers";
  case NN_KEY_STRING_LIST: return "an array of strings";
  }
  return "a value";
}

static int has_range(const nn_key *k) { return !(k->min == 0 && k->max == 0); }

static void fmt_bound(char *buf, size_t n, double v) {
  if (isinf(v))
    snprintf(buf, n, "%sinf", v < 0 ? "-" : "");
  else if (v == floor(v) && fabs(v) < 1e17)
    snprintf(buf, n, "%.0f", v); /* whole numbers in full: 9007199254740992 */
  else
    snprintf(buf, n, "%.15g", v);
}

char *nn__key_range_str(const nn_key *k, char *buf, size_t n) {
  buf[0] = '\0';
  if (!has_range(k) || k->type == NN_KEY_BOOL || k->type == NN_KEY_STRING ||
      k->type == NN_KEY_ENUM)
    return buf;
  char lo[40], hi[40];
  fmt_bound(lo, sizeof lo, k->min);
  fmt_bound(hi, sizeof hi, k->max);
  snprintf(buf, n, "%c%s, %s%c", (k->flags & NN_KEY_MIN_EXCLUSIVE) ? '(' : '[', lo, hi,
           isinf(k->max) ? ')' : ']');
  return buf;
}

/* Bounds of the C type behind an integer key. */
static void int_limits(const nn_key *k, long long *lo, long long *hi) {
  if (k->type == NN_KEY_INT64) {
    *lo = INT64_MIN;
    *hi = INT64_MAX;
  } else {
    *lo = INT_MIN;
    *hi = INT_MAX;
  }
}

int nn__key_check_int(const nn_key *k, long long v, char *msg, size_t n) {
  long long lo, hi;
  int_limits(k, &lo, &hi);
  int bad = v < lo || v > hi;
  if (!bad && has_range(k)) {
    double d = (double)v;
    bad = d < k->min || d > k->max || ((k->flags & NN_KEY_MIN_EXCLUSIVE) && d == k->min);
  }
  if (!bad) return 0;
  char range[96];
  nn__key_range_str(k, range, sizeof range);
  if (!range[0]) snprintf(range, sizeof range, "[%lld, %lld]", lo, hi);
  snprintf(msg, n, "%lld is out of range %s", v, range);
  return -1;
}

int nn__key_check_float(const nn_key *k, double v, char *msg, size_t n) {
  int bad = isnan(v);
  if (!bad && has_range(k))
    bad = v < k->min || v > k->max || ((k->flags & NN_KEY_MIN_EXCLUSIVE) && v == k->min);
  if (!bad) return 0;
  char range[96];
  nn__key_range_str(k, range, sizeof range);
  if (isnan(v))
    snprintf(msg, n, "nan is not allowed%s%s", range[0] ? "; range " : "", range);
  else
    snprintf(msg, n, "%.15g is out of range %s", v, range);
  return -1;
}

/* The "unknown value" message for s, which is not one of k's choices: the
 * nearest choice as a suggestion, and the list. Writes msg[n] (caller's). */
static void unknown_choice(const nn_key *k, const char *s, char *msg, size_t n) {
  const char *cands[64] = {0};
  char names[64][48];
  size_t nc = 0;
  for (; nc < 64 && nn_choice_at(k->choices, (int)nc, names[nc], sizeof names[nc]) >= 0; nc++)
    cands[nc] = names[nc];
  const char *best = nn__suggest(s, cands, nc);
  char list[512];
  size_t o = 0;
  list[0] = '\0';
  for (size_t i = 0; i < nc && o < sizeof list; i++)
    o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", cands[i]);
  if (best)
    snprintf(msg, n, "unknown value \"%s\"; did you mean \"%s\"? (one of: %s)", s, best, list);
  else
    snprintf(msg, n, "unknown value \"%s\" (expected one of: %s)", s, list);
}

int nn__key_check_string(const nn_key *k, const char *s, char *msg, size_t n) {
  size_t len = strlen(s);
  if (len >= k->size) {
    snprintf(msg, n, "\"%.40s%s\" is too long (at most %zu bytes)", s, len > 40 ? "..." : "",
             k->size - 1);
    return -1;
  }
  if (k->type != NN_KEY_ENUM || !k->choices) return 0;
  if (nn_choice_index(k->choices, s) >= 0) return 0;
  /* The empty string is accepted when it is the default ("none"). */
  if (!s[0] && k->def && !strcmp(k->def, "\"\"")) return 0;
  unknown_choice(k, s, msg, n);
  return -1;
}

static void *field(void *base, size_t off) { return (char *)base + off; }
static const void *cfield(const void *base, size_t off) { return (const char *)base + off; }

void nn__key_format(const nn_key *k, const void *base, char *buf, size_t n) {
  const void *f = cfield(base, k->offset);
  switch (k->type) {
  case NN_KEY_INT: snprintf(buf, n, "%d", *(const int *)f); break;
  case NN_KEY_INT64: snprintf(buf, n, "%lld", (long long)*(const int64_t *)f); break;
  case NN_KEY_FLOAT: snprintf(buf, n, "%.17g", *(const double *)f); break;
  case NN_KEY_BOOL:
    snprintf(buf, n, "%s", (!*(const int *)f) != !(k->flags & NN_KEY_NEGATED) ? "true" : "false");
    break;
  case NN_KEY_STRING:
  case NN_KEY_ENUM: snprintf(buf, n, "%s", (const char *)f); break;
  case NN_KEY_INT_LIST: {
    int count = *(const int *)cfield(base, k->count_offset);
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && o < n; i++)
      o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? "," : "", ((const int *)f)[i]);
    break;
  }
  case NN_KEY_STRING_LIST: {
    int count = *(const int *)cfield(base, k->count_offset);
    const char(*items)[NN_KEY_ITEM_MAX] = f;
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && o < n; i++)
      o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "," : "", items[i]);
    break;
  }
  }
}

static int parse_ll(const char *s, long long *v) {
  char *end;
  errno = 0;
  *v = strtoll(s, &end, 10);
  return (errno || end == s || *end) ? -1 : 0;
}

/* Text of an NN_KEY_INT / NN_KEY_INT64 value ("12") into field f, checked
 * against k's range. 0, or -1 with the message in msg[n]. */
static int parse_int_text(const nn_key *k, void *f, const char *text, char *msg, size_t n) {
  long long v;
  if (parse_ll(text, &v)) {
    snprintf(msg, n, "expected an integer, got \"%.40s\"", text);
    return -1;
  }
  if (nn__key_check_int(k, v, msg, n)) return -1;
  if (k->type == NN_KEY_INT)
    *(int *)f = (int)v;
  else
    *(int64_t *)f = (int64_t)v;
  return 0;
}

/* Text of an NN_KEY_FLOAT value ("%.17g") into the double f, checked
 * against k's range. 0, or -1 with the message in msg[n]. */
static int parse_float_text(const nn_key *k, double *f, const char *text, char *msg,
                            size_t n) {
  char *end;
  double d = strtod(text, &end);
  if (end == text || *end) {
    snprintf(msg, n, "expected a float, got \"%.40s\"", text);
    return -1;
  }
  if (nn__key_check_float(k, d, msg, n)) return -1;
  *f = d;
  return 0;
}

/* Text of an NN_KEY_INT_LIST ("1,2,3") into the int[k->size] field of base
 * and its count, each item checked against k's range. 0, or -1 with the
 * message in msg[n] (the field may then hold some of the items). */
static int parse_int_list_text(const nn_key *k, void *base, const char *text, char *msg,
                               size_t n) {
  int *items = field(base, k->offset);
  int count = 0;
  const char *p = text;
  while (*p) {
    char item[32];
    long long v;
    const char *comma = strchr(p, ',');
    size_t w = comma ? (size_t)(comma - p) : strlen(p);
    if (w == 0 || w >= sizeof item || (size_t)count >= k->size) {
      snprintf(msg, n, "bad integer list \"%.40s\" (at most %zu items)", text, k->size);
      return -1;
    }
    memcpy(item, p, w);
    item[w] = '\0';
    if (parse_ll(item, &v)) {
      snprintf(msg, n, "bad integer list \"%.40s\"", text);
      return -1;
    }
    nn_key one = *k;
    one.type = NN_KEY_INT;
    if (nn__key_check_int(&one, v, msg, n)) return -1;
    items[count++] = (int)v;
    p = comma ? comma + 1 : p + w;
  }
  *(int *)field(base, k->count_offset) = count;
  return 0;
}

/* Text of an NN_KEY_STRING_LIST ("a,b,c"; items hold no commas) into the
 * char[k->size][NN_KEY_ITEM_MAX] field of base and its count. 0, or -1 with
 * the message in msg[n]. */
static int parse_string_list_text(const nn_key *k, void *base, const char *text, char *msg,
                                  size_t n) {
  char(*items)[NN_KEY_ITEM_MAX] = field(base, k->offset);
  int count = 0;
  for (const char *p = text; *p;) {
    const char *comma = strchr(p, ',');
    size_t w = comma ? (size_t)(comma - p) : strlen(p);
    if (w == 0 || w >= NN_KEY_ITEM_MAX || (size_t)count >= k->size) {
      snprintf(msg, n, "bad string list \"%.40s\" (at most %zu items of %d bytes)", text,
               k->size, NN_KEY_ITEM_MAX - 1);
      return -1;
    }
    memset(items[count], 0, NN_KEY_ITEM_MAX);
    memcpy(items[count++], p, w);
    p = comma ? comma + 1 : p + w;
  }
  *(int *)field(base, k->count_offset) = count;
  return 0;
}

int nn__key_parse_text(const nn_key *k, void *base, const char *text, char *msg, size_t n) {
  void *f = field(base, k->offset);
  switch (k->type) {
  case NN_KEY_INT:
  case NN_KEY_INT64: return parse_int_text(k, f, text, msg, n);
  case NN_KEY_FLOAT: return parse_float_text(k, f, text, msg, n);
  case NN_KEY_BOOL:
    if (strcmp(text, "true") && strcmp(text, "false")) {
      snprintf(msg, n, "expected true or false, got \"%.40s\"", text);
      return -1;
    }
    *(int *)f = !strcmp(text, "true") != !!(k->flags & NN_KEY_NEGATED);
    return 0;
  case NN_KEY_STRING:
  case NN_KEY_ENUM:
    if (nn__key_check_string(k, text, msg, n)) return -1;
    memset(f, 0, k->size);
    memcpy(f, text, strlen(text));
    return 0;
  case NN_KEY_INT_LIST: return parse_int_list_text(k, base, text, msg, n);
  case NN_KEY_STRING_LIST: return parse_string_list_text(k, base, text, msg, n);
  }
  snprintf(msg, n, "unsupported key type %d", (int)k->type);
  return -1;
}

int nn__key_equal(const nn_key *k, const void *a, const void *b) {
  const void *fa = cfield(a, k->offset), *fb = cfield(b, k->offset);
  switch (k->type) {
  case NN_KEY_INT:
  case NN_KEY_BOOL: return *(const int *)fa == *(const int *)fb;
  case NN_KEY_INT64: return *(const int64_t *)fa == *(const int64_t *)fb;
  case NN_KEY_FLOAT: return !memcmp(fa, fb, sizeof(double));
  case NN_KEY_STRING:
  case NN_KEY_ENUM: return !strncmp(fa, fb, k->size);
  case NN_KEY_INT_LIST: {
    int ca = *(const int *)cfield(a, k->count_offset);
    int cb = *(const int *)cfield(b, k->count_offset);
    return ca == cb && !memcmp(fa, fb, (size_t)ca * sizeof(int));
  }
  case NN_KEY_STRING_LIST: {
    int ca = *(const int *)cfield(a, k->count_offset);
    int cb = *(const int *)cfield(b, k->count_offset);
    const char(*ia)[NN_KEY_ITEM_MAX] = fa, (*ib)[NN_KEY_ITEM_MAX] = fb;
    if (ca != cb) return 0;
    for (int i = 0; i < ca; i++)
      if (strncmp(ia[i], ib[i], NN_KEY_ITEM_MAX)) return 0;
    return 1;
  }
  }
  return 0;
}

int nn_edit_distance(const char *a, const char *b) {
  /* Optimal string alignment distance: insertions, deletions, substitutions
   * and transpositions of neighbours each cost 1 ("bacth" -> "batch" is 1).
   * Three rows of the DP table; names are short, longer input is cut at 63. */
  enum { M = 64 };
  size_t la = strlen(a), lb = strlen(b);
  if (la > M - 1) la = M - 1;
  if (lb > M - 1) lb = M - 1;
  int r0[M], r1[M], r2[M];
  int *pp = r0, *p = r1, *c = r2;
  for (size_t j = 0; j <= lb; j++) p[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    c[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int cost = a[i - 1] != b[j - 1];
      int d = p[j] + 1;
      if (c[j - 1] + 1 < d) d = c[j - 1] + 1;
      if (p[j - 1] + cost < d) d = p[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < d)
        d = pp[j - 2] + 1;
      c[j] = d;
    }
    int *t = pp;
    pp = p;
    p = c;
    c = t;
  }
  return p[lb];
}

const char *nn__suggest(const char *name, const char *const *cands, size_t ncands) {
  const char *best = NULL;
  int bestd = INT_MAX;
  for (size_t i = 0; i < ncands; i++) {
    int d = nn_edit_distance(name, cands[i]);
    if (d < bestd) {
      bestd = d;
      best = cands[i];
    }
  }
  if (!best) return NULL;
  /* Close enough to be a typo: at most a third of the longer name, at least 1
   * edit allowed, and never the whole name. */
  size_t la = strlen(name), lb = strlen(best);
  size_t longer = la > lb ? la : lb;
  int limit = (int)(longer / 3);
  if (limit < 1) limit = 1;
  if (limit > 3) limit = 3;
  if (bestd > limit || (size_t)bestd >= la) return NULL;
  return best;
}

int nn__toml_parse_value(const char *text, nn_toml_value **doc, const nn_toml_value **val,
                         nn_error *err) {
  *doc = NULL;
  *val = NULL;
  if (strchr(text, '\n') || strchr(text, '\r'))
    return nn_error_set(err, NN_ESYNTAX, "a value must be on one line");
  size_t len = strlen(text);
  char *src = nn_malloc(len + 8);
  if (!src) return nn_error_set(err, NN_ENOMEM, "out of memory");
  memcpy(src, "v = ", 4);
  memcpy(src + 4, text, len);
  memcpy(src + 4 + len, "\n", 2);
  nn_toml_value *d = NULL;
  int rc = nn_toml_parse(src, len + 5, "<value>", &d, err);
  free(src);
  if (rc) return rc;
  if (d->type != NN_TOML_TABLE || d->u.tab.n != 1 || !nn_toml_get(d, "v")) {
    nn_toml_free(d);
    return nn_error_set(err, NN_ESYNTAX, "not a single value");
  }
  *doc = d;
  *val = nn_toml_get(d, "v");
  return 0;
}

/* nn__key_set_toml for an NN_KEY_INT_LIST key k whose value v is an array:
 * checks the length and every item, writing items into k's field of `base`
 * as it goes and the count last. On a bad item, msg (n bytes, the caller's)
 * says which and *line / *col point at it; earlier items stay written. */
static int int_list_from_toml(const nn_key *k, void *base, const nn_toml_value *v, char *msg,
                              size_t n, int *line, int *col) {
  if (v->u.arr.n > k->size) {
    snprintf(msg, n, "expected at most %zu items, got %zu", k->size, v->u.arr.n);
    return -1;
  }
  nn_key one = *k;
  one.type = NN_KEY_INT;
  int *items = field(base, k->offset);
  for (size_t i = 0; i < v->u.arr.n; i++) {
    const nn_toml_value *it = v->u.arr.items[i];
    *line = it->line;
    *col = it->col;
    if (it->type != NN_TOML_INTEGER) {
      snprintf(msg, n, "item %zu: expected an integer, got %s", i,
               nn_toml_type_name(it->type));
      return -1;
    }
    char sub[200];
    if (nn__key_check_int(&one, (long long)it->u.i, sub, sizeof sub)) {
      snprintf(msg, n, "item %zu: %s", i, sub);
      return -1;
    }
    items[i] = (int)it->u.i;
  }
  *(int *)field(base, k->count_offset) = (int)v->u.arr.n;
  return 0;
}

/* The same for an NN_KEY_STRING_LIST key: every item must be a name (a
 * non-empty string shorter than NN_KEY_ITEM_MAX, no commas or NULs), copied
 * zero-padded into its slot of k's field of `base`. */
static int string_list_from_toml(const nn_key *k, void *base, const nn_toml_value *v,
                                 char *msg, size_t n, int *line, int *col) {
  if (v->u.arr.n > k->size) {
    snprintf(msg, n, "expected at most %zu items, got %zu", k->size, v->u.arr.n);
    return -1;
  }
  char(*items)[NN_KEY_ITEM_MAX] = field(base, k->offset);
  for (size_t i = 0; i < v->u.arr.n; i++) {
    const nn_toml_value *it = v->u.arr.items[i];
    *line = it->line;
    *col = it->col;
    if (it->type != NN_TOML_STRING) {
      snprintf(msg, n, "item %zu: expected a string, got %s", i, nn_toml_type_name(it->type));
      return -1;
    }
    if (strlen(it->u.s.ptr) != it->u.s.len || !it->u.s.len || it->u.s.len >= NN_KEY_ITEM_MAX ||
        strchr(it->u.s.ptr, ',')) {
      snprintf(msg, n, "item %zu: \"%.40s\" is not a name (1 to %d bytes, no commas or NULs)",
               i, it->u.s.ptr, NN_KEY_ITEM_MAX - 1);
      return -1;
    }
    memset(items[i], 0, NN_KEY_ITEM_MAX);
    memcpy(items[i], it->u.s.ptr, it->u.s.len);
  }
  *(int *)field(base, k->count_offset) = (int)v->u.arr.n;
  return 0;
}

int nn__key_set_toml(const nn_key *k, void *base, const nn_toml_value *v, char *msg,
                     size_t n, int *line, int *col) {
  void *f = field(base, k->offset);
  *line = v->line;
  *col = v->col;
  switch (k->type) {
  case NN_KEY_INT:
  case NN_KEY_INT64:
    if (v->type != NN_TOML_INTEGER) break;
    if (nn__key_check_int(k, (long long)v->u.i, msg, n)) return -1;
    if (k->type == NN_KEY_INT)
      *(int *)f = (int)v->u.i;
    else
      *(int64_t *)f = v->u.i;
    return 0;
  case NN_KEY_FLOAT: {
    double d;
    if (v->type == NN_TOML_FLOAT)
      d = v->u.f;
    else if (v->type == NN_TOML_INTEGER)
      d = (double)v->u.i;
    else
      break;
    if (nn__key_check_float(k, d, msg, n)) return -1;
    *(double *)f = d;
    return 0;
  }
  case NN_KEY_BOOL:
    if (v->type != NN_TOML_BOOL) break;
    *(int *)f = !v->u.b != !(k->flags & NN_KEY_NEGATED);
    return 0;
  case NN_KEY_STRING:
  case NN_KEY_ENUM:
    if (v->type != NN_TOML_STRING) break;
    if (strlen(v->u.s.ptr) != v->u.s.len) {
      snprintf(msg, n, "the string contains a NUL character");
      return -1;
    }
    if (nn__key_check_string(k, v->u.s.ptr, msg, n)) return -1;
    memset(f, 0, k->size);
    memcpy(f, v->u.s.ptr, v->u.s.len);
    return 0;
  case NN_KEY_INT_LIST:
    if (v->type != NN_TOML_ARRAY) break;
    return int_list_from_toml(k, base, v, msg, n, line, col);
  case NN_KEY_STRING_LIST:
    if (v->type != NN_TOML_ARRAY) break;
    return string_list_from_toml(k, base, v, msg, n, line, col);
  }
  snprintf(msg, n, "expected %s, got %s", nn__key_type_article(k), nn_toml_type_name(v->type));
  return -1;
}

int nn__key_set_toml_text(const nn_key *k, void *base, const char *text, char *msg,
                          size_t n, int *line, int *col) {
  nn_toml_value *doc;
  const nn_toml_value *val;
  nn_error e;
  nn_error_clear(&e);
  *line = *col = 0;
  if (nn__toml_parse_value(text, &doc, &val, &e)) {
    if (n > 0) { /* the parser's message, cut to fit */
      size_t len = strnlen(e.msg, n - 1);
      memcpy(msg, e.msg, len);
      msg[len] = '\0';
    }
    return e.code == NN_ENOMEM ? NN_ENOMEM : -1;
  }
  int rc = nn__key_set_toml(k, base, val, msg, n, line, col);
  nn_toml_free(doc);
  return rc;
}

int nn__keys_defaults(const nn_key *keys, void *base, const char *what, nn_error *err) {
  for (size_t i = 0; keys && keys[i].name; i++) {
    const nn_key *k = &keys[i];
    if (!k->def) continue;
    char msg[384];
    int line = 0, col = 0;
    int rc = nn__key_set_toml_text(k, base, k->def, msg, sizeof msg, &line, &col);
    if (rc == NN_ENOMEM) return nn_error_set(err, NN_ENOMEM, "out of memory");
    if (rc)
      return nn_error_set(err, NN_EINTERNAL, "default of %s.%s (%s) is invalid: %s", what,
                          k->name, k->def, msg);
  }
  return 0;
}

int nn__job_check_layers(const nn_job *job, int *which, char *msg, size_t n) {
  for (int i = 0; i < job->model.nlayers; i++) {
    const char *name = job->model.layers[i].name;
    if (!name[0]) {
      *which = i;
      snprintf(msg, n, "model.layers[%d].name: the name is empty", i);
      return -1;
    }
    for (int j = 0; j < i; j++)
      if (!strcmp(job->model.layers[j].name, name)) {
        *which = i;
        snprintf(msg, n, "model.layers[%d].name: \"%s\" is already the name of model.layers[%d]",
                 i, name, j);
        return -1;
      }
  }
  return 0;
}
