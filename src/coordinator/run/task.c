/* task.c: the table of task kinds (see task.h). */
#include "coordinator/run/task.h"

#include <string.h>

extern const nn_task_ops nn_task_supervised;
extern const nn_task_ops nn_task_twin;

static const nn_task_ops *const kinds[] = {
    &nn_task_supervised,
    &nn_task_twin,
    NULL,
};

const nn_task_ops *nn_task_find(const char *name) {
  for (int i = 0; kinds[i]; i++)
    if (!strcmp(kinds[i]->name, name)) return kinds[i];
  return NULL;
}

const nn_task_ops *const *nn_task_kinds(void) { return kinds; }
