/* alloc.c: the batch system's allocation from the environment (see alloc.h).
 *
 * A table names each variable, the field it fills and the smallest value it
 * may take; parsing walks the table in order. No state, no I/O: the caller
 * passes the environment, so tests give their own. */
#include "coordinator/alloc.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* How one variable is read. */
enum { KIND_INT, KIND_ID, KIND_TEXT };

typedef struct var_rule {
  const char *name;   /* environment variable */
  int kind;           /* KIND_INT: whole number >= min; KIND_ID: digits (job id); KIND_TEXT */
  int min;            /* smallest accepted value (KIND_INT) */
  int unset;          /* the field's "unknown" value (KIND_INT) */
  size_t offset;      /* field in nn_alloc (int, or char[] for ID/TEXT) */
  size_t size;        /* char[] field size (ID/TEXT) */
} var_rule;

#define INT_FIELD(name, min, unset, field) \
  {name, KIND_INT, min, unset, offsetof(nn_alloc, field), 0}
#define STR_FIELD(name, kind, field) \
  {name, kind, 0, 0, offsetof(nn_alloc, field), sizeof(((nn_alloc *)0)->field)}

/* Later entries for the same field are fallbacks: read only if the field is
 * still unknown (older Slurm spells SLURM_NTASKS as SLURM_NPROCS). */
static const var_rule rules[] = {
    STR_FIELD("SLURM_JOB_ID", KIND_ID, job_id),
    INT_FIELD("SLURM_NTASKS", 1, 0, ntasks),
    INT_FIELD("SLURM_NPROCS", 1, 0, ntasks),
    INT_FIELD("SLURM_CPUS_PER_TASK", 1, 0, cpus_per_task),
    STR_FIELD("SLURM_JOB_NODELIST", KIND_TEXT, nodelist),
    STR_FIELD("SLURM_NODELIST", KIND_TEXT, nodelist),
    INT_FIELD("SLURM_ARRAY_TASK_ID", 0, -1, array_task_id),
    INT_FIELD("SLURM_RESTART_COUNT", 0, 0, restart_count),
};

/* The value of `name` in envp (first match, as getenv), or NULL. */
static const char *env_lookup(const char *const *envp, const char *name) {
  size_t n = strlen(name);
  for (; envp && *envp; envp++)
    if (!strncmp(*envp, name, n) && (*envp)[n] == '=') return *envp + n + 1;
  return NULL;
}

/* Parse a whole decimal number in [min, INT_MAX] (spaces around it are not
 * accepted: Slurm never writes them). Returns 0 or -1. */
static int parse_int(const char *s, int min, int *out) {
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end != '\0' || errno == ERANGE || v < min || v > INT_MAX) return -1;
  *out = (int)v;
  return 0;
}

int nn_alloc_parse(nn_alloc *a, const char *const *envp, nn_error *err) {
  memset(a, 0, sizeof *a);
  a->array_task_id = -1;
  char *base = (char *)a;
  int rc = 0; /* the first bad variable; the others are still read */
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    const var_rule *r = &rules[i];
    const char *v = env_lookup(envp, r->name);
    if (!v) continue;
    if (r->kind == KIND_INT) {
      int *field = (int *)(void *)(base + r->offset);
      if (*field != r->unset) continue; /* a fallback, and the main name was set */
      if (parse_int(v, r->min, field) != 0) {
        *field = r->unset;
        if (!rc)
          rc = nn_error_set(err, NN_EINVAL,
                            "environment variable %s='%.64s': expected a whole number >= %d",
                            r->name, v, r->min);
      }
    } else {
      char *field = base + r->offset;
      if (field[0]) continue;
      size_t len = strlen(v);
      if (r->kind == KIND_ID &&
          (len == 0 || len >= r->size || strspn(v, "0123456789") != len)) {
        if (!rc)
          rc = nn_error_set(err, NN_EINVAL,
                            "environment variable %s='%.64s': expected a job number", r->name,
                            v);
        continue;
      }
      snprintf(field, r->size, "%s", v);
    }
  }
  a->in_slurm = a->job_id[0] != '\0';
  return rc;
}

int nn_alloc_detect(nn_alloc *a, nn_error *err) {
  return nn_alloc_parse(a, (const char *const *)environ, err);
}

int nn_alloc_blas_threads(const nn_alloc *a, int job_threads, int local_ranks, long cores) {
  if (job_threads > 0) return job_threads;
  if (a && a->cpus_per_task > 0) return a->cpus_per_task;
  if (local_ranks < 1) local_ranks = 1;
  long t = (cores > 0 ? cores : 1) / local_ranks;
  return t < 1 ? 1 : t > INT_MAX ? INT_MAX : (int)t;
}

char *nn_alloc_describe(const nn_alloc *a, int blas_threads, char *buf, size_t n) {
  if (!n) return buf;
  buf[0] = '\0';
  if (!a->in_slurm) return buf;
  /* "2 tasks x 1 cpu"; a count Slurm did not give is left out */
  char tasks[32] = "tasks unknown", cpus[32] = "", array[32] = "";
  if (a->ntasks > 0)
    snprintf(tasks, sizeof tasks, "%d task%s", a->ntasks, a->ntasks == 1 ? "" : "s");
  if (a->cpus_per_task > 0)
    snprintf(cpus, sizeof cpus, " x %d cpu%s", a->cpus_per_task,
             a->cpus_per_task == 1 ? "" : "s");
  if (a->array_task_id >= 0) snprintf(array, sizeof array, "array task %d, ", a->array_task_id);
  snprintf(buf, n, "slurm job %s (%srestart %d): %s%s%s%s; BLAS threads per rank: %d",
           a->job_id, array, a->restart_count, tasks, cpus, a->nodelist[0] ? " on " : "",
           a->nodelist, blas_threads);
  return buf;
}
