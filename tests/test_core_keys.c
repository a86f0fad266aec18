/* test_core_keys.c: the choice-list reader of core/keys.h (nn_choice_count,
 * nn_choice_index, nn_choice_at), including its edges: empty lists, empty
 * entries from separators at the ends or doubled, prefixes that are not
 * entries, and entries longer than the caller's buffer. */
#include "core/keys.h"

#include "test.h"

static void test_count(void) {
  ASSERT_EQ_INT(nn_choice_count(NULL), 0);
  ASSERT_EQ_INT(nn_choice_count(""), 0);
  ASSERT_EQ_INT(nn_choice_count("a"), 1);
  ASSERT_EQ_INT(nn_choice_count("a|b|c"), 3);
  ASSERT_EQ_INT(nn_choice_count("|"), 2);
  ASSERT_EQ_INT(nn_choice_count("a|"), 2);
  ASSERT_EQ_INT(nn_choice_count("a||b"), 3);
}

static void test_index_first_last_middle(void) {
  ASSERT_EQ_INT(nn_choice_index("relu|tanh|sigmoid", "relu"), 0);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh|sigmoid", "tanh"), 1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh|sigmoid", "sigmoid"), 2);
  ASSERT_EQ_INT(nn_choice_index("only", "only"), 0);
}

static void test_index_not_found(void) {
  ASSERT_EQ_INT(nn_choice_index(NULL, "a"), -1);
  ASSERT_EQ_INT(nn_choice_index("", "a"), -1);
  ASSERT_EQ_INT(nn_choice_index("a|b", NULL), -1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "Relu"), -1);
  /* a prefix of an entry, an entry that is a prefix, or across a separator */
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "rel"), -1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "relux"), -1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "relu|tanh"), -1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "u|t"), -1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "|"), -1);
  ASSERT_EQ_INT(nn_choice_index("relu|tanh", "tanh|"), -1);
}

static void test_index_empty_string(void) {
  /* "" is an entry only where the list has an empty one */
  ASSERT_EQ_INT(nn_choice_index("", ""), -1);
  ASSERT_EQ_INT(nn_choice_index("a|b", ""), -1);
  ASSERT_EQ_INT(nn_choice_index("|a", ""), 0);
  ASSERT_EQ_INT(nn_choice_index("a|", ""), 1);
  ASSERT_EQ_INT(nn_choice_index("a||b", ""), 1);
  ASSERT_EQ_INT(nn_choice_index("a||b", "b"), 2);
  ASSERT_EQ_INT(nn_choice_index("|", ""), 0);
}

static void test_at(void) {
  char buf[8];
  ASSERT_EQ_INT(nn_choice_at("relu|tanh|sigmoid", 0, buf, sizeof buf), 4);
  ASSERT_STR_EQ(buf, "relu");
  ASSERT_EQ_INT(nn_choice_at("relu|tanh|sigmoid", 2, buf, sizeof buf), 7);
  ASSERT_STR_EQ(buf, "sigmoid");
  ASSERT_EQ_INT(nn_choice_at("a||b", 1, buf, sizeof buf), 0);
  ASSERT_STR_EQ(buf, "");
  ASSERT_EQ_INT(nn_choice_at("a|", 1, buf, sizeof buf), 0);
  ASSERT_STR_EQ(buf, "");
}

static void test_at_out_of_range(void) {
  char buf[8] = "junk";
  ASSERT_EQ_INT(nn_choice_at("a|b", 2, buf, sizeof buf), -1);
  ASSERT_STR_EQ(buf, "");
  strcpy(buf, "junk");
  ASSERT_EQ_INT(nn_choice_at("a|b", -1, buf, sizeof buf), -1);
  ASSERT_STR_EQ(buf, "");
  ASSERT_EQ_INT(nn_choice_at("", 0, buf, sizeof buf), -1);
  ASSERT_EQ_INT(nn_choice_at(NULL, 0, buf, sizeof buf), -1);
}

static void test_at_truncates(void) {
  char buf[5];
  ASSERT_EQ_INT(nn_choice_at("x|glorot_uniform", 1, buf, sizeof buf), 14);
  ASSERT_STR_EQ(buf, "glor");
  char one[1] = {'z'};
  ASSERT_EQ_INT(nn_choice_at("abc", 0, one, sizeof one), 3);
  ASSERT_EQ_INT(one[0], '\0');
}

/* Every entry read back by nn_choice_at is found at its own position. */
static void test_at_index_roundtrip(void) {
  const char *lists[] = {"cross_entropy|mse", "a|b|c|d|e", "x", "a||b|"};
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    int n = nn_choice_count(lists[i]);
    for (int k = 0; k < n; k++) {
      char buf[32];
      ASSERT_TRUE(nn_choice_at(lists[i], k, buf, sizeof buf) >= 0);
      int want = k;
      /* a repeated empty entry is found at its first place */
      if (!buf[0]) want = nn_choice_index(lists[i], "");
      ASSERT_EQ_INT(nn_choice_index(lists[i], buf), want);
    }
    ASSERT_EQ_INT(nn_choice_at(lists[i], n, (char[4]){0}, 4), -1);
  }
}

TEST_MAIN(TEST(test_count), TEST(test_index_first_last_middle), TEST(test_index_not_found),
          TEST(test_index_empty_string), TEST(test_at), TEST(test_at_out_of_range),
          TEST(test_at_truncates), TEST(test_at_index_roundtrip))
