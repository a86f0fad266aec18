/* fuzz_toml.c: libFuzzer target for the TOML parser (src/toml).
 * Input: any bytes, parsed as one TOML document with nn_toml_parse; on
 * success the tree is freed. Checks: no memory error, no UB, no leak; a
 * failure must carry an error code. Seeds: tests/toml/{valid,invalid}/ *.toml
 * and jobs/ *.toml (tests/fuzz/seeds.sh). */
#include "fuzz_util.h"
#include "toml/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_toml_value *v = NULL;
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_toml_parse((const char *)data, size, "fuzz.toml", &v, &err);
  if (rc == 0) {
    FUZZ_CHECK(v != NULL);
    nn_toml_free(v);
  } else {
    FUZZ_CHECK(v == NULL && err.code != 0);
  }
  return 0;
}
