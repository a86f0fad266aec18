/* augment.h: per-sample data augmentation on the worker.
 *
 * Every random choice for sample i in epoch e is drawn from the counter-based
 * generator keyed by (seed, NN_RNG_AUGMENT, e, i), where i is the sample's
 * global index in the data set: the same sample gets the same transform on
 * any number of ranks, in any batch position, and in a resumed run.
 * Augmentation applies to training batches only, never to validation or
 * test data. Samples are [C, H, W] (3-d) images; transforms that need a
 * spatial layout are refused at start for other shapes. */
#ifndef NN_WORKER_AUGMENT_H
#define NN_WORKER_AUGMENT_H

#include <stdint.h>

#include "core/err.h"
#include "core/keys.h"
#include "core/layer.h"

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

#endif
