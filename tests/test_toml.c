/* test_toml.c: unit tests of the TOML 1.0 parser (src/toml).
 *
 * Covers every value type, the positions recorded on values and in errors,
 * a table of invalid documents (each must fail with NN_ESYNTAX, a message and
 * a position), the accessors, inputs without a terminating NUL, and the
 * nesting limit. The fixture-based conformance check is tests/e2e_toml2json.sh. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "toml/toml.h"

/* Parse a NUL-terminated document; returns the root or NULL (err filled). */
static nn_toml_value *parse(const char *src, nn_error *err) {
  nn_toml_value *root = NULL;
  nn_error_clear(err);
  if (nn_toml_parse(src, strlen(src), "t.toml", &root, err) != 0) return NULL;
  return root;
}

/* Follow a path of plain keys, one level per argument, ending with NULL. */
static nn_toml_value *at_path(nn_toml_value *v, const char *k1, const char *k2,
                              const char *k3) {
  if (k1) v = nn_toml_get(v, k1);
  if (v && k2) v = nn_toml_get(v, k2);
  if (v && k3) v = nn_toml_get(v, k3);
  return v;
}

static void test_strings(void) {
  nn_error err;
  nn_toml_value *r = parse(
      "a = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600\"\n"
      "b = 'C:\\path\\x'\n"
      "c = \"\"\"\nline1\nline2 \\\n    joined\"\"\"\n"
      "d = '''\nraw \\n ''text'' '''\n"
      "e = \"\"\"two quotes: \"\"\"\"\"\n"
      "f = \"nul\\u0000inside\"\n"
      "g = \"\"\n"
      "h = \"\\b\\f\\r\\n\"\n",
      &err);
  ASSERT_TRUE(r != NULL);
  nn_toml_value *v = nn_toml_get(r, "a");
  ASSERT_EQ_INT(v->type, NN_TOML_STRING);
  ASSERT_STR_EQ(v->u.s.ptr, "tab\there \"q\" \\ \xc3\xa9 \xf0\x9f\x98\x80");
  ASSERT_STR_EQ(nn_toml_get(r, "b")->u.s.ptr, "C:\\path\\x");
  ASSERT_STR_EQ(nn_toml_get(r, "c")->u.s.ptr, "line1\nline2 joined");
  ASSERT_STR_EQ(nn_toml_get(r, "d")->u.s.ptr, "raw \\n ''text'' ");
  ASSERT_STR_EQ(nn_toml_get(r, "e")->u.s.ptr, "two quotes: \"\"");
  v = nn_toml_get(r, "f");
  ASSERT_EQ_INT(v->u.s.len, 10);
  ASSERT_TRUE(memcmp(v->u.s.ptr, "nul\0inside", 10) == 0);
  ASSERT_EQ_INT(nn_toml_get(r, "g")->u.s.len, 0);
  ASSERT_STR_EQ(nn_toml_get(r, "g")->u.s.ptr, "");
  ASSERT_STR_EQ(nn_toml_get(r, "h")->u.s.ptr, "\b\f\r\n");
  nn_toml_free(r);
}

static void test_integers(void) {
  nn_error err;
  nn_toml_value *r = parse("a = +99\nb = -17\nc = 1_000\nd = 0\ne = -0\n"
                           "f = 9223372036854775807\ng = -9223372036854775808\n"
                           "h = 0xDEAD_beef\ni = 0o755\nj = 0b1101\nk = 0x7fffffffffffffff\n",
                           &err);
  ASSERT_TRUE(r != NULL);
  ASSERT_EQ_INT(nn_toml_get(r, "a")->type, NN_TOML_INTEGER);
  ASSERT_EQ_INT(nn_toml_get(r, "a")->u.i, 99);
  ASSERT_EQ_INT(nn_toml_get(r, "b")->u.i, -17);
  ASSERT_EQ_INT(nn_toml_get(r, "c")->u.i, 1000);
  ASSERT_EQ_INT(nn_toml_get(r, "d")->u.i, 0);
  ASSERT_EQ_INT(nn_toml_get(r, "e")->u.i, 0);
  ASSERT_TRUE(nn_toml_get(r, "f")->u.i == INT64_MAX);
  ASSERT_TRUE(nn_toml_get(r, "g")->u.i == INT64_MIN);
  ASSERT_EQ_INT(nn_toml_get(r, "h")->u.i, 0xDEADBEEF);
  ASSERT_EQ_INT(nn_toml_get(r, "i")->u.i, 0755);
  ASSERT_EQ_INT(nn_toml_get(r, "j")->u.i, 13);
  ASSERT_TRUE(nn_toml_get(r, "k")->u.i == INT64_MAX);
  nn_toml_free(r);
}

static void test_floats(void) {
  nn_error err;
  nn_toml_value *r = parse("a = 3.1415\nb = -0.01\nc = 5e+22\nd = 1e06\ne = -2E-2\n"
                           "f = 224_617.445_991\ng = inf\nh = -inf\ni = nan\nj = +nan\n"
                           "k = -0.0\nl = 1e1_0\n",
                           &err);
  ASSERT_TRUE(r != NULL);
  ASSERT_EQ_INT(nn_toml_get(r, "a")->type, NN_TOML_FLOAT);
  ASSERT_TRUE(nn_toml_get(r, "a")->u.f == 3.1415);
  ASSERT_TRUE(nn_toml_get(r, "b")->u.f == -0.01);
  ASSERT_TRUE(nn_toml_get(r, "c")->u.f == 5e22);
  ASSERT_TRUE(nn_toml_get(r, "d")->u.f == 1e6);
  ASSERT_TRUE(nn_toml_get(r, "e")->u.f == -2e-2);
  ASSERT_TRUE(nn_toml_get(r, "f")->u.f == 224617.445991);
  ASSERT_TRUE(isinf(nn_toml_get(r, "g")->u.f) && nn_toml_get(r, "g")->u.f > 0);
  ASSERT_TRUE(isinf(nn_toml_get(r, "h")->u.f) && nn_toml_get(r, "h")->u.f < 0);
  ASSERT_TRUE(isnan(nn_toml_get(r, "i")->u.f));
  ASSERT_TRUE(isnan(nn_toml_get(r, "j")->u.f));
  ASSERT_TRUE(nn_toml_get(r, "k")->u.f == 0.0 && signbit(nn_toml_get(r, "k")->u.f));
  ASSERT_TRUE(nn_toml_get(r, "l")->u.f == 1e10);
  nn_toml_free(r);
}

static void test_booleans(void) {
  nn_error err;
  nn_toml_value *r = parse("t = true\nf = false\n", &err);
  ASSERT_TRUE(r != NULL);
  ASSERT_EQ_INT(nn_toml_get(r, "t")->type, NN_TOML_BOOL);
  ASSERT_EQ_INT(nn_toml_get(r, "t")->u.b, 1);
  ASSERT_EQ_INT(nn_toml_get(r, "f")->u.b, 0);
  nn_toml_free(r);
}

static void test_datetimes(void) {
  nn_error err;
  nn_toml_value *r = parse("a = 1979-05-27T07:32:00Z\n"
                           "b = 1979-05-27 00:32:00.999999-07:30\n"
                           "c = 1979-05-27T07:32:00.123456789123\n"
                           "d = 2024-02-29\n"
                           "e = 23:59:60.5\n"
                           "f = 2000-02-29t01:02:03z\n",
                           &err);
  ASSERT_TRUE(r != NULL);
  nn_toml_value *v = nn_toml_get(r, "a");
  ASSERT_EQ_INT(v->type, NN_TOML_DATETIME);
  ASSERT_EQ_INT(v->u.dt.year, 1979);
  ASSERT_EQ_INT(v->u.dt.month, 5);
  ASSERT_EQ_INT(v->u.dt.day, 27);
  ASSERT_EQ_INT(v->u.dt.hour, 7);
  ASSERT_EQ_INT(v->u.dt.minute, 32);
  ASSERT_EQ_INT(v->u.dt.has_offset, 1);
  ASSERT_EQ_INT(v->u.dt.offset_z, 1);
  ASSERT_EQ_INT(v->u.dt.offset_minutes, 0);
  v = nn_toml_get(r, "b");
  ASSERT_EQ_INT(v->type, NN_TOML_DATETIME);
  ASSERT_EQ_INT(v->u.dt.offset_minutes, -(7 * 60 + 30));
  ASSERT_EQ_INT(v->u.dt.offset_z, 0);
  ASSERT_EQ_INT(v->u.dt.nanosecond, 999999000);
  ASSERT_EQ_INT(v->u.dt.frac_digits, 6);
  v = nn_toml_get(r, "c");
  ASSERT_EQ_INT(v->type, NN_TOML_DATETIME_LOCAL);
  ASSERT_EQ_INT(v->u.dt.nanosecond, 123456789);
  ASSERT_EQ_INT(v->u.dt.frac_digits, 12);
  ASSERT_EQ_INT(v->u.dt.has_offset, 0);
  v = nn_toml_get(r, "d");
  ASSERT_EQ_INT(v->type, NN_TOML_DATE_LOCAL);
  ASSERT_EQ_INT(v->u.dt.day, 29);
  ASSERT_EQ_INT(v->u.dt.hour, 0);
  v = nn_toml_get(r, "e");
  ASSERT_EQ_INT(v->type, NN_TOML_TIME_LOCAL);
  ASSERT_EQ_INT(v->u.dt.second, 60);
  ASSERT_EQ_INT(v->u.dt.nanosecond, 500000000);
  ASSERT_EQ_INT(v->u.dt.year, 0);
  ASSERT_EQ_INT(nn_toml_get(r, "f")->type, NN_TOML_DATETIME);
  nn_toml_free(r);
}

static void test_arrays(void) {
  nn_error err;
  nn_toml_value *r = parse("a = [ 1, 'two', [3.0, [true]], {x = 4}, ]\n"
                           "b = [\n  1, # one\n  # comment line\n  2\n]\n"
                           "c = []\n",
                           &err);
  ASSERT_TRUE(r != NULL);
  nn_toml_value *a = nn_toml_get(r, "a");
  ASSERT_EQ_INT(a->type, NN_TOML_ARRAY);
  ASSERT_EQ_INT(a->u.arr.n, 4);
  ASSERT_EQ_INT(a->u.arr.items[0]->u.i, 1);
  ASSERT_STR_EQ(a->u.arr.items[1]->u.s.ptr, "two");
  ASSERT_EQ_INT(a->u.arr.items[2]->type, NN_TOML_ARRAY);
  ASSERT_EQ_INT(a->u.arr.items[2]->u.arr.items[1]->u.arr.items[0]->u.b, 1);
  ASSERT_EQ_INT(nn_toml_get(a->u.arr.items[3], "x")->u.i, 4);
  ASSERT_EQ_INT(a->u.arr.items[0]->key_line, 0);
  nn_toml_value *b = nn_toml_get(r, "b");
  ASSERT_EQ_INT(b->u.arr.n, 2);
  ASSERT_EQ_INT(b->u.arr.items[1]->u.i, 2);
  ASSERT_EQ_INT(b->u.arr.items[1]->line, 5);
  ASSERT_EQ_INT(nn_toml_get(r, "c")->u.arr.n, 0);
  nn_toml_free(r);
}

static void test_tables(void) {
  nn_error err;
  nn_toml_value *r = parse("top = 1\n"
                           "[x.y.z.w]\n"
                           "[x]\n"
                           "k = 2\n"
                           "[fruit]\n"
                           "apple.color = 'red'\n"
                           "apple.taste.sweet = true\n"
                           "[fruit.apple.texture]\n"
                           "smooth = true\n"
                           "[[arr]]\n"
                           "n = 1\n"
                           "[arr.sub]\n"
                           "m = 1\n"
                           "[[arr]]\n"
                           "n = 2\n"
                           "[[arr.list]]\n"
                           "q = 3\n"
                           "[\"quoted.key\" . 'lit']\n"
                           "inl = { a.b = 1, c = { d = [] } }\n",
                           &err);
  ASSERT_TRUE(r != NULL);
  ASSERT_EQ_INT(nn_toml_get(r, "top")->u.i, 1);
  ASSERT_EQ_INT(at_path(r, "x", "k", NULL)->u.i, 2);
  ASSERT_EQ_INT(at_path(r, "x", "y", "z")->type, NN_TOML_TABLE);
  ASSERT_STR_EQ(at_path(r, "fruit", "apple", "color")->u.s.ptr, "red");
  ASSERT_EQ_INT(at_path(at_path(r, "fruit", "apple", "taste"), "sweet", NULL, NULL)->u.b, 1);
  ASSERT_EQ_INT(at_path(at_path(r, "fruit", "apple", "texture"), "smooth", NULL, NULL)->u.b, 1);
  nn_toml_value *arr = nn_toml_get(r, "arr");
  ASSERT_EQ_INT(arr->type, NN_TOML_ARRAY);
  ASSERT_EQ_INT(arr->u.arr.n, 2);
  ASSERT_EQ_INT(at_path(arr->u.arr.items[0], "sub", "m", NULL)->u.i, 1);
  ASSERT_EQ_INT(nn_toml_get(arr->u.arr.items[1], "n")->u.i, 2);
  nn_toml_value *list = nn_toml_get(arr->u.arr.items[1], "list");
  ASSERT_EQ_INT(list->u.arr.n, 1);
  ASSERT_EQ_INT(nn_toml_get(list->u.arr.items[0], "q")->u.i, 3);
  nn_toml_value *q = at_path(r, "quoted.key", "lit", NULL);
  ASSERT_TRUE(q != NULL);
  ASSERT_EQ_INT(at_path(nn_toml_get(q, "inl"), "a", "b", NULL)->u.i, 1);
  /* Keys keep the order written. */
  ASSERT_STR_EQ(r->u.tab.kv[0].key, "top");
  ASSERT_STR_EQ(r->u.tab.kv[1].key, "x");
  nn_toml_free(r);
}

/* Values remember where they and their keys were written (columns in characters). */
static void test_value_positions(void) {
  nn_error err;
  nn_toml_value *r = parse("# header\n"
                           "a = 1\n"
                           "  \"é\" = 'x'\n"
                           "[sec]\n"
                           "b.c = [1,\n  2]\n",
                           &err);
  ASSERT_TRUE(r != NULL);
  nn_toml_value *a = nn_toml_get(r, "a");
  ASSERT_EQ_INT(a->line, 2);
  ASSERT_EQ_INT(a->col, 5);
  ASSERT_EQ_INT(a->key_line, 2);
  ASSERT_EQ_INT(a->key_col, 1);
  nn_toml_value *e = nn_toml_get(r, "\xc3\xa9");
  ASSERT_TRUE(e != NULL);
  ASSERT_EQ_INT(e->key_col, 3);
  ASSERT_EQ_INT(e->col, 9); /* 'é' is one character, two bytes */
  nn_toml_value *sec = nn_toml_get(r, "sec");
  ASSERT_EQ_INT(sec->line, 4);
  ASSERT_EQ_INT(sec->col, 1);
  ASSERT_EQ_INT(sec->key_col, 2);
  nn_toml_value *c = at_path(r, "sec", "b", "c");
  ASSERT_EQ_INT(c->line, 5);
  ASSERT_EQ_INT(c->col, 7);
  ASSERT_EQ_INT(c->key_col, 3);
  ASSERT_EQ_INT(c->u.arr.items[1]->line, 6);
  ASSERT_EQ_INT(c->u.arr.items[1]->col, 3);
  ASSERT_EQ_INT(at_path(r, "sec", "b", NULL)->key_col, 1);
  nn_toml_free(r);
}

typedef struct pos_case {
  const char *src;
  int line, col;
  const char *msg_part;
} pos_case;

/* Exact line:column and message for a selection of errors. */
static void test_error_positions(void) {
  static const pos_case cases[] = {
      {"a = 1\nb = 2\na = 3\n", 3, 1, "duplicate key 'a' (first defined at 1:1)"},
      {"key \"value\"\n", 1, 5, "expected '=' after key"},
      {"x = 1\n\n  y = @\n", 3, 7, "expected a value"},
      {"[t]\nk = 1 z = 2\n", 2, 7, "expected end of line after value"},
      {"s = \"abc\\qdef\"\n", 1, 9, "invalid escape sequence '\\q'"},
      {"\xc3\xa9\xc3\xa9 = 1\n", 1, 1, "expected a key"},
      {"s = \"\xc3\xa9\xc3\xa9\x01\"\n", 1, 8, "control character U+0001"},
      {"[a]\n[b]\n[a]\n", 3, 2, "table 'a' already defined at 1:1"},
      {"a = [1,\n  2,\n  3 4]\n", 3, 5, "expected ',' or ']' in array"},
      {"n = 0x_1\n", 1, 7, "expected a digit"},
      {"d = 2023-02-29\n", 1, 5, "day 29 out of range"},
      {"ok = 1\nbad = \"\xff\"\n", 2, 8, "invalid UTF-8 byte 0xFF"},
      {"a = 1\r\nb = 2\rc = 3\n", 2, 6, "carriage return"},
      {"t = {a = 1, a = 2}\n", 1, 13, "duplicate key 'a' (first defined at 1:6)"},
      {"s = '''never closed\n\n", 1, 5, "unterminated multi-line literal string"},
      {"[fruit]\napple.color = 1\n[fruit.apple]\n", 3, 8,
       "table 'fruit.apple' already defined by dotted keys at 2:1"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    nn_error err;
    nn_toml_value *r = parse(cases[k].src, &err);
    if (r) nn_toml_free(r);
    ASSERT_TRUE(r == NULL);
    ASSERT_EQ_INT(err.code, NN_ESYNTAX);
    ASSERT_STR_EQ(err.file, "t.toml");
    if (err.line != cases[k].line || err.col != cases[k].col)
      fprintf(stderr, "case %zu: %s\n", k, err.msg);
    ASSERT_EQ_INT(err.line, cases[k].line);
    ASSERT_EQ_INT(err.col, cases[k].col);
    ASSERT_STR_CONTAINS(err.msg, cases[k].msg_part);
  }
  /* The formatted error is one line "file:line:col: message". */
  nn_error err;
  char buf[600];
  ASSERT_TRUE(parse("a = 1\na = 2\n", &err) == NULL);
  nn_error_format(&err, buf, sizeof buf);
  ASSERT_STR_CONTAINS(buf, "t.toml:2:1: duplicate key 'a'");
  ASSERT_TRUE(strchr(buf, '\n') == NULL);
}

/* A quoted key may hold U+0000 (TOML 1.0: "\u0000" = 1 is valid): keys carry
 * their length, so "a\u0000b", "a\u0000" and "a" are three keys. */
static void test_key_nul(void) {
  nn_error err;
  nn_toml_value *r = parse("\"\\u0000\" = 1\n\"a\\u0000b\" = 2\n\"a\\u0000\" = 3\na = 4\n"
                           "[\"t\\u0000\"]\nx = 5\n[[\"aot\\u0000\"]]\n", &err);
  ASSERT_TRUE(r != NULL);
  if (!r) {
    fprintf(stderr, "  %s\n", err.msg);
    return;
  }
  ASSERT_EQ_INT((long long)r->u.tab.n, 6);
  ASSERT_EQ_INT((long long)r->u.tab.kv[0].key_len, 1);
  ASSERT_EQ_INT(r->u.tab.kv[0].key[0], 0);
  ASSERT_EQ_INT(nn_toml_get_n(r, "\0", 1)->u.i, 1);
  ASSERT_EQ_INT(nn_toml_get_n(r, "a\0b", 3)->u.i, 2);
  ASSERT_EQ_INT(nn_toml_get_n(r, "a\0", 2)->u.i, 3);
  ASSERT_EQ_INT(nn_toml_get(r, "a")->u.i, 4);
  ASSERT_TRUE(nn_toml_get(r, "") == NULL); /* the C-string lookup never sees "\0" */
  ASSERT_EQ_INT(nn_toml_get(nn_toml_get_n(r, "t\0", 2), "x")->u.i, 5);
  ASSERT_TRUE(nn_toml_get_n(r, "aot\0", 4) != NULL);
  ASSERT_EQ_INT(nn_toml_key_is_cstr(&r->u.tab.kv[1]), 0);
  ASSERT_EQ_INT(nn_toml_key_is_cstr(&r->u.tab.kv[3]), 1);
  char buf[64];
  ASSERT_STR_EQ(nn_toml_key_show(&r->u.tab.kv[1], buf, sizeof buf), "a\\u0000b");
  nn_toml_free(r);
  /* a duplicate is found by its whole length, and shown escaped */
  ASSERT_TRUE(parse("\"a\\u0000b\" = 1\n\"a\\u0000b\" = 2\n", &err) == NULL);
  ASSERT_STR_CONTAINS(err.msg, "duplicate key 'a\\u0000b'");
  /* the hash index of large tables (16 keys and more) */
  char doc[2048];
  size_t k = 0;
  for (int i = 0; i < 40; i++) k += (size_t)snprintf(doc + k, sizeof doc - k, "\"k\\u0000%d\" = %d\n", i, i);
  r = parse(doc, &err);
  ASSERT_TRUE(r != NULL);
  if (r) ASSERT_EQ_INT(nn_toml_get_n(r, "k\0" "39", 4)->u.i, 39);
  if (r) ASSERT_TRUE(nn_toml_get(r, "k") == NULL);
  nn_toml_free(r);
}

/* Each must be rejected with NN_ESYNTAX, a message and a position. */
static void test_invalid_documents(void) {
  static const char *bad[] = {
      /* keys */
      "= 1\n", "a\n", "a = \n", "a =\n1\n", "a.b. = 1\n", ".a = 1\n", "a..b = 1\n",
      "\"\"\"k\"\"\" = 1\n", "'''k''' = 1\n", "k\xc3\xa9y = 1\n",
      "\"a\\u0000\" = 1\n\"a\\u0000\" = 2\n", /* a duplicate key holding U+0000 */
      "a = 1\na = 2\n", "a = 1\n\"a\" = 2\n", "a.b = 1\na.b = 2\n", "a = 1\na.b = 2\n",
      "a b = 1\n", "a = 1 b = 2\n", "[t]\nx = 1\n[t]\n",
      /* strings */
      "s = \"abc\n", "s = 'abc\n", "s = \"a\\x41\"\n", "s = \"a\\ b\"\n", "s = \"\\uD800\"\n",
      "s = \"\\uDFFF\"\n", "s = \"\\U00110000\"\n", "s = \"\\u12G4\"\n", "s = \"\\U1234\"\n",
      "s = \"a\x01\"\n", "s = 'a\x1f'\n", "s = \"a\x7f\"\n", "s = \"\"\"a\x08\"\"\"\n",
      "s = \"\"\"abc\n", "s = '''abc\n", "s = \"\"\"a\"\"\"\"\"\"\n", "s = '''a''''''\n",
      "s = \"\"\"a \\ b\"\"\"\n", "s = \"\\e\"\n", "s = \"a\" \"b\"\n",
      /* comments and raw bytes */
      "# a \x01 b\na = 1\n", "a = 1 # \x7f\n", "a = 1\rb = 2\n", "a = 1\r", "a = \"\xc0\xaf\"\n",
      "a = \"\xed\xa0\x80\"\n", "a = \"\xf4\x90\x80\x80\"\n", "a = \"\xe2\x82\"\n", "a = \"\x80\"\n",
      "# \xfe\n", "a = \"\xf0\x9f\x98\"\n",
      /* integers */
      "a = 01\n", "a = +01\n", "a = 1__2\n", "a = _1\n", "a = 1_\n", "a = 0x\n", "a = 0xG\n",
      "a = -0x1\n", "a = +0o7\n", "a = 0o8\n", "a = 0b2\n", "a = 0B1\n", "a = 0x1_\n",
      "a = 9223372036854775808\n", "a = -9223372036854775809\n", "a = 0x8000000000000000\n",
      "a = 0b10000000000000000000000000000000000000000000000000000000000000000\n",
      "a = 1 2\n", "a = 12a\n",
      /* floats */
      "a = .1\n", "a = 1.\n", "a = 1.e1\n", "a = 1e\n", "a = 1e+\n", "a = 01.1\n", "a = 1._1\n",
      "a = 1.1_\n", "a = 1e_1\n", "a = Inf\n", "a = NaN\n", "a = infinity\n", "a = 1.0.0\n",
      "a = 1e400\n", "a = +\n", "a = -\n",
      /* booleans */
      "a = True\n", "a = FALSE\n", "a = tru\n", "a = truee\n",
      /* date-times */
      "a = 2023-13-01\n", "a = 2023-00-10\n", "a = 2023-02-29\n", "a = 2024-04-31\n",
      "a = 2024-01-00\n", "a = 24:00:00\n", "a = 12:60:00\n", "a = 12:00:61\n", "a = 12:00\n",
      "a = 1979-05-27T07:32\n", "a = 1979-05-27T\n", "a = 1979-05-27T07:32:00.\n",
      "a = 1979-05-27T07:32:00+24:00\n", "a = 1979-05-27T07:32:00+05\n",
      "a = 1979-5-27\n", "a = 12:00:00Z\n", "a = 1979-05-27T07:32:00Zx\n",
      /* arrays */
      "a = [1 2]\n", "a = [,]\n", "a = [1,,2]\n", "a = [1\n", "a = [\n1,\n", "a = ]\n",
      /* inline tables */
      "a = {x = 1,}\n", "a = {x = 1\n}\n", "a = {\nx = 1}\n", "a = {x = 1, x = 2}\n",
      "a = {x.y = 1, x = 2}\n", "a = {x = {y = 1}, x.z = 2}\n", "a = {x = 1 y = 2}\n",
      "a = {x}\n", "a = {,}\n", "a = {x = 1}\na.y = 2\n", "a = {x = 1}\n[a]\n",
      "a = {x = 1}\n[a.y]\n", "a = {x = {}}\n[a.x.y]\n",
      /* tables */
      "[]\n", "[a.]\n", "[.a]\n", "[a..b]\n", "[a\n", "[a]b = 1\n", "[[a]\n", "[[a] ]\n",
      "[ [a]]\n", "[a]\n[a]\n", "[a.b]\n[a]\n[a]\n", "a = 1\n[a]\n", "a.b = 1\n[a]\n",
      "[a]\nb.c = 1\n[a.b]\n", "[a.b.c]\n[a]\nb.c.d = 1\n", "[a.b]\n[a]\nb.x = 1\n",
      "a = []\n[[a]]\n", "a = [{}]\n[[a]]\n", "a = [{}]\n[a.b]\n", "[a]\n[[a]]\n",
      "[[a]]\n[a]\n", "[a.b]\n[[a]]\n", "[[a.b]]\n[a.b]\n", "a = 1\n[a.b]\n",
      "[[a]]\nb = 1\nb = 2\n", "[a]\nb = 1\n[a.b]\n", "[a.b.c]\n[a]\nb.d = 1\n[a.b]\n",
  };
  size_t n = sizeof bad / sizeof bad[0];
  ASSERT_TRUE(n >= 60);
  for (size_t k = 0; k < n; k++) {
    nn_error err;
    nn_toml_value *r = parse(bad[k], &err);
    if (r) {
      nn_toml_free(r);
      fprintf(stderr, "accepted invalid document #%zu: %s", k, bad[k]);
    }
    ASSERT_TRUE(r == NULL);
    if (err.code != NN_ESYNTAX) fprintf(stderr, "document #%zu: %s\n", k, err.msg);
    ASSERT_EQ_INT(err.code, NN_ESYNTAX);
    ASSERT_TRUE(err.msg[0] != '\0');
    ASSERT_TRUE(err.line >= 1);
    ASSERT_TRUE(err.col >= 1);
  }
}

/* Valid corner cases that a too-strict parser would reject. */
static void test_valid_corners(void) {
  static const char *good[] = {
      "", "\n\n", "# only a comment", "a = 1", "a = 1 # end", "\xef\xbb\xbf" "a = 1\n",
      "a = 1\r\nb = 2\r\n", "\"\" = 1\n", "'' = 1\n", "1 = 2\n", "a-b_c = 1\n",
      "3.14 = 'pi'\n", "a . b = 1\n", "a = [1, 'x', [2.0], {}]\n", "a = [\n]\n",
      "a = [1,]\n", "[a.b.c]\n[a]\n", "[a]\nb.c = 1\n[a.b.d]\n", "[[a]]\n[[a]]\n[a.b]\n",
      "a = {}\n", "a = {b = [\n1,\n2]}\n", "s = \"\"\"\\\n\n  x\"\"\"\n", "s = ''''''\n",
      "s = \"\"\"\"\"\"\n", "a = 1979-05-27 \n", "t = 00:00:00\n", "a = 0.0e0\n",
      "a = \"\xf4\x8f\xbf\xbf\"\n", "a = '\t'\n", "# tab\tin comment\n", "[ a . b ]\n",
      "[[ a ]]\n", "a = +inf\nb = -nan\n", "[a.b.c]\n[a]\nb.d = 1\nb.e = 2\n",
  };
  for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
    nn_error err;
    nn_toml_value *r = parse(good[k], &err);
    if (!r) fprintf(stderr, "rejected valid document #%zu: %s (%d:%d)\n", k, err.msg, err.line, err.col);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ_INT(r->type, NN_TOML_TABLE);
    nn_toml_free(r);
  }
}

static void test_accessors(void) {
  nn_error err;
  nn_toml_value *r = parse("a = 1\n[t]\nb = 'x'\n", &err);
  ASSERT_TRUE(r != NULL);
  ASSERT_TRUE(nn_toml_get(r, "a") != NULL);
  ASSERT_TRUE(nn_toml_get(r, "b") == NULL);
  ASSERT_TRUE(nn_toml_get(r, "t") != NULL);
  ASSERT_TRUE(nn_toml_get(nn_toml_get(r, "t"), "b") != NULL);
  ASSERT_TRUE(nn_toml_get(nn_toml_get(r, "a"), "b") == NULL); /* not a table */
  ASSERT_TRUE(nn_toml_get(NULL, "a") == NULL);
  ASSERT_TRUE(nn_toml_get(r, NULL) == NULL);
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_STRING), "string");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_INTEGER), "integer");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_FLOAT), "float");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_BOOL), "boolean");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_DATETIME), "offset date-time");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_DATETIME_LOCAL), "local date-time");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_DATE_LOCAL), "local date");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_TIME_LOCAL), "local time");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_ARRAY), "array");
  ASSERT_STR_EQ(nn_toml_type_name(NN_TOML_TABLE), "table");
  nn_toml_free(r);
  nn_toml_free(NULL);

  /* A NULL filename reads "<input>"; a NULL err is allowed. */
  nn_toml_value *out = (nn_toml_value *)&err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_toml_parse("a = ", 4, NULL, &out, &err), NN_ESYNTAX);
  ASSERT_TRUE(out == NULL);
  ASSERT_STR_EQ(err.file, "<input>");
  ASSERT_EQ_INT(nn_toml_parse("a = ", 4, NULL, &out, NULL), NN_ESYNTAX);
  ASSERT_EQ_INT(nn_toml_parse(NULL, 0, NULL, &out, NULL), 0);
  ASSERT_EQ_INT(out->u.tab.n, 0);
  nn_toml_free(out);
}

static void test_parse_file(void) {
  char path[] = "/tmp/nn_test_toml_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_TRUE(fd >= 0);
  const char *doc = "[job]\nname = 'mnist'\nlr = 0.1\nlr = 0.2\n";
  ASSERT_EQ_INT(write(fd, doc, strlen(doc)), (long long)strlen(doc));
  close(fd);
  nn_toml_value *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_toml_parse_file(path, &r, &err);
  ASSERT_EQ_INT(rc, NN_ESYNTAX);
  ASSERT_TRUE(r == NULL);
  ASSERT_STR_EQ(err.file, path);
  ASSERT_EQ_INT(err.line, 4);
  ASSERT_EQ_INT(err.col, 1);
  FILE *f = fopen(path, "w");
  ASSERT_TRUE(f != NULL);
  fputs("[job]\nname = 'mnist'\n", f);
  fclose(f);
  ASSERT_OK(nn_toml_parse_file(path, &r, &err));
  ASSERT_STR_EQ(at_path(r, "job", "name", NULL)->u.s.ptr, "mnist");
  nn_toml_free(r);
  unlink(path);
  rc = nn_toml_parse_file("/nonexistent/dir/job.toml", &r, &err);
  ASSERT_EQ_INT(rc, NN_EIO);
  ASSERT_TRUE(r == NULL);
  ASSERT_STR_CONTAINS(err.file, "job.toml");
}

/* The input need not be NUL-terminated, and len is respected exactly. */
static void test_unterminated_buffer(void) {
  static const char *docs[] = {"a = 1", "a = 'x'", "a = \"\"\"x\"\"\"", "a = [1, 2]",
                               "a = 1979-05-27", "a = 12:00:00", "a = 0x1F", "a = 1e5",
                               "[t]", "[[t]]", "a = true", "a = {b = 1}"};
  for (size_t k = 0; k < sizeof docs / sizeof docs[0]; k++) {
    size_t n = strlen(docs[k]);
    char *buf = malloc(n); /* exactly n bytes: ASan catches any over-read */
    ASSERT_TRUE(buf != NULL);
    memcpy(buf, docs[k], n);
    nn_toml_value *r = NULL;
    nn_error err;
    nn_error_clear(&err);
    int rc = nn_toml_parse(buf, n, "buf", &r, &err);
    if (rc) fprintf(stderr, "doc #%zu: %s\n", k, err.msg);
    ASSERT_OK(rc);
    nn_toml_free(r);
    /* Every proper prefix either parses or fails cleanly. */
    for (size_t m = 0; m < n; m++) {
      rc = nn_toml_parse(buf, m, "buf", &r, &err);
      ASSERT_TRUE(rc == 0 || rc == NN_ESYNTAX);
      nn_toml_free(r);
    }
    free(buf);
  }
  /* A NUL byte inside the length is an error, not an end of input. */
  nn_toml_value *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  ASSERT_EQ_INT(nn_toml_parse("a = 1\0b = 2", 11, "buf", &r, &err), NN_ESYNTAX);
  ASSERT_EQ_INT(err.line, 1);
  ASSERT_EQ_INT(err.col, 6);
  ASSERT_STR_CONTAINS(err.msg, "NUL");
}

/* Deep nesting is an error, not a stack overflow; moderate nesting works. */
static void test_nesting_limit(void) {
  size_t depth = 100000;
  char *buf = malloc(2 * depth + 16);
  ASSERT_TRUE(buf != NULL);
  size_t n = 0;
  memcpy(buf, "a = ", 4);
  n = 4;
  for (size_t k = 0; k < depth; k++) buf[n++] = '[';
  for (size_t k = 0; k < depth; k++) buf[n++] = ']';
  nn_toml_value *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_toml_parse(buf, n, "deep", &r, &err);
  ASSERT_EQ_INT(rc, NN_ESYNTAX);
  ASSERT_STR_CONTAINS(err.msg, "nesting");
  /* Inline tables and dotted keys count too. */
  n = 4;
  for (size_t k = 0; k < 1000; k++) { memcpy(buf + n, "{a=", 3); n += 3; }
  rc = nn_toml_parse(buf, n, "deep", &r, &err);
  ASSERT_EQ_INT(rc, NN_ESYNTAX);
  n = 0;
  for (size_t k = 0; k < 1000; k++) { memcpy(buf + n, "a.", 2); n += 2; }
  memcpy(buf + n, "a = 1", 5);
  n += 5;
  rc = nn_toml_parse(buf, n, "deep", &r, &err);
  ASSERT_EQ_INT(rc, NN_ESYNTAX);
  /* 100 levels of arrays are fine. */
  n = 0;
  memcpy(buf, "a = ", 4);
  n = 4;
  for (size_t k = 0; k < 100; k++) buf[n++] = '[';
  for (size_t k = 0; k < 100; k++) buf[n++] = ']';
  rc = nn_toml_parse(buf, n, "deep", &r, &err);
  ASSERT_OK(rc);
  nn_toml_value *v = nn_toml_get(r, "a");
  int levels = 0;
  while (v && v->type == NN_TOML_ARRAY) {
    levels++;
    v = v->u.arr.n ? v->u.arr.items[0] : NULL;
  }
  ASSERT_EQ_INT(levels, 100);
  nn_toml_free(r);
  free(buf);
}

/* Large tables (hash-indexed past a few keys) find every key and still
 * reject duplicates, with the first definition's position. */
static void test_large_table(void) {
  size_t nkeys = 3000, n = 0;
  char *buf = malloc(nkeys * 24 + 64);
  ASSERT_TRUE(buf != NULL);
  for (size_t k = 0; k < nkeys; k++) n += (size_t)sprintf(buf + n, "key%zu = %zu\n", k, k);
  nn_toml_value *r = NULL;
  nn_error err;
  nn_error_clear(&err);
  int rc = nn_toml_parse(buf, n, "big", &r, &err);
  ASSERT_OK(rc);
  ASSERT_EQ_INT(r->u.tab.n, nkeys);
  for (size_t k = 0; k < nkeys; k += 7) {
    char key[32];
    snprintf(key, sizeof key, "key%zu", k);
    nn_toml_value *v = nn_toml_get(r, key);
    ASSERT_TRUE(v != NULL);
    ASSERT_EQ_INT(v->u.i, (long long)k);
    ASSERT_EQ_INT(v->key_line, (long long)k + 1);
  }
  ASSERT_TRUE(nn_toml_get(r, "key3000") == NULL);
  ASSERT_TRUE(nn_toml_get(r, "key") == NULL);
  nn_toml_free(r);
  n += (size_t)sprintf(buf + n, "key1234 = 0\n");
  rc = nn_toml_parse(buf, n, "big", &r, &err);
  ASSERT_EQ_INT(rc, NN_ESYNTAX);
  ASSERT_EQ_INT(err.line, (long long)nkeys + 1);
  ASSERT_STR_CONTAINS(err.msg, "duplicate key 'key1234' (first defined at 1235:1)");
  free(buf);
}

/* Keys shown in messages are cut to the buffer, escapes and "..." included
 * (fuzz_toml found a 96-byte document whose quoted header key of tabs made
 * the escapes overrun a 128-byte buffer: toml.c show_n). Every buffer size
 * against keys of plain and control characters, in exactly-sized heap
 * buffers so AddressSanitizer sees any overrun. */
static void test_key_show_bounds(void) {
  static const char crash[] =
      "   # same as [g.h.i]\n[ j . \"\xca\x9ez\" . '\t\t\t\t\t\t\t\t\t\t\t\t\t\t.z] "
      "\t\t\t\t\t.z] nl\t'] \t  \t\t\t\t\t.z] \t\t\t\t\t.z] n   -@";
  nn_error err;
  nn_toml_value *r = parse(crash, &err);
  ASSERT_TRUE(r == NULL); /* invalid TOML: refused with a message, not a crash */
  ASSERT_TRUE(strlen(err.msg) > 0);
  const char *keys[] = {"", "a", "abc", "\t", "a\tb", "\t\t\t\t\t\t\t\t\t\t",
                        "abcdefghijklmnopqrstuvwxyz", "x\x7fy\x01z\x1f"};
  for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
    for (size_t cap = 1; cap < 72; cap++) {
      char *buf = malloc(cap);
      ASSERT_TRUE(buf != NULL);
      nn_toml_kv kv = {(char *)keys[j], strlen(keys[j]), NULL};
      nn_toml_key_show(&kv, buf, cap);
      size_t n = strlen(buf);
      ASSERT_TRUE(n < cap);
      /* with room enough, the whole key; else a prefix ending in "..." (or "") */
      size_t full = 0;
      for (const char *c = keys[j]; *c; c++) full += ((unsigned char)*c < 0x20 || *c == 0x7f) ? 6 : 1;
      if (full < cap) ASSERT_EQ_INT((long long)n, (long long)full);
      else if (cap >= 4) ASSERT_TRUE(n >= 3 && !strcmp(buf + n - 3, "..."));
      else ASSERT_EQ_INT((long long)n, 0);
      free(buf);
    }
  }
}

TEST_MAIN(TEST(test_strings), TEST(test_integers), TEST(test_floats), TEST(test_booleans),
          TEST(test_datetimes), TEST(test_arrays), TEST(test_tables),
          TEST(test_value_positions), TEST(test_error_positions),
          TEST(test_invalid_documents), TEST(test_valid_corners), TEST(test_accessors),
          TEST(test_parse_file), TEST(test_unterminated_buffer), TEST(test_nesting_limit),
          TEST(test_large_table), TEST(test_key_nul), TEST(test_key_show_bounds))
