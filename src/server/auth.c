/* Authentication and charging around every request (docs/payments.md).
 *
 * srv_money_before runs before the handler: it identifies the caller (API key, or the
 * signer of an x402 payment), enforces ownership (another owner's sandbox is "not found"),
 * prices the request and charges it: an API key reserves the price from its account's
 * balance; an x402 payment is verified against this very request's offer and its
 * (payer, nonce) is recorded, with a reserved charge, before the operation runs.
 * srv_money_after runs after the handler: a 2xx answer makes the charge final (x402: and
 * settles through the facilitator, or queues); anything else refunds it / releases the
 * authorization. A create whose settlement fails is terminated and answered 402. */
#include "server.h"
#include "auth_internal.h"
#include "../store/store_money.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { PAY_NONE = 0, PAY_KEY, PAY_X402 };

struct srv_charge {
  char owner[STORE_OWNER_MAX];
  char account[STORE_ACCOUNT_MAX];
  int kind;                 /* how this request is paid: PAY_* */
  int route;
  const char *op;           /* "create", "exec", "status", "terminate" */
  char sandbox_id[SBX_ID_MAX];
  int64_t seq;              /* ledger seq of the reserved charge, 0: none */
  struct bill_payment pay;  /* PAY_X402 */
  struct bill_offer offer;
  char resource[1024];
  char request_hash[67];
};

static __thread struct srv_charge *current;

const char *
srv_req_owner (void)
{
  return current ? current->owner : "local";
}

int64_t
srv_req_charge_ref (void)
{
  return current ? current->seq : 0;
}

/* What each route needs when authentication is on. A route that is not listed here is
 * REFUSED (fail closed): a new endpoint must say whether it is free, needs to know the
 * caller, acts on the caller's own sandbox, or is priced, before it can be used with
 * auth on. */
enum policy {
  POL_REFUSE = 0,
  POL_FREE,     /* no identity: health, pricing */
  POL_IDENTIFY, /* the caller must say who it is: list, usage */
  POL_OWNED,    /* identity, and the sandbox named by the body's "sandbox_id" or the path's
                   /sandbox/{id}/ must be the caller's; free */
  POL_PRICED,   /* identity, ownership of the body's sandbox_id (not for create), price */
};

static int
route_policy (int route)
{
  switch (route)
    {
    case SRV_R_HEALTH:
    case SRV_R_PRICING:
    case SRV_R_METRICS: return POL_FREE; /* http.c serves metrics to loopback clients only */
    case SRV_R_LIST:
    case SRV_R_USAGE: return POL_IDENTIFY;
    case SRV_R_CREATE:
    case SRV_R_EXEC:
    case SRV_R_STATUS:
    case SRV_R_TERMINATE: return POL_PRICED;
    /* Inside the caller's own sandbox (paid for by its create): processes, files, diff. */
    case SRV_R_PROC_OUTPUT:
    case SRV_R_PROC_WAIT:
    case SRV_R_PROC_STDIN:
    case SRV_R_PROC_SIGNAL:
    case SRV_R_PROC_RESIZE:
    case SRV_R_PROC_LIST:
    case SRV_R_FILE_READ:
    case SRV_R_FILE_WRITE:
    case SRV_R_FILE_APPEND:
    case SRV_R_FILE_LIST:
    case SRV_R_FILE_STAT:
    case SRV_R_FILE_MKDIR:
    case SRV_R_FILE_REMOVE:
    case SRV_R_FILE_RENAME:
    case SRV_R_FILE_WATCH:
    case SRV_R_FILES_RAW:
    case SRV_R_ARCHIVE:
    case SRV_R_DIFF: return POL_OWNED;
    /* Images and volumes have no owner yet, and fork creates unpaid sandboxes: refused
     * with auth on until they are priced and owned. */
    default: return POL_REFUSE;
    }
}

static int
priced_route (int route)
{
  return route_policy (route) == POL_PRICED;
}

/* The sandbox a POL_OWNED request is about: the one its handler will act on, so the
 * {id} of a /sandbox/{id}/files|archive path (those handlers read the path, never a body),
 * else "sandbox_id" of the JSON object body. Never one or the other: a GET of a victim's
 * /sandbox/{id}/files carrying a body that names the caller's own sandbox would otherwise
 * pass the check and read the victim's file. "" when there is none. */
static void
owned_target (const struct srv_req *q, char id[SBX_ID_MAX])
{
  id[0] = '\0';
  if (q->route == SRV_R_FILES_RAW || q->route == SRV_R_ARCHIVE)
    {
      const char *p = strstr (q->url, "/sandbox/");
      if (!p)
        return;
      p += strlen ("/sandbox/");
      size_t n = strcspn (p, "/?");
      if (n < SBX_ID_MAX)
        {
          char seg[SBX_ID_MAX];
          memcpy (seg, p, n);
          seg[n] = '\0';
          if (sbx_id_valid (seg, "sb"))
            snprintf (id, SBX_ID_MAX, "%s", seg);
        }
      return;
    }
  json_t *body = q->len ? json_loadb (q->body, q->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                                      NULL)
                        : NULL;
  const char *v = json_string_value (json_object_get (body, "sandbox_id"));
  if (v && strlen (v) < SBX_ID_MAX && sbx_id_valid (v, "sb"))
    snprintf (id, SBX_ID_MAX, "%s", v);
  json_decref (body);
}

static const char *
route_op (int route)
{
  switch (route)
    {
    case SRV_R_CREATE: return "create";
    case SRV_R_EXEC: return "exec";
    case SRV_R_STATUS: return "status";
    case SRV_R_TERMINATE: return "terminate";
    default: return "";
    }
}

static void
reply_error_json (struct srv_reply *r, unsigned status, const char *code, const char *msg)
{
  srv_reply_http (r, status, code, msg);
}

static void
reply_401 (struct srv_reply *r, const char *msg)
{
  reply_error_json (r, 401, "unauthorized", msg);
  srv_reply_header (r, "WWW-Authenticate", strdup ("Bearer"));
}

/* 402 in the dual form: v2 PAYMENT-REQUIRED header, v1 JSON body. */
static void
reply_402_x402 (struct srv_reply *r, const struct bill_offer *o, const char *error)
{
  json_t *v2 = bill_x402_required_v2 (o, error);
  char *hdr = v2 ? bill_x402_header_encode (v2) : NULL;
  json_decref (v2);
  json_decref (r->body);
  r->status = 402;
  r->body = bill_x402_required_v1 (o, error);
  if (!r->body || !hdr)
    {
      free (hdr);
      srv_reply_error (r, SBX_E_INTERNAL, "cannot build the payment requirements");
      return;
    }
  srv_reply_header (r, "PAYMENT-REQUIRED", hdr);
}

/* Constant time: the comparison must not tell how many leading bytes matched. */
static int
ct_equal (const uint8_t *a, const uint8_t *b, size_t n)
{
  uint8_t d = 0;
  for (size_t i = 0; i < n; i++)
    d |= a[i] ^ b[i];
  return d == 0;
}

/* "Bearer sk-<64 hex>": the first 16 hex are the key's id, the whole token's keccak-256 is
 * what is stored. 0 and owner/account filled, or -1 with a message. */
static int
check_api_key (struct srv *s, const char *authz, struct srv_charge *ch, const char **why)
{
  while (*authz == ' ')
    authz++;
  if (strncasecmp (authz, "Bearer ", 7) != 0)
    {
      *why = "Authorization must be 'Bearer sk-...'";
      return -1;
    }
  const char *tok = authz + 7;
  while (*tok == ' ')
    tok++;
  size_t n = strcspn (tok, " \t");
  if (n != 67 || strncmp (tok, "sk-", 3) != 0 || strspn (tok + 3, "0123456789abcdef") < 64)
    {
      *why = "invalid API key";
      return -1;
    }
  char id[17];
  memcpy (id, tok + 3, 16);
  id[16] = '\0';
  struct store_key k;
  struct sbx_err err = { 0 };
  uint8_t h[32];
  bill_keccak256 (tok, 67, h);
  if (store_key_get (s->store, id, &k, &err) < 0 || !ct_equal (h, k.hash, 32))
    {
      *why = "invalid API key";
      return -1;
    }
  if (k.revoked_at_ms)
    {
      *why = "API key revoked";
      return -1;
    }
  ch->kind = PAY_KEY;
  snprintf (ch->account, sizeof ch->account, "%s", k.account_id);
  snprintf (ch->owner, sizeof ch->owner, "acct:%s", k.account_id);
  return 0;
}

/* The price of a priced request, from its (parsed) body: create depends on timeout and gpu
 * tier. Fills ch->sandbox_id for the others. -1 with err (the request is invalid). */
static int
price_request (struct srv *s, json_t *body, struct srv_charge *ch, uint64_t *price,
               struct sbx_err *err)
{
  if (ch->route == SRV_R_CREATE)
    {
      struct srv_create_req req;
      if (srv_parse_create (body, &s->cfg, &req, err) < 0)
        return -1;
      int64_t timeout = req.timeout_s;
      srv_create_req_free (&req);
      int tier = BILL_TIER_CPU;
      json_t *g = json_object_get (body, "gpu");
      if (g && !json_is_null (g))
        {
          if (!json_is_string (g) || bill_tier_parse (json_string_value (g), &tier) < 0)
            return sbx_err_set (err, SBX_E_INVALID, 0,
                                "gpu: must be one of T4, L4, A10G, A100, H100 (or absent)");
          if (tier != BILL_TIER_CPU)
            return sbx_err_set (err, SBX_E_INVALID, 0,
                                "gpu: this host has no GPUs; only CPU sandboxes can be created");
        }
      return bill_price_create (&s->cfg.pricing, tier, timeout, price, err);
    }
  int valid;
  if (srv_parse_sandbox_id (body, ch->sandbox_id, &valid, err) < 0)
    return -1;
  /* A plain exec is checked whole, as a create is: an invalid one is a 400, never
   * offered for payment first. */
  if (ch->route == SRV_R_EXEC && !srv_exec_is_inside (body))
    {
      struct srv_exec_req req;
      if (srv_parse_exec (body, &s->cfg, &req, err) < 0)
        return -1;
      srv_exec_req_free (&req);
    }
  int op = ch->route == SRV_R_EXEC ? BILL_OP_EXEC
           : ch->route == SRV_R_STATUS ? BILL_OP_STATUS : BILL_OP_TERMINATE;
  *price = bill_price_op (&s->cfg.pricing, op);
  return 0;
}

/* A Host header fit for the payment's resource URL: printable ASCII, no quote,
 * backslash, slash or space (anything else: the listen address is used instead, and a
 * byte that is not UTF-8 would not even fit in the JSON of the offer). */
static int
host_ok (const char *host)
{
  if (!host || !*host)
    return 0;
  for (const unsigned char *p = (const unsigned char *) host; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '/')
      return 0;
  return 1;
}

static void
build_offer (struct srv *s, const struct srv_req *q, struct srv_charge *ch, uint64_t amount)
{
  if (host_ok (q->host))
    snprintf (ch->resource, sizeof ch->resource, "http://%s%s", q->host, q->url);
  else
    snprintf (ch->resource, sizeof ch->resource, "http://%s:%u%s", s->cfg.listen_host,
              s->cfg.port, q->url);
  ch->offer = (struct bill_offer){ .network = s->cfg.network, .amount = amount,
                                   .resource = ch->resource,
                                   .description = ch->op[0] ? ch->op : "sbx",
                                   .mime_type = "application/json" };
  memcpy (ch->offer.pay_to, s->cfg.pay_to, 20);
}

/* Decode and verify the payment header against ch->offer. 0, or -1 with r = 402. */
static int
verify_payment (const struct srv_req *q, struct srv_charge *ch, struct srv_reply *r)
{
  struct bill_x402_result res = { 0 };
  int version = q->payment_v2 ? 2 : 1;
  const char *hdr = q->payment_v2 ? q->payment_v2 : q->payment_v1;
  if (bill_x402_decode (hdr, version, &ch->pay, &res) < 0)
    {
      reply_402_x402 (r, &ch->offer, bill_x402_reason_name (res.reason));
      return -1;
    }
  if (bill_x402_verify (&ch->pay, &ch->offer, (int64_t) time (NULL), &res) < 0)
    {
      LOG_INFO ("x402 payment refused: %s (%s)", bill_x402_reason_name (res.reason), res.message);
      reply_402_x402 (r, &ch->offer, bill_x402_reason_name (res.reason));
      bill_payment_clear (&ch->pay);
      return -1;
    }
  snprintf (ch->owner, sizeof ch->owner, "x402:%s", ch->pay.from);
  return 0;
}

static void
request_hash (const struct srv_req *q, char out[67])
{
  struct bill_keccak k;
  uint8_t h[32];
  bill_keccak_init (&k);
  bill_keccak_update (&k, q->method, strlen (q->method) + 1);
  bill_keccak_update (&k, q->url, strlen (q->url) + 1);
  if (q->len)
    bill_keccak_update (&k, q->body, q->len);
  bill_keccak_final (&k, h);
  bill_hex_encode (h, 32, out, 67);
}

static const char *
receipt_header (int version)
{
  return version == 1 ? "X-PAYMENT-RESPONSE" : "PAYMENT-RESPONSE";
}

/* A re-sent payment: the stored answer if it is the same request, else refused. */
static void
answer_existing (struct srv_charge *ch, struct store_payment *ex, struct srv_reply *r)
{
  if (!ex->done)
    reply_402_x402 (r, &ch->offer, "payment_in_progress");
  else if (strcmp (ex->request_hash, ch->request_hash) != 0 || !ex->status || !ex->response)
    reply_402_x402 (r, &ch->offer, "payment_already_used");
  else
    {
      json_decref (r->body);
      r->status = (unsigned) ex->status;
      r->body = ex->response ? json_loads (ex->response, 0, NULL) : json_object ();
      if (ex->status == 402)
        {
          /* the settlement of the first attempt failed: same answer, same requirements */
          json_t *v2 = bill_x402_required_v2 (&ch->offer, ex->settle_error);
          srv_reply_header (r, "PAYMENT-REQUIRED", v2 ? bill_x402_header_encode (v2) : NULL);
          json_decref (v2);
        }
      if (ex->receipt)
        srv_reply_header (r, receipt_header (ex->version), steal_ptr (&ex->receipt));
      LOG_INFO ("x402 payment %s:%s re-sent for the same request: stored answer %d",
                ex->payer, ex->nonce, ex->status);
    }
}

int
srv_money_before (struct srv *s, const struct srv_req *q, struct srv_charge **out,
                  struct srv_reply *r)
{
  struct srv_charge *ch = calloc (1, sizeof *ch);
  *out = ch;
  if (!ch)
    {
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
      return 0;
    }
  current = ch;
  snprintf (ch->owner, sizeof ch->owner, "local");
  ch->route = q->route;
  ch->op = route_op (q->route);
  int auth = s->cfg.auth;
  int policy = route_policy (q->route);
  if (!auth || policy == POL_FREE)
    return 1;
  if (policy == POL_REFUSE)
    {
      srv_reply_http (r, 403, "forbidden", "this endpoint is not available with authentication on");
      return 0;
    }

  const char *why = NULL;
  int identified = 0;
  if ((auth & SRV_AUTH_API_KEY) && q->authorization)
    {
      if (check_api_key (s, q->authorization, ch, &why) < 0)
        {
          reply_401 (r, why);
          return 0;
        }
      identified = 1;
    }

  uint64_t price = 0;
  json_t *body = NULL;
  if (priced_route (q->route))
    {
      json_error_t je;
      body = q->len ? json_loadb (q->body, q->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je)
                    : json_object ();
      if (!json_is_object (body))
        {
          /* the handler gives the precise 400; nothing runs for an unparsable body */
          json_decref (body);
          return 1;
        }
      struct sbx_err err = { 0 };
      int rc = price_request (s, body, ch, &price, &err);
      json_decref (body);
      if (rc < 0)
        {
          srv_reply_err (r, &err);
          return 0;
        }
    }
  build_offer (s, q, ch, price);
  if (policy == POL_OWNED)
    {
      owned_target (q, ch->sandbox_id);
      if (!ch->sandbox_id[0])
        {
          srv_reply_http (r, 403, "forbidden",
                          "with authentication on, this endpoint needs the caller's sandbox");
          return 0;
        }
    }

  int paid_x402 = 0;
  if (!identified)
    {
      int has_payment = q->payment_v2 || q->payment_v1;
      if (!(auth & SRV_AUTH_X402))
        {
          reply_401 (r, "an API key is required: Authorization: Bearer sk-...");
          return 0;
        }
      if (priced_route (q->route) && price > 0)
        {
          if (!has_payment)
            {
              reply_402_x402 (r, &ch->offer, NULL);
              return 0;
            }
          if (verify_payment (q, ch, r) < 0)
            return 0;
          paid_x402 = 1;
        }
      else
        {
          /* No price to pay, but the caller must still say who it is. A priced call whose
           * configured price is 0 offers an x402 payment of 0: x402 clients react only to
           * 402, and the authorization of value 0 they sign for it is the proof below
           * (a 401 left them no way to call it). list and usage stay 401. */
          if (!has_payment && priced_route (q->route))
            {
              reply_402_x402 (r, &ch->offer, NULL);
              return 0;
            }
          if (!has_payment)
            {
              reply_401 (r, (auth & SRV_AUTH_API_KEY)
                                ? "authentication required: an API key, or a signed x402 "
                                  "authorization (PAYMENT-SIGNATURE / X-PAYMENT) proving the payer"
                                : "authentication required: a signed x402 authorization of "
                                  "value 0 (PAYMENT-SIGNATURE / X-PAYMENT) proving the payer");
              return 0;
            }
          /* The proof is an authorization of value 0, checked like a payment of 0 (price
           * is 0 here), never recorded. A payment is no proof: once settled, its
           * authorization and signature are public (the calldata of
           * transferWithAuthorization, and the facilitator saw it), and anybody could
           * rebuild the header and act as the payer until its validBefore. */
          if (verify_payment (q, ch, r) < 0)
            return 0;
          bill_payment_clear (&ch->pay);
        }
    }

  /* Ownership: somebody else's sandbox does not exist for this caller. */
  if (ch->sandbox_id[0])
    {
      char owner[STORE_OWNER_MAX];
      struct sbx_err err = { 0 };
      int orc = store_sandbox_owner (s->store, ch->sandbox_id, owner, &err);
      if (orc < 0 && err.code != SBX_E_NOT_FOUND)
        {
          /* Fail closed: a store that cannot say whose the sandbox is must not let the
           * request through to a handler that does not ask. */
          LOG_ERROR ("owner of %s: %s", ch->sandbox_id, err.msg);
          srv_reply_http (r, 503, "unavailable", "cannot check the sandbox's owner; retry later");
          r->retry_after = 1;
          if (paid_x402)
            bill_payment_clear (&ch->pay);
          return 0;
        }
      if (orc == 0 && strcmp (owner, ch->owner) != 0)
        {
          char msg[128];
          snprintf (msg, sizeof msg, "sandbox '%s' not found", ch->sandbox_id);
          srv_reply_error (r, SBX_E_NOT_FOUND, msg);
          if (paid_x402)
            bill_payment_clear (&ch->pay);
          return 0;
        }
    }

  if (!priced_route (q->route) || price == 0)
    return 1;
  struct sbx_err err = { 0 };
  int64_t now = sbx_now_ms ();
  if (ch->kind == PAY_KEY)
    {
      char ref[64];
      snprintf (ref, sizeof ref, "key:%.16s", strstr (q->authorization, "sk-") + 3);
      int rc = store_charge_reserve_account (s->store, ch->account, ch->owner, ch->op,
                                             (int64_t) price, ref, now, &ch->seq, &err);
      if (rc < 0)
        {
          srv_reply_err (r, &err);
          return 0;
        }
      if (rc == 0)
        {
          struct store_account a = { 0 };
          store_account_get (s->store, ch->account, &a, NULL);
          char usd[32], msg[160];
          bill_amount_usd (price, usd, sizeof usd);
          snprintf (msg, sizeof msg, "balance %lld is less than the price %llu ($%s)",
                    (long long) a.balance, (unsigned long long) price, usd);
          reply_error_json (r, 402, "insufficient_funds", msg);
          json_object_set_new (json_object_get (r->body, "error"), "price",
                               json_pack ("{s:I,s:s}", "amount", (json_int_t) price, "usd", usd));
          json_object_set_new (json_object_get (r->body, "error"), "balance",
                               json_integer (a.balance));
          return 0;
        }
      return 1;
    }
  /* x402: record (payer, nonce) before anything runs. */
  ch->kind = PAY_X402;
  request_hash (q, ch->request_hash);
  json_t *fb = bill_x402_facilitator_body (&ch->pay, &ch->offer);
  cleanup_free char *fbs = fb ? json_dumps (fb, JSON_COMPACT) : NULL;
  struct store_payment p = { .version = ch->pay.version, .amount = (int64_t) price,
                             .valid_before = ch->pay.valid_before_s > INT64_MAX
                                                 ? INT64_MAX
                                                 : (int64_t) ch->pay.valid_before_s,
                             .facilitator_body = fbs };
  snprintf (p.payer, sizeof p.payer, "%s", ch->pay.from);
  snprintf (p.nonce, sizeof p.nonce, "%s", ch->pay.nonce);
  snprintf (p.request_hash, sizeof p.request_hash, "%s", ch->request_hash);
  snprintf (p.op, sizeof p.op, "%s", ch->op);
  struct store_payment ex = { 0 };
  int rc = store_payment_begin (s->store, &p, ch->owner, now, &ch->seq, &ex, &err);
  if (rc < 0)
    {
      json_decref (fb);
      ch->kind = PAY_NONE;
      srv_reply_err (r, &err);
      return 0;
    }
  if (rc == 0)
    {
      json_decref (fb);
      ch->kind = PAY_NONE;
      answer_existing (ch, &ex, r);
      store_payment_clear (&ex);
      return 0;
    }
  /* Recorded (so a concurrent copy is refused); now ask the facilitator, when there is
   * one, what only the chain knows (balance, nonce used elsewhere) before anything runs. */
  char reason[128];
  int bad = fb && s->cfg.facilitator[0]
            && srv_facilitator_verify (s->cfg.facilitator, fb, reason, sizeof reason) < 0;
  json_decref (fb);
  if (bad)
    {
      LOG_INFO ("x402 payment by %s refused by the facilitator: %s", ch->pay.from, reason);
      if (store_payment_release (s->store, ch->pay.from, ch->pay.nonce, sbx_now_ms (), &err) < 0)
        LOG_ERROR ("release x402 payment %s:%s: %s", ch->pay.from, ch->pay.nonce, err.msg);
      ch->kind = PAY_NONE;
      reply_402_x402 (r, &ch->offer, reason);
      return 0;
    }
  return 1;
}

/* The sandbox of a create's answer. */
static void
created_id (const struct srv_reply *r, struct srv_charge *ch)
{
  const char *id = json_string_value (json_object_get (r->body, "sandbox_id"));
  if (id)
    snprintf (ch->sandbox_id, sizeof ch->sandbox_id, "%s", id);
}

static void
after_x402 (struct srv *s, struct srv_charge *ch, struct srv_reply *r, int ok)
{
  struct sbx_err err = { 0 };
  const char *payer = ch->pay.from, *nonce = ch->pay.nonce;
  if (!ok)
    {
      if (store_payment_release (s->store, payer, nonce, sbx_now_ms (), &err) < 0)
        LOG_ERROR ("release x402 payment %s:%s: %s", payer, nonce, err.msg);
      return;
    }
  cleanup_free char *resp = r->body ? json_dumps (r->body, JSON_COMPACT) : NULL;
  int settle_now = s->cfg.facilitator[0] != '\0';
  char *receipt = NULL;
  if (!settle_now)
    {
      /* Queued for later submission (sbx admin settlements): no transaction yet. */
      json_t *sr = bill_x402_settle_response (&ch->pay, &ch->offer, 1, "", NULL);
      receipt = sr ? bill_x402_header_encode (sr) : NULL;
      json_decref (sr);
    }
  if (store_payment_done (s->store, payer, nonce, ch->sandbox_id, (int) r->status, resp,
                          receipt, settle_now ? "settling" : "queued", sbx_now_ms (), &err)
      < 0)
    {
      /* The charge stays reserved; the next start decides it (docs/payments.md). */
      LOG_ERROR ("record x402 payment %s:%s: %s", payer, nonce, err.msg);
      free (receipt);
      return;
    }
  if (!settle_now)
    {
      srv_reply_header (r, receipt_header (ch->pay.version), receipt);
      return;
    }
  json_t *fb = bill_x402_facilitator_body (&ch->pay, &ch->offer);
  char tx[128], reason[128] = "";
  int settled = fb && srv_settle (s->cfg.facilitator, fb, tx, sizeof tx, reason, sizeof reason)
                          == 0;
  json_decref (fb);
  json_t *sr = bill_x402_settle_response (&ch->pay, &ch->offer, settled, settled ? tx : "",
                                          settled ? NULL : reason);
  receipt = sr ? bill_x402_header_encode (sr) : NULL;
  json_decref (sr);
  if (settled)
    {
      if (store_payment_settled (s->store, payer, nonce, 1, tx, NULL, 0, NULL, receipt,
                                 sbx_now_ms (), &err) < 0)
        LOG_ERROR ("record settlement %s:%s: %s", payer, nonce, err.msg);
      srv_reply_header (r, receipt_header (ch->pay.version), receipt);
      LOG_INFO ("x402 %s by %s settled: %s", ch->op, payer, tx);
      return;
    }
  /* Not paid: a create is rolled back; every operation is answered 402 (the official
   * server does the same and drops the handler's output). */
  LOG_WARN ("x402 %s by %s: settlement failed (%s)", ch->op, payer, reason);
  if (ch->route == SRV_R_CREATE && ch->sandbox_id[0])
    {
      struct srv_sandbox *sb = srv_sandbox_get (s, ch->sandbox_id);
      if (sb)
        srv_sandbox_end (sb, SBX_E_TERMINATED, "payment settlement failed");
      srv_sandbox_put (sb);
    }
  reply_402_x402 (r, &ch->offer, reason);
  srv_reply_header (r, receipt_header (ch->pay.version), receipt ? strdup (receipt) : NULL);
  cleanup_free char *body402 = r->body ? json_dumps (r->body, JSON_COMPACT) : NULL;
  if (store_payment_settled (s->store, payer, nonce, 0, NULL, reason, 402, body402, receipt,
                             sbx_now_ms (), &err) < 0)
    LOG_ERROR ("record failed settlement %s:%s: %s", payer, nonce, err.msg);
  free (receipt);
}

void
srv_money_after (struct srv *s, struct srv_charge *ch, struct srv_reply *r)
{
  current = NULL;
  if (!ch)
    return;
  int ok = r->status >= 200 && r->status < 300;
  struct sbx_err err = { 0 };
  if (ok && ch->route == SRV_R_CREATE)
    created_id (r, ch);
  if (ch->kind == PAY_KEY && ch->seq > 0)
    {
      int rc = ok ? store_charge_finish (s->store, ch->seq, ch->sandbox_id, sbx_now_ms (), &err)
                  : store_charge_refund (s->store, ch->seq, sbx_now_ms (), &err);
      if (rc < 0)
        LOG_ERROR ("ledger: charge %lld: %s", (long long) ch->seq, err.msg);
    }
  else if (ch->kind == PAY_X402)
    after_x402 (s, ch, r, ok);
  bill_payment_clear (&ch->pay);
  free (ch);
}

int
srv_money_recover (struct srv *s, struct sbx_err *err)
{
  int charged = 0, refunded = 0;
  if (store_charge_recover (s->store, sbx_now_ms (), &charged, &refunded, err) < 0)
    return -1;
  if (charged || refunded)
    LOG_INFO ("ledger after restart: %d interrupted charge(s) kept (their sandbox exists), "
              "%d refunded", charged, refunded);
  return 0;
}
