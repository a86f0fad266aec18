/* sample.h: what the `sample` layer (the VAE reparameterisation, sample.c)
 * exposes besides its nn_layer_ops: the KL term of its last forward, for the
 * training step's reported loss and a VAE task's ELBO. */
#ifndef NN_CORE_LAYERS_SAMPLE_H
#define NN_CORE_LAYERS_SAMPLE_H

#include "core/model.h"

#include "core/rng.h"

/* The sample layer's noise: eps of element j of global sample s in optimizer
 * step t is draw j of the stream (seed, NN_RNG_SAMPLE_LAYER, layer
 * init_index, t, s) (core/rng.h). */

/* The sum over m's sample layers of KL(N(mu, sigma^2) || N(0, 1)) =
 * 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar) over the samples of each one's
 * last forward (training or evaluation), in double, not weighted by beta.
 * 0 when m has no sample layer. */
double nn_sample_kl(const nn_model *m);

/* The index of m's first sample layer (a VAE's: the decoder starts after
 * it), -1 if it has none. */
int nn_sample_layer_index(const nn_model *m);

/* The same weighted by each layer's beta: the loss term the layers' backward
 * differentiates (scaled by ctx->act_scale), for the reported training loss. */
double nn_sample_penalty(const nn_model *m);

#endif
