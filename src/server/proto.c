/*
 * Request bodies of the agent and admin APIs, read into fixed-size structs with every
 * length and range checked. See proto.h for the formats.
 */
#include "proto.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bundle.h"
#include "lib/trust.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		/* the reason goes into a one-line JSON error: no control characters */
		for (char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
	}
	return -EINVAL;
}

/* The nesting depth of @s, scanning strings properly; stops early past @max. */
static bool depth_ok(const char *s, size_t len, unsigned max)
{
	unsigned depth = 0;
	bool in_str = false, esc = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				return false;
		} else if ((c == '}' || c == ']') && depth > 0) {
			depth--;
		}
	}
	return true;
}

int proto_json_object(const char *body, size_t len, void **out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *j;

	if (len == 0)
		return fail(err, errlen, "empty body: a JSON object is expected");
	if (memchr(body, '\0', len))
		return fail(err, errlen, "body holds a NUL byte");
	if (!depth_ok(body, len, PROTO_MAX_DEPTH))
		return fail(err, errlen, "JSON nested deeper than %d levels", PROTO_MAX_DEPTH);
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		text_printable(jerr.text);
		return fail(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line,
			    jerr.column, jerr.text);
	}
	if (!json_is_object(j)) {
		json_decref(j);
		return fail(err, errlen, "a JSON object is expected at the top");
	}
	*out = j;
	return 0;
}

bool proto_name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= STORE_NAME_BYTES)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool proto_hash_ok(const char *s, size_t len)
{
	return trust_hash_hex_ok(s, len);
}

/* --- typed getters: each returns 0 (absent leaves *out alone), or -EINVAL with a reason --- */

static int get_string(json_t *o, const char *key, char *out, size_t size, bool required, char *err,
		      size_t errlen)
{
	json_t *v = json_object_get(o, key);
	size_t n;

	if (!v || json_is_null(v)) {
		if (required)
			return fail(err, errlen, "\"%s\" is required", key);
		return 0;
	}
	if (!json_is_string(v))
		return fail(err, errlen, "\"%s\" must be a string", key);
	n = json_string_length(v);
	if (n >= size)
		return fail(err, errlen, "\"%s\" is longer than %zu bytes", key, size - 1);
	if (memchr(json_string_value(v), '\0', n))
		return fail(err, errlen, "\"%s\" holds a NUL byte", key);
	memcpy(out, json_string_value(v), n);
	out[n] = '\0';
	return 0;
}

static int get_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t *out,
		   bool required, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	json_int_t x;

	if (!v || json_is_null(v)) {
		if (required)
			return fail(err, errlen, "\"%s\" is required", key);
		return 0;
	}
	if (!json_is_integer(v))
		return fail(err, errlen, "\"%s\" must be an integer", key);
	x = json_integer_value(v);
	if (x < min || x > max)
		return fail(err, errlen, "\"%s\" must be within %lld..%lld", key, (long long)min,
			    (long long)max);
	*out = (int64_t)x;
	return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return fail(err, errlen, "\"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int get_number(json_t *o, const char *key, double min, double max, double *out, char *err,
		      size_t errlen)
{
	json_t *v = json_object_get(o, key);
	double x;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return fail(err, errlen, "\"%s\" must be a number", key);
	x = json_number_value(v);
	if (!isfinite(x) || x < min || x > max)
		return fail(err, errlen, "\"%s\" must be within %g..%g", key, min, max);
	*out = x;
	return 0;
}

/* --- agent API --- */

int proto_parse_enroll(const char *body, size_t len, struct proto_enroll *out, char *err,
		       size_t errlen)
{
	struct proto_enroll e;
	json_t *j = NULL;
	int ret;

	memset(&e, 0, sizeof(e));
	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	if ((ret = get_string(j, "token", e.token, sizeof(e.token), true, err, errlen)) ||
	    (ret = get_string(j, "hostname", e.hostname, sizeof(e.hostname), false, err, errlen)) ||
	    (ret = get_string(j, "sensor_version", e.sensor_version, sizeof(e.sensor_version),
			      false, err, errlen)))
		goto out;
	if (json_object_get(j, "sensor_build") &&
	    !json_is_null(json_object_get(j, "sensor_build"))) {
		int64_t sb = 0;
		if ((ret = get_int(j, "sensor_build", 1, (int64_t)BUNDLE_MAX_VERSION, &sb, false,
				   err, errlen)))
			goto out;
		e.sensor_build = (uint64_t)sb;
	}
	if (e.token[0] == '\0') {
		ret = fail(err, errlen, "\"token\" is empty");
		goto out;
	}
	*out = e;
out:
	json_decref(j);
	return ret;
}

/* An optional array of at most PROTO_MAX_QUARANTINED versions under @key. */
static int get_versions(json_t *j, const char *key, uint64_t *out, size_t *n, char *err,
			size_t errlen)
{
	json_t *q = json_object_get(j, key), *x;
	size_t i;

	*n = 0;
	if (!q || json_is_null(q))
		return 0;
	if (!json_is_array(q))
		return fail(err, errlen, "\"%s\" must be an array of versions", key);
	if (json_array_size(q) > PROTO_MAX_QUARANTINED)
		return fail(err, errlen, "\"%s\" lists more than %u versions", key,
			    PROTO_MAX_QUARANTINED);
	json_array_foreach(q, i, x)
	{
		if (!json_is_integer(x) || json_integer_value(x) < 1 ||
		    json_integer_value(x) > (json_int_t)BUNDLE_MAX_VERSION) {
			*n = 0;
			return fail(err, errlen, "\"%s\"[%zu] is not a version", key, i);
		}
		out[(*n)++] = (uint64_t)json_integer_value(x);
	}
	return 0;
}

int proto_parse_heartbeat(const char *body, size_t len, struct store_health *out, char *err,
			  size_t errlen)
{
	struct store_health h;
	json_t *j = NULL, *v, *l;
	int64_t cv = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	memset(&h, 0, sizeof(h));
	h.liveness_last = -1;
	h.cpu_percent = -1.0; /* not reported */
	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	v = json_object_get(j, "content_version");
	if (v && !json_is_null(v)) {
		if ((ret = get_int(j, "content_version", 1, (int64_t)BUNDLE_MAX_VERSION, &cv, false,
				   err, errlen)))
			goto out;
		h.has_content = true;
		h.content_version = (uint64_t)cv;
	}
	if ((ret = get_string(j, "sensor_version", h.sensor_version, sizeof(h.sensor_version),
			      false, err, errlen)) ||
	    (ret = get_string(j, "hostname", h.hostname, sizeof(h.hostname), false, err, errlen)) ||
	    (ret = get_int(j, "uptime_seconds", 0, PROTO_MAX_COUNTER, &h.uptime_seconds, false, err,
			   errlen)) ||
	    (ret = get_int(j, "restarts", 0, PROTO_MAX_COUNTER, &h.restarts, false, err, errlen)) ||
	    (ret = get_int(j, "crash_loop_reverts", 0, PROTO_MAX_COUNTER, &h.crash_loop_reverts,
			   false, err, errlen)) ||
	    (ret = get_int(j, "drops", 0, PROTO_MAX_COUNTER, &h.drops, false, err, errlen)) ||
	    (ret = get_int(j, "alerts", 0, PROTO_MAX_COUNTER, &h.alerts, false, err, errlen)) ||
	    (ret =
		 get_int(j, "rss_bytes", 0, PROTO_MAX_COUNTER, &h.rss_bytes, false, err, errlen)) ||
	    (ret = get_number(j, "cpu_percent", 0.0, 100000.0, &h.cpu_percent, err, errlen)))
		goto out;
	if ((ret = get_versions(j, "quarantined", h.quarantined, &h.n_quarantined, err, errlen)) ||
	    (ret = get_versions(j, "sensor_quarantined", h.sensor_quarantined,
				&h.n_sensor_quarantined, err, errlen)) ||
	    (ret = get_int(j, "sensor_crash_loop_reverts", 0, PROTO_MAX_COUNTER, &h.sensor_reverts,
			   false, err, errlen)))
		goto out;
	v = json_object_get(j, "sensor_build");
	if (v && !json_is_null(v)) {
		int64_t sb = 0;
		if ((ret = get_int(j, "sensor_build", 1, (int64_t)BUNDLE_MAX_VERSION, &sb, false,
				   err, errlen)))
			goto out;
		h.sensor_build = (uint64_t)sb;
	}
	l = json_object_get(j, "liveness");
	if (l && !json_is_null(l)) {
		char last[16] = "";
		if (!json_is_object(l)) {
			ret = fail(err, errlen, "\"liveness\" must be an object");
			goto out;
		}
		if ((ret = get_int(l, "ok", 0, PROTO_MAX_COUNTER, &h.liveness_ok, false, err,
				   errlen)) ||
		    (ret = get_int(l, "failed", 0, PROTO_MAX_COUNTER, &h.liveness_failed, false,
				   err, errlen)) ||
		    (ret = get_string(l, "last", last, sizeof(last), false, err, errlen)))
			goto out;
		if (strcmp(last, "ok") == 0) {
			h.liveness_last = 1;
		} else if (strcmp(last, "failed") == 0) {
			h.liveness_last = 0;
		} else if (last[0] && strcmp(last, "never") != 0) {
			ret = fail(err, errlen,
				   "\"liveness.last\" must be \"ok\", \"failed\" or \"never\"");
			goto out;
		}
	}
	*out = h;
out:
	json_decref(j);
	return ret;
}

void proto_batch_free(struct proto_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->records[i].json);
	free(b->records);
	b->records = NULL;
	b->n = 0;
}

static int cmp_seq(const void *a, const void *b)
{
	int64_t x = ((const struct proto_record *)a)->seq,
		y = ((const struct proto_record *)b)->seq;
	return x < y ? -1 : x > y;
}

/* Reads the record's @timestamp and rule.id when present and well-formed. */
static void record_keys(json_t *data, struct proto_record *r)
{
	json_t *ts = json_object_get(data, "@timestamp"), *rule = json_object_get(data, "rule");
	trust_time_t t;

	/* "YYYY-MM-DDTHH:MM:SS" with any fraction and zone suffix: the seconds part is used */
	if (json_is_string(ts) && json_string_length(ts) >= 19) {
		char s[21];
		memcpy(s, json_string_value(ts), 19);
		s[19] = 'Z';
		s[20] = '\0';
		if (trust_time_parse(s, 20, &t) == 0)
			r->at = t;
	}
	if (json_is_object(rule)) {
		json_t *id = json_object_get(rule, "id");
		if (json_is_string(id) &&
		    proto_name_ok(json_string_value(id), json_string_length(id)))
			memcpy(r->rule_id, json_string_value(id), json_string_length(id) + 1);
	}
}

int proto_parse_batch(const char *body, size_t len, struct proto_batch *out, char *err,
		      size_t errlen)
{
	struct proto_batch b = {0};
	json_t *j = NULL, *recs, *item;
	size_t i, n, bytes;
	int ret;

	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	recs = json_object_get(j, "records");
	if (!json_is_array(recs)) {
		ret = fail(err, errlen, "\"records\" must be an array");
		goto out;
	}
	n = json_array_size(recs);
	if (n == 0 || n > PROTO_MAX_BATCH) {
		ret = fail(err, errlen, "\"records\" must hold 1..%u records", PROTO_MAX_BATCH);
		goto out;
	}
	if (size_mul(n, sizeof(*b.records), &bytes)) {
		ret = -ENOMEM;
		goto out;
	}
	b.records = calloc(1, bytes);
	if (!b.records) {
		ret = -ENOMEM;
		goto out;
	}
	json_array_foreach(recs, i, item)
	{
		struct proto_record *r = &b.records[i];
		json_t *data;
		int64_t seq = 0;

		if (!json_is_object(item)) {
			ret = fail(err, errlen, "records[%zu] must be an object", i);
			goto out_free;
		}
		if ((ret = get_int(item, "seq", 1, PROTO_MAX_COUNTER, &seq, true, err, errlen))) {
			char why[200];
			snprintf(why, sizeof(why), "%s", err);
			ret = fail(err, errlen, "records[%zu]: %s", i, why);
			goto out_free;
		}
		data = json_object_get(item, "data");
		if (!json_is_object(data)) {
			ret = fail(err, errlen, "records[%zu]: \"data\" must be an object", i);
			goto out_free;
		}
		r->seq = seq;
		record_keys(data, r);
		r->json = json_dumps(data, JSON_COMPACT);
		b.n = i + 1;
		if (!r->json) {
			ret = -ENOMEM;
			goto out_free;
		}
		r->json_len = strlen(r->json);
		if (r->json_len > PROTO_MAX_RECORD_BYTES) {
			ret = fail(err, errlen, "records[%zu] is larger than %u bytes", i,
				   PROTO_MAX_RECORD_BYTES);
			goto out_free;
		}
	}
	qsort(b.records, b.n, sizeof(*b.records), cmp_seq);
	for (i = 1; i < b.n; i++) {
		if (b.records[i].seq == b.records[i - 1].seq) {
			ret = fail(err, errlen, "seq %lld appears twice in the batch",
				   (long long)b.records[i].seq);
			goto out_free;
		}
	}
	*out = b;
	json_decref(j);
	return 0;
out_free:
	proto_batch_free(&b);
out:
	json_decref(j);
	return ret;
}

/* --- admin API --- */

static int parse_hhmm(const char *s, uint16_t *minute)
{
	if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '2' || s[1] < '0' || s[1] > '9' ||
	    s[3] < '0' || s[3] > '5' || s[4] < '0' || s[4] > '9')
		return -EINVAL;
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > 24 || (h == 24 && m != 0))
		return -EINVAL;
	*minute = (uint16_t)(h * 60 + m);
	return 0;
}

static int parse_windows(json_t *w, struct store_policy *p, char *err, size_t errlen)
{
	size_t i;
	json_t *x;

	if (!json_is_array(w))
		return fail(err, errlen, "\"maintenance_windows\" must be an array");
	if (json_array_size(w) > PROTO_MAX_WINDOWS)
		return fail(err, errlen, "\"maintenance_windows\" holds more than %u windows",
			    PROTO_MAX_WINDOWS);
	p->n_windows = 0;
	json_array_foreach(w, i, x)
	{
		struct store_window *win = &p->windows[i];
		char start[8] = "", end[8] = "";

		if (!json_is_object(x))
			return fail(err, errlen, "maintenance_windows[%zu] must be an object", i);
		if (get_string(x, "start", start, sizeof(start), true, err, errlen) ||
		    get_string(x, "end", end, sizeof(end), true, err, errlen) ||
		    parse_hhmm(start, &win->start_minute) || parse_hhmm(end, &win->end_minute))
			return fail(err, errlen,
				    "maintenance_windows[%zu]: \"start\" and \"end\" must be HH:MM",
				    i);
		if (win->start_minute % 1440 == win->end_minute % 1440)
			return fail(err, errlen, "maintenance_windows[%zu] is empty", i);
		p->n_windows = i + 1;
	}
	return 0;
}

int proto_parse_policy(const char *body, size_t len, struct store_policy *out, char *err,
		       size_t errlen)
{
	struct store_policy p = *out;
	json_t *j = NULL, *v;
	int64_t ring = p.ring, delay = p.delay_hours, pin = 0;
	int ret;

	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	if ((ret = get_int(j, "ring", 0, PROTO_MAX_RING, &ring, false, err, errlen)) ||
	    (ret =
		 get_int(j, "delay_hours", 0, PROTO_MAX_DELAY_HOURS, &delay, false, err, errlen)) ||
	    (ret = get_bool(j, "paused", &p.paused, err, errlen)) ||
	    (ret = get_bool(j, "approval_required", &p.approval_required, err, errlen)))
		goto out;
	p.ring = (unsigned)ring;
	p.delay_hours = (unsigned)delay;
	v = json_object_get(j, "pin");
	if (v && json_is_null(v)) {
		p.has_pin = false;
		p.pin = 0;
	} else if (v) {
		if ((ret = get_int(j, "pin", 1, (int64_t)BUNDLE_MAX_VERSION, &pin, false, err,
				   errlen)))
			goto out;
		p.has_pin = true;
		p.pin = (uint64_t)pin;
	}
	v = json_object_get(j, "maintenance_windows");
	if (v && json_is_null(v))
		p.n_windows = 0;
	else if (v && (ret = parse_windows(v, &p, err, errlen)))
		goto out;
	*out = p;
out:
	json_decref(j);
	return ret;
}

int proto_policy_json(const struct store_policy *p, struct buf *out)
{
	int ret =
	    buf_printf(out, "{\"ring\":%u,\"delay_hours\":%u,\"pin\":", p->ring, p->delay_hours);
	if (!ret)
		ret = p->has_pin ? buf_printf(out, "%llu", (unsigned long long)p->pin)
				 : buf_append_str(out, "null");
	if (!ret)
		ret = buf_printf(out,
				 ",\"paused\":%s,\"approval_required\":%s,"
				 "\"maintenance_windows\":[",
				 p->paused ? "true" : "false",
				 p->approval_required ? "true" : "false");
	for (size_t i = 0; !ret && i < p->n_windows; i++) {
		const struct store_window *w = &p->windows[i];
		ret = buf_printf(out, "%s{\"start\":\"%02u:%02u\",\"end\":\"%02u:%02u\"}",
				 i ? "," : "", w->start_minute / 60u, w->start_minute % 60u,
				 w->end_minute / 60u, w->end_minute % 60u);
	}
	if (!ret)
		ret = buf_append_str(out, "]}");
	return ret;
}

static const char *const gate_names[] = {PROTO_GATE_NAMES};

static int parse_gates(json_t *g, struct proto_gates *out, char *err, size_t errlen)
{
	json_t *off, *x;
	int64_t n;
	size_t i;
	int ret;

	if (!g || json_is_null(g))
		return 0;
	if (!json_is_object(g))
		return fail(err, errlen, "\"gates\" must be an object");
	out->set = true;
	out->min_agents = out->min_bad = out->silence_k = -1;
	out->tolerance = out->alpha = out->floor_per_hour = out->alert_ratio = out->cpu_ratio =
	    -1.0;
	n = -1;
	if ((ret = get_int(g, "min_agents", 0, 1000000000, &n, false, err, errlen)))
		return ret;
	out->min_agents = n;
	n = -1;
	if ((ret = get_int(g, "min_bad", 1, 1000000000, &n, false, err, errlen)))
		return ret;
	out->min_bad = n;
	n = -1;
	if ((ret = get_int(g, "silence_k", 1, 16, &n, false, err, errlen)))
		return ret;
	out->silence_k = n;
	if ((ret = get_number(g, "tolerance", 1.0, 1000.0, &out->tolerance, err, errlen)) ||
	    (ret = get_number(g, "alpha", 1e-12, 0.5, &out->alpha, err, errlen)) ||
	    (ret = get_number(g, "floor_per_hour", 1e-9, 1000.0, &out->floor_per_hour, err,
			      errlen)) ||
	    (ret = get_number(g, "alert_ratio", 1.0, 1000.0, &out->alert_ratio, err, errlen)) ||
	    (ret = get_number(g, "cpu_ratio", 1.0, 1000.0, &out->cpu_ratio, err, errlen)))
		return ret;
	off = json_object_get(g, "disabled");
	if (off && !json_is_null(off)) {
		if (!json_is_array(off) || json_array_size(off) > PROTO_GATE_COUNT)
			return fail(err, errlen, "\"gates.disabled\" must list gate names");
		json_array_foreach(off, i, x)
		{
			size_t k;
			for (k = 0; k < PROTO_GATE_COUNT; k++)
				if (json_is_string(x) &&
				    strcmp(json_string_value(x), gate_names[k]) == 0)
					break;
			if (k == PROTO_GATE_COUNT)
				return fail(err, errlen, "gates.disabled[%zu] is not a gate name",
					    i);
			out->disabled |= 1u << k;
		}
	}
	return 0;
}

int proto_parse_rollout_start(const char *body, size_t len, struct proto_rollout_start *out,
			      char *err, size_t errlen)
{
	struct proto_rollout_start r;
	json_t *j = NULL, *plan, *step;
	size_t i;
	int ret;

	memset(&r, 0, sizeof(r));
	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	if ((ret = get_string(j, "release", r.release, sizeof(r.release), true, err, errlen)) ||
	    (ret = get_bool(j, "force", &r.force, err, errlen)))
		goto out;
	if (!proto_hash_ok(r.release, strlen(r.release))) {
		ret = fail(err, errlen, "\"release\" must be a release hash (64 hex digits)");
		goto out;
	}
	if ((ret = parse_gates(json_object_get(j, "gates"), &r.gates, err, errlen)))
		goto out;
	plan = json_object_get(j, "plan");
	if (plan && !json_is_null(plan)) {
		if (!json_is_array(plan) || json_array_size(plan) == 0 ||
		    json_array_size(plan) > PROTO_MAX_PLAN_STEPS) {
			ret = fail(err, errlen, "\"plan\" must be an array of 1..%u steps",
				   PROTO_MAX_PLAN_STEPS);
			goto out;
		}
		r.has_plan = true;
		json_array_foreach(plan, i, step)
		{
			struct proto_plan_step *s = &r.steps[i];
			int64_t ring = -1, bake = 0;
			double pct = -1;
			if (!json_is_object(step)) {
				ret = fail(err, errlen, "plan[%zu] must be an object", i);
				goto out;
			}
			if (get_int(step, "ring", 0, PROTO_MAX_RING, &ring, true, err, errlen) ||
			    get_number(step, "percent", 0.0, 100.0, &pct, err, errlen) ||
			    get_int(step, "bake_seconds", 0, PROTO_MAX_BAKE_SECONDS, &bake, false,
				    err, errlen)) {
				char why[200];
				snprintf(why, sizeof(why), "%s", err);
				ret = fail(err, errlen, "plan[%zu]: %s", i, why);
				goto out;
			}
			if (!(pct > 0.0)) {
				ret = fail(err, errlen,
					   "plan[%zu]: \"percent\" must be in (0, 100]", i);
				goto out;
			}
			s->ring = (unsigned)ring;
			s->percent = pct;
			s->bake_seconds = bake;
			if (i > 0 && (s->ring < r.steps[i - 1].ring ||
				      (s->ring == r.steps[i - 1].ring &&
				       s->percent <= r.steps[i - 1].percent))) {
				ret = fail(err, errlen,
					   "plan[%zu] does not go past the step before it", i);
				goto out;
			}
			r.n_steps = i + 1;
		}
	}
	*out = r;
out:
	json_decref(j);
	return ret;
}

int proto_parse_group_ref(const char *body, size_t len, char group[STORE_NAME_BYTES], char *err,
			  size_t errlen)
{
	char g[STORE_NAME_BYTES] = "";
	json_t *j = NULL;
	int ret;

	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	if ((ret = get_string(j, "group", g, sizeof(g), true, err, errlen)))
		goto out;
	if (!proto_name_ok(g, strlen(g))) {
		ret = fail(err, errlen, "\"group\" must be 1..%d characters of [A-Za-z0-9._-]",
			   STORE_NAME_BYTES - 1);
		goto out;
	}
	memcpy(group, g, sizeof(g));
out:
	json_decref(j);
	return ret;
}

static const char *const role_names[] = {"viewer", "operator", "admin"};

const char *proto_role_name(enum store_role r)
{
	return (unsigned)r < 3 ? role_names[r] : "none";
}

int proto_role_parse(const char *s, enum store_role *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, role_names[i]) == 0) {
			*out = (enum store_role)i;
			return 0;
		}
	}
	return -EINVAL;
}

int proto_parse_token_request(const char *body, size_t len, bool enrollment,
			      struct proto_token_request *out, char *err, size_t errlen)
{
	struct proto_token_request t;
	char role[16] = "";
	json_t *j = NULL;
	int ret;

	memset(&t, 0, sizeof(t));
	ret = proto_json_object(body, len, (void **)&j, err, errlen);
	if (ret)
		return ret;
	if (enrollment) {
		snprintf(t.group, sizeof(t.group), "default");
		if ((ret = get_string(j, "group", t.group, sizeof(t.group), false, err, errlen)) ||
		    (ret = get_int(j, "uses", 0, PROTO_MAX_COUNTER, &t.uses, false, err, errlen)) ||
		    (ret = get_int(j, "expires_seconds", 0, 100ll * 365 * 86400, &t.expires_seconds,
				   false, err, errlen)))
			goto out;
		if (!proto_name_ok(t.group, strlen(t.group))) {
			ret = fail(err, errlen,
				   "\"group\" must be 1..%d characters of [A-Za-z0-9._-]",
				   STORE_NAME_BYTES - 1);
			goto out;
		}
	} else {
		if ((ret = get_string(j, "name", t.name, sizeof(t.name), true, err, errlen)) ||
		    (ret = get_string(j, "role", role, sizeof(role), true, err, errlen)))
			goto out;
		if (!proto_name_ok(t.name, strlen(t.name))) {
			ret =
			    fail(err, errlen, "\"name\" must be 1..%d characters of [A-Za-z0-9._-]",
				 STORE_NAME_BYTES - 1);
			goto out;
		}
		if (proto_role_parse(role, &t.role)) {
			ret = fail(err, errlen, "\"role\" must be admin, operator or viewer");
			goto out;
		}
	}
	*out = t;
out:
	json_decref(j);
	return ret;
}
