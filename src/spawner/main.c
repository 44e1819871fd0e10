/* sbx-spawner: clones sandboxes for sbxd (src/runtime/spawner.c says why and how). sbxd
 * starts it with the request socket as fd 3 and its log level as the only argument; it
 * is not meant to be run by hand. Small on purpose: every clone copies its memory map. */
#include "../runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>

int
main (int argc, char **argv)
{
  struct stat st;
  int type = 0;
  socklen_t len = sizeof type;
  if (argc != 2 || fstat (3, &st) < 0 || !S_ISSOCK (st.st_mode)
      || getsockopt (3, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
    {
      fprintf (stderr, "sbx-spawner: started by sbxd only (usage: sbx-spawner LOG_LEVEL, "
                       "request socket on fd 3)\n");
      return 2;
    }
  sbx_log_set_level (atoi (argv[1]));
  return rt_spawner_serve (3) < 0 ? 1 : 0;
}
