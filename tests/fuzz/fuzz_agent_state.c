/*
 * libFuzzer target for the agent's state file (state.json), read back at every start. What
 * parses must write back as a state that parses to the same text again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/state.h"

static struct agent_state st, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf first, second;
	char err[512];

	if (state_parse((const char *)data, size, &st, err, sizeof(err)) < 0) {
		if (!err[0] || strchr(err, '\n'))
			abort(); /* a rejection always says why, on one line */
		return 0;
	}
	buf_init(&first, STATE_MAX_BYTES * 4);
	buf_init(&second, STATE_MAX_BYTES * 4);
	if (state_write_json(&st, false, &first) < 0)
		abort();
	if (state_parse(first.data, first.len, &again, err, sizeof(err)) < 0)
		abort(); /* what the agent writes it must read */
	if (state_write_json(&again, false, &second) < 0)
		abort();
	if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
		abort();
	buf_release(&first);
	buf_release(&second);
	return 0;
}
