/* EVM values for x402's `exact` scheme: addresses (EIP-55), uint256 decimals, and the
 * EIP-712 hashes of an EIP-3009 TransferWithAuthorization. Every word is 32 bytes:
 * addresses left-padded with zeros, integers big-endian, strings hashed. */
#include "billing.h"

#include <string.h>

static const char domain_type[]
    = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
static const char transfer_type[]
    = "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
      "uint256 validBefore,bytes32 nonce)";

int
bill_addr_parse (const char *s, uint8_t out[20])
{
  return bill_hex_decode (s, out, 20);
}

void
bill_addr_format (const uint8_t a[20], char out[BILL_ADDR_STR])
{
  /* EIP-55: hash the lowercase hex; a letter is upper case when its hash nibble >= 8. */
  bill_hex_encode (a, 20, out, BILL_ADDR_STR);
  uint8_t h[32];
  bill_keccak256 (out + 2, 40, h);
  for (int i = 0; i < 40; i++)
    {
      unsigned nib = (h[i / 2] >> (i % 2 ? 0 : 4)) & 15;
      char *c = &out[2 + i];
      if (*c >= 'a' && *c <= 'f' && nib >= 8)
        *c = (char) (*c - 'a' + 'A');
    }
}

int
bill_addr_checksum_ok (const char *s)
{
  uint8_t a[20];
  if (bill_addr_parse (s, a) < 0 || s[1] != 'x')
    return 0;
  int lower = 0, upper = 0;
  for (int i = 2; i < 42; i++)
    {
      lower += s[i] >= 'a' && s[i] <= 'f';
      upper += s[i] >= 'A' && s[i] <= 'F';
    }
  if (!lower || !upper)
    return 1; /* single case: carries no checksum */
  char want[BILL_ADDR_STR];
  bill_addr_format (a, want);
  return strcmp (want, s) == 0;
}

void
bill_addr_from_pubkey (const uint8_t xy[64], uint8_t out[20])
{
  uint8_t h[32];
  bill_keccak256 (xy, 64, h);
  memcpy (out, h + 12, 20);
}

int
bill_u256_parse (const char *s, uint8_t out[32])
{
  if (!s)
    return -1;
  size_t n = strnlen (s, 79);
  if (n == 0 || n > 78 || (s[0] == '0' && n > 1))
    return -1;
  uint8_t v[32] = { 0 };
  for (size_t i = 0; i < n; i++)
    {
      if (s[i] < '0' || s[i] > '9')
        return -1;
      /* v = v * 10 + digit, big-endian, carrying from the last byte up. */
      unsigned carry = (unsigned) (s[i] - '0');
      for (int j = 31; j >= 0; j--)
        {
          unsigned x = v[j] * 10u + carry;
          v[j] = (uint8_t) x;
          carry = x >> 8;
        }
      if (carry)
        return -1; /* >= 2^256 */
    }
  memcpy (out, v, 32);
  return 0;
}

int
bill_u256_to_u64 (const uint8_t v[32], uint64_t *out)
{
  for (int i = 0; i < 24; i++)
    if (v[i])
      return -1;
  uint64_t x = 0;
  for (int i = 24; i < 32; i++)
    x = x << 8 | v[i];
  *out = x;
  return 0;
}

static void
word_addr (uint8_t w[32], const uint8_t a[20])
{
  memset (w, 0, 12);
  memcpy (w + 12, a, 20);
}

static void
word_u64 (uint8_t w[32], uint64_t x)
{
  memset (w, 0, 32);
  for (int i = 31; i >= 24; i--, x >>= 8)
    w[i] = (uint8_t) x;
}

void
bill_eip712_domain_encode (const struct bill_eip712_domain *d, uint8_t out[5 * 32])
{
  bill_keccak256 (domain_type, sizeof domain_type - 1, out);
  bill_keccak256 (d->name, strlen (d->name), out + 32);
  bill_keccak256 (d->version, strlen (d->version), out + 64);
  word_u64 (out + 96, d->chain_id);
  word_addr (out + 128, d->verifying_contract);
}

void
bill_eip712_domain_separator (const struct bill_eip712_domain *d, uint8_t out[32])
{
  uint8_t enc[5 * 32];
  bill_eip712_domain_encode (d, enc);
  bill_keccak256 (enc, sizeof enc, out);
}

void
bill_eip712_transfer_encode (const struct bill_transfer_auth *a, uint8_t out[7 * 32])
{
  bill_keccak256 (transfer_type, sizeof transfer_type - 1, out);
  word_addr (out + 32, a->from);
  word_addr (out + 64, a->to);
  memcpy (out + 96, a->value, 32);
  memcpy (out + 128, a->valid_after, 32);
  memcpy (out + 160, a->valid_before, 32);
  memcpy (out + 192, a->nonce, 32);
}

void
bill_eip712_transfer_hash (const struct bill_transfer_auth *a, uint8_t out[32])
{
  uint8_t enc[7 * 32];
  bill_eip712_transfer_encode (a, enc);
  bill_keccak256 (enc, sizeof enc, out);
}

void
bill_eip712_digest (const uint8_t domain_sep[32], const uint8_t struct_hash[32], uint8_t out[32])
{
  uint8_t pre[66] = { 0x19, 0x01 };
  memcpy (pre + 2, domain_sep, 32);
  memcpy (pre + 34, struct_hash, 32);
  bill_keccak256 (pre, sizeof pre, out);
}
