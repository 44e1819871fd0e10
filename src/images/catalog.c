/* The built-in images: names, cache directories and the packages each one adds to a
 * Debian bookworm minbase. Names are matched exactly (no tags, no case folding), so a
 * name never reaches a path or an argv unless it is one of these constants. */
#include "internal.h"

#include <string.h>

static const struct img_builtin builtins[] = {
  /* python3-pip ships /usr/bin/pip and pip3; python-is-python3 adds /usr/bin/python. */
  { "python:3.11", "python-3.11", "python3,python3-pip,python-is-python3,ca-certificates",
    "~30 s" },
  { "debian:bookworm", "debian-bookworm", NULL, "~20 s" },
};

#define N_BUILTINS (sizeof builtins / sizeof builtins[0])

static const char *const names[N_BUILTINS + 1] = { "python:3.11", "debian:bookworm", NULL };

const struct img_builtin *
img_builtin_find (const char *name)
{
  if (!name)
    return NULL;
  for (size_t i = 0; i < N_BUILTINS; i++)
    if (strcmp (builtins[i].name, name) == 0)
      return &builtins[i];
  return NULL;
}

int
img_is_builtin (const char *name)
{
  return img_builtin_find (name) != NULL;
}

const char *const *
img_builtin_names (void)
{
  return names;
}

const char *
img_builtin_list (void)
{
  return "python:3.11, debian:bookworm";
}
