/* snapshot.c: a checkpoint in memory: the /state field table, and snapshots
 * (owned copies of each replica's arenas, allocated once and refilled by
 * copying, so taking a checkpoint allocates nothing in the step loop). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/checkpoint/internal.h"
#include "core/checked.h"
#include "core/mem.h"

/* ---- state table ------------------------------------------------------------ */

#define SF(n, t, h) {#n, t, offsetof(nn_ckpt_state, n), h, 0, 0}
/* optional: absent in older files (0), hashed only when not 0 */
#define SO(n, t, h) {#n, t, offsetof(nn_ckpt_state, n), h, 0, 1}
/* a field of the decisions' state, saved under its own flat name */
#define SD(name, member, t, h) {name, t, offsetof(nn_ckpt_state, decide.member), h, 0, 0}
_Static_assert(sizeof(int) == 4, "the plateau counters are saved as int32");
static const nn_ckpt_field state_fields[] = {
    SF(step, NN_CKPT_I64, "global optimizer steps completed"),
    SF(epoch, NN_CKPT_I32, "epoch of the next step (0-based)"),
    SF(epoch_step, NN_CKPT_I64, "steps of `epoch` already done: the data position"),
    SF(seed, NN_CKPT_U64, "train.seed"),
    {"optim_t", NN_CKPT_U64, offsetof(nn_ckpt_state, optim_t),
     "version 1 only: optimizer step counter (v2: each replica's optim_t)", 1, 0},
    SF(nranks, NN_CKPT_I32, "ranks of the run that wrote it (information)"),
    SF(lr, NN_CKPT_F64, "learning rate of the last step"),
    SF(elapsed_s, NN_CKPT_F64, "training wall time so far, seconds"),
    SD("plateau_scale", plateau.scale, NN_CKPT_F64, "reduce-on-plateau factor applied to the base lr"),
    SD("plateau_best", plateau.best, NN_CKPT_F64, "reduce-on-plateau: best monitored value so far"),
    SD("plateau_bad", plateau.bad_epochs, NN_CKPT_I32, "reduce-on-plateau: epochs without improvement"),
    SD("plateau_cooldown", plateau.cooldown_left, NN_CKPT_I32, "reduce-on-plateau: epochs of cooldown left"),
    SD("es_best", es.best, NN_CKPT_F64, "early stopping: best monitored value (NaN: none yet)"),
    SD("es_bad", es.bad, NN_CKPT_I32, "early stopping: epochs without improvement"),
    SD("es_best_epoch", es.best_epoch, NN_CKPT_I32, "early stopping: epoch (1-based) of the best value, 0: none"),
    SO(nonfinite_run, NN_CKPT_I32, "on_nonfinite = skip: non-finite steps in a row just before this point"),
    SO(nonfinite_skipped, NN_CKPT_I64, "on_nonfinite = skip: steps dropped as non-finite so far"),
    SO(rollbacks, NN_CKPT_I32, "on_nonfinite = rollback: rollbacks so far (lr scaled by nonfinite_lr_factor^rollbacks)"),
    {NULL, NN_CKPT_I32, 0, NULL, 0, 0},
};
#undef SF
#undef SO
#undef SD

const nn_ckpt_field *nn_ckpt_state_fields(void) { return state_fields; }

char *nn_ckpt_field_str(const nn_ckpt_state *st, const nn_ckpt_field *f, char *buf, size_t n) {
  const char *p = (const char *)st + f->offset;
  int32_t i32;
  int64_t i64;
  uint64_t u64;
  double d;
  switch (f->type) {
  case NN_CKPT_I32: memcpy(&i32, p, 4); snprintf(buf, n, "%" PRId32, i32); break;
  case NN_CKPT_I64: memcpy(&i64, p, 8); snprintf(buf, n, "%" PRId64, i64); break;
  case NN_CKPT_U64: memcpy(&u64, p, 8); snprintf(buf, n, "%" PRIu64, u64); break;
  default: memcpy(&d, p, 8); snprintf(buf, n, "%.17g", d); break;
  }
  return buf;
}

/* ---- allocation -------------------------------------------------------------- */

static void replica_free(nn_ckpt_replica *r) {
  free(r->carry);
  free(r->tensors);
  free(r->params);
  free(r->buffers);
  free(r->slots);
  memset(r, 0, sizeof *r);
}

int nn_ckpt_replica_set_carry(nn_ckpt_replica *r, size_t rows, size_t cols, const float *data,
                              nn_error *err) {
  size_t n = 0;
  if (nn_mul_size(rows, cols, &n) || n > NN_MAX_ELEMS || rows > INT32_MAX || cols > INT32_MAX)
    return nn_error_set(err, NN_EINVAL, "carried state of %zu x %zu floats is too large", rows,
                        cols);
  if (n > r->carry_cap) {
    float *c = nn_realloc(r->carry, n * sizeof *c);
    if (!c) return nn_error_set(err, NN_ENOMEM, "out of memory for the carried state");
    r->carry = c;
    r->carry_cap = n;
  }
  if (n) memcpy(r->carry, data, n * sizeof *data);
  r->carry_rows = n ? rows : 0;
  r->carry_cols = n ? cols : 0;
  return 0;
}

int nn__ckpt_replica_alloc(nn_ckpt_replica *r, int ntensors, size_t nparams, size_t ntrainable,
                           size_t nbuffers, int nslots, nn_error *err) {
  memset(r, 0, sizeof *r);
  r->ntensors = ntensors;
  r->nparams = nparams;
  r->ntrainable = ntrainable;
  r->nbuffers = nbuffers;
  r->nslots = nslots;
  size_t nslot = nslots && ntrainable ? (size_t)nslots * ntrainable : 1;
  r->tensors = nn_calloc((size_t)(ntensors > 0 ? ntensors : 1), sizeof *r->tensors);
  r->params = nn_malloc((nparams ? nparams : 1) * sizeof(float));
  r->buffers = nn_malloc((nbuffers ? nbuffers : 1) * sizeof(float));
  r->slots = nn_malloc(nslot * sizeof(float));
  if (!r->tensors || !r->params || !r->buffers || !r->slots) {
    replica_free(r);
    return nn_error_set(err, NN_ENOMEM, "out of memory for a checkpoint snapshot (%zu floats)",
                        nparams + (size_t)nslots * ntrainable + nbuffers);
  }
  /* Touch every page now: a snapshot is taken while the step loop waits, and
   * first-touch page faults there cost milliseconds on some VMs. */
  memset(r->params, 0, (nparams ? nparams : 1) * sizeof(float));
  memset(r->buffers, 0, (nbuffers ? nbuffers : 1) * sizeof(float));
  memset(r->slots, 0, nslot * sizeof(float));
  return 0;
}

int nn__ckpt_snapshot_alloc_text(nn_ckpt_snapshot *s, nn_error *err) {
  s->spec = nn_malloc(1);
  s->spec_cap = 1;
  s->metrics = nn_malloc(1);
  s->metrics_cap = 1;
  if (!s->spec || !s->metrics) return nn_error_set(err, NN_ENOMEM, "out of memory");
  s->metrics[0] = '\0';
  return 0;
}

int nn__ckpt_trainable_ok(const nn_tensor_ref *t, int ntensors, size_t ntrainable) {
  size_t covered = 0;
  for (int i = 0; i < ntensors; i++)
    if (!t[i].is_buffer && t[i].offset < ntrainable) {
      if (t[i].offset + t[i].count > ntrainable) return 0;
      covered += t[i].count;
    }
  return covered == ntrainable;
}


/* Replica r for model m: the tensor table and the current values copied. */
static int replica_init(nn_ckpt_replica *r, const char *name, const nn_model *m, int nslots,
                        nn_error *err) {
  if (!name || !nn__ckpt_name_ok(name, NN_NAME_MAX))
    return nn_error_set(err, NN_EINVAL, "checkpoint: replica name '%.60s' is not a usable name "
                        "(non-empty, no '/', under %d bytes)", name ? name : "", NN_NAME_MAX);
  if (nslots < 0 || nslots > NN_CKPT_MAX_SLOTS)
    return nn_error_set(err, NN_EINVAL, "checkpoint: %d optimizer slots, at most %d supported",
                        nslots, NN_CKPT_MAX_SLOTS);
  /* The file stores no offsets: each arena is its tensors back to back in
   * table order, which is how nn_model lays them out. Check it. */
  size_t next[2] = {0, 0};
  for (int i = 0; i < m->ntensors; i++) {
    const nn_tensor_ref *t = &m->tensors[i];
    int b = t->is_buffer ? 1 : 0;
    if (t->offset != next[b] || t->count != nn_shape_count(&t->shape))
      return nn_error_set(err, NN_EINTERNAL,
                          "checkpoint: tensor %s/%s is not where the arena layout puts it",
                          t->layer, t->name);
    next[b] += t->count;
  }
  if (next[0] != m->nparams || next[1] != m->nbuffers)
    return nn_error_set(err, NN_EINTERNAL,
                        "checkpoint: the tensor table covers %zu of %zu parameters and %zu of "
                        "%zu buffer values", next[0], m->nparams, next[1], m->nbuffers);
  size_t ntr = m->ntrainable;
  if (!nn__ckpt_trainable_ok(m->tensors, m->ntensors, ntr))
    return nn_error_set(err, NN_EINTERNAL, "checkpoint: %zu trained parameters end inside a "
                        "tensor", ntr);
  int rc = nn__ckpt_replica_alloc(r, m->ntensors, m->nparams, ntr, m->nbuffers, nslots, err);
  if (rc) return rc;
  snprintf(r->name, sizeof r->name, "%s", name);
  if (m->ntensors) memcpy(r->tensors, m->tensors, (size_t)m->ntensors * sizeof *r->tensors);
  if (m->nparams) memcpy(r->params, m->params, m->nparams * sizeof(float));
  if (m->nbuffers) memcpy(r->buffers, m->buffers, m->nbuffers * sizeof(float));
  return 0;
}

int nn_ckpt_snapshot_init(nn_ckpt_snapshot *s, int n, const char *const *names,
                          const nn_model *const *models, const int *nslots, nn_error *err) {
  memset(s, 0, sizeof *s);
  if (n < 1 || n > NN_CKPT_MAX_REPLICAS)
    return nn_error_set(err, NN_EINVAL, "checkpoint: %d replicas, expected 1 to %d", n,
                        NN_CKPT_MAX_REPLICAS);
  int rc = nn__ckpt_snapshot_alloc_text(s, err);
  s->version = NN_CKPT_VERSION;
  for (int i = 0; i < n && !rc; i++) {
    for (int j = 0; j < i; j++)
      if (names[i] && names[j] && !strcmp(names[i], names[j]))
        rc = nn_error_set(err, NN_EINVAL, "checkpoint: two replicas are called '%s'", names[i]);
    if (!rc) rc = replica_init(&s->rep[i], names[i], models[i], nslots[i], err);
    if (!rc) s->nreplicas = i + 1;
  }
  if (rc) nn_ckpt_snapshot_free(s);
  return rc;
}

void nn_ckpt_snapshot_free(nn_ckpt_snapshot *s) {
  if (!s) return;
  free(s->spec);
  free(s->metrics);
  for (int i = 0; i < NN_CKPT_MAX_REPLICAS; i++) replica_free(&s->rep[i]);
  memset(s, 0, sizeof *s);
}

int nn_ckpt_find_replica(const nn_ckpt_snapshot *s, const char *name) {
  for (int i = 0; i < s->nreplicas; i++)
    if (!strcmp(s->rep[i].name, name)) return i;
  return -1;
}

int nn__ckpt_grow(void *bufp, size_t *cap, size_t n, nn_error *err) {
  char **buf = bufp;
  if (n <= *cap && *buf) return 0;
  size_t c = *cap ? *cap : 64;
  while (c < n) c *= 2;
  char *p = nn_realloc(*buf, c);
  if (!p) return nn_error_set(err, NN_ENOMEM, "out of memory (%zu bytes)", n);
  *buf = p;
  *cap = c;
  return 0;
}

int nn_ckpt_snapshot_set_spec(nn_ckpt_snapshot *s, const uint8_t *spec, size_t len,
                              nn_error *err) {
  int rc = nn__ckpt_grow(&s->spec, &s->spec_cap, len ? len : 1, err);
  if (rc) return rc;
  if (len) memcpy(s->spec, spec, len);
  s->spec_len = len;
  return 0;
}

int nn_ckpt_snapshot_set_metrics(nn_ckpt_snapshot *s, const char *text, size_t len,
                                 nn_error *err) {
  int rc = nn__ckpt_grow(&s->metrics, &s->metrics_cap, len + 1, err);
  if (rc) return rc;
  if (len) memcpy(s->metrics, text, len);
  s->metrics[len] = '\0';
  s->metrics_len = len;
  return 0;
}
