/* Window geometry shared by the 2-d layers (conv2d, pooling): how a config
 * list of one or two integers becomes a (height, width) pair, and the padding
 * that "same" implies for one axis. */
#ifndef NN_LAYERS_WINDOW_H
#define NN_LAYERS_WINDOW_H

/* A 1- or 2-item list into (a, b): one item applies to both axes.
 * Returns -1 for any other count. */
static inline int nn_window_pair(const int *v, int count, int *a, int *b) {
  if (count == 1) {
    *a = *b = v[0];
    return 0;
  }
  if (count == 2) {
    *a = v[0];
    *b = v[1];
    return 0;
  }
  return -1;
}

/* Padding of one axis for "same": the output has ceil(in / stride) positions
 * for a window that spans ek inputs; the side before gets the smaller half
 * (TensorFlow's and PyTorch's convention). */
static inline void nn_window_same_pad(int in, int stride, int ek, int *lo, int *hi) {
  long out = ((long)in + stride - 1) / stride;
  long total = (out - 1) * stride + ek - in;
  if (total < 0) total = 0;
  *lo = (int)(total / 2);
  *hi = (int)(total - total / 2);
}

#endif
