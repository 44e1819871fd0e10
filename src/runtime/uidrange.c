/* uid range slots: one flock'ed file per slot under <state_dir>/uids/. The lock is tied to
 * an open file description, so it lives exactly as long as some process (sbxd's handle,
 * then sbx-init's fd 4) holds it, and a crashed sbxd or a dead sandbox frees its range
 * without any bookkeeping. Lock files are never unlinked: unlinking a lock file races
 * with another claimer that already opened it. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

int
rt_uid_slot_claim (const char *state_dir, int *lock_fd, uint32_t *slot, struct sbx_err *err)
{
  char dir[PATH_MAX];
  if (snprintf (dir, sizeof dir, "%s/uids", state_dir) >= (int) sizeof dir)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "state dir path too long");
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

  uint32_t start = 0;
  if (getrandom (&start, sizeof start, 0) != sizeof start)
    return sbx_err_sys (err, "getrandom");
  start %= RT_UID_SLOTS;
  for (uint32_t i = 0; i < RT_UID_SLOTS; i++)
    {
      uint32_t s = (start + i) % RT_UID_SLOTS;
      char name[32];
      snprintf (name, sizeof name, "%u.lock", s);
      int fd = openat (dfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0)
        return sbx_err_sys (err, "open '%s/%s'", dir, name);
      if (flock (fd, LOCK_EX | LOCK_NB) == 0)
        {
          *lock_fd = fd;
          *slot = s;
          return 0;
        }
      int e = errno;
      close (fd);
      if (e != EWOULDBLOCK)
        {
          errno = e;
          return sbx_err_sys (err, "flock '%s/%s'", dir, name);
        }
    }
  return sbx_err_set (err, SBX_E_CAPACITY, 0, "no free uid range (%u in use)", RT_UID_SLOTS);
}
