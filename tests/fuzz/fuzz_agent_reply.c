/*
 * libFuzzer target for what the agent reads from vigil-server: the enrollment answer and the
 * heartbeat answer. Whatever is accepted must hold only what the server may issue.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/uplink_proto.h"
#include "lib/bundle.h"

static void check_token(const char *s, size_t max, bool dot)
{
	size_t n = strnlen(s, max);
	if (n == 0 || n >= max)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' ||
		      (dot && s[i] == '.')))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uplink_enrollment en;
	struct uplink_answer ans;
	char err[256];

	if (uplink_parse_enrollment((const char *)data, size, &en, err, sizeof(err)) == 0) {
		check_token(en.agent_id, sizeof(en.agent_id), false);
		check_token(en.credential, sizeof(en.credential), true);
	} else if (!err[0] || strchr(err, '\n')) {
		abort();
	}
	if (uplink_parse_answer((const char *)data, size, &ans, err, sizeof(err)) == 0) {
		const struct uplink_content *c = &ans.content;
		if (ans.heartbeat_seconds && (ans.heartbeat_seconds < UPLINK_MIN_INTERVAL ||
					      ans.heartbeat_seconds > UPLINK_MAX_INTERVAL))
			abort();
		if (c->has_version && (c->version < 1 || c->version > BUNDLE_MAX_VERSION))
			abort();
		if (c->downloadable) {
			if (!c->has_version || strlen(c->hash) != 64 || c->size < 1 ||
			    (uint64_t)c->size > BUNDLE_MAX_BYTES ||
			    strncmp(c->url, UPLINK_URL_PREFIX, strlen(UPLINK_URL_PREFIX)) != 0 ||
			    strcmp(c->url + strlen(UPLINK_URL_PREFIX), c->hash) != 0 ||
			    strspn(c->hash, "0123456789abcdef") != 64)
				abort();
		}
		if (c->pulled > BUNDLE_MAX_VERSION)
			abort();
	} else if (!err[0] || strchr(err, '\n')) {
		abort();
	}
	return 0;
}
