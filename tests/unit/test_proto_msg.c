/* TLV payloads: round trips of every message and every malformed case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "proto/proto.h"

#include <errno.h>
#include <string.h>

static void
put_tlv (struct proto_buf *b, uint16_t tag, const void *v, uint32_t len)
{
  uint8_t h[6] = { (uint8_t) (tag >> 8), (uint8_t) tag,        (uint8_t) (len >> 24),
                   (uint8_t) (len >> 16), (uint8_t) (len >> 8), (uint8_t) len };
  assert_int_equal (proto_buf_append (b, h, 6), 0);
  assert_int_equal (proto_buf_append (b, v, len), 0);
}

static void
test_hello (void **state)
{
  struct proto_buf b = { 0 };
  assert_int_equal (proto_hello_encode (&b, "sbx-init"), 0);
  uint32_t v = 0;
  struct sbx_err err;
  assert_int_equal (proto_hello_decode (b.data, b.len, &v, &err), 0);
  assert_int_equal (v, PROTO_VERSION);
  /* no version */
  struct proto_buf n = { 0 };
  put_tlv (&n, PROTO_TAG_HELLO_NAME, "x", 1);
  assert_int_equal (proto_hello_decode (n.data, n.len, &v, &err), -1);
  /* version of the wrong width */
  put_tlv (&n, PROTO_TAG_HELLO_VERSION, "\0\0\1", 3);
  assert_int_equal (proto_hello_decode (n.data, n.len, &v, &err), -1);
  /* NUL in the name */
  struct proto_buf z = { 0 };
  put_tlv (&z, PROTO_TAG_HELLO_VERSION, "\0\0\0\1", 4);
  put_tlv (&z, PROTO_TAG_HELLO_NAME, "a\0b", 3);
  assert_int_equal (proto_hello_decode (z.data, z.len, &v, &err), -1);
  proto_buf_free (&b);
  proto_buf_free (&n);
  proto_buf_free (&z);
}

static void
test_exec_req_round_trip (void **state)
{
  char *argv[] = { "sh", "-c", "echo \"$X\"", "", NULL };
  char *env[] = { "X=1", "PATH=/bin", NULL };
  struct proto_exec_req req = { .argv = argv, .argc = 4, .env = env, .envc = 2, .cwd = "/tmp",
                                .stdin_mode = PROTO_STDIN_PIPE, .timeout_ms = 1234567890123ull,
                                .max_output = UINT64_MAX };
  struct proto_buf b = { 0 };
  assert_int_equal (proto_exec_req_encode (&req, &b), 0);
  /* an unknown tag in the middle is skipped */
  put_tlv (&b, 999, "whatever", 8);
  struct proto_exec_req got;
  struct sbx_err err;
  assert_int_equal (proto_exec_req_decode (b.data, b.len, &got, &err), 0);
  assert_int_equal (got.argc, 4);
  for (size_t i = 0; i < 4; i++)
    assert_string_equal (got.argv[i], argv[i]);
  assert_null (got.argv[4]);
  assert_int_equal (got.envc, 2);
  assert_string_equal (got.env[0], "X=1");
  assert_string_equal (got.env[1], "PATH=/bin");
  assert_null (got.env[2]);
  assert_string_equal (got.cwd, "/tmp");
  assert_int_equal (got.stdin_mode, PROTO_STDIN_PIPE);
  assert_true (got.timeout_ms == 1234567890123ull);
  assert_true (got.max_output == UINT64_MAX);
  proto_exec_req_free (&got);
  proto_exec_req_free (&got); /* idempotent */

  /* minimal: argv only; no cwd, defaults zero, env empty but NULL-terminated */
  char *one[] = { "true", NULL };
  struct proto_exec_req min = { .argv = one, .argc = 1 };
  b.len = 0;
  assert_int_equal (proto_exec_req_encode (&min, &b), 0);
  assert_int_equal (proto_exec_req_decode (b.data, b.len, &got, &err), 0);
  assert_null (got.cwd);
  assert_int_equal (got.envc, 0);
  assert_non_null (got.env);
  assert_null (got.env[0]);
  assert_int_equal (got.timeout_ms, 0);
  proto_exec_req_free (&got);
  proto_buf_free (&b);
}

static void
test_exec_req_encode_refuses (void **state)
{
  struct proto_buf b = { 0 };
  struct proto_exec_req none = { .argv = (char *[]){ NULL }, .argc = 0 };
  assert_int_equal (proto_exec_req_encode (&none, &b), -1);
  assert_int_equal (errno, EINVAL);
  /* too large for one frame */
  static char big[600 * 1024];
  memset (big, 'a', sizeof big - 1);
  char *argv[] = { big, big, NULL };
  struct proto_exec_req large = { .argv = argv, .argc = 2 };
  assert_int_equal (proto_exec_req_encode (&large, &b), -1);
  assert_int_equal (errno, EMSGSIZE);
  assert_int_equal (b.len, 0); /* left as it was */
  proto_buf_free (&b);
}

static int
decode_req (const struct proto_buf *b)
{
  struct proto_exec_req got;
  struct sbx_err err;
  int rc = proto_exec_req_decode (b->data, b->len, &got, &err);
  if (rc == 0)
    proto_exec_req_free (&got);
  else
    assert_int_equal (err.code, SBX_E_PROTO);
  return rc;
}

static void
test_exec_req_malformed (void **state)
{
  struct proto_buf b = { 0 };
  /* argc == 0 */
  put_tlv (&b, PROTO_TAG_EXEC_ENV, "A=1", 3);
  assert_int_equal (decode_req (&b), -1);
  /* empty payload */
  b.len = 0;
  assert_int_equal (decode_req (&b), -1);
  /* NUL inside argv, env, cwd */
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "l\0s", 3);
  assert_int_equal (decode_req (&b), -1);
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  put_tlv (&b, PROTO_TAG_EXEC_ENV, "A=\0", 3);
  assert_int_equal (decode_req (&b), -1);
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  put_tlv (&b, PROTO_TAG_EXEC_CWD, "/t\0", 3);
  assert_int_equal (decode_req (&b), -1);
  /* repeated cwd */
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  put_tlv (&b, PROTO_TAG_EXEC_CWD, "/a", 2);
  put_tlv (&b, PROTO_TAG_EXEC_CWD, "/b", 2);
  assert_int_equal (decode_req (&b), -1);
  /* integers of the wrong width */
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  put_tlv (&b, PROTO_TAG_EXEC_TIMEOUT_MS, "\0\0\0\1", 4);
  assert_int_equal (decode_req (&b), -1);
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  put_tlv (&b, PROTO_TAG_EXEC_STDIN_MODE, "\0\0\0\0\0\0\0\1", 8);
  assert_int_equal (decode_req (&b), -1);
  /* truncated TLV header, and a value running past the payload */
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  assert_int_equal (proto_buf_append (&b, "\0\1\0", 3), 0);
  assert_int_equal (decode_req (&b), -1);
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "ls", 2);
  b.data[5] = 3; /* claims 3 bytes, 2 present */
  assert_int_equal (decode_req (&b), -1);
  b.data[2] = 0xff; /* claims ~4 GiB */
  assert_int_equal (decode_req (&b), -1);
  proto_buf_free (&b);
}

static void
test_exec_req_list_limits (void **state)
{
  struct proto_buf b = { 0 };
  for (int i = 0; i < 65536; i++)
    put_tlv (&b, PROTO_TAG_EXEC_ARGV, "", 0);
  assert_int_equal (decode_req (&b), 0); /* exactly the limit */
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "", 0);
  assert_int_equal (decode_req (&b), -1);
  b.len = 0;
  put_tlv (&b, PROTO_TAG_EXEC_ARGV, "x", 1);
  for (int i = 0; i < 65537; i++)
    put_tlv (&b, PROTO_TAG_EXEC_ENV, "", 0);
  assert_int_equal (decode_req (&b), -1);
  proto_buf_free (&b);
}

/* Every prefix of a valid payload decodes or fails cleanly (ASan watches the bounds). */
static void
test_exec_req_every_prefix (void **state)
{
  char *argv[] = { "a", "bb", NULL };
  char *env[] = { "K=V", NULL };
  struct proto_exec_req req = { .argv = argv, .argc = 2, .env = env, .envc = 1, .cwd = "/",
                                .timeout_ms = 5 };
  struct proto_buf b = { 0 };
  assert_int_equal (proto_exec_req_encode (&req, &b), 0);
  int ok = 0;
  for (size_t n = 0; n <= b.len; n++)
    {
      /* a heap copy of exactly n bytes, so any overread is caught */
      uint8_t *p = malloc (n ? n : 1);
      memcpy (p, b.data, n);
      struct proto_exec_req got;
      struct sbx_err err;
      if (proto_exec_req_decode (p, n, &got, &err) == 0)
        {
          ok++;
          proto_exec_req_free (&got);
        }
      free (p);
    }
  assert_true (ok >= 1); /* at least the whole payload */
  proto_buf_free (&b);
}

static void
test_exec_exit_round_trip (void **state)
{
  struct proto_exec_exit ex = { .exit_code = -1, .signal = 9, .duration_us = 123456789,
                                .stdout_bytes = 52428800, .stderr_bytes = 7,
                                .stdout_truncated = 1, .stderr_truncated = 0, .timed_out = 1,
                                .cpu_us = 42, .max_rss_kb = 1024 };
  struct proto_buf b = { 0 };
  assert_int_equal (proto_exec_exit_encode (&ex, &b), 0);
  struct proto_exec_exit got;
  struct sbx_err err;
  assert_int_equal (proto_exec_exit_decode (b.data, b.len, &got, &err), 0);
  assert_int_equal (got.exit_code, -1);
  assert_int_equal (got.signal, 9);
  assert_int_equal (got.duration_us, 123456789);
  assert_int_equal (got.stdout_bytes, 52428800);
  assert_int_equal (got.stderr_bytes, 7);
  assert_int_equal (got.stdout_truncated, 1);
  assert_int_equal (got.stderr_truncated, 0);
  assert_int_equal (got.timed_out, 1);
  assert_int_equal (got.cpu_us, 42);
  assert_int_equal (got.max_rss_kb, 1024);
  /* missing exit code */
  struct proto_buf m = { 0 };
  put_tlv (&m, PROTO_TAG_EXIT_SIGNAL, "\0\0\0\1", 4);
  assert_int_equal (proto_exec_exit_decode (m.data, m.len, &got, &err), -1);
  /* wrong width for a flag */
  put_tlv (&m, PROTO_TAG_EXIT_CODE, "\0\0\0\1", 4);
  assert_int_equal (proto_exec_exit_decode (m.data, m.len, &got, &err), 0);
  put_tlv (&m, PROTO_TAG_EXIT_TIMED_OUT, "\0\1", 2);
  assert_int_equal (proto_exec_exit_decode (m.data, m.len, &got, &err), -1);
  proto_buf_free (&b);
  proto_buf_free (&m);
}

static void
test_error_round_trip (void **state)
{
  struct proto_buf b = { 0 };
  assert_int_equal (proto_error_encode (&b, SBX_E_CAPACITY, "too many connections"), 0);
  uint32_t code;
  char msg[64];
  struct sbx_err err;
  assert_int_equal (proto_error_decode (b.data, b.len, &code, msg, sizeof msg, &err), 0);
  assert_int_equal (code, SBX_E_CAPACITY);
  assert_string_equal (msg, "too many connections");
  /* truncated to the caller's buffer */
  char small[5];
  assert_int_equal (proto_error_decode (b.data, b.len, &code, small, sizeof small, &err), 0);
  assert_string_equal (small, "too ");
  /* a long message is capped when sent */
  static char longmsg[10000];
  memset (longmsg, 'm', sizeof longmsg - 1);
  b.len = 0;
  assert_int_equal (proto_error_encode (&b, 1, longmsg), 0);
  assert_true (b.len <= 4096 + 64);
  /* NUL inside the message */
  struct proto_buf z = { 0 };
  put_tlv (&z, PROTO_TAG_ERROR_MESSAGE, "a\0", 2);
  assert_int_equal (proto_error_decode (z.data, z.len, &code, msg, sizeof msg, &err), -1);
  proto_buf_free (&b);
  proto_buf_free (&z);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_hello),
    cmocka_unit_test (test_exec_req_round_trip),
    cmocka_unit_test (test_exec_req_encode_refuses),
    cmocka_unit_test (test_exec_req_malformed),
    cmocka_unit_test (test_exec_req_list_limits),
    cmocka_unit_test (test_exec_req_every_prefix),
    cmocka_unit_test (test_exec_exit_round_trip),
    cmocka_unit_test (test_error_round_trip),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
