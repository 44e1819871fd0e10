/* A set of deadlines ordered by time (a binary min-heap), so that one timer can serve
 * thousands of sandboxes: the supervisor arms a single CLOCK_REALTIME timerfd at the
 * earliest deadline instead of holding a timerfd (an fd) per sandbox. Entries are
 * embedded in their owner, so moving or removing one allocates nothing; only the heap's
 * array grows. Not thread-safe: the owner locks (srv->lock). */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct srv_deadline {
  int64_t at_ms; /* wall clock (CLOCK_REALTIME), ms since the epoch */
  size_t pos;    /* index in the heap + 1; 0 while not queued (a zeroed entry is not) */
};

struct srv_deadlines {
  struct srv_deadline **heap;
  size_t n, cap;
};

/* Queue e at at_ms, or move it there if already queued. -1 (errno ENOMEM) only when the
 * heap had to grow; a queued entry always moves. */
int srv_deadlines_set (struct srv_deadlines *d, struct srv_deadline *e, int64_t at_ms);
/* Take e out; no-op if it is not queued. */
void srv_deadlines_remove (struct srv_deadlines *d, struct srv_deadline *e);
/* The earliest entry (still queued), or NULL when empty. */
struct srv_deadline *srv_deadlines_first (const struct srv_deadlines *d);
/* Take out and return the earliest entry if it is due (at_ms <= now_ms), else NULL. */
struct srv_deadline *srv_deadlines_pop_due (struct srv_deadlines *d, int64_t now_ms);
void srv_deadlines_free (struct srv_deadlines *d);
