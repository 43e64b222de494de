/*
 * libFuzzer target for the simulator's scenario files and the rollout controller's text and
 * state parsers. The input's first byte picks:
 *   'P'  the rest is a plan ("RING:PERCENT:BAKE ..."): what parses prints back to itself;
 *   'O'  the rest is a group policy;
 *   'R'  the rest is laid over a real controller snapshot, which is then restored and used;
 *   'S'  the rest is a scenario, and one that parses is run on a small fleet;
 *   else the whole input is a scenario.
 * An error is one line; what parses must hold its invariants.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rollout.h"
#include "lib/sim.h"

static void one_line(const char *err, size_t len)
{
	if (!memchr(err, '\0', len) || strchr(err, '\n'))
		abort();
}

/* A NUL-terminated copy of @data (the parsers of plans and policies take C strings). */
static char *text_of(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

static void fuzz_plan(const uint8_t *data, size_t size)
{
	struct rollout_plan p, q;
	struct rollout_gates g;
	struct buf b;
	char err[256], *s = text_of(data, size);

	rollout_plan_default(&p);
	rollout_gates_default(&g);
	buf_init(&b, 1 << 16);
	err[0] = '\0';
	if (rollout_plan_parse(s, &g, &p, err, sizeof(err)) == 0) {
		q = p;
		if (rollout_plan_text(&p, &b) ||
		    rollout_plan_parse(b.data, &g, &q, err, sizeof(err)))
			abort();
		if (q.n_steps != p.n_steps)
			abort();
		for (uint32_t i = 0; i < p.n_steps; i++)
			if (q.steps[i].ring != p.steps[i].ring || q.steps[i].bp != p.steps[i].bp ||
			    q.steps[i].bake_s != p.steps[i].bake_s)
				abort();
		if (rollout_plan_validate(&p, false, err, sizeof(err)))
			one_line(err, sizeof(err));
	} else {
		one_line(err, sizeof(err));
	}
	buf_release(&b);
	free(s);
}

static void fuzz_policy(const uint8_t *data, size_t size)
{
	struct rollout_policy p;
	char err[256], *s = text_of(data, size);

	err[0] = '\0';
	if (rollout_policy_parse(s, &p, err, sizeof(err)) == 0) {
		if (p.n_windows > ROLLOUT_MAX_WINDOWS)
			abort();
		for (uint32_t i = 0; i < p.n_windows; i++)
			if (p.windows[i].start_s >= 86400 || p.windows[i].len_s == 0 ||
			    p.windows[i].len_s >= 86400)
				abort();
		(void)rollout_policy_in_window(&p, 1721361540);
	} else {
		one_line(err, sizeof(err));
	}
	free(s);
}

static void fuzz_restore(const uint8_t *data, size_t size)
{
	static uint8_t *base;
	static size_t n;
	struct rollout *r = NULL;
	char err[256];

	if (!base) {
		/* a snapshot of a rollout that has seen some heartbeats */
		struct rollout_plan p;
		struct rollout_policy pol;
		struct rollout_track t;
		rollout_plan_default(&p);
		rollout_policy_default(&pol);
		if (rollout_new(&p, 2, 1, false, 1000, &r, err, sizeof(err)))
			abort();
		for (uint64_t i = 0; i < 200; i++) {
			struct rollout_agent a = {.key = i, .ring = (uint32_t)(i % 3), .active = 1};
			struct rollout_report rep = {
			    .interval_s = 60, .cpu_pct = 2, .alerts = i % 2};
			struct rollout_answer ans;
			rollout_track_init(&t);
			rollout_heartbeat(r, &t, &a, &pol, &rep, 1000 + (int64_t)i, &ans);
			rollout_tick(r, 1000 + (int64_t)i);
		}
		n = rollout_snapshot_size();
		base = malloc(n);
		if (!base)
			abort();
		rollout_snapshot(r, base);
		rollout_free(r);
		r = NULL;
	}
	uint8_t *blob = malloc(n);
	if (!blob)
		abort();
	memcpy(blob, base, n);
	/* the first 4 bytes place the rest in the snapshot */
	if (size >= 4) {
		size_t off = ((size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16) % n;
		size_t len = size - 4 < n - off ? size - 4 : n - off;
		memcpy(blob + off, data + 4, len);
	}
	err[0] = '\0';
	if (rollout_restore(blob, n, &r, err, sizeof(err)) == 0) {
		struct rollout_policy pol;
		struct rollout_track t;
		struct rollout_answer ans;
		struct rollout_agent a = {.key = 7, .ring = 1, .active = 1};
		struct rollout_report rep = {.interval_s = 60, .cpu_pct = 3};
		struct buf b;
		rollout_policy_default(&pol);
		/* tracks as a store might hand them back at a start: any bytes, recounted */
		struct rollout_recount rc;
		rollout_recount_begin(r, &rc);
		for (size_t off = 4; off + sizeof(t) <= size && off < 4 + 16 * sizeof(t);
		     off += sizeof(t)) {
			memcpy(&t, data + off, sizeof(t));
			if (data[off] & 1)
				t.version = rollout_version(r);
			rollout_recount(r, &rc, &t, 4990);
		}
		rollout_recount_end(r, &rc, 4990);
		rollout_track_init(&t);
		rollout_heartbeat(r, &t, &a, &pol, &rep, 5000, &ans);
		/* a track as a store might hand it back: any bytes */
		if (size >= 4 + sizeof(t)) {
			memcpy(&t, data + 4, sizeof(t));
			t.version = rollout_version(r);
			rollout_heartbeat(r, &t, &a, &pol, &rep, 5002, &ans);
			rollout_heartbeat(r, &t, &a, &pol, &rep, 5062, &ans);
		}
		rollout_tick(r, 5001);
		buf_init(&b, 1 << 20);
		for (size_t i = 0; i < rollout_decision_count(r); i++) {
			if (rollout_decision_text(r, rollout_decision(r, i), &b) ||
			    rollout_decision_json(rollout_decision(r, i), &b))
				abort();
		}
		buf_release(&b);
		rollout_free(r);
	} else {
		one_line(err, sizeof(err));
	}
	free(blob);
}

static void fuzz_scenario(const uint8_t *data, size_t size, bool run)
{
	static struct sim_scenario sc;
	char err[512];

	err[0] = '\0';
	if (sim_scenario_parse((const char *)data, size, "fuzz.scn", &sc, err, sizeof(err))) {
		one_line(err, sizeof(err));
		if (strncmp(err, "fuzz.scn", 8) != 0)
			abort(); /* every message names the file */
		return;
	}
	if (rollout_plan_validate(&sc.plan, false, err, sizeof(err)))
		abort(); /* a scenario that parses has a plan the controller takes */
	/* a short run: a small fleet, at most about the default plan's length */
	if (!run || sc.publish_s + sc.duration_s > 30000)
		return;
	struct sim_options opt = {.hosts = 40, .seed = size, .sample_s = 600};
	struct sim_result res;
	struct buf b;
	if (sim_run(&sc, &opt, &res, err, sizeof(err)))
		abort();
	buf_init(&b, 1 << 20);
	if (sim_result_json(&res, &b) || sim_plot_svg(&res, &res, &b))
		abort();
	uint64_t total = 0;
	for (int v = 0; v <= (int)SIM_RELEASE; v++)
		total += res.final_versions[v];
	if (total != res.hosts || res.exposed_max > res.hosts || res.manual_repair > res.hosts ||
	    res.recovered_automatically > res.hosts_crashed)
		abort();
	buf_release(&b);
	sim_result_free(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == 'P')
		fuzz_plan(data + 1, size - 1);
	else if (size > 0 && data[0] == 'O')
		fuzz_policy(data + 1, size - 1);
	else if (size > 0 && data[0] == 'R')
		fuzz_restore(data + 1, size - 1);
	else if (size > 0 && data[0] == 'S')
		fuzz_scenario(data + 1, size - 1, true);
	else
		fuzz_scenario(data, size, false);
	return 0;
}
