/* The supervisor's deadline heap: earliest first, moves and removals keep the order, only
 * due entries pop, and a random mix of operations agrees with a brute-force model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "server/deadlines.h"

#include <stdint.h>
#include <stdlib.h>

/* Heap order and back-pointers, checked after every step of the tests below. */
static void
check_heap (const struct srv_deadlines *d)
{
  for (size_t i = 0; i < d->n; i++)
    {
      assert_int_equal (d->heap[i]->pos, i + 1);
      if (i > 0)
        assert_true (d->heap[(i - 1) / 2]->at_ms <= d->heap[i]->at_ms);
    }
}

static void
test_empty (void **state)
{
  struct srv_deadlines d = { 0 };
  struct srv_deadline e = { 0 };
  assert_null (srv_deadlines_first (&d));
  assert_null (srv_deadlines_pop_due (&d, INT64_MAX));
  srv_deadlines_remove (&d, &e); /* not queued: nothing happens */
  assert_int_equal (e.pos, 0);
  srv_deadlines_free (&d);
}

static void
test_pop_in_order_only_when_due (void **state)
{
  struct srv_deadlines d = { 0 };
  struct srv_deadline e[5] = { { 0 } };
  int64_t at[5] = { 500, 100, 300, 200, 400 };
  for (int i = 0; i < 5; i++)
    assert_int_equal (srv_deadlines_set (&d, &e[i], at[i]), 0);
  check_heap (&d);
  assert_ptr_equal (srv_deadlines_first (&d), &e[1]);
  assert_null (srv_deadlines_pop_due (&d, 99));
  assert_ptr_equal (srv_deadlines_pop_due (&d, 100), &e[1]); /* due at exactly its time */
  assert_int_equal (e[1].pos, 0);
  assert_null (srv_deadlines_pop_due (&d, 199));
  assert_ptr_equal (srv_deadlines_pop_due (&d, 350), &e[3]);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 350), &e[2]);
  assert_null (srv_deadlines_pop_due (&d, 350));
  check_heap (&d);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 1000), &e[4]);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 1000), &e[0]);
  assert_null (srv_deadlines_first (&d));
  srv_deadlines_free (&d);
}

/* A lifetime extended or shortened after creation moves the entry; a popped entry can be
 * queued again (a pool member's recycle time fired while a claim gave it a lifetime). */
static void
test_move_and_requeue (void **state)
{
  struct srv_deadlines d = { 0 };
  struct srv_deadline a = { 0 }, b = { 0 }, c = { 0 };
  srv_deadlines_set (&d, &a, 100);
  srv_deadlines_set (&d, &b, 200);
  srv_deadlines_set (&d, &c, 300);
  assert_int_equal (srv_deadlines_set (&d, &a, 250), 0); /* extended */
  check_heap (&d);
  assert_ptr_equal (srv_deadlines_first (&d), &b);
  assert_int_equal (srv_deadlines_set (&d, &c, 50), 0); /* shortened */
  check_heap (&d);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 1000), &c);
  assert_int_equal (srv_deadlines_set (&d, &c, 225), 0); /* queued again */
  check_heap (&d);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 1000), &b);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 1000), &c);
  assert_ptr_equal (srv_deadlines_pop_due (&d, 1000), &a);
  assert_int_equal (d.n, 0);
  srv_deadlines_free (&d);
}

static void
test_remove (void **state)
{
  struct srv_deadlines d = { 0 };
  struct srv_deadline e[8] = { { 0 } };
  for (int i = 0; i < 8; i++)
    srv_deadlines_set (&d, &e[i], (i * 37) % 8);
  srv_deadlines_remove (&d, &e[3]);
  srv_deadlines_remove (&d, &e[0]); /* the earliest */
  srv_deadlines_remove (&d, &e[0]); /* twice: no-op */
  check_heap (&d);
  assert_int_equal (d.n, 6);
  int64_t last = -1;
  int n = 0;
  for (struct srv_deadline *x; (x = srv_deadlines_pop_due (&d, INT64_MAX)); n++)
    {
      assert_true (x != &e[0] && x != &e[3]);
      assert_true (x->at_ms >= last);
      last = x->at_ms;
    }
  assert_int_equal (n, 6);
  srv_deadlines_free (&d);
}

/* Thousands of sandboxes (the density target): random sets, moves, removals and pops,
 * compared at each step with the minimum over a plain array. */
#define M 5000
static void
test_random_against_model (void **state)
{
  static struct srv_deadline e[M];
  static int queued[M];
  struct srv_deadlines d = { 0 };
  srand (7);
  for (int step = 0; step < 60000; step++)
    {
      int i = rand () % M;
      int op = rand () % 10;
      if (op < 6)
        {
          assert_int_equal (srv_deadlines_set (&d, &e[i], rand () % 100000), 0);
          queued[i] = 1;
        }
      else if (op < 8)
        {
          srv_deadlines_remove (&d, &e[i]);
          queued[i] = 0;
        }
      else
        {
          int64_t now = rand () % 100000;
          struct srv_deadline *x = srv_deadlines_pop_due (&d, now);
          if (x)
            {
              assert_true (x->at_ms <= now);
              assert_int_equal (x->pos, 0);
              queued[x - e] = 0;
            }
        }
      int64_t min = INT64_MAX;
      size_t n = 0;
      for (int k = 0; k < M; k++)
        if (queued[k])
          {
            n++;
            if (e[k].at_ms < min)
              min = e[k].at_ms;
            assert_int_not_equal (e[k].pos, 0);
          }
        else
          assert_int_equal (e[k].pos, 0);
      assert_int_equal (d.n, n);
      struct srv_deadline *f = srv_deadlines_first (&d);
      if (n)
        assert_int_equal (f->at_ms, min);
      else
        assert_null (f);
      if (step % 1000 == 0)
        check_heap (&d);
    }
  check_heap (&d);
  srv_deadlines_free (&d);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_empty),
    cmocka_unit_test (test_pop_in_order_only_when_due),
    cmocka_unit_test (test_move_and_requeue),
    cmocka_unit_test (test_remove),
    cmocka_unit_test (test_random_against_model),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
