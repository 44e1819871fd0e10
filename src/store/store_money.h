/* src/store, money (issue 4): accounts with prepaid balances, API keys, the ledger of
 * charges and x402 payments. Tables are created by schema step 2 (db.c).
 *
 * Amounts are integers of USDC base units (1 USDC = 1000000). Owners are strings:
 * "local" (auth off), "acct:<account id>" (API keys), "x402:0x<40 lowercase hex>" (payers).
 *
 * Crash safety: every change of money is one SQLite transaction. A charge is written as
 * "reserved" before the operation runs (an API-key reservation takes the balance in the
 * same transaction, conditionally, so no race can overdraw it; an x402 reservation records
 * (payer, nonce) in the same transaction, so no authorization can pay twice), then becomes
 * "charged" (the operation succeeded) or "refunded" (it did not; the balance comes back,
 * the authorization is released). store_charge_recover settles what a crash left
 * "reserved". */
#pragma once

#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_OWNER_MAX 96
#define STORE_ACCOUNT_MAX 64
#define STORE_KEY_ID_MAX 40

/* ---- accounts and API keys (q_account.c) ---- */
struct store_account {
  char id[STORE_ACCOUNT_MAX];
  int64_t balance;
  int64_t created_at_ms;
  int keys_active;
};

/* Account ids: 1-63 of [a-z0-9_.-], starting with a letter or digit. */
int store_account_id_valid (const char *id);
/* SBX_E_INVALID if it exists already or the id is malformed. */
int store_account_create (struct store *st, const char *id, int64_t balance, int64_t now_ms,
                          struct sbx_err *err);
int store_account_get (struct store *st, const char *id, struct store_account *out,
                       struct sbx_err *err); /* SBX_E_NOT_FOUND */
/* Add amount (> 0) to the balance; *balance gets the new one. */
int store_account_topup (struct store *st, const char *id, int64_t amount, int64_t *balance,
                         struct sbx_err *err);

struct store_key {
  char id[STORE_KEY_ID_MAX];
  char account_id[STORE_ACCOUNT_MAX];
  uint8_t hash[32];
  int64_t created_at_ms;
  int64_t revoked_at_ms; /* 0: active */
};
/* SBX_E_NOT_FOUND if the account does not exist; SBX_E_INVALID if the id is taken. */
int store_key_insert (struct store *st, const char *id, const char *account_id,
                      const uint8_t hash[32], int64_t now_ms, struct sbx_err *err);
int store_key_get (struct store *st, const char *id, struct store_key *out,
                   struct sbx_err *err); /* SBX_E_NOT_FOUND */
/* account NULL: every key. */
int store_key_list (struct store *st, const char *account, struct store_key **out, size_t *n,
                    struct sbx_err *err);
/* 1 revoked now, 0 already revoked, -1 (SBX_E_NOT_FOUND if no such key). */
int store_key_revoke (struct store *st, const char *id, int64_t now_ms, struct sbx_err *err);

/* The owner of a sandbox (SBX_E_NOT_FOUND if there is no such sandbox). */
int store_sandbox_owner (struct store *st, const char *id, char owner[STORE_OWNER_MAX],
                         struct sbx_err *err);

/* ---- the ledger (q_ledger.c) ---- */
enum store_charge_state { STORE_CHARGE_RESERVED = 0, STORE_CHARGE_CHARGED, STORE_CHARGE_REFUNDED };

struct store_charge {
  int64_t seq;
  char owner[STORE_OWNER_MAX];
  char method[16];            /* "api_key" or "x402" */
  char account_id[STORE_ACCOUNT_MAX]; /* "" for x402 */
  char op[16];                /* "create", "exec", "status", "terminate" */
  char sandbox_id[SBX_ID_MAX];
  int64_t amount;
  char ref[160];              /* key id, or "<payer>:<nonce>" */
  int state;                  /* enum store_charge_state */
  int64_t created_at_ms;
  int64_t updated_at_ms;
};
const char *store_charge_state_name (int state);

/* Reserve amount from an account's balance and write a "reserved" charge, atomically:
 * 1 with *seq on success, 0 when the balance cannot pay (nothing written), -1 on error. */
int store_charge_reserve_account (struct store *st, const char *account_id, const char *owner,
                                  const char *op, int64_t amount, const char *ref,
                                  int64_t now_ms, int64_t *seq, struct sbx_err *err);
/* reserved -> charged (sandbox_id may be NULL). 1 done, 0 not reserved any more. */
int store_charge_finish (struct store *st, int64_t seq, const char *sandbox_id, int64_t now_ms,
                         struct sbx_err *err);
/* reserved -> refunded, the amount back on the account (API keys). 1 done, 0 not reserved. */
int store_charge_refund (struct store *st, int64_t seq, int64_t now_ms, struct sbx_err *err);
/* The newest `limit` charges of an owner, newest first. */
int store_charge_list (struct store *st, const char *owner, int limit, struct store_charge **out,
                       size_t *n, struct sbx_err *err);
int store_charge_get (struct store *st, int64_t seq, struct store_charge *out,
                      struct sbx_err *err);
/* Totals of an owner's charged rows. */
int store_charge_totals (struct store *st, const char *owner, int64_t *amount, int64_t *count,
                         struct sbx_err *err);
/* After a crash (call it after the sandboxes were recovered): every "reserved" charge is
 * decided. A create whose sandbox was recorded (sandboxes.charge_ref) and ran (running, or
 * ended by its timeout) is charged; anything else is refunded (the caller never got an
 * answer; a sandbox found "lost" never served it) and its x402 authorization released.
 * x402 settlements caught "settling" go back to "queued". */
int store_charge_recover (struct store *st, int64_t now_ms, int *charged, int *refunded,
                          struct sbx_err *err);

/* ---- x402 payments (q_nonce.c) ---- */
struct store_payment {
  char payer[43];             /* 0x + 40 lowercase hex */
  char nonce[67];             /* 0x + 64 lowercase hex */
  int version;                /* 1 or 2 */
  char request_hash[67];      /* keccak of method, path and body */
  char op[16];
  int64_t amount;
  int64_t valid_before;
  int done;                   /* 0 pending (operation running), 1 done */
  int64_t charge_seq;
  char sandbox_id[SBX_ID_MAX];
  int status;                 /* the stored answer (done): HTTP status, 0 if none */
  char *response;             /* its JSON body, or NULL; owned */
  char *receipt;              /* its PAYMENT-RESPONSE value, or NULL; owned */
  char *facilitator_body;     /* what POST /settle gets; owned */
  char settlement[16];        /* "", "queued", "settling", "settled", "failed" */
  char tx_hash[80];
  char settle_error[128];
  int64_t created_at_ms;
};
void store_payment_clear (struct store_payment *p);

/* Record (payer, nonce) as pending with a reserved charge, in one transaction. 1: recorded
 * (*charge_seq set); 0: the pair exists already (*existing filled, caller clears); -1. */
int store_payment_begin (struct store *st, const struct store_payment *p, const char *owner,
                         int64_t now_ms, int64_t *charge_seq, struct store_payment *existing,
                         struct sbx_err *err);
/* The operation succeeded: payment done with its answer, charge charged, settlement state
 * ("queued" without facilitator, "settling" before POST /settle), in one transaction. */
int store_payment_done (struct store *st, const char *payer, const char *nonce,
                        const char *sandbox_id, int status, const char *response,
                        const char *receipt, const char *settlement, int64_t now_ms,
                        struct sbx_err *err);
/* The operation failed (nothing to settle): delete the payment, refund its charge. The
 * authorization was not used and may be presented again. */
int store_payment_release (struct store *st, const char *payer, const char *nonce,
                           int64_t now_ms, struct sbx_err *err);
/* Settlement result. ok: "settled" with tx_hash and receipt. !ok: "failed" with error; the
 * stored answer becomes status/response/receipt, and the charge is refunded. */
int store_payment_settled (struct store *st, const char *payer, const char *nonce, int ok,
                           const char *tx_hash, const char *error, int status,
                           const char *response, const char *receipt, int64_t now_ms,
                           struct sbx_err *err);
/* Payments with a settlement state (which NULL: all with one), oldest first. */
int store_payment_list (struct store *st, const char *which, struct store_payment **out,
                        size_t *n, struct sbx_err *err);
void store_payment_list_free (struct store_payment *l, size_t n);
