/* The fixture of the store's unit tests: a fresh database in its own temp dir, opened
 * before each test and removed after it (setup), or only the temp dir and the database's
 * path, for tests that open and close the store themselves (setup_dir). Include after
 * cmocka.h. */
#pragma once

#include "store/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

struct fixture {
  char dir[PATH_MAX];
  char db[PATH_MAX + 16];
  struct store *st; /* NULL after setup_dir */
};

static inline int
setup_dir (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  assert_non_null (f);
  snprintf (f->dir, sizeof f->dir, "/tmp/sbx-test-store-XXXXXX");
  assert_non_null (mkdtemp (f->dir));
  snprintf (f->db, sizeof f->db, "%s/sbx.db", f->dir);
  *state = f;
  return 0;
}

static inline int
setup (void **state)
{
  setup_dir (state);
  struct fixture *f = *state;
  struct sbx_err err = { 0 };
  if (store_open (f->db, &f->st, &err) < 0)
    fail_msg ("store_open: %s", err.msg);
  return 0;
}

static inline int
teardown (void **state)
{
  struct fixture *f = *state;
  if (f->st)
    store_close (f->st);
  sbx_rm_rf (f->dir);
  free (f);
  return 0;
}
