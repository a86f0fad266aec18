/* test_checkpoint.c: HDF5 checkpoints: exact round trip (every byte of
 * every tensor, slot, state field, spec and metrics), rejection of damaged
 * files (a value rewritten behind the checksum's back, raw flipped bytes,
 * truncation, garbage, wrong format), refusal of non-finite values, choosing
 * the newest good checkpoint, pruning, SIGKILL at every stage of the
 * crash-safe write, the background writer, the step loop's pause with it, and
 * the documented layout read by h5py (/usr/bin/python3). */
#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "core/layer.h"
#include "core/model.h"
#include "test.h"

/* ---- fixtures --------------------------------------------------------------- */

static nn_layer_cfg dense(int units, const char *act) {
  nn_layer_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.type, sizeof c.type, "dense");
  nn_error e;
  nn_error_clear(&e);
  if (nn_layer_cfg_defaults(&c, &e) != 0) fprintf(stderr, "defaults: %s\n", e.msg);
  c.units = units;
  c.use_bias = 1;
  if (act) snprintf(c.activation, sizeof c.activation, "%s", act);
  return c;
}

/* A fresh empty directory under /tmp; path into buf. */
static int make_tmpdir(char *buf, size_t n) {
  snprintf(buf, n, "/tmp/nn_ckpt_test_XXXXXX");
  return mkdtemp(buf) ? 0 : -1;
}

static void rm_rf(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* Count entries of dir whose name ends with suffix. */
static int count_suffix(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  size_t ls = strlen(suffix);
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l >= ls && strcmp(de->d_name + l - ls, suffix) == 0) n++;
  }
  closedir(d);
  return n;
}

/* A small model: in [6] -> dense0(5, relu) -> dense1(3); plus, in a copy of
 * its tensor table, one buffer tensor "norm0/running_mean" [3] (no layer
 * declares buffers yet, and a checkpoint must still carry them). */
typedef struct fixture {
  nn_model m;
  nn_model view;        /* m with the extended tensor table */
  nn_tensor_ref tensors[16];
  float buffers[3];
  uint8_t *spec;
  size_t spec_len;
} fixture;

static const char *k_job =
    "name = \"ckpt_test\"\n"
    "[data]\ntrain = \"none-*.h5\"\n"
    "[model]\n[[model.layers]]\ntype = \"dense\"\nunits = 5\nactivation = \"relu\"\n"
    "[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
    "[train]\nepochs = 2\nbatch_size = 4\nloss = \"cross_entropy\"\nseed = 7\n"
    "[optimizer]\ntype = \"adam\"\nlr = 0.01\n";

static int fixture_init(fixture *fx) {
  memset(fx, 0, sizeof *fx);
  nn_layer_cfg c[2] = {dense(5, "relu"), dense(3, NULL)};
  nn_shape in = {1, {6}};
  nn_error e;
  nn_error_clear(&e);
  if (nn_model_build(&fx->m, &in, c, 2, 4, &e)) {
    fprintf(stderr, "build: %s\n", e.msg);
    return -1;
  }
  nn_model_init_params(&fx->m, 42);
  fx->view = fx->m;
  memcpy(fx->tensors, fx->m.tensors, (size_t)fx->m.ntensors * sizeof *fx->tensors);
  nn_tensor_ref *b = &fx->tensors[fx->m.ntensors];
  memset(b, 0, sizeof *b);
  snprintf(b->layer, sizeof b->layer, "norm0");
  snprintf(b->name, sizeof b->name, "running_mean");
  b->shape.ndim = 1;
  b->shape.dim[0] = 3;
  b->count = 3;
  b->is_buffer = 1;
  fx->view.tensors = fx->tensors;
  fx->view.ntensors = fx->m.ntensors + 1;
  fx->buffers[0] = 0.5f, fx->buffers[1] = -1.25f, fx->buffers[2] = 3.0f;
  fx->view.buffers = fx->buffers;
  fx->view.nbuffers = 3;
  nn_job *job = calloc(1, sizeof *job);
  int rc = job ? nn_job_parse(job, k_job, strlen(k_job), "ckpt_test.toml", NULL, 0, &e) : -1;
  if (!rc) rc = nn_job_pack(job, &fx->spec, &fx->spec_len, &e);
  if (rc) fprintf(stderr, "job: %s\n", e.msg);
  free(job);
  return rc;
}

static void fixture_free(fixture *fx) {
  nn_model_free(&fx->m);
  free(fx->spec);
}

/* Fill a snapshot of fx: Adam slots, distinctive state, UTF-8 metrics. */
static int fill_snapshot(fixture *fx, nn_ckpt_snapshot *s, int64_t step) {
  nn_error e;
  nn_error_clear(&e);
  if (nn_ckpt_snapshot_init(s, &fx->view, 2, &e)) {
    fprintf(stderr, "snapshot: %s\n", e.msg);
    return -1;
  }
  snprintf(s->optim_type, sizeof s->optim_type, "adam");
  snprintf(s->slot_names[0], sizeof s->slot_names[0], "exp_avg");
  snprintf(s->slot_names[1], sizeof s->slot_names[1], "exp_avg_sq");
  for (size_t i = 0; i < 2 * s->nparams; i++) s->slots[i] = (float)(i + 1) * 1e-3f + (float)step;
  for (size_t i = 0; i < s->nparams; i++) s->params[i] += (float)step;
  s->state.step = step;
  s->state.epoch = 3;
  s->state.epoch_step = 17;
  s->state.seed = 0xfedcba9876543210ULL;
  s->state.optim_t = (uint64_t)step + 1000;
  s->state.nranks = 4;
  s->state.lr = 1e-3 / 3;
  s->state.elapsed_s = 12.5;
  s->state.plateau_scale = 0.25;
  s->state.plateau_best = INFINITY;
  s->state.plateau_bad = 2;
  s->state.plateau_cooldown = 1;
  s->state.es_best = NAN;
  s->state.es_bad = 5;
  s->state.es_best_epoch = -1;
  const char *metrics = "{\"epoch\":1,\"loss\":0.5,\"note\":\"caf\xc3\xa9\"}\n"
                        "{\"epoch\":2,\"loss\":0.25}\n";
  if (nn_ckpt_snapshot_set_spec(s, fx->spec, fx->spec_len, &e) ||
      nn_ckpt_snapshot_set_metrics(s, metrics, strlen(metrics), &e)) {
    fprintf(stderr, "snapshot: %s\n", e.msg);
    return -1;
  }
  return 0;
}

/* 1 if a and b hold the same content, byte for byte; else 0 (says why). */
static int snap_same(const nn_ckpt_snapshot *a, const nn_ckpt_snapshot *b) {
#define DIFF(what)                                                  \
  do {                                                              \
    fprintf(stderr, "snapshots differ: %s\n", what);                \
    return 0;                                                       \
  } while (0)
  if (a->ntensors != b->ntensors || a->nparams != b->nparams || a->nbuffers != b->nbuffers ||
      a->nslots != b->nslots)
    DIFF("sizes");
  for (int i = 0; i < a->ntensors; i++) {
    const nn_tensor_ref *x = &a->tensors[i], *y = &b->tensors[i];
    if (strcmp(x->layer, y->layer) || strcmp(x->name, y->name) || !nn_shape_equal(&x->shape, &y->shape) ||
        x->offset != y->offset || x->count != y->count || x->is_buffer != y->is_buffer)
      DIFF("tensor table");
  }
  if (memcmp(a->params, b->params, a->nparams * 4)) DIFF("params");
  if (memcmp(a->buffers, b->buffers, a->nbuffers * 4)) DIFF("buffers");
  if (memcmp(a->slots, b->slots, (size_t)a->nslots * a->nparams * 4)) DIFF("slots");
  for (int k = 0; k < a->nslots; k++)
    if (strcmp(a->slot_names[k], b->slot_names[k])) DIFF("slot names");
  if (strcmp(a->optim_type, b->optim_type)) DIFF("optimizer type");
  if (memcmp(&a->state, &b->state, sizeof a->state)) DIFF("state");
  if (a->spec_len != b->spec_len || memcmp(a->spec, b->spec, a->spec_len)) DIFF("spec");
  if (a->metrics_len != b->metrics_len || strcmp(a->metrics, b->metrics)) DIFF("metrics");
  return 1;
#undef DIFF
}

/* Write a checkpoint of fx for `step` into DIR/checkpoints. */
static int write_step(fixture *fx, const char *dir, int64_t step) {
  nn_ckpt_snapshot s;
  char p[1200];
  nn_error e;
  nn_error_clear(&e);
  if (fill_snapshot(fx, &s, step)) return -1;
  nn_ckpt_path(dir, step, p, sizeof p);
  int rc = nn_ckpt_write(&s, p, &e);
  if (rc) fprintf(stderr, "write: %s\n", e.msg);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

static int read_ok(const char *path) {
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_ckpt_read(path, &s, &e);
  if (rc) fprintf(stderr, "read %s: %s\n", path, e.msg);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_roundtrip(void) {
  fixture fx;
  char dir[256], p[1200], cdir[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s, r;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_snapshot(&fx, &s, 12));
  nn_ckpt_path(dir, 12, p, sizeof p);
  ASSERT_STR_CONTAINS(p, "/checkpoints/step-000000000012.h5");
  ASSERT_OK(nn_ckpt_write(&s, p, &e)); /* creates DIR/checkpoints */
  int rc = nn_ckpt_read(p, &r, &e);
  if (rc) fprintf(stderr, "%s\n", e.msg);
  ASSERT_EQ_INT(rc, 0);
  int same = snap_same(&s, &r);
  ASSERT_EQ_INT(r.ntensors, 5); /* 2 dense layers x (weight, bias) + 1 buffer */
  ASSERT_EQ_INT(r.tensors[0].shape.dim[0], 5); /* dense0.weight [out=5, in=6] */
  ASSERT_EQ_INT(r.tensors[0].shape.dim[1], 6);
  ASSERT_EQ_INT(r.tensors[4].is_buffer, 1);
  ASSERT_EQ_INT(strlen(r.created), 20);
  ASSERT_TRUE(same);
  ASSERT_TRUE(isnan(r.state.es_best));
  ASSERT_TRUE(nn_ckpt_checksum(&s) == nn_ckpt_checksum(&r));
  /* the checksum depends on the content: one ulp in one parameter changes it */
  uint64_t h0 = nn_ckpt_checksum(&r);
  r.params[3] = nextafterf(r.params[3], 1e9f);
  ASSERT_TRUE(nn_ckpt_checksum(&r) != h0);
  snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
  ASSERT_EQ_INT(count_suffix(cdir, ".tmp"), 0);
  /* e2e_ckpt_kill.sh inspects this file: NN_CKPT_SAMPLE_OUT says where to put it */
  const char *out = getenv("NN_CKPT_SAMPLE_OUT");
  if (out) ASSERT_OK(nn_ckpt_write(&s, out, &e));
  /* the spec decodes to the job it came from */
  nn_job *job = calloc(1, sizeof *job);
  ASSERT_TRUE(job != NULL);
  rc = nn_job_unpack(job, s.spec, s.spec_len, &e);
  int units = job->model.layers[0].units;
  char name[64];
  snprintf(name, sizeof name, "%s", job->name);
  free(job);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_STR_EQ(name, "ckpt_test");
  ASSERT_EQ_INT(units, 5);
  nn_ckpt_snapshot_free(&s);
  nn_ckpt_snapshot_free(&r);
  fixture_free(&fx);
  rm_rf(dir);
}

/* Rewrite one float of dataset `ds` through HDF5 (the checksum attribute
 * is left alone). */
static int rewrite_value(const char *path, const char *ds) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return -1;
  hid_t d = H5Dopen2(f, ds, H5P_DEFAULT);
  float v[64];
  int rc = -1;
  if (d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0) {
    v[1] = nextafterf(v[1], 1e9f); /* the smallest change there is */
    rc = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0 ? -1 : 0;
  }
  if (d >= 0) H5Dclose(d);
  H5Fclose(f);
  return rc;
}

static int rewrite_state_step(const char *path, int64_t v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return -1;
  hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
  hid_t a = g >= 0 ? H5Aopen(g, "step", H5P_DEFAULT) : -1;
  int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0) ? 0 : -1;
  if (rc) H5Eprint2(H5E_DEFAULT, stderr);
  if (a >= 0) H5Aclose(a);
  if (g >= 0) H5Gclose(g);
  H5Fclose(f);
  return rc;
}

/* Flip one bit of the stored bytes of dataset ds (contiguous) in place. */
static int flip_raw(const char *path, const char *ds, long at) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return -1;
  hid_t d = H5Dopen2(f, ds, H5P_DEFAULT);
  haddr_t off = d >= 0 ? H5Dget_offset(d) : HADDR_UNDEF;
  if (d >= 0) H5Dclose(d);
  H5Fclose(f);
  if (off == HADDR_UNDEF) return -1;
  int fd = open(path, O_RDWR);
  if (fd < 0) return -1;
  unsigned char b;
  int rc = -1;
  if (pread(fd, &b, 1, (off_t)off + at) == 1) {
    b ^= 0x10;
    rc = pwrite(fd, &b, 1, (off_t)off + at) == 1 ? 0 : -1;
  }
  close(fd);
  return rc;
}

static void expect_damaged(const char *path, const char *needle, int *ok) {
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_ckpt_read(path, &s, &e);
  *ok = rc == NN_ECKPT && strcmp(e.file, path) == 0 && (!needle || strstr(e.msg, needle)) &&
        s.params == NULL;
  if (!*ok) fprintf(stderr, "expected NN_ECKPT (%s) for %s, got %d: %s: %s\n",
                    needle ? needle : "any", path, rc, e.file, e.msg);
  ssize_t open_ids = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open_ids != 0) {
    fprintf(stderr, "%zd HDF5 objects left open after reading %s (%s)\n", open_ids, path, e.msg);
    *ok = 0;
  }
  nn_ckpt_snapshot_free(&s);
}

static void test_damage_detected(void) {
  fixture fx;
  char dir[256], p[1200], q[1300];
  int ok = 0;
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  ASSERT_OK(write_step(&fx, dir, 1));
  nn_ckpt_path(dir, 1, p, sizeof p);
  snprintf(q, sizeof q, "%s.copy", p);
  const char *targets[] = {"params/dense1/weight", "optimizer/exp_avg_sq/dense0/bias",
                           "buffers/norm0/running_mean"};
  for (int i = 0; i < 3; i++) {
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", p, q);
    ASSERT_OK(system(cmd));
    ASSERT_OK(read_ok(q));
    ASSERT_OK(rewrite_value(q, targets[i]));
    expect_damaged(q, "checksum", &ok);
    ASSERT_TRUE(ok);
    ASSERT_OK(system(cmd));
    ASSERT_OK(flip_raw(q, targets[i], 2));
    expect_damaged(q, "checksum", &ok);
    ASSERT_TRUE(ok);
  }
  char cmd[3000];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", p, q);
  ASSERT_OK(system(cmd));
  ASSERT_OK(rewrite_state_step(q, 13));
  expect_damaged(q, "checksum", &ok);
  ASSERT_TRUE(ok);
  ASSERT_OK(read_ok(p)); /* the original is untouched */
  fixture_free(&fx);
  rm_rf(dir);
}

static void test_truncated_and_garbage(void) {
  fixture fx;
  char dir[256], p[1200], g[1300];
  int ok = 0;
  struct stat st;
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  ASSERT_OK(write_step(&fx, dir, 1));
  nn_ckpt_path(dir, 1, p, sizeof p);
  ASSERT_OK(stat(p, &st));
  off_t cuts[] = {st.st_size - 1, st.st_size / 2, 600, 8, 0};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    ASSERT_OK(truncate(p, cuts[i]));
    expect_damaged(p, NULL, &ok);
    ASSERT_TRUE(ok);
  }
  /* garbage: random bytes, and text */
  snprintf(g, sizeof g, "%s/garbage.h5", dir);
  FILE *f = fopen(g, "wb");
  ASSERT_TRUE(f != NULL);
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 5000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    fputc((int)(x & 0xff), f);
  }
  fclose(f);
  expect_damaged(g, "not an HDF5 file", &ok);
  ASSERT_TRUE(ok);
  /* an HDF5 file that is not a checkpoint */
  hid_t h = H5Fcreate(g, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_TRUE(h >= 0);
  H5Fclose(h);
  expect_damaged(g, "format", &ok);
  ASSERT_TRUE(ok);
  /* missing */
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  snprintf(g, sizeof g, "%s/none.h5", dir);
  ASSERT_EQ_INT(nn_ckpt_read(g, &s, &e), NN_ENOTFOUND);
  ASSERT_STR_EQ(e.file, g);
  fixture_free(&fx);
  rm_rf(dir);
}

static void test_nonfinite_refused(void) {
  fixture fx;
  char dir[256], p1[1200], p2[1200], cdir[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  ASSERT_OK(write_step(&fx, dir, 1));
  nn_ckpt_path(dir, 1, p1, sizeof p1);
  nn_ckpt_path(dir, 2, p2, sizeof p2);
  snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
  nn_ckpt_snapshot s;
  nn_error e;
  ASSERT_OK(fill_snapshot(&fx, &s, 2));
  for (int c = 0; c < 3; c++) {
    nn_error_clear(&e);
    float *where = c == 0 ? &s.params[7] : c == 1 ? &s.slots[s.nparams + 2] : &s.buffers[1];
    float keep = *where;
    *where = c == 0 ? NAN : c == 1 ? INFINITY : -INFINITY;
    int rc = nn_ckpt_write(&s, p2, &e);
    *where = keep;
    ASSERT_EQ_INT(rc, NN_ENUMERIC);
    ASSERT_STR_CONTAINS(e.msg, c == 0 ? "dense0/weight[7]" : c == 1 ? "exp_avg_sq" : "norm0");
    ASSERT_TRUE(!file_exists(p2));
    ASSERT_EQ_INT(count_suffix(cdir, ".tmp"), 0);
    ASSERT_OK(read_ok(p1));
  }
  nn_error_clear(&e);
  ASSERT_OK(nn_ckpt_write(&s, p2, &e)); /* the clean one still writes */
  ASSERT_OK(read_ok(p2));
  nn_ckpt_snapshot_free(&s);
  fixture_free(&fx);
  rm_rf(dir);
}

typedef struct warn_count {
  int n;
  char last[1300];
} warn_count;

static void count_warn(void *user, const nn_error *e) {
  warn_count *w = user;
  w->n++;
  snprintf(w->last, sizeof w->last, "%s", e->file);
}

static void test_read_latest(void) {
  fixture fx;
  char dir[256], p[1200], got[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  warn_count wc = {0, ""};
  ASSERT_EQ_INT(nn_ckpt_read_latest(dir, &s, got, sizeof got, count_warn, &wc, &e),
                NN_ENOTFOUND);
  for (int64_t st = 1; st <= 3; st++) ASSERT_OK(write_step(&fx, dir, st * 100));
  ASSERT_OK(nn_ckpt_read_latest(dir, &s, got, sizeof got, count_warn, &wc, &e));
  ASSERT_EQ_INT(s.state.step, 300);
  ASSERT_EQ_INT(wc.n, 0);
  nn_ckpt_snapshot_free(&s);
  nn_ckpt_path(dir, 300, p, sizeof p);
  struct stat st;
  ASSERT_OK(stat(p, &st));
  ASSERT_OK(truncate(p, st.st_size / 3)); /* newest is damaged */
  ASSERT_OK(nn_ckpt_read_latest(dir, &s, got, sizeof got, count_warn, &wc, &e));
  ASSERT_EQ_INT(s.state.step, 200);
  ASSERT_EQ_INT(wc.n, 1);
  ASSERT_STR_EQ(wc.last, p);
  ASSERT_STR_CONTAINS(got, "step-000000000200.h5");
  nn_ckpt_snapshot_free(&s);
  /* all damaged: not found, each reported */
  for (int64_t k = 1; k <= 2; k++) {
    nn_ckpt_path(dir, k * 100, p, sizeof p);
    ASSERT_OK(truncate(p, 100));
  }
  wc.n = 0;
  ASSERT_EQ_INT(nn_ckpt_read_latest(dir, &s, got, sizeof got, count_warn, &wc, &e),
                NN_ENOTFOUND);
  ASSERT_EQ_INT(wc.n, 3);
  ASSERT_TRUE(s.params == NULL);
  fixture_free(&fx);
  rm_rf(dir);
}

static void test_prune(void) {
  fixture fx;
  char dir[256], p[1400], cdir[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_ckpt_prune(dir, 2, &e)); /* no checkpoints directory yet */
  for (int64_t st = 1; st <= 5; st++) ASSERT_OK(write_step(&fx, dir, st));
  snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
  const char *extra[] = {"step-000000000006.h5.tmp", "other.tmp", "notes.txt", "step-12.h5"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", cdir, extra[i]);
    FILE *f = fopen(p, "w");
    ASSERT_TRUE(f != NULL);
    fputs("partial", f);
    fclose(f);
  }
  ASSERT_EQ_INT(count_suffix(cdir, ".tmp"), 2);
  ASSERT_OK(nn_ckpt_prune(dir, 0, &e)); /* keep all, remove .tmp */
  ASSERT_EQ_INT(count_suffix(cdir, ".tmp"), 0);
  ASSERT_EQ_INT(count_suffix(cdir, ".h5"), 6);
  ASSERT_OK(nn_ckpt_prune(dir, 2, &e));
  ASSERT_EQ_INT(count_suffix(cdir, ".h5"), 3); /* 4, 5 and the foreign step-12.h5 */
  for (int64_t st = 1; st <= 5; st++) {
    nn_ckpt_path(dir, st, p, sizeof p);
    ASSERT_EQ_INT(file_exists(p), st >= 4);
  }
  snprintf(p, sizeof p, "%s/notes.txt", cdir);
  ASSERT_TRUE(file_exists(p));
  fixture_free(&fx);
  rm_rf(dir);
}

/* Kill the writer at each stage; the directory must hold only complete
 * checkpoints, and the newest good one must be found. */
static void test_kill_injection(void) {
  static const char *stages[] = {"data", "close", "sync", "verify", "rename", "dirsync", "prune"};
  fixture fx;
  ASSERT_OK(fixture_init(&fx));
  for (size_t si = 0; si < sizeof stages / sizeof stages[0]; si++) {
    const char *stage = stages[si];
    char dir[256], p1[1200], p2[1200], p3[1200], cdir[1200], got[1200];
    ASSERT_OK(make_tmpdir(dir, sizeof dir));
    snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
    ASSERT_OK(write_step(&fx, dir, 1));
    nn_ckpt_path(dir, 1, p1, sizeof p1);
    nn_ckpt_path(dir, 2, p2, sizeof p2);
    nn_ckpt_path(dir, 3, p3, sizeof p3);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
      setenv("NN_CKPT_KILL_AT", stage, 1);
      nn_error e;
      nn_error_clear(&e);
      if (write_step(&fx, dir, 2) == 0) nn_ckpt_prune(dir, 1, &e);
      _exit(0); /* not killed: the hook did not fire */
    }
    int status = 0;
    ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
      fprintf(stderr, "stage %s: child status %d\n", stage, status);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    int late = si >= 4; /* renamed: step 2 is complete */
    /* every file under a final name reads and verifies */
    DIR *d = opendir(cdir);
    ASSERT_TRUE(d != NULL);
    struct dirent *de;
    int finals = 0, fails = 0;
    while ((de = readdir(d))) {
      size_t l = strlen(de->d_name);
      if (l < 3 || strcmp(de->d_name + l - 3, ".h5") != 0) continue;
      char p[1500];
      snprintf(p, sizeof p, "%s/%s", cdir, de->d_name);
      finals++;
      if (read_ok(p)) fails++;
    }
    closedir(d);
    ASSERT_EQ_INT(fails, 0);
    ASSERT_EQ_INT(finals, strcmp(stage, "prune") == 0 ? 1 : late ? 2 : 1);
    ASSERT_EQ_INT(file_exists(p2), late);
    if (strcmp(stage, "prune") != 0) ASSERT_OK(read_ok(p1)); /* the earlier one is intact */
    nn_ckpt_snapshot s;
    nn_error e;
    nn_error_clear(&e);
    warn_count wc = {0, ""};
    ASSERT_OK(nn_ckpt_read_latest(dir, &s, got, sizeof got, count_warn, &wc, &e));
    ASSERT_EQ_INT(s.state.step, late ? 2 : 1);
    ASSERT_EQ_INT(wc.n, 0);
    nn_ckpt_snapshot_free(&s);
    /* recovery: prune removes the killed writer's .tmp, a new write works */
    ASSERT_OK(nn_ckpt_prune(dir, 0, &e));
    ASSERT_EQ_INT(count_suffix(cdir, ".tmp"), 0);
    ASSERT_OK(write_step(&fx, dir, 3));
    ASSERT_OK(read_ok(p3));
    rm_rf(dir);
  }
  fixture_free(&fx);
}

static void test_writer_async(void) {
  fixture fx;
  char dir[256], cdir[1200], p[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
  nn_ckpt_writer *w = NULL;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_ckpt_writer_start(&w, dir, 2, &e));
  ASSERT_EQ_INT(nn_ckpt_writer_submit(w, "", &e), NN_EINVAL); /* no slot taken */
  ASSERT_OK(nn_ckpt_writer_init_snapshots(w, &fx.view, 2, &e));
  nn_ckpt_snapshot *prev = NULL;
  for (int64_t st = 1; st <= 5; st++) {
    nn_ckpt_snapshot *s = nn_ckpt_writer_slot(w);
    ASSERT_TRUE(s != NULL && s != prev); /* two snapshots alternate */
    prev = s;
    snprintf(s->optim_type, sizeof s->optim_type, "adam");
    snprintf(s->slot_names[0], sizeof s->slot_names[0], "exp_avg");
    snprintf(s->slot_names[1], sizeof s->slot_names[1], "exp_avg_sq");
    for (size_t i = 0; i < s->nparams; i++) s->params[i] = (float)st * 1000 + (float)i;
    for (size_t i = 0; i < 2 * s->nparams; i++) s->slots[i] = (float)st;
    s->state.step = st;
    s->state.optim_t = (uint64_t)st;
    ASSERT_OK(nn_ckpt_snapshot_set_spec(s, fx.spec, fx.spec_len, &e));
    ASSERT_OK(nn_ckpt_writer_submit(w, "", &e));
  }
  ASSERT_OK(nn_ckpt_writer_wait(w, &e));
  ASSERT_EQ_INT(count_suffix(cdir, ".h5"), 2);
  for (int64_t st = 4; st <= 5; st++) {
    nn_ckpt_snapshot r;
    nn_ckpt_path(dir, st, p, sizeof p);
    ASSERT_OK(nn_ckpt_read(p, &r, &e));
    int good = r.state.step == st && r.params[7] == (float)st * 1000 + 7 && r.slots[3] == (float)st;
    nn_ckpt_snapshot_free(&r);
    ASSERT_TRUE(good);
  }
  /* a failure is reported by the next wait, once; the writer keeps going */
  nn_ckpt_snapshot *s = nn_ckpt_writer_slot(w);
  s->params[0] = NAN;
  s->state.step = 6;
  ASSERT_OK(nn_ckpt_writer_submit(w, NULL, &e));
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_ckpt_writer_wait(w, &e), NN_ENUMERIC);
  ASSERT_STR_CONTAINS(e.file, "step-000000000006.h5");
  ASSERT_OK(nn_ckpt_writer_wait(w, &e));
  s = nn_ckpt_writer_slot(w);
  s->params[0] = 1;
  s->state.step = 7;
  snprintf(p, sizeof p, "%s/explicit.h5", dir);
  ASSERT_OK(nn_ckpt_writer_submit(w, p, &e));
  nn_ckpt_writer_free(w); /* waits for the write */
  ASSERT_OK(read_ok(p));
  nn_ckpt_path(dir, 6, p, sizeof p);
  ASSERT_TRUE(!file_exists(p));
  fixture_free(&fx);
  rm_rf(dir);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The MLP of jobs/fashion_mnist_mlp.toml (235,146 parameters) with Adam
 * slots: the step loop's pause (slot + copy + submit) against a synchronous
 * write. Prints both; the pause must be the smaller. */
static void test_writer_pause(void) {
  nn_layer_cfg c[3] = {dense(256, "relu"), dense(128, "relu"), dense(10, NULL)};
  nn_shape in = {3, {1, 28, 28}};
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  nn_layer_cfg cf;
  memset(&cf, 0, sizeof cf);
  snprintf(cf.type, sizeof cf.type, "flatten");
  nn_layer_cfg all[4] = {cf, c[0], c[1], c[2]};
  ASSERT_OK(nn_layer_cfg_defaults(&all[0], &e));
  ASSERT_OK(nn_model_build(&m, &in, all, 4, 1, &e));
  nn_model_init_params(&m, 1);
  ASSERT_EQ_INT(m.nparams, 235146);
  float *slots = calloc(2 * m.nparams, sizeof(float));
  ASSERT_TRUE(slots != NULL);
  for (size_t i = 0; i < 2 * m.nparams; i++) slots[i] = (float)i * 1e-7f;
  char dir[256], p[1200];
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  enum { REPS = 3 };
  double sync_t[REPS], pause_t[REPS];
  nn_ckpt_snapshot s;
  ASSERT_OK(nn_ckpt_snapshot_init(&s, &m, 2, &e));
  snprintf(s.optim_type, sizeof s.optim_type, "adam");
  snprintf(s.slot_names[0], 32, "exp_avg");
  snprintf(s.slot_names[1], 32, "exp_avg_sq");
  memcpy(s.slots, slots, 2 * m.nparams * sizeof(float));
  for (int r = 0; r < REPS; r++) {
    s.state.step = r;
    nn_ckpt_path(dir, r, p, sizeof p);
    double t0 = now_s();
    ASSERT_OK(nn_ckpt_write(&s, p, &e));
    sync_t[r] = now_s() - t0;
  }
  nn_ckpt_snapshot_free(&s);
  nn_ckpt_writer *w = NULL;
  ASSERT_OK(nn_ckpt_writer_start(&w, dir, 2, &e));
  ASSERT_OK(nn_ckpt_writer_init_snapshots(w, &m, 2, &e));
  for (int r = 0; r < REPS; r++) {
    double t0 = now_s();
    nn_ckpt_snapshot *ws = nn_ckpt_writer_slot(w);
    memcpy(ws->params, m.params, m.nparams * sizeof(float));
    memcpy(ws->slots, slots, 2 * m.nparams * sizeof(float));
    snprintf(ws->optim_type, sizeof ws->optim_type, "adam");
    snprintf(ws->slot_names[0], 32, "exp_avg");
    snprintf(ws->slot_names[1], 32, "exp_avg_sq");
    ws->state.step = 10 + r;
    ASSERT_OK(nn_ckpt_writer_submit(w, "", &e));
    pause_t[r] = now_s() - t0;
    ASSERT_OK(nn_ckpt_writer_wait(w, &e)); /* each pause measured with an idle writer */
  }
  nn_ckpt_writer_free(w);
  double smin = sync_t[0], pmin = pause_t[0];
  for (int r = 1; r < REPS; r++) {
    smin = sync_t[r] < smin ? sync_t[r] : smin;
    pmin = pause_t[r] < pmin ? pause_t[r] : pmin;
  }
  fprintf(stderr,
          "MLP %zu params + 2 Adam slots: synchronous nn_ckpt_write %.2f ms (min of %d: %.2f %.2f "
          "%.2f); step-loop pause slot+copy+submit %.3f ms (min; %.3f %.3f %.3f)\n",
          m.nparams, 1e3 * smin, REPS, 1e3 * sync_t[0], 1e3 * sync_t[1], 1e3 * sync_t[2],
          1e3 * pmin, 1e3 * pause_t[0], 1e3 * pause_t[1], 1e3 * pause_t[2]);
  free(slots);
  nn_model_free(&m);
  rm_rf(dir);
  ASSERT_TRUE(pmin < smin);
}

/* The documented layout, read by h5py: attributes are str, shapes are
 * PyTorch's, the metrics text is intact, and the checksum recomputed in
 * Python by the algorithm of docs/checkpoint-format.md matches. */
static const char *k_py =
    "import sys, struct, h5py, numpy as np\n"
    "FNV_OFFSET, FNV_PRIME, MASK = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1\n"
    "def fnv(h, data):\n"
    "    for b in data:\n"
    "        h = ((h ^ b) * FNV_PRIME) & MASK\n"
    "    return h\n"
    "def item(h, name, payload):\n"
    "    h = fnv(h, name.encode() + b'\\0' + struct.pack('<Q', len(payload)))\n"
    "    return fnv(h, payload)\n"
    "STATE = [('step','<q'),('epoch','<i'),('epoch_step','<q'),('seed','<Q'),('optim_t','<Q'),\n"
    "         ('nranks','<i'),('lr','<d'),('elapsed_s','<d'),('plateau_scale','<d'),\n"
    "         ('plateau_best','<d'),('plateau_bad','<i'),('plateau_cooldown','<i'),\n"
    "         ('es_best','<d'),('es_bad','<i'),('es_best_epoch','<i')]\n"
    "def checksum(f):\n"
    "    h = item(FNV_OFFSET, 'format', f.attrs['format'].encode())\n"
    "    h = item(h, 'version', struct.pack('<i', int(f.attrs['version'])))\n"
    "    h = item(h, 'spec', f['spec'][()].tobytes())\n"
    "    for rec in f['tensors'][()]:\n"
    "        group = 'buffers' if rec['is_buffer'] else 'params'\n"
    "        key = '%s/%s/%s' % (group, rec['layer'].decode(), rec['name'].decode())\n"
    "        shape = [int(d) for d in rec['shape'][:rec['ndim']]]\n"
    "        h = item(h, key + ':shape', struct.pack('<%dq' % len(shape), *shape))\n"
    "        h = item(h, key, np.asarray(f[key], dtype='<f4').tobytes())\n"
    "    opt = f['optimizer']\n"
    "    h = item(h, 'optimizer/type', opt.attrs['type'].encode())\n"
    "    h = item(h, 'optimizer/t', struct.pack('<Q', int(opt.attrs['t'])))\n"
    "    for slot in opt.attrs['slots']:\n"
    "        h = item(h, 'optimizer/slot', slot.encode())\n"
    "        for rec in f['tensors'][()]:\n"
    "            if rec['is_buffer']: continue\n"
    "            key = 'optimizer/%s/%s/%s' % (slot, rec['layer'].decode(), rec['name'].decode())\n"
    "            h = item(h, key, np.asarray(f[key], dtype='<f4').tobytes())\n"
    "    for name, fmt in STATE:\n"
    "        h = item(h, 'state/' + name, struct.pack(fmt, f['state'].attrs[name]))\n"
    "    return item(h, 'metrics', f['metrics'].asstr()[()].encode())\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "assert f.attrs['format'] == 'nntrain-checkpoint', f.attrs['format']\n"
    "assert f.attrs['version'] == 1\n"
    "assert isinstance(f.attrs['created'], str)\n"
    "assert f['params/dense0/weight'].shape == (5, 6), f['params/dense0/weight'].shape\n"
    "assert f['params/dense0/bias'].shape == (5,)\n"
    "assert f['params/dense1/weight'].shape == (3, 5)\n"
    "assert f['params/dense0/weight'].dtype == np.float32\n"
    "assert f['buffers/norm0/running_mean'][1] == -1.25\n"
    "assert f['optimizer/exp_avg_sq/dense1/weight'].shape == (3, 5)\n"
    "assert list(f['optimizer'].attrs['slots']) == ['exp_avg', 'exp_avg_sq']\n"
    "assert f['optimizer'].attrs['type'] == 'adam'\n"
    "assert f['state'].attrs['step'] == 12 and f['state'].attrs['epoch'] == 3\n"
    "m = f['metrics'].asstr()[()]\n"
    "assert 'caf\\u00e9' in m and m.count('\\n') == 2, m\n"
    "sd = {k: np.asarray(v) for k, v in f['params/dense0'].items()}\n"
    "assert abs(float(sd['weight'][1, 2]) - float(sys.argv[2])) < 1e-6, (sd['weight'][1, 2], sys.argv[2])\n"
    "got = '%016x' % checksum(f)\n"
    "assert got == f.attrs['checksum'], (got, f.attrs['checksum'])\n"
    "print('h5py ok', got)\n";

static void test_h5py_layout(void) {
  if (access("/usr/bin/python3", X_OK) != 0 ||
      system("/usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null") != 0) {
    fprintf(stderr, "SKIPPED: /usr/bin/python3 with h5py and numpy is not available\n");
    return;
  }
  fixture fx;
  char dir[256], p[1200], py[1300], cmd[3000];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_snapshot(&fx, &s, 12));
  nn_ckpt_path(dir, 12, p, sizeof p);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  snprintf(py, sizeof py, "%s/check.py", dir);
  FILE *f = fopen(py, "w");
  ASSERT_TRUE(f != NULL);
  fputs(k_py, f);
  fclose(f);
  /* dense0.weight [5, 6] row-major: element [1, 2] is at 1 * 6 + 2 */
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' %.9g", py, p, (double)s.params[1 * 6 + 2]);
  int rc = system(cmd);
  nn_ckpt_snapshot_free(&s);
  fixture_free(&fx);
  rm_rf(dir);
  ASSERT_EQ_INT(rc, 0);
}

TEST_MAIN(TEST(test_roundtrip), TEST(test_damage_detected), TEST(test_truncated_and_garbage),
          TEST(test_nonfinite_refused), TEST(test_read_latest), TEST(test_prune),
          TEST(test_kill_injection), TEST(test_writer_async), TEST(test_writer_pause),
          TEST(test_h5py_layout))
