/* job_test.h: what the job-file tests (test_job*.c) share: two job structs
 * (too large for the stack), parsing a job text as "job.toml" with --set
 * overrides, and an error formatted into one static buffer. */
#ifndef NN_TESTS_JOB_TEST_H
#define NN_TESTS_JOB_TEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job.h"
#include "nntrain.pb-c.h"

static nn_job job_a, job_b; /* large: not on the stack */
static char fmt_buf[1024];  /* fmt's result; overwritten by the next call */

/* Parse text (file name "job.toml") with nsets --set overrides into job;
 * err is cleared first. The nn_job_parse status. */
static int parse(nn_job *job, const char *text, const char *const *sets, int nsets,
                 nn_error *err) {
  nn_error_clear(err);
  return nn_job_parse(job, text, strlen(text), "job.toml", sets, nsets, err);
}

/* Pack job_a, let edit change a copy of the decoded JobSpec message (edit may
 * point fields at its own static storage; the decoded message keeps what it
 * owns), pack that and unpack it into job_b: the status, the error in *err
 * (-1: the message did not decode or out of memory). */
__attribute__((unused)) static int unpack_edited_job(void (*edit)(Nntrain__JobSpec *),
                                                   nn_error *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = nn_job_pack(&job_a, &buf, &len, err);
  if (rc) return rc;
  Nntrain__JobSpec *m = nntrain__job_spec__unpack(NULL, len, buf);
  free(buf);
  if (!m) return -1;
  Nntrain__JobSpec copy = *m;
  edit(&copy);
  len = nntrain__job_spec__get_packed_size(&copy);
  buf = malloc(len ? len : 1);
  if (buf) nntrain__job_spec__pack(&copy, buf);
  nntrain__job_spec__free_unpacked(m, NULL);
  if (!buf) return -1;
  nn_error_clear(err);
  rc = nn_job_unpack(&job_b, buf, len, err);
  free(buf);
  return rc;
}

/* e as nn_error_format prints it (file:line:col: message), in fmt_buf. */
static const char *fmt(const nn_error *e) { return nn_error_format(e, fmt_buf, sizeof fmt_buf); }

#endif
