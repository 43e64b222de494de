/*
 * ECS NDJSON writer and reader for events.
 */
#include "event_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
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

int json_append_string(struct buf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;
	int err;

	/* worst case every byte becomes a six-byte escape */
	if ((err = buf_reserve(out, len + 2)) < 0)
		return err;
	if ((err = buf_append_char(out, '"')) < 0)
		return err;
	while (i < len) {
		unsigned c = p[i];
		size_t seq;
		char esc[8];
		const char *rep = NULL;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
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

/* Number of leading dotted components @a and @b share. */
static int common_components(const char *a, const char *b)
{
	int n = 0;
	for (;;) {
		size_t la = strcspn(a, "."), lb = strcspn(b, ".");
		if (la != lb || memcmp(a, b, la) != 0 || a[la] != '.' || b[lb] != '.')
			return n;
		n++;
		a += la + 1;
		b += lb + 1;
	}
}

static int count_components(const char *name)
{
	int n = 1;
	for (; *name; name++)
		n += *name == '.';
	return n;
}

static int write_value(const struct event *ev, enum field_id id, struct buf *out)
{
	const struct field_info *f = registry_field((int)id);
	char text[INET6_ADDRSTRLEN];
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
		return buf_printf(out, "%lld", (long long)v);
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
	const enum field_id *order = registry_json_order();
	const char *prev = NULL; /* name of the previous field written */
	int depth = 0;		 /* objects open below the top level */
	int err;

	if ((err = buf_append_char(out, '{')) < 0)
		return err;
	for (int k = 0; k < FIELD_COUNT; k++) {
		enum field_id id = order[k];
		const char *name = registry_field((int)id)->name;
		if (!event_has(ev, id))
			continue;

		int keep = prev ? common_components(prev, name) : 0;
		while (depth > keep) {
			if ((err = buf_append_char(out, '}')) < 0)
				return err;
			depth--;
		}
		if (prev && (err = buf_append_char(out, ',')) < 0)
			return err;

		/* open the objects between the shared prefix and the leaf */
		const char *part = name;
		for (int c = 0; c < keep; c++)
			part = strchr(part, '.') + 1;
		int total = count_components(name);
		for (int c = keep; c < total; c++) {
			size_t n = strcspn(part, ".");
			if ((err = json_append_string(out, part, n)) < 0 ||
			    (err = buf_append_char(out, ':')) < 0)
				return err;
			if (c < total - 1) {
				if ((err = buf_append_char(out, '{')) < 0)
					return err;
				depth++;
				part += n + 1;
			}
		}
		if ((err = write_value(ev, id, out)) < 0)
			return err;
		prev = name;
	}
	while (depth-- > 0) {
		if ((err = buf_append_char(out, '}')) < 0)
			return err;
	}
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
