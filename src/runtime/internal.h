/* Private to src/runtime: the spawn stages, the parent/child sync records, the data the
 * parent prepares for the pre-exec child, uid range slots and the seccomp program. */
#pragma once

#include "runtime.h"
#include "cgroup.h"

#include <linux/filter.h>
#include <stdint.h>

/* The setup sequence, in order. docs/runtime.md lists the same names with the same
 * numbers (a unit test compares them). Parent stages run in sbxd, child stages in the
 * cloned child between clone3 and execveat. */
enum rt_stage {
  RT_STAGE_NONE = 0,
  /* parent */
  RT_STAGE_SPEC,          /* validate the spec */
  RT_STAGE_SECCOMP_PREP,  /* compile the policy once per process */
  RT_STAGE_UID_RANGE,     /* claim a uid slot */
  RT_STAGE_RUN_DIR,       /* <state_dir>/run/<id>/ and root/ */
  RT_STAGE_AGENT_SOCKET,  /* bind + listen <run_dir>/agent.sock */
  RT_STAGE_INIT_FD,       /* open sbx-init */
  RT_STAGE_CGROUP,        /* mkdir + limits */
  RT_STAGE_CLONE,         /* clone3 into the new namespaces */
  RT_STAGE_CGROUP_ATTACH, /* v1: move the child into its cgroups */
  RT_STAGE_OOM_ADJ,       /* oom_score_adj -999 */
  RT_STAGE_ID_MAPS,       /* uid_map / gid_map */
  RT_STAGE_IDMAP_MOUNT,   /* idmapped read-only clone of the image */
  RT_STAGE_RELEASE,       /* send the go record + mount fd */
  /* child */
  RT_STAGE_WAIT_PARENT,   /* signals reset, pdeathsig, wait for go */
  RT_STAGE_RLIMITS,       /* NOFILE; CORE, RTPRIO, NICE 0 */
  RT_STAGE_MOUNT_PRIVATE, /* / recursively private */
  RT_STAGE_SCRATCH,       /* size-bounded tmpfs on <run_dir>/root */
  RT_STAGE_SET_IDS,       /* setresgid/setresuid 0, setgroups(0) */
  RT_STAGE_LAYERS,        /* lower (idmapped image), upper, work, tmp, shm */
  RT_STAGE_OVERLAY,       /* overlay on scratch/new */
  RT_STAGE_PROC,          /* /proc */
  RT_STAGE_DEV,           /* /dev: tmpfs, host nodes, devpts, shm, symlinks */
  RT_STAGE_TMP,           /* /tmp from scratch/tmp */
  RT_STAGE_SYS,           /* read-only /sys */
  RT_STAGE_MASK,          /* masked and read-only /proc and /sys paths */
  RT_STAGE_PIVOT_ROOT,    /* pivot_root + detach the host tree */
  RT_STAGE_HOSTNAME,
  RT_STAGE_LOOPBACK,      /* lo up in the new netns */
  RT_STAGE_STDIO,         /* fds 0-2 from the sandbox's /dev/null */
  RT_STAGE_CGROUP_NS,     /* v1: wait until attached; unshare(CLONE_NEWCGROUP) */
  RT_STAGE_CAPS,          /* bounding set, ambient, capset all zero */
  RT_STAGE_NO_NEW_PRIVS,
  RT_STAGE_DUMPABLE,
  RT_STAGE_FDS,           /* fd 3 socket, fd 4 uid lock, the rest CLOEXEC */
  RT_STAGE_SECCOMP,       /* load the precompiled filter */
  RT_STAGE_EXEC,          /* execveat sbx-init */
  RT_STAGE__COUNT
};

/* Short name of a stage ("pivot_root"), "?" if out of range. */
const char *rt_stage_name (int stage);
/* First child stage: records from the child carry stages >= this. */
#define RT_STAGE_FIRST_CHILD RT_STAGE_WAIT_PARENT

/* One fixed-size record on the SOCK_SEQPACKET sync pair, each way. */
enum rt_sync_kind { RT_SYNC_GO = 1, RT_SYNC_PROGRESS, RT_SYNC_FAIL };
struct rt_sync_msg {
  int32_t kind;
  int32_t stage;
  int32_t sys_errno;
  char msg[52];
};

/* Everything the pre-exec child needs, built by the parent before clone3. The child only
 * reads it (its own copy-on-write copy) and makes raw syscalls. */
struct rt_child {
  int sync_fd;        /* the child's end of the sync pair */
  int parent_sync_fd; /* the parent's end: the child closes it first */
  int listen_fd;      /* becomes fd 3 */
  int lock_fd;        /* becomes fd 4 */
  int init_fd;        /* sbx-init, O_RDONLY|O_CLOEXEC */
  int die_with_parent;
  int inherit_stderr;
  const char *run_dir;   /* absolute; the child chdirs here while still host root */
  int wait_cgroup;       /* v1: the parent attaches us late and then sends a record */
  uint64_t nofile;       /* RLIMIT_NOFILE (0: keep sbxd's) */
  char scratch_opts[160]; /* tmpfs options for the scratch space */
  char hostname[65];
  char overlay_opts[512]; /* "lowerdir=lower/0:lower/1...,upperdir=upper,..." */
  int n_lowers;           /* mount fds with the go record: lowers, then volumes */
  int n_volumes;
  uint64_t keep_caps;     /* capabilities not dropped (spec.keep_caps) */
  char vol_targets[RT_VOLUMES_MAX][RT_VOLUME_TARGET_MAX + 1]; /* relative to new/ */
  const struct sock_fprog *bpf; /* nbpf programs, loaded in order */
  int nbpf;
  char *const *argv;
  char *const *envp;
};

/* Never returns: execveat sbx-init, or report the failed stage and _exit(127). */
_Noreturn void rt_child_main (const struct rt_child *c);
/* Child helpers shared by child.c and mount.c. */
_Noreturn void rt_child_fail (const struct rt_child *c, int stage, int sys_errno, const char *msg);
void rt_child_progress (const struct rt_child *c, int stage);
/* mount.c (child side, cwd = the scratch tmpfs): each returns 0 or fails the child. */
void rt_mount_layers (const struct rt_child *c, const int *lower_fds);
void rt_mount_overlay (const struct rt_child *c);
void rt_mount_proc (const struct rt_child *c);
void rt_mount_dev (const struct rt_child *c);
void rt_mount_tmp (const struct rt_child *c);
void rt_mount_sys (const struct rt_child *c);
void rt_mount_masks (const struct rt_child *c);
void rt_mount_pivot (const struct rt_child *c);

/* ---- layers and volumes (layers.c) ---------------------------------------------------- */
#define RT_MOUNT_FDS_MAX (RT_LOWERS_MAX + RT_VOLUMES_MAX)
struct rt_mounts {
  int fds[RT_MOUNT_FDS_MAX]; /* idmapped clones: lowers (top first), then volumes */
  int n;
};
int rt_layers_check_spec (const struct rt_spec *spec, struct sbx_err *err);
int rt_layers_prepare_child (const struct rt_spec *spec, struct rt_child *c, struct sbx_err *err);
/* Parent: idmapped clones of every layer and volume for the child pid's user namespace. */
int rt_layers_open (pid_t pid, const struct rt_spec *spec, struct rt_mounts *m,
                    struct sbx_err *err);
void rt_mounts_close (struct rt_mounts *m);
/* Send the go record with the mount fds; 0 or -1 with errno. */
int rt_layers_send_go (int sync_fd, const struct rt_sync_msg *go, const struct rt_mounts *m);
/* recvmsg one sync record; *fd gets an fd that came with it, else -1. */
ssize_t rt_sync_recv (int sync_fd, struct rt_sync_msg *m, int *fd);
/* Child: receive the go record and its fds (1), or 0 if the parent is gone. */
int rt_child_recv_go (const struct rt_child *c, int *fds);
void rt_child_attach_lowers (const struct rt_child *c, const int *fds);
void rt_child_mount_volumes (const struct rt_child *c, const int *fds);
void rt_child_send_scratch (const struct rt_child *c);

/* ---- uid ranges (uidrange.c) ---------------------------------------------------------
 * 65536 ids per sandbox at RT_UID_BASE + slot * RT_UID_SPAN. A slot is held by an flock
 * on RT_UID_DIR/<slot>.lock (host-wide, whatever the state dir), which names the sandbox
 * that claimed it; sbx-init
 * inherits the lock fd (the spawner closes its own copy once the spawn succeeded), and a
 * slot is free again once the lock is released AND that sandbox's cgroup has no task
 * left, so the range stays reserved exactly as long as any process of the sandbox runs. */
#ifndef RT_UID_DIR
#define RT_UID_DIR "/run/sbx/uids"
#endif
#define RT_UID_BASE 0x10000000u
#define RT_UID_SPAN 65536u
#define RT_UID_SLOTS 16384u
static inline uint32_t
rt_uid_slot_base (uint32_t slot)
{
  return RT_UID_BASE + slot * RT_UID_SPAN;
}
/* Claim a free slot of the slot directory dir (RT_UID_DIR but in tests) for sandbox id
 * (cgroups under cg_root, RT_CGROUP_ROOT but in tests): *lock_fd (O_CLOEXEC, flocked) and
 * *slot. SBX_E_CAPACITY if all busy. */
int rt_uid_slot_claim (const char *dir, const char *cg_root, const char *id, int *lock_fd,
                       uint32_t *slot, struct sbx_err *err);
/* One slot of the uids directory dir_fd: 1 claimed (*lock_fd), 0 busy, -1 error. */
int rt_uid_slot_try (int dir_fd, uint32_t slot, const char *cg_root, const char *id,
                     int *lock_fd, struct sbx_err *err);

/* ---- seccomp (seccomp.c) -------------------------------------------------------------- */
/* The compiled programs, in load order (an ioctl guard, then the allow-list), after
 * rt_seccomp_prepare succeeded; returns their number (0 if not prepared). Read-only. */
int rt_seccomp_programs (const struct sock_fprog **out);

/* ---- the handle ------------------------------------------------------------------------ */
struct rt_sandbox {
  char id[SBX_ID_MAX];
  char run_dir[PATH_MAX];
  char sock_path[108];
  pid_t pid;
  int pidfd;
  int is_child;     /* our child (reap with waitid) or adopted (poll the pidfd) */
  int reaped;
  int lock_fd;      /* uid slot lock while spawning; -1 after (sbx-init holds it) */
  uint32_t uid_base;
  int have_cgroup;
  struct rt_cgroup cg;
  int have_run_dir;
  int scratch_fd;   /* detached clone of the scratch tmpfs, or -1 (layers.c) */
  int frozen;       /* rt_sandbox_freeze left it frozen (teardown thaws first) */
};

/* Where the cgroup filesystem is mounted (a compile-time override exists for trying the
 * v2 backend on a hybrid host's /sys/fs/cgroup/unified). */
#ifndef RT_CGROUP_ROOT
#define RT_CGROUP_ROOT "/sys/fs/cgroup"
#endif

/* rt_sandbox_spawn in this process (spawn.c), and through a spawner process
 * (spawner.c): 1 when no spawner is running (then spawn locally), else 0 or -1. */
int rt_sandbox_spawn_local (const struct rt_spec *spec, struct rt_sandbox **out,
                            struct sbx_err *err);
int rt_spawner_spawn (const struct rt_spec *spec, struct rt_sandbox **out, struct sbx_err *err);
/* A spec in a spawner request and back (spawner.c; exposed for its unit test). pack needs
 * cap >= RT_SPAWN_REQ_MAX and returns the length or -1 (too large); unpack validates every
 * length and count and points out's strings into buf. */
#define RT_SPAWN_REQ_MAX (160 * 1024)
struct rt_spawn_unpacked {
  struct rt_spec spec;
  const char *lowers[RT_LOWERS_MAX];
  struct rt_volume volumes[RT_VOLUMES_MAX];
};
ssize_t rt_spawn_spec_pack (const struct rt_spec *spec, char *buf, size_t cap);
int rt_spawn_spec_unpack (const char *buf, size_t len, struct rt_spawn_unpacked *out);

/* Tear down whatever sb holds (kill, reap, cgroup, run dir, slot); does not free. */
void rt_sandbox_teardown (struct rt_sandbox *sb);
/* "<state_dir>/run/<id>" into out. */
int rt_run_dir_path (char out[PATH_MAX], const char *state_dir, const char *id);

/* ---- seccomp program cache (seccomp.c, seccomp_cache.c) --------------------------------
 * rt_seccomp_prepare with a state dir: load the programs from
 * <state_dir>/cache/seccomp-<key>.bpf when a valid file is there, else compile and store
 * them there (best effort). */
int rt_seccomp_prepare_in (const char *state_dir, struct sbx_err *err);
/* The cache key: a hash of every rule as handed to libseccomp, the default actions and
 * attributes, the libseccomp version and the native arch. */
int rt_seccomp_policy_key (uint64_t *key);
/* Load the two programs (malloc'ed) for key; 0, or -1 on any problem (missing file, wrong
 * owner or mode, bad size, header or checksum): then the caller compiles. */
int rt_seccomp_cache_load (const char *state_dir, uint64_t key, struct sock_fprog out[2]);
/* Write them atomically (temp file + rename, 0600, in a 0700 directory owned by us);
 * 0 or -1 with errno. */
int rt_seccomp_cache_store (const char *state_dir, uint64_t key, const struct sock_fprog p[2]);
