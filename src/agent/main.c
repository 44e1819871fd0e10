/* sbx-init: PID 1 of every sandbox.
 *
 * Started by the runtime with argv {"sbx-init"} and:
 *   fd 3  a bound, listening AF_UNIX stream socket (the host made it): we accept on it
 *   fd 4  a lock file reserving the sandbox's uid range: kept open, never touched
 * fds 0-2 may be closed or /dev/null. No capabilities, seccomp, no_new_privs. We make
 * ourselves non-dumpable first thing (exec made us dumpable again).
 *
 * One epoll loop, no threads, no polling: the socket, connections, the pipes and ptys of
 * the process table, timerfds (exec timeouts, pty hang-up waits, wait/read deadlines),
 * inotify fds of watches and a signalfd for SIGCHLD. It never exits on its own; bad input closes one
 * connection. Outside a sandbox (tests) it is not PID 1 and becomes a child subreaper, so
 * orphans still come to it. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define LISTEN_FD 3
#define LOCK_FD 4

int
agent_watch_set (struct agent *a, struct watch *w, uint32_t events)
{
  if (w->fd < 0 || w->events == events)
    return 0;
  struct epoll_event ev = { .events = events, .data.ptr = w };
  int rc;
  if (events == 0)
    rc = epoll_ctl (a->epfd, EPOLL_CTL_DEL, w->fd, NULL);
  else
    rc = epoll_ctl (a->epfd, w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev);
  if (rc == 0)
    w->events = events;
  return rc;
}

void
agent_watch_close (struct agent *a, struct watch *w)
{
  if (w->fd < 0)
    return;
  /* Explicit DEL: the registration would outlive close() while a forked child briefly
   * holds a copy of the fd. */
  if (w->events)
    epoll_ctl (a->epfd, EPOLL_CTL_DEL, w->fd, NULL);
  close (w->fd);
  w->fd = -1;
  w->events = 0;
}

int
agent_timer_open (uint64_t ms, struct sbx_err *err)
{
  int fd = timerfd_create (CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0)
    return sbx_err_sys (err, "timerfd");
  if (ms == 0)
    ms = 1; /* a zero it_value would disarm it */
  struct itimerspec its = { .it_value = { .tv_sec = (time_t) (ms / 1000),
                                          .tv_nsec = (long) (ms % 1000) * 1000000 } };
  if (timerfd_settime (fd, 0, &its, NULL) < 0)
    {
      sbx_err_sys (err, "timerfd_settime");
      close (fd);
      return -1;
    }
  return fd;
}

static void
free_dead (struct agent *a)
{
  while (a->dead_procs)
    {
      struct proc *p = a->dead_procs;
      a->dead_procs = p->next;
      proto_buf_free (&p->inq);
      ring_free (&p->ring[0]);
      ring_free (&p->ring[1]);
      free (p->key);
      free (p->command);
      free (p);
    }
  while (a->dead_follows)
    {
      struct follow *f = a->dead_follows;
      a->dead_follows = f->next;
      free (f);
    }
  files_free_dead (a);
  watch_free_dead (a);
  while (a->dead_conns)
    {
      struct conn *c = a->dead_conns;
      a->dead_conns = c->next;
      proto_reader_free (&c->rd);
      proto_buf_free (&c->outq);
      free (c);
    }
}

/* Work flagged during the batch: connections whose queue drained get their requests
 * pumped, processes whose readers made room are read again. Each round only moves data
 * forward, so this ends; the bound is a guard. */
static void
run_deferred (struct agent *a)
{
  for (int guard = 0; guard < 100000; guard++)
    {
      struct conn *c = a->conns;
      while (c && !(c->want_pump && !c->dead))
        c = c->next;
      if (c)
        {
          c->want_pump = false;
          follow_conn_pump (c);
          if (!c->dead)
            files_conn_pump (c);
          if (!c->dead)
            watch_conn_resume (c);
          continue; /* the lists may have changed: look again from the start */
        }
      struct proc *p = a->procs;
      while (p && !(p->want_poke && !p->dead))
        p = p->next;
      if (!p)
        return;
      proc_poke (p);
    }
}

static _Noreturn void
loop (struct agent *a)
{
  struct epoll_event evs[64];
  for (;;)
    {
      int n = epoll_wait (a->epfd, evs, 64, -1);
      if (n < 0)
        {
          if (errno != EINTR)
            LOG_ERROR ("epoll_wait: %s", strerror (errno));
          continue;
        }
      for (int i = 0; i < n; i++)
        {
          struct watch *w = evs[i].data.ptr;
          if (w->fd < 0)
            continue; /* closed earlier in this batch */
          switch (w->kind)
            {
            case W_LISTEN: agent_accept (a); break;
            case W_SIGNAL: agent_reap (a); break;
            case W_CONN: conn_event (w->owner, evs[i].events); break;
            case W_FOLLOW_TIMER: follow_timer_event (w->owner); break;
            case W_INOTIFY: watch_event (w->owner); break;
            default: proc_event (w, evs[i].events); break;
            }
        }
      run_deferred (a);
      free_dead (a);
    }
}

static int
die (const char *what)
{
  /* Before the loop only: without its socket the sandbox is useless. */
  fprintf (stderr, "sbx-init: %s: %s\n", what, strerror (errno));
  return 1;
}

static int
setup (struct agent *a)
{
  /* Not dumpable, before any command exists. The runtime cleared the flag before exec,
   * but execve sets it again for a readable program, and a dumpable PID 1 running as the
   * sandbox's root is open to every command: /proc/1/mem (written without ptrace),
   * /proc/1/fd/4 and /proc/1/exe, maps and environ (host paths). Fail closed. */
  if (prctl (PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl (PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
    return die ("PR_SET_DUMPABLE");
  /* Nothing but 0-4 is ours to have: drop whatever else the launcher leaked. */
  syscall (SYS_close_range, LOCK_FD + 1, ~0U, 0);
  /* 3 and 4 first: an open() below must not land on them if they were missing. */
  if (sbx_set_cloexec (LISTEN_FD, 1) < 0)
    return die ("fd 3 (listening socket)");
  if (sbx_set_cloexec (LOCK_FD, 1) < 0)
    return die ("fd 4 (lock file)");
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl (fd, F_GETFD) < 0 && open ("/dev/null", O_RDWR | O_CLOEXEC) < 0)
      return die ("open /dev/null");
  a->devnull = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (a->devnull < 0)
    return die ("open /dev/null");
  a->rootfd = open ("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (a->rootfd < 0)
    return die ("open /");

  int acc = 0;
  socklen_t sl = sizeof acc;
  if (getsockopt (LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl) < 0 || !acc)
    {
      if (!errno || acc == 0)
        errno = EINVAL;
      return die ("fd 3 is not a listening socket");
    }
  if (sbx_set_nonblock (LISTEN_FD, 1) < 0)
    return die ("fd 3 non-blocking");

  /* Signals: whatever we inherited goes back to default, so commands start clean (their
   * child only resets SIGPIPE). Everything is blocked; SIGCHLD arrives on a signalfd. */
  struct sigaction dfl = { .sa_handler = SIG_DFL }, ign = { .sa_handler = SIG_IGN };
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      sigaction (s, &dfl, NULL);
  sigaction (SIGPIPE, &ign, NULL);
  sigset_t all, chld;
  sigfillset (&all);
  if (sigprocmask (SIG_SETMASK, &all, NULL) < 0)
    return die ("sigprocmask");
  sigemptyset (&chld);
  sigaddset (&chld, SIGCHLD);
  int sfd = signalfd (-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0)
    return die ("signalfd");
  if (getpid () != 1 && prctl (PR_SET_CHILD_SUBREAPER, 1) < 0)
    return die ("PR_SET_CHILD_SUBREAPER");

  /* Many execs each hold pipes and a timer: lift our soft fd limit to the hard one, and
   * give commands the limit we were started with. */
  if (getrlimit (RLIMIT_NOFILE, &a->nofile) < 0)
    return die ("getrlimit");
  struct rlimit raised = { a->nofile.rlim_max, a->nofile.rlim_max };
  if (setrlimit (RLIMIT_NOFILE, &raised) < 0)
    LOG_WARN ("raise RLIMIT_NOFILE: %s", strerror (errno));

  /* The runtime sets -999 on us; if we are not at 0 each command resets itself to 0. */
  char buf[32];
  a->reset_oom = !(sbx_read_file ("/proc/self/oom_score_adj", buf, sizeof buf) > 0
                   && strtol (buf, NULL, 10) == 0);

  a->epfd = epoll_create1 (EPOLL_CLOEXEC);
  if (a->epfd < 0)
    return die ("epoll_create1");
  a->listen = (struct watch){ .kind = W_LISTEN, .fd = LISTEN_FD, .owner = a };
  a->sig = (struct watch){ .kind = W_SIGNAL, .fd = sfd, .owner = a };
  if (agent_watch_set (a, &a->listen, EPOLLIN) < 0 || agent_watch_set (a, &a->sig, EPOLLIN) < 0)
    return die ("epoll_ctl");
  agent_warm_exec_paths ();
  return 0;
}

int
main (int argc, char **argv)
{
  static struct agent a;
  if (getenv ("SBX_INIT_DEBUG"))
    sbx_log_set_level (SBX_LOG_DEBUG);
  else
    sbx_log_set_level (SBX_LOG_WARN);
  if (setup (&a) != 0)
    return 1;
  /* Children may have exited before the signalfd existed (none are ours yet, but an
   * orphan can be reparented to us at any time). */
  agent_reap (&a);
  loop (&a);
}
