/* allreduce.h: our ring all-reduce over MPI point-to-point, and the bucketed
 * gradient synchronizer the step loop uses.
 *
 * nn_ring_allreduce sums a float buffer in place across all ranks of a
 * communicator: reduce-scatter then all-gather around the ring, pipelined in
 * chunks. For a given rank count the additions happen in a fixed order, so
 * repeated runs are bit-identical and every rank ends with the same bits.
 *
 * nn_gradsync reduces a gradient arena in buckets: backward reports ranges
 * of the arena as final (nn_gradsync_ready, called from the model's
 * nn_grad_ready_fn), and a bucket is reduced as soon as all of it is final,
 * on a communication thread, so communication overlaps the rest of backward.
 * nn_gradsync_finish waits for every bucket. The main thread makes no MPI call
 * between nn_gradsync_begin and nn_gradsync_finish. */
#ifndef NN_WORKER_ALLREDUCE_H
#define NN_WORKER_ALLREDUCE_H

#include <mpi.h>
#include <stddef.h>

#include "core/err.h"

typedef struct nn_ring nn_ring;

/* Values on the wire (train.grad_compression): fp32, or 16-bit values with
 * sums kept in fp32 (see docs/allreduce.md, "Compression"). */
enum { NN_WIRE_NONE = 0, NN_WIRE_BF16 = 1, NN_WIRE_FP16 = 2 };
/* x as it arrives after a trip through the wire format: bf16 rounds to
 * nearest even; fp16 also saturates finite values to +-65504 (Inf and NaN
 * pass). */
float nn_wire_round(int mode, float x);
const char *nn_wire_name(int mode);
/* "none" | "bf16" | "fp16" -> NN_WIRE_*, -1 otherwise. */
int nn_wire_parse(const char *s);

/* A ring on `comm` (duplicated; the caller's comm is not used for traffic).
 * max_count: the largest buffer (floats) that will be reduced; scratch is
 * allocated once here. chunk_bytes: pipeline chunk (message) size (0 =
 * nn_ring_default_chunk(max_count, ranks of comm)). */
int nn_ring_create(nn_ring **r, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                   nn_error *err);
/* As nn_ring_create, with 16-bit values on the wire (NN_WIRE_*): each
 * message is encoded from fp32, each received value decoded and added in
 * fp32; the owner of a block rounds its sum to the wire format before the
 * all-gather, so every rank still ends with the same bits. Element i of
 * stripe j (b = j mod N) becomes
 *   s = w(x[b]); s = w(s + x[b+1]); ...; s = w(s + x[b+N-1])
 * with w = nn_wire_round (the last w is the all-gather's). */
int nn_ring_create_ex(nn_ring **r, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                      int compress, nn_error *err);
/* The chunk (bytes) for buffers of up to max_count floats split `ways` ways
 * (the ring's ranks): ceil(max_count / ways) floats rounded up to 16 (64
 * bytes), at most 256 KiB. So a buffer fills every block of the ring (a
 * buffer of fewer stripes than ranks leaves blocks empty, and each step then
 * waits for the largest block), and a large buffer is pipelined in 256 KiB
 * messages. A function of (max_count, ways) alone: every rank, every run and
 * every resume of a job at that rank count gets the same chunk, so the same
 * summation order. */
size_t nn_ring_default_chunk(size_t max_count, int ways);
void nn_ring_free(nn_ring *r);

/* In place: buf[i] = sum over ranks of buf[i], identical bits on every rank.
 * count may be 0 and may be less than the number of ranks. Collective.
 * The order in which element i is summed depends only on i, the chunk size
 * and the number of ranks (see docs/allreduce.md). */
int nn_ring_allreduce(nn_ring *r, float *buf, size_t count, nn_error *err);

/* As nn_ring_allreduce for buf = whole[base, base+count): element buf[i] is
 * summed in the order element whole[base+i] would be by a call on `whole`, so
 * reducing a buffer piece by piece gives the same bits as one call. */
int nn_ring_allreduce_at(nn_ring *r, float *buf, size_t count, size_t base,
                         nn_error *err);

/* Watchdog: if no message from a neighbour arrives (or leaves) for `seconds`
 * during an all-reduce, the ranks find out which rank did not arrive and the
 * call returns NN_EMPI with "rank R did not reach the all-reduce of step S
 * within T s; aborting the job" (err->rank = -1; R is the rank in
 * MPI_COMM_WORLD followed by "(host H)"). On the one rank chosen to
 * report (the lowest live rank) it returns at once; the others wait a few
 * seconds more for the job to be aborted before returning the same error.
 * The caller must then MPI_Abort. 0 (the default) = wait forever. */
void nn_ring_set_timeout(nn_ring *r, double seconds);
/* The step number named in watchdog messages; without it, the count of
 * all-reduce calls so far (1-based). */
void nn_ring_set_step(nn_ring *r, long step);
/* Chunk G (floats) of the ring: the message size, and the stripe that
 * fixes the order of additions: element i of a buffer is summed starting at
 * rank (i / G) % N (see nn_ring_allreduce_at in allreduce.c). */
size_t nn_ring_chunk(const nn_ring *r);
/* Member q's rank in MPI_COMM_WORLD, and its host (MPI_Get_processor_name,
 * gathered at creation; "NAME/simH" under NN_SIM_HOST_RANKS; NULL if
 * unknown). Watchdog messages name both: "rank 5 (host h3)". */
int nn_ring_world_rank(const nn_ring *r, int member);
const char *nn_ring_host(const nn_ring *r, int member);

/* For the hierarchical all-reduce (worker/hier.c): a ring whose watchdog
 * (diag comm, timeout, step, probes) is `watch`'s, e.g. a ring of the hosts'
 * leaders watched by a ring over every rank, so that the rank that did not
 * arrive is found among all of them. NULL: its own. */
void nn_ring_set_watch(nn_ring *r, nn_ring *watch);
/* Work the ring's wait loop runs on every pass, so that it overlaps the
 * ring (the hierarchical all-reduce's host phases): fn returns 1 when it
 * moved something, 0 when not, a negative error code (err filled) to end the
 * call. NULL: none. The ring never calls it when N = 1 or count = 0. */
typedef int (*nn_ring_pump_fn)(void *ctx, nn_error *err);
void nn_ring_set_pump(nn_ring *r, nn_ring_pump_fn fn, void *ctx);
/* A wait loop's watchdog: call tick once per poll with progress = 1 when
 * something moved. It yields the core after many idle polls, answers
 * probes, and after the watch ring's timeout without progress diagnoses
 * (NN_EMPI, message as nn_ring_set_timeout says); `peer` is the member of
 * ring `pr` waited for, `dir` "from" or "to". */
typedef struct nn_ring_wait {
  nn_ring *w;
  double last, last_probe;
  unsigned idle;
} nn_ring_wait;
/* dst[i] += src[i], vectorized (one IEEE add per element). */
void nn_ring_add(float *restrict dst, const float *restrict src, size_t n);
void nn_ring_wait_init(nn_ring_wait *q, nn_ring *r);
int nn_ring_wait_tick(nn_ring_wait *q, int progress, const nn_ring *pr, int peer,
                      const char *dir, nn_error *err);

typedef struct nn_gradsync nn_gradsync;

/* Buckets of bucket_bytes (0 = default 4 MiB) over arena[0, n). Starts the
 * communication thread. Requires MPI initialized with at least
 * MPI_THREAD_SERIALIZED. The chunk is the default for min(bucket, n) floats
 * (nn_ring_default_chunk), so every bucket fills the ring's blocks; the sum
 * has the same bits as nn_ring_allreduce on the whole arena with that chunk
 * (nn_gradsync_chunk), whatever the bucket size. */
int nn_gradsync_create(nn_gradsync **g, MPI_Comm comm, float *arena, size_t n,
                       size_t bucket_bytes, nn_error *err);
/* With the algorithm and the wire format of cfg (worker/hier.h; NULL: the
 * flat ring, fp32; cfg->chunk_bytes, when not 0, the chunk). The auto choice
 * looks at n, not at the bucket size, so every bucket uses the same
 * algorithm; the sum has the same bits as that algorithm's all-reduce of the
 * whole arena with the same chunk, whatever the bucket size. */
struct nn_allreduce_cfg;
int nn_gradsync_create_ex(nn_gradsync **g, MPI_Comm comm, float *arena, size_t n,
                          size_t bucket_bytes, const struct nn_allreduce_cfg *cfg,
                          nn_error *err);
/* The algorithm the sync uses (NN_AR_RING or NN_AR_HIER). */
int nn_gradsync_algo(const nn_gradsync *g);
/* The chunk (floats) its all-reduce uses. */
size_t nn_gradsync_chunk(const nn_gradsync *g);
/* Its rings take `watch`'s watchdog (nn_hier_set_watch). Not during a step. */
void nn_gradsync_set_watch(nn_gradsync *g, nn_ring *watch);
void nn_gradsync_free(nn_gradsync *g);
/* n of nn_gradsync_create: the floats every step reduces (a model's
 * trainable prefix, core/model.h). */
size_t nn_gradsync_count(const nn_gradsync *g);
/* Start a step: no range is final yet. The step number for watchdog
 * messages counts calls (1-based); nn_gradsync_begin_step names it. */
void nn_gradsync_begin(nn_gradsync *g);
void nn_gradsync_begin_step(nn_gradsync *g, long step);
/* Watchdog timeout for the bucket all-reduces (see nn_ring_set_timeout);
 * call between steps. */
void nn_gradsync_set_timeout(nn_gradsync *g, double seconds);
/* arena[offset, offset+count) is final for this step (thread-safe with the
 * communication thread; call from the main thread only). */
void nn_gradsync_ready(nn_gradsync *g, size_t offset, size_t count);
/* Wait until every bucket has been summed (marks any range never reported as
 * ready first). After it returns arena holds the SUM over ranks. */
int nn_gradsync_finish(nn_gradsync *g, nn_error *err);

#endif
