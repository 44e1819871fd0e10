/* GET /image/list, GET /image/{id}, POST /image/delete, POST /image/gc. Builds are in
 * image_build.c. */
#include "images_srv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Bytes of an image's own layers (shared ones counted in each image that has them). */
static uint64_t
layers_bytes (struct srv *s, json_t *layers)
{
  uint64_t sum = 0;
  size_t i;
  json_t *v;
  json_array_foreach (layers, i, v)
    {
      uint64_t b = 0;
      if (json_string_value (v) && store_layer_bytes (s->store, json_string_value (v), &b, NULL) == 0)
        sum += b;
    }
  return sum;
}

static json_t *
image_json (struct srv *s, const struct store_image *im)
{
  json_t *layers = json_loads (im->layers_json, 0, NULL);
  if (!json_is_array (layers))
    {
      json_decref (layers);
      layers = json_array ();
    }
  json_t *o = json_object ();
  json_object_set_new (o, "image_id", json_string (im->id));
  json_object_set_new (o, "kind", json_string (im->kind));
  json_object_set_new (o, "status", json_string (im->status));
  json_object_set_new (o, "base", json_string (im->base));
  json_object_set_new (o, "parent", *im->parent ? json_string (im->parent) : json_null ());
  json_object_set_new (o, "bytes", json_integer ((json_int_t) layers_bytes (s, layers)));
  json_object_set_new (o, "layers", layers);
  json_object_set_new (o, "env", im->env_json ? json_loads (im->env_json, 0, NULL) : json_object ());
  json_object_set_new (o, "workdir", im->workdir ? json_string (im->workdir) : json_null ());
  json_object_set_new (o, "created_at", srv_time_json (im->created_at_ms));
  if (im->error)
    json_object_set_new (o, "error", srv_json_text (im->error));
  return o;
}

void
srv_h_image_list (struct srv *s, struct srv_reply *r)
{
  struct store_image *list = NULL;
  size_t n = 0;
  struct sbx_err err = { 0 };
  if (store_image_list (s->store, &list, &n, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  json_t *arr = json_array ();
  for (const char *const *b = img_builtin_names (); *b; b++)
    {
      struct img_info info;
      int have = img_stat (s->cfg.state_dir, *b, &info, NULL);
      json_array_append_new (arr, json_pack ("{s:s,s:s,s:s,s:I}", "image_id", *b, "kind",
                                             "builtin", "status",
                                             have == 1 ? "ready" : "not_built", "bytes",
                                             (json_int_t) (have == 1 ? info.size_bytes : 0)));
    }
  for (size_t i = 0; i < n; i++)
    json_array_append_new (arr, image_json (s, &list[i]));
  store_image_list_free (list, n);
  /* every layer once: what the layer store takes on disk */
  uint64_t total = 0;
  char dir[PATH_MAX];
  if (snprintf (dir, sizeof dir, "%s/layers", s->cfg.state_dir) < (int) sizeof dir)
    img_du (dir, &total);
  r->status = 200;
  r->body = json_pack ("{s:o,s:I,s:I}", "images", arr, "count", (json_int_t) json_array_size (arr),
                       "layers_bytes", (json_int_t) total);
}

/* The last bytes of a build log (at most cap). */
static json_t *
log_tail (struct srv *s, const char *id, size_t cap)
{
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/build-logs/%s.log", s->cfg.state_dir, id);
  cleanup_close int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return json_null ();
  off_t end = lseek (fd, 0, SEEK_END);
  off_t start = end > (off_t) cap ? end - (off_t) cap : 0;
  cleanup_free char *buf = malloc (cap + 1);
  if (!buf || lseek (fd, start, SEEK_SET) < 0)
    return json_null ();
  ssize_t n = sbx_read_full (fd, buf, cap);
  if (n < 0)
    return json_null ();
  char *clean = NULL;
  size_t cl = 0;
  if (srv_utf8_sanitize ((const uint8_t *) buf, (size_t) n, &clean, &cl) < 0)
    return json_null ();
  json_t *j = json_stringn (clean, cl);
  free (clean);
  return j;
}

void
srv_h_image_get (struct srv *s, const char *id, struct srv_reply *r)
{
  struct sbx_err err = { 0 };
  if (img_is_builtin (id))
    {
      struct img_info info;
      int have = img_stat (s->cfg.state_dir, id, &info, NULL);
      r->status = 200;
      r->body = json_pack ("{s:s,s:s,s:s,s:I}", "image_id", id, "kind", "builtin", "status",
                           have == 1 ? "ready" : "not_built", "bytes",
                           (json_int_t) (have == 1 ? info.size_bytes : 0));
      return;
    }
  struct store_image im;
  if (!sbx_id_valid (id, "img") || store_image_get (s->store, id, &im, &err) < 0)
    {
      char msg[160];
      snprintf (msg, sizeof msg, "image '%.80s' not found", id);
      srv_reply_http (r, 404, "image_not_found", msg);
      return;
    }
  r->status = 200;
  r->body = image_json (s, &im);
  json_object_set_new (r->body, "log", log_tail (s, id, 64 * 1024));
  store_image_clear (&im);
}

/* Remove layers no image refers to (under the write lock: no layer is being made or
 * resolved meanwhile). */
int
srv_image_gc (struct srv *s, size_t *removed, uint64_t *freed, struct sbx_err *err)
{
  struct store_image *list = NULL;
  size_t n = 0;
  srv_layers_wrlock ();
  int rc = store_image_list (s->store, &list, &n, err);
  const char **keep = NULL;
  size_t nk = 0;
  json_t *all = json_array ();
  for (size_t i = 0; rc == 0 && i < n; i++)
    {
      json_t *l = json_loads (list[i].layers_json, 0, NULL);
      if (json_is_array (l))
        json_array_extend (all, l);
      json_decref (l);
    }
  if (rc == 0)
    {
      keep = calloc (json_array_size (all) + 1, sizeof *keep);
      if (!keep)
        rc = sbx_err_sys (err, "gc");
    }
  for (size_t i = 0; rc == 0 && i < json_array_size (all); i++)
    keep[nk++] = json_string_value (json_array_get (all, i));
  if (rc == 0)
    rc = img_layer_gc (s->cfg.state_dir, keep, nk, removed, freed, err);
  if (rc == 0)
    {
      char *kj = json_dumps (all, JSON_COMPACT);
      if (!kj || store_layer_prune (s->store, kj, err) < 0)
        LOG_WARN ("gc: forget removed layers: %s", kj ? err->msg : "out of memory");
      free (kj);
      sbx_err_clear (err);
    }
  srv_layers_unlock ();
  free (keep);
  json_decref (all);
  store_image_list_free (list, n);
  if (rc == 0 && *removed)
    LOG_INFO ("image gc: removed %zu layers, %.1f MB", *removed, *freed / 1e6);
  return rc;
}

static const char *
image_id_field (json_t *body, struct srv_reply *r)
{
  json_t *v = json_object_get (body, "image_id");
  const char *id = json_string_value (v);
  if (!id || strlen (id) != json_string_length (v))
    {
      srv_reply_error (r, SBX_E_INVALID, "image_id: must be a string");
      return NULL;
    }
  return id;
}

void
srv_h_image_delete (struct srv *s, json_t *body, struct srv_reply *r)
{
  const char *id = image_id_field (body, r);
  if (id)
    srv_h_image_delete_id (s, id, r);
}

void
srv_h_image_delete_id (struct srv *s, const char *id, struct srv_reply *r)
{
  if (img_is_builtin (id))
    {
      srv_reply_error (r, SBX_E_INVALID, "image_id: built-in images cannot be deleted");
      return;
    }
  struct sbx_err err = { 0 };
  int64_t sandboxes = 0, children = 0;
  int rc = sbx_id_valid (id, "img")
               ? store_image_delete_unused (s->store, id, &sandboxes, &children, &err)
               : sbx_err_set (&err, SBX_E_NOT_FOUND, 0, "not found");
  if (rc < 0)
    {
      if (err.code == SBX_E_NOT_FOUND)
        {
          char msg[160];
          snprintf (msg, sizeof msg, "image '%.80s' not found", id);
          srv_reply_http (r, 404, "image_not_found", msg);
        }
      else
        srv_reply_err (r, &err);
      return;
    }
  if (rc == 0)
    {
      char msg[256];
      snprintf (msg, sizeof msg,
                "image '%s' is in use by %lld running sandbox(es) and %lld image(s) built on it",
                id, (long long) sandboxes, (long long) children);
      srv_reply_http (r, 409, "image_in_use", msg);
      return;
    }
  size_t removed = 0;
  uint64_t freed = 0;
  if (srv_image_gc (s, &removed, &freed, &err) < 0)
    LOG_WARN ("gc after deleting %s: %s", id, err.msg);
  r->status = 200;
  r->body = json_pack ("{s:s,s:s,s:I,s:I}", "image_id", id, "status", "deleted",
                       "layers_removed", (json_int_t) removed, "bytes_freed", (json_int_t) freed);
}

void
srv_h_image_gc (struct srv *s, struct srv_reply *r)
{
  size_t removed = 0;
  uint64_t freed = 0;
  struct sbx_err err = { 0 };
  if (srv_image_gc (s, &removed, &freed, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  r->status = 200;
  r->body = json_pack ("{s:I,s:I}", "layers_removed", (json_int_t) removed, "bytes_freed",
                       (json_int_t) freed);
}
