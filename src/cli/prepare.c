/* prepare.c: `nntrain prepare`: convert a data set into HDF5 shards.
 *
 *   nntrain prepare fashion-mnist --out DIR [--shards K] [--source DIR] [--force]
 *                                 [--classes LIST] [--limit N]
 *   nntrain prepare idx IMAGES LABELS --out DIR [--split NAME] [--shards K]
 *                       [--classes N] [--stats SHARD]
 *   nntrain prepare csv FILE --label COLUMN --out DIR [--split NAME] [--shards K]
 *                       [--classes N | --regression] [--stats SHARD]
 *   nntrain prepare csv FILE --multilabel COL,COL,... --out DIR [...]
 *   nntrain prepare lines FILE... --out DIR [...]   (prepare_seq.c)
 *   nntrain prepare text FILE... --out DIR [...]    (prepare_seq.c)
 *   nntrain prepare vectors VECTORS.txt --vocab VOCAB.txt --layer NAME
 *                           --out FILE.h5 [...]     (prepare_vec.c)
 *
 * Every source ends in the same place: an in-memory array of samples
 * (a `prep_set`) that write_split cuts into K contiguous shards named
 * DIR/SPLIT-000.h5 ... The shard format is in worker/dataset.h and
 * docs/data-format.md. This file parses flags, reads sources, and prints;
 * the HDF5 work is in worker/dataset.c. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "cli/cli.h"
#include "cli/prepare.h"
#include "core/mem.h"
#include "worker/csv.h"
#include "worker/dataset.h"
#include "worker/fsutil.h"
#include "worker/idx.h"

#define FMNIST_DEFAULT_SOURCE "/usr/share/datasets/fashion-mnist"
#define FMNIST_PACKAGE "dataset-fashion-mnist"
#define PREP_MAX_SHARDS 1000

/* ---- flags -------------------------------------------------------------- */


/* Parse argv[first..] into flags and up to max_pos positionals. Returns 0 or
 * an exit code (usage error already printed). */
int nn__prep_parse_flags(const char *cmd, int argc, char **argv, int first, const prep_flag *flags,
                       int nflags, const char **pos, int max_pos, int *npos) {
  *npos = 0;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] == '-' && a[1] == '-') {
      const char *eq = strchr(a, '=');
      size_t len = eq ? (size_t)(eq - a) : strlen(a);
      int found = 0;
      for (int f = 0; f < nflags; f++) {
        if (strlen(flags[f].name) != len || strncmp(flags[f].name, a, len) != 0) continue;
        found = 1;
        if (flags[f].has_value) {
          if (eq) {
            *flags[f].dst = eq + 1;
          } else if (i + 1 < argc) {
            *flags[f].dst = argv[++i];
          } else {
            return nn_cli_usage_error(cmd, "%s needs a value", flags[f].name);
          }
        } else {
          if (eq) return nn_cli_usage_error(cmd, "%s takes no value", flags[f].name);
          *flags[f].dst = "1";
        }
        break;
      }
      if (!found) return nn_cli_usage_error(cmd, "unknown option '%.*s'", (int)len, a);
    } else if (a[0] == '-' && a[1] != '\0') {
      return nn_cli_usage_error(cmd, "unknown option '%s'", a);
    } else {
      if (*npos == max_pos) return nn_cli_usage_error(cmd, "unexpected argument '%s'", a);
      pos[(*npos)++] = a;
    }
  }
  return 0;
}

/* Parse a positive integer flag value in [lo, hi]. */
int nn__prep_parse_int(const char *cmd, const char *flag, const char *v, int lo, int hi,
                          int *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi)
    return nn_cli_usage_error(cmd, "%s '%s': expected a whole number from %d to %d", flag, v, lo,
                              hi);
  *out = (int)x;
  return 0;
}

int nn__prep_parse_fraction(const char *cmd, const char *flag, const char *v, int zero_ok,
                            double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !(zero_ok ? x >= 0 : x > 0) || !(x < 1))
    return nn_cli_usage_error(cmd, "%s '%s': expected a number in %s0, 1)", flag, v,
                              zero_ok ? "[" : "(");
  *out = x;
  return 0;
}

/* ---- the common writer ------------------------------------------------- */


/* First sample of shard i of k: shards are contiguous, sizes differ by <= 1. */
static int64_t shard_begin(int64_t n, int k, int i) { return n * i / k; }

static void shape_text(const nn_shape *s, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", s->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

static int shape_eq(const nn_shape *a, const nn_shape *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

static void shard_path(char *buf, size_t n, const char *dir, const char *split, int i) {
  snprintf(buf, n, "%s/%s-%03d.h5", dir, split, i);
}

/* Remove DIR/SPLIT-NNN.h5 with NNN >= k (left from a run with more shards),
 * so a glob over the split sees only this run's files. */
static int remove_stale(const char *dir, const char *split, int k, nn_error *err) {
  DIR *d = opendir(dir);
  if (!d) return nn_error_at(err, NN_EIO, dir, 0, 0, "cannot list: %s", strerror(errno));
  size_t sl = strlen(split);
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d))) {
    const char *nm = e->d_name;
    if (strncmp(nm, split, sl) != 0 || nm[sl] != '-') continue;
    const char *num = nm + sl + 1;
    char *end;
    long idx = strtol(num, &end, 10);
    if (end != num + 3 || strcmp(end, ".h5") != 0 || idx < k) continue;
    char p[4352];
    snprintf(p, sizeof p, "%s/%s", dir, nm);
    if (remove(p) != 0) {
      rc = nn_error_at(err, NN_EIO, p, 0, 0, "cannot remove a stale shard: %s", strerror(errno));
      break;
    }
    printf("removed %s (stale shard from an earlier run with more shards)\n", p);
  }
  closedir(d);
  return rc;
}

static void fmt_bytes(double b, char *buf, size_t n) {
  if (b >= 1e6)
    snprintf(buf, n, "%.1f MB", b / 1e6);
  else
    snprintf(buf, n, "%.1f kB", b / 1e3);
}

/* Write set s as k shards in dir; one line per file. */
int nn__prep_write_split(const prep_set *s, const char *dir, int k, nn_error *err) {
  int rc = nn_mkdirs(dir, err);
  if (rc) return rc;
  size_t rowlen = 1;
  for (int i = 0; i < s->sample.ndim; i++) rowlen *= (size_t)s->sample.dim[i];
  size_t rowbytes = rowlen * (s->ftype == NN_FEAT_U8 ? 1 : 4);
  char shp[64];
  shape_text(&s->sample, shp, sizeof shp);
  for (int i = 0; i < k; i++) {
    char path[4352];
    shard_path(path, sizeof path, dir, s->split, i);
    int64_t a = shard_begin(s->n, k, i), b = shard_begin(s->n, k, i + 1);
    nn_shard_meta m = {s->sample, s->ftype, s->num_classes, s->target_dim, s->scale, s->channels,
                       s->mean, s->std, s->split, s->source, i, k, s->vocab_size,
                       s->stream, s->token_labels, s->multilabel};
    nn_shard_writer *w = NULL;
    if ((rc = nn_shard_create(&w, path, &m, err))) return rc;
    const int32_t *lab = s->labels ? s->labels + a : NULL;
    const float *tg = s->targets ? s->targets + (size_t)a * (size_t)s->target_dim : NULL;
    if (s->vocab_size > 0)
      rc = nn_shard_append_seq(w, (const int32_t *)s->x + (size_t)a * rowlen, s->lengths + a, lab,
                               tg, b - a, err);
    else
      rc = nn_shard_append(w, (const uint8_t *)s->x + (size_t)a * rowbytes, lab, tg, b - a, err);
    if (rc) {
      nn_shard_abort(w);
      return rc;
    }
    if ((rc = nn_shard_close(w, err))) return rc;
    struct stat st;
    char sz[32] = "?";
    if (stat(path, &st) == 0) fmt_bytes((double)st.st_size, sz, sizeof sz);
    printf("wrote %s: %lld samples %s %s, %s\n", path, (long long)(b - a), shp,
           s->ftype == NN_FEAT_U8 ? "uint8" : s->ftype == NN_FEAT_I32 ? "token ids" : "float32",
           sz);
  }
  return remove_stale(dir, s->split, k, err);
}

/* 1 if DIR/SPLIT-000..k-1 exist, are this split's shards 0..k-1 of k with
 * the expected sizes, and open together as one valid dataset of n samples
 * with nothing else matching. */
static int split_up_to_date(const char *dir, const char *split, int k, int64_t n) {
  nn_error err;
  nn_error_clear(&err);
  for (int i = 0; i < k; i++) {
    char path[4352];
    shard_path(path, sizeof path, dir, split, i);
    nn_shard_desc d;
    if (nn_shard_describe(path, &d, &err)) return 0;
    if (d.shard_count != k || d.shard_index != i || strcmp(d.split, split) != 0 ||
        d.n != shard_begin(n, k, i + 1) - shard_begin(n, k, i))
      return 0;
  }
  char pat[4352];
  snprintf(pat, sizeof pat, "%s/%s-[0-9][0-9][0-9].h5", dir, split);
  nn_dataset *ds = NULL;
  if (nn_dataset_open(&ds, pat, NULL, &err)) return 0;
  const nn_dataset_info *info = nn_dataset_get_info(ds);
  int ok = info->n == n && info->nfiles == k;
  nn_dataset_close(ds);
  return ok;
}

/* Copy mean/std from an existing shard (--stats), checking it fits. */
static int stats_from_shard(const char *shard, const nn_shape *sample, double scale, int *channels,
                            double *mean, double *std, nn_error *err) {
  nn_dataset *ds = NULL;
  int rc = nn_dataset_open(&ds, shard, NULL, err);
  if (rc) {
    nn_error_prefix(err, "--stats");
    return rc;
  }
  const nn_dataset_info *info = nn_dataset_get_info(ds);
  char s1[64], s2[64];
  if (!shape_eq(&info->sample, sample)) {
    shape_text(&info->sample, s1, sizeof s1);
    shape_text(sample, s2, sizeof s2);
    rc = nn_error_at(err, NN_EDATA, shard, 0, 0,
                     "--stats: this shard's samples are %s, the new data's are %s", s1, s2);
  } else if (info->feature_scale != scale) {
    rc = nn_error_at(err, NN_EDATA, shard, 0, 0,
                     "--stats: this shard's feature_scale is %.9g, the new data's is %.9g",
                     info->feature_scale, scale);
  } else {
    *channels = info->channels;
    memcpy(mean, info->mean, sizeof(double) * (size_t)info->channels);
    memcpy(std, info->std, sizeof(double) * (size_t)info->channels);
  }
  nn_dataset_close(ds);
  return rc;
}

/* ---- IDX sources -------------------------------------------------------- */

/* Images IDX [N,H,W] / [N,H,W,C] / [N,F] -> sample shape and CHW bytes.
 * *x is a.data (borrowed) or a new transposed copy (*owned). */
static int idx_samples(const char *path, const nn_idx *a, nn_shape *sample, const uint8_t **x,
                       uint8_t **owned, nn_error *err) {
  *owned = NULL;
  *x = a->data;
  if (a->ndim == 2) {
    *sample = (nn_shape){1, {(int)a->dim[1]}};
  } else if (a->ndim == 3) {
    *sample = (nn_shape){3, {1, (int)a->dim[1], (int)a->dim[2]}};
  } else if (a->ndim == 4) {
    int64_t n = a->dim[0], h = a->dim[1], w = a->dim[2], c = a->dim[3];
    *sample = (nn_shape){3, {(int)c, (int)h, (int)w}};
    uint8_t *t = nn_malloc(a->size);
    if (!t) return nn_error_set(err, NN_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
      const uint8_t *src = a->data + i * h * w * c;
      uint8_t *dst = t + i * h * w * c;
      for (int64_t y = 0; y < h * w; y++)
        for (int64_t ch = 0; ch < c; ch++) dst[ch * h * w + y] = src[y * c + ch];
    }
    *owned = t;
    *x = t;
  } else {
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "images IDX has %d dimension(s); expected [N, F], [N, H, W] or [N, H, W, C]",
                       a->ndim);
  }
  return 0;
}

/* Check a labels IDX against n images and the class count; fill lab [n].
 * *classes: in: 0 (derive as max + 1) or the --classes value; out: used. */
static int idx_labels(const char *path, const nn_idx *l, int64_t n, const char *img_path,
                      int *classes, int32_t *lab, nn_error *err) {
  if (l->ndim != 1)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "labels IDX has %d dimensions; expected 1 ([N])",
                       l->ndim);
  if (l->dim[0] != n)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "%lld labels, but %s has %lld images",
                       (long long)l->dim[0], img_path, (long long)n);
  int mx = 0;
  for (int64_t i = 0; i < n; i++) {
    lab[i] = l->data[i];
    if (lab[i] > mx) mx = lab[i];
    if (*classes > 0 && lab[i] >= *classes)
      return nn_error_at(err, NN_EDATA, path, 0, 0, "label %d of item %lld is outside [0, %d)",
                         (int)lab[i], (long long)i, *classes);
  }
  if (*classes == 0) *classes = mx + 1;
  if (*classes < 2 && n > 0)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "every label is 0: one class is not a classification task (use --classes N)");
  return 0;
}

const char *nn__prep_base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* The four Fashion-MNIST files in src_dir, or in src_dir/fashion-mnist. */
static void fmnist_paths(const char *src, char paths[4][4096]) {
  static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  struct stat st;
  char probe[4096];
  snprintf(probe, sizeof probe, "%s/%s", src, names[0]);
  int sub = stat(probe, &st) != 0;
  if (sub) {
    snprintf(probe, sizeof probe, "%s/fashion-mnist/%s", src, names[0]);
    sub = stat(probe, &st) == 0;
  }
  for (int i = 0; i < 4; i++)
    snprintf(paths[i], 4096, "%s%s/%s", src, sub ? "/fashion-mnist" : "", names[i]);
}

static int fmnist_missing(const char *path) {
  fprintf(stderr,
          "nntrain: %s: no such file; install Fashion-MNIST with 'apt-get install %s' or give "
          "--source DIR\n",
          path, FMNIST_PACKAGE);
  return NN_EXIT_DATA;
}

static void help_fmnist(FILE *f) {
  fprintf(f,
          "usage: nntrain prepare fashion-mnist --out DIR [--shards K] [--source DIR] [--force]\n\n"
          "Convert Fashion-MNIST (from Debian's %s package) into HDF5 shards:\n"
          "DIR/train-000.h5 .. (60000 samples) and DIR/test-000.h5 .. (10000), each split cut\n"
          "into K contiguous shards. Samples are uint8 [1, 28, 28] with feature_scale 1/255,\n"
          "10 classes; mean/std come from the training split and are stored in both.\n"
          "If every output already exists and validates, prints 'up to date' and writes nothing.\n\n"
          "  --out DIR      output directory (created if needed)\n"
          "  --shards K     shards per split (default 4)\n"
          "  --source DIR   where the four *-ubyte.gz files are (default %s)\n"
          "  --force        rewrite even if up to date\n"
          "  --classes LIST keep only these classes (e.g. 5,6,7,8,9), relabelled 0..k-1 in the\n"
          "                 order given, in both splits\n"
          "  --limit N      keep the first N training samples (after --classes); the test split\n"
          "                 is kept whole. With --classes or --limit the files are always\n"
          "                 rewritten and mean/std come from the kept training samples.\n",
          FMNIST_PACKAGE, FMNIST_DEFAULT_SOURCE);
}

/* Parse --classes "a,b,c" (distinct class ids in [0, nclasses)) into
 * map[nclasses]: map[c] = its position in the list, -1 if not listed.
 * Returns the number listed, or an exit code < 0 after a usage error. */
static int parse_class_list(const char *cmd, const char *v, int nclasses, int *map) {
  for (int c = 0; c < nclasses; c++) map[c] = -1;
  int k = 0;
  const char *p = v;
  for (;;) {
    char *end;
    errno = 0;
    long c = strtol(p, &end, 10);
    if (end == p || errno || c < 0 || c >= nclasses) {
      nn_cli_usage_error(cmd, "--classes '%s': expected distinct class ids from 0 to %d "
                         "separated by commas", v, nclasses - 1);
      return -1;
    }
    if (map[c] >= 0) {
      nn_cli_usage_error(cmd, "--classes '%s': class %ld is listed twice", v, c);
      return -1;
    }
    map[c] = k++;
    if (*end == '\0') break;
    if (*end != ',') {
      nn_cli_usage_error(cmd, "--classes '%s': expected a comma after %ld", v, c);
      return -1;
    }
    p = end + 1;
  }
  if (k < 2) {
    nn_cli_usage_error(cmd, "--classes '%s': at least 2 classes are needed", v);
    return -1;
  }
  return k;
}

/* Keep, in place and in order, the samples of img/lab [n] whose class is
 * listed in map (relabelled map[label]; map NULL: every sample), at most
 * `limit` of them (<= 0: no limit). rowbytes: bytes per image. Returns the
 * number kept. */
static int64_t keep_samples(uint8_t *img, int32_t *lab, int64_t n, size_t rowbytes,
                            const int *map, int64_t limit) {
  int64_t kept = 0;
  for (int64_t i = 0; i < n && (limit <= 0 || kept < limit); i++) {
    int to = map ? map[lab[i]] : lab[i];
    if (to < 0) continue;
    if (kept != i) memmove(img + (size_t)kept * rowbytes, img + (size_t)i * rowbytes, rowbytes);
    lab[kept++] = to;
  }
  return kept;
}

/* Read one split's images and labels (IDX), then keep the samples of the
 * classes `map` lists (NULL: all), relabelled, at most `limit` of them
 * (0: all); at least k must be left (one per shard). *lab is malloc'ed. */
static int fmnist_read_split(const char *img_path, const char *lab_path, const int *map,
                             int limit, int k, nn_idx *img, nn_idx *lbl, int32_t **lab,
                             nn_error *err) {
  int rc;
  if ((rc = nn_idx_read(img_path, img, err))) return rc;
  if ((rc = nn_idx_read(lab_path, lbl, err))) return rc;
  if (img->ndim != 3 || img->dim[1] != 28 || img->dim[2] != 28)
    return nn_error_at(err, NN_EDATA, img_path, 0, 0,
                       "expected Fashion-MNIST images [N, 28, 28], found %d dimensions", img->ndim);
  if (!(*lab = nn_malloc(sizeof(int32_t) * (size_t)img->dim[0])))
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  int classes = 10;
  if ((rc = idx_labels(lab_path, lbl, img->dim[0], img_path, &classes, *lab, err))) return rc;
  if (!map && limit <= 0) return 0;
  img->dim[0] = keep_samples(img->data, *lab, img->dim[0], 28 * 28, map, limit);
  if (img->dim[0] < k)
    return nn_error_at(err, NN_EDATA, img_path, 0, 0,
                       "%lld samples are left after --classes/--limit, fewer than the %d shards",
                       (long long)img->dim[0], k);
  return 0;
}

static int cmd_fmnist(int argc, char **argv) {
  const char *cmd = "prepare fashion-mnist";
  if (nn_cli_wants_help(argc, argv)) {
    help_fmnist(stdout);
    return NN_EXIT_OK;
  }
  const char *out = NULL, *shards = NULL, *source = NULL, *force = NULL, *pos[1];
  const char *classes_s = NULL, *limit_s = NULL;
  const prep_flag flags[] = {{"--out", 1, &out},         {"--shards", 1, &shards},
                             {"--source", 1, &source},   {"--force", 0, &force},
                             {"--classes", 1, &classes_s}, {"--limit", 1, &limit_s}};
  int npos, rc = nn__prep_parse_flags(cmd, argc, argv, 2, flags, 6, pos, 0, &npos);
  if (rc) return rc;
  if (!out) return nn_cli_usage_error(cmd, "--out DIR is required");
  int k = 4, limit = 0, map[10], nclasses = 10;
  if (shards && (rc = nn__prep_parse_int(cmd, "--shards", shards, 1, PREP_MAX_SHARDS, &k))) return rc;
  if (limit_s && (rc = nn__prep_parse_int(cmd, "--limit", limit_s, 1, INT32_MAX, &limit))) return rc;
  if (classes_s && (nclasses = parse_class_list(cmd, classes_s, 10, map)) < 0) return NN_EXIT_USAGE;
  if (classes_s || limit_s) force = "1"; /* the up-to-date check knows whole splits only */
  if (!source) source = FMNIST_DEFAULT_SOURCE;

  nn_error err;
  nn_error_clear(&err);
  char paths[4][4096];
  fmnist_paths(source, paths);
  nn_idx head[4];
  for (int i = 0; i < 4; i++) {
    rc = nn_idx_peek(paths[i], &head[i], &err);
    if (rc == NN_ENOTFOUND) return fmnist_missing(paths[i]);
    if (rc) return nn_cli_fail(&err);
  }
  int64_t ntrain = head[0].dim[0], ntest = head[2].dim[0];
  if (k > ntest) return nn_cli_usage_error(cmd, "--shards %d is more than the %lld test samples", k, (long long)ntest);
  if (!force && split_up_to_date(out, "train", k, ntrain) &&
      split_up_to_date(out, "test", k, ntest)) {
    printf("%s: up to date (train %lld + test %lld samples in %d shards each)\n", out,
           (long long)ntrain, (long long)ntest, k);
    return NN_EXIT_OK;
  }

  nn_idx img[2] = {{0}}, lbl[2] = {{0}};
  int32_t *lab[2] = {NULL, NULL};
  double mean[1], sd[1];
  int channels = 0;
  for (int s = 0; s < 2 && !rc; s++)
    rc = fmnist_read_split(paths[2 * s], paths[2 * s + 1], classes_s ? map : NULL,
                           s == 0 ? limit : 0, k, &img[s], &lbl[s], &lab[s], &err);
  nn_shape sample = {3, {1, 28, 28}};
  if (!rc)
    rc = nn_shard_stats(img[0].data, NN_FEAT_U8, img[0].dim[0], &sample, 1.0 / 255, &channels,
                        mean, sd, &err);
  for (int s = 0; s < 2 && !rc; s++) {
    char src[512];
    snprintf(src, sizeof src, "fashion-mnist: %.200s + %.200s", nn__prep_base_name(paths[2 * s]),
             nn__prep_base_name(paths[2 * s + 1]));
    prep_set set = {s == 0 ? "train" : "test", src, sample, NN_FEAT_U8, img[s].data, lab[s],
                    NULL, img[s].dim[0], nclasses, 0, 1.0 / 255, channels, mean, sd,
                    0, NULL, 0, 0, 0};
    rc = nn__prep_write_split(&set, out, k, &err);
  }
  for (int s = 0; s < 2; s++) {
    nn_idx_free(&img[s]);
    nn_idx_free(&lbl[s]);
    free(lab[s]);
  }
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}

static void help_idx(FILE *f) {
  fprintf(f,
          "usage: nntrain prepare idx IMAGES LABELS --out DIR [--split NAME] [--shards K]\n"
          "                           [--classes N] [--stats SHARD]\n\n"
          "Convert an IDX image/label pair (gzip or plain) into HDF5 shards DIR/NAME-000.h5 ...\n"
          "Images [N, H, W] become samples [1, H, W]; [N, H, W, C] become [C, H, W]; [N, F]\n"
          "become [F]. Features are uint8 with feature_scale 1/255.\n\n"
          "  --out DIR        output directory (created if needed)\n"
          "  --split NAME     split name and file prefix (default train)\n"
          "  --shards K       number of shards (default 1)\n"
          "  --classes N      number of classes (default: largest label + 1)\n"
          "  --stats SHARD    copy mean/std from this shard instead of computing them\n"
          "                   (use the training shard when preparing a test split)\n");
}

static int cmd_idx(int argc, char **argv) {
  const char *cmd = "prepare idx";
  if (nn_cli_wants_help(argc, argv)) {
    help_idx(stdout);
    return NN_EXIT_OK;
  }
  const char *out = NULL, *split = "train", *shards = NULL, *classes_s = NULL, *stats = NULL;
  const char *pos[2];
  const prep_flag flags[] = {{"--out", 1, &out},           {"--split", 1, &split},
                             {"--shards", 1, &shards},     {"--classes", 1, &classes_s},
                             {"--stats", 1, &stats}};
  int npos, rc = nn__prep_parse_flags(cmd, argc, argv, 2, flags, 5, pos, 2, &npos);
  if (rc) return rc;
  if (npos < 2) return nn_cli_usage_error(cmd, "expected IMAGES and LABELS files");
  if (!out) return nn_cli_usage_error(cmd, "--out DIR is required");
  if (!split[0] || strchr(split, '/')) return nn_cli_usage_error(cmd, "--split '%s' is not a file name prefix", split);
  int k = 1, classes = 0;
  if (shards && (rc = nn__prep_parse_int(cmd, "--shards", shards, 1, PREP_MAX_SHARDS, &k))) return rc;
  if (classes_s && (rc = nn__prep_parse_int(cmd, "--classes", classes_s, 2, 1 << 20, &classes))) return rc;

  nn_error err;
  nn_error_clear(&err);
  nn_idx img = {0}, lbl = {0};
  uint8_t *owned = NULL;
  int32_t *lab = NULL;
  double *mean = NULL, *sd = NULL;
  const uint8_t *x = NULL;
  nn_shape sample;
  int channels = 0;
  if ((rc = nn_idx_read(pos[0], &img, &err))) goto cleanup;
  if ((rc = nn_idx_read(pos[1], &lbl, &err))) goto cleanup;
  if ((rc = idx_samples(pos[0], &img, &sample, &x, &owned, &err))) goto cleanup;
  if (k > img.dim[0]) {
    rc = nn_error_at(&err, NN_EUSAGE, pos[0], 0, 0, "--shards %d is more than the %lld samples", k,
                     (long long)img.dim[0]);
    goto cleanup;
  }
  lab = nn_malloc(sizeof *lab * (size_t)img.dim[0]);
  mean = nn_malloc(sizeof *mean * NN_SHARD_MAX_CHANNELS);
  sd = nn_malloc(sizeof *sd * NN_SHARD_MAX_CHANNELS);
  if (!lab || !mean || !sd) {
    rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
    goto cleanup;
  }
  if ((rc = idx_labels(pos[1], &lbl, img.dim[0], pos[0], &classes, lab, &err))) goto cleanup;
  if (stats)
    rc = stats_from_shard(stats, &sample, 1.0 / 255, &channels, mean, sd, &err);
  else
    rc = nn_shard_stats(x, NN_FEAT_U8, img.dim[0], &sample, 1.0 / 255, &channels, mean, sd, &err);
  if (rc) goto cleanup;
  char src[512];
  snprintf(src, sizeof src, "idx: %.200s + %.200s", nn__prep_base_name(pos[0]), nn__prep_base_name(pos[1]));
  prep_set set = {split, src, sample, NN_FEAT_U8, x, lab, NULL, img.dim[0], classes, 0,
                  1.0 / 255, channels, mean, sd, 0, NULL, 0, 0, 0};
  rc = nn__prep_write_split(&set, out, k, &err);
cleanup:
  nn_idx_free(&img);
  nn_idx_free(&lbl);
  free(owned);
  free(lab);
  free(mean);
  free(sd);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}

/* Column of a CSV file named by its header or a 0-based number; -1 if none. */
static int csv_column(const nn_csv_data *d, const char *name) {
  for (int c = 0; d->names && c < d->cols; c++)
    if (!strcmp(d->names[c], name)) return c;
  char *end = NULL;
  long v = strtol(name, &end, 10);
  if (end != name && !*end && v >= 0 && v < d->cols) return (int)v;
  return -1;
}

/* --multilabel COL,COL,...: d was read with the first of them as its label
 * column (so each row's file line is known); take the other K - 1 out of
 * d's features too (d->x compacted in place, d->nfeat reduced) and all K
 * into *tg [rows, K] (malloc; the caller frees), each value 0 or 1. */
static int csv_multilabel(const char *path, nn_csv_data *d, const char *spec, float **tg,
                          int *K, nn_error *err) {
  int col_of[NN_SHARD_MAX_CHANNELS], k = 0;
  char *is_label = nn_calloc((size_t)d->cols, 1), *buf = nn_malloc(strlen(spec) + 1);
  int rc = 0;
  if (!is_label || !buf) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto out;
  }
  strcpy(buf, spec);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int c = csv_column(d, t);
    if (c < 0 || is_label[c] || k == NN_SHARD_MAX_CHANNELS) {
      rc = nn_error_at(err, NN_EUSAGE, path, 0, 0, "--multilabel: '%s' is %s", t,
                       c < 0 ? "not a column (a header name or a 0-based number)"
                             : is_label[c] ? "given twice" : "one label too many");
      goto out;
    }
    is_label[c] = 1;
    col_of[k++] = c;
  }
  if (k < 1 || k >= d->cols) {
    rc = nn_error_at(err, NN_EUSAGE, path, 0, 0, "--multilabel names %d of the %d columns; "
                     "expected at least one label and one feature column", k, d->cols);
    goto out;
  }
  if (col_of[0] != d->label_col) { /* the reader resolved the first name the same way */
    rc = nn_error_at(err, NN_EUSAGE, path, 0, 0, "--multilabel: '%s' is ambiguous", spec);
    goto out;
  }
  if (!(*tg = nn_malloc(sizeof **tg * (size_t)d->rows * (size_t)k))) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
    goto out;
  }
  const int lc = d->label_col, nf = d->nfeat; /* x holds every column but lc */
  for (int64_t i = 0; i < d->rows; i++) {
    const float *row = d->x + (size_t)i * (size_t)nf;
    for (int j = 0; j < k; j++) {
      const int c = col_of[j];
      double v = c == lc ? d->y[i] : row[c < lc ? c : c - 1];
      if (v != 0 && v != 1) {
        rc = nn_error_at(err, NN_EDATA, path, (int)d->y_line[i], 0, "label column '%s' is %g, "
                         "expected 0 or 1 (--multilabel)", d->names ? d->names[col_of[j]] : "?",
                         (double)v);
        goto out;
      }
      (*tg)[(size_t)i * (size_t)k + (size_t)j] = (float)v;
    }
    float *dst = d->x + (size_t)i * (size_t)(d->cols - k); /* never ahead of row */
    for (int c = 0, o = 0; c < d->cols; c++)
      if (!is_label[c]) dst[o++] = row[c < lc ? c : c - 1];
  }
  d->nfeat = d->cols - k;
  *K = k;
out:
  free(is_label);
  free(buf);
  return rc;
}

static void help_csv(FILE *f) {
  fprintf(f,
          "usage: nntrain prepare csv FILE --label COLUMN --out DIR [--split NAME] [--shards K]\n"
          "                           [--classes N | --regression] [--stats SHARD]\n"
          "       nntrain prepare csv FILE --multilabel COL,COL,... --out DIR [...]\n\n"
          "Convert a numeric CSV file into HDF5 shards DIR/NAME-000.h5 ... Every column except\n"
          "the label becomes a float32 feature (sample shape [F], feature_scale 1). A header\n"
          "row is detected automatically.\n\n"
          "  --label COLUMN   label column: a header name or a 0-based column number\n"
          "  --out DIR        output directory (created if needed)\n"
          "  --split NAME     split name and file prefix (default train)\n"
          "  --shards K       number of shards (default 1)\n"
          "  --classes N      labels are class ids in [0, N) (default: largest label + 1)\n"
          "  --regression     the label is a real-valued target (stored in /targets [N, 1])\n"
          "  --multilabel COL,COL,...  these columns (names or 0-based numbers) are 0/1\n"
          "                   labels of a multi-label shard (/targets [N, K], attribute\n"
          "                   multi_label = 1; train.loss = \"binary_cross_entropy\")\n"
          "  --stats SHARD    copy mean/std from this shard instead of computing them\n");
}

static int cmd_csv(int argc, char **argv) {
  const char *cmd = "prepare csv";
  if (nn_cli_wants_help(argc, argv)) {
    help_csv(stdout);
    return NN_EXIT_OK;
  }
  const char *out = NULL, *split = "train", *shards = NULL, *classes_s = NULL, *stats = NULL;
  const char *label = NULL, *regression = NULL, *multi = NULL, *pos[1];
  const prep_flag flags[] = {{"--out", 1, &out},       {"--split", 1, &split},
                             {"--shards", 1, &shards}, {"--classes", 1, &classes_s},
                             {"--stats", 1, &stats},   {"--label", 1, &label},
                             {"--regression", 0, &regression}, {"--multilabel", 1, &multi}};
  int npos, rc = nn__prep_parse_flags(cmd, argc, argv, 2, flags, 8, pos, 1, &npos);
  if (rc) return rc;
  if (npos < 1) return nn_cli_usage_error(cmd, "expected a CSV FILE");
  if (multi && (label || classes_s || regression))
    return nn_cli_usage_error(cmd, "--multilabel excludes --label, --classes and --regression");
  if (!label && !multi) return nn_cli_usage_error(cmd, "--label COLUMN (or --multilabel "
                                                  "COL,COL,...) is required");
  if (!out) return nn_cli_usage_error(cmd, "--out DIR is required");
  if (classes_s && regression) return nn_cli_usage_error(cmd, "--classes and --regression exclude each other");
  if (!split[0] || strchr(split, '/')) return nn_cli_usage_error(cmd, "--split '%s' is not a file name prefix", split);
  int k = 1, classes = 0, K = 0;
  if (shards && (rc = nn__prep_parse_int(cmd, "--shards", shards, 1, PREP_MAX_SHARDS, &k))) return rc;
  if (classes_s && (rc = nn__prep_parse_int(cmd, "--classes", classes_s, 2, 1 << 20, &classes))) return rc;

  nn_error err;
  nn_error_clear(&err);
  nn_csv_data d;
  /* --multilabel: the first label column is read as the label (its lines
   * are kept for messages), the others split off by csv_multilabel */
  char first[128] = "";
  if (multi) snprintf(first, sizeof first, "%.*s", (int)strcspn(multi, ","), multi);
  nn_csv_opts o = {multi ? first : label, NN_CSV_HEADER_AUTO};
  int32_t *lab = NULL;
  float *tg = NULL;
  double *mean = NULL, *sd = NULL;
  int channels = 0;
  if ((rc = nn_csv_read(pos[0], &o, &d, &err))) goto cleanup;
  if (multi && (rc = csv_multilabel(pos[0], &d, multi, &tg, &K, &err))) goto cleanup;
  if (d.nfeat > NN_SHARD_MAX_CHANNELS) {
    rc = nn_error_at(&err, NN_EDATA, pos[0], 0, 0, "%d feature columns; at most %d are supported",
                     d.nfeat, NN_SHARD_MAX_CHANNELS);
    goto cleanup;
  }
  if (k > d.rows) {
    rc = nn_error_at(&err, NN_EUSAGE, pos[0], 0, 0, "--shards %d is more than the %lld rows", k,
                     (long long)d.rows);
    goto cleanup;
  }
  mean = nn_malloc(sizeof *mean * NN_SHARD_MAX_CHANNELS);
  sd = nn_malloc(sizeof *sd * NN_SHARD_MAX_CHANNELS);
  if (!mean || !sd) {
    rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (multi) {
    /* tg [rows, K] from csv_multilabel */
  } else if (regression) {
    if (!(tg = nn_malloc(sizeof *tg * (size_t)d.rows))) {
      rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    for (int64_t i = 0; i < d.rows; i++) tg[i] = (float)d.y[i];
  } else {
    if (!(lab = nn_malloc(sizeof *lab * (size_t)d.rows))) {
      rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    int mx = 0;
    for (int64_t i = 0; i < d.rows; i++) {
      double y = d.y[i];
      int line = (int)d.y_line[i];
      if (y != floor(y) || y < 0 || y > (1 << 20)) {
        rc = nn_error_at(&err, NN_EDATA, pos[0], line, 0,
                         "label '%s' is %g: class labels must be whole numbers >= 0 "
                         "(use --regression for real-valued targets)",
                         d.label_name, y);
        goto cleanup;
      }
      if (classes > 0 && y >= classes) {
        rc = nn_error_at(&err, NN_EDATA, pos[0], line, 0, "label '%s' is %g, outside [0, %d) (--classes %d)",
                         d.label_name, y, classes, classes);
        goto cleanup;
      }
      lab[i] = (int32_t)y;
      if (lab[i] > mx) mx = lab[i];
    }
    if (classes == 0) classes = mx + 1;
    if (classes < 2) {
      rc = nn_error_at(&err, NN_EDATA, pos[0], 0, 0,
                       "every label in column '%s' is 0: give --classes N or --regression",
                       d.label_name);
      goto cleanup;
    }
  }
  nn_shape sample = {1, {d.nfeat}};
  if (stats)
    rc = stats_from_shard(stats, &sample, 1.0, &channels, mean, sd, &err);
  else
    rc = nn_shard_stats(d.x, NN_FEAT_F32, d.rows, &sample, 1.0, &channels, mean, sd, &err);
  if (rc) goto cleanup;
  char src[512];
  snprintf(src, sizeof src, "csv: %.200s (%s '%.128s')", nn__prep_base_name(pos[0]),
           multi ? "multi-label columns" : "label column", multi ? multi : d.label_name);
  prep_set set = {split, src, sample, NN_FEAT_F32, d.x, lab, tg, d.rows,
                  regression || multi ? 0 : classes, multi ? K : regression ? 1 : 0, 1.0,
                  channels, mean, sd, 0, NULL, 0, 0, multi ? 1 : 0};
  rc = nn__prep_write_split(&set, out, k, &err);
cleanup:
  nn_csv_free(&d);
  free(lab);
  free(tg);
  free(mean);
  free(sd);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------ */

typedef struct prep_kind {
  const char *name;
  int (*run)(int argc, char **argv);
  void (*help)(FILE *f);
  const char *summary;
} prep_kind;

static const prep_kind kinds[] = {
  {"fashion-mnist", cmd_fmnist, help_fmnist, "Fashion-MNIST from Debian's dataset-fashion-mnist"},
  {"idx", cmd_idx, help_idx, "an IDX images/labels pair (MNIST-style)"},
  {"csv", cmd_csv, help_csv, "a numeric CSV file with a label column"},
  {"lines", nn__prep_cmd_lines, nn__prep_help_lines,
   "text files, one item per line, each file a class (e.g. word lists)"},
  {"text", nn__prep_cmd_text, nn__prep_help_text,
   "text files as one token stream, for language models"},
  {"vectors", nn__prep_cmd_vectors, nn__prep_help_vectors,
   "pretrained token vectors (GloVe text) -> an embedding's weight for [init]"},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static void help_all(FILE *f) {
  fprintf(f, "usage: nntrain prepare SOURCE ... --out DIR\n\n"
             "Convert a data set into nntrain HDF5 shards (see docs/data-format.md), or\n"
             "pretrained vectors into an embedding's weight (docs/finetuning.md).\n\n"
             "sources:\n");
  for (size_t i = 0; i < NKINDS; i++) fprintf(f, "  %-14s %s\n", kinds[i].name, kinds[i].summary);
  fprintf(f, "\n'nntrain prepare SOURCE --help' shows a source's options.\n");
}

int nn_cmd_prepare(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') {
    if (nn_cli_wants_help(argc, argv)) {
      help_all(stdout);
      return NN_EXIT_OK;
    }
    if (argc < 2) return nn_cli_usage_error("prepare", "expected a source: fashion-mnist, idx, csv, lines, text or vectors");
    return nn_cli_usage_error("prepare", "expected a source before '%s': fashion-mnist, idx, csv, lines, text or vectors",
                              argv[1]);
  }
  /* A shard whose flush or close failed (a full disk) stays open inside
   * HDF5, and HDF5's exit handler then crashed closing it: prepare exits
   * right after any failure, so the handler is not needed. */
  if (H5dont_atexit() < 0) { /* already initialised: nothing to do */ }
  for (size_t i = 0; i < NKINDS; i++)
    if (!strcmp(argv[1], kinds[i].name)) return kinds[i].run(argc, argv);
  return nn_cli_usage_error("prepare", "unknown source '%s' (expected fashion-mnist, idx, csv, lines, text or vectors)",
                            argv[1]);
}
