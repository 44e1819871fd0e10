/* src/images: the image store. Built-in images are Debian rootfs directories built once
 * from Debian's packages (mmdebstrap) and cached under <state_dir>/images/<name>/rootfs. */
#pragma once

#include "../common/common.h"

#include <limits.h>

/* 1 if name is a built-in image ("python:3.11", "debian:bookworm"). */
int img_is_builtin (const char *name);

/* Resolve an image name to its rootfs directory, building it first if it is not cached
 * (serialized by a lock file, built in a temp dir and renamed into place, so a crash never
 * leaves a half image). progress != 0 prints build progress to stderr.
 * Errors: SBX_E_INVALID for an unknown name, SBX_E_INTERNAL for a failed build. */
int img_resolve (const char *state_dir, const char *name, int progress, char rootfs[PATH_MAX],
                 struct sbx_err *err);
