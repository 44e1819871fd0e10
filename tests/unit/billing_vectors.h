/* Shared by the test_billing_* binaries: load tests/unit/data/x402_vectors.json (a copy of
 * ../shared/x402/vectors.json, generated with viem) and decode its hex fields. Tests run
 * from the repository root (make unit); SBX_X402_VECTORS overrides the path. A missing
 * file fails the test: nothing passes on ambiguity. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "billing/billing.h"

static inline json_t *
vectors_load (void)
{
  const char *path = getenv ("SBX_X402_VECTORS");
  if (!path)
    path = "tests/unit/data/x402_vectors.json";
  json_error_t je;
  json_t *v = json_load_file (path, 0, &je);
  if (!v)
    fail_msg ("cannot load %s: %s (run from the repository root)", path, je.text);
  return v;
}

static inline const char *
vstr (const json_t *o, const char *key)
{
  const char *s = json_string_value (json_object_get (o, key));
  if (!s)
    fail_msg ("vector has no string '%s'", key);
  return s ? s : "";
}

/* Decode a 0x-hex field of any length into a malloc'd buffer. */
static inline uint8_t *
vhex (const char *hex, size_t *len)
{
  if (strncmp (hex, "0x", 2) != 0 || strlen (hex) % 2)
    fail_msg ("bad hex in vector: %s", hex);
  size_t n = (strlen (hex) - 2) / 2;
  uint8_t *b = malloc (n ? n : 1);
  if (n && bill_hex_decode (hex, b, n) < 0)
    fail_msg ("bill_hex_decode refused vector hex %s", hex);
  *len = n;
  return b;
}

static inline void
vhex32 (const char *hex, uint8_t out[32])
{
  if (bill_hex_decode (hex, out, 32) < 0)
    fail_msg ("not 32 bytes of hex: %s", hex);
}

#include <secp256k1.h>
#include <secp256k1_recovery.h>

/* Sign a digest the way viem does (RFC 6979, low-s) and emit r ‖ s ‖ v with v = 27 + yParity:
 * lets tests build fresh, valid payments (other times, amounts) from the vectors' keys. */
static inline void
test_sign (const uint8_t key[32], const uint8_t digest[32], uint8_t sig[65])
{
  secp256k1_context *ctx = secp256k1_context_create (SECP256K1_CONTEXT_NONE);
  secp256k1_ecdsa_recoverable_signature rs;
  int recid = -1;
  assert_int_equal (secp256k1_ecdsa_sign_recoverable (ctx, &rs, digest, key, NULL, NULL), 1);
  assert_int_equal (secp256k1_ecdsa_recoverable_signature_serialize_compact (ctx, sig, &recid, &rs), 1);
  sig[64] = (uint8_t) (27 + recid);
  secp256k1_context_destroy (ctx);
}
