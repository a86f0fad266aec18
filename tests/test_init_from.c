/* test_init_from.c: nn_init_read ([init] from, coordinator/init_from.h) on
 * HDF5 files written here in the checkpoint's /params/<layer>/<name> layout
 * and in the replica-group layout: matching tensors are copied exactly,
 * other tensors keep their initialization, a shape or type mismatch and a
 * file without the layout are NN_ECKPT errors naming file, dataset and both
 * shapes. (The e2e test loads a real checkpoint and an h5py-written file.) */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/init_from.h"
#include "core/layer.h"
#include "core/model.h"
#include "test.h"
#include "gradcheck_assert.h"

static nn_layer_cfg named_dense(const char *name, int units) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", units);
  snprintf(c.name, sizeof c.name, "%s", name);
  return c;
}

/* in [4] -> body (dense 3) -> bn (batchnorm) -> head (dense `head` units) */
static int build(nn_model *m, const char *head, int units) {
  nn_layer_cfg c[3] = {named_dense("body", 3), cfg_of("batchnorm"), named_dense(head, units)};
  snprintf(c[1].name, sizeof c[1].name, "bn");
  nn_shape in = {1, {4}};
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_model_build(m, &in, c, 3, 2, &e);
  if (rc) fprintf(stderr, "build: %s\n", e.msg);
  if (!rc) nn_model_init_params(m, 1);
  return rc;
}

/* Write dataset `path` (groups created) of `type` with dims [nd]. */
static int put(hid_t f, const char *path, hid_t type, const hsize_t *dims, int nd,
               const void *data) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t s = H5Screate_simple(nd, dims, NULL);
  hid_t d = H5Dcreate2(f, path, type, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  int rc = d < 0 || H5Dwrite(d, type == H5T_IEEE_F64LE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT,
                             H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
  if (d >= 0) H5Dclose(d);
  H5Sclose(s);
  H5Pclose(lcpl);
  return rc ? -1 : 0;
}

/* A file with every tensor of a source model m (under `root`), plus one
 * tensor the target lacks. */
static int write_model(const char *path, const nn_model *m, const char *root) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return -1;
  int rc = 0;
  for (int i = 0; i < m->ntensors && !rc; i++) {
    const nn_tensor_ref *t = &m->tensors[i];
    char p[256];
    snprintf(p, sizeof p, "%s/%s/%s/%s", root, t->is_buffer ? "buffers" : "params", t->layer,
             t->name);
    hsize_t dims[NN_MAX_DIMS];
    for (int k = 0; k < t->shape.ndim; k++) dims[k] = (hsize_t)t->shape.dim[k];
    rc = put(f, p, H5T_IEEE_F32LE, dims, t->shape.ndim,
             (t->is_buffer ? m->buffers : m->params) + t->offset);
  }
  float extra[2] = {1, 2};
  hsize_t d2[1] = {2};
  char p[256];
  snprintf(p, sizeof p, "%s/params/unused/weight", root);
  if (!rc) rc = put(f, p, H5T_IEEE_F32LE, d2, 1, extra);
  H5Fclose(f);
  return rc;
}

static float *tensor(nn_model *m, const char *layer, const char *name) {
  int i = nn_model_find_tensor(m, layer, name);
  if (i < 0) return NULL;
  return (m->tensors[i].is_buffer ? m->buffers : m->params) + m->tensors[i].offset;
}

static char dir[64];

/* The scratch directory of this run, made on first use. */
static const char *scratch(void) {
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/nn_init_from_XXXXXX");
    if (!mkdtemp(dir)) dir[0] = '\0';
  }
  return dir;
}

/* Copies body and bn (params and buffers) exactly, keeps the new head. */
static void test_copies_matching(void) {
  for (int grouped = 0; grouped < 2; grouped++) {
    nn_model src, dst, fresh;
    ASSERT_OK(build(&src, "old_head", 5));
    for (size_t i = 0; i < src.nparams; i++) src.params[i] = 0.25f * (float)i - 3.0f;
    for (size_t i = 0; i < src.nbuffers; i++) src.buffers[i] = 10.0f + (float)i;
    char path[128];
    snprintf(path, sizeof path, "%s/src%d.h5", scratch(), grouped);
    ASSERT_OK(write_model(path, &src, grouped ? "/replicas/gen" : ""));
    ASSERT_OK(build(&dst, "new_head", 2));
    ASSERT_OK(build(&fresh, "new_head", 2));
    nn_init_report rep;
    nn_error e;
    nn_error_clear(&e);
    int rc = nn_init_read(path, "gen", &dst, &rep, &e);
    if (rc) fprintf(stderr, "init: %s\n", e.msg);
    ASSERT_OK(rc);
    ASSERT_EQ_INT(rep.ntensors, 2 + 2 + 2); /* body w+b, bn weight/bias, bn running stats */
    ASSERT_EQ_INT(rep.nlayers, 2);
    ASSERT_EQ_INT(rep.nnew, 1);
    ASSERT_STR_EQ(rep.copied, "body, bn");
    ASSERT_STR_EQ(rep.fresh, "new_head");
    const char *names[][2] = {{"body", "weight"}, {"body", "bias"}, {"bn", "weight"},
                              {"bn", "bias"}, {"bn", "running_mean"}, {"bn", "running_var"}};
    for (int k = 0; k < 6; k++) {
      int i = nn_model_find_tensor(&dst, names[k][0], names[k][1]);
      ASSERT_TRUE(i >= 0);
      ASSERT_TRUE(memcmp(tensor(&dst, names[k][0], names[k][1]),
                         tensor(&src, names[k][0], names[k][1]),
                         dst.tensors[i].count * sizeof(float)) == 0);
    }
    ASSERT_TRUE(memcmp(tensor(&dst, "new_head", "weight"), tensor(&fresh, "new_head", "weight"),
                       2 * 3 * sizeof(float)) == 0);
    nn_model_free(&src);
    nn_model_free(&dst);
    nn_model_free(&fresh);
  }
}

/* Same name, other shape: NN_ECKPT naming file, dataset and both shapes. */
static void test_shape_mismatch(void) {
  nn_model src, dst;
  ASSERT_OK(build(&src, "head", 5));
  char path[128];
  snprintf(path, sizeof path, "%s/mismatch.h5", scratch());
  ASSERT_OK(write_model(path, &src, ""));
  ASSERT_OK(build(&dst, "head", 2));
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_init_read(path, "model", &dst, NULL, &e), NN_ECKPT);
  ASSERT_STR_EQ(e.file, path);
  ASSERT_STR_CONTAINS(e.msg, "/params/head/weight");
  ASSERT_STR_CONTAINS(e.msg, "[5, 3]");
  ASSERT_STR_CONTAINS(e.msg, "[2, 3]");
  ASSERT_STR_EQ(e.where, "/params/head/weight");
  nn_model_free(&src);
  nn_model_free(&dst);
}

/* float64 data, a missing file, a file without the layout, a missing replica. */
static void test_bad_files(void) {
  nn_model m;
  ASSERT_OK(build(&m, "head", 2));
  char path[128];
  snprintf(path, sizeof path, "%s/f64.h5", scratch());
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  double w[12] = {0};
  hsize_t dims[2] = {3, 4};
  ASSERT_OK(put(f, "/params/body/weight", H5T_IEEE_F64LE, dims, 2, w));
  ASSERT_OK(put(f, "/other/x", H5T_IEEE_F64LE, dims, 2, w));
  H5Fclose(f);
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_init_read(path, "model", &m, NULL, &e), NN_ECKPT);
  ASSERT_STR_CONTAINS(e.msg, "/params/body/weight: wrong element type, expected float32");
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_init_read("/nonexistent/x.h5", "model", &m, NULL, &e), NN_ECKPT);
  ASSERT_STR_CONTAINS(e.msg, "cannot open");
  ASSERT_STR_EQ(e.file, "/nonexistent/x.h5");
  snprintf(path, sizeof path, "%s/nolayout.h5", scratch());
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_OK(put(f, "/other/x", H5T_IEEE_F64LE, dims, 2, w));
  H5Fclose(f);
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_init_read(path, "model", &m, NULL, &e), NN_ECKPT);
  ASSERT_STR_CONTAINS(e.msg, "no /params group");
  snprintf(path, sizeof path, "%s/src1.h5", scratch()); /* /replicas/gen from the first test */
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_init_read(path, "disc", &m, NULL, &e), NN_ECKPT);
  ASSERT_STR_CONTAINS(e.msg, "/replicas/disc");
  nn_model_free(&m);
}

/* Removes the files of the tests above (run last). */
static void test_cleanup(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ_INT(system(cmd), 0);
}

TEST_MAIN(TEST(test_copies_matching), TEST(test_shape_mismatch), TEST(test_bad_files),
          TEST(test_cleanup))
