/* Image layers and volumes of a sandbox, both sides of the spawn.
 *
 * An image is an ordered list of read-only layer directories on the host (top first, as
 * overlayfs's lowerdir lists them). The parent makes one idmapped read-only clone of each
 * (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)), so every layer stays owned by host root
 * on disk and reads as root-owned inside; overlayfs (6.x) accepts idmapped lower layers.
 * Volumes are host directories (sbxd mounts each volume's filesystem on the host) cloned
 * the same way but writable, so what the sandbox's root writes lands on disk owned by
 * host root (uid 0 in the volume), whichever sandbox wrote it.
 *
 * All mount fds travel with the go record (SCM_RIGHTS, lowers first, then volumes). The
 * child attaches the layers under lower/<i>, mounts the overlay, attaches each volume
 * on a directory it walks to component by component without following a symlink (the
 * image is untrusted data), and sends back a detached clone of its scratch tmpfs: sbxd
 * keeps that fd for the sandbox's lifetime and reads the upper layer through it
 * (snapshots, diffs); it is reachable from nowhere else on the host. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL(stage, msg) rt_child_fail (c, (stage), errno, (msg))

/* ---- parent: validation -------------------------------------------------------------- */

/* Absolute, normalized ("/a/b", no "." or ".." component, no empty component, no trailing
 * slash), not "/" and not in /proc, /sys, /dev or /tmp (the runtime mounts those itself;
 * /tmp is bound over whatever is mounted there). */
int
rt_volume_target_ok (const char *t)
{
  size_t n = t ? strlen (t) : 0;
  if (n < 2 || n > RT_VOLUME_TARGET_MAX || t[0] != '/' || t[n - 1] == '/')
    return 0;
  for (const char *p = t; *p;)
    {
      const char *comp = p + 1;
      const char *end = strchr (comp, '/');
      size_t cl = end ? (size_t) (end - comp) : strlen (comp);
      if (cl == 0 || (cl == 1 && comp[0] == '.') || (cl == 2 && comp[0] == '.' && comp[1] == '.'))
        return 0;
      p = comp + cl;
    }
  static const char *const reserved[] = { "/proc", "/sys", "/dev", "/tmp" };
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    {
      size_t rl = strlen (reserved[i]);
      if (!strncmp (t, reserved[i], rl) && (t[rl] == '\0' || t[rl] == '/'))
        return 0;
    }
  return 1;
}

int
rt_layers_check_spec (const struct rt_spec *spec, struct sbx_err *err)
{
  if (spec->lowers)
    {
      if (spec->n_lowers == 0 || spec->n_lowers > RT_LOWERS_MAX)
        return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: 1..%d image layers",
                            RT_LOWERS_MAX);
      for (size_t i = 0; i < spec->n_lowers; i++)
        if (!spec->lowers[i] || spec->lowers[i][0] != '/')
          return sbx_err_set (err, SBX_E_INVALID, EINVAL,
                              "spec: image layer %zu must be an absolute path", i);
    }
  if (spec->n_volumes > RT_VOLUMES_MAX || (spec->n_volumes && !spec->volumes))
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: at most %d volumes", RT_VOLUMES_MAX);
  for (size_t i = 0; i < spec->n_volumes; i++)
    {
      const struct rt_volume *v = &spec->volumes[i];
      if (!v->source || v->source[0] != '/')
        return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: volume source must be absolute");
      if (!rt_volume_target_ok (v->target))
        return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: invalid volume mount point");
      for (size_t j = 0; j < i; j++)
        if (!strcmp (spec->volumes[j].target, v->target))
          return sbx_err_set (err, SBX_E_INVALID, EINVAL, "spec: volume mount point twice");
    }
  return 0;
}

/* Fill the child's overlay options and volume mount points (relative to the scratch dir). */
int
rt_layers_prepare_child (const struct rt_spec *spec, struct rt_child *c, struct sbx_err *err)
{
  size_t nl = spec->lowers ? spec->n_lowers : 1;
  size_t off = 0;
  int w = snprintf (c->overlay_opts, sizeof c->overlay_opts, "lowerdir=");
  off = (size_t) w;
  for (size_t i = 0; i < nl; i++)
    {
      w = snprintf (c->overlay_opts + off, sizeof c->overlay_opts - off, "%slower/%zu",
                    i ? ":" : "", i);
      if (w < 0 || (size_t) w >= sizeof c->overlay_opts - off)
        return sbx_err_set (err, SBX_E_INVALID, E2BIG, "overlay options too long");
      off += (size_t) w;
    }
  w = snprintf (c->overlay_opts + off, sizeof c->overlay_opts - off,
                ",upperdir=upper,workdir=work,userxattr");
  if (w < 0 || (size_t) w >= sizeof c->overlay_opts - off)
    return sbx_err_set (err, SBX_E_INVALID, E2BIG, "overlay options too long");
  c->n_lowers = (int) nl;
  c->n_volumes = (int) spec->n_volumes;
  c->keep_caps = spec->keep_caps;
  for (size_t i = 0; i < spec->n_volumes; i++)
    snprintf (c->vol_targets[i], sizeof c->vol_targets[i], "%s", spec->volumes[i].target + 1);
  return 0;
}

/* ---- parent: idmapped clones ---------------------------------------------------------- */

static int
idmapped_clone (int userns, const char *dir, int readonly, int recursive, struct sbx_err *err)
{
  int tree = open_tree (AT_FDCWD, dir,
                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (tree < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, errno, "open_tree '%s': %s", dir, strerror (errno));
  struct mount_attr attr = {
    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                | (readonly ? MOUNT_ATTR_RDONLY : 0),
    .userns_fd = (uint64_t) userns,
  };
  if (mount_setattr (tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
                     sizeof attr)
      < 0)
    {
      int e = errno;
      close (tree);
      return sbx_err_set (err, SBX_E_INTERNAL, e, "idmap '%s': %s", dir, strerror (e));
    }
  return tree;
}

void
rt_mounts_close (struct rt_mounts *m)
{
  for (int i = 0; i < m->n; i++)
    sbx_closep (&m->fds[i]);
  m->n = 0;
}

int
rt_layers_open (pid_t pid, const struct rt_spec *spec, struct rt_mounts *m, struct sbx_err *err)
{
  m->n = 0;
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/ns/user", (int) pid);
  cleanup_close int userns = open (path, O_RDONLY | O_CLOEXEC);
  if (userns < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, errno, "open %s: %s", path, strerror (errno));
  size_t nl = spec->lowers ? spec->n_lowers : 1;
  for (size_t i = 0; i < nl; i++)
    {
      /* A layer is one directory tree; the built-in rootfs may have submounts in tests. */
      int fd = idmapped_clone (userns, spec->lowers ? spec->lowers[i] : spec->rootfs, 1, 1, err);
      if (fd < 0)
        goto fail;
      m->fds[m->n++] = fd;
    }
  for (size_t i = 0; i < spec->n_volumes; i++)
    {
      /* Not recursive: only the volume's own filesystem, never what is mounted below. */
      int fd = idmapped_clone (userns, spec->volumes[i].source, spec->volumes[i].readonly, 0, err);
      if (fd < 0)
        goto fail;
      m->fds[m->n++] = fd;
    }
  return 0;
fail:
  rt_mounts_close (m);
  return -1;
}

int
rt_layers_send_go (int sync_fd, const struct rt_sync_msg *go, const struct rt_mounts *m)
{
  char ctrl[CMSG_SPACE (sizeof (int) * RT_MOUNT_FDS_MAX)];
  memset (ctrl, 0, sizeof ctrl);
  struct iovec iov = { .iov_base = (void *) go, .iov_len = sizeof *go };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                        .msg_controllen = CMSG_SPACE (sizeof (int) * (size_t) m->n) };
  struct cmsghdr *cm = CMSG_FIRSTHDR (&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN (sizeof (int) * (size_t) m->n);
  memcpy (CMSG_DATA (cm), m->fds, sizeof (int) * (size_t) m->n);
  ssize_t r;
  do
    r = sendmsg (sync_fd, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return r == (ssize_t) sizeof *go ? 0 : -1;
}

/* One sync record, with at most one fd (the scratch mount after the overlay stage). */
ssize_t
rt_sync_recv (int sync_fd, struct rt_sync_msg *m, int *fd)
{
  char ctrl[CMSG_SPACE (sizeof (int) * 4)];
  struct iovec iov = { .iov_base = m, .iov_len = sizeof *m };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                        .msg_controllen = sizeof ctrl };
  *fd = -1;
  ssize_t n = recvmsg (sync_fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0)
    return -1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR (&msg); cm; cm = CMSG_NXTHDR (&msg, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
      {
        int nfd = (int) ((cm->cmsg_len - CMSG_LEN (0)) / sizeof (int));
        int fds[4];
        memcpy (fds, CMSG_DATA (cm), sizeof (int) * (size_t) (nfd > 4 ? 4 : nfd));
        for (int i = 0; i < nfd && i < 4; i++)
          {
            if (*fd < 0)
              *fd = fds[i];
            else
              close (fds[i]);
          }
      }
  return n;
}

/* ---- child ------------------------------------------------------------------------------ */

/* Receive the go record and its mount fds into fds[] (c->n_lowers + c->n_volumes). 0 if
 * the parent is gone or gave up (nobody to report to), 1 when received. */
int
rt_child_recv_go (const struct rt_child *c, int *fds)
{
  struct rt_sync_msg m;
  char ctrl[CMSG_SPACE (sizeof (int) * RT_MOUNT_FDS_MAX)];
  struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                        .msg_controllen = sizeof ctrl };
  ssize_t n;
  do
    n = recvmsg (c->sync_fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    FAIL (RT_STAGE_WAIT_PARENT, "recvmsg");
  if (n != (ssize_t) sizeof m || m.kind != RT_SYNC_GO)
    return 0;
  int want = c->n_lowers + c->n_volumes;
  struct cmsghdr *cm = CMSG_FIRSTHDR (&msg);
  if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS
      || cm->cmsg_len != CMSG_LEN (sizeof (int) * (size_t) want))
    rt_child_fail (c, RT_STAGE_WAIT_PARENT, EBADMSG, "wrong number of mount fds");
  char *src = (char *) CMSG_DATA (cm);
  char *dst = (char *) fds;
  for (size_t i = 0; i < sizeof (int) * (size_t) want; i++)
    dst[i] = src[i];
  return 1;
}

/* "lower/<i>" without snprintf. */
static void
lower_name (char buf[16], int i)
{
  const char *p = "lower/";
  int k = 0;
  while (*p)
    buf[k++] = *p++;
  char digits[8];
  int nd = 0;
  do
    digits[nd++] = (char) ('0' + i % 10);
  while ((i /= 10) && nd < 7);
  while (nd)
    buf[k++] = digits[--nd];
  buf[k] = '\0';
}

void
rt_child_attach_lowers (const struct rt_child *c, const int *fds)
{
  if (mkdir ("lower", 0755) < 0)
    FAIL (RT_STAGE_LAYERS, "mkdir lower");
  for (int i = 0; i < c->n_lowers; i++)
    {
      char name[16];
      lower_name (name, i);
      if (mkdir (name, 0755) < 0)
        FAIL (RT_STAGE_LAYERS, "mkdir lower/<i>");
      if (move_mount (fds[i], "", AT_FDCWD, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        FAIL (RT_STAGE_LAYERS, "attach image layer");
      close (fds[i]);
    }
}

/* Walk new/<target> one component at a time from the overlay root: a component that
 * exists must be a real directory (O_NOFOLLOW|O_DIRECTORY refuses a symlink planted in
 * the image), a missing one is created. Returns an O_PATH fd of the mount point. */
static int
open_mount_point (const struct rt_child *c, const char *target)
{
  int dir = open ("new", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0)
    FAIL (RT_STAGE_OVERLAY, "open new root");
  char comp[256];
  const char *p = target;
  while (*p)
    {
      size_t k = 0;
      while (*p && *p != '/' && k + 1 < sizeof comp)
        comp[k++] = *p++;
      comp[k] = '\0';
      while (*p == '/')
        p++;
      int next = openat (dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT)
        {
          if (mkdirat (dir, comp, 0755) < 0 && errno != EEXIST)
            FAIL (RT_STAGE_OVERLAY, "mkdir volume mount point");
          next = openat (dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
      if (next < 0)
        FAIL (RT_STAGE_OVERLAY, "volume mount point (not a directory, or a symlink)");
      close (dir);
      dir = next;
    }
  return dir;
}

void
rt_child_mount_volumes (const struct rt_child *c, const int *fds)
{
  for (int i = 0; i < c->n_volumes; i++)
    {
      int at = open_mount_point (c, c->vol_targets[i]);
      if (move_mount (fds[i], "", at, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        FAIL (RT_STAGE_OVERLAY, "attach volume");
      close (at);
      close (fds[i]);
    }
}

/* A detached clone of the scratch tmpfs (cwd) for the parent: its upper/ is the sandbox's
 * writable layer. Sent with the overlay progress record. */
void
rt_child_send_scratch (const struct rt_child *c)
{
  int fd = open_tree (AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0)
    FAIL (RT_STAGE_OVERLAY, "clone scratch mount");
  struct rt_sync_msg m;
  for (size_t i = 0; i < sizeof m; i++)
    ((char *) &m)[i] = 0;
  m.kind = RT_SYNC_PROGRESS;
  m.stage = RT_STAGE_OVERLAY;
  char ctrl[CMSG_SPACE (sizeof (int))];
  for (size_t i = 0; i < sizeof ctrl; i++)
    ctrl[i] = 0;
  struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                        .msg_controllen = sizeof ctrl };
  struct cmsghdr *cm = CMSG_FIRSTHDR (&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN (sizeof (int));
  char *src = (char *) &fd;
  char *dst = (char *) CMSG_DATA (cm);
  for (size_t i = 0; i < sizeof fd; i++)
    dst[i] = src[i];
  ssize_t r;
  do
    r = sendmsg (c->sync_fd, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r != (ssize_t) sizeof m)
    FAIL (RT_STAGE_OVERLAY, "send scratch mount");
  close (fd);
}
