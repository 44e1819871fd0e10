/* `sbx run`: a one-shot sandbox straight from src/runtime, without the daemon (the way
 * bwrap or `crun run` is used). Creates the sandbox, runs CMD through sbx-init, streams
 * its output, forwards stdin and signals, exits with CMD's status, and leaves nothing
 * behind. Exit statuses of sbx itself: 125 sbx failed, 124 lifetime (--timeout) expired. */
#include "cli.h"

#include "images/images.h"
#include "proto/proto.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define EXIT_SBX_FAILED 125
#define EXIT_TIMED_OUT 124
#define MAX_ENV 1024

struct run_opts {
  const char *image;
  const char *state_dir;
  const char *workdir;
  struct rt_limits limits;
  uint64_t timeout_s;
  uint64_t max_output;
  char *env[MAX_ENV + 1];
  size_t envc;
  int quiet;
};

static void
run_usage (FILE *f)
{
  fprintf (f,
           "usage: sbx run [OPTIONS] -- CMD [ARG...]\n"
           "Run CMD in a fresh sandbox and remove the sandbox when CMD exits.\n\n"
           "  --image NAME        image (default python:3.11; also debian:bookworm)\n"
           "  --cpu N             CPUs, fractional allowed (default 1)\n"
           "  --memory MiB        memory limit, no swap (default 1024)\n"
           "  --pids N            max processes and threads (default 512)\n"
           "  --disk MiB          writable space: root changes, /tmp, /dev/shm (default 1024)\n"
           "  --inodes N          files in that space (default 65536)\n"
           "  --timeout S         lifetime in seconds, then CMD is killed (default 300)\n"
           "  --max-output BYTES  bytes kept per stream, then truncated (default: no bound)\n"
           "  --env K=V           environment variable for CMD (repeatable)\n"
           "  --workdir DIR       working directory of CMD (default /)\n"
           "  --state-dir DIR     state directory (default $SBX_STATE_DIR or /var/lib/sbx)\n"
           "  -q, --quiet         no progress output while an image builds\n\n"
           "CMD's stdin is forwarded when it is not a terminal. Exit status: CMD's (128+N\n"
           "if it was killed by signal N), 124 if the lifetime expired, 125 if sbx failed.\n");
}

static int
parse_u64 (const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno || end == s || *end || *s == '-' || v < min || v > max)
    {
      fprintf (stderr, "sbx run: --%s: expected an integer in %llu..%llu, got '%s'\n", opt,
               (unsigned long long) min, (unsigned long long) max, s);
      return -1;
    }
  *out = v;
  return 0;
}

static int
parse_args (int argc, char **argv, struct run_opts *o, int *cmd_index)
{
  enum { O_IMAGE = 256, O_CPU, O_MEM, O_PIDS, O_DISK, O_INODES, O_TIMEOUT, O_MAXOUT, O_ENV,
         O_WORKDIR, O_STATE };
  static const struct option longopts[] = {
    { "image", required_argument, 0, O_IMAGE },   { "cpu", required_argument, 0, O_CPU },
    { "memory", required_argument, 0, O_MEM },    { "pids", required_argument, 0, O_PIDS },
    { "disk", required_argument, 0, O_DISK },     { "inodes", required_argument, 0, O_INODES },
    { "timeout", required_argument, 0, O_TIMEOUT }, { "max-output", required_argument, 0, O_MAXOUT },
    { "env", required_argument, 0, O_ENV },       { "workdir", required_argument, 0, O_WORKDIR },
    { "state-dir", required_argument, 0, O_STATE }, { "quiet", no_argument, 0, 'q' },
    { "help", no_argument, 0, 'h' },              { 0, 0, 0, 0 },
  };
  uint64_t v;
  int c;
  optind = 1;
  while ((c = getopt_long (argc, argv, "+qh", longopts, NULL)) != -1)
    {
      switch (c)
        {
        case O_IMAGE: o->image = optarg; break;
        case O_CPU:
          {
            char *end;
            errno = 0;
            double cpus = strtod (optarg, &end);
            if (errno || end == optarg || *end || !(cpus >= 0.01 && cpus <= 1024))
              {
                fprintf (stderr, "sbx run: --cpu: expected a number in 0.01..1024, got '%s'\n",
                         optarg);
                return -1;
              }
            o->limits.cpu_millis = (uint32_t) (cpus * 1000 + 0.5);
            break;
          }
        case O_MEM:
          if (parse_u64 ("memory", optarg, 16, 1 << 20, &v) < 0)
            return -1;
          o->limits.memory_bytes = v << 20;
          break;
        case O_PIDS:
          if (parse_u64 ("pids", optarg, 8, 1 << 22, &v) < 0)
            return -1;
          o->limits.pids = v;
          break;
        case O_DISK:
          if (parse_u64 ("disk", optarg, 1, 1 << 20, &v) < 0)
            return -1;
          o->limits.disk_bytes = v << 20;
          break;
        case O_INODES:
          if (parse_u64 ("inodes", optarg, 64, 1 << 26, &v) < 0)
            return -1;
          o->limits.disk_inodes = v;
          break;
        case O_TIMEOUT:
          if (parse_u64 ("timeout", optarg, 1, 86400, &o->timeout_s) < 0)
            return -1;
          break;
        case O_MAXOUT:
          if (sbx_parse_size (optarg, &o->max_output) < 0)
            {
              fprintf (stderr, "sbx run: --max-output: expected a size like 1048576 or 1M\n");
              return -1;
            }
          break;
        case O_ENV:
          if (!strchr (optarg, '=') || optarg[0] == '=')
            {
              fprintf (stderr, "sbx run: --env: expected K=V, got '%s'\n", optarg);
              return -1;
            }
          if (o->envc >= MAX_ENV)
            {
              fprintf (stderr, "sbx run: too many --env (max %d)\n", MAX_ENV);
              return -1;
            }
          o->env[o->envc++] = optarg;
          break;
        case O_WORKDIR:
          if (optarg[0] != '/')
            {
              fprintf (stderr, "sbx run: --workdir must be an absolute path\n");
              return -1;
            }
          o->workdir = optarg;
          break;
        case O_STATE: o->state_dir = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'h': run_usage (stdout); exit (0);
        default: run_usage (stderr); return -1;
        }
    }
  if (optind >= argc)
    {
      fprintf (stderr, "sbx run: missing command (sbx run [OPTIONS] -- CMD...)\n");
      return -1;
    }
  *cmd_index = optind;
  return 0;
}

/* The command's environment: defaults, then --env entries (a later K replaces an earlier). */
static size_t
build_env (const struct run_opts *o, char **out)
{
  static char *defaults[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "HOME=/root", "LANG=C.UTF-8", NULL };
  size_t n = 0;
  for (char **d = defaults; *d; d++)
    out[n++] = *d;
  for (size_t i = 0; i < o->envc; i++)
    {
      size_t klen = (size_t) (strchr (o->env[i], '=') - o->env[i]) + 1;
      size_t j = 0;
      for (; j < n; j++)
        if (!strncmp (out[j], o->env[i], klen))
          break;
      out[j] = o->env[i];
      if (j == n)
        n++;
    }
  out[n] = NULL;
  return n;
}

struct run_state {
  int sock;
  struct proto_reader rd;
  struct proto_buf out; /* frames waiting for the socket */
  size_t out_off;
  int stdin_open;
  int exit_status;
  int done;
};

static int
handle_frame (struct run_state *st, const struct proto_frame *f)
{
  struct sbx_err err = { 0 };
  switch (f->type)
    {
    case PROTO_EXEC_STDOUT:
    case PROTO_EXEC_STDERR:
      if (sbx_write_all (f->type == PROTO_EXEC_STDOUT ? 1 : 2, f->payload, f->len) < 0
          && errno != EPIPE)
        return -1;
      return 0;
    case PROTO_EXEC_STARTED:
    case PROTO_PONG:
      return 0;
    case PROTO_EXEC_EXIT:
      {
        struct proto_exec_exit ex;
        if (proto_exec_exit_decode (f->payload, f->len, &ex, &err) < 0)
          {
            fprintf (stderr, "sbx run: %s\n", err.msg);
            return -1;
          }
        if (ex.stdout_truncated || ex.stderr_truncated)
          fprintf (stderr, "sbx run: output truncated (stdout %llu bytes, stderr %llu bytes)\n",
                   (unsigned long long) ex.stdout_bytes, (unsigned long long) ex.stderr_bytes);
        if (ex.timed_out)
          {
            fprintf (stderr, "sbx run: timed out, command killed\n");
            st->exit_status = EXIT_TIMED_OUT;
          }
        else
          st->exit_status = ex.exit_code;
        st->done = 1;
        return 0;
      }
    case PROTO_ERROR:
      {
        uint32_t code;
        char msg[512];
        if (proto_error_decode (f->payload, f->len, &code, msg, sizeof msg, &err) < 0)
          snprintf (msg, sizeof msg, "%s", err.msg);
        fprintf (stderr, "sbx run: %s\n", msg);
        st->exit_status = EXIT_SBX_FAILED;
        st->done = 1;
        return 0;
      }
    default:
      return 0;
    }
}

/* Send what is queued without blocking: a blocked write while the command blocks on its
 * output would deadlock, so the socket is non-blocking and stdin is read only when the
 * queue is empty. */
static int
flush_out (struct run_state *st)
{
  while (st->out_off < st->out.len)
    {
      ssize_t n = send (st->sock, st->out.data + st->out_off, st->out.len - st->out_off,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
      st->out_off += (size_t) n;
    }
  st->out.len = st->out_off = 0;
  return 0;
}

/* Forward stdin and signals, print output, until the exec's EXIT frame. */
static int
pump (struct run_state *st, int sigfd)
{
  char buf[65536];
  struct sbx_err err = { 0 };
  while (!st->done)
    {
      int queued = st->out.len > st->out_off;
      struct pollfd p[3] = {
        { st->sock, (short) (POLLIN | (queued ? POLLOUT : 0)), 0 },
        { sigfd, POLLIN, 0 },
        { st->stdin_open && !queued ? 0 : -1, POLLIN, 0 },
      };
      if (poll (p, 3, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      if (p[1].revents & POLLIN)
        {
          struct signalfd_siginfo si;
          if (read (sigfd, &si, sizeof si) == sizeof si)
            {
              uint32_t sig = htobe32 (si.ssi_signo);
              proto_frame_append (&st->out, PROTO_EXEC_SIGNAL, 1, &sig, sizeof sig);
            }
        }
      if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
        {
          ssize_t n = read (0, buf, sizeof buf);
          if (n < 0 && errno == EINTR)
            continue;
          if (n <= 0)
            st->stdin_open = 0; /* an empty frame is EOF for the command */
          proto_frame_append (&st->out, PROTO_EXEC_STDIN, 1, buf, n > 0 ? (uint32_t) n : 0);
        }
      if (flush_out (st) < 0)
        return -1;
      if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
        {
          ssize_t n = proto_reader_fill (&st->rd, st->sock);
          if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
          if (n <= 0)
            {
              fprintf (stderr, "sbx run: the sandbox ended before the command finished "
                               "(sandbox crashed)\n");
              return -1;
            }
          struct proto_frame f;
          int r;
          while (!st->done && (r = proto_reader_next (&st->rd, &f, &err)) == 1)
            if (handle_frame (st, &f) < 0)
              return -1;
          if (!st->done && r < 0)
            {
              fprintf (stderr, "sbx run: %s\n", err.msg);
              return -1;
            }
        }
    }
  return 0;
}

static int
run_in_sandbox (const struct run_opts *o, char **cmd, const char *rootfs, const char *init)
{
  struct sbx_err err = { 0 };
  char id[SBX_ID_MAX];
  if (sbx_id_new ("sb", id) < 0)
    {
      perror ("sbx run: getrandom");
      return EXIT_SBX_FAILED;
    }
  struct rt_spec spec = { .id = id, .rootfs = rootfs, .state_dir = o->state_dir,
                          .init_path = init, .limits = o->limits, .die_with_parent = 1 };
  /* Signals become frames to the command; block them before the sandbox exists. */
  sigset_t mask;
  sigemptyset (&mask);
  sigaddset (&mask, SIGINT);
  sigaddset (&mask, SIGTERM);
  sigaddset (&mask, SIGHUP);
  sigaddset (&mask, SIGQUIT);
  sigprocmask (SIG_BLOCK, &mask, NULL);
  signal (SIGPIPE, SIG_IGN);
  int sigfd = signalfd (-1, &mask, SFD_CLOEXEC);

  struct rt_sandbox *sb = NULL;
  if (rt_sandbox_spawn (&spec, &sb, &err) < 0)
    {
      fprintf (stderr, "sbx run: %s\n", err.msg);
      close (sigfd);
      return EXIT_SBX_FAILED;
    }

  struct run_state st = { .sock = -1, .stdin_open = !isatty (0), .exit_status = EXIT_SBX_FAILED };
  proto_reader_init (&st.rd);
  char *env[MAX_ENV + 8];
  size_t envc = build_env (o, env);
  size_t argc = 0;
  while (cmd[argc])
    argc++;
  struct proto_exec_req req = { .argv = cmd, .argc = argc, .env = env, .envc = envc,
                                .cwd = (char *) (o->workdir ? o->workdir : "/"),
                                .stdin_mode = st.stdin_open ? PROTO_STDIN_PIPE : PROTO_STDIN_NULL,
                                .timeout_ms = o->timeout_s * 1000, .max_output = o->max_output };
  struct proto_buf payload = { 0 };
  st.sock = proto_client_connect (rt_sandbox_socket (sb), &st.rd, &err);
  if (st.sock < 0)
    fprintf (stderr, "sbx run: connect to sandbox agent: %s\n", err.msg);
  else if (proto_exec_req_encode (&req, &payload) < 0
           || proto_frame_write (st.sock, PROTO_EXEC_START, 1, payload.data, (uint32_t) payload.len)
                  < 0)
    fprintf (stderr, "sbx run: send command: %s\n", strerror (errno));
  else if (sbx_set_nonblock (st.sock, 1) < 0 || pump (&st, sigfd) < 0)
    st.exit_status = EXIT_SBX_FAILED;
  if (st.exit_status == EXIT_SBX_FAILED && rt_sandbox_oom_killed (sb) == 1)
    fprintf (stderr, "sbx run: the sandbox ran out of memory\n");

  proto_buf_free (&payload);
  proto_buf_free (&st.out);
  proto_reader_free (&st.rd);
  if (st.sock >= 0)
    close (st.sock);
  rt_sandbox_destroy (sb);
  close (sigfd);
  return st.exit_status;
}

int
cli_cmd_run (int argc, char **argv)
{
  struct run_opts o = { .image = "python:3.11", .state_dir = sbx_default_state_dir (),
                        .timeout_s = 300 };
  rt_limits_default (&o.limits);
  int cmd_index;
  if (parse_args (argc, argv, &o, &cmd_index) < 0)
    return 2;
  if (geteuid () != 0)
    {
      fprintf (stderr, "sbx run: must run as root (it creates namespaces and cgroups)\n");
      return EXIT_SBX_FAILED;
    }
  char init[PATH_MAX];
  if (cli_find_helper ("sbx-init", init, sizeof init) < 0)
    {
      fprintf (stderr, "sbx run: cannot find sbx-init next to sbx (set SBX_INIT)\n");
      return EXIT_SBX_FAILED;
    }
  struct sbx_err err = { 0 };
  char rootfs[PATH_MAX];
  if (img_resolve (o.state_dir, o.image, !o.quiet, rootfs, &err) < 0)
    {
      fprintf (stderr, "sbx run: %s\n", err.msg);
      return err.code == SBX_E_INVALID ? 2 : EXIT_SBX_FAILED;
    }
  /* What an earlier `sbx run` killed with SIGKILL left (cgroups, run dir): a readdir of
   * an empty directory when there is nothing. Older than a spawn can take (10 s). */
  rt_gc_stale (o.state_dir, 30);
  return run_in_sandbox (&o, argv + cmd_index, rootfs, init);
}
