/* POST /image/build: images built from a spec, asynchronously, once per spec.
 *
 * The spec {base, apt_install, files, run_commands, env, workdir} is put in a canonical
 * form (sorted keys, sorted and deduplicated packages); the image id is a hash of it, so
 * the same spec is built once and then found. A build is at most two steps, each an
 * image of its own with a spec-derived id (so a spec that extends another reuses it):
 *
 *   1. {base, apt_install}: packages from Debian. sbxd resolves and downloads them on the
 *      host (apt-get --download-only against the image's own dpkg status, a private list
 *      and cache directory under <state_dir>/apt, the host's sources), then a build
 *      sandbox (no network, like every sandbox) installs the .debs from a read-only mount
 *      with apt-get --no-download. Package maintainer scripts run inside the sandbox only.
 *   2. the whole spec: files are written and run_commands run (/bin/sh -c, in order, with
 *      env and workdir) in a build sandbox, never on the host; they have no network.
 *
 * Each step's sandbox upper layer becomes a layer (img_layer_from_upper). The build log
 * (<state_dir>/build-logs/<id>.log) has every command with its output; GET /image/{id}
 * shows status and the log's tail. A build sandbox dies with the build thread if sbxd
 * dies (die_with_parent), and a failed build can be retried by posting the spec again.
 *
 * This file: the handler and the build jobs (claiming step images, waiting for builds of
 * the same step elsewhere, recording the result). The spec is in build_spec.c, apt on the
 * host in build_apt.c, a step's build sandbox in build_step.c. */
#include "build_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t build_done = PTHREAD_COND_INITIALIZER;

/* Images this process is building (under build_lock). A row "building" that is not here
 * was left by an sbxd that died: it is stale and may be taken over. */
#define MAX_ACTIVE 64
static char active[MAX_ACTIVE][SBX_ID_MAX];

static int
is_active (const char *id)
{
  for (int i = 0; i < MAX_ACTIVE; i++)
    if (!strcmp (active[i], id))
      return 1;
  return 0;
}

static void
set_active (const char *id, int on)
{
  for (int i = 0; i < MAX_ACTIVE; i++)
    if (on ? !active[i][0] : !strcmp (active[i], id))
      {
        snprintf (active[i], SBX_ID_MAX, "%s", on ? id : "");
        return;
      }
}

static int
open_log (struct srv *s, const char *id)
{
  char dir[PATH_MAX], path[PATH_MAX + 80];
  snprintf (dir, sizeof dir, "%s/build-logs", s->cfg.state_dir);
  mkdir (dir, 0700);
  snprintf (path, sizeof path, "%s/%s.log", dir, id);
  return open (path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
}

/* ---- builds ------------------------------------------------------------------------------ */

struct job {
  struct srv *s;
  json_t *spec;
  char id[SBX_ID_MAX];
};

/* Wait until image id is no longer building (another build of the same step). */
static int
wait_built (struct srv *s, const char *id, struct sbx_err *err)
{
  for (;;)
    {
      struct store_image im;
      if (store_image_get (s->store, id, &im, err) < 0)
        return -1;
      pthread_mutex_lock (&build_lock);
      int building = !strcmp (im.status, "building") && is_active (id);
      pthread_mutex_unlock (&build_lock);
      int ok = !strcmp (im.status, "ready");
      store_image_clear (&im);
      if (ok)
        return 0;
      if (!building)
        return sbx_err_set (err, SBX_E_INVALID, 0, "step image %s failed", id);
      pthread_mutex_lock (&build_lock);
      struct timespec dl;
      clock_gettime (CLOCK_REALTIME, &dl);
      dl.tv_sec += 1;
      pthread_cond_timedwait (&build_done, &build_lock, &dl);
      pthread_mutex_unlock (&build_lock);
    }
}

static void
finished (struct srv *s, const char *id, const struct srv_chain *c, struct sbx_err *err,
          int ok, int log_fd)
{
  struct sbx_err e2 = { 0 };
  if (ok)
    {
      cleanup_free char *lj = srv_chain_layers_json (c);
      if (store_image_update (s->store, id, "ready", lj, NULL, &e2) < 0)
        LOG_ERROR ("record image %s: %s", id, e2.msg);
      srv_build_log (log_fd, "image %s ready\n", id);
      LOG_INFO ("image %s built", id);
    }
  else
    {
      if (store_image_update (s->store, id, "failed", NULL, err->msg, &e2) < 0)
        LOG_ERROR ("record failure of image %s: %s", id, e2.msg);
      srv_build_log (log_fd, "build failed: %s\n", err->msg);
      LOG_WARN ("image %s: build failed: %s", id, err->msg);
    }
  pthread_mutex_lock (&build_lock);
  set_active (id, 0);
  pthread_cond_broadcast (&build_done);
  pthread_mutex_unlock (&build_lock);
}

/* Insert a "building" row for id; 1 if we own the build, 0 if it exists (ready or being
 * built by someone else; a failed one is replaced and owned). */
static int
claim (struct srv *s, const char *id, const char *base, const char *parent, json_t *env,
       const char *workdir, json_t *spec, struct sbx_err *err)
{
  cleanup_free char *ej = env && json_object_size (env) ? json_dumps (env, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  cleanup_free char *sj = json_dumps (spec, JSON_COMPACT | JSON_SORT_KEYS);
  struct store_image im = { 0 };
  snprintf (im.id, sizeof im.id, "%s", id);
  snprintf (im.kind, sizeof im.kind, "build");
  snprintf (im.status, sizeof im.status, "building");
  snprintf (im.base, sizeof im.base, "%s", base);
  snprintf (im.parent, sizeof im.parent, "%s", parent ? parent : "");
  im.env_json = ej;
  im.workdir = (char *) workdir;
  im.spec_json = sj;
  im.created_at_ms = sbx_now_ms ();
  pthread_mutex_lock (&build_lock);
  int r = store_image_insert (s->store, &im, err);
  if (r == 0)
    {
      struct store_image cur;
      if (store_image_get (s->store, id, &cur, err) == 0)
        {
          int stale = !strcmp (cur.status, "failed")
                      || (!strcmp (cur.status, "building") && !is_active (id));
          if (stale && store_image_delete (s->store, id, err) == 0)
            r = store_image_insert (s->store, &im, err);
          store_image_clear (&cur);
        }
    }
  if (r == 1)
    set_active (id, 1);
  pthread_mutex_unlock (&build_lock);
  return r;
}

/* The env an image built on chain c with spec env e has: c's, then e's over it. */
static json_t *
merged_env (const struct srv_chain *c, json_t *e)
{
  json_t *m = c->env_json ? json_loads (c->env_json, 0, NULL) : NULL;
  if (!json_is_object (m))
    {
      json_decref (m);
      m = json_object ();
    }
  if (e)
    json_object_update (m, e);
  return m;
}

static void *
build_main (void *arg)
{
  struct job *j = arg;
  struct srv *s = j->s;
  struct sbx_err err = { 0 };
  cleanup_close int log_fd = open_log (s, j->id);
  const char *base = json_string_value (json_object_get (j->spec, "base"));
  json_t *apt = json_object_get (j->spec, "apt_install");
  json_t *files = json_object_get (j->spec, "files");
  json_t *run = json_object_get (j->spec, "run_commands");
  json_t *env = json_object_get (j->spec, "env");
  const char *workdir = json_string_value (json_object_get (j->spec, "workdir"));
  struct srv_chain c = { 0 };
  int ok = 0;
  int64_t t0 = sbx_mono_ns ();
  srv_build_log (log_fd, "build of %s started\n", j->id);
  if (srv_chain_get (s, base, &c, &err) < 0)
    goto done;
  if (!img_is_builtin (base) && wait_built (s, base, &err) < 0)
    goto done;
  srv_chain_free (&c);
  if (srv_chain_get (s, base, &c, &err) < 0)
    goto done;
  const char *parent = img_is_builtin (base) ? NULL : base;
  char step1[SBX_ID_MAX] = "";
  if (apt)
    {
      json_t *s1 = json_pack ("{s:s,s:O}", "base", base, "apt_install", apt);
      srv_build_spec_id (s1, step1);
      int own = strcmp (step1, j->id) == 0;
      json_t *penv = merged_env (&c, NULL);
      int r = own ? 1 : claim (s, step1, c.base, parent, penv, c.workdir, s1, &err);
      json_decref (penv);
      json_decref (s1);
      if (r < 0)
        goto done;
      if (r == 1)
        {
          struct srv_build_step st = { .apt = apt, .env = merged_env (&c, NULL) };
          char layer[IMG_LAYER_ID_MAX];
          int sr = srv_build_step_run (s, &c, &st, log_fd, layer, &err);
          json_decref (st.env);
          if (sr == 0)
            {
              snprintf (c.ids[c.n++], IMG_LAYER_ID_MAX, "%s", layer);
              sr = srv_chain_fit (s, &c, &err);
            }
          if (!own)
            finished (s, step1, &c, &err, sr == 0, log_fd);
          if (sr < 0)
            goto done;
        }
      else
        {
          srv_build_log (log_fd, "step %s (apt_install) exists: reused\n", step1);
          if (wait_built (s, step1, &err) < 0)
            goto done;
        }
      if (!own)
        {
          srv_chain_free (&c);
          if (srv_chain_get (s, step1, &c, &err) < 0)
            goto done;
        }
    }
  if (files || run)
    {
      struct srv_build_step st = { .files = files, .run = run, .env = merged_env (&c, env),
                         .workdir = workdir ? workdir : c.workdir };
      char layer[IMG_LAYER_ID_MAX];
      int sr = srv_build_step_run (s, &c, &st, log_fd, layer, &err);
      json_decref (st.env);
      if (sr < 0)
        goto done;
      snprintf (c.ids[c.n++], IMG_LAYER_ID_MAX, "%s", layer);
      if (srv_chain_fit (s, &c, &err) < 0)
        goto done;
    }
  ok = 1;
  srv_build_log (log_fd, "build took %.1f s\n", (sbx_mono_ns () - t0) / 1e9);
done:
  finished (s, j->id, &c, &err, ok, log_fd);
  srv_chain_free (&c);
  json_decref (j->spec);
  free (j);
  return NULL;
}

void
srv_builds_recover (struct srv *s)
{
  struct store_image *list = NULL;
  size_t n = 0;
  struct sbx_err err = { 0 };
  if (store_image_list (s->store, &list, &n, &err) < 0)
    {
      LOG_WARN ("restart: list images: %s", err.msg);
      return;
    }
  static const char why[] = "interrupted: sbxd stopped during the build (post the spec again "
                            "to retry)";
  for (size_t i = 0; i < n; i++)
    {
      if (strcmp (list[i].status, "building") != 0)
        continue;
      if (store_image_update (s->store, list[i].id, "failed", NULL, why, &err) < 0)
        {
          LOG_WARN ("restart: record image %s as failed: %s", list[i].id, err.msg);
          continue;
        }
      cleanup_close int log_fd = open_log (s, list[i].id);
      srv_build_log (log_fd, "build failed: %s\n", why);
      LOG_INFO ("image %s: build interrupted by an sbxd restart, now failed", list[i].id);
    }
  store_image_list_free (list, n);
}

void
srv_h_image_build (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct sbx_err err = { 0 };
  json_t *spec = srv_build_spec_canonical (body, &err);
  if (!spec)
    {
      srv_reply_err (r, &err);
      return;
    }
  char id[SBX_ID_MAX];
  srv_build_spec_id (spec, id);
  const char *base = json_string_value (json_object_get (spec, "base"));
  struct srv_chain c;
  if (srv_chain_get (s, base, &c, &err) < 0)
    {
      json_decref (spec);
      if (err.code == SBX_E_NOT_FOUND)
        err.code = SBX_E_INVALID;
      sbx_err_wrap (&err, "base");
      srv_reply_err (r, &err);
      return;
    }
  /* the row says what the image will be: its config is known now, its layers at the end */
  json_t *env = merged_env (&c, json_object_get (spec, "env"));
  const char *wd = json_string_value (json_object_get (spec, "workdir"));
  int own = claim (s, id, c.base, img_is_builtin (base) ? NULL : base, env, wd ? wd : c.workdir,
                   spec, &err);
  json_decref (env);
  srv_chain_free (&c);
  if (own < 0)
    {
      json_decref (spec);
      srv_reply_err (r, &err);
      return;
    }
  struct store_image im;
  if (!own)
    {
      json_decref (spec);
      if (store_image_get (s->store, id, &im, &err) < 0)
        {
          srv_reply_err (r, &err);
          return;
        }
      r->status = 200;
      r->body = json_pack ("{s:s,s:s,s:b}", "image_id", id, "status", im.status, "cached", 1);
      store_image_clear (&im);
      return;
    }
  struct job *j = calloc (1, sizeof *j);
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init (&a);
  pthread_attr_setdetachstate (&a, PTHREAD_CREATE_DETACHED);
  if (j)
    {
      j->s = s;
      j->spec = spec;
      snprintf (j->id, sizeof j->id, "%s", id);
    }
  if (!j || pthread_create (&t, &a, build_main, j) != 0)
    {
      free (j);
      json_decref (spec);
      sbx_err_set (&err, SBX_E_INTERNAL, 0, "could not start the build");
      store_image_update (s->store, id, "failed", NULL, err.msg, NULL);
      srv_reply_err (r, &err);
      pthread_attr_destroy (&a);
      return;
    }
  pthread_attr_destroy (&a);
  LOG_INFO ("image %s: build started", id);
  r->status = 202;
  r->body = json_pack ("{s:s,s:s,s:b}", "image_id", id, "status", "building", "cached", 0);
}
