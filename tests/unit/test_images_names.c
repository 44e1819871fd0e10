/* src/images name handling: exact matching of built-in names, name -> cache directory,
 * the error for unknown names, the cache lookup (no build: images are made by hand here),
 * and image.info parsing. Building for real is exercised by the integration tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "images/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
  char dir[PATH_MAX];
};

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  snprintf (f->dir, sizeof f->dir, "/tmp/sbx-test-images-XXXXXX");
  assert_non_null (mkdtemp (f->dir));
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
exists (const char *path)
{
  struct stat st;
  return lstat (path, &st) == 0;
}

static void
test_exact_names (void **state)
{
  assert_true (img_is_builtin ("python:3.11"));
  assert_true (img_is_builtin ("debian:bookworm"));
  static const char *const bad[] = {
    "", "python", "python:3", "python:3.1", "python:3.11 ", " python:3.11", "Python:3.11",
    "PYTHON:3.11", "python:3.11\n", "python:latest", "python-3.11", "debian", "debian:12",
    "debian:bookworm-slim", "docker.io/library/python:3.11", "../python-3.11", ".lock",
    "python:3.11/../../etc",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      if (img_is_builtin (bad[i]))
        fail_msg ("'%s' accepted as a built-in image", bad[i]);
      assert_null (img_builtin_find (bad[i]));
    }
  assert_false (img_is_builtin (NULL));
}

static void
test_name_to_dir (void **state)
{
  const struct img_builtin *p = img_builtin_find ("python:3.11");
  const struct img_builtin *d = img_builtin_find ("debian:bookworm");
  assert_non_null (p);
  assert_non_null (d);
  assert_string_equal (p->dir, "python-3.11");
  assert_string_equal (d->dir, "debian-bookworm");
  assert_non_null (strstr (p->include, "python3-pip"));
  assert_non_null (strstr (p->include, "python-is-python3"));
  assert_true (d->include == NULL || strstr (d->include, "python") == NULL);

  /* the public list, the catalog and the message list agree */
  const char *const *names = img_builtin_names ();
  size_t n = 0;
  for (; names[n]; n++)
    {
      const struct img_builtin *b = img_builtin_find (names[n]);
      assert_non_null (b);
      assert_string_equal (b->name, names[n]);
      assert_non_null (strstr (img_builtin_list (), names[n]));
      /* a cache directory is one plain path component, never hidden like .lock/.build-* */
      assert_null (strchr (b->dir, '/'));
      assert_true (b->dir[0] != '.' && b->dir[0] != '\0');
    }
  assert_int_equal (n, 2);
}

static void
test_unknown_name_touches_nothing (void **state)
{
  struct fixture *f = *state;
  char sd[PATH_MAX], rootfs[PATH_MAX];
  snprintf (sd, sizeof sd, "%s/state", f->dir);
  struct sbx_err err = { 0 };
  assert_int_equal (img_resolve (sd, "ubuntu:22.04", 0, rootfs, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  assert_string_equal (err.msg,
                       "unknown image 'ubuntu:22.04' (built-in: python:3.11, debian:bookworm)");
  assert_false (exists (sd));

  sbx_err_clear (&err);
  assert_int_equal (img_resolve (sd, NULL, 0, rootfs, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);

  struct img_info info;
  sbx_err_clear (&err);
  assert_int_equal (img_stat (sd, "python:3.12", &info, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  assert_false (exists (sd));
}

static void
test_state_dir_too_long (void **state)
{
  char sd[PATH_MAX], rootfs[PATH_MAX];
  memset (sd, 'a', sizeof sd - 1);
  sd[0] = '/';
  sd[PATH_MAX - 100] = '\0';
  struct sbx_err err = { 0 };
  assert_int_equal (img_resolve (sd, "python:3.11", 0, rootfs, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  sbx_err_clear (&err);
  assert_int_equal (img_resolve ("", "python:3.11", 0, rootfs, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
}

/* Lay out a cached image by hand, as a finished build leaves it. */
static void
make_cached (const char *sd, const char *dir, const char *info_text)
{
  char p[PATH_MAX];
  snprintf (p, sizeof p, "%s/images/%s/rootfs", sd, dir);
  assert_int_equal (sbx_mkdir_p (p, 0755), 0);
  if (!info_text)
    return;
  snprintf (p, sizeof p, "%s/images/%s/" IMG_INFO_FILE, sd, dir);
  FILE *fp = fopen (p, "we");
  assert_non_null (fp);
  fputs (info_text, fp);
  fclose (fp);
}

static void
test_cached_image_resolves_without_lock (void **state)
{
  struct fixture *f = *state;
  char rootfs[PATH_MAX], want[PATH_MAX], lock[PATH_MAX];
  struct sbx_err err = { 0 };
  make_cached (f->dir, "python-3.11",
               "name=python:3.11\ncreated_ms=1700000000000\nsize_bytes=123456789\n");
  assert_int_equal (img_resolve (f->dir, "python:3.11", 0, rootfs, &err), 0);
  snprintf (want, sizeof want, "%s/images/python-3.11/rootfs", f->dir);
  assert_string_equal (rootfs, want);
  /* the fast path never takes (nor creates) the build lock */
  snprintf (lock, sizeof lock, "%s/images/" IMG_LOCK_FILE, f->dir);
  assert_false (exists (lock));

  struct img_info info;
  assert_int_equal (img_stat (f->dir, "python:3.11", &info, &err), 1);
  assert_string_equal (info.name, "python:3.11");
  assert_int_equal (info.created_ms, 1700000000000LL);
  assert_int_equal (info.size_bytes, 123456789);
  assert_string_equal (info.rootfs, want);

  /* the other image is not cached: img_stat says so and builds nothing */
  assert_int_equal (img_stat (f->dir, "debian:bookworm", &info, &err), 0);
  snprintf (want, sizeof want, "%s/images/debian-bookworm", f->dir);
  assert_false (exists (want));
}

static void
test_incomplete_image_is_not_cached (void **state)
{
  struct fixture *f = *state;
  struct img_info info;
  struct sbx_err err = { 0 };
  char images[PATH_MAX];
  snprintf (images, sizeof images, "%s/images", f->dir);
  /* a rootfs without its info file is what a half-finished copy would look like */
  make_cached (f->dir, "debian-bookworm", NULL);
  assert_false (img_is_complete (images, "debian-bookworm"));
  assert_int_equal (img_stat (f->dir, "debian:bookworm", &info, &err), 0);

  make_cached (f->dir, "python-3.11", "name=python:3.11\nsize_bytes=1\n");
  assert_true (img_is_complete (images, "python-3.11"));
  assert_int_equal (img_stat (f->dir, "python:3.11", &info, &err), -1);
  assert_int_equal (err.code, SBX_E_INTERNAL);
}

static void
test_parse_info (void **state)
{
  struct img_info info;
  assert_int_equal (img_parse_info ("name=debian:bookworm\ndir=debian-bookworm\n"
                                    "created=2026-01-01T00:00:00Z\ncreated_ms=42\n"
                                    "size_bytes=18446744073709551615\npackages=\n",
                                    &info),
                    0);
  assert_string_equal (info.name, "debian:bookworm");
  assert_int_equal (info.created_ms, 42);
  assert_true (info.size_bytes == UINT64_MAX);
  /* no trailing newline is fine */
  assert_int_equal (img_parse_info ("size_bytes=1\ncreated_ms=2\nname=x", &info), 0);
  assert_string_equal (info.name, "x");

  static const char *const bad[] = {
    "",
    "name=x\ncreated_ms=1\n",                           /* size missing */
    "name=\ncreated_ms=1\nsize_bytes=1\n",               /* empty name */
    "name=x\ncreated_ms=-1\nsize_bytes=1\n",             /* negative */
    "name=x\ncreated_ms=1\nsize_bytes=18446744073709551616\n", /* overflow */
    "name=x\ncreated_ms=1\nsize_bytes=12ab\n",
    "name=x\ncreated_ms=9223372036854775808\nsize_bytes=1\n", /* > INT64_MAX */
    "name=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
    "created_ms=1\nsize_bytes=1\n", /* name too long for the struct */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (img_parse_info (bad[i], &info) == 0)
      fail_msg ("accepted bad info #%zu", i);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_exact_names),
    cmocka_unit_test (test_name_to_dir),
    cmocka_unit_test_setup_teardown (test_unknown_name_touches_nothing, setup, teardown),
    cmocka_unit_test (test_state_dir_too_long),
    cmocka_unit_test_setup_teardown (test_cached_image_resolves_without_lock, setup, teardown),
    cmocka_unit_test_setup_teardown (test_incomplete_image_is_not_cached, setup, teardown),
    cmocka_unit_test (test_parse_info),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
