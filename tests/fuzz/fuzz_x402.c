/* libFuzzer target for the x402 payment header path: strict base64, JSON, field decoding,
 * then verification against a fixed offer (so a decoded payment also runs the hex, uint256,
 * EIP-712 and signature-recovery code on attacker bytes). The first input byte picks the
 * header version and whether the input is taken as a header value or as raw JSON (encoded
 * here, so the fuzzer reaches the JSON layer without having to learn base64).
 *
 * Build and run by hand (clang's libFuzzer, ASan + UBSan):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     tests/fuzz/fuzz_x402.c src/billing/[a-z]*.c src/common/err.c src/common/fdio.c \
 *     -ljansson -lsecp256k1 -lpthread -o build/fuzz_x402
 *   build/fuzz_x402 -max_len=20000 -runs=200000 tests/fuzz/corpus_x402   (corpus optional) */
#include "billing/billing.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1 || size > 3 * BILL_X402_HEADER_MAX)
    return 0;
  int version = (data[0] & 1) ? 2 : 1;
  int as_json = (data[0] & 2) != 0;
  data++, size--;

  char *header;
  if (as_json)
    header = bill_base64_encode (data, size);
  else
    {
      header = malloc (size + 1);
      if (header)
        {
          memcpy (header, data, size);
          header[size] = '\0';
        }
    }
  if (!header)
    return 0;

  struct bill_offer o = {
    .network = BILL_NET_BASE,
    .amount = 10000,
    .resource = "http://127.0.0.1:8080/v1/sandbox/create",
  };
  bill_addr_parse ("0x209693Bc6afc0C5328bA36FaF03C514EF312287C", o.pay_to);

  struct bill_payment p;
  struct bill_x402_result res;
  if (bill_x402_decode (header, version, &p, &res) == 0)
    {
      bill_x402_verify (&p, &o, 1795307600, &res);
      json_t *body = bill_x402_facilitator_body (&p, &o);
      json_decref (body);
      json_t *receipt = bill_x402_settle_response (&p, &o, 1, "0x00", NULL);
      char *enc = bill_x402_header_encode (receipt);
      free (enc);
      json_decref (receipt);
      bill_payment_clear (&p);
    }
  else if (p.raw != NULL)
    abort (); /* a refused header must leave nothing behind */
  free (header);
  return 0;
}
