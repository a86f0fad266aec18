/* test_augment.c: data augmentation (src/worker/augment.c) and its use by the
 * loader (src/worker/loader.c).
 *
 * First each transform with explicit parameters on small hand-made images
 * (exact expected pixels), then the random parameter draws (ranges,
 * frequencies, independence of the transforms' streams), then determinism
 * (same seed/epoch/sample -> same output whatever the batch position; epochs
 * differ), then the loader: augmentation after normalization, keyed by the
 * global sample index on any rank count, resumable, never on a loader whose
 * cfg.augment is NULL. Last, the cost per 28x28 sample with every transform on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "test.h"
#include "test_tmp.h"
#include "worker/augment.h"
#include "worker/dataset.h"
#include "worker/loader.h"

/* A value that names its position: channel c, row y, column x. */
static float pix(int c, int y, int x) { return (float)(100 * c + 10 * y + x + 1); }

/* img [C, H, W] filled with pix(). */
static void fill_img(float *img, int C, int H, int W) {
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) img[((size_t)c * H + y) * W + x] = pix(c, y, x);
}

#define AT(img, H, W, c, y, x) (img)[((size_t)(c) * (H) + (y)) * (W) + (x)]

/* ---- transforms with explicit parameters ---------------------------------- */

static void test_shift_1_m2(void) {
  enum { C = 2, H = 5, W = 4 };
  float img[C * H * W], scratch[C * H * W];
  fill_img(img, C, H, W);
  nn_augment_shift(img, C, H, W, 1, -2, scratch); /* one right, two up */
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int sy = y + 2, sx = x - 1;
        float want = (sy < H && sx >= 0) ? pix(c, sy, sx) : 0.0f;
        ASSERT_EQ_INT(AT(img, H, W, c, y, x) == want, 1);
      }
  /* Hand-checked corners: top-left is fill; (0,1) came from (2,0); the last two rows are fill. */
  ASSERT_NEAR(AT(img, H, W, 0, 0, 0), 0.0, 0);
  ASSERT_NEAR(AT(img, H, W, 0, 0, 1), pix(0, 2, 0), 0);
  ASSERT_NEAR(AT(img, H, W, 1, 2, 3), pix(1, 4, 2), 0);
  ASSERT_NEAR(AT(img, H, W, 1, 3, 3), 0.0, 0);
  ASSERT_NEAR(AT(img, H, W, 1, 4, 1), 0.0, 0);
}

static void test_shift_out_of_image(void) {
  enum { C = 1, H = 3, W = 3 };
  float img[C * H * W], scratch[C * H * W];
  fill_img(img, C, H, W);
  nn_augment_shift(img, C, H, W, 0, 0, scratch);
  for (int i = 0; i < C * H * W; i++) ASSERT_NEAR(img[i], pix(0, i / W, i % W), 0);
  nn_augment_shift(img, C, H, W, -3, 0, scratch);
  for (int i = 0; i < C * H * W; i++) ASSERT_NEAR(img[i], 0.0, 0);
}

/* Reference: build the zero-padded image explicitly and cut the window. */
static void test_crop_equals_shift(void) {
  enum { C = 2, H = 4, W = 5, P = 2 };
  float a[C * H * W], b[C * H * W], scratch[C * H * W];
  for (int cy = 0; cy <= 2 * P; cy++)
    for (int cx = 0; cx <= 2 * P; cx++) {
      fill_img(a, C, H, W);
      fill_img(b, C, H, W);
      nn_augment_crop(a, C, H, W, P, cx, cy, scratch);
      nn_augment_shift(b, C, H, W, P - cx, P - cy, scratch);
      ASSERT_TRUE(memcmp(a, b, sizeof a) == 0);
      float padded[C][H + 2 * P][W + 2 * P];
      memset(padded, 0, sizeof padded);
      for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
          for (int x = 0; x < W; x++) padded[c][y + P][x + P] = pix(c, y, x);
      for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
          for (int x = 0; x < W; x++)
            ASSERT_NEAR(AT(a, H, W, c, y, x), padded[c][cy + y][cx + x], 0);
    }
  /* The centred window is the identity. */
  fill_img(a, C, H, W);
  nn_augment_crop(a, C, H, W, P, P, P, scratch);
  for (int i = 0; i < C * H * W; i++) ASSERT_NEAR(a[i], pix(i / (H * W), i / W % H, i % W), 0);
}

static void test_flips(void) {
  enum { C = 2, H = 3, W = 4 };
  float img[C * H * W];
  fill_img(img, C, H, W);
  nn_augment_hflip(img, C, H, W);
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) ASSERT_NEAR(AT(img, H, W, c, y, x), pix(c, y, W - 1 - x), 0);
  fill_img(img, C, H, W);
  nn_augment_vflip(img, C, H, W);
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) ASSERT_NEAR(AT(img, H, W, c, y, x), pix(c, H - 1 - y, x), 0);
  nn_augment_vflip(img, C, H, W); /* twice: identity */
  for (int i = 0; i < C * H * W; i++) ASSERT_NEAR(img[i], pix(i / (H * W), i / W % H, i % W), 0);
}

/* 90 degrees counter-clockwise on a square: out[y][x] = in[x][N-1-y], exactly;
 * -90: out[y][x] = in[N-1-x][y]; 180 is both flips; 0 and 360 the identity. */
static void test_rotate_right_angles(void) {
  for (int N = 4; N <= 5; N++) { /* even (centre between pixels) and odd */
    const int C = 2;
    float img[2 * 25], ref[2 * 25], scratch[2 * 25];
    fill_img(img, C, N, N);
    nn_augment_rotate(img, C, N, N, 90.0, scratch);
    for (int c = 0; c < C; c++)
      for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) ASSERT_NEAR(AT(img, N, N, c, y, x), pix(c, x, N - 1 - y), 0);
    fill_img(img, C, N, N);
    nn_augment_rotate(img, C, N, N, -90.0, scratch);
    for (int c = 0; c < C; c++)
      for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) ASSERT_NEAR(AT(img, N, N, c, y, x), pix(c, N - 1 - x, y), 0);
    fill_img(img, C, N, N);
    fill_img(ref, C, N, N);
    nn_augment_rotate(img, C, N, N, 180.0, scratch);
    nn_augment_hflip(ref, C, N, N);
    nn_augment_vflip(ref, C, N, N);
    ASSERT_TRUE(memcmp(img, ref, sizeof(float) * (size_t)(C * N * N)) == 0);
    fill_img(img, C, N, N);
    nn_augment_rotate(img, C, N, N, 360.0, scratch);
    for (int c = 0; c < C; c++)
      for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) ASSERT_NEAR(AT(img, N, N, c, y, x), pix(c, y, x), 0);
  }
}

/* Bilinear interpolation of a linear function is exact: rotating f(x, y) =
 * 3x - 2y + 1 gives f at the source position wherever all four taps are
 * inside the image; pixels whose source is far outside are 0. */
static void test_rotate_bilinear(void) {
  enum { H = 9, W = 11 };
  float img[H * W], scratch[H * W];
  const double deg = 23.0, t = deg * 3.14159265358979323846 / 180.0;
  const double cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) img[y * W + x] = (float)(3 * x - 2 * y + 1);
  nn_augment_rotate(img, 1, H, W, deg, scratch);
  int inner = 0, outer = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      double u = x - cx, v = y - cy;
      double sx = cx + u * cos(t) - v * sin(t), sy = cy + u * sin(t) + v * cos(t);
      if (sx >= 0 && sx <= W - 1 && sy >= 0 && sy <= H - 1) {
        ASSERT_NEAR(img[y * W + x], 3 * sx - 2 * sy + 1, 1e-4);
        inner++;
      } else if (sx <= -1 || sx >= W || sy <= -1 || sy >= H) {
        ASSERT_NEAR(img[y * W + x], 0.0, 0);
        outer++;
      }
    }
  ASSERT_TRUE(inner > H * W / 2);
  ASSERT_TRUE(outer > 0);
  /* A positive angle turns the picture counter-clockwise as displayed: what
   * was below-right of the centre comes up to its right, so on the image
   * f = row index, right of the centre now reads more than the centre row. */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) img[y * W + x] = (float)y;
  nn_augment_rotate(img, 1, H, W, deg, scratch);
  ASSERT_TRUE(img[(int)cy * W + (int)cx + 3] > (float)cy);
  ASSERT_TRUE(img[(int)cy * W + (int)cx - 3] < (float)cy);
}

static void test_erase_explicit(void) {
  enum { C = 2, H = 5, W = 6 };
  float img[C * H * W];
  fill_img(img, C, H, W);
  nn_augment_erase(img, C, H, W, 1, 2, 3, 2); /* columns 1..3, rows 2..3 */
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int in = x >= 1 && x <= 3 && y >= 2 && y <= 3;
        ASSERT_NEAR(AT(img, H, W, c, y, x), in ? 0.0f : pix(c, y, x), 0);
      }
  fill_img(img, C, H, W);
  nn_augment_erase(img, C, H, W, 4, -1, 5, 2); /* clipped to columns 4..5, row 0 */
  int zeros = 0;
  for (int i = 0; i < C * H * W; i++) zeros += img[i] == 0.0f;
  ASSERT_EQ_INT(zeros, C * 2);
  ASSERT_NEAR(AT(img, H, W, 1, 0, 4), 0.0, 0);
  ASSERT_NEAR(AT(img, H, W, 1, 0, 5), 0.0, 0);
  ASSERT_NEAR(AT(img, H, W, 1, 1, 4), pix(1, 1, 4), 0);
}

/* Noise over many values: mean ~ 0, std ~ the configured one, tails present
 * but bounded, and reproducible from the same stream. */
static void test_noise_stats(void) {
  const size_t n = 200001; /* odd: the last value of an odd count gets noise too */
  float *x = calloc(n, sizeof *x), *y = calloc(n, sizeof *y);
  ASSERT_TRUE(x && y);
  nn_rng r;
  nn_rng_init(&r, 5, NN_RNG_TEST, 1, 2, 3);
  nn_augment_noise(x, n, 0.5, &r);
  nn_rng_init(&r, 5, NN_RNG_TEST, 1, 2, 3);
  nn_augment_noise(y, n, 0.5, &r);
  double s = 0, s2 = 0, mx = 0;
  size_t beyond2 = 0;
  for (size_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
    if (fabs(x[i]) > mx) mx = fabs(x[i]);
    beyond2 += fabs(x[i]) > 2 * 0.5;
  }
  int same = memcmp(x, y, n * sizeof *x) == 0;
  int last_set = x[n - 1] != 0.0f;
  free(x);
  free(y);
  double mean = s / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
  ASSERT_TRUE(same);
  ASSERT_TRUE(last_set);
  ASSERT_NEAR(mean, 0.0, 0.005);   /* 5 standard errors (0.5 / sqrt(2e5) = 0.0011) */
  ASSERT_NEAR(sd, 0.5, 0.005);
  ASSERT_NEAR((double)beyond2 / (double)n, 0.0455, 0.004); /* P(|z| > 2) */
  ASSERT_TRUE(mx < 0.5 * 5.8 && mx > 0.5 * 3.5);
}

/* ---- random parameter draws ------------------------------------------------ */

static void test_draw_ranges(void) {
  nn_augment_cfg cfg = {.translate = 2, .crop_padding = 3, .hflip = 1, .vflip = 1,
                        .rotate = 15, .noise_std = 0.1, .erase_prob = 0.5,
                        .erase_max_area = 0.3};
  enum { H = 28, W = 20, N = 20000 };
  int seen_t[5] = {0}, seen_c[7] = {0};
  int hf = 0, vf = 0, erased = 0;
  double amin = 1e9, amax = -1e9, asum = 0, fmin = 1, fmax = 0;
  for (int64_t i = 0; i < N; i++) {
    nn_augment_params p;
    nn_augment_draw(&cfg, 11, 3, i, H, W, &p);
    ASSERT_TRUE(p.tx >= -2 && p.tx <= 2 && p.ty >= -2 && p.ty <= 2);
    seen_t[p.tx + 2]++;
    seen_t[p.ty + 2]++;
    ASSERT_EQ_INT(p.crop_pad, 3);
    ASSERT_TRUE(p.crop_x >= 0 && p.crop_x <= 6 && p.crop_y >= 0 && p.crop_y <= 6);
    seen_c[p.crop_x]++;
    hf += p.hflip;
    vf += p.vflip;
    ASSERT_TRUE(p.angle >= -15 && p.angle <= 15);
    if (p.angle < amin) amin = p.angle;
    if (p.angle > amax) amax = p.angle;
    asum += p.angle;
    ASSERT_NEAR(p.noise_std, 0.1, 0);
    if (p.erase) {
      erased++;
      double frac = (double)p.erase_w * p.erase_h / (H * W);
      ASSERT_TRUE(frac >= 0.02 && frac <= 0.3);
      if (frac < fmin) fmin = frac;
      if (frac > fmax) fmax = frac;
      ASSERT_TRUE(p.erase_w >= 1 && p.erase_h >= 1 && p.erase_w < W && p.erase_h < H);
      ASSERT_TRUE(p.erase_x >= 0 && p.erase_x + p.erase_w <= W);
      ASSERT_TRUE(p.erase_y >= 0 && p.erase_y + p.erase_h <= H);
      /* aspect h/w in [0.3, 3.3] up to the rounding of h and w */
      double ar = (double)p.erase_h / p.erase_w;
      ASSERT_TRUE(ar >= 0.3 * 0.75 && ar <= 3.3 / 0.75);
    }
  }
  for (int k = 0; k < 5; k++) ASSERT_NEAR(seen_t[k], 2.0 * N / 5, 0.06 * 2 * N / 5);
  for (int k = 0; k < 7; k++) ASSERT_NEAR(seen_c[k], (double)N / 7, 0.08 * N / 7);
  ASSERT_NEAR(hf, N / 2, 0.03 * N);
  ASSERT_NEAR(vf, N / 2, 0.03 * N);
  ASSERT_TRUE(amin < -14.5 && amax > 14.5);
  ASSERT_NEAR(asum / N, 0.0, 0.3);
  ASSERT_NEAR(erased, N / 2, 0.03 * N);
  ASSERT_TRUE(fmin < 0.03 && fmax > 0.27); /* the whole [0.02, 0.3] range is used */
}

/* Nothing enabled: nothing drawn, nothing applied. erase_prob 1 always erases
 * (on an image big enough); each transform's stream is its own, so turning one
 * on does not change what the others draw. */
static void test_draw_streams(void) {
  nn_augment_cfg off = {.erase_max_area = 0.25};
  nn_augment_params p;
  nn_augment_draw(&off, 1, 0, 7, 8, 8, &p);
  ASSERT_TRUE(!p.crop_pad && !p.tx && !p.ty && !p.hflip && !p.vflip && p.angle == 0 &&
              p.noise_std == 0 && !p.erase);
  ASSERT_EQ_INT(nn_augment_enabled(&off), 0);
  nn_augment_cfg rot = {.rotate = 30, .erase_max_area = 0.25};
  nn_augment_cfg all = {.translate = 3, .crop_padding = 2, .hflip = 1, .vflip = 1, .rotate = 30,
                        .noise_std = 1, .erase_prob = 1, .erase_max_area = 0.25};
  ASSERT_EQ_INT(nn_augment_enabled(&rot), 1);
  int erased = 0;
  for (int64_t i = 0; i < 200; i++) {
    nn_augment_params a, b;
    nn_augment_draw(&rot, 9, 2, i, 28, 28, &a);
    nn_augment_draw(&all, 9, 2, i, 28, 28, &b);
    ASSERT_NEAR(a.angle, b.angle, 0);
    erased += b.erase;
  }
  ASSERT_EQ_INT(erased, 200);
  /* Indices beyond 32 bits get their own streams. */
  nn_augment_params lo, hi;
  nn_augment_draw(&rot, 9, 2, 5, 28, 28, &lo);
  nn_augment_draw(&rot, 9, 2, 5 + ((int64_t)1 << 32), 28, 28, &hi);
  ASSERT_TRUE(lo.angle != hi.angle);
}

/* ---- determinism ------------------------------------------------------------- */

static const nn_augment_cfg ALL_ON = {.translate = 2, .crop_padding = 2, .hflip = 1,
                                      .vflip = 1, .rotate = 20, .noise_std = 0.2,
                                      .erase_prob = 0.5, .erase_max_area = 0.25};

/* x [n, 1, 8, 8]: sample k's pixel j is k + j/64 (distinguishable samples). */
static void fill_batch(float *x, const int64_t *idx, int n) {
  for (int k = 0; k < n; k++)
    for (int j = 0; j < 64; j++) x[k * 64 + j] = (float)idx[k] + (float)j / 64.0f;
}

static void test_same_sample_any_position(void) {
  nn_shape s = {3, {1, 8, 8}};
  nn_augmenter a;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_augmenter_init(&a, &ALL_ON, 42, &s, &err));
  int64_t i1[4] = {3, 17, 5, 40}, i2[3] = {40, 3, 9};
  float x1[4 * 64], x2[3 * 64], x3[4 * 64];
  fill_batch(x1, i1, 4);
  fill_batch(x2, i2, 3);
  nn_augment_batch(&a, 1, i1, 4, x1);
  nn_augment_batch(&a, 1, i2, 3, x2);
  int ok = memcmp(x1 + 0 * 64, x2 + 1 * 64, 64 * sizeof(float)) == 0 && /* sample 3 */
           memcmp(x1 + 3 * 64, x2 + 0 * 64, 64 * sizeof(float)) == 0;   /* sample 40 */
  /* Another epoch gives another transform of the same samples. */
  fill_batch(x3, i1, 4);
  nn_augment_batch(&a, 2, i1, 4, x3);
  int differ = 0;
  for (int k = 0; k < 4; k++) differ += memcmp(x1 + k * 64, x3 + k * 64, 64 * sizeof(float)) != 0;
  /* Another seed too. */
  nn_augmenter b;
  int rc = nn_augmenter_init(&b, &ALL_ON, 43, &s, &err);
  fill_batch(x3, i1, 4);
  if (!rc) nn_augment_batch(&b, 1, i1, 4, x3);
  int differ_seed = 0;
  for (int k = 0; k < 4; k++)
    differ_seed += memcmp(x1 + k * 64, x3 + k * 64, 64 * sizeof(float)) != 0;
  nn_augmenter_free(&a);
  nn_augmenter_free(&b);
  ASSERT_OK(rc);
  ASSERT_TRUE(ok);
  ASSERT_EQ_INT(differ, 4);
  ASSERT_EQ_INT(differ_seed, 4);
}

static void test_check_shapes(void) {
  nn_error err;
  nn_error_clear(&err);
  nn_shape flat = {1, {784}};
  nn_augmenter a;
  nn_augment_cfg noise = {.noise_std = 1, .erase_max_area = 0.25};
  nn_augment_cfg flip = {.hflip = 1, .erase_max_area = 0.25};
  ASSERT_EQ_INT(nn_augmenter_init(&a, &flip, 1, &flat, &err), NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "[augment]");
  ASSERT_STR_CONTAINS(err.msg, "[784]");
  nn_augmenter_free(&a);
  ASSERT_OK(nn_augmenter_init(&a, &noise, 1, &flat, &err)); /* noise needs no layout */
  float x[784] = {0};
  int64_t idx = 0;
  nn_augment_batch(&a, 0, &idx, 1, x);
  nn_augmenter_free(&a);
  int nonzero = 0;
  for (int i = 0; i < 784; i++) nonzero += x[i] != 0.0f;
  ASSERT_EQ_INT(nonzero, 784);
}

/* ---- the loader ---------------------------------------------------------------- */

enum { LN = 23, LC = 2, LH = 6, LW = 5, LFEAT = LC * LH * LW };
static const double L_MEAN[LC] = {2.0, -1.0}, L_STD[LC] = {4.0, 0.5};

static float raw_val(int64_t i, int k) { return (float)((i * 37 + k * 11) % 29) * 0.25f; }

/* A float32 shard of LN samples [LC, LH, LW] in a temp dir; returns its path. */
static int make_shard(char *path, size_t n, nn_error *err) {
  snprintf(path, n, "%s/train-000.h5", nn_test_tmpdir("augment"));
  if (access(path, F_OK) == 0) return 0;
  float x[LN * LFEAT];
  int32_t lab[LN];
  for (int64_t i = 0; i < LN; i++) {
    for (int k = 0; k < LFEAT; k++) x[i * LFEAT + k] = raw_val(i, k);
    lab[i] = (int32_t)(i % 3);
  }
  nn_shard_meta m = {{3, {LC, LH, LW}}, NN_FEAT_F32, 3, 0, 1.0, LC, L_MEAN, L_STD,
                     "train", "test_augment", 0, 1, 0, 0, 0, 0};
  nn_shard_writer *w = NULL;
  int rc = nn_shard_create(&w, path, &m, err);
  if (!rc) rc = nn_shard_append(w, x, lab, NULL, LN, err);
  if (!rc) return nn_shard_close(w, err);
  if (w) nn_shard_abort(w);
  return rc;
}

/* Run one epoch of a loader and store every sample it returns by global
 * index: out [LN, LFEAT], got [LN] counts. With shuffle the position p of the
 * epoch maps to perm[p]. */
static int run_epoch(nn_dataset *ds, nn_loader_cfg cfg, int epoch, int64_t first_step,
                     float *out, int *got, nn_error *err) {
  nn_loader *L = NULL;
  int64_t perm[LN];
  if (cfg.shuffle)
    nn_rng_permutation(cfg.seed, (uint32_t)epoch, perm, LN);
  else
    for (int i = 0; i < LN; i++) perm[i] = i;
  int rc = nn_loader_create(&L, ds, &cfg, err);
  if (!rc) rc = nn_loader_start(L, epoch, first_step, err);
  while (!rc) {
    const nn_batch *b;
    rc = nn_loader_next(L, &b, err);
    if (rc || !b) break;
    for (int k = 0; k < b->n; k++) {
      int64_t g = perm[b->sample0 + k];
      memcpy(out + g * LFEAT, b->x + (size_t)k * LFEAT, LFEAT * sizeof(float));
      got[g]++;
    }
  }
  nn_loader_free(L);
  return rc;
}

static void test_loader_augments_by_global_index(void) {
  char path[300];
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(make_shard(path, sizeof path, &err));
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, path, NULL, &err));
  static float plain[LN * LFEAT], aug1[LN * LFEAT], aug2[LN * LFEAT], aug3[LN * LFEAT],
      manual[LN * LFEAT], other[LN * LFEAT];
  int got[LN];
  int rc = 0;
  nn_loader_cfg base = {.seed = 77, .rank = 0, .nranks = 1, .batch_size = 4, .shuffle = 1,
                        .prefetch = 2, .normalize = 1, .augment = NULL};
  /* Evaluation-style loader: cfg.augment NULL -> exactly the normalized data. */
  memset(got, 0, sizeof got);
  rc = run_epoch(ds, base, 1, 0, plain, got, &err);
  int plain_ok = !rc;
  for (int64_t i = 0; plain_ok && i < LN; i++) {
    plain_ok = got[i] == 1;
    for (int k = 0; k < LFEAT; k++) {
      int c = k / (LH * LW);
      float want = (raw_val(i, k) - (float)L_MEAN[c]) * (float)(1.0 / L_STD[c]);
      if (plain[i * LFEAT + k] != want) plain_ok = 0;
    }
  }
  /* A config with nothing enabled is the same as NULL. */
  nn_augment_cfg off = {.erase_max_area = 0.25};
  nn_loader_cfg c_off = base;
  c_off.augment = &off;
  memset(got, 0, sizeof got);
  if (!rc) rc = run_epoch(ds, c_off, 1, 0, other, got, &err);
  int off_ok = !rc && memcmp(plain, other, sizeof plain) == 0;
  /* Augmented, batch 4 on one rank. */
  nn_loader_cfg c1 = base;
  c1.augment = &ALL_ON;
  memset(got, 0, sizeof got);
  if (!rc) rc = run_epoch(ds, c1, 1, 0, aug1, got, &err);
  int all1 = 1;
  for (int i = 0; i < LN; i++) all1 &= got[i] == 1;
  /* Batch 5 on two ranks (both slices), and prefetch 1. */
  nn_loader_cfg c2 = c1;
  c2.batch_size = 5;
  c2.nranks = 2;
  c2.prefetch = 1;
  memset(got, 0, sizeof got);
  for (int r = 0; r < 2 && !rc; r++) {
    c2.rank = r;
    rc = run_epoch(ds, c2, 1, 0, aug2, got, &err);
  }
  int all2 = 1;
  for (int i = 0; i < LN; i++) all2 &= got[i] == 1;
  /* Resumed at step 3 of batch 4: those samples equal the full run's. */
  memset(got, 0, sizeof got);
  if (!rc) rc = run_epoch(ds, c1, 1, 3, aug3, got, &err);
  int resumed = 0, resume_ok = 1;
  for (int i = 0; i < LN; i++)
    if (got[i]) {
      resumed++;
      resume_ok &= memcmp(aug3 + i * LFEAT, aug1 + i * LFEAT, LFEAT * sizeof(float)) == 0;
    }
  /* Augmentation after normalization: the plain output, augmented by hand. */
  nn_augmenter a;
  nn_shape s = {3, {LC, LH, LW}};
  if (!rc) rc = nn_augmenter_init(&a, &ALL_ON, 77, &s, &err);
  if (!rc) {
    int64_t idx[LN];
    for (int i = 0; i < LN; i++) idx[i] = i;
    memcpy(manual, plain, sizeof plain);
    nn_augment_batch(&a, 1, idx, LN, manual);
    nn_augmenter_free(&a);
  }
  /* Epoch 2 differs from epoch 1 for every sample. */
  memset(got, 0, sizeof got);
  if (!rc) rc = run_epoch(ds, c1, 2, 0, other, got, &err);
  int differ = 0;
  for (int i = 0; i < LN; i++)
    differ += memcmp(other + i * LFEAT, aug1 + i * LFEAT, LFEAT * sizeof(float)) != 0;
  int changed = 0;
  for (int i = 0; i < LN; i++)
    changed += memcmp(plain + i * LFEAT, aug1 + i * LFEAT, LFEAT * sizeof(float)) != 0;
  nn_dataset_close(ds);
  ASSERT_OK(rc);
  ASSERT_TRUE(plain_ok);
  ASSERT_TRUE(off_ok);
  ASSERT_TRUE(all1 && all2);
  ASSERT_TRUE(memcmp(aug1, aug2, sizeof aug1) == 0);
  ASSERT_EQ_INT(resumed, LN - 12);
  ASSERT_TRUE(resume_ok);
  ASSERT_TRUE(memcmp(aug1, manual, sizeof aug1) == 0);
  ASSERT_EQ_INT(differ, LN);
  ASSERT_EQ_INT(changed, LN);
}

/* A spatial transform on non-image data is refused when the loader is made. */
static void test_loader_refuses_flat_data(void) {
  char path[300];
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(make_shard(path, sizeof path, &err)); /* makes the temp dir */
  char flat_path[300];
  snprintf(flat_path, sizeof flat_path, "%s/flat-000.h5", nn_test_tmpdir("augment"));
  float x[4 * 6] = {0};
  int32_t lab[4] = {0, 1, 0, 1};
  double mean[6] = {0}, sd[6] = {1, 1, 1, 1, 1, 1}; /* flat samples: one entry per feature */
  nn_shard_meta m = {{1, {6}}, NN_FEAT_F32, 2, 0, 1.0, 6, mean, sd, "train", "t", 0, 1, 0, 0, 0, 0};
  nn_shard_writer *w = NULL;
  ASSERT_OK(nn_shard_create(&w, flat_path, &m, &err));
  ASSERT_OK(nn_shard_append(w, x, lab, NULL, 4, &err));
  ASSERT_OK(nn_shard_close(w, &err));
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, flat_path, NULL, &err));
  nn_augment_cfg rot = {.rotate = 10, .erase_max_area = 0.25};
  nn_loader_cfg c = {.seed = 1, .nranks = 1, .batch_size = 2, .prefetch = 1, .augment = &rot};
  nn_loader *L = NULL;
  int rc = nn_loader_create(&L, ds, &c, &err);
  nn_loader_free(L);
  nn_dataset_close(ds);
  ASSERT_EQ_INT(rc, NN_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "[augment]");
}

/* ---- cost ------------------------------------------------------------------------ */

/* Every transform on, 28x28: samples per second of the transform alone
 * (draw + apply; each batch starts from a fresh copy of the input, as the
 * loader's do), timed in this thread's CPU time so other processes on the
 * machine do not count. Printed; the assertion is a loose floor so a loaded
 * or sanitized build still passes, the figure to compare is the printed one. */
static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void test_speed_28x28(void) {
  enum { B = 256 };
  nn_shape s = {3, {1, 28, 28}};
  nn_augment_cfg cfg = {.translate = 2, .crop_padding = 4, .hflip = 1, .vflip = 1,
                        .rotate = 15, .noise_std = 0.1, .erase_prob = 0.5,
                        .erase_max_area = 0.25};
  nn_augmenter a;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_OK(nn_augmenter_init(&a, &cfg, 3, &s, &err));
  float *x = malloc(sizeof(float) * B * 784), *x0 = malloc(sizeof(float) * B * 784);
  int64_t idx[B];
  if (!x || !x0) {
    free(x);
    free(x0);
    nn_augmenter_free(&a);
    ASSERT_TRUE(!"out of memory");
  }
  for (int i = 0; i < B * 784; i++) x0[i] = (float)(i % 255) / 255.0f - 0.3f;
  double t0 = cpu_now(), el = 0, copy = 0;
  int64_t done = 0;
  for (int rep = 0; el < 0.4; rep++) {
    double c0 = cpu_now();
    memcpy(x, x0, sizeof(float) * B * 784);
    copy += cpu_now() - c0;
    for (int i = 0; i < B; i++) idx[i] = (int64_t)rep * B + i;
    nn_augment_batch(&a, 0, idx, B, x);
    done += B;
    el = cpu_now() - t0;
  }
  nn_augmenter_free(&a);
  int finite = 1, changed = 0;
  for (int i = 0; i < B * 784; i++) {
    finite &= isfinite(x[i]) != 0;
    changed += x[i] != x0[i];
  }
  free(x);
  free(x0);
  double rate = (double)done / (el - copy);
  printf("augment 28x28, all transforms: %.0f samples/s (%.2f us/sample, %lld samples, CPU "
         "time)\n", rate, 1e6 / rate, (long long)done);
  ASSERT_TRUE(finite);
  ASSERT_TRUE(changed > B * 784 / 2);
  ASSERT_TRUE(rate > 2000);
}

TEST_MAIN(TEST(test_shift_1_m2), TEST(test_shift_out_of_image), TEST(test_crop_equals_shift),
          TEST(test_flips), TEST(test_rotate_right_angles), TEST(test_rotate_bilinear),
          TEST(test_erase_explicit), TEST(test_noise_stats), TEST(test_draw_ranges),
          TEST(test_draw_streams), TEST(test_same_sample_any_position), TEST(test_check_shapes),
          TEST(test_loader_augments_by_global_index), TEST(test_loader_refuses_flat_data),
          TEST(test_speed_28x28))
