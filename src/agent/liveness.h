/*
 * Detection liveness: at a fixed interval the agent passes a synthetic marker event through
 * its live engine and expects the built-in liveness rule to fire. A ruleset that silently
 * stops detecting is noticed here, reported in metric lines and in the state directory.
 */
#ifndef VIGIL_AGENT_LIVENESS_H
#define VIGIL_AGENT_LIVENESS_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/engine.h"

struct liveness {
	uint64_t ok;
	uint64_t failed;
	int last;	  /* -1 not probed yet, 0 failed, 1 ok */
	uint64_t last_ns; /* CLOCK_REALTIME of the last probe */
	uint64_t nonce;
	uint64_t probe_events; /* events the probes passed through engines */
	uint64_t probe_alerts; /* alerts those raised, of any rule */
	struct event *ev;
};

/* Sets up @l. Returns 0 or -ENOMEM. */
int liveness_init(struct liveness *l);

/* Frees what @l holds. Accepts a zeroed @l. */
void liveness_release(struct liveness *l);

/*
 * Probes @e once at @now_ns (CLOCK_REALTIME) and counts the result. Returns true when the
 * built-in rule fired exactly once.
 */
bool liveness_check(struct liveness *l, struct engine *e, uint64_t now_ns);

/* Appends ,"liveness":{"ok":N,"failed":N,"last":"ok"|"failed"|null} to @out. */
int liveness_metrics(const struct liveness *l, struct buf *out);

#endif
