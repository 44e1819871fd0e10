/* The API client commands: sbx create / exec / status / ls / rm talk to sbxd over HTTP
 * (--url, else $SBX_URL, else http://127.0.0.1:8080) with libcurl and jansson.
 * Exit statuses: 0 ok; `sbx exec` exits with CMD's status; 1 the API answered an error;
 * 125 sbx itself failed (cannot reach sbxd, bad reply); 2 usage. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EXIT_API_ERROR 1
#define EXIT_USAGE 2
#define EXIT_SBX_FAILED 125

struct api {
  const char *url;
  int json;
};

/* Print an API error reply; returns the exit status for it. */
static int
api_error (const struct api *a, long status, json_t *reply)
{
  if (a->json)
    {
      json_dumpf (reply, stdout, JSON_INDENT (2));
      putchar ('\n');
    }
  cli_api_print_error (status, reply);
  return EXIT_API_ERROR;
}

static void
print_json (json_t *o)
{
  json_dumpf (o, stdout, JSON_INDENT (2));
  putchar ('\n');
}

static const char *
str (json_t *o, const char *k)
{
  const char *s = json_string_value (json_object_get (o, k));
  return s ? s : "";
}

/* Common options: --url, --json, -h. Returns 1 if handled. */
static int
common_opt (int o, struct api *a)
{
  if (o == 'u')
    a->url = optarg;
  else if (o == 'j')
    a->json = 1;
  else
    return 0;
  return 1;
}

static void
api_init (struct api *a)
{
  a->url = cli_api_base (NULL);
  a->json = 0;
  cli_api_init ();
}

#define COMMON_LONGOPTS                                                                           \
  { "url", required_argument, NULL, 'u' }, { "json", no_argument, NULL, 'j' },                    \
  { "help", no_argument, NULL, 'h' }

static const char common_help[]
    = "  --url URL        sbxd address (default $SBX_URL or " CLI_DEFAULT_URL ")\n"
      "  --json           print the API's JSON reply\n";

static int
add_env (json_t *env, const char *kv, const char *cmd)
{
  const char *eq = strchr (kv, '=');
  if (!eq || eq == kv)
    {
      fprintf (stderr, "sbx %s: --env expects NAME=VALUE, got '%s'\n", cmd, kv);
      return -1;
    }
  char *name = strndup (kv, (size_t) (eq - kv));
  json_object_set_new (env, name, json_string (eq + 1));
  free (name);
  return 0;
}

static int
number_opt (json_t *body, const char *key, const char *s, const char *cmd)
{
  char *end;
  errno = 0;
  double d = strtod (s, &end);
  if (errno || end == s || *end)
    {
      fprintf (stderr, "sbx %s: --%s expects a number, got '%s'\n", cmd, key, s);
      return -1;
    }
  if (d == (double) (json_int_t) d)
    json_object_set_new (body, key, json_integer ((json_int_t) d));
  else
    json_object_set_new (body, key, json_real (d));
  return 0;
}

int
cli_cmd_create (int argc, char **argv)
{
  static const struct option opts[] = {
    COMMON_LONGOPTS,
    { "image", required_argument, NULL, 'i' }, { "timeout", required_argument, NULL, 't' },
    { "cpu", required_argument, NULL, 'c' },   { "memory", required_argument, NULL, 'm' },
    { "env", required_argument, NULL, 'e' },   { "workdir", required_argument, NULL, 'w' },
    { NULL, 0, NULL, 0 },
  };
  struct api a;
  api_init (&a);
  json_t *body = json_object ();
  json_t *env = json_object ();
  int o, rc = EXIT_USAGE;
  optind = 1;
  while ((o = getopt_long (argc, argv, "h", opts, NULL)) != -1)
    {
      if (common_opt (o, &a))
        continue;
      switch (o)
        {
        case 'i': json_object_set_new (body, "image", json_string (optarg)); break;
        case 't': if (number_opt (body, "timeout", optarg, "create") < 0) goto out; break;
        case 'c': if (number_opt (body, "cpu", optarg, "create") < 0) goto out; break;
        case 'm': if (number_opt (body, "memory", optarg, "create") < 0) goto out; break;
        case 'e': if (add_env (env, optarg, "create") < 0) goto out; break;
        case 'w': json_object_set_new (body, "workdir", json_string (optarg)); break;
        case 'h':
          printf ("usage: sbx create [OPTIONS]\nCreate a sandbox through sbxd; prints its id.\n\n"
                  "  --image NAME     python:3.11 (default) or debian:bookworm\n"
                  "  --timeout S      lifetime in seconds, 1..86400 (default 300)\n"
                  "  --cpu N          vCPUs (default 1)\n"
                  "  --memory MiB     memory (default 1024)\n"
                  "  --env K=V        environment of every command (repeatable)\n"
                  "  --workdir DIR    default working directory of commands\n%s",
                  common_help);
          rc = 0;
          goto out;
        default: goto out;
        }
    }
  if (optind < argc)
    {
      fprintf (stderr, "sbx create: unexpected argument '%s'\n", argv[optind]);
      goto out;
    }
  if (json_object_size (env))
    json_object_set (body, "env", env);
  json_t *reply = NULL;
  long st = cli_api_call (a.url, "POST", "/sandbox/create", body, &reply);
  if (st < 0)
    rc = EXIT_SBX_FAILED;
  else if (st != 200)
    rc = api_error (&a, st, reply);
  else
    {
      if (a.json)
        print_json (reply);
      else
        printf ("%s\n", str (reply, "sandbox_id"));
      rc = 0;
    }
  json_decref (reply);
out:
  json_decref (env);
  json_decref (body);
  return rc;
}

/* Write a stream's exact bytes: from <name>_b64 when the text had to be repaired. */
static void
write_stream (json_t *reply, const char *name, FILE *f)
{
  char key[32];
  snprintf (key, sizeof key, "%s_b64", name);
  json_t *b = json_object_get (reply, key);
  if (json_is_string (b))
    {
      size_t n = json_string_length (b);
      uint8_t *buf = malloc (n + 1);
      if (buf)
        fwrite (buf, 1, cli_b64_decode (json_string_value (b), n, buf), f);
      free (buf);
    }
  else
    {
      json_t *t = json_object_get (reply, name);
      if (json_is_string (t))
        fwrite (json_string_value (t), 1, json_string_length (t), f);
    }
  fflush (f);
}

static char *
read_all_stdin (size_t *len)
{
  size_t cap = 65536, n = 0;
  char *buf = malloc (cap);
  ssize_t r;
  while (buf && (r = read (0, buf + n, cap - n)) != 0)
    {
      if (r < 0)
        {
          if (errno == EINTR)
            continue;
          free (buf);
          return NULL;
        }
      n += (size_t) r;
      if (n == cap)
        {
          char *nb = cap < 16u * 1024 * 1024 ? realloc (buf, cap * 2) : NULL;
          if (!nb)
            free (buf);
          buf = nb;
          cap *= 2;
        }
    }
  *len = n;
  return buf;
}

int
cli_cmd_exec (int argc, char **argv)
{
  static const struct option opts[] = {
    COMMON_LONGOPTS,
    { "timeout", required_argument, NULL, 'o' }, { "env", required_argument, NULL, 'e' },
    { "workdir", required_argument, NULL, 'w' }, { "stdin", no_argument, NULL, 'i' },
    { "shell", no_argument, NULL, 's' }, { "tty", no_argument, NULL, 't' },
    { "background", no_argument, NULL, 'b' },
    { NULL, 0, NULL, 0 },
  };
  struct api a;
  api_init (&a);
  json_t *body = json_object ();
  json_t *env = json_object ();
  int o, rc = EXIT_USAGE, send_stdin = 0, shell = 0, tty = 0, background = 0;
  optind = 1;
  /* "+": stop at the first non-option, so CMD's own options are never ours. */
  while ((o = getopt_long (argc, argv, "+hit", opts, NULL)) != -1)
    {
      if (common_opt (o, &a))
        continue;
      switch (o)
        {
        case 'o': if (number_opt (body, "timeout", optarg, "exec") < 0) goto out; break;
        case 'e': if (add_env (env, optarg, "exec") < 0) goto out; break;
        case 'w': json_object_set_new (body, "workdir", json_string (optarg)); break;
        case 'i': send_stdin = 1; break;
        case 't': tty = 1; break;
        case 'b': background = 1; break;
        case 's': shell = 1; break;
        case 'h':
          printf ("usage: sbx exec [OPTIONS] ID -- CMD [ARG...]\n"
                  "Run CMD in sandbox ID; its output is printed as it was written and sbx\n"
                  "exits with its status.\n\n"
                  "  --shell          run CMD as one /bin/sh -c string\n"
                  "  --timeout S      kill CMD after S seconds (default: the sandbox's lifetime)\n"
                  "  --env K=V        environment variable (repeatable)\n"
                  "  --workdir DIR    working directory\n"
                  "  -i, --stdin      send sbx's stdin to CMD as it is read (EOF included)\n"
                  "  -t, --tty        run CMD on a pseudo-terminal; this terminal goes raw\n"
                  "  --background     start CMD and print its process id (see sbx logs)\n%s",
                  common_help);
          rc = 0;
          goto out;
        default: goto out;
        }
    }
  if (optind >= argc)
    {
      fprintf (stderr, "usage: sbx exec [OPTIONS] ID -- CMD [ARG...]\n");
      goto out;
    }
  const char *id = argv[optind++];
  if (optind < argc && !strcmp (argv[optind], "--"))
    optind++;
  if (optind >= argc)
    {
      fprintf (stderr, "sbx exec: no command given (sbx exec ID -- CMD...)\n");
      goto out;
    }
  json_object_set_new (body, "sandbox_id", json_string (id));
  if (shell)
    {
      /* Join the words with spaces, as `sh -c "$*"` would see them. */
      size_t total = 1;
      for (int i = optind; i < argc; i++)
        total += strlen (argv[i]) + 1;
      char *cmd = calloc (1, total);
      for (int i = optind; cmd && i < argc; i++)
        {
          if (i > optind)
            strcat (cmd, " ");
          strcat (cmd, argv[i]);
        }
      json_object_set_new (body, "command", json_string (cmd ? cmd : ""));
      free (cmd);
    }
  else
    {
      json_t *arr = json_array ();
      for (int i = optind; i < argc; i++)
        json_array_append_new (arr, json_string (argv[i]));
      json_object_set_new (body, "command", arr);
    }
  if (json_object_size (env))
    json_object_set (body, "env", env);
  if (background)
    json_object_set_new (body, "background", json_true ());
  if ((send_stdin || tty) && !a.json && !background)
    {
      /* Interactive: streamed both ways (cmd_exec_io.c). */
      rc = cli_exec_interactive (a.url, body, send_stdin, tty);
      goto out;
    }
  if (send_stdin)
    {
      size_t n = 0;
      char *in = read_all_stdin (&n);
      if (!in)
        {
          fprintf (stderr, "sbx exec: cannot read stdin (at most 16 MiB)\n");
          rc = EXIT_SBX_FAILED;
          goto out;
        }
      json_t *s = json_stringn (in, n);
      free (in);
      if (!s)
        {
          fprintf (stderr, "sbx exec: stdin must be UTF-8 text\n");
          rc = EXIT_SBX_FAILED;
          goto out;
        }
      json_object_set_new (body, "stdin", s);
    }
  json_t *reply = NULL;
  long st = cli_api_call (a.url, "POST", "/sandbox/exec", body, &reply);
  if (st < 0)
    rc = EXIT_SBX_FAILED;
  else if (st != 200)
    {
      /* CMD did not run (or its status is unknown): sbx's own failure status. */
      api_error (&a, st, reply);
      rc = EXIT_SBX_FAILED;
    }
  else if (background)
    {
      if (a.json)
        print_json (reply);
      else
        printf ("%lld\n", (long long) json_integer_value (json_object_get (reply, "process_id")));
      rc = 0;
    }
  else
    {
      if (a.json)
        print_json (reply);
      else
        {
          write_stream (reply, "stdout", stdout);
          write_stream (reply, "stderr", stderr);
          if (json_is_true (json_object_get (reply, "truncated")))
            fprintf (stderr, "sbx: output truncated\n");
          if (json_is_true (json_object_get (reply, "timed_out")))
            fprintf (stderr, "sbx: command timed out\n");
        }
      rc = (int) json_integer_value (json_object_get (reply, "exit_code"));
    }
  json_decref (reply);
out:
  json_decref (env);
  json_decref (body);
  return rc;
}

static void
print_sandbox (json_t *s)
{
  const char *keys[] = { "sandbox_id", "status", "image", "created_at", "expires_at",
                         "terminated_at", "reason" };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (json_object_get (s, keys[i]))
      printf ("%-18s %s\n", keys[i], str (s, keys[i]));
  printf ("%-18s %lld\n", "timeout", (long long) json_integer_value (json_object_get (s, "timeout")));
  printf ("%-18s %lld\n", "commands_executed",
          (long long) json_integer_value (json_object_get (s, "commands_executed")));
  json_t *r = json_object_get (s, "resources");
  printf ("%-18s %g cpu, %lld MiB\n", "resources", json_number_value (json_object_get (r, "cpu")),
          (long long) json_integer_value (json_object_get (r, "memory_mb")));
}

/* status and rm: one sandbox id argument (rm takes several). */
static int
id_command (int argc, char **argv, const char *name, const char *path, int many)
{
  static const struct option opts[] = { COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
  struct api a;
  api_init (&a);
  int o;
  optind = 1;
  while ((o = getopt_long (argc, argv, "h", opts, NULL)) != -1)
    {
      if (common_opt (o, &a))
        continue;
      if (o == 'h')
        {
          printf ("usage: sbx %s [OPTIONS] ID%s\n%s", name, many ? "..." : "", common_help);
          return 0;
        }
      return EXIT_USAGE;
    }
  if (optind >= argc || (!many && argc - optind != 1))
    {
      fprintf (stderr, "usage: sbx %s [OPTIONS] ID%s\n", name, many ? "..." : "");
      return EXIT_USAGE;
    }
  int rc = 0;
  for (int i = optind; i < argc; i++)
    {
      json_t *body = json_pack ("{s:s}", "sandbox_id", argv[i]);
      json_t *reply = NULL;
      long st = cli_api_call (a.url, "POST", path, body, &reply);
      json_decref (body);
      if (st < 0)
        rc = EXIT_SBX_FAILED;
      else if (st != 200)
        rc = api_error (&a, st, reply);
      else if (a.json)
        print_json (reply);
      else if (!strcmp (name, "status"))
        print_sandbox (reply);
      else
        printf ("%s\n", str (reply, "sandbox_id"));
      json_decref (reply);
    }
  return rc;
}

int
cli_cmd_status (int argc, char **argv)
{
  return id_command (argc, argv, "status", "/sandbox/status", 0);
}

int
cli_cmd_rm (int argc, char **argv)
{
  return id_command (argc, argv, "rm", "/sandbox/terminate", 1);
}

int
cli_cmd_ls (int argc, char **argv)
{
  static const struct option opts[] = {
    COMMON_LONGOPTS, { "all", no_argument, NULL, 'a' }, { "status", required_argument, NULL, 's' },
    { NULL, 0, NULL, 0 },
  };
  struct api a;
  api_init (&a);
  const char *status = "running";
  int o;
  optind = 1;
  while ((o = getopt_long (argc, argv, "ha", opts, NULL)) != -1)
    {
      if (common_opt (o, &a))
        continue;
      if (o == 'a')
        status = NULL;
      else if (o == 's')
        status = optarg;
      else if (o == 'h')
        {
          printf ("usage: sbx ls [OPTIONS]\nList running sandboxes.\n\n"
                  "  -a, --all        also terminated ones\n"
                  "  --status S       running or terminated\n%s", common_help);
          return 0;
        }
      else
        return EXIT_USAGE;
    }
  if (status && strcmp (status, "running") && strcmp (status, "terminated"))
    {
      fprintf (stderr, "sbx ls: --status must be running or terminated\n");
      return EXIT_USAGE;
    }
  char path[64];
  snprintf (path, sizeof path, "/sandbox/list%s%s", status ? "?status=" : "", status ? status : "");
  json_t *reply = NULL;
  long st = cli_api_call (a.url, "GET", path, NULL, &reply);
  int rc = 0;
  if (st < 0)
    rc = EXIT_SBX_FAILED;
  else if (st != 200)
    rc = api_error (&a, st, reply);
  else if (a.json)
    print_json (reply);
  else
    {
      printf ("%-26s %-10s %-16s %-20s %-20s %s\n", "SANDBOX", "STATUS", "IMAGE", "CREATED",
              "EXPIRES", "REASON");
      size_t i;
      json_t *s;
      json_array_foreach (json_object_get (reply, "sandboxes"), i, s)
        printf ("%-26s %-10s %-16s %-20s %-20s %s\n", str (s, "sandbox_id"), str (s, "status"),
                str (s, "image"), str (s, "created_at"), str (s, "expires_at"), str (s, "reason"));
    }
  json_decref (reply);
  return rc;
}
