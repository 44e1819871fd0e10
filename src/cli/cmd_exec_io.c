/* sbx exec -i / -t: an interactive command. The command starts as a background process
 * (with a pty for -t), its output is followed as an event stream by a second thread, and
 * stdin is forwarded as it is read (EOF included); with -t the local terminal is put in raw
 * mode (keys, ^C included, go to the remote program) and window size changes are sent.
 * Without -t, ^C here sends SIGINT to the remote process. If sbx itself is killed the
 * process is killed too. Exit status: the command's. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_SBX_FAILED 125

struct session {
  const char *base;
  char sid[128];
  json_int_t proc;
  int exit_code;
  int got_exit;
  int failed;
  int wake[2]; /* the output thread writes here when it ends */
};

static volatile sig_atomic_t got_winch, got_int, got_term;
static struct termios saved;
static int raw_on;

static void
on_signal (int sig)
{
  if (sig == SIGWINCH)
    got_winch = 1;
  else if (sig == SIGINT)
    got_int = 1;
  else
    got_term = 1;
}

static void
restore_tty (void)
{
  if (raw_on)
    tcsetattr (0, TCSADRAIN, &saved);
  raw_on = 0;
}

static int
on_event (json_t *ev, void *ud)
{
  struct session *s = ud;
  int k = cli_process_event (ev, &s->exit_code);
  if (k == CLI_EVENT_EXIT)
    s->got_exit = 1;
  else if (k == CLI_EVENT_ERROR)
    {
      restore_tty ();
      fprintf (stderr, "sbx: %s\n", cli_event_message (ev));
      s->failed = 1;
    }
  return k != CLI_EVENT_MORE;
}

static void *
output_thread (void *ud)
{
  struct session *s = ud;
  json_t *body = json_pack ("{s:s,s:I,s:b}", "sandbox_id", s->sid, "process_id", s->proc,
                            "follow", 1);
  json_t *err = NULL;
  long st = cli_api_stream (s->base, "/sandbox/process/output", body, on_event, s, &err);
  if (st != 200)
    {
      restore_tty ();
      if (st > 0)
        cli_api_print_error (st, err);
      s->failed = 1;
    }
  else if (!s->got_exit)
    s->failed = 1;
  json_decref (err);
  json_decref (body);
  (void) !write (s->wake[1], "x", 1);
  return NULL;
}

static void
proc_call (struct session *s, const char *path, json_t *extra)
{
  json_t *body = json_pack ("{s:s,s:I}", "sandbox_id", s->sid, "process_id", s->proc);
  json_object_update (body, extra);
  json_decref (extra);
  json_t *reply = NULL;
  long st = cli_api_post (s->base, path, body, &reply);
  if (st != 200 && st > 0 && strcmp (path, "/sandbox/process/stdin") != 0)
    cli_api_print_error (st, reply);
  json_decref (reply);
  json_decref (body);
}

/* Send what was read; 0 to keep reading, 1 when the remote stdin is closed. */
static int
send_stdin (struct session *s, const uint8_t *p, size_t n, int eof)
{
  char *b = cli_b64_encode (p, n);
  json_t *body = json_pack ("{s:s,s:I,s:s,s:s,s:b}", "sandbox_id", s->sid, "process_id", s->proc,
                            "data", b ? b : "", "encoding", "base64", "eof", eof);
  free (b);
  json_t *reply = NULL;
  long st = cli_api_post (s->base, "/sandbox/process/stdin", body, &reply);
  json_decref (body);
  json_decref (reply);
  return st != 200;
}

static void
window (struct winsize *ws)
{
  if (ioctl (0, TIOCGWINSZ, ws) < 0 && ioctl (1, TIOCGWINSZ, ws) < 0)
    ws->ws_row = 24, ws->ws_col = 80;
  if (!ws->ws_row || !ws->ws_col)
    ws->ws_row = 24, ws->ws_col = 80;
}

int
cli_exec_interactive (const char *base, json_t *body, int forward_stdin, int tty)
{
  struct session s = { .base = base, .wake = { -1, -1 } };
  cli_api_init ();
  snprintf (s.sid, sizeof s.sid, "%s", json_string_value (json_object_get (body, "sandbox_id")));
  uint8_t rnd[8] = { 0 };
  if (getrandom (rnd, sizeof rnd, 0) < 0)
    memset (rnd, 0x5a, sizeof rnd);
  char key[40];
  snprintf (key, sizeof key, "sbx-cli-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
            rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  json_object_set_new (body, "background", json_true ());
  json_object_set_new (body, "exec_id", json_string (key));
  if (tty)
    {
      struct winsize ws;
      window (&ws);
      json_object_set_new (body, "pty", json_pack ("{s:i,s:i}", "rows", ws.ws_row, "cols",
                                                   ws.ws_col));
    }
  json_t *reply = NULL;
  long st = cli_api_post (base, "/sandbox/exec", body, &reply);
  if (st != 200)
    {
      if (st > 0)
        cli_api_print_error (st, reply);
      json_decref (reply);
      return EXIT_SBX_FAILED;
    }
  s.proc = json_integer_value (json_object_get (reply, "process_id"));
  json_decref (reply);

  struct sigaction sa = { .sa_handler = on_signal };
  sigaction (SIGWINCH, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  if (!tty)
    sigaction (SIGINT, &sa, NULL);
  if (tty && isatty (0) && tcgetattr (0, &saved) == 0)
    {
      struct termios raw = saved;
      cfmakeraw (&raw);
      if (tcsetattr (0, TCSADRAIN, &raw) == 0)
        raw_on = 1;
    }
  pthread_t th;
  if (pipe2 (s.wake, O_CLOEXEC) < 0 || pthread_create (&th, NULL, output_thread, &s) != 0)
    {
      restore_tty ();
      fprintf (stderr, "sbx: cannot start: %s\n", strerror (errno));
      return EXIT_SBX_FAILED;
    }
  int reading = forward_stdin;
  uint8_t buf[65536];
  for (;;)
    {
      struct pollfd p[2] = { { .fd = s.wake[0], .events = POLLIN },
                             { .fd = reading ? 0 : -1, .events = POLLIN } };
      int pr = poll (p, 2, 250);
      if (p[0].revents)
        break;
      if (got_winch && tty)
        {
          got_winch = 0;
          struct winsize ws;
          window (&ws);
          proc_call (&s, "/sandbox/process/resize",
                     json_pack ("{s:i,s:i}", "rows", ws.ws_row, "cols", ws.ws_col));
        }
      if (got_int)
        {
          got_int = 0;
          proc_call (&s, "/sandbox/process/signal", json_pack ("{s:s}", "signal", "INT"));
        }
      if (got_term)
        {
          /* sbx is going away: so does the command. */
          proc_call (&s, "/sandbox/process/signal", json_pack ("{s:s}", "signal", "KILL"));
          got_term = 0;
        }
      if (pr > 0 && reading && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
        {
          ssize_t n = read (0, buf, sizeof buf);
          if (n < 0 && errno == EINTR)
            continue;
          if (n <= 0)
            {
              send_stdin (&s, NULL, 0, 1);
              reading = 0;
            }
          else if (send_stdin (&s, buf, (size_t) n, 0))
            reading = 0; /* the program closed its stdin */
        }
    }
  pthread_join (th, NULL);
  restore_tty ();
  close (s.wake[0]);
  close (s.wake[1]);
  fflush (stdout);
  if (s.failed || !s.got_exit)
    return EXIT_SBX_FAILED;
  return s.exit_code;
}
