/* test_lint.c: nn_lint_model (coordinator/lint.h): a softmax before
 * cross_entropy is refused (a softmax layer, a dense's activation, behind a
 * flatten or dropout) naming the job file, line and layer; a relu or sigmoid
 * output of a classifier is warned about (also behind pooling); mse and
 * ordinary logits pass silently. */
#include <stdio.h>
#include <string.h>

#include "coordinator/job.h"
#include "coordinator/lint.h"
#include "core/loss.h"
#include "core/model.h"
#include "test.h"

static nn_job job; /* large: not on the stack */
static char warned[1024];
static int nwarn;

static void on_warn(void *user, const char *msg) {
  (void)user;
  snprintf(warned, sizeof warned, "%s", msg);
  nwarn++;
}

/* Parse `layers` (TOML for [[model.layers]] tables after a [model] with
 * input_shape = [1, 4, 4]), build the model and lint it for `loss`. */
static int lint(const char *layers, int loss, nn_error *err) {
  char text[2048];
  snprintf(text, sizeof text, "[data]\ntrain = \"t.h5\"\n[model]\ninput_shape = [1, 4, 4]\n%s",
           layers);
  nn_error_clear(err);
  int rc = nn_job_parse(&job, text, strlen(text), "lint.toml", NULL, 0, err);
  if (rc) {
    fprintf(stderr, "parse: %s\n", err->msg);
    return -1000;
  }
  nn_model m;
  nn_shape in = {3, {1, 4, 4}};
  rc = nn_model_build(&m, &in, job.model.layers, job.model.nlayers, 1, err);
  if (rc) {
    fprintf(stderr, "build: %s\n", err->msg);
    return -1000;
  }
  nwarn = 0;
  warned[0] = '\0';
  rc = nn_lint_model(&job, &m, loss, on_warn, NULL, err);
  nn_model_free(&m);
  return rc;
}

#define L(type) "[[model.layers]]\ntype = \"" type "\"\n"
#define DENSE(units) "[[model.layers]]\ntype = \"dense\"\nunits = " #units "\n"

static void test_softmax_layer_refused(void) {
  nn_error err;
  /* lines: 5 flatten, 7 dense, 10 softmax */
  ASSERT_EQ_INT(lint(L("flatten") DENSE(3) L("softmax"), NN_LOSS_SOFTMAX_CE, &err), NN_ESCHEMA);
  ASSERT_STR_EQ(err.file, "lint.toml");
  ASSERT_EQ_INT(err.line, 10);
  ASSERT_STR_EQ(err.where, "softmax2");
  ASSERT_STR_CONTAINS(err.msg, "layer 2 'softmax2' (softmax): softmax applied twice: "
                               "cross_entropy takes logits; remove the softmax layer");
  /* behind a dropout and a flatten */
  ASSERT_EQ_INT(lint(L("flatten") DENSE(3) L("softmax") L("dropout") L("flatten"),
                     NN_LOSS_SOFTMAX_CE, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "softmax applied twice");
  /* with mse a softmax output is a choice, not a mistake */
  ASSERT_OK(lint(L("flatten") DENSE(3) L("softmax"), NN_LOSS_MSE, &err));
  ASSERT_EQ_INT(nwarn, 0);
}

static void test_dense_softmax_refused(void) {
  nn_error err;
  ASSERT_EQ_INT(lint(L("flatten") "[[model.layers]]\nname = \"head\"\ntype = \"dense\"\n"
                     "units = 3\nactivation = \"softmax\"\n", NN_LOSS_SOFTMAX_CE, &err),
                NN_ESCHEMA);
  ASSERT_EQ_INT(err.line, 7);
  ASSERT_STR_EQ(err.where, "head");
  ASSERT_STR_CONTAINS(err.msg, "layer 1 'head' (dense): softmax applied twice");
  ASSERT_STR_CONTAINS(err.msg, "activation = \"softmax\"");
}

static void test_nonnegative_output_warned(void) {
  nn_error err;
  ASSERT_OK(lint(L("flatten") DENSE(3) L("relu"), NN_LOSS_SOFTMAX_CE, &err));
  ASSERT_EQ_INT(nwarn, 1);
  ASSERT_STR_CONTAINS(warned, "lint.toml:10: layer 2 'relu2'");
  ASSERT_STR_CONTAINS(warned, "cannot go below zero");
  /* a dense's activation, and a relu behind global pooling */
  ASSERT_OK(lint(L("flatten") "[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
                 "activation = \"sigmoid\"\n", NN_LOSS_SOFTMAX_CE, &err));
  ASSERT_EQ_INT(nwarn, 1);
  ASSERT_STR_CONTAINS(warned, "layer 1 'dense1'");
  ASSERT_STR_CONTAINS(warned, "squashed");
  ASSERT_OK(lint("[[model.layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel_size = [3, 3]\n"
                 "activation = \"relu\"\n" L("global_avgpool"), NN_LOSS_SOFTMAX_CE, &err));
  ASSERT_EQ_INT(nwarn, 1);
  /* mse does not warn */
  ASSERT_OK(lint(L("flatten") DENSE(3) L("relu"), NN_LOSS_MSE, &err));
  ASSERT_EQ_INT(nwarn, 0);
}

/* binary_cross_entropy takes logits: a sigmoid at the output is warned
 * about (a dense's activation or a layer of its own); a relu is not (its
 * outputs are valid logits, if one-sided), nor is a sigmoid with mse. */
static void test_bce_sigmoid_warned(void) {
  nn_error err;
  ASSERT_OK(lint(L("flatten") "[[model.layers]]\ntype = \"dense\"\nunits = 3\n"
                 "activation = \"sigmoid\"\n", NN_LOSS_BCE, &err));
  ASSERT_EQ_INT(nwarn, 1);
  ASSERT_STR_CONTAINS(warned, "layer 1 'dense1'");
  ASSERT_STR_CONTAINS(warned, "binary_cross_entropy applies the sigmoid itself");
  ASSERT_OK(lint(L("flatten") DENSE(3) L("sigmoid") L("dropout"), NN_LOSS_BCE, &err));
  ASSERT_EQ_INT(nwarn, 1);
  ASSERT_STR_CONTAINS(warned, "'sigmoid2'");
  ASSERT_OK(lint(L("flatten") DENSE(3), NN_LOSS_BCE, &err));
  ASSERT_EQ_INT(nwarn, 0);
  ASSERT_OK(lint(L("flatten") DENSE(3) L("sigmoid"), NN_LOSS_MSE, &err));
  ASSERT_EQ_INT(nwarn, 0);
}

static void test_clean_models_pass(void) {
  nn_error err;
  ASSERT_OK(lint(L("flatten") DENSE(8) L("relu") DENSE(3), NN_LOSS_SOFTMAX_CE, &err));
  ASSERT_EQ_INT(nwarn, 0);
  /* a softmax inside the network (not at the output) is no double softmax */
  ASSERT_OK(lint(L("flatten") DENSE(3) L("softmax") DENSE(3), NN_LOSS_SOFTMAX_CE, &err));
  ASSERT_EQ_INT(nwarn, 0);
  /* a merge ends the walk: add(relu, dense) is not flagged */
  ASSERT_OK(lint(L("flatten") "[[model.layers]]\nname = \"a\"\ntype = \"dense\"\nunits = 3\n"
                 "[[model.layers]]\nname = \"r\"\ntype = \"relu\"\n"
                 "[[model.layers]]\nname = \"b\"\ntype = \"dense\"\nunits = 3\ninputs = [\"a\"]\n"
                 "[[model.layers]]\ntype = \"add\"\ninputs = [\"r\", \"b\"]\n",
                 NN_LOSS_SOFTMAX_CE, &err));
  ASSERT_EQ_INT(nwarn, 0);
  nn_model m;
  memset(&m, 0, sizeof m);
  ASSERT_OK(nn_lint_model(&job, &m, NN_LOSS_SOFTMAX_CE, NULL, NULL, &err)); /* no layers */
}

TEST_MAIN(TEST(test_softmax_layer_refused), TEST(test_dense_softmax_refused),
          TEST(test_nonnegative_output_warned), TEST(test_bce_sigmoid_warned),
          TEST(test_clean_models_pass))
