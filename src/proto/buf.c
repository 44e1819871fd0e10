/* Growable byte buffers for frames and payloads. */
#include "proto.h"

#include <errno.h>
#include <string.h>

void
proto_buf_free (struct proto_buf *b)
{
  if (!b)
    return;
  free (b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

int
proto_buf_reserve (struct proto_buf *b, size_t n)
{
  if (n > SIZE_MAX - b->len)
    {
      errno = ENOMEM;
      return -1;
    }
  size_t need = b->len + n;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc (b->data, cap);
  if (!p)
    return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int
proto_buf_append (struct proto_buf *b, const void *p, size_t n)
{
  if (n == 0)
    return 0;
  if (proto_buf_reserve (b, n) < 0)
    return -1;
  memcpy (b->data + b->len, p, n);
  b->len += n;
  return 0;
}
