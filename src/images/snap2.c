/* Snapshots in three phases, so that the sandbox is frozen only for the short middle one:
 *
 *   begin   (sandbox running)  copy the upper layer into a temp layer directory;
 *   sync    (sandbox frozen)   walk the upper layer again and bring the copy up to date:
 *                              entries gone are removed; an entry whose inode changed
 *                              since begin started (ctime, which no caller can set back,
 *                              at or after the start minus a clock tick), or whose type,
 *                              size or mtime differs, is copied again; directories get
 *                              their attributes and xattrs (opaque!) again;
 *   commit  (sandbox running)  hash the finished copy (same canonical walk as a copy),
 *                              derive the id, rename into place.
 *
 * What sync sees is exactly the frozen state, so the layer is as consistent as a copy
 * made entirely while frozen. One approximation: a hard link made to an existing file
 * during begin is copied as a separate file. */
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define CTIME_SLACK_NS 50000000LL /* the inode clock is coarse (a tick behind at most) */

struct img_snap {
  char state_dir[PATH_MAX];
  char tmp[PATH_MAX];
  int upper;
  int dst;
  uint32_t uid_base;
  int64_t t0_ns; /* CLOCK_REALTIME before begin read anything */
  uint64_t recopied;
  struct img_copy x; /* for sync: one hard-link table, so links of a recopied inode
                      * (all stale together: ctime is the inode's) stay links */
};

static int64_t
ts_ns (const struct timespec *t)
{
  return (int64_t) t->tv_sec * 1000000000LL + t->tv_nsec;
}

void
img_snap_abort (struct img_snap *sn)
{
  if (!sn)
    return;
  sbx_closep (&sn->upper);
  sbx_closep (&sn->dst);
  if (*sn->tmp && sbx_rm_rf (sn->tmp) < 0)
    LOG_WARN ("remove '%s': %s", sn->tmp, strerror (errno));
  free (sn);
}

int
img_snap_begin (const char *state_dir, int scratch_fd, uint32_t uid_base, struct img_snap **out,
                struct sbx_err *err)
{
  *out = NULL;
  if (scratch_fd < 0)
    return sbx_err_set (err, SBX_E_INVALID, EBADF,
                        "the sandbox's writable layer is not reachable (re-adopted after an "
                        "sbxd restart)");
  struct img_snap *sn = calloc (1, sizeof *sn);
  if (!sn)
    return sbx_err_sys (err, "snapshot");
  sn->upper = sn->dst = -1;
  sn->uid_base = uid_base;
  snprintf (sn->state_dir, sizeof sn->state_dir, "%s", state_dir);
  struct timespec now;
  clock_gettime (CLOCK_REALTIME, &now);
  sn->t0_ns = ts_ns (&now) - CTIME_SLACK_NS;
  sn->upper = openat (scratch_fd, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sn->upper < 0)
    {
      sbx_err_sys (err, "open the sandbox's upper layer");
      goto fail;
    }
  if (img_layer_tmp (state_dir, sn->tmp, err) < 0)
    {
      sn->tmp[0] = '\0';
      goto fail;
    }
  sn->dst = open (sn->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sn->dst < 0)
    {
      sbx_err_sys (err, "open '%s'", sn->tmp);
      goto fail;
    }
  struct img_copy x = { .uid_base = uid_base, .dst_root = sn->dst };
  int r = img_copy_tree (&x, sn->upper, sn->dst, "", err);
  img_copy_free (&x);
  /* a file that vanished or changed under the running copy is fixed by sync */
  if (r < 0 && err->sys_errno != ENOENT && err->sys_errno != EAGAIN)
    goto fail;
  sbx_err_clear (err);
  *out = sn;
  return 0;
fail:
  img_snap_abort (sn);
  return sbx_err_wrap (err, "copy upper layer");
}

/* rm -rf of dfd/name, never following a symlink (the copy is ours, but stay careful). */
static int
rm_entry (int dfd, const char *name)
{
  struct stat st;
  if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR (st.st_mode))
    return unlinkat (dfd, name, 0);
  int d = openat (dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (d < 0)
    return -1;
  char **names;
  size_t n;
  int r = img_list_names (d, &names, &n);
  for (size_t i = 0; r == 0 && i < n; i++)
    r = rm_entry (d, names[i]);
  img_names_free (names, n);
  close (d);
  return r == 0 ? unlinkat (dfd, name, AT_REMOVEDIR) : -1;
}

static int
same_xattrs_reset (int sfd, int dfd, struct sbx_err *err)
{
  char list[8192];
  ssize_t n = flistxattr (dfd, list, sizeof list);
  for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t) strlen (list + off) + 1)
    if (!strncmp (list + off, "user.", 5))
      fremovexattr (dfd, list + off);
  return img_copy_xattrs (sfd, dfd, err);
}

static uint32_t
map_id (const struct img_snap *sn, uint32_t id)
{
  return id >= sn->uid_base && id - sn->uid_base < 65536 ? id - sn->uid_base : 65534;
}

static int
sync_dir (struct img_snap *sn, int sfd, int dfd, const char *rel, int depth, struct sbx_err *err)
{
  if (depth > 512)
    return sbx_err_set (err, SBX_E_INVALID, ELOOP, "tree too deep at '%s'", rel);
  char **su, **sd;
  size_t nu, nd;
  if (img_list_names (sfd, &su, &nu) < 0)
    return sbx_err_sys (err, "list '%s'", rel);
  if (img_list_names (dfd, &sd, &nd) < 0)
    {
      img_names_free (su, nu);
      return sbx_err_sys (err, "list copy of '%s'", rel);
    }
  int r = 0;
  /* names of the copy that are gone (both lists are sorted) */
  for (size_t i = 0, j = 0; r == 0 && j < nd; j++)
    {
      while (i < nu && strcmp (su[i], sd[j]) < 0)
        i++;
      if (i < nu && !strcmp (su[i], sd[j]))
        continue;
      if (rm_entry (dfd, sd[j]) < 0)
        r = sbx_err_sys (err, "remove '%s/%s'", rel, sd[j]);
    }
  for (size_t i = 0; r == 0 && i < nu; i++)
    {
      char sub[PATH_MAX];
      int len = *rel ? snprintf (sub, sizeof sub, "%s/%s", rel, su[i])
                     : snprintf (sub, sizeof sub, "%s", su[i]);
      if (len < 0 || (size_t) len >= sizeof sub)
        {
          r = sbx_err_set (err, SBX_E_INTERNAL, ENAMETOOLONG, "path too long under '%s'", rel);
          break;
        }
      struct stat a, b;
      if (fstatat (sfd, su[i], &a, AT_SYMLINK_NOFOLLOW) < 0)
        {
          r = sbx_err_sys (err, "stat '%s'", sub);
          break;
        }
      int have = fstatat (dfd, su[i], &b, AT_SYMLINK_NOFOLLOW) == 0;
      if (have && S_ISDIR (a.st_mode) && S_ISDIR (b.st_mode))
        {
          int s2 = openat (sfd, su[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          int d2 = openat (dfd, su[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (s2 < 0 || d2 < 0)
            r = sbx_err_sys (err, "open '%s'", sub);
          if (r == 0)
            r = same_xattrs_reset (s2, d2, err);
          if (r == 0)
            r = sync_dir (sn, s2, d2, sub, depth + 1, err);
          if (r == 0)
            {
              struct timespec ts[2] = { a.st_atim, a.st_mtim };
              if (fchown (d2, map_id (sn, a.st_uid), map_id (sn, a.st_gid)) < 0
                  || fchmod (d2, a.st_mode & 07777) < 0 || futimens (d2, ts) < 0)
                r = sbx_err_sys (err, "attributes of '%s'", sub);
            }
          if (s2 >= 0)
            close (s2);
          if (d2 >= 0)
            close (d2);
          continue;
        }
      int stale = !have || (a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)
                  || ts_ns (&a.st_ctim) >= sn->t0_ns
                  || (S_ISREG (a.st_mode) && a.st_size != b.st_size)
                  || ts_ns (&a.st_mtim) != ts_ns (&b.st_mtim)
                  || (a.st_mode & 07777) != (b.st_mode & 07777)
                  || map_id (sn, a.st_uid) != b.st_uid || map_id (sn, a.st_gid) != b.st_gid;
      if (!stale)
        continue;
      if (have && rm_entry (dfd, su[i]) < 0)
        {
          r = sbx_err_sys (err, "remove '%s'", sub);
          break;
        }
      r = img_copy_entry (&sn->x, sfd, dfd, su[i], sub, err);
      sn->recopied++;
    }
  img_names_free (su, nu);
  img_names_free (sd, nd);
  return r;
}

int
img_snap_sync (struct img_snap *sn, uint64_t *recopied, struct sbx_err *err)
{
  sn->recopied = 0;
  sn->x = (struct img_copy) { .uid_base = sn->uid_base, .dst_root = sn->dst };
  int r = same_xattrs_reset (sn->upper, sn->dst, err);
  if (r == 0)
    r = sync_dir (sn, sn->upper, sn->dst, "", 0, err);
  img_copy_free (&sn->x);
  if (recopied)
    *recopied = sn->recopied;
  return r < 0 ? sbx_err_wrap (err, "bring the copy up to date") : 0;
}

int
img_snap_commit (struct img_snap *sn, const char *parent, char id[IMG_LAYER_ID_MAX],
                 uint64_t *bytes, struct sbx_err *err)
{
  struct img_hash h = { 0 };
  int r = img_hash_init (&h) < 0 ? sbx_err_sys (err, "hash") : 0;
  if (r == 0)
    {
      /* the same canonical walk a copy hashes, over the finished copy (inside ids) */
      struct img_copy x = { .uid_base = 0, .hash = &h, .dst_root = -1, .dry = 1 };
      r = img_copy_tree (&x, sn->dst, -1, "", err);
      img_copy_free (&x);
    }
  if (r == 0)
    {
      char hex[65], lid[IMG_LAYER_ID_LEN + 1];
      img_hash_final_hex (&h, hex);
      img_layer_id (parent, hex, lid);
      if (chown (sn->tmp, 0, 0) < 0 || chmod (sn->tmp, 0755) < 0)
        r = sbx_err_sys (err, "attributes of '%s'", sn->tmp);
      uint64_t b = 0;
      img_du (sn->tmp, &b);
      sbx_closep (&sn->dst);
      if (r == 0)
        r = img_layer_commit (sn->state_dir, sn->tmp, lid, err);
      if (r == 0)
        {
          sn->tmp[0] = '\0'; /* renamed (or removed as a duplicate): nothing to clean */
          snprintf (id, IMG_LAYER_ID_MAX, "%s", lid);
          if (bytes)
            *bytes = b;
        }
    }
  else
    img_hash_free (&h);
  img_snap_abort (sn);
  return r;
}
