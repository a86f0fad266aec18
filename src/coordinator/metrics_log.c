/* metrics_log.c: the JSON-lines metrics log (see metrics_log.h). */
#include "coordinator/metrics_log.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

int nn_mkdirs(const char *dir, nn_error *err) {
  char p[1100];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
    return nn_error_at(err, NN_EINVAL, dir, 0, 0, "path too long");
  for (char *s = p + 1; ; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return nn_error_at(err, NN_EIO, p, 0, 0, "cannot create directory: %s", strerror(errno));
      struct stat st;
      if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return nn_error_at(err, NN_EIO, p, 0, 0, "exists and is not a directory");
      *s = c;
      if (c == '\0') break;
    }
  }
  return 0;
}

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

int nn_metrics_write(nn_metrics_log *log, const char *json_fields, nn_error *err) {
  if (!log->f) return 0;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  fprintf(log->f, "{\"time\": %.3f, %s}\n", tv.tv_sec + tv.tv_usec * 1e-6, json_fields);
  if (fflush(log->f) != 0 || ferror(log->f))
    return nn_error_at(err, NN_EIO, log->path, 0, 0, "cannot write: %s", strerror(errno));
  return 0;
}

void nn_metrics_close(nn_metrics_log *log) {
  if (log->f) fclose(log->f);
  log->f = NULL;
}
