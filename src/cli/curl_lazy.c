/* libcurl, loaded only when a command talks to sbxd.
 *
 * Linking libcurl pulls ~30 shared libraries into every `sbx` start; on this project's
 * nested VMs that alone measured 4-6 ms, more than a whole sandbox spawn, and `sbx run`
 * never uses it. So `sbx` is not linked with -lcurl: the libcurl entry points the API
 * commands use are defined here and forward to libcurl.so.4, opened on first use.
 * A command that needs another libcurl function adds it here (the link fails until then). */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static struct
{
  CURLcode (*global_init) (long);
  CURL *(*easy_init) (void);
  CURLcode (*easy_setopt) (CURL *, CURLoption, ...);
  CURLcode (*easy_perform) (CURL *);
  CURLcode (*easy_getinfo) (CURL *, CURLINFO, ...);
  void (*easy_cleanup) (CURL *);
  const char *(*easy_strerror) (CURLcode);
  struct curl_slist *(*slist_append) (struct curl_slist *, const char *);
  void (*slist_free_all) (struct curl_slist *);
} lib;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int loaded;

static void
load (void)
{
  void *h = dlopen ("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!h)
    {
      fprintf (stderr, "sbx: cannot load libcurl (install libcurl4): %s\n", dlerror ());
      return;
    }
#define SYM(field, name)                                                                           \
  do                                                                                               \
    {                                                                                              \
      *(void **) &lib.field = dlsym (h, name);                                                     \
      if (!lib.field)                                                                              \
        {                                                                                          \
          fprintf (stderr, "sbx: libcurl lacks %s\n", name);                                       \
          return;                                                                                  \
        }                                                                                          \
    }                                                                                              \
  while (0)
  SYM (global_init, "curl_global_init");
  SYM (easy_init, "curl_easy_init");
  SYM (easy_setopt, "curl_easy_setopt");
  SYM (easy_perform, "curl_easy_perform");
  SYM (easy_getinfo, "curl_easy_getinfo");
  SYM (easy_cleanup, "curl_easy_cleanup");
  SYM (easy_strerror, "curl_easy_strerror");
  SYM (slist_append, "curl_slist_append");
  SYM (slist_free_all, "curl_slist_free_all");
#undef SYM
  loaded = 1;
}

static int
ready (void)
{
  pthread_once (&load_once, load);
  return loaded;
}

CURLcode
curl_global_init (long flags)
{
  return ready () ? lib.global_init (flags) : CURLE_FAILED_INIT;
}

CURL *
curl_easy_init (void)
{
  return ready () ? lib.easy_init () : NULL;
}

/* Every option's argument is a long, a pointer or a curl_off_t: on the ABIs we build for
 * (x86-64, aarch64) all travel in the same integer registers, so one pointer-sized value
 * forwards any of them. */
CURLcode
curl_easy_setopt (CURL *curl, CURLoption option, ...)
{
  va_list ap;
  va_start (ap, option);
  void *arg = va_arg (ap, void *);
  va_end (ap);
  return ready () ? lib.easy_setopt (curl, option, arg) : CURLE_FAILED_INIT;
}

CURLcode
curl_easy_getinfo (CURL *curl, CURLINFO info, ...)
{
  va_list ap;
  va_start (ap, info);
  void *arg = va_arg (ap, void *);
  va_end (ap);
  return ready () ? lib.easy_getinfo (curl, info, arg) : CURLE_FAILED_INIT;
}

CURLcode
curl_easy_perform (CURL *curl)
{
  return ready () ? lib.easy_perform (curl) : CURLE_FAILED_INIT;
}

void
curl_easy_cleanup (CURL *curl)
{
  if (ready ())
    lib.easy_cleanup (curl);
}

const char *
curl_easy_strerror (CURLcode code)
{
  return ready () ? lib.easy_strerror (code) : "libcurl not available";
}

struct curl_slist *
curl_slist_append (struct curl_slist *list, const char *s)
{
  return ready () ? lib.slist_append (list, s) : NULL;
}

void
curl_slist_free_all (struct curl_slist *list)
{
  if (ready ())
    lib.slist_free_all (list);
}
