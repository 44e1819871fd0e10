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

int
store_image_insert (struct store *st, const struct store_image *im, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT OR IGNORE INTO images (id, kind, status, base, layers, env, workdir, parent,"
        " spec, error, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)";
  const struct store_val v[] = {
    store_text (im->id),
    store_text (im->kind),
    store_text (im->status),
    store_text (im->base),
    store_text (im->layers_json ? im->layers_json : "[]"),
    store_opt_text (im->env_json),
    store_opt_text (im->workdir),
    store_opt_text (im->parent),
    store_opt_text (im->spec_json),
    store_opt_text (im->error),
    store_int (im->created_at_ms),
  };
  int r = store_run (st, sql, v, STORE_NVALS (v), "insert image", err);
  return r < 0 ? -1 : r > 0;
}

#define IMAGE_COLS                                                                                 \
  "id, kind, status, base, layers, env, workdir, parent, spec, error, created_at, updated_at"

static int
row_to_image (sqlite3_stmt *s, struct store_image *im, struct sbx_err *err)
{
  memset (im, 0, sizeof *im);
  store_col_copy (s, 0, im->id, sizeof im->id);
  store_col_copy (s, 1, im->kind, sizeof im->kind);
  store_col_copy (s, 2, im->status, sizeof im->status);
  store_col_copy (s, 3, im->base, sizeof im->base);
  im->layers_json = store_col_dup (s, 4);
  im->env_json = store_col_dup (s, 5);
  im->workdir = store_col_dup (s, 6);
  store_col_copy (s, 7, im->parent, sizeof im->parent);
  im->spec_json = store_col_dup (s, 8);
  im->error = store_col_dup (s, 9);
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
  const struct store_val v[] = { store_text (id) };
  int r = store_get (st, sql, v, 1, image_row, out, "get image", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "image '%s' not found", id);
  return r < 0 ? -1 : 0;
}

int
store_image_update (struct store *st, const char *id, const char *status,
                    const char *layers_json, const char *error, struct sbx_err *err)
{
  static const char sql[] = "UPDATE images SET status = ?2, layers = COALESCE(?3, layers),"
                            " error = ?4, updated_at = ?5 WHERE id = ?1";
  const struct store_val v[] = { store_text (id), store_text (status),
                                 store_opt_text (layers_json), store_opt_text (error),
                                 store_int (sbx_now_ms ()) };
  return store_run (st, sql, v, STORE_NVALS (v), "update image", err) < 0 ? -1 : 0;
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
  void *rows = NULL;
  size_t len = 0;
  *out = NULL;
  *n = 0;
  if (store_list (st, sql, NULL, 0, sizeof **out, image_row, &rows, &len, "list images", err)
      < 0)
    {
      store_image_list_free (rows, len);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}

/* count(*) of sql with ?1 = arg; with the lock held. */
static int
count (struct store *st, const char *sql, const char *arg, int64_t *out, struct sbx_err *err)
{
  const struct store_val v[] = { store_text (arg) };
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_one_locked (st, sql, v, 1, &s, "count", err) < 0)
    return -1;
  *out = sqlite3_column_int64 (s, 0);
  return 0;
}

int
store_image_delete_unused (struct store *st, const char *id, int64_t *sandboxes,
                           int64_t *children, struct sbx_err *err)
{
  *sandboxes = *children = 0;
  cleanup_store_unlock struct store *locked = store_lock (st);
  /* The checks and the delete in one transaction: another process on the database
   * (sbx admin) cannot start a user in between. */
  if (store_exec_sql (st, "BEGIN IMMEDIATE", err) < 0)
    return -1;
  int64_t exists = 0;
  int rc = 1;
  const struct store_val v[] = { store_text (id) };
  if (count (st, "SELECT COUNT(*) FROM images WHERE id = ?1", id, &exists, err) < 0)
    rc = -1;
  else if (!exists)
    rc = sbx_err_set (err, SBX_E_NOT_FOUND, 0, "image '%s' not found", id);
  else if (count (st, "SELECT COUNT(*) FROM sandboxes WHERE image = ?1 AND status = 'running'",
                  id, sandboxes, err)
               < 0
           || count (st, "SELECT COUNT(*) FROM images WHERE parent = ?1", id, children, err) < 0)
    rc = -1;
  else if (*sandboxes || *children)
    rc = 0;
  if (rc == 1
      && (store_run_locked (st, "DELETE FROM images WHERE id = ?1", v, 1, "delete image", err) < 0
          || store_exec_sql (st, "COMMIT", err) < 0))
    rc = -1;
  if (rc != 1)
    store_exec_sql (st, "ROLLBACK", NULL); /* a failed COMMIT must not stay open either */
  return rc;
}

/* Run sql with ?1 = a; errors name the statement. */
static int
exec1 (struct store *st, const char *sql, const char *a, struct sbx_err *err)
{
  const struct store_val v[] = { store_text (a) };
  return store_run (st, sql, v, 1, sql, err) < 0 ? -1 : 0;
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
  const struct store_val v[] = { store_text (id), store_int ((int64_t) bytes),
                                 store_int (sbx_now_ms ()) };
  return store_run (st, sql, v, STORE_NVALS (v), "record layer", err) < 0 ? -1 : 0;
}

static int
bytes_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  *(uint64_t *) elem = (uint64_t) sqlite3_column_int64 (s, 0);
  return 0;
}

int
store_layer_bytes (struct store *st, const char *id, uint64_t *bytes, struct sbx_err *err)
{
  const struct store_val v[] = { store_text (id) };
  int r = store_get (st, "SELECT bytes FROM layers WHERE id = ?1", v, 1, bytes_row, bytes,
                     "layer bytes", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "layer '%s' not recorded", id);
  return r < 0 ? -1 : 0;
}
