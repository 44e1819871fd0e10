/* Follows: requests reading a process's output or state.
 *
 * STREAM sends output frames as the rings fill, as fast as the connection takes them
 * (never above AGENT_QUEUE_HIGH queued), then EXEC_EXIT once the process finished and
 * everything was sent; it holds the process's reads back (follow_floor) so nothing is
 * dropped. READ answers one PROC_OUTPUT: it waits (up to WAIT_MS) until there is output
 * beyond the offsets or the process finished, sends at most MAX_BYTES per stream and a
 * PROC_INFO with the offsets. WAIT answers PROC_WAIT at exit or at the deadline. */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>

#define READ_DEFAULT (1u << 20)

static uint64_t gen;   /* bumped when a follow is freed: iterations restart */
static uint64_t epoch; /* marks follows already pumped in one iteration */

struct follow *
follow_new (struct conn *c, uint32_t id, struct proc *p, enum follow_mode mode)
{
  struct agent *a = c->agent;
  struct follow *f = calloc (1, sizeof *f);
  if (!f)
    return NULL;
  f->mode = mode;
  f->conn = c;
  f->id = id;
  f->proc = p;
  f->timer = (struct watch){ .kind = W_FOLLOW_TIMER, .fd = -1, .owner = f };
  f->next = a->follows;
  if (a->follows)
    a->follows->prev = f;
  a->follows = f;
  c->nreqs++;
  return f;
}

void
follow_free (struct follow *f)
{
  if (f->dead)
    return;
  struct agent *a = f->conn->agent;
  agent_watch_close (a, &f->timer);
  if (f->prev)
    f->prev->next = f->next;
  else
    a->follows = f->next;
  if (f->next)
    f->next->prev = f->prev;
  f->conn->nreqs--;
  f->dead = true;
  f->prev = NULL;
  f->next = a->dead_follows;
  a->dead_follows = f;
  gen++;
  /* Its floor no longer holds the process back; it may be released. */
  f->proc->want_poke = true;
  proc_maybe_release (f->proc);
}

static bool
stream_done (const struct follow *f, int s)
{
  return f->max_output && f->sent[s] >= f->max_output;
}

uint64_t
follow_floor (const struct proc *p, int s)
{
  uint64_t floor = p->ring[s].end;
  for (const struct follow *f = p->agent->follows; f; f = f->next)
    if (f->proc == p && f->mode == FOL_STREAM && !stream_done (f, s) && f->off[s] < floor)
      floor = f->off[s];
  return floor < p->ring[s].start ? p->ring[s].start : floor;
}

bool
follow_has (const struct proc *p)
{
  for (const struct follow *f = p->agent->follows; f; f = f->next)
    if (f->proc == p)
      return true;
  return false;
}

struct follow *
follow_find (struct conn *c, uint32_t id)
{
  for (struct follow *f = c->agent->follows; f; f = f->next)
    if (f->conn == c && f->id == id)
      return f;
  return NULL;
}

static void
send_info (struct follow *f, const uint64_t start[2], const uint64_t end[2])
{
  struct proto_msg m;
  proc_info (f->proc, &m);
  if (start)
    {
      m.out_start = start[0];
      m.err_start = start[1];
      PROTO_SET (&m, PROTO_M_OUT_START);
      PROTO_SET (&m, PROTO_M_ERR_START);
    }
  if (end)
    {
      m.out_end = end[0];
      m.err_end = end[1];
      PROTO_SET (&m, PROTO_M_OUT_END);
      PROTO_SET (&m, PROTO_M_ERR_END);
    }
  conn_send_msg (f->conn, PROTO_PROC_INFO, f->id, &m); /* m borrows: not freed */
}

/* Queue up to n bytes of stream s from off as data frames (n bounded by the caller). */
static void
send_range (struct follow *f, int s, uint64_t off, uint64_t n)
{
  struct conn *c = f->conn;
  while (n && !c->dead)
    {
      size_t k = n < PROTO_DATA_CHUNK ? (size_t) n : PROTO_DATA_CHUNK;
      uint8_t *buf = conn_data_reserve (c);
      if (!buf)
        {
          LOG_ERROR ("connection %d: out of memory", c->w.fd);
          conn_close (c);
          return;
        }
      ring_copy (&f->proc->ring[s], off, buf, k);
      conn_data_commit (c, s ? PROTO_EXEC_STDERR : PROTO_EXEC_STDOUT, f->id, (uint32_t) k);
      off += k;
      n -= k;
      conn_flush (c);
      conn_update (c);
    }
}

static void
complete_read (struct follow *f)
{
  struct proc *p = f->proc;
  uint64_t start[2], end[2];
  for (int s = 0; s < 2; s++)
    {
      start[s] = f->off[s] < p->ring[s].start ? p->ring[s].start : f->off[s];
      if (start[s] > p->ring[s].end)
        start[s] = p->ring[s].end;
      uint64_t n = p->ring[s].end - start[s];
      if (n > f->max_bytes)
        n = f->max_bytes;
      end[s] = start[s] + n;
      send_range (f, s, start[s], n);
    }
  if (!f->conn->dead)
    send_info (f, start, end);
  follow_free (f);
}

static void
finish_stream (struct follow *f)
{
  struct proto_exec_exit ex;
  proc_exit_record (f->proc, &ex);
  ex.stdout_truncated = f->truncated[0];
  ex.stderr_truncated = f->truncated[1];
  struct proto_buf b = { 0 };
  if (proto_exec_exit_encode (&ex, &b) < 0)
    conn_close (f->conn);
  else
    conn_send (f->conn, PROTO_EXEC_EXIT, f->id, b.data, (uint32_t) b.len);
  proto_buf_free (&b);
  follow_free (f);
}

void
follow_pump (struct follow *f)
{
  struct proc *p = f->proc;
  struct conn *c = f->conn;
  if (f->dead || c->dead)
    return;
  if (f->mode == FOL_WAIT)
    {
      if (p->finished)
        {
          send_info (f, NULL, NULL);
          follow_free (f);
        }
      return;
    }
  if (f->mode == FOL_READ)
    {
      if (p->finished || p->ring[0].end > f->off[0] || p->ring[1].end > f->off[1])
        complete_read (f);
      return;
    }
  bool progress = true;
  while (progress && !c->dead && !c->throttled)
    {
      progress = false;
      /* One chunk of each stream per round keeps them interleaved roughly as written. */
      for (int s = 0; s < 2 && !c->dead && !c->throttled; s++)
        {
          struct ring *r = &p->ring[s];
          if (f->off[s] < r->start)
            f->off[s] = r->start; /* dropped before this follow attached */
          uint64_t avail = r->end - f->off[s];
          if (!avail)
            continue;
          if (stream_done (f, s))
            {
              /* Past max_output: counted and dropped, never holding the process back. */
              f->truncated[s] = 1;
              f->off[s] = r->end;
              continue;
            }
          uint64_t k = avail < PROTO_DATA_CHUNK ? avail : PROTO_DATA_CHUNK;
          if (f->max_output && k > f->max_output - f->sent[s])
            k = f->max_output - f->sent[s];
          send_range (f, s, f->off[s], k);
          f->off[s] += k;
          f->sent[s] += k;
          progress = true;
        }
    }
  if (f->dead || c->dead)
    return;
  p->want_poke = true;
  if (p->finished && f->off[0] == p->ring[0].end && f->off[1] == p->ring[1].end)
    finish_stream (f);
}

/* Pump every follow matching (p, c) once; restart-safe against follows freed meanwhile. */
static void
pump_matching (struct agent *a, const struct proc *p, const struct conn *c)
{
  uint64_t e = ++epoch, g;
again:
  g = gen;
  for (struct follow *f = a->follows; f; f = f->next)
    {
      if ((p && f->proc != p) || (c && f->conn != c) || f->dead || f->mark == e)
        continue;
      f->mark = e;
      follow_pump (f);
      if (gen != g)
        goto again;
    }
}

void
follow_proc_changed (struct proc *p)
{
  pump_matching (p->agent, p, NULL);
}

void
follow_conn_pump (struct conn *c)
{
  pump_matching (c->agent, NULL, c);
}

void
follow_update_conns (struct proc *p)
{
  for (struct follow *f = p->agent->follows; f; f = f->next)
    if (f->proc == p && !f->conn->dead)
      conn_update (f->conn);
}

bool
follow_stdin_full (const struct conn *c)
{
  for (const struct follow *f = c->agent->follows; f; f = f->next)
    if (f->conn == c && proc_stdin_queued (f->proc) > AGENT_STDIN_HIGH)
      return true;
  return false;
}

void
follow_conn_closed (struct conn *c)
{
  struct agent *a = c->agent;
  for (struct follow *f = a->follows, *nx; f; f = nx)
    {
      nx = f->next;
      if (f->conn != c)
        continue;
      /* Nobody is left to read a foreground exec: kill its process group. */
      if (f->kill_on_close && !f->proc->exited)
        proc_signal (f->proc, SIGKILL);
      follow_free (f);
    }
}

void
follow_timer_event (struct follow *f)
{
  if (f->dead)
    return;
  if (f->mode == FOL_READ)
    complete_read (f);
  else
    {
      send_info (f, NULL, NULL);
      follow_free (f);
    }
}

static int
arm_timer (struct follow *f, uint64_t ms)
{
  struct sbx_err err = { 0 };
  f->timer.fd = agent_timer_open (ms, &err);
  if (f->timer.fd < 0 || agent_watch_set (f->conn->agent, &f->timer, EPOLLIN) < 0)
    return -1;
  return 0;
}

static void
request_output (struct conn *c, uint32_t id, struct proc *p, const struct proto_msg *m)
{
  struct follow *f = follow_new (c, id, p, m->follow ? FOL_STREAM : FOL_READ);
  if (!f)
    return conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
  f->off[0] = PROTO_HAS (m, PROTO_M_OUT_START) ? m->out_start : 0;
  f->off[1] = PROTO_HAS (m, PROTO_M_ERR_START) ? m->err_start : 0;
  for (int s = 0; s < 2; s++)
    {
      if (f->off[s] < p->ring[s].start)
        f->off[s] = p->ring[s].start;
      if (f->off[s] > p->ring[s].end)
        f->off[s] = p->ring[s].end;
    }
  if (m->follow)
    {
      /* Where the data that follows begins (above the asked offset if it was dropped). */
      send_info (f, f->off, NULL);
      follow_pump (f);
      return;
    }
  f->max_bytes = PROTO_HAS (m, PROTO_M_MAX_BYTES) && m->max_bytes ? m->max_bytes : READ_DEFAULT;
  if (f->max_bytes > AGENT_READ_MAX)
    f->max_bytes = AGENT_READ_MAX;
  bool ready = p->finished || p->ring[0].end > f->off[0] || p->ring[1].end > f->off[1];
  if (ready || !m->wait_ms)
    return complete_read (f);
  if (arm_timer (f, m->wait_ms) < 0)
    complete_read (f);
}

void
follow_request (struct conn *c, const struct proto_frame *fr)
{
  struct agent *a = c->agent;
  struct sbx_err err = { 0 };
  uint32_t id = fr->id;
  if (id == 0)
    return conn_send_error (c, 0, SBX_E_INVALID, "request id 0 is reserved");
  if (conn_id_in_use (c, id))
    return conn_send_error (c, 0, SBX_E_INVALID, "request %u is already running", id);
  if (c->nreqs >= AGENT_MAX_EXECS)
    return conn_send_error (c, id, SBX_E_CAPACITY, "too many concurrent requests (max %d)",
                            AGENT_MAX_EXECS);
  struct proto_msg m;
  if (proto_msg_decode (fr->payload, fr->len, &m, &err) < 0)
    return conn_send_error (c, id, SBX_E_INVALID, "%s", err.msg);
  if (fr->type == PROTO_PROC_LIST)
    {
      for (struct proc *p = a->procs; p && !c->dead; p = p->next)
        {
          struct proto_msg info;
          proc_info (p, &info);
          conn_send_msg (c, PROTO_PROC_INFO, id, &info);
        }
      conn_send (c, PROTO_DONE, id, NULL, 0);
      goto out;
    }
  struct proc *p = PROTO_HAS (&m, PROTO_M_PROC_ID) ? proc_find (a, m.proc_id) : NULL;
  if (!p)
    {
      conn_send_errno (c, id, ESRCH, "no process %u", m.proc_id);
      goto out;
    }
  struct follow tmp = { .conn = c, .id = id, .proc = p };
  switch (fr->type)
    {
    case PROTO_PROC_OUTPUT:
      request_output (c, id, p, &m);
      break;
    case PROTO_PROC_WAIT:
      {
        if (p->finished || !m.wait_ms)
          {
            send_info (&tmp, NULL, NULL);
            break;
          }
        struct follow *f = follow_new (c, id, p, FOL_WAIT);
        if (!f)
          conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
        else if (arm_timer (f, m.wait_ms) < 0)
          follow_timer_event (f);
        break;
      }
    case PROTO_PROC_STDIN:
      if (p->in.fd < 0 || p->in_eof)
        conn_send_errno (c, id, EPIPE, "process %u has no open stdin", p->id);
      else if (proc_stdin_queued (p) + m.data_len > AGENT_STDIN_MAX)
        conn_send_error (c, id, SBX_E_CAPACITY,
                         "process %u: more than %u bytes of stdin waiting; retry later", p->id,
                         AGENT_STDIN_MAX);
      else
        {
          proc_stdin (p, m.data, m.data_len, m.eof != 0);
          send_info (&tmp, NULL, NULL);
        }
      break;
    case PROTO_PROC_SIGNAL:
      if (m.signal == 0 || m.signal >= (uint32_t) NSIG)
        conn_send_error (c, id, SBX_E_INVALID, "invalid signal %u", m.signal);
      else
        {
          proc_signal (p, (int) m.signal);
          send_info (&tmp, NULL, NULL);
        }
      break;
    case PROTO_PROC_RESIZE:
      if (m.rows == 0 || m.cols == 0 || m.rows > 4096 || m.cols > 4096)
        conn_send_error (c, id, SBX_E_INVALID, "invalid size %ux%u", m.rows, m.cols);
      else if (proc_resize (p, m.rows, m.cols) < 0)
        conn_send_errno (c, id, errno, "resize process %u: %s", p->id, strerror (errno));
      else
        send_info (&tmp, NULL, NULL);
      break;
    default:
      break;
    }
out:
  proto_msg_free (&m);
}
