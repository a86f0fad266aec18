/* csv.c: numeric CSV reader (see csv.h). One pass with getline: the first
 * non-blank row fixes the column count and decides header or not; every
 * later row is split, checked and appended to growing arrays. */
#include "worker/csv.h"
#include "core/mem.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One field of a split line: text points into the (modified) line buffer,
 * col is its 1-based character position in the original line. */
typedef struct csv_field {
  char *text;
  int col;
} csv_field;

/* Growable arrays of the parsed values. */
typedef struct csv_grow {
  float *x;
  double *y;
  int64_t *line;
  int64_t cap;
} csv_grow;

/* Split `line` (NUL-terminated, no newline) at commas, in place: each field
 * is trimmed of spaces/tabs and unquoted ("a ""b""" -> a "b"). Fields go to
 * *fields (grown as needed, capacity *cap). Returns the field count, or -1
 * with *bad_col set for an unterminated quote / text after a closing quote. */
static int split_fields(char *line, csv_field **fields, int *cap, int *bad_col) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n == *cap) {
      int ncap = *cap ? *cap * 2 : 16;
      csv_field *nf = nn_realloc(*fields, (size_t)ncap * sizeof *nf);
      if (!nf) return -2;
      *fields = nf;
      *cap = ncap;
    }
    while (*p == ' ' || *p == '\t') p++;
    csv_field *f = &(*fields)[n++];
    f->col = (int)(p - line) + 1;
    if (*p == '"') {
      char *w = p, *r = p + 1;
      f->text = w;
      for (;;) {
        if (*r == '\0') {
          *bad_col = f->col;
          return -1;
        }
        if (*r == '"') {
          if (r[1] == '"') {
            *w++ = '"';
            r += 2;
            continue;
          }
          r++;
          break;
        }
        *w++ = *r++;
      }
      *w = '\0';
      while (*r == ' ' || *r == '\t') r++;
      if (*r != ',' && *r != '\0') {
        *bad_col = (int)(r - line) + 1;
        return -1;
      }
      if (*r == '\0') return n;
      p = r + 1;
      continue;
    }
    f->text = p;
    char *comma = strchr(p, ',');
    char *end = comma ? comma : p + strlen(p);
    char *t = end;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
    *t = '\0';
    if (!comma) return n;
    p = comma + 1;
  }
}

/* Parse a whole field as a finite number. Returns 0 and *v, or -1. */
static int parse_number(const char *s, double *v) {
  if (!*s) return -1;
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || *end != '\0') return -1;
  if (!isfinite(d)) return -1;
  *v = d;
  return 0;
}

static int is_digits(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* Field text shortened for a message. */
static void show_field(const char *s, char *buf, size_t n) {
  size_t len = strlen(s);
  if (len + 1 <= n) {
    memcpy(buf, s, len + 1);
  } else {
    snprintf(buf, n, "%.*s...", (int)(n - 4), s);
  }
}

static int grow(csv_grow *g, int64_t need, int nfeat, int want_y) {
  if (need <= g->cap) return 0;
  int64_t ncap = g->cap ? g->cap * 2 : 1024;
  while (ncap < need) ncap *= 2;
  float *nx = nn_realloc(g->x, (size_t)ncap * (size_t)(nfeat ? nfeat : 1) * sizeof *nx);
  if (!nx) return -1;
  g->x = nx;
  if (want_y) {
    double *ny = nn_realloc(g->y, (size_t)ncap * sizeof *ny);
    if (!ny) return -1;
    g->y = ny;
    int64_t *nl = nn_realloc(g->line, (size_t)ncap * sizeof *nl);
    if (!nl) return -1;
    g->line = nl;
  }
  g->cap = ncap;
  return 0;
}

/* Choose the label column from opts->label and the header. */
static int resolve_label(const char *path, const char *label, nn_csv_data *d, nn_error *err) {
  if (d->names) {
    for (int c = 0; c < d->cols; c++) {
      if (!strcmp(d->names[c], label)) {
        d->label_col = c;
        snprintf(d->label_name, sizeof d->label_name, "%s", label);
        return 0;
      }
    }
  }
  if (is_digits(label) && strlen(label) < 10) {
    int c = atoi(label);
    if (c >= d->cols)
      return nn_error_at(err, NN_EUSAGE, path, 0, 0,
                         "label column %d does not exist: rows have %d columns (0 to %d)", c,
                         d->cols, d->cols - 1);
    d->label_col = c;
    if (d->names)
      snprintf(d->label_name, sizeof d->label_name, "%s", d->names[c]);
    else
      snprintf(d->label_name, sizeof d->label_name, "column %d", c);
    return 0;
  }
  if (!d->names)
    return nn_error_at(err, NN_EUSAGE, path, 0, 0,
                       "no header row, so the label column '%s' must be a 0-based column index",
                       label);
  char list[200];
  size_t k = 0;
  list[0] = '\0';
  for (int c = 0; c < d->cols && k < sizeof list; c++) {
    int w = snprintf(list + k, sizeof list - k, "%s%s", c ? ", " : "", d->names[c]);
    if (w < 0) break;
    k += (size_t)w;
  }
  if (k >= sizeof list) memcpy(list + sizeof list - 4, "...", 4);
  return nn_error_at(err, NN_EUSAGE, path, 0, 0, "no column named '%s' in the header (%s)", label,
                     list);
}

/* The first non-blank row (fields[0..nf)): fixes the column count, decides
 * whether it is a header (o->header, or AUTO: any field that is not a
 * number), keeps the names and resolves the label column. *header gets the
 * decision. */
static int csv_first_row(const char *path, const nn_csv_opts *o, const csv_field *fields, int nf,
                         nn_csv_data *d, int *header, nn_error *err) {
  d->cols = nf;
  *header = o->header;
  if (*header == NN_CSV_HEADER_AUTO) {
    *header = 0;
    for (int c = 0; c < nf; c++) {
      double v;
      if (parse_number(fields[c].text, &v)) *header = 1;
    }
  }
  if (*header) {
    d->names = nn_calloc((size_t)nf, sizeof *d->names);
    if (!d->names) return nn_error_set(err, NN_ENOMEM, "out of memory");
    for (int c = 0; c < nf; c++)
      if (!(d->names[c] = nn_strdup(fields[c].text)))
        return nn_error_set(err, NN_ENOMEM, "out of memory");
  }
  d->nfeat = nf;
  if (o->label) {
    int rc = resolve_label(path, o->label, d, err);
    if (rc) return rc;
    d->nfeat = nf - 1;
  }
  d->has_header = *header;
  return 0;
}

/* One data row (line `lineno`, fields[0..nf)) appended to g as row d->rows:
 * the field count must match, every field must be a finite number, and a
 * feature must fit a float. */
static int csv_data_row(const char *path, int64_t lineno, int64_t first_line,
                        const csv_field *fields, int nf, nn_csv_data *d, csv_grow *g,
                        nn_error *err) {
  if (nf != d->cols) {
    int col = nf > d->cols ? fields[d->cols].col : 0;
    return nn_error_at(err, NN_EDATA, path, (int)lineno, col,
                       "expected %d fields (as on line %lld), found %d", d->cols,
                       (long long)first_line, nf);
  }
  if (grow(g, d->rows + 1, d->nfeat, d->label_col >= 0))
    return nn_error_at(err, NN_ENOMEM, path, (int)lineno, 0, "out of memory after %lld rows",
                       (long long)d->rows);
  float *xr = g->x + (size_t)d->rows * (size_t)d->nfeat;
  for (int c = 0, k = 0; c < nf; c++) {
    double v;
    if (parse_number(fields[c].text, &v)) {
      char shown[48];
      show_field(fields[c].text, shown, sizeof shown);
      const char *name = d->names ? d->names[c] : NULL;
      if (!fields[c].text[0])
        return nn_error_at(err, NN_EDATA, path, (int)lineno, fields[c].col,
                           "field %d%s%s%s: expected a number, found an empty field", c + 1,
                           name ? " ('" : "", name ? name : "", name ? "')" : "");
      return nn_error_at(err, NN_EDATA, path, (int)lineno, fields[c].col,
                         "field %d%s%s%s: expected a finite number, found '%s'", c + 1,
                         name ? " ('" : "", name ? name : "", name ? "')" : "", shown);
    }
    if (c == d->label_col) {
      g->y[d->rows] = v;
      g->line[d->rows] = lineno;
      continue;
    }
    if (fabs(v) > FLT_MAX)
      return nn_error_at(err, NN_EDATA, path, (int)lineno, fields[c].col,
                         "field %d: %s does not fit in a 32-bit float", c + 1, fields[c].text);
    xr[k++] = (float)v;
  }
  d->rows++;
  return 0;
}

/* After the last line: what a usable file must have had. */
static int csv_check_end(const char *path, int started, const nn_csv_data *d, nn_error *err) {
  if (!started)
    return nn_error_at(err, NN_EDATA, path, 0, 0, "the file is empty: expected CSV rows of numbers");
  if (d->rows == 0) return nn_error_at(err, NN_EDATA, path, 0, 0, "no data rows after the header");
  if (d->nfeat == 0)
    return nn_error_at(err, NN_EDATA, path, 0, 0,
                       "no feature columns: the only column is the label");
  return 0;
}

int nn_csv_read(const char *path, const nn_csv_opts *opts, nn_csv_data *d, nn_error *err) {
  int rc = 0;
  char *line = NULL;
  size_t linecap = 0;
  csv_field *fields = NULL;
  int fcap = 0;
  csv_grow g = {0};
  nn_csv_opts o = {NULL, NN_CSV_HEADER_AUTO};
  if (opts) o = *opts;
  memset(d, 0, sizeof *d);
  d->label_col = -1;

  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno == ENOENT || errno == ENOTDIR)
      return nn_error_at(err, NN_ENOTFOUND, path, 0, 0, "no such file");
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
  }
  int64_t lineno = 0, first_line = 0;
  int started = 0;
  ssize_t len;
  errno = 0;
  while ((len = getline(&line, &linecap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (lineno == 1 && len >= 3 && (unsigned char)line[0] == 0xEF &&
        (unsigned char)line[1] == 0xBB && (unsigned char)line[2] == 0xBF)
      memmove(line, line + 3, (size_t)len - 2); /* UTF-8 byte-order mark */
    const char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) continue; /* blank line */
    int bad_col = 0;
    int nf = split_fields(line, &fields, &fcap, &bad_col);
    if (nf == -2) {
      rc = nn_error_at(err, NN_ENOMEM, path, (int)lineno, 0, "out of memory");
      goto cleanup;
    }
    if (nf < 0) {
      rc = nn_error_at(err, NN_EDATA, path, (int)lineno, bad_col,
                       "bad quoting: expected a closing '\"' followed by ',' or the end of the line");
      goto cleanup;
    }
    if (!started) {
      int header = 0;
      started = 1;
      first_line = lineno;
      if ((rc = csv_first_row(path, &o, fields, nf, d, &header, err))) goto cleanup;
      if (header) continue;
    }
    if ((rc = csv_data_row(path, lineno, first_line, fields, nf, d, &g, err))) goto cleanup;
    errno = 0;
  }
  if (ferror(f)) {
    rc = nn_error_at(err, NN_EIO, path, (int)lineno, 0, "read error: %s", strerror(errno));
    goto cleanup;
  }
  if ((rc = csv_check_end(path, started, d, err))) goto cleanup;
  d->x = g.x;
  d->y = g.y;
  d->y_line = g.line;
  g.x = NULL;
  g.y = NULL;
  g.line = NULL;
cleanup:
  fclose(f);
  free(line);
  free(fields);
  free(g.x);
  free(g.y);
  free(g.line);
  if (rc) nn_csv_free(d);
  return rc;
}

void nn_csv_free(nn_csv_data *d) {
  if (!d) return;
  if (d->names)
    for (int c = 0; c < d->cols; c++) free(d->names[c]);
  free(d->names);
  free(d->x);
  free(d->y);
  free(d->y_line);
  memset(d, 0, sizeof *d);
  d->label_col = -1;
}
