/* fuzz_util.h: shared helpers of the libFuzzer targets in tests/fuzz.
 *
 * Readers that take a path (shards, checkpoints, IDX, CSV) are fuzzed through
 * their normal entry points: the input bytes are written to one scratch file
 * per process (under /dev/shm when it exists, else $TMPDIR or /tmp), which
 * is removed at exit. The HDF5 targets silence HDF5's error stacks with
 * nn_h5_quiet (worker/h5io.h: H5Eset_auto2 off). Header-only: every target is one .c file plus this. */
#ifndef NN_FUZZ_UTIL_H
#define NN_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_path_buf[512];

static inline void fuzz_remove_tmp(void) {
  if (fuzz_path_buf[0]) unlink(fuzz_path_buf);
}

/* The scratch file's path, "<dir>/nnfuzz-<pid>-<name>", made once. */
static inline const char *fuzz_tmp_path(const char *name) {
  if (!fuzz_path_buf[0]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!dir || !dir[0]) dir = "/tmp";
    snprintf(fuzz_path_buf, sizeof fuzz_path_buf, "%s/nnfuzz-%ld-%s", dir, (long)getpid(), name);
    atexit(fuzz_remove_tmp);
  }
  return fuzz_path_buf;
}

/* Write data[0, size) to the scratch file; its path, or NULL (then the
 * target skips the input: a full /dev/shm is not a finding). */
static inline const char *fuzz_write_tmp(const uint8_t *data, size_t size, const char *name) {
  const char *path = fuzz_tmp_path(name);
  FILE *f = fopen(path, "wb");
  if (!f) return NULL;
  size_t w = size ? fwrite(data, 1, size, f) : 0;
  if (fclose(f) != 0 || w != size) return NULL;
  return path;
}

/* A property the target checks failed: report and abort (libFuzzer saves
 * the input as a crash). */
#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

#ifdef H5_VERS_MAJOR
/* Our side of the HDF5 leak check. Handles we fail to close (files, groups,
 * datasets, attributes, and the datatypes and dataspaces we make) are never
 * seen by LeakSanitizer: libhdf5 closes every open identifier at exit. So
 * the HDF5 targets count identifiers instead: fuzz_h5_ids() before the
 * first input is the baseline (libhdf5's predefined types), and after each
 * input the count must be back to it. Blocks that libhdf5 allocates and
 * loses on its own error paths are suppressed (tests/fuzz/lsan.supp). */
static inline long fuzz_h5_ids(void) {
  long total = (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  const H5I_type_t types[] = {H5I_DATATYPE, H5I_DATASPACE, H5I_GENPROP_LST};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    hsize_t n = 0;
    if (H5Inmembers(types[i], &n) >= 0) total += (long)n;
  }
  return total;
}
#endif

#endif
