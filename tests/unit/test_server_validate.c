/* sbxd request validation: types, ranges, sizes, NUL bytes, defaults, and messages that
 * name the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "server/server.h"

#include <string.h>

static struct srv_config cfg;

static json_t *
parse (const char *s)
{
  json_error_t je;
  json_t *j = json_loads (s, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
  if (!j)
    fail_msg ("bad test JSON %s: %s", s, je.text);
  return j;
}

/* Expect a 400 whose message starts with "field:". */
static void
create_fails (const char *body, const char *field)
{
  json_t *j = parse (body);
  struct srv_create_req r;
  struct sbx_err err = { 0 };
  if (srv_parse_create (j, &cfg, &r, &err) == 0)
    fail_msg ("accepted %s", body);
  assert_int_equal (err.code, SBX_E_INVALID);
  if (strncmp (err.msg, field, strlen (field)) || err.msg[strlen (field)] != ':')
    fail_msg ("%s: message '%s' does not name '%s'", body, err.msg, field);
  json_decref (j);
}

static void
exec_fails (const char *body, const char *field)
{
  json_t *j = parse (body);
  struct srv_exec_req r;
  struct sbx_err err = { 0 };
  if (srv_parse_exec (j, &cfg, &r, &err) == 0)
    fail_msg ("accepted %s", body);
  assert_int_equal (err.code, SBX_E_INVALID);
  if (strncmp (err.msg, field, strlen (field)) || err.msg[strlen (field)] != ':')
    fail_msg ("%s: message '%s' does not name '%s'", body, err.msg, field);
  json_decref (j);
}

static void
test_create_defaults (void **state)
{
  json_t *j = parse ("{\"unknown\": [1, 2], \"timeout\": null}");
  struct srv_create_req r;
  struct sbx_err err = { 0 };
  assert_int_equal (srv_parse_create (j, &cfg, &r, &err), 0);
  assert_string_equal (r.image, "python:3.11");
  assert_int_equal (r.timeout_s, 300);
  assert_int_equal (r.cpu_millis, 1000);
  assert_int_equal (r.memory_mb, 1024);
  assert_int_equal (r.env.n, 0);
  assert_null (r.workdir);
  srv_create_req_free (&r);
  json_decref (j);
}

static void
test_create_values (void **state)
{
  json_t *j = parse ("{\"image\": \"debian:bookworm\", \"timeout\": 86400.0, \"cpu\": 0.25,"
                     " \"memory\": 64, \"env\": {\"A\": \"1\", \"_b2\": \"x=y\"},"
                     " \"workdir\": \"/srv\"}");
  struct srv_create_req r;
  struct sbx_err err = { 0 };
  assert_int_equal (srv_parse_create (j, &cfg, &r, &err), 0);
  assert_string_equal (r.image, "debian:bookworm");
  assert_int_equal (r.timeout_s, 86400);
  assert_int_equal (r.cpu_millis, 250);
  assert_int_equal (r.memory_mb, 64);
  assert_int_equal (r.env.n, 2);
  assert_string_equal (r.workdir, "/srv");
  char *js = srv_env_to_json (&r.env);
  assert_string_equal (js, "{\"A\":\"1\",\"_b2\":\"x=y\"}");
  struct srv_env back;
  assert_int_equal (srv_env_from_json (js, &back), 0);
  assert_int_equal (back.n, 2);
  srv_env_free (&back);
  free (js);
  srv_create_req_free (&r);
  json_decref (j);
}

static void
test_create_rejects (void **state)
{
  create_fails ("{\"image\": \"alpine\"}", "image");
  create_fails ("{\"image\": \"python:3.11\\u0000\"}", "image");
  create_fails ("{\"image\": [\"python:3.11\"]}", "image");
  create_fails ("{\"timeout\": 0}", "timeout");
  create_fails ("{\"timeout\": -5}", "timeout");
  create_fails ("{\"timeout\": 86401}", "timeout");
  create_fails ("{\"timeout\": 2.5}", "timeout");
  create_fails ("{\"timeout\": \"300\"}", "timeout");
  create_fails ("{\"timeout\": true}", "timeout");
  create_fails ("{\"timeout\": 1e300}", "timeout");
  create_fails ("{\"timeout\": 9223372036854775807}", "timeout");
  create_fails ("{\"cpu\": 0.05}", "cpu");
  create_fails ("{\"cpu\": 1000}", "cpu");
  create_fails ("{\"memory\": 63}", "memory");
  create_fails ("{\"memory\": 100000000}", "memory");
  create_fails ("{\"env\": \"A=1\"}", "env");
  create_fails ("{\"env\": {\"A\": 1}}", "env.A");
  create_fails ("{\"env\": {\"A\": \"a\\u0000b\"}}", "env.A");
  create_fails ("{\"env\": {\"9A\": \"x\"}}", "env");
  create_fails ("{\"env\": {\"\": \"x\"}}", "env");
  create_fails ("{\"env\": {\"A-B\": \"x\"}}", "env");
  create_fails ("{\"workdir\": \"x\"}", "workdir");
  create_fails ("{\"workdir\": \"\"}", "workdir");
  create_fails ("{\"workdir\": \"/a\\u0000b\"}", "workdir");
}

static void
test_env_bounds (void **state)
{
  /* 257 variables: one too many. */
  json_t *env = json_object ();
  for (int i = 0; i <= SRV_ENV_MAX_COUNT; i++)
    {
      char k[16];
      snprintf (k, sizeof k, "V%d", i);
      json_object_set_new (env, k, json_string ("x"));
    }
  json_t *j = json_pack ("{s:o}", "env", env);
  struct srv_create_req r;
  struct sbx_err err = { 0 };
  assert_int_equal (srv_parse_create (j, &cfg, &r, &err), -1);
  assert_non_null (strstr (err.msg, "more than"));
  json_decref (j);
  /* A value over 32 KiB. */
  char *big = malloc (SRV_ENV_MAX_VALUE + 2);
  memset (big, 'x', SRV_ENV_MAX_VALUE + 1);
  big[SRV_ENV_MAX_VALUE + 1] = '\0';
  j = json_pack ("{s:{s:s}}", "env", "BIG", big);
  assert_int_equal (srv_parse_create (j, &cfg, &r, &err), -1);
  assert_non_null (strstr (err.msg, "env.BIG"));
  json_decref (j);
  free (big);
}

static void
test_exec_command_forms (void **state)
{
  struct srv_exec_req r;
  struct sbx_err err = { 0 };
  json_t *j = parse ("{\"sandbox_id\": \"sb_0123456789abcdef0123\", \"command\": \"echo hi\"}");
  assert_int_equal (srv_parse_exec (j, &cfg, &r, &err), 0);
  assert_true (r.id_valid);
  assert_string_equal (r.id, "sb_0123456789abcdef0123");
  assert_int_equal (r.argc, 3);
  assert_string_equal (r.argv[0], "/bin/sh");
  assert_string_equal (r.argv[1], "-c");
  assert_string_equal (r.argv[2], "echo hi");
  assert_null (r.argv[3]);
  assert_int_equal (r.timeout_ms, 0);
  assert_int_equal (r.max_output, cfg.max_output);
  assert_false (r.has_stdin);
  srv_exec_req_free (&r);
  json_decref (j);

  j = parse ("{\"sandbox_id\": \"sb_ab\", \"command\": [\"python\", \"-c\", \"\"],"
             " \"stdin\": \"a\\u0000b\", \"timeout\": 1.5, \"max_output\": 10}");
  assert_int_equal (srv_parse_exec (j, &cfg, &r, &err), 0);
  assert_int_equal (r.argc, 3);
  assert_string_equal (r.argv[2], "");
  assert_true (r.has_stdin);
  assert_int_equal (r.stdin_len, 3);
  assert_memory_equal (r.stdin_data, "a\0b", 3);
  assert_int_equal (r.timeout_ms, 1500);
  assert_int_equal (r.max_output, 10);
  srv_exec_req_free (&r);
  json_decref (j);
}

static void
test_exec_rejects (void **state)
{
  exec_fails ("{\"command\": \"x\"}", "sandbox_id");
  exec_fails ("{\"sandbox_id\": 1, \"command\": \"x\"}", "sandbox_id");
  exec_fails ("{\"sandbox_id\": \"sb_a\\u0000b\", \"command\": \"x\"}", "sandbox_id");
  exec_fails ("{\"sandbox_id\": \"sb_a\"}", "command");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"\"}", "command");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": []}", "command");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": [\"\"]}", "command[0]");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": [\"a\", null]}", "command[1]");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": [\"a\", \"b\\u0000\"]}", "command[1]");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"a\\u0000b\"}", "command");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": 5}", "command");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"stdin\": []}", "stdin");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"timeout\": 0.5}", "timeout");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"timeout\": 86401}", "timeout");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"max_output\": 0}", "max_output");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"max_output\": 99999999999}",
              "max_output");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"workdir\": \"rel\"}", "workdir");
  exec_fails ("{\"sandbox_id\": \"sb_a\", \"command\": \"x\", \"env\": {\"A\": {}}}", "env.A");
}

static void
test_sandbox_id_exact (void **state)
{
  const char *invalid[] = { "\"\"", "\"sb_\"", "\"sb-abc\"", "\"SB_ABC\"", "\"sb_ab/..\"",
                            "\"sb_%\"", "\"xsb_abc\"",
                            "\"sb_0123456789012345678901234567890123456789x\"" };
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    {
      char body[128];
      snprintf (body, sizeof body, "{\"sandbox_id\": %s}", invalid[i]);
      json_t *j = parse (body);
      char id[SBX_ID_MAX];
      int valid = 1;
      struct sbx_err err = { 0 };
      assert_int_equal (srv_parse_sandbox_id (j, id, &valid, &err), 0);
      if (valid)
        fail_msg ("%s taken as a valid id", invalid[i]);
      assert_string_equal (id, "");
      json_decref (j);
    }
}

static void
test_routes (void **state)
{
  const char *allow;
  const char *prefixes[] = { "/v1", "/api/v1/modal", "/v1/marketplace/compute" };
  for (int i = 0; i < 3; i++)
    {
      char p[128];
      snprintf (p, sizeof p, "%s/sandbox/exec", prefixes[i]);
      assert_int_equal (srv_route_match (p, &allow), SRV_R_EXEC);
      assert_string_equal (allow, "POST");
      snprintf (p, sizeof p, "%s/sandbox/list", prefixes[i]);
      assert_int_equal (srv_route_match (p, &allow), SRV_R_LIST);
      assert_string_equal (allow, "GET");
      snprintf (p, sizeof p, "%s/health", prefixes[i]);
      assert_int_equal (srv_route_match (p, &allow), SRV_R_HEALTH);
    }
  const char *none[] = { "/", "/v1", "/v1/", "/v1/sandbox/exec/", "/v1/sandbox/execx",
                         "/v2/sandbox/exec", "/v1/marketplace/compute", "/V1/health",
                         "/v1//sandbox/exec", "/api/v1/modal/v1/sandbox/exec" };
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
    if (srv_route_match (none[i], &allow) != SRV_R_NONE)
      fail_msg ("%s matched a route", none[i]);
}

static void
test_config_listen (void **state)
{
  struct srv_config c;
  srv_config_defaults (&c);
  struct sbx_err err = { 0 };
  assert_true (srv_config_is_loopback (&c));
  assert_int_equal (srv_config_set_listen (&c, "127.0.0.2:9000", &err), 0);
  assert_true (srv_config_is_loopback (&c));
  assert_int_equal (c.port, 9000);
  assert_int_equal (srv_config_set_listen (&c, "[::1]:80", &err), 0);
  assert_true (srv_config_is_loopback (&c));
  assert_int_equal (srv_config_set_listen (&c, "localhost:81", &err), 0);
  assert_true (srv_config_is_loopback (&c));
  assert_int_equal (srv_config_set_listen (&c, "0.0.0.0:80", &err), 0);
  assert_false (srv_config_is_loopback (&c));
  assert_int_equal (srv_config_set_listen (&c, "10.0.0.1:80", &err), 0);
  assert_false (srv_config_is_loopback (&c));
  assert_int_equal (srv_config_set_listen (&c, "example.com:80", &err), -1);
  assert_int_equal (srv_config_set_listen (&c, "127.0.0.1:0", &err), -1);
  assert_int_equal (srv_config_set_listen (&c, "127.0.0.1:65536", &err), -1);
  assert_int_equal (srv_config_set_listen (&c, "127.0.0.1", &err), -1);
}

int
main (void)
{
  srv_config_defaults (&cfg);
  cfg.max_cpu_millis = 2000;
  cfg.max_memory_mb = 4096;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_create_defaults), cmocka_unit_test (test_create_values),
    cmocka_unit_test (test_create_rejects),  cmocka_unit_test (test_env_bounds),
    cmocka_unit_test (test_exec_command_forms), cmocka_unit_test (test_exec_rejects),
    cmocka_unit_test (test_sandbox_id_exact), cmocka_unit_test (test_routes),
    cmocka_unit_test (test_config_listen),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
