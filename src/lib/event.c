/*
 * Event storage: typed value slots per registry field, strings in a capped arena.
 */
#include "event.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct event *event_new(void)
{
	struct event *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return NULL;
	ev->last_list = -1;
	return ev;
}

void event_free(struct event *ev)
{
	if (!ev)
		return;
	free(ev->items);
	free(ev->arena);
	free(ev);
}

void event_reset(struct event *ev)
{
	memset(ev->present, 0, sizeof(ev->present));
	memset(ev->truncated, 0, sizeof(ev->truncated));
	ev->n_items = 0;
	ev->used = 0;
	ev->last_list = -1;
}

static bool field_has_type(enum field_id id, enum field_type type)
{
	const struct field_info *f = registry_field((int)id);
	return f && f->type == type;
}

/* Grows the arena so that @n more bytes fit; returns how many of them do fit. */
static uint32_t arena_room(struct event *ev, size_t n)
{
	size_t left = EVENT_ARENA_MAX - ev->used;
	size_t want = n < left ? n : left;
	if (ev->used + want > ev->cap) {
		size_t cap = ev->cap ? ev->cap : 4096;
		while (cap < ev->used + want)
			cap *= 2;
		if (cap > EVENT_ARENA_MAX)
			cap = EVENT_ARENA_MAX;
		char *p = realloc(ev->arena, cap);
		if (!p)
			return 0;
		ev->arena = p;
		ev->cap = (uint32_t)cap;
	}
	return (uint32_t)want;
}

/* Copies a string into the arena; cuts it when the arena is full and says so. */
static struct ev_span arena_put(struct event *ev, const char *p, size_t len, bool *cut)
{
	struct ev_span span = {ev->used, 0};
	uint32_t n = arena_room(ev, len);
	if (n)
		memcpy(ev->arena + ev->used, p, n);
	ev->used += n;
	span.len = n;
	*cut = n < len;
	return span;
}

int event_set_str(struct event *ev, enum field_id id, const char *p, size_t len)
{
	bool cut;
	if (!field_has_type(id, FT_STRING))
		return -EINVAL;
	ev->v[id].s = arena_put(ev, p, len, &cut);
	ev->present[id] = true;
	if (cut)
		ev->truncated[id] = true;
	return 0;
}

int event_set_cstr(struct event *ev, enum field_id id, const char *s)
{
	return event_set_str(ev, id, s, strlen(s));
}

int event_set_decimal(struct event *ev, enum field_id id, int64_t value)
{
	char text[24], *p = text + sizeof(text);
	uint64_t u = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (value < 0)
		*--p = '-';
	return event_set_str(ev, id, p, (size_t)(text + sizeof(text) - p));
}

int event_set_int(struct event *ev, enum field_id id, int64_t value)
{
	if (!field_has_type(id, FT_INT))
		return -EINVAL;
	ev->v[id].i = value;
	ev->present[id] = true;
	return 0;
}

int event_set_bool(struct event *ev, enum field_id id, bool value)
{
	if (!field_has_type(id, FT_BOOL))
		return -EINVAL;
	ev->v[id].b = value;
	ev->present[id] = true;
	return 0;
}

int event_set_ip(struct event *ev, enum field_id id, int family, const void *addr)
{
	if (!field_has_type(id, FT_IP) || (family != AF_INET && family != AF_INET6))
		return -EINVAL;
	memset(&ev->v[id].ip, 0, sizeof(ev->v[id].ip));
	ev->v[id].ip.family = (uint8_t)family;
	memcpy(ev->v[id].ip.addr, addr, family == AF_INET ? 4 : 16);
	ev->present[id] = true;
	return 0;
}

int event_list_append(struct event *ev, enum field_id id, const char *p, size_t len)
{
	bool cut;
	if (!field_has_type(id, FT_STRLIST) || id == F_EVENT_TRUNCATED)
		return -EINVAL;
	if (ev->present[id] && ev->last_list != (int)id)
		return -EBUSY;
	if (!ev->present[id]) {
		ev->v[id].l.first = ev->n_items;
		ev->v[id].l.n = 0;
		ev->present[id] = true;
		ev->last_list = (int)id;
	}
	if (ev->n_items >= EVENT_LIST_MAX) {
		ev->truncated[id] = true;
		return 0;
	}
	if (ev->n_items == ev->cap_items) {
		uint32_t cap = ev->cap_items ? ev->cap_items * 2 : 64;
		if (cap > EVENT_LIST_MAX)
			cap = EVENT_LIST_MAX;
		struct ev_span *items = realloc(ev->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		ev->items = items;
		ev->cap_items = cap;
	}
	ev->items[ev->n_items++] = arena_put(ev, p, len, &cut);
	ev->v[id].l.n++;
	if (cut)
		ev->truncated[id] = true;
	return 0;
}

int event_set_list_nulsep(struct event *ev, enum field_id id, const char *p, size_t len)
{
	size_t i = 0;
	if (!field_has_type(id, FT_STRLIST) || id == F_EVENT_TRUNCATED)
		return -EINVAL;
	event_unset(ev, id);
	while (i < len) {
		const char *nul = memchr(p + i, '\0', len - i);
		size_t n = nul ? (size_t)(nul - (p + i)) : len - i;
		int err = event_list_append(ev, id, p + i, n);
		if (err)
			return err;
		i += n + 1;
	}
	if (!ev->present[id]) {
		/* an empty list is still a value */
		ev->v[id].l.first = ev->n_items;
		ev->v[id].l.n = 0;
		ev->present[id] = true;
		ev->last_list = (int)id;
	}
	return 0;
}

void event_mark_truncated(struct event *ev, enum field_id id)
{
	if ((int)id >= 0 && id < FIELD_COUNT)
		ev->truncated[id] = true;
}

bool event_is_truncated(const struct event *ev, enum field_id id)
{
	return (int)id >= 0 && id < FIELD_COUNT && ev->truncated[id];
}

void event_unset(struct event *ev, enum field_id id)
{
	if ((int)id < 0 || id >= FIELD_COUNT)
		return;
	ev->present[id] = false;
	ev->truncated[id] = false;
	if (ev->last_list == (int)id)
		ev->last_list = -1;
}

bool event_has(const struct event *ev, enum field_id id)
{
	if ((int)id < 0 || id >= FIELD_COUNT)
		return false;
	if (id == F_EVENT_TRUNCATED)
		return event_list_count(ev, id) > 0;
	return ev->present[id];
}

const char *event_str(const struct event *ev, enum field_id id, size_t *len)
{
	if (!field_has_type(id, FT_STRING) || !ev->present[id])
		return NULL;
	*len = ev->v[id].s.len;
	/* an empty string may have no arena yet; hand back a valid pointer anyway */
	return ev->arena ? ev->arena + ev->v[id].s.off : "";
}

bool event_int(const struct event *ev, enum field_id id, int64_t *out)
{
	if (!field_has_type(id, FT_INT) || !ev->present[id])
		return false;
	*out = ev->v[id].i;
	return true;
}

bool event_bool(const struct event *ev, enum field_id id, bool *out)
{
	if (!field_has_type(id, FT_BOOL) || !ev->present[id])
		return false;
	*out = ev->v[id].b;
	return true;
}

const struct ev_ip *event_ip(const struct event *ev, enum field_id id)
{
	if (!field_has_type(id, FT_IP) || !ev->present[id])
		return NULL;
	return &ev->v[id].ip;
}

uint32_t event_list_count(const struct event *ev, enum field_id id)
{
	if (id == F_EVENT_TRUNCATED) {
		uint32_t n = 0;
		for (int i = 0; i < FIELD_COUNT; i++)
			n += ev->truncated[i] && ev->present[i];
		return n;
	}
	if (!field_has_type(id, FT_STRLIST) || !ev->present[id])
		return 0;
	return ev->v[id].l.n;
}

const char *event_list_item(const struct event *ev, enum field_id id, uint32_t i, size_t *len)
{
	if (id == F_EVENT_TRUNCATED) {
		for (int f = 0; f < FIELD_COUNT; f++) {
			if (!ev->truncated[f] || !ev->present[f])
				continue;
			if (i-- == 0) {
				const char *name = registry_field(f)->name;
				*len = strlen(name);
				return name;
			}
		}
		return NULL;
	}
	if (i >= event_list_count(ev, id))
		return NULL;
	const struct ev_span *s = &ev->items[ev->v[id].l.first + i];
	*len = s->len;
	return ev->arena ? ev->arena + s->off : "";
}

int event_copy(struct event *dst, const struct event *src)
{
	event_reset(dst);
	for (int f = 0; f < FIELD_COUNT; f++) {
		enum field_id id = (enum field_id)f;
		int err = 0;
		size_t len = 0;
		if (!src->present[f] || id == F_EVENT_TRUNCATED)
			continue;
		switch (registry_field(f)->type) {
		case FT_STRING: {
			const char *s = event_str(src, id, &len);
			err = event_set_str(dst, id, s, len);
			break;
		}
		case FT_INT:
			err = event_set_int(dst, id, src->v[f].i);
			break;
		case FT_BOOL:
			err = event_set_bool(dst, id, src->v[f].b);
			break;
		case FT_IP:
			err = event_set_ip(dst, id, src->v[f].ip.family, src->v[f].ip.addr);
			break;
		case FT_STRLIST:
			dst->v[f].l.first = dst->n_items;
			dst->v[f].l.n = 0;
			dst->present[f] = true;
			dst->last_list = f;
			for (uint32_t i = 0; i < src->v[f].l.n && !err; i++) {
				const char *s = event_list_item(src, id, i, &len);
				err = event_list_append(dst, id, s, len);
			}
			break;
		}
		if (err)
			return err;
		dst->truncated[f] = src->truncated[f];
	}
	return 0;
}

/* Writes the @width low decimal digits of @v at @out; returns the position after them. */
static char *put_digits(char *out, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return out + width;
}

void format_timestamp(uint64_t epoch_ns, char out[40])
{
	time_t secs = (time_t)(epoch_ns / 1000000000ull);
	struct tm tm;
	char *p = out;

	if (!gmtime_r(&secs, &tm))
		memset(&tm, 0, sizeof(tm));
	/* years past 9999 do not fit; clamp so the format stays fixed-width */
	int year = tm.tm_year + 1900;
	if (year > 9999 || year < 0)
		year = 9999;
	/* "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", without printf's cost on every event */
	p = put_digits(p, (unsigned)year, 4);
	*p++ = '-';
	p = put_digits(p, (unsigned)(tm.tm_mon % 12 + 1), 2);
	*p++ = '-';
	p = put_digits(p, (unsigned)(tm.tm_mday % 32), 2);
	*p++ = 'T';
	p = put_digits(p, (unsigned)(tm.tm_hour % 24), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned)(tm.tm_min % 60), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned)(tm.tm_sec % 61), 2);
	*p++ = '.';
	p = put_digits(p, (unsigned)(epoch_ns % 1000000000ull), 9);
	*p++ = 'Z';
	*p = '\0';
}
