/* x402 through a facilitator: POST {facilitator}/verify and /settle with
 * {x402Version, paymentPayload, paymentRequirements} (../shared/x402/x402.md section 7).
 * /verify answers {isValid, invalidReason?, payer?}; /settle a SettleResponse:
 * {success, transaction, network, payer?, errorReason?}. */
#include "server.h"
#include "auth_internal.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define SETTLE_REPLY_MAX (64 * 1024)
#define SETTLE_TIMEOUT_S 60

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once (void)
{
  curl_global_init (CURL_GLOBAL_DEFAULT);
}

struct buf {
  char *p;
  size_t len;
  int too_big;
};

static size_t
on_data (char *data, size_t size, size_t nmemb, void *cls)
{
  struct buf *b = cls;
  size_t n = size * nmemb;
  if (b->len + n > SETTLE_REPLY_MAX)
    {
      b->too_big = 1;
      return 0;
    }
  char *np = realloc (b->p, b->len + n + 1);
  if (!np)
    return 0;
  b->p = np;
  memcpy (b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return n;
}

/* POST {facilitator}/{what}; 0 when the reply says yes (verify: isValid; settle: success
 * with a transaction, copied to tx), else -1 with reason. */
static int
call (const char *facilitator, const char *what, const json_t *body, char *tx, size_t txcap,
      char *reason, size_t rcap)
{
  pthread_once (&curl_once, curl_init_once);
  int verify = !strcmp (what, "verify");
  if (tx)
    snprintf (tx, txcap, "%s", "");
  char url[600];
  snprintf (url, sizeof url, "%s/%s", facilitator, what);
  cleanup_free char *req = json_dumps (body, JSON_COMPACT);
  CURL *c = curl_easy_init ();
  if (!req || !c)
    {
      if (c)
        curl_easy_cleanup (c);
      snprintf (reason, rcap, "settlement_error");
      return -1;
    }
  struct buf b = { 0 };
  struct curl_slist *h = curl_slist_append (NULL, "Content-Type: application/json");
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_POSTFIELDS, req);
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt (c, CURLOPT_TIMEOUT, (long) SETTLE_TIMEOUT_S);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode cr = curl_easy_perform (c);
  long code = 0;
  curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all (h);
  curl_easy_cleanup (c);
  int rc = -1;
  if (cr != CURLE_OK)
    {
      LOG_WARN ("%s: %s: %s", what, url, curl_easy_strerror (cr));
      snprintf (reason, rcap, "facilitator_unreachable");
      goto out;
    }
  json_t *j = b.p ? json_loads (b.p, 0, NULL) : NULL;
  json_t *ok = json_object_get (j, verify ? "isValid" : "success");
  const char *t = json_string_value (json_object_get (j, "transaction"));
  const char *why = json_string_value (json_object_get (j, verify ? "invalidReason"
                                                                  : "errorReason"));
  if (code >= 200 && code < 300 && json_is_true (ok) && (verify || (t && *t)))
    {
      if (!verify)
        snprintf (tx, txcap, "%s", t);
      rc = 0;
    }
  else if (why && *why)
    snprintf (reason, rcap, "%s", why);
  else if (code < 200 || code >= 300)
    snprintf (reason, rcap, "facilitator_http_%ld", code);
  else
    snprintf (reason, rcap, verify ? "payment_invalid" : "settlement_failed");
  if (rc < 0)
    LOG_WARN ("%s: %s answered %ld: %s", what, url, code, b.p ? b.p : "");
  json_decref (j);
out:
  free (b.p);
  return rc;
}

int
srv_settle (const char *facilitator, const json_t *body, char *tx, size_t txcap, char *reason,
            size_t rcap)
{
  return call (facilitator, "settle", body, tx, txcap, reason, rcap);
}

int
srv_facilitator_verify (const char *facilitator, const json_t *body, char *reason, size_t rcap)
{
  return call (facilitator, "verify", body, NULL, 0, reason, rcap);
}
