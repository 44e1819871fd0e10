/* src/store images, layers and volumes against a real SQLite file: insert once, get,
 * update, list, the refusals of delete_unused (running sandboxes, child images, mounted
 * volumes), duplicate and missing names, layer sizes and pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/internal.h"
#include "store/store.h"
#include "store/store_images.h"
#include "test_store_fixture.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void
add_sandbox (struct store *st, const char *id, const char *image)
{
  struct store_sandbox sb = { .status = STORE_RUNNING, .created_at_ms = 1, .timeout_s = 60 };
  snprintf (sb.id, sizeof sb.id, "%s", id);
  snprintf (sb.image, sizeof sb.image, "%s", image);
  struct sbx_err err = { 0 };
  assert_int_equal (store_sandbox_insert (st, &sb, &err), 0);
}

static void
test_images (void **state)
{
  struct store *st = ((struct fixture *) *state)->st;
  struct sbx_err err = { 0 };
  struct store_image im = { .env_json = "", .spec_json = "{\"a\":1}", .created_at_ms = 5 };
  snprintf (im.id, sizeof im.id, "img-1");
  snprintf (im.kind, sizeof im.kind, "build");
  snprintf (im.status, sizeof im.status, "building");
  snprintf (im.base, sizeof im.base, "python:3.11");
  assert_int_equal (store_image_insert (st, &im, &err), 1);
  assert_int_equal (store_image_insert (st, &im, &err), 0); /* exists: left as it is */

  struct store_image got;
  assert_int_equal (store_image_get (st, "img-1", &got, &err), 0);
  assert_string_equal (got.layers_json, "[]");
  assert_null (got.env_json); /* empty optional text is stored as NULL */
  assert_string_equal (got.spec_json, "{\"a\":1}");
  assert_string_equal (got.parent, "");
  store_image_clear (&got);

  assert_int_equal (store_image_update (st, "img-1", "ready", "[\"l1\"]", NULL, &err), 0);
  assert_int_equal (store_image_update (st, "img-1", "ready", NULL, NULL, &err), 0);
  assert_int_equal (store_image_get (st, "img-1", &got, &err), 0);
  assert_string_equal (got.status, "ready");
  assert_string_equal (got.layers_json, "[\"l1\"]"); /* NULL keeps the layers */
  store_image_clear (&got);
  assert_int_equal (store_image_get (st, "img-x", &got, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);

  /* a child image and a running sandbox each keep it */
  struct store_image child = im;
  snprintf (child.id, sizeof child.id, "img-2");
  snprintf (child.parent, sizeof child.parent, "img-1");
  child.created_at_ms = 6;
  assert_int_equal (store_image_insert (st, &child, &err), 1);
  add_sandbox (st, "sb-1", "img-1");
  int64_t sandboxes = -1, children = -1;
  assert_int_equal (store_image_delete_unused (st, "img-1", &sandboxes, &children, &err), 0);
  assert_int_equal (sandboxes, 1);
  assert_int_equal (children, 1);

  struct store_image *list = NULL;
  size_t n = 0;
  assert_int_equal (store_image_list (st, &list, &n, &err), 0);
  assert_int_equal (n, 2);
  assert_string_equal (list[0].id, "img-1");
  assert_string_equal (list[1].parent, "img-1");
  store_image_list_free (list, n);

  assert_int_equal (store_sandbox_terminate (st, "sb-1", 9, "done", &err), 1);
  assert_int_equal (store_image_delete (st, "img-2", &err), 0);
  assert_int_equal (store_image_delete_unused (st, "img-1", &sandboxes, &children, &err), 1);
  assert_int_equal (store_image_delete_unused (st, "img-1", &sandboxes, &children, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
}

static void
test_layers (void **state)
{
  struct store *st = ((struct fixture *) *state)->st;
  struct sbx_err err = { 0 };
  uint64_t b = 0;
  assert_int_equal (store_layer_put (st, "l1", 100, &err), 0);
  assert_int_equal (store_layer_put (st, "l1", 150, &err), 0); /* again: the new size */
  assert_int_equal (store_layer_put (st, "l2", 7, &err), 0);
  assert_int_equal (store_layer_bytes (st, "l1", &b, &err), 0);
  assert_int_equal (b, 150);
  assert_int_equal (store_layer_bytes (st, "l3", &b, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  assert_int_equal (store_layer_prune (st, "[\"l2\"]", &err), 0);
  assert_int_equal (store_layer_bytes (st, "l1", &b, &err), -1);
  assert_int_equal (store_layer_bytes (st, "l2", &b, &err), 0);
  assert_int_equal (store_layer_delete (st, "l2", &err), 0);
  assert_int_equal (store_layer_bytes (st, "l2", &b, &err), -1);
}

static void
test_volumes (void **state)
{
  struct store *st = ((struct fixture *) *state)->st;
  struct sbx_err err = { 0 };
  struct store_volume v = { .name = "data", .size_mb = 64, .created_at_ms = 3 };
  assert_int_equal (store_volume_insert (st, &v, &err), 0);
  assert_int_equal (store_volume_insert (st, &v, &err), -1);
  assert_int_equal (err.code, SBX_E_INVALID);
  assert_string_equal (err.msg, "volume 'data' exists already");
  struct store_volume got;
  assert_int_equal (store_volume_get (st, "data", &got, &err), 0);
  assert_int_equal (got.size_mb, 64);
  assert_int_equal (store_volume_get (st, "nope", &got, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);

  add_sandbox (st, "sb-1", "python:3.11");
  assert_int_equal (store_sandbox_volume_add (st, "sb-1", "data", "/data", &err), 0);
  assert_int_equal (store_sandbox_volume_add (st, "sb-1", "data", "/data", &err), 0);
  assert_int_equal (store_sandbox_volume_add (st, "sb-1", "data", "/a/b", &err), 0);
  struct store_mount *mounts = NULL;
  size_t nm = 0;
  assert_int_equal (store_sandbox_volume_list (st, "sb-1", &mounts, &nm, &err), 0);
  assert_int_equal (nm, 2); /* one row per mount point, by mount point */
  assert_string_equal (mounts[0].target, "/a/b");
  assert_string_equal (mounts[1].target, "/data");
  assert_string_equal (mounts[1].volume, "data");
  free (mounts);
  assert_int_equal (store_sandbox_volume_list (st, "sb-none", &mounts, &nm, &err), 0);
  assert_int_equal (nm, 0);
  free (mounts);
  int64_t users = -1;
  assert_int_equal (store_volume_delete_unused (st, "data", &users, &err), 0);
  assert_int_equal (users, 1);
  struct store_volume *list = NULL;
  size_t n = 0;
  assert_int_equal (store_volume_list (st, &list, &n, &err), 0);
  assert_int_equal (n, 1);
  assert_string_equal (list[0].name, "data");
  free (list);

  assert_int_equal (store_sandbox_terminate (st, "sb-1", 9, "done", &err), 1);
  assert_int_equal (store_volume_delete_unused (st, "data", &users, &err), 1);
  assert_int_equal (users, 0);
  assert_int_equal (store_volume_delete_unused (st, "data", &users, &err), -1);
  assert_int_equal (err.code, SBX_E_NOT_FOUND);
  assert_int_equal (store_volume_list (st, &list, &n, &err), 0);
  assert_int_equal (n, 0);
  free (list);
}

/* Whatever delete_unused answers (in use, deleted, not found), no transaction stays open
 * on the connection: the next BEGIN IMMEDIATE of another query would fail. */
static void
test_delete_unused_closes_its_transaction (void **state)
{
  struct store *st = ((struct fixture *) *state)->st;
  struct sbx_err err = { 0 };
  struct store_volume v = { .name = "data", .size_mb = 64, .created_at_ms = 3 };
  assert_int_equal (store_volume_insert (st, &v, &err), 0);
  add_sandbox (st, "sb-1", "img-1");
  assert_int_equal (store_sandbox_volume_add (st, "sb-1", "data", "/data", &err), 0);
  struct store_image img = { .id = "img-1", .kind = "build", .status = "ready",
                            .base = "python:3.11", .created_at_ms = 1 };
  assert_int_equal (store_image_insert (st, &img, &err), 1);
  int64_t users, sandboxes, children;
  assert_int_equal (store_volume_delete_unused (st, "data", &users, &err), 0);
  assert_true (sqlite3_get_autocommit (st->db));
  assert_int_equal (store_image_delete_unused (st, "img-1", &sandboxes, &children, &err), 0);
  assert_true (sqlite3_get_autocommit (st->db));
  assert_int_equal (store_volume_delete_unused (st, "nope", &users, &err), -1);
  assert_true (sqlite3_get_autocommit (st->db));
  assert_int_equal (store_image_delete_unused (st, "nope", &sandboxes, &children, &err), -1);
  assert_true (sqlite3_get_autocommit (st->db));
  assert_int_equal (store_sandbox_terminate (st, "sb-1", 9, "done", &err), 1);
  assert_int_equal (store_volume_delete_unused (st, "data", &users, &err), 1);
  assert_true (sqlite3_get_autocommit (st->db));
  assert_int_equal (store_image_delete_unused (st, "img-1", &sandboxes, &children, &err), 1);
  assert_true (sqlite3_get_autocommit (st->db));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_images, setup, teardown),
    cmocka_unit_test_setup_teardown (test_layers, setup, teardown),
    cmocka_unit_test_setup_teardown (test_volumes, setup, teardown),
    cmocka_unit_test_setup_teardown (test_delete_unused_closes_its_transaction, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
