/* The exec audit table. */
#include "internal.h"

int
store_exec_record (struct store *st, const struct store_exec *e, struct sbx_err *err)
{
  static const char ins[]
      = "INSERT INTO execs (sandbox_id, argv, exit_code, timed_out, truncated, started_at,"
        " duration_ms, stdout_bytes, stderr_bytes, error)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
  static const char bump[]
      = "UPDATE sandboxes SET commands_executed = commands_executed + 1 WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  if (store_exec_sql (st, "BEGIN IMMEDIATE", err) < 0)
    goto out;
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    cleanup_stmt sqlite3_stmt *u = NULL;
    if (store_prepare (st, ins, &s, err) < 0 || store_prepare (st, bump, &u, err) < 0)
      goto rollback;
    sqlite3_bind_text (s, 1, e->sandbox_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, e->argv_json ? e->argv_json : "[]", -1, SQLITE_TRANSIENT);
    if (e->has_exit_code)
      sqlite3_bind_int (s, 3, e->exit_code);
    else
      sqlite3_bind_null (s, 3);
    sqlite3_bind_int (s, 4, !!e->timed_out);
    sqlite3_bind_int (s, 5, !!e->truncated);
    sqlite3_bind_int64 (s, 6, e->started_at_ms);
    sqlite3_bind_int64 (s, 7, e->duration_ms);
    sqlite3_bind_int64 (s, 8, (sqlite3_int64) e->stdout_bytes);
    sqlite3_bind_int64 (s, 9, (sqlite3_int64) e->stderr_bytes);
    if (e->error)
      sqlite3_bind_text (s, 10, e->error, -1, SQLITE_TRANSIENT);
    else
      sqlite3_bind_null (s, 10);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "record exec");
        goto rollback;
      }
    sqlite3_bind_text (u, 1, e->sandbox_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (u) != SQLITE_DONE)
      {
        store_db_err (st, err, "count exec");
        goto rollback;
      }
  }
  if (store_exec_sql (st, "COMMIT", err) < 0)
    goto rollback;
  rc = 0;
  goto out;
rollback:
  store_exec_sql (st, "ROLLBACK", NULL);
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_exec_count (struct store *st, const char *sandbox_id, int64_t *n, struct sbx_err *err)
{
  static const char sql[] = "SELECT count(*) FROM execs WHERE sandbox_id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, sandbox_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_ROW)
      {
        store_db_err (st, err, "count execs");
        goto out;
      }
    *n = sqlite3_column_int64 (s, 0);
    rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}
