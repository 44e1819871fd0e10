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
