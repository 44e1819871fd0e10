/* sbx-probe: a static program the integration tests run INSIDE sandboxes to check the
 * isolation from the inside. Each subcommand prints "key value" lines that the tests parse.
 * Syscall probes pass harmless bad arguments where possible: an allowed syscall then fails
 * with EBADF/EFAULT/EINVAL, a filtered one with EPERM (bubblewrap's try-syscall idea). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

static void
result (const char *name, long ret, int err)
{
  printf ("%s %s\n", name, ret >= 0 ? "ok" : strerror (err));
}

/* Each call uses arguments that cannot do harm if the call is (wrongly) allowed. */
static int
cmd_syscalls (void)
{
  long r;
#define TRY(name, call)                                                                            \
  do                                                                                               \
    {                                                                                              \
      errno = 0;                                                                                   \
      r = (call);                                                                                  \
      result (name, r, errno);                                                                     \
      if (r >= 0 && !strcmp (name, "socket_vsock"))                                                \
        close ((int) r);                                                                           \
    }                                                                                              \
  while (0)
  TRY ("mount", mount ("none", "/nonexistent-probe", "tmpfs", 0, NULL));
  TRY ("umount", umount2 ("/nonexistent-probe", 0));
  TRY ("unshare_user", unshare (CLONE_NEWUSER));
  TRY ("unshare_ns", unshare (CLONE_NEWNS));
  TRY ("setns", setns (-1, 0));
  TRY ("bpf", syscall (SYS_bpf, -1, NULL, 0));
  TRY ("keyctl", syscall (SYS_keyctl, -1, 0, 0, 0, 0));
  TRY ("add_key", syscall (SYS_add_key, NULL, NULL, NULL, 0, 0));
  TRY ("perf_event_open", syscall (SYS_perf_event_open, NULL, -1, -1, -1, 0));
  TRY ("io_uring_setup", syscall (SYS_io_uring_setup, 0, NULL));
  TRY ("open_by_handle_at", syscall (SYS_open_by_handle_at, -1, NULL, 0));
  TRY ("name_to_handle_at", syscall (SYS_name_to_handle_at, -1, NULL, NULL, NULL, 0));
  TRY ("kexec_load", syscall (SYS_kexec_load, 0, 0, NULL, 0));
  TRY ("init_module", syscall (SYS_init_module, NULL, 0, NULL));
  TRY ("finit_module", syscall (SYS_finit_module, -1, NULL, 0));
  TRY ("ptrace", syscall (SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, 1, 0, 0));
  TRY ("reboot", syscall (SYS_reboot, 0, 0, 0, NULL));
  TRY ("pivot_root", syscall (SYS_pivot_root, "/nonexistent-a", "/nonexistent-b"));
  TRY ("chroot", chroot ("/nonexistent-probe"));
  TRY ("swapon", syscall (SYS_swapon, "/nonexistent-probe", 0));
  TRY ("userfaultfd", syscall (SYS_userfaultfd, 0));
  TRY ("open_tree", syscall (SYS_open_tree, -1, "", 0));
  TRY ("fsopen", syscall (SYS_fsopen, "tmpfs", 0));
  TRY ("clone_newuser", syscall (SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0) == 0
                            ? (_exit (0), 0L)
                            : -1L);
  TRY ("socket_vsock", socket (AF_VSOCK, SOCK_STREAM, 0));
  TRY ("socket_packet", socket (AF_PACKET, SOCK_RAW, 0));
  TRY ("socket_alg", socket (AF_ALG, SOCK_SEQPACKET, 0));
  TRY ("socket_netlink", socket (AF_NETLINK, SOCK_RAW, 0));
  TRY ("socket_unix", socket (AF_UNIX, SOCK_STREAM, 0));
  TRY ("socket_inet", socket (AF_INET, SOCK_STREAM, 0));
  aio_context_t aio = 0; /* if allowed: one event, freed at exit */
  TRY ("io_setup", syscall (SYS_io_setup, 1, &aio));
  /* A harmless allowed call, as a control. */
  TRY ("getpid", syscall (SYS_getpid));
  return 0;
}

static long
int80_getpid (void)
{
  long ret;
  __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) /* getpid on i386 */ : "memory");
  return ret;
}

static long
x32_getpid (void)
{
  return syscall (0x40000000 | SYS_getpid);
}

/* Call an alternative syscall entry point in a child, since the filter may kill it.
 * Prints "<name>_ret N" if the call returned, then "<name> killed SIG" or "exited N". */
static void
entry_point (const char *name, long (*call) (void))
{
  fflush (stdout);
  pid_t pid = fork ();
  if (pid == 0)
    {
      long ret = call ();
      printf ("%s_ret %ld\n", name, ret);
      fflush (stdout);
      _exit (ret > 0 ? 0 : 1);
    }
  int st;
  waitpid (pid, &st, 0);
  if (WIFSIGNALED (st))
    printf ("%s killed %d\n", name, WTERMSIG (st));
  else
    printf ("%s exited %d\n", name, WEXITSTATUS (st));
}

/* The 32-bit (int 0x80) and x32 entry points must be refused or killed. */
static int
cmd_int80 (void)
{
  entry_point ("int80", int80_getpid);
  entry_point ("x32", x32_getpid);
  return 0;
}

static void
print_file (const char *label, const char *path)
{
  char buf[4096];
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      printf ("%s ERR %s\n", label, strerror (errno));
      return;
    }
  ssize_t n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n < 0)
    n = 0;
  buf[n] = '\0';
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == '\n' || buf[i] == '\0')
      buf[i] = (i == n - 1) ? '\0' : '|';
  printf ("%s %s\n", label, buf);
}

static int
cmd_ids (void)
{
  printf ("pid %d\n", getpid ());
  printf ("uid %d\n", getuid ());
  print_file ("uid_map", "/proc/self/uid_map");
  print_file ("gid_map", "/proc/self/gid_map");
  print_file ("pid1_cmdline", "/proc/1/cmdline");
  char line[512];
  FILE *f = fopen ("/proc/self/status", "re");
  while (f && fgets (line, sizeof line, f))
    if (!strncmp (line, "Cap", 3) || !strncmp (line, "Seccomp:", 8)
        || !strncmp (line, "NoNewPrivs:", 11) || !strncmp (line, "Groups:", 7))
      {
        line[strcspn (line, "\n")] = '\0';
        char *colon = strchr (line, ':');
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
          v++;
        printf ("%s %s\n", line, *v ? v : "-");
      }
  if (f)
    fclose (f);
  char host[256] = "";
  gethostname (host, sizeof host);
  printf ("hostname %s\n", host);
  return 0;
}

static int
list_dir (const char *label, const char *path)
{
  DIR *d = opendir (path);
  if (!d)
    {
      printf ("%s ERR %s\n", label, strerror (errno));
      return 1;
    }
  struct dirent *e;
  while ((e = readdir (d)))
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
      printf ("%s %s\n", label, e->d_name);
  closedir (d);
  return 0;
}

static int
cmd_procs (void)
{
  DIR *d = opendir ("/proc");
  struct dirent *e;
  while (d && (e = readdir (d)))
    {
      if (e->d_name[0] < '0' || e->d_name[0] > '9')
        continue;
      char path[300], cmd[256] = "";
      snprintf (path, sizeof path, "/proc/%s/cmdline", e->d_name);
      int fd = open (path, O_RDONLY | O_CLOEXEC);
      if (fd >= 0)
        {
          ssize_t n = read (fd, cmd, sizeof cmd - 1);
          close (fd);
          cmd[n > 0 ? n : 0] = '\0';
        }
      printf ("proc %s %s\n", e->d_name, cmd);
    }
  if (d)
    closedir (d);
  return 0;
}

static int
cmd_fds (void)
{
  /* Print open fds other than the directory stream used to list them. */
  DIR *d = opendir ("/proc/self/fd");
  if (!d)
    return 1;
  int self = dirfd (d);
  struct dirent *e;
  while ((e = readdir (d)))
    if (e->d_name[0] != '.' && atoi (e->d_name) != self)
      {
        char path[300], target[512] = "";
        snprintf (path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink (path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        printf ("fd %s %s\n", e->d_name, target);
      }
  closedir (d);
  return 0;
}

/* Try to reach a path: stat, open for reading, open for writing. */
static int
cmd_access (int argc, char **argv)
{
  for (int i = 0; i < argc; i++)
    {
      struct stat st;
      int r = stat (argv[i], &st);
      printf ("stat %s %s\n", argv[i], r == 0 ? "ok" : strerror (errno));
      int fd = open (argv[i], O_RDONLY | O_CLOEXEC);
      printf ("read %s %s\n", argv[i], fd >= 0 ? "ok" : strerror (errno));
      if (fd >= 0)
        close (fd);
      fd = open (argv[i], O_WRONLY | O_CLOEXEC);
      printf ("write %s %s\n", argv[i], fd >= 0 ? "ok" : strerror (errno));
      if (fd >= 0)
        close (fd);
    }
  return 0;
}

/* Allocate and touch memory in 8 MiB steps, printing the running total (MiB). */
static int
cmd_memhog (long max_mib)
{
  setvbuf (stdout, NULL, _IONBF, 0);
  for (long mib = 8; mib <= max_mib; mib += 8)
    {
      char *p = malloc (8 << 20);
      if (!p)
        {
          printf ("malloc_failed %ld\n", mib);
          return 1;
        }
      memset (p, 1, 8 << 20);
      printf ("allocated %ld\n", mib);
    }
  return 0;
}

/* Fork until refused; report how many forks succeeded and why it stopped. */
static int
cmd_forkbomb (long max)
{
  long n = 0;
  int err = 0;
  for (; n < max; n++)
    {
      pid_t p = fork ();
      if (p < 0)
        {
          err = errno;
          break;
        }
      if (p == 0)
        {
          pause ();
          _exit (0);
        }
    }
  printf ("forked %ld\nstopped %s\n", n, err ? strerror (err) : "max");
  fflush (stdout);
  kill (0, SIGKILL); /* the children share our process group */
  return 0;
}

/* Write 1 MiB blocks to a file until an error; report bytes written and the error. */
static int
cmd_fill (const char *path)
{
  static char block[1 << 20];
  memset (block, 'x', sizeof block);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      printf ("open_failed %s\n", strerror (errno));
      return 1;
    }
  long long total = 0;
  int err = 0;
  for (;;)
    {
      ssize_t w = write (fd, block, sizeof block);
      if (w < 0)
        {
          err = errno;
          break;
        }
      total += w;
    }
  printf ("written %lld\nerror %s\n", total, strerror (err));
  close (fd);
  return 0;
}

/* Create empty files until refused. */
static int
cmd_inodes (const char *dir)
{
  long n = 0;
  int err = 0;
  char path[4096];
  for (;; n++)
    {
      snprintf (path, sizeof path, "%s/f%ld", dir, n);
      int fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0)
        {
          err = errno;
          break;
        }
      close (fd);
    }
  printf ("files %ld\nerror %s\n", n, strerror (err));
  return 0;
}

static volatile int spin_stop;
static void *
spin (void *arg)
{
  (void) arg;
  volatile unsigned long x = 0;
  while (!spin_stop)
    x++;
  return NULL;
}

/* N threads spin for S seconds of wall time; print CPU seconds used / wall seconds. */
static int
cmd_spin (int threads, double secs)
{
  pthread_t t[64];
  if (threads > 64)
    threads = 64;
  struct timespec w0, w1, c1;
  clock_gettime (CLOCK_MONOTONIC, &w0);
  for (int i = 0; i < threads; i++)
    pthread_create (&t[i], NULL, spin, NULL);
  struct timespec d = { (time_t) secs, (long) ((secs - (long) secs) * 1e9) };
  nanosleep (&d, NULL);
  spin_stop = 1;
  for (int i = 0; i < threads; i++)
    pthread_join (t[i], NULL);
  clock_gettime (CLOCK_MONOTONIC, &w1);
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &c1);
  double wall = (double) (w1.tv_sec - w0.tv_sec) + (double) (w1.tv_nsec - w0.tv_nsec) / 1e9;
  double cpu = (double) c1.tv_sec + (double) c1.tv_nsec / 1e9;
  printf ("wall %.3f\ncpu %.3f\ncpus %.3f\n", wall, cpu, cpu / wall);
  return 0;
}

/* What a command can reach of PID 1 (sbx-init) through /proc without ptrace: its memory
 * (writable through /proc/1/mem if it is dumpable), its fds (fd 4 is a host file), its
 * exe, maps and environ (host paths). Prints "<what> ok|<strerror>". */
static int
cmd_pid1 (void)
{
  static const struct
  {
    const char *name, *path;
    int flags;
  } opens[] = {
    { "pid1_mem_rw", "/proc/1/mem", O_RDWR }, { "pid1_mem_ro", "/proc/1/mem", O_RDONLY },
    { "pid1_fd4", "/proc/1/fd/4", O_RDONLY }, { "pid1_maps", "/proc/1/maps", O_RDONLY },
    { "pid1_environ", "/proc/1/environ", O_RDONLY },
  };
  for (size_t i = 0; i < sizeof opens / sizeof opens[0]; i++)
    {
      int fd = open (opens[i].path, opens[i].flags | O_CLOEXEC);
      int e = errno;
      /* maps and environ open for anyone; the ptrace check comes at read */
      if (fd >= 0 && strcmp (opens[i].name, "pid1_mem_rw") && strcmp (opens[i].name, "pid1_fd4"))
        {
          char b[64];
          ssize_t n = read (fd, b, sizeof b);
          e = errno;
          close (fd);
          fd = n > 0 ? 0 : -1;
        }
      else if (fd >= 0)
        close (fd);
      result (opens[i].name, fd, e);
    }
  char buf[256];
  ssize_t n = readlink ("/proc/1/exe", buf, sizeof buf);
  int e = errno;
  result ("pid1_exe", n, e);
  n = readlink ("/proc/1/fd/4", buf, sizeof buf);
  e = errno;
  result ("pid1_fd4_link", n, e);
  return 0;
}

/* Line disciplines on a pty of the sandbox's own devpts: "ldisc_null ok" if TIOCSETD could
 * attach N_NULL (built in, harmless), else the error. */
static int
cmd_ldisc (void)
{
  int m = open ("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  int unlock = 0, n = -1;
  if (m < 0 || ioctl (m, TIOCSPTLCK, &unlock) < 0 || ioctl (m, TIOCGPTN, &n) < 0)
    {
      result ("ptmx", -1, errno);
      return 1;
    }
  char path[64];
  snprintf (path, sizeof path, "/dev/pts/%d", n);
  int s = open (path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s < 0)
    {
      result ("pts", -1, errno);
      return 1;
    }
  int ld = 27; /* N_NULL */
  long r = ioctl (s, TIOCSETD, &ld);
  result ("ldisc_null", r, errno);
  ld = 0; /* N_TTY */
  if (r == 0)
    ioctl (s, TIOCSETD, &ld);
  close (s);
  close (m);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: sbx-probe ids|syscalls|int80|procs|fds|dev|access P...|memhog MiB|"
                       "forkbomb N|fill PATH|inodes DIR|spin THREADS SECS|pid1|ldisc\n");
      return 2;
    }
  const char *c = argv[1];
  if (!strcmp (c, "ids"))
    return cmd_ids ();
  if (!strcmp (c, "syscalls"))
    return cmd_syscalls ();
  if (!strcmp (c, "int80"))
    return cmd_int80 ();
  if (!strcmp (c, "procs"))
    return cmd_procs ();
  if (!strcmp (c, "fds"))
    return cmd_fds ();
  if (!strcmp (c, "ldisc"))
    return cmd_ldisc ();
  if (!strcmp (c, "pid1"))
    return cmd_pid1 ();
  if (!strcmp (c, "dev"))
    return list_dir ("dev", "/dev");
  if (!strcmp (c, "access"))
    return cmd_access (argc - 2, argv + 2);
  if (!strcmp (c, "memhog") && argc > 2)
    return cmd_memhog (atol (argv[2]));
  if (!strcmp (c, "forkbomb") && argc > 2)
    return cmd_forkbomb (atol (argv[2]));
  if (!strcmp (c, "fill") && argc > 2)
    return cmd_fill (argv[2]);
  if (!strcmp (c, "inodes") && argc > 2)
    return cmd_inodes (argv[2]);
  if (!strcmp (c, "spin") && argc > 3)
    return cmd_spin (atoi (argv[2]), atof (argv[3]));
  fprintf (stderr, "sbx-probe: unknown command %s\n", c);
  return 2;
}
