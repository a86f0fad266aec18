/* agree.h: agreeing on an outcome across ranks.
 *
 * nn_agree is how a collective phase (opening data, building the model,
 * reading a checkpoint) fails once, cleanly: every rank passes its status and
 * every rank returns the error record of the lowest failing rank, so all take
 * the same branch and rank 0 can print the one message. Collective on comm. */
#ifndef NN_WORKER_AGREE_H
#define NN_WORKER_AGREE_H

#include <mpi.h>

#include "core/err.h"

/* 0 if every rank passed 0; else the lowest failing rank's code, with its
 * record in *err on every rank (err->rank set to that rank when N > 1). */
int nn_agree(MPI_Comm comm, int rc, nn_error *err);

#endif
