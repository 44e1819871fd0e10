/* src/store money queries against real SQLite files: accounts and top-ups, API keys,
 * reservations (no overdraft, refund exactly once), x402 payments keyed by (payer, nonce),
 * settlement states, and the recovery of charges a crash left reserved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_money.h"
#include "test_store_fixture.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int64_t
bal (struct store *st, const char *id)
{
  struct store_account a;
  struct sbx_err err = { 0 };
  assert_int_equal (store_account_get (st, id, &a, &err), 0);
  return a.balance;
}

static void
test_accounts (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  assert_int_equal (store_account_create (f->st, "alice", 500, 1, &err), 0);
  assert_int_equal (store_account_create (f->st, "alice", 0, 1, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  assert_int_equal (store_account_create (f->st, "Bad Name", 0, 1, &err), -1);
  assert_int_equal (store_account_create (f->st, "x", -1, 1, &err), -1);
  int64_t b = 0;
  assert_int_equal (store_account_topup (f->st, "alice", 250, &b, &err), 0);
  assert_int_equal (b, 750);
  assert_int_equal (store_account_topup (f->st, "alice", 0, &b, &err), -1);
  assert_int_equal (store_account_topup (f->st, "nobody", 5, &b, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  assert_int_equal (bal (f->st, "alice"), 750);
  struct store_account a;
  assert_int_equal (store_account_get (f->st, "nobody", &a, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  /* survives a reopen */
  store_close (f->st);
  assert_int_equal (store_open (f->db, &f->st, &err), 0);
  assert_int_equal (bal (f->st, "alice"), 750);
}

static void
test_keys (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  uint8_t h[32], h2[32];
  memset (h, 0xab, 32);
  memset (h2, 0xcd, 32);
  assert_int_equal (store_key_insert (f->st, "k1", "ghost", h, 1, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  assert_int_equal (store_account_create (f->st, "alice", 0, 1, &err), 0);
  assert_int_equal (store_account_create (f->st, "bob", 0, 1, &err), 0);
  assert_int_equal (store_key_insert (f->st, "k1", "alice", h, 10, &err), 0);
  assert_int_equal (store_key_insert (f->st, "k1", "bob", h2, 11, &err), -1);
  assert_int_equal (store_key_insert (f->st, "k2", "bob", h2, 12, &err), 0);
  struct store_key k;
  assert_int_equal (store_key_get (f->st, "k1", &k, &err), 0);
  assert_string_equal (k.account_id, "alice");
  assert_memory_equal (k.hash, h, 32);
  assert_int_equal (k.revoked_at_ms, 0);
  struct store_key *l;
  size_t n;
  assert_int_equal (store_key_list (f->st, NULL, &l, &n, &err), 0);
  assert_int_equal (n, 2);
  free (l);
  assert_int_equal (store_key_list (f->st, "bob", &l, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_string_equal (l[0].id, "k2");
  free (l);
  struct store_account a;
  assert_int_equal (store_account_get (f->st, "alice", &a, &err), 0);
  assert_int_equal (a.keys_active, 1);
  assert_int_equal (store_key_revoke (f->st, "k1", 99, &err), 1);
  assert_int_equal (store_key_revoke (f->st, "k1", 100, &err), 0);
  assert_int_equal (store_key_revoke (f->st, "nope", 100, &err), -1);
  assert_int_equal (store_key_get (f->st, "k1", &k, &err), 0);
  assert_int_equal (k.revoked_at_ms, 99);
  assert_int_equal (store_account_get (f->st, "alice", &a, &err), 0);
  assert_int_equal (a.keys_active, 0);
}

static void
test_reserve_finish_refund (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  assert_int_equal (store_account_create (f->st, "alice", 2500, 1, &err), 0);
  int64_t s1 = 0, s2 = 0, s3 = 0;
  assert_int_equal (store_charge_reserve_account (f->st, "alice", "acct:alice", "exec", 1000,
                                                  "key:k1", 5, &s1, &err), 1);
  assert_int_equal (store_charge_reserve_account (f->st, "alice", "acct:alice", "exec", 1000,
                                                  "key:k1", 6, &s2, &err), 1);
  /* 500 left: a third reservation of 1000 writes nothing */
  assert_int_equal (store_charge_reserve_account (f->st, "alice", "acct:alice", "exec", 1000,
                                                  "key:k1", 7, &s3, &err), 0);
  assert_int_equal (bal (f->st, "alice"), 500);
  assert_int_equal (store_charge_finish (f->st, s1, "sb_1", 8, &err), 1);
  assert_int_equal (store_charge_finish (f->st, s1, "sb_1", 8, &err), 0);
  assert_int_equal (store_charge_refund (f->st, s1, 9, &err), 0); /* charged stays charged */
  assert_int_equal (store_charge_refund (f->st, s2, 9, &err), 1);
  assert_int_equal (store_charge_refund (f->st, s2, 9, &err), 0); /* refunded once only */
  assert_int_equal (bal (f->st, "alice"), 1500);
  struct store_charge c;
  assert_int_equal (store_charge_get (f->st, s1, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_CHARGED);
  assert_string_equal (c.sandbox_id, "sb_1");
  assert_string_equal (c.method, "api_key");
  int64_t total, count;
  assert_int_equal (store_charge_totals (f->st, "acct:alice", &total, &count, &err), 0);
  assert_int_equal (total, 1000);
  assert_int_equal (count, 1);
  struct store_charge *l;
  size_t n;
  assert_int_equal (store_charge_list (f->st, "acct:alice", 10, &l, &n, &err), 0);
  assert_int_equal (n, 2);
  assert_int_equal (l[0].seq, s2); /* newest first */
  assert_int_equal (l[0].state, STORE_CHARGE_REFUNDED);
  free (l);
  assert_int_equal (store_charge_list (f->st, "acct:nobody", 10, &l, &n, &err), 0);
  assert_int_equal (n, 0);
  free (l);
}

struct race {
  struct store *st;
  int ok;
};

static void *
racer (void *p)
{
  struct race *r = p;
  struct sbx_err err = { 0 };
  int64_t seq;
  for (int i = 0; i < 10; i++)
    if (store_charge_reserve_account (r->st, "alice", "acct:alice", "status", 1000, "key:k", 1,
                                      &seq, &err) == 1)
      r->ok++;
  return NULL;
}

static void
test_no_overdraft_under_threads (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  assert_int_equal (store_account_create (f->st, "alice", 10000, 1, &err), 0);
  pthread_t t[8];
  struct race r[8];
  for (int i = 0; i < 8; i++)
    {
      r[i] = (struct race){ .st = f->st };
      pthread_create (&t[i], NULL, racer, &r[i]);
    }
  int ok = 0;
  for (int i = 0; i < 8; i++)
    {
      pthread_join (t[i], NULL);
      ok += r[i].ok;
    }
  assert_int_equal (ok, 10);
  assert_int_equal (bal (f->st, "alice"), 0);
}

static void
make_payment (struct store_payment *p, const char *payer, const char *nonce, const char *hash)
{
  memset (p, 0, sizeof *p);
  snprintf (p->payer, sizeof p->payer, "%s", payer);
  snprintf (p->nonce, sizeof p->nonce, "%s", nonce);
  snprintf (p->request_hash, sizeof p->request_hash, "%s", hash);
  snprintf (p->op, sizeof p->op, "exec");
  p->version = 2;
  p->amount = 1000;
  p->valid_before = 1000000;
  p->facilitator_body = (char *) "{\"x402Version\":2}";
}

#define PAYER "0x1111111111111111111111111111111111111111"
#define N1 "0x01"
#define N2 "0x02"

static void
test_payments (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  struct store_payment p, ex;
  int64_t seq = 0, seq2 = 0;
  make_payment (&p, PAYER, N1, "h1");
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 10, &seq, &ex, &err), 1);
  assert_true (seq > 0);
  /* the same (payer, nonce) again: the existing row, pending, nothing new written */
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 11, &seq2, &ex, &err), 0);
  assert_false (ex.done);
  assert_int_equal (ex.charge_seq, seq);
  store_payment_clear (&ex);
  assert_int_equal (store_payment_done (f->st, PAYER, N1, "sb_1", 200, "{\"ok\":1}", "rcpt",
                                        "settling", 12, &err), 0);
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 13, &seq2, &ex, &err), 0);
  assert_true (ex.done);
  assert_int_equal (ex.status, 200);
  assert_string_equal (ex.response, "{\"ok\":1}");
  assert_string_equal (ex.receipt, "rcpt");
  assert_string_equal (ex.request_hash, "h1");
  assert_string_equal (ex.settlement, "settling");
  store_payment_clear (&ex);
  struct store_charge c;
  assert_int_equal (store_charge_get (f->st, seq, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_CHARGED);
  assert_string_equal (c.method, "x402");
  assert_string_equal (c.ref, PAYER ":" N1);
  assert_int_equal (store_payment_settled (f->st, PAYER, N1, 1, "0xtx", NULL, 0, NULL, "r2", 14,
                                           &err), 0);
  struct store_payment *l;
  size_t n;
  assert_int_equal (store_payment_list (f->st, "settled", &l, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_string_equal (l[0].tx_hash, "0xtx");
  assert_string_equal (l[0].facilitator_body, "{\"x402Version\":2}");
  store_payment_list_free (l, n);

  /* a failed operation releases the authorization: it may be presented again */
  make_payment (&p, PAYER, N2, "h2");
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 20, &seq, &ex, &err), 1);
  assert_int_equal (store_payment_release (f->st, PAYER, N2, 21, &err), 0);
  assert_int_equal (store_charge_get (f->st, seq, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_REFUNDED);
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 22, &seq2, &ex, &err), 1);
  assert_true (seq2 != seq);
  /* a failed settlement refunds the charge and keeps the answer */
  assert_int_equal (store_payment_done (f->st, PAYER, N2, NULL, 200, "{}", NULL, "settling", 23,
                                        &err), 0);
  assert_int_equal (store_payment_settled (f->st, PAYER, N2, 0, NULL, "insufficient_funds", 402,
                                           "{\"x402Version\":1}", "r3", 24, &err), 0);
  assert_int_equal (store_charge_get (f->st, seq2, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_REFUNDED);
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 25, &seq, &ex, &err), 0);
  assert_int_equal (ex.status, 402);
  assert_string_equal (ex.settle_error, "insufficient_funds");
  store_payment_clear (&ex);
  int64_t total, count;
  assert_int_equal (store_charge_totals (f->st, "x402:" PAYER, &total, &count, &err), 0);
  assert_int_equal (total, 1000);
  assert_int_equal (count, 1);
  assert_int_equal (store_payment_list (f->st, NULL, &l, &n, &err), 0);
  assert_int_equal (n, 2);
  store_payment_list_free (l, n);
}

static void
test_recover_after_crash (void **state)
{
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  assert_int_equal (store_account_create (f->st, "alice", 100000, 1, &err), 0);
  int64_t create_seq, exec_seq, lost_create_seq, pay_seq;
  assert_int_equal (store_charge_reserve_account (f->st, "alice", "acct:alice", "create", 10000,
                                                  "key:k", 1, &create_seq, &err), 1);
  assert_int_equal (store_charge_reserve_account (f->st, "alice", "acct:alice", "exec", 1000,
                                                  "key:k", 2, &exec_seq, &err), 1);
  assert_int_equal (store_charge_reserve_account (f->st, "alice", "acct:alice", "create", 10000,
                                                  "key:k", 3, &lost_create_seq, &err), 1);
  struct store_payment p, ex;
  make_payment (&p, PAYER, N1, "h");
  snprintf (p.op, sizeof p.op, "create");
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 4, &pay_seq, &ex, &err), 1);
  /* the first create and the paid one recorded their sandboxes before the crash */
  struct store_sandbox sb = { .status = STORE_RUNNING, .created_at_ms = 1, .expires_at_ms = 2,
                              .timeout_s = 1, .cpu_millis = 1000, .memory_mb = 64 };
  snprintf (sb.id, sizeof sb.id, "sb_00000000000000000001");
  snprintf (sb.image, sizeof sb.image, "python:3.11");
  snprintf (sb.owner, sizeof sb.owner, "acct:alice");
  sb.charge_ref = create_seq;
  assert_int_equal (store_sandbox_insert (f->st, &sb, &err), 0);
  snprintf (sb.id, sizeof sb.id, "sb_00000000000000000002");
  snprintf (sb.owner, sizeof sb.owner, "x402:%s", PAYER);
  sb.charge_ref = pay_seq;
  assert_int_equal (store_sandbox_insert (f->st, &sb, &err), 0);
  /* the third create recorded its sandbox too, but the restart found it gone */
  snprintf (sb.id, sizeof sb.id, "sb_00000000000000000003");
  snprintf (sb.owner, sizeof sb.owner, "acct:alice");
  sb.charge_ref = lost_create_seq;
  assert_int_equal (store_sandbox_insert (f->st, &sb, &err), 0);
  assert_int_equal (store_sandbox_terminate (f->st, sb.id, 50, "lost during sbxd restart", &err), 1);
  assert_int_equal (bal (f->st, "alice"), 79000);
  /* "kill -9": reopen and recover */
  store_close (f->st);
  assert_int_equal (store_open (f->db, &f->st, &err), 0);
  int charged = -1, refunded = -1;
  assert_int_equal (store_charge_recover (f->st, 100, &charged, &refunded, &err), 0);
  assert_int_equal (charged, 2);
  assert_int_equal (refunded, 2);
  struct store_charge c;
  assert_int_equal (store_charge_get (f->st, create_seq, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_CHARGED);
  assert_string_equal (c.sandbox_id, "sb_00000000000000000001");
  assert_int_equal (store_charge_get (f->st, exec_seq, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_REFUNDED);
  assert_int_equal (store_charge_get (f->st, lost_create_seq, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_REFUNDED);
  assert_int_equal (store_charge_get (f->st, pay_seq, &c, &err), 0);
  assert_int_equal (c.state, STORE_CHARGE_CHARGED);
  assert_int_equal (bal (f->st, "alice"), 90000);
  /* the paid create is done and queued for settlement; a re-send gets its sandbox */
  assert_int_equal (store_payment_begin (f->st, &p, "x402:" PAYER, 101, &pay_seq, &ex, &err), 0);
  assert_true (ex.done);
  assert_string_equal (ex.sandbox_id, "sb_00000000000000000002");
  assert_string_equal (ex.settlement, "queued");
  assert_non_null (strstr (ex.response, "sb_00000000000000000002"));
  store_payment_clear (&ex);
  /* recovering twice changes nothing */
  assert_int_equal (store_charge_recover (f->st, 200, &charged, &refunded, &err), 0);
  assert_int_equal (charged + refunded, 0);
  assert_int_equal (bal (f->st, "alice"), 90000);
  /* owners as recorded, and a filtered list */
  char owner[STORE_OWNER_MAX];
  assert_int_equal (store_sandbox_owner (f->st, "sb_00000000000000000001", owner, &err), 0);
  assert_string_equal (owner, "acct:alice");
  assert_int_equal (store_sandbox_owner (f->st, "sb_00000000000000000009", owner, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  struct store_sandbox *l;
  size_t n;
  assert_int_equal (store_sandbox_list_owned (f->st, STORE_RUNNING, "acct:alice", &l, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_int_equal (l[0].charge_ref, create_seq);
  store_sandbox_list_free (l, n);
  assert_int_equal (store_sandbox_list_owned (f->st, STORE_RUNNING, NULL, &l, &n, &err), 0);
  assert_int_equal (n, 2);
  store_sandbox_list_free (l, n);
  /* the running ones of one owner, counted (max_sandboxes_per_owner) */
  int64_t running = -1;
  assert_int_equal (store_sandbox_count_running (f->st, "acct:alice", &running, &err), 0);
  assert_int_equal (running, 1);
  assert_int_equal (store_sandbox_count_running (f->st, "acct:nobody", &running, &err), 0);
  assert_int_equal (running, 0);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_accounts, setup, teardown),
    cmocka_unit_test_setup_teardown (test_keys, setup, teardown),
    cmocka_unit_test_setup_teardown (test_reserve_finish_refund, setup, teardown),
    cmocka_unit_test_setup_teardown (test_no_overdraft_under_threads, setup, teardown),
    cmocka_unit_test_setup_teardown (test_payments, setup, teardown),
    cmocka_unit_test_setup_teardown (test_recover_after_crash, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
