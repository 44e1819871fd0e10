/* Issue 6 endpoints, part 2: exec with stream / background / pty / exec_id, and
 * /sandbox/process/{output,wait,stdin,signal,resize,list} (plus the dispatch of every
 * issue-6 JSON route). Processes live in sbx-init (src/agent/proc.c): sbxd only asks. */
#include "inside.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- exec with stream / background / pty / exec_id ---- */

int
srv_exec_is_inside (json_t *body)
{
  static const char *const keys[] = { "stream", "background", "pty", "exec_id" };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    {
      json_t *v = inside_field (body, keys[i]);
      if (v && !json_is_false (v))
        return 1;
    }
  return 0;
}

static int
key_ok (const char *k, size_t n)
{
  if (n == 0 || n > INSIDE_KEY_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z')
          || (k[i] >= '0' && k[i] <= '9') || (k[i] && strchr ("._:-", k[i]))))
      return 0;
  return 1;
}

#define EXEC_REQ_ID 1

void
srv_h_exec_inside (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct srv_exec_req req;
  struct sbx_err err = { 0 };
  if (srv_parse_exec (body, &s->cfg, &req, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  int stream = 0, background = 0, pty = 0, b64 = 0;
  int64_t rows = 24, cols = 80;
  const char *key = NULL;
  struct srv_agent ag = { .fd = -1 };
  struct proto_buf out = { 0 }, payload = { 0 };
  char **env = NULL;
  json_t *v;
  if (inside_bool (body, "stream", 0, &stream, r) < 0
      || inside_bool (body, "background", 0, &background, r) < 0
      || inside_encoding (body, &b64, r) < 0)
    goto done;
  if ((v = inside_field (body, "pty")))
    {
      json_t *dims = json_is_object (v) ? v : body;
      if (!json_is_boolean (v) && !json_is_object (v))
        {
          inside_bad (r, "pty", "must be true, false or an object {rows, cols}");
          goto done;
        }
      pty = json_is_object (v) || json_is_true (v);
      if (inside_int (dims, "rows", 1, 4096, 24, &rows, r) < 0
          || inside_int (dims, "cols", 1, 4096, 80, &cols, r) < 0)
        goto done;
    }
  if ((v = inside_field (body, "exec_id")))
    {
      if (!json_is_string (v) || !key_ok (json_string_value (v), json_string_length (v)))
        {
          inside_bad (r, "exec_id", "must be 1-128 characters of [A-Za-z0-9._:-]");
          goto done;
        }
      key = json_string_value (v);
    }
  if (stream && background)
    {
      inside_bad (r, "background", "cannot be combined with stream");
      goto done;
    }
  if (inside_open (s, req.id, req.id_valid, &ag, r) < 0)
    goto done;
  size_t envc = 0;
  env = srv_exec_build_env (ag.sb, &req.env, pty ? "xterm-256color" : NULL, &envc);
  const char *cwd = req.workdir ? req.workdir : ag.sb->workdir;
  struct proto_exec_req pr = {
    .argv = req.argv, .argc = req.argc, .env = env, .envc = envc, .cwd = (char *) cwd,
    /* A pty is always fed through the master; a background process keeps a stdin pipe
     * for /sandbox/process/stdin. */
    .stdin_mode = (req.has_stdin || pty || background) ? PROTO_STDIN_PIPE : PROTO_STDIN_NULL,
    .timeout_ms = req.timeout_ms,
    .max_output = (stream || background) ? 0 : req.max_output,
    .background = (uint8_t) background, .pty = (uint8_t) pty,
    .rows = (uint32_t) rows, .cols = (uint32_t) cols, .key = (char *) key,
  };
  if (!env || proto_exec_req_encode (&pr, &payload) < 0
      || proto_frame_append (&out, PROTO_EXEC_START, EXEC_REQ_ID, payload.data,
                             (uint32_t) payload.len) < 0)
    {
      srv_reply_encode_error (r, env != NULL);
      goto done;
    }
  if (background)
    {
      if (inside_send (&ag, PROTO_EXEC_START, EXEC_REQ_ID, payload.data, (uint32_t) payload.len)
          < 0)
        {
          inside_reply_lost (&ag, r);
          goto done;
        }
      struct proto_frame f;
      int rc = inside_reply_frame (&ag, &f, 60000, r);
      if (rc < 0)
        goto done;
      uint32_t pid = 0, proc_id = 0;
      int existing = 0;
      if (f.type != PROTO_EXEC_STARTED
          || proto_started_decode (f.payload, f.len, &pid, &proc_id, &existing, &err) < 0)
        {
          srv_reply_error (r, SBX_E_EXEC_FAILED, "unexpected answer from the sandbox agent");
          goto done;
        }
      /* stdin given with a background exec: written now, then closed. */
      for (size_t o = 0; req.has_stdin && !existing; o += INSIDE_STDIN_CHUNK)
        {
          size_t n = req.stdin_len - o < INSIDE_STDIN_CHUNK ? req.stdin_len - o
                                                            : INSIDE_STDIN_CHUNK;
          struct proto_msg m = { .proc_id = proc_id, .data = (uint8_t *) req.stdin_data + o,
                                 .data_len = (uint32_t) n, .eof = o + n >= req.stdin_len };
          PROTO_SET (&m, PROTO_M_PROC_ID);
          PROTO_SET (&m, PROTO_M_DATA);
          PROTO_SET (&m, PROTO_M_EOF);
          if (inside_send_msg (&ag, PROTO_PROC_STDIN, 2, &m) < 0
              || inside_reply_frame (&ag, &f, 60000, r) < 0)
            goto done;
          if (m.eof)
            break;
        }
      if (!existing)
        inside_record (s, req.id, req.argv, req.argc, NULL, sbx_now_ms (), NULL);
      json_t *o = json_object ();
      json_object_set_new (o, "sandbox_id", json_string (req.id));
      json_object_set_new (o, "process_id", json_integer (proc_id));
      json_object_set_new (o, "pid", json_integer (pid));
      if (key)
        json_object_set_new (o, "exec_id", json_string (key));
      json_object_set_new (o, "existing", json_boolean (existing));
      json_object_set_new (o, "running", json_true ());
      r->status = 200;
      r->body = o;
      goto done;
    }
  for (size_t o = 0; req.has_stdin && o < req.stdin_len; o += 65536)
    {
      size_t n = req.stdin_len - o < 65536 ? req.stdin_len - o : 65536;
      if (proto_frame_append (&out, PROTO_EXEC_STDIN, EXEC_REQ_ID, req.stdin_data + o,
                              (uint32_t) n) < 0)
        goto oom;
    }
  if (req.has_stdin && proto_frame_append (&out, PROTO_EXEC_STDIN, EXEC_REQ_ID, NULL, 0) < 0)
    goto oom;
  if (stream)
    {
      /* Started (or refused: a proper HTTP error) before the 200 of the stream. */
      struct proto_buf in = { 0 };
      size_t start_len = PROTO_HEADER_SIZE + payload.len;
      if ((out.len > start_len && proto_buf_append (&in, out.data + start_len,
                                                    out.len - start_len) < 0)
          || inside_send (&ag, PROTO_EXEC_START, EXEC_REQ_ID, payload.data,
                          (uint32_t) payload.len) < 0)
        {
          proto_buf_free (&in);
          inside_reply_lost (&ag, r);
          goto done;
        }
      if (inside_peek (&ag, 60000, r) < 0)
        {
          proto_buf_free (&in);
          goto done;
        }
      inside_stream_reply (&ag, ST_EXEC, EXEC_REQ_ID, &in, b64, r->accept, r);
      inside_stream_audit (r, req.argv, req.argc);
      proto_buf_free (&in);
    }
  else
    inside_exec_collect (&ag, EXEC_REQ_ID, &out, req.max_output, req.argv, req.argc, r);
  goto done;
oom:
  srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
done:
  inside_close (&ag);
  proto_buf_free (&out);
  proto_buf_free (&payload);
  srv_strv_free (env);
  srv_exec_req_free (&req);
}

/* ---- /sandbox/process/... ---- */

static int
proc_target (json_t *body, struct srv *s, struct srv_agent *ag, uint32_t *proc_id,
             struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid;
  int64_t pid;
  if (srv_parse_sandbox_id_reply (body, id, &valid, r) < 0)
    return -1;
  if (!inside_field (body, "process_id"))
    return inside_bad (r, "process_id", "is required");
  if (inside_int (body, "process_id", 1, UINT32_MAX, 0, &pid, r) < 0)
    return -1;
  *proc_id = (uint32_t) pid;
  return inside_open (s, id, valid, ag, r);
}

static int
parse_signal (json_t *v, uint32_t *sig, struct srv_reply *r)
{
  if (!v)
    return inside_bad (r, "signal", "is required");
  if (json_is_integer (v))
    {
      json_int_t n = json_integer_value (v);
      if (n < 1 || n >= NSIG)
        return inside_bad (r, "signal", "is not a valid signal number");
      *sig = (uint32_t) n;
      return 0;
    }
  const char *s = json_string_value (v);
  if (!s || strlen (s) != json_string_length (v))
    return inside_bad (r, "signal", "must be a signal number or name");
  if (!strncasecmp (s, "SIG", 3))
    s += 3;
  for (int n = 1; n < NSIG; n++)
    {
      const char *name = sigabbrev_np (n);
      if (name && !strcasecmp (name, s))
        {
          *sig = (uint32_t) n;
          return 0;
        }
    }
  return inside_bad (r, "signal", "unknown signal name");
}

static void
proc_output (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct srv_agent ag = { .fd = -1 };
  uint32_t proc_id;
  int64_t off[2], wait_ms, max_bytes;
  int b64, follow;
  struct proto_buf data[2] = { { 0 }, { 0 } };
  if (inside_int (body, "stdout_offset", 0, INT64_MAX, 0, &off[0], r) < 0
      || inside_int (body, "stderr_offset", 0, INT64_MAX, 0, &off[1], r) < 0
      || inside_int (body, "wait_ms", 0, INSIDE_WAIT_MAX_MS, 0, &wait_ms, r) < 0
      || inside_int (body, "max_bytes", 1, 8 << 20, 1 << 20, &max_bytes, r) < 0
      || inside_bool (body, "follow", 0, &follow, r) < 0 || inside_encoding (body, &b64, r) < 0
      || proc_target (body, s, &ag, &proc_id, r) < 0)
    goto done;
  struct proto_msg m = { .proc_id = proc_id, .out_start = (uint64_t) off[0],
                         .err_start = (uint64_t) off[1], .wait_ms = (uint64_t) wait_ms,
                         .max_bytes = (uint64_t) max_bytes, .follow = (uint8_t) follow };
  PROTO_SET (&m, PROTO_M_PROC_ID);
  PROTO_SET (&m, PROTO_M_OUT_START);
  PROTO_SET (&m, PROTO_M_ERR_START);
  PROTO_SET (&m, PROTO_M_WAIT_MS);
  PROTO_SET (&m, PROTO_M_MAX_BYTES);
  PROTO_SET (&m, PROTO_M_FOLLOW);
  if (inside_request (&ag, PROTO_PROC_OUTPUT, 1, &m, r) < 0)
    goto done;
  if (follow)
    {
      if (inside_peek (&ag, 60000, r) == 1) /* the process exists: the stream starts */
        inside_stream_reply (&ag, ST_FOLLOW, 1, NULL, b64, r->accept, r);
      goto done;
    }
  for (;;)
    {
      struct proto_frame f;
      if (inside_reply_frame (&ag, &f, (int) wait_ms + 30000, r) < 0)
        goto done;
      if (f.type == PROTO_EXEC_STDOUT || f.type == PROTO_EXEC_STDERR)
        {
          /* The agent sends at most MAX_BYTES of each stream. */
          if (data[f.type == PROTO_EXEC_STDERR].len + f.len > (uint64_t) max_bytes)
            {
              srv_reply_error (r, SBX_E_EXEC_FAILED,
                               "the sandbox agent sent more output than max_bytes");
              goto done;
            }
          if (proto_buf_append (&data[f.type == PROTO_EXEC_STDERR], f.payload, f.len) < 0)
            {
              srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
              goto done;
            }
          continue;
        }
      if (f.type != PROTO_PROC_INFO)
        continue;
      struct proto_msg info;
      struct sbx_err err = { 0 };
      if (proto_msg_decode (f.payload, f.len, &info, &err) < 0)
        {
          srv_reply_error (r, SBX_E_EXEC_FAILED, err.msg);
          goto done;
        }
      json_t *o = json_object ();
      const char *names[2] = { "stdout", "stderr" };
      uint64_t start[2] = { info.out_start, info.err_start };
      uint64_t end[2] = { info.out_end, info.err_end };
      uint64_t total[2] = { info.out_total, info.err_total };
      size_t n[2];
      int text = !b64;
      for (int k = 0; k < 2; k++)
        {
          n[k] = data[k].len;
          /* A UTF-8 character cut by the read boundary is left for the next read, so
           * text never gets a replacement character that is not in the output. */
          if (!b64 && (info.running || end[k] < total[k]))
            {
              size_t t = inside_utf8_tail (data[k].data, n[k]);
              n[k] -= t;
              end[k] -= t;
            }
          char *txt = NULL;
          size_t tl;
          if (text && srv_utf8_sanitize (data[k].data ? data[k].data : (const uint8_t *) "",
                                         n[k], &txt, &tl) != 0)
            text = 0; /* not text: both streams in base64, so the encoding is one value */
          free (txt);
        }
      for (int k = 0; k < 2; k++)
        {
          int used;
          json_object_set_new (o, names[k], inside_data_json (data[k].data, n[k], !text, &used));
          char key[32];
          snprintf (key, sizeof key, "%s_offset", names[k]);
          json_object_set_new (o, key, json_integer ((json_int_t) end[k]));
          snprintf (key, sizeof key, "%s_start", names[k]);
          json_object_set_new (o, key, json_integer ((json_int_t) start[k]));
          snprintf (key, sizeof key, "%s_bytes", names[k]);
          json_object_set_new (o, key, json_integer ((json_int_t) total[k]));
        }
      json_object_set_new (o, "encoding", json_string (text ? "utf-8" : "base64"));
      json_object_set_new (o, "running", json_boolean (info.running));
      json_object_set_new (o, "more", json_boolean (end[0] < total[0] || end[1] < total[1]));
      json_object_set_new (o, "process_id", json_integer (info.proc_id));
      if (PROTO_HAS (&info, PROTO_M_EXIT_CODE))
        {
          json_object_set_new (o, "exit_code", json_integer (info.exit_code));
          json_object_set_new (o, "usage", inside_usage_json (info.cpu_us, info.max_rss_kb));
        }
      else
        json_object_set_new (o, "exit_code", json_null ());
      proto_msg_free (&info);
      r->status = 200;
      r->body = o;
      goto done;
    }
done:
  proto_buf_free (&data[0]);
  proto_buf_free (&data[1]);
  inside_close (&ag);
}

/* wait, stdin, signal, resize: one request, a PROC_INFO back. */
static void
proc_simple (struct srv *s, enum srv_route route, json_t *body, struct srv_reply *r)
{
  struct srv_agent ag = { .fd = -1 };
  uint32_t proc_id;
  struct proto_msg m = { 0 };
  uint8_t type = 0;
  int64_t wait_ms = 0, rows = 0, cols = 0;
  uint8_t *data = NULL;
  size_t dlen = 0;
  int b64 = 0, eof = 0;
  int timeout = 60000;
  switch (route)
    {
    case SRV_R_PROC_WAIT:
      type = PROTO_PROC_WAIT;
      if (inside_int (body, "wait_ms", 0, INSIDE_WAIT_MAX_MS, 30000, &wait_ms, r) < 0)
        goto done;
      if (inside_field (body, "timeout"))
        {
          int64_t t;
          if (inside_int (body, "timeout", 0, INSIDE_WAIT_MAX_MS / 1000, 0, &t, r) < 0)
            goto done;
          wait_ms = t * 1000;
        }
      m.wait_ms = (uint64_t) wait_ms;
      PROTO_SET (&m, PROTO_M_WAIT_MS);
      timeout = (int) wait_ms + 30000;
      break;
    case SRV_R_PROC_STDIN:
      type = PROTO_PROC_STDIN;
      if (inside_encoding (body, &b64, r) < 0 || inside_bool (body, "eof", 0, &eof, r) < 0
          || inside_content (body, "data", b64, &data, &dlen, r) < 0)
        goto done;
      break;
    case SRV_R_PROC_SIGNAL:
      type = PROTO_PROC_SIGNAL;
      if (parse_signal (inside_field (body, "signal"), &m.signal, r) < 0)
        goto done;
      PROTO_SET (&m, PROTO_M_SIGNAL);
      break;
    case SRV_R_PROC_RESIZE:
      type = PROTO_PROC_RESIZE;
      if (!inside_field (body, "rows") || !inside_field (body, "cols"))
        {
          inside_bad (r, "rows/cols", "are required");
          goto done;
        }
      if (inside_int (body, "rows", 1, 4096, 24, &rows, r) < 0
          || inside_int (body, "cols", 1, 4096, 80, &cols, r) < 0)
        goto done;
      m.rows = (uint32_t) rows;
      m.cols = (uint32_t) cols;
      PROTO_SET (&m, PROTO_M_ROWS);
      PROTO_SET (&m, PROTO_M_COLS);
      break;
    default:
      goto done;
    }
  if (proc_target (body, s, &ag, &proc_id, r) < 0)
    goto done;
  m.proc_id = proc_id;
  PROTO_SET (&m, PROTO_M_PROC_ID);
  struct proto_frame f;
  size_t off = 0;
  do
    {
      /* stdin larger than a frame goes in pieces, EOF with the last. */
      if (type == PROTO_PROC_STDIN)
        {
          size_t n = dlen - off < INSIDE_STDIN_CHUNK ? dlen - off : INSIDE_STDIN_CHUNK;
          m.data = data + off;
          m.data_len = (uint32_t) n;
          m.eof = (uint8_t) (eof && off + n >= dlen);
          PROTO_SET (&m, PROTO_M_DATA);
          PROTO_SET (&m, PROTO_M_EOF);
          off += n;
        }
      if (inside_request (&ag, type, 1, &m, r) < 0)
        goto done;
      if (inside_reply_frame (&ag, &f, timeout, r) < 0)
        goto done;
    }
  while (type == PROTO_PROC_STDIN && off < dlen);
  struct proto_msg info;
  struct sbx_err err = { 0 };
  if (f.type != PROTO_PROC_INFO || proto_msg_decode (f.payload, f.len, &info, &err) < 0)
    {
      srv_reply_error (r, SBX_E_EXEC_FAILED, "unexpected answer from the sandbox agent");
      goto done;
    }
  json_t *o = inside_proc_json (&info);
  json_object_set_new (o, "sandbox_id", json_string (ag.sb->id));
  if (type == PROTO_PROC_STDIN)
    json_object_set_new (o, "written", json_integer ((json_int_t) dlen));
  proto_msg_free (&info);
  r->status = 200;
  r->body = o;
done:
  free (data);
  inside_close (&ag);
}

static void
proc_list (struct srv *s, json_t *body, struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid;
  struct srv_agent ag = { .fd = -1 };
  json_t *arr = NULL;
  if (srv_parse_sandbox_id_reply (body, id, &valid, r) < 0 || inside_open (s, id, valid, &ag, r) < 0)
    goto done;
  if (inside_send (&ag, PROTO_PROC_LIST, 1, NULL, 0) < 0)
    {
      inside_reply_lost (&ag, r);
      goto done;
    }
  arr = json_array ();
  for (;;)
    {
      struct proto_frame f;
      if (inside_reply_frame (&ag, &f, 60000, r) < 0)
        goto done;
      if (f.type == PROTO_DONE)
        break;
      if (json_array_size (arr) >= INSIDE_PROCS_MAX)
        {
          srv_reply_error (r, SBX_E_EXEC_FAILED,
                           "the sandbox agent sent more processes than the limit");
          goto done;
        }
      struct proto_msg info;
      struct sbx_err err = { 0 };
      if (f.type != PROTO_PROC_INFO || proto_msg_decode (f.payload, f.len, &info, &err) < 0)
        continue;
      json_array_append_new (arr, inside_proc_json (&info));
      proto_msg_free (&info);
    }
  r->status = 200;
  r->body = json_pack ("{s:s,s:O}", "sandbox_id", id, "processes", arr);
done:
  json_decref (arr);
  inside_close (&ag);
}

void
srv_h_inside (struct srv *s, enum srv_route route, json_t *body, struct srv_reply *r)
{
  switch (route)
    {
    case SRV_R_PROC_OUTPUT: return proc_output (s, body, r);
    case SRV_R_PROC_LIST: return proc_list (s, body, r);
    case SRV_R_PROC_WAIT:
    case SRV_R_PROC_STDIN:
    case SRV_R_PROC_SIGNAL:
    case SRV_R_PROC_RESIZE: return proc_simple (s, route, body, r);
    default: return srv_h_files (s, route, body, r);
    }
}
