/* rng.h: counter-based random numbers (Philox4x32-10).
 *
 * Every random draw in nntrain is a pure function of
 * (seed, purpose, a, b, c, index): initialization, shuffling, dropout masks and
 * augmentation each use their own purpose and coordinates (epoch, step,
 * sample, ...), so a draw never depends on how many draws happened before it
 * in other parts of the program. A resumed run, or the same job on a
 * different number of ranks, draws exactly the same numbers. */
#ifndef NN_CORE_RNG_H
#define NN_CORE_RNG_H

#include <stdint.h>

/* What a stream is for; part of the key so purposes never share numbers. */
enum nn_rng_purpose {
  NN_RNG_INIT = 1,      /* parameter initialization: a = layer, b = param */
  NN_RNG_SHUFFLE = 2,   /* epoch permutation: a = epoch */
  NN_RNG_DROPOUT = 3,   /* a = layer, b = global step, c = global sample */
  NN_RNG_AUGMENT = 4,   /* a = epoch, b = global sample */
  NN_RNG_SPLIT = 5,     /* validation split / k-fold assignment */
  NN_RNG_REPLICA = 6,   /* the seed of a run's replica k > 0: a = k (core/rng.c) */
  NN_RNG_GENERATE = 7,  /* `nntrain generate`: the sampled tokens, in order */
  NN_RNG_VECTORS = 8,   /* `nntrain prepare vectors`: a drawn row, a = its id */
  NN_RNG_GAN = 10,      /* a GAN's noise: a = phase (0 discriminator step, 1 generator
                           step, 2 evaluation), b = global step, c = global sample */
  NN_RNG_SAMPLE_LAYER = 16, /* a VAE's sample layer: a = layer, b = global step,
                               c = global sample (core/layers/sample.h) */
  NN_RNG_TEST = 99,
};

/* One Philox4x32-10 block: out = Philox(ctr, key). */
void nn_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A stream of numbers at fixed (seed, purpose, a, b, c); the position within
 * the stream is the only state. Small and copyable; lives on the stack. */
typedef struct nn_rng {
  uint32_t key[2];
  uint32_t ctr[4];  /* ctr[0] = block index, ctr[1..3] = a, b, c */
  uint32_t buf[4];
  int left;         /* unused words left in buf */
} nn_rng;

void nn_rng_init(nn_rng *r, uint64_t seed, uint32_t purpose, uint32_t a,
                 uint32_t b, uint32_t c);
uint32_t nn_rng_u32(nn_rng *r);
/* Uniform in [0, 1), 24 bits of precision. */
float nn_rng_uniform(nn_rng *r);
/* Uniform integer in [0, n), unbiased. n > 0. */
uint32_t nn_rng_below(nn_rng *r, uint32_t n);
/* Standard normal (Box-Muller). */
float nn_rng_normal(nn_rng *r);

/* Fill perm[0..n) with a permutation of 0..n-1 drawn from (seed, NN_RNG_SHUFFLE, epoch).
 * The result depends only on (seed, epoch, n). */
void nn_rng_permutation(uint64_t seed, uint32_t epoch, int64_t *perm, int64_t n);

/* The seed replica k of a run draws everything from: the job seed itself for
 * k = 0 (a one-model run is unchanged), a value drawn from (seed,
 * NN_RNG_REPLICA, k) otherwise, so two replicas never share a stream. */
uint64_t nn_rng_replica_seed(uint64_t seed, uint32_t k);

#endif
