/* sbx-init's file requests and watches, outside any sandbox (its root is then the host's,
 * so the tests work in a temporary directory): byte-exact writes and reads in chunks,
 * atomic replace that never follows a planted symlink, append with O_NOFOLLOW, magic links
 * and "." / ".." refused, list depth, mkdir -p, recursive remove of a link (the link only),
 * rename, and inotify events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "agent_harness.h"

static void
put_file (const char *path, const char *s)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  assert_int_equal (sbx_write_all (fd, s, strlen (s)), 0);
  close (fd);
}

static void
path_in (char *out, size_t cap, const char *rel)
{
  snprintf (out, cap, "%s/%s", dir, rel);
}

static void
write_file (struct client *c, uint32_t id, const char *path, const void *data, size_t n,
            uint32_t flags, int mode)
{
  struct proto_msg m = { .path = (char *) path, .flags = flags, .mode = (uint32_t) mode };
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_FLAGS);
  if (mode >= 0)
    PROTO_SET (&m, PROTO_M_MODE);
  send_msg (c, PROTO_FILE_WRITE, id, &m);
  struct proto_frame f;
  next (c, &f);
  assert_int_equal (f.type, PROTO_READY);
  const uint8_t *p = data;
  for (size_t o = 0; o < n; o += PROTO_DATA_CHUNK)
    {
      size_t k = n - o < PROTO_DATA_CHUNK ? n - o : PROTO_DATA_CHUNK;
      assert_int_equal (proto_frame_write (c->fd, PROTO_FILE_DATA, id, p + o, (uint32_t) k), 0);
    }
  assert_int_equal (proto_frame_write (c->fd, PROTO_FILE_DATA, id, NULL, 0), 0);
  struct proto_msg done;
  expect_msg (c, PROTO_DONE, &done);
  assert_int_equal (done.size, n);
  proto_msg_free (&done);
}

/* FILE_READ; 0 and the bytes, or the errno of the refusal. */
static int
read_file (struct client *c, uint32_t id, const char *path, struct proto_buf *out)
{
  struct proto_msg m = { .path = (char *) path };
  PROTO_SET (&m, PROTO_M_PATH);
  send_msg (c, PROTO_FILE_READ, id, &m);
  struct proto_frame f;
  next (c, &f);
  if (f.type == PROTO_ERROR)
    {
      uint32_t code;
      int e;
      char msg[256];
      struct sbx_err err = { 0 };
      proto_error_decode_errno (f.payload, f.len, &code, &e, msg, sizeof msg, &err);
      return e;
    }
  assert_int_equal (f.type, PROTO_FILE_INFO);
  for (;;)
    {
      next (c, &f);
      if (f.type == PROTO_DONE)
        return 0;
      assert_int_equal (f.type, PROTO_FILE_DATA);
      assert_true (f.len <= PROTO_DATA_CHUNK);
      assert_int_equal (proto_buf_append (out, f.payload, f.len), 0);
    }
}

/* FILE_OP; 0 (DONE, FILE_INFOs counted in *infos) or the errno. */
static int
op (struct client *c, uint32_t id, uint32_t kind, const char *path, const char *path2,
    uint32_t flags, uint32_t depth, int *infos)
{
  struct proto_msg m = { .kind = kind, .path = (char *) path, .path2 = (char *) path2,
                         .flags = flags, .depth = depth };
  PROTO_SET (&m, PROTO_M_KIND);
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_FLAGS);
  PROTO_SET (&m, PROTO_M_DEPTH);
  if (path2)
    PROTO_SET (&m, PROTO_M_PATH2);
  send_msg (c, PROTO_FILE_OP, id, &m);
  int n = 0;
  for (;;)
    {
      struct proto_frame f;
      next (c, &f);
      if (f.type == PROTO_FILE_INFO)
        {
          n++;
          continue;
        }
      if (infos)
        *infos = n;
      if (f.type == PROTO_DONE)
        return 0;
      assert_int_equal (f.type, PROTO_ERROR);
      uint32_t code;
      int e;
      char msg[256];
      struct sbx_err err = { 0 };
      proto_error_decode_errno (f.payload, f.len, &code, &e, msg, sizeof msg, &err);
      return e;
    }
}

static void
test_round_trip_binary (void **state)
{
  struct client c;
  client_open (&c);
  size_t n = 3 * PROTO_DATA_CHUNK + 12345;
  uint8_t *blob = malloc (n);
  for (size_t i = 0; i < n; i++)
    blob[i] = (uint8_t) (i * 2654435761u >> 13);
  char p[160];
  path_in (p, sizeof p, "deep/er/blob");
  write_file (&c, 1, p, blob, n, PROTO_F_PARENTS, 0640);
  struct stat st;
  assert_int_equal (stat (p, &st), 0);
  assert_int_equal (st.st_mode & 07777, 0640);
  struct proto_buf got = { 0 };
  assert_int_equal (read_file (&c, 2, p, &got), 0);
  assert_int_equal (got.len, n);
  assert_memory_equal (got.data, blob, n);
  proto_buf_free (&got);
  /* empty */
  path_in (p, sizeof p, "empty");
  write_file (&c, 3, p, "", 0, 0, -1);
  assert_int_equal (read_file (&c, 4, p, &got), 0);
  assert_int_equal (got.len, 0);
  /* append twice */
  path_in (p, sizeof p, "log");
  write_file (&c, 5, p, "ab", 2, PROTO_F_APPEND, -1);
  write_file (&c, 6, p, "cd", 2, PROTO_F_APPEND, -1);
  assert_int_equal (read_file (&c, 7, p, &got), 0);
  assert_int_equal (got.len, 4);
  assert_memory_equal (got.data, "abcd", 4);
  proto_buf_free (&got);
  free (blob);
  client_close (&c);
}

static void
test_symlinks_and_escapes (void **state)
{
  struct client c;
  client_open (&c);
  char target[160], link[160], p[256];
  path_in (target, sizeof target, "target");
  path_in (link, sizeof link, "link");
  put_file (target, "original");
  assert_int_equal (symlink (target, link), 0);
  /* write replaces the link, the target is untouched */
  write_file (&c, 1, link, "new", 3, 0, -1);
  char buf[64];
  assert_int_equal (sbx_read_file (target, buf, sizeof buf), 8);
  struct stat st;
  assert_int_equal (lstat (link, &st), 0);
  assert_true (S_ISREG (st.st_mode));
  /* append refuses a link */
  path_in (link, sizeof link, "link2");
  assert_int_equal (symlink (target, link), 0);
  struct proto_msg m = { .path = link, .flags = PROTO_F_APPEND };
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_FLAGS);
  send_msg (&c, PROTO_FILE_WRITE, 2, &m);
  assert_int_equal (expect_error (&c), ELOOP);
  assert_int_equal (sbx_read_file (target, buf, sizeof buf), 8);
  /* magic links: refused, whatever the operation */
  struct proto_buf got = { 0 };
  snprintf (p, sizeof p, "/proc/self/root%s", target);
  assert_int_equal (read_file (&c, 3, p, &got), ELOOP);
  snprintf (p, sizeof p, "/proc/%d/cwd/x", agent_pid);
  assert_int_equal (read_file (&c, 4, p, &got), ELOOP);
  path_in (link, sizeof link, "rootlink");
  assert_int_equal (symlink ("/proc/self/root", link), 0);
  snprintf (p, sizeof p, "%s%s", link, target);
  assert_int_equal (read_file (&c, 5, p, &got), ELOOP);
  snprintf (p, sizeof p, "%s/tmp/x", link);
  assert_int_equal (op (&c, 6, PROTO_OP_MKDIR, p, NULL, PROTO_F_PARENTS, 0, NULL), ELOOP);
  /* the agent's own /proc entries */
  assert_int_equal (read_file (&c, 20, "/proc/self/environ", &got), EACCES);
  snprintf (p, sizeof p, "/proc/%d/maps", agent_pid);
  assert_int_equal (read_file (&c, 21, p, &got), EACCES);
  struct proto_msg comm = { .path = "/proc/self/comm", .flags = PROTO_F_APPEND };
  PROTO_SET (&comm, PROTO_M_PATH);
  PROTO_SET (&comm, PROTO_M_FLAGS);
  send_msg (&c, PROTO_FILE_WRITE, 22, &comm);
  assert_int_equal (expect_error (&c), EACCES);
  assert_int_equal (op (&c, 23, PROTO_OP_LIST, "/proc/thread-self", NULL, 0, 1, NULL), EACCES);
  assert_int_equal (op (&c, 24, PROTO_OP_LIST, "/proc", NULL, 0, 1, NULL), 0); /* others: fine */
  /* "." and ".." and relative paths */
  snprintf (p, sizeof p, "%s/../x", dir);
  assert_int_equal (read_file (&c, 7, p, &got), EINVAL);
  snprintf (p, sizeof p, "%s/./x", dir);
  assert_int_equal (op (&c, 8, PROTO_OP_REMOVE, p, NULL, 0, 0, NULL), EINVAL);
  assert_int_equal (op (&c, 9, PROTO_OP_STAT, "relative", NULL, 0, 0, NULL), EINVAL);
  assert_int_equal (op (&c, 10, PROTO_OP_RENAME, target, "/tmp/../x", 0, 0, NULL), EINVAL);
  /* not a regular file */
  assert_int_equal (read_file (&c, 11, dir, &got), EISDIR);
  assert_int_equal (read_file (&c, 12, "/dev/zero", &got), EINVAL);
  proto_buf_free (&got);
  client_close (&c);
}

static void
test_tree_operations (void **state)
{
  struct client c;
  client_open (&c);
  char p[160], q[160];
  path_in (p, sizeof p, "t/a/b/c");
  assert_int_equal (op (&c, 1, PROTO_OP_MKDIR, p, NULL, PROTO_F_PARENTS | PROTO_F_EXIST_OK, 0,
                        NULL), 0);
  assert_int_equal (op (&c, 2, PROTO_OP_MKDIR, p, NULL, PROTO_F_PARENTS | PROTO_F_EXIST_OK, 0,
                        NULL), 0);
  assert_int_equal (op (&c, 3, PROTO_OP_MKDIR, p, NULL, 0, 0, NULL), EEXIST);
  path_in (p, sizeof p, "t/a/b/c/f");
  write_file (&c, 4, p, "x", 1, 0, -1);
  int n;
  path_in (p, sizeof p, "t");
  assert_int_equal (op (&c, 5, PROTO_OP_LIST, p, NULL, 0, 1, &n), 0);
  assert_int_equal (n, 1);
  assert_int_equal (op (&c, 6, PROTO_OP_LIST, p, NULL, 0, 10, &n), 0);
  assert_int_equal (n, 4);
  /* a link to a directory is removed itself, even recursively */
  path_in (q, sizeof q, "dirlink");
  path_in (p, sizeof p, "t/a");
  assert_int_equal (symlink (p, q), 0);
  assert_int_equal (op (&c, 7, PROTO_OP_REMOVE, q, NULL, PROTO_F_RECURSIVE, 0, NULL), 0);
  path_in (p, sizeof p, "t/a/b/c/f");
  assert_int_equal (access (p, F_OK), 0);
  path_in (p, sizeof p, "t/a/b/c/f");
  path_in (q, sizeof q, "t/moved");
  assert_int_equal (op (&c, 8, PROTO_OP_RENAME, p, q, 0, 0, NULL), 0);
  assert_int_equal (access (q, F_OK), 0);
  path_in (p, sizeof p, "t");
  assert_int_equal (op (&c, 9, PROTO_OP_REMOVE, p, NULL, 0, 0, NULL), ENOTEMPTY);
  assert_int_equal (op (&c, 10, PROTO_OP_REMOVE, p, NULL, PROTO_F_RECURSIVE, 0, NULL), 0);
  assert_int_equal (access (p, F_OK), -1);
  assert_int_equal (op (&c, 11, PROTO_OP_REMOVE, p, NULL, 0, 0, NULL), ENOENT);
  client_close (&c);
}

/* PID 1 recurses on its own stack: a remove stops at 256 levels instead of crashing, and
 * a shallower tree goes whole. */
static void
test_deep_remove_is_bounded (void **state)
{
  struct client c;
  client_open (&c);
  char top[160];
  path_in (top, sizeof top, "deep-tree");
  assert_int_equal (mkdir (top, 0755), 0);
  int fd = open (top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; i < 300; i++)
    {
      assert_int_equal (mkdirat (fd, "d", 0755), 0);
      int nfd = openat (fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      close (fd);
      fd = nfd;
      assert_true (fd >= 0);
    }
  close (fd);
  assert_int_equal (op (&c, 1, PROTO_OP_REMOVE, top, NULL, PROTO_F_RECURSIVE, 0, NULL),
                    ENAMETOOLONG);
  /* the agent is fine and a normal tree still goes */
  char p[200];
  path_in (p, sizeof p, "shallow/a/b");
  assert_int_equal (op (&c, 2, PROTO_OP_MKDIR, p, NULL, PROTO_F_PARENTS, 0, NULL), 0);
  path_in (p, sizeof p, "shallow");
  assert_int_equal (op (&c, 3, PROTO_OP_REMOVE, p, NULL, PROTO_F_RECURSIVE, 0, NULL), 0);
  client_close (&c);
}

static void
wait_event (struct client *c, uint32_t kind, const char *path)
{
  for (;;)
    {
      struct proto_msg ev;
      expect_msg (c, PROTO_WATCH_EVENT, &ev);
      bool hit = ev.kind == kind && ev.path && !strcmp (ev.path, path);
      proto_msg_free (&ev);
      if (hit)
        return;
    }
}

static void
test_watch (void **state)
{
  struct client c;
  client_open (&c);
  char w[160], p[256];
  path_in (w, sizeof w, "watched");
  assert_int_equal (mkdir (w, 0755), 0);
  struct proto_msg m = { .path = w, .flags = PROTO_F_RECURSIVE };
  PROTO_SET (&m, PROTO_M_PATH);
  PROTO_SET (&m, PROTO_M_FLAGS);
  send_msg (&c, PROTO_WATCH, 1, &m);
  struct proto_frame f;
  next (&c, &f);
  assert_int_equal (f.type, PROTO_READY);
  /* one step at a time: a directory's own watch exists once its creation was reported */
  snprintf (p, sizeof p, "%s/sub", w);
  assert_int_equal (mkdir (p, 0755), 0);
  wait_event (&c, PROTO_W_CREATED, p);
  snprintf (p, sizeof p, "%s/sub/file", w);
  put_file (p, "1");
  wait_event (&c, PROTO_W_CREATED, p);
  put_file (p, "2");
  wait_event (&c, PROTO_W_MODIFIED, p);
  unlink (p);
  wait_event (&c, PROTO_W_DELETED, p);
  client_close (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_round_trip_binary),
    cmocka_unit_test (test_symlinks_and_escapes),
    cmocka_unit_test (test_tree_operations),
    cmocka_unit_test (test_deep_remove_is_bounded),
    cmocka_unit_test (test_watch),
  };
  return cmocka_run_group_tests (tests, agent_setup, agent_teardown);
}
