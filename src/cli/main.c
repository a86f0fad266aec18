/* main.c: `nntrain` entry point: dispatches to subcommands.
 *
 *   nntrain JOB.toml [flags]        same as `nntrain train JOB.toml`
 *   nntrain train|check|prepare|inspect|bench ...
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"

#ifdef NN_FAULT_INJECTION
/* jansson's allocations go through core/mem.h too (site "jansson"), so the
 * allocation-failure walk covers them. */
static void *json_alloc(size_t size) { return nn_mem_alloc_at(size, "jansson"); }
#endif

typedef struct nn_command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} nn_command;

static const nn_command commands[] = {
  {"train", nn_cmd_train, "train a model described by a job file (the default command)"},
  {"lr-find", nn_cmd_lrfind, "the learning-rate range test: loss against a growing rate (mpirun)"},
  {"check", nn_cmd_check, "validate a job file and print the model summary"},
  {"prepare", nn_cmd_prepare, "convert a data set (Fashion-MNIST, IDX, CSV, text) into HDF5 shards"},
  {"eval", nn_cmd_eval, "evaluate a checkpoint on a data set (no job file needed)"},
  {"predict", nn_cmd_predict, "write a checkpoint's predictions for a data set as CSV"},
  {"encode", nn_cmd_encode, "write a layer's outputs (e.g. an autoencoder's codes) as a shard"},
  {"generate", nn_cmd_generate, "sample text from a language model's checkpoint"},
  {"dream", nn_cmd_dream, "the input image that excites a layer, as a PNG (docs/pictures.md)"},
  {"saliency", nn_cmd_saliency, "which pixels a prediction is sensitive to, as a PNG heat map"},
  {"sample", nn_cmd_sample, "a GAN's or a VAE's images, or an autoencoder's reconstructions, as a PNG"},
  {"graph", nn_cmd_graph, "draw the model as a graph: .svg, .png (Graphviz) or .dot"},
  {"report", nn_cmd_report, "the run report: one self-contained HTML page of a run directory"},
  {"inspect", nn_cmd_inspect, "print what an HDF5 shard or a checkpoint holds"},
  {"bench", nn_cmd_bench, "measure communication speed (run under mpirun)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
  fprintf(f,
          "nntrain %s: data-parallel neural network training with MPI\n\n"
          "usage: nntrain JOB.toml [flags]             train (same as 'nntrain train')\n"
          "       mpirun -np N nntrain JOB.toml        train on N ranks\n"
          "       nntrain COMMAND [args]               run a command\n"
          "       nntrain COMMAND --help               help for a command\n\n"
          "commands:\n",
          NN_VERSION);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f,
          "\noptions:\n"
          "  -h, --help     this help\n"
          "  --version      print the version\n\n"
          "Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad job file, 4 bad data,\n"
          "5 bad checkpoint, 6 rank/communication failure, 7 diverged (non-finite),\n"
          "75 stopped on a signal after checkpointing (resumable).\n");
}

int main(int argc, char **argv) {
#ifdef NN_FAULT_INJECTION
  json_set_alloc_funcs(json_alloc, free);
#endif
  if (argc < 2) {
    usage(stderr);
    return NN_EXIT_USAGE;
  }
  const char *a = argv[1];
  if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
    usage(stdout);
    return NN_EXIT_OK;
  }
  if (!strcmp(a, "--version") || !strcmp(a, "version")) {
    printf("nntrain %s\n", NN_VERSION);
#ifdef NN_FAULT_INJECTION
    printf("build: fault injection (NN_CKPT_KILL_AT)\n"); /* tests/e2e_ckpt_kill.sh asks */
#endif
    return NN_EXIT_OK;
  }
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(a, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  size_t n = strlen(a);
  if (n > 5 && !strcmp(a + n - 5, ".toml")) {
    argv[0] = (char *)"train";
    return nn_cmd_train(argc, argv);
  }
  if (a[0] == '-') {
    fprintf(stderr, "nntrain: unknown option '%s'; see 'nntrain --help'\n", a);
  } else {
    fprintf(stderr, "nntrain: unknown command '%s' (a job file must end in .toml); see 'nntrain --help'\n", a);
  }
  return NN_EXIT_USAGE;
}
