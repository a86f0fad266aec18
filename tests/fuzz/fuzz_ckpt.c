/* fuzz_ckpt.c: libFuzzer target for the checkpoint reader
 * (src/coordinator/checkpoint/). Input: an HDF5 file image, written to a
 * scratch file and read the way `nntrain inspect` and --resume do:
 * nn_ckpt_read (format, version, checksum, structure), then the job in its
 * spec (nn_job_unpack), every /state field as text and every tensor's range.
 * Checks: no memory error, UB or leak (HDF5 identifiers counted too:
 * fuzz_util.h); a checkpoint that reads has 1 ..
 * NN_CKPT_MAX_REPLICAS replicas whose tensors lie inside the parameters.
 * Seeds: checkpoints of a tiny training run (tests/fuzz/seeds.sh). */
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "worker/h5io.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch_replica(const nn_ckpt_replica *r) {
  volatile float s = 0;
  for (size_t i = 0; i < r->nparams; i++) s += r->params[i];
  for (size_t i = 0; i < r->nbuffers; i++) s += r->buffers[i];
  for (size_t i = 0; i < (size_t)r->nslots * r->ntrainable; i++) s += r->slots[i];
  (void)s;
  FUZZ_CHECK(r->ntrainable <= r->nparams);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  static nn_job job;
  static long ids;
  if (!init) {
    nn_h5_quiet();
    ids = fuzz_h5_ids();
    init = 1;
  }
  const char *path = fuzz_write_tmp(data, size, "ckpt.h5");
  if (!path) return 0;
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  nn_error err;
  nn_error_clear(&err);
  if (nn_ckpt_read(path, &s, &err) != 0) {
    FUZZ_CHECK(err.code != 0);
    FUZZ_CHECK(fuzz_h5_ids() == ids);
    nn_ckpt_snapshot_free(&s);
    return 0;
  }
  FUZZ_CHECK(s.nreplicas >= 1 && s.nreplicas <= NN_CKPT_MAX_REPLICAS);
  for (int i = 0; i < s.nreplicas; i++) touch_replica(&s.rep[i]);
  memset(&job, 0, sizeof job);
  nn_error_clear(&err);
  (void)nn_job_unpack(&job, s.spec, s.spec_len, &err);
  char buf[64];
  for (const nn_ckpt_field *f = nn_ckpt_state_fields(); f->name; f++)
    (void)nn_ckpt_field_str(&s.state, f, buf, sizeof buf);
  (void)nn_ckpt_checksum(&s);
  nn_ckpt_snapshot_free(&s);
  FUZZ_CHECK(fuzz_h5_ids() == ids);
  return 0;
}
