/* The v2 cgroup backend on the real kernel, not a fake tree: a cgroup2 mount exists on
 * pure v2 hosts (/sys/fs/cgroup) and on hybrid ones (/sys/fs/cgroup/unified, often with
 * no controller, as on this project's VMs). What needs no controller is checked here:
 * create and remove, a clone straight into the cgroup (CLONE_INTO_CGROUP) made the way
 * spawn.c makes it (euid the sandbox's uid base, fsuid 0, a new user namespace), the
 * populated flag, freeze and thaw, and cgroup.kill. Limits need controllers: with none,
 * only "unlimited" is asked for (a knob the host lacks is fine for that). Skipped without
 * a cgroup2 mount or root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/cgroup.h"
#include "runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[64];

static int
is_cgroup2 (const char *path)
{
  struct statfs fs;
  return statfs (path, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

static int
find_root (void **state)
{
  if (is_cgroup2 ("/sys/fs/cgroup"))
    snprintf (root, sizeof root, "/sys/fs/cgroup");
  else if (is_cgroup2 ("/sys/fs/cgroup/unified"))
    snprintf (root, sizeof root, "/sys/fs/cgroup/unified");
  return 0;
}

/* Line "0::<path>" of /proc/<pid>/cgroup into out. */
static int
v2_path_of (pid_t pid, char *out, size_t cap)
{
  char p[64], buf[4096];
  snprintf (p, sizeof p, "/proc/%d/cgroup", (int) pid);
  if (sbx_read_file (p, buf, sizeof buf) < 0)
    return -1;
  char *l = strstr (buf, "0::");
  if (!l)
    return -1;
  l += 3;
  snprintf (out, cap, "%.*s", (int) strcspn (l, "\n"), l);
  return 0;
}

static void
test_clone_into_freeze_kill_remove (void **state)
{
  if (!root[0] || geteuid () != 0)
    skip ();
  struct rt_sandbox sb = { .pidfd = -1, .lock_fd = -1, .scratch_fd = -1, .have_cgroup = 1 };
  struct sbx_err err = { 0 };
  assert_int_equal (sbx_id_new ("sb", sb.id), 0);
  assert_int_equal (rt_cgroup_init_with (&sb.cg, root, sb.id, &rt_cgroup_v2_ops, &err), 0);
  struct rt_limits unlimited = { 0 };
  if (sb.cg.ops->create (&sb.cg, &unlimited, &err) < 0)
    fail_msg ("create: %s", err.msg);
  int cgfd = sb.cg.ops->clone_fd (&sb.cg);
  assert_true (cgfd >= 0);
  assert_true (sb.cg.ops->is_empty (&sb.cg));

  /* As spawn.c clones: euid the sandbox's uid base (it owns the new user namespace),
   * fsuid 0; the kernel checks the cgroup write with those credentials. */
  uint32_t base = rt_uid_slot_base (RT_UID_SLOTS - 1);
  struct clone_args ca = {
    .flags = CLONE_NEWUSER | CLONE_INTO_CGROUP,
    .exit_signal = SIGCHLD,
    .cgroup = (uint64_t) cgfd,
  };
  assert_int_equal (syscall (SYS_setresuid, (uid_t) -1, (uid_t) base, (uid_t) -1), 0);
  syscall (SYS_setfsuid, (uid_t) 0);
  long pid = syscall (SYS_clone3, &ca, sizeof ca);
  if (pid == 0)
    {
      for (;;)
        pause ();
    }
  int clone_errno = errno;
  assert_int_equal (syscall (SYS_setresuid, (uid_t) -1, (uid_t) 0, (uid_t) -1), 0);
  if (pid < 0)
    fail_msg ("clone3 into %s/sbx/%s as euid %u: %s", root, sb.id, base, strerror (clone_errno));

  char want[96], got[256];
  snprintf (want, sizeof want, "/sbx/%s", sb.id);
  assert_int_equal (v2_path_of ((pid_t) pid, got, sizeof got), 0);
  assert_string_equal (got, want);
  assert_false (sb.cg.ops->is_empty (&sb.cg));

  /* Snapshots freeze with cgroup.freeze and wait for "frozen 1". */
  if (rt_sandbox_freeze (&sb, 1, &err) < 0)
    fail_msg ("freeze: %s", err.msg);
  assert_int_equal (sb.frozen, 1);
  assert_int_equal (rt_sandbox_freeze (&sb, 0, &err), 0);

  sb.cg.ops->kill_all (&sb.cg);
  int status = 0;
  assert_int_equal (waitpid ((pid_t) pid, &status, 0), pid);
  assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
  assert_true (sb.cg.ops->is_empty (&sb.cg));
  assert_int_equal (sb.cg.ops->remove (&sb.cg), 0);
  char dir[PATH_MAX];
  assert_int_equal (rt_cg_path (dir, root, NULL, sb.id), 0);
  struct stat st;
  assert_int_equal (stat (dir, &st), -1);
  assert_int_equal (errno, ENOENT);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_clone_into_freeze_kill_remove),
  };
  return cmocka_run_group_tests (tests, find_root, NULL);
}
