/* The fake cgroup trees of test_runtime_cgroup.c: what the kernel would show under a
 * temp root (g_root) for v1 and v2, and the checks of what a backend wrote there.
 * Include after cmocka.h. */
#pragma once

#include "runtime/cgroup.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The sandbox id of every fake tree. */
#define ID "sb_0123456789abcdef0123"
#define MiB (1024ULL * 1024)

/* The v1 controllers a sandbox gets a directory in (fake_v1 (0) and the real host). */
static const char *const v1_ctrls[] = { "cpu", "cpuacct", "memory", "pids", "freezer" };
#define N_V1_CTRLS (sizeof v1_ctrls / sizeof v1_ctrls[0])

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

/* Point cg at the fake tree with a forced backend. */
static void
init_fake (struct rt_cgroup *cg, const struct rt_cgroup_ops *ops)
{
  struct sbx_err err;
  assert_int_equal (rt_cgroup_init_with (cg, g_root, ID, ops, &err), 0);
}

/* init_fake, then create with limits l: create's result (err filled on -1). */
static int
create_fake (struct rt_cgroup *cg, const struct rt_cgroup_ops *ops, struct rt_limits l,
             struct sbx_err *err)
{
  init_fake (cg, ops);
  return cg->ops->create (cg, &l, err);
}

/* Remove a control file the fake kernel would show (ctrl NULL: the v2 sandbox dir). */
static void
drop_knob (const char *ctrl, const char *file)
{
  char d[PATH_MAX], p[PATH_MAX + 64];
  dir_of (d, ctrl);
  snprintf (p, sizeof p, "%s/%s", d, file);
  assert_int_equal (unlink (p), 0);
}

/* The v1 limit knobs after create: period always 100000; memsw follows memory (no swap). */
static void
assert_v1_knobs (const char *cfs_quota, const char *memory, const char *pids)
{
  char cpu[PATH_MAX], mem[PATH_MAX], pd[PATH_MAX];
  dir_of (cpu, "cpu");
  dir_of (mem, "memory");
  dir_of (pd, "pids");
  assert_knob (cpu, "cpu.cfs_period_us", "100000");
  assert_knob (cpu, "cpu.cfs_quota_us", cfs_quota);
  assert_knob (mem, "memory.limit_in_bytes", memory);
  assert_knob (mem, "memory.memsw.limit_in_bytes", memory);
  assert_knob (pd, "pids.max", pids);
}

/* The v2 limit knobs after create; swap is off whatever the memory limit. */
static void
assert_v2_knobs (const char *cpu_max, const char *memory_max, const char *pids_max)
{
  char d[PATH_MAX];
  dir_of (d, NULL);
  assert_knob (d, "cpu.max", cpu_max);
  assert_knob (d, "memory.max", memory_max);
  assert_knob (d, "memory.swap.max", "0");
  assert_knob (d, "pids.max", pids_max);
}

/* What the counters of cg read (the fake trees hold fixed numbers). */
static void
assert_counters (struct rt_cgroup *cg, uint64_t oom_kills, uint64_t mem_peak, uint64_t cpu_ns)
{
  assert_int_equal (cg->ops->oom_kills (cg), oom_kills);
  struct rt_cgroup_stats st;
  assert_int_equal (cg->ops->stats (cg, &st), 0);
  assert_int_equal (st.mem_peak_bytes, mem_peak);
  assert_int_equal (st.cpu_usage_ns, cpu_ns);
}

/* dir/cgroup.procs lists exactly pid (what attach wrote there). */
static void
assert_procs_hold (const char *dir, pid_t pid)
{
  char want[24];
  snprintf (want, sizeof want, "%d", (int) pid);
  assert_knob (dir, "cgroup.procs", want);
}
