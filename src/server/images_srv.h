/* sbxd's side of images, snapshots and volumes (issue 5): turning an image name or id
 * into the runtime's layer list, volumes into mounts, and the handlers of /image/...,
 * /volume/..., /sandbox/snapshot, /sandbox/fork, /sandbox/diff. docs/images.md. */
#pragma once

#include "server.h"
#include "../images/images.h"
#include "../runtime/runtime.h"
#include "../store/store_images.h"

#define SRV_FORK_MAX 64

/* What a create needs from its image and volumes, resolved. */
struct srv_image_prep {
  char base_rootfs[PATH_MAX];
  char layer_paths[IMG_CHAIN_MAX + 1][PATH_MAX];
  const char *lowers[RT_LOWERS_MAX]; /* top first */
  size_t n_lowers;
  struct rt_volume vols[RT_VOLUMES_MAX];
  char vol_src[RT_VOLUMES_MAX][PATH_MAX];
  char vol_tgt[RT_VOLUMES_MAX][RT_VOLUME_TARGET_MAX + 1];
  char vol_name[RT_VOLUMES_MAX][64];
  size_t n_volumes;
  int locked; /* holds the layer lock (read) until srv_image_prep_done */
};

/* Resolve req->image (built-in name or image id) and body's "volumes" object into prep;
 * an image's env and workdir become the defaults of req's. Takes the layer lock (read) so
 * no GC removes a layer before the sandbox holds its mounts; release with
 * srv_image_prep_done. Errors: SBX_E_INVALID (unknown image, bad volumes),
 * SBX_E_NOT_FOUND (no such volume). */
int srv_image_prepare (struct srv *s, json_t *body, struct srv_create_req *req,
                       struct srv_image_prep *prep, struct sbx_err *err);
/* Fill the runtime spec's layers and volumes from prep. */
void srv_image_spec (struct srv_image_prep *prep, struct rt_spec *spec);
/* After the spawn (ok or not): record the sandbox's volumes, release the lock. */
void srv_image_prep_done (struct srv *s, struct srv_image_prep *prep, const char *sandbox_id,
                          int spawned);

/* At start, before any build: a build an earlier sbxd was running when it died ("building"
 * in the store, nothing building it now) becomes "failed", so that nobody waits for it;
 * posting its spec again retries it (image_build.c). */
void srv_builds_recover (struct srv *s);
/* At start: a volume on disk that the store does not know (sbxd died between making its
 * filesystem and recording it, or between forgetting it and removing it; or the database
 * is an older copy) is moved aside with its data (img_volume_set_aside), so that its name
 * can be created again (h_volume.c). */
void srv_volumes_recover (struct srv *s);

/* The layer lock: readers make or use layers, GC is the writer. */
void srv_layers_rdlock (void);
void srv_layers_wrlock (void);
void srv_layers_unlock (void);

/* An image's chain: base name and layer ids (bottom first). */
struct srv_chain {
  char base[64];
  char ids[IMG_CHAIN_MAX + 1][IMG_LAYER_ID_MAX];
  size_t n;
  char *env_json;  /* owned, or NULL */
  char *workdir;   /* owned, or NULL */
  char status[16];
};
void srv_chain_free (struct srv_chain *c);
/* Look an image (name or id) up; SBX_E_NOT_FOUND / SBX_E_INVALID if there is none. */
int srv_chain_get (struct srv *s, const char *image, struct srv_chain *c, struct sbx_err *err);
/* Record a new image made of chain c (flattening first if it is too long); its id in id.
 * kind "snapshot" or "build"; parent the image it extends (or NULL). */
int srv_image_record (struct srv *s, struct srv_chain *c, const char *kind, const char *parent,
                      const char *spec_json, char id[SBX_ID_MAX], struct sbx_err *err);
/* Flatten c's layers into one if there are more than IMG_CHAIN_MAX. */
int srv_chain_fit (struct srv *s, struct srv_chain *c, struct sbx_err *err);
/* c's layer ids as a JSON array text (malloc'ed), or NULL. */
char *srv_chain_layers_json (const struct srv_chain *c);
/* "img_" + 32 hex of SHA-256 over a tag and a text. */
void srv_image_id_of (const char *tag, const char *text, char id[SBX_ID_MAX]);
/* Snapshot a live sandbox into an image (freeze, copy the upper, thaw); *reply_set when r
 * holds an error reply already (not live). */
int srv_snapshot (struct srv *s, const char *sandbox_id, char image_id[SBX_ID_MAX],
                  struct srv_reply *r, struct sbx_err *err);
/* How long the last srv_snapshot of this thread kept the sandbox frozen, ms. */
double srv_snapshot_frozen_ms (void);
