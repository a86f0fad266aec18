/* task.c: the table of task kinds (see task.h). */
#include "coordinator/run/task.h"

#include <stdio.h>
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

int nn_task_for_job(const nn_job *job, const nn_task_ops **ops, nn_error *err) {
  /* "": a job spec from before train.task existed (a version 1 checkpoint) */
  *ops = nn_task_find(job->train.task[0] ? job->train.task : "supervised");
  if (*ops) return 0;
  char list[256] = "";
  for (int i = 0, k = 0; kinds[i] && k < (int)sizeof list; i++)
    k += snprintf(list + k, sizeof list - (size_t)k, "%s\"%s\"", i ? ", " : "", kinds[i]->name);
  return nn_error_at(err, NN_ESCHEMA, job->source, 0, 0,
                     "train.task = \"%s\": expected one of %s", job->train.task, list);
}
