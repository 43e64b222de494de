/*
 * Unit tests for the store interface through its SQLite backend (src/server/store_sqlite.c):
 * each kind of row round-trips, keys are unique, enrollment uses run out, record batches are
 * idempotent and atomic, queries filter, heartbeats written together from many threads are
 * each committed once, and everything survives a reopen.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/store.h"

static char dir[64];

static struct store *open_store(void)
{
	struct store *st = NULL;
	char err[256];

	if (store_sqlite_open(dir, &st, err, sizeof(err)))
		fail_msg("open: %s", err);
	return st;
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/vigil-store-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	char path[128];
	static const char *const files[] = {"vigil.db", "vigil.db-wal", "vigil.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	(void)state;
	return 0;
}

static int count_cb(const void *row, void *ctx)
{
	(void)row;
	(*(size_t *)ctx)++;
	return 0;
}

static int count_agent(const struct store_agent *a, void *ctx)
{
	return count_cb(a, ctx);
}

static int count_record(const struct store_record *r, void *ctx)
{
	return count_cb(r, ctx);
}

static int sum_groups(const char *group, int64_t n, void *ctx)
{
	if (strcmp(group, "lab") == 0)
		*(int64_t *)ctx += n;
	return 0;
}

static void tokens(void **state)
{
	struct store *st = open_store();
	struct store_token t = {0}, got;

	snprintf(t.id, sizeof(t.id), "tok1");
	t.kind = TOKEN_ENROLL;
	memset(t.secret_hash, 7, sizeof(t.secret_hash));
	snprintf(t.group, sizeof(t.group), "lab");
	t.uses_left = 2;
	assert_int_equal(st->ops->token_add(st, &t), 0);
	assert_int_equal(st->ops->token_add(st, &t), -EEXIST);
	assert_int_equal(st->ops->token_get(st, "tok1", &got), 0);
	assert_memory_equal(got.secret_hash, t.secret_hash, sizeof(t.secret_hash));
	assert_string_equal(got.group, "lab");
	assert_int_equal(got.kind, TOKEN_ENROLL);
	assert_int_equal(st->ops->token_use(st, "tok1"), 0);
	assert_int_equal(st->ops->token_use(st, "tok1"), 0);
	assert_int_equal(st->ops->token_use(st, "tok1"), -EACCES);
	assert_int_equal(st->ops->token_get(st, "nope", &got), -ENOENT);
	assert_false(got.revoked);
	assert_int_equal(st->ops->token_revoke(st, "tok1"), 0);
	assert_int_equal(st->ops->token_get(st, "tok1", &got), 0);
	assert_true(got.revoked);
	assert_int_equal(st->ops->token_revoke(st, "nope"), -ENOENT);
	store_close(st);
	(void)state;
}

static void agents(void **state)
{
	struct store *st = open_store();
	struct store_agent a = {0}, got;
	struct store_health h = {0};
	size_t n = 0;
	int64_t lab = 0;

	for (int i = 0; i < 5; i++) {
		memset(&a, 0, sizeof(a));
		snprintf(a.id, sizeof(a.id), "agent%d", i);
		snprintf(a.group, sizeof(a.group), "%s", i < 3 ? "lab" : "prod");
		snprintf(a.health.hostname, sizeof(a.health.hostname), "host%d", i);
		a.enrolled_at = 100;
		assert_int_equal(st->ops->agent_add(st, &a), 0);
	}
	assert_int_equal(st->ops->agent_add(st, &a), -EEXIST);
	h.has_content = true;
	h.content_version = 9;
	h.restarts = 3;
	h.n_quarantined = 2;
	h.quarantined[0] = 7;
	h.quarantined[1] = 8;
	h.cpu_percent = 2.5;
	h.sensor_build = 12;
	h.sensor_reverts = 1;
	h.n_sensor_quarantined = 1;
	h.sensor_quarantined[0] = 13;
	uint8_t track[4] = {1, 2, 3, 4};
	assert_int_equal(st->ops->agent_heartbeat(st, "agent1", &h, track, sizeof(track), 200), 0);
	assert_int_equal(st->ops->agent_heartbeat(st, "nope", &h, NULL, 0, 200), -ENOENT);
	assert_int_equal(st->ops->agent_get(st, "agent1", &got), 0);
	assert_int_equal(got.last_seen, 200);
	assert_int_equal(got.heartbeats, 1);
	assert_int_equal(got.health.content_version, 9);
	assert_int_equal(got.health.n_quarantined, 2);
	assert_int_equal(got.health.quarantined[1], 8);
	/* the sensor lane's health is kept beside the content's */
	assert_int_equal(got.health.sensor_build, 12);
	assert_int_equal(got.health.sensor_reverts, 1);
	assert_int_equal(got.health.n_sensor_quarantined, 1);
	assert_int_equal(got.health.sensor_quarantined[0], 13);
	/* a heartbeat without a host name keeps the one from enrollment */
	assert_string_equal(got.health.hostname, "host1");
	assert_int_equal(got.track_len, 4);
	assert_memory_equal(got.track, track, 4);
	assert_int_equal(st->ops->agent_list(st, NULL, "", 0, count_agent, &n), 0);
	assert_int_equal(n, 5);
	n = 0;
	assert_int_equal(st->ops->agent_list(st, "lab", "agent0", 10, count_agent, &n), 0);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(st->ops->agent_list(st, NULL, "", 2, count_agent, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(st->ops->agent_groups(st, sum_groups, &lab), 0);
	assert_int_equal(lab, 3);
	assert_int_equal(st->ops->agent_set_group(st, "agent4", "lab"), 0);
	lab = 0;
	assert_int_equal(st->ops->agent_groups(st, sum_groups, &lab), 0);
	assert_int_equal(lab, 4);
	store_close(st);
	(void)state;
}

#define HB_THREADS	     8
#define HB_PER_THREAD	     500
#define HB_AGENTS_PER_THREAD 4

struct hb_worker {
	struct store *st;
	int thread;
	int failures;
};

/* Sends HB_PER_THREAD heartbeats for the thread's own agents, round robin. */
static void *hb_worker(void *arg)
{
	struct hb_worker *w = arg;
	struct store_health h = {0};
	char id[STORE_ID_BYTES];

	for (int i = 0; i < HB_PER_THREAD; i++) {
		snprintf(id, sizeof(id), "t%da%d", w->thread, i % HB_AGENTS_PER_THREAD);
		h.alerts = i;
		uint8_t track[1] = {(uint8_t)i};
		if (w->st->ops->agent_heartbeat(w->st, id, &h, track, sizeof(track), 1000 + i))
			w->failures++;
	}
	return NULL;
}

static void concurrent_heartbeats(void **state)
{
	struct store *st = open_store();
	struct hb_worker w[HB_THREADS];
	pthread_t t[HB_THREADS];
	struct store_agent a, got;

	for (int i = 0; i < HB_THREADS; i++) {
		for (int j = 0; j < HB_AGENTS_PER_THREAD; j++) {
			memset(&a, 0, sizeof(a));
			snprintf(a.id, sizeof(a.id), "t%da%d", i, j);
			snprintf(a.group, sizeof(a.group), "lab");
			assert_int_equal(st->ops->agent_add(st, &a), 0);
		}
	}
	for (int i = 0; i < HB_THREADS; i++) {
		w[i] = (struct hb_worker){.st = st, .thread = i};
		assert_int_equal(pthread_create(&t[i], NULL, hb_worker, &w[i]), 0);
	}
	for (int i = 0; i < HB_THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	/* every heartbeat counted once, the last one of each agent kept, also after a reopen */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < HB_THREADS; i++) {
			for (int j = 0; j < HB_AGENTS_PER_THREAD; j++) {
				int last = HB_PER_THREAD - HB_AGENTS_PER_THREAD + j;
				snprintf(a.id, sizeof(a.id), "t%da%d", i, j);
				assert_int_equal(st->ops->agent_get(st, a.id, &got), 0);
				assert_int_equal(got.heartbeats,
						 HB_PER_THREAD / HB_AGENTS_PER_THREAD);
				assert_int_equal(got.health.alerts, last);
				assert_int_equal(got.last_seen, 1000 + last);
				assert_int_equal(got.track_len, 1);
				assert_int_equal(got.track[0], (uint8_t)last);
			}
		}
		store_close(st);
		st = pass == 0 ? open_store() : NULL;
	}
	(void)state;
}

static void records(void **state)
{
	struct store *st = open_store();
	struct store_new_record r[3] = {
	    {.seq = 1, .at = 1000, .rule_id = "r1", .json = "{\"a\":1}", .json_len = 7},
	    {.seq = 2, .at = 2000, .rule_id = "r2", .json = "{\"a\":2}", .json_len = 7},
	    {.seq = 3, .at = 3000, .rule_id = "r1", .json = "{\"a\":3}", .json_len = 7},
	};
	struct store_record_query q = {.kind = RECORD_ALERT};
	size_t inserted = 99, n = 0;

	assert_int_equal(st->ops->records_add(st, RECORD_ALERT, "agentA", r, 2, &inserted, 5000),
			 0);
	assert_int_equal(inserted, 2);
	assert_int_equal(st->ops->records_add(st, RECORD_ALERT, "agentA", r, 3, &inserted, 5000),
			 0);
	assert_int_equal(inserted, 1);
	/* the same sequence numbers from another agent, or as events, are new */
	assert_int_equal(st->ops->records_add(st, RECORD_ALERT, "agentB", r, 1, &inserted, 5000),
			 0);
	assert_int_equal(inserted, 1);
	assert_int_equal(st->ops->records_add(st, RECORD_EVENT, "agentA", r, 3, &inserted, 5000),
			 0);
	assert_int_equal(inserted, 3);
	assert_int_equal(st->ops->records_query(st, &q, count_record, &n), 0);
	assert_int_equal(n, 4);
	n = 0;
	q.agent_id = "agentA";
	q.rule_id = "r1";
	assert_int_equal(st->ops->records_query(st, &q, count_record, &n), 0);
	assert_int_equal(n, 2);
	n = 0;
	q.since = 1500;
	q.until = 3000;
	assert_int_equal(st->ops->records_query(st, &q, count_record, &n), 0);
	assert_int_equal(n, 1);
	n = 0;
	q.agent_id = q.rule_id = NULL;
	q.since = q.until = 0;
	q.limit = 1;
	assert_int_equal(st->ops->records_query(st, &q, count_record, &n), 0);
	assert_int_equal(n, 1);
	store_close(st);
	(void)state;
}

static void rollouts_and_reopen(void **state)
{
	struct store *st = open_store();
	struct store_rollout r = {0}, got = {0};
	struct store_release rel = {0}, rgot;
	struct store_decision d = {0};
	struct store_audit a = {0};
	char v[32];

	snprintf(rel.hash, sizeof(rel.hash), "%064d", 1);
	snprintf(rel.kind, sizeof(rel.kind), "content");
	rel.version = 5;
	assert_int_equal(st->ops->release_add(st, &rel), 0);
	assert_true(rel.id > 0);
	assert_int_equal(st->ops->release_add(st, &rel), -EEXIST);
	memcpy(r.release_hash, rel.hash, sizeof(r.release_hash));
	snprintf(r.state, sizeof(r.state), "rolling");
	r.meta = "{}";
	r.controller = "AAAA";
	assert_int_equal(st->ops->rollout_add(st, &r), 0);
	r.controller = "BBBB";
	snprintf(r.state, sizeof(r.state), "halted");
	assert_int_equal(st->ops->rollout_update(st, &r), 0);
	d.rollout_id = r.id;
	snprintf(d.kind, sizeof(d.kind), "halt");
	d.detail = "{\"x\":1}";
	assert_int_equal(st->ops->decision_add(st, &d), 0);
	a.action = "POST /x";
	a.target = "t";
	a.result = "200";
	snprintf(a.who, sizeof(a.who), "ops");
	assert_int_equal(st->ops->audit_add(st, &a), 0);
	assert_int_equal(st->ops->meta_set(st, "k", "v1"), 0);
	assert_int_equal(st->ops->meta_set(st, "k", "v2"), 0);
	store_close(st);

	st = open_store();
	assert_int_equal(st->ops->meta_get(st, "k", v, sizeof(v)), 0);
	assert_string_equal(v, "v2");
	assert_int_equal(st->ops->meta_get(st, "missing", v, sizeof(v)), -ENOENT);
	assert_int_equal(st->ops->release_get(st, rel.hash, &rgot), 0);
	assert_int_equal(rgot.version, 5);
	assert_int_equal(st->ops->rollout_get(st, r.id, &got), 0);
	assert_string_equal(got.state, "halted");
	assert_string_equal(got.controller, "BBBB");
	store_rollout_clear(&got);
	assert_int_equal(st->ops->rollout_get(st, r.id + 1, &got), -ENOENT);
	store_close(st);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(tokens),
	    cmocka_unit_test(agents),
	    cmocka_unit_test(concurrent_heartbeats),
	    cmocka_unit_test(records),
	    cmocka_unit_test(rollouts_and_reopen),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
