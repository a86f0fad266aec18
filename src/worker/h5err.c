/* h5err.c: HDF5 failures as nn_error values (see h5err.h). */
#include "worker/h5err.h"

#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct h5_msg {
  char text[200];
} h5_msg;

/* Keep the innermost (first) description of HDF5's error stack. */
static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_msg *m = data;
  if (n == 0 && e->desc && e->desc[0]) snprintf(m->text, sizeof m->text, "%s", e->desc);
  return 0;
}

int nn_h5_fail(nn_error *err, int code, const char *file, const char *what, const char *fmt,
               ...) {
  h5_msg m = {{0}};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &m);
  H5Eclear2(H5E_DEFAULT);
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (m.text[0])
    nn_error_at(err, code, file, 0, 0, "%s%s%s (HDF5: %s)", what ? what : "", what ? ": " : "",
                msg, m.text);
  else
    nn_error_at(err, code, file, 0, 0, "%s%s%s", what ? what : "", what ? ": " : "", msg);
  if (err && what) snprintf(err->where, sizeof err->where, "%s", what);
  return code;
}
