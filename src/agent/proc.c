/* The process table: starting commands, reading their output into rings, stdin, signals,
 * timeouts, pty size, exit and draining, and how long finished processes are kept.
 *
 * Flow control without loss: a pipe is read only while its ring has room above the
 * lowest offset that a STREAM follow still has to send (follow_floor). A slow reader
 * therefore stops the reads, the pipe fills and the program blocks in write(). With no
 * STREAM follow (a background process nobody attached to), the ring keeps the newest
 * AGENT_RING_MAX bytes and the oldest are dropped; readers see that as an earliest
 * offset above the one they asked for. */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static uint8_t read_buf[PROTO_DATA_CHUNK];

struct proc *
proc_find (struct agent *a, uint32_t id)
{
  for (struct proc *p = a->procs; p; p = p->next)
    if (p->id == id)
      return p;
  return NULL;
}

static struct proc *
find_key (struct agent *a, const char *key)
{
  for (struct proc *p = a->procs; p; p = p->next)
    if (p->key && !strcmp (p->key, key))
      return p;
  return NULL;
}

static void
close_watches (struct proc *p)
{
  struct agent *a = p->agent;
  agent_watch_close (a, &p->out[0]);
  agent_watch_close (a, &p->out[1]);
  agent_watch_close (a, &p->in);
  agent_watch_close (a, &p->timer);
  agent_watch_close (a, &p->drain);
}

static void
proc_release (struct proc *p)
{
  struct agent *a = p->agent;
  if (p->dead)
    return;
  if (p->pid > 0)
    kill (-p->pid, SIGKILL); /* only a table full of live processes gets here */
  close_watches (p);
  if (p->prev)
    p->prev->next = p->next;
  else
    a->procs = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    a->procs_tail = p->prev;
  a->nprocs--;
  if (p->finished)
    a->nfinished--;
  p->dead = true;
  p->prev = NULL;
  p->next = a->dead_procs;
  a->dead_procs = p;
}

/* Finished processes beyond AGENT_KEEP_FINISHED (oldest first) that nobody reads. */
static void
evict (struct agent *a, size_t keep)
{
  for (struct proc *p = a->procs, *nx; p && a->nfinished > keep; p = nx)
    {
      nx = p->next;
      if (p->finished && !follow_has (p))
        proc_release (p);
    }
}

void
proc_maybe_release (struct proc *p)
{
  if (p->dead || !p->finished || follow_has (p))
    return;
  if (!p->background && !p->key)
    proc_release (p);
  else
    evict (p->agent, AGENT_KEEP_FINISHED);
}

static uint64_t
room (const struct proc *p, int s)
{
  uint64_t used = p->ring[s].end - follow_floor (p, s);
  return used >= AGENT_RING_MAX ? 0 : AGENT_RING_MAX - used;
}

static void
update_interest (struct proc *p)
{
  for (int s = 0; s < 2; s++)
    if (p->out[s].fd >= 0
        && agent_watch_set (p->agent, &p->out[s], room (p, s) ? EPOLLIN : 0) < 0)
      LOG_WARN ("process %u: epoll: %s", p->id, strerror (errno));
}

/* One read into the ring. Returns >0 bytes, 0 EOF (or pty hang-up), -1 with errno. */
static ssize_t
read_once (struct proc *p, int s)
{
  uint64_t r = room (p, s);
  size_t want = r < sizeof read_buf ? (size_t) r : sizeof read_buf;
  ssize_t n;
  do
    n = read (p->out[s].fd, read_buf, want);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EIO)
    return 0; /* pty master: every slave is closed and nothing is left */
  if (n > 0 && ring_append (&p->ring[s], read_buf, (size_t) n) < 0)
    {
      LOG_ERROR ("process %u: out of memory for output", p->id);
      errno = ENOMEM;
      return -1;
    }
  return n;
}

static void proc_finish (struct proc *p);

/* After the main process exited: read what is left without waiting for EOF on pipes (a
 * background grandchild may hold them open forever), bounded by AGENT_DRAIN_MAX. A pty is
 * read until it hangs up (data written just before exit can still be on its way through
 * the line discipline), bounded by AGENT_PTY_DRAIN_MS. */
static void
drain (struct proc *p)
{
  bool got = false;
  for (int s = 0; s < 2; s++)
    while (p->out[s].fd >= 0)
      {
        if (p->drained[s] >= AGENT_DRAIN_MAX)
          {
            agent_watch_close (p->agent, &p->out[s]);
            break;
          }
        if (!room (p, s))
          break; /* a reader is behind: continue when it made room */
        ssize_t n = read_once (p, s);
        if (n > 0)
          {
            p->drained[s] += (uint64_t) n;
            got = true;
            continue;
          }
        if (n < 0 && errno == EAGAIN && p->pty)
          break; /* wait for more or the hang-up */
        agent_watch_close (p->agent, &p->out[s]);
      }
  if (got)
    follow_proc_changed (p);
  if (p->dead)
    return;
  if (p->out[0].fd < 0 && p->out[1].fd < 0)
    proc_finish (p);
  else
    update_interest (p);
}

static void
read_stream (struct proc *p, int s)
{
  bool got = false;
  for (int rounds = 0; rounds < 4 && p->out[s].fd >= 0 && room (p, s); rounds++)
    {
      ssize_t n = read_once (p, s);
      if (n > 0)
        {
          got = true;
          continue;
        }
      if (n < 0 && errno == EAGAIN)
        break;
      agent_watch_close (p->agent, &p->out[s]);
    }
  if (got)
    follow_proc_changed (p);
  if (!p->dead)
    update_interest (p);
}

void
proc_poke (struct proc *p)
{
  p->want_poke = false;
  if (p->dead)
    return;
  if (p->exited && !p->finished)
    drain (p);
  else
    update_interest (p);
}

static void
stdin_flush (struct proc *p)
{
  struct agent *a = p->agent;
  while (p->in.fd >= 0 && p->inq_off < p->inq.len)
    {
      ssize_t n = write (p->in.fd, p->inq.data + p->inq_off, p->inq.len - p->inq_off);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN)
            break;
          /* EPIPE: the program closed its stdin; what is left has no reader. */
          agent_watch_close (a, &p->in);
          break;
        }
      p->inq_off += (size_t) n;
    }
  if (p->inq_off == p->inq.len || p->in.fd < 0)
    {
      proto_buf_free (&p->inq);
      p->inq_off = 0;
      if (p->in_eof)
        agent_watch_close (a, &p->in);
    }
  if (p->in.fd >= 0)
    agent_watch_set (a, &p->in, p->inq_off < p->inq.len ? EPOLLOUT : 0);
}

size_t
proc_stdin_queued (const struct proc *p)
{
  return p->inq.len - p->inq_off;
}

void
proc_stdin (struct proc *p, const uint8_t *data, size_t n, bool eof)
{
  if (p->in.fd < 0 || p->in_eof)
    return; /* no stdin, or after EOF: nothing can receive it */
  if (n && proto_buf_append (&p->inq, data, n) < 0)
    {
      LOG_ERROR ("process %u: out of memory for stdin", p->id);
      return;
    }
  if (eof)
    {
      /* A pty has no end of file: the terminal's EOF character at the start of a line is
       * what a program reading it sees as one. Closing our dup leaves the master open. */
      if (p->pty && proto_buf_append (&p->inq, "\x04", 1) < 0)
        return;
      p->in_eof = true;
    }
  stdin_flush (p);
}

void
proc_signal (struct proc *p, int sig)
{
  if (p->pid <= 0)
    return; /* reaped: its pid may already name someone else */
  if (kill (-p->pid, sig) < 0 && errno != ESRCH)
    LOG_WARN ("process %u: kill %d: %s", p->id, sig, strerror (errno));
}

int
proc_resize (struct proc *p, uint32_t rows, uint32_t cols)
{
  if (!p->pty)
    {
      errno = ENOTTY;
      return -1;
    }
  int fd = p->out[0].fd >= 0 ? p->out[0].fd : p->in.fd;
  if (fd < 0)
    {
      errno = ESRCH;
      return -1;
    }
  struct winsize ws = { .ws_row = (unsigned short) rows, .ws_col = (unsigned short) cols };
  return ioctl (fd, TIOCSWINSZ, &ws);
}

void
proc_event (struct watch *w, uint32_t events)
{
  struct proc *p = w->owner;
  if (w->fd < 0 || p->dead)
    return;
  switch (w->kind)
    {
    case W_STDOUT:
    case W_STDERR:
      if (p->exited)
        drain (p);
      else
        read_stream (p, w->kind == W_STDERR);
      break;
    case W_STDIN:
      stdin_flush (p);
      follow_update_conns (p);
      break;
    case W_TIMER:
      {
        uint64_t ticks;
        (void) !read (w->fd, &ticks, sizeof ticks);
        p->timed_out = true;
        proc_signal (p, SIGKILL);
        agent_watch_close (p->agent, w);
        break;
      }
    case W_DRAIN_TIMER:
      /* A grandchild keeps the pty open: stop waiting for the hang-up. */
      agent_watch_close (p->agent, w);
      agent_watch_close (p->agent, &p->out[0]);
      drain (p);
      break;
    default:
      break;
    }
}

void
proc_exit_record (const struct proc *p, struct proto_exec_exit *ex)
{
  memset (ex, 0, sizeof *ex);
  if (WIFSIGNALED (p->status))
    {
      ex->signal = WTERMSIG (p->status);
      ex->exit_code = 128 + ex->signal;
    }
  else
    ex->exit_code = WEXITSTATUS (p->status);
  int64_t dur = p->end_ns - p->start_ns;
  ex->duration_us = dur > 0 ? (uint64_t) dur / 1000 : 0;
  ex->stdout_bytes = p->ring[0].end;
  ex->stderr_bytes = p->ring[1].end;
  ex->timed_out = p->timed_out;
  const struct rusage *ru = &p->ru;
  ex->cpu_us = (uint64_t) (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000
               + (uint64_t) (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec);
  ex->max_rss_kb = (uint64_t) ru->ru_maxrss;
}

void
proc_info (const struct proc *p, struct proto_msg *m)
{
  memset (m, 0, sizeof *m);
  m->proc_id = p->id;
  m->pid = (uint32_t) (p->pid > 0 ? p->pid : 0);
  m->running = !p->finished;
  m->out_total = p->ring[0].end;
  m->err_total = p->ring[1].end;
  m->out_earliest = p->ring[0].start;
  m->err_earliest = p->ring[1].start;
  m->started_ms = (uint64_t) p->started_ms;
  m->pty = p->pty;
  m->background = p->background;
  m->key = p->key;          /* borrowed: the caller must not proto_msg_free */
  m->command = p->command;
  static const int always[] = { PROTO_M_PROC_ID, PROTO_M_PID, PROTO_M_RUNNING,
                                PROTO_M_OUT_TOTAL, PROTO_M_ERR_TOTAL, PROTO_M_OUT_EARLIEST,
                                PROTO_M_ERR_EARLIEST, PROTO_M_STARTED_MS, PROTO_M_PTY,
                                PROTO_M_BACKGROUND, PROTO_M_COMMAND };
  for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
    PROTO_SET (m, always[i]);
  if (p->key)
    PROTO_SET (m, PROTO_M_KEY);
  if (p->finished)
    {
      struct proto_exec_exit ex;
      proc_exit_record (p, &ex);
      m->exit_code = ex.exit_code;
      m->signal = (uint32_t) ex.signal;
      m->duration_us = ex.duration_us;
      m->cpu_us = ex.cpu_us;
      m->max_rss_kb = ex.max_rss_kb;
      m->timed_out = ex.timed_out;
      static const int fin[] = { PROTO_M_EXIT_CODE, PROTO_M_SIGNAL, PROTO_M_DURATION_US,
                                 PROTO_M_CPU_US, PROTO_M_MAX_RSS_KB, PROTO_M_TIMED_OUT };
      for (size_t i = 0; i < sizeof fin / sizeof fin[0]; i++)
        PROTO_SET (m, fin[i]);
    }
}

static void
proc_finish (struct proc *p)
{
  struct agent *a = p->agent;
  p->finished = true;
  a->nfinished++;
  close_watches (p);
  proto_buf_free (&p->inq);
  p->inq_off = 0;
  follow_proc_changed (p);
  if (!p->dead)
    proc_maybe_release (p);
}

void
proc_exited (struct proc *p, int status, const struct rusage *ru)
{
  p->pid = 0;
  p->exited = true;
  p->status = status;
  p->ru = *ru;
  p->end_ns = sbx_mono_ns ();
  agent_watch_close (p->agent, &p->timer);
  if (p->pty && p->out[0].fd >= 0)
    {
      struct sbx_err err = { 0 };
      int fd = agent_timer_open (AGENT_PTY_DRAIN_MS, &err);
      p->drain = (struct watch){ .kind = W_DRAIN_TIMER, .fd = fd, .owner = p };
      if (fd >= 0 && agent_watch_set (p->agent, &p->drain, EPOLLIN) < 0)
        agent_watch_close (p->agent, &p->drain);
      if (p->drain.fd < 0)
        agent_watch_close (p->agent, &p->out[0]); /* cannot bound the wait: do not wait */
    }
  drain (p);
}

static char *
join_argv (const struct proto_exec_req *req)
{
  size_t n = 1;
  for (size_t i = 0; i < req->argc; i++)
    n += strlen (req->argv[i]) + 1;
  if (n > 4096)
    n = 4096;
  char *s = malloc (n);
  if (!s)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < req->argc && k + 1 < n; i++)
    {
      if (i)
        s[k++] = ' ';
      size_t l = strlen (req->argv[i]);
      if (l > n - 1 - k)
        l = n - 1 - k;
      memcpy (s + k, req->argv[i], l);
      k += l;
    }
  s[k] = '\0';
  return s;
}

static void
send_started (struct conn *c, uint32_t id, const struct proc *p, int existing)
{
  struct proto_buf b = { 0 };
  if (proto_started_encode (&b, (uint32_t) (p->pid > 0 ? p->pid : 0), p->id, existing) < 0)
    {
      proto_buf_free (&b);
      conn_close (c);
      return;
    }
  conn_send (c, PROTO_EXEC_STARTED, id, b.data, (uint32_t) b.len);
  proto_buf_free (&b);
}

/* The exec's own stream on its connection. */
static void
attach_stream (struct conn *c, uint32_t id, struct proc *p, uint64_t max_output, bool kill)
{
  struct follow *f = follow_new (c, id, p, FOL_STREAM);
  if (!f)
    {
      conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
      return;
    }
  f->max_output = max_output;
  f->kill_on_close = kill;
  f->off[0] = p->ring[0].start;
  f->off[1] = p->ring[1].start;
  follow_pump (f);
}

void
proc_exec_start (struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
  struct agent *a = c->agent;
  struct sbx_err err = { 0 };
  /* A refusal that names an id the host already uses must not end that request: id 0. */
  if (id == 0)
    return conn_send_error (c, 0, SBX_E_INVALID, "exec id 0 is reserved");
  if (conn_id_in_use (c, id))
    return conn_send_error (c, 0, SBX_E_INVALID, "exec %u is already running", id);
  if (c->nreqs >= AGENT_MAX_EXECS)
    return conn_send_error (c, id, SBX_E_CAPACITY, "too many concurrent execs (max %d)",
                            AGENT_MAX_EXECS);
  struct proto_exec_req req;
  if (proto_exec_req_decode (payload, n, &req, &err) < 0)
    return conn_send_error (c, id, SBX_E_INVALID, "%s", err.msg);
  struct proc *p = NULL;
  int tfd = -1;
  if (req.key && (p = find_key (a, req.key)))
    {
      /* Idempotent retry: the same process, its output from the start. */
      send_started (c, id, p, 1);
      if (!req.background && !c->dead)
        attach_stream (c, id, p, req.max_output, false);
      goto out;
    }
  if (req.cwd && req.cwd[0] != '/')
    {
      conn_send_error (c, id, SBX_E_INVALID, "cwd \"%s\" is not an absolute path", req.cwd);
      goto out;
    }
  if (req.stdin_mode != PROTO_STDIN_NULL && req.stdin_mode != PROTO_STDIN_PIPE)
    {
      conn_send_error (c, id, SBX_E_INVALID, "unknown stdin mode %u", req.stdin_mode);
      goto out;
    }
  if (req.pty && (req.rows > 4096 || req.cols > 4096))
    {
      conn_send_error (c, id, SBX_E_INVALID, "pty size %ux%u too large", req.rows, req.cols);
      goto out;
    }
  if (a->nprocs >= AGENT_MAX_PROCS)
    evict (a, 0);
  if (a->nprocs >= AGENT_MAX_PROCS)
    {
      conn_send_error (c, id, SBX_E_CAPACITY, "too many processes (max %d)", AGENT_MAX_PROCS);
      goto out;
    }
  if (req.timeout_ms && (tfd = agent_timer_open (req.timeout_ms, &err)) < 0)
    {
      conn_send_error (c, id, SBX_E_CAPACITY, "%s", err.msg);
      goto out;
    }
  p = calloc (1, sizeof *p);
  char *command = join_argv (&req);
  if (!p || !command)
    {
      free (p);
      free (command);
      conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
      goto out;
    }
  p->start_ns = sbx_mono_ns ();
  p->started_ms = sbx_now_ms ();
  struct spawn_io io;
  if (agent_spawn (a, &req, &io, &err) < 0)
    {
      free (p);
      free (command);
      conn_send_error (c, id, (uint32_t) err.code, "%s", err.msg);
      goto out;
    }
  p->agent = a;
  p->id = ++a->next_proc_id;
  p->key = steal_ptr (&req.key);
  p->command = command;
  p->pid = io.pid;
  p->background = req.background;
  p->pty = req.pty;
  p->out[0] = (struct watch){ .kind = W_STDOUT, .fd = io.out_fd, .owner = p };
  p->out[1] = (struct watch){ .kind = W_STDERR, .fd = io.err_fd, .owner = p };
  p->in = (struct watch){ .kind = W_STDIN, .fd = io.in_fd, .owner = p };
  p->timer = (struct watch){ .kind = W_TIMER, .fd = steal_fd (&tfd), .owner = p };
  p->drain = (struct watch){ .kind = W_DRAIN_TIMER, .fd = -1, .owner = p };
  p->prev = a->procs_tail;
  if (a->procs_tail)
    a->procs_tail->next = p;
  else
    a->procs = p;
  a->procs_tail = p;
  a->nprocs++;
  /* Unwatched pipes or timer would hang or outlive the request: fail closed. */
  if ((p->timer.fd >= 0 && agent_watch_set (a, &p->timer, EPOLLIN) < 0)
      || (p->out[0].fd >= 0 && agent_watch_set (a, &p->out[0], EPOLLIN) < 0)
      || (p->out[1].fd >= 0 && agent_watch_set (a, &p->out[1], EPOLLIN) < 0))
    {
      conn_send_error (c, id, SBX_E_INTERNAL, "epoll: %s", strerror (errno));
      proc_release (p);
      goto out;
    }
  send_started (c, id, p, 0);
  if (!req.background && !c->dead)
    attach_stream (c, id, p, req.max_output, !p->key);
  else if (!req.background && !p->key)
    proc_signal (p, SIGKILL); /* its connection is already gone */
out:
  if (tfd >= 0)
    close (tfd);
  proto_exec_req_free (&req);
}
