/* src/cli: the `sbx` command. main.c dispatches; one file per group of subcommands. */
#pragma once

#include "../common/common.h"

#include <jansson.h>
#include <stdio.h>

/* Each returns the process exit status. argv[0] is the subcommand name. */
int cli_cmd_run (int argc, char **argv);    /* cmd_run.c: one-shot sandbox, no daemon */
int cli_cmd_create (int argc, char **argv); /* cmd_api.c: the API client commands */
int cli_cmd_exec (int argc, char **argv);
int cli_cmd_status (int argc, char **argv);
int cli_cmd_ls (int argc, char **argv);
int cli_cmd_rm (int argc, char **argv);
int cli_cmd_admin (int argc, char **argv); /* cmd_admin.c: accounts, keys, settlements */

/* Issue 6: interactive exec, logs of background processes, copies to and from sandboxes. */
int cli_cmd_logs (int argc, char **argv); /* cmd_logs.c */
int cli_cmd_cp (int argc, char **argv);   /* cmd_cp.c */
/* cmd_exec_io.c: exec -i / -t: body has sandbox_id, command and options; streams output,
 * forwards stdin (forward_stdin), a pty with the local terminal in raw mode (tty). */
int cli_exec_interactive (const char *base, json_t *body, int forward_stdin, int tty);

/* api_client.c: requests to sbxd. base: --url, $SBX_URL or CLI_DEFAULT_URL. */
#define CLI_DEFAULT_URL "http://127.0.0.1:8080"
const char *cli_api_base (const char *opt);
void cli_api_init (void); /* once, before any thread */
void cli_api_url (const char *base, const char *path, char *out, size_t cap);
/* One request (method "GET" or "POST", body NULL: none). Returns the HTTP status with the
 * reply, a JSON object whatever the status, in *out; or -1 after printing why. */
long cli_api_call (const char *base, const char *method, const char *path, json_t *body,
                   json_t **out);
/* POST a JSON body; returns the HTTP status (reply in *out) or -1 after printing why. */
long cli_api_post (const char *base, const char *path, json_t *body, json_t **out);
/* POST and read an NDJSON stream: on_event per event (non-zero stops). Not 200: the error
 * object in *err_out. Returns the status or -1. */
long cli_api_stream (const char *base, const char *path, json_t *body,
                     int (*on_event) (json_t *ev, void *ud), void *ud, json_t **err_out);
int cli_api_print_error (long status, json_t *reply);
/* Append "Authorization: Bearer $SBX_API_KEY" when that is set. */
struct curl_slist;
struct curl_slist *cli_api_auth (struct curl_slist *hdr);
char *cli_b64_encode (const uint8_t *p, size_t n);
size_t cli_b64_decode (const char *s, size_t n, uint8_t *out);
/* Write a stream event's data (text or base64) to f. */
int cli_write_event_data (json_t *ev, FILE *f);
/* An event of a process output stream (exec -i/-t, logs -f): stdout and stderr data are
 * written out (CLI_EVENT_MORE, as for other types); "exit" gives CLI_EVENT_EXIT with
 * *exit_code, "error" CLI_EVENT_ERROR (its message: cli_event_message). */
enum { CLI_EVENT_MORE, CLI_EVENT_EXIT, CLI_EVENT_ERROR };
int cli_process_event (json_t *ev, int *exit_code);
const char *cli_event_message (json_t *ev);

/* Path of a sibling binary (e.g. "sbx-init") next to /proc/self/exe, or from $SBX_INIT /
 * the install dir. Returns 0 and fills out. */
int cli_find_helper (const char *name, char *out, size_t cap);
