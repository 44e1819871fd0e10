/* Private to sbxd's image builds: image_build.c (the handler and the build jobs),
 * build_spec.c (the canonical spec and its id), build_apt.c (apt on the host) and
 * build_step.c (a step in a build sandbox). */
#pragma once

#include "images_srv.h"

#include <jansson.h>

#define SRV_BUILD_MAX_PACKAGES 100

/* Validate a POST /image/build body into a canonical spec object (new reference): sorted
 * and deduplicated packages, defaults filled in. NULL with SBX_E_INVALID. */
json_t *srv_build_spec_canonical (json_t *body, struct sbx_err *err);
/* The image id of a canonical spec (a hash of its compact, key-sorted text). */
void srv_build_spec_id (json_t *spec, char id[SBX_ID_MAX]);

/* Append a line to a build log (best effort). */
void srv_build_log (int fd, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* Download pkgs (and what they need that chain c's image lacks) into <work>/debs, with
 * apt-get on the host; its output goes to log_fd. */
int srv_build_apt_download (struct srv *s, const struct srv_chain *c, json_t *pkgs,
                            const char *work, int log_fd, struct sbx_err *err);

/* One build step: packages to install, then files to write, then commands to run. */
struct srv_build_step {
  json_t *apt;     /* array or NULL */
  json_t *files;   /* object or NULL */
  json_t *run;     /* array or NULL */
  json_t *env;     /* the image env for the commands (object) */
  const char *workdir;
};
/* Run st in a fresh build sandbox on chain c (waiting for a free build slot); its upper
 * layer becomes *layer. */
int srv_build_step_run (struct srv *s, const struct srv_chain *c,
                        const struct srv_build_step *st, int log_fd,
                        char layer[IMG_LAYER_ID_MAX], struct sbx_err *err);
