/* layer_cfg.h: layer configs in tests, set and read by key name.
 *
 * A layer type's own options are private to its file (core/layer.h), so a
 * test says them as a job file does: cfg_set(&c, "kernel_size", "[%d, %d]",
 * kh, kw) formats the TOML value text and stores it through the type's key
 * table. A key the type does not have, or text that does not parse as the
 * key's type, is a broken test: it prints why and exits 1 (the helpers are
 * used inside functions that return configs, where ASSERT cannot). */
#ifndef NN_TESTS_LAYER_CFG_H
#define NN_TESTS_LAYER_CFG_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layer.h"

/* A layer config of `type` with every key at its documented default. */
static inline nn_layer_cfg cfg_of(const char *type) {
  nn_layer_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.type, sizeof c.type, "%s", type);
  nn_error e;
  nn_error_clear(&e);
  if (nn_layer_cfg_defaults(&c, &e) != 0) fprintf(stderr, "defaults: %s\n", e.msg);
  return c;
}

/* Set key `key` of c to the TOML value text fmt, ... formats. */
__attribute__((format(printf, 3, 4))) static inline void cfg_set(nn_layer_cfg *c,
                                                                 const char *key,
                                                                 const char *fmt, ...) {
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  nn_error e;
  nn_error_clear(&e);
  if (nn_layer_cfg_set(c, key, text, &e) != 0) {
    fprintf(stderr, "cfg_set: %s\n", e.msg);
    exit(1);
  }
}

/* A boolean key from a C truth value. */
static inline void cfg_set_bool(nn_layer_cfg *c, const char *key, int v) {
  cfg_set(c, key, "%s", v ? "true" : "false");
}

/* A dense layer of `units` with activation `act` (NULL or "" for none). */
static inline nn_layer_cfg cfg_dense(int units, const char *act) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", units);
  if (act) snprintf(c.activation, sizeof c.activation, "%s", act);
  return c;
}

/* A residual block over the next `len` configs; projection: a learned
 * shortcut instead of the identity. */
static inline nn_layer_cfg cfg_block(int len, int projection) {
  nn_layer_cfg c = cfg_of("residual");
  c.block_len = len;
  c.projection = projection;
  return c;
}

/* A numeric (integer, float, boolean) key's value. */
static inline double cfg_num(const nn_layer_cfg *c, const char *key) {
  double v = nn_layer_cfg_num(c, key);
  if (isnan(v) && !nn_layer_cfg_str(c, key) && nn_layer_cfg_ints(c, key, NULL, 0) < 0) {
    fprintf(stderr, "cfg_num: layer type '%s' has no key '%s'\n", c->type, key);
    exit(1);
  }
  return v;
}

/* A string or choice key's value. */
static inline const char *cfg_str(const nn_layer_cfg *c, const char *key) {
  const char *s = nn_layer_cfg_str(c, key);
  if (!s) {
    fprintf(stderr, "cfg_str: layer type '%s' has no string key '%s'\n", c->type, key);
    exit(1);
  }
  return s;
}

/* Number of items of an integer-list key. */
static inline int cfg_count(const nn_layer_cfg *c, const char *key) {
  int n = nn_layer_cfg_ints(c, key, NULL, 0);
  if (n < 0) {
    fprintf(stderr, "cfg_count: layer type '%s' has no list key '%s'\n", c->type, key);
    exit(1);
  }
  return n;
}

/* Item i of an integer-list key. */
static inline int cfg_int_at(const nn_layer_cfg *c, const char *key, int i) {
  int v[NN_MAX_DIMS * 4];
  int n = nn_layer_cfg_ints(c, key, v, (int)(sizeof v / sizeof v[0]));
  if (n < 0 || i >= n) {
    fprintf(stderr, "cfg_int_at: layer type '%s': no item %d of key '%s'\n", c->type, i, key);
    exit(1);
  }
  return v[i];
}

#endif
