/* h5io.h: the HDF5 helpers every nntrain file format shares (data shards
 * and checkpoints: the one home of generic HDF5 reading and writing).
 *
 * What they do for a caller:
 *   - keep HDF5 quiet (nn_h5_quiet): HDF5 prints its error stack to stderr
 *     by default; nntrain reports errors as values instead;
 *   - turn an HDF5 failure into an nn_error naming the file and the dataset
 *     or attribute, with HDF5's innermost message appended (nn_h5_fail);
 *   - open an existing file read-only with a clear error when it is missing,
 *     a directory, unreadable or not HDF5 at all (nn_h5_open_read);
 *   - write and read root or group attributes: numeric scalars and 1-d
 *     arrays, UTF-8 strings (fixed or variable length on reading) and
 *     lists of strings; numbers either converted from any numeric type
 *     (nn_h5_attr_read_num) or, for readers that trust nothing
 *     (checkpoints), only from exactly the expected class and byte size
 *     (nn_h5_attr_read_exact);
 *   - write datasets (intermediate groups created), and open or read them
 *     after checking element type and shape (nn_h5_dset_open/_read);
 *   - count a group's members.
 *
 * Messages are one line naming the file (err->file) and the dataset or
 * attribute by its path inside the file ("replicas/a/slots"; a root
 * attribute by its bare name), also copied to err->where where HDF5 failed
 * or the object is missing.
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

/* The path of attribute `name` of loc for messages: "name" on the root
 * group, "group/sub/name" elsewhere. Call it before an HDF5 call whose
 * failure you report: it is an HDF5 call itself (it clears the error
 * stack). */
void nn_h5_attr_path(hid_t loc, const char *name, char *buf, size_t n);

/* A new variable-length UTF-8 string type (the caller closes it), or -1. */
hid_t nn_h5_str_type(void);

/* Write a 1-d attribute of n (>= 0) variable-length UTF-8 strings. */
int nn_h5_attr_write_strs(const nn_h5_file *f, hid_t loc, const char *name,
                          const char *const *v, int n, nn_error *err);

/* Strict numeric read: attribute `name` must hold exactly one value whose
 * file type has the class (integer or float) and byte size of mtype; read as
 * mtype into v. f->code otherwise ("has the wrong type or size, expected
 * one 8-byte integer"). For readers that trust nothing: no conversion from
 * a narrower or wider type is silently accepted. */
int nn_h5_attr_read_exact(const nn_h5_file *f, hid_t loc, const char *name, hid_t mtype,
                          void *v, nn_error *err);

/* Read a 1-d attribute of at most max variable-length strings, each
 * shorter than len bytes, into out[max][len] (row i at out + i * len);
 * *n gets the count (0 allowed). f->code if it is anything else. */
int nn_h5_attr_read_strs(const nn_h5_file *f, hid_t loc, const char *name, int max, size_t len,
                         char *out, int *n, nn_error *err);

/* ---- datasets ------------------------------------------------------------ */

/* Write dataset `path` (from f->id; missing groups on the way are created)
 * of file type ftype, ndim dims (ndim 0: a scalar), from data in memory
 * type mtype. Nothing is written for an empty extent. NN_EIO on failure. */
int nn_h5_dset_write(const nn_h5_file *f, const char *path, hid_t ftype, hid_t mtype, int ndim,
                     const hsize_t *dims, const void *data, nn_error *err);

/* What nn_h5_dset_open requires of a dataset. */
typedef struct nn_h5_want {
  H5T_class_t cls;       /* element type class */
  size_t size;           /* element bytes; 0: any */
  const char *type;      /* the element type for messages: "float32", "a string" */
  int ndim;              /* -1: 1-d of any length; 0: scalar; else dims[ndim] */
  const hsize_t *dims;   /* the exact dimensions when ndim > 0 */
  const char *dims_from; /* for messages: where dims come from; may be NULL */
} nn_h5_want;

/* Open dataset `path` (from f->id) into *d after checking it exists and
 * matches *want; with want->ndim -1, *len gets its length. f->code (the
 * dataset named) otherwise, and *d is -1. The caller closes *d. */
int nn_h5_dset_open(const nn_h5_file *f, const char *path, const nn_h5_want *want, hsize_t *len,
                    hid_t *d, nn_error *err);

/* nn_h5_dset_open, then read the whole dataset as mtype into dst. */
int nn_h5_dset_read(const nn_h5_file *f, const char *path, const nn_h5_want *want, hid_t mtype,
                    void *dst, nn_error *err);

/* Number of members (links) of group `path`; f->code if it is missing. */
int nn_h5_group_links(const nn_h5_file *f, const char *path, hsize_t *n, nn_error *err);

#endif
