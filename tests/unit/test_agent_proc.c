/* sbx-init's process table, outside any sandbox: background processes outlive their
 * connection; output is read from offsets without gap or duplicate; exec keys are
 * idempotent; stdin EOF; signals; wait deadlines; list; pty output complete. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "agent_harness.h"

/* PROC_OUTPUT (not following) from offsets; appends the stdout bytes to out. */
static void
read_output (struct client *c, uint32_t proc, uint64_t off, uint64_t wait_ms, uint64_t max,
             struct proto_buf *out, struct proto_msg *info)
{
  struct proto_msg m = { .proc_id = proc, .out_start = off, .err_start = 0, .wait_ms = wait_ms,
                         .max_bytes = max };
  PROTO_SET (&m, PROTO_M_PROC_ID);
  PROTO_SET (&m, PROTO_M_OUT_START);
  PROTO_SET (&m, PROTO_M_WAIT_MS);
  if (max)
    PROTO_SET (&m, PROTO_M_MAX_BYTES);
  send_msg (c, PROTO_PROC_OUTPUT, 7, &m);
  for (;;)
    {
      struct proto_frame f;
      next (c, &f);
      assert_int_equal (f.id, 7);
      if (f.type == PROTO_EXEC_STDOUT)
        assert_int_equal (proto_buf_append (out, f.payload, f.len), 0);
      else if (f.type == PROTO_EXEC_STDERR)
        continue;
      else
        {
          struct sbx_err err = { 0 };
          assert_int_equal (f.type, PROTO_PROC_INFO);
          assert_int_equal (proto_msg_decode (f.payload, f.len, info, &err), 0);
          return;
        }
    }
}

static void
wait_proc (struct client *c, uint32_t proc, uint64_t wait_ms, struct proto_msg *info)
{
  struct proto_msg m = { .proc_id = proc, .wait_ms = wait_ms };
  PROTO_SET (&m, PROTO_M_PROC_ID);
  PROTO_SET (&m, PROTO_M_WAIT_MS);
  send_msg (c, PROTO_PROC_WAIT, 8, &m);
  expect_msg (c, PROTO_PROC_INFO, info);
}

static void
test_background_outlives_connection (void **state)
{
  struct client a, b;
  client_open (&a);
  /* 200000 numbered lines, more than the agent and pipe buffers hold at once. */
  uint32_t proc = start (&a, 1, (const char *const[]){ "seq", "1", "200000", NULL }, true,
                         false, NULL, PROTO_STDIN_NULL, NULL);
  client_close (&a); /* nothing is killed */
  client_open (&b);
  struct proto_buf out = { 0 };
  struct proto_msg info;
  uint64_t off = 0;
  for (;;)
    {
      read_output (&b, proc, off, 5000, 100000, &out, &info);
      assert_int_equal (info.out_start, off); /* nothing dropped: the ring holds 8 MiB */
      assert_int_equal (info.out_end, out.len);
      off = info.out_end;
      bool done = !info.running && info.out_end == info.out_total;
      int code = info.exit_code;
      proto_msg_free (&info);
      if (done)
        {
          assert_int_equal (code, 0);
          break;
        }
    }
  /* exactly seq's output: no gap, no duplicate */
  FILE *p = popen ("seq 1 200000", "r");
  struct proto_buf want = { 0 };
  char buf[65536];
  size_t n;
  while ((n = fread (buf, 1, sizeof buf, p)) > 0)
    proto_buf_append (&want, buf, n);
  pclose (p);
  assert_int_equal (out.len, want.len);
  assert_memory_equal (out.data, want.data, want.len);
  proto_buf_free (&out);
  proto_buf_free (&want);
  client_close (&b);
}

static void
test_follow_from_offset (void **state)
{
  struct client c;
  client_open (&c);
  uint32_t proc = start (&c, 1, (const char *const[]){ "sh", "-c", "echo 0123456789; sleep 0.2; echo abc", NULL },
                         true, false, NULL, PROTO_STDIN_NULL, NULL);
  /* the first line is there (an offset beyond what was written counts as the end) */
  struct proto_buf first = { 0 };
  struct proto_msg fi;
  read_output (&c, proc, 0, 5000, 0, &first, &fi);
  assert_true (first.len >= 5);
  proto_buf_free (&first);
  proto_msg_free (&fi);
  struct proto_msg m = { .proc_id = proc, .out_start = 5, .follow = 1 };
  PROTO_SET (&m, PROTO_M_PROC_ID);
  PROTO_SET (&m, PROTO_M_OUT_START);
  PROTO_SET (&m, PROTO_M_FOLLOW);
  send_msg (&c, PROTO_PROC_OUTPUT, 2, &m);
  struct proto_msg info;
  expect_msg (&c, PROTO_PROC_INFO, &info);
  assert_int_equal (info.out_start, 5);
  proto_msg_free (&info);
  struct proto_buf out = { 0 };
  for (;;)
    {
      struct proto_frame f;
      next (&c, &f);
      if (f.type == PROTO_EXEC_STDOUT)
        proto_buf_append (&out, f.payload, f.len);
      else
        {
          assert_int_equal (f.type, PROTO_EXEC_EXIT);
          break;
        }
    }
  assert_int_equal (out.len, 10);
  assert_memory_equal (out.data, "56789\nabc\n", 10);
  proto_buf_free (&out);
  client_close (&c);
}

static void
test_exec_key_runs_once (void **state)
{
  struct client c;
  client_open (&c);
  char cmd[256];
  snprintf (cmd, sizeof cmd, "echo x >> %s/runs", dir);
  int existing = -1;
  uint32_t p1 = start (&c, 1, (const char *const[]){ "sh", "-c", cmd, NULL }, true, false, "k1",
                       PROTO_STDIN_NULL, &existing);
  assert_int_equal (existing, 0);
  struct proto_msg info;
  wait_proc (&c, p1, 10000, &info);
  assert_false (info.running);
  proto_msg_free (&info);
  uint32_t p2 = start (&c, 2, (const char *const[]){ "sh", "-c", cmd, NULL }, true, false, "k1",
                       PROTO_STDIN_NULL, &existing);
  assert_int_equal (existing, 1);
  assert_int_equal (p1, p2);
  char path[128], buf[64];
  snprintf (path, sizeof path, "%s/runs", dir);
  assert_int_equal (sbx_read_file (path, buf, sizeof buf), 2);
  assert_string_equal (buf, "x\n");
  client_close (&c);
}

static void
test_stdin_eof_and_signal (void **state)
{
  struct client c;
  client_open (&c);
  uint32_t proc = start (&c, 1, (const char *const[]){ "wc", "-c", NULL }, true, false, NULL,
                         PROTO_STDIN_PIPE, NULL);
  static uint8_t blob[300000];
  memset (blob, 'z', sizeof blob);
  struct proto_msg m = { .proc_id = proc, .data = blob, .data_len = sizeof blob };
  PROTO_SET (&m, PROTO_M_PROC_ID);
  PROTO_SET (&m, PROTO_M_DATA);
  send_msg (&c, PROTO_PROC_STDIN, 3, &m);
  struct proto_msg info;
  expect_msg (&c, PROTO_PROC_INFO, &info);
  assert_true (info.running);
  proto_msg_free (&info);
  m.data_len = 0;
  m.eof = 1;
  PROTO_SET (&m, PROTO_M_EOF);
  send_msg (&c, PROTO_PROC_STDIN, 4, &m);
  expect_msg (&c, PROTO_PROC_INFO, &info);
  proto_msg_free (&info);
  wait_proc (&c, proc, 10000, &info);
  assert_false (info.running);
  assert_int_equal (info.exit_code, 0);
  proto_msg_free (&info);
  struct proto_buf out = { 0 };
  read_output (&c, proc, 0, 0, 0, &out, &info);
  proto_msg_free (&info);
  assert_int_equal (out.len, 7);
  assert_memory_equal (out.data, "300000\n", 7);
  proto_buf_free (&out);
  /* stdin after EOF: EPIPE */
  send_msg (&c, PROTO_PROC_STDIN, 5, &m);
  assert_int_equal (expect_error (&c), EPIPE);

  uint32_t sl = start (&c, 6, (const char *const[]){ "sleep", "60", NULL }, true, false, NULL,
                       PROTO_STDIN_NULL, NULL);
  wait_proc (&c, sl, 100, &info); /* deadline: still running */
  assert_true (info.running);
  assert_false (PROTO_HAS (&info, PROTO_M_EXIT_CODE));
  proto_msg_free (&info);
  struct proto_msg s = { .proc_id = sl, .signal = SIGTERM };
  PROTO_SET (&s, PROTO_M_PROC_ID);
  PROTO_SET (&s, PROTO_M_SIGNAL);
  send_msg (&c, PROTO_PROC_SIGNAL, 7, &s);
  expect_msg (&c, PROTO_PROC_INFO, &info);
  proto_msg_free (&info);
  wait_proc (&c, sl, 10000, &info);
  assert_int_equal (info.exit_code, 128 + SIGTERM);
  assert_int_equal (info.signal, SIGTERM);
  proto_msg_free (&info);
  /* unknown process */
  s.proc_id = 999999;
  send_msg (&c, PROTO_PROC_SIGNAL, 8, &s);
  assert_int_equal (expect_error (&c), ESRCH);
  client_close (&c);
}

static void
test_list (void **state)
{
  struct client c;
  client_open (&c);
  uint32_t proc = start (&c, 1, (const char *const[]){ "sleep", "30", NULL }, true, false,
                         "listed", PROTO_STDIN_NULL, NULL);
  assert_int_equal (proto_frame_write (c.fd, PROTO_PROC_LIST, 2, NULL, 0), 0);
  bool found = false;
  for (;;)
    {
      struct proto_frame f;
      next (&c, &f);
      if (f.type == PROTO_DONE)
        break;
      struct proto_msg info;
      struct sbx_err err = { 0 };
      assert_int_equal (f.type, PROTO_PROC_INFO);
      assert_int_equal (proto_msg_decode (f.payload, f.len, &info, &err), 0);
      if (info.proc_id == proc)
        {
          found = true;
          assert_string_equal (info.key, "listed");
          assert_string_equal (info.command, "sleep 30");
          assert_true (info.running && info.background);
        }
      proto_msg_free (&info);
    }
  assert_true (found);
  struct proto_msg s = { .proc_id = proc, .signal = SIGKILL };
  PROTO_SET (&s, PROTO_M_PROC_ID);
  PROTO_SET (&s, PROTO_M_SIGNAL);
  send_msg (&c, PROTO_PROC_SIGNAL, 3, &s);
  struct proto_msg info;
  expect_msg (&c, PROTO_PROC_INFO, &info);
  proto_msg_free (&info);
  client_close (&c);
}

/* Under a pty, everything written before exit arrives: read until the hang-up. */
static void
test_pty_output_complete (void **state)
{
  struct client c;
  client_open (&c);
  /* 3 MB of lines, then exit at once. */
  start (&c, 1, (const char *const[]){ "sh", "-c", "yes 0123456789abcdef | head -c 3000000", NULL },
         false, true, NULL, PROTO_STDIN_PIPE, NULL);
  size_t got = 0, lf = 0;
  for (;;)
    {
      struct proto_frame f;
      next (&c, &f);
      if (f.type == PROTO_EXEC_STDOUT)
        {
          got += f.len;
          for (uint32_t i = 0; i < f.len; i++)
            lf += f.payload[i] == '\r';
          continue;
        }
      assert_int_equal (f.type, PROTO_EXEC_EXIT);
      break;
    }
  /* the pty turns each \n into \r\n */
  assert_int_equal (got - lf, 3000000);
  client_close (&c);
}

/* Nobody reads a background process: its ring keeps the newest 8 MiB per stream and says
 * where they begin; a read from 0 gets them, with the gap visible in OUT_START. */
static void
test_ring_keeps_newest (void **state)
{
  struct client c;
  client_open (&c);
  uint32_t proc = start (&c, 1, (const char *const[]){ "head", "-c", "20000000", "/dev/zero", NULL },
                         true, false, NULL, PROTO_STDIN_NULL, NULL);
  struct proto_msg info;
  wait_proc (&c, proc, 60000, &info);
  assert_false (info.running);
  assert_int_equal (info.out_total, 20000000);
  assert_int_equal (info.out_earliest, 20000000 - (8u << 20));
  proto_msg_free (&info);
  struct proto_buf out = { 0 };
  read_output (&c, proc, 0, 0, 8u << 20, &out, &info);
  assert_int_equal (info.out_start, 20000000 - (8u << 20));
  assert_int_equal (info.out_end, 20000000);
  assert_int_equal (out.len, 8u << 20);
  proto_msg_free (&info);
  proto_buf_free (&out);
  client_close (&c);
}

/* A foreground exec whose connection closes is killed: it leaves the table (it would
 * otherwise sleep for an hour). */
static void
test_foreground_killed_on_close (void **state)
{
  struct client c, d;
  client_open (&c);
  uint32_t proc = start (&c, 1, (const char *const[]){ "sleep", "3600", NULL }, false, false,
                         NULL, PROTO_STDIN_NULL, NULL);
  client_close (&c);
  client_open (&d);
  for (uint32_t id = 10;; id++)
    {
      struct proto_msg m = { .proc_id = proc };
      PROTO_SET (&m, PROTO_M_PROC_ID);
      send_msg (&d, PROTO_PROC_WAIT, id, &m);
      struct proto_frame f;
      next (&d, &f);
      if (f.type == PROTO_ERROR)
        break; /* ESRCH: killed, reaped and released */
      assert_int_equal (f.type, PROTO_PROC_INFO);
      if (id > 10 + 3000)
        fail_msg ("the foreground exec was not killed when its connection closed");
      usleep (20000);
    }
  client_close (&d);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_background_outlives_connection),
    cmocka_unit_test (test_follow_from_offset),
    cmocka_unit_test (test_exec_key_runs_once),
    cmocka_unit_test (test_stdin_eof_and_signal),
    cmocka_unit_test (test_list),
    cmocka_unit_test (test_pty_output_complete),
    cmocka_unit_test (test_ring_keeps_newest),
    cmocka_unit_test (test_foreground_killed_on_close),
  };
  return cmocka_run_group_tests (tests, agent_setup, agent_teardown);
}
