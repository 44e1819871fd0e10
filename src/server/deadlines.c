/* Deadlines in a binary min-heap (see deadlines.h). Each entry knows its position, so a
 * move or removal is O(log n) without a search. */
#include "deadlines.h"

#include <errno.h>
#include <stdlib.h>

static void
place (struct srv_deadlines *d, size_t i, struct srv_deadline *e)
{
  d->heap[i] = e;
  e->pos = i + 1;
}

/* Move the entry at i towards the root while it is earlier than its parent. */
static void
sift_up (struct srv_deadlines *d, size_t i)
{
  struct srv_deadline *e = d->heap[i];
  while (i > 0)
    {
      size_t parent = (i - 1) / 2;
      if (d->heap[parent]->at_ms <= e->at_ms)
        break;
      place (d, i, d->heap[parent]);
      i = parent;
    }
  place (d, i, e);
}

/* Move the entry at i towards the leaves while a child is earlier. */
static void
sift_down (struct srv_deadlines *d, size_t i)
{
  struct srv_deadline *e = d->heap[i];
  for (;;)
    {
      size_t c = 2 * i + 1;
      if (c >= d->n)
        break;
      if (c + 1 < d->n && d->heap[c + 1]->at_ms < d->heap[c]->at_ms)
        c++;
      if (e->at_ms <= d->heap[c]->at_ms)
        break;
      place (d, i, d->heap[c]);
      i = c;
    }
  place (d, i, e);
}

int
srv_deadlines_set (struct srv_deadlines *d, struct srv_deadline *e, int64_t at_ms)
{
  if (e->pos)
    {
      size_t i = e->pos - 1;
      int64_t old = e->at_ms;
      e->at_ms = at_ms;
      if (at_ms < old)
        sift_up (d, i);
      else
        sift_down (d, i);
      return 0;
    }
  if (d->n == d->cap)
    {
      size_t cap = d->cap ? d->cap * 2 : 64;
      struct srv_deadline **h = realloc (d->heap, cap * sizeof *h);
      if (!h)
        {
          errno = ENOMEM;
          return -1;
        }
      d->heap = h;
      d->cap = cap;
    }
  e->at_ms = at_ms;
  place (d, d->n++, e);
  sift_up (d, d->n - 1);
  return 0;
}

void
srv_deadlines_remove (struct srv_deadlines *d, struct srv_deadline *e)
{
  if (!e->pos)
    return;
  size_t i = e->pos - 1;
  e->pos = 0;
  struct srv_deadline *last = d->heap[--d->n];
  if (i == d->n)
    return; /* it was the last one */
  /* The last entry fills the hole; it may belong above or below it. */
  place (d, i, last);
  if (i > 0 && d->heap[(i - 1) / 2]->at_ms > last->at_ms)
    sift_up (d, i);
  else
    sift_down (d, i);
}

struct srv_deadline *
srv_deadlines_first (const struct srv_deadlines *d)
{
  return d->n ? d->heap[0] : NULL;
}

struct srv_deadline *
srv_deadlines_pop_due (struct srv_deadlines *d, int64_t now_ms)
{
  struct srv_deadline *e = srv_deadlines_first (d);
  if (!e || e->at_ms > now_ms)
    return NULL;
  srv_deadlines_remove (d, e);
  return e;
}

void
srv_deadlines_free (struct srv_deadlines *d)
{
  free (d->heap);
  d->heap = NULL;
  d->n = d->cap = 0;
}
