/*
 * Detection liveness probes through the live engine, and their counters.
 */
#include "liveness.h"

#include <errno.h>
#include <string.h>

#include "selftest.h"

int liveness_init(struct liveness *l)
{
	memset(l, 0, sizeof(*l));
	l->last = -1;
	l->ev = event_new();
	return l->ev ? 0 : -ENOMEM;
}

void liveness_release(struct liveness *l)
{
	event_free(l->ev);
	l->ev = NULL;
}

bool liveness_check(struct liveness *l, struct engine *e, uint64_t now_ns)
{
	unsigned alerts = 0;
	int ret = -EINVAL;

	if (e && l->ev) {
		ret = selftest_liveness_probe(e, l->ev, ++l->nonce, now_ns, &alerts);
		if (ret >= 0)
			l->probe_events++;
		l->probe_alerts += alerts;
	}
	l->last = ret == 1;
	l->last_ns = now_ns;
	if (ret == 1)
		l->ok++;
	else
		l->failed++;
	return ret == 1;
}

int liveness_metrics(const struct liveness *l, struct buf *out)
{
	return buf_printf(out, ",\"liveness\":{\"ok\":%llu,\"failed\":%llu,\"last\":%s}",
			  (unsigned long long)l->ok, (unsigned long long)l->failed,
			  l->last < 0 ? "null"
			  : l->last   ? "\"ok\""
				      : "\"failed\"");
}
