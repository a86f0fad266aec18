/* toml.c: TOML 1.0 parser (see toml.h). First placeholder so the project
 * configures; the full parser replaces this. */
#include "toml/toml.h"

#include <stdlib.h>
#include <string.h>

int nn_toml_parse(const char *src, size_t len, const char *filename,
                  nn_toml_value **out, nn_error *err) {
  (void)src; (void)len;
  if (out) *out = NULL;
  return nn_error_at(err, NN_EINTERNAL, filename ? filename : "<input>", 0, 0,
                     "TOML parser not implemented yet");
}

int nn_toml_parse_file(const char *path, nn_toml_value **out, nn_error *err) {
  return nn_toml_parse(NULL, 0, path, out, err);
}

void nn_toml_free(nn_toml_value *v) { (void)v; }

nn_toml_value *nn_toml_get(const nn_toml_value *table, const char *key) {
  (void)table; (void)key;
  return NULL;
}

const char *nn_toml_type_name(nn_toml_type t) {
  (void)t;
  return "unknown";
}
