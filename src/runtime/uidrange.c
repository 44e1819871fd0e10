/* uid range slots: one flock'ed file per slot under RT_UID_DIR (/run/sbx/uids: one
 * directory for the whole host, since the ranges are the host's: two sbxd with different
 * state dirs, or `sbx run --state-dir`, must not hand out the same range). The lock is tied to
 * an open file description, so it lives exactly as long as some process holds it, and a
 * crashed sbxd or a dead sandbox frees its range without any bookkeeping. Lock files are
 * never unlinked: unlinking a lock file races with another claimer that already opened
 * it.
 *
 * Who holds the lock: the spawner until the spawn succeeded, then only sbx-init (its fd
 * 4); sbxd keeps no fd per sandbox (that would cap density at RLIMIT_NOFILE). The flock
 * alone would free the slot too early: the kernel closes PID 1's files in do_exit
 * *before* it kills and waits for the rest of its pid namespace, so for a moment the
 * other processes of the sandbox still run with the range's uids while the lock is free
 * (on a terminate, a timeout, or PID 1 dying on its own). So a claimer also writes its
 * sandbox id into the lock file, and a slot whose lock is free counts as free only once
 * the cgroup of the sandbox named there has no task left. Sandbox processes cannot leave
 * their cgroup, so an empty (or removed) cgroup means nothing runs with those uids. */
#include "internal.h"
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The lock file names its sandbox in an extended attribute: it lives in the inode, so
 * neither reading nor writing it touches a data block. Reading a block of one of 16,384
 * small files picked at random missed the page cache on this project's VMs (0.4-0.9 ms
 * per spawn, seen with perf trace) and rewriting it freed blocks (a synchronous discard
 * under -o discard). Files of older versions name it in their content; a filesystem
 * without user xattrs gets the content too. */
#define SLOT_XATTR "user.sbx.sandbox"

/* The windows of slots tried first: 64, 128, ..., 8192 (see rt_uid_slot_claim). */
#define UID_WINDOW_FIRST 64u
#define UID_WINDOWS 8
_Static_assert (UID_WINDOW_FIRST << UID_WINDOWS == RT_UID_SLOTS, "windows end at the last");

static ssize_t
read_owner (int fd, char *id, size_t cap)
{
  ssize_t n = fgetxattr (fd, SLOT_XATTR, id, cap - 1);
  if (n < 0 && (errno == ENODATA || errno == ENOTSUP))
    n = pread (fd, id, cap - 1, 0);
  return n;
}

/* fd is read-only (see rt_uid_slot_try); the content fallback opens the file for writing
 * just for the record (closing that other open file description keeps our flock). */
static int
write_owner (int fd, int dir_fd, const char *name, const char *id)
{
  size_t len = strnlen (id, SBX_ID_MAX);
  if (fsetxattr (fd, SLOT_XATTR, id, len, 0) == 0)
    return 0;
  if (errno != ENOTSUP)
    return -1;
  /* A fixed-size record written in place, never truncated (no block freed). */
  char line[SBX_ID_MAX + 1];
  memset (line, '\n', sizeof line);
  memcpy (line, id, len);
  cleanup_close int wfd = openat (dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (wfd < 0)
    return -1;
  return pwrite (wfd, line, sizeof line, 0) == (ssize_t) sizeof line ? 0 : -1;
}

/* 1 if the sandbox that last held the slot (named in the lock file) has a task left. */
static int
previous_still_running (int fd, const char *cg_root)
{
  char id[SBX_ID_MAX];
  ssize_t n = read_owner (fd, id, sizeof id);
  if (n <= 0)
    return 0; /* never used */
  id[n] = '\0';
  id[strcspn (id, "\n")] = '\0';
  struct rt_cgroup cg;
  struct sbx_err ignored;
  if (!sbx_id_valid (id, "sb") || rt_cgroup_init (&cg, cg_root, id, &ignored) < 0)
    return 0;
  return !cg.ops->is_empty (&cg);
}

int
rt_uid_slot_try (int dir_fd, uint32_t slot, const char *cg_root, const char *id, int *lock_fd,
                 struct sbx_err *err)
{
  char name[32];
  snprintf (name, sizeof name, "%u.lock", slot);
  /* Read-only: the lock fd ends up as sbx-init's fd 4, inside the sandbox, and a host
   * file must not be writable from there (flock and the xattr need no write access). */
  cleanup_close int fd = openat (dir_fd, name, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return sbx_err_sys (err, "open uid slot lock '%s'", name);
  if (flock (fd, LOCK_EX | LOCK_NB) < 0)
    {
      if (errno == EWOULDBLOCK)
        return 0;
      return sbx_err_sys (err, "flock uid slot lock '%s'", name);
    }
  if (previous_still_running (fd, cg_root))
    return 0; /* its sandbox is being torn down; closing fd drops our lock */
  /* Ours now: name the sandbox for the claimers after it (see above). */
  if (write_owner (fd, dir_fd, name, id) < 0)
    return sbx_err_sys (err, "write uid slot lock '%s'", name);
  *lock_fd = sbx_steal_fd (&fd);
  return 1;
}

/* rt_uid_slot_try, and the slot number on success. */
static int
try_slot (int dfd, uint32_t s, const char *cg_root, const char *id, int *lock_fd,
          uint32_t *slot, struct sbx_err *err)
{
  int r = rt_uid_slot_try (dfd, s, cg_root, id, lock_fd, err);
  if (r == 1)
    *slot = s;
  return r;
}

int
rt_uid_slot_claim (const char *dir, const char *cg_root, const char *id, int *lock_fd,
                   uint32_t *slot, struct sbx_err *err)
{
  /* mkdir -p only when missing: one open instead of a mkdir per path component. */
  cleanup_close int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 && errno == ENOENT)
    {
      if (sbx_mkdir_p (dir, 0700) < 0)
        return sbx_err_sys (err, "mkdir '%s'", dir);
      dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
  if (dfd < 0)
    return sbx_err_sys (err, "open '%s'", dir);

  /* Random picks in a window at the bottom first, the window doubled after two misses:
   * with few sandboxes the same few lock files come back, and their inodes stay in the
   * cache. The lock directory is on disk where /run is not a tmpfs: there, reading the
   * owner of a slot picked among all 16,384 went to the disk for its inode block (0.5 ms
   * per spawn on this project's VMs, whose cold pages are reclaimed within minutes). A
   * full bottom costs a few misses: 14 with 5,000 sandboxes. Then every slot
   * once, from a random one. */
  uint32_t rnd[2 * UID_WINDOWS + 1]; /* two picks per window, then the scan's start */
  if (getrandom (rnd, sizeof rnd, 0) != sizeof rnd)
    return sbx_err_sys (err, "getrandom");
  int r = 0;
  for (int k = 0; k < 2 * UID_WINDOWS && r == 0; k++)
    r = try_slot (dfd, rnd[k] % (UID_WINDOW_FIRST << k / 2), cg_root, id, lock_fd, slot, err);
  uint32_t start = rnd[2 * UID_WINDOWS] % RT_UID_SLOTS;
  for (uint32_t i = 0; i < RT_UID_SLOTS && r == 0; i++)
    r = try_slot (dfd, (start + i) % RT_UID_SLOTS, cg_root, id, lock_fd, slot, err);
  if (r == 1)
    return 0;
  if (r < 0)
    return sbx_err_wrap (err, "uid slots '%s'", dir);
  return sbx_err_set (err, SBX_E_CAPACITY, 0, "no free uid range (%u in use)", RT_UID_SLOTS);
}
