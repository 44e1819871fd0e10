/* Standard base64 (RFC 4648 §4, alphabet A-Z a-z 0-9 + /, '=' padding), as x402 headers
 * use it. The decoder is strict because it reads hostile input: no whitespace, no
 * base64url, no missing or misplaced padding, and the unused bits of the last character
 * must be zero, so one byte string has exactly one accepted encoding. */
#include "billing.h"

#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
sextet (unsigned char c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

char *
bill_base64_encode (const void *data, size_t len)
{
  const uint8_t *p = data;
  if (len > (SIZE_MAX - 1) / 4 * 3 - 2)
    return NULL;
  size_t n = (len + 2) / 3 * 4;
  char *out = malloc (n + 1);
  if (!out)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3)
    {
      uint32_t w = (uint32_t) p[i] << 16;
      if (i + 1 < len)
        w |= (uint32_t) p[i + 1] << 8;
      if (i + 2 < len)
        w |= p[i + 2];
      out[o++] = alphabet[(w >> 18) & 63];
      out[o++] = alphabet[(w >> 12) & 63];
      out[o++] = i + 1 < len ? alphabet[(w >> 6) & 63] : '=';
      out[o++] = i + 2 < len ? alphabet[w & 63] : '=';
    }
  out[o] = '\0';
  return out;
}

int
bill_base64_decode (const char *s, size_t len, uint8_t **out, size_t *out_len)
{
  *out = NULL;
  *out_len = 0;
  if (len == 0 || len % 4 != 0)
    return -1;
  size_t pad = 0;
  if (s[len - 1] == '=')
    pad = s[len - 2] == '=' ? 2 : 1;
  size_t n = len / 4 * 3 - pad;
  uint8_t *buf = malloc (n ? n : 1);
  if (!buf)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4)
    {
      int last = i + 4 == len;
      int c[4];
      for (int k = 0; k < 4; k++)
        {
          /* '=' only as the final one or two characters of the last quantum. */
          if (last && s[i + k] == '=' && k >= 4 - (int) pad)
            c[k] = 0;
          else if ((c[k] = sextet ((unsigned char) s[i + k])) < 0)
            goto bad;
        }
      uint32_t w = (uint32_t) c[0] << 18 | (uint32_t) c[1] << 12 | (uint32_t) c[2] << 6 | (uint32_t) c[3];
      if (last && pad == 2 && (w & 0xffff) != 0)
        goto bad; /* non-zero unused bits: a second spelling of the same bytes */
      if (last && pad == 1 && (w & 0xff) != 0)
        goto bad;
      buf[o++] = (uint8_t) (w >> 16);
      if (!(last && pad == 2))
        buf[o++] = (uint8_t) (w >> 8);
      if (!(last && pad >= 1))
        buf[o++] = (uint8_t) w;
    }
  *out = buf;
  *out_len = o;
  return 0;
bad:
  free (buf);
  return -1;
}
