/*
 * libFuzzer target for the heartbeat request body of vigil-server (proto_parse_heartbeat).
 * What parses stays within the documented ranges; what fails says why on one line.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_health h;
	char err[256] = "";

	if (proto_parse_heartbeat((const char *)data, size, &h, err, sizeof(err)) == 0) {
		if (h.n_quarantined > PROTO_MAX_QUARANTINED || h.uptime_seconds < 0 ||
		    h.restarts < 0 || h.crash_loop_reverts < 0 || h.drops < 0 || h.alerts < 0 ||
		    h.rss_bytes < 0 || h.liveness_ok < 0 || h.liveness_failed < 0 ||
		    h.liveness_last < -1 || h.liveness_last > 1 || !isfinite(h.cpu_percent) ||
		    (h.has_content && h.content_version == 0) ||
		    !memchr(h.hostname, '\0', sizeof(h.hostname)) ||
		    !memchr(h.sensor_version, '\0', sizeof(h.sensor_version)))
			abort();
		for (size_t i = 0; i < h.n_quarantined; i++)
			if (h.quarantined[i] == 0)
				abort();
	} else if (err[0] == '\0' || !memchr(err, '\0', sizeof(err)) || strchr(err, '\n')) {
		abort();
	}
	return 0;
}
