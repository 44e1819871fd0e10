/* src/store against real SQLite files in a temp dir: insert, get, terminate, list, exec
 * records, reopen, schema version, exact id matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/store.h"
#include "test_store_fixture.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct store *
open_ok (struct fixture *f)
{
  struct store *st = NULL;
  struct sbx_err err = { 0 };
  int r = store_open (f->db, &st, &err);
  if (r < 0)
    fail_msg ("store_open: %s", err.msg);
  return st;
}

static void
make_sb (struct store_sandbox *s, const char *id, int64_t created)
{
  memset (s, 0, sizeof *s);
  snprintf (s->id, sizeof s->id, "%s", id);
  snprintf (s->image, sizeof s->image, "python:3.11");
  s->status = STORE_RUNNING;
  s->created_at_ms = created;
  s->expires_at_ms = created + 300000;
  s->timeout_s = 300;
  s->cpu_millis = 1000;
  s->memory_mb = 1024;
}

static void
test_roundtrip_survives_reopen (void **state)
{
  struct fixture *f = *state;
  struct store *st = open_ok (f);
  assert_int_equal (store_schema_version (st), STORE_SCHEMA_VERSION);
  struct store_sandbox s;
  make_sb (&s, "sb_0123456789abcdef0123", 1700000000123);
  s.env_json = strdup ("{\"A\":\"1\"}");
  s.workdir = strdup ("/work");
  struct sbx_err err = { 0 };
  assert_int_equal (store_sandbox_insert (st, &s, &err), 0);
  store_sandbox_clear (&s);
  store_close (st);

  st = open_ok (f);
  struct store_sandbox g;
  assert_int_equal (store_sandbox_get (st, "sb_0123456789abcdef0123", &g, &err), 0);
  assert_string_equal (g.id, "sb_0123456789abcdef0123");
  assert_int_equal (g.status, STORE_RUNNING);
  assert_string_equal (g.image, "python:3.11");
  assert_int_equal (g.created_at_ms, 1700000000123);
  assert_int_equal (g.expires_at_ms, 1700000300123);
  assert_int_equal (g.timeout_s, 300);
  assert_int_equal (g.cpu_millis, 1000);
  assert_int_equal (g.memory_mb, 1024);
  assert_string_equal (g.env_json, "{\"A\":\"1\"}");
  assert_string_equal (g.workdir, "/work");
  assert_string_equal (g.reason, "");
  store_sandbox_clear (&g);
  store_close (st);
}

static void
test_exact_id_match (void **state)
{
  struct fixture *f = *state;
  struct store *st = open_ok (f);
  struct store_sandbox s;
  make_sb (&s, "sb_aaaa", 1);
  struct sbx_err err = { 0 };
  assert_int_equal (store_sandbox_insert (st, &s, &err), 0);
  struct store_sandbox g;
  /* A prefix, a LIKE pattern, and a longer id must all miss. */
  const char *misses[] = { "sb_aaa", "sb_aaaa%", "sb_aaa_", "sb_aaaaa", "SB_AAAA", "" };
  for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++)
    {
      sbx_err_clear (&err);
      assert_int_equal (store_sandbox_get (st, misses[i], &g, &err), -1);
      assert_int_equal (err.code, SBX_E_NOT_FOUND);
    }
  /* Duplicate ids are refused. */
  assert_int_equal (store_sandbox_insert (st, &s, &err), -1);
  store_close (st);
}

static void
test_terminate_keeps_first_reason (void **state)
{
  struct fixture *f = *state;
  struct store *st = open_ok (f);
  struct store_sandbox s;
  make_sb (&s, "sb_bbbb", 5);
  struct sbx_err err = { 0 };
  assert_int_equal (store_sandbox_insert (st, &s, &err), 0);
  assert_int_equal (store_sandbox_terminate (st, "sb_bbbb", 1000, "timeout", &err), 1);
  assert_int_equal (store_sandbox_terminate (st, "sb_bbbb", 2000, "terminated by caller", &err),
                    0);
  assert_int_equal (store_sandbox_terminate (st, "sb_nope", 2000, "x", &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  store_close (st);

  st = open_ok (f);
  struct store_sandbox g;
  assert_int_equal (store_sandbox_get (st, "sb_bbbb", &g, &err), 0);
  assert_int_equal (g.status, STORE_TERMINATED);
  assert_int_equal (g.terminated_at_ms, 1000);
  assert_string_equal (g.reason, "timeout");
  store_sandbox_clear (&g);
  store_close (st);
}

static void
test_list_filters_by_status (void **state)
{
  struct fixture *f = *state;
  struct store *st = open_ok (f);
  struct sbx_err err = { 0 };
  const char *ids[] = { "sb_c1", "sb_c2", "sb_c3" };
  for (int i = 0; i < 3; i++)
    {
      struct store_sandbox s;
      make_sb (&s, ids[i], 10 + i);
      assert_int_equal (store_sandbox_insert (st, &s, &err), 0);
    }
  assert_int_equal (store_sandbox_terminate (st, "sb_c2", 50, "sandbox crashed", &err), 1);
  struct store_sandbox *l = NULL;
  size_t n = 0;
  assert_int_equal (store_sandbox_list (st, -1, &l, &n, &err), 0);
  assert_int_equal (n, 3);
  assert_string_equal (l[0].id, "sb_c1");
  assert_string_equal (l[2].id, "sb_c3");
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_list (st, STORE_RUNNING, &l, &n, &err), 0);
  assert_int_equal (n, 2);
  assert_string_equal (l[1].id, "sb_c3");
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_list (st, STORE_TERMINATED, &l, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_string_equal (l[0].reason, "sandbox crashed");
  store_sandbox_list_free (l, n);
  /* pages: a limit, a cursor of any status, an unknown cursor gives nothing */
  assert_int_equal (store_sandbox_page (st, -1, NULL, NULL, 2, &l, &n, &err), 0);
  assert_int_equal (n, 2);
  assert_string_equal (l[1].id, "sb_c2");
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_page (st, -1, NULL, "sb_c2", 2, &l, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_string_equal (l[0].id, "sb_c3");
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_page (st, STORE_RUNNING, NULL, "sb_c2", -1, &l, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_string_equal (l[0].id, "sb_c3");
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_page (st, -1, NULL, "sb_nope", -1, &l, &n, &err), 0);
  assert_int_equal (n, 0);
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_page (st, -1, "acct:other", "sb_c1", -1, &l, &n, &err), 0);
  assert_int_equal (n, 0);
  store_sandbox_list_free (l, n);
  store_close (st);
}

static void
test_exec_records_count (void **state)
{
  struct fixture *f = *state;
  struct store *st = open_ok (f);
  struct sbx_err err = { 0 };
  struct store_sandbox s;
  make_sb (&s, "sb_dddd", 1);
  assert_int_equal (store_sandbox_insert (st, &s, &err), 0);
  struct store_exec e = {
    .sandbox_id = "sb_dddd", .argv_json = "[\"/bin/sh\",\"-c\",\"echo hi\"]",
    .has_exit_code = 1, .exit_code = 0, .started_at_ms = 2, .duration_ms = 3, .stdout_bytes = 3,
  };
  assert_int_equal (store_exec_record (st, &e, &err), 0);
  e.has_exit_code = 0;
  e.error = "sandbox terminated";
  assert_int_equal (store_exec_record (st, &e, &err), 0);
  /* Deleting a sandbox takes its exec records along; deleting twice is fine. */
  struct store_sandbox t;
  make_sb (&t, "sb_eeee", 1);
  assert_int_equal (store_sandbox_insert (st, &t, &err), 0);
  e.sandbox_id = "sb_eeee";
  assert_int_equal (store_exec_record (st, &e, &err), 0);
  assert_int_equal (store_sandbox_delete (st, "sb_eeee", &err), 0);
  assert_int_equal (store_sandbox_delete (st, "sb_eeee", &err), 0);
  int64_t gone = -1;
  assert_int_equal (store_exec_count (st, "sb_eeee", &gone, &err), 0);
  assert_int_equal (gone, 0);
  assert_int_equal (store_sandbox_get (st, "sb_eeee", &t, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  /* Foreign key: an exec of an unknown sandbox is refused and counts nothing. */
  e.sandbox_id = "sb_unknown";
  assert_int_equal (store_exec_record (st, &e, &err), -1);
  store_close (st);

  st = open_ok (f);
  int64_t n = -1;
  assert_int_equal (store_exec_count (st, "sb_dddd", &n, &err), 0);
  assert_int_equal (n, 2);
  assert_int_equal (store_exec_count (st, "sb_unknown", &n, &err), 0);
  assert_int_equal (n, 0);
  struct store_sandbox g;
  assert_int_equal (store_sandbox_get (st, "sb_dddd", &g, &err), 0);
  assert_int_equal (g.commands_executed, 2);
  store_sandbox_clear (&g);
  store_close (st);
}

static void
test_refuses_newer_schema (void **state)
{
  struct fixture *f = *state;
  struct store *st = open_ok (f);
  store_close (st);
  /* Simulate a database written by a future sbxd. */
  char cmd[PATH_MAX + 64];
  snprintf (cmd, sizeof cmd, "sqlite3 '%s' 'PRAGMA user_version = 99' 2>/dev/null", f->db);
  if (system (cmd) != 0)
    skip ();
  struct sbx_err err = { 0 };
  st = NULL;
  assert_int_equal (store_open (f->db, &st, &err), -1);
  assert_null (st);
  assert_non_null (strstr (err.msg, "newer"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_roundtrip_survives_reopen, setup_dir, teardown),
    cmocka_unit_test_setup_teardown (test_exact_id_match, setup_dir, teardown),
    cmocka_unit_test_setup_teardown (test_terminate_keeps_first_reason, setup_dir, teardown),
    cmocka_unit_test_setup_teardown (test_list_filters_by_status, setup_dir, teardown),
    cmocka_unit_test_setup_teardown (test_exec_records_count, setup_dir, teardown),
    cmocka_unit_test_setup_teardown (test_refuses_newer_schema, setup_dir, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
