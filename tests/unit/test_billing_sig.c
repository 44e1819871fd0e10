/* Signer recovery against x402_vectors.json: every positive vector recovers its signer
 * and public key (and re-signing its digest with its key reproduces viem's signature byte
 * for byte); every negative vector is refused for its own reason: tampered value, wrong
 * chain and wrong domain name recover someone else, high-s and v as yParity are refused
 * outright. Plus the edges of r, s and v. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "billing_vectors.h"

static void
sig_from (const char *hex, uint8_t sig[65])
{
  if (bill_hex_decode (hex, sig, 65) < 0)
    fail_msg ("bad signature hex %s", hex);
}

static void
test_positive (void **state)
{
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "transferWithAuthorization");
  assert_int_equal (json_array_size (list), 4);
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      const char *id = vstr (v, "id");
      uint8_t digest[32], sig[65], addr[20], want[20], xy[64], key[32], mine[65];
      vhex32 (vstr (json_object_get (v, "eip712"), "digest"), digest);
      sig_from (vstr (json_object_get (v, "signature"), "hex"), sig);
      int st = bill_sig_recover (digest, sig, addr, xy);
      if (st != BILL_SIG_OK)
        fail_msg ("%s: %s", id, bill_sig_status_name (st));
      assert_int_equal (bill_addr_parse (vstr (v, "expectedSigner"), want), 0);
      assert_memory_equal (addr, want, 20);
      size_t n;
      uint8_t *pub = vhex (vstr (v, "recoveredPublicKeyUncompressed"), &n);
      assert_int_equal (n, 65);
      assert_memory_equal (xy, pub + 1, 64);
      free (pub);
      assert_int_equal (bill_sig_recover (digest, sig, addr, NULL), BILL_SIG_OK);
      /* RFC 6979 is deterministic: libsecp256k1 must reproduce viem's signature. */
      vhex32 (vstr (v, "privateKey"), key);
      test_sign (key, digest, mine);
      assert_memory_equal (mine, sig, 65);
      /* The same signature over another digest is someone else's. */
      digest[0] ^= 1;
      st = bill_sig_recover (digest, sig, addr, NULL);
      assert_true (st != BILL_SIG_OK || memcmp (addr, want, 20) != 0);
    }
  json_decref (all);
}

static void
test_negative (void **state)
{
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "negativeAndEdgeCases");
  uint8_t signer[20];
  assert_int_equal (bill_addr_parse ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", signer), 0);
  int seen = 0;
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      const char *id = vstr (v, "id");
      uint8_t digest[32], sig[65], addr[20], to[20];
      vhex32 (vstr (v, "digest"), digest);
      sig_from (vstr (v, "signature"), sig);
      int st = bill_sig_recover (digest, sig, addr, NULL);
      if (strcmp (id, "neg-high-s-malleated") == 0)
        assert_int_equal (st, BILL_SIG_HIGH_S);
      else if (strcmp (id, "edge-v-as-yparity") == 0)
        assert_int_equal (st, BILL_SIG_BAD_V);
      else if (strcmp (id, "neg-recipient-mismatch") == 0)
        {
          /* Valid signature by the payer: only the recipient check (x402) catches it. */
          assert_int_equal (st, BILL_SIG_OK);
          assert_memory_equal (addr, signer, 20);
        }
      else
        {
          /* tampered value, wrong chain id, wrong domain name: a stranger recovers. */
          assert_int_equal (st, BILL_SIG_OK);
          assert_int_equal (bill_addr_parse (vstr (v, "recoversTo"), to), 0);
          assert_memory_equal (addr, to, 20);
          assert_memory_not_equal (addr, signer, 20);
        }
      seen++;
    }
  assert_int_equal (seen, 6);
  json_decref (all);
}

static void
test_edges (void **state)
{
  json_t *all = vectors_load ();
  json_t *v0 = json_array_get (json_object_get (all, "transferWithAuthorization"), 0);
  uint8_t digest[32], sig[65], s[65], addr[20];
  vhex32 (vstr (json_object_get (v0, "eip712"), "digest"), digest);
  sig_from (vstr (json_object_get (v0, "signature"), "hex"), sig);
  json_decref (all);

  for (int v = 0; v < 256; v++)
    {
      memcpy (s, sig, 65);
      s[64] = (uint8_t) v;
      int st = bill_sig_recover (digest, s, addr, NULL);
      if (v == 27 || v == 28)
        assert_int_equal (st, BILL_SIG_OK); /* 27 recovers a different key, still "ok" */
      else
        assert_int_equal (st, BILL_SIG_BAD_V);
    }
  /* r = 0, s = 0, r = n (overflow), all ones. */
  memcpy (s, sig, 65);
  memset (s, 0, 32);
  assert_int_equal (bill_sig_recover (digest, s, addr, NULL), BILL_SIG_INVALID);
  memcpy (s, sig, 65);
  memset (s + 32, 0, 32);
  assert_int_equal (bill_sig_recover (digest, s, addr, NULL), BILL_SIG_INVALID);
  static const uint8_t n[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
  };
  memcpy (s, sig, 65);
  memcpy (s, n, 32);
  assert_int_equal (bill_sig_recover (digest, s, addr, NULL), BILL_SIG_INVALID);
  memset (s, 0xff, 64);
  s[64] = 27;
  assert_int_equal (bill_sig_recover (digest, s, addr, NULL), BILL_SIG_HIGH_S);
  /* s = n/2 exactly is allowed (the contract's test is s <= n/2); n/2 + 1 is not. */
  static const uint8_t half[32] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
  };
  memcpy (s, sig, 65);
  memcpy (s + 32, half, 32);
  assert_true (bill_sig_recover (digest, s, addr, NULL) != BILL_SIG_HIGH_S);
  s[63] = 0xa1;
  assert_int_equal (bill_sig_recover (digest, s, addr, NULL), BILL_SIG_HIGH_S);
  assert_string_equal (bill_sig_status_name (BILL_SIG_HIGH_S), "signature s above secp256k1n/2");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_positive),
    cmocka_unit_test (test_negative),
    cmocka_unit_test (test_edges),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
