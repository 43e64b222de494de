/*
 * Events to and from ECS NDJSON: the writer nests dotted registry names into objects;
 * the reader accepts the writer's output (the replay format) with bounded size and depth.
 */
#ifndef VIGIL_EVENT_JSON_H
#define VIGIL_EVENT_JSON_H

#include <stddef.h>

#include "buf.h"
#include "event.h"

/* Longest NDJSON line the reader accepts. */
#define EVENT_JSON_LINE_MAX (1024u * 1024u)
/* Deepest object nesting the reader accepts. */
#define EVENT_JSON_DEPTH_MAX 8

/*
 * Appends @s (@len bytes, may hold NUL) as a JSON string literal with quotes. Control
 * characters and NUL become \u00XX escapes; bytes that are not valid UTF-8 become U+FFFD,
 * so the output is always valid JSON. Returns 0 or a buf error (@out may hold a partial
 * literal then; callers reset it).
 */
int json_append_string(struct buf *out, const char *s, size_t len);

/*
 * Appends @ev as one JSON object (no newline) to @out. Fields are written in registry
 * JSON order, nested by dotted path. Returns 0 or a buf error.
 */
int event_write_json(const struct event *ev, struct buf *out);

enum event_parse_result {
	EVENT_PARSED = 0,  /* @ev holds an event */
	EVENT_SKIPPED = 1, /* a valid line of another kind (alert, metric): nothing to replay */
};

/*
 * Parses one NDJSON line into @ev (reset first). Returns EVENT_PARSED, EVENT_SKIPPED, or
 * -EINVAL with a one-line reason in @err (naming the field when one is at fault). Fields the
 * registry does not know are ignored and counted in *@unknown when @unknown is not NULL.
 */
int event_parse_json(struct event *ev, const char *line, size_t len, char *err, size_t errlen,
		     unsigned *unknown);

#endif
