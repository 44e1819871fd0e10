/* Issue 6 endpoints, part 1: routing of the new paths, and the validation and JSON
 * shapes shared by the new handlers (h_process.c, h_files.c, transfer.c). Every field is
 * checked like the older endpoints (type, range, size, NUL bytes, exact ids); the agent
 * checks paths and ids again. */
#include "inside.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- routing ---- */

enum srv_route
srv_route_match_id (const char *rest, const char **allow)
{
  static const char pre[] = "/sandbox/";
  if (strncmp (rest, pre, sizeof pre - 1) != 0)
    return SRV_R_NONE;
  const char *id = rest + sizeof pre - 1;
  const char *slash = strchr (id, '/');
  if (!slash || slash == id || slash - id >= SBX_ID_MAX)
    return SRV_R_NONE;
  *allow = "GET, PUT";
  if (!strcmp (slash, "/files"))
    return SRV_R_FILES_RAW;
  if (!strcmp (slash, "/archive"))
    return SRV_R_ARCHIVE;
  return SRV_R_NONE;
}

int
srv_method_allowed (const char *method, const char *allow)
{
  size_t n = strlen (method);
  for (const char *p = allow; p && *p;)
    {
      while (*p == ' ' || *p == ',')
        p++;
      size_t k = strcspn (p, ", ");
      if (k == n && !strncmp (p, method, n))
        return 1;
      p += k;
    }
  return 0;
}

/* ---- validation ---- */

json_t *
inside_field (json_t *body, const char *name)
{
  json_t *v = json_object_get (body, name);
  return json_is_null (v) ? NULL : v;
}

int
inside_bad (struct srv_reply *r, const char *field, const char *what)
{
  char msg[256];
  snprintf (msg, sizeof msg, "%s: %s", field, what);
  srv_reply_error (r, SBX_E_INVALID, msg);
  return -1;
}

int
inside_int (json_t *body, const char *name, int64_t lo, int64_t hi, int64_t dflt,
            int64_t *out, struct srv_reply *r)
{
  json_t *v = inside_field (body, name);
  *out = dflt;
  if (!v)
    return 0;
  double d = json_number_value (v);
  if (!json_is_number (v) || (json_is_real (v) && (!isfinite (d) || d != floor (d))))
    return inside_bad (r, name, "must be an integer");
  /* a real is compared before it is converted: 1e300 has no int64_t (undefined behaviour),
   * and neither has 2^63, which (double) INT64_MAX rounds up to */
  int real_out = json_is_real (v) && (d < -0x1p63 || d >= 0x1p63);
  int64_t x = lo;
  if (json_is_integer (v))
    x = (int64_t) json_integer_value (v);
  else if (!real_out)
    x = (int64_t) d;
  if (real_out || x < lo || x > hi)
    {
      char msg[96];
      snprintf (msg, sizeof msg, "must be between %lld and %lld", (long long) lo,
                (long long) hi);
      return inside_bad (r, name, msg);
    }
  *out = x;
  return 0;
}

int
inside_bool (json_t *body, const char *name, int dflt, int *out, struct srv_reply *r)
{
  json_t *v = inside_field (body, name);
  *out = dflt;
  if (!v)
    return 0;
  if (!json_is_boolean (v))
    return inside_bad (r, name, "must be true or false");
  *out = json_is_true (v);
  return 0;
}

int
inside_path_ok (const char *p)
{
  if (p[0] != '/' || strlen (p) >= SRV_PATH_MAX)
    return 0;
  while (*p)
    {
      while (*p == '/')
        p++;
      size_t n = strcspn (p, "/");
      if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return 0;
      p += n;
    }
  return 1;
}

int
inside_path (json_t *v, const char *name, const char **out, struct srv_reply *r)
{
  if (!v)
    return inside_bad (r, name, "is required");
  if (!json_is_string (v))
    return inside_bad (r, name, "must be a string");
  if (strlen (json_string_value (v)) != json_string_length (v))
    return inside_bad (r, name, "must not contain NUL bytes");
  const char *s = json_string_value (v);
  if (json_string_length (v) >= SRV_PATH_MAX)
    return inside_bad (r, name, "longer than 4095 bytes");
  if (!inside_path_ok (s))
    return inside_bad (r, name,
                       "must be an absolute path without \".\" or \"..\" components");
  *out = s;
  return 0;
}

int
inside_encoding (json_t *body, int *b64, struct srv_reply *r)
{
  json_t *v = inside_field (body, "encoding");
  *b64 = 0;
  if (!v)
    return 0;
  const char *s = json_string_value (v);
  if (!s || strlen (s) != json_string_length (v))
    return inside_bad (r, "encoding", "must be \"utf-8\" or \"base64\"");
  if (!strcasecmp (s, "base64"))
    *b64 = 1;
  else if (strcasecmp (s, "utf-8") && strcasecmp (s, "utf8"))
    return inside_bad (r, "encoding", "must be \"utf-8\" or \"base64\"");
  return 0;
}

int
inside_content (json_t *body, const char *name, int b64, uint8_t **out, size_t *len,
                struct srv_reply *r)
{
  json_t *v = inside_field (body, name);
  *out = NULL;
  *len = 0;
  if (!v)
    {
      *out = malloc (1);
      return *out ? 0 : inside_bad (r, name, "out of memory");
    }
  if (!json_is_string (v))
    return inside_bad (r, name, "must be a string");
  if (b64 && json_string_length (v) > 0)
    {
      if (bill_base64_decode (json_string_value (v), json_string_length (v), out, len) < 0)
        return inside_bad (r, name, "is not valid base64");
      return 0;
    }
  /* utf-8 text: NUL bytes are data here. */
  *len = json_string_length (v);
  *out = malloc (*len + 1);
  if (!*out)
    return inside_bad (r, name, "out of memory");
  memcpy (*out, json_string_value (v), *len);
  return 0;
}

size_t
inside_utf8_tail (const uint8_t *p, size_t n)
{
  /* Look back at most 3 bytes for a lead byte whose sequence runs past the end. */
  for (size_t back = 1; back <= 3 && back <= n; back++)
    {
      uint8_t c = p[n - back];
      if ((c & 0xC0) == 0x80)
        continue; /* continuation: keep looking for the lead */
      size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
      return need > back ? back : 0;
    }
  return 0;
}

json_t *
inside_data_json (const uint8_t *p, size_t n, int force_b64, int *b64_out)
{
  if (!force_b64)
    {
      char *txt = NULL;
      size_t tl = 0;
      int replaced = srv_utf8_sanitize (p ? p : (const uint8_t *) "", n, &txt, &tl);
      if (replaced == 0)
        {
          json_t *s = json_stringn (txt, tl);
          free (txt);
          *b64_out = 0;
          return s;
        }
      free (txt);
    }
  char *b = srv_base64 (p ? p : (const uint8_t *) "", n);
  json_t *s = json_string (b ? b : "");
  free (b);
  *b64_out = 1;
  return s;
}

json_t *
inside_usage_json (uint64_t cpu_us, uint64_t max_rss_kb)
{
  return json_pack ("{s:I,s:I}", "cpu_ms", (json_int_t) (cpu_us / 1000), "max_rss_kb",
                    (json_int_t) max_rss_kb);
}

json_t *
inside_proc_json (const struct proto_msg *m)
{
  json_t *o = json_object ();
  json_object_set_new (o, "process_id", json_integer (m->proc_id));
  json_object_set_new (o, "pid", json_integer (m->pid));
  if (m->key)
    srv_json_set_text (o, "exec_id", m->key);
  if (m->command)
    srv_json_set_text (o, "command", m->command);
  json_object_set_new (o, "running", json_boolean (m->running));
  json_object_set_new (o, "pty", json_boolean (m->pty));
  json_object_set_new (o, "background", json_boolean (m->background));
  json_object_set_new (o, "started_at", srv_time_json ((int64_t) m->started_ms));
  json_object_set_new (o, "stdout_bytes", json_integer ((json_int_t) m->out_total));
  json_object_set_new (o, "stderr_bytes", json_integer ((json_int_t) m->err_total));
  json_object_set_new (o, "stdout_earliest", json_integer ((json_int_t) m->out_earliest));
  json_object_set_new (o, "stderr_earliest", json_integer ((json_int_t) m->err_earliest));
  if (PROTO_HAS (m, PROTO_M_EXIT_CODE))
    {
      json_object_set_new (o, "exit_code", json_integer (m->exit_code));
      json_object_set_new (o, "returncode", json_integer (m->exit_code));
      if (m->signal)
        json_object_set_new (o, "signal", json_integer (m->signal));
      json_object_set_new (o, "duration_ms", json_integer ((json_int_t) (m->duration_us / 1000)));
      json_object_set_new (o, "timed_out", json_boolean (m->timed_out));
      json_object_set_new (o, "usage", inside_usage_json (m->cpu_us, m->max_rss_kb));
    }
  else
    json_object_set_new (o, "exit_code", json_null ());
  return o;
}

static const char *
type_name (uint32_t mode)
{
  switch (mode & S_IFMT)
    {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char_device";
    case S_IFBLK: return "block_device";
    default: return "unknown";
    }
}

json_t *
inside_file_json (const struct proto_msg *m, const char *path)
{
  json_t *o = json_object ();
  if (path)
    {
      srv_json_set_text (o, "path", path);
      const char *slash = strrchr (path, '/');
      srv_json_set_text (o, "name", slash && slash[1] ? slash + 1 : path);
    }
  json_object_set_new (o, "type", json_string (type_name (m->mode)));
  json_object_set_new (o, "size", json_integer ((json_int_t) m->size));
  char mode[8];
  snprintf (mode, sizeof mode, "%04o", m->mode & 07777);
  json_object_set_new (o, "mode", json_string (mode));
  json_object_set_new (o, "mtime", srv_time_json ((int64_t) (m->mtime_ns / 1000000)));
  json_object_set_new (o, "uid", json_integer (m->uid));
  json_object_set_new (o, "gid", json_integer (m->gid));
  if (m->target)
    srv_json_set_text (o, "target", m->target);
  return o;
}
