/* The pre-exec child: runs between clone3 and execveat of sbx-init, one function per stage
 * of enum rt_stage. sbxd is multi-threaded, so this code makes no malloc, stdio, logging
 * or lock calls: only system calls on data the parent prepared (struct rt_child). Every
 * step fails closed: the first failure sends {stage, errno, message} to the parent and
 * the child _exit(127)s. See spawn.c for the whole sequence. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/ioprio.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Copy without libc string helpers (they are safe, but keeping the child to plain loops
 * and syscalls makes the rule easy to audit). */
static void
copy_msg (char *dst, size_t cap, const char *src)
{
  size_t i = 0;
  for (; src && src[i] && i + 1 < cap; i++)
    dst[i] = src[i];
  dst[i] = '\0';
}

static void
send_record (const struct rt_child *c, int kind, int stage, int sys_errno, const char *msg)
{
  struct rt_sync_msg m;
  for (size_t i = 0; i < sizeof m; i++)
    ((char *) &m)[i] = 0;
  m.kind = kind;
  m.stage = stage;
  m.sys_errno = sys_errno;
  copy_msg (m.msg, sizeof m.msg, msg);
  while (send (c->sync_fd, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
}

_Noreturn void
rt_child_fail (const struct rt_child *c, int stage, int sys_errno, const char *msg)
{
  send_record (c, RT_SYNC_FAIL, stage, sys_errno, msg);
  _exit (127);
}

void
rt_child_progress (const struct rt_child *c, int stage)
{
  send_record (c, RT_SYNC_PROGRESS, stage, 0, "");
}

#define FAIL(stage, msg) rt_child_fail (c, (stage), errno, (msg))

/* sbxd's handlers must never run here (they may take locks), and sbx-init must start with
 * default dispositions and an empty mask: the parent blocked every signal around clone3,
 * so reset dispositions first, then unblock. */
static void
reset_signals (const struct rt_child *c)
{
  struct sigaction dfl = { .sa_handler = SIG_DFL };
  for (int s = 1; s < _NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      sigaction (s, &dfl, NULL); /* glibc-internal signals fail with EINVAL: fine */
  sigset_t none;
  sigemptyset (&none);
  if (sigprocmask (SIG_SETMASK, &none, NULL) < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "sigprocmask");
}

/* The child starts with a copy of sbxd's whole fd table, thousands of fds when it runs
 * many sandboxes. Close all but the four we need before anything else: none of them may
 * reach the sandbox, and with the sandbox's RLIMIT_NOFILE (stage_rlimits) below sbxd's
 * highest fd, moving ours to free slots would fail with EMFILE. */
static void
close_inherited (const struct rt_child *c)
{
  int keep[4] = { c->sync_fd, c->listen_fd, c->lock_fd, c->init_fd };
  for (int i = 1; i < 4; i++) /* insertion sort, no libc */
    for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--)
      {
        int t = keep[j];
        keep[j] = keep[j - 1];
        keep[j - 1] = t;
      }
  unsigned from = 3; /* 0-2 stay: /dev/null or the caller's stderr */
  for (int i = 0; i < 4; i++)
    {
      if (keep[i] < (int) from)
        continue;
      if (keep[i] > (int) from
          && syscall (SYS_close_range, from, (unsigned) keep[i] - 1, 0) < 0)
        FAIL (RT_STAGE_WAIT_PARENT, "close inherited fds");
      from = (unsigned) keep[i] + 1;
    }
  if (syscall (SYS_close_range, from, ~0u, 0) < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "close inherited fds");
}

static void
stage_wait_parent (const struct rt_child *c, int *fds)
{
  close_inherited (c); /* this closes the parent's end of the sync pair too, so the
                          parent's death reads as EOF below */
  reset_signals (c);
  /* An sbxd started under `setarch -R` (or with READ_IMPLIES_EXEC) would pass that on:
   * no address randomization, or executable data, for everything in the sandbox. */
  if (personality (PER_LINUX) < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "personality(PER_LINUX)");
  /* Nor its umask: under 077 the sandbox's / and /dev were made 0700 (unusable to any
   * user but root inside) and every command's files private. */
  umask (022);
  /* Nor a real-time I/O class (ionice -c1), with which the sandbox could starve the host's
   * disk I/O. Idle and best-effort classes, an operator's choice, stay. */
  long ioprio = syscall (SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
  if (ioprio >= 0 && IOPRIO_PRIO_CLASS (ioprio) == IOPRIO_CLASS_RT
      && syscall (SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, 0) < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "ioprio_set(IOPRIO_CLASS_NONE)");
  if (c->die_with_parent && prctl (PR_SET_PDEATHSIG, SIGKILL) < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "prctl(PR_SET_PDEATHSIG)");
  /* getppid() is 0 in a new pid namespace, so the usual "did the parent already die"
   * check cannot work; the go record covers it: if the parent died before PDEATHSIG was
   * armed, its end of the sync pair is closed and recvmsg returns EOF. */
  if (!rt_child_recv_go (c, fds))
    _exit (127); /* the parent is gone or gave up: nobody to report to */
  /* The run dir is 0700 host root: enter it while we still are host root (the DAC owner
   * check needs no capability), the later relative lookups need none either. */
  if (chdir (c->run_dir) < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "chdir run dir");
}

/* The child sets these itself: its euid was the sandbox's at clone3 (spawn.c), and the
 * parent's prlimit on it would need CAP_SYS_RESOURCE. No core dumps; no real-time
 * priority and no nice value below 0 for the sandbox's code, whatever limits sbxd was
 * given; NOFILE as asked (at most sbxd's hard limit, which the parent raised if it could).
 * After the go record: its mount fds arrive while sbxd's limit still holds. */
static void
stage_rlimits (const struct rt_child *c)
{
  static const int zeroed[] = { RLIMIT_CORE, RLIMIT_RTPRIO, RLIMIT_NICE };
  struct rlimit zero = { 0, 0 };
  for (size_t i = 0; i < sizeof zeroed / sizeof zeroed[0]; i++)
    if (setrlimit (zeroed[i], &zero) < 0)
      FAIL (RT_STAGE_RLIMITS, "lower rlimit to 0");
  struct rlimit nf = { c->nofile, c->nofile };
  if (c->nofile && setrlimit (RLIMIT_NOFILE, &nf) < 0)
    FAIL (RT_STAGE_RLIMITS, "RLIMIT_NOFILE above sbxd's hard limit");
}

/* Once we are in our cgroup (v2: born there by CLONE_INTO_CGROUP; v1: the parent sends a
 * record after it attached us, see spawn.c), so that cgroup becomes the namespace root
 * and /proc/self/cgroup shows "/". */
static void
stage_cgroup_ns (const struct rt_child *c)
{
  if (c->wait_cgroup)
    {
      struct rt_sync_msg m;
      ssize_t n;
      do
        n = recv (c->sync_fd, &m, sizeof m, 0);
      while (n < 0 && errno == EINTR);
      if (n < 0)
        FAIL (RT_STAGE_CGROUP_NS, "recv cgroup record");
      if (n != (ssize_t) sizeof m || m.kind != RT_SYNC_GO || m.stage != RT_STAGE_CGROUP_ATTACH)
        _exit (127); /* the parent is gone or gave up: nobody to report to */
    }
  if (unshare (CLONE_NEWCGROUP) < 0)
    FAIL (RT_STAGE_CGROUP_NS, "unshare(CLONE_NEWCGROUP)");
}

/* Nothing we mount may propagate back to the host (the host's shared mounts became
 * slaves in our less privileged mount namespace; private cuts even that). */
static void
stage_mount_private (const struct rt_child *c)
{
  if (mount ("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    FAIL (RT_STAGE_MOUNT_PRIVATE, "make / private");
}

/* One tmpfs holds all writable space (overlay upper, /tmp, /dev/shm), so a single size
 * and inode bound covers them together. It is mounted over the run dir itself (in our
 * namespace only): a subdirectory as mount point was one more directory per sandbox on
 * the host's filesystem to create and remove (on ext4 each removal frees a block, a
 * synchronous discard on hosts mounted with -o discard). Mounted while still host
 * root (the run dir is 0700); uid=0,gid=0 are parsed in our user namespace, so its root
 * directory belongs to the sandbox's root. The cwd still is the directory under the
 * mount, so the path is walked again to enter the tmpfs. */
static void
stage_scratch (const struct rt_child *c)
{
  if (mount ("scratch", ".", "tmpfs", MS_NOSUID | MS_NODEV, c->scratch_opts) < 0)
    FAIL (RT_STAGE_SCRATCH, "mount tmpfs scratch");
  if (chdir (c->run_dir) < 0)
    FAIL (RT_STAGE_SCRATCH, "chdir scratch");
}

/* Become root of the user namespace (host uid/gid base). setgroups(0) drops sbxd's
 * supplementary groups: the parent left /proc/<pid>/setgroups at "allow" for this (see
 * write_id_maps in spawn.c).
 * Raw syscalls, not the glibc wrappers: in a process that had threads, glibc's
 * set*id/setgroups broadcast the change to every other thread and wait on a futex for
 * their answers. This child is a copy of multi-threaded sbxd with one thread left, so
 * the wrappers hang (seen with 4 spawning threads). */
static void
stage_set_ids (const struct rt_child *c)
{
  if (syscall (SYS_setresgid, 0, 0, 0) < 0)
    FAIL (RT_STAGE_SET_IDS, "setresgid(0)");
  if (syscall (SYS_setgroups, 0, NULL) < 0)
    FAIL (RT_STAGE_SET_IDS, "setgroups(0)");
  if (syscall (SYS_setresuid, 0, 0, 0) < 0)
    FAIL (RT_STAGE_SET_IDS, "setresuid(0)");
  /* The kernel clears the parent-death signal when the euid/egid change: arm it again,
   * then make sure the parent did not die in between (its end of the sync pair would
   * have hung up; in one-shot mode nobody else holds a copy of it). */
  if (c->die_with_parent)
    {
      if (prctl (PR_SET_PDEATHSIG, SIGKILL) < 0)
        FAIL (RT_STAGE_SET_IDS, "prctl(PR_SET_PDEATHSIG)");
      struct pollfd p = { .fd = c->sync_fd, .events = POLLRDHUP };
      if (poll (&p, 1, 0) < 0)
        FAIL (RT_STAGE_SET_IDS, "poll sync socket");
      if (p.revents & (POLLHUP | POLLRDHUP))
        _exit (127);
    }
}

static void
stage_hostname (const struct rt_child *c)
{
  size_t n = 0;
  while (c->hostname[n])
    n++;
  if (sethostname (c->hostname, n) < 0)
    FAIL (RT_STAGE_HOSTNAME, "sethostname");
}

/* A new network namespace has only lo, and it is down. */
static void
stage_loopback (const struct rt_child *c)
{
  int s = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    FAIL (RT_STAGE_LOOPBACK, "socket");
  struct ifreq ifr;
  for (size_t i = 0; i < sizeof ifr; i++)
    ((char *) &ifr)[i] = 0;
  copy_msg (ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  ifr.ifr_flags = IFF_UP | IFF_RUNNING;
  if (ioctl (s, SIOCSIFFLAGS, &ifr) < 0)
    FAIL (RT_STAGE_LOOPBACK, "bring lo up");
  close (s);
}

/* sbx-init talks over fd 3 only; 0-2 are the sandbox's own /dev/null (sbxd's stdio may be
 * a terminal or the journal), except stderr when the caller asked to keep it. */
static void
stage_stdio (const struct rt_child *c)
{
  int fd = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    FAIL (RT_STAGE_STDIO, "open /dev/null");
  for (int i = 0; i < 3; i++)
    {
      if (i == 2 && c->inherit_stderr)
        continue;
      if (dup3 (fd, i, 0) < 0)
        FAIL (RT_STAGE_STDIO, "dup /dev/null");
    }
  close (fd);
}

/* Empty every capability set. The bounding set matters most: exec of sbx-init as uid 0
 * would otherwise regain the full set in our user namespace. */
static void
stage_caps (const struct rt_child *c)
{
  for (unsigned long cap = 0;; cap++)
    if (cap < 64 && (c->keep_caps & (1ull << cap)))
      continue; /* kept on purpose (image builds), see rt_spec.keep_caps */
    else if (prctl (PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
      {
        if (errno == EINVAL && cap > CAP_SYS_ADMIN)
          break; /* past the last capability this kernel knows */
        FAIL (RT_STAGE_CAPS, "drop bounding set");
      }
  if (prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    FAIL (RT_STAGE_CAPS, "clear ambient set");
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];
  for (size_t i = 0; i < sizeof data; i++)
    ((char *) data)[i] = 0;
  data[0].effective = data[0].permitted = data[0].inheritable = (uint32_t) c->keep_caps;
  data[1].effective = data[1].permitted = data[1].inheritable = (uint32_t) (c->keep_caps >> 32);
  if (syscall (SYS_capset, &hdr, data) < 0)
    FAIL (RT_STAGE_CAPS, "capset");
}

static void
stage_no_new_privs (const struct rt_child *c)
{
  if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    FAIL (RT_STAGE_NO_NEW_PRIVS, "prctl(PR_SET_NO_NEW_PRIVS)");
  if (prctl (PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    rt_child_fail (c, RT_STAGE_NO_NEW_PRIVS, EPERM, "no_new_privs did not stick");
}

static void
stage_dumpable (const struct rt_child *c)
{
  if (prctl (PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    FAIL (RT_STAGE_DUMPABLE, "prctl(PR_SET_DUMPABLE)");
}

/* fd 3: the agent's listening socket; fd 4: the uid slot lock (so the range stays claimed
 * while sbx-init lives). Everything else the child inherited from sbxd (other threads'
 * sockets, other sandboxes' fds) is marked CLOEXEC, the sync fd included, so it closes
 * exactly at exec. First move our fds above 4 so that dup3 cannot clobber one of them. */
static int
stage_fds (const struct rt_child *c, int *sync_fd)
{
  int lst = fcntl (c->listen_fd, F_DUPFD_CLOEXEC, 5);
  int lock = fcntl (c->lock_fd, F_DUPFD_CLOEXEC, 5);
  int init = fcntl (c->init_fd, F_DUPFD_CLOEXEC, 5);
  int sync = fcntl (c->sync_fd, F_DUPFD_CLOEXEC, 5);
  if (lst < 0 || lock < 0 || init < 0 || sync < 0)
    FAIL (RT_STAGE_FDS, "move fds");
  struct rt_child *mc = (struct rt_child *) c; /* our private copy: report on the new fd */
  mc->sync_fd = sync;
  if (dup3 (lst, 3, 0) < 0 || dup3 (lock, 4, 0) < 0)
    FAIL (RT_STAGE_FDS, "dup to fd 3/4");
  if (syscall (SYS_close_range, 5u, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
    FAIL (RT_STAGE_FDS, "close_range(CLOEXEC)");
  *sync_fd = sync;
  return init;
}

/* Last, so that every earlier step ran unfiltered; after it only the syscalls the
 * allow-list has are possible (send, execveat, exit). */
static void
stage_seccomp (const struct rt_child *c)
{
  for (int i = 0; i < c->nbpf; i++)
    if (syscall (SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &c->bpf[i]) < 0)
      FAIL (RT_STAGE_SECCOMP, "load seccomp filter");
}

_Noreturn void
rt_child_main (const struct rt_child *c)
{
  int mfds[RT_MOUNT_FDS_MAX];
  stage_wait_parent (c, mfds);
  rt_child_progress (c, RT_STAGE_WAIT_PARENT);
  stage_rlimits (c);
  stage_mount_private (c);
  stage_scratch (c);
  stage_set_ids (c);
  rt_mount_layers (c, mfds);
  rt_mount_overlay (c);
  rt_child_mount_volumes (c, mfds + c->n_lowers);
  rt_child_send_scratch (c); /* progress "overlay", with the scratch mount */
  rt_mount_proc (c);
  rt_mount_dev (c);
  rt_mount_tmp (c);
  rt_mount_sys (c);
  rt_mount_masks (c);
  rt_mount_pivot (c);
  stage_hostname (c);
  stage_loopback (c);
  stage_stdio (c);
  stage_cgroup_ns (c);
  stage_caps (c);
  stage_no_new_privs (c);
  stage_dumpable (c);
  int sync_fd;
  int init_fd = stage_fds (c, &sync_fd);
  stage_seccomp (c);
  /* The parent takes EOF after this record as "exec succeeded". */
  rt_child_progress (c, RT_STAGE_EXEC);
  syscall (SYS_execveat, init_fd, "", c->argv, c->envp, AT_EMPTY_PATH);
  FAIL (RT_STAGE_EXEC, "execveat sbx-init");
}
