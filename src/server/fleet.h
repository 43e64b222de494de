/*
 * The server's side of rollouts: it feeds heartbeats to the rollout controller (lib/rollout.h),
 * ticks it, answers each agent with the controller's per-agent decision, and persists every
 * rollout (the controller's snapshot, approvals) and every decision in the store, so a
 * restarted server resumes where it was. Thread-safe.
 */
#ifndef VIGIL_SERVER_FLEET_H
#define VIGIL_SERVER_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "proto.h"
#include "store.h"

/* The ring of a group that has no policy. */
#define FLEET_DEFAULT_RING 2u
/* Seconds between two counts of the agents in each ring. */
#define FLEET_POPULATION_PERIOD 10

struct fleet;

/*
 * The two lanes of rollouts: content bundles and sensor builds. Each has its own rollouts (one
 * rolling at a time per lane), its own previous good version and its own per-agent track; both
 * use the same controller, plans, gates and group policy (a pin names content only).
 */
enum fleet_lane { FLEET_CONTENT = 0, FLEET_SENSOR = 1 };
#define FLEET_LANES 2

/* "content" or "sensor". */
const char *fleet_lane_name(enum fleet_lane lane);

/* The content or sensor build an agent is told to run. */
struct fleet_target {
	bool has; /* false: no instruction (no release known for it) */
	uint64_t version;
	bool known; /* the version is a release of this server (hash and size set) */
	char hash[STORE_HASH_BYTES];
	int64_t size;
	bool audit_mode;    /* response actions stay in audit mode while the release bakes */
	int64_t rollout_id; /* the rollout that decided, 0 none */
	const char *why;    /* the controller's reason ("step", "pulled", ...) */
	uint64_t pulled;    /* the release version that was halted and pulled, 0 none */
};

enum fleet_action {
	FLEET_PAUSE,
	FLEET_RESUME,
	FLEET_HALT,
	FLEET_ROLLBACK,
	FLEET_APPROVE,
	FLEET_PROMOTE
};

/*
 * Loads releases, policies and rollouts from @st; agents heartbeat every @heartbeat_s
 * seconds. Returns 0 or -errno with a reason in @err.
 */
int fleet_open(struct store *st, unsigned heartbeat_s, int64_t now, struct fleet **out, char *err,
	       size_t errlen);
void fleet_free(struct fleet *f);

/*
 * Feeds the heartbeat @h of agent @a (as stored before this heartbeat: group, last seen,
 * previous counters, the controllers' tracks) to the controller of each lane and computes its
 * targets, @out[FLEET_CONTENT] and @out[FLEET_SENSOR]. Writes the agent's new tracks into
 * @track (STORE_TRACK_BYTES) and their length into *@track_len. Returns 0.
 */
int fleet_heartbeat(struct fleet *f, const struct store_agent *a, const struct store_health *h,
		    int64_t now, struct fleet_target out[FLEET_LANES], uint8_t *track,
		    size_t *track_len);

/*
 * What agent @a (as stored) should run at @now in each lane, as its next heartbeat would be
 * answered, without counting anything. Returns 0.
 */
int fleet_target_of(struct fleet *f, const struct store_agent *a, int64_t now,
		    struct fleet_target out[FLEET_LANES]);

/* Appends @t as the heartbeat answer's "content" or "sensor" (null when it has none). 0 or
 * -errno. */
int fleet_target_json(struct buf *b, const struct fleet_target *t);

/* Ticks the controller at @now (gates, promotions, halts) and persists what changed. */
void fleet_tick(struct fleet *f, int64_t now);

/* A release or a group policy was added or changed in the store. */
void fleet_release_added(struct fleet *f, const struct store_release *r);
void fleet_group_changed(struct fleet *f, const struct store_group *g);

/*
 * Starts a rollout of the release @req->release with @req's plan (the default plan when it
 * has none). Returns 0 and the rollout id in *@id, or with a reason in @err: -ENOENT unknown
 * release, -EINVAL a malformed plan, -EPERM a plan reaching the whole fleet in its first step
 * without force, -EBUSY another rollout of its lane still rolling or paused, -ESTALE the release
 * was pulled before (force to try again).
 */
int fleet_start(struct fleet *f, const struct proto_rollout_start *req, const char *who,
		int64_t now, int64_t *id, char *err, size_t errlen);

/* An operator's action on rollout @id (@group for approve). 0, or -ENOENT, or -EINVAL (not
 * allowed in its state) with a reason in @err. */
int fleet_act(struct fleet *f, int64_t id, enum fleet_action act, const char *group,
	      const char *who, int64_t now, char *err, size_t errlen);

/* Halts every rolling or paused rollout; their number in *@halted. */
int fleet_emergency_stop(struct fleet *f, const char *who, int64_t now, size_t *halted);

/* Appends rollout @id (or every rollout held, as an array, when @id is 0) as JSON. 0,
 * -ENOENT or a buf error. */
int fleet_rollout_json(struct fleet *f, int64_t id, int64_t now, struct buf *out);

/* Appends the default plan as a JSON array of steps. */
int fleet_default_plan_json(struct buf *out);

#endif
