/* cgroup v1 backend: one directory per controller, root/<ctrl>/sbx/<id>.
 *
 * Controllers: freezer (kill_all needs it: v1 has no cgroup.kill, and only a frozen
 * cgroup stops a fork bomb from outrunning the kill loop), memory, pids, cpu, and
 * cpuacct when it is a separate mount (for the CPU usage counter). A host may mount cpu
 * and cpuacct together as "cpu,cpuacct" with symlinks; what exists is used. */
#include "cgroup.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { C_FREEZER, C_MEMORY, C_PIDS, C_CPU, C_CPUACCT, C_N };

static const struct v1_ctrl {
  const char *name;
  const char *alt; /* the combined mount some hosts use */
  int required;
} ctrls[C_N] = {
  [C_FREEZER] = { "freezer", NULL, 1 },
  [C_MEMORY] = { "memory", NULL, 1 },
  [C_PIDS] = { "pids", NULL, 1 },
  [C_CPU] = { "cpu", "cpu,cpuacct", 1 },
  [C_CPUACCT] = { "cpuacct", "cpu,cpuacct", 0 },
};

/* Which name controller i is mounted under at root: 1 and *name, or 0 if absent (or, for
 * cpuacct, the same hierarchy as cpu, which is then handled through cpu). */
static int
ctrl_name (const struct rt_cgroup *cg, int i, const char **name)
{
  if (cg->v1_known)
    {
      *name = cg->v1_names[i];
      return *name != NULL;
    }
  char p[PATH_MAX];
  struct stat st;
  const char *cands[2] = { ctrls[i].name, ctrls[i].alt };
  for (int k = 0; k < 2 && cands[k]; k++)
    {
      snprintf (p, sizeof p, "%s/%s", cg->root, cands[k]);
      if (stat (p, &st) < 0 || !S_ISDIR (st.st_mode))
        continue;
      if (i == C_CPUACCT)
        {
          const char *cpu;
          struct stat cst;
          if (ctrl_name (cg, C_CPU, &cpu))
            {
              snprintf (p, sizeof p, "%s/%s", cg->root, cpu);
              if (stat (p, &cst) == 0 && cst.st_dev == st.st_dev && cst.st_ino == st.st_ino)
                return 0;
            }
        }
      *name = cands[k];
      return 1;
    }
  return 0;
}

/* The sandbox directory of controller i: 1 and out, 0 if that controller is absent. */
static int
ctrl_dir (const struct rt_cgroup *cg, int i, char out[PATH_MAX])
{
  const char *name;
  if (!ctrl_name (cg, i, &name))
    return 0;
  return rt_cg_path (out, cg->root, name, cg->id) == 0;
}

static int
v1_remove (struct rt_cgroup *cg)
{
  int busy = 0;
  for (int i = 0; i < C_N; i++)
    {
      char dir[PATH_MAX];
      if (!ctrl_dir (cg, i, dir))
        continue;
      if (rmdir (dir) < 0 && errno != ENOENT && !busy)
        busy = errno;
    }
  if (busy)
    {
      errno = busy;
      return -1;
    }
  return 0;
}

static int
write_limits (const char *const dirs[C_N], const struct rt_limits *l, struct sbx_err *err)
{
  char v[32];

  if (rt_cg_write (dirs[C_CPU], "cpu.cfs_period_us", "100000", err) < 0)
    return -1;
  if (l->cpu_millis)
    snprintf (v, sizeof v, "%" PRIu64, (uint64_t) l->cpu_millis * 100);
  else
    strcpy (v, "-1");
  if (rt_cg_write (dirs[C_CPU], "cpu.cfs_quota_us", v, err) < 0)
    return -1;

  /* memsw (memory + swap) equal to the memory limit means no swap. The kernel keeps
   * memsw >= memory at every step, so lower memory first when setting a limit and raise
   * memsw first when lifting it (matters only for a reused directory). memsw is absent
   * when the kernel runs without swap accounting; then there is nothing to cap. */
  const char *mem = dirs[C_MEMORY];
  char memsw[PATH_MAX];
  snprintf (memsw, sizeof memsw, "%s/memory.memsw.limit_in_bytes", mem);
  int has_memsw = access (memsw, F_OK) == 0;
  if (l->memory_bytes)
    {
      snprintf (v, sizeof v, "%" PRIu64, l->memory_bytes);
      if (rt_cg_write (mem, "memory.limit_in_bytes", v, err) < 0
          || (has_memsw && rt_cg_write (mem, "memory.memsw.limit_in_bytes", v, err) < 0))
        return -1;
    }
  else if ((has_memsw && rt_cg_write (mem, "memory.memsw.limit_in_bytes", "-1", err) < 0)
           || rt_cg_write (mem, "memory.limit_in_bytes", "-1", err) < 0)
    return -1;
  /* Socket buffers (TCP, UDP) are charged to a v1 memory cgroup only once its
   * kmem.tcp limit has been written, and then to that counter, not to memory.usage: left
   * alone, a sandbox of 128 MiB held 167 MiB in 16 loopback connections outside every
   * bound of its own, all of it from the host-wide net.ipv4.tcp_mem budget (about 9% of
   * RAM), past which every socket on the host is squeezed. The same bound as memory (on
   * v2 both share one counter). Absent on a kernel without it: nothing to write then. */
  char tcp[PATH_MAX];
  snprintf (tcp, sizeof tcp, "%s/memory.kmem.tcp.limit_in_bytes", mem);
  if (access (tcp, F_OK) == 0
      && rt_cg_write (mem, "memory.kmem.tcp.limit_in_bytes", l->memory_bytes ? v : "-1", err)
             < 0)
    return -1;
  /* Optional: keeps the sandbox's anonymous memory out of swap even without memsw. */
  struct sbx_err ignored;
  if (rt_cg_write (mem, "memory.swappiness", "0", &ignored) < 0)
    LOG_DEBUG ("%s", ignored.msg);

  if (l->pids)
    snprintf (v, sizeof v, "%" PRIu64, l->pids);
  else
    strcpy (v, "max");
  return rt_cg_write (dirs[C_PIDS], "pids.max", v, err);
}

static int
v1_create (struct rt_cgroup *cg, const struct rt_limits *l, struct sbx_err *err)
{
  char paths[C_N][PATH_MAX];
  const char *dirs[C_N] = { 0 };
  const char *names[C_N] = { 0 };
  for (int i = 0; i < C_N; i++)
    {
      const char *name;
      if (!ctrl_name (cg, i, &name))
        {
          if (!ctrls[i].required)
            continue;
          sbx_err_set (err, SBX_E_INTERNAL, ENOENT, "cgroup v1: controller '%s' not mounted at %s",
                       ctrls[i].name, cg->root);
          goto fail;
        }
      char parent[PATH_MAX];
      if (rt_cg_path (parent, cg->root, name, NULL) < 0
          || rt_cg_path (paths[i], cg->root, name, cg->id) < 0)
        {
          sbx_err_sys (err, "cgroup v1: path under %s", cg->root);
          goto fail;
        }
      /* EEXIST is fine: ids are random, so an existing sandbox directory is one this
       * sandbox made (a retried create). The shared parent "sbx" is made only when
       * missing (once per boot): one mkdir per controller less on every create. */
      int r = mkdir (paths[i], 0755);
      if (r < 0 && errno == ENOENT && (mkdir (parent, 0755) == 0 || errno == EEXIST))
        r = mkdir (paths[i], 0755);
      if (r < 0 && errno != EEXIST)
        {
          sbx_err_sys (err, "cgroup v1: mkdir %s", paths[i]);
          goto fail;
        }
      dirs[i] = paths[i];
      names[i] = name;
    }
  for (int i = 0; i < C_N; i++)
    cg->v1_names[i] = names[i];
  cg->v1_known = 1;
  if (write_limits (dirs, l, err) < 0)
    goto fail;
  return 0;

fail:
  v1_remove (cg); /* best effort; keeps err and errno */
  return -1;
}

static int
v1_clone_fd (struct rt_cgroup *cg)
{
  return -1; /* CLONE_INTO_CGROUP is a v2 feature */
}

static int
v1_attach (struct rt_cgroup *cg, pid_t pid, struct sbx_err *err)
{
  char v[24];
  if (pid <= 0)
    return sbx_err_set (err, SBX_E_INTERNAL, EINVAL, "cgroup v1: attach: bad pid %d", (int) pid);
  snprintf (v, sizeof v, "%d", (int) pid);
  /* Freezer first: from then on kill_all covers the task. */
  for (int i = 0; i < C_N; i++)
    {
      char dir[PATH_MAX];
      if (ctrl_dir (cg, i, dir) && rt_cg_write (dir, "cgroup.procs", v, err) < 0)
        return -1;
    }
  return 0;
}

/* Freeze and wait (bounded) until the kernel reports FROZEN. 0 frozen, -1 not (yet). */
static int
freeze (const char *dir)
{
  struct sbx_err err;
  if (rt_cg_write (dir, "freezer.state", "FROZEN", &err) < 0)
    {
      LOG_WARN ("%s", err.msg);
      return -1;
    }
  /* Reading freezer.state is what advances FREEZING to FROZEN once every task stopped.
   * ~0.5 s at most: a task stuck in an uninterruptible sleep cannot freeze, and then we
   * kill what is there anyway. */
  for (unsigned round = 0; round < 54; round++)
    {
      char st[32];
      char p[PATH_MAX];
      snprintf (p, sizeof p, "%s/freezer.state", dir);
      if (sbx_read_file (p, st, sizeof st) < 0)
        return -1;
      if (!strncmp (st, "FROZEN", 6))
        return 0;
      /* The tasks need CPU time to reach the refrigerator: yield before sleeping. */
      if (round < 4)
        sched_yield ();
      else
        rt_cg_backoff (round - 4);
    }
  return -1;
}

static void
v1_kill_all (struct rt_cgroup *cg)
{
  char fz[PATH_MAX];
  if (ctrl_dir (cg, C_FREEZER, fz))
    for (unsigned round = 0; round < 8; round++)
      {
        if (rt_cg_count_procs (fz) == 0)
          break;
        /* Tasks killed in the last round are still listed while they exit: give them
         * a moment before freezing again. */
        if (round)
          {
            rt_cg_backoff (round - 1);
            if (rt_cg_count_procs (fz) == 0)
              break;
          }
        /* Frozen tasks cannot fork, so one pass over cgroup.procs gets every task,
         * including double-forked, setsid'ed ones and fork bombs; the pending SIGKILLs
         * take effect at the thaw. */
        if (freeze (fz) < 0)
          LOG_WARN ("cgroup v1 %s: not frozen; killing anyway", cg->id);
        rt_cg_kill_procs (fz);
        struct sbx_err err;
        if (rt_cg_write (fz, "freezer.state", "THAWED", &err) < 0)
          LOG_WARN ("%s", err.msg);
      }
  /* A task whose attach stopped half-way may be in other controllers only. */
  for (int i = 0; i < C_N; i++)
    {
      char dir[PATH_MAX];
      if (i != C_FREEZER && ctrl_dir (cg, i, dir))
        rt_cg_kill_procs (dir);
    }
}

static int
v1_is_empty (struct rt_cgroup *cg)
{
  for (int i = 0; i < C_N; i++)
    {
      char dir[PATH_MAX];
      if (ctrl_dir (cg, i, dir) && rt_cg_count_procs (dir) != 0)
        return 0;
    }
  return 1;
}

static uint64_t
v1_oom_kills (struct rt_cgroup *cg)
{
  char dir[PATH_MAX];
  uint64_t n = 0;
  if (ctrl_dir (cg, C_MEMORY, dir))
    rt_cg_read_key (dir, "memory.oom_control", "oom_kill", &n);
  return n;
}

static int
v1_stats (struct rt_cgroup *cg, struct rt_cgroup_stats *st)
{
  char dir[PATH_MAX];
  int got = 0;
  memset (st, 0, sizeof *st);
  if (ctrl_dir (cg, C_MEMORY, dir) && rt_cg_read_u64 (dir, "memory.max_usage_in_bytes", &st->mem_peak_bytes) == 0)
    got++;
  /* cpuacct.usage lives in the cpuacct hierarchy, which may be the cpu one. */
  if ((ctrl_dir (cg, C_CPUACCT, dir) || ctrl_dir (cg, C_CPU, dir))
      && rt_cg_read_u64 (dir, "cpuacct.usage", &st->cpu_usage_ns) == 0)
    got++;
  if (!got)
    {
      errno = ENOENT;
      return -1;
    }
  return 0;
}

const struct rt_cgroup_ops rt_cgroup_v1_ops = {
  .name = "v1",
  .clone_into = 0,
  .create = v1_create,
  .clone_fd = v1_clone_fd,
  .attach = v1_attach,
  .kill_all = v1_kill_all,
  .is_empty = v1_is_empty,
  .oom_kills = v1_oom_kills,
  .remove = v1_remove,
  .stats = v1_stats,
};
