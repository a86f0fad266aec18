/* test_job_nested.c: residual blocks in job files: the nested
 * [[model.layers.layers]] tables flattened into the config list (block_len,
 * qualified names, lines), --set on top-level layers, errors naming the
 * nested path with line:column, the JobSpec round trip, and the model built
 * from the parsed job. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job.h"
#include "core/model.h"
#include "job_test.h"
#include "layer_cfg.h"
#include "test.h"

/* Line numbers matter to the tests below. */
static const char *nested_job =
    "[data]\n"                                   /* 1 */
    "train = \"t.h5\"\n"                         /* 2 */
    "[model]\n"                                  /* 3 */
    "input_shape = [6]\n"                        /* 4 */
    "[[model.layers]]\n"                         /* 5 */
    "type = \"dense\"\n"                         /* 6 */
    "units = 4\n"                                /* 7 */
    "[[model.layers]]\n"                         /* 8 */
    "type = \"residual\"\n"                      /* 9 */
    "  [[model.layers.layers]]\n"                /* 10 */
    "  type = \"dense\"\n"                       /* 11 */
    "  units = 4\n"                              /* 12 */
    "  activation = \"relu\"\n"                  /* 13 */
    "  [[model.layers.layers]]\n"                /* 14 */
    "  type = \"residual\"\n"                    /* 15 */
    "  projection = true\n"                      /* 16 */
    "  name = \"inner\"\n"                       /* 17 */
    "    [[model.layers.layers.layers]]\n"       /* 18 */
    "    type = \"dense\"\n"                     /* 19 */
    "    units = 3\n"                            /* 20 */
    "  [[model.layers.layers]]\n"                /* 21 */
    "  type = \"batchnorm\"\n"                   /* 22 */
    "  [[model.layers.layers]]\n"                /* 23 */
    "  type = \"dense\"\n"                       /* 24 */
    "  units = 4\n"                              /* 25 */
    "[[model.layers]]\n"                         /* 26 */
    "type = \"dropout\"\n"                       /* 27 */
    "rate = 0.2\n"                               /* 28 */
    "[[model.layers]]\n"                         /* 29 */
    "type = \"dense\"\n"                         /* 30 */
    "units = 2\n";                               /* 31 */


static void test_flattened(void) {
  nn_error err;
  int rc = parse(&job_a, nested_job, NULL, 0, &err);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  static const struct {
    const char *type, *name;
    int block_len, line;
  } want[] = {
      {"dense", "dense0", 0, 5},
      {"residual", "residual1", 5, 8},
      {"dense", "residual1.dense0", 0, 10},
      {"residual", "residual1.inner", 1, 14},
      {"dense", "residual1.inner.dense0", 0, 18},
      {"batchnorm", "residual1.batchnorm2", 0, 21},
      {"dense", "residual1.dense3", 0, 23},
      {"dropout", "dropout2", 0, 26},
      {"dense", "dense3", 0, 29},
  };
  ASSERT_EQ_INT(job_a.model.nlayers, 9);
  for (int i = 0; i < 9; i++) {
    ASSERT_STR_EQ(job_a.model.layers[i].type, want[i].type);
    ASSERT_STR_EQ(job_a.model.layers[i].name, want[i].name);
    ASSERT_EQ_INT(job_a.model.layers[i].block_len, want[i].block_len);
    ASSERT_EQ_INT(job_a.model.layer_line[i], want[i].line);
  }
  ASSERT_EQ_INT(job_a.model.layers[3].projection, 1);
  ASSERT_EQ_INT(job_a.model.layers[1].projection, 0);
  ASSERT_NEAR(cfg_num(&job_a.model.layers[7], "rate"), 0.2, 0);

  /* the model built from it has the job's names and the expected structure */
  nn_model m;
  nn_shape in = {1, {6}};
  nn_error_clear(&err);
  rc = nn_model_build(&m, &in, job_a.model.layers, job_a.model.nlayers, 2, &err);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  /* the block is a graph: its body, the inner block's add, its own add */
  int last_add = -1;
  for (int i = 0; i < m.nlayers; i++)
    if (!strcmp(m.layers[i].cfg.name, "residual1")) last_add = i;
  ASSERT_TRUE(last_add > 0);
  ASSERT_STR_EQ(m.layers[last_add].ops->type, "add");
  ASSERT_TRUE(nn_model_find_tensor(&m, "residual1.inner.shortcut", "weight") >= 0);
  ASSERT_TRUE(nn_model_find_tensor(&m, "residual1.batchnorm2", "running_var") >= 0);
  ASSERT_TRUE(nn_model_find_tensor(&m, "residual1.dense0_relu", "weight") < 0);
  ASSERT_EQ_INT(m.out.dim[0], 2);
  nn_model_free(&m);
}

/* --set model.layers.N.key is the N-th TOP-LEVEL layer. */
static void test_overrides_top_level(void) {
  nn_error err;
  const char *sets[] = {"model.layers.2.rate=0.4", "model.layers.3.units=5",
                        "model.layers.1.projection=true"};
  int rc = parse(&job_a, nested_job, sets, 3, &err);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_NEAR(cfg_num(&job_a.model.layers[7], "rate"), 0.4, 0);
  ASSERT_EQ_INT(cfg_num(&job_a.model.layers[8], "units"), 5);
  ASSERT_EQ_INT(job_a.model.layers[1].projection, 1);
  ASSERT_EQ_INT(cfg_num(&job_a.model.layers[2], "units"), 4); /* nested: untouched */
  const char *bad[] = {"model.layers.4.units=1"};
  ASSERT_EQ_INT(parse(&job_a, nested_job, bad, 1, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "there is no layer 4 (the job has 4 layers)");
  const char *bl[] = {"model.layers.1.block_len=2"};
  ASSERT_EQ_INT(parse(&job_a, nested_job, bl, 1, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "block_len is set from the nested `layers`");
}

/* Replace the first occurrence of `from` in nested_job with `to`. */
static char *edited(const char *from, const char *to) {
  const char *p = strstr(nested_job, from);
  if (!p) return NULL;
  size_t n = strlen(nested_job) + strlen(to) + 1;
  char *s = malloc(n);
  if (!s) return NULL;
  size_t k = (size_t)(p - nested_job);
  memcpy(s, nested_job, k);
  snprintf(s + k, n - k, "%s%s", to, p + strlen(from));
  return s;
}

/* Parse nested_job with one edit; expect NN_ESCHEMA at line:col with msg. */
static int expect_error(const char *from, const char *to, int line, int col, const char *msg) {
  nn_error err;
  char *text = edited(from, to);
  if (!text) return 0;
  int rc = parse(&job_b, text, NULL, 0, &err);
  free(text);
  int ok = rc == NN_ESCHEMA && err.line == line && err.col == col && strstr(err.msg, msg);
  if (!ok) fprintf(stderr, "  got rc %d: %s\n  want %d:%d: %s\n", rc, fmt(&err), line, col, msg);
  return ok;
}

static void test_nested_errors(void) {
  /* unknown key in a doubly nested layer: the path and the key's position */
  ASSERT_TRUE(expect_error("    units = 3\n", "    unit = 3\n", 20, 5,
                           "unknown key 'unit' in model.layers[1].layers[1].layers[0] (dense); "
                           "did you mean 'units'?"));
  /* out of range */
  ASSERT_TRUE(expect_error("  units = 4\n  activation", "  units = 0\n  activation", 12, 11,
                           "model.layers[1].layers[0].units: 0 is out of range"));
  /* missing required key of a nested layer, reported at its table */
  ASSERT_TRUE(expect_error("    units = 3\n", "\n", 18, 5,
                           "model.layers[1].layers[1].layers[0] (dense): missing required key "
                           "'units'"));
  /* unknown type, with a suggestion */
  ASSERT_TRUE(expect_error("  type = \"batchnorm\"", "  type = \"batchnrm\"", 22, 10,
                           "model.layers[1].layers[2].type: unknown layer type \"batchnrm\"; "
                           "did you mean \"batchnorm\"?"));
  /* block_len is never written */
  ASSERT_TRUE(expect_error("  projection = true\n", "  block_len = 1\n", 16, 3,
                           "model.layers[1].layers[1].block_len: block_len is set from the "
                           "nested `layers`"));
  /* `layers` in a layer that is not a block */
  ASSERT_TRUE(expect_error("[[model.layers]]\ntype = \"dropout\"",
                           "[[model.layers]]\ntype = \"dropout\"\nlayers = 1", 28, 1,
                           "unknown key 'layers' in model.layers[2] (dropout)"));
  /* `layers` of a block that is not an array of tables */
  ASSERT_TRUE(expect_error("  name = \"inner\"\n    [[model.layers.layers.layers]]\n    type = "
                           "\"dense\"\n    units = 3\n",
                           "  name = \"inner\"\n  layers = 3\n", 18, 12,
                           "model.layers[1].layers[1].layers: expected an array of tables "
                           "([[model.layers.layers.layers]]"));
  /* duplicate names name both nested paths */
  ASSERT_TRUE(expect_error("  name = \"inner\"\n", "  name = \"dense3\"\n", 23, 3,
                           "model.layers[1].layers[3].name: \"residual1.dense3\" is already "
                           "the name of model.layers[1].layers[1]"));
}

/* The flat list with block_len and projection survives the JobSpec (both
 * travel in LayerSpec.extra). */
static void test_pack_round_trip(void) {
  nn_error err;
  ASSERT_OK(parse(&job_a, nested_job, NULL, 0, &err));
  uint8_t *buf = NULL;
  size_t len = 0;
  ASSERT_OK(nn_job_pack(&job_a, &buf, &len, &err));
  nn_error_clear(&err);
  int rc = nn_job_unpack(&job_b, buf, len, &err);
  free(buf);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
  ASSERT_EQ_INT(job_b.model.layers[1].block_len, 5);
  ASSERT_EQ_INT(job_b.model.layers[3].projection, 1);
  ASSERT_STR_EQ(job_b.model.layers[4].name, "residual1.inner.dense0");
}

TEST_MAIN(TEST(test_flattened), TEST(test_overrides_top_level), TEST(test_nested_errors),
          TEST(test_pack_round_trip))
