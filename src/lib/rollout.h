/*
 * The rollout controller: a release (content bundle or sensor build) goes out over rings in
 * steps with bake times, health gates compare the agents that have it with those that do not
 * and halt it by themselves, and per-group policy decides when it may reach a group. Pure: no
 * I/O, no clock (every time is passed in, seconds since the epoch, UTC), no allocation after
 * rollout_new(). vigil-server and `vigil sim` run this same code. See docs/ROLLOUT.md.
 */
#ifndef VIGIL_ROLLOUT_H
#define VIGIL_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define ROLLOUT_MAX_RINGS	8u
#define ROLLOUT_MAX_STEPS	16u
#define ROLLOUT_MAX_WINDOWS	4u
#define ROLLOUT_MAX_DECISIONS	64u
#define ROLLOUT_BP		10000u /* basis points in a whole ring (100 %) */
#define ROLLOUT_MAX_BAKE_S	(30u * 86400u)
#define ROLLOUT_MAX_HEARTBEAT_S 86400u
#define ROLLOUT_MAX_SILENCE_K	16u
#define ROLLOUT_REASON_BYTES	160u
/* Bytes of a plan or policy text accepted by the parsers below. */
#define ROLLOUT_MAX_TEXT_BYTES 1024u

/* --- gates --- */

/* In the order they are checked; the first that fails names the halt. */
#define ROLLOUT_GATES(X) X(silence) X(reverts) X(restarts) X(liveness) X(alerts) X(drops) X(cpu)

enum rollout_gate {
/* clang-format off */
#define X(name) ROLLOUT_GATE_##name,
	ROLLOUT_GATES(X)
#undef X
	ROLLOUT_GATE_COUNT
	/* clang-format on */
};
#define ROLLOUT_GATES_ALL ((1u << ROLLOUT_GATE_COUNT) - 1u)

/* "silence", "reverts", ...; "?" for anything else. */
const char *rollout_gate_name(enum rollout_gate g);

/*
 * The thresholds of a step's gates. A count gate (silence, reverts, restarts, liveness, drops)
 * counts exposed agents that showed the problem since they were offered the release and fails
 * when there are at least @min_bad of them and that many would have a probability below
 * @alpha if the exposed agents had @tolerance times the control cohort's rate (per agent-hour,
 * never below @floor_per_hour). The alert gate does the same with alert counts against
 * @alert_ratio times the control rate; the CPU gate compares each agent's CPU with its own CPU
 * before the release, exposed against control, against @cpu_ratio.
 */
struct rollout_gates {
	uint32_t enabled;      /* bit (1u << enum rollout_gate) for each gate checked */
	uint32_t min_agents;   /* exposed agents reporting before a step may be promoted or a
				  rate gate may fail (capped at a quarter of the agents the
				  step reaches, when rollout_set_population() was called) */
	uint32_t min_bad;      /* agents with a problem before a count gate may fail */
	double tolerance;      /* exposed hazard allowed, as a multiple of control's */
	double alpha;	       /* probability of a false failure per gate, at most */
	double floor_per_hour; /* smallest control hazard assumed, per agent-hour */
	double alert_ratio;    /* exposed alert rate allowed, as a multiple of control's */
	double cpu_ratio;      /* exposed CPU allowed, as a multiple of control's (paired) */
	uint32_t silence_k;    /* silent: no heartbeat for more than K intervals since offered */
	double revert_floor_per_hour; /* the same floor for crash-loop reverts, far rarer by
					 chance than a restart */
};

/* --- plans --- */

/* A step: the rings below @ring whole, and @bp basis points of @ring (by rollout_position). */
struct rollout_step {
	uint32_t ring;
	uint32_t bp;
	uint32_t bake_s;
	struct rollout_gates gates;
};

struct rollout_plan {
	uint32_t n_rings;     /* rings of the fleet, 0 .. n_rings - 1; the last holds the rest */
	uint32_t heartbeat_s; /* the agents' heartbeat interval */
	uint32_t n_steps;
	struct rollout_step steps[ROLLOUT_MAX_STEPS];
};

/* The default gates (every gate on; see docs/ROLLOUT.md for the values). */
void rollout_gates_default(struct rollout_gates *g);

/*
 * The default plan: ring 0 (internal) 100 % for 15 min, ring 1 (early adopters) 100 % for
 * 30 min, ring 2 1 % -> 10 % -> 50 % -> 100 %, one hour each, default gates, heartbeat 60 s.
 */
void rollout_plan_default(struct rollout_plan *p);

/* Multiplies every bake time by @factor (> 0), rounding up to whole seconds. */
void rollout_plan_scale_bakes(struct rollout_plan *p, double factor);

/* Seconds from the start of the first step to the end of the last one's bake. */
uint64_t rollout_plan_nominal_s(const struct rollout_plan *p);

/*
 * Checks @p: 1 to ROLLOUT_MAX_STEPS steps, each reaching strictly more than the one before
 * (ring, then share, never less), the last one reaching every ring whole, sane gates. A plan
 * whose first step already reaches the whole fleet is refused (-EPERM) unless @force.
 * Returns 0, -EINVAL or -EPERM with a one-line reason in @err.
 */
int rollout_plan_validate(const struct rollout_plan *p, bool force, char *err, size_t errlen);

/*
 * Parses steps "RING:PERCENT:BAKE ..." (e.g. "0:100:15m 1:100:30m 2:1:1h 2:100:1h"; percent
 * may have decimals down to 0.01, bake as for rollout_duration_parse) into @p's steps, keeping
 * its rings, heartbeat and giving each step @gates. Does not validate the plan as a whole.
 * Returns 0 or -EINVAL with a reason in @err; @p is unchanged on error.
 */
int rollout_plan_parse(const char *text, const struct rollout_gates *gates, struct rollout_plan *p,
		       char *err, size_t errlen);

/* Appends the steps of @p as rollout_plan_parse() reads them. Returns 0 or -errno. */
int rollout_plan_text(const struct rollout_plan *p, struct buf *out);

/*
 * "90", "90s", "15m", "2h", "1d" (a whole number and a unit) to seconds, at most 366 days.
 * Returns 0 or -EINVAL; *@out is unchanged on error.
 */
int rollout_duration_parse(const char *s, uint64_t *out);

/* --- group policy --- */

/* A daily window, UTC: it opens @start_s seconds after midnight and lasts @len_s seconds. */
struct rollout_window {
	uint32_t start_s;
	uint32_t len_s;
};

/*
 * What a customer decided for a group. The default follows the rings. @pin names a version
 * the group stays on; @delay_s holds a release back until that long after general
 * availability (the end of its last step) instead of following the rings; @paused holds the
 * group where it is; with @approval_required a release reaches the group only once
 * @approved is at least its version; with windows a group changes version only inside one
 * (a pull does not wait for a window).
 */
struct rollout_policy {
	uint64_t pin; /* 0: none */
	bool paused;
	uint32_t delay_s;
	bool approval_required;
	uint64_t approved;
	uint32_t n_windows;
	struct rollout_window windows[ROLLOUT_MAX_WINDOWS];
};

void rollout_policy_default(struct rollout_policy *p);

/*
 * Parses "follow", or words among "pin=VERSION", "pause", "delay=DURATION",
 * "window=HH:MM-HH:MM" (UTC, may wrap midnight, up to ROLLOUT_MAX_WINDOWS), "approval"
 * into @p. Returns 0 or -EINVAL with a reason in @err; @p is unchanged on error.
 */
int rollout_policy_parse(const char *text, struct rollout_policy *p, char *err, size_t errlen);

/* True when @now falls inside one of @p's windows, or @p has none. */
bool rollout_policy_in_window(const struct rollout_policy *p, int64_t now);

/* --- agents --- */

/*
 * A stable 64-bit key for an agent id of any form: the first 8 bytes (little-endian) of its
 * BLAKE2b-128 hash. The server computes it once at enrollment and keeps it.
 */
uint64_t rollout_agent_key(const void *id, size_t len);

/*
 * The agent's place in a percentage of its ring for release @version: basis points in
 * [0, ROLLOUT_BP), a stable, well mixed function of both, so each release picks other canaries.
 * An agent is in a step's share of its ring when its position is below the step's bp.
 */
uint32_t rollout_position(uint64_t agent_key, uint64_t version);

/* The agent as the controller sees it at a heartbeat. */
struct rollout_agent {
	uint64_t key;
	uint32_t ring;		     /* rings past the plan's last are treated as the last */
	uint64_t active;	     /* the version it runs; 0: none */
	const uint64_t *quarantined; /* versions it quarantined (never offered to it again) */
	size_t n_quarantined;
};

/*
 * What an agent reports in a heartbeat about the time since its previous one. The server
 * derives these from the agent's cumulative counters and the previous heartbeat it stored.
 */
struct rollout_report {
	uint32_t interval_s;  /* seconds since its previous heartbeat; 0: first one */
	uint32_t restarts;    /* unclean restarts (a clean stop or a reboot is not one) */
	uint32_t reverts;     /* crash-loop reverts by its trial counter */
	bool liveness_failed; /* a detection liveness self-test failed */
	uint64_t drops;	      /* events dropped */
	uint64_t alerts;      /* alerts raised */
	double cpu_pct;	      /* mean CPU over the interval, percent of one CPU; < 0: unknown */
};

/*
 * The controller's memory of one agent, kept by the caller beside the agent (the server in its
 * store, the simulator in its host array) and handed to every rollout_heartbeat(). Initialise
 * with rollout_track_init(); the fields are the controller's.
 */
struct rollout_track {
	uint64_t version;   /* the release its counts belong to */
	int64_t last_seen;  /* its last heartbeat counted for that release */
	float cpu_base;	    /* its CPU before it ran the release; 0: not known yet */
	uint8_t first_ring; /* the ring (plus 1) the cached first step was found for; 0: none */
	uint8_t first_step; /* the first step of that release's plan that reaches it */
	uint8_t state;	    /* its cohort and the problems it was counted for */
	uint8_t entry_step; /* the step that offered it the release */
};

void rollout_track_init(struct rollout_track *t);

/* Folds @rep into @t's CPU baseline only: for heartbeats while no release is in progress. */
void rollout_track_observe(struct rollout_track *t, const struct rollout_report *rep);

/* --- a release's rollout --- */

enum rollout_state {
	ROLLOUT_ROLLING,  /* going through its steps */
	ROLLOUT_PAUSED,	  /* held at its step by an operator; gates still halt it */
	ROLLOUT_HALTED,	  /* stopped and pulled: agents return to the previous good version */
	ROLLOUT_COMPLETE, /* generally available: its last step baked */
};

const char *rollout_state_name(enum rollout_state s);

/* Why an agent is told to run what it is told to run. */
#define ROLLOUT_WHYS(X)                                                                            \
	X(step, "in a step of the plan")                                                           \
	X(not_yet, "the plan has not reached it yet")                                              \
	X(available, "generally available")                                                        \
	X(pulled, "the release was halted and pulled")                                             \
	X(pinned, "its group is pinned")                                                           \
	X(paused, "its group is paused")                                                           \
	X(delayed, "its group waits a delay after general availability")                           \
	X(window, "outside its group's maintenance windows")                                       \
	X(approval, "its group has not approved the release")                                      \
	X(quarantined, "it quarantined the release")

enum rollout_why {
/* clang-format off */
#define X(name, text) ROLLOUT_WHY_##name,
	ROLLOUT_WHYS(X)
#undef X
	ROLLOUT_WHY_COUNT
	/* clang-format on */
};

/* "step", "not_yet", ...; rollout_why_text() gives the phrase. */
const char *rollout_why_name(enum rollout_why w);
const char *rollout_why_text(enum rollout_why w);

struct rollout_answer {
	uint64_t version; /* the version the agent should run (0: none known) */
	bool baking;	  /* it runs a release still baking in its step: responses (kill)
			     stay in audit mode */
	enum rollout_why why;
};

enum rollout_action {
	ROLLOUT_ACT_START,
	ROLLOUT_ACT_PROMOTE,
	ROLLOUT_ACT_COMPLETE,
	ROLLOUT_ACT_HALT,
	ROLLOUT_ACT_PULL,
	ROLLOUT_ACT_PAUSE,
	ROLLOUT_ACT_RESUME,
};

const char *rollout_action_name(enum rollout_action a);

enum rollout_verdict { ROLLOUT_PASS, ROLLOUT_FAIL, ROLLOUT_OFF };

/* The numbers of one gate at one moment. Rates are per agent-hour, except CPU (a ratio). */
struct rollout_evidence {
	enum rollout_verdict verdict;
	uint64_t agents; /* exposed agents it looked at */
	uint64_t bad;	 /* exposed agents (alerts: alerts) with the problem */
	double hours;	 /* exposed agent-hours behind the rate */
	double exposed_rate;
	double control_rate;
	double limit;	/* the exposed rate allowed (before the significance test) */
	double log10_p; /* log10 of the bound on the probability of this by chance */
};

/* One decision: what was done, when, at which step, and the numbers behind it. */
struct rollout_decision {
	int64_t at;
	enum rollout_action action;
	uint32_t step;		/* the step it was at */
	uint32_t to_step;	/* promote: the step it moved to */
	bool manual;		/* an operator's action */
	int failed_gate;	/* halt: the gate that failed (enum rollout_gate); -1 none */
	uint64_t offered;	/* agents offered the release so far */
	uint64_t running;	/* agents that reported running it */
	uint64_t step_reported; /* promote: agents of the finished step that reported */
	uint64_t step_needed;	/* promote: how many had to */
	struct rollout_evidence gates[ROLLOUT_GATE_COUNT];
	char reason[ROLLOUT_REASON_BYTES];
};

struct rollout;

/*
 * Starts the rollout of release @version (agents pulled back go to @previous, 0: none) with
 * @plan at @now. The plan is validated (see rollout_plan_validate(); @force lets a plan reach
 * the whole fleet in one step). Returns 0 and *@out (free with rollout_free()), or -errno with
 * a reason in @err.
 */
int rollout_new(const struct rollout_plan *plan, uint64_t version, uint64_t previous, bool force,
		int64_t now, struct rollout **out, char *err, size_t errlen);

void rollout_free(struct rollout *r);

/*
 * The number of agents enrolled in @ring (the server counts them; the simulator knows them).
 * With it a step's sample size is capped at a quarter (rounded down) of the agents it is
 * expected to newly reach, so a small ring can still be promoted (one expected to reach fewer
 * than four agents waits for none); without it min_agents applies as is.
 */
void rollout_set_population(struct rollout *r, uint32_t ring, uint64_t agents);

/*
 * One heartbeat of agent @a, under its group's @policy, at @now: counts @rep into the cohorts
 * (agents offered the release against agents not offered it), updates @t, and answers in
 * *@out what the agent should run (as rollout_desired()); when that is the release for an
 * agent not running it, the agent is counted as offered from @now. O(1).
 */
void rollout_heartbeat(struct rollout *r, struct rollout_track *t, const struct rollout_agent *a,
		       const struct rollout_policy *policy, const struct rollout_report *rep,
		       int64_t now, struct rollout_answer *out);

/*
 * What agent @a should run under @policy at @now; a pure function of its arguments and of
 * @r's state (no cohort is touched).
 */
void rollout_desired(const struct rollout *r, const struct rollout_agent *a,
		     const struct rollout_policy *policy, int64_t now, struct rollout_answer *out);

/* True while @a runs the release in the step that brought it there and that step still bakes
 * (or the release is halted): its kill responses stay in audit mode. */
bool rollout_baking(const struct rollout *r, const struct rollout_agent *a, int64_t now);

/*
 * Advances @r to @now: checks the gates of the current step and halts (and pulls) the release
 * when one fails; promotes to the next step (or to general availability) when the step has
 * baked, enough of its agents reported and every gate passes. Records each decision. Call it
 * every few seconds; calling it more often changes nothing. Returns the action taken, or -1.
 */
int rollout_tick(struct rollout *r, int64_t now);

/* Operator actions, each recorded as a manual decision with @reason (may be NULL). pause and
 * resume return -EINVAL unless rolling / paused; halt (also rollback and emergency stop) pulls
 * the release unless it is already halted (-EINVAL); promote skips the rest of the current
 * bake. */
int rollout_pause(struct rollout *r, int64_t now, const char *reason);
int rollout_resume(struct rollout *r, int64_t now, const char *reason);
int rollout_halt(struct rollout *r, int64_t now, const char *reason);
int rollout_promote(struct rollout *r, int64_t now, const char *reason);

/* --- state, for the server's store and the CLI --- */

enum rollout_state rollout_state(const struct rollout *r);
uint64_t rollout_version(const struct rollout *r);
uint64_t rollout_previous(const struct rollout *r);
const struct rollout_plan *rollout_get_plan(const struct rollout *r);
uint32_t rollout_step(const struct rollout *r);
int64_t rollout_started_at(const struct rollout *r);
int64_t rollout_step_started_at(const struct rollout *r);
int64_t rollout_available_at(const struct rollout *r); /* general availability; -1 not yet */
int64_t rollout_halted_at(const struct rollout *r);    /* -1 not halted */

/* The numbers every gate of the current step sees at @now (the gate's verdict included). */
void rollout_evaluate(struct rollout *r, int64_t now,
		      struct rollout_evidence ev[ROLLOUT_GATE_COUNT]);

/* Decisions, oldest first; the log keeps the last ROLLOUT_MAX_DECISIONS. NULL past the end. */
size_t rollout_decision_count(const struct rollout *r);
const struct rollout_decision *rollout_decision(const struct rollout *r, size_t i);

/* Appends one decision as a line of text (no newline), or as one JSON object. 0 or -errno. */
int rollout_decision_text(const struct rollout *r, const struct rollout_decision *d,
			  struct buf *out);
int rollout_decision_json(const struct rollout_decision *d, struct buf *out);

/*
 * The whole controller state as bytes, for the server's store (same build only: not a wire
 * format), and back. rollout_restore() checks the size, the format tag and every field's
 * range before use; returns 0 and *@out, or -EINVAL with a reason in @err.
 */
size_t rollout_snapshot_size(void);

/*
 * A restored controller learns the server was away from the time its snapshot last saw until
 * @now: agents are not counted silent for that time (their last heartbeats count as if the
 * outage had not happened), so a server restart does not halt a rollout through the silence
 * gate. Only agents that stay silent once the server is back are. Call once after
 * rollout_restore(), before any heartbeat or tick.
 */
void rollout_resumed(struct rollout *r, int64_t now);

/*
 * The server stores each agent's track with every heartbeat but the controller only now and
 * then, so heartbeats taken after its last snapshot are in the tracks and not in the
 * snapshot: counted where the snapshot had them, they would be taken for silence once the
 * server is back. Instead of rollout_resumed(), a restored controller can rebuild when each
 * agent was last heard from out of the stored tracks: rollout_recount_begin(), then
 * rollout_recount() for every stored track (any others are ignored), then
 * rollout_recount_end(), which counts the outage from the latest heartbeat of all.
 */
struct rollout_recount {
	int64_t cursor0; /* the snapshot's oldest open bucket */
	int64_t latest;	 /* the latest heartbeat seen, snapshot or tracks; -1 */
};
void rollout_recount_begin(struct rollout *r, struct rollout_recount *rc);
void rollout_recount(struct rollout *r, struct rollout_recount *rc, const struct rollout_track *t,
		     int64_t now);
void rollout_recount_end(struct rollout *r, const struct rollout_recount *rc, int64_t now);
void rollout_snapshot(const struct rollout *r, void *dst);
int rollout_restore(const void *src, size_t len, struct rollout **out, char *err, size_t errlen);

#endif
