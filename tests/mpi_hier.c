/* mpi_hier.c: the topology-aware all-reduce (worker/hier.h) and the 16-bit
 * wire formats of the ring, at -np 1..4 with simulated hosts of 1, 2 and 3
 * ranks: the topology, every element against the documented order
 * evaluated in float (bit for bit), integer sums exact, pieces == whole, the
 * bucketed gradient sync == one call, the auto choice, fp16 saturation and a
 * bad NN_SIM_HOST_RANKS. A test fails on all ranks if it fails on one. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>

#include "mpi_test.h"
#include "test.h"
#include "worker/hier.h"

/* Deterministic pseudo-random float in [-1, 1) for (rank, i, salt). */
static float val(int rank, size_t i, uint32_t salt) {
  uint64_t x = ((uint64_t)(unsigned)rank << 40) ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull) ^ salt;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return (float)((double)(x >> 40) / (double)(1ull << 23) - 1.0);
}

static float ival(int rank, size_t i) {
  return (float)((int)((i * 7 + (size_t)rank * 13) % 201) - 100);
}

/* The wire formats, written independently of allreduce.c: bf16 by rounding
 * the float's bits to nearest even, fp16 through _Float16 with saturation. */
static float w_round(int mode, float x) {
  if (mode == NN_WIRE_BF16) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;
    uint32_t lsb = (u >> 16) & 1u;
    u = (u + 0x7fffu + lsb) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
  }
  if (mode == NN_WIRE_FP16) {
    if (!isinf(x)) x = x > 65504.0f ? 65504.0f : x < -65504.0f ? -65504.0f : x;
    return (float)(_Float16)x;
  }
  return x;
}

/* nn_ring's order over n members with values v[0..n-1] for an element of
 * stripe j (b = j mod n), with wire rounding w after each hop. */
static float ring_order(const float *v, int n, size_t j, int mode) {
  if (n == 1) return v[0];
  int b = (int)(j % (size_t)n);
  float s = w_round(mode, v[b]);
  for (int k = 1; k < n; k++) s = w_round(mode, s + v[(b + k) % n]);
  return s;
}

/* The documented hierarchical order for N ranks in hosts of k: host sums
 * left to right in local-rank order, then the ring order over the hosts, on
 * stripe (i / G) / P (P = 1 for NN_AR_HIER; the smallest host's size for
 * NN_AR_HIER_RS). */
static float hier_expected(int N, int k, int P, size_t G, size_t i, uint32_t salt, int mode,
                           int integer) {
  float H[64];
  int nh = (N + k - 1) / k;
  for (int h = 0; h < nh; h++) {
    float s = 0;
    for (int r = h * k; r < N && r < (h + 1) * k; r++) {
      float x = integer ? ival(r, i) : val(r, i, salt);
      s = r == h * k ? x : s + x;
    }
    H[h] = s;
  }
  return ring_order(H, nh, i / G / (size_t)P, mode);
}

static int make(nn_hier **h, size_t max, size_t chunk, int algo, int compress, int sim) {
  nn_allreduce_cfg c = {algo, compress, sim, 0, 0};
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_hier_create(h, MPI_COMM_WORLD, max, chunk, &c, &err);
  if (rc) fprintf(stderr, "rank %d: nn_hier_create: %s\n", rank_of(), err.msg);
  return rc;
}

/* Simulated hosts of k ranks: host = rank / k, local rank = rank % k. */
static void test_topology(void) {
  mpi_up();
  int me = rank_of(), N = size_of(), ok = 1;
  for (int k = 1; k <= 3; k++) {
    nn_hier *h = NULL;
    ASSERT_OK(make(&h, 16, 0, NN_AR_HIER, NN_WIRE_NONE, k));
    const nn_topo *t = nn_hier_topo(h);
    int nh = (N + k - 1) / k, last = N - (nh - 1) * k;
    int lsize = me / k == nh - 1 ? last : k;
    if (t->nhosts != nh || t->host != me / k || t->lrank != me % k || t->lsize != lsize ||
        t->maxlocal != (N < k ? N : k)) {
      ok = 0;
      fprintf(stderr, "rank %d k %d: topo %d %d %d %d %d\n", me, k, t->nhosts, t->host, t->lrank,
              t->lsize, t->maxlocal);
    }
    nn_hier_free(h);
  }
  /* real topology: one machine, one host */
  nn_hier *h = NULL;
  ASSERT_OK(make(&h, 16, 0, NN_AR_HIER, NN_WIRE_NONE, 0));
  ok &= nn_hier_topo(h)->nhosts == 1 && nn_hier_topo(h)->lsize == N;
  nn_hier_free(h);
  ASSERT_TRUE(all_ok(ok));
}

/* Every element against the formula, for hosts of 1, 2, 3 ranks, several
 * chunks and counts; wire formats none, bf16 and fp16 on the hosts' ring;
 * both variants. */
static void hier_formula(int algo) {
  mpi_up();
  int me = rank_of(), N = size_of();
  size_t counts[] = {0, 1, (size_t)N + 1, 7, 1009, 65537, 300001};
  size_t chunks[] = {0, 12, 4000};
  size_t big = 300001;
  float *buf = malloc(big * sizeof *buf);
  ASSERT_TRUE(buf != NULL);
  int ok = 1;
  char why[512] = "";
  for (int k = 1; k <= 3 && ok; k++)
    for (int mode = 0; mode <= 2 && ok; mode++)
      for (size_t c = 0; c < 3 && ok; c++) {
        if (mode && c == 1) continue;
        nn_hier *h = NULL;
        ASSERT_OK(make(&h, big, chunks[c], algo, mode, k));
        size_t G = nn_hier_chunk(h);
        int nh = (N + k - 1) / k, last = N - (nh - 1) * k;
        int P = algo == NN_AR_HIER_RS ? (last < k ? last : k) : 1;
        nn_error err;
        nn_error_clear(&err);
        for (size_t q = 0; q < sizeof counts / sizeof *counts && ok; q++) {
          size_t n = counts[q];
          if (chunks[c] == 12 && n > 70000) continue;
          for (int integer = 0; integer <= 1 && ok; integer++) {
            for (size_t i = 0; i < n; i++) buf[i] = integer ? ival(me, i) : val(me, i, 5);
            if (nn_hier_allreduce(h, buf, n, &err)) {
              ok = 0;
              snprintf(why, sizeof why, "k %d mode %d n %zu: %.200s", k, mode, n, err.msg);
              break;
            }
            for (size_t i = 0; i < n && ok; i++) {
              float want = hier_expected(N, k, P, G, i, 5, mode, integer);
              if (memcmp(&want, &buf[i], 4)) {
                ok = 0;
                snprintf(why, sizeof why,
                         "algo %d k %d mode %d G %zu n %zu int %d: [%zu] = %.9g, want %.9g", algo,
                         k, mode, G, n, integer, i, (double)buf[i], (double)want);
              }
            }
          }
        }
        nn_hier_free(h);
      }
  free(buf);
  if (!ok) fprintf(stderr, "rank %d: %s\n", me, why);
  ASSERT_TRUE(all_ok(ok));
}

static void test_hier_formula(void) { hier_formula(NN_AR_HIER); }
static void test_hier_rs_formula(void) { hier_formula(NN_AR_HIER_RS); }

/* The flat ring with a wire format follows its documented order too. */
static void test_ring_compressed_formula(void) {
  mpi_up();
  int me = rank_of(), N = size_of(), ok = 1;
  size_t n = 100003;
  float *buf = malloc(n * sizeof *buf), v[8];
  ASSERT_TRUE(buf != NULL);
  for (int mode = 1; mode <= 2 && ok; mode++) {
    nn_hier *h = NULL;
    ASSERT_OK(make(&h, n, 4000, NN_AR_RING, mode, 0));
    nn_error err;
    nn_error_clear(&err);
    for (size_t i = 0; i < n; i++) buf[i] = val(me, i, 9) * (float)(1 + i % 300);
    ASSERT_OK(nn_hier_allreduce(h, buf, n, &err));
    for (size_t i = 0; i < n && ok; i++) {
      for (int r = 0; r < N; r++) v[r] = val(r, i, 9) * (float)(1 + i % 300);
      float want = ring_order(v, N, i / 1000, mode);
      if (memcmp(&want, &buf[i], 4)) {
        ok = 0;
        fprintf(stderr, "rank %d mode %d: [%zu] = %.9g, want %.9g\n", me, mode, i,
                (double)buf[i], (double)want);
      }
    }
    nn_hier_free(h);
  }
  free(buf);
  ASSERT_TRUE(all_ok(ok));
}

/* One rank per host: the hierarchical all-reduce is the flat ring, bit for
 * bit (also compressed). */
static void test_one_per_host_equals_ring(void) {
  mpi_up();
  int me = rank_of();
  size_t n = 200003;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  ASSERT_TRUE(a && b);
  int ok = 1;
  for (int mode = 0; mode <= 1; mode++) {
    nn_hier *h = NULL, *r = NULL;
    nn_error err;
    nn_error_clear(&err);
    ASSERT_OK(make(&h, n, 8192, NN_AR_HIER, mode, 1));
    ASSERT_OK(make(&r, n, 8192, NN_AR_RING, mode, 0));
    for (size_t i = 0; i < n; i++) a[i] = b[i] = val(me, i, 77) * 3.0f;
    ASSERT_OK(nn_hier_allreduce(h, a, n, &err));
    ASSERT_OK(nn_hier_allreduce(r, b, n, &err));
    ok &= memcmp(a, b, n * sizeof *a) == 0;
    nn_hier_free(h);
    nn_hier_free(r);
  }
  free(a);
  free(b);
  ASSERT_TRUE(all_ok(ok));
}

/* Pieces == whole, and the bucketed gradient sync == one call, for the
 * hierarchical all-reduce on hosts of 2 (also bf16), both variants. */
static void pieces_and_gradsync(int algo) {
  mpi_up();
  int me = rank_of(), ok = 1;
  size_t n = 150021;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  ASSERT_TRUE(a && b);
  for (int mode = 0; mode <= 1; mode++)
    for (int c = 0; c < 2; c++) { /* chunks of 1000 floats; the default (the sync's) */
      nn_hier *h = NULL;
      nn_error err;
      nn_error_clear(&err);
      ASSERT_OK(make(&h, n, c ? 0 : 4000, algo, mode, 2));
      for (size_t i = 0; i < n; i++) a[i] = b[i] = val(me, i, 3);
      ASSERT_OK(nn_hier_allreduce(h, a, n, &err));
      size_t off = 0, piece = 777;
      while (off < n) {
        size_t k = n - off < piece ? n - off : piece;
        ASSERT_OK(nn_hier_allreduce_at(h, b + off, k, off, &err));
        off += k;
        piece = piece * 7 % 40009 + 1;
      }
      ok &= memcmp(a, b, n * sizeof *a) == 0;
      size_t G = nn_hier_chunk(h);
      nn_hier_free(h);
      if (!c) continue;
      size_t buckets[] = {4096, 40000, 0};
      for (size_t bi = 0; bi < 3; bi++) {
        /* buckets of 4096 and 40000 floats with the whole call's chunk; the
         * default bucket (4 MiB, the whole arena) with the default chunk */
        nn_gradsync *g = NULL;
        nn_allreduce_cfg cfg = {algo, mode, 2, 0, buckets[bi] ? G * 4 : 0};
        ASSERT_OK(nn_gradsync_create_ex(&g, MPI_COMM_WORLD, b, n, buckets[bi] * 4, &cfg, &err));
        ok &= nn_gradsync_algo(g) == algo && nn_gradsync_chunk(g) == G;
        for (size_t i = 0; i < n; i++) b[i] = val(me, i, 3);
        nn_gradsync_begin_step(g, 1);
        for (size_t end = n; end > 0;) {
          size_t k = end < 3001 + (size_t)me * 17 ? end : 3001 + (size_t)me * 17;
          nn_gradsync_ready(g, end - k, k);
          end -= k;
        }
        ASSERT_OK(nn_gradsync_finish(g, &err));
        ok &= memcmp(a, b, n * sizeof *a) == 0;
        nn_gradsync_free(g);
      }
    }
  free(a);
  free(b);
  ASSERT_TRUE(all_ok(ok));
}

static void test_hier_pieces_and_gradsync(void) { pieces_and_gradsync(NN_AR_HIER); }
static void test_hier_rs_pieces_and_gradsync(void) { pieces_and_gradsync(NN_AR_HIER_RS); }

/* The default chunk is the ring's default for the ways the data ring splits
 * the buffer: every rank (ring), the hosts (hierarchical), hosts x slots
 * (reduce-scatter). */
static void test_default_chunk(void) {
  mpi_up();
  int N = size_of(), ok = 1;
  size_t n = 235146;
  for (int k = 1; k <= 3; k++) {
    int nh = (N + k - 1) / k, last = N - (nh - 1) * k, P = last < k ? last : k;
    static const int algos[] = {NN_AR_RING, NN_AR_HIER, NN_AR_HIER_RS};
    for (int a = 0; a < 3; a++) {
      nn_hier *h = NULL;
      ASSERT_OK(make(&h, n, 0, algos[a], NN_WIRE_NONE, k));
      int ways = a == 0 ? N : a == 1 ? nh : nh * P;
      if (nn_hier_chunk(h) * 4 != nn_ring_default_chunk(n, ways)) {
        ok = 0;
        fprintf(stderr, "k %d algo %d: chunk %zu floats, want %zu bytes for %d ways\n", k,
                algos[a], nn_hier_chunk(h), nn_ring_default_chunk(n, ways), ways);
      }
      nn_hier_free(h);
    }
  }
  ASSERT_TRUE(all_ok(ok));
}

/* auto: hierarchical only with several hosts, several ranks on one, and a
 * buffer of at least NN_HIER_AUTO_MIN_BYTES; the same answer on every rank. */
static void test_auto(void) {
  mpi_up();
  int N = size_of(), ok = 1;
  size_t big = NN_HIER_AUTO_MIN_BYTES / 4, small = big - 1;
  for (int k = 1; k <= 3; k++) {
    int multi = (N + k - 1) / k > 1 && (N < k ? N : k) > 1;
    nn_hier *h = NULL;
    ASSERT_OK(make(&h, big, 0, NN_AR_AUTO, 0, k));
    ok &= nn_hier_algo(h) == (multi ? NN_AR_HIER : NN_AR_RING);
    nn_hier_free(h);
    ASSERT_OK(make(&h, small, 0, NN_AR_AUTO, 0, k));
    ok &= nn_hier_algo(h) == NN_AR_RING;
    nn_hier_free(h);
  }
  ASSERT_TRUE(all_ok(ok));
}

/* fp16: finite sums past 65504 saturate (no Inf made on the wire); an Inf
 * input stays Inf, a NaN stays NaN (the trainer's non-finite guard). */
static void test_fp16_saturates(void) {
  mpi_up();
  int me = rank_of(), N = size_of();
  float x[4] = {60000.0f, -60000.0f, me == 0 ? INFINITY : 1.0f, me == N - 1 ? NAN : 2.0f};
  nn_hier *h = NULL;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(make(&h, 4, 4, NN_AR_RING, NN_WIRE_FP16, 0));
  ASSERT_OK(nn_hier_allreduce(h, x, 4, &err));
  nn_hier_free(h);
  int ok = N == 1 ? x[0] == 60000.0f : x[0] == 65504.0f && x[1] == -65504.0f;
  ok &= isinf(x[2]) && x[2] > 0 && isnan(x[3]);
  ASSERT_TRUE(all_ok(ok));
}

/* A bad NN_SIM_HOST_RANKS is an error naming the variable. */
static void test_bad_env(void) {
  mpi_up();
  setenv("NN_SIM_HOST_RANKS", "two", 1);
  nn_hier *h = NULL;
  nn_error err;
  nn_error_clear(&err);
  nn_allreduce_cfg c = {NN_AR_AUTO, 0, 0, 0, 0};
  int rc = nn_hier_create(&h, MPI_COMM_WORLD, 8, 0, &c, &err);
  unsetenv("NN_SIM_HOST_RANKS");
  ASSERT_EQ_INT(rc, NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "NN_SIM_HOST_RANKS='two'");
}

TEST_MAIN(TEST(test_topology), TEST(test_hier_formula), TEST(test_hier_rs_formula),
          TEST(test_ring_compressed_formula), TEST(test_one_per_host_equals_ring),
          TEST(test_hier_pieces_and_gradsync), TEST(test_hier_rs_pieces_and_gradsync),
          TEST(test_default_chunk), TEST(test_auto), TEST(test_fp16_saturates),
          TEST(test_bad_env))
