/*
 * STATE/sensor/state.json: strict reading and writing, and the decision an agent makes about
 * its sensor build when it starts. See sensor_state.h.
 */
#include "sensor_state.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/event_json.h"
#include "../lib/sensor_image.h"
#include "../lib/trust.h"

/* Copies @src into @dst (@size with NUL), printable ASCII only, cut to fit. */
static void copy_text(char *dst, size_t size, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < size; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[i] = '\0';
}

void sensor_state_init(struct sensor_state *st)
{
	memset(st, 0, sizeof(*st));
}

static const char *unknown_key(json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		size_t i = 0;
		while (allowed[i] && strcmp(allowed[i], k) != 0)
			i++;
		if (!allowed[i])
			return k;
	}
	return NULL;
}

static bool build_of(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    (uint64_t)json_integer_value(v) > SENSOR_BUILD_MAX)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static bool time_of(json_t *v, int64_t *out)
{
	trust_time_t t;
	if (!json_is_string(v) ||
	    trust_time_parse(json_string_value(v), json_string_length(v), &t) != 0)
		return false;
	*out = t;
	return true;
}

/* A string of at most @size - 1 printable ASCII bytes. */
static bool text_of(json_t *v, char *out, size_t size)
{
	const char *s;
	size_t len;

	if (!json_is_string(v) || (len = json_string_length(v)) >= size)
		return false;
	s = json_string_value(v);
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] >= 0x7f)
			return false;
	memcpy(out, s, len + 1);
	return true;
}

static int slot_of(json_t *v, const char *key, struct sensor_slot *out, char *err, size_t errlen)
{
	static const char *const keys[] = {"build", "hash", NULL};
	json_t *h;

	memset(out, 0, sizeof(*out));
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v) || unknown_key(v, keys) ||
	    !build_of(json_object_get(v, "build"), &out->build))
		return err_set(err, errlen, -EBADMSG,
			       "sensor state: '%s' is not {\"build\": N, \"hash\": HEX}", key);
	h = json_object_get(v, "hash");
	if (!json_is_string(h) || !trust_hash_hex_ok(json_string_value(h), json_string_length(h)))
		return err_set(err, errlen, -EBADMSG,
			       "sensor state: '%s.hash' is not 64 hex digits", key);
	memcpy(out->hash, json_string_value(h), SENSOR_HASH_HEX);
	out->present = true;
	return 0;
}

int sensor_state_parse(const char *data, size_t len, struct sensor_state *st, char *err,
		       size_t errlen)
{
	static const char *const keys[] = {
	    "format", "current",  "trial",	 "starts_left",
	    "since",  "previous", "quarantined", "crash_loop_reverts",
	    "last",   NULL};
	static const char *const qkeys[] = {"build", "reason", "at", NULL};
	static const char *const lkeys[] = {"build", "step", "result", "reason", "at", NULL};
	struct sensor_state s;
	json_error_t jerr;
	json_t *j, *v, *x;
	const char *bad;
	size_t i;
	int ret = -EBADMSG;

	sensor_state_init(st);
	sensor_state_init(&s);
	if (len > SENSOR_STATE_MAX_BYTES)
		return err_set(err, errlen, -EBADMSG, "sensor state: larger than %u bytes",
			       SENSOR_STATE_MAX_BYTES);
	if (memchr(data, '\0', len))
		return err_set(err, errlen, -EBADMSG, "sensor state: holds a NUL byte");
	j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return err_set(err, errlen, -EBADMSG, "sensor state: not JSON (line %d)",
			       jerr.line);
	if (!json_is_object(j)) {
		err_set(err, errlen, -EBADMSG, "sensor state: not a JSON object");
		goto out;
	}
	if ((bad = unknown_key(j, keys))) {
		char p[48];
		copy_text(p, sizeof(p), bad);
		err_set(err, errlen, -EBADMSG, "sensor state: unknown key '%s'", p);
		goto out;
	}
	v = json_object_get(j, "format");
	if (!json_is_integer(v) || json_integer_value(v) != SENSOR_STATE_FORMAT) {
		err_set(err, errlen, -EBADMSG, "sensor state: 'format' is not %d",
			SENSOR_STATE_FORMAT);
		goto out;
	}
	if (slot_of(json_object_get(j, "current"), "current", &s.current, err, errlen) ||
	    slot_of(json_object_get(j, "previous"), "previous", &s.previous, err, errlen))
		goto out;
	v = json_object_get(j, "trial");
	if (v && !json_is_boolean(v)) {
		err_set(err, errlen, -EBADMSG, "sensor state: 'trial' is not true or false");
		goto out;
	}
	s.trial = json_is_true(v);
	v = json_object_get(j, "starts_left");
	if (v &&
	    (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100)) {
		err_set(err, errlen, -EBADMSG, "sensor state: 'starts_left' is not in 0..100");
		goto out;
	}
	s.starts_left = v ? (unsigned)json_integer_value(v) : 0;
	v = json_object_get(j, "since");
	if (v && !json_is_null(v) && !time_of(v, &s.since)) {
		err_set(err, errlen, -EBADMSG, "sensor state: 'since' is not YYYY-MM-DDTHH:MM:SSZ");
		goto out;
	}
	if (s.trial && !s.current.present) {
		err_set(err, errlen, -EBADMSG, "sensor state: on trial without a current build");
		goto out;
	}
	if (s.previous.present && s.current.present && s.previous.build >= s.current.build) {
		err_set(err, errlen, -EBADMSG,
			"sensor state: 'previous' is not older than 'current'");
		goto out;
	}
	v = json_object_get(j, "crash_loop_reverts");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
		err_set(err, errlen, -EBADMSG, "sensor state: 'crash_loop_reverts' is not a count");
		goto out;
	}
	s.crash_loop_reverts = v ? (uint64_t)json_integer_value(v) : 0;
	v = json_object_get(j, "quarantined");
	if (v && (!json_is_array(v) || json_array_size(v) > SENSOR_MAX_QUARANTINED)) {
		err_set(err, errlen, -EBADMSG,
			"sensor state: 'quarantined' is not a list of at most %u",
			SENSOR_MAX_QUARANTINED);
		goto out;
	}
	json_array_foreach(v, i, x)
	{
		struct sensor_quarantine *q = &s.quarantined[s.n_quarantined];
		if (!json_is_object(x) || unknown_key(x, qkeys) ||
		    !build_of(json_object_get(x, "build"), &q->build) ||
		    !text_of(json_object_get(x, "reason"), q->reason, sizeof(q->reason)) ||
		    !time_of(json_object_get(x, "at"), &q->at)) {
			err_set(err, errlen, -EBADMSG,
				"sensor state: quarantined[%zu] is not {build, reason, at}", i);
			goto out;
		}
		s.n_quarantined++;
	}
	v = json_object_get(j, "last");
	if (v && !json_is_null(v)) {
		if (!json_is_object(v) || unknown_key(v, lkeys) ||
		    !build_of(json_object_get(v, "build"), &s.last_build) ||
		    !text_of(json_object_get(v, "step"), s.last_step, sizeof(s.last_step)) ||
		    !text_of(json_object_get(v, "result"), s.last_result, sizeof(s.last_result)) ||
		    !text_of(json_object_get(v, "reason"), s.last_reason, sizeof(s.last_reason)) ||
		    !time_of(json_object_get(v, "at"), &s.last_at)) {
			err_set(err, errlen, -EBADMSG,
				"sensor state: 'last' is not {build, step, result, reason, at}");
			goto out;
		}
		s.has_last = true;
	}
	*st = s;
	ret = 0;
out:
	json_decref(j);
	return ret;
}

static int time_json(struct buf *out, const char *key, int64_t t)
{
	char when[21];
	if (trust_time_format(t, when))
		snprintf(when, sizeof(when), "1970-01-01T00:00:00Z");
	return buf_printf(out, "\"%s\":\"%s\"", key, when);
}

static int slot_json(struct buf *out, const char *key, const struct sensor_slot *s)
{
	if (!s->present)
		return buf_printf(out, "\"%s\":null", key);
	return buf_printf(out, "\"%s\":{\"build\":%" PRIu64 ",\"hash\":\"%s\"}", key, s->build,
			  s->hash);
}

int sensor_state_write_json(const struct sensor_state *st, struct buf *out)
{
	int e = buf_printf(out, "{\"format\":%d,", SENSOR_STATE_FORMAT);

	if (!e)
		e = slot_json(out, "current", &st->current);
	if (!e)
		e = buf_printf(out, ",\"trial\":%s,\"starts_left\":%u,",
			       st->trial ? "true" : "false", st->starts_left);
	if (!e)
		e = st->current.present ? time_json(out, "since", st->since)
					: buf_append_str(out, "\"since\":null");
	if (!e)
		e = buf_append_char(out, ',');
	if (!e)
		e = slot_json(out, "previous", &st->previous);
	if (!e)
		e = buf_printf(out, ",\"crash_loop_reverts\":%" PRIu64 ",\"quarantined\":[",
			       st->crash_loop_reverts);
	for (size_t i = 0; !e && i < st->n_quarantined; i++) {
		const struct sensor_quarantine *q = &st->quarantined[i];
		e = buf_printf(out, "%s{\"build\":%" PRIu64 ",\"reason\":", i ? "," : "", q->build);
		if (!e)
			e = json_append_string(out, q->reason, strlen(q->reason));
		if (!e)
			e = buf_append_char(out, ',');
		if (!e)
			e = time_json(out, "at", q->at);
		if (!e)
			e = buf_append_char(out, '}');
	}
	if (!e)
		e = buf_append_str(out, "],\"last\":");
	if (!e && !st->has_last)
		e = buf_append_str(out, "null");
	else if (!e) {
		e = buf_printf(out, "{\"build\":%" PRIu64 ",\"step\":", st->last_build);
		if (!e)
			e = json_append_string(out, st->last_step, strlen(st->last_step));
		if (!e)
			e = buf_append_str(out, ",\"result\":");
		if (!e)
			e = json_append_string(out, st->last_result, strlen(st->last_result));
		if (!e)
			e = buf_append_str(out, ",\"reason\":");
		if (!e)
			e = json_append_string(out, st->last_reason, strlen(st->last_reason));
		if (!e)
			e = buf_append_char(out, ',');
		if (!e)
			e = time_json(out, "at", st->last_at);
		if (!e)
			e = buf_append_char(out, '}');
	}
	if (!e)
		e = buf_append_char(out, '}');
	return e;
}

bool sensor_state_quarantined(const struct sensor_state *st, uint64_t build)
{
	for (size_t i = 0; i < st->n_quarantined; i++)
		if (st->quarantined[i].build == build)
			return true;
	return false;
}

void sensor_state_quarantine(struct sensor_state *st, uint64_t build, const char *reason,
			     int64_t at)
{
	struct sensor_quarantine *q;

	if (sensor_state_quarantined(st, build))
		return;
	if (st->n_quarantined == SENSOR_MAX_QUARANTINED) {
		memmove(&st->quarantined[0], &st->quarantined[1],
			(SENSOR_MAX_QUARANTINED - 1) * sizeof(st->quarantined[0]));
		st->n_quarantined--;
	}
	q = &st->quarantined[st->n_quarantined++];
	q->build = build;
	q->at = at;
	copy_text(q->reason, sizeof(q->reason), reason);
}

void sensor_state_note(struct sensor_state *st, uint64_t build, const char *step,
		       const char *result, const char *reason, int64_t at)
{
	st->has_last = true;
	st->last_build = build;
	copy_text(st->last_step, sizeof(st->last_step), step);
	copy_text(st->last_result, sizeof(st->last_result), result);
	copy_text(st->last_reason, sizeof(st->last_reason), reason);
	st->last_at = at;
}

uint64_t sensor_state_boot(struct sensor_state *st, uint64_t own, unsigned trial_starts,
			   int64_t now, bool *changed)
{
	*changed = false;
	if (st->previous.present && st->previous.build <= own) {
		memset(&st->previous, 0, sizeof(st->previous));
		*changed = true;
	}
	if (!st->current.present)
		return 0;
	if (st->current.build <= own) {
		/* the installed executable is as new as the staged one: it wins */
		memset(&st->current, 0, sizeof(st->current));
		st->trial = false;
		st->starts_left = 0;
		*changed = true;
		return 0;
	}
	if (st->trial) {
		if (st->starts_left == 0) {
			char reason[SENSOR_REASON_BYTES];
			snprintf(reason, sizeof(reason),
				 "crash loop: %u starts without reaching good within the health "
				 "window",
				 trial_starts);
			sensor_state_quarantine(st, st->current.build, reason, now);
			sensor_state_note(st, st->current.build, "trial", "reverted", reason, now);
			st->crash_loop_reverts++;
			st->current = st->previous;
			memset(&st->previous, 0, sizeof(st->previous));
			st->trial = false;
			st->since = now;
		} else {
			st->starts_left--;
		}
		*changed = true;
	}
	return st->current.present ? st->current.build : 0;
}
