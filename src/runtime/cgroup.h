/* Private to src/runtime: cgroup backends behind one small vtable (v1 and v2, chosen at
 * run time by what is really mounted). A sandbox's cgroup is "sbx/<id>" under each
 * controller (v1: cpu, memory, pids; v2: the unified tree with those controllers). */
#pragma once

#include "runtime.h"

#include <limits.h>

struct rt_cgroup;

struct rt_cgroup_ops {
  const char *name; /* "v1" or "v2" */
  /* mkdir the sandbox's cgroup(s) and write the limits. */
  int (*create) (struct rt_cgroup *cg, const struct rt_limits *l, struct sbx_err *err);
  /* v2: an O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP); v1: -1 (use attach). */
  int (*clone_fd) (struct rt_cgroup *cg);
  /* Move pid into the cgroup(s). v2 after CLONE_INTO_CGROUP: no-op. */
  int (*attach) (struct rt_cgroup *cg, pid_t pid, struct sbx_err *err);
  /* SIGKILL every task (v2: cgroup.kill; v1: freeze, kill, thaw, repeat). */
  void (*kill_all) (struct rt_cgroup *cg);
  /* 1 if no task is left, 0 otherwise. */
  int (*is_empty) (struct rt_cgroup *cg);
  /* Number of OOM kills recorded so far. */
  uint64_t (*oom_kills) (struct rt_cgroup *cg);
  /* rmdir the cgroup(s); fails with EBUSY while tasks remain. Idempotent. */
  int (*remove) (struct rt_cgroup *cg);
};

struct rt_cgroup {
  const struct rt_cgroup_ops *ops;
  char root[PATH_MAX]; /* "/sys/fs/cgroup" normally; a temp dir in unit tests */
  char id[SBX_ID_MAX];
  int dirfd;           /* v2: the sandbox cgroup dir, O_PATH|O_DIRECTORY; -1 otherwise */
};

extern const struct rt_cgroup_ops rt_cgroup_v1_ops;
extern const struct rt_cgroup_ops rt_cgroup_v2_ops;

/* Pick the backend for the cgroup filesystem at root: v2 if root itself is cgroup2 (statfs
 * magic) or a "pure v2" layout, otherwise v1 with controllers under root/<controller>.
 * Fills cg (ops, root, id). */
int rt_cgroup_init (struct rt_cgroup *cg, const char *root, const char *id, struct sbx_err *err);
/* Destroy helper shared by both: kill_all, wait (bounded, ~5 s) until empty, remove. */
int rt_cgroup_destroy (struct rt_cgroup *cg);
