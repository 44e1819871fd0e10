/* The image cache: <state_dir>/images/<dir>/{rootfs,image.info}. A cached image is used
 * without any lock (it only ever appears by an atomic rename); a missing one is built
 * under an exclusive flock on <state_dir>/images/.lock, so concurrent callers wait for
 * one build and then find the image. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int
img_images_dir (const char *state_dir, char out[PATH_MAX], struct sbx_err *err)
{
  if (!state_dir || !*state_dir)
    return sbx_err_set (err, SBX_E_INVALID, 0, "no state directory");
  /* room for "/<dir>/rootfs" and the build directory names below it */
  if (strlen (state_dir) + 200 >= PATH_MAX)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "state directory path too long");
  snprintf (out, PATH_MAX, "%s/images", state_dir);
  return 0;
}

int
img_is_complete (const char *images_dir, const char *dir)
{
  char path[PATH_MAX];
  struct stat st;
  snprintf (path, sizeof path, "%s/%s/rootfs", images_dir, dir);
  if (lstat (path, &st) < 0 || !S_ISDIR (st.st_mode))
    return 0;
  snprintf (path, sizeof path, "%s/%s/" IMG_INFO_FILE, images_dir, dir);
  return lstat (path, &st) == 0 && S_ISREG (st.st_mode);
}

static const struct img_builtin *
find_or_fail (const char *name, struct sbx_err *err)
{
  const struct img_builtin *b = img_builtin_find (name);
  if (!b)
    sbx_err_set (err, SBX_E_INVALID, 0, "unknown image '%.100s' (built-in: %s)",
                 name ? name : "", img_builtin_list ());
  return b;
}

/* Remove what a killed build left behind. Only called under the lock, so no build is
 * running (a running build holds the lock through its inherited fd). */
static void
remove_stale (const char *images_dir)
{
  DIR *d = opendir (images_dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (strncmp (de->d_name, IMG_BUILD_PREFIX, strlen (IMG_BUILD_PREFIX)) != 0)
        continue;
      char path[PATH_MAX];
      snprintf (path, sizeof path, "%s/%s", images_dir, de->d_name);
      LOG_INFO ("removing stale image build '%s'", path);
      if (sbx_rm_rf (path) < 0)
        LOG_WARN ("cannot remove stale image build '%s': %s", path, strerror (errno));
    }
  closedir (d);
}

static int
lock_images (const char *images_dir, const struct img_builtin *b, int progress,
             struct sbx_err *err)
{
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/" IMG_LOCK_FILE, images_dir);
  cleanup_close int fd = open (path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return sbx_err_sys (err, "open '%s'", path);
  if (flock (fd, LOCK_EX | LOCK_NB) == 0)
    return steal_fd (&fd);
  if (errno != EWOULDBLOCK)
    return sbx_err_sys (err, "lock '%s'", path);
  if (progress)
    fprintf (stderr, "sbx: waiting for another image build to finish (image %s)...\n",
             b->name);
  while (flock (fd, LOCK_EX) < 0)
    if (errno != EINTR)
      return sbx_err_sys (err, "lock '%s'", path);
  return steal_fd (&fd);
}

int
img_resolve (const char *state_dir, const char *name, int progress, char rootfs[PATH_MAX],
             struct sbx_err *err)
{
  const struct img_builtin *b = find_or_fail (name, err);
  if (!b)
    return -1;
  char images_dir[PATH_MAX];
  if (img_images_dir (state_dir, images_dir, err) < 0)
    return -1;
  snprintf (rootfs, PATH_MAX, "%s/%s/rootfs", images_dir, b->dir);
  if (img_is_complete (images_dir, b->dir))
    return 0;

  if (sbx_mkdir_p (state_dir, 0711) < 0)
    return sbx_err_sys (err, "create state directory '%s'", state_dir);
  if (mkdir (images_dir, 0755) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "create '%s'", images_dir);
  cleanup_close int lock = lock_images (images_dir, b, progress, err);
  if (lock < 0)
    return -1;
  if (img_is_complete (images_dir, b->dir))
    return 0; /* someone else built it while we waited */

  remove_stale (images_dir);
  char dir[PATH_MAX];
  snprintf (dir, sizeof dir, "%s/%s", images_dir, b->dir);
  if (sbx_rm_rf (dir) < 0) /* an incomplete directory from an older layout */
    return sbx_err_sys (err, "remove incomplete image '%s'", dir);
  return img_build (images_dir, b, lock, progress, err);
}

int
img_stat (const char *state_dir, const char *name, struct img_info *info, struct sbx_err *err)
{
  const struct img_builtin *b = find_or_fail (name, err);
  if (!b)
    return -1;
  char images_dir[PATH_MAX], path[PATH_MAX], text[2048];
  if (img_images_dir (state_dir, images_dir, err) < 0)
    return -1;
  if (!img_is_complete (images_dir, b->dir))
    return 0;
  snprintf (path, sizeof path, "%s/%s/" IMG_INFO_FILE, images_dir, b->dir);
  if (sbx_read_file (path, text, sizeof text) < 0)
    return sbx_err_sys (err, "read '%s'", path);
  if (img_parse_info (text, info) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, 0, "malformed image info '%s'", path);
  snprintf (info->rootfs, sizeof info->rootfs, "%s/%s/rootfs", images_dir, b->dir);
  return 1;
}
