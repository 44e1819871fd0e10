/* Private to src/runtime: cgroup backends behind one small vtable (v1 and v2, chosen at
 * run time by what is really mounted). A sandbox's cgroup is "sbx/<id>" under each
 * controller (v1: cpu, memory, pids; v2: the unified tree with those controllers). */
#pragma once

#include "runtime.h"

#include <limits.h>

struct rt_cgroup;

/* Usage counters; a counter the host does not provide reads 0. */
struct rt_cgroup_stats {
  uint64_t mem_peak_bytes; /* v1 memory.max_usage_in_bytes; v2 memory.peak */
  uint64_t cpu_usage_ns;   /* v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000 */
};

struct rt_cgroup_ops {
  const char *name; /* "v1" or "v2" */
  /* 1 (v2): a sandbox is cloned straight into its cgroup, so the cgroup is made before
   * clone3. 0 (v1): made and attached after clone3, while the child sets up its mounts
   * (spawn.c). */
  int clone_into;
  /* mkdir the sandbox's cgroup(s) and write the limits. */
  int (*create) (struct rt_cgroup *cg, const struct rt_limits *l, struct sbx_err *err);
  /* v2: an O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP), owned by cg (do not close; it
   * stays valid until remove); v1: -1 (use attach). */
  int (*clone_fd) (struct rt_cgroup *cg);
  /* Move pid into the cgroup(s). v2 after CLONE_INTO_CGROUP: no-op. */
  int (*attach) (struct rt_cgroup *cg, pid_t pid, struct sbx_err *err);
  /* SIGKILL every task (v2: cgroup.kill; v1: freeze, kill, thaw, repeat). */
  void (*kill_all) (struct rt_cgroup *cg);
  /* 1 if no task is left, 0 otherwise. */
  int (*is_empty) (struct rt_cgroup *cg);
  /* Number of OOM kills recorded so far. */
  uint64_t (*oom_kills) (struct rt_cgroup *cg);
  /* rmdir the cgroup(s); -1 with errno EBUSY while tasks remain. Idempotent. */
  int (*remove) (struct rt_cgroup *cg);
  /* Fill st; 0, or -1 with errno if no counter could be read. */
  int (*stats) (struct rt_cgroup *cg, struct rt_cgroup_stats *st);
};

struct rt_cgroup {
  const struct rt_cgroup_ops *ops;
  char root[PATH_MAX]; /* "/sys/fs/cgroup" normally; a temp dir in unit tests */
  char id[SBX_ID_MAX];
  int dirfd;           /* v2: the sandbox cgroup dir (O_DIRECTORY, from create); -1 otherwise */
  /* v1: the controller mount names create found (NULL: absent), so later calls need no
   * stat of the hierarchy; v1_known is 0 until then (e.g. after adopt). */
  int v1_known;
  const char *v1_names[8];
};

extern const struct rt_cgroup_ops rt_cgroup_v1_ops;
extern const struct rt_cgroup_ops rt_cgroup_v2_ops;

/* Pick the backend for the cgroup filesystem at root: v2 if root itself is cgroup2 (statfs
 * magic), otherwise v1 with controllers under root/<controller> (a hybrid host, whose
 * root is a tmpfs, gets v1). Refuses ids that fail sbx_id_valid(id, "sb"). Fills cg (ops,
 * root, id, dirfd -1); nothing is created before ops->create. */
int rt_cgroup_init (struct rt_cgroup *cg, const char *root, const char *id, struct sbx_err *err);
/* Same with a forced backend (unit tests point root at a fake tree in a temp dir). */
int rt_cgroup_init_with (struct rt_cgroup *cg, const char *root, const char *id,
                         const struct rt_cgroup_ops *ops, struct sbx_err *err);
/* Destroy helper shared by both: kill_all, wait (bounded, ~5 s) until empty, remove. */
int rt_cgroup_destroy (struct rt_cgroup *cg);

/* ---- helpers shared by cgroup_v1.c and cgroup_v2.c (cgroup.c) ---------------------- */
/* "<root>[/<ctrl>]/sbx[/<id>]" into out; ctrl NULL for v2, id NULL for the parent.
 * -1 with ENAMETOOLONG if it does not fit. */
int rt_cg_path (char out[PATH_MAX], const char *root, const char *ctrl, const char *id);
/* Write val to dir/file; on failure fill err naming the file and value. */
int rt_cg_write (const char *dir, const char *file, const char *val, struct sbx_err *err);
/* Find the line "<key> <n>" in dir/file; 0 and *out, or -1 (errno ENOENT if no such line). */
int rt_cg_read_key (const char *dir, const char *file, const char *key, uint64_t *out);
/* Read dir/file as one unsigned number ("max" and "-1" read as UINT64_MAX). */
int rt_cg_read_u64 (const char *dir, const char *file, uint64_t *out);
/* SIGKILL every pid listed in dir/cgroup.procs. Returns how many were listed (0: empty or
 * the directory is gone), or -1 with errno. */
int rt_cg_kill_procs (const char *dir);
/* Number of pids in dir/cgroup.procs: 0 when empty or gone, -1 on another error. */
int rt_cg_count_procs (const char *dir);
/* Short sleep for polling loops: grows with round from 50 us to 10 ms. */
void rt_cg_backoff (unsigned round);
