/* Output encoding: command output is bytes, JSON strings are Unicode. stdout/stderr are
 * returned as UTF-8 with every byte that is not part of a well-formed sequence replaced by
 * U+FFFD; when that happened the exact bytes are also returned in base64. */
#include "server.h"

#include <string.h>

/* Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7), or 0. */
static size_t
seq_len (const uint8_t *p, size_t n)
{
  uint8_t b = p[0];
  if (b < 0x80)
    return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf)
    len = 2;
  else if (b >= 0xe0 && b <= 0xef)
    {
      len = 3;
      if (b == 0xe0)
        lo = 0xa0; /* no overlongs */
      if (b == 0xed)
        hi = 0x9f; /* no surrogates */
    }
  else if (b >= 0xf0 && b <= 0xf4)
    {
      len = 4;
      if (b == 0xf0)
        lo = 0x90;
      if (b == 0xf4)
        hi = 0x8f; /* <= U+10FFFF */
    }
  else
    return 0;
  if (n < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (p[i] < 0x80 || p[i] > 0xbf)
      return 0;
  return len;
}

int
srv_utf8_sanitize (const uint8_t *p, size_t n, char **out, size_t *out_len)
{
  /* Worst case: every byte becomes the 3-byte U+FFFD. */
  char *o = malloc (n * 3 + 1);
  if (!o)
    return -1;
  size_t j = 0;
  int replaced = 0;
  for (size_t i = 0; i < n;)
    {
      size_t l = seq_len (p + i, n - i);
      if (l)
        {
          memcpy (o + j, p + i, l);
          j += l;
          i += l;
        }
      else
        {
          memcpy (o + j, "\xef\xbf\xbd", 3);
          j += 3;
          i++;
          replaced = 1;
        }
    }
  o[j] = '\0';
  *out = o;
  *out_len = j;
  return replaced;
}

char *
srv_base64 (const uint8_t *p, size_t n)
{
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o = malloc ((n + 2) / 3 * 4 + 1);
  if (!o)
    return NULL;
  size_t j = 0, i = 0;
  for (; i + 2 < n; i += 3)
    {
      uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
      o[j++] = tab[v >> 18];
      o[j++] = tab[(v >> 12) & 63];
      o[j++] = tab[(v >> 6) & 63];
      o[j++] = tab[v & 63];
    }
  if (i < n)
    {
      uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < n ? (uint32_t) p[i + 1] << 8 : 0);
      o[j++] = tab[v >> 18];
      o[j++] = tab[(v >> 12) & 63];
      o[j++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
      o[j++] = '=';
    }
  o[j] = '\0';
  return o;
}

int
srv_json_set_text (json_t *o, const char *key, const char *s)
{
  json_t *v = json_string (s);
  if (v)
    return json_object_set_new (o, key, v);
  char bkey[64], *b64 = srv_base64 ((const uint8_t *) s, strlen (s));
  snprintf (bkey, sizeof bkey, "%s_base64", key);
  int rc = b64 && json_object_set_new (o, key, srv_json_text (s)) == 0
                   && json_object_set_new (o, bkey, json_string (b64)) == 0
             ? 0
             : -1;
  free (b64);
  return rc;
}

json_t *
srv_json_text (const char *s)
{
  json_t *v = json_string (s);
  char *txt = NULL;
  size_t tl = 0;
  if (!v && s && srv_utf8_sanitize ((const uint8_t *) s, strlen (s), &txt, &tl) >= 0)
    v = json_stringn (txt, tl);
  free (txt);
  return v;
}

json_t *
srv_path_size_json (const char *path, uint64_t size)
{
  json_t *o = json_object ();
  if (o && (srv_json_set_text (o, "path", path) < 0
            || json_object_set_new (o, "size", json_integer ((json_int_t) size)) < 0))
    {
      json_decref (o);
      return NULL;
    }
  return o;
}
