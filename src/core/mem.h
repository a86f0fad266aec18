/* mem.h: the one allocator hook of nntrain.
 *
 * Every allocation in src/ goes through nn_malloc, nn_calloc, nn_realloc and
 * nn_strdup (memory is released with plain free). In a normal build they
 * are the C library's functions. In a build with -DNN_FAULT_INJECTION=ON
 * they count the allocations of the process and can fail one of them on
 * purpose, so a test can walk every allocation site of a run and check that
 * each failure ends cleanly (a message, exit 1, nothing leaked):
 *
 *   NN_FAIL_ALLOC=k      the k-th allocation (from 1) returns NULL
 *   NN_ALLOC_REPORT=F    at exit, the number of allocations made is written to F
 *
 * Both are read once, at the first allocation. nn_calloc and nn_realloc
 * also refuse sizes whose product overflows (returning NULL, like calloc). */
#ifndef NN_CORE_MEM_H
#define NN_CORE_MEM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifdef NN_FAULT_INJECTION
void *nn_malloc(size_t size);
void *nn_calloc(size_t n, size_t size);
void *nn_realloc(void *p, size_t size);
char *nn_strdup(const char *s);
/* Allocations counted so far (fault-injection builds only). */
unsigned long nn_mem_count(void);
#else
static inline void *nn_malloc(size_t size) { return malloc(size); }
static inline void *nn_calloc(size_t n, size_t size) { return calloc(n, size); }
static inline void *nn_realloc(void *p, size_t size) { return realloc(p, size); }
static inline char *nn_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  return d ? memcpy(d, s, n) : NULL;
}
#endif

#endif
