/* Frames and the reader: round trips, byte-at-a-time feeding, malformed headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "proto/proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_header_layout (void **state)
{
  struct proto_buf b = { 0 };
  assert_int_equal (proto_frame_append (&b, PROTO_EXEC_STDOUT, 0x01020304, "hi", 2), 0);
  const uint8_t want[] = { 0, 0, 0, 2, PROTO_EXEC_STDOUT, 1, 2, 3, 4, 'h', 'i' };
  assert_int_equal (b.len, sizeof want);
  assert_memory_equal (b.data, want, sizeof want);
  errno = 0;
  assert_int_equal (proto_frame_append (&b, PROTO_PING, 0, b.data, PROTO_MAX_PAYLOAD + 1), -1);
  assert_int_equal (errno, EMSGSIZE);
  assert_int_equal (b.len, sizeof want); /* unchanged */
  proto_buf_free (&b);
}

/* Frames of all types and several sizes, fed n bytes at a time. */
static void
feed_and_check (size_t step)
{
  struct proto_buf stream = { 0 };
  static uint8_t big[PROTO_MAX_PAYLOAD];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t) (i * 7);
  size_t sizes[] = { 0, 1, 9, 1000, 70000, PROTO_MAX_PAYLOAD };
  size_t nframes = 0;
  for (uint8_t t = PROTO_HELLO; t <= PROTO_PONG; t++)
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
      {
        if (step == 1 && sizes[k] > 70000)
          continue; /* keep the byte-at-a-time run quick */
        assert_int_equal (proto_frame_append (&stream, t, (uint32_t) (t * 1000 + k), big,
                                              (uint32_t) sizes[k]),
                          0);
        nframes++;
      }

  struct proto_reader r;
  proto_reader_init (&r);
  size_t fed = 0, got = 0;
  struct sbx_err err;
  for (uint8_t t = PROTO_HELLO; t <= PROTO_PONG; t++)
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
      {
        if (step == 1 && sizes[k] > 70000)
          continue;
        struct proto_frame f;
        int rc;
        while ((rc = proto_reader_next (&r, &f, &err)) == 0)
          {
            assert_true (fed < stream.len);
            size_t n = stream.len - fed < step ? stream.len - fed : step;
            /* feed like fill would: drop what was consumed first */
            if (r.consumed)
              {
                memmove (r.in.data, r.in.data + r.consumed, r.in.len - r.consumed);
                r.in.len -= r.consumed;
                r.consumed = 0;
              }
            assert_int_equal (proto_buf_append (&r.in, stream.data + fed, n), 0);
            fed += n;
          }
        assert_int_equal (rc, 1);
        assert_int_equal (f.type, t);
        assert_int_equal (f.id, t * 1000 + k);
        assert_int_equal (f.len, sizes[k]);
        if (f.len)
          assert_memory_equal (f.payload, big, f.len);
        got++;
      }
  assert_int_equal (got, nframes);
  assert_int_equal (fed, stream.len);
  assert_int_equal (proto_reader_pending (&r), 0);
  proto_reader_free (&r);
  proto_buf_free (&stream);
}

static void
test_reader_byte_at_a_time (void **state)
{
  feed_and_check (1);
}

static void
test_reader_odd_chunks (void **state)
{
  feed_and_check (4093);
  feed_and_check (65536);
}

/* Through a real socket with fill and proto_read_frame, including a 1 MiB frame. */
static void
test_read_frame_socket (void **state)
{
  int sv[2];
  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  pid_t pid = fork ();
  assert_true (pid >= 0);
  static uint8_t big[PROTO_MAX_PAYLOAD];
  memset (big, 0xab, sizeof big);
  if (pid == 0)
    {
      close (sv[0]);
      int ok = proto_frame_write (sv[1], PROTO_EXEC_STDOUT, 1, "abc", 3) == 0
               && proto_frame_write (sv[1], PROTO_EXEC_STDERR, 2, big, sizeof big) == 0
               && proto_frame_write (sv[1], PROTO_PONG, 3, NULL, 0) == 0;
      _exit (ok ? 0 : 1);
    }
  close (sv[1]);
  struct proto_reader r;
  proto_reader_init (&r);
  struct proto_frame f;
  struct sbx_err err;
  assert_int_equal (proto_read_frame (sv[0], &r, &f, &err), 1);
  assert_int_equal (f.type, PROTO_EXEC_STDOUT);
  assert_memory_equal (f.payload, "abc", 3);
  assert_int_equal (proto_read_frame (sv[0], &r, &f, &err), 1);
  assert_int_equal (f.len, sizeof big);
  assert_memory_equal (f.payload, big, sizeof big);
  assert_int_equal (proto_read_frame (sv[0], &r, &f, &err), 1);
  assert_int_equal (f.type, PROTO_PONG);
  assert_int_equal (f.len, 0);
  assert_int_equal (proto_read_frame (sv[0], &r, &f, &err), 0); /* clean EOF */
  /* the buffer stayed bounded */
  assert_true (r.in.cap <= 2 * (PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD + 65536));
  int st;
  waitpid (pid, &st, 0);
  assert_int_equal (st, 0);
  proto_reader_free (&r);
  close (sv[0]);
}

static int
next_of (const uint8_t *bytes, size_t n, struct sbx_err *err)
{
  struct proto_reader r;
  proto_reader_init (&r);
  assert_int_equal (proto_buf_append (&r.in, bytes, n), 0);
  struct proto_frame f;
  int rc = proto_reader_next (&r, &f, err);
  proto_reader_free (&r);
  return rc;
}

static void
test_reader_malformed (void **state)
{
  struct sbx_err err;
  /* truncated header: not an error yet, just "need more" */
  const uint8_t part[] = { 0, 0, 0, 1, PROTO_PING, 0, 0 };
  assert_int_equal (next_of (part, sizeof part, &err), 0);
  /* truncated payload: same */
  const uint8_t trunc[] = { 0, 0, 0, 5, PROTO_PING, 0, 0, 0, 0, 'a', 'b' };
  assert_int_equal (next_of (trunc, sizeof trunc, &err), 0);
  /* oversize length is refused as soon as the header is in */
  const uint8_t big[] = { 0, 0x10, 0, 1, PROTO_PING, 0, 0, 0, 0 };
  assert_int_equal (next_of (big, sizeof big, &err), -1);
  assert_int_equal (err.code, SBX_E_PROTO);
  const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, PROTO_PING, 0, 0, 0, 0 };
  assert_int_equal (next_of (huge, sizeof huge, &err), -1);
  /* exactly the limit is fine (needs more bytes) */
  const uint8_t limit[] = { 0, 0x10, 0, 0, PROTO_PING, 0, 0, 0, 0 };
  assert_int_equal (next_of (limit, sizeof limit, &err), 0);
  /* unknown types */
  const uint8_t t0[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  assert_int_equal (next_of (t0, sizeof t0, &err), -1);
  const uint8_t t12[] = { 0, 0, 0, 0, PROTO_TYPE_MAX + 1, 0, 0, 0, 0 };
  assert_int_equal (next_of (t12, sizeof t12, &err), -1);
  const uint8_t t255[] = { 0, 0, 0, 0, 255, 0, 0, 0, 0 };
  assert_int_equal (next_of (t255, sizeof t255, &err), -1);
  assert_false (proto_type_valid (0));
  assert_true (proto_type_valid (PROTO_PONG));
}

/* EOF inside a frame is an error, not a clean end. */
static void
test_eof_inside_frame (void **state)
{
  int sv[2];
  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const uint8_t part[] = { 0, 0, 0, 4, PROTO_PING, 0, 0, 0, 1, 'x' };
  assert_int_equal (write (sv[1], part, sizeof part), (ssize_t) sizeof part);
  close (sv[1]);
  struct proto_reader r;
  proto_reader_init (&r);
  struct proto_frame f;
  struct sbx_err err;
  assert_int_equal (proto_read_frame (sv[0], &r, &f, &err), -1);
  assert_int_equal (err.code, SBX_E_PROTO);
  proto_reader_free (&r);
  close (sv[0]);
}

/* Filling without taking frames out stops at the bound instead of growing. */
static void
test_reader_bounded (void **state)
{
  int sv[2];
  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  int sz = 4 << 20;
  setsockopt (sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  setsockopt (sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  static uint8_t junk[64 * 1024];
  size_t total = 0;
  while (total < (3u << 20))
    {
      ssize_t n = write (sv[1], junk, sizeof junk);
      if (n <= 0)
        break;
      total += (size_t) n;
    }
  struct proto_reader r;
  proto_reader_init (&r);
  ssize_t n;
  size_t filled = 0;
  while ((n = proto_reader_fill (&r, sv[0])) > 0)
    filled += (size_t) n;
  assert_int_equal (n, -1);
  assert_true (errno == ENOBUFS || errno == EAGAIN);
  assert_true (filled <= PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD + 65536);
  proto_reader_free (&r);
  close (sv[0]);
  close (sv[1]);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_header_layout),       cmocka_unit_test (test_reader_byte_at_a_time),
    cmocka_unit_test (test_reader_odd_chunks),   cmocka_unit_test (test_read_frame_socket),
    cmocka_unit_test (test_reader_malformed),    cmocka_unit_test (test_eof_inside_frame),
    cmocka_unit_test (test_reader_bounded),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
