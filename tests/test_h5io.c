/* test_h5io.c: the shared HDF5 helpers (src/worker/h5io.c): attributes
 * written and read back (numeric scalars and arrays, strings of any length,
 * UTF-8, fixed-length strings as h5py writes them), content errors with the
 * caller's code naming file and attribute, HDF5's own message appended to
 * failures, and the checks before opening a file (missing, directory, not
 * HDF5). */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "test_tmp.h"
#include "worker/h5io.h"

/* path of `name` in the program's temp dir (a static buffer). */
static const char *path_of(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", nn_test_tmpdir("h5io"), name);
  return buf;
}

/* A new HDF5 file with the attributes the tests read. */
static int write_fixture(const char *p, nn_error *err) {
  nn_h5_quiet();
  hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return nn_h5_fail(err, NN_EIO, p, NULL, "cannot create");
  nn_h5_file hf = {f, p, NN_EIO, NULL};
  int32_t one = 7;
  double arr[3] = {0.5, -1.25, 3e10};
  int64_t big = (int64_t)1 << 40;
  int rc;
  if ((rc = nn_h5_attr_write(&hf, f, "one", H5T_NATIVE_INT32, &one, 0, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "arr", H5T_NATIVE_DOUBLE, arr, 3, err)) ||
      (rc = nn_h5_attr_write(&hf, f, "big", H5T_NATIVE_INT64, &big, 0, err)) ||
      (rc = nn_h5_attr_write_str(&hf, f, "name", "caf\xc3\xa9 \"q\" \\ \t", err)) ||
      (rc = nn_h5_attr_write_str(&hf, f, "empty", NULL, err)))
    goto done;
  /* A fixed-length string without a terminating NUL, as h5py's np.bytes_ writes. */
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  H5Tset_size(t, 5);
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  hid_t a = H5Acreate2(f, "fixed", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, t, "hello") < 0) rc = nn_h5_fail(err, NN_EIO, p, "fixed", "write");
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
done:
  H5Fclose(f);
  return rc;
}

static void test_roundtrip(void) {
  nn_error err;
  nn_error_clear(&err);
  const char *p = path_of("a.h5");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  ASSERT_OK(write_fixture(path, &err));
  hid_t f = -1;
  ASSERT_OK(nn_h5_open_read(path, "a test file", NULL, &f, &err));
  nn_h5_file hf = {f, path, NN_EDATA, "a test file"};
  int one = 0, n = 0;
  ASSERT_OK(nn_h5_attr_read_int(&hf, f, "one", &one, &err));
  ASSERT_EQ_INT(one, 7);
  double arr[4] = {0};
  ASSERT_OK(nn_h5_attr_read_num(&hf, f, "arr", H5T_NATIVE_DOUBLE, arr, 4, 0, &n, &err));
  ASSERT_EQ_INT(n, 3);
  ASSERT_TRUE(arr[0] == 0.5 && arr[1] == -1.25 && arr[2] == 3e10);
  int64_t big = 0;
  ASSERT_OK(nn_h5_attr_read_num(&hf, f, "big", H5T_NATIVE_INT64, &big, 1, 1, NULL, &err));
  ASSERT_TRUE(big == (int64_t)1 << 40);
  char s[64];
  ASSERT_OK(nn_h5_attr_read_str(&hf, f, "name", s, sizeof s, &err));
  ASSERT_STR_EQ(s, "caf\xc3\xa9 \"q\" \\ \t");
  ASSERT_OK(nn_h5_attr_read_str(&hf, f, "empty", s, sizeof s, &err));
  ASSERT_STR_EQ(s, "");
  ASSERT_OK(nn_h5_attr_read_str(&hf, f, "fixed", s, sizeof s, &err));
  ASSERT_STR_EQ(s, "hello");
  char tiny[4]; /* truncated, always terminated */
  ASSERT_OK(nn_h5_attr_read_str(&hf, f, "fixed", tiny, sizeof tiny, &err));
  ASSERT_STR_EQ(tiny, "hel");
  H5Fclose(f);
}

/* Content errors carry the caller's code, the file, the attribute (in
 * err->where) and say what was expected. */
static void test_content_errors(void) {
  nn_error err;
  nn_error_clear(&err);
  char path[512];
  snprintf(path, sizeof path, "%s", path_of("b.h5"));
  ASSERT_OK(write_fixture(path, &err));
  hid_t f = -1;
  ASSERT_OK(nn_h5_open_read(path, "a test file", NULL, &f, &err));
  nn_h5_file hf = {f, path, NN_ECKPT, "a test file"};
  int v = 0;
  double arr[2];
  char s[16];
  ASSERT_EQ_INT(nn_h5_attr_read_int(&hf, f, "nope", &v, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.file, path);
  ASSERT_STR_EQ(err.where, "nope");
  ASSERT_STR_CONTAINS(err.msg, "missing attribute 'nope': not a test file");
  hf.kind = NULL;
  ASSERT_EQ_INT(nn_h5_attr_read_int(&hf, f, "nope", &v, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "missing attribute 'nope'");
  ASSERT_EQ_INT(nn_h5_attr_read_num(&hf, f, "arr", H5T_NATIVE_DOUBLE, arr, 2, 0, NULL, &err),
                NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "attribute 'arr' has 3 values, expected 1 to 2");
  ASSERT_EQ_INT(nn_h5_attr_read_num(&hf, f, "arr", H5T_NATIVE_DOUBLE, arr, 4, 2, NULL, &err),
                NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "attribute 'arr' has 3 values, expected 2");
  ASSERT_EQ_INT(nn_h5_attr_read_int(&hf, f, "name", &v, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "attribute 'name' is not numeric");
  ASSERT_EQ_INT(nn_h5_attr_read_str(&hf, f, "one", s, sizeof s, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "attribute 'one' is not a single string");
  /* Writing into a read-only file fails with HDF5's reason appended. */
  ASSERT_EQ_INT(nn_h5_attr_write(&hf, f, "new", H5T_NATIVE_INT32, &v, 0, &err), NN_EIO);
  ASSERT_STR_EQ(err.where, "new");
  ASSERT_STR_CONTAINS(err.msg, "new: cannot write the attribute (HDF5: ");
  H5Fclose(f);
}

/* What nn_h5_open_read says before HDF5 sees the file. */
static void test_open_errors(void) {
  nn_error err;
  nn_error_clear(&err);
  hid_t f = 123;
  ASSERT_EQ_INT(nn_h5_open_read(path_of("missing.h5"), "a shard", NULL, &f, &err),
                NN_ENOTFOUND);
  ASSERT_EQ_INT(f, -1);
  ASSERT_STR_CONTAINS(err.msg, "no such file");
  char dir[512];
  snprintf(dir, sizeof dir, "%s", path_of(""));
  ASSERT_EQ_INT(nn_h5_open_read(dir, "a shard", "a shard or a glob", &f, &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "is a directory (expected a shard or a glob)");
  char txt[512];
  snprintf(txt, sizeof txt, "%s", path_of("notes.h5"));
  FILE *t = fopen(txt, "w");
  ASSERT_TRUE(t != NULL);
  fputs("plain text\n", t);
  fclose(t);
  ASSERT_EQ_INT(nn_h5_open_read(txt, "a checkpoint", NULL, &f, &err), NN_EDATA);
  ASSERT_STR_EQ(err.file, txt);
  ASSERT_STR_CONTAINS(err.msg, "not an HDF5 file (expected a checkpoint)");
}

TEST_MAIN(TEST(test_roundtrip), TEST(test_content_errors), TEST(test_open_errors))
