/* img_finalize_rootfs on a small hand-made tree: the directories a lower layer needs, a
 * sandbox hostname and hosts, apt caches and the PEP 668 marker gone, and no write ever
 * follows a symlink planted in the tree out to the host. img_du counts what is there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "images/internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct fixture {
  char dir[PATH_MAX];
  char root[PATH_MAX];
};

static void
put (const char *base, const char *rel, const char *text)
{
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/%s", base, rel);
  FILE *fp = fopen (p, "we");
  if (!fp)
    fail_msg ("create %s", p);
  fputs (text, fp);
  fclose (fp);
}

static void
mk (const char *base, const char *rel)
{
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/%s", base, rel);
  assert_int_equal (sbx_mkdir_p (p, 0755), 0);
}

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  snprintf (f->dir, sizeof f->dir, "/tmp/sbx-test-imgroot-XXXXXX");
  assert_non_null (mkdtemp (f->dir));
  snprintf (f->root, sizeof f->root, "%s/rootfs", f->dir);
  mk (f->root, "etc");
  mk (f->root, "tmp");
  mk (f->root, "var/cache/apt/archives/partial");
  mk (f->root, "var/lib/apt/lists/partial");
  mk (f->root, "usr/lib/python3.11");
  put (f->root, "var/cache/apt/pkgcache.bin", "cache");
  put (f->root, "var/cache/apt/srcpkgcache.bin", "cache");
  put (f->root, "var/cache/apt/archives/x_1.0_amd64.deb", "deb");
  put (f->root, "var/lib/apt/lists/lock", "");
  put (f->root, "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "rel");
  put (f->root, "usr/lib/python3.11/EXTERNALLY-MANAGED", "[externally-managed]\n");
  put (f->root, "usr/lib/python3.11/os.py", "# keep\n");
  put (f->root, "etc/hostname", "buildhost\n");
  mk (f->root, "dev/pts");
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/dev/null", f->root);
  if (mknod (p, S_IFCHR | 0666, makedev (1, 3)) < 0 && errno != EPERM)
    fail_msg ("mknod %s", p);
  snprintf (p, sizeof p, "%s/dev/fd", f->root);
  assert_int_equal (symlink ("/proc/self/fd", p), 0);
  /* a symlink that points out of the tree: finalize must replace it, not write through */
  put (f->dir, "host-hosts", "HOST FILE\n");
  char target[PATH_MAX], link[PATH_MAX];
  snprintf (target, sizeof target, "%s/host-hosts", f->dir);
  snprintf (link, sizeof link, "%s/etc/hosts", f->root);
  assert_int_equal (symlink (target, link), 0);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;
  sbx_rm_rf (f->dir);
  free (f);
  return 0;
}

static int
exists (const char *base, const char *rel)
{
  char p[PATH_MAX];
  struct stat st;
  snprintf (p, sizeof p, "%s/%s", base, rel);
  return lstat (p, &st) == 0;
}

static void
read_rel (const char *base, const char *rel, char *buf, size_t cap)
{
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/%s", base, rel);
  if (sbx_read_file (p, buf, cap) < 0)
    fail_msg ("read %s", p);
}

static void
test_finalize (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  if (img_finalize_rootfs (f->root, &err) < 0)
    fail_msg ("finalize: %s", err.msg);

  static const struct {
    const char *path;
    mode_t mode;
  } want[] = { { "proc", 0555 }, { "sys", 0555 }, { "dev", 0755 },
               { "tmp", 01777 }, { "root", 0700 }, { "run", 0755 } };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    {
      char p[PATH_MAX];
      struct stat st;
      snprintf (p, sizeof p, "%s/%s", f->root, want[i].path);
      assert_int_equal (lstat (p, &st), 0);
      assert_true (S_ISDIR (st.st_mode));
      if ((st.st_mode & 07777) != want[i].mode)
        fail_msg ("/%s has mode %o, want %o", want[i].path, st.st_mode & 07777, want[i].mode);
    }

  char buf[512];
  read_rel (f->root, "etc/hostname", buf, sizeof buf);
  assert_string_equal (buf, "sandbox\n");
  struct stat st;
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/etc/hosts", f->root);
  assert_int_equal (lstat (p, &st), 0);
  assert_true (S_ISREG (st.st_mode));
  read_rel (f->root, "etc/hosts", buf, sizeof buf);
  assert_non_null (strstr (buf, "127.0.0.1\tlocalhost\n"));
  assert_non_null (strstr (buf, "sandbox"));
  read_rel (f->dir, "host-hosts", buf, sizeof buf);
  assert_string_equal (buf, "HOST FILE\n");

  assert_false (exists (f->root, "var/cache/apt/pkgcache.bin"));
  assert_false (exists (f->root, "var/cache/apt/srcpkgcache.bin"));
  assert_false (exists (f->root, "var/cache/apt/archives/x_1.0_amd64.deb"));
  assert_false (exists (f->root, "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"));
  assert_true (exists (f->root, "var/lib/apt/lists/lock"));
  assert_true (exists (f->root, "var/lib/apt/lists/partial"));
  assert_true (exists (f->root, "var/cache/apt/archives/partial"));
  assert_false (exists (f->root, "usr/lib/python3.11/EXTERNALLY-MANAGED"));
  assert_true (exists (f->root, "usr/lib/python3.11/os.py"));
  /* device nodes go (if this test could make one), symlinks and directories stay */
  assert_false (exists (f->root, "dev/null"));
  assert_true (exists (f->root, "dev/fd"));
  assert_true (exists (f->root, "dev/pts"));

  /* idempotent: a second pass over a finished tree changes nothing and does not fail */
  assert_int_equal (img_finalize_rootfs (f->root, &err), 0);
}

static void
test_finalize_refuses_file_where_dir_belongs (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  put (f->root, "proc", "not a directory");
  assert_int_equal (img_finalize_rootfs (f->root, &err), -1);
  assert_non_null (strstr (err.msg, "/proc"));
}

static void
test_du (void **state)
{
  struct fixture *f = *state;
  uint64_t before = 0, after = 0;
  assert_int_equal (img_du (f->root, &before), 0);
  assert_true (before > 0);
  char big[64 * 1024];
  memset (big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  put (f->root, "usr/big", big);
  assert_int_equal (img_du (f->root, &after), 0);
  assert_true (after >= before + sizeof big - 1);
  assert_int_equal (img_du ("/nonexistent/sbx", &after), -1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_finalize, setup, teardown),
    cmocka_unit_test_setup_teardown (test_finalize_refuses_file_where_dir_belongs, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_du, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
