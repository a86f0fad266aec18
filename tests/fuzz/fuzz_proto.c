/* fuzz_proto.c: libFuzzer target for the protobuf messages a rank receives:
 * the JobSpec (nn_job_unpack, src/coordinator/job_pack.c: a broadcast or a
 * checkpoint's spec) and the EpochControl message (unpacked with
 * nntrain__epoch_control__unpack in src/coordinator/run/decide.c).
 * Input: byte 0 selects the message (even: JobSpec, odd: EpochControl), the
 * rest is the message. Checks: no memory error, UB or leak; a JobSpec that
 * unpacks packs again and unpacks to an equal job. Seeds: packed jobs/ *.toml
 * and EpochControl messages (fuzz_seedgen, tests/fuzz/seeds.sh). */
#include "coordinator/job.h"
#include "fuzz_util.h"
#include "nntrain.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_jobspec(const uint8_t *data, size_t size) {
  static nn_job job, back;
  nn_error err;
  nn_error_clear(&err);
  memset(&job, 0, sizeof job);
  if (nn_job_unpack(&job, data, size, &err) != 0) {
    FUZZ_CHECK(err.code != 0);
    return;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  if (nn_job_pack(&job, &buf, &len, &err) != 0) return;
  memset(&back, 0, sizeof back);
  int rc = nn_job_unpack(&back, buf, len, &err);
  if (rc != 0) fprintf(stderr, "unpack of a repacked job failed: %s\n", err.msg);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(nn_job_equal(&job, &back));
  free(buf);
}

static void fuzz_epoch_control(const uint8_t *data, size_t size) {
  Nntrain__EpochControl *m = nntrain__epoch_control__unpack(NULL, size, data);
  if (!m) return;
  /* What decide.c reads: every field, as it copies them. */
  volatile double sink = m->plateau_scale + m->plateau_best + m->es_best + m->monitored;
  sink += (double)(m->stop + m->improved + m->plateau_bad + m->plateau_cooldown + m->es_bad +
                   m->es_best_epoch);
  (void)sink;
  nntrain__epoch_control__free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1)
    fuzz_epoch_control(data + 1, size - 1);
  else
    fuzz_jobspec(data + 1, size - 1);
  return 0;
}
