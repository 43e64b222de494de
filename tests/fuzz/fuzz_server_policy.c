/*
 * libFuzzer target for group policies sent to vigil-server's admin API (proto_parse_policy).
 * What parses is within range and survives a round trip through proto_policy_json; what
 * fails says why on one line and leaves the policy it was given unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_policy p, orig, back;
	struct buf out;
	char err[256] = "";

	memset(&p, 0, sizeof(p));
	p.ring = 2;
	p.n_windows = 1;
	p.windows[0].start_minute = 60;
	p.windows[0].end_minute = 120;
	orig = p;
	if (proto_parse_policy((const char *)data, size, &p, err, sizeof(err)) != 0) {
		if (err[0] == '\0' || !memchr(err, '\0', sizeof(err)) || strchr(err, '\n') ||
		    memcmp(&p, &orig, sizeof(p)) != 0)
			abort();
		return 0;
	}
	if (p.ring > PROTO_MAX_RING || p.delay_hours > PROTO_MAX_DELAY_HOURS ||
	    p.n_windows > PROTO_MAX_WINDOWS || (p.has_pin && p.pin == 0))
		abort();
	buf_init(&out, 1 << 16);
	if (proto_policy_json(&p, &out))
		abort();
	memset(&back, 0, sizeof(back));
	if (proto_parse_policy(out.data, out.len, &back, err, sizeof(err)) || back.ring != p.ring ||
	    back.delay_hours != p.delay_hours || back.has_pin != p.has_pin || back.pin != p.pin ||
	    back.paused != p.paused || back.approval_required != p.approval_required ||
	    back.n_windows != p.n_windows)
		abort();
	for (size_t i = 0; i < p.n_windows; i++)
		if (back.windows[i].start_minute != p.windows[i].start_minute ||
		    back.windows[i].end_minute != p.windows[i].end_minute)
			abort();
	buf_release(&out);
	return 0;
}
