/* Logging to stderr with a level; thread-safe (one fprintf per line). */
#include "common.h"

#include <stdio.h>
#include <time.h>

static int log_level = SBX_LOG_INFO;

void
sbx_log_set_level (int level)
{
  log_level = level;
}

int
sbx_log_get_level (void)
{
  return log_level;
}

void
sbx_log (int level, const char *fmt, ...)
{
  static const char *const names[] = { "error", "warn", "info", "debug" };
  if (level > log_level)
    return;
  char line[1024];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  /* One record, one line: messages quote what callers and sandboxes send (a request path
   * may hold a decoded "%0A"), and a newline in it would forge a record of its own. */
  char safe[sizeof line * 4];
  size_t j = 0;
  for (const unsigned char *p = (const unsigned char *) line; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      j += (size_t) snprintf (safe + j, sizeof safe - j, "\\x%02x", *p);
    else
      safe[j++] = (char) *p;
  safe[j] = '\0';
  char ts[32];
  sbx_time_rfc3339 (sbx_now_ms (), ts, sizeof ts);
  fprintf (stderr, "%s %s: %s\n", ts, names[level < 0 ? 0 : level > 3 ? 3 : level], safe);
}
