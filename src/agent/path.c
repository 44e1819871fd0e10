/* Paths of file requests, resolved inside the sandbox.
 *
 * sbx-init's root is the sandbox root, so nothing here can name a host path; these rules
 * make the sandbox's own links behave predictably too:
 *   - a path must be absolute, with no "." or ".." components (refused, not cleaned);
 *   - every lookup is openat2 from "/" with RESOLVE_IN_ROOT (a symlink, absolute or with
 *     "..", is resolved as if "/" were the root, which it is) and RESOLVE_NO_MAGICLINKS
 *     (/proc/<pid>/root, /proc/<pid>/cwd, /proc/self/fd/N are refused with ELOOP: they
 *     could name another mount namespace's tree);
 *   - operations that change the final component (write, append, mkdir, remove, rename)
 *     never follow it: it is opened with O_NOFOLLOW or replaced by rename, so a symlink
 *     planted there is replaced or removed itself, its target is untouched;
 *   - sbx-init's own /proc/<pid> (/proc/self, /proc/1 in a sandbox) is refused (EACCES):
 *     acting as PID 1, a request could read its environment and maps or write its comm
 *     and oom_score_adj, which the sandbox's programs may not. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <linux/magic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>

int
path_check (const char *path, struct sbx_err *err)
{
  if (!path || path[0] != '/')
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "path must be absolute");
  if (strlen (path) >= PATH_MAX)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "path too long");
  for (const char *p = path; *p;)
    {
      while (*p == '/')
        p++;
      size_t n = strcspn (p, "/");
      if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return sbx_err_set (err, SBX_E_INVALID, EINVAL,
                            "path must not contain \".\" or \"..\" components");
      p += n;
    }
  return 0;
}

/* Is fd (anything under procfs) inside our own /proc/<pid>? */
static bool
own_proc (int fd)
{
  struct statfs sf;
  if (fstatfs (fd, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC)
    return false;
  char link[64], target[256];
  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink (link, target, sizeof target - 1);
  if (n < 0)
    return true; /* cannot tell: refuse */
  target[n] = '\0';
  char mine[32];
  int k = snprintf (mine, sizeof mine, "/proc/%d", (int) getpid ());
  return !strncmp (target, mine, (size_t) k) && (target[k] == '/' || target[k] == '\0');
}

static int
refuse_own_proc (int fd, const char *path, struct sbx_err *err)
{
  if (!own_proc (fd))
    return fd;
  close (fd);
  return sbx_err_set (err, SBX_E_INVALID, EACCES, "%s: sbx-init's own /proc entries are off limits",
                      path);
}

int
path_open (struct agent *a, const char *path, int flags, uint64_t resolve, struct sbx_err *err)
{
  struct open_how how = { .flags = (uint64_t) (flags | O_CLOEXEC),
                          .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve };
  if (flags & O_CREAT)
    how.mode = 0644;
  int fd;
  do
    fd = (int) syscall (SYS_openat2, a->rootfd, path, &how, sizeof how);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    return sbx_err_set (err, errno == ENOENT ? SBX_E_NOT_FOUND : SBX_E_INVALID, errno,
                        "%s: %s", path, strerror (errno));
  return refuse_own_proc (fd, path, err);
}

int
path_open_parent (struct agent *a, const char *path, bool parents, char *name,
                  struct sbx_err *err)
{
  if (path_check (path, err) < 0)
    return -1;
  char buf[PATH_MAX];
  size_t len = strlen (path);
  while (len > 1 && path[len - 1] == '/')
    len--;
  memcpy (buf, path, len);
  buf[len] = '\0';
  char *slash = strrchr (buf, '/');
  if (!slash[1])
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "the root directory cannot be changed");
  if (strlen (slash + 1) > NAME_MAX)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "file name too long");
  strcpy (name, slash + 1);
  if (slash == buf)
    strcpy (buf, "/");
  else
    *slash = '\0';
  int fd = path_open (a, buf, O_PATH | O_DIRECTORY, 0, err);
  if (fd >= 0 || !parents || err->sys_errno != ENOENT)
    return fd;
  /* mkdir -p of the parent, one component at a time, each step resolved like the rest. */
  char pre[PATH_MAX] = "/";
  int dfd = path_open (a, "/", O_PATH | O_DIRECTORY, 0, err);
  for (char *p = buf + 1; dfd >= 0;)
    {
      while (*p == '/')
        p++;
      if (!*p)
        break;
      size_t n = strcspn (p, "/");
      char comp[NAME_MAX + 1];
      if (n > NAME_MAX)
        {
          close (dfd);
          return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "path component too long");
        }
      memcpy (comp, p, n);
      comp[n] = '\0';
      if (strlen (pre) > 1)
        strcat (pre, "/");
      strncat (pre, p, n);
      if (mkdirat (dfd, comp, 0755) < 0 && errno != EEXIST)
        {
          int e = errno;
          close (dfd);
          return sbx_err_set (err, SBX_E_INVALID, e, "mkdir %s: %s", pre, strerror (e));
        }
      close (dfd);
      dfd = path_open (a, pre, O_PATH | O_DIRECTORY, 0, err);
      p += n;
    }
  return dfd;
}
