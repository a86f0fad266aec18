/* err.c: status code names and the error record (see err.h). */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *nn_strerror(int code) {
  switch (code) {
  case 0: return "success";
#define NN__ERR_STR(name, val, desc) case (val): return desc;
    NN_ERRNO_MAP(NN__ERR_STR)
#undef NN__ERR_STR
  }
  return "unknown error";
}

const char *nn_err_name(int code) {
  switch (code) {
  case 0: return "NN_OK";
#define NN__ERR_NAME(name, val, desc) case (val): return "NN_" #name;
    NN_ERRNO_MAP(NN__ERR_NAME)
#undef NN__ERR_NAME
  }
  return "NN_UNKNOWN";
}

void nn_error_clear(nn_error *e) {
  if (!e) return;
  memset(e, 0, sizeof *e);
  e->rank = -1;
}

static void error_vset(nn_error *e, int code, const char *file, int line,
                       int col, const char *fmt, va_list ap) {
  int rank = e->rank;
  memset(e, 0, sizeof *e);
  e->rank = rank;
  e->code = code;
  if (file) snprintf(e->file, sizeof e->file, "%s", file);
  e->line = line;
  e->col = col;
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int nn_error_set(nn_error *e, int code, const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  error_vset(e, code, NULL, 0, 0, fmt, ap);
  va_end(ap);
  return code;
}

int nn_error_at(nn_error *e, int code, const char *file, int line, int col,
                const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  error_vset(e, code, file, line, col, fmt, ap);
  va_end(ap);
  return code;
}

void nn_error_prefix(nn_error *e, const char *fmt, ...) {
  if (!e) return;
  char pre[256], old[sizeof e->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  /* A message longer than the record is cut: fine for a one-line error. */
  if (snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old) >= (int)sizeof e->msg)
    e->msg[sizeof e->msg - 1] = '\0';
}

char *nn_error_format(const nn_error *e, char *buf, size_t n) {
  if (!buf || n == 0) return buf;
  size_t k = 0;
  buf[0] = '\0';
#define NN__PUT(...)                                                       \
  do {                                                                     \
    if (k < n) {                                                           \
      int w_ = snprintf(buf + k, n - k, __VA_ARGS__);                      \
      if (w_ > 0) k += (size_t)w_;                                         \
    }                                                                      \
  } while (0)
  if (e->file[0]) {
    NN__PUT("%s:", e->file);
    if (e->line > 0) NN__PUT("%d:", e->line);
    if (e->line > 0 && e->col > 0) NN__PUT("%d:", e->col);
    NN__PUT(" ");
  }
  NN__PUT("%s", e->msg[0] ? e->msg : nn_strerror(e->code));
#undef NN__PUT
  return buf;
}
