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

/* ====================================================================================
 * x402: networks, 402 requirements, payment headers, verification
 * ==================================================================================== */

/* Standard padded base64. encode: malloc'd NUL-terminated string (NULL on OOM). decode:
 * strict (see base64.c); *out malloc'd (caller frees); -1 on any deviation. */
char *bill_base64_encode (const void *data, size_t len);
int bill_base64_decode (const char *s, size_t len, uint8_t **out, size_t *out_len);

enum bill_network { BILL_NET_BASE = 0, BILL_NET_BASE_SEPOLIA, BILL_NET_COUNT };

struct bill_network_info {
  const char *name;          /* the v1 / config name: "base" */
  const char *caip2;         /* the v2 name: "eip155:8453" */
  uint64_t chain_id;
  const char *usdc;          /* the asset: USDC's address on this chain (EIP-55) */
  const char *token_name;    /* USDC's EIP-712 domain name: "USD Coin" on Base, "USDC" on Sepolia */
  const char *token_version; /* "2" */
};
const struct bill_network_info *bill_network_get (int net); /* NULL if unknown */
/* "base", "base-sepolia", "eip155:8453", "eip155:84532" -> enum; -1 if unknown. */
int bill_network_parse (const char *s, int *net);

/* What sbxd asks for one request (a deterministic function of method, path and body: the
 * client re-sends the same request with its payment, and sbxd recomputes the offer). */
struct bill_offer {
  int network;               /* enum bill_network; the asset is that network's USDC */
  uint64_t amount;           /* base units, exact */
  uint8_t pay_to[20];
  const char *resource;      /* absolute URL of the request (v1 clients require one) */
  const char *description;   /* NULL: "" */
  const char *mime_type;     /* NULL: "application/json" */
  int64_t max_timeout_s;     /* 0: BILL_X402_MAX_TIMEOUT_DEFAULT */
};
#define BILL_X402_MAX_TIMEOUT_DEFAULT 300
/* validBefore must leave this many seconds for the settlement to land (x402's facilitator). */
#define BILL_X402_VALID_BEFORE_MARGIN_S 6
/* Largest accepted payment header value (base64), bytes. Clients send ~1.3-1.6 KB. */
#define BILL_X402_HEADER_MAX 16384

/* One accepts[] entry: v2 form (CAIP-2 network, "amount") or v1 form (v1 network name,
 * "maxAmountRequired", resource/description/mimeType inline). New reference. */
json_t *bill_x402_requirement (const struct bill_offer *o, int version);
/* The decoded PAYMENT-REQUIRED object (v2) and the 402 JSON body (v1). error NULL means
 * "Payment required"; after a refused payment pass the reason name. New references. */
json_t *bill_x402_required_v2 (const struct bill_offer *o, const char *error);
json_t *bill_x402_required_v1 (const struct bill_offer *o, const char *error);
/* base64 (padded, standard) of the compact JSON of obj: the value of PAYMENT-REQUIRED,
 * PAYMENT-RESPONSE and X-PAYMENT-RESPONSE. malloc'd; NULL on OOM. */
char *bill_x402_header_encode (const json_t *obj);

/* Why a payment was refused. Names are stable API (docs/payments.md); the x402 spelling is
 * what the official facilitator would have said, for the `error` field of a 402. */
enum bill_x402_reason {
  BILL_X402_OK = 0,
  BILL_X402_MALFORMED_HEADER,      /* "malformed_header": not strict base64 of JSON, too big */
  BILL_X402_INVALID_PAYLOAD,       /* "invalid_payload": a required field absent or malformed */
  BILL_X402_UNSUPPORTED_VERSION,   /* "unsupported_version": x402Version not the header's */
  BILL_X402_UNSUPPORTED_SCHEME,    /* "unsupported_scheme": scheme is not "exact" */
  BILL_X402_NETWORK_MISMATCH,      /* "network_mismatch" */
  BILL_X402_ASSET_MISMATCH,        /* "asset_mismatch": accepted.asset is not our USDC */
  BILL_X402_REQUIREMENTS_MISMATCH, /* "requirements_mismatch": accepted's maxTimeoutSeconds
                                      or extra.{name,version} differ from the offer */
  BILL_X402_WRONG_RECIPIENT,       /* "wrong_recipient": to / payTo is not our pay-to */
  BILL_X402_WRONG_AMOUNT,          /* "wrong_amount": value / amount is not the price */
  BILL_X402_NOT_YET_VALID,         /* "not_yet_valid": validAfter > now */
  BILL_X402_EXPIRED,               /* "expired": validBefore < now + margin */
  BILL_X402_UNSUPPORTED_SIGNATURE, /* "unsupported_signature": not 65 bytes (smart wallets) */
  BILL_X402_SIGNATURE_V,           /* "signature_bad_v": v not 27/28 */
  BILL_X402_SIGNATURE_HIGH_S,      /* "signature_high_s": malleable s */
  BILL_X402_BAD_SIGNATURE,         /* "bad_signature": signer is not `from` */
  BILL_X402_REASON_COUNT
};
const char *bill_x402_reason_name (int reason);
const char *bill_x402_reason_x402 (int reason);

struct bill_x402_result {
  int reason;          /* enum bill_x402_reason */
  char message[256];   /* for humans and logs; no secrets */
};

/* A decoded payment header. Everything validated for form; nothing yet for meaning. */
struct bill_payment {
  int version;                      /* 1 (X-PAYMENT) or 2 (PAYMENT-SIGNATURE) */
  char scheme[16];                  /* v1: top-level; v2: accepted.scheme */
  char network[32];                 /* v1: top-level; v2: accepted.network, as sent */
  /* v2 only: the rest of the echoed requirement (`accepted`). */
  char accepted_amount[80];         /* as sent (decimal string, checked in verify) */
  uint8_t accepted_asset[20];
  uint8_t accepted_pay_to[20];
  int64_t accepted_max_timeout;     /* -1 when absent */
  char accepted_name[64];           /* extra.name, "" when absent */
  char accepted_version[16];        /* extra.version, "" when absent */
  int accepted_extra_ok;            /* both extra fields present, strings, short enough */
  struct bill_transfer_auth auth;   /* the signed EIP-3009 message */
  uint64_t valid_after_s;           /* auth times as seconds, saturated at UINT64_MAX */
  uint64_t valid_before_s;
  uint8_t signature[65];
  /* The replay key, canonical (lowercase hex): sbxd records (from, nonce) durably before
   * running the operation, and keeps it at least until valid_before_s. */
  char from[BILL_ADDR_STR];
  char nonce[67];
  json_t *raw;                      /* the decoded JSON, verbatim (facilitator's paymentPayload) */
};

/* Decode a header value. version: 2 for PAYMENT-SIGNATURE, 1 for X-PAYMENT (the payload's
 * x402Version must agree). Leading/trailing spaces and tabs are ignored; otherwise the value
 * must be strict base64 of a UTF-8 JSON object of at most BILL_X402_HEADER_MAX bytes,
 * without duplicate keys. Unknown keys (extensions, resource...) are ignored. On error,
 * -1 with res filled and *p cleared; on success the caller calls bill_payment_clear. */
int bill_x402_decode (const char *header, int version, struct bill_payment *p,
                      struct bill_x402_result *res);
void bill_payment_clear (struct bill_payment *p);

/* Check a decoded payment against the offer at time now_s (seconds since the epoch), in
 * this order: scheme, network, asset, requirement echo, recipient, amount, time window
 * (validAfter <= now, now + BILL_X402_VALID_BEFORE_MARGIN_S <= validBefore), signature
 * (v, low-s, EIP-712 digest over the OFFER's domain, recovered signer == from). 0 if the
 * payment is good for exactly this offer; -1 with res filled otherwise. Does not look at
 * replays: that is the caller's (from, nonce) store. */
int bill_x402_verify (const struct bill_payment *p, const struct bill_offer *o, int64_t now_s,
                      struct bill_x402_result *res);

/* The body of a facilitator's POST /verify and /settle: {x402Version, paymentPayload
 * (p->raw verbatim), paymentRequirements (the offer in p's version)}. New reference. */
json_t *bill_x402_facilitator_body (const struct bill_payment *p, const struct bill_offer *o);
/* A SettleResponse for PAYMENT-RESPONSE (v2) / X-PAYMENT-RESPONSE (v1): network named in
 * p's version, payer = from (EIP-55). On failure transaction is "" and error_reason set. */
json_t *bill_x402_settle_response (const struct bill_payment *p, const struct bill_offer *o,
                                   int success, const char *transaction,
                                   const char *error_reason);
