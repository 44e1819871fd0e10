/* Copying directory trees into layers: a sandbox's upper layer (read through the scratch
 * mount sbxd holds) or other layers (flattening). Everything is relative to directory
 * fds with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW: the source is untrusted data, a symlink in it
 * is copied as a symlink and never followed. The walk is in sorted name order so that the
 * hash fed along the way is a function of the content alone. */
#include "layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MAX_DEPTH 512
#define OWNER_NOBODY 65534
#define IMG_BLOCK 4096

int
img_hash_init (struct img_hash *h)
{
  h->md = EVP_MD_CTX_new ();
  if (!h->md || EVP_DigestInit_ex (h->md, EVP_sha256 (), NULL) != 1)
    {
      EVP_MD_CTX_free (h->md);
      h->md = NULL;
      errno = ENOMEM;
      return -1;
    }
  return 0;
}

void
img_hash_update (struct img_hash *h, const void *p, size_t n)
{
  if (h && h->md)
    EVP_DigestUpdate (h->md, p, n);
}

void
img_hash_final_hex (struct img_hash *h, char out[65])
{
  unsigned char d[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex (h->md, d, &n);
  for (int i = 0; i < 32; i++)
    snprintf (out + 2 * i, 3, "%02x", d[i]);
  img_hash_free (h);
}

void
img_hash_free (struct img_hash *h)
{
  EVP_MD_CTX_free (h->md);
  h->md = NULL;
}

void
img_copy_free (struct img_copy *x)
{
  for (size_t i = 0; i < x->nlinks; i++)
    free (x->links[i].path);
  free (x->links);
  x->links = NULL;
  x->nlinks = x->caplinks = 0;
}

int
img_cmp_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

void
img_names_free (char **names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free (names[i]);
  free (names);
}

int
img_list_names (int dirfd, char ***names, size_t *n)
{
  *names = NULL;
  *n = 0;
  /* A new fd for the stream (closedir closes it), not the caller's dirfd. */
  DIR *d = sbx_opendirat (dirfd, ".");
  if (!d)
    return -1;
  size_t cap = 0;
  struct dirent *de;
  errno = 0;
  while ((de = readdir (d)))
    {
      if (!strcmp (de->d_name, ".") || !strcmp (de->d_name, ".."))
        continue;
      if (*n == cap)
        {
          cap = cap ? cap * 2 : 32;
          char **nn = realloc (*names, cap * sizeof *nn);
          if (!nn)
            goto oom;
          *names = nn;
        }
      if (!((*names)[*n] = strdup (de->d_name)))
        goto oom;
      (*n)++;
    }
  closedir (d);
  if (*n)
    qsort (*names, *n, sizeof **names, img_cmp_names);
  return 0;
oom:
  closedir (d);
  img_names_free (*names, *n);
  *names = NULL;
  *n = 0;
  errno = ENOMEM;
  return -1;
}

int
img_is_whiteout (const struct stat *st)
{
  return S_ISCHR (st->st_mode) && st->st_rdev == makedev (0, 0);
}

int
img_is_opaque (int dirfd)
{
  char v[4];
  ssize_t n = fgetxattr (dirfd, "user.overlay.opaque", v, sizeof v);
  if (n < 0)
    n = fgetxattr (dirfd, "trusted.overlay.opaque", v, sizeof v);
  return n >= 1 && v[0] == 'y';
}

int
img_set_opaque (int dirfd)
{
  return fsetxattr (dirfd, "user.overlay.opaque", "y", 1, 0);
}

/* Overlay bookkeeping of the upper layer that must not travel into a lower one. */
static int
keep_xattr (const char *name)
{
  if (strncmp (name, "user.", 5) != 0)
    return 0;
  static const char *const drop[] = { "user.overlay.origin", "user.overlay.impure",
                                      "user.overlay.nlink", "user.overlay.uuid",
                                      "user.overlay.upper", "user.overlay.metacopy" };
  for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
    if (!strcmp (name, drop[i]))
      return 0;
  return 1;
}

/* Copy (and hash) the kept xattrs; h may be NULL. */
static int
copy_xattrs_hash (int sfd, int dfd, struct img_hash *h, struct sbx_err *err)
{
  char list[8192];
  ssize_t n = flistxattr (sfd, list, sizeof list);
  if (n < 0)
    {
      if (errno == ENOTSUP)
        return 0;
      return sbx_err_sys (err, "list xattrs");
    }
  /* listxattr order is the filesystem's; sort for the hash */
  const char *names[128];
  size_t k = 0;
  for (ssize_t off = 0; off < n && k < 128; off += (ssize_t) strlen (list + off) + 1)
    if (keep_xattr (list + off))
      names[k++] = list + off;
  qsort (names, k, sizeof names[0], img_cmp_names);
  for (size_t i = 0; i < k; i++)
    {
      char val[4096];
      ssize_t vl = fgetxattr (sfd, names[i], val, sizeof val);
      if (vl < 0)
        continue;
      if (dfd >= 0 && fsetxattr (dfd, names[i], val, (size_t) vl, 0) < 0)
        return sbx_err_sys (err, "set xattr %s", names[i]);
      img_hash_update (h, "X", 1);
      img_hash_update (h, names[i], strlen (names[i]) + 1);
      img_hash_update (h, val, (size_t) vl);
    }
  return 0;
}

int
img_copy_xattrs (int sfd, int dfd, struct sbx_err *err)
{
  return copy_xattrs_hash (sfd, dfd, NULL, err);
}

static uint32_t
map_id (const struct img_copy *x, uint32_t id)
{
  if (!x->uid_base)
    return id;
  if (id >= x->uid_base && id - x->uid_base < 65536)
    return id - x->uid_base;
  return OWNER_NOBODY;
}

static void
hash_entry (struct img_copy *x, const char *rel, const struct stat *st, uint32_t uid,
            uint32_t gid)
{
  if (!x->hash)
    return;
  char rec[256];
  int n = snprintf (rec, sizeof rec, "E%o:%u:%u:%llu:%lld.%09ld:%llx:",
                    (unsigned) st->st_mode, uid, gid,
                    S_ISREG (st->st_mode) ? (unsigned long long) st->st_size : 0ull,
                    (long long) st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
                    (unsigned long long) st->st_rdev);
  img_hash_update (x->hash, rec, (size_t) n);
  img_hash_update (x->hash, rel, strlen (rel) + 1);
}

static int
join (char *out, size_t cap, const char *rel, const char *name)
{
  int n = *rel ? snprintf (out, cap, "%s/%s", rel, name) : snprintf (out, cap, "%s", name);
  if (n < 0 || (size_t) n >= cap)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  return 0;
}

static int
set_attrs_fd (int fd, const struct stat *st, uint32_t uid, uint32_t gid, struct sbx_err *err)
{
  if (fchown (fd, uid, gid) < 0)
    return sbx_err_sys (err, "chown");
  /* after chown, which clears setuid/setgid */
  if (fchmod (fd, st->st_mode & 07777) < 0)
    return sbx_err_sys (err, "chmod");
  struct timespec ts[2] = { st->st_atim, st->st_mtim };
  if (futimens (fd, ts) < 0)
    return sbx_err_sys (err, "set times");
  return 0;
}

/* Is every byte of p[0..n) zero? */
static int
all_zero (const char *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

static void
hash_zeros (struct img_hash *h, uint64_t *run)
{
  if (!*run)
    return;
  unsigned char rec[9] = { 'Z' };
  for (int i = 0; i < 8; i++)
    rec[1 + i] = (unsigned char) (*run >> (8 * i));
  img_hash_update (h, rec, sizeof rec);
  *run = 0;
}

/* The next offset at or after off where fd has data, rounded down to a block (size if
 * none). A filesystem without SEEK_DATA has data everywhere. */
static off_t
next_data (int fd, off_t off, off_t size)
{
  off_t d = lseek (fd, off, SEEK_DATA);
  if (d < 0)
    return errno == ENXIO ? size : off;
  d &= ~(off_t) (IMG_BLOCK - 1);
  return d < off ? off : d > size ? size : d;
}

/* The first hole at or after off (rounded up to a block, at most size). */
static off_t
next_hole (int fd, off_t off, off_t size)
{
  off_t h = lseek (fd, off, SEEK_HOLE);
  if (h >= 0 && h <= off)
    {
      /* off was rounded down into a hole before data that starts within the block */
      off_t d = lseek (fd, off, SEEK_DATA);
      h = d > off ? lseek (fd, d, SEEK_HOLE) : -1;
    }
  if (h < 0 || h > size)
    return size;
  h = (h + IMG_BLOCK - 1) & ~(off_t) (IMG_BLOCK - 1);
  return h > size ? size : h <= off ? size : h;
}

/* The first size bytes of in into out (-1: hash only). A sandbox can make a file of a
 * terabyte that takes no space (truncate, or a write at a far offset): only the parts that
 * hold data are read (SEEK_DATA/SEEK_HOLE), and no block of zeros is written, so the copy
 * takes no more disk than the data (the sandbox's writable space bounds it) and costs no
 * time for the holes. The hash sees the file as 4 KiB blocks: a block with data as 'D' and
 * its bytes, a run of zero bytes (holes and written zeros alike) as 'Z' and its length, so
 * it depends on the bytes alone, not on where the holes are. */
static int
copy_bytes (struct img_copy *x, int in, int out, off_t size, const char *rel,
            struct sbx_err *err)
{
  static __thread char buf[1 << 17];
  uint64_t zrun = 0;
  off_t off = 0;
  while (off < size)
    {
      off_t data = next_data (in, off, size);
      zrun += (uint64_t) (data - off);
      off = data;
      if (off >= size)
        break;
      off_t hole = next_hole (in, off, size);
      while (off < hole)
        {
          size_t want = (size_t) (hole - off) < sizeof buf ? (size_t) (hole - off) : sizeof buf;
          ssize_t n = pread (in, buf, want, off);
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            return sbx_err_sys (err, "read '%s'", rel);
          if (n == 0) /* shorter than its stat said: it changes under the copy */
            return sbx_err_set (err, SBX_E_INTERNAL, EAGAIN, "'%s' changed while copied", rel);
          for (size_t i = 0; i < (size_t) n; i += IMG_BLOCK)
            {
              size_t bl = (size_t) n - i < IMG_BLOCK ? (size_t) n - i : IMG_BLOCK;
              if (all_zero (buf + i, bl))
                {
                  zrun += bl;
                  continue;
                }
              hash_zeros (x->hash, &zrun);
              img_hash_update (x->hash, "D", 1);
              img_hash_update (x->hash, buf + i, bl);
              for (size_t w = 0; out >= 0 && w < bl;)
                {
                  ssize_t k = pwrite (out, buf + i + w, bl - w, off + (off_t) (i + w));
                  if (k < 0 && errno == EINTR)
                    continue;
                  if (k <= 0)
                    return sbx_err_sys (err, "write '%s'", rel);
                  w += (size_t) k;
                }
              x->bytes += bl;
            }
          off += n;
        }
    }
  hash_zeros (x->hash, &zrun);
  if (out >= 0 && ftruncate (out, size) < 0)
    return sbx_err_sys (err, "size of '%s'", rel);
  return 0;
}

static int
copy_file (struct img_copy *x, int sfd, int dfd, const char *name, const char *rel,
           const struct stat *st, uint32_t uid, uint32_t gid, struct sbx_err *err)
{
  /* A hard link to a file copied before: link it again. */
  if (st->st_nlink > 1)
    for (size_t i = 0; i < x->nlinks; i++)
      if (x->links[i].dev == st->st_dev && x->links[i].ino == st->st_ino)
        {
          if (!x->dry && linkat (x->dst_root, x->links[i].path, dfd, name, 0) < 0)
            return sbx_err_sys (err, "link '%s'", rel);
          img_hash_update (x->hash, "L", 1);
          img_hash_update (x->hash, x->links[i].path, strlen (x->links[i].path) + 1);
          return 0;
        }
  /* O_NONBLOCK: a running sandbox may have swapped the file for a FIFO since the stat,
   * whose open would block forever; the fstat below refuses anything not regular. */
  cleanup_close int in
      = openat (sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (in < 0)
    return sbx_err_sys (err, "open '%s'", rel);
  struct stat st2;
  if (fstat (in, &st2) < 0 || !S_ISREG (st2.st_mode) || st2.st_ino != st->st_ino)
    return sbx_err_set (err, SBX_E_INTERNAL, EAGAIN, "'%s' changed while copied", rel);
  cleanup_close int out
      = x->dry ? -1 : openat (dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0 && !x->dry)
    return sbx_err_sys (err, "create '%s'", rel);
  if (copy_bytes (x, in, out, st->st_size, rel, err) < 0)
    return -1;
  if (copy_xattrs_hash (in, out, x->hash, err) < 0
      || (out >= 0 && set_attrs_fd (out, st, uid, gid, err) < 0))
    return sbx_err_wrap (err, "'%s'", rel);
  if (st->st_nlink > 1)
    {
      if (x->nlinks == x->caplinks)
        {
          size_t nc = x->caplinks ? x->caplinks * 2 : 16;
          struct img_link *nl = realloc (x->links, nc * sizeof *nl);
          if (!nl)
            return sbx_err_sys (err, "hard links");
          x->links = nl;
          x->caplinks = nc;
        }
      char *p = strdup (rel);
      if (!p)
        return sbx_err_sys (err, "hard links");
      x->links[x->nlinks++] = (struct img_link) { st->st_dev, st->st_ino, p };
    }
  return 0;
}

int
img_copy_entry (struct img_copy *x, int sfd, int dfd, const char *name, const char *rel,
                struct sbx_err *err)
{
  struct stat st;
  if (fstatat (sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return sbx_err_sys (err, "stat '%s'", rel);
  uint32_t uid = map_id (x, st.st_uid), gid = map_id (x, st.st_gid);
  x->entries++;
  if (S_ISDIR (st.st_mode))
    {
      if (!x->dry && mkdirat (dfd, name, 0700) < 0)
        return sbx_err_sys (err, "mkdir '%s'", rel);
      cleanup_close int s = openat (sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      cleanup_close int d
          = x->dry ? -1 : openat (dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (s < 0 || (d < 0 && !x->dry))
        return sbx_err_sys (err, "open directory '%s'", rel);
      hash_entry (x, rel, &st, uid, gid);
      if (copy_xattrs_hash (s, d, x->hash, err) < 0)
        return sbx_err_wrap (err, "'%s'", rel);
      if (img_copy_tree (x, s, d, rel, err) < 0)
        return -1;
      /* attributes last: a read-only directory must be filled first */
      if (x->dry)
        return 0;
      return set_attrs_fd (d, &st, uid, gid, err) < 0 ? sbx_err_wrap (err, "'%s'", rel) : 0;
    }
  if (S_ISREG (st.st_mode))
    {
      hash_entry (x, rel, &st, uid, gid);
      return copy_file (x, sfd, dfd, name, rel, &st, uid, gid, err);
    }
  if (S_ISLNK (st.st_mode))
    {
      char target[PATH_MAX];
      ssize_t n = readlinkat (sfd, name, target, sizeof target - 1);
      if (n < 0)
        return sbx_err_sys (err, "readlink '%s'", rel);
      target[n] = '\0';
      hash_entry (x, rel, &st, uid, gid);
      img_hash_update (x->hash, target, (size_t) n + 1);
      if (x->dry)
        return 0;
      if (symlinkat (target, dfd, name) < 0)
        return sbx_err_sys (err, "symlink '%s'", rel);
      if (fchownat (dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return sbx_err_sys (err, "chown '%s'", rel);
      struct timespec ts[2] = { st.st_atim, st.st_mtim };
      utimensat (dfd, name, ts, AT_SYMLINK_NOFOLLOW);
      return 0;
    }
  if (img_is_whiteout (&st) || S_ISFIFO (st.st_mode))
    {
      hash_entry (x, rel, &st, uid, gid);
      if (x->dry)
        return 0;
      if (mknodat (dfd, name, st.st_mode & (S_IFMT | 0777), st.st_rdev) < 0)
        return sbx_err_sys (err, "mknod '%s'", rel);
      if (fchownat (dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return sbx_err_sys (err, "chown '%s'", rel);
      struct timespec ts[2] = { st.st_atim, st.st_mtim };
      if (utimensat (dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return sbx_err_sys (err, "set times of '%s'", rel);
      return 0;
    }
  /* Sockets and real device nodes have no place in an image (a sandbox cannot make
   * devices anyway). */
  x->entries--;
  return 0;
}

int
img_copy_tree (struct img_copy *x, int sfd, int dfd, const char *rel, struct sbx_err *err)
{
  static __thread int depth;
  if (depth > MAX_DEPTH)
    return sbx_err_set (err, SBX_E_INVALID, ELOOP, "tree deeper than %d at '%s'", MAX_DEPTH,
                        rel);
  char **names;
  size_t n;
  if (img_list_names (sfd, &names, &n) < 0)
    return sbx_err_sys (err, "list '%s'", *rel ? rel : "/");
  int r = 0;
  depth++;
  for (size_t i = 0; i < n && r == 0; i++)
    {
      char sub[PATH_MAX];
      if (join (sub, sizeof sub, rel, names[i]) < 0)
        r = sbx_err_sys (err, "path under '%s'", rel);
      else
        r = img_copy_entry (x, sfd, dfd, names[i], sub, err);
    }
  depth--;
  img_names_free (names, n);
  return r;
}
