/* Private to src/server (sbxd): configuration, request validation, routing, the sandbox
 * registry and supervisor, handlers and the HTTP glue. main.c wires them together.
 *
 * Threads: libmicrohttpd runs one thread per connection; a handler may block (an exec
 * waits for its command) without holding up other requests. One supervisor thread owns
 * sandbox lifetimes (epoll over pidfds, one timerfd and an eventfd). Sandbox objects are
 * reference-counted so that destroy never races an exec. */
#pragma once

#include "../common/common.h"
#include "../store/store.h"
#include "../billing/billing.h"
#include "deadlines.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#define SRV_BODY_LIMIT (10u * 1024 * 1024) /* request bodies, bytes */
#define SRV_TIMEOUT_MAX 86400              /* seconds, sandbox lifetime and exec timeout */
#define SRV_TIMEOUT_DEFAULT 300
#define SRV_MEMORY_MIN_MB 64
#define SRV_MEMORY_DEFAULT_MB 1024
#define SRV_CPU_MIN_MILLIS 100
#define SRV_CPU_DEFAULT_MILLIS 1000
#define SRV_ENV_MAX_COUNT 256
#define SRV_ENV_MAX_NAME 256
#define SRV_ENV_MAX_VALUE (32 * 1024)
#define SRV_ENV_MAX_TOTAL (256 * 1024)
#define SRV_ARGV_MAX_COUNT 4096
#define SRV_LIST_LIMIT_MAX 1000 /* sandboxes per page of /sandbox/list */
#define SRV_PATH_MAX 4096
#define SRV_DEFAULT_IMAGE "python:3.11"
#define SRV_EXECS_PER_SANDBOX 128 /* concurrent execs in one sandbox; more → 429 */
#define SRV_ID_BUCKETS 4096        /* registry hash (supervisor.c) */
#define SRV_AGENT_IDLE_MAX 4       /* idle sbx-init connections kept per sandbox (h_exec.c) */
#define SRV_POOL_KEYS_MAX 8        /* warm pool keys (pool.c) */
#define SRV_POOL_SIZE_MAX 4096
#define SRV_POOL_SIZE_DEFAULT 2
#define SRV_POOL_MAX_AGE_DEFAULT 600 /* seconds an unclaimed pool member lives */

/* A warm pool key: sandboxes of this image and these resources (network: none, the only
 * mode) are kept ready; size 0: none. */
struct srv_pool_key {
  char image[64];
  uint32_t cpu_millis;
  uint64_t memory_mb;
  int size;
};

/* Connections libmicrohttpd may hold for a connection_limit of n: more than n, for the
 * ones whose eviction is under way and for when every connection is busy (http.c). */
#define SRV_CONN_HARD_LIMIT(n) ((n) + (n) / 8 + 16)

struct srv_config {
  char listen_host[64];
  uint16_t port;
  char state_dir[PATH_MAX];
  char init_path[PATH_MAX];   /* sbx-init; default: next to the sbxd binary */
  int max_sandboxes;          /* live sandboxes; more → 503 at_capacity */
  uint64_t max_output;        /* per stream per exec, bytes (default and upper bound) */
  uint32_t max_cpu_millis;    /* upper bound of create.cpu */
  uint64_t max_memory_mb;     /* upper bound of create.memory */
  int log_level;
  int connection_limit;       /* concurrent HTTP connections (idle ones past it evicted) */
  unsigned connection_timeout;/* idle seconds before MHD drops a connection */
  uint64_t max_unread_bytes;  /* answers sbxd holds for clients that have not read them */
  int max_per_owner;          /* auth on: running sandboxes per owner (0: no bound) */
  int max_requests_per_owner; /* auth on: requests being answered per owner (0: no bound) */
  int prepare_image;          /* resolve (build) the default image at start */
  /* money (auth_config.c, docs/payments.md) */
  int auth;                   /* SRV_AUTH_* bits; 0: off, loopback only */
  int network;                /* enum bill_network, for x402 */
  uint8_t pay_to[20];         /* x402 recipient */
  int has_pay_to;
  char facilitator[512];      /* x402 facilitator base URL; "": settlements queue */
  int queue_settlements;      /* x402 without a facilitator accepted (runs unfunded calls) */
  struct bill_pricing pricing;
  /* warm pool (pool.c, docs/api.md "Warm pool") */
  int pool_size;              /* members for the default image and resources; 0: none */
  int pool_max_age_s;         /* an unclaimed member older than this is replaced */
  struct srv_pool_key pool_keys[SRV_POOL_KEYS_MAX]; /* config "pool": more keys */
  int n_pool_keys;
};

enum { SRV_AUTH_API_KEY = 1, SRV_AUTH_X402 = 2 };

/* Defaults derived from the host (cores, RAM). */
void srv_config_defaults (struct srv_config *c);
/* Apply a JSON config file (same names as the long flags, with '_' for '-'). Unknown keys
 * are errors: a misspelt limit must not silently fall back to a default. */
int srv_config_load_file (struct srv_config *c, const char *path, struct sbx_err *err);
/* Parse "host:port"; host must be an IP literal or "localhost". */
int srv_config_set_listen (struct srv_config *c, const char *s, struct sbx_err *err);
int srv_config_set_log_level (struct srv_config *c, const char *s, struct sbx_err *err);
/* 1 if the listen host is a loopback address. */
int srv_config_is_loopback (const struct srv_config *c);

/* ---- validated requests (validate.c) ---- */
struct srv_env {
  char **names;  /* owned */
  char **values; /* owned */
  size_t n;
};

struct srv_create_req {
  char image[64];
  int64_t timeout_s;
  uint32_t cpu_millis;
  uint64_t memory_mb;
  struct srv_env env;
  char *workdir; /* NULL if absent */
};

struct srv_exec_req {
  char id[SBX_ID_MAX];
  int id_valid;       /* 0: syntactically not a sandbox id (answered as not found) */
  char **argv;        /* NULL-terminated, owned */
  size_t argc;
  struct srv_env env;
  char *workdir;
  char *stdin_data;   /* NULL if absent; may contain NUL bytes */
  size_t stdin_len;
  int has_stdin;
  uint64_t timeout_ms;   /* 0: until the sandbox's lifetime ends */
  uint64_t max_output;
};

/* Every parser fills err with SBX_E_INVALID and a message naming the field. */
int srv_parse_create (json_t *body, const struct srv_config *c, struct srv_create_req *out,
                      struct sbx_err *err);
void srv_create_req_free (struct srv_create_req *r);
int srv_parse_exec (json_t *body, const struct srv_config *c, struct srv_exec_req *out,
                    struct sbx_err *err);
void srv_exec_req_free (struct srv_exec_req *r);
/* sandbox_id of status/terminate: *valid = 0 for a string that cannot be an id. */
int srv_parse_sandbox_id (json_t *body, char id[SBX_ID_MAX], int *valid, struct sbx_err *err);
void srv_env_free (struct srv_env *e);
/* env as a JSON object string (for the store), or NULL when empty. */
char *srv_env_to_json (const struct srv_env *e);
/* Parse the store's env JSON back (trusted input). */
int srv_env_from_json (const char *s, struct srv_env *out);

/* ---- output encoding (utf8.c) ---- */
/* Copy bytes as valid UTF-8, replacing every byte that is not part of a well-formed
 * sequence with U+FFFD. Returns 1 if anything was replaced, 0 if not, -1 on OOM. */
int srv_utf8_sanitize (const uint8_t *p, size_t n, char **out, size_t *out_len);
char *srv_base64 (const uint8_t *p, size_t n);
/* o[key] = s as a JSON string. A name from inside a sandbox (a path, a link target, a
 * command line) can be any bytes, a JSON string cannot: then o[key] is s with every byte
 * that is not well-formed UTF-8 replaced by U+FFFD, and o["<key>_base64"] the exact
 * bytes. 0, or -1 (out of memory). */
/* How answers are printed: compact, and 15 significant digits, so that a cpu of 0.1
 * prints as 0.1, not as the nearest double's 0.10000000000000001. */
#define SRV_JSON_OUT (JSON_COMPACT | JSON_REAL_PRECISION (15))
int srv_json_set_text (json_t *o, const char *key, const char *s);
/* s as a JSON string, U+FFFD for every byte that is not well-formed UTF-8 (NULL: out of
 * memory). Where no "_base64" twin fits, e.g. in an array of paths. */
json_t *srv_json_text (const char *s);
/* {"path": path, "size": size} with path set by srv_json_set_text. */
json_t *srv_path_size_json (const char *path, uint64_t size);

/* ---- routing (routes.c) ---- */
enum srv_route {
  SRV_R_NONE = 0,
  SRV_R_CREATE,
  SRV_R_EXEC,
  SRV_R_STATUS,
  SRV_R_TERMINATE,
  SRV_R_LIST,
  /* images, snapshots, volumes (issue 5): images_srv.h, h_image.c, h_snapshot.c, ... */
  SRV_R_IMAGE_BUILD = 200,
  SRV_R_IMAGE_LIST,
  SRV_R_IMAGE_GET,     /* GET /image/{id} (srv_route_item) */
  SRV_R_IMAGE_DELETE,
  SRV_R_IMAGE_GC,
  SRV_R_SNAPSHOT,
  SRV_R_FORK,
  SRV_R_DIFF,
  SRV_R_VOLUME_CREATE,
  SRV_R_VOLUME_LIST,
  SRV_R_VOLUME_DELETE,
  SRV_R_VOLUME_ITEM,   /* GET|DELETE /volume/{name} (srv_route_item) */
  SRV_R_HEALTH,
  SRV_R_PRICING,
  SRV_R_USAGE,
  SRV_R_METRICS,       /* GET /metrics: Prometheus text (metrics.c) */
  /* working inside a sandbox (issue 6): h_inside.c, h_files.c, stream.c */
  SRV_R_PROC_OUTPUT = 100,
  SRV_R_PROC_WAIT,
  SRV_R_PROC_STDIN,
  SRV_R_PROC_SIGNAL,
  SRV_R_PROC_RESIZE,
  SRV_R_PROC_LIST,
  SRV_R_FILE_READ,
  SRV_R_FILE_WRITE,
  SRV_R_FILE_APPEND,
  SRV_R_FILE_LIST,
  SRV_R_FILE_STAT,
  SRV_R_FILE_MKDIR,
  SRV_R_FILE_REMOVE,
  SRV_R_FILE_RENAME,
  SRV_R_FILE_WATCH,
  SRV_R_FILES_RAW,   /* GET|PUT /sandbox/{id}/files?path=... */
  SRV_R_ARCHIVE,     /* GET|PUT /sandbox/{id}/archive?path=... */
};
#define SRV_R_INSIDE_FIRST SRV_R_PROC_OUTPUT
#define SRV_R_INSIDE_LAST SRV_R_FILE_WATCH
/* Match a path (no query string) under any API prefix. Returns the route or SRV_R_NONE;
 * *allow gets the one method the route accepts ("GET" or "POST"). */
enum srv_route srv_route_match (const char *path, const char **allow);

/* The {id} of the last SRV_R_IMAGE_GET (or {name} of SRV_R_VOLUME_ITEM) matched by this thread (MHD serves a connection
 * on one thread, so dispatch finds it there). */
const char *srv_route_item (void);
/* Handlers of images, snapshots and volumes (issue 5). */
struct srv;
struct srv_reply;
void srv_h_image_build (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_image_list (struct srv *s, struct srv_reply *r);
void srv_h_image_get (struct srv *s, const char *id, struct srv_reply *r);
void srv_h_image_delete (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_image_gc (struct srv *s, struct srv_reply *r);
void srv_h_snapshot (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_fork (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_diff (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_volume_create (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_volume_list (struct srv *s, struct srv_reply *r);
void srv_h_volume_delete (struct srv *s, json_t *body, struct srv_reply *r);
/* DELETE /image/{id}, GET and DELETE /volume/{name} */
void srv_h_image_delete_id (struct srv *s, const char *id, struct srv_reply *r);
void srv_h_volume_get (struct srv *s, const char *name, struct srv_reply *r);
void srv_h_volume_delete_name (struct srv *s, const char *name, struct srv_reply *r);
/* Remove layers no image refers to; 0 and what went, or -1. */
int srv_image_gc (struct srv *s, size_t *removed, uint64_t *freed, struct sbx_err *err);

/* ---- replies ---- */
struct srv_reply {
  unsigned status;
  json_t *body;        /* owned */
  const char *allow;   /* Allow header for 405 */
  int retry_after;     /* seconds, 0: none */
  struct { const char *name; char *value; } hdr[4]; /* extra headers; values owned */
  int n_hdr;
  struct srv_stream *stream; /* a streamed body instead of JSON (status 200), owned */
  const char *accept;        /* in: the request's Accept header (streams choose SSE) */
  char *text;                /* a non-JSON body (metrics) instead of body, owned */
  const char *content_type;  /* of text */
};
/* Add an extra response header (takes ownership of value; dropped if full or NULL). */
void srv_reply_header (struct srv_reply *r, const char *name, char *value);
/* Error reply {"error":{"code","message"}}; status from the sbx code. */
void srv_reply_error (struct srv_reply *r, int code, const char *msg);
void srv_reply_err (struct srv_reply *r, const struct sbx_err *err);
/* A command that could not be encoded for the agent: 400 when it is too large (errno
 * EMSGSIZE from the encoder, encoding 1), else 500 exec_failed (out of memory). */
void srv_reply_encode_error (struct srv_reply *r, int encoding);
void srv_reply_http (struct srv_reply *r, unsigned status, const char *code, const char *msg);
unsigned srv_code_status (int code);
/* srv_parse_sandbox_id, with its 400 in *r when it fails. */
int srv_parse_sandbox_id_reply (json_t *body, char id[SBX_ID_MAX], int *valid,
                                struct srv_reply *r);

/* ---- the server and its sandboxes (supervisor.c) ---- */
enum srv_sb_state {
  SRV_SB_LIVE,
  SRV_SB_ENDING, /* killed (terminate, timeout), waiting for PID 1 to be gone */
  SRV_SB_DEAD,   /* PID 1 gone; destroyed when the last reference is dropped */
};

struct rt_sandbox;
struct srv;

struct srv_exec_slot; /* an exec in flight, so terminate can cut its connection */

struct srv_sandbox {
  char id[SBX_ID_MAX];
  struct srv *srv;
  struct rt_sandbox *rt;
  int refs;                    /* under srv->lock */
  int state;                   /* enum srv_sb_state, under srv->lock */
  int end_code;                /* SBX_E_TERMINATED or SBX_E_TIMEOUT once ending */
  char reason[128];
  int64_t expires_at_ms;
  struct srv_deadline deadline; /* in srv->deadlines while live, under srv->lock */
  struct srv_env env;          /* create-time env, immutable */
  char *workdir;               /* create-time workdir, immutable */
  int exec_fds[SRV_EXECS_PER_SANDBOX]; /* connections of execs in flight, under srv->lock */
  int n_exec_fds;
  struct srv_sandbox *next;    /* registry list */
  struct srv_sandbox *hnext;   /* registry hash chain (srv->by_id) */
  struct srv_sandbox *next_destroy;
  struct { int kind; struct srv_sandbox *sb; } ev_pid;
  /* warm pool (pool.c), under srv->lock: SRV_POOL_* state, key index, pool list link */
  int pooled;
  int pool_key;
  struct srv_sandbox *pool_next;
  /* Idle connections to sbx-init (HELLO done), reused by plain execs; under srv->lock. */
  int idle_fds[SRV_AGENT_IDLE_MAX];
  int n_idle;
  uint32_t next_exec_id;
};

enum {
  SRV_POOL_NO = 0,     /* a caller's sandbox (or never pooled) */
  SRV_POOL_READY,      /* unclaimed member: invisible to srv_sandbox_get, no DB row */
  SRV_POOL_CLAIMING,   /* being handed to a create: still invisible */
  SRV_POOL_DYING,      /* recycled or evicted: killed, waiting for PID 1 to go */
};

struct srv {
  int64_t unread_bytes;       /* JSON answers queued and not yet sent whole (atomic) */
  struct srv_config cfg;
  struct store *store;
  pthread_mutex_t lock;
  pthread_cond_t ended;        /* broadcast when a sandbox leaves SRV_SB_LIVE */
  pthread_mutex_t owner_lock;  /* max_sandboxes_per_owner: a create's count and row
                                  insert (h_sandbox.c); taken before lock */
  struct srv_sandbox *live;    /* registry: every sandbox with a host presence */
  struct srv_sandbox *by_id[SRV_ID_BUCKETS]; /* the same, by id: lookups stay O(1) with
                                                thousands of sandboxes */
  int n_live;
  int n_reserved;              /* creates in progress (count against capacity) */
  struct srv_sandbox *destroy_q;
  int epfd;
  int evfd;
  int timerfd;                 /* CLOCK_REALTIME, armed at the earliest deadline */
  int64_t timer_armed_ms;      /* what timerfd is armed at; 0: disarmed. Under lock */
  struct srv_deadlines deadlines; /* every live sandbox's end of life (or recycle time) */
  pthread_t thread;
  int running;
  int stopping;
  struct srv_pool *pool;       /* pool.c; NULL: no pool */
  int n_pool;                  /* live entries that are pool members (any SRV_POOL_* but NO) */
  int n_pool_dying;            /* of which SRV_POOL_DYING (no longer count against capacity) */
};

int srv_init (struct srv *s, const struct srv_config *cfg, struct sbx_err *err);
/* Start the supervisor thread. */
int srv_super_start (struct srv *s, struct sbx_err *err);
/* Stop the supervisor; sandboxes keep running (re-adopted at the next start). */
void srv_super_stop (struct srv *s);
/* Re-adopt or clean up what the database says is running; remove leftovers. */
int srv_recover (struct srv *s, struct sbx_err *err);
/* Kill and clean up whatever is left of sandbox id that nobody keeps (recover.c): destroy
 * it when it can be adopted (1: its PID 1 was alive), else remove its stale state (0). */
int srv_sandbox_dispose (struct srv *s, const char *id);

/* Capacity: reserve a slot before spawning; release it if the create fails. */
int srv_reserve (struct srv *s, struct sbx_err *err);
void srv_unreserve (struct srv *s);
/* Register a spawned/adopted sandbox (consumes a reservation if reserved != 0). Takes
 * ownership of rt, env and workdir. On failure the sandbox is destroyed. */
int srv_sandbox_add (struct srv *s, struct rt_sandbox *rt, int64_t expires_at_ms,
                     struct srv_env *env, char *workdir, int reserved, struct sbx_err *err);
/* A referenced live (or ending) sandbox, or NULL. Release with srv_sandbox_put. */
struct srv_sandbox *srv_sandbox_get (struct srv *s, const char *id);
void srv_sandbox_put (struct srv_sandbox *sb);
/* Kill the sandbox, record reason; returns 1 if this call ended it, 0 if already ending. */
int srv_sandbox_end (struct srv_sandbox *sb, int code, const char *reason);
/* Wait (bounded) until the sandbox is no longer live; returns its state. */
int srv_sandbox_wait_ended (struct srv_sandbox *sb, int timeout_ms);
/* Answer a request cut because sb ended (its timeout, a terminate) or sbxd is stopping;
 * what names the request in the message ("command", "request"). In h_exec.c. */
void srv_reply_sandbox_ended (struct srv_sandbox *sb, const char *what, struct srv_reply *r);
/* 0, -1 if the sandbox is not live (or sbxd stops), -2 if it runs too many execs. */
int srv_exec_register (struct srv_sandbox *sb, int fd);
void srv_exec_unregister (struct srv_sandbox *sb, int fd);
int srv_live_count (struct srv *s);
/* Cut every exec in flight (shutdown). */
void srv_cut_all_execs (struct srv *s);
/* Move a sandbox's end of life (re-arms the supervisor's timer if it is the earliest). */
int srv_sandbox_set_expiry (struct srv_sandbox *sb, int64_t expires_at_ms, struct sbx_err *err);

/* ---- warm pool (pool.c) ---- */
/* Register a pool member (spawned by the pool, not reserved: see pool.c). */
int srv_sandbox_add_pooled (struct srv *s, struct rt_sandbox *rt, int64_t recycle_at_ms,
                            int key, int agent_fd, struct sbx_err *err);
/* A connection to the sandbox's sbx-init for one exec: an idle one (HELLO done) or a new
 * one; and an exec id unused in this sandbox. -1 with err if it cannot be reached. */
int srv_agent_take (struct srv_sandbox *sb, uint32_t *exec_id, struct sbx_err *err);
/* Give a connection back after a finished exec (nothing pending on it); closes it if the
 * sandbox is ending or enough are idle. */
void srv_agent_give (struct srv_sandbox *sb, int fd);
/* Start the refill thread (after srv_recover and srv_super_start). */
int srv_pool_start (struct srv *s, struct sbx_err *err);
/* Stop refilling and destroy every unclaimed member (graceful stop). */
void srv_pool_stop (struct srv *s);
/* At start: destroy the members an earlier sbxd left (their marker in <state>/pool/). */
void srv_pool_recover (struct srv *s);
/* A ready member matching the request (built-in image, its resources, no volumes), claimed
 * (SRV_POOL_CLAIMING, with a reference), or NULL. */
struct srv_sandbox *srv_pool_claim (struct srv *s, const struct srv_create_req *req,
                                    json_t *body);
/* The claimer is done (its DB row is in): with env, the sandbox becomes the caller's with
 * these exec defaults (env and *workdir are taken; marker removed); env NULL gives up and
 * destroys it. 0: live and the caller's (the claim's reference is still held); -1: it
 * died meanwhile or was given up (reference dropped, env and workdir left to the caller). */
int srv_pool_claim_done (struct srv_sandbox *sb, struct srv_env *env, char **workdir);
/* Under srv->lock, from the supervisor: */
void srv_pool_gone_locked (struct srv *s, struct srv_sandbox *sb); /* left the registry */
int srv_pool_evict_locked (struct srv *s);  /* kill one ready member for capacity: 1 if one */
void srv_pool_recycle (struct srv *s, struct srv_sandbox *sb);     /* aged: replace it */
void srv_pool_destroyed (struct srv *s, const char *id); /* remove its marker */
void srv_pool_added_locked (struct srv *s, struct srv_sandbox *sb); /* a new ready member */
void srv_pool_kick_locked (struct srv *s); /* capacity was freed: refill may go on */
/* For metrics: each key with its target, ready members and spawns in flight. */
struct srv_pool_stat {
  struct srv_pool_key key;
  int ready, spawning;
};
int srv_pool_stats (struct srv *s, struct srv_pool_stat *out, int max);
/* Config: --pool-size, "pool" keys. */
int srv_config_pool_key (struct srv_config *c, const char *key, json_t *v, struct sbx_err *err);

/* ---- metrics (metrics.c): GET /metrics, Prometheus text ---- */
enum srv_metric_src { SRV_M_COLD = 0, SRV_M_POOL = 1 };
void srv_metrics_create (int source, int64_t ns);      /* a successful create */
void srv_metrics_pool_miss (void);                      /* a pool key matched, none ready */
void srv_metrics_exec (int64_t ns, uint64_t out_bytes); /* a plain exec answered */
void srv_metrics_reply (enum srv_route route, unsigned status, json_t *body);
void srv_metrics_streamed (uint64_t n);                  /* bytes of a streamed response */
void srv_metrics_exec_output (uint64_t n);               /* output bytes of a plain exec */
void srv_h_metrics (struct srv *s, struct srv_reply *r);
/* ---- handlers (h_sandbox.c, h_exec.c) ---- */
void srv_h_create (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_exec (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_status (struct srv *s, json_t *body, struct srv_reply *r);
void srv_h_terminate (struct srv *s, json_t *body, struct srv_reply *r);
/* GET /sandbox/list?status=&limit=&after= (query values as given, NULL when absent). */
void srv_h_list (struct srv *s, const char *status, const char *limit, const char *after,
                 struct srv_reply *r);
void srv_h_health (struct srv *s, struct srv_reply *r);
/* h_money.c: GET /pricing (free) and GET /usage (the caller's charges). */
void srv_h_pricing (struct srv *s, struct srv_reply *r);
void srv_h_usage (struct srv *s, const char *limit, struct srv_reply *r);

/* ---- money hooks (auth.c; http.c calls them around every dispatch) ---- */
struct srv_req {
  const char *method, *url, *host;
  const char *authorization;  /* Authorization header, or NULL */
  const char *payment_v2;     /* PAYMENT-SIGNATURE */
  const char *payment_v1;     /* X-PAYMENT */
  const char *body;
  size_t len;
  enum srv_route route;
};
struct srv_charge;
/* Authenticate the caller and charge the request's price (reserve a balance, or verify and
 * record an x402 payment). 1: run the operation; 0: *r is the answer (401, 402, 404, or a
 * stored answer to a re-sent payment). *out is always set; pass it to srv_money_after. */
int srv_money_before (struct srv *s, const struct srv_req *q, struct srv_charge **out,
                      struct srv_reply *r);
/* After the operation: charge or refund by r->status, settle x402 payments, add receipt
 * headers; may turn *r into a 402 (settlement failed). Frees ch. */
void srv_money_after (struct srv *s, struct srv_charge *ch, struct srv_reply *r);
/* The caller of the request this thread is serving ("local" when auth is off), and the
 * ledger seq that pays for it (0: none), for handlers that record them (create, list). */
const char *srv_req_owner (void);
int64_t srv_req_charge_ref (void);
/* auth_config.c: flags and config keys of the money settings. */
int srv_config_set_auth (struct srv_config *c, const char *s, struct sbx_err *err);
int srv_config_set_pay_to (struct srv_config *c, const char *s, struct sbx_err *err);
int srv_config_set_network (struct srv_config *c, const char *s, struct sbx_err *err);
int srv_config_set_facilitator (struct srv_config *c, const char *s, struct sbx_err *err);
/* A money key of the config file: 1 handled, 0 not a money key, -1 bad value. */
int srv_config_money_key (struct srv_config *c, const char *key, json_t *v, struct sbx_err *err);
/* Consistency once everything is read (x402 needs a pay-to address). */
int srv_config_money_check (const struct srv_config *c, struct sbx_err *err);
/* Decide charges a crash left reserved (at start, before serving). */
int srv_money_recover (struct srv *s, struct sbx_err *err);
/* The error for a sandbox that is not live: 404, 410 or 408 from the store record. */
void srv_reply_not_live (struct srv *s, const char *id, struct srv_reply *r);
json_t *srv_sandbox_json (const struct store_sandbox *rec);
json_t *srv_time_json (int64_t ms); /* RFC 3339 UTC string */

/* ---- HTTP (http.c) ---- */
struct srv_http;
int srv_http_start (struct srv *s, struct srv_http **out, struct sbx_err *err);
void srv_http_stop (struct srv_http *h);

/* ---- working inside a sandbox (issue 6): h_inside.c, h_files.c, stream.c, agentc.c ---- */
/* "/sandbox/{id}/files" and "/sandbox/{id}/archive" (after the prefix): GET and PUT. */
enum srv_route srv_route_match_id (const char *rest, const char **allow);
/* Is method one of the comma-separated allow list ("GET, PUT")? */
int srv_method_allowed (const char *method, const char *allow);
/* POST routes SRV_R_INSIDE_FIRST..LAST with a JSON body. */
void srv_h_inside (struct srv *s, enum srv_route route, json_t *body, struct srv_reply *r);
/* exec with stream / background / pty / exec_id (srv_h_exec hands these over). */
int srv_exec_is_inside (json_t *body);
void srv_h_exec_inside (struct srv *s, json_t *body, struct srv_reply *r);
/* GET /sandbox/{id}/files|archive?path=... */
void srv_h_raw_get (struct srv *s, enum srv_route route, const char *url, const char *path,
                    struct srv_reply *r);
/* PUT /sandbox/{id}/files|archive?path=...: begun at the headers (-1: *r is the answer),
 * fed as the body arrives, and made effective by end (after authentication) - a body
 * that is not ended (error, disconnect, refused payment) leaves nothing behind. */
struct srv_upload;
int srv_upload_begin (struct srv *s, enum srv_route route, const char *url, const char *path,
                      const char *mode, struct srv_upload **out, struct srv_reply *r);
void srv_upload_chunk (struct srv_upload *u, const char *p, size_t n);
void srv_upload_end (struct srv_upload *u, struct srv_reply *r);
void srv_upload_free (struct srv_upload *u);
/* Streamed responses (MHD response from a callback; connection is a struct MHD_Connection). */
struct MHD_Connection;
int srv_stream_queue (struct MHD_Connection *c, struct srv_reply *r, const char *method,
                      const char *url, int64_t start_ns, int cors);
void srv_stream_free (struct srv_stream *st);
/* h_exec.c: the command's whole environment (defaults, sandbox env, exec env). */
char **srv_exec_build_env (const struct srv_sandbox *sb, const struct srv_env *exec_env,
                           const char *term, size_t *n);
void srv_strv_free (char **v);
