/* report.c: the run report as one self-contained HTML file (report.h). */
#include "coordinator/report.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/modelgraph.h"
#include "core/mem.h"
#include "worker/png.h"

#ifndef NN_CHARTJS_PATH
#define NN_CHARTJS_PATH "/usr/share/javascript/chart.js/chart.min.js"
#endif

/* Our page script and style (src/coordinator/report/, compiled in by CMake). */
extern const char nn_report_page_js[];
extern const char nn_report_page_css[];

#define REPORT_MAX_FILE (256u << 20) /* a metrics log or job file larger than this is refused */

const char *nn_report_chartjs_path(void) {
  const char *p = getenv("NNTRAIN_CHARTJS");
  return p && *p ? p : NN_CHARTJS_PATH;
}

/* The whole of a file, NUL-terminated (*len bytes). NULL when it cannot be
 * read (errno set) or is too large (EFBIG). */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (cap - n < 65536) {
      if (cap > REPORT_MAX_FILE) {
        free(buf);
        fclose(f);
        errno = EFBIG;
        return NULL;
      }
      cap = cap ? 2 * cap : 65536;
      char *nb = realloc(buf, cap + 1);
      if (!nb) {
        free(buf);
        fclose(f);
        errno = ENOMEM;
        return NULL;
      }
      buf = nb;
    }
    size_t k = fread(buf + n, 1, cap - n, f);
    n += k;
    if (k == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    errno = EIO;
    return NULL;
  }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

/* Does the line [p, e) hold the record event `ev`? (jansson writes
 * "event": "<name>"; a cheap test before parsing.) */
static int line_is_event(const char *p, const char *e, const char *ev) {
  char pat[64];
  int k = snprintf(pat, sizeof pat, "\"event\": \"%s\"", ev);
  for (const char *q = p; q + k <= e; q++)
    if (!memcmp(q, pat, (size_t)k)) return 1;
  return 0;
}

size_t nn_report_last_run(const char *text, size_t len) {
  size_t start = 0, prev = (size_t)-1, at = 0;
  int found = 0;
  while (at < len) {
    const char *p = text + at, *nl = memchr(p, '\n', len - at);
    const char *e = nl ? nl : text + len;
    if (line_is_event(p, e, "start") &&
        !(prev != (size_t)-1 && line_is_event(text + prev, p, "resume"))) {
      start = at;
      found = 1;
    }
    prev = at;
    at = (size_t)(e - text) + 1;
  }
  return found ? start : 0;
}

/* JSON lines [text, text + len) into an array of objects (lines that do not
 * parse are skipped: a record cut by a crash). */
static json_t *records_of(const char *text, size_t len) {
  json_t *a = json_array();
  size_t at = 0;
  while (a && at < len) {
    const char *p = text + at, *nl = memchr(p, '\n', len - at);
    size_t n = nl ? (size_t)(nl - p) : len - at;
    if (n > 0) {
      json_t *o = json_loadb(p, n, 0, NULL);
      if (o && json_is_object(o)) json_array_append_new(a, o);
      else json_decref(o);
    }
    at += n + 1;
  }
  return a;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* "data:image/png;base64,..." for n bytes (malloc'd), NULL on out of memory. */
static char *data_uri(const unsigned char *b, size_t n) {
  static const char head[] = "data:image/png;base64,";
  size_t out = sizeof head - 1 + 4 * ((n + 2) / 3) + 1;
  char *s = nn_malloc(out), *o = s;
  if (!s) return NULL;
  memcpy(o, head, sizeof head - 1);
  o += sizeof head - 1;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | b[i + 2];
    *o++ = B64[v >> 18], *o++ = B64[(v >> 12) & 63], *o++ = B64[(v >> 6) & 63], *o++ = B64[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0);
    *o++ = B64[v >> 18], *o++ = B64[(v >> 12) & 63];
    *o++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
  return s;
}

/* One misclassified input as a PNG data URI, scaled to its own value range
 * (inputs may be normalized). NULL on failure. */
static char *picture(const float *x, int C, int H, int W) {
  size_t npix = (size_t)H * (size_t)W;
  uint8_t *pix = nn_malloc(npix * (size_t)C);
  if (!pix) return NULL;
  float lo, hi;
  nn_png_minmax(x, npix * (size_t)C, &lo, &hi);
  for (size_t p = 0; p < npix; p++) /* planar [C, H, W] -> interleaved */
    for (int c = 0; c < C; c++) pix[p * (size_t)C + (size_t)c] = nn_png_byte(x[(size_t)c * npix + p], lo, hi);
  char *png = NULL, *uri = NULL;
  size_t len = 0;
  nn_error e;
  nn_error_clear(&e);
  if (!nn_png_encode(pix, W, H, C, &png, &len, &e)) uri = data_uri((unsigned char *)png, len);
  free(png);
  free(pix);
  return uri;
}

static json_t *num_array(const double *v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n && a; i++) json_array_append_new(a, json_real(v[i]));
  return a;
}

/* The last evaluation: its figures and, for classification, the confusion
 * matrix and per-class figures. */
static json_t *eval_json(const nn_metrics_result *r, const char *set) {
  json_t *o = json_object();
  json_object_set_new(o, "set", json_string(set ? set : "test"));
  json_object_set_new(o, "count", json_real(r->count));
  json_object_set_new(o, "loss", json_real(r->loss));
  int k = r->num_classes;
  if (k > 0 && !r->multilabel && r->confusion) {
    json_object_set_new(o, "accuracy", json_real(r->accuracy));
    json_object_set_new(o, "classes", json_integer(k));
    json_t *cm = json_array();
    for (int i = 0; i < k; i++) {
      json_t *row = json_array();
      for (int j = 0; j < k; j++)
        json_array_append_new(row, json_integer((json_int_t)r->confusion[(size_t)i * (size_t)k + (size_t)j]));
      json_array_append_new(cm, row);
    }
    json_object_set_new(o, "confusion", cm);
    json_object_set_new(o, "precision", num_array(r->precision, k));
    json_object_set_new(o, "recall", num_array(r->recall, k));
    json_object_set_new(o, "f1", num_array(r->f1, k));
    json_object_set_new(o, "support", num_array(r->support, k));
    json_object_set_new(o, "macro_f1", json_real(r->macro_f1));
  }
  return o;
}

static json_t *misses_json(const nn_report_in *in) {
  json_t *a = json_array();
  const nn_eval_misses *m = in->misses;
  if (!m || (in->img_c != 1 && in->img_c != 3) || in->img_h < 1 || in->img_w < 1 ||
      m->width != (size_t)in->img_c * (size_t)in->img_h * (size_t)in->img_w)
    return a;
  for (int i = 0; i < m->n && a; i++) {
    char *uri = picture(m->x + (size_t)i * m->width, in->img_c, in->img_h, in->img_w);
    if (!uri) continue;
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer((json_int_t)m->index[i]));
    json_object_set_new(o, "pred", json_integer(m->pred[i]));
    json_object_set_new(o, "true", json_integer(m->truth[i]));
    json_object_set_new(o, "png", json_string(uri));
    free(uri);
    json_array_append_new(a, o);
  }
  return a;
}

/* The page's data: everything the script draws. */
static json_t *page_data(const nn_report_in *in, int *graph_nodes) {
  json_t *d = json_object();
  char when[32];
  time_t t = time(NULL);
  struct tm tm;
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
  json_object_set_new(d, "title", json_string(in->title ? in->title : "run"));
  json_object_set_new(d, "status", json_string(in->status ? in->status : ""));
  json_object_set_new(d, "generated", json_string(when));
  json_object_set_new(d, "dir", json_string(in->dir ? in->dir : ""));
  /* the run's records */
  char *own = NULL;
  const char *text = in->metrics;
  size_t len = in->metrics_len;
  if (!text && in->dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", in->dir);
    if ((own = slurp(path, &len)) != NULL) {
      size_t at = nn_report_last_run(own, len);
      text = own + at;
      len -= at;
    }
  }
  json_object_set_new(d, "records", text ? records_of(text, len) : json_array());
  free(own);
  /* lr-find, k-fold */
  json_t *lrf = json_null(), *kf = json_null();
  if (in->dir) {
    char path[4200];
    size_t n;
    snprintf(path, sizeof path, "%s/lr_find.jsonl", in->dir);
    char *s = slurp(path, &n);
    if (s) {
      json_decref(lrf);
      lrf = records_of(s, n);
      free(s);
    }
    snprintf(path, sizeof path, "%s/kfold.json", in->dir);
    json_t *k = json_load_file(path, 0, NULL);
    if (k) {
      json_decref(kf);
      kf = k;
    }
  }
  json_object_set_new(d, "lrfind", lrf);
  json_object_set_new(d, "kfold", kf);
  json_object_set_new(d, "eval", in->eval ? eval_json(in->eval, in->eval_set) : json_null());
  json_object_set_new(d, "misclassified", misses_json(in));
  /* the job file */
  json_t *job = json_object();
  json_object_set_new(job, "path", json_string(in->job_path ? in->job_path : ""));
  char *jt = in->job_path ? slurp(in->job_path, NULL) : NULL;
  json_t *jtext = jt ? json_string(jt) : NULL; /* NULL too when not UTF-8 */
  json_object_set_new(job, "text", jtext ? jtext : json_null());
  free(jt);
  json_object_set_new(d, "job", job);
  int layers = 0;
  for (int i = 0; in->reps && i < in->nrep; i++)
    if (in->reps[i].have_model) layers += in->reps[i].model.nlayers + 1; /* + its input */
  *graph_nodes = layers;
  json_object_set_new(d, "graph_nodes", json_integer(layers));
  return d;
}

/* fwrite of a NUL-terminated string; 0 or -1. */
static int put(FILE *f, const char *s) {
  size_t n = strlen(s);
  return fwrite(s, 1, n, f) == n ? 0 : -1;
}

/* Text for inside <script>: no "</" may close the element early (the JSON is
 * dumped with JSON_ESCAPE_SLASH; this guards the other scripts). */
static int put_script(FILE *f, const char *s) {
  for (const char *p = s; *p;) {
    const char *q = strstr(p, "</");
    if (!q) return put(f, p);
    if (fwrite(p, 1, (size_t)(q - p), f) != (size_t)(q - p) || put(f, "<\\/") != 0) return -1;
    p = q + 2;
  }
  return 0;
}

int nn_report_write(const nn_report_in *in, const char *out, nn_error *err) {
  const char *cjs = nn_report_chartjs_path();
  size_t cjs_len = 0;
  char *chart = slurp(cjs, &cjs_len);
  if (!chart)
    return nn_error_at(err, NN_EIO, cjs, 0, 0, "cannot read Chart.js (%s): install Debian's "
                       "libjs-chart.js, or set NNTRAIN_CHARTJS to its chart.min.js",
                       strerror(errno));
  int nodes = 0;
  json_t *d = page_data(in, &nodes);
  char *json = d ? json_dumps(d, JSON_COMPACT | JSON_ESCAPE_SLASH) : NULL;
  json_decref(d);
  char *svg = NULL;
  size_t svg_len = 0;
  int rc = 0;
  if (!json) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  if (!rc && in->reps && nodes > 0) {
    nn_error ge;
    nn_error_clear(&ge);
    if (nn_modelgraph_svg(in->title ? in->title : "model", in->reps, in->nrep, &svg, &svg_len,
                          &ge) != 0)
      svg = NULL; /* the page says the graph is missing */
  }
  size_t n = strlen(out) + 5;
  char *tmp = rc ? NULL : nn_malloc(n);
  if (!rc && !tmp) rc = nn_error_set(err, NN_ENOMEM, "out of memory");
  FILE *f = NULL;
  if (!rc) {
    snprintf(tmp, n, "%s.tmp", out);
    if (!(f = fopen(tmp, "w")))
      rc = nn_error_at(err, NN_EIO, out, 0, 0, "cannot write the report: %s", strerror(errno));
  }
  if (!rc) {
    const char *s = svg ? strstr(svg, "<svg") : NULL; /* drop the XML prolog and doctype */
    int bad = put(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<meta name=\"generator\" content=\"nntrain report\">\n<title>nntrain: ") ||
              put(f, "run report") ||
              put(f, "</title>\n<style>\n") || put(f, nn_report_page_css) ||
              put(f, "</style>\n<script>\n") || put_script(f, chart) ||
              put(f, "\n</script>\n</head>\n<body>\n<script type=\"application/json\" "
                     "id=\"nn-data\">") ||
              put(f, json) || put(f, "</script>\n<template id=\"nn-graph-svg\">") ||
              (s ? put(f, s) : 0) || put(f, "</template>\n<script>\n") ||
              put_script(f, nn_report_page_js) || put(f, "\n</script>\n</body>\n</html>\n");
    if (ferror(f)) bad = 1;
    if (fclose(f) != 0) bad = 1;
    if (!bad && rename(tmp, out) != 0) bad = 1;
    if (bad) {
      rc = nn_error_at(err, NN_EIO, out, 0, 0, "cannot write the report: %s",
                       strerror(errno ? errno : EIO));
      remove(tmp);
    }
  }
  free(tmp);
  free(svg);
  free(json);
  free(chart);
  return rc;
}
