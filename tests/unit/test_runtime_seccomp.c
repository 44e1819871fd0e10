/* The seccomp policy: compiles, has the expected shape (native arch only, x32 check),
 * and, loaded for real in a forked child, allows what programs need and refuses what a
 * sandbox must not do. EPERM/EAFNOSUPPORT/ENOSYS mean filtered; EBADF/EFAULT/EINVAL mean
 * the call reached the kernel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/internal.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_compiles_once (void **state)
{
  struct sbx_err err = { 0 };
  assert_int_equal (rt_seccomp_prepare (&err), 0);
  const struct sock_fprog *p1, *p2;
  assert_int_equal (rt_seccomp_programs (&p1), 2);
  assert_int_equal (rt_seccomp_prepare (&err), 0);
  assert_int_equal (rt_seccomp_programs (&p2), 2);
  assert_ptr_equal (p1[1].filter, p2[1].filter); /* cached, not recompiled */
  assert_true (p1[0].len > 0 && p1[1].len > 50);
}

/* The allow-list checks the arch first (only x86_64) and sends syscall numbers with
 * __X32_SYSCALL_BIT set to the bad-arch action (KILL_PROCESS). */
static void
test_program_shape (void **state)
{
  const struct sock_fprog *p;
  assert_int_equal (rt_seccomp_programs (&p), 2);
  for (int k = 0; k < 2; k++)
    {
      int arch_check = 0, x32_check = 0, kill_process = 0;
      for (unsigned i = 0; i < p[k].len; i++)
        {
          struct sock_filter f = p[k].filter[i];
          if (f.code == (BPF_JMP | BPF_JEQ | BPF_K) && f.k == AUDIT_ARCH_X86_64)
            arch_check++;
          if (f.code == (BPF_JMP | BPF_JGE | BPF_K) && f.k == 0x40000000u)
            x32_check++;
          if (f.code == (BPF_RET | BPF_K) && f.k == SECCOMP_RET_KILL_PROCESS)
            kill_process++;
          assert_false (f.code == (BPF_JMP | BPF_JEQ | BPF_K) && f.k == AUDIT_ARCH_I386);
        }
      assert_int_equal (arch_check, 1);
      assert_true (x32_check >= 1);
      assert_true (kill_process >= 1);
    }
}

#define CHECK(cond)                                                                        \
  do                                                                                       \
    if (!(cond))                                                                           \
      {                                                                                    \
        dprintf (2, "seccomp check failed at line %d: %s (errno %d)\n", __LINE__, #cond, \
                 errno);                                                                   \
        _exit (10);                                                                        \
      }                                                                                    \
  while (0)

static int
refused (long r, int e)
{
  return r == -1 && errno == e;
}

/* Runs in a forked child after the filters are loaded. */
static void
probe (void)
{
  /* allowed */
  CHECK (getpid () > 0);
  int s = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK (s >= 0);
  close (s);
  s = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK (s >= 0);
  close (s);
  CHECK (syscall (SYS_close, -1) == -1 && errno == EBADF);
  CHECK (syscall (SYS_ioctl, -1, TIOCGWINSZ, 0) == -1 && errno == EBADF);
  pid_t c = fork (); /* clone without namespace flags */
  CHECK (c >= 0);
  if (c == 0)
    _exit (0);
  int st;
  CHECK (waitpid (c, &st, 0) == c && WIFEXITED (st));

  /* refused */
  CHECK (refused (syscall (SYS_mount, "x", "/tmp", "tmpfs", 0, 0), EPERM));
  CHECK (refused (syscall (SYS_umount2, "/tmp", 0), EPERM));
  CHECK (refused (syscall (SYS_pivot_root, ".", "."), EPERM));
  CHECK (refused (syscall (SYS_chroot, "/"), EPERM));
  CHECK (refused (syscall (SYS_unshare, CLONE_NEWUSER), EPERM));
  CHECK (refused (syscall (SYS_setns, -1, 0), EPERM));
  CHECK (refused (syscall (SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_clone3, NULL, 0), ENOSYS));
  CHECK (refused (syscall (SYS_io_setup, 1, NULL), ENOSYS));
  CHECK (refused (syscall (SYS_bpf, 0, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_keyctl, 0, 0, 0, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_add_key, NULL, NULL, NULL, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_io_uring_setup, 1, NULL), EPERM));
  CHECK (refused (syscall (SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM));
  CHECK (refused (syscall (SYS_kexec_load, 0, 0, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_init_module, NULL, 0, NULL), EPERM));
  CHECK (refused (syscall (SYS_finit_module, -1, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_open_by_handle_at, -1, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_name_to_handle_at, -1, NULL, NULL, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_ptrace, 0, 1, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_reboot, 0, 0, 0, NULL), EPERM));
  CHECK (refused (syscall (SYS_swapon, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_acct, NULL), EPERM));
  CHECK (refused (syscall (SYS_userfaultfd, 0), EPERM));
  CHECK (refused (syscall (SYS_fanotify_init, 0, 0), EPERM));
  CHECK (refused (syscall (SYS_open_tree, -1, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_fsopen, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_mount_setattr, -1, NULL, 0, NULL, 0), EPERM));
  CHECK (refused (syscall (SYS_sethostname, "x", 1), EPERM));
  CHECK (refused (syscall (SYS_ioctl, -1, TIOCSTI, 0), EPERM));
  CHECK (refused (syscall (SYS_ioctl, -1, 0x100000000ul | TIOCSTI, 0), EPERM));
  CHECK (refused (syscall (SYS_ioctl, -1, TIOCLINUX, 0), EPERM));
  CHECK (refused (syscall (SYS_ioctl, -1, TIOCSETD, 0), EPERM));
  CHECK (refused (syscall (SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0), EAFNOSUPPORT));
  CHECK (refused (syscall (SYS_socket, AF_PACKET, SOCK_RAW, 0), EAFNOSUPPORT));
  CHECK (refused (syscall (SYS_socket, AF_NETLINK, SOCK_RAW, 0), EAFNOSUPPORT));
  CHECK (refused (syscall (SYS_socket, 38 /* AF_ALG */, SOCK_SEQPACKET, 0), EAFNOSUPPORT));
  CHECK (refused (syscall (SYS_personality, 0x0040000 /* READ_IMPLIES_EXEC */), EPERM));
  _exit (0);
}

static void
test_loaded_filter (void **state)
{
  const struct sock_fprog *p;
  assert_int_equal (rt_seccomp_programs (&p), 2);
  pid_t c = fork ();
  assert_true (c >= 0);
  if (c == 0)
    {
      if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        _exit (2);
      for (int i = 0; i < 2; i++)
        if (syscall (SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p[i]) < 0)
          _exit (3);
      probe ();
    }
  int st;
  assert_int_equal (waitpid (c, &st, 0), c);
  assert_true (WIFEXITED (st));
  assert_int_equal (WEXITSTATUS (st), 0);
}

/* An x32 syscall number (getpid | __X32_SYSCALL_BIT) kills the process. */
static void
test_x32_killed (void **state)
{
  const struct sock_fprog *p;
  assert_int_equal (rt_seccomp_programs (&p), 2);
  pid_t c = fork ();
  assert_true (c >= 0);
  if (c == 0)
    {
      if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        _exit (2);
      if (syscall (SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p[1]) < 0)
        _exit (3);
      syscall (0x40000000 | SYS_getpid);
      _exit (0);
    }
  int st;
  assert_int_equal (waitpid (c, &st, 0), c);
  assert_true (WIFSIGNALED (st));
  assert_int_equal (WTERMSIG (st), SIGSYS);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_compiles_once),
    cmocka_unit_test (test_program_shape),
    cmocka_unit_test (test_loaded_filter),
    cmocka_unit_test (test_x32_killed),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
