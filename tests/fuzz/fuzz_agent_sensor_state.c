/*
 * libFuzzer target for the agent's sensor state file (STATE/sensor/state.json), read at every
 * start before anything else. What parses must write back as a state that parses to the same
 * text again, and the start-up decision on it must leave a state that still parses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sensor_state.h"

static struct sensor_state st, again;

static void write_or_die(const struct sensor_state *s, struct buf *out)
{
	if (sensor_state_write_json(s, out) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf first, second;
	char err[512];
	bool changed;

	if (sensor_state_parse((const char *)data, size, &st, err, sizeof(err)) < 0) {
		if (!err[0] || strchr(err, '\n'))
			abort(); /* a rejection always says why, on one line */
		return 0;
	}
	buf_init(&first, SENSOR_STATE_MAX_BYTES * 4);
	buf_init(&second, SENSOR_STATE_MAX_BYTES * 4);
	write_or_die(&st, &first);
	if (sensor_state_parse(first.data, first.len, &again, err, sizeof(err)) < 0)
		abort(); /* what the agent writes it must read */
	write_or_die(&again, &second);
	if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
		abort();
	/* every start decides on it: the result is a state the next start can read */
	uint64_t own = size ? data[0] % 8 : 1;
	uint64_t run = sensor_state_boot(&again, own, 3, 1700000000, &changed);
	if (run && run <= own)
		abort(); /* never a staged build that is not newer than the installed one */
	buf_reset(&second);
	write_or_die(&again, &second);
	if (sensor_state_parse(second.data, second.len, &st, err, sizeof(err)) < 0)
		abort();
	buf_release(&first);
	buf_release(&second);
	return 0;
}
