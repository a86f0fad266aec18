/* keys.h: tables that describe configuration keys.
 *
 * Every configurable thing (a layer type, a job section) publishes a table of
 * nn_key: name, type, range, default and help, plus where the value lives in
 * its C struct. The job parser reads TOML through these tables, suggests
 * near names for unknown keys, and the docs are generated from them, so a key
 * is declared exactly once. Besides the types, the one reader of choice
 * lists ("a|b|c"), keys.c: every module that checks, suggests or documents a
 * choice goes through it. */
#ifndef NN_CORE_KEYS_H
#define NN_CORE_KEYS_H

#include <stddef.h>

typedef enum nn_key_type {
  NN_KEY_INT,      /* int field; range [min, max] */
  NN_KEY_INT64,    /* int64_t field; range [min, max] */
  NN_KEY_FLOAT,    /* double field; range [min, max] (inclusive; see flags) */
  NN_KEY_BOOL,     /* int field, 0 or 1 */
  NN_KEY_STRING,   /* char[size] field */
  NN_KEY_ENUM,     /* char[size] field, one of `choices` ("a|b|c") */
  NN_KEY_INT_LIST, /* int[max_items] field + count in `count_offset` */
  NN_KEY_STRING_LIST, /* char[max_items][NN_KEY_ITEM_MAX] field + count in `count_offset` */
} nn_key_type;

/* Bytes of one item of an NN_KEY_STRING_LIST (with its NUL): a layer name. */
#define NN_KEY_ITEM_MAX 48

enum {
  NN_KEY_MIN_EXCLUSIVE = 1, /* value must be > min, not >= */
  NN_KEY_REQUIRED = 2,      /* no default: must be given */
  NN_KEY_NEGATED = 4,       /* NN_KEY_BOOL: the field holds the opposite of the key, so a
                               zeroed struct means the key's `true` (layer `trainable`
                               is stored as nn_layer_cfg.frozen) */
  NN_KEY_CFG = 8,           /* a layer type's key whose offset is into nn_layer_cfg itself
                               (activation, block_len, projection), not into the type's
                               options (core/layer.h) */
  NN_KEY_ZERO_ABSENT = 16,  /* a number key added after packed job specs shipped, that
                               does not accept 0: a 0 in a spec (proto3's absent field)
                               keeps the default (coordinator/job_pack.c) */
};

typedef struct nn_key {
  const char *name;     /* TOML key */
  nn_key_type type;
  size_t offset;        /* offsetof(target struct, field) */
  size_t size;          /* sizeof the field (strings: buffer size; lists: max items) */
  double min, max;      /* numeric range (ignored for strings/bools) */
  const char *def;      /* default as TOML text ("0.001", "\"relu\"", "true"); NULL = none */
  const char *choices;  /* NN_KEY_ENUM: "a|b|c" */
  unsigned flags;       /* NN_KEY_* flags */
  const char *help;     /* one sentence for docs and --help */
  size_t count_offset;  /* NN_KEY_INT_LIST: offsetof the int that holds the count */
} nn_key;

/* ---- choice lists ("a|b|c") --------------------------------------------------
 * A choice list is the entries between '|' separators: "a|b|c" has three, a
 * separator at either end or two in a row make an empty entry ("a|" is "a"
 * and ""), and "" or NULL is the empty list. Entries are matched whole and
 * case-sensitively. Implemented in keys.c. */

/* Number of entries of `choices` (0 for "" and NULL). */
int nn_choice_count(const char *choices);
/* Position (from 0) of the entry equal to `s`, or -1 (also for NULL s). */
int nn_choice_index(const char *choices, const char *s);
/* Entry k of `choices` copied into buf[n] (n > 0), NUL-terminated and cut to
 * n - 1 bytes if longer. Returns the entry's full length, or -1 (buf "") if
 * there is no entry k. The caller owns buf. */
int nn_choice_at(const char *choices, int k, char *buf, size_t n);

#endif
