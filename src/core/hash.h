/* hash.h: 64-bit FNV-1a, the project's one non-cryptographic hash (checkpoint
 * checksums, replica fingerprints, hash tables). Start from NN_FNV1A64_INIT
 * and feed bytes in order; the value depends only on the bytes. */
#ifndef NN_CORE_HASH_H
#define NN_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define NN_FNV1A64_INIT 1469598103934665603ull
#define NN_FNV1A64_PRIME 1099511628211ull

/* h updated with the n bytes at p. */
static inline uint64_t nn_fnv1a64(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * NN_FNV1A64_PRIME;
  return h;
}

#endif
