/*
 * libFuzzer target for rollout requests sent to vigil-server's admin API
 * (proto_parse_rollout_start). What parses names a release hash and a plan whose steps go
 * forward; what fails says why on one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_rollout_start r;
	char err[256] = "";

	if (proto_parse_rollout_start((const char *)data, size, &r, err, sizeof(err)) == 0) {
		if (!proto_hash_ok(r.release, strlen(r.release)) ||
		    r.n_steps > PROTO_MAX_PLAN_STEPS || (r.has_plan && r.n_steps == 0))
			abort();
		for (size_t i = 0; i < r.n_steps; i++) {
			const struct proto_plan_step *s = &r.steps[i];
			if (s->ring > PROTO_MAX_RING ||
			    !(s->percent > 0.0 && s->percent <= 100.0) || s->bake_seconds < 0 ||
			    s->bake_seconds > PROTO_MAX_BAKE_SECONDS)
				abort();
			if (i && (s->ring < r.steps[i - 1].ring ||
				  (s->ring == r.steps[i - 1].ring &&
				   s->percent <= r.steps[i - 1].percent)))
				abort();
		}
		if (r.gates.disabled >> PROTO_GATE_COUNT)
			abort();
	} else if (err[0] == '\0' || !memchr(err, '\0', sizeof(err)) || strchr(err, '\n')) {
		abort();
	}
	return 0;
}
