/*
 * vigil-server: the control plane's one process-wide struct, hung off every request, and the
 * pieces the API files share (authentication, the audit log, replies).
 */
#ifndef VIGIL_SERVER_SERVER_H
#define VIGIL_SERVER_SERVER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "store.h"

#define SERVER_VERSION "0.1.0"

/* Bytes of a request body, per kind of request (413 past them). */
#define SERVER_DEFAULT_MAX_BODY	  (64u * 1024u)		/* enroll, heartbeat, admin JSON */
#define SERVER_DEFAULT_MAX_UPLOAD (16u * 1024u * 1024u) /* alert and event batches */
/* Bytes of one reply built in memory. */
#define SERVER_MAX_REPLY		 (64u * 1024u * 1024u)
#define SERVER_DEFAULT_HEARTBEAT_SECONDS 60u

struct server_config {
	const char *data_dir;
	const char *listen;    /* "ADDR:PORT", "[ADDR]:PORT" */
	const char *root_path; /* trust root releases are verified against; NULL: none */
	const char *tls_cert;  /* PEM certificate chain and key: HTTPS when both are set */
	const char *tls_key;
	unsigned threads;
	unsigned heartbeat_seconds; /* told to agents */
	double tick_seconds;	    /* controller tick */
	size_t max_body;
	size_t max_upload;
	bool quiet;
};

struct trust_root;
struct fleet;
struct MHD_Daemon;

struct server {
	struct server_config cfg;
	struct store *store;
	struct trust_root *root;
	struct fleet *fleet;
	struct MHD_Daemon *mhd;
	char bundles_dir[PATH_MAX];   /* DATA/bundles: one file per bundle, named by its hash */
	struct buf tls_cert, tls_key; /* PEM, held for the daemon's lifetime */
	unsigned port;		      /* bound port */
};

/* Who made a request, once authenticated. */
struct principal {
	bool agent;
	char id[STORE_ID_BYTES];     /* agent id or token id */
	char name[STORE_NAME_BYTES]; /* token name ("agent" for agents) */
	enum store_role role;
};

/* A reply: JSON in @body, or a file. */
struct reply {
	unsigned status;
	struct buf body;
	int fd; /* >= 0: send this file */
	uint64_t fd_size;
	char etag[STORE_HASH_BYTES + 2];
	bool immutable;
	char audit[256];	  /* what an admin action did, for the audit log */
	const char *content_type; /* NULL: application/json */
	bool csp;		  /* the console's pages: a strict Content-Security-Policy */
};

/* A request being handled; path parameters in @arg. */
struct request {
	struct server *srv;
	const char *method;
	const char *url;
	void *conn; /* struct MHD_Connection */
	char arg[2][STORE_TOKEN_BYTES];
	struct buf body;
	bool too_big;
	size_t discarded;
	bool answered;
	const struct route *route;
	struct principal who;
	struct store_agent agent; /* the agent as stored before this request (agent routes) */
	int64_t now;
};

/* --- replies (http.c) --- */

/* Sets @rp to @status with {"error": reason}. Returns 0. */
int reply_error(struct reply *rp, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets @rp to @status; the caller appends the JSON body to rp->body. */
void reply_json(struct reply *rp, unsigned status);
/* Reply for a store failure (-ENOENT 404, -EEXIST 409, else 500). */
int reply_store_error(struct reply *rp, int err, const char *what);

/* A query-string argument of the request, or NULL. */
const char *request_query(struct request *rq, const char *key);
/* A request header, or NULL. */
const char *request_header(struct request *rq, const char *name);

/* --- authentication (auth.c) --- */

/*
 * Makes a new credential "ID.SECRET" (@id 32 hex digits, the secret 64) into @token, and the
 * hash of its secret into @hash. Returns 0 or -EIO.
 */
int auth_new_credential(char id[STORE_ID_BYTES], char token[STORE_TOKEN_BYTES],
			uint8_t hash[STORE_SECRET_HASH]);

/* Splits "ID.SECRET" and hashes the secret. Returns 0 or -EINVAL. */
int auth_split(const char *token, char id[STORE_ID_BYTES], uint8_t hash[STORE_SECRET_HASH]);

/* True when the two hashes are equal, compared in constant time. */
bool auth_hash_equal(const uint8_t a[STORE_SECRET_HASH], const uint8_t b[STORE_SECRET_HASH]);

/* The bearer token of the request's Authorization header, or NULL. */
const char *auth_bearer(struct request *rq);

/*
 * Authenticates the request as an admin token (@agent false) or as the agent whose id is the
 * path's first parameter. Returns 0 and fills rq->who, or sets @rp to 401 (no or wrong
 * credential) or 403 (a valid agent credential for another agent, too low a role).
 */
int auth_admin(struct request *rq, enum store_role need, struct reply *rp);
int auth_agent(struct request *rq, struct reply *rp);

/* Creates the first admin and enrollment tokens when the store has none, printing them
 * once to @out. Returns 1 when it made them, 0 when they existed, or -errno. */
int auth_bootstrap(struct server *srv, bool force, void *out, int64_t now);

/* --- the audit log (audit.c) --- */

/* Stores one admin action: who, what ("METHOD PATH"), target, result. Never fails the
 * request; a store failure is logged. */
void audit_record(struct server *srv, const struct principal *who, const char *action,
		  const char *target, unsigned status, const char *result, int64_t now);

/* --- the two APIs --- */

struct route;
/* The handler of a route: fills @rp. */
typedef void (*route_fn)(struct request *rq, struct reply *rp);

void api_enroll(struct request *rq, struct reply *rp);
void api_heartbeat(struct request *rq, struct reply *rp);
void api_alerts(struct request *rq, struct reply *rp);
void api_events(struct request *rq, struct reply *rp);
void api_bundle(struct request *rq, struct reply *rp);
void api_health(struct request *rq, struct reply *rp);

void admin_agents(struct request *rq, struct reply *rp);
void admin_agent_show(struct request *rq, struct reply *rp);
void admin_agent_update(struct request *rq, struct reply *rp);
void admin_groups(struct request *rq, struct reply *rp);
void admin_group_show(struct request *rq, struct reply *rp);
void admin_group_put(struct request *rq, struct reply *rp);
void admin_releases(struct request *rq, struct reply *rp);
void admin_release_show(struct request *rq, struct reply *rp);
void admin_release_create(struct request *rq, struct reply *rp);
void admin_rollouts(struct request *rq, struct reply *rp);
void admin_rollout_show(struct request *rq, struct reply *rp);
void admin_rollout_start(struct request *rq, struct reply *rp);
void admin_rollout_action(struct request *rq, struct reply *rp);
void admin_emergency_stop(struct request *rq, struct reply *rp);
void admin_alerts(struct request *rq, struct reply *rp);
void admin_events(struct request *rq, struct reply *rp);
void admin_decisions(struct request *rq, struct reply *rp);
void admin_audit(struct request *rq, struct reply *rp);
void admin_token_create(struct request *rq, struct reply *rp);
void admin_enroll_token_create(struct request *rq, struct reply *rp);

/* The web console (console.c): its page and its script. */
void console_page(struct request *rq, struct reply *rp);
void console_script(struct request *rq, struct reply *rp);
void admin_tokens(struct request *rq, struct reply *rp);
void admin_token_revoke(struct request *rq, struct reply *rp);

/* --- http.c --- */

/* Starts the HTTP daemon on cfg.listen with cfg.threads threads. Returns 0 or -errno with a
 * reason in @err; srv->port holds the bound port. */
int http_start(struct server *srv, char *err, size_t errlen);
/* Stops accepting, finishes requests in flight, frees the daemon. Accepts a stopped one. */
void http_stop(struct server *srv);

/* Appends @s as a JSON string literal. */
int json_str(struct buf *b, const char *s);

#endif
