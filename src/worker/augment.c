/* augment.c: per-sample data augmentation (see augment.h). */
#include "worker/augment.h"

#include <math.h>
#include <stddef.h>

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
  int spatial = c->translate > 0 || c->crop_padding > 0 || c->hflip || c->vflip ||
                c->rotate > 0 || c->erase_prob > 0;
  if (spatial && sample->ndim != 3) {
    char s[64];
    return nn_error_set(err, NN_EINVAL,
                        "[augment]: spatial transforms need image samples [C, H, W]; the data's "
                        "samples are %s", nn_shape_str(sample, s, sizeof s));
  }
  return 0;
}
