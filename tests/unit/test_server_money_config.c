/* sbxd's money settings: --auth, --pay-to (EIP-55 checked), --network, --facilitator,
 * the config file's money keys (flags win: they are applied after the file), and the
 * x402-needs-pay-to check; the new routes match under every prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "server/server.h"

#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void
test_auth_modes (void **state)
{
  struct srv_config c;
  struct sbx_err err = { 0 };
  srv_config_defaults (&c);
  assert_int_equal (c.auth, 0);
  assert_int_equal (srv_config_set_auth (&c, "api_key", &err), 0);
  assert_int_equal (c.auth, SRV_AUTH_API_KEY);
  assert_int_equal (srv_config_set_auth (&c, "x402", &err), 0);
  assert_int_equal (c.auth, SRV_AUTH_X402);
  assert_int_equal (srv_config_set_auth (&c, "api_key,x402", &err), 0);
  assert_int_equal (c.auth, SRV_AUTH_API_KEY | SRV_AUTH_X402);
  assert_int_equal (srv_config_set_auth (&c, "off", &err), 0);
  assert_int_equal (c.auth, 0);
  const char *bad[] = { "", "none", "api_key,", "x402,bogus", "API_KEY", ",", "off,x402" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      c.auth = SRV_AUTH_API_KEY;
      assert_int_equal (srv_config_set_auth (&c, bad[i], &err), -1);
      assert_int_equal (c.auth, SRV_AUTH_API_KEY);
    }
}

static void
test_pay_to_network_facilitator (void **state)
{
  struct srv_config c;
  struct sbx_err err = { 0 };
  srv_config_defaults (&c);
  assert_int_equal (c.network, BILL_NET_BASE);
  /* EIP-55, all lower, all upper: fine; a broken checksum or a malformed one: refused */
  assert_int_equal (srv_config_set_pay_to (&c, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", &err), 0);
  assert_true (c.has_pay_to);
  assert_int_equal (c.pay_to[0], 0x20);
  assert_int_equal (srv_config_set_pay_to (&c, "0x209693bc6afc0c5328ba36faf03c514ef312287c", &err), 0);
  assert_int_equal (srv_config_set_pay_to (&c, "0x209693Bc6afc0C5328bA36FaF03C514EF312287c", &err), -1);
  assert_int_equal (srv_config_set_pay_to (&c, "0x209693bc6afc0c5328ba36faf03c514ef312287", &err), -1);
  assert_int_equal (srv_config_set_pay_to (&c, "209693bc6afc0c5328ba36faf03c514ef312287c", &err), -1);
  assert_int_equal (srv_config_set_pay_to (&c, "0x0000000000000000000000000000000000000000", &err), -1);
  assert_int_equal (srv_config_set_network (&c, "base-sepolia", &err), 0);
  assert_int_equal (c.network, BILL_NET_BASE_SEPOLIA);
  assert_int_equal (srv_config_set_network (&c, "eip155:8453", &err), 0);
  assert_int_equal (c.network, BILL_NET_BASE);
  assert_int_equal (srv_config_set_network (&c, "ethereum", &err), -1);
  assert_int_equal (srv_config_set_facilitator (&c, "https://x402.org/facilitator/", &err), 0);
  assert_string_equal (c.facilitator, "https://x402.org/facilitator");
  assert_int_equal (srv_config_set_facilitator (&c, "ftp://x", &err), -1);
  assert_int_equal (srv_config_set_facilitator (&c, "http://a b", &err), -1);
  assert_string_equal (c.facilitator, "https://x402.org/facilitator");
}

static void
test_config_file_and_check (void **state)
{
  char path[] = "/tmp/sbx-test-moneycfg-XXXXXX";
  int fd = mkstemp (path);
  assert_true (fd >= 0);
  const char *txt = "{\"auth\":\"x402\",\"network\":\"base-sepolia\","
                    "\"facilitator\":\"http://127.0.0.1:9/\","
                    "\"pricing\":{\"exec\":\"$0.002\",\"create\":{\"burst\":{\"cpu\":20000}}}}";
  assert_int_equal (write (fd, txt, strlen (txt)), (ssize_t) strlen (txt));
  close (fd);
  struct srv_config c;
  struct sbx_err err = { 0 };
  srv_config_defaults (&c);
  assert_int_equal (srv_config_load_file (&c, path, &err), 0);
  assert_int_equal (c.auth, SRV_AUTH_X402);
  assert_int_equal (c.network, BILL_NET_BASE_SEPOLIA);
  assert_string_equal (c.facilitator, "http://127.0.0.1:9");
  assert_int_equal (bill_price_op (&c.pricing, BILL_OP_EXEC), 2000);
  assert_int_equal (bill_price_op (&c.pricing, BILL_OP_STATUS), 1000);
  uint64_t p;
  assert_int_equal (bill_price_create (&c.pricing, BILL_TIER_CPU, 300, &p, &err), 0);
  assert_int_equal (p, 20000);
  /* x402 without a pay-to address is refused; with one it is fine */
  assert_int_equal (srv_config_money_check (&c, &err), -1);
  assert_non_null (strstr (err.msg, "pay-to"));
  assert_int_equal (srv_config_set_pay_to (&c, "0x209693bc6afc0c5328ba36faf03c514ef312287c", &err), 0);
  assert_int_equal (srv_config_money_check (&c, &err), 0);
  /* without a facilitator only when the operator accepts unchecked (queued) payments */
  c.facilitator[0] = '\0';
  assert_int_equal (srv_config_money_check (&c, &err), -1);
  assert_non_null (strstr (err.msg, "--queue-settlements"));
  c.queue_settlements = 1;
  assert_int_equal (srv_config_money_check (&c, &err), 0);
  /* bad values in the file are errors, and so is a bad pricing object */
  const char *bad[] = { "{\"auth\":1}", "{\"pay_to\":\"0x12\"}", "{\"pricing\":{\"exec\":0.5}}",
                        "{\"pricing\":[]}", "{\"network\":\"mainnet\"}",
                        "{\"queue_settlements\":\"yes\"}" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      fd = open (path, O_WRONLY | O_TRUNC | O_CLOEXEC);
      assert_int_equal (write (fd, bad[i], strlen (bad[i])), (ssize_t) strlen (bad[i]));
      close (fd);
      srv_config_defaults (&c);
      assert_int_equal (srv_config_load_file (&c, path, &err), -1);
    }
  unlink (path);
}

static void
test_routes (void **state)
{
  const char *allow;
  assert_int_equal (srv_route_match ("/v1/pricing", &allow), SRV_R_PRICING);
  assert_string_equal (allow, "GET");
  assert_int_equal (srv_route_match ("/api/v1/modal/pricing", &allow), SRV_R_PRICING);
  assert_int_equal (srv_route_match ("/v1/marketplace/compute/usage", &allow), SRV_R_USAGE);
  assert_int_equal (srv_route_match ("/v1/usage/", &allow), SRV_R_NONE);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_auth_modes),
    cmocka_unit_test (test_pay_to_network_facilitator),
    cmocka_unit_test (test_config_file_and_check),
    cmocka_unit_test (test_routes),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
