/* writer.c: the background checkpoint writer: two snapshots alternate
 * between the step loop (which fills one and submits it) and a writer
 * thread (which writes it with nn_ckpt_write and prunes), so the step loop
 * only waits when two writes are still pending.
 *
 * A write that fails (full disk, run directory read-only or gone) removes
 * its .tmp, leaves every earlier checkpoint as it was, and is said at once
 * in one warning line; the run goes on and the next checkpoint tries again.
 * The failure is kept for nn_ckpt_writer_wait only while no later write
 * succeeded: a run whose last checkpoint (at the end, or on a stop signal)
 * could not be written fails with that error (docs/checkpoints.md).
 *
 * HDF5 is built thread-safe on this platform, so the writer thread may run
 * while the data loader reads shards; nn_ckpt_writer_start checks it
 * (H5is_library_threadsafe) and refuses to start otherwise. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "coordinator/checkpoint/internal.h"
#include "core/mem.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_QUEUED, SLOT_WRITING };

struct nn_ckpt_writer {
  char dir[CKPT_PATH_MAX - 64];  /* run directory (room left for the file name) */
  int keep;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;             /* every state change; waiters re-check */
  nn_ckpt_snapshot snap[2];      /* owned by the caller while FILLING, by the
                                    thread while QUEUED/WRITING */
  int state[2];
  uint64_t seq[2];               /* submission number of a QUEUED slot */
  char path[2][CKPT_PATH_MAX];   /* where a QUEUED slot goes */
  int cur;                       /* slot handed out and not yet submitted, -1 */
  int next;                      /* slot the next nn_ckpt_writer_slot hands out */
  uint64_t nsubmitted;
  int stop;
  int fail_rc;                   /* failure since the last wait and not made
                                    up for by a later write (NN_EIO: newest) */
  nn_error fail_err;
};

/* A failure the next checkpoint may not meet again (the file system's, not
 * a snapshot the codec refuses). */
static int retryable(int rc) { return rc && rc != NN_EINVAL && rc != NN_ENUMERIC; }

/* The run directory must still be there: nn_ckpt_write would make it anew,
 * and a run whose directory was removed (by hand, or a scratch purge) has
 * lost its metrics.jsonl; every checkpoint says so, and the run's end fails. */
static int run_dir_there(const char *dir, nn_error *err) {
  struct stat st;
  if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
  return nn_error_at(err, NN_EIO, dir, 0, 0,
                     "the run directory is gone (removed while training?)");
}

static void *writer_main(void *arg) {
  /* Below the step loop's priority: on a node whose cores all run ranks the
   * writer uses idle time instead of preempting the training thread. Linux
   * applies a thread's nice value to that thread alone. */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0) { /* best effort */ }
  nn_ckpt_writer *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    int pick = -1;
    for (int i = 0; i < 2; i++)
      if (w->state[i] == SLOT_QUEUED && (pick < 0 || w->seq[i] < w->seq[pick])) pick = i;
    if (pick < 0) {
      if (w->stop) break;
      pthread_cond_wait(&w->cv, &w->mu);
      continue;
    }
    w->state[pick] = SLOT_WRITING;
    pthread_mutex_unlock(&w->mu);
    nn_error e;
    nn_error_clear(&e);
    int rc = run_dir_there(w->dir, &e);
    if (!rc) rc = nn_ckpt_write(&w->snap[pick], w->path[pick], &e);
    if (!rc) rc = nn_ckpt_prune(w->dir, w->keep, &e);
    if (rc && rc != NN_EINVAL && rc != NN_ENUMERIC) { /* removed while being written? */
      nn_error gone;
      nn_error_clear(&gone);
      if (run_dir_there(w->dir, &gone)) e = gone;
    }
    if (rc) {
      char line[1024];
      fprintf(stderr, "nntrain: warning: checkpoint not written, the previous one stays; "
                      "retrying at the next: %s\n", nn_error_format(&e, line, sizeof line));
    }
    pthread_mutex_lock(&w->mu);
    if (rc && (!w->fail_rc || retryable(rc))) { /* the newest I/O failure */
      w->fail_rc = rc;
      w->fail_err = e;
    } else if (!rc && retryable(w->fail_rc)) { /* a later checkpoint made up for it */
      w->fail_rc = 0;
      nn_error_clear(&w->fail_err);
    }
    w->state[pick] = SLOT_FREE;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int nn_ckpt_writer_start(nn_ckpt_writer **wp, const char *dir, int keep, nn_error *err) {
  *wp = NULL;
  hbool_t safe = 0;
  if (H5is_library_threadsafe(&safe) < 0 || !safe)
    return nn_error_set(err, NN_EINTERNAL,
                        "this HDF5 is not built thread-safe: a background checkpoint writer "
                        "would race the data loader (write synchronously instead)");
  nn_ckpt_writer *w = nn_calloc(1, sizeof *w);
  if (!w) return nn_error_set(err, NN_ENOMEM, "out of memory for the checkpoint writer");
  if (snprintf(w->dir, sizeof w->dir, "%s", dir) >= (int)sizeof w->dir) {
    free(w);
    return nn_error_at(err, NN_EINVAL, dir, 0, 0, "run directory path too long");
  }
  w->keep = keep;
  w->cur = -1;
  if (pthread_mutex_init(&w->mu, NULL) != 0) {
    free(w);
    return nn_error_set(err, NN_EINTERNAL, "cannot create a mutex");
  }
  if (pthread_cond_init(&w->cv, NULL) != 0) {
    pthread_mutex_destroy(&w->mu);
    free(w);
    return nn_error_set(err, NN_EINTERNAL, "cannot create a condition variable");
  }
  int e = pthread_create(&w->thread, NULL, writer_main, w);
  if (e != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return nn_error_set(err, NN_EINTERNAL, "cannot start the checkpoint writer thread: %s",
                        strerror(e));
  }
  *wp = w;
  return 0;
}

nn_ckpt_snapshot *nn_ckpt_writer_slot(nn_ckpt_writer *w) {
  pthread_mutex_lock(&w->mu);
  if (w->cur < 0) {
    while (w->state[w->next] != SLOT_FREE) pthread_cond_wait(&w->cv, &w->mu);
    w->state[w->next] = SLOT_FILLING;
    w->cur = w->next;
    w->next ^= 1;
  }
  nn_ckpt_snapshot *s = &w->snap[w->cur];
  pthread_mutex_unlock(&w->mu);
  return s;
}

int nn_ckpt_writer_submit(nn_ckpt_writer *w, const char *path, nn_error *err) {
  int rc = 0;
  pthread_mutex_lock(&w->mu);
  int c = w->cur;
  if (c < 0) {
    rc = nn_error_set(err, NN_EINVAL, "checkpoint submit without a slot (nn_ckpt_writer_slot)");
  } else {
    char p[CKPT_PATH_MAX];
    if (path && path[0])
      snprintf(p, sizeof p, "%s", path);
    else
      nn_ckpt_path(w->dir, w->snap[c].state.step, p, sizeof p);
    memcpy(w->path[c], p, sizeof p);
    w->state[c] = SLOT_QUEUED;
    w->seq[c] = w->nsubmitted++;
    w->cur = -1;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

/* With w->mu held: wait until neither snapshot is queued or being written. */
static void wait_idle_locked(nn_ckpt_writer *w) {
  for (;;) {
    int busy = 0;
    for (int i = 0; i < 2; i++)
      busy |= w->state[i] == SLOT_QUEUED || w->state[i] == SLOT_WRITING;
    if (!busy) return;
    pthread_cond_wait(&w->cv, &w->mu);
  }
}

int nn_ckpt_writer_wait(nn_ckpt_writer *w, nn_error *err) {
  pthread_mutex_lock(&w->mu);
  wait_idle_locked(w);
  int rc = w->fail_rc;
  if (rc && err) *err = w->fail_err;
  w->fail_rc = 0;
  nn_error_clear(&w->fail_err);
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void nn_ckpt_writer_drain(nn_ckpt_writer *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  wait_idle_locked(w);
  pthread_mutex_unlock(&w->mu);
}

int nn_ckpt_writer_init_snapshots(nn_ckpt_writer *w, int n, const char *const *names,
                                  const nn_model *const *models, const int *nslots,
                                  nn_error *err) {
  int rc = 0;
  pthread_mutex_lock(&w->mu);
  wait_idle_locked(w); /* a failure recorded so far stays for the next wait */
  for (int i = 0; i < 2 && !rc; i++) {
    nn_ckpt_snapshot_free(&w->snap[i]);
    rc = nn_ckpt_snapshot_init(&w->snap[i], n, names, models, nslots, err);
  }
  w->cur = -1;
  w->state[0] = w->state[1] = SLOT_FREE;
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void nn_ckpt_writer_free(nn_ckpt_writer *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  for (int i = 0; i < 2; i++) nn_ckpt_snapshot_free(&w->snap[i]);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
