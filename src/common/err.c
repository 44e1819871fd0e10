/* Error records: caller-owned, nothing to free; usable in forked children. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void
vset (struct sbx_err *err, int code, int sys_errno, const char *fmt, va_list ap)
{
  if (!err)
    return;
  err->code = code;
  err->sys_errno = sys_errno;
  vsnprintf (err->msg, sizeof err->msg, fmt, ap);
}

int
sbx_err_set (struct sbx_err *err, int code, int sys_errno, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vset (err, code, sys_errno, fmt, ap);
  va_end (ap);
  return -1;
}

int
sbx_err_sys (struct sbx_err *err, const char *fmt, ...)
{
  int saved = errno;
  va_list ap;
  va_start (ap, fmt);
  vset (err, SBX_E_INTERNAL, saved, fmt, ap);
  va_end (ap);
  if (err)
    {
      size_t n = strlen (err->msg);
      snprintf (err->msg + n, sizeof err->msg - n, ": %s", strerror (saved));
    }
  errno = saved;
  return -1;
}

int
sbx_err_wrap (struct sbx_err *err, const char *fmt, ...)
{
  if (!err)
    return -1;
  char prefix[256];
  char old[sizeof err->msg];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (prefix, sizeof prefix, fmt, ap);
  va_end (ap);
  memcpy (old, err->msg, sizeof old);
  snprintf (err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return -1;
}

void
sbx_err_clear (struct sbx_err *err)
{
  if (err)
    memset (err, 0, sizeof *err);
}

const char *
sbx_code_name (int code)
{
  switch (code)
    {
    case SBX_OK: return "ok";
    case SBX_E_INVALID: return "invalid_request";
    case SBX_E_NOT_FOUND: return "sandbox_not_found";
    case SBX_E_TERMINATED: return "sandbox_terminated";
    case SBX_E_TIMEOUT: return "sandbox_timeout";
    case SBX_E_EXEC_FAILED: return "exec_failed";
    case SBX_E_CAPACITY: return "at_capacity";
    case SBX_E_TOO_LARGE: return "payload_too_large";
    case SBX_E_PROTO: return "protocol_error";
    default: return "internal_error";
    }
}
