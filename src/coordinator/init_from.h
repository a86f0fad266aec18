/* init_from.h: [init] from = "FILE.h5": start a fresh run from another
 * model's tensors (fine-tuning, transfer; docs/finetuning.md).
 *
 * After the model's own initialization, every parameter and buffer of the
 * model whose layer name and tensor name are found in the file is replaced
 * by the file's values:
 *   /params/<layer>/<name>    and /buffers/<layer>/<name>   (checkpoint
 *                             version 1, or any HDF5 file in that layout,
 *                             e.g. written by h5py from a PyTorch state_dict)
 *   /replicas/<R>/params/...  and /replicas/<R>/buffers/... when the file
 *                             has a /replicas group (checkpoints with replica
 *                             groups; R = [init] replica, default "model")
 * Datasets must be float32 with exactly the tensor's shape: a tensor that
 * matches in name but not in shape (or type) is an error naming the file,
 * the dataset and both shapes. Tensors of the model that the file lacks
 * keep their initialization (a new head is a layer whose name is not in the
 * file); datasets of the file that the model lacks are ignored. Frozen
 * layers (trainable = false) are filled like any other.
 * Errors are NN_ECKPT (exit code 5: checkpoint missing, damaged or
 * incompatible), with err->file the HDF5 file and err->where the dataset. */
#ifndef NN_COORDINATOR_INIT_FROM_H
#define NN_COORDINATOR_INIT_FROM_H

#include <mpi.h>
#include <stdio.h>

#include "coordinator/job.h"
#include "core/err.h"
#include "core/model.h"

/* What nn_init_read copied. */
typedef struct nn_init_report {
  int ntensors;     /* tensors copied (parameters and buffers) */
  int nlayers;      /* layers with at least one tensor copied */
  int nnew;         /* layers with tensors, none of them in the file */
  char copied[1024]; /* "conv0, conv1, ..." (cut with "..." when long) */
  char fresh[1024];  /* the new layers, the same way */
  char partial[512]; /* "layer/name, ...": tensors missing from copied layers */
} nn_init_report;

/* Read `path` into m (no MPI): every matching tensor as described above.
 * replica: the group under /replicas to use when the file has one. rep may
 * be NULL. On error m may be partly overwritten. */
int nn_init_read(const char *path, const char *replica, nn_model *m, nn_init_report *rep,
                 nn_error *err);

/* Collective on comm: when job->init.from is set, rank 0 reads it into m
 * (nn_init_read), every rank agrees on the outcome, and rank 0's params and
 * buffers are broadcast to all; rank 0 writes one line to `out` (may be
 * NULL) naming the copied and the new layers. Call after
 * nn_model_init_params on a fresh run only (never on resume). No-op when
 * job->init.from is "". Every MPI call is checked (NN_EMPI). */
int nn_init_from(const nn_job *job, nn_model *m, MPI_Comm comm, FILE *out, nn_error *err);

#endif
