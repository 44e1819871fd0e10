/* x402 decoding and verification. Real client output first (headers captured from
 * @x402/fetch v2 and v1, legacy x402-fetch and @blockrun/llm, in
 * ../shared/x402/captured-exchange.md) and the vectors' headers; then payments built
 * and signed here (libsecp256k1, the vectors' anvil keys) with one thing wrong each, so
 * every refusal is reached with an otherwise valid payment and reports its own reason.
 * Also the 402 objects, compared with the official server's bytes, and hostile headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "billing_vectors.h"

/* Captured on loopback from the real clients and the official server (2026-11-22). */
static const char CAP_REQUIRED_DUAL[] =
  "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQYXltZW50IHJlcXVpcmVkIiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cD"
  "ovLzEyNy4wLjAuMTo0MDUzL3YxL3NhbmRib3gvY3JlYXRlIiwiZGVzY3JpcHRpb24iOiJtb2NrIHNhbmRib3ggY2Fs"
  "bCIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRzIjpbeyJzY2hlbWUiOiJleGFjdCIsIm5ldH"
  "dvcmsiOiJlaXAxNTU6ODQ1MyIsImFtb3VudCI6IjEwMDAwIiwiYXNzZXQiOiIweDgzMzU4OWZDRDZlRGI2RTA4ZjRj"
  "N0MzMkQ0ZjcxYjU0YmRBMDI5MTMiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMz"
  "EyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjozMDAsImV4dHJhIjp7Im5hbWUiOiJVU0QgQ29pbiIsInZlcnNpb24i"
  "OiIyIn19XX0="
  ;
static const char CAP_REQUIRED_OFFICIAL[] =
  "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQYXltZW50IHJlcXVpcmVkIiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cD"
  "ovLzEyNy4wLjAuMTo0MDQyL3YxL3NhbmRib3gvY3JlYXRlIiwiZGVzY3JpcHRpb24iOiJDcmVhdGUgYSBzYW5kYm94"
  "IiwibWltZVR5cGUiOiJhcHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdHMiOlt7InNjaGVtZSI6ImV4YWN0IiwibmV0d2"
  "9yayI6ImVpcDE1NTo4NDUzIiwiYW1vdW50IjoiMTAwMDAiLCJhc3NldCI6IjB4ODMzNTg5ZkNENmVEYjZFMDhmNGM3"
  "QzMyRDRmNzFiNTRiZEEwMjkxMyIsInBheVRvIjoiMHgyMDk2OTNCYzZhZmMwQzUzMjhiQTM2RmFGMDNDNTE0RUYzMT"
  "IyODdDIiwibWF4VGltZW91dFNlY29uZHMiOjMwMCwiZXh0cmEiOnsibmFtZSI6IlVTRCBDb2luIiwidmVyc2lvbiI6"
  "IjIifX1dfQ=="
  ;
static const char CAP_PAY_FETCH_V2[] =
  "eyJ4NDAyVmVyc2lvbiI6MiwicGF5bG9hZCI6eyJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweGYzOUZkNmU1MWFhZD"
  "g4RjZGNGNlNmFCODgyNzI3OWNmZkZiOTIyNjYiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUx"
  "NEVGMzEyMjg3QyIsInZhbHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMCIsInZhbGlkQmVmb3JlIjoiMTc5NTMwOD"
  "QwOCIsIm5vbmNlIjoiMHhlZDdhNWVkNGJlNjE5ZGExNDQyNWQ2MGRmZGQxOTYwZTBmZGI3MWM4MzY4NjMwN2IwOTll"
  "YWZiNDBiMDA4MzViIn0sInNpZ25hdHVyZSI6IjB4OWEyZmY4M2JkYTU3NTJjY2Q3NTMyNjg1ZTEzMmI0M2IzMjY4Zj"
  "k4ZTQwMTlmNDA5MjcwOWIzZWI3MzZmNGFkNzViMzk0MjM1MGE4NzRmNWMxN2I1NGIyYWRkNmZlMjgxMzNiNGY3ZDg1"
  "YjJlN2Y4MGY0ZDJkYTRmYzNkNDhmZDUxYiJ9LCJyZXNvdXJjZSI6eyJ1cmwiOiJodHRwOi8vMTI3LjAuMC4xOjQwNT"
  "EvdjEvc2FuZGJveC9jcmVhdGUiLCJkZXNjcmlwdGlvbiI6Im1vY2sgc2FuZGJveCBjYWxsIiwibWltZVR5cGUiOiJh"
  "cHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdGVkIjp7InNjaGVtZSI6ImV4YWN0IiwibmV0d29yayI6ImVpcDE1NTo4ND"
  "UzIiwiYW1vdW50IjoiMTAwMDAiLCJhc3NldCI6IjB4ODMzNTg5ZkNENmVEYjZFMDhmNGM3QzMyRDRmNzFiNTRiZEEw"
  "MjkxMyIsInBheVRvIjoiMHgyMDk2OTNCYzZhZmMwQzUzMjhiQTM2RmFGMDNDNTE0RUYzMTIyODdDIiwibWF4VGltZW"
  "91dFNlY29uZHMiOjMwMCwiZXh0cmEiOnsibmFtZSI6IlVTRCBDb2luIiwidmVyc2lvbiI6IjIifX19"
  ;
static const char CAP_PAY_FETCH_V1[] =
  "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZSIsInBheWxvYWQiOnsiYXV0aG"
  "9yaXphdGlvbiI6eyJmcm9tIjoiMHhmMzlGZDZlNTFhYWQ4OEY2RjRjZTZhQjg4MjcyNzljZmZGYjkyMjY2IiwidG8i"
  "OiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaW"
  "RBZnRlciI6IjE3OTUzMDc1MDkiLCJ2YWxpZEJlZm9yZSI6IjE3OTUzMDg0MDkiLCJub25jZSI6IjB4ZDMwMDJjZmYy"
  "ZTI0NWIzOTJkYTBkOWU2ZDA2N2YxN2U4YTUyMTIzMTUxNzVjNjEwZjk4ZWRlMjBkZjAxZjAyMyJ9LCJzaWduYXR1cm"
  "UiOiIweDA2ZDk5MGJhZGIzMmY4ZjYwZmUxNWMwMWE4N2Q1MDM5ZWE4MzkwYzQ3ZTRjODZkZDhjOTBjNWIwOTdkODMw"
  "NmU0Zjg0MWI3ZmI3ZTA3YTNkYTcwNGM0NzVlNmYxM2VjNzNhOTk0YWExMzcyZDEzMmUwNWFkNDJjYTJjZWQ1ZTNmMW"
  "IifX0="
  ;
static const char CAP_PAY_LEGACY_V1[] =
  "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZSIsInBheWxvYWQiOnsic2lnbm"
  "F0dXJlIjoiMHgxMjdiZGNjNGM2MmQwMzkyNjk4YzA3ODBkMWY1ZjA5OTkwMzkwMjljODMzNzdiOWE2Yjk5Njc2OTM3"
  "ODFmYzM5Nzk5NzRmMDZiOTNhYjAwOGUwOTI0M2NmNGVkMTYxNzcyNGI5ZDEyMTQ1N2NmOWI1MTE2MmI3ZTZmZjgxYm"
  "IyMzFiIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHgzQzQ0Q2REZEI2YTkwMGZhMmI1ODVkZDI5OWUwM2QxMkZB"
  "NDI5M0JDIiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6Ij"
  "EwMDAwIiwidmFsaWRBZnRlciI6IjE3OTUzMDc1MTAiLCJ2YWxpZEJlZm9yZSI6IjE3OTUzMDg0MTAiLCJub25jZSI6"
  "IjB4YjMxNDQwYmRjMmIzZTgwMjljMWIyNmM3YmFhNGI2NTU3YWMwYjg1ZDdiMTQ3ZjAzYzVhMjQwZGRhMWI3ODczYS"
  "J9fX0="
  ;
static const char CAP_PAY_BLOCKRUN_V2[] =
  "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cDovLzEyNy4wLjAuMTo0MDUzL2FwaS92MS9tb2"
  "RhbC9zYW5kYm94L2NyZWF0ZSIsImRlc2NyaXB0aW9uIjoibW9jayBzYW5kYm94IGNhbGwiLCJtaW1lVHlwZSI6ImFw"
  "cGxpY2F0aW9uL2pzb24ifSwiYWNjZXB0ZWQiOnsic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiZWlwMTU1Ojg0NT"
  "MiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHg4MzM1ODlmQ0Q2ZURiNkUwOGY0YzdDMzJENGY3MWI1NGJkQTAy"
  "OTEzIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3"
  "V0U2Vjb25kcyI6MzAwLCJleHRyYSI6eyJuYW1lIjoiVVNEIENvaW4iLCJ2ZXJzaW9uIjoiMiJ9fSwicGF5bG9hZCI6"
  "eyJzaWduYXR1cmUiOiIweDViNWZkNzUzZjRlOGRjNzBhNGY0ZjMwMDkyZWZhZTMxZGExOTE3NGJlYmQ5MWQ4NDcxYj"
  "A2OGFlZmIyZmM4YzMyYjFkODhmYWQyNjg5OTYxYjFmNGFhNDk0ZGNhYTVhMzQwOTdmN2JjMTVlNjA3NmIwYjMzOWMx"
  "MjFiYjMwZmE5MWMiLCJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweDcwOTk3OTcwQzUxODEyZGMzQTAxMEM3ZDAxYj"
  "UwZTBkMTdkYzc5QzgiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZh"
  "bHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMTc5NTMwNzUxMCIsInZhbGlkQmVmb3JlIjoiMTc5NTMwODQxMCIsIm"
  "5vbmNlIjoiMHhhZTc4OWY3MzIxNmU3ZDQ1NzQ4YmNiOGE5NTc4MmQ4MTU0Y2VjMTI4YWQ5ZGFmOTg2MWFmZTYwYmM5"
  "OWZlNjMzIn19LCJleHRlbnNpb25zIjp7ImJ1aWxkZXItY29kZSI6eyJpbmZvIjp7InMiOlsiYmxvY2tydW4iXX19fX"
  "0="
  ;
static const char CAP_BODY_V1_DUAL[] =
  "{\"x402Version\":1,\"error\":\"Payment required\",\"accepts\":[{\"scheme\":\"exac"
  "t\",\"network\":\"base\",\"maxAmountRequired\":\"10000\",\"resource\":\"http://127"
  ".0.0.1:4053/v1/sandbox/create\",\"description\":\"mock sandbox call\",\"mime"
  "Type\":\"application/json\",\"payTo\":\"0x209693Bc6afc0C5328bA36FaF03C514EF3"
  "12287C\",\"maxTimeoutSeconds\":300,\"asset\":\"0x833589fCD6eDb6E08f4c7C32D4f"
  "71b54bdA02913\",\"extra\":{\"name\":\"USD Coin\",\"version\":\"2\"}}]}"
  ;

#define PAY_TO "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
#define KEY0 "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#define ADDR0 "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
#define KEY1 "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
#define NOW 1795307600 /* inside every captured authorization's window */

static void
offer_init (struct bill_offer *o, int net, uint64_t amount, const char *url, const char *desc)
{
  memset (o, 0, sizeof *o);
  o->network = net;
  o->amount = amount;
  assert_int_equal (bill_addr_parse (PAY_TO, o->pay_to), 0);
  o->resource = url;
  o->description = desc;
}

/* decode + verify; returns the reason (BILL_X402_OK on success). */
static int
run (const char *header, int version, const struct bill_offer *o, int64_t now,
     struct bill_payment *keep)
{
  struct bill_payment p;
  struct bill_x402_result res = { 0 };
  if (bill_x402_decode (header, version, &p, &res) < 0)
    {
      assert_int_not_equal (res.reason, BILL_X402_OK);
      assert_true (res.message[0] != '\0');
      assert_null (p.raw);
      return res.reason;
    }
  int r = bill_x402_verify (&p, o, now, &res);
  assert_int_equal (r == 0, res.reason == BILL_X402_OK);
  if (r < 0)
    assert_true (res.message[0] != '\0');
  if (keep)
    *keep = p;
  else
    bill_payment_clear (&p);
  return res.reason;
}

static void
expect (int got, int want, const char *what)
{
  if (got != want)
    fail_msg ("%s: got %s, want %s", what, bill_x402_reason_name (got), bill_x402_reason_name (want));
}

/* ---- real clients ------------------------------------------------------ */

static void
test_captured_clients (void **state)
{
  struct bill_offer o;
  offer_init (&o, BILL_NET_BASE, 10000, "http://127.0.0.1:4053/v1/sandbox/create", "mock sandbox call");
  struct {
    const char *hdr;
    int version;
    const char *from;
  } cases[] = {
    { CAP_PAY_FETCH_V2, 2, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266" },
    { CAP_PAY_FETCH_V1, 1, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266" },
    { CAP_PAY_LEGACY_V1, 1, "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc" },
    { CAP_PAY_BLOCKRUN_V2, 2, "0x70997970c51812dc3a010c7d01b50e0d17dc79c8" }, /* + extensions */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      struct bill_payment p;
      expect (run (cases[i].hdr, cases[i].version, &o, NOW, &p), BILL_X402_OK, "captured");
      assert_int_equal (p.version, cases[i].version);
      assert_string_equal (p.from, cases[i].from);
      assert_int_equal (strlen (p.nonce), 66);
      assert_non_null (p.raw);
      /* The other header name is refused: x402Version must match it. */
      expect (run (cases[i].hdr, 3 - cases[i].version, &o, NOW, NULL),
              BILL_X402_UNSUPPORTED_VERSION, "swapped header");
      /* Another price, another pay-to, another network: refused. */
      struct bill_offer o2 = o;
      o2.amount = 10001;
      expect (run (cases[i].hdr, cases[i].version, &o2, NOW, NULL), BILL_X402_WRONG_AMOUNT, "price");
      o2 = o;
      o2.pay_to[19] ^= 1;
      expect (run (cases[i].hdr, cases[i].version, &o2, NOW, NULL), BILL_X402_WRONG_RECIPIENT, "payto");
      o2 = o;
      o2.network = BILL_NET_BASE_SEPOLIA;
      expect (run (cases[i].hdr, cases[i].version, &o2, NOW, NULL), BILL_X402_NETWORK_MISMATCH, "net");
      /* Time: far later, it has expired. */
      expect (run (cases[i].hdr, cases[i].version, &o, NOW + 86400, NULL), BILL_X402_EXPIRED, "late");
      bill_payment_clear (&p);
    }
  /* The legacy client's window starts at now - 600: before that, not yet valid. */
  expect (run (CAP_PAY_LEGACY_V1, 1, &o, 1795307509, NULL), BILL_X402_NOT_YET_VALID, "early");
  expect (run (CAP_PAY_LEGACY_V1, 1, &o, 1795307510, NULL), BILL_X402_OK, "validAfter == now");
}

static void
test_vector_headers (void **state)
{
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "transferWithAuthorization");
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      const char *id = vstr (v, "id");
      json_t *x = json_object_get (v, "x402");
      json_t *msg = json_object_get (json_object_get (v, "typedData"), "message");
      int net;
      assert_int_equal (bill_network_parse (vstr (json_object_get (v, "network"), "caip2"), &net), 0);
      struct bill_offer o;
      offer_init (&o, net, 0, "http://127.0.0.1:8402/v1/sandbox/create", "Create a sandbox");
      assert_int_equal (bill_addr_parse (vstr (msg, "to"), o.pay_to), 0);
      uint64_t after, before;
      assert_int_equal (bill_parse_u64 (vstr (msg, "validAfter"), &after), 0);
      assert_int_equal (bill_parse_u64 (vstr (msg, "validBefore"), &before), 0);
      int64_t now = (int64_t) (after > 0 ? after : before - 1000);
      uint8_t val[32];
      assert_int_equal (bill_u256_parse (vstr (msg, "value"), val), 0);
      int wide = bill_u256_to_u64 (val, &o.amount) < 0; /* v4: 2^64 + 1 */

      for (int version = 1; version <= 2; version++)
        {
          const char *hdr = vstr (x, version == 2 ? "paymentSignatureHeaderV2" : "xPaymentHeaderV1");
          struct bill_payment p;
          struct bill_x402_result res;
          if (bill_x402_decode (hdr, version, &p, &res) < 0)
            fail_msg ("%s v%d: %s", id, version, res.message);
          assert_string_equal (p.from, vstr (v, "expectedSignerLower"));
          assert_true (json_equal (p.raw, json_object_get (x, version == 2 ? "paymentPayloadV2"
                                                                          : "paymentPayloadV1")));
          char nonce_lower[67];
          snprintf (nonce_lower, sizeof nonce_lower, "%s", vstr (msg, "nonce"));
          for (char *c = nonce_lower; *c; c++)
            if (*c >= 'A' && *c <= 'F')
              *c = (char) (*c - 'A' + 'a');
          assert_string_equal (p.nonce, nonce_lower);
          if (version == 2 && json_object_get (json_object_get (x, "paymentPayloadV2"), "accepted"))
            {
              /* The vector's accepted echoes the vector's amount; align the offer to it. */
              json_t *acc = json_object_get (json_object_get (x, "paymentPayloadV2"), "accepted");
              json_int_t mt = json_integer_value (json_object_get (acc, "maxTimeoutSeconds"));
              o.max_timeout_s = mt;
            }
          int r = bill_x402_verify (&p, &o, now, &res);
          if (wide)
            expect (res.reason, BILL_X402_WRONG_AMOUNT, id);
          else if (r < 0)
            fail_msg ("%s v%d refused: %s: %s", id, version, bill_x402_reason_name (res.reason),
                      res.message);
          bill_payment_clear (&p);
        }
    }
  json_decref (all);
}

/* ---- payments built here ----------------------------------------------- */

static void
domain_of (int net, struct bill_eip712_domain *d)
{
  const struct bill_network_info *n = bill_network_get (net);
  d->name = n->token_name;
  d->version = n->token_version;
  d->chain_id = n->chain_id;
  assert_int_equal (bill_addr_parse (n->usdc, d->verifying_contract), 0);
}

/* (Re)sign the payment's authorization over domain d with key. */
static void
sign_payment (json_t *pay, const char *key_hex, const struct bill_eip712_domain *d)
{
  json_t *payload = json_object_get (pay, "payload");
  json_t *a = json_object_get (payload, "authorization");
  struct bill_transfer_auth t;
  assert_int_equal (bill_addr_parse (vstr (a, "from"), t.from), 0);
  assert_int_equal (bill_addr_parse (vstr (a, "to"), t.to), 0);
  assert_int_equal (bill_u256_parse (vstr (a, "value"), t.value), 0);
  assert_int_equal (bill_u256_parse (vstr (a, "validAfter"), t.valid_after), 0);
  assert_int_equal (bill_u256_parse (vstr (a, "validBefore"), t.valid_before), 0);
  assert_int_equal (bill_hex_decode (vstr (a, "nonce"), t.nonce, 32), 0);
  uint8_t sep[32], sh[32], dg[32], key[32], sig[65];
  char hex[135];
  bill_eip712_domain_separator (d, sep);
  bill_eip712_transfer_hash (&t, sh);
  bill_eip712_digest (sep, sh, dg);
  vhex32 (key_hex, key);
  test_sign (key, dg, sig);
  bill_hex_encode (sig, 65, hex, sizeof hex);
  json_object_set_new (payload, "signature", json_string (hex));
}

/* What a well-behaved client sends for offer o: valid, signed by KEY0. */
static json_t *
client_payment (const struct bill_offer *o, int version, int64_t now)
{
  const struct bill_network_info *n = bill_network_get (o->network);
  char amount[24], after[24], before[24];
  snprintf (amount, sizeof amount, "%llu", (unsigned long long) o->amount);
  snprintf (after, sizeof after, "%lld", version == 2 ? 0LL : (long long) now - 600);
  snprintf (before, sizeof before, "%lld", (long long) now + 300);
  json_t *pay = json_pack ("{s:i, s:{s:{s:s, s:s, s:s, s:s, s:s, s:s}}}", "x402Version", version,
                           "payload", "authorization", "from", ADDR0, "to", PAY_TO,
                           "value", amount, "validAfter", after, "validBefore", before,
                           "nonce", "0x4242424242424242424242424242424242424242424242424242424242424242");
  assert_non_null (pay);
  if (version == 2)
    {
      json_object_set_new (pay, "accepted", bill_x402_requirement (o, 2));
      json_object_set_new (pay, "resource", json_pack ("{s:s}", "url", o->resource));
    }
  else
    {
      json_object_set_new (pay, "scheme", json_string ("exact"));
      json_object_set_new (pay, "network", json_string (n->name));
    }
  struct bill_eip712_domain d;
  domain_of (o->network, &d);
  sign_payment (pay, KEY0, &d);
  return pay;
}

static int
run_json (json_t *pay, int version, const struct bill_offer *o, int64_t now)
{
  char *txt = json_dumps (pay, JSON_COMPACT);
  char *hdr = bill_base64_encode (txt, strlen (txt));
  int r = run (hdr, version, o, now, NULL);
  free (txt);
  free (hdr);
  return r;
}

static json_t *
auth_of (json_t *pay)
{
  return json_object_get (json_object_get (pay, "payload"), "authorization");
}

static void
set_auth (json_t *pay, const char *key, const char *value)
{
  json_object_set_new (auth_of (pay), key, json_string (value));
}

static void
test_built_ok (void **state)
{
  for (int net = 0; net < BILL_NET_COUNT; net++)
    for (int version = 1; version <= 2; version++)
      {
        struct bill_offer o;
        offer_init (&o, net, 2250000, "http://localhost:8080/v1/sandbox/create", NULL);
        json_t *pay = client_payment (&o, version, NOW);
        expect (run_json (pay, version, &o, NOW), BILL_X402_OK, "built");
        /* Addresses in any case: to, payTo and from compared as bytes. */
        set_auth (pay, "to", "0x209693bc6afc0c5328ba36faf03c514ef312287c");
        set_auth (pay, "from", "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266");
        if (version == 2)
          json_object_set_new (json_object_get (pay, "accepted"), "payTo",
                               json_string ("0x209693BC6AFC0C5328BA36FAF03C514EF312287C"));
        expect (run_json (pay, version, &o, NOW), BILL_X402_OK, "any case");
        /* Unknown keys anywhere are ignored. */
        json_object_set_new (pay, "extensions",
                             json_pack ("{s:{s:{s:[s]}}}", "builder-code", "info", "s", "x"));
        json_object_set_new (pay, "somethingNew", json_integer (7));
        json_object_set_new (auth_of (pay), "memo", json_string ("hi"));
        json_object_set_new (json_object_get (pay, "payload"), "extra", json_true ());
        if (version == 2)
          json_object_set_new (json_object_get (json_object_get (pay, "accepted"), "extra"),
                               "assetTransferMethod", json_string ("eip3009"));
        expect (run_json (pay, version, &o, NOW), BILL_X402_OK, "unknown keys");
        json_decref (pay);
      }
}

static void
test_refusals (void **state)
{
  struct bill_offer o;
  offer_init (&o, BILL_NET_BASE, 10000, "http://localhost:8080/v1/sandbox/exec", "Run a command");
  struct bill_eip712_domain base;
  domain_of (BILL_NET_BASE, &base);
  for (int version = 1; version <= 2; version++)
    {
      json_t *pay;
#define FRESH() (pay = client_payment (&o, version, NOW))
#define EXPECT(want, what)                                                                         \
  do                                                                                               \
    {                                                                                              \
      expect (run_json (pay, version, &o, NOW), want, what);                                       \
      json_decref (pay);                                                                           \
    }                                                                                              \
  while (0)
      /* Amount: a properly signed 10001, 9999, 0, and values beyond 64 and 256 bits. */
      FRESH ();
      set_auth (pay, "value", "10001");
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_WRONG_AMOUNT, "overpay");
      FRESH ();
      set_auth (pay, "value", "9999");
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_WRONG_AMOUNT, "underpay");
      FRESH ();
      set_auth (pay, "value", "18446744073709561616"); /* 2^64 + 10000 */
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_WRONG_AMOUNT, "2^64 + price");
      FRESH ();
      set_auth (pay, "value", "99999999999999999999999999999999999999999999999999999999999999999999999999999999");
      EXPECT (BILL_X402_INVALID_PAYLOAD, "beyond uint256");
      FRESH ();
      json_object_set_new (auth_of (pay), "value", json_integer (10000));
      EXPECT (BILL_X402_INVALID_PAYLOAD, "number, not string");
      static const char *const bad_numbers[] = { "010000", "+10000", "-10000", "1e4", "10000.0",
                                                 " 10000", "0x2710", "", "10000\n" };
      for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++)
        {
          FRESH ();
          set_auth (pay, "value", bad_numbers[i]);
          EXPECT (BILL_X402_INVALID_PAYLOAD, bad_numbers[i]);
          FRESH ();
          set_auth (pay, "validBefore", bad_numbers[i]);
          EXPECT (BILL_X402_INVALID_PAYLOAD, bad_numbers[i]);
        }
      /* Recipient: a properly signed payment to someone else. */
      FRESH ();
      set_auth (pay, "to", "0x0000000000000000000000000000000000000001");
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_WRONG_RECIPIENT, "to");
      /* Time window, at its edges. */
      char t[24];
      FRESH ();
      snprintf (t, sizeof t, "%d", NOW + BILL_X402_VALID_BEFORE_MARGIN_S);
      set_auth (pay, "validBefore", t);
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_OK, "validBefore = now + margin");
      FRESH ();
      snprintf (t, sizeof t, "%d", NOW + BILL_X402_VALID_BEFORE_MARGIN_S - 1);
      set_auth (pay, "validBefore", t);
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_EXPIRED, "validBefore = now + margin - 1");
      FRESH ();
      set_auth (pay, "validBefore", "0");
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_EXPIRED, "validBefore 0");
      FRESH ();
      snprintf (t, sizeof t, "%d", NOW + 1);
      set_auth (pay, "validAfter", t);
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_NOT_YET_VALID, "validAfter = now + 1");
      FRESH ();
      snprintf (t, sizeof t, "%d", NOW);
      set_auth (pay, "validAfter", t);
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_OK, "validAfter = now");
      FRESH ();
      set_auth (pay, "validAfter", "340282366920938463463374607431768211456"); /* 2^128 */
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_NOT_YET_VALID, "validAfter huge");
      FRESH ();
      set_auth (pay, "validBefore", "340282366920938463463374607431768211456");
      sign_payment (pay, KEY0, &base);
      EXPECT (BILL_X402_OK, "validBefore huge");
      /* Signatures. */
      FRESH ();
      set_auth (pay, "value", "10000");
      sign_payment (pay, KEY1, &base); /* signed by someone who is not `from` */
      EXPECT (BILL_X402_BAD_SIGNATURE, "other signer");
      struct bill_eip712_domain d = base;
      d.name = "USDC"; /* the Sepolia name on mainnet */
      FRESH ();
      sign_payment (pay, KEY0, &d);
      EXPECT (BILL_X402_BAD_SIGNATURE, "wrong domain name");
      d = base;
      d.chain_id = 84532;
      FRESH ();
      sign_payment (pay, KEY0, &d);
      EXPECT (BILL_X402_BAD_SIGNATURE, "wrong chain");
      d = base;
      d.verifying_contract[0] ^= 1;
      FRESH ();
      sign_payment (pay, KEY0, &d);
      EXPECT (BILL_X402_BAD_SIGNATURE, "wrong token");
      d = base;
      d.version = "1";
      FRESH ();
      sign_payment (pay, KEY0, &d);
      EXPECT (BILL_X402_BAD_SIGNATURE, "wrong token version");
      FRESH ();
      set_auth (pay, "nonce", "0x4242424242424242424242424242424242424242424242424242424242424243");
      EXPECT (BILL_X402_BAD_SIGNATURE, "nonce changed after signing");

      /* v and s, on an otherwise valid signature. */
      FRESH ();
      {
        json_t *payload = json_object_get (pay, "payload");
        uint8_t sig[65];
        char hex[135];
        assert_int_equal (bill_hex_decode (vstr (payload, "signature"), sig, 65), 0);
        sig[64] -= 27; /* yParity instead of v */
        bill_hex_encode (sig, 65, hex, sizeof hex);
        json_object_set_new (payload, "signature", json_string (hex));
        expect (run_json (pay, version, &o, NOW), BILL_X402_SIGNATURE_V, "v as yParity");
        /* The malleated twin: s' = n - s, v flipped. */
        sig[64] += 27;
        static const uint8_t n[32] = {
          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
          0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
        };
        int borrow = 0;
        for (int i = 31; i >= 0; i--)
          {
            int x = n[i] - sig[32 + i] - borrow;
            borrow = x < 0;
            sig[32 + i] = (uint8_t) (x + (borrow ? 256 : 0));
          }
        sig[64] = sig[64] == 27 ? 28 : 27;
        bill_hex_encode (sig, 65, hex, sizeof hex);
        json_object_set_new (payload, "signature", json_string (hex));
        expect (run_json (pay, version, &o, NOW), BILL_X402_SIGNATURE_HIGH_S, "high s");
        json_object_set_new (payload, "signature", json_string ("0x1234"));
        expect (run_json (pay, version, &o, NOW), BILL_X402_UNSUPPORTED_SIGNATURE, "short sig");
        char longsig[2 + 2 * 200 + 1] = "0x";
        memset (longsig + 2, 'a', 400);
        longsig[402] = '\0';
        json_object_set_new (payload, "signature", json_string (longsig));
        expect (run_json (pay, version, &o, NOW), BILL_X402_UNSUPPORTED_SIGNATURE, "smart wallet");
        json_object_set_new (payload, "signature", json_string ("0x123"));
        expect (run_json (pay, version, &o, NOW), BILL_X402_INVALID_PAYLOAD, "odd hex");
        json_object_set_new (payload, "signature", json_string ("zz"));
        expect (run_json (pay, version, &o, NOW), BILL_X402_INVALID_PAYLOAD, "not hex");
        json_object_del (payload, "signature");
        expect (run_json (pay, version, &o, NOW), BILL_X402_INVALID_PAYLOAD, "no signature");
        json_decref (pay);
      }

      /* Malformed authorization fields. */
      static const char *const fields[] = { "from", "to", "value", "validAfter", "validBefore", "nonce" };
      for (size_t i = 0; i < 6; i++)
        {
          FRESH ();
          json_object_del (auth_of (pay), fields[i]);
          EXPECT (BILL_X402_INVALID_PAYLOAD, fields[i]);
          FRESH ();
          json_object_set_new (auth_of (pay), fields[i], json_null ());
          EXPECT (BILL_X402_INVALID_PAYLOAD, fields[i]);
        }
      FRESH ();
      set_auth (pay, "to", "0x209693Bc6afc0C5328bA36FaF03C514EF312287");
      EXPECT (BILL_X402_INVALID_PAYLOAD, "short address");
      FRESH ();
      set_auth (pay, "nonce", "0x42");
      EXPECT (BILL_X402_INVALID_PAYLOAD, "short nonce");
      FRESH ();
      json_object_del (json_object_get (pay, "payload"), "authorization");
      EXPECT (BILL_X402_INVALID_PAYLOAD, "no authorization");
      FRESH ();
      json_object_set_new (pay, "payload", json_string ("x"));
      EXPECT (BILL_X402_INVALID_PAYLOAD, "payload not an object");
      FRESH ();
      json_object_del (pay, "x402Version");
      EXPECT (BILL_X402_INVALID_PAYLOAD, "no version");
      FRESH ();
      json_object_set_new (pay, "x402Version", json_integer (3));
      EXPECT (BILL_X402_UNSUPPORTED_VERSION, "version 3");
      FRESH ();
      json_object_set_new (pay, "x402Version", json_string ("2"));
      EXPECT (BILL_X402_INVALID_PAYLOAD, "version as string");
#undef FRESH
#undef EXPECT
    }
}

static void
test_requirement_echo (void **state)
{
  struct bill_offer o;
  offer_init (&o, BILL_NET_BASE, 10000, "http://localhost:8080/v1/sandbox/status", NULL);
  struct {
    const char *key;
    json_t *value; /* NULL: delete the key */
    int want;
  } v2[] = {
    { "scheme", json_string ("upto"), BILL_X402_UNSUPPORTED_SCHEME },
    { "network", json_string ("eip155:84532"), BILL_X402_NETWORK_MISMATCH },
    { "network", json_string ("eip155:1"), BILL_X402_NETWORK_MISMATCH },
    { "network", json_string ("base"), BILL_X402_NETWORK_MISMATCH }, /* v1 name in v2 */
    { "asset", json_string ("0x036CbD53842c5426634e7929541eC2318f3dCF7e"), BILL_X402_ASSET_MISMATCH },
    { "payTo", json_string ("0x0000000000000000000000000000000000000001"), BILL_X402_WRONG_RECIPIENT },
    { "amount", json_string ("1"), BILL_X402_WRONG_AMOUNT },
    { "amount", json_string ("010000"), BILL_X402_WRONG_AMOUNT },
    { "amount", json_string ("99999999999999999999999"), BILL_X402_WRONG_AMOUNT },
    { "maxTimeoutSeconds", json_integer (600), BILL_X402_REQUIREMENTS_MISMATCH },
    { "maxTimeoutSeconds", NULL, BILL_X402_REQUIREMENTS_MISMATCH },
    { "maxTimeoutSeconds", json_string ("300"), BILL_X402_INVALID_PAYLOAD },
    { "extra", NULL, BILL_X402_REQUIREMENTS_MISMATCH },
    { "extra", json_pack ("{s:s, s:s}", "name", "USDC", "version", "2"), BILL_X402_REQUIREMENTS_MISMATCH },
    { "extra", json_pack ("{s:s}", "name", "USD Coin"), BILL_X402_REQUIREMENTS_MISMATCH },
    { "scheme", NULL, BILL_X402_INVALID_PAYLOAD },
    { "amount", json_integer (10000), BILL_X402_INVALID_PAYLOAD },
    { "asset", json_string ("USDC"), BILL_X402_INVALID_PAYLOAD },
    { "payTo", NULL, BILL_X402_INVALID_PAYLOAD },
  };
  for (size_t i = 0; i < sizeof v2 / sizeof v2[0]; i++)
    {
      json_t *pay = client_payment (&o, 2, NOW);
      json_t *acc = json_object_get (pay, "accepted");
      if (v2[i].value)
        json_object_set_new (acc, v2[i].key, v2[i].value);
      else
        json_object_del (acc, v2[i].key);
      expect (run_json (pay, 2, &o, NOW), v2[i].want, v2[i].key);
      json_decref (pay);
    }
  json_t *pay = client_payment (&o, 2, NOW);
  json_object_del (pay, "accepted");
  expect (run_json (pay, 2, &o, NOW), BILL_X402_INVALID_PAYLOAD, "no accepted");
  json_decref (pay);

  /* v1: scheme and network at the top level, v1 names only. */
  struct {
    const char *key;
    json_t *value;
    int want;
  } v1[] = {
    { "scheme", json_string ("upto"), BILL_X402_UNSUPPORTED_SCHEME },
    { "network", json_string ("eip155:8453"), BILL_X402_NETWORK_MISMATCH },
    { "network", json_string ("base-sepolia"), BILL_X402_NETWORK_MISMATCH },
    { "network", json_string ("Base"), BILL_X402_NETWORK_MISMATCH },
    { "network", json_string ("a-network-name-longer-than-the-buffer-allows"), BILL_X402_INVALID_PAYLOAD },
    { "network", NULL, BILL_X402_INVALID_PAYLOAD },
    { "scheme", json_integer (1), BILL_X402_INVALID_PAYLOAD },
  };
  for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++)
    {
      pay = client_payment (&o, 1, NOW);
      if (v1[i].value)
        json_object_set_new (pay, v1[i].key, v1[i].value);
      else
        json_object_del (pay, v1[i].key);
      expect (run_json (pay, 1, &o, NOW), v1[i].want, v1[i].key);
      json_decref (pay);
    }
}

static void
test_vector_negatives (void **state)
{
  /* The vectors' own negative cases, wrapped in v2 headers for the offer they target. */
  json_t *all = vectors_load ();
  json_t *list = json_object_get (all, "negativeAndEdgeCases");
  json_t *v0 = json_array_get (json_object_get (all, "transferWithAuthorization"), 0);
  json_t *base_pay = json_object_get (json_object_get (v0, "x402"), "paymentPayloadV2");
  int seen = 0;
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
    {
      const char *id = vstr (v, "id");
      struct bill_offer o;
      offer_init (&o, BILL_NET_BASE, 10000, "http://127.0.0.1:8402/v1/sandbox/create", "Create a sandbox");
      json_t *pay = json_deep_copy (base_pay);
      json_t *payload = json_object_get (pay, "payload");
      json_object_set_new (payload, "signature", json_string (vstr (v, "signature")));
      json_t *td = json_object_get (v, "typedData");
      if (td)
        json_object_set (payload, "authorization", json_object_get (td, "message"));
      int want;
      if (strcmp (id, "neg-tampered-value") == 0)
        {
          o.amount = 10001; /* price matches the tampered value: only the signature catches it */
          json_object_set_new (json_object_get (pay, "accepted"), "amount", json_string ("10001"));
          want = BILL_X402_BAD_SIGNATURE;
        }
      else if (strcmp (id, "neg-wrong-chainid") == 0 || strcmp (id, "neg-wrong-domain-name") == 0)
        {
          /* A mainnet signature presented to a server on the other chain (whose domain has
           * that chain id and that name): the verifier's domain differs from the signer's,
           * so a stranger recovers. v1 form: no accepted echo to adjust. */
          json_decref (pay);
          pay = json_pack ("{s:i, s:s, s:s, s:{s:O, s:s}}", "x402Version", 1, "scheme", "exact",
                           "network", "base-sepolia", "payload", "authorization",
                           json_object_get (td, "message"), "signature", vstr (v, "signature"));
          offer_init (&o, BILL_NET_BASE_SEPOLIA, 10000, "http://x/", NULL);
          expect (run_json (pay, 1, &o, 1800000000), BILL_X402_BAD_SIGNATURE, id);
          json_decref (pay);
          seen++;
          continue;
        }
      else if (strcmp (id, "neg-high-s-malleated") == 0)
        want = BILL_X402_SIGNATURE_HIGH_S;
      else if (strcmp (id, "edge-v-as-yparity") == 0)
        want = BILL_X402_SIGNATURE_V;
      else if (strcmp (id, "neg-recipient-mismatch") == 0)
        want = BILL_X402_WRONG_RECIPIENT;
      else
        fail_msg ("unknown negative vector %s", id);
      expect (run_json (pay, 2, &o, 1800000000), want, id);
      json_decref (pay);
      seen++;
    }
  assert_int_equal (seen, 6);
  json_decref (all);
}

/* ---- hostile headers --------------------------------------------------- */

static void
test_malformed_headers (void **state)
{
  struct bill_offer o;
  offer_init (&o, BILL_NET_BASE, 10000, "http://x/", NULL);
  static const char *const bad[] = {
    "", " ", "e30", "e30==", "e3=0", "=e30", "e30=\n", "e3 0=", "eyJ4-DAy", "eyJ4_DAy",
    "e31=",                 /* non-zero unused bits: a second spelling of "{}" */
    "W10=",                 /* [] */
    "e30=",                 /* {} */
    "bnVsbA==",             /* null */
    "MQ==",                 /* 1 */
    "eyJ4NDAyVmVyc2lvbiI6Mn0=", /* {"x402Version":2} */
    "eyJhIjoxLCJhIjoyfQ==",     /* {"a":1,"a":2}: duplicate keys */
    "/w==",                     /* 0xff: not UTF-8 */
    "eyJ4NDAyVmVyc2lvbiI6Miwi",  /* truncated JSON */
    "eyJ4IjoiXHUwMDAwIn0=",     /* {"x":"\u0000"} */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    for (int version = 1; version <= 2; version++)
      {
        int r = run (bad[i], version, &o, NOW, NULL);
        if (r != BILL_X402_MALFORMED_HEADER && r != BILL_X402_INVALID_PAYLOAD
            && r != BILL_X402_UNSUPPORTED_VERSION)
          fail_msg ("'%s' v%d: %s", bad[i], version, bill_x402_reason_name (r));
      }
  /* A valid payment with a second "value" key: two JSON parsers could read two prices. */
  for (int version = 1; version <= 2; version++)
    {
      json_t *pay = client_payment (&o, version, NOW);
      char *txt = json_dumps (pay, JSON_COMPACT);
      char *at = strstr (txt, "\"authorization\":{");
      assert_non_null (at);
      at += strlen ("\"authorization\":{");
      size_t cap = strlen (txt) + 32;
      char *dup = malloc (cap);
      if (!dup)
        abort ();
      snprintf (dup, cap, "%.*s\"value\":\"1\",%s", (int) (at - txt), txt, at);
      char *hdr = bill_base64_encode (dup, strlen (dup));
      expect (run (hdr, version, &o, NOW, NULL), BILL_X402_MALFORMED_HEADER, "duplicate key");
      char *plain = bill_base64_encode (txt, strlen (txt));
      expect (run (plain, version, &o, NOW, NULL), BILL_X402_OK, "without the duplicate");
      free (plain);
      free (hdr);
      free (dup);
      free (txt);
      json_decref (pay);
    }
  expect (run (NULL, 2, &o, NOW, NULL), BILL_X402_MALFORMED_HEADER, "NULL");
  expect (run (CAP_PAY_FETCH_V2, 0, &o, NOW, NULL), BILL_X402_UNSUPPORTED_VERSION, "version 0");
  /* Surrounding optional whitespace is fine; inner whitespace is not. */
  size_t pcap = strlen (CAP_PAY_FETCH_V2) + 5;
  char *padded = malloc (pcap);
  if (!padded)
    abort ();
  snprintf (padded, pcap, " \t%s\t ", CAP_PAY_FETCH_V2);
  offer_init (&o, BILL_NET_BASE, 10000, "http://x/", NULL);
  expect (run (padded, 2, &o, NOW, NULL), BILL_X402_OK, "OWS");
  padded[40] = ' ';
  expect (run (padded, 2, &o, NOW, NULL), BILL_X402_MALFORMED_HEADER, "inner space");
  free (padded);
  /* Too big: refused before decoding; a huge valid-looking value never gets parsed. */
  size_t big = BILL_X402_HEADER_MAX + 4;
  char *huge = malloc (big + 1);
  memset (huge, 'A', big);
  huge[big] = '\0';
  expect (run (huge, 2, &o, NOW, NULL), BILL_X402_MALFORMED_HEADER, "huge");
  free (huge);
  /* A valid header, then whitespace up to past the limit, then junk: refused whole, never
   * trimmed back to the valid prefix. */
  size_t vlen = strlen (CAP_PAY_FETCH_V2);
  char *tail = malloc (BILL_X402_HEADER_MAX + 8);
  if (!tail)
    abort ();
  memcpy (tail, CAP_PAY_FETCH_V2, vlen);
  memset (tail + vlen, ' ', BILL_X402_HEADER_MAX + 4 - vlen);
  tail[BILL_X402_HEADER_MAX + 4] = 'A';
  tail[BILL_X402_HEADER_MAX + 5] = '\0';
  expect (run (tail, 2, &o, NOW, NULL), BILL_X402_MALFORMED_HEADER, "junk past the limit");
  tail[BILL_X402_HEADER_MAX - 1] = '\0'; /* same, short enough, only trailing spaces: fine */
  expect (run (tail, 2, &o, NOW, NULL), BILL_X402_OK, "trailing spaces within the limit");
  free (tail);
  /* Deep nesting inside an ignored key: jansson's depth limit refuses it cleanly. */
  size_t depth = 5000;
  char *deep = malloc (2 * depth + 32);
  size_t k = 0;
  k += (size_t) sprintf (deep, "{\"x\":");
  for (size_t i = 0; i < depth; i++)
    deep[k++] = '[';
  for (size_t i = 0; i < depth; i++)
    deep[k++] = ']';
  deep[k++] = '}';
  char *b = bill_base64_encode (deep, k);
  int r = run (b, 2, &o, NOW, NULL);
  assert_true (r == BILL_X402_MALFORMED_HEADER || r == BILL_X402_INVALID_PAYLOAD);
  free (b);
  free (deep);
}

static void
test_base64 (void **state)
{
  static const struct {
    const char *plain, *enc;
  } rfc[] = { { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
              { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } };
  for (size_t i = 0; i < sizeof rfc / sizeof rfc[0]; i++)
    {
      char *e = bill_base64_encode (rfc[i].plain, strlen (rfc[i].plain));
      assert_string_equal (e, rfc[i].enc);
      free (e);
      uint8_t *d;
      size_t n;
      assert_int_equal (bill_base64_decode (rfc[i].enc, strlen (rfc[i].enc), &d, &n), 0);
      assert_int_equal (n, strlen (rfc[i].plain));
      assert_memory_equal (d, rfc[i].plain, n);
      free (d);
    }
  char *e = bill_base64_encode ("", 0);
  assert_string_equal (e, "");
  free (e);
  /* Every byte value round-trips; "+" and "/" appear. */
  uint8_t all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (uint8_t) i;
  for (size_t len = 0; len <= 256; len++)
    {
      char *s = bill_base64_encode (all, len);
      uint8_t *d = NULL;
      size_t n = 0;
      if (len)
        {
          assert_int_equal (bill_base64_decode (s, strlen (s), &d, &n), 0);
          assert_int_equal (n, len);
          assert_memory_equal (d, all, len);
        }
      free (s);
      free (d);
    }
  uint8_t *d;
  size_t n;
  static const char *const bad[] = { "Zg=", "Zg", "Zh==", "Zm9=", "Z===", "====", "Zg==Zg==",
                                     "Zm9v\n", "Zm 9", "Zm-v", "Zm_v", "Zm9v=" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (bill_base64_decode (bad[i], strlen (bad[i]), &d, &n) != -1)
      fail_msg ("accepted bad base64 '%s'", bad[i]);
}

/* ---- what sbxd sends --------------------------------------------------- */

static char *
b64_text (const char *b64)
{
  uint8_t *d;
  size_t n;
  assert_int_equal (bill_base64_decode (b64, strlen (b64), &d, &n), 0);
  char *s = malloc (n + 1);
  memcpy (s, d, n);
  s[n] = '\0';
  free (d);
  return s;
}

static void
test_required (void **state)
{
  /* Byte for byte what the captured dual-mode mock and the official server emitted. */
  struct bill_offer o;
  offer_init (&o, BILL_NET_BASE, 10000, "http://127.0.0.1:4053/v1/sandbox/create", "mock sandbox call");
  json_t *v2 = bill_x402_required_v2 (&o, NULL);
  char *hdr = bill_x402_header_encode (v2);
  assert_string_equal (hdr, CAP_REQUIRED_DUAL);
  free (hdr);
  json_decref (v2);
  json_t *v1 = bill_x402_required_v1 (&o, NULL);
  char *body = json_dumps (v1, JSON_COMPACT);
  assert_string_equal (body, CAP_BODY_V1_DUAL);
  free (body);
  json_decref (v1);

  offer_init (&o, BILL_NET_BASE, 10000, "http://127.0.0.1:4042/v1/sandbox/create", "Create a sandbox");
  v2 = bill_x402_required_v2 (&o, NULL);
  hdr = bill_x402_header_encode (v2);
  char *mine = b64_text (hdr), *theirs = b64_text (CAP_REQUIRED_OFFICIAL);
  assert_string_equal (mine, theirs);
  free (mine);
  free (theirs);
  free (hdr);
  json_decref (v2);

  /* Sepolia: CAIP-2 in v2, v1 name in v1, its own asset and domain name; error text. */
  offer_init (&o, BILL_NET_BASE_SEPOLIA, 2250000, "http://h/v1/sandbox/create", NULL);
  o.max_timeout_s = 120;
  v2 = bill_x402_required_v2 (&o, "wrong_amount");
  json_t *acc = json_array_get (json_object_get (v2, "accepts"), 0);
  assert_string_equal (json_string_value (json_object_get (v2, "error")), "wrong_amount");
  assert_string_equal (json_string_value (json_object_get (acc, "network")), "eip155:84532");
  assert_string_equal (json_string_value (json_object_get (acc, "amount")), "2250000");
  assert_string_equal (json_string_value (json_object_get (acc, "asset")),
                       "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
  assert_int_equal (json_integer_value (json_object_get (acc, "maxTimeoutSeconds")), 120);
  assert_string_equal (json_string_value (json_object_get (json_object_get (acc, "extra"), "name")), "USDC");
  json_decref (v2);
  v1 = bill_x402_required_v1 (&o, NULL);
  acc = json_array_get (json_object_get (v1, "accepts"), 0);
  assert_string_equal (json_string_value (json_object_get (acc, "network")), "base-sepolia");
  assert_string_equal (json_string_value (json_object_get (acc, "maxAmountRequired")), "2250000");
  assert_string_equal (json_string_value (json_object_get (acc, "description")), "");
  assert_string_equal (json_string_value (json_object_get (acc, "mimeType")), "application/json");
  assert_null (json_object_get (acc, "outputSchema"));
  json_decref (v1);
  o.network = 7;
  assert_null (bill_x402_required_v2 (&o, NULL));
  assert_null (bill_x402_requirement (&o, 1));

  int net = -1;
  assert_int_equal (bill_network_parse ("base", &net), 0);
  assert_int_equal (net, BILL_NET_BASE);
  assert_int_equal (bill_network_parse ("eip155:84532", &net), 0);
  assert_int_equal (net, BILL_NET_BASE_SEPOLIA);
  assert_int_equal (bill_network_parse ("eip155:1", &net), -1);
  assert_int_equal (bill_network_parse ("BASE", &net), -1);
}

static void
test_facilitator_and_receipt (void **state)
{
  struct bill_offer o;
  offer_init (&o, BILL_NET_BASE, 10000, "http://127.0.0.1:4053/v1/sandbox/create", "mock sandbox call");
  for (int version = 1; version <= 2; version++)
    {
      struct bill_payment p;
      const char *hdr = version == 2 ? CAP_PAY_BLOCKRUN_V2 : CAP_PAY_LEGACY_V1;
      expect (run (hdr, version, &o, NOW, &p), BILL_X402_OK, "captured");
      json_t *body = bill_x402_facilitator_body (&p, &o);
      assert_int_equal (json_integer_value (json_object_get (body, "x402Version")), version);
      assert_true (json_equal (json_object_get (body, "paymentPayload"), p.raw)); /* verbatim */
      json_t *req = bill_x402_requirement (&o, version);
      assert_true (json_equal (json_object_get (body, "paymentRequirements"), req));
      json_decref (req);
      json_decref (body);

      json_t *ok = bill_x402_settle_response (&p, &o, 1, "0xabab", NULL);
      assert_true (json_is_true (json_object_get (ok, "success")));
      assert_string_equal (json_string_value (json_object_get (ok, "transaction")), "0xabab");
      assert_string_equal (json_string_value (json_object_get (ok, "network")),
                           version == 2 ? "eip155:8453" : "base");
      assert_string_equal (json_string_value (json_object_get (ok, "payer")),
                           version == 2 ? "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                                        : "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
      assert_null (json_object_get (ok, "errorReason"));
      char *h = bill_x402_header_encode (ok);
      char *txt = b64_text (h);
      assert_non_null (strstr (txt, "\"success\":true"));
      free (txt);
      free (h);
      json_decref (ok);
      json_t *bad = bill_x402_settle_response (&p, &o, 0, "0xabab", "insufficient_funds");
      assert_true (json_is_false (json_object_get (bad, "success")));
      assert_string_equal (json_string_value (json_object_get (bad, "transaction")), "");
      assert_string_equal (json_string_value (json_object_get (bad, "errorReason")), "insufficient_funds");
      json_decref (bad);
      bill_payment_clear (&p);
      bill_payment_clear (&p); /* idempotent */
    }
  for (int r = 0; r < BILL_X402_REASON_COUNT; r++)
    {
      assert_non_null (bill_x402_reason_name (r));
      assert_non_null (bill_x402_reason_x402 (r));
    }
  assert_string_equal (bill_x402_reason_name (BILL_X402_WRONG_AMOUNT), "wrong_amount");
  assert_string_equal (bill_x402_reason_name (BILL_X402_REASON_COUNT), "unknown");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_captured_clients),   cmocka_unit_test (test_vector_headers),
    cmocka_unit_test (test_built_ok),           cmocka_unit_test (test_refusals),
    cmocka_unit_test (test_requirement_echo),   cmocka_unit_test (test_vector_negatives),
    cmocka_unit_test (test_malformed_headers),  cmocka_unit_test (test_base64),
    cmocka_unit_test (test_required),           cmocka_unit_test (test_facilitator_and_receipt),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
