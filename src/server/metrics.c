/* GET /metrics: Prometheus text exposition (version 0.0.4). Counters are relaxed atomics
 * bumped on the request path (no lock, no allocation); the page is built per scrape. */
#include "server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Upper bounds of the latency histogram buckets, seconds (+Inf implied). */
static const double bounds[] = { 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,   1,     2.5,  5,    10 };
#define NB (sizeof bounds / sizeof bounds[0])

struct hist {
  _Atomic uint64_t bucket[NB + 1]; /* not cumulative; the last is +Inf */
  _Atomic uint64_t count;
  _Atomic uint64_t sum_ns;
};

/* HTTP error codes we count; anything else is "other". */
static const char *const codes[] = {
  "invalid_request", "unauthorized", "payment_required", "forbidden", "sandbox_not_found",
  "method_not_allowed", "sandbox_timeout", "sandbox_terminated", "payload_too_large",
  "unsupported_media_type", "too_many_requests", "too_many_sandboxes", "exec_failed",
  "internal_error", "at_capacity", "unavailable", "not_found", "protocol_error",
  "insufficient_funds",
  "payment_invalid", "payment_already_used", "payment_in_progress", "settlement_failed",
  "settlement_error", "facilitator_unreachable", "already_exists", "archive_failed",
  "directory_not_empty", "file_not_found", "process_not_found", "stdin_closed",
  "image_in_use", "image_not_found", "insufficient_storage", "volume_exists",
  "volume_in_use", "volume_not_found", "other",
};
#define NCODES (sizeof codes / sizeof codes[0])

static struct {
  struct hist create[2]; /* by enum srv_metric_src */
  struct hist exec;
  _Atomic uint64_t pool_misses;
  _Atomic uint64_t execs;
  _Atomic uint64_t exec_output_bytes;
  _Atomic uint64_t streamed_bytes;
  _Atomic uint64_t requests;
  _Atomic uint64_t errors[NCODES];
} m;

static void
observe (struct hist *h, int64_t ns)
{
  if (ns < 0)
    ns = 0;
  double sec = ns / 1e9;
  size_t i = 0;
  while (i < NB && sec > bounds[i])
    i++;
  atomic_fetch_add_explicit (&h->bucket[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit (&h->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit (&h->sum_ns, (uint64_t) ns, memory_order_relaxed);
}

void
srv_metrics_create (int source, int64_t ns)
{
  observe (&m.create[source == SRV_M_POOL], ns);
}

void
srv_metrics_pool_miss (void)
{
  atomic_fetch_add_explicit (&m.pool_misses, 1, memory_order_relaxed);
}

void
srv_metrics_exec (int64_t ns, uint64_t out_bytes)
{
  observe (&m.exec, ns);
  atomic_fetch_add_explicit (&m.execs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit (&m.exec_output_bytes, out_bytes, memory_order_relaxed);
}

void
srv_metrics_exec_output (uint64_t n)
{
  atomic_fetch_add_explicit (&m.exec_output_bytes, n, memory_order_relaxed);
}

void
srv_metrics_streamed (uint64_t n)
{
  atomic_fetch_add_explicit (&m.streamed_bytes, n, memory_order_relaxed);
}

void
srv_metrics_reply (enum srv_route route, unsigned status, json_t *body)
{
  (void) route;
  atomic_fetch_add_explicit (&m.requests, 1, memory_order_relaxed);
  if (status < 400)
    return;
  const char *code = json_string_value (json_object_get (json_object_get (body, "error"),
                                                         "code"));
  size_t i = 0;
  while (i < NCODES - 1 && !(code && !strcmp (code, codes[i])))
    i++;
  atomic_fetch_add_explicit (&m.errors[i], 1, memory_order_relaxed);
}

static uint64_t
ld (_Atomic uint64_t *p)
{
  return atomic_load_explicit (p, memory_order_relaxed);
}

static void
put_hist (FILE *f, const char *name, const char *labels, struct hist *h)
{
  uint64_t cum = 0;
  for (size_t i = 0; i <= NB; i++)
    {
      cum += ld (&h->bucket[i]);
      if (i < NB)
        fprintf (f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "",
                 bounds[i], (unsigned long long) cum);
      else
        fprintf (f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "",
                 (unsigned long long) cum);
    }
  const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
  fprintf (f, "%s_sum%s%s%s %.9f\n", name, open, labels, close, ld (&h->sum_ns) / 1e9);
  fprintf (f, "%s_count%s%s%s %llu\n", name, open, labels, close,
           (unsigned long long) ld (&h->count));
}

static void
write_page (struct srv *s, FILE *f)
{
  /* Sandboxes by state: a caller's running or ending ones, and pool members. */
  int running = 0, ending = 0, pool_ready = 0, pool_other = 0;
  pthread_mutex_lock (&s->lock);
  for (struct srv_sandbox *sb = s->live; sb; sb = sb->next)
    {
      if (sb->pooled == SRV_POOL_READY)
        pool_ready++;
      else if (sb->pooled)
        pool_other++;
      else if (sb->state == SRV_SB_LIVE)
        running++;
      else
        ending++;
    }
  int reserved = s->n_reserved;
  pthread_mutex_unlock (&s->lock);
  fprintf (f, "# HELP sbx_sandboxes Sandboxes with a host presence, by state.\n"
              "# TYPE sbx_sandboxes gauge\n"
              "sbx_sandboxes{state=\"running\"} %d\n"
              "sbx_sandboxes{state=\"ending\"} %d\n"
              "sbx_sandboxes{state=\"creating\"} %d\n"
              "sbx_sandboxes{state=\"pool_ready\"} %d\n"
              "sbx_sandboxes{state=\"pool_other\"} %d\n",
           running, ending, reserved, pool_ready, pool_other);
  fprintf (f, "# HELP sbx_max_sandboxes Host capacity (max_sandboxes).\n"
              "# TYPE sbx_max_sandboxes gauge\nsbx_max_sandboxes %d\n",
           s->cfg.max_sandboxes);

  struct srv_pool_stat st[SRV_POOL_KEYS_MAX + 1];
  int n = srv_pool_stats (s, st, SRV_POOL_KEYS_MAX + 1);
  fprintf (f, "# HELP sbx_pool_size Warm pool: configured members per key.\n"
              "# TYPE sbx_pool_size gauge\n");
  for (int i = 0; i < n; i++)
    fprintf (f, "sbx_pool_size{image=\"%s\",cpu_millis=\"%u\",memory_mb=\"%llu\"} %d\n",
             st[i].key.image, st[i].key.cpu_millis, (unsigned long long) st[i].key.memory_mb,
             st[i].key.size);
  fprintf (f, "# HELP sbx_pool_ready Warm pool: members ready to be claimed, per key.\n"
              "# TYPE sbx_pool_ready gauge\n");
  for (int i = 0; i < n; i++)
    fprintf (f, "sbx_pool_ready{image=\"%s\",cpu_millis=\"%u\",memory_mb=\"%llu\"} %d\n",
             st[i].key.image, st[i].key.cpu_millis, (unsigned long long) st[i].key.memory_mb,
             st[i].ready);
  uint64_t hits = ld (&m.create[SRV_M_POOL].count);
  fprintf (f, "# HELP sbx_pool_hits_total Creates served by a pool member.\n"
              "# TYPE sbx_pool_hits_total counter\nsbx_pool_hits_total %llu\n"
              "# HELP sbx_pool_misses_total Creates of a pooled key that found no member ready.\n"
              "# TYPE sbx_pool_misses_total counter\nsbx_pool_misses_total %llu\n",
           (unsigned long long) hits, (unsigned long long) ld (&m.pool_misses));

  fprintf (f, "# HELP sbx_create_duration_seconds Successful creates, handler time.\n"
              "# TYPE sbx_create_duration_seconds histogram\n");
  put_hist (f, "sbx_create_duration_seconds", "source=\"pool\"", &m.create[SRV_M_POOL]);
  put_hist (f, "sbx_create_duration_seconds", "source=\"cold\"", &m.create[SRV_M_COLD]);
  fprintf (f, "# HELP sbx_exec_duration_seconds Plain execs (not streamed), handler time.\n"
              "# TYPE sbx_exec_duration_seconds histogram\n");
  put_hist (f, "sbx_exec_duration_seconds", "", &m.exec);
  fprintf (f, "# HELP sbx_execs_total Plain execs that ran a command.\n"
              "# TYPE sbx_execs_total counter\nsbx_execs_total %llu\n"
              "# HELP sbx_exec_output_bytes_total Output bytes of plain execs (stdout+stderr).\n"
              "# TYPE sbx_exec_output_bytes_total counter\nsbx_exec_output_bytes_total %llu\n"
              "# HELP sbx_streamed_bytes_total Bytes sent in streamed responses.\n"
              "# TYPE sbx_streamed_bytes_total counter\nsbx_streamed_bytes_total %llu\n"
              "# HELP sbx_http_requests_total HTTP requests answered.\n"
              "# TYPE sbx_http_requests_total counter\nsbx_http_requests_total %llu\n",
           (unsigned long long) ld (&m.execs), (unsigned long long) ld (&m.exec_output_bytes),
           (unsigned long long) ld (&m.streamed_bytes), (unsigned long long) ld (&m.requests));
  fprintf (f, "# HELP sbx_errors_total Error answers by error code.\n"
              "# TYPE sbx_errors_total counter\n");
  for (size_t i = 0; i < NCODES; i++)
    fprintf (f, "sbx_errors_total{code=\"%s\"} %llu\n", codes[i],
             (unsigned long long) ld (&m.errors[i]));
}

void
srv_h_metrics (struct srv *s, struct srv_reply *r)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&buf, &len);
  if (!f)
    {
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
      return;
    }
  write_page (s, f);
  if (fclose (f) != 0 || !buf)
    {
      free (buf);
      srv_reply_error (r, SBX_E_INTERNAL, "out of memory");
      return;
    }
  r->status = 200;
  r->text = buf;
  r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
