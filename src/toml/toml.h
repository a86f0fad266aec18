/* toml.h: a TOML 1.0 parser producing a document tree with source positions.
 *
 * nn_toml_parse reads a whole document from memory and returns a tree of
 * nn_toml_value nodes, each remembering the line and column where it was
 * written, so that later checks (the job schema) can name the place in the
 * file. It accepts exactly TOML 1.0.0: every string form, integers in all
 * bases, floats with inf/nan, booleans, offset/local date-times, local dates
 * and times, arrays, inline tables, dotted keys, tables and arrays of tables;
 * anything else (duplicate keys, redefined tables, bad escapes, invalid
 * UTF-8, ...) is an NN_ESYNTAX error at "file:line:column". Pure C, no I/O
 * beyond nn_toml_parse_file. */
#ifndef NN_TOML_TOML_H
#define NN_TOML_TOML_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef enum nn_toml_type {
  NN_TOML_STRING,
  NN_TOML_INTEGER,
  NN_TOML_FLOAT,
  NN_TOML_BOOL,
  NN_TOML_DATETIME,       /* offset date-time: 1979-05-27T07:32:00Z */
  NN_TOML_DATETIME_LOCAL, /* local date-time:  1979-05-27T07:32:00 */
  NN_TOML_DATE_LOCAL,     /* local date:       1979-05-27 */
  NN_TOML_TIME_LOCAL,     /* local time:       07:32:00 */
  NN_TOML_ARRAY,
  NN_TOML_TABLE,
} nn_toml_type;

typedef struct nn_toml_value nn_toml_value;

/* A date/time exactly as written, validated; fields not present are 0. */
typedef struct nn_toml_datetime {
  int year, month, day;
  int hour, minute, second;
  int nanosecond;       /* fractional seconds, truncated to nanoseconds */
  int frac_digits;      /* number of fractional digits written (0 = none) */
  int has_offset;       /* 1 for offset date-times */
  int offset_minutes;   /* offset east of UTC; 0 for 'Z' */
  int offset_z;         /* 1 if written as 'Z' or 'z' */
} nn_toml_datetime;

/* One key/value pair of a table, in the order written. */
typedef struct nn_toml_kv {
  char *key;             /* unescaped key, NUL-terminated; a quoted key may also hold
                            U+0000 ("\u0000" is a valid TOML key): key_len is its length */
  size_t key_len;        /* bytes of key, excluding the terminating NUL */
  nn_toml_value *value;
} nn_toml_kv;

struct nn_toml_value {
  nn_toml_type type;
  int line, col;         /* 1-based position where the value (or table header) starts */
  int key_line, key_col; /* position of the key that names this value (0 for array items) */
  union {
    struct { char *ptr; size_t len; } s;    /* STRING: UTF-8, NUL-terminated, len excludes NUL */
    int64_t i;                               /* INTEGER */
    double f;                                /* FLOAT */
    int b;                                   /* BOOL: 0 or 1 */
    nn_toml_datetime dt;                     /* DATETIME, DATETIME_LOCAL, DATE_LOCAL, TIME_LOCAL */
    struct { nn_toml_value **items; size_t n, cap; } arr;  /* ARRAY */
    struct { nn_toml_kv *kv; size_t n, cap; } tab;          /* TABLE */
  } u;
  unsigned flags;        /* private to the parser */
  size_t *index;         /* private: hash index of a large TABLE's keys (slot -> kv
                            position + 1, 0 = empty), NULL for small tables */
  size_t index_cap;      /* private: number of slots in index (power of two) */
};

/* Parse `len` bytes of `src`. `filename` is used only in error messages
 * (may be NULL: then "<input>"). On success *out is the root table, owned by
 * the caller (free with nn_toml_free) and 0 is returned. On failure *out is
 * NULL and err holds NN_ESYNTAX (or NN_ENOMEM) with file, line and column. */
int nn_toml_parse(const char *src, size_t len, const char *filename,
                  nn_toml_value **out, nn_error *err);

/* Read and parse a file. NN_EIO if it cannot be read. */
int nn_toml_parse_file(const char *path, nn_toml_value **out, nn_error *err);

void nn_toml_free(nn_toml_value *v);

/* Look up `key` in a TABLE (not dotted: one level). NULL if absent or v is not a table. */
nn_toml_value *nn_toml_get(const nn_toml_value *table, const char *key);

/* As nn_toml_get for a key of len bytes, which may hold U+0000. */
nn_toml_value *nn_toml_get_n(const nn_toml_value *table, const char *key, size_t len);

/* 1 if kv's key holds no U+0000 (then kv->key is the whole key as a C
 * string); 0 otherwise: such a key is never one of a schema's names. */
int nn_toml_key_is_cstr(const nn_toml_kv *kv);

/* kv's key for a message: control characters (U+0000 ...) written as \uXXXX
 * escapes, cut with "..." to fit buf[cap]. Returns buf. */
const char *nn_toml_key_show(const nn_toml_kv *kv, char *buf, size_t cap);

/* Name of a type for messages: "string", "integer", "float", "boolean",
 * "offset date-time", "local date-time", "local date", "local time", "array", "table". */
const char *nn_toml_type_name(nn_toml_type t);

#endif
