/* cgroup backend choice and the helpers both backends share (paths, knob I/O, killing
 * the pids of a cgroup.procs file, the bounded destroy loop). */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

int
rt_cgroup_init_with (struct rt_cgroup *cg, const char *root, const char *id,
                     const struct rt_cgroup_ops *ops, struct sbx_err *err)
{
  memset (cg, 0, sizeof *cg);
  cg->dirfd = -1;
  /* The id becomes a path component: only ids of our own syntax ever reach a path. */
  if (!sbx_id_valid (id, "sb"))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "cgroup: invalid sandbox id");
  if (!root || root[0] != '/')
    return sbx_err_set (err, SBX_E_INTERNAL, EINVAL, "cgroup: root must be an absolute path");
  /* Longest path built later: root/<ctrl>/sbx/<id>/<knob>; leave room for it. */
  if (strlen (root) + 128 + SBX_ID_MAX >= sizeof cg->root)
    return sbx_err_set (err, SBX_E_INTERNAL, ENAMETOOLONG, "cgroup: root path too long");
  strcpy (cg->root, root);
  strcpy (cg->id, id);
  cg->ops = ops;
  return 0;
}

int
rt_cgroup_init (struct rt_cgroup *cg, const char *root, const char *id, struct sbx_err *err)
{
  struct statfs sf;
  if (statfs (root, &sf) < 0)
    {
      sbx_err_sys (err, "cgroup: statfs '%s'", root);
      cg->ops = NULL;
      cg->dirfd = -1;
      return -1;
    }
  /* What is really mounted decides, not a config switch: a hybrid host (v1 controllers
   * and an empty cgroup2 at root/unified) has a tmpfs at root and gets v1. */
  const struct rt_cgroup_ops *ops
      = (unsigned long) sf.f_type == CGROUP2_SUPER_MAGIC ? &rt_cgroup_v2_ops : &rt_cgroup_v1_ops;
  return rt_cgroup_init_with (cg, root, id, ops, err);
}

int
rt_cgroup_destroy (struct rt_cgroup *cg)
{
  if (!cg || !cg->ops)
    return 0;
  /* Bounded: ~5 s. A dying task can keep the cgroup busy for a moment after SIGKILL, so
   * kill again and retry the rmdir until it goes through. The rmdir comes first: the
   * kernel refuses it (EBUSY) while any task is left, so a cgroup that is already empty,
   * the normal case once PID 1 was reaped, costs no read of cgroup.procs. */
  int64_t deadline = sbx_mono_ns () + 5000000000LL;
  for (unsigned round = 0;; round++)
    {
      if (cg->ops->remove (cg) == 0)
        return 0;
      if (errno != EBUSY)
        return -1;
      if (!cg->ops->is_empty (cg))
        cg->ops->kill_all (cg);
      if (sbx_mono_ns () > deadline)
        {
          LOG_WARN ("cgroup %s: tasks still present after 5 s; left in place", cg->id);
          errno = EBUSY;
          return -1;
        }
      rt_cg_backoff (round);
    }
}

int
rt_cg_path (char out[PATH_MAX], const char *root, const char *ctrl, const char *id)
{
  int n;
  if (ctrl && id)
    n = snprintf (out, PATH_MAX, "%s/%s/sbx/%s", root, ctrl, id);
  else if (ctrl)
    n = snprintf (out, PATH_MAX, "%s/%s/sbx", root, ctrl);
  else if (id)
    n = snprintf (out, PATH_MAX, "%s/sbx/%s", root, id);
  else
    n = snprintf (out, PATH_MAX, "%s/sbx", root);
  if (n < 0 || n >= PATH_MAX)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  return 0;
}

static int
open_knob (const char *dir, const char *file, int flags)
{
  char p[PATH_MAX];
  int n = snprintf (p, sizeof p, "%s/%s", dir, file);
  if (n < 0 || (size_t) n >= sizeof p)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  return open (p, flags | O_CLOEXEC | O_NOFOLLOW);
}

int
rt_cg_write (const char *dir, const char *file, const char *val, struct sbx_err *err)
{
  cleanup_close int fd = open_knob (dir, file, O_WRONLY);
  if (fd < 0 || sbx_write_all (fd, val, strlen (val)) < 0)
    return sbx_err_sys (err, "cgroup: write '%s' to %s/%s", val, dir, file);
  return 0;
}

static ssize_t
read_knob (const char *dir, const char *file, char *buf, size_t cap)
{
  cleanup_close int fd = open_knob (dir, file, O_RDONLY);
  if (fd < 0)
    return -1;
  ssize_t n = sbx_read_full (fd, buf, cap - 1);
  if (n >= 0)
    buf[n] = '\0';
  return n;
}

static int
parse_u64 (const char *s, uint64_t *out)
{
  while (*s == ' ')
    s++;
  if (!strncmp (s, "max", 3) || !strncmp (s, "-1", 2))
    {
      *out = UINT64_MAX;
      return 0;
    }
  if (*s < '0' || *s > '9')
    return -1;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++)
    {
      if (v > (UINT64_MAX - 9) / 10)
        return -1;
      v = v * 10 + (uint64_t) (*s - '0');
    }
  *out = v;
  return 0;
}

int
rt_cg_read_u64 (const char *dir, const char *file, uint64_t *out)
{
  char buf[64];
  if (read_knob (dir, file, buf, sizeof buf) < 0)
    return -1;
  if (parse_u64 (buf, out) < 0)
    {
      errno = EINVAL;
      return -1;
    }
  return 0;
}

int
rt_cg_read_key (const char *dir, const char *file, const char *key, uint64_t *out)
{
  char buf[4096];
  if (read_knob (dir, file, buf, sizeof buf) < 0)
    return -1;
  size_t kl = strlen (key);
  for (const char *line = buf; *line;)
    {
      if (!strncmp (line, key, kl) && line[kl] == ' ')
        {
          if (parse_u64 (line + kl + 1, out) < 0)
            break;
          return 0;
        }
      const char *nl = strchr (line, '\n');
      if (!nl)
        break;
      line = nl + 1;
    }
  errno = ENOENT;
  return -1;
}

struct procs_scan {
  void (*fn) (pid_t);
  uint64_t cur;
  int digits; /* digits seen in this line */
  int bad;    /* anything else seen in this line */
  int count;
};

/* End of one line of cgroup.procs: exactly one decimal pid, nothing else. */
static void
scan_end_line (struct procs_scan *ps)
{
  if (ps->digits && !ps->bad && ps->cur > 1 && ps->cur <= INT32_MAX)
    {
      ps->count++;
      /* Never signal 0, -1, init or ourselves, whatever a (possibly fake) procs file
       * says: kill(0)/kill(-1) semantics must be impossible here. */
      if ((pid_t) ps->cur == getpid ())
        LOG_WARN ("cgroup: own pid listed in a sandbox cgroup; not signalled");
      else if (ps->fn)
        ps->fn ((pid_t) ps->cur);
    }
  ps->digits = ps->bad = 0;
  ps->cur = 0;
}

/* Call fn on every pid of dir/cgroup.procs, streaming (a fork bomb can list thousands).
 * Returns the number of pids seen, or -1. A missing directory is an empty cgroup. */
static int
for_each_proc (const char *dir, void (*fn) (pid_t))
{
  cleanup_close int fd = open_knob (dir, "cgroup.procs", O_RDONLY);
  if (fd < 0)
    return errno == ENOENT ? 0 : -1;
  struct procs_scan ps = { .fn = fn };
  char buf[4096];
  for (;;)
    {
      ssize_t n = read (fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return errno == ENODEV ? ps.count : -1; /* ENODEV: removed under us */
      if (n == 0)
        {
          scan_end_line (&ps);
          return ps.count;
        }
      for (ssize_t i = 0; i < n; i++)
        {
          char c = buf[i];
          if (c >= '0' && c <= '9')
            {
              if (ps.cur <= INT32_MAX) /* saturate; anything above is not a pid */
                ps.cur = ps.cur * 10 + (uint64_t) (c - '0');
              ps.digits++;
            }
          else if (c == '\n')
            scan_end_line (&ps);
          else
            ps.bad = 1;
        }
    }
}

static void
sigkill_pid (pid_t pid)
{
  /* ESRCH (already gone) is fine. The pid cannot be recycled under us in the frozen
   * case; with cgroup.kill we never get here. */
  kill (pid, SIGKILL);
}

int
rt_cg_kill_procs (const char *dir)
{
  return for_each_proc (dir, sigkill_pid);
}

int
rt_cg_count_procs (const char *dir)
{
  return for_each_proc (dir, NULL);
}

void
rt_cg_backoff (unsigned round)
{
  long ns = 50000L << (round < 8 ? round : 8); /* 50 us, doubling, capped at 12.8 ms */
  if (ns > 10000000L)
    ns = 10000000L;
  struct timespec ts = { 0, ns };
  nanosleep (&ts, NULL);
}
