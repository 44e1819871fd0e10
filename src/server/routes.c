/* Routing: the same routes under every API prefix, so clients written for the reference
 * services work by changing only the host. Paths match exactly (no trailing slash). */
#include "server.h"

#include <string.h>

static const char *const prefixes[] = { "/v1", "/api/v1/modal", "/v1/marketplace/compute" };

static const struct
{
  const char *path;
  enum srv_route route;
  const char *method;
} routes[] = {
  { "/sandbox/create", SRV_R_CREATE, "POST" },
  { "/sandbox/exec", SRV_R_EXEC, "POST" },
  { "/sandbox/status", SRV_R_STATUS, "POST" },
  { "/sandbox/terminate", SRV_R_TERMINATE, "POST" },
  { "/sandbox/list", SRV_R_LIST, "GET" },
  { "/image/build", SRV_R_IMAGE_BUILD, "POST" },
  { "/image/list", SRV_R_IMAGE_LIST, "GET" },
  { "/image/delete", SRV_R_IMAGE_DELETE, "POST" },
  { "/image/gc", SRV_R_IMAGE_GC, "POST" },
  { "/sandbox/snapshot", SRV_R_SNAPSHOT, "POST" },
  { "/sandbox/fork", SRV_R_FORK, "POST" },
  { "/sandbox/diff", SRV_R_DIFF, "POST" },
  { "/volume/create", SRV_R_VOLUME_CREATE, "POST" },
  { "/volume/list", SRV_R_VOLUME_LIST, "GET" },
  { "/volume/delete", SRV_R_VOLUME_DELETE, "POST" },
  { "/health", SRV_R_HEALTH, "GET" },
  { "/sandbox/process/output", SRV_R_PROC_OUTPUT, "POST" },
  { "/sandbox/process/wait", SRV_R_PROC_WAIT, "POST" },
  { "/sandbox/process/stdin", SRV_R_PROC_STDIN, "POST" },
  { "/sandbox/process/signal", SRV_R_PROC_SIGNAL, "POST" },
  { "/sandbox/process/resize", SRV_R_PROC_RESIZE, "POST" },
  { "/sandbox/process/list", SRV_R_PROC_LIST, "POST" },
  { "/sandbox/files/read", SRV_R_FILE_READ, "POST" },
  { "/sandbox/files/write", SRV_R_FILE_WRITE, "POST" },
  { "/sandbox/files/append", SRV_R_FILE_APPEND, "POST" },
  { "/sandbox/files/list", SRV_R_FILE_LIST, "POST" },
  { "/sandbox/files/stat", SRV_R_FILE_STAT, "POST" },
  { "/sandbox/files/mkdir", SRV_R_FILE_MKDIR, "POST" },
  { "/sandbox/files/remove", SRV_R_FILE_REMOVE, "POST" },
  { "/sandbox/files/rename", SRV_R_FILE_RENAME, "POST" },
  { "/sandbox/files/watch", SRV_R_FILE_WATCH, "POST" },
  { "/pricing", SRV_R_PRICING, "GET" },
  { "/usage", SRV_R_USAGE, "GET" },
  { "/metrics", SRV_R_METRICS, "GET" },
};

static __thread char route_item[72];

const char *
srv_route_item (void)
{
  return route_item;
}

/* "<pfx><id>": one path segment of [A-Za-z0-9_.:-] (an image id or a built-in name, a
 * volume name). */
static int
match_item (const char *rest, const char *pfx)
{
  size_t pl = strlen (pfx);
  if (strncmp (rest, pfx, pl) != 0)
    return 0;
  const char *id = rest + pl;
  size_t n = strlen (id);
  if (n == 0 || n >= sizeof route_item)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')
          || (id[i] >= '0' && id[i] <= '9') || id[i] == '_' || id[i] == '.' || id[i] == ':'
          || id[i] == '-'))
      return 0;
  memcpy (route_item, id, n + 1);
  return 1;
}

enum srv_route
srv_route_match (const char *path, const char **allow)
{
  for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++)
    {
      size_t pl = strlen (prefixes[p]);
      if (strncmp (path, prefixes[p], pl) != 0)
        continue;
      for (size_t r = 0; r < sizeof routes / sizeof routes[0]; r++)
        if (!strcmp (path + pl, routes[r].path))
          {
            *allow = routes[r].method;
            return routes[r].route;
          }
      if (match_item (path + pl, "/image/"))
        {
          *allow = "GET, DELETE";
          return SRV_R_IMAGE_GET;
        }
      if (match_item (path + pl, "/volume/"))
        {
          *allow = "GET, DELETE";
          return SRV_R_VOLUME_ITEM;
        }
      enum srv_route r = srv_route_match_id (path + pl, allow);
      if (r != SRV_R_NONE)
        return r;
    }
  *allow = NULL;
  return SRV_R_NONE;
}
