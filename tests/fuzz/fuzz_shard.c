/* fuzz_shard.c: libFuzzer target for the shard reader (src/worker/dataset*.c,
 * shard_describe.c). Input: an HDF5 file image, written to a scratch file and
 * read the way `nntrain inspect` and training do: nn_h5_format,
 * nn_shard_describe, nn_dataset_open, then the labels or targets and the
 * first and last samples through nn_dataset_read. Checks: no memory error,
 * UB or leak (HDF5 identifiers counted: fuzz_util.h); an opened set has n >= 0, a valid class count and labels in
 * [0, num_classes). Seeds: small shards made with `nntrain prepare`
 * (tests/fuzz/seeds.sh). */
#include "worker/h5io.h"
#include "worker/dataset.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read samples 0 and n-1 as training would (skipped for huge samples: the
 * harness's own buffer is not what is being tested). */
static void read_ends(nn_dataset *ds, const nn_dataset_info *info) {
  size_t count = nn_shape_count(&info->sample);
  if (info->n < 1 || count == 0 || count > (1u << 20)) return;
  int T = info->num_classes > 0 ? 0 : info->target_dim;
  float *x = malloc(2 * count * sizeof *x);
  float *t = T > 0 ? malloc(2 * (size_t)T * sizeof *t) : NULL;
  int32_t lab[2];
  int64_t idx[2] = {0, info->n - 1};
  nn_error err;
  nn_error_clear(&err);
  if (x && (T == 0 || t))
    (void)nn_dataset_read(ds, idx, 2, x, info->num_classes > 0 ? lab : NULL, t, &err);
  free(x);
  free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  static long ids;
  if (!init) {
    nn_h5_quiet();
    ids = fuzz_h5_ids();
    init = 1;
  }
  const char *path = fuzz_write_tmp(data, size, "shard.h5");
  if (!path) return 0;
  nn_error err;
  nn_error_clear(&err);
  char fmt[64];
  (void)nn_h5_format(path, fmt, sizeof fmt, &err);
  nn_shard_desc d;
  nn_error_clear(&err);
  (void)nn_shard_describe(path, &d, &err);
  nn_dataset *ds = NULL;
  nn_error_clear(&err);
  if (nn_dataset_open(&ds, path, NULL, &err) != 0) {
    FUZZ_CHECK(err.code != 0 && ds == NULL);
    FUZZ_CHECK(fuzz_h5_ids() == ids);
    return 0;
  }
  const nn_dataset_info *info = nn_dataset_get_info(ds);
  FUZZ_CHECK(info->n >= 0 && info->num_classes >= 0);
  FUZZ_CHECK(info->channels >= 0 && info->channels <= NN_SHARD_MAX_CHANNELS);
  if (info->num_classes > 0) {
    const int32_t *lab = nn_dataset_labels(ds);
    FUZZ_CHECK(lab != NULL || info->n == 0);
    for (int64_t i = 0; i < info->n; i++)
      FUZZ_CHECK(lab[i] >= 0 && lab[i] < info->num_classes);
  } else {
    const float *t = nn_dataset_targets(ds);
    FUZZ_CHECK(t != NULL || info->n == 0);
    volatile float s = 0;
    for (int64_t i = 0; i < info->n * info->target_dim; i++) s += t[i];
    (void)s;
  }
  read_ends(ds, info);
  nn_dataset_close(ds);
  FUZZ_CHECK(fuzz_h5_ids() == ids);
  return 0;
}
