/* uid range slots: distinct while held, base arithmetic, freed when the lock fd closes,
 * but not while the cgroup of the sandbox that held it still has a task (a fake v1 tree);
 * taken from the bottom first, and found above a full bottom. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char cgroot[96]; /* a fake cgroup v1 root: no controller until a test makes one */

static int
setup (void **state)
{
  snprintf (dir, sizeof dir, "/tmp/sbx-test-uid-XXXXXX");
  if (!mkdtemp (dir))
    return -1;
  snprintf (cgroot, sizeof cgroot, "%s/cg", dir);
  return mkdir (cgroot, 0755);
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
      char id[SBX_ID_MAX];
      assert_int_equal (sbx_id_new ("sb", id), 0);
      char slots_dir[128];
      snprintf (slots_dir, sizeof slots_dir, "%s/uids", dir);
      assert_int_equal (rt_uid_slot_claim (slots_dir, cgroot, id, &fds[i], &slots[i], &err), 0);
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

static void
put (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");
  assert_non_null (f);
  fputs (text, f);
  fclose (f);
}

/* The lock alone is released before the rest of a sandbox is dead (PID 1's files close
 * first): the slot stays busy while the cgroup of the sandbox named in it has a task. */
static void
test_busy_until_old_cgroup_is_empty (void **state)
{
  char a[SBX_ID_MAX], b[SBX_ID_MAX], path[256];
  assert_int_equal (sbx_id_new ("sb", a), 0);
  assert_int_equal (sbx_id_new ("sb", b), 0);
  snprintf (path, sizeof path, "%s/uids", dir);
  assert_int_equal (mkdir (path, 0700), 0);
  int dfd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true (dfd >= 0);
  struct sbx_err err = { 0 };
  int fd = -1, fd2 = -1;
  assert_int_equal (rt_uid_slot_try (dfd, 7, cgroot, a, &fd, &err), 1);
  assert_int_equal (rt_uid_slot_try (dfd, 7, cgroot, b, &fd2, &err), 0); /* locked */
  /* Sandbox a's PID 1 is gone (lock released), one of its processes is still dying. */
  char cg[256];
  snprintf (cg, sizeof cg, "%s/pids/sbx/%s", cgroot, a);
  assert_int_equal (sbx_mkdir_p (cg, 0755), 0);
  snprintf (path, sizeof path, "%s/cgroup.procs", cg);
  put (path, "4242\n");
  close (fd);
  assert_int_equal (rt_uid_slot_try (dfd, 7, cgroot, b, &fd2, &err), 0);
  assert_int_equal (fd2, -1);
  /* Its cgroup is empty: the slot is free and now names b. */
  put (path, "");
  assert_int_equal (rt_uid_slot_try (dfd, 7, cgroot, b, &fd2, &err), 1);
  char buf[64] = { 0 };
  assert_int_equal (fgetxattr (fd2, "user.sbx.sandbox", buf, sizeof buf - 1), strlen (b));
  assert_string_equal (buf, b);
  struct stat st;
  assert_int_equal (fstat (fd2, &st), 0);
  assert_int_equal (st.st_size, 0); /* no data block to read or free */
  close (fd2);
  /* b's cgroup never existed (or was removed): free. */
  assert_int_equal (rt_uid_slot_try (dfd, 7, cgroot, a, &fd, &err), 1);
  close (fd);
  close (dfd);
}

/* With few sandboxes the slots come from the bottom (whose lock files stay cached). */
static void
test_bottom_first (void **state)
{
  enum { HELD = 32 };
  int fds[HELD];
  char slots_dir[128];
  snprintf (slots_dir, sizeof slots_dir, "%s/uids", dir);
  struct sbx_err err = { 0 };
  for (int i = 0; i < HELD; i++)
    {
      char id[SBX_ID_MAX];
      uint32_t slot;
      assert_int_equal (sbx_id_new ("sb", id), 0);
      assert_int_equal (rt_uid_slot_claim (slots_dir, cgroot, id, &fds[i], &slot, &err), 0);
      /* >= 1024 only after two misses in each window 64 .. 512: < 1e-6 */
      assert_true (slot < 1024);
    }
  for (int i = 0; i < HELD; i++)
    close (fds[i]);
}

/* Every slot below 8192 busy (its last sandbox still has a task): the windows all miss,
 * and the full scan still finds a free slot above them. */
static void
test_full_bottom (void **state)
{
  enum { BUSY = 8192 };
  char busy[SBX_ID_MAX], id[SBX_ID_MAX], path[256];
  assert_int_equal (sbx_id_new ("sb", busy), 0);
  assert_int_equal (sbx_id_new ("sb", id), 0);
  snprintf (path, sizeof path, "%s/pids/sbx/%s", cgroot, busy);
  assert_int_equal (sbx_mkdir_p (path, 0755), 0);
  snprintf (path, sizeof path, "%s/pids/sbx/%s/cgroup.procs", cgroot, busy);
  put (path, "4242\n");
  char slots_dir[128];
  snprintf (slots_dir, sizeof slots_dir, "%s/uids", dir);
  assert_int_equal (mkdir (slots_dir, 0700), 0);
  for (int s = 0; s < BUSY; s++)
    {
      snprintf (path, sizeof path, "%s/%d.lock", slots_dir, s);
      int fd = open (path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
      assert_true (fd >= 0);
      assert_int_equal (fsetxattr (fd, "user.sbx.sandbox", busy, strlen (busy), 0), 0);
      close (fd);
    }
  struct sbx_err err = { 0 };
  int fd = -1;
  uint32_t slot = 0;
  assert_int_equal (rt_uid_slot_claim (slots_dir, cgroot, id, &fd, &slot, &err), 0);
  assert_true (slot >= BUSY && slot < RT_UID_SLOTS);
  close (fd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_base),
    cmocka_unit_test_setup_teardown (test_distinct_while_held, setup, teardown),
    cmocka_unit_test_setup_teardown (test_busy_until_old_cgroup_is_empty, setup, teardown),
    cmocka_unit_test_setup_teardown (test_bottom_first, setup, teardown),
    cmocka_unit_test_setup_teardown (test_full_bottom, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
