/*
 * Unit tests for the agent's sensor state (src/agent/sensor_state.c): the strict reader and
 * writer of STATE/sensor/state.json, and the decision every start makes on it (trial counting,
 * the crash-loop revert, an installed executable newer than the staged build).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/sensor_state.h"

#define H1  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define H2  "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define NOW 1764000000

static int parse(const char *text, struct sensor_state *st, char *err)
{
	return sensor_state_parse(text, strlen(text), st, err, 256);
}

static void slot(struct sensor_slot *s, uint64_t build, const char *hash)
{
	s->present = true;
	s->build = build;
	snprintf(s->hash, sizeof(s->hash), "%s", hash);
}

static void test_round_trip(void **state)
{
	struct sensor_state st, back;
	struct buf b;
	char err[256];
	(void)state;

	sensor_state_init(&st);
	slot(&st.current, 3, H1);
	slot(&st.previous, 2, H2);
	st.trial = true;
	st.starts_left = 2;
	st.since = NOW;
	sensor_state_quarantine(&st, 4, "crash loop: \"quoted\"\n", NOW);
	sensor_state_note(&st, 3, "switch", "trial", "", NOW);
	buf_init(&b, SENSOR_STATE_MAX_BYTES);
	assert_int_equal(sensor_state_write_json(&st, &b), 0);
	assert_int_equal(sensor_state_parse(b.data, b.len, &back, err, sizeof(err)), 0);
	assert_true(back.current.present && back.current.build == 3);
	assert_string_equal(back.current.hash, H1);
	assert_true(back.previous.present && back.previous.build == 2);
	assert_true(back.trial);
	assert_int_equal(back.starts_left, 2);
	assert_int_equal(back.since, NOW);
	assert_int_equal(back.n_quarantined, 1);
	/* reasons are kept printable: a control character becomes '?' */
	assert_string_equal(back.quarantined[0].reason, "crash loop: \"quoted\"?");
	assert_true(back.has_last && back.last_build == 3);
	assert_string_equal(back.last_result, "trial");
	buf_release(&b);
}

static void test_refused(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"[]", "not a JSON object"},
	    {"{\"format\":2}", "'format' is not 1"},
	    {"{\"format\":1,\"x\":1}", "unknown key 'x'"},
	    {"{\"format\":1,\"format\":1}", "not JSON"},
	    {"{\"format\":1,\"current\":{\"build\":0,\"hash\":\"" H1 "\"}}", "'current' is not"},
	    {"{\"format\":1,\"current\":{\"build\":2,\"hash\":\"00\"}}", "'current.hash'"},
	    {"{\"format\":1,\"current\":{\"build\":2,\"hash\":\"" H1 "\",\"path\":\"/x\"}}",
	     "'current' is not"},
	    {"{\"format\":1,\"trial\":true}", "on trial without a current build"},
	    {"{\"format\":1,\"current\":{\"build\":2,\"hash\":\"" H1
	     "\"},\"previous\":{\"build\":2,\"hash\":\"" H2 "\"}}",
	     "'previous' is not older"},
	    {"{\"format\":1,\"starts_left\":101}", "'starts_left'"},
	    {"{\"format\":1,\"since\":\"yesterday\"}", "'since'"},
	    {"{\"format\":1,\"quarantined\":[{\"build\":3}]}", "quarantined[0]"},
	    {"{\"format\":1,\"last\":{\"build\":3}}", "'last' is not"},
	};
	struct sensor_state st;
	char err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&st, 0x55, sizeof(st));
		assert_int_equal(parse(bad[i].text, &st, err), -EBADMSG);
		if (!strstr(err, bad[i].why))
			fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].why);
		assert_false(st.current.present || st.trial || st.n_quarantined);
	}
	/* a NUL byte and a file over the cap are refused before parsing */
	assert_int_equal(sensor_state_parse("{\"format\":1}\0", 14, &st, err, sizeof(err)),
			 -EBADMSG);
	assert_int_equal(
	    sensor_state_parse("{}", SENSOR_STATE_MAX_BYTES + 1, &st, err, sizeof(err)), -EBADMSG);
}

static void test_boot_trial_and_crash_loop(void **state)
{
	struct sensor_state st;
	bool changed;
	(void)state;

	/* build 3 on trial over good build 2, installed build 1, 3 trial starts: the switch
	 * was the first start, two more are allowed, the third restart reverts */
	sensor_state_init(&st);
	slot(&st.current, 3, H1);
	slot(&st.previous, 2, H2);
	st.trial = true;
	st.starts_left = 2;
	assert_int_equal(sensor_state_boot(&st, 1, 3, NOW, &changed), 3);
	assert_true(changed);
	assert_int_equal(st.starts_left, 1);
	assert_int_equal(sensor_state_boot(&st, 1, 3, NOW, &changed), 3);
	assert_int_equal(st.starts_left, 0);
	assert_int_equal(sensor_state_boot(&st, 1, 3, NOW, &changed), 2);
	assert_true(changed);
	assert_true(sensor_state_quarantined(&st, 3));
	assert_non_null(strstr(st.quarantined[0].reason, "crash loop: 3 starts"));
	assert_int_equal(st.crash_loop_reverts, 1);
	assert_false(st.trial);
	assert_true(st.current.present && st.current.build == 2);
	assert_string_equal(st.current.hash, H2);
	assert_false(st.previous.present);
	assert_string_equal(st.last_result, "reverted");
	/* good: exec'd into at every start, nothing to save */
	assert_int_equal(sensor_state_boot(&st, 1, 3, NOW, &changed), 2);
	assert_false(changed);
}

static void test_boot_reverts_to_installed(void **state)
{
	struct sensor_state st;
	bool changed;
	(void)state;

	sensor_state_init(&st);
	slot(&st.current, 2, H1);
	st.trial = true;
	st.starts_left = 0;
	assert_int_equal(sensor_state_boot(&st, 1, 3, NOW, &changed), 0);
	assert_true(changed && sensor_state_quarantined(&st, 2));
	assert_false(st.current.present);
	/* nothing staged: the installed executable runs, nothing changes */
	assert_int_equal(sensor_state_boot(&st, 1, 3, NOW, &changed), 0);
	assert_false(changed);
}

static void test_boot_installed_upgrade_wins(void **state)
{
	struct sensor_state st;
	bool changed;
	(void)state;

	/* the package manager installed build 5 over a staged good build 3 */
	sensor_state_init(&st);
	slot(&st.current, 3, H1);
	slot(&st.previous, 2, H2);
	assert_int_equal(sensor_state_boot(&st, 5, 3, NOW, &changed), 0);
	assert_true(changed);
	assert_false(st.current.present || st.previous.present || st.trial);
	/* and one equal to the staged build on trial: no start is counted against it */
	sensor_state_init(&st);
	slot(&st.current, 4, H1);
	st.trial = true;
	st.starts_left = 1;
	assert_int_equal(sensor_state_boot(&st, 4, 3, NOW, &changed), 0);
	assert_false(sensor_state_quarantined(&st, 4));
}

static void test_quarantine_cap(void **state)
{
	struct sensor_state st;
	(void)state;

	sensor_state_init(&st);
	for (uint64_t b = 1; b <= SENSOR_MAX_QUARANTINED + 5; b++)
		sensor_state_quarantine(&st, b, "x", NOW);
	sensor_state_quarantine(&st, SENSOR_MAX_QUARANTINED + 5, "again", NOW);
	assert_int_equal(st.n_quarantined, SENSOR_MAX_QUARANTINED);
	assert_false(sensor_state_quarantined(&st, 5));
	assert_true(sensor_state_quarantined(&st, 6));
	assert_string_equal(st.quarantined[SENSOR_MAX_QUARANTINED - 1].reason, "x");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_boot_trial_and_crash_loop),
	    cmocka_unit_test(test_boot_reverts_to_installed),
	    cmocka_unit_test(test_boot_installed_upgrade_wins),
	    cmocka_unit_test(test_quarantine_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
