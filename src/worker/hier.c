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

/* One message of the reduce-scatter variant's host phases: floats
 * [off, off+len) of the caller's buffer (packed offset pk in h->pk), with
 * local rank q; op: what to do once it is complete. */
typedef struct nn__hier_item {
  size_t off, len, pk;
  int q;
  int op; /* HI_SEND, HI_SEND_PK, HI_RECV_ADD (into pk), HI_RECV (into buf), HI_OWN */
} nn__hier_item;
enum { HI_SEND, HI_SEND_PK, HI_RECV_ADD, HI_RECV, HI_OWN };

struct nn_hier {
  int algo;            /* NN_AR_RING, NN_AR_HIER or NN_AR_HIER_RS */
  int slots;           /* HIER_RS: P = the smallest host's size */
  nn_ring *slot;       /* HIER_RS, local ranks < P: ring over slot lrank's ranks of every host */
  MPI_Comm slotc;
  float *pk;           /* HIER_RS, local ranks < P: this rank's part, packed */
  size_t pk_cap;
  nn__hier_item *items[2]; /* HIER_RS: send and receive sequences */
  size_t cap_items;
  MPI_Request *reqs[2];
  nn_topo topo;
  nn_ring *full;       /* ring over comm: the data ring (RING), or the watchdog only (HIER) */
  nn_ring *lead;       /* HIER, leaders only: the hosts' ring */
  MPI_Comm host;       /* HIER: this host's ranks */
  MPI_Comm leaders;    /* HIER, leaders only: one rank per host */
  int *local;          /* HIER: [lsize] each local rank's rank in comm (for messages) */
  size_t chunk;        /* floats per host message (= the ring's chunk) */
  size_t max_count;
  float *rx[NN__HIER_WINDOW]; /* HIER, leader: receive buffers [chunk] */
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

int nn_host_label(char *buf, size_t n, int wr) {
  char pn[MPI_MAX_PROCESSOR_NAME];
  int len = 0, rc = MPI_Get_processor_name(pn, &len);
  if (rc != MPI_SUCCESS) return rc;
  pn[len >= 0 && len < MPI_MAX_PROCESSOR_NAME ? len : MPI_MAX_PROCESSOR_NAME - 1] = 0;
  int k = nn_sim_host_ranks();
  if (k > 0) snprintf(buf, n, "%.40s/sim%d", pn, wr / k);
  else snprintf(buf, n, "%.63s", pn);
  return MPI_SUCCESS;
}

int nn_algo_parse(const char *s) {
  if (!strcmp(s, "auto")) return NN_AR_AUTO;
  if (!strcmp(s, "ring")) return NN_AR_RING;
  if (!strcmp(s, "hierarchical")) return NN_AR_HIER;
  if (!strcmp(s, "hierarchical_rs")) return NN_AR_HIER_RS;
  return -1;
}

const char *nn_algo_name(int algo) {
  return algo == NN_AR_RING ? "ring" : algo == NN_AR_HIER ? "hierarchical"
         : algo == NN_AR_HIER_RS ? "hierarchical_rs" : "auto";
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
  HIER_MPI(MPI_Allreduce(&t->lsize, &h->slots, 1, MPI_INT, MPI_MIN, comm));
done:
  return rc;
}

static int rs_create(nn_hier *h, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                     int compress, nn_error *err);

int nn_hier_create(nn_hier **out, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                   const nn_allreduce_cfg *cfg, nn_error *err) {
  int rc = 0;
  nn_allreduce_cfg def = {NN_AR_RING, NN_WIRE_NONE, 0, 0, 0};
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
  if (h) h->host = h->leaders = h->slotc = MPI_COMM_NULL;
  int lrc = h ? 0 : nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory");
  if ((rc = nn_agree(comm, lrc, err))) goto fail;
  h->max_count = max_count;
  if ((rc = nn_agree(comm, topo_split(h, comm, sim, err), err))) goto fail;
  size_t bytes = cfg->auto_bytes ? cfg->auto_bytes : max_count * sizeof(float);
  int multi = h->topo.nhosts > 1 && h->topo.maxlocal > 1;
  h->algo = cfg->algo == NN_AR_HIER || cfg->algo == NN_AR_HIER_RS || cfg->algo == NN_AR_RING
                ? cfg->algo
            : multi && bytes >= NN_HIER_AUTO_MIN_BYTES ? NN_AR_HIER : NN_AR_RING;
  int hier = h->algo != NN_AR_RING;
  if (chunk_bytes == 0) {
    /* the ring's default for the ways the data ring splits a buffer: every
     * rank (ring), the hosts (hierarchical), or the hosts times the slots
     * (reduce-scatter: each slot's ring carries 1/P of it) */
    int world = 1;
    MPI_Comm_size(comm, &world);
    int ways = h->algo == NN_AR_RING   ? world
               : h->algo == NN_AR_HIER ? h->topo.nhosts
                                       : h->topo.nhosts * h->slots;
    chunk_bytes = nn_ring_default_chunk(max_count, ways);
  }
  /* The ring over every rank: the data ring, or (HIER) only the watchdog.
   * Every ring here gets the same chunk_bytes, so the host messages take
   * its chunk (in floats, as the ring clamps it). */
  lrc = nn_ring_create_ex(&h->full, comm, hier ? 1 : max_count, chunk_bytes,
                          hier ? NN_WIRE_NONE : cfg->compress, err);
  if ((rc = nn_agree(comm, lrc, err))) goto fail;
  h->chunk = nn_ring_chunk(h->full);
  if (h->algo == NN_AR_HIER_RS) {
    if ((rc = nn_agree(comm, rs_create(h, comm, max_count, chunk_bytes, cfg->compress, err),
                       err)))
      goto fail;
  }
  if (hier) {
    lrc = 0;
    if (h->algo == NN_AR_HIER && h->leaders != MPI_COMM_NULL) {
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
    if (L > 1 && (h->algo == NN_AR_HIER ? h->topo.lrank == 0 : h->topo.lrank < h->slots))
      for (int i = 0; i < NN__HIER_WINDOW && !lrc; i++)
        if (!(h->rx[i] = nn_malloc(rx * sizeof(float))))
          lrc = nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory for %zu floats", rx);
    if ((rc = nn_agree(comm, lrc, err))) goto fail;
  }
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
  nn_ring_free(h->slot);
  nn_ring_free(h->full);
  if (h->slotc != MPI_COMM_NULL) MPI_Comm_free(&h->slotc);
  free(h->pk);
  for (int i = 0; i < 2; i++) {
    free(h->items[i]);
    free(h->reqs[i]);
  }
  if (h->host != MPI_COMM_NULL) MPI_Comm_free(&h->host);
  if (h->leaders != MPI_COMM_NULL) MPI_Comm_free(&h->leaders);
  free(h->local);
  for (int i = 0; i < NN__HIER_WINDOW; i++) free(h->rx[i]);
  free(h);
}

/* The host phases of one call over buf[0, count), in messages of h->chunk
 * floats, as a state machine that the hosts' ring runs on every pass of its
 * wait loop (nn_ring_set_pump), so they overlap the ring.
 * up: every peer sends its chunks in order to the leader, which adds them in
 *   (chunk, local rank) order: chunk c of peer 1, then of peer 2, ...; so
 *   element i is x[0] + x[1] + ... + x[L-1], left to right. The leader's up
 *   phase runs ahead of the ring freely: it only ever adds into chunks the
 *   ring has not reached (hier_allreduce waits for a segment's chunks before
 *   its ring starts).
 * down: the leader sends each chunk of the segments whose ring is done
 *   (chunks < dn_limit) to each peer, which receives it in place once its
 *   own send from there has completed.
 * At most NN__HIER_WINDOW messages in flight each way; receives complete in
 * posting order. */
typedef struct hier_pipe {
  nn_hier *h;
  float *buf;
  size_t count, C, nch;
  int L, leader;
  size_t n;                      /* items each way: (c, q) on the leader, c on a peer */
  size_t up_post, up_done;       /* leader: receives (c, q); peer: sends c */
  size_t dn_post, dn_done;       /* leader: sends (c, q); peer: receives c */
  size_t dn_limit;               /* leader: chunks below it are final */
  MPI_Request up_req[NN__HIER_WINDOW], dn_req[NN__HIER_WINDOW];
} hier_pipe;

static void pipe_item(const hier_pipe *p, size_t k, size_t *off, size_t *len, int *q) {
  size_t per = p->leader ? (size_t)(p->L - 1) : 1;
  size_t c = k / per;
  *q = p->leader ? 1 + (int)(k % per) : 0;
  *off = c * p->C;
  *len = p->count - *off < p->C ? p->count - *off : p->C;
}

static int pipe_pump(void *ctx, nn_error *err) {
  hier_pipe *p = ctx;
  nn_hier *h = p->h;
  int rc = 0, progress = 0, q = 0;
  size_t off = 0, len = 0;
  while (p->up_post < p->n && p->up_post - p->up_done < NN__HIER_WINDOW) {
    pipe_item(p, p->up_post, &off, &len, &q);
    MPI_Request *rq = &p->up_req[p->up_post % NN__HIER_WINDOW];
    if (p->leader)
      HIER_MPI(MPI_Irecv(h->rx[p->up_post % NN__HIER_WINDOW], (int)len, MPI_FLOAT, q,
                         NN__HIER_TAG_UP, h->host, rq));
    else
      HIER_MPI(MPI_Isend(p->buf + off, (int)len, MPI_FLOAT, 0, NN__HIER_TAG_UP, h->host, rq));
    p->up_post++;
  }
  while (p->up_done < p->up_post) {
    int flag = 0;
    HIER_MPI(MPI_Test(&p->up_req[p->up_done % NN__HIER_WINDOW], &flag, MPI_STATUS_IGNORE));
    if (!flag) break;
    if (p->leader) {
      pipe_item(p, p->up_done, &off, &len, &q);
      nn_ring_add(p->buf + off, h->rx[p->up_done % NN__HIER_WINDOW], len);
    }
    p->up_done++;
    progress = 1;
  }
  size_t dn_ready = p->leader ? p->dn_limit * (size_t)(p->L - 1) : p->up_done;
  if (dn_ready > p->n) dn_ready = p->n;
  while (p->dn_post < dn_ready && p->dn_post - p->dn_done < NN__HIER_WINDOW) {
    pipe_item(p, p->dn_post, &off, &len, &q);
    MPI_Request *rq = &p->dn_req[p->dn_post % NN__HIER_WINDOW];
    if (p->leader)
      HIER_MPI(MPI_Isend(p->buf + off, (int)len, MPI_FLOAT, q, NN__HIER_TAG_DOWN, h->host, rq));
    else
      HIER_MPI(MPI_Irecv(p->buf + off, (int)len, MPI_FLOAT, 0, NN__HIER_TAG_DOWN, h->host, rq));
    p->dn_post++;
  }
  while (p->dn_done < p->dn_post) {
    int flag = 0;
    HIER_MPI(MPI_Test(&p->dn_req[p->dn_done % NN__HIER_WINDOW], &flag, MPI_STATUS_IGNORE));
    if (!flag) break;
    p->dn_done++;
    progress = 1;
  }
  return progress;
done:
  return rc;
}

/* Pump until the leader has added every peer's chunks below `up_chunks` and
 * sent every chunk below `dn_chunks` (a peer: until all is done), under the
 * watchdog. */
static int pipe_wait(hier_pipe *p, size_t up_chunks, size_t dn_chunks, nn_error *err) {
  size_t per = p->leader ? (size_t)(p->L - 1) : 1;
  size_t up_want = up_chunks * per, dn_want = dn_chunks * per;
  nn_ring_wait wait;
  nn_ring_wait_init(&wait, p->h->full);
  while (p->up_done < up_want || p->dn_done < dn_want) {
    int rc = pipe_pump(p, err);
    if (rc < 0) return rc;
    int up = p->up_done < up_want, q = 0;
    size_t off, len;
    pipe_item(p, up ? p->up_done : p->dn_done, &off, &len, &q);
    rc = nn_ring_wait_tick(&wait, rc, p->h->full, p->h->local[q],
                           up == p->leader ? "from" : "to", err);
    if (rc) return rc;
  }
  return 0;
}

/* NN_AR_HIER: host phases around the hosts' ring, pipelined. The leaders
 * ring the buffer in segments of a multiple of H chunks (so the ring's
 * blocks stay even), at most 4: segment s's ring runs while the peers'
 * chunks of the later segments are added and the earlier segments go back
 * to the peers. The ring of pieces sums as the ring of the whole
 * (nn_ring_allreduce_at), and the host sums are the same, so the bits do not
 * depend on the segments. */
static int hier_allreduce(nn_hier *h, float *buf, size_t count, size_t base, nn_error *err) {
  int rc = 0, L = h->topo.lsize, H = h->topo.nhosts;
  hier_pipe p;
  memset(&p, 0, sizeof p);
  p.h = h;
  p.buf = buf;
  p.count = count;
  p.C = h->chunk;
  p.nch = (count + p.C - 1) / p.C;
  p.L = L;
  p.leader = h->topo.lrank == 0;
  p.n = p.leader ? p.nch * (size_t)(L - 1) : p.nch;
  if (!p.leader) return pipe_wait(&p, p.nch, p.nch, err);
  size_t hh = (size_t)H, nseg = p.nch / hh;
  if (nseg < 1) nseg = 1;
  if (nseg > 4) nseg = 4;
  size_t segc = (p.nch + nseg - 1) / nseg;
  segc = (segc + hh - 1) / hh * hh;
  for (size_t c0 = 0; c0 < p.nch; c0 += segc) {
    size_t c1 = c0 + segc < p.nch ? c0 + segc : p.nch;
    if ((rc = pipe_wait(&p, c1, 0, err))) return rc;
    size_t off = c0 * p.C, len = (c1 == p.nch ? count : c1 * p.C) - off;
    if (h->lead) {
      nn_ring_set_pump(h->lead, pipe_pump, &p);
      rc = nn_ring_allreduce_at(h->lead, buf + off, len, base + off, err);
      nn_ring_set_pump(h->lead, NULL, NULL);
      if (rc) return rc;
    }
    p.dn_limit = c1;
  }
  return pipe_wait(&p, p.nch, p.nch, err);
}

/* ---- reduce-scatter variant (NN_AR_HIER_RS) ------------------------------ */

/* The slot rings and buffers. Collective on comm (the split). */
static int rs_create(nn_hier *h, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                     int compress, nn_error *err) {
  int rc = 0, P = h->slots, lr = h->topo.lrank;
  HIER_MPI(MPI_Comm_split(comm, lr < P ? lr : MPI_UNDEFINED, h->topo.host, &h->slotc));
  if (h->slotc != MPI_COMM_NULL) {
    /* a call's part: at most (count/G + 2)/P + 1 stripes */
    h->pk_cap = max_count / (size_t)P + 3 * h->chunk;
    if (h->pk_cap > max_count) h->pk_cap = max_count ? max_count : 1;
    rc = nn_ring_create_ex(&h->slot, h->slotc, h->pk_cap, chunk_bytes, compress, err);
    if (rc) goto done;
    nn_ring_set_watch(h->slot, h->full);
    h->pk = nn_malloc(h->pk_cap * sizeof(float));
    if (!h->pk) {
      rc = nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory for %zu floats", h->pk_cap);
      goto done;
    }
  }
  /* a call touches at most max_count/G + 2 stripes, each one message per
   * local rank and direction */
  h->cap_items = (max_count / h->chunk + 2) * (size_t)h->topo.lsize;
  for (int i = 0; i < 2; i++) {
    h->items[i] = nn_malloc(h->cap_items * sizeof *h->items[i]);
    h->reqs[i] = nn_malloc(h->cap_items * sizeof *h->reqs[i]);
    if (!h->items[i] || !h->reqs[i]) {
      rc = nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory");
      goto done;
    }
  }
done:
  return rc;
}

/* Run the send sequence items[0][0..ns) and the receive sequence
 * items[1][0..nr) of a host phase, each with up to NN__HIER_WINDOW messages
 * in flight; receives complete in order (the additions happen in sequence
 * order), sends in any order. */
static int rs_run(nn_hier *h, float *buf, size_t ns, size_t nr, nn_error *err) {
  int rc = 0;
  nn__hier_item *S = h->items[0], *R = h->items[1];
  MPI_Request *sq = h->reqs[0], *rq = h->reqs[1];
  size_t s_post = 0, s_done = 0, r_post = 0, r_done = 0, s_live = 0;
  nn_ring_wait wait;
  nn_ring_wait_init(&wait, h->full);
  float *rx[NN__HIER_WINDOW];
  for (int i = 0; i < NN__HIER_WINDOW; i++) rx[i] = h->rx[i];
  while (s_done < ns || r_done < nr) {
    int progress = 0;
    while (r_post < nr && r_post - r_done < NN__HIER_WINDOW) {
      nn__hier_item *it = &R[r_post];
      if (it->op == HI_RECV_ADD)
        HIER_MPI(MPI_Irecv(rx[r_post % NN__HIER_WINDOW], (int)it->len, MPI_FLOAT, it->q,
                           NN__HIER_TAG_UP, h->host, &rq[r_post]));
      else if (it->op == HI_RECV)
        HIER_MPI(MPI_Irecv(buf + it->off, (int)it->len, MPI_FLOAT, it->q, NN__HIER_TAG_DOWN,
                           h->host, &rq[r_post]));
      else
        rq[r_post] = MPI_REQUEST_NULL; /* HI_OWN: this rank's own value, no message */
      r_post++;
    }
    while (s_post < ns && s_live < NN__HIER_WINDOW) {
      nn__hier_item *it = &S[s_post];
      const float *src = it->op == HI_SEND_PK ? h->pk + it->pk : buf + it->off;
      HIER_MPI(MPI_Isend(src, (int)it->len, MPI_FLOAT, it->q,
                         it->op == HI_SEND_PK ? NN__HIER_TAG_DOWN : NN__HIER_TAG_UP, h->host,
                         &sq[s_post]));
      s_post++;
      s_live++;
    }
    if (r_done < r_post) {
      int flag = 0;
      HIER_MPI(MPI_Test(&rq[r_done], &flag, MPI_STATUS_IGNORE));
      if (flag) {
        nn__hier_item *it = &R[r_done];
        float *acc = h->pk ? h->pk + it->pk : NULL;
        const float *v = it->op == HI_OWN ? buf + it->off : rx[r_done % NN__HIER_WINDOW];
        if (it->op != HI_RECV) {
          if (it->q == 0)
            memcpy(acc, v, it->len * sizeof *acc);
          else
            nn_ring_add(acc, v, it->len);
        }
        r_done++;
        progress = 1;
      }
    }
    for (size_t k = s_done; k < s_post; k++) {
      if (sq[k] == MPI_REQUEST_NULL) continue;
      int flag = 0;
      HIER_MPI(MPI_Test(&sq[k], &flag, MPI_STATUS_IGNORE));
      if (flag) {
        s_live--;
        progress = 1;
      }
    }
    while (s_done < s_post && sq[s_done] == MPI_REQUEST_NULL) s_done++;
    int on_recv = r_done < nr;
    int q = on_recv ? R[r_done].q : s_done < ns ? S[s_done].q : 0;
    rc = nn_ring_wait_tick(&wait, progress, h->full, h->local[q], on_recv ? "from" : "to", err);
    if (rc) goto done;
  }
done:
  return rc;
}

/*
 * rs_allreduce_at: every rank of a host owns the global stripes j (of G
 * floats) with j mod P == its local rank (P = the smallest host's size;
 * local ranks >= P own none).
 *   1. reduce-scatter in the host: the owner of stripe j receives it from
 *      every other local rank and sums, in local-rank order (its own value
 *      in its place), into its packed part h->pk: H_h, as NN_AR_HIER's;
 *   2. the slot ring (local rank p of every host) sums the packed parts;
 *      packed stripe j / P is the ring's stripe, so pieces == whole;
 *   3. all-gather in the host: the owner sends each summed stripe to every
 *      other local rank, which receives it in place.
 * Element i of stripe j ends as the ring order over the hosts' H with
 * b = (j / P) mod H.
 */
static int rs_allreduce_at(nn_hier *h, float *buf, size_t count, size_t base, nn_error *err) {
  int rc = 0, L = h->topo.lsize, me = h->topo.lrank, P = h->slots;
  size_t G = h->chunk, j0 = base / G, j1 = (base + count + G - 1) / G;
  size_t ns = 0, nr = 0, npk = 0, pk_base = 0;
  int have_pk = 0;
  /* phase 1 sequences */
  for (size_t j = j0; j < j1; j++) {
    size_t lo = j * G < base ? base : j * G;
    size_t hi = (j + 1) * G > base + count ? base + count : (j + 1) * G;
    int owner = (int)(j % (size_t)P);
    nn__hier_item it = {lo - base, hi - lo, 0, owner, HI_SEND};
    if (owner != me) {
      h->items[0][ns++] = it;
      continue;
    }
    if (!have_pk) {
      pk_base = (j / (size_t)P) * G + (lo - j * G);
      have_pk = 1;
    }
    it.pk = npk;
    for (int q = 0; q < L; q++) {
      it.q = q;
      it.op = q == me ? HI_OWN : HI_RECV_ADD;
      h->items[1][nr++] = it;
    }
    npk += hi - lo;
  }
  if ((rc = rs_run(h, buf, ns, nr, err))) goto done;
  /* phase 2 */
  if (h->slot && (rc = nn_ring_allreduce_at(h->slot, h->pk, npk, pk_base, err))) goto done;
  /* phase 3 sequences: owners send their stripes to everyone else */
  ns = nr = 0;
  for (size_t j = j0, k = 0; j < j1; j++) {
    size_t lo = j * G < base ? base : j * G;
    size_t hi = (j + 1) * G > base + count ? base + count : (j + 1) * G;
    int owner = (int)(j % (size_t)P);
    nn__hier_item it = {lo - base, hi - lo, k, owner, HI_RECV};
    if (owner != me) {
      h->items[1][nr++] = it;
      continue;
    }
    memcpy(buf + it.off, h->pk + k, it.len * sizeof(float));
    for (int q = 0; q < L; q++) {
      if (q == me) continue;
      it.q = q;
      it.op = HI_SEND_PK;
      h->items[0][ns++] = it;
    }
    k += hi - lo;
  }
  rc = rs_run(h, buf, ns, nr, err);
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
  if (h->algo == NN_AR_HIER_RS) return rs_allreduce_at(h, buf, count, base, err);
  return hier_allreduce(h, buf, count, base, err);
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

void nn_hier_set_watch(nn_hier *h, nn_ring *watch) {
  nn_ring *w = watch ? watch : h->full;
  nn_ring_set_watch(h->full, w);
  if (h->lead) nn_ring_set_watch(h->lead, w);
  if (h->slot) nn_ring_set_watch(h->slot, w);
}
