/* shard2txt: print a shard's samples as text, through nntrain's own reader
 * (the tests' stand-in for h5py, which the test machine may lack).
 *   shard2txt GLOB        -> first line "N K classes target_dim", then one
 *                            line per sample: its label (or targets), then
 *                            its K feature values (%.9g), in data order. */
#include <stdio.h>
#include <stdlib.h>

#include "worker/dataset.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: shard2txt GLOB\n");
    return 2;
  }
  nn_error err;
  nn_error_clear(&err);
  nn_dataset *ds = NULL;
  if (nn_dataset_open(&ds, argv[1], NULL, &err)) {
    fprintf(stderr, "shard2txt: %s: %s\n", err.file, err.msg);
    return 1;
  }
  const nn_dataset_info *di = nn_dataset_get_info(ds);
  size_t k = nn_shape_count(&di->sample);
  int T = di->target_dim;
  float *x = malloc(sizeof(float) * k), *t = malloc(sizeof(float) * (size_t)(T + 1));
  int32_t lab = 0;
  int rc = !x || !t;
  printf("%lld %zu %d %d\n", (long long)di->n, k, di->num_classes, T);
  for (int64_t i = 0; i < di->n && !rc; i++) {
    rc = nn_dataset_read(ds, &i, 1, x, di->num_classes ? &lab : NULL, T ? t : NULL, &err);
    if (rc) break;
    if (di->num_classes) printf("%d", lab);
    for (int j = 0; j < T; j++) printf("%s%.9g", j ? " " : "", t[j]);
    for (size_t j = 0; j < k; j++) printf(" %.9g", x[j]);
    printf("\n");
  }
  if (rc) fprintf(stderr, "shard2txt: %s\n", err.msg);
  free(x);
  free(t);
  nn_dataset_close(ds);
  return rc ? 1 : 0;
}
