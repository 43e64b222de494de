/*
 * Parsers of what the agent reads from vigil-server. See uplink_proto.h.
 */
#include "uplink_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/bundle.h"
#include "../lib/trust.h"

/* Nesting a heartbeat answer may have: {"content": {...}}. */
#define ANSWER_MAX_DEPTH 4

static bool token_chars(const char *s, size_t len, size_t max, const char *extra)
{
	if (len == 0 || len >= max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || (c && strchr(extra, c))))
			return false;
	}
	return true;
}

bool uplink_id_valid(const char *s, size_t len)
{
	return token_chars(s, len, UPLINK_ID_BYTES, "");
}

bool uplink_credential_valid(const char *s, size_t len)
{
	return token_chars(s, len, UPLINK_CRED_BYTES, ".");
}

/* Depth of nesting of the JSON text @data, without parsing it; strings are skipped. */
static unsigned depth_of(const char *data, size_t len)
{
	unsigned depth = 0, max = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				max = depth;
		} else if ((c == '}' || c == ']') && depth) {
			depth--;
		}
	}
	return max;
}

static json_t *load(const char *data, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *j;

	if (len > UPLINK_REPLY_MAX) {
		err_set(err, errlen, -EBADMSG, "answer larger than 1 MiB");
		return NULL;
	}
	if (depth_of(data, len) > ANSWER_MAX_DEPTH) {
		err_set(err, errlen, -EBADMSG, "answer nested too deeply");
		return NULL;
	}
	j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		/* the parser's message may quote the input: kept to one printable line */
		text_printable(jerr.text);
		snprintf(err, errlen, "answer is not JSON: %s", jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		err_set(err, errlen, -EBADMSG, "answer is not a JSON object");
		return NULL;
	}
	return j;
}

int uplink_parse_enrollment(const char *data, size_t len, struct uplink_enrollment *out, char *err,
			    size_t errlen)
{
	json_t *j, *id, *cred;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	j = load(data, len, err, errlen);
	if (!j)
		return -EBADMSG;
	id = json_object_get(j, "agent_id");
	cred = json_object_get(j, "credential");
	if (!json_is_string(id) || !uplink_id_valid(json_string_value(id), json_string_length(id)))
		ret = err_set(err, errlen, -EBADMSG, "'agent_id' is not an agent id");
	else if (!json_is_string(cred) ||
		 !uplink_credential_valid(json_string_value(cred), json_string_length(cred)))
		ret = err_set(err, errlen, -EBADMSG, "'credential' is not a credential");
	if (!ret) {
		memcpy(out->agent_id, json_string_value(id), json_string_length(id) + 1);
		memcpy(out->credential, json_string_value(cred), json_string_length(cred) + 1);
	}
	json_decref(j);
	return ret;
}

/* A version: an integer 1..BUNDLE_MAX_VERSION. */
static bool version_of(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    (uint64_t)json_integer_value(v) > BUNDLE_MAX_VERSION)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* "content" or "sensor" (@key) of a heartbeat answer. */
static int parse_content(json_t *c, const char *key, struct uplink_content *out, char *err,
			 size_t errlen)
{
	json_t *v = json_object_get(c, "version"), *h = json_object_get(c, "hash"),
	       *sz = json_object_get(c, "size"), *url = json_object_get(c, "url"),
	       *audit = json_object_get(c, "audit_mode"), *pulled = json_object_get(c, "pulled");

	if (!c || json_is_null(c))
		return 0;
	if (!json_is_object(c))
		return err_set(err, errlen, -EBADMSG, "'%s' is not an object", key);
	out->present = true;
	if (v && !json_is_null(v)) {
		if (!version_of(v, &out->version))
			return err_set(err, errlen, -EBADMSG, "'%s.version' is not a version", key);
		out->has_version = true;
	}
	if (h && !json_is_null(h)) {
		if (!json_is_string(h) ||
		    !trust_hash_hex_ok(json_string_value(h), json_string_length(h)))
			return err_set(err, errlen, -EBADMSG, "'%s.hash' is not 64 hex digits",
				       key);
		if (!json_is_integer(sz) || json_integer_value(sz) < 1 ||
		    (uint64_t)json_integer_value(sz) > BUNDLE_MAX_BYTES)
			return err_set(err, errlen, -EBADMSG, "'%s.size' is not a bundle size",
				       key);
		if (!json_is_string(url) || json_string_length(url) >= sizeof(out->url) ||
		    strncmp(json_string_value(url), UPLINK_URL_PREFIX,
			    sizeof(UPLINK_URL_PREFIX) - 1) != 0 ||
		    strcmp(json_string_value(url) + sizeof(UPLINK_URL_PREFIX) - 1,
			   json_string_value(h)) != 0)
			return err_set(err, errlen, -EBADMSG, "'%s.url' is not the bundle's path",
				       key);
		if (!out->has_version)
			return err_set(err, errlen, -EBADMSG, "'%s.hash' without a version", key);
		memcpy(out->hash, json_string_value(h), 65);
		memcpy(out->url, json_string_value(url), json_string_length(url) + 1);
		out->size = (int64_t)json_integer_value(sz);
		out->downloadable = true;
	}
	if (audit && !json_is_boolean(audit))
		return err_set(err, errlen, -EBADMSG, "'%s.audit_mode' is not true or false", key);
	out->audit_mode = json_is_true(audit);
	if (pulled && !json_is_null(pulled) && !version_of(pulled, &out->pulled))
		return err_set(err, errlen, -EBADMSG, "'%s.pulled' is not a version", key);
	return 0;
}

int uplink_parse_answer(const char *data, size_t len, struct uplink_answer *out, char *err,
			size_t errlen)
{
	json_t *j, *hs;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	j = load(data, len, err, errlen);
	if (!j)
		return -EBADMSG;
	hs = json_object_get(j, "heartbeat_seconds");
	if (hs) {
		if (!json_is_integer(hs) || json_integer_value(hs) < UPLINK_MIN_INTERVAL ||
		    json_integer_value(hs) > UPLINK_MAX_INTERVAL)
			ret = err_set(err, errlen, -EBADMSG, "'heartbeat_seconds' is out of range");
		else
			out->heartbeat_seconds = (unsigned)json_integer_value(hs);
	}
	if (!ret)
		ret = parse_content(json_object_get(j, "content"), "content", &out->content, err,
				    errlen);
	if (!ret)
		ret = parse_content(json_object_get(j, "sensor"), "sensor", &out->sensor, err,
				    errlen);
	if (ret)
		memset(out, 0, sizeof(*out));
	json_decref(j);
	return ret;
}
