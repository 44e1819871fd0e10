/* keccak-256 against every vector of x402_vectors.json (empty, "abc", multi-block, the
 * rate-1 / rate / rate+1 padding edges, the EIP-712 type strings), one-shot and fed in
 * odd-sized pieces, and proof that it is not FIPS SHA3-256. Plus the hex helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "billing_vectors.h"

static void
test_vectors (void **state)
{
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "keccak256");
  assert_true (json_array_size (list) >= 9);
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      size_t n, wn;
      uint8_t *in = vhex (vstr (v, "inputHex"), &n);
      uint8_t *want = vhex (vstr (v, "keccak256"), &wn);
      assert_int_equal (wn, 32);
      assert_int_equal (n, (size_t) json_integer_value (json_object_get (v, "lengthBytes")));
      uint8_t got[32];
      bill_keccak256 (in, n, got);
      if (memcmp (got, want, 32) != 0)
        fail_msg ("keccak256 mismatch for %s", vstr (v, "label"));
      /* Incremental, in pieces of every size from 1 to 7 bytes. */
      for (size_t step = 1; step <= 7; step++)
        {
          struct bill_keccak k;
          bill_keccak_init (&k);
          for (size_t off = 0; off < n; off += step)
            bill_keccak_update (&k, in + off, n - off < step ? n - off : step);
          bill_keccak_final (&k, got);
          if (memcmp (got, want, 32) != 0)
            fail_msg ("incremental (step %zu) mismatch for %s", step, vstr (v, "label"));
        }
      free (in);
      free (want);
    }
  json_decref (all);
}

static void
test_not_sha3 (void **state)
{
  json_t *all = vectors_load ();
  json_t *c = json_object_get (json_object_get (all, "conventions"), "keccakNotSha3");
  uint8_t sha3_empty[32], sha3_abc[32], got[32];
  vhex32 (vstr (c, "sha3_256_empty"), sha3_empty);
  vhex32 (vstr (c, "sha3_256_abc"), sha3_abc);
  bill_keccak256 ("", 0, got);
  assert_memory_not_equal (got, sha3_empty, 32);
  bill_keccak256 ("abc", 3, got);
  assert_memory_not_equal (got, sha3_abc, 32);
  json_decref (all);
}

static void
test_hex (void **state)
{
  uint8_t b[4];
  assert_int_equal (bill_hex_decode ("0x00fFaB10", b, 4), 0);
  assert_int_equal (b[0], 0x00);
  assert_int_equal (b[1], 0xff);
  assert_int_equal (b[2], 0xab);
  assert_int_equal (b[3], 0x10);
  assert_int_equal (bill_hex_decode ("0X00ffab10", b, 4), 0);
  assert_int_equal (bill_hex_decode ("00ffab10", b, 4), -1);    /* no prefix */
  assert_int_equal (bill_hex_decode ("0x00ffab1", b, 4), -1);   /* short */
  assert_int_equal (bill_hex_decode ("0x00ffab100", b, 4), -1); /* long */
  assert_int_equal (bill_hex_decode ("0x00ffab1g", b, 4), -1);
  assert_int_equal (bill_hex_decode ("0x00ff ab1", b, 4), -1);
  assert_int_equal (bill_hex_decode ("0x", b, 0), 0);
  assert_int_equal (bill_hex_decode (NULL, b, 4), -1);
  char s[16];
  uint8_t in[3] = { 0xde, 0xad, 0x01 };
  bill_hex_encode (in, 3, s, sizeof s);
  assert_string_equal (s, "0xdead01");
  bill_hex_encode (in, 3, s, 8); /* too small: empty, never overflow */
  assert_string_equal (s, "");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_vectors),
    cmocka_unit_test (test_not_sha3),
    cmocka_unit_test (test_hex),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
