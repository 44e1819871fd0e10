/* Issue 6 endpoints, part 3: streamed responses and streamed uploads.
 *
 * A streamed response is a libmicrohttpd response from a callback. MHD calls the callback
 * (in the request's own thread) only when the client's socket can take more, and the
 * callback reads the agent socket only when it has nothing left to give: a client that
 * stops reading stops us reading the agent, whose queue fills, whose rings fill, so the
 * program blocks in write(). Nothing is dropped and sbxd holds at most one read of the
 * agent socket (64 KiB of frames) per stream. Quiet event streams get a keepalive event
 * every INSIDE_KEEPALIVE_MS.
 *
 * Event streams (exec with "stream", process output with "follow", watch) are NDJSON, one
 * JSON object per line, or Server-Sent Events when the client accepts text/event-stream.
 * Raw streams (file and tar download) are the bytes; a failure mid-way aborts the
 * response (the client sees a truncated chunked body, never a silently short file).
 *
 * Raw GETs and uploads of files and tar are in transfer.c. */
#include "inside.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>


struct srv_stream {
  enum inside_stream_kind kind;
  struct srv_agent ag;
  uint32_t req_id;
  struct proto_buf pending; /* frames for the agent (stdin), from pending_off */
  size_t pending_off;
  struct proto_buf out;     /* bytes for the client, from out_off */
  size_t out_off;
  int sse, b64;
  int done, failed;
  uint8_t hold[2][4];       /* UTF-8 bytes held back until their character completes */
  size_t hold_len[2];
  uint64_t offset[2];       /* absolute offset of the next data byte of each stream */
  struct proto_buf errbuf;  /* tar: stderr, bounded, for the log */
  /* collect mode (inside_exec_collect) */
  struct proto_buf keep[2];
  int keep_trunc[2];
  uint64_t max_output;
  uint32_t pid, proc_id;
  int existing;
  struct proto_exec_exit exit;
  int got_exit;
  struct srv_reply *reply;  /* collect: where an ERROR / loss goes */
  int client_fd;            /* the HTTP client's socket: watched for hang-up only */
  char **audit_argv;        /* ST_EXEC: recorded when the stream ends */
  size_t audit_argc;
  int64_t started_ms;
  int got_started;
};

static char **
strv_dup (char **v, size_t n)
{
  char **c = calloc (n + 1, sizeof *c);
  for (size_t i = 0; c && i < n; i++)
    if (!(c[i] = strdup (v[i])))
      {
        srv_strv_free (c);
        return NULL;
      }
  return c;
}

static void
audit (struct srv_stream *st)
{
  if (!st->audit_argv || !st->got_started || st->existing || !st->ag.sb)
    return;
  inside_record (st->ag.s, st->ag.sb->id, st->audit_argv, st->audit_argc,
                 st->got_exit ? &st->exit : NULL, st->started_ms,
                 st->got_exit ? NULL : "the stream ended before the command");
}

void
inside_stream_audit (struct srv_reply *r, char **argv, size_t argc)
{
  struct srv_stream *st = r->stream;
  if (!st)
    return;
  st->audit_argv = strv_dup (argv, argc);
  st->audit_argc = st->audit_argv ? argc : 0;
}

static void
out_append (struct srv_stream *st, const void *p, size_t n)
{
  if (proto_buf_append (&st->out, p, n) < 0)
    st->failed = st->done = 1;
}

static void
event (struct srv_stream *st, const char *type, json_t *o)
{
  if (!o)
    o = json_object ();
  json_object_set_new (o, "type", json_string (type));
  char *txt = json_dumps (o, SRV_JSON_OUT);
  json_decref (o);
  if (!txt)
    {
      st->failed = st->done = 1;
      return;
    }
  if (st->sse)
    {
      out_append (st, "event: ", 7);
      out_append (st, type, strlen (type));
      out_append (st, "\ndata: ", 7);
      out_append (st, txt, strlen (txt));
      out_append (st, "\n\n", 2);
    }
  else
    {
      out_append (st, txt, strlen (txt));
      out_append (st, "\n", 1);
    }
  free (txt);
}

static void
error_event (struct srv_stream *st, struct srv_reply *er)
{
  json_t *e = er->body ? json_object_get (er->body, "error") : NULL;
  json_t *o = json_object ();
  json_object_set_new (o, "code", json_incref (json_object_get (e, "code")));
  json_object_set_new (o, "message", json_incref (json_object_get (e, "message")));
  json_object_set_new (o, "status", json_integer (er->status));
  event (st, "error", o);
  json_decref (er->body);
  er->body = NULL;
}

/* One data event; text when it is UTF-8 (a character cut at the chunk end waits for the
 * next chunk), else base64 with "encoding". */
static void
data_event (struct srv_stream *st, int s, const uint8_t *p, size_t n, int final)
{
  size_t total = st->hold_len[s] + n;
  uint8_t *buf = malloc (total ? total : 1);
  if (!buf)
    {
      st->failed = st->done = 1;
      return;
    }
  memcpy (buf, st->hold[s], st->hold_len[s]);
  if (n)
    memcpy (buf + st->hold_len[s], p, n);
  st->hold_len[s] = 0;
  size_t keep = (st->b64 || final) ? 0 : inside_utf8_tail (buf, total);
  size_t emit = total - keep;
  memcpy (st->hold[s], buf + emit, keep);
  st->hold_len[s] = keep;
  if (emit)
    {
      int used;
      json_t *o = json_object ();
      json_object_set_new (o, "data", inside_data_json (buf, emit, st->b64, &used));
      if (used)
        json_object_set_new (o, "encoding", json_string ("base64"));
      json_object_set_new (o, "offset", json_integer ((json_int_t) st->offset[s]));
      st->offset[s] += emit;
      event (st, s ? "stderr" : "stdout", o);
    }
  free (buf);
}

static void
keep_append (struct srv_stream *st, int s, const uint8_t *p, size_t n)
{
  size_t room = st->keep[s].len < st->max_output ? (size_t) (st->max_output - st->keep[s].len)
                                                  : 0;
  if (n > room)
    {
      st->keep_trunc[s] = 1;
      n = room;
    }
  if (n && proto_buf_append (&st->keep[s], p, n) < 0)
    st->keep_trunc[s] = 1;
}

static json_t *
exit_json (const struct proto_exec_exit *ex)
{
  json_t *o = json_object ();
  json_object_set_new (o, "exit_code", json_integer (ex->exit_code));
  json_object_set_new (o, "returncode", json_integer (ex->exit_code));
  if (ex->signal)
    json_object_set_new (o, "signal", json_integer (ex->signal));
  json_object_set_new (o, "duration_ms", json_integer ((json_int_t) (ex->duration_us / 1000)));
  json_object_set_new (o, "timed_out", json_boolean (ex->timed_out));
  json_object_set_new (o, "stdout_bytes", json_integer ((json_int_t) ex->stdout_bytes));
  json_object_set_new (o, "stderr_bytes", json_integer ((json_int_t) ex->stderr_bytes));
  json_object_set_new (o, "usage", inside_usage_json (ex->cpu_us, ex->max_rss_kb));
  return o;
}

static void
handle_frame (struct srv_stream *st, const struct proto_frame *f)
{
  struct sbx_err err = { 0 };
  if (f->id != st->req_id)
    return;
  if (f->type == PROTO_ERROR)
    {
      struct srv_reply er = { 0 };
      inside_reply_agent_error (f, &er);
      if (st->kind == ST_RAW_FILE || st->kind == ST_RAW_TAR)
        {
          LOG_WARN ("stream from %s failed: %s", st->ag.sb->id,
                    json_string_value (json_object_get (json_object_get (er.body, "error"),
                                                        "message")));
          json_decref (er.body);
          st->failed = 1;
        }
      else if (st->reply)
        *st->reply = er;
      else
        error_event (st, &er);
      st->done = 1;
      return;
    }
  switch (st->kind)
    {
    case ST_RAW_FILE:
      if (f->type == PROTO_FILE_DATA)
        out_append (st, f->payload, f->len);
      else if (f->type == PROTO_DONE)
        st->done = 1;
      return;
    case ST_RAW_TAR:
      if (f->type == PROTO_EXEC_STDOUT)
        out_append (st, f->payload, f->len);
      else if (f->type == PROTO_EXEC_STDERR && st->errbuf.len < INSIDE_ERR_KEEP)
        proto_buf_append (&st->errbuf, f->payload,
                          f->len < INSIDE_ERR_KEEP - st->errbuf.len ? f->len : INSIDE_ERR_KEEP - st->errbuf.len);
      else if (f->type == PROTO_EXEC_EXIT)
        {
          struct proto_exec_exit ex;
          if (proto_exec_exit_decode (f->payload, f->len, &ex, &err) < 0 || ex.exit_code != 0)
            {
              LOG_WARN ("tar in %s failed: %.*s", st->ag.sb->id, (int) st->errbuf.len,
                        st->errbuf.data ? (char *) st->errbuf.data : "");
              st->failed = 1;
            }
          st->done = 1;
        }
      return;
    case ST_WATCH:
      if (f->type == PROTO_WATCH_EVENT)
        {
          struct proto_msg m;
          if (proto_msg_decode (f->payload, f->len, &m, &err) < 0)
            return;
          static const char *const names[] = { "", "created", "modified", "deleted",
                                               "moved_from", "moved_to", "overflow" };
          json_t *o = json_object ();
          if (m.path)
            srv_json_set_text (o, "path", m.path);
          json_object_set_new (o, "is_dir", json_boolean (m.flags & PROTO_F_DIR));
          event (st, m.kind < 7 ? names[m.kind] : "unknown", o);
          proto_msg_free (&m);
        }
      return;
    default:
      break;
    }
  /* ST_EXEC, ST_FOLLOW, collect */
  switch (f->type)
    {
    case PROTO_EXEC_STARTED:
      {
        uint32_t pid = 0, proc_id = 0;
        int existing = 0;
        if (proto_started_decode (f->payload, f->len, &pid, &proc_id, &existing, &err) < 0)
          return;
        st->pid = pid;
        st->proc_id = proc_id;
        st->existing = existing;
        st->got_started = 1;
        if (!st->reply)
          event (st, "start", json_pack ("{s:I,s:I,s:b}", "pid", (json_int_t) pid,
                                         "process_id", (json_int_t) proc_id, "existing",
                                         existing));
        return;
      }
    case PROTO_PROC_INFO:
      {
        struct proto_msg m;
        if (proto_msg_decode (f->payload, f->len, &m, &err) < 0)
          return;
        st->offset[0] = m.out_start;
        st->offset[1] = m.err_start;
        json_t *o = inside_proc_json (&m);
        json_object_set_new (o, "stdout_offset", json_integer ((json_int_t) m.out_start));
        json_object_set_new (o, "stderr_offset", json_integer ((json_int_t) m.err_start));
        event (st, "start", o);
        proto_msg_free (&m);
        return;
      }
    case PROTO_EXEC_STDOUT:
    case PROTO_EXEC_STDERR:
      if (st->reply)
        keep_append (st, f->type == PROTO_EXEC_STDERR, f->payload, f->len);
      else
        data_event (st, f->type == PROTO_EXEC_STDERR, f->payload, f->len, 0);
      return;
    case PROTO_EXEC_EXIT:
      if (proto_exec_exit_decode (f->payload, f->len, &st->exit, &err) < 0)
        {
          st->failed = st->done = 1;
          return;
        }
      st->got_exit = 1;
      if (!st->reply)
        {
          for (int s = 0; s < 2; s++)
            if (st->hold_len[s])
              data_event (st, s, NULL, 0, 1);
          json_t *o = exit_json (&st->exit);
          json_object_set_new (o, "truncated", json_boolean (st->exit.stdout_truncated
                                                             || st->exit.stderr_truncated));
          event (st, "exit", o);
        }
      st->done = 1;
      return;
    default:
      return;
    }
}

/* Move data once: send pending frames, read and handle what the agent sent. Waits up to
 * timeout_ms. Returns 0 on progress or timeout (*timed_out), -1 when the agent is gone,
 * -2 when the client hung up (noticed here at once: MHD would only notice at its next
 * write, and a quiet command would run on unobserved until then). */
static int
pump (struct srv_stream *st, int timeout_ms, int *timed_out)
{
  *timed_out = 0;
  struct proto_frame f;
  struct sbx_err err = { 0 };
  int rc;
  while ((rc = proto_reader_next (&st->ag.rd, &f, &err)) == 1)
    {
      handle_frame (st, &f);
      if (st->done)
        return 0;
    }
  if (rc < 0)
    return -1;
  if (st->out.len > st->out_off)
    return 0; /* give the client what we have before reading more */
  int want_out = st->pending.len > st->pending_off;
  struct pollfd pf[2] = { { .fd = st->ag.fd, .events = POLLIN | (want_out ? POLLOUT : 0) },
                          { .fd = st->client_fd, .events = POLLRDHUP } };
  struct pollfd *p = &pf[0];
  int pr = poll (pf, st->client_fd >= 0 ? 2 : 1, timeout_ms);
  if (pr > 0 && st->client_fd >= 0 && (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
    return -2;
  if (pr < 0)
    return errno == EINTR ? 0 : -1;
  if (pr == 0)
    {
      *timed_out = 1;
      return 0;
    }
  if (p->revents & POLLOUT)
    {
      ssize_t n = send (st->ag.fd, st->pending.data + st->pending_off,
                        st->pending.len - st->pending_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0)
        st->pending_off += (size_t) n;
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        return -1;
    }
  if (p->revents & (POLLIN | POLLHUP | POLLERR))
    {
      ssize_t n = proto_reader_fill (&st->ag.rd, st->ag.fd);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return -1;
    }
  return 0;
}

static ssize_t
stream_cb (void *cls, uint64_t pos, char *buf, size_t max)
{
  struct srv_stream *st = cls;
  for (;;)
    {
      size_t have = st->out.len - st->out_off;
      if (have)
        {
          size_t n = have < max ? have : max;
          memcpy (buf, st->out.data + st->out_off, n);
          st->out_off += n;
          if (st->out_off == st->out.len)
            st->out_off = st->out.len = 0;
          srv_metrics_streamed (n); /* GET /metrics: sbx_streamed_bytes_total */
          return (ssize_t) n;
        }
      if (st->failed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      if (st->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
      int raw = st->kind == ST_RAW_FILE || st->kind == ST_RAW_TAR;
      int timed_out;
      int rc = pump (st, INSIDE_KEEPALIVE_MS, &timed_out);
      if (rc == -2)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      if (rc < 0)
        {
          if (raw)
            st->failed = 1;
          else
            {
              struct srv_reply er = { 0 };
              inside_reply_lost (&st->ag, &er);
              error_event (st, &er);
            }
          st->done = 1;
          continue;
        }
      if (timed_out && !raw)
        event (st, "keepalive", NULL);
    }
}

void
srv_stream_free (struct srv_stream *st)
{
  if (!st)
    return;
  audit (st);
  srv_strv_free (st->audit_argv);
  /* Closing the agent connection ends a foreground exec that is still running (the
   * client went away), a watch, a file read. */
  inside_close (&st->ag);
  proto_buf_free (&st->pending);
  proto_buf_free (&st->out);
  proto_buf_free (&st->errbuf);
  proto_buf_free (&st->keep[0]);
  proto_buf_free (&st->keep[1]);
  free (st);
}

static void
free_cb (void *cls)
{
  srv_stream_free (cls);
}

int
srv_stream_queue (struct MHD_Connection *c, struct srv_reply *r, const char *method,
                  const char *url, int64_t start_ns, int cors)
{
  struct srv_stream *st = steal_ptr (&r->stream);
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info (c, MHD_CONNECTION_INFO_CONNECTION_FD);
  st->client_fd = ci ? ci->connect_fd : -1;
  const char *ct = st->kind == ST_RAW_FILE ? "application/octet-stream"
                   : st->kind == ST_RAW_TAR ? "application/x-tar"
                   : st->sse               ? "text/event-stream; charset=utf-8"
                                           : "application/x-ndjson";
  struct MHD_Response *resp
      = MHD_create_response_from_callback (MHD_SIZE_UNKNOWN, 64 * 1024, stream_cb, st, free_cb);
  if (!resp)
    {
      srv_stream_free (st);
      return MHD_NO;
    }
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header (resp, "X-Accel-Buffering", "no");
  for (int i = 0; i < r->n_hdr; i++)
    {
      MHD_add_response_header (resp, r->hdr[i].name, r->hdr[i].value);
      free (r->hdr[i].value);
    }
  r->n_hdr = 0;
  if (cors)
    {
      MHD_add_response_header (resp, "Access-Control-Allow-Origin", "*");
      MHD_add_response_header (resp, "Access-Control-Expose-Headers",
                               "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE");
    }
  enum MHD_Result ret = MHD_queue_response (c, 200, resp);
  MHD_destroy_response (resp);
  LOG_INFO ("%s %s -> 200 stream (%lld ms to start)", method, url,
            (long long) ((sbx_mono_ns () - start_ns) / 1000000));
  json_decref (r->body);
  r->body = NULL;
  return ret;
}

static int
accepts_sse (const char *accept)
{
  return accept && strcasestr (accept, "text/event-stream") != NULL;
}

static struct srv_stream *
stream_new (struct srv_agent *ag, enum inside_stream_kind kind, uint32_t req_id,
            struct proto_buf *pending)
{
  struct srv_stream *st = calloc (1, sizeof *st);
  if (!st)
    return NULL;
  st->kind = kind;
  st->req_id = req_id;
  st->client_fd = -1;
  st->started_ms = sbx_now_ms ();
  st->ag = *ag;
  memset (ag, 0, sizeof *ag); /* taken over */
  ag->fd = -1;
  if (pending)
    {
      st->pending = *pending;
      memset (pending, 0, sizeof *pending);
    }
  sbx_set_nonblock (st->ag.fd, 1);
  return st;
}

void
inside_stream_reply (struct srv_agent *ag, enum inside_stream_kind kind, uint32_t req_id,
                     struct proto_buf *pending, int b64, const char *accept,
                     struct srv_reply *r)
{
  struct srv_stream *st = stream_new (ag, kind, req_id, pending);
  if (!st)
    {
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
      return;
    }
  st->b64 = b64;
  st->sse = kind != ST_RAW_FILE && kind != ST_RAW_TAR && accepts_sse (accept);
  r->status = 200;
  r->stream = st;
}

void
inside_exec_collect (struct srv_agent *ag, uint32_t req_id, struct proto_buf *pending,
                     uint64_t max_output, char **argv, size_t argc, struct srv_reply *r)
{
  struct srv_stream *st = stream_new (ag, ST_EXEC, req_id, pending);
  if (!st)
    {
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
      return;
    }
  st->audit_argv = strv_dup (argv, argc);
  st->audit_argc = st->audit_argv ? argc : 0;
  struct srv_reply er = { 0 };
  st->reply = &er;
  st->max_output = max_output;
  while (!st->done)
    {
      int timed_out;
      if (pump (st, 60000, &timed_out) < 0)
        {
          inside_reply_lost (&st->ag, &er);
          break;
        }
    }
  if (er.body)
    *r = er;
  else if (!st->got_exit)
    srv_reply_error (r, SBX_E_EXEC_FAILED, "the command's result was lost");
  else
    {
      json_t *o = exit_json (&st->exit);
      /* As a plain exec answers: text with U+FFFD for bytes that are not UTF-8, and then
       * the exact bytes in <name>_b64. */
      for (int k = 0; k < 2; k++)
        {
          const char *name = k ? "stderr" : "stdout";
          const uint8_t *p = st->keep[k].data ? st->keep[k].data : (const uint8_t *) "";
          char *txt = NULL;
          size_t tl = 0;
          int replaced = srv_utf8_sanitize (p, st->keep[k].len, &txt, &tl);
          json_object_set_new (o, name, json_stringn (txt ? txt : "", txt ? tl : 0));
          free (txt);
          if (replaced > 0)
            {
              char key[16], *b = srv_base64 (p, st->keep[k].len);
              snprintf (key, sizeof key, "%s_b64", name);
              json_object_set_new (o, key, json_string (b ? b : ""));
              free (b);
            }
        }
      json_object_set_new (o, "truncated", json_boolean (st->keep_trunc[0] || st->keep_trunc[1]
                                                         || st->exit.stdout_truncated
                                                         || st->exit.stderr_truncated));
      json_object_set_new (o, "process_id", json_integer (st->proc_id));
      json_object_set_new (o, "pid", json_integer (st->pid));
      json_object_set_new (o, "existing", json_boolean (st->existing));
      r->status = 200;
      r->body = o;
    }
  srv_stream_free (st);
}
