/* Issue 6 endpoints, part 2: /sandbox/files/{read,write,append,list,stat,mkdir,remove,
 * rename,watch}. The work is done by sbx-init inside the sandbox (src/agent/files.c and
 * path.c state the path rules); sbxd validates, moves the bytes and shapes the answers.
 * Bodies here are bounded by the 10 MB request limit; larger files use the raw
 * GET/PUT /sandbox/{id}/files endpoints (stream.c). */
#include "inside.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FILE_TIMEOUT_MS 120000

static int
parse_mode (json_t *body, uint32_t *mode, int *has, struct srv_reply *r)
{
  json_t *v = inside_field (body, "mode");
  *has = 0;
  if (!v)
    return 0;
  long m = -1;
  if (json_is_integer (v))
    m = (long) json_integer_value (v);
  else if (json_is_string (v) && strlen (json_string_value (v)) == json_string_length (v))
    {
      char *end;
      const char *s = json_string_value (v);
      m = *s ? strtol (s, &end, 8) : -1;
      if (*s && *end)
        m = -1;
    }
  if (m < 0 || m > 07777)
    return inside_bad (r, "mode", "must be permission bits: an integer or an octal string "
                                  "like \"0644\"");
  *mode = (uint32_t) m;
  *has = 1;
  return 0;
}

/* Common prologue: sandbox_id and path, connected agent. */
static int
open_path (struct srv *s, json_t *body, struct srv_agent *ag, const char **path,
           struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid;
  if (srv_parse_sandbox_id_reply (body, id, &valid, r) < 0
      || inside_path (inside_field (body, "path"), "path", path, r) < 0)
    return -1;
  return inside_open (s, id, valid, ag, r);
}

static void
file_read (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct srv_agent ag = { .fd = -1 };
  const char *path;
  int b64;
  struct proto_buf data = { 0 };
  struct proto_msg info = { 0 };
  if (inside_encoding (body, &b64, r) < 0 || open_path (s, body, &ag, &path, r) < 0)
    goto done;
  struct proto_msg m = { .path = (char *) path };
  PROTO_SET (&m, PROTO_M_PATH);
  if (inside_request (&ag, PROTO_FILE_READ, 1, &m, r) < 0)
    goto done;
  for (;;)
    {
      struct proto_frame f;
      struct sbx_err err = { 0 };
      if (inside_reply_frame (&ag, &f, FILE_TIMEOUT_MS, r) < 0)
        goto done;
      if (f.type == PROTO_FILE_INFO)
        {
          proto_msg_free (&info);
          if (proto_msg_decode (f.payload, f.len, &info, &err) < 0)
            {
              srv_reply_error (r, SBX_E_EXEC_FAILED, err.msg);
              goto done;
            }
          if (info.size > SRV_BODY_LIMIT)
            goto too_large;
        }
      else if (f.type == PROTO_FILE_DATA)
        {
          if (data.len + f.len > SRV_BODY_LIMIT)
            goto too_large;
          if (proto_buf_append (&data, f.payload, f.len) < 0)
            {
              srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
              goto done;
            }
        }
      else if (f.type == PROTO_DONE)
        break;
    }
  int used;
  json_t *o = inside_file_json (&info, path);
  json_object_set_new (o, "size", json_integer ((json_int_t) data.len));
  json_object_set_new (o, "content", inside_data_json (data.data, data.len, b64, &used));
  json_object_set_new (o, "encoding", json_string (used ? "base64" : "utf-8"));
  r->status = 200;
  r->body = o;
  goto done;
too_large:
  srv_reply_http (r, 413, "payload_too_large",
                  "file larger than 10 MB: use GET /sandbox/{id}/files?path=...");
done:
  proto_msg_free (&info);
  proto_buf_free (&data);
  inside_close (&ag);
}

static void
file_write (struct srv *s, json_t *body, int append, struct srv_reply *r)
{
  struct srv_agent ag = { .fd = -1 };
  const char *path;
  int b64, parents, has_mode;
  uint32_t mode = 0;
  uint8_t *data = NULL;
  size_t len = 0;
  if (inside_encoding (body, &b64, r) < 0 || parse_mode (body, &mode, &has_mode, r) < 0
      || inside_bool (body, "parents", 1, &parents, r) < 0)
    goto done;
  if (!inside_field (body, "content") && !append)
    {
      inside_bad (r, "content", "is required");
      goto done;
    }
  if (inside_content (body, "content", b64, &data, &len, r) < 0
      || open_path (s, body, &ag, &path, r) < 0)
    goto done;
  struct proto_msg m = { .path = (char *) path, .mode = mode,
                         .flags = (parents ? PROTO_F_PARENTS : 0) | (append ? PROTO_F_APPEND : 0) };
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_FLAGS);
  if (has_mode)
    PROTO_SET (&m, PROTO_M_MODE);
  struct proto_frame f;
  if (inside_request (&ag, PROTO_FILE_WRITE, 1, &m, r) < 0)
    goto done;
  if (inside_reply_frame (&ag, &f, FILE_TIMEOUT_MS, r) < 0)
    goto done;
  for (size_t o = 0; o < len; o += PROTO_DATA_CHUNK)
    {
      size_t n = len - o < PROTO_DATA_CHUNK ? len - o : PROTO_DATA_CHUNK;
      if (inside_send (&ag, PROTO_FILE_DATA, 1, data + o, (uint32_t) n) < 0)
        break; /* the answer (an ERROR, or the lost connection) says why */
    }
  inside_send (&ag, PROTO_FILE_DATA, 1, NULL, 0);
  if (inside_reply_frame (&ag, &f, FILE_TIMEOUT_MS, r) < 0)
    goto done;
  r->status = 200;
  r->body = srv_path_size_json (path, len);
done:
  free (data);
  inside_close (&ag);
}

static void
file_op (struct srv *s, enum srv_route route, json_t *body, struct srv_reply *r)
{
  struct srv_agent ag = { .fd = -1 };
  const char *path, *path2 = NULL;
  struct proto_msg m = { 0 };
  int flag, has_mode;
  int64_t depth = 1;
  json_t *entries = NULL, *stat = NULL;
  switch (route)
    {
    case SRV_R_FILE_STAT:
      m.kind = PROTO_OP_STAT;
      break;
    case SRV_R_FILE_LIST:
      m.kind = PROTO_OP_LIST;
      if (inside_int (body, "depth", 1, 64, 1, &depth, r) < 0)
        goto done;
      m.depth = (uint32_t) depth;
      PROTO_SET (&m, PROTO_M_DEPTH);
      break;
    case SRV_R_FILE_MKDIR:
      m.kind = PROTO_OP_MKDIR;
      if (inside_bool (body, "parents", 1, &flag, r) < 0
          || parse_mode (body, &m.mode, &has_mode, r) < 0)
        goto done;
      m.flags = flag ? PROTO_F_PARENTS | PROTO_F_EXIST_OK : 0;
      if (has_mode)
        PROTO_SET (&m, PROTO_M_MODE);
      break;
    case SRV_R_FILE_REMOVE:
      m.kind = PROTO_OP_REMOVE;
      if (inside_bool (body, "recursive", 0, &flag, r) < 0)
        goto done;
      m.flags = flag ? PROTO_F_RECURSIVE : 0;
      break;
    case SRV_R_FILE_RENAME:
      {
        m.kind = PROTO_OP_RENAME;
        json_t *v = inside_field (body, "new_path");
        if (!v)
          v = inside_field (body, "destination");
        if (inside_path (v, "new_path", &path2, r) < 0
            || inside_bool (body, "parents", 0, &flag, r) < 0)
          goto done;
        m.path2 = (char *) path2;
        m.flags = flag ? PROTO_F_PARENTS : 0;
        PROTO_SET (&m, PROTO_M_PATH2);
        break;
      }
    default:
      goto done;
    }
  if (open_path (s, body, &ag, &path, r) < 0)
    goto done;
  m.path = (char *) path;
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_KIND);
  PROTO_SET (&m, PROTO_M_FLAGS);
  if (inside_request (&ag, PROTO_FILE_OP, 1, &m, r) < 0)
    goto done;
  if (route == SRV_R_FILE_LIST)
    entries = json_array ();
  int complete = 1;
  for (;;)
    {
      struct proto_frame f;
      if (inside_reply_frame (&ag, &f, FILE_TIMEOUT_MS, r) < 0)
        goto done;
      struct proto_msg info;
      struct sbx_err err = { 0 };
      if (proto_msg_decode (f.payload, f.len, &info, &err) < 0)
        {
          srv_reply_error (r, SBX_E_EXEC_FAILED, err.msg);
          goto done;
        }
      if (f.type == PROTO_DONE)
        {
          if (PROTO_HAS (&info, PROTO_M_EOF))
            complete = info.eof;
          proto_msg_free (&info);
          break;
        }
      if (f.type == PROTO_FILE_INFO && entries && json_array_size (entries) >= INSIDE_LIST_MAX)
        {
          proto_msg_free (&info);
          srv_reply_error (r, SBX_E_EXEC_FAILED,
                           "the sandbox agent sent more listing entries than the limit");
          goto done;
        }
      if (f.type == PROTO_FILE_INFO && entries && info.path2)
        {
          char full[SRV_PATH_MAX * 2];
          snprintf (full, sizeof full, "%s/%s", strcmp (path, "/") ? path : "", info.path2);
          json_array_append_new (entries, inside_file_json (&info, full));
        }
      else if (f.type == PROTO_FILE_INFO && !stat)
        stat = inside_file_json (&info, path);
      proto_msg_free (&info);
    }
  r->status = 200;
  if (entries)
    r->body = json_pack ("{s:s,s:O,s:b}", "path", path, "entries", entries, "truncated",
                         !complete);
  else if (stat)
    r->body = json_incref (stat);
  else if (path2)
    r->body = json_pack ("{s:s,s:s}", "path", path, "new_path", path2);
  else
    r->body = json_pack ("{s:s}", "path", path);
done:
  json_decref (entries);
  json_decref (stat);
  inside_close (&ag);
}

static void
file_watch (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct srv_agent ag = { .fd = -1 };
  const char *path;
  int recursive;
  if (inside_bool (body, "recursive", 1, &recursive, r) < 0
      || open_path (s, body, &ag, &path, r) < 0)
    goto done;
  struct proto_msg m = { .path = (char *) path, .flags = recursive ? PROTO_F_RECURSIVE : 0 };
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_FLAGS);
  struct proto_frame f;
  if (inside_request (&ag, PROTO_WATCH, 1, &m, r) < 0)
    goto done;
  /* READY once every directory is watched: events from here on are reported. */
  if (inside_reply_frame (&ag, &f, FILE_TIMEOUT_MS, r) < 0)
    goto done;
  inside_stream_reply (&ag, ST_WATCH, 1, NULL, 0, r->accept, r);
done:
  inside_close (&ag);
}

void
srv_h_files (struct srv *s, enum srv_route route, json_t *body, struct srv_reply *r)
{
  switch (route)
    {
    case SRV_R_FILE_READ: return file_read (s, body, r);
    case SRV_R_FILE_WRITE: return file_write (s, body, 0, r);
    case SRV_R_FILE_APPEND: return file_write (s, body, 1, r);
    case SRV_R_FILE_WATCH: return file_watch (s, body, r);
    default: return file_op (s, route, body, r);
    }
}
