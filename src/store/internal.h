/* Private to src/store. */
#pragma once

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>

/* Prepared statements are kept and reused (every query is fixed text): compiling them on
 * each call was a quarter of sbxd's CPU per exec. */
#define STORE_STMT_CACHE 96

struct store_stmt {
  const char *sql; /* the caller's text, compared by content */
  sqlite3_stmt *s;
  int in_use;      /* handed out and not yet released by cleanup_stmt */
};

struct store {
  sqlite3 *db;
  pthread_mutex_t lock; /* serializes every use of db and its statements */
  struct store_stmt stmts[STORE_STMT_CACHE];
  size_t nstmts;
  struct store *next_open; /* the registry that store_finalizep looks statements up in */
};

/* Fill err from the connection's last error; returns -1. */
int store_db_err (struct store *st, struct sbx_err *err, const char *what);
/* Prepare a statement, or hand out the cached one for the same text, reset. Release it with
 * cleanup_stmt (a cached one is reset and kept, any other finalized). Call with st->lock
 * held; sql must stay valid for the store's life (a literal). */
int store_prepare (struct store *st, const char *sql, sqlite3_stmt **out, struct sbx_err *err);
int store_exec_sql (struct store *st, const char *sql, struct sbx_err *err);
/* Reads the current row of s into elem, an element of the array being filled; -1 with err
 * leaves elem with nothing to free. */
typedef int (*store_row_fn) (sqlite3_stmt *s, void *elem, struct sbx_err *err);
/* Step s to its end, each row read by row into a new element of the array *list (elements
 * of size bytes, *len of them, both start NULL and 0; grown as needed). 0, or -1 with err
 * (what names the query); on failure the *len rows read stay in *list for the caller to
 * free. Call with st->lock held. */
int store_rows_collect (struct store *st, sqlite3_stmt *s, size_t size, store_row_fn row,
                        void **list, size_t *len, const char *what, struct sbx_err *err);

void store_finalizep (sqlite3_stmt **s);
#define cleanup_stmt __attribute__ ((cleanup (store_finalizep)))

/* st->lock held until the end of the scope. Declare the guard before the scope's
 * statements: cleanups run in reverse order, so they are released under the lock. */
struct store *store_lock (struct store *st);
void store_unlockp (struct store **st);
#define cleanup_store_unlock __attribute__ ((cleanup (store_unlockp)))

/* One value for a statement parameter; the k-th value of an array binds ?k. Texts and
 * blobs are copied at bind time. */
enum store_val_type { STORE_VAL_NULL, STORE_VAL_TEXT, STORE_VAL_INT, STORE_VAL_BLOB };
struct store_val {
  enum store_val_type type;
  int64_t i;     /* STORE_VAL_INT */
  const void *p; /* STORE_VAL_TEXT (NUL-terminated), STORE_VAL_BLOB */
  int len;       /* STORE_VAL_BLOB */
};
static inline struct store_val
store_null (void)
{
  return (struct store_val){ .type = STORE_VAL_NULL };
}
/* A NULL text is SQL NULL. */
static inline struct store_val
store_text (const char *t)
{
  return (struct store_val){ .type = t ? STORE_VAL_TEXT : STORE_VAL_NULL, .p = t };
}
/* SQL NULL also for the empty string (optional fields the API leaves empty). */
static inline struct store_val
store_opt_text (const char *t)
{
  return store_text (t && *t ? t : NULL);
}
static inline struct store_val
store_int (int64_t i)
{
  return (struct store_val){ .type = STORE_VAL_INT, .i = i };
}
static inline struct store_val
store_blob (const void *p, int len)
{
  return (struct store_val){ .type = STORE_VAL_BLOB, .p = p, .len = len };
}
#define STORE_NVALS(a) (sizeof (a) / sizeof (a)[0])

/* Text column i of the current row: copied into dst (cap bytes, truncated; "" for NULL),
 * or strdup'ed (NULL for NULL, and when out of memory). */
void store_col_copy (sqlite3_stmt *s, int i, char *dst, size_t cap);
char *store_col_dup (sqlite3_stmt *s, int i);

/* The query helpers. `what` names the query in errors: any SQLite failure is
 * SBX_E_INTERNAL "what: <sqlite message>"; after a failure, with the lock still held,
 * sqlite3_extended_errcode (st->db) tells which (e.g. SQLITE_CONSTRAINT_PRIMARYKEY) for
 * the callers that map a constraint to their own error. */

/* Prepare sql (store_prepare) and bind vals[0..n) to ?1..?n. Lock held. */
int store_prepare_bind (struct store *st, const char *sql, const struct store_val *vals,
                        size_t n, sqlite3_stmt **out, struct sbx_err *err);
/* Step s once: 1 on a row, 0 when done, -1 with err. */
int store_step (struct store *st, sqlite3_stmt *s, const char *what, struct sbx_err *err);
/* Run a statement that returns no rows (INSERT, UPDATE, DELETE) to its end: the number of
 * rows it changed, or -1 with err. _locked: with st->lock held; else takes it. */
int store_run_locked (struct store *st, const char *sql, const struct store_val *vals,
                      size_t n, const char *what, struct sbx_err *err);
int store_run (struct store *st, const char *sql, const struct store_val *vals, size_t n,
               const char *what, struct sbx_err *err);
/* Prepare, bind and step to the first row, lock held: 1 with *out on that row (release it
 * with cleanup_stmt), 0 if there is none, -1 with err. */
int store_row_locked (struct store *st, const char *sql, const struct store_val *vals,
                      size_t n, sqlite3_stmt **out, const char *what, struct sbx_err *err);
/* The same for a query that always gives a row (count(*), sum()): 0 with *out on it, or
 * -1 with err, where no row is the error "what: no row". */
int store_one_locked (struct store *st, const char *sql, const struct store_val *vals,
                      size_t n, sqlite3_stmt **out, const char *what, struct sbx_err *err);
/* Takes the lock and reads the first row with row into elem: 1, 0 if there is no row
 * (elem untouched, err untouched), or -1 with err. */
int store_get (struct store *st, const char *sql, const struct store_val *vals, size_t n,
               store_row_fn row, void *elem, const char *what, struct sbx_err *err);
/* Collect every row (store_rows_collect; the caller frees the *len elements in *list also
 * on failure). 0 or -1 with err. _locked: with st->lock held; else takes it. */
int store_list_locked (struct store *st, const char *sql, const struct store_val *vals,
                       size_t n, size_t size, store_row_fn row, void **list, size_t *len,
                       const char *what, struct sbx_err *err);
int store_list (struct store *st, const char *sql, const struct store_val *vals, size_t n,
                size_t size, store_row_fn row, void **list, size_t *len, const char *what,
                struct sbx_err *err);
