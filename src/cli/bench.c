/* bench.c: `nntrain bench allreduce`: times our ring all-reduce against
 * MPI_Allreduce(MPI_SUM, MPI_FLOAT) on the same buffers, under the same MCA
 * settings, and checks that both give the same sums.
 *
 * For each size: a warm-up, then iterations that run both, alternating which
 * goes first; each timed call starts after a barrier, a call's time is the
 * slowest rank's, and the median over iterations is reported with the bus
 * bandwidth 2(N-1)/N * bytes / time. Rank 0 prints a table, or with --json one
 * object per size. Hidden options for the watchdog tests make one rank stop
 * (SIGSTOP) or die (SIGKILL) before an all-reduce. */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "worker/allreduce.h"
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
} bench_opts;

static void bench_help(FILE *f) {
  fprintf(f,
          "usage: mpirun -np N nntrain bench allreduce [--sizes LIST] [--iters N] [--json]\n"
          "                                        [--chunk BYTES] [--timeout SECONDS]\n\n"
          "Times nntrain's ring all-reduce and MPI_Allreduce (float sum) on the same\n"
          "buffers, alternating them, and reports the median of each per size.\n\n"
          "  --sizes LIST     comma-separated sizes in bytes, suffix K or M allowed\n"
          "                   (default 4K,16K,64K,256K,1M,4M,16M,64M)\n"
          "  --iters N        timed iterations per size (default: 30, fewer for big sizes)\n"
          "  --json           print one JSON object per size instead of the table\n"
          "  --chunk BYTES    ring pipeline chunk (default: size/N, at most 256K)\n"
          "  --timeout S      watchdog: abort if a rank does not arrive within S seconds\n\n"
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
  if (argc < 2 || strcmp(argv[1], "allreduce") != 0)
    return nn_cli_usage_error("bench", "expected 'allreduce' as the first argument");
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    static const char *const valued[] = {"--sizes", "--iters", "--chunk", "--timeout",
                                         "--stall-rank", "--kill-rank", "--fault-iter"};
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
  double ring_us, mpi_us;  /* medians of the slowest rank's time */
  double ring_min_us, mpi_min_us; /* fastest iteration (shows noise from other load) */
  double max_diff;         /* max |ring - mpi| over the buffer, on rank 0 */
} bench_result;

/* One size: warm-up + iters, alternating; results on rank 0. */
static int bench_size(nn_ring *ring, const bench_opts *o, size_t bytes, int iters,
                      const float *src, float *rbuf, float *mbuf, double *t_ring, double *t_mpi,
                      bench_result *res, nn_error *err) {
  int me, N, rc = 0;
  if ((rc = NN_MPI_CHECK(err, MPI_Comm_rank(MPI_COMM_WORLD, &me))) ||
      (rc = NN_MPI_CHECK(err, MPI_Comm_size(MPI_COMM_WORLD, &N))))
    return rc;
  size_t n = bytes / 4;
  int faults = o->stall_rank >= 0 || o->kill_rank >= 0;
  int warm = 2;
  for (int it = 0; it < warm + iters; it++) {
    for (int half = 0; half < 2; half++) {
      int do_ring = (it & 1) ? half == 1 : half == 0;
      if (!do_ring && faults) continue; /* fault runs time the ring only */
      float *b = do_ring ? rbuf : mbuf;
      memcpy(b, src, n * sizeof *b);
      if ((rc = NN_MPI_CHECK(err, MPI_Barrier(MPI_COMM_WORLD)))) return rc;
      double t0 = MPI_Wtime();
      if (do_ring) {
        if (it + 1 == o->fault_iter && me == o->stall_rank) raise(SIGSTOP);
        if (it + 1 == o->fault_iter && me == o->kill_rank) raise(SIGKILL);
        nn_ring_set_step(ring, it + 1);
        rc = nn_ring_allreduce(ring, b, n, err);
        if (rc) return rc;
      } else if ((rc = NN_MPI_CHECK(err, MPI_Allreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT,
                                                        MPI_SUM, MPI_COMM_WORLD)))) {
        return rc;
      }
      double t = MPI_Wtime() - t0;
      if (it >= warm) (do_ring ? t_ring : t_mpi)[it - warm] = t;
    }
  }
  /* Slowest rank per iteration, then the median. */
  double *mx = nn_malloc(2 * (size_t)iters * sizeof *mx);
  if (!mx) return nn_error_set(err, NN_ENOMEM, "bench: out of memory");
  if ((rc = NN_MPI_CHECK(err, MPI_Reduce(t_ring, mx, iters, MPI_DOUBLE, MPI_MAX, 0,
                                         MPI_COMM_WORLD))) ||
      (rc = NN_MPI_CHECK(err, MPI_Reduce(t_mpi, mx + iters, iters, MPI_DOUBLE, MPI_MAX, 0,
                                         MPI_COMM_WORLD)))) {
    free(mx);
    return rc;
  }
  qsort(mx, (size_t)iters, sizeof *mx, cmp_double);
  qsort(mx + iters, (size_t)iters, sizeof *mx, cmp_double);
  res->ring_us = 1e6 * mx[iters / 2];
  res->ring_min_us = 1e6 * mx[0];
  res->mpi_min_us = 1e6 * mx[iters];
  res->mpi_us = 1e6 * mx[iters + iters / 2];
  free(mx);
  /* The two must agree (orders of addition differ: allow rounding). */
  double d = 0;
  int bad = 0;
  if (!faults)
    for (size_t i = 0; i < n; i++) {
      double e = rbuf[i] > mbuf[i] ? rbuf[i] - mbuf[i] : mbuf[i] - rbuf[i];
      if (e > d) d = e;
      if (e > 1e-5 * N * (1 + (mbuf[i] < 0 ? -mbuf[i] : mbuf[i]))) bad = 1;
    }
  int anybad = 0;
  if ((rc = NN_MPI_CHECK(err, MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD))))
    return rc;
  res->max_diff = d;
  if (anybad)
    return nn_error_set(err, NN_EINTERNAL,
                        "bench: ring and MPI_Allreduce disagree at %zu bytes (max |diff| %g)",
                        bytes, d);
  return 0;
}

/* The ring's chunk for a buffer of `bytes` on N ranks: --chunk, else one
 * block per rank up to 256 KiB (a single message per block and step for
 * small sizes, pipelined above). */
static size_t bench_chunk(const bench_opts *o, size_t bytes, int N) {
  if (o->chunk_bytes) return o->chunk_bytes;
  size_t chunk = (bytes / (size_t)N + 3) / 4 * 4;
  if (chunk > ((size_t)256 << 10)) chunk = (size_t)256 << 10;
  if (chunk < 1024) chunk = 1024;
  return chunk;
}

/* v rounded to `decimals` places (what the JSON line shows: microseconds to
 * 0.01, bandwidth to 0.001 GB/s). */
static double rounded(double v, int decimals) {
  double s = pow(10.0, decimals);
  return round(v * s) / s;
}

/* One size's result as a JSON object (a new reference; NULL if out of
 * memory). Non-finite figures (e.g. a bandwidth over a zero time) are null. */
static json_t *bench_json(size_t bytes, int N, int iters, size_t chunk, const bench_result *res,
                          double rbw, double mbw) {
  return json_pack("{s:I, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "bytes",
                   (json_int_t)bytes, "ranks", N, "iters", iters, "ring_us",
                   nn_cli_json_real(rounded(res->ring_us, 2)), "mpi_us",
                   nn_cli_json_real(rounded(res->mpi_us, 2)), "ring_busbw_gbps",
                   nn_cli_json_real(rounded(rbw, 3)), "mpi_busbw_gbps",
                   nn_cli_json_real(rounded(mbw, 3)), "max_abs_diff",
                   nn_cli_json_real(res->max_diff), "chunk", (json_int_t)chunk, "ring_min_us",
                   nn_cli_json_real(rounded(res->ring_min_us, 2)), "mpi_min_us",
                   nn_cli_json_real(rounded(res->mpi_min_us, 2)));
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
  float *src = nn_malloc(maxb), *rbuf = nn_malloc(maxb), *mbuf = nn_malloc(maxb);
  double *t_ring = nn_calloc((size_t)maxit, sizeof(double));
  double *t_mpi = nn_calloc((size_t)maxit, sizeof(double));
  nn_ring *ring = NULL;
  if (!src || !rbuf || !mbuf || !t_ring || !t_mpi) {
    rc = nn_error_set(&err, NN_ENOMEM, "bench: out of memory for %zu-byte buffers", maxb);
    goto done;
  }
  bench_fill(src, maxn, me);
  if (me == 0 && !o.json) {
    printf("all-reduce of float sums on %d rank%s (btl_vader_single_copy_mechanism=%s); "
           "median of the slowest rank\n", N, N > 1 ? "s" : "",
           getenv("OMPI_MCA_btl_vader_single_copy_mechanism"));
    printf("%10s %6s %8s %11s %11s %11s %11s %8s\n", "bytes", "iters", "chunk", "ring_us",
           "mpi_us", "ring_GB/s", "mpi_GB/s", "mpi/ring");
  }
  for (int i = 0; i < o.nsizes; i++) {
    size_t b = o.sizes[i];
    int iters = o.iters;
    if (!iters) iters = b >= (16u << 20) ? 10 : b >= (4u << 20) ? 20 : 30;
    bench_result res = {0, 0, 0, 0, 0};
    size_t chunk = bench_chunk(&o, b, N);
    rc = nn_ring_create(&ring, MPI_COMM_WORLD, b / 4, chunk, &err);
    if (rc) goto done;
    nn_ring_set_timeout(ring, o.timeout);
    rc = bench_size(ring, &o, b, iters, src, rbuf, mbuf, t_ring, t_mpi, &res, &err);
    if (rc) goto done;
    nn_ring_free(ring);
    ring = NULL;
    if (me != 0) continue;
    double f = N > 1 ? 2.0 * (N - 1) / N * (double)b : 0;
    double rbw = f / (res.ring_us * 1e3), mbw = f / (res.mpi_us * 1e3);
    if (o.json) {
      rc = nn_cli_json_line(stdout, bench_json(b, N, iters, chunk, &res, rbw, mbw), NULL, &err);
      if (rc) goto done;
    } else
      printf("%10zu %6d %8zu %11.1f %11.1f %11.2f %11.2f %8.2f\n", b, iters, chunk, res.ring_us,
             res.mpi_us,
             rbw, mbw, res.mpi_us / res.ring_us);
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
  nn_ring_free(ring);
  free(src);
  free(rbuf);
  free(mbuf);
  free(t_ring);
  free(t_mpi);
  if (NN_MPI_CHECK(&err, MPI_Finalize())) return nn_cli_fail(&err);
  return NN_EXIT_OK;
}
