/* File requests, performed inside the sandbox (path.c has the resolution rules).
 *
 * FILE_READ streams a regular file as FILE_DATA frames, only while the connection takes
 * them (never above AGENT_QUEUE_HIGH), then DONE. FILE_WRITE answers READY, then takes
 * FILE_DATA frames until an empty one: a replacing write goes to a new temporary file in
 * the same directory which is renamed over the target at the end (atomic; a symlink at the
 * target is replaced, not followed); an append opens the target with O_NOFOLLOW. FILE_OP
 * does stat, list, mkdir, remove and rename. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIST_MAX 20000
#define LIST_DEPTH_MAX 64
#define REMOVE_DEPTH_MAX 256 /* PID 1 recurses on its own stack with an fd per level */
#define MODE_DEFAULT 0644

struct fxfer {
  struct conn *conn;
  uint32_t id;
  bool writing;
  bool failed;          /* write: an ERROR was sent; swallow data until the end frame */
  bool dead;
  int fd;
  int dirfd;            /* write: the parent directory (O_PATH) */
  char name[NAME_MAX + 1];
  char tmp[NAME_MAX + 1]; /* write (replace): temporary name, "" once renamed/removed */
  mode_t mode;
  uint64_t left;        /* read: bytes still to send (UINT64_MAX: to EOF) */
  uint64_t done;
  uint64_t mark;        /* files_conn_pump's iteration mark */
  struct fxfer *next;   /* agent->xfers or agent->dead_xfers */
};

int
files_active (struct conn *c, uint32_t id)
{
  for (struct fxfer *x = c->agent->xfers; x; x = x->next)
    if (x->conn == c && x->id == id)
      return 1;
  return 0;
}

static void
xfer_free (struct fxfer *x)
{
  struct agent *a = x->conn->agent;
  if (x->dead)
    return;
  if (x->tmp[0] && x->dirfd >= 0)
    unlinkat (x->dirfd, x->tmp, 0);
  if (x->fd >= 0)
    close (x->fd);
  if (x->dirfd >= 0)
    close (x->dirfd);
  x->fd = x->dirfd = -1;
  struct fxfer **pp = &a->xfers;
  while (*pp && *pp != x)
    pp = &(*pp)->next;
  if (*pp)
    *pp = x->next;
  x->conn->nreqs--;
  x->dead = true;
  x->next = a->dead_xfers;
  a->dead_xfers = x;
}

void
files_free_dead (struct agent *a)
{
  while (a->dead_xfers)
    {
      struct fxfer *x = a->dead_xfers;
      a->dead_xfers = x->next;
      free (x);
    }
}

void
files_conn_closed (struct conn *c)
{
  for (struct fxfer *x = c->agent->xfers, *nx; x; x = nx)
    {
      nx = x->next;
      if (x->conn == c)
        xfer_free (x);
    }
}

static struct fxfer *
xfer_new (struct conn *c, uint32_t id)
{
  struct fxfer *x = calloc (1, sizeof *x);
  if (!x)
    return NULL;
  x->conn = c;
  x->id = id;
  x->fd = x->dirfd = -1;
  x->next = c->agent->xfers;
  c->agent->xfers = x;
  c->nreqs++;
  return x;
}

static void
info_from_stat (struct proto_msg *m, const struct stat *st)
{
  memset (m, 0, sizeof *m);
  m->mode = st->st_mode;
  m->size = (uint64_t) st->st_size;
  m->mtime_ns = (uint64_t) st->st_mtim.tv_sec * 1000000000u + (uint64_t) st->st_mtim.tv_nsec;
  m->uid = st->st_uid;
  m->gid = st->st_gid;
  PROTO_SET (m, PROTO_M_MODE);
  PROTO_SET (m, PROTO_M_SIZE);
  PROTO_SET (m, PROTO_M_MTIME_NS);
  PROTO_SET (m, PROTO_M_UID);
  PROTO_SET (m, PROTO_M_GID);
}

/* FILE_INFO of dirfd/name (not following a final symlink; its target is reported). */
static int
send_info_at (struct conn *c, uint32_t id, int dirfd, const char *name, const char *rel)
{
  struct stat st;
  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0)
    return -1;
  struct proto_msg m;
  info_from_stat (&m, &st);
  char target[PATH_MAX];
  if (S_ISLNK (st.st_mode))
    {
      ssize_t n = readlinkat (dirfd, name, target, sizeof target - 1);
      if (n >= 0)
        {
          target[n] = '\0';
          m.target = target;
          PROTO_SET (&m, PROTO_M_TARGET);
        }
    }
  if (rel)
    {
      m.path2 = (char *) rel;
      PROTO_SET (&m, PROTO_M_PATH2);
    }
  conn_send_msg (c, PROTO_FILE_INFO, id, &m); /* borrowed strings: not freed */
  return 0;
}

static void
fail_err (struct conn *c, uint32_t id, const struct sbx_err *err)
{
  if (err->sys_errno)
    conn_send_errno (c, id, err->sys_errno, "%s", err->msg);
  else
    conn_send_error (c, id, (uint32_t) err->code, "%s", err->msg);
}

static void
fail_sys (struct conn *c, uint32_t id, const char *what, const char *path)
{
  int e = errno;
  conn_send_errno (c, id, e, "%s %s: %s", what, path, strerror (e));
}

/* ---- list ---- */

struct lister {
  struct conn *c;
  uint32_t id;
  uint32_t depth;
  size_t count;
  bool truncated;
};

static void
list_dir (struct lister *l, int dfd, const char *rel, uint32_t level)
{
  DIR *d = fdopendir (dfd);
  if (!d)
    {
      close (dfd);
      return;
    }
  struct dirent *de;
  while ((de = readdir (d)) && !l->c->dead)
    {
      if (!strcmp (de->d_name, ".") || !strcmp (de->d_name, ".."))
        continue;
      if (l->count >= LIST_MAX)
        {
          l->truncated = true;
          break;
        }
      char sub[PATH_MAX];
      if (snprintf (sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name)
          >= (int) sizeof sub)
        continue;
      if (send_info_at (l->c, l->id, dirfd (d), de->d_name, sub) < 0)
        continue; /* vanished meanwhile */
      l->count++;
      if (level + 1 < l->depth && de->d_type == DT_DIR)
        {
          int child = openat (dirfd (d), de->d_name,
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (child >= 0)
            list_dir (l, child, sub, level + 1);
        }
    }
  closedir (d);
}

/* ---- remove ---- */

static int
remove_tree (int dfd, const char *name, int depth)
{
  if (depth > REMOVE_DEPTH_MAX)
    {
      errno = ENAMETOOLONG; /* "too deep": remove the deeper part first */
      return -1;
    }
  int fd = openat (dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir (fd);
  if (!d)
    {
      close (fd);
      return -1;
    }
  struct dirent *de;
  int rc = 0;
  while ((de = readdir (d)))
    {
      if (!strcmp (de->d_name, ".") || !strcmp (de->d_name, ".."))
        continue;
      if (de->d_type == DT_DIR)
        {
          if (remove_tree (dirfd (d), de->d_name, depth + 1) < 0)
            rc = -1;
        }
      else if (unlinkat (dirfd (d), de->d_name, 0) < 0)
        {
          if (errno == EISDIR && remove_tree (dirfd (d), de->d_name, depth + 1) == 0)
            continue;
          rc = -1;
        }
    }
  int e = errno;
  closedir (d);
  if (rc < 0)
    {
      errno = e;
      return -1;
    }
  return unlinkat (dfd, name, AT_REMOVEDIR);
}

static void
file_op (struct conn *c, uint32_t id, const struct proto_msg *m)
{
  struct agent *a = c->agent;
  struct sbx_err err = { 0 };
  char name[NAME_MAX + 1];
  cleanup_close int dfd = -1;
  switch (m->kind)
    {
    case PROTO_OP_STAT:
      if (!strcmp (m->path, "/") || strspn (m->path, "/") == strlen (m->path))
        {
          if (send_info_at (c, id, a->rootfd, "", NULL) < 0)
            return fail_sys (c, id, "stat", m->path);
          break;
        }
      if ((dfd = path_open_parent (a, m->path, false, name, &err)) < 0)
        return fail_err (c, id, &err);
      if (send_info_at (c, id, dfd, name, NULL) < 0)
        return fail_sys (c, id, "stat", m->path);
      break;
    case PROTO_OP_LIST:
      {
        int fd = path_open (a, m->path, O_RDONLY | O_DIRECTORY, 0, &err);
        if (fd < 0)
          return fail_err (c, id, &err);
        struct lister l = { .c = c, .id = id,
                            .depth = PROTO_HAS (m, PROTO_M_DEPTH) ? m->depth : 1 };
        if (l.depth == 0)
          l.depth = 1;
        if (l.depth > LIST_DEPTH_MAX)
          l.depth = LIST_DEPTH_MAX;
        list_dir (&l, fd, "", 0);
        if (c->dead)
          return;
        struct proto_msg done = { .length = l.count, .eof = !l.truncated };
        PROTO_SET (&done, PROTO_M_LENGTH);
        PROTO_SET (&done, PROTO_M_EOF);
        return conn_send_msg (c, PROTO_DONE, id, &done);
      }
    case PROTO_OP_MKDIR:
      {
        if ((dfd = path_open_parent (a, m->path, m->flags & PROTO_F_PARENTS, name, &err)) < 0)
          return fail_err (c, id, &err);
        mode_t mode = PROTO_HAS (m, PROTO_M_MODE) ? (mode_t) (m->mode & 07777) : 0755;
        if (mkdirat (dfd, name, mode) < 0)
          {
            struct stat st;
            if (!(errno == EEXIST && (m->flags & PROTO_F_EXIST_OK)
                  && fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR (st.st_mode)))
              return fail_sys (c, id, "mkdir", m->path);
          }
        break;
      }
    case PROTO_OP_REMOVE:
      {
        if ((dfd = path_open_parent (a, m->path, false, name, &err)) < 0)
          return fail_err (c, id, &err);
        struct stat st;
        if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
          return fail_sys (c, id, "remove", m->path);
        int rc;
        if (!S_ISDIR (st.st_mode))
          rc = unlinkat (dfd, name, 0);
        else if (m->flags & PROTO_F_RECURSIVE)
          rc = remove_tree (dfd, name, 0);
        else
          rc = unlinkat (dfd, name, AT_REMOVEDIR);
        if (rc < 0)
          return fail_sys (c, id, "remove", m->path);
        break;
      }
    case PROTO_OP_RENAME:
      {
        char name2[NAME_MAX + 1];
        if (!m->path2)
          return conn_send_errno (c, id, EINVAL, "rename: no target path");
        if ((dfd = path_open_parent (a, m->path, false, name, &err)) < 0)
          return fail_err (c, id, &err);
        cleanup_close int dfd2
            = path_open_parent (a, m->path2, m->flags & PROTO_F_PARENTS, name2, &err);
        if (dfd2 < 0)
          return fail_err (c, id, &err);
        if (renameat (dfd, name, dfd2, name2) < 0)
          return fail_sys (c, id, "rename", m->path);
        break;
      }
    default:
      return conn_send_errno (c, id, EINVAL, "unknown file operation %u", m->kind);
    }
  conn_send (c, PROTO_DONE, id, NULL, 0);
}

/* ---- read ---- */

static void
read_pump (struct fxfer *x)
{
  struct conn *c = x->conn;
  while (!x->dead && !c->dead && !c->throttled)
    {
      uint8_t *buf = conn_data_reserve (c);
      if (!buf)
        {
          conn_close (c);
          return;
        }
      size_t want = x->left < PROTO_DATA_CHUNK ? (size_t) x->left : PROTO_DATA_CHUNK;
      ssize_t n = want ? read (x->fd, buf, want) : 0;
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          conn_send_errno (c, x->id, errno, "read: %s", strerror (errno));
          xfer_free (x);
          return;
        }
      if (n == 0)
        {
          struct proto_msg done = { .size = x->done };
          PROTO_SET (&done, PROTO_M_SIZE);
          conn_send_msg (c, PROTO_DONE, x->id, &done);
          xfer_free (x);
          return;
        }
      conn_data_commit (c, PROTO_FILE_DATA, x->id, (uint32_t) n);
      x->left -= (uint64_t) n;
      x->done += (uint64_t) n;
      conn_flush (c);
      conn_update (c);
    }
}

void
files_conn_pump (struct conn *c)
{
  static uint64_t epoch;
  uint64_t e = ++epoch;
again:
  for (struct fxfer *x = c->agent->xfers; x; x = x->next)
    if (x->conn == c && !x->writing && !x->dead && x->mark != e)
      {
        x->mark = e;
        read_pump (x);
        if (c->dead || c->throttled)
          return;
        goto again; /* the list may have changed */
      }
}

static void
file_read (struct conn *c, uint32_t id, const struct proto_msg *m)
{
  struct sbx_err err = { 0 };
  int fd = path_open (c->agent, m->path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0, &err);
  if (fd < 0)
    return fail_err (c, id, &err);
  struct stat st;
  int bad_stat = fstat (fd, &st) < 0;
  if (bad_stat || !S_ISREG (st.st_mode))
    {
      int e = bad_stat ? errno : 0;
      close (fd);
      if (!bad_stat && S_ISDIR (st.st_mode))
        return conn_send_errno (c, id, EISDIR, "%s is a directory", m->path);
      return conn_send_errno (c, id, e ? e : EINVAL, "%s is not a regular file", m->path);
    }
  if (m->offset && lseek (fd, (off_t) m->offset, SEEK_SET) < 0)
    {
      close (fd);
      return fail_sys (c, id, "seek", m->path);
    }
  struct fxfer *x = xfer_new (c, id);
  if (!x)
    {
      close (fd);
      return conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
    }
  x->fd = fd;
  x->left = PROTO_HAS (m, PROTO_M_LENGTH) && m->length ? m->length : UINT64_MAX;
  struct proto_msg info;
  info_from_stat (&info, &st);
  conn_send_msg (c, PROTO_FILE_INFO, id, &info);
  read_pump (x);
}

/* ---- write ---- */

static void
file_write (struct conn *c, uint32_t id, const struct proto_msg *m)
{
  struct agent *a = c->agent;
  struct sbx_err err = { 0 };
  char name[NAME_MAX + 1];
  cleanup_close int dfd = path_open_parent (a, m->path, m->flags & PROTO_F_PARENTS, name, &err);
  if (dfd < 0)
    return fail_err (c, id, &err);
  struct stat st;
  bool exists = fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && S_ISDIR (st.st_mode))
    return conn_send_errno (c, id, EISDIR, "%s is a directory", m->path);
  mode_t mode = PROTO_HAS (m, PROTO_M_MODE) ? (mode_t) (m->mode & 07777)
                : exists && S_ISREG (st.st_mode) ? (st.st_mode & 07777)
                                                 : MODE_DEFAULT;
  struct fxfer *x = xfer_new (c, id);
  if (!x)
    return conn_send_error (c, id, SBX_E_INTERNAL, "out of memory");
  x->writing = true;
  x->mode = mode;
  snprintf (x->name, sizeof x->name, "%s", name);
  if (m->flags & PROTO_F_APPEND)
    {
      /* O_NONBLOCK: a FIFO planted there fails (ENXIO) instead of blocking us. */
      x->fd = openat (dfd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY
                                     | O_NONBLOCK | O_CLOEXEC, mode);
      if (x->fd < 0 || fstat (x->fd, &st) < 0 || !S_ISREG (st.st_mode))
        {
          int e = x->fd < 0 ? errno : EINVAL;
          xfer_free (x);
          return conn_send_errno (c, id, e, "append %s: %s", m->path,
                                  e == ELOOP ? "the file is a symbolic link" : strerror (e));
        }
      sbx_set_nonblock (x->fd, 0);
    }
  else
    {
      for (int tries = 0; tries < 8 && x->fd < 0; tries++)
        {
          uint32_t r = 0;
          if (getrandom (&r, sizeof r, 0) < 0)
            r = (uint32_t) sbx_mono_ns ();
          snprintf (x->tmp, sizeof x->tmp, ".sbx-%.200s.%08x", name, r);
          x->fd = openat (dfd, x->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                          0600);
          if (x->fd < 0 && errno != EEXIST)
            break;
        }
      if (x->fd < 0)
        {
          int e = errno;
          x->tmp[0] = '\0';
          xfer_free (x);
          return conn_send_errno (c, id, e, "write %s: %s", m->path, strerror (e));
        }
    }
  x->dirfd = steal_fd (&dfd);
  conn_send (c, PROTO_READY, id, NULL, 0);
}

static void
write_end (struct fxfer *x)
{
  struct conn *c = x->conn;
  if (!x->tmp[0])
    {
      struct proto_msg done = { .size = x->done };
      PROTO_SET (&done, PROTO_M_SIZE);
      conn_send_msg (c, PROTO_DONE, x->id, &done);
      return;
    }
  if (fchmod (x->fd, x->mode) < 0 || renameat (x->dirfd, x->tmp, x->dirfd, x->name) < 0)
    return conn_send_errno (c, x->id, errno, "write %s: %s", x->name, strerror (errno));
  x->tmp[0] = '\0';
  struct proto_msg done = { .size = x->done };
  PROTO_SET (&done, PROTO_M_SIZE);
  conn_send_msg (c, PROTO_DONE, x->id, &done);
}

void
files_data (struct conn *c, const struct proto_frame *f)
{
  struct fxfer *x = c->agent->xfers;
  while (x && !(x->conn == c && x->id == f->id && x->writing))
    x = x->next;
  if (!x)
    return; /* after an ERROR or for an unknown id: dropped */
  if (f->len == 0)
    {
      if (!x->failed)
        write_end (x);
      xfer_free (x);
      return;
    }
  if (x->failed)
    return;
  if (sbx_write_all (x->fd, f->payload, f->len) < 0)
    {
      x->failed = true;
      conn_send_errno (c, x->id, errno, "write %s: %s", x->name, strerror (errno));
      return;
    }
  x->done += f->len;
}

void
files_request (struct conn *c, const struct proto_frame *f)
{
  struct sbx_err err = { 0 };
  uint32_t id = f->id;
  if (id == 0)
    return conn_send_error (c, 0, SBX_E_INVALID, "request id 0 is reserved");
  if (conn_id_in_use (c, id))
    return conn_send_error (c, 0, SBX_E_INVALID, "request %u is already running", id);
  if (c->nreqs >= AGENT_MAX_EXECS)
    return conn_send_error (c, id, SBX_E_CAPACITY, "too many concurrent requests (max %d)",
                            AGENT_MAX_EXECS);
  struct proto_msg m;
  if (proto_msg_decode (f->payload, f->len, &m, &err) < 0)
    return conn_send_error (c, id, SBX_E_INVALID, "%s", err.msg);
  if (path_check (m.path, &err) < 0)
    fail_err (c, id, &err);
  else if (m.path2 && path_check (m.path2, &err) < 0)
    fail_err (c, id, &err);
  else if (f->type == PROTO_FILE_READ)
    file_read (c, id, &m);
  else if (f->type == PROTO_FILE_WRITE)
    file_write (c, id, &m);
  else
    file_op (c, id, &m);
  proto_msg_free (&m);
}
