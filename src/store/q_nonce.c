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
row_to_payment (sqlite3_stmt *s, struct store_payment *p)
{
  memset (p, 0, sizeof *p);
  store_col_copy (s, 0, p->payer, sizeof p->payer);
  store_col_copy (s, 1, p->nonce, sizeof p->nonce);
  p->version = sqlite3_column_int (s, 2);
  store_col_copy (s, 3, p->request_hash, sizeof p->request_hash);
  store_col_copy (s, 4, p->op, sizeof p->op);
  p->amount = sqlite3_column_int64 (s, 5);
  p->valid_before = sqlite3_column_int64 (s, 6);
  const unsigned char *state = sqlite3_column_text (s, 7);
  p->done = state && !strcmp ((const char *) state, "done");
  p->charge_seq = sqlite3_column_int64 (s, 8);
  store_col_copy (s, 9, p->sandbox_id, sizeof p->sandbox_id);
  p->status = sqlite3_column_int (s, 10);
  p->response = store_col_dup (s, 11);
  p->receipt = store_col_dup (s, 12);
  p->facilitator_body = store_col_dup (s, 13);
  store_col_copy (s, 14, p->settlement, sizeof p->settlement);
  store_col_copy (s, 15, p->tx_hash, sizeof p->tx_hash);
  store_col_copy (s, 16, p->settle_error, sizeof p->settle_error);
  p->created_at_ms = sqlite3_column_int64 (s, 17);
}

/* row_to_payment as a store_row_fn. */
static int
payment_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  row_to_payment (s, elem);
  return 0;
}

/* The lookup and writes of store_payment_begin, inside its transaction: 1 recorded with a
 * reserved charge, 0 the (payer, nonce) is there already (read into existing), -1 with
 * err. */
static int
payment_begin_tx (struct store *st, const struct store_payment *p, const char *owner,
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
  {
    const struct store_val key[] = { store_text (p->payer), store_text (p->nonce) };
    cleanup_stmt sqlite3_stmt *g = NULL;
    int r = store_row_locked (st, get, key, STORE_NVALS (key), &g, "payment lookup", err);
    if (r < 0)
      return -1;
    if (r > 0)
      {
        row_to_payment (g, existing);
        return 0;
      }
  }
  char ref[160];
  snprintf (ref, sizeof ref, "%s:%s", p->payer, p->nonce);
  const struct store_val cv[] = { store_text (owner), store_text (p->op), store_int (p->amount),
                                  store_text (ref), store_int (now_ms) };
  if (store_run_locked (st, charge, cv, STORE_NVALS (cv), "reserve payment", err) < 0)
    return -1;
  int64_t seq = sqlite3_last_insert_rowid (st->db);
  const struct store_val iv[] = {
    store_text (p->payer),
    store_text (p->nonce),
    store_int (p->version),
    store_text (p->request_hash),
    store_text (p->op),
    store_int (p->amount),
    store_int (p->valid_before),
    store_int (seq),
    store_text (p->facilitator_body ? p->facilitator_body : "{}"),
    store_int (now_ms),
  };
  if (store_run_locked (st, ins, iv, STORE_NVALS (iv), "record payment", err) < 0)
    return -1;
  *charge_seq = seq;
  return 1;
}

int
store_payment_begin (struct store *st, const struct store_payment *p, const char *owner,
                     int64_t now_ms, int64_t *charge_seq, struct store_payment *existing,
                     struct sbx_err *err)
{
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  int r = payment_begin_tx (st, p, owner, now_ms, charge_seq, existing, err);
  if (store_tx_end (st, r > 0, err) == 0)
    return 1;
  if (r == 0)
    return 0; /* rolled back on purpose: nothing was written */
  if (existing)
    store_payment_clear (existing);
  return -1;
}

/* The charge of a payment; with the lock held. -1 with err (SBX_E_NOT_FOUND if there is no
 * such payment). */
static int64_t
payment_charge (struct store *st, const char *payer, const char *nonce, struct sbx_err *err)
{
  static const char sql[] = "SELECT charge_seq FROM payments WHERE payer = ?1 AND nonce = ?2";
  const struct store_val v[] = { store_text (payer), store_text (nonce) };
  cleanup_stmt sqlite3_stmt *s = NULL;
  int r = store_row_locked (st, sql, v, STORE_NVALS (v), &s, "payment charge", err);
  if (r > 0)
    return sqlite3_column_int64 (s, 0);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "no payment %s:%s", payer, nonce);
  return -1;
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
  const struct store_val v[] = {
    store_text (payer),    store_text (nonce),   store_opt_text (sandbox_id), store_int (status),
    store_text (response), store_text (receipt), store_text (settlement),     store_int (now_ms),
  };
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  /* the charge and the stored answer change together */
  int64_t seq = payment_charge (st, payer, nonce, err);
  int ok = seq >= 0
           && store_charge_move_locked (st, seq, STORE_CHARGE_CHARGED, sandbox_id, now_ms, err)
                  >= 0
           && store_run_locked (st, sql, v, STORE_NVALS (v), "payment done", err) >= 0;
  return store_tx_end (st, ok, err);
}

int
store_payment_release (struct store *st, const char *payer, const char *nonce, int64_t now_ms,
                       struct sbx_err *err)
{
  static const char sql[] = "DELETE FROM payments WHERE payer = ?1 AND nonce = ?2";
  const struct store_val v[] = { store_text (payer), store_text (nonce) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  int64_t seq = payment_charge (st, payer, nonce, err);
  int ok = seq >= 0
           && store_charge_move_locked (st, seq, STORE_CHARGE_REFUNDED, NULL, now_ms, err) >= 0
           && store_run_locked (st, sql, v, STORE_NVALS (v), "release payment", err) >= 0;
  return store_tx_end (st, ok, err);
}

/* The charge was made when the operation succeeded; a failed settlement takes it back
 * (charged -> refunded is only allowed here, hence the direct update). Lock held. */
static int
undo_charge (struct store *st, const char *payer, const char *nonce, int64_t now_ms,
             struct sbx_err *err)
{
  static const char undo[] = "UPDATE charges SET state = 'refunded', updated_at = ?2"
                             " WHERE seq = ?1 AND state = 'charged'";
  int64_t seq = payment_charge (st, payer, nonce, err);
  if (seq < 0)
    return -1;
  const struct store_val v[] = { store_int (seq), store_int (now_ms) };
  return store_run_locked (st, undo, v, STORE_NVALS (v), "undo charge", err) < 0 ? -1 : 0;
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
  /* good binds the first five */
  const struct store_val v[] = {
    store_text (payer),   store_text (nonce),  store_text (ok_settle ? tx_hash : error),
    store_text (receipt), store_int (now_ms), store_int (status), store_text (response),
  };
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  int ok = (ok_settle || undo_charge (st, payer, nonce, now_ms, err) == 0)
           && store_run_locked (st, ok_settle ? good : bad, v, ok_settle ? 5 : 7,
                                "payment settled", err)
                  >= 0;
  return store_tx_end (st, ok, err);
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
  const struct store_val v[] = { store_text (which) };
  void *rows = NULL;
  size_t len = 0;
  if (store_list (st, sql, v, 1, sizeof **out, payment_row, &rows, &len, "list payments", err)
      < 0)
    {
      store_payment_list_free (rows, len);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}
