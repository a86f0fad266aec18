/* fuzz_csv.c: libFuzzer target for the CSV reader (src/worker/csv.c).
 * Input: byte 0 chooses the options (bits 0-1: header auto / no / yes;
 * bits 2-3: no label, label "0", label "label", label "1"), the rest is the
 * file, written to a scratch file and read with nn_csv_read. Checks: no
 * memory error, UB or leak; a file that reads has rows >= 0, nfeat = cols -
 * (label ? 1 : 0), finite features and a label column inside the row.
 * Seeds: small CSV files written by tests/fuzz/seeds.sh. */
#include <math.h>

#include "fuzz_util.h"
#include "worker/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int headers[4] = {NN_CSV_HEADER_AUTO, NN_CSV_HEADER_NO, NN_CSV_HEADER_YES,
                                 NN_CSV_HEADER_AUTO};
  static const char *labels[4] = {NULL, "0", "label", "1"};
  if (size < 1) return 0;
  nn_csv_opts o = {.label = labels[(data[0] >> 2) & 3], .header = headers[data[0] & 3]};
  const char *path = fuzz_write_tmp(data + 1, size - 1, "data.csv");
  if (!path) return 0;
  nn_csv_data d;
  nn_error err;
  nn_error_clear(&err);
  if (nn_csv_read(path, &o, &d, &err) != 0) {
    FUZZ_CHECK(err.code != 0);
    nn_csv_free(&d);
    return 0;
  }
  FUZZ_CHECK(d.rows >= 0 && d.cols >= 1);
  FUZZ_CHECK(d.nfeat == d.cols - (o.label ? 1 : 0));
  FUZZ_CHECK(!o.label || (d.label_col >= 0 && d.label_col < d.cols && d.y));
  for (int64_t i = 0; i < d.rows * d.nfeat; i++) FUZZ_CHECK(isfinite(d.x[i]));
  for (int64_t i = 0; o.label && i < d.rows; i++) FUZZ_CHECK(isfinite(d.y[i]));
  if (d.names)
    for (int c = 0; c < d.cols; c++) FUZZ_CHECK(d.names[c] != NULL);
  nn_csv_free(&d);
  return 0;
}
