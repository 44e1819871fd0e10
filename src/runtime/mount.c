/* The sandbox's filesystem, built by the pre-exec child (same rules as child.c: syscalls
 * only). The child's cwd is the scratch tmpfs on <run_dir>/root, visible only in the
 * sandbox's mount namespace:
 *
 *   lower/<i>  the image's layers (top first), idmapped read-only clones made by the
 *           parent (host root files show as root inside); see layers.c
 *   upper/ work/  the overlay's writable layer
 *   tmp/ shm/     bound to /tmp and /dev/shm
 *   dev/    bound read-only to /dev
 *   mask/   empty, bound read-only over the masked /proc and /sys directories
 *   new/    the overlay: becomes / at pivot_root
 *
 * Every filesystem a sandbox mounts is a superblock, and each superblock registers a
 * memory-cgroup-aware shrinker: the kernel sizes every memory cgroup's shrinker table by
 * the highest shrinker id of the host, so superblocks cost memory in all cgroups, growing
 * with the number of sandboxes (5,000 sandboxes with 12 superblocks each made every new
 * memory cgroup allocate ~1 MiB). Hence /dev and the masks are directories of the
 * scratch tmpfs, bound, not tmpfs mounts of their own: 5 superblocks per sandbox
 * (scratch, overlay, proc, sysfs, devpts).
 *
 * All paths are string constants relative to the scratch dir: nothing here resolves a
 * path inside the image before pivot_root except under new/, where the image's own
 * symlinks could point anywhere, so each mount target under new/ is created or checked
 * with O_NOFOLLOW semantics (mkdir fails on a symlink; bind targets are opened with
 * O_NOFOLLOW). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL(stage, msg) rt_child_fail (c, (stage), errno, (msg))

/* mkdir that accepts an existing directory but never a symlink or other file: a symlink
 * planted in the image at /proc or /tmp must not redirect a mount onto the host. */
static int
ensure_dir (const char *path, mode_t mode)
{
  if (mkdir (path, mode) == 0)
    return 0;
  if (errno != EEXIST)
    return -1;
  struct stat st;
  if (lstat (path, &st) < 0)
    return -1;
  if (!S_ISDIR (st.st_mode))
    {
      errno = ENOTDIR;
      return -1;
    }
  return 0;
}

/* An empty regular file to bind a device node or /dev/null onto. */
static int
ensure_file (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  close (fd);
  return 0;
}

static int
bind (const char *src, const char *dst, unsigned long extra)
{
  if (mount (src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
    return -1;
  if (extra && mount (NULL, dst, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0)
    return -1;
  return 0;
}

void
rt_mount_layers (const struct rt_child *c, const int *lower_fds)
{
  static const char *const dirs[] = { "upper", "work", "tmp", "shm", "new", "dev", "mask" };
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    if (mkdir (dirs[i], 0755) < 0)
      FAIL (RT_STAGE_LAYERS, "mkdir in scratch");
  if (chmod ("tmp", 01777) < 0 || chmod ("shm", 01777) < 0 || chmod ("mask", 0555) < 0)
    FAIL (RT_STAGE_LAYERS, "chmod tmp/shm/mask");
  rt_child_attach_lowers (c, lower_fds); /* lower/0 .. lower/<n-1> */
}

/* userxattr: in a user namespace overlayfs cannot use trusted.* xattrs for its
 * bookkeeping (whiteouts, opaque dirs) and must be told to use user.* ones. */
void
rt_mount_overlay (const struct rt_child *c)
{
  if (mount ("overlay", "new", "overlay", MS_NOSUID | MS_NODEV, c->overlay_opts) < 0)
    FAIL (RT_STAGE_OVERLAY, "mount overlay");
}

void
rt_mount_proc (const struct rt_child *c)
{
  if (ensure_dir ("new/proc", 0555) < 0)
    FAIL (RT_STAGE_PROC, "mkdir /proc");
  if (mount ("proc", "new/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    FAIL (RT_STAGE_PROC, "mount /proc");
}

/* A tiny /dev: the host's harmless character devices bound in (a user namespace cannot
 * mknod), a private devpts instance, /dev/shm on the scratch space, the usual symlinks.
 * Built in the scratch's dev/, bound to /dev, read-only at the end so nothing can be
 * added to it. */
void
rt_mount_dev (const struct rt_child *c)
{
  static const char *const files[] = { "dev/null", "dev/zero", "dev/full",
                                       "dev/random", "dev/urandom", "dev/tty" };
  static const char *const nodes[][2] = {
    { "/dev/null", "new/dev/null" },       { "/dev/zero", "new/dev/zero" },
    { "/dev/full", "new/dev/full" },       { "/dev/random", "new/dev/random" },
    { "/dev/urandom", "new/dev/urandom" }, { "/dev/tty", "new/dev/tty" },
  };
  static const char *const links[][2] = {
    { "pts/ptmx", "dev/ptmx" },          { "/proc/self/fd", "dev/fd" },
    { "/proc/self/fd/0", "dev/stdin" },  { "/proc/self/fd/1", "dev/stdout" },
    { "/proc/self/fd/2", "dev/stderr" },
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    if (ensure_file (files[i]) < 0)
      FAIL (RT_STAGE_DEV, "create a /dev node");
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlink (links[i][0], links[i][1]) < 0)
      FAIL (RT_STAGE_DEV, "symlink in /dev");
  if (mkdir ("dev/pts", 0755) < 0 || mkdir ("dev/shm", 01777) < 0 || chmod ("dev/shm", 01777) < 0)
    FAIL (RT_STAGE_DEV, "mkdir in /dev");
  if (ensure_dir ("new/dev", 0755) < 0 || bind ("dev", "new/dev", 0) < 0)
    FAIL (RT_STAGE_DEV, "bind /dev");
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
    if (bind (nodes[i][0], nodes[i][1], 0) < 0)
      FAIL (RT_STAGE_DEV, "bind a /dev node");
  /* max=64: ptys are counted host-wide (kernel.pty.max, 4096 by default, of which
   * kernel.pty.reserve, 1024, only the host's own devpts may use), not per user or
   * cgroup: without a bound of its own, one sandbox took all 3,072 others and every
   * other sandbox's openpty (and pty execs) failed with ENOSPC. */
  if (mount ("devpts", "new/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,max=64")
      < 0)
    FAIL (RT_STAGE_DEV, "mount devpts");
  if (bind ("shm", "new/dev/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC) < 0)
    FAIL (RT_STAGE_DEV, "bind /dev/shm");
  if (mount (NULL, "new/dev", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
             NULL)
      < 0)
    FAIL (RT_STAGE_DEV, "remount /dev read-only");
}

void
rt_mount_tmp (const struct rt_child *c)
{
  if (ensure_dir ("new/tmp", 01777) < 0)
    FAIL (RT_STAGE_TMP, "mkdir /tmp");
  if (bind ("tmp", "new/tmp", MS_NOSUID | MS_NODEV) < 0)
    FAIL (RT_STAGE_TMP, "bind /tmp");
}

/* sysfs of our own network namespace, read-only. */
void
rt_mount_sys (const struct rt_child *c)
{
  if (ensure_dir ("new/sys", 0555) < 0)
    FAIL (RT_STAGE_SYS, "mkdir /sys");
  if (mount ("sysfs", "new/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)
      < 0)
    FAIL (RT_STAGE_SYS, "mount /sys");
}

/* Docker's masked and read-only paths, plus kallsyms and a few more. A file is covered by
 * the sandbox's /dev/null, a directory by the scratch's empty mask/ made read-only first
 * (a bind copies the flags of the mount it clones); a path this kernel
 * does not have is skipped. The kind of each path is what the kernel normally has, so
 * the mount is tried without a stat first (a stat per path cost ~0.1 ms in all); if the
 * kind differs (ENOTDIR either way), the path is stat'ed and masked by what it is. */
static int
mask_dir (const char *path)
{
  return mount ("mask", path, NULL, MS_BIND, NULL);
}

static int
mask_file (const char *path)
{
  return bind ("new/dev/null", path, 0);
}

void
rt_mount_masks (const struct rt_child *c)
{
  static const struct {
    const char *path;
    int dir;
  } masked[] = {
    { "new/proc/acpi", 1 },          { "new/proc/asound", 1 },
    { "new/proc/interrupts", 0 },    { "new/proc/kcore", 0 },
    { "new/proc/keys", 0 },          { "new/proc/key-users", 0 },
    { "new/proc/latency_stats", 0 }, { "new/proc/timer_list", 0 },
    { "new/proc/timer_stats", 0 },   { "new/proc/sched_debug", 0 },
    { "new/proc/scsi", 1 },          { "new/proc/sysrq-trigger", 0 },
    { "new/proc/kallsyms", 0 },      { "new/proc/kpagecount", 0 },
    { "new/proc/kpageflags", 0 },    { "new/proc/kpagecgroup", 0 },
    { "new/proc/config.gz", 0 },     { "new/proc/vmallocinfo", 0 },
    { "new/proc/pagetypeinfo", 0 },  { "new/proc/slabinfo", 0 },
    { "new/proc/modules", 0 },       { "new/proc/driver", 1 },
    { "new/proc/tty/driver", 1 },    { "new/sys/firmware", 1 },
    { "new/sys/kernel/debug", 1 },   { "new/sys/kernel/security", 1 },
    { "new/sys/devices/virtual/powercap", 1 },
    /* loop devices' backing_file: the host paths of every volume image (any sandbox's) */
    { "new/sys/devices/virtual/block", 1 },
  };
  static const char *const readonly[] = {
    "new/proc/bus", "new/proc/fs", "new/proc/irq", "new/proc/sys",
  };
  struct stat st;
  if (bind ("mask", "mask", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) < 0)
    FAIL (RT_STAGE_MASK, "make mask/ read-only");
  for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++)
    {
      const char *p = masked[i].path;
      if ((masked[i].dir ? mask_dir (p) : mask_file (p)) == 0)
        continue;
      if (errno == ENOENT)
        continue;
      if (errno != ENOTDIR)
        FAIL (RT_STAGE_MASK, "mask a /proc or /sys path");
      if (lstat (p, &st) < 0)
        FAIL (RT_STAGE_MASK, "stat a masked path");
      if ((S_ISDIR (st.st_mode) ? mask_dir (p) : mask_file (p)) < 0)
        FAIL (RT_STAGE_MASK, "mask a /proc or /sys path");
    }
  for (size_t i = 0; i < sizeof readonly / sizeof readonly[0]; i++)
    {
      if (mount (readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0)
        {
          if (errno == ENOENT)
            continue;
          FAIL (RT_STAGE_MASK, "bind a read-only /proc path");
        }
      if (mount (NULL, readonly[i], NULL,
                 MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)
          < 0)
        FAIL (RT_STAGE_MASK, "make a /proc path read-only");
    }
}

/* pivot_root(".", ".") stacks the old root on top of the new one; detaching it drops
 * every host mount from this namespace without needing a directory for it. */
void
rt_mount_pivot (const struct rt_child *c)
{
  if (chdir ("new") < 0)
    FAIL (RT_STAGE_PIVOT_ROOT, "chdir new root");
  if (syscall (SYS_pivot_root, ".", ".") < 0)
    FAIL (RT_STAGE_PIVOT_ROOT, "pivot_root");
  if (umount2 (".", MNT_DETACH) < 0)
    FAIL (RT_STAGE_PIVOT_ROOT, "detach old root");
  if (chdir ("/") < 0)
    FAIL (RT_STAGE_PIVOT_ROOT, "chdir /");
}
