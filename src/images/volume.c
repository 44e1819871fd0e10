/* Volumes: named, size-bounded, persistent filesystems that sandboxes mount.
 *
 * Each volume is a file <state_dir>/volumes/<name>.img (its whole size reserved on the
 * host's disk by fallocate) holding an ext4 filesystem
 * made by mkfs.ext4 (root directory owned by 0:0, no reserved blocks), attached to a free
 * loop device (LOOP_CONFIGURE with autoclear, so the device goes away with the last
 * mount) and mounted nosuid,nodev on <state_dir>/volumes/<name> in sbxd's mount
 * namespace. The filesystem's size is the quota: a sandbox that fills it gets ENOSPC and
 * nothing else on the host notices. The volumes directory is 0700 root, so no host user
 * reaches into a volume; sandboxes get an idmapped bind of its root (runtime), so their
 * root owns what it writes and sees nothing outside the volume's filesystem. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MKFS "/usr/sbin/mkfs.ext4"

int
img_volume_name_ok (const char *name)
{
  size_t n = name ? strlen (name) : 0;
  if (n == 0 || n > 63)
    return 0;
  if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
    return 0;
  for (size_t i = 1; i < n; i++)
    {
      char c = name[i];
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'
            || c == '-'))
        return 0;
    }
  return 1;
}

static int
paths (const char *state_dir, const char *name, char dir[PATH_MAX], char img[PATH_MAX],
       struct sbx_err *err)
{
  if (!img_volume_name_ok (name))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "invalid volume name");
  char base[PATH_MAX];
  if (snprintf (base, sizeof base, "%s/volumes", state_dir) >= (int) sizeof base - 80)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "state dir path too long");
  if (mkdir (base, 0700) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "mkdir '%s'", base);
  snprintf (dir, PATH_MAX, "%s/%s", base, name);
  snprintf (img, PATH_MAX, "%s/%s.img", base, name);
  return 0;
}

static int
run_mkfs (const char *img, struct sbx_err *err)
{
  static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
  char *const argv[] = { "mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                         "root_owner=0:0,lazy_itable_init=0,nodiscard", (char *) img, NULL };
  int st;
  if (sbx_run_program (MKFS, argv, envp, -1, &st, err) < 0)
    return -1;
  if (!WIFEXITED (st) || WEXITSTATUS (st) != 0)
    return sbx_err_set (err, SBX_E_INTERNAL, 0, MKFS " failed (status %d)", st);
  return 0;
}

int
img_volume_create (const char *state_dir, const char *name, uint64_t size_mb,
                   struct sbx_err *err)
{
  char dir[PATH_MAX], img[PATH_MAX];
  if (paths (state_dir, name, dir, img, err) < 0)
    return -1;
  if (size_mb < IMG_VOLUME_MB_MIN || size_mb > IMG_VOLUME_MB_MAX)
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "size_mb: must be between %d and %d",
                        IMG_VOLUME_MB_MIN, IMG_VOLUME_MB_MAX);
  cleanup_close int fd = open (img, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return sbx_err_sys (err, "create '%s'", img);
  /* The whole size is reserved on the host's disk now (unwritten extents: no data is
   * written). A sparse file let the volumes promise more than the disk has: a sandbox
   * filling its volume, within its size, filled the host's disk (the state directory,
   * sbxd's database, every layer). The free space is checked first, so a volume that
   * cannot fit never takes the disk's last blocks while fallocate finds out. */
  struct statvfs sv;
  off_t bytes = (off_t) (size_mb << 20);
  if (fstatvfs (fd, &sv) == 0 && (uint64_t) sv.f_bavail * sv.f_frsize < (uint64_t) bytes)
    {
      unlink (img);
      return sbx_err_set (err, SBX_E_INVALID, ENOSPC,
                          "size_mb: the host has %llu MiB free for volumes",
                          (unsigned long long) ((uint64_t) sv.f_bavail * sv.f_frsize >> 20));
    }
  int r = fallocate (fd, 0, 0, bytes);
  if (r < 0 && errno == EOPNOTSUPP)
    {
      LOG_WARN ("volume '%s': the state directory's filesystem cannot reserve space; the "
                "volume is a sparse file", name);
      r = ftruncate (fd, bytes);
    }
  if (r < 0)
    {
      sbx_err_sys (err, "size '%s'", img);
      unlink (img);
      return -1;
    }
  sbx_closep (&fd);
  char out[PATH_MAX];
  if (run_mkfs (img, err) < 0 || img_volume_mount (state_dir, name, out, err) < 0)
    {
      unlink (img);
      rmdir (dir);
      return sbx_err_wrap (err, "create volume '%s'", name);
    }
  return 0;
}

static int
is_mounted (const char *dir)
{
  struct stat a, b;
  char parent[PATH_MAX];
  snprintf (parent, sizeof parent, "%s/..", dir);
  if (lstat (dir, &a) < 0 || lstat (parent, &b) < 0)
    return 0;
  return S_ISDIR (a.st_mode) && a.st_dev != b.st_dev;
}

/* Unmount the volume's directory (every mount stacked there) and remove it. */
static int
unmount_dir (const char *dir, struct sbx_err *err)
{
  while (is_mounted (dir))
    if (umount2 (dir, MNT_DETACH) < 0)
      return sbx_err_sys (err, "unmount '%s'", dir);
  if (rmdir (dir) < 0 && errno != ENOENT)
    return sbx_err_sys (err, "rmdir '%s'", dir);
  return 0;
}

/* The loop device img is attached to already, if any: a sandbox that outlived sbxd's
 * own mount (restart, lazy unmount) still holds the filesystem through it. Mounting that
 * device again gives the same filesystem; attaching a second device to the same file
 * would mount the image twice, each side blind to the other's cached writes. */
static int
loop_find (const char *img, char dev[64])
{
  struct stat want;
  if (stat (img, &want) < 0)
    return -1;
  DIR *d = opendir ("/sys/block");
  if (!d)
    return -1;
  struct dirent *de;
  int fd = -1;
  while (fd < 0 && (de = readdir (d)))
    {
      if (strncmp (de->d_name, "loop", 4) != 0)
        continue;
      snprintf (dev, 64, "/dev/%s", de->d_name);
      int lfd = open (dev, O_RDONLY | O_CLOEXEC);
      if (lfd < 0)
        continue;
      struct loop_info64 li;
      if (ioctl (lfd, LOOP_GET_STATUS64, &li) == 0 && li.lo_inode == want.st_ino
          && li.lo_device == want.st_dev)
        fd = lfd;
      else
        close (lfd);
    }
  closedir (d);
  return fd;
}

/* Attach img to a free loop device; returns its fd (the device stays while mounted). */
static int
loop_attach (const char *img, char dev[64], struct sbx_err *err)
{
  int found = loop_find (img, dev);
  if (found >= 0)
    return found;
  cleanup_close int ctl = open ("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0)
    return sbx_err_sys (err, "open /dev/loop-control");
  cleanup_close int file = open (img, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (file < 0)
    return sbx_err_sys (err, "open '%s'", img);
  for (int attempt = 0; attempt < 16; attempt++)
    {
      int n = ioctl (ctl, LOOP_CTL_GET_FREE);
      if (n < 0)
        return sbx_err_sys (err, "LOOP_CTL_GET_FREE");
      snprintf (dev, 64, "/dev/loop%d", n);
      int lfd = open (dev, O_RDWR | O_CLOEXEC);
      if (lfd < 0)
        return sbx_err_sys (err, "open '%s'", dev);
      struct loop_config cfg;
      memset (&cfg, 0, sizeof cfg);
      cfg.fd = (uint32_t) file;
      cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
      snprintf ((char *) cfg.info.lo_file_name, sizeof cfg.info.lo_file_name, "%s", img);
      if (ioctl (lfd, LOOP_CONFIGURE, &cfg) == 0)
        return lfd;
      int e = errno;
      close (lfd);
      if (e != EBUSY)
        return sbx_err_set (err, SBX_E_INTERNAL, e, "LOOP_CONFIGURE %s: %s", dev, strerror (e));
      /* someone else took that device meanwhile: ask again */
    }
  return sbx_err_set (err, SBX_E_INTERNAL, EBUSY, "no free loop device");
}

int
img_volume_mount (const char *state_dir, const char *name, char dir[PATH_MAX],
                  struct sbx_err *err)
{
  char img[PATH_MAX];
  if (paths (state_dir, name, dir, img, err) < 0)
    return -1;
  if (is_mounted (dir))
    return 0;
  struct stat st;
  if (lstat (img, &st) < 0 || !S_ISREG (st.st_mode))
    return sbx_err_set (err, SBX_E_NOT_FOUND, ENOENT, "volume '%s' has no filesystem image",
                        name);
  if (mkdir (dir, 0700) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "mkdir '%s'", dir);
  char dev[64];
  cleanup_close int lfd = loop_attach (img, dev, err);
  if (lfd < 0)
    return -1;
  if (mount (dev, dir, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, "errors=remount-ro") < 0)
    {
      int e = errno; /* autoclear detaches a fresh device when lfd closes */
      return sbx_err_set (err, SBX_E_INTERNAL, e, "mount volume '%s': %s", name, strerror (e));
    }
  /* The host side of the mount stays private to sbxd's namespace and never propagates. */
  mount (NULL, dir, NULL, MS_PRIVATE, NULL);
  return 0;
}

int
img_volume_delete (const char *state_dir, const char *name, struct sbx_err *err)
{
  char dir[PATH_MAX], img[PATH_MAX];
  if (paths (state_dir, name, dir, img, err) < 0 || unmount_dir (dir, err) < 0)
    return -1;
  if (unlink (img) < 0 && errno != ENOENT)
    return sbx_err_sys (err, "remove '%s'", img);
  return 0;
}

int
img_volume_set_aside (const char *state_dir, const char *name, char out[PATH_MAX],
                      struct sbx_err *err)
{
  char dir[PATH_MAX], img[PATH_MAX], aside[PATH_MAX];
  out[0] = '\0';
  if (paths (state_dir, name, dir, img, err) < 0 || unmount_dir (dir, err) < 0)
    return -1;
  /* ".unrecorded" is no volume name (those start with a letter or digit). */
  snprintf (aside, sizeof aside, "%s/volumes/.unrecorded", state_dir);
  if (mkdir (aside, 0700) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "mkdir '%s'", aside);
  /* Never over an earlier one: the same name set aside twice in one second gets -1, -2.. */
  long long now = (long long) time (NULL);
  int e = EEXIST;
  for (int n = 0; n < 100 && e == EEXIST; n++)
    {
      if (n)
        snprintf (out, PATH_MAX, "%s/%s-%lld-%d.img", aside, name, now, n);
      else
        snprintf (out, PATH_MAX, "%s/%s-%lld.img", aside, name, now);
      e = renameat2 (AT_FDCWD, img, AT_FDCWD, out, RENAME_NOREPLACE) == 0 ? 0 : errno;
    }
  if (e == 0)
    return 0;
  out[0] = '\0';
  if (e == ENOENT)
    return 0;
  errno = e;
  return sbx_err_sys (err, "move '%s' aside", img);
}

int
img_volume_usage (const char *state_dir, const char *name, uint64_t *used, uint64_t *total,
                  struct sbx_err *err)
{
  char dir[PATH_MAX];
  if (img_volume_mount (state_dir, name, dir, err) < 0)
    return -1;
  struct statfs sf;
  if (statfs (dir, &sf) < 0)
    return sbx_err_sys (err, "statfs '%s'", dir);
  *total = (uint64_t) sf.f_blocks * (uint64_t) sf.f_bsize;
  *used = (uint64_t) (sf.f_blocks - sf.f_bfree) * (uint64_t) sf.f_bsize;
  return 0;
}
