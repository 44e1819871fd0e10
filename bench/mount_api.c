/* bench/mount_api.c (`make bench-mount`): does the new mount API make a sandbox's own
 * filesystems faster than mount(2)? The child of a spawn makes a scratch tmpfs and an
 * overlay on it in a fresh user and mount namespace; this does the same, N times each
 * way, and prints the medians of the calls alone:
 *   mount(2):  one call;
 *   new API:   fsopen, fsconfig per option, FSCONFIG_CMD_CREATE, fsmount, move_mount.
 * Usage: build/bench-mount-api N LOWERDIR (LOWERDIR: an image rootfs). Run as root; it
 * works in a directory of its own under /tmp and removes it. Times are printed, never
 * asserted. */
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 10000

static char dir[64], upper[96], work[96], merged[96];

static double
now_us (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int
by_value (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, (size_t) n, sizeof *v, by_value);
  return v[n / 2];
}

static void
write_file (const char *path, const char *s)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write (fd, s, strlen (s)) != (ssize_t) strlen (s))
    {
      perror (path);
      exit (1);
    }
  close (fd);
}

/* Root of a user namespace of our own, in a private mount namespace, as the child is. */
static void
enter_namespaces (void)
{
  char map[64];
  uid_t uid = getuid ();
  gid_t gid = getgid ();
  if (unshare (CLONE_NEWUSER | CLONE_NEWNS) < 0)
    {
      perror ("unshare");
      exit (1);
    }
  snprintf (map, sizeof map, "0 %u 1", (unsigned) uid);
  write_file ("/proc/self/uid_map", map);
  write_file ("/proc/self/setgroups", "deny");
  snprintf (map, sizeof map, "0 %u 1", (unsigned) gid);
  write_file ("/proc/self/gid_map", map);
  if (mount ("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    {
      perror ("make / private");
      exit (1);
    }
}

static void
check (long rc, const char *what)
{
  if (rc < 0)
    {
      perror (what);
      exit (1);
    }
}

static void
make_layer_dirs (void)
{
  check (mkdir (upper, 0755), "mkdir upper");
  check (mkdir (work, 0755), "mkdir work");
  check (mkdir (merged, 0755), "mkdir merged");
}

static void
unmount_all (void)
{
  umount2 (merged, MNT_DETACH);
  umount2 (dir, MNT_DETACH);
}

/* fsopen .. move_mount; the options as key=value strings, a flag without '='. */
static void
new_api_mount (const char *type, const char *const *opts, const char *target)
{
  int fs = (int) syscall (SYS_fsopen, type, FSOPEN_CLOEXEC);
  check (fs, "fsopen");
  for (const char *const *o = opts; *o; o++)
    {
      char key[64];
      const char *eq = strchr (*o, '=');
      snprintf (key, sizeof key, "%.*s", eq ? (int) (eq - *o) : (int) strlen (*o), *o);
      check (syscall (SYS_fsconfig, fs, eq ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key,
                      eq ? eq + 1 : NULL, 0),
             "fsconfig");
    }
  check (syscall (SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0), "fsconfig create");
  int mnt = (int) syscall (SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  check (mnt, "fsmount");
  check (syscall (SYS_move_mount, mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH),
         "move_mount");
  close (mnt);
  close (fs);
}

int
main (int argc, char **argv)
{
  int n = argc == 3 ? atoi (argv[1]) : 0;
  if (n < 1 || n > MAX_RUNS)
    {
      fprintf (stderr, "usage: %s N(1..%d) LOWERDIR\n", argv[0], MAX_RUNS);
      return 2;
    }
  const char *lower = argv[2];
  snprintf (dir, sizeof dir, "/tmp/sbx-bench-mount-XXXXXX");
  if (!mkdtemp (dir))
    {
      perror ("mkdtemp");
      return 1;
    }
  snprintf (upper, sizeof upper, "%s/u", dir);
  snprintf (work, sizeof work, "%s/w", dir);
  snprintf (merged, sizeof merged, "%s/m", dir);
  pid_t pid = fork ();
  check (pid, "fork");
  if (pid > 0)
    {
      int st = 0;
      waitpid (pid, &st, 0);
      rmdir (dir);
      return WIFEXITED (st) ? WEXITSTATUS (st) : 1;
    }
  enter_namespaces ();
  static double tmpfs_old[MAX_RUNS], tmpfs_new[MAX_RUNS], ovl_old[MAX_RUNS], ovl_new[MAX_RUNS];
  char ovl_opts[PATH_MAX + 300];
  snprintf (ovl_opts, sizeof ovl_opts, "lowerdir=%s,upperdir=%s,workdir=%s,userxattr", lower,
            upper, work);
  char lowerdir[PATH_MAX + 16], upperdir[128], workdir[128];
  snprintf (lowerdir, sizeof lowerdir, "lowerdir=%s", lower);
  snprintf (upperdir, sizeof upperdir, "upperdir=%s", upper);
  snprintf (workdir, sizeof workdir, "workdir=%s", work);
  const char *const tmpfs_new_opts[] = { "size=64m", "nr_inodes=1000", "mode=0755", NULL };
  const char *const ovl_new_opts[] = { lowerdir, upperdir, workdir, "userxattr", NULL };
  for (int i = 0; i < n; i++)
    {
      double t = now_us ();
      check (mount ("scratch", dir, "tmpfs", MS_NOSUID | MS_NODEV,
                    "size=64m,nr_inodes=1000,mode=0755"),
             "mount tmpfs");
      tmpfs_old[i] = now_us () - t;
      make_layer_dirs ();
      t = now_us ();
      check (mount ("overlay", merged, "overlay", MS_NOSUID | MS_NODEV, ovl_opts), "mount overlay");
      ovl_old[i] = now_us () - t;
      unmount_all ();

      t = now_us ();
      new_api_mount ("tmpfs", tmpfs_new_opts, dir);
      tmpfs_new[i] = now_us () - t;
      make_layer_dirs ();
      t = now_us ();
      new_api_mount ("overlay", ovl_new_opts, merged);
      ovl_new[i] = now_us () - t;
      unmount_all ();
    }
  printf ("mount(2) against the new mount API, %d runs each, medians in us\n", n);
  printf ("scratch tmpfs   mount(2) %7.1f   fsopen..move_mount %7.1f\n", median (tmpfs_old, n),
          median (tmpfs_new, n));
  printf ("overlay         mount(2) %7.1f   fsopen..move_mount %7.1f\n", median (ovl_old, n),
          median (ovl_new, n));
  return 0;
}
