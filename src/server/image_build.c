/* POST /image/build: placeholder until the builder lands. */
#include "images_srv.h"

void
srv_h_image_build (struct srv *s, json_t *body, struct srv_reply *r)
{
  srv_reply_http (r, 501, "not_implemented", "image builds are not implemented yet");
}
