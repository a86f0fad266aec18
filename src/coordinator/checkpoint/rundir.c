/* rundir.c: the checkpoints of a run directory: DIR/checkpoints/
 * step-<12 digits>.h5, listing them, reading the newest one that verifies,
 * and pruning to the newest `keep` (plus stale *.tmp files). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/checkpoint/internal.h"
#include "core/mem.h"

/* ---- the run directory ---------------------------------------------------- */

void nn_ckpt_path(const char *dir, int64_t step, char *buf, size_t n) {
  snprintf(buf, n, "%s/checkpoints/step-%012" PRId64 ".h5", dir, step);
}

/* Step of a checkpoint file name "step-<12+ digits>.h5", or -1. */
static int64_t name_step(const char *name) {
  if (strncmp(name, "step-", 5) != 0) return -1;
  const char *p = name + 5;
  size_t nd = strspn(p, "0123456789");
  if (nd < 12 || nd > 18 || strcmp(p + nd, ".h5") != 0) return -1;
  return strtoll(p, NULL, 10);
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of the checkpoints in DIR/checkpoints, newest first (*steps malloc'ed).
 * With tmp_unlink, also removes every *.tmp there. A missing directory gives 0. */
static int list_ckpts(const char *dir, int64_t **steps, int *n, int tmp_unlink, nn_error *err) {
  char cdir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 300];
  snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
  *steps = NULL;
  *n = 0;
  DIR *dp = opendir(cdir);
  if (!dp) {
    if (errno == ENOENT) return 0;
    return nn_error_at(err, NN_EIO, cdir, 0, 0, "cannot list the checkpoint directory: %s",
                       strerror(errno));
  }
  int cap = 0, rc = 0;
  struct dirent *de;
  while ((de = readdir(dp))) {
    size_t len = strlen(de->d_name);
    if (tmp_unlink && len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
      snprintf(p, sizeof p, "%s/%s", cdir, de->d_name);
      if (unlink(p) != 0 && errno != ENOENT) {
        rc = nn_error_at(err, NN_EIO, p, 0, 0, "cannot remove a stale temporary file: %s",
                         strerror(errno));
        goto cleanup;
      }
      continue;
    }
    int64_t st = name_step(de->d_name);
    if (st < 0) continue;
    if (*n == cap) {
      int nc = cap ? 2 * cap : 16;
      int64_t *q = nn_realloc(*steps, (size_t)nc * sizeof *q);
      if (!q) {
        rc = nn_error_set(err, NN_ENOMEM, "out of memory listing %s", cdir);
        goto cleanup;
      }
      *steps = q;
      cap = nc;
    }
    (*steps)[(*n)++] = st;
  }
  if (*n > 1) qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);
cleanup:
  closedir(dp);
  if (rc) {
    free(*steps);
    *steps = NULL;
    *n = 0;
  }
  return rc;
}

int nn_ckpt_read_latest(const char *dir, nn_ckpt_snapshot *s, char *path, size_t n,
                        nn_ckpt_warn_fn warn, void *user, nn_error *err) {
  int64_t *steps = NULL;
  int count = 0, bad = 0;
  char p[CKPT_PATH_MAX];
  memset(s, 0, sizeof *s);
  int rc = list_ckpts(dir, &steps, &count, 0, err);
  if (rc) return rc;
  rc = NN_ENOTFOUND;
  for (int i = 0; i < count; i++) {
    nn_ckpt_path(dir, steps[i], p, sizeof p);
    nn_error e;
    nn_error_clear(&e);
    if (nn_ckpt_read(p, s, &e) == 0) {
      if (path && n) snprintf(path, n, "%s", p);
      rc = 0;
      break;
    }
    bad++;
    if (warn) warn(user, &e);
  }
  if (rc && bad)
    nn_error_at(err, NN_ENOTFOUND, dir, 0, 0,
                "no valid checkpoint in checkpoints/: all %d are damaged", bad);
  else if (rc)
    nn_error_at(err, NN_ENOTFOUND, dir, 0, 0, "no checkpoint in checkpoints/");
  free(steps);
  return rc;
}

int nn_ckpt_prune(const char *dir, int keep, nn_error *err) {
  int64_t *steps = NULL;
  int count = 0, removed = 0;
  char p[CKPT_PATH_MAX];
  int rc = list_ckpts(dir, &steps, &count, 1, err);
  if (rc) return rc;
  for (int i = keep > 0 ? keep : count; i < count; i++) {
    nn_ckpt_path(dir, steps[i], p, sizeof p);
    if (unlink(p) != 0 && errno != ENOENT) {
      rc = nn_error_at(err, NN_EIO, p, 0, 0, "cannot remove an old checkpoint: %s",
                       strerror(errno));
      break;
    }
    if (!removed++) nn__ckpt_kill_at("prune");
  }
  if (!removed) nn__ckpt_kill_at("prune");
  free(steps);
  return rc;
}
