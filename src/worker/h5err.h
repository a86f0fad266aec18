/* h5err.h: HDF5 failures as nn_error values, with HDF5's own innermost
 * message appended (one home: checkpoints use it; the shard reader in
 * dataset.c has an older copy, h5_fail, to switch over). */
#ifndef NN_WORKER_H5ERR_H
#define NN_WORKER_H5ERR_H

#include "core/err.h"

/* Record a failure about `file` and `what` (dataset or attribute, may be
 * NULL; also stored in err->where) with HDF5's innermost message appended
 * when there is one; clears HDF5's error stack. Returns code. */
int nn_h5_fail(nn_error *err, int code, const char *file, const char *what, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));

#endif
