/* Private to src/store's money queries (q_ledger.c, q_nonce.c). */
#pragma once

#include "internal.h"
#include "store_money.h"

/* reserved -> `to` (enum store_charge_state), refunding an API-key reservation to its
 * account. The caller holds st->lock inside a transaction. 1 changed, 0 not reserved. */
int store_charge_move_locked (struct store *st, int64_t seq, int to, const char *sandbox_id,
                              int64_t now_ms, struct sbx_err *err);
/* BEGIN IMMEDIATE / COMMIT (or ROLLBACK when !ok), with st->lock held. */
int store_tx_begin (struct store *st, struct sbx_err *err);
int store_tx_end (struct store *st, int ok, struct sbx_err *err);
