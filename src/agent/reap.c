/* Reaping: every child and every orphan reparented to us (as PID 1, or as a child
 * subreaper outside a sandbox) is waited for here, driven by SIGCHLD on a signalfd. */
#include "agent.h"

#include <errno.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static struct proc *
find_pid (struct agent *a, pid_t pid)
{
  for (struct proc *p = a->procs; p; p = p->next)
    if (p->pid == pid)
      return p;
  return NULL;
}

void
agent_reap (struct agent *a)
{
  /* SIGCHLDs coalesce: drain the signalfd, then wait for everything that has exited. */
  struct signalfd_siginfo si[8];
  while (read (a->sig.fd, si, sizeof si) > 0)
    ;
  for (;;)
    {
      int status;
      struct rusage ru;
      pid_t pid = wait4 (-1, &status, WNOHANG | __WALL, &ru);
      if (pid < 0 && errno == EINTR)
        continue;
      if (pid <= 0)
        return; /* 0: children remain, none exited; ECHILD: no children */
      struct proc *p = find_pid (a, pid);
      if (p)
        proc_exited (p, status, &ru);
    }
}
