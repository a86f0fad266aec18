/* fuzz_job.c: libFuzzer target for the job schema: TOML text -> nn_job
 * (nn_job_parse, src/coordinator/job.c), then the JobSpec round trip.
 * Input: the text of a job file. Checks: no memory error, UB or leak; a job
 * that parses packs (nn_job_pack), unpacks (nn_job_unpack) and compares
 * equal to itself (nn_job_equal). Seeds: jobs/ *.toml and tests/toml. */
#include "coordinator/job.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static nn_job job, back; /* large structs: not on the stack */
  nn_error err;
  nn_error_clear(&err);
  memset(&job, 0, sizeof job);
  if (nn_job_parse(&job, (const char *)data, size, "fuzz.toml", NULL, 0, &err) != 0) {
    FUZZ_CHECK(err.code != 0);
    return 0;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  if (nn_job_pack(&job, &buf, &len, &err) != 0) return 0;
  memset(&back, 0, sizeof back);
  int rc = nn_job_unpack(&back, buf, len, &err);
  if (rc != 0) fprintf(stderr, "unpack of a packed job failed: %s\n", err.msg);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(nn_job_equal(&job, &back));
  free(buf);
  return 0;
}
