/* Connections: HELLO, frame dispatch, the outgoing queue and flow control.
 *
 * Writes never block: frames go to a per-connection queue that is flushed as the socket
 * takes it. Above AGENT_QUEUE_HIGH queued bytes the connection is throttled: output is no
 * longer pumped to it (its readers fall behind, their processes' rings fill, the pipes are
 * no longer read, so the programs block on a full pipe and nothing is dropped) and its own
 * input stops being read, until the queue falls below AGENT_QUEUE_LOW. */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t
queued (const struct conn *c)
{
  return c->outq.len - c->outq_off;
}

void
conn_flush (struct conn *c)
{
  while (!c->dead && queued (c) > 0)
    {
      ssize_t n = send (c->w.fd, c->outq.data + c->outq_off, queued (c),
                        MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN)
            break;
          LOG_DEBUG ("connection %d: send: %s", c->w.fd, strerror (errno));
          conn_close (c);
          return;
        }
      c->outq_off += (size_t) n;
    }
  if (c->outq_off == c->outq.len)
    c->outq_off = c->outq.len = 0;
  else if (c->outq_off >= AGENT_QUEUE_LOW && c->outq_off * 2 >= c->outq.len)
    {
      memmove (c->outq.data, c->outq.data + c->outq_off, queued (c));
      c->outq.len -= c->outq_off;
      c->outq_off = 0;
    }
}

void
conn_update (struct conn *c)
{
  if (c->dead)
    return;
  bool was = c->throttled;
  if (queued (c) > AGENT_QUEUE_HIGH)
    c->throttled = true;
  else if (queued (c) < AGENT_QUEUE_LOW)
    c->throttled = false;
  /* Not from here (we may be inside a send): the loop pumps after the batch. */
  if (was && !c->throttled)
    c->want_pump = true;
  bool stdin_full = follow_stdin_full (c);
  uint32_t ev = 0;
  if (!c->throttled && !stdin_full)
    ev |= EPOLLIN;
  if (queued (c) > 0)
    ev |= EPOLLOUT;
  /* EPOLLHUP/EPOLLERR come regardless; with no interest at all we still want them, so
   * keep the socket registered with EPOLLRDHUP as a minimum. */
  if (agent_watch_set (c->agent, &c->w, ev ? ev : EPOLLRDHUP) < 0)
    {
      LOG_WARN ("connection %d: epoll: %s", c->w.fd, strerror (errno));
      conn_close (c);
    }
}

static void
oom_close (struct conn *c)
{
  LOG_ERROR ("connection %d: out of memory, closing it", c->w.fd);
  conn_close (c);
}

void
conn_send (struct conn *c, uint8_t type, uint32_t id, const void *p, uint32_t len)
{
  if (c->dead)
    return;
  if (proto_frame_append (&c->outq, type, id, p, len) < 0)
    {
      oom_close (c);
      return;
    }
  conn_flush (c);
  conn_update (c);
}

static void
send_error_v (struct conn *c, uint32_t id, uint32_t code, int sys_errno, const char *fmt,
              va_list ap)
{
  char msg[512];
  vsnprintf (msg, sizeof msg, fmt, ap);
  struct proto_buf b = { 0 };
  if (proto_error_encode_errno (&b, code, sys_errno, msg) < 0)
    {
      oom_close (c);
      return;
    }
  conn_send (c, PROTO_ERROR, id, b.data, (uint32_t) b.len);
  proto_buf_free (&b);
}

void
conn_send_error (struct conn *c, uint32_t id, uint32_t code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  send_error_v (c, id, code, 0, fmt, ap);
  va_end (ap);
}

void
conn_send_errno (struct conn *c, uint32_t id, int sys_errno, const char *fmt, ...)
{
  uint32_t code = sys_errno == ENOENT || sys_errno == ESRCH ? SBX_E_NOT_FOUND
                  : sys_errno == ENOMEM || sys_errno == ENOSPC || sys_errno == EMFILE
                      ? SBX_E_CAPACITY
                      : SBX_E_INVALID;
  va_list ap;
  va_start (ap, fmt);
  send_error_v (c, id, code, sys_errno, fmt, ap);
  va_end (ap);
}

void
conn_send_msg (struct conn *c, uint8_t type, uint32_t id, const struct proto_msg *m)
{
  struct proto_buf b = { 0 };
  if (proto_msg_encode (m, &b) < 0)
    {
      proto_buf_free (&b);
      if (errno == EMSGSIZE)
        return conn_send_error (c, id, SBX_E_INTERNAL, "reply too large");
      oom_close (c);
      return;
    }
  conn_send (c, type, id, b.data, (uint32_t) b.len);
  proto_buf_free (&b);
}

uint8_t *
conn_data_reserve (struct conn *c)
{
  if (proto_buf_reserve (&c->outq, PROTO_HEADER_SIZE + PROTO_DATA_CHUNK) < 0)
    return NULL;
  return c->outq.data + c->outq.len + PROTO_HEADER_SIZE;
}

void
conn_data_commit (struct conn *c, uint8_t type, uint32_t id, uint32_t len)
{
  proto_header_encode (c->outq.data + c->outq.len, type, id, len);
  c->outq.len += PROTO_HEADER_SIZE + (size_t) len;
}

/* A protocol violation: tell the peer why (best effort) and close. */
static void
conn_fail (struct conn *c, uint32_t code, const char *msg)
{
  LOG_DEBUG ("connection %d: %s", c->w.fd, msg);
  conn_send_error (c, 0, code, "%s", msg);
  conn_close (c);
}

void
conn_close (struct conn *c)
{
  if (c->dead)
    return;
  struct agent *a = c->agent;
  c->dead = true;
  /* Foreground execs are killed; background ones keep running. */
  follow_conn_closed (c);
  files_conn_closed (c);
  watch_conn_closed (c);
  LOG_DEBUG ("connection %d closed (%zu were open)", c->w.fd, a->nconns);
  agent_watch_close (a, &c->w);
  if (c->prev)
    c->prev->next = c->next;
  else
    a->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  a->nconns--;
  c->prev = NULL;
  c->next = a->dead_conns;
  a->dead_conns = c;
}

int
conn_id_in_use (struct conn *c, uint32_t id)
{
  return follow_find (c, id) || files_active (c, id) || watch_active (c, id);
}

static uint32_t
get_be32 (const uint8_t *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void
handle_hello (struct conn *c, const struct proto_frame *f)
{
  struct sbx_err err = { 0 };
  uint32_t version = 0;
  if (f->type != PROTO_HELLO)
    return conn_fail (c, SBX_E_PROTO, "expected hello");
  if (proto_hello_decode (f->payload, f->len, &version, &err) < 0)
    return conn_fail (c, SBX_E_PROTO, err.msg);
  if (version != PROTO_VERSION)
    {
      char msg[96];
      snprintf (msg, sizeof msg, "unsupported protocol version %u (sbx-init speaks %u)", version,
                PROTO_VERSION);
      return conn_fail (c, SBX_E_PROTO, msg);
    }
  c->hello_done = true;
}

static void
handle_frame (struct conn *c, const struct proto_frame *f)
{
  if (!c->hello_done)
    return handle_hello (c, f);
  struct follow *fo;
  switch (f->type)
    {
    case PROTO_HELLO:
    case PROTO_PONG:
      return;
    case PROTO_PING:
      return conn_send (c, PROTO_PONG, f->id, f->payload, f->len);
    case PROTO_EXEC_START:
      return proc_exec_start (c, f->id, f->payload, f->len);
    case PROTO_EXEC_STDIN:
      /* Data for an exec that just ended races with its EXEC_EXIT: dropped. */
      if ((fo = follow_find (c, f->id)) && fo->mode == FOL_STREAM)
        {
          proc_stdin (fo->proc, f->payload, f->len, f->len == 0);
          conn_update (c);
        }
      return;
    case PROTO_PROC_OUTPUT:
    case PROTO_PROC_WAIT:
    case PROTO_PROC_STDIN:
    case PROTO_PROC_SIGNAL:
    case PROTO_PROC_RESIZE:
    case PROTO_PROC_LIST:
      return follow_request (c, f);
    case PROTO_FILE_READ:
    case PROTO_FILE_WRITE:
    case PROTO_FILE_OP:
      return files_request (c, f);
    case PROTO_FILE_DATA:
      return files_data (c, f);
    case PROTO_WATCH:
      return watch_start (c, f);
    case PROTO_EXEC_SIGNAL:
      {
        if (f->len != 4)
          return conn_fail (c, SBX_E_PROTO, "exec signal: payload is not a u32");
        uint32_t sig = get_be32 (f->payload);
        if (sig == 0 || sig >= (uint32_t) NSIG)
          return conn_send_error (c, 0, SBX_E_INVALID, "exec %u: invalid signal %u", f->id, sig);
        if ((fo = follow_find (c, f->id)) && fo->mode == FOL_STREAM)
          proc_signal (fo->proc, (int) sig);
        return;
      }
    default:
      {
        char msg[64];
        snprintf (msg, sizeof msg, "unexpected frame type %u from the host", f->type);
        return conn_fail (c, SBX_E_PROTO, msg);
      }
    }
}

static void
conn_readable (struct conn *c)
{
  ssize_t n = proto_reader_fill (&c->rd, c->w.fd);
  if (n == 0)
    return conn_close (c);
  if (n < 0)
    {
      if (errno == EAGAIN || errno == EINTR)
        return;
      LOG_DEBUG ("connection %d: read: %s", c->w.fd, strerror (errno));
      return conn_close (c);
    }
  /* Everything buffered is handled now: the buffer is bounded (one maximal frame plus a
   * read), so this adds at most that much to the queues even when throttled. */
  while (!c->dead)
    {
      struct proto_frame f;
      struct sbx_err err = { 0 };
      int rc = proto_reader_next (&c->rd, &f, &err);
      if (rc == 0)
        break;
      if (rc < 0)
        return conn_fail (c, SBX_E_PROTO, err.msg);
      handle_frame (c, &f);
    }
}

void
conn_event (struct conn *c, uint32_t events)
{
  if (c->w.fd < 0)
    return;
  if (events & EPOLLOUT)
    {
      conn_flush (c);
      conn_update (c);
    }
  if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
    conn_readable (c);
}

void
agent_accept (struct agent *a)
{
  for (int i = 0; i < 16; i++)
    {
      int fd = accept4 (a->listen.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0)
        {
          if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            LOG_WARN ("accept: %s", strerror (errno));
          return;
        }
      if (a->nconns >= AGENT_MAX_CONNS)
        {
          /* Refused before HELLO; proto_client_connect reports this ERROR. */
          struct proto_buf p = { 0 }, fr = { 0 };
          if (proto_error_encode (&p, SBX_E_CAPACITY, "too many connections") == 0
              && proto_frame_append (&fr, PROTO_ERROR, 0, p.data, (uint32_t) p.len) == 0)
            (void) !send (fd, fr.data, fr.len, MSG_NOSIGNAL | MSG_DONTWAIT);
          proto_buf_free (&p);
          proto_buf_free (&fr);
          close (fd);
          continue;
        }
      struct conn *c = calloc (1, sizeof *c);
      if (!c)
        {
          close (fd);
          continue;
        }
      LOG_DEBUG ("connection %d accepted (%zu were open)", fd, a->nconns);
      c->agent = a;
      c->w = (struct watch){ .kind = W_CONN, .fd = fd, .owner = c };
      proto_reader_init (&c->rd);
      c->next = a->conns;
      if (a->conns)
        a->conns->prev = c;
      a->conns = c;
      a->nconns++;
      struct proto_buf hello = { 0 };
      if (proto_hello_encode (&hello, "sbx-init") < 0)
        {
          oom_close (c);
          continue;
        }
      conn_send (c, PROTO_HELLO, 0, hello.data, (uint32_t) hello.len);
      proto_buf_free (&hello);
    }
}
