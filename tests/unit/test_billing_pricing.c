/* src/billing pricing: every default tier, the hourly formula and its rounding, the limits,
 * config overrides and the refusal of bad configs, the JSON table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "billing/billing.h"

#include <string.h>

static uint64_t
create_price (const struct bill_pricing *p, int tier, int64_t timeout)
{
  uint64_t v = 0;
  struct sbx_err err = { 0 };
  if (bill_price_create (p, tier, timeout, &v, &err) < 0)
    fail_msg ("bill_price_create %d %lld: %s", tier, (long long) timeout, err.msg);
  return v;
}

static void
test_burst_tiers (void **state)
{
  struct bill_pricing p;
  bill_pricing_default (&p);
  static const uint64_t want[BILL_TIER_COUNT] = { 10000, 50000, 80000, 100000, 200000, 400000 };
  for (int t = 0; t < BILL_TIER_COUNT; t++)
    {
      assert_int_equal (create_price (&p, t, 1), want[t]);
      assert_int_equal (create_price (&p, t, 60), want[t]);
      assert_int_equal (create_price (&p, t, 300), want[t]); /* 300 is still burst */
    }
}

static void
test_hourly_tiers (void **state)
{
  struct bill_pricing p;
  bill_pricing_default (&p);
  static const uint64_t per_hour[BILL_TIER_COUNT]
      = { 100000, 1500000, 2000000, 2500000, 4000000, 8000000 };
  for (int t = 0; t < BILL_TIER_COUNT; t++)
    {
      assert_int_equal (create_price (&p, t, 3600), per_hour[t]);
      assert_int_equal (create_price (&p, t, 7200), 2 * per_hour[t]);
      assert_int_equal (create_price (&p, t, 86400), 24 * per_hour[t]);
      assert_int_equal (create_price (&p, t, 1800), per_hour[t] / 2);
    }
  /* The reference's example: 90 min on T4 = 1.5 × $1.50 = $2.25. */
  assert_int_equal (create_price (&p, BILL_TIER_T4, 5400), 2250000);
  /* 301 s on CPU: 100000 × 301 / 3600 = 8361.11 → rounds up to 8362. */
  assert_int_equal (create_price (&p, BILL_TIER_CPU, 301), 8362);
  /* 301 s on H100: 8000000 × 301 / 3600 = 668888.88 → 668889. */
  assert_int_equal (create_price (&p, BILL_TIER_H100, 301), 668889);
  /* Exact: 360 s on CPU = 10000. */
  assert_int_equal (create_price (&p, BILL_TIER_CPU, 360), 10000);
}

static void
test_ops_and_names (void **state)
{
  struct bill_pricing p;
  bill_pricing_default (&p);
  assert_int_equal (bill_price_op (&p, BILL_OP_EXEC), 1000);
  assert_int_equal (bill_price_op (&p, BILL_OP_STATUS), 1000);
  assert_int_equal (bill_price_op (&p, BILL_OP_TERMINATE), 1000);
  assert_int_equal (bill_price_op (&p, BILL_OP_COUNT), 0);
  assert_int_equal (bill_price_op (&p, -1), 0);
  int t = -1;
  assert_int_equal (bill_tier_parse ("A10G", &t), 0);
  assert_int_equal (t, BILL_TIER_A10G);
  assert_int_equal (bill_tier_parse ("h100", &t), 0);
  assert_int_equal (t, BILL_TIER_H100);
  assert_int_equal (bill_tier_parse ("v100", &t), -1);
  assert_int_equal (bill_tier_parse (NULL, &t), -1);
  assert_string_equal (bill_tier_name (BILL_TIER_L4), "l4");
  assert_null (bill_tier_name (BILL_TIER_COUNT));
  assert_string_equal (bill_op_name (BILL_OP_TERMINATE), "terminate");
}

static void
test_bad_timeouts (void **state)
{
  struct bill_pricing p;
  bill_pricing_default (&p);
  uint64_t v = 77;
  struct sbx_err err = { 0 };
  assert_int_equal (bill_price_create (&p, BILL_TIER_CPU, 0, &v, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  assert_int_equal (bill_price_create (&p, BILL_TIER_CPU, -5, &v, &err), -1);
  assert_int_equal (bill_price_create (&p, BILL_TIER_CPU, 86401, &v, &err), -1);
  assert_int_equal (bill_price_create (&p, BILL_TIER_CPU, INT64_MAX, &v, &err), -1);
  assert_int_equal (bill_price_create (&p, BILL_TIER_COUNT, 60, &v, &err), -1);
  assert_int_equal (bill_price_create (&p, -1, 60, &v, &err), -1);
  assert_int_equal (v, 77); /* untouched on error */
}

static void
test_overflow_safety (void **state)
{
  /* A hand-built table (config validation would refuse it) must not wrap around. */
  struct bill_pricing p;
  bill_pricing_default (&p);
  p.hourly[BILL_TIER_CPU] = UINT64_MAX / 2;
  p.max_timeout_s = INT64_MAX;
  uint64_t v = 0;
  struct sbx_err err = { 0 };
  assert_int_equal (bill_price_create (&p, BILL_TIER_CPU, 3, &v, &err), 0); /* burst */
  assert_int_equal (bill_price_create (&p, BILL_TIER_CPU, 301, &v, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  /* The largest valid config cannot overflow: max amount × max lifetime < 2^64. */
  bill_pricing_default (&p);
  json_error_t je;
  json_t *cfg = json_loads ("{\"max_timeout_seconds\":604800,"
                            "\"create\":{\"hourly\":{\"h100\":\"$1000000\"}}}",
                            0, &je);
  assert_non_null (cfg);
  assert_int_equal (bill_pricing_from_json (cfg, &p, &err), 0);
  json_decref (cfg);
  assert_int_equal (bill_price_create (&p, BILL_TIER_H100, 604800, &v, &err), 0);
  assert_true (v == 168ull * 1000000ull * 1000000ull);
}

static void
test_parse_numbers (void **state)
{
  uint64_t v;
  assert_int_equal (bill_parse_u64 ("0", &v), 0);
  assert_int_equal (v, 0);
  assert_int_equal (bill_parse_u64 ("18446744073709551615", &v), 0);
  assert_true (v == UINT64_MAX);
  assert_int_equal (bill_parse_u64 ("18446744073709551616", &v), -1);
  assert_int_equal (bill_parse_u64 ("99999999999999999999999", &v), -1);
  assert_int_equal (bill_parse_u64 ("010000", &v), -1);
  assert_int_equal (bill_parse_u64 ("", &v), -1);
  assert_int_equal (bill_parse_u64 ("-1", &v), -1);
  assert_int_equal (bill_parse_u64 ("+1", &v), -1);
  assert_int_equal (bill_parse_u64 (" 1", &v), -1);
  assert_int_equal (bill_parse_u64 ("1 ", &v), -1);
  assert_int_equal (bill_parse_u64 ("1e4", &v), -1);
  assert_int_equal (bill_parse_u64 ("0x10", &v), -1);
  assert_int_equal (bill_parse_u64 (NULL, &v), -1);

  assert_int_equal (bill_amount_parse_usd ("$0.01", &v), 0);
  assert_int_equal (v, 10000);
  assert_int_equal (bill_amount_parse_usd ("$1.5", &v), 0);
  assert_int_equal (v, 1500000);
  assert_int_equal (bill_amount_parse_usd ("$2", &v), 0);
  assert_int_equal (v, 2000000);
  assert_int_equal (bill_amount_parse_usd ("$0.000001", &v), 0);
  assert_int_equal (v, 1);
  assert_int_equal (bill_amount_parse_usd ("$0.0000001", &v), -1); /* below one unit */
  assert_int_equal (bill_amount_parse_usd ("0.01", &v), -1);
  assert_int_equal (bill_amount_parse_usd ("$.5", &v), -1);
  assert_int_equal (bill_amount_parse_usd ("$1.", &v), -1);
  assert_int_equal (bill_amount_parse_usd ("$-1", &v), -1);
  assert_int_equal (bill_amount_parse_usd ("$01", &v), -1);
  assert_int_equal (bill_amount_parse_usd ("$1e3", &v), -1);
  assert_int_equal (bill_amount_parse_usd ("$99999999999999", &v), -1);

  char buf[32];
  bill_amount_usd (10000, buf, sizeof buf);
  assert_string_equal (buf, "0.01");
  bill_amount_usd (1000, buf, sizeof buf);
  assert_string_equal (buf, "0.001");
  bill_amount_usd (100000, buf, sizeof buf);
  assert_string_equal (buf, "0.10");
  bill_amount_usd (2250000, buf, sizeof buf);
  assert_string_equal (buf, "2.25");
  bill_amount_usd (1, buf, sizeof buf);
  assert_string_equal (buf, "0.000001");
  bill_amount_usd (0, buf, sizeof buf);
  assert_string_equal (buf, "0.00");
  bill_amount_usd (UINT64_MAX, buf, sizeof buf);
  assert_string_equal (buf, "18446744073709.551615");
}

static json_t *
load (const char *s)
{
  json_error_t je;
  json_t *j = json_loads (s, 0, &je);
  if (!j)
    fail_msg ("bad test JSON: %s", je.text);
  return j;
}

static void
test_config_override (void **state)
{
  struct bill_pricing p;
  bill_pricing_default (&p);
  json_t *cfg = load ("{\"exec\":2000, \"status\":\"$0\", \"burst_max_seconds\":600,"
                      "\"create\":{\"burst\":{\"CPU\":\"$0.02\"}, \"hourly\":{\"t4\":3000000}}}");
  struct sbx_err err = { 0 };
  assert_int_equal (bill_pricing_from_json (cfg, &p, &err), 0);
  json_decref (cfg);
  assert_int_equal (bill_price_op (&p, BILL_OP_EXEC), 2000);
  assert_int_equal (bill_price_op (&p, BILL_OP_STATUS), 0);
  assert_int_equal (bill_price_op (&p, BILL_OP_TERMINATE), 1000);
  assert_int_equal (create_price (&p, BILL_TIER_CPU, 600), 20000);
  assert_int_equal (create_price (&p, BILL_TIER_L4, 600), 80000);
  assert_int_equal (create_price (&p, BILL_TIER_T4, 5400), 4500000);
  assert_int_equal (create_price (&p, BILL_TIER_A100, 3600), 4000000);
}

static void
test_config_refused (void **state)
{
  static const char *const bad[] = {
    "[]",
    "{\"exec\":-1}",
    "{\"exec\":0.001}",                      /* floating point: never */
    "{\"exec\":\"1000\"}",                   /* a bare string is ambiguous */
    "{\"exec\":\"$0.0000001\"}",
    "{\"exec\":true}",
    "{\"exec\":null}",
    "{\"exec\":1000000000001}",              /* above BILL_AMOUNT_MAX */
    "{\"exce\":1000}",                       /* typo: unknown key */
    "{\"create\":{\"burst\":{\"v100\":1}}}",
    "{\"create\":{\"burst\":[1,2]}}",
    "{\"create\":{\"minute\":{}}}",
    "{\"create\":5}",
    "{\"max_timeout_seconds\":0}",
    "{\"max_timeout_seconds\":604801}",
    "{\"max_timeout_seconds\":-3}",
    "{\"max_timeout_seconds\":100}",         /* below the default burst_max of 300 */
    "{\"burst_max_seconds\":\"300\"}",
    "{\"burst_max_seconds\":9999999999999}",
    "{\"create\":{\"hourly\":{\"t4\":18446744073709551615}}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      struct bill_pricing p, before;
      bill_pricing_default (&p);
      before = p;
      json_error_t je;
      json_t *cfg = json_loads (bad[i], JSON_DECODE_ANY, &je);
      struct sbx_err err = { 0 };
      if (!cfg)
        {
          /* Only an integer beyond int64 may be refused by jansson itself. */
          assert_non_null (strstr (bad[i], "18446744073709551615"));
          continue;
        }
      int r = bill_pricing_from_json (cfg, &p, &err);
      json_decref (cfg);
      if (r != -1)
        fail_msg ("config accepted: %s", bad[i]);
      assert_int_equal (err.code, SBX_E_INVALID);
      assert_memory_equal (&p, &before, sizeof p); /* untouched */
    }
}

static void
test_to_json (void **state)
{
  struct bill_pricing p;
  bill_pricing_default (&p);
  json_t *j = bill_pricing_to_json (&p);
  assert_non_null (j);
  assert_string_equal (json_string_value (json_object_get (j, "currency")), "USDC");
  assert_int_equal (json_integer_value (json_object_get (j, "decimals")), 6);
  assert_int_equal (json_integer_value (json_object_get (j, "burst_max_seconds")), 300);
  json_t *a10g = json_object_get (json_object_get (json_object_get (j, "create"), "burst"), "a10g");
  assert_int_equal (json_integer_value (json_object_get (a10g, "amount")), 100000);
  assert_string_equal (json_string_value (json_object_get (a10g, "usd")), "0.10");
  json_t *h100 = json_object_get (json_object_get (json_object_get (j, "create"), "hourly"), "h100");
  assert_int_equal (json_integer_value (json_object_get (h100, "amount")), 8000000);
  assert_string_equal (json_string_value (json_object_get (h100, "usd")), "8.00");
  json_t *exec = json_object_get (j, "exec");
  assert_int_equal (json_integer_value (json_object_get (exec, "amount")), 1000);
  assert_string_equal (json_string_value (json_object_get (exec, "usd")), "0.001");
  assert_non_null (json_object_get (j, "terminate"));
  json_decref (j);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_burst_tiers),     cmocka_unit_test (test_hourly_tiers),
    cmocka_unit_test (test_ops_and_names),   cmocka_unit_test (test_bad_timeouts),
    cmocka_unit_test (test_overflow_safety), cmocka_unit_test (test_parse_numbers),
    cmocka_unit_test (test_config_override), cmocka_unit_test (test_config_refused),
    cmocka_unit_test (test_to_json),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
