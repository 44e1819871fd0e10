/* sbx-admin (run as `sbx admin ...`): accounts, API keys and x402 settlements, worked directly on the state dir's
 * SQLite database (<state dir>/sbx.db, $SBX_STATE_DIR or /var/lib/sbx; --state-dir). It
 * needs write access to that file, i.e. root, like sbxd; sbxd may run meanwhile (WAL,
 * every change is one transaction). There is deliberately no admin endpoint: managing
 * money over HTTP would be one more thing to protect.
 *
 *   sbx admin account create ID [--balance AMOUNT]
 *   sbx admin account topup ID AMOUNT
 *   sbx admin account show ID
 *   sbx admin key create ACCOUNT        prints the key once: only its hash is stored
 *   sbx admin key list [ACCOUNT]
 *   sbx admin key revoke KEY_ID
 *   sbx admin settlements [--all]       x402 authorizations waiting for submission
 *   sbx admin settlements submit URL    POST each queued one to URL/settle (a facilitator)
 *
 * AMOUNT is an integer of USDC base units (1000000 = $1) or "$D[.DDDDDD]". */
#include "../common/common.h"
#include "../billing/billing.h"
#include "../store/store_money.h"

#include <jansson.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2

static void
usage (FILE *f)
{
  fprintf (f,
           "usage: sbx admin [--state-dir DIR] COMMAND\n"
           "  account create ID [--balance AMOUNT]\n"
           "  account topup ID AMOUNT\n"
           "  account show ID\n"
           "  key create ACCOUNT      (the key is printed once; only its hash is kept)\n"
           "  key list [ACCOUNT]\n"
           "  key revoke KEY_ID\n"
           "  settlements [--all]     x402 payments queued for settlement (--all: every state)\n"
           "  settlements submit URL  settle the queued ones through the facilitator at URL\n"
           "AMOUNT: USDC base units (1000000 = $1) or \"$1.50\". Works on DIR/sbx.db\n"
           "(default $SBX_STATE_DIR or /var/lib/sbx); needs root, like sbxd.\n");
}

static int
parse_amount (const char *s, int64_t *out)
{
  uint64_t u;
  if (s[0] == '$' ? bill_amount_parse_usd (s, &u) < 0 : bill_parse_u64 (s, &u) < 0)
    return -1;
  if (u > BILL_AMOUNT_MAX)
    return -1;
  *out = (int64_t) u;
  return 0;
}

static const char *
usd (int64_t amount, char *buf, size_t cap)
{
  bill_amount_usd ((uint64_t) (amount < 0 ? 0 : amount), buf, cap);
  return buf;
}

static int
account_cmd (struct store *st, int argc, char **argv)
{
  struct sbx_err err = { 0 };
  char b[32];
  if (argc >= 2 && !strcmp (argv[0], "create"))
    {
      int64_t bal = 0;
      if (argc == 4 && !strcmp (argv[2], "--balance"))
        {
          if (parse_amount (argv[3], &bal) < 0)
            {
              fprintf (stderr, "sbx admin: bad amount '%s'\n", argv[3]);
              return EXIT_USAGE;
            }
        }
      else if (argc != 2)
        return -1;
      if (store_account_create (st, argv[1], bal, sbx_now_ms (), &err) < 0)
        {
          fprintf (stderr, "sbx admin: %s\n", err.msg);
          return EXIT_FAIL;
        }
      printf ("account %s created, balance %lld ($%s)\n", argv[1], (long long) bal,
              usd (bal, b, sizeof b));
      return 0;
    }
  if (argc == 3 && !strcmp (argv[0], "topup"))
    {
      int64_t amount, bal;
      if (parse_amount (argv[2], &amount) < 0 || amount == 0)
        {
          fprintf (stderr, "sbx admin: bad amount '%s'\n", argv[2]);
          return EXIT_USAGE;
        }
      if (store_account_topup (st, argv[1], amount, &bal, &err) < 0)
        {
          fprintf (stderr, "sbx admin: %s\n", err.msg);
          return EXIT_FAIL;
        }
      printf ("account %s balance %lld ($%s)\n", argv[1], (long long) bal,
              usd (bal, b, sizeof b));
      return 0;
    }
  if (argc == 2 && !strcmp (argv[0], "show"))
    {
      struct store_account a;
      if (store_account_get (st, argv[1], &a, &err) < 0)
        {
          fprintf (stderr, "sbx admin: %s\n", err.msg);
          return EXIT_FAIL;
        }
      char owner[STORE_OWNER_MAX];
      int64_t total = 0, count = 0;
      snprintf (owner, sizeof owner, "acct:%s", a.id);
      store_charge_totals (st, owner, &total, &count, &err);
      char b2[32];
      printf ("account %s\nbalance %lld ($%s)\nactive keys %d\ncharged %lld ($%s) in %lld "
              "calls\n",
              a.id, (long long) a.balance, usd (a.balance, b, sizeof b), a.keys_active,
              (long long) total, usd (total, b2, sizeof b2), (long long) count);
      return 0;
    }
  return -1;
}

static int
key_cmd (struct store *st, int argc, char **argv)
{
  struct sbx_err err = { 0 };
  if (argc == 2 && !strcmp (argv[0], "create"))
    {
      /* sk- + 64 hex: the first 16 name the key (its id), all of it is the secret. A
       * random 256-bit key needs no slow hash: keccak-256 of it is stored. */
      uint8_t raw[32];
      if (getrandom (raw, sizeof raw, 0) != (ssize_t) sizeof raw)
        {
          perror ("sbx admin: getrandom");
          return EXIT_FAIL;
        }
      char hex[67], key[68], id[17];
      bill_hex_encode (raw, 32, hex, sizeof hex);
      snprintf (key, sizeof key, "sk-%s", hex + 2);
      snprintf (id, sizeof id, "%.16s", hex + 2);
      uint8_t h[32];
      bill_keccak256 (key, strlen (key), h);
      explicit_bzero (raw, sizeof raw);
      if (store_key_insert (st, id, argv[1], h, sbx_now_ms (), &err) < 0)
        {
          fprintf (stderr, "sbx admin: %s\n", err.msg);
          return EXIT_FAIL;
        }
      printf ("%s\n", key);
      fprintf (stderr, "key %s for account %s: shown once, store it now\n", id, argv[1]);
      explicit_bzero (key, sizeof key);
      return 0;
    }
  if ((argc == 1 || argc == 2) && !strcmp (argv[0], "list"))
    {
      struct store_key *l = NULL;
      size_t n = 0;
      if (store_key_list (st, argc == 2 ? argv[1] : NULL, &l, &n, &err) < 0)
        {
          fprintf (stderr, "sbx admin: %s\n", err.msg);
          return EXIT_FAIL;
        }
      printf ("%-18s %-24s %-22s %s\n", "KEY_ID", "ACCOUNT", "CREATED", "STATE");
      for (size_t i = 0; i < n; i++)
        {
          char at[32], rv[48] = "active";
          sbx_time_rfc3339 (l[i].created_at_ms, at, sizeof at);
          if (l[i].revoked_at_ms)
            {
              char t[32];
              sbx_time_rfc3339 (l[i].revoked_at_ms, t, sizeof t);
              snprintf (rv, sizeof rv, "revoked %s", t);
            }
          printf ("%-18s %-24s %-22s %s\n", l[i].id, l[i].account_id, at, rv);
        }
      free (l);
      return 0;
    }
  if (argc == 2 && !strcmp (argv[0], "revoke"))
    {
      int r = store_key_revoke (st, argv[1], sbx_now_ms (), &err);
      if (r < 0)
        {
          fprintf (stderr, "sbx admin: %s\n", err.msg);
          return EXIT_FAIL;
        }
      printf ("key %s %s\n", argv[1], r ? "revoked" : "was already revoked");
      return 0;
    }
  return -1;
}

struct buf {
  char *p;
  size_t len;
};

static size_t
on_data (char *d, size_t sz, size_t n, void *cls)
{
  struct buf *b = cls;
  size_t add = sz * n;
  if (b->len + add > 64 * 1024)
    return 0;
  char *np = realloc (b->p, b->len + add + 1);
  if (!np)
    return 0;
  memcpy (np + b->len, d, add);
  b->p = np;
  b->len += add;
  b->p[b->len] = '\0';
  return add;
}

/* POST body to url; 0 with tx on a SettleResponse with success, else -1 with why. */
static int
post_settle (const char *url, const char *body, char *tx, size_t txcap, char *why, size_t wcap)
{
  CURL *c = curl_easy_init ();
  if (!c)
    {
      snprintf (why, wcap, "settlement_error");
      return -1;
    }
  struct buf b = { 0 };
  struct curl_slist *h = curl_slist_append (NULL, "Content-Type: application/json");
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt (c, CURLOPT_TIMEOUT, 90L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode cr = curl_easy_perform (c);
  long code = 0;
  curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all (h);
  curl_easy_cleanup (c);
  int rc = -1;
  json_t *j = cr == CURLE_OK && b.p ? json_loads (b.p, 0, NULL) : NULL;
  const char *t = json_string_value (json_object_get (j, "transaction"));
  const char *reason = json_string_value (json_object_get (j, "errorReason"));
  if (code >= 200 && code < 300 && json_is_true (json_object_get (j, "success")) && t && *t)
    {
      snprintf (tx, txcap, "%s", t);
      rc = 0;
    }
  else if (cr != CURLE_OK)
    snprintf (why, wcap, "facilitator_unreachable");
  else if (reason && *reason)
    snprintf (why, wcap, "%s", reason);
  else
    snprintf (why, wcap, "facilitator_http_%ld", code);
  json_decref (j);
  free (b.p);
  return rc;
}

/* The receipt stored at queue time (PAYMENT-RESPONSE, base64 of JSON) had no transaction
 * yet; a re-sent request gets the stored receipt, so it now names the settled one. NULL:
 * keep the stored one (not a receipt this version can read). */
static char *
receipt_with_tx (const char *receipt, const char *tx)
{
  uint8_t *raw = NULL;
  size_t len = 0;
  if (!receipt || bill_base64_decode (receipt, strlen (receipt), &raw, &len) < 0)
    return NULL;
  json_t *j = json_loadb ((const char *) raw, len, 0, NULL);
  free (raw);
  char *out = NULL;
  if (json_is_object (j) && json_object_set_new (j, "transaction", json_string (tx)) == 0)
    out = bill_x402_header_encode (j);
  json_decref (j);
  return out;
}

/* Submit every queued settlement. A failure is recorded (the charge becomes refunded:
 * the operation was not paid) and reported; the exit status is 1 if any failed. */
static int
submit (struct store *st, const char *base)
{
  if (strncmp (base, "http://", 7) && strncmp (base, "https://", 8))
    {
      fprintf (stderr, "sbx admin: facilitator must be an http(s):// URL\n");
      return EXIT_USAGE;
    }
  char url[1024];
  snprintf (url, sizeof url, "%s%s", base, base[strlen (base) - 1] == '/' ? "settle" : "/settle");
  curl_global_init (CURL_GLOBAL_DEFAULT);
  struct store_payment *l = NULL;
  size_t n = 0, bad = 0;
  struct sbx_err err = { 0 };
  if (store_payment_list (st, "queued", &l, &n, &err) < 0)
    {
      fprintf (stderr, "sbx admin: %s\n", err.msg);
      return EXIT_FAIL;
    }
  for (size_t i = 0; i < n; i++)
    {
      char tx[128] = "", why[128] = "";
      int ok = post_settle (url, l[i].facilitator_body, tx, sizeof tx, why, sizeof why) == 0;
      cleanup_free char *receipt = ok ? receipt_with_tx (l[i].receipt, tx) : NULL;
      if (store_payment_settled (st, l[i].payer, l[i].nonce, ok, tx, why, l[i].status,
                                 l[i].response, receipt ? receipt : l[i].receipt, sbx_now_ms (),
                                 &err)
          < 0)
        fprintf (stderr, "sbx admin: record %s:%s: %s\n", l[i].payer, l[i].nonce, err.msg);
      printf ("%s:%s %s %s\n", l[i].payer, l[i].nonce, ok ? "settled" : "failed", ok ? tx : why);
      bad += !ok;
    }
  fprintf (stderr, "%zu submitted, %zu failed\n", n, bad);
  store_payment_list_free (l, n);
  curl_global_cleanup ();
  return bad ? EXIT_FAIL : 0;
}

static int
settlements_cmd (struct store *st, int argc, char **argv)
{
  if (argc == 2 && !strcmp (argv[0], "submit"))
    return submit (st, argv[1]);
  int all = argc == 1 && !strcmp (argv[0], "--all");
  if (argc > 1 || (argc == 1 && !all))
    return -1;
  struct store_payment *l = NULL;
  size_t n = 0;
  struct sbx_err err = { 0 };
  if (store_payment_list (st, all ? NULL : "queued", &l, &n, &err) < 0)
    {
      fprintf (stderr, "sbx admin: %s\n", err.msg);
      return EXIT_FAIL;
    }
  /* One JSON object per line: what a submitter needs (POST it to {facilitator}/settle). */
  for (size_t i = 0; i < n; i++)
    {
      json_t *o = json_pack ("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "payer", l[i].payer, "nonce",
                             l[i].nonce, "op", l[i].op, "settlement", l[i].settlement, "amount",
                             (json_int_t) l[i].amount, "valid_before",
                             (json_int_t) l[i].valid_before, "sandbox_id", l[i].sandbox_id,
                             "tx_hash", l[i].tx_hash);
      json_t *fb = l[i].facilitator_body ? json_loads (l[i].facilitator_body, 0, NULL) : NULL;
      json_object_set_new (o, "settle_body", fb ? fb : json_null ());
      if (l[i].settle_error[0])
        json_object_set_new (o, "error", json_string (l[i].settle_error));
      char *txt = json_dumps (o, JSON_COMPACT);
      if (txt)
        printf ("%s\n", txt);
      free (txt);
      json_decref (o);
    }
  fprintf (stderr, "%zu settlement(s)%s\n", n, all ? "" : " queued");
  store_payment_list_free (l, n);
  return 0;
}

int
main (int argc, char **argv)
{
  const char *dir = sbx_default_state_dir ();
  int i = 1;
  if (i + 1 < argc && !strcmp (argv[i], "--state-dir"))
    {
      dir = argv[i + 1];
      i += 2;
    }
  if (i >= argc || !strcmp (argv[i], "-h") || !strcmp (argv[i], "--help"))
    {
      usage (i >= argc ? stderr : stdout);
      return i >= argc ? EXIT_USAGE : 0;
    }
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/sbx.db", dir);
  struct store *st = NULL;
  struct sbx_err err = { 0 };
  if (store_open (path, &st, &err) < 0)
    {
      fprintf (stderr, "sbx admin: %s\n", err.msg);
      return EXIT_FAIL;
    }
  int rc = -1;
  const char *cmd = argv[i];
  if (!strcmp (cmd, "account"))
    rc = account_cmd (st, argc - i - 1, argv + i + 1);
  else if (!strcmp (cmd, "key"))
    rc = key_cmd (st, argc - i - 1, argv + i + 1);
  else if (!strcmp (cmd, "settlements"))
    rc = settlements_cmd (st, argc - i - 1, argv + i + 1);
  store_close (st);
  if (rc < 0)
    {
      usage (stderr);
      return EXIT_USAGE;
    }
  return rc;
}
