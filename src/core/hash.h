/* hash.h: 64-bit FNV-1a, the project's one non-cryptographic hash (checkpoint
 * checksums, replica fingerprints, hash tables). Start from NN_FNV1A64_INIT
 * and feed bytes in order; the value depends only on the bytes. */
#ifndef NN_CORE_HASH_H
#define NN_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define NN_FNV1A64_INIT 0xcbf29ce484222325ull /* 14695981039346656037, the FNV offset basis */
#define NN_FNV1A64_PRIME 0x100000001b3ull     /* 1099511628211 */

/* h updated with the n bytes at p. */
static inline uint64_t nn_fnv1a64(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * NN_FNV1A64_PRIME;
  return h;
}

#endif
