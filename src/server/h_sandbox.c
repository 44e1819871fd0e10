/* Handlers of sandbox/create, sandbox/status, sandbox/terminate, sandbox/list, health. */
#include "server.h"
#include "images_srv.h"
#include "../images/images.h"
#include "../runtime/runtime.h"

#include <stdio.h>
#include <string.h>

json_t *
srv_time_json (int64_t ms)
{
  char buf[32];
  sbx_time_rfc3339 (ms, buf, sizeof buf);
  return json_string (buf);
}

json_t *
srv_sandbox_json (const struct store_sandbox *rec)
{
  json_t *o = json_object ();
  json_object_set_new (o, "sandbox_id", json_string (rec->id));
  json_object_set_new (o, "status", json_string (store_status_name (rec->status)));
  json_object_set_new (o, "image", json_string (rec->image));
  json_object_set_new (o, "created_at", srv_time_json (rec->created_at_ms));
  json_object_set_new (o, "expires_at", srv_time_json (rec->expires_at_ms));
  json_object_set_new (o, "timeout", json_integer (rec->timeout_s));
  json_object_set_new (o, "commands_executed", json_integer (rec->commands_executed));
  /* pids and disk are the same for every sandbox (rt_limits_default) */
  struct rt_limits l;
  rt_limits_default (&l);
  json_object_set_new (o, "resources",
                       json_pack ("{s:f,s:I,s:I,s:I}", "cpu", rec->cpu_millis / 1000.0,
                                  "memory_mb", (json_int_t) rec->memory_mb, "pids",
                                  (json_int_t) l.pids, "disk_mb",
                                  (json_int_t) (l.disk_bytes >> 20)));
  if (rec->status == STORE_TERMINATED)
    {
      json_object_set_new (o, "terminated_at", srv_time_json (rec->terminated_at_ms));
      json_object_set_new (o, "reason", json_string (rec->reason));
    }
  return o;
}

void
srv_reply_not_live (struct srv *s, const char *id, struct srv_reply *r)
{
  struct store_sandbox rec;
  struct sbx_err err = { 0 };
  char msg[256];
  if (!*id || store_sandbox_get (s->store, id, &rec, &err) < 0)
    {
      if (*id && err.code != SBX_E_NOT_FOUND)
        {
          srv_reply_err (r, &err);
          return;
        }
      if (*id)
        snprintf (msg, sizeof msg, "sandbox '%s' not found", id);
      else
        snprintf (msg, sizeof msg, "sandbox not found (not a valid sandbox id)");
      srv_reply_error (r, SBX_E_NOT_FOUND, msg);
      return;
    }
  int timeout = !strcmp (rec.reason, "timeout");
  if (timeout)
    snprintf (msg, sizeof msg, "sandbox '%s' exceeded its timeout and was terminated", id);
  else
    snprintf (msg, sizeof msg, "sandbox '%s' has been terminated (%s)", id,
              *rec.reason ? rec.reason : "terminated");
  store_sandbox_clear (&rec);
  srv_reply_error (r, timeout ? SBX_E_TIMEOUT : SBX_E_TERMINATED, msg);
}

/* With authentication on, an owner runs at most max_sandboxes_per_owner sandboxes, so
 * one paying caller cannot take every place of the host. The count and the insert of the
 * create's row are made under s->owner_lock (a pool claim too, between them): of creates
 * racing for the last place exactly one gets it, and one refused never claims, so never
 * ends, a warm pool member. */
static int
owner_bounded (const struct srv *s)
{
  return s->cfg.auth && s->cfg.max_per_owner;
}

/* Called with s->owner_lock held when owner_bounded. 0, or 1 with r filled (429; the
 * call is refunded like any 429). */
static int
owner_over_limit (struct srv *s, struct srv_reply *r)
{
  if (!owner_bounded (s))
    return 0;
  int64_t n = 0;
  struct sbx_err err = { 0 };
  if (store_sandbox_count_running (s->store, srv_req_owner (), &n, &err) < 0)
    {
      srv_reply_err (r, &err); /* fail closed */
      return 1;
    }
  if (n < s->cfg.max_per_owner)
    return 0;
  char msg[200];
  snprintf (msg, sizeof msg,
            "%d sandboxes of yours are running (max_sandboxes_per_owner): terminate one first",
            s->cfg.max_per_owner);
  srv_reply_http (r, 429, "too_many_sandboxes", msg);
  return 1;
}

/* A claimed pool member becomes the caller's: only what is request-specific is applied
 * (DB row with owner and charge, lifetime from now, env and workdir, which are exec
 * defaults kept by sbxd). Nothing inside the sandbox changes. 0, or -1: go cold. */
static int
create_from_pool (struct srv *s, struct srv_sandbox *sb, struct srv_create_req *req,
                  struct srv_reply *r)
{
  struct sbx_err err = { 0 };
  struct store_sandbox rec = { 0 };
  snprintf (rec.id, sizeof rec.id, "%s", sb->id);
  snprintf (rec.image, sizeof rec.image, "%s", req->image);
  rec.status = STORE_RUNNING;
  rec.created_at_ms = sbx_now_ms ();
  rec.expires_at_ms = rec.created_at_ms + req->timeout_s * 1000;
  rec.timeout_s = req->timeout_s;
  rec.cpu_millis = req->cpu_millis;
  rec.memory_mb = req->memory_mb;
  rec.env_json = srv_env_to_json (&req->env);
  rec.workdir = req->workdir;
  snprintf (rec.owner, sizeof rec.owner, "%s", srv_req_owner ());
  rec.charge_ref = srv_req_charge_ref ();
  int stored = store_sandbox_insert (s->store, &rec, &err);
  free (rec.env_json);
  rec.env_json = NULL;
  rec.workdir = NULL;
  if (stored < 0 || srv_sandbox_set_expiry (sb, rec.expires_at_ms, &err) < 0)
    {
      LOG_WARN ("claim pool sandbox %s: %s", sb->id, err.msg);
      if (stored == 0)
        store_sandbox_delete (s->store, sb->id, NULL);
      srv_pool_claim_done (sb, NULL, NULL);
      return -1;
    }
  if (srv_pool_claim_done (sb, &req->env, &req->workdir) < 0)
    {
      LOG_WARN ("pool sandbox %s ended during its claim; creating one", sb->id);
      store_sandbox_delete (s->store, sb->id, NULL);
      return -1;
    }
  srv_sandbox_put (sb);
  LOG_INFO ("created sandbox %s from the pool (%s, %llds, %.2f cpu, %llu MiB)", rec.id,
            req->image, (long long) req->timeout_s, req->cpu_millis / 1000.0,
            (unsigned long long) req->memory_mb);
  r->status = 200;
  r->body = srv_sandbox_json (&rec);
  return 0;
}

void
srv_h_create (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct srv_create_req req;
  struct sbx_err err = { 0 };
  int64_t t0 = sbx_mono_ns ();
  if (srv_parse_create (body, &s->cfg, &req, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  /* Volumes have no owner yet (the volume endpoints are refused with auth on): a create
   * naming one would let any paying caller mount, read and write a volume by its name. */
  if (s->cfg.auth && json_object_get (body, "volumes"))
    {
      srv_create_req_free (&req);
      srv_reply_http (r, 403, "forbidden",
                      "volumes are not available with authentication on (they have no owner)");
      return;
    }
  int bounded = owner_bounded (s);
  if (bounded)
    pthread_mutex_lock (&s->owner_lock);
  if (owner_over_limit (s, r))
    {
      if (bounded)
        pthread_mutex_unlock (&s->owner_lock);
      srv_create_req_free (&req);
      return;
    }
  struct srv_sandbox *pooled = srv_pool_claim (s, &req, body);
  int claimed = pooled ? create_from_pool (s, pooled, &req, r) : -1;
  if (bounded)
    pthread_mutex_unlock (&s->owner_lock);
  if (claimed == 0)
    {
      srv_metrics_create (SRV_M_POOL, sbx_mono_ns () - t0);
      srv_create_req_free (&req);
      return;
    }
  if (srv_reserve (s, &err) < 0)
    {
      srv_create_req_free (&req);
      srv_reply_err (r, &err);
      return;
    }
  char id[SBX_ID_MAX];
  struct rt_sandbox *rt = NULL;
  /* The image's layers (and its env/workdir defaults) and the volumes (images_srv.c). */
  struct srv_image_prep prep;
  int64_t t_prep = sbx_mono_ns ();
  if (srv_image_prepare (s, body, &req, &prep, &err) < 0)
    {
      srv_unreserve (s);
      srv_create_req_free (&req);
      srv_reply_err (r, &err);
      return;
    }
  if (sbx_id_new ("sb", id) < 0 && sbx_err_sys (&err, "new sandbox id") < 0)
    goto fail;
  struct rt_spec spec = { .id = id, .state_dir = s->cfg.state_dir,
                          .init_path = s->cfg.init_path };
  srv_image_spec (&prep, &spec);
  rt_limits_default (&spec.limits);
  spec.limits.cpu_millis = req.cpu_millis;
  spec.limits.memory_bytes = req.memory_mb * 1024 * 1024;
  struct store_sandbox rec = { 0 };
  snprintf (rec.id, sizeof rec.id, "%s", id);
  snprintf (rec.image, sizeof rec.image, "%s", req.image);
  rec.status = STORE_RUNNING;
  rec.created_at_ms = sbx_now_ms ();
  rec.expires_at_ms = rec.created_at_ms + req.timeout_s * 1000;
  rec.timeout_s = req.timeout_s;
  rec.cpu_millis = req.cpu_millis;
  rec.memory_mb = req.memory_mb;
  rec.env_json = srv_env_to_json (&req.env);
  rec.workdir = req.workdir;
  snprintf (rec.owner, sizeof rec.owner, "%s", srv_req_owner ());
  rec.charge_ref = srv_req_charge_ref ();
  /* The row goes in first: if sbxd dies right after the spawn, the next start finds the
   * sandbox in the database and re-adopts or cleans it up. */
  int64_t t_row = sbx_mono_ns ();
  if (bounded)
    pthread_mutex_lock (&s->owner_lock);
  int over = owner_over_limit (s, r); /* counted again: the lock was let go meanwhile */
  int stored = over ? 0 : store_sandbox_insert (s->store, &rec, &err);
  if (bounded)
    pthread_mutex_unlock (&s->owner_lock);
  free (rec.env_json);
  rec.env_json = NULL;
  rec.workdir = NULL;
  if (stored < 0)
    goto fail;
  if (over)
    {
      srv_image_prep_done (s, &prep, id, 0);
      srv_unreserve (s);
      srv_create_req_free (&req);
      return;
    }
  int64_t t_spawn = sbx_mono_ns ();
  if (rt_sandbox_spawn (&spec, &rt, &err) < 0)
    {
      sbx_err_wrap (&err, "create sandbox");
      store_sandbox_delete (s->store, id, NULL);
      goto fail;
    }
  srv_image_prep_done (s, &prep, id, 1);
  /* srv_sandbox_add owns rt, env and workdir from here, even on failure. */
  char *wd = steal_ptr (&req.workdir);
  if (srv_sandbox_add (s, rt, rec.expires_at_ms, &req.env, wd, 1, &err) < 0)
    {
      store_sandbox_terminate (s->store, id, sbx_now_ms (), "sbxd could not supervise it", NULL);
      srv_create_req_free (&req);
      srv_reply_err (r, &err);
      return;
    }
  int64_t t_end = sbx_mono_ns ();
  LOG_DEBUG ("create %s: %.2f ms (parse+claim %.2f, image %.2f, row %.2f, spawn+register %.2f)",
             id, (t_end - t0) / 1e6, (t_prep - t0) / 1e6, (t_row - t_prep) / 1e6,
             (t_spawn - t_row) / 1e6, (t_end - t_spawn) / 1e6);
  LOG_INFO ("created sandbox %s (%s, %llds, %.2f cpu, %llu MiB)", id, req.image,
            (long long) req.timeout_s, req.cpu_millis / 1000.0,
            (unsigned long long) req.memory_mb);
  srv_create_req_free (&req);
  r->status = 200;
  r->body = srv_sandbox_json (&rec);
  srv_metrics_create (SRV_M_COLD, sbx_mono_ns () - t0);
  return;
fail:
  srv_image_prep_done (s, &prep, id, 0);
  srv_unreserve (s);
  srv_create_req_free (&req);
  if (err.code == SBX_E_INVALID || !err.code)
    err.code = SBX_E_INTERNAL; /* the request was valid: whatever failed is ours */
  LOG_ERROR ("%s", err.msg);
  srv_reply_err (r, &err);
}

void
srv_h_status (struct srv *s, json_t *body, struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid;
  if (srv_parse_sandbox_id_reply (body, id, &valid, r) < 0)
    return;
  struct sbx_err err = { 0 };
  struct store_sandbox rec;
  if (!valid || store_sandbox_get (s->store, id, &rec, &err) < 0)
    {
      if (valid && err.code != SBX_E_NOT_FOUND)
        srv_reply_err (r, &err);
      else
        srv_reply_not_live (s, valid ? id : "", r);
      return;
    }
  r->status = 200;
  r->body = srv_sandbox_json (&rec);
  store_sandbox_clear (&rec);
}

void
srv_h_terminate (struct srv *s, json_t *body, struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  int valid;
  if (srv_parse_sandbox_id_reply (body, id, &valid, r) < 0)
    return;
  struct srv_sandbox *sb = valid ? srv_sandbox_get (s, id) : NULL;
  int ended = sb ? srv_sandbox_end (sb, SBX_E_TERMINATED, "terminated by caller") : 0;
  srv_sandbox_put (sb);
  if (!ended)
    {
      /* Not live any more (or never was): the contract's 404 / 410 / 408. */
      srv_reply_not_live (s, valid ? id : "", r);
      return;
    }
  r->status = 200;
  r->body = json_pack ("{s:s,s:s}", "sandbox_id", id, "status", "terminated");
}

/* limit: 1..SRV_LIST_LIMIT_MAX (1000, as the error says) in decimal digits, nothing else. */
static int
parse_limit (const char *v, int64_t *out)
{
  int64_t n = 0;
  if (!v || !*v || strlen (v) > 4)
    return -1;
  for (const char *p = v; *p; p++)
    {
      if (*p < '0' || *p > '9')
        return -1;
      n = n * 10 + (*p - '0');
    }
  if (n < 1 || n > SRV_LIST_LIMIT_MAX)
    return -1;
  *out = n;
  return 0;
}

void
srv_h_list (struct srv *s, const char *status, const char *limit, const char *after,
            struct srv_reply *r)
{
  int want = -1;
  if (status)
    {
      if (!strcmp (status, "running"))
        want = STORE_RUNNING;
      else if (!strcmp (status, "terminated"))
        want = STORE_TERMINATED;
      else
        {
          srv_reply_error (r, SBX_E_INVALID, "status: must be \"running\" or \"terminated\"");
          return;
        }
    }
  int64_t max = -1;
  if (limit && parse_limit (limit, &max) < 0)
    {
      srv_reply_error (r, SBX_E_INVALID, "limit: must be an integer from 1 to 1000");
      return;
    }
  /* With auth on, callers see only their own sandboxes, and a cursor is theirs or unknown. */
  const char *owner = s->cfg.auth ? srv_req_owner () : NULL;
  struct sbx_err err = { 0 };
  if (after)
    {
      struct store_sandbox cur;
      int got = sbx_id_valid (after, "sb") ? store_sandbox_get (s->store, after, &cur, &err) : -1;
      if (got < 0 && err.code && err.code != SBX_E_NOT_FOUND)
        {
          srv_reply_err (r, &err);
          return;
        }
      int mine = got == 0 && (!owner || !strcmp (cur.owner, owner));
      if (got == 0)
        store_sandbox_clear (&cur);
      if (!mine)
        {
          srv_reply_error (r, SBX_E_INVALID, "after: not a sandbox_id of this list");
          return;
        }
    }
  /* One more row than asked tells whether there is a next page. */
  struct store_sandbox *list = NULL;
  size_t n = 0;
  if (store_sandbox_page (s->store, want, owner, after, max < 0 ? -1 : max + 1, &list, &n, &err)
      < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  int more = max >= 0 && n > (size_t) max;
  if (more)
    n = (size_t) max;
  json_t *arr = json_array ();
  for (size_t i = 0; i < n; i++)
    json_array_append_new (arr, srv_sandbox_json (&list[i]));
  json_t *next = more ? json_string (list[n - 1].id) : json_null ();
  store_sandbox_list_free (list, more ? n + 1 : n);
  r->status = 200;
  r->body = json_pack ("{s:o,s:I,s:o}", "sandboxes", arr, "count", (json_int_t) n, "next", next);
}

void
srv_h_health (struct srv *s, struct srv_reply *r)
{
  r->status = 200;
  r->body = json_pack ("{s:s,s:i,s:i}", "status", "ok", "sandboxes_running",
                       srv_live_count (s), "max_sandboxes", s->cfg.max_sandboxes);
}
