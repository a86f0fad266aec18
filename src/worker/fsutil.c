/* fsutil.c: file-system helpers (see fsutil.h). */
#include "worker/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int nn_mkdirs(const char *dir, nn_error *err) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
    return nn_error_at(err, NN_EINVAL, dir, 0, 0, "path too long");
  if (!p[0]) return 0;
  for (char *s = p + 1; ; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return nn_error_at(err, NN_EIO, p, 0, 0, "cannot create directory: %s", strerror(errno));
      struct stat st;
      if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return nn_error_at(err, NN_EIO, p, 0, 0, "exists and is not a directory");
      *s = c;
      if (c == '\0') break;
    }
  }
  return 0;
}

int nn_mkdirs_parent(const char *path, nn_error *err) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "path too long");
  char *slash = strrchr(buf, '/');
  if (!slash || slash == buf) return 0;
  *slash = '\0';
  return nn_mkdirs(buf, err);
}

int nn_stat_file(const char *path, const char *expected, int64_t *size, nn_error *err) {
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return nn_error_at(err, NN_ENOTFOUND, path, 0, 0, "no such file");
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot access: %s", strerror(errno));
  }
  if (S_ISREG(st.st_mode)) {
    if (size) *size = (int64_t)st.st_size;
    return 0;
  }
  return nn_error_at(err, NN_EDATA, path, 0, 0, "%s (expected %s)",
                     S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file", expected);
}

int nn_fsync_path(const char *path, int dir, nn_error *err) {
  int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
  if (fd < 0)
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot open for fsync: %s", strerror(errno));
  int rc = 0;
  if (fsync(fd) != 0) rc = nn_error_at(err, NN_EIO, path, 0, 0, "fsync failed: %s", strerror(errno));
  close(fd);
  return rc;
}
