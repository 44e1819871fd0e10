/* sbx-init driven over its socket, outside any sandbox: the test makes the listening
 * socket and lock file, execs build/sbx-init with them on fds 3 and 4, and talks the
 * protocol with proto_client_connect. Uses only /bin/sh and coreutils. Run from the repo
 * root (build/sbx-init must exist: make build/sbx-init). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "agent_harness.h"
#include "agent/agent.h" /* AGENT_MAX_CONNS */

#include <sys/syscall.h>

struct opts {
  uint32_t stdin_mode;
  uint64_t timeout_ms;
  uint64_t max_output;
  const char *cwd;
  const char *const *env;
};

static const char *const default_env[] = { "PATH=/usr/bin:/bin", "LC_ALL=C", NULL };

static void
send_exec (struct client *c, uint32_t id, const char *const *argv, const struct opts *o)
{
  static const struct opts none = { 0 };
  if (!o)
    o = &none;
  const char *const *env = o->env ? o->env : default_env;
  struct proto_exec_req req = { .argv = (char **) argv, .env = (char **) env,
                                .cwd = (char *) o->cwd, .stdin_mode = o->stdin_mode,
                                .timeout_ms = o->timeout_ms, .max_output = o->max_output };
  while (argv[req.argc])
    req.argc++;
  while (env[req.envc])
    req.envc++;
  struct proto_buf b = { 0 };
  assert_int_equal (proto_exec_req_encode (&req, &b), 0);
  assert_int_equal (proto_frame_write (c->fd, PROTO_EXEC_START, id, b.data, (uint32_t) b.len), 0);
  proto_buf_free (&b);
}

static void
send_stdin (struct client *c, uint32_t id, const char *s, size_t n)
{
  assert_int_equal (proto_frame_write (c->fd, PROTO_EXEC_STDIN, id, s, (uint32_t) n), 0);
}

static void
send_signal (struct client *c, uint32_t id, uint32_t sig)
{
  uint8_t b[4] = { (uint8_t) (sig >> 24), (uint8_t) (sig >> 16), (uint8_t) (sig >> 8),
                   (uint8_t) sig };
  assert_int_equal (proto_frame_write (c->fd, PROTO_EXEC_SIGNAL, id, b, 4), 0);
}

/* Everything one exec produced. */
struct result {
  uint32_t id;
  pid_t pid;
  struct proto_buf out, err;
  bool done;
  bool failed; /* ERROR frame for this id */
  uint32_t err_code;
  char err_msg[512];
  struct proto_exec_exit ex;
};

static void
result_free (struct result *r)
{
  proto_buf_free (&r->out);
  proto_buf_free (&r->err);
}

/* More output than this means truncation did not work. */
#define KEEP_MAX (8u << 20)

/* Read frames until every result in rs is done. Connection-level ERRORs (id 0) are
 * stored in *conn_err if given, else they fail the test. */
static void
collect (struct client *c, struct result *rs, size_t n, struct result *conn_err)
{
  size_t left = 0;
  for (size_t i = 0; i < n; i++)
    left += !rs[i].done;
  while (left > 0)
    {
      struct proto_frame f;
      struct sbx_err err = { 0 };
      int rc = proto_read_frame (c->fd, &c->r, &f, &err);
      if (rc <= 0)
        fail_msg ("read frame: %s", rc == 0 ? "EOF" : err.msg);
      if (f.type == PROTO_ERROR && f.id == 0)
        {
          assert_non_null (conn_err);
          assert_int_equal (proto_error_decode (f.payload, f.len, &conn_err->err_code,
                                                conn_err->err_msg, sizeof conn_err->err_msg,
                                                &err),
                            0);
          conn_err->failed = true;
          continue;
        }
      struct result *r = NULL;
      for (size_t i = 0; i < n; i++)
        if (rs[i].id == f.id)
          r = &rs[i];
      if (!r)
        fail_msg ("frame type %u for unknown id %u", f.type, f.id);
      assert_false (r->done);
      switch (f.type)
        {
        case PROTO_EXEC_STARTED:
          assert_true (f.len >= 4);
          r->pid = (pid_t) ((uint32_t) f.payload[0] << 24 | (uint32_t) f.payload[1] << 16
                            | (uint32_t) f.payload[2] << 8 | f.payload[3]);
          break;
        case PROTO_EXEC_STDOUT:
        case PROTO_EXEC_STDERR:
          {
            assert_true (f.len > 0 && f.len <= PROTO_DATA_CHUNK);
            struct proto_buf *b = f.type == PROTO_EXEC_STDOUT ? &r->out : &r->err;
            if (b->len + f.len > KEEP_MAX)
              fail_msg ("more than %u bytes of output", KEEP_MAX);
            assert_int_equal (proto_buf_append (b, f.payload, f.len), 0);
            break;
          }
        case PROTO_EXEC_EXIT:
          assert_int_equal (proto_exec_exit_decode (f.payload, f.len, &r->ex, &err), 0);
          r->done = true;
          left--;
          break;
        case PROTO_ERROR:
          assert_int_equal (proto_error_decode (f.payload, f.len, &r->err_code, r->err_msg,
                                                sizeof r->err_msg, &err),
                            0);
          r->failed = true;
          r->done = true;
          left--;
          break;
        default:
          fail_msg ("unexpected frame type %u", f.type);
        }
    }
}

static void
run1 (struct client *c, const char *const *argv, const struct opts *o, struct result *r)
{
  memset (r, 0, sizeof *r);
  r->id = 7;
  send_exec (c, r->id, argv, o);
  collect (c, r, 1, NULL);
}

static void
assert_buf_eq (const struct proto_buf *b, const char *s)
{
  size_t n = strlen (s);
  if (b->len != n || (n && memcmp (b->data, s, n)))
    fail_msg ("got \"%.*s\", want \"%s\"", (int) b->len, b->data ? (char *) b->data : "", s);
}

/* ---- tests ---- */

static void
test_echo (void **state)
{
  struct client c;
  client_open (&c);
  struct result r;
  run1 (&c, (const char *const[]){ "echo", "hello", "world", NULL }, NULL, &r);
  assert_false (r.failed);
  assert_true (r.pid > 0);
  assert_buf_eq (&r.out, "hello world\n");
  assert_buf_eq (&r.err, "");
  assert_int_equal (r.ex.exit_code, 0);
  assert_int_equal (r.ex.signal, 0);
  assert_int_equal (r.ex.stdout_bytes, 12);
  assert_int_equal (r.ex.stdout_truncated, 0);
  assert_int_equal (r.ex.timed_out, 0);
  result_free (&r);
  client_close (&c);
}

static void
test_exit_codes_and_stderr (void **state)
{
  struct client c;
  client_open (&c);
  struct result r;
  run1 (&c, (const char *const[]){ "sh", "-c", "echo oops >&2; exit 3", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 3);
  assert_buf_eq (&r.err, "oops\n");
  assert_int_equal (r.ex.stderr_bytes, 5);
  result_free (&r);

  run1 (&c, (const char *const[]){ "sh", "-c", "kill -TERM $$", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 128 + SIGTERM);
  assert_int_equal (r.ex.signal, SIGTERM);
  result_free (&r);

  /* env is exactly the request's, PATH from it */
  run1 (&c, (const char *const[]){ "sh", "-c", "echo \"$FOO\"; env | wc -l", NULL },
        &(struct opts){ .env = (const char *const[]){ "FOO=bar baz", "PATH=/bin", NULL } },
        &r);
  /* sh itself may add PWD, SHLVL, _: FOO is there, and not our test's HOME */
  assert_true (r.out.len > 8 && !memcmp (r.out.data, "bar baz\n", 8));
  result_free (&r);
  run1 (&c, (const char *const[]){ "sh", "-c", "echo \"[$HOME]\"", NULL }, NULL, &r);
  assert_buf_eq (&r.out, "[]\n");
  result_free (&r);

  run1 (&c, (const char *const[]){ "pwd", NULL }, &(struct opts){ .cwd = "/tmp" }, &r);
  assert_buf_eq (&r.out, "/tmp\n");
  result_free (&r);

  run1 (&c, (const char *const[]){ "pwd", NULL }, NULL, &r);
  assert_buf_eq (&r.out, "/\n");
  result_free (&r);
  client_close (&c);
}

static void
test_exec_failures (void **state)
{
  struct client c;
  client_open (&c);
  struct result r;
  run1 (&c, (const char *const[]){ "sbx-no-such-command", NULL }, NULL, &r);
  assert_false (r.failed);
  assert_int_equal (r.ex.exit_code, 127);
  assert_buf_eq (&r.err, "sbx: sbx-no-such-command: No such file or directory\n");
  result_free (&r);

  run1 (&c, (const char *const[]){ "/no/such/file", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 127);
  assert_buf_eq (&r.err, "sbx: /no/such/file: No such file or directory\n");
  result_free (&r);

  run1 (&c, (const char *const[]){ "/etc/passwd", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 126);
  assert_buf_eq (&r.err, "sbx: /etc/passwd: Permission denied\n");
  result_free (&r);

  run1 (&c, (const char *const[]){ "/tmp", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 126);
  result_free (&r);

  /* A PATH with no such command: 127, found via the request's PATH only. */
  run1 (&c, (const char *const[]){ "ls", NULL },
        &(struct opts){ .env = (const char *const[]){ "PATH=/nonexistent", NULL } }, &r);
  assert_int_equal (r.ex.exit_code, 127);
  result_free (&r);

  /* No PATH at all: the default one finds ls. */
  run1 (&c, (const char *const[]){ "ls", "/", NULL },
        &(struct opts){ .env = (const char *const[]){ NULL } }, &r);
  assert_int_equal (r.ex.exit_code, 0);
  result_free (&r);

  /* sbx-side failures are ERROR frames: relative and missing cwd. */
  run1 (&c, (const char *const[]){ "pwd", NULL }, &(struct opts){ .cwd = "tmp" }, &r);
  assert_true (r.failed);
  assert_int_equal (r.err_code, SBX_E_INVALID);
  result_free (&r);
  run1 (&c, (const char *const[]){ "pwd", NULL }, &(struct opts){ .cwd = "/no/such/dir" }, &r);
  assert_true (r.failed);
  assert_int_equal (r.err_code, SBX_E_INVALID);
  assert_non_null (strstr (r.err_msg, "No such file or directory"));
  result_free (&r);
  client_close (&c);
}

static void
test_stdin_pipe (void **state)
{
  struct client c;
  client_open (&c);
  struct result r = { .id = 3 };
  send_exec (&c, 3, (const char *const[]){ "cat", NULL },
             &(struct opts){ .stdin_mode = PROTO_STDIN_PIPE });
  send_stdin (&c, 3, "abc", 3);
  send_stdin (&c, 3, "def\n", 4);
  send_stdin (&c, 3, "", 0); /* EOF */
  collect (&c, &r, 1, NULL);
  assert_int_equal (r.ex.exit_code, 0);
  assert_buf_eq (&r.out, "abcdef\n");
  result_free (&r);

  /* 3 MiB of stdin in 64 KiB frames, counted by wc: exercises the stdin queue. */
  memset (&r, 0, sizeof r);
  r.id = 4;
  send_exec (&c, 4, (const char *const[]){ "wc", "-c", NULL },
             &(struct opts){ .stdin_mode = PROTO_STDIN_PIPE });
  static char chunk[PROTO_DATA_CHUNK];
  memset (chunk, 'x', sizeof chunk);
  for (int i = 0; i < 48; i++)
    send_stdin (&c, 4, chunk, sizeof chunk);
  send_stdin (&c, 4, "", 0);
  collect (&c, &r, 1, NULL);
  assert_buf_eq (&r.out, "3145728\n");
  result_free (&r);

  /* Default stdin is /dev/null: cat ends at once. */
  run1 (&c, (const char *const[]){ "cat", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 0);
  assert_buf_eq (&r.out, "");
  result_free (&r);
  client_close (&c);
}

static void
test_timeout_and_signal (void **state)
{
  struct client c;
  client_open (&c);
  struct result r;
  run1 (&c, (const char *const[]){ "sleep", "60", NULL }, &(struct opts){ .timeout_ms = 100 },
        &r);
  assert_int_equal (r.ex.timed_out, 1);
  assert_int_equal (r.ex.signal, SIGKILL);
  assert_int_equal (r.ex.exit_code, 128 + SIGKILL);
  result_free (&r);

  /* EXEC_SIGNAL reaches the process group: the shell and its sleep. */
  memset (&r, 0, sizeof r);
  r.id = 9;
  send_exec (&c, 9, (const char *const[]){ "sh", "-c", "echo ready; sleep 60; echo no", NULL },
             NULL);
  /* wait until it runs (its first output), then signal */
  while (r.out.len == 0)
    {
      struct proto_frame f;
      struct sbx_err err;
      assert_int_equal (proto_read_frame (c.fd, &c.r, &f, &err), 1);
      if (f.type == PROTO_EXEC_STDOUT)
        proto_buf_append (&r.out, f.payload, f.len);
    }
  send_signal (&c, 9, SIGTERM);
  collect (&c, &r, 1, NULL);
  assert_int_equal (r.ex.signal, SIGTERM);
  assert_int_equal (r.ex.timed_out, 0);
  assert_buf_eq (&r.out, "ready\n");
  result_free (&r);
  client_close (&c);
}

static void
test_truncation_flood (void **state)
{
  struct client c;
  client_open (&c);
  struct result r;
  /* 50 MB on stdout, 1 MiB allowed; stderr small and whole. */
  run1 (&c, (const char *const[]){ "sh", "-c", "head -c 52428800 /dev/zero; echo e >&2", NULL },
        &(struct opts){ .max_output = 1 << 20 }, &r);
  assert_int_equal (r.ex.exit_code, 0);
  assert_int_equal (r.ex.stdout_bytes, 52428800);
  assert_int_equal (r.ex.stdout_truncated, 1);
  assert_int_equal (r.out.len, 1 << 20);
  assert_int_equal (r.ex.stderr_bytes, 2);
  assert_int_equal (r.ex.stderr_truncated, 0);
  assert_buf_eq (&r.err, "e\n");
  result_free (&r);

  /* Exactly max_output bytes is not truncated. */
  run1 (&c, (const char *const[]){ "head", "-c", "1000", "/dev/zero", NULL },
        &(struct opts){ .max_output = 1000 }, &r);
  assert_int_equal (r.ex.stdout_bytes, 1000);
  assert_int_equal (r.ex.stdout_truncated, 0);
  assert_int_equal (r.out.len, 1000);
  result_free (&r);

  /* No limit: 6 MiB all arrive, through the queue's flow control. */
  run1 (&c, (const char *const[]){ "head", "-c", "6291456", "/dev/urandom", NULL }, NULL, &r);
  assert_int_equal (r.ex.stdout_bytes, 6291456);
  assert_int_equal (r.out.len, 6291456);
  assert_int_equal (r.ex.stdout_truncated, 0);
  result_free (&r);
  client_close (&c);
}

static void
test_background_child_does_not_hold_exit (void **state)
{
  struct client c;
  client_open (&c);
  struct result r;
  /* The grandchild keeps stdout open; EXEC_EXIT must not wait for it. */
  run1 (&c, (const char *const[]){ "sh", "-c", "sleep 60 & echo hi", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 0);
  assert_buf_eq (&r.out, "hi\n");
  kill (-r.pid, SIGKILL); /* the sleep, left running by design */
  result_free (&r);
  client_close (&c);
}

static void
test_concurrent_execs (void **state)
{
  struct client c;
  client_open (&c);
  enum { N = 20 };
  struct result rs[N];
  memset (rs, 0, sizeof rs);
  char name[N][16];
  for (int i = 0; i < N; i++)
    {
      rs[i].id = 100 + (uint32_t) i;
      snprintf (name[i], sizeof name[i], "n%d", i);
      /* each waits for its own stdin EOF, so all run at the same time */
      send_exec (&c, rs[i].id,
                 (const char *const[]){ "sh", "-c", "cat; echo \"$0\"", name[i], NULL },
                 &(struct opts){ .stdin_mode = PROTO_STDIN_PIPE });
    }
  /* a duplicate live id is refused on id 0 and leaves the running one alone */
  struct result dup = { 0 };
  send_exec (&c, 100, (const char *const[]){ "true", NULL }, NULL);
  for (int i = N - 1; i >= 0; i--)
    {
      send_stdin (&c, rs[i].id, name[i], strlen (name[i]));
      send_stdin (&c, rs[i].id, ":", 1);
      send_stdin (&c, rs[i].id, "", 0);
    }
  collect (&c, rs, N, &dup);
  assert_true (dup.failed);
  assert_int_equal (dup.err_code, SBX_E_INVALID);
  for (int i = 0; i < N; i++)
    {
      char want[40];
      snprintf (want, sizeof want, "%s:%s\n", name[i], name[i]);
      assert_int_equal (rs[i].ex.exit_code, 0);
      assert_buf_eq (&rs[i].out, want);
      result_free (&rs[i]);
    }
  client_close (&c);
}

static void
test_ping (void **state)
{
  struct client c;
  client_open (&c);
  assert_int_equal (proto_frame_write (c.fd, PROTO_PING, 42, "xyz", 3), 0);
  struct proto_frame f;
  struct sbx_err err;
  assert_int_equal (proto_read_frame (c.fd, &c.r, &f, &err), 1);
  assert_int_equal (f.type, PROTO_PONG);
  assert_int_equal (f.id, 42);
  assert_int_equal (f.len, 3);
  assert_memory_equal (f.payload, "xyz", 3);
  client_close (&c);
}

/* Read until EOF; true if an ERROR frame came first. */
static bool
expect_error_then_eof (struct client *c)
{
  bool saw_error = false;
  for (;;)
    {
      struct proto_frame f;
      struct sbx_err err;
      int rc = proto_read_frame (c->fd, &c->r, &f, &err);
      if (rc <= 0)
        return saw_error && rc == 0;
      if (f.type == PROTO_ERROR)
        saw_error = true;
    }
}

static void
wait_gone (pid_t pid)
{
  int pfd = (int) syscall (SYS_pidfd_open, pid, 0);
  if (pfd < 0)
    return; /* already gone */
  struct pollfd p = { .fd = pfd, .events = POLLIN };
  assert_int_equal (poll (&p, 1, -1), 1); /* readable once it has exited */
  close (pfd);
}

static void
test_malformed_closes_only_that_connection (void **state)
{
  struct client good, bad;
  client_open (&good);

  /* oversize length: ERROR then EOF; its running exec is killed */
  client_open (&bad);
  struct result r = { .id = 1 };
  send_exec (&bad, 1, (const char *const[]){ "sleep", "60", NULL }, NULL);
  struct proto_frame f;
  struct sbx_err err;
  assert_int_equal (proto_read_frame (bad.fd, &bad.r, &f, &err), 1);
  assert_int_equal (f.type, PROTO_EXEC_STARTED);
  r.pid = (pid_t) ((uint32_t) f.payload[0] << 24 | (uint32_t) f.payload[1] << 16
                   | (uint32_t) f.payload[2] << 8 | f.payload[3]);
  uint8_t hdr[PROTO_HEADER_SIZE];
  proto_header_encode (hdr, PROTO_PING, 0, PROTO_MAX_PAYLOAD + 1);
  assert_int_equal (write (bad.fd, hdr, sizeof hdr), (ssize_t) sizeof hdr);
  assert_true (expect_error_then_eof (&bad));
  client_close (&bad);
  wait_gone (r.pid);

  /* unknown frame type */
  client_open (&bad);
  proto_header_encode (hdr, 200, 0, 0);
  assert_int_equal (write (bad.fd, hdr, sizeof hdr), (ssize_t) sizeof hdr);
  assert_true (expect_error_then_eof (&bad));
  client_close (&bad);

  /* truncated TLV in EXEC_START: refused for that id, connection stays */
  client_open (&bad);
  uint8_t junk[] = { 0, 1, 0, 0, 0, 50, 'x' };
  assert_int_equal (proto_frame_write (bad.fd, PROTO_EXEC_START, 5, junk, sizeof junk), 0);
  memset (&r, 0, sizeof r);
  r.id = 5;
  collect (&bad, &r, 1, NULL);
  assert_true (r.failed);
  assert_int_equal (r.err_code, SBX_E_INVALID);
  /* NUL inside argv */
  uint8_t nul[] = { 0, PROTO_TAG_EXEC_ARGV, 0, 0, 0, 3, 'l', 0, 's' };
  assert_int_equal (proto_frame_write (bad.fd, PROTO_EXEC_START, 6, nul, sizeof nul), 0);
  memset (&r, 0, sizeof r);
  r.id = 6;
  collect (&bad, &r, 1, NULL);
  assert_true (r.failed);
  /* garbage mid-stream closes it */
  assert_int_equal (write (bad.fd, "\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9), 9);
  assert_true (expect_error_then_eof (&bad));
  client_close (&bad);

  /* a host frame type the agent never accepts */
  client_open (&bad);
  assert_int_equal (proto_frame_write (bad.fd, PROTO_EXEC_EXIT, 1, NULL, 0), 0);
  assert_true (expect_error_then_eof (&bad));
  client_close (&bad);

  /* the first connection never noticed */
  struct result ok;
  run1 (&good, (const char *const[]){ "echo", "still here", NULL }, NULL, &ok);
  assert_buf_eq (&ok.out, "still here\n");
  result_free (&ok);
  client_close (&good);
}

static void
test_hello_rules (void **state)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  strcpy (sa.sun_path, sock_path);

  /* wrong version: ERROR, then closed */
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal (connect (fd, (struct sockaddr *) &sa, sizeof sa), 0);
  uint8_t hello[] = { 0, PROTO_TAG_HELLO_VERSION, 0, 0, 0, 4, 0, 0, 0, 99 };
  assert_int_equal (proto_frame_write (fd, PROTO_HELLO, 0, hello, sizeof hello), 0);
  struct client c = { .fd = fd };
  proto_reader_init (&c.r);
  struct proto_frame f;
  struct sbx_err err;
  assert_int_equal (proto_read_frame (fd, &c.r, &f, &err), 1);
  assert_int_equal (f.type, PROTO_HELLO); /* the agent speaks first */
  uint32_t v = 0;
  assert_int_equal (proto_hello_decode (f.payload, f.len, &v, &err), 0);
  assert_int_equal (v, PROTO_VERSION);
  assert_true (expect_error_then_eof (&c));
  client_close (&c);

  /* anything but HELLO first: ERROR, closed */
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal (connect (fd, (struct sockaddr *) &sa, sizeof sa), 0);
  assert_int_equal (proto_frame_write (fd, PROTO_PING, 0, NULL, 0), 0);
  c.fd = fd;
  proto_reader_init (&c.r);
  assert_true (expect_error_then_eof (&c));
  client_close (&c);
}

static void
test_connection_limit (void **state)
{
  struct client cs[AGENT_MAX_CONNS];
  for (int i = 0; i < AGENT_MAX_CONNS; i++)
    client_open (&cs[i]);
  struct proto_reader r;
  struct sbx_err err = { 0 };
  int fd = proto_client_connect (sock_path, &r, &err);
  assert_int_equal (fd, -1);
  assert_int_equal (err.code, SBX_E_CAPACITY);
  proto_reader_free (&r);
  client_close (&cs[0]);
  /* a slot frees up once the agent has seen the close: a PING round trip on another
   * connection orders it (one event loop) */
  assert_int_equal (proto_frame_write (cs[1].fd, PROTO_PING, 1, NULL, 0), 0);
  struct proto_frame f;
  assert_int_equal (proto_read_frame (cs[1].fd, &cs[1].r, &f, &err), 1);
  client_open (&cs[0]);
  for (int i = 0; i < AGENT_MAX_CONNS; i++)
    client_close (&cs[i]);
}

static void
test_oom_score_reset (void **state)
{
  /* The runtime gives PID 1 -999; commands must start at 0, not inherit it. Lowering needs
   * CAP_SYS_RESOURCE (not always ours), raising does not: start an agent that inherits
   * 300 (anything but 0 makes it reset), then put ours back. */
  char old[32];
  assert_true (sbx_read_file ("/proc/self/oom_score_adj", old, sizeof old) > 0);
  agent_teardown (state);
  assert_int_equal (sbx_write_file ("/proc/self/oom_score_adj", "300"), 0);
  int rc = agent_setup (state);
  assert_int_equal (sbx_write_file ("/proc/self/oom_score_adj", old), 0);
  assert_int_equal (rc, 0);
  struct client c;
  client_open (&c);
  struct result r;
  run1 (&c, (const char *const[]){ "cat", "/proc/self/oom_score_adj", NULL }, NULL, &r);
  assert_int_equal (r.ex.exit_code, 0);
  assert_buf_eq (&r.out, "0\n");
  result_free (&r);
  char p[64], agent_score[32];
  snprintf (p, sizeof p, "/proc/%d/oom_score_adj", agent_pid);
  assert_true (sbx_read_file (p, agent_score, sizeof agent_score) > 0);
  assert_string_equal (agent_score, "300\n");
  client_close (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_echo),
    cmocka_unit_test (test_exit_codes_and_stderr),
    cmocka_unit_test (test_exec_failures),
    cmocka_unit_test (test_stdin_pipe),
    cmocka_unit_test (test_timeout_and_signal),
    cmocka_unit_test (test_truncation_flood),
    cmocka_unit_test (test_background_child_does_not_hold_exit),
    cmocka_unit_test (test_concurrent_execs),
    cmocka_unit_test (test_ping),
    cmocka_unit_test (test_malformed_closes_only_that_connection),
    cmocka_unit_test (test_hello_rules),
    cmocka_unit_test (test_connection_limit),
    cmocka_unit_test (test_oom_score_reset),
  };
  return cmocka_run_group_tests (tests, agent_setup, agent_teardown);
}
