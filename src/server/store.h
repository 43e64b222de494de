/*
 * The control plane's store: everything vigil-server keeps lives behind this narrow table of
 * operations (agents, tokens, groups, releases, rollouts and their decisions, alerts and
 * events, the audit log), so a backend other than the embedded SQLite one can be added
 * without touching the rest of the server. Every operation is safe to call from any thread.
 */
#ifndef VIGIL_SERVER_STORE_H
#define VIGIL_SERVER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sizes with the terminating NUL. */
#define STORE_ID_BYTES	      40  /* agent and token ids: 32 hex digits */
#define STORE_TOKEN_BYTES     128 /* "ID.SECRET" as presented */
#define STORE_NAME_BYTES      64  /* group, token and rule names */
#define STORE_HOST_BYTES      256
#define STORE_VERSION_BYTES   64 /* sensor versions "MAJOR.MINOR.PATCH" */
#define STORE_HASH_BYTES      65 /* 64 hex digits of BLAKE2b-256 */
#define STORE_STATE_BYTES     16 /* rollout state names */
#define STORE_SECRET_HASH     32 /* BLAKE2b-256 of a secret */
#define STORE_MAX_QUARANTINED 16u
#define STORE_MAX_WINDOWS     4u
#define STORE_TRACK_BYTES     64 /* the controller's memory of one agent, both lanes */
/* The sensor lane's health as the SQLite store keeps it in one column. */
#define STORE_SENSOR_TEXT_BYTES (2 * 21 + 2 + STORE_MAX_QUARANTINED * 21 + 1)

enum store_role { ROLE_VIEWER = 0, ROLE_OPERATOR = 1, ROLE_ADMIN = 2 };
enum store_token_kind { TOKEN_ADMIN = 0, TOKEN_ENROLL = 1 };
enum store_record_kind { RECORD_ALERT = 0, RECORD_EVENT = 1 };

/* An admin or enrollment token; only the hash of its secret is kept. */
struct store_token {
	char id[STORE_ID_BYTES];
	enum store_token_kind kind;
	uint8_t secret_hash[STORE_SECRET_HASH];
	char name[STORE_NAME_BYTES];
	enum store_role role;	      /* admin tokens */
	char group[STORE_NAME_BYTES]; /* enrollment tokens: the group new agents join */
	int64_t uses_left;	      /* enrollment tokens: -1 unlimited */
	int64_t created;
	int64_t expires; /* 0 never */
	bool revoked;
};

/* What an agent reports in each heartbeat. */
struct store_health {
	bool has_content;
	uint64_t content_version;
	char sensor_version[STORE_VERSION_BYTES];
	int64_t uptime_seconds;
	int64_t restarts;
	int64_t crash_loop_reverts;
	size_t n_quarantined;
	uint64_t quarantined[STORE_MAX_QUARANTINED];
	int64_t liveness_ok;
	int64_t liveness_failed;
	int liveness_last; /* -1 never, 0 failed, 1 ok */
	int64_t drops;
	int64_t alerts;
	double cpu_percent;
	int64_t rss_bytes;
	char hostname[STORE_HOST_BYTES];
	/* the sensor lane: the build it runs (0: not reported), its sensor crash-loop reverts
	 * (cumulative) and the builds it quarantined */
	uint64_t sensor_build;
	int64_t sensor_reverts;
	size_t n_sensor_quarantined;
	uint64_t sensor_quarantined[STORE_MAX_QUARANTINED];
};

struct store_agent {
	char id[STORE_ID_BYTES];
	uint8_t secret_hash[STORE_SECRET_HASH];
	char group[STORE_NAME_BYTES];
	int64_t enrolled_at;
	int64_t last_seen; /* 0 before the first heartbeat */
	int64_t heartbeats;
	struct store_health health;
	/* opaque to the store: what the rollout controller remembers of this agent */
	size_t track_len;
	uint8_t track[STORE_TRACK_BYTES];
};

/* A daily maintenance window, UTC minutes of the day; end < start runs past midnight. */
struct store_window {
	uint16_t start_minute, end_minute;
};

/* A group's policy for receiving releases. */
struct store_policy {
	unsigned ring;
	unsigned delay_hours; /* after general availability */
	bool has_pin;
	uint64_t pin; /* content version */
	bool paused;
	bool approval_required;
	size_t n_windows; /* 0: any time */
	struct store_window windows[STORE_MAX_WINDOWS];
};

struct store_group {
	char name[STORE_NAME_BYTES];
	struct store_policy policy;
	int64_t updated;
};

struct store_release {
	int64_t id; /* set by release_add */
	char hash[STORE_HASH_BYTES];
	char kind[STORE_STATE_BYTES]; /* "content" or "sensor" */
	char name[STORE_NAME_BYTES];
	uint64_t version;
	int64_t size;
	int64_t created;
	char created_by[STORE_NAME_BYTES];
};

/*
 * A rollout as persisted: the server's notes on it and the controller's state are text the
 * store keeps without reading (owned by the struct: free with store_rollout_clear).
 */
struct store_rollout {
	int64_t id; /* set by rollout_add */
	char release_hash[STORE_HASH_BYTES];
	char state[STORE_STATE_BYTES];
	int64_t created;
	int64_t updated;
	char *meta;	  /* JSON: approvals and other notes of the server */
	char *controller; /* the controller's snapshot (base64) */
};

struct store_decision {
	int64_t id;
	int64_t rollout_id;
	int64_t at;
	char kind[STORE_STATE_BYTES]; /* "promote", "halt", "pull", "complete", "pause", ... */
	char *detail;		      /* JSON with the numbers behind it */
};

struct store_record {
	char agent_id[STORE_ID_BYTES];
	int64_t seq;
	int64_t at;
	int64_t received;
	char rule_id[STORE_NAME_BYTES];
	const char *json; /* valid during the callback */
};

struct store_record_query {
	enum store_record_kind kind;
	const char *agent_id; /* NULL: any */
	const char *rule_id;  /* NULL: any */
	int64_t since, until; /* @timestamp range, inclusive; 0: open */
	size_t limit;
};

struct store_audit {
	int64_t id;
	int64_t at;
	char who[STORE_NAME_BYTES];
	const char *action; /* "POST /api/v1/admin/rollouts" */
	const char *target;
	const char *result; /* "200", "403 forbidden: ..." */
};

/* A new record to store: seq unique per agent and kind. */
struct store_new_record {
	int64_t seq;
	int64_t at;
	const char *rule_id;
	const char *json;
	size_t json_len;
};

struct store;

/* Each list operation calls back once per row; a nonzero return stops and is returned. */
typedef int (*store_agent_cb)(const struct store_agent *a, void *ctx);
typedef int (*store_group_cb)(const struct store_group *g, void *ctx);
typedef int (*store_release_cb)(const struct store_release *r, void *ctx);
typedef int (*store_rollout_cb)(const struct store_rollout *r, void *ctx);
typedef int (*store_decision_cb)(const struct store_decision *d, void *ctx);
typedef int (*store_record_cb)(const struct store_record *r, void *ctx);
typedef int (*store_audit_cb)(const struct store_audit *a, void *ctx);
typedef int (*store_token_cb)(const struct store_token *t, void *ctx);

/*
 * Operations return 0 or a negative errno: -ENOENT nothing by that key, -EEXIST the key is
 * taken, -EIO the backend failed (its message logged), -ENOMEM. Out-structs are written only
 * on success. Strings are NUL-terminated and fit their fields (longer ones are refused with
 * -EINVAL).
 */
struct store_ops {
	const char *name;
	void (*close)(struct store *st);

	/* small named values: the server's settings and bookkeeping */
	int (*meta_get)(struct store *st, const char *key, char *out, size_t outlen);
	int (*meta_set)(struct store *st, const char *key, const char *value);

	int (*token_add)(struct store *st, const struct store_token *t);
	int (*token_get)(struct store *st, const char *id, struct store_token *out);
	/* Takes one use of an enrollment token, atomically: -EACCES when none is left. */
	int (*token_use)(struct store *st, const char *id);
	int (*token_list)(struct store *st, store_token_cb cb, void *ctx);
	/* Marks token @id revoked: it authenticates nothing from then on. */
	int (*token_revoke)(struct store *st, const char *id);

	int (*agent_add)(struct store *st, const struct store_agent *a);
	int (*agent_get)(struct store *st, const char *id, struct store_agent *out);
	/* Records a heartbeat's health at @now and the controller's @track of the agent. */
	int (*agent_heartbeat)(struct store *st, const char *id, const struct store_health *h,
			       const void *track, size_t track_len, int64_t now);
	/* Agents per group: calls @cb with each group name and its number of agents. */
	int (*agent_groups)(struct store *st,
			    int (*cb)(const char *group, int64_t agents, void *ctx), void *ctx);
	int (*agent_set_group)(struct store *st, const char *id, const char *group);
	/* Agents ordered by id, after @after ("" from the start), at most @limit (0: all). */
	int (*agent_list)(struct store *st, const char *group, const char *after, size_t limit,
			  store_agent_cb cb, void *ctx);

	int (*group_put)(struct store *st, const struct store_group *g);
	int (*group_get)(struct store *st, const char *name, struct store_group *out);
	int (*group_list)(struct store *st, store_group_cb cb, void *ctx);

	int (*release_add)(struct store *st, struct store_release *r);
	int (*release_get)(struct store *st, const char *hash, struct store_release *out);
	int (*release_list)(struct store *st, store_release_cb cb, void *ctx);

	int (*rollout_add)(struct store *st, struct store_rollout *r);
	int (*rollout_update)(struct store *st, const struct store_rollout *r);
	int (*rollout_get)(struct store *st, int64_t id, struct store_rollout *out);
	int (*rollout_list)(struct store *st, store_rollout_cb cb, void *ctx);

	int (*decision_add)(struct store *st, const struct store_decision *d);
	/* Newest first; @rollout_id 0 for every rollout. */
	int (*decision_list)(struct store *st, int64_t rollout_id, size_t limit,
			     store_decision_cb cb, void *ctx);

	/*
	 * Stores @n records of @agent_id in one transaction; a record whose (agent, seq) is
	 * already stored is skipped. Returns 0 once committed, with the number newly stored
	 * in *@inserted; on error nothing of the batch is stored.
	 */
	int (*records_add)(struct store *st, enum store_record_kind kind, const char *agent_id,
			   const struct store_new_record *recs, size_t n, size_t *inserted,
			   int64_t now);
	/* Newest first. */
	int (*records_query)(struct store *st, const struct store_record_query *q,
			     store_record_cb cb, void *ctx);

	int (*audit_add)(struct store *st, const struct store_audit *a);
	/* Newest first. */
	int (*audit_list)(struct store *st, size_t limit, store_audit_cb cb, void *ctx);
};

struct store {
	const struct store_ops *ops;
};

/*
 * Opens (creating when missing) the SQLite store in directory @dir (DIR/vigil.db, WAL
 * mode). Returns 0 and the store in *@out, or -errno with a one-line reason in @err.
 */
int store_sqlite_open(const char *dir, struct store **out, char *err, size_t errlen);

/* Frees what a store operation allocated in @r; the struct may be reused. Accepts NULL. */
void store_rollout_clear(struct store_rollout *r);

/* Closes @st. Accepts NULL. */
void store_close(struct store *st);

#endif
