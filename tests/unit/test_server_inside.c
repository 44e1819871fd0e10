/* sbxd's issue-6 helpers: path rules, UTF-8 tails at read boundaries, the /sandbox/{id}/...
 * routes and method lists, field validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "server/inside.h"

#include <string.h>

/* Undefined behaviour fails the test instead of being printed and passed over. */
const char *__ubsan_default_options (void);
const char *
__ubsan_default_options (void)
{
  return "halt_on_error=1:print_stacktrace=1";
}

static void
test_paths (void **state)
{
  assert_true (inside_path_ok ("/"));
  assert_true (inside_path_ok ("/tmp/a b/c"));
  assert_true (inside_path_ok ("//tmp//x/"));
  assert_true (inside_path_ok ("/tmp/..x/.y/...")); /* names that merely start with dots */
  assert_false (inside_path_ok ("tmp/x"));
  assert_false (inside_path_ok (""));
  assert_false (inside_path_ok ("/tmp/../etc"));
  assert_false (inside_path_ok ("/tmp/./x"));
  assert_false (inside_path_ok ("/.."));
  assert_false (inside_path_ok ("/tmp/.."));
  char long_path[SRV_PATH_MAX + 2];
  memset (long_path, 'a', sizeof long_path - 1);
  long_path[0] = '/';
  long_path[sizeof long_path - 1] = '\0';
  assert_false (inside_path_ok (long_path));
}

static void
test_utf8_tail (void **state)
{
  const uint8_t euro[] = { 0xE2, 0x82, 0xAC };
  assert_int_equal (inside_utf8_tail (euro, 3), 0);
  assert_int_equal (inside_utf8_tail (euro, 2), 2);
  assert_int_equal (inside_utf8_tail (euro, 1), 1);
  const uint8_t ascii[] = { 'a', 'b' };
  assert_int_equal (inside_utf8_tail (ascii, 2), 0);
  assert_int_equal (inside_utf8_tail (ascii, 0), 0);
  const uint8_t four[] = { 'x', 0xF0, 0x9F, 0x98 }; /* 3 of 4 bytes of an emoji */
  assert_int_equal (inside_utf8_tail (four, 4), 3);
  const uint8_t bad[] = { 'x', 0x80, 0x80, 0x80 }; /* no lead byte: not held back */
  assert_int_equal (inside_utf8_tail (bad, 4), 0);
}

static void
test_routes (void **state)
{
  const char *allow = NULL;
  assert_int_equal (srv_route_match ("/v1/sandbox/sb_0123456789abcdef0123/files", &allow),
                    SRV_R_FILES_RAW);
  assert_true (srv_method_allowed ("GET", allow) && srv_method_allowed ("PUT", allow));
  assert_false (srv_method_allowed ("POST", allow) || srv_method_allowed ("GE", allow));
  assert_int_equal (srv_route_match ("/api/v1/modal/sandbox/sb_x/archive", &allow),
                    SRV_R_ARCHIVE);
  assert_int_equal (srv_route_match ("/v1/sandbox//files", &allow), SRV_R_NONE);
  assert_int_equal (srv_route_match ("/v1/sandbox/sb_x/files/", &allow), SRV_R_NONE);
  assert_int_equal (srv_route_match ("/v1/sandbox/sb_x/other", &allow), SRV_R_NONE);
  const char *names[] = { "/process/output", "/process/wait", "/process/stdin",
                          "/process/signal", "/process/resize", "/process/list",
                          "/files/read", "/files/write", "/files/append", "/files/list",
                          "/files/stat", "/files/mkdir", "/files/remove", "/files/rename",
                          "/files/watch" };
  const char *prefixes[] = { "/v1", "/api/v1/modal", "/v1/marketplace/compute" };
  for (size_t p = 0; p < 3; p++)
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      {
        char url[128];
        snprintf (url, sizeof url, "%s/sandbox%s", prefixes[p], names[i]);
        enum srv_route r = srv_route_match (url, &allow);
        assert_true (r >= SRV_R_INSIDE_FIRST && r <= SRV_R_INSIDE_LAST);
        assert_string_equal (allow, "POST");
      }
}

static void
test_fields (void **state)
{
  struct srv_reply r = { 0 };
  int64_t x;
  json_t *b = json_pack ("{s:i,s:f,s:f,s:s,s:b,s:n}", "n", 5, "f", 5.0, "g", 5.5, "s", "5",
                         "t", 1, "z");
  assert_int_equal (inside_int (b, "n", 0, 10, 0, &x, &r), 0);
  assert_int_equal (x, 5);
  assert_int_equal (inside_int (b, "f", 0, 10, 0, &x, &r), 0);
  assert_int_equal (x, 5);
  assert_int_equal (inside_int (b, "g", 0, 10, 0, &x, &r), -1);
  assert_int_equal (r.status, 400);
  json_decref (r.body);
  r.body = NULL;
  assert_int_equal (inside_int (b, "s", 0, 10, 0, &x, &r), -1);
  json_decref (r.body);
  r.body = NULL;
  assert_int_equal (inside_int (b, "n", 6, 10, 0, &x, &r), -1);
  json_decref (r.body);
  r.body = NULL;
  assert_int_equal (inside_int (b, "absent", 0, 10, 7, &x, &r), 0);
  assert_int_equal (x, 7);
  json_decref (b);
  /* integral reals past int64_t are out of range, not converted (fuzz_requests: a
   * "timeout" of 9E62 in /sandbox/process/wait was undefined behaviour) */
  b = json_pack ("{s:f,s:f,s:f,s:f,s:f}", "big", 9e62, "neg", -1e300, "p63", 0x1p63, "m63",
                 -0x1p63, "ok", 0x1p62);
  const char *out_of_range[] = { "big", "neg", "p63" };
  for (size_t i = 0; i < 3; i++)
    {
      assert_int_equal (inside_int (b, out_of_range[i], 0, INT64_MAX, 0, &x, &r), -1);
      assert_int_equal (r.status, 400);
      json_decref (r.body);
      r.body = NULL;
    }
  assert_int_equal (inside_int (b, "m63", INT64_MIN, 0, 0, &x, &r), 0);
  assert_int_equal (x, INT64_MIN);
  assert_int_equal (inside_int (b, "ok", 0, INT64_MAX, 0, &x, &r), 0);
  assert_int_equal (x, (int64_t) 1 << 62);
  assert_int_equal (inside_int (b, "big", 0, 10, 0, &x, &r), -1);
  json_decref (r.body);
  r.body = NULL;
  json_decref (b);
  b = json_pack ("{s:i,s:b}", "n", 5, "t", 1);
  int flag;
  assert_int_equal (inside_bool (b, "t", 0, &flag, &r), 0);
  assert_int_equal (flag, 1);
  assert_int_equal (inside_bool (b, "n", 0, &flag, &r), -1);
  json_decref (r.body);
  r.body = NULL;
  json_decref (b);

  /* content: utf-8 keeps NUL; base64 decodes; empty base64 is empty */
  b = json_pack ("{s:s%,s:s,s:s,s:s}", "c", "a\0b", (size_t) 3, "b", "AAEC", "e", "", "bad",
                 "!!");
  uint8_t *out;
  size_t len;
  assert_int_equal (inside_content (b, "c", 0, &out, &len, &r), 0);
  assert_int_equal (len, 3);
  assert_memory_equal (out, "a\0b", 3);
  free (out);
  assert_int_equal (inside_content (b, "b", 1, &out, &len, &r), 0);
  assert_int_equal (len, 3);
  assert_memory_equal (out, "\0\1\2", 3);
  free (out);
  assert_int_equal (inside_content (b, "e", 1, &out, &len, &r), 0);
  assert_int_equal (len, 0);
  free (out);
  assert_int_equal (inside_content (b, "bad", 1, &out, &len, &r), -1);
  json_decref (r.body);
  r.body = NULL;
  json_decref (b);

  /* data as JSON: text when UTF-8, else base64 */
  int used;
  json_t *v = inside_data_json ((const uint8_t *) "h\xc3\xa9", 3, 0, &used);
  assert_int_equal (used, 0);
  assert_string_equal (json_string_value (v), "h\xc3\xa9");
  json_decref (v);
  v = inside_data_json ((const uint8_t *) "\xff", 1, 0, &used);
  assert_int_equal (used, 1);
  assert_string_equal (json_string_value (v), "/w==");
  json_decref (v);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_paths),
    cmocka_unit_test (test_utf8_tail),
    cmocka_unit_test (test_routes),
    cmocka_unit_test (test_fields),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
