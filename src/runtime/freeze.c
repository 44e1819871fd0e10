/* Freezing a sandbox for a consistent copy of its files (snapshots). The cgroup freezer
 * stops every task at a point where it holds no partial state of a system call: a
 * write(2) into the upper layer is either complete or not begun while frozen. v1: the
 * freezer controller's freezer.state; v2: cgroup.freeze / cgroup.events "frozen 1". */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#define FREEZE_ROUNDS 80 /* backoff rounds: ~2 s in all */

static int
is_frozen (const char *dir, int v1)
{
  char p[PATH_MAX + 32], st[512];
  snprintf (p, sizeof p, "%s/%s", dir, v1 ? "freezer.state" : "cgroup.events");
  if (sbx_read_file (p, st, sizeof st) < 0)
    return -1;
  if (v1)
    return !strncmp (st, "FROZEN", 6);
  return strstr (st, "frozen 1") != NULL;
}

int
rt_sandbox_freeze (struct rt_sandbox *sb, int frozen, struct sbx_err *err)
{
  if (!sb->have_cgroup)
    return sbx_err_set (err, SBX_E_INTERNAL, ENOENT, "sandbox %s has no cgroup", sb->id);
  int v1 = strcmp (sb->cg.ops->name, "v1") == 0;
  char dir[PATH_MAX];
  if (rt_cg_path (dir, sb->cg.root, v1 ? "freezer" : NULL, sb->id) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, ENAMETOOLONG, "cgroup path too long");
  const char *file = v1 ? "freezer.state" : "cgroup.freeze";
  const char *val = v1 ? (frozen ? "FROZEN" : "THAWED") : (frozen ? "1" : "0");
  if (rt_cg_write (dir, file, val, err) < 0)
    return -1;
  sb->frozen = frozen;
  if (!frozen)
    return 0;
  /* v1: reading freezer.state is what moves FREEZING to FROZEN once every task stopped. */
  for (unsigned round = 0; round < FREEZE_ROUNDS; round++)
    {
      int r = is_frozen (dir, v1);
      if (r < 0)
        break;
      if (r == 1)
        return 0;
      if (round < 4)
        sched_yield ();
      else
        rt_cg_backoff (round - 4);
    }
  /* A task in an uninterruptible sleep did not stop: do not claim a consistent state. */
  struct sbx_err ignored;
  rt_cg_write (dir, file, v1 ? "THAWED" : "0", &ignored);
  sb->frozen = 0;
  return sbx_err_set (err, SBX_E_INTERNAL, EBUSY, "sandbox %s did not freeze in time", sb->id);
}
