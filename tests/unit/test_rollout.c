/*
 * Unit tests of the rollout controller: plans, the stable hash, per-agent answers under every
 * group policy, each health gate with its minimum samples, silence of dead agents, decisions,
 * operator actions and the snapshot the server stores.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/rollout.h"

#define T0 1721361540 /* 2024-07-19T03:59:00Z */
#define V  2u	      /* the release */
#define P  1u	      /* the previous good version */

/* --- a small fleet driven by hand --- */

#define N_AGENTS 1000
#define RING0	 40
#define RING1	 100

struct agent {
	struct rollout_track t;
	struct rollout_agent a;
	uint64_t quarantined[2];
	bool silent;					     /* sends no heartbeat */
	uint32_t restarts, reverts, liveness, drops, alerts; /* reported at its next heartbeat */
	double cpu;
};

static struct agent fleet[N_AGENTS];
static struct rollout_policy follow;

static void fleet_init(void)
{
	memset(fleet, 0, sizeof(fleet));
	rollout_policy_default(&follow);
	for (uint32_t i = 0; i < N_AGENTS; i++) {
		struct agent *x = &fleet[i];
		rollout_track_init(&x->t);
		x->a.key = 0x1000 + i;
		x->a.ring = i < RING0 ? 0 : i < RING0 + RING1 ? 1 : 2;
		x->a.active = P;
		x->a.quarantined = x->quarantined;
		x->cpu = 2.0;
		/* a CPU baseline from before the release, as the server keeps it */
		struct rollout_report rep = {.interval_s = 60, .cpu_pct = 2.0};
		for (int k = 0; k < 10; k++)
			rollout_track_observe(&x->t, &rep);
	}
}

static void quarantine(struct agent *x, uint64_t v)
{
	x->quarantined[x->a.n_quarantined++] = v;
}

/* One heartbeat of agent @i at @now; the agent takes what it is told at once. */
static struct rollout_answer beat(struct rollout *r, uint32_t i, int64_t now)
{
	struct agent *x = &fleet[i];
	struct rollout_report rep = {
	    .interval_s = 60,
	    .restarts = x->restarts,
	    .reverts = x->reverts,
	    .liveness_failed = x->liveness != 0,
	    .drops = x->drops,
	    .alerts = x->alerts,
	    .cpu_pct = x->cpu * (1 + 0.05 * ((int)((i * 7919u + (uint32_t)now) % 11) - 5) / 5.0),
	};
	struct rollout_answer ans;

	x->restarts = x->reverts = x->drops = 0;
	rollout_heartbeat(r, &x->t, &x->a, &follow, &rep, now, &ans);
	if (ans.version)
		x->a.active = ans.version;
	return ans;
}

/* Every agent that is not silent heartbeats once a minute (agent i at second i % 60) from @from
 * to @to; the controller ticks every second. Returns the first action taken, or -1. */
static int run(struct rollout *r, int64_t from, int64_t to)
{
	int first = -1;

	for (int64_t now = from; now < to; now++) {
		for (uint32_t i = (uint32_t)(now % 60); i < N_AGENTS; i += 60)
			if (!fleet[i].silent)
				beat(r, i, now);
		int act = rollout_tick(r, now);
		if (act >= 0 && first < 0)
			first = act;
	}
	return first;
}

static struct rollout_plan short_plan(void)
{
	struct rollout_plan p;

	rollout_plan_default(&p);
	for (uint32_t i = 0; i < p.n_steps; i++)
		p.steps[i].bake_s = 600;
	return p;
}

static struct rollout *start(void)
{
	struct rollout_plan p = short_plan();
	struct rollout *r = NULL;
	char err[256];

	fleet_init();
	assert_int_equal(rollout_new(&p, V, P, false, T0, &r, err, sizeof(err)), 0);
	rollout_set_population(r, 0, RING0);
	rollout_set_population(r, 1, RING1);
	rollout_set_population(r, 2, N_AGENTS - RING0 - RING1);
	return r;
}

static const struct rollout_decision *last_decision(const struct rollout *r, int action)
{
	for (size_t i = rollout_decision_count(r); i-- > 0;) {
		const struct rollout_decision *d = rollout_decision(r, i);
		if ((int)d->action == action)
			return d;
	}
	return NULL;
}

/* --- plans --- */

static void test_plan_default_valid(void **state)
{
	struct rollout_plan p;
	char err[256];

	rollout_plan_default(&p);
	assert_int_equal(rollout_plan_validate(&p, false, err, sizeof(err)), 0);
	assert_int_equal(p.n_steps, 6);
	assert_int_equal(p.n_rings, 3);
	assert_int_equal(rollout_plan_nominal_s(&p), 900 + 1800 + 4 * 3600);
	rollout_plan_scale_bakes(&p, 0.01);
	assert_int_equal(p.steps[0].bake_s, 9);
	assert_int_equal(p.steps[2].bake_s, 36);
}

static void expect_invalid(const struct rollout_plan *p, int want, const char *words)
{
	char err[256] = "";

	assert_int_equal(rollout_plan_validate(p, false, err, sizeof(err)), want);
	if (!strstr(err, words))
		fail_msg("error '%s' does not say '%s'", err, words);
	assert_null(strchr(err, '\n'));
}

static void test_plan_refused(void **state)
{
	struct rollout_plan p, q;
	char err[256];

	rollout_plan_default(&p);
	q = p;
	q.n_steps = 0;
	expect_invalid(&q, -EINVAL, "0 steps");
	q = p;
	q.steps[1].ring = 7;
	expect_invalid(&q, -EINVAL, "ring 7");
	q = p;
	q.steps[3].bp = q.steps[2].bp; /* 1% then 1% again */
	expect_invalid(&q, -EINVAL, "reaches no more");
	q = p;
	q.steps[1].ring = 0; /* ring 1 before ring 0 done is fine, going back is not */
	q.steps[0].ring = 1;
	expect_invalid(&q, -EINVAL, "reaches no more");
	q = p;
	q.n_steps = 5; /* stops at 50 % of ring 2 */
	expect_invalid(&q, -EINVAL, "last step must reach every ring");
	q = p;
	q.steps[2].gates.alpha = 0;
	expect_invalid(&q, -EINVAL, "alpha");
	q = p;
	q.steps[4].gates.silence_k = 3;
	expect_invalid(&q, -EINVAL, "silence_k");
	q = p;
	q.heartbeat_s = 0;
	expect_invalid(&q, -EINVAL, "heartbeat");

	/* everything to everyone in the first step: refused unless forced */
	q = p;
	q.n_steps = 1;
	q.steps[0].ring = 2;
	q.steps[0].bp = ROLLOUT_BP;
	expect_invalid(&q, -EPERM, "whole fleet");
	assert_int_equal(rollout_plan_validate(&q, true, err, sizeof(err)), 0);
	struct rollout *r = NULL;
	assert_int_equal(rollout_new(&q, V, P, false, T0, &r, err, sizeof(err)), -EPERM);
	assert_null(r);
	assert_int_equal(rollout_new(&q, V, P, true, T0, &r, err, sizeof(err)), 0);
	rollout_free(r);
	/* a single ring: its first step at 100 % is the whole fleet too */
	q.n_rings = 1;
	q.steps[0].ring = 0;
	expect_invalid(&q, -EPERM, "whole fleet");
	/* the release must differ from what agents return to */
	assert_int_equal(rollout_new(&p, P, P, false, T0, &r, err, sizeof(err)), -EINVAL);
}

static void test_plan_text(void **state)
{
	struct rollout_plan p;
	struct rollout_gates g;
	struct buf b;
	char err[256];

	rollout_plan_default(&p);
	rollout_gates_default(&g);
	buf_init(&b, 4096);
	assert_int_equal(rollout_plan_text(&p, &b), 0);
	assert_string_equal(b.data, "0:100:15m 1:100:30m 2:1:1h 2:10:1h 2:50:1h 2:100:1h");
	assert_int_equal(
	    rollout_plan_parse("0:100:30s, 1:2.5:90s 2:0.05:1m 2:100:2h", &g, &p, err, sizeof(err)),
	    0);
	assert_int_equal(p.n_steps, 4);
	assert_int_equal(p.steps[1].bp, 250);
	assert_int_equal(p.steps[2].bp, 5);
	assert_int_equal(p.steps[3].bake_s, 7200);
	buf_reset(&b);
	assert_int_equal(rollout_plan_text(&p, &b), 0);
	assert_string_equal(b.data, "0:100:30s 1:2.5:90s 2:0.05:1m 2:100:2h");
	assert_int_equal(rollout_plan_validate(&p, false, err, sizeof(err)), 0);

	static const char *const bad[] = {"",	    "0:100",	  "x:1:1m",  "0:101:1m",
					  "0:0:1m", "0:1.234:1m", "0:50:1y", "0:50:31d",
					  "9:1:1m", "-1:5:1m"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rollout_plan before = p;
		err[0] = '\0';
		if (rollout_plan_parse(bad[i], &g, &p, err, sizeof(err)) != -EINVAL)
			fail_msg("plan '%s' parsed", bad[i]);
		assert_true(err[0] != '\0');
		assert_memory_equal(&before, &p, sizeof(p)); /* unchanged on error */
	}
	buf_release(&b);
}

static void test_duration(void **state)
{
	uint64_t v = 7;

	assert_int_equal(rollout_duration_parse("90", &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(rollout_duration_parse("15m", &v), 0);
	assert_int_equal(v, 900);
	assert_int_equal(rollout_duration_parse("2h", &v), 0);
	assert_int_equal(v, 7200);
	assert_int_equal(rollout_duration_parse("1d", &v), 0);
	assert_int_equal(v, 86400);
	v = 7;
	assert_int_equal(rollout_duration_parse("", &v), -EINVAL);
	assert_int_equal(rollout_duration_parse("h", &v), -EINVAL);
	assert_int_equal(rollout_duration_parse("1hh", &v), -EINVAL);
	assert_int_equal(rollout_duration_parse("-1s", &v), -EINVAL);
	assert_int_equal(rollout_duration_parse("367d", &v), -EINVAL);
	assert_int_equal(rollout_duration_parse("99999999999", &v), -EINVAL);
	assert_int_equal(v, 7);
}

/* --- the hash --- */

static void test_position_stable(void **state)
{
	/* fixed forever: an agent's canary slot must not move between builds */
	assert_int_equal(rollout_position(0, 0), rollout_position(0, 0));
	uint32_t a = rollout_position(0x1234, 7), b = rollout_position(0x1234, 8);
	assert_true(a < ROLLOUT_BP && b < ROLLOUT_BP);
	assert_int_equal(rollout_position(1, 2), 9473);
	assert_int_equal(rollout_position(0xdeadbeefcafef00dull, 42), 3921);
	assert_int_equal(rollout_agent_key("agent-1", 7), 0xe1405b7801ef7530ull);
	assert_true(rollout_agent_key("agent-1", 7) != rollout_agent_key("agent-2", 7));
}

static void test_position_distribution(void **state)
{
	enum { N = 200000, BUCKETS = 100 };
	static uint32_t count[BUCKETS];
	uint32_t in1 = 0, both = 0;
	double chi2 = 0;

	memset(count, 0, sizeof(count));
	/* sequential keys: the worst case for a weak hash */
	for (uint64_t k = 0; k < N; k++) {
		uint32_t p = rollout_position(k, 5);
		count[p / (ROLLOUT_BP / BUCKETS)]++;
		if (p < 100) {
			in1++;
			both += rollout_position(k, 6) < 100;
		}
	}
	for (int i = 0; i < BUCKETS; i++) {
		double d = count[i] - (double)N / BUCKETS;
		chi2 += d * d / ((double)N / BUCKETS);
	}
	/* 99 degrees of freedom: above 160 happens with probability under 1e-4 */
	if (chi2 > 160)
		fail_msg("chi-square %.1f over %d buckets", chi2, BUCKETS);
	/* 1 % of the fleet, within 0.1 % */
	assert_true(in1 > N / 100 - N / 1000 && in1 < N / 100 + N / 1000);
	/* another release picks other canaries: the overlap is 1 % of 1 % */
	assert_true(both < in1 / 20);
}

/* --- answers and policy --- */

static struct rollout_answer ask(const struct rollout *r, uint32_t ring, uint64_t cur,
				 const struct rollout_policy *p, int64_t now)
{
	struct rollout_agent a = {.key = 99, .ring = ring, .active = cur};
	struct rollout_answer ans;

	rollout_desired(r, &a, p, now, &ans);
	return ans;
}

static void test_follow_rings(void **state)
{
	struct rollout *r = start();
	struct rollout_answer a;

	a = ask(r, 0, P, &follow, T0 + 1);
	assert_int_equal(a.version, V);
	assert_int_equal(a.why, ROLLOUT_WHY_step);
	assert_true(a.baking);
	a = ask(r, 1, P, &follow, T0 + 1);
	assert_int_equal(a.version, P);
	assert_int_equal(a.why, ROLLOUT_WHY_not_yet);
	assert_false(a.baking);
	/* a ring beyond the plan's is the last ring */
	assert_int_equal(ask(r, 7, P, &follow, T0 + 1).version, P);

	assert_int_equal(run(r, T0, T0 + 601), ROLLOUT_ACT_PROMOTE);
	assert_int_equal(rollout_step(r), 1);
	a = ask(r, 0, V, &follow, T0 + 700);
	assert_int_equal(a.version, V);
	assert_false(a.baking); /* its step has baked: responses enforce again */
	a = ask(r, 1, P, &follow, T0 + 700);
	assert_int_equal(a.version, V);
	assert_true(a.baking);
	struct rollout_agent ag = {.key = 99, .ring = 1, .active = V};
	assert_true(rollout_baking(r, &ag, T0 + 700));
	ag.ring = 0;
	assert_false(rollout_baking(r, &ag, T0 + 700));

	/* the 1 % step of ring 2 reaches exactly the agents whose position is below 100 bp */
	assert_int_equal(run(r, T0 + 601, T0 + 1202), ROLLOUT_ACT_PROMOTE);
	assert_int_equal(rollout_step(r), 2);
	for (uint32_t i = RING0 + RING1; i < N_AGENTS; i++) {
		struct rollout_answer x;
		rollout_desired(r, &fleet[i].a, &follow, T0 + 1300, &x);
		bool in = rollout_position(fleet[i].a.key, V) < 100;
		assert_int_equal(x.version == V, in || fleet[i].a.active == V);
	}
	rollout_free(r);
}

static void test_policies(void **state)
{
	struct rollout *r = start();
	struct rollout_policy p;
	char err[256];

	/* pin */
	assert_int_equal(rollout_policy_parse("pin=7", &p, err, sizeof(err)), 0);
	assert_int_equal(ask(r, 0, P, &p, T0).version, 7);
	assert_int_equal(ask(r, 0, P, &p, T0).why, ROLLOUT_WHY_pinned);

	/* pause: stays where it is, whatever it runs */
	assert_int_equal(rollout_policy_parse("pause", &p, err, sizeof(err)), 0);
	assert_int_equal(ask(r, 0, P, &p, T0).version, P);
	assert_int_equal(ask(r, 0, P, &p, T0).why, ROLLOUT_WHY_paused);
	assert_int_equal(ask(r, 0, V, &p, T0).version, V);

	/* approval: only once the group approved this release */
	assert_int_equal(rollout_policy_parse("approval", &p, err, sizeof(err)), 0);
	assert_int_equal(ask(r, 0, P, &p, T0).version, P);
	assert_int_equal(ask(r, 0, P, &p, T0).why, ROLLOUT_WHY_approval);
	p.approved = V;
	assert_int_equal(ask(r, 0, P, &p, T0).version, V);

	/* maintenance window 02:00-04:00 UTC (T0 is 03:59, T0 + 120 is 04:01) */
	assert_int_equal(rollout_policy_parse("window=02:00-04:00", &p, err, sizeof(err)), 0);
	assert_true(rollout_policy_in_window(&p, T0));
	assert_false(rollout_policy_in_window(&p, T0 + 120));
	assert_int_equal(ask(r, 0, P, &p, T0).version, V);
	assert_int_equal(ask(r, 0, P, &p, T0 + 120).version, P);
	assert_int_equal(ask(r, 0, P, &p, T0 + 120).why, ROLLOUT_WHY_window);
	/* a window across midnight */
	assert_int_equal(rollout_policy_parse("window=23:00-01:00", &p, err, sizeof(err)), 0);
	assert_true(rollout_policy_in_window(&p, 1721347200 + 23 * 3600 + 30));
	assert_true(rollout_policy_in_window(&p, 1721347200 + 1800));
	assert_false(rollout_policy_in_window(&p, 1721347200 + 3600));

	/* delay after general availability, not the rings */
	assert_int_equal(rollout_policy_parse("delay=1h", &p, err, sizeof(err)), 0);
	assert_int_equal(ask(r, 0, P, &p, T0).version, P);
	assert_int_equal(ask(r, 0, P, &p, T0).why, ROLLOUT_WHY_delayed);
	for (int i = 0; i < 6; i++)
		assert_int_equal(rollout_promote(r, T0 + 10 + i, "test"), 0);
	assert_int_equal(rollout_state(r), ROLLOUT_COMPLETE);
	assert_int_equal(rollout_available_at(r), T0 + 15);
	assert_int_equal(ask(r, 2, P, &p, T0 + 15 + 3599).version, P);
	assert_int_equal(ask(r, 2, P, &p, T0 + 15 + 3600).version, V);
	assert_int_equal(ask(r, 2, P, &p, T0 + 15 + 3600).why, ROLLOUT_WHY_available);
	assert_int_equal(ask(r, 2, P, &follow, T0 + 16).version, V);

	/* policies that do not parse */
	static const char *const bad[] = {
	    "pin=0",	    "pin=x",	"delay=forever", "window=2-4", "window=04:00-04:00",
	    "follow pause", "sometimes"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rollout_policy q = p;
		if (rollout_policy_parse(bad[i], &p, err, sizeof(err)) != -EINVAL)
			fail_msg("policy '%s' parsed", bad[i]);
		assert_memory_equal(&q, &p, sizeof(p));
	}
	rollout_free(r);
}

static void test_pull_and_quarantine(void **state)
{
	struct rollout *r = start();
	struct rollout_policy win, pin;
	char err[256];
	uint64_t q[1] = {V};

	assert_int_equal(rollout_policy_parse("window=02:00-03:00", &win, err, sizeof(err)), 0);
	assert_int_equal(rollout_policy_parse("pin=2", &pin, err, sizeof(err)), 0);

	/* an agent that quarantined the release is never offered it again */
	struct rollout_agent a = {
	    .key = 5, .ring = 0, .active = P, .quarantined = q, .n_quarantined = 1};
	struct rollout_answer ans;
	rollout_desired(r, &a, &follow, T0, &ans);
	assert_int_equal(ans.version, P);
	assert_int_equal(ans.why, ROLLOUT_WHY_quarantined);
	/* not even by a pin to it */
	rollout_desired(r, &a, &pin, T0, &ans);
	assert_int_equal(ans.version, P);
	/* nor through its heartbeats, however long */
	fleet[0].quarantined[0] = V;
	fleet[0].a.n_quarantined = 1;
	for (int64_t t = T0; t < T0 + 600; t += 60)
		assert_int_equal(beat(r, 0, t).version, P);

	assert_int_equal(rollout_halt(r, T0 + 700, "test"), 0);
	assert_int_equal(rollout_halt(r, T0 + 701, "again"), -EINVAL);
	assert_int_equal(rollout_state(r), ROLLOUT_HALTED);
	/* a halted release is pulled: back to the previous good version, even outside a
	 * window and against a pin to it */
	assert_int_equal(ask(r, 0, V, &follow, T0 + 800).version, P);
	assert_int_equal(ask(r, 0, V, &follow, T0 + 800).why, ROLLOUT_WHY_pulled);
	assert_int_equal(ask(r, 0, V, &win, T0 + 800).version, P);
	assert_int_equal(ask(r, 0, V, &pin, T0 + 800).version, P);
	assert_int_equal(ask(r, 2, P, &follow, T0 + 800).version, P);
	struct rollout_agent running = {.key = 5, .ring = 0, .active = V};
	assert_true(rollout_baking(r, &running, T0 + 800));
	const struct rollout_decision *d = last_decision(r, ROLLOUT_ACT_PULL);
	assert_non_null(d);
	assert_non_null(strstr(d->reason, "return to 1"));
	assert_true(last_decision(r, ROLLOUT_ACT_HALT)->manual);
	rollout_free(r);
}

/* --- gates --- */

/* Runs seconds @from to @to of the rollout, @setup applied to every agent that runs the
 * release before each of its heartbeats; returns the first action. */
static int run_with(struct rollout *r, int64_t from, int64_t to,
		    void (*setup)(struct agent *, uint32_t))
{
	int first = -1;

	for (int64_t now = T0 + from; now < T0 + to; now++) {
		for (uint32_t i = (uint32_t)(now % 60); i < N_AGENTS; i += 60) {
			if (fleet[i].silent)
				continue;
			if (setup && fleet[i].a.active == V)
				setup(&fleet[i], i);
			beat(r, i, now);
		}
		int act = rollout_tick(r, now);
		if (act >= 0 && first < 0)
			first = act;
		if (act == ROLLOUT_ACT_HALT)
			break;
	}
	return first;
}

/* The first @seconds of the rollout, as run_with(). */
static int run_ring0(struct rollout *r, int64_t seconds, void (*setup)(struct agent *, uint32_t))
{
	return run_with(r, 0, seconds, setup);
}

static enum rollout_gate halt_gate(const struct rollout *r)
{
	const struct rollout_decision *d = last_decision(r, ROLLOUT_ACT_HALT);
	assert_non_null(d);
	assert_false(d->manual);
	assert_true(d->failed_gate >= 0);
	assert_int_equal(d->gates[d->failed_gate].verdict, ROLLOUT_FAIL);
	return (enum rollout_gate)d->failed_gate;
}

static void revert_one(struct agent *x, uint32_t i)
{
	if (i == 0) {
		x->reverts = 1;
		x->restarts = 0;
		x->a.active = P;
		quarantine(x, V);
	}
}

static void revert_two(struct agent *x, uint32_t i)
{
	if (i == 0 || i == 1) {
		x->reverts = 1;
		x->a.active = P;
		quarantine(x, V);
	}
}

static void test_gate_reverts(void **state)
{
	struct rollout *r = start();

	/* one crash-loop revert is below min_bad: the step still promotes */
	assert_int_equal(run_ring0(r, 601, revert_one), ROLLOUT_ACT_PROMOTE);
	rollout_free(r);

	r = start();
	assert_int_equal(run_ring0(r, 601, revert_two), ROLLOUT_ACT_HALT);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_reverts);
	const struct rollout_decision *d = last_decision(r, ROLLOUT_ACT_HALT);
	assert_int_equal(d->gates[ROLLOUT_GATE_reverts].bad, 2);
	assert_true(d->gates[ROLLOUT_GATE_reverts].log10_p < -4);
	assert_int_equal(d->step, 0);
	/* the halt is followed by the pull, and the two agents were asked back */
	assert_non_null(last_decision(r, ROLLOUT_ACT_PULL));
	assert_int_equal(rollout_state(r), ROLLOUT_HALTED);
	struct buf b;
	buf_init(&b, 65536);
	assert_int_equal(rollout_decision_text(r, d, &b), 0);
	assert_non_null(strstr(b.data, "gate reverts failed: 2 of"));
	assert_null(strchr(b.data, '\n'));
	buf_reset(&b);
	assert_int_equal(rollout_decision_json(d, &b), 0);
	assert_non_null(strstr(b.data, "\"failed_gate\":\"reverts\""));
	assert_non_null(strstr(b.data, "\"reverts\":{\"verdict\":\"fail\",\"agents\":"));
	buf_release(&b);
	rollout_free(r);
}

static void restart_four(struct agent *x, uint32_t i)
{
	if (i < 4)
		x->restarts = 1;
}

static void test_gate_restarts(void **state)
{
	struct rollout *r = start();

	/* control agents restart at an ordinary rate: two control agents each hour */
	fleet[500].restarts = 1;
	fleet[700].restarts = 1;
	assert_int_equal(run_ring0(r, 601, restart_four), ROLLOUT_ACT_HALT);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_restarts);
	rollout_free(r);
}

static void silence_after_offer(struct agent *x, uint32_t i)
{
	if (i < 5)
		x->silent = true; /* dead: no heartbeat ever again */
}

static void test_gate_silence(void **state)
{
	struct rollout *r = start();
	int64_t offered_last = -1;

	/* ring 0 agents are offered at their first heartbeat (second i % 60), activate, and the
	 * first five die with the release: no heartbeat from then on */
	int act = run_ring0(r, 130, silence_after_offer);
	assert_int_equal(act, -1); /* not yet: silence needs more than 2 intervals */
	for (int64_t now = T0 + 130; now < T0 + 400 && offered_last < 0; now++) {
		for (uint32_t i = (uint32_t)(now % 60); i < N_AGENTS; i += 60)
			if (!fleet[i].silent)
				beat(r, i, now);
		if (rollout_tick(r, now) == ROLLOUT_ACT_HALT)
			offered_last = now;
	}
	assert_true(offered_last > 0);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_silence);
	/* the five went quiet after their heartbeat at 60..64 s (running it); with a 60 s
	 * interval and K = 2 they count once 120 s have passed, bucketed by 15 s */
	assert_true(offered_last >= T0 + 64 + 120 && offered_last <= T0 + 64 + 120 + 30);
	assert_int_equal(last_decision(r, ROLLOUT_ACT_HALT)->gates[ROLLOUT_GATE_silence].bad, 5);
	rollout_free(r);
}

static void test_silence_comes_back(void **state)
{
	struct rollout *r = start();

	/* one agent quiet for 5 minutes after it took the release, then back: one silent agent
	 * is below min_bad */
	assert_int_equal(run(r, T0, T0 + 61), -1);
	assert_int_equal(fleet[0].a.active, V);
	fleet[0].silent = true;
	assert_int_equal(run(r, T0 + 61, T0 + 300), -1);
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];
	rollout_evaluate(r, T0 + 300, ev);
	assert_int_equal(ev[ROLLOUT_GATE_silence].bad, 1);
	fleet[0].silent = false;
	assert_int_equal(run(r, T0 + 300, T0 + 601), ROLLOUT_ACT_PROMOTE);
	rollout_free(r);
}

static void liveness_three(struct agent *x, uint32_t i)
{
	if (i < 3)
		x->liveness = 1;
}

static void test_gate_liveness(void **state)
{
	struct rollout *r = start();

	assert_int_equal(run_ring0(r, 601, liveness_three), ROLLOUT_ACT_HALT);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_liveness);
	rollout_free(r);
}

static void drops_three(struct agent *x, uint32_t i)
{
	if (i < 3)
		x->drops = 5000;
}

static void test_gate_drops(void **state)
{
	struct rollout *r = start();

	assert_int_equal(run_ring0(r, 601, drops_three), ROLLOUT_ACT_HALT);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_drops);
	rollout_free(r);
}

static void alerts_surge(struct agent *x, uint32_t i)
{
	x->alerts = 20;
}

static void test_gate_alerts(void **state)
{
	struct rollout *r = start();

	/* control: about one alert per agent-hour */
	for (uint32_t i = RING0; i < N_AGENTS; i += 60)
		fleet[i].alerts = 1;
	/* only four ring-0 agents report: fewer than the step needs (a quarter of 40), so no
	 * verdict on alerts however loud they are */
	for (uint32_t i = 4; i < RING0; i++)
		fleet[i].silent = true;
	struct rollout_plan p = short_plan();
	for (uint32_t s = 0; s < p.n_steps; s++)
		p.steps[s].gates.enabled &= ~(1u << ROLLOUT_GATE_silence);
	rollout_free(r);
	char err[256];
	assert_int_equal(rollout_new(&p, V, P, false, T0, &r, err, sizeof(err)), 0);
	rollout_set_population(r, 0, RING0);
	rollout_set_population(r, 1, RING1);
	rollout_set_population(r, 2, N_AGENTS - RING0 - RING1);
	assert_int_equal(run_ring0(r, 400, alerts_surge), -1);
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];
	rollout_evaluate(r, T0 + 400, ev);
	assert_true(ev[ROLLOUT_GATE_alerts].exposed_rate >
		    100 * ev[ROLLOUT_GATE_alerts].control_rate);
	assert_int_equal(ev[ROLLOUT_GATE_alerts].verdict, ROLLOUT_PASS);
	/* and without enough reports it is not promoted either */
	assert_int_equal(run_with(r, 400, 700, alerts_surge), -1);
	assert_int_equal(rollout_state(r), ROLLOUT_ROLLING);
	assert_int_equal(rollout_step(r), 0);
	/* the rest of ring 0 reports: the surge halts it */
	for (uint32_t i = 4; i < RING0; i++)
		fleet[i].silent = false;
	for (int64_t now = T0 + 700; now < T0 + 1000; now++) {
		for (uint32_t i = (uint32_t)(now % 60); i < N_AGENTS; i += 60) {
			if (fleet[i].a.active == V)
				alerts_surge(&fleet[i], i);
			beat(r, i, now);
		}
		if (rollout_tick(r, now) == ROLLOUT_ACT_HALT)
			break;
	}
	assert_int_equal(rollout_state(r), ROLLOUT_HALTED);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_alerts);
	rollout_free(r);
}

static void cpu_up_30(struct agent *x, uint32_t i)
{
	x->cpu = 2.6;
}

static void cpu_up_5(struct agent *x, uint32_t i)
{
	x->cpu = 2.1;
}

static void test_gate_cpu(void **state)
{
	struct rollout *r = start();

	assert_int_equal(run_ring0(r, 601, cpu_up_30), ROLLOUT_ACT_HALT);
	assert_int_equal(halt_gate(r), ROLLOUT_GATE_cpu);
	const struct rollout_decision *d = last_decision(r, ROLLOUT_ACT_HALT);
	assert_true(d->gates[ROLLOUT_GATE_cpu].exposed_rate > 1.25);
	assert_true(fabs(d->gates[ROLLOUT_GATE_cpu].control_rate - 1.0) < 0.05);
	rollout_free(r);

	/* +5 % is within the allowed 15 % */
	r = start();
	assert_int_equal(run_ring0(r, 601, cpu_up_5), ROLLOUT_ACT_PROMOTE);
	rollout_free(r);
}

static void test_gate_off(void **state)
{
	struct rollout_plan p = short_plan();
	struct rollout *r = NULL;
	char err[256];

	for (uint32_t s = 0; s < p.n_steps; s++)
		p.steps[s].gates.enabled &= ~(1u << ROLLOUT_GATE_reverts);
	fleet_init();
	assert_int_equal(rollout_new(&p, V, P, false, T0, &r, err, sizeof(err)), 0);
	rollout_set_population(r, 0, RING0);
	rollout_set_population(r, 1, RING1);
	rollout_set_population(r, 2, N_AGENTS - RING0 - RING1);
	assert_int_equal(run_ring0(r, 601, revert_two), ROLLOUT_ACT_PROMOTE);
	const struct rollout_decision *d = last_decision(r, ROLLOUT_ACT_PROMOTE);
	assert_int_equal(d->gates[ROLLOUT_GATE_reverts].verdict, ROLLOUT_OFF);
	rollout_free(r);
}

/* --- promotion, operator actions, the whole plan --- */

static void test_promotion_needs_reports(void **state)
{
	struct rollout *r = start();

	/* ring 0 is silent from the start (never offered): nothing reported, no promotion */
	for (uint32_t i = 0; i < RING0; i++)
		fleet[i].silent = true;
	assert_int_equal(run(r, T0, T0 + 1200), -1);
	assert_int_equal(rollout_step(r), 0);
	for (uint32_t i = 0; i < RING0; i++)
		fleet[i].silent = false;
	/* they report: two heartbeats (offer, then running it), then the promotion */
	assert_int_equal(run(r, T0 + 1200, T0 + 1400), ROLLOUT_ACT_PROMOTE);
	const struct rollout_decision *d = last_decision(r, ROLLOUT_ACT_PROMOTE);
	assert_int_equal(d->step_needed, 10);
	assert_true(d->step_reported >= 10);
	assert_int_equal(d->to_step, 1);
	rollout_free(r);
}

static void test_whole_plan(void **state)
{
	struct rollout *r = start();
	int64_t now = T0;
	size_t promotions = 0;

	for (; now < T0 + 6 * 600 + 120 && rollout_state(r) == ROLLOUT_ROLLING; now++) {
		for (uint32_t i = (uint32_t)(now % 60); i < N_AGENTS; i += 60)
			beat(r, i, now);
		int act = rollout_tick(r, now);
		promotions += act == ROLLOUT_ACT_PROMOTE;
	}
	assert_int_equal(rollout_state(r), ROLLOUT_COMPLETE);
	assert_int_equal(promotions, 5);
	assert_int_equal(rollout_available_at(r), T0 + 6 * 600);
	/* every agent got it */
	run(r, now, now + 61);
	for (uint32_t i = 0; i < N_AGENTS; i++)
		assert_int_equal(fleet[i].a.active, V);
	assert_int_equal(rollout_tick(r, now + 100), -1);
	rollout_free(r);
}

static void test_pause_resume(void **state)
{
	struct rollout *r = start();

	assert_int_equal(rollout_resume(r, T0, NULL), -EINVAL);
	assert_int_equal(run(r, T0, T0 + 300), -1);
	assert_int_equal(rollout_pause(r, T0 + 300, "looking"), 0);
	assert_int_equal(rollout_pause(r, T0 + 300, NULL), -EINVAL);
	assert_int_equal(rollout_state(r), ROLLOUT_PAUSED);
	/* paused time does not count as bake */
	assert_int_equal(run(r, T0 + 300, T0 + 1000), -1);
	assert_int_equal(rollout_resume(r, T0 + 1000, NULL), 0);
	assert_int_equal(run(r, T0 + 1000, T0 + 1299), -1);
	assert_int_equal(run(r, T0 + 1299, T0 + 1302), ROLLOUT_ACT_PROMOTE);
	/* a paused rollout still answers for its step, and a failing gate halts it */
	assert_int_equal(rollout_pause(r, T0 + 1302, NULL), 0);
	assert_int_equal(run(r, T0 + 1302, T0 + 1430), -1);
	assert_int_equal(fleet[RING0].a.active, V);
	fleet[RING0 + 0].reverts = 1;
	fleet[RING0 + 1].reverts = 1;
	fleet[RING0 + 0].a.active = P;
	fleet[RING0 + 1].a.active = P;
	quarantine(&fleet[RING0 + 0], V);
	quarantine(&fleet[RING0 + 1], V);
	assert_int_equal(run(r, T0 + 1430, T0 + 1600), ROLLOUT_ACT_HALT);
	assert_int_equal(rollout_resume(r, T0 + 1600, NULL), -EINVAL);
	assert_int_equal(rollout_promote(r, T0 + 1600, NULL), -EINVAL);
	rollout_free(r);
}

static void test_snapshot(void **state)
{
	struct rollout *r = start(), *s = NULL;
	size_t n = rollout_snapshot_size();
	uint8_t *blob = malloc(n), *bad = malloc(n);
	char err[256];

	assert_non_null(blob);
	assert_non_null(bad);
	assert_int_equal(run(r, T0, T0 + 900), ROLLOUT_ACT_PROMOTE);
	rollout_snapshot(r, blob);
	assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
	assert_int_equal(rollout_step(s), rollout_step(r));
	assert_int_equal(rollout_decision_count(s), rollout_decision_count(r));
	/* both go on the same way */
	struct agent copy[N_AGENTS];
	memcpy(copy, fleet, sizeof(fleet));
	int a1 = run(r, T0 + 900, T0 + 2000);
	struct agent after[N_AGENTS];
	memcpy(after, fleet, sizeof(fleet));
	memcpy(fleet, copy, sizeof(fleet));
	int a2 = run(s, T0 + 900, T0 + 2000);
	assert_int_equal(a1, a2);
	assert_int_equal(rollout_step(r), rollout_step(s));
	for (uint32_t i = 0; i < N_AGENTS; i++)
		assert_int_equal(after[i].a.active, fleet[i].a.active);
	rollout_free(s);
	s = NULL;

	/* what is not a state of this build is refused */
	assert_int_equal(rollout_restore(blob, n - 1, &s, err, sizeof(err)), -EINVAL);
	memcpy(bad, blob, n);
	bad[0] ^= 1;
	assert_int_equal(rollout_restore(bad, n, &s, err, sizeof(err)), -EINVAL);
	for (size_t off = 0; off < 4096 && off < n; off += 8) {
		memcpy(bad, blob, n);
		memset(bad + off, 0xff, 8);
		if (rollout_restore(bad, n, &s, err, sizeof(err)) == 0) {
			/* what it accepts still works */
			assert_int_equal(rollout_tick(s, T0 + 5000) >= -1, 1);
			rollout_free(s);
			s = NULL;
		}
	}
	assert_null(s);
	free(blob);
	free(bad);
	rollout_free(r);
}

/* Runs @r from @from to @to and returns the time of its first halt, or -1. */
static int64_t halted_at(struct rollout *r, int64_t from, int64_t to)
{
	for (int64_t now = from; now < to; now++) {
		for (uint32_t i = (uint32_t)(now % 60); i < N_AGENTS; i += 60)
			if (!fleet[i].silent)
				beat(r, i, now);
		if (rollout_tick(r, now) == ROLLOUT_ACT_HALT)
			return now;
	}
	return -1;
}

static void test_server_outage_is_no_silence(void **state)
{
	struct rollout *r = start(), *s = NULL;
	size_t n = rollout_snapshot_size();
	uint8_t *blob = malloc(n);
	struct agent copy[N_AGENTS];
	char err[256];
	const int64_t down = T0 + 900, up = T0 + 1500; /* ten minutes away, K = 2 intervals */

	assert_non_null(blob);
	assert_int_equal(run(r, T0, down), ROLLOUT_ACT_PROMOTE);
	rollout_snapshot(r, blob);
	memcpy(copy, fleet, sizeof(fleet));

	/* without being told, a restored controller takes the outage for every agent's silence
	 * (here both cohorts alike, so the comparison holds; a small fleet or one with few
	 * control agents would halt) */
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];
	assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
	halted_at(s, up, up + 300);
	rollout_evaluate(s, up + 300, ev);
	assert_true(ev[ROLLOUT_GATE_silence].bad >= RING0 + RING1);
	rollout_free(s);

	/* told, it counts silence from its return: the fleet heartbeating again is healthy */
	memcpy(fleet, copy, sizeof(fleet));
	assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
	rollout_resumed(s, up);
	assert_int_equal(halted_at(s, up, up + 600), -1);
	rollout_evaluate(s, up + 600, ev);
	assert_int_equal(ev[ROLLOUT_GATE_silence].bad, 0);
	rollout_free(s);

	/* and agents that stay silent once it is back are still caught: K intervals after their
	 * last heartbeat, not counting the outage (they beat in the minute before it) */
	memcpy(fleet, copy, sizeof(fleet));
	for (uint32_t i = 0; i < 5; i++)
		fleet[i].silent = true; /* ring 0: running the release */
	assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
	rollout_resumed(s, up);
	int64_t at = halted_at(s, up, up + 600);
	assert_true(at >= up + 120 - 60 && at <= up + 120 + 30);
	assert_int_equal(halt_gate(s), ROLLOUT_GATE_silence);
	assert_int_equal(last_decision(s, ROLLOUT_ACT_HALT)->gates[ROLLOUT_GATE_silence].bad, 5);
	rollout_free(s);
	free(blob);
	rollout_free(r);
	(void)state;
}

/* Restores @blob into a controller that rebuilds its silence counts from the fleet's tracks. */
static struct rollout *restore_recounted(const uint8_t *blob, size_t n, int64_t up)
{
	struct rollout *s = NULL;
	struct rollout_recount rc;
	char err[256];

	assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
	rollout_recount_begin(s, &rc);
	for (uint32_t i = 0; i < N_AGENTS; i++)
		rollout_recount(s, &rc, &fleet[i].t, up);
	rollout_recount_end(s, &rc, up);
	return s;
}

/*
 * The server stores the rollout only now and then, but each agent's track with every
 * heartbeat: heartbeats taken after the last snapshot and before the server stopped are in
 * the tracks and not in the snapshot. Once it is back, they must not be taken for silence.
 */
static void test_heartbeats_after_the_snapshot_are_no_silence(void **state)
{
	struct rollout *r = start(), *s = NULL;
	size_t n = rollout_snapshot_size();
	uint8_t *blob = malloc(n);
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];
	struct agent copy[N_AGENTS];
	char err[256];
	const int64_t stored = T0 + 900;
	/* stopped 1 to 200 s after the snapshot, away from no time to ten minutes */
	static const int64_t after[] = {1, 2, 7, 30, 50, 200};
	static const int64_t away[] = {0, 1, 2, 5, 61, 600};
	uint64_t plain_silent = 0;

	assert_non_null(blob);
	assert_int_equal(run(r, T0, stored), ROLLOUT_ACT_PROMOTE);
	rollout_snapshot(r, blob);
	memcpy(copy, fleet, sizeof(fleet));
	for (size_t a = 0; a < sizeof(after) / sizeof(after[0]); a++) {
		for (size_t w = 0; w < sizeof(away) / sizeof(away[0]); w++) {
			struct rollout *running = NULL;
			const int64_t up = stored + after[a] + away[w];
			/* the server that stored @blob runs on a little, then stops */
			memcpy(fleet, copy, sizeof(fleet));
			assert_int_equal(rollout_restore(blob, n, &running, err, sizeof(err)), 0);
			run(running, stored, stored + after[a]);
			rollout_free(running);
			struct agent tracks[N_AGENTS];
			memcpy(tracks, fleet, sizeof(fleet));

			s = restore_recounted(blob, n, up);
			assert_int_equal(halted_at(s, up, up + 600), -1);
			rollout_evaluate(s, up + 600, ev);
			assert_int_equal(ev[ROLLOUT_GATE_silence].bad, 0);
			rollout_free(s);

			/* what the snapshot alone would have made of it */
			memcpy(fleet, tracks, sizeof(fleet));
			assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
			rollout_resumed(s, up);
			halted_at(s, up, up + 600);
			rollout_evaluate(s, up + 600, ev);
			plain_silent += ev[ROLLOUT_GATE_silence].bad;
			rollout_free(s);
		}
	}
	/* the case is real: counted from the snapshot alone, some heartbeats became silence */
	assert_true(plain_silent > 0);

	/* agents that stop beating before the server stops are still caught, K intervals after
	 * their last heartbeat, not counting the outage */
	memcpy(fleet, copy, sizeof(fleet));
	for (uint32_t i = 0; i < 5; i++)
		fleet[i].silent = true; /* ring 0: running the release */
	assert_int_equal(rollout_restore(blob, n, &s, err, sizeof(err)), 0);
	run(s, stored, stored + 30);
	rollout_free(s);
	s = restore_recounted(blob, n, stored + 630);
	int64_t at = halted_at(s, stored + 630, stored + 1230);
	assert_true(at > stored + 630 && at <= stored + 630 + 120 + 30);
	assert_int_equal(halt_gate(s), ROLLOUT_GATE_silence);
	assert_int_equal(last_decision(s, ROLLOUT_ACT_HALT)->gates[ROLLOUT_GATE_silence].bad, 5);
	rollout_free(s);

	/* a track from another release, from before the rollout or from the future counts not */
	memcpy(fleet, copy, sizeof(fleet));
	fleet[50].t.version = V + 1;
	fleet[51].t.last_seen = T0 - 10;
	fleet[52].t.last_seen = stored + 10000;
	s = restore_recounted(blob, n, stored + 5);
	assert_int_equal(halted_at(s, stored + 5, stored + 605), -1);
	rollout_free(s);
	free(blob);
	rollout_free(r);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plan_default_valid),
	    cmocka_unit_test(test_server_outage_is_no_silence),
	    cmocka_unit_test(test_heartbeats_after_the_snapshot_are_no_silence),
	    cmocka_unit_test(test_plan_refused),
	    cmocka_unit_test(test_plan_text),
	    cmocka_unit_test(test_duration),
	    cmocka_unit_test(test_position_stable),
	    cmocka_unit_test(test_position_distribution),
	    cmocka_unit_test(test_follow_rings),
	    cmocka_unit_test(test_policies),
	    cmocka_unit_test(test_pull_and_quarantine),
	    cmocka_unit_test(test_gate_reverts),
	    cmocka_unit_test(test_gate_restarts),
	    cmocka_unit_test(test_gate_silence),
	    cmocka_unit_test(test_silence_comes_back),
	    cmocka_unit_test(test_gate_liveness),
	    cmocka_unit_test(test_gate_drops),
	    cmocka_unit_test(test_gate_alerts),
	    cmocka_unit_test(test_gate_cpu),
	    cmocka_unit_test(test_gate_off),
	    cmocka_unit_test(test_promotion_needs_reports),
	    cmocka_unit_test(test_whole_plan),
	    cmocka_unit_test(test_pause_resume),
	    cmocka_unit_test(test_snapshot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
