/* sbxd's warm pool settings: defaults, "pool_size", "pool_max_age" and "pool" keys of the
 * config file (built-in images only, ranges, size required, no unknown fields), and the
 * /metrics route under every prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
load (struct srv_config *c, const char *json, struct sbx_err *err)
{
  char path[] = "/tmp/sbx-test-pool-XXXXXX";
  int fd = mkstemp (path);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, json, strlen (json)), (ssize_t) strlen (json));
  close (fd);
  int rc = srv_config_load_file (c, path, err);
  unlink (path);
  return rc;
}

static void
test_defaults (void **state)
{
  struct srv_config c;
  srv_config_defaults (&c);
  assert_int_equal (c.pool_size, SRV_POOL_SIZE_DEFAULT);
  assert_int_equal (c.pool_max_age_s, SRV_POOL_MAX_AGE_DEFAULT);
  assert_int_equal (c.n_pool_keys, 0);
}

static void
test_keys (void **state)
{
  struct srv_config c;
  struct sbx_err err = { 0 };
  srv_config_defaults (&c);
  c.max_cpu_millis = 2000;
  c.max_memory_mb = 8192;
  assert_int_equal (load (&c, "{\"pool_size\": 0, \"pool_max_age\": 30, \"pool\": ["
                              "{\"image\": \"debian:bookworm\", \"cpu\": 0.5, \"memory_mb\": 256,"
                              " \"size\": 8}, {\"size\": 3}]}", &err), 0);
  assert_int_equal (c.pool_size, 0);
  assert_int_equal (c.pool_max_age_s, 30);
  assert_int_equal (c.n_pool_keys, 2);
  assert_string_equal (c.pool_keys[0].image, "debian:bookworm");
  assert_int_equal (c.pool_keys[0].cpu_millis, 500);
  assert_int_equal (c.pool_keys[0].memory_mb, 256);
  assert_int_equal (c.pool_keys[0].size, 8);
  assert_string_equal (c.pool_keys[1].image, SRV_DEFAULT_IMAGE);
  assert_int_equal (c.pool_keys[1].cpu_millis, SRV_CPU_DEFAULT_MILLIS);
  assert_int_equal (c.pool_keys[1].memory_mb, SRV_MEMORY_DEFAULT_MB);
  assert_int_equal (c.pool_keys[1].size, 3);
}

static void
test_bad (void **state)
{
  const char *bad[] = {
    "{\"pool_size\": -1}",
    "{\"pool_size\": 5000}",
    "{\"pool_size\": \"2\"}",
    "{\"pool_max_age\": 0}",
    "{\"pool\": {}}",
    "{\"pool\": [{\"image\": \"python:3.11\"}]}",                 /* size required */
    "{\"pool\": [{\"image\": \"img_0123456789abcdef0123456789abcdef\", \"size\": 1}]}",
    "{\"pool\": [{\"size\": 1, \"volumes\": {}}]}",               /* unknown field */
    "{\"pool\": [{\"size\": 1, \"cpu\": 64}]}",                   /* above max_cpu */
    "{\"pool\": [{\"size\": 1, \"memory_mb\": 16}]}",
    "{\"pool\": [{\"size\": -2}]}",
    "{\"pool\": [1]}",
    "{\"pool\": [{\"size\":1},{\"size\":1},{\"size\":1},{\"size\":1},{\"size\":1},"
    "{\"size\":1},{\"size\":1},{\"size\":1},{\"size\":1}]}",      /* more than 8 keys */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      struct srv_config c;
      struct sbx_err err = { 0 };
      srv_config_defaults (&c);
      c.max_cpu_millis = 2000;
      if (load (&c, bad[i], &err) != -1)
        fail_msg ("accepted: %s", bad[i]);
      assert_int_equal (err.code, SBX_E_INVALID);
    }
}

static void
test_metrics_route (void **state)
{
  const char *allow = NULL;
  assert_int_equal (srv_route_match ("/v1/metrics", &allow), SRV_R_METRICS);
  assert_string_equal (allow, "GET");
  assert_int_equal (srv_route_match ("/api/v1/modal/metrics", &allow), SRV_R_METRICS);
  assert_int_equal (srv_route_match ("/v1/marketplace/compute/metrics", &allow), SRV_R_METRICS);
  assert_int_equal (srv_route_match ("/v1/metrics/", &allow), SRV_R_NONE);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_defaults),
    cmocka_unit_test (test_keys),
    cmocka_unit_test (test_bad),
    cmocka_unit_test (test_metrics_route),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
