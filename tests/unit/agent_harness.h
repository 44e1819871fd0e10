/* Shared by the sbx-init unit tests (test_agent_exec.c, test_agent_proc.c, test_agent_files.c):
 * start build/sbx-init outside any sandbox, with a listening socket in a temporary
 * directory on fd 3 and a lock file on fd 4 as the runtime hands them, and talk the
 * protocol to it. Include after cmocka.h. */
#pragma once

#include "proto/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define AGENT_BIN "build/sbx-init"

static __attribute__ ((unused)) char dir[64];
static __attribute__ ((unused)) char sock_path[128];
static __attribute__ ((unused)) pid_t agent_pid;

static __attribute__ ((unused)) int
agent_setup (void **state)
{
  if (access (AGENT_BIN, X_OK) < 0)
    {
      fprintf (stderr, "%s missing: run `make build/sbx-init` from the repo root\n", AGENT_BIN);
      return -1;
    }
  strcpy (dir, "/tmp/sbx-agent-test-XXXXXX");
  if (!mkdtemp (dir))
    return -1;
  snprintf (sock_path, sizeof sock_path, "%s/agent.sock", dir);
  char lock_path[128];
  snprintf (lock_path, sizeof lock_path, "%s/lock", dir);
  int lfd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  strcpy (sa.sun_path, sock_path);
  if (lfd < 0 || bind (lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen (lfd, 128) < 0)
    return -1;
  int lock = open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0)
    return -1;
  agent_pid = fork ();
  if (agent_pid < 0)
    return -1;
  if (agent_pid == 0)
    {
      /* sbx-init blocks every signal but SIGKILL: if the test dies, so must it. */
      prctl (PR_SET_PDEATHSIG, SIGKILL);
      int l = fcntl (lfd, F_DUPFD, 10), k = fcntl (lock, F_DUPFD, 10);
      if (l < 0 || k < 0 || dup2 (l, 3) < 0 || dup2 (k, 4) < 0)
        _exit (126);
      int null = open ("/dev/null", O_RDONLY);
      dup2 (null, 0);
      execl (AGENT_BIN, "sbx-init", (char *) NULL);
      _exit (127);
    }
  close (lfd);
  close (lock);
  return 0;
}

static __attribute__ ((unused)) int
agent_teardown (void **state)
{
  if (agent_pid > 0)
    {
      kill (agent_pid, SIGKILL);
      waitpid (agent_pid, NULL, 0);
    }
  char cmd[128];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system (cmd) == 0 ? 0 : -1;
}

struct client {
  int fd;
  struct proto_reader r;
};

static __attribute__ ((unused)) void
client_open (struct client *c)
{
  struct sbx_err err = { 0 };
  c->fd = proto_client_connect (sock_path, &c->r, &err);
  if (c->fd < 0)
    fail_msg ("connect: %s", err.msg);
}

static __attribute__ ((unused)) void
client_close (struct client *c)
{
  close (c->fd);
  proto_reader_free (&c->r);
}

static __attribute__ ((unused)) const char *const test_env[] = { "PATH=/usr/bin:/bin", "LC_ALL=C", NULL };

/* EXEC_START; returns the proc id from EXEC_STARTED (after skipping nothing else). */
static __attribute__ ((unused)) uint32_t
start (struct client *c, uint32_t id, const char *const *argv, bool background, bool pty,
       const char *key, uint32_t stdin_mode, int *existing)
{
  struct proto_exec_req req = { .argv = (char **) argv, .env = (char **) test_env, .envc = 2,
                                .stdin_mode = stdin_mode, .background = background, .pty = pty,
                                .rows = 24, .cols = 80, .key = (char *) key };
  while (argv[req.argc])
    req.argc++;
  struct proto_buf b = { 0 };
  assert_int_equal (proto_exec_req_encode (&req, &b), 0);
  assert_int_equal (proto_frame_write (c->fd, PROTO_EXEC_START, id, b.data, (uint32_t) b.len), 0);
  proto_buf_free (&b);
  struct proto_frame f;
  struct sbx_err err = { 0 };
  assert_int_equal (proto_read_frame (c->fd, &c->r, &f, &err), 1);
  if (f.type == PROTO_ERROR)
    {
      uint32_t code;
      char msg[512];
      proto_error_decode (f.payload, f.len, &code, msg, sizeof msg, &err);
      fail_msg ("exec refused: %s", msg);
    }
  assert_int_equal (f.type, PROTO_EXEC_STARTED);
  assert_int_equal (f.id, id);
  uint32_t pid, proc;
  int ex;
  assert_int_equal (proto_started_decode (f.payload, f.len, &pid, &proc, &ex, &err), 0);
  assert_true (proc > 0);
  if (existing)
    *existing = ex;
  return proc;
}

static __attribute__ ((unused)) void
send_msg (struct client *c, uint8_t type, uint32_t id, const struct proto_msg *m)
{
  struct proto_buf b = { 0 };
  assert_int_equal (proto_msg_encode (m, &b), 0);
  assert_int_equal (proto_frame_write (c->fd, type, id, b.data, (uint32_t) b.len), 0);
  proto_buf_free (&b);
}

/* The next frame (blocking). */
static __attribute__ ((unused)) void
next (struct client *c, struct proto_frame *f)
{
  struct sbx_err err = { 0 };
  int rc = proto_read_frame (c->fd, &c->r, f, &err);
  if (rc <= 0)
    fail_msg ("read frame: %s", rc == 0 ? "EOF" : err.msg);
}

/* Decode a PROC_INFO / FILE_INFO / DONE; fails the test on an ERROR (message shown). */
static __attribute__ ((unused)) void
expect_msg (struct client *c, uint8_t type, struct proto_msg *m)
{
  struct proto_frame f;
  struct sbx_err err = { 0 };
  next (c, &f);
  if (f.type == PROTO_ERROR)
    {
      uint32_t code;
      char msg[512];
      proto_error_decode (f.payload, f.len, &code, msg, sizeof msg, &err);
      fail_msg ("expected frame %u, got ERROR: %s", type, msg);
    }
  assert_int_equal (f.type, type);
  assert_int_equal (proto_msg_decode (f.payload, f.len, m, &err), 0);
}

/* An ERROR; returns its errno. */
static __attribute__ ((unused)) int
expect_error (struct client *c)
{
  struct proto_frame f;
  struct sbx_err err = { 0 };
  next (c, &f);
  assert_int_equal (f.type, PROTO_ERROR);
  uint32_t code;
  int e;
  char msg[512];
  assert_int_equal (proto_error_decode_errno (f.payload, f.len, &code, &e, msg, sizeof msg, &err),
                    0);
  return e;
}
