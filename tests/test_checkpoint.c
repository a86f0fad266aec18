/* test_checkpoint.c: HDF5 checkpoints: exact round trip (every byte of
 * every replica's tensors and slots, state, spec and metrics; one replica and
 * two; frozen parameters without slots), a version 1 file written by the
 * v1 writer (tests/fixtures/ckpt_v1) read as the replica "model", rejection
 * of damaged files (a value rewritten behind the checksum's back, raw
 * flipped bytes, truncation, garbage, wrong format, a missing or duplicated
 * replica, wrong counts, bad names), refusal of non-finite values, choosing
 * the newest good checkpoint, pruning, the background writer and the step
 * loop's pause with it. SIGKILL at every stage of the write is
 * test_checkpoint_kill.c; the layout read by h5py is test_checkpoint_h5py.c. */
#include "ckpt_fixture.h"

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
  ASSERT_EQ_INT(r.version, 2);
  ASSERT_EQ_INT(r.nreplicas, 1);
  ASSERT_STR_EQ(r.rep[0].name, "model");
  ASSERT_EQ_INT(nn_ckpt_find_replica(&r, "model"), 0);
  ASSERT_EQ_INT(nn_ckpt_find_replica(&r, "disc"), -1);
  ASSERT_EQ_INT(r.rep[0].ntensors, 5); /* 2 dense layers x (weight, bias) + 1 buffer */
  ASSERT_EQ_INT(r.rep[0].tensors[0].shape.dim[0], 5); /* dense0.weight [out=5, in=6] */
  ASSERT_EQ_INT(r.rep[0].tensors[0].shape.dim[1], 6);
  ASSERT_EQ_INT(r.rep[0].tensors[4].is_buffer, 1);
  ASSERT_TRUE(r.rep[0].optim_t == 1012);
  ASSERT_EQ_INT(strlen(r.created), 20);
  ASSERT_TRUE(same);
  ASSERT_TRUE(isnan(r.state.decide.es.best));
  ASSERT_TRUE(nn_ckpt_checksum(&s) == nn_ckpt_checksum(&r));
  /* the checksum depends on the content: one ulp in one parameter changes it */
  uint64_t h0 = nn_ckpt_checksum(&r);
  r.rep[0].params[3] = nextafterf(r.rep[0].params[3], 1e9f);
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
  int units = cfg_num(&job->model.layers[0], "units");
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
        s.nreplicas == 0 && s.spec == NULL && !strchr(e.msg, '\n');
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
  const char *targets[] = {"replicas/model/params/dense1/weight",
                           "replicas/model/optimizer/exp_avg_sq/dense0/bias",
                           "replicas/model/buffers/norm0/running_mean"};
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
  /* missing: a missing checkpoint is NN_ECKPT (exit 5, README), not NN_ENOTFOUND (4) */
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  snprintf(g, sizeof g, "%s/none.h5", dir);
  ASSERT_EQ_INT(nn_ckpt_read(g, &s, &e), NN_ECKPT);
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
    nn_ckpt_replica *r = &s.rep[0];
    float *where = c == 0 ? &r->params[7] : c == 1 ? &r->slots[r->ntrainable + 2] : &r->buffers[1];
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
  ASSERT_TRUE(s.nreplicas == 0);
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
  const char *names[1] = {"model"};
  const nn_model *models[1] = {&fx.view};
  int nslots[1] = {2};
  ASSERT_OK(nn_ckpt_writer_init_snapshots(w, 1, names, models, nslots, &e));
  nn_ckpt_snapshot *prev = NULL;
  for (int64_t st = 1; st <= 5; st++) {
    nn_ckpt_snapshot *s = nn_ckpt_writer_slot(w);
    ASSERT_TRUE(s != NULL && s != prev); /* two snapshots alternate */
    prev = s;
    nn_ckpt_replica *r = &s->rep[0];
    snprintf(r->optim_type, sizeof r->optim_type, "adam");
    snprintf(r->slot_names[0], sizeof r->slot_names[0], "exp_avg");
    snprintf(r->slot_names[1], sizeof r->slot_names[1], "exp_avg_sq");
    for (size_t i = 0; i < r->nparams; i++) r->params[i] = (float)st * 1000 + (float)i;
    for (size_t i = 0; i < 2 * r->ntrainable; i++) r->slots[i] = (float)st;
    s->state.step = st;
    r->optim_t = (uint64_t)st;
    ASSERT_OK(nn_ckpt_snapshot_set_spec(s, fx.spec, fx.spec_len, &e));
    ASSERT_OK(nn_ckpt_writer_submit(w, "", &e));
  }
  ASSERT_OK(nn_ckpt_writer_wait(w, &e));
  ASSERT_EQ_INT(count_suffix(cdir, ".h5"), 2);
  for (int64_t st = 4; st <= 5; st++) {
    nn_ckpt_snapshot r;
    nn_ckpt_path(dir, st, p, sizeof p);
    ASSERT_OK(nn_ckpt_read(p, &r, &e));
    int good = r.state.step == st && r.rep[0].params[7] == (float)st * 1000 + 7 &&
               r.rep[0].slots[3] == (float)st && r.rep[0].optim_t == (uint64_t)st;
    nn_ckpt_snapshot_free(&r);
    ASSERT_TRUE(good);
  }
  /* a failure is reported by the next wait, once; the writer keeps going */
  nn_ckpt_snapshot *s = nn_ckpt_writer_slot(w);
  s->rep[0].params[0] = NAN;
  s->state.step = 6;
  ASSERT_OK(nn_ckpt_writer_submit(w, NULL, &e));
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_ckpt_writer_wait(w, &e), NN_ENUMERIC);
  ASSERT_STR_CONTAINS(e.file, "step-000000000006.h5");
  ASSERT_OK(nn_ckpt_writer_wait(w, &e));
  s = nn_ckpt_writer_slot(w);
  s->rep[0].params[0] = 1;
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
  const char *names[1] = {"model"};
  const nn_model *models[1] = {&m};
  int nslots[1] = {2};
  ASSERT_OK(nn_ckpt_snapshot_init(&s, 1, names, models, nslots, &e));
  snprintf(s.rep[0].optim_type, sizeof s.rep[0].optim_type, "adam");
  snprintf(s.rep[0].slot_names[0], 32, "exp_avg");
  snprintf(s.rep[0].slot_names[1], 32, "exp_avg_sq");
  memcpy(s.rep[0].slots, slots, 2 * m.nparams * sizeof(float));
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
  ASSERT_OK(nn_ckpt_writer_init_snapshots(w, 1, names, models, nslots, &e));
  for (int r = 0; r < REPS; r++) {
    double t0 = now_s();
    nn_ckpt_snapshot *ws = nn_ckpt_writer_slot(w);
    nn_ckpt_replica *wr = &ws->rep[0];
    memcpy(wr->params, m.params, m.nparams * sizeof(float));
    memcpy(wr->slots, slots, 2 * m.nparams * sizeof(float));
    snprintf(wr->optim_type, sizeof wr->optim_type, "adam");
    snprintf(wr->slot_names[0], 32, "exp_avg");
    snprintf(wr->slot_names[1], 32, "exp_avg_sq");
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

/* Two replicas round-trip: every field of each, in order, and the
 * frozen tail of "disc" has no slots. */
static void test_two_replicas(void) {
  fixture fx;
  char dir[256], p[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s, r;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_two(&fx, &s, 12));
  nn_ckpt_path(dir, 12, p, sizeof p);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  int rc = nn_ckpt_read(p, &r, &e);
  if (rc) fprintf(stderr, "%s\n", e.msg);
  ASSERT_EQ_INT(rc, 0);
  int same = snap_same(&s, &r);
  ASSERT_TRUE(same);
  ASSERT_EQ_INT(r.version, 2);
  ASSERT_EQ_INT(r.nreplicas, 2);
  ASSERT_EQ_INT(nn_ckpt_find_replica(&r, "gen"), 0);
  ASSERT_EQ_INT(nn_ckpt_find_replica(&r, "disc"), 1);
  ASSERT_EQ_INT(nn_ckpt_find_replica(&r, "model"), -1);
  ASSERT_EQ_INT((int)r.rep[1].ntrainable, 16);
  ASSERT_EQ_INT((int)r.rep[1].nparams, 16 + 10);
  ASSERT_TRUE(r.rep[1].slots[15] == -15.25f);
  ASSERT_TRUE(r.rep[0].optim_t == 77 && r.rep[1].optim_t == 5);
  ASSERT_TRUE(nn_ckpt_checksum(&s) == nn_ckpt_checksum(&r));
  /* the replicas' order is part of the content */
  nn_ckpt_replica t = r.rep[0];
  r.rep[0] = r.rep[1];
  r.rep[1] = t;
  ASSERT_TRUE(nn_ckpt_checksum(&s) != nn_ckpt_checksum(&r));
  /* what a writer refuses: duplicate names, a bad name, a ragged trained tail */
  snprintf(s.rep[1].name, sizeof s.rep[1].name, "gen");
  ASSERT_EQ_INT(nn_ckpt_write(&s, p, &e), NN_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "two replicas are called 'gen'");
  snprintf(s.rep[1].name, sizeof s.rep[1].name, "a/b");
  ASSERT_EQ_INT(nn_ckpt_write(&s, p, &e), NN_EINVAL);
  snprintf(s.rep[1].name, sizeof s.rep[1].name, "disc");
  s.rep[1].ntrainable = 13;
  ASSERT_EQ_INT(nn_ckpt_write(&s, p, &e), NN_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "does not end on a tensor");
  /* and what snapshot_init refuses */
  nn_ckpt_snapshot bad;
  const char *names[2] = {"x", "x"};
  const nn_model *models[2] = {&fx.m, &fx.m2};
  int nslots[2] = {0, 0};
  ASSERT_EQ_INT(nn_ckpt_snapshot_init(&bad, 2, names, models, nslots, &e), NN_EINVAL);
  ASSERT_EQ_INT(nn_ckpt_snapshot_init(&bad, NN_CKPT_MAX_REPLICAS + 1, names, models, nslots, &e),
                NN_EINVAL);
  ASSERT_TRUE(bad.nreplicas == 0 && bad.spec == NULL);
  ASSERT_OK(read_ok(p)); /* refused writes left the file alone */
  nn_ckpt_snapshot_free(&s);
  nn_ckpt_snapshot_free(&r);
  fixture_free(&fx);
  rm_rf(dir);
}

/* A version 1 file written by the v1 writer (nntrain before replica groups;
 * tests/fixtures/ckpt_v1, see its job.toml): it reads as the one replica
 * "model" with optim_t from /state, and written again it becomes a version
 * 2 file with the same content. tests/e2e_ckpt_v1.sh resumes a run from it. */
static void test_v1_fixture(void) {
  const char *srcdir = getenv("NN_SOURCE_DIR");
  char p[1200], dir[256], q[1300];
  snprintf(p, sizeof p, "%s/tests/fixtures/ckpt_v1/step-000000000017.h5",
           srcdir ? srcdir : "..");
  nn_ckpt_snapshot r, r2;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_ckpt_read(p, &r, &e);
  if (rc) fprintf(stderr, "%s\n", e.msg);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_EQ_INT(r.version, 1);
  ASSERT_EQ_INT(r.nreplicas, 1);
  ASSERT_STR_EQ(r.rep[0].name, "model");
  ASSERT_EQ_INT((int)r.rep[0].nparams, 4792);
  ASSERT_EQ_INT((int)r.rep[0].ntrainable, 4792);
  ASSERT_EQ_INT((int)r.rep[0].nbuffers, 12);
  ASSERT_EQ_INT(r.rep[0].nslots, 2);
  ASSERT_STR_EQ(r.rep[0].optim_type, "adam");
  ASSERT_STR_EQ(r.rep[0].slot_names[1], "exp_avg_sq");
  ASSERT_TRUE(r.rep[0].optim_t == 17 && r.state.optim_t == 17 && r.state.step == 17);
  ASSERT_STR_EQ(r.rep[0].tensors[6].name, "running_mean");
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  snprintf(q, sizeof q, "%s/as_v2.h5", dir);
  ASSERT_OK(nn_ckpt_write(&r, q, &e));
  ASSERT_OK(nn_ckpt_read(q, &r2, &e));
  ASSERT_EQ_INT(r2.version, 2);
  ASSERT_TRUE(r2.state.optim_t == 0 && r2.rep[0].optim_t == 17);
  r.state.optim_t = 0; /* v2 keeps it in the replica only */
  int same = snap_same(&r, &r2);
  ASSERT_TRUE(same);
  ASSERT_TRUE(nn_ckpt_checksum(&r) != nn_ckpt_checksum(&r2)); /* v1 vs v2 rules */
  nn_ckpt_snapshot_free(&r);
  nn_ckpt_snapshot_free(&r2);
  rm_rf(dir);
}

/* Replace attribute `name` of object `obj` in file path by n strings. */
static int set_names_attr(const char *path, const char *obj, const char *name,
                          const char *const *v, int n) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return -1;
  hsize_t ns = (hsize_t)n;
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT), t = H5Tcopy(H5T_C_S1), sp = H5Screate_simple(1, &ns,
                                                                                       NULL);
  int ok = o >= 0 && H5Adelete(o, name) >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
           H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
  hid_t a = ok ? H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  ok = ok && a >= 0 && H5Awrite(a, t, v) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  if (o >= 0) H5Oclose(o);
  H5Fclose(f);
  return ok ? 0 : -1;
}

/* One HDF5 edit of a copy: 0 ok. */
static int edit_copy(const char *path, int what) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return -1;
  int ok = 0;
  if (what == 0) { /* a replica group renamed: the listed one is missing */
    ok = H5Lmove(f, "replicas/disc", f, "replicas/other", H5P_DEFAULT, H5P_DEFAULT) >= 0;
  } else if (what == 1) { /* an extra tensor in a layer group */
    hsize_t n = 2;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "replicas/gen/params/dense0/extra", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    ok = d >= 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
  } else if (what == 2) { /* a slot tensor gone */
    ok = H5Ldelete(f, "replicas/disc/optimizer/momentum_buffer/dense0/bias", H5P_DEFAULT) >= 0;
  } else if (what == 3) { /* ntrainable inside a tensor */
    hid_t g = H5Gopen2(f, "replicas/disc", H5P_DEFAULT);
    hid_t a = g >= 0 ? H5Aopen(g, "ntrainable", H5P_DEFAULT) : -1;
    uint64_t v = 13;
    ok = a >= 0 && H5Awrite(a, H5T_NATIVE_UINT64, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (g >= 0) H5Gclose(g);
  } else if (what == 4) { /* the whole replica group gone */
    ok = H5Ldelete(f, "replicas/gen", H5P_DEFAULT) >= 0;
  } else if (what == 5 || what == 6) { /* same value, other type: int64 version, float optim_t */
    const char *obj = what == 5 ? "/" : "replicas/gen", *name = what == 5 ? "version" : "optim_t";
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT), sp = H5Screate(H5S_SCALAR);
    hid_t t = what == 5 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
    double v = 2; /* version 2; optim_t 2 */
    int64_t iv = 2;
    hid_t a = o >= 0 && H5Adelete(o, name) >= 0
                  ? H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = a >= 0 && H5Awrite(a, t, what == 5 ? (const void *)&iv : (const void *)&v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    if (o >= 0) H5Oclose(o);
  }
  H5Fclose(f);
  return ok ? 0 : -1;
}

/* Damaged version 2 files: each refused in one line naming the file and
 * the dataset or attribute. */
static void test_v2_damage(void) {
  fixture fx;
  char dir[256], p[1200], q[1300], cmd[3000];
  int ok = 0;
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_two(&fx, &s, 3));
  snprintf(p, sizeof p, "%s/two.h5", dir);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  nn_ckpt_snapshot_free(&s);
  snprintf(q, sizeof q, "%s/bad.h5", dir);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", p, q);
  static const struct {
    int edit;
    const char *needle;
  } edits[] = {
      {0, "replicas/disc: missing replica group"},
      {1, "replicas/gen/params/dense0: holds 3 tensors, the tensor table lists 2"},
      {2, "replicas/disc/optimizer/momentum_buffer/dense0: holds 1 tensors"},
      {3, "replicas/disc/tensors: ntrainable 13 does not end on a parameter tensor"},
      {4, "replicas: the group holds 1 replicas, the root attribute lists 2"},
      /* the reader trusts no type: a value HDF5 could convert is still refused */
      {5, "attribute 'version' has the wrong type or size, expected one 4-byte integer"},
      {6, "attribute 'replicas/gen/optim_t' has the wrong type or size, expected one 8-byte "
          "integer"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    ASSERT_OK(system(cmd));
    ASSERT_OK(edit_copy(q, edits[i].edit));
    expect_damaged(q, edits[i].needle, &ok);
    ASSERT_TRUE(ok);
  }
  static const struct {
    const char *v[3];
    int n;
    const char *needle;
  } lists[] = {
      {{"gen", "gen"}, 2, "replicas: lists the replica 'gen' twice"},
      {{"gen", "a/b"}, 2, "replicas: entry 1 ('a/b') is not a usable name"},
      {{"gen", ""}, 2, "is not a usable name"},
      {{"gen", "disc", "third"}, 3, "the group holds 2 replicas, the root attribute lists 3"},
      {{"disc", "gen"}, 2, "checksum"}, /* the order is content */
      {{NULL}, 0, "replicas: lists no replica"},
  };
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    ASSERT_OK(system(cmd));
    ASSERT_OK(set_names_attr(q, "/", "replicas", lists[i].v, lists[i].n));
    expect_damaged(q, lists[i].needle, &ok);
    ASSERT_TRUE(ok);
  }
  /* a value behind the checksum's back, in the second replica */
  ASSERT_OK(system(cmd));
  ASSERT_OK(rewrite_value(q, "replicas/disc/params/dense1/weight"));
  expect_damaged(q, "checksum: content hashes to", &ok);
  ASSERT_TRUE(ok);
  ASSERT_OK(read_ok(p));
  fixture_free(&fx);
  rm_rf(dir);
}

/* State fields added after version 2 first shipped (nn_ckpt_field.optional:
 * the non-finite counters): a file written without them (an older nntrain)
 * reads with 0 and still verifies; a non-zero value is under the checksum,
 * so removing or changing it is refused. */
static int delete_state_attr(const char *path, const char *name) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return -1;
  hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
  int rc = g >= 0 && H5Adelete(g, name) >= 0 ? 0 : -1;
  if (g >= 0) H5Gclose(g);
  H5Fclose(f);
  return rc;
}

static void test_optional_state_fields(void) {
  fixture fx;
  char dir[256], p[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s, r;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_snapshot(&fx, &s, 12));
  s.state.nonfinite_run = 0;
  s.state.nonfinite_skipped = 0;
  s.state.rollbacks = 0;
  nn_ckpt_path(dir, 12, p, sizeof p);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  /* as an older writer left it: no attributes at all */
  ASSERT_OK(delete_state_attr(p, "nonfinite_run"));
  ASSERT_OK(delete_state_attr(p, "nonfinite_skipped"));
  ASSERT_OK(delete_state_attr(p, "rollbacks"));
  int rc = nn_ckpt_read(p, &r, &e);
  if (rc) fprintf(stderr, "%s\n", e.msg);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_EQ_INT(r.state.rollbacks, 0);
  ASSERT_TRUE(r.state.nonfinite_skipped == 0);
  nn_ckpt_snapshot_free(&r);
  /* non-zero values round-trip, and are covered by the checksum */
  s.state.nonfinite_run = 2;
  s.state.nonfinite_skipped = 5;
  s.state.rollbacks = 3;
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  ASSERT_OK(nn_ckpt_read(p, &r, &e));
  ASSERT_EQ_INT(r.state.nonfinite_run, 2);
  ASSERT_TRUE(r.state.nonfinite_skipped == 5);
  ASSERT_EQ_INT(r.state.rollbacks, 3);
  ASSERT_TRUE(nn_ckpt_checksum(&s) == nn_ckpt_checksum(&r));
  nn_ckpt_snapshot_free(&r);
  ASSERT_OK(delete_state_attr(p, "rollbacks"));
  ASSERT_EQ_INT(nn_ckpt_read(p, &r, &e), NN_ECKPT);
  ASSERT_STR_CONTAINS(e.msg, "checksum");
  nn_ckpt_snapshot_free(&s);
  fixture_free(&fx);
}

/* A replica's carried state (language models): round trip, under the
 * checksum, absent = 0 rows (files without it verify as before). */
static void test_carry(void) {
  fixture fx;
  char dir[256], p[1200];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s, r;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_snapshot(&fx, &s, 12));
  nn_ckpt_path(dir, 12, p, sizeof p);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  ASSERT_OK(nn_ckpt_read(p, &r, &e));
  ASSERT_EQ_INT((long long)r.rep[0].carry_rows, 0);
  uint64_t h0 = nn_ckpt_checksum(&r);
  nn_ckpt_snapshot_free(&r);
  float c[3 * 4];
  for (int i = 0; i < 12; i++) c[i] = 0.25f * (float)i - 1.0f;
  ASSERT_OK(nn_ckpt_replica_set_carry(&s.rep[0], 3, 4, c, &e));
  ASSERT_TRUE(nn_ckpt_checksum(&s) != h0);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  ASSERT_OK(nn_ckpt_read(p, &r, &e));
  ASSERT_EQ_INT((long long)r.rep[0].carry_rows, 3);
  ASSERT_EQ_INT((long long)r.rep[0].carry_cols, 4);
  ASSERT_TRUE(memcmp(r.rep[0].carry, c, sizeof c) == 0);
  ASSERT_TRUE(nn_ckpt_checksum(&r) == nn_ckpt_checksum(&s));
  nn_ckpt_snapshot_free(&r);
  /* one value changed behind the checksum's back is refused */
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_TRUE(f >= 0);
  hid_t d = H5Dopen2(f, "replicas/model/carry", H5P_DEFAULT);
  c[5] += 1.0f;
  ASSERT_TRUE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, c) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  ASSERT_EQ_INT(nn_ckpt_read(p, &r, &e), NN_ECKPT);
  ASSERT_STR_CONTAINS(e.msg, "checksum");
  /* a non-finite carried state is refused before writing */
  c[2] = NAN;
  ASSERT_OK(nn_ckpt_replica_set_carry(&s.rep[0], 3, 4, c, &e));
  ASSERT_EQ_INT(nn_ckpt_write(&s, p, &e), NN_ENUMERIC);
  ASSERT_STR_CONTAINS(e.msg, "carry");
  nn_ckpt_snapshot_free(&s);
  fixture_free(&fx);
}

TEST_MAIN(TEST(test_roundtrip), TEST(test_damage_detected), TEST(test_truncated_and_garbage),
          TEST(test_nonfinite_refused), TEST(test_read_latest), TEST(test_prune),
          TEST(test_writer_async), TEST(test_writer_pause), TEST(test_two_replicas),
          TEST(test_v1_fixture), TEST(test_v2_damage),
          TEST(test_optional_state_fields), TEST(test_carry))
