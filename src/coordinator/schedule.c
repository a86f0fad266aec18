/* schedule.c: learning-rate schedules (see schedule.h). */
#include "coordinator/schedule.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

const nn_key nn_schedule_keys[] = {
  {.name = "type", .type = NN_KEY_ENUM, .offset = offsetof(nn_schedule_cfg, type),
   .size = sizeof(((nn_schedule_cfg *)0)->type), .def = "\"constant\"",
   .choices = "constant|cosine",
   .help = "constant: optimizer.lr at every step; cosine: from optimizer.lr down to "
           "min_lr along half a cosine over all steps of the run (epochs x steps per "
           "epoch), lr = min_lr + (lr - min_lr) * (1 + cos(pi * step / steps)) / 2."},
  {.name = "min_lr", .type = NN_KEY_FLOAT, .offset = offsetof(nn_schedule_cfg, min_lr),
   .size = sizeof(double), .min = 0, .max = INFINITY, .def = "0",
   .help = "cosine: the learning rate at the end of the run."},
  {0},
};

double nn_schedule_lr(const nn_schedule_cfg *c, double base, int64_t step, int64_t total) {
  if (!strcmp(c->type, "cosine") && total > 0) {
    double t = (double)(step < 0 ? 0 : step > total ? total : step) / (double)total;
    return c->min_lr + (base - c->min_lr) * 0.5 * (1.0 + cos(M_PI * t));
  }
  return base;
}
