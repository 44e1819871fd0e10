/* The spec of a spawn as it travels to a spawner process (src/runtime/spawner.c): every
 * field comes back, a NULL string stays NULL, and a truncated, padded or miscounted
 * request is refused instead of read past its end (ASan watches). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>

static char *buf;

static int
setup (void **state)
{
  buf = malloc (RT_SPAWN_REQ_MAX);
  return buf ? 0 : -1;
}

static int
teardown (void **state)
{
  free (buf);
  return 0;
}

static const char *const lowers[] = { "/var/lib/sbx/layers/aa", "/var/lib/sbx/layers/bb" };
static const struct rt_volume volumes[] = {
  { "/var/lib/sbx/volumes/v1/fs", "/data", 0 },
  { "/var/lib/sbx/volumes/v2/fs", "/ro", 1 },
};

static void
full_spec (struct rt_spec *s)
{
  memset (s, 0, sizeof *s);
  s->id = "sb_0123456789abcdef0123";
  s->rootfs = "/var/lib/sbx/images/python-3.11/rootfs";
  s->lowers = lowers;
  s->n_lowers = 2;
  s->volumes = volumes;
  s->n_volumes = 2;
  s->keep_caps = 0x1234;
  s->state_dir = "/var/lib/sbx";
  s->init_path = "/usr/local/bin/sbx-init";
  s->hostname = NULL;
  rt_limits_default (&s->limits);
  s->limits.memory_bytes = 123u << 20;
  s->inherit_stderr = 1;
}

static void
test_round_trip (void **state)
{
  struct rt_spec in;
  full_spec (&in);
  ssize_t n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  assert_true (n > 0);
  struct rt_spawn_unpacked out;
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), 0);
  assert_string_equal (out.spec.id, in.id);
  assert_string_equal (out.spec.rootfs, in.rootfs);
  assert_int_equal (out.spec.n_lowers, 2);
  assert_string_equal (out.spec.lowers[0], lowers[0]);
  assert_string_equal (out.spec.lowers[1], lowers[1]);
  assert_int_equal (out.spec.n_volumes, 2);
  assert_string_equal (out.spec.volumes[1].source, volumes[1].source);
  assert_string_equal (out.spec.volumes[1].target, "/ro");
  assert_int_equal (out.spec.volumes[1].readonly, 1);
  assert_int_equal (out.spec.volumes[0].readonly, 0);
  assert_int_equal (out.spec.keep_caps, 0x1234);
  assert_string_equal (out.spec.state_dir, in.state_dir);
  assert_string_equal (out.spec.init_path, in.init_path);
  assert_null (out.spec.hostname);
  assert_memory_equal (&out.spec.limits, &in.limits, sizeof in.limits);
  assert_int_equal (out.spec.inherit_stderr, 1);
  assert_int_equal (out.spec.die_with_parent, 0);
}

static void
test_no_lowers_no_volumes (void **state)
{
  struct rt_spec in;
  full_spec (&in);
  in.lowers = NULL;
  in.n_lowers = 5; /* ignored without the array */
  in.volumes = NULL;
  in.hostname = "box";
  ssize_t n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  struct rt_spawn_unpacked out;
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), 0);
  assert_null (out.spec.lowers);
  assert_int_equal (out.spec.n_lowers, 0);
  assert_null (out.spec.volumes);
  assert_string_equal (out.spec.hostname, "box");
}

static void
test_every_truncation_and_padding_is_refused (void **state)
{
  struct rt_spec in;
  full_spec (&in);
  ssize_t n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  struct rt_spawn_unpacked out;
  for (ssize_t len = 0; len < n; len++)
    {
      /* A copy of exactly len bytes, so ASan catches any read past it. */
      char *cut = malloc (len ? (size_t) len : 1);
      memcpy (cut, buf, (size_t) len);
      assert_int_equal (rt_spawn_spec_unpack (cut, (size_t) len, &out), -1);
      free (cut);
    }
  buf[n] = 0;
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n + 1, &out), -1);
}

static void
test_bad_counts_and_strings_are_refused (void **state)
{
  struct rt_spec in;
  full_spec (&in);
  in.lowers = NULL;
  in.volumes = NULL;
  ssize_t n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  struct rt_spawn_unpacked out;
  /* The lower count follows the id and rootfs strings (u32 length, bytes, NUL each). */
  size_t at = 4 + strlen (in.id) + 1 + 4 + strlen (in.rootfs) + 1;
  uint32_t too_many = RT_LOWERS_MAX + 1;
  memcpy (buf + at, &too_many, sizeof too_many);
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), -1);
  uint32_t zero = 0;
  memcpy (buf + at, &zero, sizeof zero);
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), 0);
  /* A string whose terminating NUL is missing. */
  buf[4 + strlen (in.id)] = 'x';
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), -1);
}

/* Absent strings are packed as such; only the rootfs and the hostname may be. */
static void
test_missing_required_strings_are_refused (void **state)
{
  static const char *const holed[] = { "/l0", NULL };
  static const struct rt_volume no_target[] = { { "/v", NULL, 0 } };
  struct rt_spawn_unpacked out;
  struct rt_spec in;
  full_spec (&in);
  in.lowers = holed;
  ssize_t n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), -1);
  full_spec (&in);
  in.volumes = no_target;
  in.n_volumes = 1;
  n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), -1);
  full_spec (&in);
  in.init_path = NULL;
  n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), -1);
  full_spec (&in);
  in.rootfs = NULL;
  n = rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX);
  assert_int_equal (rt_spawn_spec_unpack (buf, (size_t) n, &out), 0);
  assert_null (out.spec.rootfs);
}

static void
test_too_large_a_spec_is_not_packed (void **state)
{
  static char big[RT_SPAWN_REQ_MAX];
  memset (big, 'a', sizeof big - 1);
  big[0] = '/';
  struct rt_spec in;
  full_spec (&in);
  in.rootfs = big;
  assert_int_equal (rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX), -1);
  in.rootfs = "/r";
  assert_int_equal (rt_spawn_spec_pack (&in, buf, RT_SPAWN_REQ_MAX - 1), -1); /* cap */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_round_trip),
    cmocka_unit_test (test_no_lowers_no_volumes),
    cmocka_unit_test (test_every_truncation_and_padding_is_refused),
    cmocka_unit_test (test_bad_counts_and_strings_are_refused),
    cmocka_unit_test (test_missing_required_strings_are_refused),
    cmocka_unit_test (test_too_large_a_spec_is_not_packed),
  };
  return cmocka_run_group_tests (tests, setup, teardown);
}
