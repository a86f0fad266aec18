/* job.h: the job specification: what a job file says, validated.
 *
 * A job file (TOML) is read through key tables (one per section, one per
 * layer type) that give every key's type, range, default and help; the same
 * tables generate docs/job-file.md and the "did you mean" suggestions. The
 * validated job is an nn_job. Rank 0 parses the file and ships the job to the
 * other ranks as a serialized JobSpec protobuf (proto/nntrain.proto), whose
 * field names equal the TOML keys. */
#ifndef NN_COORDINATOR_JOB_H
#define NN_COORDINATOR_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"
#include "core/keys.h"
#include "core/layer.h"
#include "core/optim.h"
#include "coordinator/schedule.h"
#include "worker/augment.h"

#define NN_JOB_MAX_LAYERS 256
#define NN_PATH_MAX 1024

typedef struct nn_job_data {
  char train[NN_PATH_MAX];  /* glob of training shards */
  char test[NN_PATH_MAX];   /* glob of test shards, "" = none */
  int normalize;            /* standardize inputs with the shards' mean/std */
  int cache;                /* load the whole data set into memory */
  int prefetch;             /* batches read ahead by the loader thread */
  char validation[NN_PATH_MAX]; /* glob of validation shards, "" = none */
  double validation_split;  /* fraction of the training set held out, 0 = none */
} nn_job_data;

typedef struct nn_job_validation {
  int every_epochs;         /* validate after every N epochs */
  int top_k;                /* also report top-k accuracy (0: off) */
} nn_job_validation;

typedef struct nn_job_checkpoint {
  int every_steps;          /* 0: off */
  int every_epochs;         /* 0: off */
  double every_seconds;     /* 0: off */
  int keep;                 /* newest checkpoints kept */
  int at_end;               /* write one when training ends */
} nn_job_checkpoint;

typedef struct nn_job_early_stopping {
  char monitor[32];         /* "val_loss", "val_accuracy", ... */
  char mode[8];             /* "min" | "max" | "auto" */
  int patience;             /* epochs without improvement before stopping; 0: off */
  double min_delta;         /* smallest change that counts as an improvement */
  int restore_best;         /* load best.h5's parameters at the end */
} nn_job_early_stopping;

typedef struct nn_job_train {
  int epochs;
  int batch_size;           /* GLOBAL batch, split over the ranks */
  char loss[24];
  int64_t seed;
  int drop_last;            /* drop the final partial batch of each epoch */
  int accumulate;           /* micro-batches of batch_size per optimizer step (gradient
                               accumulation; docs/training.md#gradient-accumulation) */
  int bptt;                 /* > 0: language model on a token stream, windows of bptt
                               tokens (truncated back-propagation through time) */
  double clip_value;        /* clip each summed gradient element to +-clip_value; 0 = off */
  double clip_norm;         /* scale the summed gradients to global norm <= clip_norm; 0 = off */
  char task[24];            /* task kind (coordinator/run/task.h): "supervised", ... */
  char on_nonfinite[12];    /* "stop" | "skip" | "rollback": a step whose gradient or loss
                               is NaN/Inf */
  int nonfinite_max_skips;  /* skip: stop after this many non-finite steps in a row */
  double nonfinite_lr_factor; /* rollback: the learning rate's factor per rollback */
  int nonfinite_max_rollbacks; /* rollback: stop at the non-finite step after this many */
  char precision[8];        /* "fp32" | "bf16": the convolutions' compute precision
                               (core/compute.h); a run setting, not in checkpoints */
  char allreduce[16];       /* "auto" | "ring" | "hierarchical": the gradient all-reduce
                               (worker/hier.h); a run setting */
  char grad_compression[8]; /* "none" | "bf16" | "fp16": gradient values on the wire */
  int allreduce_chunk_kib;  /* the all-reduce's message size in KiB (0: auto) */
  /* train.task = "gan" (run/tasks/gan.c) */
  char gan_discriminator[NN_NAME_MAX]; /* the discriminator's first layer in [model] */
  int gan_latent;           /* the generator's noise vector size */
  int gan_d_steps;          /* discriminator steps per generator step */
} nn_job_train;

typedef struct nn_job_run {
  char dir[NN_PATH_MAX];    /* run directory: metrics.jsonl, checkpoints */
  int threads;              /* BLAS threads per rank, 0 = cores / ranks on the node */
  int progress;             /* live progress bar when stderr is a terminal */
  char stop_signals[16];    /* "usr1" | "term" | "usr1+term": stop with a checkpoint */
  char resume[8];           /* "no" | "auto": continue from the newest checkpoint if any */
  int log_every_steps;      /* a step record every N steps, 0 = none */
  int report;               /* rewrite RUN_DIR/report.html every epoch */
} nn_job_run;

/* [init]: start a fresh run from another model's tensors (fine-tuning,
 * coordinator/init_from.h). Ignored on resume. */
typedef struct nn_job_init {
  char from[NN_PATH_MAX];   /* HDF5 file in the checkpoint layout, "" = none */
  char replica[64];         /* replica group of a replica-group checkpoint */
} nn_job_init;

typedef struct nn_job_model {
  int input_ndim;           /* 0 = take the input shape from the data */
  int input_shape[NN_MAX_DIMS];
  int nlayers;
  nn_layer_cfg layers[NN_JOB_MAX_LAYERS];
  int layer_line[NN_JOB_MAX_LAYERS]; /* line in the job file, 0 if unknown */
} nn_job_model;

typedef struct nn_job {
  char name[64];
  char source[NN_PATH_MAX]; /* job file path (for messages) */
  nn_job_data data;
  nn_job_model model;
  nn_job_train train;
  nn_optim_cfg optimizer;
  nn_schedule_cfg schedule;
  nn_job_run run;
  nn_job_validation validation;
  nn_job_checkpoint checkpoint;
  nn_job_early_stopping early_stopping;
  nn_augment_cfg augment;
  nn_job_init init;
} nn_job;

/* Parse and validate a job file. `overrides` are n "section.key=value"
 * strings (from --set) applied on top of the file, values in TOML syntax
 * (a value that is not valid TOML is taken as a string). Errors: NN_EIO,
 * NN_ESYNTAX (TOML), NN_ESCHEMA (unknown key, wrong type, out of range),
 * each with file:line:column. */
int nn_job_load(nn_job *job, const char *path, const char *const *overrides,
                int noverrides, nn_error *err);

/* As nn_job_load, from text in memory (filename for messages). */
int nn_job_parse(nn_job *job, const char *text, size_t len, const char *filename,
                 const char *const *overrides, int noverrides, nn_error *err);

/* Point an error from nn_model_build(job->model.layers, ...) at the job file:
 * err->file = job->source and err->line = the line of the layer config that
 * err->where names (an expanded layer, "dense0_relu" or "residual2.shortcut",
 * counts as its config's). A message with a file already is left alone.
 * Returns err->code. Every command that builds a job's model calls this on
 * failure, so a graph or shape error reads "job.toml:12: layer 3 ...". */
int nn_job_model_error(const nn_job *job, nn_error *err);

/* Where the job file gives section.key: *line and *col of its value, read
 * again from job->source (error paths only: checks against the data, which
 * the parser cannot see). 0 and 0 when the file does not give it, gives
 * another value (it came from --set) or cannot be read. */
void nn_job_key_pos(const nn_job *job, const char *section, const char *key, int *line,
                    int *col);

/* Serialize to a JobSpec protobuf. *buf is malloc'ed (caller frees). */
int nn_job_pack(const nn_job *job, uint8_t **buf, size_t *len, nn_error *err);
/* Deserialize a JobSpec protobuf (from nn_job_pack, a broadcast or a checkpoint). */
int nn_job_unpack(nn_job *job, const uint8_t *buf, size_t len, nn_error *err);

/* 1 if a and b hold the same job (every key of every section and layer,
 * the layer lines and the source path), else 0. */
int nn_job_equal(const nn_job *a, const nn_job *b);

/* The sections of a job file, for docs and tests. */
typedef struct nn_job_section {
  const char *name;        /* "data", "train", ... ("" = top level) */
  const char *help;
  const nn_key *keys;
  size_t offset;           /* offsetof(nn_job, section struct) */
} nn_job_section;
const nn_job_section *nn_job_sections(void); /* ends with {NULL} */

/* Write docs/job-file.md (the reference for every key) to `f`. */
void nn_job_write_reference(FILE *f);

/* Edit distance, for "did you mean". */
int nn_edit_distance(const char *a, const char *b);

#endif
