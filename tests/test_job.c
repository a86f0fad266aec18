/* test_job.c: the job file schema (coordinator/job.c): a full job parsed to
 * the expected struct, defaults, every error class with its exact
 * line:column and suggestion, --set overrides, the JobSpec protobuf round
 * trip and damaged input, and the generated reference. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job.h"
#include "coordinator/job_keys.h"
#include "core/loss.h"
#include "nntrain.pb-c.h"
#include "job_test.h"
#include "layer_cfg.h"
#include "test.h"

/* The job of the task description; line numbers matter to the tests below. */
static const char *full_job =
    "name = \"fashion_mnist_mlp\"\n"                              /* 1 */
    "[data]\n"                                                     /* 2 */
    "train = \"data/fashion-mnist/train-*.h5\"   # glob\n"         /* 3 */
    "test = \"data/fashion-mnist/test-*.h5\"     # optional\n"     /* 4 */
    "normalize = true\n"                                           /* 5 */
    "cache = false\n"                                              /* 6 */
    "prefetch = 4\n"                                               /* 7 */
    "[model]\n"                                                    /* 8 */
    "input_shape = [1, 28, 28]\n"                                  /* 9 */
    "[[model.layers]]\n"                                           /* 10 */
    "type = \"dense\"\n"                                           /* 11 */
    "units = 256\n"                                                /* 12 */
    "activation = \"relu\"\n"                                      /* 13 */
    "[[model.layers]]\n"                                           /* 14 */
    "type = \"dense\"\n"                                           /* 15 */
    "units = 10\n"                                                 /* 16 */
    "[train]\n"                                                    /* 17 */
    "epochs = 10\n"                                                /* 18 */
    "batch_size = 128          # GLOBAL batch\n"                   /* 19 */
    "loss = \"cross_entropy\"\n"                                   /* 20 */
    "seed = 7\n"                                                   /* 21 */
    "drop_last = true\n"                                           /* 22 */
    "[optimizer]\n"                                                /* 23 */
    "type = \"adam\"\n"                                            /* 24 */
    "lr = 0.002\n"                                                 /* 25 */
    "[run]\n"                                                      /* 26 */
    "dir = \"runs/fashion_mnist_mlp\"\n"                           /* 27 */
    "threads = 2\n"                                                /* 28 */
    "progress = false\n";                                          /* 29 */

/* The smallest valid job. */
static const char *min_job =
    "[data]\n"
    "train = \"t.h5\"\n"
    "[[model.layers]]\n"
    "type = \"dense\"\n"
    "units = 3\n";

static void test_full_job(void) {
  nn_error err;
  nn_job *j = &job_a;
  ASSERT_OK(parse(j, full_job, NULL, 0, &err));
  ASSERT_STR_EQ(j->name, "fashion_mnist_mlp");
  ASSERT_STR_EQ(j->source, "job.toml");
  ASSERT_STR_EQ(j->data.train, "data/fashion-mnist/train-*.h5");
  ASSERT_STR_EQ(j->data.test, "data/fashion-mnist/test-*.h5");
  ASSERT_EQ_INT(j->data.normalize, 1);
  ASSERT_EQ_INT(j->data.cache, 0);
  ASSERT_EQ_INT(j->data.prefetch, 4);
  ASSERT_EQ_INT(j->model.input_ndim, 3);
  ASSERT_EQ_INT(j->model.input_shape[0], 1);
  ASSERT_EQ_INT(j->model.input_shape[1], 28);
  ASSERT_EQ_INT(j->model.input_shape[2], 28);
  ASSERT_EQ_INT(j->model.nlayers, 2);
  ASSERT_STR_EQ(j->model.layers[0].type, "dense");
  ASSERT_STR_EQ(j->model.layers[0].name, "dense0");
  ASSERT_EQ_INT(cfg_num(&j->model.layers[0], "units"), 256);
  ASSERT_STR_EQ(j->model.layers[0].activation, "relu");
  ASSERT_EQ_INT(cfg_num(&j->model.layers[0], "use_bias"), 1);
  ASSERT_EQ_INT(j->model.layer_line[0], 10);
  ASSERT_STR_EQ(j->model.layers[1].name, "dense1");
  ASSERT_EQ_INT(cfg_num(&j->model.layers[1], "units"), 10);
  ASSERT_EQ_INT(j->model.layer_line[1], 14);
  ASSERT_EQ_INT(j->train.epochs, 10);
  ASSERT_EQ_INT(j->train.batch_size, 128);
  ASSERT_STR_EQ(j->train.loss, "cross_entropy");
  ASSERT_EQ_INT(j->train.seed, 7);
  ASSERT_EQ_INT(j->train.drop_last, 1);
  ASSERT_STR_EQ(j->optimizer.type, "adam");
  ASSERT_NEAR(j->optimizer.lr, 0.002, 0);
  ASSERT_NEAR(j->optimizer.beta1, 0.9, 0);
  ASSERT_STR_EQ(j->run.dir, "runs/fashion_mnist_mlp");
  ASSERT_EQ_INT(j->run.threads, 2);
  ASSERT_EQ_INT(j->run.progress, 0);
}

static void test_defaults(void) {
  nn_error err;
  nn_job *j = &job_a;
  nn_error_clear(&err);
  ASSERT_OK(nn_job_parse(j, min_job, strlen(min_job), "jobs/mlp_small.toml", NULL, 0, &err));
  ASSERT_STR_EQ(j->name, "mlp_small"); /* from the file name */
  ASSERT_STR_EQ(j->run.dir, "runs/mlp_small");
  ASSERT_STR_EQ(j->data.test, "");
  ASSERT_EQ_INT(j->data.normalize, 1);
  ASSERT_EQ_INT(j->data.cache, 0);
  ASSERT_EQ_INT(j->data.prefetch, 4);
  ASSERT_EQ_INT(j->model.input_ndim, 0);
  ASSERT_EQ_INT(cfg_num(&j->model.layers[0], "use_bias"), 1);
  ASSERT_STR_EQ(j->model.layers[0].name, "dense0");
  ASSERT_EQ_INT(j->train.epochs, 10);
  ASSERT_EQ_INT(j->train.batch_size, 32);
  ASSERT_STR_EQ(j->train.loss, "cross_entropy");
  ASSERT_EQ_INT(j->train.seed, 1);
  ASSERT_EQ_INT(j->train.drop_last, 0);
  ASSERT_STR_EQ(j->optimizer.type, "adam");
  ASSERT_NEAR(j->optimizer.lr, 0.001, 0);
  ASSERT_EQ_INT(j->run.threads, 0);
  ASSERT_EQ_INT(j->run.progress, 1);
}

static void test_float_accepts_integer(void) {
  nn_error err;
  char text[512];
  snprintf(text, sizeof text, "%s[optimizer]\nlr = 1\nweight_decay = 0\n", min_job);
  ASSERT_OK(parse(&job_a, text, NULL, 0, &err));
  ASSERT_NEAR(job_a.optimizer.lr, 1.0, 0);
  ASSERT_NEAR(job_a.optimizer.weight_decay, 0.0, 0);
}

/* Parse `text`, expect NN_ESCHEMA at line:col with `needle` in the message. */
static int expect_err(const char *text, int code, int line, int col, const char *needle) {
  nn_error err;
  int rc = parse(&job_a, text, NULL, 0, &err);
  if (rc != code || err.code != code || err.line != line || err.col != col ||
      !strstr(err.msg, needle) || strcmp(err.file, "job.toml")) {
    fprintf(stderr, "  got rc %d: %s\n  want %s at job.toml:%d:%d containing \"%s\"\n", rc,
            fmt(&err), nn_err_name(code), line, col, needle);
    return 0;
  }
  if (strchr(fmt(&err), '\n')) {
    fprintf(stderr, "  message is not one line: %s\n", fmt(&err));
    return 0;
  }
  return 1;
}

static void test_unknown_key(void) {
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[train]\nepochs = 2\n  bacth_size = 3\n",
                         NN_ESCHEMA, 5, 3, "unknown key 'bacth_size' in [train]; did you mean "
                                           "'batch_size'?"));
  /* no close name: the valid keys are listed */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\nzzzzzzzz = 1\n", NN_ESCHEMA, 3, 1,
                         "valid keys: train, test, normalize, cache, prefetch"));
  /* in a layer: suggestions come from the type's keys */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunit = 4\n",
                         NN_ESCHEMA, 5, 1, "did you mean 'units'?"));
  /* in the optimizer (someone else's table, same machinery) */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 4\n"
                         "[optimizer]\nmomentun = 0.9\n",
                         NN_ESCHEMA, 7, 1, "did you mean 'momentum'?"));
}

static void test_wrong_type(void) {
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[train]\nepochs = \"ten\"\n", NN_ESCHEMA, 4, 10,
                         "train.epochs: expected an integer, got string"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\nnormalize = 1\n", NN_ESCHEMA, 3, 13,
                         "data.normalize: expected a boolean, got integer"));
  ASSERT_TRUE(expect_err("[data]\ntrain = 5\n", NN_ESCHEMA, 2, 9,
                         "data.train: expected a string, got integer"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[train]\nepochs = 2.5\n", NN_ESCHEMA, 4, 10,
                         "expected an integer, got float"));
  /* an item of a list: the item's position */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[model]\ninput_shape = [1, \"a\"]\n",
                         NN_ESCHEMA, 4, 19, "model.input_shape: item 1: expected an integer"));
  /* a section that is not a table */
  ASSERT_TRUE(expect_err("train = 3\n[data]\ntrain = \"x\"\n", NN_ESCHEMA, 1, 9,
                         "train: expected a table [train], got integer"));
}

static void test_out_of_range(void) {
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[train]\nepochs = 0\n", NN_ESCHEMA, 4, 10,
                         "train.epochs: 0 is out of range [1, 1000000]"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[optimizer]\nlr = -0.5\n", NN_ESCHEMA, 4, 6,
                         "optimizer.lr: -0.5 is out of range (0, inf)"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[optimizer]\nlr = 0\n", NN_ESCHEMA, 4, 6,
                         "optimizer.lr: 0 is out of range (0, inf)"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\nprefetch = 65\n", NN_ESCHEMA, 3, 12,
                         "data.prefetch: 65 is out of range [0, 64]"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[model]\ninput_shape = [1, 2, 3, 4, 5]\n",
                         NN_ESCHEMA, 4, 15, "expected at most 4 items, got 5"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 0\n",
                         NN_ESCHEMA, 5, 9, "model.layers[0].units: 0 is out of range [1, 16777216]"));
  /* a choice that is not one */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[train]\nloss = \"cross_entropi\"\n", NN_ESCHEMA,
                         4, 8, "did you mean \"cross_entropy\"?"));
}

static void test_missing_required(void) {
  /* data.train: at the [data] header */
  ASSERT_TRUE(expect_err("name = \"a\"\n\n[data]\ntest = \"x\"\n[[model.layers]]\ntype = \"dense\"\n"
                         "units = 3\n",
                         NN_ESCHEMA, 3, 1, "[data]: missing required key 'train'"));
  /* dense units: at the layer's header */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
                         "[[model.layers]]\ntype = \"dense\"\n",
                         NN_ESCHEMA, 6, 1, "model.layers[1] (dense): missing required key 'units'"));
  /* a layer without a type */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\nunits = 3\n", NN_ESCHEMA, 3, 1,
                         "model.layers[0]: missing required key 'type'"));
  /* model.layers: at [model] when it exists */
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[model]\ninput_shape = [4]\n", NN_ESCHEMA, 3, 1,
                         "[model]: missing required key 'layers'"));
  /* no [data] at all: only the file can be named */
  nn_error err;
  ASSERT_EQ_INT(parse(&job_a, "[[model.layers]]\ntype = \"relu\"\n", NULL, 0, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "missing required key 'data.train'");
  ASSERT_STR_EQ(err.file, "job.toml");
}

static void test_unknown_section_and_type(void) {
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[trian]\nepochs = 3\n", NN_ESCHEMA, 3, 1,
                         "unknown section [trian]; did you mean [train]?"));
  ASSERT_TRUE(expect_err("nmae = \"x\"\n[data]\ntrain = \"x\"\n", NN_ESCHEMA, 1, 1,
                         "unknown top-level key 'nmae'; did you mean 'name'?"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dens\"\nunits = 3\n",
                         NN_ESCHEMA, 4, 8,
                         "model.layers[0].type: unknown layer type \"dens\"; did you mean "
                         "\"dense\"?"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
                         "[[model.layers]]\ntype = \"dense\"\nunits = 3\nname = \"dense0\"\n",
                         NN_ESCHEMA, 9, 8, "\"dense0\" is already the name of model.layers[0]"));
}

static void test_syntax_error_passes_through(void) {
  nn_error err;
  int rc = parse(&job_a, "[data]\ntrain = \"x\n", NULL, 0, &err);
  ASSERT_EQ_INT(rc, NN_ESYNTAX);
  ASSERT_EQ_INT(err.line, 2);
  ASSERT_STR_EQ(err.file, "job.toml");
}

static void test_overrides(void) {
  const char *sets[] = {
      "train.epochs=3",
      "optimizer.type=sgd",          /* bare word: a string */
      "optimizer.momentum=0.9",
      "model.layers.0.units=128",
      "model.layers.1.name = \"out\"",
      "name=trial2",
      "run.threads=4",
      "train.epochs=5",              /* the last one wins */
      "data.test=",                  /* empty bare value: the empty string */
  };
  nn_error err;
  ASSERT_OK(parse(&job_a, full_job, sets, (int)(sizeof sets / sizeof sets[0]), &err));
  ASSERT_EQ_INT(job_a.train.epochs, 5);
  ASSERT_STR_EQ(job_a.optimizer.type, "sgd");
  ASSERT_NEAR(job_a.optimizer.momentum, 0.9, 0);
  ASSERT_EQ_INT(cfg_num(&job_a.model.layers[0], "units"), 128);
  ASSERT_EQ_INT(cfg_num(&job_a.model.layers[1], "units"), 10);
  ASSERT_STR_EQ(job_a.model.layers[1].name, "out");
  ASSERT_STR_EQ(job_a.name, "trial2");
  ASSERT_STR_EQ(job_a.run.dir, "runs/fashion_mnist_mlp"); /* given in the file */
  ASSERT_EQ_INT(job_a.run.threads, 4);
  ASSERT_STR_EQ(job_a.data.test, "");
  /* an override can supply a section the file lacks, and a required key */
  const char *sets2[] = {"data.train=\"shards/*.h5\"", "model.input_shape=[784]",
                         "run.progress=false"};
  ASSERT_OK(parse(&job_b, "[[model.layers]]\ntype = \"dense\"\nunits = 2\n", sets2, 3, &err));
  ASSERT_STR_EQ(job_b.data.train, "shards/*.h5");
  ASSERT_EQ_INT(job_b.model.input_ndim, 1);
  ASSERT_EQ_INT(job_b.model.input_shape[0], 784);
  ASSERT_EQ_INT(job_b.run.progress, 0);
}

/* A bad override: NN_ESCHEMA, no file position, the override named. */
static int expect_bad_set(const char *set, const char *needle) {
  nn_error err;
  const char *sets[] = {"train.epochs=2", set};
  int rc = parse(&job_a, full_job, sets, 2, &err);
  char want[256];
  snprintf(want, sizeof want, "--set %s: ", set);
  if (rc != NN_ESCHEMA || err.line != 0 || strncmp(err.msg, want, strlen(want)) ||
      !strstr(err.msg, needle)) {
    fprintf(stderr, "  got rc %d: %s\n  want \"%s...%s\"\n", rc, fmt(&err), want, needle);
    return 0;
  }
  return 1;
}

static void test_bad_overrides(void) {
  ASSERT_TRUE(expect_bad_set("train.epochs=x", "train.epochs: expected an integer, got string"));
  ASSERT_TRUE(expect_bad_set("train.epochs=0", "0 is out of range [1, 1000000]"));
  ASSERT_TRUE(expect_bad_set("train.bacth_size=3", "did you mean 'batch_size'?"));
  ASSERT_TRUE(expect_bad_set("trian.epochs=3", "unknown section [trian]; did you mean [train]?"));
  ASSERT_TRUE(expect_bad_set("model.layers.5.units=3", "there is no layer 5 (the job has 2 layers)"));
  ASSERT_TRUE(expect_bad_set("model.layers.0.unit=3", "did you mean 'units'?"));
  ASSERT_TRUE(expect_bad_set("model.layers.x.units=3", "model.layers.N.key=value"));
  ASSERT_TRUE(expect_bad_set("model.layers=[]", "cannot be replaced"));
  ASSERT_TRUE(expect_bad_set("train.epochs", "expected section.key=value"));
  ASSERT_TRUE(expect_bad_set("model.layers.1.type=dens", "did you mean \"dense\"?"));
  ASSERT_TRUE(expect_bad_set("model.layers.1.name=dense0", "already the name"));
}

static void test_pack_round_trip(void) {
  nn_error err;
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  const char *sets[] = {"optimizer.type=sgd", "optimizer.momentum=0.5", "train.seed=12345678901"};
  ASSERT_OK(parse(&job_a, full_job, sets, 3, &err));
  ASSERT_OK(nn_job_pack(&job_a, &b1, &n1, &err));
  ASSERT_TRUE(n1 > 100);
  int rc = nn_job_unpack(&job_b, b1, n1, &err);
  if (rc) fprintf(stderr, "  %s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
  ASSERT_EQ_INT(job_b.train.seed, 12345678901LL);
  ASSERT_EQ_INT(job_b.model.layer_line[1], 14);
  ASSERT_STR_EQ(job_b.model.layers[0].activation, "relu");
  ASSERT_OK(nn_job_pack(&job_b, &b2, &n2, &err));
  ASSERT_EQ_INT(n1, n2);
  ASSERT_TRUE(memcmp(b1, b2, n1) == 0);
  /* a change is seen by nn_job_equal */
  cfg_set(&job_b.model.layers[1], "units", "%d", 11);
  ASSERT_TRUE(!nn_job_equal(&job_a, &job_b));
  free(b1);
  free(b2);
}

/* A value for key k that differs from the one `base` holds. */
static void other_value(const nn_key *k, void *base) {
  char *f = (char *)base + k->offset;
  int ranged = !(k->min == 0 && k->max == 0);
  switch (k->type) {
  case NN_KEY_INT: {
    int *v = (int *)f, lo = ranged ? (int)k->min : 0, hi = ranged ? (int)k->max : 1000;
    if (ranged && (k->flags & NN_KEY_MIN_EXCLUSIVE)) lo++;
    *v = *v != lo ? lo : (lo + 1 <= hi ? lo + 1 : lo);
    break;
  }
  case NN_KEY_INT64: *(int64_t *)f = *(int64_t *)f + 1; break;
  case NN_KEY_FLOAT: {
    double *v = (double *)f;
    double lo = ranged ? k->min : 0, hi = ranged ? k->max : 10;
    double x = isinf(hi) ? lo + 0.375 : lo + 0.375 * (hi - lo);
    *v = *v != x ? x : (isinf(hi) ? lo + 0.75 : lo + 0.75 * (hi - lo));
    break;
  }
  case NN_KEY_BOOL: *(int *)f = !*(int *)f; break;
  case NN_KEY_STRING: snprintf(f, k->size, "s%c", *f == 's' ? 't' : 's'); break;
  case NN_KEY_ENUM: {
    const char *last = strrchr(k->choices, '|');
    last = last ? last + 1 : k->choices;
    if (!strcmp(f, last)) {
      size_t w = strcspn(k->choices, "|");
      memcpy(f, k->choices, w);
      f[w] = '\0';
    } else {
      snprintf(f, k->size, "%s", last);
    }
    break;
  }
  case NN_KEY_INT_LIST: {
    int *items = (int *)f;
    int *count = (int *)((char *)base + k->count_offset);
    *count = k->size > 1 ? 2 : 1;
    items[0] = ranged ? (int)k->min + 1 : 2;
    if (*count > 1) items[1] = ranged ? (int)k->min + 2 : 3;
    break;
  }
  case NN_KEY_STRING_LIST: {
    char(*items)[NN_KEY_ITEM_MAX] = (void *)f;
    int *count = (int *)((char *)base + k->count_offset);
    *count = k->size > 1 ? 2 : 1;
    snprintf(items[0], NN_KEY_ITEM_MAX, "a%d", items[0][0] == 'a');
    if (*count > 1) snprintf(items[1], NN_KEY_ITEM_MAX, "input");
    break;
  }
  }
}

/* Every registered layer type, every key set to a non-default value, crosses
 * pack/unpack unchanged (through its own field or through `extra`). */
static void test_round_trip_every_layer_key(void) {
  nn_error err;
  ASSERT_OK(parse(&job_a, min_job, NULL, 0, &err));
  const nn_layer_ops *const *types = nn_layer_types();
  int n = 0;
  for (int i = 0; types[i] && n < NN_JOB_MAX_LAYERS; i++, n++) {
    nn_layer_cfg *cfg = &job_a.model.layers[n];
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->type, sizeof cfg->type, "%s", types[i]->type);
    snprintf(cfg->name, sizeof cfg->name, "l%d", n);
    ASSERT_OK(nn_layer_cfg_defaults(cfg, &err));
    for (const nn_key *k = types[i]->keys; k && k->name; k++)
      other_value(k, nn_layer_key_base(cfg, k));
    other_value(nn__keys_find(nn__layer_common_keys, "inputs"), cfg); /* a graph key */
    ASSERT_EQ_INT(cfg->ninputs, 2);
    job_a.model.layer_line[n] = 100 + n;
  }
  job_a.model.nlayers = n;
  ASSERT_TRUE(n >= 2);
  uint8_t *buf = NULL;
  size_t len = 0;
  ASSERT_OK(nn_job_pack(&job_a, &buf, &len, &err));
  int rc = nn_job_unpack(&job_b, buf, len, &err);
  free(buf);
  if (rc) fprintf(stderr, "  %s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
}

/* Every key of every section has a JobSpec field of its name. */
static void test_proto_has_section_fields(void) {
  for (const nn_job_section *s = nn_job_sections(); s->name; s++) {
    const ProtobufCMessageDescriptor *d = &nntrain__job_spec__descriptor;
    if (s->name[0]) {
      const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, s->name);
      ASSERT_TRUE(f != NULL);
      d = f->descriptor;
    }
    for (const nn_key *k = s->keys; k->name; k++) {
      if (!protobuf_c_message_descriptor_get_field_by_name(d, k->name))
        fprintf(stderr, "  no field %s.%s\n", d->name, k->name);
      ASSERT_TRUE(protobuf_c_message_descriptor_get_field_by_name(d, k->name) != NULL);
    }
  }
}

/* A key with no field of its name travels in `extra`, as text, exactly. */
typedef struct extra_cfg {
  int units;        /* has a LayerSpec field */
  double ratio;     /* these three do not */
  int64_t big;
  char label[16];
  int shape[3], nshape;
  int flag;
} extra_cfg;

static const nn_key extra_keys[] = {
    {"units", NN_KEY_INT, offsetof(extra_cfg, units), sizeof(int), 1, 100, "1", NULL, 0, "", 0},
    {"ratio", NN_KEY_FLOAT, offsetof(extra_cfg, ratio), sizeof(double), 0, 1, "0.5", NULL, 0,
     "", 0},
    {"big", NN_KEY_INT64, offsetof(extra_cfg, big), sizeof(int64_t), 0, 0, "0", NULL, 0, "", 0},
    {"label", NN_KEY_ENUM, offsetof(extra_cfg, label), 16, 0, 0, "\"a\"", "a|b c|d", 0, "", 0},
    {"shape", NN_KEY_INT_LIST, offsetof(extra_cfg, shape), 3, 1, 1000, NULL, NULL, 0, "",
     offsetof(extra_cfg, nshape)},
    {"flag", NN_KEY_BOOL, offsetof(extra_cfg, flag), sizeof(int), 0, 1, "false", NULL, 0, "", 0},
    {0},
};

static void test_extra_keys(void) {
  nn_error err;
  nn_error_clear(&err);
  extra_cfg a = {.units = 7, .ratio = 0.1, .big = -1234567890123LL, .label = "b c",
                 .shape = {3, 32, 32}, .nshape = 3, .flag = 1};
  extra_cfg b;
  memset(&b, 0, sizeof b);
  uint8_t *buf = NULL;
  size_t len = 0;
  ASSERT_OK(nn__keys_pack(extra_keys, &a, &nntrain__layer_spec__descriptor, &buf, &len, &err));
  Nntrain__LayerSpec *m = nntrain__layer_spec__unpack(NULL, len, buf);
  ASSERT_TRUE(m != NULL);
  ASSERT_EQ_INT(m->units, 7);
  ASSERT_EQ_INT(m->n_extra, 5);
  ASSERT_STR_EQ(m->extra[0]->key, "ratio");
  ASSERT_STR_EQ(m->extra[0]->value, "0.10000000000000001");
  ASSERT_STR_EQ(m->extra[3]->value, "3,32,32");
  nntrain__layer_spec__free_unpacked(m, NULL);
  ASSERT_OK(nn__keys_unpack(extra_keys, &b, &nntrain__layer_spec__descriptor, buf, len, &err));
  for (const nn_key *k = extra_keys; k->name; k++) ASSERT_TRUE(nn__key_equal(k, &a, &b));
  free(buf);
  /* a value out of range in `extra` is refused */
  a.ratio = 2;
  ASSERT_OK(nn__keys_pack(extra_keys, &a, &nntrain__layer_spec__descriptor, &buf, &len, &err));
  ASSERT_EQ_INT(nn__keys_unpack(extra_keys, &b, &nntrain__layer_spec__descriptor, buf, len, &err),
                NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "ratio: 2 is out of range [0, 1]");
  free(buf);
}

static void test_unpack_garbage(void) {
  nn_error err;
  uint8_t junk[512];
  uint32_t x = 12345;
  for (int trial = 0; trial < 200; trial++) {
    size_t len = (size_t)(trial * 7 % 500) + 1;
    for (size_t i = 0; i < len; i++) {
      x = x * 1664525u + 1013904223u;
      junk[i] = (uint8_t)(x >> 24);
    }
    nn_error_clear(&err);
    int rc = nn_job_unpack(&job_b, junk, len, &err);
    ASSERT_TRUE(rc == NN_ECKPT || rc == NN_EINVAL);
    ASSERT_EQ_INT(err.code, rc);
    ASSERT_TRUE(err.msg[0] != '\0');
  }
  /* empty: a valid but empty message, rejected for its version */
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_job_unpack(&job_b, (const uint8_t *)"", 0, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "version");
  /* every truncation of a real spec fails cleanly or decodes to a valid job */
  uint8_t *buf = NULL;
  size_t len = 0;
  ASSERT_OK(parse(&job_a, full_job, NULL, 0, &err));
  ASSERT_OK(nn_job_pack(&job_a, &buf, &len, &err));
  int failures = 0;
  for (size_t cut = 0; cut < len; cut++) {
    nn_error_clear(&err);
    int rc = nn_job_unpack(&job_b, buf, cut, &err);
    if (rc) {
      failures++;
      if (rc != NN_ECKPT) fprintf(stderr, "  cut %zu: %s\n", cut, fmt(&err));
      ASSERT_EQ_INT(rc, NN_ECKPT);
    } else {
      /* the one cut that drops the whole [init] message (the last section) is
       * a spec written before [init] existed: it decodes to the same job,
       * [init] at its defaults (full_job has none) */
      ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
    }
  }
  ASSERT_EQ_INT(failures, (long long)len - 1);
  /* a value out of range in an otherwise valid message */
  job_a.train.epochs = 0;
  free(buf);
  ASSERT_OK(nn_job_pack(&job_a, &buf, &len, &err));
  ASSERT_EQ_INT(nn_job_unpack(&job_b, buf, len, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "train.epochs: 0 is out of range");
  free(buf);
  /* keys added later (NN_KEY_ZERO_ABSENT): a spec from before them holds 0
   * (proto3's absent field) and decodes to the defaults */
  job_a.train.epochs = 3;
  job_a.train.nonfinite_lr_factor = 0;
  job_a.train.nonfinite_max_rollbacks = 0;
  ASSERT_OK(nn_job_pack(&job_a, &buf, &len, &err));
  ASSERT_OK(nn_job_unpack(&job_b, buf, len, &err));
  ASSERT_TRUE(job_b.train.nonfinite_lr_factor == 0.5);
  ASSERT_EQ_INT(job_b.train.nonfinite_max_rollbacks, 3);
  free(buf);
}

/* The messages of the job reader's later checks, word for word: the section
 * checks point at the key they name (else at the section), and one
 * validation source. */
static void test_cross_key_messages(void) {
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
                         "[schedule]\ntype = \"step\"\n",
                         NN_ESCHEMA, 6, 1,
                         "[schedule]: schedule.step_size = 0: type \"step\" needs step_size >= 1 "
                         "(epochs between decays)"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
                         "[schedule]\ntype = \"multistep\"\nmilestones = [5, 3]\n",
                         NN_ESCHEMA, 8, 14,
                         "[schedule]: schedule.milestones[1] = 3: expected more than the "
                         "milestone before it (5); milestones must increase"));
  ASSERT_TRUE(expect_err("[data]\ntrain = \"x\"\nvalidation = \"v.h5\"\nvalidation_split = 0.1\n"
                         "[[model.layers]]\ntype = \"dense\"\nunits = 3\n",
                         NN_ESCHEMA, 4, 20,
                         "data.validation_split: use either data.validation (separate shards) "
                         "or data.validation_split, not both"));
  /* an unknown top-level key with no near name lists the names */
  nn_error err;
  ASSERT_EQ_INT(parse(&job_a, "qqqqqqqqqqqq = 1\n", NULL, 0, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "unknown top-level key 'qqqqqqqqqqqq' (expected one of: data, ");
  ASSERT_STR_CONTAINS(err.msg, ", name)");
}

/* nn__key_parse_text (the Extra encoding) per kind of key: the value lands
 * in the field, and each kind's error is its own message. */
static void test_parse_text_messages(void) {
  typedef struct {
    int i, nl, nn;
    double d;
    int b;
    char e[8];
    int l[3];
    char names[2][NN_KEY_ITEM_MAX];
  } cfg;
  const nn_key ki = {"i", NN_KEY_INT, offsetof(cfg, i), sizeof(int), 1, 9, NULL, NULL, 0, "", 0};
  const nn_key kd = {"d", NN_KEY_FLOAT, offsetof(cfg, d), sizeof(double), 0, 1, NULL, NULL, 0,
                     "", 0};
  const nn_key kb = {"b", NN_KEY_BOOL, offsetof(cfg, b), sizeof(int), 0, 0, NULL, NULL, 0, "", 0};
  const nn_key ke = {"e", NN_KEY_ENUM, offsetof(cfg, e), 8, 0, 0, NULL, "relu|tanh", 0, "", 0};
  const nn_key kl = {"l", NN_KEY_INT_LIST, offsetof(cfg, l), 3, 1, 9, NULL, NULL, 0, "",
                     offsetof(cfg, nl)};
  const nn_key kn = {"n", NN_KEY_STRING_LIST, offsetof(cfg, names), 2, 0, 0, NULL, NULL, 0, "",
                     offsetof(cfg, nn)};
  cfg c;
  memset(&c, 0, sizeof c);
  char msg[200];
  ASSERT_OK(nn__key_parse_text(&ki, &c, "7", msg, sizeof msg));
  ASSERT_OK(nn__key_parse_text(&kd, &c, "0.25", msg, sizeof msg));
  ASSERT_OK(nn__key_parse_text(&kb, &c, "true", msg, sizeof msg));
  ASSERT_OK(nn__key_parse_text(&ke, &c, "tanh", msg, sizeof msg));
  ASSERT_OK(nn__key_parse_text(&kl, &c, "1,2,3", msg, sizeof msg));
  ASSERT_OK(nn__key_parse_text(&kn, &c, "a,bc", msg, sizeof msg));
  ASSERT_EQ_INT(c.i, 7);
  ASSERT_TRUE(c.d == 0.25);
  ASSERT_EQ_INT(c.b, 1);
  ASSERT_STR_EQ(c.e, "tanh");
  ASSERT_EQ_INT(c.nl, 3);
  ASSERT_EQ_INT(c.l[2], 3);
  ASSERT_EQ_INT(c.nn, 2);
  ASSERT_STR_EQ(c.names[1], "bc");
  const struct {
    const nn_key *k;
    const char *text, *msg;
  } bad[] = {
      {&ki, "x", "expected an integer, got \"x\""},
      {&ki, "10", "10 is out of range [1, 9]"},
      {&kd, "1e", "expected a float, got \"1e\""},
      {&kd, "nan", "nan is not allowed; range [0, 1]"},
      {&kb, "yes", "expected true or false, got \"yes\""},
      {&ke, "tanhh", "unknown value \"tanhh\"; did you mean \"tanh\"? (one of: relu, tanh)"},
      {&ke, "zzzzzzz", "unknown value \"zzzzzzz\" (expected one of: relu, tanh)"},
      {&kl, "1,,2", "bad integer list \"1,,2\" (at most 3 items)"},
      {&kl, "1,2,3,4", "bad integer list \"1,2,3,4\" (at most 3 items)"},
      {&kl, "1,a", "bad integer list \"1,a\""},
      {&kl, "1,0", "0 is out of range [1, 9]"},
      {&kn, "a,b,c", "bad string list \"a,b,c\" (at most 2 items of 47 bytes)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    msg[0] = '\0';
    ASSERT_EQ_INT(nn__key_parse_text(bad[i].k, &c, bad[i].text, msg, sizeof msg), -1);
    ASSERT_STR_EQ(msg, bad[i].msg);
  }
}

static void edit_version(Nntrain__JobSpec *m) { m->version = 2; }
static void edit_no_train(Nntrain__JobSpec *m) { m->train = NULL; }
static void edit_no_init(Nntrain__JobSpec *m) { m->init = NULL; }
/* The edits below change copies of the sub-messages they touch, so that the
 * decoded message (freed by unpack_edited) keeps its own. */
static Nntrain__ModelSpec model_copy;
static Nntrain__LayerSpec layer_copy, *layer_ptrs[1];
static void edit_layer_type(Nntrain__JobSpec *m) {
  model_copy = *m->model;
  layer_copy = *m->model->layers[0];
  layer_copy.type = "bogus";
  layer_ptrs[0] = &layer_copy;
  model_copy.layers = layer_ptrs;
  model_copy.n_layers = 1;
  m->model = &model_copy;
}
static void edit_no_layers(Nntrain__JobSpec *m) {
  model_copy = *m->model;
  model_copy.n_layers = 0;
  m->model = &model_copy;
}
static void edit_no_name(Nntrain__JobSpec *m) { m->name = ""; }
static void edit_no_extra(Nntrain__JobSpec *m) {
  char *type = m->model->layers[0]->type;
  edit_layer_type(m);
  layer_copy.type = type; /* back to its own type */
  layer_copy.n_extra = 0;                      /* every key without a field of its own */
}

/* A required key (no default) absent from a spec is refused: found by
 * fuzz_proto, such a spec decoded with filters = 0, then packed again and
 * was refused on the second decode. */
static void test_unpack_required_key_missing(void) {
  nn_error err;
  const char *conv = "[data]\ntrain = \"t.h5\"\n[[model.layers]]\ntype = \"conv2d\"\n"
                     "filters = 4\nkernel_size = [3]\n";
  int prc = parse(&job_a, conv, NULL, 0, &err);
  if (prc) fprintf(stderr, "  %s\n", fmt(&err));
  ASSERT_OK(prc);
  ASSERT_EQ_INT(unpack_edited_job(edit_no_extra, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "JobSpec: model.layers[0].filters: required key missing");
}

/* The messages of nn_job_unpack's checks, word for word. */
static void test_unpack_messages(void) {
  nn_error err;
  ASSERT_OK(parse(&job_a, min_job, NULL, 0, &err));
  ASSERT_EQ_INT(unpack_edited_job(edit_version, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "JobSpec: version 2, this build reads version 1");
  ASSERT_EQ_INT(unpack_edited_job(edit_no_train, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "JobSpec: the [train] section is missing");
  ASSERT_EQ_INT(unpack_edited_job(edit_layer_type, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "JobSpec: model.layers[0]: unknown layer type \"bogus\"");
  ASSERT_EQ_INT(unpack_edited_job(edit_no_layers, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "JobSpec: 0 layers (1 to 256 allowed)");
  ASSERT_EQ_INT(unpack_edited_job(edit_no_name, &err), NN_ECKPT);
  ASSERT_STR_EQ(err.msg, "JobSpec: name, run.dir or data.train is empty");
  /* no [init]: a spec written before it; decodes with [init]'s defaults */
  ASSERT_OK(unpack_edited_job(edit_no_init, &err));
  ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
  /* a pack error: a layer type this build lacks */
  uint8_t *buf = (uint8_t *)&err;
  size_t len = 1;
  snprintf(job_a.model.layers[0].type, sizeof job_a.model.layers[0].type, "bogus");
  ASSERT_EQ_INT(nn_job_pack(&job_a, &buf, &len, &err), NN_EINVAL);
  ASSERT_STR_EQ(err.msg, "model.layers[0]: unknown layer type \"bogus\"");
  ASSERT_TRUE(buf == NULL);
  ASSERT_EQ_INT(len, 0);
}

static void test_edit_distance(void) {
  ASSERT_EQ_INT(nn_edit_distance("", ""), 0);
  ASSERT_EQ_INT(nn_edit_distance("abc", ""), 3);
  ASSERT_EQ_INT(nn_edit_distance("", "abc"), 3);
  ASSERT_EQ_INT(nn_edit_distance("batch_size", "batch_size"), 0);
  ASSERT_EQ_INT(nn_edit_distance("bacth_size", "batch_size"), 1); /* transposition */
  ASSERT_EQ_INT(nn_edit_distance("kitten", "sitting"), 3);
  ASSERT_EQ_INT(nn_edit_distance("epoch", "epochs"), 1);
  ASSERT_EQ_INT(nn_edit_distance("lr", "dir"), 2);
}

/* The job's defaults for layers agree with core's nn_layer_cfg_defaults. */
static void test_layer_defaults_agree(void) {
  nn_error err;
  const nn_layer_ops *const *types = nn_layer_types();
  for (int i = 0; types[i]; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "[data]\ntrain = \"x\"\n[[model.layers]]\ntype = \"%s\"\n", types[i]->type);
    /* give required keys a value */
    for (const nn_key *k = types[i]->keys; k && k->name; k++)
      if (k->flags & NN_KEY_REQUIRED) {
        size_t o = strlen(text);
        if (k->type == NN_KEY_INT_LIST)
          snprintf(text + o, sizeof text - o, "%s = [%d]\n", k->name, (int)k->min + 1);
        else if (k->type == NN_KEY_STRING || k->type == NN_KEY_ENUM)
          snprintf(text + o, sizeof text - o, "%s = \"%.*s\"\n", k->name,
                   k->choices ? (int)strcspn(k->choices, "|") : 1, k->choices ? k->choices : "x");
        else if (k->type == NN_KEY_BOOL)
          snprintf(text + o, sizeof text - o, "%s = true\n", k->name);
        else
          snprintf(text + o, sizeof text - o, "%s = %d\n", k->name, (int)k->min + 1);
      }
    int rc = parse(&job_a, text, NULL, 0, &err);
    if (rc) fprintf(stderr, "  %s: %s\n", types[i]->type, fmt(&err));
    ASSERT_OK(rc);
    nn_layer_cfg want;
    memset(&want, 0, sizeof want);
    snprintf(want.type, sizeof want.type, "%s", types[i]->type);
    ASSERT_OK(nn_layer_cfg_defaults(&want, &err));
    for (const nn_key *k = types[i]->keys; k && k->name; k++) {
      if (k->flags & NN_KEY_REQUIRED) continue;
      const char *a = (const char *)nn_layer_key_base(&job_a.model.layers[0], k) + k->offset;
      const char *b = (const char *)nn_layer_key_base(&want, k) + k->offset;
      size_t sz = k->type == NN_KEY_FLOAT ? sizeof(double)
                  : k->type == NN_KEY_INT64 ? sizeof(int64_t)
                  : (k->type == NN_KEY_STRING || k->type == NN_KEY_ENUM) ? k->size
                  : k->type == NN_KEY_INT_LIST ? k->size * sizeof(int)
                  : sizeof(int);
      if (memcmp(a, b, sz)) fprintf(stderr, "  %s.%s differs\n", types[i]->type, k->name);
      ASSERT_TRUE(memcmp(a, b, sz) == 0);
    }
  }
}

static void test_loss_choices_match(void) {
  const nn_job_section *s = nn_job_sections();
  while (s->name && strcmp(s->name, "train")) s++;
  ASSERT_TRUE(s->name != NULL);
  const nn_key *k = s->keys;
  while (k->name && strcmp(k->name, "loss")) k++;
  ASSERT_TRUE(k->name != NULL);
  ASSERT_STR_EQ(k->choices, nn_loss_choices);
}

static void test_reference(void) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ASSERT_TRUE(f != NULL);
  nn_job_write_reference(f);
  fclose(f);
  for (const nn_job_section *s = nn_job_sections(); s->name; s++) {
    char h[64];
    snprintf(h, sizeof h, "## [%s]", s->name);
    if (s->name[0]) ASSERT_STR_CONTAINS(text, h);
    for (const nn_key *k = s->keys; k->name; k++) {
      char row[80];
      snprintf(row, sizeof row, "| `%s` |", k->name);
      ASSERT_STR_CONTAINS(text, row);
    }
  }
  const nn_layer_ops *const *types = nn_layer_types();
  for (int i = 0; types[i]; i++) {
    char h[64];
    snprintf(h, sizeof h, "### %s\n", types[i]->type);
    ASSERT_STR_CONTAINS(text, h);
  }
  ASSERT_STR_CONTAINS(text, "| `batch_size` | integer | `32` | [1, 16777216] |");
  ASSERT_STR_CONTAINS(text, "- `cross_entropy`");
  ASSERT_STR_CONTAINS(text, "- `mse`");
  free(text);
}

static void test_load_errors(void) {
  nn_error err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_job_load(&job_a, "/nonexistent/dir/job.toml", NULL, 0, &err), NN_EIO);
  ASSERT_STR_EQ(err.file, "/nonexistent/dir/job.toml");
  ASSERT_STR_CONTAINS(err.msg, "cannot open");
}

/* `trainable` (stored negated in nn_layer_cfg.frozen) and [init]: parsed,
 * written back as text, packed and unpacked; a spec without [init] (written
 * before it existed) unpacks to the defaults. */
static void test_trainable_and_init(void) {
  static const char text[] =
      "name = \"ft\"\n[data]\ntrain = \"d/*.h5\"\n"
      "[model]\n[[model.layers]]\ntype = \"dense\"\nunits = 4\ntrainable = false\n"
      "[[model.layers]]\ntype = \"dense\"\nunits = 2\n"
      "[init]\nfrom = \"pre.h5\"\nreplica = \"gen\"\n";
  nn_error err;
  ASSERT_OK(parse(&job_a, text, NULL, 0, &err));
  ASSERT_EQ_INT(job_a.model.layers[0].frozen, 1);
  ASSERT_EQ_INT(job_a.model.layers[1].frozen, 0);
  ASSERT_STR_EQ(job_a.init.from, "pre.h5");
  ASSERT_STR_EQ(job_a.init.replica, "gen");
  const nn_layer_ops *ops = nn_layer_find("dense");
  nn_key all[NN__LAYER_KEYS_MAX];
  ASSERT_TRUE(nn__layer_all_keys(ops, all, NN__LAYER_KEYS_MAX) > 0);
  const nn_key *k = nn__keys_find(all, "trainable");
  ASSERT_TRUE(k != NULL);
  char buf[32];
  nn__key_format(k, &job_a.model.layers[0], buf, sizeof buf);
  ASSERT_STR_EQ(buf, "false");
  nn__key_format(k, &job_a.model.layers[1], buf, sizeof buf);
  ASSERT_STR_EQ(buf, "true");
  const char *sets[] = {"model.layers.0.trainable=true", "model.layers.1.trainable=false"};
  ASSERT_OK(parse(&job_b, text, sets, 2, &err));
  ASSERT_EQ_INT(job_b.model.layers[0].frozen, 0);
  ASSERT_EQ_INT(job_b.model.layers[1].frozen, 1);
  uint8_t *buf2 = NULL;
  size_t len = 0;
  ASSERT_OK(nn_job_pack(&job_a, &buf2, &len, &err));
  ASSERT_OK(nn_job_unpack(&job_b, buf2, len, &err));
  ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
  ASSERT_EQ_INT(job_b.model.layers[0].frozen, 1);
  free(buf2);
  /* defaults: trainable, no [init] */
  ASSERT_OK(parse(&job_b, full_job, NULL, 0, &err));
  ASSERT_EQ_INT(job_b.model.layers[0].frozen, 0);
  ASSERT_STR_EQ(job_b.init.from, "");
  ASSERT_STR_EQ(job_b.init.replica, "model");
}

TEST_MAIN(TEST(test_full_job), TEST(test_trainable_and_init), TEST(test_defaults), TEST(test_float_accepts_integer),
          TEST(test_unknown_key), TEST(test_wrong_type), TEST(test_out_of_range),
          TEST(test_missing_required), TEST(test_unknown_section_and_type),
          TEST(test_syntax_error_passes_through), TEST(test_overrides),
          TEST(test_bad_overrides), TEST(test_pack_round_trip),
          TEST(test_round_trip_every_layer_key), TEST(test_proto_has_section_fields), TEST(test_extra_keys),
          TEST(test_unpack_garbage), TEST(test_edit_distance), TEST(test_layer_defaults_agree),
          TEST(test_loss_choices_match), TEST(test_reference), TEST(test_load_errors),
          TEST(test_cross_key_messages), TEST(test_parse_text_messages),
          TEST(test_unpack_messages), TEST(test_unpack_required_key_missing))
