/* Starting one command: pipes, vfork, and the child's few steps before execve.
 *
 * vfork: the parent is suspended until the child execs or exits, which is exactly when
 * the CLOEXEC error pipe has its answer, and it skips copying page tables (page faults
 * are expensive on this machine kind). The child shares our memory, so it makes only
 * syscalls on data built here, never malloc, stdio or writes to shared variables; it
 * reports failures as a fixed-size record on the error pipe and _exits.
 *
 * Child steps, in order (enum stage):
 *   1. signal mask emptied, SIGPIPE back to default (the only disposition we change)
 *   2. setsid: own session and process group (EXEC_SIGNAL and timeouts hit the group)
 *   3. oom_score_adj "0": PID 1 runs at -999 so the OOM killer spares it, commands must not
 *   4. chdir(cwd)
 *   5. stdin (/dev/null or the pipe), stdout and stderr pipes on 0-2; RLIMIT_NOFILE as we got it.
 *      With a pty, its slave is 0-2 and becomes the controlling terminal (TIOCSCTTY).
 *   6. error pipe on fd 3 (CLOEXEC), close_range(4, ~0U): nothing else leaks into the command
 *   7. execve, searching PATH of the request's env. On failure the command "runs" and
 *      fails like in a shell: "sbx: argv0: reason" on its stderr, exit 127 (not found) or 126. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum stage { STAGE_SIGNALS = 1, STAGE_SETSID, STAGE_OOM, STAGE_CHDIR, STAGE_STDIO, STAGE_TTY,
             STAGE_FDS, STAGE_EXEC };

struct child_report {
  int stage;
  int err;
};

/* Everything the child needs, prepared by the parent. */
struct child_ctx {
  char *const *argv;
  char *const *env;
  const char *cwd;
  const char *path; /* PATH to search */
  int stdin_fd, stdout_fd, stderr_fd, report_fd;
  bool reset_oom;
  bool ctty; /* fd 0 is a pty slave: make it the controlling terminal */
  const struct rlimit *nofile;
};

static const char *
stage_name (int stage)
{
  switch (stage)
    {
    case STAGE_SIGNALS: return "reset signals";
    case STAGE_SETSID: return "setsid";
    case STAGE_OOM: return "reset oom_score_adj";
    case STAGE_CHDIR: return "chdir";
    case STAGE_STDIO: return "set up stdio";
    case STAGE_TTY: return "set the controlling terminal";
    case STAGE_FDS: return "close fds";
    default: return "exec";
    }
}

static void
child_report (int fd, int stage, int err)
{
  struct child_report rep = { stage, err };
  ssize_t n;
  do
    n = write (fd, &rep, sizeof rep);
  while (n < 0 && errno == EINTR);
}

static _Noreturn void
child_fail (const struct child_ctx *cx, int stage)
{
  child_report (cx->report_fd, stage, errno);
  _exit (127);
}

/* execve with a PATH search the way execvp does it, but over the request's PATH (execvpe
 * would read ours). Returns the errno to report. */
static int
exec_search (const struct child_ctx *cx)
{
  const char *file = cx->argv[0];
  if (strchr (file, '/'))
    {
      execve (file, cx->argv, cx->env);
      return errno;
    }
  if (!*file)
    return ENOENT;
  size_t flen = strlen (file);
  char buf[PATH_MAX];
  bool eacces = false;
  const char *p = cx->path;
  for (;;)
    {
      const char *end = strchrnul (p, ':');
      size_t dlen = (size_t) (end - p);
      const char *dir = dlen ? p : ".";
      if (!dlen)
        dlen = 1;
      if (dlen + 1 + flen + 1 <= sizeof buf)
        {
          memcpy (buf, dir, dlen);
          buf[dlen] = '/';
          memcpy (buf + dlen + 1, file, flen + 1);
          execve (buf, cx->argv, cx->env);
          switch (errno)
            {
            case EACCES:
              eacces = true;
              break;
            case ENOENT:
            case ENOTDIR:
            case ESTALE:
            case ENODEV:
            case ETIMEDOUT:
            case ENAMETOOLONG:
            case ELOOP:
              break;
            default:
              return errno;
            }
        }
      if (!*end)
        break;
      p = end + 1;
    }
  return eacces ? EACCES : ENOENT;
}

static void
append (char *buf, size_t cap, size_t *len, const char *s)
{
  size_t n = strlen (s);
  if (n > cap - *len)
    n = cap - *len;
  memcpy (buf + *len, s, n);
  *len += n;
}

static _Noreturn void
child_main (const struct child_ctx *cx)
{
  sigset_t none;
  sigemptyset (&none);
  struct sigaction dfl = { .sa_handler = SIG_DFL };
  if (sigaction (SIGPIPE, &dfl, NULL) < 0 || sigprocmask (SIG_SETMASK, &none, NULL) < 0)
    child_fail (cx, STAGE_SIGNALS);
  if (setsid () < 0)
    child_fail (cx, STAGE_SETSID);
  if (cx->reset_oom)
    {
      int fd = open ("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write (fd, "0", 1) != 1)
        child_fail (cx, STAGE_OOM);
      close (fd);
    }
  if (chdir (cx->cwd) < 0)
    child_fail (cx, STAGE_CHDIR);
  if (dup2 (cx->stdin_fd, 0) < 0 || dup2 (cx->stdout_fd, 1) < 0 || dup2 (cx->stderr_fd, 2) < 0
      || setrlimit (RLIMIT_NOFILE, cx->nofile) < 0)
    child_fail (cx, STAGE_STDIO);
  if (cx->ctty && ioctl (0, TIOCSCTTY, 0) < 0)
    child_fail (cx, STAGE_TTY);
  /* The report pipe moves to fd 3 (it is above 4: fds 3 and 4 are ours). */
  if (dup3 (cx->report_fd, 3, O_CLOEXEC) < 0)
    child_fail (cx, STAGE_FDS);
  struct child_ctx moved = *cx;
  moved.report_fd = 3;
  cx = &moved;
  if (syscall (SYS_close_range, 4, ~0U, 0) < 0)
    child_fail (cx, STAGE_FDS);

  int e = exec_search (cx);

  /* Like a shell: 127 when there is nothing to run, 126 when it cannot be run. */
  char msg[512];
  size_t len = 0;
  append (msg, sizeof msg - 1, &len, "sbx: ");
  append (msg, sizeof msg - 1, &len, cx->argv[0]);
  append (msg, sizeof msg - 1, &len, ": ");
  const char *desc = agent_errdesc (e);
  append (msg, sizeof msg - 1, &len, desc ? desc : "cannot execute");
  msg[len++] = '\n';
  ssize_t n;
  do
    n = write (2, msg, len);
  while (n < 0 && errno == EINTR);
  child_report (cx->report_fd, STAGE_EXEC, e);
  _exit (e == ENOENT ? 127 : 126);
}

/* The dynamic loader of the usual programs, by the ABI's fixed name. */
#if defined(__x86_64__)
#define LOADER "/lib64/ld-linux-x86-64.so.2"
#elif defined(__aarch64__)
#define LOADER "/lib/ld-linux-aarch64.so.1"
#endif

/* The first command in a new sandbox resolves its paths in a new overlay mount: every
 * component (PATH directories, the loader and its symlinks, ld.so.cache, libc) gets its
 * overlay dentry and inode on that exec, ~110 us more in its execve than in a later exec
 * on equally cold caches (bench of a pool member's first exec; ~40 us with this). Looked
 * up here at start, for a pool member long before its claim, they cost the first command
 * nothing. stat and readlink only: nothing is opened, read or changed, nothing runs, and
 * a missing path is fine (the lookup is all we want). Cold and pool sandboxes both do it. */
void
agent_warm_exec_paths (void)
{
  struct stat st;
  const char *p = DEFAULT_PATH;
  char buf[PATH_MAX];
  for (;;)
    {
      const char *end = strchrnul (p, ':');
      size_t n = (size_t) (end - p);
      if (n && n < sizeof buf)
        {
          memcpy (buf, p, n);
          buf[n] = '\0';
          stat (buf, &st);
        }
      if (!*end)
        break;
      p = end + 1;
    }
  stat ("/etc/ld.so.cache", &st);
#ifdef LOADER
  if (stat (LOADER, &st) < 0)
    return;
  /* glibc's libc.so.6 sits next to the loader, under the name the loader's symlink gives
   * (Debian: /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...), which is the
   * directory ld.so.cache names too. */
  ssize_t n = readlink (LOADER, buf, sizeof buf - 1);
  if (n <= 0 || buf[0] != '/')
    return;
  buf[n] = '\0';
  char *slash = strrchr (buf, '/');
  if ((size_t) (slash - buf) + sizeof "/libc.so.6" > sizeof buf)
    return;
  strcpy (slash, "/libc.so.6");
  stat (buf, &st);
#endif
}

/* Kept apart so nothing of agent_spawn's frame lives across vfork. */
static __attribute__ ((noinline)) pid_t
spawn_child (const struct child_ctx *cx)
{
  pid_t pid = vfork ();
  if (pid == 0)
    child_main (cx);
  return pid;
}

static const char *
find_path (const struct proto_exec_req *req)
{
  for (size_t i = 0; i < req->envc; i++)
    if (!strncmp (req->env[i], "PATH=", 5))
      return req->env[i] + 5;
  return DEFAULT_PATH;
}

static void
close_pair (int p[2])
{
  for (int i = 0; i < 2; i++)
    if (p[i] >= 0)
      {
        close (p[i]);
        p[i] = -1;
      }
}

/* Wait for the child's report: 0 when it exec'd (or "ran" and failed like a shell). */
static int
child_result (int rep_rd, const struct child_ctx *cx, const struct proto_exec_req *req,
              struct sbx_err *err)
{
  struct child_report r;
  ssize_t n = sbx_read_full (rep_rd, &r, sizeof r);
  if (n == (ssize_t) sizeof r && r.stage != STAGE_EXEC)
    {
      /* It never became the command: the reaper collects it like any orphan. */
      errno = r.err;
      sbx_err_sys (err, "%s \"%s\"", stage_name (r.stage),
                   r.stage == STAGE_CHDIR ? cx->cwd : req->argv[0]);
      err->code = r.stage == STAGE_CHDIR ? SBX_E_INVALID : SBX_E_EXEC_FAILED;
      return -1;
    }
  return 0;
}

/* A new pty from /dev/ptmx (the sandbox's own devpts instance); the slave is opened from
 * the master with TIOCGPTPEER, so no path under /dev/pts is looked up. */
static int
spawn_pty (const struct agent *a, const struct proto_exec_req *req, struct spawn_io *io,
           struct sbx_err *err)
{
  cleanup_close int master = posix_openpt (O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return sbx_err_sys (err, "open /dev/ptmx");
  int unlock = 0;
  if (ioctl (master, TIOCSPTLCK, &unlock) < 0)
    return sbx_err_sys (err, "unlock pty");
  struct winsize ws = { .ws_row = (unsigned short) (req->rows ? req->rows : 24),
                        .ws_col = (unsigned short) (req->cols ? req->cols : 80) };
  if (ioctl (master, TIOCSWINSZ, &ws) < 0)
    return sbx_err_sys (err, "set pty size");
  cleanup_close int slave = ioctl (master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0)
    return sbx_err_sys (err, "open pty slave");
  int rep[2] = { -1, -1 };
  if (pipe2 (rep, O_CLOEXEC) < 0)
    return sbx_err_sys (err, "pipe");
  cleanup_close int rep_rd = rep[0];
  cleanup_close int rep_wr = rep[1];
  cleanup_close int dup_in = fcntl (master, F_DUPFD_CLOEXEC, 0);
  if (dup_in < 0 || sbx_set_nonblock (master, 1) < 0)
    return sbx_err_sys (err, "pty master");
  struct child_ctx cx = {
    .argv = req->argv,
    .env = req->env,
    .cwd = req->cwd ? req->cwd : "/",
    .path = find_path (req),
    .stdin_fd = slave,
    .stdout_fd = slave,
    .stderr_fd = slave,
    .report_fd = rep_wr,
    .reset_oom = a->reset_oom,
    .ctty = true,
    .nofile = &a->nofile,
  };
  pid_t pid = spawn_child (&cx);
  if (pid < 0)
    {
      sbx_err_sys (err, "vfork");
      err->code = errno == EAGAIN ? SBX_E_CAPACITY : SBX_E_INTERNAL;
      return -1;
    }
  close (steal_fd (&rep_wr));
  close (steal_fd (&slave)); /* the master reads EIO once every slave holder is gone */
  if (child_result (rep_rd, &cx, req, err) < 0)
    return -1;
  io->pid = pid;
  io->out_fd = steal_fd (&master);
  io->err_fd = -1;
  io->in_fd = req->stdin_mode == PROTO_STDIN_PIPE ? steal_fd (&dup_in) : -1;
  return 0;
}

int
agent_spawn (const struct agent *a, const struct proto_exec_req *req, struct spawn_io *io,
             struct sbx_err *err)
{
  int out[2] = { -1, -1 }, errp[2] = { -1, -1 }, in[2] = { -1, -1 }, rep[2] = { -1, -1 };
  int rc = -1;
  if (req->pty)
    return spawn_pty (a, req, io, err);
  bool want_in = req->stdin_mode == PROTO_STDIN_PIPE;
  if (pipe2 (out, O_CLOEXEC) < 0 || pipe2 (errp, O_CLOEXEC) < 0 || pipe2 (rep, O_CLOEXEC) < 0
      || (want_in && pipe2 (in, O_CLOEXEC) < 0))
    {
      sbx_err_sys (err, "pipe");
      err->code = errno == EMFILE || errno == ENFILE ? SBX_E_CAPACITY : SBX_E_INTERNAL;
      goto out;
    }
  if (sbx_set_nonblock (out[0], 1) < 0 || sbx_set_nonblock (errp[0], 1) < 0
      || (want_in && sbx_set_nonblock (in[1], 1) < 0))
    {
      sbx_err_sys (err, "set pipes non-blocking");
      goto out;
    }

  struct child_ctx cx = {
    .argv = req->argv,
    .env = req->env,
    .cwd = req->cwd ? req->cwd : "/",
    .path = find_path (req),
    .stdin_fd = want_in ? in[0] : a->devnull,
    .stdout_fd = out[1],
    .stderr_fd = errp[1],
    .report_fd = rep[1],
    .reset_oom = a->reset_oom,
    .nofile = &a->nofile,
  };
  pid_t pid = spawn_child (&cx);
  if (pid < 0)
    {
      sbx_err_sys (err, "vfork");
      err->code = errno == EAGAIN ? SBX_E_CAPACITY : SBX_E_INTERNAL;
      goto out;
    }
  /* The child has exec'd or exited: the report is there, or EOF. */
  close (rep[1]);
  rep[1] = -1;
  if (child_result (rep[0], &cx, req, err) < 0)
    goto out;
  io->pid = pid;
  io->out_fd = steal_fd (&out[0]);
  io->err_fd = steal_fd (&errp[0]);
  io->in_fd = want_in ? steal_fd (&in[1]) : -1;
  rc = 0;
out:
  close_pair (out);
  close_pair (errp);
  close_pair (in);
  close_pair (rep);
  return rc;
}
