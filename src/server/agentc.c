/* sbxd's side of the agent requests of issue 6: one connection per API request, blocking
 * (libmicrohttpd gives each request its own thread), registered with the sandbox so that
 * terminate cuts it and a sandbox cannot hold more than SRV_EXECS_PER_SANDBOX. */
#include "inside.h"
#include "../runtime/runtime.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
inside_open (struct srv *s, const char *id, int id_valid, struct srv_agent *ag,
             struct srv_reply *r)
{
  memset (ag, 0, sizeof *ag);
  ag->s = s;
  ag->fd = -1;
  proto_reader_init (&ag->rd);
  struct srv_sandbox *sb = id_valid ? srv_sandbox_get (s, id) : NULL;
  if (!sb)
    {
      srv_reply_not_live (s, id_valid ? id : "", r);
      return -1;
    }
  ag->sb = sb;
  pthread_mutex_lock (&s->lock);
  int live = sb->state == SRV_SB_LIVE;
  pthread_mutex_unlock (&s->lock);
  if (!live)
    {
      srv_reply_sandbox_ended (sb, "request", r);
      return -1;
    }
  struct sbx_err err = { 0 };
  proto_reader_free (&ag->rd);
  ag->fd = proto_client_connect (rt_sandbox_socket (sb->rt), &ag->rd, &err);
  int reg = ag->fd >= 0 ? srv_exec_register (sb, ag->fd) : -1;
  if (reg == -2)
    {
      srv_reply_http (r, 429, "too_many_requests",
                      "too many requests running in this sandbox at once; retry later");
      r->retry_after = 1;
      return -1;
    }
  if (ag->fd < 0 || reg < 0)
    {
      pthread_mutex_lock (&s->lock);
      live = sb->state == SRV_SB_LIVE && !s->stopping;
      pthread_mutex_unlock (&s->lock);
      if (live)
        {
          LOG_ERROR ("agent of %s: %s", sb->id, err.msg);
          srv_reply_error (r, SBX_E_EXEC_FAILED, "could not reach the sandbox agent");
        }
      else
        srv_reply_sandbox_ended (sb, "request", r);
      return -1;
    }
  ag->registered = 1;
  return 0;
}

void
inside_close (struct srv_agent *ag)
{
  if (ag->registered)
    srv_exec_unregister (ag->sb, ag->fd);
  if (ag->fd >= 0)
    close (ag->fd);
  proto_reader_free (&ag->rd);
  if (ag->sb)
    srv_sandbox_put (ag->sb);
  memset (ag, 0, sizeof *ag);
  ag->fd = -1;
}

int
inside_send (struct srv_agent *ag, uint8_t type, uint32_t id, const void *p, uint32_t len)
{
  return proto_frame_write (ag->fd, type, id, p, len);
}

int
inside_send_msg (struct srv_agent *ag, uint8_t type, uint32_t id, const struct proto_msg *m)
{
  struct proto_buf b = { 0 };
  int rc = proto_msg_encode (m, &b) < 0 ? -1 : inside_send (ag, type, id, b.data,
                                                               (uint32_t) b.len);
  proto_buf_free (&b);
  return rc;
}

int
inside_request (struct srv_agent *ag, uint8_t type, uint32_t id, const struct proto_msg *m,
                struct srv_reply *r)
{
  if (inside_send_msg (ag, type, id, m) == 0)
    return 0;
  inside_reply_lost (ag, r);
  return -1;
}

int
inside_next (struct srv_agent *ag, struct proto_frame *f, int timeout_ms)
{
  int64_t deadline = timeout_ms >= 0 ? sbx_mono_ns () / 1000000 + timeout_ms : 0;
  for (;;)
    {
      struct sbx_err err = { 0 };
      int rc = proto_reader_next (&ag->rd, f, &err);
      if (rc == 1)
        return 1;
      if (rc < 0)
        {
          LOG_ERROR ("agent of %s: %s", ag->sb->id, err.msg);
          return -1;
        }
      int wait = -1;
      if (timeout_ms >= 0)
        {
          int64_t left = deadline - sbx_mono_ns () / 1000000;
          if (left <= 0)
            return 0;
          wait = (int) left;
        }
      struct pollfd p = { .fd = ag->fd, .events = POLLIN };
      int pr = poll (&p, 1, wait);
      if (pr < 0 && errno != EINTR)
        return -1;
      if (pr <= 0)
        continue;
      ssize_t n = proto_reader_fill (&ag->rd, ag->fd);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return -1;
    }
}

void
inside_reply_agent_error (const struct proto_frame *f, struct srv_reply *r)
{
  uint32_t code = SBX_E_INTERNAL;
  int e = 0;
  char msg[512];
  struct sbx_err err = { 0 };
  if (proto_error_decode_errno (f->payload, f->len, &code, &e, msg, sizeof msg, &err) < 0)
    {
      srv_reply_error (r, SBX_E_EXEC_FAILED, "bad error frame from the sandbox agent");
      return;
    }
  switch (e)
    {
    case ENOENT: srv_reply_http (r, 404, "file_not_found", msg); return;
    case ESRCH: srv_reply_http (r, 404, "process_not_found", msg); return;
    case EEXIST: srv_reply_http (r, 409, "already_exists", msg); return;
    case ENOTEMPTY: srv_reply_http (r, 409, "directory_not_empty", msg); return;
    case EPIPE: srv_reply_http (r, 409, "stdin_closed", msg); return;
    case ELOOP:
    case EXDEV:
    case EACCES:
    case EPERM: srv_reply_http (r, 403, "forbidden", msg); return;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: srv_reply_http (r, 507, "insufficient_storage", msg); return;
    case 0: break;
    default: srv_reply_http (r, 400, "invalid_request", msg); return;
    }
  if (code == SBX_E_CAPACITY)
    {
      srv_reply_http (r, 429, "too_many_requests", msg);
      r->retry_after = 1;
    }
  else if (code == SBX_E_INVALID)
    srv_reply_error (r, SBX_E_INVALID, msg);
  else
    srv_reply_error (r, SBX_E_EXEC_FAILED, msg);
}

void
inside_reply_lost (struct srv_agent *ag, struct srv_reply *r)
{
  srv_reply_sandbox_ended (ag->sb, "request", r);
}

int
inside_reply_frame (struct srv_agent *ag, struct proto_frame *f, int timeout_ms,
                    struct srv_reply *r)
{
  int rc = inside_next (ag, f, timeout_ms);
  if (rc <= 0)
    {
      if (rc == 0)
        srv_reply_error (r, SBX_E_EXEC_FAILED, "the sandbox agent did not answer in time");
      else
        inside_reply_lost (ag, r);
      return -1;
    }
  if (f->type == PROTO_ERROR)
    {
      inside_reply_agent_error (f, r);
      return -2;
    }
  return 1;
}

void
inside_record (struct srv *s, const char *sandbox_id, char **argv, size_t argc,
               const struct proto_exec_exit *ex, int64_t started_ms, const char *error)
{
  json_t *a = json_array ();
  for (size_t i = 0; i < argc; i++)
    json_array_append_new (a, json_string (argv[i]));
  char *argv_json = json_dumps (a, JSON_COMPACT);
  json_decref (a);
  struct store_exec e = {
    .sandbox_id = sandbox_id,
    .argv_json = argv_json,
    .has_exit_code = ex != NULL,
    .exit_code = ex ? ex->exit_code : 0,
    .timed_out = ex ? ex->timed_out : 0,
    .truncated = ex ? (ex->stdout_truncated || ex->stderr_truncated) : 0,
    .started_at_ms = started_ms,
    .duration_ms = ex ? (int64_t) (ex->duration_us / 1000) : sbx_now_ms () - started_ms,
    .stdout_bytes = ex ? ex->stdout_bytes : 0,
    .stderr_bytes = ex ? ex->stderr_bytes : 0,
    .error = error,
  };
  struct sbx_err err = { 0 };
  if (store_exec_record (s->store, &e, &err) < 0)
    LOG_ERROR ("audit exec in %s: %s", sandbox_id, err.msg);
  free (argv_json);
}

int
inside_peek (struct srv_agent *ag, int timeout_ms, struct srv_reply *r)
{
  struct proto_frame f;
  int rc = inside_reply_frame (ag, &f, timeout_ms, r);
  if (rc < 0)
    return rc;
  /* Put it back: the frame's bytes are still in the reader's buffer, just consumed. */
  ag->rd.consumed -= PROTO_HEADER_SIZE + (size_t) f.len;
  return 1;
}
