/* png.h: pictures as 8-bit PNG files through libpng (README.md,
 * "Dependencies"): one image, and a grid of a batch of images (VAE/GAN
 * samples, reconstructions, `nntrain dream`). docs/pictures.md.
 *
 * Files are written as PATH.tmp and renamed to PATH when complete, so a
 * failed write never leaves a partial picture under the final name. Errors
 * (NN_EIO) are one line naming the file. */
#ifndef NN_WORKER_PNG_H
#define NN_WORKER_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Write w x h pixels, `channels` 1 (gray) or 3 (RGB) bytes each, rows top to
 * bottom, channels interleaved (RGBRGB...). */
int nn_png_write(const char *path, const uint8_t *pix, int w, int h, int channels,
                 nn_error *err);

/* The same picture encoded in memory: *buf (malloc'd, free()) of *len
 * bytes. NN_EINVAL for a bad size, NN_ENOMEM. */
int nn_png_encode(const uint8_t *pix, int w, int h, int channels, char **buf, size_t *len,
                  nn_error *err);

/* The byte for value v of the range [lo, hi]: 0 at lo, 255 at hi, rounded,
 * clamped (NaN: 0). lo >= hi maps everything to 0. */
uint8_t nn_png_byte(float v, float lo, float hi);

/* The smallest and largest finite values of x[count] (0, 0 when none). */
void nn_png_minmax(const float *x, size_t count, float *lo, float *hi);

/* How nn_png_grid lays images out. */
typedef struct nn_png_grid_opts {
  int cols;         /* images per row; 0: ceil(sqrt(n)) */
  float lo, hi;     /* value range mapped to 0..255; lo >= hi: the batch's min/max */
  int zoom;         /* each image pixel becomes zoom x zoom pixels; 0 or 1: none */
  uint8_t gap;      /* gray level of the 1-pixel gaps between images */
} nn_png_grid_opts;

/* Tile n images x [n, C, H, W] (C = 1: gray, C = 3: RGB; float, planar as
 * the models hold them) into a grid of cols columns and ceil(n / cols) rows
 * with a 1-pixel gap between neighbours (cells past n are gap-coloured), and
 * write it to path. The picture is cols*W*zoom + cols - 1 pixels wide and
 * rows*H*zoom + rows - 1 high. NN_EINVAL for C other than 1 or 3, n < 1 or a
 * picture over 2^31 pixels; NN_ENOMEM; NN_EIO naming path. */
int nn_png_grid(const char *path, const float *x, int n, int C, int H, int W,
                const nn_png_grid_opts *o, nn_error *err);

#endif
