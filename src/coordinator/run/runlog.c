/* runlog.c: console lines, progress bar and metrics.jsonl (see runlog.h). */
#include "coordinator/run/runlog.h"
#include "core/mem.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "worker/fsutil.h"

/* Every number in the log: 15 significant digits keep Unix times to the
 * millisecond and print 0.001 as 0.001. */
#define RUNLOG_DUMP_FLAGS (JSON_REAL_PRECISION(15) | JSON_ENSURE_ASCII)

int nn_runlog_open(nn_runlog *log, const char *dir, FILE *out, int quiet, nn_error *err) {
  memset(log, 0, sizeof *log);
  log->out = out ? out : stdout;
  log->quiet = quiet;
  int rc = nn_mkdirs(dir, err);
  if (rc) return rc;
  if (snprintf(log->path, sizeof log->path, "%s/metrics.jsonl", dir) >= (int)sizeof log->path)
    return nn_error_at(err, NN_EINVAL, dir, 0, 0, "run directory path too long");
  log->f = fopen(log->path, "a");
  if (!log->f)
    return nn_error_at(err, NN_EIO, log->path, 0, 0, "cannot open for appending: %s",
                       strerror(errno));
  return 0;
}

void nn_runlog_close(nn_runlog *log) {
  if (log->f) fclose(log->f);
  log->f = NULL;
  free(log->hist.p);
  memset(&log->hist, 0, sizeof log->hist);
}

/* Append len bytes to the in-memory history. */
static int hist_append(nn_runlog *log, const char *text, size_t len, nn_error *err) {
  if (nn_strbuf_put(&log->hist, text, len, 4096))
    return nn_error_set(err, NN_ENOMEM, "out of memory for the metrics history");
  return 0;
}

int nn_runlog_seed_history(nn_runlog *log, const char *text, size_t len, nn_error *err) {
  nn_strbuf old = log->hist;
  memset(&log->hist, 0, sizeof log->hist);
  int rc = hist_append(log, text, len, err);
  if (!rc && old.n) rc = hist_append(log, old.p, old.n, err);
  free(old.p);
  return rc;
}

json_t *nn_runlog_record(const char *event) {
  json_t *o = json_object();
  if (o && event) json_object_set_new(o, "event", json_string(event));
  return o;
}

void nn_json_num(json_t *o, const char *key, double v) {
  json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

void nn_json_int(json_t *o, const char *key, long long v) {
  json_object_set_new(o, key, json_integer((json_int_t)v));
}

void nn_json_str(json_t *o, const char *key, const char *v) {
  /* json_string refuses invalid UTF-8: keep the bytes as Latin-1 instead of
   * dropping the field, so a path with odd bytes is still recorded. */
  json_t *s = json_string(v);
  if (!s) {
    size_t n = strlen(v);
    char *u = nn_malloc(2 * n + 1), *p = u;
    if (!u) return;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)v[i];
      if (c < 0x80) {
        *p++ = (char)c;
      } else {
        *p++ = (char)(0xC0 | (c >> 6));
        *p++ = (char)(0x80 | (c & 0x3F));
      }
    }
    s = json_stringn(u, (size_t)(p - u));
    free(u);
  }
  if (s) json_object_set_new(o, key, s);
}

void nn_json_metrics(json_t *o, const nn_metrics_result *res, const char *prefix) {
  char key[64];
  const char *us = prefix && prefix[0] ? "_" : "";
  if (!prefix) prefix = "";
#define PUT(name, v)                                               \
  do {                                                             \
    snprintf(key, sizeof key, "%s%s%s", prefix, us, (name));       \
    nn_json_num(o, key, (v));                                      \
  } while (0)
  PUT("loss", res->loss);
  if (res->nfigs > 0) { /* a task's own figures (run/tasks/) */
    for (int i = 0; i < res->nfigs; i++) PUT(res->fig_name[i], res->fig[i]);
  } else if (res->per_token) { /* a language model: bits per token = loss / ln 2 */
    PUT("bits_per_token", res->loss / log(2.0));
    PUT("accuracy", res->accuracy);
  } else if (res->multilabel) { /* accuracy: every label of the sample right */
    PUT("accuracy", res->accuracy);
    PUT("micro_precision", res->micro_precision);
    PUT("micro_recall", res->micro_recall);
    PUT("micro_f1", res->micro_f1);
    PUT("macro_precision", res->macro_precision);
    PUT("macro_recall", res->macro_recall);
    PUT("macro_f1", res->macro_f1);
    PUT("roc_auc", res->roc_auc);
    PUT("map", res->map);
  } else if (res->num_classes > 0) {
    PUT("accuracy", res->accuracy);
    for (int t = 0; t < res->ntopk; t++) {
      char name[32];
      snprintf(name, sizeof name, "top%d_accuracy", res->topk[t]);
      PUT(name, res->topk_accuracy[t]);
    }
    PUT("macro_precision", res->macro_precision);
    PUT("macro_recall", res->macro_recall);
    PUT("macro_f1", res->macro_f1);
    if (res->has_auc) PUT("roc_auc", res->roc_auc);
  } else {
    PUT("mse", res->mse);
    PUT("mae", res->mae);
    PUT("r2", res->r2);
  }
#undef PUT
}

int nn_runlog_write(nn_runlog *log, json_t *rec, nn_error *err) {
  if (!rec) return nn_error_set(err, NN_ENOMEM, "out of memory for a metrics record");
  int rc = 0;
  char *text = NULL;
  json_t *line = json_object();
  if (!line) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for a metrics record");
    goto out;
  }
  struct timeval tv;
  gettimeofday(&tv, NULL);
  nn_json_num(line, "time", (double)tv.tv_sec + tv.tv_usec * 1e-6);
  json_object_update(line, rec);
  if (!log->f) goto out;
  text = json_dumps(line, RUNLOG_DUMP_FLAGS);
  if (!text) {
    rc = nn_error_set(err, NN_ENOMEM, "out of memory for a metrics record");
    goto out;
  }
  size_t n = strlen(text);
  if (fputs(text, log->f) < 0 || fputc('\n', log->f) == EOF || fflush(log->f) != 0 ||
      ferror(log->f)) {
    rc = nn_error_at(err, NN_EIO, log->path, 0, 0, "cannot write: %s", strerror(errno));
    goto out;
  }
  rc = hist_append(log, text, n, err);
  if (!rc) rc = hist_append(log, "\n", 1, err);
out:
  free(text);
  json_decref(line);
  json_decref(rec);
  return rc;
}

void nn_runlog_say(nn_runlog *log, const char *fmt, ...) {
  if (log->quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(log->out, fmt, ap);
  va_end(ap);
  fflush(log->out);
}

void nn_fmt_duration(double s, char *buf, size_t n) {
  if (s < 0) s = 0;
  if (s < 120) snprintf(buf, n, "%.1fs", s);
  else if (s < 7200) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void nn_runlog_progress(int epoch, int epochs, long long step, long long steps, double loss,
                        double t_epoch) {
  const int W = 30;
  int fill = steps > 0 ? (int)(W * step / steps) : W;
  char bar[64];
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[W] = '\0';
  char eta[32];
  nn_fmt_duration(step > 0 ? t_epoch / (double)step * (double)(steps - step) : 0, eta,
                  sizeof eta);
  fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f eta %s   ", epoch, epochs, bar, step,
          steps, loss, eta);
  fflush(stderr);
}

void nn_runlog_progress_clear(void) { fprintf(stderr, "\r%*s\r", 100, ""); }
