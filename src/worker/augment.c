/* augment.c: per-sample data augmentation (see augment.h).
 *
 * What this file is: the [augment] key table, the random draw of one
 * sample's transform, and the transforms themselves as plain loops over a
 * [C, H, W] float image. What it is not: a general image library (no
 * resizing, no colour transforms, no interpolation other than bilinear).
 * Nothing here allocates except nn_augmenter_init, so the loader thread does
 * no allocation per batch. */
#include "worker/augment.h"
#include "core/mem.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(nn_augment_cfg, field)

const nn_key nn_augment_keys[] = {
  {.name = "translate", .type = NN_KEY_INT, .offset = F(translate), .size = sizeof(int),
   .min = 0, .max = 1024, .def = "0",
   .help = "Shift each training image by a random whole number of pixels in [-n, n] in x "
           "and in y; uncovered pixels are 0 (the mean, after normalization). 0: off."},
  {.name = "crop_padding", .type = NN_KEY_INT, .offset = F(crop_padding), .size = sizeof(int),
   .min = 0, .max = 1024, .def = "0",
   .help = "Zero-pad each training image by n pixels on every side, then take a random "
           "window of the original size (the classic 'random crop with padding'). 0: off."},
  {.name = "hflip", .type = NN_KEY_BOOL, .offset = F(hflip), .size = sizeof(int),
   .def = "false", .help = "Flip left-right with probability 1/2."},
  {.name = "vflip", .type = NN_KEY_BOOL, .offset = F(vflip), .size = sizeof(int),
   .def = "false", .help = "Flip top-bottom with probability 1/2."},
  {.name = "rotate", .type = NN_KEY_FLOAT, .offset = F(rotate), .size = sizeof(double),
   .min = 0, .max = 180, .def = "0",
   .help = "Rotate by a random angle in [-d, d] degrees about the centre (bilinear). 0: off."},
  {.name = "noise_std", .type = NN_KEY_FLOAT, .offset = F(noise_std), .size = sizeof(double),
   .min = 0, .max = 1e3, .def = "0",
   .help = "Add Gaussian noise with this standard deviation to every input value (after "
           "normalization). 0: off."},
  {.name = "erase_prob", .type = NN_KEY_FLOAT, .offset = F(erase_prob), .size = sizeof(double),
   .min = 0, .max = 1, .def = "0",
   .help = "Random erasing: with this probability, set a random rectangle of the image to "
           "0. 0: off."},
  {.name = "erase_max_area", .type = NN_KEY_FLOAT, .offset = F(erase_max_area),
   .size = sizeof(double), .min = 0, .max = 1, .def = "0.25", .flags = NN_KEY_MIN_EXCLUSIVE,
   .help = "Random erasing: the largest fraction of the image a rectangle covers."},
  {0},
};

int nn_augment_enabled(const nn_augment_cfg *c) {
  return c->translate > 0 || c->crop_padding > 0 || c->hflip || c->vflip || c->rotate > 0 ||
         c->noise_std > 0 || c->erase_prob > 0;
}

int nn_augment_check(const nn_augment_cfg *c, const nn_shape *sample, nn_error *err) {
  /* The first spatial key that is on, in table order. */
  const char *key = c->translate > 0      ? "translate"
                    : c->crop_padding > 0 ? "crop_padding"
                    : c->hflip            ? "hflip"
                    : c->vflip            ? "vflip"
                    : c->rotate > 0       ? "rotate"
                    : c->erase_prob > 0   ? "erase_prob"
                                          : NULL;
  if (key && sample->ndim != 3) {
    char s[64];
    return nn_error_set(err, NN_EINVAL,
                        "[augment] %s needs image samples [C, H, W]; the data's samples are %s "
                        "(only noise_std works on other shapes)",
                        key, nn_shape_str(sample, s, sizeof s));
  }
  return 0;
}

/* ---- the transforms with explicit parameters ------------------------------ */

void nn_augment_shift(float *x, int C, int H, int W, int dx, int dy, float *scratch) {
  const size_t plane = (size_t)H * W;
  if (dx == 0 && dy == 0) return;
  if (dx >= W || dx <= -W || dy >= H || dy <= -H) { /* everything moved out */
    memset(x, 0, (size_t)C * plane * sizeof *x);
    return;
  }
  /* Output columns [xlo, xhi) come from input columns [xlo - dx, xhi - dx). */
  const int xlo = dx > 0 ? dx : 0, xhi = dx < 0 ? W + dx : W;
  const size_t ncopy = (size_t)(xhi - xlo);
  for (int c = 0; c < C; c++) {
    float *img = x + (size_t)c * plane;
    memcpy(scratch, img, plane * sizeof *img);
    for (int y = 0; y < H; y++) {
      float *row = img + (size_t)y * W;
      const int sy = y - dy;
      if (sy < 0 || sy >= H) {
        memset(row, 0, (size_t)W * sizeof *row);
        continue;
      }
      memset(row, 0, (size_t)xlo * sizeof *row);
      memcpy(row + xlo, scratch + (size_t)sy * W + (xlo - dx), ncopy * sizeof *row);
      memset(row + xhi, 0, (size_t)(W - xhi) * sizeof *row);
    }
  }
}

/* Padded image pixel (cy + y, cx + x) is input pixel (cy + y - pad, cx + x - pad):
 * the window is the input moved by (pad - cx, pad - cy). */
void nn_augment_crop(float *x, int C, int H, int W, int pad, int cx, int cy, float *scratch) {
  nn_augment_shift(x, C, H, W, pad - cx, pad - cy, scratch);
}

void nn_augment_hflip(float *x, int C, int H, int W) {
  for (size_t r = 0; r < (size_t)C * H; r++) {
    float *row = x + r * (size_t)W;
    for (int i = 0, j = W - 1; i < j; i++, j--) {
      float t = row[i];
      row[i] = row[j];
      row[j] = t;
    }
  }
}

void nn_augment_vflip(float *x, int C, int H, int W) {
  for (int c = 0; c < C; c++) {
    float *img = x + (size_t)c * H * W;
    for (int i = 0, j = H - 1; i < j; i++, j--) {
      float *a = img + (size_t)i * W, *b = img + (size_t)j * W;
      for (int k = 0; k < W; k++) {
        float t = a[k];
        a[k] = b[k];
        b[k] = t;
      }
    }
  }
}

#define AUG_PI 3.14159265358979323846
#define AUG_SNAP 1e-12

/* v, or exactly 0, 1 or -1 when v is within AUG_SNAP of it: cos and sin of a
 * multiple of 90 degrees come out as 6e-17 instead of 0, and snapping them
 * makes every source position of such a rotation exact, so the bilinear taps
 * land on pixels. */
static double snap_unit(double v) {
  if (fabs(v) < AUG_SNAP) return 0.0;
  if (fabs(v - 1.0) < AUG_SNAP) return 1.0;
  if (fabs(v + 1.0) < AUG_SNAP) return -1.0;
  return v;
}

/* One output pixel at source (sx, sy) of a [C, H*W] image with taps outside
 * the image read as 0 (the slow path: near or beyond the border). */
static void rotate_border(float *out, const float *src, int C, int H, int W, size_t plane,
                          int x0, int y0, double fx, double fy) {
  size_t off[4];
  float w[4];
  int k = 0;
  const double wx[2] = {1.0 - fx, fx}, wy[2] = {1.0 - fy, fy};
  for (int a = 0; a < 2; a++) {
    const int yy = y0 + a;
    if (wy[a] == 0.0 || yy < 0 || yy >= H) continue;
    for (int b = 0; b < 2; b++) {
      const int xs = x0 + b;
      if (wx[b] == 0.0 || xs < 0 || xs >= W) continue;
      off[k] = (size_t)yy * W + (size_t)xs;
      w[k++] = (float)(wy[a] * wx[b]);
    }
  }
  for (int c = 0; c < C; c++) {
    float acc = 0.0f;
    for (int j = 0; j < k; j++) acc += w[j] * src[(size_t)c * plane + off[j]];
    out[(size_t)c * plane] = acc;
  }
}

/* Inverse mapping: output pixel (u, v) relative to the centre reads the input
 * at (u cos t - v sin t, u sin t + v cos t). With y pointing down this turns
 * the picture counter-clockwise as displayed (torchvision's convention). Pixels whose four taps are all inside take a
 * branch-free path; the others read 0 for taps outside the image. */
void nn_augment_rotate(float *x, int C, int H, int W, double degrees, float *scratch) {
  const size_t plane = (size_t)H * W;
  const double t = degrees * (AUG_PI / 180.0);
  const double ct = snap_unit(cos(t)), st = snap_unit(sin(t));
  const double cx = (W - 1) * 0.5, cy = (H - 1) * 0.5;
  const double wlast = W - 1, hlast = H - 1, wd = W, hd = H;
  memcpy(scratch, x, (size_t)C * plane * sizeof *x);
  for (int y = 0; y < H; y++) {
    const double v = y - cy;
    for (int xx = 0; xx < W; xx++) {
      const double u = xx - cx;
      const double sx = cx + u * ct - v * st, sy = cy + u * st + v * ct;
      const double fx0 = floor(sx), fy0 = floor(sy);
      const double fx = sx - fx0, fy = sy - fy0;
      const size_t o = (size_t)y * W + (size_t)xx;
      if (fx0 >= 0 && fy0 >= 0 && fx0 < wlast && fy0 < hlast) {
        const size_t s0 = (size_t)fy0 * W + (size_t)fx0;
        const float w00 = (float)((1 - fx) * (1 - fy)), w01 = (float)(fx * (1 - fy));
        const float w10 = (float)((1 - fx) * fy), w11 = (float)(fx * fy);
        for (int c = 0; c < C; c++) {
          const float *p = scratch + (size_t)c * plane + s0;
          x[(size_t)c * plane + o] = w00 * p[0] + w01 * p[1] + w10 * p[W] + w11 * p[W + 1];
        }
      } else if (fx0 < -1 || fy0 < -1 || fx0 >= wd || fy0 >= hd) {
        for (int c = 0; c < C; c++) x[(size_t)c * plane + o] = 0.0f;
      } else {
        rotate_border(x + o, scratch, C, H, W, plane, (int)fx0, (int)fy0, fx, fy);
      }
    }
  }
}

void nn_augment_erase(float *x, int C, int H, int W, int x0, int y0, int w, int h) {
  int x1 = x0 + w, y1 = y0 + h;
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > W) x1 = W;
  if (y1 > H) y1 = H;
  if (x0 >= x1 || y0 >= y1) return;
  for (int c = 0; c < C; c++)
    for (int y = y0; y < y1; y++)
      memset(x + ((size_t)c * H + y) * W + x0, 0, (size_t)(x1 - x0) * sizeof *x);
}

/* Gaussian noise by Marsaglia's polar method: (u, v) uniform in the unit
 * disc, s = u^2 + v^2, then u * sqrt(-2 ln s / s) and v * sqrt(-2 ln s / s)
 * are independent N(0, 1). No trigonometry, and one 32-bit word gives both
 * coordinates (16 bits each, odd multiples of 2^-16 in (-1, 1), so s > 0);
 * 21% of the words are rejected; the largest |z| is about 6.4.
 * Noise is the costliest transform, so it runs in blocks of NOISE_BLOCK
 * pairs: first the accepted (u, v, s) are collected without a branch on the
 * rejection (a rejected candidate is overwritten by the next one), then the
 * square roots and logarithms run over the block in one loop, then the
 * values are added. The result equals the pair-at-a-time loop. */
#define NOISE_BLOCK 64

void nn_augment_noise(float *x, size_t n, double std, nn_rng *r) {
  const float sd = (float)std;
  float u[NOISE_BLOCK], v[NOISE_BLOCK], k[NOISE_BLOCK];
  size_t i = 0;
  while (i < n) {
    size_t pairs = (n - i + 1) / 2;
    if (pairs > NOISE_BLOCK) pairs = NOISE_BLOCK;
    for (size_t m = 0; m < pairs;) {
      const uint32_t w = nn_rng_u32(r);
      const float a = ((float)(w & 0xFFFFu) - 32767.5f) * (1.0f / 32768.0f);
      const float b = ((float)(w >> 16) - 32767.5f) * (1.0f / 32768.0f);
      const float s = a * a + b * b;
      u[m] = a;
      v[m] = b;
      k[m] = s;
      m += s < 1.0f;
    }
    for (size_t m = 0; m < pairs; m++) k[m] = sqrtf(-2.0f * logf(k[m]) / k[m]);
    const size_t full = (n - i) / 2 < pairs ? (n - i) / 2 : pairs; /* pairs with both values */
    for (size_t m = 0; m < full; m++) {
      x[i + 2 * m] += sd * (u[m] * k[m]);
      x[i + 2 * m + 1] += sd * (v[m] * k[m]);
    }
    if (full < pairs) x[i + 2 * full] += sd * (u[full] * k[full]); /* odd n: the last value */
    i += 2 * pairs;
  }
}

/* ---- drawing one sample's parameters ---------------------------------------- */

/* The stream (seed, NN_RNG_AUGMENT, epoch, sample, transform). The sample's
 * low 32 bits are the b coordinate; its high bits, if any, go above the
 * transform id in c, so every 63-bit index has its own streams. */
static void stream(nn_rng *r, uint64_t seed, uint32_t epoch, int64_t sample, uint32_t tid) {
  const uint64_t s = (uint64_t)sample;
  nn_rng_init(r, seed, NN_RNG_AUGMENT, epoch, (uint32_t)s,
              tid | ((uint32_t)(s >> 32) << 4));
}

/* Uniform integer in [-t, t]. */
static int symmetric_int(nn_rng *r, int t) {
  return (int)nn_rng_below(r, (uint32_t)(2 * t + 1)) - t;
}

/* Random erasing as in torchvision: up to NN_AUGMENT_ERASE_TRIES times draw
 * an area fraction uniform in [lo, max_area] and an aspect ratio h/w
 * log-uniform in [0.3, 3.3], round h and w, and keep the first rectangle that
 * fits strictly inside the image; then a uniform position. One addition: the
 * rounded rectangle must also cover a fraction in [lo, max_area], so the
 * documented bounds hold exactly. lo = min(0.02, max_area). */
static void draw_erase(const nn_augment_cfg *cfg, nn_rng *r, int H, int W,
                       nn_augment_params *p) {
  if (!(nn_rng_uniform(r) < cfg->erase_prob)) return;
  const double area = (double)H * W, hi = cfg->erase_max_area;
  const double lo = hi < NN_AUGMENT_ERASE_MIN_AREA ? hi : NN_AUGMENT_ERASE_MIN_AREA;
  const double lr0 = log(NN_AUGMENT_ERASE_MIN_RATIO), lr1 = log(NN_AUGMENT_ERASE_MAX_RATIO);
  for (int t = 0; t < NN_AUGMENT_ERASE_TRIES; t++) {
    const double target = area * (lo + (hi - lo) * nn_rng_uniform(r));
    const double ratio = exp(lr0 + (lr1 - lr0) * nn_rng_uniform(r));
    const int h = (int)nearbyint(sqrt(target * ratio));
    const int w = (int)nearbyint(sqrt(target / ratio));
    const double got = (double)h * w;
    if (h < 1 || w < 1 || h >= H || w >= W || got < lo * area || got > hi * area) continue;
    p->erase = 1;
    p->erase_h = h;
    p->erase_w = w;
    p->erase_y = (int)nn_rng_below(r, (uint32_t)(H - h + 1));
    p->erase_x = (int)nn_rng_below(r, (uint32_t)(W - w + 1));
    return;
  }
}

void nn_augment_draw(const nn_augment_cfg *cfg, uint64_t seed, uint32_t epoch, int64_t sample,
                     int H, int W, nn_augment_params *p) {
  nn_rng r;
  memset(p, 0, sizeof *p);
  if (cfg->crop_padding > 0) {
    stream(&r, seed, epoch, sample, NN_AUG_CROP);
    p->crop_pad = cfg->crop_padding;
    p->crop_x = (int)nn_rng_below(&r, (uint32_t)(2 * cfg->crop_padding + 1));
    p->crop_y = (int)nn_rng_below(&r, (uint32_t)(2 * cfg->crop_padding + 1));
  }
  if (cfg->translate > 0) {
    stream(&r, seed, epoch, sample, NN_AUG_TRANSLATE);
    p->tx = symmetric_int(&r, cfg->translate);
    p->ty = symmetric_int(&r, cfg->translate);
  }
  if (cfg->hflip) {
    stream(&r, seed, epoch, sample, NN_AUG_HFLIP);
    p->hflip = (int)(nn_rng_u32(&r) >> 31);
  }
  if (cfg->vflip) {
    stream(&r, seed, epoch, sample, NN_AUG_VFLIP);
    p->vflip = (int)(nn_rng_u32(&r) >> 31);
  }
  if (cfg->rotate > 0) {
    stream(&r, seed, epoch, sample, NN_AUG_ROTATE);
    p->angle = cfg->rotate * (2.0 * nn_rng_uniform(&r) - 1.0);
  }
  if (cfg->noise_std > 0) {
    p->noise_std = cfg->noise_std;
    stream(&p->noise, seed, epoch, sample, NN_AUG_NOISE);
  }
  if (cfg->erase_prob > 0) {
    stream(&r, seed, epoch, sample, NN_AUG_ERASE);
    draw_erase(cfg, &r, H, W, p);
  }
}

void nn_augment_apply(const nn_augment_params *p, float *x, int C, int H, int W,
                      float *scratch) {
  if (p->crop_pad > 0) nn_augment_crop(x, C, H, W, p->crop_pad, p->crop_x, p->crop_y, scratch);
  if (p->tx || p->ty) nn_augment_shift(x, C, H, W, p->tx, p->ty, scratch);
  if (p->hflip) nn_augment_hflip(x, C, H, W);
  if (p->vflip) nn_augment_vflip(x, C, H, W);
  if (p->angle != 0.0) nn_augment_rotate(x, C, H, W, p->angle, scratch);
  if (p->noise_std > 0) {
    nn_rng r = p->noise; /* p stays reusable: applying twice adds the same noise */
    nn_augment_noise(x, (size_t)C * H * W, p->noise_std, &r);
  }
  if (p->erase) nn_augment_erase(x, C, H, W, p->erase_x, p->erase_y, p->erase_w, p->erase_h);
}

/* ---- the loader's augmenter ------------------------------------------------ */

int nn_augmenter_init(nn_augmenter *a, const nn_augment_cfg *cfg, uint64_t seed,
                      const nn_shape *sample, nn_error *err) {
  memset(a, 0, sizeof *a);
  int rc = nn_augment_check(cfg, sample, err);
  if (rc) return rc;
  a->cfg = *cfg;
  a->seed = seed;
  if (sample->ndim == 3) {
    a->C = sample->dim[0];
    a->H = sample->dim[1];
    a->W = sample->dim[2];
  } else { /* noise only (checked above): one row of values */
    a->C = 1;
    a->H = 1;
    a->W = (int)nn_shape_count(sample);
  }
  a->scratch = nn_malloc((size_t)a->C * a->H * a->W * sizeof *a->scratch + 1);
  if (!a->scratch)
    return nn_error_set(err, NN_ENOMEM, "out of memory allocating the augmentation image");
  return 0;
}

void nn_augmenter_free(nn_augmenter *a) {
  if (!a) return;
  free(a->scratch);
  a->scratch = NULL;
}

void nn_augment_batch(nn_augmenter *a, uint32_t epoch, const int64_t *idx, int n, float *x) {
  const size_t feat = (size_t)a->C * a->H * a->W;
  nn_augment_params p;
  for (int i = 0; i < n; i++) {
    nn_augment_draw(&a->cfg, a->seed, epoch, idx[i], a->H, a->W, &p);
    nn_augment_apply(&p, x + (size_t)i * feat, a->C, a->H, a->W, a->scratch);
  }
}
