/* replica.c: building, checking and restoring one replica (see replica.h). */
#include "coordinator/run/replica.h"

#include <stdlib.h>
#include <string.h>

#include "coordinator/lint.h"
#include "core/loss.h"
#include "core/rng.h"
#include "worker/agree.h"
#include "worker/collective.h"
#include "worker/hier.h"

int nn_replica_input_shape(const nn_job *job, const nn_shape *sample, const char *where,
                           nn_shape *in, nn_error *err) {
  *in = *sample;
  if (job->model.input_ndim <= 0) return 0;
  nn_shape want = {.ndim = job->model.input_ndim};
  for (int i = 0; i < want.ndim; i++) want.dim[i] = job->model.input_shape[i];
  if (nn_shape_count(&want) != nn_shape_count(sample)) {
    char a[64], b[64];
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                       "model.input_shape %s does not match the data's sample shape %s",
                       nn_shape_str(&want, a, sizeof a), nn_shape_str(sample, b, sizeof b));
  }
  *in = want;
  return 0;
}

/* Multi-label data (attribute multi_label: /targets [N, K] of 0/1) goes with
 * binary_cross_entropy on K logits, and that loss with nothing else: a
 * two-class task is a one-label multi-label shard (docs/metrics.md). */
static int check_multilabel(const nn_job *job, size_t k, const nn_dataset_info *di,
                            const char *where, nn_error *err) {
  if (!di->multilabel)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                       "train.loss = \"binary_cross_entropy\" needs multi-label data (/targets "
                       "[N, K] of 0/1 with attribute multi_label = 1), but the data has %s; use "
                       "%s (two classes: cross_entropy on 2 outputs, or a one-label multi-label "
                       "shard)", di->num_classes > 0 ? "class labels" : "regression targets",
                       di->num_classes > 0 ? "cross_entropy" : "mse");
  if (nn_loss_parse(job->train.loss) != NN_LOSS_BCE)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                       "the data is multi-label (%d 0/1 labels per sample): train.loss = \"%s\" "
                       "does not fit; use train.loss = \"binary_cross_entropy\"", di->target_dim,
                       job->train.loss);
  if (k != (size_t)di->target_dim)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                       "the model has %zu outputs but the data has %d labels per sample (set the "
                       "last layer's units to %d: one logit per label)", k, di->target_dim,
                       di->target_dim);
  return 0;
}

int nn_replica_check_data(const nn_job *job, const nn_model *m, const nn_dataset_info *di,
                          const char *where, nn_error *err) {
  size_t k = nn_shape_count(&m->out);
  int loss = nn_loss_parse(job->train.loss);
  if (loss < 0)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "unknown loss '%s'", job->train.loss);
  if (di->stream) /* `prepare text`: no labels, the next token is the target */
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "the data is one token stream (stream = 1, "
                       "`nntrain prepare text`) without labels or targets: it is for language "
                       "models (truncated BPTT), which train.task \"%s\" is not", job->train.task);
  if (di->token_labels) { /* a class per timestep: [T, classes] logits */
    char shp[64];
    if (m->out.ndim != 2 || m->out.dim[0] != di->sample.dim[0] ||
        m->out.dim[1] != di->num_classes)
      return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                         "the data has a class per timestep ([%d] of %d classes): the model "
                         "must write [%d, %d] logits (end with a dense layer of units = %d and "
                         "per_timestep = true), not %s", di->sample.dim[0], di->num_classes,
                         di->sample.dim[0], di->num_classes, di->num_classes,
                         nn_shape_str(&m->out, shp, sizeof shp));
    if (loss != NN_LOSS_SOFTMAX_CE)
      return nn_error_at(err, NN_ESCHEMA, where, 0, 0, "a class per timestep needs train.loss = "
                         "\"cross_entropy\"");
    return 0;
  }
  if (di->multilabel || loss == NN_LOSS_BCE) return check_multilabel(job, k, di, where, err);
  if (di->num_classes > 0) {
    if (k != (size_t)di->num_classes)
      return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                         "the model has %zu outputs but the data has %d classes (set the last "
                         "layer's units to %d)", k, di->num_classes, di->num_classes);
    return 0; /* cross_entropy on logits, or mse against one-hot targets */
  }
  if (loss != NN_LOSS_MSE)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                       "the data is regression (targets, no classes): train.loss = \"%s\" "
                       "needs class labels; use train.loss = \"mse\"", job->train.loss);
  if (k != (size_t)di->target_dim)
    return nn_error_at(err, NN_ESCHEMA, where, 0, 0,
                       "the model has %zu outputs but the data's targets have %d values", k,
                       di->target_dim);
  return 0;
}

/* The optimizer and, on N > 1 ranks, the gradient sync of a training
 * replica. Collective on o->comm: every rank agrees on the optimizer first,
 * as the sync's creation needs them all. */
static int build_training(nn_replica *r, const nn_replica_opts *o, nn_error *err) {
  int N = 1, rc = nn_optim_init(&r->optim, r->optim_cfg, r->model.ntrainable, err);
  r->have_optim = !rc;
  if ((rc = nn_agree(o->comm, rc, err)) != 0) return rc;
  NN_MPI_RETURN(err, MPI_Comm_size(o->comm, &N));
  if (N > 1) {
    /* train.allreduce and train.grad_compression (enum keys, checked by the
     * job parser) */
    nn_allreduce_cfg cfg = {nn_algo_parse(r->job->train.allreduce),
                            nn_wire_parse(r->job->train.grad_compression), 0, 0,
                            (size_t)r->job->train.allreduce_chunk_kib << 10};
    if (cfg.algo < 0) cfg.algo = NN_AR_AUTO;
    if (cfg.compress < 0) cfg.compress = NN_WIRE_NONE;
    rc = nn_gradsync_create_ex(&r->sync, o->comm, r->model.grads, r->model.ntrainable, 0, &cfg,
                               err);
    if (!rc && o->timeout_s > 0) nn_gradsync_set_timeout(r->sync, o->timeout_s);
  }
  return rc;
}

/* The model from the job for input `in`, its loss kind in *loss, and the
 * model checks when asked. Local: errors name the job file and the layer. */
static int build_model(nn_replica *r, const nn_shape *in, const nn_replica_opts *o, int *loss,
                       nn_error *err) {
  const nn_job *job = r->job;
  int first = o->layer0 > 0 && o->layer0 < job->model.nlayers ? o->layer0 : 0;
  int count = job->model.nlayers - first;
  if (o->nlayers > 0 && o->nlayers < count) count = o->nlayers;
  int rc = nn_model_build(&r->model, in, job->model.layers + first, count, o->max_batch, err);
  r->have_model = !rc;
  if (rc) {
    nn_job_model_error(job, err); /* the job file and the layer's line */
    return rc;
  }
  *loss = nn_loss_parse(job->train.loss);
  if (*loss < 0)
    return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0, "unknown loss '%s'", job->train.loss);
  return o->lint ? nn_lint_model(job, &r->model, *loss, o->warn, o->warn_user, err) : 0;
}

int nn_replica_build(nn_replica *r, const char *name, int index, const nn_job *job,
                     const nn_shape *in, const nn_replica_opts *o, nn_error *err) {
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  r->index = index;
  r->job = job;
  r->seed = nn_rng_replica_seed((uint64_t)job->train.seed, (uint32_t)index);
  r->optim_cfg = o->optim_cfg ? o->optim_cfg : &job->optimizer;
  r->schedule = o->schedule ? o->schedule : &job->schedule;
  int loss = 0, rc = build_model(r, in, o, &loss, err);
  if (o->train) rc = nn_agree(o->comm, rc, err); /* before anything collective */
  if (rc) return rc;
  nn_model_init_params(&r->model, r->seed);
  if (o->train && (rc = build_training(r, o, err)) != 0) return rc;
  rc = nn_stepper_init(&r->st, &r->model, r->have_optim ? &r->optim : NULL, r->sync, loss, err);
  r->have_stepper = !rc;
  if (!rc) { /* after the all-reduce, the same on every rank (worker/step.h) */
    r->st.clip_value = job->train.clip_value;
    r->st.clip_norm = job->train.clip_norm;
    rc = nn_stepper_accumulate(&r->st, job->train.accumulate, err); /* callers agree */
  }
  return rc;
}

void nn_replica_free(nn_replica *r) {
  free(r->aux);
  if (r->have_stepper) nn_stepper_free(&r->st);
  nn_gradsync_free(r->sync);
  if (r->have_optim) nn_optim_free(&r->optim);
  if (r->have_model) nn_model_free(&r->model);
  memset(r, 0, sizeof *r);
}

int nn_replica_bcast(nn_replica *r, MPI_Comm comm, int training, nn_error *err) {
  nn_model *m = &r->model;
  int rc = nn_bcast_floats(comm, m->params, m->nparams, 0, err);
  if (!rc) rc = nn_bcast_floats(comm, m->buffers, m->nbuffers, 0, err);
  if (rc || !training || !r->have_optim) return rc;
  rc = nn_bcast_floats(comm, r->optim.slots, (size_t)r->optim.nslots * r->optim.n, 0, err);
  if (!rc) rc = nn_bcast_bytes(comm, &r->optim.t, sizeof r->optim.t, 0, err);
  return rc;
}

/* The checkpoint group of replica r, or NULL. */
static const nn_ckpt_replica *group_of(const nn_replica *r, const nn_ckpt_snapshot *s) {
  int i = nn_ckpt_find_replica(s, r->name);
  return i < 0 ? NULL : &s->rep[i];
}

int nn_replica_check_ckpt(const nn_replica *r, const nn_ckpt_snapshot *snap, const char *path,
                          int training, nn_error *err) {
  const nn_model *m = &r->model;
  const char *why = training ? "model shapes may not change on resume" : "the models differ";
  const nn_ckpt_replica *s = group_of(r, snap);
  if (!s)
    return nn_error_at(err, NN_ECKPT, path, 0, 0, "the checkpoint has no replica called '%s' "
                       "(it holds %d, the first '%s')", r->name, snap->nreplicas,
                       snap->nreplicas > 0 ? snap->rep[0].name : "");
  char a[64], b[64];
  if (s->ntensors != m->ntensors || s->nparams != m->nparams || s->nbuffers != m->nbuffers)
    return nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "the checkpoint's model (%d tensors, %zu parameters) is not the job's "
                       "(%d tensors, %zu parameters): %s",
                       s->ntensors, s->nparams, m->ntensors, m->nparams, why);
  for (int i = 0; i < m->ntensors; i++) {
    const nn_tensor_ref *x = &s->tensors[i], *y = &m->tensors[i];
    if (strcmp(x->layer, y->layer) || strcmp(x->name, y->name) ||
        !nn_shape_equal(&x->shape, &y->shape) || x->is_buffer != y->is_buffer)
      return nn_error_at(err, NN_ECKPT, path, 0, 0,
                         "checkpoint tensor %s/%s %s does not match the job's %s/%s %s: %s",
                         x->layer, x->name, nn_shape_str(&x->shape, a, sizeof a), y->layer,
                         y->name, nn_shape_str(&y->shape, b, sizeof b), why);
  }
  if (!training || !r->have_optim) return 0;
  if (strcmp(s->optim_type, r->optim.cfg.type) || s->nslots != r->optim.nslots)
    return nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "the checkpoint was trained with optimizer '%s', the job asks for '%s': "
                       "the optimizer may not change on resume", s->optim_type,
                       r->optim.cfg.type);
  if (s->ntrainable != r->optim.n)
    return nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "the checkpoint trained %zu of replica '%s''s parameters, the job trains "
                       "%zu: which layers are frozen may not change on resume", s->ntrainable,
                       r->name, r->optim.n);
  return 0;
}

void nn_replica_load_ckpt(nn_replica *r, const nn_ckpt_snapshot *snap, int training) {
  const nn_ckpt_replica *s = group_of(r, snap); /* nn_replica_check_ckpt found it */
  nn_model *m = &r->model;
  memcpy(m->params, s->params, s->nparams * sizeof(float));
  if (s->nbuffers) memcpy(m->buffers, s->buffers, s->nbuffers * sizeof(float));
  if (!training || !r->have_optim) return;
  if (s->nslots) memcpy(r->optim.slots, s->slots, (size_t)s->nslots * s->ntrainable * sizeof(float));
  r->optim.t = s->optim_t;
}

void nn_replica_save_ckpt(const nn_replica *r, nn_ckpt_snapshot *snap) {
  nn_ckpt_replica *s = &snap->rep[r->index]; /* prepared in the run's replica order */
  const nn_model *m = &r->model;
  memcpy(s->params, m->params, m->nparams * sizeof(float));
  if (m->nbuffers) memcpy(s->buffers, m->buffers, m->nbuffers * sizeof(float));
  if (!r->have_optim) return;
  if (r->optim.nslots)
    memcpy(s->slots, r->optim.slots, (size_t)r->optim.nslots * r->optim.n * sizeof(float));
  snprintf(s->optim_type, sizeof s->optim_type, "%s", r->optim.cfg.type);
  for (int i = 0; i < r->optim.nslots && i < NN_CKPT_MAX_SLOTS; i++)
    snprintf(s->slot_names[i], sizeof s->slot_names[i], "%s", nn_optim_slot_name(&r->optim, i));
  s->optim_t = r->optim.t;
}

int nn_replica_set_momentum(nn_replica *r, double momentum) {
  if (!r->have_optim) return 0;
  switch (r->optim.kind) {
  case NN_OPTIM_ADAM:
  case NN_OPTIM_ADAMW: r->optim.cfg.beta1 = momentum; return 1;
  case NN_OPTIM_SGD:
  case NN_OPTIM_RMSPROP:
    if (!(r->optim_cfg->momentum > 0)) return 0; /* no momentum slot to cycle */
    r->optim.cfg.momentum = momentum;
    return 1;
  default: return 0;
  }
}
