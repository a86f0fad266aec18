/* lint.c: the model checks of lint.h. Each rule looks at the layer that
 * produces the model's output, walking back through layers that cannot undo
 * what the rule is about (single-input layers only: a merge ends the walk). */
#include "coordinator/lint.h"

#include <stdio.h>
#include <string.h>

#include "core/keys.h"
#include "core/loss.h"

/* The layer the output comes from, looking back from the last layer through
 * single-input layers whose type is in `through`; -1 if the walk reaches the
 * model's input. */
static int source_layer(const nn_model *m, const char *through) {
  int i = m->nlayers - 1;
  while (i >= 0 && m->layers[i].nin == 1 &&
         nn_choice_index(through, m->layers[i].ops->type) >= 0)
    i = m->layers[i].src[0];
  return i;
}

/* The job-file line of layer l's config (0 if unknown). */
static int layer_line(const nn_job *job, const nn_layer *l) {
  return l->src_index >= 0 && l->src_index < job->model.nlayers
             ? job->model.layer_line[l->src_index]
             : 0;
}

/* Name of the config a layer came from (a dense for "dense3_softmax"). */
static const char *config_name(const nn_job *job, const nn_layer *l) {
  return l->src_index >= 0 && l->src_index < job->model.nlayers
             ? job->model.layers[l->src_index].name
             : l->cfg.name;
}

int nn_lint_model(const nn_job *job, const nn_model *m, int loss,
                  void (*warn)(void *user, const char *msg), void *user, nn_error *err) {
  if (loss == NN_LOSS_BCE && m->nlayers >= 1 && warn) { /* the sigmoid is in the loss */
    int b = source_layer(m, "flatten|dropout|reshape");
    if (b >= 0 && nn_choice_index("sigmoid|hard_sigmoid", m->layers[b].ops->type) >= 0) {
      const nn_layer *l = &m->layers[b];
      char msg[NN_PATH_MAX + 512];
      snprintf(msg, sizeof msg, "%s:%d: layer %d '%s': the output comes from a %s, but "
               "binary_cross_entropy applies the sigmoid itself (it takes logits): the "
               "outputs are squashed twice and learn slowly (remove the activation from the "
               "output layer)", job->source, layer_line(job, l), l->src_index,
               config_name(job, l), l->ops->type);
      warn(user, msg);
    }
  }
  if (loss != NN_LOSS_SOFTMAX_CE || m->nlayers < 1) return 0;
  int s = source_layer(m, "flatten|dropout");
  if (s >= 0 && !strcmp(m->layers[s].ops->type, "softmax")) {
    const nn_layer *l = &m->layers[s];
    const char *cfg = config_name(job, l);
    int own = !strcmp(cfg, l->cfg.name); /* a softmax layer, not a dense's activation */
    nn_error_at(err, NN_ESCHEMA, job->source, layer_line(job, l), 0,
                "layer %d '%s' (%s): softmax applied twice: cross_entropy takes logits; %s",
                l->src_index, cfg, own ? "softmax" : job->model.layers[l->src_index].type,
                own ? "remove the softmax layer"
                    : "remove the softmax layer (activation = \"softmax\": use \"none\")");
    snprintf(err->where, sizeof err->where, "%s", cfg);
    return NN_ESCHEMA;
  }
  s = source_layer(m, "flatten|dropout|maxpool|avgpool|global_avgpool");
  if (s >= 0 && warn &&
      nn_choice_index("relu|softplus|sigmoid|hard_sigmoid", m->layers[s].ops->type) >= 0) {
    const nn_layer *l = &m->layers[s];
    char msg[NN_PATH_MAX + 512];
    snprintf(msg, sizeof msg,
             "%s:%d: layer %d '%s': the classifier's output comes from a %s, so its logits "
             "cannot go below zero%s; cross_entropy learns badly from them (remove the "
             "activation from the output layer)", job->source, layer_line(job, l),
             l->src_index, config_name(job, l), l->ops->type,
             strcmp(l->ops->type, "relu") && strcmp(l->ops->type, "softplus")
                 ? " and are squashed into [0, 1]" : "");
    warn(user, msg);
  }
  return 0;
}
