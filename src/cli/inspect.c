/* inspect.c: `nntrain inspect FILE.h5`: print what an nntrain HDF5 file holds.
 *
 * The root attribute "format" says what kind of file it is; each kind has
 * one entry in `kinds` (name, printer). Shards ("nntrain-shard") are
 * handled here; another kind (e.g. checkpoints) is added by writing its
 * printer and adding a row to the table. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "worker/dataset.h"

#define INSPECT_MAX_CHANNELS_SHOWN 8

static void print_doubles(const char *label, const double *v, int n) {
  printf("%-15s", label);
  int shown = n < INSPECT_MAX_CHANNELS_SHOWN ? n : INSPECT_MAX_CHANNELS_SHOWN;
  for (int i = 0; i < shown; i++) printf("%s%.6g", i ? " " : "", v[i]);
  if (shown < n) printf(" ... (%d channels)", n);
  printf("\n");
}

static void shape_text(const nn_shape *s, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", s->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Print a data shard: description, statistics, storage, label histogram. */
static int inspect_shard(const char *path, nn_error *err) {
  nn_shard_desc d;
  nn_dataset *ds = NULL;
  int64_t *hist = NULL;
  int rc = nn_shard_describe(path, &d, err);
  if (rc) return rc;
  if ((rc = nn_dataset_open(&ds, path, NULL, err))) return rc;
  const nn_dataset_info *info = nn_dataset_get_info(ds);
  char shp[64];
  shape_text(&info->sample, shp, sizeof shp);
  printf("%-15s%s\n", "file", path);
  printf("%-15s%s, version %d\n", "format", d.format, d.version);
  printf("%-15s%s (shard %d of %d)\n", "split", d.split, d.shard_index + 1, d.shard_count);
  printf("%-15s%s\n", "source", d.source);
  printf("%-15s%lld\n", "samples", (long long)info->n);
  printf("%-15s%s\n", "sample shape", shp);
  printf("%-15s%s\n", "type", info->ftype == NN_FEAT_U8 ? "uint8" : "float32");
  if (info->num_classes > 0)
    printf("%-15s%d\n", "classes", info->num_classes);
  else
    printf("%-15s0 (regression, %d target%s)\n", "classes", info->target_dim,
           info->target_dim == 1 ? "" : "s");
  double inv = 1.0 / info->feature_scale;
  if (fabs(inv - round(inv)) < 1e-9 && inv > 1.5)
    printf("%-15s%.9g (1/%.0f)\n", "feature_scale", info->feature_scale, inv);
  else
    printf("%-15s%.9g\n", "feature_scale", info->feature_scale);
  print_doubles("mean", info->mean, info->channels);
  print_doubles("std", info->std, info->channels);
  char chunk[96] = "contiguous (not chunked)";
  if (d.chunk_ndim > 0) {
    size_t k = (size_t)snprintf(chunk, sizeof chunk, "chunks [");
    for (int i = 0; i < d.chunk_ndim && k < sizeof chunk; i++)
      k += (size_t)snprintf(chunk + k, sizeof chunk - k, "%s%lld", i ? ", " : "",
                            (long long)d.chunk[i]);
    if (k < sizeof chunk) snprintf(chunk + k, sizeof chunk - k, "]");
  }
  char comp[64] = "uncompressed";
  if (d.deflate >= 0)
    snprintf(comp, sizeof comp, "deflate %d%s", d.deflate, d.shuffle ? " + shuffle" : "");
  printf("%-15s%s, %s; %.2f MB raw, %.2f MB stored (%.1fx)\n", "/features", chunk, comp,
         (double)d.raw_bytes / 1e6, (double)d.stored_bytes / 1e6,
         d.stored_bytes > 0 ? (double)d.raw_bytes / (double)d.stored_bytes : 0.0);
  if (info->num_classes > 0) {
    hist = calloc((size_t)info->num_classes, sizeof *hist);
    if (!hist) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    const int32_t *lab = nn_dataset_labels(ds);
    for (int64_t i = 0; i < info->n; i++) hist[lab[i]]++;
    printf("labels         class: count\n");
    for (int c = 0; c < info->num_classes; c++)
      printf("  %12d: %lld (%.1f%%)\n", c, (long long)hist[c],
             info->n ? 100.0 * (double)hist[c] / (double)info->n : 0.0);
  } else {
    const float *t = nn_dataset_targets(ds);
    int T = info->target_dim;
    printf("targets        dim: min / mean / max\n");
    for (int j = 0; j < T; j++) {
      double lo = INFINITY, hi = -INFINITY, sum = 0;
      for (int64_t i = 0; i < info->n; i++) {
        double v = t[i * T + j];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
      }
      printf("  %12d: %.6g / %.6g / %.6g\n", j, lo, info->n ? sum / (double)info->n : 0.0, hi);
    }
  }
cleanup:
  free(hist);
  nn_dataset_close(ds);
  return rc;
}

/* Kinds of nntrain HDF5 file, by their "format" attribute. */
typedef struct inspect_kind {
  const char *format;
  int (*print)(const char *path, nn_error *err);
} inspect_kind;

static const inspect_kind kinds[] = {
  {NN_SHARD_FORMAT, inspect_shard},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain inspect FILE.h5\n\n"
          "Print what an nntrain HDF5 file holds. For a data shard: format, split, source,\n"
          "sample shape and type, sample count, classes, feature_scale, mean/std, the\n"
          "chunking and compression of /features, and a per-class label histogram.\n"
          "Exit code 4 if the file is missing, not HDF5, or not an nntrain file.\n");
}

int nn_cmd_inspect(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    help(stdout);
    return NN_EXIT_OK;
  }
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1] != '\0')
      return nn_cli_usage_error("inspect", "unknown option '%s'", argv[i]);
    if (path) return nn_cli_usage_error("inspect", "expected one FILE, got '%s' too", argv[i]);
    path = argv[i];
  }
  if (!path) return nn_cli_usage_error("inspect", "expected a FILE.h5");
  nn_error err;
  nn_error_clear(&err);
  char fmt[64];
  int rc = nn_h5_format(path, fmt, sizeof fmt, &err);
  if (rc) {
    if (rc == NN_EDATA && !strcmp(err.where, "format"))
      nn_error_at(&err, NN_EDATA, path, 0, 0,
                  "an HDF5 file without a 'format' attribute: not an nntrain file");
    return nn_cli_fail(&err);
  }
  for (size_t i = 0; i < NKINDS; i++) {
    if (strcmp(fmt, kinds[i].format) != 0) continue;
    rc = kinds[i].print(path, &err);
    return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
  }
  char known[256];
  size_t k = 0;
  known[0] = '\0';
  for (size_t i = 0; i < NKINDS && k < sizeof known; i++)
    k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", kinds[i].format);
  nn_error_at(&err, NN_EDATA, path, 0, 0, "format '%s' is not one inspect knows (%s)", fmt, known);
  return nn_cli_fail(&err);
}
