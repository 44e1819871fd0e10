/* The sbxd <-> sbx-init wire protocol, used by both sides (and by `sbx run`).
 *
 * A stream of frames over a unix stream socket. Frame header, 9 bytes, big-endian:
 *   u32 len   length of the payload that follows (<= PROTO_MAX_PAYLOAD)
 *   u8  type  enum proto_type
 *   u32 id    exec id chosen by the host side (0 for connection-level frames)
 * Structured payloads are TLV records: u16 tag, u32 len, bytes. Unknown tags are skipped
 * (forward compatible); malformed frames (bad length, truncated TLV, NUL inside a string,
 * unknown frame type) make the reader fail and the connection is closed - never a crash.
 * The first frame on each side is HELLO carrying the protocol version. */
#pragma once

#include "../common/common.h"

#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_HEADER_SIZE 9
#define PROTO_MAX_PAYLOAD (1u << 20) /* 1 MiB */

enum proto_type {
  PROTO_HELLO = 1,        /* both ways: TLV VERSION (u32), NAME (string) */
  PROTO_EXEC_START = 2,   /* host->agent: TLV, see struct proto_exec_req */
  PROTO_EXEC_STDIN = 3,   /* host->agent: raw bytes; an empty payload means EOF */
  PROTO_EXEC_SIGNAL = 4,  /* host->agent: u32 signal, sent to the exec's process group */
  PROTO_EXEC_STARTED = 5, /* agent->host: u32 pid (as seen inside the sandbox) */
  PROTO_EXEC_STDOUT = 6,  /* agent->host: raw bytes */
  PROTO_EXEC_STDERR = 7,  /* agent->host: raw bytes */
  PROTO_EXEC_EXIT = 8,    /* agent->host: TLV, see struct proto_exec_exit; last frame of an exec */
  PROTO_ERROR = 9,        /* agent->host: TLV CODE (u32), MESSAGE (string); for an exec id it
                             is the last frame of that exec (sbx-side failure, not the program's) */
  PROTO_PING = 10,        /* either way: payload echoed back in PONG */
  PROTO_PONG = 11,
};

/* TLV tags (u16). Integers are big-endian with the exact width shown; strings are bytes
 * without NUL and without terminator. Tags below 64 other than ARGV/ENV may appear at most
 * once; ARGV and ENV repeat, in order. docs/protocol.md has the full table. */
enum proto_tag {
  PROTO_TAG_HELLO_VERSION = 1, /* u32, required */
  PROTO_TAG_HELLO_NAME = 2,    /* string, informative ("sbx-init", "sbxd", "sbx") */

  PROTO_TAG_EXEC_ARGV = 1,       /* string, repeated, at least once */
  PROTO_TAG_EXEC_ENV = 2,        /* string "K=V", repeated */
  PROTO_TAG_EXEC_CWD = 3,        /* string */
  PROTO_TAG_EXEC_STDIN_MODE = 4, /* u32 */
  PROTO_TAG_EXEC_TIMEOUT_MS = 5, /* u64 */
  PROTO_TAG_EXEC_MAX_OUTPUT = 6, /* u64 */

  PROTO_TAG_EXIT_CODE = 1,             /* u32 (int32 two's complement), required */
  PROTO_TAG_EXIT_SIGNAL = 2,           /* u32 */
  PROTO_TAG_EXIT_DURATION_US = 3,      /* u64 */
  PROTO_TAG_EXIT_STDOUT_BYTES = 4,     /* u64 */
  PROTO_TAG_EXIT_STDERR_BYTES = 5,     /* u64 */
  PROTO_TAG_EXIT_STDOUT_TRUNCATED = 6, /* u8 */
  PROTO_TAG_EXIT_STDERR_TRUNCATED = 7, /* u8 */
  PROTO_TAG_EXIT_TIMED_OUT = 8,        /* u8 */
  PROTO_TAG_EXIT_CPU_US = 9,           /* u64 */
  PROTO_TAG_EXIT_MAX_RSS_KB = 10,      /* u64 */

  PROTO_TAG_ERROR_CODE = 1,    /* u32: enum sbx_code */
  PROTO_TAG_ERROR_MESSAGE = 2, /* string (at most 4096 bytes are sent) */
};

/* Largest chunk of EXEC_STDOUT/EXEC_STDERR/EXEC_STDIN data in one frame, by convention. */
#define PROTO_DATA_CHUNK (64u * 1024)

/* How the exec's stdin is fed. */
enum proto_stdin_mode {
  PROTO_STDIN_NULL = 0, /* /dev/null */
  PROTO_STDIN_PIPE = 1, /* a pipe fed by PROTO_EXEC_STDIN frames until an empty one (EOF) */
};

struct proto_exec_req {
  char **argv;          /* argc >= 1, NULL-terminated; no NUL bytes inside (checked) */
  size_t argc;
  char **env;           /* "K=V" entries, NULL-terminated; the command's whole environment */
  size_t envc;
  char *cwd;            /* absolute path inside the sandbox, or NULL for "/" */
  uint32_t stdin_mode;  /* enum proto_stdin_mode */
  uint64_t timeout_ms;  /* 0: none. On expiry the process group is SIGKILLed */
  uint64_t max_output;  /* bytes sent per stream (stdout, stderr) before truncation; 0: none */
};

struct proto_exec_exit {
  int32_t exit_code;        /* 0..255, or 128+signal when killed by a signal */
  int32_t signal;           /* terminating signal, 0 if it exited */
  uint64_t duration_us;
  uint64_t stdout_bytes;    /* bytes the program wrote, including those not sent */
  uint64_t stderr_bytes;
  uint8_t stdout_truncated; /* more was written than max_output */
  uint8_t stderr_truncated;
  uint8_t timed_out;        /* killed because timeout_ms expired */
  uint64_t cpu_us;          /* user+system CPU of the exec's process (rusage) */
  uint64_t max_rss_kb;
};

/* A growable byte buffer. */
struct proto_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
};
void proto_buf_free (struct proto_buf *b);
int proto_buf_append (struct proto_buf *b, const void *p, size_t n);
/* Make room for n more bytes after len (cap >= len + n). Returns 0 or -1 (ENOMEM). */
int proto_buf_reserve (struct proto_buf *b, size_t n);

/* One decoded frame; payload points into the reader's buffer (valid until the next call). */
struct proto_frame {
  uint8_t type;
  uint32_t id;
  uint32_t len;
  const uint8_t *payload;
};

/* ---- building frames ---- */
/* Append a complete frame (header + payload) to out. */
int proto_frame_append (struct proto_buf *out, uint8_t type, uint32_t id, const void *payload,
                        uint32_t len);
/* Blocking write of one frame to fd. Returns 0 or -1 with errno. Sockets are written with
 * MSG_NOSIGNAL, so a closed peer is EPIPE, never a SIGPIPE. */
int proto_frame_write (int fd, uint8_t type, uint32_t id, const void *payload, uint32_t len);
/* Write the 9-byte header (for callers that build the payload in place). */
void proto_header_encode (uint8_t hdr[PROTO_HEADER_SIZE], uint8_t type, uint32_t id, uint32_t len);
/* True for the frame types of enum proto_type. */
int proto_type_valid (uint8_t type);

/* ---- reading frames (works for blocking and non-blocking fds) ---- */
struct proto_reader {
  struct proto_buf in;
  size_t consumed;
};
void proto_reader_init (struct proto_reader *r);
void proto_reader_free (struct proto_reader *r);
/* Read what is available from fd (one read() call, at most 64 KiB). Returns bytes read, 0 on
 * EOF, -1 with errno (EAGAIN when a non-blocking fd has nothing; ENOBUFS if the caller keeps
 * filling without taking frames out). The buffer never exceeds one maximal frame + 64 KiB.
 * Invalidates the payload pointers of frames returned before. */
ssize_t proto_reader_fill (struct proto_reader *r, int fd);
/* Bytes buffered but not yet returned as frames (nonzero at EOF = truncated frame). */
size_t proto_reader_pending (const struct proto_reader *r);
/* Take the next complete frame out of the buffer. Returns 1 with *f filled, 0 if more bytes
 * are needed, -1 if the stream is malformed (err filled; close the connection). The header is
 * checked as soon as it is complete (length limit, known type), before the payload arrives.
 * f->payload stays valid until the next proto_reader_fill / proto_read_frame. */
int proto_reader_next (struct proto_reader *r, struct proto_frame *f, struct sbx_err *err);
/* Blocking: read until a frame is complete. Returns 1, 0 on clean EOF, -1 on error. */
int proto_read_frame (int fd, struct proto_reader *r, struct proto_frame *f, struct sbx_err *err);

/* ---- structured payloads ---- */
/* Encoders append a payload to out and return 0, or -1 with errno (EINVAL: argc == 0 or
 * > 65536 entries; EMSGSIZE: more than PROTO_MAX_PAYLOAD) leaving out as it was. Decoders
 * skip unknown tags and refuse truncated records, wrong integer widths, repeated single
 * tags and NUL inside strings. */
int proto_hello_encode (struct proto_buf *out, const char *name);
int proto_hello_decode (const uint8_t *p, size_t n, uint32_t *version, struct sbx_err *err);
int proto_exec_req_encode (const struct proto_exec_req *req, struct proto_buf *out);
/* Allocates inside *req; release with proto_exec_req_free. Refuses NUL in strings, argc==0,
 * more than 65536 argv/env entries. */
int proto_exec_req_decode (const uint8_t *p, size_t n, struct proto_exec_req *req,
                           struct sbx_err *err);
void proto_exec_req_free (struct proto_exec_req *req);
int proto_exec_exit_encode (const struct proto_exec_exit *ex, struct proto_buf *out);
int proto_exec_exit_decode (const uint8_t *p, size_t n, struct proto_exec_exit *ex,
                            struct sbx_err *err);
int proto_error_encode (struct proto_buf *out, uint32_t code, const char *msg);
int proto_error_decode (const uint8_t *p, size_t n, uint32_t *code, char *msg, size_t cap,
                        struct sbx_err *err);

/* ---- host-side client helpers (blocking), used by `sbx run`, tests and sbxd ---- */
/* Connect to an agent socket path and exchange HELLO. Returns a CLOEXEC fd or -1. r is
 * initialized here (do not pass a reader holding data); release it with proto_reader_free
 * after use, also after a failure. A peer answering with ERROR fails with its code and
 * message; another protocol version fails with SBX_E_PROTO. */
int proto_client_connect (const char *socket_path, struct proto_reader *r, struct sbx_err *err);
