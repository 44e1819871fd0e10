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
 * dies (die_with_parent), and a failed build can be retried by posting the spec again. */
#include "images_srv.h"
#include "../proto/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define APT_GET "/usr/bin/apt-get"
#define MAX_PACKAGES 100
#define MAX_COMMANDS 100
#define MAX_FILES 100
#define CMD_TIMEOUT_MS (30u * 60 * 1000)
#define BUILD_MEMORY (2ull << 30)
#define BUILD_DISK (4ull << 30)
#define DEBS_TARGET "/run/sbx-debs"

static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t build_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t apt_lock = PTHREAD_MUTEX_INITIALIZER; /* one apt-get at a time */

/* Build sandboxes running at once (they are big: 6 GiB memory, 4 GiB disk each); the
 * others wait in line, still "building". They do not count against max_sandboxes. */
#define MAX_RUNNING_BUILDS 2
static int running_builds;

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

/* ---- the spec ---------------------------------------------------------------------- */

static int
bad (struct sbx_err *err, const char *msg)
{
  return sbx_err_set (err, SBX_E_INVALID, 0, "%s", msg);
}

static int
cstr_ok (json_t *v, size_t max)
{
  return json_is_string (v) && strlen (json_string_value (v)) == json_string_length (v)
         && json_string_length (v) <= max;
}

static int
package_ok (const char *p)
{
  size_t n = strlen (p);
  if (n < 2 || n > 100 || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= '0' && p[0] <= '9')))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '+'
          || p[i] == '-' || p[i] == '.'))
      return 0;
  return 1;
}

static int
cmp_json_str (const void *a, const void *b)
{
  return strcmp (json_string_value (*(json_t *const *) a), json_string_value (*(json_t *const *) b));
}

/* Validate body into a canonical spec object (new reference). */
static json_t *
canonical_spec (json_t *body, struct sbx_err *err)
{
  json_t *spec = json_object ();
  json_t *v = json_object_get (body, "base");
  const char *base = SRV_DEFAULT_IMAGE;
  if (v && !json_is_null (v))
    {
      if (!cstr_ok (v, 63) || (!img_is_builtin (json_string_value (v))
                               && !sbx_id_valid (json_string_value (v), "img")))
        goto invalid_base;
      base = json_string_value (v);
    }
  json_object_set_new (spec, "base", json_string (base));

  if ((v = json_object_get (body, "apt_install")) && !json_is_null (v))
    {
      if (!json_is_array (v) || json_array_size (v) > MAX_PACKAGES)
        {
          bad (err, "apt_install: must be an array of at most 100 package names");
          goto fail;
        }
      json_t *pk[MAX_PACKAGES];
      size_t n = 0, i;
      json_t *p;
      json_array_foreach (v, i, p)
        {
          if (!cstr_ok (p, 100) || !package_ok (json_string_value (p)))
            {
              bad (err, "apt_install: package names are Debian names ([a-z0-9][a-z0-9+.-]+)");
              goto fail;
            }
          pk[n++] = p;
        }
      qsort (pk, n, sizeof pk[0], cmp_json_str);
      json_t *arr = json_array ();
      for (i = 0; i < n; i++)
        if (i == 0 || strcmp (json_string_value (pk[i]), json_string_value (pk[i - 1])))
          json_array_append (arr, pk[i]);
      if (json_array_size (arr))
        json_object_set_new (spec, "apt_install", arr);
      else
        json_decref (arr);
    }
  if ((v = json_object_get (body, "run_commands")) && !json_is_null (v))
    {
      if (!json_is_array (v) || json_array_size (v) > MAX_COMMANDS)
        {
          bad (err, "run_commands: must be an array of at most 100 strings");
          goto fail;
        }
      size_t i;
      json_t *c;
      json_array_foreach (v, i, c)
        if (!cstr_ok (c, 65536) || !json_string_length (c))
          {
            bad (err, "run_commands: each must be a non-empty string without NUL (64 KiB max)");
            goto fail;
          }
      if (json_array_size (v))
        json_object_set (spec, "run_commands", v);
    }
  if ((v = json_object_get (body, "env")) && !json_is_null (v))
    {
      if (!json_is_object (v) || json_object_size (v) > SRV_ENV_MAX_COUNT)
        {
          bad (err, "env: must be an object of string values");
          goto fail;
        }
      const char *k;
      json_t *val;
      json_object_foreach (v, k, val)
        {
          int ok = (k[0] == '_' || (k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z'))
                   && strlen (k) <= SRV_ENV_MAX_NAME && cstr_ok (val, SRV_ENV_MAX_VALUE);
          for (const char *q = k; ok && *q; q++)
            ok = *q == '_' || (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z')
                 || (*q >= '0' && *q <= '9');
          if (!ok)
            {
              bad (err, "env: names [A-Za-z_][A-Za-z0-9_]*, string values without NUL");
              goto fail;
            }
        }
      if (json_object_size (v))
        json_object_set (spec, "env", v);
    }
  if ((v = json_object_get (body, "workdir")) && !json_is_null (v))
    {
      if (!cstr_ok (v, SRV_PATH_MAX) || json_string_value (v)[0] != '/')
        {
          bad (err, "workdir: must be an absolute path");
          goto fail;
        }
      json_object_set (spec, "workdir", v);
    }
  if ((v = json_object_get (body, "files")) && !json_is_null (v))
    {
      if (!json_is_object (v) || json_object_size (v) > MAX_FILES)
        {
          bad (err, "files: must be an object {\"/path\": \"content\"} of at most 100 files");
          goto fail;
        }
      const char *path;
      size_t plen;
      json_t *content;
      json_object_keylen_foreach (v, path, plen, content)
        {
          /* same rules as volume mount points: absolute, normalized, not in /proc etc. */
          if (plen != strlen (path) || !rt_volume_target_ok (path) || !json_is_string (content))
            {
              bad (err, "files: paths absolute and normalized (not in /proc, /sys, /dev, "
                        "/tmp), contents strings");
              goto fail;
            }
        }
      if (json_object_size (v))
        json_object_set (spec, "files", v);
    }
  return spec;
invalid_base:
  bad (err, "base: a built-in image (\"python:3.11\", \"debian:bookworm\") or an image id");
fail:
  json_decref (spec);
  return NULL;
}

static void
spec_id (json_t *spec, char id[SBX_ID_MAX])
{
  char *t = json_dumps (spec, JSON_COMPACT | JSON_SORT_KEYS);
  srv_image_id_of ("build", t ? t : "", id);
  free (t);
}

/* ---- logging ------------------------------------------------------------------------ */

static int
open_log (struct srv *s, const char *id)
{
  char dir[PATH_MAX], path[PATH_MAX + 80];
  snprintf (dir, sizeof dir, "%s/build-logs", s->cfg.state_dir);
  mkdir (dir, 0700);
  snprintf (path, sizeof path, "%s/%s.log", dir, id);
  return open (path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
}

static void __attribute__ ((format (printf, 2, 3)))
blog (int fd, const char *fmt, ...)
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

/* Run argv in the sandbox with env and cwd, stdin from data (NULL: /dev/null), output to
 * log_fd (and, if cap_fd >= 0, stdout to cap_fd). *code gets the exit code. */
static int
run_in (struct rt_sandbox *rt, char **argv, char **env, const char *cwd, const char *data,
        size_t dlen, int log_fd, int *code, struct sbx_err *err)
{
  struct proto_reader rd;
  struct proto_buf out = { 0 }, payload = { 0 };
  size_t argc = 0, envc = 0;
  while (argv[argc])
    argc++;
  while (env[envc])
    envc++;
  struct proto_exec_req pr = { .argv = argv, .argc = argc, .env = env, .envc = envc,
                               .cwd = (char *) cwd,
                               .stdin_mode = data ? PROTO_STDIN_PIPE : PROTO_STDIN_NULL,
                               .timeout_ms = CMD_TIMEOUT_MS, .max_output = 0 };
  int rc = -1;
  int fd = -1;
  proto_reader_init (&rd);
  if (proto_exec_req_encode (&pr, &payload) < 0
      || proto_frame_append (&out, PROTO_EXEC_START, 1, payload.data, (uint32_t) payload.len) < 0)
    {
      sbx_err_sys (err, "encode command");
      goto done;
    }
  for (size_t o = 0; data && o < dlen; o += PROTO_DATA_CHUNK)
    {
      size_t n = dlen - o < PROTO_DATA_CHUNK ? dlen - o : PROTO_DATA_CHUNK;
      if (proto_frame_append (&out, PROTO_EXEC_STDIN, 1, data + o, (uint32_t) n) < 0)
        {
          sbx_err_sys (err, "encode stdin");
          goto done;
        }
    }
  if (data && proto_frame_append (&out, PROTO_EXEC_STDIN, 1, NULL, 0) < 0)
    {
      sbx_err_sys (err, "encode stdin");
      goto done;
    }
  proto_reader_free (&rd);
  fd = proto_client_connect (rt_sandbox_socket (rt), &rd, err);
  if (fd < 0)
    goto done;
  sbx_set_nonblock (fd, 1);
  size_t off = 0;
  for (;;)
    {
      struct proto_frame f;
      int nr;
      while ((nr = proto_reader_next (&rd, &f, err)) == 1)
        {
          if (f.type == PROTO_EXEC_STDOUT || f.type == PROTO_EXEC_STDERR)
            sbx_write_all (log_fd, f.payload, f.len);
          else if (f.type == PROTO_EXEC_EXIT)
            {
              struct proto_exec_exit ex;
              if (proto_exec_exit_decode (f.payload, f.len, &ex, err) < 0)
                goto done;
              *code = ex.timed_out ? 124 : ex.exit_code;
              rc = 0;
              goto done;
            }
          else if (f.type == PROTO_ERROR)
            {
              uint32_t ec;
              char msg[512];
              if (proto_error_decode (f.payload, f.len, &ec, msg, sizeof msg, err) == 0)
                sbx_err_set (err, SBX_E_EXEC_FAILED, 0, "agent: %s", msg);
              goto done;
            }
        }
      if (nr < 0)
        goto done;
      struct pollfd p = { .fd = fd, .events = POLLIN | (off < out.len ? POLLOUT : 0) };
      if (poll (&p, 1, 60000) < 0 && errno != EINTR)
        {
          sbx_err_sys (err, "poll agent");
          goto done;
        }
      if (p.revents & POLLOUT)
        {
          ssize_t n = send (fd, out.data + off, out.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n > 0)
            off += (size_t) n;
        }
      if (p.revents & (POLLIN | POLLHUP | POLLERR))
        {
          ssize_t n = proto_reader_fill (&rd, fd);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            {
              sbx_err_set (err, SBX_E_EXEC_FAILED, 0, "the build sandbox ended");
              goto done;
            }
        }
    }
done:
  if (fd >= 0)
    close (fd);
  proto_reader_free (&rd);
  proto_buf_free (&out);
  proto_buf_free (&payload);
  return rc;
}

/* ---- apt on the host: resolve and download ------------------------------------------ */

static int
run_apt (int log_fd, char **argv, struct sbx_err *err)
{
  pid_t pid = fork ();
  if (pid < 0)
    return sbx_err_sys (err, "fork");
  if (pid == 0)
    {
      int null = open ("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null < 0 || dup2 (null, 0) < 0 || dup2 (log_fd, 1) < 0 || dup2 (log_fd, 2) < 0)
        _exit (127);
      close_range (3, ~0U, 0);
      static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
                                    "DEBIAN_FRONTEND=noninteractive", NULL };
      execve (APT_GET, argv, envp);
      _exit (127);
    }
  int st;
  while (waitpid (pid, &st, 0) < 0)
    if (errno != EINTR)
      return sbx_err_sys (err, "wait for apt-get");
  if (!WIFEXITED (st) || WEXITSTATUS (st) != 0)
    return sbx_err_set (err, SBX_E_INVALID, 0, "apt-get failed (status %d); see the build log",
                        WIFEXITED (st) ? WEXITSTATUS (st) : 128 + WTERMSIG (st));
  return 0;
}

/* The image's dpkg status, copied out of its layers (never through a symlink). */
static int
copy_status (struct srv *s, const struct srv_chain *c, const char *dst, struct sbx_err *err)
{
  char base[PATH_MAX], paths[IMG_CHAIN_MAX + 1][PATH_MAX];
  struct img_view v = { .n = 0 };
  int rc = img_resolve (s->cfg.state_dir, c->base, 0, base, err);
  for (size_t i = 0; rc == 0 && i <= c->n; i++)
    {
      if (i < c->n)
        rc = img_layer_path (s->cfg.state_dir, c->ids[c->n - 1 - i], paths[i], err);
      else
        snprintf (paths[i], PATH_MAX, "%s", base);
      int fd = rc == 0 ? open (paths[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
      if (rc == 0 && fd < 0)
        rc = sbx_err_sys (err, "open layer");
      if (fd >= 0)
        v.fds[v.n++] = fd;
    }
  cleanup_close int in = rc == 0 ? img_view_open (&v, "var/lib/dpkg/status") : -1;
  if (rc == 0 && in < 0)
    rc = sbx_err_set (err, SBX_E_INVALID, 0, "apt_install: the base image has no dpkg status");
  for (int i = 0; i < v.n; i++)
    close (v.fds[i]);
  if (rc < 0)
    return -1;
  cleanup_close int out = open (dst, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0)
    return sbx_err_sys (err, "create '%s'", dst);
  char buf[65536];
  uint64_t total = 0;
  ssize_t n;
  while ((n = read (in, buf, sizeof buf)) > 0)
    {
      total += (uint64_t) n;
      if (total > (64u << 20))
        return sbx_err_set (err, SBX_E_INVALID, 0, "dpkg status larger than 64 MB");
      if (sbx_write_all (out, buf, (size_t) n) < 0)
        return sbx_err_sys (err, "write '%s'", dst);
    }
  return n < 0 ? sbx_err_sys (err, "read dpkg status") : 0;
}

/* Download pkgs (and what they need that the image lacks) into <work>/debs. */
static int
apt_download (struct srv *s, const struct srv_chain *c, json_t *pkgs, const char *work,
              int log_fd, struct sbx_err *err)
{
  char status[PATH_MAX], debs[PATH_MAX], part[PATH_MAX + 16], apt[PATH_MAX], lists[PATH_MAX],
      cache[PATH_MAX], o_st[PATH_MAX + 32], o_li[PATH_MAX + 32], o_ca[PATH_MAX + 32],
      o_ar[PATH_MAX + 32];
  snprintf (status, sizeof status, "%s/status", work);
  snprintf (debs, sizeof debs, "%s/debs", work);
  snprintf (part, sizeof part, "%s/partial", debs);
  snprintf (apt, sizeof apt, "%s/apt", s->cfg.state_dir);
  snprintf (lists, sizeof lists, "%s/lists", apt);
  snprintf (cache, sizeof cache, "%s/cache", apt);
  if (copy_status (s, c, status, err) < 0)
    return -1;
  char lpart[PATH_MAX + 16], cpart[PATH_MAX + 32];
  snprintf (lpart, sizeof lpart, "%s/partial", lists);
  snprintf (cpart, sizeof cpart, "%s/archives/partial", cache);
  if (sbx_mkdir_p (lpart, 0755) < 0 || sbx_mkdir_p (cpart, 0755) < 0
      || sbx_mkdir_p (part, 0755) < 0)
    return sbx_err_sys (err, "apt directories");
  snprintf (o_st, sizeof o_st, "Dir::State::status=%s", status);
  snprintf (o_li, sizeof o_li, "Dir::State::Lists=%s", lists);
  snprintf (o_ca, sizeof o_ca, "Dir::Cache=%s", cache);
  snprintf (o_ar, sizeof o_ar, "Dir::Cache::archives=%s", debs);
  pthread_mutex_lock (&apt_lock);
  int rc = 0;
  /* The package lists: fetched once into our own directory (the host's apt state is not
   * touched), again when older than a day or when a download fails. */
  char rel[PATH_MAX + 32];
  snprintf (rel, sizeof rel, "%s/.updated", lists);
  struct stat st;
  int fresh = stat (rel, &st) == 0 && st.st_mtime > time (NULL) - 86400;
  for (int attempt = 0; attempt < 2; attempt++)
    {
      if (!fresh)
        {
          char *up[] = { "apt-get", "-q", "-o", o_st, "-o", o_li, "-o", o_ca, "-o",
                         "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root", "update", NULL };
          blog (log_fd, "$ apt-get update (package lists in %s)\n", lists);
          rc = run_apt (log_fd, up, err);
          if (rc < 0)
            break;
          int t = open (rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
          if (t >= 0)
            close (t);
          fresh = 1;
        }
      char *argv[MAX_PACKAGES + 32];
      int n = 0;
      const char *fixed[] = { "apt-get", "-q", "-y", "--no-install-recommends", "-o", o_st,
                              "-o", o_li, "-o", o_ca, "-o", o_ar, "-o", "Debug::NoLocking=1",
                              "-o", "APT::Sandbox::User=root", "install", "--download-only",
                              "--" };
      for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = (char *) fixed[i];
      size_t i;
      json_t *p;
      json_array_foreach (pkgs, i, p)
        argv[n++] = (char *) json_string_value (p);
      argv[n] = NULL;
      blog (log_fd, "$ apt-get install --download-only (resolved on the host against the "
                    "image's dpkg status)\n");
      rc = run_apt (log_fd, argv, err);
      if (rc == 0)
        break;
      fresh = 0; /* maybe stale lists: update once and try again */
    }
  pthread_mutex_unlock (&apt_lock);
  return rc;
}

/* ---- one build step -------------------------------------------------------------------- */

struct step {
  json_t *apt;     /* array or NULL */
  json_t *files;   /* object or NULL */
  json_t *run;     /* array or NULL */
  json_t *env;     /* the image env for the commands (object) */
  const char *workdir;
};

static void
strv_free (char **v)
{
  for (size_t i = 0; v && v[i]; i++)
    free (v[i]);
  free (v);
}

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
  blog (log_fd, "$ %s\n", what);
  if (run_in (rt, argv, env, cwd, data, dlen, log_fd, &code, err) < 0)
    return -1;
  blog (log_fd, "[exit %d, %.1f s]\n", code, (sbx_mono_ns () - t0) / 1e9);
  if (code != 0)
    return sbx_err_set (err, SBX_E_INVALID, 0, "%.200s: exit status %d", what, code);
  return 0;
}

/* Run one step in a fresh build sandbox on chain c; its upper layer becomes *layer. */
static int
run_step (struct srv *s, const struct srv_chain *c, const struct step *st, int log_fd,
          char layer[IMG_LAYER_ID_MAX], struct sbx_err *err)
{
  struct srv_image_prep prep;
  memset (&prep, 0, sizeof prep);
  char work[PATH_MAX] = "";
  pthread_mutex_lock (&build_lock);
  while (running_builds >= MAX_RUNNING_BUILDS)
    pthread_cond_wait (&build_done, &build_lock);
  running_builds++;
  pthread_mutex_unlock (&build_lock);
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
      if (apt_download (s, c, st->apt, work, log_fd, err) < 0)
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
  blog (log_fd, "build sandbox %s started\n", id);
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
  blog (log_fd, "layer %s (%.1f MB)\n", layer, bytes / 1e6);
  rt_sandbox_freeze (rt, 0, err);
  rc = 0;
out:
  strv_free (env);
  rt_sandbox_destroy (rt);
  srv_layers_unlock ();
  if (*work)
    sbx_rm_rf (work);
  pthread_mutex_lock (&build_lock);
  running_builds--;
  pthread_cond_broadcast (&build_done);
  pthread_mutex_unlock (&build_lock);
  return rc;
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
      blog (log_fd, "image %s ready\n", id);
      LOG_INFO ("image %s built", id);
    }
  else
    {
      if (store_image_update (s->store, id, "failed", NULL, err->msg, &e2) < 0)
        LOG_ERROR ("record failure of image %s: %s", id, e2.msg);
      blog (log_fd, "build failed: %s\n", err->msg);
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
  blog (log_fd, "build of %s started\n", j->id);
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
      spec_id (s1, step1);
      int own = strcmp (step1, j->id) == 0;
      json_t *penv = merged_env (&c, NULL);
      int r = own ? 1 : claim (s, step1, c.base, parent, penv, c.workdir, s1, &err);
      json_decref (penv);
      json_decref (s1);
      if (r < 0)
        goto done;
      if (r == 1)
        {
          struct step st = { .apt = apt, .env = merged_env (&c, NULL) };
          char layer[IMG_LAYER_ID_MAX];
          int sr = run_step (s, &c, &st, log_fd, layer, &err);
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
          blog (log_fd, "step %s (apt_install) exists: reused\n", step1);
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
      struct step st = { .files = files, .run = run, .env = merged_env (&c, env),
                         .workdir = workdir ? workdir : c.workdir };
      char layer[IMG_LAYER_ID_MAX];
      int sr = run_step (s, &c, &st, log_fd, layer, &err);
      json_decref (st.env);
      if (sr < 0)
        goto done;
      snprintf (c.ids[c.n++], IMG_LAYER_ID_MAX, "%s", layer);
      if (srv_chain_fit (s, &c, &err) < 0)
        goto done;
    }
  ok = 1;
  blog (log_fd, "build took %.1f s\n", (sbx_mono_ns () - t0) / 1e9);
done:
  finished (s, j->id, &c, &err, ok, log_fd);
  srv_chain_free (&c);
  json_decref (j->spec);
  free (j);
  return NULL;
}

void
srv_h_image_build (struct srv *s, json_t *body, struct srv_reply *r)
{
  struct sbx_err err = { 0 };
  json_t *spec = canonical_spec (body, &err);
  if (!spec)
    {
      srv_reply_err (r, &err);
      return;
    }
  char id[SBX_ID_MAX];
  spec_id (spec, id);
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
