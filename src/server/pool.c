/* The warm pool: sandboxes made ahead of time per key (built-in image, cpu, memory; the
 * network mode is always "none"), so that a create only has to claim one.
 *
 * A member is an ordinary registered sandbox (srv->live, watched by the supervisor, counted
 * against max_sandboxes) with pooled != SRV_POOL_NO: srv_sandbox_get does not find it, it
 * has no DB row, nothing was ever run in it (sbx-init idle, no connection made), and its
 * timer is its recycle time (an unclaimed member older than pool_max_age is replaced). A
 * marker file <state>/pool/<id>, written before the spawn, tells the next sbxd after a
 * crash that the sandbox was a member and is nobody's: srv_pool_recover destroys it.
 *
 * POOL_REFILLERS refill threads spawn members (off the request path) while a key is short
 * and the host has room; they sleep on a condition variable signalled by claims, deaths
 * and stop (a failed spawn backs off on a timed wait). A cold create that finds the host full
 * evicts a ready member (srv_reserve). All pool state is under srv->lock. */
#include "server.h"
#include "../images/images.h"
#include "images_srv.h"
#include "../runtime/runtime.h"
#include "../proto/proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_QUIET_MS 25
/* Refill threads: a drained pool refills two members at a time (sbxd has at least two
 * spawner processes, src/runtime/spawner.c). */
#define POOL_REFILLERS 2

struct pool_key {
  struct srv_pool_key k;
  struct srv_sandbox *ready; /* list through pool_next, oldest first */
  struct srv_sandbox **ready_tail; /* &ready, or the last member's pool_next: O(1) append */
  int n_ready;
  int spawning;
  int64_t retry_at_ms;       /* after a failed spawn: not before */
  int backoff_ms;
};

struct srv_pool {
  struct pool_key keys[SRV_POOL_KEYS_MAX + 1];
  int n_keys;
  int spawning;              /* all keys */
  int64_t last_claim_ms;     /* refills wait for a quiet moment after a claim */
  pthread_t threads[POOL_REFILLERS];
  int n_threads;
  pthread_cond_t cond;       /* with srv->lock */
  int stop;
};

static void
marker_path (struct srv *s, const char *id, char *out, size_t n)
{
  snprintf (out, n, "%s/pool/%s", s->cfg.state_dir, id);
}

static int
same_key (const struct srv_pool_key *a, const char *image, uint32_t cpu, uint64_t mem)
{
  return !strcmp (a->image, image) && a->cpu_millis == cpu && a->memory_mb == mem;
}

void
srv_pool_added_locked (struct srv *s, struct srv_sandbox *sb)
{
  struct pool_key *k = &s->pool->keys[sb->pool_key];
  /* Oldest first: claims take the head, so members seldom reach their recycle age. */
  sb->pool_next = NULL;
  *k->ready_tail = sb;
  k->ready_tail = &sb->pool_next;
  k->n_ready++;
}

static void
unlist_locked (struct srv *s, struct srv_sandbox *sb)
{
  if (!s->pool || sb->pool_key < 0)
    return;
  struct pool_key *k = &s->pool->keys[sb->pool_key];
  for (struct srv_sandbox **pp = &k->ready; *pp; pp = &(*pp)->pool_next)
    if (*pp == sb)
      {
        *pp = sb->pool_next;
        if (k->ready_tail == &sb->pool_next)
          k->ready_tail = pp;
        sb->pool_next = NULL;
        k->n_ready--;
        return;
      }
}

void
srv_pool_kick_locked (struct srv *s)
{
  if (s->pool)
    pthread_cond_broadcast (&s->pool->cond);
}

void
srv_pool_gone_locked (struct srv *s, struct srv_sandbox *sb)
{
  unlist_locked (s, sb);
  s->n_pool--;
  if (sb->pooled == SRV_POOL_DYING)
    s->n_pool_dying--;
  sb->pooled = SRV_POOL_NO;
  if (s->pool)
    pthread_cond_broadcast (&s->pool->cond);
}

/* Kill an unlisted member (no DB row to update, so not srv_sandbox_end). */
static void
end_member_locked (struct srv *s, struct srv_sandbox *sb, const char *why)
{
  sb->pooled = SRV_POOL_DYING;
  s->n_pool_dying++;
  if (sb->state == SRV_SB_LIVE)
    {
      sb->state = SRV_SB_ENDING;
      sb->end_code = SBX_E_TERMINATED;
      snprintf (sb->reason, sizeof sb->reason, "%s", why);
      pthread_cond_broadcast (&s->ended);
    }
  /* The registry's reference keeps rt valid while we hold the lock. */
  rt_sandbox_kill (sb->rt);
  LOG_DEBUG ("pool sandbox %s ending: %s", sb->id, why);
}

int
srv_pool_evict_locked (struct srv *s)
{
  if (!s->pool)
    return 0;
  /* The key with most ready members gives one up. */
  struct pool_key *best = NULL;
  for (int i = 0; i < s->pool->n_keys; i++)
    if (s->pool->keys[i].ready && (!best || s->pool->keys[i].n_ready > best->n_ready))
      best = &s->pool->keys[i];
  if (!best)
    return 0;
  struct srv_sandbox *sb = best->ready;
  unlist_locked (s, sb);
  end_member_locked (s, sb, "evicted from the pool for a create");
  return 1;
}

void
srv_pool_recycle (struct srv *s, struct srv_sandbox *sb)
{
  pthread_mutex_lock (&s->lock);
  if (sb->pooled == SRV_POOL_READY)
    {
      unlist_locked (s, sb);
      end_member_locked (s, sb, "pool member aged out");
      pthread_cond_broadcast (&s->pool->cond);
    }
  pthread_mutex_unlock (&s->lock);
}

void
srv_pool_destroyed (struct srv *s, const char *id)
{
  char path[PATH_MAX + 64];
  marker_path (s, id, path, sizeof path);
  if (unlink (path) < 0 && errno != ENOENT)
    LOG_WARN ("remove pool marker %s: %s", path, strerror (errno));
}

struct srv_sandbox *
srv_pool_claim (struct srv *s, const struct srv_create_req *req, json_t *body)
{
  struct srv_pool *p = s->pool;
  if (!p)
    return NULL;
  /* Volumes are mounted at spawn: such a create is always cold. */
  json_t *v = json_object_get (body, "volumes");
  if (v && !json_is_null (v) && !(json_is_object (v) && json_object_size (v) == 0))
    return NULL;
  struct pool_key *k = NULL;
  for (int i = 0; i < p->n_keys && !k; i++)
    if (p->keys[i].k.size > 0
        && same_key (&p->keys[i].k, req->image, req->cpu_millis, req->memory_mb))
      k = &p->keys[i];
  if (!k)
    return NULL;
  struct srv_sandbox *sb = NULL;
  pthread_mutex_lock (&s->lock);
  for (struct srv_sandbox *c = k->ready; c && !sb; c = c->pool_next)
    if (c->state == SRV_SB_LIVE)
      sb = c;
  if (sb)
    {
      unlist_locked (s, sb);
      sb->pooled = SRV_POOL_CLAIMING;
      sb->refs++;
      p->last_claim_ms = sbx_now_ms ();
      pthread_cond_broadcast (&p->cond);
    }
  pthread_mutex_unlock (&s->lock);
  if (!sb)
    srv_metrics_pool_miss ();
  return sb;
}

int
srv_pool_claim_done (struct srv_sandbox *sb, struct srv_env *env, char **workdir)
{
  struct srv *s = sb->srv;
  int ok = env != NULL;
  pthread_mutex_lock (&s->lock);
  int live = sb->state == SRV_SB_LIVE && sb->pooled == SRV_POOL_CLAIMING;
  if (live && ok)
    {
      /* The request's exec defaults, set before anyone can find the sandbox. */
      sb->env = *env;
      memset (env, 0, sizeof *env);
      sb->workdir = steal_ptr (workdir);
      sb->pooled = SRV_POOL_NO;
      s->n_pool--;
    }
  else if (live)
    end_member_locked (s, sb, "pool claim failed");
  pthread_mutex_unlock (&s->lock);
  if (live && ok)
    {
      srv_pool_destroyed (s, sb->id); /* the marker: it is the caller's now */
      return 0;
    }
  srv_sandbox_put (sb);
  return -1;
}

/* Spawn one member of key i (refill thread, lock not held). */
static int
spawn_member (struct srv *s, int i, struct sbx_err *err)
{
  const struct srv_pool_key *k = &s->pool->keys[i].k;
  char id[SBX_ID_MAX];
  if (sbx_id_new ("sb", id) < 0)
    return sbx_err_sys (err, "new sandbox id");
  char marker[PATH_MAX + 64];
  marker_path (s, id, marker, sizeof marker);
  /* The marker first: a crash during the spawn must not leave an unexplained sandbox. */
  int mfd = open (marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (mfd < 0)
    return sbx_err_sys (err, "create %s", marker);
  close (mfd);
  char rootfs[PATH_MAX];
  srv_layers_rdlock ();
  if (img_resolve (s->cfg.state_dir, k->image, 0, rootfs, err) < 0)
    {
      srv_layers_unlock ();
      unlink (marker);
      return -1;
    }
  /* Exactly what a cold create of this image builds (srv_image_spec). */
  const char *lowers[1] = { rootfs };
  struct rt_spec spec = { .id = id, .state_dir = s->cfg.state_dir,
                          .init_path = s->cfg.init_path, .rootfs = rootfs, .lowers = lowers,
                          .n_lowers = 1 };
  rt_limits_default (&spec.limits);
  spec.limits.cpu_millis = k->cpu_millis;
  spec.limits.memory_bytes = k->memory_mb * 1024 * 1024;
  struct rt_sandbox *rt = NULL;
  int rc = rt_sandbox_spawn (&spec, &rt, err);
  srv_layers_unlock ();
  if (rc < 0)
    {
      unlink (marker);
      return -1;
    }
  /* Connected ahead too (HELLO only, no exec: nothing runs inside), so the claimer's first
   * exec skips the connect and the HELLO round trip. Without it, the exec connects. */
  struct proto_reader hello;
  struct sbx_err cerr = { 0 };
  int afd = proto_client_connect (rt_sandbox_socket (rt), &hello, &cerr);
  proto_reader_free (&hello);
  if (afd >= 0)
    sbx_set_nonblock (afd, 1);
  int64_t recycle_at = sbx_now_ms () + (int64_t) s->cfg.pool_max_age_s * 1000;
  /* On failure the sandbox is destroyed, and its marker removed by the destroy path. */
  if (srv_sandbox_add_pooled (s, rt, recycle_at, i, afd, err) < 0)
    {
      unlink (marker);
      return -1;
    }
  LOG_DEBUG ("pool: sandbox %s ready (%s)", id, k->image);
  return 0;
}

static void *
refill_main (void *arg)
{
  struct srv *s = arg;
  struct srv_pool *p = s->pool;
  pthread_mutex_lock (&s->lock);
  while (!p->stop)
    {
      int64_t now = sbx_now_ms (), next_retry = 0;
      int pick = -1;
      /* Pool members never push the host past max_sandboxes (spawns in flight count). */
      int room = s->n_live - s->n_pool_dying + s->n_reserved + p->spawning
                 < s->cfg.max_sandboxes;
      for (int i = 0; room && pick < 0 && i < p->n_keys; i++)
        {
          struct pool_key *k = &p->keys[i];
          if (k->n_ready + k->spawning >= k->k.size)
            continue;
          /* A spawn takes a core for a few ms: right after a claim, the claimer's first
           * exec would wait for it. Unless the key ran dry, refill once claims pause. */
          int64_t at = k->retry_at_ms;
          if (k->n_ready > 0 && p->last_claim_ms + POOL_QUIET_MS > at)
            at = p->last_claim_ms + POOL_QUIET_MS;
          if (at > now)
            {
              if (!next_retry || at < next_retry)
                next_retry = at;
              continue;
            }
          pick = i;
        }
      if (pick < 0)
        {
          if (next_retry)
            {
              struct timespec ts;
              clock_gettime (CLOCK_MONOTONIC, &ts);
              int64_t ns = (int64_t) ts.tv_nsec + (next_retry - now) * 1000000;
              ts.tv_sec += ns / 1000000000;
              ts.tv_nsec = ns % 1000000000;
              pthread_cond_timedwait (&p->cond, &s->lock, &ts);
            }
          else
            pthread_cond_wait (&p->cond, &s->lock);
          continue;
        }
      struct pool_key *k = &p->keys[pick];
      k->spawning++;
      p->spawning++;
      pthread_mutex_unlock (&s->lock);
      struct sbx_err err = { 0 };
      int rc = spawn_member (s, pick, &err);
      pthread_mutex_lock (&s->lock);
      k->spawning--;
      p->spawning--;
      if (rc < 0)
        {
          k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : 1000;
          if (k->backoff_ms > 60000)
            k->backoff_ms = 60000;
          k->retry_at_ms = sbx_now_ms () + k->backoff_ms;
          LOG_WARN ("pool %s: %s (retry in %d s)", k->k.image, err.msg, k->backoff_ms / 1000);
        }
      else
        k->backoff_ms = 0;
      /* A cold create took the last slot while we spawned: give the new member back. */
      while (s->n_live - s->n_pool_dying + s->n_reserved > s->cfg.max_sandboxes
             && srv_pool_evict_locked (s))
        ;
    }
  pthread_mutex_unlock (&s->lock);
  return NULL;
}

static void
add_key (struct srv_pool *p, const struct srv_pool_key *k)
{
  for (int i = 0; i < p->n_keys; i++)
    if (same_key (&p->keys[i].k, k->image, k->cpu_millis, k->memory_mb))
      {
        p->keys[i].k.size = k->size; /* a listed key overrides the default's size */
        return;
      }
  p->keys[p->n_keys].k = *k;
  p->keys[p->n_keys].ready_tail = &p->keys[p->n_keys].ready;
  p->n_keys++;
}

int
srv_pool_start (struct srv *s, struct sbx_err *err)
{
  struct srv_pool *p = calloc (1, sizeof *p);
  if (!p)
    return sbx_err_sys (err, "allocate pool");
  struct srv_pool_key def = { .cpu_millis = SRV_CPU_DEFAULT_MILLIS,
                              .memory_mb = SRV_MEMORY_DEFAULT_MB, .size = s->cfg.pool_size };
  snprintf (def.image, sizeof def.image, "%s", SRV_DEFAULT_IMAGE);
  add_key (p, &def);
  for (int i = 0; i < s->cfg.n_pool_keys; i++)
    add_key (p, &s->cfg.pool_keys[i]);
  int total = 0;
  for (int i = 0; i < p->n_keys; i++)
    total += p->keys[i].k.size;
  if (total == 0)
    {
      free (p);
      return 0; /* no pool */
    }
  char dir[PATH_MAX + 16];
  snprintf (dir, sizeof dir, "%s/pool", s->cfg.state_dir);
  if (sbx_mkdir_p (dir, 0700) < 0)
    {
      free (p);
      return sbx_err_sys (err, "create %s", dir);
    }
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&p->cond, &ca);
  pthread_condattr_destroy (&ca);
  s->pool = p;
  for (int i = 0; i < POOL_REFILLERS; i++)
    {
      int e = pthread_create (&p->threads[i], NULL, refill_main, s);
      if (e && i == 0)
        {
          s->pool = NULL;
          free (p);
          return sbx_err_set (err, SBX_E_INTERNAL, e, "start pool: %s", strerror (e));
        }
      if (e)
        break; /* one refill thread is enough to work */
      p->n_threads++;
    }
  LOG_INFO ("warm pool: %d sandboxes over %d key(s), recycled after %d s", total, p->n_keys,
            s->cfg.pool_max_age_s);
  return 0;
}

void
srv_pool_stop (struct srv *s)
{
  struct srv_pool *p = s->pool;
  if (!p)
    return;
  pthread_mutex_lock (&s->lock);
  p->stop = 1;
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&s->lock);
  for (int i = 0; i < p->n_threads; i++)
    pthread_join (p->threads[i], NULL);
  /* Members are nobody's: they do not outlive this sbxd (the supervisor still runs and
   * destroys them as their PID 1 goes). */
  pthread_mutex_lock (&s->lock);
  for (int i = 0; i < p->n_keys; i++)
    while (p->keys[i].ready)
      {
        struct srv_sandbox *sb = p->keys[i].ready;
        unlist_locked (s, sb);
        end_member_locked (s, sb, "sbxd stopping");
      }
  struct timespec dl;
  clock_gettime (CLOCK_MONOTONIC, &dl);
  dl.tv_sec += 10;
  while (s->n_pool > 0)
    if (pthread_cond_timedwait (&s->ended, &s->lock, &dl) != 0)
      break;
  int left = s->n_pool;
  pthread_mutex_unlock (&s->lock);
  if (left)
    LOG_WARN ("pool: %d members still ending at stop (the next start removes them)", left);
}

int
srv_pool_stats (struct srv *s, struct srv_pool_stat *out, int max)
{
  struct srv_pool *p = s->pool;
  if (!p)
    return 0;
  int n = 0;
  pthread_mutex_lock (&s->lock);
  for (int i = 0; i < p->n_keys && n < max; i++, n++)
    {
      out[n].key = p->keys[i].k;
      out[n].ready = p->keys[i].n_ready;
      out[n].spawning = p->keys[i].spawning;
    }
  pthread_mutex_unlock (&s->lock);
  return n;
}

void
srv_pool_recover (struct srv *s)
{
  char dir[PATH_MAX + 16];
  snprintf (dir, sizeof dir, "%s/pool", s->cfg.state_dir);
  DIR *d = opendir (dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (!sbx_id_valid (de->d_name, "sb"))
        continue;
      struct store_sandbox rec;
      if (store_sandbox_get (s->store, de->d_name, &rec, NULL) == 0)
        {
          /* Claimed just before the crash: a caller's sandbox; recovery keeps it. */
          store_sandbox_clear (&rec);
        }
      else
        {
          srv_sandbox_dispose (s, de->d_name);
          LOG_INFO ("removed pool sandbox %s of an earlier sbxd", de->d_name);
        }
      srv_pool_destroyed (s, de->d_name);
    }
  closedir (d);
}

/* Config keys: "pool_size", "pool_max_age" and "pool": [{"image", "cpu", "memory_mb",
 * "size"}]. 1 handled, 0 not a pool key, -1 bad value. */
int
srv_config_pool_key (struct srv_config *c, const char *key, json_t *v, struct sbx_err *err)
{
  if (!strcmp (key, "pool_size") || !strcmp (key, "pool_max_age"))
    {
      json_int_t n = json_integer_value (v);
      int age = !strcmp (key, "pool_max_age");
      if (!json_is_integer (v) || n < (age ? 1 : 0) || n > (age ? SRV_TIMEOUT_MAX : SRV_POOL_SIZE_MAX))
        return sbx_err_set (err, SBX_E_INVALID, 0, "config %s: expected an integer in %d..%d",
                            key, age ? 1 : 0, age ? SRV_TIMEOUT_MAX : SRV_POOL_SIZE_MAX);
      if (age)
        c->pool_max_age_s = (int) n;
      else
        c->pool_size = (int) n;
      return 1;
    }
  if (strcmp (key, "pool"))
    return 0;
  if (!json_is_array (v) || json_array_size (v) > SRV_POOL_KEYS_MAX)
    return sbx_err_set (err, SBX_E_INVALID, 0, "config pool: expected an array of at most %d "
                        "{\"image\", \"cpu\", \"memory_mb\", \"size\"}", SRV_POOL_KEYS_MAX);
  size_t i;
  json_t *e;
  c->n_pool_keys = 0;
  json_array_foreach (v, i, e)
    {
      struct srv_pool_key k = { .cpu_millis = SRV_CPU_DEFAULT_MILLIS,
                                .memory_mb = SRV_MEMORY_DEFAULT_MB };
      const char *image = json_string_value (json_object_get (e, "image"));
      json_t *cpu = json_object_get (e, "cpu"), *mem = json_object_get (e, "memory_mb");
      json_t *size = json_object_get (e, "size");
      if (!json_is_object (e) || json_object_size (e) != (size_t) (1 + !!image + !!cpu + !!mem)
          || !json_is_integer (size))
        return sbx_err_set (err, SBX_E_INVALID, 0, "config pool[%zu]: expected {\"image\", "
                            "\"cpu\", \"memory_mb\", \"size\"} (size required)", i);
      snprintf (k.image, sizeof k.image, "%s", image ? image : SRV_DEFAULT_IMAGE);
      if (!img_is_builtin (k.image))
        return sbx_err_set (err, SBX_E_INVALID, 0, "config pool[%zu].image: '%s' is not a "
                            "built-in image", i, k.image);
      if (cpu)
        {
          double x = json_number_value (cpu);
          if (!json_is_number (cpu) || x < SRV_CPU_MIN_MILLIS / 1000.0
              || x * 1000 > c->max_cpu_millis)
            return sbx_err_set (err, SBX_E_INVALID, 0, "config pool[%zu].cpu: out of range", i);
          k.cpu_millis = (uint32_t) (x * 1000 + 0.5);
        }
      if (mem)
        {
          json_int_t m = json_integer_value (mem);
          if (!json_is_integer (mem) || m < SRV_MEMORY_MIN_MB || (uint64_t) m > c->max_memory_mb)
            return sbx_err_set (err, SBX_E_INVALID, 0, "config pool[%zu].memory_mb: out of "
                                "range", i);
          k.memory_mb = (uint64_t) m;
        }
      json_int_t n = json_integer_value (size);
      if (n < 0 || n > SRV_POOL_SIZE_MAX)
        return sbx_err_set (err, SBX_E_INVALID, 0, "config pool[%zu].size: expected 0..%d", i,
                            SRV_POOL_SIZE_MAX);
      k.size = (int) n;
      c->pool_keys[c->n_pool_keys++] = k;
    }
  return 1;
}
