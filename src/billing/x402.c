/* x402 payments as sbxd receives them: decode a PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1)
 * header into a struct bill_payment (form only), then verify it against the offer
 * (meaning). The header is hostile input: bounded sizes everywhere, strict base64, JSON
 * without duplicate keys (so no parser downstream can read a different value than we
 * did), exact-width hex, canonical decimals, and refusal of anything we cannot check.
 * Reference: ../shared/x402/x402.md sections 2-6. */
#include "billing.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const reason_names[BILL_X402_REASON_COUNT][2] = {
  [BILL_X402_OK] = { "ok", "" },
  [BILL_X402_MALFORMED_HEADER] = { "malformed_header", "invalid_payload" },
  [BILL_X402_INVALID_PAYLOAD] = { "invalid_payload", "invalid_payload" },
  [BILL_X402_UNSUPPORTED_VERSION] = { "unsupported_version", "invalid_x402_version" },
  [BILL_X402_UNSUPPORTED_SCHEME] = { "unsupported_scheme", "invalid_exact_evm_scheme" },
  [BILL_X402_NETWORK_MISMATCH] = { "network_mismatch", "invalid_exact_evm_network_mismatch" },
  [BILL_X402_ASSET_MISMATCH] = { "asset_mismatch", "No matching payment requirements" },
  [BILL_X402_REQUIREMENTS_MISMATCH]
  = { "requirements_mismatch", "No matching payment requirements" },
  [BILL_X402_WRONG_RECIPIENT] = { "wrong_recipient", "invalid_exact_evm_recipient_mismatch" },
  [BILL_X402_WRONG_AMOUNT]
  = { "wrong_amount", "invalid_exact_evm_payload_authorization_value_mismatch" },
  [BILL_X402_NOT_YET_VALID]
  = { "not_yet_valid", "invalid_exact_evm_payload_authorization_valid_after" },
  [BILL_X402_EXPIRED] = { "expired", "invalid_exact_evm_payload_authorization_valid_before" },
  [BILL_X402_UNSUPPORTED_SIGNATURE] = { "unsupported_signature", "invalid_exact_evm_signature" },
  [BILL_X402_SIGNATURE_V] = { "signature_bad_v", "invalid_exact_evm_signature" },
  [BILL_X402_SIGNATURE_HIGH_S] = { "signature_high_s", "invalid_exact_evm_signature" },
  [BILL_X402_BAD_SIGNATURE] = { "bad_signature", "invalid_exact_evm_signature" },
};

const char *
bill_x402_reason_name (int reason)
{
  return reason >= 0 && reason < BILL_X402_REASON_COUNT ? reason_names[reason][0] : "unknown";
}

const char *
bill_x402_reason_x402 (int reason)
{
  return reason >= 0 && reason < BILL_X402_REASON_COUNT ? reason_names[reason][1] : "unknown";
}

static int
refuse (struct bill_x402_result *res, int reason, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
refuse (struct bill_x402_result *res, int reason, const char *fmt, ...)
{
  if (res)
    {
      va_list ap;
      res->reason = reason;
      va_start (ap, fmt);
      vsnprintf (res->message, sizeof res->message, fmt, ap);
      va_end (ap);
    }
  return -1;
}

void
bill_payment_clear (struct bill_payment *p)
{
  if (!p)
    return;
  json_decref (p->raw);
  memset (p, 0, sizeof *p);
  p->accepted_max_timeout = -1;
}

/* ---- decode ------------------------------------------------------------ */

/* A string field copied into a fixed buffer; absent, not a string or too long: -1. */
static int
get_str (const json_t *o, const char *key, char *buf, size_t cap)
{
  const char *s = json_string_value (json_object_get (o, key));
  if (!s || json_string_length (json_object_get (o, key)) >= cap)
    return -1;
  memcpy (buf, s, strlen (s) + 1);
  return 0;
}

static const char *
str_field (const json_t *o, const char *key)
{
  return json_string_value (json_object_get (o, key));
}

static int
decode_addr (const json_t *o, const char *key, uint8_t out[20], struct bill_x402_result *res,
             const char *where)
{
  if (bill_addr_parse (str_field (o, key), out) < 0)
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "%s.%s is not an address (0x + 40 hex)",
                   where, key);
  return 0;
}

static int
decode_u256 (const json_t *o, const char *key, uint8_t out[32], uint64_t *sat,
             struct bill_x402_result *res)
{
  if (bill_u256_parse (str_field (o, key), out) < 0)
    return refuse (res, BILL_X402_INVALID_PAYLOAD,
                   "authorization.%s is not a decimal string below 2^256", key);
  if (sat && bill_u256_to_u64 (out, sat) < 0)
    *sat = UINT64_MAX;
  return 0;
}

static int
decode_authorization (const json_t *payload, struct bill_payment *p, struct bill_x402_result *res)
{
  const json_t *a = json_object_get (payload, "authorization");
  if (!json_is_object (a))
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "payload.authorization missing");
  if (decode_addr (a, "from", p->auth.from, res, "authorization") < 0
      || decode_addr (a, "to", p->auth.to, res, "authorization") < 0
      || decode_u256 (a, "value", p->auth.value, NULL, res) < 0
      || decode_u256 (a, "validAfter", p->auth.valid_after, &p->valid_after_s, res) < 0
      || decode_u256 (a, "validBefore", p->auth.valid_before, &p->valid_before_s, res) < 0)
    return -1;
  if (bill_hex_decode (str_field (a, "nonce"), p->auth.nonce, 32) < 0)
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "authorization.nonce is not 0x + 64 hex");
  bill_hex_encode (p->auth.from, 20, p->from, sizeof p->from);
  bill_hex_encode (p->auth.nonce, 32, p->nonce, sizeof p->nonce);

  const char *sig = str_field (payload, "signature");
  if (!sig)
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "payload.signature missing");
  if (bill_hex_decode (sig, p->signature, 65) == 0)
    return 0;
  /* Valid hex of another length: an ERC-1271 / ERC-6492 smart-wallet signature, which only
   * the chain can check. Refused: sbx verifies every payment itself. */
  size_t n = strnlen (sig, BILL_X402_HEADER_MAX);
  if (n > 2 && n % 2 == 0 && sig[0] == '0' && sig[1] == 'x'
      && strspn (sig + 2, "0123456789abcdefABCDEF") == n - 2)
    return refuse (res, BILL_X402_UNSUPPORTED_SIGNATURE,
                   "signature of %zu bytes: only 65-byte EOA signatures are accepted", (n - 2) / 2);
  return refuse (res, BILL_X402_INVALID_PAYLOAD, "payload.signature is not 0x + 130 hex");
}

static int
decode_accepted (const json_t *acc, struct bill_payment *p, struct bill_x402_result *res)
{
  if (!json_is_object (acc))
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "accepted missing (required in x402 v2)");
  if (get_str (acc, "scheme", p->scheme, sizeof p->scheme) < 0)
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "accepted.scheme missing or too long");
  if (get_str (acc, "network", p->network, sizeof p->network) < 0)
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "accepted.network missing or too long");
  if (get_str (acc, "amount", p->accepted_amount, sizeof p->accepted_amount) < 0)
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "accepted.amount missing or too long");
  if (decode_addr (acc, "asset", p->accepted_asset, res, "accepted") < 0
      || decode_addr (acc, "payTo", p->accepted_pay_to, res, "accepted") < 0)
    return -1;
  const json_t *mt = json_object_get (acc, "maxTimeoutSeconds");
  if (mt)
    {
      if (!json_is_integer (mt) || json_integer_value (mt) < 0)
        return refuse (res, BILL_X402_INVALID_PAYLOAD,
                       "accepted.maxTimeoutSeconds is not a non-negative integer");
      p->accepted_max_timeout = (int64_t) json_integer_value (mt);
    }
  const json_t *extra = json_object_get (acc, "extra");
  p->accepted_extra_ok = json_is_object (extra)
                         && get_str (extra, "name", p->accepted_name, sizeof p->accepted_name) == 0
                         && get_str (extra, "version", p->accepted_version,
                                     sizeof p->accepted_version) == 0;
  return 0;
}

static int
decode_json (json_t *root, int version, struct bill_payment *p, struct bill_x402_result *res)
{
  if (!json_is_object (root))
    return refuse (res, BILL_X402_MALFORMED_HEADER, "payment is not a JSON object");
  const json_t *ver = json_object_get (root, "x402Version");
  if (!json_is_integer (ver))
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "x402Version missing or not a number");
  if (json_integer_value (ver) != version)
    return refuse (res, BILL_X402_UNSUPPORTED_VERSION, "x402Version %lld in a %s header",
                   (long long) json_integer_value (ver),
                   version == 2 ? "PAYMENT-SIGNATURE" : "X-PAYMENT");
  p->version = version;
  const json_t *payload = json_object_get (root, "payload");
  if (!json_is_object (payload))
    return refuse (res, BILL_X402_INVALID_PAYLOAD, "payload missing");
  if (version == 1)
    {
      if (get_str (root, "scheme", p->scheme, sizeof p->scheme) < 0)
        return refuse (res, BILL_X402_INVALID_PAYLOAD, "scheme missing or too long");
      if (get_str (root, "network", p->network, sizeof p->network) < 0)
        return refuse (res, BILL_X402_INVALID_PAYLOAD, "network missing or too long");
    }
  else if (decode_accepted (json_object_get (root, "accepted"), p, res) < 0)
    return -1;
  return decode_authorization (payload, p, res);
}

int
bill_x402_decode (const char *header, int version, struct bill_payment *p,
                  struct bill_x402_result *res)
{
  memset (p, 0, sizeof *p);
  p->accepted_max_timeout = -1;
  if (res)
    {
      res->reason = BILL_X402_OK;
      res->message[0] = '\0';
    }
  if (version != 1 && version != 2)
    return refuse (res, BILL_X402_UNSUPPORTED_VERSION, "x402 version %d", version);
  if (!header)
    return refuse (res, BILL_X402_MALFORMED_HEADER, "no payment header");
  /* HTTP optional whitespace around the value. The length is measured after the leading
   * whitespace and before trimming the trailing one, so bytes past the limit can never be
   * cut off silently: a value that long is refused whole. */
  for (size_t i = 0; i < BILL_X402_HEADER_MAX && (header[0] == ' ' || header[0] == '\t'); i++)
    header++;
  size_t len = strnlen (header, BILL_X402_HEADER_MAX + 1);
  if (len > BILL_X402_HEADER_MAX)
    return refuse (res, BILL_X402_MALFORMED_HEADER, "payment header above %d bytes",
                   BILL_X402_HEADER_MAX);
  while (len && (header[len - 1] == ' ' || header[len - 1] == '\t'))
    len--;
  cleanup_free uint8_t *raw = NULL;
  size_t raw_len = 0;
  if (bill_base64_decode (header, len, &raw, &raw_len) < 0)
    return refuse (res, BILL_X402_MALFORMED_HEADER, "payment header is not standard padded base64");
  json_error_t je;
  json_t *root = json_loadb ((const char *) raw, raw_len, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return refuse (res, BILL_X402_MALFORMED_HEADER, "payment header is not JSON: %.100s", je.text);
  if (decode_json (root, version, p, res) < 0)
    {
      json_decref (root);
      bill_payment_clear (p);
      return -1;
    }
  p->raw = root;
  return 0;
}

/* ---- verify ------------------------------------------------------------ */

static int
check_requirement (const struct bill_payment *p, const struct bill_offer *o,
                   const struct bill_network_info *n, struct bill_x402_result *res)
{
  if (strcmp (p->scheme, "exact") != 0)
    return refuse (res, BILL_X402_UNSUPPORTED_SCHEME, "scheme '%s' is not \"exact\"", p->scheme);
  const char *want_net = p->version == 1 ? n->name : n->caip2;
  if (strcmp (p->network, want_net) != 0)
    return refuse (res, BILL_X402_NETWORK_MISMATCH, "network '%s', expected '%s'", p->network,
                   want_net);
  if (p->version == 1)
    return 0; /* v1 echoes nothing else; the signature binds the asset (domain) */

  uint8_t usdc[20];
  if (bill_addr_parse (n->usdc, usdc) < 0 || memcmp (usdc, p->accepted_asset, 20) != 0)
    return refuse (res, BILL_X402_ASSET_MISMATCH, "accepted.asset is not USDC on %s", n->name);
  if (memcmp (p->accepted_pay_to, o->pay_to, 20) != 0)
    return refuse (res, BILL_X402_WRONG_RECIPIENT, "accepted.payTo is not this server's pay-to");
  uint64_t amount;
  if (bill_parse_u64 (p->accepted_amount, &amount) < 0 || amount != o->amount)
    return refuse (res, BILL_X402_WRONG_AMOUNT, "accepted.amount is not the price %llu",
                   (unsigned long long) o->amount);
  int64_t want_timeout = o->max_timeout_s > 0 ? o->max_timeout_s : BILL_X402_MAX_TIMEOUT_DEFAULT;
  if (p->accepted_max_timeout != want_timeout)
    return refuse (res, BILL_X402_REQUIREMENTS_MISMATCH, "accepted.maxTimeoutSeconds is not %lld",
                   (long long) want_timeout);
  if (!p->accepted_extra_ok || strcmp (p->accepted_name, n->token_name) != 0
      || strcmp (p->accepted_version, n->token_version) != 0)
    return refuse (res, BILL_X402_REQUIREMENTS_MISMATCH,
                   "accepted.extra is not {name: \"%s\", version: \"%s\"}", n->token_name,
                   n->token_version);
  return 0;
}

int
bill_x402_verify (const struct bill_payment *p, const struct bill_offer *o, int64_t now_s,
                  struct bill_x402_result *res)
{
  if (res)
    {
      res->reason = BILL_X402_OK;
      res->message[0] = '\0';
    }
  const struct bill_network_info *n = bill_network_get (o->network);
  if (!n)
    return refuse (res, BILL_X402_NETWORK_MISMATCH, "server offers no known network");
  if (p->version != 1 && p->version != 2)
    return refuse (res, BILL_X402_UNSUPPORTED_VERSION, "payment was not decoded");
  if (check_requirement (p, o, n, res) < 0)
    return -1;

  if (memcmp (p->auth.to, o->pay_to, 20) != 0)
    return refuse (res, BILL_X402_WRONG_RECIPIENT, "authorization.to is not this server's pay-to");
  uint64_t value;
  if (bill_u256_to_u64 (p->auth.value, &value) < 0 || value != o->amount)
    return refuse (res, BILL_X402_WRONG_AMOUNT, "authorization.value is not the price %llu",
                   (unsigned long long) o->amount);

  uint64_t now = now_s > 0 ? (uint64_t) now_s : 0;
  if (p->valid_after_s > now)
    return refuse (res, BILL_X402_NOT_YET_VALID, "validAfter %llu is after now %llu",
                   (unsigned long long) p->valid_after_s, (unsigned long long) now);
  if (p->valid_before_s < now + BILL_X402_VALID_BEFORE_MARGIN_S)
    return refuse (res, BILL_X402_EXPIRED, "validBefore %llu is before now + %d s",
                   (unsigned long long) p->valid_before_s, BILL_X402_VALID_BEFORE_MARGIN_S);

  /* The digest is built over OUR domain (token name, version, chain, asset), never over
   * anything the client sent: a signature for another token or chain recovers a stranger. */
  struct bill_eip712_domain dom = {
    .name = n->token_name, .version = n->token_version, .chain_id = n->chain_id,
  };
  if (bill_addr_parse (n->usdc, dom.verifying_contract) < 0)
    return refuse (res, BILL_X402_ASSET_MISMATCH, "bad asset table");
  uint8_t sep[32], sh[32], digest[32], signer[20];
  bill_eip712_domain_separator (&dom, sep);
  bill_eip712_transfer_hash (&p->auth, sh);
  bill_eip712_digest (sep, sh, digest);
  switch (bill_sig_recover (digest, p->signature, signer, NULL))
    {
    case BILL_SIG_OK:
      break;
    case BILL_SIG_BAD_V:
      return refuse (res, BILL_X402_SIGNATURE_V, "signature v is %u, must be 27 or 28",
                     p->signature[64]);
    case BILL_SIG_HIGH_S:
      return refuse (res, BILL_X402_SIGNATURE_HIGH_S, "signature s is above secp256k1n/2");
    default:
      return refuse (res, BILL_X402_BAD_SIGNATURE, "signature recovers no public key");
    }
  if (memcmp (signer, p->auth.from, 20) != 0)
    {
      char who[BILL_ADDR_STR];
      bill_addr_format (signer, who);
      return refuse (res, BILL_X402_BAD_SIGNATURE, "signed by %s, not by authorization.from", who);
    }
  return 0;
}
