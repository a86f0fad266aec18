/* idx.h: reading IDX files (the MNIST / Fashion-MNIST distribution format),
 * gzip-compressed or plain.
 *
 * An IDX file is a 4-byte magic (0x00 0x00 TYPE NDIM), NDIM big-endian
 * uint32 dimensions, then the elements in row-major order. Only element type
 * 0x08 (unsigned byte) is supported: it is what image and label files use.
 * This module reads files; it does not know about shards or training. */
#ifndef NN_WORKER_IDX_H
#define NN_WORKER_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define NN_IDX_MAX_DIMS 4

/* One IDX array. Owns `data`; release with nn_idx_free. */
typedef struct nn_idx {
  int ndim;                      /* 1..NN_IDX_MAX_DIMS */
  int64_t dim[NN_IDX_MAX_DIMS];  /* dim[0] is the item count */
  uint8_t *data;                 /* [dim[0], ..., dim[ndim-1]] bytes */
  size_t size;                   /* bytes in data = product of dims */
  int gzipped;                   /* 1 if the file was gzip-compressed */
} nn_idx;

/* Read `path` (gzip detected by its magic bytes) into *a, which the call
 * initializes. Errors name the file and what was expected:
 *   NN_ENOTFOUND  the file does not exist
 *   NN_EIO        it cannot be read
 *   NN_EDATA      bad magic, unsupported element type, zero or too many
 *                 dimensions, truncated or longer payload, corrupt gzip data
 *   NN_ENOMEM     out of memory
 * On error *a is left empty (nothing to free, but nn_idx_free is harmless). */
int nn_idx_read(const char *path, nn_idx *a, nn_error *err);

/* Read only the header of `path`: fills a->ndim, a->dim and a->gzipped,
 * leaves a->data NULL and a->size 0 (cheap: decompresses a few bytes). Does
 * not check the payload length; same errors as nn_idx_read otherwise. */
int nn_idx_peek(const char *path, nn_idx *a, nn_error *err);

/* Free a's data and zero it. a may be NULL. */
void nn_idx_free(nn_idx *a);

#endif
