/* The fixture of the store's unit tests: a fresh database in its own temp dir, opened
 * before each test and removed after it. Include after cmocka.h. */
#pragma once

#include "store/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

struct fixture {
  char dir[PATH_MAX];
  char db[PATH_MAX + 16];
  struct store *st;
};

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  snprintf (f->dir, sizeof f->dir, "/tmp/sbx-test-store-XXXXXX");
  assert_non_null (mkdtemp (f->dir));
  snprintf (f->db, sizeof f->db, "%s/sbx.db", f->dir);
  struct sbx_err err = { 0 };
  if (store_open (f->db, &f->st, &err) < 0)
    fail_msg ("store_open: %s", err.msg);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;
  store_close (f->st);
  sbx_rm_rf (f->dir);
  free (f);
  return 0;
}
