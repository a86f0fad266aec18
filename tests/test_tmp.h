/* test_tmp.h: one temporary directory per test program, made on first use
 * and removed (with everything in it) when the program exits, also when a
 * single test is run by name. */
#ifndef NN_TESTS_TEST_TMP_H
#define NN_TESTS_TEST_TMP_H

#include <stdio.h>
#include <stdlib.h>

static char nn__test_dir[256];

static void nn__test_rmdir(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", nn__test_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", nn__test_dir);
}

/* The program's temp dir, /tmp/nn_test_<tag>_XXXXXX (tag: the first call's).
 * Exits the program if it cannot be made: no test could run. */
static const char *nn_test_tmpdir(const char *tag) {
  if (!nn__test_dir[0]) {
    snprintf(nn__test_dir, sizeof nn__test_dir, "/tmp/nn_test_%s_XXXXXX", tag);
    if (!mkdtemp(nn__test_dir)) {
      perror("mkdtemp");
      exit(1);
    }
    atexit(nn__test_rmdir);
  }
  return nn__test_dir;
}

#endif
