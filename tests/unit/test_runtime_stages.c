/* enum rt_stage: every stage has a unique name, and docs/runtime.md lists the same stages
 * with the same numbers in the same order (run from the repo root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "runtime/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
test_names_unique (void **state)
{
  for (int i = 0; i < RT_STAGE__COUNT; i++)
    {
      const char *a = rt_stage_name (i);
      assert_string_not_equal (a, "?");
      for (int j = i + 1; j < RT_STAGE__COUNT; j++)
        assert_string_not_equal (a, rt_stage_name (j));
    }
  assert_string_equal (rt_stage_name (-1), "?");
  assert_string_equal (rt_stage_name (RT_STAGE__COUNT), "?");
  assert_string_equal (rt_stage_name (RT_STAGE_PIVOT_ROOT), "pivot_root");
  assert_true (RT_STAGE_FIRST_CHILD > RT_STAGE_RELEASE);
  assert_int_equal (RT_STAGE_EXEC, RT_STAGE__COUNT - 1);
}

/* Lines "N. `name` — ..." in docs/runtime.md must be exactly stages 1..EXEC in order. */
static void
test_docs_match_enum (void **state)
{
  FILE *f = fopen ("docs/runtime.md", "r");
  assert_non_null (f);
  char line[2048];
  int expect = 1;
  while (fgets (line, sizeof line, f))
    {
      int n;
      char name[64];
      if (sscanf (line, "%d. `%63[a-z_0-9]`", &n, name) != 2)
        continue;
      assert_int_equal (n, expect);
      if (strcmp (name, rt_stage_name (n)) != 0)
        fail_msg ("docs/runtime.md step %d is `%s`, enum says `%s`", n, name, rt_stage_name (n));
      expect++;
    }
  fclose (f);
  assert_int_equal (expect, RT_STAGE__COUNT);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_names_unique),
    cmocka_unit_test (test_docs_match_enum),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
