/* prepare.h: what the sources of `nntrain prepare` share (prepare.c:
 * fashion-mnist, idx, csv; prepare_seq.c: lines, text; prepare_vec.c:
 * vectors). Not a public API. */
#ifndef NN_CLI_PREPARE_H
#define NN_CLI_PREPARE_H

#include <stdint.h>
#include <stdio.h>

#include "worker/dataset.h"

/* One flag: --name, whether it takes a value, where the value (or "1") goes. */
typedef struct prep_flag {
  const char *name;
  int has_value;
  const char **dst;
} prep_flag;

/* Parse argv[first..] into flags and up to max_pos positionals. Returns 0 or
 * an exit code (usage error already printed). */
int nn__prep_parse_flags(const char *cmd, int argc, char **argv, int first,
                         const prep_flag *flags, int nflags, const char **pos, int max_pos,
                         int *npos);
/* Parse a fraction flag value in [0, 1) (zero_ok) or (0, 1) into *out; 0 or an exit code. */
int nn__prep_parse_fraction(const char *cmd, const char *flag, const char *v, int zero_ok,
                            double *out);
/* Parse a whole-number flag value in [lo, hi] into *out; 0 or an exit code. */
int nn__prep_parse_int(const char *cmd, const char *flag, const char *v, int lo, int hi,
                       int *out);

/* A whole split in memory, ready to be cut into shards. Borrowed pointers. */
typedef struct prep_set {
  const char *split;
  const char *source;      /* text for the "source" attribute */
  nn_shape sample;
  nn_feature_type ftype;
  const void *x;           /* [n, count(sample)] of ftype */
  const int32_t *labels;   /* [n] or NULL */
  const float *targets;    /* [n, target_dim] or NULL */
  int64_t n;
  int num_classes, target_dim;
  double scale;
  int channels;
  const double *mean, *std;
  int vocab_size;          /* > 0: a sequence set: x holds int32 ids [n, T] */
  const int32_t *lengths;  /* [n] with vocab_size, else NULL */
  int stream;              /* 1: rows of one token stream, no labels or targets */
  int token_labels;        /* 1: labels [n, T], a class per timestep */
  int multilabel;          /* 1: targets [n, target_dim] are 0/1 labels (multi_label) */
} prep_set;

/* Write set s as k shards DIR/SPLIT-000.h5 ...; one line per file. */
int nn__prep_write_split(const prep_set *s, const char *dir, int k, nn_error *err);
/* The file name part of a path. */
const char *nn__prep_base_name(const char *p);

/* prepare_seq.c */
/* Append file `path` to the growing buffer *buf (*len bytes used of *cap).
 * On success at least one byte past *len is allocated (room for a NUL). */
int nn__prep_slurp(const char *path, unsigned char **buf, size_t *len, size_t *cap,
                   nn_error *err);
int nn__prep_cmd_lines(int argc, char **argv);
void nn__prep_help_lines(FILE *f);
int nn__prep_cmd_text(int argc, char **argv);
void nn__prep_help_text(FILE *f);

/* prepare_vec.c */
int nn__prep_cmd_vectors(int argc, char **argv);
void nn__prep_help_vectors(FILE *f);

#endif
