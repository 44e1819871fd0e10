/* Diff of two layered views of a filesystem: what was created, modified and deleted going
 * from "old" to "new". A view is a stack of layer directories, top first (a sandbox's is
 * its upper layer over its image's layers). Layers both views share (the same directory
 * at the bottom of both stacks) cannot differ, so only the paths that appear in the other
 * layers are candidates; each candidate is looked up in both views with overlay semantics
 * (whiteouts, opaque directories) and the two entries compared: type, permission bits,
 * owner (as seen inside), size, bytes, link target. A directory counts as modified only
 * when its own permissions or owner changed; a deleted or created directory is reported
 * once, not with everything under it.
 *
 * Lookups walk one component at a time with O_NOFOLLOW: a symlink inside a layer is an
 * entry like any other and is never followed (the layers hold untrusted data). */
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct cands {
  char **p;
  size_t n, cap;
};

static int
add (struct cands *c, const char *path)
{
  if (c->n == c->cap)
    {
      size_t nc = c->cap ? c->cap * 2 : 256;
      char **np = realloc (c->p, nc * sizeof *np);
      if (!np)
        return -1;
      c->p = np;
      c->cap = nc;
    }
  if (!(c->p[c->n] = strdup (path)))
    return -1;
  c->n++;
  return 0;
}

enum { L_NOENT, L_NOENT_STOP, L_HIDDEN, L_FOUND };

/* Resolve rel ("a/b/c") in one layer. On L_FOUND, *parent is an fd of the directory
 * holding it (caller closes) and st its stat. */
static int
resolve (int root, const char *rel, struct stat *st, int *parent)
{
  *parent = -1;
  int dir = dup (root);
  int opaque = 0;
  if (dir < 0)
    return L_NOENT;
  const char *p = rel;
  for (;;)
    {
      const char *slash = strchr (p, '/');
      char comp[NAME_MAX + 1];
      size_t cl = slash ? (size_t) (slash - p) : strlen (p);
      if (cl == 0 || cl > NAME_MAX)
        {
          close (dir);
          return L_NOENT;
        }
      memcpy (comp, p, cl);
      comp[cl] = '\0';
      if (fstatat (dir, comp, st, AT_SYMLINK_NOFOLLOW) < 0)
        {
          close (dir);
          return opaque ? L_NOENT_STOP : L_NOENT;
        }
      if (img_is_whiteout (st))
        {
          close (dir);
          return L_HIDDEN;
        }
      if (!slash)
        {
          *parent = dir;
          return L_FOUND;
        }
      if (!S_ISDIR (st->st_mode))
        {
          close (dir);
          return L_HIDDEN; /* a file where a directory would be: nothing below shows */
        }
      int next = openat (dir, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      close (dir);
      if (next < 0)
        return L_NOENT;
      if (img_is_opaque (next))
        opaque = 1;
      dir = next;
      p = slash + 1;
    }
}

struct found {
  int present;
  int layer;
  int parent;
  struct stat st;
  const char *name;
};

static void
lookup (const struct img_view *v, const char *rel, struct found *f)
{
  memset (f, 0, sizeof *f);
  f->parent = -1;
  const char *slash = strrchr (rel, '/');
  f->name = slash ? slash + 1 : rel;
  for (int i = 0; i < v->n; i++)
    {
      int r = resolve (v->fds[i], rel, &f->st, &f->parent);
      if (r == L_FOUND)
        {
          f->present = 1;
          f->layer = i;
          return;
        }
      if (r == L_HIDDEN || r == L_NOENT_STOP)
        return;
    }
}

static uint32_t
owner (const struct img_view *v, int layer, uint32_t id)
{
  uint32_t base = v->uid_base[layer];
  if (!base)
    return id;
  return id >= base && id - base < 65536 ? id - base : 65534;
}

/* A running sandbox may swap a file for a FIFO between our stat and our open: open
 * without blocking, and compare only what is still a regular file. */
static int
open_regular (int dir, const char *name)
{
  int fd = openat (dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  struct stat st;
  if (fd >= 0 && (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode)))
    {
      close (fd);
      errno = EINVAL;
      return -1;
    }
  return fd;
}

/* The next offset at or after off where fd may have data (size if none; off where the
 * filesystem cannot tell). */
static off_t
next_data (int fd, off_t off, off_t size)
{
  off_t d = lseek (fd, off, SEEK_DATA);
  if (d < 0)
    return errno == ENXIO ? size : off;
  return d < off ? off : d > size ? size : d;
}

static ssize_t
pread_full (int fd, char *buf, size_t len, off_t off)
{
  size_t got = 0;
  while (got < len)
    {
      ssize_t n = pread (fd, buf + got, len - got, off + (off_t) got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return -1;
      if (n == 0)
        break;
      got += (size_t) n;
    }
  return (ssize_t) got;
}

/* Same bytes in two files of the same size. Only where one of them has data is read: a
 * sandbox's terabyte of holes costs nothing (a hole reads as zeros in both). */
static int
same_bytes (int pa, const char *na, int pb, const char *nb, off_t size)
{
  cleanup_close int a = open_regular (pa, na);
  cleanup_close int b = open_regular (pb, nb);
  if (a < 0 || b < 0)
    return 0;
  static __thread char ba[65536], bb[65536];
  off_t off = 0;
  while (off < size)
    {
      off_t da = next_data (a, off, size), db = next_data (b, off, size);
      off = da < db ? da : db; /* both are holes up to there */
      if (off >= size)
        break;
      size_t want = size - off < (off_t) sizeof ba ? (size_t) (size - off) : sizeof ba;
      ssize_t x = pread_full (a, ba, want, off);
      ssize_t y = pread_full (b, bb, want, off);
      if (x < 0 || y < 0 || x != y || memcmp (ba, bb, (size_t) x) != 0)
        return 0;
      if (x == 0)
        break; /* both shorter than their stat said */
      off += x;
    }
  return 1;
}

static int
differs (const struct img_view *ov, const struct found *o, const struct img_view *nv,
         const struct found *n)
{
  const struct stat *a = &o->st, *b = &n->st;
  if ((a->st_mode & S_IFMT) != (b->st_mode & S_IFMT) || (a->st_mode & 07777) != (b->st_mode & 07777)
      || owner (ov, o->layer, a->st_uid) != owner (nv, n->layer, b->st_uid)
      || owner (ov, o->layer, a->st_gid) != owner (nv, n->layer, b->st_gid))
    return 1;
  if (S_ISDIR (a->st_mode))
    return 0;
  if (a->st_dev == b->st_dev && a->st_ino == b->st_ino)
    return 0;
  if (S_ISLNK (a->st_mode))
    {
      char ta[PATH_MAX], tb[PATH_MAX];
      ssize_t x = readlinkat (o->parent, o->name, ta, sizeof ta);
      ssize_t y = readlinkat (n->parent, n->name, tb, sizeof tb);
      return x < 0 || y < 0 || x != y || memcmp (ta, tb, (size_t) x) != 0;
    }
  if (S_ISREG (a->st_mode))
    return a->st_size != b->st_size
           || !same_bytes (o->parent, o->name, n->parent, n->name, a->st_size);
  return a->st_rdev != b->st_rdev;
}

/* Every path in the layer below dir (rel), plus, under an opaque directory, the names
 * that directory has in any layer of either view (they may be gone now). */
static int walk (int dir, const char *rel, const struct img_view *a, const struct img_view *b,
                 struct cands *c, int depth);

static int
add_children_everywhere (const char *rel, const struct img_view *v, struct cands *c)
{
  for (int i = 0; i < v->n; i++)
    {
      struct stat st;
      int parent;
      if (resolve (v->fds[i], rel, &st, &parent) != L_FOUND)
        continue;
      const char *slash = strrchr (rel, '/');
      int d = openat (parent, slash ? slash + 1 : rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      close (parent);
      if (d < 0)
        continue;
      char **names;
      size_t n;
      if (img_list_names (d, &names, &n) == 0)
        {
          for (size_t j = 0; j < n; j++)
            {
              char p[PATH_MAX];
              if (snprintf (p, sizeof p, "%s/%s", rel, names[j]) < (int) sizeof p && add (c, p) < 0)
                {
                  img_names_free (names, n);
                  close (d);
                  return -1;
                }
            }
          img_names_free (names, n);
        }
      close (d);
    }
  return 0;
}

static int
walk (int dir, const char *rel, const struct img_view *a, const struct img_view *b,
      struct cands *c, int depth)
{
  if (depth > 512)
    return 0;
  char **names;
  size_t n;
  if (img_list_names (dir, &names, &n) < 0)
    return -1;
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i++)
    {
      char p[PATH_MAX];
      int len = *rel ? snprintf (p, sizeof p, "%s/%s", rel, names[i])
                     : snprintf (p, sizeof p, "%s", names[i]);
      if (len < 0 || (size_t) len >= sizeof p)
        continue;
      if (add (c, p) < 0)
        {
          r = -1;
          break;
        }
      struct stat st;
      if (fstatat (dir, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR (st.st_mode))
        continue;
      int sub = openat (dir, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0)
        continue;
      if (img_is_opaque (sub)
          && (add_children_everywhere (p, a, c) < 0 || add_children_everywhere (p, b, c) < 0))
        r = -1;
      if (r == 0)
        r = walk (sub, p, a, b, c, depth + 1);
      close (sub);
    }
  img_names_free (names, n);
  return r;
}

static int
push (char ***arr, size_t *n, const char *rel)
{
  char **na = realloc (*arr, (*n + 1) * sizeof *na);
  if (!na)
    return -1;
  *arr = na;
  size_t l = strlen (rel);
  if (!(na[*n] = malloc (l + 2)))
    return -1;
  na[*n][0] = '/';
  memcpy (na[*n] + 1, rel, l + 1);
  (*n)++;
  return 0;
}

/* Is rel below a path already reported as created or deleted (then it is not listed)?
 * arr is sorted (paths are pushed in the sorted order of the candidates), so each of rel's
 * ancestors is a binary search: a sandbox that creates 65,536 files cost a quadratic scan
 * of every earlier one, 12 s of sbxd's time per diff. */
static int
under (char **arr, size_t n, const char *rel)
{
  char key[PATH_MAX + 1];
  const char *k = key;
  key[0] = '/';
  for (const char *s = strchr (rel, '/'); s; s = strchr (s + 1, '/'))
    {
      size_t l = (size_t) (s - rel);
      if (l + 2 > sizeof key)
        break;
      memcpy (key + 1, rel, l);
      key[l + 1] = '\0';
      if (n && bsearch (&k, arr, n, sizeof *arr, img_cmp_names))
        return 1;
    }
  return 0;
}

int
img_diff_views (const struct img_view *ov, int o_private, const struct img_view *nv,
                int n_private, struct img_diff *out, struct sbx_err *err)
{
  memset (out, 0, sizeof *out);
  struct cands c = { 0 };
  int r = 0;
  for (int i = 0; i < o_private && r == 0; i++)
    r = walk (ov->fds[i], "", ov, nv, &c, 0);
  for (int i = 0; i < n_private && r == 0; i++)
    r = walk (nv->fds[i], "", ov, nv, &c, 0);
  if (r < 0)
    {
      img_names_free (c.p, c.n);
      return sbx_err_sys (err, "diff: walk layers");
    }
  if (c.n)
    qsort (c.p, c.n, sizeof *c.p, img_cmp_names);
  for (size_t i = 0; i < c.n && r == 0; i++)
    {
      if (i && !strcmp (c.p[i], c.p[i - 1]))
        continue;
      struct found o, n;
      lookup (ov, c.p[i], &o);
      lookup (nv, c.p[i], &n);
      if (o.present && !n.present)
        {
          if (!under (out->deleted, out->n_deleted, c.p[i]))
            r = push (&out->deleted, &out->n_deleted, c.p[i]);
        }
      else if (!o.present && n.present)
        {
          if (!under (out->created, out->n_created, c.p[i]))
            r = push (&out->created, &out->n_created, c.p[i]);
        }
      else if (o.present && n.present && differs (ov, &o, nv, &n))
        r = push (&out->modified, &out->n_modified, c.p[i]);
      if (o.parent >= 0)
        close (o.parent);
      if (n.parent >= 0)
        close (n.parent);
    }
  img_names_free (c.p, c.n);
  if (r < 0)
    {
      img_diff_free (out);
      return sbx_err_sys (err, "diff");
    }
  return 0;
}

int
img_view_open (const struct img_view *v, const char *rel)
{
  struct found f;
  lookup (v, rel, &f);
  if (!f.present)
    {
      errno = ENOENT;
      return -1;
    }
  int fd = -1;
  if (S_ISREG (f.st.st_mode))
    fd = open_regular (f.parent, f.name);
  else
    errno = EINVAL;
  int e = errno;
  close (f.parent);
  errno = e;
  return fd;
}

void
img_diff_free (struct img_diff *d)
{
  img_names_free (d->created, d->n_created);
  img_names_free (d->modified, d->n_modified);
  img_names_free (d->deleted, d->n_deleted);
  memset (d, 0, sizeof *d);
}
