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
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, balance);
    sqlite3_bind_int64 (s, 3, now_ms);
    int r = sqlite3_step (s);
    if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
      sbx_err_set (err, SBX_E_INVALID, 0, "account '%s' exists already", id);
    else if (r != SQLITE_DONE)
      store_db_err (st, err, "create account");
    else
      rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_account_get (struct store *st, const char *id, struct store_account *out,
                   struct sbx_err *err)
{
  static const char sql[]
      = "SELECT id, balance, created_at, (SELECT count(*) FROM api_keys k WHERE"
        " k.account_id = a.id AND k.revoked_at IS NULL) FROM accounts a WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "account '%s' not found", id);
    else if (r != SQLITE_ROW)
      store_db_err (st, err, "get account");
    else
      {
        memset (out, 0, sizeof *out);
        snprintf (out->id, sizeof out->id, "%s", (const char *) sqlite3_column_text (s, 0));
        out->balance = sqlite3_column_int64 (s, 1);
        out->created_at_ms = sqlite3_column_int64 (s, 2);
        out->keys_active = sqlite3_column_int (s, 3);
        rc = 0;
      }
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_account_topup (struct store *st, const char *id, int64_t amount, int64_t *balance,
                     struct sbx_err *err)
{
  if (amount <= 0)
    return sbx_err_set (err, SBX_E_INVALID, 0, "top-up amount must be positive");
  static const char sql[] = "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1"
                            " RETURNING balance";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, amount);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "account '%s' not found", id);
    else if (r != SQLITE_ROW)
      store_db_err (st, err, "top up");
    else
      {
        if (balance)
          *balance = sqlite3_column_int64 (s, 0);
        rc = 0;
      }
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_key_insert (struct store *st, const char *id, const char *account_id,
                  const uint8_t hash[32], int64_t now_ms, struct sbx_err *err)
{
  static const char sql[] = "INSERT INTO api_keys (id, account_id, hash, created_at)"
                            " VALUES (?1, ?2, ?3, ?4)";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, account_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob (s, 3, hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 4, now_ms);
    int r = sqlite3_step (s);
    if (r == SQLITE_CONSTRAINT_FOREIGNKEY)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "account '%s' not found", account_id);
    else if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
      sbx_err_set (err, SBX_E_INVALID, 0, "key id '%s' exists already", id);
    else if (r != SQLITE_DONE)
      store_db_err (st, err, "insert key");
    else
      rc = 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
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
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "key '%s' not found", id);
    else if (r != SQLITE_ROW)
      store_db_err (st, err, "get key");
    else
      {
        row_to_key (s, out);
        rc = 0;
      }
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_key_list (struct store *st, const char *account, struct store_key **out, size_t *n,
                struct sbx_err *err)
{
  static const char sql[] = "SELECT " KEY_COLS " FROM api_keys WHERE ?1 IS NULL OR"
                            " account_id = ?1 ORDER BY created_at, id";
  struct store_key *list = NULL;
  size_t len = 0;
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    if (account)
      sqlite3_bind_text (s, 1, account, -1, SQLITE_TRANSIENT);
    void *rows = NULL;
    rc = store_rows_collect (st, s, sizeof *list, key_row, &rows, &len, "list keys", err);
    list = rows;
  }
out:
  pthread_mutex_unlock (&st->lock);
  if (rc < 0)
    {
      free (list);
      return -1;
    }
  *out = list;
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
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, now_ms);
    if (sqlite3_step (s) != SQLITE_DONE)
      store_db_err (st, err, "revoke key");
    else
      rc = sqlite3_changes (st->db) > 0 ? 1 : 0;
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_sandbox_owner (struct store *st, const char *id, char owner[STORE_OWNER_MAX],
                     struct sbx_err *err)
{
  static const char sql[] = "SELECT owner FROM sandboxes WHERE id = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "sandbox '%s' not found", id);
    else if (r != SQLITE_ROW)
      store_db_err (st, err, "sandbox owner");
    else
      {
        const unsigned char *t = sqlite3_column_text (s, 0);
        snprintf (owner, STORE_OWNER_MAX, "%s", t ? (const char *) t : "local");
        rc = 0;
      }
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}
