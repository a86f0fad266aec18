/* signals.c: stop requests (see signals.h). */
#define _GNU_SOURCE
#include "worker/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t nn__stop_count; /* the one global: handlers reach nothing else */
static volatile sig_atomic_t nn__last_signal;
static volatile sig_atomic_t nn__int_count;
static int nn__installed_mask;

static void on_signal(int sig) {
  if (sig == SIGINT && ++nn__int_count >= 2) {
    static const char msg[] = "nntrain: second interrupt: stopping now, without a checkpoint\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(130);
  }
  nn__last_signal = sig;
  nn__stop_count++;
}

int nn_signals_install(int mask, nn_error *err) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  const int sigs[3] = {SIGUSR1, SIGTERM, SIGINT};
  const int bits[3] = {NN_SIG_USR1, NN_SIG_TERM, NN_SIG_INT};
  for (int i = 0; i < 3; i++)
    if ((mask & bits[i]) && sigaction(sigs[i], &sa, NULL) != 0)
      return nn_error_set(err, NN_EINTERNAL, "cannot install the handler for signal %d", sigs[i]);
  nn__installed_mask = mask;
  return 0;
}

void nn_signals_restore(void) {
  const int sigs[3] = {SIGUSR1, SIGTERM, SIGINT};
  const int bits[3] = {NN_SIG_USR1, NN_SIG_TERM, NN_SIG_INT};
  for (int i = 0; i < 3; i++)
    if (nn__installed_mask & bits[i]) signal(sigs[i], SIG_DFL);
  nn__installed_mask = 0;
}

int nn_signals_pending(void) { return (int)nn__stop_count; }
int nn_signals_last(void) { return (int)nn__last_signal; }

int nn_signals_parse(const char *s) {
  if (!strcmp(s, "usr1")) return NN_SIG_USR1;
  if (!strcmp(s, "term")) return NN_SIG_TERM;
  if (!strcmp(s, "usr1+term") || !strcmp(s, "term+usr1")) return NN_SIG_USR1 | NN_SIG_TERM;
  return -1;
}
