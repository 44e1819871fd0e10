/* src/images private declarations, shared by catalog.c, build.c and store.c (and the unit
 * tests). Nothing outside src/images includes this. */
#pragma once

#include "images.h"

#include <stdint.h>

/* One built-in image: a Debian bookworm minbase plus packages. */
struct img_builtin {
  const char *name;    /* public name, matched exactly: "python:3.11" */
  const char *dir;     /* directory under <state_dir>/images: "python-3.11" */
  const char *include; /* mmdebstrap --include=... (fixed, never caller data); NULL for none */
  const char *eta;     /* rough first-build time for the progress line */
};

/* The entry for an exact name, or NULL. */
const struct img_builtin *img_builtin_find (const char *name);

/* "python:3.11, debian:bookworm": for error messages. */
const char *img_builtin_list (void);

/* <state_dir>/images, or -1 (SBX_E_INVALID) if it does not fit in PATH_MAX. */
int img_images_dir (const char *state_dir, char out[PATH_MAX], struct sbx_err *err);

/* 1 if <images_dir>/<dir> is a complete image (rootfs directory and info file), else 0. */
int img_is_complete (const char *images_dir, const char *dir);

/* Build b into <images_dir>/<b->dir>. The caller holds the images lock (lock_fd, which the
 * build process inherits so the lock outlives a crash of the caller). */
int img_build (const char *images_dir, const struct img_builtin *b, int lock_fd, int progress,
               struct sbx_err *err);

/* Make a fresh mmdebstrap rootfs fit to be a read-only lower layer (directories, hostname,
 * hosts, no apt caches). */
int img_finalize_rootfs (const char *rootfs, struct sbx_err *err);

/* Write <image_dir>/image.info (key=value lines) for b with its rootfs size. */
int img_write_info (const char *image_dir, const struct img_builtin *b, int64_t created_ms,
                    uint64_t size_bytes, struct sbx_err *err);

/* Parse image.info text into info (name, created_ms, size_bytes); 0, or -1 if malformed. */
int img_parse_info (const char *text, struct img_info *info);

/* Disk usage of a tree in bytes (st_blocks, hard links counted once, one filesystem). */
int img_du (const char *path, uint64_t *bytes);

#define IMG_INFO_FILE "image.info"
#define IMG_LOCK_FILE ".lock"
#define IMG_BUILD_PREFIX ".build-"
