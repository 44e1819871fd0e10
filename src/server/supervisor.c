/* The sandbox registry and the supervisor thread.
 *
 * Every sandbox with a host presence is in srv->live with one "registry" reference; HTTP
 * threads take more references while they use it. One thread owns lifetimes: an epoll
 * loop over each sandbox's pidfd (PID 1 gone: crashed, out of memory, or the end of a
 * kill we asked for), ONE CLOCK_REALTIME timerfd armed at the earliest deadline of all
 * sandboxes (deadlines.c; an absolute wall-clock time, so a deadline survives an sbxd
 * restart unchanged; an fd per sandbox would cap density at RLIMIT_NOFILE), and an
 * eventfd that wakes it to destroy sandboxes whose last reference was dropped by another
 * thread. Killing is immediate (any thread); cleanup
 * (rt_sandbox_destroy) happens once PID 1 is gone and nobody uses the handle. */
#include "server.h"
#include "../runtime/runtime.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { EV_PID = 1, EV_TIMER = 2, EV_WAKE = 3 };
static int wake_tag = EV_WAKE;
static int timer_tag = EV_TIMER;

int
srv_init (struct srv *s, const struct srv_config *cfg, struct sbx_err *err)
{
  memset (s, 0, sizeof *s);
  s->cfg = *cfg;
  s->epfd = s->evfd = s->timerfd = -1;
  pthread_mutex_init (&s->lock, NULL);
  pthread_mutex_init (&s->owner_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&s->ended, &ca);
  pthread_condattr_destroy (&ca);
  s->epfd = epoll_create1 (EPOLL_CLOEXEC);
  if (s->epfd < 0)
    return sbx_err_sys (err, "epoll_create1");
  s->evfd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->evfd < 0)
    return sbx_err_sys (err, "eventfd");
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &wake_tag };
  if (epoll_ctl (s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) < 0)
    return sbx_err_sys (err, "epoll_ctl eventfd");
  s->timerfd = timerfd_create (CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (s->timerfd < 0)
    return sbx_err_sys (err, "timerfd_create");
  struct epoll_event et = { .events = EPOLLIN, .data.ptr = &timer_tag };
  if (epoll_ctl (s->epfd, EPOLL_CTL_ADD, s->timerfd, &et) < 0)
    return sbx_err_sys (err, "epoll_ctl timerfd");
  return 0;
}

/* Under s->lock: arm the timer at the earliest deadline (or disarm it when there is
 * none). Done under the lock so that two threads cannot leave it armed at a stale time.
 * An absolute time already past fires at once. */
static int
arm_locked (struct srv *s, struct sbx_err *err)
{
  struct srv_deadline *first = srv_deadlines_first (&s->deadlines);
  int64_t at = first ? (first->at_ms > 0 ? first->at_ms : 1) : 0;
  if (at == s->timer_armed_ms)
    return 0;
  struct itimerspec its = { 0 };
  its.it_value.tv_sec = at / 1000;
  its.it_value.tv_nsec = (at % 1000) * 1000000;
  if (timerfd_settime (s->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
    return sbx_err_sys (err, "timerfd_settime");
  s->timer_armed_ms = at;
  return 0;
}

/* Under s->lock: queue (or move) sb's deadline and re-arm if it is now the earliest. */
static int
set_deadline_locked (struct srv *s, struct srv_sandbox *sb, int64_t at_ms, struct sbx_err *err)
{
  if (srv_deadlines_set (&s->deadlines, &sb->deadline, at_ms) < 0)
    return sbx_err_sys (err, "queue sandbox deadline");
  return arm_locked (s, err);
}

static void
wake (struct srv *s)
{
  uint64_t one = 1;
  if (write (s->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
    LOG_WARN ("wake supervisor: %s", strerror (errno));
}

int
srv_reserve (struct srv *s, struct sbx_err *err)
{
  int rc = 0;
  pthread_mutex_lock (&s->lock);
  /* Pool members on their way out no longer count; a ready one makes room when needed. */
  while (s->n_live - s->n_pool_dying + s->n_reserved >= s->cfg.max_sandboxes
         && srv_pool_evict_locked (s))
    ;
  if (s->n_live - s->n_pool_dying + s->n_reserved >= s->cfg.max_sandboxes)
    rc = sbx_err_set (err, SBX_E_CAPACITY, 0,
                      "at capacity: %d sandboxes are running (max_sandboxes); retry later",
                      s->n_live - s->n_pool + s->n_reserved);
  else
    s->n_reserved++;
  pthread_mutex_unlock (&s->lock);
  return rc;
}

void
srv_unreserve (struct srv *s)
{
  pthread_mutex_lock (&s->lock);
  s->n_reserved--;
  srv_pool_kick_locked (s);
  pthread_mutex_unlock (&s->lock);
}

int
srv_live_count (struct srv *s)
{
  pthread_mutex_lock (&s->lock);
  int n = s->n_live - s->n_pool; /* pool members are nobody's sandboxes */
  pthread_mutex_unlock (&s->lock);
  return n;
}

static struct srv_sandbox **
bucket (struct srv *s, const char *id)
{
  return &s->by_id[sbx_hash_str (id) % SRV_ID_BUCKETS];
}

/* Under s->lock: take sb out of the registry (list and hash). */
static void
unregister_locked (struct srv *s, struct srv_sandbox *sb)
{
  for (struct srv_sandbox **pp = &s->live; *pp; pp = &(*pp)->next)
    if (*pp == sb)
      {
        *pp = sb->next;
        s->n_live--;
        break;
      }
  for (struct srv_sandbox **pp = bucket (s, sb->id); *pp; pp = &(*pp)->hnext)
    if (*pp == sb)
      {
        *pp = sb->hnext;
        break;
      }
}

static void
sandbox_free (struct srv_sandbox *sb)
{
  for (int i = 0; i < sb->n_idle; i++)
    close (sb->idle_fds[i]);
  srv_env_free (&sb->env);
  free (sb->workdir);
  free (sb);
}

static int
sandbox_add (struct srv *s, struct rt_sandbox *rt, int64_t expires_at_ms, struct srv_env *env,
             char *workdir, int reserved, int pool_key, int agent_fd, struct sbx_err *err)
{
  struct srv_sandbox *sb = calloc (1, sizeof *sb);
  if (!sb)
    {
      if (agent_fd >= 0)
        close (agent_fd);
      sbx_err_sys (err, "allocate sandbox");
      goto fail;
    }
  if (agent_fd >= 0)
    sb->idle_fds[sb->n_idle++] = agent_fd; /* closed by sandbox_free */
  snprintf (sb->id, sizeof sb->id, "%s", rt_sandbox_id (rt));
  sb->srv = s;
  sb->rt = rt;
  sb->refs = 1; /* the registry's */
  sb->state = SRV_SB_LIVE;
  sb->expires_at_ms = expires_at_ms;
  sb->env = *env;
  memset (env, 0, sizeof *env);
  sb->workdir = workdir;
  workdir = NULL;
  sb->ev_pid.kind = EV_PID;
  sb->ev_pid.sb = sb;
  sb->pool_key = pool_key;
  sb->pooled = pool_key >= 0 ? SRV_POOL_READY : SRV_POOL_NO;
  pthread_mutex_lock (&s->lock);
  /* A deadline already past fires at once: the sandbox is then ended at once. */
  if (set_deadline_locked (s, sb, expires_at_ms, err) < 0)
    {
      srv_deadlines_remove (&s->deadlines, &sb->deadline);
      pthread_mutex_unlock (&s->lock);
      goto fail;
    }
  sb->next = s->live;
  s->live = sb;
  s->n_live++;
  struct srv_sandbox **b = bucket (s, sb->id);
  sb->hnext = *b;
  *b = sb;
  if (sb->pooled)
    {
      s->n_pool++;
      srv_pool_added_locked (s, sb);
    }
  if (reserved)
    s->n_reserved--;
  reserved = 0;
  pthread_mutex_unlock (&s->lock);
  /* Registered before it is watched: the supervisor may end it the moment it is added. */
  struct epoll_event ep = { .events = EPOLLIN, .data.ptr = &sb->ev_pid };
  if (epoll_ctl (s->epfd, EPOLL_CTL_ADD, rt_sandbox_pidfd (rt), &ep) < 0)
    {
      /* Nothing watches its PID 1: take it out as on_exit_of would. Its deadline or a
       * request may hold a reference meanwhile, so the last put destroys it. */
      int e = errno;
      pthread_mutex_lock (&s->lock);
      sb->state = SRV_SB_DEAD;
      unregister_locked (s, sb);
      srv_deadlines_remove (&s->deadlines, &sb->deadline);
      if (sb->pooled)
        srv_pool_gone_locked (s, sb);
      pthread_cond_broadcast (&s->ended);
      pthread_mutex_unlock (&s->lock);
      LOG_ERROR ("watch sandbox %s: %s", sb->id, strerror (e));
      srv_sandbox_put (sb); /* the registry's */
      return sbx_err_set (err, SBX_E_INTERNAL, e, "watch sandbox: %s", strerror (e));
    }
  return 0;
fail:
  if (reserved)
    srv_unreserve (s);
  if (sb)
    {
      sb->rt = NULL;
      sandbox_free (sb);
    }
  else
    {
      srv_env_free (env);
    }
  free (workdir);
  rt_sandbox_destroy (rt);
  return -1;
}

int
srv_sandbox_add (struct srv *s, struct rt_sandbox *rt, int64_t expires_at_ms,
                 struct srv_env *env, char *workdir, int reserved, struct sbx_err *err)
{
  return sandbox_add (s, rt, expires_at_ms, env, workdir, reserved, -1, -1, err);
}

int
srv_sandbox_add_pooled (struct srv *s, struct rt_sandbox *rt, int64_t recycle_at_ms, int key,
                        int agent_fd, struct sbx_err *err)
{
  struct srv_env none = { 0 };
  return sandbox_add (s, rt, recycle_at_ms, &none, NULL, 0, key, agent_fd, err);
}

int
srv_sandbox_set_expiry (struct srv_sandbox *sb, int64_t expires_at_ms, struct sbx_err *err)
{
  struct srv *s = sb->srv;
  int rc = 0;
  pthread_mutex_lock (&s->lock);
  sb->expires_at_ms = expires_at_ms;
  /* A dead sandbox left the heap for good (it is about to be freed). */
  if (sb->state != SRV_SB_DEAD)
    rc = set_deadline_locked (s, sb, expires_at_ms, err);
  pthread_mutex_unlock (&s->lock);
  return rc;
}

struct srv_sandbox *
srv_sandbox_get (struct srv *s, const char *id)
{
  struct srv_sandbox *found = NULL;
  pthread_mutex_lock (&s->lock);
  for (struct srv_sandbox *sb = *bucket (s, id); sb; sb = sb->hnext)
    if (!sb->pooled && !strcmp (sb->id, id)) /* pool members are nobody's yet */
      {
        sb->refs++;
        found = sb;
        break;
      }
  pthread_mutex_unlock (&s->lock);
  return found;
}

void
srv_sandbox_put (struct srv_sandbox *sb)
{
  if (!sb)
    return;
  struct srv *s = sb->srv;
  pthread_mutex_lock (&s->lock);
  int last = --sb->refs == 0;
  if (last)
    {
      sb->next_destroy = s->destroy_q;
      s->destroy_q = sb;
    }
  pthread_mutex_unlock (&s->lock);
  if (last)
    wake (s);
}

int
srv_sandbox_end (struct srv_sandbox *sb, int code, const char *reason)
{
  struct srv *s = sb->srv;
  pthread_mutex_lock (&s->lock);
  if (sb->state != SRV_SB_LIVE)
    {
      pthread_mutex_unlock (&s->lock);
      return 0;
    }
  sb->state = SRV_SB_ENDING;
  sb->end_code = code;
  snprintf (sb->reason, sizeof sb->reason, "%s", reason);
  /* The execs in flight get their answer now, not when the kill has propagated. */
  for (int i = 0; i < sb->n_exec_fds; i++)
    shutdown (sb->exec_fds[i], SHUT_RDWR);
  int pooled = sb->pooled;
  pthread_cond_broadcast (&s->ended);
  pthread_mutex_unlock (&s->lock);
  /* The caller's reference keeps rt valid; the kill itself needs no lock. */
  rt_sandbox_kill (sb->rt);
  if (pooled)
    {
      /* A pool member has no DB row (a claim in progress deletes the one it made). */
      LOG_DEBUG ("pool sandbox %s ending: %s", sb->id, reason);
      return 1;
    }
  struct sbx_err err = { 0 };
  if (store_sandbox_terminate (s->store, sb->id, sbx_now_ms (), reason, &err) < 0)
    LOG_ERROR ("record end of %s: %s", sb->id, err.msg);
  LOG_INFO ("sandbox %s ending: %s", sb->id, reason);
  return 1;
}

int
srv_sandbox_wait_ended (struct srv_sandbox *sb, int timeout_ms)
{
  struct srv *s = sb->srv;
  struct timespec dl;
  clock_gettime (CLOCK_MONOTONIC, &dl);
  dl.tv_sec += timeout_ms / 1000;
  dl.tv_nsec += (long) (timeout_ms % 1000) * 1000000;
  if (dl.tv_nsec >= 1000000000)
    {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000;
    }
  pthread_mutex_lock (&s->lock);
  while (sb->state == SRV_SB_LIVE)
    if (pthread_cond_timedwait (&s->ended, &s->lock, &dl) == ETIMEDOUT)
      break;
  int st = sb->state;
  pthread_mutex_unlock (&s->lock);
  return st;
}

int
srv_exec_register (struct srv_sandbox *sb, int fd)
{
  struct srv *s = sb->srv;
  int rc = -1;
  pthread_mutex_lock (&s->lock);
  if (sb->state == SRV_SB_LIVE && !s->stopping)
    {
      if (sb->n_exec_fds < (int) (sizeof sb->exec_fds / sizeof sb->exec_fds[0]))
        {
          sb->exec_fds[sb->n_exec_fds++] = fd;
          rc = 0;
        }
      else
        rc = -2;
    }
  pthread_mutex_unlock (&s->lock);
  return rc;
}

void
srv_exec_unregister (struct srv_sandbox *sb, int fd)
{
  struct srv *s = sb->srv;
  pthread_mutex_lock (&s->lock);
  for (int i = 0; i < sb->n_exec_fds; i++)
    if (sb->exec_fds[i] == fd)
      {
        sb->exec_fds[i] = sb->exec_fds[--sb->n_exec_fds];
        break;
      }
  pthread_mutex_unlock (&s->lock);
}

void
srv_cut_all_execs (struct srv *s)
{
  pthread_mutex_lock (&s->lock);
  s->stopping = 1;
  for (struct srv_sandbox *sb = s->live; sb; sb = sb->next)
    for (int i = 0; i < sb->n_exec_fds; i++)
      shutdown (sb->exec_fds[i], SHUT_RDWR);
  pthread_mutex_unlock (&s->lock);
}

/* PID 1 of the sandbox is gone. */
static void
on_exit_of (struct srv *s, struct srv_sandbox *sb)
{
  epoll_ctl (s->epfd, EPOLL_CTL_DEL, rt_sandbox_pidfd (sb->rt), NULL);
  /* Not ended by us: it crashed, or the OOM killer took PID 1. */
  const char *why = rt_sandbox_oom_killed (sb->rt) ? "out of memory" : "sandbox crashed";
  srv_sandbox_end (sb, SBX_E_TERMINATED, why);
  pthread_mutex_lock (&s->lock);
  sb->state = SRV_SB_DEAD;
  unregister_locked (s, sb);
  /* If it was the earliest, the timer fires for nothing and is re-armed then. */
  srv_deadlines_remove (&s->deadlines, &sb->deadline);
  if (sb->pooled)
    srv_pool_gone_locked (s, sb);
  srv_pool_kick_locked (s); /* a slot is free: the pool may refill */
  pthread_cond_broadcast (&s->ended);
  pthread_mutex_unlock (&s->lock);
  srv_sandbox_put (sb); /* the registry's reference */
}

/* The timer fired: end every sandbox whose deadline has come (recycle the pool members
 * among them), earliest first, then arm the timer at the next deadline. */
static void
on_timer (struct srv *s)
{
  uint64_t v;
  /* EAGAIN: re-armed meanwhile; what is due is found below all the same. */
  if (read (s->timerfd, &v, sizeof v) < 0 && errno != EAGAIN)
    LOG_WARN ("read timerfd: %s", strerror (errno));
  for (;;)
    {
      pthread_mutex_lock (&s->lock);
      /* Whatever it was armed at has fired (or was re-armed): arm again below. */
      s->timer_armed_ms = 0;
      struct srv_deadline *d = srv_deadlines_pop_due (&s->deadlines, sbx_now_ms ());
      if (!d)
        {
          struct sbx_err err = { 0 };
          if (arm_locked (s, &err) < 0)
            LOG_ERROR ("supervisor timer: %s", err.msg); /* cannot happen with valid times */
          pthread_mutex_unlock (&s->lock);
          return;
        }
      struct srv_sandbox *sb
          = (struct srv_sandbox *) ((char *) d - offsetof (struct srv_sandbox, deadline));
      sb->refs++; /* used unlocked below */
      int pooled = sb->pooled;
      pthread_mutex_unlock (&s->lock);
      if (pooled == SRV_POOL_READY)
        srv_pool_recycle (s, sb);
      /* A member being claimed keeps living: the claim gives it its lifetime (which queues
       * its deadline again). A dying member is already on its way out. */
      else if (pooled == SRV_POOL_NO)
        srv_sandbox_end (sb, SBX_E_TIMEOUT, "timeout");
      srv_sandbox_put (sb);
    }
}

static void
drain_destroy_queue (struct srv *s)
{
  for (;;)
    {
      pthread_mutex_lock (&s->lock);
      struct srv_sandbox *sb = s->destroy_q;
      if (sb)
        s->destroy_q = sb->next_destroy;
      pthread_mutex_unlock (&s->lock);
      if (!sb)
        return;
      LOG_DEBUG ("destroying sandbox %s", sb->id);
      int was_pooled = sb->pool_key >= 0;
      rt_sandbox_destroy (sb->rt);
      if (was_pooled)
        srv_pool_destroyed (s, sb->id);
      sandbox_free (sb);
    }
}

static void *
supervisor_main (void *arg)
{
  struct srv *s = arg;
  for (;;)
    {
      struct epoll_event evs[32];
      int n = epoll_wait (s->epfd, evs, 32, -1);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          LOG_ERROR ("supervisor epoll_wait: %s", strerror (errno));
          return NULL;
        }
      for (int i = 0; i < n; i++)
        {
          int kind = *(int *) evs[i].data.ptr;
          if (kind == EV_WAKE)
            {
              uint64_t v;
              if (read (s->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
                LOG_WARN ("read eventfd: %s", strerror (errno));
            }
          else if (kind == EV_TIMER)
            on_timer (s);
          else if (kind == EV_PID)
            {
              struct srv_sandbox *sb
                  = (struct srv_sandbox *) ((char *) evs[i].data.ptr
                                            - offsetof (struct srv_sandbox, ev_pid));
              on_exit_of (s, sb);
            }
        }
      drain_destroy_queue (s);
      pthread_mutex_lock (&s->lock);
      int quit = !s->running;
      pthread_mutex_unlock (&s->lock);
      if (quit)
        return NULL;
    }
}

int
srv_super_start (struct srv *s, struct sbx_err *err)
{
  s->running = 1;
  int e = pthread_create (&s->thread, NULL, supervisor_main, s);
  if (e)
    {
      s->running = 0;
      return sbx_err_set (err, SBX_E_INTERNAL, e, "start supervisor: %s", strerror (e));
    }
  return 0;
}

void
srv_super_stop (struct srv *s)
{
  pthread_mutex_lock (&s->lock);
  int was = s->running;
  s->running = 0;
  pthread_mutex_unlock (&s->lock);
  if (!was)
    return;
  wake (s);
  pthread_join (s->thread, NULL);
}
