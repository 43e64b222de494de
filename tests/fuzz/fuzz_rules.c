/*
 * libFuzzer target for the rule loader and compiler: any bytes as one rule file must load or
 * fail with a one-line message; what loads must run its tests and evaluate events safely.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/engine.h"
#include "lib/event_json.h"
#include "lib/rules.h"

/* Bigger inputs only make each run slower; the limits are tested by the unit tests. */
#define FUZZ_RULES_MAX 16384

static const char *const events[] = {
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"name\":\"sh\","
    "\"pid\":1,\"args\":[\"sh\",\"-c\",\"\"],\"command_line\":\"sh -c \",\"entity_id\":\"e1\"},"
    "\"user\":{\"id\":\"0\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"connect\"},\"destination\":{\"ip\":\"10.0.0.1\","
    "\"port\":443},\"process\":{\"entity_id\":\"e1\",\"executable\":\"\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"rename\"},\"file\":{\"path\":\"/tmp/a\"},"
    "\"source\":{\"ip\":\"::1\"}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rules_source src = {"fuzz.yml", (const char *)data, size};
	struct ruleset *rs = NULL;
	struct engine *e = NULL;
	struct event *ev = NULL;
	char err[512], why[256];

	if (size > FUZZ_RULES_MAX)
		return 0;
	err[0] = '\0';
	if (ruleset_load_sources(&src, 1, &rs, err, sizeof(err)) < 0) {
		/* a refusal always says why, on one line */
		if (err[0] == '\0' || strchr(err, '\n'))
			abort();
		return 0;
	}
	ruleset_run_tests(rs, NULL, NULL);
	if (engine_new(rs, NULL, &e) == 0 && (ev = event_new())) {
		for (int round = 0; round < 2; round++) {
			for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
				if (event_parse_json(ev, events[i], strlen(events[i]), why,
						     sizeof(why), NULL) == EVENT_PARSED)
					engine_eval(e, ev,
						    (uint64_t)(round * 10 + i) * 1000000000ull,
						    NULL, NULL);
			}
		}
	}
	event_free(ev);
	engine_free(e);
	ruleset_free(rs);
	return 0;
}
