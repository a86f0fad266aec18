/* test_png.c: the PNG writer (worker/png.h), read back with libpng's own
 * reader (png_image):
 *  - gray and RGB pictures come back pixel for pixel;
 *  - nn_png_byte maps the range ends to 0 and 255, clamps, NaN -> 0;
 *  - the grid: its size (cols*W + cols-1 by rows*H + rows-1, with zoom), each
 *    image's pixels in their cell (planar RGB interleaved), the gaps and the
 *    empty cells gap-coloured, min/max scaling when no range is given;
 *  - an unwritable path fails with NN_EIO naming the file, leaving no file
 *    and no .tmp. */
#include <png.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "test_tmp.h"
#include "worker/png.h"

/* Read path as `channels` bytes per pixel (1 gray, 3 RGB); *w, *h set. */
static uint8_t *read_back(const char *path, int channels, int *w, int *h, int *file_channels) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&im, path)) return NULL;
  *file_channels = PNG_IMAGE_SAMPLE_CHANNELS(im.format);
  im.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
  if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
    free(buf);
    png_image_free(&im);
    return NULL;
  }
  *w = (int)im.width;
  *h = (int)im.height;
  return buf;
}

static void test_gray_and_rgb_round_trip(void) {
  const char *dir = nn_test_tmpdir("png");
  char path[300];
  nn_error e;
  nn_error_clear(&e);
  for (int ch = 1; ch <= 3; ch += 2) {
    const int W = 13, H = 7;
    uint8_t pix[13 * 7 * 3];
    for (int i = 0; i < W * H * ch; i++) pix[i] = (uint8_t)(i * 37 + 11);
    snprintf(path, sizeof path, "%s/c%d.png", dir, ch);
    ASSERT_OK(nn_png_write(path, pix, W, H, ch, &e));
    int w = 0, h = 0, fc = 0;
    uint8_t *back = read_back(path, ch, &w, &h, &fc);
    ASSERT_TRUE(back != NULL);
    int same = w == W && h == H && fc == ch && memcmp(back, pix, (size_t)(W * H * ch)) == 0;
    free(back);
    ASSERT_TRUE(same);
  }
  ASSERT_EQ_INT(nn_png_write(path, NULL, 3, 3, 2, &e), NN_EINVAL);
}

static void test_byte_mapping(void) {
  ASSERT_EQ_INT(nn_png_byte(0.0f, 0.0f, 1.0f), 0);
  ASSERT_EQ_INT(nn_png_byte(1.0f, 0.0f, 1.0f), 255);
  ASSERT_EQ_INT(nn_png_byte(0.5f, 0.0f, 1.0f), 128);
  ASSERT_EQ_INT(nn_png_byte(-3.0f, 0.0f, 1.0f), 0);
  ASSERT_EQ_INT(nn_png_byte(7.0f, 0.0f, 1.0f), 255);
  ASSERT_EQ_INT(nn_png_byte(NAN, 0.0f, 1.0f), 0);
  ASSERT_EQ_INT(nn_png_byte(-1.0f, -2.0f, 2.0f), 64);
  ASSERT_EQ_INT(nn_png_byte(5.0f, 1.0f, 1.0f), 0);
}

/* 5 RGB images of 3x2 at zoom 2 in 3 columns: 2 rows, 3*4+2 = 14 by 2*6+1 = 13. */
static void test_grid_layout(void) {
  const char *dir = nn_test_tmpdir("png");
  char path[300];
  enum { N = 5, C = 3, H = 3, W = 2, Z = 2 };
  float x[N * C * H * W];
  for (int i = 0; i < N * C * H * W; i++) x[i] = (float)(i % 251) / 250.0f; /* in [0, 1] */
  nn_error e;
  nn_error_clear(&e);
  snprintf(path, sizeof path, "%s/grid.png", dir);
  nn_png_grid_opts o = {.cols = 3, .lo = 0, .hi = 1, .zoom = Z, .gap = 200};
  ASSERT_OK(nn_png_grid(path, x, N, C, H, W, &o, &e));
  int w = 0, h = 0, fc = 0;
  uint8_t *p = read_back(path, 3, &w, &h, &fc);
  ASSERT_TRUE(p != NULL);
  int bad = w != 3 * W * Z + 2 || h != 2 * H * Z + 1 || fc != 3;
  for (int y = 0; y < h && !bad; y++)
    for (int xx = 0; xx < w && !bad; xx++) {
      int cx = xx / (W * Z + 1), ox = xx % (W * Z + 1), cy = y / (H * Z + 1), oy = y % (H * Z + 1);
      int k = cy * 3 + cx;
      for (int c = 0; c < C; c++) {
        int want = 200;
        if (ox < W * Z && oy < H * Z && k < N)
          want = nn_png_byte(x[((k * C + c) * H + oy / Z) * W + ox / Z], 0, 1);
        if (p[(y * w + xx) * 3 + c] != want) {
          fprintf(stderr, "pixel (%d, %d) channel %d: %d, expected %d\n", xx, y, c,
                  p[(y * w + xx) * 3 + c], want);
          bad = 1;
        }
      }
    }
  free(p);
  ASSERT_TRUE(!bad);
  /* no range: the batch's min -> 0, max -> 255; one column by default for n = 1 */
  float g[4] = {-2, 0, 2, 6};
  nn_png_grid_opts m = {0};
  ASSERT_OK(nn_png_grid(path, g, 1, 1, 2, 2, &m, &e));
  p = read_back(path, 1, &w, &h, &fc);
  ASSERT_TRUE(p != NULL);
  int ok = w == 2 && h == 2 && fc == 1 && p[0] == 0 && p[1] == 64 && p[2] == 128 && p[3] == 255;
  free(p);
  ASSERT_TRUE(ok);
  ASSERT_EQ_INT(nn_png_grid(path, g, 1, 2, 2, 1, &m, &e), NN_EINVAL);
}

static void test_unwritable_path(void) {
  const char *dir = nn_test_tmpdir("png");
  char path[300], tmp[320];
  snprintf(path, sizeof path, "%s/no/such/dir/x.png", dir);
  uint8_t pix[4] = {1, 2, 3, 4};
  nn_error e;
  nn_error_clear(&e);
  ASSERT_EQ_INT(nn_png_write(path, pix, 2, 2, 1, &e), NN_EIO);
  ASSERT_STR_EQ(e.file, path);
  ASSERT_TRUE(strstr(e.msg, "cannot write") != NULL);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  ASSERT_TRUE(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);
  /* a directory in the way of the rename: the .tmp is removed */
  snprintf(path, sizeof path, "%s/adir", dir);
  ASSERT_OK(mkdir(path, 0700));
  ASSERT_EQ_INT(nn_png_write(path, pix, 2, 2, 1, &e), NN_EIO);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  ASSERT_TRUE(access(tmp, F_OK) != 0);
}

TEST_MAIN(TEST(test_gray_and_rgb_round_trip), TEST(test_byte_mapping), TEST(test_grid_layout),
          TEST(test_unwritable_path))
