/* Opening the database, connection settings and schema migrations. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Each entry migrates from version i to i+1; never edit a released entry, append. */
static const char *const migrations[] = {
  /* 0 -> 1 */
  "CREATE TABLE sandboxes ("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  status TEXT NOT NULL CHECK (status IN ('running', 'terminated')),"
  "  image TEXT NOT NULL,"
  "  created_at INTEGER NOT NULL,"
  "  expires_at INTEGER NOT NULL,"
  "  timeout INTEGER NOT NULL,"
  "  cpu_millis INTEGER NOT NULL,"
  "  memory_mb INTEGER NOT NULL,"
  "  env TEXT,"
  "  workdir TEXT,"
  "  commands_executed INTEGER NOT NULL DEFAULT 0,"
  "  terminated_at INTEGER,"
  "  reason TEXT"
  ");"
  "CREATE INDEX sandboxes_status ON sandboxes (status);"
  "CREATE TABLE execs ("
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,"
  "  argv TEXT NOT NULL,"
  "  exit_code INTEGER,"
  "  timed_out INTEGER NOT NULL DEFAULT 0,"
  "  truncated INTEGER NOT NULL DEFAULT 0,"
  "  started_at INTEGER NOT NULL,"
  "  duration_ms INTEGER NOT NULL,"
  "  stdout_bytes INTEGER NOT NULL,"
  "  stderr_bytes INTEGER NOT NULL,"
  "  error TEXT"
  ");"
  "CREATE INDEX execs_sandbox ON execs (sandbox_id);",
  /* 1 -> 2: money (issue 4). Sandboxes get an owner ('local', 'acct:<id>', 'x402:0x<addr>')
   * and the ledger row that paid for them; accounts with prepaid balances, API keys (only
   * their keccak-256 is kept), the ledger of charges, and x402 payments keyed by
   * (payer, nonce) so an authorization can never pay twice. See store_money.h. */
  "ALTER TABLE sandboxes ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';"
  "ALTER TABLE sandboxes ADD COLUMN charge_ref INTEGER;"
  "CREATE INDEX sandboxes_owner ON sandboxes (owner, status);"
  "CREATE TABLE accounts ("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),"
  "  created_at INTEGER NOT NULL"
  ");"
  "CREATE TABLE api_keys ("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  account_id TEXT NOT NULL REFERENCES accounts (id),"
  "  hash BLOB NOT NULL,"
  "  created_at INTEGER NOT NULL,"
  "  revoked_at INTEGER"
  ");"
  "CREATE TABLE charges ("
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  owner TEXT NOT NULL,"
  "  method TEXT NOT NULL CHECK (method IN ('api_key', 'x402')),"
  "  account_id TEXT REFERENCES accounts (id),"
  "  op TEXT NOT NULL,"
  "  sandbox_id TEXT,"
  "  amount INTEGER NOT NULL CHECK (amount >= 0),"
  "  ref TEXT NOT NULL,"
  "  state TEXT NOT NULL CHECK (state IN ('reserved', 'charged', 'refunded')),"
  "  created_at INTEGER NOT NULL,"
  "  updated_at INTEGER NOT NULL"
  ");"
  "CREATE INDEX charges_owner ON charges (owner, seq);"
  "CREATE INDEX charges_state ON charges (state);"
  "CREATE TABLE payments ("
  "  payer TEXT NOT NULL,"
  "  nonce TEXT NOT NULL,"
  "  version INTEGER NOT NULL,"
  "  request_hash TEXT NOT NULL,"
  "  op TEXT NOT NULL,"
  "  amount INTEGER NOT NULL,"
  "  valid_before INTEGER NOT NULL,"
  "  state TEXT NOT NULL CHECK (state IN ('pending', 'done')),"
  "  charge_seq INTEGER NOT NULL REFERENCES charges (seq),"
  "  sandbox_id TEXT,"
  "  facilitator_body TEXT NOT NULL,"
  "  status INTEGER,"
  "  response TEXT,"
  "  receipt TEXT,"
  "  settlement TEXT CHECK (settlement IN ('queued', 'settling', 'settled', 'failed')),"
  "  tx_hash TEXT,"
  "  settle_error TEXT,"
  "  created_at INTEGER NOT NULL,"
  "  updated_at INTEGER NOT NULL,"
  "  PRIMARY KEY (payer, nonce)"
  ");"
  "CREATE INDEX payments_settlement ON payments (settlement);",
  /* 2 -> 3: images (issue 5). An image is a base (a built-in image's name) plus a chain
   * of layer ids (JSON array, bottom first); layers records each layer's disk use;
   * volumes are named ext4 images; sandbox_volumes says which sandbox mounts which. See
   * store_images.h. */
  "CREATE TABLE images ("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  kind TEXT NOT NULL CHECK (kind IN ('build', 'snapshot')),"
  "  status TEXT NOT NULL CHECK (status IN ('building', 'ready', 'failed')),"
  "  base TEXT NOT NULL,"
  "  layers TEXT NOT NULL DEFAULT '[]',"
  "  env TEXT,"
  "  workdir TEXT,"
  "  parent TEXT,"
  "  spec TEXT,"
  "  error TEXT,"
  "  created_at INTEGER NOT NULL,"
  "  updated_at INTEGER NOT NULL"
  ");"
  "CREATE INDEX images_parent ON images (parent);"
  "CREATE TABLE layers ("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  bytes INTEGER NOT NULL,"
  "  created_at INTEGER NOT NULL"
  ");"
  "CREATE TABLE volumes ("
  "  name TEXT PRIMARY KEY NOT NULL,"
  "  size_mb INTEGER NOT NULL,"
  "  created_at INTEGER NOT NULL"
  ");"
  "CREATE TABLE sandbox_volumes ("
  "  sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,"
  "  volume TEXT NOT NULL REFERENCES volumes (name),"
  "  target TEXT NOT NULL,"
  "  PRIMARY KEY (sandbox_id, target)"
  ");"
  "CREATE INDEX sandbox_volumes_volume ON sandbox_volumes (volume);",
};
_Static_assert (sizeof migrations / sizeof migrations[0] == STORE_SCHEMA_VERSION,
                "one migration per schema version");

/* Open stores, so that a statement can be found in its store's cache from the statement
 * alone (cleanup_stmt has nothing else). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *open_stores;

static struct store_stmt *
cached_entry (sqlite3_stmt *s)
{
  sqlite3 *db = sqlite3_db_handle (s);
  struct store_stmt *hit = NULL;
  pthread_mutex_lock (&open_lock);
  for (struct store *st = open_stores; st && !hit; st = st->next_open)
    if (st->db == db)
      for (size_t i = 0; i < st->nstmts; i++)
        if (st->stmts[i].s == s)
          {
            hit = &st->stmts[i];
            break;
          }
  pthread_mutex_unlock (&open_lock);
  return hit;
}

void
store_finalizep (sqlite3_stmt **s)
{
  if (!*s)
    return;
  struct store_stmt *e = cached_entry (*s);
  if (e)
    {
      sqlite3_reset (*s); /* ends its read, keeps it compiled */
      sqlite3_clear_bindings (*s);
      e->in_use = 0;
    }
  else
    sqlite3_finalize (*s);
  *s = NULL;
}

int
store_db_err (struct store *st, struct sbx_err *err, const char *what)
{
  return sbx_err_set (err, SBX_E_INTERNAL, 0, "%s: %s", what, sqlite3_errmsg (st->db));
}

int
store_prepare (struct store *st, const char *sql, sqlite3_stmt **out, struct sbx_err *err)
{
  for (size_t i = 0; i < st->nstmts; i++)
    if (!strcmp (st->stmts[i].sql, sql))
      {
        if (st->stmts[i].in_use)
          break; /* the same query twice at once: the second gets its own statement */
        st->stmts[i].in_use = 1;
        *out = st->stmts[i].s;
        return 0;
      }
  int cache = st->nstmts < STORE_STMT_CACHE;
  if (sqlite3_prepare_v3 (st->db, sql, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, out, NULL)
      != SQLITE_OK)
    return store_db_err (st, err, "prepare statement");
  if (cache)
    {
      for (size_t i = 0; i < st->nstmts; i++)
        if (!strcmp (st->stmts[i].sql, sql))
          return 0; /* in use: this copy stays uncached and is finalized after use */
      pthread_mutex_lock (&open_lock); /* cached_entry reads the array */
      st->stmts[st->nstmts++] = (struct store_stmt){ .sql = sql, .s = *out, .in_use = 1 };
      pthread_mutex_unlock (&open_lock);
    }
  return 0;
}

int
store_rows_collect (struct store *st, sqlite3_stmt *s, size_t size, store_row_fn row,
                    void **list, size_t *len, const char *what, struct sbx_err *err)
{
  size_t cap = *len;
  int r;
  while ((r = sqlite3_step (s)) == SQLITE_ROW)
    {
      if (*len == cap)
        {
          size_t ncap = cap ? cap * 2 : 16;
          void *nl = realloc (*list, ncap * size);
          if (!nl)
            return sbx_err_sys (err, "%s", what);
          *list = nl;
          cap = ncap;
        }
      if (row (s, (char *) *list + *len * size, err) < 0)
        return -1;
      (*len)++;
    }
  if (r != SQLITE_DONE)
    return store_db_err (st, err, what);
  return 0;
}

int
store_exec_sql (struct store *st, const char *sql, struct sbx_err *err)
{
  char *msg = NULL;
  if (sqlite3_exec (st->db, sql, NULL, NULL, &msg) != SQLITE_OK)
    {
      sbx_err_set (err, SBX_E_INTERNAL, 0, "sql: %s", msg ? msg : "unknown error");
      sqlite3_free (msg);
      return -1;
    }
  return 0;
}

static int
pragma_int (struct store *st, const char *sql, int *out, struct sbx_err *err)
{
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_one_locked (st, sql, NULL, 0, &s, sql, err) < 0)
    return -1;
  *out = sqlite3_column_int (s, 0);
  return 0;
}

int
store_schema_version (struct store *st)
{
  int v = -1;
  cleanup_store_unlock struct store *locked = store_lock (st);
  pragma_int (st, "PRAGMA user_version", &v, NULL);
  return v;
}

static int
migrate (struct store *st, struct sbx_err *err)
{
  int now;
  if (pragma_int (st, "PRAGMA user_version", &now, err) < 0)
    return -1;
  if (now == STORE_SCHEMA_VERSION)
    return 0; /* the usual case: no write lock taken */
  for (;;)
    {
      /* The version is read inside the write transaction: another process opening the
       * same new database at the same time (sbxd, sbx admin, sbx run) may have migrated
       * it since we looked, and a migration run twice fails ("table ... already exists"). */
      int v;
      if (store_exec_sql (st, "BEGIN IMMEDIATE", err) < 0)
        return -1;
      if (pragma_int (st, "PRAGMA user_version", &v, err) < 0)
        {
          store_exec_sql (st, "ROLLBACK", NULL);
          return -1;
        }
      if (v >= STORE_SCHEMA_VERSION)
        {
          store_exec_sql (st, "ROLLBACK", NULL);
          if (v > STORE_SCHEMA_VERSION)
            return sbx_err_set (err, SBX_E_INTERNAL, 0,
                                "database schema version %d is newer than this sbxd (%d)", v,
                                STORE_SCHEMA_VERSION);
          return 0;
        }
      char bump[64];
      snprintf (bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
      if (store_exec_sql (st, migrations[v], err) < 0 || store_exec_sql (st, bump, err) < 0)
        {
          store_exec_sql (st, "ROLLBACK", NULL);
          return sbx_err_wrap (err, "migrate schema to version %d", v + 1);
        }
      if (store_exec_sql (st, "COMMIT", err) < 0)
        return -1;
    }
}

int
store_open (const char *path, struct store **out, struct sbx_err *err)
{
  struct store *st = calloc (1, sizeof *st);
  if (!st)
    return sbx_err_sys (err, "allocate store");
  pthread_mutex_init (&st->lock, NULL);
  /* registered before the first statement (migrations prepare some) */
  pthread_mutex_lock (&open_lock);
  st->next_open = open_stores;
  open_stores = st;
  pthread_mutex_unlock (&open_lock);
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
              | SQLITE_OPEN_NOFOLLOW;
  if (sqlite3_open_v2 (path, &st->db, flags, NULL) != SQLITE_OK)
    {
      sbx_err_set (err, SBX_E_INTERNAL, 0, "open database '%s': %s", path,
                   st->db ? sqlite3_errmsg (st->db) : "out of memory");
      store_close (st);
      return -1;
    }
  sqlite3_busy_timeout (st->db, 5000);
  sqlite3_extended_result_codes (st->db, 1);
  if (store_exec_sql (st, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                          "PRAGMA foreign_keys = ON;", err) < 0
      || migrate (st, err) < 0)
    {
      sbx_err_wrap (err, "database '%s'", path);
      store_close (st);
      return -1;
    }
  *out = st;
  return 0;
}

void
store_close (struct store *st)
{
  if (!st)
    return;
  pthread_mutex_lock (&open_lock);
  for (struct store **p = &open_stores; *p; p = &(*p)->next_open)
    if (*p == st)
      {
        *p = st->next_open;
        break;
      }
  pthread_mutex_unlock (&open_lock);
  for (size_t i = 0; i < st->nstmts; i++)
    sqlite3_finalize (st->stmts[i].s);
  if (st->db)
    sqlite3_close (st->db);
  pthread_mutex_destroy (&st->lock);
  free (st);
}

const char *
store_status_name (int status)
{
  return status == STORE_TERMINATED ? "terminated" : "running";
}
