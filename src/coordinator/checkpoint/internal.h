/* internal.h: what the files of src/coordinator/checkpoint/ share and nothing
 * outside them uses (the public API is coordinator/checkpoint.h).
 *
 *   h5.c          the checkpoint's own HDF5 pieces: names, paths, field
 *                 types, the tensor-table record, float32 tensor datasets
 *                 and name lists (generic HDF5 helpers: worker/h5io.h)
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

/* Writing into an open file: generic attribute and dataset writing is
 * worker/h5io.h (nn_h5_attr_write*, nn_h5_dset_write) on w->h. */
typedef struct nn__ckpt_w {
  nn_h5_file h;       /* the open NAME.tmp; code NN_EIO */
  hid_t lcpl;         /* link creation: intermediate groups */
  nn_error *err;
} nn__ckpt_w;
/* A float32 tensor dataset `path` of the given shape. */
int nn__ckpt_w_floats(nn__ckpt_w *w, const char *path, const nn_shape *shape,
                      const float *data);

/* Reading from an open file: generic checked reads are worker/h5io.h
 * (nn_h5_attr_read_exact/_str, nn_h5_dset_open, nn_h5_group_links) on r->h,
 * whose code is NN_ECKPT; every one checks type and shape first. */
typedef struct nn__ckpt_r {
  nn_h5_file h;
  nn_error *err;
} nn__ckpt_r;
#define NN__CKPT_RFAIL(r, what, ...) \
  nn_h5_fail((r)->err, NN_ECKPT, (r)->h.path, what, __VA_ARGS__)
/* The 1-d string attribute `name` of loc: at most max entries, each a usable
 * name (nn__ckpt_name_ok) shorter than len, into out[max][len]; *n gets the
 * count. */
int nn__ckpt_r_names(nn__ckpt_r *r, hid_t loc, const char *name, int max, size_t len, char *out,
                     int *n);
/* The float32 tensor dataset `path`, which must have exactly `shape`. */
int nn__ckpt_r_floats(nn__ckpt_r *r, const char *path, const nn_shape *shape, float *dst);

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
