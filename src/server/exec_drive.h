/* One command over a sandbox agent connection (the EXEC_* frames of src/proto), shared by
 * sandbox/exec (h_exec.c: output kept in capped buffers for the reply) and image builds
 * (build_step.c: output to the build log). They differ only in where the output goes. */
#pragma once

#include "server.h"
#include "../proto/proto.h"

/* Append EXEC_START for pr and, when pr->stdin_mode is PROTO_STDIN_PIPE, in as EXEC_STDIN
 * frames and an empty one (EOF), all with exec id xid. 0, or -1 (out of memory). */
int srv_exec_frames (const struct proto_exec_req *pr, uint32_t xid, const void *in,
                     size_t in_len, struct proto_buf *out);

struct srv_exec_run {
  uint32_t xid;        /* exec id on the connection */
  uint64_t timeout_ms; /* the command's (0: none); the agent has 30 s more to end it */
  /* Each STDOUT or STDERR payload (type) as it arrives. */
  void (*on_output) (void *ud, uint8_t type, const uint8_t *p, size_t n);
  void *ud;
  /* results */
  struct proto_exec_exit exit;
  int got_exit;
  char agent_error[512];
  uint32_t agent_error_code; /* SBX_E_* the agent gave (SBX_E_INVALID: e.g. no such cwd) */
  int agent_error_set;
};

/* Send out on fd (non-blocking) as the agent accepts it, so a command that prints before
 * reading its stdin cannot deadlock us, and read the frames of run->xid. 0 when the exec
 * finished (EXEC_EXIT: got_exit, or an agent ERROR: agent_error_set), 1 when the connection
 * ended first, -1 on a local failure (err). */
int srv_exec_drive (int fd, struct proto_reader *rd, const struct proto_buf *out,
                    struct srv_exec_run *run, struct sbx_err *err);
