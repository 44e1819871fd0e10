/* Queries on the images and layers tables (schema 3). */
#include "internal.h"
#include "store_images.h"

#include <stdio.h>
#include <string.h>

void
store_image_clear (struct store_image *im)
{
  if (!im)
    return;
  free (im->layers_json);
  free (im->env_json);
  free (im->workdir);
  free (im->spec_json);
  free (im->error);
  im->layers_json = im->env_json = im->workdir = im->spec_json = im->error = NULL;
}

static void
bind_opt (sqlite3_stmt *s, int i, const char *v)
{
  if (v && *v)
    sqlite3_bind_text (s, i, v, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null (s, i);
}

int
store_image_insert (struct store *st, const struct store_image *im, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT OR IGNORE INTO images (id, kind, status, base, layers, env, workdir, parent,"
        " spec, error, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, im->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, im->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 3, im->status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 4, im->base, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 5, im->layers_json ? im->layers_json : "[]", -1, SQLITE_TRANSIENT);
    bind_opt (s, 6, im->env_json);
    bind_opt (s, 7, im->workdir);
    bind_opt (s, 8, im->parent);
    bind_opt (s, 9, im->spec_json);
    bind_opt (s, 10, im->error);
    sqlite3_bind_int64 (s, 11, im->created_at_ms);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "insert image");
        goto out;
      }
    rc = sqlite3_changes (st->db) > 0 ? 1 : 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

#define IMAGE_COLS                                                                                 \
  "id, kind, status, base, layers, env, workdir, parent, spec, error, created_at, updated_at"

static char *
dup_text (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  return t ? strdup ((const char *) t) : NULL;
}

static void
copy_text (sqlite3_stmt *s, int i, char *dst, size_t cap)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  snprintf (dst, cap, "%s", t ? (const char *) t : "");
}

static int
row_to_image (sqlite3_stmt *s, struct store_image *im, struct sbx_err *err)
{
  memset (im, 0, sizeof *im);
  copy_text (s, 0, im->id, sizeof im->id);
  copy_text (s, 1, im->kind, sizeof im->kind);
  copy_text (s, 2, im->status, sizeof im->status);
  copy_text (s, 3, im->base, sizeof im->base);
  im->layers_json = dup_text (s, 4);
  im->env_json = dup_text (s, 5);
  im->workdir = dup_text (s, 6);
  copy_text (s, 7, im->parent, sizeof im->parent);
  im->spec_json = dup_text (s, 8);
  im->error = dup_text (s, 9);
  im->created_at_ms = sqlite3_column_int64 (s, 10);
  im->updated_at_ms = sqlite3_column_int64 (s, 11);
  if (!im->layers_json)
    {
      store_image_clear (im);
      return sbx_err_sys (err, "copy image row");
    }
  return 0;
}

/* row_to_image as a store_row_fn. */
static int
image_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  return row_to_image (s, elem, err);
}

int
store_image_get (struct store *st, const char *id, struct store_image *out, struct sbx_err *err)
{
  static const char sql[] = "SELECT " IMAGE_COLS " FROM images WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      {
        sbx_err_set (err, SBX_E_NOT_FOUND, 0, "image '%s' not found", id);
        goto out;
      }
    if (r != SQLITE_ROW)
      {
        store_db_err (st, err, "get image");
        goto out;
      }
    rc = row_to_image (s, out, err);
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_image_update (struct store *st, const char *id, const char *status,
                    const char *layers_json, const char *error, struct sbx_err *err)
{
  static const char sql[] = "UPDATE images SET status = ?2, layers = COALESCE(?3, layers),"
                            " error = ?4, updated_at = ?5 WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, status, -1, SQLITE_TRANSIENT);
    bind_opt (s, 3, layers_json);
    bind_opt (s, 4, error);
    sqlite3_bind_int64 (s, 5, sbx_now_ms ());
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "update image");
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

void
store_image_list_free (struct store_image *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    store_image_clear (&list[i]);
  free (list);
}

int
store_image_list (struct store *st, struct store_image **out, size_t *n, struct sbx_err *err)
{
  static const char sql[] = "SELECT " IMAGE_COLS " FROM images ORDER BY created_at, id";
  *out = NULL;
  *n = 0;
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    void *rows = NULL;
    rc = store_rows_collect (st, s, sizeof **out, image_row, &rows, n, "list images", err);
    *out = rows;
  }
out:
  pthread_mutex_unlock (&st->lock);
  if (rc < 0)
    {
      store_image_list_free (*out, *n);
      *out = NULL;
      *n = 0;
    }
  return rc;
}

static int
count (struct store *st, const char *sql, const char *arg, int64_t *out, struct sbx_err *err)
{
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_prepare (st, sql, &s, err) < 0)
    return -1;
  sqlite3_bind_text (s, 1, arg, -1, SQLITE_TRANSIENT);
  if (sqlite3_step (s) != SQLITE_ROW)
    return store_db_err (st, err, "count");
  *out = sqlite3_column_int64 (s, 0);
  return 0;
}

int
store_image_delete_unused (struct store *st, const char *id, int64_t *sandboxes,
                           int64_t *children, struct sbx_err *err)
{
  int rc = -1;
  *sandboxes = *children = 0;
  pthread_mutex_lock (&st->lock);
  {
    int64_t exists = 0;
    if (count (st, "SELECT COUNT(*) FROM images WHERE id = ?1", id, &exists, err) < 0)
      goto out;
    if (!exists)
      {
        sbx_err_set (err, SBX_E_NOT_FOUND, 0, "image '%s' not found", id);
        goto out;
      }
    if (count (st, "SELECT COUNT(*) FROM sandboxes WHERE image = ?1 AND status = 'running'", id,
               sandboxes, err)
            < 0
        || count (st, "SELECT COUNT(*) FROM images WHERE parent = ?1", id, children, err) < 0)
      goto out;
    if (*sandboxes || *children)
      {
        rc = 0;
        goto out;
      }
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, "DELETE FROM images WHERE id = ?1", &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "delete image");
        goto out;
      }
    rc = 1;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

static int
exec1 (struct store *st, const char *sql, const char *a, struct sbx_err *err)
{
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, a, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, sql);
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_image_delete (struct store *st, const char *id, struct sbx_err *err)
{
  return exec1 (st, "DELETE FROM images WHERE id = ?1", id, err);
}

int
store_layer_delete (struct store *st, const char *id, struct sbx_err *err)
{
  return exec1 (st, "DELETE FROM layers WHERE id = ?1", id, err);
}

int
store_layer_prune (struct store *st, const char *keep_json, struct sbx_err *err)
{
  return exec1 (st, "DELETE FROM layers WHERE id NOT IN (SELECT value FROM json_each(?1))",
                keep_json, err);
}

int
store_layer_put (struct store *st, const char *id, uint64_t bytes, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT INTO layers (id, bytes, created_at) VALUES (?1, ?2, ?3)"
        " ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, (sqlite3_int64) bytes);
    sqlite3_bind_int64 (s, 3, sbx_now_ms ());
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "record layer");
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_layer_bytes (struct store *st, const char *id, uint64_t *bytes, struct sbx_err *err)
{
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, "SELECT bytes FROM layers WHERE id = ?1", &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      {
        sbx_err_set (err, SBX_E_NOT_FOUND, 0, "layer '%s' not recorded", id);
        goto out;
      }
    if (r != SQLITE_ROW)
      {
        store_db_err (st, err, "layer bytes");
        goto out;
      }
    *bytes = (uint64_t) sqlite3_column_int64 (s, 0);
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}
