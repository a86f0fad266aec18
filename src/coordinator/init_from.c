/* init_from.c: copy matching tensors from an HDF5 file into a freshly
 * initialized model, and share them with every rank (init_from.h). */
#include "coordinator/init_from.h"

#include <hdf5.h>
#include <stdint.h>
#include <string.h>

#include "worker/agree.h"

#define INIT__PATH_MAX 512

/* 1 if every component of `path` ("/a/b/c") exists in f, 0 if one does
 * not, -1 when HDF5 cannot tell. H5Lexists needs each parent to exist. */
static int path_exists(hid_t f, const char *path) {
  char buf[INIT__PATH_MAX];
  size_t n = strlen(path);
  if (n >= sizeof buf) return -1;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    htri_t ex = H5Lexists(f, buf, H5P_DEFAULT);
    buf[i] = c;
    if (ex < 0) return -1;
    if (ex == 0) return 0;
  }
  return 1;
}

/* Append "text" to list dst[n] separated by ", ", ending in "..." when full. */
static void list_add(char *dst, size_t n, const char *text) {
  size_t len = strlen(dst);
  if (len + 4 >= n) return;
  if (len && strcmp(dst + len - 3, "...") == 0) return;
  int w = snprintf(dst + len, n - len, "%s%s", len ? ", " : "", text);
  if (w < 0 || (size_t)w >= n - len) snprintf(dst + (len < n - 4 ? len : n - 4), 4, "...");
}

/* "[2, 3]" of an HDF5 extent. */
static void dims_str(const hsize_t *d, int nd, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = '\0';
  k += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < nd && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Read dataset `path` of f into dst, checking it is float32 of shape *want.
 * 0, or NN_ECKPT naming file and dataset. */
static int read_tensor(hid_t f, const char *file, const char *path, const nn_shape *want,
                       float *dst, nn_error *err) {
  char ws[64], fs[96];
  int rc = 0;
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT), t = -1, s = -1;
  if (d < 0) {
    rc = nn_error_at(err, NN_ECKPT, file, 0, 0, "%s is not a dataset", path);
    goto done;
  }
  t = H5Dget_type(d);
  s = H5Dget_space(d);
  if (t < 0 || s < 0) {
    rc = nn_error_at(err, NN_ECKPT, file, 0, 0, "%s: cannot read its type and shape", path);
    goto done;
  }
  if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) {
    rc = nn_error_at(err, NN_ECKPT, file, 0, 0,
                     "%s: expected float32 data, found %s of %zu bytes (convert with "
                     "numpy .astype('float32'))", path,
                     H5Tget_class(t) == H5T_FLOAT ? "floats" : H5Tget_class(t) == H5T_INTEGER
                                                                   ? "integers" : "another type",
                     H5Tget_size(t));
    goto done;
  }
  hsize_t dims[H5S_MAX_RANK];
  int nd = H5Sget_simple_extent_ndims(s);
  if (nd < 0 || nd > H5S_MAX_RANK || H5Sget_simple_extent_dims(s, dims, NULL) < 0) {
    rc = nn_error_at(err, NN_ECKPT, file, 0, 0, "%s: cannot read its shape", path);
    goto done;
  }
  int same = nd == want->ndim;
  for (int i = 0; same && i < nd; i++) same = dims[i] == (hsize_t)want->dim[i];
  if (!same) {
    dims_str(dims, nd, fs, sizeof fs);
    rc = nn_error_at(err, NN_ECKPT, file, 0, 0,
                     "%s has shape %s in the file but %s in the model (a layer of the same "
                     "name must have the same shape; rename the layer to start it fresh)", path,
                     fs, nn_shape_str(want, ws, sizeof ws));
    goto done;
  }
  if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = nn_error_at(err, NN_ECKPT, file, 0, 0, "%s: cannot read the data (file truncated or "
                     "damaged)", path);
done:
  if (rc) snprintf(err->where, sizeof err->where, "%s", path);
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  if (d >= 0) H5Dclose(d);
  return rc;
}

/* Copy every tensor of m found under `root` ("" or "/replicas/R") of f and
 * fill rep. */
static int copy_tensors(hid_t f, const char *file, const char *root, nn_model *m,
                        nn_init_report *rep, nn_error *err) {
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    int have = 0, total = 0;
    char missing[256] = "";
    for (int k = 0; k < m->ntensors; k++) {
      const nn_tensor_ref *t = &m->tensors[k];
      if (strcmp(t->layer, l->cfg.name)) continue;
      total++;
      char path[INIT__PATH_MAX];
      snprintf(path, sizeof path, "%s/%s/%s/%s", root, t->is_buffer ? "buffers" : "params",
               t->layer, t->name);
      int ex = path_exists(f, path);
      if (ex < 0) return nn_error_at(err, NN_ECKPT, file, 0, 0, "%s: cannot look it up", path);
      if (!ex) {
        list_add(missing, sizeof missing, t->name);
        continue;
      }
      float *dst = (t->is_buffer ? m->buffers : m->params) + t->offset;
      int rc = read_tensor(f, file, path, &t->shape, dst, err);
      if (rc) return rc;
      have++;
      rep->ntensors++;
    }
    if (!total) continue;
    if (!have) {
      rep->nnew++;
      list_add(rep->fresh, sizeof rep->fresh, l->cfg.name);
      continue;
    }
    rep->nlayers++;
    list_add(rep->copied, sizeof rep->copied, l->cfg.name);
    if (have < total) {
      char item[NN_NAME_MAX + 260];
      snprintf(item, sizeof item, "%s (%s)", l->cfg.name, missing);
      list_add(rep->partial, sizeof rep->partial, item);
    }
  }
  return 0;
}

int nn_init_read(const char *path, const char *replica, nn_model *m, nn_init_report *rep,
                 nn_error *err) {
  nn_init_report local;
  if (!rep) rep = &local;
  memset(rep, 0, sizeof *rep);
  int rc = 0;
  hid_t f = -1;
  H5E_BEGIN_TRY {
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
      FILE *probe = fopen(path, "rb");
      rc = nn_error_at(err, NN_ECKPT, path, 0, 0, "%s", probe ? "not an HDF5 file"
                                                              : "cannot open the [init] file");
      if (probe) fclose(probe);
    } else if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
      rc = nn_error_at(err, NN_ECKPT, path, 0, 0, "cannot open the HDF5 file");
    }
    char root[INIT__PATH_MAX] = "";
    if (!rc) {
      int grouped = path_exists(f, "/replicas");
      if (grouped > 0) {
        snprintf(root, sizeof root, "/replicas/%s", replica && replica[0] ? replica : "model");
        if (path_exists(f, root) <= 0)
          rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                           "no replica group %s (set [init] replica to one of the groups "
                           "under /replicas)", root);
      } else if (path_exists(f, "/params") <= 0) {
        rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                         "no /params group: expected the checkpoint layout "
                         "/params/<layer>/<name> (docs/finetuning.md)");
      }
    }
    if (!rc) rc = copy_tensors(f, path, root, m, rep, err);
    if (!rc && rep->ntensors == 0)
      rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                       "no tensor of the file matches a layer of the model (layer and "
                       "tensor names must be equal: /params/<layer>/<name>)");
    if (f >= 0) H5Fclose(f);
  }
  H5E_END_TRY;
  return rc;
}

/* Broadcast a[0, n) from rank 0 in pieces that fit an int count. */
static int bcast_floats(float *a, size_t n, MPI_Comm comm, const char *what, nn_error *err) {
  const size_t chunk = (size_t)1 << 28;
  for (size_t o = 0; o < n; o += chunk) {
    size_t c = n - o < chunk ? n - o : chunk;
    int mrc = MPI_Bcast(a + o, (int)c, MPI_FLOAT, 0, comm);
    if (mrc != MPI_SUCCESS) {
      int rank = -1;
      MPI_Comm_rank(comm, &rank);
      nn_error_set(err, NN_EMPI, "[init]: MPI_Bcast of the %s failed (MPI error %d)", what, mrc);
      err->rank = rank;
      return NN_EMPI;
    }
  }
  return 0;
}

int nn_init_from(const nn_job *job, nn_model *m, MPI_Comm comm, FILE *out, nn_error *err) {
  if (!job->init.from[0]) return 0;
  int rank = 0, rc = 0;
  if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS)
    return nn_error_set(err, NN_EMPI, "[init]: MPI_Comm_rank failed");
  nn_init_report rep;
  memset(&rep, 0, sizeof rep);
  if (rank == 0) rc = nn_init_read(job->init.from, job->init.replica, m, &rep, err);
  if ((rc = nn_agree(comm, rc, err))) return rc;
  if ((rc = bcast_floats(m->params, m->nparams, comm, "parameters", err))) return rc;
  if ((rc = bcast_floats(m->buffers, m->nbuffers, comm, "buffers", err))) return rc;
  if (rank == 0 && out) {
    fprintf(out, "nntrain: [init] from %s: %d tensors of %d layers copied (%s); new: %s\n",
            job->init.from, rep.ntensors, rep.nlayers, rep.copied,
            rep.nnew ? rep.fresh : "none");
    if (rep.partial[0])
      fprintf(out, "nntrain: [init] tensors not in the file keep their initialization: %s\n",
              rep.partial);
  }
  return 0;
}
