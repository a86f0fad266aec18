/* h5io.h: the HDF5 helpers every nntrain file format shares (data shards
 * today; checkpoints are meant to use them too).
 *
 * What they do for a caller:
 *   - keep HDF5 quiet (nn_h5_quiet): HDF5 prints its error stack to stderr
 *     by default; nntrain reports errors as values instead;
 *   - turn an HDF5 failure into an nn_error naming the file and the dataset
 *     or attribute, with HDF5's innermost message appended (nn_h5_fail);
 *   - open an existing file read-only with a clear error when it is missing,
 *     a directory, unreadable or not HDF5 at all (nn_h5_open_read);
 *   - write and read root or group attributes: numeric scalars and 1-d
 *     arrays, and UTF-8 strings (fixed or variable length on reading).
 *
 * Every function that can fail returns 0 or a negative NN_E* code and fills
 * *err (err may be NULL). Content errors (a missing or malformed attribute)
 * use the code the caller passes in nn_h5_file.code, so a shard reader
 * reports NN_EDATA and a checkpoint reader NN_ECKPT; failures to write are
 * NN_EIO. Not here: anything that knows a particular file layout. */
#ifndef NN_WORKER_H5IO_H
#define NN_WORKER_H5IO_H

#include <stddef.h>

#include <hdf5.h>

#include "core/err.h"

/* An open HDF5 file as the helpers see it: its handle, its path for
 * messages, and the status code for bad content. */
typedef struct nn_h5_file {
  hid_t id;          /* file (or any location inside it) */
  const char *path;  /* for messages; not owned */
  int code;          /* NN_E* for content errors, e.g. NN_EDATA or NN_ECKPT */
  const char *kind;  /* what the file should be, for messages ("an nntrain
                        shard"); may be NULL */
} nn_h5_file;

/* Switch off HDF5's automatic error printing. A library-wide setting of
 * HDF5's, not ours: call it on every entry point that uses HDF5, so no
 * message ever reaches stderr whatever another module did before. */
void nn_h5_quiet(void);

/* Record an HDF5 failure about file `path` and `what` (a dataset or
 * attribute name, may be NULL: also copied to err->where) as
 * "what: message (HDF5: innermost HDF5 message)". Clears HDF5's error stack.
 * Returns code. */
int nn_h5_fail(nn_error *err, int code, const char *path, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Open `path` read-only after checking that it is a regular file
 * (nn_stat_file: NN_ENOTFOUND, NN_EIO, NN_EDATA), readable (NN_EIO) and HDF5
 * (NN_EDATA "not an HDF5 file (expected <expected>)"). `expected` names what
 * the file should be ("an nntrain shard"); `dir_hint`, if not NULL, replaces
 * it in the message for a directory ("an HDF5 shard or a glob such as
 * DIR/train-*.h5"). The file is opened with H5F_CLOSE_STRONG, so H5Fclose
 * also closes objects left open in it. */
int nn_h5_open_read(const char *path, const char *expected, const char *dir_hint, hid_t *file,
                    nn_error *err);

/* Write attribute `name` on loc: a scalar if n == 0, else a 1-d array of n
 * values of memory type mtype (the file type is the same). NN_EIO on
 * failure, naming the attribute. */
int nn_h5_attr_write(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype,
                     const void *v, int n, nn_error *err);
/* Write a scalar variable-length UTF-8 string attribute (NULL writes ""). */
int nn_h5_attr_write_str(const nn_h5_file *f, hid_t loc, const char *name, const char *v,
                         nn_error *err);

/* Read numeric attribute `name` of loc (integer or float class, converted to
 * mtype) into v, which holds `max` elements. If exact > 0 the attribute must
 * have exactly that many values, else 1 to max. *count (may be NULL) gets
 * the count. f->code if missing, not numeric or the wrong size. */
int nn_h5_attr_read_num(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype, void *v,
                        int max, int exact, int *count, nn_error *err);
/* One int32 scalar attribute. */
int nn_h5_attr_read_int(const nn_h5_file *f, hid_t loc, const char *name, int *v, nn_error *err);
/* One string attribute (fixed or variable length, any character set) into
 * buf[n], always NUL-terminated (truncated if longer). */
int nn_h5_attr_read_str(const nn_h5_file *f, hid_t loc, const char *name, char *buf, size_t n,
                        nn_error *err);

#endif
