/* Queries on the volumes and sandbox_volumes tables (schema 3). */
#include "internal.h"
#include "store_images.h"

#include <stdio.h>
#include <string.h>

int
store_volume_insert (struct store *st, const struct store_volume *v, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT INTO volumes (name, size_mb, created_at) VALUES (?1, ?2, ?3)";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, v->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, (sqlite3_int64) v->size_mb);
    sqlite3_bind_int64 (s, 3, v->created_at_ms);
    int r = sqlite3_step (s);
    if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
      {
        sbx_err_set (err, SBX_E_INVALID, 0, "volume '%s' exists already", v->name);
        goto out;
      }
    if (r != SQLITE_DONE)
      {
        store_db_err (st, err, "insert volume");
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

static void
row_to_volume (sqlite3_stmt *s, struct store_volume *v)
{
  const unsigned char *t = sqlite3_column_text (s, 0);
  snprintf (v->name, sizeof v->name, "%s", t ? (const char *) t : "");
  v->size_mb = (uint64_t) sqlite3_column_int64 (s, 1);
  v->created_at_ms = sqlite3_column_int64 (s, 2);
}

/* row_to_volume as a store_row_fn. */
static int
volume_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  row_to_volume (s, elem);
  return 0;
}

int
store_volume_get (struct store *st, const char *name, struct store_volume *out,
                  struct sbx_err *err)
{
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, "SELECT name, size_mb, created_at FROM volumes WHERE name = ?1", &s,
                       err)
        < 0)
      goto out;
    sqlite3_bind_text (s, 1, name, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      {
        sbx_err_set (err, SBX_E_NOT_FOUND, 0, "volume '%s' not found", name);
        goto out;
      }
    if (r != SQLITE_ROW)
      {
        store_db_err (st, err, "get volume");
        goto out;
      }
    row_to_volume (s, out);
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_volume_list (struct store *st, struct store_volume **out, size_t *n, struct sbx_err *err)
{
  *out = NULL;
  *n = 0;
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, "SELECT name, size_mb, created_at FROM volumes ORDER BY name", &s,
                       err)
        < 0)
      goto out;
    void *rows = NULL;
    rc = store_rows_collect (st, s, sizeof **out, volume_row, &rows, n, "list volumes", err);
    *out = rows;
  }
out:
  pthread_mutex_unlock (&st->lock);
  if (rc < 0)
    {
      free (*out);
      *out = NULL;
      *n = 0;
    }
  return rc;
}

int
store_volume_delete_unused (struct store *st, const char *name, int64_t *users,
                            struct sbx_err *err)
{
  int rc = -1;
  *users = 0;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *c = NULL;
    if (store_prepare (st,
                       "SELECT (SELECT COUNT(*) FROM volumes WHERE name = ?1),"
                       " (SELECT COUNT(*) FROM sandbox_volumes v JOIN sandboxes s"
                       "  ON s.id = v.sandbox_id WHERE v.volume = ?1 AND s.status = 'running')",
                       &c, err)
        < 0)
      goto out;
    sqlite3_bind_text (c, 1, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (c) != SQLITE_ROW)
      {
        store_db_err (st, err, "volume users");
        goto out;
      }
    if (sqlite3_column_int64 (c, 0) == 0)
      {
        sbx_err_set (err, SBX_E_NOT_FOUND, 0, "volume '%s' not found", name);
        goto out;
      }
    *users = sqlite3_column_int64 (c, 1);
    if (*users)
      {
        rc = 0;
        goto out;
      }
    if (store_exec_sql (st, "BEGIN IMMEDIATE", err) < 0)
      goto out;
    cleanup_stmt sqlite3_stmt *d1 = NULL;
    cleanup_stmt sqlite3_stmt *d2 = NULL;
    if (store_prepare (st, "DELETE FROM sandbox_volumes WHERE volume = ?1", &d1, err) < 0
        || store_prepare (st, "DELETE FROM volumes WHERE name = ?1", &d2, err) < 0)
      {
        store_exec_sql (st, "ROLLBACK", NULL);
        goto out;
      }
    sqlite3_bind_text (d1, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (d2, 1, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (d1) != SQLITE_DONE || sqlite3_step (d2) != SQLITE_DONE)
      {
        store_db_err (st, err, "delete volume");
        store_exec_sql (st, "ROLLBACK", NULL);
        goto out;
      }
    if (store_exec_sql (st, "COMMIT", err) < 0)
      goto out;
    rc = 1;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_sandbox_volume_add (struct store *st, const char *sandbox_id, const char *volume,
                          const char *target, struct sbx_err *err)
{
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st,
                       "INSERT OR REPLACE INTO sandbox_volumes (sandbox_id, volume, target)"
                       " VALUES (?1, ?2, ?3)",
                       &s, err)
        < 0)
      goto out;
    sqlite3_bind_text (s, 1, sandbox_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, volume, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 3, target, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "record sandbox volume");
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}
