/* Private to the issue-6 files of sbxd (agentc.c, h_inside.c, h_files.c, stream.c):
 * talking to a sandbox's agent for processes, files and watches, and shared validation. */
#pragma once

#include "server.h"
#include "../proto/proto.h"

#include <stdbool.h>

#define INSIDE_KEY_MAX 128
#define INSIDE_WAIT_MAX_MS 3600000
#define INSIDE_KEEPALIVE_MS 10000
#define INSIDE_STDIN_CHUNK (512u * 1024)
#define INSIDE_ERR_KEEP 4096 /* tar's stderr kept for an error message or the log */
/* What sbxd takes from an agent for one answer (docs/protocol.md, "Limits"): the agent's
 * own limits, so an agent taken over by the sandbox cannot make sbxd's memory grow. */
#define INSIDE_LIST_MAX 20000 /* FILE_INFO frames of a listing */
#define INSIDE_PROCS_MAX 1024 /* PROC_INFO frames of a process list */

/* One connection to a sandbox's agent, registered like an exec (terminate cuts it). */
struct srv_agent {
  struct srv *s;
  struct srv_sandbox *sb; /* referenced */
  int fd;
  int registered;
  struct proto_reader rd;
};

/* Find the live sandbox and connect. 0, or -1 with *r the answer (404/410/408/429/500). */
int inside_open (struct srv *s, const char *id, int id_valid, struct srv_agent *ag,
                 struct srv_reply *r);
void inside_close (struct srv_agent *ag);
/* Blocking send of one frame. 0 or -1 (the agent is gone). */
int inside_send (struct srv_agent *ag, uint8_t type, uint32_t id, const void *p, uint32_t len);
int inside_send_msg (struct srv_agent *ag, uint8_t type, uint32_t id, const struct proto_msg *m);
/* inside_send_msg, and when the agent is gone the answer for that (inside_reply_lost) in
 * *r: 0 or -1. */
int inside_request (struct srv_agent *ag, uint8_t type, uint32_t id, const struct proto_msg *m,
                    struct srv_reply *r);
/* The next frame, waiting up to timeout_ms (-1: no limit). 1 frame, 0 timed out, -1 the
 * connection ended or broke (the reply for it: inside_reply_lost). */
int inside_next (struct srv_agent *ag, struct proto_frame *f, int timeout_ms);
/* Wait for the answer to request id: DONE/READY/PROC_INFO/FILE_INFO (1, *f), ERROR (-2 with
 * *r filled), lost (-1 with *r filled). Other frames of id are returned too (1). */
int inside_reply_frame (struct srv_agent *ag, struct proto_frame *f, int timeout_ms,
                        struct srv_reply *r);
/* Wait for the first answer frame without taking it: 1 when it is not an ERROR (it stays
 * for whoever reads next, e.g. a stream), else as inside_reply_frame with *r filled. */
int inside_peek (struct srv_agent *ag, int timeout_ms, struct srv_reply *r);
/* An agent ERROR frame as an HTTP answer (file errnos: 404 file_not_found, 403 ...). */
void inside_reply_agent_error (const struct proto_frame *f, struct srv_reply *r);
/* The agent connection ended: the sandbox ended (410/408) or the agent broke (500). */
void inside_reply_lost (struct srv_agent *ag, struct srv_reply *r);

/* Audit row of an exec started through these endpoints (counts in commands_executed):
 * ex NULL while it has no exit code (a background process, a stream cut short). */
void inside_record (struct srv *s, const char *sandbox_id, char **argv, size_t argc,
                    const struct proto_exec_exit *ex, int64_t started_ms, const char *error);

/* ---- validation (h_inside.c) ---- */
json_t *inside_field (json_t *body, const char *name);
int inside_bad (struct srv_reply *r, const char *field, const char *what);
/* Required/optional typed fields; on a bad value *r is the 400 answer and -1 returned. */
int inside_int (json_t *body, const char *name, int64_t lo, int64_t hi, int64_t dflt,
                int64_t *out, struct srv_reply *r);
int inside_bool (json_t *body, const char *name, int dflt, int *out, struct srv_reply *r);
/* A path: string, no NUL, absolute, no "." / ".." components, < 4096 bytes. */
int inside_path (json_t *v, const char *name, const char **out, struct srv_reply *r);
int inside_path_ok (const char *p);
/* "encoding": "utf-8" (default) or "base64": 1 for base64. */
int inside_encoding (json_t *body, int *b64, struct srv_reply *r);
/* Content of a request (string, decoded per encoding). *out malloc'd. */
int inside_content (json_t *body, const char *name, int b64, uint8_t **out, size_t *len,
                    struct srv_reply *r);
/* Bytes as a JSON string value: UTF-8 if valid and !force_b64 (*b64_out 0), else base64. */
json_t *inside_data_json (const uint8_t *p, size_t n, int force_b64, int *b64_out);
/* Bytes at the end of p that start an incomplete UTF-8 sequence (0-3). */
size_t inside_utf8_tail (const uint8_t *p, size_t n);
/* A PROC_INFO as the API's process object. */
json_t *inside_proc_json (const struct proto_msg *m);
json_t *inside_usage_json (uint64_t cpu_us, uint64_t max_rss_kb);
/* A stat FILE_INFO as the API's entry object. */
json_t *inside_file_json (const struct proto_msg *m, const char *path);

/* h_files.c: /sandbox/files/... */
void srv_h_files (struct srv *s, enum srv_route route, json_t *body, struct srv_reply *r);

/* ---- streams (stream.c) ---- */
enum inside_stream_kind { ST_EXEC, ST_FOLLOW, ST_WATCH, ST_RAW_FILE, ST_RAW_TAR };
/* Make *r a 200 streaming reply reading ag (taken over: *ag is emptied). For ST_EXEC and
 * ST_FOLLOW req_id is the frame id of the exec/follow; pending holds frames still to send
 * to the agent (stdin), taken over. */
void inside_stream_reply (struct srv_agent *ag, enum inside_stream_kind kind, uint32_t req_id,
                          struct proto_buf *pending, int b64, const char *accept,
                          struct srv_reply *r);
/* An ST_EXEC stream records its exec (inside_record) when it ends, unless it found an
 * existing process (exec_id): argv is copied. */
void inside_stream_audit (struct srv_reply *r, char **argv, size_t argc);
/* Run the exec whose EXEC_START (and stdin) is in pending on ag to its end, keeping at most
 * max_output bytes per stream: the answer of a plain exec with exec_id or pty. */
void inside_exec_collect (struct srv_agent *ag, uint32_t req_id, struct proto_buf *pending,
                          uint64_t max_output, char **argv, size_t argc, struct srv_reply *r);
