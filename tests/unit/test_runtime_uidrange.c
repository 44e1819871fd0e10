/* uid range slots: distinct while held, base arithmetic, freed when the lock fd closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

static char dir[64];

static int
setup (void **state)
{
  snprintf (dir, sizeof dir, "/tmp/sbx-test-uid-XXXXXX");
  return mkdtemp (dir) ? 0 : -1;
}

static int
teardown (void **state)
{
  return sbx_rm_rf (dir);
}

static void
test_base (void **state)
{
  assert_int_equal (rt_uid_slot_base (0), 0x10000000u);
  assert_int_equal (rt_uid_slot_base (1), 0x10010000u);
  /* The last slot's range ends below 2^32 - 1 (the kernel's invalid id). */
  uint64_t end = (uint64_t) rt_uid_slot_base (RT_UID_SLOTS - 1) + RT_UID_SPAN - 1;
  assert_true (end < 0xffffffffull);
}

#define N 64
static void
test_distinct_while_held (void **state)
{
  int fds[N];
  uint32_t slots[N];
  struct sbx_err err = { 0 };
  for (int i = 0; i < N; i++)
    {
      assert_int_equal (rt_uid_slot_claim (dir, &fds[i], &slots[i], &err), 0);
      assert_true (slots[i] < RT_UID_SLOTS);
      assert_true (fcntl (fds[i], F_GETFD) & FD_CLOEXEC);
      for (int j = 0; j < i; j++)
        assert_int_not_equal (slots[i], slots[j]);
    }
  /* A held slot cannot be locked through another open file description... */
  char path[128];
  snprintf (path, sizeof path, "%s/uids/%u.lock", dir, slots[0]);
  int other = open (path, O_RDWR | O_CLOEXEC);
  assert_true (other >= 0);
  assert_int_equal (flock (other, LOCK_EX | LOCK_NB), -1);
  /* ...and is free again once its holder closes it. */
  close (fds[0]);
  assert_int_equal (flock (other, LOCK_EX | LOCK_NB), 0);
  close (other);
  for (int i = 1; i < N; i++)
    close (fds[i]);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_base),
    cmocka_unit_test_setup_teardown (test_distinct_while_held, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
