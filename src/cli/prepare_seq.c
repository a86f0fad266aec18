/* prepare_seq.c: sequence shards from text (worker/dataset.h,
 * docs/data-format.md#sequences):
 *
 * `nntrain prepare text FILE... --out DIR [--val-fraction F] [--row-len R]`:
 * the files concatenated in the order given into one token stream for
 * language modelling (bytes + 1, as below); the last F (default 0.05) is the
 * `validation` split, the rest `train`. Each split is stored as consecutive
 * rows of R tokens (the last row shorter: its length says so) with the root
 * attribute stream = 1, so a reader can take any window of the stream.
 *
 * `nntrain prepare lines`: text files, one item per line,
 * each file a class (e.g. Debian's word lists: the class is the language):
 *
 *   nntrain prepare lines FILE... --out DIR [--per-class N] [--test-fraction F]
 *                         [--max-len T] [--seed S] [--keep-case] [--keep-shared]
 *                         [--shards K]
 *
 * Tokens are the item's UTF-8 BYTES, id = byte + 1 (id 0 is the padding),
 * vocabulary 257, whatever the language: no vocabulary to build or to ship
 * with a model, nothing unknown at prediction time, and an accented letter
 * is simply two tokens (a recurrent layer learns the pairs). Code points
 * would need a vocabulary per data set and an out-of-vocabulary rule.
 *
 * Per class, in this order: lines are read (a trailing CR dropped, empty
 * lines skipped), lowercased (UTF-8 aware; --keep-case keeps them), items
 * longer than T bytes dropped (counted), duplicates removed; then items found
 * in more than one class are dropped from all (--keep-shared keeps them);
 * then N items are drawn (--per-class, 0 = all; a seeded permutation from
 * our counter-based RNG, so the same flags give the same shards), and the
 * last F of them (--test-fraction, default 0.1) are held out as the test
 * split. Each split is shuffled (seeded) so classes are mixed across shards.
 * Beside the shards: DIR/classes.txt (class k's name on line k+1: the file
 * name) and DIR/vocab.txt (id, the byte in hex, and the character when it is
 * printable ASCII). */
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "cli/cli.h"
#include "cli/prepare.h"
#include "core/mem.h"
#include "core/rng.h"
#include "worker/fsutil.h"

#define LINES_MAX_CLASSES 256
#define LINES_VOCAB 257 /* byte + 1, and 0 = padding */

/* One class: its file's distinct items (each a NUL-terminated string in one
 * arena), after the filters. */
typedef struct lines_class {
  const char *path;
  char *text;        /* the file, items cut in place */
  char **item;       /* [n] */
  int64_t n;
  int64_t read, too_long, dups, shared;
} lines_class;

typedef struct lines_opts {
  int per_class, max_len, lower, keep_shared, shards;
  double test_fraction;
  uint64_t seed;
} lines_opts;

void nn__prep_help_lines(FILE *f) {
  fprintf(f,
          "usage: nntrain prepare lines FILE... --out DIR [options]\n\n"
          "Sequence shards from text files with one item per line; each FILE is a class\n"
          "(its name in DIR/classes.txt). Tokens are UTF-8 bytes (id = byte + 1, 0 = padding,\n"
          "vocabulary 257). Writes DIR/train-*.h5 and DIR/test-*.h5.\n\n"
          "  --per-class N       items drawn per class after the filters (default 0: all)\n"
          "  --test-fraction F   share of each class held out as the test split (default 0.1)\n"
          "  --max-len T         sequence length; longer items are dropped (default 32)\n"
          "  --seed S            the draw and the shuffles (default 1)\n"
          "  --keep-case         do not lowercase\n"
          "  --keep-shared       keep items found in more than one file (default: dropped)\n"
          "  --shards K          shards per split (default 1)\n\n"
          "Word lists (Debian wamerican, wngerman, wfrench, ...):\n"
          "  nntrain prepare lines /usr/share/dict/american-english /usr/share/dict/ngerman \\\n"
          "      --out data/wordlang --per-class 20000\n");
}

/* Lowercase the UTF-8 string s in place where the lowercase letter has the
 * same encoded length (all of Latin-1, Greek, Cyrillic); other bytes and
 * invalid sequences stay as they are. */
static void utf8_lower(char *s) {
  mbstate_t st;
  memset(&st, 0, sizeof st);
  size_t len = strlen(s);
  char *p = s, *end = s + len;
  while (p < end) {
    wchar_t wc;
    size_t k = mbrtowc(&wc, p, (size_t)(end - p), &st);
    if (k == (size_t)-1 || k == (size_t)-2 || k == 0) { /* not UTF-8 here: one byte on */
      memset(&st, 0, sizeof st);
      p++;
      continue;
    }
    wint_t lw = towlower((wint_t)wc);
    char buf[MB_LEN_MAX];
    mbstate_t s2;
    memset(&s2, 0, sizeof s2);
    size_t k2 = lw != (wint_t)wc ? wcrtomb(buf, (wchar_t)lw, &s2) : (size_t)-1;
    if (k2 == k) memcpy(p, buf, k);
    p += k;
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read class c's file, cut it into items, lowercase, drop long and empty
 * ones, sort and remove duplicates. */
static int read_class(lines_class *c, const lines_opts *o, nn_error *err) {
  FILE *f = fopen(c->path, "rb");
  if (!f) return nn_error_at(err, NN_EIO, c->path, 0, 0, "cannot read: %s", strerror(errno));
  size_t cap = 1 << 16, len = 0;
  c->text = nn_malloc(cap);
  while (c->text) {
    size_t got = fread(c->text + len, 1, cap - len - 1, f);
    len += got;
    if (len + 1 < cap) break;
    char *t = nn_realloc(c->text, cap * 2);
    if (!t) break;
    c->text = t;
    cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!c->text) return nn_error_set(err, NN_ENOMEM, "out of memory reading %s", c->path);
  if (bad) return nn_error_at(err, NN_EIO, c->path, 0, 0, "read error");
  c->text[len] = '\0';
  int64_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += c->text[i] == '\n';
  c->item = nn_malloc(sizeof *c->item * (size_t)(lines + 1));
  if (!c->item) return nn_error_set(err, NN_ENOMEM, "out of memory reading %s", c->path);
  for (char *p = c->text; *p;) {
    char *nl = strchr(p, '\n'), *next = nl ? nl + 1 : p + strlen(p);
    if (nl) *nl = '\0';
    size_t n = strlen(p);
    if (n && p[n - 1] == '\r') p[--n] = '\0';
    if (n) {
      c->read++;
      if (memchr(p, '\0', n) == NULL && n <= (size_t)o->max_len) {
        if (o->lower) utf8_lower(p);
        c->item[c->n++] = p;
      } else {
        c->too_long++;
      }
    }
    p = next;
  }
  qsort(c->item, (size_t)c->n, sizeof *c->item, cmp_str);
  int64_t k = 0;
  for (int64_t i = 0; i < c->n; i++)
    if (k == 0 || strcmp(c->item[k - 1], c->item[i])) c->item[k++] = c->item[i];
  c->dups = c->n - k;
  c->n = k;
  return 0;
}

/* An item, its class and its position there, for finding shared items. */
typedef struct tagged {
  const char *s;
  int cls;
  int64_t at;
} tagged;

static int cmp_tagged(const void *a, const void *b) {
  const tagged *x = a, *y = b;
  int r = strcmp(x->s, y->s);
  return r ? r : (x->cls > y->cls) - (x->cls < y->cls);
}

/* Drop from every class the items found in more than one. */
static int drop_shared(lines_class *cl, int nc, nn_error *err) {
  int64_t total = 0;
  for (int c = 0; c < nc; c++) total += cl[c].n;
  tagged *t = nn_malloc(sizeof *t * (size_t)(total ? total : 1));
  if (!t) return nn_error_set(err, NN_ENOMEM, "out of memory");
  int64_t k = 0;
  for (int c = 0; c < nc; c++)
    for (int64_t i = 0; i < cl[c].n; i++) t[k++] = (tagged){cl[c].item[i], c, i};
  qsort(t, (size_t)total, sizeof *t, cmp_tagged);
  for (int64_t i = 0; i < total;) { /* a run of equal items from several classes */
    int64_t j = i + 1;
    while (j < total && !strcmp(t[j].s, t[i].s)) j++;
    if (j - i > 1)
      for (int64_t m = i; m < j; m++) cl[t[m].cls].item[t[m].at] = NULL;
    i = j;
  }
  free(t);
  for (int c = 0; c < nc; c++) {
    int64_t m = 0;
    for (int64_t i = 0; i < cl[c].n; i++)
      if (cl[c].item[i]) cl[c].item[m++] = cl[c].item[i];
    cl[c].shared = cl[c].n - m;
    cl[c].n = m;
  }
  return 0;
}

/* The items of one split: ids [n, T], lengths [n], labels [n]. */
typedef struct seq_split {
  int64_t n, cap;
  int32_t *ids, *len, *lab;
} seq_split;

static void split_free(seq_split *s) {
  free(s->ids);
  free(s->len);
  free(s->lab);
}

static int split_alloc(seq_split *s, int64_t cap, int T, nn_error *err) {
  memset(s, 0, sizeof *s);
  s->cap = cap ? cap : 1;
  s->ids = nn_calloc((size_t)s->cap * (size_t)T, sizeof *s->ids);
  s->len = nn_malloc(sizeof *s->len * (size_t)s->cap);
  s->lab = nn_malloc(sizeof *s->lab * (size_t)s->cap);
  return s->ids && s->len && s->lab ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory");
}

static void split_add(seq_split *s, const char *item, int cls, int T) {
  size_t n = strlen(item);
  int32_t *row = s->ids + (size_t)s->n * (size_t)T;
  for (size_t t = 0; t < n; t++) row[t] = (int32_t)(unsigned char)item[t] + 1;
  s->len[s->n] = (int32_t)n;
  s->lab[s->n] = cls;
  s->n++;
}

/* Shuffle the split's rows with a seeded permutation (into fresh arrays). */
static int split_shuffle(seq_split *s, int T, uint64_t seed, uint32_t stream, nn_error *err) {
  seq_split o;
  int64_t *perm = nn_malloc(sizeof *perm * (size_t)(s->n ? s->n : 1));
  int rc = perm ? split_alloc(&o, s->n, T, err) : nn_error_set(err, NN_ENOMEM, "out of memory");
  if (rc) {
    free(perm);
    return rc;
  }
  nn_rng_permutation(seed, stream, perm, s->n);
  for (int64_t i = 0; i < s->n; i++) {
    memcpy(o.ids + (size_t)i * (size_t)T, s->ids + (size_t)perm[i] * (size_t)T,
           sizeof *o.ids * (size_t)T);
    o.len[i] = s->len[perm[i]];
    o.lab[i] = s->lab[perm[i]];
  }
  o.n = s->n;
  free(perm);
  split_free(s);
  *s = o;
  return 0;
}

/* DIR/classes.txt and DIR/vocab.txt. */
static int write_side_files(const char *dir, lines_class *cl, int nc, nn_error *err) {
  char path[4352];
  snprintf(path, sizeof path, "%s/classes.txt", dir);
  FILE *f = fopen(path, "w");
  if (!f) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot create: %s", strerror(errno));
  for (int c = 0; c < nc; c++) fprintf(f, "%s\n", nn__prep_base_name(cl[c].path));
  if (fclose(f) != 0) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot write");
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  if (!(f = fopen(path, "w")))
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot create: %s", strerror(errno));
  fprintf(f, "# id\tbyte\tchar (tokens are UTF-8 bytes, id = byte + 1; id 0 = padding)\n0\t-\t<pad>\n");
  for (int b = 0; b < 256; b++) {
    char ch[2] = {b > 32 && b < 127 ? (char)b : '\0', '\0'};
    fprintf(f, "%d\t0x%02x\t%s\n", b + 1, b, ch);
  }
  if (fclose(f) != 0) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot write");
  return 0;
}

/* Draw, split and write. */
static int build_splits(lines_class *cl, int nc, const lines_opts *o, const char *out,
                        nn_error *err) {
  const int T = o->max_len;
  int64_t total = 0;
  for (int c = 0; c < nc; c++) total += cl[c].n;
  seq_split tr, te;
  memset(&tr, 0, sizeof tr);
  memset(&te, 0, sizeof te);
  int64_t *perm = nn_malloc(sizeof *perm * (size_t)(total ? total : 1));
  double *mean = nn_calloc((size_t)T, sizeof *mean), *sd = nn_malloc(sizeof *sd * (size_t)T);
  int rc = !perm || !mean || !sd ? nn_error_set(err, NN_ENOMEM, "out of memory") : 0;
  if (!rc) rc = split_alloc(&tr, total, T, err);
  if (!rc) rc = split_alloc(&te, total, T, err);
  for (int c = 0; c < nc && !rc; c++) {
    int64_t take = o->per_class > 0 && o->per_class < cl[c].n ? o->per_class : cl[c].n;
    int64_t ntest = (int64_t)((double)take * o->test_fraction + 0.5);
    nn_rng_permutation(o->seed, (uint32_t)c, perm, cl[c].n);
    for (int64_t i = 0; i < take; i++)
      split_add(i < take - ntest ? &tr : &te, cl[c].item[perm[i]], c, T);
    printf("class %d %s: %lld lines, %lld duplicates, %lld longer than %d bytes, %lld in other "
           "files; %lld train, %lld test\n", c, nn__prep_base_name(cl[c].path),
           (long long)cl[c].read, (long long)cl[c].dups, (long long)cl[c].too_long, T,
           (long long)cl[c].shared, (long long)(take - ntest), (long long)ntest);
    if (take - ntest < 1)
      rc = nn_error_at(err, NN_EDATA, cl[c].path, 0, 0, "no training items left after the "
                       "filters (%lld distinct, %lld in other files)",
                       (long long)(cl[c].n + cl[c].shared), (long long)cl[c].shared);
  }
  if (!rc) rc = split_shuffle(&tr, T, o->seed, 1000, err);
  if (!rc) rc = split_shuffle(&te, T, o->seed, 1001, err);
  for (int t = 0; t < T && !rc; t++) sd[t] = 1;
  char src[256];
  snprintf(src, sizeof src, "lines: %d files (UTF-8 bytes, id = byte + 1)", nc);
  for (int s = 0; s < 2 && !rc; s++) {
    seq_split *sp = s == 0 ? &tr : &te;
    if (sp->n == 0) continue;
    int k = o->shards < sp->n ? o->shards : (int)sp->n;
    prep_set set = {s == 0 ? "train" : "test", src, {1, {T}}, NN_FEAT_I32, sp->ids, sp->lab,
                    NULL, sp->n, nc, 0, 1.0, T, mean, sd, LINES_VOCAB, sp->len, 0, 0, 0};
    rc = nn__prep_write_split(&set, out, k, err);
  }
  if (!rc) rc = write_side_files(out, cl, nc, err);
  split_free(&tr);
  split_free(&te);
  free(perm);
  free(mean);
  free(sd);
  return rc;
}

/* ---- prepare text -------------------------------------------------------------- */

void nn__prep_help_text(FILE *f) {
  fprintf(f,
          "usage: nntrain prepare text FILE... --out DIR [options]\n\n"
          "One token stream for language models: the FILEs concatenated in the order given,\n"
          "tokens are UTF-8 bytes (id = byte + 1, vocabulary 257). The last part is the\n"
          "validation split. Writes DIR/train-000.h5 and DIR/validation-000.h5 (rows of the\n"
          "stream, attribute stream = 1).\n\n"
          "  --val-fraction F   share of the stream held out at its end (default 0.05)\n"
          "  --row-len R        tokens per stored row (default 256)\n\n"
          "Debian's fortunes, sorted by name:\n"
          "  nntrain prepare text $(ls /usr/share/games/fortunes/* | grep -v '\\.' | sort) \\\n"
          "      --out data/fortunes\n");
}

int nn__prep_slurp(const char *path, unsigned char **buf, size_t *len, size_t *cap, nn_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return nn_error_at(err, NN_EIO, path, 0, 0, "cannot read: %s", strerror(errno));
  for (;;) {
    if (*cap - *len < 65536) {
      size_t nc = *cap ? *cap * 2 : 1 << 20;
      unsigned char *t = nn_realloc(*buf, nc);
      if (!t) {
        fclose(f);
        return nn_error_set(err, NN_ENOMEM, "out of memory reading %s", path);
      }
      *buf = t;
      *cap = nc;
    }
    size_t got = fread(*buf + *len, 1, *cap - *len, f);
    *len += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  return bad ? nn_error_at(err, NN_EIO, path, 0, 0, "read error") : 0;
}

/* Tokens [a, b) of the stream as split `name`: rows of R ids. */
static int write_stream(const unsigned char *text, size_t a, size_t b, int R, const char *name,
                        const char *out, const char *src, nn_error *err) {
  size_t n = b - a, rows = (n + (size_t)R - 1) / (size_t)R;
  int32_t *ids = nn_calloc(rows * (size_t)R, sizeof *ids);
  int32_t *len = nn_malloc(sizeof *len * rows);
  double *mean = nn_calloc((size_t)R, sizeof *mean), *sd = nn_malloc(sizeof *sd * (size_t)R);
  int rc = !ids || !len || !mean || !sd ? nn_error_set(err, NN_ENOMEM, "out of memory") : 0;
  for (size_t i = 0; i < n && !rc; i++) ids[i] = (int32_t)text[a + i] + 1;
  for (size_t r = 0; r < rows && !rc; r++)
    len[r] = (int32_t)(r + 1 < rows ? (size_t)R : n - r * (size_t)R);
  for (int t = 0; t < R && !rc; t++) sd[t] = 1;
  prep_set set = {name, src, {1, {R}}, NN_FEAT_I32, ids, NULL, NULL, (int64_t)rows, 0, 0, 1.0, R,
                  mean, sd, LINES_VOCAB, len, 1, 0, 0};
  if (!rc) rc = nn__prep_write_split(&set, out, 1, err);
  free(ids);
  free(len);
  free(mean);
  free(sd);
  return rc;
}

int nn__prep_cmd_text(int argc, char **argv) {
  const char *cmd = "prepare text";
  if (nn_cli_wants_help(argc, argv)) {
    nn__prep_help_text(stdout);
    return NN_EXIT_OK;
  }
  const char *pos[4096], *out = NULL, *frac = NULL, *rowlen = NULL;
  const prep_flag flags[] = {{"--out", 1, &out}, {"--val-fraction", 1, &frac},
                             {"--row-len", 1, &rowlen}};
  int npos = 0, R = 256;
  int rc = nn__prep_parse_flags(cmd, argc, argv, 2, flags, 3, pos, 4096, &npos);
  if (rc) return rc;
  if (rowlen && (rc = nn__prep_parse_int(cmd, "--row-len", rowlen, 2, 4096, &R))) return rc;
  double F = 0.05;
  if (frac && (rc = nn__prep_parse_fraction(cmd, "--val-fraction", frac, 0, &F))) return rc;
  if (npos < 1) return nn_cli_usage_error(cmd, "expected at least one FILE");
  if (!out) return nn_cli_usage_error(cmd, "--out DIR is required");
  nn_error err;
  nn_error_clear(&err);
  unsigned char *text = NULL;
  size_t len = 0, cap = 0;
  for (int i = 0; i < npos && !rc; i++) rc = nn__prep_slurp(pos[i], &text, &len, &cap, &err);
  size_t nval = (size_t)((double)len * F);
  if (!rc && (len - nval < 2 || nval < 2))
    rc = nn_error_at(&err, NN_EDATA, pos[0], 0, 0, "%zu bytes in all: too little text for a "
                     "training and a validation part", len);
  char src[256];
  snprintf(src, sizeof src, "text: %d files, %zu bytes (UTF-8 bytes, id = byte + 1)", npos, len);
  if (!rc) rc = nn_mkdirs(out, &err);
  if (!rc) rc = write_stream(text, 0, len - nval, R, "train", out, src, &err);
  if (!rc) rc = write_stream(text, len - nval, len, R, "validation", out, src, &err);
  if (!rc)
    printf("%d files, %zu tokens: train %zu, validation %zu\n", npos, len, len - nval, nval);
  free(text);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}

/* Flags into o; 0 or an exit code. */
static int lines_flags(const char *cmd, int argc, char **argv, const char **pos, int *npos,
                       const char **out, lines_opts *o) {
  const char *per = NULL, *frac = NULL, *maxlen = NULL, *seed = NULL, *keepcase = NULL,
             *keepshared = NULL, *shards = NULL;
  const prep_flag flags[] = {{"--out", 1, out},           {"--per-class", 1, &per},
                             {"--test-fraction", 1, &frac}, {"--max-len", 1, &maxlen},
                             {"--seed", 1, &seed},         {"--keep-case", 0, &keepcase},
                             {"--keep-shared", 0, &keepshared}, {"--shards", 1, &shards}};
  int rc = nn__prep_parse_flags(cmd, argc, argv, 2, flags, 8, pos, LINES_MAX_CLASSES, npos);
  if (rc) return rc;
  *o = (lines_opts){0, 32, !keepcase, keepshared != NULL, 1, 0.1, 1};
  if (per && (rc = nn__prep_parse_int(cmd, "--per-class", per, 0, 1 << 30, &o->per_class)))
    return rc;
  if (maxlen && (rc = nn__prep_parse_int(cmd, "--max-len", maxlen, 1, 4096, &o->max_len)))
    return rc;
  if (shards && (rc = nn__prep_parse_int(cmd, "--shards", shards, 1, 1000, &o->shards))) return rc;
  int sd = 1;
  if (seed && (rc = nn__prep_parse_int(cmd, "--seed", seed, 0, 1 << 30, &sd))) return rc;
  o->seed = (uint64_t)sd;
  if (frac && (rc = nn__prep_parse_fraction(cmd, "--test-fraction", frac, 1, &o->test_fraction)))
    return rc;
  if (*npos < 2) return nn_cli_usage_error(cmd, "expected at least two FILEs (each is a class)");
  if (!*out) return nn_cli_usage_error(cmd, "--out DIR is required");
  return 0;
}

int nn__prep_cmd_lines(int argc, char **argv) {
  const char *cmd = "prepare lines";
  if (nn_cli_wants_help(argc, argv)) {
    nn__prep_help_lines(stdout);
    return NN_EXIT_OK;
  }
  const char *pos[LINES_MAX_CLASSES], *out = NULL;
  int npos = 0;
  lines_opts o;
  int rc = lines_flags(cmd, argc, argv, pos, &npos, &out, &o);
  if (rc) return rc;
  /* UTF-8 case mapping; the C.UTF-8 locale ships with libc on Debian */
  if (o.lower && !setlocale(LC_CTYPE, "C.UTF-8"))
    fprintf(stderr, "nntrain: warning: no C.UTF-8 locale: only ASCII letters are lowercased\n");
  nn_error err;
  nn_error_clear(&err);
  lines_class *cl = nn_calloc((size_t)npos, sizeof *cl);
  if (!cl) rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
  for (int c = 0; c < npos && !rc; c++) {
    cl[c].path = pos[c];
    rc = read_class(&cl[c], &o, &err);
  }
  if (!rc && !o.keep_shared) rc = drop_shared(cl, npos, &err);
  if (!rc) rc = nn_mkdirs(out, &err);
  if (!rc) rc = build_splits(cl, npos, &o, out, &err);
  for (int c = 0; cl && c < npos; c++) {
    free(cl[c].text);
    free(cl[c].item);
  }
  free(cl);
  setlocale(LC_CTYPE, "C");
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
