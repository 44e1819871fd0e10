/* rt_sandbox_spawn: the parent side of starting a sandbox.
 *
 * Theory of operation (docs/runtime.md numbers the same stages, enum rt_stage):
 *
 *   parent (sbxd, multi-threaded)              child (clone3, pre-exec, syscalls only)
 *   ------------------------------------------ ------------------------------------------
 *   spec, seccomp BPF (compiled once),
 *   uid slot (flock), run dir, agent socket
 *   (bound + listening), sbx-init fd,
 *   v2: cgroup, sync pair, every string and
 *   array the child needs
 *   clone3(PIDFD|NEWUSER|NEWNS|NEWPID|NEWNET|  ->  born in new namespaces (in its cgroup
 *          NEWIPC|NEWUTS[|INTO_CGROUP])             on v2), all signals blocked
 *   oom_score_adj -999, prlimit                     resets signals, PDEATHSIG, waits
 *   uid_map/gid_map "0 <base> 65536"
 *   idmapped read-only clone of the image
 *   GO record + image mount fd            ------>   (1) progress "wait_parent"
 *   v1: cgroups made, child attached,               private /, scratch tmpfs, ids,
 *       CGROUP record                     ------>   layers, overlay, /proc, /dev, /tmp,
 *                                                   /sys, masks, pivot_root, hostname,
 *                                                   lo, stdio, (v1: wait for CGROUP)
 *                                                   cgroupns, caps, nnp, dumpable,
 *                                                   fds 3/4, seccomp
 *                                       <------    (2) progress "exec", execveat sbx-init
 *   EOF (the CLOEXEC sync fd closed at exec)
 *   = sbx-init runs; already listening on fd 3
 *
 * The child reports a failure as one fixed-size record {stage, errno, message} and
 * _exit(127)s; the parent turns it into "create sandbox ID: <stage>: <msg>: <strerror>".
 * Records must arrive in stage order, else the parent fails the spawn. Any failure on
 * either side tears down everything acquired so far (kill + reap the child through its
 * pidfd, cgroup, run dir, uid slot): rt_sandbox_teardown is the guard.
 *
 * Why the parent does some things: writing id maps and creating an idmapped mount need
 * privileges in the initial user namespace, which the child never has; oom_score_adj
 * -999 and raising RLIMIT_NOFILE above sbxd's hard limit need CAP_SYS_RESOURCE there. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* How long the child may take from clone to exec before we give up (fail closed). */
#define CHILD_TIMEOUT_MS 10000

static const char *const stage_names[RT_STAGE__COUNT] = {
  [RT_STAGE_NONE] = "none",
  [RT_STAGE_SPEC] = "spec",
  [RT_STAGE_SECCOMP_PREP] = "seccomp_prepare",
  [RT_STAGE_UID_RANGE] = "uid_range",
  [RT_STAGE_RUN_DIR] = "run_dir",
  [RT_STAGE_AGENT_SOCKET] = "agent_socket",
  [RT_STAGE_INIT_FD] = "init_fd",
  [RT_STAGE_CGROUP] = "cgroup",
  [RT_STAGE_CLONE] = "clone",
  [RT_STAGE_CGROUP_ATTACH] = "cgroup_attach",
  [RT_STAGE_OOM_ADJ] = "oom_score_adj",
  [RT_STAGE_ID_MAPS] = "id_maps",
  [RT_STAGE_IDMAP_MOUNT] = "idmap_mount",
  [RT_STAGE_RELEASE] = "release",
  [RT_STAGE_WAIT_PARENT] = "wait_parent",
  [RT_STAGE_RLIMITS] = "rlimits",
  [RT_STAGE_MOUNT_PRIVATE] = "mount_private",
  [RT_STAGE_SCRATCH] = "scratch",
  [RT_STAGE_SET_IDS] = "set_ids",
  [RT_STAGE_LAYERS] = "layers",
  [RT_STAGE_OVERLAY] = "overlay",
  [RT_STAGE_PROC] = "proc",
  [RT_STAGE_DEV] = "dev",
  [RT_STAGE_TMP] = "tmp",
  [RT_STAGE_SYS] = "sys",
  [RT_STAGE_MASK] = "mask",
  [RT_STAGE_PIVOT_ROOT] = "pivot_root",
  [RT_STAGE_HOSTNAME] = "hostname",
  [RT_STAGE_LOOPBACK] = "loopback",
  [RT_STAGE_STDIO] = "stdio",
  [RT_STAGE_CGROUP_NS] = "cgroup_ns",
  [RT_STAGE_CAPS] = "caps",
  [RT_STAGE_NO_NEW_PRIVS] = "no_new_privs",
  [RT_STAGE_DUMPABLE] = "dumpable",
  [RT_STAGE_FDS] = "fds",
  [RT_STAGE_SECCOMP] = "seccomp",
  [RT_STAGE_EXEC] = "exec",
};

const char *
rt_stage_name (int stage)
{
  if (stage < 0 || stage >= RT_STAGE__COUNT || !stage_names[stage])
    return "?";
  return stage_names[stage];
}

void
rt_limits_default (struct rt_limits *l)
{
  *l = (struct rt_limits) { .cpu_millis = 1000,
                            .memory_bytes = 1ull << 30,
                            .pids = 512,
                            .disk_bytes = 1ull << 30,
                            .disk_inodes = 65536,
                            .nofile = 4096 };
}

/* "<stage>: <message>[: strerror]" with the given errno (0: no strerror part). */
static int __attribute__ ((format (printf, 4, 5)))
stage_err (struct sbx_err *err, int stage, int e, const char *fmt, ...)
{
  char msg[256];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (e)
    return sbx_err_set (err, SBX_E_INTERNAL, e, "%s: %s: %s", rt_stage_name (stage), msg,
                        strerror (e));
  return sbx_err_set (err, SBX_E_INTERNAL, 0, "%s: %s", rt_stage_name (stage), msg);
}

int
rt_run_dir_path (char out[PATH_MAX], const char *state_dir, const char *id)
{
  if (snprintf (out, PATH_MAX, "%s/run/%s", state_dir, id) >= PATH_MAX)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  return 0;
}

static int
valid_hostname (const char *h)
{
  size_t n = strlen (h);
  if (n == 0 || n > 63)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z')
          || (h[i] >= '0' && h[i] <= '9') || h[i] == '-' || h[i] == '.'))
      return 0;
  return 1;
}

static int
check_spec (const struct rt_spec *spec, struct sbx_err *err)
{
  if (!spec->id || !sbx_id_valid (spec->id, "sb"))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: invalid sandbox id");
  if (!spec->lowers && (!spec->rootfs || spec->rootfs[0] != '/'))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: rootfs must be an absolute path");
  if (rt_layers_check_spec (spec, err) < 0)
    return -1;
  if (!spec->state_dir || spec->state_dir[0] != '/')
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: state dir must be an absolute path");
  if (!spec->init_path)
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: no sbx-init path");
  if (spec->hostname && !valid_hostname (spec->hostname))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: invalid hostname");
  return 0;
}

static int
make_run_dir (struct rt_sandbox *sb, const struct rt_spec *spec, struct sbx_err *err)
{
  char parent[PATH_MAX];
  if (rt_run_dir_path (sb->run_dir, spec->state_dir, spec->id) < 0
      || snprintf (parent, sizeof parent, "%s/run", spec->state_dir) >= (int) sizeof parent)
    return stage_err (err, RT_STAGE_RUN_DIR, ENAMETOOLONG, "path of '%s'", spec->state_dir);
  /* <state_dir>/run is made only when missing (mkdir -p costs a syscall per component). */
  int r = mkdir (sb->run_dir, 0700);
  if (r < 0 && errno == ENOENT)
    {
      if (sbx_mkdir_p (parent, 0700) < 0)
        return stage_err (err, RT_STAGE_RUN_DIR, errno, "mkdir '%s'", parent);
      r = mkdir (sb->run_dir, 0700);
    }
  if (r < 0)
    return stage_err (err, RT_STAGE_RUN_DIR, errno, "mkdir '%s'", sb->run_dir);
  sb->have_run_dir = 1; /* also the scratch tmpfs mount point, in the sandbox's namespace */
  return 0;
}

/* The agent's socket is created here, by the parent, in a directory never mounted into
 * the sandbox: code inside cannot replace or redirect it, and sbxd finds it at the same
 * path after a restart. sbx-init gets the listening fd as fd 3. */
static int
make_agent_socket (struct rt_sandbox *sb, struct sbx_err *err)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  if (snprintf (sb->sock_path, sizeof sb->sock_path, "%s/agent.sock", sb->run_dir)
      >= (int) sizeof sb->sock_path)
    return stage_err (err, RT_STAGE_AGENT_SOCKET, ENAMETOOLONG, "'%s/agent.sock'", sb->run_dir);
  memcpy (a.sun_path, sb->sock_path, strlen (sb->sock_path) + 1);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return stage_err (err, RT_STAGE_AGENT_SOCKET, errno, "socket");
  if (bind (fd, (struct sockaddr *) &a, sizeof a) < 0 || chmod (sb->sock_path, 0600) < 0
      || listen (fd, 64) < 0)
    {
      int e = errno;
      close (fd);
      return stage_err (err, RT_STAGE_AGENT_SOCKET, e, "bind/listen '%s'", sb->sock_path);
    }
  return fd;
}

static int
open_init (const char *path, struct sbx_err *err)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return stage_err (err, RT_STAGE_INIT_FD, errno, "open '%s'", path);
  struct stat st;
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || !(st.st_mode & S_IXUSR))
    {
      close (fd);
      return stage_err (err, RT_STAGE_INIT_FD, EACCES, "'%s' is not an executable file", path);
    }
  return fd;
}

static int
write_proc (pid_t pid, const char *file, const char *val, int stage, struct sbx_err *err)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/%s", (int) pid, file);
  if (sbx_write_file (path, val) < 0)
    return stage_err (err, stage, errno, "write '%s' to %s", val, path);
  return 0;
}

/* setgroups stays "allow" (the default when a privileged process writes the maps): the
 * child must call setgroups(0, NULL) to shed sbxd's supplementary groups, which would
 * otherwise keep granting their host permissions. "deny" exists for unprivileged maps
 * (CVE-2014-8989: dropping a group to bypass a negative group permission); here host
 * root writes the maps, and setgroups inside can only name gids of the sandbox's own
 * range. */
static int
write_id_maps (pid_t pid, uint32_t base, struct sbx_err *err)
{
  char map[64];
  snprintf (map, sizeof map, "0 %u %u\n", base, RT_UID_SPAN);
  if (write_proc (pid, "uid_map", map, RT_STAGE_ID_MAPS, err) < 0
      || write_proc (pid, "gid_map", map, RT_STAGE_ID_MAPS, err) < 0)
    return -1;
  return 0;
}

/* Read the child's records until EOF. Expected: PROGRESS wait_parent, PROGRESS exec, EOF.
 * A FAIL record ends it with the child's stage and errno. */
static int
wait_child (int sync_fd, pid_t pid, int *scratch_fd, struct sbx_err *err)
{
  int last = RT_STAGE_RELEASE;
  int64_t deadline = sbx_mono_ns () + (int64_t) CHILD_TIMEOUT_MS * 1000000;
  for (;;)
    {
      int64_t left = (deadline - sbx_mono_ns ()) / 1000000;
      struct pollfd p = { .fd = sync_fd, .events = POLLIN };
      int r = left > 0 ? poll (&p, 1, (int) left) : 0;
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return stage_err (err, last, errno, "poll sync socket");
      if (r == 0)
        {
          /* Say where it hangs: the kernel function it sleeps in and its syscall. */
          char path[64], wchan[64] = "?", sc[128] = "?";
          snprintf (path, sizeof path, "/proc/%d/wchan", (int) pid);
          sbx_read_file (path, wchan, sizeof wchan);
          snprintf (path, sizeof path, "/proc/%d/syscall", (int) pid);
          sbx_read_file (path, sc, sizeof sc);
          sc[strcspn (sc, "\n")] = '\0';
          return stage_err (err, last, ETIMEDOUT,
                            "child did not finish setup (sleeping in %s, syscall %s)", wchan, sc);
        }
      struct rt_sync_msg m;
      int fd;
      ssize_t n = rt_sync_recv (sync_fd, &m, &fd);
      /* The overlay record carries a clone of the scratch mount (layers.c). */
      if (fd >= 0 && n == (ssize_t) sizeof m && m.kind == RT_SYNC_PROGRESS
          && m.stage == RT_STAGE_OVERLAY && *scratch_fd < 0)
        *scratch_fd = fd;
      else if (fd >= 0)
        close (fd);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return stage_err (err, last, errno, "read sync socket");
      if (n == 0)
        {
          if (last == RT_STAGE_EXEC)
            return 0; /* the sync fd closed at exec: sbx-init is running */
          return stage_err (err, last, 0, "child exited without a report after stage %s",
                            rt_stage_name (last));
        }
      /* Progress must move forward; a failure may be in the stage last announced. */
      int min = m.kind == RT_SYNC_FAIL ? last : last + 1;
      if (n != (ssize_t) sizeof m || m.stage < min || m.stage < RT_STAGE_FIRST_CHILD
          || m.stage >= RT_STAGE__COUNT)
        return stage_err (err, last, EPROTO, "bad or out-of-order sync record (stage %d)",
                          n == (ssize_t) sizeof m ? m.stage : -1);
      m.msg[sizeof m.msg - 1] = '\0';
      if (m.kind == RT_SYNC_FAIL)
        {
          stage_err (err, m.stage, m.sys_errno, "%s", m.msg);
          return -1;
        }
      if (m.kind != RT_SYNC_PROGRESS)
        return stage_err (err, last, EPROTO, "bad sync record kind %d", m.kind);
      last = m.stage;
    }
}

/* A symlink whose target is the pid: ext4 keeps a short target in the inode, so unlike
 * a file with content it allocates no block, and its removal frees none (a synchronous
 * discard on hosts mounted with -o discard). Read by read_pid_file (sandbox.c). */
static int
write_pid_file (struct rt_sandbox *sb)
{
  char path[PATH_MAX + 8], val[16];
  snprintf (path, sizeof path, "%s/pid", sb->run_dir);
  snprintf (val, sizeof val, "%d", (int) sb->pid);
  return symlink (val, path);
}

static int
create_cgroup (struct rt_sandbox *sb, const struct rt_spec *spec, struct sbx_err *err)
{
  sb->have_cgroup = 1;
  if (sb->cg.ops->create (&sb->cg, &spec->limits, err) < 0)
    return sbx_err_wrap (err, "%s", rt_stage_name (RT_STAGE_CGROUP));
  return 0;
}

/* v1: make the cgroups, move the child in, and tell it so. A child that failed meanwhile
 * (a bad volume mount point, say) is gone: then wait_child reads its own report, which
 * says more than our ESRCH or EPIPE would. */
static int
attach_late (struct rt_sandbox *sb, const struct rt_spec *spec, int sync_fd,
             struct sbx_err *err)
{
  if (create_cgroup (sb, spec, err) < 0)
    return -1;
  if (sb->cg.ops->attach (&sb->cg, sb->pid, err) < 0)
    {
      if (err->sys_errno != ESRCH)
        return sbx_err_wrap (err, "%s", rt_stage_name (RT_STAGE_CGROUP_ATTACH));
      sbx_err_clear (err);
      return 0;
    }
  struct rt_sync_msg in = { .kind = RT_SYNC_GO, .stage = RT_STAGE_CGROUP_ATTACH };
  if (send (sync_fd, &in, sizeof in, MSG_NOSIGNAL) != (ssize_t) sizeof in && errno != EPIPE)
    return stage_err (err, RT_STAGE_CGROUP_ATTACH, errno, "send cgroup record");
  return 0;
}

/* Untrusted code must not inherit a privileged scheduling policy of ours: a real-time
 * one could starve the host (and on v1 a real-time task cannot even join the sandbox's cpu
 * cgroup, which has no real-time budget: EINVAL), a negative nice value would put it ahead
 * of the host's work. SCHED_RESET_ON_FORK makes our children start as SCHED_OTHER with
 * nice >= 0; we keep our own policy. A positive nice value (the operator's choice of a
 * lower priority) is inherited as before. Per thread: checked at every spawn. */
static int
reset_sched_on_fork (struct sbx_err *err)
{
  int policy = sched_getscheduler (0);
  if (policy < 0 || (policy & SCHED_RESET_ON_FORK))
    return 0;
  errno = 0;
  int nice = getpriority (PRIO_PROCESS, 0);
  if ((policy == SCHED_OTHER || policy == SCHED_BATCH || policy == SCHED_IDLE)
      && !(nice < 0 && errno == 0))
    return 0;
  struct sched_param sp;
  if (sched_getparam (0, &sp) < 0 || sched_setscheduler (0, policy | SCHED_RESET_ON_FORK, &sp) < 0)
    return stage_err (err, RT_STAGE_CLONE, errno,
                      "set SCHED_RESET_ON_FORK (sbx runs with a real-time policy or a negative "
                      "nice value, which the sandbox must not inherit)");
  return 0;
}

/* The sandbox's user namespace is made owned by the sandbox's own host uid, not by root.
 * The kernel charges some per-user budgets (inotify instances and watches, message queue
 * bytes) at every user namespace level to the owner of the namespace below: owned by
 * root, every sandbox drew on host root's (128 inotify instances on a stock host), and one
 * sandbox could take them all from the host's services and every other sandbox. The owner
 * is the creator's euid, so this thread's euid is the sandbox's uid across clone3 only;
 * its fsuid stays 0, so the child still acts as host root on files until it changes ids
 * inside, as before. Raw syscalls: they change this thread only (glibc's would signal
 * every thread of sbxd). */
static int
own_userns_begin (uid_t uid)
{
  if (syscall (SYS_setresuid, (uid_t) -1, uid, (uid_t) -1) < 0)
    return -1;
  syscall (SYS_setfsuid, (uid_t) 0);
  if (syscall (SYS_setfsuid, (uid_t) -1) != 0)
    {
      int e = errno ? errno : EPERM;
      syscall (SYS_setresuid, (uid_t) -1, (uid_t) 0, (uid_t) -1);
      errno = e;
      return -1;
    }
  return 0;
}

/* Back to euid (and fsuid) 0. Changing the euid made this process non-dumpable: restore
 * what it was. Cannot fail (the real and saved uids are 0), and must not: the rest of
 * sbxd runs as root; abort rather than go on as another user. */
static void
own_userns_end (int dumpable)
{
  if (syscall (SYS_setresuid, (uid_t) -1, (uid_t) 0, (uid_t) -1) < 0 || geteuid () != 0)
    abort ();
  if (dumpable >= 0)
    prctl (PR_SET_DUMPABLE, dumpable);
}

/* The child sets its own RLIMIT_NOFILE (the parent's prlimit on it would need
 * CAP_SYS_RESOURCE, since the child runs under another euid) and can only lower it: raise
 * our hard limit first when the sandbox's is higher and we may (else the child reports
 * the stage "rlimits"). */
static void
raise_nofile_hard (uint64_t nofile)
{
  struct rlimit rl;
  if (nofile && getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < nofile)
    {
      rl.rlim_max = nofile;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
}

static int
spawn (struct rt_sandbox *sb, const struct rt_spec *spec, struct sbx_err *err)
{
  int64_t t0 = sbx_mono_ns ();
  if (check_spec (spec, err) < 0)
    return -1;
  snprintf (sb->id, sizeof sb->id, "%s", spec->id);
  if (rt_seccomp_prepare_in (spec->state_dir, err) < 0)
    return -1;

  uint32_t slot;
  if (rt_uid_slot_claim (RT_UID_DIR, RT_CGROUP_ROOT, spec->id, &sb->lock_fd, &slot, err)
      < 0)
    return sbx_err_wrap (err, "%s", rt_stage_name (RT_STAGE_UID_RANGE));
  sb->uid_base = rt_uid_slot_base (slot);

  if (make_run_dir (sb, spec, err) < 0)
    return -1;
  cleanup_close int listen_fd = make_agent_socket (sb, err);
  if (listen_fd < 0)
    return -1;
  cleanup_close int init_fd = open_init (spec->init_path, err);
  if (init_fd < 0)
    return -1;

  if (rt_cgroup_init (&sb->cg, RT_CGROUP_ROOT, spec->id, err) < 0)
    return sbx_err_wrap (err, "%s", rt_stage_name (RT_STAGE_CGROUP));
  int late_cgroup = !sb->cg.ops->clone_into;
  if (!late_cgroup && create_cgroup (sb, spec, err) < 0)
    return -1;

  int pair[2];
  if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
    return stage_err (err, RT_STAGE_CLONE, errno, "socketpair");
  cleanup_close int sync_fd = pair[0];
  cleanup_close int child_fd = pair[1];

  /* Everything the child reads, built now: it may not allocate. */
  static char *const argv[] = { "sbx-init", NULL };
  static char *const envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "HOME=/root", NULL };
  struct rt_child child = {
    .sync_fd = child_fd,
    .parent_sync_fd = sync_fd,
    .listen_fd = listen_fd,
    .lock_fd = sb->lock_fd,
    .init_fd = init_fd,
    .die_with_parent = spec->die_with_parent,
    .inherit_stderr = spec->inherit_stderr,
    .run_dir = sb->run_dir,
    .wait_cgroup = late_cgroup,
    .nofile = spec->limits.nofile,
    .argv = argv,
    .envp = envp,
  };
  child.nbpf = rt_seccomp_programs (&child.bpf);
  if (child.nbpf <= 0)
    return stage_err (err, RT_STAGE_SECCOMP_PREP, EINVAL, "no seccomp program");
  if (rt_layers_prepare_child (spec, &child, err) < 0)
    return -1;
  snprintf (child.hostname, sizeof child.hostname, "%s",
            spec->hostname ? spec->hostname : "sandbox");
  snprintf (child.scratch_opts, sizeof child.scratch_opts,
            "size=%llu,nr_inodes=%llu,mode=0755,uid=0,gid=0",
            (unsigned long long) spec->limits.disk_bytes,
            (unsigned long long) spec->limits.disk_inodes);

  int64_t t1 = sbx_mono_ns ();
  int cgfd = sb->cg.ops->clone_fd (&sb->cg);
  struct clone_args ca = {
    .flags = CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET
             | CLONE_NEWIPC | CLONE_NEWUTS | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0),
    .pidfd = (uint64_t) (uintptr_t) &sb->pidfd,
    .exit_signal = SIGCHLD,
    .cgroup = cgfd >= 0 ? (uint64_t) cgfd : 0,
  };
  if (reset_sched_on_fork (err) < 0)
    return -1;
  raise_nofile_hard (spec->limits.nofile);
  int dumpable = prctl (PR_GET_DUMPABLE);
  /* No handler of sbxd may run in the child before it resets them. */
  sigset_t all, old;
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  long pid = -1;
  int clone_errno = 0;
  if (own_userns_begin (sb->uid_base) < 0)
    clone_errno = errno;
  else
    {
      pid = syscall (SYS_clone3, &ca, sizeof ca);
      if (pid == 0)
        rt_child_main (&child);
      clone_errno = errno;
      own_userns_end (dumpable);
    }
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (pid < 0)
    return stage_err (err, RT_STAGE_CLONE, clone_errno, "clone3 as uid %u",
                      (unsigned) sb->uid_base);
  sb->pid = (pid_t) pid;
  sb->is_child = 1; /* from here on teardown kills and reaps it */
  sbx_closep (&child_fd);
  int64_t t2 = sbx_mono_ns ();

  /* The memcg OOM killer should pick the commands, never PID 1 first: losing sbx-init
   * loses the whole sandbox. Lowering needs CAP_SYS_RESOURCE, which some hosts (and
   * containers running sbxd) lack; then PID 1 keeps sbxd's value and sbx-init's raising
   * of its commands' oom_score_adj (always allowed) gives the same preference. */
  if (write_proc (sb->pid, "oom_score_adj", "-999", RT_STAGE_OOM_ADJ, err) < 0)
    {
      if (err->sys_errno != EACCES && err->sys_errno != EPERM)
        return -1;
      static int warned;
      if (!__atomic_exchange_n (&warned, 1, __ATOMIC_RELAXED))
        LOG_DEBUG ("no CAP_SYS_RESOURCE: sandbox PID 1 keeps oom_score_adj 0 (%s)", err->msg);
      sbx_err_clear (err);
    }
  if (write_id_maps (sb->pid, sb->uid_base, err) < 0)
    return -1;
  int64_t tm = sbx_mono_ns ();
  /* Idmapped read-only clones of the image layers (and writable ones of the volumes):
   * the image stays owned by host root on disk but shows as root-owned inside, and
   * nothing inside can write it (layers.c). */
  struct rt_mounts mounts;
  if (rt_layers_open (sb->pid, spec, &mounts, err) < 0)
    return sbx_err_wrap (err, "%s", rt_stage_name (RT_STAGE_IDMAP_MOUNT));

  /* sync 1: release the child with the image mounts. */
  struct rt_sync_msg go = { .kind = RT_SYNC_GO, .stage = RT_STAGE_RELEASE };
  int sent = rt_layers_send_go (sync_fd, &go, &mounts);
  int send_errno = errno;
  rt_mounts_close (&mounts);
  if (sent < 0)
    return stage_err (err, RT_STAGE_RELEASE, send_errno, "send go record");
  int64_t tg = sbx_mono_ns ();

  /* v1: the cgroups are made and the child moved in while it mounts its filesystems (on
   * another CPU), instead of before clone3 where their ~0.5 ms delayed everything. The
   * child waits for this second record before it unshares its cgroup namespace and
   * execs: no code of the sandbox runs outside its cgroup. Until then the kernel objects
   * of its setup are charged to ours. */
  if (late_cgroup && attach_late (sb, spec, sync_fd, err) < 0)
    return -1;
  int64_t t3 = sbx_mono_ns ();

  /* sync 2: progress records, then EOF at exec. */
  if (wait_child (sync_fd, sb->pid, &sb->scratch_fd, err) < 0)
    return -1;
  if (write_pid_file (sb) < 0)
    return stage_err (err, RT_STAGE_EXEC, errno, "write pid file");
  int64_t t4 = sbx_mono_ns ();
  LOG_DEBUG ("sandbox %s: spawned in %.2f ms (prepare %.2f, clone %.2f, parent %.2f, child "
             "%.2f; maps %.2f, image+go %.2f, late cgroup %.2f)",
             sb->id, (t4 - t0) / 1e6, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6,
             (t4 - t3) / 1e6, (tm - t2) / 1e6, (tg - tm) / 1e6, (t3 - tg) / 1e6);
  return 0;
}

int
rt_sandbox_spawn (const struct rt_spec *spec, struct rt_sandbox **out, struct sbx_err *err)
{
  /* One-shot sandboxes die with the caller's thread: they must be its own children. */
  if (spec && !spec->die_with_parent)
    {
      int r = rt_spawner_spawn (spec, out, err);
      if (r <= 0)
        return r;
    }
  return rt_sandbox_spawn_local (spec, out, err);
}

int
rt_sandbox_spawn_local (const struct rt_spec *spec, struct rt_sandbox **out,
                        struct sbx_err *err)
{
  *out = NULL;
  struct rt_sandbox *sb = calloc (1, sizeof *sb);
  if (!sb)
    return sbx_err_sys (err, "create sandbox: calloc");
  sb->pidfd = -1;
  sb->lock_fd = -1;
  sb->cg.dirfd = -1;
  sb->scratch_fd = -1;
  if (spawn (sb, spec, err) < 0)
    {
      int saved_code = err->code;
      rt_sandbox_teardown (sb);
      free (sb);
      err->code = saved_code;
      return sbx_err_wrap (err, "create sandbox %s", spec && spec->id ? spec->id : "?");
    }
  /* sbx-init holds the uid slot lock now (fd 4): no fd per sandbox stays in sbxd. The slot
   * remains claimed after sbx-init is gone until the sandbox's cgroup is empty
   * (uidrange.c), so teardown needs no lock of its own. */
  sbx_closep (&sb->lock_fd);
  *out = sb;
  return 0;
}
