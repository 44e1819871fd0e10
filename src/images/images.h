/* src/images: the image store. Built-in images are Debian rootfs directories built once
 * from Debian's packages (mmdebstrap) and cached under <state_dir>/images/<name>/rootfs. */
#pragma once

#include "../common/common.h"

#include <limits.h>
#include <stdint.h>

/* 1 if name is a built-in image ("python:3.11", "debian:bookworm"). */
int img_is_builtin (const char *name);

/* Resolve an image name to its rootfs directory, building it first if it is not cached
 * (serialized by a lock file, built in a temp dir and renamed into place, so a crash never
 * leaves a half image). progress != 0 prints build progress to stderr.
 * Errors: SBX_E_INVALID for an unknown name, SBX_E_INTERNAL for a failed build. */
int img_resolve (const char *state_dir, const char *name, int progress, char rootfs[PATH_MAX],
                 struct sbx_err *err);

/* The built-in names, NULL-terminated, in a fixed order. */
const char *const *img_builtin_names (void);

/* Facts about a cached image (from <state_dir>/images/<dir>/image.info). */
struct img_info {
  char name[64];
  int64_t created_ms;  /* wall clock, ms since epoch */
  uint64_t size_bytes; /* disk usage of the rootfs */
  char rootfs[PATH_MAX];
};

/* Never builds. 1 and info filled if name is built and cached, 0 if not cached yet,
 * -1 on error (SBX_E_INVALID for an unknown name). */
int img_stat (const char *state_dir, const char *name, struct img_info *info,
              struct sbx_err *err);
