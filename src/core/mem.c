/* mem.c: the fault-injecting allocator of mem.h (NN_FAULT_INJECTION builds). */
#include "core/mem.h"

#ifdef NN_FAULT_INJECTION
#include <stdio.h>

static unsigned long mem_count, mem_fail_at;
static const char *mem_report;
static int mem_ready;

static void mem_write_report(void) {
  FILE *f = fopen(mem_report, "w");
  if (!f) return;
  fprintf(f, "%lu\n", mem_count);
  fclose(f);
}

static void mem_init(void) {
  mem_ready = 1;
  const char *k = getenv("NN_FAIL_ALLOC");
  if (k && *k) mem_fail_at = strtoul(k, NULL, 10);
  mem_report = getenv("NN_ALLOC_REPORT");
  if (mem_report && *mem_report) atexit(mem_write_report);
}

/* 1 if this allocation is to fail. */
static int mem_fail(void) {
  if (!mem_ready) mem_init();
  return ++mem_count == mem_fail_at;
}

unsigned long nn_mem_count(void) { return mem_count; }

void *nn_malloc(size_t size) { return mem_fail() ? NULL : malloc(size); }

void *nn_calloc(size_t n, size_t size) { return mem_fail() ? NULL : calloc(n, size); }

void *nn_realloc(void *p, size_t size) { return mem_fail() ? NULL : realloc(p, size); }

char *nn_strdup(const char *s) {
  if (mem_fail()) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  return d ? memcpy(d, s, n) : NULL;
}
#else
/* ISO C forbids an empty translation unit. */
typedef int nn__mem_unused;
#endif
