/* GET /pricing (free, never 402) and GET /usage (the caller's ledger). */
#include "server.h"
#include "auth_internal.h"
#include "../store/store_money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *
usd_json (int64_t amount)
{
  char usd[32];
  bill_amount_usd ((uint64_t) (amount < 0 ? 0 : amount), usd, sizeof usd);
  return json_pack ("{s:I,s:s}", "amount", (json_int_t) amount, "usd", usd);
}

void
srv_h_pricing (struct srv *s, struct srv_reply *r)
{
  json_t *o = bill_pricing_to_json (&s->cfg.pricing);
  if (!o)
    {
      srv_reply_error (r, SBX_E_INTERNAL, "pricing table");
      return;
    }
  json_t *auth = json_array ();
  if (s->cfg.auth & SRV_AUTH_API_KEY)
    json_array_append_new (auth, json_string ("api_key"));
  if (s->cfg.auth & SRV_AUTH_X402)
    json_array_append_new (auth, json_string ("x402"));
  json_object_set_new (o, "auth", auth);
  if (s->cfg.auth & SRV_AUTH_X402)
    {
      const struct bill_network_info *n = bill_network_get (s->cfg.network);
      char pay_to[BILL_ADDR_STR];
      bill_addr_format (s->cfg.pay_to, pay_to);
      json_object_set_new (o, "x402",
                           json_pack ("{s:s,s:s,s:s,s:s}", "network", n->name, "caip2", n->caip2,
                                      "asset", n->usdc, "pay_to", pay_to));
    }
  r->status = 200;
  r->body = o;
}

void
srv_h_usage (struct srv *s, const char *limit_s, struct srv_reply *r)
{
  int limit = 100;
  if (limit_s)
    {
      char *end;
      long l = strtol (limit_s, &end, 10);
      if (*end || end == limit_s || l < 1 || l > 1000)
        {
          srv_reply_error (r, SBX_E_INVALID, "limit: must be between 1 and 1000");
          return;
        }
      limit = (int) l;
    }
  const char *owner = srv_req_owner ();
  struct sbx_err err = { 0 };
  int64_t total = 0, count = 0;
  struct store_charge *list = NULL;
  size_t n = 0;
  if (store_charge_totals (s->store, owner, &total, &count, &err) < 0
      || store_charge_list (s->store, owner, limit, &list, &n, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  json_t *arr = json_array ();
  for (size_t i = 0; i < n; i++)
    {
      const struct store_charge *c = &list[i];
      char at[32];
      sbx_time_rfc3339 (c->created_at_ms, at, sizeof at);
      json_t *e = json_pack ("{s:I,s:s,s:s,s:o,s:s,s:s,s:s}", "seq", (json_int_t) c->seq, "op",
                             c->op, "method", c->method, "amount", usd_json (c->amount), "state",
                             store_charge_state_name (c->state), "payment_ref", c->ref, "at",
                             at);
      json_object_set_new (e, "sandbox_id",
                           c->sandbox_id[0] ? json_string (c->sandbox_id) : json_null ());
      json_array_append_new (arr, e);
    }
  free (list);
  json_t *o = json_pack ("{s:s,s:o,s:I,s:o}", "owner", owner, "total_charged", usd_json (total),
                         "charges_count", (json_int_t) count, "charges", arr);
  if (!strncmp (owner, "acct:", 5))
    {
      struct store_account a;
      if (store_account_get (s->store, owner + 5, &a, &err) == 0)
        json_object_set_new (o, "balance", usd_json (a.balance));
    }
  r->status = 200;
  r->body = o;
}
