/* allreduce.c: our ring all-reduce over MPI point-to-point, its watchdog,
 * and the bucketed gradient synchronizer (see allreduce.h, docs/allreduce.md).
 *
 * This file is the only place nntrain sums gradients across ranks. It uses
 * MPI_Isend/MPI_Irecv/MPI_Test only (no MPI collectives for the data), so the
 * order of every addition is ours to fix: runs are repeatable bit for bit and
 * every rank ends with the same bits. It does not average (the caller scales)
 * and does not know about models; it sees float buffers. */
#include "worker/allreduce.h"
#include "core/mem.h"
#include "worker/hier.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/mpi_check.h"

#define NN__RING_MAX_CHUNK_BYTES ((size_t)256 << 10)
#define NN__RING_SEND_WINDOW 4      /* sends in flight per rank */
#define NN__RING_SPIN_POLLS 256     /* idle polls before each sched_yield */
#define NN__RING_TAG_DATA 1         /* on r->comm */
#define NN__RING_TAG_PROBE 2        /* on r->diag: "are you in the all-reduce?" */
#define NN__RING_TAG_ANSWER 3       /* on r->diag: "yes, at step S" */
#define NN__RING_GRACE_S 1.5        /* how long a timed-out rank collects answers */
#define NN__RING_LINGER_S 4.0       /* non-reporters wait this long for the abort */
#define NN__RING_HOST_LEN 64        /* bytes of a host name kept per rank */

/* One message of the ring: floats buf[off, off+len); reduce = 1 in the
 * reduce-scatter phase (received into scratch, then added), 0 in the
 * all-gather phase (received straight into buf). */
typedef struct nn__ring_item {
  size_t off;
  size_t len;
  int reduce;
} nn__ring_item;

struct nn_ring {
  MPI_Comm comm;          /* dup of the caller's comm: data traffic */
  MPI_Comm diag;          /* second dup: watchdog probes and answers */
  int rank, size;
  size_t max_count;       /* largest count accepted (floats) */
  size_t chunk;           /* stripe and message size (floats) */
  float *scratch[2];      /* [chunk] each: the two toggled receive buffers */
  nn__ring_item *recv_items; /* [cap_items] receive sequence of one call */
  nn__ring_item *send_items; /* [cap_items] send sequence of one call */
  MPI_Request *sreq;      /* [cap_items] one request per send item */
  size_t cap_items;
  double timeout;         /* seconds without progress before diagnosis; 0 = off */
  long step;              /* step named in messages */
  int step_set;           /* 1: step set by the caller for the next call */
  long calls;             /* all-reduce calls so far */
  int *world;             /* [size] each member's rank in MPI_COMM_WORLD */
  char *hosts;            /* [size * NN__RING_HOST_LEN] each member's host, or NULL */
  nn_ring *watch;         /* ring whose diag comm, timeout and step the watchdog uses */
  int compress;           /* NN_WIRE_*: 16-bit values on the wire */
  uint16_t *rx16[2];      /* [chunk] compressed receives */
  uint16_t *tx16[NN__RING_SEND_WINDOW]; /* [chunk] compressed sends in flight */
  nn_ring_pump_fn pump;   /* run on every pass of the wait loop (or NULL) */
  void *pump_ctx;
};

/* ---- helpers ------------------------------------------------------------- */

static double ring_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void ring_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Every MPI call of the ring goes through worker/mpi_check.h; `what` says
 * which step of the ring it was. */
#define RING_MPI(call, what)                                                  \
  do {                                                                        \
    if ((rc = nn_mpi_check((call), #call, __FILE__, __LINE__, err)) != 0) {    \
      nn_error_prefix(err, "all-reduce (%s)", what);                          \
      goto done;                                                              \
    }                                                                         \
  } while (0)

/* dst[i] += src[i] for i < n, 16 floats at a time with GCC/Clang vector
 * types (one AVX-512 or two AVX2 adds; gcc -O2 does not vectorize the plain
 * loop). Each element is one IEEE add either way, so the bits do not depend
 * on the vector width. memcpy keeps unaligned loads and stores legal. */
typedef float nn__v16f __attribute__((vector_size(64)));

void nn_ring_add(float *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    nn__v16f a0, a1, b0, b1;
    memcpy(&a0, dst + i, sizeof a0);
    memcpy(&a1, dst + i + 16, sizeof a1);
    memcpy(&b0, src + i, sizeof b0);
    memcpy(&b1, src + i + 16, sizeof b1);
    a0 += b0;
    a1 += b1;
    memcpy(dst + i, &a0, sizeof a0);
    memcpy(dst + i + 16, &a1, sizeof a1);
  }
  for (; i < n; i++) dst[i] += src[i];
}

/* ---- 16-bit wire values ------------------------------------------------- */

/* float -> bfloat16, round to nearest even (NaN stays a quiet NaN; values
 * past bf16's largest round to Inf, as fp32 would). */
static inline uint16_t wire_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float wire_from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* float -> IEEE half, round to nearest even; finite values beyond +-65504
 * saturate to +-65504 (Inf and NaN pass through, so the trainer's
 * non-finite guard still sees them). In integer arithmetic: clang 14 has no
 * _Float16 on x86-64 without AVX512-FP16, and it must give the same bits on
 * every rank (tests/test_wire.c: against gcc's _Float16 conversion). */
static inline uint16_t wire_to_fp16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);                        /* Inf */
  if (a > 0x477fe000u) a = 0x477fe000u;      /* saturate at 65504 */
  if (a >= 0x38800000u) {                     /* a normal half: |f| >= 2^-14 */
    uint32_t r = a - 0x38000000u;             /* exponent bias 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);           /* round 23 -> 10 mantissa bits, ties to even */
    return (uint16_t)(sign | (r >> 13));
  }
  /* a subnormal half (or zero): |f| / 2^-24 rounded to nearest even */
  const uint32_t e = a >> 23, shift = 126 - e; /* >= 14 here */
  if (shift > 24) return sign;                 /* below half of 2^-24 */
  const uint32_t m = (a & 0x7fffffu) | 0x800000u, q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  return (uint16_t)(sign | (q + (rem > half || (rem == half && (q & 1u)))));
}

static inline float wire_from_fp16(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0) { /* zero or subnormal: m * 2^-24, exact in float */
    float f = (float)m * 0x1p-24f;
    memcpy(&u, &f, 4);
    u |= sign;
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* dst[i] = encode(src[i]); with `back`, src[i] also becomes the decoded
 * value (what every other rank will hold). */
static void wire_pack(int mode, uint16_t *restrict dst, float *restrict src, size_t n, int back) {
  if (mode == NN_WIRE_BF16) {
    for (size_t i = 0; i < n; i++) dst[i] = wire_to_bf16(src[i]);
    if (back)
      for (size_t i = 0; i < n; i++) src[i] = wire_from_bf16(dst[i]);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = wire_to_fp16(src[i]);
    if (back)
      for (size_t i = 0; i < n; i++) src[i] = wire_from_fp16(dst[i]);
  }
}

/* dst[i] += decode(src[i]) (add) or dst[i] = decode(src[i]). */
static void wire_unpack(int mode, float *restrict dst, const uint16_t *restrict src, size_t n,
                        int add) {
  if (mode == NN_WIRE_BF16) {
    if (add)
      for (size_t i = 0; i < n; i++) dst[i] += wire_from_bf16(src[i]);
    else
      for (size_t i = 0; i < n; i++) dst[i] = wire_from_bf16(src[i]);
  } else {
    if (add)
      for (size_t i = 0; i < n; i++) dst[i] += wire_from_fp16(src[i]);
    else
      for (size_t i = 0; i < n; i++) dst[i] = wire_from_fp16(src[i]);
  }
}

float nn_wire_round(int mode, float x) {
  if (mode == NN_WIRE_BF16) return wire_from_bf16(wire_to_bf16(x));
  if (mode == NN_WIRE_FP16) return wire_from_fp16(wire_to_fp16(x));
  return x;
}

const char *nn_wire_name(int mode) {
  return mode == NN_WIRE_BF16 ? "bf16" : mode == NN_WIRE_FP16 ? "fp16" : "none";
}

int nn_wire_parse(const char *s) {
  if (!strcmp(s, "none")) return NN_WIRE_NONE;
  if (!strcmp(s, "bf16")) return NN_WIRE_BF16;
  if (!strcmp(s, "fp16")) return NN_WIRE_FP16;
  return -1;
}

/* ---- create / free ------------------------------------------------------- */

/* Each member's rank in MPI_COMM_WORLD and host name (MPI_Get_processor_name;
 * under NN_SIM_HOST_RANKS=k, "NAME/sim<world rank / k>"). Collective on
 * r->comm, also when this rank's allocation failed: the ranks first agree
 * that every one of them has its buffers, and skip the gather otherwise
 * (names are only for messages; the rank that failed returns NN_ENOMEM). */
static int ring_gather_names(nn_ring *r, nn_error *err) {
  int rc = 0, ok = 1, all = 0, wr = 0;
  size_t N = (size_t)r->size;
  r->world = nn_malloc(N * sizeof *r->world);
  r->hosts = nn_malloc(N * NN__RING_HOST_LEN);
  ok = r->world && r->hosts;
  RING_MPI(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, r->comm), "MPI_Allreduce(names)");
  if (!all) {
    free(r->hosts);
    r->hosts = NULL;
    if (!ok) rc = nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory");
    goto done;
  }
  char me[NN__RING_HOST_LEN];
  RING_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &wr), "MPI_Comm_rank");
  RING_MPI(nn_host_label(me, sizeof me, wr), "MPI_Get_processor_name");
  RING_MPI(MPI_Allgather(&wr, 1, MPI_INT, r->world, 1, MPI_INT, r->comm), "MPI_Allgather");
  RING_MPI(MPI_Allgather(me, NN__RING_HOST_LEN, MPI_CHAR, r->hosts, NN__RING_HOST_LEN, MPI_CHAR,
                         r->comm), "MPI_Allgather");
done:
  return rc;
}

int nn_ring_create(nn_ring **out, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                   nn_error *err) {
  return nn_ring_create_ex(out, comm, max_count, chunk_bytes, NN_WIRE_NONE, err);
}

size_t nn_ring_default_chunk(size_t max_count, int ways) {
  const size_t most = NN__RING_MAX_CHUNK_BYTES / sizeof(float);
  size_t w = ways > 1 ? (size_t)ways : 1;
  size_t g = max_count / w + (max_count % w != 0);
  g = (g + 15) / 16 * 16;
  if (g > most) g = most;
  if (g == 0) g = 16;
  return g * sizeof(float);
}

int nn_ring_create_ex(nn_ring **out, MPI_Comm comm, size_t max_count, size_t chunk_bytes,
                      int compress, nn_error *err) {
  int rc = 0;
  *out = NULL;
  /* The collective part first, on every rank whatever happens locally: a
   * rank whose allocation fails must not leave its peers inside
   * MPI_Comm_dup (the caller agrees on the result afterwards). */
  MPI_Comm c = MPI_COMM_NULL, d = MPI_COMM_NULL;
  int mrc = MPI_Comm_dup(comm, &c);
  int mrc2 = MPI_Comm_dup(comm, &d);
  nn_ring *r = nn_calloc(1, sizeof *r);
  if (!r) {
    /* still take part in ring_gather_names' agreement, so the peers do not
     * wait for this rank there */
    int ok = 0, all = 0;
    if (c != MPI_COMM_NULL) MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, c);
    if (c != MPI_COMM_NULL) MPI_Comm_free(&c);
    if (d != MPI_COMM_NULL) MPI_Comm_free(&d);
    return nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory");
  }
  r->comm = c;
  r->diag = d;
  r->watch = r;
  r->compress = compress == NN_WIRE_BF16 || compress == NN_WIRE_FP16 ? compress : NN_WIRE_NONE;
  RING_MPI(mrc, "MPI_Comm_dup");
  RING_MPI(mrc2, "MPI_Comm_dup");
  RING_MPI(MPI_Comm_rank(comm, &r->rank), "MPI_Comm_rank");
  RING_MPI(MPI_Comm_size(comm, &r->size), "MPI_Comm_size");
  RING_MPI(MPI_Comm_set_errhandler(r->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  RING_MPI(MPI_Comm_set_errhandler(r->diag, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  if ((rc = ring_gather_names(r, err))) goto done;
  if (chunk_bytes == 0) chunk_bytes = nn_ring_default_chunk(max_count, r->size);
  r->chunk = chunk_bytes / sizeof(float);
  if (r->chunk == 0) r->chunk = 1;
  if (r->chunk > (size_t)INT32_MAX) r->chunk = (size_t)INT32_MAX;
  r->max_count = max_count;
  /* A call covers at most max_count/chunk + 2 stripes (two partial ends);
   * each stripe is received at most twice and sent at most twice. */
  r->cap_items = 2 * (max_count / r->chunk + 2);
  size_t scratch = r->chunk < max_count ? r->chunk : (max_count ? max_count : 1);
  int bad = 0;
  if (r->compress) {
    for (int i = 0; i < 2; i++) bad |= !(r->rx16[i] = nn_malloc(scratch * sizeof(uint16_t)));
    for (int i = 0; i < NN__RING_SEND_WINDOW; i++)
      bad |= !(r->tx16[i] = nn_malloc(scratch * sizeof(uint16_t)));
  } else {
    r->scratch[0] = nn_malloc(scratch * sizeof(float));
    r->scratch[1] = nn_malloc(scratch * sizeof(float));
    bad = !r->scratch[0] || !r->scratch[1];
  }
  r->recv_items = nn_malloc(r->cap_items * sizeof *r->recv_items);
  r->send_items = nn_malloc(r->cap_items * sizeof *r->send_items);
  r->sreq = nn_malloc(r->cap_items * sizeof *r->sreq);
  if (bad || !r->recv_items || !r->send_items || !r->sreq) {
    rc = nn_error_set(err, NN_ENOMEM, "all-reduce: out of memory for %zu floats of scratch",
                      scratch);
    goto done;
  }
  *out = r;
  r = NULL;
done:
  nn_ring_free(r);
  return rc;
}

void nn_ring_free(nn_ring *r) {
  if (!r) return;
  if (r->comm != MPI_COMM_NULL) MPI_Comm_free(&r->comm);
  if (r->diag != MPI_COMM_NULL) MPI_Comm_free(&r->diag);
  free(r->scratch[0]);
  free(r->scratch[1]);
  for (int i = 0; i < 2; i++) free(r->rx16[i]);
  for (int i = 0; i < NN__RING_SEND_WINDOW; i++) free(r->tx16[i]);
  free(r->recv_items);
  free(r->send_items);
  free(r->sreq);
  free(r->world);
  free(r->hosts);
  free(r);
}

void nn_ring_set_watch(nn_ring *r, nn_ring *watch) { r->watch = watch ? watch : r; }

void nn_ring_set_pump(nn_ring *r, nn_ring_pump_fn fn, void *ctx) {
  r->pump = fn;
  r->pump_ctx = fn ? ctx : NULL;
}

int nn_ring_world_rank(const nn_ring *r, int member) {
  return r->world && member >= 0 && member < r->size ? r->world[member] : member;
}

const char *nn_ring_host(const nn_ring *r, int member) {
  return r->hosts && member >= 0 && member < r->size ? r->hosts + (size_t)member * NN__RING_HOST_LEN
                                                     : NULL;
}

/* "rank W (host H)" for member q into buf. */
static void ring_who(const nn_ring *r, int q, char *buf, size_t n) {
  const char *h = nn_ring_host(r, q);
  if (h)
    snprintf(buf, n, "%d (host %s)", nn_ring_world_rank(r, q), h);
  else
    snprintf(buf, n, "%d", nn_ring_world_rank(r, q));
}

void nn_ring_set_timeout(nn_ring *r, double seconds) { r->timeout = seconds > 0 ? seconds : 0; }

void nn_ring_set_step(nn_ring *r, long step) {
  r->step = step;
  r->step_set = 1;
  if (r->watch != r) r->watch->step = step; /* what its watchdog says and answers */
}

size_t nn_ring_chunk(const nn_ring *r) { return r->chunk; }

/* ---- watchdog ------------------------------------------------------------ */

/* Answer every pending probe on the diag comm with our step. */
static int ring_answer_probes(nn_ring *r, nn_error *err) {
  int rc = 0;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    RING_MPI(MPI_Iprobe(MPI_ANY_SOURCE, NN__RING_TAG_PROBE, r->diag, &flag, &st), "MPI_Iprobe");
    if (!flag) break;
    long their = 0;
    RING_MPI(MPI_Recv(&their, 1, MPI_LONG, st.MPI_SOURCE, NN__RING_TAG_PROBE, r->diag,
                      MPI_STATUS_IGNORE), "MPI_Recv(probe)");
    MPI_Request q;
    RING_MPI(MPI_Isend(&r->step, 1, MPI_LONG, st.MPI_SOURCE, NN__RING_TAG_ANSWER, r->diag, &q),
             "MPI_Isend(answer)");
    RING_MPI(MPI_Request_free(&q), "MPI_Request_free");
  }
done:
  return rc;
}

/* Called when no progress was seen for w->timeout seconds while waiting on
 * `peer` (a "rank W (host H)" text). Asks every rank of the watch ring w
 * whether it is inside the all-reduce; ranks that do not answer within
 * NN__RING_GRACE_S are the ones that did not arrive (stopped, dead, or stuck
 * elsewhere). Every live rank reaches the same verdict; the lowest live rank
 * returns at once, the others linger so that one message is printed before
 * the abort. Always returns NN_EMPI. */
static int ring_diagnose(nn_ring *r, const char *peer, const char *dir, double waited,
                         nn_error *err) {
  int rc = 0, n = r->size;
  char *answered = nn_calloc((size_t)n, 1);
  if (!answered) {
    rc = nn_error_set(err, NN_EMPI,
                      "no message %s rank %s in the all-reduce of step %ld within %g s; "
                      "aborting the job", dir, peer, r->step, waited);
    goto done;
  }
  answered[r->rank] = 1;
  for (int q = 0; q < n; q++) {
    if (q == r->rank) continue;
    MPI_Request req;
    RING_MPI(MPI_Isend(&r->step, 1, MPI_LONG, q, NN__RING_TAG_PROBE, r->diag, &req),
             "MPI_Isend(probe)");
    RING_MPI(MPI_Request_free(&req), "MPI_Request_free");
  }
  double t0 = ring_now();
  int nans = 1;
  while (nans < n && ring_now() - t0 < NN__RING_GRACE_S) {
    rc = ring_answer_probes(r, err);
    if (rc) goto done;
    int flag = 0;
    MPI_Status st;
    RING_MPI(MPI_Iprobe(MPI_ANY_SOURCE, NN__RING_TAG_ANSWER, r->diag, &flag, &st), "MPI_Iprobe");
    if (flag) {
      long their = 0;
      RING_MPI(MPI_Recv(&their, 1, MPI_LONG, st.MPI_SOURCE, NN__RING_TAG_ANSWER, r->diag,
                        MPI_STATUS_IGNORE), "MPI_Recv(answer)");
      if (!answered[st.MPI_SOURCE]) nans++;
      answered[st.MPI_SOURCE] = 1;
    } else {
      ring_sleep_ms(1);
    }
  }
  int reporter = -1;
  char list[512] = "";
  size_t k = 0;
  int nmissing = 0;
  for (int q = 0; q < n; q++) {
    if (answered[q]) {
      if (reporter < 0) reporter = q;
      continue;
    }
    if (k < sizeof list) {
      char who[128];
      ring_who(r, q, who, sizeof who);
      int w = snprintf(list + k, sizeof list - k, "%s%s", nmissing ? ", " : "", who);
      if (w > 0) k += (size_t)w;
    }
    nmissing++;
  }
  if (nmissing > 0)
    nn_error_set(err, NN_EMPI,
                 "rank%s %s did not reach the all-reduce of step %ld within %g s; "
                 "aborting the job", nmissing > 1 ? "s" : "", list, r->step, r->timeout);
  else {
    char me[128];
    ring_who(r, r->rank, me, sizeof me);
    nn_error_set(err, NN_EMPI,
                 "rank %s: no message %s rank %s in the all-reduce of step %ld within %g s, "
                 "though every rank is in it; aborting the job", me, dir, peer, r->step,
                 waited);
  }
  if (err) err->rank = -1;
  rc = NN_EMPI;
  if (reporter != r->rank) {
    /* Not ours to report: keep answering until the reporter aborts the job. */
    double t1 = ring_now();
    while (ring_now() - t1 < NN__RING_LINGER_S) {
      nn_error tmp;
      nn_error_clear(&tmp);
      if (ring_answer_probes(r, &tmp)) break;
      ring_sleep_ms(5);
    }
  }
done:
  free(answered);
  return rc;
}

void nn_ring_wait_init(nn_ring_wait *q, nn_ring *r) {
  q->w = r->watch;
  q->last = q->last_probe = q->w->timeout > 0 ? ring_now() : 0;
  q->idle = 0;
}

int nn_ring_wait_tick(nn_ring_wait *q, int progress, const nn_ring *pr, int peer,
                      const char *dir, nn_error *err) {
  /* On a machine with more runnable processes than cores, the peer we
   * wait on may be waiting for our core: after a while, give it up. */
  q->idle = progress ? 0 : q->idle + 1;
  if (q->idle >= NN__RING_SPIN_POLLS) sched_yield();
  nn_ring *w = q->w;
  if (w->timeout <= 0) return 0;
  double now = ring_now();
  if (progress) {
    q->last = now;
  } else if (now - q->last > w->timeout) {
    char who[128];
    ring_who(pr, peer, who, sizeof who);
    return ring_diagnose(w, who, dir, now - q->last, err);
  }
  if (now - q->last_probe > 1e-3) {
    q->last_probe = now;
    return ring_answer_probes(w, err);
  }
  return 0;
}

/* ---- the ring ------------------------------------------------------------ */

/* Append to items[*n] the stripes of block b (stripes j with j % N == b among
 * global stripes [j0, j1)) clipped to [base, base+count), as offsets into the
 * buffer. */
static void ring_block_items(const nn_ring *r, size_t base, size_t count, int b, int reduce,
                             nn__ring_item *items, size_t *n) {
  size_t G = r->chunk, N = (size_t)r->size;
  size_t j0 = base / G, j1 = (base + count + G - 1) / G;
  size_t first = j0 + (((size_t)b + N - j0 % N) % N);
  for (size_t j = first; j < j1; j += N) {
    size_t lo = j * G < base ? base : j * G;
    size_t hi = (j + 1) * G > base + count ? base + count : (j + 1) * G;
    items[*n].off = lo - base;
    items[*n].len = hi - lo;
    items[*n].reduce = reduce;
    (*n)++;
  }
}

/* Wait-free progress check of one request; *done = 1 when complete. */
static int ring_test(nn_ring *r, MPI_Request *q, int *done, const char *what, nn_error *err) {
  int rc = 0;
  RING_MPI(MPI_Test(q, done, MPI_STATUS_IGNORE), what);
done:
  return rc;
}

/*
 * nn_ring_allreduce_at
 *
 * Description: in-place sum of buf[0, count) over the N ranks of the ring,
 *   as a reduce-scatter followed by an all-gather, pipelined in chunks.
 *   The buffer is seen as part of a larger "global" buffer starting `base`
 *   floats earlier, cut into stripes of G = chunk floats: global stripe j is
 *   [jG, (j+1)G), and it belongs to block j mod N. A block is therefore a set
 *   of interleaved stripes, and every message is one (clipped) stripe, sent
 *   straight from buf with no packing.
 *
 *   Rank r, with left = r-1 and right = r+1 (mod N):
 *     reduce-scatter, step s = 0..N-2:
 *       send block (r-s) to right; receive block (r-s-1) from left into
 *       scratch and add it into buf.  After N-2, rank r holds the full sum of
 *       block (r+1).
 *     all-gather, step t = 0..N-2:
 *       send block (r+1-t) to right; receive block (r-t) from left straight
 *       into buf (the owner's sum is copied, never recomputed).
 *
 *   Step table for N = 3 (entry = partial sum of that block held by the rank;
 *   "a+b" means rank a's value plus rank b's, in that order):
 *
 *          | block 0     | block 1     | block 2
 *     -----+-------------+-------------+-------------
 *     s=0  | 1: 0+1      | 2: 1+2      | 0: 2+0
 *     s=1  | 2: 0+1+2    | 0: 1+2+0    | 1: 2+0+1      (owner = block+2)
 *     t=0  | 0: copy     | 1: copy     | 2: copy
 *     t=1  | 1: copy     | 2: copy     | 0: copy
 *
 *   So element i of global stripe j is summed as
 *   x[b] + x[b+1] + ... + x[b+N-1] (ranks mod N, left to right), b = j mod N:
 *   an order fixed by (global index, G, N) alone, never by timing, and the
 *   same whether the buffer is reduced in one call or piece by piece.
 *
 *   Pipelining: each rank walks its receive sequence in order, with the next
 *   two receives posted (scratch[0] and scratch[1] toggled in the
 *   reduce-scatter), so the next message arrives while the current one is
 *   added. A chunk received in step s is forwarded in step s+1 as soon as it
 *   is added, so the phases overlap chunk by chunk. At most
 *   NN__RING_SEND_WINDOW sends are in flight, so the receiver has most of
 *   them posted when they arrive (no unexpected-message copies).
 *
 * Accepts: count <= max_count given to nn_ring_create; count may be 0 or
 *   fewer than N (blocks may be empty); N = 1 returns at once.
 * Returns: 0, NN_EINVAL (count too large), NN_EMPI (an MPI call failed: the
 *   message names the call and rank; or the watchdog fired: the message names
 *   the rank that did not arrive and the step).
 * Limitations: every rank must call with the same count and base. Chunks
 *   over 2^31-1 floats are capped. On NN_EMPI the ring is unusable; the job
 *   must be aborted (pending requests are left to MPI_Abort).
 */
int nn_ring_allreduce_at(nn_ring *r, float *buf, size_t count, size_t base, nn_error *err) {
  int rc = 0;
  r->calls++;
  if (!r->step_set) r->step = r->calls;
  r->step_set = 0;
  if (count > r->max_count)
    return nn_error_set(err, NN_EINVAL, "all-reduce: %zu floats exceed the ring's maximum %zu",
                        count, r->max_count);
  int N = r->size, me = r->rank;
  if (N == 1 || count == 0) return 0;
  int left = (me - 1 + N) % N, right = (me + 1) % N;

  /* The send and receive sequences of this call. */
  size_t nrecv = 0, nsend = 0, nrecv_rs = 0, n0 = 0;
  for (int s = 0; s < 2 * (N - 1); s++) {
    int rs = s < N - 1;
    int sb = rs ? me - s : me + 1 - (s - (N - 1));
    int rb = rs ? me - s - 1 : me - (s - (N - 1));
    ring_block_items(r, base, count, ((sb % N) + N) % N, rs, r->send_items, &nsend);
    if (s == 0) n0 = nsend;
    ring_block_items(r, base, count, ((rb % N) + N) % N, rs, r->recv_items, &nrecv);
    if (rs) nrecv_rs = nrecv;
  }
  /* Sends of step s >= 1 are the receives of step s-1, in order: send item
   * n0+k may start once receive item k is added. The all-gather receive
   * j (item nrecv_rs + j) overwrites the region of send item j. */

  size_t k_done = 0, k_post = 0, m_done = 0, m_post = 0;
  MPI_Request rreq[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  nn_ring_wait wait;
  nn_ring_wait_init(&wait, r);
  int z = r->compress;
  while (k_done < nrecv || m_done < nsend) {
    int progress = 0;
    /* Keep two receives posted (before the sends, so that what arrives
     * finds its receive posted). */
    while (k_post < nrecv && k_post - k_done < 2) {
      const nn__ring_item *it = &r->recv_items[k_post];
      if (z) {
        /* 16-bit values into rx16, decoded when complete */
        if (!it->reduce && k_post - nrecv_rs >= m_done) break;
        RING_MPI(MPI_Irecv(r->rx16[k_post & 1], (int)it->len, MPI_UINT16_T, left,
                           NN__RING_TAG_DATA, r->comm, &rreq[k_post & 1]), "MPI_Irecv");
        k_post++;
        continue;
      }
      float *dst = buf + it->off;
      if (it->reduce) {
        dst = r->scratch[k_post & 1];
      } else if (k_post - nrecv_rs >= m_done) {
        break; /* the send from this region has not completed yet */
      }
      RING_MPI(MPI_Irecv(dst, (int)it->len, MPI_FLOAT, left, NN__RING_TAG_DATA, r->comm,
                         &rreq[k_post & 1]), "MPI_Irecv");
      k_post++;
    }
    /* Post ready sends within the window. */
    size_t m_ready = n0 + k_done < nsend ? n0 + k_done : nsend;
    while (m_post < m_ready && m_post - m_done < NN__RING_SEND_WINDOW) {
      const nn__ring_item *it = &r->send_items[m_post];
      if (z) {
        /* Encode; an all-gather send also rounds buf itself, so the owner
         * keeps the bits every other rank decodes. */
        uint16_t *t = r->tx16[m_post % NN__RING_SEND_WINDOW];
        wire_pack(z, t, buf + it->off, it->len, !it->reduce);
        RING_MPI(MPI_Isend(t, (int)it->len, MPI_UINT16_T, right, NN__RING_TAG_DATA, r->comm,
                           &r->sreq[m_post]), "MPI_Isend");
      } else {
        RING_MPI(MPI_Isend(buf + it->off, (int)it->len, MPI_FLOAT, right, NN__RING_TAG_DATA,
                           r->comm, &r->sreq[m_post]), "MPI_Isend");
      }
      m_post++;
    }
    /* Progress the oldest receive, then the oldest sends. */
    if (k_done < k_post) {
      int flag = 0;
      rc = ring_test(r, &rreq[k_done & 1], &flag, "MPI_Test(recv)", err);
      if (rc) goto done;
      if (flag) {
        const nn__ring_item *it = &r->recv_items[k_done];
        if (z)
          wire_unpack(z, buf + it->off, r->rx16[k_done & 1], it->len, it->reduce);
        else if (it->reduce)
          nn_ring_add(buf + it->off, r->scratch[k_done & 1], it->len);
        k_done++;
        progress = 1;
      }
    }
    while (m_done < m_post) {
      int flag = 0;
      rc = ring_test(r, &r->sreq[m_done], &flag, "MPI_Test(send)", err);
      if (rc) goto done;
      if (!flag) break;
      m_done++;
      progress = 1;
    }
    if (r->pump) {
      int p = r->pump(r->pump_ctx, err);
      if (p < 0) {
        rc = p;
        goto done;
      }
      progress |= p;
    }
    int on_recv = k_done < nrecv;
    rc = nn_ring_wait_tick(&wait, progress, r, on_recv ? left : right, on_recv ? "from" : "to",
                           err);
    if (rc) goto done;
  }
done:
  return rc;
}

int nn_ring_allreduce(nn_ring *r, float *buf, size_t count, nn_error *err) {
  return nn_ring_allreduce_at(r, buf, count, 0, err);
}

/* ---- gradient sync ------------------------------------------------------- */

/* Shared between the main thread (begin/ready/finish) and the communication
 * thread; every field below `mu` is guarded by it. */
struct nn_gradsync {
  nn_hier *ar;            /* the all-reduce (flat ring or hierarchical) */
  float *arena;           /* [n], not owned */
  size_t n;
  size_t bucket;          /* floats per bucket (last one may be shorter) */
  size_t nbuckets;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;      /* signalled on every state change */
  size_t *ready;          /* [nbuckets] floats reported final this step */
  int active;             /* a step is between begin and finish */
  int force;              /* finish called: treat every bucket as ready */
  int step_done;          /* communication thread finished this step */
  int quit;               /* free called */
  long step;              /* step number for messages */
  double timeout;         /* pending watchdog timeout */
  int status;             /* result of this step's reductions */
  nn_error err;           /* filled when status != 0 */
};

static size_t gs_bucket_size(const nn_gradsync *g, size_t b) {
  size_t lo = b * g->bucket, hi = lo + g->bucket;
  return (hi > g->n ? g->n : hi) - lo;
}

/* Communication thread: for each step, reduce buckets from the last to the
 * first (the order backward finishes them), each as soon as it is ready. The
 * order is the same on every rank, so the collective calls match. */
static void *gs_thread(void *arg) {
  nn_gradsync *g = arg;
  pthread_mutex_lock(&g->mu);
  for (;;) {
    while (!g->quit && !(g->active && !g->step_done)) pthread_cond_wait(&g->cv, &g->mu);
    if (g->quit) break;
    int status = 0;
    nn_error e;
    nn_error_clear(&e);
    long step = g->step;
    nn_hier_set_timeout(g->ar, g->timeout);
    for (size_t b = g->nbuckets; b-- > 0;) {
      size_t sz = gs_bucket_size(g, b);
      while (!g->force && !g->quit && g->ready[b] < sz) pthread_cond_wait(&g->cv, &g->mu);
      if (g->quit) {
        /* Freed in the middle of a step (an error path of the caller). */
        status = nn_error_set(&e, NN_EINTERNAL, "gradient sync: freed during a step");
        break;
      }
      pthread_mutex_unlock(&g->mu);
      nn_hier_set_step(g->ar, step);
      status = nn_hier_allreduce_at(g->ar, g->arena + b * g->bucket, sz, b * g->bucket, &e);
      pthread_mutex_lock(&g->mu);
      if (status) break;
    }
    g->status = status;
    if (status) g->err = e;
    g->step_done = 1;
    pthread_cond_broadcast(&g->cv);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

int nn_gradsync_create(nn_gradsync **out, MPI_Comm comm, float *arena, size_t n,
                       size_t bucket_bytes, nn_error *err) {
  return nn_gradsync_create_ex(out, comm, arena, n, bucket_bytes, NULL, err);
}

int nn_gradsync_create_ex(nn_gradsync **out, MPI_Comm comm, float *arena, size_t n,
                          size_t bucket_bytes, const nn_allreduce_cfg *cfg, nn_error *err) {
  int rc = 0, provided = 0;
  *out = NULL;
  int mrc = MPI_Query_thread(&provided);
  if (mrc != MPI_SUCCESS || provided < MPI_THREAD_SERIALIZED)
    return nn_error_set(err, NN_EMPI,
                        "gradient sync needs MPI initialized with MPI_THREAD_SERIALIZED or "
                        "higher (got level %d)", provided);
  if (bucket_bytes == 0) bucket_bytes = (size_t)4 << 20;
  size_t bucket = bucket_bytes / sizeof(float);
  if (bucket == 0) bucket = 1;
  /* the all-reduce (collective) before anything that can fail on one rank
   * alone; auto decides on the whole arena, so every bucket uses the same
   * algorithm */
  nn_hier *ar = NULL;
  nn_allreduce_cfg c = {NN_AR_RING, NN_WIRE_NONE, 0, 0, 0};
  if (cfg) c = *cfg;
  c.auto_bytes = n * sizeof(float);
  rc = nn_hier_create(&ar, comm, bucket < n ? bucket : n, c.chunk_bytes, &c, err);
  if (rc) return rc;
  nn_gradsync *g = nn_calloc(1, sizeof *g);
  if (!g) {
    nn_hier_free(ar);
    return nn_error_set(err, NN_ENOMEM, "gradient sync: out of memory");
  }
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->arena = arena;
  g->n = n;
  g->bucket = bucket;
  g->ar = ar;
  g->nbuckets = n ? (n + g->bucket - 1) / g->bucket : 0;
  g->ready = nn_calloc(g->nbuckets ? g->nbuckets : 1, sizeof *g->ready);
  if (!g->ready) {
    rc = nn_error_set(err, NN_ENOMEM, "gradient sync: out of memory");
    goto done;
  }
  if (pthread_create(&g->thread, NULL, gs_thread, g) != 0) {
    rc = nn_error_set(err, NN_EINTERNAL, "gradient sync: cannot start the communication thread");
    goto done;
  }
  g->thread_started = 1;
  *out = g;
  g = NULL;
done:
  nn_gradsync_free(g);
  return rc;
}

void nn_gradsync_free(nn_gradsync *g) {
  if (!g) return;
  if (g->thread_started) {
    pthread_mutex_lock(&g->mu);
    g->quit = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
  }
  nn_hier_free(g->ar);
  free(g->ready);
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g);
}

size_t nn_gradsync_count(const nn_gradsync *g) { return g->n; }

int nn_gradsync_algo(const nn_gradsync *g) { return nn_hier_algo(g->ar); }
size_t nn_gradsync_chunk(const nn_gradsync *g) { return nn_hier_chunk(g->ar); }
void nn_gradsync_set_watch(nn_gradsync *g, nn_ring *watch) { nn_hier_set_watch(g->ar, watch); }

void nn_gradsync_set_timeout(nn_gradsync *g, double seconds) {
  pthread_mutex_lock(&g->mu);
  g->timeout = seconds;
  pthread_mutex_unlock(&g->mu);
}

void nn_gradsync_begin_step(nn_gradsync *g, long step) {
  pthread_mutex_lock(&g->mu);
  memset(g->ready, 0, g->nbuckets * sizeof *g->ready);
  g->step = step;
  g->force = 0;
  g->step_done = 0;
  g->status = 0;
  nn_error_clear(&g->err);
  g->active = 1;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

void nn_gradsync_begin(nn_gradsync *g) { nn_gradsync_begin_step(g, g->step + 1); }

/* Ranges may straddle buckets; each element should be reported once per
 * step (a repeated report only makes a bucket look ready early). */
void nn_gradsync_ready(nn_gradsync *g, size_t offset, size_t count) {
  if (offset >= g->n) return;
  if (count > g->n - offset) count = g->n - offset;
  pthread_mutex_lock(&g->mu);
  int wake = 0;
  while (count > 0) {
    size_t b = offset / g->bucket;
    size_t end = (b + 1) * g->bucket;
    size_t take = end - offset < count ? end - offset : count;
    g->ready[b] += take;
    if (g->ready[b] >= gs_bucket_size(g, b)) wake = 1;
    offset += take;
    count -= take;
  }
  if (wake) pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

int nn_gradsync_finish(nn_gradsync *g, nn_error *err) {
  pthread_mutex_lock(&g->mu);
  if (!g->active) {
    pthread_mutex_unlock(&g->mu);
    return nn_error_set(err, NN_EINTERNAL, "gradient sync: finish without begin");
  }
  g->force = 1;
  pthread_cond_broadcast(&g->cv);
  while (!g->step_done) pthread_cond_wait(&g->cv, &g->mu);
  g->active = 0;
  int rc = g->status;
  if (rc && err) *err = g->err;
  pthread_mutex_unlock(&g->mu);
  return rc;
}
