/*
 * Unit tests for the field registry: ids, lookups, JSON order and docs/schema.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/registry.h"

static void ids_match_positions(void **state)
{
	for (int i = 0; i < FIELD_COUNT; i++) {
		const struct field_info *f = registry_field(i);
		assert_non_null(f);
		assert_int_equal(f->id, i);
		assert_non_null(f->name);
		assert_true(strlen(f->description) > 0);
	}
	assert_null(registry_field(-1));
	assert_null(registry_field(FIELD_COUNT));
}

static void names_unique_and_found(void **state)
{
	for (int i = 0; i < FIELD_COUNT; i++) {
		const char *name = registry_field(i)->name;
		assert_int_equal(registry_lookup(name, strlen(name)), i);
		for (int j = i + 1; j < FIELD_COUNT; j++)
			assert_string_not_equal(name, registry_field(j)->name);
	}
	assert_int_equal(registry_lookup("process.nope", 12), -1);
	/* a prefix of a name is not the name */
	assert_int_equal(registry_lookup("process.pi", 10), -1);
	assert_int_equal(registry_lookup("process.executable", 18), F_PROCESS_EXECUTABLE);
	assert_int_equal(registry_field(F_PROCESS_PID)->type, FT_INT);
	assert_int_equal(registry_field(F_DESTINATION_IP)->type, FT_IP);
	assert_int_equal(registry_field(F_PROCESS_ARGS)->type, FT_STRLIST);
}

/* A name that is a whole object elsewhere (a.b and a.b.c) could not be written as JSON. */
static void no_leaf_is_a_prefix(void **state)
{
	for (int i = 0; i < FIELD_COUNT; i++) {
		const char *a = registry_field(i)->name;
		size_t la = strlen(a);
		for (int j = 0; j < FIELD_COUNT; j++) {
			const char *b = registry_field(j)->name;
			if (strncmp(a, b, la) == 0 && b[la] == '.')
				fail_msg("field %s is also an object in %s", a, b);
		}
	}
}

static void json_order_groups_prefixes(void **state)
{
	const enum field_id *order = registry_json_order();
	int seen[FIELD_COUNT] = {0};
	for (int k = 0; k < FIELD_COUNT; k++)
		seen[order[k]]++;
	for (int i = 0; i < FIELD_COUNT; i++)
		assert_int_equal(seen[i], 1);
	/* all "process." fields form one run */
	int first = -1, last = -1;
	for (int k = 0; k < FIELD_COUNT; k++) {
		if (strncmp(registry_field(order[k])->name, "process.", 8) == 0) {
			if (first < 0)
				first = k;
			last = k;
		}
	}
	for (int k = first; k <= last; k++)
		assert_memory_equal(registry_field(order[k])->name, "process.", 8);
}

/* docs/schema.md must be exactly what the registry generates. */
static void schema_doc_matches_registry(void **state)
{
	const char *dir = getenv("VIGIL_SOURCE_DIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/docs/schema.md", dir ? dir : ".");

	char *expected = NULL;
	size_t expected_len = 0;
	FILE *mem = open_memstream(&expected, &expected_len);
	assert_non_null(mem);
	assert_int_equal(registry_write_markdown(mem), 0);
	fclose(mem);

	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s (run from the source tree or set VIGIL_SOURCE_DIR)", path);
	char *actual = malloc(expected_len + 2);
	assert_non_null(actual);
	size_t n = fread(actual, 1, expected_len + 1, f);
	fclose(f);
	if (n != expected_len || memcmp(actual, expected, expected_len) != 0)
		fail_msg("docs/schema.md disagrees with the registry: regenerate it with "
			 "'build/vigil schema --markdown > docs/schema.md'");
	free(actual);
	free(expected);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ids_match_positions),
	    cmocka_unit_test(names_unique_and_found),
	    cmocka_unit_test(no_leaf_is_a_prefix),
	    cmocka_unit_test(json_order_groups_prefixes),
	    cmocka_unit_test(schema_doc_matches_registry),
	};
	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
