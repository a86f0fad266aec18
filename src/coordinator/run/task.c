/* task.c: the table of task kinds (see task.h). */
#include "coordinator/run/task.h"

#include "coordinator/run/evaluate.h"
#include "worker/agree.h"

#include <stdio.h>
#include <string.h>

extern const nn_task_ops nn_task_supervised;
extern const nn_task_ops nn_task_twin;
extern const nn_task_ops nn_task_lm;
extern const nn_task_ops nn_task_gan;
extern const nn_task_ops nn_task_autoencoder;
extern const nn_task_ops nn_task_vae;

static const nn_task_ops *const kinds[] = {
    &nn_task_supervised,
    &nn_task_lm,
    &nn_task_autoencoder,
    &nn_task_vae,
    &nn_task_gan,
    &nn_task_twin,
    NULL,
};

const nn_task_ops *nn_task_find(const char *name) {
  for (int i = 0; kinds[i]; i++)
    if (!strcmp(kinds[i]->name, name)) return kinds[i];
  return NULL;
}

const nn_task_ops *const *nn_task_kinds(void) { return kinds; }

int nn_task_for_job(const nn_job *job, const nn_task_ops **ops, nn_error *err) {
  /* "": a job spec from before train.task existed (a version 1 checkpoint) */
  *ops = nn_task_find(job->train.task[0] ? job->train.task : "supervised");
  if (*ops) return 0;
  char list[256] = "";
  for (int i = 0, k = 0; kinds[i] && k < (int)sizeof list; i++)
    k += snprintf(list + k, sizeof list - (size_t)k, "%s\"%s\"", i ? ", " : "", kinds[i]->name);
  return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                     "train.task = \"%s\": expected one of %s", job->train.task, list);
}

int nn_task_build_default(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                          const nn_dataset_info *di, const char *where,
                          const nn_replica_opts *o, nn_error *err) {
  nn_shape in = {.ndim = job->model.input_ndim};
  int rc = 0;
  if (di) rc = nn_replica_input_shape(job, &di->sample, where, &in, err);
  else for (int i = 0; i < in.ndim; i++) in.dim[i] = job->model.input_shape[i];
  nn_replica_opts oi = *o;
  for (int i = 0; i < t->nreplicas && !rc; i++) {
    if (i > 0) oi.warn_user = NULL; /* the model checks speak once */
    rc = nn_replica_build(&reps[i], t->replicas[i], i, job, &in, &oi, err);
    if (!rc && di) {
      rc = nn_replica_check_data(job, &reps[i].model, di, where, err);
      reps[i].st.multilabel = di->multilabel;
    }
    if (o->train) rc = nn_agree(o->comm, rc, err); /* every rank leaves at the same replica */
  }
  return rc;
}

int nn_task_build_one(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                      const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                      nn_task_check_fn check, nn_error *err) {
  nn_shape in = {.ndim = job->model.input_ndim};
  int rc = 0;
  if (di) rc = nn_replica_input_shape(job, &di->sample, where, &in, err);
  else for (int i = 0; i < in.ndim; i++) in.dim[i] = job->model.input_shape[i];
  if (o->train) rc = nn_agree(o->comm, rc, err);
  if (!rc) rc = nn_replica_build(&reps[0], t->replicas[0], 0, job, &in, o, err);
  if (!rc) rc = check(job, &reps[0].model, di, di ? where : job->source, err);
  if (o->train) rc = nn_agree(o->comm, rc, err);
  return rc;
}

int nn_task_step_default(nn_replica *reps, const nn_batch *b, const double *lr, uint64_t step,
                         nn_step_stats *st, nn_error *err) {
  return nn_step_train(&reps[0].st, b, lr[0], step, reps[0].seed, st, err);
}

int nn_task_evaluate_default(const nn_task_ops *t, nn_replica *reps, nn_loader *L,
                             nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl, int64_t step,
                             nn_metrics_result *res, nn_error *err) {
  return nn_evaluate(&reps[t->eval_replica], L, acc, comm, ctl, step, res, err);
}

int nn_task_build(const nn_task_ops *t, nn_replica *reps, const nn_job *job,
                  const nn_dataset_info *di, const char *where, const nn_replica_opts *o,
                  nn_error *err) {
  return (t->build ? t->build : nn_task_build_default)(t, reps, job, di, where, o, err);
}

int nn_task_evaluate(const nn_task_ops *t, nn_replica *reps, nn_loader *L, nn_metrics_acc *acc,
                     MPI_Comm comm, nn_ring *ctl, int64_t step, nn_metrics_result *res,
                     nn_error *err) {
  return (t->evaluate ? t->evaluate : nn_task_evaluate_default)(t, reps, L, acc, comm, ctl, step,
                                                                 res, err);
}
