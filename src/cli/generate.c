/* generate.c: `nntrain generate CKPT.h5 [--prime TEXT] [--length N]
 * [--temperature T] [--seed S]`: text from a language model's checkpoint
 * (train.task = "language_model", docs/training.md#language-models).
 *
 * The checkpoint's model is built for windows of ONE token (every layer is
 * shape-generic in time, so the parameters fit) with its recurrent state
 * carried from token to token: the prime text is read one byte at a time,
 * then each next byte is drawn from softmax(logits / T) (T = 0: the most
 * likely byte) with the counter-based RNG keyed by --seed, so the same
 * command prints the same text. Tokens are bytes + 1, as `prepare text`
 * writes them; the padding id 0 is never drawn. One process, no MPI. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "coordinator/run/replica.h"
#include "core/mem.h"
#include "core/rng.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain generate CKPT.h5 [--prime TEXT] [--length N] [--temperature T]\n"
          "                        [--seed S]\n\n"
          "Print text sampled from a language model's checkpoint (train.task =\n"
          "\"language_model\"): the prime (default: a newline) and then N more bytes\n"
          "(default 300), each drawn from softmax(logits / T) (default T = 0.8; 0: the\n"
          "most likely byte), reproducibly for a given --seed (default 1).\n");
}

typedef struct gen_opts {
  const char *ckpt, *prime;
  long length;
  double temperature;
  unsigned long seed;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o) {
  const char *cmd = "generate";
  *o = (gen_opts){NULL, "\n", 300, 0.8, 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (!strcmp(a, "--prime") || !strcmp(a, "--length") || !strcmp(a, "--temperature") ||
        !strcmp(a, "--seed")) {
      if (!v) return nn_cli_usage_error(cmd, "%s needs a value", a);
      i++;
      errno = 0;
      if (!strcmp(a, "--prime")) {
        o->prime = v;
      } else if (!strcmp(a, "--length")) {
        o->length = strtol(v, &end, 10);
        if (!*v || *end || errno || o->length < 0 || o->length > 100000000)
          return nn_cli_usage_error(cmd, "--length '%s': expected a whole number from 0 to "
                                    "100000000", v);
      } else if (!strcmp(a, "--temperature")) {
        o->temperature = strtod(v, &end);
        if (!*v || *end || errno || !(o->temperature >= 0 && o->temperature <= 100))
          return nn_cli_usage_error(cmd, "--temperature '%s': expected a number from 0 to 100", v);
      } else {
        o->seed = strtoul(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-')
          return nn_cli_usage_error(cmd, "--seed '%s': expected a whole number >= 0", v);
      }
    } else if (a[0] == '-' && a[1]) {
      return nn_cli_usage_error(cmd, "unknown option '%s'", a);
    } else if (!o->ckpt) {
      o->ckpt = a;
    } else {
      return nn_cli_usage_error(cmd, "unexpected argument '%s'", a);
    }
  }
  if (!o->ckpt) return nn_cli_usage_error(cmd, "expected a checkpoint CKPT.h5");
  if (!o->prime[0]) return nn_cli_usage_error(cmd, "--prime must not be empty");
  return 0;
}

/* The checkpoint's job and its language model built for one-token windows,
 * parameters loaded. */
static int load_model(const gen_opts *o, nn_job *job, nn_replica *r, nn_error *err) {
  nn_ckpt_snapshot s;
  memset(&s, 0, sizeof s);
  int rc = nn_ckpt_read(o->ckpt, &s, err);
  if (!rc && (rc = nn_job_unpack(job, s.spec, s.spec_len, err)) != 0 && rc != NN_ENOMEM)
    rc = nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "its job spec does not decode");
  if (!rc && strcmp(job->train.task, "language_model") != 0)
    rc = nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "was written by a \"%s\" run: generate needs "
                     "a language model (train.task = \"language_model\")",
                     job->train.task[0] ? job->train.task : "supervised");
  nn_shape one = {1, {1}};
  nn_replica_opts ro = {.train = 0, .max_batch = 1};
  if (!rc) rc = nn_replica_build(r, "model", 0, job, &one, &ro, err);
  if (!rc && r->model.carry_per_sample == 0)
    rc = nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "the model carries no recurrent state (a layer "
                     "with carry = true): it cannot generate beyond one window");
  if (!rc && (r->model.out.ndim != 2 || r->model.out.dim[1] < 2))
    rc = nn_error_at(err, NN_ECKPT, o->ckpt, 0, 0, "the model does not write per-token logits");
  if (!rc) rc = nn_replica_check_ckpt(r, &s, o->ckpt, 0, err);
  if (!rc) nn_replica_load_ckpt(r, &s, 0);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

/* The next token after `tok` (state carried); drawn per o, never id 0. */
static int step(nn_replica *r, int tok, int first, const gen_opts *o, nn_rng *rng,
                double *p) {
  float x = (float)tok;
  nn_run_ctx ctx = {.training = 0, .seed = r->seed, .carry_in = !first};
  const float *lg = nn_model_forward(&r->model, &x, 1, &ctx);
  const int V = r->model.out.dim[1];
  int best = 1;
  for (int v = 2; v < V; v++)
    if (lg[v] > lg[best]) best = v;
  if (o->temperature == 0) return best;
  double sum = 0;
  for (int v = 1; v < V; v++) sum += p[v] = exp(((double)lg[v] - lg[best]) / o->temperature);
  double u = (double)nn_rng_uniform(rng) * sum;
  for (int v = 1; v < V; v++)
    if ((u -= p[v]) < 0) return v;
  return V - 1;
}

int nn_cmd_generate(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    help(stdout);
    return NN_EXIT_OK;
  }
  gen_opts o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  nn_error err;
  nn_error_clear(&err);
  nn_job *job = nn_calloc(1, sizeof *job);
  nn_replica r;
  memset(&r, 0, sizeof r);
  double *p = NULL;
  rc = job ? load_model(&o, job, &r, &err) : nn_error_set(&err, NN_ENOMEM, "out of memory");
  if (!rc && !(p = nn_malloc(sizeof *p * (size_t)r.model.out.dim[1])))
    rc = nn_error_set(&err, NN_ENOMEM, "out of memory");
  if (!rc) {
    nn_rng rng;
    nn_rng_init(&rng, (uint64_t)o.seed, NN_RNG_GENERATE, 0, 0, 0);
    const int V = r.model.out.dim[1];
    int tok = 0;
    fputs(o.prime, stdout);
    for (size_t i = 0; o.prime[i]; i++) /* read the prime; its last step predicts */
      tok = step(&r, (unsigned char)o.prime[i] + 1, i == 0, &o, &rng, p);
    for (long n = 0; n < o.length; n++) {
      if (tok < 1 || tok > 256 || tok >= V) break; /* not a byte token */
      putchar(tok - 1);
      tok = step(&r, tok, 0, &o, &rng, p);
    }
    putchar('\n');
    if (fflush(stdout) != 0) rc = nn_error_set(&err, NN_EIO, "cannot write the text");
  }
  free(p);
  nn_replica_free(&r);
  free(job);
  return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
}
