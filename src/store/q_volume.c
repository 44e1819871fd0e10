/* Queries on the volumes and sandbox_volumes tables (schema 3). */
#include "internal.h"
#include "store_images.h"

int
store_volume_insert (struct store *st, const struct store_volume *v, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT INTO volumes (name, size_mb, created_at) VALUES (?1, ?2, ?3)";
  const struct store_val vals[] = { store_text (v->name), store_int ((int64_t) v->size_mb),
                                    store_int (v->created_at_ms) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_run_locked (st, sql, vals, STORE_NVALS (vals), "insert volume", err) >= 0)
    return 0;
  if (sqlite3_extended_errcode (st->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
    return sbx_err_set (err, SBX_E_INVALID, 0, "volume '%s' exists already", v->name);
  return -1;
}

/* A volumes row (name, size_mb, created_at) as a store_row_fn. */
static int
volume_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  struct store_volume *v = elem;
  store_col_copy (s, 0, v->name, sizeof v->name);
  v->size_mb = (uint64_t) sqlite3_column_int64 (s, 1);
  v->created_at_ms = sqlite3_column_int64 (s, 2);
  return 0;
}

int
store_volume_get (struct store *st, const char *name, struct store_volume *out,
                  struct sbx_err *err)
{
  const struct store_val v[] = { store_text (name) };
  int r = store_get (st, "SELECT name, size_mb, created_at FROM volumes WHERE name = ?1", v, 1,
                     volume_row, out, "get volume", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "volume '%s' not found", name);
  return r < 0 ? -1 : 0;
}

int
store_volume_list (struct store *st, struct store_volume **out, size_t *n, struct sbx_err *err)
{
  void *rows = NULL;
  size_t len = 0;
  *out = NULL;
  *n = 0;
  if (store_list (st, "SELECT name, size_mb, created_at FROM volumes ORDER BY name", NULL, 0,
                  sizeof **out, volume_row, &rows, &len, "list volumes", err)
      < 0)
    {
      free (rows);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}

int
store_volume_delete_unused (struct store *st, const char *name, int64_t *users,
                            struct sbx_err *err)
{
  static const char count[]
      = "SELECT (SELECT COUNT(*) FROM volumes WHERE name = ?1),"
        " (SELECT COUNT(DISTINCT v.sandbox_id) FROM sandbox_volumes v JOIN sandboxes s"
        "  ON s.id = v.sandbox_id WHERE v.volume = ?1 AND s.status = 'running')";
  static const char del_uses[] = "DELETE FROM sandbox_volumes WHERE volume = ?1";
  static const char del[] = "DELETE FROM volumes WHERE name = ?1";
  const struct store_val v[] = { store_text (name) };
  *users = 0;
  cleanup_store_unlock struct store *locked = store_lock (st);
  /* The check and the deletes in one transaction: another process on the database
   * (sbx admin) cannot add a user in between. */
  if (store_exec_sql (st, "BEGIN IMMEDIATE", err) < 0)
    return -1;
  int rc = 1;
  {
    cleanup_stmt sqlite3_stmt *c = NULL;
    if (store_one_locked (st, count, v, 1, &c, "volume users", err) < 0)
      rc = -1;
    else if (sqlite3_column_int64 (c, 0) == 0)
      rc = sbx_err_set (err, SBX_E_NOT_FOUND, 0, "volume '%s' not found", name);
    else if ((*users = sqlite3_column_int64 (c, 1)) > 0)
      rc = 0;
  }
  if (rc == 1
      && (store_run_locked (st, del_uses, v, 1, "delete volume", err) < 0
          || store_run_locked (st, del, v, 1, "delete volume", err) < 0
          || store_exec_sql (st, "COMMIT", err) < 0))
    rc = -1;
  /* Nothing to keep unless COMMIT succeeded; a failed COMMIT leaves the transaction open,
   * and the next BEGIN on this connection would fail. */
  if (rc != 1)
    store_exec_sql (st, "ROLLBACK", NULL);
  return rc;
}

int
store_sandbox_volume_add (struct store *st, const char *sandbox_id, const char *volume,
                          const char *target, struct sbx_err *err)
{
  static const char sql[] = "INSERT OR REPLACE INTO sandbox_volumes (sandbox_id, volume, target)"
                            " VALUES (?1, ?2, ?3)";
  const struct store_val v[] = { store_text (sandbox_id), store_text (volume),
                                 store_text (target) };
  int r = store_run (st, sql, v, STORE_NVALS (v), "record sandbox volume", err);
  return r < 0 ? -1 : 0;
}

/* A sandbox_volumes row (volume, target) as a store_row_fn. */
static int
mount_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  struct store_mount *m = elem;
  store_col_copy (s, 0, m->volume, sizeof m->volume);
  store_col_copy (s, 1, m->target, sizeof m->target);
  return 0;
}

int
store_sandbox_volume_list (struct store *st, const char *sandbox_id, struct store_mount **out,
                           size_t *n, struct sbx_err *err)
{
  static const char sql[]
      = "SELECT volume, target FROM sandbox_volumes WHERE sandbox_id = ?1 ORDER BY target";
  const struct store_val v[] = { store_text (sandbox_id) };
  void *rows = NULL;
  size_t len = 0;
  *out = NULL;
  *n = 0;
  if (store_list (st, sql, v, 1, sizeof **out, mount_row, &rows, &len, "list sandbox volumes",
                  err)
      < 0)
    {
      free (rows);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}
