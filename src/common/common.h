/* sbx common: errors, cleanup helpers, fd I/O, logging, ids, time.
 * Leaf module: includes no other sbx folder. Safe to use from sbx-init (static). */
#pragma once

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

/* ---- errors ------------------------------------------------------------
 * A fallible function takes `struct sbx_err *err` last, returns 0 on success or -1 on
 * failure after filling err. Callers add context with sbx_err_wrap. The code maps to an
 * API error (see srv errors); sys_errno keeps the errno of the failing call, if any. */
enum sbx_code {
  SBX_OK = 0,
  SBX_E_INTERNAL,       /* sbx itself broke: 500 */
  SBX_E_INVALID,        /* caller's input: 400 invalid_request */
  SBX_E_NOT_FOUND,      /* 404 sandbox_not_found */
  SBX_E_TERMINATED,     /* 410 sandbox_terminated */
  SBX_E_TIMEOUT,        /* 408 sandbox_timeout */
  SBX_E_EXEC_FAILED,    /* 500 exec_failed */
  SBX_E_CAPACITY,       /* 503/429 host at capacity */
  SBX_E_TOO_LARGE,      /* 413 */
  SBX_E_PROTO,          /* malformed protocol data */
};

struct sbx_err {
  int code;
  int sys_errno;
  char msg[512];
};

/* Fill err (code, errno, message); returns -1 so `return sbx_err_set(...)` reads well. */
int sbx_err_set (struct sbx_err *err, int code, int sys_errno, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
/* Same, with code SBX_E_INTERNAL and the current errno; appends ": strerror". */
int sbx_err_sys (struct sbx_err *err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
/* Prepend "context: " to the message; keeps code and errno. Returns -1. */
int sbx_err_wrap (struct sbx_err *err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
void sbx_err_clear (struct sbx_err *err);
const char *sbx_code_name (int code);

/* ---- cleanup ----------------------------------------------------------- */
void sbx_freep (void *p);
void sbx_closep (int *fd);
#define cleanup_free __attribute__ ((cleanup (sbx_freep)))
#define cleanup_close __attribute__ ((cleanup (sbx_closep)))

static inline int
sbx_steal_fd (int *fd)
{
  int r = *fd;
  *fd = -1;
  return r;
}
#define steal_fd(p) sbx_steal_fd (p)
#define steal_ptr(pp)                                                                              \
  ({                                                                                               \
    __typeof__ (*(pp)) steal_tmp_ = *(pp);                                                         \
    *(pp) = NULL;                                                                                  \
    steal_tmp_;                                                                                    \
  })

/* ---- fd I/O (EINTR-safe) ----------------------------------------------- */
/* Write all of buf; returns 0 or -1 with errno. */
int sbx_write_all (int fd, const void *buf, size_t len);
/* Read exactly len bytes; returns len, a short count on EOF, or -1 with errno. */
ssize_t sbx_read_full (int fd, void *buf, size_t len);
/* Send/receive up to 8 fds with one message (SCM_RIGHTS). recv returns bytes read, sets *nfds. */
int sbx_send_fds (int sock, const void *buf, size_t len, const int *fds, int nfds);
ssize_t sbx_recv_fds (int sock, void *buf, size_t len, int *fds, int *nfds);
int sbx_set_nonblock (int fd, int on);
int sbx_set_cloexec (int fd, int on);
/* Write a small string to a file (e.g. cgroup, /proc knobs); O_WRONLY|O_CLOEXEC. */
int sbx_write_file (const char *path, const char *s);
int sbx_write_fileat (int dirfd, const char *path, const char *s);
/* Read a small file into buf (NUL-terminated, truncated at cap-1). Returns bytes or -1. */
ssize_t sbx_read_file (const char *path, char *buf, size_t cap);
/* mkdir -p with mode; existing directories are fine. */
int sbx_mkdir_p (const char *path, mode_t mode);
/* Open directory name under dirfd as a stream, never through a symlink (O_CLOEXEC). NULL
 * with errno. */
DIR *sbx_opendirat (int dirfd, const char *name);
/* rm -rf that never follows symlinks and stays on one filesystem. */
int sbx_rm_rf (const char *path);

/* ---- logging ------------------------------------------------------------ */
enum sbx_log_level { SBX_LOG_ERROR, SBX_LOG_WARN, SBX_LOG_INFO, SBX_LOG_DEBUG };
void sbx_log_set_level (int level);
int sbx_log_get_level (void);
void sbx_log (int level, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
#define LOG_ERROR(...) sbx_log (SBX_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) sbx_log (SBX_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) sbx_log (SBX_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) sbx_log (SBX_LOG_DEBUG, __VA_ARGS__)

/* ---- ids and time ------------------------------------------------------- */
#define SBX_ID_MAX 64
/* "sb_" + 20 lowercase hex chars from getrandom. */
int sbx_id_new (const char *prefix, char out[SBX_ID_MAX]);
/* True if s is a syntactically valid id: prefix_ + [0-9a-z] only, bounded length. */
int sbx_id_valid (const char *s, const char *prefix);
int64_t sbx_now_ms (void);   /* wall clock, ms since epoch */
int64_t sbx_mono_ns (void);  /* CLOCK_MONOTONIC */
/* RFC 3339 UTC with seconds: "2026-06-13T10:00:00Z". buf >= 32. */
void sbx_time_rfc3339 (int64_t ms, char *buf, size_t cap);

/* ---- misc --------------------------------------------------------------- */
/* FNV-1a of a string, for hash buckets (not for anything an attacker must not collide). */
uint32_t sbx_hash_str (const char *s);
/* Parse a size like "512", "512M", "1G", "64k" (binary units) into bytes. */
int sbx_parse_size (const char *s, uint64_t *out);
/* Path of a program shipped with sbx (sbx-init, sbx-admin): next to the running binary
 * (build/ or the install dir), else /usr/local/lib/sbx/NAME. Returns 0 if that file is
 * executable, -1 if not (out then holds the last place tried, for the message). */
int sbx_find_sibling (const char *name, char *out, size_t cap);
/* Run the program at path (absolute) to its end: stdin /dev/null, stdout and stderr to
 * out_fd (-1: /dev/null), no other fd, environment envp. 0 with *status as waitpid gives
 * it, or -1 with err (fork or wait failed). */
int sbx_run_program (const char *path, char *const argv[], char *const envp[], int out_fd,
                     int *status, struct sbx_err *err);
/* Default state directory: $SBX_STATE_DIR or /var/lib/sbx. */
const char *sbx_default_state_dir (void);
