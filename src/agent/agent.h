/* sbx-init internals: one epoll loop owning connections, processes and requests.
 *
 * Ownership: the agent owns connections and the process table. A process (struct proc)
 * does not belong to a connection: its output goes into two ring buffers with absolute
 * byte offsets, and requests of any connection read it from there (struct follow). A
 * foreground exec is a process plus a STREAM follow that kills it if its connection
 * closes; a background exec has no such follow and outlives every connection.
 *
 * Objects are never freed while an epoll batch is being dispatched (an event later in the
 * batch may point at them): closing marks them dead, closes their fds and parks them on a
 * list that the loop frees after the batch. Every handler checks `fd >= 0` on its watch
 * first. Work that must not run inside a send (pumping output to a connection whose queue
 * just drained, re-reading a pipe after its ring got room) is flagged and run by the loop
 * after the batch (agent_run_deferred). */
#pragma once

#include "../common/common.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <sys/resource.h>

#include <sys/syscall.h>
#ifndef SYS_close_range
#define SYS_close_range 436 /* the same number on every architecture; musl 1.2.3 lacks it */
#endif

/* An errno's text without locale or allocation, safe in a vfork child: glibc's
 * strerrordesc_np; musl's strerror is a plain table lookup. */
#ifdef __GLIBC__
#define agent_errdesc(e) strerrordesc_np (e)
#else
#define agent_errdesc(e) strerror (e)
#endif

/* Connections: sbxd runs up to 128 requests at once in a sandbox (SRV_EXECS_PER_SANDBOX,
 * one connection each) and keeps 4 idle ones (SRV_AGENT_IDLE_MAX); the rest is slack for
 * connections sbxd closed that this loop has not reaped yet. */
#define AGENT_MAX_CONNS 160
#define AGENT_MAX_EXECS 256           /* requests (follows, files, watches) per connection */
#define AGENT_QUEUE_HIGH (1u << 20)   /* stop pumping output and reading the socket above this */
#define AGENT_QUEUE_LOW (256u * 1024) /* ...and resume below this */
#define AGENT_STDIN_HIGH (1u << 20)   /* per process: stop reading the socket above this */
#define AGENT_STDIN_MAX (8u << 20)    /* per process: PROC_STDIN refused above this */
#define AGENT_DRAIN_MAX (2u << 20)    /* per stream, read after the main process exited */
#define AGENT_RING_MAX (8u << 20)     /* output kept per stream per process */
#define AGENT_MAX_PROCS 256           /* running + finished processes in the table */
#define AGENT_KEEP_FINISHED 16        /* finished processes kept for output and wait */
#define AGENT_PTY_DRAIN_MS 2000       /* after exit, wait this long for the pty to hang up */
#define AGENT_READ_MAX (8u << 20)     /* PROC_OUTPUT: bytes per stream per read */

enum watch_kind { W_LISTEN, W_SIGNAL, W_CONN, W_STDOUT, W_STDERR, W_STDIN, W_TIMER,
                  W_DRAIN_TIMER, W_FOLLOW_TIMER, W_INOTIFY };

struct watch {
  enum watch_kind kind;
  int fd;            /* -1 once closed */
  uint32_t events;   /* what is registered in epoll; 0 = not registered */
  void *owner;       /* struct agent, conn, proc, follow or fwatch */
};

/* Output of one stream: bytes [start, end) of everything written are held. */
struct ring {
  uint8_t *data;
  size_t cap;        /* power of two, grown up to AGENT_RING_MAX */
  uint64_t start;    /* earliest offset still held */
  uint64_t end;      /* bytes written so far = the next offset */
};
/* Append; the oldest bytes are dropped past AGENT_RING_MAX. -1 on ENOMEM. */
int ring_append (struct ring *r, const void *p, size_t n);
/* Copy n bytes from absolute offset off (start <= off, off + n <= end). */
void ring_copy (const struct ring *r, uint64_t off, void *out, size_t n);
void ring_free (struct ring *r);

struct conn {
  struct agent *agent;
  struct watch w;
  struct proto_reader rd;
  struct proto_buf outq; /* frames waiting for the socket, from outq_off on */
  size_t outq_off;
  bool hello_done;
  bool throttled; /* outq above AGENT_QUEUE_HIGH: output pumping and socket input paused */
  bool want_pump; /* became unthrottled: pump its requests after the batch */
  bool dead;
  size_t nreqs;   /* follows, file transfers and watches of this connection */
  struct conn *next, *prev; /* agent->conns, or agent->dead_conns (next only) */
};

struct follow;

struct proc {
  struct agent *agent;
  uint32_t id;             /* agent-wide process id, never reused */
  char *key;               /* client-chosen exec id, or NULL */
  char *command;           /* argv joined, for listings */
  pid_t pid;               /* main process and its group; 0 once reaped */
  struct watch out[2];     /* stdout, stderr read ends (pty: out[0] is the master) */
  struct watch in;         /* stdin write end (pipe, or a dup of the pty master) */
  struct watch timer;      /* timerfd for timeout_ms */
  struct watch drain;      /* pty: deadline for the hang-up after exit */
  struct proto_buf inq;    /* stdin bytes not yet written, from inq_off on */
  size_t inq_off;
  bool in_eof;             /* close stdin (pty: send ^D) once inq is written */
  struct ring ring[2];
  uint64_t drained[2];     /* bytes read after exit */
  bool background, pty, timed_out;
  bool exited;             /* main process reaped; status and ru valid */
  bool finished;           /* and its output is complete: the exit record is final */
  bool want_poke;          /* re-check pipe interest / drain after the batch */
  bool dead;
  int status;
  struct rusage ru;
  int64_t start_ns, end_ns, started_ms;
  struct proc *next, *prev; /* agent->procs (oldest first), or agent->dead_procs */
};

enum follow_mode {
  FOL_STREAM, /* send output as it comes, then EXEC_EXIT (an exec's own stream, or a
                 PROC_OUTPUT with FOLLOW) */
  FOL_READ,   /* PROC_OUTPUT: wait for data beyond the offsets, send it, then PROC_INFO */
  FOL_WAIT,   /* PROC_WAIT: PROC_INFO once finished or at the deadline */
};

struct follow {
  enum follow_mode mode;
  struct conn *conn;
  uint32_t id;             /* the request's frame id on conn */
  struct proc *proc;
  uint64_t off[2];         /* next offset to send */
  uint64_t max_output;     /* STREAM: bytes forwarded per stream, 0 = all */
  uint64_t sent[2];
  uint8_t truncated[2];
  uint64_t max_bytes;      /* READ: per stream */
  bool kill_on_close;      /* the exec's own stream: its connection closing kills it */
  bool info_first;         /* STREAM from PROC_OUTPUT: PROC_INFO before the data */
  bool dead;
  uint64_t mark;           /* iteration mark (follow.c) */
  struct watch timer;      /* READ/WAIT deadline */
  struct follow *next, *prev; /* agent->follows, or agent->dead_follows */
};

struct fxfer;  /* files.c: a FILE_READ or FILE_WRITE in progress */
struct fwatch; /* watch.c: an inotify watch */

struct agent {
  int epfd;
  struct watch listen;
  struct watch sig;
  int devnull;             /* O_RDWR, given to execs as stdin by default */
  int rootfd;              /* O_PATH "/": file paths resolve beneath it */
  bool reset_oom;          /* our oom_score_adj is not 0: children write "0" */
  struct rlimit nofile;    /* the limit we were started with, restored for commands */
  struct conn *conns;
  size_t nconns;
  struct proc *procs, *procs_tail;
  size_t nprocs, nfinished;
  uint32_t next_proc_id;
  struct follow *follows;
  struct fxfer *xfers;
  struct fwatch *fwatches;
  struct conn *dead_conns;
  struct proc *dead_procs;
  struct follow *dead_follows;
  struct fxfer *dead_xfers;
  struct fwatch *dead_fwatches;
};

/* main.c */
int agent_watch_set (struct agent *a, struct watch *w, uint32_t events);
void agent_watch_close (struct agent *a, struct watch *w);
int agent_timer_open (uint64_t ms, struct sbx_err *err);

/* conn.c */
void agent_accept (struct agent *a);
void conn_event (struct conn *c, uint32_t events);
/* Queue a frame; flushes what the socket takes now. May close c (check c->dead). */
void conn_send (struct conn *c, uint8_t type, uint32_t id, const void *p, uint32_t len);
void conn_send_error (struct conn *c, uint32_t id, uint32_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
/* ERROR carrying an errno (file operations). */
void conn_send_errno (struct conn *c, uint32_t id, int sys_errno, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
void conn_send_msg (struct conn *c, uint8_t type, uint32_t id, const struct proto_msg *m);
/* Room for one data frame at the end of outq: header + PROTO_DATA_CHUNK. */
uint8_t *conn_data_reserve (struct conn *c);
void conn_data_commit (struct conn *c, uint8_t type, uint32_t id, uint32_t len);
void conn_flush (struct conn *c);
/* Recompute throttling and epoll interest of c. */
void conn_update (struct conn *c);
void conn_close (struct conn *c);
/* A request (exec, follow, file transfer, watch) of c uses this id. */
int conn_id_in_use (struct conn *c, uint32_t id);

/* proc.c: the process table */
void proc_exec_start (struct conn *c, uint32_t id, const uint8_t *p, size_t n);
struct proc *proc_find (struct agent *a, uint32_t id);
void proc_stdin (struct proc *p, const uint8_t *data, size_t n, bool eof);
size_t proc_stdin_queued (const struct proc *p);
void proc_signal (struct proc *p, int sig);
int proc_resize (struct proc *p, uint32_t rows, uint32_t cols);
void proc_event (struct watch *w, uint32_t events);
/* The main process was reaped. */
void proc_exited (struct proc *p, int status, const struct rusage *ru);
/* Pipe interest and draining after a follow made room or went away. */
void proc_poke (struct proc *p);
/* The exit record (valid once finished). */
void proc_exit_record (const struct proc *p, struct proto_exec_exit *ex);
/* A finished process nobody needs any more is released (foreground, no key). */
void proc_maybe_release (struct proc *p);
/* Fill m with the process's state (PROC_INFO). */
void proc_info (const struct proc *p, struct proto_msg *m);

/* follow.c: requests reading processes */
struct follow *follow_new (struct conn *c, uint32_t id, struct proc *p, enum follow_mode mode);
void follow_pump (struct follow *f);
/* New output or state change of p: pump its follows (after the batch when deferred). */
void follow_proc_changed (struct proc *p);
/* Lowest offset of stream s that some STREAM follow of p still has to send (ring.end if none). */
uint64_t follow_floor (const struct proc *p, int s);
bool follow_has (const struct proc *p);
struct follow *follow_find (struct conn *c, uint32_t id);
void follow_free (struct follow *f);
void follow_conn_closed (struct conn *c);
void follow_conn_pump (struct conn *c);
/* A process's stdin queue drained: its readers' connections may read the socket again. */
void follow_update_conns (struct proc *p);
/* Some process read by c has more than AGENT_STDIN_HIGH stdin queued. */
bool follow_stdin_full (const struct conn *c);
void follow_timer_event (struct follow *f);
/* PROC_OUTPUT, PROC_WAIT, PROC_STDIN, PROC_SIGNAL, PROC_RESIZE, PROC_LIST */
void follow_request (struct conn *c, const struct proto_frame *f);

/* path.c: resolving paths inside the sandbox root */
/* Open the parent directory of path (O_PATH|O_DIRECTORY) and copy the last component to
 * name (NAME_MAX + 1 bytes; never "", "." or ".."). parents: create missing directories. */
int path_open_parent (struct agent *a, const char *path, bool parents, char *name,
                      struct sbx_err *err);
/* openat2 beneath the root with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS (+ extra). */
int path_open (struct agent *a, const char *path, int flags, uint64_t resolve,
               struct sbx_err *err);
/* The path must be absolute, without "." / ".." components or empty names, < PATH_MAX. */
int path_check (const char *path, struct sbx_err *err);

/* files.c */
void files_request (struct conn *c, const struct proto_frame *f);
void files_data (struct conn *c, const struct proto_frame *f);
void files_conn_closed (struct conn *c);
void files_conn_pump (struct conn *c);
void files_free_dead (struct agent *a);
int files_active (struct conn *c, uint32_t id);

/* watch.c */
void watch_start (struct conn *c, const struct proto_frame *f);
void watch_event (struct fwatch *w);
void watch_conn_closed (struct conn *c);
void watch_conn_resume (struct conn *c);
void watch_free_dead (struct agent *a);
int watch_active (struct conn *c, uint32_t id);

/* spawn.c */
struct spawn_io {
  pid_t pid;
  int out_fd, err_fd, in_fd; /* parent ends, non-blocking; in_fd -1 unless stdin is fed.
                                pty: out_fd is the master, err_fd -1, in_fd a dup of it */
};
int agent_spawn (const struct agent *a, const struct proto_exec_req *req, struct spawn_io *io,
                 struct sbx_err *err);
void agent_warm_exec_paths (void);

/* reap.c */
void agent_reap (struct agent *a);
