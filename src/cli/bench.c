/* bench.c: `nntrain bench allreduce`: times our flat ring, the hierarchical
 * all-reduce and its reduce-scatter variant (worker/hier.h), the ring with
 * 16-bit values on the wire, and
 * MPI_Allreduce(MPI_SUM, MPI_FLOAT) on the same buffers, under the same MCA
 * settings, and checks that they give the same sums (the compressed ring
 * within its rounding).
 *
 * For each size: a warm-up, then iterations that run every algorithm, the
 * first one rotating; each timed call starts after a barrier, a call's time
 * is the slowest rank's, and the median over iterations is reported with the
 * bus bandwidth 2(N-1)/N * bytes / time (fp32 bytes, also for the compressed
 * ring: its gain shows as bandwidth). Rank 0 prints a table, or with --json
 * one object per size. --hosts-of K simulates hosts of K ranks
 * (NN_SIM_HOST_RANKS). Hidden options for the watchdog tests make one rank
 * stop (SIGSTOP) or die (SIGKILL) before an all-reduce. */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "worker/allreduce.h"
#include "worker/hier.h"
#include "worker/mpi_check.h"

#define BENCH_MAX_SIZES 32

typedef struct bench_opts {
  size_t sizes[BENCH_MAX_SIZES]; /* bytes, multiples of 4 */
  int nsizes;
  int iters;                     /* 0 = automatic per size */
  int json;
  size_t chunk_bytes;            /* 0 = ring default */
  double timeout;                /* watchdog seconds, 0 = off */
  int stall_rank, kill_rank;     /* -1 = none */
  int fault_iter;                /* iteration (1-based) before which the fault happens */
  int fault_algo;                /* NN_AR_RING or NN_AR_HIER: the all-reduce the fault precedes */
  int fault_split;               /* 0; 1 (shared), 2 (own): at the fault, the lowest live rank
                                    runs a separate control ring's all-reduce instead, as a
                                    trainer's step control beside its gradient sync; 1: the
                                    algorithm's all-reduce takes that ring's watchdog (as
                                    training does), 2: each keeps its own (the control case) */
  int hosts_of;                  /* > 0: simulated hosts of this many ranks */
  int compress;                  /* NN_WIRE_* of the compressed column (NONE: no column) */
} bench_opts;

/* The algorithms, in table order. */
enum { B_RING, B_HIER, B_HRS, B_MPI, B_CRING, B_NALGO };
static const char *const b_name[B_NALGO] = {"ring", "hier", "hier_rs", "mpi", "cring"};

static void bench_help(FILE *f) {
  fprintf(f,
          "usage: mpirun -np N nntrain bench allreduce [--sizes LIST] [--iters N] [--json]\n"
          "                                        [--chunk BYTES] [--timeout SECONDS]\n"
          "                                        [--hosts-of K] [--compress bf16|fp16|none]\n\n"
          "Times nntrain's flat ring all-reduce (ring), its hierarchical all-reduce\n"
          "(hier: sum onto each host's leader, ring across leaders, send back), the\n"
          "reduce-scatter variant (hrs: reduce-scatter in the host, a ring per local\n"
          "rank across hosts, all-gather), MPI_Allreduce (mpi) and the ring with\n"
          "16-bit values on the wire (cring), float sums on the same buffers, rotating\n"
          "which goes first; reports the median of each.\n\n"
          "  --sizes LIST     comma-separated sizes in bytes, suffix K or M allowed\n"
          "                   (default 4K,16K,64K,256K,1M,4M,16M,64M)\n"
          "  --iters N        timed iterations per size (default: 30, fewer for big sizes)\n"
          "  --json           print one JSON object per size instead of the table\n"
          "  --chunk BYTES    pipeline chunk of every algorithm (default: each one's own, as\n"
          "                   in training: size over the ring's members, at most 256K)\n"
          "  --timeout S      watchdog: abort if a rank does not arrive within S seconds\n"
          "  --hosts-of K     pretend consecutive groups of K ranks are hosts (sets\n"
          "                   NN_SIM_HOST_RANKS; default: the ranks sharing memory)\n"
          "  --compress F     the cring column's wire format: bf16 (default), fp16, or\n"
          "                   none (no cring column)\n\n"
          "busbw = 2(N-1)/N * bytes / time. Open MPI settings (e.g. OMPI_MCA_btl_vader_*)\n"
          "apply to both; btl_vader_single_copy_mechanism defaults to none here (set\n"
          "OMPI_MCA_btl_vader_single_copy_mechanism=cma to override); see docs/allreduce.md.\n");
}

/* "64K" -> 65536; 0 on a malformed value. */
static size_t parse_bytes(const char *s) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) return 0;
  if (*end == 'K' || *end == 'k') {
    v <<= 10;
    end++;
  } else if (*end == 'M' || *end == 'm') {
    v <<= 20;
    end++;
  } else if (*end == 'G' || *end == 'g') {
    v <<= 30;
    end++;
  }
  if (*end == 'B' || *end == 'b') end++;
  return *end ? 0 : (size_t)v;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

static int bench_parse(int argc, char **argv, bench_opts *o) {
  static const size_t defaults[] = {4 << 10, 16 << 10, 64 << 10, 256 << 10,
                                    1 << 20, 4 << 20, 16 << 20, 64 << 20};
  memset(o, 0, sizeof *o);
  o->nsizes = (int)(sizeof defaults / sizeof *defaults);
  memcpy(o->sizes, defaults, sizeof defaults);
  o->stall_rank = o->kill_rank = -1;
  o->fault_iter = 3;
  o->fault_algo = NN_AR_RING;
  o->compress = NN_WIRE_BF16;
  if (argc < 2 || strcmp(argv[1], "allreduce") != 0)
    return nn_cli_usage_error("bench", "expected 'allreduce' as the first argument");
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    static const char *const valued[] = {"--sizes", "--iters", "--chunk", "--timeout",
                                         "--stall-rank", "--kill-rank", "--fault-iter",
                                         "--hosts-of", "--compress", "--fault-algo",
                                         "--fault-split"};
    int takes = 0;
    for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) takes |= !strcmp(a, valued[k]);
    if (!takes && strcmp(a, "--json") != 0)
      return nn_cli_usage_error("bench", "unknown option '%s'", a);
    if (takes && !v) return nn_cli_usage_error("bench", "option '%s' needs a value", a);
    if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (!strcmp(a, "--sizes")) {
      char tmp[512];
      snprintf(tmp, sizeof tmp, "%s", v);
      o->nsizes = 0;
      for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t b = parse_bytes(t);
        if (b == 0 || b % 4 || b > ((size_t)1 << 31))
          return nn_cli_usage_error("bench", "--sizes: '%s' is not a positive multiple of 4 "
                                    "bytes up to 2G", t);
        if (o->nsizes == BENCH_MAX_SIZES)
          return nn_cli_usage_error("bench", "--sizes: at most %d sizes", BENCH_MAX_SIZES);
        o->sizes[o->nsizes++] = b;
      }
      if (o->nsizes == 0) return nn_cli_usage_error("bench", "--sizes: empty list");
    } else if (!strcmp(a, "--iters")) {
      if (parse_int(v, 1, 1000000, &o->iters))
        return nn_cli_usage_error("bench", "--iters: expected an integer >= 1, got '%s'", v);
    } else if (!strcmp(a, "--chunk")) {
      o->chunk_bytes = parse_bytes(v);
      if (o->chunk_bytes < 4)
        return nn_cli_usage_error("bench", "--chunk: expected a size in bytes >= 4, got '%s'", v);
    } else if (!strcmp(a, "--timeout")) {
      char *end = NULL;
      o->timeout = strtod(v, &end);
      if (end == v || *end || o->timeout < 0)
        return nn_cli_usage_error("bench", "--timeout: expected seconds >= 0, got '%s'", v);
    } else if (!strcmp(a, "--hosts-of")) {
      if (parse_int(v, 1, 1 << 20, &o->hosts_of))
        return nn_cli_usage_error("bench", "--hosts-of: expected ranks per host >= 1, got '%s'",
                                  v);
    } else if (!strcmp(a, "--compress")) {
      o->compress = nn_wire_parse(v);
      if (o->compress < 0)
        return nn_cli_usage_error("bench", "--compress: expected bf16, fp16 or none, got '%s'",
                                  v);
    } else if (!strcmp(a, "--fault-algo")) { /* hidden: watchdog test */
      o->fault_algo = nn_algo_parse(v);
      if (o->fault_algo < NN_AR_RING)
        return nn_cli_usage_error("bench", "--fault-algo: expected ring, hierarchical or "
                                  "hierarchical_rs");
    } else if (!strcmp(a, "--fault-split")) { /* hidden: watchdog test */
      o->fault_split = !strcmp(v, "shared") ? 1 : !strcmp(v, "own") ? 2 : -1;
      if (o->fault_split < 0)
        return nn_cli_usage_error("bench", "--fault-split: expected shared or own, got '%s'", v);
    } else if (!strcmp(a, "--stall-rank")) { /* hidden: watchdog test */
      if (parse_int(v, 0, INT_MAX, &o->stall_rank))
        return nn_cli_usage_error("bench", "--stall-rank: expected a rank, got '%s'", v);
    } else if (!strcmp(a, "--kill-rank")) { /* hidden: watchdog test */
      if (parse_int(v, 0, INT_MAX, &o->kill_rank))
        return nn_cli_usage_error("bench", "--kill-rank: expected a rank, got '%s'", v);
    } else if (!strcmp(a, "--fault-iter")) { /* hidden: watchdog test */
      if (parse_int(v, 1, INT_MAX, &o->fault_iter))
        return nn_cli_usage_error("bench", "--fault-iter: expected an integer >= 1, got '%s'", v);
    } else {
      return nn_cli_usage_error("bench", "unknown option '%s'", a);
    }
    if (takes) i++;
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The input of rank `rank`: values in [-1, 1), different per rank. */
static void bench_fill(float *x, size_t n, int rank) {
  uint32_t s = 2463534242u + 977u * (uint32_t)rank;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    x[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
  }
}

typedef struct bench_result {
  double us[B_NALGO];      /* medians of the slowest rank's time; 0: not run */
  double min_us[B_NALGO];  /* fastest iteration (shows noise from other load) */
  double max_diff;         /* max |ring - mpi| over the buffer, on rank 0 */
  double crel;             /* compressed ring: ||cring - mpi||_2 / ||mpi||_2 (rank 0) */
} bench_result;

/* One size: warm-up + iters, the algorithms in rotating order; results on
 * rank 0. ar[a] is the all-reduce of algorithm a (NULL for mpi, or a column
 * not run). out[a] holds each algorithm's result of the last iteration.
 * split: --fault-split's control ring, else NULL. */
static int bench_size(nn_hier *const *ar, nn_ring *split, const bench_opts *o, size_t bytes,
                      int iters, const float *src, float *const *out, double *t,
                      bench_result *res, nn_error *err) {
  int me, N, rc = 0;
  if ((rc = NN_MPI_CHECK(err, MPI_Comm_rank(MPI_COMM_WORLD, &me))) ||
      (rc = NN_MPI_CHECK(err, MPI_Comm_size(MPI_COMM_WORLD, &N))))
    return rc;
  size_t n = bytes / 4;
  int faults = o->stall_rank >= 0 || o->kill_rank >= 0;
  int warm = 2, run[B_NALGO];
  for (int a = 0; a < B_NALGO; a++) {
    run[a] = a == B_MPI || ar[a] != NULL;
    if (faults)
      run[a] = a == (o->fault_algo == NN_AR_HIER ? B_HIER
                     : o->fault_algo == NN_AR_HIER_RS ? B_HRS : B_RING);
  }
  for (int it = 0; it < warm + iters; it++) {
    for (int k = 0; k < B_NALGO; k++) {
      int a = (k + it) % B_NALGO;
      if (!run[a]) continue;
      float *b = out[a];
      memcpy(b, src, n * sizeof *b);
      if ((rc = NN_MPI_CHECK(err, MPI_Barrier(MPI_COMM_WORLD)))) return rc;
      double t0 = MPI_Wtime();
      if (a != B_MPI) {
        if (it + 1 == o->fault_iter && me == o->stall_rank) {
          /* the wall-clock time of the stall, for the test's "ended within" */
          struct timespec ts;
          clock_gettime(CLOCK_REALTIME, &ts);
          fprintf(stderr, "bench: rank %d stops itself (--stall-rank) at %lld.%03ld\n", me,
                  (long long)ts.tv_sec, ts.tv_nsec / 1000000L);
          fflush(stderr);
          raise(SIGSTOP);
        }
        if (it + 1 == o->fault_iter && me == o->kill_rank) raise(SIGKILL);
        if (split && it + 1 == o->fault_iter && me == (o->stall_rank == 0 ? 1 : 0)) {
          nn_ring_set_step(split, it + 1); /* the others are in ar[a]'s */
          rc = nn_ring_allreduce(split, b, n, err);
        } else {
          nn_hier_set_step(ar[a], it + 1);
          rc = nn_hier_allreduce(ar[a], b, n, err);
        }
        if (rc) return rc;
      } else if ((rc = NN_MPI_CHECK(err, MPI_Allreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT,
                                                        MPI_SUM, MPI_COMM_WORLD)))) {
        return rc;
      }
      double dt = MPI_Wtime() - t0;
      if (it >= warm) t[(size_t)a * (size_t)iters + (size_t)(it - warm)] = dt;
    }
  }
  /* Slowest rank per iteration, then the median. */
  double *mx = nn_malloc((size_t)B_NALGO * (size_t)iters * sizeof *mx);
  if (!mx) return nn_error_set(err, NN_ENOMEM, "bench: out of memory");
  if ((rc = NN_MPI_CHECK(err, MPI_Reduce(t, mx, B_NALGO * iters, MPI_DOUBLE, MPI_MAX, 0,
                                         MPI_COMM_WORLD)))) {
    free(mx);
    return rc;
  }
  for (int a = 0; a < B_NALGO; a++) {
    double *m = mx + (size_t)a * (size_t)iters;
    qsort(m, (size_t)iters, sizeof *m, cmp_double);
    res->us[a] = run[a] ? 1e6 * m[iters / 2] : 0;
    res->min_us[a] = run[a] ? 1e6 * m[0] : 0;
  }
  free(mx);
  /* They must agree: orders of addition differ (allow float rounding); the
   * compressed ring within its wire rounding, N roundings of partial sums of
   * at most N values in [-1, 1): N^2 * 2^-8 (bf16) or N^2 * 2^-11 (fp16). */
  double d = 0, e2 = 0, m2 = 0;
  int bad = 0;
  const float *mb = out[B_MPI];
  double ctol = (double)N * N * (o->compress == NN_WIRE_FP16 ? 1.0 / 2048 : 1.0 / 256);
  if (!faults)
    for (size_t i = 0; i < n; i++) {
      double am = mb[i] < 0 ? -mb[i] : mb[i];
      for (int a = 0; a < B_NALGO; a++) {
        if (a == B_MPI || !run[a]) continue;
        double e = fabs((double)out[a][i] - mb[i]);
        if (a == B_RING && e > d) d = e;
        if (a == B_CRING) {
          e2 += e * e;
          m2 += am * am;
          if (e > ctol) bad = 1;
        } else if (e > 1e-5 * N * (1 + am)) {
          bad = 1;
        }
      }
    }
  int anybad = 0;
  if ((rc = NN_MPI_CHECK(err, MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD))))
    return rc;
  res->max_diff = d;
  res->crel = m2 > 0 ? sqrt(e2 / m2) : 0;
  if (anybad)
    return nn_error_set(err, NN_EINTERNAL,
                        "bench: the all-reduces and MPI_Allreduce disagree at %zu bytes (max "
                        "|ring - mpi| %g)", bytes, d);
  return 0;
}

/* v rounded to `decimals` places (what the JSON line shows: microseconds to
 * 0.01, bandwidth to 0.001 GB/s). */
static double rounded(double v, int decimals) {
  double s = pow(10.0, decimals);
  return round(v * s) / s;
}

/* One size's result as a JSON object (a new reference; NULL if out of
 * memory). Non-finite figures (e.g. a bandwidth over a zero time) are null;
 * an algorithm not run has no keys. */
static json_t *bench_json(size_t bytes, int N, int iters, size_t chunk, const bench_result *res,
                          const double *bw, const nn_topo *t, const bench_opts *o, int autoalgo) {
  json_t *j = json_pack("{s:I, s:i, s:i, s:o, s:I, s:i, s:i, s:s, s:s}", "bytes",
                        (json_int_t)bytes, "ranks", N, "iters", iters, "max_abs_diff",
                        nn_cli_json_real(res->max_diff), "chunk", (json_int_t)chunk, "hosts",
                        t->nhosts, "max_ranks_per_host", t->maxlocal, "compress",
                        nn_wire_name(o->compress), "auto", nn_algo_name(autoalgo));
  for (int a = 0; j && a < B_NALGO; a++) {
    if (res->us[a] <= 0) continue;
    char k[40];
    snprintf(k, sizeof k, "%s_us", b_name[a]);
    json_object_set_new(j, k, nn_cli_json_real(rounded(res->us[a], 2)));
    snprintf(k, sizeof k, "%s_min_us", b_name[a]);
    json_object_set_new(j, k, nn_cli_json_real(rounded(res->min_us[a], 2)));
    snprintf(k, sizeof k, "%s_busbw_gbps", b_name[a]);
    json_object_set_new(j, k, nn_cli_json_real(rounded(bw[a], 3)));
  }
  if (j && res->us[B_CRING] > 0)
    json_object_set_new(j, "cring_rel_err", nn_cli_json_real(res->crel));
  return j;
}

int nn_cmd_bench(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    bench_help(stdout);
    return NN_EXIT_OK;
  }
  bench_opts o;
  int rc = bench_parse(argc, argv, &o);
  if (rc) return rc;
  int provided = 0, me = 0, N = 1;
  nn_error err;
  nn_error_clear(&err);
  if (o.hosts_of > 0) {
    char k[16];
    snprintf(k, sizeof k, "%d", o.hosts_of);
    setenv("NN_SIM_HOST_RANKS", k, 1); /* before MPI starts: the ring's host names too */
  }
  if ((rc = nn_cli_mpi_init(&argc, &argv, &provided, &me, &N, &err))) {
    if (rc == NN_EMPI && me < 0) return nn_cli_fail(&err); /* MPI_Init_thread itself */
    goto done;
  }
  err.rank = me;
  size_t maxb = 0;
  for (int i = 0; i < o.nsizes; i++)
    if (o.sizes[i] > maxb) maxb = o.sizes[i];
  size_t maxn = maxb / 4;
  int maxit = o.iters ? o.iters : 30;
  float *src = nn_malloc(maxb), *out[B_NALGO] = {NULL, NULL, NULL, NULL, NULL};
  int nomem = !src;
  for (int a = 0; a < B_NALGO; a++) nomem |= !(out[a] = nn_malloc(maxb ? maxb : 4));
  double *t = nn_calloc((size_t)B_NALGO * (size_t)maxit, sizeof(double));
  nn_hier *ar[B_NALGO] = {NULL, NULL, NULL, NULL, NULL};
  nn_ring *split = NULL;
  if (nomem || !t) {
    rc = nn_error_set(&err, NN_ENOMEM, "bench: out of memory for %zu-byte buffers", maxb);
    goto done;
  }
  bench_fill(src, maxn, me);
  for (int i = 0; i < o.nsizes; i++) {
    size_t b = o.sizes[i];
    int iters = o.iters;
    if (!iters) iters = b >= (16u << 20) ? 10 : b >= (4u << 20) ? 20 : 30;
    bench_result res;
    memset(&res, 0, sizeof res);
    size_t chunk = o.chunk_bytes; /* 0: each algorithm's default, as in training */
    static const int algo[B_NALGO] = {NN_AR_RING, NN_AR_HIER, NN_AR_HIER_RS, -1, NN_AR_RING};
    for (int a = 0; a < B_NALGO; a++) {
      if (a == B_MPI || (a == B_CRING && o.compress == NN_WIRE_NONE)) continue;
      nn_allreduce_cfg cfg = {algo[a], a == B_CRING ? o.compress : NN_WIRE_NONE, 0, 0, 0};
      rc = nn_hier_create(&ar[a], MPI_COMM_WORLD, b / 4, chunk, &cfg, &err);
      if (rc) goto done;
      nn_hier_set_timeout(ar[a], o.timeout);
    }
    if (o.fault_split) {
      const int fa = o.fault_algo == NN_AR_HIER ? B_HIER : o.fault_algo == NN_AR_HIER_RS ? B_HRS
                                                                                      : B_RING;
      if ((rc = nn_ring_create(&split, MPI_COMM_WORLD, b / 4, chunk, &err)) != 0) goto done;
      nn_ring_set_timeout(split, o.timeout);
      if (o.fault_split == 1) nn_hier_set_watch(ar[fa], split);
    }
    const nn_topo *topo = nn_hier_topo(ar[B_HIER]);
    int autoalgo = topo->nhosts > 1 && topo->maxlocal > 1 && b >= NN_HIER_AUTO_MIN_BYTES
                       ? NN_AR_HIER : NN_AR_RING;
    if (i == 0 && me == 0 && !o.json) {
      printf("all-reduce of float sums on %d rank%s, %d host%s (%s), at most %d rank%s per "
             "host (btl_vader_single_copy_mechanism=%s); cring = ring with %s on the wire; "
             "median of the slowest rank\n", N, N > 1 ? "s" : "", topo->nhosts,
             topo->nhosts > 1 ? "s" : "", o.hosts_of ? "simulated, --hosts-of" : "shared memory",
             topo->maxlocal, topo->maxlocal > 1 ? "s" : "",
             getenv("OMPI_MCA_btl_vader_single_copy_mechanism"), nn_wire_name(o.compress));
      printf("%10s %6s %8s %10s %10s %10s %10s %10s %9s %9s %9s %9s %9s %5s\n", "bytes", "iters",
             "chunk", "ring_us", "hier_us", "hrs_us", "mpi_us", "cring_us", "ring_GB/s",
             "hier_GB/s", "hrs_GB/s", "mpi_GB/s", "crng_GB/s", "auto");
    }
    rc = bench_size(ar, split, &o, b, iters, src, out, t, &res, &err);
    if (rc) goto done;
    nn_topo tp = *topo;
    chunk = nn_hier_chunk(ar[B_RING]) * sizeof(float); /* what the ring used */
    for (int a = 0; a < B_NALGO; a++) {
      nn_hier_free(ar[a]);
      ar[a] = NULL;
    }
    nn_ring_free(split);
    split = NULL;
    if (me != 0) continue;
    double f = N > 1 ? 2.0 * (N - 1) / N * (double)b : 0, bw[B_NALGO];
    for (int a = 0; a < B_NALGO; a++) bw[a] = res.us[a] > 0 ? f / (res.us[a] * 1e3) : 0;
    if (o.json) {
      rc = nn_cli_json_line(stdout, bench_json(b, N, iters, chunk, &res, bw, &tp, &o, autoalgo),
                            NULL, &err);
      if (rc) goto done;
    } else {
      printf("%10zu %6d %8zu", b, iters, chunk);
      for (int a = 0; a < B_NALGO; a++)
        if (res.us[a] > 0) printf(" %10.1f", res.us[a]);
        else printf(" %10s", "-");
      for (int a = 0; a < B_NALGO; a++)
        if (res.us[a] > 0) printf(" %9.2f", bw[a]);
        else printf(" %9s", "-");
      printf(" %5s\n", autoalgo == NN_AR_HIER ? "hier" : "ring");
    }
    fflush(stdout);
  }
done:
  if (rc) {
    /* A failed all-reduce leaves requests pending and peers waiting: print
     * the one message and end the whole job. */
    int code = nn_cli_fail(&err);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    return code;
  }
  for (int a = 0; a < B_NALGO; a++) {
    nn_hier_free(ar[a]);
    free(out[a]);
  }
  nn_ring_free(split);
  free(src);
  free(t);
  if (NN_MPI_CHECK(&err, MPI_Finalize())) return nn_cli_fail(&err);
  return NN_EXIT_OK;
}
