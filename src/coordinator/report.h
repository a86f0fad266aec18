/* report.h: the run report, one self-contained HTML file (docs/report.md).
 *
 * The page holds everything it shows: the run's records (metrics.jsonl:
 * per-step and per-epoch loss, accuracy, learning rate, throughput,
 * checkpoint pauses), the learning-rate range test (lr_find.jsonl), k-fold
 * results (kfold.json), the model graph as SVG (Graphviz, modelgraph.h), the
 * last evaluation's confusion matrix and per-class precision/recall/F1, a
 * handful of misclassified inputs as PNG data URIs, and the job file. The
 * plots are drawn by Chart.js, read at write time from Debian's
 * libjs-chart.js (NN_CHARTJS_PATH, or $NNTRAIN_CHARTJS) and inlined, so the
 * file needs no network and no other file to be viewed. Our own page script
 * and style (src/coordinator/report/page.js, page.css) are compiled in.
 *
 * Written by `nntrain report RUN_DIR` and, at the end of every epoch and of
 * the run, by the training run itself (rank 0), as PATH.tmp renamed over
 * PATH, so a browser reloading it never sees half a page. */
#ifndef NN_COORDINATOR_REPORT_H
#define NN_COORDINATOR_REPORT_H

#include <stddef.h>

#include "coordinator/run/evaluate.h"
#include "coordinator/run/replica.h"
#include "core/err.h"
#include "core/metrics.h"

typedef struct nn_report_in {
  const char *dir;           /* run directory: lr_find.jsonl, kfold.json (optional files) */
  const char *title;         /* the job's name */
  const char *status;        /* e.g. "running: epoch 3 of 12", "finished" */
  const char *metrics;       /* the run's metrics.jsonl lines (this run's, with the runs it
                                resumed), metrics_len bytes; NULL: read dir/metrics.jsonl
                                from its newest fresh start on */
  size_t metrics_len;
  const char *job_path;      /* the job file (its text is shown; NULL or unreadable: not) */
  const nn_replica *reps;    /* the model graph (NULL: none) */
  int nrep;
  const nn_metrics_result *eval; /* the last evaluation (NULL: none); classification
                                    results give the confusion matrix and per-class figures */
  const char *eval_set;      /* "test" or "validation" */
  const nn_eval_misses *misses; /* misclassified inputs (NULL: none) */
  int img_c, img_h, img_w;   /* their shape, when pictures (C 1 or 3): else 0 */
} nn_report_in;

/* The path of Chart.js this build reads ($NNTRAIN_CHARTJS, else the
 * configured NN_CHARTJS_PATH). */
const char *nn_report_chartjs_path(void);

/* Write the report to `out`. NN_EIO naming the file (out not writable;
 * Chart.js missing: the message says to install libjs-chart.js); NN_ENOMEM. */
int nn_report_write(const nn_report_in *in, const char *out, nn_error *err);

/* This run's lines of a metrics.jsonl text: from its last fresh start (a
 * "start" record not preceded by a "resume" one) to the end; the whole text
 * when it has no start. Returns the offset of the first line. */
size_t nn_report_last_run(const char *text, size_t len);

#endif
