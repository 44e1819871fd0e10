/* EIP-712 for EIP-3009 against x402_vectors.json: both domains' separators, and for every
 * transferWithAuthorization vector the name/version hashes, the encoded domain and struct
 * words, the struct hash, the digest preimage and the digest; the negative vectors that
 * change the domain or the message (their digests). EIP-55 addresses and uint256 decimals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "billing_vectors.h"

static void
domain_from (const json_t *d, struct bill_eip712_domain *out)
{
  out->name = vstr (d, "name");
  out->version = vstr (d, "version");
  json_t *cid = json_object_get (d, "chainId");
  assert_true (json_is_integer (cid));
  out->chain_id = (uint64_t) json_integer_value (cid);
  assert_int_equal (bill_addr_parse (vstr (d, "verifyingContract"), out->verifying_contract), 0);
}

static void
message_from (const json_t *m, struct bill_transfer_auth *a)
{
  assert_int_equal (bill_addr_parse (vstr (m, "from"), a->from), 0);
  assert_int_equal (bill_addr_parse (vstr (m, "to"), a->to), 0);
  assert_int_equal (bill_u256_parse (vstr (m, "value"), a->value), 0);
  assert_int_equal (bill_u256_parse (vstr (m, "validAfter"), a->valid_after), 0);
  assert_int_equal (bill_u256_parse (vstr (m, "validBefore"), a->valid_before), 0);
  assert_int_equal (bill_hex_decode (vstr (m, "nonce"), a->nonce, 32), 0);
}

static void
check_words (const json_t *words, const uint8_t *enc, size_t count, const char *id)
{
  assert_int_equal (json_array_size (words), count);
  for (size_t i = 0; i < count; i++)
    {
      uint8_t w[32];
      vhex32 (json_string_value (json_array_get (words, i)), w);
      if (memcmp (w, enc + 32 * i, 32) != 0)
        fail_msg ("%s: word %zu differs", id, i);
    }
}

static void
check_hash (const uint8_t got[32], const char *want_hex, const char *what, const char *id)
{
  uint8_t want[32];
  vhex32 (want_hex, want);
  if (memcmp (got, want, 32) != 0)
    fail_msg ("%s: %s differs", id, what);
}

static void
test_domains (void **state)
{
  json_t *all = vectors_load ();
  json_t *domains = json_object_get (all, "domains");
  assert_int_equal (json_object_size (domains), 2);
  const char *key;
  json_t *d;
  json_object_foreach (domains, key, d)
    {
      struct bill_eip712_domain dom;
      domain_from (d, &dom);
      uint8_t sep[32];
      bill_eip712_domain_separator (&dom, sep);
      check_hash (sep, vstr (d, "domainSeparator"), "domainSeparator", key);
    }
  json_decref (all);
}

static void
test_transfer_vectors (void **state)
{
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "transferWithAuthorization");
  assert_int_equal (json_array_size (list), 4);
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      const char *id = vstr (v, "id");
      json_t *td = json_object_get (v, "typedData");
      json_t *e = json_object_get (v, "eip712");
      struct bill_eip712_domain dom;
      struct bill_transfer_auth a;
      domain_from (json_object_get (td, "domain"), &dom);
      message_from (json_object_get (td, "message"), &a);

      uint8_t h[32], denc[5 * 32], senc[7 * 32], sep[32], sh[32], dg[32];
      bill_keccak256 (dom.name, strlen (dom.name), h);
      check_hash (h, vstr (e, "nameHash"), "nameHash", id);
      bill_keccak256 (dom.version, strlen (dom.version), h);
      check_hash (h, vstr (e, "versionHash"), "versionHash", id);
      bill_eip712_domain_encode (&dom, denc);
      check_hash (denc, vstr (e, "domainTypeHash"), "domainTypeHash", id);
      check_words (json_object_get (e, "encodedDomainWords"), denc, 5, id);
      bill_eip712_domain_separator (&dom, sep);
      check_hash (sep, vstr (e, "domainSeparator"), "domainSeparator", id);
      bill_eip712_transfer_encode (&a, senc);
      check_hash (senc, vstr (e, "structTypeHash"), "structTypeHash", id);
      check_words (json_object_get (e, "encodedStructWords"), senc, 7, id);
      bill_eip712_transfer_hash (&a, sh);
      check_hash (sh, vstr (e, "structHash"), "structHash", id);

      size_t pn;
      uint8_t *pre = vhex (vstr (e, "digestPreimage"), &pn);
      assert_int_equal (pn, 66);
      assert_int_equal (pre[0], 0x19);
      assert_int_equal (pre[1], 0x01);
      assert_memory_equal (pre + 2, sep, 32);
      assert_memory_equal (pre + 34, sh, 32);
      free (pre);
      bill_eip712_digest (sep, sh, dg);
      check_hash (dg, vstr (e, "digest"), "digest", id);
    }
  json_decref (all);
}

static void
test_negative_digests (void **state)
{
  /* Each negative vector that carries typedData changes the domain or the message; the
   * digest we compute must follow the change (never the original's digest). */
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "negativeAndEdgeCases");
  json_t *orig = json_array_get (json_object_get (all, "transferWithAuthorization"), 0);
  uint8_t orig_digest[32];
  vhex32 (vstr (json_object_get (orig, "eip712"), "digest"), orig_digest);
  int checked = 0;
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      json_t *td = json_object_get (v, "typedData");
      if (!td)
        continue;
      const char *id = vstr (v, "id");
      struct bill_eip712_domain dom;
      struct bill_transfer_auth a;
      domain_from (json_object_get (td, "domain"), &dom);
      message_from (json_object_get (td, "message"), &a);
      uint8_t sep[32], sh[32], dg[32];
      bill_eip712_domain_separator (&dom, sep);
      if (json_object_get (v, "domainSeparator"))
        check_hash (sep, vstr (v, "domainSeparator"), "domainSeparator", id);
      bill_eip712_transfer_hash (&a, sh);
      bill_eip712_digest (sep, sh, dg);
      check_hash (dg, vstr (v, "digest"), "digest", id);
      assert_memory_not_equal (dg, orig_digest, 32);
      checked++;
    }
  assert_int_equal (checked, 4); /* tampered value, wrong chain, wrong name, recipient */
  json_decref (all);
}

static void
test_addresses (void **state)
{
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "addresses");
  assert_int_equal (json_array_size (list), 4);
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      size_t n;
      uint8_t *pub = vhex (vstr (v, "publicKeyUncompressed"), &n);
      assert_int_equal (n, 65);
      assert_int_equal (pub[0], 0x04);
      uint8_t h[32], a[20], b[20];
      bill_keccak256 (pub + 1, 64, h);
      check_hash (h, vstr (v, "keccakOfPubkeyXY"), "keccakOfPubkeyXY", vstr (v, "addressLower"));
      bill_addr_from_pubkey (pub + 1, a);
      free (pub);
      assert_int_equal (bill_addr_parse (vstr (v, "addressLower"), b), 0);
      assert_memory_equal (a, b, 20);
      assert_int_equal (bill_addr_parse (vstr (v, "addressEip55"), b), 0);
      assert_memory_equal (a, b, 20);
      char s[BILL_ADDR_STR];
      bill_addr_format (a, s);
      assert_string_equal (s, vstr (v, "addressEip55"));
      assert_true (bill_addr_checksum_ok (vstr (v, "addressEip55")));
      assert_true (bill_addr_checksum_ok (vstr (v, "addressLower")));
      /* Flip the case of one letter of the checksummed form: checksum broken. */
      char bad[BILL_ADDR_STR];
      strcpy (bad, vstr (v, "addressEip55"));
      for (int k = 2; k < 42; k++)
        if ((bad[k] >= 'a' && bad[k] <= 'f') || (bad[k] >= 'A' && bad[k] <= 'F'))
          {
            bad[k] ^= 0x20;
            break;
          }
      assert_false (bill_addr_checksum_ok (bad));
      assert_int_equal (bill_addr_parse (bad, b), 0); /* still parses: bytes are bytes */
    }
  /* The fixed addresses of the notes. */
  uint8_t a[20];
  char s[BILL_ADDR_STR];
  assert_int_equal (bill_addr_parse ("0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", a), 0);
  bill_addr_format (a, s);
  assert_string_equal (s, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
  assert_true (bill_addr_checksum_ok ("0x209693BC6AFC0C5328BA36FAF03C514EF312287C"));
  assert_false (bill_addr_checksum_ok ("0x209693Bc6afc0C5328bA36FaF03C514EF312287c"));
  assert_false (bill_addr_checksum_ok ("0X209693Bc6afc0C5328bA36FaF03C514EF312287C"));
  assert_false (bill_addr_checksum_ok ("0x209693Bc6afc0C5328bA36FaF03C514EF312287"));
  assert_int_equal (bill_addr_parse ("0x209693Bc6afc0C5328bA36FaF03C514EF312287", a), -1);
  assert_int_equal (bill_addr_parse ("209693Bc6afc0C5328bA36FaF03C514EF312287C", a), -1);
  assert_int_equal (bill_addr_parse ("0x209693Bc6afc0C5328bA36FaF03C514EF312287C0", a), -1);
  json_decref (all);
}

static void
test_u256 (void **state)
{
  uint8_t v[32], want[32];
  uint64_t x;
  assert_int_equal (bill_u256_parse ("0", v), 0);
  memset (want, 0, 32);
  assert_memory_equal (v, want, 32);
  assert_int_equal (bill_u256_parse ("18446744073709551617", v), 0); /* 2^64 + 1 */
  want[23] = 1;
  want[31] = 1;
  assert_memory_equal (v, want, 32);
  assert_int_equal (bill_u256_to_u64 (v, &x), -1);
  assert_int_equal (bill_u256_parse ("18446744073709551615", v), 0);
  assert_int_equal (bill_u256_to_u64 (v, &x), 0);
  assert_true (x == UINT64_MAX);
  /* 2^256 - 1 fits, 2^256 does not. */
  assert_int_equal (bill_u256_parse ("115792089237316195423570985008687907853269984665640564039457584007913129639935", v), 0);
  memset (want, 0xff, 32);
  assert_memory_equal (v, want, 32);
  assert_int_equal (bill_u256_parse ("115792089237316195423570985008687907853269984665640564039457584007913129639936", v), -1);
  assert_int_equal (bill_u256_parse ("999999999999999999999999999999999999999999999999999999999999999999999999999999", v), -1);
  assert_int_equal (bill_u256_parse ("1157920892373161954235709850086879078532699846656405640394575840079131296399350", v), -1);
  assert_int_equal (bill_u256_parse ("", v), -1);
  assert_int_equal (bill_u256_parse ("00", v), -1);
  assert_int_equal (bill_u256_parse ("01", v), -1);
  assert_int_equal (bill_u256_parse ("-1", v), -1);
  assert_int_equal (bill_u256_parse ("1.0", v), -1);
  assert_int_equal (bill_u256_parse ("0x10", v), -1);
  assert_int_equal (bill_u256_parse (" 1", v), -1);
  assert_int_equal (bill_u256_parse (NULL, v), -1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_domains),          cmocka_unit_test (test_transfer_vectors),
    cmocka_unit_test (test_negative_digests), cmocka_unit_test (test_addresses),
    cmocka_unit_test (test_u256),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
