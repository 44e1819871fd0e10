/* Flattening: merge a stack of delta layers (everything above an image's base) into one
 * delta layer with the same meaning over the same base. Used when a chain grows past the
 * bound the runtime stacks (snapshots of snapshots of ...): the base, by far the largest
 * layer, is never copied.
 *
 * Overlay semantics, per directory, layers top first: the topmost entry of a name wins; a
 * whiteout hides the name below it; a directory merges with the directories below it
 * until one of them is opaque or a layer below has a non-directory (or whiteout) there.
 * The merged directory is opaque when that merge was cut short, so the base stays hidden
 * where it was hidden before. */
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MAX_STACK 64

static int merge_dir (struct img_copy *x, const int *fds, int n, int dfd, const char *rel,
                      struct sbx_err *err);

static int
merge_name (struct img_copy *x, const int *fds, int n, int dfd, const char *name,
            const char *rel, struct sbx_err *err)
{
  /* the topmost layer having the name */
  int top = -1;
  struct stat st;
  for (int i = 0; i < n; i++)
    if (fstatat (fds[i], name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      {
        top = i;
        break;
      }
    else if (errno != ENOENT)
      return sbx_err_sys (err, "stat '%s'", rel);
  if (top < 0)
    return 0;
  if (!S_ISDIR (st.st_mode))
    return img_copy_entry (x, fds[top], dfd, name, rel, err); /* file, link, whiteout */

  /* A directory: merge it with the directories below until cut. */
  int sub[MAX_STACK], ns = 0, cut = 0, r = 0;
  /* declared before the first goto out: its cleanup runs there too */
  cleanup_close int d = -1;
  for (int i = top; i < n; i++)
    {
      struct stat s2;
      if (fstatat (fds[i], name, &s2, AT_SYMLINK_NOFOLLOW) < 0)
        {
          if (errno == ENOENT)
            continue;
          r = sbx_err_sys (err, "stat '%s'", rel);
          goto out;
        }
      if (!S_ISDIR (s2.st_mode))
        {
          cut = 1; /* a file or whiteout below: nothing further down shows through */
          break;
        }
      int fd = openat (fds[i], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        {
          r = sbx_err_sys (err, "open '%s'", rel);
          goto out;
        }
      sub[ns++] = fd;
      if (img_is_opaque (fd))
        {
          cut = 1;
          break;
        }
    }
  if (mkdirat (dfd, name, 0700) < 0)
    {
      r = sbx_err_sys (err, "mkdir '%s'", rel);
      goto out;
    }
  d = openat (dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (d < 0)
    {
      r = sbx_err_sys (err, "open '%s'", rel);
      goto out;
    }
  if (img_copy_xattrs (sub[0], d, err) < 0)
    {
      r = -1;
      goto out;
    }
  /* opaque if cut short, else not (whatever the topmost said about lower deltas) */
  if (cut)
    r = img_set_opaque (d) < 0 ? sbx_err_sys (err, "mark '%s' opaque", rel) : 0;
  else
    fremovexattr (d, "user.overlay.opaque");
  if (r == 0)
    r = merge_dir (x, sub, ns, d, rel, err);
  if (r == 0 && (fchown (d, st.st_uid, st.st_gid) < 0 || fchmod (d, st.st_mode & 07777) < 0))
    r = sbx_err_sys (err, "attributes of '%s'", rel);
  if (r == 0)
    {
      struct timespec ts[2] = { st.st_atim, st.st_mtim };
      futimens (d, ts);
    }
out:
  for (int i = 0; i < ns; i++)
    close (sub[i]);
  return r;
}

/* Merge the directories fds[0..n) (top first) into dfd. */
static int
merge_dir (struct img_copy *x, const int *fds, int n, int dfd, const char *rel,
           struct sbx_err *err)
{
  /* union of the names, sorted, duplicates skipped below */
  char **all = NULL;
  size_t nall = 0, cap = 0;
  int r = 0;
  for (int i = 0; i < n && r == 0; i++)
    {
      char **names;
      size_t k;
      if (img_list_names (fds[i], &names, &k) < 0)
        {
          r = sbx_err_sys (err, "list '%s'", rel);
          break;
        }
      if (nall + k > cap)
        {
          size_t nc = (nall + k) * 2;
          char **na = realloc (all, nc * sizeof *na);
          if (!na)
            {
              img_names_free (names, k);
              r = sbx_err_sys (err, "merge");
              break;
            }
          all = na;
          cap = nc;
        }
      memcpy (all + nall, names, k * sizeof *names);
      nall += k;
      free (names);
    }
  if (nall)
    qsort (all, nall, sizeof *all, img_cmp_names);
  for (size_t i = 0; i < nall && r == 0; i++)
    {
      if (i && !strcmp (all[i], all[i - 1]))
        continue;
      char sub[PATH_MAX];
      int len = *rel ? snprintf (sub, sizeof sub, "%s/%s", rel, all[i])
                     : snprintf (sub, sizeof sub, "%s", all[i]);
      if (len < 0 || (size_t) len >= sizeof sub)
        r = sbx_err_set (err, SBX_E_INTERNAL, ENAMETOOLONG, "path too long under '%s'", rel);
      else
        r = merge_name (x, fds, n, dfd, all[i], sub, err);
    }
  img_names_free (all, nall);
  return r;
}

int
img_flatten_into (const char *const *dirs, size_t n, int dfd, struct img_hash *hash,
                  struct sbx_err *err)
{
  if (n == 0 || n > MAX_STACK)
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "flatten: 1..%d layers", MAX_STACK);
  int fds[MAX_STACK];
  size_t opened = 0;
  int r = 0;
  for (; opened < n; opened++)
    {
      fds[opened] = open (dirs[opened], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fds[opened] < 0)
        {
          r = sbx_err_sys (err, "open layer '%s'", dirs[opened]);
          break;
        }
    }
  struct img_copy x = { .uid_base = 0, .hash = hash, .dst_root = dfd };
  if (r == 0)
    r = merge_dir (&x, fds, (int) n, dfd, "", err);
  img_copy_free (&x);
  for (size_t i = 0; i < opened; i++)
    close (fds[i]);
  return r;
}
