/* Issue 6 endpoints, part 4: raw files and tar, both ways, of any size.
 *
 * GET /sandbox/{id}/files streams a file (FILE_READ) and GET /sandbox/{id}/archive a tar
 * made inside the sandbox by the image's tar, both as streamed responses (stream.c).
 * Uploads (PUT /sandbox/{id}/files|archive) go to the agent as the body arrives, into a
 * temporary file that only the end of the request renames into place (or, for a tar,
 * extracts with the image's tar and removes): a body cut short, refused or failed leaves
 * nothing. Untrusted archives are parsed inside the sandbox, never by sbxd or PID 1. */
#include "inside.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#define TAR_TIMEOUT_MS 600000

/* The sandbox id of /<prefix>/sandbox/<id>/files|archive. */
static int
url_sandbox_id (const char *url, char id[SBX_ID_MAX])
{
  const char *p = strstr (url, "/sandbox/");
  id[0] = '\0';
  if (!p)
    return 0;
  p += 9;
  size_t n = strcspn (p, "/");
  if (n == 0 || n >= SBX_ID_MAX)
    return 0;
  memcpy (id, p, n);
  id[n] = '\0';
  return sbx_id_valid (id, "sb");
}

static int
query_path (const char *path, struct srv_reply *r)
{
  if (!path)
    return inside_bad (r, "path", "query parameter is required");
  if (!inside_path_ok (path))
    return inside_bad (r, "path", "must be an absolute path without \".\" or \"..\" components");
  return 0;
}

static int
tar_exec (struct srv_agent *ag, uint32_t id, const char *const *argv, struct srv_reply *r)
{
  static const char *const env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                     "/sbin:/bin",
                                     "LC_ALL=C", NULL };
  struct proto_exec_req req = { .argv = (char **) argv, .env = (char **) env, .envc = 2,
                                .timeout_ms = TAR_TIMEOUT_MS };
  while (argv[req.argc])
    req.argc++;
  struct proto_buf b = { 0 };
  int rc = proto_exec_req_encode (&req, &b) < 0
               ? -1
               : inside_send (ag, PROTO_EXEC_START, id, b.data, (uint32_t) b.len);
  proto_buf_free (&b);
  if (rc < 0)
    inside_reply_lost (ag, r);
  return rc;
}

void
srv_h_raw_get (struct srv *s, enum srv_route route, const char *url, const char *path,
               struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid = url_sandbox_id (url, id);
  struct srv_agent ag = { .fd = -1 };
  if (query_path (path, r) < 0 || inside_open (s, id, valid, &ag, r) < 0)
    goto done;
  struct proto_frame f;
  if (route == SRV_R_FILES_RAW)
    {
      struct proto_msg m = { .path = (char *) path };
      PROTO_SET (&m, PROTO_M_PATH);
      if (inside_request (&ag, PROTO_FILE_READ, 1, &m, r) < 0)
        goto done;
      /* FILE_INFO first (or the ERROR that becomes the status); then the bytes. */
      if (inside_reply_frame (&ag, &f, 60000, r) < 0)
        goto done;
      inside_stream_reply (&ag, ST_RAW_FILE, 1, NULL, 0, NULL, r);
      goto done;
    }
  struct proto_msg m = { .path = (char *) path, .kind = PROTO_OP_STAT };
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_KIND);
  if (inside_request (&ag, PROTO_FILE_OP, 1, &m, r) < 0)
    goto done;
  if (inside_reply_frame (&ag, &f, 60000, r) < 0)
    goto done;
  struct proto_msg info;
  struct sbx_err err = { 0 };
  if (proto_msg_decode (f.payload, f.len, &info, &err) < 0)
    {
      srv_reply_error (r, SBX_E_EXEC_FAILED, err.msg);
      goto done;
    }
  int dir = (info.mode & S_IFMT) == S_IFDIR;
  proto_msg_free (&info);
  if (!dir)
    {
      srv_reply_http (r, 400, "invalid_request", "path: not a directory");
      goto done;
    }
  if (inside_reply_frame (&ag, &f, 60000, r) < 0) /* the DONE of the stat */
    goto done;
  /* tar of the image, run inside the sandbox like any command. */
  const char *const argv[] = { "tar", "-c", "-f", "-", "-C", path, ".", NULL };
  if (tar_exec (&ag, 2, argv, r) < 0)
    goto done;
  inside_stream_reply (&ag, ST_RAW_TAR, 2, NULL, 0, NULL, r);
done:
  inside_close (&ag);
}

struct srv_upload {
  enum srv_route route;
  struct srv_agent ag;
  char path[SRV_PATH_MAX];
  char tmp[SRV_PATH_MAX + 64]; /* archive: the uploaded tar inside the sandbox */
  uint64_t bytes;
  int broken;                  /* the agent connection failed while sending */
};

int
srv_upload_begin (struct srv *s, enum srv_route route, const char *url, const char *path,
                  const char *mode, struct srv_upload **out, struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid = url_sandbox_id (url, id);
  *out = NULL;
  if (query_path (path, r) < 0)
    return -1;
  long m = -1;
  if (mode)
    {
      char *end;
      m = *mode ? strtol (mode, &end, 8) : -1;
      if (!*mode || *end || m < 0 || m > 07777)
        return inside_bad (r, "mode", "must be octal permission bits like 0644");
    }
  struct srv_upload *u = calloc (1, sizeof *u);
  if (!u)
    {
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
      return -1;
    }
  u->route = route;
  snprintf (u->path, sizeof u->path, "%s", path);
  if (inside_open (s, id, valid, &u->ag, r) < 0)
    goto fail;
  struct proto_frame f;
  struct proto_msg w = { .path = u->path, .flags = PROTO_F_PARENTS, .mode = (uint32_t) m };
  PROTO_SET (&w, PROTO_M_PATH);
  PROTO_SET (&w, PROTO_M_FLAGS);
  if (m >= 0)
    PROTO_SET (&w, PROTO_M_MODE);
  if (route == SRV_R_ARCHIVE)
    {
      struct proto_msg d = { .path = u->path, .kind = PROTO_OP_MKDIR,
                             .flags = PROTO_F_PARENTS | PROTO_F_EXIST_OK };
      PROTO_SET (&d, PROTO_M_PATH);
      PROTO_SET (&d, PROTO_M_KIND);
      PROTO_SET (&d, PROTO_M_FLAGS);
      if (inside_request (&u->ag, PROTO_FILE_OP, 3, &d, r) < 0)
        goto fail;
      if (inside_reply_frame (&u->ag, &f, 60000, r) < 0)
        goto fail;
      uint32_t rnd = 0;
      if (getrandom (&rnd, sizeof rnd, 0) < 0)
        rnd = (uint32_t) sbx_mono_ns ();
      snprintf (u->tmp, sizeof u->tmp, "%s/.sbx-archive-%08x.tar",
                strcmp (u->path, "/") ? u->path : "", rnd);
      w.path = u->tmp;
      w.flags = 0;
      w.mode = 0600;
      PROTO_SET (&w, PROTO_M_MODE);
    }
  if (inside_request (&u->ag, PROTO_FILE_WRITE, 1, &w, r) < 0)
    goto fail;
  if (inside_reply_frame (&u->ag, &f, 60000, r) < 0)
    goto fail;
  *out = u;
  return 0;
fail:
  inside_close (&u->ag);
  free (u);
  return -1;
}

void
srv_upload_chunk (struct srv_upload *u, const char *p, size_t n)
{
  /* Blocking: while the sandbox writes, we stop reading the client (TCP flow control). */
  for (size_t o = 0; o < n && !u->broken; o += PROTO_DATA_CHUNK)
    {
      size_t k = n - o < PROTO_DATA_CHUNK ? n - o : PROTO_DATA_CHUNK;
      if (inside_send (&u->ag, PROTO_FILE_DATA, 1, p + o, (uint32_t) k) < 0)
        u->broken = 1; /* the answer at the end says why */
    }
  u->bytes += n;
}

void
srv_upload_end (struct srv_upload *u, struct srv_reply *r)
{
  struct proto_frame f;
  if (!u->broken)
    inside_send (&u->ag, PROTO_FILE_DATA, 1, NULL, 0);
  int rc = inside_reply_frame (&u->ag, &f, 120000, r);
  if (rc < 0)
    return;
  if (u->route == SRV_R_FILES_RAW)
    {
      r->status = 200;
      r->body = srv_path_size_json (u->path, u->bytes);
      return;
    }
  /* The archive is complete inside the sandbox: extract it there, then remove it. */
  const char *const argv[] = { "tar", "-x", "--no-same-owner", "-f", u->tmp, "-C", u->path,
                               NULL };
  struct srv_reply er = { 0 };
  if (tar_exec (&u->ag, 2, argv, &er) < 0)
    {
      *r = er;
      return;
    }
  struct proto_buf errb = { 0 };
  struct proto_exec_exit ex = { .exit_code = -1 };
  for (;;)
    {
      if ((rc = inside_reply_frame (&u->ag, &f, TAR_TIMEOUT_MS + 30000, r)) < 0)
        break;
      struct sbx_err err = { 0 };
      if (f.type == PROTO_EXEC_STDERR && errb.len < INSIDE_ERR_KEEP)
        proto_buf_append (&errb, f.payload, f.len < INSIDE_ERR_KEEP ? f.len : INSIDE_ERR_KEEP);
      if (f.type == PROTO_EXEC_EXIT)
        {
          proto_exec_exit_decode (f.payload, f.len, &ex, &err);
          break;
        }
    }
  struct proto_msg d = { .path = u->tmp, .kind = PROTO_OP_REMOVE };
  PROTO_SET (&d, PROTO_M_PATH);
  PROTO_SET (&d, PROTO_M_KIND);
  if (inside_send_msg (&u->ag, PROTO_FILE_OP, 3, &d) == 0)
    {
      struct srv_reply ignore = { 0 };
      inside_reply_frame (&u->ag, &f, 60000, &ignore);
      json_decref (ignore.body);
    }
  if (rc >= 0)
    {
      if (ex.exit_code != 0)
        {
          char msg[INSIDE_ERR_KEEP + 64];
          snprintf (msg, sizeof msg, "tar failed (exit %d): %.*s", ex.exit_code,
                    (int) errb.len, errb.data ? (char *) errb.data : "");
          srv_reply_http (r, 400, "archive_failed", msg);
        }
      else
        {
          r->status = 200;
          r->body = srv_path_size_json (u->path, u->bytes);
        }
    }
  proto_buf_free (&errb);
}

void
srv_upload_free (struct srv_upload *u)
{
  if (!u)
    return;
  inside_close (&u->ag); /* an upload not ended: the agent drops its temporary file */
  free (u);
}
