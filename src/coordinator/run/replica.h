/* replica.h: one named model replica of a run, built the same way by train,
 * eval, predict, check and the best-model restore, so they apply one set of
 * rules and cannot disagree.
 *
 * A replica is a model graph, its optimizer (settings and state) and
 * learning-rate schedule, its stepper and its gradient sync. A kind's build
 * chooses each replica's optimizer and schedule settings (nn_replica_opts);
 * the supervised build gives every replica the job's [optimizer] and
 * [schedule]. The reduce-on-plateau state is the run's (run/decide.h), driven
 * by the evaluated replica's figures. It owns its arenas and its group in the
 * checkpoint. Replica k of a run draws every random number from
 * nn_rng_replica_seed(job seed, k): replica 0 from the job seed itself, so a
 * one-model run is what it always was.
 *
 * The rules a model must meet against data (nn_replica_check_data):
 *   - the input: model.input_shape, when set, must hold as many values as the
 *     data's samples (the model then sees the samples in that shape);
 *   - class labels: the model has one output per class; the loss may be
 *     cross_entropy (logits) or mse (against one-hot targets);
 *   - regression targets: the loss must be mse and the model has one output
 *     per target value.
 * A model that breaks them is the job's fault (NN_ESCHEMA, naming `where`:
 * the job file for train and check); eval reports it as the data's (NN_EDATA). */
#ifndef NN_COORDINATOR_RUN_REPLICA_H
#define NN_COORDINATOR_RUN_REPLICA_H

#include <mpi.h>

#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "coordinator/schedule.h"
#include "core/model.h"
#include "core/optim.h"
#include "worker/allreduce.h"
#include "worker/dataset.h"
#include "worker/step.h"

typedef struct nn_replica {
  char name[NN_NAME_MAX];   /* "model" in a one-model run; its checkpoint group */
  int index;                /* position in the run (keys its random streams) */
  uint64_t seed;            /* nn_rng_replica_seed(job seed, index) */
  const nn_job *job;        /* borrowed */
  const nn_optim_cfg *optim_cfg;   /* borrowed: its optimizer's settings */
  const nn_schedule_cfg *schedule; /* borrowed: its learning-rate schedule */
  nn_model model;
  int have_model;
  nn_optim optim;           /* training replicas only */
  int have_optim;
  nn_gradsync *sync;        /* training on N > 1 ranks only */
  nn_stepper st;            /* every replica (evaluation uses its loss) */
  int have_stepper;
  struct nn_eval_misses *misses; /* evaluation keeps misclassified samples here (run
                               report; borrowed, NULL: none) */
  float *aux;               /* scratch a task kind's own step uses (run/tasks/gan.c),
                               allocated by its build, freed by nn_replica_free */
} nn_replica;

/* What to build. */
typedef struct nn_replica_opts {
  int train;                /* optimizer + gradient sync (else evaluation only) */
  int max_batch;            /* largest slice forward/backward will see */
  MPI_Comm comm;            /* the ranks that hold the replica (gradient sync) */
  double timeout_s;         /* watchdog of the gradient sync (0: none) */
  const nn_optim_cfg *optim_cfg;   /* NULL: the job's [optimizer] */
  const nn_schedule_cfg *schedule; /* NULL: the job's [schedule] */
  int lint;                 /* apply the model checks of coordinator/lint.h (train, check) */
  int layer0, nlayers;      /* build job->model.layers[layer0, layer0 + nlayers) only
                               (nlayers 0: to the end): a GAN's two models in one list */
  void (*warn)(void *user, const char *msg); /* their warnings (NULL: dropped) */
  void *warn_user;
} nn_replica_opts;

/* The model's input shape for data samples of shape `sample`: the job's
 * model.input_shape when given (it must hold as many values), else `sample`.
 * `where` names the file an error is about (job file or data glob). */
int nn_replica_input_shape(const nn_job *job, const nn_shape *sample, const char *where,
                           nn_shape *in, nn_error *err);

/* The rules above, for a built model against the data described by di. */
int nn_replica_check_data(const nn_job *job, const nn_model *m, const nn_dataset_info *di,
                          const char *where, nn_error *err);

/* Build replica `index` called `name` for input shape `in` from the job:
 * model (parameters initialized from the replica's seed), and when o->train
 * the optimizer, the gradient sync (comm size > 1) and the clipping settings.
 * With o->lint, the model checks of coordinator/lint.h run too (a softmax
 * before cross_entropy is refused, a non-negative classifier output warned).
 * Configuration errors name the job file and, when known, the layer's line. */
int nn_replica_build(nn_replica *r, const char *name, int index, const nn_job *job,
                     const nn_shape *in, const nn_replica_opts *o, nn_error *err);
void nn_replica_free(nn_replica *r);

/* Broadcast from rank 0 what a checkpoint restores: parameters and buffers,
 * and with `training` the optimizer slots and step counter. Collective on
 * comm; every MPI call checked. */
int nn_replica_bcast(nn_replica *r, MPI_Comm comm, int training, nn_error *err);

/* Does checkpoint `path`'s group for this replica describe the same model
 * (tensors, shapes) and, with `training`, the same optimizer? */
int nn_replica_check_ckpt(const nn_replica *r, const nn_ckpt_snapshot *s, const char *path,
                          int training, nn_error *err);
/* Copy the checkpoint's values into the replica (rank 0; then nn_replica_bcast):
 * parameters and buffers; with `training` also the slots and the step counter. */
void nn_replica_load_ckpt(nn_replica *r, const nn_ckpt_snapshot *s, int training);
/* [schedule] one_cycle with cycle_momentum: this step's momentum for the
 * optimizer, as beta1 (adam, adamw) or momentum (sgd, rmsprop configured with
 * momentum > 0); a no-op for other optimizers and evaluation-only replicas.
 * Returns 1 if it set a value. */
int nn_replica_set_momentum(nn_replica *r, double momentum);
/* Copy the replica's state into a snapshot prepared for it. */
void nn_replica_save_ckpt(const nn_replica *r, nn_ckpt_snapshot *s);

#endif
