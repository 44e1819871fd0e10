/* What sbxd sends in x402: the networks it knows, the 402 requirements in both versions
 * (v2 object for the PAYMENT-REQUIRED header with CAIP-2 names, v1 object for the JSON
 * body with v1 names; one 402 carries both so every client finds its form), the
 * facilitator's request body and the settlement receipt. */
#include "billing.h"

#include <string.h>

static const struct bill_network_info networks[BILL_NET_COUNT] = {
  [BILL_NET_BASE] = { "base", "eip155:8453", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                      "USD Coin", "2" },
  [BILL_NET_BASE_SEPOLIA] = { "base-sepolia", "eip155:84532", 84532,
                              "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2" },
};

const struct bill_network_info *
bill_network_get (int net)
{
  return net >= 0 && net < BILL_NET_COUNT ? &networks[net] : NULL;
}

int
bill_network_parse (const char *s, int *net)
{
  for (int i = 0; s && i < BILL_NET_COUNT; i++)
    if (strcmp (s, networks[i].name) == 0 || strcmp (s, networks[i].caip2) == 0)
      {
        *net = i;
        return 0;
      }
  return -1;
}

static int64_t
offer_timeout (const struct bill_offer *o)
{
  return o->max_timeout_s > 0 ? o->max_timeout_s : BILL_X402_MAX_TIMEOUT_DEFAULT;
}

json_t *
bill_x402_requirement (const struct bill_offer *o, int version)
{
  const struct bill_network_info *n = bill_network_get (o->network);
  if (!n || (version != 1 && version != 2))
    return NULL;
  char amount[24], pay_to[BILL_ADDR_STR];
  snprintf (amount, sizeof amount, "%llu", (unsigned long long) o->amount);
  bill_addr_format (o->pay_to, pay_to);
  /* Key order follows the official server's output; clients must not depend on it. */
  if (version == 2)
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:I, s:{s:s, s:s}}",
                      "scheme", "exact", "network", n->caip2, "amount", amount,
                      "asset", n->usdc, "payTo", pay_to,
                      "maxTimeoutSeconds", (json_int_t) offer_timeout (o),
                      "extra", "name", n->token_name, "version", n->token_version);
  /* v1: legacy x402-fetch's zod schema wants every one of these (and no null outputSchema). */
  return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:{s:s, s:s}}",
                    "scheme", "exact", "network", n->name, "maxAmountRequired", amount,
                    "resource", o->resource ? o->resource : "",
                    "description", o->description ? o->description : "",
                    "mimeType", o->mime_type ? o->mime_type : "application/json",
                    "payTo", pay_to, "maxTimeoutSeconds", (json_int_t) offer_timeout (o),
                    "asset", n->usdc, "extra", "name", n->token_name, "version", n->token_version);
}

json_t *
bill_x402_required_v2 (const struct bill_offer *o, const char *error)
{
  json_t *req = bill_x402_requirement (o, 2);
  if (!req)
    return NULL;
  return json_pack ("{s:i, s:s, s:{s:s, s:s, s:s}, s:[o]}", "x402Version", 2,
                    "error", error ? error : "Payment required",
                    "resource", "url", o->resource ? o->resource : "",
                    "description", o->description ? o->description : "",
                    "mimeType", o->mime_type ? o->mime_type : "application/json",
                    "accepts", req);
}

json_t *
bill_x402_required_v1 (const struct bill_offer *o, const char *error)
{
  json_t *req = bill_x402_requirement (o, 1);
  if (!req)
    return NULL;
  return json_pack ("{s:i, s:s, s:[o]}", "x402Version", 1,
                    "error", error ? error : "Payment required", "accepts", req);
}

char *
bill_x402_header_encode (const json_t *obj)
{
  if (!obj)
    return NULL;
  char *txt = json_dumps (obj, JSON_COMPACT);
  if (!txt)
    return NULL;
  char *b64 = bill_base64_encode (txt, strlen (txt));
  free (txt);
  return b64;
}

json_t *
bill_x402_facilitator_body (const struct bill_payment *p, const struct bill_offer *o)
{
  if (!p->raw)
    return NULL;
  json_t *req = bill_x402_requirement (o, p->version);
  if (!req)
    return NULL;
  return json_pack ("{s:i, s:O, s:o}", "x402Version", p->version, "paymentPayload", p->raw,
                    "paymentRequirements", req);
}

json_t *
bill_x402_settle_response (const struct bill_payment *p, const struct bill_offer *o,
                           int success, const char *transaction, const char *error_reason)
{
  const struct bill_network_info *n = bill_network_get (o->network);
  if (!n)
    return NULL;
  uint8_t from[20];
  char payer[BILL_ADDR_STR];
  memcpy (from, p->auth.from, 20);
  bill_addr_format (from, payer);
  json_t *r = json_pack ("{s:b, s:s, s:s, s:s}", "success", success,
                         "transaction", success && transaction ? transaction : "",
                         "network", p->version == 1 ? n->name : n->caip2, "payer", payer);
  if (r && !success)
    json_object_set_new (r, "errorReason", json_string (error_reason ? error_reason : "settlement_failed"));
  return r;
}
