/* Layer directories: where they live, how a finished one is put in place, their ids. */
#include "layer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
img_layers_dir (const char *state_dir, char out[PATH_MAX], struct sbx_err *err)
{
  if (!state_dir || !*state_dir || strlen (state_dir) + 100 >= PATH_MAX)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "bad state directory");
  snprintf (out, PATH_MAX, "%s/" IMG_LAYERS_DIR, state_dir);
  if (mkdir (out, 0700) < 0 && errno != EEXIST)
    return sbx_err_sys (err, "mkdir '%s'", out);
  return 0;
}

int
img_layer_tmp (const char *state_dir, char out[PATH_MAX], struct sbx_err *err)
{
  char dir[PATH_MAX], rnd[SBX_ID_MAX];
  if (img_layers_dir (state_dir, dir, err) < 0)
    return -1;
  if (sbx_id_new ("t", rnd) < 0)
    return sbx_err_sys (err, "random id");
  snprintf (out, PATH_MAX, "%s/" IMG_LAYER_TMP_PREFIX "%s", dir, rnd);
  /* the root of the layer; its real mode and owner are set by whoever fills it */
  if (mkdir (out, 0755) < 0)
    return sbx_err_sys (err, "mkdir '%s'", out);
  return 0;
}

int
img_layer_commit (const char *state_dir, const char *tmp, const char *id, struct sbx_err *err)
{
  char dir[PATH_MAX], final[PATH_MAX];
  if (img_layers_dir (state_dir, dir, err) < 0)
    return -1;
  snprintf (final, sizeof final, "%s/%s", dir, id);
  if (rename (tmp, final) == 0)
    return 0;
  if (errno != EEXIST && errno != ENOTEMPTY)
    return sbx_err_sys (err, "rename '%s' to '%s'", tmp, final);
  /* The same content exists already: keep that one. */
  if (sbx_rm_rf (tmp) < 0)
    LOG_WARN ("remove '%s': %s", tmp, strerror (errno));
  return 0;
}

void
img_layer_id (const char *parent, const char *tree_hex, char out[IMG_LAYER_ID_LEN + 1])
{
  struct img_hash h;
  char hex[65];
  if (img_hash_init (&h) < 0)
    {
      /* out of memory: a random id is still unique, only not deduplicated */
      sbx_id_new ("l", hex);
      snprintf (out, IMG_LAYER_ID_LEN + 1, "l%.20s000000000000", hex + 2);
      return;
    }
  img_hash_update (&h, "sbx-layer", 10);
  img_hash_update (&h, parent ? parent : "", strlen (parent ? parent : "") + 1);
  img_hash_update (&h, tree_hex, strlen (tree_hex));
  img_hash_final_hex (&h, hex);
  snprintf (out, IMG_LAYER_ID_LEN + 1, "l%.32s", hex);
}

int
img_layer_id_valid (const char *id)
{
  if (!id || strlen (id) != IMG_LAYER_ID_LEN || id[0] != 'l')
    return 0;
  for (int i = 1; i < IMG_LAYER_ID_LEN; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return 1;
}
