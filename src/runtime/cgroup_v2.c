/* cgroup v2 backend: the unified tree, root/sbx/<id>, with cpu, memory and pids enabled
 * on the way down. The sandbox is cloned straight into its cgroup (CLONE_INTO_CGROUP),
 * and killed with cgroup.kill (5.14+) or, before that, by freeze + SIGKILL + thaw. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "+cpu +memory +pids", restricted to what root/cgroup.controllers offers: one write
 * (the kernel applies the whole list or nothing), and never a controller the host lacks.
 * A limit that needs a missing controller then fails on its own knob. */
static int
subtree_list (const char *root, char *out, size_t cap, struct sbx_err *err)
{
  char avail[512], p[PATH_MAX];
  snprintf (p, sizeof p, "%s/cgroup.controllers", root);
  if (sbx_read_file (p, avail, sizeof avail) < 0)
    return sbx_err_sys (err, "cgroup v2: read %s", p);
  static const char *const want[] = { "cpu", "memory", "pids" };
  out[0] = '\0';
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    {
      /* Whole-word match: "cpu" must not match "cpuset". */
      size_t wl = strlen (want[i]);
      for (const char *s = avail; (s = strstr (s, want[i])); s += wl)
        if ((s == avail || s[-1] == ' ') && (s[wl] == ' ' || s[wl] == '\n' || s[wl] == '\0'))
          {
            size_t n = strlen (out);
            snprintf (out + n, cap - n, "%s+%s", n ? " " : "", want[i]);
            break;
          }
    }
  return 0;
}

static int
v2_remove (struct rt_cgroup *cg)
{
  char dir[PATH_MAX];
  if (cg->dirfd >= 0)
    {
      close (cg->dirfd);
      cg->dirfd = -1;
    }
  if (rt_cg_path (dir, cg->root, NULL, cg->id) < 0)
    return -1;
  if (rmdir (dir) < 0 && errno != ENOENT)
    return -1;
  return 0;
}

/* Write a limit. Unlimited (0) on a knob the host lacks is fine: a new cgroup starts
 * unlimited, and there is nothing to enforce. A real limit must land (fail closed). */
static int
write_limit (const char *dir, const char *file, uint64_t v, const char *unlimited,
             struct sbx_err *err)
{
  char buf[48];
  if (v)
    snprintf (buf, sizeof buf, "%" PRIu64 "%s", v, !strcmp (file, "cpu.max") ? " 100000" : "");
  else
    snprintf (buf, sizeof buf, "%s", unlimited);
  struct sbx_err e;
  if (rt_cg_write (dir, file, buf, &e) == 0 || (!v && e.sys_errno == ENOENT))
    return 0;
  if (err)
    *err = e;
  return -1;
}

static int
v2_create (struct rt_cgroup *cg, const struct rt_limits *l, struct sbx_err *err)
{
  char parent[PATH_MAX], dir[PATH_MAX], ctl[64];
  if (rt_cg_path (parent, cg->root, NULL, NULL) < 0 || rt_cg_path (dir, cg->root, NULL, cg->id) < 0)
    return sbx_err_sys (err, "cgroup v2: path under %s", cg->root);
  if (subtree_list (cg->root, ctl, sizeof ctl, err) < 0)
    return -1;
  /* Enabling an enabled controller is a no-op, so this is safe on every create. */
  if (ctl[0] && rt_cg_write (cg->root, "cgroup.subtree_control", ctl, err) < 0)
    return -1;
  if (mkdir (parent, 0755) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "cgroup v2: mkdir %s", parent);
  if (ctl[0] && rt_cg_write (parent, "cgroup.subtree_control", ctl, err) < 0)
    return -1;
  /* EEXIST is fine: ids are random, so it is this sandbox's own (a retried create). */
  if (mkdir (dir, 0755) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "cgroup v2: mkdir %s", dir);

  uint64_t cpu_quota = (uint64_t) l->cpu_millis * 100; /* per 100000 us period */
  if (write_limit (dir, "cpu.max", cpu_quota, "max 100000", err) < 0
      || write_limit (dir, "memory.max", l->memory_bytes, "max", err) < 0
      || write_limit (dir, "pids.max", l->pids, "max", err) < 0)
    goto fail;
  /* No swap, whatever the memory limit. Absent when the kernel has no swap accounting. */
  struct sbx_err e;
  if (rt_cg_write (dir, "memory.swap.max", "0", &e) < 0 && e.sys_errno != ENOENT)
    {
      if (err)
        *err = e;
      goto fail;
    }

  if (cg->dirfd >= 0)
    close (cg->dirfd);
  cg->dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (cg->dirfd < 0)
    {
      sbx_err_sys (err, "cgroup v2: open %s", dir);
      goto fail;
    }
  return 0;

fail:
  v2_remove (cg); /* best effort; keeps err */
  return -1;
}

static int
v2_clone_fd (struct rt_cgroup *cg)
{
  return cg->dirfd;
}

static int
v2_attach (struct rt_cgroup *cg, pid_t pid, struct sbx_err *err)
{
  char dir[PATH_MAX], v[24];
  if (pid <= 0)
    return sbx_err_set (err, SBX_E_INTERNAL, EINVAL, "cgroup v2: attach: bad pid %d", (int) pid);
  if (rt_cg_path (dir, cg->root, NULL, cg->id) < 0)
    return sbx_err_sys (err, "cgroup v2: path under %s", cg->root);
  snprintf (v, sizeof v, "%d", (int) pid);
  return rt_cg_write (dir, "cgroup.procs", v, err);
}

/* Older kernels: freeze, wait for "frozen 1" (bounded), SIGKILL, thaw; repeat. */
static void
kill_frozen (const char *dir, const char *id)
{
  struct sbx_err err;
  for (unsigned round = 0; round < 8; round++)
    {
      if (rt_cg_count_procs (dir) == 0)
        return;
      if (round)
        {
          rt_cg_backoff (round - 1); /* let last round's victims exit first */
          if (rt_cg_count_procs (dir) == 0)
            return;
        }
      if (rt_cg_write (dir, "cgroup.freeze", "1", &err) < 0)
        LOG_WARN ("%s", err.msg);
      else
        for (unsigned w = 0; w < 50; w++)
          {
            uint64_t frozen = 0;
            if (rt_cg_read_key (dir, "cgroup.events", "frozen", &frozen) < 0 || frozen == 1)
              break;
            rt_cg_backoff (w);
          }
      rt_cg_kill_procs (dir);
      if (rt_cg_write (dir, "cgroup.freeze", "0", &err) < 0)
        LOG_WARN ("%s", err.msg);
    }
  if (rt_cg_count_procs (dir) != 0)
    LOG_WARN ("cgroup v2 %s: tasks left after kill rounds", id);
}

static void
v2_kill_all (struct rt_cgroup *cg)
{
  char dir[PATH_MAX];
  if (rt_cg_path (dir, cg->root, NULL, cg->id) < 0)
    return;
  struct sbx_err err;
  /* cgroup.kill kills every task atomically, forks in flight included. */
  if (rt_cg_write (dir, "cgroup.kill", "1", &err) == 0)
    return;
  if (err.sys_errno != ENOENT)
    LOG_WARN ("%s", err.msg);
  kill_frozen (dir, cg->id);
}

static int
v2_is_empty (struct rt_cgroup *cg)
{
  char dir[PATH_MAX];
  uint64_t populated;
  if (rt_cg_path (dir, cg->root, NULL, cg->id) < 0)
    return 0;
  /* "populated" also counts tasks of child cgroups, which cgroup.procs does not list. */
  if (rt_cg_read_key (dir, "cgroup.events", "populated", &populated) == 0)
    return populated == 0;
  return rt_cg_count_procs (dir) == 0;
}

static uint64_t
v2_oom_kills (struct rt_cgroup *cg)
{
  char dir[PATH_MAX];
  uint64_t n = 0;
  if (rt_cg_path (dir, cg->root, NULL, cg->id) == 0)
    rt_cg_read_key (dir, "memory.events", "oom_kill", &n);
  return n;
}

static int
v2_stats (struct rt_cgroup *cg, struct rt_cgroup_stats *st)
{
  char dir[PATH_MAX];
  int got = 0;
  uint64_t usec;
  memset (st, 0, sizeof *st);
  if (rt_cg_path (dir, cg->root, NULL, cg->id) < 0)
    return -1;
  if (rt_cg_read_u64 (dir, "memory.peak", &st->mem_peak_bytes) == 0)
    got++;
  if (rt_cg_read_key (dir, "cpu.stat", "usage_usec", &usec) == 0)
    {
      st->cpu_usage_ns = usec * 1000;
      got++;
    }
  if (!got)
    {
      errno = ENOENT;
      return -1;
    }
  return 0;
}

const struct rt_cgroup_ops rt_cgroup_v2_ops = {
  .name = "v2",
  .clone_into = 1,
  .create = v2_create,
  .clone_fd = v2_clone_fd,
  .attach = v2_attach,
  .kill_all = v2_kill_all,
  .is_empty = v2_is_empty,
  .oom_kills = v2_oom_kills,
  .remove = v2_remove,
  .stats = v2_stats,
};
