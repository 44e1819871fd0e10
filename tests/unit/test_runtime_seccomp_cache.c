/* The on-disk seccomp cache: a first prepare with a state dir compiles and writes
 * <state_dir>/cache/seccomp-<key>.bpf (0600 in a 0700 dir); loading it gives the same
 * programs; every kind of damage (truncation, flipped byte, wrong key, wrong mode, a
 * symlink, a group-writable directory) is a miss, never a load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char state[] = "/tmp/sbx-test-seccomp-cache.XXXXXX";
static char path[PATH_MAX];
static uint64_t key;

static int
setup (void **st)
{
  if (!mkdtemp (state))
    return -1;
  struct sbx_err err = { 0 };
  if (rt_seccomp_policy_key (&key) < 0 || rt_seccomp_prepare_in (state, &err) < 0)
    return -1;
  snprintf (path, sizeof path, "%s/cache/seccomp-%016llx.bpf", state, (unsigned long long) key);
  return 0;
}

static int
teardown (void **st)
{
  sbx_rm_rf (state);
  return 0;
}

static void
assert_same_as_prepared (const struct sock_fprog got[2])
{
  const struct sock_fprog *p;
  assert_int_equal (rt_seccomp_programs (&p), 2);
  for (int k = 0; k < 2; k++)
    {
      assert_int_equal (got[k].len, p[k].len);
      assert_memory_equal (got[k].filter, p[k].filter, p[k].len * sizeof (struct sock_filter));
    }
}

static void
free_progs (struct sock_fprog p[2])
{
  free (p[0].filter);
  free (p[1].filter);
}

static void
test_key_is_stable (void **st)
{
  uint64_t k2;
  assert_int_equal (rt_seccomp_policy_key (&k2), 0);
  assert_true (k2 == key);
}

static void
test_written_private_and_loads (void **st)
{
  struct stat s;
  char dir[PATH_MAX];
  snprintf (dir, sizeof dir, "%s/cache", state);
  assert_int_equal (stat (dir, &s), 0);
  assert_int_equal (s.st_mode & 07777, 0700);
  assert_int_equal (lstat (path, &s), 0);
  assert_true (S_ISREG (s.st_mode));
  assert_int_equal (s.st_mode & 07777, 0600);

  struct sock_fprog got[2];
  assert_int_equal (rt_seccomp_cache_load (state, key, got), 0);
  assert_same_as_prepared (got);
  free_progs (got);
  /* Another key never loads this file's content. */
  assert_int_equal (rt_seccomp_cache_load (state, key ^ 1, got), -1);
}

/* Save the file, let fn damage it, expect a miss, restore. */
static void
expect_miss_after (void (*damage) (void))
{
  char *orig = malloc (65536);
  assert_non_null (orig);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  assert_true (fd >= 0);
  ssize_t n = read (fd, orig, 65536);
  close (fd);
  assert_true (n > 0);

  damage ();
  struct sock_fprog got[2];
  assert_int_equal (rt_seccomp_cache_load (state, key, got), -1);

  unlink (path);
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, orig, (size_t) n), n);
  close (fd);
  free (orig);
  assert_int_equal (rt_seccomp_cache_load (state, key, got), 0);
  free_progs (got);
}

static void
truncate_one_insn (void)
{
  struct stat s;
  assert_int_equal (stat (path, &s), 0);
  assert_int_equal (truncate (path, s.st_size - 8), 0);
}

static void
truncate_half_insn (void)
{
  struct stat s;
  assert_int_equal (stat (path, &s), 0);
  assert_int_equal (truncate (path, s.st_size - 3), 0);
}

static void
flip_last_byte (void)
{
  int fd = open (path, O_RDWR | O_CLOEXEC);
  assert_true (fd >= 0);
  off_t end = lseek (fd, 0, SEEK_END);
  unsigned char c;
  assert_int_equal (pread (fd, &c, 1, end - 1), 1);
  c ^= 0x01;
  assert_int_equal (pwrite (fd, &c, 1, end - 1), 1);
  close (fd);
}

static void
group_writable (void)
{
  assert_int_equal (chmod (path, 0620), 0);
}

static void
replaced_by_symlink (void)
{
  char target[PATH_MAX + 8];
  snprintf (target, sizeof target, "%s.real", path);
  assert_int_equal (rename (path, target), 0);
  assert_int_equal (symlink (target, path), 0);
}

static void
test_damage_is_a_miss (void **st)
{
  expect_miss_after (truncate_one_insn);
  expect_miss_after (truncate_half_insn);
  expect_miss_after (flip_last_byte);
  expect_miss_after (group_writable);
  expect_miss_after (replaced_by_symlink);
}

static void
test_open_dir_is_a_miss (void **st)
{
  char dir[PATH_MAX];
  snprintf (dir, sizeof dir, "%s/cache", state);
  struct sock_fprog got[2];
  assert_int_equal (chmod (dir, 0770), 0);
  assert_int_equal (rt_seccomp_cache_load (state, key, got), -1);
  assert_int_equal (rt_seccomp_cache_store (state, key, got), -1); /* not written there */
  assert_int_equal (chmod (dir, 0700), 0);
  assert_int_equal (rt_seccomp_cache_load (state, key, got), 0);
  free_progs (got);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_key_is_stable),
    cmocka_unit_test (test_written_private_and_loads),
    cmocka_unit_test (test_damage_is_a_miss),
    cmocka_unit_test (test_open_dir_is_a_miss),
  };
  return cmocka_run_group_tests (tests, setup, teardown);
}
