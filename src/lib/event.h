/*
 * The event model: one value slot per registry field, strings and lists held in a capped
 * arena owned by the event. An event is reset and reused, so the hot path allocates nothing.
 */
#ifndef VIGIL_EVENT_H
#define VIGIL_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* Bytes of string data one event may hold; longer values are cut and marked truncated. */
#define EVENT_ARENA_MAX (512u * 1024u)
/* Items all list fields of one event may hold together. */
#define EVENT_LIST_MAX 8192u

struct ev_span {
	uint32_t off; /* offset into the event's arena */
	uint32_t len;
};

struct ev_ip {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

struct ev_list {
	uint32_t first; /* index into the event's item array */
	uint32_t n;
};

struct event_value {
	union {
		struct ev_span s;
		int64_t i;
		struct ev_ip ip;
		struct ev_list l;
		bool b;
	};
};

struct event {
	bool present[FIELD_COUNT];
	bool truncated[FIELD_COUNT];
	struct event_value v[FIELD_COUNT];
	struct ev_span *items;
	uint32_t n_items;
	uint32_t cap_items;
	char *arena;
	uint32_t used;
	uint32_t cap;
	int last_list; /* field whose list may still be appended to, or -1 */
};

/* Returns a new empty event, or NULL with errno set. Free with event_free(). */
struct event *event_new(void);
void event_free(struct event *ev);

/* Clears every field; keeps the storage for the next event. */
void event_reset(struct event *ev);

/*
 * Setters. Each checks that @id exists and has the setter's type (-EINVAL otherwise) and
 * replaces any earlier value. A string longer than what is left of the arena is cut, the
 * field is marked truncated, and the setter still returns 0: truncation is data, not failure.
 */
int event_set_str(struct event *ev, enum field_id id, const char *p, size_t len);
int event_set_cstr(struct event *ev, enum field_id id, const char *s);
/* Sets string field @id to the decimal text of @value (ids such as user.id are strings). */
int event_set_decimal(struct event *ev, enum field_id id, int64_t value);
int event_set_int(struct event *ev, enum field_id id, int64_t value);
int event_set_bool(struct event *ev, enum field_id id, bool value);
/* @addr holds 4 bytes for AF_INET, 16 for AF_INET6. */
int event_set_ip(struct event *ev, enum field_id id, int family, const void *addr);

/*
 * Appends one string to list field @id. Appends to one list must not be interleaved with
 * appends to another (-EBUSY). Past EVENT_LIST_MAX items the item is dropped and the
 * field marked truncated; the call still returns 0.
 */
int event_list_append(struct event *ev, enum field_id id, const char *p, size_t len);
/* Sets list @id from @len bytes of NUL-separated strings (argv as the kernel keeps it). */
int event_set_list_nulsep(struct event *ev, enum field_id id, const char *p, size_t len);

void event_mark_truncated(struct event *ev, enum field_id id);
bool event_is_truncated(const struct event *ev, enum field_id id);

/* Removes field @id. */
void event_unset(struct event *ev, enum field_id id);

/* Getters: return false (or NULL) when the field is absent or of another type. */
bool event_has(const struct event *ev, enum field_id id);
const char *event_str(const struct event *ev, enum field_id id, size_t *len);
bool event_int(const struct event *ev, enum field_id id, int64_t *out);
bool event_bool(const struct event *ev, enum field_id id, bool *out);
const struct ev_ip *event_ip(const struct event *ev, enum field_id id);
/* Number of items in list @id (0 when absent); event.truncated is derived from the marks. */
uint32_t event_list_count(const struct event *ev, enum field_id id);
/* Item @i of list @id, or NULL when out of range. */
const char *event_list_item(const struct event *ev, enum field_id id, uint32_t i, size_t *len);

/* Copies every field of @src into @dst (which is reset first). Returns 0 or -errno. */
int event_copy(struct event *dst, const struct event *src);

/* Formats nanoseconds since the epoch as RFC 3339 UTC ("2026-11-25T20:34:08.123456789Z"). */
void format_timestamp(uint64_t epoch_ns, char out[40]);

#endif
