/* fsutil.h: file-system helpers every edge module shares (one home each). */
#ifndef NN_WORKER_FSUTIL_H
#define NN_WORKER_FSUTIL_H

#include <stdint.h>

#include "core/err.h"

/* mkdir -p dir (every missing component, mode 0777 & ~umask). NN_EIO names
 * the component that could not be created. */
int nn_mkdirs(const char *dir, nn_error *err);
/* mkdir -p of the directory part of path ("a/b/c.h5" -> "a/b"). */
int nn_mkdirs_parent(const char *path, nn_error *err);
/* 0 if path is a regular file (its size in *size, if size is not NULL);
 * else NN_ENOTFOUND ("no such file"), NN_EIO ("cannot access: ...") or
 * NN_EDATA ("is a directory (expected <expected>)", "is not a regular file
 * (expected <expected>)"), naming path. */
int nn_stat_file(const char *path, const char *expected, int64_t *size, nn_error *err);
/* fsync a file (dir = 0) or a directory (dir = 1). NN_EIO names it. */
int nn_fsync_path(const char *path, int dir, nn_error *err);

#endif
