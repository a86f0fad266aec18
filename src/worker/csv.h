/* csv.h: a reader for numeric CSV files (features plus one label column).
 *
 * Accepted input: comma-separated fields, one record per line (LF or CRLF),
 * an optional header row, blank lines ignored. Every field except the
 * header's must be a finite number (strtod syntax, surrounding spaces
 * allowed; a field may be wrapped in double quotes). Every row must have as
 * many fields as the first. One column may be named as the label; all the
 * others become float32 features in file order.
 *
 * Errors name file:line:column (column = 1-based character position of the
 * field) and what was expected. This module knows nothing about shards. */
#ifndef NN_WORKER_CSV_H
#define NN_WORKER_CSV_H

#include <stdint.h>

#include "core/err.h"

enum { NN_CSV_HEADER_AUTO = -1, NN_CSV_HEADER_NO = 0, NN_CSV_HEADER_YES = 1 };

typedef struct nn_csv_opts {
  /* Label column: a header name, or a 0-based column index given as decimal
   * digits (a header name that matches wins). NULL: no label column, every
   * column is a feature. */
  const char *label;
  /* NN_CSV_HEADER_AUTO: the first row is a header if any of its fields is not
   * a number. NN_CSV_HEADER_YES / _NO force the choice. */
  int header;
} nn_csv_opts;

/* A parsed file. Owns x, y and names; release with nn_csv_free. */
typedef struct nn_csv_data {
  int64_t rows;          /* data rows (header excluded) */
  int cols;              /* fields per row, label included */
  int nfeat;             /* feature columns = cols - (label ? 1 : 0) */
  int has_header;        /* 1 if the first row was a header */
  int label_col;         /* 0-based column of the label, -1 if none */
  char label_name[128];  /* header name of the label, or "column N" */
  char **names;          /* [cols] header names, NULL if no header */
  float *x;              /* [rows, nfeat] features, row-major */
  double *y;             /* [rows] label values, NULL if no label */
  int64_t *y_line;       /* [rows] 1-based file line of each row (for messages) */
} nn_csv_data;

/* Parse `path` into *d (initialized by the call). opts may be NULL (auto
 * header, no label). Errors: NN_ENOTFOUND (no such file), NN_EIO, NN_EDATA
 * (bad number, ragged row, empty file, unknown label column), NN_ENOMEM. */
int nn_csv_read(const char *path, const nn_csv_opts *opts, nn_csv_data *d, nn_error *err);

/* Free everything d owns and zero it. d may be NULL. */
void nn_csv_free(nn_csv_data *d);

#endif
