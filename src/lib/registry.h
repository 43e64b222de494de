/*
 * The field registry: ids, ECS names and types of every field an event can carry.
 * One table (fields.def) that the JSON writer and reader, the sensor's decoders, the rule
 * compiler and docs/schema.md derive from.
 */
#ifndef VIGIL_REGISTRY_H
#define VIGIL_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Raised whenever a field is added; content names the schema version it was compiled for. */
#define SCHEMA_VERSION 1

enum field_type {
	FT_STRING,
	FT_INT,
	FT_IP,
	FT_STRLIST,
	FT_BOOL,
};

enum field_id {
#define FIELD(id, name, type, desc) id,
#include "fields.def"
#undef FIELD
	FIELD_COUNT
};

struct field_info {
	enum field_id id;
	const char *name;
	enum field_type type;
	const char *description;
};

/* Returns the entry for @id, or NULL when @id is out of range. */
const struct field_info *registry_field(int id);

/* Returns the id of the field called @name (length @len), or -1 when there is none. */
int registry_lookup(const char *name, size_t len);

/* Returns "string", "integer", "ip", "list of strings" or "boolean". */
const char *registry_type_name(enum field_type type);

/*
 * Field ids in the order the JSON writer emits them: sorted by dotted path component by
 * component, so that fields sharing a prefix are adjacent and nest into one object.
 */
const enum field_id *registry_json_order(void);

/* Writes docs/schema.md's content for the current registry to @out. Returns 0 or -errno. */
int registry_write_markdown(FILE *out);

#endif
