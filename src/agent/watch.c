/* WATCH: file-change events under a directory from inotify, optionally recursive.
 *
 * Directories are opened like any file request (path.c) and watched through their
 * /proc/self/fd/N name, so the watch lands on the directory we resolved, not on whatever
 * a racing rename put at the path. A directory created under a recursive watch is watched
 * at once and scanned, so files created in it before the watch existed are reported as
 * created too. While the connection is throttled the inotify fd is not read (the kernel
 * queues events; if its queue overflows, an OVERFLOW event says so). The watch ends when
 * its connection closes. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_DIRS_MAX 4096
#define WATCH_DEPTH_MAX 64 /* levels below the watched directory; deeper ones are not watched */
#define MASK (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO \
              | IN_ATTRIB | IN_EXCL_UNLINK | IN_ONLYDIR)

struct wdir {
  int wd;
  char *path; /* absolute, inside the sandbox */
};

struct fwatch {
  struct conn *conn;
  uint32_t id;
  struct watch w;
  bool recursive;
  bool dead;
  struct wdir *dirs;
  size_t ndirs, cap;
  struct fwatch *next;
};

static void
fw_free (struct fwatch *fw)
{
  struct agent *a = fw->conn->agent;
  if (fw->dead)
    return;
  agent_watch_close (a, &fw->w);
  struct fwatch **pp = &a->fwatches;
  while (*pp && *pp != fw)
    pp = &(*pp)->next;
  if (*pp)
    *pp = fw->next;
  fw->conn->nreqs--;
  fw->dead = true;
  fw->next = a->dead_fwatches;
  a->dead_fwatches = fw;
}

void
watch_free_dead (struct agent *a)
{
  while (a->dead_fwatches)
    {
      struct fwatch *fw = a->dead_fwatches;
      a->dead_fwatches = fw->next;
      for (size_t i = 0; i < fw->ndirs; i++)
        free (fw->dirs[i].path);
      free (fw->dirs);
      free (fw);
    }
}

int
watch_active (struct conn *c, uint32_t id)
{
  for (struct fwatch *fw = c->agent->fwatches; fw; fw = fw->next)
    if (fw->conn == c && fw->id == id)
      return 1;
  return 0;
}

void
watch_conn_closed (struct conn *c)
{
  for (struct fwatch *fw = c->agent->fwatches, *nx; fw; fw = nx)
    {
      nx = fw->next;
      if (fw->conn == c)
        fw_free (fw);
    }
}

void
watch_conn_resume (struct conn *c)
{
  for (struct fwatch *fw = c->agent->fwatches; fw; fw = fw->next)
    if (fw->conn == c && !fw->dead)
      agent_watch_set (c->agent, &fw->w, EPOLLIN);
}

static void
send_event (struct fwatch *fw, uint32_t kind, const char *path, bool dir)
{
  struct proto_msg m = { .kind = kind, .path = (char *) path, .flags = dir ? PROTO_F_DIR : 0 };
  PROTO_SET (&m, PROTO_M_KIND);
  PROTO_SET (&m, PROTO_M_FLAGS);
  if (path)
    PROTO_SET (&m, PROTO_M_PATH);
  conn_send_msg (fw->conn, PROTO_WATCH_EVENT, fw->id, &m);
}

static const char *
dir_path (struct fwatch *fw, int wd)
{
  for (size_t i = 0; i < fw->ndirs; i++)
    if (fw->dirs[i].wd == wd)
      return fw->dirs[i].path;
  return NULL;
}

static void add_tree (struct fwatch *fw, int dfd, const char *path, bool report, int depth);

/* Watch the directory open at dfd (consumed) named path; recurse if asked. */
static void
add_dir (struct fwatch *fw, int dfd, const char *path, bool report, int depth)
{
  if (fw->ndirs >= WATCH_DIRS_MAX || depth > WATCH_DEPTH_MAX)
    {
      close (dfd);
      return;
    }
  char proc[64];
  snprintf (proc, sizeof proc, "/proc/self/fd/%d", dfd);
  int wd = inotify_add_watch (fw->w.fd, proc, MASK);
  if (wd < 0)
    {
      LOG_DEBUG ("watch %s: %s", path, strerror (errno));
      close (dfd);
      return;
    }
  if (!dir_path (fw, wd))
    {
      if (fw->ndirs == fw->cap)
        {
          size_t ncap = fw->cap ? fw->cap * 2 : 16;
          struct wdir *nd = realloc (fw->dirs, ncap * sizeof *nd);
          if (!nd)
            {
              close (dfd);
              return;
            }
          fw->dirs = nd;
          fw->cap = ncap;
        }
      char *p = strdup (path);
      if (!p)
        {
          close (dfd);
          return;
        }
      fw->dirs[fw->ndirs++] = (struct wdir){ wd, p };
    }
  if (fw->recursive || report)
    add_tree (fw, dfd, path, report, depth);
  else
    close (dfd);
}

static void
add_tree (struct fwatch *fw, int dfd, const char *path, bool report, int depth)
{
  DIR *d = fdopendir (dfd);
  if (!d)
    {
      close (dfd);
      return;
    }
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (!strcmp (de->d_name, ".") || !strcmp (de->d_name, ".."))
        continue;
      char sub[PATH_MAX];
      if (snprintf (sub, sizeof sub, "%s/%s", strcmp (path, "/") ? path : "", de->d_name)
          >= (int) sizeof sub)
        continue;
      if (report)
        send_event (fw, PROTO_W_CREATED, sub, de->d_type == DT_DIR);
      if (fw->recursive && de->d_type == DT_DIR)
        {
          int child = openat (dirfd (d), de->d_name,
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (child >= 0)
            add_dir (fw, child, sub, report, depth + 1);
        }
    }
  closedir (d);
}

void
watch_event (struct fwatch *fw)
{
  struct conn *c = fw->conn;
  if (fw->dead || c->dead)
    return;
  _Alignas (struct inotify_event) char buf[16384];
  for (int rounds = 0; rounds < 8 && !c->dead && !c->throttled; rounds++)
    {
      ssize_t n = read (fw->w.fd, buf, sizeof buf);
      if (n <= 0)
        break;
      for (char *p = buf; p < buf + n && !c->dead;)
        {
          struct inotify_event *ev = (struct inotify_event *) p;
          p += sizeof *ev + ev->len;
          if (ev->mask & IN_Q_OVERFLOW)
            {
              send_event (fw, PROTO_W_OVERFLOW, NULL, false);
              continue;
            }
          const char *dp = dir_path (fw, ev->wd);
          if (!dp || !ev->len)
            continue; /* events on the directory itself (IN_IGNORED...) */
          char path[PATH_MAX];
          snprintf (path, sizeof path, "%s/%s", strcmp (dp, "/") ? dp : "", ev->name);
          bool dir = ev->mask & IN_ISDIR;
          uint32_t kind = 0;
          if (ev->mask & IN_CREATE)
            kind = PROTO_W_CREATED;
          else if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB))
            kind = PROTO_W_MODIFIED;
          else if (ev->mask & IN_DELETE)
            kind = PROTO_W_DELETED;
          else if (ev->mask & IN_MOVED_FROM)
            kind = PROTO_W_MOVED_FROM;
          else if (ev->mask & IN_MOVED_TO)
            kind = PROTO_W_MOVED_TO;
          if (!kind || (dir && (ev->mask & (IN_MODIFY | IN_ATTRIB))))
            continue;
          send_event (fw, kind, path, dir);
          if (dir && fw->recursive && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
            {
              struct sbx_err err = { 0 };
              int dfd = path_open (c->agent, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &err);
              /* depth unknown here: bounded by the directory count instead */
              if (dfd >= 0)
                add_dir (fw, dfd, path, true, 0);
            }
        }
    }
  if (!c->dead && c->throttled)
    agent_watch_set (c->agent, &fw->w, 0); /* resumed by watch_conn_resume */
}

void
watch_start (struct conn *c, const struct proto_frame *f)
{
  struct agent *a = c->agent;
  struct sbx_err err = { 0 };
  uint32_t id = f->id;
  if (id == 0)
    return conn_send_error (c, 0, SBX_E_INVALID, "request id 0 is reserved");
  if (conn_id_in_use (c, id))
    return conn_send_error (c, 0, SBX_E_INVALID, "request %u is already running", id);
  if (c->nreqs >= AGENT_MAX_EXECS)
    return conn_send_error (c, id, SBX_E_CAPACITY, "too many concurrent requests");
  struct proto_msg m;
  if (proto_msg_decode (f->payload, f->len, &m, &err) < 0)
    return conn_send_error (c, id, SBX_E_INVALID, "%s", err.msg);
  int dfd = -1;
  if (path_check (m.path, &err) < 0
      || (dfd = path_open (a, m.path, O_RDONLY | O_DIRECTORY, 0, &err)) < 0)
    {
      conn_send_errno (c, id, err.sys_errno ? err.sys_errno : EINVAL, "%s", err.msg);
      proto_msg_free (&m);
      return;
    }
  struct fwatch *fw = calloc (1, sizeof *fw);
  int ifd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
  if (!fw || ifd < 0)
    {
      conn_send_errno (c, id, ifd < 0 ? errno : ENOMEM, "inotify: %s", strerror (errno));
      free (fw);
      if (ifd >= 0)
        close (ifd);
      close (dfd);
      proto_msg_free (&m);
      return;
    }
  fw->conn = c;
  fw->id = id;
  fw->recursive = m.flags & PROTO_F_RECURSIVE;
  fw->w = (struct watch){ .kind = W_INOTIFY, .fd = ifd, .owner = fw };
  fw->next = a->fwatches;
  a->fwatches = fw;
  c->nreqs++;
  /* A clean absolute name without trailing slashes for the events. */
  char root[PATH_MAX];
  snprintf (root, sizeof root, "%s", m.path);
  size_t rl = strlen (root);
  while (rl > 1 && root[rl - 1] == '/')
    root[--rl] = '\0';
  add_dir (fw, dfd, root, false, 0);
  proto_msg_free (&m);
  if (fw->ndirs == 0 || agent_watch_set (a, &fw->w, EPOLLIN) < 0)
    {
      conn_send_errno (c, id, errno ? errno : EINVAL, "cannot watch the directory");
      fw_free (fw);
      return;
    }
  conn_send (c, PROTO_READY, id, NULL, 0);
}
