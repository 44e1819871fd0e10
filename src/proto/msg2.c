/* The TLV messages of the process table, files and watches (frame types 12-27), and the
 * EXEC_STARTED payload. One table maps each tag to its width and field in struct
 * proto_msg, so encoder and decoder cannot disagree. */
#include "proto.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

enum kind { K_NONE, K_U8, K_U32, K_U64, K_STR, K_BYTES };

#define F(tag, k, field) [tag] = { k, offsetof (struct proto_msg, field) }
static const struct
{
  enum kind k;
  size_t off;
} fields[PROTO_M_MAX + 1] = {
  F (PROTO_M_PROC_ID, K_U32, proc_id),         F (PROTO_M_PID, K_U32, pid),
  F (PROTO_M_RUNNING, K_U8, running),          F (PROTO_M_EXIT_CODE, K_U32, exit_code),
  F (PROTO_M_SIGNAL, K_U32, signal),           F (PROTO_M_OUT_START, K_U64, out_start),
  F (PROTO_M_ERR_START, K_U64, err_start),     F (PROTO_M_OUT_END, K_U64, out_end),
  F (PROTO_M_ERR_END, K_U64, err_end),         F (PROTO_M_OUT_TOTAL, K_U64, out_total),
  F (PROTO_M_ERR_TOTAL, K_U64, err_total),     F (PROTO_M_OUT_EARLIEST, K_U64, out_earliest),
  F (PROTO_M_ERR_EARLIEST, K_U64, err_earliest), F (PROTO_M_WAIT_MS, K_U64, wait_ms),
  F (PROTO_M_MAX_BYTES, K_U64, max_bytes),     F (PROTO_M_FOLLOW, K_U8, follow),
  F (PROTO_M_DATA, K_BYTES, data),             F (PROTO_M_EOF, K_U8, eof),
  F (PROTO_M_ROWS, K_U32, rows),               F (PROTO_M_COLS, K_U32, cols),
  F (PROTO_M_KEY, K_STR, key),                 F (PROTO_M_PTY, K_U8, pty),
  F (PROTO_M_PATH, K_STR, path),               F (PROTO_M_PATH2, K_STR, path2),
  F (PROTO_M_MODE, K_U32, mode),               F (PROTO_M_SIZE, K_U64, size),
  F (PROTO_M_MTIME_NS, K_U64, mtime_ns),       F (PROTO_M_DEPTH, K_U32, depth),
  F (PROTO_M_FLAGS, K_U32, flags),             F (PROTO_M_KIND, K_U32, kind),
  F (PROTO_M_DURATION_US, K_U64, duration_us), F (PROTO_M_CPU_US, K_U64, cpu_us),
  F (PROTO_M_MAX_RSS_KB, K_U64, max_rss_kb),   F (PROTO_M_COMMAND, K_STR, command),
  F (PROTO_M_STARTED_MS, K_U64, started_ms),   F (PROTO_M_TIMED_OUT, K_U8, timed_out),
  F (PROTO_M_TARGET, K_STR, target),           F (PROTO_M_UID, K_U32, uid),
  F (PROTO_M_GID, K_U32, gid),                 F (PROTO_M_EXISTING, K_U8, existing),
  F (PROTO_M_OFFSET, K_U64, offset),           F (PROTO_M_LENGTH, K_U64, length),
  F (PROTO_M_BACKGROUND, K_U8, background),
};
#undef F

static int
put (struct proto_buf *out, uint16_t tag, const void *v, size_t len)
{
  uint8_t h[6] = { (uint8_t) (tag >> 8),  (uint8_t) tag,         (uint8_t) (len >> 24),
                   (uint8_t) (len >> 16), (uint8_t) (len >> 8), (uint8_t) len };
  if (proto_buf_reserve (out, sizeof h + len) < 0)
    return -1;
  proto_buf_append (out, h, sizeof h);
  return len ? proto_buf_append (out, v, len) : 0;
}

static int
put_uint (struct proto_buf *out, uint16_t tag, uint64_t v, unsigned width)
{
  uint8_t b[8];
  for (unsigned i = 0; i < width; i++)
    b[i] = (uint8_t) (v >> (8 * (width - 1 - i)));
  return put (out, tag, b, width);
}

int
proto_msg_encode (const struct proto_msg *m, struct proto_buf *out)
{
  size_t start = out->len;
  const char *base = (const char *) m;
  for (uint16_t t = 1; t <= PROTO_M_MAX; t++)
    {
      if (!PROTO_HAS (m, t) || fields[t].k == K_NONE)
        continue;
      const void *f = base + fields[t].off;
      int rc = 0;
      switch (fields[t].k)
        {
        case K_U8: rc = put_uint (out, t, *(const uint8_t *) f, 1); break;
        case K_U32: rc = put_uint (out, t, *(const uint32_t *) f, 4); break;
        case K_U64: rc = put_uint (out, t, *(const uint64_t *) f, 8); break;
        case K_STR:
          {
            const char *s = *(char *const *) f;
            rc = put (out, t, s ? s : "", s ? strlen (s) : 0);
            break;
          }
        case K_BYTES: rc = put (out, t, m->data, m->data_len); break;
        default: break;
        }
      if (rc < 0)
        goto fail;
    }
  if (out->len - start > PROTO_MAX_PAYLOAD)
    {
      errno = EMSGSIZE;
      goto fail;
    }
  return 0;
fail:
  out->len = start;
  return -1;
}

void
proto_msg_free (struct proto_msg *m)
{
  if (!m)
    return;
  free (m->key);
  free (m->path);
  free (m->path2);
  free (m->command);
  free (m->target);
  memset (m, 0, sizeof *m);
}

static int
decode_into (const uint8_t *p, size_t n, struct proto_msg *m, struct sbx_err *err)
{
  char *base = (char *) m;
  size_t off = 0;
  while (off < n)
    {
      if (n - off < 6)
        return sbx_err_set (err, SBX_E_PROTO, 0, "truncated TLV header at offset %zu", off);
      const uint8_t *h = p + off;
      uint16_t tag = (uint16_t) (h[0] << 8 | h[1]);
      uint32_t len = (uint32_t) h[2] << 24 | (uint32_t) h[3] << 16 | (uint32_t) h[4] << 8 | h[5];
      if (len > n - off - 6)
        return sbx_err_set (err, SBX_E_PROTO, 0, "TLV value of %u bytes runs past the payload",
                            len);
      const uint8_t *v = h + 6;
      off += 6 + (size_t) len;
      if (tag == 0 || tag > PROTO_M_MAX || fields[tag].k == K_NONE)
        continue; /* unknown: skipped */
      if (PROTO_HAS (m, tag))
        return sbx_err_set (err, SBX_E_PROTO, 0, "TLV tag %u repeated", tag);
      m->seen |= 1ull << tag;
      void *f = base + fields[tag].off;
      enum kind k = fields[tag].k;
      if (k == K_U8 || k == K_U32 || k == K_U64)
        {
          uint32_t want = k == K_U8 ? 1 : k == K_U32 ? 4 : 8;
          if (len != want)
            return sbx_err_set (err, SBX_E_PROTO, 0, "TLV tag %u: %u bytes, want %u", tag, len,
                                want);
          uint64_t x = 0;
          for (uint32_t i = 0; i < len; i++)
            x = x << 8 | v[i];
          if (k == K_U8)
            *(uint8_t *) f = (uint8_t) x;
          else if (k == K_U32)
            *(uint32_t *) f = (uint32_t) x;
          else
            *(uint64_t *) f = x;
        }
      else if (k == K_STR)
        {
          if (memchr (v, '\0', len))
            return sbx_err_set (err, SBX_E_PROTO, 0, "TLV tag %u: NUL byte inside a string",
                                tag);
          char *s = malloc ((size_t) len + 1);
          if (!s)
            return sbx_err_sys (err, "decode string");
          memcpy (s, v, len);
          s[len] = '\0';
          *(char **) f = s;
        }
      else
        {
          m->data = v;
          m->data_len = len;
        }
    }
  return 0;
}

int
proto_msg_decode (const uint8_t *p, size_t n, struct proto_msg *m, struct sbx_err *err)
{
  memset (m, 0, sizeof *m);
  if (decode_into (p, n, m, err) < 0)
    {
      proto_msg_free (m);
      return sbx_err_wrap (err, "decode message");
    }
  return 0;
}

int
proto_started_encode (struct proto_buf *out, uint32_t pid, uint32_t proc_id, int existing)
{
  uint8_t b[4] = { (uint8_t) (pid >> 24), (uint8_t) (pid >> 16), (uint8_t) (pid >> 8),
                   (uint8_t) pid };
  struct proto_msg m = { .proc_id = proc_id, .existing = existing ? 1 : 0 };
  PROTO_SET (&m, PROTO_M_PROC_ID);
  PROTO_SET (&m, PROTO_M_EXISTING);
  if (proto_buf_append (out, b, 4) < 0)
    return -1;
  return proto_msg_encode (&m, out);
}

int
proto_started_decode (const uint8_t *p, size_t n, uint32_t *pid, uint32_t *proc_id,
                      int *existing, struct sbx_err *err)
{
  if (n < 4)
    return sbx_err_set (err, SBX_E_PROTO, 0, "exec started: payload shorter than a pid");
  *pid = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
  struct proto_msg m;
  if (proto_msg_decode (p + 4, n - 4, &m, err) < 0)
    return -1;
  *proc_id = m.proc_id;
  *existing = m.existing;
  proto_msg_free (&m);
  return 0;
}
