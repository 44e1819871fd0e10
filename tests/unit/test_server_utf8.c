/* Output encoding: UTF-8 repair (every byte outside a well-formed sequence becomes U+FFFD)
 * and base64 of the exact bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "server/server.h"

#include <string.h>

static void
check (const char *in, size_t n, const char *want, int want_replaced)
{
  char *out = NULL;
  size_t len = 0;
  int r = srv_utf8_sanitize ((const uint8_t *) in, n, &out, &len);
  assert_int_equal (r, want_replaced);
  assert_int_equal (len, strlen (want) + (n && !*want ? 0 : 0));
  assert_memory_equal (out, want, len);
  /* The result is valid for jansson, i.e. valid UTF-8. */
  json_t *s = json_stringn (out, len);
  assert_non_null (s);
  json_decref (s);
  free (out);
}

#define R "\xef\xbf\xbd"

static void
test_valid_passes_through (void **state)
{
  check ("", 0, "", 0);
  check ("hello\n", 6, "hello\n", 0);
  check ("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 0);
  check ("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf", 0); /* U+10FFFF */
}

static void
test_nul_is_kept (void **state)
{
  char *out = NULL;
  size_t len = 0;
  assert_int_equal (srv_utf8_sanitize ((const uint8_t *) "a\0b", 3, &out, &len), 0);
  assert_int_equal (len, 3);
  assert_memory_equal (out, "a\0b", 3);
  free (out);
}

static void
test_invalid_is_replaced (void **state)
{
  check ("\xff", 1, R, 1);
  check ("a\xfe" "b", 3, "a" R "b", 1);
  check ("\xc0\xaf", 2, R R, 1);                 /* overlong '/' */
  check ("\xe0\x80\xaf", 3, R R R, 1);           /* overlong */
  check ("\xed\xa0\x80", 3, R R R, 1);           /* surrogate U+D800 */
  check ("\xf4\x90\x80\x80", 4, R R R R, 1);     /* > U+10FFFF */
  check ("\xf5\x80\x80\x80", 4, R R R R, 1);
  check ("\xe2\x82", 2, R R, 1);                 /* truncated at the end (output cut) */
  check ("\x80" "abc", 4, R "abc", 1);           /* stray continuation */
}

static void
test_base64 (void **state)
{
  const char *cases[][2] = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
                             { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
                             { "foobar", "Zm9vYmFy" } };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      char *b = srv_base64 ((const uint8_t *) cases[i][0], strlen (cases[i][0]));
      assert_string_equal (b, cases[i][1]);
      free (b);
    }
  char *b = srv_base64 ((const uint8_t *) "\xff\xfe\x00", 3);
  assert_string_equal (b, "//4A");
  free (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_valid_passes_through),
    cmocka_unit_test (test_nul_is_kept),
    cmocka_unit_test (test_invalid_is_replaced),
    cmocka_unit_test (test_base64),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
