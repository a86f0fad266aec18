/* test_checkpoint_kill.c: the crash-safe write under SIGKILL at every
 * stage (NN_CKPT_KILL_AT, compiled only with -DNN_FAULT_INJECTION=ON): the
 * directory holds only complete checkpoints and the newest good one is
 * found. Without the build option it exits 77 (CTest: skipped). */
#include "ckpt_fixture.h"

#ifdef NN_FAULT_INJECTION
/* Kill the writer at each stage; the directory must hold only complete
 * checkpoints, and the newest good one must be found. */
static void test_kill_injection(void) {
  static const char *stages[] = {"data", "close", "sync", "verify", "rename", "dirsync", "prune"};
  fixture fx;
  ASSERT_OK(fixture_init(&fx));
  for (size_t si = 0; si < sizeof stages / sizeof stages[0]; si++) {
    const char *stage = stages[si];
    char dir[256], p1[1200], p2[1200], p3[1200], cdir[1200], got[1200];
    ASSERT_OK(make_tmpdir(dir, sizeof dir));
    snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
    ASSERT_OK(write_step(&fx, dir, 1));
    nn_ckpt_path(dir, 1, p1, sizeof p1);
    nn_ckpt_path(dir, 2, p2, sizeof p2);
    nn_ckpt_path(dir, 3, p3, sizeof p3);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
      setenv("NN_CKPT_KILL_AT", stage, 1);
      nn_error e;
      nn_error_clear(&e);
      if (write_step(&fx, dir, 2) == 0) nn_ckpt_prune(dir, 1, &e);
      _exit(0); /* not killed: the hook did not fire */
    }
    int status = 0;
    ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
      fprintf(stderr, "stage %s: child status %d\n", stage, status);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    int late = si >= 4; /* renamed: step 2 is complete */
    /* every file under a final name reads and verifies */
    DIR *d = opendir(cdir);
    ASSERT_TRUE(d != NULL);
    struct dirent *de;
    int finals = 0, fails = 0;
    while ((de = readdir(d))) {
      size_t l = strlen(de->d_name);
      if (l < 3 || strcmp(de->d_name + l - 3, ".h5") != 0) continue;
      char p[1500];
      snprintf(p, sizeof p, "%s/%s", cdir, de->d_name);
      finals++;
      if (read_ok(p)) fails++;
    }
    closedir(d);
    ASSERT_EQ_INT(fails, 0);
    ASSERT_EQ_INT(finals, strcmp(stage, "prune") == 0 ? 1 : late ? 2 : 1);
    ASSERT_EQ_INT(file_exists(p2), late);
    if (strcmp(stage, "prune") != 0) ASSERT_OK(read_ok(p1)); /* the earlier one is intact */
    nn_ckpt_snapshot s;
    nn_error e;
    nn_error_clear(&e);
    warn_count wc = {0, ""};
    ASSERT_OK(nn_ckpt_read_latest(dir, &s, got, sizeof got, count_warn, &wc, &e));
    ASSERT_EQ_INT(s.state.step, late ? 2 : 1);
    ASSERT_EQ_INT(wc.n, 0);
    nn_ckpt_snapshot_free(&s);
    /* recovery: prune removes the killed writer's .tmp, a new write works */
    ASSERT_OK(nn_ckpt_prune(dir, 0, &e));
    ASSERT_EQ_INT(count_suffix(cdir, ".tmp"), 0);
    ASSERT_OK(write_step(&fx, dir, 3));
    ASSERT_OK(read_ok(p3));
    rm_rf(dir);
  }
  fixture_free(&fx);
}

TEST_MAIN(TEST(test_kill_injection))
#else
int main(void) {
  fprintf(stderr, "SKIPPED: built without -DNN_FAULT_INJECTION=ON (no NN_CKPT_KILL_AT hook)\n");
  return 77;
}
#endif
