/* POST /volume/create, GET /volume/list, POST /volume/delete. See volume.c in
 * src/images for what a volume is on disk. */
#include "images_srv.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* create/delete of one name must not interleave (file, mount and row go together) */
static pthread_mutex_t vol_lock = PTHREAD_MUTEX_INITIALIZER;

#define VOLUME_DEFAULT_MB 1024

static json_t *
volume_json (struct srv *s, const struct store_volume *v)
{
  uint64_t used = 0, total = 0;
  struct sbx_err err = { 0 };
  char ts[32];
  sbx_time_rfc3339 (v->created_at_ms, ts, sizeof ts);
  json_t *o = json_pack ("{s:s,s:I,s:s}", "name", v->name, "size_mb", (json_int_t) v->size_mb,
                         "created_at", ts);
  if (img_volume_usage (s->cfg.state_dir, v->name, &used, &total, &err) == 0)
    {
      json_object_set_new (o, "bytes_used", json_integer ((json_int_t) used));
      json_object_set_new (o, "bytes_total", json_integer ((json_int_t) total));
    }
  else
    json_object_set_new (o, "error", json_string (err.msg));
  return o;
}

static const char *
name_field (json_t *body, struct srv_reply *r)
{
  json_t *v = json_object_get (body, "name");
  const char *n = json_string_value (v);
  if (!n || strlen (n) != json_string_length (v) || !img_volume_name_ok (n))
    {
      srv_reply_error (r, SBX_E_INVALID,
                       "name: 1 to 63 of a-z 0-9 _ . - (starting with a letter or digit)");
      return NULL;
    }
  return n;
}

void
srv_h_volume_create (struct srv *s, json_t *body, struct srv_reply *r)
{
  const char *name = name_field (body, r);
  if (!name)
    return;
  json_int_t mb = VOLUME_DEFAULT_MB;
  json_t *v = json_object_get (body, "size_mb");
  if (v && !json_is_null (v))
    {
      if (!json_is_integer (v) || json_integer_value (v) < IMG_VOLUME_MB_MIN
          || json_integer_value (v) > IMG_VOLUME_MB_MAX)
        {
          char msg[96];
          snprintf (msg, sizeof msg, "size_mb: must be an integer between %d and %d",
                    IMG_VOLUME_MB_MIN, IMG_VOLUME_MB_MAX);
          srv_reply_error (r, SBX_E_INVALID, msg);
          return;
        }
      mb = json_integer_value (v);
    }
  struct sbx_err err = { 0 };
  struct store_volume vol = { .size_mb = (uint64_t) mb, .created_at_ms = sbx_now_ms () };
  snprintf (vol.name, sizeof vol.name, "%s", name);
  pthread_mutex_lock (&vol_lock);
  struct store_volume existing;
  int rc;
  if (store_volume_get (s->store, name, &existing, NULL) == 0)
    rc = sbx_err_set (&err, SBX_E_INVALID, 0, "volume '%s' exists already", name);
  else
    {
      rc = img_volume_create (s->cfg.state_dir, name, (uint64_t) mb, &err);
      if (rc == 0 && (rc = store_volume_insert (s->store, &vol, &err)) < 0)
        img_volume_delete (s->cfg.state_dir, name, NULL);
    }
  pthread_mutex_unlock (&vol_lock);
  if (rc < 0)
    {
      if (err.code == SBX_E_INVALID && strstr (err.msg, "exists already"))
        srv_reply_http (r, 409, "volume_exists", err.msg);
      else
        srv_reply_err (r, &err);
      return;
    }
  LOG_INFO ("created volume %s (%lld MB)", name, (long long) mb);
  r->status = 200;
  r->body = volume_json (s, &vol);
}

void
srv_h_volume_list (struct srv *s, struct srv_reply *r)
{
  struct store_volume *list = NULL;
  size_t n = 0;
  struct sbx_err err = { 0 };
  if (store_volume_list (s->store, &list, &n, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  json_t *arr = json_array ();
  for (size_t i = 0; i < n; i++)
    json_array_append_new (arr, volume_json (s, &list[i]));
  free (list);
  r->status = 200;
  r->body = json_pack ("{s:o,s:I}", "volumes", arr, "count", (json_int_t) n);
}

void
srv_h_volume_get (struct srv *s, const char *name, struct srv_reply *r)
{
  struct store_volume v;
  struct sbx_err err = { 0 };
  if (!img_volume_name_ok (name) || store_volume_get (s->store, name, &v, &err) < 0)
    {
      char msg[128];
      snprintf (msg, sizeof msg, "volume '%.63s' not found", name);
      srv_reply_http (r, 404, "volume_not_found", msg);
      return;
    }
  r->status = 200;
  r->body = volume_json (s, &v);
}

void
srv_h_volume_delete (struct srv *s, json_t *body, struct srv_reply *r)
{
  const char *name = name_field (body, r);
  if (name)
    srv_h_volume_delete_name (s, name, r);
}

void
srv_h_volume_delete_name (struct srv *s, const char *name, struct srv_reply *r)
{
  if (!img_volume_name_ok (name))
    {
      srv_reply_http (r, 404, "volume_not_found", "no such volume (not a volume name)");
      return;
    }
  struct sbx_err err = { 0 };
  int64_t users = 0;
  pthread_mutex_lock (&vol_lock);
  int rc = store_volume_delete_unused (s->store, name, &users, &err);
  if (rc == 1 && img_volume_delete (s->cfg.state_dir, name, &err) < 0)
    rc = -1;
  pthread_mutex_unlock (&vol_lock);
  if (rc < 0)
    {
      if (err.code == SBX_E_NOT_FOUND)
        srv_reply_http (r, 404, "volume_not_found", err.msg);
      else
        srv_reply_err (r, &err);
      return;
    }
  if (rc == 0)
    {
      char msg[160];
      snprintf (msg, sizeof msg, "volume '%s' is mounted by %lld running sandbox(es)", name,
                (long long) users);
      srv_reply_http (r, 409, "volume_in_use", msg);
      return;
    }
  r->status = 200;
  r->body = json_pack ("{s:s,s:s}", "name", name, "status", "deleted");
}

void
srv_volumes_recover (struct srv *s)
{
  char dir[PATH_MAX];
  snprintf (dir, sizeof dir, "%s/volumes", s->cfg.state_dir);
  DIR *d = opendir (dir);
  if (!d)
    return; /* no volume yet */
  struct dirent *de;
  while ((de = readdir (d)))
    {
      /* the file <name>.img and the directory <name> (its mount point; a name may end
       * in ".img" too) */
      struct stat st;
      if (fstatat (dirfd (d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        continue;
      char name[NAME_MAX + 1];
      snprintf (name, sizeof name, "%s", de->d_name);
      size_t n = strlen (name);
      if (S_ISREG (st.st_mode) && n > 4 && !strcmp (name + n - 4, ".img"))
        name[n - 4] = '\0';
      else if (!S_ISDIR (st.st_mode))
        continue;
      if (!img_volume_name_ok (name))
        continue;
      struct store_volume vol;
      struct sbx_err err = { 0 };
      if (store_volume_get (s->store, name, &vol, &err) == 0 || err.code != SBX_E_NOT_FOUND)
        continue; /* recorded (or the store cannot say: keep it) */
      /* A crash during create or delete leaves one, but so does a database restored
       * from an older backup: keep the data, free the name. */
      char aside[PATH_MAX];
      if (img_volume_set_aside (s->cfg.state_dir, name, aside, &err) < 0)
        LOG_WARN ("restart: volume '%s' has no record; moving it aside: %s", name, err.msg);
      else if (aside[0])
        LOG_WARN ("restart: volume '%s' has no record (cut create or delete, or an older "
                  "database); its image is kept as %s: remove it to free the space",
                  name, aside);
    }
  closedir (d);
}
