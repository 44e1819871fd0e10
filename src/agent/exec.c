/* One exec: start, output streaming with truncation, stdin, signals, timeout, exit. */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bytes past max_output are read here and dropped (counted, never sent). */
static uint8_t discard_buf[PROTO_DATA_CHUNK];

static void
put_be32 (uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t) (v >> 24);
  p[1] = (uint8_t) (v >> 16);
  p[2] = (uint8_t) (v >> 8);
  p[3] = (uint8_t) v;
}

/* Close every fd of e, unlink it from its connection and park it for freeing. */
static void
exec_release (struct exec *e)
{
  struct conn *c = e->conn;
  struct agent *a = c->agent;
  agent_watch_close (a, &e->out[0]);
  agent_watch_close (a, &e->out[1]);
  agent_watch_close (a, &e->in);
  agent_watch_close (a, &e->timer);
  if (e->prev)
    e->prev->next = e->next;
  else
    c->execs = e->next;
  if (e->next)
    e->next->prev = e->prev;
  c->nexecs--;
  e->dead = true;
  e->prev = NULL;
  e->next = a->dead_execs;
  a->dead_execs = e;
}

void
exec_update (struct exec *e)
{
  struct agent *a = e->conn->agent;
  uint32_t ev = e->conn->throttled ? 0 : EPOLLIN;
  for (int s = 0; s < 2; s++)
    if (e->out[s].fd >= 0 && agent_watch_set (a, &e->out[s], ev) < 0)
      LOG_WARN ("exec %u: epoll: %s", e->id, strerror (errno));
}

/* Read stream s (0 stdout, 1 stderr) and queue it as frames. drain: the main process is
 * gone; read what is there (bounded: a grandchild may keep writing) even if throttled. */
static void
read_stream (struct exec *e, int s, bool drain)
{
  struct conn *c = e->conn;
  struct watch *w = &e->out[s];
  size_t total = 0;
  int rounds = 0;
  while (w->fd >= 0 && !c->dead)
    {
      if (drain ? total >= AGENT_DRAIN_MAX : (c->throttled || rounds++ >= 4))
        break;
      bool discard = e->max_output && e->sent[s] >= e->max_output;
      uint8_t *buf = discard ? discard_buf : conn_data_reserve (c);
      if (!buf)
        {
          LOG_ERROR ("exec %u: out of memory", e->id);
          conn_close (c);
          return;
        }
      ssize_t n = read (w->fd, buf, PROTO_DATA_CHUNK);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno != EAGAIN)
            agent_watch_close (c->agent, w);
          break;
        }
      if (n == 0)
        {
          agent_watch_close (c->agent, w);
          break;
        }
      total += (size_t) n;
      e->bytes[s] += (uint64_t) n;
      uint64_t keep = (uint64_t) n;
      if (e->max_output)
        {
          uint64_t room = discard ? 0 : e->max_output - e->sent[s];
          if (keep > room)
            {
              keep = room;
              e->truncated[s] = 1;
            }
        }
      if (keep)
        {
          conn_data_commit (c, s ? PROTO_EXEC_STDERR : PROTO_EXEC_STDOUT, e->id, (uint32_t) keep);
          e->sent[s] += keep;
          conn_flush (c);
          conn_update (c);
        }
    }
}

static void
stdin_flush (struct exec *e)
{
  struct agent *a = e->conn->agent;
  while (e->in.fd >= 0 && e->inq_off < e->inq.len)
    {
      ssize_t n = write (e->in.fd, e->inq.data + e->inq_off, e->inq.len - e->inq_off);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN)
            break;
          /* EPIPE: the program closed its stdin; what is left has no reader. */
          agent_watch_close (a, &e->in);
          break;
        }
      e->inq_off += (size_t) n;
    }
  if (e->inq_off == e->inq.len || e->in.fd < 0)
    {
      proto_buf_free (&e->inq);
      e->inq_off = 0;
      if (e->in_eof)
        agent_watch_close (a, &e->in);
    }
  if (e->in.fd >= 0)
    agent_watch_set (a, &e->in, e->inq_off < e->inq.len ? EPOLLOUT : 0);
}

void
exec_stdin (struct exec *e, const uint8_t *p, size_t n)
{
  if (e->in.fd < 0 || e->in_eof)
    return; /* no stdin pipe, or after EOF: nothing can receive it */
  if (n == 0)
    e->in_eof = true;
  else if (proto_buf_append (&e->inq, p, n) < 0)
    {
      LOG_ERROR ("exec %u: out of memory", e->id);
      conn_close (e->conn);
      return;
    }
  stdin_flush (e);
  conn_update (e->conn);
}

void
exec_signal (struct exec *e, int sig)
{
  if (e->pid <= 0)
    return; /* reaped: its pid may already name someone else */
  if (kill (-e->pid, sig) < 0 && errno != ESRCH)
    LOG_WARN ("exec %u: kill %d: %s", e->id, sig, strerror (errno));
}

void
exec_event (struct watch *w, uint32_t events)
{
  struct exec *e = w->owner;
  if (w->fd < 0 || e->dead)
    return;
  switch (w->kind)
    {
    case W_STDOUT:
      read_stream (e, 0, false);
      break;
    case W_STDERR:
      read_stream (e, 1, false);
      break;
    case W_STDIN:
      stdin_flush (e);
      conn_update (e->conn);
      break;
    case W_TIMER:
      {
        uint64_t ticks;
        (void) !read (w->fd, &ticks, sizeof ticks);
        e->timed_out = true;
        exec_signal (e, SIGKILL);
        agent_watch_close (e->conn->agent, w);
        break;
      }
    default:
      break;
    }
}

void
exec_finish (struct exec *e, int status, const struct rusage *ru)
{
  struct conn *c = e->conn;
  e->pid = 0;
  /* What the program wrote before exiting is in the pipes now; read it without waiting for
   * EOF (a background grandchild may hold the pipes open forever) and close them. */
  read_stream (e, 0, true);
  read_stream (e, 1, true);
  if (e->dead)
    return; /* the connection failed while flushing */
  struct proto_exec_exit ex = { 0 };
  if (WIFSIGNALED (status))
    {
      ex.signal = WTERMSIG (status);
      ex.exit_code = 128 + ex.signal;
    }
  else
    ex.exit_code = WEXITSTATUS (status);
  int64_t dur = sbx_mono_ns () - e->start_ns;
  ex.duration_us = dur > 0 ? (uint64_t) dur / 1000 : 0;
  ex.stdout_bytes = e->bytes[0];
  ex.stderr_bytes = e->bytes[1];
  ex.stdout_truncated = e->truncated[0];
  ex.stderr_truncated = e->truncated[1];
  ex.timed_out = e->timed_out;
  ex.cpu_us = (uint64_t) (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000
              + (uint64_t) (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec);
  ex.max_rss_kb = (uint64_t) ru->ru_maxrss;
  uint32_t id = e->id;
  exec_release (e);
  struct proto_buf b = { 0 };
  if (proto_exec_exit_encode (&ex, &b) < 0)
    {
      LOG_ERROR ("exec %u: out of memory", id);
      conn_close (c);
      return;
    }
  conn_send (c, PROTO_EXEC_EXIT, id, b.data, (uint32_t) b.len);
  proto_buf_free (&b);
}

void
exec_abandon (struct exec *e)
{
  exec_signal (e, SIGKILL);
  exec_release (e);
}

static int
open_timer (uint64_t ms, struct sbx_err *err)
{
  int fd = timerfd_create (CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0)
    return sbx_err_sys (err, "timerfd");
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

void
exec_start (struct conn *c, uint32_t id, const uint8_t *p, size_t n)
{
  struct agent *a = c->agent;
  struct sbx_err err = { 0 };
  /* A refusal that names an id the host already runs must not end that exec: id 0. */
  if (id == 0)
    return conn_send_error (c, 0, SBX_E_INVALID, "exec id 0 is reserved");
  if (conn_find_exec (c, id))
    return conn_send_error (c, 0, SBX_E_INVALID, "exec %u is already running", id);
  if (c->nexecs >= AGENT_MAX_EXECS)
    return conn_send_error (c, id, SBX_E_CAPACITY, "too many concurrent execs (max %d)",
                            AGENT_MAX_EXECS);
  struct proto_exec_req req;
  if (proto_exec_req_decode (p, n, &req, &err) < 0)
    return conn_send_error (c, id, SBX_E_INVALID, "%s", err.msg);
  struct exec *e = NULL;
  int tfd = -1;
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
  if (req.timeout_ms && (tfd = open_timer (req.timeout_ms, &err)) < 0)
    {
      conn_send_error (c, id, SBX_E_CAPACITY, "%s", err.msg);
      goto out;
    }
  int64_t start = sbx_mono_ns ();
  struct spawn_io io;
  if (agent_spawn (a, &req, &io, &err) < 0)
    {
      conn_send_error (c, id, (uint32_t) err.code, "%s", err.msg);
      goto out;
    }
  e = calloc (1, sizeof *e);
  if (!e)
    {
      /* Cannot track it: do not leave it running unobserved. */
      kill (-io.pid, SIGKILL);
      close (io.out_fd);
      close (io.err_fd);
      if (io.in_fd >= 0)
        close (io.in_fd);
      conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
      goto out;
    }
  e->conn = c;
  e->id = id;
  e->pid = io.pid;
  e->start_ns = start;
  e->max_output = req.max_output;
  e->out[0] = (struct watch){ .kind = W_STDOUT, .fd = io.out_fd, .owner = e };
  e->out[1] = (struct watch){ .kind = W_STDERR, .fd = io.err_fd, .owner = e };
  e->in = (struct watch){ .kind = W_STDIN, .fd = io.in_fd, .owner = e };
  e->timer = (struct watch){ .kind = W_TIMER, .fd = steal_fd (&tfd), .owner = e };
  e->next = c->execs;
  if (c->execs)
    c->execs->prev = e;
  c->execs = e;
  c->nexecs++;
  /* Unwatched pipes or timer would hang or outlive the request: fail closed. */
  if ((e->timer.fd >= 0 && agent_watch_set (a, &e->timer, EPOLLIN) < 0)
      || (!c->throttled
          && (agent_watch_set (a, &e->out[0], EPOLLIN) < 0
              || agent_watch_set (a, &e->out[1], EPOLLIN) < 0)))
    {
      conn_send_error (c, id, SBX_E_INTERNAL, "epoll: %s", strerror (errno));
      exec_abandon (e);
      goto out;
    }
  uint8_t pidbuf[4];
  put_be32 (pidbuf, (uint32_t) io.pid);
  conn_send (c, PROTO_EXEC_STARTED, id, pidbuf, sizeof pidbuf);
out:
  if (tfd >= 0)
    close (tfd);
  proto_exec_req_free (&req);
}
