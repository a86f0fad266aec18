/* evaluate.h: the one evaluation loop: a replica's model over a loader's
 * data on every rank (each its contiguous slice of every batch, as in
 * training), the figures summed over the ranks. Used by validation and the
 * test set during training, the best-model re-evaluation and `nntrain eval`. */
#ifndef NN_COORDINATOR_RUN_EVALUATE_H
#define NN_COORDINATOR_RUN_EVALUATE_H

#include <mpi.h>

#include "coordinator/run/replica.h"
#include "core/metrics.h"
#include "worker/allreduce.h"
#include "worker/loader.h"

/* Misclassified samples an evaluation keeps (the run report's pictures):
 * the first `cap` of the data order whose argmax is not their label, with
 * their input. Each rank keeps its own first cap; nn_evaluate gathers them on
 * rank 0 (the lowest sample indices win, so the pick is the same on any
 * number of ranks). Set r->misses to collect; classification only. */
typedef struct nn_eval_misses {
  int cap;           /* samples kept */
  size_t width;      /* floats per sample (the input's size) */
  int n;             /* kept: this rank's during the pass, rank 0's merge after it */
  int N;             /* ranks */
  int64_t *index;    /* [cap * N]: position in the data order */
  int32_t *pred, *truth;  /* [cap * N] */
  float *x;          /* [cap * N, width] the inputs as the model saw them */
  int *counts, *displs;   /* [N] gather work space */
} nn_eval_misses;

int nn_eval_misses_init(nn_eval_misses *m, int cap, size_t width, int N, nn_error *err);
void nn_eval_misses_free(nn_eval_misses *m);

/* The accumulator configuration for data di: classes or targets, logits as
 * scores, top-k accuracy when 1 < top_k < classes (0: none). */
nn_metrics_config nn_eval_metrics_config(const nn_dataset_info *di, int top_k);

/* Evaluate r on L (started at its beginning here) with accumulator acc
 * (reset here); the sums are reduced over comm (through the watched barrier
 * ctl first when it is not NULL) and every rank gets *res (free with
 * nn_metrics_result_free). Collective on comm. */
int nn_evaluate(nn_replica *r, nn_loader *L, nn_metrics_acc *acc, MPI_Comm comm, nn_ring *ctl,
                int64_t step, nn_metrics_result *res, nn_error *err);

#endif
