/* Making layers: from a sandbox's upper layer (snapshots, build steps) and by flattening a
 * chain; and collecting layers nothing refers to any more. A layer is filled in a temp
 * directory under layers/ and renamed into place under its content-derived id, so a
 * crash never leaves a half layer under a real id (temp directories are collected). */
#include "layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
img_layer_path (const char *state_dir, const char *id, char out[PATH_MAX], struct sbx_err *err)
{
  if (!img_layer_id_valid (id))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "invalid layer id");
  char dir[PATH_MAX];
  if (img_layers_dir (state_dir, dir, err) < 0)
    return -1;
  snprintf (out, PATH_MAX, "%s/%s", dir, id);
  return 0;
}

/* Fill tmp by fill(), hash along, derive the id from parent + hash, rename into place. */
static int
finish_layer (const char *state_dir, const char *tmp, const char *parent, struct img_hash *h,
              char id[IMG_LAYER_ID_MAX], uint64_t *bytes, struct sbx_err *err)
{
  char hex[65];
  img_hash_final_hex (h, hex);
  char lid[IMG_LAYER_ID_LEN + 1];
  img_layer_id (parent, hex, lid);
  /* the layer root itself: like a directory of the image, root-owned 0755 */
  if (chown (tmp, 0, 0) < 0 || chmod (tmp, 0755) < 0)
    return sbx_err_sys (err, "attributes of '%s'", tmp);
  uint64_t b = 0;
  img_du (tmp, &b);
  if (img_layer_commit (state_dir, tmp, lid, err) < 0)
    return -1;
  snprintf (id, IMG_LAYER_ID_MAX, "%s", lid);
  if (bytes)
    *bytes = b;
  return 0;
}

/* A layer being made: a new temp directory under layers/ (open) and the hash of what goes
 * into it. */
struct layer_tmp {
  char path[PATH_MAX];
  int fd;
  struct img_hash h;
};

static int
layer_tmp_open (const char *state_dir, struct layer_tmp *t, struct sbx_err *err)
{
  memset (t, 0, sizeof *t);
  t->fd = -1;
  if (img_layer_tmp (state_dir, t->path, err) < 0)
    return -1;
  t->fd = open (t->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (t->fd < 0 || img_hash_init (&t->h) < 0)
    {
      sbx_err_sys (err, "open '%s'", t->path);
      if (t->fd >= 0)
        close (t->fd);
      img_hash_free (&t->h);
      sbx_rm_rf (t->path);
      return -1;
    }
  return 0;
}

/* filled == 0: the layer goes into place under its id (finish_layer); else, or when that
 * fails, the temp directory goes. */
static int
layer_tmp_close (const char *state_dir, struct layer_tmp *t, int filled, const char *parent,
                 char id[IMG_LAYER_ID_MAX], uint64_t *bytes, struct sbx_err *err)
{
  close (t->fd);
  if (filled == 0 && finish_layer (state_dir, t->path, parent, &t->h, id, bytes, err) == 0)
    return 0;
  img_hash_free (&t->h);
  sbx_rm_rf (t->path);
  return -1;
}

int
img_layer_from_upper (const char *state_dir, int scratch_fd, uint32_t uid_base,
                      const char *parent, char id[IMG_LAYER_ID_MAX], uint64_t *bytes,
                      struct sbx_err *err)
{
  if (scratch_fd < 0)
    return sbx_err_set (err, SBX_E_INVALID, EBADF,
                        "the sandbox's writable layer is not reachable (re-adopted after an "
                        "sbxd restart)");
  cleanup_close int upper
      = openat (scratch_fd, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (upper < 0)
    return sbx_err_sys (err, "open the sandbox's upper layer");
  struct layer_tmp t;
  if (layer_tmp_open (state_dir, &t, err) < 0)
    return sbx_err_wrap (err, "copy upper layer");
  struct img_copy x = { .uid_base = uid_base, .hash = &t.h, .dst_root = t.fd };
  int r = img_copy_xattrs (upper, t.fd, err);
  if (r == 0)
    r = img_copy_tree (&x, upper, t.fd, "", err);
  img_copy_free (&x);
  if (layer_tmp_close (state_dir, &t, r, parent, id, bytes, err) < 0)
    return sbx_err_wrap (err, "copy upper layer");
  return 0;
}

int
img_layer_flatten (const char *state_dir, const char *base, const char *const *ids, size_t n,
                   char id[IMG_LAYER_ID_MAX], uint64_t *bytes, struct sbx_err *err)
{
  if (n == 0 || n > 64)
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "flatten: 1..64 layers");
  char paths[64][PATH_MAX];
  const char *dirs[64];
  for (size_t i = 0; i < n; i++)
    {
      /* top first for the merge */
      if (img_layer_path (state_dir, ids[n - 1 - i], paths[i], err) < 0)
        return -1;
      dirs[i] = paths[i];
    }
  struct layer_tmp t;
  if (layer_tmp_open (state_dir, &t, err) < 0)
    return sbx_err_wrap (err, "flatten %zu layers", n);
  int r = img_flatten_into (dirs, n, t.fd, &t.h, err);
  if (layer_tmp_close (state_dir, &t, r, base, id, bytes, err) < 0)
    return sbx_err_wrap (err, "flatten %zu layers", n);
  return 0;
}

int
img_layer_tmp_clean (const char *state_dir)
{
  char dir[PATH_MAX];
  if (!state_dir || snprintf (dir, sizeof dir, "%s/" IMG_LAYERS_DIR, state_dir) >= (int) sizeof dir)
    return 0;
  DIR *d = opendir (dir);
  if (!d)
    return 0; /* no layers yet */
  int removed = 0;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (strncmp (de->d_name, IMG_LAYER_TMP_PREFIX, strlen (IMG_LAYER_TMP_PREFIX)) != 0)
        continue;
      char path[PATH_MAX];
      snprintf (path, sizeof path, "%s/%s", dir, de->d_name);
      if (sbx_rm_rf (path) < 0)
        LOG_WARN ("remove unfinished layer '%s': %s", path, strerror (errno));
      else
        removed++;
    }
  closedir (d);
  return removed;
}

int
img_layer_gc (const char *state_dir, const char *const *keep, size_t n, size_t *removed,
              uint64_t *freed, struct sbx_err *err)
{
  *removed = 0;
  *freed = 0;
  char dir[PATH_MAX];
  if (img_layers_dir (state_dir, dir, err) < 0)
    return -1;
  DIR *d = opendir (dir);
  if (!d)
    return sbx_err_sys (err, "open '%s'", dir);
  struct dirent *de;
  while ((de = readdir (d)))
    {
      const char *name = de->d_name;
      int is_tmp = !strncmp (name, IMG_LAYER_TMP_PREFIX, strlen (IMG_LAYER_TMP_PREFIX));
      if (!is_tmp && !img_layer_id_valid (name))
        continue;
      int kept = 0;
      for (size_t i = 0; i < n && !kept && !is_tmp; i++)
        kept = keep[i] && !strcmp (keep[i], name);
      if (kept)
        continue;
      char path[PATH_MAX];
      snprintf (path, sizeof path, "%s/%s", dir, name);
      uint64_t b = 0;
      img_du (path, &b);
      if (sbx_rm_rf (path) < 0)
        {
          LOG_WARN ("gc: remove '%s': %s", path, strerror (errno));
          continue;
        }
      (*removed)++;
      *freed += b;
    }
  closedir (d);
  return 0;
}
