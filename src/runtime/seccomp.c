/* The sandbox's seccomp policy: an allow-list modelled on the Docker default profile,
 * tighter where agents need no more. Compiled once per process with libseccomp (about
 * 2 ms here) and kept as a BPF program that every spawn only loads (the child cannot
 * call libseccomp: it allocates). Given a state dir, the compiled programs are also kept
 * on disk (seccomp_cache.c), so a one-shot `sbx run` loads them instead of compiling:
 * the cache key hashes every rule exactly as it would be handed to libseccomp, plus the
 * libseccomp version and the native arch, so a changed policy or library never matches
 * an old file.
 *
 * Default action: EPERM. Left out on purpose (so EPERM): mount and the new mount API,
 * pivot_root, chroot, unshare, setns, namespace flags on clone (clone3 gets ENOSYS so
 * libc falls back to clone, whose flags we can inspect), bpf, keyctl/add_key/request_key,
 * io_uring_*, perf_event_open, kexec_*, *_module, open_by_handle_at, name_to_handle_at,
 * ptrace, process_vm_*, pidfd_getfd, kcmp, reboot, swapon/swapoff, acct, userfaultfd,
 * fanotify_*, quotactl, sethostname, syslog, settimeofday and other clock setters.
 * io_setup gets ENOSYS (native AIO draws on a host-wide pool no cgroup bounds).
 * Sockets: AF_UNIX, AF_INET, AF_INET6 only (others, AF_NETLINK included, EAFNOSUPPORT).
 * ioctl: TIOCSTI, TIOCLINUX and TIOCSETD (line disciplines, often modules) refused.
 * Only the native x86_64 ABI: other architectures kill the process (bad-arch action) and
 * x32 numbers (__X32_SYSCALL_BIT) are rejected by the check libseccomp emits for an
 * x86_64-only filter (a unit test looks for it). */
#include "internal.h"

#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const allowed[] = {
  "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat",
  "capget", "capset", "chdir", "chmod", "chown", "clock_getres", "clock_gettime",
  "clock_nanosleep", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
  "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait",
  "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "execve", "execveat", "exit",
  "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod",
  "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr",
  "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync",
  "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
  "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents",
  "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername",
  "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
  "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
  "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init",
  "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
  "io_pgetevents", "io_submit", "ioprio_get", "ioprio_set", "kill",
  "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
  "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr",
  "lseek", "lsetxattr", "lstat", "madvise", "membarrier", "memfd_create", "mincore",
  "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
  "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend",
  "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
  "munlockall", "munmap", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause",
  "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
  "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
  "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
  "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
  "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
  "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
  "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo",
  "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
  "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
  "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
  "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
  "sendfile", "sendmmsg", "sendmsg", "sendto", "set_robust_list", "set_thread_area",
  "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer",
  "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
  "setsid", "setsockopt", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
  "shutdown", "sigaltstack", "signalfd", "signalfd4", "socketpair", "splice", "stat",
  "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
  "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
  "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
  "timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlink", "unlinkat",
  "utime", "utimensat", "utimes", "vfork", "vmsplice", "wait4", "waitid", "write",
  "writev",
};

/* clone flags that create namespaces (CLONE_NEWTIME is clone3/unshare-only: its bit is
 * part of the exit signal for clone). */
#define NS_FLAGS                                                                           \
  (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET   \
   | CLONE_NEWCGROUP)

/* Attributes every filter gets; part of the cache key too. */
#define OPTIMIZE_LEVEL 2 /* a binary tree of syscall numbers: ~2x cheaper per syscall */
#define BADARCH_ACTION SCMP_ACT_KILL_PROCESS

/* Process-wide cache: [0] the ioctl guard, [1] the allow-list. Filled once, then only
 * read (the child gets a copy-on-write copy). */
static pthread_mutex_t prep_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_fprog progs[2];
static int prepared;

/* Where the rules of a filter go: into a libseccomp context (compile), or into the cache
 * key (hash). Both walk the same build_* functions, so the key cannot miss a rule. */
struct sink {
  scmp_filter_ctx ctx; /* NULL: hash mode */
  uint64_t *hash;
};

static void
hash_bytes (uint64_t *h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    *h = (*h ^ b[i]) * 0x100000001b3ull; /* FNV-1a */
}

static void
hash_u64 (uint64_t *h, uint64_t v)
{
  hash_bytes (h, &v, sizeof v);
}

static int
rule (struct sink *ctx, uint32_t action, const char *name, unsigned n,
      const struct scmp_arg_cmp *args, struct sbx_err *err)
{
  if (!ctx->ctx)
    {
      hash_u64 (ctx->hash, action);
      hash_bytes (ctx->hash, name, strlen (name) + 1);
      hash_u64 (ctx->hash, n);
      for (unsigned i = 0; i < n; i++)
        {
          hash_u64 (ctx->hash, args[i].arg);
          hash_u64 (ctx->hash, args[i].op);
          hash_u64 (ctx->hash, args[i].datum_a);
          hash_u64 (ctx->hash, args[i].datum_b);
        }
      return 0;
    }
  int nr = seccomp_syscall_resolve_name (name);
  if (nr == __NR_SCMP_ERROR)
    return 0; /* unknown to this libseccomp: stays at the default (EPERM) */
  int r = seccomp_rule_add_array (ctx->ctx, action, nr, n, args);
  if (r < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, -r, "seccomp rule for %s: %s", name,
                        strerror (-r));
  return 0;
}

static int
build_allow_list (struct sink *ctx, struct sbx_err *err)
{
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
    if (rule (ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL, err) < 0)
      return -1;

  /* clone: only without namespace flags. clone3 passes flags in memory seccomp cannot
   * read, so it answers ENOSYS and glibc falls back to clone. */
  struct scmp_arg_cmp no_ns = SCMP_A0 (SCMP_CMP_MASKED_EQ, NS_FLAGS, 0);
  if (rule (ctx, SCMP_ACT_ALLOW, "clone", 1, &no_ns, err) < 0
      || rule (ctx, SCMP_ACT_ERRNO (ENOSYS), "clone3", 0, NULL, err) < 0)
    return -1;

  /* io_setup: native AIO contexts come out of one host-wide pool (fs.aio-max-nr, 65536
   * events) that no cgroup bounds: one sandbox took 60,000 in one call, and then the
   * host and every other sandbox got EAGAIN. ENOSYS, as on a kernel without AIO: libaio
   * users (InnoDB, fio) fall back to threads; glibc's POSIX AIO never used it. The other
   * io_* calls need a context, so they stay allowed and answer EINVAL. */
  if (rule (ctx, SCMP_ACT_ERRNO (ENOSYS), "io_setup", 0, NULL, err) < 0)
    return -1;

  /* socket: the families a program needs to talk to the world and to itself. Others get
   * EAFNOSUPPORT, which programs probing for a family handle; a family argument with high
   * bits set matches nothing and stays at the default EPERM. Not AF_NETLINK: what a
   * netlink socket queues (an error ack echoing each bogus request it is sent) is charged
   * to no cgroup, v1 or v2. 64 route sockets that never read took 512 MiB from the host
   * while their sandbox's cgroup showed 13 MiB, and a socket costs its cgroup ~2.5 KiB
   * against up to 2 x rmem_max queued. Without it getifaddrs() fails (`ip`, psutil's
   * net_if_addrs, Node's os.networkInterfaces); getaddrinfo() assumes both IPv4 and IPv6,
   * as glibc does when it cannot ask. A sandbox has only lo to list. */
  for (int fam = 0; fam <= AF_MAX; fam++)
    {
      int ok = fam == AF_UNIX || fam == AF_INET || fam == AF_INET6;
      struct scmp_arg_cmp c = SCMP_A0 (SCMP_CMP_EQ, (scmp_datum_t) fam);
      if (rule (ctx, ok ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO (EAFNOSUPPORT), "socket", 1, &c,
                err) < 0)
        return -1;
    }

  /* ioctl is allowed here; the guard filter refuses TIOCSTI, TIOCLINUX and TIOCSETD.
   * (libseccomp lets an unconditional allow win over a conditional refusal in the same
   * filter, and refuses a rule whose action equals the default, so the refusal lives in
   * its own default-allow filter; the kernel applies the stricter verdict of the two.) */
  if (rule (ctx, SCMP_ACT_ALLOW, "ioctl", 0, NULL, err) < 0)
    return -1;

  /* personality: only the values Docker allows (query, Linux, UNAME26 variants). */
  static const scmp_datum_t personas[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff };
  for (size_t i = 0; i < sizeof personas / sizeof personas[0]; i++)
    {
      struct scmp_arg_cmp p = SCMP_A0 (SCMP_CMP_EQ, personas[i]);
      if (rule (ctx, SCMP_ACT_ALLOW, "personality", 1, &p, err) < 0)
        return -1;
    }
  return 0;
}

static int
build_ioctl_guard (struct sink *ctx, struct sbx_err *err)
{
  /* The kernel reads the ioctl cmd as 32 bits: compare only those, so high garbage bits
   * cannot slip TIOCSTI past the filter. */
  /* TIOCSETD: a line discipline other than the default is a driver most hosts build as
   * a module, and the kernel loads it for anyone who asks (dev.tty.ldisc_autoload is 1
   * by default): n_hdlc and n_gsm both had exploitable use-after-frees. A sandbox's ptys
   * need n_tty only. */
  static const unsigned long refused[] = { TIOCSTI, TIOCLINUX, TIOCSETD };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
    {
      struct scmp_arg_cmp c = SCMP_A1 (SCMP_CMP_MASKED_EQ, 0xffffffffu, refused[i]);
      if (rule (ctx, SCMP_ACT_ERRNO (EPERM), "ioctl", 1, &c, err) < 0)
        return -1;
    }
  return 0;
}

/* Compile ctx and read the BPF back through a memfd (libseccomp 2.5 exports only to fds). */
static int
export (scmp_filter_ctx ctx, struct sock_fprog *out, struct sbx_err *err)
{
  int r;
  if ((r = seccomp_attr_set (ctx, SCMP_FLTATR_ACT_BADARCH, BADARCH_ACTION)) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, -r, "seccomp bad-arch action: %s", strerror (-r));
  cleanup_close int fd = memfd_create ("sbx-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    return sbx_err_sys (err, "memfd_create");
  if ((r = seccomp_export_bpf (ctx, fd)) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, -r, "seccomp export: %s", strerror (-r));
  off_t len = lseek (fd, 0, SEEK_END);
  if (len <= 0 || len % (off_t) sizeof (struct sock_filter) != 0
      || len / (off_t) sizeof (struct sock_filter) > BPF_MAXINSNS)
    return sbx_err_set (err, SBX_E_INTERNAL, 0, "seccomp export: bad program size %lld",
                        (long long) len);
  struct sock_filter *insns = malloc ((size_t) len);
  if (!insns)
    return sbx_err_sys (err, "malloc");
  if (pread (fd, insns, (size_t) len, 0) != (ssize_t) len)
    {
      free (insns);
      return sbx_err_sys (err, "read seccomp program");
    }
  out->len = (unsigned short) (len / (off_t) sizeof (struct sock_filter));
  out->filter = insns;
  return 0;
}

/* Both programs, in load order: default action and rules. */
static const struct filter_def {
  uint32_t def;
  int (*fill) (struct sink *, struct sbx_err *);
} filters[2] = {
  { SCMP_ACT_ALLOW, build_ioctl_guard },
  { SCMP_ACT_ERRNO (EPERM), build_allow_list },
};

static int
compile (const struct filter_def *f, struct sock_fprog *out, struct sbx_err *err)
{
  scmp_filter_ctx ctx = seccomp_init (f->def);
  if (!ctx)
    return sbx_err_set (err, SBX_E_INTERNAL, ENOMEM, "seccomp_init failed");
  seccomp_attr_set (ctx, SCMP_FLTATR_CTL_OPTIMIZE, OPTIMIZE_LEVEL);
  struct sink sink = { .ctx = ctx };
  int rc = f->fill (&sink, err);
  if (rc == 0)
    rc = export (ctx, out, err);
  seccomp_release (ctx);
  return rc;
}

int
rt_seccomp_policy_key (uint64_t *key)
{
  uint64_t h = 0xcbf29ce484222325ull;
  struct sink sink = { .hash = &h };
  struct sbx_err err;
  const struct scmp_version *v = seccomp_version ();
  hash_bytes (&h, "sbx-seccomp-1", 14);
  hash_u64 (&h, v ? v->major : 0);
  hash_u64 (&h, v ? v->minor : 0);
  hash_u64 (&h, v ? v->micro : 0);
  hash_u64 (&h, seccomp_arch_native ());
  hash_u64 (&h, AF_MAX);
  hash_u64 (&h, OPTIMIZE_LEVEL);
  hash_u64 (&h, BADARCH_ACTION);
  for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
    {
      hash_u64 (&h, filters[i].def);
      if (filters[i].fill (&sink, &err) < 0)
        return -1;
    }
  *key = h;
  return 0;
}

static int
compile_all (struct sock_fprog p[2], struct sbx_err *err)
{
  for (int i = 0; i < 2; i++)
    if (compile (&filters[i], &p[i], err) < 0)
      {
        free (p[0].filter);
        free (p[1].filter);
        p[0].filter = p[1].filter = NULL;
        return sbx_err_wrap (err, "compile seccomp policy");
      }
  return 0;
}

int
rt_seccomp_prepare_in (const char *state_dir, struct sbx_err *err)
{
  pthread_mutex_lock (&prep_lock);
  int rc = 0;
  if (!prepared)
    {
      struct sock_fprog p[2] = { { 0 } };
      uint64_t key = 0;
      int have_key = state_dir && rt_seccomp_policy_key (&key) == 0;
      if (have_key && rt_seccomp_cache_load (state_dir, key, p) == 0)
        prepared = 1;
      else if ((rc = compile_all (p, err)) == 0)
        {
          prepared = 1;
          if (have_key)
            rt_seccomp_cache_store (state_dir, key, p); /* best effort */
        }
      if (prepared)
        {
          progs[0] = p[0];
          progs[1] = p[1];
        }
    }
  pthread_mutex_unlock (&prep_lock);
  return rc;
}

int
rt_seccomp_prepare (struct sbx_err *err)
{
  return rt_seccomp_prepare_in (NULL, err);
}

int
rt_seccomp_programs (const struct sock_fprog **out)
{
  pthread_mutex_lock (&prep_lock);
  int ok = prepared;
  pthread_mutex_unlock (&prep_lock);
  if (!ok)
    return 0;
  *out = progs;
  return 2;
}
