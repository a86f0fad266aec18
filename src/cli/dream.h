/* dream.h: what `nntrain dream` and `nntrain saliency` share (docs/pictures.md):
 * a checkpoint's evaluated model built for one image at a time, unfused and
 * NCHW (so every layer's output is its own tensor, core/model.h
 * nn_model_backward_from), with the data's normalization and value range.
 * Both commands run in one process: under mpirun with more than one rank
 * they refuse (nn_pic_one_process). */
#ifndef NN_CLI_DREAM_H
#define NN_CLI_DREAM_H

#include "coordinator/job.h"
#include "coordinator/run/task.h"
#include "worker/dataset.h"

typedef struct nn_pic_model {
  nn_job *job;
  nn_replica reps[NN_TASK_MAX_REPLICAS];
  nn_replica *ev;          /* the replica the checkpoint's task evaluates */
  nn_model *m;             /* &ev->model */
  nn_dataset *ds;          /* the data the model was built for */
  const char *data;        /* its glob (--data, or the job's data.train) */
  int C, H, W;             /* the model's input [C, H, W], C = 1 or 3 */
  size_t feat;             /* C * H * W */
  float raw_lo, raw_hi;    /* the data's value range, as stored (times feature_scale) */
  float *mean, *inv;       /* [feat] per element: model input = (raw - mean) * inv
                              (mean 0, inv 1 without data.normalize) */
  float *lo, *hi;          /* [feat] the range in model input space */
} nn_pic_model;

/* 0 when this is one process; else prints (on MPI rank 0 only) one line saying
 * `cmd` runs on one process and returns NN_EXIT_USAGE. Reads the launcher's
 * environment (Open MPI, MPICH/PMI, Slurm): no MPI start-up. */
int nn_pic_one_process(const char *cmd);

/* Read checkpoint `ckpt`, open `data` (NULL: the job's data.train), build the
 * task's evaluated replica for one sample at a time with the checkpoint's
 * values, unfused and NCHW. A model whose input is not an image [C, H, W]
 * with C = 1 or 3 is refused (NN_ECKPT naming ckpt). */
int nn_pic_load(nn_pic_model *P, const char *ckpt, const char *data, nn_error *err);
void nn_pic_free(nn_pic_model *P);

/* Sample `index` of the data into x [feat], normalized as the model saw it in
 * training; its label (-1 without class labels) into *label (may be NULL). */
int nn_pic_sample(nn_pic_model *P, int64_t index, float *x, int32_t *label, nn_error *err);

/* Undo the normalization of x [feat] into raw [feat] (the stored values). */
void nn_pic_raw(const nn_pic_model *P, const float *x, float *raw);

/* "conv2d0, conv2d0_relu, ..." (the model's layer names) into buf. */
void nn_pic_layer_names(const nn_model *m, char *buf, size_t n);

#endif
