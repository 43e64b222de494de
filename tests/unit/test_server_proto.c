/*
 * Unit tests for vigil-server's request body parsers (src/server/proto.c): what each accepts,
 * what it refuses and with which reason, and the bounds (depth, sizes, ranges, batch rules).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "server/proto.h"

#define S(x) x, strlen(x)

static void json_bounds(void **state)
{
	char err[256], deep[64];
	void *j = NULL;

	assert_int_equal(proto_json_object(S("{}"), &j, err, sizeof(err)), 0);
	json_decref(j);
	assert_int_equal(proto_json_object("", 0, &j, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(proto_json_object(S("[]"), &j, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "object"));
	assert_int_equal(proto_json_object("{}\0", 3, &j, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "NUL"));
	assert_int_equal(proto_json_object(S("{\"a\":1,\"a\":1}"), &j, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "malformed JSON"));
	/* PROTO_MAX_DEPTH levels pass, one more is refused before parsing */
	memset(deep, 0, sizeof(deep));
	for (int i = 0; i < PROTO_MAX_DEPTH; i++)
		deep[i] = i ? '[' : '{';
	char text[128];
	snprintf(text, sizeof(text), "{\"a\":%s", deep + 1);
	size_t n = strlen(text);
	for (int i = 1; i < PROTO_MAX_DEPTH; i++)
		text[n++] = ']';
	text[n++] = '}';
	text[n] = '\0';
	assert_int_equal(proto_json_object(text, n, &j, err, sizeof(err)), 0);
	json_decref(j);
	snprintf(text, sizeof(text), "{\"a\":[%s", deep + 1);
	assert_int_equal(proto_json_object(S(text), &j, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "deeper"));
	/* brackets inside strings do not count */
	assert_int_equal(
	    proto_json_object(S("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[\"}"), &j, err, sizeof(err)), 0);
	json_decref(j);
	(void)state;
}

static void names_and_hashes(void **state)
{
	assert_true(proto_name_ok(S("web-1.prod_eu")));
	assert_false(proto_name_ok(S("")));
	assert_false(proto_name_ok(S("a b")));
	assert_false(proto_name_ok(S("a\"b")));
	assert_false(proto_name_ok(S("a/b")));
	char longname[STORE_NAME_BYTES + 1];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(proto_name_ok(S(longname)));
	assert_true(
	    proto_hash_ok(S("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")));
	assert_false(
	    proto_hash_ok(S("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef")));
	assert_false(proto_hash_ok(S("0123")));
	(void)state;
}

static void enroll(void **state)
{
	struct proto_enroll e;
	char err[256];

	assert_int_equal(proto_parse_enroll(S("{\"token\":\"t.s\",\"hostname\":\"h\","
					      "\"sensor_version\":\"0.1.0\"}"),
					    &e, err, sizeof(err)),
			 0);
	assert_string_equal(e.token, "t.s");
	assert_string_equal(e.hostname, "h");
	assert_string_equal(e.sensor_version, "0.1.0");
	assert_int_equal(proto_parse_enroll(S("{\"hostname\":\"h\"}"), &e, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "\"token\" is required");
	assert_int_equal(proto_parse_enroll(S("{\"token\":\"\"}"), &e, err, sizeof(err)), -EINVAL);
	assert_int_equal(proto_parse_enroll(S("{\"token\":5}"), &e, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "\"token\" must be a string");
	(void)state;
}

static void heartbeat(void **state)
{
	struct store_health h;
	char err[256];

	assert_int_equal(proto_parse_heartbeat(S("{}"), &h, err, sizeof(err)), 0);
	assert_false(h.has_content);
	assert_int_equal(h.liveness_last, -1);
	assert_true(h.cpu_percent < 0);
	assert_int_equal(
	    proto_parse_heartbeat(S("{\"content_version\":4,\"uptime_seconds\":7,\"restarts\":1,"
				    "\"crash_loop_reverts\":2,\"quarantined\":[5,6],"
				    "\"liveness\":{\"ok\":3,\"failed\":1,\"last\":\"failed\"},"
				    "\"drops\":9,\"alerts\":11,\"cpu_percent\":1.5,"
				    "\"rss_bytes\":100,\"future_key\":{\"x\":1}}"),
				  &h, err, sizeof(err)),
	    0);
	assert_true(h.has_content);
	assert_int_equal(h.content_version, 4);
	assert_int_equal(h.n_quarantined, 2);
	assert_int_equal(h.quarantined[1], 6);
	assert_int_equal(h.liveness_last, 0);
	assert_int_equal(h.liveness_failed, 1);
	assert_true(h.cpu_percent > 1.4 && h.cpu_percent < 1.6);
	assert_int_equal(h.sensor_build, 0);
	/* the sensor lane: the build it runs, its own reverts and quarantined builds */
	assert_int_equal(
	    proto_parse_heartbeat(S("{\"sensor_build\":3,\"sensor_crash_loop_reverts\":1,"
				    "\"sensor_quarantined\":[4],\"quarantined\":[2]}"),
				  &h, err, sizeof(err)),
	    0);
	assert_int_equal(h.sensor_build, 3);
	assert_int_equal(h.sensor_reverts, 1);
	assert_int_equal(h.n_sensor_quarantined, 1);
	assert_int_equal(h.sensor_quarantined[0], 4);
	assert_int_equal(h.n_quarantined, 1);
	static const char *const bad[][2] = {
	    {"{\"sensor_build\":0}", "sensor_build"},
	    {"{\"sensor_build\":\"2\"}", "sensor_build"},
	    {"{\"sensor_crash_loop_reverts\":-1}", "sensor_crash_loop_reverts"},
	    {"{\"sensor_quarantined\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}",
	     "sensor_quarantined"},
	    {"{\"sensor_quarantined\":[\"x\"]}", "sensor_quarantined"},
	    {"{\"content_version\":0}", "content_version"},
	    {"{\"restarts\":-1}", "restarts"},
	    {"{\"restarts\":1.5}", "restarts"},
	    {"{\"cpu_percent\":\"x\"}", "cpu_percent"},
	    {"{\"quarantined\":[0]}", "quarantined"},
	    {"{\"quarantined\":{}}", "quarantined"},
	    {"{\"quarantined\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}", "quarantined"},
	    {"{\"liveness\":[]}", "liveness"},
	    {"{\"liveness\":{\"last\":\"x\"}}", "liveness.last"},
	    {"{\"hostname\":\"a\\u0000b\"}", "NUL"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(proto_parse_heartbeat(S(bad[i][0]), &h, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("%s: reason '%s' does not name %s", bad[i][0], err, bad[i][1]);
		assert_null(strchr(err, '\n'));
	}
	(void)state;
}

static void batch(void **state)
{
	struct proto_batch b;
	char err[256];

	assert_int_equal(
	    proto_parse_batch(S("{\"records\":[{\"seq\":9,\"data\":{\"b\":1}},"
				"{\"seq\":3,\"data\":{\"@timestamp\":\"2026-01-02T03:04:05.678Z\","
				"\"rule\":{\"id\":\"r-1\"}}}]}"),
			      &b, err, sizeof(err)),
	    0);
	assert_int_equal(b.n, 2);
	/* sorted by seq, keys read, data re-serialized compactly */
	assert_int_equal(b.records[0].seq, 3);
	assert_string_equal(b.records[0].rule_id, "r-1");
	assert_int_equal(b.records[0].at, 1767323045);
	assert_int_equal(b.records[1].seq, 9);
	assert_string_equal(b.records[1].json, "{\"b\":1}");
	assert_int_equal(b.records[1].at, 0);
	proto_batch_free(&b);
	static const char *const bad[][2] = {
	    {"{}", "records"},
	    {"{\"records\":[]}", "records"},
	    {"{\"records\":[1]}", "records[0]"},
	    {"{\"records\":[{\"data\":{}}]}", "seq"},
	    {"{\"records\":[{\"seq\":0,\"data\":{}}]}", "seq"},
	    {"{\"records\":[{\"seq\":1,\"data\":[]}]}", "data"},
	    {"{\"records\":[{\"seq\":1,\"data\":{}},{\"seq\":1,\"data\":{}}]}", "twice"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(proto_parse_batch(S(bad[i][0]), &b, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("%s: reason '%s' does not name %s", bad[i][0], err, bad[i][1]);
	}
	/* a record larger than the cap is refused */
	size_t big = PROTO_MAX_RECORD_BYTES + 64;
	char *text = malloc(big + 64);
	assert_non_null(text);
	int n = snprintf(text, 64, "{\"records\":[{\"seq\":1,\"data\":{\"x\":\"");
	memset(text + n, 'a', big);
	memcpy(text + n + big, "\"}}]}", 6);
	assert_int_equal(proto_parse_batch(S(text), &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "larger"));
	free(text);
	(void)state;
}

static void policy(void **state)
{
	struct store_policy p = {.ring = 2}, before;
	struct buf out;
	char err[256];

	assert_int_equal(proto_parse_policy(S("{\"ring\":1,\"delay_hours\":4,\"pin\":7,"
					      "\"paused\":true,\"approval_required\":true,"
					      "\"maintenance_windows\":[{\"start\":\"22:00\","
					      "\"end\":\"02:30\"}]}"),
					    &p, err, sizeof(err)),
			 0);
	assert_int_equal(p.ring, 1);
	assert_int_equal(p.delay_hours, 4);
	assert_true(p.has_pin);
	assert_int_equal(p.pin, 7);
	assert_true(p.paused && p.approval_required);
	assert_int_equal(p.n_windows, 1);
	assert_int_equal(p.windows[0].start_minute, 22 * 60);
	assert_int_equal(p.windows[0].end_minute, 150);
	buf_init(&out, 4096);
	assert_int_equal(proto_policy_json(&p, &out), 0);
	assert_string_equal(out.data, "{\"ring\":1,\"delay_hours\":4,\"pin\":7,\"paused\":true,"
				      "\"approval_required\":true,\"maintenance_windows\":"
				      "[{\"start\":\"22:00\",\"end\":\"02:30\"}]}");
	buf_release(&out);
	/* keys not given keep their value; null clears */
	assert_int_equal(
	    proto_parse_policy(S("{\"pin\":null,\"paused\":false}"), &p, err, sizeof(err)), 0);
	assert_false(p.has_pin);
	assert_int_equal(p.ring, 1);
	assert_int_equal(p.n_windows, 1);
	before = p;
	static const char *const bad[] = {
	    "{\"ring\":8}",
	    "{\"delay_hours\":100000}",
	    "{\"pin\":0}",
	    "{\"paused\":1}",
	    "{\"maintenance_windows\":[{\"start\":\"24:01\",\"end\":\"01:00\"}]}",
	    "{\"maintenance_windows\":[{\"start\":\"01:00\",\"end\":\"01:00\"}]}",
	    "{\"maintenance_windows\":[{\"start\":\"1:00\",\"end\":\"02:00\"}]}",
	    "{\"maintenance_windows\":[{},{},{},{},{}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(proto_parse_policy(S(bad[i]), &p, err, sizeof(err)), -EINVAL);
		assert_memory_equal(&p, &before, sizeof(p));
	}
	(void)state;
}

static void rollout_start(void **state)
{
	struct proto_rollout_start r;
	char err[256];
	const char *h = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char text[1024];

	snprintf(text, sizeof(text), "{\"release\":\"%s\"}", h);
	assert_int_equal(proto_parse_rollout_start(S(text), &r, err, sizeof(err)), 0);
	assert_false(r.has_plan);
	assert_false(r.force);
	assert_false(r.gates.set);
	snprintf(text, sizeof(text),
		 "{\"release\":\"%s\",\"force\":true,\"plan\":[{\"ring\":0,\"percent\":100,"
		 "\"bake_seconds\":60},{\"ring\":2,\"percent\":1.5},{\"ring\":2,\"percent\":100}],"
		 "\"gates\":{\"min_bad\":1,\"disabled\":[\"cpu\",\"silence\"]}}",
		 h);
	assert_int_equal(proto_parse_rollout_start(S(text), &r, err, sizeof(err)), 0);
	assert_true(r.has_plan && r.force && r.gates.set);
	assert_int_equal(r.n_steps, 3);
	assert_int_equal(r.steps[0].bake_seconds, 60);
	assert_true(r.steps[1].percent > 1.4 && r.steps[1].percent < 1.6);
	assert_int_equal(r.gates.min_bad, 1);
	assert_int_equal(r.gates.min_agents, -1);
	assert_int_equal(r.gates.disabled, (1u << 6) | 1u);
	static const char *const bad[][2] = {
	    {"{\"plan\":[{\"ring\":0,\"percent\":100}]}", "release"},
	    {"{\"release\":\"x\"}", "release"},
	    {"{\"release\":\"%s\",\"plan\":[]}", "plan"},
	    {"{\"release\":\"%s\",\"plan\":[{\"ring\":0,\"percent\":0}]}", "percent"},
	    {"{\"release\":\"%s\",\"plan\":[{\"ring\":0,\"percent\":101}]}", "percent"},
	    {"{\"release\":\"%s\",\"plan\":[{\"percent\":10}]}", "ring"},
	    {"{\"release\":\"%s\",\"plan\":[{\"ring\":1,\"percent\":10},{\"ring\":0,"
	     "\"percent\":100}]}",
	     "step before"},
	    {"{\"release\":\"%s\",\"gates\":{\"disabled\":[\"nope\"]}}", "gate"},
	    {"{\"release\":\"%s\",\"gates\":{\"min_bad\":0}}", "min_bad"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* "%s" in a case stands for the release hash */
		const char *at = strstr(bad[i][0], "%s");
		if (at)
			snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - bad[i][0]), bad[i][0],
				 h, at + 2);
		else
			snprintf(text, sizeof(text), "%s", bad[i][0]);
		assert_int_equal(proto_parse_rollout_start(S(text), &r, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("%s: reason '%s' does not name %s", text, err, bad[i][1]);
	}
	(void)state;
}

static void tokens_and_groups(void **state)
{
	struct proto_token_request t;
	char g[STORE_NAME_BYTES], err[256];
	enum store_role role;

	assert_int_equal(proto_parse_token_request(S("{\"name\":\"ops\",\"role\":\"operator\"}"),
						   false, &t, err, sizeof(err)),
			 0);
	assert_int_equal(t.role, ROLE_OPERATOR);
	assert_int_equal(proto_parse_token_request(S("{\"name\":\"ops\",\"role\":\"root\"}"), false,
						   &t, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(proto_parse_token_request(S("{}"), true, &t, err, sizeof(err)), 0);
	assert_string_equal(t.group, "default");
	assert_int_equal(t.uses, 0);
	assert_int_equal(
	    proto_parse_token_request(S("{\"group\":\"a b\"}"), true, &t, err, sizeof(err)),
	    -EINVAL);
	assert_int_equal(proto_parse_group_ref(S("{\"group\":\"canary\"}"), g, err, sizeof(err)),
			 0);
	assert_string_equal(g, "canary");
	assert_int_equal(proto_parse_group_ref(S("{\"group\":\"\"}"), g, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(proto_role_parse("viewer", &role), 0);
	assert_string_equal(proto_role_name(ROLE_ADMIN), "admin");
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(json_bounds),   cmocka_unit_test(names_and_hashes),
	    cmocka_unit_test(enroll),	     cmocka_unit_test(heartbeat),
	    cmocka_unit_test(batch),	     cmocka_unit_test(policy),
	    cmocka_unit_test(rollout_start), cmocka_unit_test(tokens_and_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
