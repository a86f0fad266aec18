/* checkpoint.h: HDF5 checkpoints: what they hold, crash-safe writing on a
 * background thread, validating reads, and finding the newest good one.
 *
 * A checkpoint is self-describing: the serialized JobSpec, one group per
 * named replica (/replicas/<name>/: every parameter and buffer tensor under
 * params/<layer>/<name> and buffers/<layer>/<name> with PyTorch's names and
 * shapes, the optimizer slots under optimizer/<slot>/<layer>/<name>), the run
 * state (step, epoch, data position, seed, schedule and early-stopping state)
 * as attributes of /state, the metrics history (metrics.jsonl lines) and a
 * checksum over all of it. Version 1 files (one model at the root) still
 * read, as one replica named "model". The layout is documented in
 * docs/checkpoint-format.md; the code is in src/coordinator/checkpoint/.
 *
 * Writing is crash-safe: the file is written as NAME.tmp, closed, fsync'ed,
 * re-opened and verified (checksum), renamed to NAME, and the directory is
 * fsync'ed; only then are checkpoints beyond the newest `keep` removed. A
 * process killed at any stage leaves every complete checkpoint intact and no
 * partial file under a final name. A snapshot whose parameters are not all
 * finite is refused (NN_ENUMERIC) and never replaces a good checkpoint.
 *
 * Nothing here knows MPI: rank 0 takes a snapshot (copies of the arenas) and
 * hands it to the writer thread, so the step loop continues while it is
 * written. */
#ifndef NN_COORDINATOR_CHECKPOINT_H
#define NN_COORDINATOR_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "coordinator/run/decide_state.h"
#include "core/model.h"

#define NN_CKPT_FORMAT "nntrain-checkpoint"
#define NN_CKPT_VERSION 2       /* the version written; 1 and 2 are read */
#define NN_CKPT_MAX_SLOTS 4
#define NN_CKPT_MAX_REPLICAS 4

/* The run's scalar state; identical on every rank. Saved as attributes of
 * /state, one per field, by name. */
typedef struct nn_ckpt_state {
  int64_t step;            /* global optimizer steps completed */
  int32_t epoch;           /* epoch of the next step (0-based) */
  int64_t epoch_step;      /* steps of `epoch` already done: the data position */
  uint64_t seed;           /* train.seed: with (epoch, step, sample) it keys every draw */
  uint64_t optim_t;        /* v1 files only: the optimizer step counter (v2 keeps
                              it per replica, nn_ckpt_replica.optim_t) */
  int32_t nranks;          /* ranks of the run that wrote it (information) */
  double lr;               /* learning rate of the last step */
  double elapsed_s;        /* training wall time so far */
  nn_decide_state decide;  /* early stopping and reduce-on-plateau (run/decide.h); saved
                              as plateau_scale, plateau_best, plateau_bad, plateau_cooldown,
                              es_best, es_bad, es_best_epoch */
  /* train.on_nonfinite (docs/training.md#non-finite-steps); 0 in files from before them */
  int32_t nonfinite_run;   /* "skip": non-finite steps in a row just before this point */
  int64_t nonfinite_skipped; /* "skip": steps dropped as non-finite so far */
  int32_t rollbacks;       /* "rollback": rollbacks so far; the learning rate is scaled by
                              train.nonfinite_lr_factor to this power */
} nn_ckpt_state;

/* One named replica: a model's tensors and its optimizer. Owned buffers. */
typedef struct nn_ckpt_replica {
  char name[NN_NAME_MAX];  /* "model" in a one-model run; v1 files read as "model" */
  int ntensors;            /* parameters then buffers, as in nn_model.tensors */
  nn_tensor_ref *tensors;  /* [ntensors] */
  size_t nparams;
  float *params;           /* [nparams] */
  size_t ntrainable;       /* params [0, ntrainable) are trained; == nparams unless
                              layers are frozen (they sit at the arena's end) */
  size_t nbuffers;
  float *buffers;          /* [nbuffers] */
  char optim_type[16];     /* "sgd", "adam", ... */
  int nslots;              /* optimizer slot tensors per trained parameter */
  char slot_names[NN_CKPT_MAX_SLOTS][32]; /* "momentum_buffer", "exp_avg", ... */
  float *slots;            /* [nslots * ntrainable], slot-major as nn_optim.slots */
  uint64_t optim_t;        /* optimizer step counter (Adam bias correction) */
  /* Carried state (language models, core/layer.h carry): one row per data
   * stream in stream order, carry_cols = the model's carry_per_sample; 0 rows:
   * none (every other kind of run). Written as replicas/<name>/carry. */
  size_t carry_rows, carry_cols;
  float *carry;            /* [carry_rows, carry_cols], owned */
  size_t carry_cap;        /* floats allocated */
} nn_ckpt_replica;

/* Everything a checkpoint holds, in memory. Owned buffers; a snapshot is
 * allocated once for its models (nn_ckpt_snapshot_init) and refilled by
 * copying, so taking one allocates nothing in the step loop. */
typedef struct nn_ckpt_snapshot {
  int version;             /* set by nn_ckpt_read: 1 or 2; writes are always 2 */
  uint8_t *spec;           /* serialized JobSpec */
  size_t spec_len, spec_cap;
  int nreplicas;           /* 1 .. NN_CKPT_MAX_REPLICAS */
  nn_ckpt_replica rep[NN_CKPT_MAX_REPLICAS]; /* in the run's order */
  nn_ckpt_state state;     /* run-level (optim_t is only read from v1 files) */
  char *metrics;           /* metrics history: metrics.jsonl lines, NUL-terminated */
  size_t metrics_len, metrics_cap;
  char created[32];        /* set by nn_ckpt_read: the file's "created" attribute
                              (UTC, ISO 8601); ignored by writes, which stamp now */
} nn_ckpt_snapshot;

/* Allocate a snapshot for n replicas (1 .. NN_CKPT_MAX_REPLICAS): replica i
 * is called names[i] (a non-empty HDF5 path component, unique), gets a copy
 * of models[i]'s tensor table and current values, and room for nslots[i]
 * optimizer slots over its trained parameters (models[i]->ntrainable; frozen
 * layers sit after them, core/model.h). */
int nn_ckpt_snapshot_init(nn_ckpt_snapshot *s, int n, const char *const *names,
                          const nn_model *const *models, const int *nslots, nn_error *err);
void nn_ckpt_snapshot_free(nn_ckpt_snapshot *s);
/* Index of the replica called name in s, or -1. */
int nn_ckpt_find_replica(const nn_ckpt_snapshot *s, const char *name);
/* Set the spec / metrics text (copied; grows the buffers as needed). */
int nn_ckpt_snapshot_set_spec(nn_ckpt_snapshot *s, const uint8_t *spec, size_t len,
                              nn_error *err);
int nn_ckpt_snapshot_set_metrics(nn_ckpt_snapshot *s, const char *text, size_t len,
                                 nn_error *err);

/* The /state attributes, one row per nn_ckpt_state field, in the order they
 * are written and hashed. Ends with {NULL}. */
typedef enum nn_ckpt_ftype {
  NN_CKPT_I32,  /* int32_t */
  NN_CKPT_I64,  /* int64_t */
  NN_CKPT_U64,  /* uint64_t */
  NN_CKPT_F64,  /* double */
} nn_ckpt_ftype;
typedef struct nn_ckpt_field {
  const char *name;        /* attribute name = field name */
  nn_ckpt_ftype type;
  size_t offset;           /* offsetof(nn_ckpt_state, name) */
  const char *help;        /* one line for docs and inspect */
  int v1_only;             /* 1: in version 1 files only (not written, not hashed in v2) */
  int optional;            /* 1: added after version 2 first shipped: a file without it
                              reads as 0, and it enters the checksum only when not 0, so
                              older files still verify */
} nn_ckpt_field;
const nn_ckpt_field *nn_ckpt_state_fields(void);
/* Value of field f of st as text ("12", "0.001", "nan") into buf; returns buf. */
char *nn_ckpt_field_str(const nn_ckpt_state *st, const nn_ckpt_field *f, char *buf, size_t n);

/* The checksum of a snapshot's content (64-bit FNV-1a over the canonical
 * serialization in docs/checkpoint-format.md) by the rules of s->version
 * (1: a v1 file's, one replica; anything else: version 2's); what the file's
 * root "checksum" attribute holds as 16 hex digits. */
uint64_t nn_ckpt_checksum(const nn_ckpt_snapshot *s);

/* Write s to `path` crash-safely (see above), synchronously. The parent
 * directory is created if missing. Errors: NN_ENUMERIC (a parameter, buffer
 * or slot value is not finite; nothing is written), NN_EINVAL (a tensor or
 * slot name unusable as an HDF5 path), NN_EIO / NN_ECKPT naming the file. */
int nn_ckpt_write(const nn_ckpt_snapshot *s, const char *path, nn_error *err);

/* Read and verify a checkpoint: format, version, checksum, structure. On
 * success *s is allocated (free with nn_ckpt_snapshot_free). Errors NN_ECKPT
 * (or NN_ENOTFOUND) name the file and what is wrong: not HDF5, truncated,
 * checksum mismatch, missing dataset, bad shape. */
int nn_ckpt_read(const char *path, nn_ckpt_snapshot *s, nn_error *err);

/* The checkpoints of a run directory: DIR/checkpoints/step-<12 digits>.h5.
 * Path of the checkpoint for `step`. */
void nn_ckpt_path(const char *dir, int64_t step, char *buf, size_t n);

/* Newest checkpoint in DIR/checkpoints that reads and verifies. Each newer
 * one that fails is reported through warn (may be NULL) and skipped.
 * NN_ENOTFOUND when there is none. On success *s holds it and path its name. */
typedef void (*nn_ckpt_warn_fn)(void *user, const nn_error *e);
int nn_ckpt_read_latest(const char *dir, nn_ckpt_snapshot *s, char *path, size_t n,
                        nn_ckpt_warn_fn warn, void *user, nn_error *err);

/* Remove all but the newest `keep` checkpoints of DIR/checkpoints (and any
 * *.tmp left by a killed writer). keep <= 0 keeps every checkpoint (the
 * *.tmp files are still removed). A missing directory is not an error. */
int nn_ckpt_prune(const char *dir, int keep, nn_error *err);

/* ---- background writer ---------------------------------------------------- */

typedef struct nn_ckpt_writer nn_ckpt_writer;

/* A writer thread for run directory `dir`, keeping the newest `keep`. */
int nn_ckpt_writer_start(nn_ckpt_writer **w, const char *dir, int keep, nn_error *err);
/* A snapshot to fill for the next submission: waits until the writer no
 * longer needs it (two snapshots alternate, so this only waits when the
 * previous write is still running and the one before too). Never NULL. */
nn_ckpt_snapshot *nn_ckpt_writer_slot(nn_ckpt_writer *w);
/* Write the slot returned by nn_ckpt_writer_slot to `path` (absolute or
 * relative to the cwd; "" or NULL = nn_ckpt_path(dir, s->state.step)) and,
 * when that succeeded, prune to `keep`. Returns at once; after it the caller
 * must not touch the slot. NN_EINVAL if no slot was taken. */
int nn_ckpt_writer_submit(nn_ckpt_writer *w, const char *path, nn_error *err);
/* Wait for every submitted write; returns the first failure since the last
 * wait (its error in err), or 0. */
int nn_ckpt_writer_wait(nn_ckpt_writer *w, nn_error *err);
/* Replica r's carried state: rows x cols floats copied from data (the buffer
 * grows once, then is reused). NN_ENOMEM, or NN_EINVAL past NN_MAX_ELEMS. */
int nn_ckpt_replica_set_carry(nn_ckpt_replica *r, size_t rows, size_t cols, const float *data,
                              nn_error *err);
/* Wait for every submitted write, leaving a failure for the next wait. */
void nn_ckpt_writer_drain(nn_ckpt_writer *w);
/* Wait, stop the thread, free the snapshots. */
void nn_ckpt_writer_free(nn_ckpt_writer *w);
/* Initialize both snapshots of the writer for n replicas, as
 * nn_ckpt_snapshot_init (before the first slot; waits for pending writes). */
int nn_ckpt_writer_init_snapshots(nn_ckpt_writer *w, int n, const char *const *names,
                                  const nn_model *const *models, const int *nslots,
                                  nn_error *err);

/* Test hook, compiled only with -DNN_FAULT_INJECTION=ON (the CMake option
 * defines NN_FAULT_INJECTION=1; `nntrain --version` then prints a line
 * "build: fault injection (NN_CKPT_KILL_AT)"). nn_ckpt_fault_injection()
 * says whether this build has it. When the environment variable
 * NN_CKPT_KILL_AT names a stage
 * ("data", "close", "sync", "verify", "rename", "dirsync", "prune"), the
 * writing process kills itself with SIGKILL at that stage:
 *   data     the parameters are written into NAME.tmp, the rest not yet
 *   close    NAME.tmp is closed, not yet fsync'ed
 *   sync     NAME.tmp is fsync'ed, not yet verified
 *   verify   NAME.tmp is verified, not yet renamed
 *   rename   NAME exists, the directory is not yet fsync'ed
 *   dirsync  the directory is fsync'ed (the write is complete)
 *   prune    nn_ckpt_prune removed its first file (or found none to remove) */

int nn_ckpt_fault_injection(void);

#endif
