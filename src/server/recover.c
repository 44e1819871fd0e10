/* Restart: sbxd may have been killed at any moment (even kill -9). The database says which
 * sandboxes were running; each is re-adopted through its run dir (sbx-init's socket and
 * PID 1 survive sbxd), or, when its lifetime ran out meanwhile or it is gone, cleaned up
 * and marked terminated. Run dirs that the database does not explain are removed when
 * nothing runs in them. Builds that were running fail, unfinished layers are removed. */
#include "server.h"
#include "images_srv.h"
#include "../images/images.h"
#include "../runtime/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void
fill_spec (struct srv *s, const char *id, const char *rootfs, struct rt_spec *spec)
{
  memset (spec, 0, sizeof *spec);
  spec->id = id;
  spec->rootfs = rootfs;
  spec->state_dir = s->cfg.state_dir;
  spec->init_path = s->cfg.init_path;
  rt_limits_default (&spec->limits);
}

int
srv_sandbox_dispose (struct srv *s, const char *id)
{
  struct rt_spec spec;
  struct rt_sandbox *rt = NULL;
  struct sbx_err err = { 0 };
  fill_spec (s, id, "", &spec);
  if (rt_sandbox_adopt (&spec, &rt, &err) == 0)
    {
      rt_sandbox_destroy (rt);
      return 1;
    }
  if (rt_cleanup_stale (s->cfg.state_dir, id, &err) < 0)
    LOG_WARN ("clean up sandbox %s: %s", id, err.msg);
  return 0;
}

static int
recover_one (struct srv *s, struct store_sandbox *rec)
{
  struct sbx_err err = { 0 };
  int64_t now = sbx_now_ms ();
  if (rec->expires_at_ms <= now)
    {
      /* Only a sandbox still running has lived out its lifetime. One whose PID 1 is gone
       * is lost, as before its end: it may never have been spawned (sbxd died during its
       * create, after the row went in), and then its create, still reserved, must be
       * refunded (store_charge_recover charges a "timeout"), not charged. */
      if (!srv_sandbox_dispose (s, rec->id))
        {
          store_sandbox_terminate (s->store, rec->id, now, "lost during sbxd restart", NULL);
          LOG_WARN ("sandbox %s expired while sbxd was down and was gone already", rec->id);
          return 0;
        }
      store_sandbox_terminate (s->store, rec->id, rec->expires_at_ms, "timeout", NULL);
      LOG_INFO ("sandbox %s expired while sbxd was down; cleaned up", rec->id);
      return 0;
    }
  char rootfs[PATH_MAX] = "";
  /* adopt needs no layers; an image id (build, snapshot) has no rootfs of its own */
  if (img_is_builtin (rec->image) && img_resolve (s->cfg.state_dir, rec->image, 0, rootfs, &err) < 0)
    LOG_WARN ("resolve image of %s: %s", rec->id, err.msg);
  struct rt_spec spec;
  fill_spec (s, rec->id, rootfs, &spec);
  spec.limits.cpu_millis = rec->cpu_millis;
  spec.limits.memory_bytes = rec->memory_mb * 1024 * 1024;
  struct rt_sandbox *rt = NULL;
  sbx_err_clear (&err);
  if (rt_sandbox_adopt (&spec, &rt, &err) < 0)
    {
      LOG_WARN ("sandbox %s could not be re-adopted: %s", rec->id, err.msg);
      srv_sandbox_dispose (s, rec->id);
      store_sandbox_terminate (s->store, rec->id, now, "lost during sbxd restart", NULL);
      return 0;
    }
  struct srv_env env;
  if (srv_env_from_json (rec->env_json, &env) < 0)
    memset (&env, 0, sizeof env);
  char *wd = rec->workdir ? strdup (rec->workdir) : NULL;
  if (srv_sandbox_add (s, rt, rec->expires_at_ms, &env, wd, 0, &err) < 0)
    {
      LOG_ERROR ("re-register sandbox %s: %s", rec->id, err.msg);
      store_sandbox_terminate (s->store, rec->id, now, "lost during sbxd restart", NULL);
      return 0;
    }
  LOG_INFO ("re-adopted sandbox %s", rec->id);
  return 1;
}

static void
sweep_run_dirs (struct srv *s)
{
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/run", s->cfg.state_dir);
  DIR *d = opendir (path);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (!sbx_id_valid (de->d_name, "sb"))
        continue;
      struct srv_sandbox *sb = srv_sandbox_get (s, de->d_name);
      if (sb)
        {
          srv_sandbox_put (sb);
          continue;
        }
      struct store_sandbox rec;
      if (store_sandbox_get (s->store, de->d_name, &rec, NULL) == 0)
        {
          /* Ours and ended (sbxd died between the kill and the cleanup). */
          store_sandbox_clear (&rec);
          srv_sandbox_dispose (s, de->d_name);
          continue;
        }
      /* Not in the database: a one-shot `sbx run` sharing this state dir, or a leftover
       * of a crash during create. Only a dead one is removed. */
      struct rt_spec spec;
      struct rt_sandbox *rt = NULL;
      fill_spec (s, de->d_name, "", &spec);
      if (rt_sandbox_adopt (&spec, &rt, NULL) == 0)
        {
          LOG_INFO ("leaving running sandbox %s alone (not sbxd's)", de->d_name);
          rt_sandbox_release (rt);
          continue;
        }
      if (rt_cleanup_stale (s->cfg.state_dir, de->d_name, NULL) == 0)
        LOG_INFO ("removed leftovers of sandbox %s", de->d_name);
    }
  closedir (d);
}

int
srv_recover (struct srv *s, struct sbx_err *err)
{
  struct store_sandbox *list = NULL;
  size_t n = 0;
  if (store_sandbox_list (s->store, STORE_RUNNING, &list, &n, err) < 0)
    return sbx_err_wrap (err, "list running sandboxes");
  /* Pool members of an earlier sbxd are nobody's: destroyed, never adopted. */
  srv_pool_recover (s);
  int adopted = 0;
  for (size_t i = 0; i < n; i++)
    adopted += recover_one (s, &list[i]);
  store_sandbox_list_free (list, n);
  sweep_run_dirs (s);
  if (n)
    LOG_INFO ("restart: %d of %zu running sandboxes re-adopted", adopted, n);
  /* Images and volumes: no half-made one stays visible (a build left "building") or on
   * disk (the temp layer of a snapshot or build step cut short, a volume not recorded). */
  srv_builds_recover (s);
  srv_volumes_recover (s);
  int tmp = img_layer_tmp_clean (s->cfg.state_dir);
  if (tmp)
    LOG_INFO ("restart: removed %d unfinished layer(s)", tmp);
  return 0;
}
