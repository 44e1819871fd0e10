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

static int
bind_text_or_null (sqlite3_stmt *s, int i, const char *v)
{
  return v ? sqlite3_bind_text (s, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null (s, i);
}

int
store_sandbox_insert (struct store *st, const struct store_sandbox *sb, struct sbx_err *err)
{
  static const char sql[]
      = "INSERT INTO sandboxes (id, status, image, created_at, expires_at, timeout, cpu_millis,"
        " memory_mb, env, workdir, commands_executed, terminated_at, reason, owner, charge_ref)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, sb->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, store_status_name (sb->status), -1, SQLITE_STATIC);
    sqlite3_bind_text (s, 3, sb->image, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 4, sb->created_at_ms);
    sqlite3_bind_int64 (s, 5, sb->expires_at_ms);
    sqlite3_bind_int64 (s, 6, sb->timeout_s);
    sqlite3_bind_int64 (s, 7, sb->cpu_millis);
    sqlite3_bind_int64 (s, 8, (sqlite3_int64) sb->memory_mb);
    bind_text_or_null (s, 9, sb->env_json);
    bind_text_or_null (s, 10, sb->workdir);
    sqlite3_bind_int64 (s, 11, sb->commands_executed);
    if (sb->status == STORE_TERMINATED)
      {
        sqlite3_bind_int64 (s, 12, sb->terminated_at_ms);
        sqlite3_bind_text (s, 13, sb->reason, -1, SQLITE_TRANSIENT);
      }
    sqlite3_bind_text (s, 14, sb->owner[0] ? sb->owner : "local", -1, SQLITE_TRANSIENT);
    if (sb->charge_ref > 0)
      sqlite3_bind_int64 (s, 15, sb->charge_ref);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "insert sandbox");
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

#define SANDBOX_COLS                                                                              \
  "id, status, image, created_at, expires_at, timeout, cpu_millis, memory_mb, env, workdir,"     \
  " commands_executed, terminated_at, reason, owner, charge_ref"

static char *
dup_col (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  return t ? strdup ((const char *) t) : NULL;
}

static void
copy_col (sqlite3_stmt *s, int i, char *dst, size_t cap)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  snprintf (dst, cap, "%s", t ? (const char *) t : "");
}

static int
row_to_sandbox (sqlite3_stmt *s, struct store_sandbox *out, struct sbx_err *err)
{
  memset (out, 0, sizeof *out);
  copy_col (s, 0, out->id, sizeof out->id);
  const unsigned char *status = sqlite3_column_text (s, 1);
  out->status = status && !strcmp ((const char *) status, "terminated") ? STORE_TERMINATED
                                                                       : STORE_RUNNING;
  copy_col (s, 2, out->image, sizeof out->image);
  out->created_at_ms = sqlite3_column_int64 (s, 3);
  out->expires_at_ms = sqlite3_column_int64 (s, 4);
  out->timeout_s = sqlite3_column_int64 (s, 5);
  out->cpu_millis = (uint32_t) sqlite3_column_int64 (s, 6);
  out->memory_mb = (uint64_t) sqlite3_column_int64 (s, 7);
  out->commands_executed = sqlite3_column_int64 (s, 10);
  out->terminated_at_ms = sqlite3_column_int64 (s, 11);
  copy_col (s, 12, out->reason, sizeof out->reason);
  copy_col (s, 13, out->owner, sizeof out->owner);
  out->charge_ref = sqlite3_column_int64 (s, 14);
  if ((sqlite3_column_type (s, 8) != SQLITE_NULL && !(out->env_json = dup_col (s, 8)))
      || (sqlite3_column_type (s, 9) != SQLITE_NULL && !(out->workdir = dup_col (s, 9))))
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
        sbx_err_set (err, SBX_E_NOT_FOUND, 0, "sandbox '%s' not found", id);
        goto out;
      }
    if (r != SQLITE_ROW)
      {
        store_db_err (st, err, "get sandbox");
        goto out;
      }
    rc = row_to_sandbox (s, out, err);
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_sandbox_terminate (struct store *st, const char *id, int64_t at_ms, const char *reason,
                         struct sbx_err *err)
{
  static const char upd[] = "UPDATE sandboxes SET status = 'terminated', terminated_at = ?2,"
                            " reason = ?3 WHERE id = ?1 AND status = 'running'";
  static const char chk[] = "SELECT 1 FROM sandboxes WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, upd, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, at_ms);
    sqlite3_bind_text (s, 3, reason, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "terminate sandbox");
        goto out;
      }
    if (sqlite3_changes (st->db) > 0)
      {
        rc = 1;
        goto out;
      }
    cleanup_stmt sqlite3_stmt *c = NULL;
    if (store_prepare (st, chk, &c, err) < 0)
      goto out;
    sqlite3_bind_text (c, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (c);
    if (r == SQLITE_ROW)
      rc = 0;
    else if (r == SQLITE_DONE)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "sandbox '%s' not found", id);
    else
      store_db_err (st, err, "terminate sandbox");
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
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
store_sandbox_list_owned (struct store *st, int status, const char *owner,
                          struct store_sandbox **out, size_t *n, struct sbx_err *err)
{
  /* ?1 NULL matches every status, ?2 NULL every owner. */
  static const char sql[] = "SELECT " SANDBOX_COLS " FROM sandboxes"
                            " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR owner = ?2)"
                            " ORDER BY created_at, id";
  struct store_sandbox *list = NULL;
  size_t len = 0;
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    if (status >= 0)
      sqlite3_bind_text (s, 1, store_status_name (status), -1, SQLITE_STATIC);
    if (owner)
      sqlite3_bind_text (s, 2, owner, -1, SQLITE_TRANSIENT);
    void *rows = NULL;
    rc = store_rows_collect (st, s, sizeof *list, sandbox_row, &rows, &len, "list sandboxes", err);
    list = rows;
  }
out:
  pthread_mutex_unlock (&st->lock);
  if (rc < 0)
    {
      store_sandbox_list_free (list, len);
      return -1;
    }
  *out = list;
  *n = len;
  return 0;
}

int
store_sandbox_delete (struct store *st, const char *id, struct sbx_err *err)
{
  static const char sql[] = "DELETE FROM sandboxes WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "delete sandbox");
        goto out;
      }
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}
