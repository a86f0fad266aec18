/* toml.c: the TOML 1.0.0 parser behind toml.h.
 *
 * A hand-written recursive-descent parser over an in-memory buffer that need
 * not be NUL-terminated. It first checks the raw bytes (valid UTF-8, no NUL,
 * no bare CR), then parses line by line into a tree of nn_toml_value nodes.
 * It is not a streaming parser and not a writer.
 *
 * Table rules (the subtle part of TOML) are enforced with per-node flags:
 *   F_DEFINED   a table named by a [header] (may not be named again)
 *   F_IMPLICIT  a table created only as a prefix of a [header] (a later
 *               [header] or dotted key may define it, turning it into
 *               F_DEFINED or F_DOTTED)
 *   F_DOTTED    a table created by a dotted key (dotted keys in the same
 *               block may enter it, [headers] may add sub-tables below it,
 *               but may not name it)
 *   F_INLINE    an inline table or static array: closed once parsed
 *   F_AOT       an array created by [[header]] (only these take [[...]])
 * Every node also records its nesting depth (bits above NN__DEPTH_SHIFT of
 * flags); creating a node deeper than NN__TOML_MAX_DEPTH is an error, which
 * bounds the recursion of the parser, of nn_toml_free and of any reader. */
#include "toml/toml.h"
#include "core/mem.h"

#include "core/hash.h"
#include "core/strbuf.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN__TOML_MAX_DEPTH 128
#define NN__DEPTH_SHIFT 8

enum {
  F_INLINE = 1u,
  F_DEFINED = 2u,
  F_DOTTED = 4u,
  F_IMPLICIT = 8u,
  F_AOT = 16u,
};

typedef struct tpos {
  int line, col; /* 1-based */
} tpos;

/* Parser state. s[0..n) is the document (not owned). i is the read offset,
 * line the 1-based line of s[i] and bol the offset where that line starts.
 * The column cache remembers the column of byte cc_at on line cc_line so
 * that repeated position queries on a long line stay linear. */
typedef struct parser {
  const char *s;
  size_t n, i;
  int line;
  size_t bol;
  int cc_line;
  size_t cc_at;
  int cc_col;
  const char *file;
  nn_error *err;
} parser;

/* A growable byte buffer (core/strbuf.h); p is owned by whoever holds it. */
typedef nn_strbuf sbuf;

/* One part of a dotted key: s is owned (NUL-terminated, but it may also
 * hold U+0000: len is its length in bytes), at is where it starts. */
typedef struct keypart {
  char *s;
  size_t len;
  tpos at;
} keypart;

typedef struct keypath {
  keypart *v; /* owned array of n parts */
  size_t n, cap;
} keypath;

/* ---- positions and errors ------------------------------------------------ */

static int peekc(const parser *p, size_t k) {
  size_t j = p->i + k;
  return j < p->n ? (unsigned char)p->s[j] : -1;
}

/* Column (in characters) of byte offset off, which lies on the current line. */
static int col_at(parser *p, size_t off) {
  size_t from = p->bol;
  int col = 1;
  if (p->cc_line == p->line && p->cc_at >= p->bol && p->cc_at <= off) {
    from = p->cc_at;
    col = p->cc_col;
  }
  for (size_t j = from; j < off && j < p->n; j++)
    if (((unsigned char)p->s[j] & 0xC0) != 0x80) col++;
  p->cc_line = p->line;
  p->cc_at = off;
  p->cc_col = col;
  return col;
}

static tpos here(parser *p) {
  tpos t = {p->line, col_at(p, p->i)};
  return t;
}

static int fail_at(parser *p, tpos at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(parser *p, tpos at, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return nn_error_at(p->err, NN_ESYNTAX, p->file, at.line, at.col, "%s", msg);
}
#define fail(p, ...) fail_at((p), here(p), __VA_ARGS__)

static int nomem(parser *p) {
  return nn_error_set(p->err, NN_ENOMEM, "out of memory while parsing %s", p->file);
}

/* Describe the character at the read position for "found ..." messages.
 * Returns a static string or buf (cap >= 16). */
static const char *found(const parser *p, char *buf, size_t cap) {
  int c = peekc(p, 0);
  if (c < 0) return "end of file";
  if (c == '\n' || c == '\r') return "end of line";
  if (c >= 0x20 && c < 0x7f) {
    snprintf(buf, cap, "'%c'", c);
    return buf;
  }
  if (c < 0x80) {
    snprintf(buf, cap, "U+%04X", c);
    return buf;
  }
  /* Bytes were validated as UTF-8 before parsing. */
  unsigned cp = 0;
  int k = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
  cp = (unsigned)c & (0x3Fu >> k);
  for (int j = 1; j <= k; j++) cp = (cp << 6) | ((unsigned)peekc(p, (size_t)j) & 0x3F);
  snprintf(buf, cap, "U+%04X", cp);
  return buf;
}
#define FOUND(p) found((p), fbuf_, sizeof fbuf_)

/* Copy key s (len bytes, may hold U+0000) into buf for a message: control
 * characters become \uXXXX escapes (as a TOML basic string writes them),
 * long keys are cut with "...". Returns buf. */
static const char *show_n(const char *s, size_t len, char *buf, size_t cap) {
  size_t k = 0, full = 0;
  if (!cap) return buf;
  for (size_t i = 0; s && i < len; i++)
    full += ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f) ? 6 : 1;
  /* Each character is written only if it fits with the NUL and, unless it
   * is the last, with a "..." after it: so "..." fits when the next one does
   * not, except in a buffer under 4 bytes (found by fuzz_toml: the escapes
   * overran the buffer). */
  for (size_t i = 0; s && i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    size_t w = (c < 0x20 || c == 0x7f) ? 6 : 1;
    int last = i + 1 == len;
    if (full >= cap && (k + w + 1 > cap || (!last && k + w + 4 > cap))) {
      if (k + 4 <= cap) {
        memcpy(buf + k, "...", 3);
        k += 3;
      }
      break;
    }
    if (w == 6)
      k += (size_t)snprintf(buf + k, cap - k, "\\u%04X", c);
    else
      buf[k++] = (char)c;
  }
  buf[k] = '\0';
  return buf;
}

const char *nn_toml_key_show(const nn_toml_kv *kv, char *buf, size_t cap) {
  if (!buf || cap == 0) return buf;
  return show_n(kv->key, kv->key_len, buf, cap);
}

int nn_toml_key_is_cstr(const nn_toml_kv *kv) { return strlen(kv->key) == kv->key_len; }

/* "an integer", "a table", "an array of tables" ... for messages. */
static const char *a_type(const nn_toml_value *v) {
  if (v->type == NN_TOML_ARRAY) return (v->flags & F_AOT) ? "an array of tables" : "an array";
  switch (v->type) {
  case NN_TOML_INTEGER: return "an integer";
  case NN_TOML_DATETIME: return "an offset date-time";
  case NN_TOML_STRING: return "a string";
  case NN_TOML_FLOAT: return "a float";
  case NN_TOML_BOOL: return "a boolean";
  case NN_TOML_DATETIME_LOCAL: return "a local date-time";
  case NN_TOML_DATE_LOCAL: return "a local date";
  case NN_TOML_TIME_LOCAL: return "a local time";
  default: return "a table";
  }
}

/* The place a value was named, for "first defined at" messages. */
static tpos defpos(const nn_toml_value *v) {
  tpos t = {v->key_line ? v->key_line : v->line, v->key_line ? v->key_col : v->col};
  return t;
}

/* ---- byte-level checks --------------------------------------------------- */

/* Reject NUL, invalid UTF-8 (overlongs, surrogates, > U+10FFFF, truncated
 * sequences) and a CR not followed by LF anywhere in the document. */
static int check_bytes(parser *p) {
  const unsigned char *s = (const unsigned char *)p->s;
  size_t n = p->n, i = 0;
  int rc = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      if (c == 0) {
        rc = fail_at(p, (tpos){p->line, col_at(p, i)}, "NUL byte is not allowed in a TOML document");
        break;
      }
      if (c == '\r' && (i + 1 >= n || s[i + 1] != '\n')) {
        rc = fail_at(p, (tpos){p->line, col_at(p, i)},
                     "carriage return must be followed by a line feed");
        break;
      }
      if (c == '\n') {
        p->line++;
        p->bol = i + 1;
      }
      i++;
      continue;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else {
      rc = fail_at(p, (tpos){p->line, col_at(p, i)}, "invalid UTF-8 byte 0x%02X", c);
      break;
    }
    int ok = n - i > need && s[i + 1] >= lo && s[i + 1] <= hi;
    for (size_t k = 2; ok && k <= need; k++) ok = (s[i + k] & 0xC0) == 0x80;
    if (!ok) {
      rc = fail_at(p, (tpos){p->line, col_at(p, i)},
                   "invalid UTF-8 sequence starting with byte 0x%02X", c);
      break;
    }
    i += need + 1;
  }
  p->line = 1;
  p->bol = 0;
  p->cc_line = 0;
  return rc;
}

/* ---- small helpers ------------------------------------------------------- */

static int sb_put(parser *p, sbuf *b, const char *d, size_t k) {
  return nn_strbuf_put(b, d, k, 32) ? nomem(p) : 0;
}

/* Append code point cp (a Unicode scalar value) as UTF-8. */
static int sb_utf8(parser *p, sbuf *b, unsigned long cp) {
  char u[4];
  size_t k;
  if (cp < 0x80) { u[0] = (char)cp; k = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)); k = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); k = 4;
  }
  return sb_put(p, b, u, k);
}

static void skip_ws(parser *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t')) p->i++;
}

/* Consume "\n" or "\r\n" at the read position and start a new line. */
static void eat_nl(parser *p) {
  p->i += p->s[p->i] == '\r' ? 2 : 1;
  p->line++;
  p->bol = p->i;
}

static int is_nl(int c) { return c == '\n' || c == '\r'; }

static int is_ctrl(int c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; }

/* At '#': skip the comment up to (not including) the end of line. */
static int skip_comment(parser *p) {
  while (p->i < p->n && !is_nl((unsigned char)p->s[p->i])) {
    int c = (unsigned char)p->s[p->i];
    if (is_ctrl(c)) return fail(p, "control character U+%04X is not allowed in a comment", c);
    p->i++;
  }
  return 0;
}

/* Skip spaces, tabs, newlines and comments (inside arrays). */
static int skip_ws_nl(parser *p) {
  for (;;) {
    skip_ws(p);
    int c = peekc(p, 0);
    if (c == '#') {
      int rc = skip_comment(p);
      if (rc) return rc;
    } else if (is_nl(c)) {
      eat_nl(p);
    } else {
      return 0;
    }
  }
}

static int match(const parser *p, const char *w) {
  size_t k = strlen(w);
  return p->n - p->i >= k && memcmp(p->s + p->i, w, k) == 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* ---- tree construction --------------------------------------------------- */

static int depth_of(const nn_toml_value *v) { return (int)(v->flags >> NN__DEPTH_SHIFT); }

/* Allocate a node of type t written at `at`, nesting depth `depth`. */
static int mk(parser *p, nn_toml_type t, tpos at, int depth, nn_toml_value **out) {
  *out = NULL;
  if (depth > NN__TOML_MAX_DEPTH)
    return fail_at(p, at, "nesting deeper than %d levels is not supported", NN__TOML_MAX_DEPTH);
  nn_toml_value *v = nn_calloc(1, sizeof *v);
  if (!v) return nomem(p);
  v->type = t;
  v->line = at.line;
  v->col = at.col;
  v->flags = (unsigned)depth << NN__DEPTH_SHIFT;
  *out = v;
  return 0;
}

void nn_toml_free(nn_toml_value *v) {
  if (!v) return;
  if (v->type == NN_TOML_STRING) {
    free(v->u.s.ptr);
  } else if (v->type == NN_TOML_ARRAY) {
    for (size_t k = 0; k < v->u.arr.n; k++) nn_toml_free(v->u.arr.items[k]);
    free(v->u.arr.items);
  } else if (v->type == NN_TOML_TABLE) {
    for (size_t k = 0; k < v->u.tab.n; k++) {
      free(v->u.tab.kv[k].key);
      nn_toml_free(v->u.tab.kv[k].value);
    }
    free(v->u.tab.kv);
    free(v->index);
  }
  free(v);
}

/* Tables with at least this many keys get a hash index, so that building a
 * table of n keys costs O(n) rather than O(n^2) lookups. */
#define NN__INDEX_MIN 16

static size_t key_hash(const char *k, size_t len) {
  return (size_t)nn_fnv1a64(NN_FNV1A64_INIT, k, len);
}

/* Put kv position `pos` of table t into its index (which has a free slot). */
static void index_put(nn_toml_value *t, size_t pos) {
  size_t mask = t->index_cap - 1, h = key_hash(t->u.tab.kv[pos].key, t->u.tab.kv[pos].key_len) & mask;
  while (t->index[h]) h = (h + 1) & mask;
  t->index[h] = pos + 1;
}

/* (Re)build t's index with room for at least twice its keys. */
static int index_build(parser *p, nn_toml_value *t) {
  size_t cap = 64;
  while (cap < 4 * t->u.tab.n) cap *= 2;
  size_t *idx = nn_calloc(cap, sizeof *idx);
  if (!idx) return nomem(p);
  free(t->index);
  t->index = idx;
  t->index_cap = cap;
  for (size_t k = 0; k < t->u.tab.n; k++) index_put(t, k);
  return 0;
}

/* Add key (len bytes) -> v to table t. Takes ownership of key and v only on
 * success. */
static int tab_add(parser *p, nn_toml_value *t, char *key, size_t len, nn_toml_value *v) {
  if (t->u.tab.n + 1 >= NN__INDEX_MIN && 2 * (t->u.tab.n + 1) > t->index_cap) {
    int rc = index_build(p, t);
    if (rc) return rc;
  }
  if (t->u.tab.n == t->u.tab.cap) {
    size_t cap = t->u.tab.cap ? 2 * t->u.tab.cap : 8;
    nn_toml_kv *kv = nn_realloc(t->u.tab.kv, cap * sizeof *kv);
    if (!kv) return nomem(p);
    t->u.tab.kv = kv;
    t->u.tab.cap = cap;
  }
  t->u.tab.kv[t->u.tab.n].key = key;
  t->u.tab.kv[t->u.tab.n].key_len = len;
  t->u.tab.kv[t->u.tab.n].value = v;
  t->u.tab.n++;
  if (t->index) index_put(t, t->u.tab.n - 1);
  return 0;
}

/* Append v to array a. Takes ownership of v only on success. */
static int arr_add(parser *p, nn_toml_value *a, nn_toml_value *v) {
  if (a->u.arr.n == a->u.arr.cap) {
    size_t cap = a->u.arr.cap ? 2 * a->u.arr.cap : 8;
    nn_toml_value **it = nn_realloc(a->u.arr.items, cap * sizeof *it);
    if (!it) return nomem(p);
    a->u.arr.items = it;
    a->u.arr.cap = cap;
  }
  a->u.arr.items[a->u.arr.n++] = v;
  return 0;
}

/* A copy of key part kp (len bytes and a NUL), or NULL. */
static char *dup_key(const keypart *kp) {
  char *k = nn_malloc(kp->len + 1);
  if (k) {
    memcpy(k, kp->s, kp->len);
    k[kp->len] = '\0';
  }
  return k;
}

/* Create an empty table named kp->s inside t with the given flags. */
static int new_subtable(parser *p, nn_toml_value *t, const keypart *kp, tpos at,
                        unsigned flags, nn_toml_value **out) {
  nn_toml_value *v;
  int rc = mk(p, NN_TOML_TABLE, at, depth_of(t) + 1, &v);
  if (rc) return rc;
  v->flags |= flags;
  v->key_line = kp->at.line;
  v->key_col = kp->at.col;
  char *key = dup_key(kp);
  if (!key) {
    nn_toml_free(v);
    return nomem(p);
  }
  rc = tab_add(p, t, key, kp->len, v);
  if (rc) {
    free(key);
    nn_toml_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

nn_toml_value *nn_toml_get_n(const nn_toml_value *table, const char *key, size_t len) {
  if (!table || table->type != NN_TOML_TABLE || !key) return NULL;
  if (table->index) {
    size_t mask = table->index_cap - 1, h = key_hash(key, len) & mask;
    for (; table->index[h]; h = (h + 1) & mask) {
      const nn_toml_kv *kv = &table->u.tab.kv[table->index[h] - 1];
      if (kv->key_len == len && memcmp(kv->key, key, len) == 0) return kv->value;
    }
    return NULL;
  }
  for (size_t k = 0; k < table->u.tab.n; k++) {
    const nn_toml_kv *kv = &table->u.tab.kv[k];
    if (kv->key_len == len && memcmp(kv->key, key, len) == 0) return kv->value;
  }
  return NULL;
}

nn_toml_value *nn_toml_get(const nn_toml_value *table, const char *key) {
  return key ? nn_toml_get_n(table, key, strlen(key)) : NULL;
}

const char *nn_toml_type_name(nn_toml_type t) {
  switch (t) {
  case NN_TOML_STRING: return "string";
  case NN_TOML_INTEGER: return "integer";
  case NN_TOML_FLOAT: return "float";
  case NN_TOML_BOOL: return "boolean";
  case NN_TOML_DATETIME: return "offset date-time";
  case NN_TOML_DATETIME_LOCAL: return "local date-time";
  case NN_TOML_DATE_LOCAL: return "local date";
  case NN_TOML_TIME_LOCAL: return "local time";
  case NN_TOML_ARRAY: return "array";
  case NN_TOML_TABLE: return "table";
  }
  return "unknown";
}

/* ---- strings ------------------------------------------------------------- */

/* At a backslash inside a basic string: append the unescaped text to b.
 * multi enables the line-ending backslash of multi-line basic strings. */
static int parse_escape(parser *p, sbuf *b, int multi) {
  char fbuf_[24];
  tpos at = here(p);
  int e = peekc(p, 1);
  char ch;
  switch (e) {
  case 'b': ch = '\b'; break;
  case 't': ch = '\t'; break;
  case 'n': ch = '\n'; break;
  case 'f': ch = '\f'; break;
  case 'r': ch = '\r'; break;
  case '"': ch = '"'; break;
  case '\\': ch = '\\'; break;
  case 'u':
  case 'U': {
    int nd = e == 'u' ? 4 : 8;
    unsigned long cp = 0;
    for (int k = 0; k < nd; k++) {
      int h = hexval(peekc(p, (size_t)(2 + k)));
      if (h < 0)
        return fail_at(p, at, "expected %d hex digits after '\\%c' in string", nd, e);
      cp = cp * 16 + (unsigned long)h;
    }
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return fail_at(p, at, "escape '\\%c%.*s' is not a Unicode scalar value", e, nd,
                     p->s + p->i + 2);
    p->i += 2 + (size_t)nd;
    return sb_utf8(p, b, cp);
  }
  default:
    if (multi && (e == ' ' || e == '\t' || is_nl(e))) {
      /* Line-ending backslash: only whitespace may follow it on the line. */
      size_t j = p->i + 1;
      while (j < p->n && (p->s[j] == ' ' || p->s[j] == '\t')) j++;
      if (j < p->n && is_nl((unsigned char)p->s[j])) {
        p->i = j;
        for (;;) {
          int c = peekc(p, 0);
          if (c == ' ' || c == '\t') p->i++;
          else if (is_nl(c)) eat_nl(p);
          else break;
        }
        return 0;
      }
      return fail_at(p, at, "a line-ending backslash must be followed only by whitespace");
    }
    if (e > 0x20 && e < 0x7f) return fail_at(p, at, "invalid escape sequence '\\%c' in string", e);
    p->i++;
    return fail_at(p, at, "invalid escape sequence: '\\' followed by %s in string", FOUND(p));
  }
  p->i += 2;
  return sb_put(p, b, &ch, 1);
}

/* At an opening quote: parse a basic, literal, multi-line basic or multi-line
 * literal string into b (NUL-terminated; b->p allocated even when empty).
 * allow_multi is 0 for keys. */
static int parse_string(parser *p, sbuf *b, int allow_multi) {
  tpos start = here(p);
  int q = peekc(p, 0);
  int multi = peekc(p, 1) == q && peekc(p, 2) == q;
  const char *kind = q == '"' ? "basic" : "literal";
  int rc = sb_put(p, b, "", 0);
  if (rc) return rc;
  if (multi) {
    if (!allow_multi) return fail(p, "a multi-line string cannot be used as a key");
    p->i += 3;
    if (is_nl(peekc(p, 0))) eat_nl(p); /* a newline right after the opening is trimmed */
  } else {
    p->i++;
  }
  for (;;) {
    int c = peekc(p, 0);
    if (c < 0)
      return fail_at(p, start, "unterminated %s%s string: expected closing %s",
                     multi ? "multi-line " : "", kind,
                     q == '"' ? (multi ? "\"\"\"" : "'\"'") : (multi ? "'''" : "\"'\""));
    if (c == q) {
      if (!multi) {
        p->i++;
        return 0;
      }
      size_t k = 0;
      while (peekc(p, k) == q) k++;
      if (k >= 3) {
        if (k > 5) {
          p->i += 5;
          return fail(p, "too many quotes at the end of a multi-line string");
        }
        rc = sb_put(p, b, q == '"' ? "\"\"" : "''", k - 3);
        p->i += k;
        return rc;
      }
      rc = sb_put(p, b, q == '"' ? "\"\"" : "''", k);
      if (rc) return rc;
      p->i += k;
      continue;
    }
    if (c == '\\' && q == '"') {
      rc = parse_escape(p, b, multi);
      if (rc) return rc;
      continue;
    }
    if (is_nl(c)) {
      if (!multi)
        return fail(p, "expected closing %s before end of line in string",
                    q == '"' ? "'\"'" : "\"'\"");
      eat_nl(p);
      rc = sb_put(p, b, "\n", 1);
      if (rc) return rc;
      continue;
    }
    if (is_ctrl(c))
      return fail(p, "control character U+%04X is not allowed in a %s string%s", c, kind,
                  q == '"' ? " (escape it)" : "");
    /* A run of ordinary bytes (already validated UTF-8). */
    size_t j = p->i;
    while (j < p->n) {
      int d = (unsigned char)p->s[j];
      if (d == q || (d == '\\' && q == '"') || is_nl(d) || is_ctrl(d)) break;
      j++;
    }
    rc = sb_put(p, b, p->s + p->i, j - p->i);
    if (rc) return rc;
    p->i = j;
  }
}

/* ---- keys ---------------------------------------------------------------- */

static int is_bare(int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-';
}

static void key_free(keypath *k) {
  for (size_t j = 0; j < k->n; j++) free(k->v[j].s);
  free(k->v);
  k->v = NULL;
  k->n = k->cap = 0;
}

/* Parse a (possibly dotted) key into k. Leaves the read position after the
 * last part and any whitespace following it. */
static int parse_key(parser *p, keypath *k) {
  char fbuf_[24];
  for (;;) {
    tpos at = here(p);
    int c = peekc(p, 0);
    char *str = NULL;
    size_t slen = 0;
    if (c == '"' || c == '\'') {
      sbuf b = {0};
      int rc = parse_string(p, &b, 0);
      if (rc) {
        free(b.p);
        return rc;
      }
      str = b.p;
      slen = b.n;
    } else if (is_bare(c)) {
      size_t j = p->i;
      while (j < p->n && is_bare((unsigned char)p->s[j])) j++;
      str = nn_malloc(j - p->i + 1);
      if (!str) return nomem(p);
      memcpy(str, p->s + p->i, j - p->i);
      str[j - p->i] = '\0';
      slen = j - p->i;
      p->i = j;
    } else {
      return fail(p, "expected a key, found %s", FOUND(p));
    }
    if (k->n == k->cap) {
      size_t cap = k->cap ? 2 * k->cap : 4;
      keypart *nv = nn_realloc(k->v, cap * sizeof *nv);
      if (!nv) {
        free(str);
        return nomem(p);
      }
      k->v = nv;
      k->cap = cap;
    }
    k->v[k->n].s = str;
    k->v[k->n].len = slen;
    k->v[k->n].at = at;
    k->n++;
    skip_ws(p);
    if (peekc(p, 0) != '.') return 0;
    p->i++;
    skip_ws(p);
  }
}

/* The dotted path of parts [0, upto] for messages. */
static const char *key_path(const keypath *k, size_t upto, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t j = 0; j <= upto && j < k->n; j++) {
    char part[128];
    show_n(k->v[j].s, k->v[j].len, part, sizeof part);
    int w = snprintf(buf + len, cap - len, "%s%s", j ? "." : "", part);
    if (w < 0 || (size_t)w >= cap - len) break;
    len += (size_t)w;
  }
  return buf;
}

/* ---- scalar values ------------------------------------------------------- */

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int is_base_digit(int c, int base) {
  if (base == 16) return hexval(c) >= 0;
  if (base == 8) return c >= '0' && c <= '7';
  if (base == 2) return c == '0' || c == '1';
  return is_digit(c);
}

/* Append digits of `base` at the read position to buf[*len..cap), dropping
 * underscores, which must each sit between two digits. At least one digit. */
static int scan_digits(parser *p, int base, char *buf, size_t cap, size_t *len,
                       const char *what) {
  char fbuf_[24];
  if (!is_base_digit(peekc(p, 0), base))
    return fail(p, "expected a digit in %s, found %s", what, FOUND(p));
  for (;;) {
    int c = peekc(p, 0);
    if (is_base_digit(c, base)) {
      if (*len + 2 >= cap) return fail(p, "number has too many digits");
      buf[(*len)++] = (char)c;
      p->i++;
    } else if (c == '_') {
      if (!is_base_digit(peekc(p, 1), base))
        return fail(p, "'_' in a number must be between two digits");
      p->i++;
    } else {
      break;
    }
  }
  buf[*len] = '\0';
  return 0;
}

/* Integers (all bases), floats, inf and nan, starting at the read position. */
/* At "0x", "0o" or "0b": an unsigned hexadecimal, octal or binary integer. */
static int parse_radix_int(parser *p, tpos at, int depth, nn_toml_value **out) {
  char buf[1100];
  size_t len = 0;
  int base = peekc(p, 1) == 'x' ? 16 : peekc(p, 1) == 'o' ? 8 : 2;
  p->i += 2;
  int rc = scan_digits(p, base, buf, sizeof buf, &len,
                       base == 16  ? "hexadecimal integer"
                       : base == 8 ? "octal integer"
                                   : "binary integer");
  if (rc) return rc;
  uint64_t acc = 0;
  for (size_t k = 0; k < len; k++) {
    uint64_t d = (uint64_t)hexval((unsigned char)buf[k]);
    if (acc > ((uint64_t)INT64_MAX - d) / (uint64_t)base)
      return fail_at(p, at, "integer does not fit in 64 bits");
    acc = acc * (uint64_t)base + d;
  }
  rc = mk(p, NN_TOML_INTEGER, at, depth, out);
  if (!rc) (*out)->u.i = (int64_t)acc;
  return rc;
}

static int parse_number(parser *p, tpos at, int depth, nn_toml_value **out) {
  char fbuf_[24];
  char buf[1100];
  size_t len = 0;
  int rc;
  int c = peekc(p, 0), sign = 0;
  if (c == '+' || c == '-') {
    sign = c;
    buf[len++] = (char)c;
    p->i++;
    c = peekc(p, 0);
  }
  if (c == 'i' || c == 'n') {
    double f;
    if (match(p, "inf")) f = sign == '-' ? -INFINITY : INFINITY;
    else if (match(p, "nan")) f = sign == '-' ? -NAN : NAN;
    else return fail_at(p, at, "expected a value, found %s", FOUND(p));
    p->i += 3;
    rc = mk(p, NN_TOML_FLOAT, at, depth, out);
    if (!rc) (*out)->u.f = f;
    return rc;
  }
  if (c == '0' && (peekc(p, 1) == 'x' || peekc(p, 1) == 'o' || peekc(p, 1) == 'b')) {
    if (sign)
      return fail_at(p, at, "a sign is not allowed on a hexadecimal, octal or binary integer");
    return parse_radix_int(p, at, depth, out);
  }
  size_t int_start = len;
  rc = scan_digits(p, 10, buf, sizeof buf, &len, "number");
  if (rc) return rc;
  if (buf[int_start] == '0' && len - int_start > 1)
    return fail_at(p, at, "leading zeros are not allowed in a number");
  int is_float = 0;
  if (peekc(p, 0) == '.') {
    is_float = 1;
    buf[len++] = '.';
    p->i++;
    rc = scan_digits(p, 10, buf, sizeof buf, &len, "fraction");
    if (rc) return rc;
  }
  if (peekc(p, 0) == 'e' || peekc(p, 0) == 'E') {
    is_float = 1;
    buf[len++] = 'e';
    p->i++;
    c = peekc(p, 0);
    if (c == '+' || c == '-') {
      buf[len++] = (char)c;
      p->i++;
    }
    rc = scan_digits(p, 10, buf, sizeof buf, &len, "exponent");
    if (rc) return rc;
  }
  if (is_float) {
    char *end = NULL;
    double f = strtod(buf, &end);
    if (end != buf + len)
      return nn_error_at(p->err, NN_EINTERNAL, p->file, at.line, at.col,
                         "cannot convert float '%s'", buf);
    if (isinf(f)) return fail_at(p, at, "float '%s' is out of range", buf);
    rc = mk(p, NN_TOML_FLOAT, at, depth, out);
    if (!rc) (*out)->u.f = f;
    return rc;
  }
  uint64_t limit = sign == '-' ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
  uint64_t acc = 0;
  for (size_t k = int_start; k < len; k++) {
    uint64_t d = (uint64_t)(buf[k] - '0');
    if (acc > (limit - d) / 10u) return fail_at(p, at, "integer does not fit in 64 bits");
    acc = acc * 10u + d;
  }
  rc = mk(p, NN_TOML_INTEGER, at, depth, out);
  if (!rc) {
    if (sign == '-') (*out)->u.i = acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc;
    else (*out)->u.i = (int64_t)acc;
  }
  return rc;
}

/* Exactly n decimal digits into *v. */
static int ndigits(parser *p, int n, int *v, const char *what) {
  char fbuf_[24];
  int x = 0;
  for (int k = 0; k < n; k++) {
    int c = peekc(p, 0);
    if (!is_digit(c)) return fail(p, "expected %d-digit %s, found %s", n, what, FOUND(p));
    x = x * 10 + (c - '0');
    p->i++;
  }
  *v = x;
  return 0;
}

static int expect_char(parser *p, int ch, const char *what) {
  char fbuf_[24];
  if (peekc(p, 0) != ch) return fail(p, "expected '%c' %s, found %s", ch, what, FOUND(p));
  p->i++;
  return 0;
}

/* HH:MM:SS[.frac] into dt; `at` is where the whole value starts. */
static int parse_time(parser *p, tpos at, nn_toml_datetime *dt) {
  int rc;
  if ((rc = ndigits(p, 2, &dt->hour, "hour")) || (rc = expect_char(p, ':', "after hour")) ||
      (rc = ndigits(p, 2, &dt->minute, "minute")) ||
      (rc = expect_char(p, ':', "after minute (seconds are required)")) ||
      (rc = ndigits(p, 2, &dt->second, "second")))
    return rc;
  if (dt->hour > 23) return fail_at(p, at, "hour %02d out of range 00-23", dt->hour);
  if (dt->minute > 59) return fail_at(p, at, "minute %02d out of range 00-59", dt->minute);
  if (dt->second > 60) return fail_at(p, at, "second %02d out of range 00-60", dt->second);
  if (peekc(p, 0) == '.') {
    char fbuf_[24];
    p->i++;
    if (!is_digit(peekc(p, 0)))
      return fail(p, "expected a digit after '.' in time, found %s", FOUND(p));
    while (is_digit(peekc(p, 0))) {
      if (dt->frac_digits < 9) dt->nanosecond = dt->nanosecond * 10 + (peekc(p, 0) - '0');
      if (dt->frac_digits < 1000000) dt->frac_digits++;
      p->i++;
    }
    for (int k = dt->frac_digits; k < 9; k++) dt->nanosecond *= 10;
  }
  return 0;
}

static int days_in_month(int y, int m) {
  static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return d[m - 1];
}

/* Offset date-time, local date-time, local date or local time. */
static int parse_datetime(parser *p, tpos at, int depth, nn_toml_value **out) {
  nn_toml_datetime dt;
  nn_toml_type t;
  int rc;
  memset(&dt, 0, sizeof dt);
  if (peekc(p, 2) == ':') {
    rc = parse_time(p, at, &dt);
    if (rc) return rc;
    t = NN_TOML_TIME_LOCAL;
  } else {
    if ((rc = ndigits(p, 4, &dt.year, "year")) || (rc = expect_char(p, '-', "after year")) ||
        (rc = ndigits(p, 2, &dt.month, "month")) ||
        (rc = expect_char(p, '-', "after month")) || (rc = ndigits(p, 2, &dt.day, "day")))
      return rc;
    if (dt.month < 1 || dt.month > 12)
      return fail_at(p, at, "month %02d out of range 01-12", dt.month);
    if (dt.day < 1 || dt.day > days_in_month(dt.year, dt.month))
      return fail_at(p, at, "day %02d out of range for %04d-%02d (1-%d)", dt.day, dt.year,
                     dt.month, days_in_month(dt.year, dt.month));
    int c = peekc(p, 0), has_time = 0;
    if (c == 'T' || c == 't') has_time = 1;
    else if (c == ' ' && is_digit(peekc(p, 1)) && is_digit(peekc(p, 2)) && peekc(p, 3) == ':')
      has_time = 1;
    if (!has_time) {
      t = NN_TOML_DATE_LOCAL;
    } else {
      p->i++;
      rc = parse_time(p, at, &dt);
      if (rc) return rc;
      c = peekc(p, 0);
      if (c == 'Z' || c == 'z') {
        p->i++;
        dt.has_offset = dt.offset_z = 1;
        t = NN_TOML_DATETIME;
      } else if (c == '+' || c == '-') {
        int oh, om;
        p->i++;
        if ((rc = ndigits(p, 2, &oh, "offset hour")) ||
            (rc = expect_char(p, ':', "in time offset")) ||
            (rc = ndigits(p, 2, &om, "offset minute")))
          return rc;
        if (oh > 23 || om > 59)
          return fail_at(p, at, "time offset %c%02d:%02d out of range", c, oh, om);
        dt.has_offset = 1;
        dt.offset_minutes = (c == '-' ? -1 : 1) * (oh * 60 + om);
        t = NN_TOML_DATETIME;
      } else {
        t = NN_TOML_DATETIME_LOCAL;
      }
    }
  }
  rc = mk(p, t, at, depth, out);
  if (!rc) (*out)->u.dt = dt;
  return rc;
}

/* ---- compound values ----------------------------------------------------- */

static int parse_value(parser *p, int depth, nn_toml_value **out);
static int parse_keyval(parser *p, nn_toml_value *tab);

/* At '[': a static array (closed once parsed). */
static int parse_array(parser *p, tpos at, int depth, nn_toml_value **out) {
  char fbuf_[24];
  nn_toml_value *a = NULL, *item = NULL;
  int rc = mk(p, NN_TOML_ARRAY, at, depth, &a);
  if (rc) return rc;
  p->i++;
  for (;;) {
    if ((rc = skip_ws_nl(p))) goto fail;
    if (peekc(p, 0) == ']') {
      p->i++;
      break;
    }
    if ((rc = parse_value(p, depth + 1, &item))) goto fail;
    if ((rc = arr_add(p, a, item))) goto fail;
    item = NULL;
    if ((rc = skip_ws_nl(p))) goto fail;
    int c = peekc(p, 0);
    if (c == ',') {
      p->i++;
      continue;
    }
    if (c == ']') {
      p->i++;
      break;
    }
    rc = c < 0 ? fail_at(p, at, "unterminated array: expected ']'")
               : fail(p, "expected ',' or ']' in array, found %s", FOUND(p));
    goto fail;
  }
  a->flags |= F_INLINE;
  *out = a;
  return 0;
fail:
  nn_toml_free(item);
  nn_toml_free(a);
  return rc;
}

/* At '{': an inline table on one line, closed once parsed. */
static int parse_inline_table(parser *p, tpos at, int depth, nn_toml_value **out) {
  char fbuf_[24];
  nn_toml_value *t = NULL;
  int rc = mk(p, NN_TOML_TABLE, at, depth, &t);
  if (rc) return rc;
  p->i++;
  skip_ws(p);
  if (peekc(p, 0) == '}') {
    p->i++;
  } else {
    for (;;) {
      if ((rc = parse_keyval(p, t))) goto fail;
      skip_ws(p);
      int c = peekc(p, 0);
      if (c == ',') {
        p->i++;
        skip_ws(p);
        if (peekc(p, 0) == '}') {
          rc = fail(p, "a trailing comma is not allowed in an inline table");
          goto fail;
        }
        continue;
      }
      if (c == '}') {
        p->i++;
        break;
      }
      rc = fail(p, "expected ',' or '}' in inline table, found %s%s", FOUND(p),
                is_nl(c) ? " (an inline table must be on one line)" : "");
      goto fail;
    }
  }
  t->flags |= F_INLINE;
  *out = t;
  return 0;
fail:
  nn_toml_free(t);
  return rc;
}

/* Any value at the read position, nested at `depth`; *out is owned by the caller. */
static int parse_value(parser *p, int depth, nn_toml_value **out) {
  char fbuf_[24];
  tpos at = here(p);
  int c = peekc(p, 0);
  int rc;
  *out = NULL;
  if (c == '"' || c == '\'') {
    sbuf b = {0};
    rc = parse_string(p, &b, 1);
    if (!rc) rc = mk(p, NN_TOML_STRING, at, depth, out);
    if (rc) {
      free(b.p);
      return rc;
    }
    (*out)->u.s.ptr = b.p;
    (*out)->u.s.len = b.n;
    return 0;
  }
  if (c == '[') return parse_array(p, at, depth, out);
  if (c == '{') return parse_inline_table(p, at, depth, out);
  if (c == 't' || c == 'f') {
    int v = c == 't';
    if (!match(p, v ? "true" : "false"))
      return fail(p, "expected a value, found %s (booleans are lowercase true/false)", FOUND(p));
    p->i += v ? 4 : 5;
    rc = mk(p, NN_TOML_BOOL, at, depth, out);
    if (!rc) (*out)->u.b = v;
    return rc;
  }
  if (is_digit(c) && is_digit(peekc(p, 1)) &&
      (peekc(p, 2) == ':' ||
       (is_digit(peekc(p, 2)) && is_digit(peekc(p, 3)) && peekc(p, 4) == '-')))
    return parse_datetime(p, at, depth, out);
  if (is_digit(c) || c == '+' || c == '-' || c == 'i' || c == 'n')
    return parse_number(p, at, depth, out);
  return fail(p, "expected a value, found %s", FOUND(p));
}

/* Step from table *t into the table named by dotted-key part kp, creating it
 * if absent. Only tables made by dotted keys (and not closed) may be entered. */
static int enter_dotted(parser *p, nn_toml_value **t, const keypath *k, size_t j) {
  char name[256];
  const keypart *kp = &k->v[j];
  nn_toml_value *v = nn_toml_get_n(*t, kp->s, kp->len);
  if (!v) return new_subtable(p, *t, kp, kp->at, F_DOTTED, t);
  tpos d = defpos(v);
  key_path(k, j, name, sizeof name);
  if (v->type == NN_TOML_TABLE && (v->flags & (F_DOTTED | F_IMPLICIT)) &&
      !(v->flags & F_INLINE)) {
    /* A table that only a [header] prefix created is now defined by these
     * dotted keys: no [header] may name it later. */
    if (v->flags & F_IMPLICIT) {
      v->flags = (v->flags & ~(unsigned)F_IMPLICIT) | F_DOTTED;
      v->key_line = kp->at.line;
      v->key_col = kp->at.col;
    }
    *t = v;
    return 0;
  }
  if (v->type == NN_TOML_TABLE && (v->flags & F_INLINE))
    return fail_at(p, kp->at, "cannot add keys to inline table '%s' (defined at %d:%d)", name,
                   d.line, d.col);
  if (v->type == NN_TOML_TABLE)
    return fail_at(p, kp->at,
                   "cannot add to table '%s' with dotted keys: it was defined by a table "
                   "header at %d:%d",
                   name, v->line, v->col);
  return fail_at(p, kp->at, "key '%s' is already %s (defined at %d:%d), not a table", name,
                 a_type(v), d.line, d.col);
}

/* key = value, into table tab (a block's table or an inline table). */
static int parse_keyval(parser *p, nn_toml_value *tab) {
  char fbuf_[24], name[256];
  keypath k = {0};
  nn_toml_value *v = NULL, *t = tab;
  int rc = parse_key(p, &k);
  if (rc) goto done;
  if (peekc(p, 0) != '=') {
    rc = fail(p, "expected '=' after key, found %s", FOUND(p));
    goto done;
  }
  p->i++;
  skip_ws(p);
  for (size_t j = 0; j + 1 < k.n; j++)
    if ((rc = enter_dotted(p, &t, &k, j))) goto done;
  keypart *last = &k.v[k.n - 1];
  nn_toml_value *old = nn_toml_get_n(t, last->s, last->len);
  if (old) {
    tpos d = defpos(old);
    rc = fail_at(p, last->at, "duplicate key '%s' (first defined at %d:%d)",
                 key_path(&k, k.n - 1, name, sizeof name), d.line, d.col);
    goto done;
  }
  if (is_nl(peekc(p, 0)) || peekc(p, 0) < 0) {
    rc = fail(p, "expected a value after '=', found %s", FOUND(p));
    goto done;
  }
  if ((rc = parse_value(p, depth_of(t) + 1, &v))) goto done;
  v->key_line = last->at.line;
  v->key_col = last->at.col;
  if ((rc = tab_add(p, t, last->s, last->len, v))) goto done;
  last->s = NULL; /* now owned by the table */
  v = NULL;
done:
  nn_toml_free(v);
  key_free(&k);
  return rc;
}

/* Walk the header key's prefix k.v[0..n-1) from root, creating implicit
 * tables; *t gets the table the last part belongs in. */
static int header_prefix(parser *p, const keypath *k, nn_toml_value *root, nn_toml_value **t) {
  char name[256];
  *t = root;
  for (size_t j = 0; j + 1 < k->n; j++) {
    keypart *kp = &k->v[j];
    nn_toml_value *v = nn_toml_get_n(*t, kp->s, kp->len);
    if (!v) {
      int rc = new_subtable(p, *t, kp, kp->at, F_IMPLICIT, t);
      if (rc) return rc;
      continue;
    }
    tpos d = defpos(v);
    key_path(k, j, name, sizeof name);
    if (v->type == NN_TOML_TABLE && !(v->flags & F_INLINE))
      *t = v;
    else if (v->type == NN_TOML_ARRAY && (v->flags & F_AOT))
      *t = v->u.arr.items[v->u.arr.n - 1];
    else if (v->type == NN_TOML_TABLE)
      return fail_at(p, kp->at, "cannot extend inline table '%s' (defined at %d:%d)", name,
                     d.line, d.col);
    else if (v->type == NN_TOML_ARRAY)
      return fail_at(p, kp->at,
                     "cannot extend static array '%s' (defined at %d:%d): only arrays made "
                     "with [[...]] can",
                     name, d.line, d.col);
    else
      return fail_at(p, kp->at, "key '%s' is already %s (defined at %d:%d), not a table", name,
                     a_type(v), d.line, d.col);
  }
  return 0;
}

/* [table] (header at hpos, last key part `last`, full name `name`) in t:
 * define it, or take over an implicit table; *cur gets it. */
static int header_table(parser *p, nn_toml_value *t, keypart *last, const char *name,
                        tpos hpos, nn_toml_value **cur) {
  nn_toml_value *v = nn_toml_get_n(t, last->s, last->len);
  if (!v) return new_subtable(p, t, last, hpos, F_DEFINED, cur);
  if (v->type == NN_TOML_TABLE && !(v->flags & (F_DEFINED | F_DOTTED | F_INLINE))) {
    v->flags = (v->flags & ~(unsigned)F_IMPLICIT) | F_DEFINED;
    v->line = hpos.line;
    v->col = hpos.col;
    v->key_line = last->at.line;
    v->key_col = last->at.col;
    *cur = v;
    return 0;
  }
  tpos d = defpos(v);
  if (v->type == NN_TOML_TABLE && (v->flags & F_DEFINED))
    return fail_at(p, last->at, "table '%s' already defined at %d:%d", name, v->line, v->col);
  if (v->type == NN_TOML_TABLE && (v->flags & F_INLINE))
    return fail_at(p, last->at, "table '%s' already defined as an inline table at %d:%d", name,
                   d.line, d.col);
  if (v->type == NN_TOML_TABLE)
    return fail_at(p, last->at, "table '%s' already defined by dotted keys at %d:%d", name,
                   d.line, d.col);
  return fail_at(p, last->at, "key '%s' is already %s (defined at %d:%d), not a table", name,
                 a_type(v), d.line, d.col);
}

/* [[array of tables]] (as header_table): append a new table to the array
 * `last` names in t, creating the array; *cur gets the new table. */
static int header_aot(parser *p, nn_toml_value *t, keypart *last, const char *name, tpos hpos,
                      nn_toml_value **cur) {
  nn_toml_value *arr = nn_toml_get_n(t, last->s, last->len), *item = NULL;
  int rc;
  if (!arr) {
    if ((rc = mk(p, NN_TOML_ARRAY, hpos, depth_of(t) + 1, &arr))) return rc;
    arr->flags |= F_AOT;
    arr->key_line = last->at.line;
    arr->key_col = last->at.col;
    char *key = dup_key(last);
    if (!key || (rc = tab_add(p, t, key, last->len, arr))) {
      free(key);
      nn_toml_free(arr);
      return rc ? rc : nomem(p);
    }
  } else if (!(arr->type == NN_TOML_ARRAY && (arr->flags & F_AOT))) {
    tpos d = defpos(arr);
    return fail_at(p, last->at, "cannot append to '%s' with [[...]]: it is %s (defined at %d:%d)",
                   name, arr->type == NN_TOML_ARRAY ? "a static array" : a_type(arr), d.line,
                   d.col);
  }
  if ((rc = mk(p, NN_TOML_TABLE, hpos, depth_of(arr) + 1, &item))) return rc;
  item->flags |= F_DEFINED;
  item->key_line = last->at.line;
  item->key_col = last->at.col;
  if ((rc = arr_add(p, arr, item))) {
    nn_toml_free(item);
    return rc;
  }
  *cur = item;
  return 0;
}

/* At '[': a [table] or [[array of tables]] header. Sets *cur to the table
 * that the following key/values fill. */
static int parse_header(parser *p, nn_toml_value *root, nn_toml_value **cur) {
  char fbuf_[24], name[256];
  tpos hpos = here(p);
  int aot = peekc(p, 1) == '[';
  keypath k = {0};
  nn_toml_value *t = root;
  int rc;
  p->i += aot ? 2 : 1;
  skip_ws(p);
  if ((rc = parse_key(p, &k))) goto done;
  if (aot ? !(peekc(p, 0) == ']' && peekc(p, 1) == ']') : peekc(p, 0) != ']') {
    rc = fail(p, "expected '%s' to close the %s header, found %s", aot ? "]]" : "]",
              aot ? "array-of-tables" : "table", FOUND(p));
    goto done;
  }
  p->i += aot ? 2 : 1;
  if ((rc = header_prefix(p, &k, root, &t))) goto done;
  keypart *last = &k.v[k.n - 1];
  key_path(&k, k.n - 1, name, sizeof name);
  rc = aot ? header_aot(p, t, last, name, hpos, cur) : header_table(p, t, last, name, hpos, cur);
done:
  key_free(&k);
  return rc;
}

/* ---- document ------------------------------------------------------------ */

int nn_toml_parse(const char *src, size_t len, const char *filename, nn_toml_value **out,
                  nn_error *err) {
  char fbuf_[24];
  nn_error local;
  nn_toml_value *root = NULL, *cur;
  int rc;
  if (!err) {
    nn_error_clear(&local);
    err = &local;
  }
  if (!out) return nn_error_set(err, NN_EINVAL, "nn_toml_parse: out is NULL");
  *out = NULL;
  if (!src && len) return nn_error_set(err, NN_EINVAL, "nn_toml_parse: src is NULL");
  parser P = {.s = src ? src : "", .n = len, .line = 1, .file = filename ? filename : "<input>",
              .err = err};
  parser *p = &P;
  if ((rc = check_bytes(p))) goto fail;
  if (match(p, "\xEF\xBB\xBF")) p->i += 3; /* a byte-order mark is tolerated */
  if ((rc = mk(p, NN_TOML_TABLE, (tpos){1, 1}, 0, &root))) goto fail;
  root->flags |= F_DEFINED;
  cur = root;
  for (;;) {
    skip_ws(p);
    int c = peekc(p, 0);
    const char *what = "value";
    if (c < 0) break;
    if (is_nl(c)) {
      eat_nl(p);
      continue;
    }
    if (c == '[') {
      what = "table header";
      rc = parse_header(p, root, &cur);
    } else if (c != '#') {
      rc = parse_keyval(p, cur);
    }
    if (rc) goto fail;
    skip_ws(p);
    if (peekc(p, 0) == '#' && (rc = skip_comment(p))) goto fail;
    c = peekc(p, 0);
    if (c < 0) break;
    if (!is_nl(c)) {
      rc = fail(p, "expected end of line after %s, found %s", what, FOUND(p));
      goto fail;
    }
    eat_nl(p);
  }
  *out = root;
  return 0;
fail:
  nn_toml_free(root);
  return rc;
}

int nn_toml_parse_file(const char *path, nn_toml_value **out, nn_error *err) {
  FILE *f = NULL;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  int rc;
  if (out) *out = NULL;
  if (!path || !out) return nn_error_set(err, NN_EINVAL, "nn_toml_parse_file: NULL argument");
  f = fopen(path, "rb");
  if (!f) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
    goto done;
  }
  for (;;) {
    if (n == cap) {
      cap = cap ? 2 * cap : 65536;
      char *nb = nn_realloc(buf, cap);
      if (!nb) {
        rc = nn_error_at(err, NN_ENOMEM, path, 0, 0, "out of memory reading file");
        goto done;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "read error: %s", strerror(errno));
    goto done;
  }
  rc = nn_toml_parse(buf, n, path, out, err);
done:
  if (f) fclose(f);
  free(buf);
  return rc;
}
