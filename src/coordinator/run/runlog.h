/* runlog.h: everything a run tells its user, in one place: the console lines
 * (start, epochs, summaries), the live progress bar, and the metrics log
 * RUN_DIR/metrics.jsonl (one JSON object per line, appended and flushed as
 * each record is complete, so a crash loses at most the record being written
 * and an earlier run's lines are never lost).
 *
 * JSON goes through jansson: any string a user wrote (job name, paths) is
 * escaped correctly, and non-finite numbers, which JSON cannot hold, are
 * written as null. Only rank 0 opens a run log; the others call nothing here. */
#ifndef NN_COORDINATOR_RUN_RUNLOG_H
#define NN_COORDINATOR_RUN_RUNLOG_H

#include <jansson.h>
#include <stdio.h>

#include "core/err.h"
#include "core/metrics.h"
#include "core/strbuf.h"

typedef struct nn_runlog {
  FILE *f;               /* RUN_DIR/metrics.jsonl, or NULL (not opened: records dropped) */
  char path[1100];
  nn_strbuf hist;        /* every line of this run (and of the runs it resumed), for the
                            checkpoints' metrics history; NUL-terminated */
  FILE *out;             /* console lines (stdout unless the caller says otherwise) */
  int quiet;             /* no console lines */
} nn_runlog;

/* Create the run directory (and parents) and open dir/metrics.jsonl for
 * appending; console lines go to out (NULL = stdout). */
int nn_runlog_open(nn_runlog *log, const char *dir, FILE *out, int quiet, nn_error *err);
void nn_runlog_close(nn_runlog *log);

/* Put `text` (earlier lines, e.g. a checkpoint's history) in front of the
 * history; the file is not touched. */
int nn_runlog_seed_history(nn_runlog *log, const char *text, size_t len, nn_error *err);

/* A new record {"event": event} (event NULL: an empty record, e.g. an epoch's).
 * Never NULL (jansson aborts only on out-of-memory in its allocator wrappers;
 * a NULL return here is treated as out of memory by nn_runlog_write). */
json_t *nn_runlog_record(const char *event);
/* Setters that keep records readable at the call site. Non-finite -> null. */
void nn_json_num(json_t *o, const char *key, double v);
void nn_json_int(json_t *o, const char *key, long long v);
void nn_json_str(json_t *o, const char *key, const char *v);
/* Add a metrics result's figures as "<prefix>_loss", "<prefix>_accuracy", ...
 * (prefix "" for bare names). Classification: loss, accuracy, top<k>_accuracy,
 * macro_precision, macro_recall, macro_f1, roc_auc (binary; one-vs-rest macro
 * for k > 2); multi-label: loss, accuracy (exact match), micro_ and macro_
 * precision/recall/f1, roc_auc (macro over labels), map; regression: loss,
 * mse, mae, r2. The val_* monitor names are these keys (decide.c). */
void nn_json_metrics(json_t *o, const nn_metrics_result *res, const char *prefix);

/* Append one record (stolen: freed here) as a line {"time": <unix s>, ...}
 * to the file and the history. NN_EIO names the file; NN_ENOMEM. */
int nn_runlog_write(nn_runlog *log, json_t *rec, nn_error *err);

/* Console: a printf-style line (nothing when quiet). */
void nn_runlog_say(nn_runlog *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "12.3s", "4m05s", "1h02m". */
void nn_fmt_duration(double s, char *buf, size_t n);

/* Live progress on stderr (a terminal): epoch, bar, step, running loss, ETA.
 * nn_runlog_progress_clear erases the line. */
void nn_runlog_progress(int epoch, int epochs, long long step, long long steps, double loss,
                        double t_epoch);
void nn_runlog_progress_clear(void);

#endif
