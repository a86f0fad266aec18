/* png.c: 8-bit PNG writing through libpng, and the image grid (png.h). */
#include "worker/png.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

/* libpng reports errors through a callback that must not return: it keeps
 * the message here and jumps back to nn_png_write. */
typedef struct png_failure {
  jmp_buf jb;
  char msg[200];
} png_failure;

static void on_error(png_structp p, png_const_charp msg) {
  png_failure *f = png_get_error_ptr(p);
  snprintf(f->msg, sizeof f->msg, "%s", msg);
  longjmp(f->jb, 1);
}

static void on_warning(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

/* The libpng part: write the open file f. 0, or -1 with fail->msg set. */
static int write_png(FILE *f, const uint8_t *pix, int w, int h, int channels,
                     png_failure *fail) {
  png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, fail, on_error, on_warning);
  if (!p) {
    snprintf(fail->msg, sizeof fail->msg, "out of memory");
    return -1;
  }
  png_infop info = png_create_info_struct(p);
  if (!info) {
    png_destroy_write_struct(&p, NULL);
    snprintf(fail->msg, sizeof fail->msg, "out of memory");
    return -1;
  }
  if (setjmp(fail->jb)) {
    png_destroy_write_struct(&p, &info);
    return -1;
  }
  png_init_io(p, f);
  png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8,
               channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(p, info);
  for (int y = 0; y < h; y++)
    png_write_row(p, (png_const_bytep)(pix + (size_t)y * (size_t)w * (size_t)channels));
  png_write_end(p, NULL);
  png_destroy_write_struct(&p, &info);
  return 0;
}

int nn_png_write(const char *path, const uint8_t *pix, int w, int h, int channels,
                 nn_error *err) {
  if (w < 1 || h < 1 || (channels != 1 && channels != 3))
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "cannot write a %dx%d PNG of %d channels",
                       w, h, channels);
  size_t n = strlen(path) + 5;
  char *tmp = nn_malloc(n);
  if (!tmp) return nn_error_set(err, NN_ENOMEM, "out of memory");
  snprintf(tmp, n, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    int e = errno;
    free(tmp);
    return nn_error_at(err, NN_EIO, path, 0, 0, "cannot write the PNG: %s", strerror(e));
  }
  png_failure fail;
  fail.msg[0] = 0;
  int rc = write_png(f, pix, w, h, channels, &fail);
  int e = errno;
  if (ferror(f)) rc = -1;
  if (fclose(f) != 0) {
    if (!rc) e = errno;
    rc = -1;
  }
  if (!rc && rename(tmp, path) != 0) {
    e = errno;
    rc = -1;
  }
  if (rc) {
    remove(tmp);
    rc = fail.msg[0] && strcmp(fail.msg, "Write Error") != 0
             ? nn_error_at(err, NN_EIO, path, 0, 0, "cannot write the PNG: %s", fail.msg)
             : nn_error_at(err, NN_EIO, path, 0, 0, "cannot write the PNG: %s",
                           strerror(e ? e : EIO));
  }
  free(tmp);
  return rc;
}

int nn_png_encode(const uint8_t *pix, int w, int h, int channels, char **buf, size_t *len,
                  nn_error *err) {
  *buf = NULL;
  *len = 0;
  if (w < 1 || h < 1 || (channels != 1 && channels != 3))
    return nn_error_set(err, NN_EINVAL, "cannot encode a %dx%d PNG of %d channels", w, h,
                        channels);
  FILE *f = open_memstream(buf, len);
  if (!f) return nn_error_set(err, NN_ENOMEM, "out of memory");
  png_failure fail;
  fail.msg[0] = 0;
  int rc = write_png(f, pix, w, h, channels, &fail);
  if (ferror(f)) rc = -1;
  if (fclose(f) != 0) rc = -1;
  if (rc) {
    free(*buf);
    *buf = NULL;
    *len = 0;
    return nn_error_set(err, NN_ENOMEM, "cannot encode the PNG: %s",
                        fail.msg[0] ? fail.msg : "out of memory");
  }
  return 0;
}

uint8_t nn_png_byte(float v, float lo, float hi) {
  if (!(hi > lo) || !(v > lo)) return 0; /* NaN, below the range */
  if (v >= hi) return 255;
  return (uint8_t)lrintf((v - lo) / (hi - lo) * 255.0f);
}

void nn_png_minmax(const float *x, size_t count, float *lo, float *hi) {
  int any = 0;
  *lo = *hi = 0;
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(x[i])) continue;
    if (!any || x[i] < *lo) *lo = x[i];
    if (!any || x[i] > *hi) *hi = x[i];
    any = 1;
  }
}

int nn_png_grid(const char *path, const float *x, int n, int C, int H, int W,
                const nn_png_grid_opts *o, nn_error *err) {
  if (n < 1 || (C != 1 && C != 3) || H < 1 || W < 1)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "cannot tile %d images of [%d, %d, %d] "
                       "(1 or 3 channels)", n, C, H, W);
  int cols = o->cols > 0 ? o->cols : (int)ceil(sqrt((double)n));
  if (cols > n) cols = n;
  int rows = (n + cols - 1) / cols, z = o->zoom > 1 ? o->zoom : 1;
  double pw = (double)cols * W * z + cols - 1, ph = (double)rows * H * z + rows - 1;
  if (pw * ph > 2147483647.0 || pw > 1e6 || ph > 1e6)
    return nn_error_at(err, NN_EINVAL, path, 0, 0, "a grid of %d images of %dx%d at zoom %d "
                       "is too large for a PNG", n, H, W, z);
  int w = (int)pw, h = (int)ph;
  float lo = o->lo, hi = o->hi;
  size_t per = (size_t)C * (size_t)H * (size_t)W;
  if (!(hi > lo)) nn_png_minmax(x, per * (size_t)n, &lo, &hi);
  uint8_t *pix = nn_malloc((size_t)w * (size_t)h * (size_t)C);
  if (!pix) return nn_error_set(err, NN_ENOMEM, "out of memory");
  memset(pix, o->gap, (size_t)w * (size_t)h * (size_t)C);
  for (int k = 0; k < n; k++) {
    int x0 = (k % cols) * (W * z + 1), y0 = (k / cols) * (H * z + 1);
    const float *img = x + (size_t)k * per;
    for (int yy = 0; yy < H * z; yy++)
      for (int xx = 0; xx < W * z; xx++)
        for (int c = 0; c < C; c++)
          pix[((size_t)(y0 + yy) * (size_t)w + (size_t)(x0 + xx)) * (size_t)C + (size_t)c] =
              nn_png_byte(img[((size_t)c * (size_t)H + (size_t)(yy / z)) * (size_t)W +
                              (size_t)(xx / z)], lo, hi);
  }
  int rc = nn_png_write(path, pix, w, h, C, err);
  free(pix);
  return rc;
}
