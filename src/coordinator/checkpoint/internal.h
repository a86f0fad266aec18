/* internal.h: what the files of src/coordinator/checkpoint/ share and nothing
 * outside them uses (the public API is coordinator/checkpoint.h).
 *
 *   h5.c          HDF5 helpers: errors with HDF5's message, attributes,
 *                 datasets, the tensor-table record type, checked reads
 *   snapshot.c    the state-field table, snapshot allocation and filling
 *   codec_write.c the checksum (v1 and v2 rules), pre-write validation and
 *                 write_content (the v2 layout)
 *   codec_read.c  read_content: versions 1 and 2, everything verified
 *   commit.c      nn_ckpt_write: NAME.tmp, close, fsync, verify, rename,
 *                 fsync dir; the fault-injection hook
 *   rundir.c      checkpoint paths, listing, newest good one, pruning
 *   writer.c      the background writer thread */
#ifndef NN_COORDINATOR_CHECKPOINT_INTERNAL_H
#define NN_COORDINATOR_CHECKPOINT_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/checkpoint.h"
#include "worker/h5io.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checkpoint checksum hashes little-endian bytes straight from memory"
#endif

#define CKPT_PATH_MAX 1280   /* longest checkpoint path, with ".tmp" */
#define CKPT_DSET_MAX 320    /* longest dataset path inside the file */
#define CKPT_MODEL_NAME "model" /* the one replica of a version 1 file */

/* ---- h5.c --------------------------------------------------------------- */

/* Record a failure about `file` and `what` (dataset/attribute, may be NULL),
 * with HDF5's innermost message appended when there is one; returns code. */
#define nn__ckpt_fail nn_h5_fail
/* A name usable as one HDF5 path component: non-empty, shorter than max,
 * no '/', not "." or "..". */
int nn__ckpt_name_ok(const char *s, size_t max);
/* snprintf for dataset paths and names built from bounded parts (names are
 * under NN_NAME_MAX, so CKPT_DSET_MAX holds any path): returns what
 * snprintf returns. A function, so the compiler does not second-guess it. */
int nn__ckpt_pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t nn__ckpt_ftype_size(nn_ckpt_ftype t);
hid_t nn__ckpt_ftype_h5(nn_ckpt_ftype t);

/* The compound record of a tensor table (/tensors, replicas/<name>/tensors). */
typedef struct nn__ckpt_tensor_rec {
  char layer[NN_NAME_MAX];
  char name[NN_NAME_MAX];
  int32_t is_buffer;
  int32_t ndim;
  int32_t shape[NN_MAX_DIMS]; /* unused dimensions 0 */
} nn__ckpt_tensor_rec;
/* Its HDF5 type, strings in character set cset; -1 on failure. */
hid_t nn__ckpt_tensor_rec_type(H5T_cset_t cset);

/* Writing into an open file. */
typedef struct nn__ckpt_w {
  hid_t f;            /* the open NAME.tmp */
  hid_t lcpl;         /* link creation: intermediate groups */
  const char *file;   /* name for messages */
  nn_error *err;
} nn__ckpt_w;
int nn__ckpt_w_attr(nn__ckpt_w *w, hid_t loc, const char *locname, const char *name,
                    hid_t type, const void *v);
int nn__ckpt_w_attr_str(nn__ckpt_w *w, hid_t loc, const char *locname, const char *name,
                        const char *v);
/* A 1-d attribute of n variable-length UTF-8 strings. */
int nn__ckpt_w_attr_strs(nn__ckpt_w *w, hid_t loc, const char *locname, const char *name,
                         const char *const *v, int n);
/* Dataset `path` of file type ftype from data (memory type mtype), ndim
 * dims (0: scalar); intermediate groups are created. */
int nn__ckpt_w_dset(nn__ckpt_w *w, const char *path, hid_t ftype, hid_t mtype, int ndim,
                    const hsize_t *dims, const void *data);
int nn__ckpt_w_floats(nn__ckpt_w *w, const char *path, const nn_shape *shape,
                      const float *data);

/* Reading from an open file: every helper checks type and shape first. */
typedef struct nn__ckpt_r {
  hid_t f;
  const char *file;
  nn_error *err;
} nn__ckpt_r;
#define NN__CKPT_RFAIL(r, what, ...) \
  nn__ckpt_fail((r)->err, NN_ECKPT, (r)->file, what, __VA_ARGS__)
/* Scalar numeric attribute of class cls and byte size `size`, read as mtype. */
int nn__ckpt_r_attr_num(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name,
                        H5T_class_t cls, size_t size, hid_t mtype, void *v);
/* Scalar string attribute (variable or fixed length) into buf[n]. */
int nn__ckpt_r_attr_str(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name,
                        char *buf, size_t n);
/* 1-d attribute of at most max variable-length strings, each a usable name
 * shorter than len, into out[max][len]; *n gets the count. */
int nn__ckpt_r_attr_names(nn__ckpt_r *r, hid_t loc, const char *locname, const char *name,
                          int max, size_t len, char *out, int *n);
/* Open dataset `path`; check its class/size and that its dims equal
 * dims[ndim] (ndim -1: any 1-d length, returned in *len). */
int nn__ckpt_r_dset_open(nn__ckpt_r *r, const char *path, H5T_class_t cls, size_t size,
                         int ndim, const hsize_t *dims, hsize_t *len, hid_t *d);
int nn__ckpt_r_floats(nn__ckpt_r *r, const char *path, const nn_shape *shape, float *dst);
/* Number of links in group `path` (missing: an error naming it). */
int nn__ckpt_r_group_links(nn__ckpt_r *r, const char *path, hsize_t *n);

/* ---- snapshot.c ---------------------------------------------------------- */

/* Allocate the arrays of replica r (zeroed first) for the given sizes. */
int nn__ckpt_replica_alloc(nn_ckpt_replica *r, int ntensors, size_t nparams, size_t ntrainable,
                           size_t nbuffers, int nslots, nn_error *err);
/* Allocate the spec and metrics buffers of an empty snapshot. */
int nn__ckpt_snapshot_alloc_text(nn_ckpt_snapshot *s, nn_error *err);
/* Make room for n bytes in *bufp (a char **; capacity *cap). */
int nn__ckpt_grow(void *bufp, size_t *cap, size_t n, nn_error *err);
/* 1 if the first ntrainable parameter floats are whole tensors of t[ntensors]
 * (trained tensors first, frozen ones after), else 0. */
int nn__ckpt_trainable_ok(const nn_tensor_ref *t, int ntensors, size_t ntrainable);

/* ---- codec_write.c / codec_read.c ---------------------------------------- */

/* Checksum by the rules of `version` (1 or 2). */
uint64_t nn__ckpt_checksum_v(const nn_ckpt_snapshot *s, int version);
/* Refuse what the format cannot hold or a reader would refuse (NN_EINVAL),
 * and non-finite values (NN_ENUMERIC); path names the file in errors. */
int nn__ckpt_check(const nn_ckpt_snapshot *s, const char *path, nn_error *err);
/* Write every dataset and attribute of s (version 2) into the open w->f. */
int nn__ckpt_write_content(nn__ckpt_w *w, const nn_ckpt_snapshot *s, uint64_t checksum);
/* Read and verify `path` into s (allocated on success, empty on failure);
 * *stored gets the checksum the file states. */
int nn__ckpt_read_file(const char *path, nn_ckpt_snapshot *s, uint64_t *stored, nn_error *err);

/* ---- commit.c ------------------------------------------------------------- */

#ifdef NN_FAULT_INJECTION
/* SIGKILL this process when NN_CKPT_KILL_AT names `stage` (checkpoint.h). */
void nn__ckpt_kill_at(const char *stage);
#else
static inline void nn__ckpt_kill_at(const char *stage) { (void)stage; }
#endif

/* "buffers" or "params": the group of tensor t. */
static inline const char *nn__ckpt_tensor_group(const nn_tensor_ref *t) {
  return t->is_buffer ? "buffers" : "params";
}

#endif
