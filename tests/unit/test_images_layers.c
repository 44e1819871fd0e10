/* src/images layers on real directories (run as root: whiteouts are device nodes):
 * copying an upper layer (owners shifted, symlinks copied not followed, hard links,
 * whiteouts, opaque directories, deterministic hashes), flattening (the flat layer over
 * the base must diff empty against the stack it replaces), diffs with overlay semantics,
 * opening a file through a view, volume mount point rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "images/layer.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static char root[PATH_MAX];

static void
path (char *out, const char *rel)
{
  snprintf (out, PATH_MAX, "%s/%s", root, rel);
}

static void
mkd (const char *rel)
{
  char p[PATH_MAX];
  path (p, rel);
  assert_int_equal (mkdir (p, 0755), 0);
}

static void
put (const char *rel, const char *text)
{
  char p[PATH_MAX];
  path (p, rel);
  int fd = open (p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, text, strlen (text)), (ssize_t) strlen (text));
  close (fd);
}

static void
whiteout (const char *rel)
{
  char p[PATH_MAX];
  path (p, rel);
  assert_int_equal (mknod (p, S_IFCHR | 0, makedev (0, 0)), 0);
}

static void
opaque (const char *rel)
{
  char p[PATH_MAX];
  path (p, rel);
  assert_int_equal (setxattr (p, "user.overlay.opaque", "y", 1, 0), 0);
}

static int
dfd (const char *rel)
{
  char p[PATH_MAX];
  path (p, rel);
  int fd = open (p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true (fd >= 0);
  return fd;
}

static int
setup (void **state)
{
  snprintf (root, sizeof root, "/tmp/sbx-test-layers-XXXXXX");
  assert_non_null (mkdtemp (root));
  return 0;
}

static int
teardown (void **state)
{
  sbx_rm_rf (root);
  return 0;
}

static void
hash_of (int src, uint32_t base, const char *dst_rel, char hex[65])
{
  mkd (dst_rel);
  int d = dfd (dst_rel);
  struct img_hash h;
  assert_int_equal (img_hash_init (&h), 0);
  struct img_copy x = { .uid_base = base, .hash = &h, .dst_root = d };
  struct sbx_err err = { 0 };
  if (img_copy_tree (&x, src, d, "", &err) < 0)
    fail_msg ("copy: %s", err.msg);
  img_copy_free (&x);
  img_hash_final_hex (&h, hex);
  close (d);
}

static void
test_copy_upper (void **state)
{
  const uint32_t base = 0x20000000u;
  mkd ("up");
  mkd ("up/d");
  put ("up/d/f", "hello");
  char p[PATH_MAX], q[PATH_MAX];
  path (p, "up/d/f");
  assert_int_equal (chown (p, base + 5, base + 6), 0);
  path (q, "up/d/hard");
  assert_int_equal (link (p, q), 0);
  path (p, "up/link");
  assert_int_equal (symlink ("/etc/passwd", p), 0);
  whiteout ("up/gone");
  mkd ("up/op");
  opaque ("up/op");
  put ("up/outsider", "x");
  path (p, "up/outsider");
  assert_int_equal (chown (p, 1000, 1000), 0); /* not in the range: nobody */
  int up = dfd ("up");
  char h1[65], h2[65], h3[65];
  hash_of (up, base, "c1", h1);
  hash_of (up, base, "c2", h2);
  assert_string_equal (h1, h2);
  struct stat st, st2;
  path (p, "c1/d/f");
  assert_int_equal (lstat (p, &st), 0);
  assert_int_equal (st.st_uid, 5);
  assert_int_equal (st.st_gid, 6);
  path (q, "c1/d/hard");
  assert_int_equal (lstat (q, &st2), 0);
  assert_true (st.st_ino == st2.st_ino);
  path (p, "c1/link");
  assert_int_equal (lstat (p, &st), 0);
  assert_true (S_ISLNK (st.st_mode));
  path (p, "c1/gone");
  assert_int_equal (lstat (p, &st), 0);
  assert_true (img_is_whiteout (&st));
  int op = dfd ("c1/op");
  assert_true (img_is_opaque (op));
  close (op);
  path (p, "c1/outsider");
  assert_int_equal (lstat (p, &st), 0);
  assert_int_equal (st.st_uid, 65534);
  /* one byte more: another hash */
  put ("up/d/f", "hello!");
  hash_of (up, base, "c3", h3);
  assert_string_not_equal (h1, h3);
  close (up);
}

/* A file of 64 MiB with 4 bytes of data: the copy takes blocks only for the data, reads
 * back the same bytes, and hashes the same as a file whose zeros were written. */
static void
make_big (const char *rel, int written_zeros)
{
  char p[PATH_MAX];
  path (p, rel);
  int fd = open (p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  if (written_zeros)
    {
      static char z[1 << 20];
      for (int i = 0; i < 64; i++)
        assert_int_equal (write (fd, z, sizeof z), (ssize_t) sizeof z);
    }
  else
    assert_int_equal (ftruncate (fd, 64 << 20), 0);
  assert_int_equal (pwrite (fd, "tail", 4, 40 << 20), 4);
  struct timespec ts[2] = { { 1000, 0 }, { 1000, 0 } };
  assert_int_equal (futimens (fd, ts), 0);
  close (fd);
}

static void
test_copy_sparse (void **state)
{
  mkd ("s1");
  mkd ("s2");
  make_big ("s1/big", 0);
  make_big ("s2/big", 1);
  int s1 = dfd ("s1"), s2 = dfd ("s2");
  char h1[65], h2[65];
  hash_of (s1, 0, "c1", h1);
  hash_of (s2, 0, "c2", h2);
  assert_string_equal (h1, h2);
  close (s1);
  close (s2);
  char p[PATH_MAX];
  for (int i = 1; i <= 2; i++)
    {
      snprintf (p, sizeof p, "%s/c%d/big", root, i);
      struct stat st;
      assert_int_equal (stat (p, &st), 0);
      assert_int_equal (st.st_size, 64 << 20);
      assert_true (st.st_blocks * 512 <= 1 << 20);
      int fd = open (p, O_RDONLY | O_CLOEXEC);
      char b[8];
      assert_int_equal (pread (fd, b, 4, 40 << 20), 4);
      assert_memory_equal (b, "tail", 4);
      assert_int_equal (pread (fd, b, 8, 20 << 20), 8);
      assert_memory_equal (b, "\0\0\0\0\0\0\0\0", 8);
      close (fd);
    }
}

/* base: a, b/x, b/y, c/z, e;  l1 (over base): rm a, b opaque {n}, new f;  l2 (over l1):
 * rm c, new a (again), b/m, f replaced by a directory f/g */
static void
make_stack (void)
{
  mkd ("base");
  put ("base/a", "a0");
  mkd ("base/b");
  put ("base/b/x", "x");
  put ("base/b/y", "y");
  mkd ("base/c");
  put ("base/c/z", "z");
  put ("base/e", "e");
  mkd ("l1");
  whiteout ("l1/a");
  mkd ("l1/b");
  opaque ("l1/b");
  put ("l1/b/n", "n");
  put ("l1/f", "f");
  mkd ("l2");
  whiteout ("l2/c");
  put ("l2/a", "a2");
  mkd ("l2/b");
  put ("l2/b/m", "m");
  mkd ("l2/f");
  opaque ("l2/f");
  put ("l2/f/g", "g");
}

static void
view (struct img_view *v, const char *const *rels, int n)
{
  v->n = 0;
  for (int i = 0; i < n; i++)
    {
      v->uid_base[v->n] = 0;
      v->fds[v->n++] = dfd (rels[i]);
    }
}

static void
close_view (struct img_view *v)
{
  for (int i = 0; i < v->n; i++)
    close (v->fds[i]);
}

static void
expect (char **got, size_t n, const char *const *want, size_t nw)
{
  if (n != nw)
    {
      for (size_t i = 0; i < n; i++)
        fprintf (stderr, "  got %s\n", got[i]);
      fail_msg ("%zu paths, expected %zu", n, nw);
    }
  for (size_t i = 0; i < n; i++)
    assert_string_equal (got[i], want[i]);
}

static void
test_diff_and_view (void **state)
{
  make_stack ();
  struct img_view old, nw;
  const char *o[] = { "base" }, *n[] = { "l2", "l1", "base" };
  view (&old, o, 1);
  view (&nw, n, 3);
  struct img_diff d;
  struct sbx_err err = { 0 };
  assert_int_equal (img_diff_views (&old, 0, &nw, 2, &d, &err), 0);
  const char *created[] = { "/b/m", "/b/n", "/f" }, *modified[] = { "/a" },
             *deleted[] = { "/b/x", "/b/y", "/c" };
  expect (d.created, d.n_created, created, 3);
  expect (d.modified, d.n_modified, modified, 1);
  expect (d.deleted, d.n_deleted, deleted, 3);
  img_diff_free (&d);
  /* and the other way round */
  assert_int_equal (img_diff_views (&nw, 2, &old, 0, &d, &err), 0);
  expect (d.deleted, d.n_deleted, created, 3);
  expect (d.created, d.n_created, deleted, 3);
  img_diff_free (&d);
  /* through the view: hidden, replaced, merged */
  int fd = img_view_open (&nw, "a");
  char buf[8] = "";
  assert_true (fd >= 0);
  assert_int_equal (read (fd, buf, sizeof buf), 2);
  assert_string_equal (buf, "a2");
  close (fd);
  assert_int_equal (img_view_open (&nw, "c/z"), -1);
  assert_int_equal (errno, ENOENT);
  assert_int_equal (img_view_open (&nw, "b/x"), -1); /* under l1's opaque b */
  fd = img_view_open (&nw, "b/n");
  assert_true (fd >= 0);
  close (fd);
  assert_int_equal (img_view_open (&nw, "b"), -1); /* a directory */
  close_view (&old);
  close_view (&nw);
}

static void
test_flatten_means_the_same (void **state)
{
  make_stack ();
  char l2[PATH_MAX], l1[PATH_MAX];
  path (l2, "l2");
  path (l1, "l1");
  const char *dirs[] = { l2, l1 };
  mkd ("flat");
  int d = dfd ("flat");
  struct sbx_err err = { 0 };
  if (img_flatten_into (dirs, 2, d, NULL, &err) < 0)
    fail_msg ("flatten: %s", err.msg);
  close (d);
  struct img_view stack, flat;
  const char *s[] = { "l2", "l1", "base" }, *f[] = { "flat", "base" };
  view (&stack, s, 3);
  view (&flat, f, 2);
  struct img_diff df;
  assert_int_equal (img_diff_views (&stack, 2, &flat, 1, &df, &err), 0);
  assert_int_equal (df.n_created + df.n_modified + df.n_deleted, 0);
  img_diff_free (&df);
  /* the merged b is opaque (l1 cut the base off), f is a directory with only g */
  int b = dfd ("flat/b");
  assert_true (img_is_opaque (b));
  close (b);
  close_view (&stack);
  close_view (&flat);
}

static void
test_volume_targets (void **state)
{
  const char *ok[] = { "/data", "/mnt/vol", "/home/user/.cache", "/a.b/c-d" };
  const char *bad[] = { NULL, "", "/", "data", "/data/", "/a//b", "/a/./b", "/a/../b", "/..",
                        "/proc", "/proc/x", "/sys", "/dev/shm", "/tmp", "/tmp/x" };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    assert_true (rt_volume_target_ok (ok[i]));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (rt_volume_target_ok (bad[i]))
      fail_msg ("accepted '%s'", bad[i] ? bad[i] : "(null)");
  assert_true (rt_volume_target_ok ("/procfs")); /* a prefix is not the directory */
  assert_true (img_volume_name_ok ("data-1.x_y"));
  assert_false (img_volume_name_ok ("-x"));
  assert_false (img_volume_name_ok ("X"));
  assert_false (img_volume_name_ok ("a/b"));
  assert_true (img_layer_id_valid ("l0123456789abcdef0123456789abcdef"));
  assert_false (img_layer_id_valid ("l0123456789abcdef0123456789abcde"));
  assert_false (img_layer_id_valid ("../../etc/passwd"));
}

int
main (void)
{
  if (geteuid () != 0)
    {
      fprintf (stderr, "test_images_layers: skipped (needs root for whiteout device nodes)\n");
      return 0;
    }
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_copy_upper, setup, teardown),
    cmocka_unit_test_setup_teardown (test_copy_sparse, setup, teardown),
    cmocka_unit_test_setup_teardown (test_diff_and_view, setup, teardown),
    cmocka_unit_test_setup_teardown (test_flatten_means_the_same, setup, teardown),
    cmocka_unit_test (test_volume_targets),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
