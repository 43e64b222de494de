/*
 * libFuzzer target for the NDJSON event reader: any line must parse or fail with a reason;
 * what parses must write back as JSON that reads back to the same output, and must evaluate
 * through an engine safely.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/engine.h"
#include "lib/event_json.h"
#include "lib/rules.h"

static const char rules_yaml[] =
    "rules:\n"
    "  - {id: a, name: a, condition: {all: [event.action: exec, process.args: {icontains: x}]}}\n"
    "  - {id: b, name: b, condition: {any: [process.name: '', destination.ip: {cidr: 10.0.0.0/8},"
    " process.pid: {gt: 5}, process.ancestors: {regex: 'sshd$'}]}}\n"
    "  - id: c\n    name: c\n    condition: {event.action: rename}\n"
    "    threshold: {count: 3, within: 10s, by: process.entity_id}\n"
    "  - id: d\n    name: d\n    sequence: {within: 10s, by: process.pid, steps: "
    "[{condition: {event.action: exec}}, {condition: {event.action: connect}}]}\n";

static struct ruleset *rs;
static struct engine *eng;
static struct event *ev, *ev2, *scratch;
static struct buf out1, out2;

static void setup(void)
{
	struct rules_source src = {"fuzz.yml", rules_yaml, sizeof(rules_yaml) - 1};
	char err[256];
	if (ruleset_load_sources(&src, 1, &rs, err, sizeof(err)) < 0 ||
	    engine_new(rs, NULL, &eng) < 0 || !(ev = event_new()) || !(ev2 = event_new()) ||
	    !(scratch = event_new()))
		abort();
	buf_init(&out1, 8 * EVENT_JSON_LINE_MAX);
	buf_init(&out2, 8 * EVENT_JSON_LINE_MAX);
}

static void on_alert(void *ctx, const struct rule_info *rule, const struct event *e)
{
	buf_reset(&out2);
	if (alert_write_json(rule, e, scratch, &out2) < 0)
		abort();
	(void)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	uint64_t t;

	if (!rs)
		setup();
	why[0] = '\0';
	int ret = event_parse_json(ev, (const char *)data, size, why, sizeof(why), NULL);
	if (ret < 0) {
		if (why[0] == '\0' || strchr(why, '\n'))
			abort(); /* a rejection says why, on one line */
		return 0;
	}
	size_t tl;
	const char *ts = event_str(ev, F_TIMESTAMP, &tl);
	if (!ts || timestamp_parse(ts, tl, &t) < 0)
		t = size * 1000000000ull;
	engine_eval(eng, ev, t, on_alert, NULL);

	/* write, read back, write again: the two outputs agree */
	buf_reset(&out1);
	if (event_write_json(ev, &out1) < 0)
		return 0;
	if (event_parse_json(ev2, out1.data, out1.len, why, sizeof(why), NULL) < 0)
		abort();
	buf_reset(&out2);
	if (event_write_json(ev2, &out2) < 0)
		abort();
	if (out1.len != out2.len || memcmp(out1.data, out2.data, out1.len) != 0)
		abort();
	return 0;
}
