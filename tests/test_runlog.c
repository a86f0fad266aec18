/* test_runlog.c: the run log (coordinator/run/runlog.h): every line of
 * metrics.jsonl is valid JSON whatever strings and numbers go in: quotes,
 * backslashes, control characters, non-ASCII, invalid UTF-8, NaN and
 * infinities; the metrics fields keep their names; the history matches the
 * file. Lines are checked with jansson's strict parser. */
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "coordinator/run/runlog.h"
#include "test.h"

static char dir[256];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/nn_runlog_XXXXXX");
  if (!mkdtemp(dir)) abort();
}

/* Read the whole metrics.jsonl. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static void test_hostile_strings_and_numbers(void) {
  make_dir();
  nn_error err = {0};
  nn_runlog log;
  FILE *out = fopen("/dev/null", "w");
  ASSERT_OK(nn_runlog_open(&log, dir, out, 0, &err));
  const char *names[] = {"quote\"d", "back\\slash", "ctl\x01\x1f\n\t", "caf\xc3\xa9 \xe2\x82\xac",
                         "bad utf8 \xff\xfe", ""};
  const double nums[] = {NAN, INFINITY, -INFINITY, 1e-300, -0.0, 123456789.125};
  for (int i = 0; i < 6; i++) {
    json_t *r = nn_runlog_record("start");
    nn_json_str(r, "job", names[i]);
    nn_json_num(r, "loss", nums[i]);
    nn_json_int(r, "step", -i);
    ASSERT_OK(nn_runlog_write(&log, r, &err));
  }
  char path[300];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  char *text = slurp(path);
  ASSERT_TRUE(text != NULL);
  ASSERT_STR_EQ(text, log.hist.p); /* the history is the file */
  int line = 0;
  for (char *p = text, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1, line++) {
    json_error_t je;
    json_t *o = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &je);
    if (!o) NN__FAIL("line %d is not JSON: %s: %.*s", line + 1, je.text, (int)(nl - p), p);
    ASSERT_TRUE(json_is_real(json_object_get(o, "time")));
    ASSERT_STR_EQ(json_string_value(json_object_get(o, "event")), "start");
    const char *job = json_string_value(json_object_get(o, "job"));
    ASSERT_TRUE(job != NULL);
    if (line < 4) ASSERT_STR_EQ(job, names[line]); /* valid UTF-8 round-trips exactly */
    json_t *loss = json_object_get(o, "loss");
    if (isfinite(nums[line])) ASSERT_NEAR(json_real_value(loss), nums[line], 0);
    else ASSERT_TRUE(json_is_null(loss));
    ASSERT_EQ_INT(json_integer_value(json_object_get(o, "step")), -line);
    json_decref(o);
  }
  ASSERT_EQ_INT(line, 6);
  nn_runlog_close(&log);
  fclose(out);
  unlink(path);
  rmdir(dir);
}

static void test_metrics_fields(void) {
  nn_metrics_result r = {0};
  r.num_classes = 3;
  r.loss = 0.5;
  r.accuracy = 0.6;
  r.ntopk = 2;
  int topk[2] = {1, 2};
  double topa[2] = {0.6, 0.7};
  memcpy(r.topk, topk, sizeof topk);
  memcpy(r.topk_accuracy, topa, sizeof topa);
  r.macro_precision = 0.25;
  r.macro_recall = NAN;
  r.macro_f1 = 0.125;
  json_t *o = json_object();
  nn_json_metrics(o, &r, "val");
  char *s = json_dumps(o, JSON_REAL_PRECISION(15));
  ASSERT_STR_EQ(s, "{\"val_loss\": 0.5, \"val_accuracy\": 0.6, \"val_top1_accuracy\": 0.6, "
                   "\"val_top2_accuracy\": 0.7, \"val_macro_precision\": 0.25, "
                   "\"val_macro_recall\": null, \"val_macro_f1\": 0.125}");
  free(s);
  json_decref(o);
  nn_metrics_result g = {0};
  g.loss = 5.25;
  g.mse = 5.25;
  g.mae = 1.75;
  g.r2 = -20;
  o = json_object();
  nn_json_metrics(o, &g, "");
  s = json_dumps(o, JSON_REAL_PRECISION(15));
  ASSERT_STR_EQ(s, "{\"loss\": 5.25, \"mse\": 5.25, \"mae\": 1.75, \"r2\": -20.0}");
  free(s);
  json_decref(o);
}

static void test_unwritable_dir(void) {
  nn_error err = {0};
  nn_runlog log;
  ASSERT_EQ_INT(nn_runlog_open(&log, "/proc/nntrain-no/such", NULL, 1, &err), NN_EIO);
  ASSERT_TRUE(strstr(err.file, "/proc") != NULL);
  nn_runlog_close(&log);
}

TEST_MAIN(TEST(test_hostile_strings_and_numbers), TEST(test_metrics_fields),
          TEST(test_unwritable_dir))
