/* sbx-init internals: one epoll loop owning connections and execs.
 *
 * Ownership: the agent owns connections; a connection owns its execs. Objects are never
 * freed while an epoll batch is being dispatched (an event later in the batch may point at
 * them): closing marks them dead, closes their fds and parks them on a list that the loop
 * frees after the batch. Every handler checks `fd >= 0` on its watch first. */
#pragma once

#include "../common/common.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <sys/resource.h>

#define AGENT_MAX_CONNS 64
#define AGENT_MAX_EXECS 256           /* per connection */
#define AGENT_QUEUE_HIGH (1u << 20)   /* stop reading pipes and the socket above this */
#define AGENT_QUEUE_LOW (256u * 1024) /* ...and resume below this */
#define AGENT_STDIN_HIGH (1u << 20)   /* per exec: stop reading the socket above this */
#define AGENT_DRAIN_MAX (2u << 20)    /* per stream, read after the main process exited */

enum watch_kind { W_LISTEN, W_SIGNAL, W_CONN, W_STDOUT, W_STDERR, W_STDIN, W_TIMER };

struct watch {
  enum watch_kind kind;
  int fd;            /* -1 once closed */
  uint32_t events;   /* what is registered in epoll; 0 = not registered */
  void *owner;       /* struct agent, conn or exec */
};

struct exec;

struct conn {
  struct agent *agent;
  struct watch w;
  struct proto_reader rd;
  struct proto_buf outq; /* frames waiting for the socket, from outq_off on */
  size_t outq_off;
  bool hello_done;
  bool throttled; /* outq above AGENT_QUEUE_HIGH: pipes and socket input paused */
  bool dead;
  struct exec *execs;
  size_t nexecs;
  struct conn *next, *prev; /* agent->conns, or agent->dead_conns (next only) */
};

struct exec {
  struct conn *conn;
  uint32_t id;
  pid_t pid;               /* main process, also the process group (setsid) */
  struct watch out[2];     /* stdout, stderr read ends */
  struct watch in;         /* stdin write end (PROTO_STDIN_PIPE) */
  struct watch timer;      /* timerfd for timeout_ms */
  struct proto_buf inq;    /* stdin bytes not yet written, from inq_off on */
  size_t inq_off;
  bool in_eof;             /* close stdin once inq is written */
  uint64_t max_output;
  uint64_t bytes[2];       /* written by the program */
  uint64_t sent[2];        /* forwarded in frames */
  uint8_t truncated[2];
  bool timed_out;
  bool dead;
  int64_t start_ns;
  struct exec *next, *prev; /* conn->execs, or agent->dead_execs (next only) */
};

struct agent {
  int epfd;
  struct watch listen;
  struct watch sig;
  int devnull;             /* O_RDWR, given to execs as stdin by default */
  bool reset_oom;          /* our oom_score_adj is not 0: children write "0" */
  struct rlimit nofile;    /* the limit we were started with, restored for commands */
  struct conn *conns;
  size_t nconns;
  struct conn *dead_conns;
  struct exec *dead_execs;
};

/* loop.c */
int agent_watch_set (struct agent *a, struct watch *w, uint32_t events);
void agent_watch_close (struct agent *a, struct watch *w);

/* conn.c */
void agent_accept (struct agent *a);
void conn_event (struct conn *c, uint32_t events);
/* Queue a frame; flushes what the socket takes now. May close c (check c->dead). */
void conn_send (struct conn *c, uint8_t type, uint32_t id, const void *p, uint32_t len);
void conn_send_error (struct conn *c, uint32_t id, uint32_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
/* Room for one data frame at the end of outq: header + PROTO_DATA_CHUNK. */
uint8_t *conn_data_reserve (struct conn *c);
void conn_data_commit (struct conn *c, uint8_t type, uint32_t id, uint32_t len);
void conn_flush (struct conn *c);
/* Recompute throttling and epoll interest of c and its execs' pipes. */
void conn_update (struct conn *c);
void conn_close (struct conn *c);

/* exec.c */
void exec_start (struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void exec_stdin (struct exec *e, const uint8_t *p, size_t n);
void exec_signal (struct exec *e, int sig);
void exec_event (struct watch *w, uint32_t events);
/* Update the epoll interest of e's pipes after a throttling change. */
void exec_update (struct exec *e);
/* The main process was reaped: flush output, send EXEC_EXIT, free. */
void exec_finish (struct exec *e, int status, const struct rusage *ru);
/* The connection went away: SIGKILL the process group, free. */
void exec_abandon (struct exec *e);
struct exec *conn_find_exec (struct conn *c, uint32_t id);

/* spawn.c */
struct spawn_io {
  pid_t pid;
  int out_fd, err_fd, in_fd; /* parent ends, non-blocking; in_fd -1 unless a stdin pipe */
};
int agent_spawn (const struct agent *a, const struct proto_exec_req *req, struct spawn_io *io,
                 struct sbx_err *err);

/* reap.c */
void agent_reap (struct agent *a);
