/*
 * Unit tests for the event model and its NDJSON writer and reader: escaping (control
 * characters, invalid UTF-8, embedded NUL), nesting, 128 KiB argv, truncation, round trips
 * and rejection of malformed lines.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/event_json.h"

static char *escape(const char *s, size_t len)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(json_append_string(&b, s, len), 0);
	return b.data;
}

static void escapes_control_characters(void **state)
{
	char *out = escape("a\"b\\c\n\t\r\x01\x1f", 10);
	assert_string_equal(out, "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f\"");
	free(out);
}

static void escapes_embedded_nul(void **state)
{
	char *out = escape("ab\0cd", 5);
	assert_string_equal(out, "\"ab\\u0000cd\"");
	free(out);
}

static void replaces_invalid_utf8(void **state)
{
	/* lone continuation, truncated 2-byte, overlong '/', surrogate, past U+10FFFF */
	const char in[] = "\x80x\xc3"
			  "y\xc0\xaf"
			  "z\xed\xa0\x80"
			  "w\xf4\x90\x80\x80";
	char *out = escape(in, sizeof(in) - 1);
	json_error_t jerr;
	char *doc;
	assert_true(asprintf(&doc, "[%s]", out) > 0);
	json_t *v = json_loads(doc, 0, &jerr);
	assert_non_null(v); /* always valid JSON */
	const char *s = json_string_value(json_array_get(v, 0));
	assert_non_null(s);
	assert_non_null(strstr(s, "x"));
	assert_null(strstr(s, "\xc3y"));
	assert_memory_equal(s,
			    "\xef\xbf\xbd"
			    "x",
			    4);
	json_decref(v);
	free(doc);
	free(out);
}

static void keeps_valid_utf8(void **state)
{
	char *out = escape("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15);
	assert_string_equal(out, "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
	free(out);
}

static struct event *sample_event(void)
{
	struct event *ev = event_new();
	unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	unsigned char v4[4] = {127, 0, 0, 1};
	assert_non_null(ev);
	assert_int_equal(event_set_cstr(ev, F_TIMESTAMP, "2026-11-25T20:00:00.000000001Z"), 0);
	assert_int_equal(event_set_cstr(ev, F_EVENT_KIND, "event"), 0);
	assert_int_equal(event_set_cstr(ev, F_EVENT_CATEGORY, "network"), 0);
	assert_int_equal(event_set_cstr(ev, F_EVENT_ACTION, "connect"), 0);
	assert_int_equal(event_set_int(ev, F_PROCESS_PID, 4242), 0);
	assert_int_equal(event_set_int(ev, F_PROCESS_PARENT_PID, 1), 0);
	assert_int_equal(event_set_cstr(ev, F_PROCESS_PARENT_EXECUTABLE, "/sbin/init"), 0);
	assert_int_equal(event_set_list_nulsep(ev, F_PROCESS_ARGS, "nc\0-v\0", 6), 0);
	assert_int_equal(event_set_ip(ev, F_SOURCE_IP, AF_INET, v4), 0);
	assert_int_equal(event_set_ip(ev, F_DESTINATION_IP, AF_INET6, v6), 0);
	assert_int_equal(event_set_int(ev, F_DESTINATION_PORT, 443), 0);
	return ev;
}

static void writes_nested_objects(void **state)
{
	struct event *ev = sample_event();
	struct buf b;
	json_error_t jerr;
	buf_init(&b, 1 << 20);
	assert_int_equal(event_write_json(ev, &b), 0);
	json_t *root = json_loads(b.data, 0, &jerr);
	assert_non_null(root);
	json_t *process = json_object_get(root, "process");
	assert_int_equal(json_integer_value(json_object_get(process, "pid")), 4242);
	json_t *parent = json_object_get(process, "parent");
	assert_string_equal(json_string_value(json_object_get(parent, "executable")), "/sbin/init");
	assert_int_equal(json_array_size(json_object_get(process, "args")), 2);
	json_t *dst = json_object_get(root, "destination");
	assert_string_equal(json_string_value(json_object_get(dst, "ip")), "2001:db8::1");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(root, "source"), "ip")), "127.0.0.1");
	/* no key appears twice at the top level */
	assert_int_equal(json_object_size(root), 5);
	json_decref(root);
	buf_release(&b);
	event_free(ev);
}

static void round_trips(void **state)
{
	struct event *ev = sample_event(), *back = event_new();
	struct buf a, b;
	char err[256];
	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	event_set_str(ev, F_PROCESS_COMMAND_LINE, "x\0y\n\"z\"", 7);
	event_mark_truncated(ev, F_PROCESS_ARGS);
	assert_int_equal(event_write_json(ev, &a), 0);
	assert_int_equal(event_parse_json(back, a.data, a.len, err, sizeof(err), NULL),
			 EVENT_PARSED);
	assert_int_equal(event_write_json(back, &b), 0);
	assert_string_equal(a.data, b.data);
	size_t len;
	const char *cl = event_str(back, F_PROCESS_COMMAND_LINE, &len);
	assert_int_equal(len, 7);
	assert_memory_equal(cl, "x\0y\n\"z\"", 7);
	assert_true(event_is_truncated(back, F_PROCESS_ARGS));
	buf_release(&a);
	buf_release(&b);
	event_free(ev);
	event_free(back);
}

/* 128 KiB of argv: written whole (the arena holds it) and read back whole. */
static void large_argv(void **state)
{
	size_t n = 128 * 1024;
	char *args = malloc(n);
	assert_non_null(args);
	for (size_t i = 0; i < n; i++)
		args[i] = (i % 64 == 63) ? '\0' : (char)('a' + i % 26);
	struct event *ev = event_new(), *back = event_new();
	struct buf b;
	char err[256];
	buf_init(&b, 4 << 20);
	event_set_cstr(ev, F_EVENT_KIND, "event");
	event_set_cstr(ev, F_EVENT_ACTION, "exec");
	assert_int_equal(event_set_list_nulsep(ev, F_PROCESS_ARGS, args, n), 0);
	assert_int_equal(event_list_count(ev, F_PROCESS_ARGS), n / 64);
	assert_false(event_is_truncated(ev, F_PROCESS_ARGS));
	assert_int_equal(event_write_json(ev, &b), 0);
	assert_true(b.len > n);
	assert_int_equal(event_parse_json(back, b.data, b.len, err, sizeof(err), NULL),
			 EVENT_PARSED);
	assert_int_equal(event_list_count(back, F_PROCESS_ARGS), n / 64);
	size_t len;
	const char *last = event_list_item(back, F_PROCESS_ARGS, n / 64 - 1, &len);
	assert_int_equal(len, 63);
	assert_memory_equal(last, args + n - 64, 63);
	buf_release(&b);
	event_free(ev);
	event_free(back);
	free(args);
}

/* Values past the arena cap are cut and marked; the writer names them in event.truncated. */
static void truncation_is_marked(void **state)
{
	size_t n = EVENT_ARENA_MAX + 1000;
	char *big = malloc(n);
	assert_non_null(big);
	memset(big, 'p', n);
	struct event *ev = event_new();
	struct buf b;
	json_error_t jerr;
	buf_init(&b, 4 << 20);
	assert_int_equal(event_set_str(ev, F_FILE_PATH, big, n), 0);
	assert_true(event_is_truncated(ev, F_FILE_PATH));
	size_t len;
	event_str(ev, F_FILE_PATH, &len);
	assert_int_equal(len, EVENT_ARENA_MAX);
	assert_int_equal(event_list_count(ev, F_EVENT_TRUNCATED), 1);
	assert_int_equal(event_write_json(ev, &b), 0);
	json_t *root = json_loads(b.data, 0, &jerr);
	assert_non_null(root);
	json_t *t = json_object_get(json_object_get(root, "event"), "truncated");
	assert_string_equal(json_string_value(json_array_get(t, 0)), "file.path");
	json_decref(root);
	buf_release(&b);
	event_free(ev);
	free(big);
}

static void setters_check_types(void **state)
{
	struct event *ev = event_new();
	assert_int_equal(event_set_int(ev, F_PROCESS_EXECUTABLE, 1), -EINVAL);
	assert_int_equal(event_set_cstr(ev, F_PROCESS_PID, "1"), -EINVAL);
	assert_int_equal(event_set_int(ev, (enum field_id)FIELD_COUNT, 1), -EINVAL);
	assert_int_equal(event_set_int(ev, (enum field_id) - 1, 1), -EINVAL);
	assert_int_equal(event_list_append(ev, F_PROCESS_ARGS, "a", 1), 0);
	assert_int_equal(event_list_append(ev, F_PROCESS_ANCESTORS, "b", 1), 0);
	/* interleaving two lists is refused */
	assert_int_equal(event_list_append(ev, F_PROCESS_ARGS, "c", 1), -EBUSY);
	event_free(ev);
}

static int parse(const char *line, char *err, size_t errlen)
{
	struct event *ev = event_new();
	int ret = event_parse_json(ev, line, strlen(line), err, errlen, NULL);
	event_free(ev);
	return ret;
}

static void rejects_malformed(void **state)
{
	static const struct {
		const char *line;
		const char *reason;
	} cases[] = {
	    {"", "invalid JSON"},
	    {"{", "invalid JSON"},
	    {"[1,2]", "expected a JSON object"},
	    {"{\"event\":{\"kind\":\"event\"}}", "event.action: missing"},
	    {"{\"event\":{\"action\":\"exec\"}}", "event.kind: missing"},
	    {"{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"pid\":\"1\"}}",
	     "process.pid: expected an integer"},
	    {"{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"pid\":{\"x\":1}}}",
	     "process.pid: expected an integer"},
	    {"{\"event\":{\"kind\":\"event\",\"action\":\"x\"},\"source\":{\"ip\":\"1.2.3\"}}",
	     "source.ip: not an IPv4 or IPv6 address"},
	    {"{\"event\":{\"kind\":\"event\",\"action\":\"x\"},\"process\":{\"args\":[1]}}",
	     "process.args: expected an array of strings"},
	    {"{\"event\":{\"kind\":\"weird\",\"action\":\"x\"}}", "event.kind: expected"},
	    {"{\"event\":{\"kind\":\"event\",\"action\":\"x\",\"truncated\":[\"nope\"]}}",
	     "event.truncated: names an unknown field"},
	    {"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":{\"j\":1}}}}}}}}}}",
	     "too deeply"},
	};
	char err[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(parse(cases[i].line, err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[i].reason))
			fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].reason);
		assert_null(strchr(err, '\n'));
	}
}

static void skips_other_kinds_and_unknown_fields(void **state)
{
	char err[256];
	unsigned unknown = 0;
	struct event *ev = event_new();
	const char *metric = "{\"event\":{\"kind\":\"metric\"},\"vigil\":{\"x\":1}}";
	assert_int_equal(event_parse_json(ev, metric, strlen(metric), err, sizeof(err), &unknown),
			 EVENT_SKIPPED);
	const char *line =
	    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"future\":{\"f\":1}}";
	assert_int_equal(event_parse_json(ev, line, strlen(line), err, sizeof(err), &unknown),
			 EVENT_PARSED);
	assert_int_equal(unknown, 2);
	/* dotted keys are accepted too */
	const char *dotted =
	    "{\"event.kind\":\"event\",\"event.action\":\"exec\",\"process.pid\":7}";
	assert_int_equal(event_parse_json(ev, dotted, strlen(dotted), err, sizeof(err), NULL),
			 EVENT_PARSED);
	int64_t pid;
	assert_true(event_int(ev, F_PROCESS_PID, &pid));
	assert_int_equal(pid, 7);
	event_free(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(escapes_control_characters),
	    cmocka_unit_test(escapes_embedded_nul),
	    cmocka_unit_test(replaces_invalid_utf8),
	    cmocka_unit_test(keeps_valid_utf8),
	    cmocka_unit_test(writes_nested_objects),
	    cmocka_unit_test(round_trips),
	    cmocka_unit_test(large_argv),
	    cmocka_unit_test(truncation_is_marked),
	    cmocka_unit_test(setters_check_types),
	    cmocka_unit_test(rejects_malformed),
	    cmocka_unit_test(skips_other_kinds_and_unknown_fields),
	};
	return cmocka_run_group_tests_name("event_json", tests, NULL, NULL);
}
