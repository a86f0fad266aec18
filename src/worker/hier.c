/* hier.c: the topology-aware all-reduce (see hier.h, docs/allreduce.md):
 * reduce onto each host's leader, ring across the leaders, send back. Only
 * MPI point-to-point moves data; the set-up uses collectives. */
#include "worker/hier.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "worker/agree.h"
#include "worker/mpi_check.h"

#define NN__HIER_WINDOW 8   /* host messages in flight per rank */
#define NN__HIER_TAG_UP 21  /* peer -> leader, on h->host */
#define NN__HIER_TAG_DOWN 22 /* leader -> peer */

struct nn_hier {
  int algo;            /* NN_AR_RING or NN_AR_HIER */
  nn_topo topo;
  nn_ring *full;       /* ring over comm: the data ring (RING), or the watchdog only (HIER) */
  nn_ring *lead;       /* HIER, leaders only: the hosts' ring */
  MPI_Comm host;       /* HIER: this host's ranks */
  MPI_Comm leaders;    /* HIER, leaders only: one rank per host */
  int *local;          /* HIER: [lsize] each local rank's rank in comm (for messages) */
  size_t chunk;        /* floats per host message (= the ring's chunk) */
  size_t max_count;
  float *rx[NN__HIER_WINDOW]; /* HIER, leader: receive buffers [chunk] */
  MPI_Request req[NN__HIER_WINDOW];
  long calls, step;
  int step_set;
};

#define HIER_MPI(call)                                                        \
  do {                                                                        \
    if ((rc = nn_mpi_check((call), #call, __FILE__, __LINE__, err)) != 0) {    \
      nn_error_prefix(err, "hierarchical all-reduce");                        \
      goto done;                                                              \
    }                                                                         \
  } while (0)

int nn_sim_host_ranks(void) {
  const char *s = getenv("NN_SIM_HOST_RANKS");
  if (!s || !*s) return 0;
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < 1 || v > 1 << 20) return -1;
  return (int)v;
}

int nn_algo_parse(const char *s) {
  if (!strcmp(s, "auto")) return NN_AR_AUTO;
  if (!strcmp(s, "ring")) return NN_AR_RING;
  if (!strcmp(s, "hierarchical")) return NN_AR_HIER;
  return -1;
}

const char *nn_algo_name(int algo) {
  return algo == NN_AR_RING ? "ring" : algo == NN_AR_HIER ? "hierarchical" : "auto";
}

/* The host and leaders communicators and the topology. Collective on comm. */
static int topo_split(nn_hier *h, MPI_Comm comm, int sim, nn_error *err) {
  int rc = 0, me = 0, wr = 0;
  nn_topo *t = &h->topo;
  HIER_MPI(MPI_Comm_rank(comm, &me));
  HIER_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &wr));
  if (sim > 0)
    HIER_MPI(MPI_Comm_split(comm, wr / sim, me, &h->host));
  else
    HIER_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &h->host));
  HIER_MPI(MPI_Comm_set_errhandler(h->host, MPI_ERRORS_RETURN));
  HIER_MPI(MPI_Comm_rank(h->host, &t->lrank));
  HIER_MPI(MPI_Comm_size(h->host, &t->lsize));
  HIER_MPI(MPI_Comm_split(comm, t->lrank == 0 ? 0 : MPI_UNDEFINED, me, &h->leaders));
  int hv[2] = {0, 0};
  if (h->leaders != MPI_COMM_NULL) {
    HIER_MPI(MPI_Comm_set_errhandler(h->leaders, MPI_ERRORS_RETURN));
    HIER_MPI(MPI_Comm_size(h->leaders, &hv[0]));
    HIER_MPI(MPI_Comm_rank(h->leaders, &hv[1]));
  }
  HIER_MPI(MPI_Bcast(hv, 2, MPI_INT, 0, h->host));
  t->nhosts = hv[0];
  t->host = hv[1];
  HIER_MPI(MPI_Allreduce(&t->lsize, &t->maxlocal, 1, MPI_INT, MPI_MAX, comm));
done:
  return rc;
}

int nn_hier_create(nn_hier **out, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                   const nn_allreduce_cfg *cfg, nn_error *err) {
  int rc = 0;
  nn_allreduce_cfg def = {NN_AR_RING, NN_WIRE_NONE, 0, 0};
  if (!cfg) cfg = &def;
  *out = NULL;
  int sim = cfg->sim_host_ranks > 0 ? cfg->sim_host_ranks : nn_sim_host_ranks();
  if (sim < 0)
    return nn_error_set(err, NN_EINVAL,
                        "environment NN_SIM_HOST_RANKS='%s': expected an integer >= 1 "
                        "(ranks per simulated host)", getenv("NN_SIM_HOST_RANKS"));
  /* Every rank reaches the same branches: the set-up's collectives first,
   * each stage agreed before the next. */
  nn_hier *h = nn_calloc(1, sizeof *h);
  int lrc = h ? 0 : nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory");
  if ((rc = nn_agree(comm, lrc, err))) goto fail;
  h->host = h->leaders = MPI_COMM_NULL;
  h->max_count = max_count;
  h->chunk = (chunk_bytes ? chunk_bytes : (size_t)256 << 10) / sizeof(float);
  if (h->chunk == 0) h->chunk = 1;
  if (h->chunk > (size_t)INT32_MAX) h->chunk = (size_t)INT32_MAX;
  if ((rc = nn_agree(comm, topo_split(h, comm, sim, err), err))) goto fail;
  size_t bytes = cfg->auto_bytes ? cfg->auto_bytes : max_count * sizeof(float);
  int multi = h->topo.nhosts > 1 && h->topo.maxlocal > 1;
  h->algo = cfg->algo == NN_AR_HIER ? NN_AR_HIER
            : cfg->algo == NN_AR_RING ? NN_AR_RING
            : multi && bytes >= NN_HIER_AUTO_MIN_BYTES ? NN_AR_HIER : NN_AR_RING;
  int hier = h->algo == NN_AR_HIER;
  /* The ring over every rank: the data ring, or (HIER) only the watchdog. */
  lrc = nn_ring_create_ex(&h->full, comm, hier ? 1 : max_count, chunk_bytes,
                          hier ? NN_WIRE_NONE : cfg->compress, err);
  if ((rc = nn_agree(comm, lrc, err))) goto fail;
  if (hier) {
    lrc = 0;
    if (h->leaders != MPI_COMM_NULL) {
      lrc = nn_ring_create_ex(&h->lead, h->leaders, max_count, chunk_bytes, cfg->compress, err);
      if (!lrc) nn_ring_set_watch(h->lead, h->full);
    }
    if ((rc = nn_agree(comm, lrc, err))) goto fail;
    int me = 0, L = h->topo.lsize;
    h->local = nn_malloc((size_t)L * sizeof *h->local);
    MPI_Comm_rank(comm, &me);
    lrc = h->local ? 0 : nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory");
    if ((rc = nn_agree(comm, lrc, err))) goto fail;
    HIER_MPI(MPI_Allgather(&me, 1, MPI_INT, h->local, 1, MPI_INT, h->host));
    size_t rx = h->chunk < max_count ? h->chunk : (max_count ? max_count : 1);
    lrc = 0;
    if (h->topo.lrank == 0 && L > 1)
      for (int i = 0; i < NN__HIER_WINDOW && !lrc; i++)
        if (!(h->rx[i] = nn_malloc(rx * sizeof(float))))
          lrc = nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory for %zu floats", rx);
    if ((rc = nn_agree(comm, lrc, err))) goto fail;
  }
  for (int i = 0; i < NN__HIER_WINDOW; i++) h->req[i] = MPI_REQUEST_NULL;
  *out = h;
  return 0;
done:
fail:
  nn_hier_free(h);
  return rc;
}

void nn_hier_free(nn_hier *h) {
  if (!h) return;
  nn_ring_free(h->lead);
  nn_ring_free(h->full);
  if (h->host != MPI_COMM_NULL) MPI_Comm_free(&h->host);
  if (h->leaders != MPI_COMM_NULL) MPI_Comm_free(&h->leaders);
  free(h->local);
  for (int i = 0; i < NN__HIER_WINDOW; i++) free(h->rx[i]);
  free(h);
}

/* One host phase over buf[0, count), in messages of h->chunk floats.
 * up = 1: every peer sends its values to the leader, which adds them in
 * (chunk, local rank) order: chunk c of peer 1, then of peer 2, ...; so
 * element i is x[0] + x[1] + ... + x[L-1], left to right.
 * up = 0: the leader sends each chunk to each peer, which receives it in
 * place. At most NN__HIER_WINDOW messages in flight; completion is taken in
 * posting order. */
static int hier_phase(nn_hier *h, float *buf, size_t count, int up, nn_error *err) {
  int rc = 0, L = h->topo.lsize, leader = h->topo.lrank == 0;
  size_t C = h->chunk, nch = (count + C - 1) / C;
  size_t n = leader ? nch * (size_t)(L - 1) : nch;
  size_t k_post = 0, k_done = 0;
  nn_ring_wait wait;
  nn_ring_wait_init(&wait, h->full);
  while (k_done < n) {
    while (k_post < n && k_post - k_done < NN__HIER_WINDOW) {
      size_t c = leader ? k_post / (size_t)(L - 1) : k_post;
      int q = leader ? 1 + (int)(k_post % (size_t)(L - 1)) : 0;
      size_t off = c * C, len = count - off < C ? count - off : C;
      MPI_Request *rq = &h->req[k_post % NN__HIER_WINDOW];
      if (leader && up)
        HIER_MPI(MPI_Irecv(h->rx[k_post % NN__HIER_WINDOW], (int)len, MPI_FLOAT, q,
                           NN__HIER_TAG_UP, h->host, rq));
      else if (leader)
        HIER_MPI(MPI_Isend(buf + off, (int)len, MPI_FLOAT, q, NN__HIER_TAG_DOWN, h->host, rq));
      else if (up)
        HIER_MPI(MPI_Isend(buf + off, (int)len, MPI_FLOAT, 0, NN__HIER_TAG_UP, h->host, rq));
      else
        HIER_MPI(MPI_Irecv(buf + off, (int)len, MPI_FLOAT, 0, NN__HIER_TAG_DOWN, h->host, rq));
      k_post++;
    }
    int flag = 0;
    HIER_MPI(MPI_Test(&h->req[k_done % NN__HIER_WINDOW], &flag, MPI_STATUS_IGNORE));
    int q = leader ? 1 + (int)(k_done % (size_t)(L - 1)) : 0;
    if (flag) {
      if (leader && up) {
        size_t off = (k_done / (size_t)(L - 1)) * C, len = count - off < C ? count - off : C;
        nn_ring_add(buf + off, h->rx[k_done % NN__HIER_WINDOW], len);
      }
      k_done++;
    }
    int dir_from = leader == up;
    rc = nn_ring_wait_tick(&wait, flag, h->full, h->local[q], dir_from ? "from" : "to", err);
    if (rc) goto done;
  }
done:
  return rc;
}

int nn_hier_allreduce_at(nn_hier *h, float *buf, size_t count, size_t base, nn_error *err) {
  h->calls++;
  long step = h->step_set ? h->step : h->calls;
  h->step_set = 0;
  nn_ring_set_step(h->full, step);
  if (h->algo == NN_AR_RING) return nn_ring_allreduce_at(h->full, buf, count, base, err);
  if (count > h->max_count)
    return nn_error_set(err, NN_EINVAL, "all-reduce: %zu floats exceed the maximum %zu", count,
                        h->max_count);
  if (count == 0) return 0;
  int rc = 0, L = h->topo.lsize;
  if (L > 1 && (rc = hier_phase(h, buf, count, 1, err))) return rc;
  if (h->lead && (rc = nn_ring_allreduce_at(h->lead, buf, count, base, err))) return rc;
  if (L > 1 && (rc = hier_phase(h, buf, count, 0, err))) return rc;
  return 0;
}

int nn_hier_allreduce(nn_hier *h, float *buf, size_t count, nn_error *err) {
  return nn_hier_allreduce_at(h, buf, count, 0, err);
}

void nn_hier_set_timeout(nn_hier *h, double seconds) { nn_ring_set_timeout(h->full, seconds); }

void nn_hier_set_step(nn_hier *h, long step) {
  h->step = step;
  h->step_set = 1;
}

int nn_hier_algo(const nn_hier *h) { return h->algo; }
const nn_topo *nn_hier_topo(const nn_hier *h) { return &h->topo; }
size_t nn_hier_chunk(const nn_hier *h) { return h->chunk; }
