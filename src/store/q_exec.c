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
  const struct store_val v[] = {
    store_text (e->sandbox_id),
    store_text (e->argv_json ? e->argv_json : "[]"),
    e->has_exit_code ? store_int (e->exit_code) : store_null (),
    store_int (!!e->timed_out),
    store_int (!!e->truncated),
    store_int (e->started_at_ms),
    store_int (e->duration_ms),
    store_int ((int64_t) e->stdout_bytes),
    store_int ((int64_t) e->stderr_bytes),
    store_text (e->error),
  };
  /* the record and the sandbox's count change together */
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_exec_sql (st, "BEGIN IMMEDIATE", err) < 0)
    return -1;
  if (store_run_locked (st, ins, v, STORE_NVALS (v), "record exec", err) < 0
      || store_run_locked (st, bump, v, 1, "count exec", err) < 0
      || store_exec_sql (st, "COMMIT", err) < 0)
    {
      store_exec_sql (st, "ROLLBACK", NULL);
      return -1;
    }
  return 0;
}

int
store_exec_count (struct store *st, const char *sandbox_id, int64_t *n, struct sbx_err *err)
{
  static const char sql[] = "SELECT count(*) FROM execs WHERE sandbox_id = ?1";
  const struct store_val v[] = { store_text (sandbox_id) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_one_locked (st, sql, v, 1, &s, "count execs", err) < 0)
    return -1;
  *n = sqlite3_column_int64 (s, 0);
  return 0;
}
