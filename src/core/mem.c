/* mem.c: the fault-injecting allocator of mem.h (NN_FAULT_INJECTION builds):
 * counts allocations per call site and fails the one the environment names. */
#include "core/mem.h"

#ifdef NN_FAULT_INJECTION
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "core/hash.h"

/* Sites, by first use; open addressing over the site string's hash. Sites
 * are literals, so the table keeps pointers. Beyond MEM_SITES sites the
 * extra ones are counted but not listed (far more than src/ has). */
enum { MEM_SITES = 4096 };
static struct {
  const char *site;
  unsigned long count;
} mem_tab[MEM_SITES];
static int mem_order[MEM_SITES], mem_nsites;

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long mem_count, mem_fail_at, mem_fail_nth;
static const char *mem_report, *mem_fired;
static char mem_fail_site[256];
static int mem_ready, mem_rank_ok = 1;

/* The site as reported: the path from its "src/" on, so it is the same in
 * every build directory. */
static const char *mem_short(const char *site) {
  const char *s = strstr(site, "src/");
  return s ? s + 4 : site;
}

static void mem_write_report(void) {
  FILE *f = fopen(mem_report, "w");
  if (!f) return;
  fprintf(f, "%lu\n", mem_count);
  for (int i = 0; i < mem_nsites; i++)
    fprintf(f, "%s %lu\n", mem_short(mem_tab[mem_order[i]].site), mem_tab[mem_order[i]].count);
  fclose(f);
}

/* This process's MPI rank from the launcher's environment; -1 if none. */
static long mem_env_rank(void) {
  const char *names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    const char *v = getenv(names[i]);
    if (v && *v) return strtol(v, NULL, 10);
  }
  return -1;
}

static void mem_init(void) {
  mem_ready = 1;
  const char *k = getenv("NN_FAIL_ALLOC");
  if (k && *k) mem_fail_at = strtoul(k, NULL, 10);
  const char *s = getenv("NN_FAIL_SITE");
  if (s && *s) {
    snprintf(mem_fail_site, sizeof mem_fail_site, "%s", s);
    char *hash = strchr(mem_fail_site, '#');
    mem_fail_nth = 1;
    if (hash) {
      *hash = 0;
      mem_fail_nth = strtoul(hash + 1, NULL, 10);
    }
  }
  const char *r = getenv("NN_FAIL_RANK");
  if (r && *r) mem_rank_ok = mem_env_rank() == strtol(r, NULL, 10);
  mem_fired = getenv("NN_FAIL_FIRED");
  mem_report = getenv("NN_ALLOC_REPORT");
  if (mem_report && *mem_report) atexit(mem_write_report);
}

/* Counts one allocation at site; its count at that site (from 1). */
static unsigned long mem_count_site(const char *site) {
  size_t i = (size_t)(nn_fnv1a64(NN_FNV1A64_INIT, site, strlen(site)) % MEM_SITES);
  for (size_t probe = 0; probe < MEM_SITES; probe++, i = (i + 1) % MEM_SITES) {
    if (!mem_tab[i].site) {
      mem_tab[i].site = site;
      mem_order[mem_nsites++] = (int)i;
    } else if (mem_tab[i].site != site && strcmp(mem_tab[i].site, site) != 0) {
      continue;
    }
    return ++mem_tab[i].count;
  }
  return 0;
}

/* 1 if this allocation, made at site, is to fail. */
static int mem_fail(const char *site) {
  pthread_mutex_lock(&mem_lock);
  if (!mem_ready) mem_init();
  unsigned long nth = mem_count_site(site);
  int fail = ++mem_count == mem_fail_at;
  if (mem_fail_site[0] && nth == mem_fail_nth && strcmp(mem_short(site), mem_fail_site) == 0)
    fail = 1;
  fail = fail && mem_rank_ok;
  if (fail && mem_fired && *mem_fired) {
    FILE *f = fopen(mem_fired, "w");
    if (f) {
      fprintf(f, "%s\n", mem_short(site));
      fclose(f);
    }
  }
  pthread_mutex_unlock(&mem_lock);
  return fail;
}

unsigned long nn_mem_count(void) { return mem_count; }

void *nn_mem_alloc_at(size_t size, const char *site) { return mem_fail(site) ? NULL : malloc(size); }

void *nn_mem_calloc_at(size_t n, size_t size, const char *site) {
  return mem_fail(site) ? NULL : calloc(n, size);
}

void *nn_mem_realloc_at(void *p, size_t size, const char *site) {
  return mem_fail(site) ? NULL : realloc(p, size);
}

char *nn_mem_strdup_at(const char *s, const char *site) {
  if (mem_fail(site)) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  return d ? memcpy(d, s, n) : NULL;
}

void *(nn_malloc)(size_t size) { return nn_mem_alloc_at(size, "?"); }
void *(nn_calloc)(size_t n, size_t size) { return nn_mem_calloc_at(n, size, "?"); }
void *(nn_realloc)(void *p, size_t size) { return nn_mem_realloc_at(p, size, "?"); }
char *(nn_strdup)(const char *s) { return nn_mem_strdup_at(s, "?"); }
#else
/* ISO C forbids an empty translation unit. */
typedef int nn__mem_unused;
#endif
