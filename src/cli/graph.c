/* graph.c: print a built model as a graph (graph.h): the rows `nntrain check`
 * shows. core/ does no I/O, so the printer lives here. Layers are printed in
 * the order they run; a layer's inputs are printed by name, so branches and
 * merges (concat, add, the add of a residual block) can be read off the last
 * column. */
#include "cli/graph.h"

#include <string.h>

void nn_cli_print_graph(FILE *f, const nn_model *m) {
  char sh[64];
  fprintf(f, "input  %s\n\n", nn_shape_str(&m->in, sh, sizeof sh));
  fprintf(f, "%5s  %-28s %-16s %-16s %10s  %s\n", "layer", "name", "type", "output", "params",
          "inputs");
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *l = &m->layers[i];
    char ins[NN_MAX_INPUTS * (NN_NAME_MAX + 2)];
    size_t w = 0;
    ins[0] = '\0';
    for (int k = 0; k < l->nin && w < sizeof ins; k++) {
      int n = snprintf(ins + w, sizeof ins - w, "%s%s", k ? ", " : "", l->cfg.inputs[k]);
      if (n > 0) w += (size_t)n;
    }
    fprintf(f, "%5d  %-28s %-16s %-16s %10zu  %s%s\n", i, l->cfg.name, l->ops->type,
            nn_shape_str(&l->out, sh, sizeof sh), l->param_count, ins,
            l->frozen && l->param_count ? "  (frozen)" : "");
  }
  fprintf(f, "\ntotal params: %zu (%zu bytes as float32)\n", m->nparams,
          m->nparams * sizeof(float));
  if (m->ntrainable != m->nparams)
    fprintf(f, "trainable params: %zu (frozen: %zu, trainable = false)\n", m->ntrainable,
            m->nparams - m->ntrainable);
  if (m->nbuffers)
    fprintf(f, "buffers: %zu (%zu bytes)\n", m->nbuffers, m->nbuffers * sizeof(float));
}
