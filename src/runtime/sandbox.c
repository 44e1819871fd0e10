/* The sandbox handle after spawn: accessors, kill, teardown, and finding a sandbox again
 * after an sbxd restart (adopt) or cleaning up after one that died meanwhile. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* An adopted PID 1 is not our child: we can only wait for its pidfd to turn readable. */
#define ADOPTED_EXIT_WAIT_MS 5000

const char *
rt_sandbox_id (const struct rt_sandbox *sb)
{
  return sb->id;
}

pid_t
rt_sandbox_pid (const struct rt_sandbox *sb)
{
  return sb->pid;
}

int
rt_sandbox_pidfd (const struct rt_sandbox *sb)
{
  return sb->pidfd;
}

uint32_t
rt_sandbox_uid_base (const struct rt_sandbox *sb)
{
  return sb->uid_base;
}

const char *
rt_sandbox_socket (const struct rt_sandbox *sb)
{
  return sb->sock_path;
}

int
rt_sandbox_scratch_fd (const struct rt_sandbox *sb)
{
  return sb->scratch_fd;
}

int
rt_sandbox_oom_killed (struct rt_sandbox *sb)
{
  return sb && sb->have_cgroup && sb->cg.ops->oom_kills (&sb->cg) > 0 ? 1 : 0;
}

/* SIGKILL to PID 1 makes the kernel kill every process of its pid namespace, including
 * double-forked, setsid'ed ones, and stop new pids being allocated in it, so a task
 * caught mid-fork dies too. The cgroup kill (on v1 a freeze/kill/thaw round that races
 * with the tasks already exiting, the costliest part of a terminate) is only needed
 * without a live pidfd, or when the sandbox is frozen (a frozen task does not die until
 * thawed, and the round thaws); teardown still empties the cgroup before removing it. */
void
rt_sandbox_kill (struct rt_sandbox *sb)
{
  if (!sb)
    return;
  if (sb->pidfd >= 0 && !sb->reaped && !sb->frozen
      && syscall (SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0) == 0)
    return;
  if (sb->have_cgroup)
    sb->cg.ops->kill_all (&sb->cg);
}

static void
wait_pid1 (struct rt_sandbox *sb)
{
  if (sb->pidfd < 0 || sb->reaped)
    return;
  if (sb->is_child)
    {
      siginfo_t si;
      int r;
      do
        r = waitid (P_PIDFD, (id_t) sb->pidfd, &si, WEXITED);
      while (r < 0 && errno == EINTR);
      if (r < 0 && errno != ECHILD)
        LOG_WARN ("sandbox %s: waitid: %s", sb->id, strerror (errno));
      sb->reaped = 1;
      return;
    }
  struct pollfd p = { .fd = sb->pidfd, .events = POLLIN };
  int r;
  do
    r = poll (&p, 1, ADOPTED_EXIT_WAIT_MS);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    LOG_WARN ("sandbox %s: PID 1 still alive after SIGKILL", sb->id);
  else
    sb->reaped = 1;
}

/* Remove the run dir (agent socket, pid file, scratch mount point). */
static void
remove_run_dir (struct rt_sandbox *sb)
{
  if (!sb->have_run_dir)
    return;
  if (sbx_rm_rf (sb->run_dir) < 0)
    LOG_WARN ("sandbox %s: remove '%s': %s", sb->id, sb->run_dir, strerror (errno));
  sb->have_run_dir = 0;
}

void
rt_sandbox_teardown (struct rt_sandbox *sb)
{
  int64_t t0 = sbx_mono_ns ();
  /* A frozen task does not die of SIGKILL until thawed (v1 freezer). */
  if (sb->frozen)
    {
      struct sbx_err ignored;
      rt_sandbox_freeze (sb, 0, &ignored);
    }
  /* PID 1 first, and wait for it: its death makes the kernel kill every other task of
   * its pid namespace and wait for them (no new pid can be allocated meanwhile, so a fork
   * bomb cannot outrun it). Only what is still left in the cgroup after that, normally
   * nothing, costs a cgroup kill (on v1 a freeze/kill/thaw round of several ms), and
   * rt_cgroup_destroy does it when the cgroup is not empty. Without a pidfd to wait on,
   * kill through the cgroup right away. (Removing the run dir while PID 1 exits was
   * measured slower than doing it after.) */
  if (sb->pidfd >= 0 && !sb->reaped)
    {
      syscall (SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
      wait_pid1 (sb);
    }
  if ((sb->pidfd < 0 || !sb->reaped) && sb->have_cgroup)
    sb->cg.ops->kill_all (&sb->cg);
  sbx_closep (&sb->pidfd);
  sbx_closep (&sb->scratch_fd); /* the last reference to the scratch tmpfs goes here */
  int64_t t1 = sbx_mono_ns ();
  int cgroup_left = 0;
  if (sb->have_cgroup)
    {
      cgroup_left = rt_cgroup_destroy (&sb->cg) < 0;
      if (cgroup_left)
        LOG_WARN ("sandbox %s: remove cgroup: %s; its run dir stays, so that the next sbxd "
                  "start (or an sbx run on this state dir) removes both",
                  sb->id, strerror (errno));
      sb->have_cgroup = 0;
    }
  int64_t t2 = sbx_mono_ns ();
  /* The run dir is what the sweeps find leftovers by (recover.c, rt_gc_stale): without
   * it a cgroup that could not be removed would stay until reboot. */
  if (cgroup_left)
    sb->have_run_dir = 0;
  else
    remove_run_dir (sb);
  /* Only after a failed spawn: the uid range is free once sbx-init's copy (if it got one)
   * is gone too and the cgroup is empty (uidrange.c). */
  sbx_closep (&sb->lock_fd);
  int64_t t3 = sbx_mono_ns ();
  LOG_DEBUG ("sandbox %s: destroyed in %.2f ms (kill+wait %.2f, cgroup %.2f, run dir %.2f)",
             sb->id, (t3 - t0) / 1e6, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6);
}

void
rt_sandbox_destroy (struct rt_sandbox *sb)
{
  if (!sb)
    return;
  rt_sandbox_teardown (sb);
  free (sb);
}

void
rt_sandbox_release (struct rt_sandbox *sb)
{
  if (!sb)
    return;
  if (sb->frozen)
    {
      struct sbx_err ignored;
      rt_sandbox_freeze (sb, 0, &ignored); /* never leave a sandbox that cannot run */
    }
  sbx_closep (&sb->pidfd);
  sbx_closep (&sb->scratch_fd);
  if (sb->have_cgroup)
    sbx_closep (&sb->cg.dirfd);
  /* sbx-init holds the uid slot lock, so the range stays reserved. */
  sbx_closep (&sb->lock_fd);
  free (sb);
}

/* ---- adopt ------------------------------------------------------------------------ */

/* 1 if pid is PID 1 of its own pid namespace and sits in the cgroup "…/sbx/<id>". */
static int
is_sandbox_init (pid_t pid, const char *id)
{
  char path[64], buf[4096];
  snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
  if (sbx_read_file (path, buf, sizeof buf) < 0)
    return 0;
  char *ns = strstr (buf, "\nNSpid:");
  if (!ns)
    return 0;
  ns += 7;
  char *eol = strchr (ns, '\n');
  if (eol)
    *eol = '\0';
  char *last = strrchr (ns, '\t');
  if (!last || last == ns || strcmp (last + 1, "1") != 0)
    return 0; /* not namespaced, or not its namespace's init */

  char want[SBX_ID_MAX + 8];
  snprintf (want, sizeof want, "/sbx/%s", id);
  size_t wl = strlen (want);
  snprintf (path, sizeof path, "/proc/%d/cgroup", (int) pid);
  if (sbx_read_file (path, buf, sizeof buf) < 0)
    return 0;
  for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n"))
    {
      size_t n = strlen (line);
      if (n >= wl && strcmp (line + n - wl, want) == 0)
        return 1;
    }
  return 0;
}

/* The pid is a symlink's target (spawn.c); versions before wrote it as file content. */
static pid_t
read_pid_file (const char *run_dir)
{
  char path[PATH_MAX + 8], buf[32];
  snprintf (path, sizeof path, "%s/pid", run_dir);
  ssize_t n = readlink (path, buf, sizeof buf - 1);
  if (n >= 0)
    buf[n] = '\0';
  else if (errno != EINVAL || sbx_read_file (path, buf, sizeof buf) <= 0)
    return -1;
  char *end;
  long v = strtol (buf, &end, 10);
  if (v <= 1 || v > 0x400000 || (*end && *end != '\n'))
    return -1;
  return (pid_t) v;
}

/* Fallback when the pid file is missing: look through the cgroup's tasks. */
static pid_t
find_init_in_cgroup (const struct rt_cgroup *cg, const char *id)
{
  char dir[PATH_MAX], path[PATH_MAX + 16];
  int v1 = strcmp (cg->ops->name, "v1") == 0;
  if (rt_cg_path (dir, cg->root, v1 ? "pids" : NULL, id) < 0)
    return -1;
  snprintf (path, sizeof path, "%s/cgroup.procs", dir);
  char buf[16384];
  if (sbx_read_file (path, buf, sizeof buf) < 0)
    return -1;
  for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n"))
    {
      pid_t p = (pid_t) atol (line);
      if (p > 1 && is_sandbox_init (p, id))
        return p;
    }
  return -1;
}

static int
read_uid_base (pid_t pid, uint32_t *base)
{
  char path[64], buf[256];
  snprintf (path, sizeof path, "/proc/%d/uid_map", (int) pid);
  if (sbx_read_file (path, buf, sizeof buf) < 0)
    return -1;
  unsigned inside, outside, count;
  if (sscanf (buf, " %u %u %u", &inside, &outside, &count) != 3 || inside != 0
      || count != RT_UID_SPAN)
    return -1;
  *base = outside;
  return 0;
}

static int
parent_of (pid_t pid)
{
  char path[64], buf[512];
  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  if (sbx_read_file (path, buf, sizeof buf) < 0)
    return -1;
  char *p = strrchr (buf, ')'); /* comm may contain spaces and parens */
  int ppid;
  if (!p || sscanf (p + 1, " %*c %d", &ppid) != 1)
    return -1;
  return ppid;
}

static int
adopt (struct rt_sandbox *sb, const struct rt_spec *spec, struct sbx_err *err)
{
  if (!spec->id || !sbx_id_valid (spec->id, "sb") || !spec->state_dir)
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "invalid sandbox id or state dir");
  snprintf (sb->id, sizeof sb->id, "%s", spec->id);
  if (rt_run_dir_path (sb->run_dir, spec->state_dir, spec->id) < 0
      || snprintf (sb->sock_path, sizeof sb->sock_path, "%s/agent.sock", sb->run_dir)
             >= (int) sizeof sb->sock_path)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "state dir path too long");
  struct stat st;
  if (lstat (sb->run_dir, &st) < 0 || !S_ISDIR (st.st_mode))
    return sbx_err_set (err, SBX_E_NOT_FOUND, ENOENT, "no run dir '%s'", sb->run_dir);
  /* Without its socket nobody reaches sbx-init again: adopted, every exec would fail
   * until the lifetime ends. */
  if (lstat (sb->sock_path, &st) < 0 || !S_ISSOCK (st.st_mode))
    return sbx_err_set (err, SBX_E_NOT_FOUND, ENOENT, "no agent socket '%s'", sb->sock_path);
  if (rt_cgroup_init (&sb->cg, RT_CGROUP_ROOT, spec->id, err) < 0)
    return -1;

  pid_t pid = read_pid_file (sb->run_dir);
  if (pid <= 0 || !is_sandbox_init (pid, spec->id))
    pid = find_init_in_cgroup (&sb->cg, spec->id);
  if (pid <= 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, ESRCH, "PID 1 of the sandbox is gone");
  sb->pidfd = (int) syscall (SYS_pidfd_open, pid, 0);
  if (sb->pidfd < 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, errno, "pidfd_open %d: %s", (int) pid,
                        strerror (errno));
  /* The pidfd names whatever had this pid when it was opened. Check again now: if the
   * process still passes and the pidfd's process is still alive, they are the same one
   * (a pid is not reused while its process lives). */
  if (!is_sandbox_init (pid, spec->id)
      || syscall (SYS_pidfd_send_signal, sb->pidfd, 0, NULL, 0) < 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, ESRCH, "PID 1 of the sandbox is gone");
  if (read_uid_base (pid, &sb->uid_base) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, EINVAL, "unexpected uid_map of pid %d", (int) pid);
  sb->pid = pid;
  sb->is_child = parent_of (pid) == getpid ();
  return 0;
}

int
rt_sandbox_adopt (const struct rt_spec *spec, struct rt_sandbox **out, struct sbx_err *err)
{
  *out = NULL;
  struct rt_sandbox *sb = calloc (1, sizeof *sb);
  if (!sb)
    return sbx_err_sys (err, "adopt sandbox: calloc");
  sb->pidfd = -1;
  sb->lock_fd = -1; /* sbx-init holds the uid slot lock (fd 4), as after a spawn */
  sb->cg.dirfd = -1;
  sb->scratch_fd = -1; /* the scratch clone died with the sbxd that spawned it */
  if (adopt (sb, spec, err) < 0)
    {
      /* Leave everything as found: the caller decides (rt_cleanup_stale). */
      sbx_closep (&sb->pidfd);
      free (sb);
      return sbx_err_wrap (err, "adopt sandbox %s", spec && spec->id ? spec->id : "?");
    }
  sb->have_cgroup = 1;
  sb->have_run_dir = 1;
  /* An sbxd that died during a snapshot left it frozen: a frozen sandbox can neither run
   * nor die of SIGKILL, so thaw it (a no-op when it is not frozen). */
  struct sbx_err ignored;
  rt_sandbox_freeze (sb, 0, &ignored);
  *out = sb;
  return 0;
}

int
rt_cleanup_stale (const char *state_dir, const char *id, struct sbx_err *err)
{
  if (!id || !sbx_id_valid (id, "sb") || !state_dir)
    return sbx_err_set (err, SBX_E_INVALID, EINVAL, "cleanup: invalid sandbox id or state dir");
  struct rt_cgroup cg = { .dirfd = -1 };
  if (rt_cgroup_init (&cg, RT_CGROUP_ROOT, id, err) < 0)
    return sbx_err_wrap (err, "cleanup sandbox %s", id);
  if (rt_cgroup_destroy (&cg) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, errno, "cleanup sandbox %s: remove cgroup: %s", id,
                        strerror (errno));
  char run_dir[PATH_MAX];
  if (rt_run_dir_path (run_dir, state_dir, id) < 0)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "cleanup sandbox %s: path too long", id);
  if (sbx_rm_rf (run_dir) < 0)
    return sbx_err_set (err, SBX_E_INTERNAL, errno, "cleanup sandbox %s: remove '%s': %s", id,
                        run_dir, strerror (errno));
  return 0;
}

/* ---- stale run dirs of one-shot sandboxes -------------------------------------------- */

int
rt_gc_stale (const char *state_dir, int min_age_s)
{
  char dir[PATH_MAX];
  if (snprintf (dir, sizeof dir, "%s/run", state_dir) >= (int) sizeof dir)
    return 0;
  DIR *d = opendir (dir);
  if (!d)
    return 0;
  int removed = 0;
  time_t now = time (NULL);
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (!sbx_id_valid (de->d_name, "sb"))
        continue;
      char run_dir[PATH_MAX];
      struct stat st;
      if (rt_run_dir_path (run_dir, state_dir, de->d_name) < 0
          || fstatat (dirfd (d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
          || !S_ISDIR (st.st_mode) || now - st.st_mtime < min_age_s)
        continue; /* young: its spawn may still be running (it has no pid file yet) */
      pid_t pid = read_pid_file (run_dir);
      if (pid > 0 && is_sandbox_init (pid, de->d_name))
        continue; /* alive: someone's sandbox */
      if (rt_cleanup_stale (state_dir, de->d_name, NULL) == 0)
        {
          LOG_INFO ("removed what sandbox %s left (its sbx run was killed)", de->d_name);
          removed++;
        }
    }
  closedir (d);
  return removed;
}
