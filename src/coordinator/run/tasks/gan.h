/* gan.h: what the GAN task (gan.c, docs/tasks.md#gan) offers beyond its ops
 * table: the generator's images for commands (`nntrain sample`). */
#ifndef NN_COORDINATOR_RUN_TASKS_GAN_H
#define NN_COORDINATOR_RUN_TASKS_GAN_H

#include <stdint.h>

#include "coordinator/run/replica.h"

/* The index of the generator among a GAN run's replicas. */
#define NN_GAN_GENERATOR 0

/* x [n, image] = the generator's images (evaluation mode) for the noise
 * vectors first .. first + n - 1 of the stream (seed, NN_RNG_GAN, phase 4):
 * image i depends only on (seed, first + i) and the parameters, whatever n
 * and the slices the model takes at a time. z: scratch of
 * g->model.max_batch * latent floats. */
void nn_gan_generate(nn_replica *g, uint64_t seed, int64_t first, int n, float *z, float *x);

#endif
