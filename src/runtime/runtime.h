/* src/runtime: isolating one sandbox on the host kernel (container tier).
 *
 * rt_sandbox_spawn() runs the setup sequence of docs/runtime.md: a private uid range, a
 * cgroup with the limits, clone3 into new user/mount/pid/net/ipc/uts/cgroup namespaces,
 * an overlay root (idmapped read-only image + a size-bounded tmpfs upper), /proc, a
 * minimal /dev, read-only /sys, masked /proc entries, tmpfs /tmp, pivot_root, no
 * capabilities, no_new_privs, seccomp, and finally exec of sbx-init as PID 1 with its
 * listening socket already bound at <run_dir>/agent.sock (so it is ready the moment the
 * exec succeeds). Every host resource is released by rt_sandbox_destroy(). */
#pragma once

#include "../common/common.h"

#include <stdint.h>
#include <sys/types.h>

struct rt_limits {
  uint32_t cpu_millis;   /* 1000 = one vCPU; 0 = unlimited */
  uint64_t memory_bytes; /* 0 = unlimited; swap is always off */
  uint64_t pids;         /* max tasks; 0 = unlimited */
  uint64_t disk_bytes;   /* writable space: upper layer + /tmp + /dev/shm together */
  uint64_t disk_inodes;  /* inodes in that writable space */
  uint64_t nofile;       /* RLIMIT_NOFILE */
};

/* Defaults of the reference services: 1 vCPU, 1 GiB, 512 pids, 1 GiB disk, 65536 inodes,
 * 4096 open files. */
void rt_limits_default (struct rt_limits *l);

#define RT_LOWERS_MAX 16          /* image layers one sandbox stacks (callers flatten above) */
#define RT_VOLUMES_MAX 8
#define RT_VOLUME_TARGET_MAX 200

/* A host directory mounted into the sandbox (idmapped, nosuid, nodev). */
struct rt_volume {
  const char *source; /* absolute host path (the volume's mounted filesystem) */
  const char *target; /* absolute path inside, see rt_volume_target_ok */
  int readonly;
};

/* 1 if t can be a volume mount point: absolute, normalized (no "." or ".." or empty
 * component, no trailing '/'), at most RT_VOLUME_TARGET_MAX bytes, not "/" and not in
 * /proc, /sys, /dev or /tmp. */
int rt_volume_target_ok (const char *t);

struct rt_spec {
  const char *id;        /* sandbox id (sbx_id_valid(id, "sb")) */
  const char *rootfs;    /* absolute path of the image rootfs (lower layer, never written);
                          * ignored when lowers is set */
  const char *const *lowers; /* or: n_lowers absolute layer directories, top first (the
                          * overlay lowerdir order); each is idmapped read-only */
  size_t n_lowers;
  const struct rt_volume *volumes; /* n_volumes mounts, made after the overlay */
  size_t n_volumes;
  uint64_t keep_caps;    /* capabilities (1 << CAP_x) kept in the sandbox's user namespace,
                          * over its own files only: image builds need CAP_CHOWN, CAP_FOWNER,
                          * CAP_DAC_OVERRIDE, CAP_SETUID/GID for dpkg. 0 (all dropped) for
                          * every user sandbox. seccomp applies either way. */
  const char *state_dir; /* holds run/<id>/ (agent.sock) and uid range slots */
  const char *init_path; /* host path of the static sbx-init binary */
  const char *hostname;  /* NULL: "sandbox" */
  struct rt_limits limits;
  int die_with_parent;   /* one-shot mode: PR_SET_PDEATHSIG so nothing outlives `sbx run`.
                          * The kernel fires it when the *thread* that spawned exits. */
  int inherit_stderr;    /* nonzero: sbx-init's fd 2 is the caller's fd 2 (debugging);
                          * otherwise fds 0-2 are the sandbox's /dev/null */
};

struct rt_sandbox; /* opaque */

/* Create and start a sandbox. On failure nothing is left behind and err says which
 * stage failed and why. */
int rt_sandbox_spawn (const struct rt_spec *spec, struct rt_sandbox **out, struct sbx_err *err);

/* Start n (at most RT_SPAWNERS_MAX) spawner processes, the sbx-spawner program at path,
 * that rt_sandbox_spawn uses from then on, except for die_with_parent sandboxes: cloning
 * a sandbox from a big multi-threaded process costs twice as much (spawner.c). Call it
 * early, before any thread exists. A process that never calls it spawns in itself. */
#define RT_SPAWNERS_MAX 8
int rt_spawner_start (const char *path, int n, struct sbx_err *err);
/* sbx-spawner's main loop: serve spawn requests on fd until its peer closes it. */
int rt_spawner_serve (int fd);

/* Re-adopt a sandbox started by an earlier sbxd (found via its run dir). Fails with
 * SBX_E_NOT_FOUND if its PID 1 is gone; the caller then calls rt_cleanup_stale. */
int rt_sandbox_adopt (const struct rt_spec *spec, struct rt_sandbox **out, struct sbx_err *err);

const char *rt_sandbox_id (const struct rt_sandbox *sb);
pid_t rt_sandbox_pid (const struct rt_sandbox *sb);      /* host pid of sbx-init */
int rt_sandbox_pidfd (const struct rt_sandbox *sb);      /* for epoll: readable when PID 1 exits */
uint32_t rt_sandbox_uid_base (const struct rt_sandbox *sb);
const char *rt_sandbox_socket (const struct rt_sandbox *sb); /* <run_dir>/agent.sock */
/* An fd of a detached clone of the sandbox's scratch tmpfs: "upper/" in it is the
 * overlay's writable layer (read it with *at() calls and O_NOFOLLOW). -1 for an adopted
 * sandbox (the clone lives only as long as the sbxd that spawned it). Owned by sb. */
int rt_sandbox_scratch_fd (const struct rt_sandbox *sb);
/* Freeze (frozen=1) or thaw (0) every task of the sandbox through its cgroup (v1 freezer,
 * v2 cgroup.freeze); freezing waits (bounded, ~2 s) until the kernel reports frozen, so a
 * write(2) in progress is either complete or not begun. */
int rt_sandbox_freeze (struct rt_sandbox *sb, int frozen, struct sbx_err *err);
/* Did the memory cgroup OOM-kill something in this sandbox? 1 yes, 0 no. */
int rt_sandbox_oom_killed (struct rt_sandbox *sb);

/* SIGKILL every process of the sandbox; returns at once. */
void rt_sandbox_kill (struct rt_sandbox *sb);
/* Kill, wait until every process is gone, remove cgroups and run dir, release the uid
 * range, free. NULL-safe; safe to call after rt_sandbox_kill or after PID 1 died. */
void rt_sandbox_destroy (struct rt_sandbox *sb);

/* Forget the handle without touching the sandbox: it keeps running (and keeps its uid
 * range, cgroup and run dir) so that a later rt_sandbox_adopt finds it. For sbxd's
 * shutdown and for sandboxes it found but does not own. NULL-safe. */
void rt_sandbox_release (struct rt_sandbox *sb);

/* Remove what a sandbox that no longer runs may have left (cgroups, run dir). For sbxd's
 * restart path and tests. Idempotent. */
int rt_cleanup_stale (const char *state_dir, const char *id, struct sbx_err *err);

/* rt_cleanup_stale for every run dir of state_dir older than min_age_s whose PID 1 is gone
 * (a `sbx run` killed with SIGKILL cannot clean up; the next one does). Sandboxes that
 * still run, and run dirs young enough to belong to a spawn in progress, are left alone.
 * Returns how many were removed. */
int rt_gc_stale (const char *state_dir, int min_age_s);

/* Compile the seccomp policy once per process (done lazily by spawn if not called). */
int rt_seccomp_prepare (struct sbx_err *err);
