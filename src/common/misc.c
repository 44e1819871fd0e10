/* Ids, clocks, sizes, defaults. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int
sbx_id_new (const char *prefix, char out[SBX_ID_MAX])
{
  unsigned char rnd[10];
  size_t got = 0;
  while (got < sizeof rnd)
    {
      ssize_t n = getrandom (rnd + got, sizeof rnd - got, 0);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      got += (size_t) n;
    }
  int off = snprintf (out, SBX_ID_MAX, "%s_", prefix);
  for (size_t i = 0; i < sizeof rnd; i++)
    off += snprintf (out + off, (size_t) (SBX_ID_MAX - off), "%02x", rnd[i]);
  return 0;
}

int
sbx_id_valid (const char *s, const char *prefix)
{
  size_t pl = strlen (prefix);
  if (!s || strncmp (s, prefix, pl) != 0 || s[pl] != '_')
    return 0;
  const char *p = s + pl + 1;
  size_t n = strlen (p);
  if (n < 1 || n > 40)
    return 0;
  for (; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
      return 0;
  return 1;
}

int64_t
sbx_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
sbx_mono_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void
sbx_time_rfc3339 (int64_t ms, char *buf, size_t cap)
{
  time_t t = (time_t) (ms / 1000);
  struct tm tm;
  gmtime_r (&t, &tm);
  strftime (buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
sbx_parse_size (const char *s, uint64_t *out)
{
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno || end == s || *s == '-')
    return -1;
  unsigned shift = 0;
  switch (*end)
    {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
    }
  if (*end == 'i' || *end == 'B')
    end++;
  if (*end == 'B')
    end++;
  if (*end)
    return -1;
  if (shift && v > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t) v << shift;
  return 0;
}

const char *
sbx_default_state_dir (void)
{
  const char *e = getenv ("SBX_STATE_DIR");
  return e && *e ? e : "/var/lib/sbx";
}

int
sbx_find_sibling (const char *name, char *out, size_t cap)
{
  char self[4096];
  ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (n > 0)
    {
      self[n] = '\0';
      char *slash = strrchr (self, '/');
      if (slash)
        {
          *slash = '\0';
          snprintf (out, cap, "%s/%s", self, name);
          if (access (out, X_OK) == 0)
            return 0;
        }
    }
  snprintf (out, cap, "/usr/local/lib/sbx/%s", name);
  return access (out, X_OK) == 0 ? 0 : -1;
}

uint32_t
sbx_hash_str (const char *s)
{
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *) s; *p; p++)
    h = (h ^ *p) * 16777619u;
  return h;
}
