/* apt on the host for image builds: packages are resolved and downloaded by sbxd with
 * apt-get --download-only against the image's own dpkg status, a private list and cache
 * directory under <state_dir>/apt and the host's sources; the build sandbox then installs
 * the .debs offline (build_step.c). */
#include "build_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define APT_GET "/usr/bin/apt-get"

static pthread_mutex_t apt_lock = PTHREAD_MUTEX_INITIALIZER; /* one apt-get at a time */

static int
run_apt (int log_fd, char **argv, struct sbx_err *err)
{
  static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
                                "DEBIAN_FRONTEND=noninteractive", NULL };
  int st;
  if (sbx_run_program (APT_GET, argv, envp, log_fd, &st, err) < 0)
    return -1;
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
int
srv_build_apt_download (struct srv *s, const struct srv_chain *c, json_t *pkgs,
                        const char *work, int log_fd, struct sbx_err *err)
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
          srv_build_log (log_fd, "$ apt-get update (package lists in %s)\n", lists);
          rc = run_apt (log_fd, up, err);
          if (rc < 0)
            break;
          int t = open (rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
          if (t >= 0)
            close (t);
          fresh = 1;
        }
      char *argv[SRV_BUILD_MAX_PACKAGES + 32];
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
      srv_build_log (log_fd, "$ apt-get install --download-only (resolved on the host "
                             "against the image's dpkg status)\n");
      rc = run_apt (log_fd, argv, err);
      if (rc == 0)
        break;
      fresh = 0; /* maybe stale lists: update once and try again */
    }
  pthread_mutex_unlock (&apt_lock);
  return rc;
}
