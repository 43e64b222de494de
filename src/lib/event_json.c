/*
 * ECS NDJSON writer and reader for events.
 */
#include "event_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), or 0 when it is invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates and code points past U+10FFFF are invalid */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* True when byte @c goes into a JSON string as it is. */
static bool json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* Each byte of a 64-bit word set to @b. */
#define BYTES_OF(b) (0x0101010101010101ull * (uint8_t)(b))

/* True when some byte of @w is zero. */
static bool word_has_zero(uint64_t w)
{
	return ((w - BYTES_OF(1)) & ~w & BYTES_OF(0x80)) != 0;
}

/* Length of the run of bytes at @p (@len of them) that go into a JSON string as they are. */
static size_t plain_prefix(const unsigned char *p, size_t len)
{
	size_t i = 0;

	/* eight bytes at a time: none at or above 0x80, below 0x20, a quote or a backslash */
	for (; i + sizeof(uint64_t) <= len; i += sizeof(uint64_t)) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		if ((w & BYTES_OF(0x80)) || word_has_zero(w & BYTES_OF(0xe0)) ||
		    word_has_zero(w ^ BYTES_OF('"')) || word_has_zero(w ^ BYTES_OF('\\')))
			break;
	}
	while (i < len && json_plain(p[i]))
		i++;
	return i;
}

/* Copies @n bytes to the end of @out, which buf_reserve() made room for. */
static void put_reserved(struct buf *out, const void *p, size_t n)
{
	memcpy(out->data + out->len, p, n);
	out->len += n;
	out->data[out->len] = '\0';
}

int json_append_string(struct buf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;
	int err;

	/* worst case every byte becomes a six-byte escape */
	if ((err = buf_reserve(out, len + 2)) < 0)
		return err;
	i = plain_prefix(p, len);
	if (i == len) {
		/* the common case, plain ASCII: one copy into the room just reserved */
		out->data[out->len++] = '"';
		memcpy(out->data + out->len, s, len);
		out->len += len;
		out->data[out->len++] = '"';
		out->data[out->len] = '\0';
		return 0;
	}
	if ((err = buf_append_char(out, '"')) < 0)
		return err;
	run = i;
	while (i < len) {
		unsigned c = p[i];
		size_t seq;
		char esc[8];
		const char *rep = NULL;

		if (json_plain((unsigned char)c)) {
			run++;
			i++;
			continue;
		}
		if (run && (err = buf_append(out, p + i - run, run)) < 0)
			return err;
		run = 0;
		switch (c) {
		case '"':
			rep = "\\\"";
			break;
		case '\\':
			rep = "\\\\";
			break;
		case '\n':
			rep = "\\n";
			break;
		case '\r':
			rep = "\\r";
			break;
		case '\t':
			rep = "\\t";
			break;
		default:
			break;
		}
		if (rep) {
			err = buf_append_str(out, rep);
			i++;
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			err = buf_append(out, esc, 6);
			i++;
		} else if ((seq = utf8_sequence(p + i, len - i)) > 0) {
			err = buf_append(out, p + i, seq);
			i += seq;
		} else {
			err = buf_append_str(out, "\\ufffd");
			i++;
		}
		if (err)
			return err;
	}
	if (run && (err = buf_append(out, p + i - run, run)) < 0)
		return err;
	return buf_append_char(out, '"');
}

/* Longest dotted field name, and most components of one, that the writer lays out. */
#define JSON_NAME_MAX	    96u
#define JSON_COMPONENTS_MAX 8u
/* Bytes of a field's opening text: each component quoted, a colon and a brace. */
#define JSON_KEY_TEXT_MAX (JSON_NAME_MAX + 4u * JSON_COMPONENTS_MAX)
/* Digits and sign of the longest int64. */
#define JSON_INT_MAX 24u

/*
 * How one field opens in the output, worked out once from the registry: the text that
 * opens it from the top level ("process":{"parent":{"pid":), where in that text each
 * nesting level starts, and which object each of its enclosing components is, so that
 * two fields share an object when they share its number.
 */
struct json_key {
	uint8_t components;
	uint8_t len;
	uint8_t from[JSON_COMPONENTS_MAX];
	uint8_t object[JSON_COMPONENTS_MAX]; /* for the components before the leaf */
	char text[JSON_KEY_TEXT_MAX];
};

static struct json_key json_keys[FIELD_COUNT];
static bool json_keys_ok;
static pthread_once_t json_keys_once = PTHREAD_ONCE_INIT;

/* Lays out the key of field @id; false when its name does not fit the limits above. */
static bool json_key_init(enum field_id id, const char *name, uint8_t *next_object)
{
	struct json_key *k = &json_keys[id];
	size_t name_len = strlen(name), at = 0, pos = 0;
	unsigned c = 0;

	if (name_len == 0 || name_len > JSON_NAME_MAX)
		return false;
	for (;;) {
		size_t n = strcspn(name + at, ".");
		bool leaf = name[at + n] == '\0';

		if (c >= JSON_COMPONENTS_MAX || n == 0 || pos + n + 4 > sizeof(k->text))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!json_plain((unsigned char)name[at + i]))
				return false;
		k->from[c] = (uint8_t)pos;
		k->text[pos++] = '"';
		memcpy(k->text + pos, name + at, n);
		pos += n;
		k->text[pos++] = '"';
		k->text[pos++] = ':';
		c++;
		if (leaf)
			break;
		k->text[pos++] = '{';
		/* the object this component opens: the one of an earlier field with this prefix */
		k->object[c - 1] = UINT8_MAX;
		for (int f = 0; f < FIELD_COUNT && k->object[c - 1] == UINT8_MAX; f++) {
			const char *other = registry_field(f)->name;
			if ((enum field_id)f != id && json_keys[f].components &&
			    strncmp(other, name, at + n + 1) == 0)
				k->object[c - 1] = json_keys[f].object[c - 1];
		}
		if (k->object[c - 1] == UINT8_MAX) {
			if (*next_object == UINT8_MAX)
				return false;
			k->object[c - 1] = (*next_object)++;
		}
		at += n + 1;
	}
	k->components = (uint8_t)c;
	k->len = (uint8_t)pos;
	return true;
}

static void json_keys_init(void)
{
	uint8_t next_object = 0;

	memset(json_keys, 0, sizeof(json_keys));
	for (int f = 0; f < FIELD_COUNT; f++)
		if (!json_key_init((enum field_id)f, registry_field(f)->name, &next_object))
			return;
	json_keys_ok = true;
}

/* Objects field keys @a and @b share, counted from the top level. */
static unsigned shared_objects(const struct json_key *a, const struct json_key *b)
{
	unsigned n = 0;

	while (n + 1 < a->components && n + 1 < b->components && a->object[n] == b->object[n])
		n++;
	return n;
}

/* Decimal text of @v into @out (JSON_INT_MAX bytes); returns its length. */
static size_t format_int(int64_t v, char *out)
{
	char tmp[JSON_INT_MAX];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		out[len++] = '-';
	while (n)
		out[len++] = tmp[--n];
	return len;
}

static int write_value(const struct event *ev, enum field_id id, struct buf *out)
{
	const struct field_info *f = registry_field((int)id);
	char text[INET6_ADDRSTRLEN > JSON_INT_MAX ? INET6_ADDRSTRLEN : JSON_INT_MAX];
	size_t len;
	int err = 0;

	switch (f->type) {
	case FT_STRING: {
		const char *s = event_str(ev, id, &len);
		return json_append_string(out, s, len);
	}
	case FT_INT: {
		int64_t v = 0;
		event_int(ev, id, &v);
		len = format_int(v, text);
		return buf_append(out, text, len);
	}
	case FT_BOOL: {
		bool v = false;
		event_bool(ev, id, &v);
		return buf_append_str(out, v ? "true" : "false");
	}
	case FT_IP: {
		const struct ev_ip *ip = event_ip(ev, id);
		if (!inet_ntop(ip->family, ip->addr, text, sizeof(text)))
			return -EINVAL;
		return json_append_string(out, text, strlen(text));
	}
	case FT_STRLIST: {
		uint32_t n = event_list_count(ev, id);
		if ((err = buf_append_char(out, '[')) < 0)
			return err;
		for (uint32_t i = 0; i < n; i++) {
			const char *s = event_list_item(ev, id, i, &len);
			if (i && (err = buf_append_char(out, ',')) < 0)
				return err;
			if ((err = json_append_string(out, s, len)) < 0)
				return err;
		}
		return buf_append_char(out, ']');
	}
	}
	return -EINVAL;
}

int event_write_json(const struct event *ev, struct buf *out)
{
	static const char closing[JSON_COMPONENTS_MAX] = "}}}}}}}";
	const enum field_id *order = registry_json_order();
	const struct json_key *prev = NULL; /* key of the previous field written */
	bool any_truncated = false;
	int err;

	pthread_once(&json_keys_once, json_keys_init);
	if (!json_keys_ok)
		return -EINVAL; /* a registry name past the writer's limits */
	for (int f = 0; f < FIELD_COUNT && !any_truncated; f++)
		any_truncated = ev->truncated[f] && ev->present[f];
	if ((err = buf_append_char(out, '{')) < 0)
		return err;
	for (int k = 0; k < FIELD_COUNT; k++) {
		enum field_id id = order[k];
		const struct json_key *key = &json_keys[id];
		unsigned keep = 0, close = 0;

		if (id == F_EVENT_TRUNCATED ? !any_truncated : !ev->present[id])
			continue;
		if (prev) {
			keep = shared_objects(prev, key);
			close = prev->components - 1 - keep;
		}
		if ((err = buf_reserve(out, close + 1 + key->len)) < 0)
			return err;
		put_reserved(out, closing, close);
		if (prev)
			put_reserved(out, ",", 1);
		put_reserved(out, key->text + key->from[keep], key->len - key->from[keep]);
		if ((err = write_value(ev, id, out)) < 0)
			return err;
		prev = key;
	}
	if (prev && (err = buf_append(out, closing, prev->components - 1u)) < 0)
		return err;
	return buf_append_char(out, '}');
}

struct parse_ctx {
	struct event *ev;
	char *err;
	size_t errlen;
	unsigned unknown;
	char path[256];
};

static int parse_fail(struct parse_ctx *ctx, const char *field, const char *reason)
{
	snprintf(ctx->err, ctx->errlen, "%s%s%s", field ? field : "", field ? ": " : "", reason);
	return -EINVAL;
}

static int parse_value(struct parse_ctx *ctx, enum field_id id, json_t *v)
{
	const struct field_info *f = registry_field((int)id);
	unsigned char addr[16];
	int err = 0;

	switch (f->type) {
	case FT_STRING:
		if (!json_is_string(v))
			return parse_fail(ctx, f->name, "expected a string");
		return event_set_str(ctx->ev, id, json_string_value(v), json_string_length(v));
	case FT_INT:
		if (!json_is_integer(v))
			return parse_fail(ctx, f->name, "expected an integer");
		return event_set_int(ctx->ev, id, json_integer_value(v));
	case FT_BOOL:
		if (!json_is_boolean(v))
			return parse_fail(ctx, f->name, "expected true or false");
		return event_set_bool(ctx->ev, id, json_is_true(v));
	case FT_IP: {
		const char *s = json_string_value(v);
		if (!s)
			return parse_fail(ctx, f->name, "expected an IP address string");
		if (inet_pton(AF_INET, s, addr) == 1)
			return event_set_ip(ctx->ev, id, AF_INET, addr);
		if (inet_pton(AF_INET6, s, addr) == 1)
			return event_set_ip(ctx->ev, id, AF_INET6, addr);
		return parse_fail(ctx, f->name, "not an IPv4 or IPv6 address");
	}
	case FT_STRLIST: {
		size_t i;
		json_t *item;
		if (!json_is_array(v))
			return parse_fail(ctx, f->name, "expected an array of strings");
		if (id == F_EVENT_TRUNCATED) {
			json_array_foreach(v, i, item)
			{
				const char *s = json_string_value(item);
				int t = s ? registry_lookup(s, strlen(s)) : -1;
				if (t < 0)
					return parse_fail(ctx, f->name, "names an unknown field");
				event_mark_truncated(ctx->ev, (enum field_id)t);
			}
			return 0;
		}
		if (event_has(ctx->ev, id))
			return parse_fail(ctx, f->name, "given twice");
		json_array_foreach(v, i, item)
		{
			if (!json_is_string(item))
				return parse_fail(ctx, f->name, "expected an array of strings");
			err = event_list_append(ctx->ev, id, json_string_value(item),
						json_string_length(item));
			if (err)
				return parse_fail(ctx, f->name, "list could not be stored");
		}
		if (json_array_size(v) == 0)
			err = event_set_list_nulsep(ctx->ev, id, "", 0);
		return err;
	}
	}
	return parse_fail(ctx, f->name, "unsupported type");
}

static int parse_object(struct parse_ctx *ctx, json_t *obj, size_t prefix, int depth)
{
	const char *key;
	json_t *v;

	if (depth > EVENT_JSON_DEPTH_MAX)
		return parse_fail(ctx, ctx->path, "objects nested too deeply");
	json_object_foreach(obj, key, v)
	{
		size_t klen = strlen(key);
		size_t at = prefix;
		if (at) {
			if (at + 1 >= sizeof(ctx->path))
				return parse_fail(ctx, NULL, "field name too long");
			ctx->path[at++] = '.';
		}
		if (klen == 0 || at + klen >= sizeof(ctx->path))
			return parse_fail(ctx, NULL,
					  klen ? "field name too long" : "empty field name");
		memcpy(ctx->path + at, key, klen);
		ctx->path[at + klen] = '\0';

		int id = registry_lookup(ctx->path, at + klen);
		if (id >= 0) {
			int err = parse_value(ctx, (enum field_id)id, v);
			if (err)
				return err;
		} else if (json_is_object(v)) {
			int err = parse_object(ctx, v, at + klen, depth + 1);
			if (err)
				return err;
		} else {
			ctx->unknown++;
		}
		ctx->path[prefix] = '\0';
	}
	return 0;
}

int event_parse_json(struct event *ev, const char *line, size_t len, char *err, size_t errlen,
		     unsigned *unknown)
{
	struct parse_ctx ctx = {.ev = ev, .err = err, .errlen = errlen};
	json_error_t jerr;
	json_t *root;
	int ret;

	event_reset(ev);
	if (len > EVENT_JSON_LINE_MAX)
		return parse_fail(&ctx, NULL, "line longer than 1 MiB");
	/* JSON_ALLOW_NUL: strings may carry NUL as \u0000, as the writer emits them */
	root = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		text_printable(jerr.text);
		snprintf(err, errlen, "invalid JSON at column %d: %s", jerr.column, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return parse_fail(&ctx, NULL, "expected a JSON object");
	}
	ret = parse_object(&ctx, root, 0, 0);
	json_decref(root);
	if (ret)
		return ret;

	size_t klen;
	const char *kind = event_str(ev, F_EVENT_KIND, &klen);
	if (!kind)
		return parse_fail(&ctx, "event.kind", "missing");
	if (!event_has(ev, F_EVENT_ACTION) && klen == 5 && memcmp(kind, "event", 5) == 0)
		return parse_fail(&ctx, "event.action", "missing");
	if (unknown)
		*unknown += ctx.unknown;
	if (klen == 5 && memcmp(kind, "event", 5) == 0)
		return EVENT_PARSED;
	if ((klen == 5 && memcmp(kind, "alert", 5) == 0) ||
	    (klen == 6 && memcmp(kind, "metric", 6) == 0))
		return EVENT_SKIPPED;
	return parse_fail(&ctx, "event.kind", "expected event, alert or metric");
}
