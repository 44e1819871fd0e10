/* sbxd configuration: defaults from the host, a JSON file, then flags (flags win). */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>

void
srv_config_defaults (struct srv_config *c)
{
  memset (c, 0, sizeof *c);
  snprintf (c->listen_host, sizeof c->listen_host, "127.0.0.1");
  c->port = 8080;
  snprintf (c->state_dir, sizeof c->state_dir, "%s", sbx_default_state_dir ());
  c->max_sandboxes = 64;
  c->max_output = 1024 * 1024;
  int cores = get_nprocs ();
  c->max_cpu_millis = (uint32_t) (cores > 0 ? cores : 1) * 1000;
  struct sysinfo si;
  uint64_t ram_mb = 2048;
  if (sysinfo (&si) == 0)
    ram_mb = (uint64_t) si.totalram * si.mem_unit / (1024 * 1024);
  /* One sandbox may take at most half of the host's memory. */
  c->max_memory_mb = ram_mb / 2 > SRV_MEMORY_MIN_MB ? ram_mb / 2 : SRV_MEMORY_MIN_MB;
  c->log_level = SBX_LOG_INFO;
  c->connection_limit = 512;
  c->connection_timeout = 120;
  c->max_unread_bytes = 512ull << 20;
  c->prepare_image = 1;
  c->network = BILL_NET_BASE;
  bill_pricing_default (&c->pricing);
  c->pool_size = SRV_POOL_SIZE_DEFAULT;
  c->pool_max_age_s = SRV_POOL_MAX_AGE_DEFAULT;
}

int
srv_config_set_listen (struct srv_config *c, const char *s, struct sbx_err *err)
{
  const char *colon = strrchr (s, ':');
  if (!colon || colon == s)
    return sbx_err_set (err, SBX_E_INVALID, 0, "listen: expected HOST:PORT, got '%s'", s);
  size_t hl = (size_t) (colon - s);
  char host[64];
  if (hl >= sizeof host)
    return sbx_err_set (err, SBX_E_INVALID, 0, "listen: host too long");
  memcpy (host, s, hl);
  host[hl] = '\0';
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
    {
      memmove (host, host + 1, hl - 2);
      host[hl - 2] = '\0';
    }
  char *end;
  errno = 0;
  long port = strtol (colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
    return sbx_err_set (err, SBX_E_INVALID, 0, "listen: bad port in '%s'", s);
  if (!strcmp (host, "localhost"))
    snprintf (host, sizeof host, "127.0.0.1");
  unsigned char buf[16];
  if (inet_pton (AF_INET, host, buf) != 1 && inet_pton (AF_INET6, host, buf) != 1)
    return sbx_err_set (err, SBX_E_INVALID, 0, "listen: '%s' is not an IP address", host);
  snprintf (c->listen_host, sizeof c->listen_host, "%s", host);
  c->port = (uint16_t) port;
  return 0;
}

int
srv_config_is_loopback (const struct srv_config *c)
{
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton (AF_INET, c->listen_host, &a4) == 1)
    return (ntohl (a4.s_addr) >> 24) == 127;
  if (inet_pton (AF_INET6, c->listen_host, &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK (&a6);
  return 0;
}

int
srv_config_set_log_level (struct srv_config *c, const char *s, struct sbx_err *err)
{
  static const char *const names[] = { "error", "warn", "info", "debug" };
  for (int i = 0; i < 4; i++)
    if (!strcmp (s, names[i]))
      {
        c->log_level = i;
        return 0;
      }
  return sbx_err_set (err, SBX_E_INVALID, 0, "log level must be error, warn, info or debug");
}

static int
get_uint (json_t *v, const char *key, uint64_t lo, uint64_t hi, uint64_t *out,
          struct sbx_err *err)
{
  if (!json_is_integer (v) || json_integer_value (v) < 0
      || (uint64_t) json_integer_value (v) < lo || (uint64_t) json_integer_value (v) > hi)
    return sbx_err_set (err, SBX_E_INVALID, 0, "config %s: expected an integer in %llu..%llu",
                        key, (unsigned long long) lo, (unsigned long long) hi);
  *out = (uint64_t) json_integer_value (v);
  return 0;
}

/* The config keys that are a plain int of struct srv_config in a range. */
static const struct int_key {
  const char *key;
  uint64_t min, max;
  size_t offset;
} int_keys[] = {
  { "max_sandboxes", 1, 100000, offsetof (struct srv_config, max_sandboxes) },
  { "connection_limit", 4, 100000, offsetof (struct srv_config, connection_limit) },
  { "max_sandboxes_per_owner", 0, 100000, offsetof (struct srv_config, max_per_owner) },
  { "max_requests_per_owner", 0, 100000, offsetof (struct srv_config, max_requests_per_owner) },
};

static const struct int_key *
int_key (const char *key)
{
  for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++)
    if (!strcmp (key, int_keys[i].key))
      return &int_keys[i];
  return NULL;
}

int
srv_config_load_file (struct srv_config *c, const char *path, struct sbx_err *err)
{
  json_error_t je;
  json_t *root = json_load_file (path, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return sbx_err_set (err, SBX_E_INVALID, 0, "config '%s': line %d: %s", path, je.line,
                        je.text);
  int rc = -1;
  if (!json_is_object (root))
    {
      sbx_err_set (err, SBX_E_INVALID, 0, "config '%s': expected a JSON object", path);
      goto out;
    }
  const char *key;
  json_t *v;
  json_object_foreach (root, key, v)
    {
      uint64_t u;
      int money;
      const struct int_key *ik;
      if (!strcmp (key, "listen") || !strcmp (key, "state_dir") || !strcmp (key, "log_level")
          || !strcmp (key, "init_path"))
        {
          if (!json_is_string (v) || strlen (json_string_value (v)) != json_string_length (v))
            {
              sbx_err_set (err, SBX_E_INVALID, 0, "config %s: expected a string", key);
              goto out;
            }
          const char *s = json_string_value (v);
          if (!strcmp (key, "listen") && srv_config_set_listen (c, s, err) < 0)
            goto out;
          if (!strcmp (key, "log_level") && srv_config_set_log_level (c, s, err) < 0)
            goto out;
          if (!strcmp (key, "state_dir"))
            snprintf (c->state_dir, sizeof c->state_dir, "%s", s);
          if (!strcmp (key, "init_path"))
            snprintf (c->init_path, sizeof c->init_path, "%s", s);
        }
      else if ((ik = int_key (key)))
        {
          if (get_uint (v, key, ik->min, ik->max, &u, err) < 0)
            goto out;
          *(int *) ((char *) c + ik->offset) = (int) u;
        }
      else if (!strcmp (key, "max_output"))
        {
          if (get_uint (v, key, 1024, 64 * 1024 * 1024, &u, err) < 0)
            goto out;
          c->max_output = u;
        }
      else if (!strcmp (key, "max_memory_mb"))
        {
          if (get_uint (v, key, SRV_MEMORY_MIN_MB, UINT32_MAX, &u, err) < 0)
            goto out;
          c->max_memory_mb = u;
        }
      else if (!strcmp (key, "max_cpu"))
        {
          if (!json_is_number (v) || json_number_value (v) < 0.1
              || json_number_value (v) > 1024)
            {
              sbx_err_set (err, SBX_E_INVALID, 0, "config max_cpu: expected 0.1..1024");
              goto out;
            }
          c->max_cpu_millis = (uint32_t) (json_number_value (v) * 1000 + 0.5);
        }
      else if (!strcmp (key, "connection_timeout"))
        {
          if (get_uint (v, key, 0, 86400, &u, err) < 0)
            goto out;
          c->connection_timeout = (unsigned) u;
        }
      else if (!strcmp (key, "max_unread_mb"))
        {
          if (get_uint (v, key, 16, 1 << 20, &u, err) < 0)
            goto out;
          c->max_unread_bytes = u << 20;
        }
      else if (!strcmp (key, "prepare_image"))
        {
          if (!json_is_boolean (v))
            {
              sbx_err_set (err, SBX_E_INVALID, 0, "config prepare_image: expected a boolean");
              goto out;
            }
          c->prepare_image = json_is_true (v);
        }
      else if ((money = srv_config_money_key (c, key, v, err)) != 0)
        {
          if (money < 0)
            goto out;
        }
      else if ((money = srv_config_pool_key (c, key, v, err)) != 0)
        {
          if (money < 0)
            goto out;
        }
      else
        {
          sbx_err_set (err, SBX_E_INVALID, 0, "config '%s': unknown key '%s'", path, key);
          goto out;
        }
    }
  rc = 0;
out:
  json_decref (root);
  return rc;
}
