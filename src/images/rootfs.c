/* Preparing a freshly built rootfs to be a shared read-only lower layer, and measuring it.
 * Every path is resolved relative to a directory fd of the rootfs with
 * O_NOFOLLOW, so a symlink in the tree never sends a write to the host. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mount points and homes the runtime expects in every image. */
static const struct {
  const char *path;
  mode_t mode;
} dirs[] = {
  { "proc", 0555 }, { "sys", 0555 }, { "dev", 0755 }, { "tmp", 01777 },
  { "root", 0700 }, { "run", 0755 }, { "etc", 0755 },
};

static const char hostname_text[] = "sandbox\n";
static const char hosts_text[] = "127.0.0.1\tlocalhost\n"
                                 "127.0.1.1\tsandbox\n"
                                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                 "ff02::1\tip6-allnodes\n"
                                 "ff02::2\tip6-allrouters\n";

static int
ensure_dir (int root, const char *path, mode_t mode, struct sbx_err *err)
{
  struct stat st;
  if (fstatat (root, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
    {
      if (!S_ISDIR (st.st_mode))
        return sbx_err_set (err, SBX_E_INTERNAL, ENOTDIR, "rootfs: '/%s' is not a directory",
                            path);
    }
  else if (errno != ENOENT || mkdirat (root, path, mode) < 0)
    return sbx_err_sys (err, "rootfs: mkdir '/%s'", path);
  /* mkdir is subject to the umask; the sticky /tmp in particular must be exact */
  if (fchmodat (root, path, mode, 0) < 0)
    return sbx_err_sys (err, "rootfs: chmod '/%s'", path);
  return 0;
}

static int
replace_file (int root, const char *path, const char *text, struct sbx_err *err)
{
  if (unlinkat (root, path, 0) < 0 && errno != ENOENT)
    return sbx_err_sys (err, "rootfs: unlink '/%s'", path);
  cleanup_close int fd
      = openat (root, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return sbx_err_sys (err, "rootfs: create '/%s'", path);
  if (sbx_write_all (fd, text, strlen (text)) < 0)
    return sbx_err_sys (err, "rootfs: write '/%s'", path);
  if (fchmod (fd, 0644) < 0)
    return sbx_err_sys (err, "rootfs: chmod '/%s'", path);
  return 0;
}

/* Remove the regular files (or, with devices set, the device nodes) in dir whose names end with suffix (any, if suffix is ""),
 * except keep. A missing dir is fine. */
static int
remove_entries (int root, const char *dir, const char *suffix, const char *keep, int devices,
                struct sbx_err *err)
{
  DIR *d = sbx_opendirat (root, dir);
  if (!d)
    return errno == ENOENT ? 0 : sbx_err_sys (err, "rootfs: open '/%s'", dir);
  int fd = dirfd (d);
  int r = 0;
  size_t sl = strlen (suffix);
  struct dirent *de;
  while ((de = readdir (d)))
    {
      size_t nl = strlen (de->d_name);
      struct stat st;
      if (nl < sl || strcmp (de->d_name + nl - sl, suffix) != 0)
        continue;
      if (keep && strcmp (de->d_name, keep) == 0)
        continue;
      if (fstatat (fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        continue;
      if (devices ? !(S_ISCHR (st.st_mode) || S_ISBLK (st.st_mode)) : !S_ISREG (st.st_mode))
        continue;
      if (unlinkat (fd, de->d_name, 0) < 0)
        {
          r = sbx_err_sys (err, "rootfs: unlink '/%s/%s'", dir, de->d_name);
          break;
        }
    }
  closedir (d);
  return r;
}

int
img_finalize_rootfs (const char *rootfs, struct sbx_err *err)
{
  cleanup_close int root = open (rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root < 0)
    return sbx_err_sys (err, "open rootfs '%s'", rootfs);
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    if (ensure_dir (root, dirs[i].path, dirs[i].mode, err) < 0)
      return -1;
  if (replace_file (root, "etc/hostname", hostname_text, err) < 0
      || replace_file (root, "etc/hosts", hosts_text, err) < 0)
    return -1;
  /* apt's package caches and indexes: ~60 MB that `apt-get update` recreates on demand */
  if (remove_entries (root, "var/cache/apt", ".bin", NULL, 0, err) < 0
      || remove_entries (root, "var/cache/apt/archives", ".deb", NULL, 0, err) < 0
      || remove_entries (root, "var/lib/apt/lists", "", "lock", 0, err) < 0)
    return -1;
  /* mmdebstrap's device nodes: every sandbox gets its own /dev (a tmpfs), and a shared
   * read-only layer has no business carrying devices */
  if (remove_entries (root, "dev", "", NULL, 1, err) < 0)
    return -1;
  /* PEP 668 marker: without it `pip install x` works as in any python container image
   * (the sandbox is the isolation, there is no system to protect from pip) */
  if (remove_entries (root, "usr/lib/python3.11", "EXTERNALLY-MANAGED", NULL, 0, err) < 0)
    return -1;
  return 0;
}

static int
du_at (int parent, const char *name, dev_t dev, int depth, uint64_t *bytes)
{
  struct stat st;
  if (fstatat (parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -1;
  *bytes += (uint64_t) st.st_blocks * 512;
  if (!S_ISDIR (st.st_mode) || st.st_dev != dev || depth > 256)
    return 0;
  DIR *d = sbx_opendirat (parent, name);
  if (!d)
    return -1;
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir (d)))
    if (strcmp (de->d_name, ".") != 0 && strcmp (de->d_name, "..") != 0)
      r = du_at (dirfd (d), de->d_name, dev, depth + 1, bytes);
  closedir (d);
  return r;
}

int
img_du (const char *path, uint64_t *bytes)
{
  struct stat st;
  *bytes = 0;
  if (lstat (path, &st) < 0)
    return -1;
  return du_at (AT_FDCWD, path, st.st_dev, 0, bytes);
}
