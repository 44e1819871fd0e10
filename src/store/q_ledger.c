/* The ledger: one row per charge, reserved before the operation and then charged or
 * refunded; API-key reservations take the balance in the same transaction. */
#include "money_internal.h"

#include <stdio.h>
#include <string.h>

static const char *const state_names[] = { "reserved", "charged", "refunded" };

const char *
store_charge_state_name (int state)
{
  return state >= 0 && state < 3 ? state_names[state] : "unknown";
}

static int
state_parse (const unsigned char *t)
{
  for (int i = 0; t && i < 3; i++)
    if (!strcmp ((const char *) t, state_names[i]))
      return i;
  return -1;
}

/* Transactions: the caller holds st->lock. Money commits are synced to disk (the rest of
 * the store runs with synchronous = NORMAL, which survives kill -9 but may lose the last
 * commits on power loss: a recorded (payer, nonce) must not be among them). */
int
store_tx_begin (struct store *st, struct sbx_err *err)
{
  if (store_exec_sql (st, "PRAGMA synchronous = FULL; BEGIN IMMEDIATE", err) == 0)
    return 0;
  store_exec_sql (st, "PRAGMA synchronous = NORMAL", NULL);
  return -1;
}

int
store_tx_end (struct store *st, int ok, struct sbx_err *err)
{
  int rc = 0;
  if (!ok || store_exec_sql (st, "COMMIT", err) < 0)
    {
      store_exec_sql (st, "ROLLBACK", NULL);
      rc = -1;
    }
  store_exec_sql (st, "PRAGMA synchronous = NORMAL", NULL);
  return rc;
}

int
store_charge_reserve_account (struct store *st, const char *account_id, const char *owner,
                              const char *op, int64_t amount, const char *ref, int64_t now_ms,
                              int64_t *seq, struct sbx_err *err)
{
  static const char take[]
      = "UPDATE accounts SET balance = balance - ?2 WHERE id = ?1 AND balance >= ?2";
  static const char ins[]
      = "INSERT INTO charges (owner, method, account_id, op, amount, ref, state, created_at,"
        " updated_at) VALUES (?1, 'api_key', ?2, ?3, ?4, ?5, 'reserved', ?6, ?6)";
  int rc = -1, ok = 0;
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) < 0)
    goto out;
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    cleanup_stmt sqlite3_stmt *i = NULL;
    if (store_prepare (st, take, &s, err) < 0 || store_prepare (st, ins, &i, err) < 0)
      goto end;
    sqlite3_bind_text (s, 1, account_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (s, 2, amount);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "reserve");
        goto end;
      }
    if (sqlite3_changes (st->db) == 0)
      {
        rc = 0; /* cannot pay: nothing written */
        goto end;
      }
    sqlite3_bind_text (i, 1, owner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (i, 2, account_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (i, 3, op, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (i, 4, amount);
    sqlite3_bind_text (i, 5, ref, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (i, 6, now_ms);
    if (sqlite3_step (i) != SQLITE_DONE)
      {
        store_db_err (st, err, "reserve");
        goto end;
      }
    *seq = sqlite3_last_insert_rowid (st->db);
    ok = 1;
  }
end:
  if (store_tx_end (st, ok, err) == 0)
    rc = 1;
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_charge_move_locked (struct store *st, int64_t seq, int to, const char *sandbox_id,
                          int64_t now_ms, struct sbx_err *err)
{
  static const char upd[]
      = "UPDATE charges SET state = ?2, updated_at = ?3, sandbox_id = coalesce(?4, sandbox_id)"
        " WHERE seq = ?1 AND state = 'reserved' RETURNING method, account_id, amount";
  static const char back[] = "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1";
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_prepare (st, upd, &s, err) < 0)
    return -1;
  sqlite3_bind_int64 (s, 1, seq);
  sqlite3_bind_text (s, 2, store_charge_state_name (to), -1, SQLITE_STATIC);
  sqlite3_bind_int64 (s, 3, now_ms);
  if (sandbox_id && *sandbox_id)
    sqlite3_bind_text (s, 4, sandbox_id, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step (s);
  if (r == SQLITE_DONE)
    return 0;
  if (r != SQLITE_ROW)
    return store_db_err (st, err, "update charge");
  int refund_account = to == STORE_CHARGE_REFUNDED
                       && !strcmp ((const char *) sqlite3_column_text (s, 0), "api_key")
                       && sqlite3_column_type (s, 1) != SQLITE_NULL;
  char account[STORE_ACCOUNT_MAX] = "";
  if (refund_account)
    snprintf (account, sizeof account, "%s", (const char *) sqlite3_column_text (s, 1));
  int64_t amount = sqlite3_column_int64 (s, 2);
  if (sqlite3_step (s) != SQLITE_DONE)
    return store_db_err (st, err, "update charge");
  if (refund_account)
    {
      cleanup_stmt sqlite3_stmt *b = NULL;
      if (store_prepare (st, back, &b, err) < 0)
        return -1;
      sqlite3_bind_text (b, 1, account, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64 (b, 2, amount);
      if (sqlite3_step (b) != SQLITE_DONE)
        return store_db_err (st, err, "refund");
    }
  return 1;
}

static int
move (struct store *st, int64_t seq, int to, const char *sandbox_id, int64_t now_ms,
      struct sbx_err *err)
{
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) == 0)
    {
      int r = store_charge_move_locked (st, seq, to, sandbox_id, now_ms, err);
      if (store_tx_end (st, r >= 0, err) == 0)
        rc = r;
    }
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_charge_finish (struct store *st, int64_t seq, const char *sandbox_id, int64_t now_ms,
                     struct sbx_err *err)
{
  return move (st, seq, STORE_CHARGE_CHARGED, sandbox_id, now_ms, err);
}

int
store_charge_refund (struct store *st, int64_t seq, int64_t now_ms, struct sbx_err *err)
{
  return move (st, seq, STORE_CHARGE_REFUNDED, NULL, now_ms, err);
}

#define CHARGE_COLS                                                                               \
  "seq, owner, method, account_id, op, sandbox_id, amount, ref, state, created_at, updated_at"

static void
copy_text (sqlite3_stmt *s, int i, char *dst, size_t cap)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  snprintf (dst, cap, "%s", t ? (const char *) t : "");
}

static void
row_to_charge (sqlite3_stmt *s, struct store_charge *c)
{
  memset (c, 0, sizeof *c);
  c->seq = sqlite3_column_int64 (s, 0);
  copy_text (s, 1, c->owner, sizeof c->owner);
  copy_text (s, 2, c->method, sizeof c->method);
  copy_text (s, 3, c->account_id, sizeof c->account_id);
  copy_text (s, 4, c->op, sizeof c->op);
  copy_text (s, 5, c->sandbox_id, sizeof c->sandbox_id);
  c->amount = sqlite3_column_int64 (s, 6);
  copy_text (s, 7, c->ref, sizeof c->ref);
  c->state = state_parse (sqlite3_column_text (s, 8));
  c->created_at_ms = sqlite3_column_int64 (s, 9);
  c->updated_at_ms = sqlite3_column_int64 (s, 10);
}

/* row_to_charge as a store_row_fn. */
static int
charge_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  row_to_charge (s, elem);
  return 0;
}

int
store_charge_get (struct store *st, int64_t seq, struct store_charge *out, struct sbx_err *err)
{
  static const char sql[] = "SELECT " CHARGE_COLS " FROM charges WHERE seq = ?1";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_int64 (s, 1, seq);
    int r = sqlite3_step (s);
    if (r == SQLITE_DONE)
      sbx_err_set (err, SBX_E_NOT_FOUND, 0, "charge %lld not found", (long long) seq);
    else if (r != SQLITE_ROW)
      store_db_err (st, err, "get charge");
    else
      {
        row_to_charge (s, out);
        rc = 0;
      }
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_charge_list (struct store *st, const char *owner, int limit, struct store_charge **out,
                   size_t *n, struct sbx_err *err)
{
  static const char sql[] = "SELECT " CHARGE_COLS " FROM charges WHERE ?1 IS NULL OR owner = ?1"
                            " ORDER BY seq DESC LIMIT ?2";
  struct store_charge *list = NULL;
  size_t len = 0;
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    if (owner)
      sqlite3_bind_text (s, 1, owner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int (s, 2, limit);
    void *rows = NULL;
    rc = store_rows_collect (st, s, sizeof *list, charge_row, &rows, &len, "list charges", err);
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
store_charge_totals (struct store *st, const char *owner, int64_t *amount, int64_t *count,
                     struct sbx_err *err)
{
  static const char sql[] = "SELECT coalesce(sum(amount), 0), count(*) FROM charges"
                            " WHERE owner = ?1 AND state = 'charged'";
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    sqlite3_bind_text (s, 1, owner, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_ROW)
      store_db_err (st, err, "charge totals");
    else
      {
        *amount = sqlite3_column_int64 (s, 0);
        *count = sqlite3_column_int64 (s, 1);
        rc = 0;
      }
  }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_charge_recover (struct store *st, int64_t now_ms, int *charged, int *refunded,
                      struct sbx_err *err)
{
  /* Creates that got as far as recording their sandbox, and whose sandbox ran (it is
   * running, re-adopted, or its lifetime ended while sbxd was down), are charged; the x402
   * payment of such a create becomes done with a minimal stored answer. A sandbox that
   * the restart found gone ("lost") never served its caller: refunded. */
  static const char find[]
      = "SELECT c.seq, (SELECT s.id FROM sandboxes s WHERE s.charge_ref = c.seq AND"
        " (s.status = 'running' OR s.reason = 'timeout') LIMIT 1)"
        " FROM charges c WHERE c.state = 'reserved' ORDER BY c.seq";
  static const char pay_done[]
      = "UPDATE payments SET state = 'done', sandbox_id = ?2, status = 200,"
        " response = json_object('sandbox_id', ?2, 'status', 'running', 'recovered', json('true')),"
        " settlement = 'queued', updated_at = ?3 WHERE charge_seq = ?1 AND state = 'pending'";
  static const char pay_del[] = "DELETE FROM payments WHERE charge_seq = ?1 AND state = 'pending'";
  static const char requeue[] = "UPDATE payments SET settlement = 'queued', updated_at = ?1"
                                " WHERE settlement = 'settling'";
  int rc = -1, ok = 0, nc = 0, nr = 0;
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) < 0)
    goto out;
  {
    cleanup_stmt sqlite3_stmt *f = NULL;
    cleanup_stmt sqlite3_stmt *pd = NULL;
    cleanup_stmt sqlite3_stmt *px = NULL;
    cleanup_stmt sqlite3_stmt *rq = NULL;
    if (store_prepare (st, find, &f, err) < 0 || store_prepare (st, pay_done, &pd, err) < 0
        || store_prepare (st, pay_del, &px, err) < 0 || store_prepare (st, requeue, &rq, err) < 0)
      goto end;
    /* Collect first: the updates below must not run under an open SELECT on the table. */
    struct { int64_t seq; char sb[SBX_ID_MAX]; } *v = NULL;
    size_t len = 0, cap = 0;
    int r;
    while ((r = sqlite3_step (f)) == SQLITE_ROW)
      {
        if (len == cap)
          {
            cap = cap ? cap * 2 : 16;
            void *nv = realloc (v, cap * sizeof *v);
            if (!nv)
              {
                free (v);
                sbx_err_sys (err, "recover charges");
                goto end;
              }
            v = nv;
          }
        v[len].seq = sqlite3_column_int64 (f, 0);
        copy_text (f, 1, v[len].sb, sizeof v[len].sb);
        len++;
      }
    if (r != SQLITE_DONE)
      {
        free (v);
        store_db_err (st, err, "recover charges");
        goto end;
      }
    for (size_t i = 0; i < len; i++)
      {
        int have_sb = v[i].sb[0] != '\0';
        if (store_charge_move_locked (st, v[i].seq,
                                      have_sb ? STORE_CHARGE_CHARGED : STORE_CHARGE_REFUNDED,
                                      have_sb ? v[i].sb : NULL, now_ms, err) < 0)
          {
            free (v);
            goto end;
          }
        sqlite3_stmt *p = have_sb ? pd : px;
        sqlite3_reset (p);
        sqlite3_bind_int64 (p, 1, v[i].seq);
        if (have_sb)
          {
            sqlite3_bind_text (p, 2, v[i].sb, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64 (p, 3, now_ms);
          }
        if (sqlite3_step (p) != SQLITE_DONE)
          {
            free (v);
            store_db_err (st, err, "recover payment");
            goto end;
          }
        if (have_sb)
          nc++;
        else
          nr++;
      }
    free (v);
    sqlite3_bind_int64 (rq, 1, now_ms);
    if (sqlite3_step (rq) != SQLITE_DONE)
      {
        store_db_err (st, err, "requeue settlements");
        goto end;
      }
    ok = 1;
  }
end:
  if (store_tx_end (st, ok, err) == 0)
    {
      rc = 0;
      if (charged)
        *charged = nc;
      if (refunded)
        *refunded = nr;
    }
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}
