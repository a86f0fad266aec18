/* graph.h: the model graph as text, for `nntrain check` (graph.c). */
#ifndef NN_CLI_GRAPH_H
#define NN_CLI_GRAPH_H

#include <stdio.h>

#include "core/model.h"

/* Write the model's input and one row per layer to f: index, name, type,
 * output shape, parameter count, and the names of the layers it reads
 * ("input" = the model's input), then the parameter and buffer totals. */
void nn_cli_print_graph(FILE *f, const nn_model *m);

#endif
