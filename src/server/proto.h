/*
 * The wire format of vigil-server's APIs: every request body is read here, into fixed-size
 * structs, with its size, nesting depth, every string length and every number's range
 * checked. Pure (no I/O, no server state), so each parser has a fuzz target.
 */
#ifndef VIGIL_SERVER_PROTO_H
#define VIGIL_SERVER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "store.h"

/* Deepest nesting of objects and arrays a request body may have (alert records included). */
#define PROTO_MAX_DEPTH 12
/* Quarantined versions one heartbeat may report. */
#define PROTO_MAX_QUARANTINED STORE_MAX_QUARANTINED
/* Records (alerts or events) in one upload batch, and bytes of one record as stored. */
#define PROTO_MAX_BATCH	       5000u
#define PROTO_MAX_RECORD_BYTES (64u * 1024u)
/* Steps of a rollout plan and maintenance windows of a policy. */
#define PROTO_MAX_PLAN_STEPS 16u
#define PROTO_MAX_WINDOWS    STORE_MAX_WINDOWS
/* Largest bake time of one plan step (30 days) and delay of a policy (one year). */
#define PROTO_MAX_BAKE_SECONDS (30ll * 86400)
#define PROTO_MAX_DELAY_HOURS  8760u
/* Rings are 0 (internal) .. PROTO_MAX_RING. */
#define PROTO_MAX_RING 7u
/* The controller's health gates, in its order (lib/rollout.h ROLLOUT_GATES). */
#define PROTO_GATE_NAMES "silence", "reverts", "restarts", "liveness", "alerts", "drops", "cpu"
#define PROTO_GATE_COUNT 7u
/* Largest counter accepted in a heartbeat: stays exact in every JSON reader (2^53 - 1). */
#define PROTO_MAX_COUNTER 9007199254740991ll

/*
 * Parses @len bytes of @body as one JSON object: refuses NUL bytes, a nesting deeper than
 * PROTO_MAX_DEPTH (checked before jansson sees the bytes), duplicate keys and anything but
 * an object at the top. Returns 0 and the object in *@out (json_decref it), or -EINVAL with
 * a one-line reason in @err. Declared with void * so this header needs no jansson.
 */
int proto_json_object(const char *body, size_t len, void **out, char *err, size_t errlen);

/* True when @s (@len bytes) is a safe name: 1..STORE_NAME_BYTES-1 of [A-Za-z0-9._-]. */
bool proto_name_ok(const char *s, size_t len);

/* True when @s is 64 lowercase hex digits (a bundle hash). */
bool proto_hash_ok(const char *s, size_t len);

/* --- agent API --- */

struct proto_enroll {
	char token[STORE_TOKEN_BYTES];
	char hostname[STORE_HOST_BYTES];
	char sensor_version[STORE_VERSION_BYTES];
	uint64_t sensor_build; /* 0: not given */
};

/* {"token": s, "hostname": s, "sensor_version": s, "sensor_build": n}. Returns 0 or -EINVAL with a
 * reason. */
int proto_parse_enroll(const char *body, size_t len, struct proto_enroll *out, char *err,
		       size_t errlen);

/*
 * A heartbeat: {"content_version": n|null, "sensor_version": s, "uptime_seconds": n,
 * "restarts": n, "crash_loop_reverts": n, "quarantined": [n...], "liveness": {"ok": n,
 * "failed": n, "last": "ok"|"failed"|"never"}, "drops": n, "alerts": n, "cpu_percent": x,
 * "rss_bytes": n, "hostname": s, "sensor_build": n|null, "sensor_crash_loop_reverts": n,
 * "sensor_quarantined": [n...]}; every key optional, unknown keys ignored.
 * Returns 0 or -EINVAL with a reason naming the key; @out is zeroed first.
 */
int proto_parse_heartbeat(const char *body, size_t len, struct store_health *out, char *err,
			  size_t errlen);

/* One record of an upload batch, its JSON re-serialized compactly (owned by the batch). */
struct proto_record {
	int64_t seq; /* >= 1, unique within the batch */
	int64_t at;  /* @timestamp in seconds since the epoch, or 0 when absent */
	char rule_id[STORE_NAME_BYTES]; /* rule.id of an alert, or "" */
	char *json;
	size_t json_len;
};

struct proto_batch {
	struct proto_record *records;
	size_t n;
};

/*
 * An upload: {"records": [{"seq": n, "data": {...}}, ...]} with 1..PROTO_MAX_BATCH records,
 * each data object at most PROTO_MAX_RECORD_BYTES once serialized. Returns 0 and fills @out
 * (free with proto_batch_free), or -EINVAL with a reason naming the record, or -ENOMEM.
 */
int proto_parse_batch(const char *body, size_t len, struct proto_batch *out, char *err,
		      size_t errlen);
void proto_batch_free(struct proto_batch *b);

/* --- admin API --- */

/*
 * A group policy: {"ring": n, "delay_hours": n, "pin": n|null, "paused": b,
 * "approval_required": b, "maintenance_windows": [{"start": "HH:MM", "end": "HH:MM"}]}
 * (daily, UTC; a window whose end is before its start runs past midnight). Keys not given keep the
 * value in @out, so a caller can pass the current policy to update it. Returns 0 or -EINVAL with a
 * reason; @out is unchanged on error.
 */
int proto_parse_policy(const char *body, size_t len, struct store_policy *out, char *err,
		       size_t errlen);

/* Appends @p as one JSON object to @out. Returns 0 or a buf error. */
int proto_policy_json(const struct store_policy *p, struct buf *out);

struct proto_plan_step {
	unsigned ring;
	double percent;	      /* (0, 100] */
	int64_t bake_seconds; /* >= 0 */
};

/* Gate thresholds given with a plan; -1 where not given (the controller's default). */
struct proto_gates {
	bool set;
	int64_t min_agents, min_bad, silence_k;
	double tolerance, alpha, floor_per_hour, alert_ratio, cpu_ratio;
	uint32_t disabled; /* bit i: gate i of PROTO_GATE_NAMES is off */
};

struct proto_rollout_start {
	char release[STORE_HASH_BYTES]; /* hash */
	struct proto_gates gates;
	bool has_plan;
	size_t n_steps;
	struct proto_plan_step steps[PROTO_MAX_PLAN_STEPS];
	bool force;
};

/*
 * {"release": HASH, "plan": [{"ring": n, "percent": x, "bake_seconds": n}], "force": b,
 * "gates": {"min_agents": n, "min_bad": n, "silence_k": n, "tolerance": x, "alpha": x,
 * "floor_per_hour": x, "alert_ratio": x, "cpu_ratio": x, "disabled": [gate names]}}.
 * Steps must not go backwards (ring, then percent). Returns 0 or -EINVAL with a reason.
 */
int proto_parse_rollout_start(const char *body, size_t len, struct proto_rollout_start *out,
			      char *err, size_t errlen);

/* {"group": NAME} (approve, agent update). Returns 0 or -EINVAL with a reason. */
int proto_parse_group_ref(const char *body, size_t len, char group[STORE_NAME_BYTES], char *err,
			  size_t errlen);

struct proto_token_request {
	char name[STORE_NAME_BYTES];
	enum store_role role;	      /* admin tokens */
	char group[STORE_NAME_BYTES]; /* enrollment tokens */
	int64_t uses;		      /* enrollment tokens: 0 = unlimited */
	int64_t expires_seconds;      /* 0 = never */
};

/*
 * Admin token: {"name": s, "role": "admin"|"operator"|"viewer"}; enrollment token
 * (@enrollment): {"group": s, "uses": n, "expires_seconds": n}. Returns 0 or -EINVAL.
 */
int proto_parse_token_request(const char *body, size_t len, bool enrollment,
			      struct proto_token_request *out, char *err, size_t errlen);

/* "admin", "operator", "viewer" and back. */
const char *proto_role_name(enum store_role r);
int proto_role_parse(const char *s, enum store_role *out);

#endif
