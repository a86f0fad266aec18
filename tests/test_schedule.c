/* test_schedule.c: learning-rate schedules at chosen steps. */
#include "coordinator/schedule.h"
#include "test.h"

static void test_constant(void) {
  nn_schedule_cfg c = {.type = "constant"};
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 0, 100), 0.1, 0);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 99, 100), 0.1, 0);
}

static void test_cosine(void) {
  nn_schedule_cfg c = {.type = "cosine", .min_lr = 0};
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 0, 100), 0.1, 1e-15);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 50, 100), 0.05, 1e-15);
  /* step 25 of 100: (1 + cos(pi/4)) / 2 = 0.8535533905932737 */
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 25, 100), 0.08535533905932737, 1e-15);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 100, 100), 0.0, 1e-15);
  c.min_lr = 0.01;
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 50, 100), 0.055, 1e-15);
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 100, 100), 0.01, 1e-15);
  /* past the end it stays at min_lr; never increases */
  ASSERT_NEAR(nn_schedule_lr(&c, 0.1, 150, 100), 0.01, 1e-15);
  double prev = 1;
  for (int s = 0; s <= 100; s++) {
    double lr = nn_schedule_lr(&c, 0.1, s, 100);
    ASSERT_TRUE(lr <= prev);
    prev = lr;
  }
}

TEST_MAIN(TEST(test_constant), TEST(test_cosine))
