/* src/store/run.c, the query helpers, against a real SQLite file: typed binds round-trip,
 * changed-row counts, no-row answers, a constraint violation and a busy database map to
 * sbx_err, and every path gives back the lock and the cached statement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/internal.h"
#include "test_store_fixture.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char create_t[]
    = "CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, n INTEGER, b BLOB, o TEXT)";
static const char ins[] = "INSERT INTO t (k, n, b, o) VALUES (?1, ?2, ?3, ?4)";
static const char get[] = "SELECT k, n, b, o, typeof (o) FROM t WHERE k = ?1";

/* The shared fixture, with a table of every column type. */
static int
setup_t (void **state)
{
  setup (state);
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  if (store_exec_sql (f->st, create_t, &err) < 0)
    fail_msg ("create table: %s", err.msg);
  return 0;
}

/* The lock is free and no cached statement is still handed out. */
static void
assert_released (struct store *st)
{
  assert_int_equal (pthread_mutex_trylock (&st->lock), 0);
  pthread_mutex_unlock (&st->lock);
  for (size_t i = 0; i < st->nstmts; i++)
    assert_int_equal (st->stmts[i].in_use, 0);
}

/* Rows of t whose o is o (every row for NULL). */
static int64_t
count (struct store *st, const char *o)
{
  struct sbx_err err = { 0 };
  const struct store_val v[] = { store_text (o) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_one_locked (st, "SELECT count(*) FROM t WHERE ?1 IS NULL OR o = ?1", v, 1, &s,
                        "count", &err)
      < 0)
    fail_msg ("count: %s", err.msg);
  return sqlite3_column_int64 (s, 0);
}

struct row {
  char k[16];
  int64_t n;
  uint8_t b[4];
  int blen;
  char otype[16];
};

static int
read_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  struct row *r = elem;
  snprintf (r->k, sizeof r->k, "%s", (const char *) sqlite3_column_text (s, 0));
  r->n = sqlite3_column_int64 (s, 1);
  r->blen = sqlite3_column_bytes (s, 2);
  if (r->blen > 0 && r->blen <= (int) sizeof r->b)
    memcpy (r->b, sqlite3_column_blob (s, 2), r->blen);
  snprintf (r->otype, sizeof r->otype, "%s", (const char *) sqlite3_column_text (s, 4));
  return 0;
}

static void
test_binds_round_trip (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  const uint8_t blob[4] = { 0, 1, 0xfe, 0xff };
  const struct store_val a[] = { store_text ("a"), store_int (INT64_MIN), store_blob (blob, 4),
                                 store_text (NULL) };
  assert_int_equal (store_run (f->st, ins, a, STORE_NVALS (a), "insert", &err), 1);
  /* the empty string is NULL only for store_opt_text */
  const struct store_val b[] = { store_text ("b"), store_int (INT64_MAX), store_blob (blob, 0),
                                 store_opt_text ("") };
  const struct store_val c[] = { store_text ("c"), store_int (7), store_blob (blob, 1),
                                 store_text ("") };
  assert_int_equal (store_run (f->st, ins, b, STORE_NVALS (b), "insert", &err), 1);
  assert_int_equal (store_run (f->st, ins, c, STORE_NVALS (c), "insert", &err), 1);

  struct row r = { 0 };
  const struct store_val ka[] = { store_text ("a") };
  assert_int_equal (store_get (f->st, get, ka, 1, read_row, &r, "get", &err), 1);
  assert_string_equal (r.k, "a");
  assert_true (r.n == INT64_MIN);
  assert_int_equal (r.blen, 4);
  assert_memory_equal (r.b, blob, 4);
  assert_string_equal (r.otype, "null");
  const struct store_val kb[] = { store_text ("b") };
  assert_int_equal (store_get (f->st, get, kb, 1, read_row, &r, "get", &err), 1);
  assert_true (r.n == INT64_MAX);
  assert_string_equal (r.otype, "null");
  const struct store_val kc[] = { store_text ("c") };
  assert_int_equal (store_get (f->st, get, kc, 1, read_row, &r, "get", &err), 1);
  assert_string_equal (r.otype, "text");

  struct row *list = NULL;
  size_t len = 0;
  void *rows = NULL;
  assert_int_equal (store_list (f->st, "SELECT k, n, b, o, typeof (o) FROM t ORDER BY k", NULL,
                                0, sizeof *list, read_row, &rows, &len, "list", &err),
                    0);
  list = rows;
  assert_int_equal (len, 3);
  assert_string_equal (list[2].k, "c");
  free (list);
  assert_released (f->st);
}

static void
test_changes_and_no_row (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  for (int i = 0; i < 3; i++)
    {
      char k[8];
      snprintf (k, sizeof k, "k%d", i);
      const struct store_val v[] = { store_text (k), store_int (i) };
      assert_int_equal (store_run (f->st, "INSERT INTO t (k, n) VALUES (?1, ?2)", v, 2, "ins",
                                   &err),
                        1);
    }
  const struct store_val lim[] = { store_int (1) };
  assert_int_equal (store_run (f->st, "UPDATE t SET o = 'x' WHERE n >= ?1", lim, 1, "upd", &err),
                    2);
  assert_int_equal (store_run (f->st, "DELETE FROM t WHERE n > 99", NULL, 0, "del", &err), 0);

  /* no row: 0, the element and err untouched */
  struct row r = { .n = 42 };
  struct sbx_err e2 = { .code = SBX_E_TIMEOUT };
  const struct store_val nope[] = { store_text ("nope") };
  assert_int_equal (store_get (f->st, get, nope, 1, read_row, &r, "get", &e2), 0);
  assert_int_equal (r.n, 42);
  assert_int_equal (e2.code, SBX_E_TIMEOUT);

  assert_int_equal (count (f->st, "x"), 2);
  /* a query that must give a row and gives none */
  pthread_mutex_lock (&f->st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    assert_int_equal (store_one_locked (f->st, get, nope, 1, &s, "one", &err), -1);
    assert_string_equal (err.msg, "one: no row");
  }
  pthread_mutex_unlock (&f->st->lock);
  assert_released (f->st);
}

static void
test_constraint_maps_to_err (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  const struct store_val v[] = { store_text ("dup"), store_int (1) };
  static const char sql[] = "INSERT INTO t (k, n) VALUES (?1, ?2)";
  assert_int_equal (store_run (f->st, sql, v, 2, "insert t", &err), 1);
  pthread_mutex_lock (&f->st->lock);
  assert_int_equal (store_run_locked (f->st, sql, v, 2, "insert t", &err), -1);
  /* what callers map to their own error, still readable with the lock held */
  assert_int_equal (sqlite3_extended_errcode (f->st->db), SQLITE_CONSTRAINT_PRIMARYKEY);
  pthread_mutex_unlock (&f->st->lock);
  assert_int_equal (err.code, SBX_E_INTERNAL);
  assert_non_null (strstr (err.msg, "insert t: "));
  assert_non_null (strstr (err.msg, "UNIQUE constraint failed: t.k"));

  /* NOT NULL from a NULL text */
  const struct store_val nul[] = { store_text (NULL), store_int (1) };
  assert_int_equal (store_run (f->st, sql, nul, 2, "insert null", &err), -1);
  assert_non_null (strstr (err.msg, "NOT NULL constraint failed"));

  /* a value beyond the statement's parameters is refused, not dropped */
  const struct store_val extra[] = { store_text ("x"), store_int (1), store_int (2) };
  assert_int_equal (store_run (f->st, sql, extra, 3, "insert extra", &err), -1);
  assert_int_equal (err.code, SBX_E_INTERNAL);
  assert_non_null (strstr (err.msg, "bind parameter"));

  /* bad SQL: the prepare's error */
  assert_int_equal (store_run (f->st, "INSERT INTO nowhere VALUES (1)", NULL, 0, "x", &err), -1);
  assert_non_null (strstr (err.msg, "no such table"));

  /* the failures left the table as it was and gave everything back */
  assert_int_equal (count (f->st, NULL), 1);
  assert_released (f->st);
}

static void
test_busy_database (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  struct store *other = NULL;
  assert_int_equal (store_open (f->db, &other, &err), 0);
  sqlite3_busy_timeout (other->db, 10); /* not 5 s: the test waits for it */
  assert_int_equal (store_exec_sql (f->st, "BEGIN IMMEDIATE", &err), 0);
  const struct store_val v[] = { store_text ("k"), store_int (1) };
  assert_int_equal (store_run (other, "INSERT INTO t (k, n) VALUES (?1, ?2)", v, 2, "insert",
                               &err),
                    -1);
  assert_int_equal (err.code, SBX_E_INTERNAL);
  assert_non_null (strstr (err.msg, "insert: database is locked"));
  assert_released (other);
  assert_int_equal (store_exec_sql (f->st, "COMMIT", &err), 0);
  /* once the writer is gone the same cached statement runs */
  assert_int_equal (store_run (other, "INSERT INTO t (k, n) VALUES (?1, ?2)", v, 2, "insert",
                               &err),
                    1);
  store_close (other);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_binds_round_trip, setup_t, teardown),
    cmocka_unit_test_setup_teardown (test_changes_and_no_row, setup_t, teardown),
    cmocka_unit_test_setup_teardown (test_constraint_maps_to_err, setup_t, teardown),
    cmocka_unit_test_setup_teardown (test_busy_database, setup_t, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
