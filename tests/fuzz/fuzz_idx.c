/* fuzz_idx.c: libFuzzer target for the IDX reader (src/worker/idx.c).
 * Input: an IDX file, plain or gzip, written to a scratch file and read with
 * nn_idx_peek and nn_idx_read. Checks: no memory error, UB or leak; a file
 * that reads has 1..NN_IDX_MAX_DIMS dimensions whose product is its size and
 * agrees with the header nn_idx_peek read. Seeds: the first bytes of the
 * Fashion-MNIST files (tests/fuzz/seeds.sh). */
#include "fuzz_util.h"
#include "worker/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write_tmp(data, size, "data.idx");
  if (!path) return 0;
  nn_idx head, a;
  nn_error err;
  nn_error_clear(&err);
  int peek_rc = nn_idx_peek(path, &head, &err);
  nn_error_clear(&err);
  if (nn_idx_read(path, &a, &err) != 0) {
    FUZZ_CHECK(err.code != 0 && a.data == NULL);
    nn_idx_free(&a);
    return 0;
  }
  FUZZ_CHECK(peek_rc == 0 && head.ndim == a.ndim);
  FUZZ_CHECK(a.ndim >= 1 && a.ndim <= NN_IDX_MAX_DIMS);
  size_t prod = 1;
  for (int i = 0; i < a.ndim; i++) {
    FUZZ_CHECK(a.dim[i] == head.dim[i] && a.dim[i] >= 0);
    prod *= (size_t)a.dim[i];
  }
  FUZZ_CHECK(prod == a.size);
  volatile unsigned s = 0;
  for (size_t i = 0; i < a.size; i++) s += a.data[i];
  (void)s;
  nn_idx_free(&a);
  return 0;
}
