/* sbxd: the sbx daemon. HTTP/JSON API on loopback, one supervisor for every sandbox,
 * state in SQLite under the state directory. See docs/api.md.
 *
 * SIGTERM/SIGINT stop it gracefully: no new requests, execs in flight are cut (503), and
 * sandboxes keep running; the next sbxd re-adopts them (or cleans them up if their
 * lifetime ended meanwhile). */
#include "server.h"
#include "../images/images.h"
#include "../runtime/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void
usage (FILE *f)
{
  fprintf (f,
           "usage: sbxd [OPTIONS]\n"
           "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080; loopback\n"
           "                         only while authentication is off)\n"
           "  --state-dir DIR        state directory (default $SBX_STATE_DIR or /var/lib/sbx)\n"
           "  --config FILE          JSON config file; flags override it\n"
           "  --max-sandboxes N      live sandboxes at most (default 64)\n"
           "  --max-output BYTES     output kept per stream per exec (default 1M)\n"
           "  --log-level LEVEL      error, warn, info (default) or debug\n"
           "  --init PATH            sbx-init binary (default: next to sbxd)\n"
           "  --no-prepare-image     do not build the default image at start\n"
           "  --pool-size N          warm pool of the default image and resources (default 2;\n"
           "                         0: none; more keys in the config file's \"pool\")\n"
           "  --pool-max-age SECONDS replace unclaimed pool sandboxes this old (default 600)\n"
           "  --auth MODE            off (default), api_key, x402 or api_key,x402\n"
           "  --pay-to 0xADDRESS     x402: where payments go (EIP-55 checked)\n"
           "  --network NAME         x402: base (default) or base-sepolia\n"
           "  --facilitator URL      x402: verify and settle through URL (required, unless:)\n"
           "  --queue-settlements    x402 without a facilitator: queue payments for `sbx admin\n"
           "                         settlements submit`; runs calls for unfunded payers too\n"
           "  -h, --help\n");
}

enum { O_LISTEN = 1, O_STATE, O_CONFIG, O_MAX_SB, O_MAX_OUT, O_LOG, O_INIT, O_NO_PREP,
       O_AUTH, O_PAY_TO, O_NETWORK, O_FACILITATOR, O_QUEUE, O_POOL_SIZE, O_POOL_AGE };
static const struct option opts[] = {
  { "listen", required_argument, NULL, O_LISTEN },
  { "state-dir", required_argument, NULL, O_STATE },
  { "config", required_argument, NULL, O_CONFIG },
  { "max-sandboxes", required_argument, NULL, O_MAX_SB },
  { "max-output", required_argument, NULL, O_MAX_OUT },
  { "log-level", required_argument, NULL, O_LOG },
  { "init", required_argument, NULL, O_INIT },
  { "no-prepare-image", no_argument, NULL, O_NO_PREP },
  { "auth", required_argument, NULL, O_AUTH },
  { "pay-to", required_argument, NULL, O_PAY_TO },
  { "network", required_argument, NULL, O_NETWORK },
  { "facilitator", required_argument, NULL, O_FACILITATOR },
  { "queue-settlements", no_argument, NULL, O_QUEUE },
  { "pool-size", required_argument, NULL, O_POOL_SIZE },
  { "pool-max-age", required_argument, NULL, O_POOL_AGE },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static int
parse_args (int argc, char **argv, struct srv_config *c, struct sbx_err *err)
{
  /* First pass: the config file, so that flags override it whatever their order. */
  optind = 1;
  opterr = 0;
  int o;
  while ((o = getopt_long (argc, argv, "h", opts, NULL)) != -1)
    if (o == O_CONFIG && srv_config_load_file (c, optarg, err) < 0)
      return -1;
  optind = 1;
  opterr = 1;
  while ((o = getopt_long (argc, argv, "h", opts, NULL)) != -1)
    {
      char *end;
      uint64_t u;
      switch (o)
        {
        case O_LISTEN:
          if (srv_config_set_listen (c, optarg, err) < 0)
            return -1;
          break;
        case O_STATE:
          snprintf (c->state_dir, sizeof c->state_dir, "%s", optarg);
          break;
        case O_CONFIG:
          break;
        case O_MAX_SB:
          errno = 0;
          long n = strtol (optarg, &end, 10);
          if (errno || *end || n < 1 || n > 100000)
            return sbx_err_set (err, SBX_E_INVALID, 0, "--max-sandboxes: expected 1..100000");
          c->max_sandboxes = (int) n;
          break;
        case O_MAX_OUT:
          if (sbx_parse_size (optarg, &u) < 0 || u < 1024 || u > 64 * 1024 * 1024)
            return sbx_err_set (err, SBX_E_INVALID, 0, "--max-output: expected 1k..64M");
          c->max_output = u;
          break;
        case O_LOG:
          if (srv_config_set_log_level (c, optarg, err) < 0)
            return -1;
          break;
        case O_INIT:
          snprintf (c->init_path, sizeof c->init_path, "%s", optarg);
          break;
        case O_NO_PREP:
          c->prepare_image = 0;
          break;
        case O_AUTH:
          if (srv_config_set_auth (c, optarg, err) < 0)
            return -1;
          break;
        case O_PAY_TO:
          if (srv_config_set_pay_to (c, optarg, err) < 0)
            return -1;
          break;
        case O_NETWORK:
          if (srv_config_set_network (c, optarg, err) < 0)
            return -1;
          break;
        case O_FACILITATOR:
          if (srv_config_set_facilitator (c, optarg, err) < 0)
            return -1;
          break;
        case O_QUEUE:
          c->queue_settlements = 1;
          break;
        case O_POOL_SIZE:
        case O_POOL_AGE:
          {
            errno = 0;
            long v = strtol (optarg, &end, 10);
            int age = o == O_POOL_AGE;
            if (errno || *end || v < (age ? 1 : 0) || v > (age ? SRV_TIMEOUT_MAX : SRV_POOL_SIZE_MAX))
              return sbx_err_set (err, SBX_E_INVALID, 0, "--pool-%s: expected %d..%d",
                                  age ? "max-age" : "size", age ? 1 : 0,
                                  age ? SRV_TIMEOUT_MAX : SRV_POOL_SIZE_MAX);
            if (age)
              c->pool_max_age_s = (int) v;
            else
              c->pool_size = (int) v;
          }
          break;
        case 'h':
          usage (stdout);
          exit (0);
        default:
          usage (stderr);
          exit (2);
        }
    }
  if (optind < argc)
    return sbx_err_set (err, SBX_E_INVALID, 0, "unexpected argument '%s'", argv[optind]);
  return srv_config_money_check (c, err);
}

/* What sbxd holds open per sandbox: its pidfd and the scratch mount (snapshot, diff),
 * and one connection to its sbx-init (a pool member's, or the idle one a used sandbox
 * keeps for its next exec). Lifetimes share one timer and the uid slot lock stays with
 * sbx-init, so nothing else (docs/runtime.md, "fds and density"). */
#define FDS_PER_SANDBOX 3
/* Per HTTP connection: its socket, and an sbx-init connection while it runs an exec. */
#define FDS_PER_CONNECTION 2
#define FDS_BASE 64 /* database, epoll, eventfd, timerfd, listening socket, logs... */

/* Use the whole hard limit of open files (the soft one is often 1024), and say at start
 * when --max-sandboxes cannot fit in it: past it creates would fail with EMFILE. */
static void
raise_nofile (const struct srv_config *c)
{
  struct rlimit rl;
  if (getrlimit (RLIMIT_NOFILE, &rl) < 0)
    return;
  if (rl.rlim_cur < rl.rlim_max)
    {
      struct rlimit want = { rl.rlim_max, rl.rlim_max };
      if (setrlimit (RLIMIT_NOFILE, &want) == 0)
        rl = want;
      else
        LOG_WARN ("raise RLIMIT_NOFILE to %llu: %s", (unsigned long long) rl.rlim_max,
                  strerror (errno));
    }
  if (rl.rlim_cur == RLIM_INFINITY)
    return;
  uint64_t fixed
      = (uint64_t) SRV_CONN_HARD_LIMIT (c->connection_limit) * FDS_PER_CONNECTION + FDS_BASE;
  uint64_t need = (uint64_t) c->max_sandboxes * FDS_PER_SANDBOX + fixed;
  if (need > rl.rlim_cur)
    {
      uint64_t fit = rl.rlim_cur > fixed ? (rl.rlim_cur - fixed) / FDS_PER_SANDBOX : 0;
      LOG_WARN ("--max-sandboxes %d needs about %llu open files (%d per sandbox + %llu for "
                "%d connections) but RLIMIT_NOFILE is %llu (the hard limit; raising it "
                "needs CAP_SYS_RESOURCE): about %llu sandboxes fit, creates past that fail "
                "with \"Too many open files\"",
                c->max_sandboxes, (unsigned long long) need, FDS_PER_SANDBOX,
                (unsigned long long) fixed, SRV_CONN_HARD_LIMIT (c->connection_limit),
                (unsigned long long) rl.rlim_cur, (unsigned long long) fit);
    }
}

/* Process ids are one host-wide budget: max_sandboxes sandboxes of up to `pids` tasks
 * each must fit in kernel.pid_max with room for the host, or a full host leaves sbxd,
 * sshd and every other sandbox unable to fork (2-CPU hosts default to 32768, exactly 64
 * sandboxes of 512). */
static void
check_pid_max (const struct srv_config *c)
{
  char buf[32];
  struct rt_limits l;
  rt_limits_default (&l);
  if (sbx_read_file ("/proc/sys/kernel/pid_max", buf, sizeof buf) < 0)
    return;
  uint64_t pid_max = strtoull (buf, NULL, 10), want = (uint64_t) c->max_sandboxes * l.pids;
  if (pid_max && want + 4096 > pid_max)
    LOG_WARN ("--max-sandboxes %d of up to %llu tasks each may use %llu process ids, and "
              "kernel.pid_max is %llu: a full host could leave nothing for the host's own "
              "processes; raise kernel.pid_max (sysctl kernel.pid_max=4194304)",
              c->max_sandboxes, (unsigned long long) l.pids, (unsigned long long) want,
              (unsigned long long) pid_max);
}

static void
default_init_path (struct srv_config *c)
{
  if (!c->init_path[0])
    sbx_find_sibling ("sbx-init", c->init_path, sizeof c->init_path);
}

int
main (int argc, char **argv)
{
  struct srv_config cfg;
  struct sbx_err err = { 0 };
  srv_config_defaults (&cfg);
  if (parse_args (argc, argv, &cfg, &err) < 0)
    {
      fprintf (stderr, "sbxd: %s\n", err.msg);
      return 2;
    }
  sbx_log_set_level (cfg.log_level);
  default_init_path (&cfg);
  raise_nofile (&cfg);
  check_pid_max (&cfg);
  if (!srv_config_is_loopback (&cfg) && !cfg.auth)
    {
      fprintf (stderr, "sbxd: refusing to listen on %s: authentication is off, so only a "
                       "loopback address (127.0.0.1, ::1) is allowed\n", cfg.listen_host);
      return 2;
    }
  if (geteuid () != 0)
    {
      fprintf (stderr, "sbxd: must run as root (sandboxes use namespaces and cgroups)\n");
      return 1;
    }
  if (access (cfg.init_path, X_OK) < 0)
    {
      fprintf (stderr, "sbxd: sbx-init not found at '%s' (use --init)\n", cfg.init_path);
      return 1;
    }
  if (sbx_mkdir_p (cfg.state_dir, 0700) < 0)
    {
      fprintf (stderr, "sbxd: create state dir '%s': %s\n", cfg.state_dir, strerror (errno));
      return 1;
    }
  /* One sbxd per state directory: a second one would fight over the same sandboxes. */
  char path[PATH_MAX + 32];
  snprintf (path, sizeof path, "%s/sbxd.lock", cfg.state_dir);
  int lock = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock < 0 || flock (lock, LOCK_EX | LOCK_NB) < 0)
    {
      fprintf (stderr, "sbxd: another sbxd uses state dir '%s'\n", cfg.state_dir);
      return 1;
    }

  /* Signals are taken by sigwait below; every thread inherits the mask. */
  sigset_t set;
  sigemptyset (&set);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGINT);
  pthread_sigmask (SIG_BLOCK, &set, NULL);
  signal (SIGPIPE, SIG_IGN);

  /* Sandboxes are cloned by sbx-spawner processes (next to sbxd) started now, while sbxd
   * is still single-threaded (src/runtime/spawner.c): one per CPU, at least two. */
  long ncpu = sysconf (_SC_NPROCESSORS_ONLN);
  char spawner[PATH_MAX];
  if (sbx_find_sibling ("sbx-spawner", spawner, sizeof spawner) < 0
      || rt_spawner_start (spawner, ncpu > 2 ? (int) ncpu : 2, &err) < 0)
    LOG_WARN ("%s: sandboxes are spawned by sbxd itself (slower)",
              err.msg[0] ? err.msg : "sbx-spawner not found next to sbxd");

  static struct srv s;
  snprintf (path, sizeof path, "%s/sbx.db", cfg.state_dir);
  if (srv_init (&s, &cfg, &err) < 0 || store_open (path, &s.store, &err) < 0
      || srv_recover (&s, &err) < 0 || srv_money_recover (&s, &err) < 0)
    {
      fprintf (stderr, "sbxd: %s\n", err.msg);
      return 1;
    }
  if (cfg.prepare_image)
    {
      char rootfs[PATH_MAX];
      LOG_INFO ("checking image %s (built on first use: a few minutes, once)",
                SRV_DEFAULT_IMAGE);
      if (img_resolve (cfg.state_dir, SRV_DEFAULT_IMAGE, 1, rootfs, &err) < 0)
        {
          fprintf (stderr, "sbxd: image %s: %s\n", SRV_DEFAULT_IMAGE, err.msg);
          return 1;
        }
    }
  struct srv_http *http = NULL;
  if (srv_super_start (&s, &err) < 0 || srv_pool_start (&s, &err) < 0
      || srv_http_start (&s, &http, &err) < 0)
    {
      fprintf (stderr, "sbxd: %s\n", err.msg);
      return 1;
    }
  LOG_INFO ("sbxd listening on http://%s%s%s:%u (state %s)", strchr (cfg.listen_host, ':') ? "[" : "",
            cfg.listen_host, strchr (cfg.listen_host, ':') ? "]" : "", cfg.port, cfg.state_dir);
  int sig = 0;
  while (sigwait (&set, &sig) != 0)
    ;
  LOG_INFO ("signal %d: stopping (sandboxes keep running and are re-adopted at next start)",
            sig);
  srv_http_stop (http);
  srv_pool_stop (&s);
  srv_super_stop (&s);
  store_close (s.store);
  return 0;
}
