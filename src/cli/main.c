/* sbx: the command-line client. `sbx run` works without the daemon; the other commands
 * talk to sbxd over HTTP (--url / SBX_URL). */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const struct
{
  const char *name;
  int (*fn) (int argc, char **argv);
  const char *summary;
} commands[] = {
  { "run", cli_cmd_run, "run a command in a one-shot sandbox (no daemon needed)" },
  { "create", cli_cmd_create, "create a sandbox through sbxd" },
  { "exec", cli_cmd_exec, "run a command in a sandbox: sbx exec ID -- CMD..." },
  { "status", cli_cmd_status, "show a sandbox's status" },
  { "ls", cli_cmd_ls, "list sandboxes" },
  { "rm", cli_cmd_rm, "terminate a sandbox" },
  { "logs", cli_cmd_logs, "output of a background process: sbx logs [-f] ID PROCESS" },
  { "cp", cli_cmd_cp, "copy files into or out of a sandbox: sbx cp SRC ID:/PATH" },
  { "admin", cli_cmd_admin, "accounts, API keys, x402 settlements (on the state dir, as root)" },
};

static void
usage (FILE *f)
{
  fprintf (f, "usage: sbx COMMAND [OPTIONS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf (f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "\n`sbx COMMAND --help` describes each command.\n");
}

int
cli_find_helper (const char *name, char *out, size_t cap)
{
  const char *env = strcmp (name, "sbx-init") == 0 ? getenv ("SBX_INIT") : NULL;
  if (env && *env)
    {
      snprintf (out, cap, "%s", env);
      return access (out, X_OK);
    }
  return sbx_find_sibling (name, out, cap);
}

int
main (int argc, char **argv)
{
  const char *debug = getenv ("SBX_DEBUG");
  if (debug && *debug && strcmp (debug, "0") != 0)
    sbx_log_set_level (SBX_LOG_DEBUG);
  if (argc < 2 || !strcmp (argv[1], "-h") || !strcmp (argv[1], "--help"))
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp (argv[1], commands[i].name))
      return commands[i].fn (argc - 1, argv + 1);
  fprintf (stderr, "sbx: unknown command '%s'\n", argv[1]);
  usage (stderr);
  return 2;
}
