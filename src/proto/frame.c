/* Frame building and reading. The reader keeps at most one maximal frame plus one read's
 * worth of bytes, so a peer cannot make it grow without bound. */
#include "proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes asked of one read(); also the slack kept beyond a maximal frame. */
#define READ_CHUNK (64u * 1024)
#define READER_MAX (PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD + READ_CHUNK)

static void
put_be32 (uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t) (v >> 24);
  p[1] = (uint8_t) (v >> 16);
  p[2] = (uint8_t) (v >> 8);
  p[3] = (uint8_t) v;
}

static uint32_t
get_be32 (const uint8_t *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

void
proto_header_encode (uint8_t hdr[PROTO_HEADER_SIZE], uint8_t type, uint32_t id, uint32_t len)
{
  put_be32 (hdr, len);
  hdr[4] = type;
  put_be32 (hdr + 5, id);
}

int
proto_type_valid (uint8_t type)
{
  return type >= PROTO_HELLO && type <= PROTO_TYPE_MAX;
}

int
proto_frame_append (struct proto_buf *out, uint8_t type, uint32_t id, const void *payload,
                    uint32_t len)
{
  if (len > PROTO_MAX_PAYLOAD)
    {
      errno = EMSGSIZE;
      return -1;
    }
  if (proto_buf_reserve (out, PROTO_HEADER_SIZE + (size_t) len) < 0)
    return -1;
  proto_header_encode (out->data + out->len, type, id, len);
  out->len += PROTO_HEADER_SIZE;
  if (len)
    memcpy (out->data + out->len, payload, len);
  out->len += len;
  return 0;
}

int
proto_frame_write (int fd, uint8_t type, uint32_t id, const void *payload, uint32_t len)
{
  if (len > PROTO_MAX_PAYLOAD)
    {
      errno = EMSGSIZE;
      return -1;
    }
  uint8_t hdr[PROTO_HEADER_SIZE];
  proto_header_encode (hdr, type, id, len);
  struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *) payload, len } };
  int niov = len ? 2 : 1;
  int use_send = 1;
  struct iovec *v = iov;
  while (niov > 0)
    {
      ssize_t n;
      if (use_send)
        {
          /* MSG_NOSIGNAL: a dead peer is an error return, never a SIGPIPE. */
          struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t) niov };
          n = sendmsg (fd, &m, MSG_NOSIGNAL);
          if (n < 0 && errno == ENOTSOCK)
            {
              use_send = 0;
              continue;
            }
        }
      else
        n = writev (fd, v, niov);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      size_t done = (size_t) n;
      while (niov > 0 && done >= v->iov_len)
        {
          done -= v->iov_len;
          v++;
          niov--;
        }
      if (niov > 0)
        {
          v->iov_base = (uint8_t *) v->iov_base + done;
          v->iov_len -= done;
        }
    }
  return 0;
}

void
proto_reader_init (struct proto_reader *r)
{
  memset (r, 0, sizeof *r);
}

void
proto_reader_free (struct proto_reader *r)
{
  proto_buf_free (&r->in);
  r->consumed = 0;
}

size_t
proto_reader_pending (const struct proto_reader *r)
{
  return r->in.len - r->consumed;
}

ssize_t
proto_reader_fill (struct proto_reader *r, int fd)
{
  /* Drop consumed bytes first: payloads handed out earlier die here (documented). */
  if (r->consumed > 0)
    {
      size_t left = r->in.len - r->consumed;
      memmove (r->in.data, r->in.data + r->consumed, left);
      r->in.len = left;
      r->consumed = 0;
    }
  size_t room = READER_MAX - r->in.len;
  if (room == 0)
    {
      /* Only possible when the caller fills without taking frames out. */
      errno = ENOBUFS;
      return -1;
    }
  if (room > READ_CHUNK)
    room = READ_CHUNK;
  if (proto_buf_reserve (&r->in, room) < 0)
    return -1;
  for (;;)
    {
      ssize_t n = read (fd, r->in.data + r->in.len, room);
      if (n < 0 && errno == EINTR)
        continue;
      if (n > 0)
        r->in.len += (size_t) n;
      return n;
    }
}

int
proto_reader_next (struct proto_reader *r, struct proto_frame *f, struct sbx_err *err)
{
  size_t avail = r->in.len - r->consumed;
  if (avail < PROTO_HEADER_SIZE)
    return 0;
  const uint8_t *h = r->in.data + r->consumed;
  uint32_t len = get_be32 (h);
  uint8_t type = h[4];
  if (len > PROTO_MAX_PAYLOAD)
    return sbx_err_set (err, SBX_E_PROTO, 0, "frame payload of %u bytes exceeds the %u limit",
                        len, PROTO_MAX_PAYLOAD);
  if (!proto_type_valid (type))
    return sbx_err_set (err, SBX_E_PROTO, 0, "unknown frame type %u", type);
  if (avail - PROTO_HEADER_SIZE < len)
    return 0;
  f->type = type;
  f->id = get_be32 (h + 5);
  f->len = len;
  f->payload = h + PROTO_HEADER_SIZE;
  r->consumed += PROTO_HEADER_SIZE + (size_t) len;
  return 1;
}

int
proto_read_frame (int fd, struct proto_reader *r, struct proto_frame *f, struct sbx_err *err)
{
  for (;;)
    {
      int rc = proto_reader_next (r, f, err);
      if (rc != 0)
        return rc;
      ssize_t n = proto_reader_fill (r, fd);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return sbx_err_sys (err, "read frame");
        }
      if (n == 0)
        {
          if (proto_reader_pending (r) > 0)
            return sbx_err_set (err, SBX_E_PROTO, 0, "connection closed inside a frame");
          return 0;
        }
    }
}
