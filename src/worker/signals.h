/* signals.h: stop requests from the batch system (SIGUSR1, SIGTERM, SIGINT).
 *
 * A handler only records that a stop was asked for; the step loop reads the
 * count at each step boundary, the ranks agree (one all-reduce), and the run
 * stops at that step with a checkpoint. A second SIGINT ends the process at
 * once (exit 130), for a user at a terminal who does not want to wait.
 *
 * The received-signal count is the one process-wide mutable state in nntrain:
 * a signal handler can reach nothing else. */
#ifndef NN_WORKER_SIGNALS_H
#define NN_WORKER_SIGNALS_H

#include "core/err.h"

enum {
  NN_SIG_USR1 = 1,
  NN_SIG_TERM = 2,
  NN_SIG_INT = 4,
};

/* Catch the signals in `mask` (NN_SIG_*). Returns 0 or NN_EINTERNAL. */
int nn_signals_install(int mask, nn_error *err);
/* Restore the default actions. */
void nn_signals_restore(void);
/* Stop requests received so far, and the last signal number (0: none). */
int nn_signals_pending(void);
int nn_signals_last(void);
/* Parse "usr1", "term", "usr1+term" (run.stop_signals) into a mask; -1 if bad. */
int nn_signals_parse(const char *s);

#endif
