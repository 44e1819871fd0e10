/* The TLV messages of frame types 12-27 (proto_msg), EXEC_STARTED's payload, the new
 * EXEC_START tags and ERROR's errno: round trips and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "proto/proto.h"

#include <errno.h>
#include <string.h>

static void
test_round_trip (void **state)
{
  uint8_t data[] = { 0, 1, 2, 0, 255 };
  struct proto_msg m = { .proc_id = 7, .running = 1, .exit_code = -3, .out_start = 1ull << 40,
                         .path = "/a b", .path2 = "", .data = data, .data_len = sizeof data,
                         .kind = PROTO_OP_RENAME, .background = 1 };
  int tags[] = { PROTO_M_PROC_ID, PROTO_M_RUNNING, PROTO_M_EXIT_CODE, PROTO_M_OUT_START,
                 PROTO_M_PATH, PROTO_M_PATH2, PROTO_M_DATA, PROTO_M_KIND, PROTO_M_BACKGROUND };
  for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
    PROTO_SET (&m, tags[i]);
  struct proto_buf b = { 0 };
  assert_int_equal (proto_msg_encode (&m, &b), 0);
  struct proto_msg d;
  struct sbx_err err = { 0 };
  assert_int_equal (proto_msg_decode (b.data, b.len, &d, &err), 0);
  assert_int_equal (d.seen, m.seen);
  assert_int_equal (d.proc_id, 7);
  assert_int_equal (d.exit_code, -3);
  assert_true (d.out_start == 1ull << 40);
  assert_string_equal (d.path, "/a b");
  assert_string_equal (d.path2, "");
  assert_int_equal (d.data_len, sizeof data);
  assert_memory_equal (d.data, data, sizeof data);
  assert_false (PROTO_HAS (&d, PROTO_M_PID));
  assert_int_equal (d.background, 1);
  proto_msg_free (&d);
  proto_buf_free (&b);
}

static void
test_refusals (void **state)
{
  struct proto_msg d;
  struct sbx_err err = { 0 };
  /* wrong width for a u32 */
  const uint8_t w[] = { 0, PROTO_M_PROC_ID, 0, 0, 0, 2, 0, 1 };
  assert_int_equal (proto_msg_decode (w, sizeof w, &d, &err), -1);
  /* repeated */
  const uint8_t r[] = { 0, PROTO_M_EOF, 0, 0, 0, 1, 1, 0, PROTO_M_EOF, 0, 0, 0, 1, 1 };
  assert_int_equal (proto_msg_decode (r, sizeof r, &d, &err), -1);
  /* NUL inside a string */
  const uint8_t n[] = { 0, PROTO_M_PATH, 0, 0, 0, 3, '/', 0, 'x' };
  assert_int_equal (proto_msg_decode (n, sizeof n, &d, &err), -1);
  /* truncated header and value */
  const uint8_t t1[] = { 0, PROTO_M_PATH, 0 };
  assert_int_equal (proto_msg_decode (t1, sizeof t1, &d, &err), -1);
  const uint8_t t2[] = { 0, PROTO_M_PATH, 0, 0, 0, 9, '/' };
  assert_int_equal (proto_msg_decode (t2, sizeof t2, &d, &err), -1);
  /* unknown tags are skipped; NUL is fine in DATA */
  const uint8_t u[] = { 0x40, 0, 0, 0, 0, 1, 9, 0, PROTO_M_DATA, 0, 0, 0, 2, 0, 0 };
  assert_int_equal (proto_msg_decode (u, sizeof u, &d, &err), 0);
  assert_int_equal (d.data_len, 2);
  proto_msg_free (&d);
  /* too large to encode */
  static uint8_t big[PROTO_MAX_PAYLOAD];
  struct proto_msg m = { .data = big, .data_len = sizeof big };
  PROTO_SET (&m, PROTO_M_DATA);
  struct proto_buf b = { 0 };
  assert_int_equal (proto_msg_encode (&m, &b), -1);
  assert_int_equal (errno, EMSGSIZE);
  assert_int_equal (b.len, 0);
  proto_buf_free (&b);
}

static void
test_started_and_exec_tags (void **state)
{
  struct proto_buf b = { 0 };
  struct sbx_err err = { 0 };
  assert_int_equal (proto_started_encode (&b, 42, 9, 1), 0);
  uint32_t pid, proc;
  int ex;
  assert_int_equal (proto_started_decode (b.data, b.len, &pid, &proc, &ex, &err), 0);
  assert_int_equal (pid, 42);
  assert_int_equal (proc, 9);
  assert_int_equal (ex, 1);
  /* an older agent's 4-byte payload */
  assert_int_equal (proto_started_decode (b.data, 4, &pid, &proc, &ex, &err), 0);
  assert_int_equal (pid, 42);
  assert_int_equal (proc, 0);
  assert_int_equal (proto_started_decode (b.data, 3, &pid, &proc, &ex, &err), -1);
  proto_buf_free (&b);

  const char *argv[] = { "sh", NULL };
  struct proto_exec_req req = { .argv = (char **) argv, .argc = 1, .background = 1, .pty = 1,
                                .rows = 50, .cols = 132, .key = "job-1" };
  assert_int_equal (proto_exec_req_encode (&req, &b), 0);
  struct proto_exec_req d;
  assert_int_equal (proto_exec_req_decode (b.data, b.len, &d, &err), 0);
  assert_int_equal (d.background, 1);
  assert_int_equal (d.pty, 1);
  assert_int_equal (d.rows, 50);
  assert_int_equal (d.cols, 132);
  assert_string_equal (d.key, "job-1");
  proto_exec_req_free (&d);
  proto_buf_free (&b);
  char key[200];
  memset (key, 'k', sizeof key - 1);
  key[sizeof key - 1] = '\0';
  req.key = key; /* longer than 128 bytes: refused by the decoder */
  assert_int_equal (proto_exec_req_encode (&req, &b), 0);
  assert_int_equal (proto_exec_req_decode (b.data, b.len, &d, &err), -1);
  proto_buf_free (&b);
}

static void
test_error_errno (void **state)
{
  struct proto_buf b = { 0 };
  struct sbx_err err = { 0 };
  assert_int_equal (proto_error_encode_errno (&b, SBX_E_INVALID, ELOOP, "no"), 0);
  uint32_t code;
  int e;
  char msg[16];
  assert_int_equal (proto_error_decode_errno (b.data, b.len, &code, &e, msg, sizeof msg, &err), 0);
  assert_int_equal (code, SBX_E_INVALID);
  assert_int_equal (e, ELOOP);
  assert_string_equal (msg, "no");
  /* the old decoder still reads it */
  assert_int_equal (proto_error_decode (b.data, b.len, &code, msg, sizeof msg, &err), 0);
  proto_buf_free (&b);
  assert_int_equal (proto_error_encode (&b, SBX_E_CAPACITY, "x"), 0);
  assert_int_equal (proto_error_decode_errno (b.data, b.len, &code, &e, msg, sizeof msg, &err), 0);
  assert_int_equal (e, 0);
  proto_buf_free (&b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_round_trip),
    cmocka_unit_test (test_refusals),
    cmocka_unit_test (test_started_and_exec_tags),
    cmocka_unit_test (test_error_errno),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
