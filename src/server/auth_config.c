/* Money settings of sbxd: --auth, --pay-to, --network, --facilitator and the "pricing"
 * object of the config file (docs/payments.md). Defaults: auth off, Base, reference
 * pricing, no facilitator. */
#include "server.h"

#include <stdio.h>
#include <string.h>

int
srv_config_set_auth (struct srv_config *c, const char *s, struct sbx_err *err)
{
  if (!strcmp (s, "off"))
    {
      c->auth = 0;
      return 0;
    }
  int bits = 0;
  char buf[64];
  snprintf (buf, sizeof buf, "%s", s);
  char *save = NULL;
  for (char *t = strtok_r (buf, ",", &save); t; t = strtok_r (NULL, ",", &save))
    {
      if (!strcmp (t, "api_key"))
        bits |= SRV_AUTH_API_KEY;
      else if (!strcmp (t, "x402"))
        bits |= SRV_AUTH_X402;
      else
        bits = -1;
      if (bits < 0)
        break;
    }
  size_t n = strlen (s);
  /* strtok skips empty fields: "api_key," or ",x402" must not pass as valid */
  if (bits <= 0 || n >= sizeof buf || s[0] == ',' || s[n - 1] == ',' || strstr (s, ",,"))
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "auth: expected off, api_key, x402 or api_key,x402; got '%s'", s);
  c->auth = bits;
  return 0;
}

int
srv_config_set_pay_to (struct srv_config *c, const char *s, struct sbx_err *err)
{
  /* Operator input: a mistyped mixed-case address must not silently send money elsewhere,
   * so mixed case must be the exact EIP-55 checksum. */
  if (bill_addr_parse (s, c->pay_to) < 0 || !bill_addr_checksum_ok (s))
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "pay-to: '%s' is not an address (0x + 40 hex; mixed case must be the "
                        "EIP-55 checksum)", s);
  static const uint8_t zero[20];
  if (!memcmp (c->pay_to, zero, 20))
    return sbx_err_set (err, SBX_E_INVALID, 0, "pay-to: the zero address would burn payments");
  c->has_pay_to = 1;
  return 0;
}

int
srv_config_set_network (struct srv_config *c, const char *s, struct sbx_err *err)
{
  int net;
  if (bill_network_parse (s, &net) < 0)
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "network: expected base or base-sepolia, got '%s'", s);
  c->network = net;
  return 0;
}

int
srv_config_set_facilitator (struct srv_config *c, const char *s, struct sbx_err *err)
{
  size_t n = strlen (s);
  if ((strncmp (s, "http://", 7) && strncmp (s, "https://", 8)) || n >= sizeof c->facilitator
      || strpbrk (s, " \t\r\n?#"))
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "facilitator: expected an http:// or https:// base URL, got '%s'", s);
  snprintf (c->facilitator, sizeof c->facilitator, "%s", s);
  n = strlen (c->facilitator);
  while (n > 0 && c->facilitator[n - 1] == '/')
    c->facilitator[--n] = '\0';
  return 0;
}

int
srv_config_money_key (struct srv_config *c, const char *key, json_t *v, struct sbx_err *err)
{
  if (!strcmp (key, "pricing"))
    {
      if (!json_is_object (v))
        return sbx_err_set (err, SBX_E_INVALID, 0, "config pricing: expected an object");
      if (bill_pricing_from_json (v, &c->pricing, err) < 0)
        return sbx_err_wrap (err, "config pricing");
      return 1;
    }
  if (!strcmp (key, "queue_settlements"))
    {
      if (!json_is_boolean (v))
        return sbx_err_set (err, SBX_E_INVALID, 0,
                            "config queue_settlements: expected true or false");
      c->queue_settlements = json_is_true (v);
      return 1;
    }
  int (*set) (struct srv_config *, const char *, struct sbx_err *) = NULL;
  if (!strcmp (key, "auth"))
    set = srv_config_set_auth;
  else if (!strcmp (key, "pay_to"))
    set = srv_config_set_pay_to;
  else if (!strcmp (key, "network"))
    set = srv_config_set_network;
  else if (!strcmp (key, "facilitator"))
    set = srv_config_set_facilitator;
  else
    return 0;
  if (!json_is_string (v) || strlen (json_string_value (v)) != json_string_length (v))
    return sbx_err_set (err, SBX_E_INVALID, 0, "config %s: expected a string", key);
  if (set (c, json_string_value (v), err) < 0)
    return sbx_err_wrap (err, "config");
  return 1;
}

int
srv_config_money_check (const struct srv_config *c, struct sbx_err *err)
{
  if ((c->auth & SRV_AUTH_X402) && !c->has_pay_to)
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "x402 needs a pay-to address (--pay-to or \"pay_to\" in the config)");
  /* Without a facilitator nothing checks a payer's funds before a call runs: refused
   * unless the operator says so, since any freshly made address would get compute. */
  if ((c->auth & SRV_AUTH_X402) && !c->facilitator[0] && !c->queue_settlements)
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "x402 without --facilitator would run every call for any signed "
                        "payment, funded or not (payments only queue for `sbx admin "
                        "settlements submit`): give --facilitator URL, or --queue-settlements "
                        "to accept that (docs/payments.md)");
  if ((c->auth & SRV_AUTH_X402) && !c->facilitator[0])
    LOG_WARN ("x402 without --facilitator (--queue-settlements): payments are queued unchecked "
              "against the chain, so an address without funds gets every call run (its "
              "settlement fails later); use this only with callers you trust "
              "(docs/payments.md)");
  return 0;
}
