/* EINTR-safe fd helpers and small-file access. */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void
sbx_freep (void *p)
{
  free (*(void **) p);
}

void
sbx_closep (int *fd)
{
  if (*fd >= 0)
    {
      int saved = errno;
      close (*fd);
      errno = saved;
      *fd = -1;
    }
}

int
sbx_write_all (int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0)
    {
      ssize_t n = write (fd, p, len);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      p += n;
      len -= (size_t) n;
    }
  return 0;
}

ssize_t
sbx_read_full (int fd, void *buf, size_t len)
{
  char *p = buf;
  size_t got = 0;
  while (got < len)
    {
      ssize_t n = read (fd, p + got, len - got);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      if (n == 0)
        break;
      got += (size_t) n;
    }
  return (ssize_t) got;
}

int
sbx_send_fds (int sock, const void *buf, size_t len, const int *fds, int nfds)
{
  char ctrl[CMSG_SPACE (sizeof (int) * 8)];
  struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (nfds < 0 || nfds > 8)
    {
      errno = EINVAL;
      return -1;
    }
  if (nfds > 0)
    {
      memset (ctrl, 0, sizeof ctrl);
      msg.msg_control = ctrl;
      msg.msg_controllen = CMSG_SPACE (sizeof (int) * (size_t) nfds);
      struct cmsghdr *c = CMSG_FIRSTHDR (&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN (sizeof (int) * (size_t) nfds);
      memcpy (CMSG_DATA (c), fds, sizeof (int) * (size_t) nfds);
    }
  for (;;)
    {
      ssize_t n = sendmsg (sock, &msg, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      return n < 0 ? -1 : 0;
    }
}

ssize_t
sbx_recv_fds (int sock, void *buf, size_t len, int *fds, int *nfds)
{
  char ctrl[CMSG_SPACE (sizeof (int) * 8)];
  struct iovec iov = { .iov_base = buf, .iov_len = len };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                        .msg_controllen = sizeof ctrl };
  int max = *nfds;
  *nfds = 0;
  ssize_t n;
  do
    n = recvmsg (sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR (&msg); c; c = CMSG_NXTHDR (&msg, c))
    {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
        continue;
      int cnt = (int) ((c->cmsg_len - CMSG_LEN (0)) / sizeof (int));
      int *in = (int *) CMSG_DATA (c);
      for (int i = 0; i < cnt; i++)
        {
          if (*nfds < max)
            fds[(*nfds)++] = in[i];
          else
            close (in[i]); /* never leak surplus fds */
        }
    }
  return n;
}

int
sbx_set_nonblock (int fd, int on)
{
  int fl = fcntl (fd, F_GETFL);
  if (fl < 0)
    return -1;
  fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  return fcntl (fd, F_SETFL, fl);
}

int
sbx_set_cloexec (int fd, int on)
{
  int fl = fcntl (fd, F_GETFD);
  if (fl < 0)
    return -1;
  fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
  return fcntl (fd, F_SETFD, fl);
}

int
sbx_write_fileat (int dirfd, const char *path, const char *s)
{
  int fd = openat (dirfd, path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  int r = sbx_write_all (fd, s, strlen (s));
  int saved = errno;
  close (fd);
  errno = saved;
  return r;
}

int
sbx_write_file (const char *path, const char *s)
{
  return sbx_write_fileat (AT_FDCWD, path, s);
}

ssize_t
sbx_read_file (const char *path, char *buf, size_t cap)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = sbx_read_full (fd, buf, cap - 1);
  int saved = errno;
  close (fd);
  errno = saved;
  if (n >= 0)
    buf[n] = '\0';
  return n;
}

int
sbx_mkdir_p (const char *path, mode_t mode)
{
  char tmp[4096];
  size_t len = strlen (path);
  if (len == 0 || len >= sizeof tmp)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  memcpy (tmp, path, len + 1);
  for (char *p = tmp + 1; *p; p++)
    {
      if (*p != '/')
        continue;
      *p = '\0';
      if (mkdir (tmp, mode) < 0 && errno != EEXIST)
        return -1;
      *p = '/';
    }
  if (mkdir (tmp, mode) < 0 && errno != EEXIST)
    return -1;
  return 0;
}

DIR *
sbx_opendirat (int dirfd, const char *name)
{
  int fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  DIR *d = fdopendir (fd);
  if (!d)
    {
      int saved = errno;
      close (fd);
      errno = saved;
    }
  return d;
}

static int
rm_rf_at (int parent, const char *name, dev_t dev, int depth)
{
  struct stat st;
  if (fstatat (parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR (st.st_mode))
    return unlinkat (parent, name, 0) < 0 && errno != ENOENT ? -1 : 0;
  if (st.st_dev != dev || depth > 256)
    {
      errno = EXDEV; /* a mount point or absurd depth: refuse rather than cross */
      return -1;
    }
  DIR *d = sbx_opendirat (parent, name);
  if (!d)
    return -1;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir (d)))
    {
      if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
        continue;
      if (rm_rf_at (dirfd (d), e->d_name, dev, depth + 1) < 0)
        rc = -1;
    }
  closedir (d);
  if (unlinkat (parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    rc = -1;
  return rc;
}

int
sbx_rm_rf (const char *path)
{
  struct stat st;
  if (lstat (path, &st) < 0)
    return errno == ENOENT ? 0 : -1;
  return rm_rf_at (AT_FDCWD, path, st.st_dev, 0);
}
