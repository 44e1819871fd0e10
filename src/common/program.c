/* Running a host program (apt-get, mkfs.ext4) from a process that may have threads: only
 * async-signal-safe calls between fork and execve. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int
sbx_run_program (const char *path, char *const argv[], char *const envp[], int out_fd,
                 int *status, struct sbx_err *err)
{
  fflush (stderr);
  pid_t pid = fork ();
  if (pid < 0)
    return sbx_err_sys (err, "fork for %s", path);
  if (pid == 0)
    {
      int null = open ("/dev/null", O_RDWR | O_CLOEXEC);
      int out = out_fd >= 0 ? out_fd : null;
      if (null < 0 || dup2 (null, 0) < 0 || dup2 (out, 1) < 0 || dup2 (out, 2) < 0)
        _exit (127);
      syscall (SYS_close_range, 3u, ~0u, 0);
      execve (path, argv, envp);
      _exit (127);
    }
  while (waitpid (pid, status, 0) < 0)
    if (errno != EINTR)
      return sbx_err_sys (err, "wait for %s", path);
  return 0;
}
