/* prepare_vec.c: `nntrain prepare vectors`: pretrained token vectors in the
 * GloVe text format -> the weight of an embedding layer, in an HDF5 file
 * that `[init] from` reads (docs/finetuning.md, "Pretrained embeddings").
 *
 *   nntrain prepare vectors VECTORS.txt --vocab VOCAB.txt --layer NAME
 *                           --out FILE.h5 [--padding-idx N] [--seed S] [--force]
 *
 * VOCAB.txt maps the ids 0..V-1 to token strings (vocab_read: the two forms
 * accepted). VECTORS.txt is streamed one line at a time (GloVe 6B is 400,000
 * lines of 300 values): every line is checked, and only the vectors of
 * vocabulary tokens are kept, straight into their rows of the table [V, D];
 * memory is the table, the vocabulary and one line. Tokens are compared byte
 * for byte (case included). Rows of tokens the file lacks are drawn from
 * N(0, s^2), s the standard deviation of every value kept, from the stream
 * (seed, NN_RNG_VECTORS, id): a drawn row depends on the seed and its id
 * only. The padding row is zeros.
 *
 * Output: /params/NAME/weight float32 [V, D] (what nn_init_read copies),
 * /found_rows uint8 [V] (1: the row came from VECTORS.txt), and root
 * attributes naming the sources and the counts. Written as FILE.h5.tmp,
 * synced and renamed, so FILE.h5 is never half-written. This is not a
 * library: it lives at the edge, and only the CLI prints. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "cli/cli.h"
#include "cli/prepare.h"
#include "core/hash.h"
#include "core/layer.h"
#include "core/mem.h"
#include "core/rng.h"
#include "worker/fsutil.h"
#include "worker/h5io.h"

#define VEC_MAX_VOCAB (1 << 30) /* the embedding layer's num_embeddings limit */
#define VEC_MAX_DIM (1 << 24)   /* and its embedding_dim limit */

void nn__prep_help_vectors(FILE *f) {
  fprintf(f,
          "usage: nntrain prepare vectors VECTORS.txt --vocab VOCAB.txt --layer NAME --out FILE.h5\n"
          "                               [--padding-idx N] [--seed S] [--force]\n\n"
          "Pretrained token vectors in the GloVe text format (a token and D numbers per line,\n"
          "separated by spaces; a word2vec header line \"COUNT DIM\" is skipped) into the weight\n"
          "[V, D] of embedding layer NAME, for [init] from = \"FILE.h5\". Row i is the vector of\n"
          "vocabulary token i (compared byte for byte; the first of duplicate lines wins);\n"
          "rows of tokens the file lacks are drawn from N(0, s^2), s the standard deviation of\n"
          "the values found; the padding row is zeros. The file is streamed: only the lines of\n"
          "vocabulary tokens are kept.\n\n"
          "  --vocab VOCAB.txt  ids -> tokens. A file with a TAB anywhere (the vocab.txt that\n"
          "                     'prepare lines' writes): lines ID<TAB>...<TAB>TOKEN, the first\n"
          "                     field the id, the last the token (empty: no token), '#' lines\n"
          "                     are comments. Otherwise one token per line, id = line - 1.\n"
          "                     Ids must be 0..V-1, each once; tokens must be distinct.\n"
          "  --layer NAME       the embedding layer's name in the job (unnamed layers are\n"
          "                     <type><index>, e.g. embedding0: 'nntrain check JOB' lists them)\n"
          "  --out FILE.h5      the output (/params/NAME/weight float32 [V, D])\n"
          "  --padding-idx N    the row left at zeros (default: the id of the token \"<pad>\"\n"
          "                     if the vocabulary has one, else none; -1: none)\n"
          "  --seed S           the drawn rows (default 1): the same seed, the same file\n"
          "  --force            replace an existing FILE.h5 (refused otherwise)\n\n"
          "  nntrain prepare vectors glove-chars.txt --vocab data/wordlang/vocab.txt \\\n"
          "      --layer embedding0 --out data/wordlang/glove.h5\n");
}

/* ---- the vocabulary ------------------------------------------------------- */

/* The vocabulary: ids 0..V-1 and their tokens, with a hash table of the
 * tokens (open addressing, FNV-1a). Tokens point into text. */
typedef struct vec_vocab {
  const char *path;
  unsigned char *text; /* the file, cut in place into tokens (owned) */
  int64_t n;           /* V */
  const char **tok;    /* [V] the id's token; NULL: none (an empty field) */
  int64_t *line;       /* [V] the line that gave the id (for messages) */
  int64_t *slot;       /* [mask + 1] id + 1 of a token; 0: empty */
  uint64_t mask;
} vec_vocab;

static void vocab_free(vec_vocab *v) {
  free(v->text);
  free(v->tok);
  free(v->line);
  free(v->slot);
}

/* The id of token s, or -1. */
static int64_t vocab_find(const vec_vocab *v, const char *s) {
  uint64_t h = nn_fnv1a64(NN_FNV1A64_INIT, s, strlen(s)) & v->mask;
  for (; v->slot[h]; h = (h + 1) & v->mask)
    if (!strcmp(v->tok[v->slot[h] - 1], s)) return v->slot[h] - 1;
  return -1;
}

/* Hash every token; two ids with one token is an error (which would get
 * the vector?). */
static int vocab_index(vec_vocab *v, nn_error *err) {
  uint64_t cap = 16;
  while (cap < 2 * (uint64_t)v->n) cap *= 2;
  v->mask = cap - 1;
  if (!(v->slot = nn_calloc(cap, sizeof *v->slot)))
    return nn_error_set(err, NN_ENOMEM, "out of memory");
  for (int64_t id = 0; id < v->n; id++) {
    if (!v->tok[id]) continue;
    int64_t other = vocab_find(v, v->tok[id]);
    if (other >= 0)
      return nn_error_at(err, NN_EDATA, v->path, (int)v->line[id], 0,
                         "token '%.64s' of id %lld is also id %lld (line %lld): tokens must be "
                         "distinct", v->tok[id], (long long)id, (long long)other,
                         (long long)v->line[other]);
    uint64_t h = nn_fnv1a64(NN_FNV1A64_INIT, v->tok[id], strlen(v->tok[id])) & v->mask;
    while (v->slot[h]) h = (h + 1) & v->mask;
    v->slot[h] = id + 1;
  }
  return 0;
}

/* Line `lineno` of a tab-separated vocabulary: the id (first field) into
 * *id, the token (last field; "" = none) into *tok. */
static int vocab_tab_line(const vec_vocab *v, char *s, int64_t lineno, int64_t *id,
                          const char **tok, nn_error *err) {
  char *tab = strchr(s, '\t');
  if (!tab)
    return nn_error_at(err, NN_EDATA, v->path, (int)lineno, 1,
                       "expected ID<TAB>...<TAB>TOKEN (the file has TABs, so every line but "
                       "'#' comments is tab-separated), found no TAB");
  *tab = '\0';
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ')
    return nn_error_at(err, NN_EDATA, v->path, (int)lineno, 1,
                       "id '%.32s' is not a whole number >= 0 (expected ID<TAB>...<TAB>TOKEN)",
                       s);
  *id = x;
  const char *last = strrchr(tab + 1, '\t');
  *tok = last ? last + 1 : tab + 1;
  return 0;
}

/* Cut the file into lines and entries: tok/line by id; checks that the
 * ids are 0..V-1, each once. nlines: an upper bound on the entries. */
static int vocab_entries(vec_vocab *v, size_t len, int64_t nlines, int tabbed, nn_error *err) {
  int64_t *ids = nn_malloc(sizeof *ids * (size_t)nlines);
  int64_t *lines = nn_malloc(sizeof *lines * (size_t)nlines);
  const char **toks = nn_malloc(sizeof *toks * (size_t)nlines);
  int rc = ids && lines && toks ? 0 : nn_error_set(err, NN_ENOMEM, "out of memory");
  int64_t n = 0, lineno = 0;
  char *p = (char *)v->text, *end = p + len;
  if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* UTF-8 byte-order mark */
  while (!rc && p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p)), *next = nl ? nl + 1 : end;
    if (nl) *nl = '\0';
    size_t k = strlen(p);
    if (k && p[k - 1] == '\r') p[--k] = '\0';
    lineno++;
    if (!tabbed || (k && p[0] != '#')) {
      lines[n] = lineno;
      ids[n] = n;
      toks[n] = p;
      if (tabbed) rc = vocab_tab_line(v, p, lineno, &ids[n], &toks[n], err);
      n++;
    }
    p = next;
  }
  if (!rc && n == 0) rc = nn_error_at(err, NN_EDATA, v->path, 0, 0, "no vocabulary entries");
  if (!rc && n > VEC_MAX_VOCAB)
    rc = nn_error_at(err, NN_EDATA, v->path, 0, 0, "%lld entries: at most %d are supported",
                     (long long)n, VEC_MAX_VOCAB);
  v->n = n;
  if (!rc && (!(v->tok = nn_calloc((size_t)n, sizeof *v->tok)) ||
              !(v->line = nn_calloc((size_t)n, sizeof *v->line))))
    rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n && !rc; i++) {
    int64_t id = ids[i];
    if (id >= n)
      rc = nn_error_at(err, NN_EDATA, v->path, (int)lines[i], 1, "id %lld is outside 0..%lld "
                       "(the file has %lld entries: ids must be 0..V-1, each once)",
                       (long long)id, (long long)(n - 1), (long long)n);
    else if (v->line[id])
      rc = nn_error_at(err, NN_EDATA, v->path, (int)lines[i], 1, "id %lld is given twice "
                       "(first on line %lld): ids must be 0..V-1, each once", (long long)id,
                       (long long)v->line[id]);
    else {
      v->line[id] = lines[i];
      v->tok[id] = toks[i][0] ? toks[i] : NULL;
    }
  }
  free(ids);
  free(lines);
  free(toks);
  return rc;
}

/* Read the vocabulary. A file with a TAB anywhere is tab-separated: every
 * non-empty line not starting with '#' is ID<TAB>...<TAB>TOKEN (the vocab.txt
 * of `prepare lines`: "id<TAB>0xHH<TAB>char"); otherwise every line is one
 * token and its id is its 0-based index (an empty line: an id without a
 * token). A trailing CR is dropped. */
static int vocab_read(const char *path, vec_vocab *v, nn_error *err) {
  memset(v, 0, sizeof *v);
  v->path = path;
  size_t len = 0, cap = 0;
  int rc = nn__prep_slurp(path, &v->text, &len, &cap, err);
  if (rc) return rc;
  v->text[len] = '\0';
  const unsigned char *nul = memchr(v->text, '\0', len);
  if (nul) {
    int64_t line = 1;
    for (const unsigned char *q = v->text; q < nul; q++) line += *q == '\n';
    return nn_error_at(err, NN_EDATA, path, (int)line, 0, "a NUL byte: expected a text file");
  }
  int64_t nlines = 1;
  for (size_t i = 0; i < len; i++) nlines += v->text[i] == '\n';
  int tabbed = memchr(v->text, '\t', len) != NULL;
  if ((rc = vocab_entries(v, len, nlines, tabbed, err))) return rc;
  return vocab_index(v, err);
}

/* ---- the vectors file ------------------------------------------------------ */

/* The state of one pass over VECTORS.txt. */
typedef struct vec_scan {
  const char *path;
  const vec_vocab *voc;
  int64_t pad;          /* the padding id (-1: none): its row stays zeros */
  int D;                /* values per line: 0 until the first vector line */
  int64_t first_line;   /* the line D was taken from */
  int header_dim;       /* the word2vec header's DIM; 0: no header */
  int64_t header_line;
  int started;          /* a non-blank line was seen */
  int64_t vectors;      /* vector lines read */
  int64_t found, dups;  /* vocabulary rows filled; later lines of a filled row's token
                           (other tokens are not kept, so not tracked) */
  float *w;             /* [V, D] the table (owned) */
  float *row;           /* [D] the current line's values (owned) */
  uint8_t *got;         /* [V] 1: the row came from the file (owned) */
} vec_scan;

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* 1 if line s is a word2vec header "COUNT DIM" (two whole numbers); its DIM
 * into *dim. */
static int is_header(const char *s, int *dim) {
  const char *p = s;
  long long v[2];
  for (int i = 0; i < 2; i++) {
    while (is_space(*p)) p++;
    const char *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || q - p > 12 || (*q && !is_space(*q))) return 0;
    v[i] = strtoll(p, NULL, 10);
    p = q;
  }
  while (is_space(*p)) p++;
  if (*p || v[1] < 1 || v[1] > VEC_MAX_DIM) return 0;
  *dim = (int)v[1];
  return 1;
}

/* The values of line `line` from p on: each a finite number (strtof
 * syntax) followed by a space, a TAB or the end. The first cap go to dst;
 * *n gets the count and *extra_col the column of value cap + 1 (0: none). */
static int parse_values(const vec_scan *s, int64_t lineno, const char *line, const char *tok,
                        const char *p, float *dst, int cap, int *n, int *extra_col,
                        nn_error *err) {
  int k = 0;
  *extra_col = 0;
  for (;;) {
    while (is_space(*p)) p++;
    if (!*p) break;
    char *end;
    float x = strtof(p, &end);
    int col = (int)(p - line) + 1, flen = 0;
    while (p[flen] && !is_space(p[flen])) flen++;
    if (end == p || (*end && !is_space(*end)))
      return nn_error_at(err, NN_EDATA, s->path, (int)lineno, col,
                         "value %d of '%.40s' is '%.*s': expected a number", k + 1, tok,
                         flen < 40 ? flen : 40, p);
    if (!isfinite(x))
      return nn_error_at(err, NN_EDATA, s->path, (int)lineno, col,
                         "value %d of '%.40s' is '%.*s': expected a finite float32 number",
                         k + 1, tok, flen < 40 ? flen : 40, p);
    if (k < cap) dst[k] = x;
    else if (!*extra_col) *extra_col = col;
    k++;
    p = end;
  }
  *n = k;
  return 0;
}

/* The first vector line fixes D (checked against the header's DIM) and
 * allocates the table. */
static int scan_first(vec_scan *s, int64_t lineno, const char *line, const char *tok,
                      const char *vals, nn_error *err) {
  int n, extra, rc = parse_values(s, lineno, line, tok, vals, NULL, 0, &n, &extra, err);
  if (rc) return rc;
  if (n == 0)
    return nn_error_at(err, NN_EDATA, s->path, (int)lineno, (int)strlen(line) + 1,
                       "'%.40s' has no values: expected a token and its vector", tok);
  if (n > VEC_MAX_DIM)
    return nn_error_at(err, NN_EDATA, s->path, (int)lineno, 0, "%d values: at most %d are "
                       "supported", n, VEC_MAX_DIM);
  if (s->header_dim && n != s->header_dim)
    return nn_error_at(err, NN_EDATA, s->path, (int)lineno, 0, "%d values after '%.40s', "
                       "expected %d (the header on line %lld)", n, tok, s->header_dim,
                       (long long)s->header_line);
  s->D = n;
  s->first_line = lineno;
  size_t V = (size_t)s->voc->n;
  s->w = nn_calloc(V * (size_t)n, sizeof *s->w);
  s->row = nn_malloc(sizeof *s->row * (size_t)n);
  s->got = nn_calloc(V, 1);
  if (!s->w || !s->row || !s->got)
    return nn_error_set(err, NN_ENOMEM, "out of memory for the table [%lld, %d]",
                        (long long)V, n);
  return 0;
}

/* One line of the file (NUL-terminated, the newline removed; changed in
 * place): skip a blank line or the header, check the values, keep a row. */
static int scan_line(vec_scan *s, char *line, int64_t lineno, nn_error *err) {
  size_t len = strlen(line);
  if (len && line[len - 1] == '\r') line[--len] = '\0';
  if (lineno == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) { /* UTF-8 BOM */
    line += 3;
    len -= 3;
  }
  const char *q = line;
  while (is_space(*q)) q++;
  if (!*q) return 0;
  if (!s->started) {
    s->started = 1;
    if (is_header(line, &s->header_dim)) {
      s->header_line = lineno;
      return 0;
    }
  }
  if (is_space(line[0]))
    return nn_error_at(err, NN_EDATA, s->path, (int)lineno, 1,
                       "expected a token at the start of the line, found a space");
  char *tok_end = line;
  while (*tok_end && !is_space(*tok_end)) tok_end++;
  char *vals = *tok_end ? tok_end + 1 : tok_end;
  *tok_end = '\0';
  int rc, n, extra;
  if (!s->D && (rc = scan_first(s, lineno, line, line, vals, err))) return rc;
  if ((rc = parse_values(s, lineno, line, line, vals, s->row, s->D, &n, &extra, err))) return rc;
  if (n != s->D)
    return nn_error_at(err, NN_EDATA, s->path, (int)lineno, extra ? extra : (int)len + 1,
                       "%d values after '%.40s', expected %d (as on line %lld, the first "
                       "vector)", n, line, s->D, (long long)s->first_line);
  s->vectors++;
  int64_t id = vocab_find(s->voc, line);
  if (id < 0 || id == s->pad) return 0;
  if (s->got[id]) {
    s->dups++;
    return 0;
  }
  memcpy(s->w + (size_t)id * (size_t)s->D, s->row, sizeof *s->row * (size_t)s->D);
  s->got[id] = 1;
  s->found++;
  return 0;
}

/* Stream VECTORS.txt through scan_line. */
static int scan_file(vec_scan *s, nn_error *err) {
  FILE *f = fopen(s->path, "r");
  if (!f) {
    if (errno == ENOENT || errno == ENOTDIR)
      return nn_error_at(err, NN_ENOTFOUND, s->path, 0, 0, "no such file");
    return nn_error_at(err, NN_EIO, s->path, 0, 0, "cannot open: %s", strerror(errno));
  }
  char *line = NULL;
  size_t linecap = 0;
  ssize_t len;
  int64_t lineno = 0;
  int rc = 0;
  errno = 0;
  while (!rc && (len = getline(&line, &linecap, f)) >= 0) {
    lineno++;
    if (len && line[len - 1] == '\n') line[--len] = '\0';
    if (memchr(line, '\0', (size_t)len))
      rc = nn_error_at(err, NN_EDATA, s->path, (int)lineno, 0, "a NUL byte: expected a text "
                       "file");
    else
      rc = scan_line(s, line, lineno, err);
    errno = 0;
  }
  if (!rc && ferror(f))
    rc = nn_error_at(err, NN_EIO, s->path, (int)lineno, 0, "read error: %s", strerror(errno));
  fclose(f);
  free(line);
  if (!rc && !s->D) rc = nn_error_at(err, NN_EDATA, s->path, 0, 0, "no vectors in the file");
  if (!rc && !s->found)
    rc = nn_error_at(err, NN_EDATA, s->path, 0, 0,
                     "none of the %lld tokens of %s is among the %lld vectors of this file: "
                     "nothing to use "
                     "(tokens are compared byte for byte, case included)",
                     (long long)s->voc->n, s->voc->path, (long long)s->vectors);
  return rc;
}

/* ---- the table --------------------------------------------------------------- */

/* Fill the rows not found (but the padding row) from N(0, s^2), s the
 * population standard deviation of the values found; *std gets s, *drawn
 * the rows drawn. */
static void draw_missing(vec_scan *s, uint64_t seed, double *std, int64_t *drawn) {
  const size_t D = (size_t)s->D;
  const int64_t V = s->voc->n;
  double sum = 0, ss = 0;
  for (int64_t i = 0; i < V; i++)
    for (size_t d = 0; s->got[i] && d < D; d++) sum += s->w[(size_t)i * D + d];
  double mean = sum / ((double)s->found * (double)D);
  for (int64_t i = 0; i < V; i++)
    for (size_t d = 0; s->got[i] && d < D; d++) {
      double x = s->w[(size_t)i * D + d] - mean;
      ss += x * x;
    }
  *std = sqrt(ss / ((double)s->found * (double)D));
  *drawn = 0;
  for (int64_t i = 0; i < V; i++) {
    if (s->got[i] || i == s->pad) continue;
    nn_rng r;
    nn_rng_init(&r, seed, NN_RNG_VECTORS, (uint32_t)i, 0, 0);
    for (size_t d = 0; d < D; d++) s->w[(size_t)i * D + d] = (float)(*std * nn_rng_normal(&r));
    (*drawn)++;
  }
}

/* What the output file records besides the table. */
typedef struct vec_out {
  const char *path, *layer, *vectors, *vocab;
  int64_t drawn, pad;
  double std;
  uint64_t seed;
} vec_out;

/* The datasets and attributes of the output (open file hf). */
static int write_contents(const nn_h5_file *hf, const vec_scan *s, const vec_out *o,
                          nn_error *err) {
  char dset[NN_NAME_MAX + 32];
  snprintf(dset, sizeof dset, "params/%s/weight", o->layer);
  hsize_t dims[2] = {(hsize_t)s->voc->n, (hsize_t)s->D};
  int64_t V = s->voc->n, seed = (int64_t)o->seed;
  int32_t D = s->D;
  int rc = nn_h5_dset_write(hf, dset, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, s->w, err);
  if (!rc)
    rc = nn_h5_dset_write(hf, "found_rows", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, dims, s->got,
                          err);
  const struct { const char *name; const char *v; } strs[] = {
      {"format", "nntrain-vectors"}, {"layer", o->layer}, {"vectors_file", o->vectors},
      {"vocab_file", o->vocab}};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0] && !rc; i++)
    rc = nn_h5_attr_write_str(hf, hf->id, strs[i].name, strs[i].v, err);
  const struct { const char *name; const int64_t *v; } nums[] = {
      {"vocab_size", &V}, {"tokens_found", &s->found}, {"rows_drawn", &o->drawn},
      {"duplicates_skipped", &s->dups}, {"padding_idx", &o->pad}, {"seed", &seed}};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0] && !rc; i++)
    rc = nn_h5_attr_write(hf, hf->id, nums[i].name, H5T_NATIVE_INT64, nums[i].v, 0, err);
  if (!rc) rc = nn_h5_attr_write(hf, hf->id, "dim", H5T_NATIVE_INT32, &D, 0, err);
  if (!rc) rc = nn_h5_attr_write(hf, hf->id, "oov_std", H5T_NATIVE_DOUBLE, &o->std, 0, err);
  return rc;
}

/* Write o->path as o->path.tmp, sync, rename. */
static int write_table(const vec_scan *s, const vec_out *o, nn_error *err) {
  int rc = nn_mkdirs_parent(o->path, err);
  if (rc) return rc;
  size_t n = strlen(o->path) + 5;
  char *tmp = nn_malloc(n);
  if (!tmp) return nn_error_set(err, NN_ENOMEM, "out of memory");
  snprintf(tmp, n, "%s.tmp", o->path);
  nn_h5_quiet();
  nn_h5_file hf = {H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), tmp, NN_EIO, NULL};
  if (hf.id < 0) {
    rc = nn_h5_fail(err, NN_EIO, tmp, NULL, "cannot create the file");
    free(tmp);
    return rc;
  }
  rc = write_contents(&hf, s, o, err);
  if (!rc && H5Fflush(hf.id, H5F_SCOPE_GLOBAL) < 0)
    rc = nn_h5_fail(err, NN_EIO, tmp, NULL, "cannot flush the file");
  if (H5Fclose(hf.id) < 0 && !rc) rc = nn_h5_fail(err, NN_EIO, tmp, NULL, "cannot close the file");
  if (!rc) rc = nn_fsync_path(tmp, 0, err);
  if (!rc && rename(tmp, o->path) != 0)
    rc = nn_error_at(err, NN_EIO, o->path, 0, 0, "cannot rename %s into place: %s", tmp,
                     strerror(errno));
  if (rc) unlink(tmp);
  free(tmp);
  return rc;
}

/* ---- the command ---------------------------------------------------------------- */

/* Flags into o (and *pad_s: the --padding-idx text, NULL: default); 0 or
 * an exit code. */
static int vectors_flags(const char *cmd, int argc, char **argv, vec_out *o, const char **pad_s) {
  const char *pos[1], *seed_s = NULL, *force = NULL;
  memset(o, 0, sizeof *o);
  *pad_s = NULL;
  const prep_flag flags[] = {{"--vocab", 1, &o->vocab},      {"--layer", 1, &o->layer},
                             {"--out", 1, &o->path},         {"--padding-idx", 1, pad_s},
                             {"--seed", 1, &seed_s},         {"--force", 0, &force}};
  int npos, rc = nn__prep_parse_flags(cmd, argc, argv, 2, flags, 6, pos, 1, &npos);
  if (rc) return rc;
  if (npos < 1) return nn_cli_usage_error(cmd, "expected a VECTORS.txt file");
  o->vectors = pos[0];
  if (!o->vocab) return nn_cli_usage_error(cmd, "--vocab VOCAB.txt is required");
  if (!o->layer) return nn_cli_usage_error(cmd, "--layer NAME is required");
  if (!o->path) return nn_cli_usage_error(cmd, "--out FILE.h5 is required");
  if (!o->layer[0] || strchr(o->layer, '/') || strlen(o->layer) >= NN_NAME_MAX)
    return nn_cli_usage_error(cmd, "--layer '%s': expected a layer name (1 to %d bytes, no '/')",
                              o->layer, NN_NAME_MAX - 1);
  int seed = 1, pad = -1;
  if (seed_s && (rc = nn__prep_parse_int(cmd, "--seed", seed_s, 0, 1 << 30, &seed))) return rc;
  if (*pad_s && (rc = nn__prep_parse_int(cmd, "--padding-idx", *pad_s, -1, VEC_MAX_VOCAB, &pad)))
    return rc;
  o->seed = (uint64_t)seed;
  o->pad = pad;
  struct stat st;
  if (!force && stat(o->path, &st) == 0)
    return nn_cli_usage_error(cmd, "%s exists: give --force to replace it", o->path);
  return 0;
}

int nn__prep_cmd_vectors(int argc, char **argv) {
  const char *cmd = "prepare vectors";
  if (nn_cli_wants_help(argc, argv)) {
    nn__prep_help_vectors(stdout);
    return NN_EXIT_OK;
  }
  vec_out o;
  const char *pad_s;
  int rc = vectors_flags(cmd, argc, argv, &o, &pad_s);
  if (rc) return rc;
  nn_error err;
  nn_error_clear(&err);
  vec_vocab voc;
  vec_scan s;
  memset(&s, 0, sizeof s);
  if ((rc = vocab_read(o.vocab, &voc, &err))) goto cleanup;
  if (!pad_s) o.pad = vocab_find(&voc, "<pad>");
  if (o.pad >= voc.n) {
    vocab_free(&voc);
    return nn_cli_usage_error(cmd, "--padding-idx %lld is outside the ids 0..%lld of %s",
                              (long long)o.pad, (long long)(voc.n - 1), o.vocab);
  }
  s.path = o.vectors;
  s.voc = &voc;
  s.pad = o.pad;
  if ((rc = scan_file(&s, &err))) goto cleanup;
  draw_missing(&s, o.seed, &o.std, &o.drawn);
  if ((rc = write_table(&s, &o, &err))) goto cleanup;
  char pad_text[64] = "no padding row";
  if (o.pad >= 0) snprintf(pad_text, sizeof pad_text, "padding row %lld zeros", (long long)o.pad);
  printf("prepare vectors: %lld of %lld tokens found in %s (%d dims, %lld duplicates skipped); "
         "%lld rows drawn from N(0, s^2), s = %.6g the std of the found values (seed %llu); "
         "%s; wrote %s /params/%s/weight [%lld, %d]\n",
         (long long)s.found, (long long)voc.n, o.vectors, s.D, (long long)s.dups,
         (long long)o.drawn, o.std, (unsigned long long)o.seed, pad_text, o.path, o.layer,
         (long long)voc.n, s.D);
cleanup:
  vocab_free(&voc);
  free(s.w);
  free(s.row);
  free(s.got);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
