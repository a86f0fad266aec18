/* ckpt_fixture.h: what the checkpoint tests share (test_checkpoint.c,
 * test_checkpoint_kill.c, test_checkpoint_h5py.c): a small model with a
 * buffer, snapshots of it (one replica "model", Adam slots, distinctive
 * state, UTF-8 metrics), byte-for-byte comparison, temporary directories. */
#ifndef NN_TESTS_CKPT_FIXTURE_H
#define NN_TESTS_CKPT_FIXTURE_H

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
#include "layer_cfg.h"
#include "test.h"

#define CKF __attribute__((unused)) /* each test program uses some of these */

/* ---- fixtures --------------------------------------------------------------- */

CKF static nn_layer_cfg dense(int units, const char *act) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", units);
  cfg_set_bool(&c, "use_bias", 1);
  if (act) snprintf(c.activation, sizeof c.activation, "%s", act);
  return c;
}

/* A fresh empty directory under /tmp; path into buf. */
CKF static int make_tmpdir(char *buf, size_t n) {
  snprintf(buf, n, "/tmp/nn_ckpt_test_XXXXXX");
  return mkdtemp(buf) ? 0 : -1;
}

CKF static void rm_rf(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

CKF static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* Count entries of dir whose name ends with suffix. */
CKF static int count_suffix(const char *dir, const char *suffix) {
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
  nn_model m2;          /* a second model, in [3] -> dense0(4, relu) -> dense1(2) */
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

CKF static int fixture_init(fixture *fx) {
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
  nn_layer_cfg c2[2] = {dense(4, "relu"), dense(2, NULL)};
  nn_shape in2 = {1, {3}};
  if (nn_model_build(&fx->m2, &in2, c2, 2, 4, &e)) {
    fprintf(stderr, "build: %s\n", e.msg);
    return -1;
  }
  nn_model_init_params(&fx->m2, 43);
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

CKF static void fixture_free(fixture *fx) {
  nn_model_free(&fx->m);
  nn_model_free(&fx->m2);
  free(fx->spec);
}

/* Fill a snapshot of fx: Adam slots, distinctive state, UTF-8 metrics. */
CKF static int fill_snapshot(fixture *fx, nn_ckpt_snapshot *s, int64_t step) {
  nn_error e;
  nn_error_clear(&e);
  const char *names[1] = {"model"};
  const nn_model *models[1] = {&fx->view};
  int nslots[1] = {2};
  if (nn_ckpt_snapshot_init(s, 1, names, models, nslots, &e)) {
    fprintf(stderr, "snapshot: %s\n", e.msg);
    return -1;
  }
  nn_ckpt_replica *r = &s->rep[0];
  snprintf(r->optim_type, sizeof r->optim_type, "adam");
  snprintf(r->slot_names[0], sizeof r->slot_names[0], "exp_avg");
  snprintf(r->slot_names[1], sizeof r->slot_names[1], "exp_avg_sq");
  for (size_t i = 0; i < 2 * r->ntrainable; i++) r->slots[i] = (float)(i + 1) * 1e-3f + (float)step;
  for (size_t i = 0; i < r->nparams; i++) r->params[i] += (float)step;
  r->optim_t = (uint64_t)step + 1000;
  s->state.step = step;
  s->state.epoch = 3;
  s->state.epoch_step = 17;
  s->state.seed = 0xfedcba9876543210ULL;
  s->state.nranks = 4;
  s->state.lr = 1e-3 / 3;
  s->state.elapsed_s = 12.5;
  s->state.decide.plateau.scale = 0.25;
  s->state.decide.plateau.best = INFINITY;
  s->state.decide.plateau.bad_epochs = 2;
  s->state.decide.plateau.cooldown_left = 1;
  s->state.decide.es.best = NAN;
  s->state.decide.es.bad = 5;
  s->state.decide.es.best_epoch = -1;
  const char *metrics = "{\"epoch\":1,\"loss\":0.5,\"note\":\"caf\xc3\xa9\"}\n"
                        "{\"epoch\":2,\"loss\":0.25}\n";
  if (nn_ckpt_snapshot_set_spec(s, fx->spec, fx->spec_len, &e) ||
      nn_ckpt_snapshot_set_metrics(s, metrics, strlen(metrics), &e)) {
    fprintf(stderr, "snapshot: %s\n", e.msg);
    return -1;
  }
  return 0;
}

/* Two replicas: "gen" (fx's model with its buffer, Adam, as fill_snapshot)
 * and "disc" (m2, SGD with momentum, only dense0 trained: dense1 frozen, so
 * its slots cover dense0 alone). */
CKF static int fill_two(fixture *fx, nn_ckpt_snapshot *s, int64_t step) {
  nn_error e;
  nn_error_clear(&e);
  const char *names[2] = {"gen", "disc"};
  const nn_model *models[2] = {&fx->view, &fx->m2};
  int nslots[2] = {2, 1};
  if (nn_ckpt_snapshot_init(s, 2, names, models, nslots, &e)) {
    fprintf(stderr, "snapshot: %s\n", e.msg);
    return -1;
  }
  nn_ckpt_replica *g = &s->rep[0], *d = &s->rep[1];
  snprintf(g->optim_type, sizeof g->optim_type, "adam");
  snprintf(g->slot_names[0], sizeof g->slot_names[0], "exp_avg");
  snprintf(g->slot_names[1], sizeof g->slot_names[1], "exp_avg_sq");
  for (size_t i = 0; i < 2 * g->ntrainable; i++) g->slots[i] = (float)i * 0.5f - (float)step;
  g->optim_t = 77;
  snprintf(d->optim_type, sizeof d->optim_type, "sgd");
  snprintf(d->slot_names[0], sizeof d->slot_names[0], "momentum_buffer");
  d->ntrainable = d->tensors[0].count + d->tensors[1].count; /* dense0 weight + bias */
  for (size_t i = 0; i < d->ntrainable; i++) d->slots[i] = -(float)i - 0.25f;
  for (size_t i = 0; i < d->nparams; i++) d->params[i] += 0.125f * (float)step;
  d->optim_t = 5;
  s->state.step = step;
  s->state.epoch = 1;
  s->state.seed = 99;
  s->state.decide.es.best = NAN;
  const char *metrics = "{\"epoch\":1,\"d_loss\":0.7,\"g_loss\":1.5}\n";
  if (nn_ckpt_snapshot_set_spec(s, fx->spec, fx->spec_len, &e) ||
      nn_ckpt_snapshot_set_metrics(s, metrics, strlen(metrics), &e)) {
    fprintf(stderr, "snapshot: %s\n", e.msg);
    return -1;
  }
  return 0;
}

/* 1 if replicas x and y hold the same content, byte for byte; else 0. */
CKF static int rep_same(const nn_ckpt_replica *a, const nn_ckpt_replica *b) {
#define DIFF(what)                                                         \
  do {                                                                     \
    fprintf(stderr, "replicas '%s' differ: %s\n", a->name, what);          \
    return 0;                                                              \
  } while (0)
  if (strcmp(a->name, b->name)) DIFF("name");
  if (a->ntensors != b->ntensors || a->nparams != b->nparams || a->nbuffers != b->nbuffers ||
      a->nslots != b->nslots || a->ntrainable != b->ntrainable)
    DIFF("sizes");
  for (int i = 0; i < a->ntensors; i++) {
    const nn_tensor_ref *x = &a->tensors[i], *y = &b->tensors[i];
    if (strcmp(x->layer, y->layer) || strcmp(x->name, y->name) || !nn_shape_equal(&x->shape,
                                                                                  &y->shape) ||
        x->offset != y->offset || x->count != y->count || x->is_buffer != y->is_buffer)
      DIFF("tensor table");
  }
  if (memcmp(a->params, b->params, a->nparams * 4)) DIFF("params");
  if (memcmp(a->buffers, b->buffers, a->nbuffers * 4)) DIFF("buffers");
  if (memcmp(a->slots, b->slots, (size_t)a->nslots * a->ntrainable * 4)) DIFF("slots");
  for (int k = 0; k < a->nslots; k++)
    if (strcmp(a->slot_names[k], b->slot_names[k])) DIFF("slot names");
  if (strcmp(a->optim_type, b->optim_type)) DIFF("optimizer type");
  if (a->optim_t != b->optim_t) DIFF("optim_t");
  return 1;
#undef DIFF
}

/* 1 if a and b hold the same content (every replica, state, spec, metrics);
 * else 0 (says why). The version is not compared. */
CKF static int snap_same(const nn_ckpt_snapshot *a, const nn_ckpt_snapshot *b) {
  if (a->nreplicas != b->nreplicas) {
    fprintf(stderr, "snapshots differ: %d vs %d replicas\n", a->nreplicas, b->nreplicas);
    return 0;
  }
  for (int i = 0; i < a->nreplicas; i++)
    if (!rep_same(&a->rep[i], &b->rep[i])) return 0;
  const char *what = memcmp(&a->state, &b->state, sizeof a->state) ? "state"
                     : a->spec_len != b->spec_len || memcmp(a->spec, b->spec, a->spec_len) ? "spec"
                     : a->metrics_len != b->metrics_len || strcmp(a->metrics,
                                                                  b->metrics) ? "metrics"
                     : NULL;
  if (what) fprintf(stderr, "snapshots differ: %s\n", what);
  return what == NULL;
}

/* Write a checkpoint of fx for `step` into DIR/checkpoints. */
CKF static int write_step(fixture *fx, const char *dir, int64_t step) {
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

CKF static int read_ok(const char *path) {
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  int rc = nn_ckpt_read(path, &s, &e);
  if (rc) fprintf(stderr, "read %s: %s\n", path, e.msg);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

typedef struct warn_count {
  int n;
  char last[1300];
} warn_count;

CKF static void count_warn(void *user, const nn_error *e) {
  warn_count *w = user;
  w->n++;
  snprintf(w->last, sizeof w->last, "%s", e->file);
}

#endif
