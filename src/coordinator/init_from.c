/* init_from.c: copy matching tensors from an HDF5 file into a freshly
 * initialized model, and share them with every rank (init_from.h). */
#include "coordinator/init_from.h"

#include <hdf5.h>
#include <stdint.h>
#include <string.h>

#include "worker/agree.h"
#include "worker/collective.h"
#include "worker/h5io.h"

#define INIT__PATH_MAX 512

/* Append "text" to list dst[n] separated by ", ", ending in "..." when full. */
static void list_add(char *dst, size_t n, const char *text) {
  size_t len = strlen(dst);
  if (len + 4 >= n) return;
  if (len && strcmp(dst + len - 3, "...") == 0) return;
  int w = snprintf(dst + len, n - len, "%s%s", len ? ", " : "", text);
  if (w < 0 || (size_t)w >= n - len) snprintf(dst + (len < n - 4 ? len : n - 4), 4, "...");
}

/* 1 if every component of `path` ("/a/b/c") exists in f, 0 if one does
 * not, -1 when HDF5 cannot tell. Component by component: HDF5 1.10's
 * H5Lexists fails, rather than answering 0, when a parent group is missing
 * (h5io has no such test: its dataset and group helpers treat any absence
 * as an error, but here a missing tensor is allowed). */
static int has_link(const nn_h5_file *f, const char *path) {
  char buf[INIT__PATH_MAX];
  size_t n = strlen(path);
  if (n >= sizeof buf) return -1;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    htri_t ex = H5Lexists(f->id, buf, H5P_DEFAULT);
    buf[i] = c;
    if (ex <= 0) return ex < 0 ? -1 : 0;
  }
  return 1;
}

/* Read dataset `path` of f into dst: float32 of exactly `shape`, else
 * NN_ECKPT naming file and dataset (err->where) and both shapes (h5io). */
static int read_tensor(const nn_h5_file *f, const char *path, const nn_shape *shape, float *dst,
                       nn_error *err) {
  hsize_t dims[NN_MAX_DIMS];
  for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dim[i];
  const nn_h5_want want = {H5T_FLOAT, 4, "float32 (convert with numpy .astype('float32'))",
                           shape->ndim, dims,
                           "the model: a layer of the same name must have the same shape; "
                           "rename the layer to start it fresh"};
  return nn_h5_dset_read(f, path, &want, H5T_NATIVE_FLOAT, dst, err);
}

/* Copy every tensor of m found under `root` ("" or "/replicas/R") of f and
 * fill rep. */
static int copy_tensors(const nn_h5_file *f, const char *root, nn_model *m, nn_init_report *rep,
                        nn_error *err) {
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    int have = 0, total = 0;
    char missing[256] = "";
    for (int k = 0; k < m->ntensors; k++) {
      const nn_tensor_ref *t = &m->tensors[k];
      if (strcmp(t->layer, l->cfg.name)) continue;
      total++;
      char path[INIT__PATH_MAX];
      int w = snprintf(path, sizeof path, "%s/%s/%s/%s", root,
                       t->is_buffer ? "buffers" : "params", t->layer, t->name);
      if (w < 0 || (size_t)w >= sizeof path)
        return nn_error_at(err, NN_ECKPT, f->path, 0, 0, "%s/%s/%s...: path too long", root,
                           t->is_buffer ? "buffers" : "params", t->layer);
      int ex = has_link(f, path);
      if (ex < 0) return nn_h5_fail(err, NN_ECKPT, f->path, path, "cannot look it up");
      if (!ex) {
        list_add(missing, sizeof missing, t->name);
        continue;
      }
      float *dst = (t->is_buffer ? m->buffers : m->params) + t->offset;
      int rc = read_tensor(f, path, &t->shape, dst, err);
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

/* The group of f the tensors are under into root[n]: "" for the checkpoint
 * layout /params/..., "/replicas/R" when f has replica groups. */
static int find_root(const nn_h5_file *f, const char *replica, char *root, size_t n,
                     nn_error *err) {
  root[0] = '\0';
  int grouped = has_link(f, "/replicas");
  if (grouped < 0) return nn_h5_fail(err, NN_ECKPT, f->path, "/replicas", "cannot look it up");
  if (grouped) {
    snprintf(root, n, "/replicas/%s", replica && replica[0] ? replica : "model");
    if (has_link(f, root) <= 0)
      return nn_error_at(err, NN_ECKPT, f->path, 0, 0,
                         "no replica group %s (set [init] replica to one of the groups "
                         "under /replicas)", root);
  } else if (has_link(f, "/params") <= 0) {
    return nn_error_at(err, NN_ECKPT, f->path, 0, 0,
                       "no /params group: expected the checkpoint layout "
                       "/params/<layer>/<name> (docs/finetuning.md)");
  }
  return 0;
}

int nn_init_read(const char *path, const char *replica, nn_model *m, nn_init_report *rep,
                 nn_error *err) {
  nn_init_report local;
  if (!rep) rep = &local;
  memset(rep, 0, sizeof *rep);
  nn_h5_file f = {-1, path, NN_ECKPT, NULL};
  int rc = nn_h5_open_read(path, "an HDF5 file in the checkpoint layout /params/<layer>/<name>",
                           NULL, &f.id, err);
  if (rc) { /* missing, unreadable, not HDF5: all a bad [init] file (NN_ECKPT, exit 5) */
    if (err) {
      err->code = NN_ECKPT;
      nn_error_prefix(err, "cannot open the [init] file");
    }
    return NN_ECKPT;
  }
  char root[INIT__PATH_MAX];
  rc = find_root(&f, replica, root, sizeof root, err);
  if (!rc) rc = copy_tensors(&f, root, m, rep, err);
  if (!rc && rep->ntensors == 0)
    rc = nn_error_at(err, NN_ECKPT, path, 0, 0,
                     "no tensor of the file matches a layer of the model (layer and "
                     "tensor names must be equal: /params/<layer>/<name>)");
  H5Fclose(f.id);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int nn_init_from(const nn_job *job, nn_model *m, MPI_Comm comm, FILE *out, nn_error *err) {
  if (!job->init.from[0]) return 0;
  int rank = 0, rc = 0;
  NN_MPI_RETURN(err, MPI_Comm_rank(comm, &rank));
  nn_init_report rep;
  memset(&rep, 0, sizeof rep);
  if (rank == 0) rc = nn_init_read(job->init.from, job->init.replica, m, &rep, err);
  if ((rc = nn_agree(comm, rc, err))) return rc;
  if ((rc = nn_bcast_floats(comm, m->params, m->nparams, 0, err)) ||
      (rc = nn_bcast_floats(comm, m->buffers, m->nbuffers, 0, err))) {
    nn_error_prefix(err, "[init] %s", job->init.from);
    return rc;
  }
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
