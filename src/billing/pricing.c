/* The price table: defaults from the reference service, overrides from the config file,
 * the JSON served by GET /v1/pricing, and the price of each call. Integers only: a
 * rounding error in money is a bug nobody notices until the ledger disagrees. */
#include "billing.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const tier_names[BILL_TIER_COUNT] = {
  "cpu", "t4", "l4", "a10g", "a100", "h100",
};
static const char *const op_names[BILL_OP_COUNT] = { "exec", "status", "terminate" };

void
bill_pricing_default (struct bill_pricing *p)
{
  static const uint64_t burst[BILL_TIER_COUNT] = {
    10000, 50000, 80000, 100000, 200000, 400000,
  };
  static const uint64_t hourly[BILL_TIER_COUNT] = {
    100000, 1500000, 2000000, 2500000, 4000000, 8000000,
  };
  memset (p, 0, sizeof *p);
  p->burst_max_s = 300;
  p->max_timeout_s = 86400;
  memcpy (p->burst, burst, sizeof burst);
  memcpy (p->hourly, hourly, sizeof hourly);
  for (int i = 0; i < BILL_OP_COUNT; i++)
    p->op[i] = 1000;
}

const char *
bill_tier_name (int tier)
{
  return tier >= 0 && tier < BILL_TIER_COUNT ? tier_names[tier] : NULL;
}

int
bill_tier_parse (const char *s, int *tier)
{
  for (int i = 0; s && i < BILL_TIER_COUNT; i++)
    if (strcasecmp (s, tier_names[i]) == 0)
      {
        *tier = i;
        return 0;
      }
  return -1;
}

const char *
bill_op_name (int op)
{
  return op >= 0 && op < BILL_OP_COUNT ? op_names[op] : NULL;
}

int
bill_parse_u64 (const char *s, uint64_t *out)
{
  if (!s || !*s || (s[0] == '0' && s[1] != '\0'))
    return -1;
  uint64_t v = 0;
  for (; *s; s++)
    {
      if (*s < '0' || *s > '9')
        return -1;
      if (__builtin_mul_overflow (v, 10, &v) || __builtin_add_overflow (v, (uint64_t) (*s - '0'), &v))
        return -1;
    }
  *out = v;
  return 0;
}

int
bill_amount_parse_usd (const char *s, uint64_t *out)
{
  if (!s || s[0] != '$')
    return -1;
  s++;
  /* Whole dollars: canonical digits, at most 13 of them, then an optional fraction. */
  size_t n = strspn (s, "0123456789");
  if (n == 0 || n > 13 || (s[0] == '0' && n > 1))
    return -1;
  uint64_t dollars = 0;
  for (size_t i = 0; i < n; i++)
    dollars = dollars * 10 + (uint64_t) (s[i] - '0');
  uint64_t frac = 0;
  const char *f = s + n;
  if (*f == '.')
    {
      f++;
      size_t m = strspn (f, "0123456789");
      if (m == 0 || m > BILL_DECIMALS || f[m] != '\0')
        return -1;
      for (size_t i = 0; i < BILL_DECIMALS; i++)
        frac = frac * 10 + (i < m ? (uint64_t) (f[i] - '0') : 0);
    }
  else if (*f != '\0')
    return -1;
  uint64_t v = dollars * BILL_UNITS_PER_USD + frac; /* < 10^19 < 2^64 with 13 digits */
  *out = v;
  return 0;
}

void
bill_amount_usd (uint64_t amount, char *buf, size_t cap)
{
  char frac[BILL_DECIMALS + 1];
  snprintf (frac, sizeof frac, "%06llu", (unsigned long long) (amount % BILL_UNITS_PER_USD));
  int keep = BILL_DECIMALS;
  while (keep > 2 && frac[keep - 1] == '0')
    keep--;
  snprintf (buf, cap, "%llu.%.*s", (unsigned long long) (amount / BILL_UNITS_PER_USD), keep, frac);
}

uint64_t
bill_price_op (const struct bill_pricing *p, int op)
{
  return op >= 0 && op < BILL_OP_COUNT ? p->op[op] : 0;
}

int
bill_price_create (const struct bill_pricing *p, int tier, int64_t timeout_s, uint64_t *out,
                   struct sbx_err *err)
{
  if (tier < 0 || tier >= BILL_TIER_COUNT)
    return sbx_err_set (err, SBX_E_INVALID, 0, "unknown tier %d", tier);
  if (timeout_s < 1 || timeout_s > p->max_timeout_s)
    return sbx_err_set (err, SBX_E_INVALID, 0, "timeout %lld out of range [1, %lld]",
                        (long long) timeout_s, (long long) p->max_timeout_s);
  if (timeout_s <= p->burst_max_s)
    {
      *out = p->burst[tier];
      return 0;
    }
  /* Exact hours, billed up front: ceil (rate × seconds / 3600). */
  uint64_t prod;
  if (__builtin_mul_overflow (p->hourly[tier], (uint64_t) timeout_s, &prod))
    return sbx_err_set (err, SBX_E_INVALID, 0, "price overflows");
  *out = prod / 3600 + (prod % 3600 != 0);
  return 0;
}

/* ---- config ------------------------------------------------------------ */

static int
parse_amount (const json_t *v, const char *what, uint64_t *out, struct sbx_err *err)
{
  uint64_t a;
  if (json_is_integer (v))
    {
      json_int_t i = json_integer_value (v);
      if (i < 0)
        return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: %s: negative amount", what);
      a = (uint64_t) i;
    }
  else if (json_is_string (v))
    {
      if (bill_amount_parse_usd (json_string_value (v), &a) < 0)
        return sbx_err_set (err, SBX_E_INVALID, 0,
                            "pricing: %s: '%s' is not an amount like \"$0.01\"", what,
                            json_string_value (v));
    }
  else
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "pricing: %s: amount must be an integer of base units (1e-6 USDC) or "
                        "a string like \"$0.01\"",
                        what);
  if (a > BILL_AMOUNT_MAX)
    return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: %s: amount above the limit", what);
  *out = a;
  return 0;
}

static int
parse_tiers (const json_t *obj, const char *what, uint64_t table[BILL_TIER_COUNT],
             struct sbx_err *err)
{
  if (!json_is_object (obj))
    return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: %s must be an object", what);
  const char *key;
  json_t *v;
  json_object_foreach ((json_t *) obj, key, v)
    {
      int tier;
      char name[64];
      if (bill_tier_parse (key, &tier) < 0)
        return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: %s: unknown tier '%.32s'", what, key);
      snprintf (name, sizeof name, "%s.%s", what, tier_names[tier]);
      if (parse_amount (v, name, &table[tier], err) < 0)
        return -1;
    }
  return 0;
}

static int
parse_seconds (const json_t *v, const char *what, int64_t *out, struct sbx_err *err)
{
  if (!json_is_integer (v) || json_integer_value (v) < 0
      || json_integer_value (v) > BILL_TIMEOUT_LIMIT_S)
    return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: %s must be an integer in [0, %d]",
                        what, BILL_TIMEOUT_LIMIT_S);
  *out = (int64_t) json_integer_value (v);
  return 0;
}

int
bill_pricing_from_json (const json_t *obj, struct bill_pricing *p, struct sbx_err *err)
{
  if (!json_is_object (obj))
    return sbx_err_set (err, SBX_E_INVALID, 0, "pricing must be a JSON object");
  struct bill_pricing n = *p;
  const char *key;
  json_t *v;
  json_object_foreach ((json_t *) obj, key, v)
    {
      int op = -1;
      for (int i = 0; i < BILL_OP_COUNT; i++)
        if (strcmp (key, op_names[i]) == 0)
          op = i;
      if (op >= 0)
        {
          if (parse_amount (v, key, &n.op[op], err) < 0)
            return -1;
        }
      else if (strcmp (key, "burst_max_seconds") == 0)
        {
          if (parse_seconds (v, key, &n.burst_max_s, err) < 0)
            return -1;
        }
      else if (strcmp (key, "max_timeout_seconds") == 0)
        {
          if (parse_seconds (v, key, &n.max_timeout_s, err) < 0)
            return -1;
        }
      else if (strcmp (key, "create") == 0)
        {
          if (!json_is_object (v))
            return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: create must be an object");
          const char *k2;
          json_t *v2;
          json_object_foreach (v, k2, v2)
            {
              if (strcmp (k2, "burst") == 0)
                {
                  if (parse_tiers (v2, "create.burst", n.burst, err) < 0)
                    return -1;
                }
              else if (strcmp (k2, "hourly") == 0)
                {
                  if (parse_tiers (v2, "create.hourly", n.hourly, err) < 0)
                    return -1;
                }
              else
                return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: unknown key 'create.%.32s'",
                                    k2);
            }
        }
      else
        return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: unknown key '%.32s'", key);
    }
  if (n.max_timeout_s < 1)
    return sbx_err_set (err, SBX_E_INVALID, 0, "pricing: max_timeout_seconds must be >= 1");
  if (n.burst_max_s > n.max_timeout_s)
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "pricing: burst_max_seconds exceeds max_timeout_seconds");
  *p = n;
  return 0;
}

static json_t *
price_json (uint64_t amount)
{
  char usd[32];
  bill_amount_usd (amount, usd, sizeof usd);
  return json_pack ("{s:I, s:s}", "amount", (json_int_t) amount, "usd", usd);
}

json_t *
bill_pricing_to_json (const struct bill_pricing *p)
{
  json_t *burst = json_object ();
  json_t *hourly = json_object ();
  for (int i = 0; i < BILL_TIER_COUNT; i++)
    {
      json_object_set_new (burst, tier_names[i], price_json (p->burst[i]));
      json_object_set_new (hourly, tier_names[i], price_json (p->hourly[i]));
    }
  json_t *o = json_pack ("{s:s, s:i, s:s, s:I, s:I, s:{s:o, s:o, s:s}}",
                         "currency", "USDC", "decimals", BILL_DECIMALS,
                         "unit", "amount is in base units: 1000000 = 1 USDC",
                         "burst_max_seconds", (json_int_t) p->burst_max_s,
                         "max_timeout_seconds", (json_int_t) p->max_timeout_s,
                         "create", "burst", burst, "hourly", hourly,
                         "hourly_rounding", "rate x seconds / 3600, rounded up to a base unit");
  if (!o)
    return NULL;
  for (int i = 0; i < BILL_OP_COUNT; i++)
    json_object_set_new (o, op_names[i], price_json (p->op[i]));
  return o;
}
