/* POST /sandbox/snapshot, /sandbox/fork, /sandbox/diff.
 *
 * A snapshot freezes the sandbox's cgroup, copies its upper layer (through the scratch
 * mount the runtime handed over at spawn) into a new layer, thaws it, and records an
 * image = the sandbox's image's layers + that layer, with the sandbox's env and workdir.
 * Sandboxes created from it stack the same layer directories (nothing is copied per
 * sandbox); a chain longer than IMG_CHAIN_MAX is flattened into one delta over the base. */
#include "images_srv.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* One snapshot at a time: two interleaved freeze/thaw pairs on one sandbox would thaw it
 * under the other's copy. */
static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread double last_frozen_ms;

double
srv_snapshot_frozen_ms (void)
{
  return last_frozen_ms;
}

int
srv_snapshot (struct srv *s, const char *sandbox_id, char image_id[SBX_ID_MAX],
              struct srv_reply *r, struct sbx_err *err)
{
  struct srv_sandbox *sb = srv_sandbox_get (s, sandbox_id);
  if (!sb)
    {
      srv_reply_not_live (s, sandbox_id, r);
      return -1;
    }
  struct store_sandbox rec;
  struct srv_chain c;
  int rc = -1;
  if (store_sandbox_get (s->store, sandbox_id, &rec, err) < 0)
    {
      srv_sandbox_put (sb);
      return -1;
    }
  if (srv_chain_get (s, rec.image, &c, err) < 0)
    {
      store_sandbox_clear (&rec);
      srv_sandbox_put (sb);
      return sbx_err_wrap (err, "image of sandbox %s", sandbox_id);
    }
  /* the new image starts the way this sandbox was started */
  srv_chain_free (&c);
  c.env_json = srv_env_to_json (&sb->env);
  c.workdir = sb->workdir ? strdup (sb->workdir) : NULL;
  const char *parent = c.n ? c.ids[c.n - 1] : c.base;

  srv_layers_rdlock ();
  pthread_mutex_lock (&snap_lock);
  int64_t t0 = sbx_mono_ns ();
  char lid[IMG_LAYER_ID_MAX];
  uint64_t bytes = 0, recopied = 0;
  /* Copy while it runs, freeze only to bring the copy up to date (snap2.c). */
  struct img_snap *sn = NULL;
  if (img_snap_begin (s->cfg.state_dir, rt_sandbox_scratch_fd (sb->rt),
                      rt_sandbox_uid_base (sb->rt), &sn, err)
      == 0)
    {
      int64_t t1 = sbx_mono_ns (), t2 = t1;
      if (rt_sandbox_freeze (sb->rt, 1, err) == 0)
        {
          t2 = sbx_mono_ns ();
          rc = img_snap_sync (sn, &recopied, err);
          struct sbx_err terr = { 0 };
          if (rt_sandbox_freeze (sb->rt, 0, &terr) < 0)
            LOG_ERROR ("thaw sandbox %s: %s", sandbox_id, terr.msg);
        }
      int64_t t3 = sbx_mono_ns ();
      last_frozen_ms = (t3 - t2) / 1e6;
      if (rc == 0)
        rc = img_snap_commit (sn, parent, lid, &bytes, err);
      else
        img_snap_abort (sn);
      LOG_INFO ("snapshot of %s: layer %s, %.1f MB; copy %.1f ms, frozen %.1f ms (%llu "
                "entries again), hash+file %.1f ms",
                sandbox_id, rc == 0 ? lid : "-", bytes / 1e6, (t1 - t0) / 1e6, (t3 - t2) / 1e6,
                (unsigned long long) recopied, (sbx_mono_ns () - t3) / 1e6);
    }
  pthread_mutex_unlock (&snap_lock);
  if (rc == 0)
    rc = store_layer_put (s->store, lid, bytes, err);
  if (rc == 0)
    {
      snprintf (c.ids[c.n++], IMG_LAYER_ID_MAX, "%s", lid);
      rc = srv_image_record (s, &c, "snapshot", img_is_builtin (rec.image) ? NULL : rec.image,
                             NULL, image_id, err);
    }
  srv_layers_unlock ();
  if (rc == 0)
    LOG_INFO ("sandbox %s snapshot -> %s (%.1f ms)", sandbox_id, image_id,
              (sbx_mono_ns () - t0) / 1e6);
  srv_chain_free (&c);
  store_sandbox_clear (&rec);
  srv_sandbox_put (sb);
  return rc;
}

static int
sandbox_id_of (struct srv *s, json_t *body, char id[SBX_ID_MAX], struct srv_reply *r)
{
  int valid;
  if (srv_parse_sandbox_id_reply (body, id, &valid, r) < 0)
    return -1;
  if (!valid)
    {
      srv_reply_not_live (s, "", r);
      return -1;
    }
  return 0;
}

static void
reply_failed (struct srv_reply *r, struct sbx_err *err)
{
  if (!err->code)
    err->code = SBX_E_INTERNAL;
  LOG_ERROR ("%s", err->msg);
  srv_reply_err (r, err);
}

void
srv_h_snapshot (struct srv *s, json_t *body, struct srv_reply *r)
{
  char id[SBX_ID_MAX], image[SBX_ID_MAX];
  struct sbx_err err = { 0 };
  if (sandbox_id_of (s, body, id, r) < 0)
    return;
  int64_t t0 = sbx_mono_ns ();
  if (srv_snapshot (s, id, image, r, &err) < 0)
    {
      if (!r->body)
        reply_failed (r, &err);
      return;
    }
  r->status = 200;
  r->body = json_pack ("{s:s,s:s,s:I,s:f}", "image_id", image, "sandbox_id", id, "duration_ms",
                       (json_int_t) ((sbx_mono_ns () - t0) / 1000000), "frozen_ms",
                       srv_snapshot_frozen_ms ());
}

void
srv_h_fork (struct srv *s, json_t *body, struct srv_reply *r)
{
  char id[SBX_ID_MAX], image[SBX_ID_MAX];
  struct sbx_err err = { 0 };
  if (sandbox_id_of (s, body, id, r) < 0)
    return;
  json_t *cv = json_object_get (body, "count");
  json_int_t count = 1;
  if (cv && !json_is_null (cv))
    {
      if (!json_is_integer (cv) || json_integer_value (cv) < 1
          || json_integer_value (cv) > SRV_FORK_MAX)
        {
          char msg[96];
          snprintf (msg, sizeof msg, "count: must be an integer between 1 and %d", SRV_FORK_MAX);
          srv_reply_error (r, SBX_E_INVALID, msg);
          return;
        }
      count = json_integer_value (cv);
    }
  struct store_sandbox rec;
  if (store_sandbox_get (s->store, id, &rec, &err) < 0)
    {
      srv_reply_not_live (s, id, r);
      return;
    }
  /* The forks mount the original's volumes at the same mount points (a volume is shared,
   * not copied). */
  struct store_mount *mounts = NULL;
  size_t n_mounts = 0;
  if (store_sandbox_volume_list (s->store, id, &mounts, &n_mounts, &err) < 0)
    {
      store_sandbox_clear (&rec);
      reply_failed (r, &err);
      return;
    }
  json_t *vols = json_object ();
  for (size_t i = 0; i < n_mounts; i++)
    json_object_set_new (vols, mounts[i].target, json_string (mounts[i].volume));
  free (mounts);
  if (srv_snapshot (s, id, image, r, &err) < 0)
    {
      json_decref (vols);
      store_sandbox_clear (&rec);
      if (!r->body)
        reply_failed (r, &err);
      return;
    }
  /* N creates like the original (resources, lifetime, volumes); env and workdir come
   * with the snapshot image. */
  json_t *arr = json_array ();
  for (json_int_t i = 0; i < count; i++)
    {
      json_t *cb = json_pack ("{s:s,s:I,s:f,s:I,s:O}", "image", image, "timeout",
                              (json_int_t) rec.timeout_s, "cpu", rec.cpu_millis / 1000.0,
                              "memory", (json_int_t) rec.memory_mb, "volumes", vols);
      struct srv_reply cr = { 0 };
      srv_h_create (s, cb, &cr);
      json_decref (cb);
      if (cr.status != 200)
        {
          /* all or nothing: end the ones made so far and answer with the failure */
          size_t k;
          json_t *v;
          json_array_foreach (arr, k, v)
            {
              struct srv_sandbox *sb
                  = srv_sandbox_get (s, json_string_value (json_object_get (v, "sandbox_id")));
              if (sb)
                srv_sandbox_end (sb, SBX_E_TERMINATED, "fork failed");
              srv_sandbox_put (sb);
            }
          json_decref (arr);
          json_decref (vols);
          store_sandbox_clear (&rec);
          *r = cr;
          return;
        }
      json_array_append_new (arr, cr.body);
    }
  json_decref (vols);
  store_sandbox_clear (&rec);
  r->status = 200;
  r->body = json_pack ("{s:s,s:s,s:o}", "image_id", image, "sandbox_id", id, "sandboxes", arr);
}

static void
close_view (struct img_view *v)
{
  for (int i = 0; i < v->n; i++)
    if (v->fds[i] >= 0)
      close (v->fds[i]);
  v->n = 0;
}

/* Open an image's layers (top first) and its base into v (after what v holds). */
static int
open_view (struct srv *s, const struct srv_chain *c, struct img_view *v, char paths[][PATH_MAX],
           struct sbx_err *err)
{
  char base[PATH_MAX];
  if (img_resolve (s->cfg.state_dir, c->base, 0, base, err) < 0)
    return -1;
  for (size_t i = 0; i <= c->n; i++)
    {
      char *p = paths[v->n];
      if (i < c->n)
        {
          if (img_layer_path (s->cfg.state_dir, c->ids[c->n - 1 - i], p, err) < 0)
            return -1;
        }
      else
        snprintf (p, PATH_MAX, "%s", base);
      int fd = open (p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        return sbx_err_sys (err, "open layer '%s'", p);
      v->uid_base[v->n] = 0;
      v->fds[v->n++] = fd;
    }
  return 0;
}

static json_t *
strv_json (char **v, size_t n)
{
  json_t *a = json_array ();
  for (size_t i = 0; i < n; i++)
    json_array_append_new (a, srv_json_text (v[i]));
  return a;
}

void
srv_h_diff (struct srv *s, json_t *body, struct srv_reply *r)
{
  char id[SBX_ID_MAX];
  struct sbx_err err = { 0 };
  if (sandbox_id_of (s, body, id, r) < 0)
    return;
  json_t *sv = json_object_get (body, "since");
  const char *since = NULL;
  if (sv && !json_is_null (sv))
    {
      since = json_string_value (sv);
      if (!since || strlen (since) != json_string_length (sv))
        {
          srv_reply_error (r, SBX_E_INVALID, "since: must be an image id or name");
          return;
        }
    }
  struct srv_sandbox *sb = srv_sandbox_get (s, id);
  if (!sb)
    {
      srv_reply_not_live (s, id, r);
      return;
    }
  struct store_sandbox rec;
  struct srv_chain cn = { 0 }, co = { 0 };
  struct img_view nv = { .n = 0 }, ov = { .n = 0 };
  static __thread char npaths[IMG_VIEW_MAX][PATH_MAX], opaths[IMG_VIEW_MAX][PATH_MAX];
  struct img_diff d = { 0 };
  int have_rec = 0;
  int rc = store_sandbox_get (s->store, id, &rec, &err);
  have_rec = rc == 0;
  if (rc == 0)
    rc = srv_chain_get (s, rec.image, &cn, &err);
  if (rc == 0)
    {
      rc = srv_chain_get (s, since ? since : rec.image, &co, &err);
      if (rc < 0 && (err.code == SBX_E_NOT_FOUND || err.code == SBX_E_INVALID))
        err.code = SBX_E_INVALID, sbx_err_wrap (&err, "since");
    }
  srv_layers_rdlock ();
  int scratch = rt_sandbox_scratch_fd (sb->rt);
  if (rc == 0 && scratch < 0)
    rc = sbx_err_set (&err, SBX_E_INVALID, 0,
                      "sandbox %s was re-adopted after an sbxd restart: its writable layer "
                      "cannot be read", id);
  if (rc == 0)
    {
      int up = openat (scratch, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (up < 0)
        rc = sbx_err_sys (&err, "open upper layer");
      else
        {
          snprintf (npaths[0], PATH_MAX, "(upper)");
          nv.fds[0] = up;
          nv.uid_base[0] = rt_sandbox_uid_base (sb->rt);
          nv.n = 1;
        }
    }
  if (rc == 0)
    rc = open_view (s, &cn, &nv, npaths, &err);
  if (rc == 0)
    rc = open_view (s, &co, &ov, opaths, &err);
  if (rc == 0)
    {
      /* layers both stacks share at the bottom cannot differ */
      int shared = 0;
      while (shared < ov.n && shared < nv.n - 1
             && !strcmp (opaths[ov.n - 1 - shared], npaths[nv.n - 1 - shared]))
        shared++;
      rc = img_diff_views (&ov, ov.n - shared, &nv, nv.n - shared, &d, &err);
    }
  srv_layers_unlock ();
  close_view (&nv);
  close_view (&ov);
  srv_chain_free (&cn);
  srv_chain_free (&co);
  srv_sandbox_put (sb);
  if (rc < 0)
    {
      if (have_rec)
        store_sandbox_clear (&rec);
      if (err.code != SBX_E_INVALID)
        LOG_ERROR ("diff of %s: %s", id, err.msg);
      srv_reply_err (r, &err);
      return;
    }
  r->status = 200;
  r->body = json_pack ("{s:s,s:s,s:o,s:o,s:o}", "sandbox_id", id, "since",
                       since ? since : rec.image, "created", strv_json (d.created, d.n_created),
                       "modified", strv_json (d.modified, d.n_modified), "deleted",
                       strv_json (d.deleted, d.n_deleted));
  img_diff_free (&d);
  store_sandbox_clear (&rec);
}
