/* test_job_graph.c: layer graphs in job files: the `inputs` key (parsed,
 * --set model.layers.N.inputs=[...], its errors with line:column), the
 * JobSpec round trip of inputs, and nn_job_model_error pointing a model
 * build error (an unknown input, a shape mismatch) at the job file's line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job.h"
#include "core/model.h"
#include "job_test.h"
#include "test.h"

/* Line numbers matter to the tests below. */
static const char *graph_job =
    "[data]\n"                                   /* 1 */
    "train = \"t.h5\"\n"                         /* 2 */
    "[model]\n"                                  /* 3 */
    "input_shape = [6]\n"                        /* 4 */
    "[[model.layers]]\n"                         /* 5 */
    "name = \"a\"\n"                             /* 6 */
    "type = \"dense\"\n"                         /* 7 */
    "units = 4\n"                                /* 8 */
    "activation = \"relu\"\n"                    /* 9 */
    "[[model.layers]]\n"                         /* 10 */
    "name = \"b\"\n"                             /* 11 */
    "type = \"dense\"\n"                         /* 12 */
    "inputs = [\"input\"]\n"                     /* 13 */
    "units = 3\n"                                /* 14 */
    "[[model.layers]]\n"                         /* 15 */
    "name = \"cat\"\n"                           /* 16 */
    "type = \"concat\"\n"                        /* 17 */
    "inputs = [\"a\", \"b\"]\n"                  /* 18 */
    "[[model.layers]]\n"                         /* 19 */
    "type = \"dense\"\n"                         /* 20 */
    "units = 2\n";                               /* 21 */


static int build(nn_model *m, const nn_job *job, nn_error *err) {
  nn_shape in = {1, {6}};
  nn_error_clear(err);
  int rc = nn_model_build(m, &in, job->model.layers, job->model.nlayers, 2, err);
  if (rc) nn_job_model_error(job, err);
  return rc;
}

static void test_parsed_and_built(void) {
  nn_error err;
  int rc = parse(&job_a, graph_job, NULL, 0, &err);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_EQ_INT(job_a.model.layers[0].ninputs, 0);
  ASSERT_EQ_INT(job_a.model.layers[1].ninputs, 1);
  ASSERT_STR_EQ(job_a.model.layers[1].inputs[0], "input");
  ASSERT_EQ_INT(job_a.model.layers[2].ninputs, 2);
  ASSERT_STR_EQ(job_a.model.layers[2].inputs[1], "b");
  nn_model m;
  rc = build(&m, &job_a, &err);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  /* a, a_relu, b, cat, dense3: cat reads a's relu and b */
  ASSERT_EQ_INT(m.nlayers, 5);
  ASSERT_EQ_INT(m.layers[3].out.dim[0], 7);
  ASSERT_STR_EQ(m.layers[3].cfg.inputs[0], "a_relu");
  ASSERT_EQ_INT(m.layers[2].src[0], -1);
  nn_model_free(&m);
}

/* --set model.layers.N.inputs = [...] replaces the list. */
static void test_set_inputs(void) {
  nn_error err;
  const char *sets[] = {"model.layers.2.inputs=[\"b\", \"a\", \"b\"]"};
  int rc = parse(&job_a, graph_job, sets, 1, &err);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_EQ_INT(job_a.model.layers[2].ninputs, 3);
  ASSERT_STR_EQ(job_a.model.layers[2].inputs[0], "b");
  ASSERT_STR_EQ(job_a.model.layers[2].inputs[2], "b");
  nn_model m;
  ASSERT_OK(build(&m, &job_a, &err));
  ASSERT_EQ_INT(m.layers[3].out.dim[0], 3 + 4 + 3);
  nn_model_free(&m);
  /* the wrong type on the command line */
  const char *bad[] = {"model.layers.2.inputs=[1, 2]"};
  ASSERT_EQ_INT(parse(&job_a, graph_job, bad, 1, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "item 0: expected a string");
}

static void test_inputs_errors(void) {
  nn_error err;
  char text[2048];
  /* a string instead of a list, with the line and column of the value */
  snprintf(text, sizeof text, "%s", graph_job);
  char *p = strstr(text, "inputs = [\"input\"]");
  memcpy(p, "inputs = \"input\"  ", strlen("inputs = [\"input\"]"));
  ASSERT_EQ_INT(parse(&job_a, text, NULL, 0, &err), NN_ESCHEMA);
  ASSERT_EQ_INT(err.line, 13);
  ASSERT_STR_CONTAINS(err.msg, "an array of strings");
  /* more names than a layer reads */
  const char *many[] = {"model.layers.2.inputs=[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]"};
  ASSERT_EQ_INT(parse(&job_a, graph_job, many, 1, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "at most 8 items");
  /* a name that is no layer above: the model's error, at the layer's line */
  const char *later[] = {"model.layers.1.inputs=[\"cat\"]"};
  ASSERT_OK(parse(&job_a, graph_job, later, 1, &err));
  nn_model m;
  ASSERT_EQ_INT(build(&m, &job_a, &err), NN_ESCHEMA);
  ASSERT_STR_EQ(err.file, "job.toml");
  ASSERT_EQ_INT(err.line, 10);
  ASSERT_STR_CONTAINS(err.msg, "layer 1 'b' (dense): input 'cat' is not a layer above this one");
  /* a shape mismatch: concat of [4] (a's relu) and a [3, ...]-ranked input */
  const char *shape[] = {"model.layers.1.units=0"};
  ASSERT_EQ_INT(parse(&job_a, graph_job, shape, 1, &err), NN_ESCHEMA); /* caught by the keys */
  const char *add[] = {"model.layers.2.type=\"add\""};
  ASSERT_OK(parse(&job_a, graph_job, add, 1, &err));
  ASSERT_EQ_INT(build(&m, &job_a, &err), NN_ESHAPE);
  ASSERT_EQ_INT(err.line, 15);
  ASSERT_STR_CONTAINS(err.msg, "layer 2 'cat' (add): input 'b' is [3], 'a_relu' is [4]: shapes differ");
  /* an error in an expanded layer points at its config ("a_relu" -> a) */
  nn_error e;
  nn_error_clear(&e);
  e.code = NN_ESHAPE;
  snprintf(e.where, sizeof e.where, "a_relu");
  ASSERT_EQ_INT(nn_job_model_error(&job_a, &e), NN_ESHAPE);
  ASSERT_EQ_INT(e.line, 5);
}

/* inputs cross pack/unpack unchanged. */
static void test_round_trip(void) {
  nn_error err;
  ASSERT_OK(parse(&job_a, graph_job, NULL, 0, &err));
  uint8_t *buf = NULL;
  size_t len = 0;
  ASSERT_OK(nn_job_pack(&job_a, &buf, &len, &err));
  memset(&job_b, 0, sizeof job_b);
  int rc = nn_job_unpack(&job_b, buf, len, &err);
  free(buf);
  if (rc) fprintf(stderr, "%s\n", fmt(&err));
  ASSERT_OK(rc);
  ASSERT_TRUE(nn_job_equal(&job_a, &job_b));
  ASSERT_EQ_INT(job_b.model.layers[2].ninputs, 2);
  ASSERT_STR_EQ(job_b.model.layers[2].inputs[0], "a");
  ASSERT_EQ_INT(job_b.model.layers[0].ninputs, 0);
  /* and a changed list is a different job */
  snprintf(job_b.model.layers[2].inputs[0], NN_NAME_MAX, "b");
  ASSERT_TRUE(!nn_job_equal(&job_a, &job_b));
}

TEST_MAIN(TEST(test_parsed_and_built), TEST(test_set_inputs), TEST(test_inputs_errors),
          TEST(test_round_trip))
