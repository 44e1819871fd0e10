/* Running one query: the lock guard, typed binds, stepping, and SQLite's results mapped to
 * struct sbx_err, so that each query in q_*.c says only its SQL, values and answers. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

struct store *
store_lock (struct store *st)
{
  pthread_mutex_lock (&st->lock);
  return st;
}

void
store_unlockp (struct store **st)
{
  if (*st)
    pthread_mutex_unlock (&(*st)->lock);
  *st = NULL;
}

static int
bind_val (sqlite3_stmt *s, int i, const struct store_val *v)
{
  switch (v->type)
    {
    case STORE_VAL_TEXT:
      return sqlite3_bind_text (s, i, v->p, -1, SQLITE_TRANSIENT);
    case STORE_VAL_INT:
      return sqlite3_bind_int64 (s, i, v->i);
    case STORE_VAL_BLOB:
      return sqlite3_bind_blob (s, i, v->p, v->len, SQLITE_TRANSIENT);
    case STORE_VAL_NULL:
      break;
    }
  return sqlite3_bind_null (s, i);
}

int
store_prepare_bind (struct store *st, const char *sql, const struct store_val *vals,
                    size_t n, sqlite3_stmt **out, struct sbx_err *err)
{
  if (store_prepare (st, sql, out, err) < 0)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (bind_val (*out, (int) i + 1, &vals[i]) != SQLITE_OK)
      {
        store_db_err (st, err, "bind parameter");
        store_finalizep (out);
        return -1;
      }
  return 0;
}

int
store_step (struct store *st, sqlite3_stmt *s, const char *what, struct sbx_err *err)
{
  int r = sqlite3_step (s);
  if (r == SQLITE_ROW)
    return 1;
  if (r == SQLITE_DONE)
    return 0;
  return store_db_err (st, err, what);
}

int
store_run_locked (struct store *st, const char *sql, const struct store_val *vals, size_t n,
                  const char *what, struct sbx_err *err)
{
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_prepare_bind (st, sql, vals, n, &s, err) < 0)
    return -1;
  if (sqlite3_step (s) != SQLITE_DONE)
    return store_db_err (st, err, what);
  return sqlite3_changes (st->db);
}

int
store_run (struct store *st, const char *sql, const struct store_val *vals, size_t n,
           const char *what, struct sbx_err *err)
{
  cleanup_store_unlock struct store *locked = store_lock (st);
  return store_run_locked (st, sql, vals, n, what, err);
}

int
store_row_locked (struct store *st, const char *sql, const struct store_val *vals, size_t n,
                  sqlite3_stmt **out, const char *what, struct sbx_err *err)
{
  if (store_prepare_bind (st, sql, vals, n, out, err) < 0)
    return -1;
  return store_step (st, *out, what, err);
}

int
store_one_locked (struct store *st, const char *sql, const struct store_val *vals, size_t n,
                  sqlite3_stmt **out, const char *what, struct sbx_err *err)
{
  int r = store_row_locked (st, sql, vals, n, out, what, err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_INTERNAL, 0, "%s: no row", what);
  return r < 0 ? -1 : 0;
}

int
store_get (struct store *st, const char *sql, const struct store_val *vals, size_t n,
           store_row_fn row, void *elem, const char *what, struct sbx_err *err)
{
  cleanup_store_unlock struct store *locked = store_lock (st);
  cleanup_stmt sqlite3_stmt *s = NULL;
  int r = store_row_locked (st, sql, vals, n, &s, what, err);
  if (r <= 0)
    return r;
  return row (s, elem, err) < 0 ? -1 : 1;
}

int
store_list_locked (struct store *st, const char *sql, const struct store_val *vals, size_t n,
                   size_t size, store_row_fn row, void **list, size_t *len, const char *what,
                   struct sbx_err *err)
{
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_prepare_bind (st, sql, vals, n, &s, err) < 0)
    return -1;
  return store_rows_collect (st, s, size, row, list, len, what, err);
}

int
store_list (struct store *st, const char *sql, const struct store_val *vals, size_t n,
            size_t size, store_row_fn row, void **list, size_t *len, const char *what,
            struct sbx_err *err)
{
  cleanup_store_unlock struct store *locked = store_lock (st);
  return store_list_locked (st, sql, vals, n, size, row, list, len, what, err);
}

void
store_col_copy (sqlite3_stmt *s, int i, char *dst, size_t cap)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  snprintf (dst, cap, "%s", t ? (const char *) t : "");
}

char *
store_col_dup (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  return t ? strdup ((const char *) t) : NULL;
}
