/* src/store: sbxd's state in SQLite (WAL, foreign keys, busy timeout) at
 * <state_dir>/sbx.db. Tables: sandboxes (one row per sandbox ever created, kept after it
 * ends so its status and reason stay queryable) and execs (an audit record per command).
 * The schema is versioned with PRAGMA user_version and migrated forward at open.
 * All SQL goes through prepared statements; a store handle is safe to share between
 * threads (one connection behind a mutex). */
#pragma once

#include "../common/common.h"

#include <stdint.h>

#define STORE_SCHEMA_VERSION 3

struct store; /* opaque */

enum store_status {
  STORE_RUNNING = 0,
  STORE_TERMINATED = 1,
};

struct store_sandbox {
  char id[SBX_ID_MAX];
  int status;                /* enum store_status */
  char image[64];
  int64_t created_at_ms;     /* wall clock, ms since the epoch */
  int64_t expires_at_ms;
  int64_t timeout_s;
  uint32_t cpu_millis;       /* 1000 = one vCPU */
  uint64_t memory_mb;
  char *env_json;            /* JSON object of the sandbox's env, or NULL; owned */
  char *workdir;             /* or NULL; owned */
  int64_t commands_executed;
  int64_t terminated_at_ms;  /* 0 while running */
  char reason[128];          /* why it ended; "" while running */
  char owner[96];            /* who may use it: "local", "acct:<id>", "x402:0x<addr>";
                                "" on insert means "local" */
  int64_t charge_ref;        /* ledger seq of the charge that paid for it; 0: none */
};

/* Release the owned strings of a record (the struct itself is the caller's). */
void store_sandbox_clear (struct store_sandbox *s);

struct store_exec {
  const char *sandbox_id;
  const char *argv_json;     /* JSON array of the argv that ran */
  int has_exit_code;         /* 0: no exit code (the sandbox ended under the command) */
  int exit_code;
  int timed_out;
  int truncated;
  int64_t started_at_ms;
  int64_t duration_ms;
  uint64_t stdout_bytes;     /* bytes the program wrote, kept or not */
  uint64_t stderr_bytes;
  const char *error;         /* NULL, or why no exit code */
};

/* Open (creating if needed) the database file and migrate it to STORE_SCHEMA_VERSION.
 * Refuses a database written by a newer schema. */
int store_open (const char *path, struct store **out, struct sbx_err *err);
void store_close (struct store *st);
int store_schema_version (struct store *st);

int store_sandbox_insert (struct store *st, const struct store_sandbox *s, struct sbx_err *err);
/* Exact id match. SBX_E_NOT_FOUND if there is no such row. On success the caller owns
 * out's strings (store_sandbox_clear). */
int store_sandbox_get (struct store *st, const char *id, struct store_sandbox *out,
                       struct sbx_err *err);
/* Remove a sandbox row (and its exec records): for a create that failed before the sandbox
 * ever ran. Deleting a missing row is not an error. */
int store_sandbox_delete (struct store *st, const char *id, struct sbx_err *err);
/* Mark a running sandbox terminated with a reason. Returns 1 if this call changed it, 0 if
 * it was already terminated (the first reason stays), -1 on error (NOT_FOUND if no row). */
int store_sandbox_terminate (struct store *st, const char *id, int64_t at_ms, const char *reason,
                             struct sbx_err *err);
/* All sandboxes (status < 0), or those with the given status, oldest first. *out is an
 * array of *n records; free with store_sandbox_list_free. */
int store_sandbox_list (struct store *st, int status, struct store_sandbox **out, size_t *n,
                        struct sbx_err *err);
void store_sandbox_list_free (struct store_sandbox *list, size_t n);
/* How many sandboxes of owner are running (their rows say "running"). */
int store_sandbox_count_running (struct store *st, const char *owner, int64_t *n,
                                 struct sbx_err *err);
/* Same, only the sandboxes of one owner (owner NULL: everyone's). */
int store_sandbox_list_owned (struct store *st, int status, const char *owner,
                              struct store_sandbox **out, size_t *n, struct sbx_err *err);
/* One page of that list: the sandboxes that come after `after` in its order (NULL: from
 * the first; `after` is looked up among the owner's sandboxes whatever its status, and
 * one not found there gives an empty page), at most limit of them (< 0: all). */
int store_sandbox_page (struct store *st, int status, const char *owner, const char *after,
                        int64_t limit, struct store_sandbox **out, size_t *n,
                        struct sbx_err *err);
/* Record one exec and bump its sandbox's commands_executed, in one transaction. */
int store_exec_record (struct store *st, const struct store_exec *e, struct sbx_err *err);
/* Number of exec records of a sandbox (tests, audit). */
int store_exec_count (struct store *st, const char *sandbox_id, int64_t *n, struct sbx_err *err);

const char *store_status_name (int status); /* "running" / "terminated" */
