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
  { "/health", SRV_R_HEALTH, "GET" },
  { "/pricing", SRV_R_PRICING, "GET" },
  { "/usage", SRV_R_USAGE, "GET" },
};

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
    }
  *allow = NULL;
  return SRV_R_NONE;
}
