/* test_alloc.c: the Slurm allocation read from an environment (coordinator/alloc.h):
 * every variable, fallbacks, malformed values, the BLAS thread rule and the log line. */
#include "coordinator/alloc.h"
#include "test.h"

static void test_outside_slurm(void) {
  const char *env[] = {"PATH=/usr/bin", "HOME=/root", NULL};
  nn_alloc a;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_alloc_parse(&a, env, &err));
  ASSERT_EQ_INT(a.in_slurm, 0);
  ASSERT_EQ_INT(a.ntasks, 0);
  ASSERT_EQ_INT(a.cpus_per_task, 0);
  ASSERT_EQ_INT(a.array_task_id, -1);
  ASSERT_EQ_INT(a.restart_count, 0);
  char line[256];
  ASSERT_STR_EQ(nn_alloc_describe(&a, 4, line, sizeof line), "");
  ASSERT_OK(nn_alloc_parse(&a, NULL, &err)); /* an empty environment */
  ASSERT_EQ_INT(a.in_slurm, 0);
}

static void test_full_allocation(void) {
  const char *env[] = {"SLURM_JOB_ID=123",
                       "SLURM_NTASKS=2",
                       "SLURM_NPROCS=7", /* a fallback: SLURM_NTASKS wins */
                       "SLURM_CPUS_PER_TASK=3",
                       "SLURM_JOB_NODELIST=node[1-2]",
                       "SLURM_ARRAY_TASK_ID=0",
                       "SLURM_RESTART_COUNT=1",
                       "SLURM_JOB_IDX=9", /* a longer name is not SLURM_JOB_ID */
                       NULL};
  nn_alloc a;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_alloc_parse(&a, env, &err));
  ASSERT_EQ_INT(a.in_slurm, 1);
  ASSERT_STR_EQ(a.job_id, "123");
  ASSERT_EQ_INT(a.ntasks, 2);
  ASSERT_EQ_INT(a.cpus_per_task, 3);
  ASSERT_STR_EQ(a.nodelist, "node[1-2]");
  ASSERT_EQ_INT(a.array_task_id, 0);
  ASSERT_EQ_INT(a.restart_count, 1);
  char line[256];
  ASSERT_STR_EQ(nn_alloc_describe(&a, 3, line, sizeof line),
                "slurm job 123 (array task 0, restart 1): 2 tasks x 3 cpus on node[1-2]; "
                "BLAS threads per rank: 3");
}

static void test_fallback_names_and_minimal(void) {
  const char *env[] = {"SLURM_JOB_ID=77", "SLURM_NPROCS=4", "SLURM_NODELIST=n01", NULL};
  nn_alloc a;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_alloc_parse(&a, env, &err));
  ASSERT_EQ_INT(a.ntasks, 4);
  ASSERT_STR_EQ(a.nodelist, "n01");
  ASSERT_EQ_INT(a.cpus_per_task, 0);
  ASSERT_EQ_INT(a.array_task_id, -1);
  char line[256];
  ASSERT_STR_EQ(nn_alloc_describe(&a, 1, line, sizeof line),
                "slurm job 77 (restart 0): 4 tasks on n01; BLAS threads per rank: 1");
  /* the example line of the brief */
  const char *env2[] = {"SLURM_JOB_ID=123", "SLURM_NTASKS=2", "SLURM_CPUS_PER_TASK=1",
                        "SLURM_RESTART_COUNT=1", NULL};
  ASSERT_OK(nn_alloc_parse(&a, env2, &err));
  ASSERT_STR_EQ(nn_alloc_describe(&a, 1, line, sizeof line),
                "slurm job 123 (restart 1): 2 tasks x 1 cpu; BLAS threads per rank: 1");
  /* a tiny buffer is truncated, still terminated */
  char small[8];
  nn_alloc_describe(&a, 1, small, sizeof small);
  ASSERT_EQ_INT(strlen(small), 7);
}

static void test_malformed(void) {
  struct {
    const char *var;
    const char *name;
  } bad[] = {
      {"SLURM_NTASKS=abc", "SLURM_NTASKS"},
      {"SLURM_NTASKS=0", "SLURM_NTASKS"},
      {"SLURM_NTASKS=-2", "SLURM_NTASKS"},
      {"SLURM_NTASKS= 2", "SLURM_NTASKS"},
      {"SLURM_CPUS_PER_TASK=2x", "SLURM_CPUS_PER_TASK"},
      {"SLURM_CPUS_PER_TASK=99999999999", "SLURM_CPUS_PER_TASK"},
      {"SLURM_ARRAY_TASK_ID=", "SLURM_ARRAY_TASK_ID"},
      {"SLURM_RESTART_COUNT=-1", "SLURM_RESTART_COUNT"},
      {"SLURM_JOB_ID=12a", "SLURM_JOB_ID"},
      {"SLURM_JOB_ID=", "SLURM_JOB_ID"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *env[] = {"SLURM_JOB_ID=5", bad[i].var, NULL};
    if (!strncmp(bad[i].var, "SLURM_JOB_ID=", 13)) env[0] = "PATH=/bin";
    nn_alloc a;
    nn_error err;
    nn_error_clear(&err);
    int rc = nn_alloc_parse(&a, env, &err);
    if (rc != NN_EINVAL) NN__FAIL("%s: expected NN_EINVAL, got %d", bad[i].var, rc);
    if (!strstr(err.msg, bad[i].name) || !strstr(err.msg, "expected"))
      NN__FAIL("%s: message '%s' does not name the variable and what was expected",
               bad[i].var, err.msg);
    /* the malformed field keeps its unknown value */
    ASSERT_EQ_INT(a.ntasks, 0);
    ASSERT_EQ_INT(a.cpus_per_task, 0);
    ASSERT_EQ_INT(a.array_task_id, -1);
  }
  /* a malformed variable hides nothing else: the job is still seen as Slurm's */
  const char *env[] = {"SLURM_NTASKS=abc", "SLURM_JOB_ID=5", "SLURM_CPUS_PER_TASK=2", NULL};
  nn_alloc a;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_alloc_parse(&a, env, &err), NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "SLURM_NTASKS");
  ASSERT_EQ_INT(a.in_slurm, 1);
  ASSERT_STR_CONTAINS(a.job_id, "5");
  ASSERT_EQ_INT(a.cpus_per_task, 2);
  ASSERT_EQ_INT(a.ntasks, 0);
}

static void test_blas_threads(void) {
  nn_alloc a;
  nn_error err;
  nn_error_clear(&err);
  const char *in[] = {"SLURM_JOB_ID=1", "SLURM_CPUS_PER_TASK=3", NULL};
  const char *out[] = {"HOME=/", NULL};
  ASSERT_OK(nn_alloc_parse(&a, in, &err));
  ASSERT_EQ_INT(nn_alloc_blas_threads(&a, 5, 2, 8), 5); /* run.threads wins */
  ASSERT_EQ_INT(nn_alloc_blas_threads(&a, 0, 2, 8), 3); /* then Slurm's CPUs per task */
  ASSERT_OK(nn_alloc_parse(&a, out, &err));
  ASSERT_EQ_INT(nn_alloc_blas_threads(&a, 0, 2, 8), 4); /* then cores / local ranks */
  ASSERT_EQ_INT(nn_alloc_blas_threads(&a, 0, 3, 8), 2);
  ASSERT_EQ_INT(nn_alloc_blas_threads(&a, 0, 4, 2), 1); /* at least one */
  ASSERT_EQ_INT(nn_alloc_blas_threads(&a, 0, 0, -1), 1);
  ASSERT_EQ_INT(nn_alloc_blas_threads(NULL, 0, 1, 6), 6);
}

TEST_MAIN(TEST(test_outside_slurm), TEST(test_full_allocation),
          TEST(test_fallback_names_and_minimal), TEST(test_malformed), TEST(test_blas_threads))
