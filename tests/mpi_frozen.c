/* mpi_frozen.c: training steps with frozen layers under mpirun -np 1..4
 * (worker/step.c with the gradient sync of worker/allreduce.c):
 *  - the gradient sync covers exactly the trainable prefix (its length is
 *    what every step all-reduces), the optimizer has slots for it only, and
 *    a stepper given a sync or optimizer over the whole arena is refused;
 *  - after several steps the frozen layers' parameters are bit-identical to
 *    their start, the trainable ones moved, and every rank holds the same
 *    bits. A test fails on all ranks if it fails on one. */
#include <mpi.h>
#include <stdint.h>

#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "test.h"
#include "gradcheck_assert.h"
#include "worker/allreduce.h"
#include "worker/step.h"
#include "core/loss.h"

static void mpi_up(void) {
  int init = 0;
  MPI_Initialized(&init);
  if (init) return;
  int provided = 0;
  MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
  atexit((void (*)(void))MPI_Finalize);
}

static int all_ok(int ok) {
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all;
}

static nn_layer_cfg dense(const char *name, int units, int frozen) {
  nn_layer_cfg c = cfg_of("dense");
  cfg_set(&c, "units", "%d", units);
  c.frozen = frozen;
  snprintf(c.name, sizeof c.name, "%s", name);
  snprintf(c.activation, sizeof c.activation, "tanh");
  return c;
}

static void test_frozen_steps(void) {
  mpi_up();
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  /* in [6] -> base (frozen) -> mid (trainable) -> top (frozen) -> head (trainable) */
  nn_layer_cfg c[4] = {dense("base", 8, 1), dense("mid", 7, 0), dense("top", 6, 1),
                       dense("head", 3, 0)};
  snprintf(c[3].activation, sizeof c[3].activation, "none");
  nn_shape in = {1, {6}};
  const int per = 4, global = per * size;
  nn_model m;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(nn_model_build(&m, &in, c, 4, per, &e));
  nn_model_init_params(&m, 3);
  size_t nfrozen = m.nparams - m.ntrainable;
  ASSERT_EQ_INT(nfrozen, 8 * 6 + 8 + 6 * 7 + 6);
  float *start = malloc(m.nparams * sizeof(float));
  ASSERT_TRUE(start != NULL);
  memcpy(start, m.params, m.nparams * sizeof(float));

  nn_optim_cfg oc;
  memset(&oc, 0, sizeof oc);
  snprintf(oc.type, sizeof oc.type, "adam");
  oc.lr = 0.01;
  oc.beta1 = 0.9;
  oc.beta2 = 0.999;
  nn_optim o;
  ASSERT_OK(nn_optim_init(&o, &oc, m.ntrainable, &e));
  ASSERT_EQ_INT(o.n, m.ntrainable); /* slots: 2 * ntrainable floats */
  nn_gradsync *g = NULL, *whole = NULL;
  ASSERT_OK(nn_gradsync_create(&g, MPI_COMM_WORLD, m.grads, m.ntrainable, 64, &e));
  ASSERT_EQ_INT(nn_gradsync_count(g), m.ntrainable);
  nn_stepper s;
  /* a sync over the whole arena would carry the frozen layers: refused */
  ASSERT_OK(nn_gradsync_create(&whole, MPI_COMM_WORLD, m.params, m.nparams, 64, &e));
  ASSERT_EQ_INT(nn_stepper_init(&s, &m, &o, whole, NN_LOSS_SOFTMAX_CE, &e), NN_EINTERNAL);
  nn_gradsync_free(whole);
  ASSERT_OK(nn_stepper_init(&s, &m, &o, g, NN_LOSS_SOFTMAX_CE, &e));

  float x[4 * 6];
  int32_t lab[4];
  for (int step = 0; step < 5; step++) {
    nn_rng r;
    nn_rng_init(&r, 1, NN_RNG_TEST, (uint64_t)step, (uint64_t)rank, 0);
    for (int i = 0; i < per * 6; i++) x[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
    for (int i = 0; i < per; i++) lab[i] = (rank + i + step) % 3;
    nn_batch b = {.step = step, .n = per, .global_n = global, .sample0 = rank * per,
                  .x = x, .labels = lab};
    nn_step_stats st = {0};
    ASSERT_OK(nn_step_train(&s, &b, 0.01, (uint64_t)step, 1, &st, &e));
  }
  int ok = 1;
  for (int t = 0; t < m.ntensors; t++) {
    const nn_tensor_ref *tr = &m.tensors[t];
    if (tr->is_buffer) continue;
    int same = !memcmp(start + tr->offset, m.params + tr->offset, tr->count * sizeof(float));
    int frozen = !strcmp(tr->layer, "base") || !strcmp(tr->layer, "top");
    if (same != frozen) {
      fprintf(stderr, "rank %d: %s/%s %s\n", rank, tr->layer, tr->name,
              frozen ? "changed although frozen" : "did not change");
      ok = 0;
    }
  }
  /* the same bits on every rank */
  float *r0 = malloc(m.nparams * sizeof(float));
  ASSERT_TRUE(r0 != NULL);
  memcpy(r0, m.params, m.nparams * sizeof(float));
  MPI_Bcast(r0, (int)m.nparams, MPI_FLOAT, 0, MPI_COMM_WORLD);
  if (memcmp(r0, m.params, m.nparams * sizeof(float))) ok = 0;
  ASSERT_TRUE(all_ok(ok));
  free(r0);
  free(start);
  nn_stepper_free(&s);
  nn_gradsync_free(g);
  nn_optim_free(&o);
  nn_model_free(&m);
}

TEST_MAIN(TEST(test_frozen_steps))
