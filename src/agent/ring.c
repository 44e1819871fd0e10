/* Ring buffers of process output with absolute offsets: a reader that comes back later
 * asks for "from byte N" and gets exactly the bytes after it, or learns (start > N) that
 * the oldest ones were dropped. Grown on demand so idle processes cost little. */
#include "agent.h"

#include <errno.h>
#include <string.h>

#define RING_MIN (64u * 1024)

static int
grow (struct ring *r, size_t need)
{
  size_t ncap = r->cap ? r->cap : RING_MIN;
  while (ncap < need && ncap < AGENT_RING_MAX)
    ncap *= 2;
  if (ncap <= r->cap)
    return 0;
  uint8_t *nd = malloc (ncap);
  if (!nd)
    return -1;
  /* Re-lay the held bytes out for the new modulus. */
  for (uint64_t off = r->start; off < r->end;)
    {
      size_t pos = (size_t) (off & (ncap - 1));
      size_t n = (size_t) (r->end - off);
      if (n > ncap - pos)
        n = ncap - pos;
      ring_copy (r, off, nd + pos, n);
      off += n;
    }
  free (r->data);
  r->data = nd;
  r->cap = ncap;
  return 0;
}

int
ring_append (struct ring *r, const void *p, size_t n)
{
  const uint8_t *src = p;
  if (n == 0)
    return 0;
  size_t held = (size_t) (r->end - r->start);
  if (held + n > r->cap && r->cap < AGENT_RING_MAX && grow (r, held + n) < 0)
    {
      errno = ENOMEM;
      return -1;
    }
  if (n > r->cap)
    {
      /* Only the last cap bytes can be kept. */
      src += n - r->cap;
      r->end += n - r->cap;
      r->start = r->end;
      n = r->cap;
    }
  while (n)
    {
      size_t pos = (size_t) (r->end & (r->cap - 1));
      size_t k = r->cap - pos < n ? r->cap - pos : n;
      memcpy (r->data + pos, src, k);
      src += k;
      n -= k;
      r->end += k;
    }
  if (r->end - r->start > r->cap)
    r->start = r->end - r->cap;
  return 0;
}

void
ring_copy (const struct ring *r, uint64_t off, void *out, size_t n)
{
  uint8_t *dst = out;
  while (n)
    {
      size_t pos = (size_t) (off & (r->cap - 1));
      size_t k = r->cap - pos < n ? r->cap - pos : n;
      memcpy (dst, r->data + pos, k);
      dst += k;
      off += k;
      n -= k;
    }
}

void
ring_free (struct ring *r)
{
  free (r->data);
  memset (r, 0, sizeof *r);
}
