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
  /* Processes that outlive their connection, files and watches (docs/protocol.md). The
   * frame id is the host's request id on this connection; payloads are TLV with the
   * "message" tags of enum proto_mtag, decoded into struct proto_msg. */
  PROTO_PROC_OUTPUT = 12, /* host->agent: read or follow a process's output from offsets */
  PROTO_PROC_WAIT = 13,   /* host->agent: PROC_INFO once it exited or WAIT_MS passed */
  PROTO_PROC_STDIN = 14,  /* host->agent: DATA and/or EOF for a process's stdin */
  PROTO_PROC_SIGNAL = 15, /* host->agent: SIGNAL to a process's group */
  PROTO_PROC_RESIZE = 16, /* host->agent: ROWS, COLS of a process's pty */
  PROTO_PROC_LIST = 17,   /* host->agent: PROC_INFO for every process, then DONE */
  PROTO_PROC_INFO = 18,   /* agent->host: a process's state and offsets */
  PROTO_DONE = 19,        /* agent->host: the request succeeded; last frame of it */
  PROTO_FILE_READ = 20,   /* host->agent: PATH, OFFSET, LENGTH: FILE_INFO, FILE_DATA..., DONE */
  PROTO_FILE_WRITE = 21,  /* host->agent: PATH, MODE, FLAGS: READY, then host FILE_DATA... */
  PROTO_FILE_DATA = 22,   /* both ways: raw bytes (<= 64 KiB); host->agent empty = end */
  PROTO_FILE_OP = 23,     /* host->agent: OP (stat, list, mkdir, remove, rename) */
  PROTO_FILE_INFO = 24,   /* agent->host: one file's metadata */
  PROTO_WATCH = 25,       /* host->agent: PATH, FLAGS: READY, then WATCH_EVENT until close */
  PROTO_READY = 26,       /* agent->host: the request is accepted, go on */
  PROTO_WATCH_EVENT = 27, /* agent->host: KIND, PATH */
};
#define PROTO_TYPE_MAX PROTO_WATCH_EVENT

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
  PROTO_TAG_EXEC_BACKGROUND = 7, /* u8: survives its connection; no output on it */
  PROTO_TAG_EXEC_KEY = 8,        /* string: client-chosen exec id (idempotency) */
  PROTO_TAG_EXEC_PTY = 9,        /* u8: stdin/stdout/stderr on a new pty */
  PROTO_TAG_EXEC_ROWS = 10,      /* u32 */
  PROTO_TAG_EXEC_COLS = 11,      /* u32 */

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
  PROTO_TAG_ERROR_ERRNO = 3,   /* u32: errno of a failed file operation, if any */
};

/* Tags of the new messages (frame types 12-27 and the TLV after EXEC_STARTED's pid). All
 * single-valued. Integers: u8 flags, u32, u64 as listed in struct proto_msg. */
enum proto_mtag {
  PROTO_M_PROC_ID = 1,      /* u32 */
  PROTO_M_PID = 2,          /* u32 */
  PROTO_M_RUNNING = 3,      /* u8 */
  PROTO_M_EXIT_CODE = 4,    /* u32 (int32) */
  PROTO_M_SIGNAL = 5,       /* u32 */
  PROTO_M_OUT_START = 6,    /* u64 */
  PROTO_M_ERR_START = 7,    /* u64 */
  PROTO_M_OUT_END = 8,      /* u64 */
  PROTO_M_ERR_END = 9,      /* u64 */
  PROTO_M_OUT_TOTAL = 10,   /* u64 */
  PROTO_M_ERR_TOTAL = 11,   /* u64 */
  PROTO_M_OUT_EARLIEST = 12,/* u64 */
  PROTO_M_ERR_EARLIEST = 13,/* u64 */
  PROTO_M_WAIT_MS = 14,     /* u64 */
  PROTO_M_MAX_BYTES = 15,   /* u64 */
  PROTO_M_FOLLOW = 16,      /* u8 */
  PROTO_M_DATA = 17,        /* bytes (may contain NUL) */
  PROTO_M_EOF = 18,         /* u8 */
  PROTO_M_ROWS = 19,        /* u32 */
  PROTO_M_COLS = 20,        /* u32 */
  PROTO_M_KEY = 21,         /* string */
  PROTO_M_PTY = 22,         /* u8 */
  PROTO_M_PATH = 23,        /* string */
  PROTO_M_PATH2 = 24,       /* string: rename target; listing: path relative to the root */
  PROTO_M_MODE = 25,        /* u32: st_mode (type and permission bits) */
  PROTO_M_SIZE = 26,        /* u64 */
  PROTO_M_MTIME_NS = 27,    /* u64 */
  PROTO_M_DEPTH = 28,       /* u32 */
  PROTO_M_FLAGS = 29,       /* u32: enum proto_mflag */
  PROTO_M_KIND = 30,        /* u32: enum proto_file_op or enum proto_watch_kind */
  PROTO_M_DURATION_US = 31, /* u64 */
  PROTO_M_CPU_US = 32,      /* u64 */
  PROTO_M_MAX_RSS_KB = 33,  /* u64 */
  PROTO_M_COMMAND = 34,     /* string: argv joined by spaces (informative) */
  PROTO_M_STARTED_MS = 35,  /* u64: wall clock */
  PROTO_M_TIMED_OUT = 36,   /* u8 */
  PROTO_M_TARGET = 37,      /* string: a symlink's target */
  PROTO_M_UID = 38,         /* u32 */
  PROTO_M_GID = 39,         /* u32 */
  PROTO_M_EXISTING = 40,    /* u8: EXEC_KEY named a process that already existed */
  PROTO_M_OFFSET = 41,      /* u64 */
  PROTO_M_LENGTH = 42,      /* u64 */
  PROTO_M_BACKGROUND = 43,  /* u8 */
  PROTO_M_MAX = 43,
};

enum proto_mflag {
  PROTO_F_RECURSIVE = 1u << 0, /* remove, watch */
  PROTO_F_PARENTS = 1u << 1,   /* mkdir -p; write: create missing parent directories */
  PROTO_F_APPEND = 1u << 2,    /* write: append instead of replace */
  PROTO_F_EXIST_OK = 1u << 3,  /* mkdir: an existing directory is fine */
  PROTO_F_DIR = 1u << 4,       /* watch event: the path is a directory */
};

enum proto_file_op {
  PROTO_OP_STAT = 1,   /* PATH -> FILE_INFO, DONE */
  PROTO_OP_LIST = 2,   /* PATH, DEPTH -> FILE_INFO per entry (PATH2 relative), DONE */
  PROTO_OP_MKDIR = 3,  /* PATH, MODE, FLAGS PARENTS|EXIST_OK -> DONE */
  PROTO_OP_REMOVE = 4, /* PATH, FLAGS RECURSIVE -> DONE */
  PROTO_OP_RENAME = 5, /* PATH -> PATH2 -> DONE */
};

enum proto_watch_kind {
  PROTO_W_CREATED = 1,
  PROTO_W_MODIFIED = 2,
  PROTO_W_DELETED = 3,
  PROTO_W_MOVED_FROM = 4,
  PROTO_W_MOVED_TO = 5,
  PROTO_W_OVERFLOW = 6, /* events were lost (inotify queue overflow) */
};

/* A decoded message of the new frame types. `seen` has bit t set when tag t was present.
 * Strings are NUL-terminated copies (owned; proto_msg_free); data points into the payload
 * it was decoded from. */
struct proto_msg {
  uint64_t seen;
  uint32_t proc_id, pid, signal, rows, cols, mode, depth, flags, kind, uid, gid;
  int32_t exit_code;
  uint8_t running, follow, eof, pty, timed_out, existing, background;
  uint64_t out_start, err_start, out_end, err_end, out_total, err_total, out_earliest,
      err_earliest, wait_ms, max_bytes, size, mtime_ns, duration_us, cpu_us, max_rss_kb,
      started_ms, offset, length;
  char *key, *path, *path2, *command, *target;
  const uint8_t *data;
  uint32_t data_len;
};
#define PROTO_HAS(m, tag) (((m)->seen >> (tag)) & 1u)
/* Mark a field as present before encoding (the encoder writes only present fields). */
#define PROTO_SET(m, tag) ((m)->seen |= 1ull << (tag))

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
  uint8_t background;   /* keeps running when the connection closes; no output on it */
  uint8_t pty;          /* run on a new pty (stdout and stderr merged, stdin from it) */
  uint32_t rows, cols;  /* pty size; 0: 24x80 */
  char *key;            /* client-chosen exec id, NULL if none; at most 128 bytes */
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
/* Same with an errno (0: none), for failed file operations. */
int proto_error_encode_errno (struct proto_buf *out, uint32_t code, int sys_errno,
                              const char *msg);
int proto_error_decode_errno (const uint8_t *p, size_t n, uint32_t *code, int *sys_errno,
                              char *msg, size_t cap, struct sbx_err *err);
/* New messages (msg2.c). Encode appends the present fields; -1 with errno EMSGSIZE if the
 * payload would exceed PROTO_MAX_PAYLOAD. Decode refuses wrong widths, repeated tags, NUL
 * in strings; skips unknown tags. */
int proto_msg_encode (const struct proto_msg *m, struct proto_buf *out);
int proto_msg_decode (const uint8_t *p, size_t n, struct proto_msg *m, struct sbx_err *err);
void proto_msg_free (struct proto_msg *m);
/* EXEC_STARTED: u32 pid, then (since the process table) a TLV of PROC_ID and EXISTING. */
int proto_started_encode (struct proto_buf *out, uint32_t pid, uint32_t proc_id, int existing);
int proto_started_decode (const uint8_t *p, size_t n, uint32_t *pid, uint32_t *proc_id,
                          int *existing, struct sbx_err *err);

/* ---- host-side client helpers (blocking), used by `sbx run`, tests and sbxd ---- */
/* Connect to an agent socket path and exchange HELLO. Returns a CLOEXEC fd or -1. r is
 * initialized here (do not pass a reader holding data); release it with proto_reader_free
 * after use, also after a failure. A peer answering with ERROR fails with its code and
 * message; another protocol version fails with SBX_E_PROTO. The connect and the HELLO
 * exchange take at most PROTO_HELLO_TIMEOUT_MS (an agent that accepts and never answers
 * fails with SBX_E_TIMEOUT); the socket returned has no timeouts. */
#define PROTO_HELLO_TIMEOUT_MS 10000
int proto_client_connect (const char *socket_path, struct proto_reader *r, struct sbx_err *err);
