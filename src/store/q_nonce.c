/* x402 payments keyed by (payer, nonce): recorded with a reserved charge before the
 * operation runs, so one authorization never pays twice; the answer is kept so that a
 * client re-sending the same paid request gets it again instead of a second operation. */
#include "money_internal.h"

#include <stdio.h>
#include <string.h>

void
store_payment_clear (struct store_payment *p)
{
  if (!p)
    return;
  free (p->response);
  free (p->receipt);
  free (p->facilitator_body);
  p->response = p->receipt = p->facilitator_body = NULL;
}

#define PAY_COLS                                                                                  \
  "payer, nonce, version, request_hash, op, amount, valid_before, state, charge_seq,"           \
  " sandbox_id, status, response, receipt, facilitator_body, settlement, tx_hash,"               \
  " settle_error, created_at"

static void
copy_text (sqlite3_stmt *s, int i, char *dst, size_t cap)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  snprintf (dst, cap, "%s", t ? (const char *) t : "");
}

static char *
dup_text (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);
  return t ? strdup ((const char *) t) : NULL;
}

static void
row_to_payment (sqlite3_stmt *s, struct store_payment *p)
{
  memset (p, 0, sizeof *p);
  copy_text (s, 0, p->payer, sizeof p->payer);
  copy_text (s, 1, p->nonce, sizeof p->nonce);
  p->version = sqlite3_column_int (s, 2);
  copy_text (s, 3, p->request_hash, sizeof p->request_hash);
  copy_text (s, 4, p->op, sizeof p->op);
  p->amount = sqlite3_column_int64 (s, 5);
  p->valid_before = sqlite3_column_int64 (s, 6);
  const unsigned char *state = sqlite3_column_text (s, 7);
  p->done = state && !strcmp ((const char *) state, "done");
  p->charge_seq = sqlite3_column_int64 (s, 8);
  copy_text (s, 9, p->sandbox_id, sizeof p->sandbox_id);
  p->status = sqlite3_column_int (s, 10);
  p->response = dup_text (s, 11);
  p->receipt = dup_text (s, 12);
  p->facilitator_body = dup_text (s, 13);
  copy_text (s, 14, p->settlement, sizeof p->settlement);
  copy_text (s, 15, p->tx_hash, sizeof p->tx_hash);
  copy_text (s, 16, p->settle_error, sizeof p->settle_error);
  p->created_at_ms = sqlite3_column_int64 (s, 17);
}

/* row_to_payment as a store_row_fn. */
static int
payment_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  row_to_payment (s, elem);
  return 0;
}

int
store_payment_begin (struct store *st, const struct store_payment *p, const char *owner,
                     int64_t now_ms, int64_t *charge_seq, struct store_payment *existing,
                     struct sbx_err *err)
{
  static const char get[] = "SELECT " PAY_COLS " FROM payments WHERE payer = ?1 AND nonce = ?2";
  static const char charge[]
      = "INSERT INTO charges (owner, method, op, amount, ref, state, created_at, updated_at)"
        " VALUES (?1, 'x402', ?2, ?3, ?4, 'reserved', ?5, ?5)";
  static const char ins[]
      = "INSERT INTO payments (payer, nonce, version, request_hash, op, amount, valid_before,"
        " state, charge_seq, facilitator_body, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?10)";
  int rc = -1, ok = 0, found = 0;
  char ref[160];
  snprintf (ref, sizeof ref, "%s:%s", p->payer, p->nonce);
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) < 0)
    goto out;
  {
    cleanup_stmt sqlite3_stmt *g = NULL;
    cleanup_stmt sqlite3_stmt *c = NULL;
    cleanup_stmt sqlite3_stmt *i = NULL;
    if (store_prepare (st, get, &g, err) < 0 || store_prepare (st, charge, &c, err) < 0
        || store_prepare (st, ins, &i, err) < 0)
      goto end;
    sqlite3_bind_text (g, 1, p->payer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (g, 2, p->nonce, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step (g);
    if (r == SQLITE_ROW)
      {
        row_to_payment (g, existing);
        found = ok = 1;
        goto end;
      }
    if (r != SQLITE_DONE)
      {
        store_db_err (st, err, "payment lookup");
        goto end;
      }
    sqlite3_bind_text (c, 1, owner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (c, 2, p->op, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (c, 3, p->amount);
    sqlite3_bind_text (c, 4, ref, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (c, 5, now_ms);
    if (sqlite3_step (c) != SQLITE_DONE)
      {
        store_db_err (st, err, "reserve payment");
        goto end;
      }
    int64_t seq = sqlite3_last_insert_rowid (st->db);
    sqlite3_bind_text (i, 1, p->payer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (i, 2, p->nonce, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int (i, 3, p->version);
    sqlite3_bind_text (i, 4, p->request_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (i, 5, p->op, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (i, 6, p->amount);
    sqlite3_bind_int64 (i, 7, p->valid_before);
    sqlite3_bind_int64 (i, 8, seq);
    sqlite3_bind_text (i, 9, p->facilitator_body ? p->facilitator_body : "{}", -1,
                       SQLITE_TRANSIENT);
    sqlite3_bind_int64 (i, 10, now_ms);
    if (sqlite3_step (i) != SQLITE_DONE)
      {
        store_db_err (st, err, "record payment");
        goto end;
      }
    *charge_seq = seq;
    ok = 1;
  }
end:
  if (store_tx_end (st, ok && !found, err) == 0)
    rc = 1;
  else if (found)
    rc = 0; /* rolled back on purpose: nothing was written */
  else if (existing)
    store_payment_clear (existing);
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

/* The charge of a payment; with the lock held. 0 if there is no such payment. */
static int64_t
payment_charge (struct store *st, const char *payer, const char *nonce, struct sbx_err *err)
{
  static const char sql[] = "SELECT charge_seq FROM payments WHERE payer = ?1 AND nonce = ?2";
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_prepare (st, sql, &s, err) < 0)
    return -1;
  sqlite3_bind_text (s, 1, payer, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (s, 2, nonce, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step (s);
  if (r == SQLITE_ROW)
    return sqlite3_column_int64 (s, 0);
  if (r == SQLITE_DONE)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "no payment %s:%s", payer, nonce);
  return store_db_err (st, err, "payment charge");
}

static void
bind_opt (sqlite3_stmt *s, int i, const char *v)
{
  if (v)
    sqlite3_bind_text (s, i, v, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null (s, i);
}

int
store_payment_done (struct store *st, const char *payer, const char *nonce,
                    const char *sandbox_id, int status, const char *response,
                    const char *receipt, const char *settlement, int64_t now_ms,
                    struct sbx_err *err)
{
  static const char sql[]
      = "UPDATE payments SET state = 'done', sandbox_id = ?3, status = ?4, response = ?5,"
        " receipt = ?6, settlement = ?7, updated_at = ?8 WHERE payer = ?1 AND nonce = ?2";
  int rc = -1, ok = 0;
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) < 0)
    goto out;
  {
    int64_t seq = payment_charge (st, payer, nonce, err);
    if (seq < 0 || store_charge_move_locked (st, seq, STORE_CHARGE_CHARGED, sandbox_id, now_ms,
                                             err) < 0)
      goto end;
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto end;
    sqlite3_bind_text (s, 1, payer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, nonce, -1, SQLITE_TRANSIENT);
    bind_opt (s, 3, sandbox_id && *sandbox_id ? sandbox_id : NULL);
    sqlite3_bind_int (s, 4, status);
    bind_opt (s, 5, response);
    bind_opt (s, 6, receipt);
    bind_opt (s, 7, settlement);
    sqlite3_bind_int64 (s, 8, now_ms);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "payment done");
        goto end;
      }
    ok = 1;
  }
end:
  if (store_tx_end (st, ok, err) == 0)
    rc = 0;
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_payment_release (struct store *st, const char *payer, const char *nonce, int64_t now_ms,
                       struct sbx_err *err)
{
  static const char sql[] = "DELETE FROM payments WHERE payer = ?1 AND nonce = ?2";
  int rc = -1, ok = 0;
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) < 0)
    goto out;
  {
    int64_t seq = payment_charge (st, payer, nonce, err);
    if (seq < 0 || store_charge_move_locked (st, seq, STORE_CHARGE_REFUNDED, NULL, now_ms,
                                             err) < 0)
      goto end;
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto end;
    sqlite3_bind_text (s, 1, payer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, nonce, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "release payment");
        goto end;
      }
    ok = 1;
  }
end:
  if (store_tx_end (st, ok, err) == 0)
    rc = 0;
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

int
store_payment_settled (struct store *st, const char *payer, const char *nonce, int ok_settle,
                       const char *tx_hash, const char *error, int status, const char *response,
                       const char *receipt, int64_t now_ms, struct sbx_err *err)
{
  static const char good[]
      = "UPDATE payments SET settlement = 'settled', tx_hash = ?3, receipt = ?4, updated_at = ?5"
        " WHERE payer = ?1 AND nonce = ?2";
  static const char bad[]
      = "UPDATE payments SET settlement = 'failed', settle_error = ?3, receipt = ?4,"
        " updated_at = ?5, status = ?6, response = ?7 WHERE payer = ?1 AND nonce = ?2";
  int rc = -1, ok = 0;
  pthread_mutex_lock (&st->lock);
  if (store_tx_begin (st, err) < 0)
    goto out;
  {
    if (!ok_settle)
      {
        /* The charge was made when the operation succeeded; a failed settlement takes it
         * back (charged -> refunded is only allowed here, hence the direct update). */
        static const char undo[] = "UPDATE charges SET state = 'refunded', updated_at = ?2"
                                   " WHERE seq = ?1 AND state = 'charged'";
        int64_t seq = payment_charge (st, payer, nonce, err);
        cleanup_stmt sqlite3_stmt *u = NULL;
        if (seq < 0 || store_prepare (st, undo, &u, err) < 0)
          goto end;
        sqlite3_bind_int64 (u, 1, seq);
        sqlite3_bind_int64 (u, 2, now_ms);
        if (sqlite3_step (u) != SQLITE_DONE)
          {
            store_db_err (st, err, "undo charge");
            goto end;
          }
      }
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, ok_settle ? good : bad, &s, err) < 0)
      goto end;
    sqlite3_bind_text (s, 1, payer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (s, 2, nonce, -1, SQLITE_TRANSIENT);
    bind_opt (s, 3, ok_settle ? tx_hash : error);
    bind_opt (s, 4, receipt);
    sqlite3_bind_int64 (s, 5, now_ms);
    if (!ok_settle)
      {
        sqlite3_bind_int (s, 6, status);
        bind_opt (s, 7, response);
      }
    if (sqlite3_step (s) != SQLITE_DONE)
      {
        store_db_err (st, err, "payment settled");
        goto end;
      }
    ok = 1;
  }
end:
  if (store_tx_end (st, ok, err) == 0)
    rc = 0;
out:
  pthread_mutex_unlock (&st->lock);
  return rc;
}

void
store_payment_list_free (struct store_payment *l, size_t n)
{
  for (size_t i = 0; l && i < n; i++)
    store_payment_clear (&l[i]);
  free (l);
}

int
store_payment_list (struct store *st, const char *which, struct store_payment **out, size_t *n,
                    struct sbx_err *err)
{
  static const char sql[] = "SELECT " PAY_COLS " FROM payments WHERE settlement IS NOT NULL"
                            " AND (?1 IS NULL OR settlement = ?1) ORDER BY created_at, payer";
  struct store_payment *list = NULL;
  size_t len = 0;
  int rc = -1;
  pthread_mutex_lock (&st->lock);
  {
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (store_prepare (st, sql, &s, err) < 0)
      goto out;
    if (which)
      sqlite3_bind_text (s, 1, which, -1, SQLITE_TRANSIENT);
    void *rows = NULL;
    rc = store_rows_collect (st, s, sizeof *list, payment_row, &rows, &len, "list payments", err);
    list = rows;
  }
out:
  pthread_mutex_unlock (&st->lock);
  if (rc < 0)
    {
      store_payment_list_free (list, len);
      return -1;
    }
  *out = list;
  *n = len;
  return 0;
}
