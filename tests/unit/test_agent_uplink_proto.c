/*
 * Unit tests for what the agent accepts from vigil-server (src/agent/uplink_proto.c): the
 * enrollment answer, the heartbeat answer with content to fetch, audit mode and pulls, and
 * everything a hostile or broken server could send instead.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/uplink_proto.h"

#define HASH "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define ID   "0123456789abcdef0123456789abcdef"
#define CRED ID "." HASH

static int enroll(const char *text, struct uplink_enrollment *out, char *err)
{
	return uplink_parse_enrollment(text, strlen(text), out, err, 256);
}

static int answer(const char *text, struct uplink_answer *out, char *err)
{
	return uplink_parse_answer(text, strlen(text), out, err, 256);
}

static void test_enrollment(void **state)
{
	struct uplink_enrollment en;
	char err[256];
	(void)state;

	assert_int_equal(enroll("{\"agent_id\":\"" ID "\",\"credential\":\"" CRED
				"\",\"group\":\"default\"}",
				&en, err),
			 0);
	assert_string_equal(en.agent_id, ID);
	assert_string_equal(en.credential, CRED);

	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"{\"agent_id\":\"../../x\",\"credential\":\"" CRED "\"}", "'agent_id'"},
	    {"{\"agent_id\":\"a b\",\"credential\":\"" CRED "\"}", "'agent_id'"},
	    {"{\"agent_id\":\"\",\"credential\":\"" CRED "\"}", "'agent_id'"},
	    {"{\"agent_id\":7,\"credential\":\"" CRED "\"}", "'agent_id'"},
	    {"{\"agent_id\":\"" ID ID "x\",\"credential\":\"" CRED "\"}", "'agent_id'"},
	    {"{\"agent_id\":\"" ID "\",\"credential\":\"a\\r\\nHost: evil\"}", "'credential'"},
	    {"{\"agent_id\":\"" ID "\",\"credential\":\"a\\\"b\"}", "'credential'"},
	    {"{\"agent_id\":\"" ID "\"}", "'credential'"},
	    {"{\"agent_id\":\"" ID "\",\"agent_id\":\"" ID "\",\"credential\":\"" CRED "\"}",
	     "not JSON"},
	    {"[1]", "not a JSON object"},
	    {"{\"agent_id\":\"\\n", "not JSON"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&en, 0x55, sizeof(en));
		assert_int_equal(enroll(bad[i].text, &en, err), -EBADMSG);
		assert_non_null(strstr(err, bad[i].why));
		assert_null(strchr(err, '\n'));
		assert_int_equal(en.agent_id[0], 0); /* nothing half-taken */
		assert_int_equal(en.credential[0], 0);
	}
}

static void test_heartbeat_answer(void **state)
{
	struct uplink_answer a;
	char err[256];
	(void)state;

	assert_int_equal(answer("{\"heartbeat_seconds\":30,\"group\":\"g\",\"content\":{"
				"\"version\":8,\"hash\":\"" HASH "\",\"size\":20480,"
				"\"url\":\"/api/v1/bundles/" HASH "\",\"audit_mode\":true,"
				"\"rollout\":3,\"why\":\"step\"},\"sensor\":null}",
				&a, err),
			 0);
	assert_int_equal(a.heartbeat_seconds, 30);
	assert_true(a.content.present && a.content.has_version && a.content.downloadable);
	assert_int_equal(a.content.version, 8);
	assert_string_equal(a.content.hash, HASH);
	assert_string_equal(a.content.url, "/api/v1/bundles/" HASH);
	assert_int_equal(a.content.size, 20480);
	assert_true(a.content.audit_mode);
	assert_int_equal(a.content.pulled, 0);

	assert_false(a.sensor.present);

	/* a sensor build to fetch beside the content, and a pulled one */
	assert_int_equal(answer("{\"content\":null,\"sensor\":{\"version\":3,\"hash\":\"" HASH
				"\",\"size\":2000000,\"url\":\"/api/v1/bundles/" HASH
				"\",\"audit_mode\":false,\"rollout\":4,\"why\":\"step\"}}",
				&a, err),
			 0);
	assert_false(a.content.present);
	assert_true(a.sensor.present && a.sensor.downloadable);
	assert_int_equal(a.sensor.version, 3);
	assert_int_equal(a.sensor.size, 2000000);
	assert_int_equal(answer("{\"sensor\":{\"version\":2,\"hash\":null,\"size\":null,"
				"\"url\":null,\"why\":\"pulled\",\"pulled\":3}}",
				&a, err),
			 0);
	assert_true(a.sensor.present && !a.sensor.downloadable);
	assert_int_equal(a.sensor.pulled, 3);

	/* a pull with no previous good release */
	assert_int_equal(answer("{\"heartbeat_seconds\":1,\"content\":{\"version\":null,"
				"\"hash\":null,\"size\":null,\"url\":null,\"audit_mode\":false,"
				"\"why\":\"pulled\",\"pulled\":9}}",
				&a, err),
			 0);
	assert_true(a.content.present && !a.content.has_version && !a.content.downloadable);
	assert_int_equal(a.content.pulled, 9);

	/* a version the server does not hold: nothing to fetch */
	assert_int_equal(answer("{\"content\":{\"version\":4,\"hash\":null,\"size\":null,"
				"\"url\":null,\"why\":\"paused\"}}",
				&a, err),
			 0);
	assert_true(a.content.has_version && !a.content.downloadable);
	assert_int_equal(a.heartbeat_seconds, 0);

	assert_int_equal(answer("{\"content\":null}", &a, err), 0);
	assert_false(a.content.present);
}

static void test_heartbeat_answer_refused(void **state)
{
	struct uplink_answer a;
	char err[256];
	(void)state;

	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"{\"heartbeat_seconds\":0}", "'heartbeat_seconds'"},
	    {"{\"heartbeat_seconds\":86401}", "'heartbeat_seconds'"},
	    {"{\"heartbeat_seconds\":\"60\"}", "'heartbeat_seconds'"},
	    {"{\"content\":7}", "'content'"},
	    {"{\"sensor\":7}", "'sensor'"},
	    {"{\"sensor\":{\"version\":0}}", "'sensor.version'"},
	    {"{\"sensor\":{\"version\":2,\"hash\":\"" HASH "\",\"size\":10,"
	     "\"url\":\"/elsewhere/" HASH "\"}}",
	     "'sensor.url'"},
	    {"{\"sensor\":{\"version\":2,\"pulled\":true}}", "'sensor.pulled'"},
	    {"{\"content\":{\"version\":0}}", "'content.version'"},
	    {"{\"content\":{\"version\":9007199254740992}}", "'content.version'"},
	    {"{\"content\":{\"version\":-1}}", "'content.version'"},
	    {"{\"content\":{\"version\":2,\"hash\":\"../../../../etc/passwd\",\"size\":1,"
	     "\"url\":\"/api/v1/bundles/x\"}}",
	     "'content.hash'"},
	    {"{\"content\":{\"version\":2,\"hash\":\"" HASH "\",\"size\":0,"
	     "\"url\":\"/api/v1/bundles/" HASH "\"}}",
	     "'content.size'"},
	    {"{\"content\":{\"version\":2,\"hash\":\"" HASH "\",\"size\":67108865,"
	     "\"url\":\"/api/v1/bundles/" HASH "\"}}",
	     "'content.size'"},
	    {"{\"content\":{\"version\":2,\"hash\":\"" HASH "\",\"size\":10,"
	     "\"url\":\"http://elsewhere/" HASH "\"}}",
	     "'content.url'"},
	    {"{\"content\":{\"version\":2,\"hash\":\"" HASH "\",\"size\":10,"
	     "\"url\":\"/api/v1/bundles/00" HASH "\"}}",
	     "'content.url'"},
	    {"{\"content\":{\"hash\":\"" HASH "\",\"size\":10,\"url\":\"/api/v1/bundles/" HASH
	     "\"}}",
	     "without a version"},
	    {"{\"content\":{\"version\":2,\"audit_mode\":1}}", "'content.audit_mode'"},
	    {"{\"content\":{\"version\":2,\"pulled\":\"2\"}}", "'content.pulled'"},
	    {"{\"content\":{\"version\":2,\"version\":3}}", "not JSON"},
	    {"{\"content\":{\"a\":[[[[1]]]]}}", "nested too deeply"},
	    {"", "not JSON"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&a, 0x55, sizeof(a));
		assert_int_equal(answer(bad[i].text, &a, err), -EBADMSG);
		assert_non_null(strstr(err, bad[i].why));
		assert_null(strchr(err, '\n'));
		/* refused whole: nothing of it is acted on */
		assert_false(a.content.present || a.content.downloadable || a.content.pulled ||
			     a.heartbeat_seconds || a.sensor.present || a.sensor.pulled);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_enrollment),
	    cmocka_unit_test(test_heartbeat_answer),
	    cmocka_unit_test(test_heartbeat_answer_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
