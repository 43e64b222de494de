/*
 * Unit tests for the rule engine: the rule-engine cases in tests/rules (one rule file per
 * case, with its events and verdicts), bucket selection, threshold and sequence windows,
 * bounded state and its eviction counts, alerts as NDJSON, and the rule-test runner.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/engine.h"
#include "lib/event_json.h"
#include "lib/rules.h"

#define SEC 1000000000ull
#define T0  (1750000000ull * SEC)

static char err[1024];

static struct ruleset *load(const char *yaml)
{
	struct rules_source src = {"t.yml", yaml, strlen(yaml)};
	struct ruleset *rs = NULL;
	if (ruleset_load_sources(&src, 1, &rs, err, sizeof(err)) < 0)
		fail_msg("load failed: %s", err);
	return rs;
}

struct hits {
	char ids[1024];
	unsigned n;
};

static void on_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct hits *h = ctx;
	size_t used = strlen(h->ids);
	snprintf(h->ids + used, sizeof(h->ids) - used, "%s%s", h->n ? "," : "", rule->id);
	h->n++;
}

/* Evaluates the event written as JSON with ' for " at @now; returns the alerting rule ids. */
static const char *eval_at(struct engine *e, const char *json, uint64_t now)
{
	static struct hits h;
	char text[2048], why[256];
	struct event *ev = event_new();
	size_t n = strlen(json);
	assert_true(n < sizeof(text));
	for (size_t i = 0; i <= n; i++)
		text[i] = json[i] == '\'' ? '"' : json[i];
	if (event_parse_json(ev, text, n, why, sizeof(why), NULL) != EVENT_PARSED)
		fail_msg("bad test event %s: %s", text, why);
	memset(&h, 0, sizeof(h));
	int ret = engine_eval(e, ev, now, on_alert, &h);
	assert_int_equal(ret, (int)h.n);
	event_free(ev);
	return h.ids;
}

/* --- tests/rules: one case per file --- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *data = malloc(1 << 20);
	assert_non_null(data);
	*len = fread(data, 1, (1 << 20) - 1, f);
	data[*len] = '\0';
	fclose(f);
	return data;
}

static void run_case(const char *dir, const char *name)
{
	char path[512];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	char *data = read_all(path, &len);
	struct rules_source src = {name, data, len};
	struct ruleset *rs = NULL;
	const char *expect = "# expect-error: ";
	int ret = ruleset_load_sources(&src, 1, &rs, err, sizeof(err));
	if (strncmp(data, expect, strlen(expect)) == 0) {
		char want[512];
		const char *s = data + strlen(expect);
		size_t n = strcspn(s, "\n");
		snprintf(want, sizeof(want), "%.*s", (int)n, s);
		if (ret == 0)
			fail_msg("%s: loaded, expected the error '%s'", name, want);
		if (!strstr(err, want))
			fail_msg("%s: error '%s' lacks '%s'", name, err, want);
		free(data);
		return;
	}
	if (ret < 0)
		fail_msg("%s: %s", name, err);
	struct buf report;
	struct rules_test_result res;
	buf_init(&report, 1 << 20);
	ret = ruleset_run_tests(rs, &report, &res);
	if (ret != 0)
		fail_msg("%s: tests failed:\n%s", name, report.data ? report.data : "");
	/* a case without both verdicts proves little */
	for (size_t i = 0; i < ruleset_count(rs); i++)
		assert_true(res.rules == ruleset_count(rs));
	assert_true(res.passed >= 2);
	assert_int_equal(res.failed, 0);
	buf_release(&report);
	ruleset_free(rs);
	free(data);
}

static void rule_cases(void **state)
{
	const char *dir = "tests/rules";
	DIR *d = opendir(dir);
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)) && n < 256) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".yml") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	assert_true(n >= 20);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		run_case(dir, names[i]);
		free(names[i]);
	}
}

/* --- buckets --- */

static void bucket_selection(void **state)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_append_str(&b, "rules:\n"), 0);
	for (int i = 0; i < 50; i++)
		assert_int_equal(
		    buf_printf(&b,
			       "  - {id: exec%d, name: n, condition: {all: "
			       "[event.action: exec, process.name: {exists: true}]}}\n",
			       i),
		    0);
	assert_int_equal(
	    buf_append_str(&b, "  - {id: fork, name: n, condition: {event.action: fork}}\n"
			       "  - {id: any, name: n, condition: {process.name: x}}\n"
			       "  - {id: any-not, name: n, condition: {not: {process.name: x}}}\n"),
	    0);
	struct ruleset *rs = load(b.data);
	buf_release(&b);
	struct ruleset_stats rst;
	ruleset_get_stats(rs, &rst);
	assert_int_equal(rst.buckets, 3); /* catch-all, exec, fork */
	struct engine *e = NULL;
	assert_int_equal(engine_new(rs, NULL, &e), 0);
	struct engine_stats st;

	/* a fork event considers the fork rule and the catch-all ones, never the exec rules */
	assert_string_equal(
	    eval_at(e, "{'event':{'kind':'event','action':'fork'},'process':{'name':'y'}}", T0),
	    "fork,any-not");
	engine_get_stats(e, &st);
	assert_int_equal(st.evaluations, 2);
	/* a pattern hit makes the catch-all rule a candidate */
	assert_string_equal(
	    eval_at(e, "{'event':{'kind':'event','action':'fork'},'process':{'name':'x'}}", T0),
	    "fork,any");
	engine_get_stats(e, &st);
	assert_int_equal(st.evaluations, 2 + 3);
	/* an action no rule names: only the catch-all bucket */
	assert_string_equal(
	    eval_at(e, "{'event':{'kind':'event','action':'ptrace'},'process':{'name':'x'}}", T0),
	    "any");
	engine_get_stats(e, &st);
	assert_int_equal(st.evaluations, 5 + 2);
	/* exec: all fifty, in rule order, then the catch-all */
	const char *ids =
	    eval_at(e, "{'event':{'kind':'event','action':'exec'},'process':{'name':'z'}}", T0);
	assert_int_equal(strncmp(ids, "exec0,exec1,exec2,", 18), 0);
	assert_non_null(strstr(ids, "exec49,any-not"));
	engine_get_stats(e, &st);
	assert_int_equal(st.events, 4);
	assert_int_equal(st.alerts, 2 + 2 + 1 + 51);
	assert_true(engine_memory(e) > 0);
	engine_free(e);
	engine_free(NULL);
	ruleset_free(rs);
}

static void regex_buckets(void **state)
{
	/* regexes that trigger rules share one database per field across buckets */
	struct ruleset *rs = load("rules:\n"
				  "  - {id: r1, name: n, condition: {all: [event.action: exec, "
				  "process.command_line: {regex: 'a+b'}]}}\n"
				  "  - {id: r2, name: n, condition: {all: [event.action: fork, "
				  "process.command_line: {regex: 'c+d'}]}}\n"
				  "  - {id: r3, name: n, condition: {all: [event.action: fork, "
				  "process.name: x, process.command_line: {regex: 'e+f'}]}}\n");
	struct ruleset_stats rst;
	ruleset_get_stats(rs, &rst);
	assert_int_equal(rst.databases, 2); /* the shared regex one, fork's process.name */
	struct engine *e = NULL;
	struct engine_stats st;
	assert_int_equal(engine_new(rs, NULL, &e), 0);
	/* r1's regex matches, but a fork event never evaluates an exec rule */
	assert_string_equal(
	    eval_at(e,
		    "{'event':{'kind':'event','action':'fork'},'process':{'command_line':'aab'}}",
		    T0),
	    "");
	engine_get_stats(e, &st);
	assert_int_equal(st.evaluations, 0);
	assert_string_equal(
	    eval_at(e,
		    "{'event':{'kind':'event','action':'exec'},'process':{'command_line':'aab'}}",
		    T0),
	    "r1");
	assert_string_equal(
	    eval_at(e,
		    "{'event':{'kind':'event','action':'fork'},'process':{'command_line':'xccd'}}",
		    T0),
	    "r2");
	/* r3's regex runs on demand, after process.name matched */
	assert_string_equal(eval_at(e,
				    "{'event':{'kind':'event','action':'fork'},'process':{'name':'"
				    "x','command_line':'ef'}}",
				    T0),
			    "r3");
	assert_string_equal(eval_at(e,
				    "{'event':{'kind':'event','action':'fork'},'process':{'name':'"
				    "y','command_line':'ef'}}",
				    T0),
			    "");
	engine_get_stats(e, &st);
	assert_int_equal(st.evaluations, 3);
	engine_free(e);
	ruleset_free(rs);
}

/* --- stateful clauses --- */

#define RENAME(key) "{'event':{'kind':'event','action':'rename'},'process':{'entity_id':'" key "'}}"

static void threshold_window(void **state)
{
	struct ruleset *rs =
	    load("rules:\n  - id: burst\n    name: n\n"
		 "    condition: {event.action: rename}\n"
		 "    threshold: {count: 3, within: 16s, by: process.entity_id}\n");
	struct engine *e = NULL;
	assert_int_equal(engine_new(rs, NULL, &e), 0);

	assert_string_equal(eval_at(e, RENAME("a"), T0), "");
	assert_string_equal(eval_at(e, RENAME("a"), T0 + 5 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("a"), T0 + 10 * SEC), "burst");
	/* re-armed: three more are needed */
	assert_string_equal(eval_at(e, RENAME("a"), T0 + 11 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("a"), T0 + 12 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("a"), T0 + 13 * SEC), "burst");

	/* sliding: the first event falls out of the window before the third arrives */
	assert_string_equal(eval_at(e, RENAME("b"), T0 + 100 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("b"), T0 + 110 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("b"), T0 + 117 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("b"), T0 + 118 * SEC), "burst");
	/* keys are separate */
	assert_string_equal(eval_at(e, RENAME("c"), T0 + 200 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("d"), T0 + 200 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("c"), T0 + 200 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("c"), T0 + 200 * SEC), "burst");
	/* time going backwards counts in the newest slot and never crashes */
	assert_string_equal(eval_at(e, RENAME("e"), T0 + 300 * SEC), "");
	assert_string_equal(eval_at(e, RENAME("e"), T0), "");
	assert_string_equal(eval_at(e, RENAME("e"), 0), "burst");

	engine_reset_state(e);
	struct engine_stats st;
	engine_get_stats(e, &st);
	assert_int_equal(st.state_entries, 0);
	assert_string_equal(eval_at(e, RENAME("a"), T0), "");
	engine_free(e);
	ruleset_free(rs);
}

#define EXEC_SH(key)                                                                               \
	"{'event':{'kind':'event','action':'exec'},'process':{'entity_id':'" key                   \
	"','name':'sh','parent':{'name':'nginx'}}}"
#define CONNECT(key)                                                                               \
	"{'event':{'kind':'event','action':'connect'},'process':{'entity_id':'" key                \
	"'},'network':{'direction':'egress'}}"

static void sequence_window(void **state)
{
	struct ruleset *rs = load(
	    "rules:\n  - id: seq\n    name: n\n    tags: [attack.t1190]\n"
	    "    sequence:\n      within: 30s\n      by: process.entity_id\n      steps:\n"
	    "        - condition: {all: [event.action: exec, process.parent.name: nginx]}\n"
	    "        - condition: {all: [event.action: connect, network.direction: egress]}\n");
	struct engine *e = NULL;
	assert_int_equal(engine_new(rs, NULL, &e), 0);

	assert_string_equal(eval_at(e, EXEC_SH("a"), T0), "");
	assert_string_equal(eval_at(e, CONNECT("a"), T0 + 30 * SEC), "seq");
	/* completed: a second connect needs a new first step */
	assert_string_equal(eval_at(e, CONNECT("a"), T0 + 31 * SEC), "");
	/* past the window */
	assert_string_equal(eval_at(e, EXEC_SH("b"), T0), "");
	assert_string_equal(eval_at(e, CONNECT("b"), T0 + 31 * SEC), "");
	/* a later first step restarts the window */
	assert_string_equal(eval_at(e, EXEC_SH("c"), T0), "");
	assert_string_equal(eval_at(e, EXEC_SH("c"), T0 + 20 * SEC), "");
	assert_string_equal(eval_at(e, CONNECT("c"), T0 + 45 * SEC), "seq");
	/* order matters */
	assert_string_equal(eval_at(e, CONNECT("d"), T0), "");
	assert_string_equal(eval_at(e, EXEC_SH("d"), T0 + SEC), "");
	struct engine_stats st;
	engine_get_stats(e, &st);
	assert_int_equal(st.state_entries, 2); /* b (expired, not yet reused) and d */
	engine_free(e);
	ruleset_free(rs);
}

/* Rules as of one version, and as of the next: "plain" added first (every index moves), the
 * threshold and the sequence kept as they were, "edited" with a new count. */
#define CARRY_RULES                                                                                \
	"  - id: burst\n    name: n\n    condition: {event.action: rename}\n"                      \
	"    threshold: {count: 3, within: 1m, by: process.entity_id}\n"                           \
	"  - id: seq\n    name: n\n    sequence:\n      within: 1m\n      by: process.entity_id\n" \
	"      steps:\n"                                                                           \
	"        - condition: {all: [event.action: exec, process.parent.name: nginx]}\n"           \
	"        - condition: {all: [event.action: connect, network.direction: egress]}\n"
#define EDITED(count)                                                                              \
	"  - id: edited\n    name: n\n    condition: {event.action: rename}\n"                     \
	"    threshold: {count: " count ", within: 1m}\n"

static void state_carried_across_swap(void **state)
{
	struct ruleset *old_rs = load("rules:\n" CARRY_RULES EDITED("5"));
	struct ruleset *new_rs =
	    load("rules:\n  - {id: plain, name: n, condition: {event.action: chmod}}\n" CARRY_RULES
		     EDITED("4"));
	struct engine *old_e = NULL, *new_e = NULL;
	struct engine_stats st;

	assert_int_equal(engine_new(old_rs, NULL, &old_e), 0);
	assert_int_equal(engine_new(new_rs, NULL, &new_e), 0);
	assert_string_equal(eval_at(old_e, RENAME("a"), T0), "");
	assert_string_equal(eval_at(old_e, RENAME("a"), T0 + SEC), "");
	assert_string_equal(eval_at(old_e, EXEC_SH("s"), T0 + 2 * SEC), "");
	/* a key longer than an entry keeps cannot be hashed again for burst's new index */
	assert_string_equal(
	    eval_at(old_e, RENAME("0123456789012345678901234567890123456789-long"), T0), "");
	/* burst (keys a and the long one), seq (key s) and edited (one key): edited's and the
	 * long key's are left behind */
	assert_int_equal(engine_carry_state(new_e, old_e), 2);
	engine_get_stats(new_e, &st);
	assert_int_equal(st.state_entries, 2);
	assert_string_equal(eval_at(new_e, RENAME("a"), T0 + 3 * SEC), "burst");
	assert_string_equal(eval_at(new_e, CONNECT("s"), T0 + 4 * SEC), "seq");
	/* edited starts from nothing: its fourth event is the fourth rename after the swap */
	assert_string_equal(eval_at(new_e, RENAME("b"), T0 + 5 * SEC), "");
	assert_string_equal(eval_at(new_e, RENAME("c"), T0 + 6 * SEC), "");
	assert_string_equal(eval_at(new_e, RENAME("d"), T0 + 7 * SEC), "edited");
	/* only into an engine that has evaluated nothing */
	assert_int_equal(engine_carry_state(new_e, old_e), -EINVAL);
	engine_free(new_e);
	engine_free(old_e);
	ruleset_free(new_rs);
	ruleset_free(old_rs);
}

static void state_eviction(void **state)
{
	struct ruleset *rs = load("rules:\n  - id: burst\n    name: n\n"
				  "    condition: {event.action: rename}\n"
				  "    threshold: {count: 2, within: 1m, by: process.entity_id}\n");
	struct engine_options opt = {.state_entries = 4};
	struct engine *e = NULL;
	struct engine_stats st;
	char ev[256];

	assert_int_equal(engine_new(rs, &opt, &e), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(
		    ev, sizeof(ev),
		    "{'event':{'kind':'event','action':'rename'},'process':{'entity_id':'k%d'}}",
		    i);
		assert_string_equal(eval_at(e, ev, T0 + (uint64_t)i * SEC), "");
	}
	engine_get_stats(e, &st);
	assert_int_equal(st.state_entries, 4);
	assert_int_equal(st.state_capacity, 4);
	assert_int_equal(st.state_evictions, 6);
	assert_int_equal(st.state_expired, 0);
	/* the newest keys are still counted, the oldest were evicted */
	assert_string_equal(
	    eval_at(e, "{'event':{'kind':'event','action':'rename'},'process':{'entity_id':'k9'}}",
		    T0 + 10 * SEC),
	    "burst");
	assert_string_equal(
	    eval_at(e, "{'event':{'kind':'event','action':'rename'},'process':{'entity_id':'k0'}}",
		    T0 + 10 * SEC),
	    "");
	/* entries past their window are reused, counted apart from evictions */
	for (int i = 0; i < 4; i++) {
		snprintf(
		    ev, sizeof(ev),
		    "{'event':{'kind':'event','action':'rename'},'process':{'entity_id':'z%d'}}",
		    i);
		assert_string_equal(eval_at(e, ev, T0 + 3600 * SEC), "");
	}
	engine_get_stats(e, &st);
	assert_int_equal(st.state_evictions, 7);
	assert_int_equal(st.state_expired, 4);
	engine_free(e);

	opt.state_entries = RULES_MAX_STATE_ENTRIES + 1;
	assert_int_equal(engine_new(rs, &opt, &e), -EINVAL);
	ruleset_free(rs);
}

/* --- alerts --- */

static void alert_json(void **state)
{
	struct ruleset *rs =
	    load("rules:\n  - id: vigil-x\n    name: 'Shell \"quoted\"'\n"
		 "    level: high\n    tags: [attack.execution, attack.t1059.004, attack.t1105]\n"
		 "    response: kill\n"
		 "    condition: {all: [event.action: exec, process.name: sh]}\n");
	struct engine *e = NULL;
	assert_int_equal(engine_new(rs, NULL, &e), 0);
	struct event *ev = event_new(), *scratch = event_new();
	char why[256];
	const char *line =
	    "{\"@timestamp\":\"2026-01-01T00:00:00.5Z\",\"event\":{\"kind\":\"event\","
	    "\"action\":\"exec\"},\"process\":{\"name\":\"sh\",\"pid\":42}}";
	assert_int_equal(event_parse_json(ev, line, strlen(line), why, sizeof(why), NULL),
			 EVENT_PARSED);
	const struct rule_info *r = ruleset_find(rs, "vigil-x");
	assert_true(r->kill);
	struct buf out;
	buf_init(&out, 1 << 20);
	assert_int_equal(alert_write_json(r, ev, scratch, &out), 0);
	assert_non_null(strstr(out.data, "\"event\":{\"action\":\"exec\",\"kind\":\"alert\"}"));
	assert_non_null(strstr(out.data, "\"rule\":{\"id\":\"vigil-x\",\"level\":\"high\","
					 "\"name\":\"Shell \\\"quoted\\\"\"}"));
	assert_non_null(
	    strstr(out.data, "\"threat\":{\"technique\":{\"id\":[\"T1059.004\",\"T1105\"]}}"));
	assert_non_null(strstr(out.data, "\"pid\":42"));
	assert_non_null(strstr(out.data, "\"@timestamp\":\"2026-01-01T00:00:00.5Z\""));
	/* the alert reads back as an alert line, which replay skips */
	assert_int_equal(event_parse_json(scratch, out.data, out.len, why, sizeof(why), NULL),
			 EVENT_SKIPPED);
	buf_release(&out);
	event_free(ev);
	event_free(scratch);
	engine_free(e);
	ruleset_free(rs);
}

static void timestamps(void **state)
{
	uint64_t ns;
	assert_int_equal(timestamp_parse("1970-01-01T00:00:00Z", 20, &ns), 0);
	assert_int_equal(ns, 0);
	const char *t = "2026-11-25T20:34:08.123456789Z";
	assert_int_equal(timestamp_parse(t, strlen(t), &ns), 0);
	assert_int_equal(ns, 1795638848ull * SEC + 123456789ull);
	t = "2026-11-25T22:34:08.5+02:00";
	assert_int_equal(timestamp_parse(t, strlen(t), &ns), 0);
	assert_int_equal(ns, 1795638848ull * SEC + 500000000ull);
	t = "2000-02-29T00:00:00Z";
	assert_int_equal(timestamp_parse(t, strlen(t), &ns), 0);
	assert_int_equal(ns, 951782400ull * SEC);
	const char *bad[] = {"",
			     "2026-11-25",
			     "2026-13-01T00:00:00Z",
			     "2026-11-25T20:34:08",
			     "2026-11-25T20:34:08.Z",
			     "2026-11-25T20:34:08Zx",
			     "1969-12-31T23:59:59Z",
			     "2026-11-25T20:34:08+2:00",
			     "abcd-11-25T20:34:08Z"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(timestamp_parse(bad[i], strlen(bad[i]), &ns), -EINVAL);
}

static void failing_tests_reported(void **state)
{
	struct ruleset *rs =
	    load("rules:\n  - id: r1\n    name: n\n"
		 "    condition: {all: [event.action: exec, process.name: sh]}\n"
		 "    tests:\n      match:\n        - {event.action: exec, process.name: bash}\n"
		 "      nomatch:\n        - {event.action: exec, process.name: sh}\n"
		 "        - {event.action: exec, process.name: dash}\n"
		 "  - {id: r2, name: n, condition: {event.action: fork}}\n");
	struct buf report;
	struct rules_test_result res;
	buf_init(&report, 1 << 16);
	assert_int_equal(ruleset_run_tests(rs, &report, &res), -EINVAL);
	assert_int_equal(res.rules, 1);
	assert_int_equal(res.untested, 1);
	assert_int_equal(res.passed, 1);
	assert_int_equal(res.failed, 2);
	assert_non_null(strstr(report.data, "t.yml:7: rule r1: match test raised no alert\n"));
	assert_non_null(strstr(report.data, "t.yml:9: rule r1: nomatch test raised an alert\n"));
	buf_release(&report);
	assert_int_equal(ruleset_run_tests(rs, NULL, NULL), -EINVAL);
	ruleset_free(rs);
}

static void empty_ruleset(void **state)
{
	struct ruleset *rs = load("lists: {a: [x]}\n");
	struct engine *e = NULL;
	assert_int_equal(ruleset_count(rs), 0);
	assert_int_equal(engine_new(rs, NULL, &e), 0);
	assert_string_equal(eval_at(e, "{'event':{'kind':'event','action':'exec'}}", T0), "");
	assert_int_equal(engine_eval(e, NULL, 0, NULL, NULL), -EINVAL);
	engine_free(e);
	ruleset_free(rs);
}

static void content_tree_passes(void **state)
{
	/* the shipped content compiles and its tests pass */
	struct ruleset *rs = NULL;
	if (ruleset_load_path("content", &rs, err, sizeof(err)) < 0)
		fail_msg("content: %s", err);
	struct buf report;
	struct rules_test_result res;
	buf_init(&report, 1 << 20);
	if (ruleset_run_tests(rs, &report, &res) != 0)
		fail_msg("content tests failed:\n%s", report.data);
	buf_release(&report);
	ruleset_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rule_cases),
	    cmocka_unit_test(bucket_selection),
	    cmocka_unit_test(regex_buckets),
	    cmocka_unit_test(threshold_window),
	    cmocka_unit_test(state_carried_across_swap),
	    cmocka_unit_test(sequence_window),
	    cmocka_unit_test(state_eviction),
	    cmocka_unit_test(alert_json),
	    cmocka_unit_test(timestamps),
	    cmocka_unit_test(failing_tests_reported),
	    cmocka_unit_test(empty_ruleset),
	    cmocka_unit_test(content_tree_passes),
	};
	return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
