/* The spec of POST /image/build in canonical form: {base, apt_install, files,
 * run_commands, env, workdir} validated, keys sorted, packages sorted and deduplicated,
 * so that the same spec always has the same image id (image_build.c). */
#include "build_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS 100
#define MAX_FILES 100

static int
bad (struct sbx_err *err, const char *msg)
{
  return sbx_err_set (err, SBX_E_INVALID, 0, "%s", msg);
}

static int
cstr_ok (json_t *v, size_t max)
{
  return json_is_string (v) && strlen (json_string_value (v)) == json_string_length (v)
         && json_string_length (v) <= max;
}

static int
package_ok (const char *p)
{
  size_t n = strlen (p);
  if (n < 2 || n > 100 || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= '0' && p[0] <= '9')))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '+'
          || p[i] == '-' || p[i] == '.'))
      return 0;
  return 1;
}

static int
cmp_json_str (const void *a, const void *b)
{
  return strcmp (json_string_value (*(json_t *const *) a), json_string_value (*(json_t *const *) b));
}

/* Validate body into a canonical spec object (new reference). */
json_t *
srv_build_spec_canonical (json_t *body, struct sbx_err *err)
{
  json_t *spec = json_object ();
  json_t *v = json_object_get (body, "base");
  const char *base = SRV_DEFAULT_IMAGE;
  if (v && !json_is_null (v))
    {
      if (!cstr_ok (v, 63) || (!img_is_builtin (json_string_value (v))
                               && !sbx_id_valid (json_string_value (v), "img")))
        goto invalid_base;
      base = json_string_value (v);
    }
  json_object_set_new (spec, "base", json_string (base));

  if ((v = json_object_get (body, "apt_install")) && !json_is_null (v))
    {
      if (!json_is_array (v) || json_array_size (v) > SRV_BUILD_MAX_PACKAGES)
        {
          bad (err, "apt_install: must be an array of at most 100 package names");
          goto fail;
        }
      json_t *pk[SRV_BUILD_MAX_PACKAGES];
      size_t n = 0, i;
      json_t *p;
      json_array_foreach (v, i, p)
        {
          if (!cstr_ok (p, 100) || !package_ok (json_string_value (p)))
            {
              bad (err, "apt_install: package names are Debian names ([a-z0-9][a-z0-9+.-]+)");
              goto fail;
            }
          pk[n++] = p;
        }
      qsort (pk, n, sizeof pk[0], cmp_json_str);
      json_t *arr = json_array ();
      for (i = 0; i < n; i++)
        if (i == 0 || strcmp (json_string_value (pk[i]), json_string_value (pk[i - 1])))
          json_array_append (arr, pk[i]);
      if (json_array_size (arr))
        json_object_set_new (spec, "apt_install", arr);
      else
        json_decref (arr);
    }
  if ((v = json_object_get (body, "run_commands")) && !json_is_null (v))
    {
      if (!json_is_array (v) || json_array_size (v) > MAX_COMMANDS)
        {
          bad (err, "run_commands: must be an array of at most 100 strings");
          goto fail;
        }
      size_t i;
      json_t *c;
      json_array_foreach (v, i, c)
        if (!cstr_ok (c, 65536) || !json_string_length (c))
          {
            bad (err, "run_commands: each must be a non-empty string without NUL (64 KiB max)");
            goto fail;
          }
      if (json_array_size (v))
        json_object_set (spec, "run_commands", v);
    }
  if ((v = json_object_get (body, "env")) && !json_is_null (v))
    {
      if (!json_is_object (v) || json_object_size (v) > SRV_ENV_MAX_COUNT)
        {
          bad (err, "env: must be an object of string values");
          goto fail;
        }
      const char *k;
      json_t *val;
      json_object_foreach (v, k, val)
        {
          int ok = (k[0] == '_' || (k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z'))
                   && strlen (k) <= SRV_ENV_MAX_NAME && cstr_ok (val, SRV_ENV_MAX_VALUE);
          for (const char *q = k; ok && *q; q++)
            ok = *q == '_' || (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z')
                 || (*q >= '0' && *q <= '9');
          if (!ok)
            {
              bad (err, "env: names [A-Za-z_][A-Za-z0-9_]*, string values without NUL");
              goto fail;
            }
        }
      if (json_object_size (v))
        json_object_set (spec, "env", v);
    }
  if ((v = json_object_get (body, "workdir")) && !json_is_null (v))
    {
      if (!cstr_ok (v, SRV_PATH_MAX) || json_string_value (v)[0] != '/')
        {
          bad (err, "workdir: must be an absolute path");
          goto fail;
        }
      json_object_set (spec, "workdir", v);
    }
  if ((v = json_object_get (body, "files")) && !json_is_null (v))
    {
      if (!json_is_object (v) || json_object_size (v) > MAX_FILES)
        {
          bad (err, "files: must be an object {\"/path\": \"content\"} of at most 100 files");
          goto fail;
        }
      const char *path;
      size_t plen;
      json_t *content;
      json_object_keylen_foreach (v, path, plen, content)
        {
          /* same rules as volume mount points: absolute, normalized, not in /proc etc. */
          if (plen != strlen (path) || !rt_volume_target_ok (path) || !json_is_string (content))
            {
              bad (err, "files: paths absolute and normalized (not in /proc, /sys, /dev, "
                        "/tmp), contents strings");
              goto fail;
            }
        }
      if (json_object_size (v))
        json_object_set (spec, "files", v);
    }
  return spec;
invalid_base:
  bad (err, "base: a built-in image (\"python:3.11\", \"debian:bookworm\") or an image id");
fail:
  json_decref (spec);
  return NULL;
}

void
srv_build_spec_id (json_t *spec, char id[SBX_ID_MAX])
{
  char *t = json_dumps (spec, JSON_COMPACT | JSON_SORT_KEYS);
  srv_image_id_of ("build", t ? t : "", id);
  free (t);
}
