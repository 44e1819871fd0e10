/* src/images private: image layers on disk. A layer is a directory tree under
 * <state_dir>/layers/<id> (the directory is 0700 root: no host user can reach into it),
 * in overlayfs's format: a whiteout is a 0/0 character device, an opaque directory
 * carries the xattr user.overlay.opaque=y (the sandboxes mount with userxattr), owners
 * are the ids seen inside a sandbox (0 = root), every layer is read-only once renamed
 * into place. Its id is derived from its content: "l" + 32 hex digits of SHA-256 over the
 * parent's id and a canonical walk of the tree (names sorted; type, mode, owner, size,
 * mtime, link target, user xattrs and file bytes of each entry). */
#pragma once

#include "internal.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#define IMG_LAYER_ID_LEN 33 /* "l" + 32 hex */
#define IMG_LAYERS_DIR "layers"
#define IMG_LAYER_TMP_PREFIX ".tmp-"

/* SHA-256 over a stream (OpenSSL EVP; SHA-NI where the CPU has it). */
struct img_hash {
  EVP_MD_CTX *md;
};
int img_hash_init (struct img_hash *h);
void img_hash_update (struct img_hash *h, const void *p, size_t n);
/* Finish into 64 hex digits + NUL and free. */
void img_hash_final_hex (struct img_hash *h, char out[65]);
void img_hash_free (struct img_hash *h);

/* How a tree is copied. */
struct img_copy {
  uint32_t uid_base;   /* source owners are host ids base.. base+65535 (a sandbox's
                        * upper); 0: owners are copied as they are (layer to layer) */
  struct img_hash *hash; /* fed with the canonical walk, or NULL */
  uint64_t bytes;      /* file bytes copied */
  uint64_t entries;
  int dst_root;        /* the destination tree's root fd (for hard links) */
  int dry;             /* hash only: nothing is created (dfd is ignored) */
  struct img_link *links; /* hard links seen: (dev, ino) -> first path */
  size_t nlinks, caplinks;
};
struct img_link {
  dev_t dev;
  ino_t ino;
  char *path; /* relative to dst_root */
};
void img_copy_free (struct img_copy *x);

/* Copy the tree under the directory sfd into the directory dfd (both exist; dfd empty),
 * entries sorted by name, nothing followed: symlinks are copied as symlinks, device nodes
 * other than whiteouts and sockets are skipped. rel is the path of sfd below the root
 * ("" at the top) for hashing and hard links. */
int img_copy_tree (struct img_copy *x, int sfd, int dfd, const char *rel, struct sbx_err *err);
/* Copy one entry name of sfd (any type, directories recursively) into dfd. */
int img_copy_entry (struct img_copy *x, int sfd, int dfd, const char *name, const char *rel,
                    struct sbx_err *err);
/* Copy the user.* xattrs of sfd to dfd (minus overlay bookkeeping that only means
 * something in the upper layer it was written in). */
int img_copy_xattrs (int sfd, int dfd, struct sbx_err *err);

/* Sorted names of a directory (no "." and ".."); free with img_names_free. */
int img_list_names (int dirfd, char ***names, size_t *n);
void img_names_free (char **names, size_t n);
int img_cmp_names (const void *a, const void *b); /* qsort of char * */

/* Merge delta layer directories (top first) into the empty directory dfd; see flatten.c. */
int img_flatten_into (const char *const *dirs, size_t n, int dfd, struct img_hash *hash,
                      struct sbx_err *err);

/* Overlay encodings. */
int img_is_whiteout (const struct stat *st);
int img_is_opaque (int dirfd);            /* user.overlay.opaque = "y" (or trusted.) */
int img_set_opaque (int dirfd);

/* <state_dir>/layers (made 0700 if missing). */
int img_layers_dir (const char *state_dir, char out[PATH_MAX], struct sbx_err *err);
/* A fresh empty temp directory under layers/ for a layer being made; its path in out. */
int img_layer_tmp (const char *state_dir, char out[PATH_MAX], struct sbx_err *err);
/* Rename tmp into place as layer id (its tree is done). If that layer exists already
 * (same content), tmp is removed and the existing one kept. */
int img_layer_commit (const char *state_dir, const char *tmp, const char *id,
                      struct sbx_err *err);
/* "l" + 32 hex of SHA-256("sbx-layer\0" parent "\0" tree_hex). */
void img_layer_id (const char *parent, const char *tree_hex, char out[IMG_LAYER_ID_LEN + 1]);
int img_layer_id_valid (const char *id);
