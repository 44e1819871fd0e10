/* Images for sandbox creation: resolving an image name or id to its layer directories
 * (top first, base last), volumes to mounts, recording new images (with flattening), and
 * the layer lock that keeps garbage collection away from layers in use. */
#include "images_srv.h"
#include "../images/layer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_rwlock_t layers_lock = PTHREAD_RWLOCK_INITIALIZER;

void
srv_layers_rdlock (void)
{
  pthread_rwlock_rdlock (&layers_lock);
}

void
srv_layers_wrlock (void)
{
  pthread_rwlock_wrlock (&layers_lock);
}

void
srv_layers_unlock (void)
{
  pthread_rwlock_unlock (&layers_lock);
}

void
srv_chain_free (struct srv_chain *c)
{
  free (c->env_json);
  free (c->workdir);
  c->env_json = c->workdir = NULL;
}

int
srv_chain_get (struct srv *s, const char *image, struct srv_chain *c, struct sbx_err *err)
{
  memset (c, 0, sizeof *c);
  if (img_is_builtin (image))
    {
      snprintf (c->base, sizeof c->base, "%s", image);
      snprintf (c->status, sizeof c->status, "ready");
      return 0;
    }
  if (!sbx_id_valid (image, "img"))
    return sbx_err_set (err, SBX_E_INVALID, 0, "unknown image '%.80s'", image);
  struct store_image im;
  if (store_image_get (s->store, image, &im, err) < 0)
    return -1;
  snprintf (c->base, sizeof c->base, "%s", im.base);
  snprintf (c->status, sizeof c->status, "%s", im.status);
  c->env_json = steal_ptr (&im.env_json);
  c->workdir = steal_ptr (&im.workdir);
  json_error_t je;
  json_t *arr = json_loads (im.layers_json, 0, &je);
  store_image_clear (&im);
  if (!json_is_array (arr) || json_array_size (arr) > IMG_CHAIN_MAX)
    {
      json_decref (arr);
      srv_chain_free (c);
      return sbx_err_set (err, SBX_E_INTERNAL, 0, "image '%s': bad layer list", image);
    }
  size_t i;
  json_t *v;
  json_array_foreach (arr, i, v)
    {
      const char *lid = json_string_value (v);
      if (!lid || !img_layer_id_valid (lid))
        {
          json_decref (arr);
          srv_chain_free (c);
          return sbx_err_set (err, SBX_E_INTERNAL, 0, "image '%s': bad layer id", image);
        }
      snprintf (c->ids[c->n++], IMG_LAYER_ID_MAX, "%s", lid);
    }
  json_decref (arr);
  return 0;
}

void
srv_image_id_of (const char *tag, const char *text, char id[SBX_ID_MAX])
{
  struct img_hash h;
  char hex[65];
  if (img_hash_init (&h) < 0)
    {
      sbx_id_new ("img", id);
      return;
    }
  img_hash_update (&h, tag, strlen (tag) + 1);
  img_hash_update (&h, text, strlen (text));
  img_hash_final_hex (&h, hex);
  snprintf (id, SBX_ID_MAX, "img_%.32s", hex);
}

static char *
layers_json (const struct srv_chain *c)
{
  json_t *arr = json_array ();
  for (size_t i = 0; i < c->n; i++)
    json_array_append_new (arr, json_string (c->ids[i]));
  char *t = json_dumps (arr, JSON_COMPACT);
  json_decref (arr);
  return t;
}

int
srv_chain_fit (struct srv *s, struct srv_chain *c, struct sbx_err *err)
{
  if (c->n > IMG_CHAIN_MAX)
    {
      /* Too long for the runtime's bound: merge every delta into one (the base stays). */
      const char *ids[IMG_CHAIN_MAX + 1];
      for (size_t i = 0; i < c->n; i++)
        ids[i] = c->ids[i];
      char flat[IMG_LAYER_ID_MAX];
      uint64_t bytes = 0;
      int64_t t0 = sbx_mono_ns ();
      if (img_layer_flatten (s->cfg.state_dir, c->base, ids, c->n, flat, &bytes, err) < 0)
        return -1;
      LOG_INFO ("flattened %zu layers into %s (%.1f MB, %.0f ms)", c->n, flat, bytes / 1e6,
                (sbx_mono_ns () - t0) / 1e6);
      if (store_layer_put (s->store, flat, bytes, err) < 0)
        return -1;
      snprintf (c->ids[0], IMG_LAYER_ID_MAX, "%s", flat);
      c->n = 1;
    }
  return 0;
}

char *
srv_chain_layers_json (const struct srv_chain *c)
{
  return layers_json (c);
}

int
srv_image_record (struct srv *s, struct srv_chain *c, const char *kind, const char *parent,
                  const char *spec_json, char id[SBX_ID_MAX], struct sbx_err *err)
{
  if (srv_chain_fit (s, c, err) < 0)
    return -1;
  cleanup_free char *lj = layers_json (c);
  if (!lj)
    return sbx_err_sys (err, "image layers");
  /* The id: what the image is (base, layers, config), so equal images share one id. */
  json_t *desc = json_pack ("{s:s,s:s,s:s,s:s}", "base", c->base, "layers", lj, "env",
                            c->env_json ? c->env_json : "", "workdir",
                            c->workdir ? c->workdir : "");
  cleanup_free char *dt = desc ? json_dumps (desc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref (desc);
  if (!dt)
    return sbx_err_sys (err, "image id");
  srv_image_id_of (kind, dt, id);
  struct store_image im = { 0 };
  snprintf (im.id, sizeof im.id, "%s", id);
  snprintf (im.kind, sizeof im.kind, "%s", kind);
  snprintf (im.status, sizeof im.status, "ready");
  snprintf (im.base, sizeof im.base, "%s", c->base);
  snprintf (im.parent, sizeof im.parent, "%s", parent && strcmp (parent, id) ? parent : "");
  im.layers_json = lj;
  im.env_json = c->env_json;
  im.workdir = c->workdir;
  im.spec_json = (char *) spec_json;
  im.created_at_ms = sbx_now_ms ();
  return store_image_insert (s->store, &im, err) < 0 ? -1 : 0;
}

/* "volumes": {"/data": "name", ...} */
static int
parse_volumes (struct srv *s, json_t *v, struct srv_image_prep *prep, struct sbx_err *err)
{
  if (!v || json_is_null (v))
    return 0;
  if (!json_is_object (v))
    return sbx_err_set (err, SBX_E_INVALID, 0, "volumes: must be an object {\"/path\": \"name\"}");
  if (json_object_size (v) > RT_VOLUMES_MAX)
    return sbx_err_set (err, SBX_E_INVALID, 0, "volumes: at most %d", RT_VOLUMES_MAX);
  const char *target;
  size_t tlen;
  json_t *name;
  json_object_keylen_foreach (v, target, tlen, name)
    {
      if (tlen != strlen (target) || !rt_volume_target_ok (target))
        return sbx_err_set (err, SBX_E_INVALID, 0,
                            "volumes: mount point '%.100s' must be an absolute normalized path "
                            "(no '.' or '..'), not / and not in /proc, /sys, /dev or /tmp",
                            target);
      const char *n = json_string_value (name);
      if (!n || strlen (n) != json_string_length (name) || !img_volume_name_ok (n))
        return sbx_err_set (err, SBX_E_INVALID, 0, "volumes.%.100s: invalid volume name", target);
      struct store_volume vol;
      if (store_volume_get (s->store, n, &vol, err) < 0)
        return err->code == SBX_E_NOT_FOUND ? sbx_err_set (err, SBX_E_INVALID, 0,
                                                           "volumes.%.100s: no volume '%s'",
                                                           target, n)
                                            : -1;
      size_t i = prep->n_volumes;
      if (img_volume_mount (s->cfg.state_dir, n, prep->vol_src[i], err) < 0)
        return -1;
      snprintf (prep->vol_tgt[i], sizeof prep->vol_tgt[i], "%s", target);
      snprintf (prep->vol_name[i], sizeof prep->vol_name[i], "%s", n);
      prep->vols[i] = (struct rt_volume) { .source = prep->vol_src[i], .target = prep->vol_tgt[i] };
      prep->n_volumes++;
    }
  return 0;
}

/* The image's env under the request's (the request wins), its workdir unless one is given. */
static int
apply_config (const struct srv_chain *c, struct srv_create_req *req, struct sbx_err *err)
{
  if (c->workdir && !req->workdir && !(req->workdir = strdup (c->workdir)))
    return sbx_err_sys (err, "workdir");
  if (!c->env_json)
    return 0;
  struct srv_env ie;
  if (srv_env_from_json (c->env_json, &ie) < 0)
    return 0;
  for (size_t i = 0; i < ie.n; i++)
    {
      int have = 0;
      for (size_t j = 0; j < req->env.n && !have; j++)
        have = !strcmp (req->env.names[j], ie.names[i]);
      if (have)
        continue;
      char **nn = realloc (req->env.names, (req->env.n + 1) * sizeof *nn);
      if (nn)
        req->env.names = nn;
      char **nv = realloc (req->env.values, (req->env.n + 1) * sizeof *nv);
      if (nv)
        req->env.values = nv;
      if (!nn || !nv)
        {
          srv_env_free (&ie);
          return sbx_err_sys (err, "env");
        }
      req->env.names[req->env.n] = steal_ptr (&ie.names[i]);
      req->env.values[req->env.n] = steal_ptr (&ie.values[i]);
      req->env.n++;
    }
  srv_env_free (&ie);
  return 0;
}

int
srv_image_prepare (struct srv *s, json_t *body, struct srv_create_req *req,
                   struct srv_image_prep *prep, struct sbx_err *err)
{
  memset (prep, 0, sizeof *prep);
  struct srv_chain c;
  if (srv_chain_get (s, req->image, &c, err) < 0)
    {
      if (err->code == SBX_E_NOT_FOUND)
        err->code = SBX_E_INVALID;
      return sbx_err_wrap (err, "image");
    }
  if (strcmp (c.status, "ready") != 0)
    {
      srv_chain_free (&c);
      return sbx_err_set (err, SBX_E_INVALID, 0, "image: '%s' is not ready (%s)", req->image,
                          c.status);
    }
  srv_layers_rdlock ();
  prep->locked = 1;
  int r = img_resolve (s->cfg.state_dir, c.base, 0, prep->base_rootfs, err);
  for (size_t i = 0; r == 0 && i < c.n; i++)
    {
      /* top first */
      r = img_layer_path (s->cfg.state_dir, c.ids[c.n - 1 - i], prep->layer_paths[i], err);
      prep->lowers[i] = prep->layer_paths[i];
    }
  prep->n_lowers = c.n;
  if (r == 0)
    prep->lowers[prep->n_lowers++] = prep->base_rootfs;
  if (r == 0)
    r = apply_config (&c, req, err);
  srv_chain_free (&c);
  if (r == 0)
    r = parse_volumes (s, json_object_get (body, "volumes"), prep, err);
  if (r < 0)
    {
      srv_layers_unlock ();
      prep->locked = 0;
    }
  return r;
}

void
srv_image_spec (struct srv_image_prep *prep, struct rt_spec *spec)
{
  spec->rootfs = prep->base_rootfs;
  spec->lowers = prep->lowers;
  spec->n_lowers = prep->n_lowers;
  spec->volumes = prep->vols;
  spec->n_volumes = prep->n_volumes;
}

void
srv_image_prep_done (struct srv *s, struct srv_image_prep *prep, const char *sandbox_id,
                     int spawned)
{
  for (size_t i = 0; spawned && i < prep->n_volumes; i++)
    {
      struct sbx_err err = { 0 };
      if (store_sandbox_volume_add (s->store, sandbox_id, prep->vol_name[i], prep->vol_tgt[i],
                                    &err)
          < 0)
        LOG_WARN ("record volume of %s: %s", sandbox_id, err.msg);
    }
  if (prep->locked)
    srv_layers_unlock ();
  prep->locked = 0;
}
