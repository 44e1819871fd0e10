/* cgroup backends: both against a fake tree in a temp dir (exact knob contents), then
 * end to end on this machine's real hierarchies (v1 controllers, and the cgroup2 mount
 * at /sys/fs/cgroup/unified when there is one). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_runtime_cgroup_util.h"

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

/* The real hierarchies of this machine. */
#define REAL_ROOT "/sys/fs/cgroup"
#define REAL_V2_ROOT REAL_ROOT "/unified"
#define CGROUP2_MAGIC 0x63677270

/* Called with what fork or clone returned: the child blocks until killed, the parent
 * gets its pid. */
static pid_t
child_sleeps (pid_t pid)
{
  assert_true (pid >= 0);
  if (pid == 0)
    for (;;)
      pause ();
  return pid;
}

static pid_t
spawn_sleeper (void)
{
  return child_sleeps (fork ());
}

static void
attach_ok (struct rt_cgroup *cg, pid_t pid)
{
  struct sbx_err err;
  if (cg->ops->attach (cg, pid, &err) < 0)
    fail_msg ("attach: %s", err.msg);
}

/* A sleeping child attached to cg. */
static pid_t
attach_sleeper (struct rt_cgroup *cg)
{
  pid_t pid = spawn_sleeper ();
  attach_ok (cg, pid);
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

/* 1 if a cgroup2 filesystem is mounted at REAL_V2_ROOT. */
static int
have_real_v2 (void)
{
  struct statfs sf;
  return statfs (REAL_V2_ROOT, &sf) == 0 && sf.f_type == CGROUP2_MAGIC;
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
  init_fake (&cg, &rt_cgroup_v2_ops);
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
  if (have_real_v2 ())
    {
      assert_int_equal (rt_cgroup_init (&cg, REAL_V2_ROOT, ID, &err), 0);
      assert_ptr_equal (cg.ops, &rt_cgroup_v2_ops);
    }
  else
    printf ("SKIP part: no cgroup2 at " REAL_V2_ROOT "\n");
  assert_int_equal (rt_cgroup_init (&cg, "/nonexistent/sbx-cg", ID, &err), -1);
}

/* ---- v1 on a fake tree -------------------------------------------------------- */

static void
test_v1_limits (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (1500, 256 * MiB, 64), &err), 0);
  assert_v1_knobs ("150000", "268435456", "64");
  char mem[PATH_MAX];
  dir_of (mem, "memory");
  assert_knob (mem, "memory.swappiness", "0");
  assert_knob (mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");

  assert_int_equal (cg.ops->clone_fd (&cg), -1);
  assert_counters (&cg, 3, 4096, 123456);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
}

static void
test_v1_unlimited (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (0, 0, 0), &err), 0);
  assert_v1_knobs ("-1", "-1", "max");
}

/* No swap accounting (no memsw file) and no swappiness knob: both optional. */
static void
test_v1_optional_knobs (void **state)
{
  fake_v1 (0);
  drop_knob ("memory", "memory.memsw.limit_in_bytes");
  drop_knob ("memory", "memory.swappiness");
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (1000, 64 * MiB, 10), &err), 0);
  char mem[PATH_MAX];
  dir_of (mem, "memory");
  assert_knob (mem, "memory.limit_in_bytes", "67108864");
  assert_knob (mem, "memory.memsw.limit_in_bytes", "<absent>");
  assert_knob (mem, "memory.swappiness", "<absent>");
}

/* A limit that cannot be written is an error, not a warning. */
static void
test_v1_missing_knob_fails (void **state)
{
  fake_v1 (0);
  drop_knob ("pids", "pids.max");
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (1000, 64 * MiB, 10), &err), -1);
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
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (0, 0, 0), &err), -1);
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
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (250, 0, 0), &err), 0);
  char cpu[PATH_MAX];
  dir_of (cpu, "cpu,cpuacct");
  assert_knob (cpu, "cpu.cfs_quota_us", "25000");
  /* cpuacct.usage found through the shared mount */
  assert_counters (&cg, 3, 4096, 123456);
}

/* attach writes the pid into every controller; kill_all freezes, SIGKILLs what
 * cgroup.procs lists, and thaws. The pid is a real child, so the kill is observable. */
static void
test_v1_attach_kill (void **state)
{
  fake_v1 (0);
  struct rt_cgroup cg;
  struct sbx_err err;
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (0, 0, 0), &err), 0);
  assert_int_equal (cg.ops->attach (&cg, 0, &err), -1);
  assert_int_equal (cg.ops->attach (&cg, -1, &err), -1);

  pid_t pid = attach_sleeper (&cg);
  for (size_t i = 0; i < N_V1_CTRLS; i++)
    {
      char d[PATH_MAX];
      dir_of (d, v1_ctrls[i]);
      assert_procs_hold (d, pid);
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
  assert_int_equal (create_fake (&cg, &rt_cgroup_v1_ops, limits (100, MiB, 5), &err), 0);
  for (size_t i = 0; i < N_V1_CTRLS; i++)
    {
      char d[PATH_MAX];
      dir_of (d, v1_ctrls[i]);
      clear_files (d);
    }
  assert_int_equal (cg.ops->remove (&cg), 0);
  for (size_t i = 0; i < N_V1_CTRLS; i++)
    {
      char d[PATH_MAX];
      dir_of (d, v1_ctrls[i]);
      assert_false (exists (d));
      /* the shared parent stays */
      snprintf (d, sizeof d, "%s/%s/sbx", g_root, v1_ctrls[i]);
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
  assert_int_equal (create_fake (&cg, &rt_cgroup_v2_ops, limits (1500, 256 * MiB, 64), &err), 0);
  char d[PATH_MAX], sbx[PATH_MAX];
  dir_of (d, NULL);
  snprintf (sbx, sizeof sbx, "%s/sbx", g_root);
  assert_knob (g_root, "cgroup.subtree_control", "+cpu +memory +pids");
  assert_knob (sbx, "cgroup.subtree_control", "+cpu +memory +pids");
  assert_v2_knobs ("150000 100000", "268435456", "64");

  int fd = cg.ops->clone_fd (&cg);
  assert_true (fd >= 0);
  struct stat a, b;
  assert_int_equal (fstat (fd, &a), 0);
  assert_int_equal (stat (d, &b), 0);
  assert_true (S_ISDIR (a.st_mode) && a.st_ino == b.st_ino);
  assert_true (fcntl (fd, F_GETFD) & FD_CLOEXEC);

  assert_counters (&cg, 2, 8192, 77000);

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
  assert_int_equal (create_fake (&cg, &rt_cgroup_v2_ops, limits (0, 0, 0), &err), 0);
  assert_v2_knobs ("max 100000", "max", "max");
  close (cg.dirfd);
}

/* "cpu" must not be taken from "cpuset"; controllers the host lacks are not enabled,
 * and a limit that needs one fails, while "unlimited" there is fine. */
static void
test_v2_missing_controller (void **state)
{
  fake_v2 ("cpuset io memory pids\n", 1);
  drop_knob (NULL, "cpu.max");
  struct rt_cgroup cg;
  struct sbx_err err;
  struct rt_limits l = limits (0, 32 * MiB, 8);
  assert_int_equal (create_fake (&cg, &rt_cgroup_v2_ops, l, &err), 0);
  char d[PATH_MAX];
  dir_of (d, NULL);
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
  init_fake (&cg, &rt_cgroup_v2_ops);
  char d[PATH_MAX];
  dir_of (d, NULL);
  pid_t pid = attach_sleeper (&cg);
  assert_procs_hold (d, pid);
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
  init_fake (&cg, &rt_cgroup_v2_ops);
  char d[PATH_MAX];
  dir_of (d, NULL);
  pid_t pid = attach_sleeper (&cg);
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
  if (rt_cgroup_init (&cg, REAL_ROOT, ID, &err) < 0 || cg.ops != &rt_cgroup_v1_ops
      || !exists (REAL_ROOT "/freezer") || !exists (REAL_ROOT "/memory"))
    {
      printf ("SKIP: " REAL_ROOT " is not a cgroup v1 layout with freezer and memory\n");
      return 1;
    }
  return 0;
}

/* "/sys/fs/cgroup/<hier>/sbx/<id>": hier is a v1 controller, or "unified" for v2. */
static void
real_dir (char out[PATH_MAX], const char *hier, const char *id)
{
  snprintf (out, PATH_MAX, REAL_ROOT "/%s/sbx/%s", hier, id);
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

/* A real v1 sandbox cgroup with a fresh id, created with limits l. */
static void
real_v1_create (struct rt_cgroup *cg, char id[SBX_ID_MAX], struct rt_limits l)
{
  struct sbx_err err;
  real_init (cg, REAL_ROOT, id);
  if (cg->ops->create (cg, &l, &err) < 0)
    fail_msg ("create: %s", err.msg);
}

/* The kernel's value of a real v1 knob. */
static void
assert_real_knob (const char *ctrl, const char *id, const char *file, uint64_t want)
{
  char d[PATH_MAX];
  uint64_t v;
  real_dir (d, ctrl, id);
  assert_int_equal (rt_cg_read_u64 (d, file, &v), 0);
  assert_int_equal (v, want);
}

static void
assert_real_v1_gone (const char *id)
{
  for (size_t i = 0; i < N_V1_CTRLS; i++)
    {
      char d[PATH_MAX];
      real_dir (d, v1_ctrls[i], id);
      assert_false (exists (d));
    }
}

static void
test_real_v1 (void **state)
{
  if (skip_unless_real_v1 ())
    return;
  struct rt_cgroup cg;
  char id[SBX_ID_MAX];
  real_v1_create (&cg, id, limits (500, 64 * MiB, 32));
  assert_real_knob ("cpu", id, "cpu.cfs_quota_us", 50000);
  assert_real_knob ("cpu", id, "cpu.cfs_period_us", 100000);
  assert_real_knob ("memory", id, "memory.limit_in_bytes", 64 * MiB);
  char d[PATH_MAX];
  uint64_t v;
  real_dir (d, "memory", id);
  if (rt_cg_read_u64 (d, "memory.memsw.limit_in_bytes", &v) == 0) /* swap accounting on */
    assert_int_equal (v, 64 * MiB);
  assert_real_knob ("pids", id, "pids.max", 32);

  pid_t pid = attach_sleeper (&cg);
  static const char *const joined[] = { "memory", "pids", "cpu", "freezer" };
  for (size_t i = 0; i < sizeof joined / sizeof joined[0]; i++)
    assert_true (in_cgroup (pid, joined[i], id));
  assert_int_equal (cg.ops->is_empty (&cg), 0);
  assert_int_equal (cg.ops->remove (&cg), -1);
  assert_int_equal (errno, EBUSY);
  struct rt_cgroup_stats st;
  assert_int_equal (cg.ops->stats (&cg, &st), 0);
  assert_int_equal (cg.ops->oom_kills (&cg), 0);

  cg.ops->kill_all (&cg);
  assert_killed (pid);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
  assert_int_equal (cg.ops->remove (&cg), 0);
  assert_real_v1_gone (id);
  assert_int_equal (cg.ops->remove (&cg), 0);
}

/* A child held at a gate: attached to a cgroup before it runs body. */
struct gated {
  pid_t pid;      /* the child */
  pid_t reported; /* the pid body wrote to the report pipe */
  int go;         /* write end of the gate */
  int report;     /* read end of the report pipe */
};

/* Fork a child that waits for "go", then runs body (which reports a pid). */
static struct gated
spawn_gated (void (*body) (int report_fd))
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
  return (struct gated){ .pid = pid, .reported = -1, .go = go[1], .report = rep[0] };
}

/* spawn_gated, attach the child to cg, open the gate and read the pid body reports:
 * everything body does happens inside the cgroup. */
static struct gated
start_in_cgroup (struct rt_cgroup *cg, void (*body) (int report_fd))
{
  struct gated g = spawn_gated (body);
  attach_ok (cg, g.pid);
  assert_int_equal (write (g.go, "g", 1), 1);
  assert_int_equal (read (g.report, &g.reported, sizeof g.reported),
                    (ssize_t) sizeof g.reported);
  return g;
}

static void
close_gated (struct gated *g)
{
  close (g->go);
  close (g->report);
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

/* Orphans of the test come back to us while on (so their deaths are observable). */
static void
set_subreaper (int on)
{
  assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, on, 0, 0, 0), 0);
}

/* Reap every child (orphans too, while we are a subreaper); returns how many were
 * killed by SIGKILL. */
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

/* As a subreaper (orphans of body come back to us, so their deaths are observable):
 * a fresh real v1 cgroup with limits l, and a gated child running body inside it. */
static struct gated
start_real_v1 (struct rt_cgroup *cg, char id[SBX_ID_MAX], struct rt_limits l,
               void (*body) (int report_fd))
{
  set_subreaper (1);
  real_v1_create (cg, id, l);
  return start_in_cgroup (cg, body);
}

/* After kill_all: destroy must leave nothing behind. Returns how many children died of
 * SIGKILL and had not been reaped yet. */
static int
finish_real_v1 (struct rt_cgroup *cg, const char *id, struct gated *g)
{
  /* Dying tasks may linger a moment; destroy waits (bounded) for them and removes. */
  assert_int_equal (rt_cgroup_destroy (cg), 0);
  assert_int_equal (cg->ops->is_empty (cg), 1);
  assert_real_v1_gone (id);
  int killed = reap_all ();
  close_gated (g);
  set_subreaper (0);
  return killed;
}

static void
test_real_v1_daemon (void **state)
{
  if (skip_unless_real_v1 ())
    return;
  struct rt_cgroup cg;
  char id[SBX_ID_MAX];
  struct gated g = start_real_v1 (&cg, id, limits (0, 64 * MiB, 32), body_daemon);
  pid_t daemon = g.reported;
  int st;
  assert_int_equal (waitpid (g.pid, &st, 0), g.pid);
  assert_true (WIFEXITED (st) && WEXITSTATUS (st) == 0);
  assert_true (in_cgroup (daemon, "freezer", id));
  assert_int_not_equal (getsid (daemon), getsid (0));

  cg.ops->kill_all (&cg);
  /* The daemon is ours again through the subreaper; it must die of SIGKILL. */
  assert_killed (daemon);
  finish_real_v1 (&cg, id, &g); /* reaps the middle child, which exited on its own */
}

static void
test_real_v1_forkbomb (void **state)
{
  if (skip_unless_real_v1 ())
    return;
  struct rt_cgroup cg;
  char id[SBX_ID_MAX];
  struct gated g = start_real_v1 (&cg, id, limits (200, 64 * MiB, 48), body_forkbomb);
  /* Let it grow until it is visibly more than one process (pids.max bounds it). */
  char d[PATH_MAX];
  real_dir (d, "pids", id);
  for (unsigned r = 0; rt_cg_count_procs (d) < 8; r++)
    rt_cg_backoff (r);

  cg.ops->kill_all (&cg);
  assert_true (finish_real_v1 (&cg, id, &g) >= 8);
}

/* A child cloned straight into the cgroup behind cfd (CLONE_INTO_CGROUP); it sleeps. */
static pid_t
clone_sleeper_into (int cfd)
{
  struct clone_args ca = { 0 };
  ca.flags = CLONE_INTO_CGROUP;
  ca.exit_signal = SIGCHLD;
  ca.cgroup = (uint64_t) cfd;
  return child_sleeps ((pid_t) syscall (SYS_clone3, &ca, sizeof ca));
}

/* The hybrid host's cgroup2 mount has no controllers: an unlimited sandbox works there
 * (clone into it, cgroup.kill), and a real limit is refused. */
static void
test_real_v2 (void **state)
{
  if (geteuid () != 0 || !have_real_v2 ())
    {
      printf ("SKIP: not root or no cgroup2 at " REAL_V2_ROOT "\n");
      return;
    }
  struct rt_cgroup cg;
  struct sbx_err err;
  char id[SBX_ID_MAX];
  real_init (&cg, REAL_V2_ROOT, id);
  assert_ptr_equal (cg.ops, &rt_cgroup_v2_ops);
  char ctl[256];
  assert_true (sbx_read_file (REAL_V2_ROOT "/cgroup.controllers", ctl, sizeof ctl) >= 0);
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

  pid_t pid = clone_sleeper_into (cfd);
  assert_true (in_cgroup (pid, "", id));
  assert_int_equal (cg.ops->is_empty (&cg), 0);

  cg.ops->kill_all (&cg);
  assert_killed (pid);
  assert_int_equal (cg.ops->is_empty (&cg), 1);
  assert_int_equal (rt_cgroup_destroy (&cg), 0);
  assert_int_equal (cg.dirfd, -1);
  char d[PATH_MAX];
  real_dir (d, "unified", id);
  assert_false (exists (d));
}

/* Every fake-tree test gets a fresh temp root (g_root). */
#define FAKE_TEST(fn) cmocka_unit_test_setup_teardown (fn, setup_tmp, teardown_tmp)

int
main (void)
{
  const struct CMUnitTest tests[] = {
    FAKE_TEST (test_id_refused),
    FAKE_TEST (test_detect),
    FAKE_TEST (test_v1_limits),
    FAKE_TEST (test_v1_unlimited),
    FAKE_TEST (test_v1_optional_knobs),
    FAKE_TEST (test_v1_missing_knob_fails),
    FAKE_TEST (test_v1_missing_controller_fails),
    FAKE_TEST (test_v1_combined_cpu),
    FAKE_TEST (test_v1_attach_kill),
    FAKE_TEST (test_procs_parsing),
    FAKE_TEST (test_v1_remove_idempotent),
    FAKE_TEST (test_v2_limits),
    FAKE_TEST (test_v2_unlimited),
    FAKE_TEST (test_v2_missing_controller),
    FAKE_TEST (test_v2_kill_file),
    FAKE_TEST (test_v2_kill_freeze),
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
