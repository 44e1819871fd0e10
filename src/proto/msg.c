/* TLV payloads: HELLO, EXEC_START, EXEC_EXIT, ERROR. Records are u16 tag, u32 len, bytes,
 * big-endian. Decoders never read past n, skip unknown tags, and refuse wrong integer
 * widths, duplicated single-valued tags, NUL bytes inside strings and oversize lists. */
#include "proto.h"

#include <errno.h>
#include <string.h>

#define TLV_HEADER 6
#define MAX_LIST 65536

/* ---- encoding ---- */

static int
put_tlv (struct proto_buf *out, uint16_t tag, const void *v, size_t len)
{
  if (len > UINT32_MAX)
    {
      errno = EMSGSIZE;
      return -1;
    }
  uint8_t h[TLV_HEADER] = { (uint8_t) (tag >> 8), (uint8_t) tag,         (uint8_t) (len >> 24),
                            (uint8_t) (len >> 16), (uint8_t) (len >> 8), (uint8_t) len };
  if (proto_buf_reserve (out, sizeof h + len) < 0)
    return -1;
  proto_buf_append (out, h, sizeof h);
  return proto_buf_append (out, v, len);
}

static int
put_u8 (struct proto_buf *out, uint16_t tag, uint8_t v)
{
  return put_tlv (out, tag, &v, 1);
}

static int
put_u32 (struct proto_buf *out, uint16_t tag, uint32_t v)
{
  uint8_t b[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };
  return put_tlv (out, tag, b, sizeof b);
}

static int
put_u64 (struct proto_buf *out, uint16_t tag, uint64_t v)
{
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t) (v >> (56 - 8 * i));
  return put_tlv (out, tag, b, sizeof b);
}

static int
put_str (struct proto_buf *out, uint16_t tag, const char *s)
{
  return put_tlv (out, tag, s, strlen (s));
}

static int
check_size (struct proto_buf *out, size_t start)
{
  if (out->len - start > PROTO_MAX_PAYLOAD)
    {
      errno = EMSGSIZE;
      return -1;
    }
  return 0;
}

/* ---- decoding ---- */

struct tlv_iter {
  const uint8_t *p;
  size_t n;
  size_t off;
};

/* Returns 1 with the next record, 0 at the end, -1 on a truncated record. */
static int
tlv_next (struct tlv_iter *it, uint16_t *tag, const uint8_t **v, uint32_t *len,
          struct sbx_err *err)
{
  size_t left = it->n - it->off;
  if (left == 0)
    return 0;
  if (left < TLV_HEADER)
    return sbx_err_set (err, SBX_E_PROTO, 0, "truncated TLV header at offset %zu", it->off);
  const uint8_t *h = it->p + it->off;
  uint32_t l = (uint32_t) h[2] << 24 | (uint32_t) h[3] << 16 | (uint32_t) h[4] << 8 | h[5];
  if (l > left - TLV_HEADER)
    return sbx_err_set (err, SBX_E_PROTO, 0, "TLV value of %u bytes runs past the payload", l);
  *tag = (uint16_t) (h[0] << 8 | h[1]);
  *len = l;
  *v = h + TLV_HEADER;
  it->off += TLV_HEADER + (size_t) l;
  return 1;
}

static int
get_uint (const uint8_t *v, uint32_t len, uint32_t want, uint64_t *out, uint16_t tag,
          struct sbx_err *err)
{
  if (len != want)
    return sbx_err_set (err, SBX_E_PROTO, 0, "TLV tag %u: %u bytes, want %u", tag, len, want);
  uint64_t x = 0;
  for (uint32_t i = 0; i < len; i++)
    x = x << 8 | v[i];
  *out = x;
  return 0;
}

static int
check_str (const uint8_t *v, uint32_t len, uint16_t tag, struct sbx_err *err)
{
  if (memchr (v, '\0', len))
    return sbx_err_set (err, SBX_E_PROTO, 0, "TLV tag %u: NUL byte inside a string", tag);
  return 0;
}

static char *
dup_str (const uint8_t *v, uint32_t len, uint16_t tag, struct sbx_err *err)
{
  if (check_str (v, len, tag, err) < 0)
    return NULL;
  char *s = malloc ((size_t) len + 1);
  if (!s)
    {
      sbx_err_sys (err, "decode string");
      return NULL;
    }
  memcpy (s, v, len);
  s[len] = '\0';
  return s;
}

/* Single-valued tags (< 64) may appear once. */
static int
mark_seen (uint64_t *seen, uint16_t tag, struct sbx_err *err)
{
  if (tag >= 64)
    return 0;
  if (*seen & (1ull << tag))
    return sbx_err_set (err, SBX_E_PROTO, 0, "TLV tag %u repeated", tag);
  *seen |= 1ull << tag;
  return 0;
}

/* ---- HELLO ---- */

int
proto_hello_encode (struct proto_buf *out, const char *name)
{
  size_t start = out->len;
  if (put_u32 (out, PROTO_TAG_HELLO_VERSION, PROTO_VERSION) < 0
      || put_str (out, PROTO_TAG_HELLO_NAME, name ? name : "") < 0 || check_size (out, start) < 0)
    {
      out->len = start;
      return -1;
    }
  return 0;
}

int
proto_hello_decode (const uint8_t *p, size_t n, uint32_t *version, struct sbx_err *err)
{
  struct tlv_iter it = { p, n, 0 };
  uint16_t tag;
  const uint8_t *v;
  uint32_t len;
  uint64_t seen = 0, x = 0;
  int rc;
  while ((rc = tlv_next (&it, &tag, &v, &len, err)) > 0)
    {
      if (mark_seen (&seen, tag, err) < 0)
        return -1;
      if (tag == PROTO_TAG_HELLO_VERSION)
        {
          if (get_uint (v, len, 4, &x, tag, err) < 0)
            return -1;
          *version = (uint32_t) x;
        }
      else if (tag == PROTO_TAG_HELLO_NAME && check_str (v, len, tag, err) < 0)
        return -1;
    }
  if (rc < 0)
    return sbx_err_wrap (err, "decode hello");
  if (!(seen & (1ull << PROTO_TAG_HELLO_VERSION)))
    return sbx_err_set (err, SBX_E_PROTO, 0, "decode hello: no version");
  return 0;
}

/* ---- EXEC_START ---- */

int
proto_exec_req_encode (const struct proto_exec_req *req, struct proto_buf *out)
{
  size_t start = out->len;
  if (req->argc == 0 || req->argc > MAX_LIST || req->envc > MAX_LIST || !req->argv)
    {
      errno = EINVAL;
      return -1;
    }
  for (size_t i = 0; i < req->argc; i++)
    if (!req->argv[i] || put_str (out, PROTO_TAG_EXEC_ARGV, req->argv[i]) < 0)
      goto fail;
  for (size_t i = 0; i < req->envc; i++)
    if (!req->env[i] || put_str (out, PROTO_TAG_EXEC_ENV, req->env[i]) < 0)
      goto fail;
  if (req->cwd && put_str (out, PROTO_TAG_EXEC_CWD, req->cwd) < 0)
    goto fail;
  if (put_u32 (out, PROTO_TAG_EXEC_STDIN_MODE, req->stdin_mode) < 0
      || put_u64 (out, PROTO_TAG_EXEC_TIMEOUT_MS, req->timeout_ms) < 0
      || put_u64 (out, PROTO_TAG_EXEC_MAX_OUTPUT, req->max_output) < 0)
    goto fail;
  /* The newer tags only when used: an older agent never sees them. */
  if ((req->background && put_u8 (out, PROTO_TAG_EXEC_BACKGROUND, 1) < 0)
      || (req->key && put_str (out, PROTO_TAG_EXEC_KEY, req->key) < 0)
      || (req->pty && (put_u8 (out, PROTO_TAG_EXEC_PTY, 1) < 0
                       || put_u32 (out, PROTO_TAG_EXEC_ROWS, req->rows) < 0
                       || put_u32 (out, PROTO_TAG_EXEC_COLS, req->cols) < 0))
      || check_size (out, start) < 0)
    goto fail;
  return 0;
fail:
  if (errno == 0)
    errno = EINVAL;
  out->len = start;
  return -1;
}

void
proto_exec_req_free (struct proto_exec_req *req)
{
  if (!req)
    return;
  for (size_t i = 0; req->argv && i < req->argc; i++)
    free (req->argv[i]);
  for (size_t i = 0; req->env && i < req->envc; i++)
    free (req->env[i]);
  free (req->argv);
  free (req->env);
  free (req->cwd);
  free (req->key);
  memset (req, 0, sizeof *req);
}

int
proto_exec_req_decode (const uint8_t *p, size_t n, struct proto_exec_req *req,
                       struct sbx_err *err)
{
  memset (req, 0, sizeof *req);
  struct tlv_iter it = { p, n, 0 };
  uint16_t tag;
  const uint8_t *v;
  uint32_t len;
  uint64_t seen = 0, x = 0;
  size_t argc = 0, envc = 0;
  int rc;

  /* Pass 1: validate the structure and every scalar, count the lists. */
  while ((rc = tlv_next (&it, &tag, &v, &len, err)) > 0)
    {
      switch (tag)
        {
        case PROTO_TAG_EXEC_ARGV:
        case PROTO_TAG_EXEC_ENV:
          if (check_str (v, len, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          if ((tag == PROTO_TAG_EXEC_ARGV ? ++argc : ++envc) > MAX_LIST)
            return sbx_err_set (err, SBX_E_PROTO, 0,
                                "decode exec request: more than %d %s entries", MAX_LIST,
                                tag == PROTO_TAG_EXEC_ARGV ? "argv" : "env");
          continue;
        case PROTO_TAG_EXEC_CWD:
          if (check_str (v, len, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          break;
        case PROTO_TAG_EXEC_STDIN_MODE:
          if (get_uint (v, len, 4, &x, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          req->stdin_mode = (uint32_t) x;
          break;
        case PROTO_TAG_EXEC_TIMEOUT_MS:
          if (get_uint (v, len, 8, &x, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          req->timeout_ms = x;
          break;
        case PROTO_TAG_EXEC_MAX_OUTPUT:
          if (get_uint (v, len, 8, &x, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          req->max_output = x;
          break;
        case PROTO_TAG_EXEC_BACKGROUND:
        case PROTO_TAG_EXEC_PTY:
          if (get_uint (v, len, 1, &x, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          if (tag == PROTO_TAG_EXEC_PTY)
            req->pty = x != 0;
          else
            req->background = x != 0;
          break;
        case PROTO_TAG_EXEC_ROWS:
        case PROTO_TAG_EXEC_COLS:
          if (get_uint (v, len, 4, &x, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          *(tag == PROTO_TAG_EXEC_ROWS ? &req->rows : &req->cols) = (uint32_t) x;
          break;
        case PROTO_TAG_EXEC_KEY:
          if (check_str (v, len, tag, err) < 0)
            return sbx_err_wrap (err, "decode exec request");
          if (len == 0 || len > 128)
            return sbx_err_set (err, SBX_E_PROTO, 0, "decode exec request: key of %u bytes",
                                len);
          break;
        default:
          continue; /* unknown: skipped, forward compatible */
        }
      if (mark_seen (&seen, tag, err) < 0)
        return sbx_err_wrap (err, "decode exec request");
    }
  if (rc < 0)
    return sbx_err_wrap (err, "decode exec request");
  if (argc == 0)
    return sbx_err_set (err, SBX_E_PROTO, 0, "decode exec request: empty argv");

  /* Pass 2: copy the strings. */
  req->argv = calloc (argc + 1, sizeof *req->argv);
  req->env = calloc (envc + 1, sizeof *req->env);
  if (!req->argv || !req->env)
    {
      sbx_err_sys (err, "decode exec request");
      goto fail;
    }
  it.off = 0;
  while (tlv_next (&it, &tag, &v, &len, err) > 0)
    {
      char *s;
      if (tag != PROTO_TAG_EXEC_ARGV && tag != PROTO_TAG_EXEC_ENV && tag != PROTO_TAG_EXEC_CWD
          && tag != PROTO_TAG_EXEC_KEY)
        continue;
      if (!(s = dup_str (v, len, tag, err)))
        goto fail;
      if (tag == PROTO_TAG_EXEC_ARGV)
        req->argv[req->argc++] = s;
      else if (tag == PROTO_TAG_EXEC_ENV)
        req->env[req->envc++] = s;
      else if (tag == PROTO_TAG_EXEC_KEY)
        req->key = s;
      else
        req->cwd = s;
    }
  return 0;
fail:
  proto_exec_req_free (req);
  return -1;
}

/* ---- EXEC_EXIT ---- */

int
proto_exec_exit_encode (const struct proto_exec_exit *ex, struct proto_buf *out)
{
  size_t start = out->len;
  if (put_u32 (out, PROTO_TAG_EXIT_CODE, (uint32_t) ex->exit_code) < 0
      || put_u32 (out, PROTO_TAG_EXIT_SIGNAL, (uint32_t) ex->signal) < 0
      || put_u64 (out, PROTO_TAG_EXIT_DURATION_US, ex->duration_us) < 0
      || put_u64 (out, PROTO_TAG_EXIT_STDOUT_BYTES, ex->stdout_bytes) < 0
      || put_u64 (out, PROTO_TAG_EXIT_STDERR_BYTES, ex->stderr_bytes) < 0
      || put_u8 (out, PROTO_TAG_EXIT_STDOUT_TRUNCATED, ex->stdout_truncated) < 0
      || put_u8 (out, PROTO_TAG_EXIT_STDERR_TRUNCATED, ex->stderr_truncated) < 0
      || put_u8 (out, PROTO_TAG_EXIT_TIMED_OUT, ex->timed_out) < 0
      || put_u64 (out, PROTO_TAG_EXIT_CPU_US, ex->cpu_us) < 0
      || put_u64 (out, PROTO_TAG_EXIT_MAX_RSS_KB, ex->max_rss_kb) < 0)
    {
      out->len = start;
      return -1;
    }
  return 0;
}

int
proto_exec_exit_decode (const uint8_t *p, size_t n, struct proto_exec_exit *ex,
                        struct sbx_err *err)
{
  memset (ex, 0, sizeof *ex);
  struct tlv_iter it = { p, n, 0 };
  uint16_t tag;
  const uint8_t *v;
  uint32_t len;
  uint64_t seen = 0, x = 0;
  int rc;
  while ((rc = tlv_next (&it, &tag, &v, &len, err)) > 0)
    {
      uint32_t width;
      switch (tag)
        {
        case PROTO_TAG_EXIT_CODE:
        case PROTO_TAG_EXIT_SIGNAL:
          width = 4;
          break;
        case PROTO_TAG_EXIT_STDOUT_TRUNCATED:
        case PROTO_TAG_EXIT_STDERR_TRUNCATED:
        case PROTO_TAG_EXIT_TIMED_OUT:
          width = 1;
          break;
        case PROTO_TAG_EXIT_DURATION_US:
        case PROTO_TAG_EXIT_STDOUT_BYTES:
        case PROTO_TAG_EXIT_STDERR_BYTES:
        case PROTO_TAG_EXIT_CPU_US:
        case PROTO_TAG_EXIT_MAX_RSS_KB:
          width = 8;
          break;
        default:
          continue;
        }
      if (mark_seen (&seen, tag, err) < 0 || get_uint (v, len, width, &x, tag, err) < 0)
        return sbx_err_wrap (err, "decode exec exit");
      switch (tag)
        {
        case PROTO_TAG_EXIT_CODE: ex->exit_code = (int32_t) (uint32_t) x; break;
        case PROTO_TAG_EXIT_SIGNAL: ex->signal = (int32_t) (uint32_t) x; break;
        case PROTO_TAG_EXIT_DURATION_US: ex->duration_us = x; break;
        case PROTO_TAG_EXIT_STDOUT_BYTES: ex->stdout_bytes = x; break;
        case PROTO_TAG_EXIT_STDERR_BYTES: ex->stderr_bytes = x; break;
        case PROTO_TAG_EXIT_STDOUT_TRUNCATED: ex->stdout_truncated = (uint8_t) x; break;
        case PROTO_TAG_EXIT_STDERR_TRUNCATED: ex->stderr_truncated = (uint8_t) x; break;
        case PROTO_TAG_EXIT_TIMED_OUT: ex->timed_out = (uint8_t) x; break;
        case PROTO_TAG_EXIT_CPU_US: ex->cpu_us = x; break;
        case PROTO_TAG_EXIT_MAX_RSS_KB: ex->max_rss_kb = x; break;
        default: break;
        }
    }
  if (rc < 0)
    return sbx_err_wrap (err, "decode exec exit");
  if (!(seen & (1ull << PROTO_TAG_EXIT_CODE)))
    return sbx_err_set (err, SBX_E_PROTO, 0, "decode exec exit: no exit code");
  return 0;
}

/* ---- ERROR ---- */

int
proto_error_encode (struct proto_buf *out, uint32_t code, const char *msg)
{
  size_t start = out->len;
  /* Bound the message so an ERROR frame always fits. */
  size_t mlen = msg ? strnlen (msg, 4096) : 0;
  if (put_u32 (out, PROTO_TAG_ERROR_CODE, code) < 0
      || put_tlv (out, PROTO_TAG_ERROR_MESSAGE, msg ? msg : "", mlen) < 0)
    {
      out->len = start;
      return -1;
    }
  return 0;
}

int
proto_error_encode_errno (struct proto_buf *out, uint32_t code, int sys_errno, const char *msg)
{
  size_t start = out->len;
  if (proto_error_encode (out, code, msg) < 0
      || (sys_errno > 0 && put_u32 (out, PROTO_TAG_ERROR_ERRNO, (uint32_t) sys_errno) < 0))
    {
      out->len = start;
      return -1;
    }
  return 0;
}

int
proto_error_decode_errno (const uint8_t *p, size_t n, uint32_t *code, int *sys_errno,
                          char *msg, size_t cap, struct sbx_err *err)
{
  if (proto_error_decode (p, n, code, msg, cap, err) < 0)
    return -1;
  *sys_errno = 0;
  struct tlv_iter it = { p, n, 0 };
  uint16_t tag;
  const uint8_t *v;
  uint32_t len;
  uint64_t x = 0;
  while (tlv_next (&it, &tag, &v, &len, err) > 0)
    if (tag == PROTO_TAG_ERROR_ERRNO)
      {
        if (get_uint (v, len, 4, &x, tag, err) < 0)
          return sbx_err_wrap (err, "decode error");
        *sys_errno = x < 4096 ? (int) x : 0;
      }
  return 0;
}

int
proto_error_decode (const uint8_t *p, size_t n, uint32_t *code, char *msg, size_t cap,
                    struct sbx_err *err)
{
  struct tlv_iter it = { p, n, 0 };
  uint16_t tag;
  const uint8_t *v;
  uint32_t len;
  uint64_t seen = 0, x = 0;
  int rc;
  *code = SBX_E_INTERNAL;
  if (msg && cap)
    msg[0] = '\0';
  while ((rc = tlv_next (&it, &tag, &v, &len, err)) > 0)
    {
      if (tag != PROTO_TAG_ERROR_CODE && tag != PROTO_TAG_ERROR_MESSAGE)
        continue;
      if (mark_seen (&seen, tag, err) < 0)
        return sbx_err_wrap (err, "decode error");
      if (tag == PROTO_TAG_ERROR_CODE)
        {
          if (get_uint (v, len, 4, &x, tag, err) < 0)
            return sbx_err_wrap (err, "decode error");
          *code = (uint32_t) x;
          continue;
        }
      if (check_str (v, len, tag, err) < 0)
        return sbx_err_wrap (err, "decode error");
      if (msg && cap)
        {
          size_t k = len < cap - 1 ? len : cap - 1;
          memcpy (msg, v, k);
          msg[k] = '\0';
        }
    }
  if (rc < 0)
    return sbx_err_wrap (err, "decode error");
  return 0;
}
