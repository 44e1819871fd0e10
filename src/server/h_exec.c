/* sandbox/exec: run one command in a live sandbox through its sbx-init socket.
 *
 * Each exec uses a connection of its own while it runs (an idle one left by an earlier
 * exec, HELLO done, or a new one: this saves a connect and a HELLO round trip), sends EXEC_START (and stdin as
 * EXEC_STDIN frames, written as the socket accepts them so a command that prints before
 * reading cannot deadlock us), and reads frames until EXEC_EXIT. Output is bounded while
 * it streams in. If the sandbox ends meanwhile (terminate, lifetime, crash), its
 * connection is cut and the caller gets 410 sandbox_terminated or 408 sandbox_timeout at
 * once. */
#include "server.h"
#include "exec_drive.h"
#include "../runtime/runtime.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct stream {
  struct proto_buf buf;
  uint64_t total;
  int truncated;
};

struct exec_run {
  struct srv_exec_run d; /* exec id, exit, agent error (exec_drive.h) */
  struct stream out, err;
  uint64_t max_output;
  int64_t started_ms;
};

static void
keep (struct stream *st, const uint8_t *p, size_t n, uint64_t max)
{
  st->total += n;
  size_t room = st->buf.len < max ? (size_t) (max - st->buf.len) : 0;
  if (n > room)
    {
      st->truncated = 1;
      n = room;
    }
  if (n && proto_buf_append (&st->buf, p, n) < 0)
    st->truncated = 1;
}

static void
on_output (void *ud, uint8_t type, const uint8_t *p, size_t n)
{
  struct exec_run *run = ud;
  keep (type == PROTO_EXEC_STDOUT ? &run->out : &run->err, p, n, run->max_output);
}

/* The command's whole environment: defaults, then the sandbox's env, then the exec's. */
char **
srv_exec_build_env (const struct srv_sandbox *sb, const struct srv_env *exec_env,
                    const char *term, size_t *n)
{
  const char *const defaults[][2] = {
    { "PATH", DEFAULT_PATH }, { "HOME", "/root" }, { "LANG", "C.UTF-8" },
    { "TERM", term ? term : "dumb" },
  };
  size_t cap = 4 + sb->env.n + exec_env->n;
  const char **names = calloc (cap, sizeof *names);
  const char **vals = calloc (cap, sizeof *vals);
  char **out = calloc (cap + 1, sizeof *out);
  size_t k = 0;
  if (!names || !vals || !out)
    goto fail;
  const struct srv_env *layers[] = { &sb->env, exec_env };
  for (size_t i = 0; i < 4; i++)
    {
      names[k] = defaults[i][0];
      vals[k++] = defaults[i][1];
    }
  for (size_t l = 0; l < 2; l++)
    for (size_t i = 0; i < layers[l]->n; i++)
      {
        size_t j = 0;
        while (j < k && strcmp (names[j], layers[l]->names[i]))
          j++;
        names[j] = layers[l]->names[i];
        vals[j] = layers[l]->values[i];
        if (j == k)
          k++;
      }
  for (size_t i = 0; i < k; i++)
    if (asprintf (&out[i], "%s=%s", names[i], vals[i]) < 0)
      {
        out[i] = NULL;
        goto fail;
      }
  free (names);
  free (vals);
  *n = k;
  return out;
fail:
  for (size_t i = 0; out && out[i]; i++)
    free (out[i]);
  free (out);
  free (names);
  free (vals);
  return NULL;
}

void
srv_strv_free (char **v)
{
  for (size_t i = 0; v && v[i]; i++)
    free (v[i]);
  free (v);
}

int
srv_agent_take (struct srv_sandbox *sb, uint32_t *exec_id, struct sbx_err *err)
{
  struct srv *s = sb->srv;
  pthread_mutex_lock (&s->lock);
  int fd = sb->n_idle ? sb->idle_fds[--sb->n_idle] : -1;
  if (++sb->next_exec_id == 0)
    sb->next_exec_id = 1; /* 0 is reserved */
  *exec_id = sb->next_exec_id;
  pthread_mutex_unlock (&s->lock);
  if (fd >= 0)
    return fd;
  struct proto_reader hello;
  fd = proto_client_connect (rt_sandbox_socket (sb->rt), &hello, err);
  proto_reader_free (&hello);
  return fd;
}

void
srv_agent_give (struct srv_sandbox *sb, int fd)
{
  struct srv *s = sb->srv;
  pthread_mutex_lock (&s->lock);
  if (sb->state == SRV_SB_LIVE && !s->stopping && sb->n_idle < SRV_AGENT_IDLE_MAX)
    {
      sb->idle_fds[sb->n_idle++] = fd;
      fd = -1;
    }
  pthread_mutex_unlock (&s->lock);
  if (fd >= 0)
    close (fd);
}

static json_t *
stream_json (json_t *o, const char *name, const struct stream *st)
{
  char *txt = NULL;
  size_t len = 0;
  int replaced = srv_utf8_sanitize (st->buf.data ? st->buf.data : (const uint8_t *) "",
                                    st->buf.len, &txt, &len);
  if (replaced < 0)
    return NULL;
  json_object_set_new (o, name, json_stringn (txt, len));
  free (txt);
  if (replaced)
    {
      char key[32];
      snprintf (key, sizeof key, "%s_b64", name);
      char *b = srv_base64 (st->buf.data, st->buf.len);
      if (!b)
        return NULL;
      json_object_set_new (o, key, json_string (b));
      free (b);
    }
  return o;
}

static void
record (struct srv *s, const struct srv_exec_req *req, const struct exec_run *run,
        const char *error)
{
  json_t *a = json_array ();
  for (size_t i = 0; i < req->argc; i++)
    json_array_append_new (a, json_string (req->argv[i]));
  char *argv_json = json_dumps (a, JSON_COMPACT);
  json_decref (a);
  struct store_exec e = {
    .sandbox_id = req->id,
    .argv_json = argv_json,
    .has_exit_code = run->d.got_exit,
    .exit_code = run->d.exit.exit_code,
    .timed_out = run->d.exit.timed_out,
    .truncated = run->out.truncated || run->err.truncated,
    .started_at_ms = run->started_ms,
    .duration_ms = run->d.got_exit ? (int64_t) (run->d.exit.duration_us / 1000)
                                 : sbx_now_ms () - run->started_ms,
    .stdout_bytes = run->d.got_exit ? run->d.exit.stdout_bytes : run->out.total,
    .stderr_bytes = run->d.got_exit ? run->d.exit.stderr_bytes : run->err.total,
    .error = error,
  };
  struct sbx_err err = { 0 };
  if (store_exec_record (s->store, &e, &err) < 0)
    LOG_ERROR ("audit exec in %s: %s", req->id, err.msg);
  free (argv_json);
}

/* The sandbox ended under an exec or agent request (or sbxd is stopping): answer why.
 * Also used by agentc.c. */
void
srv_reply_sandbox_ended (struct srv_sandbox *sb, const char *what, struct srv_reply *r)
{
  struct srv *s = sb->srv;
  pthread_mutex_lock (&s->lock);
  int stopping_now = s->stopping;
  pthread_mutex_unlock (&s->lock);
  /* The connection ended: if the sandbox is ending, the supervisor says so within a
   * moment (PID 1's pidfd); when sbxd is stopping the sandbox stays, so do not wait. */
  int state = srv_sandbox_wait_ended (sb, stopping_now ? 0 : 2000);
  pthread_mutex_lock (&s->lock);
  int code = sb->end_code;
  int stopping = s->stopping;
  char reason[128];
  snprintf (reason, sizeof reason, "%s", sb->reason);
  pthread_mutex_unlock (&s->lock);
  char msg[256];
  if (state == SRV_SB_LIVE)
    {
      if (stopping)
        {
          snprintf (msg, sizeof msg, "sbxd is shutting down; the %s was cut", what);
          srv_reply_http (r, 503, "unavailable", msg);
        }
      else
        srv_reply_error (r, SBX_E_EXEC_FAILED, "lost the connection to the sandbox agent");
      return;
    }
  if (code == SBX_E_TIMEOUT)
    snprintf (msg, sizeof msg, "sandbox '%s' exceeded its timeout and was terminated", sb->id);
  else
    snprintf (msg, sizeof msg, "sandbox '%s' has been terminated (%s)", sb->id, reason);
  srv_reply_error (r, code == SBX_E_TIMEOUT ? SBX_E_TIMEOUT : SBX_E_TERMINATED, msg);
}

static void
exec_in (struct srv *s, struct srv_sandbox *sb, const struct srv_exec_req *req,
         struct srv_reply *r)
{
  struct sbx_err err = { 0 };
  struct proto_reader rd;
  struct proto_buf out = { 0 };
  struct exec_run run;
  memset (&run, 0, sizeof run);
  proto_reader_init (&rd);
  size_t envc = 0;
  char **env = srv_exec_build_env (sb, &req->env, NULL, &envc);
  const char *cwd = req->workdir ? req->workdir : sb->workdir;
  struct proto_exec_req pr = {
    .argv = req->argv, .argc = req->argc, .env = env, .envc = envc,
    .cwd = (char *) cwd,
    .stdin_mode = req->has_stdin ? PROTO_STDIN_PIPE : PROTO_STDIN_NULL,
    .timeout_ms = req->timeout_ms, .max_output = req->max_output,
  };
  /* The connection first: the frames carry its exec id. */
  int fd = srv_agent_take (sb, &run.d.xid, &err);
  if (fd >= 0 && (!env || srv_exec_frames (&pr, run.d.xid, req->stdin_data, req->stdin_len,
                                           &out) < 0))
    {
      srv_reply_encode_error (r, env != NULL);
      goto done;
    }

  int reg = fd >= 0 ? srv_exec_register (sb, fd) : -1;
  if (reg == -2)
    {
      srv_reply_http (r, 429, "too_many_requests",
                      "too many commands running in this sandbox at once; retry later");
      r->retry_after = 1;
      goto done;
    }
  if (fd < 0 || reg < 0)
    {
      if (fd >= 0)
        close (fd);
      fd = -1;
      pthread_mutex_lock (&s->lock);
      int live = sb->state == SRV_SB_LIVE && !s->stopping;
      pthread_mutex_unlock (&s->lock);
      if (live)
        {
          LOG_ERROR ("exec in %s: %s", sb->id, err.msg);
          srv_reply_error (r, SBX_E_EXEC_FAILED, "could not reach the sandbox agent");
        }
      else
        srv_reply_sandbox_ended (sb, "command", r);
      goto done;
    }
  sbx_set_nonblock (fd, 1);
  run.started_ms = sbx_now_ms ();
  run.max_output = req->max_output;
  run.d.timeout_ms = req->timeout_ms;
  run.d.on_output = on_output;
  run.d.ud = &run;
  int rc = srv_exec_drive (fd, &rd, &out, &run.d, &err);
  srv_exec_unregister (sb, fd);
  if (rc == 1)
    {
      record (s, req, &run, "the sandbox ended during the command");
      srv_reply_sandbox_ended (sb, "command", r);
      goto done;
    }
  if (rc < 0 || run.d.agent_error_set)
    {
      const char *why = rc < 0 ? err.msg : run.d.agent_error;
      uint32_t code = rc < 0 ? SBX_E_EXEC_FAILED : run.d.agent_error_code;
      record (s, req, &run, why);
      /* The caller's mistakes (no such workdir) and the agent's limits are answered as a
       * streamed exec answers them (inside_reply_agent_error), not as sbx failing. */
      if (code == SBX_E_INVALID)
        srv_reply_error (r, SBX_E_INVALID, why);
      else if (code == SBX_E_CAPACITY)
        {
          srv_reply_http (r, 429, "too_many_requests", why);
          r->retry_after = 1;
        }
      else
        {
          LOG_ERROR ("exec in %s failed: %s", sb->id, why);
          srv_reply_error (r, SBX_E_EXEC_FAILED, why);
        }
      goto done;
    }
  record (s, req, &run, NULL);
  srv_metrics_exec_output (run.out.total + run.err.total);
  if (proto_reader_pending (&rd) == 0)
    {
      srv_agent_give (sb, fd); /* finished cleanly: the next exec skips connect + HELLO */
      fd = -1;
    }
  json_t *o = json_object ();
  json_object_set_new (o, "exit_code", json_integer (run.d.exit.exit_code));
  json_object_set_new (o, "returncode", json_integer (run.d.exit.exit_code));
  if (!stream_json (o, "stdout", &run.out) || !stream_json (o, "stderr", &run.err))
    {
      json_decref (o);
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory encoding the output");
      goto done;
    }
  json_object_set_new (o, "duration_ms", json_integer ((json_int_t) (run.d.exit.duration_us / 1000)));
  json_object_set_new (o, "truncated",
                       json_boolean (run.out.truncated || run.err.truncated
                                     || run.d.exit.stdout_truncated || run.d.exit.stderr_truncated));
  json_object_set_new (o, "timed_out", json_boolean (run.d.exit.timed_out));
  if (run.d.exit.signal)
    json_object_set_new (o, "signal", json_integer (run.d.exit.signal));
  json_object_set_new (o, "usage",
                       json_pack ("{s:I,s:I}", "cpu_ms", (json_int_t) (run.d.exit.cpu_us / 1000),
                                  "max_rss_kb", (json_int_t) run.d.exit.max_rss_kb));
  r->status = 200;
  r->body = o;
done:
  if (fd >= 0)
    close (fd);
  proto_reader_free (&rd);
  proto_buf_free (&out);
  proto_buf_free (&run.out.buf);
  proto_buf_free (&run.err.buf);
  srv_strv_free (env);
}

/* A plain exec's answer is held whole until its client has read it (up to ~13 MB at the
 * default max_output): clients that do not read could grow sbxd without bound. Past
 * max_unread_mb of such answers, refuse before running anything: 1 and r filled. */
static int
unread_over_budget (struct srv *s, struct srv_reply *r)
{
  int64_t unread = __atomic_load_n (&s->unread_bytes, __ATOMIC_RELAXED);
  if (unread <= (int64_t) s->cfg.max_unread_bytes)
    return 0;
  char msg[200];
  snprintf (msg, sizeof msg,
            "sbxd holds %lld MiB of answers its clients have not read (max_unread_mb %llu): "
            "read them, or retry later", (long long) (unread >> 20),
            (unsigned long long) (s->cfg.max_unread_bytes >> 20));
  srv_reply_error (r, SBX_E_CAPACITY, msg);
  return 1;
}

void
srv_h_exec (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct srv_exec_req req;
  struct sbx_err err = { 0 };
  if (srv_exec_is_inside (body))
    {
      srv_h_exec_inside (s, body, r); /* stream, background, pty, exec_id: h_inside.c */
      return;
    }
  if (srv_parse_exec (body, &s->cfg, &req, &err) < 0)
    {
      srv_reply_err (r, &err);
      return;
    }
  int64_t t0 = sbx_mono_ns ();
  struct srv_sandbox *sb = req.id_valid ? srv_sandbox_get (s, req.id) : NULL;
  pthread_mutex_lock (&s->lock);
  int live = sb && sb->state == SRV_SB_LIVE;
  pthread_mutex_unlock (&s->lock);
  if (!sb)
    srv_reply_not_live (s, req.id, r);
  else if (!live)
    srv_reply_sandbox_ended (sb, "command", r);
  else if (!unread_over_budget (s, r))
    exec_in (s, sb, &req, r);
  if (r->status == 200)
    srv_metrics_exec (sbx_mono_ns () - t0, 0);
  srv_sandbox_put (sb);
  srv_exec_req_free (&req);
}
