/* HTTP glue (libmicrohttpd, one thread per connection): routing, body limits, content
 * type, JSON parsing, and turning handler replies into responses. Handlers never see
 * MHD. */
#include "server.h"
#include "../store/store_money.h" /* STORE_OWNER_MAX */

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* One open HTTP connection, for idle eviction (see on_connection). */
struct conn_slot {
  struct conn_slot *prev, *next;
  int fd;
  int busy;          /* a request is being answered (or its body streams into a sandbox) */
  int evicted;       /* shut down by us; MHD closes it shortly */
  int64_t idle_ns;   /* since when it is idle (accepted, or its last request completed) */
};

/* Requests of one owner being answered (auth on, max_requests_per_owner). */
struct owner_count {
  struct owner_count *next;
  int n;
  char owner[STORE_OWNER_MAX];
};
#define OWNER_BUCKETS 64

struct srv_http {
  struct MHD_Daemon *d;
  struct srv *srv;
  pthread_mutex_t lock;
  pthread_cond_t idle;
  int active; /* requests begun and not yet completed (response sent or connection gone) */
  struct conn_slot *conns; /* every open connection, under lock */
  int n_conns;             /* of them, not evicted */
  struct owner_count *owners[OWNER_BUCKETS]; /* under lock; an entry lives while n > 0 */
};

/* MHD refuses connections past its own limit at once, and an idle one costs a client
 * nothing to hold open: with thread-per-connection sbxd, connection_limit idle or
 * half-sent connections locked every other client out until they timed out (120 s), and
 * again as soon as they were reopened. So connection_limit is kept by evicting: a
 * connection past it shuts down the one idle the longest (no request being answered:
 * between keep-alive requests, still sending its headers or its JSON body, as a
 * slowloris client does), which a client must expect of any keep-alive connection
 * anyway. Requests being answered (execs, streams, uploads into a sandbox) are never
 * cut. MHD's own limit is higher (SRV_CONN_HARD_LIMIT), for connections whose eviction is
 * still under way and for when every connection is busy. */

struct req_ctx {
  enum srv_route route;
  char *body;
  size_t len, cap;
  int too_large;
  int done;        /* a response was queued early; ignore the rest */
  int cors;        /* auth on: browsers may call us (CORS headers on every answer) */
  int64_t start_ns;
  struct srv_upload *upload; /* PUT of a raw body, streamed to the sandbox (stream.c) */
  const char *url;           /* MHD's (valid for the whole request), or url_own */
  char owner[STORE_OWNER_MAX]; /* counted in h->owners until completed ("": not counted) */
  char *url_own;             /* MHD's with runs of '/' made one, when it had any */
  const char *method;        /* likewise */
  struct srv_http *h;
};

static struct conn_slot *
conn_slot_of (struct MHD_Connection *c)
{
  const union MHD_ConnectionInfo *ci
      = MHD_get_connection_info (c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* A request begins (busy) or completed (idle again) on connection c. */
static void
conn_set_busy (struct srv_http *h, struct MHD_Connection *c, int busy)
{
  struct conn_slot *slot = conn_slot_of (c);
  if (!slot)
    return;
  pthread_mutex_lock (&h->lock);
  slot->busy = busy;
  slot->idle_ns = sbx_mono_ns ();
  pthread_mutex_unlock (&h->lock);
}

/* MHD's accepting thread (STARTED) and the connection's thread (CLOSED). The slot leaves
 * the list before MHD closes the socket, so a shutdown under the lock never reaches an
 * fd number that was reused. */
static void
on_connection (void *cls, struct MHD_Connection *c, void **socket_context,
               enum MHD_ConnectionNotificationCode code)
{
  struct srv_http *h = cls;
  struct conn_slot *slot = *socket_context;
  if (code == MHD_CONNECTION_NOTIFY_CLOSED)
    {
      if (!slot)
        return;
      pthread_mutex_lock (&h->lock);
      if (slot->prev)
        slot->prev->next = slot->next;
      else
        h->conns = slot->next;
      if (slot->next)
        slot->next->prev = slot->prev;
      if (!slot->evicted)
        h->n_conns--;
      pthread_mutex_unlock (&h->lock);
      free (slot);
      *socket_context = NULL;
      return;
    }
  const union MHD_ConnectionInfo *ci
      = MHD_get_connection_info (c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci || !(slot = calloc (1, sizeof *slot)))
    return; /* not tracked: never evicted */
  slot->fd = ci->connect_fd;
  slot->idle_ns = sbx_mono_ns ();
  *socket_context = slot;
  pthread_mutex_lock (&h->lock);
  slot->next = h->conns;
  if (h->conns)
    h->conns->prev = slot;
  h->conns = slot;
  struct conn_slot *victim = NULL;
  if (++h->n_conns > h->srv->cfg.connection_limit)
    for (struct conn_slot *o = slot->next; o; o = o->next)
      if (!o->busy && !o->evicted && (!victim || o->idle_ns < victim->idle_ns))
        victim = o;
  if (victim)
    {
      /* Its thread sees the end of the stream and closes it. */
      victim->evicted = 1;
      h->n_conns--;
      shutdown (victim->fd, SHUT_RDWR);
    }
  pthread_mutex_unlock (&h->lock);
  if (victim)
    LOG_DEBUG ("http: %d connections: closed the one idle the longest",
               h->srv->cfg.connection_limit);
}

/* With authentication on, browsers may call sbxd: the payment headers must be allowed in
 * and readable out (../shared/x402/x402.md section 8). */
static void
add_cors (struct MHD_Response *resp)
{
  MHD_add_response_header (resp, "Access-Control-Allow-Origin", "*");
  MHD_add_response_header (resp, "Access-Control-Expose-Headers",
                           "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE");
}

/* An answer's body while libmicrohttpd holds it: counted in srv.unread_bytes until it is
 * sent whole or its connection ends, so a plain exec can be refused before it runs while
 * clients leave too much unread (h_exec.c). */
struct unread {
  struct srv *s;
  char *txt;
  int64_t len;
};

static void
unread_free (void *cls)
{
  struct unread *u = cls;
  __atomic_sub_fetch (&u->s->unread_bytes, u->len, __ATOMIC_RELAXED);
  free (u->txt);
  free (u);
}

static enum MHD_Result
send_reply (struct MHD_Connection *c, struct srv_reply *r, const char *method, const char *url,
            struct req_ctx *ctx)
{
  conn_set_busy (ctx->h, c, 1);
  srv_metrics_reply (ctx->route, r->status, r->body);
  if (r->stream && r->status == 200 && !r->body)
    return srv_stream_queue (c, r, method, url, ctx->start_ns, ctx->cors);
  srv_stream_free (r->stream);
  r->stream = NULL;
  char *txt = r->text   ? steal_ptr (&r->text)
              : r->body ? json_dumps (r->body, SRV_JSON_OUT)
                        : NULL;
  size_t len = txt ? strlen (txt) : 0;
  if (txt && !r->content_type)
    {
      char *t2 = realloc (txt, len + 2);
      if (t2)
        {
          txt = t2;
          txt[len++] = '\n';
          txt[len] = '\0';
        }
    }
  struct unread *u = txt ? malloc (sizeof *u) : NULL;
  struct MHD_Response *resp = NULL;
  if (u)
    {
      *u = (struct unread) { .s = ctx->h->srv, .txt = txt, .len = (int64_t) len };
      __atomic_add_fetch (&u->s->unread_bytes, u->len, __ATOMIC_RELAXED);
      resp = MHD_create_response_from_buffer_with_free_callback_cls (len, txt, unread_free, u);
      if (!resp)
        {
          __atomic_sub_fetch (&u->s->unread_bytes, u->len, __ATOMIC_RELAXED);
          free (u);
        }
    }
  else if (!txt)
    resp = MHD_create_response_from_buffer (0, (void *) "", MHD_RESPMEM_PERSISTENT);
  if (!resp)
    {
      free (txt);
      json_decref (r->body);
      for (int i = 0; i < r->n_hdr; i++)
        free (r->hdr[i].value);
      return MHD_NO;
    }
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                           r->content_type ? r->content_type : "application/json");
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (r->allow)
    MHD_add_response_header (resp, MHD_HTTP_HEADER_ALLOW, r->allow);
  if (r->retry_after > 0)
    {
      char ra[16];
      snprintf (ra, sizeof ra, "%d", r->retry_after);
      MHD_add_response_header (resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
  for (int i = 0; i < r->n_hdr; i++)
    {
      MHD_add_response_header (resp, r->hdr[i].name, r->hdr[i].value);
      free (r->hdr[i].value);
    }
  r->n_hdr = 0;
  if (ctx->cors)
    add_cors (resp);
  enum MHD_Result ret = MHD_queue_response (c, r->status, resp);
  MHD_destroy_response (resp);
  LOG_INFO ("%s %s -> %u (%lld ms)", method, url, r->status,
            (long long) ((sbx_mono_ns () - ctx->start_ns) / 1000000));
  json_decref (r->body);
  r->body = NULL;
  ctx->done = 1;
  return ret;
}

static struct owner_count **
owner_slot (struct srv_http *h, const char *owner)
{
  struct owner_count **e = &h->owners[sbx_hash_str (owner) % OWNER_BUCKETS];
  while (*e && strcmp ((*e)->owner, owner))
    e = &(*e)->next;
  return e;
}

/* With auth on and max_requests_per_owner set, an owner has at most that many requests
 * being answered at once (streams, uploads, unread answers included: a request counts
 * until its answer has gone), so one paying caller cannot hold every connection slot
 * or the unread-answer budget. 1: go on (counted in ctx->owner); 0: r is a 429. */
static int
owner_admit (struct srv_http *h, struct req_ctx *ctx, struct srv_reply *r)
{
  struct srv *s = h->srv;
  const char *owner = srv_req_owner ();
  if (!s->cfg.auth || !s->cfg.max_requests_per_owner || ctx->owner[0] || !owner[0]
      || !strcmp (owner, "local"))
    return 1;
  int ok = 1;
  pthread_mutex_lock (&h->lock);
  struct owner_count **e = owner_slot (h, owner);
  if (!*e && (*e = calloc (1, sizeof **e)))
    snprintf ((*e)->owner, sizeof (*e)->owner, "%s", owner);
  if (!*e || (*e)->n >= s->cfg.max_requests_per_owner)
    ok = 0;
  else
    {
      /* A new entry is never refused (the bound is at least 1): none stays empty. */
      (*e)->n++;
      snprintf (ctx->owner, sizeof ctx->owner, "%s", owner);
    }
  pthread_mutex_unlock (&h->lock);
  if (!ok)
    {
      char msg[160];
      snprintf (msg, sizeof msg,
                "%d requests of yours are being answered (max_requests_per_owner): read "
                "their answers, or retry later", s->cfg.max_requests_per_owner);
      srv_reply_http (r, 429, "too_many_requests", msg);
      r->retry_after = 1;
    }
  return ok;
}

static void
owner_leave (struct srv_http *h, struct req_ctx *ctx)
{
  if (!ctx->owner[0])
    return;
  pthread_mutex_lock (&h->lock);
  struct owner_count **e = owner_slot (h, ctx->owner);
  if (*e && --(*e)->n == 0)
    {
      struct owner_count *gone = *e;
      *e = gone->next;
      free (gone);
    }
  pthread_mutex_unlock (&h->lock);
  ctx->owner[0] = '\0';
}

static enum MHD_Result
send_error (struct MHD_Connection *c, unsigned status, const char *code, const char *msg,
            const char *method, const char *url, struct req_ctx *ctx)
{
  struct srv_reply r = { 0 };
  srv_reply_http (&r, status, code, msg);
  return send_reply (c, &r, method, url, ctx);
}

/* MHD decodes "%00" in a query argument into a NUL byte and hands the handlers a C
 * string: "?path=/tmp/a%00b" would reach them as "/tmp/a" and write there. Such a
 * request is refused as a whole, as a NUL in a JSON path is. */
static enum MHD_Result
find_nul_arg (void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
              const char *value, size_t value_size)
{
  int *found = cls;
  if (memchr (key, '\0', key_size) || (value && memchr (value, '\0', value_size)))
    {
      *found = 1;
      return MHD_NO;
    }
  return MHD_YES;
}

static int
query_has_nul (struct MHD_Connection *c)
{
  int found = 0;
  MHD_get_connection_values_n (c, MHD_GET_ARGUMENT_KIND, find_nul_arg, &found);
  return found;
}

/* application/json (any parameters), no Content-Type at all, and
 * application/x-www-form-urlencoded (what `curl -d` sends unless told otherwise) are read
 * as JSON; anything else is 415. */
static int
content_type_ok (const char *ct)
{
  if (!ct)
    return 1;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  size_t n = strcspn (ct, "; \t");
  return (n == 16 && !strncasecmp (ct, "application/json", n))
         || (n == 33 && !strncasecmp (ct, "application/x-www-form-urlencoded", n));
}

static int
srv_addr_is_loopback (const struct sockaddr *a)
{
  if (a->sa_family == AF_INET)
    return (ntohl (((const struct sockaddr_in *) a)->sin_addr.s_addr) >> 24) == 127;
  if (a->sa_family == AF_INET6)
    {
      const struct in6_addr *x = &((const struct sockaddr_in6 *) a)->sin6_addr;
      return IN6_IS_ADDR_LOOPBACK (x)
             || (IN6_IS_ADDR_V4MAPPED (x) && x->s6_addr[12] == 127);
    }
  return 0;
}

static void
dispatch (struct srv *s, struct req_ctx *ctx, struct MHD_Connection *c, struct srv_reply *r)
{
  if (ctx->route == SRV_R_HEALTH)
    {
      srv_h_health (s, r);
      return;
    }
  if (ctx->route == SRV_R_LIST)
    {
      srv_h_list (s, MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "status"),
                  MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "limit"),
                  MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "after"), r);
      return;
    }
  if (ctx->route == SRV_R_IMAGE_LIST || ctx->route == SRV_R_IMAGE_GET
      || ctx->route == SRV_R_VOLUME_LIST || ctx->route == SRV_R_VOLUME_ITEM)
    {
      int del = !strcmp (ctx->method, "DELETE");
      if (ctx->route == SRV_R_IMAGE_LIST)
        srv_h_image_list (s, r);
      else if (ctx->route == SRV_R_IMAGE_GET)
        (del ? srv_h_image_delete_id : srv_h_image_get) (s, srv_route_item (), r);
      else if (ctx->route == SRV_R_VOLUME_ITEM)
        (del ? srv_h_volume_delete_name : srv_h_volume_get) (s, srv_route_item (), r);
      else
        srv_h_volume_list (s, r);
      return;
    }
  if (ctx->route == SRV_R_METRICS)
    {
      /* With authentication on, metrics are for the host's operator: loopback clients only
       * (they say how busy the host is, not whose sandboxes run). */
      const union MHD_ConnectionInfo *ci
          = MHD_get_connection_info (c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
      if (s->cfg.auth && !(ci && srv_addr_is_loopback (ci->client_addr)))
        srv_reply_http (r, 403, "forbidden", "metrics are served to loopback clients only "
                                             "while authentication is on");
      else
        srv_h_metrics (s, r);
      return;
    }
  if (ctx->route == SRV_R_PRICING)
    {
      srv_h_pricing (s, r);
      return;
    }
  if (ctx->route == SRV_R_USAGE)
    {
      srv_h_usage (s, MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "limit"), r);
      return;
    }
  r->accept = MHD_lookup_connection_value (c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
  if (ctx->route == SRV_R_FILES_RAW || ctx->route == SRV_R_ARCHIVE)
    {
      srv_h_raw_get (s, ctx->route, ctx->url,
                     MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "path"), r);
      return;
    }
  json_t *body;
  if (ctx->len == 0)
    body = json_object (); /* `curl -X POST .../create` with no body: all defaults */
  else
    {
      json_error_t je;
      /* NUL is let through the parser and refused per field (see validate.c). */
      body = json_loadb (ctx->body, ctx->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
      if (!body)
        {
          char msg[256];
          snprintf (msg, sizeof msg, "body: invalid JSON at byte %d: %s", je.position, je.text);
          srv_reply_error (r, SBX_E_INVALID, msg);
          return;
        }
    }
  if (!json_is_object (body))
    srv_reply_error (r, SBX_E_INVALID, "body: must be a JSON object");
  else if (ctx->route == SRV_R_CREATE)
    srv_h_create (s, body, r);
  else if (ctx->route == SRV_R_EXEC)
    srv_h_exec (s, body, r);
  else if (ctx->route == SRV_R_STATUS)
    srv_h_status (s, body, r);
  else if (ctx->route == SRV_R_TERMINATE)
    srv_h_terminate (s, body, r);
  else if (ctx->route == SRV_R_IMAGE_BUILD)
    srv_h_image_build (s, body, r);
  else if (ctx->route == SRV_R_IMAGE_DELETE)
    srv_h_image_delete (s, body, r);
  else if (ctx->route == SRV_R_IMAGE_GC)
    srv_h_image_gc (s, r);
  else if (ctx->route == SRV_R_SNAPSHOT)
    srv_h_snapshot (s, body, r);
  else if (ctx->route == SRV_R_FORK)
    srv_h_fork (s, body, r);
  else if (ctx->route == SRV_R_DIFF)
    srv_h_diff (s, body, r);
  else if (ctx->route == SRV_R_VOLUME_CREATE)
    srv_h_volume_create (s, body, r);
  else if (ctx->route == SRV_R_VOLUME_DELETE)
    srv_h_volume_delete (s, body, r);
  else if (ctx->route >= SRV_R_INSIDE_FIRST && ctx->route <= SRV_R_INSIDE_LAST)
    srv_h_inside (s, ctx->route, body, r);
  json_decref (body);
}

/* What the money hooks see of a request. */
static void
money_req (struct MHD_Connection *c, const struct req_ctx *ctx, const char *method,
           const char *url, struct srv_req *q)
{
  *q = (struct srv_req){
    .method = method, .url = url, .body = ctx->body, .len = ctx->len, .route = ctx->route,
    .host = MHD_lookup_connection_value (c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
    .authorization = MHD_lookup_connection_value (c, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_AUTHORIZATION),
    .payment_v2 = MHD_lookup_connection_value (c, MHD_HEADER_KIND, "PAYMENT-SIGNATURE"),
    .payment_v1 = MHD_lookup_connection_value (c, MHD_HEADER_KIND, "X-PAYMENT"),
  };
}

/* url with every run of '/' made one, or NULL when it has none (or out of memory). A
 * client that joins a base URL ending in '/' (as the reference service writes its own:
 * ".../api/v1/modal/") with "/sandbox/create" asks for ".../modal//sandbox/create". */
static char *
merge_slashes (const char *url)
{
  if (!strstr (url, "//"))
    return NULL;
  char *o = strdup (url);
  if (!o)
    return NULL;
  size_t j = 0;
  for (size_t i = 0; url[i]; i++)
    if (url[i] != '/' || j == 0 || o[j - 1] != '/')
      o[j++] = url[i];
  o[j] = '\0';
  return o;
}

static enum MHD_Result
on_request (void *cls, struct MHD_Connection *c, const char *url, const char *method,
            const char *version, const char *upload_data, size_t *upload_data_size,
            void **con_cls)
{
  struct srv_http *h = cls;
  struct srv *s = h->srv;
  struct req_ctx *ctx = *con_cls;
  if (ctx)
    url = ctx->url; /* slashes merged (the first call did it) */
  if (!ctx)
    {
      ctx = calloc (1, sizeof *ctx);
      if (!ctx)
        return MHD_NO;
      ctx->start_ns = sbx_mono_ns ();
      *con_cls = ctx;
      ctx->h = h;
      pthread_mutex_lock (&h->lock);
      h->active++;
      pthread_mutex_unlock (&h->lock);
      const char *allow;
      ctx->url_own = merge_slashes (url);
      ctx->url = url = ctx->url_own ? ctx->url_own : url;
      ctx->route = srv_route_match (url, &allow);
      ctx->method = method;
      ctx->cors = s->cfg.auth != 0;
      if (ctx->route == SRV_R_NONE)
        return send_error (c, 404, "not_found", "no such endpoint", method, url, ctx);
      if (ctx->cors && !strcmp (method, "OPTIONS"))
        {
          /* CORS preflight (auth on): the paid retry of @x402/fetch carries non-simple
           * headers, so browsers ask first. */
          struct srv_reply pre = { .status = 204 };
          char methods[64]; /* this route's, e.g. PUT for raw file uploads */
          snprintf (methods, sizeof methods, "%s, OPTIONS", allow);
          srv_reply_header (&pre, "Access-Control-Allow-Methods", strdup (methods));
          srv_reply_header (&pre, "Access-Control-Allow-Headers",
                            strdup ("Content-Type, Authorization, PAYMENT-SIGNATURE, X-PAYMENT, "
                                    "Access-Control-Expose-Headers"));
          srv_reply_header (&pre, "Access-Control-Max-Age", strdup ("600"));
          return send_reply (c, &pre, method, url, ctx);
        }
      if (!srv_method_allowed (method, allow))
        {
          struct srv_reply r = { .allow = allow };
          char msg[128];
          snprintf (msg, sizeof msg, "method %s not allowed here; use %s", method, allow);
          srv_reply_http (&r, 405, "method_not_allowed", msg);
          return send_reply (c, &r, method, url, ctx);
        }
      /* Browsers send Origin on cross-site requests; with authentication off a web page
       * must not be able to drive the API on the user's loopback. */
      if (!ctx->cors && MHD_lookup_connection_value (c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN))
        return send_error (c, 403, "forbidden", "cross-origin requests are not allowed", method,
                           url, ctx);
      if (query_has_nul (c))
        return send_error (c, 400, "invalid_request",
                           "query arguments must not contain NUL bytes (%00)", method, url, ctx);
      if (!strcmp (method, "POST"))
        {
          const char *cl
              = MHD_lookup_connection_value (c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
          if (cl && strtoull (cl, NULL, 10) > SRV_BODY_LIMIT)
            return send_error (c, 413, "payload_too_large",
                               "request body larger than 10 MB (10485760 bytes)", method, url,
                               ctx);
          if (!content_type_ok (MHD_lookup_connection_value (c, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_CONTENT_TYPE)))
            return send_error (c, 415, "unsupported_media_type",
                               "Content-Type must be application/json", method, url, ctx);
        }
      if (!strcmp (method, "PUT"))
        {
          /* A raw body (file, tar) of any size goes to the sandbox as it arrives. */
          struct srv_reply ur = { 0 };
          if (s->cfg.auth)
            {
              /* Auth on: who may write into this sandbox is decided before its first
               * byte goes in (checked again, cheaply, when the upload ends). */
              struct srv_req q;
              struct srv_charge *ch = NULL;
              money_req (c, ctx, method, url, &q);
              int go = srv_money_before (s, &q, &ch, &ur) && owner_admit (h, ctx, &ur);
              srv_money_after (s, ch, &ur);
              if (!go)
                return send_reply (c, &ur, method, url, ctx);
            }
          if (srv_upload_begin (s, ctx->route, url,
                                MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "path"),
                                MHD_lookup_connection_value (c, MHD_GET_ARGUMENT_KIND, "mode"),
                                &ctx->upload, &ur) < 0)
            return send_reply (c, &ur, method, url, ctx);
          conn_set_busy (h, c, 1); /* a sandbox is taking the body */
        }
      return MHD_YES;
    }
  if (*upload_data_size)
    {
      size_t n = *upload_data_size;
      *upload_data_size = 0;
      if (ctx->done)
        return MHD_YES;
      if (ctx->upload)
        {
          srv_upload_chunk (ctx->upload, upload_data, n);
          return MHD_YES;
        }
      if (ctx->too_large || ctx->len + n > SRV_BODY_LIMIT)
        {
          /* A chunked body (no Content-Length) grew past the limit. MHD cannot answer in
           * the middle of a body, so the rest is counted and dropped and 413 is sent at
           * its end; a client that keeps sending far past the limit is disconnected. */
          if (!ctx->too_large)
            {
              free (ctx->body);
              ctx->body = NULL;
              ctx->cap = 0;
              ctx->too_large = 1;
            }
          ctx->len += n;
          return ctx->len > 4 * (size_t) SRV_BODY_LIMIT ? MHD_NO : MHD_YES;
        }
      if (ctx->len + n > ctx->cap)
        {
          size_t ncap = ctx->cap ? ctx->cap : 4096;
          while (ncap < ctx->len + n)
            ncap *= 2;
          if (ncap > SRV_BODY_LIMIT)
            ncap = SRV_BODY_LIMIT;
          char *nb = realloc (ctx->body, ncap);
          if (!nb)
            return MHD_NO;
          ctx->body = nb;
          ctx->cap = ncap;
        }
      memcpy (ctx->body + ctx->len, upload_data, n);
      ctx->len += n;
      return MHD_YES;
    }
  if (ctx->done)
    return MHD_YES;
  conn_set_busy (h, c, 1); /* the whole request is in: it is being answered */
  if (ctx->too_large)
    return send_error (c, 413, "payload_too_large",
                       "request body larger than 10 MB (10485760 bytes)", method, url, ctx);
  struct srv_reply r = { 0 };
  /* Money hooks: authenticate and charge before, settle or refund after. */
  struct srv_req q;
  money_req (c, ctx, method, url, &q);
  struct srv_charge *charge = NULL;
  if (srv_money_before (s, &q, &charge, &r) && owner_admit (h, ctx, &r))
    {
      if (ctx->upload)
        srv_upload_end (ctx->upload, &r); /* only now does the upload take effect */
      else
        dispatch (s, ctx, c, &r);
    }
  if (!r.body && !r.stream && !r.text)
    srv_reply_error (&r, SBX_E_INTERNAL, "no reply");
  srv_money_after (s, charge, &r);
  return send_reply (c, &r, method, url, ctx);
}

static void
on_completed (void *cls, struct MHD_Connection *c, void **con_cls,
              enum MHD_RequestTerminationCode toe)
{
  struct srv_http *h = cls;
  struct req_ctx *ctx = *con_cls;
  if (ctx)
    {
      srv_upload_free (ctx->upload); /* not ended: the partial upload is discarded */
      owner_leave (h, ctx);
      free (ctx->body);
      free (ctx->url_own);
      free (ctx);
      pthread_mutex_lock (&h->lock);
      if (--h->active == 0)
        pthread_cond_broadcast (&h->idle);
      pthread_mutex_unlock (&h->lock);
      conn_set_busy (h, c, 0);
    }
  *con_cls = NULL;
}

static void
mhd_log (void *cls, const char *fmt, va_list ap)
{
  char buf[512];
  vsnprintf (buf, sizeof buf, fmt, ap);
  size_t n = strlen (buf);
  while (n && buf[n - 1] == '\n')
    buf[--n] = '\0';
  LOG_WARN ("http: %s", buf);
}

int
srv_http_start (struct srv *s, struct srv_http **out, struct sbx_err *err)
{
  struct sockaddr_storage ss = { 0 };
  /* poll(), not select(): with many sandboxes sbxd holds thousands of fds, and select()
   * cannot watch one numbered past FD_SETSIZE (1024), so new connections were refused. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION
                   | MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
  struct sockaddr_in *a4 = (struct sockaddr_in *) &ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &ss;
  if (inet_pton (AF_INET, s->cfg.listen_host, &a4->sin_addr) == 1)
    {
      a4->sin_family = AF_INET;
      a4->sin_port = htons (s->cfg.port);
    }
  else if (inet_pton (AF_INET6, s->cfg.listen_host, &a6->sin6_addr) == 1)
    {
      a6->sin6_family = AF_INET6;
      a6->sin6_port = htons (s->cfg.port);
      flags |= MHD_USE_IPv6;
    }
  else
    return sbx_err_set (err, SBX_E_INVALID, 0, "listen address '%s'", s->cfg.listen_host);
  struct srv_http *h = calloc (1, sizeof *h);
  if (!h)
    return sbx_err_sys (err, "allocate http");
  h->srv = s;
  pthread_mutex_init (&h->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&h->idle, &ca);
  pthread_condattr_destroy (&ca);
  h->d = MHD_start_daemon (flags, s->cfg.port, NULL, NULL, on_request, h,
                           MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                           MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
                           MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned) SRV_CONN_HARD_LIMIT (s->cfg.connection_limit),
                           MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.connection_timeout,
                           MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                           MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                           MHD_OPTION_END);
  if (!h->d)
    {
      free (h);
      return sbx_err_set (err, SBX_E_INTERNAL, 0, "cannot listen on %s:%u (in use?)",
                          s->cfg.listen_host, s->cfg.port);
    }
  *out = h;
  return 0;
}

void
srv_http_stop (struct srv_http *h)
{
  if (!h)
    return;
  MHD_quiesce_daemon (h->d);
  srv_cut_all_execs (h->srv);
  /* Let the requests in flight (execs just cut) send their answers before MHD closes
   * every connection; bounded, as a client may be slow to read. */
  struct timespec dl;
  clock_gettime (CLOCK_MONOTONIC, &dl);
  dl.tv_sec += 5;
  pthread_mutex_lock (&h->lock);
  while (h->active > 0)
    if (pthread_cond_timedwait (&h->idle, &h->lock, &dl) != 0)
      break;
  pthread_mutex_unlock (&h->lock);
  MHD_stop_daemon (h->d);
  free (h);
}
