/* src/billing: money. Prices (exact integers of USDC's 6-decimal base unit, never floating
 * point), the hashing and signature checks behind x402 (keccak-256, EIP-712 for EIP-3009
 * TransferWithAuthorization, secp256k1 signer recovery), and x402 itself: decoding the
 * payment headers, building the 402 requirements, and verifying a payment against what
 * sbxd offered.
 *
 * Everything here is pure: no clock (callers pass `now`), no storage, no network. The
 * replay store of (from, nonce), the ledger and settlement belong to sbxd, which calls in.
 * Protocol notes: ../shared/x402/x402.md; docs/payments.md says what sbx implements. */
#pragma once

#include "../common/common.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* ====================================================================================
 * Pricing
 * ==================================================================================== */

/* Amounts are in USDC base units: 1 USDC = 1000000, $0.01 = 10000. */
#define BILL_DECIMALS 6
#define BILL_UNITS_PER_USD 1000000ull
/* Upper bound of any configured price ($1,000,000): keeps rate × seconds far below 2^64. */
#define BILL_AMOUNT_MAX (1000000ull * BILL_UNITS_PER_USD)
/* Upper bound of the configurable maximum sandbox lifetime (7 days). */
#define BILL_TIMEOUT_LIMIT_S (7 * 86400)

enum bill_tier {
  BILL_TIER_CPU = 0,
  BILL_TIER_T4,
  BILL_TIER_L4,
  BILL_TIER_A10G,
  BILL_TIER_A100,
  BILL_TIER_H100,
  BILL_TIER_COUNT
};

enum bill_op { BILL_OP_EXEC = 0, BILL_OP_STATUS, BILL_OP_TERMINATE, BILL_OP_COUNT };

struct bill_pricing {
  int64_t burst_max_s;               /* creates with timeout <= this pay the flat burst price */
  int64_t max_timeout_s;             /* longest sandbox that can be priced (and created) */
  uint64_t burst[BILL_TIER_COUNT];   /* flat price per create, timeout <= burst_max_s */
  uint64_t hourly[BILL_TIER_COUNT];  /* per-hour rate, timeout > burst_max_s */
  uint64_t op[BILL_OP_COUNT];        /* exec, status, terminate: per request */
};

/* The reference pricing: burst CPU 10000, T4 50000, L4 80000, A10G 100000, A100 200000,
 * H100 400000 up to 300 s; hourly CPU 100000, T4 1500000, L4 2000000, A10G 2500000,
 * A100 4000000, H100 8000000; exec/status/terminate 1000; lifetimes up to 86400 s. */
void bill_pricing_default (struct bill_pricing *p);

/* Override *p from a JSON object (the "pricing" object of the config file). Every key is
 * optional; unknown keys, unknown tiers, negative or non-integer amounts, floats, amounts
 * above BILL_AMOUNT_MAX and inconsistent limits are refused (SBX_E_INVALID). An amount is a
 * JSON integer of base units or a string "$D[.DDDDDD]" of dollars (exact, at most 6
 * decimals). *p is left untouched on error. Shape:
 *   {"burst_max_seconds":300, "max_timeout_seconds":86400,
 *    "create":{"burst":{"cpu":10000,...}, "hourly":{"t4":"$1.50",...}},
 *    "exec":1000, "status":1000, "terminate":1000} */
int bill_pricing_from_json (const json_t *obj, struct bill_pricing *p, struct sbx_err *err);

/* The table as served by GET /v1/pricing (new reference, caller decrefs). Each price is
 * {"amount": <base units, integer>, "usd": "0.01"}. */
json_t *bill_pricing_to_json (const struct bill_pricing *p);

/* Price of a create of `timeout_s` seconds on `tier`. timeout_s <= burst_max_s: the flat
 * burst price. Longer: hourly × timeout_s / 3600, rounded UP to the next base unit when not
 * exact (90 min on T4: 1500000 × 5400 / 3600 = 2250000 exactly). timeout_s outside
 * [1, max_timeout_s] or an unknown tier: SBX_E_INVALID. */
int bill_price_create (const struct bill_pricing *p, int tier, int64_t timeout_s,
                       uint64_t *out, struct sbx_err *err);
/* Price of exec / status / terminate; 0 for an unknown op. */
uint64_t bill_price_op (const struct bill_pricing *p, int op);

/* "cpu", "t4", "l4", "a10g", "a100", "h100" (parsing is case-insensitive). */
const char *bill_tier_name (int tier);
int bill_tier_parse (const char *s, int *tier);   /* 0, or -1 if unknown */
const char *bill_op_name (int op);                /* "exec", "status", "terminate" */

/* Dollars, exact: 10000 -> "0.01", 1000 -> "0.001", 2250000 -> "2.25", 1 -> "0.000001"
 * (at least two decimals, trailing zeros trimmed). cap >= 32. */
void bill_amount_usd (uint64_t amount, char *buf, size_t cap);
/* Parse "$D[.DDDDDD]" (the '$' is required) into base units; -1 if malformed or too big. */
int bill_amount_parse_usd (const char *s, uint64_t *out);
/* Parse a canonical unsigned decimal ("0" or [1-9][0-9]*, no sign, no spaces, no leading
 * zeros) into a uint64; -1 on anything else or on overflow. */
int bill_parse_u64 (const char *s, uint64_t *out);

/* ====================================================================================
 * Hex and keccak-256
 * ==================================================================================== */

/* Decode "0x" + exactly 2n hex digits (either case) into n bytes; -1 on anything else. */
int bill_hex_decode (const char *s, uint8_t *out, size_t n);
/* "0x" + lowercase hex of n bytes into out (cap >= 2n + 3). */
void bill_hex_encode (const uint8_t *in, size_t n, char *out, size_t cap);

/* Ethereum's keccak-256: Keccak[c=512] with the original padding byte 0x01, NOT FIPS-202
 * SHA3-256 (0x06). Incremental or one-shot. */
struct bill_keccak {
  uint64_t st[25];
  size_t pos;
};
void bill_keccak_init (struct bill_keccak *k);
void bill_keccak_update (struct bill_keccak *k, const void *data, size_t len);
void bill_keccak_final (struct bill_keccak *k, uint8_t out[32]);
void bill_keccak256 (const void *data, size_t len, uint8_t out[32]);

/* ====================================================================================
 * EVM addresses, uint256, EIP-712 for EIP-3009 TransferWithAuthorization
 * ==================================================================================== */

#define BILL_ADDR_STR 43 /* "0x" + 40 hex + NUL */

/* "0x" + 40 hex digits, any case, into 20 bytes. The EIP-55 checksum is NOT enforced here:
 * payments compare addresses as bytes (x402.md: case-insensitively). -1 if malformed. */
int bill_addr_parse (const char *s, uint8_t out[20]);
/* 1 when s is a well-formed address whose letters are all lower case, all upper case, or
 * exactly the EIP-55 mixed case; 0 otherwise (for operator input such as --pay-to). */
int bill_addr_checksum_ok (const char *s);
/* EIP-55 checksummed form. */
void bill_addr_format (const uint8_t a[20], char out[BILL_ADDR_STR]);
/* Address of an uncompressed public key X‖Y (64 bytes, no 0x04): keccak256(X‖Y)[12:]. */
void bill_addr_from_pubkey (const uint8_t xy[64], uint8_t out[20]);

/* Canonical decimal ("0" or [1-9][0-9]*, at most 78 digits) into a 32-byte big-endian
 * uint256; -1 if malformed or >= 2^256. */
int bill_u256_parse (const char *s, uint8_t out[32]);
/* Its value as a uint64: 0 when it fits, -1 when it is >= 2^64. */
int bill_u256_to_u64 (const uint8_t v[32], uint64_t *out);

struct bill_eip712_domain {
  const char *name;                 /* token name, e.g. "USD Coin" */
  const char *version;              /* e.g. "2" */
  uint64_t chain_id;
  uint8_t verifying_contract[20];   /* the token */
};

/* The signed message of EIP-3009 transferWithAuthorization. */
struct bill_transfer_auth {
  uint8_t from[20];
  uint8_t to[20];
  uint8_t value[32];        /* uint256, big-endian */
  uint8_t valid_after[32];  /* uint256, big-endian */
  uint8_t valid_before[32]; /* uint256, big-endian */
  uint8_t nonce[32];        /* bytes32 */
};

/* ABI words (5 × 32 bytes) and their keccak: the EIP-712 domain separator of
 * EIP712Domain(string name,string version,uint256 chainId,address verifyingContract). */
void bill_eip712_domain_encode (const struct bill_eip712_domain *d, uint8_t out[5 * 32]);
void bill_eip712_domain_separator (const struct bill_eip712_domain *d, uint8_t out[32]);
/* ABI words (7 × 32 bytes) and struct hash of TransferWithAuthorization(address from,
 * address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce). */
void bill_eip712_transfer_encode (const struct bill_transfer_auth *a, uint8_t out[7 * 32]);
void bill_eip712_transfer_hash (const struct bill_transfer_auth *a, uint8_t out[32]);
/* keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash): what the payer signed. */
void bill_eip712_digest (const uint8_t domain_sep[32], const uint8_t struct_hash[32],
                         uint8_t out[32]);

/* ====================================================================================
 * secp256k1 signer recovery (libsecp256k1's recovery module)
 * ==================================================================================== */

enum bill_sig_status {
  BILL_SIG_OK = 0,
  BILL_SIG_BAD_V,     /* last byte not 27 or 28 (0/1 refused: USDC itself requires 27/28) */
  BILL_SIG_HIGH_S,    /* s > secp256k1n/2: malleable twin, USDC reverts on it */
  BILL_SIG_INVALID,   /* r or s zero or >= n, or no public key recovers */
};

/* Recover the signer of a 32-byte digest from r(32) ‖ s(32) ‖ v(1). On BILL_SIG_OK, addr
 * gets keccak256(X‖Y)[12:] and, when xy is not NULL, the public key X‖Y. Thread-safe (uses
 * the library's static context; nothing allocated). */
int bill_sig_recover (const uint8_t digest[32], const uint8_t sig[65], uint8_t addr[20],
                      uint8_t xy[64]);
const char *bill_sig_status_name (int status);
