/* src/cli: the `sbx` command. main.c dispatches; one file per group of subcommands. */
#pragma once

#include "../common/common.h"

/* Each returns the process exit status. argv[0] is the subcommand name. */
int cli_cmd_run (int argc, char **argv);    /* cmd_run.c: one-shot sandbox, no daemon */
int cli_cmd_create (int argc, char **argv); /* cmd_api.c: the API client commands */
int cli_cmd_exec (int argc, char **argv);
int cli_cmd_status (int argc, char **argv);
int cli_cmd_ls (int argc, char **argv);
int cli_cmd_rm (int argc, char **argv);
int cli_cmd_admin (int argc, char **argv); /* cmd_admin.c: accounts, keys, settlements */

/* Path of a sibling binary (e.g. "sbx-init") next to /proc/self/exe, or from $SBX_INIT /
 * the install dir. Returns 0 and fills out. */
int cli_find_helper (const char *name, char *out, size_t cap);
