/* Who signed an EIP-712 digest: secp256k1 public key recovery with libsecp256k1.
 * The ECDSA math alone accepts more than the USDC contract does, so the contract's rules
 * come first (v in {27, 28}, s <= n/2): a signature the token would revert on is refused
 * here, before any work is done for it. */
#include "billing.h"

#include <pthread.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <string.h>

/* secp256k1n / 2, big-endian: the largest s USDC's ECRecover accepts. */
static const uint8_t half_n[32] = {
  0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
  0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
};

static pthread_once_t selftest_once = PTHREAD_ONCE_INIT;

static void
selftest (void)
{
  /* The library's own check that the static context is usable on this build; on failure
   * it calls the illegal-argument callback, which aborts: fail closed at the first use. */
  secp256k1_selftest ();
}

const char *
bill_sig_status_name (int status)
{
  switch (status)
    {
    case BILL_SIG_OK:
      return "ok";
    case BILL_SIG_BAD_V:
      return "signature v must be 27 or 28";
    case BILL_SIG_HIGH_S:
      return "signature s above secp256k1n/2";
    case BILL_SIG_INVALID:
      return "signature does not recover a public key";
    default:
      return "unknown";
    }
}

int
bill_sig_recover (const uint8_t digest[32], const uint8_t sig[65], uint8_t addr[20], uint8_t xy[64])
{
  pthread_once (&selftest_once, selftest);
  uint8_t v = sig[64];
  if (v != 27 && v != 28)
    return BILL_SIG_BAD_V;
  if (memcmp (sig + 32, half_n, 32) > 0)
    return BILL_SIG_HIGH_S;

  const secp256k1_context *ctx = secp256k1_context_static;
  secp256k1_ecdsa_recoverable_signature rs;
  secp256k1_pubkey pk;
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact (ctx, &rs, sig, v - 27))
    return BILL_SIG_INVALID;
  if (!secp256k1_ecdsa_recover (ctx, &pk, &rs, digest))
    return BILL_SIG_INVALID;
  uint8_t pub[65];
  size_t len = sizeof pub;
  if (!secp256k1_ec_pubkey_serialize (ctx, pub, &len, &pk, SECP256K1_EC_UNCOMPRESSED) || len != 65)
    return BILL_SIG_INVALID;
  bill_addr_from_pubkey (pub + 1, addr);
  if (xy)
    memcpy (xy, pub + 1, 64);
  return BILL_SIG_OK;
}
