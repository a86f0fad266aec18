/* mpi_allreduce.c: tests of the ring all-reduce and the bucketed gradient
 * sync (src/worker/allreduce.c). Runs under mpirun -np 1..4; every rank runs
 * every test, and a test fails on all ranks if it fails on one (results are
 * combined with MPI_Allreduce(MPI_MIN) of a per-rank ok flag). */
#include <mpi.h>
#include <stdint.h>

#include "mpi_test.h"
#include "test.h"
#include "worker/allreduce.h"

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

/* Integer-valued float for (rank, i): sums are exact. */
static float ival(int rank, size_t i) { return (float)((int)((i * 7 + (size_t)rank * 13) % 201) - 100); }

static uint64_t hash_bits(const float *a, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &a[i], 4);
    h = (h ^ u) * 1099511628211ull;
  }
  return h;
}

/* The documented order: element i (global index) of stripe j = i / G starts
 * at rank b = j % N and adds ranks b+1, ..., b+N-1 (mod N), in float. */
static float expected_ordered(int N, size_t G, size_t i, uint32_t salt) {
  int b = (int)((i / G) % (size_t)N);
  float s = val(b, i, salt);
  for (int k = 1; k < N; k++) s += val((b + k) % N, i, salt);
  return s;
}

static const size_t big = 1000000;

/* Counts 0, 1, N-1, N, N+1, odd primes, 1e6 with several chunk sizes (some
 * far smaller than count/N): integer values sum exactly, random values
 * follow the documented order bit for bit. */
static void test_sums_all_counts(void) {
  mpi_up();
  int me = rank_of(), N = size_of();
  size_t counts[] = {0, 1, (size_t)N - 1, (size_t)N, (size_t)N + 1, 3, 7, 13, 101, 1009, 65537, big};
  size_t chunks[] = {0, 4, 12, 4000}; /* bytes: default, 1 float, 3 floats, 1000 floats */
  float *buf = malloc(big * sizeof *buf);
  ASSERT_TRUE(buf != NULL);
  int ok = 1;
  char why[1024] = "";
  for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
    nn_ring *r = NULL;
    nn_error err;
    nn_error_clear(&err);
    ASSERT_OK(nn_ring_create(&r, MPI_COMM_WORLD, big, chunks[c], &err));
    size_t G = nn_ring_chunk(r);
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
      size_t n = counts[k];
      if (chunks[c] && chunks[c] < 16 && n > 100000) continue; /* keep it fast */
      for (size_t i = 0; i < n; i++) buf[i] = ival(me, i);
      if (nn_ring_allreduce(r, buf, n, &err) != 0) {
        ok = 0;
        snprintf(why, sizeof why, "count %zu chunk %zu: %s", n, G, err.msg);
        break;
      }
      for (size_t i = 0; i < n && ok; i++) {
        float want = 0;
        for (int q = 0; q < N; q++) want += ival(q, i);
        if (buf[i] != want) {
          ok = 0;
          snprintf(why, sizeof why, "count %zu chunk %zu: buf[%zu] = %g, want %g", n, G, i,
                   (double)buf[i], (double)want);
        }
      }
      for (size_t i = 0; i < n; i++) buf[i] = val(me, i, 7);
      if (nn_ring_allreduce(r, buf, n, &err) != 0) {
        ok = 0;
        snprintf(why, sizeof why, "count %zu chunk %zu: %s", n, G, err.msg);
        break;
      }
      for (size_t i = 0; i < n && ok; i++) {
        double exact = 0;
        for (int q = 0; q < N; q++) exact += val(q, i, 7);
        float want = expected_ordered(N, G, i, 7);
        if (memcmp(&buf[i], &want, 4) != 0 || fabs(buf[i] - exact) > 1e-5 * N) {
          ok = 0;
          snprintf(why, sizeof why, "count %zu chunk %zu: buf[%zu] = %.9g, want %.9g (exact %.9g)",
                   n, G, i, (double)buf[i], (double)want, exact);
        }
      }
      if (!ok) break;
    }
    nn_ring_free(r);
    if (!ok) break;
  }
  free(buf);
  if (!ok) fprintf(stderr, "rank %d: %s\n", me, why);
  ASSERT_TRUE(all_ok(ok));
}

/* Every rank ends with the same bits, and a repeated call gives them again. */
static void test_bit_identical_across_ranks_and_calls(void) {
  mpi_up();
  int me = rank_of(), N = size_of();
  size_t n = 300007;
  float *a = malloc(n * sizeof *a);
  ASSERT_TRUE(a != NULL);
  nn_ring *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_ring_create(&r, MPI_COMM_WORLD, n, 8192, &err));
  uint64_t h[2];
  for (int rep = 0; rep < 2; rep++) {
    for (size_t i = 0; i < n; i++) a[i] = val(me, i, 99) * (float)(1 + i % 1000);
    ASSERT_OK(nn_ring_allreduce(r, a, n, &err));
    h[rep] = hash_bits(a, n);
  }
  nn_ring_free(r);
  free(a);
  ASSERT_TRUE(h[0] == h[1]);
  uint64_t *all = malloc((size_t)N * sizeof *all);
  ASSERT_TRUE(all != NULL);
  MPI_Allgather(&h[0], 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
  int same = 1;
  for (int q = 0; q < N; q++) same &= all[q] == h[0];
  free(all);
  ASSERT_TRUE(same);
}

/* A buffer reduced in pieces with nn_ring_allreduce_at has the same bits as
 * one call over the whole buffer. */
static void test_pieces_equal_whole(void) {
  mpi_up();
  int me = rank_of();
  size_t n = 150021;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  ASSERT_TRUE(a && b);
  size_t chunks[] = {400, 0}; /* 100-float chunks; the default */
  int ok = 1;
  for (size_t c = 0; c < 2; c++) {
    nn_ring *r = NULL;
    nn_error err;
    nn_error_clear(&err);
    ASSERT_OK(nn_ring_create(&r, MPI_COMM_WORLD, n, chunks[c], &err));
    for (size_t i = 0; i < n; i++) a[i] = b[i] = val(me, i, 3);
    ASSERT_OK(nn_ring_allreduce(r, a, n, &err));
    size_t off = 0, piece = 777;
    while (off < n) {
      size_t k = n - off < piece ? n - off : piece;
      ASSERT_OK(nn_ring_allreduce_at(r, b + off, k, off, &err));
      off += k;
      piece = piece * 7 % 40009 + 1;
    }
    nn_ring_free(r);
    ok &= memcmp(a, b, n * sizeof *a) == 0;
  }
  free(a);
  free(b);
  ASSERT_TRUE(all_ok(ok));
}

static void test_count_over_max_is_einval(void) {
  mpi_up();
  nn_ring *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  float x[8] = {0};
  ASSERT_OK(nn_ring_create(&r, MPI_COMM_WORLD, 4, 0, &err));
  int rc = nn_ring_allreduce(r, x, 8, &err);
  nn_ring_free(r);
  ASSERT_EQ_INT(rc, NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "exceed");
}

/* Report arena[0, n) as ready in ranges of random length from the end toward
 * 0 (rank-dependent, like backward on ranks running at different speeds);
 * when `shuffle`, report them in a random order instead; skip one range when
 * `skip` (finish must still reduce it). */
static void report_ranges(nn_gradsync *g, size_t n, uint32_t seed, int shuffle, int skip) {
  size_t cap = 1024, nr = 0;
  size_t *lo = malloc(cap * sizeof *lo), *len = malloc(cap * sizeof *len);
  if (!lo || !len) {
    free(lo);
    free(len);
    return;
  }
  size_t end = n;
  uint32_t s = seed;
  while (end > 0 && nr < cap) {
    s = s * 1664525u + 1013904223u;
    size_t c = 1 + (s >> 8) % 9000;
    if (c > end || nr == cap - 1) c = end;
    lo[nr] = end - c;
    len[nr] = c;
    nr++;
    end -= c;
  }
  if (shuffle)
    for (size_t i = nr; i > 1; i--) {
      s = s * 1664525u + 1013904223u;
      size_t j = (s >> 8) % i, t = lo[i - 1];
      lo[i - 1] = lo[j];
      lo[j] = t;
      t = len[i - 1];
      len[i - 1] = len[j];
      len[j] = t;
    }
  for (size_t i = 0; i < nr; i++) {
    if (skip && i == nr / 2) continue;
    nn_gradsync_ready(g, lo[i], len[i]);
  }
  free(lo);
  free(len);
}

/* Gradient sync over buckets equals one ring all-reduce of the whole arena,
 * bit for bit, for any ready order, over several steps. */
static void test_gradsync_equals_ring(void) {
  mpi_up();
  int me = rank_of();
  size_t n = 100003;
  float *arena = malloc(n * sizeof *arena), *ref = malloc(n * sizeof *ref);
  ASSERT_TRUE(arena && ref);
  nn_error err;
  nn_error_clear(&err);
  size_t buckets[] = {4096, 40000, 0};
  int ok = 1, N = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &N);
  for (size_t bi = 0; bi < sizeof buckets / sizeof *buckets && ok; bi++) {
    nn_gradsync *g = NULL;
    ASSERT_OK(nn_gradsync_create(&g, MPI_COMM_WORLD, arena, n, buckets[bi], &err));
    /* the sync's chunk: the default for a bucket (for the whole arena when
     * the bucket holds it) */
    size_t fill = buckets[bi] && buckets[bi] / 4 < n ? buckets[bi] / 4 : n;
    ASSERT_EQ_INT(nn_gradsync_chunk(g) * 4, nn_ring_default_chunk(fill, N));
    nn_ring *r = NULL;
    ASSERT_OK(nn_ring_create(&r, MPI_COMM_WORLD, n, nn_gradsync_chunk(g) * 4, &err));
    for (int step = 0; step < 4 && ok; step++) {
      for (size_t i = 0; i < n; i++) arena[i] = ref[i] = val(me, i, (uint32_t)(step + 10 * bi));
      nn_gradsync_begin_step(g, step + 1);
      report_ranges(g, n, (uint32_t)(me * 7919 + step), step == 2, step == 3);
      if (nn_gradsync_finish(g, &err) != 0) {
        ok = 0;
        fprintf(stderr, "rank %d: gradsync: %s\n", me, err.msg);
        break;
      }
      ASSERT_OK(nn_ring_allreduce(r, ref, n, &err));
      if (memcmp(arena, ref, n * sizeof *arena) != 0) {
        ok = 0;
        for (size_t i = 0; i < n; i++)
          if (arena[i] != ref[i]) {
            fprintf(stderr, "rank %d: bucket %zu step %d: arena[%zu] %.9g != %.9g\n", me,
                    buckets[bi], step, i, (double)arena[i], (double)ref[i]);
            break;
          }
      }
    }
    nn_gradsync_free(g);
    nn_ring_free(r);
  }
  free(arena);
  free(ref);
  ASSERT_TRUE(all_ok(ok));
}

/* The default chunk: the buffer's share per rank in whole 64-byte lines, at
 * most 256 KiB; a ring made with chunk 0 takes it for its rank count, and a
 * buffer of its maximum then fills every block. */
static void test_default_chunk(void) {
  mpi_up();
  int N = size_of(), ok = 1;
  ASSERT_EQ_INT(nn_ring_default_chunk(0, 3), 64);
  ASSERT_EQ_INT(nn_ring_default_chunk(1, 1), 64);
  ASSERT_EQ_INT(nn_ring_default_chunk(100, 8), 64);      /* 13 floats -> 16 */
  ASSERT_EQ_INT(nn_ring_default_chunk(235146, 8), 117632); /* 29394 -> 29408 floats */
  ASSERT_EQ_INT(nn_ring_default_chunk(235146, 1), 262144); /* capped */
  ASSERT_EQ_INT(nn_ring_default_chunk(235146, 0), 262144);
  ASSERT_EQ_INT(nn_ring_default_chunk(1000000, 4), 262144);
  ASSERT_EQ_INT(nn_ring_default_chunk(1000000, 64), 62528); /* 15625 -> 15632 floats */
  size_t n = 235146;
  nn_ring *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_ring_create(&r, MPI_COMM_WORLD, n, 0, &err));
  size_t G = nn_ring_chunk(r);
  ok &= G * 4 == nn_ring_default_chunk(n, N);
  /* block b holds stripes b, b+N, ...: every block non-empty, none more than
   * one stripe larger than another */
  size_t lo = (size_t)-1, hi = 0;
  for (int b = 0; b < N; b++) {
    size_t sz = 0;
    for (size_t j = (size_t)b; j * G < n; j += (size_t)N) sz += n - j * G < G ? n - j * G : G;
    if (sz < lo) lo = sz;
    if (sz > hi) hi = sz;
  }
  ok &= lo > 0 && hi - lo <= G;
  nn_ring_free(r);
  ASSERT_TRUE(all_ok(ok));
}

/* An empty arena and a finish with nothing reported both work. */
static void test_gradsync_empty(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  nn_gradsync *g = NULL;
  float x[3] = {1, 2, 3};
  ASSERT_OK(nn_gradsync_create(&g, MPI_COMM_WORLD, x, 0, 0, &err));
  nn_gradsync_begin(g);
  ASSERT_OK(nn_gradsync_finish(g, &err));
  nn_gradsync_free(g);
  ASSERT_OK(nn_gradsync_create(&g, MPI_COMM_WORLD, x, 3, 0, &err));
  nn_gradsync_begin(g);
  ASSERT_OK(nn_gradsync_finish(g, &err));
  nn_gradsync_free(g);
  ASSERT_NEAR(x[2], 3.0 * size_of(), 0);
}

/* Freeing in the middle of a step (a caller's error path) does not hang:
 * the communication thread gives up on the buckets never reported. */
static void test_gradsync_free_mid_step(void) {
  mpi_up();
  nn_error err;
  nn_error_clear(&err);
  nn_gradsync *g = NULL;
  size_t n = 5000;
  float *a = calloc(n, sizeof *a);
  ASSERT_TRUE(a != NULL);
  ASSERT_OK(nn_gradsync_create(&g, MPI_COMM_WORLD, a, n, 4000, &err));
  nn_gradsync_begin_step(g, 1);
  nn_gradsync_ready(g, 0, 100); /* the first bucket only: the last is never ready */
  double t0 = MPI_Wtime();
  nn_gradsync_free(g); /* hung before the thread checked for quit mid-step */
  double took = MPI_Wtime() - t0;
  free(a);
  MPI_Barrier(MPI_COMM_WORLD);
  ASSERT_TRUE(took < 5.0);
}

TEST_MAIN(TEST(test_sums_all_counts), TEST(test_bit_identical_across_ranks_and_calls),
          TEST(test_pieces_equal_whole), TEST(test_count_over_max_is_einval),
          TEST(test_default_chunk), TEST(test_gradsync_equals_ring), TEST(test_gradsync_empty),
          TEST(test_gradsync_free_mid_step))
