/* job_test.h: what the job-file tests (test_job*.c) share: two job structs
 * (too large for the stack), parsing a job text as "job.toml" with --set
 * overrides, and an error formatted into one static buffer. */
#ifndef NN_TESTS_JOB_TEST_H
#define NN_TESTS_JOB_TEST_H

#include <string.h>

#include "coordinator/job.h"

static nn_job job_a, job_b; /* large: not on the stack */
static char fmt_buf[1024];  /* fmt's result; overwritten by the next call */

/* Parse text (file name "job.toml") with nsets --set overrides into job;
 * err is cleared first. The nn_job_parse status. */
static int parse(nn_job *job, const char *text, const char *const *sets, int nsets,
                 nn_error *err) {
  nn_error_clear(err);
  return nn_job_parse(job, text, strlen(text), "job.toml", sets, nsets, err);
}

/* e as nn_error_format prints it (file:line:col: message), in fmt_buf. */
static const char *fmt(const nn_error *e) { return nn_error_format(e, fmt_buf, sizeof fmt_buf); }

#endif
