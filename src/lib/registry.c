/*
 * The field registry table and its lookups, generated from fields.def.
 */
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const struct field_info fields[FIELD_COUNT] = {
#define FIELD(id, name, type, desc) [id] = {id, name, type, desc},
#include "fields.def"
#undef FIELD
};

const struct field_info *registry_field(int id)
{
	if (id < 0 || id >= FIELD_COUNT)
		return NULL;
	return &fields[id];
}

int registry_lookup(const char *name, size_t len)
{
	for (int i = 0; i < FIELD_COUNT; i++) {
		if (strlen(fields[i].name) == len && memcmp(fields[i].name, name, len) == 0)
			return i;
	}
	return -1;
}

const char *registry_type_name(enum field_type type)
{
	switch (type) {
	case FT_STRING:
		return "string";
	case FT_INT:
		return "integer";
	case FT_IP:
		return "ip";
	case FT_STRLIST:
		return "list of strings";
	case FT_BOOL:
		return "boolean";
	}
	return "unknown";
}

/* Compares dotted names component by component, so "a.b" < "a.b.c" < "a.b_c". */
static int compare_dotted(const char *a, const char *b)
{
	for (;;) {
		size_t la = strcspn(a, "."), lb = strcspn(b, ".");
		size_t n = la < lb ? la : lb;
		int c = memcmp(a, b, n);
		if (c != 0)
			return c;
		if (la != lb)
			return la < lb ? -1 : 1;
		a += la;
		b += lb;
		if (*a == '\0' || *b == '\0')
			return (*a != '\0') - (*b != '\0');
		a++;
		b++;
	}
}

static int compare_ids(const void *x, const void *y)
{
	const enum field_id *a = x, *b = y;
	return compare_dotted(fields[*a].name, fields[*b].name);
}

static enum field_id json_order[FIELD_COUNT];
static pthread_once_t json_order_once = PTHREAD_ONCE_INIT;

static void json_order_init(void)
{
	for (int i = 0; i < FIELD_COUNT; i++)
		json_order[i] = (enum field_id)i;
	qsort(json_order, FIELD_COUNT, sizeof(json_order[0]), compare_ids);
}

const enum field_id *registry_json_order(void)
{
	pthread_once(&json_order_once, json_order_init);
	return json_order;
}

int registry_write_markdown(FILE *out)
{
	fprintf(out, "# vigil event schema\n\n");
	fprintf(out, "Schema version: %d\n\n", SCHEMA_VERSION);
	fprintf(out,
		"Generated from `src/lib/fields.def` by `vigil schema --markdown`; a unit test "
		"fails when this file and the registry disagree.\n\n");
	fprintf(out, "Events are ECS NDJSON: one JSON object per line, dotted names nested as "
		     "objects. Ids are stable and used by compiled content.\n\n");
	fprintf(out, "| id | field | type | description |\n|---|---|---|---|\n");
	for (int i = 0; i < FIELD_COUNT; i++)
		fprintf(out, "| %d | `%s` | %s | %s |\n", i, fields[i].name,
			registry_type_name(fields[i].type), fields[i].description);
	return ferror(out) ? -EIO : 0;
}
