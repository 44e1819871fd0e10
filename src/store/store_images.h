/* src/store: images, layers and volumes (schema 3; q_image.c, q_volume.c). */
#pragma once

#include "store.h"

struct store_image {
  char id[SBX_ID_MAX];
  char kind[16];        /* "build" or "snapshot" */
  char status[16];      /* "building", "ready", "failed" */
  char base[64];        /* built-in image the chain starts from */
  char *layers_json;    /* JSON array of layer ids, bottom first; owned */
  char *env_json;       /* owned, or NULL */
  char *workdir;        /* owned, or NULL */
  char parent[SBX_ID_MAX]; /* image this one extends; "" for none */
  char *spec_json;      /* build spec (canonical), or NULL; owned */
  char *error;          /* why a build failed; owned, or NULL */
  int64_t created_at_ms;
  int64_t updated_at_ms;
};
void store_image_clear (struct store_image *im);

/* Insert; 1 if inserted, 0 if an image with this id exists already (left as it is). */
int store_image_insert (struct store *st, const struct store_image *im, struct sbx_err *err);
/* SBX_E_NOT_FOUND if there is none. */
int store_image_get (struct store *st, const char *id, struct store_image *out,
                     struct sbx_err *err);
/* Set status (and, if not NULL, layers_json and error). */
int store_image_update (struct store *st, const char *id, const char *status,
                        const char *layers_json, const char *error, struct sbx_err *err);
/* Every image, oldest first. */
int store_image_list (struct store *st, struct store_image **out, size_t *n, struct sbx_err *err);
void store_image_list_free (struct store_image *list, size_t n);
/* Delete the row unless a running sandbox uses the image or another image extends it:
 * 1 deleted, 0 refused (*sandboxes and *children say why), -1 error (NOT_FOUND if none). */
int store_image_delete_unused (struct store *st, const char *id, int64_t *sandboxes,
                               int64_t *children, struct sbx_err *err);
/* A failed build's row may be replaced by a new attempt. */
int store_image_delete (struct store *st, const char *id, struct sbx_err *err);

/* Layers: disk use, recorded when a layer is made. */
int store_layer_put (struct store *st, const char *id, uint64_t bytes, struct sbx_err *err);
/* 0 and *bytes, or -1 (NOT_FOUND). */
int store_layer_bytes (struct store *st, const char *id, uint64_t *bytes, struct sbx_err *err);
int store_layer_delete (struct store *st, const char *id, struct sbx_err *err);
/* Forget every layer whose id is not in keep_json (a JSON array of ids): after GC. */
int store_layer_prune (struct store *st, const char *keep_json, struct sbx_err *err);

struct store_volume {
  char name[64];
  uint64_t size_mb;
  int64_t created_at_ms;
};
int store_volume_insert (struct store *st, const struct store_volume *v, struct sbx_err *err);
int store_volume_get (struct store *st, const char *name, struct store_volume *out,
                      struct sbx_err *err);
int store_volume_list (struct store *st, struct store_volume **out, size_t *n,
                       struct sbx_err *err);
/* Delete unless a running sandbox mounts it: 1 deleted, 0 refused (*users running
 * sandboxes), -1 error (NOT_FOUND). */
int store_volume_delete_unused (struct store *st, const char *name, int64_t *users,
                                struct sbx_err *err);
/* A volume as one sandbox mounts it. */
struct store_mount {
  char volume[64];
  char target[256]; /* mount point inside, absolute */
};
/* The volumes a sandbox mounts, by mount point; *out is malloc'd (free it), *n rows. */
int store_sandbox_volume_list (struct store *st, const char *sandbox_id,
                               struct store_mount **out, size_t *n, struct sbx_err *err);
int store_sandbox_volume_add (struct store *st, const char *sandbox_id, const char *volume,
                              const char *target, struct sbx_err *err);
