/* Spawner processes: sbxd's sandboxes are cloned from small single-threaded helpers
 * instead of from sbxd itself.
 *
 * Why: clone3 copies the calling process's memory map and page tables, and the pre-exec
 * child then faults in (copy-on-write) every page it touches and tears the copy down
 * again at exec. For a busy multi-threaded sbxd (SQLite cache, HTTP buffers, thread
 * stacks, 39 shared libraries) that doubled the cost of a spawn (profile: clone 2.25 ms
 * and child 4.24 ms median from sbxd vs 1.1 and 2.2 from the small `sbx run` process).
 * A spawner is its own small program, sbx-spawner (src/spawner/main.c: this file, the
 * runtime, libc and libseccomp; about 30 mappings instead of sbxd's ~210), that sbxd
 * forks and executes at start, before any thread or database exists.
 *
 * Protocol, over a SOCK_SEQPACKET pair (fd 3 of the spawner), one exchange at a time per
 * spawner:
 *   request:  the rt_spec, packed (strings length-prefixed, limits as raw bytes: both
 *             ends are built from the same source tree)
 *   response: struct spawn_reply, with the sandbox's pidfd and scratch fd attached
 *             (SCM_RIGHTS) when it worked (the uid slot lock stays with sbx-init)
 * The sandbox is the spawner's child; the spawner ignores SIGCHLD, so the kernel reaps it
 * and sbxd watches and waits on the pidfd, as for a sandbox re-adopted after a restart.
 * A spawner that dies or stops answering is killed and not used again; spawns then run in
 * sbxd itself (correct, only slower). Spawners die with sbxd (PDEATHSIG); sandboxes do
 * not (they never do: sbxd's restart re-adopts them). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPAWN_REQ_MAX RT_SPAWN_REQ_MAX /* 16 lowers + 8 volumes of PATH_MAX paths fit */
#define SPAWN_REPLY_TIMEOUT_MS 30000 /* the spawn itself gives up after 10 s */
#define SPAWN_NFDS 2                 /* pidfd, scratch */

struct spawn_reply {
  int32_t ok;
  int32_t code;
  int32_t sys_errno;
  int32_t pid;
  uint32_t uid_base;
  uint32_t fd_mask; /* bit i: fd i of {pidfd, scratch} is attached */
  char msg[sizeof ((struct sbx_err *) 0)->msg];
};

struct spawner {
  int fd;    /* -1: dead or never started */
  pid_t pid;
  int busy;
  char *req; /* SPAWN_REQ_MAX bytes: the request being packed, reused (no allocation
              * of that size, an mmap, on every spawn) */
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct spawner sp[RT_SPAWNERS_MAX];
  int n;     /* started */
  int alive; /* not yet given up on */
} g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* ---- packing the spec ------------------------------------------------------------- */

struct pack {
  char *buf;
  size_t len;
  int overflow;
};

static void
put (struct pack *p, const void *d, size_t n)
{
  if (p->overflow || n > SPAWN_REQ_MAX - p->len)
    {
      p->overflow = 1;
      return;
    }
  memcpy (p->buf + p->len, d, n);
  p->len += n;
}

/* u32 length (UINT32_MAX: NULL), the bytes, a NUL (so the receiver can point into the
 * buffer). */
static void
put_str (struct pack *p, const char *s)
{
  uint32_t n = s ? (uint32_t) strlen (s) : UINT32_MAX;
  put (p, &n, sizeof n);
  if (s)
    put (p, s, (size_t) n + 1);
}

struct unpack {
  const char *buf;
  size_t len, off;
  int bad;
};

static int
get (struct unpack *u, void *d, size_t n)
{
  if (u->bad || n > u->len - u->off)
    {
      u->bad = 1;
      memset (d, 0, n);
      return -1;
    }
  memcpy (d, u->buf + u->off, n);
  u->off += n;
  return 0;
}

static const char *
get_str (struct unpack *u)
{
  uint32_t n;
  if (get (u, &n, sizeof n) < 0 || n == UINT32_MAX)
    return NULL;
  if ((size_t) n + 1 > u->len - u->off || u->buf[u->off + n] != '\0')
    {
      u->bad = 1;
      return NULL;
    }
  const char *s = u->buf + u->off;
  u->off += (size_t) n + 1;
  return s;
}

static int
pack_spec (struct pack *p, const struct rt_spec *spec)
{
  put_str (p, spec->id);
  put_str (p, spec->rootfs);
  uint32_t n = spec->lowers ? (uint32_t) spec->n_lowers : 0;
  put (p, &n, sizeof n);
  for (uint32_t i = 0; i < n; i++)
    put_str (p, spec->lowers[i]);
  n = spec->volumes ? (uint32_t) spec->n_volumes : 0;
  put (p, &n, sizeof n);
  for (uint32_t i = 0; i < n; i++)
    {
      int32_t ro = spec->volumes[i].readonly;
      put_str (p, spec->volumes[i].source);
      put_str (p, spec->volumes[i].target);
      put (p, &ro, sizeof ro);
    }
  put (p, &spec->keep_caps, sizeof spec->keep_caps);
  put_str (p, spec->state_dir);
  put_str (p, spec->init_path);
  put_str (p, spec->hostname);
  put (p, &spec->limits, sizeof spec->limits);
  int32_t inherit = spec->inherit_stderr;
  put (p, &inherit, sizeof inherit);
  return p->overflow ? -1 : 0;
}

ssize_t
rt_spawn_spec_pack (const struct rt_spec *spec, char *buf, size_t cap)
{
  struct pack p = { .buf = buf };
  if (cap < SPAWN_REQ_MAX || pack_spec (&p, spec) < 0)
    return -1;
  return (ssize_t) p.len;
}

static int
unpack_spec (struct unpack *u, struct rt_spawn_unpacked *out)
{
  memset (out, 0, sizeof *out);
  struct rt_spec *s = &out->spec;
  s->id = get_str (u);
  s->rootfs = get_str (u);
  uint32_t n;
  get (u, &n, sizeof n);
  if (n > RT_LOWERS_MAX)
    return -1;
  for (uint32_t i = 0; i < n; i++)
    if (!(out->lowers[i] = get_str (u)))
      return -1; /* only the rootfs and the hostname may be absent */
  if (n)
    {
      s->lowers = out->lowers;
      s->n_lowers = n;
    }
  get (u, &n, sizeof n);
  if (n > RT_VOLUMES_MAX)
    return -1;
  for (uint32_t i = 0; i < n; i++)
    {
      int32_t ro;
      out->volumes[i].source = get_str (u);
      out->volumes[i].target = get_str (u);
      if (!out->volumes[i].source || !out->volumes[i].target)
        return -1;
      get (u, &ro, sizeof ro);
      out->volumes[i].readonly = ro;
    }
  if (n)
    {
      s->volumes = out->volumes;
      s->n_volumes = n;
    }
  get (u, &s->keep_caps, sizeof s->keep_caps);
  s->state_dir = get_str (u);
  s->init_path = get_str (u);
  s->hostname = get_str (u);
  get (u, &s->limits, sizeof s->limits);
  int32_t inherit;
  get (u, &inherit, sizeof inherit);
  s->inherit_stderr = inherit;
  if (!s->id || !s->state_dir || !s->init_path)
    return -1;
  return u->bad || u->off != u->len ? -1 : 0;
}

int
rt_spawn_spec_unpack (const char *buf, size_t len, struct rt_spawn_unpacked *out)
{
  struct unpack u = { .buf = buf, .len = len };
  return unpack_spec (&u, out);
}

/* ---- the spawner process ---------------------------------------------------------- */

static void
send_reply (int fd, struct spawn_reply *rep, const int *fds)
{
  int attach[SPAWN_NFDS];
  int n = 0;
  for (int i = 0; i < SPAWN_NFDS; i++)
    if (fds && fds[i] >= 0)
      {
        attach[n++] = fds[i];
        rep->fd_mask |= 1u << i;
      }
  struct iovec iov = { rep, sizeof *rep };
  union {
    char buf[CMSG_SPACE (sizeof attach)];
    struct cmsghdr align;
  } ctl;
  memset (&ctl, 0, sizeof ctl);
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (n)
    {
      mh.msg_control = ctl.buf;
      mh.msg_controllen = CMSG_SPACE (n * sizeof (int));
      struct cmsghdr *c = CMSG_FIRSTHDR (&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN (n * sizeof (int));
      memcpy (CMSG_DATA (c), attach, n * sizeof (int));
    }
  while (sendmsg (fd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
}

static void
serve_one (int fd, const char *req, size_t len)
{
  struct spawn_reply rep = { 0 };
  struct rt_spawn_unpacked us;
  struct sbx_err err = { 0 };
  struct rt_sandbox *sb = NULL;
  if (rt_spawn_spec_unpack (req, len, &us) < 0)
    sbx_err_set (&err, SBX_E_INTERNAL, EPROTO, "spawner: malformed request");
  else if (rt_sandbox_spawn_local (&us.spec, &sb, &err) == 0)
    {
      rep.ok = 1;
      rep.pid = sb->pid;
      rep.uid_base = sb->uid_base;
      int fds[SPAWN_NFDS] = { sb->pidfd, sb->scratch_fd };
      send_reply (fd, &rep, fds);
      rt_sandbox_release (sb); /* our copies only: the sandbox runs on */
      return;
    }
  rep.code = err.code;
  rep.sys_errno = err.sys_errno;
  snprintf (rep.msg, sizeof rep.msg, "%s", err.msg);
  send_reply (fd, &rep, NULL);
}

int
rt_spawner_serve (int fd)
{
  char *req = malloc (SPAWN_REQ_MAX); /* one buffer for every request */
  if (!req)
    return -1;
  /* Our sandboxes are reaped by the kernel (sbxd waits on their pidfds). */
  struct sigaction ign = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT };
  sigaction (SIGCHLD, &ign, NULL);
  for (;;)
    {
      ssize_t n = recv (fd, req, SPAWN_REQ_MAX, MSG_TRUNC);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break; /* sbxd closed its end */
      if ((size_t) n > SPAWN_REQ_MAX)
        {
          struct spawn_reply rep = { .code = SBX_E_INTERNAL, .sys_errno = EMSGSIZE };
          snprintf (rep.msg, sizeof rep.msg, "spawner: request too large");
          send_reply (fd, &rep, NULL);
          continue;
        }
      serve_one (fd, req, (size_t) n);
    }
  free (req);
  return 0;
}

/* The forked child, on its way to become sbx-spawner. */
static _Noreturn void
exec_spawner (const char *path, int fd, pid_t parent)
{
  /* Die with sbxd; never outlive it even if it died before the prctl (PDEATHSIG
   * survives the exec: sbx-spawner is no set-id program). */
  if (prctl (PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid () != parent)
    _exit (1);
  /* Keep stdio (logging) and our socket as fd 3, nothing else of sbxd's (its state dir
   * lock). dup2 clears close-on-exec, except when the socket already is fd 3. */
  if ((fd == 3 ? fcntl (3, F_SETFD, 0) : dup2 (fd, 3)) < 0
      || syscall (SYS_close_range, 4u, ~0u, 0) < 0)
    _exit (1);
  sigset_t none;
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  char level[16];
  snprintf (level, sizeof level, "%d", sbx_log_get_level ());
  char *const argv[] = { "sbx-spawner", level, NULL };
  execv (path, argv);
  _exit (127);
}

int
rt_spawner_start (const char *path, int n, struct sbx_err *err)
{
  if (n > RT_SPAWNERS_MAX)
    n = RT_SPAWNERS_MAX;
  if (access (path, X_OK) < 0)
    return sbx_err_sys (err, "spawner: '%s'", path);
  pthread_mutex_lock (&g.mu);
  for (int i = g.n; i < n; i++)
    {
      char *req = malloc (SPAWN_REQ_MAX);
      int pair[2];
      if (!req || socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
        {
          sbx_err_sys (err, "spawner: %s", req ? "socketpair" : "malloc");
          free (req);
          pthread_mutex_unlock (&g.mu);
          return -1;
        }
      pid_t parent = getpid ();
      pid_t pid = fork ();
      if (pid < 0)
        {
          int e = errno;
          free (req);
          close (pair[0]);
          close (pair[1]);
          pthread_mutex_unlock (&g.mu);
          errno = e;
          return sbx_err_sys (err, "spawner: fork");
        }
      if (pid == 0)
        exec_spawner (path, pair[1], parent);
      close (pair[1]);
      g.sp[i] = (struct spawner) { .fd = pair[0], .pid = pid, .req = req };
      g.n = i + 1;
      g.alive++;
    }
  pthread_mutex_unlock (&g.mu);
  return 0;
}

/* ---- sbxd's side ------------------------------------------------------------------ */

static struct spawner *
acquire (void)
{
  pthread_mutex_lock (&g.mu);
  for (;;)
    {
      if (!g.alive)
        {
          pthread_mutex_unlock (&g.mu);
          return NULL;
        }
      for (int i = 0; i < g.n; i++)
        if (g.sp[i].fd >= 0 && !g.sp[i].busy)
          {
            g.sp[i].busy = 1;
            pthread_mutex_unlock (&g.mu);
            return &g.sp[i];
          }
      pthread_cond_wait (&g.cv, &g.mu);
    }
}

static void
release (struct spawner *sp, int broken)
{
  pthread_mutex_lock (&g.mu);
  if (broken)
    {
      LOG_ERROR ("spawner %d stopped answering: spawning in sbxd from now on", (int) sp->pid);
      kill (sp->pid, SIGKILL);
      waitpid (sp->pid, NULL, 0);
      close (sp->fd);
      sp->fd = -1;
      g.alive--;
    }
  sp->busy = 0;
  pthread_cond_broadcast (&g.cv);
  pthread_mutex_unlock (&g.mu);
}

/* Receive the reply and its fds; -1 on any transport failure (nothing is left open). */
static int
recv_reply (int fd, struct spawn_reply *rep, int fds[SPAWN_NFDS])
{
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int r;
  do
    r = poll (&p, 1, SPAWN_REPLY_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  if (r <= 0)
    return -1;
  union {
    char buf[CMSG_SPACE (SPAWN_NFDS * sizeof (int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = { rep, sizeof *rep };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf };
  ssize_t n;
  do
    n = recvmsg (fd, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  int got[SPAWN_NFDS], ngot = 0;
  for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR (&mh) : NULL; c; c = CMSG_NXTHDR (&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      {
        int k = (int) ((c->cmsg_len - CMSG_LEN (0)) / sizeof (int));
        for (int i = 0; i < k && ngot < SPAWN_NFDS; i++)
          memcpy (&got[ngot++], CMSG_DATA (c) + i * sizeof (int), sizeof (int));
      }
  int want = __builtin_popcount (n == (ssize_t) sizeof *rep ? rep->fd_mask & 3u : 0);
  if (n != (ssize_t) sizeof *rep || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || ngot != want)
    {
      for (int i = 0; i < ngot; i++)
        close (got[i]);
      return -1;
    }
  for (int i = 0, k = 0; i < SPAWN_NFDS; i++)
    fds[i] = rep->fd_mask & (1u << i) ? got[k++] : -1;
  rep->msg[sizeof rep->msg - 1] = '\0';
  return 0;
}

/* The handle sbxd keeps: what rt_sandbox_adopt builds, plus the fds of the spawn. */
static int
make_handle (const struct rt_spec *spec, const struct spawn_reply *rep, int fds[SPAWN_NFDS],
             struct rt_sandbox **out, struct sbx_err *err)
{
  struct rt_sandbox *sb = calloc (1, sizeof *sb);
  if (!sb)
    return sbx_err_sys (err, "create sandbox: calloc");
  snprintf (sb->id, sizeof sb->id, "%s", spec->id);
  rt_run_dir_path (sb->run_dir, spec->state_dir, spec->id); /* the spawner checked it */
  snprintf (sb->sock_path, sizeof sb->sock_path, "%s/agent.sock", sb->run_dir);
  sb->pid = rep->pid;
  sb->pidfd = fds[0];
  sb->lock_fd = -1; /* sbx-init holds it, as after a local spawn */
  sb->scratch_fd = fds[1];
  sb->uid_base = rep->uid_base;
  sb->have_run_dir = 1;
  sb->cg.dirfd = -1;
  if (rt_cgroup_init (&sb->cg, RT_CGROUP_ROOT, spec->id, err) < 0)
    {
      rt_sandbox_destroy (sb); /* kills through the pidfd, removes the run dir */
      rt_cleanup_stale (spec->state_dir, spec->id, NULL);
      return sbx_err_wrap (err, "create sandbox %s", spec->id);
    }
  sb->have_cgroup = 1;
  *out = sb;
  return 0;
}

int
rt_spawner_spawn (const struct rt_spec *spec, struct rt_sandbox **out, struct sbx_err *err)
{
  *out = NULL;
  struct spawner *sp = acquire ();
  if (!sp)
    return 1; /* none left: the caller spawns itself */
  struct pack p = { .buf = sp->req };
  if (pack_spec (&p, spec) < 0)
    {
      release (sp, 0);
      return sbx_err_set (err, SBX_E_INVALID, E2BIG, "create sandbox %s: spec too large",
                          spec->id ? spec->id : "?");
    }
  ssize_t n;
  do
    n = send (sp->fd, p.buf, p.len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  struct spawn_reply rep;
  int fds[SPAWN_NFDS];
  if (n != (ssize_t) p.len || recv_reply (sp->fd, &rep, fds) < 0)
    {
      /* Whatever the spawner had made of this sandbox dies with the cgroup. */
      release (sp, 1);
      rt_cleanup_stale (spec->state_dir, spec->id, NULL);
      return 1;
    }
  release (sp, 0);
  if (!rep.ok)
    return sbx_err_set (err, rep.code, rep.sys_errno, "%s", rep.msg);
  return make_handle (spec, &rep, fds, out, err);
}
