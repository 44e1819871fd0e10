/* Private to src/store. */
#pragma once

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>

struct store {
  sqlite3 *db;
  pthread_mutex_t lock; /* serializes every use of db and its statements */
};

/* Fill err from the connection's last error; returns -1. */
int store_db_err (struct store *st, struct sbx_err *err, const char *what);
/* Prepare a statement (caller finalizes; cleanup_stmt does it). */
int store_prepare (struct store *st, const char *sql, sqlite3_stmt **out, struct sbx_err *err);
int store_exec_sql (struct store *st, const char *sql, struct sbx_err *err);

void store_finalizep (sqlite3_stmt **s);
#define cleanup_stmt __attribute__ ((cleanup (store_finalizep)))
