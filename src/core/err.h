/* err.h: status codes and the error record used by every nntrain module.
 *
 * Library functions return 0 on success or a negative NN_E* code, and fill an
 * nn_error with what went wrong and where (file, line, column, dataset or key,
 * rank). Only the CLI turns a record into a message and an exit code; nothing
 * below it prints or exits. One list macro generates the enum, nn_strerror and
 * nn_err_name so they cannot drift apart. */
#ifndef NN_CORE_ERR_H
#define NN_CORE_ERR_H

#include <stddef.h>

/* XX(name, value, description) */
#define NN_ERRNO_MAP(XX)                                               \
  XX(EINVAL,    -1,  "invalid argument")                               \
  XX(ENOMEM,    -2,  "out of memory")                                  \
  XX(EIO,       -3,  "input/output error")                             \
  XX(ESYNTAX,   -4,  "syntax error")                                   \
  XX(ESCHEMA,   -5,  "invalid job specification")                      \
  XX(EDATA,     -6,  "invalid data")                                   \
  XX(ESHAPE,    -7,  "shape mismatch")                                 \
  XX(ECKPT,     -8,  "invalid checkpoint")                             \
  XX(EMPI,      -9,  "communication failure")                          \
  XX(EUSAGE,    -10, "bad command-line usage")                         \
  XX(ENOTFOUND, -11, "not found")                                      \
  XX(ENUMERIC,  -12, "non-finite value")                               \
  XX(ESTOPPED,  -13, "stopped on request")                             \
  XX(EINTERNAL, -14, "internal error")

typedef enum nn_status {
  NN_OK = 0,
#define NN__ERR_ENUM(name, val, desc) NN_##name = (val),
  NN_ERRNO_MAP(NN__ERR_ENUM)
#undef NN__ERR_ENUM
} nn_status;

/* Description of a status code ("invalid argument"); never NULL. */
const char *nn_strerror(int code);
/* Symbolic name of a status code ("NN_EINVAL"); never NULL. */
const char *nn_err_name(int code);

/* Where and what went wrong. Zero-initialise (or nn_error_clear) before use;
 * the first error set wins only if the caller checks returns, so setters
 * overwrite: the innermost failure is recorded, callers may add context with
 * nn_error_prefix. */
typedef struct nn_error {
  int code;          /* NN_E* value, 0 when clear */
  char file[256];    /* file the error is about, "" if none */
  int line;          /* 1-based line in file, 0 if not applicable */
  int col;           /* 1-based column in file, 0 if not applicable */
  char where[128];   /* key, dataset or layer the error is about, "" if none */
  int rank;          /* MPI rank that saw the error, -1 if unknown */
  char msg[512];     /* human-readable message, no trailing newline */
} nn_error;

void nn_error_clear(nn_error *e);

/* Set code and message (printf-style); keeps no position. Returns code, so
 * `return nn_error_set(err, NN_EINVAL, "...")` reads naturally. err may be NULL. */
int nn_error_set(nn_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As nn_error_set, with a file position (line/col may be 0). */
int nn_error_at(nn_error *e, int code, const char *file, int line, int col,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Put "text: " in front of the current message (e.g. which layer failed). */
void nn_error_prefix(nn_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line: "file:line:col: message" (parts that are unset are omitted),
 * written to buf (always NUL-terminated). Returns buf. */
char *nn_error_format(const nn_error *e, char *buf, size_t n);

#endif
