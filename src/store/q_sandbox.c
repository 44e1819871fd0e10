/* Queries on the sandboxes table. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

void
store_sandbox_clear (struct store_sandbox *s)
{
  if (!s)
    return;
  free (s->env_json);
  free (s->workdir);
  s->env_json = NULL;
  s->workdir = NULL;
}

int
store_sandbox_insert (struct store *st, const struct store_sandbox *sb, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT INTO sandboxes (id, status, image, created_at, expires_at, timeout, cpu_millis,"
        " memory_mb, env, workdir, commands_executed, terminated_at, reason, owner, charge_ref)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
  int term = sb->status == STORE_TERMINATED;
  const struct store_val v[] = {
    store_text (sb->id),
    store_text (store_status_name (sb->status)),
    store_text (sb->image),
    store_int (sb->created_at_ms),
    store_int (sb->expires_at_ms),
    store_int (sb->timeout_s),
    store_int (sb->cpu_millis),
    store_int ((int64_t) sb->memory_mb),
    store_text (sb->env_json),
    store_text (sb->workdir),
    store_int (sb->commands_executed),
    term ? store_int (sb->terminated_at_ms) : store_null (),
    store_text (term ? sb->reason : NULL),
    store_text (sb->owner[0] ? sb->owner : "local"),
    sb->charge_ref > 0 ? store_int (sb->charge_ref) : store_null (),
  };
  return store_run (st, sql, v, STORE_NVALS (v), "insert sandbox", err) < 0 ? -1 : 0;
}

#define SANDBOX_COLS                                                                              \
  "id, status, image, created_at, expires_at, timeout, cpu_millis, memory_mb, env, workdir,"     \
  " commands_executed, terminated_at, reason, owner, charge_ref"

static int
row_to_sandbox (sqlite3_stmt *s, struct store_sandbox *out, struct sbx_err *err)
{
  memset (out, 0, sizeof *out);
  store_col_copy (s, 0, out->id, sizeof out->id);
  const unsigned char *status = sqlite3_column_text (s, 1);
  out->status = status && !strcmp ((const char *) status, "terminated") ? STORE_TERMINATED
                                                                       : STORE_RUNNING;
  store_col_copy (s, 2, out->image, sizeof out->image);
  out->created_at_ms = sqlite3_column_int64 (s, 3);
  out->expires_at_ms = sqlite3_column_int64 (s, 4);
  out->timeout_s = sqlite3_column_int64 (s, 5);
  out->cpu_millis = (uint32_t) sqlite3_column_int64 (s, 6);
  out->memory_mb = (uint64_t) sqlite3_column_int64 (s, 7);
  out->commands_executed = sqlite3_column_int64 (s, 10);
  out->terminated_at_ms = sqlite3_column_int64 (s, 11);
  store_col_copy (s, 12, out->reason, sizeof out->reason);
  store_col_copy (s, 13, out->owner, sizeof out->owner);
  out->charge_ref = sqlite3_column_int64 (s, 14);
  if ((sqlite3_column_type (s, 8) != SQLITE_NULL && !(out->env_json = store_col_dup (s, 8)))
      || (sqlite3_column_type (s, 9) != SQLITE_NULL && !(out->workdir = store_col_dup (s, 9))))
    {
      store_sandbox_clear (out);
      return sbx_err_sys (err, "copy sandbox row");
    }
  return 0;
}

/* row_to_sandbox as a store_row_fn. */
static int
sandbox_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  return row_to_sandbox (s, elem, err);
}

int
store_sandbox_get (struct store *st, const char *id, struct store_sandbox *out,
                   struct sbx_err *err)
{
  static const char sql[] = "SELECT " SANDBOX_COLS " FROM sandboxes WHERE id = ?1";
  const struct store_val v[] = { store_text (id) };
  int r = store_get (st, sql, v, 1, sandbox_row, out, "get sandbox", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "sandbox '%s' not found", id);
  return r < 0 ? -1 : 0;
}

int
store_sandbox_terminate (struct store *st, const char *id, int64_t at_ms, const char *reason,
                         struct sbx_err *err)
{
  static const char upd[] = "UPDATE sandboxes SET status = 'terminated', terminated_at = ?2,"
                            " reason = ?3 WHERE id = ?1 AND status = 'running'";
  static const char chk[] = "SELECT 1 FROM sandboxes WHERE id = ?1";
  const struct store_val v[] = { store_text (id), store_int (at_ms), store_text (reason) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  int r = store_run_locked (st, upd, v, STORE_NVALS (v), "terminate sandbox", err);
  if (r != 0)
    return r < 0 ? -1 : 1;
  /* not running: terminated already (0), or not there at all */
  cleanup_stmt sqlite3_stmt *c = NULL;
  r = store_row_locked (st, chk, v, 1, &c, "terminate sandbox", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "sandbox '%s' not found", id);
  return r < 0 ? -1 : 0;
}

void
store_sandbox_list_free (struct store_sandbox *list, size_t n)
{
  for (size_t i = 0; list && i < n; i++)
    store_sandbox_clear (&list[i]);
  free (list);
}

int
store_sandbox_list (struct store *st, int status, struct store_sandbox **out, size_t *n,
                    struct sbx_err *err)
{
  return store_sandbox_list_owned (st, status, NULL, out, n, err);
}

int
store_sandbox_count_running (struct store *st, const char *owner, int64_t *n,
                             struct sbx_err *err)
{
  static const char sql[]
      = "SELECT count(*) FROM sandboxes WHERE owner = ?1 AND status = 'running'";
  const struct store_val v[] = { store_text (owner) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_one_locked (st, sql, v, 1, &s, "count running sandboxes", err) < 0)
    return -1;
  *n = sqlite3_column_int64 (s, 0);
  return 0;
}

int
store_sandbox_list_owned (struct store *st, int status, const char *owner,
                          struct store_sandbox **out, size_t *n, struct sbx_err *err)
{
  return store_sandbox_page (st, status, owner, NULL, -1, out, n, err);
}

int
store_sandbox_page (struct store *st, int status, const char *owner, const char *after,
                    int64_t limit, struct store_sandbox **out, size_t *n, struct sbx_err *err)
{
  /* ?1 NULL matches every status, ?2 NULL every owner, ?3 NULL starts at the first; a
   * negative LIMIT is none. The cursor is not filtered by status: a sandbox that ended
   * between two pages of the running ones still marks the place. */
  static const char sql[]
      = "SELECT " SANDBOX_COLS " FROM sandboxes"
        " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR owner = ?2)"
        " AND (?3 IS NULL OR (created_at, id) > (SELECT created_at, id FROM sandboxes"
        "  WHERE id = ?3 AND (?2 IS NULL OR owner = ?2)))"
        " ORDER BY created_at, id LIMIT ?4";
  const struct store_val v[] = {
    status >= 0 ? store_text (store_status_name (status)) : store_null (),
    store_text (owner),
    store_text (after),
    store_int (limit),
  };
  void *rows = NULL;
  size_t len = 0;
  if (store_list (st, sql, v, STORE_NVALS (v), sizeof **out, sandbox_row, &rows, &len,
                  "list sandboxes", err)
      < 0)
    {
      store_sandbox_list_free (rows, len);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}

int
store_sandbox_delete (struct store *st, const char *id, struct sbx_err *err)
{
  const struct store_val v[] = { store_text (id) };
  int r = store_run (st, "DELETE FROM sandboxes WHERE id = ?1", v, 1, "delete sandbox", err);
  return r < 0 ? -1 : 0;
}
