/* modelgraph.h: a run's model as a Graphviz graph (cgraph + gvc, in-process),
 * for `nntrain graph` and the run report: one node per layer (name, type,
 * output shape, parameter count) plus one for the model's input, an edge for
 * every input a layer reads (branches, merges, a residual block's add), one
 * cluster per replica when several are built (a GAN's generator and
 * discriminator). docs/report.md. */
#ifndef NN_COORDINATOR_MODELGRAPH_H
#define NN_COORDINATOR_MODELGRAPH_H

#include <stddef.h>

#include "coordinator/run/replica.h"
#include "core/err.h"

/* Write the graph of reps[0, nrep) (those with a model) titled `title` to
 * `path` as `format`: "dot" (cgraph's text, no layout), "svg" or "png"
 * (laid out with dot, rendered by gvc). A failed write leaves no file.
 * NN_EIO naming path; NN_ENOMEM; NN_EINTERNAL when Graphviz fails. */
int nn_modelgraph_write(const char *title, const nn_replica *reps, int nrep, const char *format,
                        const char *path, nn_error *err);

/* The same graph rendered as SVG text in memory: *svg (NUL-terminated,
 * malloc'd: free()) of *len bytes. */
int nn_modelgraph_svg(const char *title, const nn_replica *reps, int nrep, char **svg,
                      size_t *len, nn_error *err);

#endif
