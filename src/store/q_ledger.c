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

/* The writes of store_charge_reserve_account, inside its transaction: 1 reserved, 0 the
 * balance is short (nothing written), -1 with err. */
static int
reserve_account_tx (struct store *st, const char *account_id, const char *owner, const char *op,
                    int64_t amount, const char *ref, int64_t now_ms, int64_t *seq,
                    struct sbx_err *err)
{
  static const char take[]
      = "UPDATE accounts SET balance = balance - ?2 WHERE id = ?1 AND balance >= ?2";
  static const char ins[]
      = "INSERT INTO charges (owner, method, account_id, op, amount, ref, state, created_at,"
        " updated_at) VALUES (?1, 'api_key', ?2, ?3, ?4, ?5, 'reserved', ?6, ?6)";
  const struct store_val tv[] = { store_text (account_id), store_int (amount) };
  int r = store_run_locked (st, take, tv, STORE_NVALS (tv), "reserve", err);
  if (r <= 0)
    return r;
  const struct store_val iv[] = { store_text (owner), store_text (account_id), store_text (op),
                                  store_int (amount), store_text (ref), store_int (now_ms) };
  if (store_run_locked (st, ins, iv, STORE_NVALS (iv), "reserve", err) < 0)
    return -1;
  *seq = sqlite3_last_insert_rowid (st->db);
  return 1;
}

int
store_charge_reserve_account (struct store *st, const char *account_id, const char *owner,
                              const char *op, int64_t amount, const char *ref, int64_t now_ms,
                              int64_t *seq, struct sbx_err *err)
{
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  int r = reserve_account_tx (st, account_id, owner, op, amount, ref, now_ms, seq, err);
  if (store_tx_end (st, r > 0, err) < 0)
    return r == 0 ? 0 : -1; /* 0: rolled back on purpose, the balance was short */
  return 1;
}

int
store_charge_move_locked (struct store *st, int64_t seq, int to, const char *sandbox_id,
                          int64_t now_ms, struct sbx_err *err)
{
  static const char upd[]
      = "UPDATE charges SET state = ?2, updated_at = ?3, sandbox_id = coalesce(?4, sandbox_id)"
        " WHERE seq = ?1 AND state = 'reserved' RETURNING method, account_id, amount";
  static const char back[] = "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1";
  const struct store_val v[] = { store_int (seq), store_text (store_charge_state_name (to)),
                                 store_int (now_ms), store_opt_text (sandbox_id) };
  cleanup_stmt sqlite3_stmt *s = NULL;
  int r = store_row_locked (st, upd, v, STORE_NVALS (v), &s, "update charge", err);
  if (r <= 0)
    return r; /* 0: not reserved */
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
      const struct store_val b[] = { store_text (account), store_int (amount) };
      if (store_run_locked (st, back, b, STORE_NVALS (b), "refund", err) < 0)
        return -1;
    }
  return 1;
}

static int
move (struct store *st, int64_t seq, int to, const char *sandbox_id, int64_t now_ms,
      struct sbx_err *err)
{
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  int r = store_charge_move_locked (st, seq, to, sandbox_id, now_ms, err);
  if (store_tx_end (st, r >= 0, err) < 0)
    return -1;
  return r;
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
row_to_charge (sqlite3_stmt *s, struct store_charge *c)
{
  memset (c, 0, sizeof *c);
  c->seq = sqlite3_column_int64 (s, 0);
  store_col_copy (s, 1, c->owner, sizeof c->owner);
  store_col_copy (s, 2, c->method, sizeof c->method);
  store_col_copy (s, 3, c->account_id, sizeof c->account_id);
  store_col_copy (s, 4, c->op, sizeof c->op);
  store_col_copy (s, 5, c->sandbox_id, sizeof c->sandbox_id);
  c->amount = sqlite3_column_int64 (s, 6);
  store_col_copy (s, 7, c->ref, sizeof c->ref);
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
  const struct store_val v[] = { store_int (seq) };
  int r = store_get (st, sql, v, 1, charge_row, out, "get charge", err);
  if (r == 0)
    return sbx_err_set (err, SBX_E_NOT_FOUND, 0, "charge %lld not found", (long long) seq);
  return r < 0 ? -1 : 0;
}

int
store_charge_list (struct store *st, const char *owner, int limit, struct store_charge **out,
                   size_t *n, struct sbx_err *err)
{
  static const char sql[] = "SELECT " CHARGE_COLS " FROM charges WHERE ?1 IS NULL OR owner = ?1"
                            " ORDER BY seq DESC LIMIT ?2";
  const struct store_val v[] = { store_text (owner), store_int (limit) };
  void *rows = NULL;
  size_t len = 0;
  if (store_list (st, sql, v, STORE_NVALS (v), sizeof **out, charge_row, &rows, &len,
                  "list charges", err)
      < 0)
    {
      free (rows);
      return -1;
    }
  *out = rows;
  *n = len;
  return 0;
}

int
store_charge_totals (struct store *st, const char *owner, int64_t *amount, int64_t *count,
                     struct sbx_err *err)
{
  static const char sql[] = "SELECT coalesce(sum(amount), 0), count(*) FROM charges"
                            " WHERE owner = ?1 AND state = 'charged'";
  const struct store_val v[] = { store_text (owner) };
  cleanup_store_unlock struct store *locked = store_lock (st);
  cleanup_stmt sqlite3_stmt *s = NULL;
  if (store_one_locked (st, sql, v, 1, &s, "charge totals", err) < 0)
    return -1;
  *amount = sqlite3_column_int64 (s, 0);
  *count = sqlite3_column_int64 (s, 1);
  return 0;
}

/* A reserved charge and the sandbox it recorded, if that sandbox ran. */
struct reserved {
  int64_t seq;
  char sb[SBX_ID_MAX];
};

static int
reserved_row (sqlite3_stmt *s, void *elem, struct sbx_err *err)
{
  struct reserved *r = elem;
  r->seq = sqlite3_column_int64 (s, 0);
  store_col_copy (s, 1, r->sb, sizeof r->sb);
  return 0;
}

/* The writes of store_charge_recover, inside its transaction. */
static int
recover_tx (struct store *st, int64_t now_ms, int *charged, int *refunded, struct sbx_err *err)
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
  /* Collect first: the updates below must not run under an open SELECT on the table. */
  cleanup_free void *rows = NULL;
  size_t len = 0;
  if (store_list_locked (st, find, NULL, 0, sizeof (struct reserved), reserved_row, &rows, &len,
                         "recover charges", err)
      < 0)
    return -1;
  struct reserved *v = rows;
  for (size_t i = 0; i < len; i++)
    {
      int have_sb = v[i].sb[0] != '\0';
      if (store_charge_move_locked (st, v[i].seq,
                                    have_sb ? STORE_CHARGE_CHARGED : STORE_CHARGE_REFUNDED,
                                    have_sb ? v[i].sb : NULL, now_ms, err) < 0)
        return -1;
      /* pay_done binds all three, pay_del only the charge */
      const struct store_val p[] = { store_int (v[i].seq), store_text (v[i].sb),
                                     store_int (now_ms) };
      if (store_run_locked (st, have_sb ? pay_done : pay_del, p, have_sb ? 3 : 1,
                            "recover payment", err)
          < 0)
        return -1;
      if (have_sb)
        (*charged)++;
      else
        (*refunded)++;
    }
  const struct store_val q[] = { store_int (now_ms) };
  return store_run_locked (st, requeue, q, 1, "requeue settlements", err) < 0 ? -1 : 0;
}

int
store_charge_recover (struct store *st, int64_t now_ms, int *charged, int *refunded,
                      struct sbx_err *err)
{
  int nc = 0, nr = 0;
  cleanup_store_unlock struct store *locked = store_lock (st);
  if (store_tx_begin (st, err) < 0)
    return -1;
  int r = recover_tx (st, now_ms, &nc, &nr, err);
  if (store_tx_end (st, r == 0, err) < 0)
    return -1;
  if (charged)
    *charged = nc;
  if (refunded)
    *refunded = nr;
  return 0;
}
