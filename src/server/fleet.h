/*
 * The server's side of rollouts: the active rollouts, their plans and gates, the group
 * policies, and the per-agent answer to "which content should I run". State is persisted
 * in the store on every change, so a restarted server resumes where it was. Thread-safe.
 */
#ifndef VIGIL_SERVER_FLEET_H
#define VIGIL_SERVER_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "proto.h"
#include "store.h"

/* Bake times of the default plan: ring 0, ring 1, then each ring-2 step. */
#define FLEET_DEFAULT_BAKE_RING0 (15 * 60)
#define FLEET_DEFAULT_BAKE_RING1 (30 * 60)
#define FLEET_DEFAULT_BAKE_RING2 (60 * 60)
/* The ring of a group that has no policy. */
#define FLEET_DEFAULT_RING 2u

struct fleet;

/* The content an agent is told to run. */
struct fleet_target {
	bool has; /* false: no instruction, keep what it runs */
	uint64_t version;
	char hash[STORE_HASH_BYTES];
	int64_t size;
	bool audit_mode;    /* response actions stay in audit mode while the release bakes */
	int64_t rollout_id; /* 0 when not from a rollout */
};

enum fleet_action { FLEET_PAUSE, FLEET_RESUME, FLEET_HALT, FLEET_ROLLBACK, FLEET_APPROVE };

/* Loads rollouts, releases and policies from @st. Returns 0 or -errno with a reason. */
int fleet_open(struct store *st, int64_t now, struct fleet **out, char *err, size_t errlen);
void fleet_free(struct fleet *f);

/* Records the heartbeat of agent @id in @group and computes its target. Returns 0. */
int fleet_heartbeat(struct fleet *f, const char *id, const char *group,
		    const struct store_health *h, int64_t now, struct fleet_target *out);

/* Evaluates gates and bake times at @now: promotes, halts and pulls, storing decisions. */
void fleet_tick(struct fleet *f, int64_t now);

/* A release or a group policy was added or changed in the store. */
void fleet_release_added(struct fleet *f, const struct store_release *r);
void fleet_group_changed(struct fleet *f, const struct store_group *g);

/*
 * Starts a rollout of the release @hash with @req's plan (the default plan when it has none).
 * Refuses (-EINVAL, reason in @err) a plan that reaches the whole fleet in its first step
 * unless forced, (-EBUSY) while another rollout of content is active or paused, (-ENOENT) an
 * unknown release. Returns 0 and the rollout id in *@id.
 */
int fleet_start(struct fleet *f, const struct proto_rollout_start *req, const char *who,
		int64_t now, int64_t *id, char *err, size_t errlen);

/* Pause, resume, halt, rollback, approve (@group) rollout @id. 0, -ENOENT, or -EINVAL
 * (not allowed in its state) with a reason. */
int fleet_act(struct fleet *f, int64_t id, enum fleet_action act, const char *group,
	      const char *who, int64_t now, char *err, size_t errlen);

/* Halts every active or paused rollout; their number in *@halted. */
int fleet_emergency_stop(struct fleet *f, const char *who, int64_t now, size_t *halted);

/* Appends rollout @id (or every rollout when @id is 0, as an array) as JSON. */
int fleet_rollout_json(struct fleet *f, int64_t id, struct buf *out);

/* Appends the default plan as a JSON array. */
int fleet_default_plan_json(struct buf *out);

#endif
