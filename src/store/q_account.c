/* Accounts (prepaid balances), API keys (only a hash is stored) and sandbox owners. */
#include "internal.h"
#include "store_money.h"

#include <stdio.h>
#include <string.h>

int
store_account_id_valid (const char *id)
{
  size_t n = strlen (id);
  if (n == 0 || n >= STORE_ACCOUNT_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    {
      char c = id[i];
      int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      if (!alnum && (i == 0 || (c != '_' && c != '-' && c != '.')))
        return 0;
    }
  return 1;
}

int
store_account_create (struct store *st, const char *id, int64_t balance, int64_t now_ms,
                      struct sbx_err *err)
{
  if (!store_account_id_valid (id))
    return sbx_err_set (err, SBX_E_INVALID, 0,
                        "account id must be 1-63 of a-z 0-9 _ . - (starting with a-z 0-9)");
  if (balance < 0)
    return sbx_err_set (err, SBX_E_INVALID, 0, "balance must not be negative");
  static const char sql[] = "INSERT INTO accounts (id, balance, created_at) VALUES (?1, ?2, ?3)";
  const struct store_val v[] = { store_text (id), store_int (balance), store_int (now_ms) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_run_locked (st, sql, v, STORE_NVALS (v), "create account", err) >= 0)
    return 0;
  if (sqlite3_extended_errcode (st->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
    return sbx_err_set (err, SBX_E_INVALID, 0, "account '%s' exists already", id);
  return -1;
}

static int
account_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  struct store_account *a = elem;
  memset (a, 0, sizeof *a);
  snprintf (a->id, sizeof a->id, "%s", (const char *) sqlite3_column_text (s, 0));
  a->balance = sqlite3_column_int64 (s, 1);
  a->created_at_ms = sqlite3_column_int64 (s, 2);
  a->keys_active = sqlite3_column_int (s, 3);
  return 0;
}

int
store_account_get (struct store *st, const char *id, struct store_account *out,
                   struct sbx_err *err)
{
  static const char sql[]
      = "SELECT id, balance, created_at, (SELECT count(*) FROM api_keys k WHERE"
        " k.account_id = a.id AND k.revoked_at IS NULL) FROM accounts a WHERE id = ?1";
  const struct store_val v[] = { store_text (id) };
  int r = store_get (st, sql, v, 1, account_row, out, "get account", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "account '%s' not found", id);
  return r < 0 ? -1 : 0;
}

static int
int64_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  *(int64_t *) elem = sqlite3_column_int64 (s, 0);
  return 0;
}

int
store_account_topup (struct store *st, const char *id, int64_t amount, int64_t *balance,
                     struct sbx_err *err)
{
  if (amount <= 0)
    return sbx_err_set (err, SBX_E_INVALID, 0, "top-up amount must be positive");
  static const char sql[] = "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1"
                            " RETURNING balance";
  const struct store_val v[] = { store_text (id), store_int (amount) };
  int64_t b = 0;
  int r = store_get (st, sql, v, STORE_NVALS (v), int64_row, &b, "top up", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "account '%s' not found", id);
  if (r < 0)
    return -1;
  if (balance)
    *balance = b;
  return 0;
}

int
store_key_insert (struct store *st, const char *id, const char *account_id,
                  const uint8_t hash[32], int64_t now_ms, struct sbx_err *err)
{
  static const char sql[] = "INSERT INTO api_keys (id, account_id, hash, created_at)"
                            " VALUES (?1, ?2, ?3, ?4)";
  const struct store_val v[] = { store_text (id), store_text (account_id), store_blob (hash, 32),
                                 store_int (now_ms) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_run_locked (st, sql, v, STORE_NVALS (v), "insert key", err) >= 0)
    return 0;
  int e = sqlite3_extended_errcode (st->db);
  if (e == SQLITE_CONSTRAINT_FOREIGNKEY)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "account '%s' not found", account_id);
  if (e == SQLITE_CONSTRAINT_PRIMARYKEY)
    return sbx_err_set (err, SBX_E_INVALID, 0, "key id '%s' exists already", id);
  return -1;
}

static void
row_to_key (sqlite3_stmt *s, struct store_key *k)
{
  memset (k, 0, sizeof *k);
  snprintf (k->id, sizeof k->id, "%s", (const char *) sqlite3_column_text (s, 0));
  snprintf (k->account_id, sizeof k->account_id, "%s",
            (const char *) sqlite3_column_text (s, 1));
  if (sqlite3_column_bytes (s, 2) == 32)
    memcpy (k->hash, sqlite3_column_blob (s, 2), 32);
  k->created_at_ms = sqlite3_column_int64 (s, 3);
  k->revoked_at_ms = sqlite3_column_int64 (s, 4);
}

/* row_to_key as a store_row_fn. */
static int
key_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  row_to_key (s, elem);
  return 0;
}

#define KEY_COLS "id, account_id, hash, created_at, revoked_at"

int
store_key_get (struct store *st, const char *id, struct store_key *out, struct sbx_err *err)
{
  static const char sql[] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1";
  const struct store_val v[] = { store_text (id) };
  int r = store_get (st, sql, v, 1, key_row, out, "get key", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "key '%s' not found", id);
  return r < 0 ? -1 : 0;
}

int
store_key_list (struct store *st, const char *account, struct store_key **out, size_t *n,
                struct sbx_err *err)
{
  static const char sql[] = "SELECT " KEY_COLS " FROM api_keys WHERE ?1 IS NULL OR"
                            " account_id = ?1 ORDER BY created_at, id";
  const struct store_val v[] = { store_text (account) };
  void *rows = NULL;
  size_t len = 0;
  if (store_list (st, sql, v, 1, sizeof **out, key_row, &rows, &len, "list keys", err) < 0)
    {
      free (rows);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}

int
store_key_revoke (struct store *st, const char *id, int64_t now_ms, struct sbx_err *err)
{
  static const char sql[]
      = "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL";
  struct store_key k;
  if (store_key_get (st, id, &k, err) < 0)
    return -1;
  const struct store_val v[] = { store_text (id), store_int (now_ms) };
  int r = store_run (st, sql, v, STORE_NVALS (v), "revoke key", err);
  return r < 0 ? -1 : r > 0;
}

static int
owner_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  const unsigned char *t = sqlite3_column_text (s, 0);
  snprintf (elem, STORE_OWNER_MAX, "%s", t ? (const char *) t : "local");
  return 0;
}

int
store_sandbox_owner (struct store *st, const char *id, char owner[STORE_OWNER_MAX],
                     struct sbx_err *err)
{
  static const char sql[] = "SELECT owner FROM sandboxes WHERE id = ?1";
  const struct store_val v[] = { store_text (id) };
  int r = store_get (st, sql, v, 1, owner_row, owner, "sandbox owner", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "sandbox '%s' not found", id);
  return r < 0 ? -1 : 0;
}
