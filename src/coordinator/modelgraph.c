/* modelgraph.c: a model as a Graphviz graph (modelgraph.h). */
#include "coordinator/modelgraph.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include "core/mem.h"
#include "core/model.h"

/* cgraph takes char * for names and values it copies. */
static void set_attr(void *obj, const char *name, const char *value) {
  agsafeset(obj, (char *)name, (char *)value, (char *)"");
}

/* The node id of layer i (-1: the input) of replica `rep` (prefixed by the
 * replica's name when there are several, so ids are unique). */
static void node_id(char *buf, size_t n, const nn_replica *r, int multi, int i) {
  const char *name = i < 0 ? "input" : r->model.layers[i].cfg.name;
  if (multi) snprintf(buf, n, "%s/%s", r->name, name);
  else snprintf(buf, n, "%s", name);
}

static int add_replica(Agraph_t *g, const nn_replica *r, int multi, nn_error *err) {
  const nn_model *m = &r->model;
  Agraph_t *sg = g;
  char id[8192], label[16384], sh[64];
  if (multi) {
    char cname[8192];
    snprintf(cname, sizeof cname, "cluster_%s", r->name);
    if (!(sg = agsubg(g, cname, 1))) return nn_error_set(err, NN_ENOMEM, "out of memory");
    set_attr(sg, "label", r->name);
    set_attr(sg, "style", "rounded");
  }
  node_id(id, sizeof id, r, multi, -1);
  Agnode_t *in = agnode(sg, id, 1);
  if (!in) return nn_error_set(err, NN_ENOMEM, "out of memory");
  snprintf(label, sizeof label, "input\\n%s", nn_shape_str(&m->in, sh, sizeof sh));
  set_attr(in, "label", label);
  set_attr(in, "shape", "ellipse");
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    node_id(id, sizeof id, r, multi, i);
    Agnode_t *v = agnode(sg, id, 1);
    if (!v) return nn_error_set(err, NN_ENOMEM, "out of memory");
    snprintf(label, sizeof label, "%s\\n%s\\n%s\\n%zu params%s", l->cfg.name, l->ops->type,
             nn_shape_str(&l->out, sh, sizeof sh), l->param_count,
             l->frozen && l->param_count ? " (frozen)" : "");
    set_attr(v, "label", label);
    set_attr(v, "layer", l->ops->type);
    for (int k = 0; k < l->nin; k++) {
      node_id(id, sizeof id, r, multi, l->src[k]);
      Agnode_t *u = agnode(sg, id, 0);
      if (!u) return nn_error_set(err, NN_EINTERNAL, "layer %s reads an unknown node %s",
                                  l->cfg.name, id);
      Agedge_t *e = agedge(sg, u, v, NULL, 1);
      if (!e) return nn_error_set(err, NN_ENOMEM, "out of memory");
      /* the same producer read twice (add(x, x)) stays two edges */
      if (l->nin > 1) {
        char port[16];
        snprintf(port, sizeof port, "%d", k);
        set_attr(e, "input", port);
      }
    }
  }
  return 0;
}

/* The graph of reps[0, nrep): NULL on out of memory or a bad edge (err set). */
static Agraph_t *build_graph(const char *title, const nn_replica *reps, int nrep, nn_error *err) {
  int nbuilt = 0;
  for (int i = 0; i < nrep; i++) nbuilt += reps[i].have_model;
  Agraph_t *g = agopen((char *)"model", Agdirected, NULL);
  if (!g) {
    nn_error_set(err, NN_ENOMEM, "out of memory");
    return NULL;
  }
  set_attr(g, "label", title);
  set_attr(g, "rankdir", "TB");
  agattr(g, AGNODE, (char *)"shape", (char *)"box");
  agattr(g, AGNODE, (char *)"fontname", (char *)"Helvetica");
  agattr(g, AGNODE, (char *)"fontsize", (char *)"10");
  int rc = 0;
  for (int i = 0; i < nrep && !rc; i++)
    if (reps[i].have_model) rc = add_replica(g, &reps[i], nbuilt > 1, err);
  if (rc) {
    agclose(g);
    return NULL;
  }
  return g;
}

/* One Graphviz context for the process, made on first use and kept: a second
 * context after gvFreeContext reads text-layout state the first one freed
 * (AddressSanitizer: heap-use-after-free in the pango plugin's text sizing,
 * Debian's graphviz 2.42), and a run draws its graph every epoch. Rank 0's
 * main thread alone draws. */
static GVC_t *context(void) {
  static GVC_t *gvc;
  if (!gvc) gvc = gvContext();
  return gvc;
}

/* Lay g out and render it as `format`, to path or (path NULL) to memory. */
static int render(Agraph_t *g, const char *format, const char *path, char **mem, size_t *len,
                  nn_error *err) {
  const char *what = path ? path : "the model graph";
  GVC_t *gvc = context();
  if (!gvc) return nn_error_set(err, NN_ENOMEM, "out of memory (graphviz context)");
  int rc = 0;
  if (gvLayout(gvc, g, "dot") != 0) {
    rc = nn_error_at(err, NN_EINTERNAL, what, 0, 0, "graphviz could not lay out the graph");
  } else {
    if (path) {
      if (gvRenderFilename(gvc, g, format, path) != 0)
        rc = nn_error_at(err, NN_EIO, path, 0, 0, "graphviz could not render %s (is its "
                         "%s plugin installed?)", format, format);
    } else {
      char *data = NULL;
      unsigned int n = 0;
      if (gvRenderData(gvc, g, format, &data, &n) != 0 || !data) {
        rc = nn_error_at(err, NN_EINTERNAL, what, 0, 0, "graphviz could not render %s", format);
      } else if (!(*mem = nn_malloc((size_t)n + 1))) {
        rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      } else {
        memcpy(*mem, data, n);
        (*mem)[n] = '\0';
        *len = n;
      }
      if (data) gvFreeRenderData(data);
    }
    gvFreeLayout(gvc, g);
  }
  return rc;
}

int nn_modelgraph_write(const char *title, const nn_replica *reps, int nrep, const char *format,
                        const char *path, nn_error *err) {
  Agraph_t *g = build_graph(title, reps, nrep, err);
  if (!g) return err->code;
  int rc = 0;
  if (!strcmp(format, "dot")) {
    FILE *f = fopen(path, "w");
    if (!f) {
      rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot write: %s", strerror(errno));
    } else {
      int bad = agwrite(g, f) != 0;
      if (fclose(f) != 0 || bad) {
        rc = nn_error_at(err, NN_EIO, path, 0, 0, "write failed");
        remove(path);
      }
    }
  } else {
    FILE *probe = fopen(path, "wb"); /* gvc reports a bad path only on stderr */
    if (!probe) {
      rc = nn_error_at(err, NN_EIO, path, 0, 0, "cannot write: %s", strerror(errno));
    } else {
      fclose(probe);
      rc = render(g, format, path, NULL, NULL, err);
      if (rc) remove(path); /* no half-written picture */
    }
  }
  agclose(g);
  return rc;
}

int nn_modelgraph_svg(const char *title, const nn_replica *reps, int nrep, char **svg,
                      size_t *len, nn_error *err) {
  *svg = NULL;
  *len = 0;
  Agraph_t *g = build_graph(title, reps, nrep, err);
  if (!g) return err->code;
  int rc = render(g, "svg", NULL, svg, len, err);
  agclose(g);
  return rc;
}
