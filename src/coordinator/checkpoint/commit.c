/* commit.c: nn_ckpt_write, the crash-safe protocol around the codec:
 * write NAME.tmp, close, fsync, re-open and verify it as a reader would,
 * rename to NAME, fsync the directory. A process killed at any stage leaves
 * every complete checkpoint intact and no partial file under a final name.
 * The file is built in memory (HDF5's core driver, no backing store) and
 * its image written with write(2): a full disk (ENOSPC), a read-only or
 * vanished run directory is an ordinary failed open or write, reported
 * with the path, and the .tmp removed. (Written through HDF5's own file
 * driver, a failed flush left HDF5 holding a half-closed file that crashed
 * its exit handler, and its message spanned lines.)
 * Also the fault-injection hook that proves it, compiled only with
 * -DNN_FAULT_INJECTION=ON (checkpoint.h lists the stages). */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"

#include "coordinator/checkpoint/internal.h"
#include "worker/fsutil.h"

#ifdef NN_FAULT_INJECTION
void nn__ckpt_kill_at(const char *stage) {
  const char *e = getenv("NN_CKPT_KILL_AT");
  if (e && strcmp(e, stage) == 0) raise(SIGKILL);
}
int nn_ckpt_fault_injection(void) { return 1; }
#else
int nn_ckpt_fault_injection(void) { return 0; }
#endif

/* Write the n bytes of buf to fd (path names it in errors). */
static int write_all(int fd, const char *path, const unsigned char *buf, size_t n, nn_error *err) {
  while (n > 0) {
    ssize_t k = write(fd, buf, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      return nn_error_at(err, NN_EIO, path, 0, 0, "cannot write the checkpoint: %s",
                         k < 0 ? strerror(errno) : "no progress");
    buf += k;
    n -= (size_t)k;
  }
  return 0;
}

/* The image of the in-memory HDF5 file id (flushed), into *img (nn_malloc'ed). */
static int file_image(hid_t id, const char *path, unsigned char **img, size_t *n, nn_error *err) {
  *img = NULL;
  *n = 0;
  if (H5Fflush(id, H5F_SCOPE_GLOBAL) < 0)
    return nn_h5_fail(err, NN_EIO, path, NULL, "cannot flush the in-memory checkpoint");
  ssize_t len = H5Fget_file_image(id, NULL, 0);
  if (len <= 0) return nn_h5_fail(err, NN_EIO, path, NULL, "cannot size the checkpoint image");
  *img = nn_malloc((size_t)len);
  if (!*img)
    return nn_error_at(err, NN_ENOMEM, path, 0, 0, "out of memory for the checkpoint image (%zd bytes)",
                       len);
  if (H5Fget_file_image(id, *img, (size_t)len) != len) {
    free(*img);
    *img = NULL;
    return nn_h5_fail(err, NN_EIO, path, NULL, "cannot copy the checkpoint image");
  }
  *n = (size_t)len;
  return 0;
}

/* The checkpoint file for s, built by HDF5 in memory: its image into *img
 * (nn_malloc'ed), named path in errors; HDF5 is given the name tmp. */
static int encode(const nn_ckpt_snapshot *s, uint64_t sum, const char *path,
                  const char *tmp, nn_error *err,
                  unsigned char **img, size_t *imglen) {
  nn__ckpt_w w = {{-1, path, NN_EIO, NULL}, -1, err};
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  int rc = 0;
  w.lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (fapl < 0 || w.lcpl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
      H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0 ||
      H5Pset_create_intermediate_group(w.lcpl, 1) < 0) {
    rc = nn_h5_fail(err, NN_EIO, path, NULL, "cannot make HDF5 property lists");
    goto cleanup;
  }
  w.h.id = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (w.h.id < 0) {
    rc = nn_h5_fail(err, NN_EIO, path, NULL, "cannot create the in-memory checkpoint");
    goto cleanup;
  }
  if ((rc = nn__ckpt_write_content(&w, s, sum))) goto cleanup;
  if ((rc = file_image(w.h.id, path, img, imglen, err))) goto cleanup;
  herr_t closed = H5Fclose(w.h.id);
  w.h.id = -1;
  if (closed < 0) rc = nn_h5_fail(err, NN_EIO, path, NULL, "cannot close the in-memory checkpoint");
cleanup:
  if (w.h.id >= 0) H5Fclose(w.h.id);
  if (w.lcpl >= 0) H5Pclose(w.lcpl);
  if (fapl >= 0) H5Pclose(fapl);
  if (rc) {
    free(*img);
    *img = NULL;
  }
  return rc;
}

/* The file's directory is made if missing, but not the directories above it:
 * a run directory removed while training must stay gone (the writer reports
 * it), not be made anew by a checkpoint written in the same instant. */
static int mkdir_parent(const char *path, nn_error *err) {
  char dir[CKPT_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  struct stat st;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return nn_error_at(err, NN_EIO, dir, 0, 0, "cannot create directory: %s", strerror(errno));
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return nn_error_at(err, NN_EIO, dir, 0, 0, "exists and is not a directory");
  return 0;
}

int nn_ckpt_write(const nn_ckpt_snapshot *s, const char *path, nn_error *err) {
  char tmp[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
  nn_ckpt_snapshot back;
  memset(&back, 0, sizeof back);
  int rc = 0, made = 0, fd = -1;
  unsigned char *img = NULL;
  size_t imglen = 0;
  nn_h5_quiet();
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "checkpoint path too long");
  if ((rc = nn__ckpt_check(s, path, err))) return rc;
  if ((rc = mkdir_parent(path, err))) return rc;
  uint64_t sum = nn__ckpt_checksum_v(s, NN_CKPT_VERSION);

  unlink(tmp);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    rc = nn_error_at(err, NN_EIO, tmp, 0, 0, "cannot create the checkpoint file: %s",
                     strerror(errno));
    goto cleanup;
  }
  made = 1;
  if ((rc = encode(s, sum, path, tmp, err, &img, &imglen))) goto cleanup;
  if ((rc = write_all(fd, tmp, img, imglen, err))) goto cleanup;
  nn__ckpt_kill_at("close");
  if (fsync(fd) != 0) {
    rc = nn_error_at(err, NN_EIO, tmp, 0, 0, "fsync failed: %s", strerror(errno));
    goto cleanup;
  }
  int cl = close(fd);
  fd = -1;
  if (cl != 0) {
    rc = nn_error_at(err, NN_EIO, tmp, 0, 0, "cannot close the checkpoint file: %s",
                     strerror(errno));
    goto cleanup;
  }
  nn__ckpt_kill_at("sync");

  /* verify: read it back as a reader would, and check it is what we meant */
  uint64_t stored = 0;
  if ((rc = nn__ckpt_read_file(tmp, &back, &stored, err))) {
    nn_error_prefix(err, "verifying the written checkpoint");
    goto cleanup;
  }
  if (stored != sum) {
    rc = nn_error_at(err, NN_ECKPT, tmp, 0, 0,
                     "verifying the written checkpoint: checksum %016" PRIx64
                     ", expected %016" PRIx64, stored, sum);
    goto cleanup;
  }
  nn__ckpt_kill_at("verify");

  if (rename(tmp, path) != 0) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot rename %s to it: %s", tmp, strerror(errno));
    goto cleanup;
  }
  made = 0;
  nn__ckpt_kill_at("rename");
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  if ((rc = nn_fsync_path(dir, 1, err))) goto cleanup;
  nn__ckpt_kill_at("dirsync");
cleanup:
  if (fd >= 0) close(fd);
  free(img);
  if (made) unlink(tmp);
  nn_ckpt_snapshot_free(&back);
  return rc;
}
