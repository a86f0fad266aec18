/* job.c: the job file schema and its table-driven parser (see job.h).
 *
 * Each section of a job file is a key table (nn_key, core/keys.h); the
 * parser walks the TOML tree once, section by section:
 *   1. every key the file (or a --set override) gives must be in the
 *      section's table, else "unknown key ... did you mean ...";
 *   2. defaults from the table, then the given values, each checked for type
 *      and range by the generic setter (job_keys.c);
 *   3. required keys that were not given are reported at the section header.
 * Layers are [[model.layers]] tables: the `type` key picks the layer type,
 * whose ops->keys table (plus `type` and `name`) is then used the same way.
 * --set overrides never modify the TOML tree: a lookup of section.key
 * consults the overrides first (the last one wins), so an error in an
 * override names the override instead of a place in the file.
 * Nothing here prints; every error goes to the caller's nn_error. */
#include "coordinator/job.h"
#include "core/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job_keys.h"
#include "coordinator/run/task.h"
#include "core/loss.h"
#include "core/model.h"
#include "toml/toml.h"

/* ---- the schema ----------------------------------------------------------- */

#define SZ(type, member) sizeof(((type *)0)->member)

static const nn_key top_keys[] = {
  {.name = "name", .type = NN_KEY_STRING, .offset = offsetof(nn_job, name),
   .size = SZ(nn_job, name),
   .help = "Job name, used in messages and in the default run directory. "
           "Default: the job file's name without .toml."},
  {0},
};

static const nn_key data_keys[] = {
  {.name = "train", .type = NN_KEY_STRING, .offset = offsetof(nn_job_data, train),
   .size = SZ(nn_job_data, train), .flags = NN_KEY_REQUIRED,
   .help = "Glob of the training shards (HDF5, docs/data-format.md), relative to the "
           "current directory."},
  {.name = "test", .type = NN_KEY_STRING, .offset = offsetof(nn_job_data, test),
   .size = SZ(nn_job_data, test), .def = "\"\"",
   .help = "Glob of the test shards evaluated after each epoch; empty: no evaluation."},
  {.name = "normalize", .type = NN_KEY_BOOL, .offset = offsetof(nn_job_data, normalize),
   .size = sizeof(int), .def = "true",
   .help = "Standardize inputs per channel with the mean/std stored in the training "
           "shards."},
  {.name = "cache", .type = NN_KEY_BOOL, .offset = offsetof(nn_job_data, cache),
   .size = sizeof(int), .def = "false",
   .help = "Load the whole data set into memory at start instead of reading shards as "
           "needed."},
  {.name = "prefetch", .type = NN_KEY_INT, .offset = offsetof(nn_job_data, prefetch),
   .size = sizeof(int), .min = 0, .max = 64, .def = "4",
   .help = "Batches the loader thread reads ahead (0: read in the training thread)."},
  {.name = "validation", .type = NN_KEY_STRING, .offset = offsetof(nn_job_data, validation),
   .size = SZ(nn_job_data, validation), .def = "\"\"",
   .help = "Glob of validation shards; empty: none (or a validation_split)."},
  {.name = "validation_split", .type = NN_KEY_FLOAT,
   .offset = offsetof(nn_job_data, validation_split), .size = sizeof(double), .min = 0,
   .max = 0.9, .def = "0",
   .help = "Fraction of the training samples held out for validation, drawn from the job "
           "seed (the same samples on any number of ranks); 0: none. Not with "
           "data.validation."},
  {0},
};

static const nn_key validation_keys[] = {
  {.name = "every_epochs", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_validation, every_epochs), .size = sizeof(int), .min = 1,
   .max = 1000000, .def = "1", .help = "Validate after every N epochs (and after the last)."},
  {.name = "top_k", .type = NN_KEY_INT, .offset = offsetof(nn_job_validation, top_k),
   .size = sizeof(int), .min = 0, .max = 1000, .def = "5",
   .help = "Also report top-k accuracy for this k (0: off; skipped when k >= classes)."},
  {0},
};

static const nn_key checkpoint_keys[] = {
  {.name = "every_steps", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_checkpoint, every_steps), .size = sizeof(int), .min = 0,
   .max = 1 << 30, .def = "0", .help = "Write a checkpoint every N optimizer steps; 0: off."},
  {.name = "every_epochs", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_checkpoint, every_epochs), .size = sizeof(int), .min = 0,
   .max = 1000000, .def = "1", .help = "Write a checkpoint every N epochs; 0: off."},
  {.name = "every_seconds", .type = NN_KEY_FLOAT,
   .offset = offsetof(nn_job_checkpoint, every_seconds), .size = sizeof(double), .min = 0,
   .max = 1e9, .def = "0",
   .help = "Write a checkpoint when this many seconds passed since the last (rank 0's "
           "clock decides, every rank follows at the same step); 0: off."},
  {.name = "keep", .type = NN_KEY_INT, .offset = offsetof(nn_job_checkpoint, keep),
   .size = sizeof(int), .min = 1, .max = 100000, .def = "3",
   .help = "Newest checkpoints kept in RUN_DIR/checkpoints; older ones are removed."},
  {.name = "at_end", .type = NN_KEY_BOOL, .offset = offsetof(nn_job_checkpoint, at_end),
   .size = sizeof(int), .def = "true", .help = "Write a checkpoint when training ends."},
  {0},
};

static const nn_key early_stopping_keys[] = {
  {.name = "monitor", .type = NN_KEY_ENUM,
   .offset = offsetof(nn_job_early_stopping, monitor), .size = SZ(nn_job_early_stopping, monitor),
   .def = "\"val_loss\"",
   .choices = "val_loss|val_accuracy|val_macro_f1|val_top_k_accuracy|val_roc_auc|val_map|"
              "val_mse|val_mae|loss|accuracy|val_auc",
   .help = "The metric watched for improvement (val_*: on the validation set; the names of "
           "the figures in metrics.jsonl, docs/metrics.md). val_auc is an old alias of "
           "val_roc_auc."},
  {.name = "mode", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_early_stopping, mode),
   .size = SZ(nn_job_early_stopping, mode), .def = "\"auto\"", .choices = "auto|min|max",
   .help = "min: lower is better; max: higher is better; auto: max for accuracy, F1, mAP and "
           "AUC, min otherwise."},
  {.name = "patience", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_early_stopping, patience), .size = sizeof(int), .min = 0,
   .max = 1000000, .def = "0",
   .help = "Stop after this many validations without improvement; 0: never stop early "
           "(best.h5 is still kept)."},
  {.name = "min_delta", .type = NN_KEY_FLOAT,
   .offset = offsetof(nn_job_early_stopping, min_delta), .size = sizeof(double), .min = 0,
   .max = 1e30, .def = "0",
   .help = "An improvement must exceed this absolute amount."},
  {.name = "restore_best", .type = NN_KEY_BOOL,
   .offset = offsetof(nn_job_early_stopping, restore_best), .size = sizeof(int),
   .def = "false",
   .help = "At the end, continue with the best model's parameters (best.h5) for the final "
           "test evaluation."},
  {0},
};

static const nn_key model_keys[] = {
  {.name = "input_shape", .type = NN_KEY_INT_LIST,
   .offset = offsetof(nn_job_model, input_shape), .size = NN_MAX_DIMS, .min = 1,
   .max = 1 << 24, .count_offset = offsetof(nn_job_model, input_ndim),
   .help = "Per-sample input shape, e.g. [1, 28, 28] (channels, height, width). "
           "Default: the sample shape of the training shards."},
  {0},
};

static const nn_key train_keys[] = {
  {.name = "epochs", .type = NN_KEY_INT, .offset = offsetof(nn_job_train, epochs),
   .size = sizeof(int), .min = 1, .max = 1000000, .def = "10",
   .help = "Passes over the training data."},
  {.name = "batch_size", .type = NN_KEY_INT, .offset = offsetof(nn_job_train, batch_size),
   .size = sizeof(int), .min = 1, .max = 1 << 24, .def = "32",
   .help = "GLOBAL batch size: the samples of one optimizer step summed over all "
           "ranks; each rank takes a contiguous slice of it."},
  {.name = "loss", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_train, loss),
   .size = SZ(nn_job_train, loss), .def = "\"cross_entropy\"",
   .choices = "cross_entropy|mse|binary_cross_entropy",
   .help = "Loss: cross_entropy (softmax + negative log likelihood on the model's "
           "logits, integer class labels), mse (mean squared error against "
           "regression targets) or binary_cross_entropy (sigmoid + binary cross-entropy "
           "on each logit, mean over the outputs: multi-label shards, one output per "
           "label; a two-class task is a one-label multi-label shard, docs/metrics.md)."},
  {.name = "seed", .type = NN_KEY_INT64, .offset = offsetof(nn_job_train, seed),
   .size = sizeof(int64_t), .min = 0, .max = 9007199254740992.0, .def = "1",
   .help = "Seed of every random draw (initialization, shuffling, dropout, "
           "augmentation); the same seed gives the same run on any number of ranks."},
  {.name = "drop_last", .type = NN_KEY_BOOL, .offset = offsetof(nn_job_train, drop_last),
   .size = sizeof(int), .def = "false",
   .help = "Drop the final partial batch of each epoch instead of training on it."},
  {.name = "accumulate", .type = NN_KEY_INT, .offset = offsetof(nn_job_train, accumulate),
   .size = sizeof(int), .min = 1, .max = 65536, .def = "1", .flags = NN_KEY_ZERO_ABSENT,
   .help = "Gradient accumulation: micro-batches per optimizer step. Each step trains "
           "accumulate x batch_size samples (exactly those batch_size = accumulate x "
           "batch_size would give) as accumulate micro-batches of batch_size, with one "
           "gradient all-reduce and one update; activations need memory for batch_size only. "
           "Steps, schedules and checkpoints count optimizer steps. BatchNorm normalizes each "
           "micro-batch (docs/training.md#gradient-accumulation). Every task kind; a "
           "language model's batch_size streams become accumulate x batch_size."},
  {.name = "bptt", .type = NN_KEY_INT, .offset = offsetof(nn_job_train, bptt),
   .size = sizeof(int), .min = 0, .max = 65536, .def = "0",
   .help = "train.task = \"language_model\": tokens per window of truncated back-propagation "
           "through time; train.batch_size is then the number of streams the token stream is "
           "cut into (docs/training.md#language-models). 0: not a language model."},
  {.name = "clip_value", .type = NN_KEY_FLOAT, .offset = offsetof(nn_job_train, clip_value),
   .size = sizeof(double), .min = 0, .max = 1e30, .def = "0",
   .help = "Clip every element of the summed gradient to [-clip_value, clip_value] "
           "after weight penalties, before clip_norm and the optimizer; 0: off."},
  {.name = "clip_norm", .type = NN_KEY_FLOAT, .offset = offsetof(nn_job_train, clip_norm),
   .size = sizeof(double), .min = 0, .max = 1e30, .def = "0",
   .help = "Scale the summed gradient (all parameters as one vector) so its L2 norm is at "
           "most clip_norm, as torch.nn.utils.clip_grad_norm_; after clip_value; 0: off."},
  {.name = "task", .type = NN_KEY_STRING, .offset = offsetof(nn_job_train, task),
   .size = SZ(nn_job_train, task), .def = "\"supervised\"",
   .help = "Kind of training, a row of the task table (src/coordinator/run/task.c; "
           "docs/tasks.md): \"supervised\", one model learning the data's labels or "
           "targets; \"language_model\", the next token of a token stream (train.bptt); "
           "\"autoencoder\", each sample its own target; \"vae\", a variational "
           "autoencoder (a `sample` layer; the ELBO reported); \"gan\", a generator and a "
           "discriminator (train.gan_*). \"test_twin\" is for the test suite only."},
  {.name = "on_nonfinite", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_train, on_nonfinite),
   .size = SZ(nn_job_train, on_nonfinite), .def = "\"stop\"", .choices = "stop|skip|rollback",
   .help = "A step whose loss or summed gradient holds a NaN or Inf is never applied "
           "(docs/training.md#non-finite-steps). \"stop\": every rank exits 7 naming the "
           "step; the last checkpoint stays the good one. \"skip\": drop the step, count it "
           "(log, metrics.jsonl) and go on; stop after nonfinite_max_skips in a row. "
           "\"rollback\": every rank reloads the newest checkpoint, the learning rate is "
           "multiplied by nonfinite_lr_factor, training goes on from there; the "
           "(nonfinite_max_rollbacks + 1)-th non-finite step stops the run. Needs checkpoints "
           "during the run ([checkpoint] every_steps, every_epochs or every_seconds)."},
  {.name = "nonfinite_max_skips", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_train, nonfinite_max_skips), .size = sizeof(int), .min = 0,
   .max = 1000000, .def = "10",
   .help = "With on_nonfinite = \"skip\": this many non-finite steps in a row stop the "
           "run (exit 7); 0: no limit."},
  {.name = "nonfinite_lr_factor", .type = NN_KEY_FLOAT,
   .offset = offsetof(nn_job_train, nonfinite_lr_factor), .size = sizeof(double),
   .min = 1e-6, .max = 1, .def = "0.5", .flags = NN_KEY_ZERO_ABSENT,
   .help = "With on_nonfinite = \"rollback\": each rollback multiplies the learning rate "
           "(every replica's, on top of its schedule) by this factor, for the rest of the run."},
  {.name = "nonfinite_max_rollbacks", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_train, nonfinite_max_rollbacks), .size = sizeof(int), .min = 1,
   .max = 1000, .def = "3", .flags = NN_KEY_ZERO_ABSENT,
   .help = "With on_nonfinite = \"rollback\": rollbacks allowed in one run (resumes "
           "included); the non-finite step after the last one stops the run (exit 7)."},
  {.name = "precision", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_train, precision),
   .size = SZ(nn_job_train, precision), .def = "\"fp32\"", .choices = "fp32|bf16",
   .help = "\"bf16\": the oneDNN convolutions with 4 or more input channels per group "
           "compute in bf16 (bf16 inputs, f32 sums and outputs); parameters, gradients, "
           "optimizer state, checkpoints and every other layer stay f32 "
           "(docs/layers.md#bf16). Needs a CPU with AVX512-BF16 or AMX and a build with "
           "oneDNN, else the run stops (exit 3). May change on resume."},
  {.name = "allreduce", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_train, allreduce),
   .size = SZ(nn_job_train, allreduce), .def = "\"auto\"",
   .choices = "auto|ring|hierarchical|hierarchical_rs",
   .help = "How the ranks sum gradients (docs/allreduce.md). \"ring\": one ring over every "
           "rank. \"hierarchical\": the ranks of each host sum onto the host's lowest rank over "
           "shared memory, those leaders sum over a ring, and send the result back (fewer "
           "messages between hosts). \"hierarchical_rs\": each rank of a host sums 1/L of "
           "the buffer (reduce-scatter in the host), one ring per local rank across the "
           "hosts, then an all-gather in the host. \"auto\": hierarchical when there is more "
           "than one host, some host has more than one rank and the gradients are at least "
           "64 KiB; ring otherwise. They round differently; each is repeatable. A run "
           "setting (may change on resume)."},
  {.name = "grad_compression", .type = NN_KEY_ENUM,
   .offset = offsetof(nn_job_train, grad_compression), .size = SZ(nn_job_train, grad_compression),
   .def = "\"none\"", .choices = "none|bf16|fp16",
   .help = "Gradient values on the wire between ranks (between hosts with the hierarchical "
           "all-reduce): \"none\" (fp32), \"bf16\" or \"fp16\", half the bytes; sums stay "
           "fp32 and every rank ends with the same bits. Costs precision: each hop rounds the "
           "partial sum (bf16: 8 significant bits; fp16: 11, finite values past +-65504 "
           "saturate, small ones lose digits) (docs/allreduce.md#compression)."},
  {.name = "allreduce_chunk_kib", .type = NN_KEY_INT,
   .offset = offsetof(nn_job_train, allreduce_chunk_kib), .size = sizeof(int), .min = 0,
   .max = 1048576, .def = "0",
   .help = "The gradient all-reduce's message (chunk) size in KiB; 0: the buffer's share per "
           "ring member (the gradients, at most 4 MiB at a time, over the ranks, or over the "
           "hosts with the hierarchical all-reduce), at most 256 KiB, so that every member "
           "carries an equal part. The summation order depends on it: a run is repeatable "
           "for a given chunk (docs/allreduce.md). A run setting (may change on resume)."},
  {.name = "gan_discriminator", .type = NN_KEY_STRING,
   .offset = offsetof(nn_job_train, gan_discriminator), .size = SZ(nn_job_train, gan_discriminator),
   .def = "\"\"",
   .help = "train.task = \"gan\": the name of the discriminator's first layer in [model]; "
           "the layers before it are the generator (noise [gan_latent] in, an image out), the "
           "layers from it on the discriminator (an image in, one logit out) (docs/tasks.md#gan)."},
  {.name = "gan_latent", .type = NN_KEY_INT, .offset = offsetof(nn_job_train, gan_latent),
   .size = sizeof(int), .min = 1, .max = 65536, .def = "64", .flags = NN_KEY_ZERO_ABSENT,
   .help = "train.task = \"gan\": values in the generator's noise vector (standard normal)."},
  {.name = "gan_d_steps", .type = NN_KEY_INT, .offset = offsetof(nn_job_train, gan_d_steps),
   .size = sizeof(int), .min = 1, .max = 100, .def = "1", .flags = NN_KEY_ZERO_ABSENT,
   .help = "train.task = \"gan\": discriminator steps (one per global batch) for each "
           "generator step."},
  {0},
};

static const nn_key run_keys[] = {
  {.name = "dir", .type = NN_KEY_STRING, .offset = offsetof(nn_job_run, dir),
   .size = SZ(nn_job_run, dir),
   .help = "Run directory for metrics.jsonl and checkpoints. Default: runs/<name>."},
  {.name = "threads", .type = NN_KEY_INT, .offset = offsetof(nn_job_run, threads),
   .size = sizeof(int), .min = 0, .max = 1024, .def = "0",
   .help = "BLAS threads per rank; 0: the node's cores divided by the ranks on it."},
  {.name = "progress", .type = NN_KEY_BOOL, .offset = offsetof(nn_job_run, progress),
   .size = sizeof(int), .def = "true",
   .help = "Show a live progress bar when stderr is a terminal."},
  {.name = "stop_signals", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_run, stop_signals),
   .size = SZ(nn_job_run, stop_signals), .def = "\"usr1+term\"", .choices = "usr1|term|usr1+term",
   .help = "Signals that make every rank stop at the next step, write a checkpoint and exit "
           "with code 75 (resumable); SIGINT always does, and a second SIGINT stops at once."},
  {.name = "resume", .type = NN_KEY_ENUM, .offset = offsetof(nn_job_run, resume),
   .size = SZ(nn_job_run, resume), .def = "\"no\"", .choices = "no|auto",
   .help = "auto: continue from the newest valid checkpoint of the run directory when there "
           "is one, start fresh otherwise (the same command serves the first run and every "
           "requeued run); no: start fresh unless --resume is given."},
  {.name = "log_every_steps", .type = NN_KEY_INT, .offset = offsetof(nn_job_run, log_every_steps),
   .size = sizeof(int), .min = 0, .max = 1000000000, .def = "10",
   .help = "Write a step record to metrics.jsonl every N optimizer steps (the step's loss "
           "and accuracy over all ranks, learning rate, throughput since the last one; "
           "docs/report.md); 0: none."},
  {.name = "report", .type = NN_KEY_BOOL, .offset = offsetof(nn_job_run, report),
   .size = sizeof(int), .def = "true",
   .help = "Rewrite RUN_DIR/report.html (the HTML run report, docs/report.md) at the end of "
           "every epoch and of the run."},
  {0},
};

static const nn_key init_keys[] = {
  {.name = "from", .type = NN_KEY_STRING, .offset = offsetof(nn_job_init, from),
   .size = SZ(nn_job_init, from), .def = "\"\"",
   .help = "HDF5 file (a checkpoint, or any file in its /params/<layer>/<name> layout, e.g. "
           "written by h5py from a PyTorch state_dict) whose parameters and buffers replace "
           "the fresh initialization of every layer with the same name; shapes must match. "
           "Layers not in the file keep their initialization (a new head). Only on a fresh "
           "run, never on resume. Empty: off."},
  {.name = "replica", .type = NN_KEY_STRING, .offset = offsetof(nn_job_init, replica),
   .size = SZ(nn_job_init, replica), .def = "\"model\"",
   .help = "In a checkpoint with replica groups (/replicas/<replica>/params/...), the "
           "replica to copy from; files without /replicas ignore it."},
  {0},
};

static const nn_job_section sections[] = {
  {"", "Keys at the top of the file, before any [section].", top_keys, 0},
  {"data", "Where the training and test shards are and how they are read.", data_keys,
   offsetof(nn_job, data)},
  {"model", "The network: an optional input shape and the list of layers, applied in "
            "order ([[model.layers]] tables).",
   model_keys, offsetof(nn_job, model)},
  {"train", "The training loop.", train_keys, offsetof(nn_job, train)},
  {"optimizer", "The optimizer and its hyper-parameters.", nn_optim_keys,
   offsetof(nn_job, optimizer)},
  {"schedule", "How the learning rate changes over the run.", nn_schedule_keys,
   offsetof(nn_job, schedule)},
  {"run", "Where results go and how the run behaves.", run_keys, offsetof(nn_job, run)},
  {"validation", "How and when the model is validated during training.", validation_keys,
   offsetof(nn_job, validation)},
  {"checkpoint", "When checkpoints are written (RUN_DIR/checkpoints) and how many are kept.",
   checkpoint_keys, offsetof(nn_job, checkpoint)},
  {"early_stopping", "Keeping the best model (RUN_DIR/best.h5) and stopping when the "
                     "monitored metric stops improving.",
   early_stopping_keys, offsetof(nn_job, early_stopping)},
  {"augment", "Random transforms of the training samples (never of validation or test "
              "data), drawn per sample from the job seed.",
   nn_augment_keys, offsetof(nn_job, augment)},
  {"init", "Initialize a fresh run from another model's parameters (fine-tuning, "
           "docs/finetuning.md).",
   init_keys, offsetof(nn_job, init)},
  {NULL, NULL, NULL, 0},
};

const nn_job_section *nn_job_sections(void) { return sections; }

/* Names a section accepts beyond its key table (handled by hand). */
static const char *section_extra_name(const nn_job_section *s) {
  return !strcmp(s->name, "model") ? "layers" : NULL;
}

/* ---- parse context --------------------------------------------------------- */

/* One --set argument, split. */
typedef struct ovr {
  const char *text;            /* the whole argument, for messages */
  char sect[32];               /* "" for top-level keys */
  char key[64];
  int layer;                   /* model.layers.N.key: N; else -1 */
  nn_toml_value *doc;          /* owns val */
  const nn_toml_value *val;
} ovr;

typedef struct pctx {
  const char *file;            /* for messages */
  nn_error *err;
  ovr *ov;                     /* [nov] */
  int nov;
  nn_error missing;            /* first missing required key (reported last) */
} pctx;

/* Fill err for a schema problem. `o` non-NULL: the value came from an
 * override, which the message names instead of a file position. */
static int perr(pctx *c, const ovr *o, int line, int col, const char *where,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int perr(pctx *c, const ovr *o, int line, int col, const char *where,
                const char *fmt, ...) {
  char msg[480];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (o)
    nn_error_at(c->err, NN_ESCHEMA, NULL, 0, 0, "--set %s: %s", o->text, msg);
  else
    nn_error_at(c->err, NN_ESCHEMA, c->file, line, col, "%s", msg);
  if (c->err && where) snprintf(c->err->where, sizeof c->err->where, "%s", where);
  return NN_ESCHEMA;
}

/* Note a missing required key. It is reported only if the whole file has no
 * other error, so a wrong value is named before an absent one. */
static void missing(pctx *c, int line, int col, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void missing(pctx *c, int line, int col, const char *where, const char *fmt, ...) {
  if (c->missing.code) return;
  char msg[480];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nn_error_at(&c->missing, NN_ESCHEMA, c->file, line, col, "%s", msg);
  snprintf(c->missing.where, sizeof c->missing.where, "%s", where);
}

/* The last override of sect.key (layer -1) or model.layers.N.key. */
static const ovr *find_ovr(const pctx *c, const char *sect, int layer, const char *key) {
  for (int i = c->nov - 1; i >= 0; i--) {
    const ovr *o = &c->ov[i];
    if (o->layer == layer && !strcmp(o->sect, sect) && !strcmp(o->key, key)) return o;
  }
  return NULL;
}

/* "train.epochs", "name", "model.layers[1].units" into buf. */
static char *key_path(char *buf, size_t n, const char *sect, int layer, const char *key) {
  if (layer >= 0)
    snprintf(buf, n, "model.layers[%d].%s", layer, key);
  else if (sect[0])
    snprintf(buf, n, "%s.%s", sect, key);
  else
    snprintf(buf, n, "%s", key);
  return buf;
}

/* "unknown key 'x' in [s]; did you mean 'y'?" for a key not in `keys`
 * (nor `extra`). Candidates: the table's names plus extra. */
static int unknown_key(pctx *c, const ovr *o, int line, int col, const char *sect_desc,
                       const char *path, const char *key, const nn_key *keys,
                       const char *extra) {
  const char *cands[128];
  size_t n = 0;
  for (size_t i = 0; keys && keys[i].name && n < 127; i++) cands[n++] = keys[i].name;
  if (extra) cands[n++] = extra;
  const char *best = nn__suggest(key, cands, n);
  if (best) return perr(c, o, line, col, path, "unknown key '%s' in %s; did you mean '%s'?",
                        key, sect_desc, best);
  char list[400];
  size_t w = 0;
  list[0] = '\0';
  for (size_t i = 0; i < n && w < sizeof list; i++)
    w += (size_t)snprintf(list + w, sizeof list - w, "%s%s", i ? ", " : "", cands[i]);
  return perr(c, o, line, col, path, "unknown key '%s' in %s (valid keys: %s)", key,
              sect_desc, list);
}

/* Set key k of `base` from TOML value v (from the file, or override o). */
static int set_key(pctx *c, const ovr *o, const nn_key *k, void *base, const nn_toml_value *v,
                   const char *path) {
  char msg[400];
  int line, col;
  if (nn__key_set_toml(k, base, v, msg, sizeof msg, &line, &col))
    return perr(c, o, line, col, path, "%s: %s", path, msg);
  return 0;
}

/* Read the keys of one table (section or layer) into base:
 *   tab     the TOML table, or NULL if the file does not have it
 *   hdr_line/col  where to report missing keys (the table header)
 *   sect, layer   for override lookup and messages
 *   extra   a name the table accepts that is not in keys (skipped here)
 *   desc    "[train]" or "model.layers[1] (dense)" for messages */
static int read_table(pctx *c, const nn_toml_value *tab, const nn_key *keys, void *base,
                      const char *sect, int layer, const char *extra, const char *desc) {
  char path[160];
  /* 1. unknown keys in the file */
  for (size_t i = 0; tab && i < tab->u.tab.n; i++) {
    const nn_toml_kv *kv = &tab->u.tab.kv[i];
    if (nn_toml_key_is_cstr(kv) &&  /* a key holding U+0000 is never a schema key */
        (nn__keys_find(keys, kv->key) || (extra && !strcmp(kv->key, extra))))
      continue;
    char shown[128];
    nn_toml_key_show(kv, shown, sizeof shown);
    key_path(path, sizeof path, sect, layer, shown);
    return unknown_key(c, NULL, kv->value->key_line, kv->value->key_col, desc, path, shown,
                       keys, extra);
  }
  /* 2. defaults were applied by the caller; now given values */
  for (size_t i = 0; keys[i].name; i++) {
    const nn_key *k = &keys[i];
    key_path(path, sizeof path, sect, layer, k->name);
    const ovr *o = find_ovr(c, sect, layer, k->name);
    const nn_toml_value *v = o ? o->val : (tab ? nn_toml_get(tab, k->name) : NULL);
    if (v) {
      int rc = set_key(c, o, k, base, v, path);
      if (rc) return rc;
    } else if (k->flags & NN_KEY_REQUIRED) {
      /* 3. required but not given */
      if (!tab)
        missing(c, 0, 0, path, "missing required key '%s' (there is no %s section)", path, desc);
      else
        missing(c, tab->line, tab->col, path, "%s: missing required key '%s'", desc, k->name);
    }
  }
  return 0;
}

/* ---- overrides ------------------------------------------------------------ */

/* Escape s as a TOML basic string "..." into buf. */
static void toml_quote(const char *s, char *buf, size_t n) {
  size_t o = 0;
  if (o + 1 < n) buf[o++] = '"';
  for (; *s && o + 8 < n; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      o += (size_t)snprintf(buf + o, n - o, "\\u%04x", ch);
    } else {
      buf[o++] = (char)ch;
    }
  }
  if (o + 1 < n) buf[o++] = '"';
  buf[o < n ? o : n - 1] = '\0';
}

/* Split and parse one --set argument into o. */
static int parse_override(pctx *c, ovr *o, const char *arg) {
  memset(o, 0, sizeof *o);
  o->text = arg;
  o->layer = -1;
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg)
    return perr(c, o, 0, 0, NULL, "expected section.key=value");
  char path[128];
  size_t plen = (size_t)(eq - arg);
  while (plen > 0 && (arg[plen - 1] == ' ' || arg[plen - 1] == '\t')) plen--;
  if (plen == 0 || plen >= sizeof path) return perr(c, o, 0, 0, NULL, "bad key");
  memcpy(path, arg, plen);
  path[plen] = '\0';
  const char *value = eq + 1;
  while (*value == ' ' || *value == '\t') value++;

  /* key path: KEY | SECTION.KEY | model.layers.N.KEY */
  char *dot = strchr(path, '.');
  if (!dot) {
    if (strlen(path) >= sizeof o->key) return perr(c, o, 0, 0, NULL, "unknown key '%s'", path);
    memcpy(o->key, path, strlen(path) + 1);
  } else {
    *dot = '\0';
    if (strlen(path) >= sizeof o->sect) return perr(c, o, 0, 0, NULL, "unknown section [%s]", path);
    memcpy(o->sect, path, strlen(path) + 1);
    char *rest = dot + 1;
    if (!strcmp(o->sect, "model") && !strncmp(rest, "layers", 6) &&
        (rest[6] == '.' || rest[6] == '\0')) {
      if (rest[6] == '\0')
        return perr(c, o, 0, 0, "model.layers",
                    "model.layers cannot be replaced with --set; set one layer key with "
                    "model.layers.N.key=value");
      char *end;
      errno = 0;
      long idx = strtol(rest + 7, &end, 10);
      if (end == rest + 7 || *end != '.' || errno || idx < 0 || idx >= NN_JOB_MAX_LAYERS)
        return perr(c, o, 0, 0, "model.layers",
                    "expected model.layers.N.key=value with N a layer index from 0");
      o->layer = (int)idx;
      rest = end + 1;
    }
    if (!rest[0] || strchr(rest, '.'))
      return perr(c, o, 0, 0, NULL, "expected section.key=value");
    if (strlen(rest) >= sizeof o->key) return perr(c, o, 0, 0, NULL, "key too long");
    snprintf(o->key, sizeof o->key, "%s", rest);
  }

  /* value: TOML, else a bare string */
  nn_error e;
  nn_error_clear(&e);
  if (nn__toml_parse_value(value, &o->doc, &o->val, &e) == 0) return 0;
  if (e.code == NN_ENOMEM) return nn_error_set(c->err, NN_ENOMEM, "out of memory");
  size_t qn = strlen(value) * 6 + 3;
  char *q = nn_malloc(qn);
  if (!q) return nn_error_set(c->err, NN_ENOMEM, "out of memory");
  toml_quote(value, q, qn);
  int rc = nn__toml_parse_value(q, &o->doc, &o->val, &e);
  free(q);
  if (rc) return perr(c, o, 0, 0, NULL, "bad value: %s", e.msg);
  return 0;
}

/* Check that every override names a known key (section keys; layer keys are
 * checked once the layer's type is known). */
static int check_overrides(pctx *c) {
  char path[160];
  for (int i = 0; i < c->nov; i++) {
    const ovr *o = &c->ov[i];
    if (o->layer >= 0) continue;
    const nn_job_section *s = sections;
    while (s->name && strcmp(s->name, o->sect)) s++;
    if (!s->name) {
      const char *cands[16];
      size_t n = 0;
      for (const nn_job_section *t = sections; t->name; t++)
        if (t->name[0]) cands[n++] = t->name;
      const char *best = nn__suggest(o->sect, cands, n);
      if (best) return perr(c, o, 0, 0, NULL, "unknown section [%s]; did you mean [%s]?",
                            o->sect, best);
      return perr(c, o, 0, 0, NULL, "unknown section [%s]", o->sect);
    }
    if (nn__keys_find(s->keys, o->key)) continue;
    char desc[48];
    snprintf(desc, sizeof desc, s->name[0] ? "[%s]" : "the top level%s", s->name);
    key_path(path, sizeof path, o->sect, -1, o->key);
    return unknown_key(c, o, 0, 0, desc, path, o->key, s->keys, section_extra_name(s));
  }
  return 0;
}

/* ---- layers -------------------------------------------------------------- */

static int unknown_type(pctx *c, const ovr *o, const nn_toml_value *v, const char *path,
                        const char *type) {
  const nn_layer_ops *const *types = nn_layer_types();
  const char *cands[128];
  size_t n = 0;
  for (size_t i = 0; types && types[i] && n < 128; i++) cands[n++] = types[i]->type;
  const char *best = nn__suggest(type, cands, n);
  if (best) return perr(c, o, v->line, v->col, path,
                        "%s: unknown layer type \"%s\"; did you mean \"%s\"?", path, type, best);
  char list[600];
  size_t w = 0;
  list[0] = '\0';
  for (size_t i = 0; i < n && w < sizeof list; i++)
    w += (size_t)snprintf(list + w, sizeof list - w, "%s%s", i ? ", " : "", cands[i]);
  return perr(c, o, v->line, v->col, path, "%s: unknown layer type \"%s\" (known: %s)", path,
              type, list);
}

/* Where each flat layer config came from, while read_layers runs. */
typedef struct layer_src {
  const nn_toml_value *tab; /* its table in the file */
  int top;                  /* its top-level index for --set, -1 if nested */
  char path[96];            /* "model.layers[2].layers[1]" */
} layer_src;

/* read_layer, first step: claim the next flat config of job->model for the
 * layer table `tab` at lpath, zeroed, and note in src[] where it came from
 * (src is read_layers'). *idx gets its index. Errors (too many layers, not
 * a table) name desc, the layer's path. */
static int layer_slot(pctx *c, nn_job *job, layer_src *src, const nn_toml_value *tab,
                      const char *lpath, int top, const char *desc, int *idx) {
  if (job->model.nlayers >= NN_JOB_MAX_LAYERS)
    return perr(c, NULL, tab->line, tab->col, desc,
                "%s: more than %d layers in the model (nested layers count one each)", desc,
                NN_JOB_MAX_LAYERS);
  int i = job->model.nlayers++;
  *idx = i;
  nn_layer_cfg *cfg = &job->model.layers[i];
  memset(cfg, 0, sizeof *cfg);
  job->model.layer_line[i] = tab->line;
  src[i].tab = tab;
  src[i].top = top;
  snprintf(src[i].path, sizeof src[i].path, "%s", lpath);
  if (tab->type != NN_TOML_TABLE)
    return perr(c, NULL, tab->line, tab->col, desc, "%s: expected a table, got %s", desc,
                nn_toml_type_name(tab->type));
  return 0;
}

/* The layer's `type` (from --set model.layers.N.type if top >= 0 has one,
 * else from tab) into cfg, its ops into *ops, and the defaults of the common
 * keys and of the type's own keys into cfg: the type decides which keys the
 * layer has. desc is the layer's path, for messages. */
static int layer_type(pctx *c, nn_layer_cfg *cfg, const nn_toml_value *tab, const char *lpath,
                      int top, const char *desc, const nn_layer_ops **ops) {
  char path[160];
  snprintf(path, sizeof path, "%s.type", lpath);
  const nn_key *tkey = nn__keys_find(nn__layer_common_keys, "type");
  const ovr *o = top >= 0 ? find_ovr(c, "model", top, "type") : NULL;
  const nn_toml_value *tv = o ? o->val : nn_toml_get(tab, "type");
  if (!tv)
    return perr(c, NULL, tab->line, tab->col, path, "%s: missing required key 'type'", desc);
  int rc = set_key(c, o, tkey, cfg, tv, path);
  if (rc) return rc;
  *ops = nn_layer_find(cfg->type);
  if (!*ops) return unknown_type(c, o, tv, path, cfg->type);
  char what[64];
  snprintf(what, sizeof what, "layer %s", (*ops)->type);
  nn_key all[NN__LAYER_KEYS_MAX];
  if (nn__layer_all_keys(*ops, all, NN__LAYER_KEYS_MAX) < 0)
    return nn_error_set(c->err, NN_EINTERNAL, "layer type %s has too many keys", (*ops)->type);
  return nn__keys_defaults(all + 1, cfg, what, c->err); /* all but `type` */
}

/* The rest of the layer's keys, from tab and (top >= 0) the overrides of
 * model.layers.<top>, into cfg, after refusing overrides of keys type ops
 * does not have and, for a composite, any block_len written by hand. The
 * nested `layers` of a composite are left to layer_body. desc is
 * "<path> (<type>)". */
static int layer_keys(pctx *c, nn_layer_cfg *cfg, const nn_toml_value *tab, const char *lpath,
                      int top, const nn_layer_ops *ops, int composite, const char *desc) {
  char path[160];
  /* all keys of this layer: `type`, `name`, then the type's own */
  nn_key all[NN__LAYER_KEYS_MAX];
  if (nn__layer_all_keys(ops, all, NN__LAYER_KEYS_MAX) < 0)
    return nn_error_set(c->err, NN_EINTERNAL, "layer type %s has too many keys", ops->type);
  /* overrides of keys this type does not have */
  for (int k = 0; top >= 0 && k < c->nov; k++) {
    const ovr *lo = &c->ov[k];
    if (lo->layer != top || nn__keys_find(all, lo->key)) continue;
    key_path(path, sizeof path, "model", top, lo->key);
    return unknown_key(c, lo, 0, 0, desc, path, lo->key, all, NULL);
  }
  if (composite) {
    /* block_len is derived from the nested layers, never written */
    const ovr *bo = top >= 0 ? find_ovr(c, "model", top, "block_len") : NULL;
    const nn_toml_value *bv = nn_toml_get(tab, "block_len");
    snprintf(path, sizeof path, "%s.block_len", lpath);
    if (bo || bv)
      return perr(c, bo, bv ? bv->key_line : 0, bv ? bv->key_col : 0, path,
                  "%s: block_len is set from the nested `layers`; do not write it", path);
  }
  return top >= 0 ? read_table(c, tab, all, cfg, "model", top, composite ? "layers" : NULL, desc)
                  : read_table(c, tab, all, cfg, lpath, -1, composite ? "layers" : NULL, desc);
}

/* The layer's full name into cfg->name: prefix + its given name, or
 * prefix + "<type><j>" by default (nested ones are qualified by their
 * block); too long for cfg->name is an error at tab's `name`. */
static int layer_name(pctx *c, nn_layer_cfg *cfg, const nn_toml_value *tab, const char *lpath,
                      const char *prefix, int j) {
  char name[3 * NN_NAME_MAX];
  if (!cfg->name[0])
    snprintf(name, sizeof name, "%s%.30s%d", prefix, cfg->type, j);
  else
    snprintf(name, sizeof name, "%s%s", prefix, cfg->name);
  if (strlen(name) >= sizeof cfg->name) {
    char path[160];
    const nn_toml_value *nv = nn_toml_get(tab, "name");
    snprintf(path, sizeof path, "%s.name", lpath);
    return perr(c, NULL, nv ? nv->line : tab->line, nv ? nv->col : tab->col, path,
                "%s: the layer's name \"%s\" is longer than %d characters (nested names "
                "start with their block's name and a dot)", path, name,
                (int)sizeof cfg->name - 1);
  }
  memcpy(cfg->name, name, strlen(name) + 1);
  return 0;
}

static int read_layer(pctx *c, nn_job *job, layer_src *src, const nn_toml_value *tab,
                      const char *lpath, int top, const char *prefix, int j, int depth);

/* The body of composite layer i (table tab at lpath, depth levels deep): the
 * [[model.layers.layers]] tables under it, read by read_layer into the flat
 * configs right after it, then its block_len set to how many they took. No
 * `layers`: an empty body, which is the identity. desc is
 * "<path> (<type>)". */
static int layer_body(pctx *c, nn_job *job, layer_src *src, const nn_toml_value *tab,
                      const char *lpath, int i, int depth, const char *desc) {
  const nn_toml_value *arr = nn_toml_get(tab, "layers");
  if (!arr) return 0;
  if (arr->type != NN_TOML_ARRAY) {
    char hdr[160] = "model.layers", path[160];
    for (int d = 0; d <= depth && strlen(hdr) + 8 < sizeof hdr; d++) strcat(hdr, ".layers");
    snprintf(path, sizeof path, "%s.layers", lpath);
    return perr(c, NULL, arr->line, arr->col, path,
                "%s: expected an array of tables ([[%s]] after the block's table), got %s",
                path, hdr, nn_toml_type_name(arr->type));
  }
  char pre[NN_NAME_MAX + 1];
  snprintf(pre, sizeof pre, "%s.", job->model.layers[i].name);
  for (size_t k = 0; k < arr->u.arr.n; k++) {
    char sub[96];
    int w = snprintf(sub, sizeof sub, "%s.layers[%zu]", lpath, k);
    if (w < 0 || (size_t)w >= sizeof sub)
      return perr(c, NULL, arr->line, arr->col, desc, "%s: layers nested too deeply", desc);
    int rc = read_layer(c, job, src, arr->u.arr.items[k], sub, -1, pre, (int)k, depth + 1);
    if (rc) return rc;
  }
  job->model.layers[i].block_len = job->model.nlayers - i - 1;
  return 0;
}

/* Read the layer table `tab` at `lpath` into the next flat config and, for
 * a composite (residual), its nested `layers` after it, setting block_len to
 * the number of flat configs they take. top: index among the top-level
 * layers (--set model.layers.N.key applies there), -1 for nested layers,
 * which no override reaches. prefix: "" or "<block name>." and j the
 * position in the enclosing list: a nested layer's name is prefix + its
 * given name, or prefix + "<type><j>" (the model's convention, model.h).
 * The steps are the static functions above, in order. */
static int read_layer(pctx *c, nn_job *job, layer_src *src, const nn_toml_value *tab,
                      const char *lpath, int top, const char *prefix, int j, int depth) {
  char desc[128];
  snprintf(desc, sizeof desc, "%s", lpath);
  int i = 0, rc = layer_slot(c, job, src, tab, lpath, top, desc, &i);
  if (rc) return rc;
  nn_layer_cfg *cfg = &job->model.layers[i];
  const nn_layer_ops *ops = NULL;
  if ((rc = layer_type(c, cfg, tab, lpath, top, desc, &ops))) return rc;
  int composite = nn_model_is_composite_type(ops->type);
  snprintf(desc, sizeof desc, "%s (%s)", lpath, ops->type);
  if ((rc = layer_keys(c, cfg, tab, lpath, top, ops, composite, desc))) return rc;
  if ((rc = layer_name(c, cfg, tab, lpath, prefix, j))) return rc;
  return composite ? layer_body(c, job, src, tab, lpath, i, depth, desc) : 0;
}

/* [[model.layers]]: the top-level list, flattened with every block's body
 * after the block (core/model.h). --set model.layers.N.key names the N-th
 * top-level layer. */
static int read_layers(pctx *c, nn_job *job, const nn_toml_value *model) {
  const nn_toml_value *arr = model ? nn_toml_get(model, "layers") : NULL;
  const ovr *bad = NULL;
  layer_src *src = NULL; /* [NN_JOB_MAX_LAYERS], owned here */
  int rc = 0;
  if (!arr) {
    if (!model)
      missing(c, 0, 0, "model.layers",
              "missing required key 'model.layers' (there is no [model] section; add "
              "[[model.layers]] tables)");
    else
      missing(c, model->line, model->col, "model.layers",
              "[model]: missing required key 'layers' (add [[model.layers]] tables)");
    for (int j = 0; j < c->nov; j++)
      if (c->ov[j].layer >= 0)
        return perr(c, &c->ov[j], 0, 0, "model.layers", "there is no layer %d (the job has none)",
                    c->ov[j].layer);
    return 0;
  }
  if (arr->type != NN_TOML_ARRAY)
    return perr(c, NULL, arr->line, arr->col, "model.layers",
                "model.layers: expected an array of tables, got %s",
                nn_toml_type_name(arr->type));
  if (arr->u.arr.n == 0)
    return perr(c, NULL, arr->line, arr->col, "model.layers",
                "model.layers: the model needs at least one layer");
  if (arr->u.arr.n > NN_JOB_MAX_LAYERS)
    return perr(c, NULL, arr->line, arr->col, "model.layers",
                "model.layers: %zu layers, at most %d are supported", arr->u.arr.n,
                NN_JOB_MAX_LAYERS);
  for (int j = 0; j < c->nov; j++)
    if (c->ov[j].layer >= (int)arr->u.arr.n) bad = &c->ov[j];
  if (bad)
    return perr(c, bad, 0, 0, "model.layers",
                "there is no layer %d (the job has %zu layers)", bad->layer,
                arr->u.arr.n);
  src = nn_calloc(NN_JOB_MAX_LAYERS, sizeof *src);
  if (!src) return nn_error_set(c->err, NN_ENOMEM, "out of memory");
  job->model.nlayers = 0;
  for (size_t i = 0; i < arr->u.arr.n; i++) {
    char lpath[96];
    snprintf(lpath, sizeof lpath, "model.layers[%zu]", i);
    if ((rc = read_layer(c, job, src, arr->u.arr.items[i], lpath, (int)i, "", (int)i, 0)))
      goto done;
  }
  /* names unique over the flat list, reported with the nested path */
  for (int i = 0; i < job->model.nlayers; i++)
    for (int j = 0; j < i; j++) {
      if (strcmp(job->model.layers[i].name, job->model.layers[j].name)) continue;
      const nn_toml_value *item = src[i].tab;
      const nn_toml_value *nv = nn_toml_get(item, "name");
      const ovr *o = src[i].top >= 0 ? find_ovr(c, "model", src[i].top, "name") : NULL;
      char path[128];
      snprintf(path, sizeof path, "%s.name", src[i].path);
      rc = perr(c, o, o ? 0 : nv ? nv->line : item->line, o ? 0 : nv ? nv->col : item->col,
                "model.layers", "%s: \"%s\" is already the name of %s", path,
                job->model.layers[i].name, src[j].path);
      goto done;
    }
  int which = 0;
  char msg[300];
  if (nn__job_check_layers(job, &which, msg, sizeof msg)) {
    const nn_toml_value *item = src[which].tab;
    rc = perr(c, NULL, item->line, item->col, "model.layers", "%s", msg);
  }

done:
  free(src);
  return rc;
}

/* ---- the whole job --------------------------------------------------------- */

/* File name without directories and without ".toml", into buf. */
static void stem(const char *path, char *buf, size_t n) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  size_t len = strlen(b);
  if (len > 5 && !strcmp(b + len - 5, ".toml")) len -= 5;
  if (len >= n) len = n - 1;
  memcpy(buf, b, len);
  buf[len] = '\0';
}

/* The error for root entry kv, which is neither a section nor a top-level
 * key: the nearest name as a suggestion, else the list of names. */
static int unknown_root_entry(pctx *c, const nn_toml_kv *kv) {
  const nn_toml_value *v = kv->value;
  char key[128]; /* the key for messages: U+0000 and control characters escaped */
  nn_toml_key_show(kv, key, sizeof key);
  const char *cands[24];
  size_t n = 0;
  for (const nn_job_section *t = sections; t->name; t++)
    if (t->name[0]) cands[n++] = t->name;
  for (size_t j = 0; top_keys[j].name; j++) cands[n++] = top_keys[j].name;
  const char *best = nn__suggest(key, cands, n);
  int line = v->type == NN_TOML_TABLE ? v->line : v->key_line;
  int col = v->type == NN_TOML_TABLE ? v->col : v->key_col;
  if (v->type == NN_TOML_TABLE && best)
    return perr(c, NULL, line, col, key, "unknown section [%s]; did you mean [%s]?",
                key, best);
  const char *what = v->type == NN_TOML_TABLE ? "section" : "top-level key";
  if (best)
    return perr(c, NULL, line, col, key, "unknown %s '%s'; did you mean '%s'?", what,
                key, best);
  char list[200];
  size_t w = 0;
  list[0] = '\0';
  for (size_t j = 0; j < n && w < sizeof list; j++)
    w += (size_t)snprintf(list + w, sizeof list - w, "%s%s", j ? ", " : "", cands[j]);
  return perr(c, NULL, line, col, key, "unknown %s '%s' (expected one of: %s)", what,
              key, list);
}

/* Every entry of the root table is a top-level key or a known section, and
 * a section is a table. */
static int check_root_entries(pctx *c, const nn_toml_value *root) {
  for (size_t i = 0; i < root->u.tab.n; i++) {
    const nn_toml_kv *kv = &root->u.tab.kv[i];
    const nn_toml_value *v = kv->value;
    int plain = nn_toml_key_is_cstr(kv); /* a key holding U+0000 is never a schema name */
    if (plain && nn__keys_find(top_keys, kv->key)) continue;
    const nn_job_section *s = sections;
    while (s->name && (!plain || !s->name[0] || strcmp(s->name, kv->key))) s++;
    if (!s->name) return unknown_root_entry(c, kv);
    if (v->type != NN_TOML_TABLE)
      return perr(c, NULL, v->line, v->col, kv->key, "%s: expected a table [%s], got %s",
                  kv->key, kv->key, nn_toml_type_name(v->type));
  }
  return 0;
}

/* Each section (and the layers of [model]) into job: defaults, then the
 * file's values and the overrides. A missing required key, recorded while
 * reading, is reported once all sections are read. */
static int read_sections(pctx *c, nn_job *job, const nn_toml_value *root) {
  int rc;
  for (const nn_job_section *s = sections; s->name; s++) {
    void *base = (char *)job + s->offset;
    if ((rc = nn__keys_defaults(s->keys, base, s->name[0] ? s->name : "top level", c->err)))
      return rc;
    const nn_toml_value *tab = s->name[0] ? nn_toml_get(root, s->name) : root;
    char desc[48];
    snprintf(desc, sizeof desc, s->name[0] ? "[%s]" : "the top level%s", s->name);
    if (!s->name[0]) {
      /* the root's other entries are the sections, checked above */
      for (size_t k = 0; s->keys[k].name; k++) {
        const ovr *o = find_ovr(c, "", -1, s->keys[k].name);
        const nn_toml_value *v = o ? o->val : nn_toml_get(root, s->keys[k].name);
        if (v && (rc = set_key(c, o, &s->keys[k], base, v, s->keys[k].name))) return rc;
      }
      continue;
    }
    if ((rc = read_table(c, tab, s->keys, base, s->name, -1, section_extra_name(s), desc)))
      return rc;
    if (!strcmp(s->name, "model") && (rc = read_layers(c, job, tab))) return rc;
  }
  if (c->missing.code) {
    int rank = c->err ? c->err->rank : -1;
    if (c->err) {
      *c->err = c->missing;
      c->err->rank = rank;
    }
    return NN_ESCHEMA;
  }
  return 0;
}

/* The error for a section-wide check (nn_optim_check, nn_schedule_check)
 * that failed with oe: pointed at the key oe names if the file gives it
 * ("optimizer.lr"), else at the section's table. */
static int section_check_error(pctx *c, const nn_toml_value *root, const char *section,
                               const nn_error *oe) {
  size_t n = strlen(section);
  const nn_toml_value *at = nn_toml_get(root, section);
  const char *key =
      strncmp(oe->where, section, n) || oe->where[n] != '.' ? "" : oe->where + n + 1;
  const nn_toml_value *kv = key[0] && at ? nn_toml_get(at, key) : NULL;
  if (kv) at = kv;
  return perr(c, find_ovr(c, section, -1, key), at ? at->line : 0, at ? at->col : 0, oe->where,
              "[%s]: %s", section, oe->msg);
}

/* train.accumulate against the batch (the optimizer batch must fit an int
 * batch). */
static int check_accumulate(pctx *c, const nn_job *job, const nn_toml_value *root) {
  const nn_toml_value *v = nn_toml_get(nn_toml_get(root, "train"), "accumulate");
  const ovr *o = find_ovr(c, "train", -1, "accumulate");
  int line = v ? v->line : 0, col = v ? v->col : 0;
  const int64_t big = (int64_t)job->train.accumulate * job->train.batch_size, most = 1 << 24;
  if (big > most)
    return perr(c, o, line, col, "train.accumulate", "train.accumulate = %d x train.batch_size "
                "= %d is %lld samples per optimizer step: at most %lld", job->train.accumulate,
                job->train.batch_size, (long long)big, (long long)most);
  return 0;
}

/* Checks that span keys of a read job: optimizer, schedule, one validation
 * source, a known loss, train.accumulate. */
static int check_cross_keys(pctx *c, const nn_job *job, const nn_toml_value *root) {
  int rc;
  nn_error oe;
  nn_error_clear(&oe);
  if (nn_optim_check(&job->optimizer, &oe))
    return section_check_error(c, root, "optimizer", &oe);
  nn_error_clear(&oe);
  if (nn_schedule_check(&job->schedule, &oe))
    return section_check_error(c, root, "schedule", &oe);
  int splits = (job->data.validation[0] != 0) + (job->data.validation_split > 0);
  if (splits > 1) {
    const nn_toml_value *at = nn_toml_get(nn_toml_get(root, "data"), "validation_split");
    return perr(c, find_ovr(c, "data", -1, "validation_split"), at ? at->line : 0,
                at ? at->col : 0, "data.validation_split",
                "data.validation_split: use either data.validation (separate shards) or "
                "data.validation_split, not both");
  }
  const nn_job_checkpoint *ck = &job->checkpoint;
  if (!strcmp(job->train.on_nonfinite, "rollback") && ck->every_steps <= 0 &&
      ck->every_epochs <= 0 && !(ck->every_seconds > 0)) {
    const nn_toml_value *v = nn_toml_get(nn_toml_get(root, "train"), "on_nonfinite");
    return perr(c, find_ovr(c, "train", -1, "on_nonfinite"), v ? v->line : 0, v ? v->col : 0,
                "train.on_nonfinite", "train.on_nonfinite = \"rollback\" reloads the newest "
                "checkpoint, and this job writes none during the run: set checkpoint.every_steps, "
                "every_epochs or every_seconds (or use \"stop\" or \"skip\")");
  }
  if ((rc = check_accumulate(c, job, root)) != 0) return rc;
  if (nn_loss_parse(job->train.loss) < 0) {
    const nn_toml_value *v = nn_toml_get(nn_toml_get(root, "train"), "loss");
    return perr(c, NULL, v ? v->line : 0, v ? v->col : 0, "train.loss",
                "train.loss: \"%s\" is not a loss this build knows (%s)", job->train.loss,
                nn_loss_choices);
  }
  return 0;
}

/* The whole job from the parsed document root: entries, overrides,
 * sections, cross-key checks, then the defaults derived from other keys
 * (name from the file name, run.dir from the name). */
static int read_job(pctx *c, nn_job *job, const nn_toml_value *root) {
  int rc = check_root_entries(c, root);
  if (!rc) rc = check_overrides(c);
  if (!rc) rc = read_sections(c, job, root);
  if (!rc) rc = check_cross_keys(c, job, root);
  if (rc) return rc;
  if (!job->name[0]) stem(c->file, job->name, sizeof job->name);
  if (!job->name[0]) snprintf(job->name, sizeof job->name, "job");
  if (!job->run.dir[0]) snprintf(job->run.dir, sizeof job->run.dir, "runs/%.63s", job->name);
  return 0;
}

void nn_job_key_pos(const nn_job *job, const char *section, const char *key, int *line,
                    int *col) {
  *line = *col = 0;
  const nn_job_section *s = nn_job_sections();
  while (s->name && strcmp(s->name, section)) s++;
  const nn_key *k = s->name ? nn__keys_find(s->keys, key) : NULL;
  nn_toml_value *root = NULL;
  nn_error e;
  nn_error_clear(&e);
  if (!k || nn_toml_parse_file(job->source, &root, &e) != 0) return;
  const nn_toml_value *v = nn_toml_get(nn_toml_get(root, section), key);
  /* the file's value, read as the parser does, must be the job's: else the
   * value came from --set (or the file changed), and no place is right */
  nn_job *scratch = nn_calloc(1, sizeof *scratch); /* large: layers */
  char msg[256];
  const char *base = (const char *)job + s->offset;
  char *mine = scratch ? (char *)scratch + s->offset : NULL;
  if (v && mine && nn__key_set_toml(k, mine, v, msg, sizeof msg, line, col) == 0 &&
      nn__key_equal(k, mine, base)) {
    *line = v->line;
    *col = v->col;
  } else {
    *line = *col = 0;
  }
  free(scratch);
  nn_toml_free(root);
}

int nn_job_parse(nn_job *job, const char *text, size_t len, const char *filename,
                 const char *const *overrides, int noverrides, nn_error *err) {
  nn_toml_value *root = NULL;
  pctx c = {.file = filename ? filename : "<input>", .err = err, .ov = NULL, .nov = 0};
  int rc = 0;
  memset(job, 0, sizeof *job);
  snprintf(job->source, sizeof job->source, "%s", c.file);
  if (noverrides < 0 || (noverrides > 0 && !overrides)) {
    rc = nn_error_set(err, NN_EINVAL, "bad override list");
    goto done;
  }
  if (noverrides > 0) {
    c.ov = nn_calloc((size_t)noverrides, sizeof *c.ov);
    if (!c.ov) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto done;
    }
    for (int i = 0; i < noverrides; i++) {
      c.nov = i + 1;
      if ((rc = parse_override(&c, &c.ov[i], overrides[i]))) goto done;
    }
  }
  if ((rc = nn_toml_parse(text, len, c.file, &root, err))) goto done;
  rc = read_job(&c, job, root);

done:
  for (int i = 0; i < c.nov; i++) nn_toml_free(c.ov[i].doc);
  free(c.ov);
  nn_toml_free(root);
  if (rc) {
    char keep[NN_PATH_MAX];
    snprintf(keep, sizeof keep, "%s", c.file);
    memset(job, 0, sizeof *job);
    snprintf(job->source, sizeof job->source, "%s", keep);
  }
  return rc;
}

int nn_job_load(nn_job *job, const char *path, const char *const *overrides, int noverrides,
                nn_error *err) {
  FILE *f = NULL;
  char *text = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  f = fopen(path, "rb");
  if (!f) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot open the job file: %s", strerror(errno));
    goto done;
  }
  for (;;) {
    if (len + 4096 + 1 > cap) {
      size_t ncap = cap ? cap * 2 : 65536;
      char *t = nn_realloc(text, ncap);
      if (!t) {
        rc = nn_error_set(err, NN_ENOMEM, "out of memory reading %s", path);
        goto done;
      }
      text = t;
      cap = ncap;
    }
    size_t got = fread(text + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot read the job file: %s", strerror(errno));
    goto done;
  }
  rc = nn_job_parse(job, text ? text : "", len, path, overrides, noverrides, err);
done:
  if (f) fclose(f);
  free(text);
  return rc;
}

int nn_job_model_error(const nn_job *job, nn_error *err) {
  if (!err || err->file[0]) return err ? err->code : 0;
  snprintf(err->file, sizeof err->file, "%.*s", (int)sizeof err->file - 1, job->source);
  int best = -1;
  size_t best_len = 0;
  for (int i = 0; i < job->model.nlayers; i++) {
    const char *name = job->model.layers[i].name;
    size_t len = strlen(name);
    if (!strcmp(err->where, name)) {
      best = i;
      break;
    }
    /* "<config>.shortcut" of a block, "<config>_<activation>" of a dense */
    if (len > best_len && !strncmp(err->where, name, len) &&
        (err->where[len] == '.' || err->where[len] == '_')) {
      best = i;
      best_len = len;
    }
  }
  if (best >= 0) err->line = job->model.layer_line[best];
  return err->code;
}

int nn_job_equal(const nn_job *a, const nn_job *b) {
  for (const nn_job_section *s = sections; s->name; s++)
    for (size_t k = 0; s->keys[k].name; k++)
      if (!nn__key_equal(&s->keys[k], (const char *)a + s->offset, (const char *)b + s->offset))
        return 0;
  if (strcmp(a->source, b->source) || a->model.nlayers != b->model.nlayers) return 0;
  for (int i = 0; i < a->model.nlayers; i++) {
    const nn_layer_cfg *la = &a->model.layers[i], *lb = &b->model.layers[i];
    if (a->model.layer_line[i] != b->model.layer_line[i]) return 0;
    nn_key keys[NN__LAYER_KEYS_MAX];
    if (nn__layer_all_keys(nn_layer_find(la->type), keys, NN__LAYER_KEYS_MAX) < 0) return 0;
    for (size_t k = 0; keys[k].name; k++)
      if (!nn__key_equal(&keys[k], la, lb)) return 0;
  }
  return 1;
}
