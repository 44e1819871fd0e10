/* HTTP helpers of the sbx commands: JSON requests (the one-shot commands of cmd_api.c and
 * the streaming ones: exec -i/-t, logs, cp), NDJSON event streams and raw bodies with
 * libcurl. */
#include "cli.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

void
cli_api_init (void)
{
  static int done;
  if (!done)
    curl_global_init (CURL_GLOBAL_DEFAULT);
  done = 1;
}

const char *
cli_api_base (const char *opt)
{
  if (opt && *opt)
    return opt;
  const char *e = getenv ("SBX_URL");
  return e && *e ? e : CLI_DEFAULT_URL;
}

void
cli_api_url (const char *base, const char *path, char *out, size_t cap)
{
  size_t n = strlen (base);
  while (n && base[n - 1] == '/')
    n--;
  static const char *const prefixes[] = { "/v1/marketplace/compute", "/api/v1/modal", "/v1" };
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
    {
      size_t pl = strlen (prefixes[i]);
      if (n >= pl && !strncmp (base + n - pl, prefixes[i], pl))
        {
          snprintf (out, cap, "%.*s%s", (int) n, base, path);
          return;
        }
    }
  snprintf (out, cap, "%.*s/v1%s", (int) n, base, path);
}

struct curl_slist *
cli_api_auth (struct curl_slist *hdr)
{
  /* sbxd with --auth api_key: the key comes from the environment, never from argv (ps) */
  const char *key = getenv ("SBX_API_KEY");
  char authz[160];
  if (key && *key && strlen (key) < 128)
    {
      snprintf (authz, sizeof authz, "Authorization: Bearer %s", key);
      hdr = curl_slist_append (hdr, authz);
    }
  return hdr;
}

struct sink {
  char *data;
  size_t len;
  /* stream mode */
  int (*on_event) (json_t *ev, void *ud);
  void *ud;
  long status;
  CURL *curl;
  int stop;
};

static size_t
on_body (char *p, size_t sz, size_t nm, void *ud)
{
  struct sink *s = ud;
  size_t add = sz * nm;
  if (s->len + add > 64u * 1024 * 1024)
    return 0;
  char *nd = realloc (s->data, s->len + add + 1);
  if (!nd)
    return 0;
  memcpy (nd + s->len, p, add);
  s->data = nd;
  s->len += add;
  s->data[s->len] = '\0';
  if (!s->on_event)
    return add;
  if (!s->status)
    curl_easy_getinfo (s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status != 200)
    return add; /* an error answer: one JSON object, parsed at the end */
  /* Hand out every complete line; keep the rest. */
  char *start = s->data, *nl;
  while ((nl = memchr (start, '\n', (size_t) (s->data + s->len - start))))
    {
      json_error_t je;
      json_t *ev = json_loadb (start, (size_t) (nl - start), JSON_ALLOW_NUL, &je);
      start = nl + 1;
      if (ev && !s->stop && s->on_event (ev, s->ud) != 0)
        s->stop = 1;
      json_decref (ev);
    }
  s->len = (size_t) (s->data + s->len - start);
  memmove (s->data, start, s->len);
  s->data[s->len] = '\0';
  return s->stop ? 0 : add;
}

static long
perform (const char *base, const char *method, const char *path, json_t *body, struct sink *s,
         json_t **out)
{
  char url[8192];
  cli_api_url (base, path, url, sizeof url);
  CURL *c = curl_easy_init ();
  if (!c)
    {
      fprintf (stderr, "sbx: cannot initialise libcurl\n");
      return -1;
    }
  s->curl = c;
  char *payload = body ? json_dumps (body, JSON_COMPACT) : NULL;
  struct curl_slist *hdr = curl_slist_append (NULL, "Content-Type: application/json");
  hdr = cli_api_auth (curl_slist_append (hdr, "Expect:"));
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, s);
  curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!strcmp (method, "POST"))
    {
      curl_easy_setopt (c, CURLOPT_POST, 1L);
      curl_easy_setopt (c, CURLOPT_POSTFIELDS, payload ? payload : "{}");
    }
  CURLcode cc = curl_easy_perform (c);
  long status = -1;
  if (cc != CURLE_OK && !(s->stop && cc == CURLE_WRITE_ERROR))
    fprintf (stderr, "sbx: %s: %s (is sbxd running? set --url or SBX_URL)\n", url,
             curl_easy_strerror (cc));
  else
    {
      curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
      json_error_t je;
      *out = s->len ? json_loadb (s->data, s->len, JSON_ALLOW_NUL, &je) : NULL;
    }
  curl_slist_free_all (hdr);
  curl_easy_cleanup (c);
  free (payload);
  return status;
}

long
cli_api_call (const char *base, const char *method, const char *path, json_t *body,
              json_t **out)
{
  struct sink s = { 0 };
  *out = NULL;
  long st = perform (base, method, path, body, &s, out);
  free (s.data);
  if (st >= 0 && !json_is_object (*out))
    {
      char url[8192];
      cli_api_url (base, path, url, sizeof url);
      fprintf (stderr, "sbx: %s: HTTP %ld with a reply that is not a JSON object\n", url, st);
      json_decref (*out);
      *out = NULL;
      return -1;
    }
  return st;
}

long
cli_api_post (const char *base, const char *path, json_t *body, json_t **out)
{
  struct sink s = { 0 };
  *out = NULL;
  long st = perform (base, "POST", path, body, &s, out);
  free (s.data);
  if (st >= 0 && st != 200 && !*out)
    *out = json_object ();
  if (st == 200 && !json_is_object (*out))
    {
      fprintf (stderr, "sbx: %s: the reply is not a JSON object\n", path);
      json_decref (*out);
      *out = NULL;
      return -1;
    }
  return st;
}

long
cli_api_stream (const char *base, const char *path, json_t *body,
                int (*on_event) (json_t *ev, void *ud), void *ud, json_t **err_out)
{
  struct sink s = { .on_event = on_event, .ud = ud };
  *err_out = NULL;
  long st = perform (base, "POST", path, body, &s, err_out);
  if (st == 200)
    {
      json_decref (*err_out);
      *err_out = NULL;
    }
  else if (st >= 0 && !*err_out)
    *err_out = json_object ();
  free (s.data);
  return st;
}

int
cli_api_print_error (long status, json_t *reply)
{
  json_t *e = json_object_get (reply, "error");
  fprintf (stderr, "sbx: %s (HTTP %ld): %s\n",
           json_string_value (json_object_get (e, "code")) ?: "error", status,
           json_string_value (json_object_get (e, "message")) ?: "");
  return 1;
}

/* ---- base64 ---- */

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
cli_b64_encode (const uint8_t *p, size_t n)
{
  char *out = malloc ((n + 2) / 3 * 4 + 1);
  if (!out)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3)
    {
      uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < n ? (uint32_t) p[i + 1] << 8 : 0)
                   | (i + 2 < n ? p[i + 2] : 0);
      out[k++] = b64tab[v >> 18 & 63];
      out[k++] = b64tab[v >> 12 & 63];
      out[k++] = i + 1 < n ? b64tab[v >> 6 & 63] : '=';
      out[k++] = i + 2 < n ? b64tab[v & 63] : '=';
    }
  out[k] = '\0';
  return out;
}

size_t
cli_b64_decode (const char *s, size_t n, uint8_t *out)
{
  uint32_t acc = 0;
  int bits = 0;
  size_t k = 0;
  for (size_t i = 0; i < n && s[i] != '='; i++)
    {
      const char *p = memchr (b64tab, s[i], 64);
      if (!p)
        continue;
      acc = acc << 6 | (uint32_t) (p - b64tab);
      bits += 6;
      if (bits >= 8)
        {
          bits -= 8;
          out[k++] = (uint8_t) (acc >> bits);
        }
    }
  return k;
}

int
cli_process_event (json_t *ev, int *exit_code)
{
  const char *type = json_string_value (json_object_get (ev, "type"));
  if (!type)
    return CLI_EVENT_MORE;
  if (!strcmp (type, "stdout"))
    cli_write_event_data (ev, stdout);
  else if (!strcmp (type, "stderr"))
    cli_write_event_data (ev, stderr);
  else if (!strcmp (type, "exit"))
    {
      *exit_code = (int) json_integer_value (json_object_get (ev, "exit_code"));
      return CLI_EVENT_EXIT;
    }
  else if (!strcmp (type, "error"))
    return CLI_EVENT_ERROR;
  return CLI_EVENT_MORE;
}

const char *
cli_event_message (json_t *ev)
{
  return json_string_value (json_object_get (ev, "message")) ?: "";
}

int
cli_write_event_data (json_t *ev, FILE *f)
{
  json_t *d = json_object_get (ev, "data");
  if (!json_is_string (d))
    return 0;
  const char *enc = json_string_value (json_object_get (ev, "encoding"));
  size_t n = json_string_length (d);
  if (enc && !strcmp (enc, "base64"))
    {
      uint8_t *buf = malloc (n + 1);
      if (!buf)
        return -1;
      size_t k = cli_b64_decode (json_string_value (d), n, buf);
      fwrite (buf, 1, k, f);
      free (buf);
    }
  else
    fwrite (json_string_value (d), 1, n, f);
  fflush (f);
  return 0;
}
