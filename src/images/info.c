/* image.info: a few key=value lines describing a cached image. Written once inside the
 * build directory before it is renamed into place; read by img_stat. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
img_write_info (const char *image_dir, const struct img_builtin *b, int64_t created_ms,
                uint64_t size_bytes, struct sbx_err *err)
{
  char path[PATH_MAX], ts[32], text[1024];
  if (snprintf (path, sizeof path, "%s/" IMG_INFO_FILE, image_dir) >= (int) sizeof path)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "image path too long");
  sbx_time_rfc3339 (created_ms, ts, sizeof ts);
  int n = snprintf (text, sizeof text,
                    "name=%s\ndir=%s\ncreated=%s\ncreated_ms=%" PRId64 "\nsize_bytes=%" PRIu64
                    "\nsuite=bookworm\nvariant=minbase\npackages=%s\nbuilder=mmdebstrap\n",
                    b->name, b->dir, ts, created_ms, size_bytes, b->include ? b->include : "");
  if (n < 0 || n >= (int) sizeof text)
    return sbx_err_set (err, SBX_E_INTERNAL, 0, "image info too long");
  cleanup_close int fd
      = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return sbx_err_sys (err, "create '%s'", path);
  if (sbx_write_all (fd, text, (size_t) n) < 0 || fsync (fd) < 0)
    return sbx_err_sys (err, "write '%s'", path);
  return 0;
}

static int
parse_u64 (const char *s, size_t len, uint64_t *out)
{
  if (len == 0 || len > 20)
    return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++)
    {
      if (s[i] < '0' || s[i] > '9')
        return -1;
      uint64_t d = (uint64_t) (s[i] - '0');
      if (v > (UINT64_MAX - d) / 10)
        return -1;
      v = v * 10 + d;
    }
  *out = v;
  return 0;
}

int
img_parse_info (const char *text, struct img_info *info)
{
  int have_name = 0, have_created = 0, have_size = 0;
  memset (info, 0, sizeof *info);
  for (const char *line = text; *line;)
    {
      const char *nl = strchr (line, '\n');
      size_t len = nl ? (size_t) (nl - line) : strlen (line);
      const char *eq = memchr (line, '=', len);
      if (eq)
        {
          size_t kl = (size_t) (eq - line), vl = len - kl - 1;
          const char *v = eq + 1;
          uint64_t u;
          if (kl == 4 && memcmp (line, "name", 4) == 0)
            {
              if (vl == 0 || vl >= sizeof info->name)
                return -1;
              memcpy (info->name, v, vl);
              info->name[vl] = '\0';
              have_name = 1;
            }
          else if (kl == 10 && memcmp (line, "created_ms", 10) == 0)
            {
              if (parse_u64 (v, vl, &u) < 0 || u > INT64_MAX)
                return -1;
              info->created_ms = (int64_t) u;
              have_created = 1;
            }
          else if (kl == 10 && memcmp (line, "size_bytes", 10) == 0)
            {
              if (parse_u64 (v, vl, &info->size_bytes) < 0)
                return -1;
              have_size = 1;
            }
        }
      line += len + (nl ? 1 : 0);
    }
  return have_name && have_created && have_size ? 0 : -1;
}
