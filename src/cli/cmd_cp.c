/* sbx cp SRC DST: copy a file or a directory into or out of a sandbox. One side is
 * ID:PATH (an absolute path inside sandbox ID), the other a local path or "-" (stdin /
 * stdout; a single file). Files go through GET/PUT /sandbox/{id}/files (streamed: any
 * size, bytes exact, the mode is kept), directories as tar through /sandbox/{id}/archive
 * with the local tar (extracting as the caller: no owners, setuid bits or devices from
 * the sandbox, and nothing written outside the destination). */
#include "cli.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_SBX_FAILED 125
/* Address space of the tar that extracts a sandbox's archive. It needs a few MiB; GNU tar
 * allocates a long name or a pax header of whatever size the archive gives it, so a
 * sandbox could otherwise make it grow until the host runs out of memory. */
#define TAR_X_MAX_AS (512ul << 20)
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14) /* ABI 3, Linux 6.2 */
#endif

/* "sb_xxx:/path" -> id and path. */
static int
remote (const char *s, char *id, size_t idcap, const char **path)
{
  const char *colon = strchr (s, ':');
  if (!colon || strncmp (s, "sb_", 3) != 0 || (size_t) (colon - s) >= idcap)
    return 0;
  memcpy (id, s, (size_t) (colon - s));
  id[colon - s] = '\0';
  *path = colon + 1;
  return 1;
}

struct body {
  char *data; /* error replies only */
  size_t len;
  FILE *f;    /* successful bodies */
  long status;
  CURL *c;
};

static size_t
on_data (char *p, size_t sz, size_t n, void *ud)
{
  struct body *b = ud;
  size_t add = sz * n;
  if (!b->status)
    curl_easy_getinfo (b->c, CURLINFO_RESPONSE_CODE, &b->status);
  if (b->status == 200)
    return fwrite (p, 1, add, b->f) == add ? add : 0;
  if (b->len + add > 1 << 20)
    return 0;
  char *nd = realloc (b->data, b->len + add + 1);
  if (!nd)
    return 0;
  memcpy (nd + b->len, p, add);
  b->data = nd;
  b->len += add;
  nd[b->len] = '\0';
  return add;
}

static size_t
on_read (char *p, size_t sz, size_t n, void *ud)
{
  FILE *f = ud;
  size_t k = fread (p, 1, sz * n, f);
  if (k == 0 && ferror (f))
    return CURL_READFUNC_ABORT;
  return k;
}

/* Percent-encode a query value (unreserved characters and '/' stay). */
static void
url_escape (const char *s, char *out, size_t cap)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t k = 0;
  for (; *s && k + 4 < cap; s++)
    {
      unsigned char ch = (unsigned char) *s;
      if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
          || strchr ("-._~/", ch))
        out[k++] = (char) ch;
      else
        {
          out[k++] = '%';
          out[k++] = hex[ch >> 4];
          out[k++] = hex[ch & 15];
        }
    }
  out[k] = '\0';
}

/* GET or PUT a raw body between a sandbox and f. Returns 0, or prints why and returns 1. */
static int
transfer (const char *base, const char *id, const char *kind, const char *path, int put,
          FILE *f, long mode)
{
  CURL *c = curl_easy_init ();
  if (!c)
    return 1;
  char esc[PATH_MAX * 3 + 1];
  url_escape (path, esc, sizeof esc);
  char rel[PATH_MAX * 3 + 128], url[PATH_MAX * 3 + 512];
  snprintf (rel, sizeof rel, "/sandbox/%s/%s?path=%s", id, kind, esc);
  if (mode >= 0)
    snprintf (rel + strlen (rel), sizeof rel - strlen (rel), "&mode=%04lo", mode);
  cli_api_url (base, rel, url, sizeof url);
  struct body b = { .f = f, .c = c };
  struct curl_slist *hdr = cli_api_auth (curl_slist_append (NULL, "Expect:"));
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (put)
    {
      curl_easy_setopt (c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt (c, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt (c, CURLOPT_READDATA, f);
      b.status = 1; /* the reply is JSON: keep it */
    }
  CURLcode cc = curl_easy_perform (c);
  long status = 0;
  curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
  int rc = 0;
  if (cc != CURLE_OK && !(status && status != 200))
    {
      fprintf (stderr, "sbx cp: %s: %s\n", url, curl_easy_strerror (cc));
      rc = 1;
    }
  else if (status != 200)
    {
      json_error_t je;
      json_t *r = b.data ? json_loadb (b.data, b.len, 0, &je) : NULL;
      cli_api_print_error (status, r ? r : json_object ());
      json_decref (r);
      rc = 1;
    }
  free (b.data);
  curl_slist_free_all (hdr);
  curl_easy_cleanup (c);
  return rc;
}

static int
is_remote_dir (const char *base, const char *id, const char *path, int *dir)
{
  json_t *body = json_pack ("{s:s,s:s}", "sandbox_id", id, "path", path);
  json_t *r = NULL;
  long st = cli_api_post (base, "/sandbox/files/stat", body, &r);
  json_decref (body);
  if (st != 200)
    {
      if (st > 0)
        cli_api_print_error (st, r);
      json_decref (r);
      return -1;
    }
  *dir = !strcmp (json_string_value (json_object_get (r, "type")) ?: "", "directory");
  json_decref (r);
  return 0;
}

/* The Landlock ABI version of this kernel, 0 without Landlock. */
static int
landlock_abi (void)
{
  long v = syscall (SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return v > 0 ? (int) v : 0;
}

/* From here on (and across exec) this process can create, write, remove and link files
 * only beneath dir; reading stays as it was. GNU tar keeps one archive's own symlinks from
 * being followed (it creates them last), but not symlinks already in the destination, and
 * a sandbox can leave those there with an earlier copy: "link -> /etc" now, "link/x"
 * next time. Returns -1 when the kernel cannot do it. */
static int
confine_writes (const char *dir)
{
  int abi = landlock_abi ();
  if (abi < 1)
    return -1;
  struct landlock_ruleset_attr ra = {
    .handled_access_fs = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR
                         | LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR
                         | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG
                         | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO
                         | LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM,
  };
  if (abi >= 2) /* a hard link to a file outside dir is refused (EXDEV) */
    ra.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3)
    ra.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
  cleanup_close int rs = (int) syscall (SYS_landlock_create_ruleset, &ra, sizeof ra, 0);
  cleanup_close int dfd = open (dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rs < 0 || dfd < 0)
    return -1;
  struct landlock_path_beneath_attr pb = { .allowed_access = ra.handled_access_fs,
                                           .parent_fd = dfd };
  if (syscall (SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0
      || prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
      || syscall (SYS_landlock_restrict_self, rs, 0) < 0)
    return -1;
  return 0;
}

/* 1 if dir holds anything, 0 if empty, -1 if it cannot be read. */
static int
dir_has_entries (const char *dir)
{
  DIR *d = opendir (dir);
  if (!d)
    return -1;
  struct dirent *e;
  int any = 0;
  while (!any && (e = readdir (d)))
    any = strcmp (e->d_name, ".") && strcmp (e->d_name, "..");
  closedir (d);
  return any;
}

static int
tar_pipe (const char *dir, int create, FILE **f, pid_t *pid)
{
  int p[2];
  if (pipe (p) < 0)
    return -1;
  *pid = fork ();
  if (*pid < 0)
    return -1;
  if (*pid == 0)
    {
      dup2 (create ? p[1] : p[0], create ? 1 : 0);
      close (p[0]);
      close (p[1]);
      if (create)
        execlp ("tar", "tar", "-c", "-f", "-", "-C", dir, ".", (char *) NULL);
      /* The archive is the sandbox's: its tar made it, or whatever its code put in that
       * tar's place. As root, GNU tar would give the files the archive's owners and
       * setuid bits and create its device nodes, here on the host: the files become
       * ours, without setuid/setgid, and creating a device fails (CAP_MKNOD dropped
       * from the bounding set, so tar's exec cannot regain it). Writes are confined to
       * dir (download() refuses a directory with entries when the kernel cannot), and
       * directories that exist keep their mode (the archive's "./" would otherwise set
       * it on dir itself: a sandbox's 0777 or 0000 on the caller's directory; GNU tar
       * still sets their times). */
      if (geteuid () == 0 && prctl (PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0) < 0)
        _exit (127);
      if (confine_writes (dir) < 0 && landlock_abi () > 0)
        _exit (127);
      struct rlimit as = { TAR_X_MAX_AS, TAR_X_MAX_AS };
      if (setrlimit (RLIMIT_AS, &as) < 0)
        _exit (127);
      signal (SIGPIPE, SIG_DFL);
      execlp ("tar", "tar", "-x", "--no-same-owner", "--no-same-permissions",
              "--no-overwrite-dir", "-f", "-", "-C", dir, (char *) NULL);
      _exit (127);
    }
  close (create ? p[1] : p[0]);
  *f = fdopen (create ? p[0] : p[1], create ? "r" : "w");
  return *f ? 0 : -1;
}

static int
tar_wait (pid_t pid)
{
  int st;
  while (waitpid (pid, &st, 0) < 0)
    if (errno != EINTR)
      return 1;
  if (!WIFEXITED (st) || WEXITSTATUS (st) != 0)
    {
      fprintf (stderr, "sbx cp: local tar failed\n");
      return 1;
    }
  return 0;
}

/* The local file a copy out of a sandbox writes. An earlier directory copy out of the
 * same (untrusted) sandbox may have left a symlink or a FIFO at that name: never write
 * through a symlink (as root it could be any host file), never block on a FIFO. A regular
 * file is replaced in place, as cp(1) does; a character device (/dev/null) is fine.
 * *regular: it is a regular file (what a failed copy may remove). */
static FILE *
open_target (const char *target, int *regular)
{
  int fd = open (target, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
  struct stat st;
  if (fd < 0 || fstat (fd, &st) < 0)
    {
      fprintf (stderr, "sbx cp: %s: %s\n", target,
               errno == ELOOP ? "is a symbolic link (not written through)" : strerror (errno));
      if (fd >= 0)
        close (fd);
      return NULL;
    }
  if (!S_ISREG (st.st_mode) && !S_ISCHR (st.st_mode))
    {
      fprintf (stderr, "sbx cp: %s: not a regular file\n", target);
      close (fd);
      return NULL;
    }
  FILE *f = NULL;
  *regular = S_ISREG (st.st_mode);
  if (fcntl (fd, F_SETFL, 0) < 0 || (S_ISREG (st.st_mode) && ftruncate (fd, 0) < 0)
      || !(f = fdopen (fd, "wb")))
    {
      fprintf (stderr, "sbx cp: %s: %s\n", target, strerror (errno));
      close (fd);
    }
  return f;
}

static int
upload (const char *base, const char *src, const char *id, const char *path)
{
  if (!strcmp (src, "-"))
    return transfer (base, id, "files", path, 1, stdin, -1);
  struct stat st;
  if (stat (src, &st) < 0)
    {
      fprintf (stderr, "sbx cp: %s: %s\n", src, strerror (errno));
      return 1;
    }
  char target[PATH_MAX];
  snprintf (target, sizeof target, "%s", path);
  size_t tl = strlen (target);
  if (S_ISDIR (st.st_mode))
    {
      FILE *f;
      pid_t pid;
      if (tar_pipe (src, 1, &f, &pid) < 0)
        return 1;
      int rc = transfer (base, id, "archive", target, 1, f, -1);
      fclose (f);
      return tar_wait (pid) || rc;
    }
  if (tl && target[tl - 1] == '/')
    {
      char tmp[PATH_MAX];
      snprintf (tmp, sizeof tmp, "%s", src);
      snprintf (target + tl, sizeof target - tl, "%s", basename (tmp));
    }
  FILE *f = fopen (src, "rb");
  if (!f)
    {
      fprintf (stderr, "sbx cp: %s: %s\n", src, strerror (errno));
      return 1;
    }
  int rc = transfer (base, id, "files", target, 1, f, (long) (st.st_mode & 07777));
  fclose (f);
  return rc;
}

static int
download (const char *base, const char *id, const char *path, const char *dst)
{
  int dir;
  if (is_remote_dir (base, id, path, &dir) < 0)
    return 1;
  if (!strcmp (dst, "-"))
    {
      if (dir)
        {
          fprintf (stderr, "sbx cp: %s is a directory (copy it to a local directory)\n", path);
          return 1;
        }
      return transfer (base, id, "files", path, 0, stdout, -1);
    }
  struct stat st;
  int exists = stat (dst, &st) == 0;
  if (dir)
    {
      if (!exists && mkdir (dst, 0755) < 0)
        {
          fprintf (stderr, "sbx cp: %s: %s\n", dst, strerror (errno));
          return 1;
        }
      /* Without Landlock, only a fresh directory is safe from symlinks left in it. */
      if (exists && landlock_abi () < 1 && dir_has_entries (dst) != 0)
        {
          fprintf (stderr, "sbx cp: %s is not empty and this kernel has no Landlock to keep "
                           "the local tar inside it: copy into a new directory\n", dst);
          return 1;
        }
      FILE *f;
      pid_t pid;
      signal (SIGPIPE, SIG_IGN); /* a tar that stops early is reported, not fatal to us */
      if (tar_pipe (dst, 0, &f, &pid) < 0)
        return 1;
      int rc = transfer (base, id, "archive", path, 0, f, -1);
      fclose (f);
      return tar_wait (pid) || rc;
    }
  char target[PATH_MAX];
  if (exists && S_ISDIR (st.st_mode))
    {
      char tmp[PATH_MAX];
      snprintf (tmp, sizeof tmp, "%s", path);
      snprintf (target, sizeof target, "%s/%s", dst, basename (tmp));
    }
  else
    snprintf (target, sizeof target, "%s", dst);
  int regular;
  FILE *f = open_target (target, &regular);
  if (!f)
    return 1;
  int rc = transfer (base, id, "files", path, 0, f, -1);
  if (fclose (f) != 0)
    rc = 1;
  if (rc && regular)
    unlink (target); /* never leave a partial copy that looks complete (a device stays) */
  return rc;
}

int
cli_cmd_cp (int argc, char **argv)
{
  static const struct option opts[] = {
    { "url", required_argument, NULL, 'u' }, { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *url = NULL;
  int o;
  optind = 1;
  while ((o = getopt_long (argc, argv, "h", opts, NULL)) != -1)
    switch (o)
      {
      case 'u': url = optarg; break;
      case 'h':
        printf ("usage: sbx cp SRC DST\n"
                "Copy a file or directory into or out of a sandbox; one side is ID:/PATH.\n"
                "A local \"-\" is stdin or stdout (one file).\n\n"
                "  sbx cp ./data.csv sb_...:/work/data.csv\n"
                "  sbx cp sb_...:/work/out ./out        (a directory, as tar)\n"
                "  --url URL        sbxd address (default $SBX_URL or http://127.0.0.1:8080)\n");
        return 0;
      default: return 2;
      }
  if (argc - optind != 2)
    {
      fprintf (stderr, "usage: sbx cp SRC DST (one of them ID:/PATH)\n");
      return 2;
    }
  cli_api_init ();
  const char *base = cli_api_base (url);
  char id[128];
  const char *path;
  const char *src = argv[optind], *dst = argv[optind + 1];
  if (remote (dst, id, sizeof id, &path) && !strchr (src, ':'))
    return upload (base, src, id, path) ? 1 : 0;
  if (remote (src, id, sizeof id, &path) && !strchr (dst, ':'))
    return download (base, id, path, dst) ? 1 : 0;
  fprintf (stderr, "sbx cp: exactly one of SRC and DST must be ID:/PATH\n");
  return 2;
}
