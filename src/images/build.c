/* Building a built-in image: run mmdebstrap into a private build directory, make the
 * result fit to be a read-only lower layer, record its facts, rename it into place.
 *
 * mmdebstrap runs with a fixed argv (the only variable parts are constants from the
 * catalog; the target is the relative path "rootfs" after a chdir), a clean environment,
 * in its own mount namespace (its /proc, /sys and /dev mounts in the chroot vanish with
 * it even if everything is killed), and holding a dup of the images lock so a crash of
 * the caller cannot let a second build start while this one still writes. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MMDEBSTRAP "/usr/bin/mmdebstrap"
#define SUITE "bookworm"
#define MERGED_USR_HOOKS "/usr/share/mmdebstrap/hooks/merged-usr"

/* Variables passed through to mmdebstrap (apt honours the proxy ones); nothing else. */
static const char *const pass_env[]
    = { "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", NULL };

struct build_cmd {
  char include[256];
  const char *argv[16];
  char env_buf[8][1024];
  const char *envp[12];
};

static void
make_cmd (const struct img_builtin *b, struct build_cmd *c)
{
  int n = 0;
  c->argv[n++] = "mmdebstrap";
  c->argv[n++] = "--variant=minbase";
  if (b->include)
    {
      snprintf (c->include, sizeof c->include, "--include=%s", b->include);
      c->argv[n++] = c->include;
    }
  c->argv[n++] = "--mode=root";
  c->argv[n++] = "--format=directory";
  /* merged /usr the debootstrap way (symlinks + usr-is-merged), as Debian's docker images
   * do: otherwise bookworm pulls in usrmerge and with it ~55 MB of perl */
  c->argv[n++] = "--hook-dir=" MERGED_USR_HOOKS;
  /* No man pages, docs or translations: a sandbox never reads them (copyrights stay). */
  c->argv[n++] = "--dpkgopt=path-exclude=/usr/share/man/*";
  c->argv[n++] = "--dpkgopt=path-exclude=/usr/share/doc/*";
  c->argv[n++] = "--dpkgopt=path-include=/usr/share/doc/*/copyright";
  c->argv[n++] = "--dpkgopt=path-exclude=/usr/share/locale/*";
  c->argv[n++] = "--dpkgopt=path-include=/usr/share/locale/locale.alias";
  c->argv[n++] = "--dpkgopt=path-exclude=/usr/share/info/*";
  c->argv[n++] = SUITE;
  c->argv[n++] = "rootfs";
  c->argv[n] = NULL;

  int e = 0;
  c->envp[e++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  c->envp[e++] = "LC_ALL=C.UTF-8";
  c->envp[e++] = "HOME=/root";
  for (int i = 0; pass_env[i] && e < 10; i++)
    {
      const char *v = getenv (pass_env[i]);
      if (!v)
        continue;
      snprintf (c->env_buf[i], sizeof c->env_buf[i], "%s=%s", pass_env[i], v);
      c->envp[e++] = c->env_buf[i];
    }
  c->envp[e] = NULL;
}

static void
child_die (const char *what)
{
  /* Only async-signal-safe calls here: the caller may be a threaded daemon. */
  const char *s = strerror (errno);
  (void) !write (2, "sbx: image build: ", 18);
  (void) !write (2, what, strlen (what));
  (void) !write (2, ": ", 2);
  (void) !write (2, s, strlen (s));
  (void) !write (2, "\n", 1);
  _exit (127);
}

static __attribute__ ((noreturn)) void
child_exec (const char *build_dir, int lock_fd, int log_fd, const struct build_cmd *c)
{
  sigset_t none;
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  signal (SIGPIPE, SIG_DFL);

  if (log_fd >= 0)
    {
      if (dup2 (log_fd, 1) < 0 || dup2 (log_fd, 2) < 0)
        _exit (127);
    }
  else if (dup2 (2, 1) < 0) /* never write on the caller's stdout */
    _exit (127);
  int null = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2 (null, 0) < 0)
    child_die ("open /dev/null");
  int lk = fcntl (lock_fd, F_DUPFD, 10);
  if (lk < 0 || dup2 (lk, 3) < 0)
    child_die ("dup lock");
  close_range (4, ~0U, 0);

  if (unshare (CLONE_NEWNS) < 0)
    child_die ("unshare mount namespace");
  if (mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    child_die ("make / private");
  if (chdir (build_dir) < 0)
    child_die ("chdir to build directory");
  execve (MMDEBSTRAP, (char *const *) c->argv, (char *const *) c->envp);
  child_die ("exec " MMDEBSTRAP);
  _exit (127);
}

/* Last lines of the log, on one line, for an error message. */
static void
log_tail (const char *log_path, char *out, size_t cap)
{
  out[0] = '\0';
  cleanup_close int fd = open (log_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[1024];
  off_t end = lseek (fd, 0, SEEK_END);
  off_t start = end > (off_t) (sizeof buf - 1) ? end - (off_t) (sizeof buf - 1) : 0;
  if (lseek (fd, start, SEEK_SET) < 0)
    return;
  ssize_t n = sbx_read_full (fd, buf, sizeof buf - 1);
  if (n <= 0)
    return;
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  /* keep what fits, ending at the end of the log */
  const char *p = buf;
  if ((size_t) n >= cap)
    p = buf + n - (cap - 1);
  snprintf (out, cap, "%s", p);
  for (char *q = out; *q; q++)
    if (*q == '\n' || *q == '\r')
      *q = '|';
}

static int
run_mmdebstrap (const char *build_dir, const struct img_builtin *b, int lock_fd,
                const char *log_path, struct sbx_err *err)
{
  struct build_cmd cmd;
  make_cmd (b, &cmd);
  cleanup_close int log_fd = -1;
  if (log_path)
    {
      log_fd = open (log_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (log_fd < 0)
        return sbx_err_sys (err, "open build log '%s'", log_path);
    }
  fflush (stderr);
  pid_t pid = fork ();
  if (pid < 0)
    return sbx_err_sys (err, "fork");
  if (pid == 0)
    child_exec (build_dir, lock_fd, log_fd, &cmd);

  int status;
  while (waitpid (pid, &status, 0) < 0)
    if (errno != EINTR)
      return sbx_err_sys (err, "wait for mmdebstrap");
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    return 0;

  char how[64];
  if (WIFEXITED (status))
    snprintf (how, sizeof how, "exited with status %d", WEXITSTATUS (status));
  else
    snprintf (how, sizeof how, "killed by signal %d", WTERMSIG (status));
  if (!log_path)
    return sbx_err_set (err, SBX_E_INTERNAL, 0, "mmdebstrap %s (its output is above)", how);
  char tail[300];
  log_tail (log_path, tail, sizeof tail);
  return sbx_err_set (err, SBX_E_INTERNAL, 0, "mmdebstrap %s (log '%s'): ...%s", how, log_path,
                      tail);
}

int
img_build (const char *images_dir, const struct img_builtin *b, int lock_fd, int progress,
           struct sbx_err *err)
{
  if (geteuid () != 0)
    return sbx_err_set (err, SBX_E_INTERNAL, EPERM,
                        "build image %s: building needs root (mmdebstrap --mode=root)", b->name);
  if (access (MMDEBSTRAP, X_OK) < 0)
    return sbx_err_sys (err, "build image %s: " MMDEBSTRAP " (Debian package mmdebstrap; "
                             "scripts/install-deps.sh installs it)", b->name);

  char rnd[SBX_ID_MAX];
  if (sbx_id_new ("b", rnd) < 0)
    return sbx_err_sys (err, "build image %s: random id", b->name);
  char build_dir[PATH_MAX], rootfs[PATH_MAX], final_dir[PATH_MAX], log_path[PATH_MAX];
  if (snprintf (build_dir, sizeof build_dir, "%s/" IMG_BUILD_PREFIX "%s-%s", images_dir, b->dir,
                rnd) >= (int) sizeof build_dir
      || snprintf (rootfs, sizeof rootfs, "%s/rootfs", build_dir) >= (int) sizeof rootfs
      || snprintf (final_dir, sizeof final_dir, "%s/%s", images_dir, b->dir)
             >= (int) sizeof final_dir
      || snprintf (log_path, sizeof log_path, "%s/%s.build.log", images_dir, b->dir)
             >= (int) sizeof log_path)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "image path too long");

  if (mkdir (build_dir, 0755) < 0)
    return sbx_err_sys (err, "build image %s: mkdir '%s'", b->name, build_dir);

  int64_t t0 = sbx_mono_ns ();
  if (progress)
    fprintf (stderr, "sbx: building image %s (first use, %s)...\n", b->name, b->eta);
  int r = run_mmdebstrap (build_dir, b, lock_fd, progress ? NULL : log_path, err);
  if (r == 0)
    r = img_finalize_rootfs (rootfs, err);
  uint64_t size = 0;
  if (r == 0 && img_du (rootfs, &size) < 0)
    r = sbx_err_sys (err, "measure '%s'", rootfs);
  if (r == 0)
    r = img_write_info (build_dir, b, sbx_now_ms (), size, err);
  if (r == 0 && rename (build_dir, final_dir) < 0)
    r = sbx_err_sys (err, "rename '%s' to '%s'", build_dir, final_dir);
  if (r < 0)
    {
      if (sbx_rm_rf (build_dir) < 0)
        LOG_WARN ("image build: cannot remove '%s': %s", build_dir, strerror (errno));
      return sbx_err_wrap (err, "build image %s", b->name);
    }
  if (!progress)
    unlink (log_path); /* kept only when a build fails */
  if (progress)
    fprintf (stderr, "sbx: image %s ready (%.1f s, %.0f MB)\n", b->name,
             (double) (sbx_mono_ns () - t0) / 1e9, (double) size / 1e6);
  return 0;
}
