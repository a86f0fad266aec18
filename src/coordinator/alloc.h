/* alloc.h: the batch system's allocation, as the environment describes it.
 *
 * Under Slurm every task inherits SLURM_* variables (job id, tasks, CPUs per
 * task, node list, array index, restart count); Open MPI adds the number of
 * ranks on this node. nntrain reads them once at start to log where it runs
 * and to pick the BLAS thread count when run.threads = 0. Nothing here talks
 * to Slurm: outside an allocation the struct says "not in Slurm" and every
 * count is 0 (unknown). See docs/slurm.md. */
#ifndef NN_COORDINATOR_ALLOC_H
#define NN_COORDINATOR_ALLOC_H

#include "core/err.h"

typedef struct nn_alloc {
  int in_slurm;            /* 1 if SLURM_JOB_ID is set */
  char job_id[32];         /* SLURM_JOB_ID as given ("" outside Slurm) */
  int ntasks;              /* SLURM_NTASKS (or SLURM_NPROCS); 0: unknown */
  int cpus_per_task;       /* SLURM_CPUS_PER_TASK; 0: unknown (not requested) */
  char nodelist[256];      /* SLURM_JOB_NODELIST (or SLURM_NODELIST), truncated; "" unknown */
  int array_task_id;       /* SLURM_ARRAY_TASK_ID; -1: not an array job */
  int restart_count;       /* SLURM_RESTART_COUNT: times the job was requeued; 0 if unset */
} nn_alloc;

/* Fill *a from an environment given as "NAME=VALUE" strings (envp ends with
 * NULL, like environ). Variables that are absent leave their field at its
 * "unknown" value. A variable that is present but malformed (SLURM_NTASKS=abc)
 * returns NN_EINVAL naming the first such one and what was expected; its field
 * keeps "unknown" and every other variable is still read, so a caller may warn
 * and go on. */
int nn_alloc_parse(nn_alloc *a, const char *const *envp, nn_error *err);

/* nn_alloc_parse on this process's environment. */
int nn_alloc_detect(nn_alloc *a, nn_error *err);

/* The BLAS thread count per rank: job_threads when > 0; else Slurm's CPUs per
 * task when known; else the node's `cores` divided by `local_ranks` (at least
 * 1). A pure function: the CLI's log line and the run use the same answer. */
int nn_alloc_blas_threads(const nn_alloc *a, int job_threads, int local_ranks, long cores);

/* One line describing the allocation, without a newline, e.g.
 * "slurm job 123 (restart 1): 2 tasks x 1 cpu on node[1-2]; BLAS threads per rank: 1".
 * Writes "" outside Slurm. Returns buf (always NUL-terminated). */
char *nn_alloc_describe(const nn_alloc *a, int blas_threads, char *buf, size_t n);

#endif
