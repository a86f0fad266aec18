/* augment.h: per-sample data augmentation on the worker.
 *
 * Every random choice for sample i in epoch e is drawn from the counter-based
 * generator keyed by (seed, NN_RNG_AUGMENT, e, i, transform id), where i is
 * the sample's global index in the data set: the same sample gets the same
 * transform on any number of ranks, in any batch position, and in a resumed
 * run; each transform has its own stream, so switching one transform on or
 * off never changes what the others draw.
 * Augmentation applies to training batches only, never to validation or
 * test data. Samples are [C, H, W] (3-d) images; transforms that need a
 * spatial layout are refused at start for other shapes. The loader applies
 * augmentation AFTER normalization, so the fill value 0 of the geometric
 * transforms and of erasing means "the channel mean" (docs/augmentation.md).
 *
 * Two layers: nn_augment_draw picks one sample's parameters
 * (nn_augment_params) and nn_augment_apply applies them; each transform is
 * also a plain function with explicit parameters (nn_augment_shift, ...), so
 * its exact effect can be tested without the random draw. */
#ifndef NN_WORKER_AUGMENT_H
#define NN_WORKER_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"
#include "core/layer.h"
#include "core/rng.h"

typedef struct nn_augment_cfg {
  int translate;          /* shift by up to this many pixels in x and y (0: off) */
  int crop_padding;       /* zero-pad by this many pixels, then crop a random window of
                             the original size (0: off) */
  int hflip;              /* flip left-right with probability 1/2 */
  int vflip;              /* flip top-bottom with probability 1/2 */
  double rotate;          /* rotate by up to this many degrees either way (0: off) */
  double noise_std;       /* add Gaussian noise with this standard deviation (0: off) */
  double erase_prob;      /* random erasing: probability per sample (0: off) */
  double erase_max_area;  /* largest erased fraction of the image */
} nn_augment_cfg;

/* Key table of the [augment] section (offsets into nn_augment_cfg). */
extern const nn_key nn_augment_keys[];

/* 1 if cfg asks for any transform. */
int nn_augment_enabled(const nn_augment_cfg *cfg);

/* Check cfg against the sample shape (NN_EINVAL naming the key). */
int nn_augment_check(const nn_augment_cfg *cfg, const nn_shape *sample, nn_error *err);

/* ---- random erasing bounds (Zhong et al., "Random Erasing Data Augmentation",
 * and torchvision.transforms.RandomErasing) ---- */
#define NN_AUGMENT_ERASE_MIN_AREA 0.02 /* smallest erased fraction */
#define NN_AUGMENT_ERASE_MIN_RATIO 0.3 /* aspect ratio h/w range, drawn log-uniform */
#define NN_AUGMENT_ERASE_MAX_RATIO 3.3
#define NN_AUGMENT_ERASE_TRIES 10      /* rectangles tried before giving up */

/* Transform ids: the last coordinate of each transform's random stream.
 * Part of the on-disk reproducibility contract: never renumber. */
enum nn_augment_transform {
  NN_AUG_TRANSLATE = 1,
  NN_AUG_CROP = 2,
  NN_AUG_HFLIP = 3,
  NN_AUG_VFLIP = 4,
  NN_AUG_ROTATE = 5,
  NN_AUG_NOISE = 6,
  NN_AUG_ERASE = 7,
};

/* The transform drawn for one sample. Applied in this order: crop, translate,
 * hflip, vflip, rotate, noise, erase (erasing last, so the rectangle is
 * exactly 0). A field at its zero value means "not applied". */
typedef struct nn_augment_params {
  int crop_pad;              /* p of the crop (0: no crop) */
  int crop_x, crop_y;        /* window's top-left corner in the padded image, [0, 2p] */
  int tx, ty;                /* translation: pixels to the right (+x) and down (+y) */
  int hflip, vflip;          /* 1: flip */
  double angle;              /* degrees, counter-clockwise as displayed (row 0 on top) */
  double noise_std;          /* 0: no noise */
  nn_rng noise;              /* stream the noise values come from */
  int erase;                 /* 1: zero the rectangle below */
  int erase_x, erase_y;      /* its top-left corner (column, row) */
  int erase_w, erase_h;      /* its width and height, >= 1 */
} nn_augment_params;

/* Draw the parameters for global sample `sample` in `epoch` for an image of
 * H x W from the streams (seed, NN_RNG_AUGMENT, epoch, sample, transform id).
 * A pure function of its arguments. */
void nn_augment_draw(const nn_augment_cfg *cfg, uint64_t seed, uint32_t epoch, int64_t sample,
                     int H, int W, nn_augment_params *p);

/* Apply p to one sample x [C, H, W] in place; every channel gets the same
 * geometric transform. scratch: [C*H*W] floats, caller-owned, overwritten. */
void nn_augment_apply(const nn_augment_params *p, float *x, int C, int H, int W,
                      float *scratch);

/* ---- the transforms with explicit parameters; x is [C, H, W], in place;
 * scratch is [C*H*W] floats, caller-owned, contents undefined after. ---- */

/* out[c][y][x] = in[c][y - dy][x - dx], 0 where that is outside the image:
 * the content moves dx pixels right and dy pixels down. */
void nn_augment_shift(float *x, int C, int H, int W, int dx, int dy, float *scratch);
/* Zero-pad by `pad` on every side, keep the H x W window whose top-left
 * corner is (cx, cy) in the padded image (0 <= cx, cy <= 2*pad). Equal to
 * nn_augment_shift by (pad - cx, pad - cy). */
void nn_augment_crop(float *x, int C, int H, int W, int pad, int cx, int cy, float *scratch);
/* Mirror left-right (column j <-> W-1-j), or top-bottom (row i <-> H-1-i). */
void nn_augment_hflip(float *x, int C, int H, int W);
void nn_augment_vflip(float *x, int C, int H, int W);
/* Rotate by `degrees` counter-clockwise (as displayed, row 0 on top) about
 * the image centre ((W-1)/2, (H-1)/2), bilinear, 0 outside the image.
 * Multiples of 90 degrees on a square image are exact (cos and sin are
 * snapped to 0 and +-1 within 1e-12). */
void nn_augment_rotate(float *x, int C, int H, int W, double degrees, float *scratch);
/* Set rows [y0, y0+h) x columns [x0, x0+w) of every channel to 0 (clipped). */
void nn_augment_erase(float *x, int C, int H, int W, int x0, int y0, int w, int h);
/* x[i] += std * N(0, 1) for i < n, the normals taken from r in order. */
void nn_augment_noise(float *x, size_t n, double std, nn_rng *r);

/* ---- what the loader uses ---- */

/* Augmentation state of one loader: the config, the sample layout and one
 * scratch image, allocated once (nothing is allocated per batch). */
typedef struct nn_augmenter {
  nn_augment_cfg cfg;
  uint64_t seed;
  int C, H, W;        /* sample layout; a non-image sample (noise only) is [1, 1, count] */
  float *scratch;     /* [C*H*W], owned */
} nn_augmenter;

/* Check cfg against the sample shape and allocate the scratch image. */
int nn_augmenter_init(nn_augmenter *a, const nn_augment_cfg *cfg, uint64_t seed,
                      const nn_shape *sample, nn_error *err);
void nn_augmenter_free(nn_augmenter *a);
/* Augment n samples x [n, C*H*W] in place; idx [n] are their global indices. */
void nn_augment_batch(nn_augmenter *a, uint32_t epoch, const int64_t *idx, int n, float *x);

#endif
