/* test_job_seams.c: the error paths of the job reader that no other test
 * reached, pinned down when read_layer (job.c), nn__key_set_toml
 * (job_keys.c) and msg_to_keys (job_pack.c) were split into short
 * functions: a qualified layer name too long, blocks nested too deeply, an
 * `inputs` item that is not a name, and a JobSpec whose int list (its own
 * field) or `extra` value is bad. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/job.h"
#include "job_test.h"
#include "nntrain.pb-c.h"
#include "test.h"

static const char *head =
    "[data]\n"                /* 1 */
    "train = \"t.h5\"\n"      /* 2 */
    "[model]\n"               /* 3 */
    "input_shape = [4]\n";    /* 4 */

/* head + body parsed into job_b; the status, the error in *err. */
static int parse_body(const char *body, nn_error *err) {
  char text[4096];
  snprintf(text, sizeof text, "%s%s", head, body);
  return parse(&job_b, text, NULL, 0, err);
}

static void test_name_too_long(void) {
  nn_error err;
  /* 40 characters are a good name alone, too long after "residual0." */
  const char *body =
      "[[model.layers]]\n"                                       /* 5 */
      "type = \"residual\"\n"                                    /* 6 */
      "  [[model.layers.layers]]\n"                              /* 7 */
      "  type = \"dense\"\n"                                     /* 8 */
      "  units = 4\n"                                            /* 9 */
      "  name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n";  /* 10 */
  ASSERT_EQ_INT(parse_body(body, &err), NN_ESCHEMA);
  ASSERT_EQ_INT(err.line, 10);
  ASSERT_EQ_INT(err.col, 10);
  ASSERT_STR_CONTAINS(err.msg, "model.layers[0].layers[0].name: the layer's name "
                               "\"residual0.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is "
                               "longer than 47 characters");
}

static void test_nested_too_deeply(void) {
  nn_error err;
  /* nine residual blocks one inside the other, named "r" so the qualified
   * names stay short; the tenth level's path no longer fits */
  char body[2048], hdr[160] = "model.layers";
  size_t w = 0;
  for (int d = 0; d < 10; d++) {
    w += (size_t)snprintf(body + w, sizeof body - w, "[[%s]]\ntype = \"%s\"\n%s", hdr,
                          d < 9 ? "residual" : "dense", d < 9 ? "name = \"r\"\n" : "units = 4\n");
    strcat(hdr, ".layers");
  }
  ASSERT_TRUE(w < sizeof body);
  int rc = parse_body(body, &err);
  if (rc != NN_ESCHEMA) fprintf(stderr, "rc %d: %s\n", rc, fmt(&err));
  ASSERT_EQ_INT(rc, NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "model.layers[0].layers[0].layers[0].layers[0].layers[0]."
                               "layers[0].layers[0].layers[0].layers[0] (residual): layers "
                               "nested too deeply");
}

static void test_inputs_not_a_name(void) {
  nn_error err;
  const char *body =
      "[[model.layers]]\n"                 /* 5 */
      "type = \"dense\"\n"                 /* 6 */
      "units = 4\n"                        /* 7 */
      "inputs = [\"input\", \"a,b\"]\n";   /* 8 */
  ASSERT_EQ_INT(parse_body(body, &err), NN_ESCHEMA);
  ASSERT_EQ_INT(err.line, 8);
  ASSERT_EQ_INT(err.col, 20); /* the bad item, not the array */
  ASSERT_STR_CONTAINS(err.msg, "item 1: \"a,b\" is not a name (1 to");
}

/* A job with a block (its block_len and projection travel in `extra`). */
static const char *packed_body =
    "[[model.layers]]\n"
    "type = \"residual\"\n"
    "projection = true\n"
    "  [[model.layers.layers]]\n"
    "  type = \"dense\"\n"
    "  units = 4\n";

/* Parse the job of packed_body into job_a, then job_test.h's
 * unpack_edited_job: edit the packed message, unpack into job_b. */
static int unpack_edited(void (*edit)(Nntrain__JobSpec *), nn_error *err) {
  char text[1024];
  snprintf(text, sizeof text, "%s%s", head, packed_body);
  int rc = parse(&job_a, text, NULL, 0, err);
  return rc ? rc : unpack_edited_job(edit, err);
}

static Nntrain__ModelSpec model_copy;
static Nntrain__LayerSpec layer_copy, *layer_ptrs[2];
static Nntrain__Extra extra_copy, *extra_ptrs[8];
static int32_t shape[5] = {1, 1, 1, 1, 1};

/* input_shape with more items than the struct holds */
static void edit_shape(Nntrain__JobSpec *m) {
  model_copy = *m->model;
  model_copy.n_input_shape = 5;
  model_copy.input_shape = shape;
  m->model = &model_copy;
}

/* the block's block_len (in `extra`) not a number */
static void edit_extra(Nntrain__JobSpec *m) {
  model_copy = *m->model;
  layer_copy = *model_copy.layers[0];
  for (size_t i = 0; i < layer_copy.n_extra && i < 8; i++) {
    extra_ptrs[i] = layer_copy.extra[i];
    if (!strcmp(layer_copy.extra[i]->key, "block_len")) {
      extra_copy = *layer_copy.extra[i];
      extra_copy.value = "x";
      extra_ptrs[i] = &extra_copy;
    }
  }
  layer_copy.extra = extra_ptrs;
  layer_ptrs[0] = &layer_copy;
  layer_ptrs[1] = model_copy.layers[1];
  model_copy.layers = layer_ptrs;
  m->model = &model_copy;
}

static void test_jobspec_bad_values(void) {
  nn_error err;
  ASSERT_EQ_INT(unpack_edited(edit_shape, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "JobSpec: ");
  ASSERT_STR_CONTAINS(err.msg, "input_shape: 5 items, at most 4 allowed");
  ASSERT_EQ_INT(model_copy.n_layers, 2);
  ASSERT_EQ_INT(unpack_edited(edit_extra, &err), NN_ECKPT);
  ASSERT_STR_CONTAINS(err.msg, "JobSpec: ");
  ASSERT_STR_CONTAINS(err.msg, "block_len: ");
}

TEST_MAIN(TEST(test_name_too_long), TEST(test_nested_too_deeply), TEST(test_inputs_not_a_name),
          TEST(test_jobspec_bad_values))
