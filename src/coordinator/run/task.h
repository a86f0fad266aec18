/* task.h: kinds of training, each one small ops table.
 *
 * A run is one task kind and one or more named replicas (run/replica.h). The
 * trainer (coordinator/train.c) and `nntrain check` have the kind build its
 * replicas (build: which model each replica is, and the kind's rules against
 * the data), then the trainer calls the kind's step for every global batch
 * and its evaluate for validation and the test set; checkpoints hold one group
 * per replica name. The trainer knows no kind by name. A NULL build or
 * evaluate means the supervised behaviour (nn_task_build_default,
 * nn_task_evaluate_default).
 *
 * Adding a kind: one file in run/tasks/ defining an nn_task_ops, and one row
 * in the table of task.c. The job chooses it with train.task, checked
 * against the table (nn_task_for_job), so nothing else lists the kinds. */
#ifndef NN_COORDINATOR_RUN_TASK_H
#define NN_COORDINATOR_RUN_TASK_H

#include "coordinator/job.h"
#include "coordinator/run/replica.h"
#include "core/metrics.h"
#include "worker/allreduce.h"
#include "worker/dataset.h"
#include "worker/loader.h"
#include "worker/step.h"

#define NN_TASK_MAX_REPLICAS 4

typedef struct nn_task_ops nn_task_ops;
struct nn_task_ops {
  const char *name;        /* train.task value */
  const char *help;        /* one line for the docs */
  int test_only;           /* 1: exercised by the tests, not documented for users */
  int nreplicas;           /* replicas the kind trains */
  const char *replicas[NN_TASK_MAX_REPLICAS]; /* their names (checkpoint groups) */
  int eval_replica;        /* the replica validation, test figures and best.h5 use */
  /* Build reps[0 .. nreplicas) for samples of shape di->sample (di NULL: no
   * data, model.input_shape only, as `nntrain check` allows) and check them
   * against the data with the kind's rules. Errors about the model against
   * the data name `where` (the job file for train and check, the data for
   * eval); configuration errors name the job file. */
  int (*build)(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
               const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
               nn_error *err);
  /* One global batch: this rank's slice b at global step `step`, replica i
   * at learning rate lr[i] (its own schedule's value). Adds the batch's
   * figures to *st (the eval replica's loss and accuracy). Every gradient
   * sync it starts is finished before it returns: one sync in flight at a
   * time. With train.accumulate = k > 1, b is an optimizer step's slice and
   * the step runs it as the stepper's k micro-batches (nn_step_micro,
   * worker/step.h), one gradient sync per replica: every kind does. */
  int (*step)(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
              nn_step_stats *st, nn_error *err);
  /* The figures of the run's model on L's data, reduced over comm (every
   * rank gets *res). Collective. */
  int (*evaluate)(const nn_task_ops *t, nn_replica *reps, nn_loader *L,
                  nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl, int64_t step,
                  nn_metrics_result *res, nn_error *err);
  /* The names of the training figures the kind's step sums into
   * nn_step_stats.fig_sum (up to 4; NULL-ended): each epoch record gets
   * name = sum / count (a VAE's "elbo", "recon", "kl"). */
  const char *train_figs[5];
  /* Optional: rank 0 alone, after each epoch's report, with the run
   * directory (generative kinds write a picture of their samples there).
   * Local; a failure ends the run at the next step's boundary. */
  int (*epoch_end)(const nn_task_ops *t, nn_replica *reps, const char *dir, int epoch,
                   nn_error *err);
};

/* The supervised build: every replica is the job's [model] for the data's
 * samples (model.input_shape may reshape them), held to the rules of
 * run/replica.h (classes -> one output each; targets -> mse, one output
 * each). */
int nn_task_build_default(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                          const nn_dataset_info *di, const char *where,
                          const nn_replica_opts *o, nn_error *err);
/* The rules of a one-model kind against its built model (where: the data's
 * glob when di is given, else the job file). */
typedef int (*nn_task_check_fn)(const nn_job *job, const nn_model *m, const nn_dataset_info *di,
                                const char *where, nn_error *err);
/* A one-model kind's build: reps[0] for the data's samples (or
 * model.input_shape), then `check`; collective like every build. */
int nn_task_build_one(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                      const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                      nn_task_check_fn check, nn_error *err);

/* One replica's optimizer step on the batch (reps[0]; supervised, language
 * models): nn_step_train at lr[0]. */
int nn_task_step_default(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                         nn_step_stats *st, nn_error *err);
/* The supervised evaluation: nn_evaluate on reps[t->eval_replica] (per-token
 * figures for per-timestep labels and token streams). */
int nn_task_evaluate_default(const nn_task_ops *t, nn_replica *reps, nn_loader *L,
                             nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl, int64_t step,
                             nn_metrics_result *res, nn_error *err);
/* t->build or the default; t->evaluate or the default. */
int nn_task_build(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                  const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                  nn_error *err);
int nn_task_evaluate(const nn_task_ops *t, nn_replica *reps, nn_loader *L, nn_metrics_acc *acc,
                     MPI_Comm comm, nn_ring *ctl, int64_t step, nn_metrics_result *res,
                     nn_error *err);

/* The kind called name, or NULL. */
const nn_task_ops *nn_task_find(const char *name);
/* The kind the job's train.task names; NN_ESCHEMA naming the job file and
 * listing the kinds when there is none. */
int nn_task_for_job(const nn_job *job, const nn_task_ops **ops, nn_error *err);
/* NULL-terminated list of every kind, for choices and docs. */
const nn_task_ops *const *nn_task_kinds(void);

#endif
