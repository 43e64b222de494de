/*
 * The rule engine: evaluates a compiled ruleset against events. Pure: no I/O and no clock of
 * its own (the caller passes the time). One engine per thread; many engines may share one
 * ruleset. The hot path allocates nothing.
 */
#ifndef VIGIL_ENGINE_H
#define VIGIL_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"
#include "rules.h"

struct engine;

struct engine_options {
	/* State entries (threshold counters, sequence progress) kept at most; 0 means
	 * RULES_MAX_STATE_ENTRIES, which is also the largest value accepted. */
	uint32_t state_entries;
};

struct engine_stats {
	uint64_t events;      /* engine_eval calls */
	uint64_t evaluations; /* programs evaluated */
	uint64_t scans;	      /* pattern database scans */
	uint64_t alerts;
	uint64_t state_entries; /* live entries now */
	uint64_t state_capacity;
	uint64_t state_evictions; /* unexpired entries pushed out by the cap */
	uint64_t state_expired;	  /* expired entries reused */
	uint64_t errors;	  /* scans the pattern engine failed (the event still ran) */
};

/*
 * Called once per alert with the rule and the triggering event (for a sequence, the event
 * completing its last step). Both stay owned by the engine and the caller of engine_eval;
 * the callback must not call engine_eval on the same engine.
 */
typedef void (*engine_alert_fn)(void *ctx, const struct rule_info *rule, const struct event *ev);

/*
 * Creates an engine for @rs (which must outlive it), with its own pattern scratch space and
 * state table. @opt may be NULL. Returns 0 and stores it in *@out, or -errno.
 */
int engine_new(const struct ruleset *rs, const struct engine_options *opt, struct engine **out);

/* Frees @e. Accepts NULL. */
void engine_free(struct engine *e);

/*
 * Evaluates @ev at time @now_ns (nanoseconds since the epoch; used only by threshold and
 * sequence windows) and calls @fn for each alert, in rule order. Returns the number of
 * alerts raised, or -EINVAL for bad arguments.
 */
int engine_eval(struct engine *e, const struct event *ev, uint64_t now_ns, engine_alert_fn fn,
		void *ctx);

/* Forgets all threshold and sequence state (counters in the stats are kept). */
void engine_reset_state(struct engine *e);

/*
 * Takes over into @to, which has evaluated nothing yet, the threshold and sequence state of
 * @from for every rule @to's ruleset holds with the same id and the same definition (kind,
 * count, window, keys, conditions and values); the state of other rules is left behind, and
 * @from is unchanged. For a content swap. Returns the number of state entries carried, or
 * -EINVAL (@to has evaluated events) or -ENOMEM (nothing carried).
 */
int engine_carry_state(struct engine *to, const struct engine *from);

void engine_get_stats(const struct engine *e, struct engine_stats *out);

/* Bytes the engine holds (scratch, tables, state), not counting the ruleset. */
size_t engine_memory(const struct engine *e);

/*
 * Makes @out the alert for @rule raised by @ev: a copy of @ev with event.kind "alert",
 * rule.id, rule.name, rule.level and threat.technique.id. Returns 0 or -errno.
 */
int alert_fill_event(const struct rule_info *rule, const struct event *ev, struct event *out);

/*
 * Appends the alert as one JSON object (no newline) to @out, using @scratch (an event the
 * caller owns and reuses) to build it. Returns 0 or -errno / a buf error.
 */
int alert_write_json(const struct rule_info *rule, const struct event *ev, struct event *scratch,
		     struct buf *out);

/*
 * Parses an RFC 3339 time ("2026-11-25T20:34:08.123456789Z", fraction optional, "Z" or
 * "+hh:mm") into nanoseconds since the epoch. Returns 0 or -EINVAL.
 */
int timestamp_parse(const char *s, size_t len, uint64_t *ns);

struct rules_test_result {
	unsigned rules;	   /* rules with at least one test */
	unsigned untested; /* rules without tests */
	unsigned passed;   /* test items */
	unsigned failed;
};

/*
 * Runs every rule's tests against the whole ruleset in a fresh engine (state reset before each
 * test item): a match item must raise that rule's alert by its last event, a nomatch item must
 * not. Test events without @timestamp are one second apart. Appends one line
 * "file:line: rule ID: reason" per failure to @report (may be NULL). Returns 0 when all pass,
 * -EINVAL when some fail, or another -errno.
 */
int ruleset_run_tests(const struct ruleset *rs, struct buf *report, struct rules_test_result *res);

#endif
