/* metrics_log.c: the JSON-lines metrics log (see metrics_log.h). */
#include "coordinator/metrics_log.h"

#include "worker/fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

int nn_metrics_open(nn_metrics_log *log, const char *dir, nn_error *err) {
  memset(log, 0, sizeof *log);
  int rc = nn_mkdirs(dir, err);
  if (rc) return rc;
  snprintf(log->path, sizeof log->path, "%s/metrics.jsonl", dir);
  log->f = fopen(log->path, "a");
  if (!log->f)
    return nn_error_at(err, NN_EIO, log->path, 0, 0, "cannot open for appending: %s",
                       strerror(errno));
  return 0;
}

/* Append len bytes to the in-memory history. */
static int hist_append(nn_metrics_log *log, const char *text, size_t len, nn_error *err) {
  if (log->hist_len + len + 1 > log->hist_cap) {
    size_t cap = log->hist_cap ? log->hist_cap : 4096;
    while (cap < log->hist_len + len + 1) cap *= 2;
    char *h = realloc(log->hist, cap);
    if (!h) return nn_error_set(err, NN_ENOMEM, "out of memory for the metrics history");
    log->hist = h;
    log->hist_cap = cap;
  }
  memcpy(log->hist + log->hist_len, text, len);
  log->hist_len += len;
  log->hist[log->hist_len] = '\0';
  return 0;
}

int nn_metrics_seed_history(nn_metrics_log *log, const char *text, size_t len, nn_error *err) {
  char *old = log->hist;
  size_t old_len = log->hist_len;
  log->hist = NULL;
  log->hist_len = log->hist_cap = 0;
  int rc = hist_append(log, text, len, err);
  if (!rc && old_len) rc = hist_append(log, old, old_len, err);
  free(old);
  return rc;
}

int nn_metrics_write(nn_metrics_log *log, const char *json_fields, nn_error *err) {
  if (!log->f) return 0;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  char line[4096];
  int k = snprintf(line, sizeof line, "{\"time\": %.3f, %s}\n", tv.tv_sec + tv.tv_usec * 1e-6,
                   json_fields);
  if (k < 0 || k >= (int)sizeof line)
    return nn_error_at(err, NN_EINTERNAL, log->path, 0, 0, "metrics record too long");
  fputs(line, log->f);
  if (fflush(log->f) != 0 || ferror(log->f))
    return nn_error_at(err, NN_EIO, log->path, 0, 0, "cannot write: %s", strerror(errno));
  return hist_append(log, line, (size_t)k, err);
}

void nn_metrics_close(nn_metrics_log *log) {
  if (log->f) fclose(log->f);
  log->f = NULL;
  free(log->hist);
  log->hist = NULL;
  log->hist_len = log->hist_cap = 0;
}
