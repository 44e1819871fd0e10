/* sbx logs [-f] ID PROCESS: the output of a background process, from its start (or from
 * the earliest byte still kept) to what it had written when asked; -f follows it until it
 * exits. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static int
on_event (json_t *ev, void *ud)
{
  int k = cli_process_event (ev, ud);
  if (k == CLI_EVENT_ERROR)
    fprintf (stderr, "sbx logs: %s\n", cli_event_message (ev));
  return k != CLI_EVENT_MORE;
}

static void
write_b64 (json_t *o, const char *key, FILE *f)
{
  json_t *v = json_object_get (o, key);
  size_t n = json_string_length (v);
  uint8_t *buf = malloc (n + 1);
  if (!buf)
    return;
  size_t k = cli_b64_decode (json_string_value (v), n, buf);
  fwrite (buf, 1, k, f);
  fflush (f);
  free (buf);
}

int
cli_cmd_logs (int argc, char **argv)
{
  static const struct option opts[] = {
    { "url", required_argument, NULL, 'u' }, { "follow", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
  };
  const char *url = NULL;
  int follow = 0, o;
  optind = 1;
  while ((o = getopt_long (argc, argv, "fh", opts, NULL)) != -1)
    switch (o)
      {
      case 'u': url = optarg; break;
      case 'f': follow = 1; break;
      case 'h':
        printf ("usage: sbx logs [-f] ID PROCESS_ID\n"
                "Print the output of a background process (sbx exec --background, or the API's\n"
                "\"background\": true) as far as it has written it now.\n\n"
                "  -f, --follow     keep printing until it exits\n"
                "  --url URL        sbxd address (default $SBX_URL or http://127.0.0.1:8080)\n");
        return 0;
      default: return 2;
      }
  if (argc - optind != 2)
    {
      fprintf (stderr, "usage: sbx logs [-f] ID PROCESS_ID\n");
      return 2;
    }
  const char *base = cli_api_base (url);
  char *end;
  long long proc = strtoll (argv[optind + 1], &end, 10);
  if (*end || proc <= 0)
    {
      fprintf (stderr, "sbx logs: PROCESS_ID must be a positive number\n");
      return 2;
    }
  cli_api_init ();
  if (follow)
    {
      json_t *body = json_pack ("{s:s,s:I,s:b}", "sandbox_id", argv[optind], "process_id",
                                (json_int_t) proc, "follow", 1);
      json_t *err = NULL;
      int exit_code = -1;
      long st = cli_api_stream (base, "/sandbox/process/output", body, on_event, &exit_code, &err);
      json_decref (body);
      if (st != 200)
        {
          if (st > 0)
            cli_api_print_error (st, err);
          json_decref (err);
          return st > 0 ? 1 : 125;
        }
      return exit_code >= 0 ? 0 : 125;
    }
  /* What was written by the first answer, and no further: a process that writes faster
   * than we read would otherwise keep this loop going for as long as it runs. */
  json_int_t off[2] = { 0, 0 }, upto[2] = { -1, -1 };
  for (;;)
    {
      json_t *body = json_pack ("{s:s,s:I,s:I,s:I,s:s}", "sandbox_id", argv[optind],
                                "process_id", (json_int_t) proc, "stdout_offset", off[0],
                                "stderr_offset", off[1], "encoding", "base64");
      json_t *r = NULL;
      long st = cli_api_post (base, "/sandbox/process/output", body, &r);
      json_decref (body);
      if (st != 200)
        {
          if (st > 0)
            cli_api_print_error (st, r);
          json_decref (r);
          return st > 0 ? 1 : 125;
        }
      write_b64 (r, "stdout", stdout);
      write_b64 (r, "stderr", stderr);
      off[0] = json_integer_value (json_object_get (r, "stdout_offset"));
      off[1] = json_integer_value (json_object_get (r, "stderr_offset"));
      if (upto[0] < 0)
        {
          upto[0] = json_integer_value (json_object_get (r, "stdout_bytes"));
          upto[1] = json_integer_value (json_object_get (r, "stderr_bytes"));
        }
      int more = json_is_true (json_object_get (r, "more"))
                 && (off[0] < upto[0] || off[1] < upto[1]);
      json_decref (r);
      if (!more)
        return 0;
    }
}
