/* Hex for the 0x-prefixed fixed-width values of EVM payloads: addresses, nonces,
 * signatures, hashes. Exact lengths only: a short or long value is refused, not padded. */
#include "billing.h"

#include <string.h>

static int
nibble (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int
bill_hex_decode (const char *s, uint8_t *out, size_t n)
{
  if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
    return -1;
  s += 2;
  /* strnlen bounds the scan: a hostile megabyte string costs nothing. */
  if (strnlen (s, 2 * n + 1) != 2 * n)
    return -1;
  for (size_t i = 0; i < n; i++)
    {
      int hi = nibble (s[2 * i]), lo = nibble (s[2 * i + 1]);
      if (hi < 0 || lo < 0)
        return -1;
      out[i] = (uint8_t) (hi << 4 | lo);
    }
  return 0;
}

void
bill_hex_encode (const uint8_t *in, size_t n, char *out, size_t cap)
{
  static const char digits[] = "0123456789abcdef";
  if (cap < 2 * n + 3)
    {
      if (cap)
        out[0] = '\0';
      return;
    }
  out[0] = '0';
  out[1] = 'x';
  for (size_t i = 0; i < n; i++)
    {
      out[2 + 2 * i] = digits[in[i] >> 4];
      out[3 + 2 * i] = digits[in[i] & 15];
    }
  out[2 + 2 * n] = '\0';
}
