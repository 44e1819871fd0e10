/* cgroup backends: both against a fake tree in a temp dir (exact knob contents), then
 * end to end on this machine's real hierarchies (v1 controllers, and the cgroup2 mount
 * at /sys/fs/cgroup/unified when there is one). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ID "sb_0123456789abcdef0123"
#define MiB (1024ULL * 1024)

static char g_root[PATH_MAX];

/* ---- fake tree helpers ---------------------------------------------------- */

static void
put (const char *dir, const char *file, const char *content)
{
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/%s", dir, file);
  int fd = open (p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  assert_int_equal (sbx_write_all (fd, content, strlen (content)), 0);
  close (fd);
}

/* Contents of dir/file into buf ("<absent>" if the file does not exist). */
static const char *
get (const char *dir, const char *file, char *buf, size_t cap)
{
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/%s", dir, file);
  if (sbx_read_file (p, buf, cap) < 0)
    snprintf (buf, cap, "<absent>");
  return buf;
}

#define assert_knob(dir, file, want)                                                              \
  do                                                                                               \
    {                                                                                              \
      char kb_[256];                                                                               \
      assert_string_equal (get ((dir), (file), kb_, sizeof kb_), (want));                          \
    }                                                                                              \
  while (0)

static int
exists (const char *p)
{
  struct stat st;
  return lstat (p, &st) == 0;
}

static void
dir_of (char out[PATH_MAX], const char *ctrl)
{
  if (ctrl)
    snprintf (out, PATH_MAX, "%s/%s/sbx/%s", g_root, ctrl, ID);
  else
    snprintf (out, PATH_MAX, "%s/sbx/%s", g_root, ID);
}

/* What the kernel would show in a new v1 cgroup of controller ctrl (mounted as mnt). */
static void
fake_v1_ctrl (const char *mnt, const char *ctrl)
{
  char d[PATH_MAX];
  snprintf (d, sizeof d, "%s/%s/sbx/%s", g_root, mnt, ID);
  assert_int_equal (sbx_mkdir_p (d, 0755), 0);
  put (d, "cgroup.procs", "");
  if (!strcmp (ctrl, "memory"))
    {
      put (d, "memory.limit_in_bytes", "");
      put (d, "memory.memsw.limit_in_bytes", "");
      put (d, "memory.swappiness", "");
      put (d, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
      put (d, "memory.max_usage_in_bytes", "4096\n");
    }
  else if (!strcmp (ctrl, "cpu"))
    {
      put (d, "cpu.cfs_period_us", "");
      put (d, "cpu.cfs_quota_us", "");
    }
  else if (!strcmp (ctrl, "cpuacct"))
    put (d, "cpuacct.usage", "123456\n");
  else if (!strcmp (ctrl, "pids"))
    put (d, "pids.max", "");
  else if (!strcmp (ctrl, "freezer"))
    put (d, "freezer.state", "THAWED\n");
}

static void
fake_v1 (int combined_cpu)
{
  fake_v1_ctrl ("memory", "memory");
  fake_v1_ctrl ("pids", "pids");
  fake_v1_ctrl ("freezer", "freezer");
  if (!combined_cpu)
    {
      fake_v1_ctrl ("cpu", "cpu");
      fake_v1_ctrl ("cpuacct", "cpuacct");
      return;
    }
  /* The systemd layout: one "cpu,cpuacct" mount and two symlinks to it. */
  fake_v1_ctrl ("cpu,cpuacct", "cpu");
  fake_v1_ctrl ("cpu,cpuacct", "cpuacct");
  char l[PATH_MAX];
  snprintf (l, sizeof l, "%s/cpu", g_root);
  assert_int_equal (symlink ("cpu,cpuacct", l), 0);
  snprintf (l, sizeof l, "%s/cpuacct", g_root);
  assert_int_equal (symlink ("cpu,cpuacct", l), 0);
}

/* What the kernel would show on a v2 root, its sbx child and the sandbox cgroup. */
static void
fake_v2 (const char *controllers, int with_kill)
{
  char d[PATH_MAX];
  put (g_root, "cgroup.controllers", controllers);
  put (g_root, "cgroup.subtree_control", "");
  snprintf (d, sizeof d, "%s/sbx", g_root);
  assert_int_equal (mkdir (d, 0755), 0);
  put (d, "cgroup.subtree_control", "");
  dir_of (d, NULL);
  assert_int_equal (mkdir (d, 0755), 0);
  put (d, "cgroup.procs", "");
  put (d, "cgroup.events", "populated 1\nfrozen 1\n");
  put (d, "cgroup.freeze", "");
  if (with_kill)
    put (d, "cgroup.kill", "");
  put (d, "cpu.max", "");
  put (d, "memory.max", "");
  put (d, "memory.swap.max", "");
  put (d, "pids.max", "");
  put (d, "memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n");
  put (d, "memory.peak", "8192\n");
  put (d, "cpu.stat", "usage_usec 77\nuser_usec 70\nsystem_usec 7\n");
}

/* The kernel's control files vanish with rmdir; a fake directory must be emptied. */
static void
clear_files (const char *dir)
{
  char cmd[PATH_MAX + 64];
  snprintf (cmd, sizeof cmd, "find '%s' -type f -delete", dir);
  assert_int_equal (system (cmd), 0);
}

static int
setup_tmp (void **state)
{
  snprintf (g_root, sizeof g_root, "/tmp/sbx-cgtest-XXXXXX");
  return mkdtemp (g_root) ? 0 : -1;
}

static int
teardown_tmp (void **state)
{
  return sbx_rm_rf (g_root);
}

static struct rt_limits
limits (uint32_t cpu, uint64_t mem, uint64_t pids)
{
  struct rt_limits l = { 0 };
  l.cpu_millis = cpu;
  l.memory_bytes = mem;
  l.pids = pids;
  return l;
}

/* A child that blocks until killed. */
static pid_t
spawn_sleeper (void)
{
  pid_t pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0)
    for (;;)
      pause ();
  return pid;
}

static void
assert_killed (pid_t pid)
{
  int st;
  assert_int_equal (waitpid (pid, &st, 0), pid);
  assert_true (WIFSIGNALED (st));
  assert_int_equal (WTERMSIG (st), SIGKILL);
}

/* ---- id and root validation ------------------------------------------------ */

static void
test_id_refused (void **state)
{
  static const char *const bad[] = { "", "sb_", "sb_../../etc", "sb_ABC", "sb_a/b", "xx_abc",
                                     "sb-abc", "../sb_abc", "sb_a b", "sb_abc\n" };
  struct rt_cgroup cg;
  struct sbx_err err;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      assert_int_equal (rt_cgroup_init_with (&cg, g_root, bad[i], &rt_cgroup_v1_ops, &err), -1);
      assert_int_equal (err.code, SBX_E_INVALID);
      assert_null (cg.ops);
      assert_int_equal (rt_cgroup_init (&cg, g_root, bad[i], &err), -1);
      assert_null (cg.ops);
    }
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, NULL, &rt_cgroup_v2_ops, &err), -1);
  assert_int_equal (rt_cgroup_init_with (&cg, "relative/root", ID, &rt_cgroup_v2_ops, &err), -1);
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v2_ops, &err), 0);
  assert_ptr_equal (cg.ops, &rt_cgroup_v2_ops);
  assert_int_equal (cg.dirfd, -1);
}

static void
test_detect (void **state)
{
  struct rt_cgroup cg;
  struct sbx_err err;
  /* A plain directory (tmpfs or ext4) is not cgroup2: v1 with controllers below it. */
  assert_int_equal (rt_cgroup_init (&cg, g_root, ID, &err), 0);
  assert_ptr_equal (cg.ops, &rt_cgroup_v1_ops);
  struct statfs sf;
  if (statfs ("/sys/fs/cgroup/unified", &sf) == 0 && sf.f_type == 0x63677270)
    {
      assert_int_equal (rt_cgroup_init (&cg, "/sys/fs/cgroup/unified", ID, &err), 0);
      assert_ptr_equal (cg.ops, &rt_cgroup_v2_ops);
    }
  else
    printf ("SKIP part: no cgroup2 at /sys/fs/cgroup/unified\n");
  assert_int_equal (rt_cgroup_init (&cg, "/nonexistent/sbx-cg", ID, &err), -1);
}

/* ---- v1 on a fake tree -------------------------------------------------------- */

static void
test_v1_limits (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (1500, 256 * MiB, 64);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);

  char cpu[PATH_MAX], mem[PATH_MAX], pids[PATH_MAX];
  dir_of (cpu, "cpu");
  dir_of (mem, "memory");
  dir_of (pids, "pids");
  assert_knob (cpu, "cpu.cfs_period_us", "100000");
  assert_knob (cpu, "cpu.cfs_quota_us", "150000");
  assert_knob (mem, "memory.limit_in_bytes", "268435456");
  assert_knob (mem, "memory.memsw.limit_in_bytes", "268435456");
  assert_knob (mem, "memory.swappiness", "0");
  assert_knob (mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
  assert_knob (pids, "pids.max", "64");

  assert_int_equal (cg.ops->clone_fd (&cg), -1);
  assert_int_equal ((int) cg.ops->oom_kills (&cg), 3);
  struct rt_cgroup_stats st;
  assert_int_equal (cg.ops->stats (&cg, &st), 0);
  assert_int_equal ((int) st.mem_peak_bytes, 4096);
  assert_int_equal ((int) st.cpu_usage_ns, 123456);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
}

static void
test_v1_unlimited (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (0, 0, 0);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  char cpu[PATH_MAX], mem[PATH_MAX], pids[PATH_MAX];
  dir_of (cpu, "cpu");
  dir_of (mem, "memory");
  dir_of (pids, "pids");
  assert_knob (cpu, "cpu.cfs_period_us", "100000");
  assert_knob (cpu, "cpu.cfs_quota_us", "-1");
  assert_knob (mem, "memory.limit_in_bytes", "-1");
  assert_knob (mem, "memory.memsw.limit_in_bytes", "-1");
  assert_knob (pids, "pids.max", "max");
}

/* No swap accounting (no memsw file) and no swappiness knob: both optional. */
static void
test_v1_optional_knobs (void **state)
{
  fake_v1 (0);
  char mem[PATH_MAX], p[PATH_MAX + 64];
  dir_of (mem, "memory");
  snprintf (p, sizeof p, "%s/memory.memsw.limit_in_bytes", mem);
  assert_int_equal (unlink (p), 0);
  snprintf (p, sizeof p, "%s/memory.swappiness", mem);
  assert_int_equal (unlink (p), 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (1000, 64 * MiB, 10);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  assert_knob (mem, "memory.limit_in_bytes", "67108864");
  assert_knob (mem, "memory.memsw.limit_in_bytes", "<absent>");
  assert_knob (mem, "memory.swappiness", "<absent>");
}

/* A limit that cannot be written is an error, not a warning. */
static void
test_v1_missing_knob_fails (void **state)
{
  fake_v1 (0);
  char pids[PATH_MAX], p[PATH_MAX + 64];
  dir_of (pids, "pids");
  snprintf (p, sizeof p, "%s/pids.max", pids);
  assert_int_equal (unlink (p), 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (1000, 64 * MiB, 10);
  assert_int_equal (cg.ops->create (&cg, &l, &err), -1);
  assert_non_null (strstr (err.msg, "pids.max"));
  assert_int_equal (err.sys_errno, ENOENT);
}

/* Without a freezer, kill_all could not stop a fork bomb: refuse to create. The
 * directories made before noticing are removed again. */
static void
test_v1_missing_controller_fails (void **state)
{
  char d[PATH_MAX];
  snprintf (d, sizeof d, "%s/memory", g_root);
  assert_int_equal (mkdir (d, 0755), 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (0, 0, 0);
  assert_int_equal (cg.ops->create (&cg, &l, &err), -1);
  assert_non_null (strstr (err.msg, "freezer"));
  dir_of (d, "memory");
  assert_false (exists (d));
}

static void
test_v1_combined_cpu (void **state)
{
  fake_v1 (1);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (250, 0, 0);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  char cpu[PATH_MAX];
  dir_of (cpu, "cpu,cpuacct");
  assert_knob (cpu, "cpu.cfs_quota_us", "25000");
  struct rt_cgroup_stats st;
  assert_int_equal (cg.ops->stats (&cg, &st), 0);
  assert_int_equal ((int) st.cpu_usage_ns, 123456);
}

/* attach writes the pid into every controller; kill_all freezes, SIGKILLs what
 * cgroup.procs lists, and thaws. The pid is a real child, so the kill is observable. */
static void
test_v1_attach_kill (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (0, 0, 0);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  assert_int_equal (cg.ops->attach (&cg, 0, &err), -1);
  assert_int_equal (cg.ops->attach (&cg, -1, &err), -1);

  pid_t pid = spawn_sleeper ();
  assert_int_equal (cg.ops->attach (&cg, pid, &err), 0);
  char want[24];
  snprintf (want, sizeof want, "%d", (int) pid);
  static const char *const ctrls[] = { "cpu", "cpuacct", "memory", "pids", "freezer" };
  for (size_t i = 0; i < 5; i++)
    {
      char d[PATH_MAX];
      dir_of (d, ctrls[i]);
      assert_knob (d, "cgroup.procs", want);
    }
  assert_int_equal (cg.ops->is_empty (&cg), 0);
  cg.ops->kill_all (&cg);
  assert_killed (pid);
  char fz[PATH_MAX];
  dir_of (fz, "freezer");
  assert_knob (fz, "freezer.state", "THAWED\n");
}

/* A procs file may say anything; 0, negative and absurd numbers are never signalled. */
static void
test_procs_parsing (void **state)
{
  char d[PATH_MAX];
  dir_of (d, "freezer");
  assert_int_equal (sbx_mkdir_p (d, 0755), 0);
  pid_t a = spawn_sleeper (), b = spawn_sleeper ();
  char list[160];
  /* Only whole lines of digits count; no final newline on the last one. */
  snprintf (list, sizeof list, "0\n-1\n1\n12abc\n %d\n%d\n99999999999\n%d", (int) a, (int) a,
            (int) b);
  put (d, "cgroup.procs", list);
  assert_int_equal (rt_cg_count_procs (d), 2);
  assert_int_equal (rt_cg_kill_procs (d), 2);
  assert_killed (a);
  assert_killed (b);
  put (d, "cgroup.procs", "");
  assert_int_equal (rt_cg_count_procs (d), 0);
  char gone[PATH_MAX + 8];
  snprintf (gone, sizeof gone, "%s/nope", d);
  assert_int_equal (rt_cg_count_procs (gone), 0);
}

static void
test_v1_remove_idempotent (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v1_ops, &err), 0);
  struct rt_limits l = limits (100, MiB, 5);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  static const char *const ctrls[] = { "cpu", "cpuacct", "memory", "pids", "freezer" };
  for (size_t i = 0; i < 5; i++)
    {
      char d[PATH_MAX];
      dir_of (d, ctrls[i]);
      clear_files (d);
    }
  assert_int_equal (cg.ops->remove (&cg), 0);
  for (size_t i = 0; i < 5; i++)
    {
      char d[PATH_MAX];
      dir_of (d, ctrls[i]);
      assert_false (exists (d));
      /* the shared parent stays */
      snprintf (d, sizeof d, "%s/%s/sbx", g_root, ctrls[i]);
      assert_true (exists (d));
    }
  assert_int_equal (cg.ops->remove (&cg), 0);
  assert_int_equal (rt_cgroup_destroy (&cg), 0);
}

/* ---- v2 on a fake tree -------------------------------------------------------- */

static void
test_v2_limits (void **state)
{
  fake_v2 ("cpuset cpu io memory hugetlb pids rdma\n", 1);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v2_ops, &err), 0);
  struct rt_limits l = limits (1500, 256 * MiB, 64);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);

  char d[PATH_MAX], sbx[PATH_MAX];
  dir_of (d, NULL);
  snprintf (sbx, sizeof sbx, "%s/sbx", g_root);
  assert_knob (g_root, "cgroup.subtree_control", "+cpu +memory +pids");
  assert_knob (sbx, "cgroup.subtree_control", "+cpu +memory +pids");
  assert_knob (d, "cpu.max", "150000 100000");
  assert_knob (d, "memory.max", "268435456");
  assert_knob (d, "memory.swap.max", "0");
  assert_knob (d, "pids.max", "64");

  int fd = cg.ops->clone_fd (&cg);
  assert_true (fd >= 0);
  struct stat a, b;
  assert_int_equal (fstat (fd, &a), 0);
  assert_int_equal (stat (d, &b), 0);
  assert_true (S_ISDIR (a.st_mode) && a.st_ino == b.st_ino);
  assert_true (fcntl (fd, F_GETFD) & FD_CLOEXEC);

  assert_int_equal ((int) cg.ops->oom_kills (&cg), 2);
  struct rt_cgroup_stats st;
  assert_int_equal (cg.ops->stats (&cg, &st), 0);
  assert_int_equal ((int) st.mem_peak_bytes, 8192);
  assert_int_equal ((int) st.cpu_usage_ns, 77000);

  clear_files (d);
  assert_int_equal (cg.ops->remove (&cg), 0);
  assert_int_equal (cg.dirfd, -1);
  assert_int_equal (fcntl (fd, F_GETFD), -1); /* closed by remove */
  assert_false (exists (d));
  assert_int_equal (cg.ops->remove (&cg), 0);
}

static void
test_v2_unlimited (void **state)
{
  fake_v2 ("cpu memory pids", 1);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v2_ops, &err), 0);
  struct rt_limits l = limits (0, 0, 0);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  char d[PATH_MAX];
  dir_of (d, NULL);
  assert_knob (d, "cpu.max", "max 100000");
  assert_knob (d, "memory.max", "max");
  assert_knob (d, "memory.swap.max", "0");
  assert_knob (d, "pids.max", "max");
  close (cg.dirfd);
}

/* "cpu" must not be taken from "cpuset"; controllers the host lacks are not enabled,
 * and a limit that needs one fails, while "unlimited" there is fine. */
static void
test_v2_missing_controller (void **state)
{
  fake_v2 ("cpuset io memory pids\n", 1);
  char d[PATH_MAX], p[PATH_MAX + 16];
  dir_of (d, NULL);
  snprintf (p, sizeof p, "%s/cpu.max", d);
  assert_int_equal (unlink (p), 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v2_ops, &err), 0);
  struct rt_limits l = limits (0, 32 * MiB, 8);
  assert_int_equal (cg.ops->create (&cg, &l, &err), 0);
  assert_knob (g_root, "cgroup.subtree_control", "+memory +pids");
  assert_knob (d, "memory.max", "33554432");
  assert_int_equal (cg.ops->remove (&cg), -1); /* fake files keep it busy */
  l.cpu_millis = 500;
  assert_int_equal (cg.ops->create (&cg, &l, &err), -1);
  assert_non_null (strstr (err.msg, "cpu.max"));
  assert_int_equal (cg.dirfd, -1);
}

static void
test_v2_kill_file (void **state)
{
  fake_v2 ("cpu memory pids", 1);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v2_ops, &err), 0);
  char d[PATH_MAX];
  dir_of (d, NULL);
  pid_t pid = spawn_sleeper ();
  assert_int_equal (cg.ops->attach (&cg, pid, &err), 0);
  char want[24];
  snprintf (want, sizeof want, "%d", (int) pid);
  assert_knob (d, "cgroup.procs", want);
  cg.ops->kill_all (&cg);
  assert_knob (d, "cgroup.kill", "1");
  assert_knob (d, "cgroup.freeze", ""); /* not needed with cgroup.kill */
  assert_int_equal (cg.ops->is_empty (&cg), 0);
  put (d, "cgroup.events", "populated 0\nfrozen 0\n");
  assert_int_equal (cg.ops->is_empty (&cg), 1);
  /* the fake kernel did not kill it: still alive, so nothing signalled it by pid */
  assert_int_equal (waitpid (pid, NULL, WNOHANG), 0);
  kill (pid, SIGKILL);
  assert_killed (pid);
}

/* Kernels before 5.14 have no cgroup.kill: freeze, SIGKILL what cgroup.procs lists, thaw. */
static void
test_v2_kill_freeze (void **state)
{
  fake_v2 ("cpu memory pids", 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (&cg, g_root, ID, &rt_cgroup_v2_ops, &err), 0);
  char d[PATH_MAX];
  dir_of (d, NULL);
  pid_t pid = spawn_sleeper ();
  assert_int_equal (cg.ops->attach (&cg, pid, &err), 0);
  cg.ops->kill_all (&cg);
  assert_killed (pid);
  assert_knob (d, "cgroup.freeze", "0");
  assert_knob (d, "cgroup.kill", "<absent>");
}

/* ---- end to end on this machine ------------------------------------------------ */

static int
skip_unless_real_v1 (void)
{
  struct rt_cgroup cg;
  struct sbx_err err;
  if (geteuid () != 0)
    {
      printf ("SKIP: not root, cannot create real cgroups\n");
      return 1;
    }
  if (rt_cgroup_init (&cg, "/sys/fs/cgroup", ID, &err) < 0 || cg.ops != &rt_cgroup_v1_ops
      || !exists ("/sys/fs/cgroup/freezer") || !exists ("/sys/fs/cgroup/memory"))
    {
      printf ("SKIP: /sys/fs/cgroup is not a cgroup v1 layout with freezer and memory\n");
      return 1;
    }
  return 0;
}

/* 1 if /proc/<pid>/cgroup puts pid in sbx/<id> for controller ctrl (v2: ctrl ""). */
static int
in_cgroup (pid_t pid, const char *ctrl, const char *id)
{
  char p[64], buf[4096], want[160];
  snprintf (p, sizeof p, "/proc/%d/cgroup", (int) pid);
  if (sbx_read_file (p, buf, sizeof buf) < 0)
    return 0;
  snprintf (want, sizeof want, ":%s:/sbx/%s\n", ctrl, id);
  return strstr (buf, want) != NULL;
}

static void
real_init (struct rt_cgroup *cg, const char *root, char id[SBX_ID_MAX])
{
  struct sbx_err err;
  assert_int_equal (sbx_id_new ("sb", id), 0);
  assert_int_equal (rt_cgroup_init (cg, root, id, &err), 0);
}

static void
assert_real_v1_gone (const char *id)
{
  static const char *const ctrls[] = { "cpu", "cpuacct", "memory", "pids", "freezer" };
  for (size_t i = 0; i < 5; i++)
    {
      char d[PATH_MAX];
      snprintf (d, sizeof d, "/sys/fs/cgroup/%s/sbx/%s", ctrls[i], id);
      assert_false (exists (d));
    }
}

static void
test_real_v1 (void **state)
{
  if (skip_unless_real_v1 ())
    return;
  struct rt_cgroup cg;
  struct sbx_err err;
  char id[SBX_ID_MAX];
  real_init (&cg, "/sys/fs/cgroup", id);
  struct rt_limits l = limits (500, 64 * MiB, 32);
  if (cg.ops->create (&cg, &l, &err) < 0)
    fail_msg ("create: %s", err.msg);

  char d[PATH_MAX];
  uint64_t v;
  snprintf (d, sizeof d, "/sys/fs/cgroup/cpu/sbx/%s", id);
  assert_int_equal (rt_cg_read_u64 (d, "cpu.cfs_quota_us", &v), 0);
  assert_int_equal ((int) v, 50000);
  assert_int_equal (rt_cg_read_u64 (d, "cpu.cfs_period_us", &v), 0);
  assert_int_equal ((int) v, 100000);
  snprintf (d, sizeof d, "/sys/fs/cgroup/memory/sbx/%s", id);
  assert_int_equal (rt_cg_read_u64 (d, "memory.limit_in_bytes", &v), 0);
  assert_int_equal (v, 64 * MiB);
  if (rt_cg_read_u64 (d, "memory.memsw.limit_in_bytes", &v) == 0)
    assert_int_equal (v, 64 * MiB);
  snprintf (d, sizeof d, "/sys/fs/cgroup/pids/sbx/%s", id);
  assert_int_equal (rt_cg_read_u64 (d, "pids.max", &v), 0);
  assert_int_equal ((int) v, 32);

  pid_t pid = spawn_sleeper ();
  if (cg.ops->attach (&cg, pid, &err) < 0)
    fail_msg ("attach: %s", err.msg);
  assert_true (in_cgroup (pid, "memory", id));
  assert_true (in_cgroup (pid, "pids", id));
  assert_true (in_cgroup (pid, "cpu", id));
  assert_true (in_cgroup (pid, "freezer", id));
  assert_int_equal (cg.ops->is_empty (&cg), 0);
  assert_int_equal (cg.ops->remove (&cg), -1);
  assert_int_equal (errno, EBUSY);
  struct rt_cgroup_stats st;
  assert_int_equal (cg.ops->stats (&cg, &st), 0);
  assert_int_equal ((int) cg.ops->oom_kills (&cg), 0);

  cg.ops->kill_all (&cg);
  assert_killed (pid);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
  assert_int_equal (cg.ops->remove (&cg), 0);
  assert_real_v1_gone (id);
  assert_int_equal (cg.ops->remove (&cg), 0);
}

/* A child that hands out a pipe's read end, waits for "go", then runs body. */
static pid_t
spawn_gated (int *go_fd, void (*body) (int report_fd), int *report_fd)
{
  int go[2], rep[2];
  assert_int_equal (pipe2 (go, O_CLOEXEC), 0);
  assert_int_equal (pipe2 (rep, O_CLOEXEC), 0);
  pid_t pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0)
    {
      char c;
      close (go[1]);
      close (rep[0]);
      if (read (go[0], &c, 1) != 1)
        _exit (1);
      body (rep[1]);
      _exit (0);
    }
  close (go[0]);
  close (rep[1]);
  *go_fd = go[1];
  *report_fd = rep[0];
  return pid;
}

/* Double fork + setsid: the grandchild leaves the session and the parent, reports its
 * pid, and sleeps. Only the cgroup still holds it. */
static void
body_daemon (int rep)
{
  pid_t p = fork ();
  if (p != 0)
    _exit (p < 0);
  setsid ();
  p = fork ();
  if (p != 0)
    _exit (p < 0);
  pid_t me = getpid ();
  if (write (rep, &me, sizeof me) != sizeof me)
    _exit (1);
  close (rep);
  for (;;)
    pause ();
}

static void
body_forkbomb (int rep)
{
  pid_t me = getpid ();
  if (write (rep, &me, sizeof me) != sizeof me)
    _exit (1);
  close (rep);
  for (;;)
    syscall (SYS_fork); /* raw: keeps the sanitizer's fork hooks out of the loop */
}

/* Reap every child; returns how many were killed by SIGKILL. We are a subreaper, so
 * orphans of the test come back to us. */
static int
reap_all (void)
{
  int killed = 0, st;
  pid_t p;
  while ((p = waitpid (-1, &st, 0)) > 0 || (p < 0 && errno == EINTR))
    if (p > 0 && WIFSIGNALED (st) && WTERMSIG (st) == SIGKILL)
      killed++;
  return killed;
}

static void
test_real_v1_daemon (void **state)
{
  if (skip_unless_real_v1 ())
    return;
  assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  char id[SBX_ID_MAX];
  real_init (&cg, "/sys/fs/cgroup", id);
  struct rt_limits l = limits (0, 64 * MiB, 32);
  if (cg.ops->create (&cg, &l, &err) < 0)
    fail_msg ("create: %s", err.msg);
  int go, rep;
  pid_t pid = spawn_gated (&go, body_daemon, &rep);
  if (cg.ops->attach (&cg, pid, &err) < 0)
    fail_msg ("attach: %s", err.msg);
  assert_int_equal (write (go, "g", 1), 1);
  pid_t daemon;
  assert_int_equal (read (rep, &daemon, sizeof daemon), (ssize_t) sizeof daemon);
  int st;
  assert_int_equal (waitpid (pid, &st, 0), pid);
  assert_true (WIFEXITED (st) && WEXITSTATUS (st) == 0);
  assert_true (in_cgroup (daemon, "freezer", id));
  assert_int_not_equal (getsid (daemon), getsid (0));

  cg.ops->kill_all (&cg);
  /* The daemon is ours again through the subreaper; it must die of SIGKILL. */
  assert_killed (daemon);
  assert_int_equal (rt_cgroup_destroy (&cg), 0);
  assert_real_v1_gone (id);
  reap_all (); /* the middle child, which exited on its own */
  close (go);
  close (rep);
  assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
}

static void
test_real_v1_forkbomb (void **state)
{
  if (skip_unless_real_v1 ())
    return;
  assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  struct rt_cgroup cg;
  struct sbx_err err;
  char id[SBX_ID_MAX];
  real_init (&cg, "/sys/fs/cgroup", id);
  struct rt_limits l = limits (200, 64 * MiB, 48);
  if (cg.ops->create (&cg, &l, &err) < 0)
    fail_msg ("create: %s", err.msg);
  int go, rep;
  pid_t pid = spawn_gated (&go, body_forkbomb, &rep);
  if (cg.ops->attach (&cg, pid, &err) < 0)
    fail_msg ("attach: %s", err.msg);
  assert_int_equal (write (go, "g", 1), 1);
  pid_t me;
  assert_int_equal (read (rep, &me, sizeof me), (ssize_t) sizeof me);
  /* Let it grow until it is visibly more than one process (pids.max bounds it). */
  char d[PATH_MAX];
  snprintf (d, sizeof d, "/sys/fs/cgroup/pids/sbx/%s", id);
  for (unsigned r = 0; rt_cg_count_procs (d) < 8; r++)
    rt_cg_backoff (r);

  cg.ops->kill_all (&cg);
  /* Dying tasks may linger a moment; destroy waits (bounded) for them and removes. */
  assert_int_equal (rt_cgroup_destroy (&cg), 0);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
  assert_real_v1_gone (id);
  assert_true (reap_all () >= 8);
  close (go);
  close (rep);
  assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
}

/* The hybrid host's cgroup2 mount has no controllers: an unlimited sandbox works there
 * (clone into it, cgroup.kill), and a real limit is refused. */
static void
test_real_v2 (void **state)
{
  struct statfs sf;
  if (geteuid () != 0 || statfs ("/sys/fs/cgroup/unified", &sf) < 0 || sf.f_type != 0x63677270)
    {
      printf ("SKIP: not root or no cgroup2 at /sys/fs/cgroup/unified\n");
      return;
    }
  struct rt_cgroup cg;
  struct sbx_err err;
  char id[SBX_ID_MAX];
  real_init (&cg, "/sys/fs/cgroup/unified", id);
  assert_ptr_equal (cg.ops, &rt_cgroup_v2_ops);
  char ctl[256];
  assert_true (sbx_read_file ("/sys/fs/cgroup/unified/cgroup.controllers", ctl, sizeof ctl) >= 0);
  if (strstr (ctl, "pids") == NULL)
    {
      struct rt_limits bad = limits (0, 0, 16);
      assert_int_equal (cg.ops->create (&cg, &bad, &err), -1);
      assert_non_null (strstr (err.msg, "pids.max"));
    }
  struct rt_limits l = limits (0, 0, 0);
  if (cg.ops->create (&cg, &l, &err) < 0)
    fail_msg ("create: %s", err.msg);
  int cfd = cg.ops->clone_fd (&cg);
  assert_true (cfd >= 0);

  struct clone_args ca = { 0 };
  ca.flags = CLONE_INTO_CGROUP;
  ca.exit_signal = SIGCHLD;
  ca.cgroup = (uint64_t) cfd;
  pid_t pid = (pid_t) syscall (SYS_clone3, &ca, sizeof ca);
  assert_true (pid >= 0);
  if (pid == 0)
    for (;;)
      pause ();
  assert_true (in_cgroup (pid, "", id));
  assert_int_equal (cg.ops->is_empty (&cg), 0);

  cg.ops->kill_all (&cg);
  assert_killed (pid);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
  assert_int_equal (rt_cgroup_destroy (&cg), 0);
  assert_int_equal (cg.dirfd, -1);
  char d[PATH_MAX];
  snprintf (d, sizeof d, "/sys/fs/cgroup/unified/sbx/%s", id);
  assert_false (exists (d));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_id_refused, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_detect, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_limits, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_unlimited, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_optional_knobs, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_missing_knob_fails, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_missing_controller_fails, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_combined_cpu, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_attach_kill, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_procs_parsing, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v1_remove_idempotent, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v2_limits, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v2_unlimited, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v2_missing_controller, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v2_kill_file, setup_tmp, teardown_tmp),
    cmocka_unit_test_setup_teardown (test_v2_kill_freeze, setup_tmp, teardown_tmp),
    cmocka_unit_test (test_real_v1),
    cmocka_unit_test (test_real_v1_daemon),
    cmocka_unit_test (test_real_v1_forkbomb),
    cmocka_unit_test (test_real_v2),
  };
  /* A kill that does not happen shows up as a waitpid that never returns: turn such a
   * hang into a failure (SIGALRM ends the run) instead of a stuck `make unit`. */
  alarm (300);
  return cmocka_run_group_tests (tests, NULL, NULL);
}
