/* libFuzzer target: what sbxd does with the untrusted parts of a request (src/server/).
 * The first input byte picks how the rest is used:
 *   0  a request body: json_loadb with sbxd's flags (http.c), then every validator
 *      (create, exec, sandbox_id, the build spec) and every handler that answers without
 *      a live sandbox (exec in all its forms, status, terminate, snapshot, fork, diff, the
 *      process and files endpoints, image and volume delete) against an sbxd with no
 *      sandboxes and an empty in-memory database;
 *   1  a path and query arguments (NUL-separated): srv_route_match, srv_route_match_id,
 *      the item handlers, GET /sandbox/{id}/files|archive and GET /sandbox/list;
 *   2  bytes as output of a command or a name from a sandbox: srv_utf8_sanitize,
 *      srv_json_text, srv_json_set_text, srv_base64, inside_data_json, inside_utf8_tail;
 *   3  a config file (srv_config_load_file, through a memfd).
 * What it checks beyond the sanitizers: every answer has a status and a JSON body that
 * prints; text made for JSON is valid UTF-8; what is accepted once is accepted again the
 * same (env through the store's form, a canonical build spec). Build with `make fuzz`;
 * run, e.g.:
 *   mkdir -p /tmp/corpus && build/fuzz_requests -max_total_time=60 /tmp/corpus \
 *     tests/fuzz/corpus/requests */
#include "server/build_internal.h"
#include "server/inside.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static struct srv srv;

static void
setup (void)
{
  static int done;
  if (done)
    return;
  done = 1;
  sbx_log_set_level (SBX_LOG_ERROR);
  srv_config_defaults (&srv.cfg);
  snprintf (srv.cfg.state_dir, sizeof srv.cfg.state_dir, "/nonexistent/sbx-fuzz");
  pthread_mutex_init (&srv.lock, NULL);
  pthread_mutex_init (&srv.owner_lock, NULL);
  pthread_cond_init (&srv.ended, NULL);
  srv.epfd = srv.evfd = srv.timerfd = -1;
  struct sbx_err err = { 0 };
  if (store_open (":memory:", &srv.store, &err) < 0)
    {
      fprintf (stderr, "fuzz_requests: %s\n", err.msg);
      abort ();
    }
}

/* An answer must be complete: a status and a body that prints (a NULL body is sbxd's
 * 500 "no reply"). Then free it as http.c does. */
static void
check_reply (struct srv_reply *r)
{
  if (r->stream)
    __builtin_trap (); /* no stream without a sandbox */
  if (r->status < 200 || r->status > 599 || !r->body)
    __builtin_trap ();
  char *t = json_dumps (r->body, SRV_JSON_OUT);
  if (!t)
    __builtin_trap ();
  free (t);
  json_decref (r->body);
  for (int i = 0; i < r->n_hdr; i++)
    free (r->hdr[i].value);
  free (r->text);
  memset (r, 0, sizeof *r);
}

static void
env_roundtrip (const struct srv_env *e)
{
  char *j = srv_env_to_json (e);
  if (e->n && !j)
    __builtin_trap ();
  struct srv_env back;
  if (srv_env_from_json (j, &back) < 0 || back.n != e->n)
    __builtin_trap (); /* the store's form of an accepted env is accepted again */
  for (size_t i = 0; i < e->n; i++)
    {
      /* the store's form has its keys sorted */
      size_t k = 0;
      while (k < back.n && strcmp (back.names[k], e->names[i]))
        k++;
      if (k == back.n || strcmp (back.values[k], e->values[i]))
        __builtin_trap ();
    }
  srv_env_free (&back);
  free (j);
}

static void
fuzz_body (const uint8_t *p, size_t n)
{
  json_error_t je;
  json_t *body = json_loadb ((const char *) p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!body)
    return;
  if (!json_is_object (body))
    {
      json_decref (body);
      return;
    }
  struct sbx_err err = { 0 };
  struct srv_create_req cr;
  if (srv_parse_create (body, &srv.cfg, &cr, &err) == 0)
    {
      if (!cr.image[0] || (cr.workdir && cr.workdir[0] != '/') || cr.env.n > SRV_ENV_MAX_COUNT)
        __builtin_trap ();
      env_roundtrip (&cr.env);
      srv_create_req_free (&cr);
    }
  struct srv_exec_req er;
  if (srv_parse_exec (body, &srv.cfg, &er, &err) == 0)
    {
      if (er.argc < 1 || !er.argv || er.argv[er.argc] || !er.argv[0][0])
        __builtin_trap ();
      env_roundtrip (&er.env);
      srv_exec_req_free (&er);
    }
  char id[SBX_ID_MAX];
  int valid;
  if (srv_parse_sandbox_id (body, id, &valid, &err) == 0 && strlen (id) >= SBX_ID_MAX)
    __builtin_trap ();
  json_t *spec = srv_build_spec_canonical (body, &err);
  if (spec)
    {
      srv_build_spec_id (spec, id);
      if (!sbx_id_valid (id, "img"))
        __builtin_trap ();
      /* canonical means a fixed point */
      json_t *again = srv_build_spec_canonical (spec, &err);
      if (!again || !json_equal (spec, again))
        __builtin_trap ();
      json_decref (again);
      json_decref (spec);
    }

  struct srv_reply r = { 0 };
  srv_h_exec (&srv, body, &r);
  check_reply (&r);
  srv_h_exec_inside (&srv, body, &r);
  check_reply (&r);
  srv_h_status (&srv, body, &r);
  check_reply (&r);
  srv_h_terminate (&srv, body, &r);
  check_reply (&r);
  srv_h_snapshot (&srv, body, &r);
  check_reply (&r);
  srv_h_fork (&srv, body, &r);
  check_reply (&r);
  srv_h_diff (&srv, body, &r);
  check_reply (&r);
  srv_h_image_delete (&srv, body, &r);
  check_reply (&r);
  srv_h_volume_delete (&srv, body, &r);
  check_reply (&r);
  for (int route = SRV_R_INSIDE_FIRST; route <= SRV_R_INSIDE_LAST; route++)
    {
      srv_h_inside (&srv, (enum srv_route) route, body, &r);
      check_reply (&r);
    }
  json_decref (body);
}

/* The i-th NUL-separated string of p (NULL past the last one). */
static const char *
nth (const char *p, size_t n, int i)
{
  size_t at = 0;
  for (; i > 0; i--)
    {
      at += strlen (p + at) + 1;
      if (at >= n)
        return NULL;
    }
  return p + at;
}

static void
fuzz_path (const char *p, size_t n)
{
  const char *allow = "x";
  enum srv_route route = srv_route_match (p, &allow);
  if ((route == SRV_R_NONE) != (allow == NULL))
    __builtin_trap ();
  struct srv_reply r = { 0 };
  if (route == SRV_R_IMAGE_GET || route == SRV_R_VOLUME_ITEM)
    {
      const char *item = srv_route_item ();
      if (!*item || strlen (item) >= 72 || strchr (item, '/'))
        __builtin_trap ();
      if (route == SRV_R_IMAGE_GET)
        {
          srv_h_image_get (&srv, item, &r);
          check_reply (&r);
          srv_h_image_delete_id (&srv, item, &r);
        }
      else
        {
          srv_h_volume_get (&srv, item, &r);
          check_reply (&r);
          srv_h_volume_delete_name (&srv, item, &r);
        }
      check_reply (&r);
    }
  const char *q1 = nth (p, n, 1), *q2 = q1 ? nth (p, n, 2) : NULL;
  const char *q3 = q2 ? nth (p, n, 3) : NULL;
  if (route == SRV_R_FILES_RAW || route == SRV_R_ARCHIVE)
    {
      srv_h_raw_get (&srv, route, p, q1, &r);
      check_reply (&r);
    }
  allow = NULL;
  route = srv_route_match_id (p, &allow);
  if (route != SRV_R_NONE && route != SRV_R_FILES_RAW && route != SRV_R_ARCHIVE)
    __builtin_trap ();
  if (route != SRV_R_NONE && (!srv_method_allowed ("GET", allow)
                              || srv_method_allowed ("POST", allow)))
    __builtin_trap ();
  srv_h_list (&srv, q1, q2, q3, &r);
  check_reply (&r);
}

/* 1 if s (n bytes) is what a JSON string may hold. */
static int
json_ok (const char *s, size_t n)
{
  json_t *j = json_stringn (s, n);
  json_decref (j);
  return j != NULL;
}

static void
fuzz_text (const uint8_t *p, size_t n, const char *cstr)
{
  char *o = NULL;
  size_t ol = 0;
  int replaced = srv_utf8_sanitize (p, n, &o, &ol);
  if (replaced < 0)
    return;
  if (!json_ok (o, ol) || ol > 3 * n || o[ol] != '\0')
    __builtin_trap ();
  /* replaced exactly when the input is not well-formed UTF-8, as jansson judges it */
  if (replaced != !json_ok ((const char *) p, n) || (!replaced && (ol != n || memcmp (o, p, n))))
    __builtin_trap ();
  free (o);

  char *b = srv_base64 (p, n);
  uint8_t *d = NULL;
  size_t dl = 0;
  if (!b || (n && (bill_base64_decode (b, strlen (b), &d, &dl) < 0 || dl != n
                   || memcmp (d, p, n))))
    __builtin_trap ();
  free (d);
  free (b);

  int b64;
  json_t *j = inside_data_json (p, n, 0, &b64);
  if (!j || b64 != !json_ok ((const char *) p, n))
    __builtin_trap ();
  json_decref (j);
  if (inside_utf8_tail (p, n) > 3 || inside_utf8_tail (p, n) > n)
    __builtin_trap ();

  /* A name from inside a sandbox: a C string. */
  size_t cl = strlen (cstr);
  j = srv_json_text (cstr);
  if (!j || (json_ok (cstr, cl) && strcmp (json_string_value (j), cstr)))
    __builtin_trap ();
  json_decref (j);
  json_t *obj = json_object ();
  if (srv_json_set_text (obj, "path", cstr) < 0)
    __builtin_trap ();
  json_t *bv = json_object_get (obj, "path_base64");
  if (!json_is_string (json_object_get (obj, "path")) || (bv != NULL) != !json_ok (cstr, cl))
    __builtin_trap ();
  if (bv)
    {
      if (bill_base64_decode (json_string_value (bv), json_string_length (bv), &d, &dl) < 0
          || dl != cl || memcmp (d, cstr, cl))
        __builtin_trap (); /* the exact bytes */
      free (d);
    }
  char *t = json_dumps (obj, SRV_JSON_OUT);
  if (!t)
    __builtin_trap ();
  free (t);
  json_decref (obj);
}

static void
fuzz_config (const uint8_t *p, size_t n)
{
  static int fd = -1;
  if (fd < 0 && (fd = memfd_create ("fuzz-config", MFD_CLOEXEC)) < 0)
    abort ();
  if (ftruncate (fd, 0) < 0 || pwrite (fd, p, n, 0) != (ssize_t) n)
    abort ();
  char path[64];
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  struct srv_config c;
  srv_config_defaults (&c);
  struct sbx_err err = { 0 };
  srv_config_load_file (&c, path, &err);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  setup ();
  uint8_t mode = data[0] % 4;
  data++;
  size--;
  /* a copy of exactly size bytes (an overread hits the redzone), and a NUL-terminated
   * one for the C-string interfaces */
  uint8_t *p = malloc (size ? size : 1);
  char *s = malloc (size + 1);
  if (!p || !s)
    abort ();
  memcpy (p, data, size);
  memcpy (s, data, size);
  s[size] = '\0';
  switch (mode)
    {
    case 0: fuzz_body (p, size); break;
    case 1: fuzz_path (s, size + 1); break;
    case 2: fuzz_text (p, size, s); break;
    default: fuzz_config (p, size); break;
    }
  free (s);
  free (p);
  return 0;
}
