/* One step of an image build in a build sandbox: a fresh sandbox on the image's chain
 * (no network, like every sandbox; bigger limits; the capabilities dpkg needs), the
 * downloaded .debs installed offline from a read-only mount, files written and commands
 * run through the agent, and the sandbox's upper layer kept as a layer. At most
 * MAX_RUNNING_BUILDS such sandboxes run at once. */
#include "build_internal.h"
#include "exec_drive.h"

#include <linux/capability.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD_TIMEOUT_MS (30u * 60 * 1000)
#define BUILD_MEMORY (2ull << 30)
#define BUILD_DISK (4ull << 30)
#define DEBS_TARGET "/run/sbx-debs"

/* Build sandboxes running at once (they are big: 6 GiB memory, 4 GiB disk each); the
 * others wait in line, still "building". They do not count against max_sandboxes. */
#define MAX_RUNNING_BUILDS 2
static int running_builds;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_free = PTHREAD_COND_INITIALIZER;

void
srv_build_log (int fd, const char *fmt, ...)
{
  char buf[2048];
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  if (n > 0)
    sbx_write_all (fd, buf, (size_t) n < sizeof buf ? (size_t) n : sizeof buf - 1);
}

/* ---- running a command in the build sandbox ------------------------------------------ */

static void
to_log (void *ud, uint8_t type, const uint8_t *p, size_t n)
{
  sbx_write_all (*(int *) ud, p, n);
}

/* Run argv in the sandbox with env and cwd, stdin from data (NULL: /dev/null), output to
 * log_fd. *code gets the exit code (124: timed out). */
static int
run_in (struct rt_sandbox *rt, char **argv, char **env, const char *cwd, const char *data,
        size_t dlen, int log_fd, int *code, struct sbx_err *err)
{
  struct proto_reader rd;
  struct proto_buf out = { 0 };
  size_t argc = 0, envc = 0;
  while (argv[argc])
    argc++;
  while (env[envc])
    envc++;
  struct proto_exec_req pr = { .argv = argv, .argc = argc, .env = env, .envc = envc,
                               .cwd = (char *) cwd,
                               .stdin_mode = data ? PROTO_STDIN_PIPE : PROTO_STDIN_NULL,
                               .timeout_ms = CMD_TIMEOUT_MS, .max_output = 0 };
  struct srv_exec_run run = { .xid = 1, .timeout_ms = CMD_TIMEOUT_MS, .on_output = to_log,
                              .ud = &log_fd };
  int rc = -1;
  int fd = -1;
  proto_reader_init (&rd);
  if (srv_exec_frames (&pr, run.xid, data, dlen, &out) < 0)
    {
      sbx_err_sys (err, "encode command");
      goto done;
    }
  proto_reader_free (&rd);
  fd = proto_client_connect (rt_sandbox_socket (rt), &rd, err);
  if (fd < 0)
    goto done;
  sbx_set_nonblock (fd, 1);
  int dr = srv_exec_drive (fd, &rd, &out, &run, err);
  if (dr == 1)
    sbx_err_set (err, SBX_E_EXEC_FAILED, 0, "the build sandbox ended");
  else if (dr == 0 && run.agent_error_set)
    sbx_err_set (err, SBX_E_EXEC_FAILED, 0, "agent: %s", run.agent_error);
  else if (dr == 0)
    {
      *code = run.exit.timed_out ? 124 : run.exit.exit_code;
      rc = 0;
    }
done:
  if (fd >= 0)
    close (fd);
  proto_reader_free (&rd);
  proto_buf_free (&out);
  return rc;
}

/* ---- one build step -------------------------------------------------------------------- */

static char **
make_env (json_t *env, int debian)
{
  size_t n = json_object_size (env) + 4, k = 0;
  char **v = calloc (n, sizeof *v);
  if (!v)
    return NULL;
  int has_path = json_object_get (env, "PATH") != NULL;
  if (!has_path)
    v[k++] = strdup ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  v[k++] = strdup ("HOME=/root");
  if (debian)
    v[k++] = strdup ("DEBIAN_FRONTEND=noninteractive");
  const char *name;
  json_t *val;
  json_object_foreach (env, name, val)
    {
      char *e;
      if (asprintf (&e, "%s=%s", name, json_string_value (val)) < 0)
        e = NULL;
      v[k++] = e;
    }
  for (size_t i = 0; i < k; i++)
    if (!v[i])
      {
        for (size_t j = 0; j < k; j++)
          free (v[j]);
        free (v);
        return NULL;
      }
  return v;
}

static int
run_cmd (struct rt_sandbox *rt, const char *what, char **argv, char **env, const char *cwd,
         const char *data, size_t dlen, int log_fd, struct sbx_err *err)
{
  int code = -1;
  int64_t t0 = sbx_mono_ns ();
  srv_build_log (log_fd, "$ %s\n", what);
  if (run_in (rt, argv, env, cwd, data, dlen, log_fd, &code, err) < 0)
    return -1;
  srv_build_log (log_fd, "[exit %d, %.1f s]\n", code, (sbx_mono_ns () - t0) / 1e9);
  if (code != 0)
    return sbx_err_set (err, SBX_E_INVALID, 0, "%.200s: exit status %d", what, code);
  return 0;
}

/* Run one step in a fresh build sandbox on chain c; its upper layer becomes *layer. */
int
srv_build_step_run (struct srv *s, const struct srv_chain *c, const struct srv_build_step *st,
                    int log_fd, char layer[IMG_LAYER_ID_MAX], struct sbx_err *err)
{
  struct srv_image_prep prep;
  memset (&prep, 0, sizeof prep);
  char work[PATH_MAX] = "";
  pthread_mutex_lock (&slot_lock);
  while (running_builds >= MAX_RUNNING_BUILDS)
    pthread_cond_wait (&slot_free, &slot_lock);
  running_builds++;
  pthread_mutex_unlock (&slot_lock);
  struct rt_sandbox *rt = NULL;
  char **env = NULL;
  int rc = -1;
  srv_layers_rdlock ();
  if (img_resolve (s->cfg.state_dir, c->base, 0, prep.base_rootfs, err) < 0)
    goto out;
  for (size_t i = 0; i < c->n; i++)
    {
      if (img_layer_path (s->cfg.state_dir, c->ids[c->n - 1 - i], prep.layer_paths[i], err) < 0)
        goto out;
      prep.lowers[prep.n_lowers++] = prep.layer_paths[i];
    }
  prep.lowers[prep.n_lowers++] = prep.base_rootfs;
  if (st->apt)
    {
      char rnd[SBX_ID_MAX];
      sbx_id_new ("w", rnd);
      snprintf (work, sizeof work, "%s/apt/%s", s->cfg.state_dir, rnd);
      if (sbx_mkdir_p (work, 0700) < 0)
        {
          sbx_err_sys (err, "mkdir '%s'", work);
          goto out;
        }
      if (srv_build_apt_download (s, c, st->apt, work, log_fd, err) < 0)
        goto out;
      snprintf (prep.vol_src[0], PATH_MAX, "%s/debs", work);
      snprintf (prep.vol_tgt[0], sizeof prep.vol_tgt[0], DEBS_TARGET);
      prep.vols[0] = (struct rt_volume) { .source = prep.vol_src[0], .target = prep.vol_tgt[0],
                                          .readonly = 1 };
      prep.n_volumes = 1;
    }
  char id[SBX_ID_MAX];
  sbx_id_new ("sb", id);
  struct rt_spec spec = { .id = id, .state_dir = s->cfg.state_dir, .init_path = s->cfg.init_path,
                          .die_with_parent = 1 };
  rt_limits_default (&spec.limits);
  spec.limits.cpu_millis = 0; /* builds may use every core */
  spec.limits.memory_bytes = BUILD_MEMORY + BUILD_DISK; /* the tmpfs upper counts as memory */
  spec.limits.disk_bytes = BUILD_DISK;
  spec.limits.disk_inodes = 1u << 20;
  spec.limits.pids = 4096;
  /* dpkg and apt chown, chmod and switch ids: root of the build sandbox may do that to its
   * own files (a user namespace with a private id range; seccomp still applies). */
  spec.keep_caps = (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_DAC_READ_SEARCH)
                   | (1ull << CAP_FOWNER) | (1ull << CAP_FSETID) | (1ull << CAP_KILL)
                   | (1ull << CAP_SETGID) | (1ull << CAP_SETUID);
  srv_image_spec (&prep, &spec);
  if (rt_sandbox_spawn (&spec, &rt, err) < 0)
    goto out;
  srv_build_log (log_fd, "build sandbox %s started\n", id);
  env = make_env (st->env, 1);
  if (!env)
    {
      sbx_err_sys (err, "env");
      goto out;
    }
  if (st->apt)
    {
      char *argv[] = { "/bin/sh", "-c",
                       "set -e; ls " DEBS_TARGET "/*.deb >/dev/null 2>&1 || { echo 'nothing to "
                       "install: already in the image'; exit 0; }; "
                       "dpkg -i --force-confold " DEBS_TARGET "/*.deb || dpkg --configure -a",
                       NULL };
      if (run_cmd (rt, "apt-get install (offline, from the downloaded packages)", argv, env,
                   "/", NULL, 0, log_fd, err)
          < 0)
        goto out;
    }
  const char *cwd = st->workdir ? st->workdir : "/";
  if (st->workdir)
    {
      char *argv[] = { "/bin/mkdir", "-p", "--", (char *) st->workdir, NULL };
      if (run_cmd (rt, "mkdir -p workdir", argv, env, "/", NULL, 0, log_fd, err) < 0)
        goto out;
    }
  if (st->files)
    {
      const char *path;
      json_t *content;
      json_object_foreach (st->files, path, content)
        {
          char what[PATH_MAX + 16];
          snprintf (what, sizeof what, "write %s", path);
          char *argv[] = { "/bin/sh", "-c", "mkdir -p -- \"$(dirname -- \"$1\")\" && cat > \"$1\"",
                           "sh", (char *) path, NULL };
          if (run_cmd (rt, what, argv, env, "/", json_string_value (content),
                       json_string_length (content), log_fd, err)
              < 0)
            goto out;
        }
    }
  if (st->run)
    {
      size_t i;
      json_t *cmd;
      json_array_foreach (st->run, i, cmd)
        {
          char *argv[] = { "/bin/sh", "-c", (char *) json_string_value (cmd), NULL };
          if (run_cmd (rt, json_string_value (cmd), argv, env, cwd, NULL, 0, log_fd, err) < 0)
            goto out;
        }
    }
  /* Leftover background processes must not change files while they are copied. */
  if (rt_sandbox_freeze (rt, 1, err) < 0)
    goto out;
  const char *parent = c->n ? c->ids[c->n - 1] : c->base;
  uint64_t bytes = 0;
  if (img_layer_from_upper (s->cfg.state_dir, rt_sandbox_scratch_fd (rt), rt_sandbox_uid_base (rt),
                            parent, layer, &bytes, err)
      < 0)
    goto out;
  if (store_layer_put (s->store, layer, bytes, err) < 0)
    goto out;
  srv_build_log (log_fd, "layer %s (%.1f MB)\n", layer, bytes / 1e6);
  rt_sandbox_freeze (rt, 0, err);
  rc = 0;
out:
  srv_strv_free (env);
  rt_sandbox_destroy (rt);
  srv_layers_unlock ();
  if (*work)
    sbx_rm_rf (work);
  pthread_mutex_lock (&slot_lock);
  running_builds--;
  pthread_cond_broadcast (&slot_free);
  pthread_mutex_unlock (&slot_lock);
  return rc;
}
