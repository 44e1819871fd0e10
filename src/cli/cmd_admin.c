/* sbx admin: runs the sibling sbx-admin binary (src/admin), which works on the state
 * dir's SQLite database. It is a separate program so that sbx itself does not load
 * SQLite for every `sbx run`. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
cli_cmd_admin (int argc, char **argv)
{
  char path[PATH_MAX];
  if (cli_find_helper ("sbx-admin", path, sizeof path) != 0)
    {
      fprintf (stderr, "sbx: sbx-admin not found next to sbx\n");
      return 125;
    }
  argv[0] = (char *) "sbx-admin";
  execv (path, argv);
  fprintf (stderr, "sbx: exec %s: %s\n", path, strerror (errno));
  return 125;
}
