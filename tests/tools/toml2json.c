/* toml2json.c: test tool. Reads a TOML document on stdin and prints it as
 * toml-test tagged JSON on stdout:
 *   {"key": {"type": "integer", "value": "42"}, "arr": [...], "tab": {...}}
 * Scalars are {"type", "value"} objects with the value as a string; arrays
 * are JSON arrays; tables are JSON objects. Floats are printed with the
 * fewest digits that round-trip ("inf", "-inf", "nan" for the specials);
 * date-times in RFC 3339 form. Exit 0 on success; 1 with the error on stderr
 * for an invalid document; 2 if stdin cannot be read. Not part of nntrain. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml/toml.h"

static void put_json_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t k = 0; k < n; k++) {
    unsigned char c = (unsigned char)s[k];
    switch (c) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    default:
      if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
      else fputc(c, f);
    }
  }
  fputc('"', f);
}

/* Shortest "%.*g" form of d that reads back as d exactly; out holds >= 32 bytes. */
static void format_float(double d, char *out, size_t cap) {
  if (isnan(d)) {
    snprintf(out, cap, "nan");
    return;
  }
  if (isinf(d)) {
    snprintf(out, cap, d < 0 ? "-inf" : "inf");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, d);
    if (strtod(out, NULL) == d) break;
  }
  /* Make it read as a float: 3 -> 3.0 (but keep 1e+30 as is). */
  if (!strpbrk(out, ".eEn")) {
    size_t l = strlen(out);
    if (l + 2 < cap) memcpy(out + l, ".0", 3);
  }
}

static void format_datetime(const nn_toml_value *v, char *out, size_t cap) {
  const nn_toml_datetime *d = &v->u.dt;
  size_t k = 0;
  if (v->type != NN_TOML_TIME_LOCAL)
    k += (size_t)snprintf(out + k, cap - k, "%04d-%02d-%02d", d->year, d->month, d->day);
  if (v->type == NN_TOML_DATE_LOCAL) return;
  if (v->type != NN_TOML_TIME_LOCAL) out[k++] = 'T';
  k += (size_t)snprintf(out + k, cap - k, "%02d:%02d:%02d", d->hour, d->minute, d->second);
  if (d->frac_digits > 0) {
    char ns[16];
    int nd = d->frac_digits < 9 ? d->frac_digits : 9;
    snprintf(ns, sizeof ns, "%09d", d->nanosecond);
    k += (size_t)snprintf(out + k, cap - k, ".%.*s", nd, ns);
  }
  if (v->type == NN_TOML_DATETIME) {
    if (d->offset_z) {
      snprintf(out + k, cap - k, "Z");
    } else {
      int m = d->offset_minutes < 0 ? -d->offset_minutes : d->offset_minutes;
      snprintf(out + k, cap - k, "%c%02d:%02d", d->offset_minutes < 0 ? '-' : '+', m / 60,
               m % 60);
    }
  }
}

static const char *tag(nn_toml_type t) {
  switch (t) {
  case NN_TOML_STRING: return "string";
  case NN_TOML_INTEGER: return "integer";
  case NN_TOML_FLOAT: return "float";
  case NN_TOML_BOOL: return "bool";
  case NN_TOML_DATETIME: return "datetime";
  case NN_TOML_DATETIME_LOCAL: return "datetime-local";
  case NN_TOML_DATE_LOCAL: return "date-local";
  case NN_TOML_TIME_LOCAL: return "time-local";
  default: return "?";
  }
}

/* Recursion depth is bounded by the parser's nesting limit. */
static void put_value(FILE *f, const nn_toml_value *v) {
  char buf[96];
  if (v->type == NN_TOML_TABLE) {
    fputc('{', f);
    for (size_t k = 0; k < v->u.tab.n; k++) {
      if (k) fputc(',', f);
      put_json_string(f, v->u.tab.kv[k].key, v->u.tab.kv[k].key_len);
      fputc(':', f);
      put_value(f, v->u.tab.kv[k].value);
    }
    fputc('}', f);
    return;
  }
  if (v->type == NN_TOML_ARRAY) {
    fputc('[', f);
    for (size_t k = 0; k < v->u.arr.n; k++) {
      if (k) fputc(',', f);
      put_value(f, v->u.arr.items[k]);
    }
    fputc(']', f);
    return;
  }
  fprintf(f, "{\"type\":\"%s\",\"value\":", tag(v->type));
  switch (v->type) {
  case NN_TOML_STRING: put_json_string(f, v->u.s.ptr, v->u.s.len); break;
  case NN_TOML_INTEGER: fprintf(f, "\"%lld\"", (long long)v->u.i); break;
  case NN_TOML_FLOAT:
    format_float(v->u.f, buf, sizeof buf);
    fprintf(f, "\"%s\"", buf);
    break;
  case NN_TOML_BOOL: fputs(v->u.b ? "\"true\"" : "\"false\"", f); break;
  default:
    format_datetime(v, buf, sizeof buf);
    fprintf(f, "\"%s\"", buf);
  }
  fputc('}', f);
}

int main(void) {
  size_t n = 0, cap = 1 << 16;
  char *buf = malloc(cap);
  nn_toml_value *root = NULL;
  nn_error err;
  int rc = 2;
  nn_error_clear(&err);
  if (!buf) goto done;
  for (;;) {
    if (n == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) goto done;
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, stdin);
    n += got;
    if (got == 0) break;
  }
  if (ferror(stdin)) {
    fprintf(stderr, "toml2json: cannot read stdin\n");
    goto done;
  }
  if (nn_toml_parse(buf, n, "<stdin>", &root, &err) != 0) {
    char line[1024];
    fprintf(stderr, "%s\n", nn_error_format(&err, line, sizeof line));
    rc = 1;
    goto done;
  }
  put_value(stdout, root);
  fputc('\n', stdout);
  rc = 0;
done:
  nn_toml_free(root);
  free(buf);
  return rc;
}
