/* metrics_log.h: the run's metrics log, RUN_DIR/metrics.jsonl: one JSON object per
 * line, appended and flushed as each record is complete, so a crash loses at
 * most the record being written and an earlier run's lines are never lost. */
#ifndef NN_COORDINATOR_METRICS_LOG_H
#define NN_COORDINATOR_METRICS_LOG_H

#include <stdio.h>

#include "core/err.h"

typedef struct nn_metrics_log {
  FILE *f;
  char path[1100];
  char *hist;            /* every line of this run (and of the runs it resumed), for
                            checkpoints' metrics history; NUL-terminated */
  size_t hist_len, hist_cap;
} nn_metrics_log;

/* Put `text` (earlier lines, e.g. a checkpoint's history) in front of the
 * history; the file is not touched. */
int nn_metrics_seed_history(nn_metrics_log *log, const char *text, size_t len, nn_error *err);

/* Create the run directory (and parents) and open dir/metrics.jsonl for appending. */
int nn_metrics_open(nn_metrics_log *log, const char *dir, nn_error *err);
/* Append one record: `json_fields` is the inside of an object ("\"epoch\": 1, ...").
 * Adds "time" (Unix seconds). */
int nn_metrics_write(nn_metrics_log *log, const char *json_fields, nn_error *err);
void nn_metrics_close(nn_metrics_log *log);


#endif
