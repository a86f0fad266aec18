/* commit.c: nn_ckpt_write, the crash-safe protocol around the codec:
 * write NAME.tmp, close, fsync, re-open and verify it as a reader would,
 * rename to NAME, fsync the directory. A process killed at any stage leaves
 * every complete checkpoint intact and no partial file under a final name.
 * Also the fault-injection hook that proves it, compiled only with
 * -DNN_FAULT_INJECTION=ON (checkpoint.h lists the stages). */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

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

int nn_ckpt_write(const nn_ckpt_snapshot *s, const char *path, nn_error *err) {
  char tmp[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
  nn_ckpt_snapshot back;
  memset(&back, 0, sizeof back);
  nn__ckpt_w w = {{-1, path, NN_EIO, NULL}, -1, err};
  hid_t fapl = -1;
  int rc = 0, made = 0;
  nn_h5_quiet();
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "checkpoint path too long");
  if ((rc = nn__ckpt_check(s, path, err))) return rc;
  if ((rc = nn_mkdirs_parent(path, err))) return rc;
  uint64_t sum = nn__ckpt_checksum_v(s, NN_CKPT_VERSION);

  unlink(tmp);
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  w.lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (fapl < 0 || w.lcpl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
      H5Pset_create_intermediate_group(w.lcpl, 1) < 0) {
    rc = nn_h5_fail(err, NN_EIO, path, NULL, "cannot make HDF5 property lists");
    goto cleanup;
  }
  w.h.id = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (w.h.id < 0) {
    rc = nn_h5_fail(err, NN_EIO, tmp, NULL, "cannot create the checkpoint file");
    goto cleanup;
  }
  made = 1;
  if ((rc = nn__ckpt_write_content(&w, s, sum))) goto cleanup;
  herr_t closed = H5Fclose(w.h.id);
  w.h.id = -1;
  if (closed < 0) {
    rc = nn_h5_fail(err, NN_EIO, tmp, NULL, "cannot close (flush) the checkpoint file");
    goto cleanup;
  }
  nn__ckpt_kill_at("close");
  if ((rc = nn_fsync_path(tmp, 0, err))) goto cleanup;
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
  if (w.h.id >= 0) H5Fclose(w.h.id);
  if (w.lcpl >= 0) H5Pclose(w.lcpl);
  if (fapl >= 0) H5Pclose(fapl);
  if (made) unlink(tmp);
  nn_ckpt_snapshot_free(&back);
  return rc;
}
