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

/* ---- layers, snapshots, flattening, diffs (layer.c, tree.c, flatten.c, diff.c, snap.c) ----
 * An image is a base (a built-in image's rootfs) plus a chain of read-only delta layers
 * under <state_dir>/layers/<id>, ids derived from content (docs/images.md). */
#define IMG_LAYER_ID_MAX 40
#define IMG_CHAIN_MAX 8 /* delta layers over the base; a longer chain is flattened */

/* <state_dir>/layers/<id> into out; SBX_E_INVALID for a malformed id. */
int img_layer_path (const char *state_dir, const char *id, char out[PATH_MAX],
                    struct sbx_err *err);
/* Make a layer from a sandbox's upper layer: the tree under "upper/" of scratch_fd (the
 * runtime's rt_sandbox_scratch_fd), owners shifted down by uid_base. parent is the id of
 * the layer under it (or the base's name); the new id hashes it with the content. The
 * caller freezes the sandbox around this. *bytes: disk use of the new layer. */
int img_layer_from_upper (const char *state_dir, int scratch_fd, uint32_t uid_base,
                          const char *parent, char id[IMG_LAYER_ID_MAX], uint64_t *bytes,
                          struct sbx_err *err);
/* The same in three phases, so the sandbox is frozen only for the middle one (snap2.c):
 * begin copies while it runs, sync (call it frozen) brings the copy up to date, commit
 * hashes and files the layer (after thawing). abort drops an unfinished one. */
struct img_snap;
int img_snap_begin (const char *state_dir, int scratch_fd, uint32_t uid_base,
                    struct img_snap **out, struct sbx_err *err);
int img_snap_sync (struct img_snap *sn, uint64_t *recopied, struct sbx_err *err);
/* Frees sn, whatever happens. */
int img_snap_commit (struct img_snap *sn, const char *parent, char id[IMG_LAYER_ID_MAX],
                     uint64_t *bytes, struct sbx_err *err);
void img_snap_abort (struct img_snap *sn);
/* Merge the delta layers ids[0..n) (bottom first) into one layer with the same meaning
 * over the same base. */
int img_layer_flatten (const char *state_dir, const char *base, const char *const *ids, size_t n,
                       char id[IMG_LAYER_ID_MAX], uint64_t *bytes, struct sbx_err *err);
/* Remove every layer directory (and leftover temp directory) whose id is not in keep.
 * *removed and *freed (bytes) say what went. */
int img_layer_gc (const char *state_dir, const char *const *keep, size_t n, size_t *removed,
                  uint64_t *freed, struct sbx_err *err);
/* Remove the temp directories of layers being made (snapshots, builds, flattens) that an
 * sbxd killed meanwhile left. Only while nothing makes layers: at sbxd's start. The
 * number removed. */
int img_layer_tmp_clean (const char *state_dir);

/* Disk usage of a tree in bytes (st_blocks, hard links counted once, one filesystem). */
int img_du (const char *path, uint64_t *bytes);

#define IMG_VIEW_MAX 32
/* A stack of directories, top first, as an overlay would merge them. uid_base[i] != 0
 * says layer i holds host ids base.. (a sandbox's upper), 0 that it holds inside ids. */
struct img_view {
  int fds[IMG_VIEW_MAX];
  uint32_t uid_base[IMG_VIEW_MAX];
  int n;
};
struct img_diff {
  char **created, **modified, **deleted; /* "/a/b", sorted */
  size_t n_created, n_modified, n_deleted;
};
/* What changed from old to new. The first o_private layers of old and n_private of new
 * are the ones not shared by both (the rest, at the bottom, are the same directories). */
int img_diff_views (const struct img_view *old, int o_private, const struct img_view *nw,
                    int n_private, struct img_diff *out, struct sbx_err *err);
void img_diff_free (struct img_diff *d);
/* Open the regular file rel ("a/b") as the view shows it (whiteouts and opaque directories
 * honoured, no symlink followed); -1 with errno (ENOENT, EINVAL if not a regular file). */
int img_view_open (const struct img_view *v, const char *rel);

/* ---- volumes (volume.c) ---------------------------------------------------------------
 * A volume is an ext4 filesystem image <state_dir>/volumes/<name>.img (sparse, size_mb),
 * loop-mounted by sbxd on <state_dir>/volumes/<name> (nosuid, nodev, noexec off) and
 * bound into sandboxes idmapped. Its size is its quota; it outlives every sandbox. */
#define IMG_VOLUME_MB_MIN 16
#define IMG_VOLUME_MB_MAX (1024 * 1024)
/* 1 if name is a valid volume name: [a-z0-9][a-z0-9_.-]{0,62}. */
int img_volume_name_ok (const char *name);
/* Create the image file and filesystem (mkfs.ext4) and mount it. */
int img_volume_create (const char *state_dir, const char *name, uint64_t size_mb,
                       struct sbx_err *err);
/* Mount it if it is not mounted (sbxd start, first use); its mount point in dir. */
int img_volume_mount (const char *state_dir, const char *name, char dir[PATH_MAX],
                      struct sbx_err *err);
/* Unmount (lazily) and remove the image file. */
int img_volume_delete (const char *state_dir, const char *name, struct sbx_err *err);
/* A volume the store does not know, moved out of the way with its data kept: unmounted,
 * its mount point removed, its image renamed to volumes/.unrecorded/<name>-<time>.img
 * (out; "" if there was no image). The name is free again. */
int img_volume_set_aside (const char *state_dir, const char *name, char out[PATH_MAX],
                          struct sbx_err *err);
/* Bytes in use and total, from statfs of the mounted filesystem. */
int img_volume_usage (const char *state_dir, const char *name, uint64_t *used, uint64_t *total,
                      struct sbx_err *err);
