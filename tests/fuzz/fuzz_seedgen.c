/* fuzz_seedgen.c: writes binary seed inputs for fuzz_proto (not a fuzzer).
 *   fuzz_seedgen jobspec JOB.toml OUT   byte 0, then the job's packed JobSpec
 *   fuzz_seedgen epoch OUT              byte 1, then an EpochControl message
 * Used by tests/fuzz/seeds.sh, so no binary seed is committed. */
#include "coordinator/job.h"
#include "core/mem.h"
#include "nntrain.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_seed(const char *out, uint8_t tag, const uint8_t *buf, size_t len) {
  FILE *f = fopen(out, "wb");
  if (!f || fputc(tag, f) == EOF || fwrite(buf, 1, len, f) != len) {
    fprintf(stderr, "fuzz_seedgen: cannot write %s\n", out);
    if (f) fclose(f);
    return 1;
  }
  return fclose(f) != 0;
}

static int jobspec(const char *toml, const char *out) {
  static nn_job job;
  nn_error err;
  nn_error_clear(&err);
  uint8_t *buf = NULL;
  size_t len = 0;
  if (nn_job_load(&job, toml, NULL, 0, &err) || nn_job_pack(&job, &buf, &len, &err)) {
    char msg[1024];
    fprintf(stderr, "fuzz_seedgen: %s\n", nn_error_format(&err, msg, sizeof msg));
    return 1;
  }
  int rc = write_seed(out, 0, buf, len);
  free(buf);
  return rc;
}

static int epoch(const char *out) {
  Nntrain__EpochControl c = NNTRAIN__EPOCH_CONTROL__INIT;
  c.stop = 1;
  c.improved = 1;
  c.plateau_scale = 0.5;
  c.plateau_best = 0.25;
  c.plateau_bad = 2;
  c.plateau_cooldown = 1;
  c.es_best = 0.875;
  c.es_bad = 3;
  c.es_best_epoch = 4;
  c.monitored = 0.9;
  uint8_t buf[256];
  size_t len = nntrain__epoch_control__pack(&c, buf);
  return write_seed(out, 1, buf, len);
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "jobspec")) return jobspec(argv[2], argv[3]);
  if (argc == 3 && !strcmp(argv[1], "epoch")) return epoch(argv[2]);
  fprintf(stderr, "usage: fuzz_seedgen jobspec JOB.toml OUT | epoch OUT\n");
  return 2;
}
