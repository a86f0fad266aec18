/* mem.h: the one allocator hook of nntrain.
 *
 * Every allocation in src/ goes through nn_malloc, nn_calloc, nn_realloc and
 * nn_strdup (memory is released with plain free). In a normal build they
 * are the C library's functions. In a build with -DNN_FAULT_INJECTION=ON
 * they count the allocations of the process, per call site ("dir/file.c:line",
 * passed in by the macros below), and can fail one of them on purpose, so a
 * test can walk every allocation site of a run and check that each failure
 * ends cleanly (a message, exit 1, nothing leaked; tests/e2e_allocfail.sh):
 *
 *   NN_FAIL_ALLOC=k      the k-th allocation of the process (from 1) returns NULL
 *   NN_FAIL_SITE=S[#n]   the n-th (default 1st) allocation made at site S returns
 *                        NULL; S as NN_ALLOC_REPORT lists it, e.g. core/model.c:88,
 *                        or "jansson" / "protobuf-c" for those libraries'
 *                        allocations (routed here by nn_mem_alloc_at)
 *   NN_FAIL_RANK=r       fail only in the MPI rank r (read from Open MPI's or
 *                        PMI's environment); other ranks allocate normally
 *   NN_FAIL_FIRED=F      when the failure is injected, F is created (the walk
 *                        tells a site that was not reached from one that was)
 *   NN_ALLOC_REPORT=F    at exit, F gets the number of allocations made, then
 *                        one line "SITE COUNT" per site, in order of first use
 *
 * All are read once, at the first allocation. nn_calloc and nn_realloc
 * also refuse sizes whose product overflows (returning NULL, like calloc). */
#ifndef NN_CORE_MEM_H
#define NN_CORE_MEM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifdef NN_FAULT_INJECTION
/* The hooks with an explicit site (a string that lives as long as the
 * process: a literal). nn_mem_alloc_at is malloc's signature plus the site,
 * for the wrappers given to jansson and protobuf-c. */
void *nn_mem_alloc_at(size_t size, const char *site);
void *nn_mem_calloc_at(size_t n, size_t size, const char *site);
void *nn_mem_realloc_at(void *p, size_t size, const char *site);
char *nn_mem_strdup_at(const char *s, const char *site);
/* Without a site (to take their address): site "?". The parentheses keep
 * the macros below from expanding the names. */
void *(nn_malloc)(size_t size);
void *(nn_calloc)(size_t n, size_t size);
void *(nn_realloc)(void *p, size_t size);
char *(nn_strdup)(const char *s);
/* Allocations counted so far (fault-injection builds only). */
unsigned long nn_mem_count(void);

#define NN__MEM_STR2(x) #x
#define NN__MEM_STR(x) NN__MEM_STR2(x)
#define NN__MEM_SITE __FILE__ ":" NN__MEM_STR(__LINE__)
#define nn_malloc(size) nn_mem_alloc_at((size), NN__MEM_SITE)
#define nn_calloc(n, size) nn_mem_calloc_at((n), (size), NN__MEM_SITE)
#define nn_realloc(p, size) nn_mem_realloc_at((p), (size), NN__MEM_SITE)
#define nn_strdup(s) nn_mem_strdup_at((s), NN__MEM_SITE)
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
