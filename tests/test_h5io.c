/* test_h5io.c: the shared HDF5 helpers (src/worker/h5io.c): attributes
 * written and read back (numeric scalars and arrays, strings of any length,
 * UTF-8, fixed-length strings as h5py writes them, lists of strings), the
 * strict numeric read, content errors with the caller's code naming file
 * and attribute (by its path inside the file), HDF5's own message appended
 * to failures, datasets written into new groups and opened only when type
 * and shape match, group member counts, and the checks before opening a
 * file (missing, directory, not HDF5). */
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

/* One-line message naming the file; no HDF5 object left open but the
 * test's own `mine` (its file, and a group it holds). */
static int clean_error(const nn_error *e, const char *path, ssize_t mine) {
  int ok = strcmp(e->file, path) == 0 && !strchr(e->msg, '\n');
  ssize_t open_ids = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (!ok || open_ids != mine)
    fprintf(stderr, "file '%s', msg '%s', %zd objects open\n", e->file, e->msg, open_ids);
  return ok && open_ids == mine;
}

/* A file with group g/sub holding attributes, a list, and datasets. */
static int write_groups(const char *p, nn_error *err) {
  nn_h5_quiet();
  hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return nn_h5_fail(err, NN_EIO, p, NULL, "cannot create");
  nn_h5_file hf = {f, p, NN_EIO, NULL};
  hsize_t d2[2] = {2, 3}, n4 = 4;
  float m[6] = {1, 2, 3, 4, 5, 6};
  uint8_t bytes[4] = {9, 8, 7, 6};
  uint64_t u = 42;
  int32_t small = 5;
  const char *names[3] = {"alpha", "caf\xc3\xa9", ""};
  int rc = nn_h5_dset_write(&hf, "g/sub/m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, m, err);
  if (!rc) rc = nn_h5_dset_write(&hf, "g/bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n4, bytes,
                                 err);
  hid_t g = rc ? -1 : H5Gopen2(f, "g/sub", H5P_DEFAULT);
  if (!rc && g < 0) rc = nn_h5_fail(err, NN_EIO, p, "g/sub", "cannot open");
  if (!rc) rc = nn_h5_attr_write(&hf, g, "u", H5T_NATIVE_UINT64, &u, 0, err);
  if (!rc) rc = nn_h5_attr_write(&hf, g, "small", H5T_NATIVE_INT32, &small, 0, err);
  if (!rc) rc = nn_h5_attr_write_strs(&hf, g, "names", names, 3, err);
  if (!rc) rc = nn_h5_attr_write_strs(&hf, g, "none", NULL, 0, err);
  if (!rc) rc = nn_h5_attr_write_str(&hf, g, "one", "x", err);
  if (g >= 0) H5Gclose(g);
  H5Fclose(f);
  return rc;
}

/* Strict reads, lists, attribute paths in messages. */
static void test_group_attrs(void) {
  nn_error err;
  nn_error_clear(&err);
  char path[512], out[4][8];
  snprintf(path, sizeof path, "%s", path_of("g.h5"));
  ASSERT_OK(write_groups(path, &err));
  hid_t f = -1;
  ASSERT_OK(nn_h5_open_read(path, "a test file", NULL, &f, &err));
  nn_h5_file hf = {f, path, NN_ECKPT, NULL};
  hid_t g = H5Gopen2(f, "g/sub", H5P_DEFAULT);
  ASSERT_TRUE(g >= 0);
  uint64_t u = 0;
  int64_t i64 = 0;
  double dbl = 0;
  int n = -1;
  ASSERT_OK(nn_h5_attr_read_exact(&hf, g, "u", H5T_NATIVE_UINT64, &u, &err));
  ASSERT_TRUE(u == 42);
  /* the lenient read converts an int32; the strict one refuses it */
  ASSERT_OK(nn_h5_attr_read_num(&hf, g, "small", H5T_NATIVE_INT64, &i64, 1, 1, NULL, &err));
  ASSERT_TRUE(i64 == 5);
  ASSERT_EQ_INT(nn_h5_attr_read_exact(&hf, g, "small", H5T_NATIVE_INT64, &i64, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "attribute 'g/sub/small' has the wrong type or size, expected one "
                         "8-byte integer");
  ASSERT_TRUE(clean_error(&err, path, 2));
  ASSERT_EQ_INT(nn_h5_attr_read_exact(&hf, g, "u", H5T_NATIVE_DOUBLE, &dbl, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "expected one 8-byte float");
  ASSERT_EQ_INT(nn_h5_attr_read_exact(&hf, g, "names", H5T_NATIVE_INT32, &i64, &err),
                NN_ECKPT);
  ASSERT_EQ_INT(nn_h5_attr_read_exact(&hf, g, "gone", H5T_NATIVE_UINT64, &u, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "missing attribute 'g/sub/gone'");
  ASSERT_STR_EQ(err.where, "g/sub/gone");
  /* lists */
  ASSERT_OK(nn_h5_attr_read_strs(&hf, g, "names", 4, 8, &out[0][0], &n, &err));
  ASSERT_EQ_INT(n, 3);
  ASSERT_STR_EQ(out[0], "alpha");
  ASSERT_STR_EQ(out[1], "caf\xc3\xa9");
  ASSERT_STR_EQ(out[2], "");
  ASSERT_OK(nn_h5_attr_read_strs(&hf, g, "none", 4, 8, &out[0][0], &n, &err));
  ASSERT_EQ_INT(n, 0);
  ASSERT_EQ_INT(nn_h5_attr_read_strs(&hf, g, "names", 2, 8, &out[0][0], &n, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "attribute 'g/sub/names': expected a list of at most 2 strings");
  ASSERT_EQ_INT(nn_h5_attr_read_strs(&hf, g, "names", 4, 5, &out[0][0], &n, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "entry 0 ('alpha') is 5 bytes or longer");
  ASSERT_EQ_INT(nn_h5_attr_read_strs(&hf, g, "one", 4, 8, &out[0][0], &n, &err), NN_ECKPT);
  ASSERT_EQ_INT(nn_h5_attr_read_strs(&hf, g, "u", 4, 8, &out[0][0], &n, &err), NN_ECKPT);
  ASSERT_TRUE(clean_error(&err, path, 2));
  /* a write failure names the attribute by its path */
  ASSERT_EQ_INT(nn_h5_attr_write(&hf, g, "new", H5T_NATIVE_UINT64, &u, 0, &err), NN_EIO);
  ASSERT_STR_CONTAINS(err.msg, "g/sub/new: cannot write the attribute (HDF5: ");
  ASSERT_STR_EQ(err.where, "g/sub/new");
  H5Gclose(g);
  H5Fclose(f);
}

/* Datasets: read back; wrong type, shape or rank refused naming the dataset. */
static void test_datasets(void) {
  nn_error err;
  nn_error_clear(&err);
  char path[512];
  snprintf(path, sizeof path, "%s", path_of("d.h5"));
  ASSERT_OK(write_groups(path, &err));
  hid_t f = -1, d = 123;
  ASSERT_OK(nn_h5_open_read(path, "a test file", NULL, &f, &err));
  nn_h5_file hf = {f, path, NN_ECKPT, NULL};
  hsize_t d2[2] = {2, 3}, d3[2] = {3, 2}, len = 0, links = 0;
  float m[6] = {0};
  const nn_h5_want fl = {H5T_FLOAT, 4, "float32", 2, d2, NULL};
  ASSERT_OK(nn_h5_dset_read(&hf, "g/sub/m", &fl, H5T_NATIVE_FLOAT, m, &err));
  ASSERT_TRUE(m[0] == 1 && m[5] == 6);
  const nn_h5_want flip = {H5T_FLOAT, 4, "float32", 2, d3, "the table"};
  ASSERT_EQ_INT(nn_h5_dset_read(&hf, "g/sub/m", &flip, H5T_NATIVE_FLOAT, m, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "g/sub/m: shape [2, 3], expected [3, 2] (from the table)");
  ASSERT_STR_EQ(err.where, "g/sub/m");
  ASSERT_TRUE(clean_error(&err, path, 1));
  const nn_h5_want dbl = {H5T_FLOAT, 8, "float64", 2, d2, NULL};
  ASSERT_EQ_INT(nn_h5_dset_read(&hf, "g/sub/m", &dbl, H5T_NATIVE_DOUBLE, m, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "g/sub/m: wrong element type, expected float64");
  const nn_h5_want bytes = {H5T_INTEGER, 1, "uint8", -1, NULL, NULL};
  ASSERT_OK(nn_h5_dset_open(&hf, "g/bytes", &bytes, &len, &d, &err));
  ASSERT_TRUE(d >= 0 && len == 4);
  H5Dclose(d);
  ASSERT_EQ_INT(nn_h5_dset_open(&hf, "g/sub/m", &(nn_h5_want){H5T_FLOAT, 4, "float32", -1, NULL,
                                NULL}, &len, &d, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "g/sub/m: has 2 dimensions, expected 1");
  ASSERT_EQ_INT(d, -1);
  ASSERT_EQ_INT(nn_h5_dset_open(&hf, "g/nope", &bytes, &len, &d, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "g/nope: missing dataset");
  ASSERT_TRUE(clean_error(&err, path, 1));
  /* group members */
  ASSERT_OK(nn_h5_group_links(&hf, "g", &links, &err));
  ASSERT_TRUE(links == 2);
  ASSERT_EQ_INT(nn_h5_group_links(&hf, "g/other", &links, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "g/other: missing group");
  /* writing into a read-only file: NN_EIO naming the dataset */
  ASSERT_EQ_INT(nn_h5_dset_write(&hf, "g/new", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, m, &err),
                NN_EIO);
  ASSERT_STR_CONTAINS(err.msg, "g/new: cannot write the dataset (HDF5: ");
  ASSERT_TRUE(clean_error(&err, path, 1));
  H5Fclose(f);
}

TEST_MAIN(TEST(test_roundtrip), TEST(test_content_errors), TEST(test_group_attrs),
          TEST(test_datasets), TEST(test_open_errors))
