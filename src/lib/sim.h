/*
 * The fleet simulator behind `vigil sim`: N hosts in virtual time, each behaving as the real
 * agent does (heartbeats with jitter, offline spells, crash loops reverted by the trial
 * counter, quarantined versions never retried), driving the real rollout controller
 * (rollout.h) with one release. Pure: no I/O, no clock; scenarios are parsed from text.
 * Scenario format and what each number means: docs/ROLLOUT.md.
 */
#ifndef VIGIL_SIM_H
#define VIGIL_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "rollout.h"

#define SIM_MAX_SCENARIO_BYTES (64u * 1024u)
#define SIM_MAX_LINE_BYTES     512u
#define SIM_MAX_GROUPS	       16u
#define SIM_MAX_HOSTS	       10000000ull
/* Virtual seconds a run may last after publication, and an offline spell at most. */
#define SIM_MAX_DURATION_S (7u * 86400u)
#define SIM_MAX_OFFLINE_S  (24u * 3600u)
#define SIM_NAME_BYTES	   64u

/* The two versions of the simulation: every host runs SIM_PREVIOUS, SIM_RELEASE is rolled out. */
#define SIM_PREVIOUS 1u
#define SIM_RELEASE  2u

/* What is wrong with the release, on the hosts it affects. */
#define SIM_EFFECTS(X) X(none) X(crash) X(hang) X(alerts) X(liveness) X(cpu) X(drops)

enum sim_effect {
/* clang-format off */
#define X(name) SIM_EFFECT_##name,
	SIM_EFFECTS(X)
#undef X
	SIM_EFFECT_COUNT
	/* clang-format on */
};

struct sim_group {
	char name[32];
	double share; /* of the hosts of the last ring */
	struct rollout_policy policy;
	int64_t approve_after_s; /* approval given this long after publication; -1 never */
};

struct sim_scenario {
	char name[SIM_NAME_BYTES];
	char description[200];
	/* the release */
	enum sim_effect effect;
	double factor;	 /* alerts, cpu, drops: multiplier on the affected hosts */
	double affected; /* share of hosts hit: one kernel family of that size */
	/* the fleet: shares of rings 0 .. n-2, the last ring holds the rest */
	uint32_t n_rings;
	double ring_share[ROLLOUT_MAX_RINGS];
	uint32_t ring_min[ROLLOUT_MAX_RINGS]; /* hosts at least, fleet size allowing */
	uint32_t n_groups;
	struct sim_group groups[SIM_MAX_GROUPS];
	/* the plan (n_rings and heartbeat_s follow the fleet) */
	struct rollout_plan plan;
	/* time */
	int64_t epoch;	     /* UTC second of virtual time 0 */
	uint32_t publish_s;  /* fleet running before the release is published */
	uint32_t duration_s; /* run after publication; 0: nominal plan time + 90 min */
	double jitter;	     /* heartbeat at its interval plus up to this share of it */
	/* the agent */
	uint32_t trial_starts;			 /* starts on trial before a crash loop reverts */
	uint32_t restart_s;			 /* one crash and restart */
	uint32_t activate_min_s, activate_max_s; /* download, verify, compile, test-load, swap */
	uint32_t revert_s;			 /* back to last-known-good when told to */
	uint32_t liveness_s;			 /* detection liveness probe interval */
	/* baseline noise */
	double crash_per_hour;	 /* unclean restarts per host-hour */
	double offline_per_hour; /* offline spells per host-hour */
	uint32_t offline_mean_s, offline_max_s;
	double alerts_per_hour; /* mean over hosts; hosts differ (gamma, shape 2) */
	double cpu_pct;		/* mean CPU; hosts differ (log-normal) */
	double cpu_noise;	/* relative noise of one CPU reading */
	double drops_per_hour;	/* drop bursts per host-hour */
	double liveness_fail_per_hour;
	/* hosts away when the release is published */
	double away_share;
	uint32_t away_return_min_s, away_return_max_s; /* after publication */
};

/* The defaults every scenario starts from (docs/ROLLOUT.md lists them). */
void sim_scenario_default(struct sim_scenario *sc);

/*
 * Parses a scenario (the defaults, then one "key value..." per line, '#' comments) of at most
 * SIM_MAX_SCENARIO_BYTES. @file names it in messages. Returns 0, or -EINVAL with one line
 * "FILE:LINE: key: reason" in @err; *@sc is then unspecified.
 */
int sim_scenario_parse(const char *text, size_t len, const char *file, struct sim_scenario *sc,
		       char *err, size_t errlen);

const char *sim_effect_name(enum sim_effect e);

struct sim_options {
	uint64_t hosts;
	uint64_t seed;
	bool all_at_once;  /* 2024 behaviour: one forced step, no gates, no local revert,
			      no customer policy */
	uint32_t sample_s; /* series resolution; 0: none kept */
};

struct sim_group_result {
	uint64_t hosts;
	uint64_t on_release; /* at the end */
};

struct sim_result {
	uint64_t hosts;
	uint64_t seed;
	bool all_at_once;
	char scenario[SIM_NAME_BYTES];
	uint64_t nominal_s;
	bool halted;
	int64_t time_to_halt_s; /* -1: not halted */
	int halt_gate;		/* enum rollout_gate; -1 */
	uint32_t halt_step;
	bool completed;
	int64_t time_to_complete_s; /* -1 */
	uint64_t exposed_max;	    /* hosts running the release at once, at most */
	uint64_t exposed_total;	    /* hosts that ever activated it */
	uint64_t hosts_crashed;
	uint64_t recovered_automatically;
	uint64_t manual_repair;
	int64_t recovery_s; /* -1: not recovered by the end */
	uint64_t final_versions[SIM_RELEASE + 1];
	int64_t first_observable_s; /* first crash a controller could see; -1 */
	uint32_t n_rings;
	uint64_t ring_hosts[ROLLOUT_MAX_RINGS];
	uint64_t ring_exposed[ROLLOUT_MAX_RINGS];
	uint64_t away;
	uint64_t away_back_after_halt;
	uint64_t away_back_after_halt_activated;
	uint64_t policy_violations;
	uint64_t follow_online; /* hosts following the rings, online at the end */
	uint64_t follow_on_release;
	uint64_t heartbeats;
	uint32_t n_groups;
	struct sim_group_result groups[SIM_MAX_GROUPS + 1]; /* last: hosts in no group */
	char group_names[SIM_MAX_GROUPS][32];
	/* exposed and crashed hosts every sample_s from publication */
	uint32_t sample_s;
	size_t n_samples;
	uint32_t *exposed_series;
	uint32_t *crashed_series;
	struct buf decisions_text; /* the controller's decisions, one line each */
	struct buf decisions_json; /* [{"t":..,"action":..,...},...] */
};

/*
 * Runs @sc with @opt into @res (release with sim_result_free()). Deterministic: the same
 * scenario, hosts and seed give the same result. Returns 0, or -errno with a reason in @err.
 */
int sim_run(const struct sim_scenario *sc, const struct sim_options *opt, struct sim_result *res,
	    char *err, size_t errlen);

void sim_result_free(struct sim_result *res);

/* Appends @res as one JSON object (no newline). Returns 0 or -errno. */
int sim_result_json(const struct sim_result *res, struct buf *out);

/*
 * Appends an SVG picture of exposed and crashed hosts over time: @vigil's run and, beside it
 * when not NULL, @baseline's (both need a series). Returns 0 or -errno.
 */
int sim_plot_svg(const struct sim_result *vigil, const struct sim_result *baseline,
		 struct buf *out);

#endif
