/* The compiled seccomp programs on disk: <state_dir>/cache/seccomp-<key>.bpf, so that a
 * process that starts one sandbox (`sbx run`) loads ~4 KiB instead of spending ~2 ms in
 * libseccomp. The file is trusted only as far as the directory is: it must be a regular
 * file owned by us and writable by nobody else, in a 0700 directory owned by us (the
 * state dir is root's; whoever can write there can replace the images too). Anything
 * unexpected is a miss, and the caller compiles.
 *
 * Layout: struct cache_hdr, then the programs' instructions back to back. The header
 * repeats the key (a renamed file does not match) and carries a checksum of the
 * instructions (a torn or corrupted file does not load). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "SBXBPF1\n"

struct cache_hdr {
  char magic[8];
  uint64_t key;
  uint32_t len[2]; /* instructions of each program */
  uint64_t sum;    /* FNV-1a of the instructions */
};

static uint64_t
checksum (const struct sock_fprog p[2])
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (int k = 0; k < 2; k++)
    {
      const unsigned char *b = (const unsigned char *) p[k].filter;
      for (size_t i = 0; i < p[k].len * sizeof (struct sock_filter); i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    }
  return h;
}

/* The cache directory, opened only if it is ours and private; create it if asked. */
static int
open_cache_dir (const char *state_dir, int create)
{
  char dir[PATH_MAX];
  if (snprintf (dir, sizeof dir, "%s/cache", state_dir) >= (int) sizeof dir)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  if (create && mkdir (dir, 0700) < 0 && errno != EEXIST)
    return -1;
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat (fd, &st) < 0 || st.st_uid != geteuid () || (st.st_mode & 077))
    {
      close (fd);
      errno = EPERM;
      return -1;
    }
  return fd;
}

static void
file_name (char out[64], uint64_t key)
{
  snprintf (out, 64, "seccomp-%016llx.bpf", (unsigned long long) key);
}

int
rt_seccomp_cache_load (const char *state_dir, uint64_t key, struct sock_fprog out[2])
{
  cleanup_close int dfd = open_cache_dir (state_dir, 0);
  if (dfd < 0)
    return -1;
  char name[64];
  file_name (name, key);
  cleanup_close int fd = openat (dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  struct stat st;
  size_t max = sizeof (struct cache_hdr) + 2 * BPF_MAXINSNS * sizeof (struct sock_filter);
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_uid != geteuid ()
      || (st.st_mode & 022) || st.st_size < (off_t) sizeof (struct cache_hdr)
      || (size_t) st.st_size > max)
    {
      LOG_DEBUG ("seccomp cache: ignoring %s (owner, mode or size)", name);
      return -1;
    }
  cleanup_free char *buf = malloc ((size_t) st.st_size);
  if (!buf || sbx_read_full (fd, buf, (size_t) st.st_size) != (ssize_t) st.st_size)
    return -1;
  struct cache_hdr h;
  memcpy (&h, buf, sizeof h);
  size_t body = (size_t) st.st_size - sizeof h;
  if (memcmp (h.magic, CACHE_MAGIC, sizeof h.magic) != 0 || h.key != key || h.len[0] == 0
      || h.len[1] == 0 || h.len[0] > BPF_MAXINSNS || h.len[1] > BPF_MAXINSNS
      || body % sizeof (struct sock_filter) != 0
      || body / sizeof (struct sock_filter) != (size_t) h.len[0] + h.len[1])
    {
      LOG_DEBUG ("seccomp cache: ignoring %s (bad header or size)", name);
      return -1;
    }
  struct sock_fprog p[2] = { { 0 } };
  const char *src = buf + sizeof h;
  for (int k = 0; k < 2; k++)
    {
      size_t n = h.len[k] * sizeof (struct sock_filter);
      p[k].len = (unsigned short) h.len[k];
      p[k].filter = malloc (n);
      if (!p[k].filter)
        {
          free (p[0].filter);
          return -1;
        }
      memcpy (p[k].filter, src, n);
      src += n;
    }
  if (checksum (p) != h.sum)
    {
      LOG_DEBUG ("seccomp cache: ignoring %s (checksum)", name);
      free (p[0].filter);
      free (p[1].filter);
      return -1;
    }
  out[0] = p[0];
  out[1] = p[1];
  return 0;
}

int
rt_seccomp_cache_store (const char *state_dir, uint64_t key, const struct sock_fprog p[2])
{
  cleanup_close int dfd = open_cache_dir (state_dir, 1);
  if (dfd < 0)
    {
      LOG_DEBUG ("seccomp cache: %s/cache unusable: %s", state_dir, strerror (errno));
      return -1;
    }
  char name[64], tmp[96];
  file_name (name, key);
  /* A unique temp name: concurrent first runs each write their own, rename is atomic. */
  uint64_t salt = (uint64_t) sbx_mono_ns ();
  snprintf (tmp, sizeof tmp, ".%s.%d.%llx.tmp", name, (int) getpid (), (unsigned long long) salt);
  int fd = openat (dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  struct cache_hdr h = { .key = key, .len = { p[0].len, p[1].len }, .sum = checksum (p) };
  memcpy (h.magic, CACHE_MAGIC, sizeof h.magic);
  int rc = sbx_write_all (fd, &h, sizeof h);
  for (int k = 0; k < 2 && rc == 0; k++)
    rc = sbx_write_all (fd, p[k].filter, p[k].len * sizeof (struct sock_filter));
  int e = errno;
  if (close (fd) < 0 && rc == 0)
    {
      rc = -1;
      e = errno;
    }
  if (rc == 0 && renameat (dfd, tmp, dfd, name) < 0)
    {
      rc = -1;
      e = errno;
    }
  if (rc < 0)
    {
      unlinkat (dfd, tmp, 0);
      errno = e;
    }
  return rc;
}
