/* common.c: exit codes and error printing shared by the subcommands. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int nn_exit_code(int status) {
  switch (status) {
  case NN_OK: return NN_EXIT_OK;
  case NN_EUSAGE: return NN_EXIT_USAGE;
  case NN_ESYNTAX:
  case NN_ESCHEMA: return NN_EXIT_JOB;
  case NN_EDATA:
  case NN_EIO:
  case NN_ENOTFOUND:
  case NN_ESHAPE: return NN_EXIT_DATA;
  case NN_ECKPT: return NN_EXIT_CKPT;
  case NN_EMPI: return NN_EXIT_COMM;
  case NN_ENUMERIC: return NN_EXIT_DIVERGED;
  case NN_ESTOPPED: return NN_EXIT_STOPPED;
  default: return NN_EXIT_FAILURE;
  }
}

int nn_cli_fail(const nn_error *e) {
  char buf[1024];
  nn_error_format(e, buf, sizeof buf);
  if (e->rank > 0)
    fprintf(stderr, "nntrain: rank %d: %s\n", e->rank, buf);
  else
    fprintf(stderr, "nntrain: %s\n", buf);
  return nn_exit_code(e->code);
}

int nn_cli_usage_error(const char *cmd, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "nntrain %s: %s; see 'nntrain %s --help'\n", cmd, msg, cmd);
  return NN_EXIT_USAGE;
}

int nn_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
  return 0;
}
