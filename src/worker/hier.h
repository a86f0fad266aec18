/* hier.h: topology-aware all-reduce: the ranks of one host sum over shared
 * memory, the hosts over a ring.
 *
 * A "host" is the set of ranks that share memory
 * (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)); its leader is its lowest rank.
 * For tests and benchmarks on one machine, NN_SIM_HOST_RANKS=k (or
 * nn_allreduce_cfg.sim_host_ranks) makes consecutive groups of k ranks of
 * MPI_COMM_WORLD pretend to be hosts (the last group may be smaller).
 *
 * nn_hier is the one object the trainer and the bench sum through: with
 * algorithm NN_AR_RING it is the flat ring of allreduce.h over every rank;
 * with NN_AR_HIER, a call
 *   1. reduces onto each host's leader: the leader adds its peers' values in
 *      local-rank order, chunk by chunk (point-to-point, pipelined);
 *   2. sums across the leaders with the ring (nn_ring_allreduce_at, with the
 *      wire format of cfg.compress);
 *   3. sends the leader's result to its peers (point-to-point, pipelined);
 * 1 and 3 overlap 2: the leaders ring the buffer in up to 4 segments while
 * the host phases of the other segments run inside the ring's wait loop.
 * Element i ends, on every rank, as
 *   H_h = (...((x[h,0] + x[h,1]) + x[h,2]) ...) + x[h,L_h-1]   (in float)
 *   sum = ring order over the hosts of H: b = (i / G) mod NH,
 *         H_b + H_b+1 + ... + H_b+NH-1                    (nn_ring's order)
 * where x[h,l] is the value of local rank l of host h, hosts are numbered by
 * their leaders' ranks and G is the chunk in floats. See docs/allreduce.md
 * ("Hierarchical") for what is bit-identical to what. */
#ifndef NN_WORKER_HIER_H
#define NN_WORKER_HIER_H

#include <mpi.h>
#include <stddef.h>

#include "core/err.h"
#include "worker/allreduce.h"

/* NN_AR_HIER_RS: the reduce-scatter variant. Every rank of a host owns the
 * global stripes j with j mod P == its local rank (P = the smallest host's
 * size): reduce-scatter in the host (the owner sums in local-rank order,
 * giving the same H_h), P rings across the hosts (local rank p of every
 * host), each on its packed stripes, all-gather in the host. Its ring order
 * uses b = (j / P) mod NH instead of j mod NH; with P = 1 it is NN_AR_HIER. */
enum { NN_AR_AUTO = 0, NN_AR_RING = 1, NN_AR_HIER = 2, NN_AR_HIER_RS = 3 };

/* auto picks the hierarchical all-reduce from this many bytes up (with more
 * than one host and more than one rank on some host). */
#define NN_HIER_AUTO_MIN_BYTES ((size_t)64 << 10)

typedef struct nn_allreduce_cfg {
  int algo;            /* NN_AR_AUTO | NN_AR_RING | NN_AR_HIER */
  int compress;        /* NN_WIRE_*: on the ring (NN_AR_HIER: the hosts' ring) */
  int sim_host_ranks;  /* > 0: simulated hosts of this many ranks; 0: NN_SIM_HOST_RANKS,
                          else shared memory */
  size_t auto_bytes;   /* the size the auto choice looks at (0: max_count floats) */
  size_t chunk_bytes;  /* the gradient sync's chunk (0: nn_hier_create's default) */
} nn_allreduce_cfg;

typedef struct nn_topo {
  int nhosts;   /* hosts */
  int host;     /* this rank's host, 0..nhosts-1 (ordered by the leaders' ranks) */
  int lrank;    /* rank within the host (0 = leader) */
  int lsize;    /* ranks on this host */
  int maxlocal; /* most ranks on any host */
} nn_topo;

/* NN_SIM_HOST_RANKS as a number: 0 when unset, -1 when not an integer >= 1. */
int nn_sim_host_ranks(void);
/* The host of world rank `wr` (this process) as messages name it: its
 * MPI_Get_processor_name, or under NN_SIM_HOST_RANKS=k "NAME/sim<wr / k>";
 * at most n - 1 bytes. Returns MPI_Get_processor_name's code. */
int nn_host_label(char *buf, size_t n, int wr);
/* "auto" | "ring" | "hierarchical" | "hierarchical_rs" -> NN_AR_*, -1
 * otherwise; and back. */
int nn_algo_parse(const char *s);
const char *nn_algo_name(int algo);

typedef struct nn_hier nn_hier;

/* Collective on comm. max_count: the largest buffer (floats); chunk_bytes:
 * the ring's chunk and the host messages' size (0 = nn_ring_default_chunk
 * of max_count over the ways the data ring splits it: the ranks for the ring,
 * the hosts for NN_AR_HIER, hosts x slots for NN_AR_HIER_RS). The algorithm
 * is resolved here, identically on every rank: auto = NN_AR_HIER when
 * nhosts > 1, maxlocal > 1 and auto_bytes >= NN_HIER_AUTO_MIN_BYTES, else
 * NN_AR_RING. NN_EINVAL for a bad NN_SIM_HOST_RANKS. */
int nn_hier_create(nn_hier **h, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                   const nn_allreduce_cfg *cfg, nn_error *err);
void nn_hier_free(nn_hier *h);
/* As nn_ring_allreduce_at (same contract: in place, every rank the same
 * bits, the order depends only on the global index, so pieces == whole). */
int nn_hier_allreduce_at(nn_hier *h, float *buf, size_t count, size_t base, nn_error *err);
int nn_hier_allreduce(nn_hier *h, float *buf, size_t count, nn_error *err);
/* Watchdog over every rank of comm (nn_ring_set_timeout's messages). */
void nn_hier_set_timeout(nn_hier *h, double seconds);
void nn_hier_set_step(nn_hier *h, long step);
int nn_hier_algo(const nn_hier *h);
const nn_topo *nn_hier_topo(const nn_hier *h);
size_t nn_hier_chunk(const nn_hier *h);
/* Every ring of h takes `watch`'s watchdog (nn_ring_set_watch; NULL: h's own
 * ring over every rank again), e.g. the trainer's control ring, so that all
 * of a job's all-reduces answer one watchdog's probes. */
void nn_hier_set_watch(nn_hier *h, nn_ring *watch);

#endif
