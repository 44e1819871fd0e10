/* Request validation: every field's type, range and size is checked before anything is
 * done, and the error names the field. Unknown fields are ignored (forward compatible);
 * a field set to null counts as absent. Strings that become C strings (ids, argv, env,
 * paths) must not contain NUL: jansson is run with JSON_ALLOW_NUL, so we compare the
 * JSON length with strlen and refuse a mismatch instead of silently truncating. */
#include "server.h"
#include "../images/images.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int
bad (struct sbx_err *err, const char *field, const char *what)
{
  return sbx_err_set (err, SBX_E_INVALID, 0, "%s: %s", field, what);
}

/* The field's value, or NULL when absent or null. */
static json_t *
field (json_t *body, const char *name)
{
  json_t *v = json_object_get (body, name);
  return json_is_null (v) ? NULL : v;
}

static int
has_nul (json_t *s)
{
  return strlen (json_string_value (s)) != json_string_length (s);
}

/* A C-string-safe JSON string of at most max bytes. */
static int
get_cstr (json_t *v, const char *name, size_t max, const char **out, struct sbx_err *err)
{
  if (!json_is_string (v))
    return bad (err, name, "must be a string");
  if (has_nul (v))
    return bad (err, name, "must not contain NUL bytes");
  if (json_string_length (v) > max)
    return sbx_err_set (err, SBX_E_INVALID, 0, "%s: longer than %zu bytes", name, max);
  *out = json_string_value (v);
  return 0;
}

/* A number with an integral value in [lo, hi] (300 and 300.0 are both fine). */
static int
get_int (json_t *v, const char *name, int64_t lo, int64_t hi, int64_t *out, struct sbx_err *err)
{
  if (!json_is_number (v) || json_is_true (v) || json_is_false (v))
    return bad (err, name, "must be an integer");
  double d = json_number_value (v);
  if (json_is_real (v) && (!isfinite (d) || d != floor (d)))
    return bad (err, name, "must be an integer");
  if (json_is_integer (v) ? (json_integer_value (v) < lo || json_integer_value (v) > hi)
                          : (d < (double) lo || d > (double) hi))
    return sbx_err_set (err, SBX_E_INVALID, 0, "%s: must be between %lld and %lld", name,
                        (long long) lo, (long long) hi);
  *out = json_is_integer (v) ? (int64_t) json_integer_value (v) : (int64_t) d;
  return 0;
}

static int
env_name_ok (const char *k)
{
  if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_'))
    return 0;
  for (k++; *k; k++)
    if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9')
          || *k == '_'))
      return 0;
  return 1;
}

void
srv_env_free (struct srv_env *e)
{
  for (size_t i = 0; i < e->n; i++)
    {
      free (e->names[i]);
      free (e->values[i]);
    }
  free (e->names);
  free (e->values);
  memset (e, 0, sizeof *e);
}

static int
parse_env (json_t *v, struct srv_env *out, struct sbx_err *err)
{
  memset (out, 0, sizeof *out);
  if (!v)
    return 0;
  if (!json_is_object (v))
    return bad (err, "env", "must be an object of string values");
  size_t n = json_object_size (v);
  if (n > SRV_ENV_MAX_COUNT)
    return sbx_err_set (err, SBX_E_INVALID, 0, "env: more than %d variables",
                        SRV_ENV_MAX_COUNT);
  if (n == 0)
    return 0;
  out->names = calloc (n, sizeof (char *));
  out->values = calloc (n, sizeof (char *));
  if (!out->names || !out->values)
    {
      srv_env_free (out);
      return sbx_err_sys (err, "env");
    }
  size_t total = 0;
  const char *key;
  size_t klen;
  json_t *val;
  json_object_keylen_foreach (v, key, klen, val)
    {
      char name[SRV_ENV_MAX_NAME + 32];
      if (klen != strlen (key))
        {
          srv_env_free (out);
          return bad (err, "env", "variable names must not contain NUL bytes");
        }
      if (klen > SRV_ENV_MAX_NAME || !env_name_ok (key))
        {
          srv_env_free (out);
          return sbx_err_set (err, SBX_E_INVALID, 0,
                              "env: invalid variable name (letters, digits and '_', not "
                              "starting with a digit, at most %d bytes)", SRV_ENV_MAX_NAME);
        }
      snprintf (name, sizeof name, "env.%s", key);
      const char *s;
      if (get_cstr (val, name, SRV_ENV_MAX_VALUE, &s, err) < 0)
        {
          srv_env_free (out);
          return -1;
        }
      total += klen + json_string_length (val) + 2;
      if (total > SRV_ENV_MAX_TOTAL)
        {
          srv_env_free (out);
          return sbx_err_set (err, SBX_E_INVALID, 0, "env: more than %d bytes in total",
                              SRV_ENV_MAX_TOTAL);
        }
      out->names[out->n] = strdup (key);
      out->values[out->n] = strdup (s);
      out->n++;
      if (!out->names[out->n - 1] || !out->values[out->n - 1])
        {
          srv_env_free (out);
          return sbx_err_sys (err, "env");
        }
    }
  return 0;
}

static int
parse_workdir (json_t *v, char **out, struct sbx_err *err)
{
  *out = NULL;
  if (!v)
    return 0;
  const char *s;
  if (get_cstr (v, "workdir", SRV_PATH_MAX, &s, err) < 0)
    return -1;
  if (s[0] != '/')
    return bad (err, "workdir", "must be an absolute path");
  if (!(*out = strdup (s)))
    return sbx_err_sys (err, "workdir");
  return 0;
}

int
srv_parse_create (json_t *body, const struct srv_config *c, struct srv_create_req *out,
                  struct sbx_err *err)
{
  memset (out, 0, sizeof *out);
  snprintf (out->image, sizeof out->image, "%s", SRV_DEFAULT_IMAGE);
  out->timeout_s = SRV_TIMEOUT_DEFAULT;
  out->cpu_millis = SRV_CPU_DEFAULT_MILLIS < c->max_cpu_millis ? SRV_CPU_DEFAULT_MILLIS
                                                               : c->max_cpu_millis;
  out->memory_mb = SRV_MEMORY_DEFAULT_MB < c->max_memory_mb ? SRV_MEMORY_DEFAULT_MB
                                                            : c->max_memory_mb;
  json_t *v;
  if ((v = field (body, "image")))
    {
      const char *s;
      if (get_cstr (v, "image", sizeof out->image - 1, &s, err) < 0)
        return -1;
      /* a built-in name, or an image id (built, snapshot; checked when resolved) */
      if (!img_is_builtin (s) && !sbx_id_valid (s, "img"))
        return bad (err, "image",
                    "unknown image (built-in: \"python:3.11\", \"debian:bookworm\"; or an "
                    "image id \"img_...\")");
      snprintf (out->image, sizeof out->image, "%s", s);
    }
  if ((v = field (body, "timeout"))
      && get_int (v, "timeout", 1, SRV_TIMEOUT_MAX, &out->timeout_s, err) < 0)
    return -1;
  if ((v = field (body, "cpu")))
    {
      double max = c->max_cpu_millis / 1000.0;
      if (!json_is_number (v) || !isfinite (json_number_value (v)))
        return bad (err, "cpu", "must be a number of vCPUs");
      double d = json_number_value (v);
      if (d < SRV_CPU_MIN_MILLIS / 1000.0 || d > max)
        return sbx_err_set (err, SBX_E_INVALID, 0, "cpu: must be between 0.1 and %g", max);
      out->cpu_millis = (uint32_t) (d * 1000 + 0.5);
    }
  if ((v = field (body, "memory")))
    {
      int64_t mb;
      if (get_int (v, "memory", SRV_MEMORY_MIN_MB, (int64_t) c->max_memory_mb, &mb, err) < 0)
        return -1;
      out->memory_mb = (uint64_t) mb;
    }
  if (parse_env (field (body, "env"), &out->env, err) < 0)
    return -1;
  if (parse_workdir (field (body, "workdir"), &out->workdir, err) < 0)
    {
      srv_create_req_free (out);
      return -1;
    }
  return 0;
}

void
srv_create_req_free (struct srv_create_req *r)
{
  srv_env_free (&r->env);
  free (r->workdir);
  r->workdir = NULL;
}

int
srv_parse_sandbox_id (json_t *body, char id[SBX_ID_MAX], int *valid, struct sbx_err *err)
{
  json_t *v = field (body, "sandbox_id");
  if (!v)
    return bad (err, "sandbox_id", "is required");
  if (!json_is_string (v))
    return bad (err, "sandbox_id", "must be a string");
  if (has_nul (v))
    return bad (err, "sandbox_id", "must not contain NUL bytes");
  const char *s = json_string_value (v);
  size_t n = json_string_length (v);
  /* A string that cannot be an id is simply not found; keep a bounded copy for the
   * message, never use it for anything else. */
  *valid = n < SBX_ID_MAX && sbx_id_valid (s, "sb");
  snprintf (id, SBX_ID_MAX, "%s", *valid ? s : "");
  return 0;
}

static int
parse_command (json_t *v, struct srv_exec_req *out, struct sbx_err *err)
{
  if (!v)
    return bad (err, "command", "is required");
  if (json_is_string (v))
    {
      const char *s;
      if (get_cstr (v, "command", SRV_BODY_LIMIT, &s, err) < 0)
        return -1;
      if (!*s)
        return bad (err, "command", "must not be empty");
      out->argv = calloc (4, sizeof (char *));
      if (!out->argv || !(out->argv[0] = strdup ("/bin/sh")) || !(out->argv[1] = strdup ("-c"))
          || !(out->argv[2] = strdup (s)))
        return sbx_err_sys (err, "command");
      out->argc = 3;
      return 0;
    }
  if (!json_is_array (v))
    return bad (err, "command", "must be a string or an array of strings");
  size_t n = json_array_size (v);
  if (n == 0)
    return bad (err, "command", "must not be empty");
  if (n > SRV_ARGV_MAX_COUNT)
    return sbx_err_set (err, SBX_E_INVALID, 0, "command: more than %d arguments",
                        SRV_ARGV_MAX_COUNT);
  out->argv = calloc (n + 1, sizeof (char *));
  if (!out->argv)
    return sbx_err_sys (err, "command");
  for (size_t i = 0; i < n; i++)
    {
      char name[48];
      snprintf (name, sizeof name, "command[%zu]", i);
      const char *s;
      if (get_cstr (json_array_get (v, i), name, SRV_BODY_LIMIT, &s, err) < 0)
        return -1;
      if (i == 0 && !*s)
        return bad (err, "command[0]", "must not be empty");
      if (!(out->argv[i] = strdup (s)))
        return sbx_err_sys (err, "command");
      out->argc = i + 1;
    }
  return 0;
}

int
srv_parse_exec (json_t *body, const struct srv_config *c, struct srv_exec_req *out,
                struct sbx_err *err)
{
  memset (out, 0, sizeof *out);
  out->max_output = c->max_output;
  if (srv_parse_sandbox_id (body, out->id, &out->id_valid, err) < 0
      || parse_command (field (body, "command"), out, err) < 0
      || parse_env (field (body, "env"), &out->env, err) < 0
      || parse_workdir (field (body, "workdir"), &out->workdir, err) < 0)
    goto fail;
  json_t *v;
  if ((v = field (body, "stdin")))
    {
      if (!json_is_string (v))
        {
          bad (err, "stdin", "must be a string");
          goto fail;
        }
      /* stdin is data: NUL bytes are allowed and passed through. */
      out->stdin_len = json_string_length (v);
      out->stdin_data = malloc (out->stdin_len + 1);
      if (!out->stdin_data)
        {
          sbx_err_sys (err, "stdin");
          goto fail;
        }
      memcpy (out->stdin_data, json_string_value (v), out->stdin_len + 1);
      out->has_stdin = 1;
    }
  if ((v = field (body, "timeout")))
    {
      if (!json_is_number (v) || !isfinite (json_number_value (v)))
        {
          bad (err, "timeout", "must be a number of seconds");
          goto fail;
        }
      double d = json_number_value (v);
      if (d < 1 || d > SRV_TIMEOUT_MAX)
        {
          sbx_err_set (err, SBX_E_INVALID, 0, "timeout: must be between 1 and %d seconds",
                       SRV_TIMEOUT_MAX);
          goto fail;
        }
      out->timeout_ms = (uint64_t) (d * 1000 + 0.5);
    }
  if ((v = field (body, "max_output")))
    {
      int64_t m;
      if (get_int (v, "max_output", 1, (int64_t) c->max_output, &m, err) < 0)
        goto fail;
      out->max_output = (uint64_t) m;
    }
  return 0;
fail:
  srv_exec_req_free (out);
  return -1;
}

void
srv_exec_req_free (struct srv_exec_req *r)
{
  for (size_t i = 0; r->argv && r->argv[i]; i++)
    free (r->argv[i]);
  free (r->argv);
  r->argv = NULL;
  r->argc = 0;
  srv_env_free (&r->env);
  free (r->workdir);
  free (r->stdin_data);
  r->workdir = NULL;
  r->stdin_data = NULL;
}

char *
srv_env_to_json (const struct srv_env *e)
{
  if (e->n == 0)
    return NULL;
  json_t *o = json_object ();
  for (size_t i = 0; i < e->n; i++)
    json_object_set_new (o, e->names[i], json_string (e->values[i]));
  char *s = json_dumps (o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref (o);
  return s;
}

int
srv_env_from_json (const char *s, struct srv_env *out)
{
  memset (out, 0, sizeof *out);
  if (!s)
    return 0;
  json_t *o = json_loads (s, 0, NULL);
  if (!o)
    return -1;
  int r = parse_env (o, out, NULL);
  json_decref (o);
  return r;
}
